/* whd_keyscan.c - incremental builds of a model whose unique key is computed from each input
 * row (`user_id || '/' || CAST("timestamp" AS DATE)`): the restriction to the keys that the
 * new rows touch is moved from the model's output down to the scan of its source table.
 *
 * An incremental build (whd_models.c) learns the touched keys (temp table __tandem_keys, one
 * column k), then runs the model over every row and keeps the output rows of those keys. When
 * the key is an expression, DuckDB cannot push `key IN (...)` below the model's GROUP BY, so
 * every build aggregated the whole table. Here the key expression is taken from DuckDB's own
 * parse of the model (json_serialize_sql), evaluated on each row of the source table, and the
 * source table is shadowed for the rest of the build by a temporary view of the same name
 * holding only the rows whose key is touched:
 *
 *     CREATE TEMP VIEW events AS SELECT * EXCLUDE (__tandem_k) FROM
 *       (SELECT *, <key expression> AS __tandem_k FROM "db".main.events AS <alias>)
 *     WHERE __tandem_k IN (SELECT k FROM __tandem_keys)
 *
 * so the aggregate only sees the rows of the touched keys. The output is unchanged when every
 * input row that produces an output row of key k has key k itself, which holds when:
 *   - the model is one SELECT (no CTE, no set operation) FROM one unqualified table, events or
 *     changes, without joins;
 *   - the key is an item of its select list (by alias, or a plain column of that name) made
 *     of the row's columns, constants, casts, operators and scalar functions only: no
 *     aggregate (then it is a grouping expression or there is no aggregation, and its value on
 *     each row of a group is the group's key), and every column it names is a column of the
 *     table (not another item's alias);
 *   - nothing in the model looks at rows beyond its own group: no window function and no
 *     subquery anywhere (a subquery would read the shadowed table).
 * Otherwise nothing is shadowed and the build restricts the output only, as before. Every
 * check is made on the parse before anything runs, so a model that does not qualify never
 * causes an engine error inside the build's transaction. */
#include <string.h>
#include <strings.h>

#include "warehouse/duckdb/whd_int.h"

#define KEYCOL "__tandem_k"

/* Runs `SELECT json_serialize_sql(sql)` and parses it; NULL when that fails. query_location
 * is UINT64_MAX where DuckDB has none, which jansson cannot read as an integer: it is a
 * position for error messages only, so it is read as 0. */
static json_t *serialize(struct whd_conn *c, const char *sql)
{
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    json_t *tree = NULL;
    if (duckdb_prepare(c->con, "SELECT json_serialize_sql($1::VARCHAR)", &ps) != DuckDBSuccess) {
        duckdb_destroy_prepare(&ps);
        return NULL;
    }
    duckdb_bind_varchar(ps, 1, sql);
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        duckdb_destroy_result(&res);
        duckdb_destroy_prepare(&ps);
        return NULL;
    }
    char *text = duckdb_value_varchar(&res, 0, 0);
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&ps);
    if (!text)
        return NULL;
    static const char big[] = "\"query_location\":18446744073709551615";
    struct buf b;
    buf_init(&b);
    for (const char *p = text, *q; *p; p = q + sizeof(big) - 1) {
        q = strstr(p, big);
        if (!q) {
            buf_puts(&b, p);
            break;
        }
        buf_append(&b, p, (size_t)(q - p));
        buf_puts(&b, "\"query_location\":0");
    }
    duckdb_free(text);
    tree = json_loads(buf_cstr(&b), 0, NULL);
    buf_release(&b);
    if (tree && !json_is_false(json_object_get(tree, "error"))) {
        json_decref(tree);
        tree = NULL;
    }
    return tree;
}

/* Whether j (any part of a parse) holds an expression of a class that looks beyond the row. */
static bool has_class(const json_t *j, int depth)
{
    if (depth > 200)
        return true;
    if (json_is_object(j)) {
        const char *cls = json_string_value(json_object_get(j, "class"));
        if (cls && (strcmp(cls, "WINDOW") == 0 || strcmp(cls, "SUBQUERY") == 0))
            return true;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (has_class(v, depth + 1))
                return true;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (has_class(v, depth + 1))
                return true;
        }
    }
    return false;
}

