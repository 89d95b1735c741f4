/* whd_guard.c - the SQL API's check of a statement's contents, on DuckDB's own parse of it.
 *
 * whd_query.c already lets only one SELECT through (by the prepared statement's type) and runs
 * it in a READ ONLY transaction on a database without external access. This check refuses what
 * a SELECT can still do wrong:
 *
 * - run SQL given as text: query(), query_table() and json_execute_serialized_sql() build a
 *   statement at run time that no check of the submitted text can see (and the last runs it on
 *   a connection of its own, outside the read-only transaction and the timeout);
 *   json_serialize_plan() binds a statement given as text inside the query. These are every
 *   function of DuckDB 1.4.4 (duckdb_functions()) that takes SQL text and binds or runs it.
 * - change the engine's state from a table function: checkpoint(), force_checkpoint(),
 *   enable_logging(), disable_logging(), truncate_duckdb_logs(), write_log(), and the arrow
 *   scans, which read raw pointers.
 * - use tandem's C aggregates (tandem_funnel, tandem_funnel_steps, tandem_bitcount) as a window
 *   function or with ORDER BY inside the call. DuckDB 1.4.4's C API feeds an aggregate one state
 *   per row without flattening the state vector, but two of its callers hand it a single state
 *   for all rows: the sorted-aggregate wrapper (ORDER BY in the call) and the window aggregate
 *   over whole partitions (the constant aggregator). The aggregate would then read states that
 *   do not exist; the C callback cannot tell the two apart, so the shapes are refused here.
 *
 * The statement is parsed by DuckDB itself (json_serialize_sql) and the parse tree is walked,
 * for every statement, whatever its text names: names built at run time (query('...' || '...'))
 * are refused with the function that would run them. A PRAGMA cannot be serialized; DuckDB
 * expands a PRAGMA into SQL text before preparing it (PRAGMA json_execute_serialized_sql runs
 * the statement it is given), so a PRAGMA passes only when it is a reading PRAGMA of a fixed
 * list, written plainly at the start of the text. Anything the check cannot read is refused. */
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "warehouse/duckdb/whd_int.h"

#define GUARD_MAX_DEPTH 400 /* of the JSON parse tree */

static const char *const aggregates[] = {"tandem_funnel", "tandem_funnel_steps", "tandem_bitcount"};

/* functions that bind or run SQL given as text */
static const char *const runs_sql[] = {"query", "query_table", "json_execute_serialized_sql",
                                       "json_serialize_plan"};

/* functions that change the engine's state, or read raw pointers */
static const char *const side_effects[] = {
    "checkpoint",           "force_checkpoint", "enable_logging", "disable_logging",
    "truncate_duckdb_logs", "write_log",        "arrow_scan",     "arrow_scan_dumb"};

/* PRAGMAs that only read; each expands to a fixed query (its argument quoted as a name) */
static const char *const reading_pragmas[] = {
    "table_info",    "show_tables",   "show_tables_expanded", "show_databases",
    "database_list", "database_size", "storage_info",         "metadata_info",
    "version",       "platform",      "user_agent",           "functions",
    "collations",    "show",          "extension_versions"};

static const char *find_name(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcasecmp(name, list[i]) == 0)
            return list[i];
    return NULL;
}

/* Finds something refused in the parse tree j; its reason is written to why. */
static bool walk(const json_t *j, int depth, char *why, size_t why_len)
{
    if (depth > GUARD_MAX_DEPTH) {
        snprintf(why, why_len, "the statement is nested too deeply to be checked");
        return true;
    }
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v)
        {
            if (walk(v, depth + 1, why, why_len))
                return true;
        }
        return false;
    }
    if (!json_is_object(j))
        return false;
    const char *fname = json_string_value(json_object_get(j, "function_name"));
    const char *name;
    if ((name = find_name(fname, runs_sql, ARRAY_LEN(runs_sql)))) {
        snprintf(why, why_len, "%s() is not allowed: it runs SQL given as text", name);
        return true;
    }
    if ((name = find_name(fname, side_effects, ARRAY_LEN(side_effects)))) {
        snprintf(why, why_len, "%s() is not allowed in a read-only query", name);
        return true;
    }
    if ((name = find_name(fname, aggregates, ARRAY_LEN(aggregates)))) {
        const char *cls = json_string_value(json_object_get(j, "class"));
        if (cls && strcmp(cls, "WINDOW") == 0) {
            snprintf(why, why_len, "%s cannot be used as a window function", name);
            return true;
        }
        const json_t *ob = json_object_get(json_object_get(j, "order_bys"), "orders");
        if (json_array_size(ob) > 0) {
            snprintf(why, why_len, "%s cannot take ORDER BY inside the call", name);
            return true;
        }
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (walk(v, depth + 1, why, why_len))
            return true;
    }
    return false;
}

