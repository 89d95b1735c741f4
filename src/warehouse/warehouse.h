/* warehouse.h - the analytical store: events, changes, collection mirrors, consumer offsets
 * and read-only SQL.
 *
 * Backends sit behind struct wh_ops; the rest of tandem calls the wh_* facade only.
 * "duckdb" (src/warehouse/duckdb/) keeps everything in one DuckDB file owned by this process;
 * a ClickHouse backend can follow. docs/warehouse.md describes every table and column.
 *
 * Exactly once: wh_load_events / wh_load_changes write a batch of rows, the rejects of that
 * batch and the consumer's next offset in ONE warehouse transaction. Either all of it is there
 * after a crash or none of it is, so a loader that resumes from wh_offset_get never loses or
 * doubles a row.
 *
 * Threads: struct wh is shared by every thread; wh_open and wh_close run while no other thread
 * uses it. A struct wh_conn belongs to one thread at a time (each thread opens its own);
 * wh_interrupt is the one call another thread may make on it.
 *
 * Error codes (besides -errno): ERR_INVALID a bad query, parameter or name (the detail from
 * the engine is in wh_errmsg); ERR_DENIED a statement the read-only guard refuses;
 * ERR_BUSY a query interrupted by its timeout, or a transaction conflict (retry the batch);
 * ERR_NOTFOUND no stored offset / no such mirror; ERR_INTERNAL the engine failed;
 * ERR_LIMIT a result over the byte cap, or a statement that needs more memory than the
 * engine's memory limit even spilling to its temporary directory (the message of a failed
 * wh_query then starts with WH_NO_MEMORY). */
#ifndef TANDEM_WAREHOUSE_WAREHOUSE_H
#define TANDEM_WAREHOUSE_WAREHOUSE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "store/schema.h"

/* How the message of a query over the memory limit begins (see ERR_LIMIT above). */
#define WH_NO_MEMORY                                                                               \
    "the statement needs more memory than the warehouse's memory limit, even spilling to disk"

/* ---- configuration ---- */

struct wh_cfg {
    const char *backend;      /* "duckdb" (NULL means "duckdb") */
    const char *path;         /* duckdb: the database file, e.g. "<--dir>/warehouse.duckdb" */
    int threads;              /* engine threads; 0 = the engine's default */
    const char *memory_limit; /* e.g. "2GB" (default "2GB"; NULL is taken as the default) */
    const char *temp_limit;   /* most spilled to temporary files (default "4GB"; NULL: same) */
    int64_t query_timeout_ms; /* SQL API statement timeout (default 30000) */
    uint64_t query_max_rows;  /* SQL API row cap (default 10000) */
    uint64_t query_max_bytes; /* SQL API result cap, in bytes of JSON (default 32 MiB) */
    uint64_t wal_force_bytes; /* checkpoint: FORCE once the WAL is this large (256 MiB) */
    /* the engine's automatic checkpoint past this WAL size (default "256MB"; NULL = the
     * engine's own 16MB) */
    const char *checkpoint_threshold;
};

void wh_cfg_defaults(struct wh_cfg *cfg);

/* ---- rows handed to the loaders (all borrowed for the duration of the call) ---- */

#define WH_NO_TIME INT64_MIN /* a timestamp that is absent: stored as NULL */

/* One Segment event (topic "events"). NULL strings are stored as NULL. The JSON members are
 * JSON text (already validated, e.g. produced by json_dumps) or NULL. */
struct wh_event {
    uint64_t log_offset;
    const char *id; /* messageId */
    const char *type, *event, *user_id, *anonymous_id, *group_id, *previous_id;
    int64_t timestamp_us, original_timestamp_us, sent_at_us, received_at_us;
    const char *properties, *traits, *context;
    const char *source; /* the write key's name */
};

enum wh_action { WH_ACTION_CREATE, WH_ACTION_UPDATE, WH_ACTION_DELETE };

/* One record change (topic "changes"). record is the after image; on delete the
 * image the record had when deleted (the relay sends it; NULL is accepted too). */
