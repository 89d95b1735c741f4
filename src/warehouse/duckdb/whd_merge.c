/* whd_merge.c - which incremental models can merge their new rows' aggregates into the
 * published rows instead of re-aggregating every input row of the touched keys.
 *
 * A model qualifies when DuckDB's own parse of its SQL (json_serialize_sql) is one plain
 * SELECT ... FROM events|changes [WHERE ...] GROUP BY ... whose output columns are either
 * grouping expressions or one of count(*), count(x), sum(x), min(x), max(x) (optionally with a
 * FILTER), with no DISTINCT, HAVING, QUALIFY, LIMIT, window, subquery, join, CTE or sample, and
 * every GROUP BY expression among the output columns (GROUP BY ALL, an output position, or the
 * same expression). Every scalar function it uses must be an operator or one of a list of
 * deterministic functions, so that a row contributes the same thing to its group whenever it is
 * read (now(), random() and the like disqualify it). Then each output row is identified by its
 * grouping columns, and its aggregates over all rows equal those over the rows already merged
 * combined with those over the new rows: counts add, sums add (NULL when both are NULL), min
 * and max take the least and greatest. The caller checks the output types (sum of a float
 * is order-dependent, so it keeps the re-aggregating path). */
#include <string.h>

#include "warehouse/duckdb/whd_int.h"

/* Scalar functions whose result depends only on their arguments (operators such as ||, +, ~~
 * are accepted by their is_operator flag). */
static const char *const PURE[] = {
    "concat",         "lower",          "upper",        "lcase",
    "ucase",          "date_trunc",     "datetrunc",    "date_part",
    "datepart",       "strftime",       "substring",    "substr",
    "length",         "split_part",     "json_extract", "json_extract_string",
    "regexp_extract", "regexp_matches", "starts_with",  "ends_with",
    "contains",       "prefix",         "suffix",       "abs",
    "round",          "floor",          "ceil",         "time_bucket",
    "epoch",          "epoch_ms",       "to_timestamp", "nullif",
    "ifnull",         "trim",           "ltrim",        "rtrim",
    "replace",        "hash",           "coalesce",     "left",
    "right",          "year",           "month",        "day",
    "hour",           "dayofweek",      "week",         "isodow",
    "last_day",       "make_date",
};

static bool is_pure(const char *fn)
{
    for (size_t i = 0; i < ARRAY_LEN(PURE); i++)
        if (strcasecmp(fn, PURE[i]) == 0)
            return true;
    return false;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* True when e is a row-local, deterministic expression without aggregates. */
static bool scalar_ok(const json_t *e, int depth)
{
    if (!e || json_is_null(e))
        return true;
    if (depth > 64)
        return false;
    if (json_is_array(e)) {
        size_t i;
        const json_t *v;
        json_array_foreach(e, i, v)
        {
            if (!scalar_ok(v, depth + 1))
                return false;
        }
        return true;
    }
    if (!json_is_object(e))
        return true;
    const char *cls = str(e, "class");
    if (strcmp(cls, "COLUMN_REF") == 0 || strcmp(cls, "CONSTANT") == 0)
        return true;
    if (strcmp(cls, "FUNCTION") == 0) {
        if (!json_is_true(json_object_get(e, "is_operator")) && !is_pure(str(e, "function_name")))
            return false;
        if (!json_is_null(json_object_get(e, "filter")) ||
            json_array_size(json_object_get(json_object_get(e, "order_bys"), "orders")) > 0 ||
            json_is_true(json_object_get(e, "distinct")))
            return false;
        return scalar_ok(json_object_get(e, "children"), depth + 1);
    }
    static const char *const nodes[] = {"CAST",     "COMPARISON", "CONJUNCTION",
                                        "OPERATOR", "CASE",       "BETWEEN",
                                        ""}; /* "": a member such as a CASE's check */
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(nodes); i++)
        known = known || strcmp(cls, nodes[i]) == 0;
    if (!known)
        return false;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)e, k, v)
    {
        if (!scalar_ok(v, depth + 1))
            return false;
    }
    return true;
}

/* The aggregate kind of a select item, or 0 when it is not a mergeable aggregate. */
static char agg_kind(const json_t *e)
{
    if (strcmp(str(e, "class"), "FUNCTION") != 0 || json_is_true(json_object_get(e, "is_operator")))
        return 0;
    const char *fn = str(e, "function_name");
    const json_t *args = json_object_get(e, "children");
    size_t n = json_array_size(args);
    char kind = strcmp(fn, "count_star") == 0 && n == 0 ? WHD_MERGE_COUNT
                : strcmp(fn, "count") == 0 && n <= 1    ? WHD_MERGE_COUNT
                : strcmp(fn, "sum") == 0 && n == 1      ? WHD_MERGE_SUM
                : strcmp(fn, "min") == 0 && n == 1      ? WHD_MERGE_MIN
                : strcmp(fn, "max") == 0 && n == 1      ? WHD_MERGE_MAX
                                                        : 0;
    if (!kind || json_is_true(json_object_get(e, "distinct")) ||
        json_is_true(json_object_get(e, "export_state")) ||
        json_array_size(json_object_get(json_object_get(e, "order_bys"), "orders")) > 0 ||
        !scalar_ok(args, 1) || !scalar_ok(json_object_get(e, "filter"), 1))
        return 0;
    return kind;
}

