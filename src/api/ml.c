/* ml.c - /api/ml: training, versions and predictions of the ML module (docs/ml.md).
 * Training is queued for the module's worker (202 at once); predictions run inline (in
 * memory, at most ML_PREDICT_MAX_ROWS rows) under the model's rule. */
#include <string.h>

#include "api/records_int.h"
#include "ml/ml.h"
#include "models/models.h"

static bool need_ml(struct http_req *req, struct api_env *env, bool superuser)
{
    if (!env->ml || !env->store) {
        http_reply_error(req, 503, "Machine learning is not available.", NULL);
        return false;
    }
    return !superuser || api__require_superuser(req, env, true);
}

static void reply_rc(struct http_req *req, int rc, const char *what)
{
    switch (rc) {
    case ERR_NOTFOUND:
        http_reply_error(req, 404, "The model or version was not found.", NULL);
        break;
    case ERR_CONFLICT:
        http_reply_error(req, 409, "The model is already queued or training.", NULL);
        break;
    case ERR_LIMIT: http_reply_error(req, 429, "Too many trainings are queued.", NULL); break;
    case ERR_BUSY: http_reply_error(req, 503, "The model has no active version.", NULL); break;
    case ERR_INVALID: http_reply_error(req, 400, what, NULL); break;
    default: http_reply_error(req, 500, NULL, NULL);
    }
}

/* The rule text compiles against the collection catalogue (the model rule has no record of
 * its own: it reads @request.* and @collection.*). 400 naming "rule" when not. */
static bool rule_ok(struct http_req *req, struct api_env *env, const json_t *rule)
{
    if (!json_is_string(rule) || !*json_string_value(rule))
        return true;
    char msg[256] = "";
    struct store_collection *cat = store_collection_catalog(env->store);
    int rc = api__rule_check(req, env, cat, json_string_value(rule), msg, sizeof(msg));
    store_collection_unref(cat);
    if (rc == 0)
        return true;
    http_reply_error(
        req, 400, "Invalid model rule.",
        json_pack("{s:{s:s,s:s}}", "rule", "code", "validation_invalid_rule", "message", msg));
    return false;
}

/* Answers a training request through req (on the HTTP thread) or rep (a warehouse job). */
static void train_reply(struct http_req *req, struct api_wh_reply *rep, struct ml *ml,
                        const json_t *body)
{
    json_t *errs = NULL, *out = NULL;
    int rc = ml_train(ml, body, &errs, &out);
    int status = rc == 0              ? 202
                 : rc == ERR_INVALID  ? 400
                 : rc == ERR_CONFLICT ? 409
                 : rc == ERR_LIMIT    ? 429
                 : rc == ERR_BUSY     ? 503
                                      : 500;
    const char *msg = rc == ERR_INVALID    ? "Invalid training request."
                      : rc == ERR_CONFLICT ? "The model is already queued or training."
                      : rc == ERR_LIMIT    ? "Too many trainings are queued."
                      : rc == ERR_BUSY     ? "The server is stopping."
                                           : NULL;
    if (rc != ERR_INVALID) {
        json_decref(errs);
        errs = NULL;
    }
    if (req && rc == 0)
        http_reply_json(req, status, out);
    else if (req)
        http_reply_error(req, status, msg, errs);
    else if (rc == 0)
        api__wh_reply_json(rep, status, out);
    else
        api__wh_reply_error(rep, status, msg, errs);
}

/* Training from a data model: that the model exists is read from the warehouse, so the
 * request runs on the query threads. */
struct train_job {
    struct ml *ml;
    json_t *body;
};

static void train_job_free(void *arg)
{
    struct train_job *j = arg;
    json_decref(j->body);
    free(j);
}

static void run_train(struct wh_conn *conn, struct api_wh_reply *rep, void *arg)
{
    struct train_job *j = arg;
    const char *name = json_string_value(json_object_get(j->body, "model"));
    json_t *def = NULL;
    int rc = conn ? models_get(conn, name, &def) : ERR_BUSY;
    json_decref(def);
    if (rc == ERR_NOTFOUND) {
        char msg[200];
        snprintf(msg, sizeof(msg), "No data model is named %.64s.", name);
        api__wh_reply_error(rep, 400, "Invalid training request.",
                            json_pack("{s:{s:s,s:s}}", "model", "code", "validation_unknown_model",
                                      "message", msg));
    } else if (rc < 0) {
        api__wh_reply_error(rep, 503, "The warehouse is busy; try again.", NULL);
    } else {
        train_reply(NULL, rep, j->ml, j->body);
    }
}