struct wh_change {
    uint64_t log_offset;
    int64_t id; /* outbox id */
    const char *collection, *collection_id, *record_id;
    enum wh_action action;
    const json_t *record;
    int64_t changed_at_us;
};

/* One served prediction (topic "predictions", docs/ml.md "The predictions log"). features
 * and prediction are JSON text. score: the prediction's score (binary, regression) or label
 * (multiclass). */
struct wh_prediction {
    uint64_t log_offset;
    const char *model;
    int64_t version;
    int64_t timestamp_us;
    const char *features, *prediction;
    double score;
};

/* One request log entry (topic "requests", docs/operations.md "Request logs"): PocketBase's
 * log model. created is PocketBase's date text ("2006-01-02 15:04:05.000Z"); data is the JSON
 * text of an object ({"type":"request","method",...}). */
struct wh_request {
    uint64_t log_offset;
    const char *id, *created;
    int64_t level;
    const char *message;
    const char *data;
};

/* A read of the request logs (GET /api/logs, /api/logs/{id}); strings borrowed. */
struct wh_logs_query {
    const char *id;     /* non-NULL: the one entry with this id (the rest is ignored) */
    const char *filter; /* PocketBase's filter over id, created, level, message, data.*; or NULL */
    const char *sort;   /* PocketBase's sort ("-created,level", "@rowid"); or NULL */
    int64_t page, per_page;
    bool skip_total;
    int64_t now_us;     /* for @now, @todayStart, ... */
    int64_t timeout_ms; /* <= 0: the configured default */
};

/* One audit trail entry (topic "audit", docs/governance.md "Audit trail"). summary is JSON
 * text; any string may be NULL. */
struct wh_audit {
    uint64_t log_offset;
    int64_t seq;
    int64_t time_us;
    const char *action, *actor_id, *actor_email, *ip, *method, *route, *path, *summary;
    int64_t status; /* 0: none */
    const char *prev, *hash;
};

/* A log record that could not be turned into a row: stored in _rejects, never retried. */
struct wh_reject {
    uint64_t log_offset;
    const char *reason;
    const void *payload;
    size_t payload_len;
};

/* What a load commits together with its rows. */
struct wh_load {
    const char *consumer; /* e.g. "warehouse-events" */
    const char *topic;    /* e.g. "events" */
    uint64_t next_offset; /* every log offset below this one is done after the commit */
    const struct wh_reject *rejects;
    size_t n_rejects;
    /* wh_load_events only: more batches follow in the same transaction. The rows and rejects
     * are appended, but neither the offset is stored nor the transaction committed; the next
     * wh_load_events call on the connection continues it, and the first one without `more`
     * stores its next_offset and commits every batch of the transaction at once. Lets a loader
     * that is behind write large transactions (which DuckDB compresses straight into the file
     * instead of logging every row in its WAL) from small reads. */
    bool more;
};

struct wh_load_stats {
    uint64_t rows;    /* rows written to events / changes */
    uint64_t rejects; /* rows written to _rejects (the given ones + the backend's own) */
};

/* ---- query results ---- */

/* An analyst's reach (docs/governance.md "Analyst access"). A query with a scope may read only
 * `events`, the mirrors of collections that are not auth collections (mirrors never hold
 * password or hidden fields) and the SQL models' tables, named plainly or as main.<name>; CTEs
 * whose names are no relation of the database; no table function, PRAGMA, DESCRIBE/SHOW or
 * other schema or catalog. Checked on DuckDB's own parse; a refusal is ERR_DENIED. */
struct wh_scope {
    const char *const *auth_collections; /* ids of the auth collections: their mirrors are out */
    size_t n_auth_collections;
};

struct wh_query {
    const struct wh_scope *scope; /* NULL: a superuser's full (read-only) access */
    const char *sql;
    const json_t *params; /* JSON array bound to $1.. / ?, or NULL */
    int64_t timeout_ms;   /* <= 0: the configured default */
    uint64_t max_rows;    /* 0: the configured default */
    uint64_t max_bytes;   /* 0: the configured default; a larger result fails (ERR_LIMIT) */
};

