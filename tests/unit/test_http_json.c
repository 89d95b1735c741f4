/* http__json_render against json_dumps(JSON_COMPACT | JSON_REAL_PRECISION(15) |
 * JSON_ENCODE_ANY): byte-identical on thousands of random values (escapes, UTF-8, reals of
 * every magnitude, integer limits, nesting), and a refusal where jansson refuses or where
 * the renderer stops (bad UTF-8, reference loops, depth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

#define FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY)

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A string of random pieces: plain ASCII, every control character, quotes, backslashes,
 * slashes, DEL, 2/3/4-byte UTF-8 and NUL. */
static json_t *rand_json_string(void)
{
    static const char *const pieces[] = {"a",
                                         "Hello",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "\xe2\x80\xa8",
                                         "\xef\xbf\xbf",
                                         "\xf4\x8f\xbf\xbf",
                                         "</script>",
                                         "{}[],:"};
    char s[256];
    size_t n = 0, parts = next() % 12;
    for (size_t i = 0; i < parts; i++) {
        if (next() % 4 == 0) {
            s[n++] = (char)(next() % 0x20); /* a control character, NUL included */
        } else {
            const char *p = pieces[next() % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t k = strlen(p);
            memcpy(s + n, p, k);
            n += k;
        }
    }
    return json_stringn(s, n);
}

static json_t *rand_real(void)
{
    static const double fixed[] = {0.0,
                                   -0.0,
                                   0.1,
                                   1.0,
                                   -1.5,
                                   5.0,
                                   1e15,
                                   1e16,
                                   1e17,
                                   123456789012345.0,
                                   1234567890123456.0,
                                   1e-5,
                                   1e-4,
                                   1e21,
                                   1e22,
                                   1e-300,
                                   1e300,
                                   2.2250738585072014e-308,
                                   1.7976931348623157e308,
                                   4.9e-324,
                                   0.30000000000000004,
                                   100.0,
                                   1e100,
                                   -1e-100};
    if (next() % 2)
        return json_real(fixed[next() % (sizeof(fixed) / sizeof(fixed[0]))]);
    double d;
    do {
        uint64_t bits = next();
        memcpy(&d, &bits, sizeof(d));
    } while (!isfinite(d));
    return json_real(d);
}

static json_t *rand_value(int depth)
{
    unsigned k = (unsigned)(next() % (depth > 4 ? 6 : 8));
    switch (k) {
    case 0: return rand_json_string();
    case 1: {
        static const json_int_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN, 1000000000000LL};
        return next() % 2 ? json_integer(ints[next() % 7]) : json_integer((json_int_t)next());
    }
    case 2: return rand_real();
    case 3: return json_true();
    case 4: return json_false();
    case 5: return json_null();
    case 6: {
        json_t *a = json_array();
        size_t n = next() % 5;
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, rand_value(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        size_t n = next() % 6;
        for (size_t i = 0; i < n; i++) {
            json_t *key = rand_json_string();
            json_object_setn_new(o, json_string_value(key), json_string_length(key),
                                 rand_value(depth + 1));
            json_decref(key);
        }
        return o;
    }
    }
}

static void expect_same(const json_t *v)
{
    char *want = json_dumps(v, FLAGS);
    assert_non_null(want);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "prefix");
    assert_int_equal(http__json_render(&b, v), 0);
    if (b.len - 6 != strlen(want) || memcmp(b.ptr + 6, want, b.len - 6) != 0)
        fail_msg("render differs:\n  jansson: %s\n  ours:    %.*s", want, (int)(b.len - 6),
                 b.ptr + 6);
    assert_memory_equal(b.ptr, "prefix", 6); /* appends */
    buf_release(&b);
    free(want);
}

static void test_random_values_match_jansson(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++) {
        json_t *v = rand_value(0);
        expect_same(v);
        json_decref(v);
    }
}

static void test_fixed_values_match_jansson(void **state)
{
    (void)state;
    const char *texts[] = {
        "{}",
        "[]",
        "\"\"",
        "0",
        "-0.0",
        "1e-7",
        "[1,2.5,\"x\",null,true,false,{}]",
        "{\"collectionId\":\"pbc_1\",\"n\":1.5e300,\"s\":\"a\\u0000b\\u001fc\\\"\\\\/\"}",
        "{\"items\":[{\"id\":\"abc\",\"tags\":[\"x\",\"y\"],\"geo\":{\"lat\":48.8566,\"lon\":2."
        "3522}}],"
        "\"page\":1,\"perPage\":30,\"totalItems\":-1,\"totalPages\":-1}"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_t *v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_non_null(v);
        expect_same(v);
        json_decref(v);
    }
    /* keys keep their insertion order, as jansson writes them */
    json_t *o = json_object();
    json_object_set_new(o, "z", json_integer(1));
    json_object_set_new(o, "a", json_integer(2));
    json_object_set_new(o, "m", json_integer(3));
    expect_same(o);
    json_decref(o);
}

static void test_refusals(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "keep");
    /* not UTF-8: jansson refuses too */
    static const char *const bad[] = {
        "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\xaf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = json_stringn_nocheck(bad[i], strlen(bad[i]));
        json_t *a = json_pack("[o]", s);
        assert_int_equal(http__json_render(&b, a), ERR_INVALID);
        assert_int_equal(b.len, 4);
        char *j = json_dumps(a, FLAGS);
        assert_null(j);
        json_decref(a);
    }
    /* a reference loop: refused by both */
    json_t *loop = json_array(), *back = json_object();
    json_array_append(loop, back);
    assert_int_equal(json_object_set(back, "back", loop), 0);
    assert_int_equal(http__json_render(&b, loop), ERR_INVALID);
    assert_int_equal(b.len, 4);
    assert_null(json_dumps(loop, FLAGS));
    json_object_clear(back);
    json_decref(back);
    json_decref(loop);
    /* deeper than the limit: refused here (the reply then goes through json_dumps); at the
     * limit: written */
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < HTTP_JSON_MAX_DEPTH; i++) {
        json_t *inner = json_array();
        json_array_append_new(cur, inner);
        cur = inner;
    }
    expect_same(deep);
    json_array_append_new(cur, json_array());
    assert_int_equal(http__json_render(&b, deep), ERR_INVALID);
    assert_int_equal(b.len, 4);
    json_decref(deep);
    assert_int_equal(http__json_render(&b, NULL), ERR_INVALID);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_values_match_jansson),
        cmocka_unit_test(test_fixed_values_match_jansson),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
