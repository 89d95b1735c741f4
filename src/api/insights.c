/* insights.c - POST /api/insights/{trends|funnel|retention|stickiness|lifecycle} (superusers
 * and analysts): the body is the insight query of docs/analytics.md. It runs on the warehouse
 * query threads that the SQL API uses (api__wh_submit), never on an HTTP thread. Also who is an
 * analyst (settings.analytics.accessRule, docs/governance.md "Analyst access"). */
#include <string.h>

#include "analytics/analytics.h"
#include "api/records_int.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

/* ---- analyst access ---- */

int api__analytics_rule_check(struct http_req *req, struct api_env *env, const char *rule,
                              char *msg, size_t msg_cap)
{
    if (!rule || !*rule)
        return 0;
    if (strlen(rule) > 4096) {
        snprintf(msg, msg_cap, "the rule is longer than 4096 characters");
        return ERR_INVALID;
    }
    struct store_collection *c = NULL;
    if (!env->store || store_collection_get(env->store, API_SUPERUSERS_ID, &c) != 0) {
        snprintf(msg, msg_cap, "the data store is not available");
        return ERR_INVALID;
    }
    int rc = api__rule_check(req, env, c, rule, msg, msg_cap);
    store_collection_unref(c);
    return rc;
}

/* Whether the settings' accessRule holds for the requester who (an auth record). */
static int rule_holds(struct http_req *req, struct api_env *env, const struct api_identity *who,
                      bool *holds_out)
{
    *holds_out = false;
    json_t *sec = api__settings_section(env, "analytics");
    const char *rule = json_string_value(json_object_get(sec, "accessRule"));
    struct store_collection *c = NULL;
    int rc = 0;
    if (!rule || !*rule || !who->collection_id ||
        store_collection_get(env->store, who->collection_id, &c) != 0)
        goto out;
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    api__rules_init(ar, req, env);
    struct store_cond cond;
    rc = api__rule_compile_expr(ar, c, rule, &cond);
    if (rc != 0) {
        xlog_warn("settings.analytics.accessRule does not compile against %s; nobody but "
                  "superusers may use analytics",
                  c->name);
        rc = 0;
        goto out;
    }
    json_t *rec = NULL;
    api__deadline_start(env); /* a bounded point read */
    rc = store_record_get_if(env->store, c, who->record_id, cond.sql ? &cond : NULL, &rec);
    api__deadline_lift(env);
    json_decref(rec);
    *holds_out = rc == 0;
    rc = rc == 0 || rc == ERR_NOTFOUND ? 0 : rc;
out:
    store_collection_unref(c);
    json_decref(sec);
    return rc;
}

enum api_analytics api__analytics_access(struct http_req *req, struct api_env *env)
{
    if (!env->store) {
        http_reply_error(req, 503, "The data store is not available.", NULL);
        return API_ANALYTICS_NONE;
    }
    if (env->is_superuser && env->is_superuser(req, env->auth_arg))
        return API_ANALYTICS_SUPERUSER;
    const struct api_identity *who = api__identity(req, env);
    if (!who->record_id) {
        http_reply_error(req, 401, "The request requires valid authorization token.", NULL);
        return API_ANALYTICS_NONE;
    }
    bool holds = false;
    int rc = rule_holds(req, env, who, &holds);
    if (rc == ERR_TIMEOUT) {
        api__reply_timeout(req);
        return API_ANALYTICS_NONE;
    }
    if (rc != 0 || !holds) {
        http_reply_error(req, 403, "The authorized record is not allowed to perform this action.",
                         NULL);
        return API_ANALYTICS_NONE;
    }
    return API_ANALYTICS_ANALYST;
}

struct wh_scope *api__analyst_scope(struct api_env *env)
{
    struct store_collection **list = NULL;
    size_t n = 0;
    if (store_collection_list(env->store, &list, &n) != 0)
        return NULL;
    struct wh_scope *s = xcalloc(1, sizeof(*s));
    char **ids = xcalloc(n ? n : 1, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        if (list[i]->type == STORE_COLLECTION_AUTH)
            ids[s->n_auth_collections++] = xstrdup(list[i]->id);
    s->auth_collections = (const char *const *)ids;
    store_collection_list_free(list, n);
    return s;
}

void api__analyst_scope_free(struct wh_scope *scope)
{
    if (!scope)
        return;
    for (size_t i = 0; i < scope->n_auth_collections; i++)
        free((char *)scope->auth_collections[i]);
    free((void *)scope->auth_collections);
    free(scope);
}

struct insight_job {
    enum analytics_kind kind;
    json_t *query; /* owned: a copy of the request's body */
};

static void insight_job_free(void *arg)
{
    struct insight_job *job = arg;
    json_decref(job->query);
    free(job);
}

static void run_insight(struct wh_conn *conn, struct api_wh_reply *rep, void *arg)
{
    struct insight_job *job = arg;
    struct analytics_out out;
    int rc = ERR_INTERNAL;
    memset(&out, 0, sizeof(out));
    if (conn)
        rc = analytics_run(conn, job->kind, job->query, time_now_us(), &out);
    if (rc == 0) {
        char *text = json_dumps(out.result, JSON_COMPACT | JSON_REAL_PRECISION(17));
        api__wh_reply_owned(rep, 200, text);
    } else if (rc == ERR_INVALID) {
        api__wh_reply_error(rep, 400, "Invalid insight query.", out.errors);
        out.errors = NULL;
    } else if (rc == ERR_BUSY) {
        api__wh_reply_error(rep, 400, "The query took longer than the statement timeout.",
                            json_pack("{s:s}", "detail", out.message));
    } else if (rc == ERR_LIMIT) { /* over the warehouse's memory limit, even spilling */
        api__wh_reply_error(rep, 400, "The insight needs more memory than the warehouse allows.",
                            json_pack("{s:s}", "detail", out.message));
    } else {
        xlog_error("insight failed: %s", conn ? out.message : "no warehouse connection");
        api__wh_reply_error(rep, 503, NULL, NULL);
    }
    analytics_out_release(&out);
}

static void post_insight(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (api__analytics_access(req, env) == API_ANALYTICS_NONE)
        return;
    enum analytics_kind kind;
    if (analytics_kind_parse(http_req_param(req, "kind"), &kind) != 0) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    struct insight_job *job = xcalloc(1, sizeof(*job));
    job->kind = kind;
    job->query = json_deep_copy(body);
    /* an insight runs several statements, each under the statement timeout: no deadline of
     * the pool's own (shutdown still does not wait for it) */
    api__wh_submit(env, req, run_insight, job, insight_job_free, 0);
}

void api__register_insights(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/insights/{kind}", post_insight, env);
}
