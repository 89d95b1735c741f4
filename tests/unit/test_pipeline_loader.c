/* Pipeline loader end to end: a real event log and a real DuckDB warehouse under $TMPDIR.
 * Records appended to "events" and "changes" end up exactly once in events, changes,
 * app_<collection> and _rejects, across restarts; batches grow under load; status and
 * metrics report the consumers. Plus the payload parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "evlog_testlib.h"
#include "metrics/metrics.h"
#include "pipeline/pipeline.h"
#include "warehouse/duckdb/whd_int.h"
#include "wh_test_util.h"

struct fx {
    char *tmp;
    char logdir[4200];
    char whpath[4200];
    struct evlog *log;
    struct wh *wh;
    struct wh_conn *c;
};

static void fx_open(struct fx *f)
{
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = f->logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    assert_int_equal(evlog_open(&lc, &f->log), 0);
    struct wh_cfg wc;
    wh_cfg_defaults(&wc);
    wc.path = f->whpath;
    wc.threads = 1;
    assert_int_equal(wh_open(&wc, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    assert_int_equal(wh_ensure_schema(f->c), 0);
}

static void fx_close(struct fx *f)
{
    wh_conn_close(f->c);
    wh_close(f->wh);
    evlog_close(f->log);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->tmp = tl_tmpdir("pipe");
    snprintf(f->logdir, sizeof(f->logdir), "%s/log", f->tmp);
    snprintf(f->whpath, sizeof(f->whpath), "%s/warehouse.duckdb", f->tmp);
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    tl_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static void append(struct fx *f, const char *topic, const char *payload)
{
    struct evlog_rec r = {payload, strlen(payload)};
    uint64_t off;
    assert_int_equal(evlog_append_sync(f->log, topic, &r, 1, &off), 0);
}

static void append_events(struct fx *f, uint64_t from, uint64_t n)
{
    struct evlog_rec *recs = calloc(n, sizeof(*recs));
    char **bufs = calloc(n, sizeof(*bufs));
    for (uint64_t i = 0; i < n; i++) {
        bufs[i] = malloc(512);
        snprintf(bufs[i], 512,
                 "{\"messageId\":\"m%llu\",\"type\":\"track\",\"event\":\"Viewed\","
                 "\"userId\":\"u%llu\",\"anonymousId\":null,\"timestamp\":"
                 "\"2026-11-21T10:00:00.000Z\",\"receivedAt\":\"2026-11-21T10:00:01.000Z\","
                 "\"properties\":{\"i\":%llu},\"context\":{},\"source\":\"web\"}",
                 (unsigned long long)(from + i), (unsigned long long)((from + i) % 7),
                 (unsigned long long)(from + i));
        recs[i] = (struct evlog_rec){bufs[i], strlen(bufs[i])};
    }
    uint64_t off;
    assert_int_equal(evlog_append_sync(f->log, "events", recs, n, &off), 0);
    for (uint64_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(recs);
}

/* Waits until both consumers have loaded everything durable (10 s at most). */
static void wait_caught_up(struct fx *f, struct pipeline *p)
{
    for (int i = 0; i < 1000; i++) {
        uint64_t ee = 0, ce = 0;
        assert_int_equal(evlog_end_offset(f->log, "events", &ee), 0);
        assert_int_equal(evlog_end_offset(f->log, "changes", &ce), 0);
        struct pipeline_status st[5];
        assert_int_equal(pipeline_status(p, st, 5),
                         5); /* events, changes, predictions, requests, audit */
        if (st[0].committed == ee && st[1].committed == ce && st[0].end == ee && st[1].end == ce)
            return;
        usleep(10000);
    }
    fail_msg("pipeline did not catch up");
}

static struct pipeline *start(struct fx *f, size_t max_batch)
{
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    cfg.log = f->log;
    cfg.wh = f->wh;
    cfg.idle_wait_us = 2000;
    cfg.max_batch = max_batch;
    cfg.checkpoint_rows = 1500;
    struct pipeline *p;
    assert_int_equal(pipeline_start(&cfg, &p), 0);
    return p;
}

