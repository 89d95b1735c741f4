/* relay.c - the outbox relay: moves committed change rows from the store's outbox into the
 * log's "changes" topic, in commit order, and deletes them from the outbox only once the log
 * holds them durably.
 *
 * Exactly once into the log: one relay thread appends outbox rows in id order, so outbox ids
 * in the topic only grow. On start the relay reads the topic's last record and deletes every
 * outbox row up to that id before it moves anything, so a crash between "appended" and
 * "deleted from the outbox" never appends a row twice. A crash before the append leaves the
 * row in the outbox, where the next start finds it. Before it publishes, the relay syncs the
 * store (commits are not synced one by one under synchronous=NORMAL), so a power loss cannot
 * take back a change that the log already holds (an fdatasync of the store's write-ahead log,
 * store_sync_commits).
 *
 * Idle, the relay sleeps until a commit that added outbox rows wakes it (store_on_outbox); it
 * polls only once a second, for rows another process committed. */
#include <errno.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <string.h>
#include <time.h>

#include "metrics/metrics.h"
#include "pipeline/pipeline.h"

#define RELAY_BATCH 1000
/* After a pass that moved rows the next one waits this long, so that a steady write load is
 * moved (and the store and the log synced) in batches rather than per commit. */
#define RELAY_GATHER_MS 20
/* Idle, the relay sleeps until the store's outbox hook says a commit added rows; this poll only
 * finds rows that another process wrote into the store (a CLI beside the server). */
#define RELAY_POLL_MS 1000
/* The first wait after a failed pass; doubled up to 1 s while passes fail. */
#define RELAY_RETRY_MS 20

struct pipeline_relay {
    struct store *store;
    struct evlog *log;
    pthread_t thread;
    pthread_mutex_t lock; /* leaf: guards stop, kicked */
    pthread_cond_t cond;
    bool stop;
    bool kicked;
    int paused;      /* [lock] pipeline_relay_pause holders: no pass starts */
    bool busy;       /* [lock] a pass runs */
    int64_t last_id; /* the newest outbox id known to be in the log */
    struct metrics_series *m_moved;
    struct metrics_series *m_errors;
};

/* The outbox backlog, counted when metrics are scraped. */
static struct store *backlog_store;

static void collect_backlog(struct buf *out, const char *name, void *arg)
{
    UNUSED(arg);
    int64_t n = 0;
    struct store *st = __atomic_load_n(&backlog_store, __ATOMIC_ACQUIRE);
    if (st && store_outbox_pending(st, &n) == 0)
        metrics_write_sample(out, name, NULL, NULL, (double)n);
}

/* The outbox id of the newest record below end that is not erased (person deletion erases
 * change records into empty tombstones, docs/evlog.md), read backwards in windows; 0 when
 * every one is erased. */
static int last_unerased_id(struct evlog *log, uint64_t end, int64_t *id_out)
{
    uint64_t start = 0;
    int rc = evlog_start_offset(log, PIPELINE_TOPIC_CHANGES, &start);
    struct evlog_batch b;
    evlog_batch_init(&b);
    for (uint64_t hi = end; rc == 0 && hi > start && *id_out == 0;) {
        uint64_t lo = hi - start > 256 ? hi - 256 : start;
        for (uint64_t from = lo; rc == 0 && from < hi;) { /* the window, the last id found wins */
            rc = evlog_read(log, PIPELINE_TOPIC_CHANGES, from, (size_t)(hi - from), 8u << 20, &b);
            for (size_t i = 0; rc == 0 && i < b.n; i++) {
                if (b.recs[i].len == 0 || b.recs[i].offset >= hi)
                    continue;
                json_t *j = json_loadb((const char *)b.recs[i].data, b.recs[i].len, 0, NULL);
                json_t *id = j ? json_object_get(j, "id") : NULL;
                if (json_is_integer(id))
                    *id_out = json_integer_value(id);
                else
                    rc = ERR_CORRUPT;
                json_decref(j);
            }
            if (rc != 0 || b.n == 0)
                break;
            from = b.next_offset;
        }
        hi = lo;
    }
    evlog_batch_release(&b);
    return rc;
}

/* The newest outbox id the topic holds (the largest of each partition's last record), or 0
 * when it is empty. */
