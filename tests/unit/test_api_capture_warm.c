/* test_api_capture_warm.c - the capture dedup set across restarts, on a real local log:
 * the snapshot written at stop is used by the next start (only with the log it was taken
 * from), a damaged or foreign snapshot falls back to reading the log, and a long tail after
 * the snapshot is read by a thread before capture opens. */
#include "evlog_testlib.h"

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>
#include <time.h>

#include "api/api.h"
#include "capture/capture.h"
#include "core/cfg.h"
#include "core/util.h"
#include "metrics/metrics.h"

#define WINDOW_US (3600LL * 1000000)

struct fx {
    char *tmp;
    char logdir[4096];
    struct cfg cfg;
    struct evlog *log;
    struct api_env env;
};

static struct capture_dedup *new_set(void)
{
    struct capture_dedup_cfg c = {.window_us = WINDOW_US};
    return capture_dedup_new(&c);
}

static void fx_open(struct fx *f)
{
    struct evlog_cfg lc;
    tl_cfg(&lc, f->tmp, f->logdir, sizeof(f->logdir));
    lc.fsync = EVLOG_FSYNC_NEVER;
    assert_int_equal(evlog_open(&lc, &f->log), 0);
    snprintf(f->cfg.dir, sizeof(f->cfg.dir), "%s", f->tmp);
    f->env = (struct api_env){.cfg = &f->cfg, .log = f->log, .dedup = new_set()};
}

static void fx_close(struct fx *f)
{
    capture_dedup_free(f->env.dedup);
    evlog_close(f->log);
}

/* Appends ids [from, to) from source s as canonical records received now. */
static void log_events(struct fx *f, const char *src, int from, int to)
{
    char ts[TIME_PB_LEN];
    time_format_iso(time_now_us(), ts);
    enum { CHUNK = 5000 };
    static char text[CHUNK][160];
    struct evlog_rec recs[CHUNK];
    for (int base = from; base < to; base += CHUNK) {
        int n = to - base < CHUNK ? to - base : CHUNK;
        for (int i = 0; i < n; i++) {
            int len = snprintf(text[i], sizeof(text[i]),
                               "{\"messageId\":\"m%d\",\"receivedAt\":\"%s\",\"source\":\"%s\"}",
                               base + i, ts, src);
            recs[i] = (struct evlog_rec){text[i], (size_t)len};
        }
        uint64_t first;
        assert_int_equal(evlog_append_sync(f->log, "events", recs, (size_t)n, &first), 0);
    }
}

static bool known(struct fx *f, const char *src, int i)
{
    char id[32];
    snprintf(id, sizeof(id), "m%d", i);
    return capture_dedup_check_insert(f->env.dedup, src, strlen(src), id, strlen(id),
                                      time_now_us());
}

