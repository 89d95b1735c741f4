/* test_evlog_erase.c - evlog_erase: matching records become tombstones with their offsets
 * kept, their bytes leave the segment files, the active segment is rolled first, appends and
 * reads go on meanwhile, retention still works, the log reopens (verify_all) and a second
 * erase is a no-op. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "evlog/local/local_int.h"
#include "evlog_testlib.h"

/* "rec-<n>-<person>" records, person = n % 3 */
static void append_people(struct evlog *log, uint64_t from, uint64_t n)
{
    for (uint64_t i = from; i < from + n; i++) {
        char p[64];
        int len = snprintf(p, sizeof(p), "rec-%06llu-person%llu-SECRET", (unsigned long long)i,
                           (unsigned long long)(i % 3));
        struct evlog_rec r = {p, (size_t)len};
        uint64_t first;
        assert_int_equal(evlog_append_sync(log, "events", &r, 1, &first), 0);
        assert_int_equal(first, i);
    }
}

static bool is_person1(void *arg, const struct evlog_rec_view *rec)
{
    atomic_int *calls = arg;
    atomic_fetch_add(calls, 1);
    return rec->len > 20 && memmem(rec->data, rec->len, "person1", 7) != NULL;
}

/* Every segment file's bytes, concatenated. */
static size_t grep_segments(const char *dir, const char *needle)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s/events", dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    size_t hits = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char f[4800];
        snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
        FILE *fp = fopen(f, "rb");
        assert_non_null(fp);
        char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        for (size_t i = 0; i + strlen(needle) <= n; i++)
            hits += memcmp(buf + i, needle, strlen(needle)) == 0;
    }
    closedir(d);
    return hits;
}

static void expect_after_erase(struct evlog *log, uint64_t end, uint64_t erased_below)
{
    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t at = 0;
    while (at < end) {
        assert_int_equal(evlog_read(log, "events", at, 37, 1 << 20, &b), 0);
        assert_true(b.n > 0);
        for (size_t i = 0; i < b.n; i++) {
            uint64_t off = b.recs[i].offset;
            assert_int_equal(off, at + i);
            if (off % 3 == 1 && off < erased_below) {
                assert_int_equal(b.recs[i].len, 0);
            } else {
                char want[64];
                int len = snprintf(want, sizeof(want), "rec-%06llu-person%llu-SECRET",
                                   (unsigned long long)off, (unsigned long long)(off % 3));
                assert_int_equal(b.recs[i].len, (size_t)len);
                assert_memory_equal(b.recs[i].data, want, (size_t)len);
            }
        }
        at = b.next_offset;
    }
    evlog_batch_release(&b);
}

static void test_erase_keeps_offsets_and_removes_bytes(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("erase");
    char dir[4200];
    struct evlog_cfg cfg;
    tl_cfg(&cfg, tmp, dir, sizeof(dir));
    cfg.segment_bytes = 1024;
    cfg.fsync = EVLOG_FSYNC_ALWAYS;
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&cfg, &log), 0);
    append_people(log, 0, 300);
    assert_int_equal(evlog_consumer_commit(log, "loader", "events", 120), 0);
    assert_true(grep_segments(dir, "person1") > 0);

    /* erase below 240: the records of person1 there become tombstones */
    atomic_int calls = 0;
    uint64_t n = 0;
    assert_int_equal(evlog_erase(log, "events", 240, is_person1, &calls, &n), 0);
    assert_int_equal(n, 80);
    expect_after_erase(log, 300, 240);
    uint64_t got;
    assert_int_equal(evlog_consumer_get(log, "loader", "events", &got), 0);
    assert_int_equal(got, 120);
    /* person1's bytes below 240 are gone from the files; 240.. still hold theirs */
    char probe[64];
    snprintf(probe, sizeof(probe), "rec-%06d-person1", 238);
    assert_int_equal(grep_segments(dir, probe), 0);
    snprintf(probe, sizeof(probe), "rec-%06d-person1", 241);
    assert_int_equal(grep_segments(dir, probe), 1);

    /* appends go on; a second erase of the same range changes nothing */
    append_people(log, 300, 30);
    assert_int_equal(evlog_erase(log, "events", 240, is_person1, &calls, &n), 0);
    assert_int_equal(n, 0);
    /* erasing the whole log (past its end: clamped) rolls the active segment first */
    assert_int_equal(evlog_erase(log, "events", UINT64_MAX, is_person1, &calls, &n), 0);
    assert_int_equal(n, 30);
    assert_int_equal(grep_segments(dir, "person1"), 0);
    expect_after_erase(log, 330, 330);
    append_people(log, 330, 6);
    expect_after_erase(log, 336, 330);

    /* an unknown topic erases nothing; a bad name is refused */
    assert_int_equal(evlog_erase(log, "nothing", 10, is_person1, &calls, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(evlog_erase(log, "Bad/Name", 10, is_person1, &calls, &n), ERR_INVALID);

    /* reopen, every segment verified: tombstones are valid frames */
    evlog_close(log);
    cfg.verify_all = true;
    assert_int_equal(evlog_open(&cfg, &log), 0);
    expect_after_erase(log, 336, 330);
    struct buf report;
    buf_init(&report);
    evlog_close(log);
    assert_int_equal(evlog_check(dir, &report), 0);
    buf_release(&report);
    tl_rmrf(tmp);
    free(tmp);
}

/* Retention deletes rewritten segments as usual and never a gap. */
static void test_erase_then_retention(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("erase-ret");
    char dir[4200];
    struct evlog_cfg cfg;
    tl_cfg(&cfg, tmp, dir, sizeof(dir));
    cfg.segment_bytes = 1024;
    cfg.retention_bytes = 4096;
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&cfg, &log), 0);
    append_people(log, 0, 200);
    atomic_int calls = 0;
    uint64_t n = 0;
    assert_int_equal(evlog_erase(log, "events", 200, is_person1, &calls, &n), 0);
    assert_true(n > 0);
    assert_int_equal(evlog_retain(log), 0);
    uint64_t start, end;
    assert_int_equal(evlog_start_offset(log, "events", &start), 0);
    assert_int_equal(evlog_end_offset(log, "events", &end), 0);
    assert_true(start > 0);
    assert_int_equal(end, 200);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(log, "events", start, 1000, 1 << 20, &b), 0);
    assert_int_equal(b.n, end - start);
    evlog_batch_release(&b);
    evlog_close(log);
    tl_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erase_keeps_offsets_and_removes_bytes),
        cmocka_unit_test(test_erase_then_retention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
