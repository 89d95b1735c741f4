/* Trends on hand-made events in a temporary warehouse: maths, identity merge, breakdown
 * (top values, other, null), time zones and DST, wau/mau windows. Expected values are
 * worked out by hand from the events listed in each test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "analytics_fixture.h"

static int setup(void **state)
{
    *state = afx_open("antr");
    return 0;
}

static int teardown(void **state)
{
    afx_close(*state);
    return 0;
}

/* u1 is known; a2 browses anonymously and is identified as u2 on 03-03; a3 stays anonymous */
static const struct aev base[] = {
    {NULL, "pageview", "u1", "a1", NULL, "2024-03-01T10:00:00Z", "{\"plan\":\"pro\"}"},
    {NULL, "pageview", "u1", "a1", NULL, "2024-03-01T11:00:00Z", NULL},
    {NULL, "purchase", "u1", "a1", NULL, "2024-03-02T10:00:00Z", "{\"amount\":10}"},
    {NULL, "pageview", NULL, "a2", NULL, "2024-03-01T12:00:00Z", "{\"plan\":\"free\"}"},
    {"identify", NULL, "u2", "a2", NULL, "2024-03-03T09:00:00Z", NULL},
    {NULL, "pageview", "u2", "a2", NULL, "2024-03-03T10:00:00Z", "{\"plan\":\"free\"}"},
    {NULL, "pageview", NULL, "a3", NULL, "2024-03-02T23:30:00Z", "{\"plan\":\"\"}"},
    {NULL, "purchase", "u1", "a1", NULL, "2024-03-03T10:00:00Z", "{\"amount\":30}"},
    {NULL, "purchase", "u1", "a1", NULL, "2024-03-03T11:00:00Z", "{\"amount\":\"n/a\"}"},
};

static void test_total_and_unique(void **state)
{
    struct afx *f = *state;
    afx_load(f, base, ARRAY_LEN(base));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"pageview\"},"
                             "{\"event\":\"pageview\",\"math\":\"dau\",\"name\":\"users\"}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-03\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels", "[\"2024-03-01\",\"2024-03-02\",\"2024-03-03\"]");
    assert_at(r, "results.0.data", "[3,1,1]");
    assert_at(r, "results.0.count", "5");
    assert_at(r, "results.0.label", "\"pageview\"");
    assert_at(r, "results.0.math", "\"total\"");
    assert_at(r, "results.0.breakdown", "null");
    /* a2's pageview on 03-01 is u2's (linked by the identify): {u1,u2}, {a3}, {u2} */
    assert_at(r, "results.1.data", "[2,1,1]");
    assert_at(r, "results.1.count", "3");
    assert_at(r, "results.1.label", "\"users\"");
    assert_at(r, "interval", "\"day\"");
    assert_at(r, "timezone", "\"UTC\"");
    assert_at(r, "dateFrom", "\"2024-03-01T00:00:00.000Z\"");
    assert_at(r, "dateTo", "\"2024-03-04T00:00:00.000Z\"");
    json_decref(r);
}

static void test_property_maths(void **state)
{
    struct afx *f = *state;
    afx_load(f, base, ARRAY_LEN(base));
    json_t *r = NULL;
    assert_int_equal(
        afx_run(f, ANALYTICS_TRENDS,
                "{\"series\":[{\"event\":\"purchase\",\"math\":\"sum\",\"mathProperty\":"
                "\"properties.amount\"},{\"event\":\"purchase\",\"math\":\"avg\",\"mathProperty\":"
                "\"properties.amount\"},{\"event\":\"purchase\",\"math\":\"median\","
                "\"mathProperty\":\"properties.amount\"},{\"event\":\"purchase\",\"math\":\"p90\","
                "\"mathProperty\":\"properties.amount\"}],"
                "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-03\"}",
                &r),
        0);
    /* "n/a" is not a number: left out; a bucket without numbers is 0 */
    assert_at(r, "results.0.data", "[0.0,10.0,30.0]");
    assert_at(r, "results.0.count", "40.0");
    assert_at(r, "results.1.count", "20.0");
    assert_at(r, "results.2.count", "20.0");
    /* p90 of {10, 30}: 10 + 0.9 * 20 */
    assert_at(r, "results.3.count", "28.0");
    json_decref(r);
}