/* How the SQL API writes a result; the byte cap counts the rows written this way. */
#define WH_RESULT_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* A read-only query's result, already in JSON form. Owned by the caller: wh_result_release. */
struct wh_result {
    json_t *columns; /* [{"name":..., "type":...}] */
    json_t *rows;    /* [[...], ...] */
    uint64_t n_rows;
    bool truncated; /* more rows existed than max_rows */
    int64_t elapsed_us;
};

void wh_result_init(struct wh_result *r);
void wh_result_release(struct wh_result *r);
/* The SQL API response: {"columns":[...],"rows":[...],"rowCount":N,"truncated":b,
 * "elapsedMs":N}. TAKES the result's columns and rows (the result is left empty). */
json_t *wh_result_to_json(struct wh_result *r);

/* ---- streaming scans and the scorer (for the ML module) ---- */

enum wh_col_kind {
    WH_COL_NUM,   /* booleans, integers, decimals, floats: as doubles, NaN for NULL */
    WH_COL_TEXT,  /* VARCHAR: as byte strings, ptr NULL for NULL */
    WH_COL_OTHER, /* anything else (dates, lists, ...): not handed over */
};

struct wh_scan_col {
    const char *name;
    enum wh_col_kind kind;
};

/* One chunk of a scan (everything BORROWED for the duration of the callback). */
struct wh_scan_chunk {
    size_t n_rows, n_cols;
    const struct wh_scan_col *cols;
    double *const *num;      /* num[j][i] for WH_COL_NUM columns, else NULL */
    struct str *const *text; /* text[j][i] for WH_COL_TEXT columns, else NULL */
};
/* Non-zero stops the scan, which returns that value. */
typedef int (*wh_scan_cb)(void *arg, const struct wh_scan_chunk *ch);

/* Scores rows [first, first + n) of ch (its columns are the features in order, numbers or
 * text; the names are empty) with the model named model[0..model_len) into out[0..n).
 * Non-zero with a message in err on failure. Called on the engine's threads, several at
 * once. */
typedef int (*wh_score_cb)(void *arg, const char *model, size_t model_len,
                           const struct wh_scan_chunk *ch, size_t first, size_t n, double *out,
                           char *err, size_t err_len);

/* ---- the backend interface ---- */

struct wh;
struct wh_conn;

/* ---- SQL models (docs/models.md; definitions and scheduling live in src/models/) ---- */

/* A model as the warehouse builds it; every member borrowed for the call. The name is a
 * validated identifier (models/ checks it), used as the name of the published relation. */
struct wh_model {
    const char *name;
    const char *sql;          /* one SELECT in the backend's dialect */
    const char *materialized; /* "view", "table" or "incremental" */
    const char *unique_key;   /* incremental: the key column */
    /* [{"type":"unique"|"not_null"|"accepted_values"|"relationships"|"row_count"|"sql",
     * "column"?,"values"?,"to"?,"field"?,"min"?,"max"?,"sql"?,"severity":"error"|"warn",
     * "name"}] */
    const json_t *tests;
};

struct wh_model_opts {
    bool full_refresh; /* incremental: rebuild from every row instead of the new ones */
};

/* ---- retention (docs/warehouse.md "Retention") ---- */

/* The log-ordered tables retention deletes from. */
enum wh_table { WH_TABLE_EVENTS, WH_TABLE_CHANGES };

struct wh_retention {
    /* rows older than this go: events by "timestamp", changes by changed_at (except the
     * latest change of each record that still exists, which mirrors are refilled from) */
    int64_t before_us;
    uint64_t batch_offsets; /* log offsets per delete transaction (0: 122,880, a row group) */
    /* asked before each batch (may be NULL): true ends the run early; the next run goes on */
    bool (*stop)(void *arg);
    void *stop_arg;
};

struct wh_retention_stats {
    uint64_t events, changes; /* rows deleted */
    uint64_t links, firsts;   /* identity rows forgotten (_person_links, _did_first) */
    uint64_t batches;         /* delete transactions committed */
    uint64_t conflicts;       /* batches retried after a conflict with another writer */
    int64_t max_batch_us;     /* the longest delete transaction */
    int64_t elapsed_us;
    bool stopped; /* ended early by stop */
};

