/* The predictions log records into warehouse rows (pipeline_parse_prediction): the records
 * the ML module writes are read in place (features and prediction kept as written), anything
 * else goes through jansson with the same result or the same reject. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "pipeline/pipeline.h"

static int parse(const char *text, struct wh_prediction *p, struct arena *a, char *reason)
{
    return pipeline_parse_prediction(text, strlen(text), 7, p, a, reason, 200);
}

static void test_written_records(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 4096);
    struct wh_prediction p;
    char reason[200] = "";
    /* binary, the row as the client sent it (white space and all) */
    assert_int_equal(
        parse("{\"model\":\"churn\",\"version\":3,\"timestamp\":\"2026-12-07T10:00:00.000Z\","
              "\"features\":{ \"x1\": 0.25, \"plan\" :\"pro\" },"
              "\"prediction\":{\"score\":0.75,\"label\":1}}",
              &p, &a, reason),
        0);
    assert_string_equal(p.model, "churn");
    assert_int_equal(p.version, 3);
    assert_int_equal(p.log_offset, 7);
    assert_true(p.timestamp_us > 0);
    assert_string_equal(p.features, "{ \"x1\": 0.25, \"plan\" :\"pro\" }");
    assert_string_equal(p.prediction, "{\"score\":0.75,\"label\":1}");
    assert_true(p.score == 0.75);
    /* multiclass: the label is the score */
    assert_int_equal(
        parse("{\"model\":\"m\",\"version\":1,\"timestamp\":\"2026-12-07T10:00:00Z\","
              "\"features\":{},\"prediction\":{\"probabilities\":[0.1,0.9],\"label\":1}}",
              &p, &a, reason),
        0);
    assert_true(p.score == 1);
    /* an escaped name: jansson's way, the same row */
    assert_int_equal(parse("{\"model\":\"\\u0063hurn\",\"version\":2,\"features\":{\"x\":1},"
                           "\"prediction\":{\"score\":0.5}}",
                           &p, &a, reason),
                     0);
    assert_string_equal(p.model, "churn");
    assert_int_equal(p.timestamp_us, WH_NO_TIME);
    assert_true(p.score == 0.5);
    arena_release(&a);
}

static void test_rejects(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 4096);
    struct wh_prediction p;
    char reason[200] = "";
    assert_int_equal(parse("{\"model\":\"m\",\"version\":1,\"features\":{", &p, &a, reason),
                     ERR_INVALID);
    assert_non_null(strstr(reason, "not JSON"));
    assert_int_equal(parse("{\"model\":\"m\",\"version\":1.5,\"features\":{},\"prediction\":{}}",
                           &p, &a, reason),
                     ERR_INVALID);
    assert_non_null(strstr(reason, "version"));
    assert_int_equal(parse("{\"model\":\"m\",\"version\":1,\"timestamp\":\"yesterday\","
                           "\"features\":{},\"prediction\":{}}",
                           &p, &a, reason),
                     ERR_INVALID);
    assert_non_null(strstr(reason, "timestamp"));
    /* a written record followed by a NUL byte is not a record (jansson refuses it too) */
    static const char nul[] = "{\"model\":\"m\",\"version\":1,\"features\":{},"
                              "\"prediction\":{\"score\":0.5}}\0";
    assert_int_equal(pipeline_parse_prediction(nul, sizeof(nul) - 1, 7, &p, &a, reason, 200),
                     ERR_INVALID);
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written_records),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
