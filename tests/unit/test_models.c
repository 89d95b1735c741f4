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

#include "evlog_testlib.h"
#include "models/models.h"
#include "pipeline/pipeline.h"
#include "warehouse/duckdb/whd_int.h"
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
    assert_int_equal(wht_open(f->path, sizeof(f->path), "models", &f->wh, &f->c), 0);
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
        if (round > 0) /* a per-user count, min and max: merged, not re-aggregated */
            assert_true(json_is_true(json_object_get(ri, "merge")));
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

/* A per-user daily aggregate keyed by a computed column (user and day): its incremental builds
 * merge the new rows' aggregates into the published rows (counts, a filtered count, a sum that
 * is NULL for some groups, min, max) and equal a full rebuild after every round, with late
 * events (old days, new offsets) and duplicate-looking ones (the same content loaded again).
 * The same model with count(DISTINCT) cannot merge and re-aggregates, with the same result. */
static void test_incremental_merge_equals_full(void **state)
{
    struct fx *f = *state;
    static const char *const sqls[] = {
        "SELECT user_id || '/' || CAST(CAST(\"timestamp\" AS DATE) AS VARCHAR) AS user_day, "
        "user_id, CAST(\"timestamp\" AS DATE) AS day, count(*) AS n, count(*) FILTER (WHERE "
        "event = 'e') AS e_n, sum(CASE WHEN user_id = 'b' THEN 2 END) AS s, min(\"timestamp\") "
        "AS first_ts, max(\"timestamp\") AS last_ts FROM events GROUP BY ALL",
        "SELECT user_id || '/' || CAST(CAST(\"timestamp\" AS DATE) AS VARCHAR) AS user_day, "
        "count(*) AS n, count(DISTINCT \"timestamp\") AS distinct_ts FROM events GROUP BY 1",
    };
    const int64_t day = INT64_C(86400) * 1000000;
    const char *users[] = {"a", "b", "c"};
    for (size_t v = 0; v < ARRAY_LEN(sqls); v++) {
        char iname[16], fname[16], cmp[300], total[100];
        snprintf(iname, sizeof(iname), "incm%zu", v);
        snprintf(fname, sizeof(fname), "fullm%zu", v);
        snprintf(cmp, sizeof(cmp),
                 "SELECT count(*) FROM ((SELECT * FROM %s EXCEPT ALL SELECT * FROM %s) UNION ALL "
                 "(SELECT * FROM %s EXCEPT ALL SELECT * FROM %s))",
                 iname, fname, fname, iname);
        struct wh_model inc = {
            .name = iname, .sql = sqls[v], .materialized = "incremental", .unique_key = "user_day"};
        struct wh_model full = {.name = fname, .sql = sqls[v], .materialized = "table"};
        for (int round = 0; round < 5; round++) {
            for (int u = 0; u < 3; u++) {
                /* round 3 is late: days before everything loaded so far */
                int64_t ts = round == 3 ? (int64_t)u * day : (int64_t)(10 + round + u % 2) * day;
                load(f, users[u], 2 + u, ts);
                if ((round + u) % 2 == 0)
                    load(f, users[u], 2 + u, ts); /* duplicate-looking */
            }
            json_t *ri = build(f, &inc, false), *rf = build(f, &full, false);
            assert_string_equal(status(ri), "success");
            assert_string_equal(status(rf), "success");
            const char *mode = json_string_value(json_object_get(ri, "mode"));
            assert_string_equal(mode, round == 0 ? "full" : "incremental");
            if (round > 0)
                assert_int_equal(json_is_true(json_object_get(ri, "merge")), v == 0);
            assert_int_equal(scalar(f, cmp), 0);
            snprintf(total, sizeof(total), "SELECT sum(n)::BIGINT FROM %s", iname);
            assert_int_equal(scalar(f, total), (int64_t)f->next);
            json_decref(ri);
            json_decref(rf);
        }
    }
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

/* ---- source freshness ---- */

static void raw_exec(struct fx *f, const char *sql)
{
    duckdb_connection con;
    assert_int_equal(duckdb_connect(((struct whd *)f->wh)->db, &con), DuckDBSuccess);
    duckdb_result res;
    if (duckdb_query(con, sql, &res) != DuckDBSuccess)
        fail_msg("%s: %s", sql, duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    duckdb_disconnect(&con);
}

/* Runs model name through the runner and returns its run once finished (the caller's). */
static json_t *run_model(struct fx *f, struct models *m, const char *name)
{
    char id[64];
    assert_int_equal(models_request_run(m, name, false, false, id), 0);
    for (int i = 0; i < 3000; i++) {
        json_t *runs = NULL;
        assert_int_equal(models_runs(f->c, name, 10, &runs), 0);
        size_t k;
        json_t *r;
        json_array_foreach(runs, k, r)
        {
            const char *st = status(r);
            if (strcmp(json_string_value(json_object_get(r, "id")), id) == 0 &&
                strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
                json_incref(r);
                json_decref(runs);
                return r;
            }
        }
        json_decref(runs);
        usleep(10000);
    }
    fail_msg("run of %s did not finish", name);
    return NULL;
}

/* A model that tolerates a lag of maxLagSeconds fails with status "stale" while the loader
 * holds records older than that which it has not loaded (here: the loader cannot append,
 * because `events` refuses the event), and runs once the loader has caught up. No clock threshold:
 * the test waits until the loader reports the lag, whatever time that takes. */
static void test_source_freshness(void **state)
{
    struct fx *f = *state;
    char *tmp = tl_tmpdir("modlag"), logdir[4200];
    snprintf(logdir, sizeof(logdir), "%s/log", tmp);
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    struct evlog *log;
    assert_int_equal(evlog_open(&lc, &log), 0);
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:f}", "name", "counted", "sql", "SELECT count(*) AS n FROM events",
                  "materialized", "table", "maxLagSeconds", 0.001);
    json_t *errors = NULL, *saved = NULL;
    assert_int_equal(models_save(NULL, f->c, NULL, body, &errors, &saved), 0);
    json_decref(body);
    json_decref(saved);
    /* a model that reads no log topic is never stale */
    body = json_pack("{s:s,s:s,s:s,s:f}", "name", "constant", "sql", "SELECT 1 AS one",
                     "materialized", "table", "maxLagSeconds", 0.001);
    assert_int_equal(models_save(NULL, f->c, NULL, body, &errors, &saved), 0);
    json_decref(body);
    json_decref(saved);

    struct pipeline_cfg pc;
    pipeline_cfg_defaults(&pc);
    pc.log = log;
    pc.wh = f->wh;
    pc.idle_wait_us = 2000;
    pc.retry_max_us = 20000;
    struct pipeline *p;
    assert_int_equal(pipeline_start(&pc, &p), 0);
    struct pipeline_status st[3];
    for (int i = 0; i < 1000; i++) {
        assert_true(pipeline_status(p, st, 3) >= 3); /* events, changes, ... */
        if (st[0].ready)
            break;
        usleep(5000);
    }
    assert_true(st[0].ready);
    /* the loader cannot load an event without a source now */
    raw_exec(f, "ALTER TABLE events ALTER COLUMN source SET NOT NULL");
    const char *rec = "{\"messageId\":\"x1\",\"type\":\"track\",\"event\":\"e\","
                      "\"userId\":\"u\",\"timestamp\":\"2026-11-21T10:00:00.000Z\"}";
    struct evlog_rec r = {rec, strlen(rec)};
    uint64_t off;
    assert_int_equal(evlog_append_sync(log, "events", &r, 1, &off), 0);
    /* wait until the loader reports an unloaded record older than the tolerated lag */
    for (int i = 0; i < 1000; i++) {
        assert_true(pipeline_status(p, st, 3) >= 3); /* events, changes, ... */
        if (st[0].lag_records > 0 && st[0].lag_seconds > 0.001)
            break;
        usleep(5000);
    }
    if (!(st[0].lag_seconds > 0.001))
        fail_msg("lag %f records %llu committed %llu err %s", st[0].lag_seconds,
                 (unsigned long long)st[0].lag_records, (unsigned long long)st[0].committed,
                 st[0].last_error);

    struct models_cfg mc = {.wh = f->wh, .pipeline = p, .tick_us = 50000};
    struct models *m;
    assert_int_equal(models_start(&mc, &m), 0);
    json_t *run = run_model(f, m, "counted");
    assert_string_equal(status(run), "stale");
    const char *msg = json_string_value(json_object_get(run, "message"));
    assert_non_null(strstr(msg, "stale source: events is "));
    assert_non_null(strstr(msg, "behind the log (the model tolerates 0.0 s)"));
    json_decref(run);
    run = run_model(f, m, "constant");
    assert_string_equal(status(run), "success");
    json_decref(run);

    /* the loader catches up: the same model runs */
    raw_exec(f, "ALTER TABLE events ALTER COLUMN source DROP NOT NULL");
    for (int i = 0; i < 2000; i++) {
        assert_true(pipeline_status(p, st, 3) >= 3); /* events, changes, ... */
        if (st[0].ready && st[0].lag_records == 0 && st[0].committed == 1)
            break;
        usleep(5000);
    }
    assert_int_equal(st[0].committed, 1);
    run = run_model(f, m, "counted");
    assert_string_equal(status(run), "success");
    json_decref(run);
    assert_int_equal(scalar(f, "SELECT n FROM counted"), 1);
    models_stop(m);
    pipeline_stop(p);
    evlog_close(log);
    tl_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_equals_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_merge_equals_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_test_keeps_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_freshness, setup, teardown),
        cmocka_unit_test(test_cron),
        cmocka_unit_test(test_sync_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
