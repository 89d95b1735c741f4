/* test_evlog_recovery.c - recovery of torn, flipped and zero-filled tails, mid-segment
 * damage, and the check / repair tools. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>

#include "evlog/local/local_int.h"
#include "evlog_testlib.h"

#define N_RECS 30
#define TOPIC "events"

struct fixture {
    char *tmp;
    char dir[4200];
    struct evlog_cfg cfg;
    char *last_seg;      /* path of the topic's last segment */
    unsigned char *orig; /* its pristine bytes */
    size_t orig_len;
    size_t ends[N_RECS + 1]; /* byte position after each record of the last segment */
    uint64_t last_base;      /* base offset of the last segment */
    size_t n_last;           /* records in the last segment */
};

/* Builds a log of N_RECS records; with small_segments, the records span several segments
 * and only the last one is recovered. */
static void fixture_build(struct fixture *f, const char *tag, bool small_segments)
{
    memset(f, 0, sizeof(*f));
    f->tmp = tl_tmpdir(tag);
    tl_cfg(&f->cfg, f->tmp, f->dir, sizeof(f->dir));
    f->cfg.fsync = EVLOG_FSYNC_NEVER;
    if (small_segments)
        f->cfg.segment_bytes = 400;
    struct evlog *log;
    assert_int_equal(evlog_open(&f->cfg, &log), 0);
    for (uint64_t i = 0; i < N_RECS; i++) {
        char p[64];
        struct evlog_rec r = {p, tl_payload(i, 37, p, sizeof(p))};
        uint64_t off;
        assert_int_equal(evlog_append_sync(log, TOPIC, &r, 1, &off), 0);
        assert_int_equal(off, i);
    }
    evlog_close(log);

    /* find the last segment and where its records end */
    char tdir[4300];
    snprintf(tdir, sizeof(tdir), "%s/%s", f->dir, TOPIC);
    uint64_t *bases;
    size_t n;
    assert_int_equal(evlog__seg_list(tdir, &bases, &n), 0);
    assert_true(small_segments ? n >= 3 : n == 1);
    f->last_base = bases[n - 1];
    free(bases);
    f->last_seg = tl_seg_path(f->dir, TOPIC, f->last_base);
    f->orig = tl_slurp(f->last_seg, &f->orig_len);
    assert_non_null(f->orig);
    size_t pos = 0;
    f->n_last = 0;
    for (uint64_t i = f->last_base; i < N_RECS; i++) {
        char p[64];
        pos += evlog__frame_size(tl_payload(i, 37, p, sizeof(p)));
        f->ends[f->n_last++] = pos;
    }
    assert_int_equal(pos, f->orig_len);
    assert_true(small_segments || f->n_last == N_RECS);
}

static void fixture_free(struct fixture *f)
{
    tl_rmrf(f->tmp);
    free(f->tmp);
    free(f->last_seg);
    free(f->orig);
}

/* Opens the log and checks it holds exactly records [0, n) intact, that the last segment
 * was cut to its exact end, and that a new append continues at offset n. */
static void expect_prefix(struct fixture *f, uint64_t n)
{
    struct evlog *log;
    int rc = evlog_open(&f->cfg, &log);
    if (rc != 0)
        fail_msg("open: %s: %s", err_str(rc), evlog_errmsg(NULL));
    uint64_t end;
    assert_int_equal(evlog_end_offset(log, TOPIC, &end), 0);
    assert_int_equal(end, n);
    size_t want_bytes = n > f->last_base ? f->ends[n - f->last_base - 1] : 0;
    assert_int_equal(tl_file_size(f->last_seg), (long)want_bytes);

    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t next = 0;
    while (next < n) {
        assert_int_equal(evlog_read(log, TOPIC, next, 1000, 1 << 20, &b), 0);
        assert_true(b.n > 0);
        for (size_t i = 0; i < b.n; i++) {
            char p[64];
            size_t len = tl_payload(next + i, 37, p, sizeof(p));
            assert_int_equal(b.recs[i].offset, next + i);
            assert_int_equal(b.recs[i].len, len);
            assert_memory_equal(b.recs[i].data, p, len);
        }
        next = b.next_offset;
    }
    assert_int_equal(next, n);
    evlog_batch_release(&b);

    struct evlog_rec r = {"after recovery", 14};
    uint64_t off;
    assert_int_equal(evlog_append_sync(log, TOPIC, &r, 1, &off), 0);
    assert_int_equal(off, n);
    evlog_close(log);
}

