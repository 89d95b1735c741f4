/* whd_models.c - SQL models on DuckDB: parsing a model (DuckDB's own parser, through
 * json_serialize_sql, so the names a model reads are the names DuckDB reads), its columns,
 * definitions, write-audit-publish builds with the data tests, and the run records.
 *
 * A build runs in ONE transaction. The new version is built aside (a table
 * __tandem_build_<name> for a full build, a temporary view for a view or an incremental
 * build), the tests read it, and only then does it replace the published relation; any failure
 * rolls everything back, so the published version is the previous one.
 *
 * Incremental builds: the events and changes loaded since the last build are the rows with a
 * log_offset in [the offset stored with that build, the loader's committed offset read in
 * this transaction). The loader commits its rows and its offset together, so in this
 * transaction's snapshot exactly those rows exist: a late event (an old timestamp, a new
 * offset) is in exactly one build's range, and no row is read twice. The model's SQL is run
 * once over only those rows (temporary views named events/changes shadow the tables) to learn
 * which unique keys they touch; then the model is run over all rows, restricted to those keys,
 * and the published rows of those keys are replaced. For a model whose every output row is a
 * function of the input rows that produce its key (a per-key aggregate), this equals a full
 * rebuild (docs/models.md, tests/unit/test_models.c). */
#include <inttypes.h>
#include <string.h>

#include "warehouse/duckdb/whd_int.h"

#define CAND "__tandem_cand"
#define KEYS "__tandem_keys"
#define NEWROWS "__tandem_new"
#define DELTA "__tandem_delta"
#define ROWID "__tandem_rowid"
#define BUILD_PREFIX "__tandem_build_"

/* ---- small helpers ---- */

static int prep(struct whd_conn *c, const char *sql, duckdb_prepared_statement *ps)
{
    if (duckdb_prepare(c->con, sql, ps) != DuckDBSuccess) {
        int rc = whd__fail(c, ERR_INVALID, "%s", duckdb_prepare_error(*ps));
        duckdb_destroy_prepare(ps);
        return rc;
    }
    return 0;
}

/* Runs ps and reads the first column of its first row as an int64 (0 when no row). */
static int run_i64(struct whd_conn *c, duckdb_prepared_statement ps, int64_t *v, bool *found)
{
    duckdb_result res;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    *v = 0;
    if (found)
        *found = duckdb_row_count(&res) > 0;
    if (duckdb_row_count(&res) > 0)
        *v = duckdb_value_int64(&res, 0, 0);
    duckdb_destroy_result(&res);
    return 0;
}

/* Executes ps (no result wanted) and destroys it. */
static int exec_ps(struct whd_conn *c, duckdb_prepared_statement ps)
{
    duckdb_result res;
    int rc = 0;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess)
        rc = whd__result_fail(c, &res, NULL);
    else
        duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&ps);
    return rc;
}

static int exec_buf(struct whd_conn *c, struct buf *b)
{
    return whd__exec(c, buf_cstr(b));
}

/* One int64 from sql with an optional VARCHAR parameter. */
static int query_i64(struct whd_conn *c, const char *sql, const char *param, int64_t *v,
                     bool *found)
{
    duckdb_prepared_statement ps;
    int rc = prep(c, sql, &ps);
    if (rc < 0)
        return rc;
    if (param && duckdb_bind_varchar(ps, 1, param) != DuckDBSuccess)
        rc = whd__fail(c, ERR_INTERNAL, "cannot bind a parameter");
    else
        rc = run_i64(c, ps, v, found);
    duckdb_destroy_prepare(&ps);
    return rc;
}

/* "table", "view" or NULL: what main.<name> is. */
static int relation_kind(struct whd_conn *c, const char *name, const char **kind_out)
{
    int64_t v;
    bool found;
    int rc = query_i64(c,
                       "SELECT 1 FROM duckdb_tables() WHERE NOT temporary AND "
                       "schema_name = 'main' AND table_name = $1 UNION ALL "
                       "SELECT 2 FROM duckdb_views() WHERE NOT temporary AND "
                       "schema_name = 'main' AND view_name = $1",
                       name, &v, &found);
    *kind_out = rc == 0 && found ? (v == 1 ? "table" : "view") : NULL;
    return rc;
}

/* Appends "<database>".main."<name>": the published relation, past any temporary one. */
static int put_published(struct whd_conn *c, struct buf *b, const char *name)
{
    duckdb_result res;
    if (duckdb_query(c->con, "SELECT current_database()", &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    char *db = duckdb_value_varchar(&res, 0, 0);
    duckdb_destroy_result(&res);
    whd__quote_ident(b, db ? db : "memory");
    duckdb_free(db);
    buf_puts(b, ".main.");
    whd__quote_ident(b, name);
    return 0;
}

/* ---- parsing ---- */

static void collect_ctes(const json_t *j, json_t *ctes, int depth)
{
    if (depth > 400)
        return;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) collect_ctes(v, ctes, depth + 1);
        return;
    }
    if (!json_is_object(j))
        return;
    const json_t *map = json_object_get(json_object_get(j, "cte_map"), "map");
    size_t i;
    const json_t *e;
    json_array_foreach(map, i, e)
    {
        const char *k = json_string_value(json_object_get(e, "key"));
        if (k)
            json_object_set_new(ctes, k, json_true());
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v) collect_ctes(v, ctes, depth + 1);
}

