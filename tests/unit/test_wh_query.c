/* Warehouse read-only SQL API on DuckDB: the statement guard, parameters, errors, the
 * timeout, the row cap and the mapping of every DuckDB type to JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sys/stat.h>

#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    wht_path(f->path, sizeof(f->path), "whq");
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.threads = 2;
    cfg.query_max_rows = 1000;
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    assert_int_equal(wh_ensure_schema(f->c), 0);
    struct wh_event ev = {.log_offset = 0,
                          .id = "m0",
                          .type = "track",
                          .event = "e",
                          .timestamp_us = 0,
                          .original_timestamp_us = WH_NO_TIME,
                          .sent_at_us = WH_NO_TIME,
                          .received_at_us = WH_NO_TIME};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 1};
    assert_int_equal(wh_load_events(f->c, &ld, &ev, 1, NULL), 0);
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

static int run(struct fx *f, const char *sql)
{
    struct wh_query q = {.sql = sql};
    struct wh_result r;
    int rc = wh_query(f->c, &q, &r);
    if (rc == 0)
        wh_result_release(&r);
    return rc;
}

static void test_guard_refuses_writes(void **state)
{
    struct fx *f = *state;
    const char *denied[] = {
        "INSERT INTO events (id) VALUES ('x')",
        "UPDATE events SET id = 'y'",
        "DELETE FROM events",
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE MACRO m(a) AS a",
        "DROP TABLE events",
        "ALTER TABLE events ADD COLUMN z INT",
        "ATTACH ':memory:' AS other",
        "DETACH other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "RESET threads",
        "PRAGMA threads = 1",
        "USE memory",
        "CALL checkpoint()",
        "CHECKPOINT",
        "VACUUM",
        "BEGIN",
        "COMMIT",
        "EXPLAIN ANALYZE DELETE FROM events",
        "PREPARE p AS SELECT 1",
        "INSERT INTO events (id) SELECT 'x' RETURNING id",
        "SELECT 1; SELECT 2",
        "SELECT 1; DELETE FROM events",
    };
    for (size_t i = 0; i < ARRAY_LEN(denied); i++) {
        int rc = run(f, denied[i]);
        if (rc != ERR_DENIED)
            fail_msg("%s: rc %d (%s)", denied[i], rc, wh_errmsg(f->c));
    }
    assert_non_null(strstr(wh_errmsg(f->c), "one statement"));
    /* statements that reach files are refused by the engine itself */
    char out[1200];
    snprintf(out, sizeof(out), "%s.csv", f->path);
    char sql[1400];
    snprintf(sql, sizeof(sql), "COPY events TO '%s'", out);
    assert_int_equal(run(f, sql), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(f->c), "disabled by configuration"));
    struct stat sb;
    assert_int_equal(stat(out, &sb), -1);
    snprintf(sql, sizeof(sql), "EXPORT DATABASE '%s.dir'", f->path);
    assert_true(run(f, sql) < 0);
    assert_int_equal(run(f, "SELECT * FROM read_csv('/etc/passwd')"), ERR_INVALID);
    assert_int_equal(run(f, "SELECT * FROM query('DELETE FROM events')"), ERR_INVALID);
    /* a SELECT that would write is stopped by the read-only transaction */
    assert_int_equal(run(f, "SELECT nextval('no_such_seq')"), ERR_INVALID);
    /* nothing changed */
    assert_rows(f->c, "SELECT count(*), min(id) FROM events", "[[1,\"m0\"]]");
}

static void test_guard_accepts_reads(void **state)
{
    struct fx *f = *state;
    const char *ok[] = {
        "SELECT 1",
        "WITH x AS (SELECT id FROM events) SELECT count(*) FROM x",
        "FROM events",
        "DESCRIBE events",
        "SHOW TABLES",
        "SUMMARIZE events",
        "PRAGMA table_info('events')",
        "SELECT * FROM duckdb_tables()",
        "  select 1 ; ", /* one statement with a trailing semicolon */
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        int rc = run(f, ok[i]);
        if (rc != 0)
            fail_msg("%s: rc %d (%s)", ok[i], rc, wh_errmsg(f->c));
    }
}

/* SQL built at run time: every function that binds or runs SQL given as text is refused on
 * DuckDB's parse of the statement, whatever the text looks like, so a C aggregate can never
 * be reached as a window function through it (DuckDB 1.4.4 then hands the aggregate one state
 * for every row: the server died with SIGSEGV). */