static void restore(struct fixture *f, size_t len)
{
    tl_spit(f->last_seg, f->orig, len);
}

/* Truncate the last segment at every byte inside its last three records. */
static void truncate_every_byte(bool small_segments)
{
    struct fixture f;
    fixture_build(&f, "trunc", small_segments);
    size_t from = f.n_last > 3 ? f.ends[f.n_last - 4] : 0;
    for (size_t k = from; k < f.orig_len; k++) {
        restore(&f, k);
        /* records wholly before k survive */
        uint64_t keep = f.last_base;
        for (size_t i = 0; i < f.n_last && f.ends[i] <= k; i++)
            keep = f.last_base + i + 1;
        expect_prefix(&f, keep);
    }
    fixture_free(&f);
}

static void test_truncate_every_byte(void **state)
{
    (void)state;
    truncate_every_byte(false);
}

static void test_truncate_every_byte_multi_segment(void **state)
{
    (void)state;
    truncate_every_byte(true);
}

/* A bit flip inside the last record is a torn tail; inside an earlier one, intact records
 * follow, and the open refuses with the segment and byte named. */
static void test_bit_flips_in_tail(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "flip", false);
    size_t start3 = f.ends[f.n_last - 4];
    for (size_t k = start3; k < f.orig_len; k++) {
        unsigned char *copy = malloc(f.orig_len);
        memcpy(copy, f.orig, f.orig_len);
        copy[k] ^= (unsigned char)(1u << (k % 8));
        tl_spit(f.last_seg, copy, f.orig_len);
        free(copy);
        size_t rec = 0; /* record index in the segment holding byte k */
        while (f.ends[rec] <= k)
            rec++;
        if (rec == f.n_last - 1) {
            expect_prefix(&f, f.last_base + rec);
            continue;
        }
        struct evlog *log = NULL;
        assert_int_equal(evlog_open(&f.cfg, &log), ERR_CORRUPT);
        assert_null(log);
        const char *msg = evlog_errmsg(NULL);
        char want[64];
        snprintf(want, sizeof(want), "at byte %zu ", rec ? f.ends[rec - 1] : 0);
        assert_non_null(strstr(msg, f.last_seg));
        assert_non_null(strstr(msg, want));
        /* the file was left alone */
        size_t len;
        unsigned char *now = tl_slurp(f.last_seg, &len);
        assert_int_equal(len, f.orig_len);
        free(now);
    }
    fixture_free(&f);
}

static void test_zero_filled_tail(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "zero", false);
    unsigned char *img = calloc(1, f.orig_len + 8192);

    /* the file grew by 4 KiB but the data never landed: every record survives */
    memcpy(img, f.orig, f.orig_len);
    tl_spit(f.last_seg, img, f.orig_len + 4096);
    expect_prefix(&f, N_RECS);

    /* the last record's bytes never landed (zeros), plus a zero extension */
    memcpy(img, f.orig, f.orig_len);
    memset(img + f.ends[f.n_last - 2], 0, f.orig_len + 8192 - f.ends[f.n_last - 2]);
    tl_spit(f.last_seg, img, f.orig_len + 8192);
    expect_prefix(&f, N_RECS - 1);

    /* zeros from the middle of the third-last record on */
    memcpy(img, f.orig, f.orig_len);
    size_t mid = f.ends[f.n_last - 4] + 10;
    memset(img + mid, 0, f.orig_len + 8192 - mid);
    tl_spit(f.last_seg, img, f.orig_len + 1000);
    expect_prefix(&f, N_RECS - 3);

    /* a whole segment of zeros: nothing survives, appends restart at its base */
    memset(img, 0, f.orig_len);
    tl_spit(f.last_seg, img, f.orig_len);
    expect_prefix(&f, 0);
    free(img);
    fixture_free(&f);
}

