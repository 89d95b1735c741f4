/* filter.h - PocketBase's filter language compiled to parameterised SQLite SQL.
 *
 * A filter (`?filter=`, API rules) compiles to ONE SQL boolean expression that references only
 * the outer query's table alias (ctx->alias), plus an ordered list of values to bind to its `?`
 * placeholders, left to right. Relation paths, back-relations (`x_via_y`), multi-valued fields
 * and `@collection.*` compile to correlated EXISTS / NOT EXISTS subqueries with generated
 * aliases (`_j<n>`, `_m<n>`), so the caller never adds joins:
 *
 *     SELECT "r".* FROM "posts" AS "r" WHERE (<rule sql>) AND (<filter sql>) ...
 *
 * binding rule params first, then filter params. A sort string compiles to an ORDER BY list
 * (without the keywords) the same way. Identifiers from the request never reach the SQL text
 * unresolved: every name is looked up in the collection schema and emitted double-quoted;
 * every literal and every `@request.*` value is a bound parameter.
 *
 * Memory: everything a compile returns lives in the arena the caller passes (the request
 * arena); nothing else needs releasing. Threads: compiling only reads ctx and the collections
 * (immutable snapshots), so any thread may compile with its own arena.
 *
 * The grammar, operator semantics and limits are described in docs/filter.md. */
#ifndef TANDEM_FILTER_FILTER_H
#define TANDEM_FILTER_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/err.h"
#include "store/schema.h"

#define FILTER_MAX_LEN 3500     /* characters of one filter */
#define FILTER_MAX_EXPRS 200    /* comparisons in one filter */
#define FILTER_MAX_SORT 8       /* fields in one sort string */
#define FILTER_MAX_SORT_LEN 255 /* characters of one sort field */
#define FILTER_MAX_DEPTH 6      /* relation hops in one path */

/* Return codes (besides 0):
 *   ERR_INVALID  malformed expression, unknown field or modifier, hidden field in a client
 *                filter, a client filter through a relation into a collection whose list
 *                rule is NULL                                       -> HTTP 400
 *   ERR_LIMIT    over FILTER_MAX_* (length, comparisons, sort fields, relation depth, nesting)
 *                or a compiled query over 1 MiB                     -> HTTP 400
 *   ERR_DENIED   `@request.*` or `@collection.*` in a client filter/sort (ctx->client)
 *                                                                   -> HTTP 403
 *                ("Only superusers can filter by @request." / "... by @collection.") */

/* Looks a collection up by name or by id; NULL when there is none.
 * RETURNS BORROWED: the collection must stay valid until the compiled result is used. */
typedef const struct store_collection *(*filter_find_collection_cb)(void *ud,
                                                                    const char *name_or_id);

/* Values of `@request.*` known when the rule is compiled. Every pointer may be NULL (the
 * corresponding identifiers then resolve to NULL). All BORROWED for the compile only. */
struct filter_request {
    const char *method;  /* "GET", "POST", ... */
    const char *context; /* "default", "oauth2", "otp", "password", "realtime", ... */
    /* The authenticated record as exported JSON (an object with at least "id"), NULL for a
     * guest; auth_collection is its collection. `@request.auth.id`, `.collectionId`,
     * `.collectionName`, `.email`, `.emailVisibility`, `.verified` come from the JSON; other
     * fields and relation paths are read from auth_collection's table by id. */
    const json_t *auth;
    const struct store_collection *auth_collection;
    const json_t *body;    /* object of submitted fields (after modifiers), or NULL */
    const json_t *query;   /* object: query parameter -> string (or array, first used) */
    const json_t *headers; /* object: header name lower-cased with '-' as '_' -> string */
};

/* The SQL the compile writes. DUCKDB is for the warehouse's own tables (e.g. the request
 * logs): a collection whose fields are plain columns (text, number, date, bool) and json
 * columns, without relations or multi-valued fields. It refuses `@request.*`,
 * `@collection.*` and functions (ERR_INVALID), reads json paths as text
 * (json_extract_string), compared as numbers (TRY_CAST) with a number and as booleans with
 * true/false, matches `~` case-insensitively (ILIKE, as SQLite's LIKE does for ASCII) and
 * compares values of different types as text where SQLite would compare them loosely. */
enum filter_dialect {
    FILTER_DIALECT_SQLITE = 0,
    FILTER_DIALECT_DUCKDB,
};

struct filter_ctx {
    const struct store_collection *collection; /* the collection the rows belong to */
    const char *alias;                         /* its table's alias in the outer query:
                                                  [A-Za-z][A-Za-z0-9_]*, e.g. "r" */
    filter_find_collection_cb find_collection; /* for relations, x_via_y, @collection.* */
    void *find_ud;
    int64_t now_us;                       /* "now" for @now, @todayStart, ... (UTC) */
    const struct filter_request *request; /* NULL: every @request.* resolves to NULL */
    /* true for a non-superuser's `?filter=` / `?sort=`: `@request.*` and `@collection.*`
     * give ERR_DENIED, hidden fields give ERR_INVALID, auth emails match only where
     * emailVisibility is set, and related rows count only when the related collection's
     * list rule (compiled with the same request) admits them. false for API rules and
     * superusers. */
    bool client;
    enum filter_dialect dialect; /* 0: SQLite */
    const char *rowid_column;    /* the column `@rowid` sorts by; NULL: SQLite's _rowid_ /
                                    DuckDB's rowid */
};

enum filter_param_type {
    FILTER_PARAM_NULL,
    FILTER_PARAM_INT,
    FILTER_PARAM_DOUBLE,
    FILTER_PARAM_TEXT,
};

/* One value to bind, in placeholder order: sqlite3_bind_null/_int64/_double/_text. */
struct filter_param {
    enum filter_param_type type;
    int64_t i;
    double d;
    const char *text; /* FILTER_PARAM_TEXT: text_len bytes, NUL-terminated (arena) */
    size_t text_len;
};

/* A compiled filter or sort. All memory in the arena passed to the compile. */
struct filter_sql {
    const char *sql; /* WHERE expression / ORDER BY list; NUL-terminated */
    size_t sql_len;
    struct filter_param *params;
    size_t n_params;
};

/* Why a compile failed: the return code, the 1-based character position in the input
 * (0 when the error concerns the whole input), and a message naming both, e.g.
 * `invalid filter at position 12: unknown field "titel"`. */
struct filter_error {
    int code;
    size_t pos;
    char msg[320];
};

/* Compiles a filter expression (expr, len bytes, UTF-8) into a WHERE expression.
 * An empty (or all-whitespace) expression is an error; callers skip absent filters.
 * err may be NULL. */
int filter_compile(const struct filter_ctx *ctx, const char *expr, size_t len, struct arena *a,
                   struct filter_sql *out, struct filter_error *err) MUST_USE;

/* Compiles a sort string ("-created,+title,author.name,@random,@rowid") into an ORDER BY
 * list such as `"r"."created" DESC, "r"."title" ASC`. An empty string gives an empty list
 * (out->sql_len == 0). err may be NULL. */
int filter_compile_sort(const struct filter_ctx *ctx, const char *sort, size_t len, struct arena *a,
                        struct filter_sql *out, struct filter_error *err) MUST_USE;

#endif
