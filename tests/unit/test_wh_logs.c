/* The request logs in the warehouse (whd_logs.c) and the filter module's DuckDB dialect they
 * read through: loading with the offset, parsing the topic's payloads, PocketBase's list /
 * view / stats answers, filters and sorts run on a real DuckDB file, bad ones refused, and
 * retention by date. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "filter/filter.h"
#include "pipeline/pipeline.h"
#include "warehouse/warehouse.h"
#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(wht_open(f->path, sizeof(f->path), "logs", &f->wh, &f->c), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wht_close(f->path, f->wh, f->c);
    free(f);
    return 0;
}

/* Loads the entries (as the topic holds them) at offsets 0.. through the pipeline's parser. */
static void load(struct fx *f, const char *const *payloads, size_t n)
{
    struct arena a;
    arena_init(&a, 4096);
    struct wh_request *r = calloc(n, sizeof(*r));
    char reason[200];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pipeline_parse_request(payloads[i], strlen(payloads[i]), i, &r[i], &a,
                                                reason, sizeof(reason)),
                         0);
    struct wh_load ld = {.consumer = "warehouse-requests", .topic = "requests", .next_offset = n};
    struct wh_load_stats st;
    assert_int_equal(wh_load_requests(f->c, &ld, r, n, &st), 0);
    assert_int_equal(st.rows, n);
    free(r);
    arena_release(&a);
}

static const char *const entries[] = {
    "{\"id\":\"a1\",\"created\":\"2026-01-01 10:05:00.000Z\",\"level\":0,\"message\":\"GET "
    "/api/health\",\"data\":{\"type\":\"request\",\"method\":\"GET\",\"url\":\"/api/health\","
    "\"status\":200,\"execTime\":0.5,\"auth\":\"\",\"ok\":true}}",
    "{\"id\":\"a2\",\"created\":\"2026-01-01 10:40:00.000Z\",\"level\":8,\"message\":\"GET "
    "/api/x\",\"data\":{\"type\":\"request\",\"method\":\"GET\",\"url\":\"/api/X\",\"status\":404,"
    "\"execTime\":1.25,\"auth\":\"users\",\"error\":\"Not found.\",\"ok\":false}}",
    "{\"id\":\"a3\",\"created\":\"2026-01-01 12:00:00.000Z\",\"level\":8,\"message\":\"POST "
    "/api/y\",\"data\":{\"type\":\"request\",\"method\":\"POST\",\"url\":\"/api/y?q=50%\","
    "\"status\":500,\"execTime\":20,\"auth\":\"_superusers\"}}",
    "{\"id\":\"a4\",\"created\":\"2026-01-03 00:00:00.000Z\",\"level\":0,\"message\":\"GET "
    "/api/z\",\"data\":{\"type\":\"request\",\"method\":\"GET\",\"url\":\"/api/z\",\"status\":200,"
    "\"execTime\":2,\"auth\":\"\"}}",
};

static json_t *list(struct fx *f, const char *filter, const char *sort, int64_t page,
                    int64_t per_page, int *rc_out)
{
    struct wh_logs_query q = {.filter = filter,
                              .sort = sort,
                              .page = page,
                              .per_page = per_page,
                              .now_us = time_now_us()};
    json_t *out = NULL;
    *rc_out = wh_logs_list(f->c, &q, &out);
    return out;
}

/* The ids of a list answer, joined by ','. */
static char *ids(const json_t *res)
{
    static char buf[256];
    buf[0] = '\0';
    const json_t *items = json_object_get(res, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        if (i)
            strcat(buf, ",");
        strcat(buf, json_string_value(json_object_get(json_array_get(items, i), "id")));
    }
    return buf;
}

static void expect_ids(struct fx *f, const char *filter, const char *sort, const char *want)
{
    int rc;
    json_t *r = list(f, filter, sort, 1, 100, &rc);
    if (rc != 0)
        fail_msg("%s / %s: rc %d: %s", filter ? filter : "-", sort ? sort : "-", rc,
                 wh_errmsg(f->c));
    if (strcmp(ids(r), want) != 0)
        fail_msg("%s / %s: got [%s], want [%s]", filter ? filter : "-", sort ? sort : "-", ids(r),
                 want);
    json_decref(r);
}

