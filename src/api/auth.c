/* auth.c - sign-in for auth collections: auth-with-password, auth-refresh, auth-methods, and
 * api__auth_finish, the one place where a successful factor (password, OTP, OAuth2) becomes
 * a token: the authRule, MFA and the new-device alert are decided there and nowhere else.
 *
 * Password checks take ~100 ms of CPU and 64 MiB each, so they never run on an HTTP thread:
 * the request is suspended, the auth pool checks the password (against a dummy hash when the
 * identity is unknown, so timing tells nothing) and its callback answers and resumes. */
#include <sodium.h>
#include <string.h>

#include "api/records_int.h"
#include "mail/mail.h"
#include "store/store.h"

static void unref_cb(void *c)
{
    store_collection_unref(c);
}

/* The auth collection named in the path, or NULL after answering 404. RETURNS a reference. */
struct store_collection *api__auth_collection(struct http_req *req, struct api_env *env)
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

static const json_t *auth_opt(const struct store_collection *c, const char *key, const char *sub)
{
    const json_t *v = c->auth_options ? json_object_get(c->auth_options, key) : NULL;
    return v && sub ? json_object_get(v, sub) : v;
}

bool api__auth_opt_bool(const struct store_collection *c, const char *key, const char *sub,
                        bool def)
{
    const json_t *v = auth_opt(c, key, sub);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

int64_t api__auth_opt_int(const struct store_collection *c, const char *key, const char *sub,
                          int64_t def)
{
    const json_t *v = auth_opt(c, key, sub);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : def;
}

static int auth_rule_holds(struct api_env *env, const struct store_collection *c, const char *id,
                           const struct store_cond *cond);

/* PocketBase's MFA defaults: off, sessions of 30 minutes, a rule of "" (everyone). */
#define MFA_DURATION_DEFAULT 1800
#define ORIGINS_MAX 5 /* devices remembered per auth record */

/* Whether mfa.rule asks this record for a second factor: "" means everyone; a rule that
 * cannot be compiled or checked asks for it too (the safer answer, as PocketBase). */
static bool wants_mfa(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const char *id)
{
    const char *rule = json_string_value(auth_opt(c, "mfa", "rule"));
    if (!rule || !*rule)
        return true;
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    api__rules_init(ar, req, env);
    struct store_cond cond;
    if (api__rule_compile_expr(ar, c, rule, &cond) != 0)
        return true;
    return auth_rule_holds(env, c, id, &cond) != ERR_NOTFOUND;
}

/* The MFA step of a sign-in by method. Returns true when the sign-in may go on; otherwise it
 * answered: 401 {mfaId} (a first factor: the session to complete), or 400. */
static bool mfa_step(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     const char *id, const char *method, const char *mfa_id)
{
    if (!method || !*method || !api__auth_opt_bool(c, "mfa", "enabled", false))
        return true;
    if (!wants_mfa(req, env, c, id))
        return true;
    char ref[2 * AUTH_ID_MAX + 2];
    snprintf(ref, sizeof(ref), "%s/%s", c->id, id);
    if (!mfa_id || !*mfa_id) {
        char nid[ID_LEN + 1];
        id_random(nid);
        json_t *v =
            json_pack("{s:s,s:s,s:s}", "collectionRef", c->id, "recordRef", id, "method", method);
        int64_t now = time_now_us();
        int64_t ttl = api__auth_opt_int(c, "mfa", "duration", MFA_DURATION_DEFAULT);
        api__sys_sweep(env, "mfa");
        struct store_sysrow row = {"mfa", nid, ref, v, now, now + ttl * 1000000};
        int rc = store_sys_put(env->store, &row);
        json_decref(v);
        if (rc) {
            http_reply_error(req, 500, "Failed to create MFA record", NULL);
            return false;
        }
        http_reply_json(req, 401, json_pack("{s:s}", "mfaId", nid));
        return false;
    }
    json_t *row = NULL;
    int64_t ttl = api__auth_opt_int(c, "mfa", "duration", MFA_DURATION_DEFAULT);
    if (strlen(mfa_id) > 64 || store_sys_get(env->store, "mfa", mfa_id, &row) != 0 ||
        json_integer_value(json_object_get(row, "created_us")) + ttl * 1000000 < time_now_us()) {
        if (row && store_sys_take(env->store, "mfa", mfa_id) != 0)
            xlog_debug("mfa session %s was already gone", mfa_id);
        json_decref(row);
        http_reply_error(req, 400, "Invalid or expired MFA session.", NULL);
        return false;
    }
    const char *row_ref = json_string_value(json_object_get(row, "ref"));
    const char *first = json_string_value(json_object_get(json_object_get(row, "value"), "method"));
    bool same_record = row_ref && strcmp(row_ref, ref) == 0;
    bool same_method = first && strcmp(first, method) == 0;
    json_decref(row);
    if (!same_record) {
        http_reply_error(req, 400, "Invalid MFA session.", NULL);
        return false;
    }
    if (same_method) {
        http_reply_error(req, 400, "A different authentication method is required.", NULL);
        return false;
    }
    /* single use: of two requests completing the same session only one takes it */
    if (store_sys_take(env->store, "mfa", mfa_id) != 0) {
        http_reply_error(req, 400, "Invalid or expired MFA session.", NULL);
        return false;
    }
    return true;
}

/* authAlert: remembers the device (client address + User-Agent) a record signed in from and,
 * when it is new and the record signed in before, queues the alert mail. Never fails the
 * sign-in. */
static void auth_alert(struct http_req *req, struct api_env *env, const struct store_collection *c,
                       const json_t *record, const char *id)
{
    if (!api__auth_opt_bool(c, "authAlert", "enabled", true))
        return;
    const char *email = json_string_value(json_object_get(record, "email"));
    if (!email || !*email)
        return;
    const char *ua = http_req_header(req, "User-Agent");
    const char *ip = api__client_ip(req, env);
    unsigned char h[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)ip, strlen(ip) + 1);
    if (ua)
        crypto_generichash_update(&st, (const unsigned char *)ua, strnlen(ua, 300));
    crypto_generichash_final(&st, h, sizeof(h));
    char fp[2 * sizeof(h) + 1];
    sodium_bin2hex(fp, sizeof(fp), h, sizeof(h));
    char ref[2 * AUTH_ID_MAX + 2], oid[sizeof(ref) + sizeof(fp) + 1];
    snprintf(ref, sizeof(ref), "%s/%s", c->id, id);
    snprintf(oid, sizeof(oid), "%s/%s", ref, fp);
    json_t *known = NULL;
    if (store_sys_list(env->store, "origin", NULL, ref, 0, 100, &known) != 0)
        return;
    bool seen = false;
    for (size_t i = 0; i < json_array_size(known) && !seen; i++)
        seen = strcmp(json_string_value(json_object_get(json_array_get(known, i), "id")), oid) == 0;
    json_t *v = json_pack("{s:s}", "fingerprint", fp);
    struct store_sysrow row = {"origin", oid, ref, v, 0, time_now_us()}; /* due_us: last use */
    if (seen && store_sys_put(env->store, &row) != 0)
        xlog_warn("cannot refresh a sign-in device: %s", store_errmsg(env->store));
    if (!seen) {
        /* forget the oldest devices past ORIGINS_MAX */
        for (size_t i = 0; i + ORIGINS_MAX <= json_array_size(known); i++)
            if (store_sys_take(env->store, "origin",
                               json_string_value(json_object_get(json_array_get(known, i), "id"))))
                break;
        if (store_sys_put(env->store, &row) != 0)
            xlog_warn("cannot remember a sign-in device: %s", store_errmsg(env->store));
        if (json_array_size(known) > 0) {
            /* the User-Agent is the client's to choose: escaped, so it stays text */
            char raw[400];
            snprintf(raw, sizeof(raw), "%s %s", ip, ua ? ua : "");
            struct buf info;
            buf_init(&info);
            mail_html_escape(&info, raw);
            json_t *vars = json_pack("{s:s%}", "{ALERT_INFO}", info.ptr, info.len);
            buf_release(&info);
            if (api__mail_record(env, c, record, MAIL_TPL_AUTH_ALERT, vars, NULL) != 0)
                xlog_warn("cannot queue the new device alert of %s", id);
            json_decref(vars);
        }
    }
    json_decref(v);
    json_decref(known);
}

