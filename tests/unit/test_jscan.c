/* The in-place JSON scanner (core/jscan.h) against jansson: the same texts are accepted and
 * refused, and numbers read as the same doubles as strtod (jansson's reading). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jscan.h"

/* Whether jscan takes text as one whole value, as jansson does. */
static bool jscan_whole(const char *text)
{
    /* a copy with nothing after its last byte (no NUL): a read past n is an ASan error */
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, text, n);
    struct jscan s = {.p = copy, .n = n};
    enum jscan_kind k;
    struct str raw;
    bool ok = jscan_value(&s, &k, &raw) && jscan_peek(&s) == 0;
    free(copy);
    return ok;
}

static bool jansson_whole(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    json_decref(v);
    return v != NULL;
}

static void test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}", "[]", "{\"a\":1}", " { \"a\" : [1, 2.5, -3e2, true, false, null, \"x\"] } ",
        "\"\\u00e9\\n\\t\\\"\"", "\"\\ud83d\\ude00\"", "\"caf\xc3\xa9\"", "0", "-0", "0.5e-3",
        "1E+2", "123456789", "[[[[1]]]]", "{\"a\":{\"b\":{}}}",
        /* refused */
        "", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1",
        "1.5x", "tru", "nul", "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\x\"", "\"a\nb\"",
        "\"\xc3\"", "\"\xed\xa0\x80\"", "[1 2]", "{\"a\":1 \"b\":2}", "\"abc", "[1]]", "{} {}",
        "1 2"};
    char cut[256];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        bool a = jscan_whole(texts[i]), b = jansson_whole(texts[i]);
        if (a != b)
            fail_msg("%s: jscan %d, jansson %d", texts[i], a, b);
        /* and every cut of it (texts ending mid-token) */
        for (size_t k = 0; k < strlen(texts[i]) && k < sizeof(cut); k++) {
            memcpy(cut, texts[i], k);
            cut[k] = '\0';
            if (jscan_whole(cut) != jansson_whole(cut))
                fail_msg("cut %s: jscan %d", cut, jscan_whole(cut));
        }
    }
}

static void test_spans_and_strings(void **state)
{
    (void)state;
    const char *t = "{ \"rows\" : [ {\"x\": 1.5 }, {\"x\":null} ], \"k\\u0041\":1}";
    struct jscan s = {.p = t, .n = strlen(t)};
    struct str k, raw;
    bool esc;
    enum jscan_kind kind;
    assert_true(jscan_eat(&s, '{'));
    assert_true(jscan_string(&s, &k, &esc));
    assert_false(esc);
    assert_true(str_eq_cstr(k, "rows"));
    assert_true(jscan_eat(&s, ':'));
    assert_true(jscan_value(&s, &kind, &raw));
    assert_int_equal(kind, JSCAN_ARRAY);
    assert_true(str_eq_cstr(raw, "[ {\"x\": 1.5 }, {\"x\":null} ]"));
    assert_true(jscan_eat(&s, ','));
    assert_true(jscan_string(&s, &k, &esc));
    assert_true(esc);
    assert_true(str_eq_cstr(k, "k\\u0041"));
}

static void check_number(const char *text)
{
    double a = 0;
    assert_true(jscan_number((struct str){text, strlen(text)}, &a));
    double b = strtod(text, NULL);
    if (memcmp(&a, &b, sizeof(a)) != 0)
        fail_msg("%s: %.17g, strtod %.17g", text, a, b);
}

static void test_numbers_read_as_strtod(void **state)
{
    (void)state;
    static const char *const nums[] = {
        "0",
        "-0",
        "1",
        "-17",
        "0.1",
        "0.3",
        "0.5847542627883651",
        "0.58475426278836512",
        "9007199254740993",
        "123456789012345678",
        "1e22",
        "1e23",
        "1.5e-7",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1e-400",
        "179769313486231570000000000000000000000000000000000000000000.5",
        "0.000000000000000000000000123",
        "3.141592653589793238462643383279"};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        check_number(nums[i]);
    /* random decimals as JavaScript writes them (shortest round trip) and with 17 digits */
    srand(7);
    char t[64];
    for (int i = 0; i < 200000; i++) {
        double v = (double)rand() / RAND_MAX * pow(10, rand() % 40 - 20);
        snprintf(t, sizeof(t), i % 2 ? "%.17g" : "%.16g", v);
        check_number(t);
        snprintf(t, sizeof(t), "%.6f", v);
        check_number(t);
    }
    double v;
    assert_false(jscan_number(STR_LIT("1e400"), &v));                /* jansson: overflow */
    assert_false(jscan_number(STR_LIT("99999999999999999999"), &v)); /* past int64 */
}

/* What a refusal says and where, the nesting limit, and \u0000 when a caller allows it. */
static void test_reasons_depth_nul(void **state)
{
    (void)state;
    struct {
        const char *in, *why;
        size_t at;
    } bad[] = {
        {"\"\\x\"", "bad escape", 3},
        {"\"\\u12", "short \\u escape", 3},
        {"\"\\u12g4\"", "bad \\u escape", 3},
        {"\"\\udc00\"", "lone surrogate", 7},
        {"\"\\ud800\\u0041\"", "lone surrogate", 13},
        {"\"\\u0000\"", "\\u0000 in a string", 7},
        {"{\"a\" 1}", "expected ':'", 5},
        {"{1:2}", "expected a key", 1},
        {"[1 2]", "expected ',' or ']'", 3},
        {"[-]", "bad number", 1},
        {"[tru]", "unexpected character", 1},
        {"[", "unexpected end", 1},
        {"\"abcdefghijklmnop", "unterminated string", 17},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jscan s = {.p = bad[i].in, .n = strlen(bad[i].in)};
        enum jscan_kind k;
        struct str raw;
        assert_false(jscan_value(&s, &k, &raw));
        assert_string_equal(s.why, bad[i].why);
        assert_int_equal(s.i, bad[i].at);
    }
    struct jscan s = {.p = "[[[1]]]", .n = 7, .depth_max = 2};
    enum jscan_kind k;
    struct str raw;
    assert_false(jscan_value(&s, &k, &raw));
    assert_string_equal(s.why, "nested too deeply");
    assert_int_equal(s.i, 2);
    s = (struct jscan){.p = "[[1]]", .n = 5, .depth_max = 2};
    assert_true(jscan_value(&s, &k, &raw));
    s = (struct jscan){.p = "\"a\\u0000b\"", .n = 10, .allow_nul = true};
    assert_true(jscan_value(&s, &k, &raw) && k == JSCAN_STRING && raw.len == 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_jansson),
        cmocka_unit_test(test_spans_and_strings),
        cmocka_unit_test(test_numbers_read_as_strtod),
        cmocka_unit_test(test_reasons_depth_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