static void create_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body || !rule_ok(req, env, json_object_get(body, "rule")))
        return;
    const json_t *model = json_object_get(body, "model");
    if (json_is_string(model) && !json_object_get(body, "query")) {
        json_t *errs = NULL, *norm = NULL;
        /* a bad spec is answered here; a good one once the model is found */
        if (ml_train_check(env->ml, body, &norm, &errs) != 0) {
            http_reply_error(req, 400, "Invalid training request.", errs);
            return;
        }
        json_decref(norm);
        struct train_job *j = xcalloc(1, sizeof(*j));
        j->ml = env->ml;
        j->body = json_deep_copy(body);
        api__wh_submit(env, req, run_train, j, train_job_free, 0);
        return;
    }
    train_reply(req, NULL, env->ml, body);
}

static void list_models(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    json_t *out = NULL;
    int rc = ml_model_list(env->ml, &out);
    if (rc)
        reply_rc(req, rc, NULL);
    else
        http_reply_json(req, 200, out);
}

static void get_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    json_t *out = NULL;
    int rc = ml_model_get(env->ml, http_req_param(req, "name"), &out);
    if (rc)
        reply_rc(req, rc, NULL);
    else
        http_reply_json(req, 200, out);
}

static void update_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const json_t *rule = json_object_get(body, "rule");
    const json_t *ap = json_object_get(body, "autoPromote");
    if ((rule && !json_is_null(rule) && !json_is_string(rule)) || (ap && !json_is_boolean(ap))) {
        http_reply_error(req, 400, "Invalid model update.",
                         json_pack("{s:{s:s,s:s}}", rule ? "rule" : "autoPromote", "code",
                                   "validation_invalid_type", "message",
                                   "rule: a filter or null; autoPromote: a bool."));
        return;
    }
    if (!rule_ok(req, env, rule))
        return;
    int rc = ml_model_update(env->ml, http_req_param(req, "name"), rule != NULL,
                             json_string_value(rule), ap ? json_is_true(ap) : -1);
    if (rc) {
        reply_rc(req, rc, NULL);
        return;
    }
    get_model(req, ctx);
}

static void delete_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    int rc = ml_model_delete(env->ml, http_req_param(req, "name"));
    if (rc)
        reply_rc(req, rc, NULL);
    else
        http_reply_empty(req, 204);
}

static void cancel_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    int rc = ml_cancel(env->ml, http_req_param(req, "name"));
    if (rc)
        http_reply_error(req, 404, "Nothing of this model is queued or training.", NULL);
    else
        http_reply_empty(req, 204);
}

/* Promotion and rollback read a model file (XGBoost loads it whole): they run on the
 * warehouse query threads, never on the HTTP thread. */
struct switch_job {
    struct ml *ml;
    char name[ML_NAME_MAX + 1];
    int64_t version; /* 0: roll back */
};

static void run_switch(struct wh_conn *conn, struct api_wh_reply *rep, void *arg)
{
    UNUSED(conn);
    struct switch_job *j = arg;
    int rc = j->version ? ml_promote(j->ml, j->name, j->version) : ml_rollback(j->ml, j->name);
    json_t *model = NULL;
    if (rc == 0 && (rc = ml_model_get(j->ml, j->name, &model)) == 0)
        api__wh_reply_json(rep, 200, model);
    else if (rc == ERR_NOTFOUND)
        api__wh_reply_error(rep, 404, "The model or version was not found.", NULL);
    else if (rc == ERR_INVALID)
        api__wh_reply_error(rep, 400,
                            j->version ? "Only a version that finished training can be promoted."
                                       : "There is no earlier active version to roll back to.",
                            NULL);
    else
        api__wh_reply_error(rep, 500, NULL, NULL);
}

static void switch_version(struct http_req *req, struct api_env *env, int64_t version)
{
    const char *name = http_req_param(req, "name");
    if (!name || strlen(name) > ML_NAME_MAX) {
        http_reply_error(req, 404, "The model or version was not found.", NULL);
        return;
    }
    struct switch_job *j = xcalloc(1, sizeof(*j));
    j->ml = env->ml;
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->version = version;
    api__wh_submit(env, req, run_switch, j, free, 0);
}

static void promote_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const json_t *v = json_object_get(body, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        http_reply_error(req, 400, "Invalid promotion.",
                         json_pack("{s:{s:s,s:s}}", "version", "code", "validation_required",
                                   "message", "The version number to make active."));
        return;
    }
    switch_version(req, env, json_integer_value(v));
}