/* The string member k of o, or def when there is none. */
static const char *jstr_or(const json_t *o, const char *k, const char *def)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : def;
}

static bool is_aggregate(struct whd_conn *c, const char *name)
{
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool agg = true; /* when in doubt, not row-level */
    if (duckdb_prepare(c->con,
                       "SELECT count(*) FROM duckdb_functions() WHERE function_name = $1 AND "
                       "function_type NOT IN ('scalar', 'macro')",
                       &ps) == DuckDBSuccess) {
        duckdb_bind_varchar(ps, 1, name);
        if (duckdb_execute_prepared(ps, &res) == DuckDBSuccess)
            agg = duckdb_value_int64(&res, 0, 0) > 0;
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
    return agg;
}

static bool is_column(struct whd_conn *c, const char *table, const char *col)
{
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool yes = false;
    if (duckdb_prepare(c->con,
                       "SELECT count(*) FROM duckdb_columns() WHERE database_name = "
                       "current_database() AND schema_name = 'main' AND table_name = $1 AND "
                       "lower(column_name) = lower($2)",
                       &ps) == DuckDBSuccess) {
        duckdb_bind_varchar(ps, 1, table);
        duckdb_bind_varchar(ps, 2, col);
        if (duckdb_execute_prepared(ps, &res) == DuckDBSuccess)
            yes = duckdb_value_int64(&res, 0, 0) > 0;
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
    return yes;
}

/* Whether the expression e is made of the row's own columns (of table, named bare or through
 * qual), constants and scalar functions only. */
static bool row_level(struct whd_conn *c, const json_t *e, const char *table, const char *qual,
                      int depth)
{
    if (depth > 100 || !json_is_object(e))
        return false;
    const char *cls = json_string_value(json_object_get(e, "class"));
    if (!cls)
        return false;
    if (strcmp(cls, "CONSTANT") == 0)
        return true;
    if (strcmp(cls, "COLUMN_REF") == 0) {
        const json_t *names = json_object_get(e, "column_names");
        size_t n = json_array_size(names);
        const char *q0 = json_string_value(json_array_get(names, 0));
        if (n == 2 && (!q0 || strcasecmp(q0, qual) != 0))
            return false;
        const char *col = json_string_value(json_array_get(names, n - 1));
        return (n == 1 || n == 2) && col && is_column(c, table, col);
    }
    if (strcmp(cls, "FUNCTION") == 0) {
        const char *fn = json_string_value(json_object_get(e, "function_name"));
        if (!fn || !json_is_null(json_object_get(e, "filter")) ||
            json_is_true(json_object_get(e, "distinct")) ||
            json_array_size(json_object_get(json_object_get(e, "order_bys"), "orders")) > 0 ||
            strcmp(jstr_or(e, "schema", ""), "") != 0 ||
            (!json_is_true(json_object_get(e, "is_operator")) && is_aggregate(c, fn)))
            return false;
    } else if (strcmp(cls, "CAST") != 0 && strcmp(cls, "OPERATOR") != 0 &&
               strcmp(cls, "COMPARISON") != 0 && strcmp(cls, "CONJUNCTION") != 0 &&
               strcmp(cls, "CASE") != 0 && strcmp(cls, "BETWEEN") != 0) {
        return false;
    }
    /* every sub-expression, wherever this class keeps it */
    static const char *const kids[] = {"children",  "child",     "left",     "right",
                                       "input",     "lower",     "upper",    "case_checks",
                                       "when_expr", "then_expr", "else_expr"};
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)e, k, v)
    {
        bool kid = false;
        for (size_t i = 0; i < ARRAY_LEN(kids) && !kid; i++)
            kid = strcmp(k, kids[i]) == 0;
        if (!kid)
            continue;
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                if (json_is_object(x) && json_object_get(x, "class") &&
                    !row_level(c, x, table, qual, depth + 1))
                    return false;
                if (json_is_object(x) && !json_object_get(x, "class") &&
                    (!row_level(c, json_object_get(x, "when_expr"), table, qual, depth + 1) ||
                     !row_level(c, json_object_get(x, "then_expr"), table, qual, depth + 1)))
                    return false;
            }
        } else if (!json_is_null(v) && !row_level(c, v, table, qual, depth + 1)) {
            return false;
        }
    }
    return true;
}

