/* The funnel aggregate tandem_funnel (docs/analytics.md, "The funnel aggregate") on a real
 * in-memory DuckDB, registered through whd__funnel_register; one test goes through the
 * warehouse backend and its read-only SQL API.
 *
 * Events are written as (actor, seconds after 2024-01-01, mask); masks: A = 1, B = 2, C = 4
 * (steps 0, 1, 2), X = 1 << 20 (exclusion 0), Y = 1 << 21 (exclusion 1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "warehouse/duckdb/whd_int.h"
#include "wh_test_util.h"

#define DAY 86400LL
#define WEEK2 (14 * DAY)

struct fx {
    duckdb_database db;
    duckdb_connection con;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(duckdb_open(NULL, &f->db), DuckDBSuccess);
    assert_int_equal(duckdb_connect(f->db, &f->con), DuckDBSuccess);
    assert_int_equal(whd__funnel_register(f->con), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    duckdb_disconnect(&f->con);
    duckdb_close(&f->db);
    free(f);
    return 0;
}

/* Runs the query and returns its first value as text (caller frees), or "ERR: <message>". */
static char *q1(duckdb_connection con, const char *fmt, ...) PRINTF_LIKE(2, 3);
static char *q1(duckdb_connection con, const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    duckdb_result res;
    char *out;
    if (duckdb_query(con, sql, &res) != DuckDBSuccess) {
        const char *e = duckdb_result_error(&res);
        size_t n = strlen(e ? e : "") + 6;
        out = malloc(n);
        snprintf(out, n, "ERR: %s", e ? e : "");
    } else {
        char *v = duckdb_row_count(&res) ? duckdb_value_varchar(&res, 0, 0) : NULL;
        out = strdup(v ? v : "NULL");
        duckdb_free(v);
    }
    duckdb_destroy_result(&res);
    return out;
}

static void exec(duckdb_connection con, const char *sql)
{
    duckdb_result res;
    duckdb_state st = duckdb_query(con, sql, &res);
    if (st != DuckDBSuccess)
        fprintf(stderr, "%s: %s\n", sql, duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    assert_int_equal(st, DuckDBSuccess);
}

#define assert_q(con, expect, ...)                                                                 \
    do {                                                                                           \
        char *got_ = q1((con), __VA_ARGS__);                                                       \
        if (strcmp(got_, (expect)) != 0)                                                           \
            fprintf(stderr, "expected: %s\n     got: %s\n", (expect), got_);                       \
        assert_string_equal(got_, (expect));                                                       \
        free(got_);                                                                                \
    } while (0)

/* The query fails and its message contains want. */
#define assert_q_err(con, want, ...)                                                               \
    do {                                                                                           \
        char *got_ = q1((con), __VA_ARGS__);                                                       \
        if (strncmp(got_, "ERR: ", 5) != 0 || !strstr(got_, (want)))                               \
            fprintf(stderr, "expected an error with: %s\n     got: %s\n", (want), got_);           \
        assert_true(strncmp(got_, "ERR: ", 5) == 0);                                               \
        assert_non_null(strstr(got_, (want)));                                                     \
        free(got_);                                                                                \
    } while (0)

/* Creates table name(a VARCHAR, s BIGINT, m UINTEGER) from "('u1',0,1),(...)". */
static void mk(duckdb_connection con, const char *name, const char *values)
{
    char sql[8192];
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TABLE %s AS SELECT a::VARCHAR a, s::BIGINT s, m::UINTEGER m "
             "FROM (VALUES %s) v(a, s, m)",
             name, values);
    exec(con, sql);
}

/* "actor=[...] actor=[...]" for every actor of table, by actor. */
#define FUNNEL_SQL                                                                                 \
    "SELECT string_agg(a || '=' || f::VARCHAR, ' ' ORDER BY a) FROM (SELECT a, "                   \
    "tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, %d, %lld, '%s', '%s') f "            \
    "FROM %s GROUP BY a)"
#define assert_funnel(con, table, n, window_s, mode, ex, expect)                                   \
    assert_q(con, expect, FUNNEL_SQL, (n), (long long)(window_s)*1000000LL, mode, ex, table)

static const char *const u1_u6 =
    "('u1',0,1),('u1',3600,2),('u1',7200,4),"
    "('u2',0,1),('u2',864000,1),('u2',867600,2),"
    "('u3',0,1),('u3',1296000,2),"
    "('u4',0,2),('u4',3600,1),('u4',7200,4),"
    "('u5',0,1),('u5',86400,2),('u5',1728000,1),('u5',1731600,2),('u5',1735200,4),"
    "('u6',0,1),('u6',3600,0),('u6',7200,2)";

/* The reference's example: 1-based 3,2,1,1,3,2 with a 14-day window (Appendix A 1: u5's chain
 * restarts and the window runs from the new step 0). */
static void test_reference_ordered(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t", u1_u6);
    assert_funnel(f->con, "t", 3, WEEK2, "ordered", "",
                  "u1=[2.0, 3600.0, 3600.0] u2=[1.0, 3600.0] u3=[0.0] u4=[0.0] "
                  "u5=[2.0, 3600.0, 3600.0] u6=[1.0, 7200.0]");
}

