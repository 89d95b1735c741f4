/* test_evlog_log.c - the live log: append and read across segment rolls, durability tickets
 * and callbacks, concurrent appenders, retention with consumers, a full disk and a failed
 * sync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "evlog/local/local_int.h"
#include "evlog_testlib.h"
#include "metrics/metrics.h"

struct env {
    char *tmp;
    char dir[4200];
    struct evlog_cfg cfg;
    struct evlog *log;
};

static void env_open(struct env *e)
{
    int rc = evlog_open(&e->cfg, &e->log);
    if (rc != 0)
        fail_msg("open: %s: %s", err_str(rc), evlog_errmsg(NULL));
}

static void env_init(struct env *e, const char *tag)
{
    memset(e, 0, sizeof(*e));
    e->tmp = tl_tmpdir(tag);
    tl_cfg(&e->cfg, e->tmp, e->dir, sizeof(e->dir));
}

static void env_free(struct env *e)
{
    evlog_close(e->log);
    tl_rmrf(e->tmp);
    free(e->tmp);
}

static size_t count_segments(const char *dir, const char *topic)
{
    char tdir[4300];
    snprintf(tdir, sizeof(tdir), "%s/%s", dir, topic);
    uint64_t *bases;
    size_t n;
    assert_int_equal(evlog__seg_list(tdir, &bases, &n), 0);
    free(bases);
    return n;
}

/* Appends records [first, first + n) of the tl_payload sequence in batches of batch. */
static void append_seq(struct evlog *log, const char *topic, uint64_t first, uint64_t n,
                       size_t batch, size_t mod)
{
    char *bufs = malloc(batch * 256);
    struct evlog_rec *recs = malloc(batch * sizeof(*recs));
    for (uint64_t i = first; i < first + n;) {
        size_t k = 0;
        for (; k < batch && i + k < first + n; k++) {
            recs[k].data = bufs + k * 256;
            recs[k].len = tl_payload(i + k, mod, bufs + k * 256, 256);
        }
        uint64_t off;
        assert_int_equal(evlog_append_sync(log, topic, recs, k, &off), 0);
        assert_int_equal(off, i);
        i += k;
    }
    free(bufs);
    free(recs);
}

/* Reads [from, to) and compares with the tl_payload sequence. */
static void expect_seq(struct evlog *log, const char *topic, uint64_t from, uint64_t to,
                       size_t max_records, size_t max_bytes, size_t mod)
{
    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t next = from;
    while (next < to) {
        size_t want = to - next < max_records ? (size_t)(to - next) : max_records;
        int rc = evlog_read(log, topic, next, want, max_bytes, &b);
        if (rc != 0)
            fail_msg("read at %" PRIu64 ": %s: %s", next, err_str(rc), evlog_errmsg(log));
        assert_true(b.n > 0 && b.n <= max_records);
        size_t bytes = 0;
        for (size_t i = 0; i < b.n; i++) {
            char p[256];
            size_t len = tl_payload(next + i, mod, p, sizeof(p));
            assert_int_equal(b.recs[i].offset, next + i);
            assert_int_equal(b.recs[i].len, len);
            assert_memory_equal(b.recs[i].data, p, len);
            assert_true(b.recs[i].timestamp_us > 0);
            bytes += len;
        }
        assert_true(b.n == 1 || bytes <= max_bytes);
        assert_int_equal(b.next_offset, next + b.n);
        next = b.next_offset;
    }
    assert_int_equal(next, to);
    uint64_t end;
    assert_int_equal(evlog_end_offset(log, topic, &end), 0);
    if (end == to) {
        assert_int_equal(evlog_read(log, topic, to, max_records, max_bytes, &b), 0);
        assert_int_equal(b.n, 0);
        assert_int_equal(b.next_offset, to);
    }
    evlog_batch_release(&b);
}