static int last_logged_id(struct evlog *log, int64_t *id_out)
{
    *id_out = 0;
    struct evlog_batch b;
    evlog_batch_init(&b);
    int rc = evlog_tail(log, PIPELINE_TOPIC_CHANGES, &b);
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        if (b.recs[i].len == 0) { /* erased: the newest record that is not */
            int64_t id = 0;
            rc = last_unerased_id(log, b.recs[i].offset, &id);
            if (id > *id_out)
                *id_out = id;
            continue;
        }
        json_t *j = json_loadb((const char *)b.recs[i].data, b.recs[i].len, 0, NULL);
        json_t *id = j ? json_object_get(j, "id") : NULL;
        if (json_is_integer(id) && json_integer_value(id) > *id_out)
            *id_out = json_integer_value(id);
        else if (!json_is_integer(id))
            rc = ERR_CORRUPT;
        json_decref(j);
    }
    evlog_batch_release(&b);
    return rc;
}

/* Appends "key":"value" (value escaped) and a comma. */
static void put_str(struct buf *b, const char *key, const char *value)
{
    buf_putc(b, '"');
    buf_puts(b, key);
    buf_puts(b, "\":\"");
    buf_json_escape(b, value, strlen(value));
    buf_puts(b, "\",");
}

/* An outbox row becomes a change record, written as text: the record's stored JSON is copied
 * in, not parsed and encoded again; its commit time becomes "changedAt" in ISO 8601, like
 * every time on the data path. */
