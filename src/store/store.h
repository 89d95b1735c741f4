/* store.h - the operational store: collections, records and the outbox.
 *
 * A backend is a struct store_ops behind the facade functions below; the rest of tandem never
 * names a backend. The only backend today is "sqlite" (src/store/sqlite/): one database file
 * <dir>/app.db in WAL mode, one connection per thread with its own cache of prepared
 * statements, and every write serialised through one write lock so that "database is locked"
 * never reaches a caller.
 *
 * Records cross this interface as jansson objects in PocketBase's JSON form: field values
 * typed per schema, plus "collectionId" and "collectionName". Password and tokenKey values are
 * never part of a record object; store_auth_find() hands them out separately.
 *
 * Every record create/update/delete (cascades included) runs in one transaction that also
 * appends one row per changed record to the `_outbox` table: a monotonically increasing id,
 * the collection, the record id, the action and the record's JSON after the change. That is
 * the change-capture source that the outbox relay reads (store_outbox_rows/_delete).
 *
 * Threads: a struct store is shared by every thread; every function may be called from any
 * thread at the same time. store_errmsg() is per thread: it describes the calling thread's
 * last failure on this store. Collections handed out are immutable references (schema.h). */
#ifndef TANDEM_STORE_STORE_H
#define TANDEM_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "store/schema.h"

struct store;

struct store_cfg {
    const char *backend; /* "sqlite" (default when NULL) */
    const char *dir;     /* data directory; the sqlite backend uses <dir>/app.db */
    int busy_timeout_ms; /* 0: 10000 */
};

/* Validation failures (ERR_INVALID from the write functions) come with an object in
 * PocketBase's form: {"field":{"code":"validation_...","message":"...","params"?:{...}}}.
 * It may be empty when the failure is not about one field (see store_errmsg()). */

/* One ORDER BY item of a list query. field is a field name, or "@random" / "@rowid". */
struct store_sort {
    const char *field;
    bool desc;
};

/* List queries name the collection's table with this alias: a where clause or an ORDER BY
 * list compiled by the filter module (with filter_ctx.alias = STORE_LIST_ALIAS) refers to it. */
#define STORE_LIST_ALIAS "r"

struct store_list_query {
    int64_t page;     /* >= 1 */
    int64_t per_page; /* 1..1000 */
    bool skip_total;
    /* ORDER BY: either sort items (plain field names, "@random", "@rowid") or order_sql */
    const struct store_sort *sort;
    size_t n_sort;
    const char *order_sql;      /* a compiled ORDER BY list (no keywords), or NULL */
    const json_t *order_params; /* values for the order_sql placeholders, or NULL */
    const char *where_sql;      /* a compiled boolean expression, or NULL */
    /* values bound to the where_sql placeholders, in order (strings, numbers, bools,
     * null); an array or NULL */
    const json_t *where_params;
};

/* A condition one record must satisfy for a read or a write to happen (an API rule): a
 * boolean SQL expression compiled by the filter module against STORE_LIST_ALIAS, and the
 * values of its placeholders. It is evaluated inside the operation's transaction. */
struct store_cond {
    const char *sql;
    const json_t *params; /* array or NULL */
    /* A write's condition may read the written body (@request.body). When build is set, the
     * create or update calls it inside its transaction with the body as it will be written
     * (see store_record_body_view) and checks the condition it fills in instead of sql and
     * params; a failure denies the write (ERR_DENIED). Other operations use sql and params. */
    int (*build)(void *arg, const json_t *view, struct store_cond *out);
    void *build_arg;
};

struct store_list_result {
    json_t *items;                    /* array of records; the caller owns it */
    int64_t total_items, total_pages; /* -1 under skip_total */
};

/* What store_auth_find returns about an auth record. All strings are the caller's (free()). */
struct store_auth_record {
    json_t *record; /* the public record JSON */
    char *password_hash;
    char *token_key;
};

/* One create (or update) of a batch (store_record_create_batch). The caller fills c, body,
 * password_hash and cond (all borrowed for the call), and update_id for an update; the store
 * fills the rest. */
