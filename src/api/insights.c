/* insights.c - POST /api/insights/{trends|funnel|retention|stickiness|lifecycle} (superusers):
 * the body is the insight query of docs/analytics.md. It runs on the warehouse query threads
 * that the SQL API uses (api__wh_submit), never on an HTTP thread. */
#include <string.h>

#include "analytics/analytics.h"
#include "api/records_int.h"

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
    } else {
        xlog_error("insight failed: %s", conn ? out.message : "no warehouse connection");
        api__wh_reply_error(rep, 503, NULL, NULL);
    }
    analytics_out_release(&out);
}

static void post_insight(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
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
