/* runner.c - the models' thread: runs requested, scheduled (cron) and log-triggered builds in
 * dependency order, one model at a time, then syncs, records each run and counts it in the
 * metrics. It owns one warehouse connection; nothing here runs on an HTTP thread. */
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "models/models_int.h"
#include "pipeline/pipeline.h"

#define QUEUE_MAX 64
#define BUSY_RETRIES 5

struct request {
    char name[MODELS_NAME_MAX + 1];
    char run_id[ID_LEN + 1];
    bool full, confirm;
    int64_t requested_us;
};

/* Threads: cfg is read-only; the queue, pending and stopping under mu; the rest belongs to the
 * runner thread. */
struct models {
    struct models_cfg cfg;
    pthread_t thread;
    pthread_mutex_t mu; /* leaf */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    struct request queue[QUEUE_MAX];
    size_t n_queue;
    bool stopping;
    json_t *pending; /* under mu: [{"id","model","status","trigger"}] queued or running */
    struct wh_conn *conn;
    json_t *cron_fired; /* runner: model -> minute (us / 60e6) it last fired in */
    json_t *seen_total; /* runner: model -> log records loaded when it was last triggered */
    struct metrics_family *m_runs, *m_seconds, *m_rows, *m_tests, *m_sync;
};

/* ---- requests ---- */

int models_request_run(struct models *m, const char *name, bool full_refresh, bool confirm,
                       char *run_id_out)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    if (m->stopping)
        rc = ERR_BUSY;
    else if (m->n_queue >= QUEUE_MAX)
        rc = ERR_LIMIT;
    else {
        struct request *r = &m->queue[m->n_queue++];
        memset(r, 0, sizeof(*r));
        snprintf(r->name, sizeof(r->name), "%s", name);
        id_random(r->run_id);
        r->full = full_refresh;
        r->confirm = confirm;
        r->requested_us = time_now_us();
        memcpy(run_id_out, r->run_id, ID_LEN + 1);
        json_array_append_new(m->pending, json_pack("{s:s,s:s,s:s,s:s}", "id", r->run_id, "model",
                                                    name, "status", "queued", "trigger", "manual"));
        pthread_cond_signal(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

json_t *models_pending(struct models *m, const char *name)
{
    json_t *out = json_array();
    if (!m)
        return out;
    pthread_mutex_lock(&m->mu);
    size_t i;
    json_t *p;
    json_array_foreach(m->pending, i, p)
    {
        if (!name || strcmp(json_string_value(json_object_get(p, "model")), name) == 0)
            json_array_append_new(out, json_deep_copy(p));
    }
    pthread_mutex_unlock(&m->mu);
    return out;
}

static void pending_set(struct models *m, const char *id, const char *model, const char *status,
                        const char *trigger)
{
    pthread_mutex_lock(&m->mu);
    size_t i;
    json_t *p;
    bool found = false;
    for (i = json_array_size(m->pending); i-- > 0;) {
        p = json_array_get(m->pending, i);
        if (strcmp(json_string_value(json_object_get(p, "id")), id) == 0) {
            found = true;
            if (!status)
                json_array_remove(m->pending, i);
            else
                json_object_set_new(p, "status", json_string(status));
        }
    }
    if (!found && status)
        json_array_append_new(m->pending, json_pack("{s:s,s:s,s:s,s:s}", "id", id, "model", model,
                                                    "status", status, "trigger", trigger));
    pthread_mutex_unlock(&m->mu);
}

static bool is_stopping(struct models *m)
{
    pthread_mutex_lock(&m->mu);
    bool s = m->stopping;
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* ---- one model ---- */

/* The lag of the source topic, from the loader's status; 0 when unknown. */
static double source_lag(struct models *m, const char *topic)
{
    struct pipeline_status st[8];
    if (!m->cfg.pipeline)
        return 0;
    size_t n = pipeline_status(m->cfg.pipeline, st, ARRAY_LEN(st));
    for (size_t i = 0; i < n && i < ARRAY_LEN(st); i++)
        if (strcmp(st[i].topic, topic) == 0)
            return st[i].lag_seconds;
    return 0;
}

static void count_run(struct models *m, const char *name, const json_t *run, double seconds)
{
    const char *status = json_string_value(json_object_get(run, "status"));
    const char *l2[] = {name, status};
    metrics_inc(metrics_series(m->m_runs, l2), 1);
    const char *l1[] = {name};
    metrics_observe(metrics_series(m->m_seconds, l1), seconds);
    if (strcmp(status, "success") == 0 || strcmp(status, "warn") == 0)
        metrics_set(metrics_series(m->m_rows, l1),
                    (double)json_integer_value(json_object_get(run, "rows")));
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(run, "tests"), i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "status")), "fail") == 0) {
            const char *lt[] = {name, json_string_value(json_object_get(t, "name"))};
            metrics_inc(metrics_series(m->m_tests, lt), 1);
        }
    }
    json_t *sync = json_object_get(run, "sync");
    static const char *const actions[] = {"created", "updated", "deleted"};
    for (size_t k = 0; json_is_object(sync) && k < ARRAY_LEN(actions); k++) {
        const char *ls[] = {name, actions[k]};
        metrics_inc(metrics_series(m->m_sync, ls),
                    (uint64_t)json_integer_value(json_object_get(sync, actions[k])));
    }
}