void api__auth_finish(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const struct store_auth_record *rec, const struct api_auth_factor *f)
{
    const char *id = json_string_value(json_object_get(rec->record, "id"));
    int held = !id ? ERR_INVALID : f->rule ? auth_rule_holds(env, c, id, f->rule) : 0;
    if (held == ERR_TIMEOUT)
        api__reply_timeout(req);
    else if (held == ERR_INVALID)
        http_reply_error(req, 400, "Failed to authenticate.", NULL);
    else if (held)
        http_reply_error(req, 403, AUTH_RULE_FAILED, NULL);
    else if (mfa_step(req, env, c, id, f->method, f->mfa_id)) {
        if (f->method && *f->method)
            auth_alert(req, env, c, rec->record, id);
        api__reply_auth(req, env, c, rec, f->deadline_us, f->meta);
        if (http_req_status(req) == 200)
            api__audit_signin(req, env, c->id, id, NULL, true);
        return; /* took meta */
    }
    json_decref(f->meta);
}

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
    const char *mfa_id;           /* in the request's arena, or NULL */
    int64_t deadline_us;          /* of the store work, on every thread that does some */
    const char *password;         /* the request's (its body lives until the reply) */
    const char *identity;         /* the same */
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
    store_deadline(l->env->store, l->deadline_us); /* on the pool's thread */
    if (res->rc == 0 && l->rec.record) {
        const char *id = json_string_value(json_object_get(l->rec.record, "id"));
        if (res->needs_rehash && l->rec.password_hash && id)
            start_rehash(l, id); /* the password is right, whatever MFA asks next */
        api__auth_finish(
            l->req, l->env, l->c, &l->rec,
            &(struct api_auth_factor){"password", l->mfa_id, &l->rule, NULL, l->deadline_us});
    } else {
        http_reply_error(l->req, 400, "Failed to authenticate.", NULL);
        api__audit_signin(l->req, l->env, l->c->id,
                          json_string_value(json_object_get(l->rec.record, "id")), l->identity,
                          false);
    }
    api__deadline_lift(l->env);
    http_req_resume(l->req);
}

