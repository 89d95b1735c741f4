/* test_capture_dedup.c - the message-id dedup set, with an injected clock. */
#include "capture_test_util.h"

#include <pthread.h>
#include <stdio.h>

#define HOUR (3600LL * 1000000)
#define T0 (1777636800LL * 1000000) /* 2026-05-01T12:00:00Z */

static bool ci(struct capture_dedup *d, const char *wk, const char *id, int64_t now)
{
    return capture_dedup_check_insert(d, wk, strlen(wk), id, strlen(id), now);
}

static void test_same_id_twice(void **state)
{
    (void)state;
    struct capture_dedup *d = capture_dedup_new(NULL);
    assert_false(ci(d, "wk", "m1", T0));
    assert_true(ci(d, "wk", "m1", T0));
    assert_true(ci(d, "wk", "m1", T0 + 5 * HOUR));
    assert_false(ci(d, "wk", "m2", T0));
    /* scoped by write key */
    assert_false(ci(d, "other", "m1", T0));
    assert_true(ci(d, "other", "m1", T0));
    /* the separator keeps ("ab","c") and ("a","bc") apart */
    assert_false(ci(d, "ab", "c", T0));
    assert_false(ci(d, "a", "bc", T0));
    struct capture_dedup_stats st;
    capture_dedup_stats(d, &st);
    assert_int_equal(st.checks, 8);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.entries, 5);
    capture_dedup_free(d);
}

static void test_long_keys(void **state)
{
    (void)state;
    struct capture_dedup *d = capture_dedup_new(NULL);
    char wk[700], id[101];
    memset(wk, 'w', sizeof(wk) - 1);
    wk[sizeof(wk) - 1] = '\0';
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_false(ci(d, wk, id, T0));
    assert_true(ci(d, wk, id, T0));
    id[0] = 'j';
    assert_false(ci(d, wk, id, T0));
    wk[0] = 'v';
    assert_false(ci(d, wk, id, T0));
    capture_dedup_free(d);
}

static void test_expiry_after_window(void **state)
{
    (void)state;
    struct capture_dedup_cfg cfg = {.window_us = 24 * HOUR, .n_buckets = 24, .max_entries = 0};
    struct capture_dedup *d = capture_dedup_new(&cfg);
    assert_false(ci(d, "wk", "old", T0));
    /* remembered for the whole window */
    assert_true(ci(d, "wk", "old", T0 + 24 * HOUR - 1));
    /* the check at T0+24h-1 did not re-insert it; one bucket later it is gone */
    assert_false(ci(d, "wk", "old", T0 + 25 * HOUR + 1));
    /* and now it is remembered again from that time */
    assert_true(ci(d, "wk", "old", T0 + 26 * HOUR));
    struct capture_dedup_stats st;
    capture_dedup_stats(d, &st);
    assert_int_equal(st.entries, 1);
    capture_dedup_free(d);

    /* a small window, many ids: all expire */
    cfg.window_us = 10 * 1000000;
    cfg.n_buckets = 10;
    d = capture_dedup_new(&cfg);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        assert_false(ci(d, "k", id, T0));
    }
    capture_dedup_stats(d, &st);
    assert_int_equal(st.entries, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        assert_false(ci(d, "k", id, T0 + 12 * 1000000));
    }
    capture_dedup_stats(d, &st);
    assert_int_equal(st.entries, 1000); /* the old ones were dropped, the new ones held */
    capture_dedup_free(d);
}