/* Strict (Appendix A 3): u6's unrelated event between A and B breaks the chain. */
static void test_reference_strict(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t", u1_u6);
    assert_funnel(f->con, "t", 3, WEEK2, "strict", "",
                  "u1=[2.0, 3600.0, 3600.0] u2=[1.0, 3600.0] u3=[0.0] u4=[0.0] "
                  "u5=[2.0, 3600.0, 3600.0] u6=[0.0]");
    /* an unrelated event between B and C stops at B; between two A's nothing is lost */
    mk(f->con, "s",
       "('a',0,1),('a',60,2),('a',90,0),('a',120,4),"
       "('b',0,1),('b',30,0),('b',60,1),('b',90,2),('b',120,4),"
       "('c',0,1),('c',60,2),('c',60,4)");
    assert_funnel(f->con, "s", 3, WEEK2, "strict", "",
                  "a=[1.0, 60.0] b=[2.0, 30.0, 30.0] c=[2.0, 60.0, 0.0]");
    /* the same events unordered-in-time keep the ordered answer */
    assert_funnel(f->con, "s", 3, WEEK2, "ordered", "",
                  "a=[2.0, 60.0, 60.0] b=[2.0, 30.0, 30.0] c=[2.0, 60.0, 0.0]");
}

/* Appendix A 1: restart, and the window boundary (t - start <= window). */
static void test_window_and_restart(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t",
       "('r1',0,1),('r1',864000,1),('r1',1728000,2),"
       "('r2',0,1),('r2',1296000,2),"
       "('w1',0,1),('w1',1209600,2),"
       "('w2',0,1),('w2',1209601,2),"
       "('z',0,1),('z',0,2)");
    assert_funnel(f->con, "t", 3, WEEK2, "ordered", "",
                  "r1=[1.0, 864000.0] r2=[0.0] w1=[1.0, 1209600.0] w2=[0.0] z=[1.0, 0.0]");
    /* a zero window keeps only same-instant conversions */
    assert_funnel(f->con, "t", 3, 0, "ordered", "",
                  "r1=[0.0] r2=[0.0] w1=[0.0] w2=[0.0] z=[1.0, 0.0]");
}

/* Appendix A 2: one event matching steps k and k+1 never fills both; events at the same
 * timestamp matching different steps convert, whatever their row order. */
static void test_one_event_two_steps(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t",
       "('o1',0,3),"
       "('o2',0,3),('o2',60,3),"
       "('o3',0,1),('o3',60,6),"
       "('o4',0,1),('o4',60,6),('o4',120,6),"
       "('o5',0,7),('o5',10,7),('o5',20,7),"
       "('s1',0,2),('s1',0,1),"
       "('s2',5,4),('s2',5,2),('s2',5,1),"
       "('s3',0,2),('s3',60,1)");
    assert_funnel(f->con, "t", 3, WEEK2, "ordered", "",
                  "o1=[0.0] o2=[1.0, 60.0] o3=[1.0, 60.0] o4=[2.0, 60.0, 60.0] "
                  "o5=[2.0, 10.0, 10.0] s1=[1.0, 0.0] s2=[2.0, 0.0, 0.0] s3=[0.0]");
}

/* Events with the same timestamp and the same lowest step keep the order the group received
 * them in (one thread scanning a small table: table order): P matches step 1, Q steps 1 and 2,
 * both 10 s after A. P then Q reaches step 2 (Q extends the chain P just moved); Q then P stops
 * at step 1. 200 later C events come first in the table, so the group is sorted by the merge
 * sort, which must be stable. */
static void test_tie_order(void **state)
{
    struct fx *f = *state;
    exec(f->con, "SET threads = 1");
    exec(f->con, "CREATE TABLE pq AS SELECT 1000 + i s, 4 m FROM range(200) r(i) "
                 "UNION ALL SELECT 0, 1 UNION ALL SELECT 10, 2 UNION ALL SELECT 10, 6");
    exec(f->con, "CREATE TABLE qp AS SELECT 1000 + i s, 4 m FROM range(200) r(i) "
                 "UNION ALL SELECT 0, 1 UNION ALL SELECT 10, 6 UNION ALL SELECT 10, 2");
#define TIE_SQL                                                                                    \
    "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s::BIGINT), m::UINTEGER, 3, "        \
    "60000000, '%s', '')::VARCHAR FROM %s"
    assert_q(f->con, "[2.0, 10.0, 0.0]", TIE_SQL, "ordered", "pq");
    assert_q(f->con, "[1.0, 10.0]", TIE_SQL, "ordered", "qp");
    assert_q(f->con, "[2.0, 10.0, 0.0]", TIE_SQL, "strict", "pq");
    assert_q(f->con, "[1.0, 10.0]", TIE_SQL, "strict", "qp");
}

/* The chain that reached the furthest step first gives the times. */
static void test_times_of_first_chain(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t",
       "('t1',0,1),('t1',86400,2),('t1',172800,1),('t1',176400,2),"
       "('t2',0,1),('t2',100,1),('t2',150,2),('t2',400,4),"
       "('t3',0,1),('t3',10,2),('t3',20,4),('t3',30,1),('t3',31,2),('t3',32,4)");
    assert_funnel(f->con, "t", 3, WEEK2, "ordered", "",
                  "t1=[1.0, 86400.0] t2=[2.0, 50.0, 250.0] t3=[2.0, 10.0, 10.0]");
    /* fractions of a second */
    exec(f->con, "CREATE TABLE frac AS SELECT * FROM (VALUES "
                 "(TIMESTAMP '2024-01-01 00:00:00', 1::UINTEGER), "
                 "(TIMESTAMP '2024-01-01 00:00:00.25', 2::UINTEGER)) v(ts, m)");
    assert_q(f->con, "[1.0, 0.25]",
             "SELECT tandem_funnel(ts, m, 2, 1000000, 'ordered', '')::VARCHAR FROM frac");
}

