/* test_evlog_frame.c - the record frame codec, segment scanner, index and names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "evlog/local/local_int.h"
#include "evlog_testlib.h"

static void test_frame_round_trip(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 7, 24, 500, 70000};
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        size_t len = lens[i];
        uint8_t *payload = malloc(len + 1), *frame = malloc(evlog__frame_size(len));
        for (size_t k = 0; k < len; k++)
            payload[k] = (uint8_t)(k * 31 + i);
        uint64_t off = 0x0123456789abcdefull + i;
        int64_t ts = 1700000000123456 + (int64_t)i;
        evlog__frame_put(frame, off, ts, payload, len);
        assert_int_equal(le_get32(frame), len);
        assert_true(le_get64(frame + 8) == off);

        struct evlog_rec_view v;
        assert_int_equal(evlog__frame_get(frame, evlog__frame_size(len), 1u << 20, off, &v),
                         EVLOG_FRAME_OK);
        assert_true(v.offset == off);
        assert_true(v.timestamp_us == ts);
        assert_int_equal(v.len, len);
        assert_memory_equal(v.data, payload, len);
        assert_int_equal(evlog__frame_get(frame, evlog__frame_size(len), 1u << 20, UINT64_MAX, &v),
                         EVLOG_FRAME_OK);

        /* the split form (payload CRC first, header sealed later) writes the same bytes */
        uint8_t *frame2 = malloc(evlog__frame_size(len));
        if (len)
            memcpy(frame2 + EVLOG_FRAME_HDR, payload, len);
        evlog__frame_seal(frame2, (uint32_t)len, off, ts, evlog__frame_payload_crc(payload, len));
        assert_memory_equal(frame, frame2, evlog__frame_size(len));

        /* too few bytes, wrong offset, over the length limit */
        assert_int_equal(evlog__frame_get(frame, evlog__frame_size(len) - 1, 1u << 20, off, &v),
                         EVLOG_FRAME_SHORT);
        assert_int_equal(evlog__frame_get(frame, EVLOG_FRAME_HDR - 1, 1u << 20, off, &v),
                         EVLOG_FRAME_SHORT);
        assert_int_equal(evlog__frame_get(frame, evlog__frame_size(len), 1u << 20, off + 1, &v),
                         EVLOG_FRAME_BADOFF);
        if (len > 0)
            assert_int_equal(
                evlog__frame_get(frame, evlog__frame_size(len), (uint32_t)len - 1, off, &v),
                EVLOG_FRAME_BADLEN);
        free(payload);
        free(frame);
        free(frame2);
    }
}

/* Every single-bit flip anywhere in a frame is caught. */
static void test_frame_bit_flips(void **state)
{
    (void)state;
    const char *payload = "a record of some forty bytes, more or less";
    size_t len = strlen(payload), size = evlog__frame_size(len);
    uint8_t frame[128];
    evlog__frame_put(frame, 42, 1234567, payload, len);
    for (size_t byte = 0; byte < size; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            struct evlog_rec_view v;
            frame[byte] ^= (uint8_t)(1u << bit);
            enum evlog__frame_rc rc = evlog__frame_get(frame, size, 1024, 42, &v);
            assert_int_not_equal(rc, EVLOG_FRAME_OK);
            frame[byte] ^= (uint8_t)(1u << bit);
        }
    }
    struct evlog_rec_view v;
    assert_int_equal(evlog__frame_get(frame, size, 1024, 42, &v), EVLOG_FRAME_OK);
}

/* A zero-filled header is not a valid empty record, even at offset 0. */
static void test_frame_zeros_rejected(void **state)
{
    (void)state;
    uint8_t zeros[64] = {0};
    struct evlog_rec_view v;
    assert_int_equal(evlog__frame_get(zeros, sizeof(zeros), 1024, 0, &v), EVLOG_FRAME_BADCRC);
    assert_int_equal(evlog__frame_get(zeros, sizeof(zeros), 1024, UINT64_MAX, &v),
                     EVLOG_FRAME_BADCRC);
}

static void test_scan_segment(void **state)
{
    (void)state;
    char *tmp = tl_tmpdir("scan"), path[4200];
    snprintf(path, sizeof(path), "%s/seg", tmp);
    uint8_t buf[4096];
    size_t pos = 0, ends[10];
    for (uint64_t i = 0; i < 10; i++) {
        char p[64];
        size_t len = tl_payload(i, 40, p, sizeof(p));
        evlog__frame_put(buf + pos, 100 + i, 5 + (int64_t)i, p, len);
        pos += evlog__frame_size(len);
        ends[i] = pos;
    }
    /* intact */
    tl_spit(path, buf, pos);
    int fd = open(path, O_RDONLY);
    struct evlog__scan sc;
    struct evlog__idx idx = {0};
    assert_int_equal(evlog__scan_segment(fd, 100, 1024, &sc, &idx), 0);
    close(fd);
    assert_false(sc.damaged);
    assert_int_equal(sc.n_records, 10);
    assert_int_equal(sc.good_bytes, pos);
    assert_int_equal(sc.max_ts_us, 14);
    assert_int_equal(idx.n, 1); /* everything within the first index interval */
    evlog__idx_release(&idx);

    /* wrong base: the first record already mismatches, and it is intact */
    fd = open(path, O_RDONLY);
    assert_int_equal(evlog__scan_segment(fd, 99, 1024, &sc, NULL), 0);
    close(fd);
    assert_true(sc.damaged);
    assert_int_equal(sc.why, EVLOG_FRAME_BADOFF);

    /* damage in record 4 with intact records behind it */
    buf[ends[3] + 26] ^= 0x10;
    tl_spit(path, buf, pos);
    fd = open(path, O_RDONLY);
    assert_int_equal(evlog__scan_segment(fd, 100, 1024, &sc, NULL), 0);
    close(fd);
    assert_true(sc.damaged);
    assert_int_equal(sc.n_records, 4);
    assert_int_equal(sc.good_bytes, ends[3]);
    assert_true(sc.intact_after);
    assert_int_equal(sc.intact_at, ends[4]);
    assert_int_equal(sc.intact_offset, 105);

    /* torn in the last record: nothing intact follows */
    buf[ends[3] + 26] ^= 0x10;
    tl_spit(path, buf, ends[9] - 3);
    fd = open(path, O_RDONLY);
    assert_int_equal(evlog__scan_segment(fd, 100, 1024, &sc, NULL), 0);
    close(fd);
    assert_true(sc.damaged);
    assert_int_equal(sc.n_records, 9);
    assert_false(sc.intact_after);
    assert_int_equal(sc.why, EVLOG_FRAME_SHORT);

    unlink(path);
    tl_rmrf(tmp);
    free(tmp);
}