/* Damage in the middle of the last segment: open fails naming segment and byte; check
 * reports it; repair cuts there and moves the rest aside; then the log opens. */
static void test_mid_segment_corruption_check_repair(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "mid", false);
    unsigned char *img = malloc(f.orig_len);
    memcpy(img, f.orig, f.orig_len);
    size_t at = f.ends[9]; /* record 10 starts here */
    img[at + 26] ^= 0x40;
    tl_spit(f.last_seg, img, f.orig_len);

    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&f.cfg, &log), ERR_CORRUPT);
    char want[64];
    snprintf(want, sizeof(want), "at byte %zu (offset 10)", at);
    assert_non_null(strstr(evlog_errmsg(NULL), f.last_seg));
    assert_non_null(strstr(evlog_errmsg(NULL), want));

    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(f.dir, &report), ERR_CORRUPT);
    assert_non_null(strstr(buf_cstr(&report), f.last_seg));
    assert_non_null(strstr(buf_cstr(&report), want));
    assert_non_null(strstr(buf_cstr(&report), "intact records follow"));
    /* check changed nothing */
    assert_int_equal(tl_file_size(f.last_seg), (long)f.orig_len);

    buf_reset(&report);
    assert_int_equal(evlog_repair(f.dir, &report), 0);
    assert_int_equal(tl_file_size(f.last_seg), (long)at);
    char aside[4400];
    snprintf(aside, sizeof(aside), "%s.damaged-%zu", f.last_seg, at);
    assert_int_equal(tl_file_size(aside), (long)(f.orig_len - at));
    size_t len;
    unsigned char *moved = tl_slurp(aside, &len);
    assert_memory_equal(moved, img + at, len);
    free(moved);
    assert_non_null(strstr(buf_cstr(&report), aside));

    buf_reset(&report);
    assert_int_equal(evlog_check(f.dir, &report), 0);
    assert_non_null(strstr(buf_cstr(&report), "no problems"));
    expect_prefix(&f, 10);
    buf_release(&report);
    free(img);
    fixture_free(&f);
}

/* Damage in a segment that is not the last: verify_all open fails naming it; a default
 * open succeeds but reading the damaged record fails with ERR_CORRUPT; repair cuts there
 * and moves every later segment aside. */
static void test_non_last_segment_corruption(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "nonlast", true);
    char *seg0 = tl_seg_path(f.dir, TOPIC, 0);
    size_t len0;
    unsigned char *img = tl_slurp(seg0, &len0);
    char p[64];
    size_t at = evlog__frame_size(tl_payload(0, 37, p, sizeof(p))); /* record 1 */
    img[at + 25] ^= 0x01;
    tl_spit(seg0, img, len0);

    struct evlog *log = NULL;
    f.cfg.verify_all = true;
    assert_int_equal(evlog_open(&f.cfg, &log), ERR_CORRUPT);
    assert_non_null(strstr(evlog_errmsg(NULL), seg0));
    f.cfg.verify_all = false;
    assert_int_equal(evlog_open(&f.cfg, &log), 0);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(log, TOPIC, 0, 1, 1 << 20, &b), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(evlog_read(log, TOPIC, 0, 100, 1 << 20, &b), ERR_CORRUPT);
    assert_int_equal(b.n, 0);
    assert_non_null(strstr(evlog_errmsg(log), seg0));
    evlog_batch_release(&b);

    /* check and repair refuse while the log is open */
    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(f.dir, &report), ERR_BUSY);
    assert_int_equal(evlog_repair(f.dir, &report), ERR_BUSY);
    evlog_close(log);

    assert_int_equal(evlog_check(f.dir, &report), ERR_CORRUPT);
    buf_reset(&report);
    assert_int_equal(evlog_repair(f.dir, &report), 0);
    assert_int_equal(tl_file_size(seg0), (long)at);
    char aside[4400];
    snprintf(aside, sizeof(aside), "%s.damaged", f.last_seg);
    assert_int_equal(tl_file_size(aside), (long)f.orig_len);
    assert_int_equal(tl_file_size(f.last_seg), -1);
    buf_reset(&report);
    assert_int_equal(evlog_check(f.dir, &report), 0);
    buf_release(&report);

    f.cfg.verify_all = true;
    assert_int_equal(evlog_open(&f.cfg, &log), 0);
    uint64_t end;
    assert_int_equal(evlog_end_offset(log, TOPIC, &end), 0);
    assert_int_equal(end, 1);
    evlog_close(log);
    free(img);
    free(seg0);
    fixture_free(&f);
}