/* Builds (and syncs) one model and records the run; returns whether it published. */
static bool run_one(struct models *m, const json_t *defs, const char *name, const char *run_id,
                    const char *trigger, bool full, bool confirm)
{
    const json_t *spec = json_object_get(defs, name);
    int64_t started = time_now_us();
    json_t *run = NULL;
    pending_set(m, run_id, name, "running", trigger);
    double max_lag = json_number_value(json_object_get(spec, "maxLagSeconds"));
    bool ev, ch;
    char stale[300] = "";
    if (max_lag > 0 && models__reads_log(defs, name, &ev, &ch)) {
        double le = ev ? source_lag(m, PIPELINE_TOPIC_EVENTS) : 0;
        double lc = ch ? source_lag(m, PIPELINE_TOPIC_CHANGES) : 0;
        if (le > max_lag || lc > max_lag)
            snprintf(stale, sizeof(stale),
                     "stale source: %s is %.1f s behind the log (the model tolerates %.1f s)",
                     le > max_lag ? "events" : "changes", le > max_lag ? le : lc, max_lag);
    }
    if (stale[0]) {
        run = json_pack("{s:s,s:n,s:[],s:I,s:s}", "status", "stale", "mode", "tests", "rows",
                        (json_int_t)0, "message", stale);
    } else {
        struct wh_model wm = {
            .name = name,
            .sql = json_string_value(json_object_get(spec, "sql")),
            .materialized = json_string_value(json_object_get(spec, "materialized")),
            .unique_key = json_string_value(json_object_get(spec, "uniqueKey")),
            .tests = json_object_get(spec, "tests"),
        };
        struct wh_model_opts o = {.full_refresh = full};
        int rc = ERR_BUSY;
        /* a conflict with another writer is retried; an interrupt at shutdown is not */
        for (int attempt = 0; attempt < BUSY_RETRIES && rc == ERR_BUSY; attempt++) {
            if (attempt && is_stopping(m))
                break;
            json_decref(run);
            run = NULL;
            if (attempt)
                usleep(100000u << attempt);
            rc = wh_model_build(m->conn, &wm, &o, &run);
        }
        if (!run)
            run = json_pack("{s:s,s:s,s:[]}", "status", "error", "message", wh_errmsg(m->conn),
                            "tests");
    }
    const char *status = json_string_value(json_object_get(run, "status"));
    bool published = strcmp(status, "success") == 0 || strcmp(status, "warn") == 0;
    const json_t *sync = json_object_get(spec, "sync");
    char why[600];
    if (published && json_is_object(sync) &&
        models__sync_check(m->cfg.store, sync, json_object_get(spec, "columns"), why, sizeof(why)) <
            0) {
        /* the collection changed since the model was saved: never drop a column silently */
        json_object_set_new(run, "status", json_string("sync_failed"));
        json_object_set_new(run, "message", json_string(why));
    } else if (published && json_is_object(sync)) {
        json_t *s = NULL;
        if (models__sync(m->cfg.store, m->conn, name, sync, confirm, &s) == 0 && s) {
            const char *ss = json_string_value(json_object_get(s, "status"));
            if (strcmp(ss, "failed") == 0 || strcmp(ss, "needs_confirmation") == 0) {
                json_object_set_new(
                    run, "status",
                    json_string(strcmp(ss, "failed") == 0 ? "sync_failed" : "needs_confirmation"));
                json_object_set(run, "message", json_object_get(s, "message"));
            }
            json_object_set_new(run, "sync", s);
        }
    }
    int64_t finished = time_now_us();
    json_object_set_new(run, "id", json_string(run_id));
    json_object_set_new(run, "model", json_string(name));
    json_object_set_new(run, "trigger", json_string(trigger));
    json_object_set_new(run, "startedAt", json_integer(started));
    json_object_set_new(run, "finishedAt", json_integer(finished));
    int rc = ERR_BUSY;
    for (int attempt = 0; attempt < BUSY_RETRIES && rc == ERR_BUSY && !is_stopping(m); attempt++)
        rc = wh_model_record(m->conn, run);
    if (rc < 0)
        xlog_error("cannot record the run of model %s: %s", name, wh_errmsg(m->conn));
    xlog_info("model %s: %s (%s)", name, json_string_value(json_object_get(run, "status")),
              trigger);
    count_run(m, name, run, (double)(finished - started) / 1e6);
    pending_set(m, run_id, name, NULL, NULL);
    json_decref(run);
    if (published && m->cfg.on_publish) /* only queues (ML retraining after a model run) */
        m->cfg.on_publish(m->cfg.on_publish_arg, name, run_id);
    return published;
}

