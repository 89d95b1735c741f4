/* def.c - model definitions: validation when saved, storage in the warehouse, the dependency
 * graph (order, downstream sets, cycles) and the run history. */
#include <string.h>

#include "models/models_int.h"

/* ---- reading the warehouse ---- */

/* Runs a reading query and turns its rows into objects keyed by column name. */
static int query_objects(struct wh_conn *c, const char *sql, json_t *params, json_t **out)
{
    struct wh_query q = {.sql = sql,
                         .params = params,
                         .timeout_ms = 30000,
                         .max_rows = 100000,
                         .max_bytes = 256u << 20};
    struct wh_result res;
    wh_result_init(&res);
    *out = NULL;
    int rc = wh_query(c, &q, &res);
    if (rc < 0) {
        wh_result_release(&res);
        return rc;
    }
    json_t *arr = json_array();
    size_t i, j;
    json_t *row, *v;
    json_array_foreach(res.rows, i, row)
    {
        json_t *o = json_object();
        json_array_foreach(row, j, v)
        {
            const char *name =
                json_string_value(json_object_get(json_array_get(res.columns, j), "name"));
            json_object_set(o, name, v);
        }
        json_array_append_new(arr, o);
    }
    wh_result_release(&res);
    *out = arr;
    return 0;
}

int models__load(struct wh_conn *c, json_t **defs_out)
{
    json_t *rows;
    *defs_out = NULL;
    int rc = query_objects(c, "SELECT name, spec FROM _models ORDER BY name", NULL, &rows);
    if (rc < 0)
        return rc;
    json_t *defs = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        json_t *spec = json_object_get(r, "spec");
        if (name && json_is_object(spec))
            json_object_set(defs, name, spec);
    }
    json_decref(rows);
    *defs_out = defs;
    return 0;
}

/* Every relation of the warehouse's main schema (tables and views), as a set. */
static int load_relations(struct wh_conn *c, json_t **out)
{
    json_t *rows;
    int rc = query_objects(c,
                           "SELECT table_name AS name FROM duckdb_tables() WHERE NOT temporary "
                           "AND schema_name = 'main' UNION ALL SELECT view_name FROM "
                           "duckdb_views() WHERE NOT temporary AND NOT internal AND "
                           "schema_name = 'main'",
                           NULL, &rows);
    if (rc < 0)
        return rc;
    json_t *set = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *n = json_string_value(json_object_get(r, "name"));
        if (n && strncmp(n, "__tandem", 8) != 0)
            json_object_set_new(set, n, json_true());
    }
    json_decref(rows);
    *out = set;
    return 0;
}

/* ---- the graph ---- */

const json_t *models__deps(const json_t *spec)
{
    return json_object_get(spec, "dependsOn");
}

/* 0 unvisited, 1 on the path, 2 done. Appends name after its dependencies; on a cycle fills
 * path (names joined by " -> ") and returns -1. */
static int visit(const json_t *defs, const char *name, json_t *state, json_t *order, json_t *stack,
                 char *path, size_t path_len)
{
    json_int_t st = json_integer_value(json_object_get(state, name));
    if (st == 2)
        return 0;
    if (st == 1) {
        size_t i, n = 0;
        json_t *v;
        bool on = false;
        path[0] = 0;
        json_array_foreach(stack, i, v)
        {
            if (!on && strcmp(json_string_value(v), name) != 0)
                continue;
            on = true;
            n += (size_t)snprintf(path + n, n < path_len ? path_len - n : 0, "%s -> ",
                                  json_string_value(v));
        }
        snprintf(path + (n < path_len ? n : path_len - 1), n < path_len ? path_len - n : 1, "%s",
                 name);
        return -1;
    }
    json_object_set_new(state, name, json_integer(1));
    json_array_append_new(stack, json_string(name));
    size_t i;
    json_t *d;
    json_array_foreach(models__deps(json_object_get(defs, name)), i, d)
    {
        const char *dn = json_string_value(d);
        if (dn && json_object_get(defs, dn) &&
            visit(defs, dn, state, order, stack, path, path_len) < 0)
            return -1;
    }
    json_array_remove(stack, json_array_size(stack) - 1);
    json_object_set_new(state, name, json_integer(2));
    json_array_append_new(order, json_string(name));
    return 0;
}