static void test_index(void **state)
{
    (void)state;
    struct evlog__idx x = {0};
    for (uint64_t i = 0; i < 100; i++)
        evlog__idx_add(&x, 1000 + i * 10, i * 65536);
    uint64_t off, pos;
    evlog__idx_find(&x, 1000, &off, &pos);
    assert_true(off == 1000 && pos == 0);
    evlog__idx_find(&x, 1009, &off, &pos);
    assert_true(off == 1000 && pos == 0);
    evlog__idx_find(&x, 1010, &off, &pos);
    assert_true(off == 1010 && pos == 65536);
    evlog__idx_find(&x, 999999, &off, &pos);
    assert_true(off == 1990 && pos == 99ull * 65536);
    evlog__idx_release(&x);
}

static void test_names(void **state)
{
    (void)state;
    uint64_t b;
    assert_true(evlog__seg_name_parse("00000000000000000000.seg", &b) && b == 0);
    assert_true(evlog__seg_name_parse("00000000000000001234.seg", &b) && b == 1234);
    assert_true(evlog__seg_name_parse("18446744073709551615.seg", &b) && b == UINT64_MAX);
    assert_false(evlog__seg_name_parse("18446744073709551616.seg", &b));
    assert_false(evlog__seg_name_parse("0000000000000000000.seg", &b));
    assert_false(evlog__seg_name_parse("0000000000000000000a.seg", &b));
    assert_false(evlog__seg_name_parse("00000000000000000000.seg.damaged", &b));
    assert_false(evlog__seg_name_parse("00000000000000000000.log", &b));

    assert_true(evlog_name_valid("events"));
    assert_true(evlog_name_valid("a-b_c9"));
    char long_ok[65], long_bad[66];
    memset(long_ok, 'x', 64);
    long_ok[64] = 0;
    memset(long_bad, 'x', 65);
    long_bad[65] = 0;
    assert_true(evlog_name_valid(long_ok));
    assert_false(evlog_name_valid(long_bad));
    assert_false(evlog_name_valid(""));
    assert_false(evlog_name_valid(NULL));
    assert_false(evlog_name_valid("Events"));
    assert_false(evlog_name_valid("a/b"));
    assert_false(evlog_name_valid(".."));
    assert_false(evlog_name_valid("a b"));

    enum evlog_fsync f;
    assert_int_equal(evlog_fsync_parse("always", &f), 0);
    assert_int_equal(f, EVLOG_FSYNC_ALWAYS);
    assert_int_equal(evlog_fsync_parse("batch", &f), 0);
    assert_int_equal(f, EVLOG_FSYNC_BATCH);
    assert_int_equal(evlog_fsync_parse("never", &f), 0);
    assert_int_equal(f, EVLOG_FSYNC_NEVER);
    assert_int_equal(evlog_fsync_parse("sometimes", &f), ERR_INVALID);
    assert_int_equal(evlog_fsync_parse("", &f), ERR_INVALID);
    assert_int_equal(evlog_fsync_parse(NULL, &f), ERR_INVALID);
    assert_string_equal(evlog_fsync_name(EVLOG_FSYNC_BATCH), "batch");

    struct evlog_cfg cfg;
    evlog_cfg_defaults(&cfg);
    assert_int_equal(cfg.fsync, EVLOG_FSYNC_BATCH);
    assert_true(cfg.sync_interval_us > 0 && cfg.sync_interval_us <= 10000);
    assert_non_null(evlog_backend("local"));
    assert_non_null(evlog_backend("kafka"));
    assert_null(evlog_backend("pulsar"));
}

static void test_open_bad_config(void **state)
{
    (void)state;
    struct evlog_cfg cfg;
    struct evlog *log = (struct evlog *)1;
    evlog_cfg_defaults(&cfg);
    assert_int_equal(evlog_open(&cfg, &log), ERR_INVALID); /* no directory */
    assert_null(log);
    assert_non_null(strstr(evlog_errmsg(NULL), "directory"));
    cfg.dir = "/nonexistent-dir-for-evlog";
    cfg.backend = "nope";
    assert_int_equal(evlog_open(&cfg, &log), ERR_INVALID);
    assert_non_null(strstr(evlog_errmsg(NULL), "nope"));
    cfg.backend = NULL;
    cfg.sync_interval_us = 1000000;
    assert_int_equal(evlog_open(&cfg, &log), ERR_INVALID);
    cfg.sync_interval_us = 1000;
    cfg.segment_bytes = 1;
    assert_int_equal(evlog_open(&cfg, &log), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_round_trip),
        cmocka_unit_test(test_frame_bit_flips),
        cmocka_unit_test(test_frame_zeros_rejected),
        cmocka_unit_test(test_scan_segment),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_open_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
