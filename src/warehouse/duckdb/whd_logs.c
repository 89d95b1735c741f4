/* whd_logs.c - the request logs in DuckDB (table `requests`, docs/operations.md "Request
 * logs"): loading them from the log, PocketBase's list / view / stats reads and retention.
 *
 * The reads take PocketBase's filter and sort over the log model's fields (id, created, level,
 * message, data and data.<path>), compiled by the filter module in its DuckDB dialect against
 * a fixed description of the table: the SQL text holds only quoted column names and `?`, every
 * value is bound. They run through the SQL API's query path (its timeout and caps). */
#include <string.h>

#include "filter/filter.h"
#include "warehouse/duckdb/whd_int.h"

#define LOGS_TABLE "requests"
#define LOGS_ALIAS "l"

/* The log model as a collection, for the filter compiler: `created` is text in PocketBase's
 * date format (it compares as PocketBase's SQLite does), `data` a JSON object. */
static struct store_field logs_fields[] = {
    {.id = (char *)"id", .name = (char *)"id", .type = STORE_FIELD_TEXT, .primary_key = true},
    {.id = (char *)"created", .name = (char *)"created", .type = STORE_FIELD_TEXT},
    {.id = (char *)"level", .name = (char *)"level", .type = STORE_FIELD_NUMBER},
    {.id = (char *)"message", .name = (char *)"message", .type = STORE_FIELD_TEXT},
    {.id = (char *)"data", .name = (char *)"data", .type = STORE_FIELD_JSON},
};

static const struct store_collection logs_coll = {
    .id = (char *)"_logs",
    .name = (char *)LOGS_TABLE,
    .type = STORE_COLLECTION_BASE,
    .system = true,
    .fields = logs_fields,
    .n_fields = ARRAY_LEN(logs_fields),
};

/* ---- loading ---- */

static int appender_fail(struct whd_conn *c, duckdb_appender *app)
{
    const char *e = *app ? duckdb_appender_error(*app) : NULL;
    int rc =
        whd__fail(c, ERR_INTERNAL, "cannot append to " LOGS_TABLE ": %s", e ? e : "unknown error");
    if (*app)
        duckdb_appender_destroy(app);
    return rc;
}

static int append_requests(struct whd_conn *c, const void *rows, size_t n)
{
    const struct wh_request *r = rows;
    duckdb_appender app = NULL;
    if (duckdb_appender_create(c->con, NULL, LOGS_TABLE, &app) != DuckDBSuccess)
        return appender_fail(c, &app);
    for (size_t i = 0; i < n; i++) {
        if (duckdb_append_varchar(app, r[i].id) != DuckDBSuccess ||
            duckdb_append_varchar(app, r[i].created) != DuckDBSuccess ||
            duckdb_append_int64(app, r[i].level) != DuckDBSuccess ||
            duckdb_append_varchar(app, r[i].message) != DuckDBSuccess ||
            duckdb_append_varchar(app, r[i].data) != DuckDBSuccess ||
            duckdb_append_uint64(app, r[i].log_offset) != DuckDBSuccess ||
            duckdb_appender_end_row(app) != DuckDBSuccess)
            return appender_fail(c, &app);
    }
    if (duckdb_appender_destroy(&app) != DuckDBSuccess)
        return appender_fail(c, &app);
    return 0;
}

int whd__load_requests(struct wh_conn *wc, const struct wh_load *ld, const struct wh_request *r,
                       size_t n, struct wh_load_stats *st)
{
    return whd__load_rows(whd__conn(wc), ld, append_requests, r, n, st);
}

/* ---- reads ---- */

static void add_params(json_t *params, const struct filter_sql *fs)
{
    for (size_t i = 0; i < fs->n_params; i++) {
        const struct filter_param *p = &fs->params[i];
        json_array_append_new(params, p->type == FILTER_PARAM_INT      ? json_integer(p->i)
                                      : p->type == FILTER_PARAM_DOUBLE ? json_real(p->d)
                                      : p->type == FILTER_PARAM_TEXT
                                          ? json_stringn_nocheck(p->text, p->text_len)
                                          : json_null());
    }
}