/* Dependency order; -1 with the cycle in path. */
static int order_or_cycle(const json_t *defs, json_t **order_out, char *path, size_t path_len)
{
    json_t *state = json_object(), *order = json_array(), *stack = json_array();
    const char *name;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)defs, name, v)
    {
        if ((rc = visit(defs, name, state, order, stack, path, path_len)) < 0)
            break;
    }
    json_decref(state);
    json_decref(stack);
    if (rc < 0) {
        json_decref(order);
        order = NULL;
    }
    *order_out = order;
    return rc;
}

json_t *models__order(const json_t *defs)
{
    json_t *order;
    char path[512];
    if (order_or_cycle(defs, &order, path, sizeof(path)) < 0)
        return json_array(); /* stored definitions never hold a cycle (refused when saved) */
    return order;
}

json_t *models__downstream(const json_t *defs, const json_t *names)
{
    json_t *set = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) json_object_set_new(set, json_string_value(v), json_true());
    bool grew = true;
    while (grew) {
        grew = false;
        const char *name;
        json_t *spec;
        json_object_foreach((json_t *)defs, name, spec)
        {
            if (json_object_get(set, name))
                continue;
            json_array_foreach(models__deps(spec), i, v)
            {
                if (json_object_get(set, json_string_value(v))) {
                    json_object_set_new(set, name, json_true());
                    grew = true;
                    break;
                }
            }
        }
    }
    return set;
}

static void reads_log(const json_t *defs, const char *name, bool *ev, bool *ch, int depth)
{
    if (depth > MODELS_MAX_MODELS)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(models__deps(json_object_get(defs, name)), i, v)
    {
        const char *d = json_string_value(v);
        if (strcmp(d, "events") == 0)
            *ev = true;
        else if (strcmp(d, "changes") == 0)
            *ch = true;
        else if (json_object_get(defs, d))
            reads_log(defs, d, ev, ch, depth + 1);
    }
}

bool models__reads_log(const json_t *defs, const char *name, bool *events, bool *changes)
{
    *events = *changes = false;
    reads_log(defs, name, events, changes, 0);
    return *events || *changes;
}

/* ---- validation ---- */

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MODELS_NAME_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return strncmp(s, "app_", 4) != 0;
}