static void test_append_read_across_rolls(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "roll");
    e.cfg.segment_bytes = 1024;
    e.cfg.fsync = EVLOG_FSYNC_ALWAYS;
    env_open(&e);
    append_seq(e.log, "events", 0, 600, 7, 120);
    append_seq(e.log, "changes", 0, 50, 3, 10);
    assert_true(count_segments(e.dir, "events") > 10);
    uint64_t end, start;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 600);
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_int_equal(start, 0);
    expect_seq(e.log, "events", 0, 600, 13, 1 << 20, 120);
    expect_seq(e.log, "events", 0, 600, 1000, 300, 120); /* byte-limited batches */
    expect_seq(e.log, "events", 0, 600, 1000, 1, 120);   /* one record at a time */
    expect_seq(e.log, "events", 333, 600, 50, 1 << 20, 120);
    expect_seq(e.log, "changes", 0, 50, 100, 1 << 20, 10);

    /* the metrics counted every record */
    struct buf m;
    buf_init(&m);
    metrics_render(&m);
    assert_non_null(strstr(buf_cstr(&m), "tandem_evlog_appends_total{topic=\"events\"} 600"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_evlog_end_offset{topic=\"events\"} 600"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_evlog_fsyncs_total"));
    assert_non_null(strstr(buf_cstr(&m), "tandem_evlog_group_records_count"));
    buf_release(&m);

    /* reopen: everything is there (the last segment is recovered, the others trusted) and
     * appends continue */
    evlog_close(e.log);
    e.cfg.verify_all = true;
    env_open(&e);
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 600);
    expect_seq(e.log, "events", 0, 600, 64, 1 << 20, 120);
    append_seq(e.log, "events", 600, 100, 10, 120);
    expect_seq(e.log, "events", 550, 700, 64, 1 << 20, 120);
    e.cfg.verify_all = false;
    evlog_close(e.log);
    env_open(&e);
    expect_seq(e.log, "events", 0, 700, 97, 1 << 20, 120);
    env_free(&e);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "bad");
    e.cfg.max_record_bytes = 100;
    e.cfg.fsync = EVLOG_FSYNC_NEVER;
    env_open(&e);
    struct evlog_rec r = {"x", 1};
    uint64_t off, t;
    assert_int_equal(evlog_append(e.log, "Bad/Name", &r, 1, &off, &t), ERR_INVALID);
    assert_int_equal(evlog_append(e.log, "", &r, 1, &off, &t), ERR_INVALID);
    assert_int_equal(evlog_append(e.log, "ok", &r, 0, &off, &t), ERR_INVALID);
    char big[101] = {0};
    struct evlog_rec two[2] = {{"y", 1}, {big, sizeof(big)}};
    assert_int_equal(evlog_append(e.log, "ok", two, 2, &off, &t), ERR_LIMIT);
    assert_non_null(strstr(evlog_errmsg(e.log), "over the limit"));
    /* nothing of the refused batch was written */
    assert_int_equal(evlog_append_sync(e.log, "ok", &r, 1, &off), 0);
    assert_int_equal(off, 0);
    struct evlog_rec empty = {NULL, 0};
    assert_int_equal(evlog_append_sync(e.log, "ok", &empty, 1, &off), 0);
    assert_int_equal(off, 1);

    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(e.log, "nope", 0, 10, 100, &b), ERR_NOTFOUND);
    assert_int_equal(evlog_read(e.log, "No", 0, 10, 100, &b), ERR_INVALID);
    assert_int_equal(evlog_read(e.log, "ok", 3, 10, 100, &b), ERR_INVALID);
    assert_int_equal(evlog_read(e.log, "ok", 0, 10, 100, &b), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.recs[1].len, 0);
    assert_int_equal(evlog_read(e.log, "ok", 0, 0, 100, &b), 0);
    assert_int_equal(b.n, 0);
    evlog_batch_release(&b);
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "nope", &end), 0);
    assert_int_equal(end, 0);
    assert_int_equal(evlog_end_offset(e.log, "No", &end), ERR_INVALID);
    assert_int_equal(evlog_wait_durable(e.log, 1000), ERR_INVALID);

    /* a record over a limit lowered after it was written still reads back, and recovery
     * keeps it */
    char hundred[100];
    memset(hundred, 'h', sizeof(hundred));
    struct evlog_rec h = {hundred, sizeof(hundred)};
    assert_int_equal(evlog_append_sync(e.log, "ok", &h, 1, &off), 0);
    assert_int_equal(off, 2);
    evlog_close(e.log);
    e.cfg.max_record_bytes = 10;
    env_open(&e);
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(e.log, "ok", 2, 10, 1000, &b), 0);
    assert_int_equal(b.n, 1);
    assert_memory_equal(b.recs[0].data, hundred, sizeof(hundred));
    evlog_batch_release(&b);
    assert_int_equal(evlog_append(e.log, "ok", &h, 1, &off, &t), ERR_LIMIT);

    /* a second open of the same directory is refused */
    struct evlog *other = NULL;
    assert_int_equal(evlog_open(&e.cfg, &other), ERR_BUSY);
    assert_null(other);
    assert_non_null(strstr(evlog_errmsg(NULL), "in use"));
    env_free(&e);
}

