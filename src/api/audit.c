/* audit.c - what superusers do, into the audit trail (governance/audit.h).
 *
 * One hook, the router's reply hook, sees every request that reached a route just before its
 * answer goes out. A request made with a superuser's token (the identity its handler resolved)
 * is recorded when it may change something (any method but GET/HEAD, except the few POSTs that
 * only read) or when it takes data out (the GETs in `exports`). Sign-ins of superusers, good
 * and failed, are recorded by the sign-in code itself (api__audit_signin): they carry no
 * superuser token. */
#include <string.h>

#include "api/api_int.h"
#include "evlog/evlog.h"
#include "governance/audit.h"
#include "store/store.h"

/* Largest body parsed for a summary; a larger one is summarized by its size. */
#define AUDIT_BODY_MAX (256u << 10)

/* POST routes that only read or keep a session: not actions. */
static const char *const readonly_posts[] = {
    "/api/insights/{kind}",
    "/api/realtime",
    "/api/collections/{collection}/auth-refresh",
    "/api/files/token",
    "/api/collections/meta/dry-run-view",
    "/api/ml/models/{name}/predict",
    "/api/ml/models/{name}/score",
};

/* GET routes that take data out: recorded as exports. */
static const char *const exports[] = {
    "/api/backups/{key}",
    "/api/log/{topic}",
    "/api/persons/export",
};

static bool listed(const char *route, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(route, list[i]) == 0)
            return true;
    return false;
}

/* The email of superuser id, or NULL. RETURNS a string in req's arena. Each thread keeps the
 * last superuser it looked up while the store's auth epoch stays (every change of an auth record
 * advances it, in this process or beside it), so a superuser's requests do not each read the
 * store; without an epoch every call reads. */
static const char *superuser_email(struct http_req *req, struct api_env *env, const char *id)
{
    static _Thread_local struct {
        bool valid;
        uint64_t instance, epoch;
        char id[ID_LEN + 1];
        char email[256];
        bool has_email;
    } last;
    if (!env->store || !id)
        return NULL;
    uint64_t instance = 0, epoch = 0;
    bool epoch_ok = store_auth_epoch(env->store, &instance, &epoch) == 0;
    if (epoch_ok && last.valid && last.instance == instance && last.epoch == epoch &&
        strcmp(last.id, id) == 0)
        return last.has_email ? arena_strdup(http_req_arena(req), last.email) : NULL;
    struct store_collection *c = NULL;
    if (store_collection_get(env->store, API_SUPERUSERS_ID, &c) != 0)
        return NULL;
    struct store_auth_record rec = {0};
    const char *email = NULL;
    int rc = store_auth_get(env->store, c, id, &rec);
    if (rc == 0) {
        const char *e = json_string_value(json_object_get(rec.record, "email"));
        if (e)
            email = arena_strdup(http_req_arena(req), e);
        store_auth_record_release(&rec);
    }
    store_collection_unref(c);
    last.valid = epoch_ok && (rc == 0 || rc == ERR_NOTFOUND) && strlen(id) <= ID_LEN &&
                 (!email || strlen(email) < sizeof(last.email));
    if (last.valid) {
        last.instance = instance;
        last.epoch = epoch;
        snprintf(last.id, sizeof(last.id), "%s", id);
        last.has_email = email != NULL;
        snprintf(last.email, sizeof(last.email), "%s", email ? email : "");
    }
    return email;
}

/* The request body as a summary: its JSON (bounded, secrets redacted), or its size. */
static json_t *body_summary(struct http_req *req)
{
    struct str body = http_req_body(req);
    if (body.len == 0)
        return json_null();
    json_t *doc = NULL;
    if (body.len <= AUDIT_BODY_MAX)
        doc = json_loadb(body.ptr, body.len, JSON_DECODE_ANY, NULL);
    if (!doc)
        return json_pack("{s:I}", "bytes", (json_int_t)body.len);
    json_t *sum = audit_summary(doc);
    json_decref(doc);
    return sum;
}

static void append(struct api_env *env, json_t *entry)
{
    int rc = audit_append(env->audit, entry, NULL);
    if (rc != 0)
        xlog_error("cannot append to the audit trail: %s: %s", err_str(rc), evlog_errmsg(env->log));
    json_decref(entry);
}

static json_t *entry_new(struct http_req *req, struct api_env *env, const char *action,
                         const char *actor_id, const char *actor_email)
{
    return json_pack("{s:s,s:I,s:{s:s?,s:s?},s:s,s:s,s:s,s:s%,s:s}", "action", action, "time",
                     (json_int_t)time_now_us(), "actor", "id", actor_id, "email", actor_email, "ip",
                     api__client_ip(req, env), "method", http_req_method(req), "route",
                     http_req_route(req), "path", http_req_path(req).ptr, http_req_path(req).len,
                     "rid", http_req_id(req));
}

/* http_reply_hook_cb */
static void on_reply(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const struct api_identity *who = http_req_data(req); /* only what the handler resolved */
    if (!env->audit || !who || !who->superuser)
        return;
    const char *method = http_req_method(req);
    const char *route = http_req_route(req);
    const char *action;
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        if (!listed(route, exports, ARRAY_LEN(exports)))
            return;
        action = "export";
    } else {
        if (strcmp(method, "POST") == 0 && listed(route, readonly_posts, ARRAY_LEN(readonly_posts)))
            return;
        action = "request";
    }
    json_t *e =
        entry_new(req, env, action, who->record_id, superuser_email(req, env, who->record_id));
    json_object_set_new(e, "status", json_integer(http_req_status(req)));
    json_object_set_new(e, "summary", body_summary(req));
    append(env, e);
}

void api__audit_signin(struct http_req *req, struct api_env *env, const char *collection_id,
                       const char *record_id, const char *identity, bool ok)
{
    if (!env->audit || !collection_id || strcmp(collection_id, API_SUPERUSERS_ID) != 0)
        return;
    const char *email = record_id ? superuser_email(req, env, record_id) : NULL;
    json_t *e =
        entry_new(req, env, ok ? "signin" : "signin_failed", record_id, email ? email : identity);
    json_object_set_new(e, "status", json_integer(ok ? 200 : 400));
    json_object_set_new(e, "summary", json_pack("{s:s?}", "identity", identity));
    append(env, e);
}

void api__register_audit(struct http_router *r, struct api_env *env)
{
    http_router_on_reply(r, on_reply, env);
}
