/* api.c - route table. */
#include "api/api_int.h"
#include "api/dashboard_int.h"

/* Rate limits per client address and route class; 429 with Retry-After when used up. */
static bool guard(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!env->rl)
        return true;
    int retry = 1;
    enum auth_rl_class cls = auth_ratelimit_classify(http_req_method(req), http_req_path(req));
    if (auth_ratelimit_check(env->rl, api__client_ip(req, env), cls, time_mono_us(), &retry) == 0)
        return true;
    char v[16];
    snprintf(v, sizeof(v), "%d", retry);
    http_set_header(req, "Retry-After", v);
    http_reply_error(req, 429, NULL, NULL);
    return false;
}

void api_register(struct http_router *r, struct api_env *env)
{
    /* the hooks default to the real token check, hashing pool and write keys; tests of single
     * resources may set their own before registering */
    if (!env->is_superuser) {
        env->is_superuser = api__is_superuser;
        env->auth_arg = env;
    }
    if (!env->hash_password)
        env->hash_password = api__hash_password;
    if (!env->resolve_key) {
        env->resolve_key = api__resolve_key;
        env->resolve_arg = env;
    }
    struct api_record_limits *rl = &env->records;
    if (rl->timeout_ms <= 0)
        rl->timeout_ms = API_RECORDS_TIMEOUT_MS;
    if (!rl->max_body)
        rl->max_body = API_RECORDS_MAX_BODY;
    if (!rl->max_keys)
        rl->max_keys = API_RECORDS_MAX_KEYS;
    if (!rl->max_expand_bytes)
        rl->max_expand_bytes = API_RECORDS_MAX_EXPAND;
    http_router_guard(r, guard, env);
    api__register_audit(r, env);
    api__register_ops(r, env);
    api__register_collections(r, env);
    api__register_records(r, env);
    api__register_files(r, env);
    if (env->settings) {
        api__register_settings(r, env);
        api__register_mail(r, env);
    }
    api__register_batch(r, env);
    api__register_capture(r, env);
    api__register_persons(r, env);
    api__register_keys(r, env);
    api__register_auth(r, env);
    api__register_oauth2(r, env);
    api__register_log(r, env);
    api__register_logs(r, env);
    api__register_warehouse(r, env);
    api__register_insights(r, env);
    api__register_models(r, env);
    api__register_realtime(r, env);
    api__register_admin(r, env);
    api__register_ml(r, env);
    api__register_dashboard(r, env);
    api__register_public(r, env);
}