/* Adds every BASE_TABLE name to refs (an object used as a set); -1 with why on a schema- or
 * catalog-qualified name. */
static int collect_refs(const json_t *j, json_t *refs, int depth, char *why, size_t why_len)
{
    if (depth > 400) {
        snprintf(why, why_len, "the statement is nested too deeply");
        return -1;
    }
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v)
        {
            if (collect_refs(v, refs, depth + 1, why, why_len) < 0)
                return -1;
        }
        return 0;
    }
    if (!json_is_object(j))
        return 0;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && strcmp(type, "BASE_TABLE") == 0) {
        const char *t = json_string_value(json_object_get(j, "table_name"));
        const char *s = json_string_value(json_object_get(j, "schema_name"));
        const char *cat = json_string_value(json_object_get(j, "catalog_name"));
        if ((s && *s && strcasecmp(s, "main") != 0) || (cat && *cat)) {
            snprintf(why, why_len, "a model reads tables by their plain name: %s%s%s.%s",
                     cat && *cat ? cat : "", cat && *cat ? "." : "", s ? s : "", t ? t : "");
            return -1;
        }
        if (t) {
            char low[256];
            size_t n = strlen(t);
            if (n >= sizeof(low)) {
                snprintf(why, why_len, "a table name is too long");
                return -1;
            }
            for (size_t k = 0; k <= n; k++)
                low[k] = (char)((t[k] >= 'A' && t[k] <= 'Z') ? t[k] + 32 : t[k]);
            json_object_set_new(refs, low, json_true());
        }
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (collect_refs(v, refs, depth + 1, why, why_len) < 0)
            return -1;
    }
    return 0;
}

int whd__model_parse(struct wh_conn *wc, const char *sql, json_t **refs_out)
{
    struct whd_conn *c = whd__conn(wc);
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool have_res = false;
    char *text = NULL;
    json_t *tree = NULL, *ctes = NULL, *refs = NULL;
    char why[512];
    int rc;
    *refs_out = NULL;
    if ((rc = prep(c, "SELECT json_serialize_sql($1::VARCHAR)", &ps)) < 0)
        goto out;
    duckdb_bind_varchar(ps, 1, sql);
    have_res = true;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        have_res = false;
        rc = whd__result_fail(c, &res, "cannot parse the model");
        goto out;
    }
    text = duckdb_value_varchar(&res, 0, 0);
    if (!text || !(tree = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL))) {
        rc = whd__fail(c, ERR_INTERNAL, "cannot read the parse of the model");
        goto out;
    }
    if (json_is_true(json_object_get(tree, "error"))) {
        const char *et = json_string_value(json_object_get(tree, "error_type"));
        const char *msg = json_string_value(json_object_get(tree, "error_message"));
        const char *pos = json_string_value(json_object_get(tree, "position"));
        if (et && strcmp(et, "parser") == 0)
            rc = whd__fail(c, ERR_INVALID, "syntax error: %s%s%s", msg ? msg : "",
                           pos ? " at character " : "", pos ? pos : "");
        else
            rc = whd__fail(c, ERR_DENIED,
                           "a model must be one SELECT statement (it cannot write): %s",
                           msg ? msg : "");
        goto out;
    }
    if (json_array_size(json_object_get(tree, "statements")) != 1) {
        rc = whd__fail(c, ERR_DENIED, "a model must be exactly one SELECT statement");
        goto out;
    }
    if ((rc = whd__sql_guard(c->con, sql, why, sizeof(why))) < 0) {
        whd__fail(c, rc, "%s", why);
        goto out;
    }
    ctes = json_object();
    refs = json_object();
    collect_ctes(tree, ctes, 0);
    if (collect_refs(tree, refs, 0, why, sizeof(why)) < 0) {
        rc = whd__fail(c, ERR_DENIED, "%s", why);
        goto out;
    }
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(refs, k, v)
    {
        if (!json_object_get(ctes, k))
            json_array_append_new(arr, json_string(k));
    }
    *refs_out = arr;
    rc = 0;
out:
    json_decref(tree);
    json_decref(ctes);
    json_decref(refs);
    duckdb_free(text);
    if (have_res)
        duckdb_destroy_result(&res);
    if (ps)
        duckdb_destroy_prepare(&ps);
    return rc;
}

/* ---- columns ---- */

static json_t *result_columns(duckdb_result *res)
{
    json_t *cols = json_array();
    idx_t n = duckdb_column_count(res);
    for (idx_t i = 0; i < n; i++) {
        struct buf b;
        buf_init(&b);
        duckdb_logical_type t = duckdb_column_logical_type(res, i);
        whd__type_name(&b, t);
        duckdb_destroy_logical_type(&t);
        json_array_append_new(
            cols, json_pack("{s:s,s:s}", "name", duckdb_column_name(res, i), "type", buf_cstr(&b)));
        buf_release(&b);
    }
    return cols;
}