#define WIN_BITCOUNT "SELECT tandem_bitcount(range::UBIGINT) OVER () FROM range(5000)"
static void test_guard_runtime_sql(void **state)
{
    struct fx *f = *state;
    /* the PRAGMA form takes the serialized statement itself */
    char *tree = wht_rows(f->c, "SELECT json_serialize_sql('" WIN_BITCOUNT "')::VARCHAR");
    assert_non_null(tree);
    json_t *rows = json_loads(tree, 0, NULL);
    free(tree);
    struct buf pragma;
    buf_init(&pragma);
    buf_puts(&pragma, "PRAGMA json_execute_serialized_sql('");
    for (const char *p = json_string_value(json_array_get(json_array_get(rows, 0), 0)); *p; p++)
        buf_puts(&pragma, *p == '\'' ? "''" : (char[]){*p, 0});
    buf_puts(&pragma, "')");
    json_decref(rows);
    const struct {
        const char *sql, *why;
    } refused[] = {
        {"SELECT count(*) FROM query('" WIN_BITCOUNT "')", "query() is not allowed"},
        {"SELECT count(*) FROM query('SELECT tandem_' || 'funnel(TIMESTAMP ''2024-01-01'' + "
         "INTERVAL (range) SECOND, 1::UINTEGER, 2, 1, ''ordered'', '''') OVER () FROM "
         "range(5000)')",
         "query() is not allowed"},
        {"SELECT * FROM MAIN.\"QUERY\"('SELECT 1')", "query() is not allowed"},
        {"SELECT * FROM query_table('events')", "query_table() is not allowed"},
        {"SELECT count(*) FROM json_execute_serialized_sql(json_serialize_sql('" WIN_BITCOUNT "'))",
         "json_execute_serialized_sql() is not allowed"},
        {"SELECT json_serialize_plan('SELECT 1')", "json_serialize_plan() is not allowed"},
        {buf_cstr(&pragma), "Only SELECT statements"},
        {"SELECT * FROM checkpoint()", "checkpoint() is not allowed"},
        {"SELECT * FROM enable_logging()", "enable_logging() is not allowed"},
        {"SELECT (SELECT 1 FROM query('SELECT 1'))", "query() is not allowed"},
        {"  /* x */ PRAGMA table_info('events')", "Only SELECT statements"},
    };
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        int rc = run(f, refused[i].sql);
        if (rc != ERR_DENIED || !strstr(wh_errmsg(f->c), refused[i].why))
            fail_msg("%.80s: rc %d (%s)", refused[i].sql, rc, wh_errmsg(f->c));
    }
    buf_release(&pragma);
    /* reading PRAGMAs, the names as data, an aggregate called by name over a list */
    assert_rows(f->c, "SELECT 'query(''x'')' AS s", "[[\"query('x')\"]]");
    assert_rows(f->c, "SELECT list_aggregate([1, 2, 3]::UBIGINT[], 'tandem_bitcount')[1:3]",
                "[[[2,2,0]]]");
    assert_int_equal(run(f, "PRAGMA show_tables"), 0);
    assert_int_equal(run(f, "\n pragma TABLE_INFO('events');"), 0);
    assert_rows(f->c, "SELECT 7", "[[7]]");
}

/* The engine's limits are always set, never its defaults (80 % of RAM, 90 % of the disk). */
static void test_engine_limits(void **state)
{
    struct fx *f = *state;
    assert_rows(
        f->c, "SELECT current_setting('memory_limit'), current_setting('max_temp_directory_size')",
        "[[\"1.8 GiB\",\"3.7 GiB\"]]");
}

static void test_bad_query_and_params(void **state)
{
    struct fx *f = *state;
    assert_int_equal(run(f, "SELEC 1"), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(f->c), "Parser Error"));
    assert_int_equal(run(f, "SELECT nope FROM events"), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(f->c), "nope"));
    assert_int_equal(run(f, ""), ERR_INVALID);
    /* parameters */
    json_t *params =
        json_pack("[I,s,b,n,f,[i,i]]", (json_int_t)9007199254740993LL, "x'y", 1, 2.5, 1, 2);
    struct wh_query q = {.sql = "SELECT $1::BIGINT + 1, $2, $3, $4, $5, $6::JSON",
                         .params = params};
    struct wh_result r;
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    char *s = json_dumps(r.rows, JSON_COMPACT);
    assert_string_equal(s, "[[9007199254740994,\"x'y\",true,null,2.5,[1,2]]]");
    free(s);
    wh_result_release(&r);
    json_decref(params);
    params = json_pack("[i]", 1);
    q.sql = "SELECT $1, $2";
    q.params = params;
    assert_int_equal(wh_query(f->c, &q, &r), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(f->c), "2 parameters, 1 given"));
    json_decref(params);
    /* the connection still works after every failure */
    assert_rows(f->c, "SELECT 42", "[[42]]");
}