/* Runs roots (name -> {"runId"?,"full","confirm","trigger"}) and every model downstream of
 * them, in dependency order; a model whose input failed in this round is skipped. */
static void run_set(struct models *m, const json_t *defs, const json_t *roots)
{
    json_t *names = json_array();
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)roots, name, v)
    {
        if (json_object_get(defs, name))
            json_array_append_new(names, json_string(name));
    }
    json_t *set = models__downstream(defs, names), *order = models__order(defs);
    json_t *failed = json_object();
    bool full = false, confirm = false;
    const char *trigger = "manual";
    json_object_foreach((json_t *)roots, name, v)
    {
        full = full || json_is_true(json_object_get(v, "full"));
        confirm = confirm || json_is_true(json_object_get(v, "confirm"));
        trigger = json_string_value(json_object_get(v, "trigger"));
    }
    size_t i;
    json_array_foreach(order, i, v)
    {
        const char *n = json_string_value(v);
        if (!json_object_get(set, n))
            continue;
        const json_t *root = json_object_get(roots, n);
        const char *rid = json_string_value(json_object_get(root, "runId"));
        char id[ID_LEN + 1];
        if (rid)
            snprintf(id, sizeof(id), "%s", rid);
        else
            id_random(id);
        const char *why = NULL;
        size_t k;
        json_t *d;
        json_array_foreach(models__deps(json_object_get(defs, n)), k, d)
        {
            if (json_object_get(failed, json_string_value(d)))
                why = json_string_value(d);
        }
        if (why) {
            char msg[200];
            snprintf(msg, sizeof(msg), "skipped: its input %s did not publish", why);
            json_t *run = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:[]}", "id", id, "model", n,
                                    "trigger", root ? trigger : "upstream", "status", "skipped",
                                    "startedAt", (json_int_t)time_now_us(), "finishedAt",
                                    (json_int_t)time_now_us(), "message", msg, "tests");
            if (wh_model_record(m->conn, run) < 0)
                xlog_error("cannot record a run: %s", wh_errmsg(m->conn));
            count_run(m, n, run, 0);
            json_decref(run);
            pending_set(m, id, n, NULL, NULL);
            json_object_set_new(failed, n, json_true());
            continue;
        }
        if (!run_one(m, defs, n, id, root ? trigger : "upstream", full, confirm))
            json_object_set_new(failed, n, json_true());
    }
    /* requests for models that no longer exist */
    json_object_foreach((json_t *)roots, name, v)
    {
        const char *rid = json_string_value(json_object_get(v, "runId"));
        if (rid && !json_object_get(defs, name))
            pending_set(m, rid, name, NULL, NULL);
    }
    json_decref(failed);
    json_decref(set);
    json_decref(order);
    json_decref(names);
}

