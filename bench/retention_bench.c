/* retention_bench.c - warehouse retention (wh_retain) beside a loader, in one process on a fresh
 * warehouse: EVENTS events (default 1,000,000), every other one older than the cutoff, are
 * loaded; then a loader thread commits a batch of BATCH events (default 2,000) every 100 ms for
 * BASE seconds (default 5) alone, and again while wh_retain deletes the old half in windows of
 * WINDOW log offsets (default 122,880). Prints the retention's transactions, longest
 * transaction, wall and CPU time, and the loader's commit latency (p50, p99, max) alone and
 * during retention: the ratio says what retention costs the loader.
 *
 * Build and run: bench/retention.sh (or see it for the cc line), then build/retention_bench DIR */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "warehouse/warehouse.h"

#define DAY_US (INT64_C(86400) * 1000000)

static size_t env_num(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : def;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static _Atomic uint64_t next_offset;
static int64_t now_us;

static void load(struct wh_conn *c, size_t n, bool half_old)
{
    struct wh_event *ev = calloc(n, sizeof(*ev));
    char(*ids)[24] = calloc(n, 24), (*uids)[16] = calloc(n, 16);
    uint64_t first = atomic_fetch_add(&next_offset, n);
    for (size_t i = 0; i < n; i++) {
        uint64_t o = first + i;
        snprintf(ids[i], 24, "b%llu", (unsigned long long)o);
        snprintf(uids[i], 16, "u%llu", (unsigned long long)(o % 10007));
        int64_t age = half_old && o % 2 ? 100 * DAY_US : (int64_t)(o % 20) * DAY_US;
        ev[i] = (struct wh_event){.log_offset = o,
                                  .id = ids[i],
                                  .type = "track",
                                  .event = "pageview",
                                  .user_id = uids[i],
                                  .timestamp_us = now_us - age,
                                  .original_timestamp_us = WH_NO_TIME,
                                  .sent_at_us = WH_NO_TIME,
                                  .received_at_us = now_us,
                                  .properties = "{\"path\":\"/a\"}"};
    }
    struct wh_load ld = {
        .consumer = "warehouse-events", .topic = "events", .next_offset = first + n};
    if (wh_load_events(c, &ld, ev, n, NULL) != 0) {
        fprintf(stderr, "load: %s\n", wh_errmsg(c));
        exit(1);
    }
    free(ev);
    free(ids);
    free(uids);
}

struct feed {
    struct wh *wh;
    size_t batch;
    atomic_bool stop;
    double lat[10000];
    size_t n;
};

static void *feed_main(void *arg)
{
    struct feed *f = arg;
    struct wh_conn *c;
    if (wh_conn_open(f->wh, &c) != 0)
        exit(1);
    while (!atomic_load(&f->stop) && f->n < 10000) {
        int64_t t = time_mono_us();
        load(c, f->batch, false);
        f->lat[f->n++] = (double)(time_mono_us() - t) / 1000;
        int64_t left = 100000 - (time_mono_us() - t);
        if (left > 0)
            usleep((useconds_t)left);
    }
    wh_conn_close(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, struct feed *f)
{
    qsort(f->lat, f->n, sizeof(double), cmp_d);
    printf("loader commits %s: n=%zu p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", what, f->n,
           f->lat[f->n / 2], f->lat[f->n * 99 / 100], f->lat[f->n - 1]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: retention_bench DIR\n");
        return 2;
    }
    size_t events = env_num("EVENTS", 1000000), batch = env_num("BATCH", 2000);
    size_t base = env_num("BASE", 5), window = env_num("WINDOW", 122880);
    char path[4096];
    snprintf(path, sizeof(path), "%s/warehouse.duckdb", argv[1]);
    unlink(path);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = path;
    struct wh *wh;
    struct wh_conn *c;
    if (wh_open(&cfg, &wh) != 0 || wh_conn_open(wh, &c) != 0 || wh_ensure_schema(c) != 0) {
        fprintf(stderr, "open: %s\n", wh_errmsg(NULL));
        return 1;
    }
    now_us = time_now_us();
    for (size_t done = 0; done < events; done += 245760)
        load(c, events - done < 245760 ? events - done : 245760, true);
    if (wh_checkpoint(c, true) != 0)
        fprintf(stderr, "checkpoint: %s\n", wh_errmsg(c));
    printf("loaded %zu events (half older than the cutoff)\n", events);

    struct feed alone = {.wh = wh, .batch = batch};
    pthread_t t;
    pthread_create(&t, NULL, feed_main, &alone);
    sleep((unsigned)base);
    atomic_store(&alone.stop, true);
    pthread_join(t, NULL);
    report("alone", &alone);

    struct feed during = {.wh = wh, .batch = batch};
    pthread_create(&t, NULL, feed_main, &during);
    double cpu0 = cpu_s();
    struct wh_retention r = {.before_us = now_us - 30 * DAY_US, .batch_offsets = window};
    struct wh_retention_stats st;
    int rc = wh_retain(c, &r, &st);
    double cpu = cpu_s() - cpu0;
    atomic_store(&during.stop, true);
    pthread_join(t, NULL);
    if (rc != 0) {
        fprintf(stderr, "retain: %s\n", wh_errmsg(c));
        return 1;
    }
    printf("RESULT retention deleted=%llu transactions=%llu retried=%llu longest_ms=%.1f "
           "wall_s=%.2f cpu_s=%.2f (process, loader included)\n",
           (unsigned long long)st.events, (unsigned long long)st.batches,
           (unsigned long long)st.conflicts, (double)st.max_batch_us / 1000,
           (double)st.elapsed_us / 1e6, cpu);
    report("during retention", &during);
    wh_conn_close(c);
    wh_close(wh);
    return 0;
}
