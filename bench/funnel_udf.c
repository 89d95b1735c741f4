/* funnel_udf.c - times the funnel aggregate tandem_funnel against the pure-SQL ASOF-join funnel
 * (docs/shared reference, section 3) on the same in-memory DuckDB data, and checks that both
 * give the same step counts.
 *
 * The data: EVENTS rows (default 10,000,000) for USERS persons (default 1,000,000) over 10
 * weeks, in time order (as the warehouse stores them): 40% pageview, 20% signup, 15% activate,
 * 15% purchase, 10% invite, persons and events drawn by hash. The question: the 4-step funnel
 * signup -> activate -> purchase -> invite with a 14-day window, as step counts plus the
 * average and median time of each conversion, the way src/analytics asks it.
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc -Ideps/duckdb/include bench/funnel_udf.c build/libtandem_lib.a \
 *      -Ldeps/duckdb/lib -lduckdb -Wl,-rpath,$PWD/deps/duckdb/lib -ljansson -lpthread -lm \
 *      -o build/funnel_udf
 * Run: build/funnel_udf [events] [users] [runs=3] [tsv file to write the data to]
 * (runs 0: only generate the data and write the TSV)
 * bench/funnel.sh builds it, runs it and answers the same question in ClickHouse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "warehouse/duckdb/whd_int.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (every DuckDB thread), ms */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double last_cpu_ms;

static int run(duckdb_connection con, const char *sql, char *first_row, size_t len, double *ms)
{
    duckdb_result res;
    double c0 = cpu_ms();
    double t0 = now_ms();
    if (duckdb_query(con, sql, &res) != DuckDBSuccess) {
        fprintf(stderr, "query failed: %s\n%s\n", duckdb_result_error(&res), sql);
        duckdb_destroy_result(&res);
        return -1;
    }
    *ms = now_ms() - t0;
    last_cpu_ms = cpu_ms() - c0;
    if (first_row) {
        size_t k = 0;
        first_row[0] = 0;
        for (idx_t c = 0; c < duckdb_column_count(&res) && duckdb_row_count(&res); c++) {
            char *v = duckdb_value_varchar(&res, c, 0);
            k += (size_t)snprintf(first_row + k, len > k ? len - k : 0, "%s%s", c ? " " : "",
                                  v ? v : "NULL");
            duckdb_free(v);
        }
    }
    duckdb_destroy_result(&res);
    return 0;
}

