/* Funnels, retention, stickiness and lifecycle on hand-made events in a temporary warehouse,
 * with the cases of the PostHog parity checklist (docs/analytics.md; reference Appendix A):
 * chain restart (u5 reaches step 3), one event never fills two consecutive steps, strict
 * order, exclusions drop the actor, cumulative counts and conversion times, first-touch
 * breakdown; retention period 0 = 100% and same-period returns not counted, recurring vs
 * first time; lifecycle statuses with dormant negative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "analytics_fixture.h"

static int setup(void **state)
{
    *state = afx_open("anin");
    return 0;
}

static int teardown(void **state)
{
    afx_close(*state);
    return 0;
}

/* Steps A, B, C; X is an exclusion event. Days from 2024-01-01. */
static const struct aev funnel_ev[] = {
    /* u1: A, B +1h, C +4h: times 3600, 10800 */
    {NULL, "A", "u1", NULL, NULL, "2024-01-01T00:00:00Z", "{\"src\":\"ads\"}"},
    {NULL, "B", "u1", NULL, NULL, "2024-01-01T01:00:00Z", NULL},
    {NULL, "C", "u1", NULL, NULL, "2024-01-01T04:00:00Z", NULL},
    /* u2: A; A 10 days later and B an hour after it */
    {NULL, "A", "u2", NULL, NULL, "2024-01-01T00:00:00Z", NULL},
    {NULL, "A", "u2", NULL, NULL, "2024-01-11T00:00:00Z", NULL},
    {NULL, "B", "u2", NULL, NULL, "2024-01-11T01:00:00Z", NULL},
    /* u3: A; B 15 days later (outside the 14-day window) */
    {NULL, "A", "u3", NULL, NULL, "2024-01-01T00:00:00Z", NULL},
    {NULL, "B", "u3", NULL, NULL, "2024-01-16T00:00:00Z", NULL},
    /* u4: B, A, C */
    {NULL, "B", "u4", NULL, NULL, "2024-01-01T00:00:00Z", NULL},
    {NULL, "A", "u4", NULL, NULL, "2024-01-01T01:00:00Z", NULL},
    {NULL, "C", "u4", NULL, NULL, "2024-01-01T02:00:00Z", NULL},
    /* u5: A, B a day later; A 20 days later, then B +2h and C +3h: the chain restarts */
    {NULL, "A", "u5", NULL, NULL, "2024-01-01T00:00:00Z", NULL},
    {NULL, "B", "u5", NULL, NULL, "2024-01-02T00:00:00Z", "{\"src\":\"seo\"}"},
    {NULL, "A", "u5", NULL, NULL, "2024-01-21T00:00:00Z", NULL},
    {NULL, "B", "u5", NULL, NULL, "2024-01-21T02:00:00Z", NULL},
    {NULL, "C", "u5", NULL, NULL, "2024-01-21T03:00:00Z", NULL},
    /* u6: A, X, B */
    {NULL, "A", "u6", NULL, NULL, "2024-01-01T00:00:00Z", NULL},
    {NULL, "X", "u6", NULL, NULL, "2024-01-01T01:00:00Z", NULL},
    {NULL, "B", "u6", NULL, NULL, "2024-01-01T02:00:00Z", NULL},
};

#define STEPS_ABC                                                                                  \
    "\"steps\":[{\"event\":\"A\"},{\"event\":\"B\"},{\"event\":\"C\"}],\"dateFrom\":\"2024-01-"    \
    "01\","                                                                                        \
    "\"dateTo\":\"2024-01-31\""