struct store_create_item {
    const struct store_collection *c;
    const char *update_id; /* NULL: a create; else the update of this record, as
                              store_record_update_if (cond: the update rule) */
    bool delete_it;        /* with update_id: its delete instead, as store_record_delete_if
                              (cond: the delete rule; body unused, no record out) */
    const json_t *body;
    const char *password_hash;     /* or NULL */
    const struct store_cond *cond; /* the create rule, or NULL */
    int64_t deadline_us; /* time_mono_us() at which its statements stop (store_deadline), or 0 */
    /* A record moved over from another PocketBase (tandem import pocketbase): the autodate
     * values of its body are kept, and its relations are not looked up (they may name records
     * that come later in the move; the source kept them consistent). */
    bool restore;
    int rc;         /* OUT: as store_record_create_if would return */
    json_t *errors; /* OUT: the caller's (decref), with rc ERR_INVALID, or NULL */
    json_t *record; /* OUT: the caller's (decref), with rc 0 */
};

/* One write of a batch (store_record_ops). */
enum store_op_kind {
    STORE_OP_CREATE,
    STORE_OP_UPDATE,
    STORE_OP_UPSERT, /* update when a record with id exists, else create (with create_cond) */
    STORE_OP_DELETE,
};

struct store_op {
    enum store_op_kind kind;
    const struct store_collection *c;
    const char *id;                       /* update, delete; upsert: the body's id, or NULL */
    const json_t *body;                   /* create, update, upsert */
    const char *password_hash;            /* or NULL */
    const struct store_cond *cond;        /* the rule: create, update (upsert) or delete */
    const struct store_cond *create_cond; /* upsert: the create rule when it creates */
    int rc;                               /* OUT: as the single operation would return */
    bool created;                         /* OUT: a create (upsert: when it created) */
    json_t *errors;                       /* OUT: the caller's, with rc ERR_INVALID */
    json_t *record;                       /* OUT: the caller's, written record (not delete) */
};

struct store_sql_result;
/* A system row (store_sys_put): server-side state that is no collection's record. */
struct store_sysrow {
    const char *kind; /* "mail", "mail_dead", "otp", "mfa", "origin", ... */
    const char *id;   /* unique within kind */
    const char *ref;  /* what the row belongs to (e.g. "<collectionId>/<recordId>"), or NULL */
    const json_t *value;
    int64_t created_us; /* 0: now (kept when the row already exists) */
    int64_t due_us;     /* queues: when the row is next due; 0 otherwise */
};

struct store_outbox_row;

struct store_ops {
    const char *name;
    int (*open)(const struct store_cfg *cfg, struct store **out, char *err, size_t err_len);
    void (*close)(struct store *st);
    const char *(*errmsg)(struct store *st);

    int (*collection_list)(struct store *st, struct store_collection ***out, size_t *n_out);
    int (*collection_get)(struct store *st, const char *id_or_name, struct store_collection **out);
    int (*collection_create)(struct store *st, const json_t *spec, json_t **errors_out,
                             struct store_collection **out);
    int (*collection_update)(struct store *st, const char *id_or_name, const json_t *patch,
                             json_t **errors_out, struct store_collection **out);
    int (*collection_delete)(struct store *st, const char *id_or_name);
    int (*collection_truncate)(struct store *st, const char *id_or_name);
    int (*collection_import)(struct store *st, const json_t *collections, bool delete_missing,
                             json_t **errors_out);
    int (*view_fields)(struct store *st, const char *query, json_t **errors_out,
                       json_t **fields_out);
    int (*view_file_origin)(struct store *st, const struct store_collection *view,
                            const char *field, const char *filename, char *coll_id_out,
                            size_t coll_cap, char *rec_id_out, size_t rec_cap);

