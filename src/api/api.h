/* api.h - the HTTP resources: one file per resource group. Handlers parse the request, call
 * a domain module and render the answer; no SQL here. */
#ifndef TANDEM_API_API_H
#define TANDEM_API_API_H

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"

/* What the handlers need from the running process; filled by main, read-only afterwards
 * (the handles themselves are safe to use from any thread). */
struct api_env {
    const struct cfg *cfg;
    struct auth_secret *secret;
    struct auth_pool *pool;    /* password hashing off the HTTP threads */
    struct auth_ratelimit *rl; /* NULL when rate limiting is off */
};

/* Registers every route. env must outlive the router. */
void api_register(struct http_router *r, struct api_env *env);

#endif