static void test_funnel_ordered(void **state)
{
    struct afx *f = *state;
    afx_load(f, funnel_ev, ARRAY_LEN(funnel_ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL, "{" STEPS_ABC "}", &r), 0);
    /* furthest: u1 2, u2 1, u3 0, u4 0, u5 2, u6 1 */
    assert_at(r, "results.0.breakdown", "null");
    assert_at(r, "results.0.steps.0.count", "6");
    assert_at(r, "results.0.steps.1.count", "4");
    assert_at(r, "results.0.steps.2.count", "2");
    assert_at(r, "results.0.steps.0.name", "\"A\"");
    assert_at(r, "results.0.steps.0.conversionRate", "1");
    assert_at(r, "results.0.steps.0.stepConversionRate", "1");
    assert_at(r, "results.0.steps.0.averageConversionTime", "null");
    assert_at(r, "results.0.steps.2.conversionRate", "0.3333333333");
    assert_at(r, "results.0.steps.2.stepConversionRate", "0.5");
    /* step 1: u1 3600, u2 3600, u5 7200 (its restarted chain), u6 7200 */
    assert_at(r, "results.0.steps.1.averageConversionTime", "5400.0");
    assert_at(r, "results.0.steps.1.medianConversionTime", "5400.0");
    /* step 2: u1 10800, u5 3600 */
    assert_at(r, "results.0.steps.2.averageConversionTime", "7200.0");
    assert_at(r, "timezone", "\"UTC\"");
    json_decref(r);
}

static void test_funnel_strict_exclusion_same_event(void **state)
{
    struct afx *f = *state;
    afx_load(f, funnel_ev, ARRAY_LEN(funnel_ev));
    json_t *r = NULL;
    /* strict: X breaks u6 (1 step); u4's A, C is not A, B */
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL, "{" STEPS_ABC ",\"funnelOrder\":\"strict\"}", &r),
                     0);
    assert_at(r, "results.0.steps.0.count", "6");
    assert_at(r, "results.0.steps.1.count", "3");
    assert_at(r, "results.0.steps.2.count", "2");
    json_decref(r);
    /* the exclusion X between steps 0 and 1 removes u6 from the whole funnel */
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL,
                             "{" STEPS_ABC ",\"exclusions\":[{\"event\":\"X\",\"fromStep\":0,"
                             "\"toStep\":1}]}",
                             &r),
                     0);
    assert_at(r, "results.0.steps.0.count", "5");
    assert_at(r, "results.0.steps.1.count", "3");
    assert_at(r, "results.0.steps.2.count", "2");
    json_decref(r);
    /* steps A, A: one A event never fills both; u2's two A's 10 days apart do */
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL,
                             "{\"steps\":[{\"event\":\"A\"},{\"event\":\"A\"}],\"dateFrom\":"
                             "\"2024-01-01\",\"dateTo\":\"2024-01-31\"}",
                             &r),
                     0);
    assert_at(r, "results.0.steps.0.count", "6");
    assert_at(r, "results.0.steps.1.count", "1");
    json_decref(r);
    /* unordered: no conversion times */
    assert_int_equal(
        afx_run(f, ANALYTICS_FUNNEL, "{" STEPS_ABC ",\"funnelOrder\":\"unordered\"}", &r), 0);
    assert_at(r, "results.0.steps.1.averageConversionTime", "null");
    /* u4: B, A, C within a window: all three */
    assert_at(r, "results.0.steps.2.count", "3");
    json_decref(r);
}