    int (*record_get)(struct store *st, const struct store_collection *c, const char *id,
                      const struct store_cond *cond, json_t **out);
    int (*record_list)(struct store *st, const struct store_collection *c,
                       const struct store_list_query *q, struct store_list_result *out);
    int (*record_referencing)(struct store *st, const struct store_collection *c, const char *field,
                              const char *target_id, size_t max, json_t **out);
    int (*record_create)(struct store *st, const struct store_collection *c, const json_t *body,
                         const char *password_hash, const struct store_cond *cond,
                         json_t **errors_out, json_t **out);
    int (*record_create_batch)(struct store *st, struct store_create_item *items, size_t n);
    int (*record_update)(struct store *st, const struct store_collection *c, const char *id,
                         const json_t *body, const char *password_hash,
                         const struct store_cond *cond, json_t **errors_out, json_t **out);
    int (*record_delete)(struct store *st, const struct store_collection *c, const char *id,
                         const struct store_cond *cond);
    int (*record_ops)(struct store *st, struct store_op *ops, size_t n, size_t *failed_out);
    int (*record_match)(struct store *st, const struct store_collection *c, const json_t *record,
                        const struct store_cond *cond);

    int (*auth_find)(struct store *st, const struct store_collection *c, const char *field,
                     const char *value, struct store_auth_record *out);
    int (*auth_get)(struct store *st, const struct store_collection *c, const char *id,
                    struct store_auth_record *out);
    int (*auth_token_key)(struct store *st, const struct store_collection *c, const char *id,
                          char *out, size_t out_len);
    int (*auth_rehash)(struct store *st, const struct store_collection *c, const char *id,
                       const char *old_hash, const char *new_hash);

    int (*outbox_rows)(struct store *st, int64_t after_id, size_t max,
                       struct store_outbox_row **out, size_t *n_out);
    int (*outbox_delete)(struct store *st, int64_t up_to_id);

    int (*outbox_pending)(struct store *st, int64_t *n_out);
    int (*sync)(struct store *st);
    int (*sync_commits)(struct store *st); /* may be NULL: store_sync then */
    int (*wal_truncate)(struct store *st);
    int (*backup)(struct store *st, const char *dest_path);
    int (*sql)(struct store *st, const char *sql, size_t max_rows, size_t max_bytes,
               int64_t deadline_us, struct store_sql_result *out);
    int (*writekey_create)(struct store *st, const char *name, const char *key_hash,
                           const char *prefix);
    int (*writekey_list)(struct store *st, json_t **out);
    int (*writekey_revoke)(struct store *st, const char *name);
    int (*writekey_find)(struct store *st, const char *key_hash, char *name_out, size_t cap);
    int (*param_get)(struct store *st, const char *id, json_t **out);
    int (*param_put)(struct store *st, const char *id, const json_t *value);
    int (*sys_put)(struct store *st, const struct store_sysrow *row);
    int (*sys_take)(struct store *st, const char *kind, const char *id);
    int (*sys_list)(struct store *st, const char *kind, const char *id, const char *ref,
                    int64_t due_before_us, size_t max, json_t **out);
    int (*sys_count)(struct store *st, const char *kind, int64_t *n_out);

    struct store_collection *(*catalog)(struct store *st);
    int (*auth_epoch)(struct store *st, uint64_t *instance_out, uint64_t *epoch_out);
    void (*deadline)(struct store *st, int64_t deadline_us);
};

/* Called after a write transaction COMMITs, on the committing thread and after the write lock
 * is released, once for each record the transaction deleted (cascades, batches, truncation and
 * SQL console deletes included) in a collection with a file field, with the record as it was;
 * the file storage removes the record's files there (src/api/files.c). Not called for a
 * transaction that rolls back. A crash between the COMMIT and the call, or more than
 * STORE_DELETED_MAX such records in one transaction, leaves those files to the sweep at the
 * next start. */
typedef void (*store_deleted_fn)(void *arg, const struct store_collection *c, const char *id,
                                 const json_t *record);
#define STORE_DELETED_MAX 10000

/* Called after a write transaction that added outbox rows COMMITs, on the committing thread
 * and after the write lock is released: the outbox relay waits for it instead of polling. */
typedef void (*store_outbox_fn)(void *arg);

struct store {
    const struct store_ops *ops; /* every backend embeds this first */
    store_deleted_fn deleted_fn; /* store_on_deleted; set before the store is shared */
    void *deleted_arg;
    store_outbox_fn outbox_fn; /* store_on_outbox; under a lock of store.c */
    void *outbox_arg;
};