static void score_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, true))
        return;
    int rc = ml_score(env->ml, http_req_param(req, "name"));
    if (rc == ERR_BUSY)
        http_reply_error(req, 400, "The model has no active version.", NULL);
    else if (rc == ERR_CONFLICT)
        http_reply_error(req, 409, "A scoring run is already queued or running.", NULL);
    else if (rc)
        reply_rc(req, rc, "The model has no score spec.");
    else
        http_reply_json(
            req, 202,
            json_pack("{s:s,s:s}", "name", http_req_param(req, "name"), "status", "queued"));
}

static void rollback_model(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (need_ml(req, env, true))
        switch_version(req, env, 0);
}

/* Whether the requester may score with the model: superusers always; others when the rule is
 * "" or holds for the request (null: superusers only). Answers itself when not. body NULL:
 * not parsed yet (parsed here only when the rule reads @request.body). */
static bool allowed(struct http_req *req, struct api_env *env, const char *name, json_t *body)
{
    if (env->is_superuser && env->is_superuser(req, env->auth_arg))
        return true;
    char *rule = NULL;
    int rc = ml_model_rule(env->ml, name, &rule);
    if (rc) {
        reply_rc(req, rc, NULL);
        return false;
    }
    bool ok = rule && !*rule;
    if (rule && *rule && !body && strstr(rule, "@request.body") &&
        !(body = http_req_json(req, false))) {
        free(rule);
        return false;
    }
    if (rule && *rule) {
        struct store_collection *cat = store_collection_catalog(env->store);
        struct api_rules ar;
        api__rules_init(&ar, req, env);
        api__rules_set_body(&ar, body);
        struct store_cond cond;
        if (api__rule_compile_expr(&ar, cat, rule, &cond) == 0) {
            /* the rule has no record: a stand-in for the model answers name/id */
            json_t *image = json_pack("{s:s,s:s,s:s}", "id", name, "name", name, "type", "model");
            ok = store_record_match(env->store, cat, image, &cond) == 1;
            json_decref(image);
        }
        store_collection_unref(cat);
    }
    free(rule);
    if (!ok)
        http_reply_error(req, 403, "You are not allowed to use this model.", NULL);
    return ok;
}

static void predict(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!need_ml(req, env, false))
        return;
    /* the text path takes a valid body of numbers and plain categories; everything else (and
     * every error) goes the JSON way below, which answers it */
    struct str raw = http_req_body(req);
    struct ml_request *mr = NULL;
    if (ml_request_parse(env->ml, http_req_param(req, "name"), raw.ptr, raw.len, &mr) == 0) {
        char *text = NULL;
        size_t len = 0;
        int rc = allowed(req, env, http_req_param(req, "name"), NULL)
                     ? ml_request_run(env->ml, mr, &text, &len)
                     : 1;
        ml_request_free(mr);
        if (rc == 0)
            http_reply_owned(req, 200, "application/json", text, len);
        else if (rc < 0)
            reply_rc(req, rc, NULL);
        return;
    }
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const char *name = http_req_param(req, "name");
    if (!allowed(req, env, name, body))
        return;
    const json_t *c = json_object_get(body, "contributions");
    if (c && !json_is_boolean(c)) {
        http_reply_error(req, 400, "Invalid prediction request.",
                         json_pack("{s:{s:s,s:s}}", "contributions", "code",
                                   "validation_invalid_type", "message", "Must be a bool."));
        return;
    }
    json_t *errs = NULL, *out = NULL;
    int rc = ml_predict(env->ml, name, json_object_get(body, "rows"), json_is_true(c), &out, &errs);
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, "Invalid prediction request.", errs);
        return;
    }
    json_decref(errs);
    if (rc)
        reply_rc(req, rc, NULL);
    else
        http_reply_json(req, 200, out);
}

void api__register_ml(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/ml/models", list_models, env);
    http_route(r, "POST", "/api/ml/models", create_model, env);
    http_route(r, "GET", "/api/ml/models/{name}", get_model, env);
    http_route(r, "PATCH", "/api/ml/models/{name}", update_model, env);
    http_route(r, "DELETE", "/api/ml/models/{name}", delete_model, env);
    http_route(r, "POST", "/api/ml/models/{name}/cancel", cancel_model, env);
    http_route(r, "POST", "/api/ml/models/{name}/promote", promote_model, env);
    http_route(r, "POST", "/api/ml/models/{name}/rollback", rollback_model, env);
    http_route(r, "POST", "/api/ml/models/{name}/predict", predict, env);
    http_route(r, "POST", "/api/ml/models/{name}/score", score_model, env);
}
