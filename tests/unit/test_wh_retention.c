/* Warehouse retention (wh_retain): exactly the rows older than the cutoff go, in windows that
 * let a loader commit between them; the latest change of each live record stays; identity
 * rows of ids with no event left go; a run that stops half way is finished by the next one. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "wh_test_util.h"

#define DAY_US (86400LL * 1000000)
#define NOW_US 1780000000000000LL /* 2026-05-28 */
#define CUTOFF_US (NOW_US - 30 * DAY_US)

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
    uint64_t ev_next, ch_next;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(wht_open(f->path, sizeof(f->path), "whret", &f->wh, &f->c), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wht_close(f->path, f->wh, f->c);
    free(f);
    return 0;
}

/* n events at the next offsets on connection c: event i is age_days(i) days old, from
 * anonymous id anon(i) and user user(i) (either may be NULL). */
struct evspec {
    int age_days;
    const char *type, *anon, *user;
};

static void load_events(struct fx *f, struct wh_conn *c, const struct evspec *sp, size_t n)
{
    struct wh_event *ev = calloc(n, sizeof(*ev));
    char(*ids)[32] = calloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m%llu", (unsigned long long)(f->ev_next + i));
        int64_t ts = NOW_US - sp[i].age_days * DAY_US;
        ev[i] = (struct wh_event){.log_offset = f->ev_next + i,
                                  .id = ids[i],
                                  .type = sp[i].type ? sp[i].type : "track",
                                  .event = "e",
                                  .user_id = sp[i].user,
                                  .anonymous_id = sp[i].anon,
                                  .timestamp_us = ts,
                                  .original_timestamp_us = ts,
                                  .sent_at_us = WH_NO_TIME,
                                  .received_at_us = NOW_US,
                                  .properties = "{}",
                                  .source = "test"};
    }
    struct wh_load ld = {
        .consumer = "warehouse-events", .topic = "events", .next_offset = f->ev_next + n};
    assert_int_equal(wh_load_events(c, &ld, ev, n, NULL), 0);
    f->ev_next += n;
    free(ids);
    free(ev);
}

/* One change: record rid of collection "c1", age_days old. */
static void load_change(struct fx *f, const char *rid, enum wh_action act, int age_days)
{
    json_t *rec = json_pack("{s:s,s:i}", "id", rid, "n", (int)f->ch_next);
    struct wh_change ch = {.log_offset = f->ch_next,
                           .id = (int64_t)f->ch_next + 1,
                           .collection = "things",
                           .collection_id = "c1",
                           .record_id = rid,
                           .action = act,
                           .record = rec,
                           .changed_at_us = NOW_US - age_days * DAY_US};
    struct wh_load ld = {
        .consumer = "warehouse-changes", .topic = "changes", .next_offset = f->ch_next + 1};
    assert_int_equal(wh_load_changes(f->c, &ld, &ch, 1, NULL), 0);
    f->ch_next++;
    json_decref(rec);
}

#define COUNT_BY_AGE                                                                               \
    "SELECT count(*) FILTER (WHERE \"timestamp\" < make_timestamp(1777408000000000)), "            \
    "count(*) FILTER (WHERE \"timestamp\" >= make_timestamp(1777408000000000)), "                  \
    "count(DISTINCT log_offset) FROM events"

/* 1,000 events, a quarter 100 days old, the rest 1 day; changes of four records. */
static void fill(struct fx *f)
{
    struct evspec sp[1000];
    for (size_t i = 0; i < 1000; i++)
        sp[i] = (struct evspec){.age_days = i % 4 == 0 ? 100 : 1, .anon = "a-mix"};
    /* "a-old": anonymous, linked to "u-old", every event old; "a-keep": linked long ago but
     * still active */
    sp[0] = (struct evspec){100, "identify", "a-old", "u-old"};
    sp[4] = (struct evspec){100, NULL, "a-old", NULL};
    sp[8] = (struct evspec){100, "identify", "a-keep", "u-keep"};
    sp[9] = (struct evspec){1, NULL, "a-keep", NULL};
    load_events(f, f->c, sp, 1000);
    assert_int_equal(wh_persons_refresh(f->c, NULL), 0);
    /* r1 created and updated long ago (its latest change stays), r2 created and deleted long
     * ago (all of it goes), r3 created long ago and updated recently, r4 recent */
    load_change(f, "r1", WH_ACTION_CREATE, 90);
    load_change(f, "r2", WH_ACTION_CREATE, 90);
    load_change(f, "r1", WH_ACTION_UPDATE, 80);
    load_change(f, "r2", WH_ACTION_DELETE, 80);
    load_change(f, "r3", WH_ACTION_CREATE, 70);
    load_change(f, "r3", WH_ACTION_UPDATE, 2);
    load_change(f, "r4", WH_ACTION_CREATE, 1);
}

static void retain_ok(struct wh_conn *c, const struct wh_retention *r,
                      struct wh_retention_stats *st)
{
    int rc = wh_retain(c, r, st);
    if (rc != 0)
        fail_msg("wh_retain: %s", wh_errmsg(c));
}