/* The filter's WHERE expression (TRUE without one) appended to sql, its values to params. */
static int add_filter(struct whd_conn *c, const struct wh_logs_query *q, struct arena *a,
                      struct buf *sql, json_t *params)
{
    if (!q->filter || !*q->filter) {
        buf_puts(sql, "TRUE");
        return 0;
    }
    struct filter_ctx fx = {.collection = &logs_coll,
                            .alias = LOGS_ALIAS,
                            .now_us = q->now_us,
                            .dialect = FILTER_DIALECT_DUCKDB,
                            .rowid_column = "log_offset"};
    struct filter_sql fs;
    struct filter_error fe;
    int rc = filter_compile(&fx, q->filter, strlen(q->filter), a, &fs, &fe);
    if (rc < 0)
        return whd__fail(c, rc == ERR_LIMIT ? ERR_LIMIT : ERR_INVALID, "%s", fe.msg);
    buf_putc(sql, '(');
    buf_append(sql, fs.sql, fs.sql_len);
    buf_putc(sql, ')');
    add_params(params, &fs);
    return 0;
}

/* Runs sql with params (read-only, under the query timeout). */
static int run(struct wh_conn *wc, const struct wh_logs_query *q, const char *sql,
               const json_t *params, uint64_t max_rows, struct wh_result *res)
{
    struct wh_query wq = {.sql = sql,
                          .params = params,
                          .timeout_ms = q->timeout_ms,
                          .max_rows = max_rows ? max_rows : 1};
    wh_result_init(res);
    return whd__query(wc, &wq, res);
}

/* One row of SELECT id, created, level, message, CAST(data AS VARCHAR) as PocketBase's log. */
static json_t *row_item(const json_t *row)
{
    const char *data = json_string_value(json_array_get(row, 4));
    json_t *d = data ? json_loads(data, JSON_DECODE_ANY, NULL) : NULL;
    if (!json_is_object(d)) {
        json_decref(d);
        d = json_object();
    }
    json_t *lvl = json_array_get(row, 2);
    return json_pack("{s:O,s:O,s:I,s:O,s:o}", "id", json_array_get(row, 0), "created",
                     json_array_get(row, 1), "level",
                     (json_int_t)(json_is_integer(lvl) ? json_integer_value(lvl) : 0), "message",
                     json_array_get(row, 3), "data", d);
}

#define SELECT_ITEM "SELECT id, created, level, message, CAST(data AS VARCHAR) FROM " LOGS_TABLE

static int whd_logs_view(struct wh_conn *wc, const struct wh_logs_query *q, json_t **out)
{
    json_t *params = json_pack("[s]", q->id);
    struct wh_result res;
    int rc = run(wc, q, SELECT_ITEM " WHERE id = ? LIMIT 1", params, 1, &res);
    json_decref(params);
    if (rc == 0 && json_array_size(res.rows) == 0)
        rc = whd__fail(whd__conn(wc), ERR_NOTFOUND, "no log entry %s", q->id);
    if (rc == 0)
        *out = row_item(json_array_get(res.rows, 0));
    wh_result_release(&res);
    return rc;
}

