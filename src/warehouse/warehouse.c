/* warehouse.c - the backend registry, the facade and result rendering. */
#include "warehouse/warehouse.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "warehouse/warehouse_int.h"

static const struct wh_ops *const backends[] = {
    &wh__duckdb_ops,
};

static _Thread_local char open_err[512];

void wh__set_open_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(open_err, sizeof(open_err), fmt, ap);
    va_end(ap);
}

void wh_cfg_defaults(struct wh_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = "duckdb";
    cfg->query_timeout_ms = 30000;
    cfg->query_max_rows = 10000;
    cfg->query_max_bytes = 32u << 20;
    cfg->memory_limit = "2GB";
    cfg->temp_limit = "4GB";
    cfg->wal_force_bytes = 256u << 20;
    /* DuckDB's default (16 MB) checkpoints on nearly every large batch commit, recompressing
     * the last row group each time; measured 2x slower loading. The loader checkpoints itself
     * every checkpoint_rows / interval instead. */
    cfg->checkpoint_threshold = "256MB";
}

const struct wh_ops *wh_backend(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(backends); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int wh_open(const struct wh_cfg *cfg, struct wh **out)
{
    *out = NULL;
    const struct wh_ops *ops = wh_backend(cfg->backend ? cfg->backend : "duckdb");
    if (!ops) {
        wh__set_open_err("unknown warehouse backend %s", cfg->backend);
        return ERR_INVALID;
    }
    int rc = ops->open(cfg, out);
    if (rc == 0) {
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        /* a backup waiting for the lock must not starve behind a loader that never pauses */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&(*out)->write_lock, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    return rc;
}

void wh_close(struct wh *wh)
{
    if (!wh)
        return;
    pthread_rwlock_destroy(&wh->write_lock);
    wh->ops->close(wh);
}

/* A call that may write, commit or checkpoint: shared with every other such call. */
#define WRITE_CALL(c, call)                                                                        \
    do {                                                                                           \
        pthread_rwlock_rdlock(&(c)->wh->write_lock);                                               \
        int wrc_ = (call);                                                                         \
        pthread_rwlock_unlock(&(c)->wh->write_lock);                                               \
        return wrc_;                                                                               \
    } while (0)

int wh_conn_open(struct wh *wh, struct wh_conn **out)
{
    return wh->ops->conn_open(wh, out);
}

void wh_conn_close(struct wh_conn *c)
{
    if (c)
        c->wh->ops->conn_close(c);
}

void wh_interrupt(struct wh_conn *c)
{
    c->wh->ops->interrupt(c);
}

/* Everything but wh_load_events waits until an open load transaction is committed. */
#define REFUSE_WHILE_LOADING(c)                                                                    \
    do {                                                                                           \
        if ((c)->load_open)                                                                        \
            return ERR_BUSY;                                                                       \
    } while (0)

int wh_ensure_schema(struct wh_conn *c)
{
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->ensure_schema(c));
}

int wh_offset_get(struct wh_conn *c, const char *consumer, uint64_t *next_out)
{
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->offset_get(c, consumer, next_out);
}

int wh_load_events(struct wh_conn *c, const struct wh_load *ld, const struct wh_event *ev, size_t n,
                   struct wh_load_stats *st)
{
    struct wh_load_stats dummy;
    pthread_rwlock_rdlock(&c->wh->write_lock);
    int rc = c->wh->ops->load_events(c, ld, ev, n, st ? st : &dummy);
    pthread_rwlock_unlock(&c->wh->write_lock);
    /* the backend rolls back on failure and commits without `more` */
    c->load_open = rc == 0 && ld->more;
    return rc;
}

int wh_load_changes(struct wh_conn *c, const struct wh_load *ld, const struct wh_change *ch,
                    size_t n, struct wh_load_stats *st)
{
    REFUSE_WHILE_LOADING(c);
    struct wh_load_stats dummy;
    WRITE_CALL(c, c->wh->ops->load_changes(c, ld, ch, n, st ? st : &dummy));
}

int wh_apply_collection(struct wh_conn *c, const struct store_collection *coll)
{
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->apply_collection(c, coll));
}

int wh_drop_collection(struct wh_conn *c, const char *collection_id)
{
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->drop_collection(c, collection_id));
}

int wh_query(struct wh_conn *c, const struct wh_query *q, struct wh_result *out)
{
    if (c->load_open) {
        wh_result_init(out);
        return ERR_BUSY;
    }
    return c->wh->ops->query(c, q, out);
}