/* Installs (or, with NULL, removes) the after-commit hook of deleted records above. */
void store_on_deleted(struct store *st, store_deleted_fn fn, void *arg);
/* Installs (or, with NULL, removes) the outbox hook above; any time, from any thread. Once it
 * returned, no call of the hook it replaced is running. */
void store_on_outbox(struct store *st, store_outbox_fn fn, void *arg);
/* For backends: a transaction that added outbox rows committed (calls the outbox hook). */
void store__outbox_committed(struct store *st);

/* The backend registered under name, or NULL. */
const struct store_ops *store_backend(const char *name);

/* Opens the store: creates <dir>/app.db on first use with the system tables and the default
 * `_superusers` (id pbc_3142635823) and `users` (id _pb_users_auth_) auth collections.
 * On failure err holds the reason. */
int store_open(const struct store_cfg *cfg, struct store **out, char *err, size_t err_len) MUST_USE;
void store_close(struct store *st);
/* RETURNS BORROWED: the calling thread's last failure on st; valid until its next call. */
const char *store_errmsg(struct store *st);

/* Bounds the calling thread's work on st: from time_mono_us() == deadline_us on, a statement
 * that is running stops and the operation fails with ERR_TIMEOUT, having changed nothing (a
 * write's transaction is rolled back). 0 lifts the bound. It holds for this thread only, until
 * it is lifted: set it where a request's store calls begin and lift it, on the same thread,
 * where they end, so that it never reaches the thread's next request. The check runs every few
 * hundred engine steps, so a short statement may finish a little past the deadline. */
void store_deadline(struct store *st, int64_t deadline_us);

/* ---- collections ---- */

/* Every collection in creation order; release with store_collection_list_free. */
int store_collection_list(struct store *st, struct store_collection ***out, size_t *n_out) MUST_USE;
void store_collection_list_free(struct store_collection **list, size_t n);
/* By id or name (the name is matched case-insensitively). RETURNS a reference: unref it.
 * ERR_NOTFOUND when there is none. */
int store_collection_get(struct store *st, const char *id_or_name,
                         struct store_collection **out) MUST_USE;
/* spec is PocketBase's collection JSON. ERR_INVALID with *errors_out (the caller's) on
 * validation failure; *out (may be NULL) receives a reference to the new collection. */
int store_collection_create(struct store *st, const json_t *spec, json_t **errors_out,
                            struct store_collection **out) MUST_USE;
/* patch holds the keys to change; "fields", when present, is the complete new field list
 * (fields matched by id; a field without id is new). Migrates the table in one transaction. */
int store_collection_update(struct store *st, const char *id_or_name, const json_t *patch,
                            json_t **errors_out, struct store_collection **out) MUST_USE;
/* ERR_NOTFOUND; ERR_DENIED for system collections; ERR_CONFLICT when another collection's
 * relation field points to it. */
int store_collection_delete(struct store *st, const char *id_or_name) MUST_USE;
/* Creates or replaces (matched by id, then by name) every collection of the array in one
 * transaction; relations may point to collections later in the array. delete_missing also
 * drops the non-system collections the array does not name. ERR_INVALID with
 * {"collections":{"<index>":{...}}} errors; nothing changes on failure. */
int store_collection_import(struct store *st, const json_t *collections, bool delete_missing,
                            json_t **errors_out) MUST_USE;
/* Where a file a view collection shows is stored: the view's file field `field` is a file
 * field of a collection the view reads (through nested views too); the record of that
 * collection whose field holds filename. Its collection id and record id go to the outputs.
 * ERR_NOTFOUND when the column is not a plain file column or no record holds the name. */
int store_view_file_origin(struct store *st, const struct store_collection *view, const char *field,
                           const char *filename, char *coll_id_out, size_t coll_cap,
                           char *rec_id_out, size_t rec_cap) MUST_USE;
/* Deletes every record of the collection, with the relations' cascade rules and one outbox
 * row per change, in one transaction. ERR_NOTFOUND; ERR_CONFLICT when a required relation
 * of another collection still references a record (then nothing is deleted). */
