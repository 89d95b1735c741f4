/* whd_int.h - shared by the files of the DuckDB warehouse backend only. */
#ifndef TANDEM_WAREHOUSE_DUCKDB_WHD_INT_H
#define TANDEM_WAREHOUSE_DUCKDB_WHD_INT_H

#include <duckdb.h>
#include <stdatomic.h>

#include "warehouse/warehouse_int.h"

/* The database: one per process (DuckDB lets one process own the file). */
struct whd {
    struct wh base;
    struct wh_cfg cfg;
    char *path;
    char *wal_path;
    duckdb_database db;
};

/* One thread's connection. */
struct whd_conn {
    struct wh_conn base;
    duckdb_connection con;
    atomic_bool stopping; /* set by wh_interrupt (any thread): no query runs any more */
    char err[1024];
    duckdb_data_chunk ev_chunk;           /* reused across event batches */
    duckdb_prepared_statement off_update; /* UPDATE _offsets, prepared on first use */
    struct whd_mirror_cache *mirrors;     /* whd_mirror.c: mirror layouts this conn loaded */
};

/* Forgets the mirror layouts cached on c (whd_mirror.c); at close, and whenever a mirror may
 * have changed. */
void whd__mirror_cache_clear(struct whd_conn *c);

static inline struct whd_conn *whd__conn(struct wh_conn *c)
{
    return (struct whd_conn *)c;
}
static inline struct whd *whd__db(struct wh_conn *c)
{
    return (struct whd *)c->wh;
}

