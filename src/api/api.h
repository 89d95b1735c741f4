/* api.h - the HTTP resources: one file per resource group. Handlers parse the request, call
 * a domain module and render the answer; no SQL here. */
#ifndef TANDEM_API_API_H
#define TANDEM_API_API_H

#include "core/core.h"
#include "http/http.h"

/* What the handlers need from the running process; filled by main, read-only afterwards. */
struct api_env {
    const struct cfg *cfg;
};

/* Registers every route. env must outlive the router. */
void api_register(struct http_router *r, struct api_env *env);

#endif
