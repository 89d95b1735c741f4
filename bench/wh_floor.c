/* wh_floor.c - what loading the events table costs in DuckDB alone, with parsing taken out.
 *
 * Reads the first N events of an existing log (written by bench/pipeline_gen.c), parses all of
 * them into memory first (timed apart), then loads them with wh_load_events in batches, with a
 * checkpoint every CKROWS rows and one at the end, exactly as the loader does but on one
 * thread and with nothing else to do. The rows/s this prints is the ceiling of the loader on
 * this machine for this table; the parse figure is what the loader adds per row.
 *
 * Build (after the CMake build):
 *   cc -O2 -g -std=gnu11 -Isrc -Ideps/duckdb/include bench/wh_floor.c build/libtandem_lib.a \
 *      -Ldeps/duckdb/lib -lduckdb -Wl,-rpath,$PWD/deps/duckdb/lib -ljansson -lsodium \
 *      -lsqlite3 -lz -lpthread -lm -o build/wh_floor
 * Run: build/wh_floor LOGDIR_PARENT WAREHOUSE_FILE [events=1000000]
 * Environment: PARSE_ONLY (stop after parsing), BATCH (50000), TXN (rows per transaction, 0: one
 * batch each), CKROWS (500000), THREADS (0 = DuckDB's default), MEM ("2GB"), CKPT
 * (checkpoint_threshold, the default wh_cfg's), PRE (SQL run once before loading, e.g. a CREATE
 * TABLE events with other types, or SETs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <duckdb.h>

#include "evlog/evlog.h"
#include "pipeline/pipeline.h"
#include "warehouse/warehouse.h"

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static size_t env_num(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : def;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR WAREHOUSE [events]\n", argv[0]);
        return 2;
    }
    size_t n = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 1000000;
    size_t batch = env_num("BATCH", 50000), ckrows = env_num("CKROWS", 500000);
    size_t txn = env_num("TXN", 0); /* rows per transaction (batches joined with `more`) */
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", argv[1]);
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = logdir;
    struct evlog *log;
    if (evlog_open(&lc, &log) < 0) {
        fprintf(stderr, "evlog: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    struct wh_event *ev = calloc(n, sizeof(*ev));
    struct arena a;
    arena_init(&a, 64 << 20);
    struct evlog_batch b;
    evlog_batch_init(&b);
    size_t got = 0;
    double c0 = cpu_s();
    int64_t t0 = time_mono_us();
    while (got < n) {
        if (evlog_read(log, "events", got, n - got, 64u << 20, &b) < 0 || b.n == 0) {
            fprintf(stderr, "read at %zu: %s\n", got, evlog_errmsg(log));
            return 1;
        }
        for (size_t i = 0; i < b.n; i++) {
            char reason[200];
            if (pipeline_parse_event(b.recs[i].data, b.recs[i].len, b.recs[i].offset, &ev[got], &a,
                                     reason, sizeof(reason)) < 0) {
                fprintf(stderr, "event %zu: %s\n", got, reason);
                return 1;
            }
            got++;
        }
    }
    printf("read+parse: %zu events in %.2f s wall, %.2f us CPU/row\n", n,
           (double)(time_mono_us() - t0) / 1e6, (cpu_s() - c0) * 1e6 / (double)n);
    if (getenv("PARSE_ONLY"))
        return 0;

    struct wh_cfg wc;
    wh_cfg_defaults(&wc);
    wc.path = argv[2];
    wc.threads = (int)env_num("THREADS", 0);
    wc.memory_limit = getenv("MEM") ? getenv("MEM") : "2GB";
    if (getenv("CKPT"))
        wc.checkpoint_threshold = getenv("CKPT");
    if (getenv("PRE")) { /* DDL before the warehouse opens the file (e.g. other column types) */
        duckdb_database db;
        duckdb_connection con;
        duckdb_result res;
        if (duckdb_open(argv[2], &db) != DuckDBSuccess || duckdb_connect(db, &con) != DuckDBSuccess)
            return 1;
        if (duckdb_query(con, getenv("PRE"), &res) != DuckDBSuccess)
            fprintf(stderr, "PRE: %s\n", duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        duckdb_disconnect(&con);
        duckdb_close(&db);
    }
    struct wh *wh;
    struct wh_conn *conn;
    if (wh_open(&wc, &wh) < 0 || wh_conn_open(wh, &conn) < 0) {
        fprintf(stderr, "wh: %s\n", wh_errmsg(NULL));
        return 1;
    }
    if (wh_ensure_schema(conn) < 0) {
        fprintf(stderr, "schema: %s\n", wh_errmsg(conn));
        return 1;
    }
    double t_load = 0, t_ckpt = 0, c_load = 0, c_ckpt = 0;
    size_t since = 0, in_txn = 0;
    for (size_t base = 0, m = 0; base < n; base += m) {
        m = n - base < batch ? n - base : batch;
        if (txn && m > txn - in_txn)
            m = txn - in_txn;
        in_txn += m;
        bool more = txn && in_txn < txn && base + m < n;
        if (!more)
            in_txn = 0;
        struct wh_load ld = {.consumer = "warehouse-events",
                             .topic = "events",
                             .next_offset = base + m,
                             .more = more};
        int64_t t = time_mono_us();
        double c = cpu_s();
        if (wh_load_events(conn, &ld, ev + base, m, NULL) < 0) {
            fprintf(stderr, "load: %s\n", wh_errmsg(conn));
            return 1;
        }
        t_load += (double)(time_mono_us() - t) / 1e6;
        c_load += cpu_s() - c;
        since += m;
        if (!more && (since >= ckrows || base + m == n)) {
            t = time_mono_us();
            c = cpu_s();
            if (wh_checkpoint(conn, true) < 0) {
                fprintf(stderr, "checkpoint: %s\n", wh_errmsg(conn));
                return 1;
            }
            t_ckpt += (double)(time_mono_us() - t) / 1e6;
            c_ckpt += cpu_s() - c;
            since = 0;
        }
    }
    double wall = t_load + t_ckpt;
    printf("load: %.2f s wall (%.2f CPU), checkpoints: %.2f s wall (%.2f CPU); %.0f rows/s, "
           "%.2f us CPU/row\n",
           t_load, c_load, t_ckpt, c_ckpt, (double)n / wall, (c_load + c_ckpt) * 1e6 / (double)n);
    wh_conn_close(conn);
    wh_close(wh);
    evlog_close(log);
    arena_release(&a);
    free(ev);
    evlog_batch_release(&b);
    return 0;
}