/* Records a failure on c and returns rc. */
int whd__fail(struct whd_conn *c, int rc, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Maps a failed result to a code (ERR_BUSY for conflicts and interrupts, ERR_INVALID for bad
 * SQL, ERR_INTERNAL otherwise), records its message on c, and destroys it. */
int whd__result_fail(struct whd_conn *c, duckdb_result *res, const char *what);
/* Runs sql (no parameters, no result). */
int whd__exec(struct whd_conn *c, const char *sql) MUST_USE;
int whd__begin(struct whd_conn *c) MUST_USE;
int whd__commit(struct whd_conn *c) MUST_USE;
void whd__rollback(struct whd_conn *c);
/* Appends a double-quoted identifier. */
void whd__quote_ident(struct buf *b, const char *name);
/* Stores ld's rejects, plus one more (log_offset, reason, payload) when reason != NULL. */
int whd__rejects_append(struct whd_conn *c, const char *consumer, const char *topic,
                        const struct wh_reject *rej, size_t n) MUST_USE;
/* Stores consumer's next offset (inside the caller's transaction). */
int whd__offset_store(struct whd_conn *c, const char *consumer, const char *topic,
                      uint64_t next_offset) MUST_USE;

/* wh_duckdb_mirror.c */
int whd__load_changes(struct wh_conn *c, const struct wh_load *ld, const struct wh_change *ch,
                      size_t n, struct wh_load_stats *st);
int whd__apply_collection(struct wh_conn *c, const struct store_collection *coll);
int whd__drop_collection(struct wh_conn *c, const char *collection_id);

/* whd_persons.c */
int whd__persons_refresh(struct wh_conn *c, uint64_t *next_out);
/* Creates the identity tables (_person_links, _did_first, _persons_state) when missing, in
 * c's open transaction (after migrate_person_keys, which drops old ones). 0, or rc < 0. */
int whd__persons_schema(struct whd_conn *c);
/* Whether con's database has a function of that name (registered by any connection). */
bool whd__has_function(duckdb_connection con, const char *name);
/* The 64-bit key of a distinct id or person (SipHash-2-4 of its bytes under a fixed key). */
uint64_t whd__key(const char *s, size_t n);
/* Registers tandem_key(VARCHAR) -> UBIGINT (whd__key), tandem_bits(UBIGINT) -> UTINYINT[]
 * (the positions of the set bits) and the aggregate tandem_bitcount(UBIGINT) -> UBIGINT[64]
 * (per bit position, how many values have it set) on con's database, once. 0, or
 * ERR_INTERNAL. */
int whd__persons_register(duckdb_connection con) MUST_USE;

/* whd.c: one load of an append-only topic table (predictions, request logs, audit): append's
 * rows, the rejects and the consumer's next offset in one transaction. */
typedef int (*whd_append_fn)(struct whd_conn *c, const void *rows, size_t n);
int whd__load_rows(struct whd_conn *c, const struct wh_load *ld, whd_append_fn append,
                   const void *rows, size_t n, struct wh_load_stats *st) MUST_USE;
/* whd_logs.c: the request logs (warehouse.h, "request logs") */
int whd__load_requests(struct wh_conn *c, const struct wh_load *ld, const struct wh_request *r,
                       size_t n, struct wh_load_stats *st);
int whd__logs_list(struct wh_conn *c, const struct wh_logs_query *q, json_t **out);
int whd__logs_stats(struct wh_conn *c, const struct wh_logs_query *q, json_t **out);
int whd__logs_delete(struct wh_conn *c, const char *before, uint64_t *n_out);
/* Retention (wh_retain): the identity rows of ids with no event left (whd_persons.c). */
int whd__persons_forget(struct wh_conn *wc, int64_t before_us, uint64_t *links_out,
                        uint64_t *firsts_out);
/* whd_retention.c: the window of log offsets holding rows past retention (ERR_NOTFOUND: none;
 * for changes it also takes the changes to keep, used by the deletes on the same connection),
 * and the delete of one window. */
int whd__retain_range(struct wh_conn *wc, enum wh_table t, int64_t before_us, uint64_t *lo_out,
                      uint64_t *hi_out);
int whd__retain_delete(struct wh_conn *wc, enum wh_table t, int64_t before_us, uint64_t lo,
                       uint64_t hi, uint64_t *n_out);
/* whd_erase.c: wh_erase_persons, wh_erase_records */
int whd__erase_persons(struct wh_conn *c, const char *const *ids, size_t n, uint64_t *n_out);
int whd__erase_records(struct wh_conn *c, const char *const *coll_ids, const char *const *rec_ids,
                       size_t n, uint64_t *n_out);

/* whd_ml.c: wh_scan and wh_set_scorer */
int whd__scan(struct wh_conn *c, const char *sql, wh_scan_cb cb, void *arg);
int whd__set_scorer(struct wh *w, wh_score_cb cb, void *arg);

/* wh_duckdb_query.c */
int whd__query(struct wh_conn *c, const struct wh_query *q, struct wh_result *out);
/* Appends DuckDB's name of a type (BIGINT, VARCHAR[], STRUCT(...)). */
void whd__type_name(struct buf *b, duckdb_logical_type t);

/* whd_models.c: the SQL models (warehouse.h, "SQL models") */
int whd__model_parse(struct wh_conn *c, const char *sql, json_t **refs_out);
int whd__model_columns(struct wh_conn *c, const char *sql, const json_t *unbuilt,
                       json_t **columns_out);
int whd__model_define(struct wh_conn *c, const char *name, const json_t *spec, bool reset);
int whd__model_build(struct wh_conn *c, const struct wh_model *m, const struct wh_model_opts *o,
                     json_t **out);
int whd__model_record(struct wh_conn *c, const json_t *run);
/* whd_merge.c: whether an incremental model's new rows can be aggregated alone and merged into
 * its published rows; 1 with kinds[i] (WHD_MERGE_*) for each of its *n_out output columns, 0
 * when not, negative on an engine failure. */
enum {
    WHD_MERGE_GROUP = 'g',
    WHD_MERGE_COUNT = 'c',
    WHD_MERGE_SUM = 's',
    WHD_MERGE_MIN = 'n',
    WHD_MERGE_MAX = 'x'
};
int whd__merge_plan(struct whd_conn *c, const char *sql, char *kinds, size_t max, size_t *n_out);

/* whd_funnel.c: registers the aggregates tandem_funnel and tandem_funnel_steps
 * (docs/analytics.md) on con's database. DuckDB keeps them per database, so every connection
 * of that database sees them; a second call finds them there and does nothing. 0, or
 * ERR_INTERNAL. */
int whd__funnel_register(duckdb_connection con) MUST_USE;
/* whd_guard.c: the SQL API's check of a statement's contents, on DuckDB's parse of sql (run on
 * con). ERR_DENIED (reason in err) when sql calls a function that binds or runs SQL given as
 * text (query, query_table, json_execute_serialized_sql, json_serialize_plan) or changes the
 * engine's state, uses one of tandem's C aggregates (tandem_funnel, tandem_funnel_steps,
 * tandem_bitcount) as a window function or with ORDER BY inside the call (DuckDB 1.4.4 then
 * hands a C aggregate one state for all rows), is a PRAGMA other than a reading one, or
 * cannot be checked; ERR_BUSY when con was interrupted; 0 otherwise. */
int whd__sql_guard(duckdb_connection con, const char *sql, char *err, size_t err_len) MUST_USE;
/* The analyst check of wh_scope (whd_guard.c), after whd__sql_guard: ERR_DENIED with the
 * reason in err when sql reads what scope leaves out. */
int whd__scope_guard(duckdb_connection con, const char *sql, const struct wh_scope *scope,
                     char *err, size_t err_len) MUST_USE;

#endif