static void change_text(struct buf *b, const struct store_outbox_row *row)
{
    buf_printf(b, "{\"id\":%lld,", (long long)row->id);
    put_str(b, "collectionId", row->collection_id);
    put_str(b, "collection", row->collection);
    put_str(b, "recordId", row->record_id);
    put_str(b, "action", row->action);
    buf_puts(b, "\"record\":");
    if (row->record)
        buf_append(b, row->record, row->record_len);
    else
        buf_puts(b, "null");
    int64_t us;
    if (time_parse(row->time, strlen(row->time), &us) == 0) {
        char iso[TIME_PB_LEN];
        time_format_iso(us, iso);
        buf_puts(b, ",\"changedAt\":\"");
        buf_puts(b, iso);
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

/* Moves one batch; returns the number of rows moved, or a negative error. */
static int relay_once(struct pipeline_relay *r)
{
    struct store_outbox_row *rows = NULL;
    size_t n = 0;
    int rc = store_outbox_rows(r->store, r->last_id, RELAY_BATCH, &rows, &n);
    if (rc != 0)
        return rc;
    if (n == 0) {
        store_outbox_rows_free(rows, n);
        return 0;
    }
    /* the rows must be durable in the store before the log has them: after a power loss the
     * store could otherwise lose a change the log already published, and reuse its id */
    rc = store_sync_commits(r->store);
    if (rc != 0) {
        store_outbox_rows_free(rows, n);
        return rc;
    }
    struct evlog_rec *recs = xcalloc(n, sizeof(*recs));
    struct evlog_key *keys = xcalloc(n, sizeof(*keys));
    size_t *ends = xcalloc(n, sizeof(*ends));
    struct buf text;
    buf_init(&text);
    for (size_t i = 0; i < n; i++) {
        change_text(&text, &rows[i]);
        ends[i] = text.len;
        /* the record: its changes keep their order on a partitioned log */
        keys[i].data = rows[i].record_id;
        keys[i].len = strlen(rows[i].record_id);
    }
    for (size_t i = 0; i < n; i++) { /* the buffer may have moved while it grew */
        size_t start = i ? ends[i - 1] : 0;
        recs[i].data = text.ptr + start;
        recs[i].len = ends[i] - start;
    }
    int64_t max_id = rows[n - 1].id;
    uint64_t first;
    rc = evlog_append_keyed_sync(r->log, PIPELINE_TOPIC_CHANGES, recs, keys, n, &first);
    if (rc == 0) {
        r->last_id = max_id;
        metrics_inc(r->m_moved, n);
        /* the log has them durably: now they may leave the outbox */
        rc = store_outbox_delete(r->store, max_id);
    }
    buf_release(&text);
    free(ends);
    free(recs);
    free(keys);
    store_outbox_rows_free(rows, n);
    return rc == 0 ? (int)n : rc;
}

static void *relay_main(void *arg)
{
    struct pipeline_relay *r = arg;
    int backoff_ms = RELAY_RETRY_MS;
    prctl(PR_SET_NAME, "outbox-relay"); /* per-thread CPU in the benchmarks */
    for (;;) {
        pthread_mutex_lock(&r->lock);
        while (r->paused > 0 && !r->stop)
            pthread_cond_wait(&r->cond, &r->lock);
        r->busy = true;
        r->kicked = false; /* a commit from now on kicks again; earlier ones this pass reads */
        pthread_mutex_unlock(&r->lock);
        int moved = relay_once(r);
        pthread_mutex_lock(&r->lock);
        r->busy = false;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        int wait_ms;
        if (moved < 0) {
            metrics_inc(r->m_errors, 1);
            xlog_warn("outbox relay: %s (store: %s; log: %s)", err_str(moved),
                      store_errmsg(r->store), evlog_errmsg(r->log));
            wait_ms = backoff_ms;
            backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
        } else {
            backoff_ms = RELAY_RETRY_MS;
            wait_ms = moved > 0 ? RELAY_GATHER_MS : RELAY_POLL_MS;
        }
        /* after a failed pass or one that moved rows the whole wait is taken (commits meanwhile
         * are in the next batch); idle, a commit ends it */
        bool whole = moved != 0;
        pthread_mutex_lock(&r->lock);
        if (moved == RELAY_BATCH && !r->stop) {
            pthread_mutex_unlock(&r->lock);
            continue; /* more is waiting */
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!r->stop && (whole || !r->kicked))
            if (pthread_cond_timedwait(&r->cond, &r->lock, &until) == ETIMEDOUT)
                break;
        bool stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop) {
            /* one last pass so a clean stop leaves nothing behind */
            relay_once(r);
            return NULL;
        }
    }
}

/* store_outbox_fn: a commit added outbox rows */
static void outbox_committed(void *arg)
{
    pipeline_relay_kick(arg);
}

int pipeline_relay_start(struct store *st, struct evlog *log, struct pipeline_relay **out)
{
    struct pipeline_relay *r = xcalloc(1, sizeof(*r));
    r->store = st;
    r->log = log;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->m_moved = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_outbox_relayed_total",
                                                "Outbox rows moved into the changes topic.", NULL));
    r->m_errors = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_outbox_errors_total",
                                                 "Outbox relay passes that failed.", NULL));
    __atomic_store_n(&backlog_store, st, __ATOMIC_RELEASE);
    metrics_collector(METRICS_GAUGE, "tandem_outbox_backlog",
                      "Committed record changes waiting in the outbox for the log.",
                      collect_backlog, NULL);
    /* On Kafka the last message of each partition does not say which rows reached the topic:
     * partitions are delivered independently, so after a kill mid-batch a row of one
     * partition may be missing while a later row of another landed, and deleting up to the
     * largest id would lose it. There the relay resends every outbox row instead, and the
     * primary's mirror drops those it already copied (an id not above the last one copied
     * from the record's partition, docs/scale-out.md). */
    bool partitioned = strcmp(evlog_backend_name(log), "kafka") == 0;
    int rc = partitioned ? 0 : last_logged_id(log, &r->last_id);
    if (rc == 0 && r->last_id > 0)
        rc = store_outbox_delete(st, r->last_id);
    if (rc != 0) {
        xlog_error("outbox relay cannot start: %s", err_str(rc));
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return rc;
    }
    store_on_outbox(st, outbox_committed, r);
    rc = pthread_create(&r->thread, NULL, relay_main, r);
    if (rc != 0) {
        store_on_outbox(st, NULL, NULL);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return -rc;
    }
    *out = r;
    return 0;
}

void pipeline_relay_kick(struct pipeline_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->kicked = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void pipeline_relay_pause(struct pipeline_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->paused++;
    while (r->busy)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

void pipeline_relay_resume(struct pipeline_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->paused--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

void pipeline_relay_stop(struct pipeline_relay *r)
{
    if (!r)
        return;
    store_on_outbox(r->store, NULL, NULL); /* no kick runs after this */
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    __atomic_store_n(&backlog_store, NULL, __ATOMIC_RELEASE);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
