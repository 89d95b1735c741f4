/* wh_load.c - warehouse loading throughput through the real pipeline.
 *
 * Appends N realistic Segment events (about 600 bytes of JSON each: properties, context with
 * library/page/userAgent, traits on identifies) to a fresh local event log, then starts the
 * loader and times how long the warehouse takes to hold all of them. Prints rows/s, and as a
 * reference the rate of DuckDB writing the same rows with an engine-internal
 * copy (CREATE TABLE AS SELECT, no JSON parsing on our side), measured in the same run.
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc -Ideps/duckdb/include bench/wh_load.c build/libtandem_lib.a \
 *      -Ldeps/duckdb/lib -lduckdb -Wl,-rpath,$PWD/deps/duckdb/lib -ljansson -lsodium -lpthread \
 *      -lm -o build/wh_load
 * Run: build/wh_load DIR [events=1000000] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <duckdb.h>

#include "evlog/evlog.h"
#include "pipeline/pipeline.h"
#include "warehouse/warehouse.h"

static const char *const names[] = {"Page Viewed",     "Product Clicked", "Signed Up",
                                    "Order Completed", "Search",          "Added To Cart"};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [events]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    char logdir[4096], whpath[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    snprintf(whpath, sizeof(whpath), "%s/warehouse.duckdb", dir);

    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    struct evlog *log;
    if (evlog_open(&lc, &log) < 0) {
        fprintf(stderr, "evlog: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    enum { B = 1000 };
    static char bufs[B][1024];
    struct evlog_rec recs[B];
    int64_t t0 = time_mono_us();
    for (uint64_t base = 0; base < n; base += B) {
        size_t m = n - base < B ? (size_t)(n - base) : B;
        for (size_t i = 0; i < m; i++) {
            uint64_t k = base + i;
            int len = snprintf(
                bufs[i], sizeof(bufs[i]),
                "{\"messageId\":\"msg-%016llx\",\"type\":\"%s\",\"event\":\"%s\","
                "\"userId\":\"user%llu\",\"anonymousId\":\"anon-%llx\",\"timestamp\":"
                "\"2026-11-%02dT%02d:%02d:%02d.%03dZ\",\"originalTimestamp\":"
                "\"2026-11-21T10:00:00.000Z\",\"sentAt\":\"2026-11-21T10:00:00.100Z\","
                "\"receivedAt\":\"2026-11-21T10:00:00.200Z\",\"properties\":{\"plan\":\"%s\","
                "\"price\":%llu.99,\"currency\":\"EUR\",\"sku\":\"SKU-%llu\"},"
                "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"},"
                "\"page\":{\"path\":\"/p/%llu\",\"url\":\"https://shop.example/p/%llu\"},"
                "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\","
                "\"ip\":\"10.0.%d.%d\"},\"source\":\"web\"}",
                (unsigned long long)k, k % 10 == 0 ? "identify" : "track", names[k % 6],
                (unsigned long long)(k % 50000), (unsigned long long)(k * 2654435761u),
                (int)(1 + k % 28), (int)(k % 24), (int)(k % 60), (int)(k % 59), (int)(k % 1000),
                k % 3 ? "free" : "pro", (unsigned long long)(k % 200),
                (unsigned long long)(k % 999), (unsigned long long)(k % 500),
                (unsigned long long)(k % 500), (int)(k % 250), (int)(k % 200));
            recs[i] = (struct evlog_rec){bufs[i], (size_t)len};
        }
        uint64_t off;
        if (evlog_append_sync(log, "events", recs, m, &off) < 0) {
            fprintf(stderr, "append: %s\n", evlog_errmsg(log));
            return 1;
        }
    }
    printf("appended %llu events in %.2f s\n", (unsigned long long)n,
           (double)(time_mono_us() - t0) / 1e6);

    struct wh_cfg wc;
    wh_cfg_defaults(&wc);
    wc.path = whpath;
    if (getenv("CKPT")) /* else the default */
        wc.checkpoint_threshold = getenv("CKPT");
    struct wh *wh;
    if (wh_open(&wc, &wh) < 0) {
        fprintf(stderr, "wh: %s\n", wh_errmsg(NULL));
        return 1;
    }
    struct pipeline_cfg pc;
    pipeline_cfg_defaults(&pc);
    pc.log = log;
    pc.wh = wh;
    if (getenv("CKROWS"))
        pc.checkpoint_rows = strtoull(getenv("CKROWS"), NULL, 10);
    if (getenv("MAXB"))
        pc.max_batch = strtoul(getenv("MAXB"), NULL, 10);
    if (getenv("MAXBYTES"))
        pc.max_batch_bytes = strtoul(getenv("MAXBYTES"), NULL, 10);
    struct pipeline *p;
    t0 = time_mono_us();
    if (pipeline_start(&pc, &p) < 0)
        return 1;
    struct pipeline_status st[2];
    for (;;) {
        pipeline_status(p, st, 2);
        if (st[0].committed >= n)
            break;
        usleep(20000);
    }
    double secs = (double)(time_mono_us() - t0) / 1e6;
    pipeline_stop(p);
    printf("loader: %llu rows in %.2f s = %.0f rows/s (%llu batches, %llu rejects)\n",
           (unsigned long long)st[0].rows, secs, (double)st[0].rows / secs,
           (unsigned long long)st[0].batches, (unsigned long long)st[0].rejects);

    wh_close(wh);
    evlog_close(log);

    /* reference: DuckDB copying the same rows inside the engine (no parsing on our side) */
    if (getenv("NOREF"))
        return 0;
    duckdb_database db;
    duckdb_connection con;
    if (duckdb_open(whpath, &db) != DuckDBSuccess || duckdb_connect(db, &con) != DuckDBSuccess)
        return 1;
    duckdb_result res;
    t0 = time_mono_us();
    if (duckdb_query(con, "CREATE TABLE events_copy AS SELECT * FROM events", &res) !=
        DuckDBSuccess)
        fprintf(stderr, "copy: %s\n", duckdb_result_error(&res));
    duckdb_destroy_result(&res);
    double ref = (double)(time_mono_us() - t0) / 1e6;
    printf("reference (CREATE TABLE AS SELECT in DuckDB): %.2f s = %.0f rows/s; loader at "
           "%.0f%% of it\n",
           ref, (double)n / ref, 100.0 * ref / secs);
    duckdb_disconnect(&con);
    duckdb_close(&db);
    return 0;
}