static void test_funnel_breakdown_and_range(void **state)
{
    struct afx *f = *state;
    afx_load(f, funnel_ev, ARRAY_LEN(funnel_ev));
    json_t *r = NULL;
    assert_int_equal(
        afx_run(f, ANALYTICS_FUNNEL, "{" STEPS_ABC ",\"breakdown\":\"properties.src\"}", &r), 0);
    /* first touch: u1 ads, u5 seo (its first event with the property); the rest null */
    assert_at(r, "results.0.breakdown", "\"ads\"");
    assert_at(r, "results.0.steps.2.count", "1");
    assert_at(r, "results.1.breakdown", "\"seo\"");
    assert_at(r, "results.1.steps.2.count", "1");
    assert_at(r, "results.2.breakdown", "\"$$_posthog_breakdown_null_$$\"");
    assert_at(r, "results.2.steps.0.count", "4");
    assert_at(r, "results.2.steps.1.count", "2");
    assert_at(r, "results.3", "<missing>");
    json_decref(r);
    /* every step must be in range: up to 01-20, u5's restarted chain is gone */
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL,
                             "{\"steps\":[{\"event\":\"A\"},{\"event\":\"B\"},{\"event\":\"C\"}],"
                             "\"dateFrom\":\"2024-01-01\",\"dateTo\":\"2024-01-20\"}",
                             &r),
                     0);
    assert_at(r, "results.0.steps.2.count", "1");
    json_decref(r);
    /* no events at all: zero counts, rates 0 */
    assert_int_equal(afx_run(f, ANALYTICS_FUNNEL,
                             "{\"steps\":[{\"event\":\"A\"},{\"event\":\"B\"}],\"dateFrom\":"
                             "\"2023-01-01\",\"dateTo\":\"2023-01-31\"}",
                             &r),
                     0);
    assert_at(r, "results.0.steps.0.count", "0");
    assert_at(r, "results.0.steps.1.conversionRate", "0.0");
    json_decref(r);
}

/* signup is the target, use the return */
static const struct aev cohort_ev[] = {
    {NULL, "signup", "p1", NULL, NULL, "2024-03-01T10:00:00Z", NULL},
    {NULL, "use", "p1", NULL, NULL, "2024-03-01T12:00:00Z", NULL},
    {NULL, "use", "p1", NULL, NULL, "2024-03-03T12:00:00Z", NULL},
    {NULL, "signup", "p2", NULL, NULL, "2024-03-01T10:00:00Z", NULL},
    {NULL, "use", "p2", NULL, NULL, "2024-03-02T12:00:00Z", NULL},
    {NULL, "signup", "p3", NULL, NULL, "2024-03-02T10:00:00Z", NULL},
    {NULL, "use", "p3", NULL, NULL, "2024-03-03T12:00:00Z", NULL},
    {NULL, "signup", "p3", NULL, NULL, "2024-03-03T13:00:00Z", NULL},
    {NULL, "signup", "p4", NULL, NULL, "2024-02-28T10:00:00Z", NULL},
    {NULL, "use", "p4", NULL, NULL, "2024-03-01T12:00:00Z", NULL},
    {NULL, "signup", "p4", NULL, NULL, "2024-03-02T10:00:00Z", NULL},
    {NULL, "use", "p5", NULL, NULL, "2024-02-29T12:00:00Z", NULL},
    {NULL, "use", "p5", NULL, NULL, "2024-03-01T12:00:00Z", NULL},
};

static void test_retention(void **state)
{
    struct afx *f = *state;
    afx_load(f, cohort_ev, ARRAY_LEN(cohort_ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_RETENTION,
                             "{\"targetEvent\":{\"event\":\"signup\"},\"returningEvent\":"
                             "{\"event\":\"use\"},\"totalIntervals\":3,\"dateTo\":\"2024-03-03\"}",
                             &r),
                     0);
    assert_at(r, "results.0.date", "\"2024-03-01\"");
    assert_at(r, "results.0.cohortSize", "2");
    /* p1's same-day use adds nothing; p2 returns on day 1, p1 on day 2 */
    assert_at(r, "results.0.values",
              "[{\"count\":2,\"percentage\":100.0},{\"count\":1,\"percentage\":50.0},"
              "{\"count\":1,\"percentage\":50.0}]");
    /* recurring: p3 and p4 sign up on 03-02 */
    assert_at(r, "results.1.cohortSize", "2");
    assert_at(r, "results.1.values.1.count", "1");
    assert_at(r, "results.2.cohortSize", "1");
    assert_at(r, "results.2.values", "[{\"count\":1,\"percentage\":100.0}]");
    assert_at(r, "period", "\"day\"");
    assert_at(r, "dateFrom", "\"2024-03-01T00:00:00.000Z\"");
    assert_at(r, "dateTo", "\"2024-03-04T00:00:00.000Z\"");
    json_decref(r);
    /* first time: p4's first signup is before the range; p3 only in 03-02 */
    assert_int_equal(afx_run(f, ANALYTICS_RETENTION,
                             "{\"targetEvent\":{\"event\":\"signup\"},\"returningEvent\":"
                             "{\"event\":\"use\"},\"totalIntervals\":3,\"dateTo\":\"2024-03-03\","
                             "\"retentionType\":\"first_time\"}",
                             &r),
                     0);
    assert_at(r, "results.0.cohortSize", "2");
    assert_at(r, "results.1.cohortSize", "1");
    assert_at(r, "results.1.values.1.percentage", "100.0");
    assert_at(r, "results.2.cohortSize", "0");
    assert_at(r, "results.2.values.0.percentage", "0.0");
    json_decref(r);
}

