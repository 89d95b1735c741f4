/* warehouse.c - the SQL API over the warehouse, the pipeline's status (superusers), and the
 * pool of warehouse query threads that the SQL API and the insights (insights.c) share.
 *
 * A query can run for seconds, so it never runs on an HTTP thread: the request is suspended
 * and queued (api__wh_submit) for a small pool of query threads, each with its own warehouse
 * connection; the thread runs the job, which builds the reply, and the thread sends it and
 * resumes the request. The queue is bounded: when it is full the request gets 503 with
 * Retry-After at once.
 *
 * DuckDB checks its interrupt only between steps, so one long function call (folding
 * repeat('x', 2e9)) runs on past the statement timeout. A watchdog thread answers such a job
 * with the timeout error once its deadline (plus SQL_GRACE_MS) passes and resumes the request;
 * the stuck thread finishes in the background and discards its result. At shutdown
 * api_sql_stop waits at most SQL_STOP_WAIT_MS for the threads and leaves the stuck ones
 * running: the caller must then leave the warehouse open (api_sql_stop's result). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "api/records_int.h"
#include "pipeline/pipeline.h"
#include "warehouse/warehouse.h"

#define SQL_THREADS 2
#define SQL_QUEUE 64
#define SQL_MAX_TEXT (1 << 20)
#define SQL_GRACE_MS 100      /* past the deadline before the watchdog answers for the thread */
#define SQL_STOP_WAIT_MS 2000 /* how long api_sql_stop waits for the threads */

/* Who answers a job's request. The worker and the watchdog each try to move a job out of
 * JOB_RUNNING with a compare-and-swap; the winner alone replies and resumes the request, the
 * loser never touches the request again (it may already be freed). */
enum { JOB_RUNNING, JOB_ANSWERED_BY_WORKER, JOB_ANSWERED_BY_WATCHDOG };

/* A queued or running job. Heap memory owned by the pool (not the request's arena), so that a
 * worker stuck in one long engine call can outlive the request the watchdog already answered.
 * Under s->mu while queued or in s->cur; state is the one field both threads race on. */
struct wh_job {
    struct wh_job *next;
    struct http_req *req; /* touched only by whoever wins state */
    api_wh_job_cb run;
    void (*free_arg)(void *arg);
    void *arg;
    int64_t timeout_ms;  /* 0: no deadline of the pool's own */
    int64_t deadline_us; /* time_mono_us(), set when a thread takes the job */
    atomic_int state;
};

struct sql_job {
    char *sql;              /* owned */
    json_t *params;         /* owned (a copy), or NULL */
    struct wh_scope *scope; /* owned: an analyst's reach, or NULL for a superuser */
};

/* Threads: api_sql_start/stop/free on the main thread; everything else under mu. The pool is
 * leaked (not freed) when a thread is still stuck inside the engine at shutdown. */
struct api_sql {
    struct wh *wh;
    pthread_t threads[SQL_THREADS];
    pthread_t watchdog;
    bool have_watchdog;
    struct wh_conn *conns[SQL_THREADS]; /* under mu, to interrupt them at stop */
    struct wh_job *cur[SQL_THREADS];    /* under mu: the job each thread runs */
    bool exited[SQL_THREADS];           /* under mu */
    size_t n_threads;
    bool stopped;       /* main thread: api_sql_stop ran */
    size_t n_live;      /* under mu: threads not yet past their last use of the warehouse */
    size_t n_stuck;     /* under mu: threads running a job the watchdog answered */
    pthread_mutex_t mu; /* leaf: the queue, cur, the counters */
    pthread_cond_t cv;  /* work for the threads */
    pthread_cond_t wcv; /* CLOCK_MONOTONIC: the watchdog, and api_sql_stop waiting */
    struct wh_job *head, **tail;
    size_t queued;
    bool stopping;
};

/* ---- replies built off the request ---- */

void api__wh_reply_json(struct api_wh_reply *rep, int status, json_t *body)
{
    rep->status = status;
    rep->json = body;
}

void api__wh_reply_owned(struct api_wh_reply *rep, int status, char *text)
{
    rep->status = status;
    rep->text = text;
}

void api__wh_reply_error(struct api_wh_reply *rep, int status, const char *message, json_t *data)
{
    api__wh_reply_json(rep, status, http_error_envelope(status, message, data));
}

static void reply_release(struct api_wh_reply *rep)
{
    json_decref(rep->json);
    free(rep->text);
    memset(rep, 0, sizeof(*rep));
}