/* Appendix A 4: exclusions, judged on the actor's chain. */
static void test_exclusions(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t",
       "('e1',0,1),('e1',60,1048576),('e1',120,2),('e1',180,4),"  /* inside 0-1: out */
       "('e2',-60,1048576),('e2',0,1),('e2',120,2),('e2',180,4)," /* before step 0 */
       "('e3',0,1),('e3',120,2),('e3',150,1048576),('e3',180,4)," /* after toStep */
       "('e4',0,1),('e4',60,1048576),"                            /* no step 1, in window */
       "('e5',0,1),('e5',1296000,1048576),"                       /* no step 1, after window */
       "('e6',0,1),('e6',0,1048576),"                             /* same instant as step 0 */
       "('e7',0,1),('e7',120,2),('e7',120,1048576),"              /* same instant as step 1 */
       "('e8',0,1048576)");                                       /* no step 0 */
    assert_funnel(f->con, "t", 3, WEEK2, "ordered", "0-1",
                  "e1=[-1.0] e2=[2.0, 120.0, 60.0] e3=[2.0, 120.0, 60.0] e4=[-1.0] e5=[0.0] "
                  "e6=[0.0] e7=[1.0, 120.0] e8=[-1.0]");
    /* exclusion j is bit 20 + j, in its position */
    mk(f->con, "y",
       "('y1',0,1),('y1',60,2097152),('y1',120,2),('y1',180,4),"
       "('y2',0,1),('y2',120,2),('y2',150,2097152),('y2',180,4),"
       "('y3',0,1),('y3',120,2),('y3',150,2097152),"
       "('y4',0,1),('y4',120,2),('y4',150,1048576),('y4',180,4)");
    assert_funnel(f->con, "y", 3, WEEK2, "ordered", "0-1,1-2",
                  "y1=[2.0, 120.0, 60.0] y2=[-1.0] y3=[-1.0] y4=[2.0, 120.0, 60.0]");
    /* strict keeps exclusion events in the stream: they break chains too */
    assert_funnel(f->con, "y", 3, WEEK2, "strict", "0-1,1-2",
                  "y1=[0.0] y2=[-1.0] y3=[-1.0] y4=[1.0, 120.0]");
    /* the excluded chain is the actor's chain: a later clean attempt does not rescue it */
    mk(f->con, "z", "('z1',0,1),('z1',60,1048576),('z1',120,2),('z1',864000,1),('z1',864060,2)");
    assert_funnel(f->con, "z", 3, WEEK2, "ordered", "0-1", "z1=[-1.0]");
}

static void test_unordered(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t",
       "('n1',0,2),('n1',60,4),('n1',120,1),"
       "('n2',0,2),('n2',1728000,1),"
       "('n3',0,2),('n3',60,4),"
       "('n4',0,2),('n4',60,4),('n4',2592000,1),"
       "('n5',0,1),('n5',864000,2),('n5',1728000,4),"
       "('n6',0,1),('n6',1,1),('n6',2,2),('n6',3,2),"
       "('n7',0,7)");
    assert_funnel(f->con, "t", 3, WEEK2, "unordered", "",
                  "n1=[2.0] n2=[0.0] n3=[-1.0] n4=[1.0] n5=[1.0] n6=[1.0] n7=[2.0]");
}

/* One actor with 100,000 events in scrambled row order: growth, sorting and combine. */
static void test_large_group(void **state)
{
    struct fx *f = *state;
    exec(f->con, "SET threads = 2");
    /* s runs over 0..99999 (7919 is prime to 100000); only the last three seconds hold A, B
     * and C, everything before is C: the answer needs the whole array sorted */
    exec(f->con, "CREATE TABLE big AS SELECT 'g' a, ((i * 7919) % 100000)::BIGINT s, "
                 "(CASE (i * 7919) % 100000 WHEN 99997 THEN 1 WHEN 99998 THEN 2 WHEN 99999 "
                 "THEN 4 ELSE 4 END)::UINTEGER m FROM range(100000) r(i)");
    assert_funnel(f->con, "big", 3, 10, "ordered", "", "g=[2.0, 1.0, 1.0]");
    assert_funnel(f->con, "big", 3, 10, "strict", "", "g=[2.0, 1.0, 1.0]");
    assert_funnel(f->con, "big", 3, 10, "unordered", "", "g=[2.0]");
    /* the same events as one ungrouped aggregate */
    assert_q(f->con, "[2.0, 1.0, 1.0]",
             "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, 3, 10000000, "
             "'ordered', '')::VARCHAR FROM big");
    /* and as one actor of the totals: one partition, sorted by the merge sort */
    assert_q(
        f->con, "[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]",
        "SELECT tandem_funnel_steps(42::UBIGINT, TIMESTAMP '2024-01-01' + to_seconds(s), m, 3, "
        "10000000, 'ordered', '')::VARCHAR FROM big");
}

/* Many actors whose rows are scattered over several row groups, two threads: every actor's
 * answer is known (furthest = actor % 4, one second per step). */
