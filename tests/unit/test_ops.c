/* test_ops.c - cron schedules and the job registry, the event log snapshot a backup takes
 * (cut at an exact offset across segments), and the backup archive checks (names, uploads
 * that are no archive, restores of missing backups). The whole backup under load is tested
 * end to end in tests/integration/admin.test.mjs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "evlog_testlib.h"
#include "ops/ops.h"
#include "store/store.h"

/* ---- schedules ---- */

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

static void test_cron_parse(void **state)
{
    (void)state;
    struct ops_cron_sched s;
    static const char *const good[] = {
        "* * * * *", "0 3 * * *", "*/5 * * * *", "0-30/10 1,2 1 1-12 0-6", "@daily", "@hourly",
        "@weekly",   "@monthly",  "@yearly",     "  0  0  *  *  * "};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ops_cron_parse(good[i], &s), 0);
    static const char *const bad[] = {
        "",           "* * * *",      "* * * * * *", "60 * * * *",  "* 24 * * *", "* * 0 * *",
        "* * * 13 *", "* * * * 7",    "*/0 * * * *", "5-1 * * * *", "a * * * *",  "1,,2 * * * *",
        "@often",     "0001 * * * *", "-1 * * * *",  "1- * * * *"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ops_cron_parse(bad[i], &s), ERR_INVALID);
    assert_int_equal(ops_cron_parse(NULL, &s), ERR_INVALID);
}

static void test_cron_due(void **state)
{
    (void)state;
    struct ops_cron_sched s;
    assert_int_equal(ops_cron_parse("30 3 * * *", &s), 0);
    assert_true(ops_cron_due(&s, utc(2024, 5, 1, 3, 30)));
    assert_true(ops_cron_due(&s, utc(2024, 5, 1, 3, 30) + 59));
    assert_false(ops_cron_due(&s, utc(2024, 5, 1, 3, 31)));
    assert_false(ops_cron_due(&s, utc(2024, 5, 1, 4, 30)));
    assert_int_equal(ops_cron_parse("*/15 * * * *", &s), 0);
    assert_true(ops_cron_due(&s, utc(2024, 5, 1, 7, 45)));
    assert_false(ops_cron_due(&s, utc(2024, 5, 1, 7, 46)));
    /* 2024-05-05 is a Sunday; day of month and weekday must both match */
    assert_int_equal(ops_cron_parse("0 0 5 5 0", &s), 0);
    assert_true(ops_cron_due(&s, utc(2024, 5, 5, 0, 0)));
    assert_false(ops_cron_due(&s, utc(2025, 5, 5, 0, 0))); /* a Monday */
    assert_int_equal(ops_cron_parse("@monthly", &s), 0);
    assert_true(ops_cron_due(&s, utc(2024, 2, 1, 0, 0)));
    assert_false(ops_cron_due(&s, utc(2024, 2, 2, 0, 0)));
}

/* ---- the registry ---- */

struct counter {
    pthread_mutex_t mu;
    int n;
    pthread_t thread;
};

static void count_job(void *arg)
{
    struct counter *c = arg;
    pthread_mutex_lock(&c->mu);
    c->n++;
    c->thread = pthread_self();
    pthread_mutex_unlock(&c->mu);
}

