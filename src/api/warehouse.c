/* warehouse.c - the SQL API over the warehouse, the pipeline's status (superusers), and the
 * pool of warehouse query threads that the SQL API and the insights (insights.c) share.
 *
 * A query can run for seconds, so it never runs on an HTTP thread: the request is suspended
 * and queued (api__wh_submit) for a small pool of query threads, each with its own warehouse
 * connection; the thread runs the job, which replies, and resumes the request. The queue is
 * bounded: when it is full the request gets 503 with Retry-After at once. */
#include <pthread.h>
#include <string.h>

#include "api/records_int.h"
#include "pipeline/pipeline.h"
#include "warehouse/warehouse.h"

#define SQL_THREADS 2
#define SQL_QUEUE 64
#define SQL_MAX_TEXT (1 << 20)

struct wh_job {
    struct wh_job *next;
    struct http_req *req;
    api_wh_job_cb run;
    void *arg;
};

struct sql_job {
    const char *sql;      /* in the request's arena */
    const json_t *params; /* borrowed from the request's body */
};

struct api_sql {
    struct wh *wh;
    pthread_t threads[SQL_THREADS];
    struct wh_conn *conns[SQL_THREADS]; /* under mu, to interrupt them at stop */
    size_t n_threads;
    pthread_mutex_t mu; /* leaf: the queue */
    pthread_cond_t cv;
    struct wh_job *head, **tail;
    size_t queued;
    bool stopping;
};

static void run_sql(struct wh_conn *conn, struct http_req *req, void *arg)
{
    struct sql_job *job = arg;
    struct wh_query q = {.sql = job->sql, .params = job->params, .timeout_ms = 0, .max_rows = 0};
    struct wh_result res = {0};
    int rc = conn ? wh_query(conn, &q, &res) : ERR_INTERNAL;
    if (rc == 0) {
        json_t *body = wh_result_to_json(&res);
        char *text = json_dumps(body, WH_RESULT_JSON_FLAGS);
        json_decref(body);
        http_reply_owned(req, 200, "application/json", text, strlen(text));
    } else if (rc == ERR_DENIED || rc == ERR_INVALID) {
        json_t *data = json_pack("{s:s}", "detail", wh_errmsg(conn));
        http_reply_error(
            req, 400,
            rc == ERR_DENIED ? "Only read-only queries are allowed." : "The query failed.", data);
    } else if (rc == ERR_LIMIT) {
        http_reply_error(req, 400, "The query result is too large.",
                         json_pack("{s:s}", "detail", wh_errmsg(conn)));
    } else if (rc == ERR_BUSY) {
        http_reply_error(req, 400, "The query took longer than the statement timeout.",
                         json_pack("{s:s}", "detail", wh_errmsg(conn)));
    } else {
        xlog_error("warehouse query failed: %s", conn ? wh_errmsg(conn) : "no connection");
        http_reply_error(req, 503, NULL, NULL);
    }
    wh_result_release(&res);
}

struct sql_thread {
    struct api_sql *s;
    size_t slot;
};

static void *sql_main(void *arg)
{
    struct sql_thread t = *(struct sql_thread *)arg;
    free(arg);
    struct api_sql *s = t.s;
    struct wh_conn *conn = NULL;
    if (wh_conn_open(s->wh, &conn) != 0) {
        xlog_error("cannot open a warehouse connection for queries: %s", wh_errmsg(NULL));
        conn = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->conns[t.slot] = conn;
    pthread_mutex_unlock(&s->mu);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        struct wh_job *job = s->head;
        if (job) {
            s->head = job->next;
            if (!s->head)
                s->tail = &s->head;
            s->queued--;
        }
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (!job)
            break; /* stopping and drained */
        if (stopping) {
            http_reply_error(job->req, 503, "The server is shutting down.", NULL);
            http_req_resume(job->req);
            continue;
        }
        job->run(conn, job->req, job->arg);
        http_req_resume(job->req);
    }
    pthread_mutex_lock(&s->mu);
    s->conns[t.slot] = NULL;
    pthread_mutex_unlock(&s->mu);
    if (conn)
        wh_conn_close(conn);
    return NULL;
}

int api_sql_start(struct api_env *env, struct wh *wh)
{
    struct api_sql *s = xcalloc(1, sizeof(*s));
    s->wh = wh;
    s->tail = &s->head;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    for (; s->n_threads < SQL_THREADS; s->n_threads++) {
        struct sql_thread *t = xmalloc(sizeof(*t));
        t->s = s;
        t->slot = s->n_threads;
        if (pthread_create(&s->threads[s->n_threads], NULL, sql_main, t) != 0) {
            free(t);
            break;
        }
    }
    if (s->n_threads == 0) {
        free(s);
        return ERR_INTERNAL;
    }
    env->sql = s;
    return 0;
}

void api_sql_stop(struct api_env *env)
{
    struct api_sql *s = env->sql;
    if (!s || s->n_threads == 0)
        return;
    /* running queries are interrupted and answered; queued ones get 503; new ones get 503 */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (size_t i = 0; i < s->n_threads; i++)
        if (s->conns[i])
            wh_interrupt(s->conns[i]);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    s->n_threads = 0;
}

void api_sql_free(struct api_env *env)
{
    struct api_sql *s = env->sql;
    if (!s)
        return;
    api_sql_stop(env);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    env->sql = NULL;
}

static void post_sql(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (!env->sql) {
        http_reply_error(req, 503, "The warehouse is not available.", NULL);
        return;
    }
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    json_t *jq = json_object_get(body, "query");
    json_t *jp = json_object_get(body, "params");
    if (!json_is_string(jq) || json_string_length(jq) == 0 ||
        json_string_length(jq) > SQL_MAX_TEXT) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                         json_pack("{s:{s:s,s:s}}", "query", "code", "validation_required",
                                   "message", "Must be a non-empty SQL string."));
        return;
    }
    if (jp && !json_is_array(jp) && !json_is_null(jp)) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                         json_pack("{s:{s:s,s:s}}", "params", "code", "validation_invalid_value",
                                   "message", "Must be an array."));
        return;
    }
    struct sql_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->sql = arena_strdup(http_req_arena(req), json_string_value(jq));
    job->params = json_is_array(jp) ? jp : NULL;
    api__wh_submit(env, req, run_sql, job);
}

void api__wh_submit(struct api_env *env, struct http_req *req, api_wh_job_cb run, void *arg)
{
    struct api_sql *s = env->sql;
    if (!s) {
        http_reply_error(req, 503, "The warehouse is not available.", NULL);
        return;
    }
    struct wh_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->req = req;
    job->run = run;
    job->arg = arg;
    http_req_suspend(req);
    pthread_mutex_lock(&s->mu);
    bool full = s->queued >= SQL_QUEUE || s->stopping;
    if (!full) {
        *s->tail = job;
        s->tail = &job->next;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (full) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Too many warehouse queries are waiting; try again.", NULL);
        http_req_resume(req);
    }
}

static void get_pipeline(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (!env->pipeline) {
        http_reply_error(req, 503, "The pipeline is not running.", NULL);
        return;
    }
    http_reply_json(req, 200, pipeline_status_json(env->pipeline));
}

void api__register_warehouse(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/warehouse/sql", post_sql, env);
    http_route(r, "GET", "/api/pipeline", get_pipeline, env);
}
