/* Query strings and URL decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "http/http.h"

static size_t parse(struct arena *a, const char *qs, struct http_kv **kv)
{
    size_t n = 0;
    assert_int_equal(http_query_parse(a, qs, strlen(qs), kv, &n), 0);
    return n;
}

static void test_pairs(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 0);
    struct http_kv *kv;
    size_t n = parse(&a, "page=2&perPage=50&filter=(title%3D'a%20b'%26%26x~%22y%22)&flag", &kv);
    assert_int_equal(n, 4);
    assert_string_equal(kv[0].key, "page");
    assert_string_equal(kv[0].value, "2");
    assert_string_equal(kv[1].key, "perPage");
    assert_string_equal(kv[1].value, "50");
    assert_string_equal(kv[2].key, "filter");
    assert_string_equal(kv[2].value, "(title='a b'&&x~\"y\")");
    assert_string_equal(kv[3].key, "flag");
    assert_string_equal(kv[3].value, "");
    arena_release(&a);
}

static void test_plus_empty_and_repeats(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 0);
    struct http_kv *kv;
    size_t n = parse(&a, "&a=1+2&&a=3&=v&k%2Bx=%2B", &kv);
    assert_int_equal(n, 4);
    assert_string_equal(kv[0].value, "1 2");
    assert_string_equal(kv[1].key, "a");
    assert_string_equal(kv[1].value, "3");
    assert_string_equal(kv[2].key, "");
    assert_string_equal(kv[2].value, "v");
    assert_string_equal(kv[3].key, "k+x");
    assert_string_equal(kv[3].value, "+");
    assert_int_equal(parse(&a, "", &kv), 0);
    arena_release(&a);
}

static void test_bad_escapes_kept(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 0);
    assert_string_equal(http_url_decode(&a, "%zz%4", 5, false), "%zz%4");
    assert_string_equal(http_url_decode(&a, "%", 1, false), "%");
    assert_string_equal(http_url_decode(&a, "a+b%41", 6, false), "a+bA");
    assert_string_equal(http_url_decode(&a, "a+b", 3, true), "a b");
    /* an encoded NUL decodes to a NUL byte; C-string consumers stop there */
    assert_string_equal(http_url_decode(&a, "x%00y", 5, false), "x");
    arena_release(&a);
}

static void test_limit(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 0);
    struct buf qs;
    buf_init(&qs);
    for (int i = 0; i < HTTP_MAX_QUERY_PARAMS + 1; i++)
        buf_printf(&qs, "%sk%d=v", i ? "&" : "", i);
    struct http_kv *kv;
    size_t n;
    assert_int_equal(http_query_parse(&a, qs.ptr, qs.len, &kv, &n), ERR_LIMIT);
    buf_release(&qs);
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_plus_empty_and_repeats),
        cmocka_unit_test(test_bad_escapes_kept),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