struct wh_ops {
    const char *name; /* "duckdb", later "clickhouse" */
    int (*open)(const struct wh_cfg *cfg, struct wh **out);
    void (*close)(struct wh *wh);
    int (*conn_open)(struct wh *wh, struct wh_conn **out);
    void (*conn_close)(struct wh_conn *c);
    void (*interrupt)(struct wh_conn *c);
    int (*ensure_schema)(struct wh_conn *c);
    int (*offset_get)(struct wh_conn *c, const char *consumer, uint64_t *next_out);
    int (*load_events)(struct wh_conn *c, const struct wh_load *ld, const struct wh_event *ev,
                       size_t n, struct wh_load_stats *st);
    int (*load_changes)(struct wh_conn *c, const struct wh_load *ld, const struct wh_change *ch,
                        size_t n, struct wh_load_stats *st);
    int (*load_predictions)(struct wh_conn *c, const struct wh_load *ld,
                            const struct wh_prediction *p, size_t n, struct wh_load_stats *st);
    int (*load_requests)(struct wh_conn *c, const struct wh_load *ld, const struct wh_request *r,
                         size_t n, struct wh_load_stats *st);
    int (*logs_list)(struct wh_conn *c, const struct wh_logs_query *q, json_t **out);
    int (*logs_stats)(struct wh_conn *c, const struct wh_logs_query *q, json_t **out);
    int (*logs_delete)(struct wh_conn *c, const char *before, uint64_t *n_out);
    int (*load_audit)(struct wh_conn *c, const struct wh_load *ld, const struct wh_audit *a,
                      size_t n, struct wh_load_stats *st);
    int (*apply_collection)(struct wh_conn *c, const struct store_collection *coll);
    int (*drop_collection)(struct wh_conn *c, const char *collection_id);
    int (*query)(struct wh_conn *c, const struct wh_query *q, struct wh_result *out);
    int (*checkpoint)(struct wh_conn *c, bool force);
    int (*persons_refresh)(struct wh_conn *c, uint64_t *next_out);
    int (*model_parse)(struct wh_conn *c, const char *sql, json_t **refs_out);
    int (*model_columns)(struct wh_conn *c, const char *sql, const json_t *unbuilt,
                         json_t **columns_out);
    int (*model_define)(struct wh_conn *c, const char *name, const json_t *spec, bool reset);
    int (*model_build)(struct wh_conn *c, const struct wh_model *m, const struct wh_model_opts *o,
                       json_t **out);
    int (*model_record)(struct wh_conn *c, const json_t *run);
    int (*backup)(struct wh_conn *c, const char *dest_path);
    int (*retain_range)(struct wh_conn *c, enum wh_table t, int64_t before_us, uint64_t *lo_out,
                        uint64_t *hi_out);
    int (*retain_delete)(struct wh_conn *c, enum wh_table t, int64_t before_us, uint64_t lo,
                         uint64_t hi, uint64_t *n_out);
    int (*retain_persons)(struct wh_conn *c, int64_t before_us, uint64_t *links_out,
                          uint64_t *firsts_out);
    const char *(*errmsg)(struct wh_conn *c);
    int (*scan)(struct wh_conn *c, const char *sql, wh_scan_cb cb, void *arg);
    int (*set_scorer)(struct wh *wh, wh_score_cb cb, void *arg);
    int (*erase_persons)(struct wh_conn *c, const char *const *ids, size_t n, uint64_t *n_out);
    int (*erase_records)(struct wh_conn *c, const char *const *coll_ids, const char *const *rec_ids,
                         size_t n, uint64_t *n_out);
};

struct wh {
    const struct wh_ops *ops; /* every backend embeds this first */
    /* the facade's: every call that may write or checkpoint holds it shared, wh_backup
     * exclusive, so the files are copied at a commit boundary with no checkpoint running */
    pthread_rwlock_t write_lock;
};

struct wh_conn {
    struct wh *wh;  /* every backend's connection embeds this first */
    bool load_open; /* the facade's: a wh_load_events transaction with `more` is open */
};

/* The backend registered under name, or NULL. */
const struct wh_ops *wh_backend(const char *name);

/* ---- the facade ---- */