/* More than 64 periods take the general statement (not the bit masks): same answers */
static void test_retention_many_periods(void **state)
{
    struct afx *f = *state;
    afx_load(f, cohort_ev, ARRAY_LEN(cohort_ev));
    for (int ft = 0; ft < 2; ft++) {
        char q3[512], q70[512];
        const char *type = ft ? ",\"retentionType\":\"first_time\"" : "";
        snprintf(q3, sizeof(q3),
                 "{\"targetEvent\":{\"event\":\"signup\"},\"returningEvent\":{\"event\":\"use\"},"
                 "\"totalIntervals\":3,\"dateTo\":\"2024-03-03\"%s}",
                 type);
        snprintf(q70, sizeof(q70),
                 "{\"targetEvent\":{\"event\":\"signup\"},\"returningEvent\":{\"event\":\"use\"},"
                 "\"totalIntervals\":70,\"dateTo\":\"2024-03-03\"%s}",
                 type);
        json_t *a = NULL, *b = NULL;
        assert_int_equal(afx_run(f, ANALYTICS_RETENTION, q3, &a), 0);
        assert_int_equal(afx_run(f, ANALYTICS_RETENTION, q70, &b), 0);
        json_t *ra = json_object_get(a, "results"), *rb = json_object_get(b, "results");
        assert_int_equal(json_array_size(rb), 70);
        for (size_t i = 0; i < 3; i++)
            assert_true(json_equal(json_array_get(ra, i), json_array_get(rb, 67 + i)));
        /* 02-28 (2024 is a leap year): p4 signs up, returns on 03-01 (day 2) */
        assert_at(b, "results.65.cohortSize", "1");
        assert_at(b, "results.65.values.2.count", "1");
        json_decref(a);
        json_decref(b);
    }
}

/* The same target and returning event take one mask in the bit-mask statement: the answers
 * equal those of the general statement (more than 64 periods), recurring and first time */
static void test_retention_same_event(void **state)
{
    struct afx *f = *state;
    afx_load(f, cohort_ev, ARRAY_LEN(cohort_ev));
    for (int ft = 0; ft < 2; ft++) {
        char q3[512], q70[512];
        const char *type = ft ? ",\"retentionType\":\"first_time\"" : "";
        snprintf(q3, sizeof(q3),
                 "{\"targetEvent\":{\"event\":\"use\"},\"returningEvent\":{\"event\":\"use\"},"
                 "\"totalIntervals\":4,\"dateTo\":\"2024-03-03\"%s}",
                 type);
        snprintf(q70, sizeof(q70),
                 "{\"targetEvent\":{\"event\":\"use\"},\"returningEvent\":{\"event\":\"use\"},"
                 "\"totalIntervals\":70,\"dateTo\":\"2024-03-03\"%s}",
                 type);
        json_t *a = NULL, *b = NULL;
        assert_int_equal(afx_run(f, ANALYTICS_RETENTION, q3, &a), 0);
        assert_int_equal(afx_run(f, ANALYTICS_RETENTION, q70, &b), 0);
        json_t *ra = json_object_get(a, "results"), *rb = json_object_get(b, "results");
        assert_int_equal(json_array_size(ra), 4);
        for (size_t i = 0; i < 4; i++)
            assert_true(json_equal(json_array_get(ra, i), json_array_get(rb, 66 + i)));
        /* 02-29: p5 uses, and again on 03-01 */
        if (!ft)
            assert_at(a, "results.0.values.1.count", "1");
        json_decref(a);
        json_decref(b);
    }
}