int store_collection_truncate(struct store *st, const char *id_or_name) MUST_USE;
/* The fields a view collection with this viewQuery would have (PocketBase's field JSON, an
 * array in *fields_out, the caller's), as a view collection's create infers them. ERR_INVALID
 * with {"viewQuery":{...}} in *errors_out when the query is refused: it must be one read-only
 * SELECT over the application's collections, with an `id` column and no `*` columns. */
int store_collection_view_fields(struct store *st, const char *query, json_t **errors_out,
                                 json_t **fields_out) MUST_USE;
/* The collection catalogue seen as a read-only collection whose records are the collections,
 * with the fields id, name, type, system, created and updated, so that the collections list
 * can be filtered and sorted with store_record_list() and the filter compiler. Never write
 * through it. RETURNS a reference. */
struct store_collection *store_collection_catalog(struct store *st);
/* PocketBase's collection scaffolds: {"base":{...},"auth":{...}}, the JSON of a new collection
 * of each type with its default fields (empty id and name). RETURNS a new reference. */
json_t *store_collection_scaffolds(void);
/* The collection as PocketBase's JSON. RETURNS a new reference. */
json_t *store_collection_to_json(const struct store_collection *c);

/* ---- records ---- */

/* ERR_NOTFOUND when there is no such record. */
int store_record_get(struct store *st, const struct store_collection *c, const char *id,
                     json_t **out) MUST_USE;
/* One page of records. ERR_INVALID (message in store_errmsg) for an unknown sort field or a
 * where clause the engine rejects. */
int store_record_list(struct store *st, const struct store_collection *c,
                      const struct store_list_query *q, struct store_list_result *out) MUST_USE;
/* Records of c whose relation field `field` holds target_id (back-relations), at most max,
 * as a JSON array. */
int store_record_referencing(struct store *st, const struct store_collection *c, const char *field,
                             const char *target_id, size_t max, json_t **out) MUST_USE;
/* The longest body key (with its modifier) a record write reads; longer keys are ignored. */
#define STORE_BODY_KEY_MAX 127
/* The body key under which the API lists the files a write uploaded, {"field": ["name", ...]}:
 * a file field may take a name that is in the record's current value (read in the write's
 * transaction) or listed here, nothing else (validation_invalid_file), so a record never
 * names a file that was not stored for it. Set by the API only: it removes the key from
 * every client body first. Rules never see it. */
#define STORE_BODY_UPLOADS "@uploads"
/* How a record body key writes its field: the field name into name (STORE_BODY_KEY_MAX + 1
 * bytes) and *op_out 0 for "f", 'p' for "+f" (prepend), '+' for "f+" (append or add), '-'
 * for "f-" (remove or subtract), 'g' for "f:autogenerate". false for an empty or too long
 * key, which the store ignores. Every reader of a body goes through this parse. */
bool store_body_key(const char *key, char *name, char *op_out);
/* The body as a create (old NULL) or update of old would write it, as API rules see it
 * (@request.body): for each key of body, under the name of its field, the value the store
 * would store, modifiers applied in the store's order; keys of no field as they were sent
 * (they are not written); password values as sent; fields whose value is invalid left out.
 * Computed by the same code as the write, which recomputes it inside its transaction
 * (store_cond.build). RETURNS a new reference. */
json_t *store_record_body_view(const struct store_collection *c, const json_t *old,
                               const json_t *body);

/* body: PocketBase's record body (modifiers "f+", "+f", "f-" allowed, unknown keys ignored,
 * autodate values ignored, an "id" may be given). password_hash: the value for the
 * collection's password field (`password` of an auth collection, the one password field a
 * base collection may have; the caller hashed it), or NULL to leave it.
 * ERR_INVALID with *errors_out on validation failure; ERR_NOTFOUND (update) when the record
 * is missing. */
int store_record_create(struct store *st, const struct store_collection *c, const json_t *body,
                        const char *password_hash, json_t **errors_out, json_t **out) MUST_USE;