static void test_timeout_interrupts(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {
        .sql = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + "
               "b.range = -1",
        .timeout_ms = 200};
    struct wh_result r;
    int64_t t0 = time_mono_us();
    assert_int_equal(wh_query(f->c, &q, &r), ERR_BUSY);
    int64_t took = time_mono_us() - t0;
    assert_true(took >= 150000);
    assert_true(took < 10000000);
    assert_non_null(strstr(wh_errmsg(f->c), "timeout"));
    /* the next query on the same connection is not affected */
    assert_rows(f->c, "SELECT 7", "[[7]]");
}

/* The timeout covers preparing: DuckDB folds constants there, so a statement whose one
 * function call runs long was prepared past its timeout and then answered. */
static void test_timeout_covers_preparation(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {.sql = "SELECT length(repeat('x', 40000000))", .timeout_ms = 50};
    struct wh_result r;
    int64_t t0 = time_mono_us();
    assert_int_equal(wh_query(f->c, &q, &r), ERR_BUSY);
    assert_true(time_mono_us() - t0 < 60000000); /* a safety bound only */
    assert_non_null(strstr(wh_errmsg(f->c), "50 ms timeout"));
    assert_rows(f->c, "SELECT length(repeat('x', 1000))", "[[1000]]");
}

struct stopper {
    struct wh_conn *c;
    int64_t delay_us;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    usleep((useconds_t)s->delay_us);
    wh_interrupt(s->c);
    return NULL;
}

/* wh_interrupt (shutdown) stops the running query whatever step it is in, and every later
 * one at once: a stop that arrived between two steps was lost and the query ran on. */
static void test_interrupt_stops_for_good(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {.sql = "SELECT count(*) FROM range(100000000000) a(x) WHERE x % 7 = 3",
                         .timeout_ms = 120000};
    struct wh_result r;
    struct stopper s = {.c = f->c, .delay_us = 200000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_later, &s), 0);
    int64_t t0 = time_mono_us();
    assert_int_equal(wh_query(f->c, &q, &r), ERR_BUSY);
    assert_true(time_mono_us() - t0 < 60000000); /* a safety bound only */
    pthread_join(th, NULL);
    assert_non_null(strstr(wh_errmsg(f->c), "stopping"));
    q.sql = "SELECT 1";
    assert_int_equal(wh_query(f->c, &q, &r), ERR_BUSY);
    assert_non_null(strstr(wh_errmsg(f->c), "stopping"));
}

/* The result is capped in bytes as well as rows: past the cap the query fails (ERR_LIMIT), and
 * a single large value is refused before it is copied. */
static void test_byte_cap(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {.sql = "SELECT range, repeat('x', 100) FROM range(100)",
                         .max_bytes = 2000};
    struct wh_result r;
    assert_int_equal(wh_query(f->c, &q, &r), ERR_LIMIT);
    assert_non_null(strstr(wh_errmsg(f->c), "larger than 2000 bytes"));
    q.sql = "SELECT repeat('x', 100000)";
    assert_int_equal(wh_query(f->c, &q, &r), ERR_LIMIT);
    /* below the cap: the whole result */
    q.sql = "SELECT range, repeat('x', 100) FROM range(10)";
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    assert_int_equal(r.n_rows, 10);
    json_t *j = wh_result_to_json(&r);
    char *text = json_dumps(j, WH_RESULT_JSON_FLAGS);
    assert_true(strlen(text) < 2000);
    free(text);
    json_decref(j);
    wh_result_release(&r);
    /* the configured default (32 MiB) */
    q.max_bytes = 0;
    q.sql = "SELECT repeat('x', 40 * 1024 * 1024)";
    assert_int_equal(wh_query(f->c, &q, &r), ERR_LIMIT);
}

static void test_row_cap(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {.sql = "SELECT range AS n FROM range(5000)", .max_rows = 100};
    struct wh_result r;
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    assert_int_equal(r.n_rows, 100);
    assert_true(r.truncated);
    assert_int_equal(json_array_size(r.rows), 100);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(r.rows, 99), 0)), 99);
    wh_result_release(&r);
    /* exactly the cap: not truncated */
    q.sql = "SELECT range FROM range(100)";
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    assert_int_equal(r.n_rows, 100);
    assert_false(r.truncated);
    wh_result_release(&r);
    /* the configured default cap (1000 here) */
    q.sql = "SELECT range FROM range(3000)";
    q.max_rows = 0;
    assert_int_equal(wh_query(f->c, &q, &r), 0);
    assert_int_equal(r.n_rows, 1000);
    assert_true(r.truncated);
    json_t *j = wh_result_to_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "rowCount")), 1000);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_true(json_is_integer(json_object_get(j, "elapsedMs")));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "columns"), 0), "name")),
                        "range");
    json_decref(j);
    wh_result_release(&r);
}

