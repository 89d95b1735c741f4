/* SQL models below the API: parsing a model (dependencies from DuckDB's parse, CTEs left out,
 * writes and qualified names refused), write-audit-publish builds against a real DuckDB file
 * (incremental ranges by log offset equal to full rebuilds, late events, a failing test keeps
 * the published version), cron expressions and the sync's record ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "models/models.h"
#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
    uint64_t next; /* next log offset */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    wht_path(f->path, sizeof(f->path), "models");
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.threads = 1;
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    assert_int_equal(wh_ensure_schema(f->c), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wh_conn_close(f->c);
    wh_close(f->wh);
    wht_unlink(f->path);
    free(f);
    return 0;
}

/* Loads n events of user u with timestamps ts_us, as the loader does (consumer
 * "warehouse-events", offset committed with the rows). */
static void load(struct fx *f, const char *u, int n, int64_t ts_us)
{
    struct wh_event ev[64];
    char ids[64][32];
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m%llu", (unsigned long long)(f->next + (uint64_t)i));
        ev[i] = (struct wh_event){.log_offset = f->next + (uint64_t)i,
                                  .id = ids[i],
                                  .type = "track",
                                  .event = "e",
                                  .user_id = u,
                                  .timestamp_us = ts_us + i,
                                  .original_timestamp_us = WH_NO_TIME,
                                  .sent_at_us = WH_NO_TIME,
                                  .received_at_us = WH_NO_TIME};
    }
    f->next += (uint64_t)n;
    struct wh_load ld = {.consumer = "warehouse-events", .topic = "events", .next_offset = f->next};
    int rc = wh_load_events(f->c, &ld, ev, (size_t)n, NULL);
    if (rc != 0)
        fprintf(stderr, "load: %s\n", wh_errmsg(f->c));
    assert_int_equal(rc, 0);
}

static int64_t scalar(struct fx *f, const char *sql)
{
    struct wh_query q = {.sql = sql};
    struct wh_result r;
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    json_t *v = json_array_get(json_array_get(r.rows, 0), 0);
    int64_t out = json_is_integer(v) ? json_integer_value(v) : -1;
    wh_result_release(&r);
    return out;
}

static json_t *build(struct fx *f, const struct wh_model *m, bool full)
{
    struct wh_model_opts o = {.full_refresh = full};
    json_t *out = NULL;
    assert_int_equal(wh_model_build(f->c, m, &o, &out), 0);
    assert_non_null(out);
    return out;
}

static const char *status(const json_t *r)
{
    return json_string_value(json_object_get(r, "status"));
}

static void test_parse_refs(void **state)
{
    struct fx *f = *state;
    json_t *refs = NULL;
    assert_int_equal(wh_model_parse(f->c,
                                    "WITH x AS (SELECT * FROM app_users) SELECT e.user_id FROM "
                                    "Events e JOIN x ON true JOIN m1 USING (user_id) WHERE "
                                    "e.id IN (SELECT id FROM changes)",
                                    &refs),
                     0);
    /* every table read, lower-cased, once; the CTE x is not a table */
    const char *want[] = {"app_users", "events", "m1", "changes"};
    assert_int_equal(json_array_size(refs), 4);
    for (size_t i = 0; i < 4; i++) {
        bool found = false;
        for (size_t k = 0; k < 4; k++)
            found = found || strcmp(json_string_value(json_array_get(refs, k)), want[i]) == 0;
        assert_true(found);
    }
    json_decref(refs);

    assert_int_equal(wh_model_parse(f->c, "SELEC 1", &refs), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(f->c), "syntax error"));
    assert_int_equal(wh_model_parse(f->c, "DELETE FROM events", &refs), ERR_DENIED);
    assert_int_equal(wh_model_parse(f->c, "SELECT 1; SELECT 2", &refs), ERR_DENIED);
    assert_int_equal(wh_model_parse(f->c, "SELECT * FROM other.main.events", &refs), ERR_DENIED);
    assert_int_equal(wh_model_parse(f->c, "SELECT * FROM query('SELECT 1')", &refs), ERR_DENIED);
    assert_null(refs);
}

/* An incremental per-user aggregate equals its full rebuild after every batch, late events
 * (old timestamps, new offsets) included; an empty range changes nothing. */