static void test_removes_exactly_the_old_rows(void **state)
{
    struct fx *f = *state;
    fill(f);
    assert_rows(f->c, COUNT_BY_AGE, "[[250,750,1000]]");
    assert_rows(f->c, "SELECT did FROM _person_links ORDER BY did", "[[\"a-keep\"],[\"a-old\"]]");

    struct wh_retention r = {.before_us = CUTOFF_US, .batch_offsets = 64};
    struct wh_retention_stats st;
    retain_ok(f->c, &r, &st);
    assert_int_equal(st.events, 250);
    assert_int_equal(st.changes, 4);
    assert_true(st.batches >= 1000 / 64); /* one transaction per window, never one for all */
    assert_false(st.stopped);
    assert_rows(f->c, COUNT_BY_AGE, "[[0,750,750]]");
    /* every recent event is still there, each once */
    assert_rows(f->c,
                "SELECT count(*), count(DISTINCT id), sum(log_offset) FILTER (WHERE log_offset "
                "% 4 = 0) FROM events",
                "[[750,750,null]]");
    assert_rows(f->c,
                "SELECT record_id, action, (record->>'n')::INT FROM changes ORDER BY log_offset",
                "[[\"r1\",\"update\",2],[\"r3\",\"update\",5],[\"r4\",\"create\",6]]");
    /* "a-old" has no event left: its link and first-seen row go; "a-keep" still has one */
    assert_int_equal(st.links, 1);
    assert_rows(f->c, "SELECT did FROM _person_links ORDER BY did", "[[\"a-keep\"]]");
    assert_rows(f->c, "SELECT count(*) FROM _did_first WHERE did IN ('a-old', 'u-old')", "[[0]]");
    assert_rows(f->c, "SELECT count(*) FROM _did_first WHERE did IN ('a-keep', 'a-mix')", "[[2]]");
    /* the old event of a linked id kept its person, and the recent ones too */
    assert_rows(f->c,
                "SELECT count(*) FROM events WHERE anonymous_id = 'a-keep' AND person_key = "
                "tandem_key('u-keep')",
                "[[1]]");

    /* a second run finds nothing */
    retain_ok(f->c, &r, &st);
    assert_int_equal(st.events + st.changes + st.links + st.firsts, 0);
    assert_rows(f->c, COUNT_BY_AGE, "[[0,750,750]]");
}

/* The stop callback stands in for the moments between windows: there another connection
 * loads a batch (recent events and one late, old event), which commits at once, and the
 * run stops after a few windows. The next run finishes the job. */
struct between {
    struct fx *f;
    struct wh_conn *loader;
    int calls, stop_at;
};

static bool between_windows(void *arg)
{
    struct between *b = arg;
    b->calls++;
    struct evspec sp[3] = {
        {1, NULL, "late", NULL}, {1, NULL, "late", NULL}, {200, NULL, "late", NULL}};
    load_events(b->f, b->loader, sp, 3);
    return b->calls == b->stop_at;
}

static void test_loader_commits_between_windows_and_next_run_finishes(void **state)
{
    struct fx *f = *state;
    fill(f);
    struct between b = {.f = f, .stop_at = 6};
    assert_int_equal(wh_conn_open(f->wh, &b.loader), 0);
    struct wh_retention r = {
        .before_us = CUTOFF_US, .batch_offsets = 64, .stop = between_windows, .stop_arg = &b};
    struct wh_retention_stats st;
    retain_ok(f->c, &r, &st);
    assert_true(st.stopped);
    assert_int_equal(st.batches, 5);
    /* 5 windows of 64 offsets hold 80 old events; 6 batches of 3 were loaded meanwhile */
    assert_int_equal(st.events, 80);
    assert_rows(f->c, COUNT_BY_AGE, "[[176,762,938]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "warehouse-events", &next), 0);
    assert_int_equal(next, 1018);

    /* the next run (no stop) deletes every old row, the late ones included */
    r.stop = NULL;
    retain_ok(f->c, &r, &st);
    assert_false(st.stopped);
    assert_int_equal(st.events, 176);
    assert_rows(f->c, COUNT_BY_AGE, "[[0,762,762]]");
    assert_rows(f->c, "SELECT count(*) - count(DISTINCT id) FROM events", "[[0]]");
    wh_conn_close(b.loader);
}

/* A real loader thread appends while retention runs: nothing is lost, nothing doubled. */
struct loader_arg {
    struct fx *f;
    struct wh_conn *c;
    _Atomic int stop;
    int batches;
};

static void *loader_main(void *arg)
{
    struct loader_arg *a = arg;
    struct evspec sp[50];
    for (size_t i = 0; i < 50; i++)
        sp[i] = (struct evspec){.age_days = i == 0 ? 365 : 0, .anon = "thread"};
    while (!a->stop && a->batches < 200) {
        load_events(a->f, a->c, sp, 50);
        a->batches++;
    }
    return NULL;
}

static void test_concurrent_loader(void **state)
{
    struct fx *f = *state;
    struct evspec sp[1000];
    for (size_t i = 0; i < 1000; i++)
        sp[i] = (struct evspec){.age_days = i % 2 ? 100 : 1, .anon = "x"};
    for (int k = 0; k < 20; k++)
        load_events(f, f->c, sp, 1000);
    struct loader_arg a = {.f = f};
    assert_int_equal(wh_conn_open(f->wh, &a.c), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, loader_main, &a), 0);
    struct wh_retention r = {.before_us = CUTOFF_US, .batch_offsets = 1000};
    struct wh_retention_stats st;
    retain_ok(f->c, &r, &st);
    a.stop = 1;
    pthread_join(t, NULL);
    wh_conn_close(a.c);
    assert_int_equal(st.events >= 10000, true);
    char expect[128];
    /* the loaded batches: 49 recent events each, and an old one each that is gone only when
     * retention's range covered it */
    char *got = wht_rows(f->c, "SELECT count(*) FILTER (WHERE \"timestamp\" >= "
                               "make_timestamp(1777408000000000)), count(*) - count(DISTINCT id) "
                               "FROM events");
    snprintf(expect, sizeof(expect), "[[%d,0]]", 10000 + a.batches * 49);
    assert_string_equal(got, expect);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_removes_exactly_the_old_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loader_commits_between_windows_and_next_run_finishes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_loader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