static void test_list_filters_and_sorts(void **state)
{
    struct fx *f = *state;
    load(f, entries, ARRAY_LEN(entries));
    expect_ids(f, NULL, NULL, "a1,a2,a3,a4");
    expect_ids(f, NULL, "-@rowid", "a4,a3,a2,a1");
    expect_ids(f, "level > 0", NULL, "a2,a3");
    expect_ids(f, "data.status >= 400 && data.status < 500", NULL, "a2");
    expect_ids(f, "data.status = 200", "-created", "a4,a1");
    expect_ids(f, "data.execTime > 1.5", NULL, "a3,a4");
    expect_ids(f, "data.method = 'POST' || data.auth = 'users'", NULL, "a2,a3");
    expect_ids(f, "data.auth = ''", NULL, "a1,a4");
    expect_ids(f, "data.error = null", NULL, "a1,a3,a4");
    expect_ids(f, "data.error != ''", NULL, "a1,a2,a3,a4"); /* SQLite's IS NOT: NULL too */
    expect_ids(f, "data.ok = true", NULL, "a1");
    expect_ids(f, "data.ok = false", NULL, "a2");
    expect_ids(f, "data.url ~ '/api/x'", NULL, "a2"); /* case-insensitive */
    expect_ids(f, "data.url ~ '%q=50%'", NULL, "a3"); /* its own wildcards */
    expect_ids(f, "data.url ~ '50%'", NULL, "");      /* ... anchored */
    expect_ids(f, "data.url !~ 'api'", NULL, "");
    expect_ids(f, "message ~ 'GET'", "-data.execTime", "a4,a2,a1");
    expect_ids(f, "created >= '2026-01-01 11:00:00' && created < '2026-01-02'", NULL, "a3");
    expect_ids(f, "id = 'a3' || id = \"a1\"", NULL, "a1,a3");
    expect_ids(f, "level = null", NULL, "");
    expect_ids(f, "created > @now", NULL, "");
    expect_ids(f, "data.nope = 1", NULL, "");
    expect_ids(f, "message = \"x' OR 1=1 --\"", NULL, "");
    expect_ids(f, "data.method:lower = 'post' || level = 0", "level,-id", "a4,a1,a3");

    /* pages */
    int rc;
    json_t *r = list(f, NULL, "-@rowid", 2, 3, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(ids(r), "a1");
    assert_int_equal(json_integer_value(json_object_get(r, "page")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "perPage")), 3);
    assert_int_equal(json_integer_value(json_object_get(r, "totalItems")), 4);
    assert_int_equal(json_integer_value(json_object_get(r, "totalPages")), 2);
    const json_t *it = json_array_get(json_object_get(r, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "created")),
                        "2026-01-01 10:05:00.000Z");
    assert_int_equal(json_integer_value(json_object_get(it, "level")), 0);
    assert_string_equal(json_string_value(json_object_get(it, "message")), "GET /api/health");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(it, "data"), "status")),
                     200);
    json_decref(r);
    struct wh_logs_query sq = {.page = 1, .per_page = 2, .skip_total = true};
    json_t *out = NULL;
    assert_int_equal(wh_logs_list(f->c, &sq, &out), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "totalItems")), -1);
    assert_int_equal(json_integer_value(json_object_get(out, "totalPages")), -1);
    assert_int_equal(json_array_size(json_object_get(out, "items")), 2);
    json_decref(out);
}

static void test_bad_filters(void **state)
{
    struct fx *f = *state;
    load(f, entries, ARRAY_LEN(entries));
    static const char *const bad[] = {
        "nope = 1",
        "data.status >",
        "@request.auth.id = ''",
        "@collection.users.id = ''",
        "strftime('%Y', created) = '2026'",
        "geoDistance(1, 2, 3, 4) < 1",
        "level:each = 1",
        "level = 'abc'", /* compiles; DuckDB refuses the value */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int rc;
        json_t *r = list(f, bad[i], NULL, 1, 10, &rc);
        if (rc != ERR_INVALID)
            fail_msg("%s: rc %d, want ERR_INVALID", bad[i], rc);
        assert_null(r);
        assert_true(strlen(wh_errmsg(f->c)) > 0);
    }
    int rc;
    assert_null(list(f, NULL, "nope", 1, 10, &rc));
    assert_int_equal(rc, ERR_INVALID);
    assert_null(list(f, NULL, "-created; DROP TABLE requests", 1, 10, &rc));
    assert_int_equal(rc, ERR_INVALID);
    /* the table is still there */
    expect_ids(f, NULL, NULL, "a1,a2,a3,a4");
}

static void test_view_and_stats(void **state)
{
    struct fx *f = *state;
    load(f, entries, ARRAY_LEN(entries));
    struct wh_logs_query q = {.id = "a2"};
    json_t *out = NULL;
    assert_int_equal(wh_logs_list(f->c, &q, &out), 0);
    assert_string_equal(json_string_value(json_object_get(out, "id")), "a2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "data"), "error")),
                        "Not found.");
    json_decref(out);
    q.id = "nope";
    out = NULL;
    assert_int_equal(wh_logs_list(f->c, &q, &out), ERR_NOTFOUND);
    assert_null(out);

    struct wh_logs_query s = {0};
    assert_int_equal(wh_logs_stats(f->c, &s, &out), 0);
    char *text = json_dumps(out, JSON_COMPACT);
    assert_string_equal(text, "[{\"total\":2,\"date\":\"2026-01-01 10:00:00.000Z\"},"
                              "{\"total\":1,\"date\":\"2026-01-01 12:00:00.000Z\"},"
                              "{\"total\":1,\"date\":\"2026-01-03 00:00:00.000Z\"}]");
    free(text);
    json_decref(out);
    s.filter = "level >= 8";
    assert_int_equal(wh_logs_stats(f->c, &s, &out), 0);
    text = json_dumps(out, JSON_COMPACT);
    assert_string_equal(text, "[{\"total\":1,\"date\":\"2026-01-01 10:00:00.000Z\"},"
                              "{\"total\":1,\"date\":\"2026-01-01 12:00:00.000Z\"}]");
    free(text);
    json_decref(out);
    s.filter = "created >";
    out = NULL;
    assert_int_equal(wh_logs_stats(f->c, &s, &out), ERR_INVALID);
    assert_null(out);
}