int whd__logs_list(struct wh_conn *wc, const struct wh_logs_query *q, json_t **out)
{
    struct whd_conn *c = whd__conn(wc);
    if (q->id)
        return whd_logs_view(wc, q, out);
    struct arena a;
    arena_init(&a, 4096);
    struct buf where, sql;
    buf_init(&where);
    buf_init(&sql);
    json_t *params = json_array(), *list_params = json_array();
    struct wh_result res;
    wh_result_init(&res);
    int64_t per_page = q->per_page, page = q->page;
    int64_t total = -1;
    int rc = add_filter(c, q, &a, &where, params);
    if (rc < 0)
        goto out;
    /* the sort (its values bound after the filter's), then insertion order (stable pages) */
    json_array_extend(list_params, params);
    buf_printf(&sql, SELECT_ITEM " AS \"" LOGS_ALIAS "\" WHERE %s ORDER BY ", buf_cstr(&where));
    if (q->sort && *q->sort) {
        struct filter_ctx fx = {.collection = &logs_coll,
                                .alias = LOGS_ALIAS,
                                .now_us = q->now_us,
                                .dialect = FILTER_DIALECT_DUCKDB,
                                .rowid_column = "log_offset"};
        struct filter_sql fs;
        struct filter_error fe;
        rc = filter_compile_sort(&fx, q->sort, strlen(q->sort), &a, &fs, &fe);
        if (rc < 0) {
            rc = whd__fail(c, rc == ERR_LIMIT ? ERR_LIMIT : ERR_INVALID, "%s", fe.msg);
            goto out;
        }
        add_params(list_params, &fs);
        if (fs.sql_len) {
            buf_append(&sql, fs.sql, fs.sql_len);
            buf_puts(&sql, ", ");
        }
    }
    buf_printf(&sql, "\"" LOGS_ALIAS "\".log_offset LIMIT %lld OFFSET %lld", (long long)per_page,
               (long long)((page - 1) * per_page));
    if ((rc = run(wc, q, buf_cstr(&sql), list_params, (uint64_t)per_page, &res)) < 0)
        goto out;
    json_t *items = json_array();
    for (size_t i = 0; i < json_array_size(res.rows); i++)
        json_array_append_new(items, row_item(json_array_get(res.rows, i)));
    wh_result_release(&res);
    if (!q->skip_total) {
        buf_reset(&sql);
        buf_printf(&sql, "SELECT count(*) FROM " LOGS_TABLE " AS \"" LOGS_ALIAS "\" WHERE %s",
                   buf_cstr(&where));
        if ((rc = run(wc, q, buf_cstr(&sql), params, 1, &res)) < 0) {
            json_decref(items);
            goto out;
        }
        total = json_integer_value(json_array_get(json_array_get(res.rows, 0), 0));
    }
    *out =
        json_pack("{s:I,s:I,s:I,s:I,s:o}", "page", (json_int_t)page, "perPage",
                  (json_int_t)per_page, "totalItems", (json_int_t)total, "totalPages",
                  (json_int_t)(total < 0 ? -1 : (total + per_page - 1) / per_page), "items", items);
out:
    wh_result_release(&res);
    json_decref(params);
    json_decref(list_params);
    buf_release(&sql);
    buf_release(&where);
    arena_release(&a);
    return rc;
}

#define STATS_MAX_HOURS 100000 /* rows of one stats answer (over 11 years of hours) */

int whd__logs_stats(struct wh_conn *wc, const struct wh_logs_query *q, json_t **out)
{
    struct whd_conn *c = whd__conn(wc);
    struct arena a;
    arena_init(&a, 4096);
    struct buf where, sql;
    buf_init(&where);
    buf_init(&sql);
    json_t *params = json_array();
    struct wh_result res;
    wh_result_init(&res);
    int rc = add_filter(c, q, &a, &where, params);
    if (rc < 0)
        goto out;
    /* "2006-01-02 15" of "2006-01-02 15:04:05.000Z": the hour, as PocketBase's
     * strftime('%Y-%m-%d %H:00:00', created) */
    buf_printf(
        &sql,
        "SELECT count(*) AS total, substr(created, 1, 13) || ':00:00.000Z' AS date FROM " LOGS_TABLE
        " AS \"" LOGS_ALIAS "\" WHERE %s GROUP BY date ORDER BY date",
        buf_cstr(&where));
    if ((rc = run(wc, q, buf_cstr(&sql), params, STATS_MAX_HOURS, &res)) < 0)
        goto out;
    json_t *arr = json_array();
    for (size_t i = 0; i < json_array_size(res.rows); i++) {
        const json_t *row = json_array_get(res.rows, i);
        json_array_append_new(arr, json_pack("{s:I,s:O}", "total",
                                             (json_int_t)json_integer_value(json_array_get(row, 0)),
                                             "date", json_array_get(row, 1)));
    }
    *out = arr;
out:
    wh_result_release(&res);
    json_decref(params);
    buf_release(&sql);
    buf_release(&where);
    arena_release(&a);
    return rc;
}

int whd__logs_delete(struct wh_conn *wc, const char *before, uint64_t *n_out)
{
    struct whd_conn *c = whd__conn(wc);
    *n_out = 0;
    duckdb_prepared_statement ps = NULL;
    if (duckdb_prepare(c->con, "DELETE FROM " LOGS_TABLE " WHERE created < ?", &ps) !=
        DuckDBSuccess) {
        int rc = whd__fail(c, ERR_INTERNAL, "cannot prepare the log retention: %s",
                           duckdb_prepare_error(ps));
        duckdb_destroy_prepare(&ps);
        return rc;
    }
    duckdb_result res;
    int rc = 0;
    if (duckdb_bind_varchar(ps, 1, before) != DuckDBSuccess) {
        rc = whd__fail(c, ERR_INVALID, "cannot bind the retention date");
    } else if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, "cannot delete old request logs");
    } else {
        *n_out = (uint64_t)duckdb_rows_changed(&res);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
    return rc;
}
