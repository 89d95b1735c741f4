/* records.c - /api/collections/{collection}/records: PocketBase's list/search, view, create,
 * update and delete. Until API rules are wired every rule acts as null: superusers only.
 * Filters and sorts go through the filter compiler; values are always bound parameters. */
#include <string.h>

#include "api/records_int.h"

struct rec_req {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
};

static void coll_release(void *arg)
{
    store_collection_unref(arg);
}

/* Common start of every handler: store, superuser, collection. */
static bool begin(struct http_req *req, struct api_env *env, struct rec_req *rr)
{
    rr->req = req;
    rr->env = env;
    rr->c = NULL;
    if (!api__require_superuser(req, env, false))
        return false;
    if (store_collection_get(env->store, http_req_param(req, "collection"), &rr->c) != 0) {
        http_reply_error(req, 404, "Missing collection context.", NULL);
        return false;
    }
    arena_on_release(http_req_arena(req), coll_release, rr->c);
    return true;
}

/* Expands and picks fields of one record (TAKES rec), then replies 200. */
static void reply_record(struct rec_req *rr, json_t *rec)
{
    json_t *arr = json_pack("[o]", rec);
    api__expand(rr->env, rr->c, arr, http_req_query(rr->req, "expand"));
    json_t *picked = api__pick_fields(json_array_get(arr, 0), http_req_query(rr->req, "fields"));
    json_decref(arr);
    http_reply_json(rr->req, 200, picked);
}

static void list_records(struct http_req *req, void *ctx)
{
    struct rec_req rr;
    if (!begin(req, ctx, &rr))
        return;
    struct api_env *env = ctx;
    struct store_list_query q;
    if (!api__list_query(req, env, rr.c, &q))
        return;
    struct store_list_result res;
    int rc = store_record_list(env->store, rr.c, &q, &res);
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, "Invalid filter or sort parameters.", NULL);
        return;
    }
    if (rc == ERR_NOTFOUND) { /* the collection went away meanwhile */
        http_reply_error(req, 404, "Missing collection context.", NULL);
        return;
    }
    if (rc) {
        xlog_error("cannot list records of %s: %s", rr.c->name, store_errmsg(env->store));
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
        return;
    }
    api__expand(env, rr.c, res.items, http_req_query(req, "expand"));
    json_t *items = api__pick_fields(res.items, http_req_query(req, "fields"));
    json_decref(res.items);
    api__reply_list(req, &q, &res, items);
}

static void view_record(struct http_req *req, void *ctx)
{
    struct rec_req rr;
    if (!begin(req, ctx, &rr))
        return;
    json_t *rec = NULL;
    int rc = store_record_get(rr.env->store, rr.c, http_req_param(req, "id"), &rec);
    if (rc == ERR_NOTFOUND) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    if (rc) {
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
        return;
    }
    reply_record(&rr, rec);
}

static json_t *verr(const char *code, const char *message, json_t *params)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (params)
        json_object_set_new(e, "params", params);
    return e;
}

/* The password of an auth record body, checked against the field. Returns 0 with *pw_out
 * NULL when the body sets no password; ERR_INVALID with errors filled. */
static int password_from_body(struct rec_req *rr, json_t *body, json_t *errors, const char **pw_out)
{
    *pw_out = NULL;
    if (rr->c->type != STORE_COLLECTION_AUTH)
        return 0;
    json_t *pw = json_object_get(body, "password");
    if (!pw || (json_is_string(pw) && json_string_length(pw) == 0))
        return 0;
    const struct store_field *f = NULL;
    for (size_t i = 0; i < rr->c->n_fields; i++)
        if (rr->c->fields[i].type == STORE_FIELD_PASSWORD)
            f = &rr->c->fields[i];
    if (!f)
        return 0;
    if (!json_is_string(pw)) {
        json_object_set_new(errors, "password",
                            verr("validation_invalid_value", "Must be a string.", NULL));
        return ERR_INVALID;
    }
    const char *p = json_string_value(pw);
    size_t n = 0;
    for (const char *q = p; *q; q++)
        if (((unsigned char)*q & 0xC0) != 0x80)
            n++;
    double min = f->has_min ? f->min : 8, max = f->has_max ? f->max : 71;
    char msg[96];
    if ((double)n < min) {
        snprintf(msg, sizeof(msg), "Must be at least %.0f character(s).", min);
        json_object_set_new(
            errors, "password",
            verr("validation_min_text_constraint", msg, json_pack("{s:i}", "min", (int)min)));
    } else if ((double)n > max) {
        snprintf(msg, sizeof(msg), "Must be no more than %.0f character(s).", max);
        json_object_set_new(
            errors, "password",
            verr("validation_max_text_constraint", msg, json_pack("{s:i}", "max", (int)max)));
    }
    json_t *confirm = json_object_get(body, "passwordConfirm");
    if (!json_is_string(confirm) || strcmp(json_string_value(confirm), p) != 0)
        json_object_set_new(errors, "passwordConfirm",
                            verr("validation_values_mismatch", "Values don't match.", NULL));
    if (json_object_size(errors))
        return ERR_INVALID;
    *pw_out = p;
    return 0;
}

