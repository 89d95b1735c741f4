/* analytics_bench.c - times insights run in-process against a warehouse file (no HTTP):
 * trends DAU by day over 30 days, a 4-step funnel, 8-week retention, stickiness and weekly
 * lifecycle. The events are whatever the file holds (e.g. bench/insights_gen.c's data set
 * loaded by `tandem serve`, 2026-09-07 .. 2026-11-15); dates are given on the command line.
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc bench/analytics_bench.c build/libtandem_lib.a \
 *      -Ldeps/duckdb/lib -Wl,-rpath,$PWD/deps/duckdb/lib -lduckdb -ljansson -lsodium -ljwt \
 *      -lsqlite3 -lmicrohttpd -lz -lpthread -lm -o build/analytics_bench
 * Run: build/analytics_bench WAREHOUSE.duckdb [FIRST_DAY [RUNS]]
 *   FIRST_DAY (default 2026-09-07): the first day of the data; the month from its 24th day
 *   is the trends range, weeks 1-8 the retention range, days 1-28 the funnel range. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "analytics/analytics.h"
#include "warehouse/warehouse.h"

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static void day_add(const char *day, int n, char out[16])
{
    int y, m, d;
    sscanf(day, "%d-%d-%d", &y, &m, &d);
    static const int md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    while (n-- > 0) {
        int len = md[m - 1] + (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
        if (++d > len) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
    snprintf(out, 16, "%04d-%02d-%02d", y, m, d);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s WAREHOUSE.duckdb [FIRST_DAY [RUNS]]\n", argv[0]);
        return 2;
    }
    const char *first = argc > 2 ? argv[2] : "2026-09-07";
    int runs = argc > 3 ? atoi(argv[3]) : 3;
    char d10[16], d23[16], d27[16], d52[16], d55[16];
    day_add(first, 10, d10);
    day_add(first, 23, d23);
    day_add(first, 27, d27);
    day_add(first, 52, d52);
    day_add(first, 55, d55);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = argv[1];
    cfg.query_timeout_ms = 600000;
    struct wh *wh;
    struct wh_conn *c;
    if (wh_open(&cfg, &wh) != 0 || wh_conn_open(wh, &c) != 0) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], wh_errmsg(NULL));
        return 1;
    }
    struct {
        const char *name;
        enum analytics_kind kind;
        char json[1024];
    } qs[6];
    size_t n = 0;
    qs[n].name = "trends dau 30 days";
    qs[n].kind = ANALYTICS_TRENDS;
    snprintf(qs[n++].json, 1024,
             "{\"series\":[{\"event\":\"pageview\",\"math\":\"dau\"}],\"dateFrom\":\"%s\","
             "\"dateTo\":\"%s\",\"interval\":\"day\",\"timezone\":\"America/New_York\"}",
             d23, d52);
    qs[n].name = "trends total 30 days";
    qs[n].kind = ANALYTICS_TRENDS;
    snprintf(qs[n++].json, 1024,
             "{\"series\":[{\"event\":\"pageview\"}],\"dateFrom\":\"%s\",\"dateTo\":\"%s\"}", d23,
             d52);
    qs[n].name = "funnel 4 steps";
    qs[n].kind = ANALYTICS_FUNNEL;
    snprintf(qs[n++].json, 1024,
             "{\"steps\":[{\"event\":\"signup\"},{\"event\":\"activate\"},{\"event\":\"purchase\"},"
             "{\"event\":\"invite\"}],\"dateFrom\":\"%s\",\"dateTo\":\"%s\"}",
             first, d27);
    qs[n].name = "retention 8 weeks";
    qs[n].kind = ANALYTICS_RETENTION;
    snprintf(qs[n++].json, 1024,
             "{\"targetEvent\":{\"event\":\"signup\"},\"returningEvent\":{\"event\":\"pageview\"},"
             "\"period\":\"week\",\"totalIntervals\":8,\"dateTo\":\"%s\"}",
             d55);
    qs[n].name = "stickiness 30 days";
    qs[n].kind = ANALYTICS_STICKINESS;
    snprintf(qs[n++].json, 1024,
             "{\"series\":[{\"event\":\"pageview\"}],\"dateFrom\":\"%s\",\"dateTo\":\"%s\"}", d23,
             d52);
    qs[n].name = "lifecycle 8 weeks";
    qs[n].kind = ANALYTICS_LIFECYCLE;
    snprintf(qs[n++].json, 1024,
             "{\"series\":[{\"event\":\"pageview\"}],\"interval\":\"week\",\"dateFrom\":\"%s\","
             "\"dateTo\":\"%s\"}",
             d10, d55);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *q = json_loads(qs[i].json, 0, NULL);
        printf("%-22s", qs[i].name);
        for (int r = 0; r < runs; r++) {
            struct analytics_out out;
            int64_t t0 = time_mono_us();
            double c0 = cpu_s();
            int e = analytics_run(c, qs[i].kind, q, time_now_us(), &out);
            int64_t t1 = time_mono_us();
            if (e != 0) {
                char *errs = out.errors ? json_dumps(out.errors, 0) : NULL;
                printf(" failed: %s %s", out.message, errs ? errs : "");
                free(errs);
                rc = 1;
            } else {
                printf(" %7.3f s (cpu %.3f s)", (double)(t1 - t0) / 1e6, cpu_s() - c0);
            }
            analytics_out_release(&out);
        }
        printf("\n");
        json_decref(q);
    }
    wh_conn_close(c);
    wh_close(wh);
    return rc;
}