int whd__key_shadow(struct whd_conn *c, const char *sql, const char *key, const char *keys_table,
                    bool *made_out)
{
    *made_out = false;
    json_t *tree = serialize(c, sql), *tmpl = NULL;
    struct buf b;
    buf_init(&b);
    int rc = 0;
    json_t *stmts = json_object_get(tree, "statements");
    json_t *node = json_object_get(json_array_get(stmts, 0), "node");
    json_t *from = json_object_get(node, "from_table");
    const char *table = json_string_value(json_object_get(from, "table_name"));
    const char *alias = json_string_value(json_object_get(from, "alias"));
    if (json_array_size(stmts) != 1 || strcmp(jstr_or(node, "type", ""), "SELECT_NODE") != 0 ||
        json_array_size(json_object_get(json_object_get(node, "cte_map"), "map")) > 0 ||
        strcmp(jstr_or(from, "type", ""), "BASE_TABLE") != 0 || !table || !alias ||
        (strcmp(table, "events") != 0 && strcmp(table, "changes") != 0) ||
        strcmp(jstr_or(from, "schema_name", "x"), "") != 0 ||
        strcmp(jstr_or(from, "catalog_name", "x"), "") != 0 ||
        !json_is_null(json_object_get(from, "sample")) || has_class(node, 0))
        goto out;
    /* the key's item of the select list */
    json_t *expr = NULL, *item;
    size_t i, n_found = 0;
    json_array_foreach(json_object_get(node, "select_list"), i, item)
    {
        const char *a = json_string_value(json_object_get(item, "alias"));
        const json_t *names = json_object_get(item, "column_names");
        bool named =
            a && *a ? strcasecmp(a, key) == 0
                    : json_array_size(names) > 0 &&
                          strcasecmp(
                              json_string_value(json_array_get(names, json_array_size(names) - 1)),
                              key) == 0;
        if (named) {
            expr = item;
            n_found++;
        }
    }
    if (n_found != 1 || !row_level(c, expr, table, *alias ? alias : table, 0))
        goto out;
    /* SELECT *, <key> AS __tandem_k FROM "<db>".main.<table> [AS alias], as DuckDB writes it
     * back from the parse */
    buf_puts(&b, "SELECT *, NULL AS " KEYCOL " FROM ");
    duckdb_result res;
    if (duckdb_query(c->con, "SELECT current_database()", &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, NULL);
        goto out;
    }
    char *db = duckdb_value_varchar(&res, 0, 0);
    duckdb_destroy_result(&res);
    whd__quote_ident(&b, db ? db : "memory");
    duckdb_free(db);
    buf_printf(&b, ".main.%s", table);
    if (*alias) {
        buf_puts(&b, " AS ");
        whd__quote_ident(&b, alias);
    }
    tmpl = serialize(c, buf_cstr(&b));
    json_t *tnode = json_object_get(json_array_get(json_object_get(tmpl, "statements"), 0), "node");
    json_t *tlist = json_object_get(tnode, "select_list");
    if (json_array_size(tlist) != 2)
        goto out;
    json_t *k = json_deep_copy(expr);
    json_object_set_new(k, "alias", json_string(KEYCOL));
    json_array_set_new(tlist, 1, k);
    char *ser = json_dumps(tmpl, JSON_COMPACT);
    duckdb_prepared_statement ps = NULL;
    char *text = NULL;
    if (duckdb_prepare(c->con, "SELECT json_deserialize_sql($1::JSON)", &ps) == DuckDBSuccess) {
        duckdb_bind_varchar(ps, 1, ser);
        if (duckdb_execute_prepared(ps, &res) == DuckDBSuccess)
            text = duckdb_value_varchar(&res, 0, 0);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
    free(ser);
    if (!text)
        goto out;
    buf_reset(&b);
    buf_printf(&b,
               "CREATE TEMP VIEW %s AS SELECT * EXCLUDE (" KEYCOL ") FROM (%s) WHERE " KEYCOL
               " IN (SELECT k FROM %s)",
               table, text, keys_table);
    duckdb_free(text);
    if ((rc = whd__exec(c, buf_cstr(&b))) == 0)
        *made_out = true;
out:
    json_decref(tree);
    json_decref(tmpl);
    buf_release(&b);
    return rc;
}