static void test_parallel_combine(void **state)
{
    struct fx *f = *state;
    exec(f->con, "SET threads = 2");
    exec(f->con, "CREATE TABLE par AS SELECT i % 20000 a, i // 20000 k, "
                 "(CASE WHEN i // 20000 <= (i % 20000) % 4 THEN i // 20000 ELSE (i // 20000) * "
                 "1000 END)::BIGINT s, "
                 "(CASE WHEN i // 20000 <= (i % 20000) % 4 THEN 1 << (i // 20000) ELSE 1 "
                 "END)::UINTEGER m FROM range(400000) r(i) ORDER BY hash(i)");
#define PAR_SQL                                                                                    \
    "SELECT count(*) FILTER (WHERE f[1] = a %% 4 AND len(f) = a %% 4 + 1 AND "                     \
    "coalesce(list_sum(f[2:]), 0) = a %% 4) || '/' || count(*) FROM ("                             \
    "SELECT a, tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, 4, "                       \
    "100000000, '%s', '') f FROM par GROUP BY a)"
    assert_q(f->con, "20000/20000", PAR_SQL, "ordered");
    assert_q(f->con, "20000/20000", PAR_SQL, "strict");
    /* parameters that differ inside one group fail in update or in combine */
    assert_q_err(f->con, "must be the same on every row",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, "
                 "CASE WHEN k < 10 THEN 4 ELSE 5 END, 1, 'ordered', '')::VARCHAR FROM par");
}

/* Random actors checked against plain SQL: ordered against the ASOF chain (from each step-0
 * event the earliest next step at or after the previous one, within the window of the start;
 * the best start wins), unordered against a self-join counting distinct steps per window. */
static void test_random_against_sql(void **state)
{
    struct fx *f = *state;
    /* 3000 actors, 45,000 events over 30 to 300 days (timestamps collide now and then), one
     * step each; window 7 days */
    exec(f->con,
         "CREATE TABLE r AS SELECT a, TIMESTAMP '2024-01-01' + to_seconds((hash(i * 3 + 1) "
         "% (2592000 * (a % 10 + 1)) // 60 * 60)::BIGINT) ts, (hash(i * 5 + 2) % 4)::INT st "
         "FROM (SELECT i, hash(i) % 3000 a FROM range(45000) t(i))");
#define OURS_SQL                                                                                   \
    "CREATE OR REPLACE TABLE ours AS SELECT a, tandem_funnel(ts, (1 << st)::UINTEGER, 4, "         \
    "604800000000, '%s', '')[1]::INT f FROM r GROUP BY a"
    char sql[2048];
    snprintf(sql, sizeof(sql), OURS_SQL, "ordered");
    exec(f->con, sql);
    exec(
        f->con,
        "CREATE TABLE ref AS WITH "
        "s0 AS (SELECT a, ts t0 FROM r WHERE st = 0), s1 AS (SELECT a, ts t1 FROM r WHERE st = 1), "
        "s2 AS (SELECT a, ts t2 FROM r WHERE st = 2), s3 AS (SELECT a, ts t3 FROM r WHERE st = 3), "
        "j1 AS (SELECT s0.a, t0, CASE WHEN t1 <= t0 + INTERVAL 7 DAY THEN t1 END t1 FROM s0 "
        "ASOF LEFT JOIN s1 ON s0.a = s1.a AND s1.t1 >= s0.t0), "
        "j2 AS (SELECT j1.a, t0, t1, CASE WHEN t1 IS NOT NULL AND t2 <= t0 + INTERVAL 7 DAY "
        "THEN t2 END t2 FROM j1 ASOF LEFT JOIN s2 ON j1.a = s2.a AND s2.t2 >= j1.t1), "
        "j3 AS (SELECT j2.a, t0, t1, t2, CASE WHEN t2 IS NOT NULL AND t3 <= t0 + INTERVAL 7 DAY "
        "THEN t3 END t3 FROM j2 ASOF LEFT JOIN s3 ON j2.a = s3.a AND s3.t3 >= j2.t2) "
        "SELECT a, max((t1 IS NOT NULL)::INT + (t2 IS NOT NULL)::INT + (t3 IS NOT NULL)::INT) f "
        "FROM j3 GROUP BY a");
    /* actors without a step 0 are -1 in ours and absent from ref */
    assert_q(f->con, "0",
             "SELECT count(*) FROM ours FULL JOIN ref USING (a) "
             "WHERE ours.f IS DISTINCT FROM coalesce(ref.f, -1)");
    /* and the data is not trivial: every furthest step occurs */
    assert_q(f->con, "4", "SELECT count(DISTINCT f) FROM ours WHERE f >= 0");

    snprintf(sql, sizeof(sql), OURS_SQL, "unordered");
    exec(f->con, sql);
    exec(f->con, "CREATE OR REPLACE TABLE ref AS SELECT a, max(n) - 1 f FROM ("
                 "SELECT e1.a, e1.ts, count(DISTINCT e2.st) n FROM r e1 JOIN r e2 ON e1.a = e2.a "
                 "AND e2.ts BETWEEN e1.ts - INTERVAL 7 DAY AND e1.ts GROUP BY ALL) "
                 "WHERE a IN (SELECT a FROM r WHERE st = 0) GROUP BY a");
    assert_q(f->con, "0",
             "SELECT count(*) FROM ours FULL JOIN ref USING (a) "
             "WHERE ours.f IS DISTINCT FROM coalesce(ref.f, -1)");
    assert_q(f->con, "4", "SELECT count(DISTINCT f) FROM ours WHERE f >= 0");
}