/* Sends rep on req (the caller owns req) and resumes it. */
static void reply_send(struct http_req *req, struct api_wh_reply *rep)
{
    if (rep->text) {
        http_reply_owned(req, rep->status, "application/json", rep->text, strlen(rep->text));
        rep->text = NULL;
    } else if (rep->json) {
        http_reply_json(req, rep->status, rep->json);
        rep->json = NULL;
    } else if (rep->status == 204) {
        http_reply_empty(req, 204);
    } else {
        http_reply_error(req, 503, NULL, NULL);
    }
    reply_release(rep);
    http_req_resume(req);
}

static void job_free(struct wh_job *job)
{
    if (job->free_arg)
        job->free_arg(job->arg);
    free(job);
}

static void reply_timeout(struct http_req *req)
{
    http_reply_error(req, 400, "The query took longer than the statement timeout.",
                     json_pack("{s:s}", "detail", "the query ran longer than its timeout"));
    http_req_resume(req);
}

static void reply_busy(struct http_req *req)
{
    http_set_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "Too many warehouse queries are waiting; try again.", NULL);
    http_req_resume(req);
}

static void sql_job_free(void *arg)
{
    struct sql_job *job = arg;
    api__analyst_scope_free(job->scope);
    free(job->sql);
    json_decref(job->params);
    free(job);
}

static void run_sql(struct wh_conn *conn, struct api_wh_reply *rep, void *arg)
{
    struct sql_job *job = arg;
    struct wh_query q = {.scope = job->scope,
                         .sql = job->sql,
                         .params = job->params,
                         .timeout_ms = 0,
                         .max_rows = 0};
    struct wh_result res = {0};
    int rc = conn ? wh_query(conn, &q, &res) : ERR_INTERNAL;
    if (rc == 0) {
        json_t *body = wh_result_to_json(&res);
        char *text = json_dumps(body, WH_RESULT_JSON_FLAGS);
        json_decref(body);
        api__wh_reply_owned(rep, 200, text);
    } else if (rc == ERR_DENIED && job->scope) {
        api__wh_reply_error(rep, 403, "The query reads what analysts may not see.",
                            json_pack("{s:s}", "detail", wh_errmsg(conn)));
    } else if (rc == ERR_DENIED || rc == ERR_INVALID) {
        json_t *data = json_pack("{s:s}", "detail", wh_errmsg(conn));
        api__wh_reply_error(
            rep, 400,
            rc == ERR_DENIED ? "Only read-only queries are allowed." : "The query failed.", data);
    } else if (rc == ERR_LIMIT) {
        bool memory = strncmp(wh_errmsg(conn), WH_NO_MEMORY, strlen(WH_NO_MEMORY)) == 0;
        api__wh_reply_error(rep, 400,
                            memory ? "The query needs more memory than the warehouse allows."
                                   : "The query result is too large.",
                            json_pack("{s:s}", "detail", wh_errmsg(conn)));
    } else if (rc == ERR_BUSY) {
        api__wh_reply_error(rep, 400, "The query took longer than the statement timeout.",
                            json_pack("{s:s}", "detail", wh_errmsg(conn)));
    } else {
        xlog_error("warehouse query failed: %s", conn ? wh_errmsg(conn) : "no connection");
        api__wh_reply_error(rep, 503, NULL, NULL);
    }
    wh_result_release(&res);
}

/* ---- the watchdog: answers a job whose thread is stuck past its deadline ---- */

static void abs_time_mono(int64_t at_us, struct timespec *ts)
{
    ts->tv_sec = (time_t)(at_us / 1000000);
    ts->tv_nsec = (long)(at_us % 1000000) * 1000;
}

/* Under s->mu: takes every queued job (to answer 503 outside the lock). */
static struct wh_job *take_queue(struct api_sql *s)
{
    struct wh_job *all = s->head;
    s->head = NULL;
    s->tail = &s->head;
    s->queued = 0;
    return all;
}

static void answer_busy_list(struct wh_job *list)
{
    while (list) {
        struct wh_job *next = list->next;
        reply_busy(list->req);
        job_free(list);
        list = next;
    }
}

