/* models_bench.c - the figures of bench/models.sh, in one process on a fresh data directory:
 *
 *   a) full rebuild: EVENTS events (default 10,000,000) of EVENTS/100 users over 60 days are
 *      loaded into `events` (wh_load_events, as the loader does); then a per-user daily
 *      aggregate is built as a `table` model (wh_model_build: build aside, test, publish) and,
 *      alternately, the same SELECT as a plain CREATE TABLE AS on a raw DuckDB connection of
 *      the same database. RUNS (default 3) of each; the medians and their ratio.
 *   b) incremental freshness: one thread loads RATE events/s (default 20,000) in batches every
 *      100 ms for DURATION seconds (default 30) while another rebuilds the same model as
 * `incremental` (unique key user_day) in a loop. For each loaded batch, the time from its load
 * commit to the commit of the first build whose range covers it: p50, p99, max; how many builds
 * merged (docs/models.md "Incremental semantics"), and the CPU per build (the process's CPU
 * less the loader thread's, over the builds). The peak RSS (VmHWM) is printed at the end. c) sync:
 * a model of SYNC_ROWS rows (default 100,000) synced into an empty collection (creates), then every
 * row changed and synced again (updates): rows/s of each.
 *
 * Build: see bench/models.sh. Run: build/models_bench DIR */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <pthread.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <duckdb.h>

#include "models/models_int.h"
#include "warehouse/duckdb/whd_int.h"

static size_t env_num(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : def;
}