int store_record_update(struct store *st, const struct store_collection *c, const char *id,
                        const json_t *body, const char *password_hash, json_t **errors_out,
                        json_t **out) MUST_USE;
/* Deletes the record and applies the relations' cascade rules. ERR_NOTFOUND; ERR_CONFLICT
 * when a required relation still references it. */
int store_record_delete(struct store *st, const struct store_collection *c,
                        const char *id) MUST_USE;

/* The same operations under a condition (an API rule), checked in the same transaction:
 *   get, update, delete: the current record must satisfy cond, else ERR_NOTFOUND (the
 *                        record is indistinguishable from a missing one);
 *   create:              the new record must satisfy cond once written, else ERR_DENIED
 *                        and nothing is written.
 * Cascaded changes are not checked. cond NULL or with an empty sql: no condition. */
int store_record_get_if(struct store *st, const struct store_collection *c, const char *id,
                        const struct store_cond *cond, json_t **out) MUST_USE;
int store_record_create_if(struct store *st, const struct store_collection *c, const json_t *body,
                           const char *password_hash, const struct store_cond *cond,
                           json_t **errors_out, json_t **out) MUST_USE;
/* Group commit: the creates of items[0..n) in ONE transaction, each under its own savepoint,
 * so that an invalid record, a unique violation, a failed create rule (items[i].rc
 * ERR_INVALID / ERR_DENIED) or a create rule still running at the item's deadline (ERR_TIMEOUT;
 * only reads are stopped, never a write of the group) undoes only itself. One COMMIT; every
 * items[i].rc == 0 is committed when this returns, with its outbox row, outbox ids in item order.
 * When the transaction fails as a whole (BEGIN, COMMIT, an I/O error) nothing is written and every
 * item that had not failed on its own gets that error, which is also returned (0 otherwise).
 * Call from any thread; a backend without it runs the items one transaction each. */
int store_record_create_batch(struct store *st, struct store_create_item *items, size_t n) MUST_USE;
int store_record_update_if(struct store *st, const struct store_collection *c, const char *id,
                           const json_t *body, const char *password_hash,
                           const struct store_cond *cond, json_t **errors_out,
                           json_t **out) MUST_USE;
int store_record_delete_if(struct store *st, const struct store_collection *c, const char *id,
                           const struct store_cond *cond) MUST_USE;
/* ops[0..n) in ONE transaction, in order, each as its single operation would run (conditions,
 * validation, cascades, outbox rows): all or nothing. On the first failure everything is
 * rolled back, that op's rc (and errors) say why, *failed_out is its index and its rc is
 * returned; ops after it did not run. A failed COMMIT returns its error with *failed_out n.
 * On 0 every op's record (not for deletes) is the caller's. */
int store_record_ops(struct store *st, struct store_op *ops, size_t n, size_t *failed_out) MUST_USE;

/* Whether a record image (PocketBase JSON of c, e.g. the after-image of a change, or the
 * before-image of a deleted record) satisfies cond: the record's own fields are taken from
 * the image, everything else (relations, back-relations, @collection.*, the requester's auth
 * record) from the store's current state. 1: it does; 0: it does not; < 0: failure (a
 * condition the engine rejects: ERR_INVALID). cond NULL or empty: 1. Fields missing from
 * the image read as NULL. For realtime: a change is checked against the rule as it was
 * written, even when the record has changed again or is gone since. */
int store_record_match(struct store *st, const struct store_collection *c, const json_t *record,
                       const struct store_cond *cond) MUST_USE;

/* ---- auth records ---- */

/* The system collection of OAuth2 links (PocketBase's): collectionRef, recordRef, provider,
 * providerId; unique per (collectionRef, provider, providerId) and per (collectionRef,
 * recordRef, provider). Created by store_open when missing. */
#define STORE_EXTERNAL_AUTHS "_externalAuths"
#define STORE_EXTERNAL_AUTHS_ID "pbc_2281828961"

/* The auth record of c whose field (e.g. "email") equals value (case-insensitively for
 * email). ERR_NOTFOUND; ERR_CONFLICT when more than one record matches (emails that differ
 * only in case, left from before email was unique without case): never one of them;
 * ERR_INVALID when c is not an auth collection or field is not one of its text/email
 * fields. */
