/* sqlite_int.h - shared by the files of the sqlite store backend only.
 *
 * One struct sq_store per open database. Each thread that touches it gets its own
 * connection (struct sq_conn, found through a thread-local cache) with its own prepared
 * statement cache and its own last error message. Writes take write_mu for the whole
 * transaction, so two writers of this process never meet inside SQLite; busy_timeout covers
 * other processes. The collection snapshot (cols) is replaced after each committed schema
 * change under schema_mu. */
#ifndef TANDEM_STORE_SQLITE_SQLITE_INT_H
#define TANDEM_STORE_SQLITE_SQLITE_INT_H

#include <pthread.h>
#include <sqlite3.h>

#include "store/store_int.h"

#define SQ_STMT_SLOTS 256

struct sq_stmt_slot {
    char *sql;
    sqlite3_stmt *stmt;
};

struct sq_gone {
    struct store_collection *c; /* a reference */
    char *id;
    json_t *record;
};

struct sq_conn {
    sqlite3 *db;
    pthread_t owner;
    struct sq_stmt_slot slots[SQ_STMT_SLOTS];
    size_t n_slots_used;
    char errmsg[512];
    int64_t tx_start_us; /* when the current write transaction got the lock */
    bool auth_changed;   /* the current write transaction may invalidate auth tokens */
    bool outbox_added;   /* the current write transaction added outbox rows */
    int64_t deadline_us; /* statements stop at this time_mono_us(); 0: never (sq__deadline) */
    bool spare_writes;   /* past the deadline, let a running write statement finish */
    /* records of collections with file fields the current write transaction deleted, for the
     * store's deleted hook after the COMMIT (sq__note_deleted) */
    struct sq_gone *gone;
    size_t n_gone, cap_gone, gone_dropped;
    struct sq_conn *next;
};

struct sq_store {
    struct store base;
    char *path;
    int busy_ms;
    uint64_t gen; /* unique per open, for the thread-local connection cache */
    pthread_mutex_t conns_mu;
    struct sq_conn *conns;
    pthread_mutex_t write_mu; /* held for a whole write transaction */
    pthread_mutex_t schema_mu;
    struct store_collection **cols;   /* creation order; each holds one reference */
    struct store_collection *catalog; /* _collections seen as a collection */
    struct sq_store *reg_next;        /* the registry of open stores (sqlite.c) */
    /* The token epoch: 8 bytes of <db>-tokens mapped shared, so that every process of this
     * data directory sees each other's advances; NULL when the file could not be mapped
     * (then store_auth_epoch says ERR_INTERNAL and callers verify every token in full). */
    uint64_t *epoch;
    size_t n_cols;
};

/* A statement borrowed from the cache (or a fresh one when the cached one is in use). */
struct sq_stmt {
    sqlite3_stmt *stmt;
    bool owned; /* finalize when done instead of resetting */
};

/* sqlite.c */
struct sq_conn *sq__conn(struct sq_store *s);
int sq__fail(struct sq_conn *cn, int rc, const char *fmt, ...) PRINTF_LIKE(3, 4);
int sq__fail_db(struct sq_conn *cn, const char *what);
int sq__prep(struct sq_conn *cn, const char *sql, struct sq_stmt *out) MUST_USE;
void sq__done(struct sq_stmt *st);
int sq__exec(struct sq_conn *cn, const char *sql) MUST_USE;
/* One statement through the statement cache: BEGIN IMMEDIATE and COMMIT through
 * sqlite3_exec were parsed and prepared again for every write (2% of a create's CPU). */
int sq__exec_cached(struct sq_conn *cn, const char *sql) MUST_USE;
/* Marks the current write transaction as one that may invalidate auth tokens: its commit
 * advances the token epoch (store_auth_epoch). */
void sq__auth_changed(struct sq_conn *cn);
/* Sets (deadline_us > 0) or lifts (0) the deadline of cn's statements: a statement running
 * past it fails with SQLITE_INTERRUPT (sq__fail_db: ERR_TIMEOUT). SQLite rolls back the whole
 * transaction when it stops a write statement; spare_writes lets write statements finish, so
 * that only reads (the rule checks) are stopped and the transaction stays usable (group
 * commit). */