/* ---- triggers ---- */

static int read_offsets(struct wh_conn *c, const char *sql, json_t **rows_out)
{
    struct wh_query q = {.sql = sql, .timeout_ms = 10000, .max_rows = 100000};
    struct wh_result res;
    wh_result_init(&res);
    int rc = wh_query(c, &q, &res);
    *rows_out = rc == 0 ? json_incref(res.rows) : NULL;
    wh_result_release(&res);
    return rc;
}

/* model -> [events_offset, changes_offset] it was last built from */
static json_t *model_state(struct wh_conn *c)
{
    json_t *rows = NULL, *out = json_object();
    if (read_offsets(c, "SELECT model, events_offset, changes_offset FROM _model_state", &rows) < 0)
        return out;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        json_t *v = json_pack("[O,O]", json_array_get(r, 1), json_array_get(r, 2));
        json_object_set_new(out, json_string_value(json_array_get(r, 0)), v);
    }
    json_decref(rows);
    return out;
}

/* Models due by schedule or by log records, as roots for run_set. */
static json_t *due(struct models *m, const json_t *defs)
{
    json_t *roots = json_object(), *offs = NULL;
    int64_t now = time_now_us();
    json_int_t minute = (json_int_t)(now / 60000000);
    uint64_t ev = 0, ch = 0;
    bool have_offs = read_offsets(m->conn,
                                  "SELECT consumer, next_offset FROM _offsets WHERE consumer IN "
                                  "('warehouse-events', 'warehouse-changes')",
                                  &offs) == 0;
    size_t i;
    json_t *r;
    json_array_foreach(offs, i, r)
    {
        const char *cons = json_string_value(json_array_get(r, 0));
        uint64_t v = (uint64_t)json_integer_value(json_array_get(r, 1));
        if (strcmp(cons, "warehouse-events") == 0)
            ev = v;
        else
            ch = v;
    }
    json_decref(offs);
    json_t *state = NULL;
    const char *name;
    json_t *spec;
    json_object_foreach((json_t *)defs, name, spec)
    {
        const char *sched = json_string_value(json_object_get(spec, "schedule"));
        if (sched && models_cron_match(sched, now) &&
            json_integer_value(json_object_get(m->cron_fired, name)) != minute) {
            json_object_set_new(m->cron_fired, name, json_integer(minute));
            json_object_set_new(roots, name, json_pack("{s:s}", "trigger", "schedule"));
            continue;
        }
        json_int_t after = json_integer_value(json_object_get(spec, "afterRecords"));
        bool e, c;
        if (after <= 0 || !have_offs || !models__reads_log(defs, name, &e, &c))
            continue;
        uint64_t total = (e ? ev : 0) + (c ? ch : 0);
        json_t *seen = json_object_get(m->seen_total, name);
        uint64_t base = seen ? (uint64_t)json_integer_value(seen) : 0;
        if (!seen) { /* first look since start: count from what the model was built from */
            if (!state)
                state = model_state(m->conn);
            json_t *st = json_object_get(state, name);
            base = (e ? (uint64_t)json_integer_value(json_array_get(st, 0)) : 0) +
                   (c ? (uint64_t)json_integer_value(json_array_get(st, 1)) : 0);
            json_object_set_new(m->seen_total, name, json_integer((json_int_t)base));
        }
        if (total >= base + (uint64_t)after) {
            json_object_set_new(m->seen_total, name, json_integer((json_int_t)total));
            json_object_set_new(roots, name, json_pack("{s:s}", "trigger", "records"));
        }
    }
    json_decref(state);
    return roots;
}