/* Rows with a NULL argument are ignored; a group with no usable row is [-1]. */
static void test_nulls_and_empty(void **state)
{
    struct fx *f = *state;
    exec(f->con, "CREATE TABLE n AS SELECT * FROM (VALUES "
                 "('a', TIMESTAMP '2024-01-01 00:00:00', 1::UINTEGER, 3, 'ordered'),"
                 "('a', NULL, 2::UINTEGER, 3, 'ordered'),"
                 "('a', TIMESTAMP '2024-01-01 00:00:02', NULL, 3, 'ordered'),"
                 "('a', TIMESTAMP '2024-01-01 00:00:03', 2::UINTEGER, NULL, 'ordered'),"
                 "('a', TIMESTAMP '2024-01-01 00:00:04', 2::UINTEGER, 3, NULL),"
                 "('a', TIMESTAMP '2024-01-01 00:00:05', 4::UINTEGER, 3, 'ordered'),"
                 "('b', NULL, 1::UINTEGER, 3, 'ordered')) v(a, ts, m, n, mode)");
    assert_q(f->con, "a=[0.0] b=[-1.0]",
             "SELECT string_agg(a || '=' || f::VARCHAR, ' ' ORDER BY a) FROM (SELECT a, "
             "tandem_funnel(ts, m, n, 60000000, mode, '') f FROM n GROUP BY a)");
    assert_q(f->con, "[-1.0]",
             "SELECT tandem_funnel(ts, m, 3, 1, 'ordered', '')::VARCHAR FROM n WHERE false");
    /* rows matching nothing are dropped outside strict funnels, kept (and breaking) in it */
    mk(f->con, "z", "('z',0,1),('z',1,0),('z',2,2)");
    assert_funnel(f->con, "z", 2, 60, "ordered", "", "z=[1.0, 2.0]");
    assert_funnel(f->con, "z", 2, 60, "strict", "", "z=[0.0]");
}

#define ERR_SQL                                                                                    \
    "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, %s, %s, '%s', "               \
    "'%s')::VARCHAR "                                                                              \
    "FROM t"