static void test_stickiness(void **state)
{
    struct afx *f = *state;
    afx_load(f, cohort_ev, ARRAY_LEN(cohort_ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_STICKINESS,
                             "{\"series\":[{\"event\":\"use\"},{\"event\":\"signup\"}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-03\"}",
                             &r),
                     0);
    /* use: p1 2 days; p2, p3, p4, p5 1 day */
    assert_at(r, "results.0.labels", "[\"1 day\",\"2 days\",\"3 days\"]");
    assert_at(r, "results.0.days", "[1,2,3]");
    assert_at(r, "results.0.data", "[4,1,0]");
    assert_at(r, "results.0.count", "5");
    /* signup: p1, p2, p4 1 day; p3 2 days */
    assert_at(r, "results.1.data", "[3,1,0]");
    json_decref(r);
}

static void test_lifecycle(void **state)
{
    struct afx *f = *state;
    afx_load(f, cohort_ev, ARRAY_LEN(cohort_ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_LIFECYCLE,
                             "{\"series\":[{\"event\":\"use\"}],\"dateFrom\":\"2024-03-01\","
                             "\"dateTo\":\"2024-03-04\"}",
                             &r),
                     0);
    assert_at(r, "results.0.status", "\"new\"");
    assert_at(r, "results.0.data", "[1,0,0,0]"); /* p1 (first seen 03-01) */
    assert_at(r, "results.1.data", "[1,0,0,0]"); /* p5 (active 02-29) */
    assert_at(r, "results.2.data", "[1,1,2,0]"); /* p4; p2; p1, p3 */
    assert_at(r, "results.3.status", "\"dormant\"");
    assert_at(r, "results.3.data", "[0,-3,-1,-2]"); /* p1 p4 p5; p2; p1 p3 */
    assert_at(r, "results.0.labels",
              "[\"2024-03-01\",\"2024-03-02\",\"2024-03-03\",\"2024-03-04\"]");
    json_decref(r);
}

static void test_identity_merge(void **state)
{
    struct afx *f = *state;
    static const struct aev ev[] = {
        /* anon a1 browses, then is identified as u1: one person */
        {NULL, "view", NULL, "a1", NULL, "2024-03-01T10:00:00Z", NULL},
        {"identify", NULL, "u1", "a1", NULL, "2024-03-01T11:00:00Z", NULL},
        {NULL, "view", "u1", "a1", NULL, "2024-03-01T12:00:00Z", NULL},
        /* a2 is linked to u2 first, later to u3: the earliest link wins */
        {NULL, "view", NULL, "a2", NULL, "2024-03-01T10:00:00Z", NULL},
        {NULL, "view", "u2", "a2", NULL, "2024-03-01T11:00:00Z", NULL},
        {NULL, "view", "u3", "a2", NULL, "2024-03-01T12:00:00Z", NULL},
        /* alias: old id o1 -> u4 */
        {NULL, "view", "o1", NULL, NULL, "2024-03-01T10:00:00Z", NULL},
        {"alias", NULL, "u4", NULL, "o1", "2024-03-01T11:00:00Z", NULL},
        {NULL, "view", "u4", NULL, NULL, "2024-03-01T12:00:00Z", NULL},
        /* a row of o1 with anonymous id a5 links a5 -> o1 */
        {NULL, "view", "o1", "a5", NULL, "2024-03-01T09:00:00Z", NULL},
        /* one level only: a5 resolves to o1, not on to u4 */
        {NULL, "view", NULL, "a5", NULL, "2024-03-01T13:00:00Z", NULL},
    };
    afx_load(f, ev, ARRAY_LEN(ev));
    json_t *r = NULL;
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS,
                             "{\"series\":[{\"event\":\"view\",\"math\":\"unique_users\"}],"
                             "\"dateFrom\":\"2024-03-01\",\"dateTo\":\"2024-03-01\"}",
                             &r),
                     0);
    /* persons: u1; u2 (a2 and u2), u3; u4 (o1 and u4); o1 (a5's event) */
    assert_at(r, "results.0.count", "5");
    json_decref(r);
}