/* ---- durability ---- */

struct cb_slot {
    atomic_int calls;
    atomic_int rc;
    pthread_t thread;
};

static void on_durable(void *arg, int rc)
{
    struct cb_slot *s = arg;
    atomic_fetch_add(&s->calls, 1);
    atomic_store(&s->rc, rc);
    s->thread = pthread_self();
}

static void test_durable_callbacks(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "cb");
    e.cfg.sync_interval_us = 5000;
    env_open(&e);
    enum { N = 200 };
    struct cb_slot *slots = calloc(N, sizeof(*slots));
    uint64_t tickets[N];
    for (int i = 0; i < N; i++) {
        struct evlog_rec r = {"payload", 7};
        uint64_t off;
        assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &tickets[i]), 0);
        assert_int_equal(off, (uint64_t)i);
        if (i > 0)
            assert_true(tickets[i] > tickets[i - 1]);
        evlog_when_durable(e.log, tickets[i], on_durable, &slots[i]);
    }
    assert_int_equal(evlog_wait_durable(e.log, tickets[N - 1]), 0);
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, N);
    /* callbacks run from the flusher; give it the moment between waking waiters and
     * calling them, then every one was called exactly once with success */
    for (int spin = 0; spin < 2000; spin++) {
        int done = 0;
        for (int i = 0; i < N; i++)
            done += atomic_load(&slots[i].calls);
        if (done == N)
            break;
        usleep(1000);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
        assert_int_equal(atomic_load(&slots[i].rc), 0);
    }

    /* already durable: called at once, on this thread */
    struct cb_slot now = {0};
    evlog_when_durable(e.log, tickets[0], on_durable, &now);
    assert_int_equal(atomic_load(&now.calls), 1);
    assert_int_equal(atomic_load(&now.rc), 0);
    assert_true(pthread_equal(now.thread, pthread_self()));
    /* a ticket never handed out */
    struct cb_slot bad = {0};
    evlog_when_durable(e.log, tickets[N - 1] + 100, on_durable, &bad);
    assert_int_equal(atomic_load(&bad.calls), 1);
    assert_int_equal(atomic_load(&bad.rc), ERR_INVALID);

    /* readers never see a record before it is durable: append right after a sync, inside
     * the 5 ms batch interval, and look before waiting */
    struct evlog_rec r = {"late", 4};
    uint64_t off, t;
    assert_int_equal(evlog_append_sync(e.log, "events", &r, 1, &off), 0); /* a sync now */
    assert_int_equal(off, N);
    int64_t t0 = time_mono_us();
    assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &t), 0);
    assert_int_equal(off, N + 1);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(e.log, "events", N - 1, 10, 1 << 20, &b), 0);
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    int64_t dt = time_mono_us() - t0;
    if (dt < 3000) { /* within the 5 ms interval after that sync: not synced yet */
        assert_int_equal(b.n, 2);
        assert_int_equal(end, N + 1);
    }
    /* closing answers pending tickets */
    struct cb_slot last = {0};
    evlog_when_durable(e.log, t, on_durable, &last);
    evlog_close(e.log);
    e.log = NULL;
    assert_int_equal(atomic_load(&last.calls), 1);
    assert_int_equal(atomic_load(&last.rc), 0);
    env_open(&e);
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, N + 2);
    evlog_batch_release(&b);
    free(slots);
    env_free(&e);
}