static struct store_field fields[] = {
    {.id = "f_id", .name = "id", .type = STORE_FIELD_TEXT, .primary_key = true},
    {.id = "f_name", .name = "name", .type = STORE_FIELD_TEXT},
    {.id = "f_age", .name = "age", .type = STORE_FIELD_NUMBER},
};
static struct store_collection users = {
    .id = "pbc_users", .name = "users", .fields = fields, .n_fields = ARRAY_LEN(fields)};

static void test_end_to_end(void **state)
{
    struct fx *f = *state;
    assert_int_equal(wh_apply_collection(f->c, &users), 0);
    append_events(f, 0, 3000);
    append(f, "events", "not json");
    append(f, "events", "{\"messageId\":\"bad\",\"type\":\"track\",\"timestamp\":\"yesterday\"}");
    append(f, "changes",
           "{\"id\":1,\"collection\":\"users\",\"collectionId\":\"pbc_users\",\"recordId\":\"u1\","
           "\"action\":\"create\",\"record\":{\"id\":\"u1\",\"name\":\"Ann\",\"age\":30},"
           "\"changedAt\":\"2026-11-21T10:00:00.000Z\"}");
    append(f, "changes",
           "{\"id\":2,\"collection\":\"users\",\"collectionId\":\"pbc_users\",\"recordId\":\"u2\","
           "\"action\":\"create\",\"record\":{\"id\":\"u2\",\"name\":\"Bob\",\"age\":\"x\"},"
           "\"changedAt\":\"2026-11-21T10:00:00.000Z\"}");
    append(f, "changes",
           "{\"id\":3,\"collection\":\"users\",\"collectionId\":\"pbc_users\",\"recordId\":\"u1\","
           "\"action\":\"update\",\"record\":{\"id\":\"u1\",\"name\":\"Ann\",\"age\":31},"
           "\"changedAt\":\"2026-11-21T10:00:01.000Z\"}");

    struct pipeline *p = start(f, 1000);
    wait_caught_up(f, p);
    struct pipeline_status st[5];
    pipeline_status(p, st, 5);
    assert_string_equal(st[0].consumer, "warehouse-events");
    assert_int_equal(st[0].rows, 3000);
    assert_int_equal(st[0].rejects, 2);
    assert_int_equal(st[0].lag_records, 0);
    assert_string_equal(st[0].last_error, "");
    /* batches grew: 3002 records in far fewer than 3002/256 batches of the minimum size */
    assert_true(st[0].batches <= 8);
    assert_int_equal(st[1].rows, 3);
    assert_int_equal(st[1].rejects, 1);
    json_t *js = pipeline_status_json(p);
    json_t *c0 = json_array_get(json_object_get(js, "consumers"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "committedOffset")), 3002);
    assert_int_equal(json_integer_value(json_object_get(c0, "lagRecords")), 0);
    assert_true(json_is_null(json_object_get(c0, "lastError")));
    json_decref(js);

    /* freshness: a single event shows up quickly once the consumer is idle */
    int64_t t0 = time_mono_us();
    append_events(f, 5000, 1);
    wait_caught_up(f, p);
    assert_true(time_mono_us() - t0 < 1000000);
    pipeline_stop(p);

    assert_rows(f->c, "SELECT count(*), count(DISTINCT id), max(log_offset) FROM events",
                "[[3001,3001,3002]]");
    assert_rows(f->c,
                "SELECT consumer, log_offset, reason FROM _rejects ORDER BY consumer, log_offset",
                "[[\"warehouse-changes\",1,\"mirror app_users: field age: value does not fit "
                "column type DOUBLE\"],[\"warehouse-events\",3000,\"not JSON: unexpected "
                "character at byte 0\"],[\"warehouse-events\",3001,\"timestamp: not an ISO 8601 "
                "date\"]]");
    assert_rows(f->c, "SELECT id, name, age FROM app_users", "[[\"u1\",\"Ann\",31.0]]");
    assert_rows(f->c,
                "SELECT u.name, count(*) FROM events e JOIN app_users u ON u.id = e.user_id "
                "GROUP BY 1",
                "[[\"Ann\",429]]");
    /* the log knows the position too (for retention) */
    uint64_t lpos = 0;
    assert_int_equal(evlog_consumer_get(f->log, "warehouse-events", "events", &lpos), 0);
    assert_int_equal(lpos, 3003);

    /* metrics */
    struct buf m;
    buf_init(&m);
    metrics_render(&m);
    assert_non_null(strstr(buf_cstr(&m), "tandem_pipeline_lag_records{consumer=\"warehouse-"
                                         "events\"} 0\n"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_pipeline_rows_total{consumer=\"warehouse-"
                                         "events\"} 3001\n"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_pipeline_rejects_total{consumer=\"warehouse-"
                                         "changes\"} 1\n"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_pipeline_batch_rows_count{consumer="));
    buf_release(&m);
}

static void test_restart_resumes_from_warehouse_offset(void **state)
{
    struct fx *f = *state;
    append_events(f, 0, 500);
    struct pipeline *p = start(f, 50000);
    wait_caught_up(f, p);
    /* a consumer that found the log drained registers its position with the log (for
     * retention) without waiting for the once-a-second registration under load */
    uint64_t lpos = 0;
    for (int i = 0; i < 100 && lpos != 500; i++) {
        usleep(10000);
        if (evlog_consumer_get(f->log, "warehouse-events", "events", &lpos) < 0)
            lpos = 0;
    }
    assert_int_equal(lpos, 500);
    pipeline_stop(p);
    /* the log's copy of the position moves back (as if its file were older): the warehouse's
     * offset decides, so nothing is loaded twice */
    assert_int_equal(evlog_consumer_commit(f->log, "warehouse-events", "events", 0), 0);
    /* reopen everything, as after a crash, and add more */
    fx_close(f);
    fx_open(f);
    append_events(f, 500, 700);
    p = start(f, 50000);
    wait_caught_up(f, p);
    pipeline_stop(p);
    assert_rows(f->c,
                "SELECT count(*), count(DISTINCT id), min(log_offset), max(log_offset) "
                "FROM events",
                "[[1200,1200,0,1199]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "warehouse-events", &next), 0);
    assert_int_equal(next, 1200);
}

/* Waits until the log knows the loader's position pos (registered when it finds the log
 * drained). */
static void wait_registered(struct fx *f, uint64_t pos)
{
    uint64_t lpos = 0;
    bool known = false;
    for (int i = 0; i < 500 && !(known && lpos == pos); i++) {
        usleep(10000);
        known = evlog_consumer_get(f->log, "warehouse-events", "events", &lpos) == 0;
    }
    assert_true(known);
    assert_int_equal(lpos, pos);
}

/* The log's own retention never deletes what the warehouse loader has not committed: the
 * loader registers its committed position, and retention (here: keep 1 byte, run every 5 ms)
 * keeps every segment from that position on, however long the loader is away. */
static void test_log_retention_keeps_unloaded_records(void **state)
{
    struct fx *f = *state;
    evlog_close(f->log);
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = f->logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    lc.segment_bytes = 16384;
    lc.retention_bytes = 1;
    lc.retention_check_us = 5000;
    assert_int_equal(evlog_open(&lc, &f->log), 0);
    /* the loader registers its position as it starts (a consumer that never registered holds
     * nothing back) */
    struct pipeline *p = start(f, 50000);
    wait_registered(f, 0);
    for (uint64_t i = 0; i < 500; i += 100)
        append_events(f, i, 100);
    wait_caught_up(f, p);
    wait_registered(f, 500);
    pipeline_stop(p);
    assert_rows(f->c, "SELECT count(*), min(log_offset) FROM events", "[[500,0]]");
    /* the loader is away: 3000 more records over many segments (an append never splits) */
    for (uint64_t i = 500; i < 3500; i += 100)
        append_events(f, i, 100);
    usleep(50000);
    assert_int_equal(evlog_retain(f->log), 0);
    uint64_t first = 0;
    assert_int_equal(evlog_start_offset(f->log, "events", &first), 0);
    assert_true(first > 0);    /* loaded records went */
    assert_true(first <= 500); /* the unloaded ones stayed */
    p = start(f, 50000);
    wait_caught_up(f, p);
    struct pipeline_status st[5];
    assert_int_equal(pipeline_status(p, st, 5), 5);
    assert_string_equal(st[0].last_error, ""); /* no "deleted by retention before loading" */
    pipeline_stop(p);
    assert_rows(f->c, "SELECT count(*), count(DISTINCT id), max(log_offset) FROM events",
                "[[3500,3500,3499]]");

    /* once loaded, retention lets them go */
    wait_registered(f, 3500);
    assert_int_equal(evlog_retain(f->log), 0);
    assert_int_equal(evlog_start_offset(f->log, "events", &first), 0);
    assert_true(first > 3000);
}

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

static void test_failed_load_is_retried(void **state)
{
    struct fx *f = *state;
    append_events(f, 0, 10);
    struct pipeline *p = start(f, 1000);
    wait_caught_up(f, p);
    /* the events table disappears: loads fail, the error shows, nothing moves */
    raw_exec(f, "ALTER TABLE events RENAME TO events_away");
    append_events(f, 10, 20);
    struct pipeline_status st[5];
    for (int i = 0; i < 500; i++) {
        pipeline_status(p, st, 5);
        if (st[0].last_error[0])
            break;
        usleep(10000);
    }
    assert_non_null(strstr(st[0].last_error, "cannot load 20 records at 10"));
    assert_int_equal(st[0].committed, 10);
    assert_int_equal(st[0].lag_records, 20);
    json_t *js = pipeline_status_json(p);
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_array_get(json_object_get(js, "consumers"), 0), "lastError")),
                           "events"));
    json_decref(js);
    /* it comes back: the consumer recovers on its own and loads each record once */
    raw_exec(f, "ALTER TABLE events_away RENAME TO events");
    wait_caught_up(f, p);
    pipeline_status(p, st, 5);
    assert_string_equal(st[0].last_error, "");
    pipeline_stop(p);
    assert_rows(f->c, "SELECT count(*), count(DISTINCT id), max(log_offset) FROM events",
                "[[30,30,29]]");
}

/* With read-ahead the batch after a failing one is already read and parsed when the load
 * fails; it must be dropped and the failed batch read again, in both modes: every record
 * loaded once, offsets dense. */
static void failed_load_with_backlog(struct fx *f, bool read_ahead)
{
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    cfg.log = f->log;
    cfg.wh = f->wh;
    cfg.idle_wait_us = 2000;
    cfg.min_batch = 100;
    cfg.max_batch = 400;
    cfg.retry_max_us = 20000;
    cfg.read_ahead = read_ahead;
    struct pipeline *p;
    assert_int_equal(pipeline_start(&cfg, &p), 0); /* creates the tables */
    raw_exec(f, "ALTER TABLE events RENAME TO events_away");
    append_events(f, 0, 3000);
    struct pipeline_status st[5];
    for (int i = 0; i < 500; i++) {
        pipeline_status(p, st, 5);
        if (st[0].last_error[0])
            break;
        usleep(10000);
    }
    usleep(50000); /* a few failed retries */
    pipeline_status(p, st, 5);
    assert_non_null(strstr(st[0].last_error, "cannot load 100 records at 0"));
    assert_int_equal(st[0].committed, 0);
    raw_exec(f, "ALTER TABLE events_away RENAME TO events");
    wait_caught_up(f, p);
    pipeline_status(p, st, 5);
    assert_true(st[0].batches > 3); /* several batches, so reads ran ahead of loads */
    pipeline_stop(p);
    assert_rows(f->c,
                "SELECT count(*), count(DISTINCT id), count(DISTINCT log_offset), "
                "min(log_offset), max(log_offset) FROM events",
                "[[3000,3000,3000,0,2999]]");
    assert_rows(f->c, "SELECT count(*) FROM events WHERE id <> concat('m', log_offset::VARCHAR)",
                "[[0]]");
}

static void test_failed_load_read_ahead(void **state)
{
    failed_load_with_backlog(*state, true);
}

static void test_failed_load_no_read_ahead(void **state)
{
    failed_load_with_backlog(*state, false);
}

/* With a backlog of at least bulk_rows the events consumer joins batches into transactions of
 * exactly bulk_rows rows (reads sized to end there); caught up, every batch commits alone. A
 * transaction whose closing batch fails is rolled back as a whole and read again: every record
 * once. */
static void test_bulk_transactions(void **state)
{
    struct fx *f = *state;
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    cfg.log = f->log;
    cfg.wh = f->wh;
    cfg.idle_wait_us = 2000;
    cfg.min_batch = 100;
    cfg.max_batch = 300;
    cfg.bulk_rows = 1000;
    cfg.retry_max_us = 20000;
    append_events(f, 0, 10);
    struct pipeline *p;
    assert_int_equal(pipeline_start(&cfg, &p), 0);
    wait_caught_up(f, p);
    struct pipeline_status st[5];
    pipeline_status(p, st, 5);
    assert_int_equal(st[0].transactions, 1);
    /* another writer holds the consumer's _offsets row: the batches of the next transaction
     * append, its closing batch cannot store the offset */
    duckdb_connection other;
    assert_int_equal(duckdb_connect(((struct whd *)f->wh)->db, &other), DuckDBSuccess);
    duckdb_result res;
    assert_int_equal(duckdb_query(other, "BEGIN", &res), DuckDBSuccess);
    duckdb_destroy_result(&res);
    assert_int_equal(duckdb_query(other,
                                  "UPDATE _offsets SET next_offset = 99 "
                                  "WHERE consumer = 'warehouse-events'",
                                  &res),
                     DuckDBSuccess);
    duckdb_destroy_result(&res);
    append_events(f, 10, 3000);
    for (int i = 0; i < 500; i++) {
        pipeline_status(p, st, 5);
        if (st[0].last_error[0])
            break;
        usleep(10000);
    }
    assert_non_null(strstr(st[0].last_error, "cannot load"));
    usleep(100000); /* several rolled back attempts */
    pipeline_status(p, st, 5);
    assert_int_equal(st[0].committed, 10);
    assert_int_equal(st[0].rows, 10);
    assert_int_equal(duckdb_query(other, "ROLLBACK", &res), DuckDBSuccess);
    duckdb_destroy_result(&res);
    duckdb_disconnect(&other);
    wait_caught_up(f, p);
    pipeline_status(p, st, 5);
    assert_string_equal(st[0].last_error, "");
    assert_int_equal(st[0].rows, 3010);
    /* 3000 records in three transactions of 1000, each of several reads of at most 300 */
    assert_int_equal(st[0].transactions, 1 + 3);
    assert_true(st[0].batches >= 1 + 3 * 4);
    uint64_t tx = st[0].transactions;
    /* caught up: a single record is its own transaction, and visible at once */
    append_events(f, 3010, 1);
    wait_caught_up(f, p);
    pipeline_status(p, st, 5);
    assert_int_equal(st[0].transactions, tx + 1);
    pipeline_stop(p);
    assert_rows(f->c,
                "SELECT count(*), count(DISTINCT id), count(DISTINCT log_offset), "
                "min(log_offset), max(log_offset) FROM events",
                "[[3011,3011,3011,0,3010]]");
    assert_rows(f->c, "SELECT count(*) FROM events WHERE id <> concat('m', log_offset::VARCHAR)",
                "[[0]]");
}

/* After draining a backlog of bulk_rows or more the events consumer brings the identity
 * tables up to date itself, before its status shows it caught up (the first insight after a
 * large load must not carry that refresh); a consumer that keeps up leaves them to the
 * persons thread (which never runs here: its period is an hour). */
static void test_refresh_after_backlog(void **state)
{
    struct fx *f = *state;
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    cfg.log = f->log;
    cfg.wh = f->wh;
    cfg.idle_wait_us = 2000;
    cfg.min_batch = 100;
    cfg.max_batch = 300;
    cfg.bulk_rows = 1000;
    cfg.persons_refresh_us = 3600 * 1000000LL;
    append_events(f, 0, 10);
    struct pipeline *p;
    assert_int_equal(pipeline_start(&cfg, &p), 0);
    wait_caught_up(f, p);
    assert_rows(f->c, "SELECT count(*) FROM _persons_state", "[[0]]");
    append_events(f, 10, 2500);
    wait_caught_up(f, p);
    assert_rows(f->c, "SELECT count(*), max(next_offset) FROM _persons_state", "[[1,2510]]");
    assert_rows(f->c, "SELECT count(*) FROM _did_first", "[[7]]");
    pipeline_stop(p);
}

/* A consumer stopped in the middle of a transaction commits what it appended. */
static void test_stop_commits_open_transaction(void **state)
{
    struct fx *f = *state;
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    cfg.log = f->log;
    cfg.wh = f->wh;
    cfg.min_batch = 100;
    cfg.max_batch = 100;
    cfg.bulk_rows = 40000;
    append_events(f, 0, 50000);
    struct pipeline *p;
    assert_int_equal(pipeline_start(&cfg, &p), 0);
    usleep(30000);
    /* 500 reads of 100 take longer than this: the transaction is open, nothing committed */
    struct pipeline_status st[5];
    pipeline_status(p, st, 5);
    assert_int_equal(st[0].committed, 0);
    assert_int_equal(st[0].transactions, 0);
    pipeline_stop(p);
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "warehouse-events", &next), 0);
    assert_true(next > 0);
    char sql[200], want[100];
    snprintf(sql, sizeof(sql),
             "SELECT count(*), count(DISTINCT id), max(log_offset) + 1 FROM events");
    snprintf(want, sizeof(want), "[[%llu,%llu,%llu]]", (unsigned long long)next,
             (unsigned long long)next, (unsigned long long)next);
    assert_rows(f->c, sql, want);
}