/* Opens (creating if needed) the warehouse cfg describes. The engine never installs or loads
 * extensions and never touches files other than its own (no external access). On failure
 * *out is NULL and wh_errmsg(NULL) says why. */
int wh_open(const struct wh_cfg *cfg, struct wh **out) MUST_USE;
/* Every wh_conn must be closed first. NULL is a no-op. */
void wh_close(struct wh *wh);

/* A connection for the calling thread. On failure wh_errmsg(NULL) says why. */
int wh_conn_open(struct wh *wh, struct wh_conn **out) MUST_USE;
void wh_conn_close(struct wh_conn *c);
/* Stops c for good (at shutdown): the query running on c fails with ERR_BUSY at its next
 * step, and so does every later query on c. Any thread. */
void wh_interrupt(struct wh_conn *c);

/* Creates the fixed tables (events, changes, _offsets, _rejects, mirror catalog) if missing. */
int wh_ensure_schema(struct wh_conn *c) MUST_USE;
/* The next offset consumer committed; ERR_NOTFOUND when it never committed. */
int wh_offset_get(struct wh_conn *c, const char *consumer, uint64_t *next_out) MUST_USE;
/* Appends the events (and ld's rejects) and stores ld->next_offset, in one transaction.
 * n may be 0 (only rejects, or only moving the offset). st may be NULL (st counts this call's
 * rows and rejects). On failure nothing of the batch is stored.
 * With ld->more the transaction stays open after the append (see struct wh_load): on failure
 * of any call, every batch since the transaction began is rolled back. While it is open the
 * connection takes only further wh_load_events calls (anything else fails with ERR_BUSY
 * without touching it) or wh_conn_close, which rolls it back. */
int wh_load_events(struct wh_conn *c, const struct wh_load *ld, const struct wh_event *ev, size_t n,
                   struct wh_load_stats *st) MUST_USE;
/* Appends the changes, applies them to the mirrors of their collections (create/update:
 * upsert; delete: delete) and stores the offset, in one transaction. A record whose value does
 * not fit its mirror column is left out of the mirror and recorded in _rejects; a change of a
 * collection without a mirror only goes to `changes`. */
int wh_load_changes(struct wh_conn *c, const struct wh_load *ld, const struct wh_change *ch,
                    size_t n, struct wh_load_stats *st) MUST_USE;
/* Appends served predictions to the `predictions` table and stores the offset, in one
 * transaction (as wh_load_events without `more`). */
int wh_load_predictions(struct wh_conn *c, const struct wh_load *ld, const struct wh_prediction *p,
                        size_t n, struct wh_load_stats *st) MUST_USE;
/* ---- request logs (table `requests`, docs/operations.md "Request logs") ---- */

/* Appends request log entries to `requests` and stores the offset, in one transaction. */
int wh_load_requests(struct wh_conn *c, const struct wh_load *ld, const struct wh_request *r,
                     size_t n, struct wh_load_stats *st) MUST_USE;
/* PocketBase's GET /api/logs answer {"page","perPage","totalItems","totalPages","items":[{
 * "id","created","level","message","data"}]} (totalItems and totalPages -1 with skip_total),
 * or with q->id that one item (ERR_NOTFOUND when there is none). The filter and sort are
 * compiled by the filter module for the backend (never pasted into SQL); ERR_INVALID or
 * ERR_LIMIT with wh_errmsg saying why when they do not compile or do not run on the stored
 * values; ERR_BUSY on the timeout. *out is the caller's. */
int wh_logs_list(struct wh_conn *c, const struct wh_logs_query *q, json_t **out) MUST_USE;
/* PocketBase's GET /api/logs/stats answer: [{"total":N,"date":"2006-01-02 15:00:00.000Z"}] per
 * hour holding entries matching q->filter (NULL: all), oldest first. Errors as wh_logs_list. */
int wh_logs_stats(struct wh_conn *c, const struct wh_logs_query *q, json_t **out) MUST_USE;
/* Deletes the entries created before `before` (PocketBase's date text); *n_out (may be NULL)
 * how many. */
int wh_logs_delete(struct wh_conn *c, const char *before, uint64_t *n_out) MUST_USE;

