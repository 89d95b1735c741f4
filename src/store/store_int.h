/* store_int.h - shared by the files of store/ and its backends only. */
#ifndef TANDEM_STORE_STORE_INT_H
#define TANDEM_STORE_STORE_INT_H

#include <jansson.h>

#include "core/core.h"
#include "store/store.h"

#define STORE__SUPERUSERS_ID "pbc_3142635823"
#define STORE__USERS_ID "_pb_users_auth_"
#define STORE__TEXT_MAX_DEFAULT 5000
#define STORE__JSON_MAX_DEFAULT (1 << 20)
#define STORE__EDITOR_MAX_DEFAULT (5 << 20) /* PocketBase's DefaultEditorFieldMaxSize */
#define STORE__MAX_FIELDS 1000
#define STORE__VIEW_QUERY_MAX 100000

/* {"code":code,"message":message}; params (TAKEN, may be NULL) added as "params". */
json_t *store__verr(const char *code, const char *message, json_t *params);
/* errors[key] = store__verr(...) unless errors already holds key. */
void store__verr_set(json_t *errors, const char *key, const char *code, const char *message);

/* The registered backends. */
extern const struct store_ops store__sqlite_ops;

/* ---- collections (collection.c) ---- */

/* A copy of the object o with its keys in byte order (as Go's encoding/json writes maps).
 * TAKES o; RETURNS a new reference. */
json_t *store__sorted_object(json_t *o);

/* Builds a collection from PocketBase JSON. base is NULL on create, the current collection on
 * update (in which case in holds only the keys to change). Adds validation failures to errors
 * and returns ERR_INVALID when there are any. now is the PocketBase date of the change. */
int store__collection_from_json(const json_t *in, const struct store_collection *base,
                                const char *now, json_t *errors,
                                struct store_collection **out) MUST_USE;
/* The default system collections, created on first open. */
struct store_collection *store__collection_superusers(const char *now);
struct store_collection *store__collection_users(const char *now);
/* The `_externalAuths` system collection: the links of auth records to OAuth2 accounts. */
struct store_collection *store__collection_external_auths(const char *now);
struct store_collection *store__collection_alloc(void);
/* The JSON of one field as PocketBase writes it. RETURNS a new reference. */
json_t *store__field_to_json(const struct store_field *f);
/* q without leading and trailing blanks and trailing ';'. free() it. */
char *store__view_query_trim(const char *q);
/* Parses the JSON kept in the system table (as store_collection_to_json wrote it). */
int store__collection_load(const char *json_text, struct store_collection **out) MUST_USE;
/* Default field id: type name + crc32(name). out >= 64 bytes. */
void store__field_default_id(enum store_field_type t, const char *name, char *out, size_t len);

/* ---- indexes (index.c) ---- */

struct store__index {
    char *name;
    bool unique;
    char *table;
    char **cols;       /* field names */
    char **col_suffix; /* "", " COLLATE NOCASE", " DESC", ... (already canonical) */
    size_t n_cols;
    char **where; /* tokens of the WHERE clause: field names marked by a leading '\x01' */
    size_t n_where;
};

/* Parses "CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table (cols) [WHERE cond]".
 * ERR_INVALID for anything else (the WHERE clause may only compare columns with literals). */
int store__index_parse(const char *sql, struct store__index *out) MUST_USE;
/* Canonical SQL with every identifier quoted (backticks, as PocketBase writes them). */
char *store__index_render(const struct store__index *ix);
void store__index_release(struct store__index *ix);

/* ---- records (record.c) ---- */

/* Validates and normalises a record body against c. old is the current record JSON on update
 * (NULL on create). The result holds one member per stored field except password (typed as
 * the schema says: strings, numbers, bools, arrays of strings, any JSON for json fields).
 * Relation existence and uniqueness are the backend's to check. */
/* view_out (optional) receives the body as rules see it (store_record_body_view), also when
 * validation fails. */
int store__record_prepare(const struct store_collection *c, const json_t *old, const json_t *body,
                          const char *now, json_t *errors, json_t **out,
                          json_t **view_out) MUST_USE;
/* A value for an autogeneratePattern such as "[a-z0-9]{15}"; NULL when the pattern is not
 * of the supported form ([class]{n} items and literal characters). free() it. */
char *store__autogenerate(const char *pattern);
/* Quote an identifier for SQL: `"name"` with inner quotes doubled. */
void store__quote(struct buf *b, const char *ident);

#endif