static void test_type_mapping(void **state)
{
    struct fx *f = *state;
    struct wh_query q = {
        .sql =
            "SELECT 9007199254740993::BIGINT AS big, (-9223372036854775808)::BIGINT AS minb,"
            " 18446744073709551615::UBIGINT AS ubig, 42::UBIGINT AS usmall,"
            " 170141183460469231731687303715884105727::HUGEINT AS huge,"
            " (-5)::HUGEINT AS hsmall, 7::TINYINT AS ti, 1.5::DOUBLE AS d, 0.25::FLOAT AS fl,"
            " 'inf'::DOUBLE AS dinf, 'héllo'::VARCHAR AS s, true AS b, NULL AS n,"
            " DATE '2024-02-29' AS dt, TIMESTAMP '2024-01-02 03:04:05.678' AS ts,"
            " TIMESTAMP '2024-01-02 03:04:05.678901' AS tsu,"
            " '2024-01-02 03:04:05+02'::TIMESTAMPTZ AS tstz, TIME '13:14:15' AS tm,"
            " '{\"a\":[1,2],\"b\":null}'::JSON AS j, [1,2,3] AS l, ['x',NULL] AS ls,"
            " {'a': 1, 'b': 'x'} AS st, 12.34::DECIMAL(10,2) AS dec,"
            " (-0.05)::DECIMAL(4,2) AS decneg, 123456789012345678901234.5::DECIMAL(38,1) AS dbig,"
            " '0f8fad5b-d9cb-469f-a165-70867728950e'::UUID AS u, '\\xAA\\xBB'::BLOB AS bl,"
            " INTERVAL 2 DAY AS iv, MAP {'k': 1} AS mp, [1,2]::INTEGER[2] AS arr"};
    struct wh_result r;
    if (wh_query(f->c, &q, &r) != 0)
        fail_msg("%s", wh_errmsg(f->c));
    char *rows = json_dumps(r.rows, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert_string_equal(
        rows, "[[9007199254740993,-9223372036854775808,\"18446744073709551615\",42,"
              "\"170141183460469231731687303715884105727\",-5,7,1.5,0.25,\"Infinity\","
              "\"héllo\",true,null,\"2024-02-29\",\"2024-01-02T03:04:05.678Z\","
              "\"2024-01-02T03:04:05.678901Z\",\"2024-01-02T01:04:05.000Z\",\"13:14:15.000000\","
              "{\"a\":[1,2],\"b\":null},[1,2,3],[\"x\",null],{\"a\":1,\"b\":\"x\"},\"12.34\","
              "\"-0.05\",\"123456789012345678901234.5\",\"0f8fad5b-d9cb-469f-a165-70867728950e\","
              "\"qrs=\",{\"months\":0,\"days\":2,\"micros\":0},[{\"key\":\"k\",\"value\":1}],"
              "[1,2]]]");
    free(rows);
    char *cols = json_dumps(r.columns, JSON_COMPACT);
    assert_non_null(strstr(cols, "{\"name\":\"big\",\"type\":\"BIGINT\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"ubig\",\"type\":\"UBIGINT\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"j\",\"type\":\"JSON\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"l\",\"type\":\"INTEGER[]\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"dec\",\"type\":\"DECIMAL(10,2)\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"ts\",\"type\":\"TIMESTAMP\"}"));
    assert_non_null(strstr(cols, "{\"name\":\"st\",\"type\":\"STRUCT(\\\"a\\\" INTEGER, "
                                 "\\\"b\\\" VARCHAR)\"}"));
    free(cols);
    wh_result_release(&r);
    /* a timestamp before 1970 and the infinities */
    assert_rows(f->c,
                "SELECT TIMESTAMP '1969-12-31 23:59:59.999', 'infinity'::TIMESTAMP, "
                "'-infinity'::DATE",
                "[[\"1969-12-31T23:59:59.999Z\",\"infinity\",\"-infinity\"]]");
    /* sum of BIGINT is a HUGEINT: exact */
    assert_rows(f->c, "SELECT sum(x) FROM (VALUES (9007199254740993), (1)) t(x)",
                "[[9007199254740994]]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_guard_refuses_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_accepts_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_runtime_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_query_and_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_interrupts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_covers_preparation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_stops_for_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_type_mapping, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