static void test_incremental_equals_full(void **state)
{
    struct fx *f = *state;
    const char *sql = "SELECT user_id, count(*) AS n, min(\"timestamp\") AS first_ts, "
                      "max(\"timestamp\") AS last_ts FROM events GROUP BY user_id";
    struct wh_model inc = {
        .name = "inc", .sql = sql, .materialized = "incremental", .unique_key = "user_id"};
    struct wh_model full = {.name = "fullm", .sql = sql, .materialized = "table"};
    const char *users[] = {"a", "b", "c"};
    const char *modes[] = {"full", "incremental", "incremental", "incremental"};
    for (int round = 0; round < 4; round++) {
        for (int u = 0; u < 3; u++)
            if ((round + u) % 2 == 0 || round == 0)
                load(f, users[u], 5 + round, round == 2 ? 1000 : 1000000 * (round + 1));
        json_t *ri = build(f, &inc, false), *rf = build(f, &full, false);
        assert_string_equal(status(ri), "success");
        assert_string_equal(status(rf), "success");
        assert_string_equal(json_string_value(json_object_get(ri, "mode")), modes[round]);
        assert_int_equal(json_integer_value(json_object_get(ri, "eventsTo")), (json_int_t)f->next);
        assert_int_equal(scalar(f, "SELECT count(*) FROM ((SELECT * FROM inc EXCEPT ALL SELECT * "
                                   "FROM fullm) UNION ALL (SELECT * FROM fullm EXCEPT ALL SELECT * "
                                   "FROM inc))"),
                         0);
        assert_int_equal(scalar(f, "SELECT sum(n)::BIGINT FROM inc"), (int64_t)f->next);
        json_decref(ri);
        json_decref(rf);
    }
    json_t *again = build(f, &inc, false);
    assert_int_equal(json_integer_value(json_object_get(again, "eventsFrom")),
                     json_integer_value(json_object_get(again, "eventsTo")));
    json_decref(again);
}

/* A failing error test rolls the build back: the published rows and the stored range stay. */
static void test_failing_test_keeps_published(void **state)
{
    struct fx *f = *state;
    load(f, "a", 3, 1000);
    struct wh_model m = {.name = "wap",
                         .sql = "SELECT user_id, count(*) AS n FROM events GROUP BY 1",
                         .materialized = "incremental",
                         .unique_key = "user_id"};
    json_t *tests = json_pack("[{s:s,s:I,s:s,s:s}]", "type", "row_count", "max", (json_int_t)1,
                              "severity", "error", "name", "one_row");
    m.tests = tests;
    json_t *r = build(f, &m, false);
    assert_string_equal(status(r), "success");
    json_decref(r);
    load(f, "b", 2, 2000);
    r = build(f, &m, false);
    assert_string_equal(status(r), "failed");
    json_t *t = json_array_get(json_object_get(r, "tests"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "status")), "fail");
    json_decref(r);
    assert_int_equal(scalar(f, "SELECT count(*) FROM wap"), 1);
    assert_int_equal(
        scalar(f, "SELECT events_offset::BIGINT FROM _model_state WHERE model = 'wap'"), 3);
    /* warn: published, and the range advances */
    json_object_set_new(json_array_get(tests, 0), "severity", json_string("warn"));
    r = build(f, &m, false);
    assert_string_equal(status(r), "warn");
    json_decref(r);
    assert_int_equal(scalar(f, "SELECT count(*) FROM wap"), 2);
    assert_int_equal(
        scalar(f, "SELECT events_offset::BIGINT FROM _model_state WHERE model = 'wap'"), 5);
    json_decref(tests);
}

static void test_broken_model(void **state)
{
    struct fx *f = *state;
    struct wh_model m = {.name = "brk", .sql = "SELECT 1 AS a", .materialized = "table"};
    json_t *r = build(f, &m, false);
    assert_string_equal(status(r), "success");
    json_decref(r);
    m.sql = "SELECT nosuch FROM events";
    r = build(f, &m, false);
    assert_string_equal(status(r), "broken");
    assert_non_null(strstr(json_string_value(json_object_get(r, "message")), "nosuch"));
    json_decref(r);
    assert_int_equal(scalar(f, "SELECT a FROM brk"), 1);
}

static void test_cron(void **state)
{
    (void)state;
    assert_int_equal(models_cron_check("* * * * *"), 0);
    assert_int_equal(models_cron_check("*/15 0-6,22 1 */2 1-5"), 0);
    assert_int_equal(models_cron_check("60 * * * *"), ERR_INVALID);
    assert_int_equal(models_cron_check("* * * *"), ERR_INVALID);
    assert_int_equal(models_cron_check("* * * * * *"), ERR_INVALID);
    assert_int_equal(models_cron_check("*/0 * * * *"), ERR_INVALID);
    assert_int_equal(models_cron_check("5-1 * * * *"), ERR_INVALID);
    /* 2026-12-07 (a Monday) 17:30 UTC */
    int64_t t = INT64_C(1796664600) * 1000000;
    assert_true(models_cron_match("30 17 * * *", t));
    assert_true(models_cron_match("*/15 * * * *", t));
    assert_false(models_cron_match("*/20 * * * *", t));
    assert_true(models_cron_match("30 17 * * 1", t));
    assert_false(models_cron_match("30 17 * * 0,7", t));
    /* both day fields restricted: either matches */
    assert_true(models_cron_match("30 17 1 * 1", t));
    assert_false(models_cron_match("30 17 1 * 2", t));
    assert_true(models_cron_match("30 17 7 12 *", t));
}

static void test_sync_id(void **state)
{
    (void)state;
    char a[16], b[16], c[16];
    models_sync_id("pbc_1", "user-1", a);
    models_sync_id("pbc_1", "user-1", b);
    models_sync_id("pbc_2", "user-1", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 15);
    assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyz0123456789"), 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_equals_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_test_keeps_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_model, setup, teardown),
        cmocka_unit_test(test_cron),
        cmocka_unit_test(test_sync_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