static void test_stop_when_idle_and_empty(void **state)
{
    struct fx *f = *state;
    /* no topic exists yet: consumers wait, status is zero, stop is prompt */
    struct pipeline *p = start(f, 1000);
    usleep(20000);
    struct pipeline_status st[5];
    pipeline_status(p, st, 5);
    assert_int_equal(st[0].committed, 0);
    assert_int_equal(st[0].rows, 0);
    int64_t t0 = time_mono_us();
    pipeline_stop(p);
    assert_true(time_mono_us() - t0 < 1000000);
    struct pipeline_cfg cfg;
    pipeline_cfg_defaults(&cfg);
    assert_int_equal(pipeline_start(&cfg, &p), ERR_INVALID); /* no log, no warehouse */
}

static void test_parse_event(void **state)
{
    UNUSED(state);
    struct wh_event ev;
    struct arena a;
    arena_init(&a, 4096);
    char reason[200];
    const char ok[] = " {\"messageId\":\"m1\",\"type\":\"identify\",\"userId\":\"u\\u00e9\\\"\","
                      "\"traits\": {\"a\" : [1.5e3, {\"b\":null}]},\"sentAt\":"
                      "\"2026-01-01T00:00:00+01:00\",\"timestamp\":\"\",\"x\":true,"
                      "\"event\":null,\"us\\u0065rId\":\"last wins\"} ";
    assert_int_equal(pipeline_parse_event(ok, strlen(ok), 7, &ev, &a, reason, 200), 0);
    assert_string_equal(ev.id, "m1");
    assert_string_equal(ev.type, "identify");
    assert_int_equal(ev.log_offset, 7);
    assert_null(ev.event);
    assert_null(ev.properties);
    assert_string_equal(ev.user_id, "last wins");
    assert_string_equal(ev.traits, "{\"a\" : [1.5e3, {\"b\":null}]}");
    assert_true(ev.sent_at_us == 1767222000000000LL);
    assert_true(ev.timestamp_us == WH_NO_TIME);
    const char esc[] = "{\"messageId\":\"m\\u00e9\\ud83d\\ude00\\n\\\"\",\"type\":\"t\"}";
    assert_int_equal(pipeline_parse_event(esc, strlen(esc), 0, &ev, &a, reason, 200), 0);
    assert_string_equal(ev.id, "m\xc3\xa9\xf0\x9f\x98\x80\n\"");
    /* \u0000 is refused only in the members the loader decodes; nested JSON keeps it as written */
    const char nul[] = "{\"messageId\":\"m\",\"type\":\"t\",\"properties\":{\"a\":\"\\u0000\"}}";
    assert_int_equal(pipeline_parse_event(nul, strlen(nul), 0, &ev, &a, reason, 200), 0);
    assert_string_equal(ev.properties, "{\"a\":\"\\u0000\"}");
    struct {
        const char *in, *why;
    } bad[] = {
        {"[1]", "not a JSON object"},
        {"not json", "not JSON: unexpected character at byte 0"},
        {"{\"a\":1,}", "not JSON: expected a key at byte 7"},
        {"{\"a\":\"\xff\"}", "not JSON: invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xc0\xaf\"}", "not JSON: invalid UTF-8 at byte 6"},
        {"{\"a\":\"\\ud800\"}", "not JSON: lone surrogate at byte 12"},
        {"{\"a\":01}", "not JSON: expected ',' or '}' at byte 6"},
        {"{\"a\":[1,2]", "not JSON: expected ',' or '}' at byte 10"},
        {"{\"a\":", "not JSON: unexpected end at byte 5"},
        {"{\"a\":1} x", "not JSON: trailing characters at byte 8"},
        {"{\"a\":\"x\ty\"}", "not JSON: control character in a string at byte 7"},
        {"{\"a\":\"\\x\"}", "not JSON: bad escape at byte 8"},
        {"{\"a\":\"\\u12", "not JSON: short \\u escape at byte 8"},
        {"{\"a\" 1}", "not JSON: expected ':' at byte 5"},
        {"{\"a\":-}", "not JSON: bad number at byte 5"},
        {"{\"a\":[1 2]}", "not JSON: expected ',' or ']' at byte 8"},
        {"{\"messageId\":\"a\\u0000b\",\"type\":\"t\"}", "messageId: contains a NUL character"},
        {"{\"type\":\"track\"}", "messageId: missing"},
        {"{\"messageId\":\"m\"}", "type: missing"},
        {"{\"messageId\":\"m\",\"type\":\"t\",\"userId\":5}", "userId: not a string"},
        {"{\"messageId\":\"m\",\"type\":\"t\",\"properties\":[1]}", "properties: not an object"},
        {"{\"messageId\":\"m\",\"type\":\"t\",\"sentAt\":\"2026-13-01\"}",
         "sentAt: not an ISO 8601 date"},
        {"{\"messageId\":\"m\",\"type\":\"t\",\"context\":{},\"traits\":3}",
         "traits: not an object"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        reason[0] = 0;
        if (pipeline_parse_event(bad[i].in, strlen(bad[i].in), 0, &ev, &a, reason, 200) !=
            ERR_INVALID)
            fail_msg("accepted %s", bad[i].in);
        assert_string_equal(reason, bad[i].why);
    }
    /* deep nesting is refused, not a stack overflow */
    struct buf deep;
    buf_init(&deep);
    buf_puts(&deep, "{\"messageId\":\"m\",\"type\":\"t\",\"properties\":");
    for (int i = 0; i < 100; i++)
        buf_puts(&deep, "{\"a\":");
    buf_puts(&deep, "1");
    for (int i = 0; i < 100; i++)
        buf_putc(&deep, '}');
    buf_putc(&deep, '}');
    assert_int_equal(pipeline_parse_event(deep.ptr, deep.len, 0, &ev, &a, reason, 200),
                     ERR_INVALID);
    assert_non_null(strstr(reason, "nested too deeply"));
    buf_release(&deep);
    arena_release(&a);
}

/* Long strings are scanned eight bytes at a time: every kind of byte that needs a closer look
 * is found at every position of a word, with the exact offset in the reason. */
static void test_parse_event_long_strings(void **state)
{
    UNUSED(state);
    struct wh_event ev;
    struct arena a;
    arena_init(&a, 4096);
    char reason[200], in[256], want[200];
    const char pre[] = "{\"type\":\"t\",\"messageId\":\"";
    size_t at0 = sizeof(pre) - 1; /* offset of the string body */
    for (size_t pos = 0; pos < 20; pos++) {
        char body[64];
        memset(body, 'a', pos);
        body[pos] = 0;
        /* a control character, a backslash escape, a quote that ends the string early, a
         * two-byte UTF-8 character, a byte that is never UTF-8 */
        snprintf(in, sizeof(in),
                 "%s%s\x01"
                 "bbbbbbbbbbbb\"}",
                 pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200),
                         ERR_INVALID);
        snprintf(want, sizeof(want), "not JSON: control character in a string at byte %zu",
                 at0 + pos);
        assert_string_equal(reason, want);

        snprintf(in, sizeof(in), "%s%s\\\"bbbbbbbbbbbb\"}", pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200), 0);
        snprintf(want, sizeof(want), "%s\"bbbbbbbbbbbb", body);
        assert_string_equal(ev.id, want);

        snprintf(in, sizeof(in), "%s%s\",\"userId\":\"uuuuuuuuuuuu\"}", pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200), 0);
        assert_string_equal(ev.id, body);
        assert_string_equal(ev.user_id, "uuuuuuuuuuuu");

        snprintf(in, sizeof(in),
                 "%s%s\xc3\xa9"
                 "bbbbbbbbbbbb\"}",
                 pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200), 0);
        snprintf(want, sizeof(want),
                 "%s\xc3\xa9"
                 "bbbbbbbbbbbb",
                 body);
        assert_string_equal(ev.id, want);

        snprintf(in, sizeof(in),
                 "%s%s\xff"
                 "bbbbbbbbbbbb\"}",
                 pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200),
                         ERR_INVALID);
        snprintf(want, sizeof(want), "not JSON: invalid UTF-8 at byte %zu", at0 + pos);
        assert_string_equal(reason, want);

        /* a string cut short inside a word */
        snprintf(in, sizeof(in), "%s%sbbbbbbbbb", pre, body);
        assert_int_equal(pipeline_parse_event(in, strlen(in), 0, &ev, &a, reason, 200),
                         ERR_INVALID);
        assert_non_null(strstr(reason, "unterminated string"));
    }
    /* DEL (0x7f) and the bytes around the tested ranges are plain */
    const char plain[] = "{\"type\":\"t\",\"messageId\":\"\x7f !#[]~\x7f\x7f !#[]~\x7f\"}";
    assert_int_equal(pipeline_parse_event(plain, strlen(plain), 0, &ev, &a, reason, 200), 0);
    assert_string_equal(ev.id, "\x7f !#[]~\x7f\x7f !#[]~\x7f");
    arena_release(&a);
}