int store_auth_find(struct store *st, const struct store_collection *c, const char *field,
                    const char *value, struct store_auth_record *out) MUST_USE;
int store_auth_get(struct store *st, const struct store_collection *c, const char *id,
                   struct store_auth_record *out) MUST_USE;
void store_auth_record_release(struct store_auth_record *r);
/* Only the tokenKey of the auth record id (one cached point read, no JSON): what checking a
 * token on every request needs. ERR_NOTFOUND; ERR_INVALID when c is not an auth collection;
 * ERR_LIMIT when the key does not fit out_len bytes with its NUL. */
/* Replaces the password hash of an auth record when it is still old_hash (a sign-in moving a
 * hash to tandem's scheme, e.g. a bcrypt hash imported from PocketBase). No outbox row: the
 * record's public JSON does not change. ERR_NOTFOUND when the record is gone or its hash
 * changed meanwhile. */
int store_auth_rehash(struct store *st, const struct store_collection *c, const char *id,
                      const char *old_hash, const char *new_hash) MUST_USE;
int store_auth_token_key(struct store *st, const struct store_collection *c, const char *id,
                         char *out, size_t out_len) MUST_USE;
/* The token epoch: a counter shared by every process that opens this data directory,
 * advanced after each committed change that may invalidate auth tokens (an auth record
 * updated, any record deleted, any collection updated, deleted, imported or truncated). A
 * token found valid while the epoch read e (read BEFORE its tokenKey was looked up) may be
 * trusted without a new lookup for as long as the epoch still reads e and the instance is
 * the same. *instance_out is unique to this open store within the process. ERR_INTERNAL
 * when the backend cannot offer it: then check every token against the store. Changes made
 * to the database by other programs than tandem do not advance it. */
int store_auth_epoch(struct store *st, uint64_t *instance_out, uint64_t *epoch_out) MUST_USE;
/* Creates or updates the `_superusers` record with this email; password_hash is stored as
 * given. *id_out (optional, 16 bytes) receives the record id. */
int store_superuser_upsert(struct store *st, const char *email, const char *password_hash,
                           char *id_out) MUST_USE;

/* ---- outbox (change capture) ---- */

/* Up to max outbox rows with id > after_id in id order, as their stored text (the relay
 * copies the record's JSON into the change record without parsing it again). */
struct store_outbox_row {
    int64_t id;
    const char *collection_id, *collection, *record_id, *action, *time;
    const char *record; /* JSON text, or NULL */
    size_t record_len;
    char *mem_; /* every string above */
};
int store_outbox_rows(struct store *st, int64_t after_id, size_t max, struct store_outbox_row **out,
                      size_t *n_out) MUST_USE;
void store_outbox_rows_free(struct store_outbox_row *rows, size_t n);
/* Removes outbox rows with id <= up_to_id. */
int store_outbox_delete(struct store *st, int64_t up_to_id) MUST_USE;

/* Makes every committed transaction durable on disk (commits are not synced one by one in
 * WAL mode with synchronous=NORMAL). The outbox relay calls it before it publishes rows, so a
 * power loss can never take back a change the log already has. */
int store_sync(struct store *st) MUST_USE;
/* The same guarantee for less: only the write-ahead log is synced (an fdatasync of the WAL,
 * where store_sync also checkpoints its pages into the database file); falls back to
 * store_sync where the backend cannot. What the outbox relay calls before every batch. */
int store_sync_commits(struct store *st) MUST_USE;
/* Copies every committed page from the WAL into the database and empties the WAL file
 * (checkpoint TRUNCATE), so that no old page image (e.g. of a deleted record) is left in it.
 * ERR_BUSY when a reader or writer kept it from finishing: try again. */
int store_wal_truncate(struct store *st) MUST_USE;
/* The answer of store_sql. */
struct store_sql_result {
    json_t *columns;  /* [{"name","type","nullable"}] */
    json_t *rows;     /* [[text or null, ...], ...] */
    int64_t affected; /* rows changed by a write */
    bool truncated;   /* more rows existed than max_rows / max_bytes allowed */
};
void store_sql_result_release(struct store_sql_result *r);