/* Appends audit entries to the `audit` table and stores the offset, in one transaction. */
int wh_load_audit(struct wh_conn *c, const struct wh_load *ld, const struct wh_audit *a, size_t n,
                  struct wh_load_stats *st) MUST_USE;
/* Creates or alters app_<name> to match coll: fields are followed by their id, so a renamed
 * field renames its column, a removed one drops it, a new one is added. A renamed collection
 * renames its table. A new mirror, or one whose field changed type, is (re)filled from the
 * latest change of each record in `changes`. Password and hidden fields are never mirrored. */
int wh_apply_collection(struct wh_conn *c, const struct store_collection *coll) MUST_USE;
/* Drops the mirror of the collection with this id; ERR_NOTFOUND when there is none. */
int wh_drop_collection(struct wh_conn *c, const char *collection_id) MUST_USE;
/* Runs one read-only statement (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE and PRAGMAs
 * that only read). Anything else, or several statements, fails with ERR_DENIED; a bad query
 * with ERR_INVALID; the timeout with ERR_BUSY. wh_errmsg(c) says why. */
int wh_query(struct wh_conn *c, const struct wh_query *q, struct wh_result *out) MUST_USE;
/* Writes the WAL into the database file. force: waits for running write transactions. A
 * plain checkpoint that finds other writers fails with ERR_BUSY (try again later). */
int wh_checkpoint(struct wh_conn *c, bool force) MUST_USE;
/* Brings the identity tables of the insights (docs/analytics.md, "The actor") up to date with
 * every event loaded so far: _person_links (distinct id -> user id, the earliest link),
 * _did_first (each distinct id's first event) and _persons_state. Reads only the events loaded
 * since the last refresh; one transaction; concurrent refreshes wait for each other.
 * *next_out (may be NULL): every event with a lower log_offset is reflected. */
int wh_persons_refresh(struct wh_conn *c, uint64_t *next_out) MUST_USE;
/* ---- SQL models ----
 * Tables: _models (name, spec JSON, updated_at), _model_state (what each published model was
 * built from), _model_runs and _model_tests (docs/models.md). */

/* Parses sql as a model: exactly one SELECT that the SQL API's guard accepts. *refs_out (the
 * caller's): the sorted, lower-cased names of the tables and views it reads (CTE names left
 * out). ERR_INVALID: it does not parse (wh_errmsg says where); ERR_DENIED: not one SELECT,
 * a schema-qualified name, or a function the guard refuses. */
int wh_model_parse(struct wh_conn *c, const char *sql, json_t **refs_out) MUST_USE;
/* The columns sql produces, [{"name","type"}], binding it against the current tables; unbuilt
 * ({"model": "sql"}, or NULL) stands in for models that have no relation yet. Nothing is
 * changed. ERR_INVALID with the engine's message when it does not bind. */
int wh_model_columns(struct wh_conn *c, const char *sql, const json_t *unbuilt,
                     json_t **columns_out) MUST_USE;
/* Stores (spec non-NULL) or deletes (NULL: the published relation and its state go too) the
 * definition of a model. reset: forget what the model was built from, so its next build is
 * a full one. One transaction. */
int wh_model_define(struct wh_conn *c, const char *name, const json_t *spec, bool reset) MUST_USE;
/* Write-audit-publish, in ONE transaction: builds m aside (incremental: only the keys that
 * the events and changes loaded since its last build produce), runs its tests on the new
 * version, and replaces the published version only when no test of severity "error" fails;
 * otherwise (or on any failure) everything is rolled back and the previous version stays.
 * "rows" counts the published relation (0 when nothing was published).
 * *out (the caller's, also on failure): {"status":"success"|"warn"|"failed"|"broken",
 * "mode":"view"|"full"|"incremental","rows":N,"eventsFrom":N,"eventsTo":N,"changesFrom":N,
 * "changesTo":N,"message":s|null,"tests":[{"name","type","column","severity","status":
 * "pass"|"fail","failures":N,"message"}]}. Returns 0 when *out says what happened (including
 * failed tests and broken SQL), < 0 on an engine failure (ERR_BUSY: a conflict, retry). */