static int count_of(struct counter *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void test_cron_registry(void **state)
{
    (void)state;
    struct ops_cron *cron = NULL;
    assert_int_equal(ops_cron_new(&cron), 0);
    struct counter c = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(ops_cron_add(cron, "b_job", "0 0 1 1 *", count_job, &c), 0);
    assert_int_equal(ops_cron_add(cron, "__sys", "@daily", count_job, &c), 0);
    assert_int_equal(ops_cron_add(cron, "a_job", "@hourly", count_job, &c), 0);
    assert_int_equal(ops_cron_add(cron, "a_job", "5 * * * *", count_job, &c), 0); /* replaced */
    assert_int_equal(ops_cron_add(cron, "bad id", "* * * * *", count_job, &c), ERR_INVALID);
    assert_int_equal(ops_cron_add(cron, "x", "nope", count_job, &c), ERR_INVALID);
    assert_int_equal(ops_cron_add(cron, "", "* * * * *", count_job, &c), ERR_INVALID);

    json_t *list = ops_cron_list(cron);
    char *text = json_dumps(list, JSON_COMPACT);
    assert_string_equal(text, "[{\"id\":\"a_job\",\"expression\":\"5 * * * *\"},"
                              "{\"id\":\"b_job\",\"expression\":\"0 0 1 1 *\"},"
                              "{\"id\":\"__sys\",\"expression\":\"@daily\"}]");
    free(text);
    json_decref(list);

    /* run on demand: on the cron thread, not this one */
    assert_int_equal(ops_cron_run(cron, "b_job"), 0);
    for (int i = 0; i < 500 && count_of(&c) < 1; i++)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    assert_int_equal(count_of(&c), 1);
    assert_false(pthread_equal(c.thread, pthread_self()));
    assert_int_equal(ops_cron_run(cron, "missing"), ERR_NOTFOUND);
    assert_int_equal(ops_cron_run(cron, NULL), ERR_NOTFOUND);

    assert_int_equal(ops_cron_remove(cron, "b_job"), 0);
    assert_int_equal(ops_cron_remove(cron, "b_job"), ERR_NOTFOUND);
    assert_int_equal(ops_cron_run(cron, "b_job"), ERR_NOTFOUND);
    ops_cron_free(cron);
    assert_int_equal(count_of(&c), 1);
}

/* ---- the log snapshot ---- */

static void append_n(struct evlog *log, const char *topic, uint64_t from, uint64_t n)
{
    for (uint64_t i = from; i < from + n; i++) {
        char p[64];
        size_t len = tl_payload(i, 40, p, sizeof(p));
        struct evlog_rec r = {.data = p, .len = len};
        uint64_t first;
        assert_int_equal(evlog_append_sync(log, topic, &r, 1, &first), 0);
        assert_int_equal(first, i);
    }
}

static void check_topic(struct evlog *log, const char *topic, uint64_t end)
{
    uint64_t got = 0;
    assert_int_equal(evlog_end_offset(log, topic, &got), 0);
    assert_int_equal(got, end);
    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t at = 0;
    while (at < end) {
        assert_int_equal(evlog_read(log, topic, at, 1000, 1 << 20, &b), 0);
        assert_true(b.n > 0);
        for (size_t i = 0; i < b.n; i++) {
            char p[64];
            size_t len = tl_payload(b.recs[i].offset, 40, p, sizeof(p));
            assert_int_equal(b.recs[i].offset, at + i);
            assert_int_equal(b.recs[i].len, len);
            assert_memory_equal(b.recs[i].data, p, len);
        }
        at = b.next_offset;
    }
    evlog_batch_release(&b);
}

static void test_evlog_snapshot(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("snap");
    char dir[4200], snap[4200];
    struct evlog_cfg cfg;
    tl_cfg(&cfg, tmp, dir, sizeof(dir));
    cfg.segment_bytes = 512; /* many segments */
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&cfg, &log), 0);
    append_n(log, "changes", 0, 100);
    append_n(log, "events", 0, 77);
    append_n(log, "empty", 0, 0);

    /* changes cut inside a segment, at a segment boundary's neighbour, and beyond the end */
    static const uint64_t cuts[] = {37, 0, 1, 100, 5000};
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        snprintf(snap, sizeof(snap), "%s/snap%zu", tmp, k);
        struct evlog_cut cut = {"changes", cuts[k]};
        assert_int_equal(evlog_snapshot(log, snap, &cut, 1), 0);
        /* the live log goes on */
        struct evlog_cfg sc;
        evlog_cfg_defaults(&sc);
        sc.dir = snap;
        sc.verify_all = true;
        struct evlog *copy = NULL;
        assert_int_equal(evlog_open(&sc, &copy), 0);
        check_topic(copy, "changes", cuts[k] < 100 ? cuts[k] : 100);
        check_topic(copy, "events", 77);
        /* appends continue at the cut */
        char p[64];
        size_t len = tl_payload(cuts[k] < 100 ? cuts[k] : 100, 40, p, sizeof(p));
        struct evlog_rec r = {.data = p, .len = len};
        uint64_t first;
        assert_int_equal(evlog_append_sync(copy, "changes", &r, 1, &first), 0);
        assert_int_equal(first, cuts[k] < 100 ? cuts[k] : 100);
        evlog_close(copy);
    }
    evlog_close(log);
    tl_rmrf(tmp);
    free(tmp);
}

/* ---- archives ---- */