static void test_fsync_never(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "never");
    e.cfg.fsync = EVLOG_FSYNC_NEVER;
    env_open(&e);
    struct evlog_rec r = {"abc", 3};
    uint64_t off, t;
    assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &t), 0);
    /* durable at once (page cache), visible at once, callback on this thread */
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 1);
    struct cb_slot s = {0};
    evlog_when_durable(e.log, t, on_durable, &s);
    assert_int_equal(atomic_load(&s.calls), 1);
    assert_true(pthread_equal(s.thread, pthread_self()));
    env_free(&e);
}

/* ---- concurrency ---- */

#define N_THREADS 4
#define PER_THREAD 250

struct worker {
    struct evlog *log;
    int id;
    bool async; /* callbacks instead of blocking waits */
    uint64_t firsts[PER_THREAD];
    size_t counts[PER_THREAD];
    struct cb_slot slots[PER_THREAD];
    int failures;
};

static size_t worker_payload(int id, size_t call, size_t k, char *out)
{
    return (size_t)snprintf(out, 64, "w%d-c%zu-r%zu", id, call, k);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char bufs[5][64];
    for (size_t c = 0; c < PER_THREAD; c++) {
        struct evlog_rec recs[5];
        size_t n = 1 + (c + (size_t)w->id) % 5;
        for (size_t k = 0; k < n; k++) {
            recs[k].data = bufs[k];
            recs[k].len = worker_payload(w->id, c, k, bufs[k]);
        }
        uint64_t t;
        if (evlog_append(w->log, "events", recs, n, &w->firsts[c], &t) != 0) {
            w->failures++;
            continue;
        }
        w->counts[c] = n;
        if (w->async)
            evlog_when_durable(w->log, t, on_durable, &w->slots[c]);
        else if (evlog_wait_durable(w->log, t) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "conc");
    e.cfg.segment_bytes = 16384;
    e.cfg.sync_interval_us = 1000;
    env_open(&e);
    struct metrics_family *gf = metrics_histogram("tandem_evlog_group_records", "", NULL, NULL, 0);
    uint64_t groups_before = metrics_hist_count(metrics_series0(gf));

    struct worker *w = calloc(N_THREADS, sizeof(*w));
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i].log = e.log;
        w[i].id = i;
        w[i].async = i % 2;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);

    uint64_t total = 0;
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(w[i].failures, 0);
        for (size_t c = 0; c < PER_THREAD; c++)
            total += w[i].counts[c];
    }
    /* wait for the asynchronous ones, then every callback ran exactly once with success */
    uint64_t end = 0;
    for (int spin = 0; spin < 5000 && end < total; spin++) {
        assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
        if (end < total)
            usleep(1000);
    }
    assert_int_equal(end, total);
    for (int spin = 0; spin < 2000; spin++) {
        int missing = 0;
        for (int i = 1; i < N_THREADS; i += 2)
            for (size_t c = 0; c < PER_THREAD; c++)
                missing += atomic_load(&w[i].slots[c].calls) != 1;
        if (!missing)
            break;
        usleep(1000);
    }
    for (int i = 1; i < N_THREADS; i += 2)
        for (size_t c = 0; c < PER_THREAD; c++) {
            assert_int_equal(atomic_load(&w[i].slots[c].calls), 1);
            assert_int_equal(atomic_load(&w[i].slots[c].rc), 0);
        }

    /* offsets are unique and dense: every offset in [0, total) claimed exactly once */
    unsigned char *seen = calloc(total, 1);
    for (int i = 0; i < N_THREADS; i++)
        for (size_t c = 0; c < PER_THREAD; c++)
            for (size_t k = 0; k < w[i].counts[c]; k++) {
                uint64_t off = w[i].firsts[c] + k;
                assert_true(off < total);
                assert_int_equal(seen[off], 0);
                seen[off] = 1;
            }
    /* every acknowledged record reads back at its offset */
    struct evlog_batch b;
    evlog_batch_init(&b);
    char(*want)[64] = calloc(total, 64);
    size_t *want_len = calloc(total, sizeof(size_t));
    for (int i = 0; i < N_THREADS; i++)
        for (size_t c = 0; c < PER_THREAD; c++)
            for (size_t k = 0; k < w[i].counts[c]; k++)
                want_len[w[i].firsts[c] + k] = worker_payload(i, c, k, want[w[i].firsts[c] + k]);
    for (uint64_t next = 0; next < total; next = b.next_offset) {
        assert_int_equal(evlog_read(e.log, "events", next, 500, 1 << 20, &b), 0);
        for (size_t i = 0; i < b.n; i++) {
            assert_int_equal(b.recs[i].len, want_len[next + i]);
            assert_memory_equal(b.recs[i].data, want[next + i], b.recs[i].len);
        }
    }
    /* group commit really grouped: fewer sync rounds than appends */
    uint64_t groups = metrics_hist_count(metrics_series0(gf)) - groups_before;
    assert_true(groups > 0);
    assert_true(groups < (uint64_t)N_THREADS * PER_THREAD);
    evlog_batch_release(&b);
    free(want);
    free(want_len);
    free(seen);
    free(w);
    env_free(&e);
}