static void test_cap_evicts_oldest(void **state)
{
    (void)state;
    /* 16 shards x 1,000 entries; 6,400 ids per hour, so a shard holds 400 +- 20 per hour (the
     * hash key is random per process). After two hours every shard is under its cap (800 +-
     * 28 < 1,000), the third hour pushes every one over it (1,200 +- 35), and dropping the
     * oldest bucket (hour 0) brings each back under (800 +- 28): every margin is over five
     * standard deviations, so exactly one eviction per shard, whatever the key. */
    enum { PER_HOUR = 6400 };
    struct capture_dedup_cfg cfg = {
        .window_us = 10 * HOUR, .n_buckets = 10, .max_entries = 16 * 1000};
    struct capture_dedup *d = capture_dedup_new(&cfg);
    char id[32];
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < PER_HOUR; i++) {
            snprintf(id, sizeof(id), "h%d-%d", h, i);
            assert_false(ci(d, "k", id, T0 + h * HOUR));
        }
    struct capture_dedup_stats st;
    capture_dedup_stats(d, &st);
    assert_int_equal(st.evicted_buckets, 16);
    assert_true(st.entries <= 16 * 1000);
    /* hours 1 and 2 are still known ... */
    for (int h = 2; h >= 1; h--)
        for (int i = 0; i < PER_HOUR; i++) {
            snprintf(id, sizeof(id), "h%d-%d", h, i);
            assert_true(ci(d, "k", id, T0 + 3 * HOUR));
        }
    /* ... hour 0 is forgotten */
    int forgotten = 0;
    for (int i = 0; i < PER_HOUR; i++) {
        snprintf(id, sizeof(id), "h0-%d", i);
        forgotten += !ci(d, "k", id, T0 + 3 * HOUR);
    }
    assert_int_equal(forgotten, PER_HOUR);
    capture_dedup_free(d);

    /* a cap of one per shard: the current bucket alone starts over, never grows past it */
    cfg.max_entries = 16;
    d = capture_dedup_new(&cfg);
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        (void)ci(d, "k", id, T0);
    }
    capture_dedup_stats(d, &st);
    assert_true(st.entries <= 16);
    assert_true(st.evicted_buckets > 0);
    capture_dedup_free(d);
}

static void test_rebuild_from_pairs(void **state)
{
    (void)state;
    struct capture_dedup *d = capture_dedup_new(NULL);
    int64_t now = T0 + 30 * HOUR;
    /* a log tail: one pair too old, two inside the window, one from the "future" */
    capture_dedup_add(d, "k", 1, "too-old", 7, now - 26 * HOUR, now);
    capture_dedup_add(d, "k", 1, "recent", 6, now - 20 * HOUR, now);
    capture_dedup_add(d, "k", 1, "fresh", 5, now - 1000, now);
    capture_dedup_add(d, "k", 1, "fresh", 5, now - 1000, now); /* no double count */
    capture_dedup_add(d, "k", 1, "skewed", 6, now + HOUR, now);
    struct capture_dedup_stats st;
    capture_dedup_stats(d, &st);
    assert_int_equal(st.entries, 3);
    assert_true(ci(d, "k", "recent", now));
    assert_true(ci(d, "k", "fresh", now));
    assert_true(ci(d, "k", "skewed", now));
    assert_false(ci(d, "k", "too-old", now));
    /* "recent" keeps its own time: it expires 20 h earlier than "fresh" */
    assert_false(ci(d, "k", "recent", now + 5 * HOUR));
    assert_true(ci(d, "k", "fresh", now + 5 * HOUR));
    capture_dedup_free(d);
}