static void *watchdog_main(void *arg)
{
    struct api_sql *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int64_t now = time_mono_us(), wake = now + 1000000;
        struct http_req *late[SQL_THREADS];
        size_t n_late = 0;
        for (size_t i = 0; i < s->n_threads; i++) {
            struct wh_job *job = s->cur[i];
            if (!job || job->timeout_ms <= 0 || atomic_load(&job->state) != JOB_RUNNING)
                continue;
            if (now < job->deadline_us) {
                if (job->deadline_us < wake)
                    wake = job->deadline_us;
                continue;
            }
            int expect = JOB_RUNNING;
            if (atomic_compare_exchange_strong(&job->state, &expect, JOB_ANSWERED_BY_WATCHDOG)) {
                late[n_late++] = job->req; /* ours now; job itself stays the worker's */
                s->n_stuck++;
            }
        }
        /* every thread stuck: nothing queued can start soon */
        struct wh_job *busy = s->n_stuck >= s->n_threads ? take_queue(s) : NULL;
        if (n_late || busy) {
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < n_late; i++) {
                xlog_warn("warehouse query past its deadline is still running: answered 400");
                reply_timeout(late[i]);
            }
            answer_busy_list(busy);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        struct timespec ts;
        abs_time_mono(wake, &ts);
        pthread_cond_timedwait(&s->wcv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the query threads ---- */

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
        if (job && !stopping) {
            job->deadline_us = time_mono_us() + (job->timeout_ms + SQL_GRACE_MS) * 1000;
            s->cur[t.slot] = job;
            pthread_cond_signal(&s->wcv);
        }
        pthread_mutex_unlock(&s->mu);
        if (!job)
            break; /* stopping and drained */
        if (stopping) {
            http_reply_error(job->req, 503, "The server is shutting down.", NULL);
            http_req_resume(job->req);
            job_free(job);
            continue;
        }
        struct api_wh_reply rep = {0};
        job->run(conn, &rep, job->arg);
        int expect = JOB_RUNNING;
        if (atomic_compare_exchange_strong(&job->state, &expect, JOB_ANSWERED_BY_WORKER))
            reply_send(job->req, &rep);
        else
            reply_release(&rep); /* answered already; job->req may be gone */
        pthread_mutex_lock(&s->mu);
        s->cur[t.slot] = NULL;
        if (expect == JOB_ANSWERED_BY_WATCHDOG)
            s->n_stuck--;
        pthread_mutex_unlock(&s->mu);
        job_free(job);
    }
    pthread_mutex_lock(&s->mu);
    s->conns[t.slot] = NULL;
    pthread_mutex_unlock(&s->mu);
    if (conn)
        wh_conn_close(conn);
    pthread_mutex_lock(&s->mu);
    s->exited[t.slot] = true;
    s->n_live--;
    pthread_cond_broadcast(&s->wcv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int api_sql_start(struct api_env *env, struct wh *wh)
{
    struct api_sql *s = xcalloc(1, sizeof(*s));
    s->wh = wh;
    s->tail = &s->head;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wcv, &ca);
    pthread_condattr_destroy(&ca);
    for (; s->n_threads < SQL_THREADS; s->n_threads++) {
        struct sql_thread *t = xmalloc(sizeof(*t));
        t->s = s;
        t->slot = s->n_threads;
        pthread_mutex_lock(&s->mu);
        s->n_live++;
        pthread_mutex_unlock(&s->mu);
        if (pthread_create(&s->threads[s->n_threads], NULL, sql_main, t) != 0) {
            s->n_live--;
            free(t);
            break;
        }
    }
    if (s->n_threads == 0) {
        pthread_cond_destroy(&s->wcv);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return ERR_INTERNAL;
    }
    s->have_watchdog = pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0;
    if (!s->have_watchdog)
        xlog_warn("cannot start the SQL API watchdog: long engine calls hold their requests");
    env->sql = s;
    return 0;
}

size_t api_sql_stop(struct api_env *env)
{
    struct api_sql *s = env->sql;
    if (!s)
        return 0;
    if (s->stopped) {
        pthread_mutex_lock(&s->mu);
        size_t n = s->n_live;
        pthread_mutex_unlock(&s->mu);
        return n;
    }
    s->stopped = true;
    /* running queries are interrupted and answered; queued ones get 503; new ones get 503 */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (size_t i = 0; i < s->n_threads; i++)
        if (s->conns[i])
            wh_interrupt(s->conns[i]);
    pthread_cond_broadcast(&s->cv);
    pthread_cond_broadcast(&s->wcv);
    pthread_mutex_unlock(&s->mu);
    if (s->have_watchdog)
        pthread_join(s->watchdog, NULL);
    s->have_watchdog = false;
    /* a thread inside one long engine call does not see the interrupt: wait a little, then
     * answer its request here and leave it running (detached) */
    int64_t until = time_mono_us() + SQL_STOP_WAIT_MS * 1000;
    struct http_req *late[SQL_THREADS];
    size_t n_late = 0;
    pthread_mutex_lock(&s->mu);
    while (s->n_live > 0 && time_mono_us() < until) {
        struct timespec ts;
        abs_time_mono(until, &ts);
        pthread_cond_timedwait(&s->wcv, &s->mu, &ts);
    }
    for (size_t i = 0; i < s->n_threads; i++) {
        struct wh_job *job = s->cur[i];
        int expect = JOB_RUNNING;
        if (job && atomic_compare_exchange_strong(&job->state, &expect, JOB_ANSWERED_BY_WATCHDOG)) {
            late[n_late++] = job->req;
            s->n_stuck++;
        }
    }
    bool exited[SQL_THREADS];
    memcpy(exited, s->exited, sizeof(exited));
    size_t n_live = s->n_live;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n_late; i++) {
        http_reply_error(late[i], 503, "The server is shutting down.", NULL);
        http_req_resume(late[i]);
    }
    for (size_t i = 0; i < s->n_threads; i++) {
        if (exited[i])
            pthread_join(s->threads[i], NULL);
        else
            pthread_detach(s->threads[i]);
    }
    if (n_live > 0)
        xlog_warn("%zu warehouse query thread(s) still inside one engine call: not waiting",
                  n_live);
    return n_live;
}