int whd__model_columns(struct wh_conn *wc, const char *sql, const json_t *unbuilt,
                       json_t **columns_out)
{
    struct whd_conn *c = whd__conn(wc);
    struct buf b;
    buf_init(&b);
    *columns_out = NULL;
    int rc = whd__begin(c);
    if (rc < 0)
        goto out;
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)unbuilt, name, v)
    {
        buf_reset(&b);
        buf_puts(&b, "CREATE TEMP VIEW ");
        whd__quote_ident(&b, name);
        buf_printf(&b, " AS SELECT * FROM (%s)", json_string_value(v));
        if ((rc = exec_buf(c, &b)) < 0)
            goto out_rollback;
    }
    buf_reset(&b);
    buf_printf(&b, "SELECT * FROM (%s\n) LIMIT 0", sql);
    duckdb_result res;
    if (duckdb_query(c->con, buf_cstr(&b), &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, NULL);
        goto out_rollback;
    }
    *columns_out = result_columns(&res);
    duckdb_destroy_result(&res);
    rc = 0;
out_rollback:
    whd__rollback(c);
out:
    buf_release(&b);
    return rc;
}

/* ---- definitions ---- */

static int drop_published(struct whd_conn *c, const char *name)
{
    const char *kind;
    int rc = relation_kind(c, name, &kind);
    if (rc < 0 || !kind)
        return rc;
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "DROP %s ", strcmp(kind, "table") == 0 ? "TABLE" : "VIEW");
    if ((rc = put_published(c, &b, name)) == 0)
        rc = exec_buf(c, &b);
    buf_release(&b);
    return rc;
}

static int exec_name(struct whd_conn *c, const char *sql, const char *name)
{
    duckdb_prepared_statement ps;
    int rc = prep(c, sql, &ps);
    if (rc < 0)
        return rc;
    duckdb_bind_varchar(ps, 1, name);
    return exec_ps(c, ps);
}

int whd__model_define(struct wh_conn *wc, const char *name, const json_t *spec, bool reset)
{
    struct whd_conn *c = whd__conn(wc);
    int rc = whd__begin(c);
    if (rc < 0)
        return rc;
    if ((rc = exec_name(c, "DELETE FROM _models WHERE name = $1", name)) < 0)
        goto fail;
    if ((reset || !spec) &&
        (rc = exec_name(c, "DELETE FROM _model_state WHERE model = $1", name)) < 0)
        goto fail;
    if (!spec) {
        if ((rc = drop_published(c, name)) < 0)
            goto fail;
    } else {
        duckdb_prepared_statement ps;
        if ((rc = prep(c, "INSERT INTO _models VALUES ($1, $2::JSON, now()::TIMESTAMP)", &ps)) < 0)
            goto fail;
        char *text = json_dumps(spec, JSON_COMPACT);
        duckdb_bind_varchar(ps, 1, name);
        duckdb_bind_varchar(ps, 2, text);
        rc = exec_ps(c, ps);
        free(text);
        if (rc < 0)
            goto fail;
    }
    return whd__commit(c);
fail:
    whd__rollback(c);
    return rc;
}

/* ---- tests ---- */

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* Runs one test on the relation cand (quoted in candq); fills a result object. rc < 0 only
 * for a failure of the engine that is not the test's SQL (then the build fails). */