/* The SQL console: runs ONE statement on the application database. A statement that writes
 * runs in a write transaction in which every record it creates, updates or deletes in a
 * collection table gets its outbox row (captured below the SQL, by SQLite's pre-update
 * hook), exactly as if the records API had made the change, so the "changes" topic, the
 * mirrors and realtime see it. Refused with ERR_DENIED (store_errmsg says why): schema
 * changes of a collection or system table (CREATE/DROP/ALTER of their tables, indexes,
 * triggers), writes to system tables other than collections, ATTACH/DETACH, PRAGMAs that set
 * a value, transaction control. ERR_INVALID for SQL that does not parse or holds several
 * statements; ERR_TIMEOUT past deadline_us (time_mono_us; 0: none), nothing changed. */
int store_sql(struct store *st, const char *sql, size_t max_rows, size_t max_bytes,
              int64_t deadline_us, struct store_sql_result *out) MUST_USE;

/* Writes a consistent copy of the whole store (one read snapshot: SQLite's online backup
 * API) to the new file dest_path, synced; other threads keep reading and writing. */
int store_backup(struct store *st, const char *dest_path) MUST_USE;
/* Rows waiting in the outbox (committed changes not yet in the log). */
int store_outbox_pending(struct store *st, int64_t *n_out) MUST_USE;

/* ---- write keys (capture sources) ----
 *
 * Only a hash of each key is stored (capture/ makes keys and hashes them); the name is the
 * source that events carry. */

/* ERR_CONFLICT when a key of that name exists (revoked ones included). */
int store_writekey_create(struct store *st, const char *name, const char *key_hash,
                          const char *prefix) MUST_USE;
/* [{"name","prefix","created","revoked","hash"}] in creation order; *out is the caller's.
 * The hash is for the key topic (docs/scale-out.md); the API does not show it. */
int store_writekey_list(struct store *st, json_t **out) MUST_USE;
/* ERR_NOTFOUND when there is no live key of that name. */
int store_writekey_revoke(struct store *st, const char *name) MUST_USE;
/* The name of the live key with this hash; ERR_NOTFOUND when none (or revoked). */
int store_writekey_find(struct store *st, const char *key_hash, char *name_out,
                        size_t cap) MUST_USE;

/* ---- parameters (application settings) ---- */

/* The JSON stored under id (e.g. "settings"); ERR_NOTFOUND when never stored. */
int store_param_get(struct store *st, const char *id, json_t **out) MUST_USE;
/* Stores value under id, replacing what was there, in its own transaction. */
int store_param_put(struct store *st, const char *id, const json_t *value) MUST_USE;

/* ---- system rows (_sysrows) ----
 *
 * Small server-side records that are not collections: the mail queue and its dead letters,
 * one-time passwords, MFA sessions, known sign-in devices. Each call is its own transaction. */

/* Inserts row, or replaces ref, value and due_us of the row with the same kind and id. */
int store_sys_put(struct store *st, const struct store_sysrow *row) MUST_USE;
/* Deletes one row; ERR_NOTFOUND when it was not there - so of two takers of the same row
 * exactly one gets 0 (what makes one-time codes and MFA sessions single-use). */
int store_sys_take(struct store *st, const char *kind, const char *id) MUST_USE;
/* Rows of kind (only id / only ref when not NULL; only due_us <= due_before_us when that is
 * not 0), at most max, by due_us then created_us: a new array of
 * {"id","ref","value","created_us","due_us"}. */
int store_sys_list(struct store *st, const char *kind, const char *id, const char *ref,
                   int64_t due_before_us, size_t max, json_t **out) MUST_USE;
/* The row of kind and id as store_sys_list gives it (a new reference), or ERR_NOTFOUND. */
int store_sys_get(struct store *st, const char *kind, const char *id, json_t **out) MUST_USE;
int store_sys_count(struct store *st, const char *kind, int64_t *n_out) MUST_USE;

#endif