/* An empty segment followed by another is a gap: refused on open, reported by check. */
static void test_gap_between_segments(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "gap", true);
    char *seg0 = tl_seg_path(f.dir, TOPIC, 0);
    tl_spit(seg0, "", 0);
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&f.cfg, &log), ERR_CORRUPT);
    assert_non_null(strstr(evlog_errmsg(NULL), seg0));
    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(f.dir, &report), ERR_CORRUPT);
    assert_non_null(strstr(buf_cstr(&report), "gap"));
    buf_release(&report);
    free(seg0);
    fixture_free(&f);
}

/* A damaged consumer positions file stops the open; repair moves it aside. */
static void test_damaged_consumers_file(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "cons", false);
    struct evlog *log;
    assert_int_equal(evlog_open(&f.cfg, &log), 0);
    assert_int_equal(evlog_consumer_commit(log, "loader", TOPIC, 5), 0);
    evlog_close(log);
    char path[4300];
    snprintf(path, sizeof(path), "%s/consumers", f.dir);
    size_t len;
    unsigned char *img = tl_slurp(path, &len);
    assert_non_null(strstr((char *)img, "loader events 5\n"));
    img[len - 20] ^= 0x01;
    tl_spit(path, img, len);
    assert_int_equal(evlog_open(&f.cfg, &log), ERR_CORRUPT);
    assert_non_null(strstr(evlog_errmsg(NULL), "consumer"));
    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(f.dir, &report), ERR_CORRUPT);
    assert_int_equal(evlog_repair(f.dir, &report), 0);
    buf_release(&report);
    assert_int_equal(evlog_open(&f.cfg, &log), 0);
    uint64_t next;
    assert_int_equal(evlog_consumer_get(log, "loader", TOPIC, &next), ERR_NOTFOUND);
    evlog_close(log);
    free(img);
    fixture_free(&f);
}

/* check on a clean log reports it clean and changes nothing; a torn tail counts as a
 * problem for check, and repair keeps the torn bytes aside. */
static void test_check_clean_and_torn(void **state)
{
    (void)state;
    struct fixture f;
    fixture_build(&f, "chk", true);
    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(f.dir, &report), 0);
    char want[128];
    snprintf(want, sizeof(want), "topic %s:", TOPIC);
    assert_non_null(strstr(buf_cstr(&report), want));
    assert_non_null(strstr(buf_cstr(&report), "offsets 0..30, 30 records"));
    assert_non_null(strstr(buf_cstr(&report), "no problems found"));

    size_t cut = f.orig_len - 5;
    restore(&f, cut);
    buf_reset(&report);
    assert_int_equal(evlog_check(f.dir, &report), ERR_CORRUPT);
    assert_non_null(strstr(buf_cstr(&report), "torn tail"));
    assert_int_equal(tl_file_size(f.last_seg), (long)cut);
    buf_reset(&report);
    assert_int_equal(evlog_repair(f.dir, &report), 0);
    size_t good = f.n_last >= 2 ? f.ends[f.n_last - 2] : 0;
    assert_int_equal(tl_file_size(f.last_seg), (long)good);
    char aside[4400];
    snprintf(aside, sizeof(aside), "%s.damaged-%zu", f.last_seg, good);
    assert_int_equal(tl_file_size(aside), (long)(cut - good));
    /* a second repair finds nothing to do */
    buf_reset(&report);
    assert_int_equal(evlog_repair(f.dir, &report), 0);
    assert_non_null(strstr(buf_cstr(&report), "0 problem(s) repaired"));
    expect_prefix(&f, N_RECS - 1);

    /* no log there at all */
    char missing[4300];
    snprintf(missing, sizeof(missing), "%s/nothing-here", f.tmp);
    assert_int_equal(evlog_check(missing, &report), -ENOENT);
    buf_release(&report);
    fixture_free(&f);
}