int wh_model_build(struct wh_conn *c, const struct wh_model *m, const struct wh_model_opts *o,
                   json_t **out) MUST_USE;
/* Inserts or replaces a run in _model_runs (by "id") and, when it has "tests", its rows of
 * _model_tests: {"id","model","trigger","status","mode","startedAt","finishedAt" (us since the
 * epoch, or null),"rows","eventsFrom","eventsTo","changesFrom","changesTo","message",
 * "sync":{...}|null,"tests":[...]}. */
int wh_model_record(struct wh_conn *c, const json_t *run) MUST_USE;

/* Deletes the events and changes older than r->before_us (see struct wh_retention), then the
 * identity rows (_person_links, _did_first) of distinct ids that have no event left and whose
 * link or first event is that old. Never one long transaction: the rows go in windows of
 * r->batch_offsets log offsets, each its own transaction under the shared write lock, so
 * loaders commit and queries run between them and a backup waits for one window at most; a
 * window that conflicts with another writer is retried. A crash or a stop between windows
 * leaves every committed window done and the rest for the next run; a window is all or
 * nothing. st may be NULL. Slow on a large warehouse: never on an HTTP thread. */
int wh_retain(struct wh_conn *c, const struct wh_retention *r,
              struct wh_retention_stats *st) MUST_USE;
/* Writes a consistent copy of the warehouse to dest_path (and, for DuckDB, its WAL to
 * dest_path + ".wal" when one is left after the checkpoint): checkpoints, then copies the
 * files while every writer of the warehouse waits (read-only queries go on). Slow for a large
 * warehouse: run it off the request path. */
int wh_backup(struct wh_conn *c, const char *dest_path) MUST_USE;
/* Runs one read-only SELECT (the SQL API's guard applies) and hands its rows to cb chunk by
 * chunk (at most a few thousand rows each), as numeric and text columns: first one call with
 * n_rows 0 that shows the columns, then one per chunk. No timeout and no row cap: the caller
 * bounds what it keeps and stops the scan by returning non-zero from cb. ERR_INVALID /
 * ERR_DENIED as wh_query. */
int wh_scan(struct wh_conn *c, const char *sql, wh_scan_cb cb, void *arg) MUST_USE;
/* Registers the SQL function tandem_predict(model VARCHAR, x1, x2, ...) -> DOUBLE (each x a
 * number, a bool or text),
 * which scores through cb(arg, ...). Once per process: a later call does nothing. arg must
 * outlive wh. */
int wh_set_scorer(struct wh *wh, wh_score_cb cb, void *arg) MUST_USE;
/* Deletes every event whose user_id, anonymous_id or previous_id is one of the n distinct ids
 * (non-empty, no NUL byte) and those ids' rows of the identity tables, so that their bytes are
 * gone from the warehouse's files when it returns: the tables are rewritten and checkpointed
 * (FORCE), which empties the WAL. Time and space of about one copy of the events table; run
 * it off the request path. Idempotent. *n_out: events deleted. ERR_BUSY: a conflict with
 * another writer (retry). */
int wh_erase_persons(struct wh_conn *c, const char *const *ids, size_t n, uint64_t *n_out) MUST_USE;
/* Deletes the history of n deleted app records (record i: collection id coll_ids[i], record id
 * rec_ids[i]) so that their bytes are gone from the warehouse's files when it returns: their
 * rows of `changes`, and what their collections' mirrors may still hold of them (each mirror
 * of those collections is rewritten, like the tables of wh_erase_persons, then the free blocks
 * are overwritten). Call once the loader has loaded their deletion. Idempotent. *n_out: change
 * rows deleted. ERR_BUSY: a conflict with another writer (retry). */
int wh_erase_records(struct wh_conn *c, const char *const *coll_ids, const char *const *rec_ids,
                     size_t n, uint64_t *n_out) MUST_USE;

/* Detail of c's last failure; c NULL: the calling thread's last wh_open/wh_conn_open failure.
 * RETURNS BORROWED: valid until the next call on c (or on this thread). */
const char *wh_errmsg(struct wh_conn *c);

#endif