int wh_load_predictions(struct wh_conn *c, const struct wh_load *ld, const struct wh_prediction *p,
                        size_t n, struct wh_load_stats *st)
{
    REFUSE_WHILE_LOADING(c);
    struct wh_load_stats tmp;
    WRITE_CALL(c, c->wh->ops->load_predictions(c, ld, p, n, st ? st : &tmp));
}

int wh_load_requests(struct wh_conn *c, const struct wh_load *ld, const struct wh_request *r,
                     size_t n, struct wh_load_stats *st)
{
    REFUSE_WHILE_LOADING(c);
    struct wh_load_stats tmp;
    WRITE_CALL(c, c->wh->ops->load_requests(c, ld, r, n, st ? st : &tmp));
}

int wh_logs_list(struct wh_conn *c, const struct wh_logs_query *q, json_t **out)
{
    *out = NULL;
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->logs_list(c, q, out);
}

int wh_logs_stats(struct wh_conn *c, const struct wh_logs_query *q, json_t **out)
{
    *out = NULL;
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->logs_stats(c, q, out);
}

int wh_logs_delete(struct wh_conn *c, const char *before, uint64_t *n_out)
{
    uint64_t tmp;
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->logs_delete(c, before, n_out ? n_out : &tmp));
}

int wh_load_audit(struct wh_conn *c, const struct wh_load *ld, const struct wh_audit *a, size_t n,
                  struct wh_load_stats *st)
{
    REFUSE_WHILE_LOADING(c);
    struct wh_load_stats tmp;
    WRITE_CALL(c, c->wh->ops->load_audit(c, ld, a, n, st ? st : &tmp));
}

int wh_scan(struct wh_conn *c, const char *sql, wh_scan_cb cb, void *arg)
{
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->scan(c, sql, cb, arg);
}

int wh_set_scorer(struct wh *wh, wh_score_cb cb, void *arg)
{
    return wh->ops->set_scorer(wh, cb, arg);
}

int wh_checkpoint(struct wh_conn *c, bool force)
{
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->checkpoint(c, force));
}

int wh_persons_refresh(struct wh_conn *c, uint64_t *next_out)
{
    REFUSE_WHILE_LOADING(c);
    WRITE_CALL(c, c->wh->ops->persons_refresh(c, next_out));
}

int wh_backup(struct wh_conn *c, const char *dest_path)
{
    REFUSE_WHILE_LOADING(c);
    pthread_rwlock_wrlock(&c->wh->write_lock);
    int rc = c->wh->ops->backup(c, dest_path);
    pthread_rwlock_unlock(&c->wh->write_lock);
    return rc;
}

int wh_model_parse(struct wh_conn *c, const char *sql, json_t **refs_out)
{
    *refs_out = NULL;
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->model_parse(c, sql, refs_out);
}

int wh_model_columns(struct wh_conn *c, const char *sql, const json_t *unbuilt,
                     json_t **columns_out)
{
    *columns_out = NULL;
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->model_columns(c, sql, unbuilt, columns_out);
}

int wh_model_define(struct wh_conn *c, const char *name, const json_t *spec, bool reset)
{
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->model_define(c, name, spec, reset);
}

int wh_model_build(struct wh_conn *c, const struct wh_model *m, const struct wh_model_opts *o,
                   json_t **out)
{
    *out = NULL;
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->model_build(c, m, o, out);
}

int wh_model_record(struct wh_conn *c, const json_t *run)
{
    REFUSE_WHILE_LOADING(c);
    return c->wh->ops->model_record(c, run);
}

const char *wh_errmsg(struct wh_conn *c)
{
    if (!c)
        return open_err;
    return c->wh->ops->errmsg(c);
}

void wh_result_init(struct wh_result *r)
{
    memset(r, 0, sizeof(*r));
}

void wh_result_release(struct wh_result *r)
{
    json_decref(r->columns);
    json_decref(r->rows);
    wh_result_init(r);
}

json_t *wh_result_to_json(struct wh_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "columns", r->columns ? r->columns : json_array());
    json_object_set_new(o, "rows", r->rows ? r->rows : json_array());
    json_object_set_new(o, "rowCount", json_integer((json_int_t)r->n_rows));
    json_object_set_new(o, "truncated", json_boolean(r->truncated));
    json_object_set_new(o, "elapsedMs", json_integer((json_int_t)(r->elapsed_us / 1000)));
    r->columns = NULL;
    r->rows = NULL;
    return o;
}