static void test_errors(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t", "('a',0,1),('a',60,2)");
    duckdb_connection c = f->con;
    assert_q_err(c, "n_steps must be 2 to 20, got 1", ERR_SQL, "1", "0", "ordered", "");
    assert_q_err(c, "n_steps must be 2 to 20, got 21", ERR_SQL, "21", "0", "ordered", "");
    assert_q_err(c, "window_us must not be negative", ERR_SQL, "2", "-1", "ordered", "");
    assert_q_err(c, "unknown mode \"Ordered\"", ERR_SQL, "2", "0", "Ordered", "");
    assert_q_err(c, "unknown mode \"\"", ERR_SQL, "2", "0", "", "");
    const char *bad[] = {"x",    "0",       "0-",   "-1",       "0-1,",
                         ",0-1", "0-1;1-2", "0 -1", "0-1,,1-2", "99999-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_q_err(c, "bad exclusions", ERR_SQL, "3", "0", "ordered", bad[i]);
    assert_q_err(c, "exclusion 1-0 must have", ERR_SQL, "3", "0", "ordered", "1-0");
    assert_q_err(c, "exclusion 1-1 must have", ERR_SQL, "3", "0", "ordered", "1-1");
    assert_q_err(c, "exclusion 0-3 must have", ERR_SQL, "3", "0", "ordered", "0-3");
    assert_q_err(c, "more than 8 exclusions", ERR_SQL, "3", "0", "ordered",
                 "0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-1,0-2");
    assert_q(c, "[1.0, 60.0]", ERR_SQL, "3", "60000000", "ordered",
             "0-1,0-1,0-1,0-1,0-1,0-1,0-1,1-2");
    assert_q_err(c, "unordered funnel takes no exclusions", ERR_SQL, "3", "0", "unordered", "0-1");
    /* mask bits beyond the steps and exclusions */
    assert_q_err(c, "mask 0x4 has bits beyond",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01', "
                 "4::UINTEGER, 2, 0, 'ordered', '')::VARCHAR");
    assert_q_err(c, "mask 0x200000 has bits beyond",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01', 2097152::UINTEGER, 2, 0, "
                 "'ordered', '0-1')::VARCHAR");
    assert_q_err(c, "mask 0x100000 has bits beyond",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01', 1048576::UINTEGER, 3, 0, "
                 "'unordered', '')::VARCHAR");
    assert_q_err(c, "mask 0x80000000 has bits beyond",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01', 2147483648::UINTEGER, 20, 0, "
                 "'ordered', '')::VARCHAR");
    assert_q(c, "[0.0]",
             "SELECT tandem_funnel(TIMESTAMP '2024-01-01', 1048575::UINTEGER, 20, 0, "
             "'ordered', '')::VARCHAR");
    /* constants that change between rows of one group; other groups may differ */
    assert_q_err(c, "must be the same on every row", ERR_SQL, "2 + (s > 0)::INT", "0", "ordered",
                 "");
    assert_q_err(c, "must be the same on every row", ERR_SQL, "2", "s", "ordered", "");
    assert_q_err(c, "must be the same on every row",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, 3, 0, CASE WHEN "
                 "s > 0 THEN 'strict' ELSE 'ordered' END, '')::VARCHAR FROM t");
    assert_q_err(c, "must be the same on every row",
                 "SELECT tandem_funnel(TIMESTAMP '2024-01-01' + to_seconds(s), m, 3, 0, 'ordered', "
                 "CASE WHEN s > 0 THEN '0-1' ELSE '0-2' END)::VARCHAR FROM t");
    assert_q(c, "0=[0.0] 60=[0.0]",
             "SELECT string_agg(s || '=' || f::VARCHAR, ' ' ORDER BY s) FROM (SELECT s, "
             "tandem_funnel(TIMESTAMP '2024-01-01', 1::UINTEGER, (2 + s // 60)::INT, s, "
             "'ordered', '') f FROM t GROUP BY s)");
    /* the connection still works after the failures */
    assert_q(c, "[1.0, 60.0]", ERR_SQL, "2", "60000000", "ordered", "");
}

/* The SQL API refuses the two shapes DuckDB 1.4.4 cannot run with a C aggregate (ORDER BY in
 * the call, window use) before running them, and lets everything else through. */
static void test_sql_api_guard(void **state)
{
    (void)state;
    char path[1024];
    wht_path(path, sizeof(path), "whg");
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = path;
    cfg.threads = 2;
    struct wh *w;
    struct wh_conn *c;
    assert_int_equal(wh_open(&cfg, &w), 0);
    assert_int_equal(wh_conn_open(w, &c), 0);
#define G_FROM                                                                                     \
    " FROM (VALUES (1, TIMESTAMP '2024-01-01 00:00:00', 1::UINTEGER), "                            \
    "(1, TIMESTAMP '2024-01-01 00:00:30', 2::UINTEGER)) v(a, ts, m)"
    static const struct {
        const char *sql, *why;
    } refused[] = {
        {"SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '' ORDER BY ts)" G_FROM,
         "ORDER BY inside the call"},
        {"SELECT TANDEM_FUNNEL(ts, m, 2, 60000000, 'ordered', '' ORDER BY ts DESC)" G_FROM,
         "ORDER BY inside the call"},
        {"SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '') OVER ()" G_FROM,
         "window function"},
        {"SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '') OVER (PARTITION BY a)" G_FROM,
         "window function"},
        {"SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '') OVER (ORDER BY ts)" G_FROM,
         "window function"},
        {"WITH x AS (SELECT main.tandem_funnel(ts, m, 2, 1, 'ordered', '' ORDER BY m) f" G_FROM
         ") SELECT * FROM x",
         "ORDER BY inside the call"},
        {"SELECT (SELECT list(f) FROM (SELECT tandem_funnel(ts, m, 2, 1, 'strict', '') OVER w "
         "f" G_FROM " WINDOW w AS (PARTITION BY a)))",
         "window function"},
        {"SELECT tandem_funnel_steps(a::UBIGINT, ts, m, 2, 60000000, 'ordered', '') OVER ()" G_FROM,
         "tandem_funnel_steps cannot be used"},
        {"SELECT tandem_funnel_steps(a::UBIGINT, ts, m, 2, 1, 'ordered', '' ORDER BY ts)" G_FROM,
         "ORDER BY inside the call"},
        {"SELECT tandem_bitcount(m::UBIGINT) OVER ()" G_FROM, "tandem_bitcount cannot be used"},
        {"SELECT Tandem_Bitcount(m::UBIGINT ORDER BY ts)" G_FROM, "ORDER BY inside the call"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct wh_query q = {.sql = refused[i].sql};
        struct wh_result r;
        assert_int_equal(wh_query(c, &q, &r), ERR_DENIED);
        if (!strstr(wh_errmsg(c), refused[i].why))
            fprintf(stderr, "%s: %s\n", refused[i].sql, wh_errmsg(c));
        assert_non_null(strstr(wh_errmsg(c), refused[i].why));
    }
    /* allowed: plain use, GROUP BY with FILTER, the name in a string, no use at all */
    assert_rows(c, "SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '') f" G_FROM,
                "[[[1.0,30.0]]]");
    assert_rows(
        c, "SELECT tandem_funnel_steps(a::UBIGINT, ts, m, 2, 60000000, 'ordered', '') f" G_FROM,
        "[[[1.0,1.0,30.0,30.0]]]");
    assert_rows(c,
                "SELECT a, tandem_funnel(ts, m, 2, 60000000, 'ordered', '') FILTER (WHERE m = 1)"
                " f" G_FROM " GROUP BY a",
                "[[1,[0.0]]]");
    assert_rows(c, "SELECT 'tandem_funnel(x) OVER ()' AS s", "[[\"tandem_funnel(x) OVER ()\"]]");
    assert_rows(c, "SELECT list(a ORDER BY a DESC) l" G_FROM, "[[[1,1]]]");
    assert_rows(c, "SELECT tandem_bitcount(m::UBIGINT)[1:3]" G_FROM, "[[[1,1,0]]]");
    /* with parameters, as src/analytics sends its statements */
    json_t *params = json_pack("[i, s]", 60000000, "ordered");
    struct wh_query pq = {.sql = "SELECT tandem_funnel(ts, m, 2, $1, $2, '') f" G_FROM,
                          .params = params};
    struct wh_result pr;
    assert_int_equal(wh_query(c, &pq, &pr), 0);
    char *got = json_dumps(pr.rows, JSON_COMPACT);
    assert_string_equal(got, "[[[1.0,30.0]]]");
    free(got);
    wh_result_release(&pr);
    json_decref(params);
    wh_conn_close(c);
    wh_close(w);
    wht_unlink(path);
}

/* The warehouse registers the function on its database: every connection and the read-only
 * SQL API see it, and opening the database again registers it again. */
static void test_warehouse_registration(void **state)
{
    (void)state;
    char path[1024];
    wht_path(path, sizeof(path), "whf");
    for (int round = 0; round < 2; round++) {
        struct wh_cfg cfg;
        wh_cfg_defaults(&cfg);
        cfg.path = path;
        cfg.threads = 1;
        struct wh *w;
        struct wh_conn *c1, *c2;
        assert_int_equal(wh_open(&cfg, &w), 0);
        assert_int_equal(wh_conn_open(w, &c1), 0);
        assert_int_equal(wh_conn_open(w, &c2), 0);
        const char *sql = "SELECT tandem_funnel(ts, m, 2, 60000000, 'ordered', '') f FROM "
                          "(VALUES (TIMESTAMP '2024-01-01 00:00:00', 1::UINTEGER), "
                          "(TIMESTAMP '2024-01-01 00:00:30', 2::UINTEGER)) v(ts, m)";
        assert_rows(c1, sql, "[[[1.0,30.0]]]");
        assert_rows(c2, sql, "[[[1.0,30.0]]]");
        /* registering again on the same database is harmless */
        assert_int_equal(whd__funnel_register(whd__conn(c2)->con), 0);
        assert_rows(c2, sql, "[[[1.0,30.0]]]");
        /* a failure inside the aggregate reaches the SQL API as a bad query */
        struct wh_query q = {.sql = "SELECT tandem_funnel(TIMESTAMP '2024-01-01', 1::UINTEGER, "
                                    "1, 0, 'ordered', '')"};
        struct wh_result r;
        assert_int_equal(wh_query(c1, &q, &r), ERR_INVALID);
        assert_non_null(strstr(wh_errmsg(c1), "n_steps must be 2 to 20"));
        wh_conn_close(c2);
        wh_conn_close(c1);
        wh_close(w);
    }
    wht_unlink(path);
}

/* ---- tandem_funnel_steps: the whole funnel in one aggregate ---- */

/* [c0, c1, avg1, median1, c2, avg2, median2] of table (actor hash(a)), hand-computed. */
#define STEPS_SQL                                                                                  \
    "SELECT tandem_funnel_steps(hash(a), TIMESTAMP '2024-01-01' + to_seconds(s), m, %d, %lld, "    \
    "'%s', '%s')::VARCHAR FROM %s"
#define assert_steps(con, table, n, window_s, mode, ex, expect)                                    \
    assert_q(con, expect, STEPS_SQL, (n), (long long)(window_s)*1000000LL, mode, ex, table)

static void test_steps_by_hand(void **state)
{
    struct fx *f = *state;
    mk(f->con, "t", u1_u6);
    /* furthest 2,1,0,0,2,1; step-1 times 3600,3600,3600,7200; step-2 times 3600,3600 */
    assert_steps(f->con, "t", 3, WEEK2, "ordered", "",
                 "[6.0, 4.0, 4500.0, 3600.0, 2.0, 3600.0, 3600.0]");
    /* unordered: furthest 2,1,0,2,2,1 and no times */
    assert_steps(f->con, "t", 3, WEEK2, "unordered", "", "[6.0, 5.0, NULL, NULL, 3.0, NULL, NULL]");
    /* step-1 times 86400, 50, 10 (median the middle one); step-2 times 250, 10 (median
     * interpolated) */
    mk(f->con, "c",
       "('t1',0,1),('t1',86400,2),('t1',172800,1),('t1',176400,2),"
       "('t2',0,1),('t2',100,1),('t2',150,2),('t2',400,4),"
       "('t3',0,1),('t3',10,2),('t3',20,4),('t3',30,1),('t3',31,2),('t3',32,4)");
    assert_steps(f->con, "c", 3, WEEK2, "ordered", "",
                 "[3.0, 3.0, 28820.0, 50.0, 2.0, 130.0, 130.0]");
    /* a 60 s window: t1 stops at step 0, t2 at step 1 (50 s); 5 s: only t3's second chain
     * (1 s, 1 s); 0 s: nobody converts, counts of 0 and NULL times */
    assert_steps(f->con, "c", 3, 60, "ordered", "", "[3.0, 2.0, 30.0, 30.0, 1.0, 10.0, 10.0]");
    assert_steps(f->con, "c", 3, 5, "ordered", "", "[3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]");
    assert_steps(f->con, "c", 3, 0, "ordered", "", "[3.0, 0.0, NULL, NULL, 0.0, NULL, NULL]");
    /* excluded actors are not counted at all */
    mk(f->con, "x", "('e1',0,1),('e1',60,1048576),('e1',120,2),('e2',0,1),('e2',30,2)");
    assert_steps(f->con, "x", 2, WEEK2, "ordered", "0-1", "[1.0, 1.0, 30.0, 30.0]");
}

/* Rows with a NULL argument (the actor too) are ignored; no row at all gives NULL. */
static void test_steps_nulls_and_errors(void **state)
{
    struct fx *f = *state;
    exec(f->con, "CREATE TABLE n AS SELECT * FROM (VALUES "
                 "(1::UBIGINT, TIMESTAMP '2024-01-01 00:00:00', 1::UINTEGER),"
                 "(NULL, TIMESTAMP '2024-01-01 00:00:01', 1::UINTEGER),"
                 "(1, NULL, 2::UINTEGER),"
                 "(1, TIMESTAMP '2024-01-01 00:00:05', 2::UINTEGER)) v(a, ts, m)");
    assert_q(f->con, "[1.0, 1.0, 5.0, 5.0]",
             "SELECT tandem_funnel_steps(a, ts, m, 2, 60000000, 'ordered', '')::VARCHAR FROM n");
    assert_q(f->con, "true",
             "SELECT tandem_funnel_steps(a, ts, m, 2, 60000000, 'ordered', '') IS NULL FROM n "
             "WHERE false");
    /* grouped, each group is its own funnel */
    assert_q(f->con, "false=[1.0, 1.0, 5.0, 5.0] true=[1.0, 0.0, NULL, NULL]",
             "SELECT string_agg(g || '=' || r::VARCHAR, ' ' ORDER BY g) FROM (SELECT a IS NULL g, "
             "tandem_funnel_steps(coalesce(a, 7), ts, m, 2, 60000000, 'ordered', '') r FROM n "
             "GROUP BY g)");
    /* the arguments are checked as tandem_funnel checks them */
    assert_q_err(f->con, "n_steps must be 2 to 20, got 1",
                 "SELECT tandem_funnel_steps(a, ts, m, 1, 0, 'ordered', '') FROM n");
    assert_q_err(
        f->con, "mask 0x4 has bits beyond",
        "SELECT tandem_funnel_steps(1::UBIGINT, TIMESTAMP '2024-01-01', 4::UINTEGER, 2, 0, "
        "'ordered', '')");
    assert_q_err(f->con, "must be the same on every row",
                 "SELECT tandem_funnel_steps(a, ts, m, 2, epoch_us(ts), 'ordered', '') FROM n");
}

/* Random actors over several row groups, two threads: the totals equal count, avg and
 * quantile_cont over tandem_funnel per actor, in every mode, with and without exclusions. */
static void test_steps_against_groups(void **state)
{
    struct fx *f = *state;
    exec(f->con, "SET threads = 2");
    /* 20,000 actors, 300,000 events over 10 to 100 days; steps 0-3, exclusion 0 and events
     * matching nothing, one each; window 3 days */
    exec(f->con,
         "CREATE TABLE rs AS SELECT a, TIMESTAMP '2024-01-01' + to_seconds((hash(i * 3 + 1) "
         "% (864000 * (a % 10 + 1)) // 60 * 60)::BIGINT) ts, (CASE hash(i * 5 + 2) % 6 "
         "WHEN 4 THEN 1048576 WHEN 5 THEN 0 ELSE 1 << (hash(i * 5 + 2) % 6) END)::UINTEGER "
         "m FROM (SELECT i, hash(i) % 20000 a FROM range(300000) t(i)) ORDER BY hash(i + 7)");
#define STEPS_CMP_SQL                                                                              \
    "WITH g AS (SELECT tandem_funnel(ts, %s, 4, 259200000000, '%s', '%s') f FROM rs GROUP BY a), " \
    "h AS (SELECT f[1]::INT fs, f[2] t1, f[3] t2, f[4] t3 FROM g WHERE f[1] >= 0), "               \
    "w AS (SELECT [count(*)::DOUBLE, count(*) FILTER (fs >= 1), avg(t1) FILTER (fs >= 1), "        \
    "quantile_cont(t1, 0.5) FILTER (fs >= 1), count(*) FILTER (fs >= 2), avg(t2) FILTER "          \
    "(fs >= 2), quantile_cont(t2, 0.5) FILTER (fs >= 2), count(*) FILTER (fs >= 3), avg(t3) "      \
    "FILTER (fs >= 3), quantile_cont(t3, 0.5) FILTER (fs >= 3)] w FROM h), "                       \
    "o AS (SELECT tandem_funnel_steps(a, ts, %s, 4, 259200000000, '%s', '%s') o FROM rs) "         \
    "SELECT CASE WHEN len(w) = len(o) AND o[8] > 0 AND list_bool_and(list_transform(range(1, "     \
    "len(w) + 1), i -> (w[i] IS NULL AND o[i] IS NULL) OR abs(w[i] - o[i]) <= 1e-9 * "             \
    "abs(w[i]))) THEN 'same' ELSE w::VARCHAR || ' vs ' || o::VARCHAR END FROM w, o"
    static const char *const cases[][3] = {
        {"m", "ordered", "1-2"},
        {"m", "strict", "0-3"},
        {"(m & 15)::UINTEGER", "ordered", ""},
        {"(m & 15)::UINTEGER", "strict", ""},
        {"(m & 15)::UINTEGER", "unordered", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_q(f->con, "same", STEPS_CMP_SQL, cases[i][0], cases[i][1], cases[i][2], cases[i][0],
                 cases[i][1], cases[i][2]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reference_ordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_event_two_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tie_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_times_of_first_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclusions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_combine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_against_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nulls_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_nulls_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_against_groups, setup, teardown),
        cmocka_unit_test(test_warehouse_registration),
        cmocka_unit_test(test_sql_api_guard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
