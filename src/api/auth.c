/* auth.c - sign-in for auth collections: auth-with-password, auth-refresh, auth-methods.
 *
 * Password checks take ~100 ms of CPU and 64 MiB each, so they never run on an HTTP thread:
 * the request is suspended, the auth pool checks the password (against a dummy hash when the
 * identity is unknown, so timing tells nothing) and its callback answers and resumes. */
#include <string.h>

#include "api/records_int.h"
#include "store/store.h"

static void unref_cb(void *c)
{
    store_collection_unref(c);
}

/* The auth collection named in the path, or NULL after answering 404. RETURNS a reference. */
static struct store_collection *auth_collection(struct http_req *req, struct api_env *env)
{
    struct store_collection *c = NULL;
    const char *name = http_req_param(req, "collection");
    if (store_collection_get(env->store, name, &c) != 0 || c->type != STORE_COLLECTION_AUTH) {
        if (c)
            store_collection_unref(c);
        http_reply_error(req, 404, "Missing or invalid auth collection context.", NULL);
        return NULL;
    }
    return c;
}

struct store_collection *api__auth_collection(struct http_req *req, struct api_env *env)
{
    return auth_collection(req, env);
}

void api__reply_auth(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     const struct store_auth_record *rec, int64_t deadline_us, json_t *meta)
{
    api__reply_token(req, env, c, rec, deadline_us, 0, true, meta);
}

void api__reply_token(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const struct store_auth_record *rec, int64_t deadline_us, int64_t duration,
                      bool refreshable, json_t *meta)
{
    struct auth_token_claims claims = {0};
    const char *id = json_string_value(json_object_get(rec->record, "id"));
    if (duration <= 0)
        duration = c->auth_token_duration_s > 0            ? c->auth_token_duration_s
                   : strcmp(c->id, API_SUPERUSERS_ID) == 0 ? AUTH_TOKEN_DURATION_SUPERUSER
                                                           : AUTH_TOKEN_DURATION_AUTH;
    snprintf(claims.collection_id, sizeof(claims.collection_id), "%s", c->id);
    snprintf(claims.record_id, sizeof(claims.record_id), "%s", id ? id : "");
    claims.exp = time_now_us() / 1000000 + duration;
    claims.refreshable = refreshable;
    char *token = NULL;
    if (!id || auth_token_issue(env->secret, &claims, rec->token_key, &token) != 0) {
        json_decref(meta);
        http_reply_error(req, 400, "Failed to authenticate.", NULL);
        return;
    }
    /* the record's own email is always shown; hidden fields only to superusers */
    json_t *record = json_copy(rec->record);
    if (strcmp(c->id, API_SUPERUSERS_ID) != 0)
        for (size_t i = 0; i < c->n_fields; i++)
            if (c->fields[i].hidden)
                json_object_del(record, c->fields[i].name);
    const char *expand = http_req_query(req, "expand");
    if (expand && *expand) {
        /* expanded as the record itself would see it with its new token */
        struct arena *a = http_req_arena(req);
        struct api_rules *ar = arena_zalloc(a, sizeof(*ar));
        api__rules_init(ar, req, env);
        struct api_identity *who = arena_zalloc(a, sizeof(*who));
        who->record_id = arena_strdup(a, id);
        who->collection_id = arena_strdup(a, c->id);
        who->superuser = strcmp(c->id, API_SUPERUSERS_ID) == 0;
        ar->who = who;
        ar->superuser = who->superuser;
        ar->deadline_us = deadline_us;
        json_t *arr = json_pack("[O]", record);
        int rc = api__expand_rules(ar, c, arr, expand);
        json_decref(arr);
        if (rc) {
            json_decref(record);
            json_decref(meta);
            free(token);
            api__reply_expand_error(req, rc);
            return;
        }
    }
    json_t *body = json_object();
    json_object_set_new(body, "record", record);
    json_object_set_new(body, "token", json_string(token));
    if (meta)
        json_object_set_new(body, "meta", meta);
    free(token);
    api__reply_picked(req, body);
}

#define AUTH_RULE_FAILED "The request doesn't satisfy the collection requirements to authenticate."

/* The authRule of c as a condition (compiled for this request, so @request.* are its own).
 * Answers 403 and returns false when the rule is null or broken. */
static bool auth_rule(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const char *context, struct store_cond *cond)
{
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    api__rules_init(ar, req, env);
    ar->fr.context = context;
    if (api__rule_compile_expr(ar, c, c->rules[STORE_RULE_AUTH], cond) == 0)
        return true;
    http_reply_error(req, 403, AUTH_RULE_FAILED, NULL);
    return false;
}