static void test_backup_names_and_bad_archives(void **state)
{
    (void)state;
    assert_true(ops_backup_name_valid("a.tar.gz"));
    assert_true(ops_backup_name_valid("pb_backup_2024-01-01.tar.gz"));
    static const char *const bad[] = {NULL,           "",           ".tar.gz",     "a.zip",
                                      "A.tar.gz",     "a b.tar.gz", "../a.tar.gz", "a/b.tar.gz",
                                      "a.tar.gz.tar", "a.tar"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ops_backup_name_valid(bad[i]));
    char longname[200];
    memset(longname, 'a', sizeof(longname));
    strcpy(longname + 150 - 7, ".tar.gz");
    assert_true(ops_backup_name_valid(longname));
    memset(longname, 'a', sizeof(longname));
    strcpy(longname + 151 - 7, ".tar.gz");
    assert_false(ops_backup_name_valid(longname));
    char name[64];
    ops_backup_default_name("pb_backup_", name, sizeof(name));
    assert_true(ops_backup_name_valid(name));

    char *tmp = tl_tmpdir("arch");
    char err[256];
    /* an upload that is no archive, or not ours, is refused and leaves nothing */
    static const char junk[] = "not a gzip stream at all";
    assert_int_equal(ops_backup_store(tmp, "junk.tar.gz", junk, sizeof(junk), err, sizeof(err)),
                     ERR_INVALID);
    assert_int_equal(ops_backup_store(tmp, "junk.tar.gz", "", 0, err, sizeof(err)), ERR_INVALID);
    assert_int_equal(ops_backup_store(tmp, "bad name", junk, sizeof(junk), err, sizeof(err)),
                     ERR_INVALID);
    json_t *list = NULL;
    assert_int_equal(ops_backup_list(tmp, &list), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(ops_backup_mark_restore(tmp, "missing.tar.gz", err, sizeof(err)),
                     ERR_NOTFOUND);
    assert_int_equal(ops_backup_delete(tmp, "missing.tar.gz"), ERR_NOTFOUND);
    assert_int_equal(ops_backup_delete(tmp, "../secret"), ERR_INVALID);
    bool applied = true;
    assert_int_equal(ops_backup_apply_pending(tmp, &applied, err, sizeof(err)), 0);
    assert_false(applied);
    tl_rmrf(tmp);
    free(tmp);
}

/* A backup of a store and a log, changed afterwards, restored: the state of the backup comes
 * back; a half-done earlier attempt (a work directory without its "extracted" flag) is redone
 * from the start; a second apply finds nothing to do. */
static void test_backup_restore_roundtrip(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("rst");
    char err[512], logdir[4200], path[4300];
    struct store_cfg sc = {.backend = NULL, .dir = tmp, .busy_timeout_ms = 0};
    struct store *st = NULL;
    assert_int_equal(store_open(&sc, &st, err, sizeof(err)), 0);
    struct evlog_cfg lc;
    tl_cfg(&lc, tmp, logdir, sizeof(logdir));
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&lc, &log), 0);
    json_t *v1 = json_pack("{s:i}", "n", 1), *v2 = json_pack("{s:i}", "n", 2);
    assert_int_equal(store_param_put(st, "probe", v1), 0);
    append_n(log, "events", 0, 3);

    struct ops_backup_src src = {.dir = tmp, .store = st, .log = log};
    assert_int_equal(ops_backup_create(&src, "a.tar.gz", err, sizeof(err)), 0);
    assert_int_equal(ops_backup_create(&src, "a.tar.gz", err, sizeof(err)), ERR_CONFLICT);
    json_t *list = NULL;
    assert_int_equal(ops_backup_list(tmp, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "key")),
                        "a.tar.gz");
    json_decref(list);

    /* changes after the backup */
    assert_int_equal(store_param_put(st, "probe", v2), 0);
    append_n(log, "events", 3, 2);
    store_close(st);
    evlog_close(log);

    /* what a crash in the middle of a backup leaves is swept at the next start */
    snprintf(path, sizeof(path), "%s/backups/.b.tar.gz.tmp", tmp);
    tl_spit(path, "partial", 7);
    char staged[4300];
    snprintf(staged, sizeof(staged), "%s/backups/.staging", tmp);
    assert_int_equal(mkdir(staged, 0700), 0);
    bool swept = true;
    assert_int_equal(ops_backup_apply_pending(tmp, &swept, err, sizeof(err)), 0);
    assert_false(swept);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(staged, F_OK), -1);

    assert_int_equal(ops_backup_mark_restore(tmp, "a.tar.gz", err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/.restore", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/.restore/new", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/.restore/new/leftover", tmp);
    tl_spit(path, "x", 1);
    bool applied = false;
    assert_int_equal(ops_backup_apply_pending(tmp, &applied, err, sizeof(err)), 0);
    assert_true(applied);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(ops_backup_apply_pending(tmp, &applied, err, sizeof(err)), 0);
    assert_false(applied);

    assert_int_equal(store_open(&sc, &st, err, sizeof(err)), 0);
    json_t *got = NULL;
    assert_int_equal(store_param_get(st, "probe", &got), 0);
    assert_true(json_equal(got, v1));
    json_decref(got);
    store_close(st);
    assert_int_equal(evlog_open(&lc, &log), 0);
    check_topic(log, "events", 3);
    evlog_close(log);
    /* the backup itself is kept */
    assert_int_equal(ops_backup_list(tmp, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    json_decref(v1);
    json_decref(v2);
    tl_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cron_parse),
        cmocka_unit_test(test_cron_due),
        cmocka_unit_test(test_cron_registry),
        cmocka_unit_test(test_evlog_snapshot),
        cmocka_unit_test(test_backup_names_and_bad_archives),
        cmocka_unit_test(test_backup_restore_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