static int run_test(struct whd_conn *c, const struct wh_model *m, const char *candq,
                    const json_t *t, json_t *res)
{
    const char *type = jstr(t, "type");
    const char *col = jstr(t, "column");
    struct buf b, q;
    buf_init(&b);
    buf_init(&q);
    if (col)
        whd__quote_ident(&q, col);
    const char *cq = buf_cstr(&q);
    const char *param = NULL;
    char *param_owned = NULL;
    int rc = 0;
    if (strcmp(type, "unique") == 0) {
        buf_printf(&b,
                   "SELECT count(*) FROM (SELECT %s FROM %s WHERE %s IS NOT NULL GROUP BY %s "
                   "HAVING count(*) > 1)",
                   cq, candq, cq, cq);
    } else if (strcmp(type, "not_null") == 0) {
        buf_printf(&b, "SELECT count(*) FROM %s WHERE %s IS NULL", candq, cq);
    } else if (strcmp(type, "accepted_values") == 0) {
        param_owned = json_dumps(json_object_get(t, "values"), JSON_COMPACT);
        param = param_owned;
        buf_printf(&b,
                   "SELECT count(*) FROM %s WHERE %s IS NOT NULL AND NOT list_contains("
                   "from_json($1::VARCHAR, '[\"VARCHAR\"]'), CAST(%s AS VARCHAR))",
                   candq, cq, cq);
    } else if (strcmp(type, "relationships") == 0) {
        buf_printf(&b,
                   "SELECT count(*) FROM %s AS t WHERE t.%s IS NOT NULL AND NOT EXISTS "
                   "(SELECT 1 FROM ",
                   candq, cq);
        whd__quote_ident(&b, jstr(t, "to"));
        buf_puts(&b, " AS p WHERE p.");
        whd__quote_ident(&b, jstr(t, "field") ? jstr(t, "field") : "id");
        buf_printf(&b, " = t.%s)", cq);
    } else if (strcmp(type, "row_count") == 0) {
        buf_printf(&b, "SELECT count(*) FROM %s", candq);
    } else { /* sql: the model's name reads the new version */
        buf_puts(&b, "CREATE OR REPLACE TEMP VIEW ");
        whd__quote_ident(&b, m->name);
        buf_printf(&b, " AS SELECT * FROM %s", candq);
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_reset(&b);
        buf_printf(&b, "SELECT count(*) FROM (%s\n)", jstr(t, "sql"));
    }
    int64_t n = 0;
    duckdb_prepared_statement ps;
    int trc = prep(c, buf_cstr(&b), &ps);
    if (trc == 0) {
        if (param)
            duckdb_bind_varchar(ps, 1, param);
        trc = run_i64(c, ps, &n, NULL);
        duckdb_destroy_prepare(&ps);
    }
    if (strcmp(type, "sql") == 0) {
        buf_reset(&b);
        buf_puts(&b, "DROP VIEW IF EXISTS temp.main.");
        whd__quote_ident(&b, m->name);
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
    }
    if (trc == ERR_BUSY) {
        rc = trc;
        goto out;
    }
    bool failed;
    char msg[1200];
    if (trc < 0) {
        failed = true;
        snprintf(msg, sizeof(msg), "the test could not run: %s", c->err);
        n = 0;
    } else if (strcmp(type, "row_count") == 0) {
        json_t *jmin = json_object_get(t, "min"), *jmax = json_object_get(t, "max");
        failed = (jmin && n < json_integer_value(jmin)) || (jmax && n > json_integer_value(jmax));
        snprintf(msg, sizeof(msg), "%" PRId64 " rows", n);
        json_object_set_new(res, "rows", json_integer(n));
        n = failed ? 1 : 0;
    } else {
        failed = n > 0;
        if (strcmp(type, "unique") == 0)
            snprintf(msg, sizeof(msg), "%" PRId64 " values of %s occur more than once", n, col);
        else if (strcmp(type, "not_null") == 0)
            snprintf(msg, sizeof(msg), "%" PRId64 " rows have %s NULL", n, col);
        else if (strcmp(type, "accepted_values") == 0)
            snprintf(msg, sizeof(msg), "%" PRId64 " rows have a %s outside the accepted values", n,
                     col);
        else if (strcmp(type, "relationships") == 0)
            snprintf(msg, sizeof(msg), "%" PRId64 " rows have a %s not found in %s", n, col,
                     jstr(t, "to"));
        else
            snprintf(msg, sizeof(msg), "%" PRId64 " failing rows", n);
    }
    json_object_set_new(res, "status", json_string(failed ? "fail" : "pass"));
    json_object_set_new(res, "failures", json_integer(n));
    json_object_set_new(res, "message", failed ? json_string(msg) : json_null());
out:
    free(param_owned);
    buf_release(&b);
    buf_release(&q);
    return rc;
}

/* ---- builds ---- */

static int offset_of(struct whd_conn *c, const char *consumer, uint64_t *v)
{
    int64_t x;
    int rc =
        query_i64(c, "SELECT next_offset FROM _offsets WHERE consumer = $1", consumer, &x, NULL);
    *v = (uint64_t)x;
    return rc;
}

/* Creates temporary views events and changes over the rows loaded in [lo, hi). */
static int delta_views(struct whd_conn *c, uint64_t elo, uint64_t ehi, uint64_t clo, uint64_t chi)
{
    static const char *const tables[] = {"events", "changes"};
    uint64_t lo[] = {elo, clo}, hi[] = {ehi, chi};
    int rc = 0;
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        buf_reset(&b);
        buf_printf(&b, "CREATE TEMP VIEW %s AS SELECT * FROM ", tables[i]);
        if ((rc = put_published(c, &b, tables[i])) < 0)
            break;
        buf_printf(&b, " WHERE log_offset >= %" PRIu64 " AND log_offset < %" PRIu64, lo[i], hi[i]);
        rc = exec_buf(c, &b);
    }
    buf_release(&b);
    return rc;
}