static bool is_word(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Whether sql is one reading PRAGMA written plainly: whitespace, PRAGMA, whitespace, a name of
 * the list, then "(", ";", whitespace or the end. No comment or quoted name is accepted, so
 * the name read here is the one DuckDB reads. */
static bool reading_pragma(const char *sql)
{
    const char *p = sql;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (strncasecmp(p, "pragma", 6) != 0)
        return false;
    p += 6;
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
        return false;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    const char *name = p;
    while (is_word(*p))
        p++;
    size_t len = (size_t)(p - name);
    if (*p && *p != '(' && *p != ';' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
        return false;
    for (size_t i = 0; i < ARRAY_LEN(reading_pragmas); i++)
        if (strlen(reading_pragmas[i]) == len && strncasecmp(name, reading_pragmas[i], len) == 0)
            return true;
    return false;
}

int whd__sql_guard(duckdb_connection con, const char *sql, char *err, size_t err_len)
{
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool have_res = false;
    json_t *tree = NULL;
    char walk_why[160];
    const char *why = "cannot check the statement", *detail = "";
    char *text = NULL;
    int rc = ERR_DENIED;
    if (duckdb_prepare(con, "SELECT json_serialize_sql($1::VARCHAR)", &ps) != DuckDBSuccess) {
        detail = duckdb_prepare_error(ps);
        goto out;
    }
    if (duckdb_bind_varchar(ps, 1, sql) != DuckDBSuccess)
        goto out;
    have_res = true;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        detail = duckdb_result_error(&res);
        /* an interrupt (the timeout) is not the statement's fault */
        if (duckdb_result_error_type(&res) == DUCKDB_ERROR_INTERRUPT)
            rc = ERR_BUSY;
        goto out;
    }
    text = duckdb_value_varchar(&res, 0, 0);
    /* integers as reals: an unknown query_location is 2^64 - 1 */
    if (!text || !(tree = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL)))
        goto out;
    if (json_is_true(json_object_get(tree, "error"))) {
        if (reading_pragma(sql)) {
            why = NULL;
            goto out;
        }
        /* not a SELECT to the parser (a PRAGMA outside the list), or not readable */
        detail = json_string_value(json_object_get(tree, "error_message"));
        goto out;
    }
    why =
        walk(json_object_get(tree, "statements"), 0, walk_why, sizeof(walk_why)) ? walk_why : NULL;
out:
    if (why)
        snprintf(err, err_len, "%s%s%s", why, detail && *detail ? ": " : "", detail ? detail : "");
    json_decref(tree);
    duckdb_free(text);
    if (have_res)
        duckdb_destroy_result(&res);
    if (ps)
        duckdb_destroy_prepare(&ps);
    return why ? rc : 0;
}

/* ---- an analyst's reach (struct wh_scope) ----
 *
 * Allow-listed, on the parse tree: every table reference must be a base table of the main
 * schema named in the allowed set (events, non-auth mirrors, models), or a CTE name that is
 * no relation of the database (so it can only mean the CTE, whose own references are checked
 * like any other). Names compare without case, as DuckDB resolves them (quoted or not). Any
 * table function (read_csv, duckdb_tables(), ...), SHOW/DESCRIBE/SUMMARIZE, or reading PRAGMA
 * is refused. */

struct names {
    char **v;
    size_t n;
};

static void names_add(struct names *ns, const char *s)
{
    ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof(*ns->v));
    ns->v[ns->n++] = xstrdup(s);
}

static bool names_has(const struct names *ns, const char *s)
{
    for (size_t i = 0; s && i < ns->n; i++)
        if (strcasecmp(ns->v[i], s) == 0)
            return true;
    return false;
}

static void names_free(struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
}

/* Runs sql (no parameters) and adds the first column of every row to ns; with
 * skip_ids, rows whose second column is one of them are left out. */
static int names_query(duckdb_connection con, const char *sql, const struct wh_scope *skip_ids,
                       struct names *ns)
{
    duckdb_result res;
    if (duckdb_query(con, sql, &res) != DuckDBSuccess) {
        duckdb_destroy_result(&res);
        return ERR_INTERNAL;
    }
    idx_t rows = duckdb_row_count(&res);
    for (idx_t r = 0; r < rows; r++) {
        char *name = duckdb_value_varchar(&res, 0, r);
        bool skip = false;
        if (skip_ids) {
            char *id = duckdb_value_varchar(&res, 1, r);
            for (size_t i = 0; id && i < skip_ids->n_auth_collections; i++)
                skip = skip || strcmp(id, skip_ids->auth_collections[i]) == 0;
            duckdb_free(id);
        }
        if (name && !skip)
            names_add(ns, name);
        duckdb_free(name);
    }
    duckdb_destroy_result(&res);
    return 0;
}

