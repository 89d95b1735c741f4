/* api_int.h - shared by the files of api/ only: each resource group registers itself. */
#ifndef TANDEM_API_API_INT_H
#define TANDEM_API_API_INT_H

#include "api/api.h"

void api__register_ops(struct http_router *r, struct api_env *env);
void api__register_collections(struct http_router *r, struct api_env *env);
void api__register_records(struct http_router *r, struct api_env *env);

#endif
