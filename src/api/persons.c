/* persons.c - person deletion and export (superusers; docs/governance.md, docs/api.md).
 * The work runs on the governance module's threads, never on the HTTP thread. */
#include <stdatomic.h>
#include <string.h>

#include "api/records_int.h"
#include "governance/governance.h"

static bool need_gov(struct http_req *req, struct api_env *env)
{
    if (!api__require_superuser(req, env, true))
        return false;
    if (!env->gov) {
        http_reply_error(req, 503, "Person deletion and export are not available.", NULL);
        return false;
    }
    return true;
}

static void delete_persons(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_gov(req, env))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    json_t *job = NULL;
    char err[256] = "";
    /* settings.persons.deleteRelations: the relations of a request that names none */
    json_t *persons = api__settings_section(env, "persons");
    int rc = gov_delete_submit(env->gov, body, json_object_get(persons, "deleteRelations"), &job,
                               err, sizeof(err));
    json_decref(persons);
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, "Failed to create the deletion.",
                         json_pack("{s:{s:s,s:s}}", "request", "code", "validation_invalid_value",
                                   "message", err));
        return;
    }
    if (rc == ERR_BUSY) {
        http_set_header(req, "Retry-After", "60");
        http_reply_error(req, 429, err, NULL);
        return;
    }
    if (rc != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    /* the request is in the audit trail through the router's reply hook (api/audit.c), the
     * job's end through the worker */
    http_reply_json(req, 202, job);
}

static void get_deletion(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_gov(req, env))
        return;
    json_t *job = NULL;
    const char *id = http_req_param(req, "id");
    int rc = gov_delete_get(env->gov, id, &job);
    if (rc == ERR_NOTFOUND) {
        http_reply_error(req, 404, "The requested resource wasn't found.", NULL);
        return;
    }
    if (rc != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    http_reply_json(req, 200, job);
}

/* ---- export: the governance thread fills a buffer the stream reads ---- */

struct export_ctx {
    struct gov_export *e;
    _Atomic(struct http_stream *) s;
    atomic_bool woken; /* a wake came before the stream existed */
};

static void export_wake(void *arg)
{
    struct export_ctx *x = arg;
    struct http_stream *s = atomic_load(&x->s);
    if (s)
        http_stream_wake(s);
    else
        atomic_store(&x->woken, true);
}

static long export_read(void *ctx, char *out, size_t max)
{
    struct export_ctx *x = ctx;
    long n = gov_export_read(x->e, out, max);
    return n < 0 ? HTTP_STREAM_END : n;
}

static void export_done(void *ctx)
{
    struct export_ctx *x = ctx;
    gov_export_release(x->e); /* no wake after this returns */
    struct http_stream *s = atomic_load(&x->s);
    if (s)
        http_stream_unref(s);
    free(x);
}

static void export_person(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_gov(req, env))
        return;
    const char *did = http_req_query(req, "distinctId");
    const char *coll = http_req_query(req, "collection");
    if (!did || !*did || strlen(did) > GOV_MAX_ID_BYTES) {
        http_reply_error(req, 400, "Failed to export.",
                         json_pack("{s:{s:s,s:s}}", "distinctId", "code", "validation_required",
                                   "message", "a distinct id of 1 to 200 bytes"));
        return;
    }
    if (coll && (!*coll || strlen(coll) > 100)) {
        http_reply_error(req, 400, "Failed to export.",
                         json_pack("{s:{s:s,s:s}}", "collection", "code",
                                   "validation_invalid_value", "message",
                                   "the name or id of an auth collection"));
        return;
    }
    struct export_ctx *x = xcalloc(1, sizeof(*x));
    int rc = gov_export_start(env->gov, did, coll, export_wake, x, &x->e);
    if (rc != 0) {
        free(x);
        if (rc == ERR_BUSY) {
            http_set_header(req, "Retry-After", "10");
            http_reply_error(req, 429, "Too many exports are running: try again shortly.", NULL);
        } else {
            http_reply_error(req, rc == ERR_INVALID ? 400 : 503, NULL, NULL);
        }
        return;
    }
    /* an export is in the audit trail through the router's reply hook (api/audit.c) */
    http_set_header(req, "Cache-Control", "no-store");
    struct http_stream *s = http_reply_stream(req, "application/json", export_read, export_done, x);
    atomic_store(&x->s, s);
    http_stream_wake(s); /* in case the first bytes came before the stream existed */
}

void api__register_persons(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/persons/delete", delete_persons, env);
    http_route(r, "GET", "/api/persons/deletions/{id}", get_deletion, env);
    http_route(r, "GET", "/api/persons/export", export_person, env);
}
