/* pipeline.h - the data path: the outbox relay (store -> the log's "changes" topic) and the
 * warehouse loader.
 *
 * The loader: one consumer thread per log topic ("events",
 * "changes", "predictions") that reads durable records from the event log and loads them into the
 * warehouse exactly once.
 *
 * Exactly once: a consumer's position lives in the warehouse's _offsets table and is written
 * in the same warehouse transaction as the rows it covers (wh_load_events/wh_load_changes).
 * On start a consumer resumes from that stored offset, so a crash anywhere never loses or
 * doubles a row. The position is also registered with the log (evlog_consumer_commit) only
 * so that retention keeps what is not loaded yet: at most once a second under load, when the
 * log is drained, and on stop (late only keeps more); that copy is never read back.
 *
 * Batches adapt: a consumer that finds the log drained waits a few milliseconds and loads
 * whatever arrived (small batches: freshness first); a batch that comes back full doubles the
 * next one up to max_batch (throughput first); a batch well under its size halves it.
 * While the events consumer is behind, consecutive batches share one warehouse transaction
 * (bulk_rows); the offset is stored with its last batch, so exactly once is unchanged, and a
 * failure rolls back and re-reads every batch since the last commit.
 * A record that cannot be turned into a row goes to _rejects with the reason and its offset and
 * never blocks the pipeline. A failed load is retried with backoff (last_error in the status).
 *
 * Threads: pipeline_start/pipeline_stop run on one thread (main). pipeline_status and
 * pipeline_status_json may be called from any thread. The loader threads each own one
 * warehouse connection. */
#ifndef TANDEM_PIPELINE_PIPELINE_H
#define TANDEM_PIPELINE_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "evlog/evlog.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

struct pipeline_cfg {
    struct evlog *log;      /* borrowed; outlives the pipeline */
    struct wh *wh;          /* borrowed; outlives the pipeline */
    struct store *store;    /* borrowed; when set, the changes consumer keeps an app_<name> mirror
                             * for every collection whose name does not start with '_', created,
                             * altered and dropped as the collections change, before it loads the
                             * changes that follow */
    size_t min_batch;       /* records; default 256 */
    size_t max_batch;       /* records; default 50000 */
    size_t max_batch_bytes; /* payload bytes per read; default 64 MiB */
    int64_t idle_wait_us;   /* wait when the log is drained; default 10 ms */
    /* the changes consumer's wait when drained (at least idle_wait_us); default 100 ms: each
     * of its batches costs a DuckDB transaction and queries per collection, so under a
     * steady write load it gathers ~100 ms of changes per batch instead of ~10 */
    int64_t changes_idle_wait_us;
    int64_t retry_max_us;           /* longest backoff after a failed load; default 5 s */
    int64_t checkpoint_interval_us; /* checkpoint at least this often; default 60 s */
    uint64_t checkpoint_rows;       /* ... or after this many rows; default 500,000 */
    bool read_ahead; /* events: a helper thread reads and parses the next batch while the
                      * current one loads; default true */
    /* events, bulk loading: when the log already holds at least bulk_rows records past what
     * is loaded (a backlog, e.g. after downtime), batches join one warehouse transaction of
     * exactly bulk_rows rows (the last read is sized to end there), committed with the offset
     * of its last batch. DuckDB writes a transaction of more than one row group (122,880 rows)
     * compressed straight into the file instead of logging every row in its WAL and
     * compressing it again at the next checkpoint: about a third less CPU per row. A consumer
     * that keeps up never waits for records to fill a transaction: every batch commits alone
     * (freshness first). Default 2 * 122,880; 0: every batch is its own transaction. */
    uint64_t bulk_rows;
    /* how often a thread of the pipeline brings the insights' identity tables up to date
     * (wh_persons_refresh) with the events loaded since; default 5 s; 0: never (an insight
     * still refreshes them itself before it runs). When the events consumer has drained a
     * backlog of bulk_rows or more it refreshes once itself, before its status shows it
     * caught up, so the first insight after a large load never carries that refresh. */
    int64_t persons_refresh_us;
};

void pipeline_cfg_defaults(struct pipeline_cfg *cfg);

struct pipeline;

/* Creates the warehouse tables if needed and starts the consumers "warehouse-events" (topic
 * "events"), "warehouse-changes" (topic "changes") and "warehouse-predictions" (topic
 * "predictions", the ML module's served predictions), "warehouse-requests" (topic
 * "requests", the request logs), and the identity refresh thread
 * (persons_refresh_us). On failure the detail is logged and a
 * negative code returned. */