/* A record write, possibly waiting for its password hash. Lives in the request arena. */
struct write_job {
    struct rec_req rr;
    json_t *body;
    bool create;
};

static void write_finish(struct write_job *job, const char *hash)
{
    struct rec_req *rr = &job->rr;
    struct http_req *req = rr->req;
    const char *what = job->create ? "Failed to create record." : "Failed to update record.";
    json_t *rec = NULL, *errors = NULL;
    int rc;
    if (job->create)
        rc = store_record_create(rr->env->store, rr->c, job->body, hash, &errors, &rec);
    else
        rc = store_record_update(rr->env->store, rr->c, http_req_param(req, "id"), job->body, hash,
                                 &errors, &rec);
    if (rc == 0) {
        reply_record(rr, rec);
    } else if (rc == ERR_INVALID) {
        http_reply_error(req, 400, what, errors ? json_incref(errors) : NULL);
    } else if (rc == ERR_NOTFOUND) {
        http_reply_error(req, 404, NULL, NULL);
    } else if (rc == ERR_BUSY) {
        http_reply_error(req, 503, "The data store is busy; try again.", NULL);
    } else {
        xlog_error("cannot write a record of %s: %s", rr->c->name, store_errmsg(rr->env->store));
        http_reply_error(req, 500, NULL, NULL);
    }
    json_decref(errors);
}

static void hashed(void *arg, int rc, const char *hash)
{
    struct write_job *job = arg;
    struct http_req *req = job->rr.req;
    if (rc == 0 && hash)
        write_finish(job, hash);
    else
        http_reply_error(req, 503, "Password hashing is not available; try again.", NULL);
    http_req_resume(req); /* job lives in the request's arena: not touched after this */
}

static void write_record(struct http_req *req, void *ctx, bool create)
{
    struct write_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    if (!begin(req, ctx, &job->rr))
        return;
    job->create = create;
    job->body = api__record_body(req, !create);
    if (!job->body)
        return;
    const char *what = create ? "Failed to create record." : "Failed to update record.";
    if (!json_is_object(job->body)) {
        http_reply_error(req, 400, what, NULL);
        return;
    }
    json_t *errors = json_object();
    const char *pw = NULL;
    int rc = password_from_body(&job->rr, job->body, errors, &pw);
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, what, errors);
        return;
    }
    json_decref(errors);
    if (!pw) {
        write_finish(job, NULL);
        return;
    }
    struct api_env *env = ctx;
    if (!env->hash_password) {
        http_reply_error(req, 503, "Password hashing is not available.", NULL);
        return;
    }
    http_req_suspend(req);
    rc = env->hash_password(pw, hashed, job, env->auth_arg);
    if (rc) {
        http_reply_error(req, 503, "Password hashing is busy; try again.", NULL);
        http_req_resume(req);
    }
}

static void create_record(struct http_req *req, void *ctx)
{
    write_record(req, ctx, true);
}

static void update_record(struct http_req *req, void *ctx)
{
    write_record(req, ctx, false);
}

static void delete_record(struct http_req *req, void *ctx)
{
    struct rec_req rr;
    if (!begin(req, ctx, &rr))
        return;
    int rc = store_record_delete(rr.env->store, rr.c, http_req_param(req, "id"));
    if (rc == 0)
        http_reply_empty(req, 204);
    else if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc == ERR_CONFLICT)
        http_reply_error(req, 400,
                         "Failed to delete record. Make sure that the record is not part of a "
                         "required relation reference.",
                         NULL);
    else
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
}

void api__register_records(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/collections/{collection}/records", list_records, env);
    http_route(r, "POST", "/api/collections/{collection}/records", create_record, env);
    http_route(r, "GET", "/api/collections/{collection}/records/{id}", view_record, env);
    http_route(r, "PATCH", "/api/collections/{collection}/records/{id}", update_record, env);
    http_route(r, "DELETE", "/api/collections/{collection}/records/{id}", delete_record, env);
}