static double now_s(void)
{
    return (double)time_mono_us() / 1e6;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The process's peak resident set (VmHWM), in MiB; -1 when unknown. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    return kib < 0 ? -1 : kib / 1024;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t next_offset;
static const int64_t T0 = INT64_C(1788220800) * 1000000; /* 2026-09-01 */

/* Loads n events (offsets from next_offset) in one transaction. */
static void load(struct wh_conn *c, size_t n, size_t users, int64_t span_us)
{
    struct wh_event *ev = calloc(n, sizeof(*ev));
    char(*ids)[24] = calloc(n, 24), (*uids)[16] = calloc(n, 16);
    static const char *names[] = {"pageview", "signup", "purchase", "invite"};
    for (size_t i = 0; i < n; i++) {
        uint64_t o = next_offset + i;
        snprintf(ids[i], 24, "b%llu", (unsigned long long)o);
        snprintf(uids[i], 16, "u%llu", (unsigned long long)((o * 2654435761u) % users));
        ev[i] = (struct wh_event){.log_offset = o,
                                  .id = ids[i],
                                  .type = "track",
                                  .event = names[o % 4],
                                  .user_id = uids[i],
                                  .timestamp_us = T0 + (int64_t)((o * 7919) % (uint64_t)span_us),
                                  .original_timestamp_us = WH_NO_TIME,
                                  .sent_at_us = WH_NO_TIME,
                                  .received_at_us = WH_NO_TIME};
    }
    next_offset += n;
    struct wh_load ld = {
        .consumer = "warehouse-events", .topic = "events", .next_offset = next_offset};
    if (wh_load_events(c, &ld, ev, n, NULL) != 0) {
        fprintf(stderr, "load: %s\n", wh_errmsg(c));
        exit(1);
    }
    free(ev);
    free(ids);
    free(uids);
}

#define DAILY                                                                                      \
    "SELECT user_id || '/' || CAST(CAST(\"timestamp\" AS DATE) AS VARCHAR) AS user_day, user_id, " \
    "CAST(\"timestamp\" AS DATE) AS day, count(*) AS events, count(*) FILTER (WHERE event = "      \
    "'purchase') AS purchases, min(\"timestamp\") AS first_ts, max(\"timestamp\") AS last_ts "     \
    "FROM events GROUP BY ALL"

#define USERS                                                                                      \
    "SELECT user_id, count(*) AS events, count(*) FILTER (WHERE event = 'purchase') AS "           \
    "purchases, min(\"timestamp\") AS first_ts, max(\"timestamp\") AS last_ts FROM events "        \
    "GROUP BY user_id"

static double build(struct wh_conn *c, const struct wh_model *m, const char **mode)
{
    struct wh_model_opts o = {0};
    json_t *out = NULL;
    double t = now_s();
    if (wh_model_build(c, m, &o, &out) != 0 ||
        strcmp(json_string_value(json_object_get(out, "status")), "success") != 0) {
        char *s = out ? json_dumps(out, 0) : NULL;
        fprintf(stderr, "build: %s %s\n", wh_errmsg(c), s ? s : "");
        exit(1);
    }
    t = now_s() - t;
    if (mode)
        *mode = json_string_value(json_object_get(out, "mode"));
    json_decref(out);
    return t;
}

/* ---- b) the loader thread ---- */

struct feed {
    struct wh *wh;
    size_t rate, seconds;
    pthread_mutex_t mu;
    uint64_t *ends;    /* end offset of each batch */
    double *loaded_at; /* its commit time */
    size_t n;
    volatile int done;
    double cpu; /* the feeder thread's own CPU seconds */
};

static void *feeder(void *arg)
{
    struct feed *f = arg;
    struct wh_conn *c;
    if (wh_conn_open(f->wh, &c) != 0)
        exit(1);
    size_t per = f->rate / 10;
    double start = now_s();
    for (size_t k = 0; k < f->seconds * 10; k++) {
        double due = start + (double)k * 0.1;
        while (now_s() < due)
            usleep(1000);
        load(c, per, 100000, INT64_C(86400) * 1000000 * 60);
        pthread_mutex_lock(&f->mu);
        f->ends[f->n] = next_offset;
        f->loaded_at[f->n] = now_s();
        f->n++;
        pthread_mutex_unlock(&f->mu);
    }
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    f->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    f->done = 1;
    wh_conn_close(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: models_bench DIR\n");
        return 2;
    }
    size_t events = env_num("EVENTS", 10000000), runs = env_num("RUNS", 3);
    size_t rate = env_num("RATE", 20000), seconds = env_num("DURATION", 30);
    size_t sync_rows = env_num("SYNC_ROWS", 100000);
    char path[1100];
    snprintf(path, sizeof(path), "%s/warehouse.duckdb", argv[1]);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = path;
    struct wh *wh;
    struct wh_conn *c;
    if (wh_open(&cfg, &wh) != 0 || wh_conn_open(wh, &c) != 0 || wh_ensure_schema(c) != 0) {
        fprintf(stderr, "warehouse: %s\n", wh_errmsg(NULL));
        return 1;
    }

    const char *parts = getenv("PARTS") ? getenv("PARTS") : "abc";
    /* a) */
    double t = now_s();
    for (size_t done = 0; done < events; done += 200000)
        load(c, events - done < 200000 ? events - done : 200000, events / 100 ? events / 100 : 1,
             INT64_C(86400) * 1000000 * 60);
    if (wh_checkpoint(c, true) != 0)
        fprintf(stderr, "checkpoint: %s\n", wh_errmsg(c));
    printf("loaded %zu events in %.1f s\n", events, now_s() - t);
    duckdb_connection raw;
    if (duckdb_connect(((struct whd *)wh)->db, &raw) != DuckDBSuccess)
        return 1;
    struct wh_model full = {.name = "daily", .sql = DAILY, .materialized = "table"};
    double tm[16], td[16];
    if (runs > 16)
        runs = 16;
    for (size_t r = 0; strchr(parts, 'a') && r < runs; r++) {
        duckdb_result res;
        duckdb_query(raw, "DROP TABLE IF EXISTS ref_daily", &res);
        duckdb_destroy_result(&res);
        double t1 = now_s();
        if (duckdb_query(raw, "CREATE TABLE ref_daily AS " DAILY, &res) != DuckDBSuccess) {
            fprintf(stderr, "duckdb: %s\n", duckdb_result_error(&res));
            return 1;
        }
        td[r] = now_s() - t1;
        duckdb_destroy_result(&res);
        tm[r] = build(c, &full, NULL);
        printf("  run %zu: duckdb %.2f s, model %.2f s\n", r + 1, td[r], tm[r]);
    }
    double md = strchr(parts, 'a') ? median(td, runs) : 0,
           mm = strchr(parts, 'a') ? median(tm, runs) : 0;
    if (strchr(parts, 'a'))
        printf("RESULT full_rebuild events=%zu duckdb_s=%.2f model_s=%.2f ratio=%.2f\n", events, md,
               mm, mm / md);
    duckdb_disconnect(&raw);

    /* b) KEY=user: the per-user aggregate (its key a plain column) instead of per user and day */
    bool by_user = getenv("KEY") && strcmp(getenv("KEY"), "user") == 0;
    /* MERGE=0: the same model inside a CTE, which an incremental build cannot merge, so it
     * re-aggregates the touched keys from every row (the path before merging) */
    bool no_merge = getenv("MERGE") && strcmp(getenv("MERGE"), "0") == 0;
    char cte[1024];
    snprintf(cte, sizeof(cte), "WITH m AS (%s) SELECT * FROM m", by_user ? USERS : DAILY);
    struct wh_model inc = {.name = "daily_inc",
                           .sql = no_merge  ? cte
                                  : by_user ? USERS
                                            : DAILY,
                           .materialized = "incremental",
                           .unique_key = by_user ? "user_id" : "user_day"};
    if (!strchr(parts, 'b'))
        goto part_c;
    build(c, &inc, NULL);
    struct feed f = {.wh = wh, .rate = rate, .seconds = seconds};
    pthread_mutex_init(&f.mu, NULL);
    f.ends = calloc(seconds * 10 + 1, sizeof(*f.ends));
    f.loaded_at = calloc(seconds * 10 + 1, sizeof(*f.loaded_at));
    double *fresh = calloc(seconds * 10 + 1, sizeof(double));
    size_t n_fresh = 0, n_builds = 0, n_merged = 0;
    double cpu_b = cpu_s();
    pthread_t th;
    pthread_create(&th, NULL, feeder, &f);
    while (!f.done || n_fresh < f.n) {
        pthread_mutex_lock(&f.mu);
        size_t seen = f.n;
        pthread_mutex_unlock(&f.mu);
        struct wh_model_opts o = {0};
        json_t *out = NULL;
        if (wh_model_build(c, &inc, &o, &out) != 0) {
            fprintf(stderr, "incremental build: %s\n", wh_errmsg(c));
            return 1;
        }
        double at = now_s();
        uint64_t to = (uint64_t)json_integer_value(json_object_get(out, "eventsTo"));
        n_merged += json_is_true(json_object_get(out, "merge"));
        json_decref(out);
        n_builds++;
        pthread_mutex_lock(&f.mu);
        while (n_fresh < f.n && f.ends[n_fresh] <= to) {
            fresh[n_fresh] = at - f.loaded_at[n_fresh];
            n_fresh++;
        }
        pthread_mutex_unlock(&f.mu);
        if (seen == 0)
            usleep(10000);
    }
    pthread_join(th, NULL);
    qsort(fresh, n_fresh, sizeof(double), cmp_d);
    double cpu_all = cpu_s() - cpu_b;
    printf("RESULT incremental key=%s rate=%zu/s seconds=%zu builds=%zu merged=%zu p50_s=%.2f "
           "p99_s=%.2f "
           "max_s=%.2f cpu_s=%.1f (process) loader_thread_cpu_s=%.1f cpu_per_build_s=%.3f "
           "(process minus the loader thread, per build)\n",
           inc.unique_key, rate, seconds, n_builds, n_merged, fresh[n_fresh / 2],
           fresh[(size_t)((double)n_fresh * 0.99)], fresh[n_fresh - 1], cpu_all, f.cpu,
           (cpu_all - f.cpu) / (double)n_builds);

part_c:
    if (!strchr(parts, 'c'))
        goto done;
    /* c) */
    struct store *st;
    struct store_cfg sc = {.dir = argv[1]};
    char err[300];
    if (store_open(&sc, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "store: %s\n", err);
        return 1;
    }
    json_t *spec = json_pack("{s:s,s:s,s:[{s:s,s:s},{s:s,s:s}]}", "name", "synced", "type", "base",
                             "fields", "name", "k", "type", "text", "name", "n", "type", "number");
    json_t *errs = NULL;
    if (store_collection_create(st, spec, &errs, NULL) != 0) {
        fprintf(stderr, "collection: %s\n", store_errmsg(st));
        return 1;
    }
    json_decref(spec);
    char sql[300];
    const char *phase[] = {"create", "update"};
    for (int p = 0; p < 2; p++) {
        snprintf(sql, sizeof(sql), "SELECT 'key' || i AS k, i + %d AS n FROM range(%zu) t(i)", p,
                 sync_rows);
        struct wh_model sm = {.name = "synced_m", .sql = sql, .materialized = "table"};
        build(c, &sm, NULL);
        json_t *sync = json_pack("{s:s,s:s,s:b}", "collection", "synced", "key", "k", "delete", 1);
        json_t *out = NULL;
        double t1 = now_s(), c1 = cpu_s();
        if (models__sync(st, c, "synced_m", sync, true, &out) != 0 ||
            strcmp(json_string_value(json_object_get(out, "status")), "done") != 0) {
            fprintf(stderr, "sync: %s\n", json_dumps(out, 0));
            return 1;
        }
        double dt = now_s() - t1, dc = cpu_s() - c1;
        printf("RESULT sync_%s rows=%zu s=%.2f rows_per_s=%.0f cpu_s=%.2f rows_per_cpu_s=%.0f\n",
               phase[p], sync_rows, dt, (double)sync_rows / dt, dc, (double)sync_rows / dc);
        json_decref(out);
        json_decref(sync);
    }
    store_close(st);
done:
    printf("RESULT peak_rss_mib=%.0f (VmHWM)\n", peak_rss_mib());
    wh_conn_close(c);
    wh_close(wh);
    return 0;
}