static void wait_ready(void)
{
    for (int i = 0; i < 6000 && !api_capture_ready(); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    assert_true(api_capture_ready());
}

/* One server life: warm, then stop (which writes the snapshot). */
static void life(struct fx *f, void (*during)(struct fx *f))
{
    assert_int_equal(api_capture_warm(&f->env, WINDOW_US), 0);
    wait_ready();
    assert_int_equal(api_capture_start(&f->env, 0), 0);
    if (during)
        during(f);
    api_capture_stop(&f->env);
    capture_dedup_free(f->env.dedup);
    f->env.dedup = new_set();
}

/* A pair the set holds that the log does not: only a snapshot can bring it back. */
static void remember_marker(struct fx *f)
{
    assert_false(capture_dedup_check_insert(f->env.dedup, "s", 1, "marker", 6, time_now_us()));
}

static bool marker_known(struct fx *f)
{
    return capture_dedup_check_insert(f->env.dedup, "s", 1, "marker", 6, time_now_us());
}

static char *snapshot_path(struct fx *f)
{
    static char p[4200];
    snprintf(p, sizeof(p), "%s/dedup.snapshot", f->tmp);
    return p;
}

static void test_snapshot_is_used_after_a_stop(void **state)
{
    (void)state;
    struct fx f = {.tmp = tl_tmpdir("warm")};
    fx_open(&f);
    log_events(&f, "s", 0, 1000);
    life(&f, remember_marker);
    struct stat st;
    assert_int_equal(stat(snapshot_path(&f), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* the next start takes the set from the snapshot (the marker is back) plus the tail */
    log_events(&f, "s", 1000, 1100);
    assert_int_equal(api_capture_warm(&f.env, WINDOW_US), 0);
    assert_true(api_capture_ready());
    assert_true(marker_known(&f));
    for (int i = 0; i < 1100; i += 37)
        assert_true(known(&f, "s", i));
    assert_false(known(&f, "s", 1100));
    assert_false(known(&f, "other", 5)); /* scoped by source, as before */
    api_capture_stop(&f.env);
    fx_close(&f);
    tl_rmrf(f.tmp);
    free(f.tmp);
}

static void test_damaged_or_foreign_snapshot_rebuilds(void **state)
{
    (void)state;
    struct fx f = {.tmp = tl_tmpdir("warm")};
    fx_open(&f);
    log_events(&f, "s", 0, 500);
    life(&f, remember_marker);

    /* one flipped byte: not used, the set comes from the log alone */
    FILE *fp = fopen(snapshot_path(&f), "r+b");
    assert_non_null(fp);
    fseek(fp, 40, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, 40, SEEK_SET);
    fputc(c ^ 1, fp);
    fclose(fp);
    assert_int_equal(api_capture_warm(&f.env, WINDOW_US), 0);
    assert_true(api_capture_ready());
    assert_false(marker_known(&f));
    for (int i = 0; i < 500; i += 7)
        assert_true(known(&f, "s", i));
    api_capture_stop(&f.env); /* writes a good one again */
    capture_dedup_free(f.env.dedup);
    f.env.dedup = new_set();

    /* the same snapshot beside another log of the same length: not used */
    struct fx g = {.tmp = tl_tmpdir("warm")};
    fx_open(&g);
    log_events(&g, "t", 0, 500);
    char cmd[9000], from[4200];
    snprintf(from, sizeof(from), "%s", snapshot_path(&f));
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, snapshot_path(&g));
    assert_int_equal(system(cmd), 0);
    assert_int_equal(api_capture_warm(&g.env, WINDOW_US), 0);
    assert_true(api_capture_ready());
    assert_false(known(&g, "s", 3)); /* f's pairs did not come along */
    assert_true(known(&g, "t", 3));
    api_capture_stop(&g.env);
    fx_close(&g);
    tl_rmrf(g.tmp);
    free(g.tmp);

    /* a log cut shorter than the snapshot (a repair, a restore): not used */
    fx_close(&f);
    tl_rmrf(f.logdir);
    fx_open(&f);
    log_events(&f, "s", 0, 10);
    assert_int_equal(api_capture_warm(&f.env, WINDOW_US), 0);
    assert_false(marker_known(&f));
    assert_true(known(&f, "s", 9));
    assert_false(known(&f, "s", 10));
    api_capture_stop(&f.env);
    fx_close(&f);
    tl_rmrf(f.tmp);
    free(f.tmp);
}

static void test_long_tail_is_read_before_capture_opens(void **state)
{
    (void)state;
    struct fx f = {.tmp = tl_tmpdir("warm")};
    fx_open(&f);
    log_events(&f, "s", 0, 100);
    life(&f, remember_marker);
    /* as after a kill -9: far more logged after the snapshot than a start reads inline */
    log_events(&f, "s", 100, 260100);
    assert_int_equal(api_capture_warm(&f.env, WINDOW_US), 0);
    wait_ready();
    assert_true(marker_known(&f));
    for (int i = 0; i < 260100; i += 997)
        assert_true(known(&f, "s", i));
    assert_true(known(&f, "s", 260099));
    assert_false(known(&f, "s", 260100));
    api_capture_stop(&f.env);
    fx_close(&f);
    tl_rmrf(f.tmp);
    free(f.tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_is_used_after_a_stop),
        cmocka_unit_test(test_damaged_or_foreign_snapshot_rebuilds),
        cmocka_unit_test(test_long_tail_is_read_before_capture_opens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