static const char *loadavg(void)
{
    static char buf[64];
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = 0;
    if (f) {
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs sql runs times; prints the min and median wall time and the CPU time of the fastest
 * run (all threads; on an idle 2-core machine the wall time is about half of it); the answer
 * goes to ans. */
static int timed(duckdb_connection con, const char *name, const char *sql, int runs, char *ans,
                 size_t len)
{
    double t[32], cpu = 0, best = 0;
    if (runs > 32)
        runs = 32;
    for (int i = 0; i < runs; i++) {
        if (run(con, sql, ans, len, &t[i]) < 0)
            return -1;
        if (i == 0 || t[i] < best) {
            best = t[i];
            cpu = last_cpu_ms;
        }
    }
    qsort(t, (size_t)runs, sizeof(double), cmp_double);
    printf("%-34s wall min %7.1f ms median %7.1f ms, cpu %7.1f ms -> %s\n", name, t[0], t[runs / 2],
           cpu, ans);
    fflush(stdout);
    return 0;
}

#define STEPS_IN "event IN ('signup', 'activate', 'purchase', 'invite')"
#define MASK                                                                                       \
    "((event = 'signup')::UINTEGER | ((event = 'activate')::UINTEGER << 1) | "                     \
    "((event = 'purchase')::UINTEGER << 2) | ((event = 'invite')::UINTEGER << 3))"
#define WINDOW_US "1209600000000"
#define COUNTS(f)                                                                                  \
    "count(*) FILTER (WHERE " f " >= 0), count(*) FILTER (WHERE " f " >= 1), "                     \
    "count(*) FILTER (WHERE " f " >= 2), count(*) FILTER (WHERE " f " >= 3)"

static const char *const q_group =
    "SELECT count(*) FROM (SELECT person_id, count(*) FROM events WHERE " STEPS_IN
    " GROUP BY person_id)";

static const char *const q_funnel = "SELECT " COUNTS(
    "f[1]") ", round(avg(f[2]), 1), median(f[2]), round(avg(f[3]), 1), "
            "median(f[3]), round(avg(f[4]), 1), median(f[4]) FROM (SELECT tandem_funnel(ts, " MASK
            ", 4, " WINDOW_US ", 'ordered', '') f FROM events WHERE " STEPS_IN
            " GROUP BY person_id) WHERE f[1] >= 0";

static const char *const q_counts =
    "SELECT " COUNTS("f[1]") " FROM (SELECT tandem_funnel(ts, " MASK ", 4, " WINDOW_US
                             ", 'ordered', '') f FROM events WHERE " STEPS_IN
                             " GROUP BY person_id) WHERE f[1] >= 0";

static const char *const q_strict =
    "SELECT " COUNTS("f[1]") " FROM (SELECT tandem_funnel(ts, " MASK ", 4, " WINDOW_US
                             ", 'strict', '') f FROM events GROUP BY person_id) WHERE f[1] >= 0";

static const char *const q_unordered =
    "SELECT " COUNTS("f[1]") " FROM (SELECT tandem_funnel(ts, " MASK ", 4, " WINDOW_US
                             ", 'unordered', '') f FROM events WHERE " STEPS_IN
                             " GROUP BY person_id) WHERE f[1] >= 0";

/* The reference's ASOF chain: from each signup the earliest activate at or after it, then the
 * earliest purchase at or after that, ..., each within 14 days of the signup; the furthest over
 * a person's signups. DuckDB 1.4.4's ASOF join matches a NULL key too, so a later step only
 * counts when the step before it is set. */
static const char *const q_asof =
    "WITH a AS (SELECT person_id, ts t0 FROM events WHERE event = 'signup'), "
    "b AS (SELECT person_id, ts tb FROM events WHERE event = 'activate'), "
    "c AS (SELECT person_id, ts tc FROM events WHERE event = 'purchase'), "
    "d AS (SELECT person_id, ts td FROM events WHERE event = 'invite'), "
    "s1 AS (SELECT a.person_id, t0, tb FROM a ASOF LEFT JOIN b "
    "ON a.person_id = b.person_id AND b.tb >= a.t0), "
    "s2 AS (SELECT person_id, t0, CASE WHEN tb <= t0 + INTERVAL 14 DAY THEN tb END tb FROM s1), "
    "s3 AS (SELECT s2.*, tc FROM s2 ASOF LEFT JOIN c ON s2.person_id = c.person_id "
    "AND c.tc >= s2.tb), "
    "s4 AS (SELECT person_id, t0, tb, CASE WHEN tb IS NOT NULL AND tc <= t0 + INTERVAL 14 DAY "
    "THEN tc END tc FROM s3), "
    "s5 AS (SELECT s4.*, td FROM s4 ASOF LEFT JOIN d ON s4.person_id = d.person_id "
    "AND d.td >= s4.tc), "
    "per AS (SELECT person_id, max((tb IS NOT NULL)::INT + (tc IS NOT NULL)::INT + "
    "coalesce(tc IS NOT NULL AND td <= t0 + INTERVAL 14 DAY, false)::INT) furthest FROM s5 GROUP "
    "BY person_id) "
    "SELECT " COUNTS("furthest") " FROM per";

int main(int argc, char **argv)
{
    long long events = argc > 1 ? atoll(argv[1]) : 10000000;
    long long users = argc > 2 ? atoll(argv[2]) : 1000000;
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    const char *tsv = argc > 4 ? argv[4] : NULL;
    if (events <= 0 || users <= 0 || runs < 0) {
        fprintf(stderr, "usage: funnel_udf [events] [users] [runs] [tsv]\n");
        return 2;
    }
    duckdb_database db;
    duckdb_connection con;
    if (duckdb_open(NULL, &db) != DuckDBSuccess || duckdb_connect(db, &con) != DuckDBSuccess) {
        fprintf(stderr, "cannot open duckdb\n");
        return 1;
    }
    if (whd__funnel_register(con) < 0) {
        fprintf(stderr, "cannot register tandem_funnel\n");
        return 1;
    }
    char sql[2048], ans[512];
    double ms;
    /* 10 weeks from 2026-09-07, in time order; persons and events by hash */
    snprintf(sql, sizeof(sql),
             "CREATE TABLE events AS SELECT 'user-' || (hash(i) %% %lld) AS person_id, "
             "TIMESTAMP '2026-09-07' + to_microseconds(i * (6048000000000 // %lld)) AS ts, "
             "CASE WHEN h < 40 THEN 'pageview' WHEN h < 60 THEN 'signup' WHEN h < 75 THEN "
             "'activate' WHEN h < 90 THEN 'purchase' ELSE 'invite' END AS event "
             "FROM (SELECT i, hash(i * 31 + 7) %% 100 AS h FROM range(%lld) r(i))",
             users, events, events);
    if (run(con, sql, NULL, 0, &ms) < 0)
        return 1;
    double gen_ms = ms;
    if (run(con, "SELECT current_setting('threads')", ans, sizeof(ans), &ms) < 0)
        return 1;
    printf("data: %lld events of %lld persons generated in %.0f ms; DuckDB threads %s; load %s\n",
           events, users, gen_ms, ans, loadavg());
    if (tsv) {
        snprintf(sql, sizeof(sql),
                 "COPY (SELECT strftime(ts, '%%Y-%%m-%%d %%H:%%M:%%S'), event, person_id FROM "
                 "events) TO '%s' (FORMAT csv, DELIMITER '\t', HEADER false)",
                 tsv);
        if (run(con, sql, NULL, 0, &ms) < 0)
            return 1;
    }
    if (runs == 0)
        return 0;
    char a_funnel[512], a_asof[512], a_group[512], a_other[512];
    if (timed(con, "group by person only", q_group, runs, a_group, sizeof(a_group)) < 0 ||
        timed(con, "tandem_funnel ordered (+times)", q_funnel, runs, a_funnel, sizeof(a_funnel)) <
            0 ||
        timed(con, "tandem_funnel ordered (counts)", q_counts, runs, a_other, sizeof(a_other)) <
            0 ||
        timed(con, "ASOF-join SQL ordered", q_asof, runs, a_asof, sizeof(a_asof)) < 0 ||
        timed(con, "tandem_funnel strict (all events)", q_strict, runs, a_other, sizeof(a_other)) <
            0 ||
        timed(con, "tandem_funnel unordered", q_unordered, runs, a_other, sizeof(a_other)) < 0)
        return 1;
    /* the four counts lead both answers */
    size_t k = 0;
    for (int sp = 0; a_funnel[k] && sp < 4; k++)
        if (a_funnel[k] == ' ' && ++sp == 4)
            break;
    int same = strncmp(a_funnel, a_asof, k) == 0 && (a_asof[k] == 0 || a_asof[k] == ' ');
    printf("step counts %s between tandem_funnel and the ASOF-join SQL\n",
           same ? "agree" : "DIFFER");
    duckdb_disconnect(&con);
    duckdb_close(&db);
    return same ? 0 : 1;
}
