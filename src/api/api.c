/* api.c - route table. */
#include "api/api_int.h"

void api_register(struct http_router *r, struct api_env *env)
{
    api__register_ops(r, env);
    api__register_collections(r, env);
    api__register_records(r, env);
}
