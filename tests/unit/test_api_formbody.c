/* Record bodies: counting the top-level keys of JSON text without parsing it, and the part
 * limit of multipart/form-data bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "api/records_int.h"

static size_t keys(const char *text, size_t max)
{
    return api__json_top_keys(str_from(text), max);
}

static void test_top_keys(void **state)
{
    UNUSED(state);
    assert_int_equal(keys("{}", 10), 0);
    assert_int_equal(keys(" \n{\"a\":1,\"b\":{\"c\":2,\"d\":[{\"e\":3}]},\"f\":\"x:y\"}", 10), 3);
    /* colons and quotes inside strings, escaped quotes, keys with colons */
    assert_int_equal(keys("{\"a:b\":\"\\\":\\\\\",\"c\":\"}{\"}", 10), 2);
    /* not an object: nothing to count */
    assert_int_equal(keys("[{\"a\":1}]", 10), 0);
    assert_int_equal(keys("\"a:b\"", 10), 0);
    assert_int_equal(keys("", 10), 0);
    /* counting stops one past max */
    assert_int_equal(keys("{\"a\":1,\"b\":2,\"c\":3,\"d\":4}", 2), 3);
    /* a duplicated key counts each time it is sent */
    assert_int_equal(keys("{\"a\":1,\"a\":2}", 10), 2);
}

static int parse(const char *body, size_t max, json_t **out)
{
    *out = json_object();
    return api__parse_multipart("multipart/form-data; boundary=B", str_from(body), max, *out, NULL);
}

static void test_multipart_part_limit(void **state)
{
    UNUSED(state);
    const char *three = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n"
                        "--B\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nx\r\n--B--\r\n";
    json_t *out;
    assert_int_equal(parse(three, 3, &out), 0);
    assert_int_equal(json_array_size(json_object_get(out, "a")), 2);
    json_decref(out);
    assert_int_equal(parse(three, 2, &out), ERR_LIMIT); /* parts, not keys, count */
    json_decref(out);
    /* the keys a @jsonPayload part brings count too */
    const char *payload = "--B\r\nContent-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n"
                          "{\"x\":1,\"y\":2,\"z\":3}\r\n--B--\r\n";
    assert_int_equal(parse(payload, 3, &out), 0);
    assert_int_equal(json_object_size(out), 3);
    json_decref(out);
    assert_int_equal(parse(payload, 2, &out), ERR_LIMIT);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_keys),
        cmocka_unit_test(test_multipart_part_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
