/* loader.c - the consumer threads that load the event log into the warehouse. */
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "metrics/metrics.h"
#include "pipeline/pipeline.h"

enum consumer_kind { KIND_EVENTS, KIND_CHANGES, KIND_PREDICTIONS, KIND_REQUESTS, KIND_AUDIT };
#define N_CONSUMERS 5

struct consumer {
    struct pipeline *p;
    enum consumer_kind kind;
    const char *name;  /* "warehouse-events" */
    const char *topic; /* "events" */
    /* after each committed batch, wait this long before reading on (0: go on at once): a
     * low-priority topic whose records trickle in then loads in fewer, larger transactions */
    int64_t linger_us;
    pthread_t thread;
    bool started;
    /* status, under mu (a leaf lock) */
    pthread_mutex_t mu;
    struct pipeline_status st;
    /* mirrors applied (changes consumer): collection id -> its "updated" when applied */
    char **mirror_ids, **mirror_updated;
    size_t n_mirrors;
    /* metrics */
    struct metrics_series *m_lag, *m_lag_s, *m_rows, *m_rejects, *m_batch, *m_errors;
};

struct pipeline {
    struct pipeline_cfg cfg;
    pthread_mutex_t mu; /* guards stopping; cv wakes sleeping consumers */
    pthread_cond_t cv;
    bool stopping;
    struct consumer cons[N_CONSUMERS];
    pthread_t persons; /* keeps the insights' identity tables current (persons_main) */
    bool persons_started;
};

void pipeline_cfg_defaults(struct pipeline_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->min_batch = 256;
    cfg->max_batch = 50000;
    cfg->max_batch_bytes = 64u << 20;
    cfg->idle_wait_us = 10000;
    cfg->changes_idle_wait_us = 100000;
    cfg->retry_max_us = 5000000;
    cfg->checkpoint_interval_us = 60 * 1000000LL;
    cfg->checkpoint_rows = 500000;
    cfg->read_ahead = true;
    cfg->bulk_rows = 2 * 122880;
    cfg->persons_refresh_us = 5 * 1000000LL;
}