void sq__deadline(struct sq_conn *cn, int64_t deadline_us, bool spare_writes);
/* Takes write_mu and begins an IMMEDIATE transaction. */
int sq__begin(struct sq_store *s, struct sq_conn *cn) MUST_USE;
int sq__commit(struct sq_store *s, struct sq_conn *cn) MUST_USE;
void sq__rollback(struct sq_store *s, struct sq_conn *cn);
/* Notes that the current write transaction deleted record id of c (its image before), for the
 * store's deleted hook after the COMMIT; nothing for a collection without file fields. */
void sq__note_deleted(struct sq_conn *cn, const struct store_collection *c, const char *id,
                      const json_t *record);
/* Binds a JSON scalar (string, number, bool, null; arrays/objects as JSON text). */
int sq__bind_json(sqlite3_stmt *st, int idx, const json_t *v);
void sq__now(char out[TIME_PB_LEN]);
/* Collection snapshot lookups: RETURN a reference, or NULL. */
struct store_collection *sq__col_find(struct sq_store *s, const char *id_or_name);
/* Replaces (or adds, or with c NULL removes) the snapshot entry with this id. TAKES c. */
void sq__col_put(struct sq_store *s, const char *id, struct store_collection *c);
/* Replaces the whole snapshot. TAKES the list and its references. */
void sq__col_replace_all(struct sq_store *s, struct store_collection **list, size_t n);
/* The collections as a list of references (release with store_collection_list_free). */
void sq__col_all(struct sq_store *s, struct store_collection ***out, size_t *n_out);

/* rows.c */
/* Password fields and an auth collection's tokenKey: never in a record image. */
bool sq__secret_field(const struct store_collection *c, const struct store_field *f);
/* One stored value of field f as the record's JSON value. */
json_t *sq__value_json(const struct store_field *f, sqlite3_value *val);
/* The record image (public fields) of id in c; ERR_NOTFOUND when there is none. */
int sq__record_image(struct sq_conn *cn, const struct store_collection *c, const char *id,
                     json_t **out) MUST_USE;
/* The outbox row of one change, in the caller's write transaction. */
int sq__outbox_add(struct sq_conn *cn, const struct store_collection *c, const char *id,
                   const char *action, const json_t *record, const char *now) MUST_USE;
/* console.c */
int sq__sql(struct store *st, const char *sql, size_t max_rows, size_t max_bytes,
            int64_t deadline_us, struct store_sql_result *out);

/* ddl.c */
int sq__collection_create(struct store *st, const json_t *spec, json_t **errors_out,
                          struct store_collection **out);
int sq__collection_update(struct store *st, const char *id_or_name, const json_t *patch,
                          json_t **errors_out, struct store_collection **out);
int sq__collection_delete(struct store *st, const char *id_or_name);
int sq__collection_import(struct store *st, const json_t *collections, bool delete_missing,
                          json_t **errors_out);
/* Inside the write transaction of the first open: gives the email of every auth collection the
 * case-insensitive unique index its definition asks for, where the database still has the
 * case-sensitive one of older versions. When emails already differ only in case the index
 * cannot exist: a warning names the collection and the count, and the old index stays. */
int sq__auth_indexes_upgrade(struct sq_store *s, struct sq_conn *cn) MUST_USE;
/* Creates a collection inside an open write transaction (first open). TAKES nothing. */
/* views.c: view collections (see there). */
int sq__view_fields(struct sq_conn *cn, struct store_collection **list, size_t n, const char *query,
                    json_t *errors, json_t **fields_out) MUST_USE;
/* A copy of spec (*out, the caller's) whose "fields" are inferred from its viewQuery (or the
 * base's); ERR_INVALID with errors["viewQuery"] when the query is refused. */
int sq__view_spec(struct sq_conn *cn, struct store_collection **list, size_t n, const json_t *spec,
                  const struct store_collection *base, json_t *errors, json_t **out) MUST_USE;