/* ---- the thread ---- */

static void deadline_in(struct timespec *ts, int64_t us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t ns = (int64_t)ts->tv_nsec + (us % 1000000) * 1000;
    ts->tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static void *runner_main(void *arg)
{
    struct models *m = arg;
    for (;;) {
        struct request reqs[QUEUE_MAX];
        size_t n;
        pthread_mutex_lock(&m->mu);
        if (!m->stopping && m->n_queue == 0) {
            struct timespec ts;
            deadline_in(&ts, m->cfg.tick_us);
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        }
        bool stop = m->stopping;
        n = m->n_queue;
        memcpy(reqs, m->queue, n * sizeof(reqs[0]));
        m->n_queue = 0;
        pthread_mutex_unlock(&m->mu);
        if (stop)
            break;
        json_t *defs = NULL;
        if (models__load(m->conn, &defs) < 0) {
            xlog_warn("cannot read the model definitions: %s", wh_errmsg(m->conn));
            for (size_t i = 0; i < n; i++)
                pending_set(m, reqs[i].run_id, reqs[i].name, NULL, NULL);
            continue;
        }
        /* each request is its own round, so each gets its run id and flags */
        for (size_t i = 0; i < n; i++) {
            json_t *roots =
                json_pack("{s:{s:s,s:b,s:b,s:s}}", reqs[i].name, "runId", reqs[i].run_id, "full",
                          reqs[i].full, "confirm", reqs[i].confirm, "trigger", "manual");
            run_set(m, defs, roots);
            json_decref(roots);
        }
        json_t *roots = due(m, defs);
        if (json_object_size(roots))
            run_set(m, defs, roots);
        json_decref(roots);
        json_decref(defs);
    }
    return NULL;
}

static void models_free(struct models *m)
{
    if (m->conn)
        wh_conn_close(m->conn);
    json_decref(m->pending);
    json_decref(m->cron_fired);
    json_decref(m->seen_total);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int models_start(const struct models_cfg *cfg, struct models **out)
{
    struct models *m = xcalloc(1, sizeof(*m));
    m->cfg = *cfg;
    if (m->cfg.tick_us <= 0)
        m->cfg.tick_us = 1000000;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->pending = json_array();
    m->cron_fired = json_object();
    m->seen_total = json_object();
    m->m_runs = metrics_family(METRICS_COUNTER, "tandem_model_runs_total",
                               "Model runs by final status.", "model,status");
    m->m_seconds =
        metrics_histogram("tandem_model_run_seconds",
                          "Time to build, test, publish and sync a model.", "model", NULL, 0);
    m->m_rows = metrics_family(METRICS_GAUGE, "tandem_model_rows",
                               "Rows of the published version of a model.", "model");
    m->m_tests = metrics_family(METRICS_COUNTER, "tandem_model_test_failures_total",
                                "Data tests that failed, by model and test.", "model,test");
    m->m_sync = metrics_family(METRICS_COUNTER, "tandem_model_sync_records_total",
                               "Records written by model syncs, by action.", "model,action");
    int rc = wh_conn_open(cfg->wh, &m->conn);
    if (rc < 0)
        goto fail;
    if ((rc = wh_ensure_schema(m->conn)) < 0)
        goto fail;
    if (pthread_create(&m->thread, NULL, runner_main, m) != 0) {
        rc = ERR_INTERNAL;
        goto fail;
    }
    *out = m;
    return 0;
fail:
    xlog_error("cannot start the models runner: %s", m->conn ? wh_errmsg(m->conn) : err_str(rc));
    models_free(m);
    *out = NULL;
    return rc;
}

void models_stop(struct models *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    /* a build in progress fails at its next step and rolls back: the published version and
     * what it was built from stay as they were */
    wh_interrupt(m->conn);
    pthread_join(m->thread, NULL);
    models_free(m);
}