/* ---- retention and consumers ---- */

static void test_retention_by_size_respects_consumers(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "retsize");
    e.cfg.segment_bytes = 1024;
    e.cfg.retention_bytes = 4096;
    /* only the test's own evlog_retain calls: the flusher's would run before the consumer is
     * registered and delete what it means to hold */
    e.cfg.retention_check_us = 3600ll * 1000000;
    e.cfg.fsync = EVLOG_FSYNC_NEVER;
    env_open(&e);
    append_seq(e.log, "events", 0, 500, 10, 60);
    size_t segs = count_segments(e.dir, "events");
    assert_true(segs > 8);

    /* a consumer at 0 holds everything */
    assert_int_equal(evlog_consumer_commit(e.log, "loader", "events", 0), 0);
    assert_int_equal(evlog_consumer_commit(e.log, "loader", "events", 501), ERR_INVALID);
    assert_int_equal(evlog_consumer_commit(e.log, "Bad", "events", 0), ERR_INVALID);
    assert_int_equal(evlog_retain(e.log), 0);
    assert_int_equal(count_segments(e.dir, "events"), segs);
    uint64_t start;
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_int_equal(start, 0);

    /* the consumer moves to 300: segments wholly below 300 may go, down to ~4 KiB */
    assert_int_equal(evlog_consumer_commit(e.log, "loader", "events", 300), 0);
    assert_int_equal(evlog_consumer_commit(e.log, "other", "changes", 0), 0);
    assert_int_equal(evlog_retain(e.log), 0);
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_true(start > 0 && start <= 300);
    size_t after = count_segments(e.dir, "events");
    assert_true(after < segs);
    expect_seq(e.log, "events", 300, 500, 100, 1 << 20, 60);
    expect_seq(e.log, "events", start, 500, 100, 1 << 20, 60);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(e.log, "events", start - 1, 10, 1 << 20, &b), ERR_NOTFOUND);
    assert_non_null(strstr(evlog_errmsg(e.log), "retention"));
    evlog_batch_release(&b);

    /* positions survive a restart */
    evlog_close(e.log);
    env_open(&e);
    uint64_t next;
    assert_int_equal(evlog_consumer_get(e.log, "loader", "events", &next), 0);
    assert_int_equal(next, 300);
    assert_int_equal(evlog_consumer_get(e.log, "other", "changes", &next), 0);
    assert_int_equal(next, 0);
    assert_int_equal(evlog_consumer_get(e.log, "loader", "changes", &next), ERR_NOTFOUND);
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_true(start > 0);

    /* without the consumer, size alone rules: about 4 KiB stay, never the active segment */
    assert_int_equal(evlog_consumer_remove(e.log, "loader"), 0);
    assert_int_equal(evlog_consumer_remove(e.log, "loader"), ERR_NOTFOUND);
    assert_int_equal(evlog_retain(e.log), 0);
    size_t left = count_segments(e.dir, "events");
    assert_true(left >= 1 && left < after);
    {
        char tdir[4300];
        snprintf(tdir, sizeof(tdir), "%s/events", e.dir);
        uint64_t *bases;
        size_t n;
        long sum = 0;
        assert_int_equal(evlog__seg_list(tdir, &bases, &n), 0);
        for (size_t i = 0; i < n; i++) {
            char *p = tl_seg_path(e.dir, "events", bases[i]);
            sum += tl_file_size(p);
            free(p);
        }
        free(bases);
        assert_true(sum <= 4096);
    }
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_true(start > 300);
    expect_seq(e.log, "events", start, 500, 100, 1 << 20, 60);
    append_seq(e.log, "events", 500, 10, 3, 60);
    env_free(&e);
}

