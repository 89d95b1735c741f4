/* Time formatting and parsing, ids, CRC-32C, buffers, error names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/core.h"

static void test_time_format(void **state)
{
    UNUSED(state);
    char out[TIME_PB_LEN];
    time_format_pb(INT64_C(1707408207354000), out);
    assert_string_equal(out, "2024-02-08 16:03:27.354Z");
    time_format_iso(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
}

static void test_time_parse(void **state)
{
    UNUSED(state);
    int64_t us;
    struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"2024-02-08 16:03:27.354Z", INT64_C(1707408207354000)},
        {"2024-02-08T16:03:27.354Z", INT64_C(1707408207354000)},
        {"2024-02-08T18:03:27.354+02:00", INT64_C(1707408207354000)},
        {"2024-02-08T16:03:27.354123Z", INT64_C(1707408207354123)},
        {"2024-02-08", INT64_C(1707350400000000)},
        {"2024-02-08 16:03", INT64_C(1707408180000000)},
        {"2024-02-29T00:00:00Z", INT64_C(1709164800000000)},
        {"1969-12-31T23:59:59Z", INT64_C(-1000000)},
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        assert_int_equal(time_parse(ok[i].in, strlen(ok[i].in), &us), 0);
        assert_int_equal(us, ok[i].want);
    }
    const char *bad[] = {"",
                         "2024",
                         "2024-13-01",
                         "2023-02-29",
                         "2024-02-08X10:00",
                         "2024-02-08T25:00:00Z",
                         "2024-02-08T10:00:00.Z",
                         "2024-02-08T10:00:00Zjunk",
                         "abcd-ef-gh"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        assert_int_equal(time_parse(bad[i], strlen(bad[i]), &us), ERR_INVALID);
}

static void test_ids(void **state)
{
    UNUSED(state);
    char a[ID_LEN + 1], b[ID_LEN + 1];
    id_random(a);
    id_random(b);
    assert_int_equal(strlen(a), 15);
    assert_string_not_equal(a, b);
    for (int i = 0; i < ID_LEN; i++)
        assert_true((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9'));
    char hex[33];
    rand_hex(hex, 16);
    assert_int_equal(strlen(hex), 32);
}

static void test_crc32c(void **state)
{
    UNUSED(state);
    /* the standard check value of CRC-32C */
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
    /* incremental equals one shot, across the 8-byte fast path */
    const char *s = "The quick brown fox jumps over the lazy dog";
    uint32_t one = crc32c(0, s, strlen(s));
    uint32_t inc = crc32c(crc32c(0, s, 13), s + 13, strlen(s) - 13);
    assert_int_equal(one, inc);
    assert_int_equal(crc32c(0, "", 0), 0);
    /* the instruction path (where the CPU has it) and the table agree on every length and
     * alignment, chained or not */
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len + off <= sizeof(buf); len += 7) {
            assert_int_equal(crc32c(0, buf + off, len), crc32c_table(0, buf + off, len));
            assert_int_equal(crc32c(0x12345678, buf + off, len),
                             crc32c_table(0x12345678, buf + off, len));
        }
    }
    assert_int_equal(crc32c_table(0, "123456789", 9), 0xe3069283);
}

static void test_buf(void **state)
{
    UNUSED(state);
    struct buf b;
    buf_init(&b);
    assert_string_equal(buf_cstr(&b), "");
    buf_printf(&b, "%0500d", 1);
    assert_int_equal(b.len, 500);
    buf_reset(&b);
    buf_json_escape(&b, "a\"b\\c\n\x01", 7);
    assert_string_equal(buf_cstr(&b), "a\\\"b\\\\c\\n\\u0001");
    size_t len;
    char *p = buf_detach(&b, &len);
    assert_int_equal(len, strlen(p));
    free(p);
    assert_null(b.ptr);
    uint8_t le[8];
    le_put64(le, UINT64_C(0x0102030405060708));
    assert_int_equal(le[0], 8);
    assert_true(le_get64(le) == UINT64_C(0x0102030405060708));
}

/* UTF-8 sequences: ASCII and 2-4 byte characters pass; cut, overlong, surrogate and
 * out-of-range ones do not, and scrubbing drops exactly their bytes */
static void test_utf8(void **state)
{
    (void)state;
    const unsigned char *u = (const unsigned char *)"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    assert_int_equal(str_utf8_seq(u, 10), 1);
    assert_int_equal(str_utf8_seq(u + 1, 9), 2);
    assert_int_equal(str_utf8_seq(u + 3, 7), 3);
    assert_int_equal(str_utf8_seq(u + 6, 4), 4);
    assert_int_equal(str_utf8_seq(u + 6, 3), 0);                                     /* cut */
    assert_int_equal(str_utf8_seq((const unsigned char *)"\xc0\xaf", 2), 0);         /* overlong */
    assert_int_equal(str_utf8_seq((const unsigned char *)"\xe0\x80\xaf", 3), 0);     /* overlong */
    assert_int_equal(str_utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0);     /* surrogate */
    assert_int_equal(str_utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4), 0); /* > 10FFFF */
    assert_int_equal(str_utf8_seq((const unsigned char *)"\x80", 1), 0);
    char s[] = "ok \xe2\x82\xac \xe2\x82 x\xff\xc3\xa9\xe2";
    str_utf8_scrub(s);
    assert_string_equal(s, "ok \xe2\x82\xac  x\xc3\xa9");
}

static void test_err_str(void **state)
{
    UNUSED(state);
    assert_string_equal(err_str(ERR_NOTFOUND), "not found");
    assert_string_equal(err_str(-2), "No such file or directory");
    assert_string_equal(err_str(-99999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_format), cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_ids),         cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_buf),         cmocka_unit_test(test_err_str),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
