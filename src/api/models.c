/* models.c - /api/models (superusers): model definitions, runs on demand and the run history
 * (docs/models.md). Every handler needs the warehouse (validation binds the SQL), so each one
 * runs as a job on the warehouse query threads (api__wh_submit), never on the HTTP thread; a
 * run itself is only queued for the models' runner thread. */
#include <string.h>

#include "api/api_int.h"
#include "api/records_int.h"
#include "models/models.h"

#define MODELS_JOB_TIMEOUT_MS 60000

enum job_kind { JOB_LIST, JOB_GET, JOB_CREATE, JOB_UPDATE, JOB_DELETE, JOB_RUN, JOB_RUNS };

struct models_job {
    enum job_kind kind;
    struct api_env *env;
    char *name;   /* owned, or NULL */
    json_t *body; /* owned, or NULL */
    int64_t limit;
};

static void job_free(void *arg)
{
    struct models_job *j = arg;
    free(j->name);
    json_decref(j->body);
    free(j);
}

static void reply_rc(struct api_wh_reply *rep, int rc, struct wh_conn *c)
{
    if (rc == ERR_NOTFOUND)
        api__wh_reply_error(rep, 404, "The requested model wasn't found.", NULL);
    else if (rc == ERR_BUSY)
        api__wh_reply_error(rep, 503, "The warehouse is busy; try again.", NULL);
    else {
        xlog_error("models request failed: %s", c ? wh_errmsg(c) : err_str(rc));
        api__wh_reply_error(rep, 500, NULL, NULL);
    }
}

static const char *first_message(const json_t *errors)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)errors, k, v)
    {
        const char *msg = json_string_value(json_object_get(v, "message"));
        if (msg)
            return msg;
    }
    return "invalid model";
}

static void save(struct models_job *j, struct wh_conn *c, struct api_wh_reply *rep)
{
    json_t *errors = NULL, *out = NULL, *body = j->body;
    json_t *merged = NULL;
    int rc;
    if (j->kind == JOB_UPDATE) { /* PATCH: the given keys over the stored definition */
        json_t *old;
        if ((rc = models_get(c, j->name, &old)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        json_object_update(old, body);
        merged = old;
        body = merged;
    }
    rc = models_save(j->env->store, c, j->kind == JOB_UPDATE ? j->name : NULL, body, &errors, &out);
    if (rc == 0) {
        json_object_set_new(out, "lastRun", json_null());
        api__wh_reply_json(rep, 200, out);
    } else if (rc == ERR_INVALID) {
        char msg[1400];
        snprintf(msg, sizeof(msg), "Invalid model: %s", first_message(errors));
        api__wh_reply_error(rep, 400, msg, errors);
        errors = NULL;
    } else if (rc == ERR_CONFLICT) {
        api__wh_reply_error(rep, 400,
                            "Invalid model: a model or table with this name already exists.",
                            json_pack("{s:{s:s,s:s}}", "name", "code", "validation_not_unique",
                                      "message", "a model or table with this name already exists"));
    } else {
        reply_rc(rep, rc, c);
    }
    json_decref(errors);
    json_decref(merged);
}

static void run_job(struct wh_conn *c, struct api_wh_reply *rep, void *arg)
{
    struct models_job *j = arg;
    json_t *out = NULL;
    int rc;
    if (!c) {
        api__wh_reply_error(rep, 503, "The warehouse is not available.", NULL);
        return;
    }
    switch (j->kind) {
    case JOB_LIST:
        if ((rc = models_list(c, &out)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        api__wh_reply_json(rep, 200, json_pack("{s:o}", "items", out));
        return;
    case JOB_GET:
        if ((rc = models_get(c, j->name, &out)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        api__wh_reply_json(rep, 200, out);
        return;
    case JOB_CREATE:
    case JOB_UPDATE: save(j, c, rep); return;
    case JOB_DELETE: {
        char *why = NULL;
        rc = models_delete(c, j->name, &why);
        if (rc == ERR_CONFLICT) {
            char msg[400];
            snprintf(msg, sizeof(msg), "The model cannot be deleted: %s.", why);
            api__wh_reply_error(rep, 400, msg, NULL);
        } else if (rc < 0) {
            reply_rc(rep, rc, c);
        } else {
            api__wh_reply_json(rep, 204, NULL);
        }
        free(why);
        return;
    }
    case JOB_RUN: {
        if ((rc = models_get(c, j->name, &out)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        json_decref(out);
        char id[ID_LEN + 1];
        rc = models_request_run(j->env->models, j->name,
                                json_is_true(json_object_get(j->body, "fullRefresh")),
                                json_is_true(json_object_get(j->body, "confirm")), id);
        if (rc < 0) {
            api__wh_reply_error(rep, 503, "Too many model runs are waiting; try again.", NULL);
            return;
        }
        api__wh_reply_json(
            rep, 202, json_pack("{s:s,s:s,s:s}", "id", id, "model", j->name, "status", "queued"));
        return;
    }
    case JOB_RUNS: {
        if ((rc = models_get(c, j->name, &out)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        json_decref(out);
        if ((rc = models_runs(c, j->name, j->limit, &out)) < 0) {
            reply_rc(rep, rc, c);
            return;
        }
        json_t *items = models_pending(j->env->models, j->name);
        json_array_extend(items, out);
        json_decref(out);
        api__wh_reply_json(rep, 200, json_pack("{s:o}", "items", items));
        return;
    }
    }
}

static void submit(struct http_req *req, struct api_env *env, enum job_kind kind, bool with_body)
{
    if (!api__require_superuser(req, env, true))
        return;
    if (!env->models) {
        http_reply_error(req, 503, "Models are not available.", NULL);
        return;
    }
    json_t *body = NULL;
    if (with_body) {
        body = http_req_json(req, kind == JOB_RUN);
        if (!body)
            return;
        if (!json_is_object(body)) {
            http_reply_error(req, 400, "The request body must be a JSON object.", NULL);
            return;
        }
    }
    struct models_job *j = xcalloc(1, sizeof(*j));
    j->kind = kind;
    j->env = env;
    const char *name = http_req_param(req, "name");
    j->name = name ? xstrdup(name) : NULL;
    j->body = body ? json_deep_copy(body) : NULL;
    j->limit = 20;
    const char *lim = http_req_query(req, "limit");
    if (lim) {
        char *end;
        long long v = strtoll(lim, &end, 10);
        if (*end || v < 1 || v > 1000) {
            job_free(j);
            http_reply_error(req, 400, "limit must be an integer from 1 to 1000.", NULL);
            return;
        }
        j->limit = v;
    }
    api__wh_submit(env, req, run_job, j, job_free, MODELS_JOB_TIMEOUT_MS);
}

static void h_list(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_LIST, false);
}
static void h_create(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_CREATE, true);
}
static void h_get(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_GET, false);
}
static void h_update(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_UPDATE, true);
}
static void h_delete(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_DELETE, false);
}
static void h_run(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_RUN, true);
}
static void h_runs(struct http_req *req, void *ctx)
{
    submit(req, ctx, JOB_RUNS, false);
}

void api__register_models(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/models", h_list, env);
    http_route(r, "POST", "/api/models", h_create, env);
    http_route(r, "GET", "/api/models/{name}", h_get, env);
    http_route(r, "PATCH", "/api/models/{name}", h_update, env);
    http_route(r, "DELETE", "/api/models/{name}", h_delete, env);
    http_route(r, "POST", "/api/models/{name}/run", h_run, env);
    http_route(r, "GET", "/api/models/{name}/runs", h_runs, env);
}