void api_sql_free(struct api_env *env)
{
    struct api_sql *s = env->sql;
    if (!s)
        return;
    api_sql_stop(env);
    env->sql = NULL;
    pthread_mutex_lock(&s->mu);
    size_t n_live = s->n_live;
    pthread_mutex_unlock(&s->mu);
    if (n_live > 0)
        return; /* a detached thread still uses s: leave it */
    pthread_cond_destroy(&s->wcv);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void post_sql(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    enum api_analytics who = api__analytics_access(req, env);
    if (who == API_ANALYTICS_NONE)
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
    struct wh_scope *scope = NULL;
    if (who == API_ANALYTICS_ANALYST && !(scope = api__analyst_scope(env))) {
        http_reply_error(req, 503, "The data store is not available.", NULL);
        return;
    }
    struct sql_job *job = xcalloc(1, sizeof(*job));
    job->scope = scope;
    job->sql = xstrdup(json_string_value(jq));
    job->params = json_is_array(jp) ? json_deep_copy(jp) : NULL;
    api__wh_submit(env, req, run_sql, job, sql_job_free,
                   env->cfg ? env->cfg->sql_timeout * 1000 : 0);
}

void api__wh_submit(struct api_env *env, struct http_req *req, api_wh_job_cb run, void *arg,
                    void (*free_arg)(void *arg), int64_t timeout_ms)
{
    struct api_sql *s = env->sql;
    if (!s) {
        if (free_arg)
            free_arg(arg);
        http_reply_error(req, 503, "The warehouse is not available.", NULL);
        return;
    }
    struct wh_job *job = xcalloc(1, sizeof(*job));
    job->req = req;
    job->run = run;
    job->arg = arg;
    job->free_arg = free_arg;
    job->timeout_ms = timeout_ms;
    atomic_init(&job->state, JOB_RUNNING);
    http_req_suspend(req);
    pthread_mutex_lock(&s->mu);
    /* every thread stuck in a call past its deadline: a queued job would wait for it */
    bool full = s->queued >= SQL_QUEUE || s->stopping || s->n_stuck >= s->n_threads;
    if (!full) {
        *s->tail = job;
        s->tail = &job->next;
        s->queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (full) {
        reply_busy(req);
        job_free(job);
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
    json_t *body = pipeline_status_json(env->pipeline);
    if (strcmp(evlog_backend_name(env->log), "kafka") == 0) {
        /* the Kafka mirror's per-partition position and lag (docs/scale-out.md) */
        struct buf kb;
        buf_init(&kb);
        evlog_kafka_partitions_json(env->log, &kb);
        json_t *parts = json_loadb(kb.ptr, kb.len, 0, NULL);
        buf_release(&kb);
        json_object_set_new(body, "kafkaPartitions", parts ? parts : json_array());
    }
    http_reply_json(req, 200, body);
}

void api__register_warehouse(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/warehouse/sql", post_sql, env);
    http_route(r, "GET", "/api/pipeline", get_pipeline, env);
}