/* Sleeps up to us unless the pipeline is stopping; returns true when it is. */
static bool nap(struct pipeline *p, int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += us / 1000000;
    ts.tv_nsec += (us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stopping)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
            break;
    bool stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

/* Names the calling thread (top, perf and /proc/PID/task show it); at most 15 bytes kept. */
static void name_thread(const char *prefix, const char *topic)
{
    char name[16];
    snprintf(name, sizeof(name), "%s%s", prefix, topic);
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

static bool stopping(struct pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    bool s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void set_error(struct consumer *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void set_error(struct consumer *c, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&c->mu);
    va_start(ap, fmt);
    vsnprintf(c->st.last_error, sizeof(c->st.last_error), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&c->mu);
    metrics_inc(c->m_errors, 1);
    xlog_warn("pipeline %s: %s", c->name, c->st.last_error);
}

/* ---- one batch ---- */

struct rows {
    struct wh_event *ev;
    struct wh_change *ch;
    struct wh_prediction *pr;
    struct wh_request *rq;
    struct wh_audit *au;
    json_t **docs;      /* changes: the parsed payloads */
    struct arena arena; /* events: the strings of the batch */
    bool arena_ready;
    struct wh_reject *rej;
    char (*reasons)[200];
    size_t n_rows, n_rej, n_docs, cap;
};

static void rows_reserve(struct rows *r, size_t n)
{
    if (n <= r->cap)
        return;
    r->ev = xrealloc(r->ev, n * sizeof(*r->ev));
    r->ch = xrealloc(r->ch, n * sizeof(*r->ch));
    r->pr = xrealloc(r->pr, n * sizeof(*r->pr));
    r->rq = xrealloc(r->rq, n * sizeof(*r->rq));
    r->au = xrealloc(r->au, n * sizeof(*r->au));
    r->docs = xrealloc(r->docs, n * sizeof(*r->docs));
    r->rej = xrealloc(r->rej, n * sizeof(*r->rej));
    r->reasons = xrealloc(r->reasons, n * sizeof(*r->reasons));
    r->cap = n;
}

static void rows_clear(struct rows *r)
{
    for (size_t i = 0; i < r->n_docs; i++)
        json_decref(r->docs[i]);
    if (r->arena_ready)
        arena_release(&r->arena);
    arena_init(&r->arena, 1 << 20);
    r->arena_ready = true;
    r->n_rows = r->n_rej = r->n_docs = 0;
}

static void rows_release(struct rows *r)
{
    rows_clear(r);
    arena_release(&r->arena);
    free(r->ev);
    free(r->ch);
    free(r->pr);
    free(r->rq);
    free(r->au);
    free(r->docs);
    free(r->rej);
    free(r->reasons);
    memset(r, 0, sizeof(*r));
}

static void rows_fill(struct consumer *c, const struct evlog_batch *b, struct rows *r)
{
    rows_clear(r);
    rows_reserve(r, b->n);
    for (size_t i = 0; i < b->n; i++) {
        const struct evlog_rec_view *v = &b->recs[i];
        if (v->len == 0)
            continue; /* erased by a person deletion (docs/evlog.md "Erasing records") */
        char *reason = r->reasons[r->n_rej];
        json_t *doc = NULL;
        int rc;
        if (c->kind == KIND_EVENTS) {
            rc = pipeline_parse_event(v->data, v->len, v->offset, &r->ev[r->n_rows], &r->arena,
                                      reason, sizeof(r->reasons[0]));
        } else if (c->kind == KIND_REQUESTS) {
            rc = pipeline_parse_request(v->data, v->len, v->offset, &r->rq[r->n_rows], &r->arena,
                                        reason, sizeof(r->reasons[0]));
        } else if (c->kind == KIND_AUDIT) {
            rc = pipeline_parse_audit(v->data, v->len, v->offset, &r->au[r->n_rows], &r->arena,
                                      reason, sizeof(r->reasons[0]));
        } else if (c->kind == KIND_PREDICTIONS) {
            rc = pipeline_parse_prediction(v->data, v->len, v->offset, &r->pr[r->n_rows], &r->arena,
                                           reason, sizeof(r->reasons[0]));
        } else {
            rc = pipeline_parse_change(v->data, v->len, v->offset, &r->ch[r->n_rows], &doc, reason,
                                       sizeof(r->reasons[0]));
        }
        if (rc == 0) {
            if (doc)
                r->docs[r->n_docs++] = doc;
            r->n_rows++;
        } else {
            r->rej[r->n_rej++] = (struct wh_reject){.log_offset = v->offset,
                                                    .reason = reason,
                                                    .payload = v->data,
                                                    .payload_len = v->len};
        }
    }
}

/* ---- read-ahead: the next batch is read and parsed while the current one loads ----
 *
 * The events consumer hands the reading and parsing of the batch after the one it is loading
 * to a helper thread (parsing is about a third of the work, DuckDB's append, commit and
 * checkpoint the rest, so the two overlap on a second core). The helper only fills buffers:
 * the consumer alone decides what is loaded and committed, and asks for the batch at its own
 * committed position again after a failed load, so exactly-once is unchanged. One request is
 * outstanding at a time; its result is swapped into the consumer's buffers (no copy). */

enum ahead_state { AHEAD_IDLE, AHEAD_WANTED, AHEAD_DONE };

struct ahead {
    struct consumer *c;
    pthread_t thread;
    pthread_mutex_t mu; /* leaf: the fields below */
    pthread_cond_t cv;
    enum ahead_state state;
    bool quit;
    uint64_t from; /* the request */
    size_t batch;
    int rc; /* the result, with b and rows */
    struct evlog_batch b;
    struct rows rows;
};

/* Reads up to batch records at from into b and parses them into r. */
static int fetch(struct consumer *c, uint64_t from, size_t batch, struct evlog_batch *b,
                 struct rows *r)
{
    int rc = evlog_read(c->p->cfg.log, c->topic, from, batch, c->p->cfg.max_batch_bytes, b);
    if (rc == 0 && b->n > 0)
        rows_fill(c, b, r);
    return rc;
}

static void *ahead_main(void *arg)
{
    struct ahead *a = arg;
    name_thread("ahead-", a->c->topic);
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->state != AHEAD_WANTED && !a->quit)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->quit)
            break;
        uint64_t from = a->from;
        size_t batch = a->batch;
        pthread_mutex_unlock(&a->mu);
        int rc = fetch(a->c, from, batch, &a->b, &a->rows);
        pthread_mutex_lock(&a->mu);
        a->rc = rc;
        a->state = AHEAD_DONE;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Starts the helper; NULL when the thread cannot be created (the consumer then reads itself). */
static struct ahead *ahead_start(struct consumer *c)
{
    struct ahead *a = xcalloc(1, sizeof(*a));
    a->c = c;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    evlog_batch_init(&a->b);
    int e = pthread_create(&a->thread, NULL, ahead_main, a);
    if (e != 0) {
        xlog_warn("pipeline %s: no read-ahead thread: %s", c->name, strerror(e));
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
        evlog_batch_release(&a->b);
        free(a);
        return NULL;
    }
    return a;
}

/* Asks for the batch at from; the previous result must have been taken. */
static void ahead_request(struct ahead *a, uint64_t from, size_t batch)
{
    pthread_mutex_lock(&a->mu);
    if (a->state != AHEAD_IDLE)
        PANIC("read-ahead: a request is already outstanding");
    a->from = from;
    a->batch = batch;
    a->state = AHEAD_WANTED;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Waits for the outstanding request and swaps its batch and rows into b and r (which go to
 * the helper for its next read); returns the read's code. */
static int ahead_take(struct ahead *a, struct evlog_batch *b, struct rows *r)
{
    pthread_mutex_lock(&a->mu);
    while (a->state != AHEAD_DONE)
        pthread_cond_wait(&a->cv, &a->mu);
    struct evlog_batch tb = *b;
    *b = a->b;
    a->b = tb;
    struct rows tr = *r;
    *r = a->rows;
    a->rows = tr;
    int rc = a->rc;
    a->state = AHEAD_IDLE;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static void ahead_stop(struct ahead *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->quit = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL); /* a read in progress finishes first */
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    rows_release(&a->rows);
    evlog_batch_release(&a->b);
    free(a);
}

/* ---- the consumer thread ---- */

static void update_lag(struct consumer *c, struct evlog *log, uint64_t next, double lag_s)
{
    uint64_t end = 0;
    if (evlog_end_offset(log, c->topic, &end) < 0)
        end = next;
    uint64_t lag = end > next ? end - next : 0;
    pthread_mutex_lock(&c->mu);
    c->st.ready = true;
    c->st.committed = next;
    c->st.end = end;
    c->st.lag_records = lag;
    c->st.lag_seconds = lag ? lag_s : 0;
    pthread_mutex_unlock(&c->mu);
    metrics_set(c->m_lag, (double)lag);
    metrics_set(c->m_lag_s, lag ? lag_s : 0);
}

/* Brings the mirrors in step with the store's collections: a mirror for every application
 * collection (names starting with '_' are system ones), altered when its definition changed
 * (its "updated" time moved), dropped when the collection is gone. */
static int sync_mirrors(struct consumer *c, struct wh_conn *conn)
{
    struct store *st = c->p->cfg.store;
    struct store_collection **list = NULL;
    size_t n = 0;
    int rc = store_collection_list(st, &list, &n);
    if (rc < 0)
        return rc;
    /* collections that are gone first: a view applied below must not name their mirrors */
    bool tables_changed = false;
    for (size_t k = 0; rc == 0 && k < c->n_mirrors;) {
        bool live = false;
        for (size_t i = 0; i < n && !live; i++)
            live = list[i]->name[0] != '_' && strcmp(list[i]->id, c->mirror_ids[k]) == 0;
        if (live) {
            k++;
            continue;
        }
        rc = wh_drop_collection(conn, c->mirror_ids[k]);
        if (rc == ERR_NOTFOUND)
            rc = 0;
        if (rc < 0)
            break;
        tables_changed = true;
        free(c->mirror_ids[k]);
        free(c->mirror_updated[k]);
        c->n_mirrors--;
        c->mirror_ids[k] = c->mirror_ids[c->n_mirrors];
        c->mirror_updated[k] = c->mirror_updated[c->n_mirrors];
    }
    /* tables, then the views over them (again whenever a table changed or went) */
    for (size_t j = 0; j < 2 * n && rc == 0; j++) {
        const struct store_collection *coll = list[j % n];
        bool view = coll->type == STORE_COLLECTION_VIEW;
        if (coll->name[0] == '_' || view != (j >= n))
            continue;
        size_t k = 0;
        while (k < c->n_mirrors && strcmp(c->mirror_ids[k], coll->id) != 0)
            k++;
        const char *updated = coll->updated ? coll->updated : "";
        if (k < c->n_mirrors && strcmp(c->mirror_updated[k], updated) == 0 &&
            !(view && tables_changed))
            continue;
        rc = wh_apply_collection(conn, coll);
        if (rc == ERR_INVALID && view) {
            /* SQLite's dialect that DuckDB does not read: the view has no mirror */
            xlog_warn("view collection %s is not mirrored: %s", coll->name, wh_errmsg(conn));
            rc = 0;
        }
        if (rc < 0)
            break;
        tables_changed |= !view;
        if (k == c->n_mirrors) {
            c->mirror_ids = xrealloc(c->mirror_ids, (k + 1) * sizeof(char *));
            c->mirror_updated = xrealloc(c->mirror_updated, (k + 1) * sizeof(char *));
            c->mirror_ids[k] = xstrdup(coll->id);
            c->mirror_updated[k] = NULL;
            c->n_mirrors++;
        }
        free(c->mirror_updated[k]);
        c->mirror_updated[k] = xstrdup(updated);
    }
    store_collection_list_free(list, n);
    return rc;
}

/* Registers the consumer's position with the log, which only keeps retention from deleting
 * what is not loaded yet (the warehouse's _offsets is the truth, and a position registered
 * late only keeps more). It is stored durably, which costs a sync: the loop calls this after
 * a batch at most once a second, and whenever it finds the log drained and on exit. */
static void register_position(struct consumer *c, uint64_t next, uint64_t *registered,
                              int64_t *last_us)
{
    if (*registered == next)
        return;
    if (evlog_consumer_commit(c->p->cfg.log, c->name, c->topic, next) < 0) {
        xlog_warn("pipeline %s: cannot register offset with the log: %s", c->name,
                  evlog_errmsg(c->p->cfg.log));
        return;
    }
    *registered = next;
    *last_us = time_mono_us();
}

#define REGISTER_INTERVAL_US 1000000

/* The events consumer found the log drained after committing `loaded` rows since it last
 * did: after a backlog (bulk_rows or more) it brings the identity tables up to date itself,
 * before its status says it caught up (the persons thread's last period of the backlog is
 * left; the first insight must not carry that refresh). A failed refresh only costs the next
 * insight the work; it is logged, the load goes on. */
static void refresh_after_backlog(struct consumer *c, struct wh_conn *conn, uint64_t *loaded)
{
    const struct pipeline_cfg *cfg = &c->p->cfg;
    uint64_t n = *loaded;
    *loaded = 0;
    if (c->kind != KIND_EVENTS || cfg->persons_refresh_us <= 0 || cfg->bulk_rows == 0 ||
        n < cfg->bulk_rows || !conn)
        return;
    int rc = wh_persons_refresh(conn, NULL);
    if (rc < 0 && rc != ERR_BUSY)
        xlog_warn("pipeline %s: cannot refresh the identity tables: %s", c->name, wh_errmsg(conn));
}

/* A load transaction that spans several batches (bulk loading, see pipeline_cfg.bulk_rows). */
struct txn {
    bool open;
    uint64_t rows, rejects, batches;
};

/* Whether the batch just read should leave the transaction open for the next one: only when
 * the log already holds every record the transaction still needs to reach bulk_rows (a
 * backlog, never a wait for records still to come: a consumer that keeps up commits every
 * batch). So a joined transaction is always full, its last read sized to end exactly there. */
static bool join_next(struct consumer *c, const struct txn *t, const struct evlog_batch *b,
                      size_t rows)
{
    const struct pipeline_cfg *cfg = &c->p->cfg;
    if (c->kind != KIND_EVENTS || cfg->bulk_rows == 0 || t->rows + rows >= cfg->bulk_rows)
        return false;
    uint64_t end = 0;
    if (evlog_end_offset(cfg->log, c->topic, &end) < 0 || end <= b->next_offset ||
        end - b->next_offset < cfg->bulk_rows - (t->rows + rows))
        return false;
    return !stopping(c->p);
}

/* Counts a committed transaction (t plus the batch st that ended it) in the status; returns
 * the rows and rejects it committed. */
static uint64_t count_commit(struct consumer *c, struct txn *t, const struct wh_load_stats *st,
                             size_t batch)
{
    uint64_t rows = t->rows + st->rows, rejects = t->rejects + st->rejects;
    metrics_inc(c->m_rows, rows);
    metrics_inc(c->m_rejects, rejects);
    pthread_mutex_lock(&c->mu);
    c->st.rows += rows;
    c->st.rejects += rejects;
    c->st.batches += t->batches + 1;
    c->st.transactions++;
    c->st.last_error[0] = 0;
    c->st.batch_size = batch;
    pthread_mutex_unlock(&c->mu);
    memset(t, 0, sizeof(*t));
    return rows + rejects;
}

/* Commits the open transaction t as it is, with pos as the next offset (an empty last call:
 * nothing more to append); returns 0 and adds the rows it committed to *since_ckpt. */
static int commit_open(struct consumer *c, struct wh_conn *conn, struct txn *t, uint64_t pos,
                       size_t batch, uint64_t *since_ckpt)
{
    struct wh_load ld = {.consumer = c->name, .topic = c->topic, .next_offset = pos};
    struct wh_load_stats st = {0};
    int rc = wh_load_events(conn, &ld, NULL, 0, &st);
    if (rc < 0)
        return rc;
    t->batches--; /* the empty call is not a batch */
    *since_ckpt += count_commit(c, t, &st, batch);
    return 0;
}

static void *consumer_main(void *arg)
{
    struct consumer *c = arg;
    name_thread("load-", c->topic);
    struct pipeline *p = c->p;
    struct evlog *log = p->cfg.log;
    struct wh_conn *conn = NULL;
    struct evlog_batch b;
    struct rows rows = {0};
    evlog_batch_init(&b);
    int64_t backoff = 0;
    size_t batch = p->cfg.min_batch;
    /* next: the committed position (stored in the warehouse); pos: where the next read starts,
     * past next while a transaction is open */
    uint64_t next = 0, pos = 0, rows_since_ckpt = 0;
    struct txn txn = {0};
    int64_t last_ckpt = time_mono_us();
    bool have_offset = false;
    uint64_t registered = UINT64_MAX; /* the position last registered with the log */
    int64_t registered_at = 0;
    struct ahead *ah = c->kind == KIND_EVENTS && p->cfg.read_ahead ? ahead_start(c) : NULL;
    bool pending = false;     /* a read-ahead request for `pos` is outstanding */
    size_t req = batch;       /* the size of the read for `pos` */
    double lag_s = 0;         /* age of the first record of the last batch read */
    uint64_t since_drain = 0; /* rows committed since the log was last found drained */

    while (!stopping(p)) {
        int rc = 0;
        if (backoff > 0 && nap(p, backoff))
            break;
        if (!conn && wh_conn_open(p->cfg.wh, &conn) < 0) {
            set_error(c, "cannot connect to the warehouse: %s", wh_errmsg(NULL));
            goto retry;
        }
        if (!have_offset) {
            rc = wh_offset_get(conn, c->name, &next);
            if (rc == ERR_NOTFOUND) {
                uint64_t start = 0;
                if (evlog_start_offset(log, c->topic, &start) < 0)
                    start = 0;
                next = start;
            } else if (rc < 0) {
                set_error(c, "cannot read the stored offset: %s", wh_errmsg(conn));
                goto retry;
            }
            have_offset = true;
            pos = next;
            update_lag(c, log, next, 0);
            /* at once: until a consumer is registered, log retention does not wait for it */
            register_position(c, next, &registered, &registered_at);
        }
        if (c->kind == KIND_CHANGES && p->cfg.store) {
            rc = sync_mirrors(c, conn);
            if (rc < 0) {
                set_error(c, "cannot update the collection mirrors: %s", wh_errmsg(conn));
                goto retry;
            }
        }
        if (ah) {
            if (!pending)
                ahead_request(ah, pos, req);
            rc = ahead_take(ah, &b, &rows);
            pending = false;
        } else {
            rc = fetch(c, pos, req, &b, &rows);
        }
        if (rc == ERR_NOTFOUND && !txn.open) {
            uint64_t start = 0, end = 0;
            if (evlog_end_offset(log, c->topic, &end) == 0 && end == 0) {
                /* the topic has no records yet */
                if (nap(p, p->cfg.idle_wait_us))
                    break;
                continue;
            }
            if (evlog_start_offset(log, c->topic, &start) == 0 && start > next) {
                set_error(c, "records %llu..%llu were deleted by retention before loading",
                          (unsigned long long)next, (unsigned long long)start - 1);
                next = pos = start; /* nothing to load there any more; the gap is reported */
                continue;
            }
        }
        if (rc < 0) {
            set_error(c, "cannot read %s at %llu: %s", c->topic, (unsigned long long)pos,
                      evlog_errmsg(log));
            if (txn.open) { /* what is appended ends at pos: commit it, then read again */
                req = batch;
                goto commit_txn;
            }
            goto retry;
        }
        if (b.n == 0) {
            if (txn.open) { /* not reached: a transaction stays open only while more is logged */
                req = batch;
                goto commit_txn;
            }
            refresh_after_backlog(c, conn, &since_drain);
            update_lag(c, log, next, 0);
            register_position(c, next, &registered, &registered_at);
            batch = req = p->cfg.min_batch;
            int64_t wait = p->cfg.idle_wait_us;
            if (c->kind == KIND_CHANGES && p->cfg.changes_idle_wait_us > wait)
                wait = p->cfg.changes_idle_wait_us;
            if (nap(p, wait))
                break;
            continue;
        }
        lag_s = (double)(time_now_us() - b.recs[0].timestamp_us) / 1e6;
        size_t got = b.n;
        bool drained = got < req; /* a short read: the log had no more */
        /* adapt (once this batch is loaded): full read -> grow; a small one -> shrink */
        size_t next_batch = batch;
        if (got >= req && batch < p->cfg.max_batch)
            next_batch = batch * 2 > p->cfg.max_batch ? p->cfg.max_batch : batch * 2;
        else if (got < req / 4 && batch > p->cfg.min_batch)
            next_batch = batch / 2 < p->cfg.min_batch ? p->cfg.min_batch : batch / 2;
        bool more = join_next(c, &txn, &b, rows.n_rows);
        req = next_batch;
        if (more && req > p->cfg.bulk_rows - (txn.rows + rows.n_rows))
            req = p->cfg.bulk_rows - (txn.rows + rows.n_rows); /* end on a row group boundary */
        if (ah) { /* read and parse what follows while this batch loads */
            ahead_request(ah, b.next_offset, req);
            pending = true;
        }
        struct wh_load ld = {.consumer = c->name,
                             .topic = c->topic,
                             .next_offset = b.next_offset,
                             .rejects = rows.rej,
                             .n_rejects = rows.n_rej,
                             .more = more};
        struct wh_load_stats st = {0};
        rc = c->kind == KIND_EVENTS     ? wh_load_events(conn, &ld, rows.ev, rows.n_rows, &st)
             : c->kind == KIND_CHANGES  ? wh_load_changes(conn, &ld, rows.ch, rows.n_rows, &st)
             : c->kind == KIND_REQUESTS ? wh_load_requests(conn, &ld, rows.rq, rows.n_rows, &st)
             : c->kind == KIND_AUDIT    ? wh_load_audit(conn, &ld, rows.au, rows.n_rows, &st)
                                        : wh_load_predictions(conn, &ld, rows.pr, rows.n_rows, &st);
        rows_clear(&rows);
        if (rc < 0) {
            set_error(c, "cannot load %zu records at %llu: %s", got, (unsigned long long)pos,
                      wh_errmsg(conn));
            goto failed;
        }
        metrics_observe(c->m_batch, (double)got);
        pos = b.next_offset;
        backoff = 0;
        batch = next_batch;
        if (more) { /* appended; the transaction goes on with the next batch */
            txn.open = true;
            txn.rows += st.rows;
            txn.rejects += st.rejects;
            txn.batches++;
            continue;
        }
        next = pos;
        uint64_t committed = count_commit(c, &txn, &st, batch);
        rows_since_ckpt += committed;
        since_drain += committed;
        if (drained)
            refresh_after_backlog(c, conn, &since_drain);
        if (time_mono_us() - registered_at >= REGISTER_INTERVAL_US)
            register_position(c, next, &registered, &registered_at);
        update_lag(c, log, next, lag_s);
        if (rows_since_ckpt >= p->cfg.checkpoint_rows ||
            time_mono_us() - last_ckpt >= p->cfg.checkpoint_interval_us) {
            int crc = wh_checkpoint(conn, false);
            if (crc == 0) {
                rows_since_ckpt = 0;
                last_ckpt = time_mono_us();
            } else if (crc != ERR_BUSY) {
                xlog_warn("pipeline %s: checkpoint failed: %s", c->name, wh_errmsg(conn));
            } /* ERR_BUSY: the other consumer is mid-batch; try after the next batch */
        }
        /* the status above is as of this commit; what arrives meanwhile waits for the linger */
        if (c->linger_us > 0 && drained && nap(p, c->linger_us))
            break;
        continue;
    commit_txn:
        rc = commit_open(c, conn, &txn, pos, batch, &rows_since_ckpt);
        if (rc < 0) {
            set_error(c, "cannot commit %llu records at %llu: %s", (unsigned long long)(pos - next),
                      (unsigned long long)next, wh_errmsg(conn));
            goto failed;
        }
        since_drain += pos - next;
        next = pos;
        update_lag(c, log, next, lag_s);
        continue;
    failed:
        /* everything since the last commit was rolled back: read it again */
        update_lag(c, log, next, lag_s);
        memset(&txn, 0, sizeof(txn));
        pos = next;
        req = batch;
        if (pending) { /* what was read ahead follows a batch that is not loaded: drop it */
            (void)ahead_take(ah, &b, &rows);
            pending = false;
        }
    retry:
        backoff = backoff ? backoff * 2 : 50000;
        if (backoff > p->cfg.retry_max_us)
            backoff = p->cfg.retry_max_us;
        if (conn && rc == ERR_INTERNAL) {
            wh_conn_close(conn); /* start over on a fresh connection (rolls back) */
            conn = NULL;
            memset(&txn, 0, sizeof(txn));
            pos = next;
        }
    }
    if (pending)
        (void)ahead_take(ah, &b, &rows);
    ahead_stop(ah);
    if (txn.open && conn) { /* stopping mid-transaction: commit what is appended */
        if (commit_open(c, conn, &txn, pos, batch, &rows_since_ckpt) == 0) {
            next = pos;
            update_lag(c, log, next, 0);
        } else {
            xlog_warn("pipeline %s: cannot commit on stop: %s", c->name, wh_errmsg(conn));
        }
    }
    if (have_offset)
        register_position(c, next, &registered, &registered_at);
    rows_release(&rows);
    evlog_batch_release(&b);
    wh_conn_close(conn);
    return NULL;
}

/* ---- start, stop, status ---- */

static const double batch_buckets[] = {1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000};

/* Brings the identity tables of the insights up to date with the events loaded so far, every
 * persons_refresh_us, on its own connection: an insight then folds in only the last few
 * seconds of events itself, never a whole backlog. During a backlog it goes on (on the other
 * core, beside the loading); what the last period leaves, the events consumer refreshes when
 * it drains the backlog (refresh_after_backlog). */
static void *persons_main(void *arg)
{
    struct pipeline *p = arg;
    name_thread("persons", "");
    struct wh_conn *conn = NULL;
    while (!nap(p, p->cfg.persons_refresh_us)) {
        if (!conn && wh_conn_open(p->cfg.wh, &conn) < 0) {
            xlog_warn("pipeline: cannot connect to the warehouse: %s", wh_errmsg(NULL));
            continue;
        }
        int rc = wh_persons_refresh(conn, NULL);
        if (rc < 0 && rc != ERR_BUSY)
            xlog_error("pipeline: cannot refresh the identity tables: %s", wh_errmsg(conn));
    }
    wh_conn_close(conn);
    return NULL;
}

int pipeline_start(const struct pipeline_cfg *cfg, struct pipeline **out)
{
    *out = NULL;
    if (!cfg->log || !cfg->wh || cfg->min_batch == 0 || cfg->max_batch < cfg->min_batch)
        return ERR_INVALID;
    struct wh_conn *conn;
    int rc = wh_conn_open(cfg->wh, &conn);
    if (rc < 0) {
        xlog_error("pipeline: cannot connect to the warehouse: %s", wh_errmsg(NULL));
        return rc;
    }
    rc = wh_ensure_schema(conn);
    if (rc < 0)
        xlog_error("pipeline: cannot create the warehouse tables: %s", wh_errmsg(conn));
    wh_conn_close(conn);
    if (rc < 0)
        return rc;

    struct metrics_family *f_lag =
        metrics_family(METRICS_GAUGE, "tandem_pipeline_lag_records",
                       "Log records not loaded into the warehouse yet.", "consumer");
    struct metrics_family *f_lag_s =
        metrics_family(METRICS_GAUGE, "tandem_pipeline_lag_seconds",
                       "Age of the oldest log record not loaded yet.", "consumer");
    struct metrics_family *f_rows = metrics_family(METRICS_COUNTER, "tandem_pipeline_rows_total",
                                                   "Rows loaded into the warehouse.", "consumer");
    struct metrics_family *f_rej =
        metrics_family(METRICS_COUNTER, "tandem_pipeline_rejects_total",
                       "Log records that could not be loaded (see _rejects).", "consumer");
    struct metrics_family *f_err = metrics_family(METRICS_COUNTER, "tandem_pipeline_errors_total",
                                                  "Failed load attempts (retried).", "consumer");
    struct metrics_family *f_batch =
        metrics_histogram("tandem_pipeline_batch_rows", "Records per loaded batch.", "consumer",
                          batch_buckets, ARRAY_LEN(batch_buckets));

    struct pipeline *p = xcalloc(1, sizeof(*p));
    p->cfg = *cfg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    static const struct {
        enum consumer_kind kind;
        const char *name, *topic;
        int64_t linger_us;
    } defs[N_CONSUMERS] = {{KIND_EVENTS, "warehouse-events", "events", 0},
                           {KIND_CHANGES, "warehouse-changes", "changes", 0},
                           /* served predictions: single-row requests trickle in; one
                            * transaction (a warehouse commit, a WAL sync) per 200 ms at most */
                           {KIND_PREDICTIONS, "warehouse-predictions", "predictions", 200000},
                           /* request logs: one transaction a second at most */
                           {KIND_REQUESTS, "warehouse-requests", "requests", 1000000},
                           {KIND_AUDIT, "warehouse-audit", "audit", 0}};
    for (size_t i = 0; i < N_CONSUMERS; i++) {
        struct consumer *c = &p->cons[i];
        c->p = p;
        c->kind = defs[i].kind;
        c->name = defs[i].name;
        c->topic = defs[i].topic;
        c->linger_us = defs[i].linger_us;
        pthread_mutex_init(&c->mu, NULL);
        snprintf(c->st.consumer, sizeof(c->st.consumer), "%s", c->name);
        snprintf(c->st.topic, sizeof(c->st.topic), "%s", c->topic);
        c->st.batch_size = cfg->min_batch;
        const char *lv[] = {c->name};
        c->m_lag = metrics_series(f_lag, lv);
        c->m_lag_s = metrics_series(f_lag_s, lv);
        c->m_rows = metrics_series(f_rows, lv);
        c->m_rejects = metrics_series(f_rej, lv);
        c->m_errors = metrics_series(f_err, lv);
        c->m_batch = metrics_series(f_batch, lv);
    }
    for (size_t i = 0; i < N_CONSUMERS; i++) {
        int e = pthread_create(&p->cons[i].thread, NULL, consumer_main, &p->cons[i]);
        if (e != 0) {
            xlog_error("pipeline: cannot start a consumer thread: %s", strerror(e));
            pipeline_stop(p);
            return -e;
        }
        p->cons[i].started = true;
    }
    if (cfg->persons_refresh_us > 0) {
        int e = pthread_create(&p->persons, NULL, persons_main, p);
        if (e != 0) {
            xlog_error("pipeline: cannot start the identity refresh thread: %s", strerror(e));
            pipeline_stop(p);
            return -e;
        }
        p->persons_started = true;
    }
    *out = p;
    return 0;
}

void pipeline_stop(struct pipeline *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->persons_started)
        pthread_join(p->persons, NULL);
    for (size_t i = 0; i < N_CONSUMERS; i++) {
        if (p->cons[i].started)
            pthread_join(p->cons[i].thread, NULL);
        pthread_mutex_destroy(&p->cons[i].mu);
        for (size_t k = 0; k < p->cons[i].n_mirrors; k++) {
            free(p->cons[i].mirror_ids[k]);
            free(p->cons[i].mirror_updated[k]);
        }
        free(p->cons[i].mirror_ids);
        free(p->cons[i].mirror_updated);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

size_t pipeline_status(struct pipeline *p, struct pipeline_status *out, size_t max)
{
    for (size_t i = 0; i < N_CONSUMERS && i < max; i++) {
        pthread_mutex_lock(&p->cons[i].mu);
        out[i] = p->cons[i].st;
        pthread_mutex_unlock(&p->cons[i].mu);
        uint64_t end = 0;
        if (!out[i].ready && evlog_end_offset(p->cfg.log, out[i].topic, &end) == 0) {
            /* not "caught up" before the consumer knows where it is */
            out[i].end = end;
            out[i].lag_records = end;
        }
    }
    return N_CONSUMERS;
}

json_t *pipeline_status_json(struct pipeline *p)
{
    struct pipeline_status st[N_CONSUMERS];
    size_t n = pipeline_status(p, st, N_CONSUMERS);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:o}", "consumer",
                           st[i].consumer, "topic", st[i].topic, "committedOffset",
                           (json_int_t)st[i].committed, "logEndOffset", (json_int_t)st[i].end,
                           "lagRecords", (json_int_t)st[i].lag_records, "lagSeconds",
                           st[i].lag_seconds, "rowsLoaded", (json_int_t)st[i].rows, "rejects",
                           (json_int_t)st[i].rejects, "batches", (json_int_t)st[i].batches,
                           "transactions", (json_int_t)st[i].transactions, "batchSize",
                           (json_int_t)st[i].batch_size, "lastError",
                           st[i].last_error[0] ? json_string(st[i].last_error) : json_null()));
    for (size_t i = 0; i < n; i++)
        json_object_set_new(json_array_get(arr, i), "ready", json_boolean(st[i].ready));
    return json_pack("{s:o}", "consumers", arr);
}