static void test_retention_and_offsets(void **state)
{
    struct fx *f = *state;
    load(f, entries, ARRAY_LEN(entries));
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "warehouse-requests", &next), 0);
    assert_int_equal(next, ARRAY_LEN(entries));
    uint64_t n = 0;
    assert_int_equal(wh_logs_delete(f->c, "2026-01-01 00:00:00.000Z", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(wh_logs_delete(f->c, "2026-01-01 12:00:00.000Z", &n), 0);
    assert_int_equal(n, 2); /* strictly before */
    expect_ids(f, NULL, NULL, "a3,a4");
    assert_int_equal(wh_logs_delete(f->c, "2026-01-03 00:00:00.001Z", &n), 0);
    assert_int_equal(n, 2);
    expect_ids(f, NULL, NULL, "");
}

static void test_parse_rejects(void **state)
{
    UNUSED(state);
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"created\":\"2026-01-01 00:00:00.000Z\",\"level\":0,\"data\":{}}",
        "{\"id\":\"x\",\"level\":0,\"data\":{}}",
        "{\"id\":\"x\",\"created\":\"2026-01-01 00:00:00.000Z\",\"level\":\"0\",\"data\":{}}",
        "{\"id\":\"x\",\"created\":\"2026-01-01 00:00:00.000Z\",\"level\":0,\"data\":[]}",
        "{\"id\":1,\"created\":\"2026-01-01 00:00:00.000Z\",\"level\":0,\"data\":{}}",
    };
    struct arena a;
    arena_init(&a, 1024);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct wh_request r;
        char reason[200] = "";
        if (pipeline_parse_request(bad[i], strlen(bad[i]), 7, &r, &a, reason, sizeof(reason)) !=
            ERR_INVALID)
            fail_msg("accepted %s", bad[i]);
        assert_true(reason[0] != '\0');
    }
    arena_release(&a);
}

/* What the DuckDB dialect writes: values bound, names quoted, SQLite's compile unchanged. */
static void test_dialect_sql(void **state)
{
    UNUSED(state);
    static struct store_field fields[] = {
        {.id = (char *)"n", .name = (char *)"n", .type = STORE_FIELD_NUMBER},
        {.id = (char *)"d", .name = (char *)"d", .type = STORE_FIELD_JSON},
    };
    struct store_collection c = {
        .id = (char *)"t", .name = (char *)"t", .fields = fields, .n_fields = 2};
    struct filter_ctx fx = {.collection = &c, .alias = "r", .dialect = FILTER_DIALECT_DUCKDB};
    struct arena a;
    arena_init(&a, 4096);
    struct filter_sql fs;
    assert_int_equal(filter_compile(&fx, "d.a.b > 5", 9, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "TRY_CAST(json_extract_string(\"r\".\"d\", ?) AS DOUBLE) > ?");
    assert_int_equal(fs.n_params, 2);
    assert_string_equal(fs.params[0].text, "$.\"a\".\"b\"");
    assert_int_equal(fs.params[1].i, 5);
    assert_int_equal(filter_compile(&fx, "n = ''", 6, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "(CAST(\"r\".\"n\" AS VARCHAR) = '' OR \"r\".\"n\" IS NULL)");
    assert_int_equal(filter_compile(&fx, "n != 3", 6, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "\"r\".\"n\" IS DISTINCT FROM ?");
    assert_int_equal(filter_compile(&fx, "d.x ~ 'a_b'", 11, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql,
                        "CAST(json_extract_string(\"r\".\"d\", ?) AS VARCHAR) ILIKE ? ESCAPE '\\'");
    assert_string_equal(fs.params[1].text, "%a\\_b%");
    assert_int_equal(filter_compile_sort(&fx, "-@rowid", 7, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "\"r\".rowid DESC");
    fx.rowid_column = "seq";
    assert_int_equal(filter_compile_sort(&fx, "@rowid", 6, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "\"r\".\"seq\" ASC");
    /* the same filter for SQLite */
    fx.dialect = FILTER_DIALECT_SQLITE;
    fx.rowid_column = NULL;
    assert_int_equal(filter_compile(&fx, "n != 3", 6, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "\"r\".\"n\" IS NOT ?");
    assert_int_equal(filter_compile_sort(&fx, "@rowid", 6, &a, &fs, NULL), 0);
    assert_string_equal(fs.sql, "\"r\"._rowid_ ASC");
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_filters_and_sorts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_and_offsets, setup, teardown),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_dialect_sql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