static void test_parse_change(void **state)
{
    UNUSED(state);
    struct wh_change ch;
    json_t *doc;
    char reason[200];
    const char ok[] = "{\"id\":9007199254740993,\"collection\":\"c\",\"collectionId\":\"pbc\","
                      "\"recordId\":\"r\",\"action\":\"delete\",\"record\":null,"
                      "\"changedAt\":\"2026-01-01 00:00:00.000Z\"}";
    assert_int_equal(pipeline_parse_change(ok, strlen(ok), 3, &ch, &doc, reason, 200), 0);
    assert_true(ch.id == 9007199254740993LL);
    assert_int_equal(ch.action, WH_ACTION_DELETE);
    assert_null(ch.record);
    assert_string_equal(ch.record_id, "r");
    json_decref(doc);
    struct {
        const char *in, *why;
    } bad[] = {
        {"{\"collectionId\":\"c\",\"recordId\":\"r\",\"action\":\"zap\",\"record\":{}}",
         "action: zap is not create, update or delete"},
        {"{\"collectionId\":\"c\",\"action\":\"create\",\"record\":{}}", "recordId: missing"},
        {"{\"recordId\":\"r\",\"action\":\"create\",\"record\":{}}", "collectionId: missing"},
        {"{\"collectionId\":\"c\",\"recordId\":\"r\",\"action\":\"create\"}",
         "record: missing on create/update"},
        {"{\"collectionId\":\"c\",\"recordId\":\"r\",\"action\":\"create\",\"record\":[]}",
         "record: not an object"},
        {"{\"id\":\"x\",\"collectionId\":\"c\",\"recordId\":\"r\",\"action\":\"delete\"}",
         "id: not an integer"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(
            pipeline_parse_change(bad[i].in, strlen(bad[i].in), 0, &ch, &doc, reason, 200),
            ERR_INVALID);
        assert_string_equal(reason, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_from_warehouse_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_retention_keeps_unloaded_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_load_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_load_read_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_load_no_read_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_after_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_commits_open_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_when_idle_and_empty, setup, teardown),
        cmocka_unit_test(test_parse_event),
        cmocka_unit_test(test_parse_event_long_strings),
        cmocka_unit_test(test_parse_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