static int drop_temps(struct whd_conn *c)
{
    static const char *const sql[] = {
        "DROP VIEW IF EXISTS temp.main.events",    "DROP VIEW IF EXISTS temp.main.changes",
        "DROP VIEW IF EXISTS temp.main." CAND,     "DROP TABLE IF EXISTS temp.main." KEYS,
        "DROP TABLE IF EXISTS temp.main." NEWROWS, "DROP TABLE IF EXISTS temp.main." DELTA,
    };
    for (size_t i = 0; i < ARRAY_LEN(sql); i++) {
        int rc = whd__exec(c, sql[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* An incremental build that merges (whd_merge.c): the model over only the new rows (DELTA),
 * each of its rows combined with the published row of the same grouping columns (NEWROWS,
 * with that row's rowid), and the candidate is the published rows but those, plus NEWROWS.
 * 1 when built, 0 when the model does not qualify (nothing left behind), negative on failure. */
static int merge_candidate(struct whd_conn *c, const struct wh_model *m, uint64_t elo, uint64_t ehi,
                           uint64_t clo, uint64_t chi, struct buf *candq)
{
    char kinds[256];
    size_t n;
    int rc = whd__merge_plan(c, m->sql, kinds, sizeof(kinds), &n);
    if (rc <= 0)
        return rc;
    struct buf b, on, rep;
    buf_init(&b);
    buf_init(&on);
    buf_init(&rep);
    if ((rc = delta_views(c, elo, ehi, clo, chi)) < 0)
        goto out;
    buf_puts(&b, "CREATE TEMP TABLE " DELTA " AS SELECT * FROM (");
    buf_puts(&b, m->sql);
    buf_puts(&b, "\n) WHERE ");
    whd__quote_ident(&b, m->unique_key);
    buf_puts(&b, " IS NOT NULL");
    if ((rc = exec_buf(c, &b)) < 0 || (rc = whd__exec(c, "DROP VIEW temp.main.events")) < 0 ||
        (rc = whd__exec(c, "DROP VIEW temp.main.changes")) < 0)
        goto out;
    duckdb_result res;
    if (duckdb_query(c->con,
                     "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                     "'temp' AND table_name = '" DELTA "' ORDER BY column_index",
                     &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, NULL);
        goto out;
    }
    bool ok = duckdb_row_count(&res) == n, key_grouped = false;
    const char *sep = "", *rsep = "";
    for (idx_t i = 0; ok && i < n; i++) {
        char *col = duckdb_value_varchar(&res, 0, i), *type = duckdb_value_varchar(&res, 1, i);
        struct buf q;
        buf_init(&q);
        whd__quote_ident(&q, col);
        const char *cq = buf_cstr(&q);
        ok = strcasecmp(col, "rowid") != 0 && strcasecmp(col, ROWID) != 0;
        if (kinds[i] == WHD_MERGE_GROUP) {
            bool is_key = strcmp(col, m->unique_key) == 0;
            key_grouped = key_grouped || is_key;
            buf_printf(&on, "%so.%s %s n.%s", sep, cq, is_key ? "=" : "IS NOT DISTINCT FROM", cq);
            sep = " AND ";
        } else {
            /* a float sum depends on the order of addition: only a re-aggregation equals a
             * full rebuild; least/greatest take scalar types */
            bool scalar = !strchr(type, '[') && strncmp(type, "STRUCT", 6) != 0 &&
                          strncmp(type, "MAP", 3) != 0 && strncmp(type, "UNION", 5) != 0;
            if (kinds[i] == WHD_MERGE_SUM)
                ok = ok && strcmp(type, "DOUBLE") != 0 && strcmp(type, "FLOAT") != 0 && scalar;
            else if (kinds[i] != WHD_MERGE_COUNT)
                ok = ok && scalar;
            buf_puts(&rep, rsep);
            rsep = ", ";
            if (kinds[i] == WHD_MERGE_COUNT)
                buf_printf(&rep, "coalesce(o.%s, 0) + n.%s", cq, cq);
            else if (kinds[i] == WHD_MERGE_SUM)
                buf_printf(&rep,
                           "CASE WHEN o.%s IS NULL THEN n.%s WHEN n.%s IS NULL THEN o.%s ELSE "
                           "o.%s + n.%s END",
                           cq, cq, cq, cq, cq, cq);
            else
                buf_printf(&rep, "%s(o.%s, n.%s)", kinds[i] == WHD_MERGE_MIN ? "least" : "greatest",
                           cq, cq);
            buf_printf(&rep, " AS %s", cq);
        }
        buf_release(&q);
        duckdb_free(col);
        duckdb_free(type);
    }
    duckdb_destroy_result(&res);
    if (!ok || !key_grouped)
        goto not_merged;
    buf_reset(&b);
    buf_printf(&b,
               "CREATE TEMP TABLE " NEWROWS " AS SELECT n.* REPLACE (%s), o.rowid AS " ROWID
               " FROM " DELTA " AS n LEFT JOIN ",
               buf_cstr(&rep));
    if ((rc = put_published(c, &b, m->name)) < 0)
        goto out;
    buf_printf(&b, " AS o ON %s", buf_cstr(&on));
    if ((rc = exec_buf(c, &b)) < 0)
        goto out;
    /* one published row per group at most; more (a table not built by this SQL) would have
     * been multiplied by the join: re-aggregate instead */
    int64_t joined, delta;
    if ((rc = query_i64(c, "SELECT count(*) FROM " NEWROWS, NULL, &joined, NULL)) < 0 ||
        (rc = query_i64(c, "SELECT count(*) FROM " DELTA, NULL, &delta, NULL)) < 0)
        goto out;
    if (joined != delta)
        goto not_merged;
    buf_reset(&b);
    buf_puts(&b, "CREATE TEMP VIEW " CAND " AS SELECT * FROM ");
    if ((rc = put_published(c, &b, m->name)) < 0)
        goto out;
    buf_puts(&b, " WHERE rowid NOT IN (SELECT " ROWID " FROM " NEWROWS " WHERE " ROWID
                 " IS NOT NULL) UNION ALL BY NAME SELECT * EXCLUDE (" ROWID ") FROM " NEWROWS);
    if ((rc = exec_buf(c, &b)) < 0)
        goto out;
    buf_puts(candq, "temp.main." CAND);
    rc = 1;
    goto out;
not_merged:
    if ((rc = whd__exec(c, "DROP TABLE IF EXISTS temp.main." NEWROWS)) == 0)
        rc = whd__exec(c, "DROP TABLE temp.main." DELTA);
out:
    buf_release(&b);
    buf_release(&on);
    buf_release(&rep);
    return rc;
}

/* Builds the candidate; *candq receives how tests name it. */
static int build_candidate(struct whd_conn *c, const struct wh_model *m, const char *mode,
                           const char *kind, uint64_t elo, uint64_t ehi, uint64_t clo, uint64_t chi,
                           struct buf *candq, bool *merged)
{
    struct buf b, k;
    buf_init(&b);
    buf_init(&k);
    int rc = 0;
    if (m->unique_key)
        whd__quote_ident(&k, m->unique_key);
    if (strcmp(mode, "view") == 0) {
        buf_printf(&b, "CREATE TEMP VIEW " CAND " AS %s\n", m->sql);
        rc = exec_buf(c, &b);
        buf_puts(candq, "temp.main." CAND);
    } else if (strcmp(mode, "full") == 0) {
        char build[300];
        snprintf(build, sizeof(build), BUILD_PREFIX "%s", m->name);
        buf_puts(&b, "DROP TABLE IF EXISTS ");
        if ((rc = put_published(c, &b, build)) < 0 || (rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_reset(&b);
        buf_puts(&b, "CREATE TABLE ");
        if ((rc = put_published(c, &b, build)) < 0)
            goto out;
        buf_printf(&b, " AS SELECT * FROM (%s\n)", m->sql);
        if (m->unique_key)
            buf_printf(&b, " WHERE %s IS NOT NULL", buf_cstr(&k));
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        rc = put_published(c, candq, build);
    } else { /* incremental */
        (void)kind;
        if ((rc = merge_candidate(c, m, elo, ehi, clo, chi, candq)) != 0) {
            *merged = rc > 0;
            rc = rc > 0 ? 0 : rc;
            goto out;
        }
        if ((rc = delta_views(c, elo, ehi, clo, chi)) < 0)
            goto out;
        buf_printf(&b,
                   "CREATE TEMP TABLE " KEYS " AS SELECT DISTINCT %s AS k FROM (%s\n) "
                   "WHERE %s IS NOT NULL",
                   buf_cstr(&k), m->sql, buf_cstr(&k));
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        if ((rc = whd__exec(c, "DROP VIEW temp.main.events")) < 0 ||
            (rc = whd__exec(c, "DROP VIEW temp.main.changes")) < 0)
            goto out;
        buf_reset(&b);
        buf_printf(&b,
                   "CREATE TEMP TABLE " NEWROWS " AS SELECT * FROM (%s\n) WHERE %s IN "
                   "(SELECT k FROM " KEYS ")",
                   m->sql, buf_cstr(&k));
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_reset(&b);
        buf_puts(&b, "CREATE TEMP VIEW " CAND " AS SELECT * FROM ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_printf(&b,
                   " WHERE %s NOT IN (SELECT k FROM " KEYS ") UNION ALL BY NAME "
                   "SELECT * FROM " NEWROWS,
                   buf_cstr(&k));
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_puts(candq, "temp.main." CAND);
    }
out:
    buf_release(&b);
    buf_release(&k);
    return rc;
}

static int publish(struct whd_conn *c, const struct wh_model *m, const char *mode, const char *kind,
                   bool merged)
{
    struct buf b;
    buf_init(&b);
    int rc = 0;
    if (strcmp(mode, "view") == 0) {
        if (kind && strcmp(kind, "table") == 0 && (rc = drop_published(c, m->name)) < 0)
            goto out;
        buf_puts(&b, "CREATE OR REPLACE VIEW ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_printf(&b, " AS %s\n", m->sql);
        rc = exec_buf(c, &b);
    } else if (strcmp(mode, "full") == 0) {
        if ((rc = drop_published(c, m->name)) < 0)
            goto out;
        char build[300];
        snprintf(build, sizeof(build), BUILD_PREFIX "%s", m->name);
        buf_puts(&b, "ALTER TABLE ");
        if ((rc = put_published(c, &b, build)) < 0)
            goto out;
        buf_puts(&b, " RENAME TO ");
        whd__quote_ident(&b, m->name);
        rc = exec_buf(c, &b);
    } else if (merged) {
        buf_puts(&b, "DELETE FROM ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_puts(&b,
                 " WHERE rowid IN (SELECT " ROWID " FROM " NEWROWS " WHERE " ROWID " IS NOT NULL)");
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_reset(&b);
        buf_puts(&b, "INSERT INTO ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_puts(&b, " BY NAME SELECT * EXCLUDE (" ROWID ") FROM " NEWROWS);
        rc = exec_buf(c, &b);
    } else {
        buf_puts(&b, "DELETE FROM ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_puts(&b, " WHERE ");
        whd__quote_ident(&b, m->unique_key);
        buf_puts(&b, " IN (SELECT k FROM " KEYS ")");
        if ((rc = exec_buf(c, &b)) < 0)
            goto out;
        buf_reset(&b);
        buf_puts(&b, "INSERT INTO ");
        if ((rc = put_published(c, &b, m->name)) < 0)
            goto out;
        buf_puts(&b, " BY NAME SELECT * FROM " NEWROWS);
        rc = exec_buf(c, &b);
    }
out:
    buf_release(&b);
    return rc;
}

static int store_state(struct whd_conn *c, const char *name, uint64_t e, uint64_t ch)
{
    int rc = exec_name(c, "DELETE FROM _model_state WHERE model = $1", name);
    if (rc < 0)
        return rc;
    duckdb_prepared_statement ps;
    if ((rc = prep(c, "INSERT INTO _model_state VALUES ($1, $2, $3, now()::TIMESTAMP)", &ps)) < 0)
        return rc;
    duckdb_bind_varchar(ps, 1, name);
    duckdb_bind_uint64(ps, 2, e);
    duckdb_bind_uint64(ps, 3, ch);
    return exec_ps(c, ps);
}

int whd__model_build(struct wh_conn *wc, const struct wh_model *m, const struct wh_model_opts *o,
                     json_t **out)
{
    struct whd_conn *c = whd__conn(wc);
    json_t *r = json_object(), *tests = json_array();
    struct buf candq, b;
    buf_init(&candq);
    buf_init(&b);
    const char *status = "success", *mode = "full", *kind = NULL;
    char msg[1100] = "";
    uint64_t elo = 0, ehi = 0, clo = 0, chi = 0;
    int64_t rows = 0;
    bool merged = false;
    json_object_set_new(r, "tests", tests);
    int rc = whd__begin(c);
    if (rc < 0)
        goto engine;
    int64_t se = 0, sc = 0;
    bool have_state = false;
    if ((rc = relation_kind(c, m->name, &kind)) < 0 ||
        (rc = query_i64(c, "SELECT events_offset FROM _model_state WHERE model = $1", m->name, &se,
                        &have_state)) < 0 ||
        (rc = query_i64(c, "SELECT changes_offset FROM _model_state WHERE model = $1", m->name, &sc,
                        NULL)) < 0 ||
        (rc = offset_of(c, "warehouse-events", &ehi)) < 0 ||
        (rc = offset_of(c, "warehouse-changes", &chi)) < 0 || (rc = drop_temps(c)) < 0)
        goto engine;
    if (strcmp(m->materialized, "view") == 0)
        mode = "view";
    else if (strcmp(m->materialized, "incremental") == 0 && kind && strcmp(kind, "table") == 0 &&
             have_state && !(o && o->full_refresh) && (uint64_t)se <= ehi && (uint64_t)sc <= chi) {
        mode = "incremental";
        elo = (uint64_t)se;
        clo = (uint64_t)sc;
    }
    rc = build_candidate(c, m, mode, kind, elo, ehi, clo, chi, &candq, &merged);
    if (rc == ERR_INVALID) {
        status = "broken";
        snprintf(msg, sizeof(msg), "%s", c->err);
        goto rollback;
    }
    if (rc < 0)
        goto engine;
    bool fail_error = false, fail_warn = false;
    size_t i;
    const json_t *t;
    json_array_foreach(m->tests, i, t)
    {
        json_t *tr = json_pack("{s:s?,s:s?,s:s?,s:s}", "name", jstr(t, "name"), "type",
                               jstr(t, "type"), "column", jstr(t, "column"), "severity",
                               jstr(t, "severity") ? jstr(t, "severity") : "error");
        json_array_append_new(tests, tr);
        if ((rc = run_test(c, m, buf_cstr(&candq), t, tr)) < 0)
            goto engine;
        if (strcmp(jstr(tr, "status"), "fail") == 0) {
            if (strcmp(jstr(tr, "severity"), "warn") == 0)
                fail_warn = true;
            else
                fail_error = true;
        }
    }
    if (fail_error) {
        status = "failed";
        snprintf(msg, sizeof(msg), "a test failed: the published version was kept");
        goto rollback;
    }
    if ((rc = publish(c, m, mode, kind, merged)) < 0 || (rc = drop_temps(c)) < 0 ||
        (rc = store_state(c, m->name, ehi, chi)) < 0)
        goto engine;
    /* the published relation's rows: a table counts them from its row groups, where the
     * candidate of an incremental build would run its anti-join again */
    buf_puts(&b, "SELECT count(*) FROM ");
    if ((rc = put_published(c, &b, m->name)) < 0 ||
        (rc = query_i64(c, buf_cstr(&b), NULL, &rows, NULL)) < 0)
        goto engine;
    if ((rc = whd__commit(c)) < 0)
        goto engine;
    if (fail_warn) {
        status = "warn";
        snprintf(msg, sizeof(msg), "a test of severity warn failed");
    }
    goto done;
engine:
    if (rc == ERR_INVALID) {
        status = "broken";
        snprintf(msg, sizeof(msg), "%s", c->err);
    } else {
        status = "error";
        snprintf(msg, sizeof(msg), "%s", c->err);
    }
rollback:
    whd__rollback(c);
    if (rc != ERR_BUSY)
        rc = 0;
done:
    json_object_set_new(r, "status", json_string(status));
    json_object_set_new(r, "mode", json_string(mode));
    if (strcmp(mode, "incremental") == 0)
        json_object_set_new(r, "merge", json_boolean(merged));
    json_object_set_new(r, "rows", json_integer(rows));
    json_object_set_new(r, "eventsFrom", json_integer((json_int_t)elo));
    json_object_set_new(r, "eventsTo", json_integer((json_int_t)ehi));
    json_object_set_new(r, "changesFrom", json_integer((json_int_t)clo));
    json_object_set_new(r, "changesTo", json_integer((json_int_t)chi));
    json_object_set_new(r, "message", msg[0] ? json_string(msg) : json_null());
    *out = r;
    buf_release(&candq);
    buf_release(&b);
    return rc;
}

/* ---- run records ---- */

static void bind_json(duckdb_prepared_statement ps, idx_t i, const json_t *v)
{
    if (json_is_string(v))
        duckdb_bind_varchar(ps, i, json_string_value(v));
    else if (json_is_integer(v))
        duckdb_bind_int64(ps, i, json_integer_value(v));
    else if (json_is_real(v))
        duckdb_bind_double(ps, i, json_real_value(v));
    else if (json_is_object(v) || json_is_array(v)) {
        char *s = json_dumps(v, JSON_COMPACT);
        duckdb_bind_varchar(ps, i, s);
        free(s);
    } else
        duckdb_bind_null(ps, i);
}

static int insert_row(struct whd_conn *c, const char *sql, const json_t *o, const char *const *keys,
                      size_t n)
{
    duckdb_prepared_statement ps;
    int rc = prep(c, sql, &ps);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        bind_json(ps, i + 1, json_object_get(o, keys[i]));
    return exec_ps(c, ps);
}

int whd__model_record(struct wh_conn *wc, const json_t *run)
{
    static const char *const run_keys[] = {
        "id",   "model",      "trigger",  "status",      "mode",      "startedAt", "finishedAt",
        "rows", "eventsFrom", "eventsTo", "changesFrom", "changesTo", "message",   "sync"};
    static const char *const test_keys[] = {"runId",    "model",  "name",     "type",   "column",
                                            "severity", "status", "failures", "message"};
    struct whd_conn *c = whd__conn(wc);
    const char *id = jstr(run, "id");
    if (!id)
        return whd__fail(c, ERR_INVALID, "a run needs an id");
    int rc = whd__begin(c);
    if (rc < 0)
        return rc;
    if ((rc = exec_name(c, "DELETE FROM _model_runs WHERE id = $1", id)) < 0)
        goto fail;
    if ((rc = insert_row(c,
                         "INSERT INTO _model_runs VALUES ($1, $2, $3, $4, $5, "
                         "make_timestamp($6::BIGINT), make_timestamp($7::BIGINT), $8, $9, $10, "
                         "$11, $12, $13, $14::JSON)",
                         run, run_keys, ARRAY_LEN(run_keys))) < 0)
        goto fail;
    const json_t *tests = json_object_get(run, "tests");
    if (json_is_array(tests)) {
        if ((rc = exec_name(c, "DELETE FROM _model_tests WHERE run_id = $1", id)) < 0)
            goto fail;
        size_t i;
        const json_t *t;
        json_array_foreach(tests, i, t)
        {
            json_t *row = json_deep_copy(t);
            json_object_set_new(row, "runId", json_string(id));
            json_object_set(row, "model", json_object_get(run, "model"));
            rc = insert_row(c,
                            "INSERT INTO _model_tests VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            row, test_keys, ARRAY_LEN(test_keys));
            json_decref(row);
            if (rc < 0)
                goto fail;
        }
    }
    return whd__commit(c);
fail:
    whd__rollback(c);
    return rc;
}