static void test_breakdown_null_and_filters(void **state)
{
    struct afx *f = *state;
    afx_load(f, base, ARRAY_LEN(base));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"pageview\"}],\"breakdown\":"
                             "\"properties.plan\",\"dateFrom\":\"2024-03-01\",\"dateTo\":"
                             "\"2024-03-03\"}",
                             &r),
                     0);
    /* free 2 events, pro 1, null (missing or "") 2 */
    assert_at(r, "results.0.breakdown", "\"free\"");
    assert_at(r, "results.0.data", "[1,0,1]");
    assert_at(r, "results.1.breakdown", "\"pro\"");
    assert_at(r, "results.1.data", "[1,0,0]");
    assert_at(r, "results.2.breakdown", "\"$$_posthog_breakdown_null_$$\"");
    assert_at(r, "results.2.data", "[1,1,0]");
    assert_at(r, "results.2.count", "2");
    assert_at(r, "results.3", "<missing>");
    json_decref(r);

    /* query filter, is_not (unset matches) and a series filter */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"pageview\"},{\"event\":\"pageview\","
                             "\"properties\":[{\"key\":\"properties.plan\",\"operator\":"
                             "\"icontains\",\"value\":\"FR\"}]}],"
                             "\"properties\":[{\"key\":\"properties.plan\",\"operator\":"
                             "\"is_not\",\"value\":[\"pro\"]}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-03\"}",
                             &r),
                     0);
    assert_at(r, "results.0.data", "[2,1,1]");
    assert_at(r, "results.1.data", "[1,0,1]");
    json_decref(r);

    /* numeric comparison: amounts > 15; "n/a" never matches */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"purchase\",\"properties\":[{\"key\":"
                             "\"properties.amount\",\"operator\":\"gt\",\"value\":15}]}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-03\"}",
                             &r),
                     0);
    assert_at(r, "results.0.data", "[0,0,1]");
    json_decref(r);
}

static void test_breakdown_other(void **state)
{
    struct afx *f = *state;
    /* 27 values: v00 has 3 events, v01 2, the others 1; ranking then by value */
    struct aev ev[30];
    char props[30][40];
    for (int i = 0; i < 27; i++) {
        snprintf(props[i], sizeof(props[i]), "{\"k\":\"v%02d\"}", i);
        ev[i] = (struct aev){NULL, "e", "u", NULL, NULL, "2024-03-01T10:00:00Z", props[i]};
    }
    ev[27] = (struct aev){NULL, "e", "u", NULL, NULL, "2024-03-01T10:00:00Z", props[0]};
    ev[28] = (struct aev){NULL, "e", "u", NULL, NULL, "2024-03-01T10:00:00Z", props[0]};
    ev[29] = (struct aev){NULL, "e", "u", NULL, NULL, "2024-03-01T10:00:00Z", props[1]};
    afx_load(f, ev, 30);
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"breakdown\":\"properties.k\","
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-01\"}",
                             &r),
                     0);
    assert_at(r, "results.0.breakdown", "\"v00\"");
    assert_at(r, "results.0.count", "3");
    assert_at(r, "results.1.breakdown", "\"v01\"");
    assert_at(r, "results.2.breakdown", "\"v02\"");
    assert_at(r, "results.24.breakdown", "\"v24\"");
    assert_at(r, "results.25.breakdown", "\"$$_posthog_breakdown_other_$$\"");
    assert_at(r, "results.25.count", "2");
    assert_at(r, "results.26", "<missing>");
    json_decref(r);
}