static void test_retention_by_age(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "retage");
    e.cfg.segment_bytes = 1024;
    e.cfg.fsync = EVLOG_FSYNC_NEVER;
    env_open(&e);
    append_seq(e.log, "events", 0, 300, 10, 60);
    evlog_close(e.log);
    size_t segs = count_segments(e.dir, "events");
    assert_true(segs > 4);

    /* the segments were last written two hours ago */
    char tdir[4300];
    snprintf(tdir, sizeof(tdir), "%s/events", e.dir);
    uint64_t *bases;
    size_t n;
    assert_int_equal(evlog__seg_list(tdir, &bases, &n), 0);
    for (size_t i = 0; i < n; i++) {
        char *p = tl_seg_path(e.dir, "events", bases[i]);
        struct timeval tv[2];
        gettimeofday(&tv[0], NULL);
        tv[0].tv_sec -= 7200;
        tv[1] = tv[0];
        assert_int_equal(utimes(p, tv), 0);
        free(p);
    }

    e.cfg.retention_age_us = 3600ll * 1000000;
    e.cfg.retention_check_us = 3600ll * 1000000; /* only the test's own evlog_retain calls */
    env_open(&e);
    /* a consumer at 100 keeps the segment holding 100 and everything after */
    assert_int_equal(evlog_consumer_commit(e.log, "loader", "events", 100), 0);
    assert_int_equal(evlog_retain(e.log), 0);
    uint64_t start;
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_true(start > 0 && start <= 100);
    expect_seq(e.log, "events", 100, 300, 50, 1 << 20, 60);
    /* released: everything old goes except the active segment */
    assert_int_equal(evlog_consumer_commit(e.log, "loader", "events", 300), 0);
    assert_int_equal(evlog_retain(e.log), 0);
    assert_int_equal(count_segments(e.dir, "events"), 1);
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_int_equal(start, bases[n - 1]);
    /* new appends keep going; a fresh segment is young and stays */
    append_seq(e.log, "events", 300, 20, 5, 60);
    assert_int_equal(evlog_retain(e.log), 0);
    expect_seq(e.log, "events", start, 320, 50, 1 << 20, 60);
    evlog_close(e.log);
    env_open(&e);
    expect_seq(e.log, "events", start, 320, 50, 1 << 20, 60);
    free(bases);
    env_free(&e);
}

/* ---- failures ---- */