/* ---- retention ---- */

#define RETAIN_BATCH_DEFAULT 122880
#define RETAIN_TRIES 8

/* One retention step under the shared write lock, retried on a conflict (ERR_BUSY) with
 * another writer after a short backoff. */
static int retain_step(struct wh_conn *c, const struct wh_retention *r,
                       struct wh_retention_stats *st, enum wh_table t, uint64_t lo, uint64_t hi,
                       uint64_t *n_out)
{
    int rc = ERR_BUSY;
    for (int k = 0; k < RETAIN_TRIES && rc == ERR_BUSY; k++) {
        if (k > 0) {
            st->conflicts++;
            struct timespec ts = {0, (long)(20000000L << (k < 5 ? k : 5))};
            nanosleep(&ts, NULL);
        }
        int64_t t0 = time_mono_us();
        pthread_rwlock_rdlock(&c->wh->write_lock);
        rc = c->wh->ops->retain_delete(c, t, r->before_us, lo, hi, n_out);
        pthread_rwlock_unlock(&c->wh->write_lock);
        int64_t dt = time_mono_us() - t0;
        if (dt > st->max_batch_us)
            st->max_batch_us = dt;
    }
    return rc;
}

int wh_retain(struct wh_conn *c, const struct wh_retention *r, struct wh_retention_stats *st_out)
{
    struct wh_retention_stats st = {0};
    int64_t t0 = time_mono_us();
    uint64_t step = r->batch_offsets ? r->batch_offsets : RETAIN_BATCH_DEFAULT;
    int rc = 0;
    REFUSE_WHILE_LOADING(c);
    static const enum wh_table tables[] = {WH_TABLE_EVENTS, WH_TABLE_CHANGES};
    for (size_t i = 0; i < ARRAY_LEN(tables) && rc == 0 && !st.stopped; i++) {
        uint64_t lo = 0, hi = 0;
        rc = c->wh->ops->retain_range(c, tables[i], r->before_us, &lo, &hi);
        if (rc == ERR_NOTFOUND) {
            rc = 0;
            continue;
        }
        for (uint64_t w = lo, end; rc == 0 && w < hi; w = end) {
            end = hi - w > step ? w + step : hi; /* one window: [w, end) */
            if (r->stop && r->stop(r->stop_arg)) {
                st.stopped = true;
                break;
            }
            uint64_t n = 0;
            rc = retain_step(c, r, &st, tables[i], w, end, &n);
            if (rc == 0) {
                st.batches++;
                if (tables[i] == WH_TABLE_EVENTS)
                    st.events += n;
                else
                    st.changes += n;
            }
        }
    }
    /* only after every old event is gone: an identity row is forgotten when no event of its
     * id is left */
    if (rc == 0 && !st.stopped) {
        rc = ERR_BUSY;
        for (int k = 0; rc == ERR_BUSY && k < RETAIN_TRIES; k++) {
            if (k > 0) {
                st.conflicts++;
                struct timespec ts = {0, 50000000L};
                nanosleep(&ts, NULL);
            }
            pthread_rwlock_rdlock(&c->wh->write_lock);
            rc = c->wh->ops->retain_persons(c, r->before_us, &st.links, &st.firsts);
            pthread_rwlock_unlock(&c->wh->write_lock);
        }
    }
    st.elapsed_us = time_mono_us() - t0;
    if (st_out)
        *st_out = st;
    return rc;
}

int wh_erase_persons(struct wh_conn *c, const char *const *ids, size_t n, uint64_t *n_out)
{
    REFUSE_WHILE_LOADING(c);
    *n_out = 0;
    if (!c->wh->ops->erase_persons)
        return ERR_INVALID;
    WRITE_CALL(c, c->wh->ops->erase_persons(c, ids, n, n_out));
}

int wh_erase_records(struct wh_conn *c, const char *const *coll_ids, const char *const *rec_ids,
                     size_t n, uint64_t *n_out)
{
    REFUSE_WHILE_LOADING(c);
    *n_out = 0;
    if (!c->wh->ops->erase_records)
        return ERR_INVALID;
    WRITE_CALL(c, c->wh->ops->erase_records(c, coll_ids, rec_ids, n, n_out));
}