static void test_timezone_and_dst(void **state)
{
    struct afx *f = *state;
    static const struct aev ev[] = {
        /* spring forward 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z) */
        {NULL, "e", "u", NULL, NULL, "2024-03-10T06:30:00Z", NULL}, /* 01:30 EST */
        {NULL, "e", "u", NULL, NULL, "2024-03-10T07:30:00Z", NULL}, /* 03:30 EDT */
        /* fall back 2024-11-03 02:00 EDT -> 01:00 EST (06:00Z) */
        {NULL, "e", "u", NULL, NULL, "2024-11-03T03:30:00Z", NULL}, /* 11-02 23:30 EDT */
        {NULL, "e", "u", NULL, NULL, "2024-11-03T05:30:00Z", NULL}, /* 01:30 EDT */
        {NULL, "e", "u", NULL, NULL, "2024-11-03T06:30:00Z", NULL}, /* 01:30 EST */
        {NULL, "e", "u", NULL, NULL, "2024-11-04T04:30:00Z", NULL}, /* 11-03 23:30 EST */
        {NULL, "e", "u", NULL, NULL, "2024-11-04T05:30:00Z", NULL}, /* 11-04 00:30 EST */
    };
    afx_load(f, ev, ARRAY_LEN(ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"interval\":\"hour\","
                             "\"timezone\":\"America/New_York\",\"dateFrom\":"
                             "\"2024-03-10T00:00\",\"dateTo\":\"2024-03-10T04:00\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels",
              "[\"2024-03-10T00:00:00-05:00\",\"2024-03-10T01:00:00-05:00\","
              "\"2024-03-10T03:00:00-04:00\",\"2024-03-10T04:00:00-04:00\"]");
    assert_at(r, "results.0.data", "[0,1,1,0]");
    assert_at(r, "dateFrom", "\"2024-03-10T05:00:00.000Z\"");
    assert_at(r, "dateTo", "\"2024-03-10T09:00:00.000Z\"");
    json_decref(r);

    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"interval\":\"hour\","
                             "\"timezone\":\"America/New_York\",\"dateFrom\":"
                             "\"2024-11-03T00:00\",\"dateTo\":\"2024-11-03T02:00\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels",
              "[\"2024-11-03T00:00:00-04:00\",\"2024-11-03T01:00:00-04:00\","
              "\"2024-11-03T01:00:00-05:00\",\"2024-11-03T02:00:00-05:00\"]");
    assert_at(r, "results.0.data", "[0,1,1,0]");
    json_decref(r);

    /* a date-only dateTo runs to the end of that local day: 23 hours on 03-10 */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"interval\":\"hour\","
                             "\"timezone\":\"America/New_York\",\"dateFrom\":\"2024-03-10\","
                             "\"dateTo\":\"2024-03-10\"}",
                             &r),
                     0);
    assert_int_equal(json_array_size(json_object_get(
                         json_array_get(json_object_get(r, "results"), 0), "labels")),
                     23);
    assert_at(r, "dateTo", "\"2024-03-11T04:00:00.000Z\"");
    json_decref(r);

    /* the 25-hour day 11-03 holds four events; 11-02 one; 11-04 one */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"timezone\":\"America/New_York\","
                             "\"dateFrom\":\"2024-11-02\",\"dateTo\":\"2024-11-04\"}",
                             &r),
                     0);
    assert_at(r, "results.0.data", "[1,3,1]");
    assert_at(r, "dateFrom", "\"2024-11-02T04:00:00.000Z\"");
    assert_at(r, "dateTo", "\"2024-11-05T05:00:00.000Z\"");
    json_decref(r);

    /* weeks starting on Sunday and months */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"interval\":\"week\","
                             "\"weekStart\":\"sunday\",\"timezone\":\"America/New_York\","
                             "\"dateFrom\":\"2024-11-01\",\"dateTo\":\"2024-11-05\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels", "[\"2024-10-27\",\"2024-11-03\"]");
    assert_at(r, "results.0.data", "[1,4]");
    json_decref(r);
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\"}],\"interval\":\"month\","
                             "\"dateFrom\":\"2024-03-05\",\"dateTo\":\"2024-11-05\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels",
              "[\"2024-03-01\",\"2024-04-01\",\"2024-05-01\",\"2024-06-01\","
              "\"2024-07-01\",\"2024-08-01\",\"2024-09-01\",\"2024-10-01\","
              "\"2024-11-01\"]");
    assert_at(r, "results.0.data", "[2,0,0,0,0,0,0,0,5]");
    json_decref(r);
}

static void test_wau_window(void **state)
{
    struct afx *f = *state;
    static const struct aev ev[] = {
        {NULL, "e", "p", NULL, NULL, "2024-03-01T10:00:00Z", NULL},
        {NULL, "e", "p", NULL, NULL, "2024-03-05T10:00:00Z", NULL},
        {NULL, "e", "q", NULL, NULL, "2024-02-26T10:00:00Z", NULL}, /* before the range */
    };
    afx_load(f, ev, ARRAY_LEN(ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\",\"math\":\"wau\"},{\"event\":\"e\","
                             "\"math\":\"mau\"},{\"event\":\"e\",\"math\":\"wau\"}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-12\"}",
                             &r),
                     0);
    /* q covers 02-26..03-03; p covers 03-01..03-11 */
    assert_at(r, "results.0.data", "[2,2,2,1,1,1,1,1,1,1,1,0]");
    assert_at(r, "results.0.count", "1");
    assert_at(r, "results.1.data", "[2,2,2,2,2,2,2,2,2,2,2,2]");
    json_decref(r);
    /* hour buckets: each label's whole local day counts, even past the range end */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\",\"math\":\"wau\"}],\"interval\":"
                             "\"hour\",\"dateFrom\":\"2024-03-05T00:00\",\"dateTo\":"
                             "\"2024-03-05T01:00\"}",
                             &r),
                     0);
    assert_at(r, "results.0.data", "[1,1]");
    assert_at(r, "results.0.count", "0"); /* no event inside the two hours */
    json_decref(r);
    /* with week buckets wau is unique users per week */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"e\",\"math\":\"wau\"}],\"interval\":"
                             "\"week\",\"dateFrom\":\"2024-02-26\",\"dateTo\":\"2024-03-05\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels", "[\"2024-02-26\",\"2024-03-04\"]");
    assert_at(r, "results.0.data", "[2,1]");
    json_decref(r);
}

static void test_empty_and_relative(void **state)
{
    struct afx *f = *state;
    json_t *r = NULL;
    /* now is 2024-06-01T00:00Z: -2d is 05-30, so 05-30, 05-31 and 06-01 */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS, "{\"series\":[{}],\"dateFrom\":\"-2d\"}", &r), 0);
    assert_at(r, "results.0.data", "[0,0,0]");
    assert_at(r, "results.0.label", "\"All events\"");
    assert_at(r, "results.0.event", "null");
    assert_at(r, "results.0.labels", "[\"2024-05-30\",\"2024-05-31\",\"2024-06-01\"]");
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_total_and_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_property_maths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breakdown_null_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breakdown_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timezone_and_dst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wau_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_relative, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