/* A file size limit makes writes fail with EFBIG (SIGXFSZ ignored), as a full disk would. */
static void test_disk_full_then_resume(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "full");
    env_open(&e);
    append_seq(e.log, "events", 0, 20, 5, 30);
    char *seg = tl_seg_path(e.dir, "events", 0);
    long size = tl_file_size(seg);
    assert_true(size > 0);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)size + 100;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    char big[60];
    memset(big, 'z', sizeof(big));
    struct evlog_rec recs[5];
    for (int i = 0; i < 5; i++)
        recs[i] = (struct evlog_rec){big, sizeof(big)};
    uint64_t off, t;
    for (int attempt = 0; attempt < 3; attempt++) {
        assert_int_equal(evlog_append(e.log, "events", recs, 5, &off, &t), ERR_BUSY);
        assert_non_null(strstr(evlog_errmsg(e.log), "no space"));
        /* the partial write was cut away; nothing was acknowledged */
        assert_int_equal(tl_file_size(seg), size);
        uint64_t end;
        assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
        assert_int_equal(end, 20);
    }
    /* a small record still fits under the limit */
    struct evlog_rec small = {"s", 1};
    assert_int_equal(evlog_append_sync(e.log, "events", &small, 1, &off), 0);
    assert_int_equal(off, 20);

    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(evlog_append_sync(e.log, "events", recs, 5, &off), 0);
    assert_int_equal(off, 21);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(e.log, "events", 19, 100, 1 << 20, &b), 0);
    assert_int_equal(b.n, 7);
    assert_int_equal(b.recs[1].len, 1);
    assert_int_equal(b.recs[2].offset, 21);
    assert_memory_equal(b.recs[6].data, big, sizeof(big));
    evlog_batch_release(&b);

    /* and after a restart the log holds exactly that */
    evlog_close(e.log);
    e.cfg.verify_all = true;
    env_open(&e);
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 26);
    free(seg);
    env_free(&e);
}

/* Full right after a roll: the new segment stays empty, nothing is acknowledged, and the
 * log resumes in it once space returns. */
static void test_disk_full_at_roll(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "fullroll");
    e.cfg.segment_bytes = 500;
    env_open(&e);
    append_seq(e.log, "events", 0, 8, 4, 30); /* one segment, under 500 bytes */
    assert_int_equal(count_segments(e.dir, "events"), 1);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 300;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char big[80];
    memset(big, 'r', sizeof(big));
    struct evlog_rec recs[4];
    for (int i = 0; i < 4; i++)
        recs[i] = (struct evlog_rec){big, sizeof(big)};
    uint64_t off, t;
    int rc = evlog_append(e.log, "events", recs, 4, &off, &t);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, ERR_BUSY);
    assert_int_equal(count_segments(e.dir, "events"), 2);
    char *seg = tl_seg_path(e.dir, "events", 8);
    assert_int_equal(tl_file_size(seg), 0);
    free(seg);

    assert_int_equal(evlog_append_sync(e.log, "events", recs, 4, &off), 0);
    assert_int_equal(off, 8);
    evlog_close(e.log);
    e.cfg.verify_all = true;
    env_open(&e);
    expect_seq(e.log, "events", 0, 8, 100, 1 << 20, 30);
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 12);
    env_free(&e);
}

static int failing_sync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