static void test_remove_and_filter(void **state)
{
    (void)state;
    struct capture_dedup *d = capture_dedup_new(NULL);
    /* many entries in one bucket so removal exercises the backward shift */
    char id[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        assert_false(ci(d, "k", id, T0));
    }
    for (int i = 0; i < 3000; i += 2) {
        snprintf(id, sizeof(id), "r%d", i);
        capture_dedup_remove(d, "k", 1, id, strlen(id));
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        assert_int_equal(ci(d, "k", id, T0), i % 2 == 1);
    }
    capture_dedup_remove(d, "k", 1, "never", 5); /* absent: no effect */
    capture_dedup_free(d);

    /* filter over a parsed request: a retry is all duplicates, a repeat inside one request
     * too; unfilter (log append failed) forgets them again */
    d = capture_dedup_new(NULL);
    struct capture_input in =
        t_input(CAPTURE_API_BATCH,
                "{\"writeKey\":\"k\",\"batch\":[{\"type\":\"track\",\"userId\":\"u\",\"event\":"
                "\"a\",\"messageId\":\"m1\"},{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\","
                "\"messageId\":\"m2\"},{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\","
                "\"messageId\":\"m1\"}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(capture_dedup_filter(d, &r, T0), 1);
    assert_false(r.events[0].duplicate);
    assert_false(r.events[1].duplicate);
    assert_true(r.events[2].duplicate);
    capture_dedup_unfilter(d, &r);
    assert_int_equal(capture_dedup_filter(d, &r, T0), 1); /* forgotten, so new again */
    assert_int_equal(capture_dedup_filter(d, &r, T0), 3); /* the client retried */
    capture_result_release(&r);
    capture_dedup_free(d);
}

static void test_rebuild_from_records(void **state)
{
    (void)state;
    /* records as capture_parse() writes them, read back from the log */
    struct capture_input in = t_input(
        CAPTURE_API_BATCH,
        "{\"writeKey\":\"wk,\\\"source\\\":\\\"x\",\"batch\":["
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\",\"messageId\":\"plain-1\","
        "\"properties\":{\"s\":\",\\\"source\\\":\\\"fake\"}},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\",\"messageId\":\"esc\\\"aped\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\"}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_string_equal(r.events[0].write_key, "wk,\"source\":\"x");
    struct capture_dedup *d = capture_dedup_new(NULL);
    for (size_t i = 0; i < r.n_events; i++)
        assert_int_equal(
            capture_dedup_add_record(d, r.events[i].record, r.events[i].record_len, T_RECV + HOUR),
            0);
    /* every event of the request is now a duplicate, under its own write key */
    assert_int_equal(capture_dedup_filter(d, &r, T_RECV + HOUR), 3);
    assert_false(capture_dedup_check_insert(d, "x", 1, "plain-1", 7, T_RECV + HOUR));
    /* records older than the window are skipped */
    struct capture_dedup *d2 = capture_dedup_new(NULL);
    assert_int_equal(capture_dedup_add_record(d2, r.events[2].record, r.events[2].record_len,
                                              T_RECV + 26 * HOUR),
                     0);
    struct capture_dedup_stats st;
    capture_dedup_stats(d2, &st);
    assert_int_equal(st.entries, 0);
    capture_dedup_free(d2);
    /* the fast path: plain strings, a decoy key inside properties */
    struct capture_result r2;
    in = t_input(CAPTURE_API_BATCH,
                 "{\"writeKey\":\"plainkey\",\"batch\":[{\"type\":\"track\",\"userId\":\"u\","
                 "\"event\":\"a\",\"messageId\":\"fast-1\",\"properties\":{\"o\":{\"source\":"
                 "\"decoy\"}},\"context\":{\"receivedAt\":\"1999-01-01T00:00:00Z\"}}]}");
    t_parse(&in, &r2, 0);
    assert_int_equal(
        capture_dedup_add_record(d, r2.events[0].record, r2.events[0].record_len, T_RECV), 0);
    assert_true(capture_dedup_check_insert(d, "plainkey", 8, "fast-1", 6, T_RECV));
    assert_false(capture_dedup_check_insert(d, "decoy", 5, "fast-1", 6, T_RECV));
    capture_result_release(&r2);
    /* the scan reads only what it needs (this is not valid JSON, so no full parse took it) */
    const char *partial = "{\"messageId\":\"scan-1\",\"receivedAt\":\"2026-05-01T12:00:10.000Z\""
                          " ... ,\"source\":\"sk\"}";
    assert_int_equal(capture_dedup_add_record(d, partial, strlen(partial), T_RECV), 0);
    assert_true(capture_dedup_check_insert(d, "sk", 2, "scan-1", 6, T_RECV));
    /* not a record */
    assert_int_equal(capture_dedup_add_record(d, "{}", 2, T_RECV), ERR_INVALID);
    assert_int_equal(capture_dedup_add_record(d, "{\"messageId\":\"x\"", 15, T_RECV), ERR_INVALID);
    assert_int_equal(capture_dedup_add_record(d, "garbage", 7, T_RECV), ERR_INVALID);
    capture_result_release(&r);
    capture_dedup_free(d);
}

struct worker {
    struct capture_dedup *d;
    int id;
    int new_count;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "c%d", i); /* every thread uses the same ids */
        w->new_count += !ci(w->d, "k", id, T0);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct capture_dedup *d = capture_dedup_new(NULL);
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.d = d, .id = i};
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += w[i].new_count;
    }
    assert_int_equal(total, 20000); /* each id was new for exactly one thread */
    capture_dedup_free(d);
}

/* ---- snapshots ---- */