int sq__view_file_origin(struct store *st, const struct store_collection *view, const char *field,
                         const char *filename, char *coll_id_out, size_t coll_cap, char *rec_id_out,
                         size_t rec_cap);
int sq__view_fields_dry(struct store *st, const char *query, json_t **errors_out,
                        json_t **fields_out);
int sq__auth_rehash(struct store *st, const struct store_collection *c, const char *id,
                    const char *old_hash, const char *new_hash);
int sq__view_install(struct sq_conn *cn, const struct store_collection *c) MUST_USE;
int sq__views_drop(struct sq_conn *cn, struct store_collection **list, size_t n) MUST_USE;
int sq__collection_install(struct sq_store *s, struct sq_conn *cn,
                           const struct store_collection *c) MUST_USE;

/* rows.c */
int sq__record_get(struct store *st, const struct store_collection *c, const char *id,
                   const struct store_cond *cond, json_t **out);
int sq__record_list(struct store *st, const struct store_collection *c,
                    const struct store_list_query *q, struct store_list_result *out);
int sq__record_referencing(struct store *st, const struct store_collection *c, const char *field,
                           const char *target_id, size_t max, json_t **out);
int sq__record_create(struct store *st, const struct store_collection *c, const json_t *body,
                      const char *password_hash, const struct store_cond *cond, json_t **errors_out,
                      json_t **out);
int sq__record_create_batch(struct store *st, struct store_create_item *items, size_t n);
int sq__record_update(struct store *st, const struct store_collection *c, const char *id,
                      const json_t *body, const char *password_hash, const struct store_cond *cond,
                      json_t **errors_out, json_t **out);
int sq__record_delete(struct store *st, const struct store_collection *c, const char *id,
                      const struct store_cond *cond);
int sq__record_match(struct store *st, const struct store_collection *c, const json_t *record,
                     const struct store_cond *cond);
int sq__collection_truncate(struct store *st, const char *id_or_name);
int sq__auth_find(struct store *st, const struct store_collection *c, const char *field,
                  const char *value, struct store_auth_record *out);
int sq__auth_get(struct store *st, const struct store_collection *c, const char *id,
                 struct store_auth_record *out);
int sq__auth_token_key(struct store *st, const struct store_collection *c, const char *id,
                       char *out, size_t out_len);
int sq__outbox_rows(struct store *st, int64_t after_id, size_t max, struct store_outbox_row **out,
                    size_t *n_out);
int sq__outbox_delete(struct store *st, int64_t up_to_id);
/* keys.c */
/* Runs one write statement with text parameters in its own transaction; *changes_out gets
 * the rows it changed. */
int sq__write_one(struct sq_store *s, const char *sql, const char *const *params, size_t n,
                  int *changes_out);
int sq__outbox_pending(struct store *st, int64_t *n_out);
int sq__sync(struct store *st);
int sq__sync_commits(struct store *st);
int sq__wal_truncate(struct store *st);
int sq__backup(struct store *st, const char *dest_path);
int sq__writekey_create(struct store *st, const char *name, const char *key_hash,
                        const char *prefix);
int sq__writekey_list(struct store *st, json_t **out);
int sq__writekey_revoke(struct store *st, const char *name);
int sq__writekey_find(struct store *st, const char *key_hash, char *name_out, size_t cap);
int sq__param_get(struct store *st, const char *id, json_t **out);
int sq__record_ops(struct store *st, struct store_op *ops, size_t n, size_t *failed_out);
int sq__param_put(struct store *st, const char *id, const json_t *value);
/* sysrows.c */
int sq__sys_put(struct store *st, const struct store_sysrow *row);
int sq__sys_take(struct store *st, const char *kind, const char *id);
int sq__sys_list(struct store *st, const char *kind, const char *id, const char *ref,
                 int64_t due_before_us, size_t max, json_t **out);
int sq__sys_count(struct store *st, const char *kind, int64_t *n_out);

#endif