static void add_error(json_t *errors, const char *field, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static void add_error(json_t *errors, const char *field, const char *code, const char *fmt, ...)
{
    if (json_object_get(errors, field))
        return;
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_set_new(errors, field, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

static bool has_column(const json_t *columns, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(columns, i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return true;
    }
    return false;
}

static bool known_source(const json_t *defs, const json_t *rels, const char *name)
{
    return json_object_get(defs, name) || json_object_get(rels, name);
}

/* Checks the tests of spec (normalised into tests_out) except their columns; adds the
 * relations they read to deps. */
static void check_tests(struct wh_conn *c, const char *self, const json_t *tests,
                        const json_t *defs, const json_t *rels, json_t *deps, json_t *errors,
                        json_t **tests_out)
{
    static const char *const types[] = {"unique",        "not_null",  "accepted_values",
                                        "relationships", "row_count", "sql"};
    json_t *norm = json_array();
    *tests_out = norm;
    if (!tests || json_is_null(tests))
        return;
    if (!json_is_array(tests) || json_array_size(tests) > MODELS_MAX_TESTS) {
        add_error(errors, "tests", "validation_invalid_value",
                  "tests must be an array of at most %d tests", MODELS_MAX_TESTS);
        return;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tests, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        bool ok = false;
        for (size_t k = 0; type && k < ARRAY_LEN(types); k++)
            ok = ok || strcmp(type, types[k]) == 0;
        if (!json_is_object(t) || !ok) {
            add_error(errors, "tests", "validation_invalid_value",
                      "test %zu: type must be one of unique, not_null, accepted_values, "
                      "relationships, row_count, sql",
                      i);
            return;
        }
        json_t *n = json_pack("{s:s}", "type", type);
        json_array_append_new(norm, n);
        const char *sev = json_string_value(json_object_get(t, "severity"));
        if (sev && strcmp(sev, "error") != 0 && strcmp(sev, "warn") != 0) {
            add_error(errors, "tests", "validation_invalid_value",
                      "test %zu: severity must be error or warn", i);
            return;
        }
        json_object_set_new(n, "severity", json_string(sev ? sev : "error"));
        const char *col = json_string_value(json_object_get(t, "column"));
        bool needs_col = strcmp(type, "row_count") != 0 && strcmp(type, "sql") != 0;
        if (needs_col) {
            if (!col || !*col || strlen(col) > 255) {
                add_error(errors, "tests", "validation_required",
                          "test %zu (%s): column is required", i, type);
                return;
            }
            json_object_set_new(n, "column", json_string(col));
        }
        if (strcmp(type, "accepted_values") == 0) {
            json_t *vals = json_object_get(t, "values");
            bool good =
                json_is_array(vals) && json_array_size(vals) > 0 && json_array_size(vals) <= 10000;
            size_t k;
            json_t *v;
            json_array_foreach(vals, k, v) good =
                good && (json_is_string(v) || json_is_number(v) || json_is_boolean(v));
            if (!good) {
                add_error(errors, "tests", "validation_invalid_value",
                          "test %zu (accepted_values): values must be a non-empty array of "
                          "strings, numbers or booleans",
                          i);
                return;
            }
            /* compared as text, as the column is cast to VARCHAR */
            json_t *texts = json_array();
            json_array_foreach(vals, k, v)
            {
                if (json_is_string(v))
                    json_array_append(texts, v);
                else {
                    char *s = json_dumps(v, JSON_ENCODE_ANY);
                    json_array_append_new(texts, json_string(s));
                    free(s);
                }
            }
            json_object_set_new(n, "values", texts);
        } else if (strcmp(type, "relationships") == 0) {
            const char *to = json_string_value(json_object_get(t, "to"));
            const char *field = json_string_value(json_object_get(t, "field"));
            if (!to || !known_source(defs, rels, to) || strcmp(to, self) == 0) {
                add_error(errors, "tests", "validation_invalid_value",
                          "test %zu (relationships): unknown table or model: %s", i,
                          to ? to : "(none)");
                return;
            }
            json_object_set_new(n, "to", json_string(to));
            json_object_set_new(n, "field", json_string(field && *field ? field : "id"));
            json_object_set_new(deps, to, json_true());
        } else if (strcmp(type, "row_count") == 0) {
            json_t *mn = json_object_get(t, "min"), *mx = json_object_get(t, "max");
            if ((mn && !json_is_integer(mn)) || (mx && !json_is_integer(mx)) || (!mn && !mx)) {
                add_error(errors, "tests", "validation_invalid_value",
                          "test %zu (row_count): min and/or max must be integers", i);
                return;
            }
            if (mn)
                json_object_set(n, "min", mn);
            if (mx)
                json_object_set(n, "max", mx);
        } else if (strcmp(type, "sql") == 0) {
            const char *sql = json_string_value(json_object_get(t, "sql"));
            json_t *refs = NULL;
            if (!sql || !*sql || strlen(sql) > MODELS_MAX_SQL) {
                add_error(errors, "tests", "validation_required", "test %zu (sql): sql is required",
                          i);
                return;
            }
            if (wh_model_parse(c, sql, &refs) < 0) {
                add_error(errors, "tests", "validation_invalid_sql", "test %zu (sql): %s", i,
                          wh_errmsg(c));
                return;
            }
            size_t k;
            json_t *r;
            json_array_foreach(refs, k, r)
            {
                const char *rn = json_string_value(r);
                if (strcmp(rn, self) != 0 && !known_source(defs, rels, rn)) {
                    add_error(errors, "tests", "validation_invalid_sql",
                              "test %zu (sql): unknown table or model: %s", i, rn);
                    json_decref(refs);
                    return;
                }
                if (strcmp(rn, self) != 0)
                    json_object_set_new(deps, rn, json_true());
            }
            json_decref(refs);
            json_object_set_new(n, "sql", json_string(sql));
        }
        const char *tname = json_string_value(json_object_get(t, "name"));
        char def_name[600];
        if (!tname || !*tname) {
            snprintf(def_name, sizeof(def_name), "%s%s%s", type, col && needs_col ? "_" : "",
                     col && needs_col ? col : "");
            tname = def_name;
        }
        json_object_set_new(n, "name", json_string(tname));
    }
}

static void check_columns_of_tests(const json_t *tests, const json_t *columns, json_t *errors)
{
    size_t i;
    json_t *t;
    json_array_foreach(tests, i, t)
    {
        const char *col = json_string_value(json_object_get(t, "column"));
        if (col && !has_column(columns, col)) {
            add_error(errors, "tests", "validation_unknown_column",
                      "test %zu (%s): the model has no column %s", i,
                      json_string_value(json_object_get(t, "type")), col);
            return;
        }
    }
}

/* Models that neither exist as a relation nor are name, that name reads (transitively), in
 * dependency order: {"model":"sql"}. */
static json_t *unbuilt_of(const json_t *defs, const json_t *rels, const char *name)
{
    json_t *order = models__order(defs);
    json_t *need = json_object();
    /* walk backwards from name: everything it reads */
    json_t *todo = json_array();
    json_array_append_new(todo, json_string(name));
    while (json_array_size(todo) > 0) {
        const char *n = json_string_value(json_array_get(todo, json_array_size(todo) - 1));
        json_t *deps = (json_t *)models__deps(json_object_get(defs, n));
        json_incref(deps);
        json_array_remove(todo, json_array_size(todo) - 1);
        size_t i;
        json_t *d;
        json_array_foreach(deps, i, d)
        {
            const char *dn = json_string_value(d);
            if (json_object_get(defs, dn) && !json_object_get(need, dn)) {
                json_object_set_new(need, dn, json_true());
                json_array_append(todo, d);
            }
        }
        json_decref(deps);
    }
    json_t *out = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(order, i, v)
    {
        const char *n = json_string_value(v);
        if (strcmp(n, name) != 0 && json_object_get(need, n) && !json_object_get(rels, n))
            json_object_set(out, n, json_object_get(json_object_get(defs, n), "sql"));
    }
    json_decref(order);
    json_decref(need);
    json_decref(todo);
    return out;
}

int models_save(struct store *st, struct wh_conn *c, const char *name, const json_t *body,
                json_t **errors_out, json_t **out)
{
    json_t *errors = json_object(), *defs = NULL, *rels = NULL, *spec = json_object();
    json_t *refs = NULL, *deps = json_object(), *tests = NULL, *columns = NULL;
    int rc;
    *errors_out = NULL;
    *out = NULL;
    const char *bname = json_string_value(json_object_get(body, "name"));
    const char *nm = name ? name : bname;
    if (name && bname && strcmp(name, bname) != 0) {
        add_error(errors, "name", "validation_invalid_value", "a model cannot be renamed");
        goto invalid;
    }
    if (!valid_name(nm)) {
        add_error(errors, "name", "validation_invalid_name",
                  "name must be 1-%d characters of a-z, 0-9 and _, start with a letter, and "
                  "not start with app_",
                  MODELS_NAME_MAX);
        goto invalid;
    }
    if ((rc = models__load(c, &defs)) < 0 || (rc = load_relations(c, &rels)) < 0)
        goto out;
    json_t *old = json_object_get(defs, nm);
    if (!name && old) {
        rc = ERR_CONFLICT;
        goto out;
    }
    if (name && !old) {
        rc = ERR_NOTFOUND;
        goto out;
    }
    if (!old && json_object_get(rels, nm)) {
        rc = ERR_CONFLICT;
        goto out;
    }
    if (!old && json_object_size(defs) >= MODELS_MAX_MODELS) {
        add_error(errors, "name", "validation_limit", "at most %d models", MODELS_MAX_MODELS);
        goto invalid;
    }
    json_object_set_new(spec, "name", json_string(nm));
    const char *desc = json_string_value(json_object_get(body, "description"));
    json_object_set_new(spec, "description", json_string(desc ? desc : ""));
    const char *sql = json_string_value(json_object_get(body, "sql"));
    if (!sql || !*sql || strlen(sql) > MODELS_MAX_SQL) {
        add_error(errors, "sql", "validation_required", "sql must be a SELECT of at most %d bytes",
                  MODELS_MAX_SQL);
        goto invalid;
    }
    json_object_set_new(spec, "sql", json_string(sql));
    const char *mat = json_string_value(json_object_get(body, "materialized"));
    if (!mat)
        mat = "table";
    if (strcmp(mat, "view") != 0 && strcmp(mat, "table") != 0 && strcmp(mat, "incremental") != 0)
        add_error(errors, "materialized", "validation_invalid_value",
                  "materialized must be view, table or incremental");
    json_object_set_new(spec, "materialized", json_string(mat));
    const char *key = json_string_value(json_object_get(body, "uniqueKey"));
    if (strcmp(mat, "incremental") == 0 && (!key || !*key))
        add_error(errors, "uniqueKey", "validation_required",
                  "an incremental model needs a uniqueKey column");
    json_object_set_new(spec, "uniqueKey", key && *key ? json_string(key) : json_null());
    if (wh_model_parse(c, sql, &refs) < 0) {
        add_error(errors, "sql", "validation_invalid_sql", "%s", wh_errmsg(c));
        goto invalid;
    }
    size_t i;
    json_t *r;
    json_array_foreach(refs, i, r)
    {
        const char *rn = json_string_value(r);
        if (strcmp(rn, nm) == 0) {
            add_error(errors, "sql", "validation_cycle", "the model reads itself (%s)", nm);
            goto invalid;
        }
        if (!known_source(defs, rels, rn)) {
            add_error(errors, "sql", "validation_unknown_table", "unknown table or model: %s", rn);
            goto invalid;
        }
        json_object_set_new(deps, rn, json_true());
    }
    check_tests(c, nm, json_object_get(body, "tests"), defs, rels, deps, errors, &tests);
    if (json_object_size(errors))
        goto invalid;
    json_object_set(spec, "tests", tests);
    json_t *dep_arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(deps, k, v) json_array_append_new(dep_arr, json_string(k));
    json_object_set_new(spec, "dependsOn", dep_arr);
    /* cycles, with this definition in place */
    json_t *next = json_deep_copy(defs);
    json_object_set(next, nm, spec);
    json_t *order;
    char path[512];
    if (order_or_cycle(next, &order, path, sizeof(path)) < 0) {
        add_error(errors, "sql", "validation_cycle", "the models would read each other: %s", path);
        json_decref(next);
        goto invalid;
    }
    json_decref(order);
    json_t *unbuilt = unbuilt_of(next, rels, nm);
    json_decref(next);
    rc = wh_model_columns(c, sql, unbuilt, &columns);
    json_decref(unbuilt);
    if (rc == ERR_INVALID) {
        add_error(errors, "sql", "validation_invalid_sql", "the model does not bind: %s",
                  wh_errmsg(c));
        goto invalid;
    }
    if (rc < 0)
        goto out;
    json_object_set(spec, "columns", columns);
    if (key && *key && !has_column(columns, key))
        add_error(errors, "uniqueKey", "validation_unknown_column", "the model has no column %s",
                  key);
    check_columns_of_tests(tests, columns, errors);
    json_t *sched = json_object_get(body, "schedule");
    if (sched && !json_is_null(sched) &&
        (!json_is_string(sched) || models_cron_check(json_string_value(sched)) < 0))
        add_error(errors, "schedule", "validation_invalid_value",
                  "schedule must be a cron expression of five fields (minute hour day month "
                  "weekday)");
    json_object_set(spec, "schedule", json_is_string(sched) ? sched : json_null());
    json_t *after = json_object_get(body, "afterRecords");
    if (after && !json_is_null(after) && (!json_is_integer(after) || json_integer_value(after) < 0))
        add_error(errors, "afterRecords", "validation_invalid_value",
                  "afterRecords must be a non-negative integer");
    json_object_set_new(spec, "afterRecords",
                        json_integer(json_is_integer(after) ? json_integer_value(after) : 0));
    json_t *lag = json_object_get(body, "maxLagSeconds");
    if (lag && !json_is_null(lag) && (!json_is_number(lag) || json_number_value(lag) < 0))
        add_error(errors, "maxLagSeconds", "validation_invalid_value",
                  "maxLagSeconds must be a non-negative number");
    json_object_set_new(spec, "maxLagSeconds",
                        json_real(json_is_number(lag) ? json_number_value(lag) : 0));
    json_t *sync = json_object_get(body, "sync");
    if (sync && !json_is_null(sync)) {
        char why[600];
        if (!json_is_object(sync))
            add_error(errors, "sync", "validation_invalid_value", "sync must be an object");
        else if (models__sync_check(st, sync, columns, why, sizeof(why)) < 0)
            add_error(errors, "sync", "validation_invalid_value", "%s", why);
    }
    if (json_object_size(errors))
        goto invalid;
    json_object_set(spec, "sync", sync && json_is_object(sync) ? sync : json_null());
    bool reset =
        !old || !json_equal(json_object_get(old, "sql"), json_object_get(spec, "sql")) ||
        !json_equal(json_object_get(old, "materialized"), json_object_get(spec, "materialized")) ||
        !json_equal(json_object_get(old, "uniqueKey"), json_object_get(spec, "uniqueKey"));
    if ((rc = wh_model_define(c, nm, spec, reset)) < 0)
        goto out;
    *out = json_incref(spec);
    rc = 0;
    goto out;
invalid:
    rc = ERR_INVALID;
    *errors_out = json_incref(errors);
out:
    json_decref(errors);
    json_decref(defs);
    json_decref(rels);
    json_decref(spec);
    json_decref(refs);
    json_decref(deps);
    json_decref(tests);
    json_decref(columns);
    return rc;
}

/* ---- reading definitions and runs ---- */

/* _model_runs as the API shows runs */
#define RUN_COLUMNS                                                                                \
    "id, model, \"trigger\", status, mode, started_at AS \"startedAt\", "                          \
    "finished_at AS \"finishedAt\", \"rows\", events_from AS \"eventsFrom\", "                     \
    "events_to AS \"eventsTo\", changes_from AS \"changesFrom\", changes_to AS \"changesTo\", "    \
    "message, sync"

static json_t *last_runs(struct wh_conn *c)
{
    json_t *rows = NULL;
    if (query_objects(c,
                      "SELECT " RUN_COLUMNS
                      ", (SELECT count(*) FROM _model_tests t WHERE t.run_id = "
                      "r.id) AS \"testsRun\", (SELECT count(*) FROM _model_tests t WHERE "
                      "t.run_id = r.id AND t.status = 'fail') AS \"testsFailed\" FROM "
                      "_model_runs r QUALIFY row_number() OVER (PARTITION BY model ORDER BY "
                      "started_at DESC) = 1",
                      NULL, &rows) < 0)
        return json_object();
    json_t *by = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *mname = json_string_value(json_object_get(r, "model"));
        if (mname)
            json_object_set(by, mname, r);
    }
    json_decref(rows);
    return by;
}

int models_list(struct wh_conn *c, json_t **out)
{
    json_t *defs;
    *out = NULL;
    int rc = models__load(c, &defs);
    if (rc < 0)
        return rc;
    json_t *last = last_runs(c), *arr = json_array();
    const char *name;
    json_t *spec;
    json_object_foreach(defs, name, spec)
    {
        json_t *o = json_deep_copy(spec);
        json_t *lr = json_object_get(last, name);
        json_object_set(o, "lastRun", lr ? lr : json_null());
        json_array_append_new(arr, o);
    }
    json_decref(last);
    json_decref(defs);
    *out = arr;
    return 0;
}

int models_get(struct wh_conn *c, const char *name, json_t **out)
{
    json_t *all;
    *out = NULL;
    int rc = models_list(c, &all);
    if (rc < 0)
        return rc;
    size_t i;
    json_t *o;
    rc = ERR_NOTFOUND;
    json_array_foreach(all, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0) {
            *out = json_incref(o);
            rc = 0;
            break;
        }
    }
    json_decref(all);
    return rc;
}

int models_delete(struct wh_conn *c, const char *name, char **why_out)
{
    json_t *defs;
    *why_out = NULL;
    int rc = models__load(c, &defs);
    if (rc < 0)
        return rc;
    if (!json_object_get(defs, name)) {
        json_decref(defs);
        return ERR_NOTFOUND;
    }
    const char *other;
    json_t *spec;
    json_object_foreach(defs, other, spec)
    {
        size_t i;
        json_t *d;
        json_array_foreach(models__deps(spec), i, d)
        {
            if (strcmp(other, name) != 0 && strcmp(json_string_value(d), name) == 0) {
                char msg[300];
                snprintf(msg, sizeof(msg), "the model %s reads %s", other, name);
                *why_out = xstrdup(msg);
                json_decref(defs);
                return ERR_CONFLICT;
            }
        }
    }
    json_decref(defs);
    return wh_model_define(c, name, NULL, true);
}

int models_runs(struct wh_conn *c, const char *name, int64_t limit, json_t **out)
{
    json_t *runs = NULL, *tests = NULL;
    *out = NULL;
    json_t *p = json_pack("[s,I]", name, (json_int_t)limit);
    int rc = query_objects(c,
                           "SELECT " RUN_COLUMNS " FROM _model_runs WHERE model = $1 "
                           "ORDER BY started_at DESC, id LIMIT $2",
                           p, &runs);
    if (rc == 0)
        rc = query_objects(c,
                           "SELECT run_id, test AS name, type, \"column\", severity, status, "
                           "failures, message FROM _model_tests WHERE model = $1 AND run_id IN "
                           "(SELECT id FROM _model_runs WHERE model = $1 "
                           "ORDER BY started_at DESC, id LIMIT $2)",
                           p, &tests);
    json_decref(p);
    if (rc < 0) {
        json_decref(runs);
        return rc;
    }
    size_t i, j;
    json_t *r, *t;
    json_array_foreach(runs, i, r)
    {
        json_t *mine = json_array();
        json_array_foreach(tests, j, t)
        {
            if (json_equal(json_object_get(t, "run_id"), json_object_get(r, "id"))) {
                json_t *x = json_deep_copy(t);
                json_object_del(x, "run_id");
                json_array_append_new(mine, x);
            }
        }
        json_object_set_new(r, "tests", mine);
    }
    json_decref(tests);
    *out = runs;
    return 0;
}

int models_published_run(struct wh_conn *c, const char *name, json_t **out)
{
    json_t *runs = NULL, *p = json_pack("[s]", name);
    *out = NULL;
    int rc = query_objects(c,
                           "SELECT id, finished_at AS \"finishedAt\", \"rows\" FROM _model_runs "
                           "WHERE model = $1 AND status IN ('success', 'warn', "
                           "'needs_confirmation', 'sync_failed') ORDER BY finished_at DESC, id "
                           "LIMIT 1",
                           p, &runs);
    json_decref(p);
    if (rc < 0)
        return rc;
    if (json_array_size(runs) == 0)
        rc = ERR_NOTFOUND;
    else
        *out = json_incref(json_array_get(runs, 0));
    json_decref(runs);
    return rc;
}
