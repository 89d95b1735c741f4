/* evlog_append.c - append throughput of the local event log with every event durable.
 *
 * T threads each append batches of B events of S bytes and wait until each batch is durable
 * before sending the next (what a capture request does). Prints events/s, MB/s, syncs and the
 * mean group size, and as a reference the rate of one thread doing pwrite + fdatasync per
 * batch on its own file in the same directory (no group commit).
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc bench/evlog_append.c build/libtandem_lib.a -lpthread -lm \
 *      -o build/evlog_append
 * Run: build/evlog_append DIR [threads=8] [fsync=batch] [seconds=3] [batch=100] [size=500] */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evlog/evlog.h"
#include "metrics/metrics.h"

static struct evlog *blog;
static atomic_int stop;
static atomic_long events;
static size_t batch = 100, size = 500;

static void *worker(void *arg)
{
    (void)arg;
    char *p = xmalloc(size);
    struct evlog_rec *recs = xmalloc(batch * sizeof(*recs));
    memset(p, 'e', size);
    for (size_t i = 0; i < batch; i++)
        recs[i] = (struct evlog_rec){p, size};
    while (!atomic_load(&stop)) {
        uint64_t off;
        int rc = evlog_append_sync(blog, "events", recs, batch, &off);
        if (rc != 0) {
            fprintf(stderr, "append: %s: %s\n", err_str(rc), evlog_errmsg(blog));
            exit(1);
        }
        atomic_fetch_add(&events, (long)batch);
    }
    free(p);
    free(recs);
    return NULL;
}

/* The reference: one writer, one fdatasync per batch, no grouping. */
static double reference_rate(const char *dir, double seconds)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/reference.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 0;
    char *buf = xcalloc(batch, size + 24);
    long n = 0;
    off_t pos = 0;
    int64_t t0 = time_mono_us();
    while (time_mono_us() - t0 < (int64_t)(seconds * 1e6)) {
        if (pwrite(fd, buf, batch * (size + 24), pos) < 0 || fdatasync(fd) < 0)
            break;
        pos += (off_t)(batch * (size + 24));
        n += (long)batch;
    }
    double s = (double)(time_mono_us() - t0) / 1e6;
    close(fd);
    unlink(path);
    free(buf);
    return (double)n / s;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [threads] [always|batch|never] [seconds] [batch] [size]\n",
                argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 8;
    double seconds = argc > 4 ? atof(argv[4]) : 3;
    if (argc > 5)
        batch = (size_t)atol(argv[5]);
    if (argc > 6)
        size = (size_t)atol(argv[6]);
    struct evlog_cfg cfg;
    evlog_cfg_defaults(&cfg);
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", argv[1]);
    cfg.dir = logdir;
    if (argc > 3 && evlog_fsync_parse(argv[3], &cfg.fsync) != 0) {
        fprintf(stderr, "bad fsync policy %s\n", argv[3]);
        return 2;
    }
    if (threads < 1 || threads > 256 || batch < 1 || size < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    int rc = evlog_open(&cfg, &blog);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    pthread_t *th = xmalloc((size_t)threads * sizeof(*th));
    int64_t t0 = time_mono_us();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double s = (double)(time_mono_us() - t0) / 1e6;
    long n = atomic_load(&events);
    evlog_close(blog);

    struct metrics_family *syncs =
        metrics_family(METRICS_COUNTER, "tandem_evlog_fsyncs_total", "", NULL);
    struct metrics_family *groups =
        metrics_histogram("tandem_evlog_group_records", "", NULL, NULL, 0);
    double n_syncs = metrics_value(metrics_series0(syncs));
    uint64_t n_groups = metrics_hist_count(metrics_series0(groups));
    double ref = reference_rate(argv[1], seconds);
    printf("evlog %s, %d threads, %zu x %zu B: %.0f events/s (%.1f MB/s), %.0f syncs, "
           "%.1f events per group\n",
           evlog_fsync_name(cfg.fsync), threads, batch, size, (double)n / s,
           (double)n * (double)size / s / 1e6, n_syncs,
           n_groups ? (double)n / (double)n_groups : 0.0);
    printf("reference: 1 writer, fdatasync per batch: %.0f events/s; ratio %.2f\n", ref,
           ref > 0 ? (double)n / s / ref : 0.0);
    free(th);
    return 0;
}