int pipeline_start(const struct pipeline_cfg *cfg, struct pipeline **out) MUST_USE;
/* Stops the consumers after their current batch (committed or rolled back as a whole) and
 * frees the pipeline. NULL is a no-op. */
void pipeline_stop(struct pipeline *p);

struct pipeline_status {
    char consumer[64];
    char topic[32];
    uint64_t committed;    /* next offset stored in the warehouse */
    uint64_t end;          /* the log's durable end */
    uint64_t lag_records;  /* end - committed */
    double lag_seconds;    /* age of the oldest record not loaded yet; 0 when caught up */
    uint64_t rows;         /* rows loaded since start */
    uint64_t rejects;      /* rejects since start */
    uint64_t batches;      /* committed batches (reads) since start */
    uint64_t transactions; /* warehouse transactions committed since start */
    size_t batch_size;     /* current read size */
    char last_error[256];  /* "" when the last attempt succeeded */
    /* false until the consumer has read its stored offset (after a start): committed is not
     * known then, and the status counts every record of the log as not yet loaded */
    bool ready;
};

/* Copies the status of at most max consumers into out; returns how many there are. */
size_t pipeline_status(struct pipeline *p, struct pipeline_status *out, size_t max);
/* {"consumers":[{"consumer":..,"topic":..,"committedOffset":N,"logEndOffset":N,
 * "lagRecords":N,"lagSeconds":x,"rowsLoaded":N,"rejects":N,"batches":N,"transactions":N,"batchSize":N,
 * "lastError":s|null}]} */
json_t *pipeline_status_json(struct pipeline *p);

/* Turns one "events" payload into a row: the whole payload is validated as JSON (grammar,
 * UTF-8, nesting), the members are taken from its top level, and every string in ev is a
 * NUL-terminated copy in a (properties/traits/context as their original JSON text). Returns 0,
 * or ERR_INVALID with reason filled. Exposed for tests. */
int pipeline_parse_event(const void *data, size_t len, uint64_t offset, struct wh_event *ev,
                         struct arena *a, char *reason, size_t reason_len) MUST_USE;
/* The same for a "changes" payload; ch->record points into *doc. */
int pipeline_parse_change(const void *data, size_t len, uint64_t offset, struct wh_change *ch,
                          json_t **doc, char *reason, size_t reason_len) MUST_USE;
/* The same for a "predictions" payload ({"model","version","timestamp","features",
 * "prediction"}, written by the ML module); strings live in a. */
int pipeline_parse_prediction(const void *data, size_t len, uint64_t offset,
                              struct wh_prediction *p, struct arena *a, char *reason,
                              size_t reason_len) MUST_USE;

/* The same for a "requests" payload ({"id","created","level","message","data"}, a request
 * log entry written by the API, docs/operations.md "Request logs"); strings live in a. */
int pipeline_parse_request(const void *data, size_t len, uint64_t offset, struct wh_request *r,
                           struct arena *a, char *reason, size_t reason_len) MUST_USE;
/* The same for an "audit" payload (governance/audit.h); strings live in a. */
int pipeline_parse_audit(const void *data, size_t len, uint64_t offset, struct wh_audit *au,
                         struct arena *a, char *reason, size_t reason_len) MUST_USE;

/* ---- the outbox relay ---- */

#define PIPELINE_TOPIC_EVENTS "events"
#define PIPELINE_TOPIC_CHANGES "changes"

struct pipeline_relay;

/* Moves committed outbox rows of st into the "changes" topic of log, in commit order, each
 * exactly once: rows leave the outbox only after the log holds them durably, and a start
 * first drops the rows the log already has. Records are the outbox rows as JSON:
 * {"id","collectionId","collection","recordId","action","record","changedAt"} with changedAt
 * the commit time in ISO 8601. */
int pipeline_relay_start(struct store *st, struct evlog *log, struct pipeline_relay **out) MUST_USE;
/* Wakes the relay now (after a record write) instead of at its next poll. NULL is fine. */
void pipeline_relay_kick(struct pipeline_relay *r);
/* Holds the relay between two passes: returns once no pass runs, and none starts until the
 * matching pipeline_relay_resume. While paused the "changes" topic does not grow and the
 * outbox only grows, so a copy of the store and the topic's end taken then agree (backups).
 * Any thread; NULL is fine. */
void pipeline_relay_pause(struct pipeline_relay *r);
void pipeline_relay_resume(struct pipeline_relay *r);
/* Moves what is left, then stops the thread and frees. NULL is fine. */
void pipeline_relay_stop(struct pipeline_relay *r);

#endif