/* 0 when the auth record id satisfies cond (or there is none); ERR_NOTFOUND when it does not;
 * ERR_TIMEOUT when the check ran out of time. */
static int auth_rule_holds(struct api_env *env, const struct store_collection *c, const char *id,
                           const struct store_cond *cond)
{
    if (!cond->sql)
        return 0;
    json_t *r = NULL;
    int rc = store_record_get_if(env->store, c, id, cond, &r);
    json_decref(r);
    return rc == ERR_TIMEOUT ? rc : rc ? ERR_NOTFOUND : 0;
}

struct login {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
    struct store_auth_record rec; /* record NULL when the identity is unknown */
    struct store_cond rule;       /* the authRule */
    int64_t deadline_us;          /* of the store work, on every thread that does some */
    const char *password;         /* the request's (its body lives until the reply) */
};

/* Moving a stored hash to tandem's scheme after a good sign-in (an imported bcrypt hash, or
 * argon2 with old parameters). Runs on the pool after the answer; heap-owned. */
struct rehash {
    struct store *store;
    struct store_collection *c;
    char *id, *old_hash;
};

static void rehashed(void *arg, const struct auth_pool_result *res)
{
    struct rehash *r = arg;
    if (res->rc == 0 && res->hash) {
        store_deadline(r->store, 0);
        int rc = store_auth_rehash(r->store, r->c, r->id, r->old_hash, res->hash);
        if (rc && rc != ERR_NOTFOUND) /* the next sign-in tries again */
            xlog_warn("cannot store the new password hash of %s/%s: %s", r->c->name, r->id,
                      store_errmsg(r->store));
    }
    store_collection_unref(r->c);
    free(r->id);
    free(r->old_hash);
    free(r);
}

static void start_rehash(struct login *l, const char *id)
{
    struct rehash *r = xcalloc(1, sizeof(*r));
    *r = (struct rehash){l->env->store, store_collection_ref(l->c), xstrdup(id),
                         xstrdup(l->rec.password_hash)};
    if (auth_pool_hash(l->env->pool, l->password, rehashed, r) != 0) {
        struct auth_pool_result busy = {.rc = ERR_BUSY};
        rehashed(r, &busy); /* frees; the next sign-in tries again */
    }
}

static void login_release(void *arg)
{
    struct login *l = arg;
    store_auth_record_release(&l->rec);
    store_collection_unref(l->c);
}

static void on_verified(void *arg, const struct auth_pool_result *res)
{
    struct login *l = arg;
    const char *id = l->rec.record ? json_string_value(json_object_get(l->rec.record, "id")) : NULL;
    store_deadline(l->env->store, l->deadline_us); /* on the pool's thread */
    int held = res->rc == 0 && id ? auth_rule_holds(l->env, l->c, id, &l->rule) : 0;
    if (held == ERR_TIMEOUT)
        api__reply_timeout(l->req);
    else if (held)
        http_reply_error(l->req, 403, AUTH_RULE_FAILED, NULL);
    else if (res->rc == 0 && l->rec.record) {
        if (res->needs_rehash && l->rec.password_hash)
            start_rehash(l, id);
        api__reply_auth(l->req, l->env, l->c, &l->rec, l->deadline_us, NULL);
    } else
        http_reply_error(l->req, 400, "Failed to authenticate.", NULL);
    api__deadline_lift(l->env);
    http_req_resume(l->req);
}

static json_t *field_error(const char *field, const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", field, "code", code, "message", message);
}