#define PERSONS_SQL                                                                                \
    "SELECT string_agg(CASE person_key WHEN tandem_key('u8') THEN 'u8' WHEN tandem_key('u9') "     \
    "THEN 'u9' WHEN tandem_key('a9') THEN 'a9' END, ',' ORDER BY log_offset) FROM events"

static void test_persons_refresh_incremental(void **state)
{
    struct afx *f = *state;
    static const struct aev b1[] = {
        {NULL, "view", NULL, "a9", NULL, "2024-03-01T10:00:00Z", NULL},
    };
    static const struct aev b2[] = {
        {NULL, "view", "u9", "a9", NULL, "2024-03-01T12:00:00Z", NULL},
    };
    static const struct aev b3[] = {
        /* loaded later, but an earlier link: it wins; and an earlier first event of a9 */
        {NULL, "view", "u8", "a9", NULL, "2024-03-01T09:00:00Z", NULL},
        {NULL, "view", NULL, "a9", NULL, "2024-02-01T09:00:00Z", NULL},
    };
    const char *q = "{\"series\":[{\"event\":\"view\",\"math\":\"dau\"}],\"dateFrom\":"
                    "\"2024-03-01\",\"dateTo\":\"2024-03-01\"}";
    json_t *r = NULL;
    /* the person of each event, in log order, as stored on the events */
    const char *persons = PERSONS_SQL;
    afx_load(f, b1, 1);
    assert_rows(f->c, persons, "[[\"a9\"]]"); /* the loader's: the id's own key */
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS, q, &r), 0);
    assert_at(r, "results.0.count", "1");
    json_decref(r);
    afx_load(f, b2, 1);
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS, q, &r), 0);
    assert_at(r, "results.0.count", "1"); /* a9 is u9 now */
    json_decref(r);
    assert_rows(f->c, "SELECT did, person FROM _person_links", "[[\"a9\",\"u9\"]]");
    assert_rows(f->c, persons, "[[\"u9,u9\"]]"); /* the earlier event of a9 too */
    afx_load(f, b3, 2);
    assert_int_equal(afx_run(f, ANALYTICS_TRENDS, q, &r), 0);
    assert_at(r, "results.0.count", "2"); /* a9's view and u8 are u8; u9 */
    json_decref(r);
    assert_rows(f->c, "SELECT did, person FROM _person_links", "[[\"a9\",\"u8\"]]");
    assert_rows(f->c, persons, "[[\"u8,u9,u8,u8\"]]");
    assert_rows(f->c,
                "SELECT count(*) FROM _person_links WHERE did_key <> tandem_key(did) OR "
                "person_key <> tandem_key(person)",
                "[[0]]");
    assert_rows(f->c, "SELECT did, \"timestamp\" FROM _did_first ORDER BY did",
                "[[\"a9\",\"2024-02-01T09:00:00.000Z\"],[\"u8\",\"2024-03-01T09:00:00.000Z\"],"
                "[\"u9\",\"2024-03-01T12:00:00.000Z\"]]");
    uint64_t next = 0;
    assert_int_equal(wh_persons_refresh(f->c, &next), 0);
    assert_int_equal(next, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_funnel_ordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_funnel_strict_exclusion_same_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_funnel_breakdown_and_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_many_periods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_same_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stickiness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persons_refresh_incremental, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