const char *api__mfa_id(struct http_req *req, const json_t *body)
{
    const char *q = http_req_query(req, "mfaId");
    if (q && *q)
        return q;
    const char *b = json_string_value(json_object_get(body, "mfaId"));
    return b && *b ? arena_strdup(http_req_arena(req), b) : NULL;
}

json_t *api__field_error(const char *field, const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", field, "code", code, "message", message);
}

static void auth_with_password(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = api__auth_collection(req, env);
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
                           api__field_error("identity", "validation_required", "Cannot be blank."));
    if (!password || !*password || strlen(password) > 255)
        json_object_update(errs,
                           api__field_error("password", "validation_required", "Cannot be blank."));
    if (json_object_size(errs)) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.", errs);
        return;
    }
    json_decref(errs);
    l->password = password;
    l->identity = identity;
    if (!auth_rule(req, env, c, "password", &l->rule))
        return;
    l->mfa_id = api__mfa_id(req, body);

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
    struct store_collection *c = api__auth_collection(req, env);
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
    struct store_collection *c = api__auth_collection(req, env);
    if (!c)
        return;
    json_t *fields = json_array();
    for (size_t i = 0; i < c->n_identity_fields; i++)
        json_array_append_new(fields, json_string(c->identity_fields[i]));
    bool mfa = api__auth_opt_bool(c, "mfa", "enabled", false);
    bool otp = api__auth_opt_bool(c, "otp", "enabled", false);
    json_int_t mfa_s = mfa ? api__auth_opt_int(c, "mfa", "duration", MFA_DURATION_DEFAULT) : 0;
    json_int_t otp_s = otp ? api__auth_opt_int(c, "otp", "duration", 180) : 0;
    json_t *body =
        json_pack("{s:{s:o,s:b},s:{s:[],s:b},s:{s:b,s:I},s:{s:b,s:I},s:n,s:b,s:b}", "password",
                  "identityFields", fields, "enabled", 1, "oauth2", "providers", "enabled", 0,
                  "mfa", "enabled", mfa, "duration", mfa_s, "otp", "enabled", otp, "duration",
                  otp_s, "authProviders", "usernamePassword", 0, "emailPassword", 1);
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
    api__register_authflows(r, env);
}
