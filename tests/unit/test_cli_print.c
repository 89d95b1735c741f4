/* tandem query's output: aligned tables, CSV quoting, JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cli/cli.h"

static char *render(const char *resp_json, enum cli_format f)
{
    json_t *resp = json_loads(resp_json, 0, NULL);
    assert_non_null(resp);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cli_print_result(resp, f, out);
    fclose(out);
    json_decref(resp);
    return text;
}

static const char resp[] =
    "{\"columns\":[{\"name\":\"id\",\"type\":\"BIGINT\"},{\"name\":\"name\",\"type\":\"VARCHAR\"},"
    "{\"name\":\"props\",\"type\":\"JSON\"}],"
    "\"rows\":[[9007199254740993,\"plain\",{\"a\":[1,2]}],[2,\"with, comma \\\"q\\\"\",null],"
    "[3,\"h\\u00e9\",1.5]],\"rowCount\":3,\"truncated\":true,\"elapsedMs\":1}";

static void test_table(void **state)
{
    (void)state;
    char *t = render(resp, CLI_TABLE);
    /* columns as wide as their widest cell, counted in characters (é is one) */
    assert_string_equal(t, "id               | name            | props\n"
                           "-----------------+-----------------+------------\n"
                           "9007199254740993 | plain           | {\"a\":[1,2]}\n"
                           "2                | with, comma \"q\" | NULL\n"
                           "3                | h\xc3\xa9              | 1.5\n"
                           "(3 rows, truncated)\n");
    free(t);
}

static void test_csv(void **state)
{
    (void)state;
    char *t = render(resp, CLI_CSV);
    assert_string_equal(t, "id,name,props\n"
                           "9007199254740993,plain,\"{\"\"a\"\":[1,2]}\"\n"
                           "2,\"with, comma \"\"q\"\"\",NULL\n"
                           "3,h\xc3\xa9,1.5\n");
    free(t);
}

static void test_json_keeps_big_integers(void **state)
{
    (void)state;
    char *t = render(resp, CLI_JSON);
    assert_non_null(strstr(t, "9007199254740993"));
    json_t *back = json_loads(t, 0, NULL);
    assert_non_null(back);
    assert_int_equal(
        json_integer_value(json_array_get(json_array_get(json_object_get(back, "rows"), 0), 0)),
        9007199254740993LL);
    json_decref(back);
    free(t);
}

static void test_empty_result(void **state)
{
    (void)state;
    char *t = render("{\"columns\":[{\"name\":\"n\",\"type\":\"INTEGER\"}],\"rows\":[],"
                     "\"rowCount\":0,\"truncated\":false}",
                     CLI_TABLE);
    assert_string_equal(t, "n\n-\n(0 rows)\n");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_json_keeps_big_integers),
        cmocka_unit_test(test_empty_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