static void auth_with_password(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = auth_collection(req, env);
    if (!c)
        return;
    struct login *l = arena_zalloc(http_req_arena(req), sizeof(*l));
    l->req = req;
    l->env = env;
    l->c = c;
    arena_on_release(http_req_arena(req), login_release, l);
    l->deadline_us = api__deadline_start(env); /* lifted by the route */

    json_t *body = api__json_body(req, env, true);
    if (!body)
        return;
    json_t *jid = json_object_get(body, "identity");
    json_t *jpw = json_object_get(body, "password");
    const char *identity = json_string_value(jid);
    const char *password = json_string_value(jpw);
    json_t *errs = json_object();
    if (!identity || !*identity || strlen(identity) > 255)
        json_object_update(errs,
                           field_error("identity", "validation_required", "Cannot be blank."));
    if (!password || !*password || strlen(password) > 255)
        json_object_update(errs,
                           field_error("password", "validation_required", "Cannot be blank."));
    if (json_object_size(errs)) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.", errs);
        return;
    }
    json_decref(errs);
    l->password = password;
    if (!auth_rule(req, env, c, "password", &l->rule))
        return;

    const char *want = json_string_value(json_object_get(body, "identityField"));
    bool found = false;
    for (size_t i = 0; i < c->n_identity_fields && !found; i++) {
        const char *field = c->identity_fields[i];
        if (want && strcmp(want, field) != 0)
            continue;
        if (strcmp(field, "email") == 0 && !strchr(identity, '@') && !want)
            continue;
        found = store_auth_find(env->store, c, field, identity, &l->rec) == 0;
    }
    if (!found)
        memset(&l->rec, 0, sizeof(l->rec));

    http_req_suspend(req);
    int rc =
        auth_pool_verify(env->pool, found ? l->rec.password_hash : NULL, password, on_verified, l);
    if (rc != 0) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, rc == ERR_LIMIT ? 400 : 503,
                         rc == ERR_LIMIT ? "Failed to authenticate." : NULL, NULL);
        http_req_resume(req);
    }
}

static void auth_refresh(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = auth_collection(req, env);
    if (!c)
        return;
    arena_on_release(http_req_arena(req), unref_cb, c);
    const struct api_identity *who = api__identity(req, env);
    /* Only a token issued by a sign-in may be exchanged for a new one: a non-refreshable
     * token (refreshable false or absent) would otherwise become a full-length sign-in. */
    if (!who->record_id || !who->refreshable) {
        http_reply_error(req, 401, "The request requires valid record authorization token.", NULL);
        return;
    }
    if (strcmp(who->collection_id, c->id) != 0) {
        http_reply_error(req, 403, "The authorized record is not allowed to perform this action.",
                         NULL);
        return;
    }
    struct store_cond rule;
    if (!auth_rule(req, env, c, "default", &rule))
        return;
    int64_t deadline = api__deadline_start(env); /* lifted by the route */
    struct store_auth_record rec = {0};
    int rc = store_auth_get(env->store, c, who->record_id, &rec);
    if (rc == ERR_TIMEOUT) {
        api__reply_timeout(req);
        return;
    }
    if (rc != 0) {
        http_reply_error(req, 401, "The request requires valid record authorization token.", NULL);
        return;
    }
    rc = auth_rule_holds(env, c, who->record_id, &rule);
    if (rc == ERR_TIMEOUT)
        api__reply_timeout(req);
    else if (rc)
        http_reply_error(req, 403, AUTH_RULE_FAILED, NULL);
    else
        api__reply_auth(req, env, c, &rec, deadline, NULL);
    store_auth_record_release(&rec);
}

static void auth_methods(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = auth_collection(req, env);
    if (!c)
        return;
    json_t *fields = json_array();
    for (size_t i = 0; i < c->n_identity_fields; i++)
        json_array_append_new(fields, json_string(c->identity_fields[i]));
    json_t *body =
        json_pack("{s:{s:o,s:b},s:{s:[],s:b},s:{s:b,s:i},s:{s:b,s:i},s:n,s:b,s:b}", "password",
                  "identityFields", fields, "enabled", 1, "oauth2", "providers", "enabled", 0,
                  "mfa", "enabled", 0, "duration", 0, "otp", "enabled", 0, "duration", 0,
                  "authProviders", "usernamePassword", 0, "emailPassword", 1);
    api__oauth2_reply_methods(req, env, c, body); /* adds the OAuth2 providers */
}

/* Routes that read records: each lifts the store deadline its handler started. */
static void auth_with_password_route(struct http_req *req, void *ctx)
{
    auth_with_password(req, ctx);
    api__deadline_lift(ctx);
}

static void auth_refresh_route(struct http_req *req, void *ctx)
{
    auth_refresh(req, ctx);
    api__deadline_lift(ctx);
}

void api__register_auth(struct http_router *r, struct api_env *env)
{
    http_route_max_body(r, "POST", "/api/collections/{collection}/auth-with-password",
                        auth_with_password_route, env, env->records.max_body);
    http_route_max_body(r, "POST", "/api/collections/{collection}/auth-refresh", auth_refresh_route,
                        env, env->records.max_body);
    http_route(r, "GET", "/api/collections/{collection}/auth-methods", auth_methods, env);
}