static struct capture_dedup *filled(int n, int64_t now)
{
    struct capture_dedup_cfg cfg = {.window_us = 24 * HOUR, .n_buckets = 24};
    struct capture_dedup *d = capture_dedup_new(&cfg);
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        /* spread over the window: the oldest pairs are 20 h old */
        assert_false(ci(d, "wk", id, now - (int64_t)(i % 21) * HOUR));
    }
    return d;
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct capture_dedup *d = filled(5000, T0);
    struct buf b;
    buf_init(&b);
    capture_dedup_encode(d, "tag!", 4, &b);
    const void *tag;
    size_t tl;
    assert_int_equal(capture_dedup_snapshot_tag(b.ptr, b.len, &tag, &tl), 0);
    assert_int_equal(tl, 4);
    assert_memory_equal(tag, "tag!", 4);

    struct capture_dedup_cfg cfg = {.window_us = 24 * HOUR, .n_buckets = 24};
    struct capture_dedup *e = capture_dedup_new(&cfg);
    assert_int_equal(capture_dedup_decode(e, b.ptr, b.len, T0, &tag, &tl), 0);
    struct capture_dedup_stats st;
    capture_dedup_stats(e, &st);
    assert_int_equal(st.entries, 5000);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_true(ci(e, "wk", id, T0)); /* same key: every pair is known */
    }
    assert_false(ci(e, "wk", "new", T0));
    /* loaded 10 h later, the pairs older than the window by then are gone */
    struct capture_dedup *f = capture_dedup_new(&cfg);
    assert_int_equal(capture_dedup_decode(f, b.ptr, b.len, T0 + 10 * HOUR, &tag, &tl), 0);
    capture_dedup_stats(f, &st);
    assert_true(st.entries < 5000 && st.entries > 2000);
    assert_true(ci(f, "wk", "s0", T0 + 10 * HOUR));   /* 0 h old at the snapshot */
    assert_false(ci(f, "wk", "s20", T0 + 10 * HOUR)); /* 20 h old then, 30 h now */
    capture_dedup_free(f);
    /* a set that already holds pairs (hashed with its own key) cannot take a snapshot */
    assert_int_equal(capture_dedup_decode(e, b.ptr, b.len, T0, &tag, &tl), ERR_INVALID);
    capture_dedup_free(e);
    capture_dedup_free(d);
    buf_release(&b);
}

static void test_snapshot_damage_is_refused(void **state)
{
    (void)state;
    struct capture_dedup *d = filled(300, T0);
    struct buf b;
    buf_init(&b);
    capture_dedup_encode(d, "t", 1, &b);
    struct capture_dedup_cfg cfg = {.window_us = 24 * HOUR, .n_buckets = 24};
    struct capture_dedup *e = capture_dedup_new(&cfg);
    const void *tag;
    size_t tl;
    struct capture_dedup_stats st;
    /* every flipped byte and every truncation is caught, and leaves the set empty */
    for (size_t i = 0; i < b.len; i += 7) {
        b.ptr[i] ^= 0x20;
        assert_int_equal(capture_dedup_decode(e, b.ptr, b.len, T0, &tag, &tl), ERR_INVALID);
        assert_int_equal(capture_dedup_snapshot_tag(b.ptr, b.len, &tag, &tl), ERR_INVALID);
        b.ptr[i] ^= 0x20;
    }
    for (size_t n = 0; n < b.len; n += 13)
        assert_int_equal(capture_dedup_decode(e, b.ptr, n, T0, &tag, &tl), ERR_INVALID);
    capture_dedup_stats(e, &st);
    assert_int_equal(st.entries, 0);
    /* another window's snapshot is refused */
    struct capture_dedup_cfg other = {.window_us = 12 * HOUR, .n_buckets = 24};
    struct capture_dedup *g = capture_dedup_new(&other);
    assert_int_equal(capture_dedup_decode(g, b.ptr, b.len, T0, &tag, &tl), ERR_INVALID);
    capture_dedup_free(g);
    /* intact, it loads */
    assert_int_equal(capture_dedup_decode(e, b.ptr, b.len, T0, &tag, &tl), 0);
    capture_dedup_stats(e, &st);
    assert_int_equal(st.entries, 300);
    capture_dedup_free(e);
    capture_dedup_free(d);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_id_twice),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_expiry_after_window),
        cmocka_unit_test(test_cap_evicts_oldest),
        cmocka_unit_test(test_rebuild_from_pairs),
        cmocka_unit_test(test_remove_and_filter),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_rebuild_from_records),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_damage_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