/* Process crash: a child appends batches and reports each acknowledged one on a pipe; it is
 * killed with SIGKILL at some moment. Reopening must find every acknowledged record, a dense
 * prefix of intact records, and take new appends right after it. */
static void test_kill9_during_appends(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("kill");
    char dir[4200];
    struct evlog_cfg cfg;
    tl_cfg(&cfg, tmp, dir, sizeof(dir));
    cfg.segment_bytes = 4096;
    cfg.sync_interval_us = 500;
    uint64_t acked = 0; /* records acknowledged so far, over all rounds */
    for (int round = 0; round < 6; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            struct evlog *log;
            if (evlog_open(&cfg, &log) != 0)
                _exit(2);
            uint64_t next = acked;
            for (;;) {
                char bufs[8][64];
                struct evlog_rec recs[8];
                size_t n = 1 + next % 8;
                for (size_t k = 0; k < n; k++)
                    recs[k] = (struct evlog_rec){bufs[k], tl_payload(next + k, 50, bufs[k], 64)};
                uint64_t off;
                if (evlog_append_sync(log, "events", recs, n, &off) != 0 || off != next)
                    _exit(3);
                next += n;
                if (write(fds[1], &next, sizeof(next)) != (ssize_t)sizeof(next))
                    _exit(4);
            }
        }
        close(fds[1]);
        usleep(20000 + (useconds_t)(round * 9000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        uint64_t v;
        while (read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
            acked = v;
        close(fds[0]);

        struct evlog *log;
        assert_int_equal(evlog_open(&cfg, &log), 0);
        uint64_t end;
        assert_int_equal(evlog_end_offset(log, "events", &end), 0);
        assert_true(end >= acked);
        struct evlog_batch b;
        evlog_batch_init(&b);
        for (uint64_t next = 0; next < end; next = b.next_offset) {
            assert_int_equal(evlog_read(log, "events", next, 1000, 1 << 20, &b), 0);
            for (size_t i = 0; i < b.n; i++) {
                char p[64];
                size_t len = tl_payload(next + i, 50, p, sizeof(p));
                assert_int_equal(b.recs[i].len, len);
                assert_memory_equal(b.recs[i].data, p, len);
            }
        }
        evlog_batch_release(&b);
        evlog_close(log);
        acked = end; /* the next child continues after what survived */
    }
    assert_true(acked > 0);
    struct buf report;
    buf_init(&report);
    assert_int_equal(evlog_check(dir, &report), 0);
    buf_release(&report);
    tl_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncate_every_byte),
        cmocka_unit_test(test_truncate_every_byte_multi_segment),
        cmocka_unit_test(test_bit_flips_in_tail),
        cmocka_unit_test(test_zero_filled_tail),
        cmocka_unit_test(test_mid_segment_corruption_check_repair),
        cmocka_unit_test(test_non_last_segment_corruption),
        cmocka_unit_test(test_gap_between_segments),
        cmocka_unit_test(test_damaged_consumers_file),
        cmocka_unit_test(test_check_clean_and_torn),
        cmocka_unit_test(test_kill9_during_appends),
    };
    xlog_set_level(XLOG_OFF);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