/* Structural equality ignoring aliases and source positions. */
static bool same_expr(const json_t *a, const json_t *b)
{
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        const json_t *v;
        size_t na = 0, nb = 0;
        json_object_foreach((json_t *)a, k, v)
        {
            if (strcmp(k, "alias") == 0 || strcmp(k, "query_location") == 0)
                continue;
            na++;
            if (!same_expr(v, json_object_get(b, k)))
                return false;
        }
        json_object_foreach((json_t *)b, k, v) nb +=
            strcmp(k, "alias") != 0 && strcmp(k, "query_location") != 0;
        return na == nb;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_expr(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    return a && b && json_equal((json_t *)a, (json_t *)b);
}

/* Which select item a GROUP BY expression names; -1 when none. */
static int group_item(const json_t *g, const json_t *list)
{
    const json_t *val = json_object_get(g, "value");
    if (strcmp(str(g, "class"), "CONSTANT") == 0 && json_is_number(json_object_get(val, "value"))) {
        double pos = json_number_value(json_object_get(val, "value"));
        return pos >= 1 && pos <= (double)json_array_size(list) && pos == (double)(int)pos
                   ? (int)pos - 1
                   : -1;
    }
    for (size_t i = 0; i < json_array_size(list); i++)
        if (same_expr(g, json_array_get(list, i)))
            return (int)i;
    return -1;
}

static bool plan(const json_t *tree, char *kinds, size_t max, size_t *n_out)
{
    const json_t *stmts = json_object_get(tree, "statements");
    if (json_is_true(json_object_get(tree, "error")) || json_array_size(stmts) != 1)
        return false;
    const json_t *node = json_object_get(json_array_get(stmts, 0), "node");
    const json_t *from = json_object_get(node, "from_table");
    const char *table = str(from, "table_name");
    if (strcmp(str(node, "type"), "SELECT_NODE") != 0 ||
        json_array_size(json_object_get(json_object_get(node, "cte_map"), "map")) > 0 ||
        strcmp(str(from, "type"), "BASE_TABLE") != 0 ||
        (strcasecmp(table, "events") != 0 && strcasecmp(table, "changes") != 0) ||
        *str(from, "schema_name") || *str(from, "catalog_name") ||
        !json_is_null(json_object_get(from, "sample")) ||
        !json_is_null(json_object_get(from, "at_clause")) ||
        !json_is_null(json_object_get(node, "having")) ||
        !json_is_null(json_object_get(node, "qualify")) ||
        !json_is_null(json_object_get(node, "sample")) ||
        json_array_size(json_object_get(node, "group_sets")) > 1 ||
        !scalar_ok(json_object_get(node, "where_clause"), 0))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(node, "modifiers"), i, v)
    {
        if (strcmp(str(v, "type"), "ORDER_MODIFIER") != 0)
            return false; /* LIMIT, DISTINCT */
    }
    const json_t *list = json_object_get(node, "select_list");
    size_t n = json_array_size(list);
    if (n == 0 || n > max)
        return false;
    bool any_group = false, any_agg = false;
    json_array_foreach(list, i, v)
    {
        char k = agg_kind(v);
        if (!k && !scalar_ok(v, 0))
            return false; /* STAR, a window, an aggregate inside an expression, ... */
        kinds[i] = k ? k : WHD_MERGE_GROUP;
        any_group = any_group || !k;
        any_agg = any_agg || k;
    }
    bool group_all = strcmp(str(node, "aggregate_handling"), "FORCE_AGGREGATES") == 0;
    const json_t *groups = json_object_get(node, "group_expressions");
    if (!any_agg || !any_group || (!group_all && json_array_size(groups) == 0))
        return false;
    json_array_foreach(groups, i, v)
    {
        int item = group_item(v, list);
        if (item < 0 || kinds[item] != WHD_MERGE_GROUP)
            return false;
    }
    *n_out = n;
    return true;
}

int whd__merge_plan(struct whd_conn *c, const char *sql, char *kinds, size_t max, size_t *n_out)
{
    duckdb_prepared_statement ps;
    duckdb_result res;
    *n_out = 0;
    if (duckdb_prepare(c->con, "SELECT json_serialize_sql($1::VARCHAR)", &ps) != DuckDBSuccess) {
        int rc = whd__fail(c, ERR_INTERNAL, "%s", duckdb_prepare_error(ps));
        duckdb_destroy_prepare(&ps);
        return rc;
    }
    duckdb_bind_varchar(ps, 1, sql);
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        duckdb_destroy_prepare(&ps);
        return whd__result_fail(c, &res, NULL);
    }
    duckdb_destroy_prepare(&ps);
    char *text = duckdb_value_varchar(&res, 0, 0);
    duckdb_destroy_result(&res);
    json_t *tree = text ? json_loads(text, JSON_DECODE_INT_AS_REAL, NULL) : NULL;
    duckdb_free(text);
    bool ok = tree && plan(tree, kinds, max, n_out);
    json_decref(tree);
    if (!ok)
        *n_out = 0;
    return ok ? 1 : 0;
}