static void cte_names(const json_t *j, int depth, struct names *ctes)
{
    if (depth > GUARD_MAX_DEPTH)
        return;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) cte_names(v, depth + 1, ctes);
        return;
    }
    if (!json_is_object(j))
        return;
    const json_t *map = json_object_get(json_object_get(j, "cte_map"), "map");
    for (size_t i = 0; i < json_array_size(map); i++) {
        const char *k = json_string_value(json_object_get(json_array_get(map, i), "key"));
        if (k)
            names_add(ctes, k);
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v) cte_names(v, depth + 1, ctes);
}

struct reach {
    struct names allowed, relations, ctes;
};

static bool scope_walk(const json_t *j, int depth, const struct reach *r, char *why, size_t why_len)
{
    if (depth > GUARD_MAX_DEPTH) {
        snprintf(why, why_len, "the statement is nested too deeply to be checked");
        return true;
    }
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v)
        {
            if (scope_walk(v, depth + 1, r, why, why_len))
                return true;
        }
        return false;
    }
    if (!json_is_object(j))
        return false;
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *table = json_string_value(json_object_get(j, "table_name"));
    if (type && strcmp(type, "BASE_TABLE") == 0 && table) {
        const char *schema = json_string_value(json_object_get(j, "schema_name"));
        const char *catalog = json_string_value(json_object_get(j, "catalog_name"));
        bool plain = !schema || !*schema;
        if ((catalog && *catalog) || (!plain && strcasecmp(schema, "main") != 0)) {
            snprintf(why, why_len, "analysts cannot read %s%s%s.%s",
                     catalog && *catalog ? catalog : "", catalog && *catalog ? "." : "", schema,
                     table);
            return true;
        }
        bool cte = plain && names_has(&r->ctes, table) && !names_has(&r->relations, table);
        if (!cte && !names_has(&r->allowed, table)) {
            snprintf(why, why_len, "analysts cannot read %s", table);
            return true;
        }
    } else if (type && strcmp(type, "TABLE_FUNCTION") == 0) {
        const char *f =
            json_string_value(json_object_get(json_object_get(j, "function"), "function_name"));
        snprintf(why, why_len, "analysts cannot call table functions (%s)", f ? f : "?");
        return true;
    } else if (type && strcmp(type, "SHOW_REF") == 0) {
        snprintf(why, why_len, "analysts cannot use DESCRIBE, SHOW or SUMMARIZE");
        return true;
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (scope_walk(v, depth + 1, r, why, why_len))
            return true;
    }
    return false;
}

int whd__scope_guard(duckdb_connection con, const char *sql, const struct wh_scope *scope,
                     char *err, size_t err_len)
{
    struct reach r;
    memset(&r, 0, sizeof(r));
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool have_res = false;
    json_t *tree = NULL;
    char *text = NULL;
    char why[200] = "cannot check the statement";
    int rc = ERR_DENIED;
    names_add(&r.allowed, "events");
    if (names_query(con, "SELECT table_name, collection_id FROM _mirrors", scope, &r.allowed) ||
        names_query(con, "SELECT name FROM _models", NULL, &r.allowed) ||
        names_query(con,
                    "SELECT table_name FROM duckdb_tables() UNION ALL "
                    "SELECT view_name FROM duckdb_views()",
                    NULL, &r.relations))
        goto out;
    if (duckdb_prepare(con, "SELECT json_serialize_sql($1::VARCHAR)", &ps) != DuckDBSuccess ||
        duckdb_bind_varchar(ps, 1, sql) != DuckDBSuccess)
        goto out;
    have_res = true;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        if (duckdb_result_error_type(&res) == DUCKDB_ERROR_INTERRUPT)
            rc = ERR_BUSY;
        goto out;
    }
    text = duckdb_value_varchar(&res, 0, 0);
    if (!text || !(tree = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL)))
        goto out;
    if (json_is_true(json_object_get(tree, "error"))) {
        snprintf(why, sizeof(why), "analysts can run only plain SELECT statements");
        goto out;
    }
    const json_t *stmts = json_object_get(tree, "statements");
    cte_names(stmts, 0, &r.ctes);
    if (!scope_walk(stmts, 0, &r, why, sizeof(why)))
        rc = 0;
out:
    if (rc != 0)
        snprintf(err, err_len, "%s", why);
    json_decref(tree);
    duckdb_free(text);
    if (have_res)
        duckdb_destroy_result(&res);
    if (ps)
        duckdb_destroy_prepare(&ps);
    names_free(&r.allowed);
    names_free(&r.relations);
    names_free(&r.ctes);
    return rc;
}