static void test_failed_fsync_stops_writes(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "eio");
    env_open(&e);
    append_seq(e.log, "events", 0, 10, 5, 30);

    evlog__sync_fn = failing_sync;
    struct evlog_rec r = {"doomed", 6};
    uint64_t off, t1, t2;
    struct cb_slot s = {0};
    assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &t1), 0);
    evlog_when_durable(e.log, t1, on_durable, &s);
    assert_int_equal(evlog_wait_durable(e.log, t1), ERR_IO);
    assert_non_null(strstr(evlog_errmsg(e.log), "may be lost"));
    for (int spin = 0; spin < 2000 && !atomic_load(&s.calls); spin++)
        usleep(1000);
    assert_int_equal(atomic_load(&s.calls), 1);
    assert_int_equal(atomic_load(&s.rc), ERR_IO);
    /* never retried, never acknowledged, never readable; further writes refused */
    uint64_t end;
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_int_equal(end, 10);
    assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &t2), ERR_IO);
    assert_non_null(strstr(evlog_errmsg(e.log), "cannot sync segment"));
    assert_int_equal(evlog_append(e.log, "other", &r, 1, &off, &t2), ERR_IO);
    char other_dir[4300];
    snprintf(other_dir, sizeof(other_dir), "%s/other", e.dir);
    assert_int_equal(tl_file_size(other_dir), -1); /* no topic created while failed */
    struct cb_slot s2 = {0};
    evlog_when_durable(e.log, t1, on_durable, &s2);
    assert_int_equal(atomic_load(&s2.rc), ERR_IO);
    /* what was durable before stays readable */
    expect_seq(e.log, "events", 0, 10, 100, 1 << 20, 30);
    struct buf m;
    buf_init(&m);
    metrics_render(&m);
    assert_non_null(strstr(buf_cstr(&m), "tandem_evlog_write_errors_total{kind=\"fsync\"}"));
    buf_release(&m);
    evlog_close(e.log);
    e.log = NULL;
    evlog__sync_fn = fdatasync;

    /* a restart recovers from what is on disk */
    env_open(&e);
    assert_int_equal(evlog_end_offset(e.log, "events", &end), 0);
    assert_true(end == 10 || end == 11);
    append_seq(e.log, "events", end, 5, 5, 30);
    env_free(&e);
}

/* A failed sync of the segment being rolled away from stops writes too. */
static int sync_calls;
static int fail_second_sync(int fd)
{
    if (++sync_calls >= 2) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static void test_failed_roll_sync(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "rolleio");
    e.cfg.segment_bytes = 200;
    e.cfg.fsync = EVLOG_FSYNC_NEVER;
    env_open(&e);
    sync_calls = 0;
    evlog__sync_fn = fail_second_sync;
    char p[100];
    memset(p, 'q', sizeof(p));
    struct evlog_rec r = {p, sizeof(p)};
    uint64_t off, t;
    int rc = 0, i;
    for (i = 0; i < 10 && rc == 0; i++)
        rc = evlog_append(e.log, "events", &r, 1, &off, &t);
    evlog__sync_fn = fdatasync;
    assert_int_equal(rc, ERR_IO);
    assert_int_equal(sync_calls, 2);
    assert_int_equal(evlog_append(e.log, "events", &r, 1, &off, &t), ERR_IO);
    env_free(&e);
}

/* The flusher runs retention by itself, also while appends never stop. */
static void test_retention_runs_under_load(void **state)
{
    (void)state;
    struct env e;
    env_init(&e, "retload");
    e.cfg.segment_bytes = 1024;
    e.cfg.retention_bytes = 4096;
    e.cfg.retention_check_us = 20000;
    e.cfg.sync_interval_us = 500;
    env_open(&e);
    uint64_t next = 0;
    size_t max_segs = 0;
    int64_t t0 = time_mono_us();
    while (time_mono_us() - t0 < 300000) {
        append_seq(e.log, "events", next, 10, 10, 60);
        next += 10;
        size_t n = count_segments(e.dir, "events");
        if (time_mono_us() - t0 > 100000 && n > max_segs)
            max_segs = n;
    }
    uint64_t start;
    assert_int_equal(evlog_start_offset(e.log, "events", &start), 0);
    assert_true(start > 0);
    /* about 4 KiB in segments of at most 1 KiB, plus what a 20 ms tick lets through */
    assert_true(max_segs < 40);
    assert_true(next > 100);
    expect_seq(e.log, "events", start, next, 100, 1 << 20, 60);
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_across_rolls),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_durable_callbacks),
        cmocka_unit_test(test_fsync_never),
        cmocka_unit_test(test_concurrent_appends),
        cmocka_unit_test(test_retention_by_size_respects_consumers),
        cmocka_unit_test(test_retention_by_age),
        cmocka_unit_test(test_retention_runs_under_load),
        cmocka_unit_test(test_disk_full_then_resume),
        cmocka_unit_test(test_disk_full_at_roll),
        cmocka_unit_test(test_failed_fsync_stops_writes),
        cmocka_unit_test(test_failed_roll_sync),
    };
    xlog_set_level(XLOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
