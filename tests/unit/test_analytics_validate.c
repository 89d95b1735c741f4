/* Validation of insight queries: every refused member is named by its path with the right
 * code; limits (series, steps, exclusions, buckets, dates); unknown time zones. The warehouse
 * is real (the time zone check asks it) but empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "analytics_fixture.h"

static int setup(void **state)
{
    *state = afx_open("anva");
    return 0;
}

static int teardown(void **state)
{
    afx_close(*state);
    return 0;
}

/* Runs json as kind; asserts it is refused with code at path. */
static void refused(struct afx *f, enum analytics_kind kind, const char *json, const char *path,
                    const char *code)
{
    json_t *r = NULL;
    int rc = afx_run(f, kind, json, &r);
    if (rc != ERR_INVALID || !json_object_get(r, path)) {
        char *t = r ? json_dumps(r, JSON_COMPACT) : NULL;
        fprintf(stderr, "query %s: rc %d, got %s; want %s\n", json, rc, t ? t : "-", path);
        free(t);
    }
    assert_int_equal(rc, ERR_INVALID);
    json_t *e = json_object_get(r, path);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    json_decref(r);
}

#define REQ "validation_required"
#define INV "validation_invalid_value"
#define UNK "validation_unknown_field"

static void test_trends_fields(void **state)
{
    struct afx *f = *state;
    enum analytics_kind T = ANALYTICS_TRENDS;
    refused(f, T, "[]", "body", INV);
    refused(f, T, "{}", "series", REQ);
    refused(f, T, "{\"series\":[]}", "series", REQ);
    refused(f, T, "{\"series\":{}}", "series", INV);
    refused(f, T, "{\"series\":[{},{},{},{},{},{},{},{},{},{},{}]}", /* 11 */
            "series", INV);
    refused(f, T, "{\"series\":[{\"math\":\"avg_users\"}]}", "series.0.math", INV);
    refused(f, T, "{\"series\":[{\"math\":3}]}", "series.0.math", INV);
    refused(f, T, "{\"series\":[{\"math\":\"sum\"}]}", "series.0.mathProperty", REQ);
    refused(f, T, "{\"series\":[{\"math\":\"total\",\"mathProperty\":\"properties.a\"}]}",
            "series.0.mathProperty", UNK);
    refused(f, T, "{\"series\":[{\"math\":\"p99\",\"mathProperty\":\"props.a\"}]}",
            "series.0.mathProperty", INV);
    refused(f, T, "{\"series\":[{\"event\":5}]}", "series.0.event", INV);
    refused(f, T, "{\"series\":[{\"event\":\"\"}]}", "series.0.event", INV);
    refused(f, T, "{\"series\":[{\"bogus\":1}]}", "series.0.bogus", UNK);
    refused(f, T, "{\"series\":[{\"name\":1}]}", "series.0.name", INV);
    refused(f, T, "{\"series\":[{}],\"bogus\":1}", "bogus", UNK);
    refused(f, T, "{\"series\":[{}],\"interval\":\"year\"}", "interval", INV);
    refused(f, T, "{\"series\":[{}],\"weekStart\":\"friday\"}", "weekStart", INV);
    refused(f, T, "{\"series\":[{}],\"breakdown\":\"nope\"}", "breakdown", INV);
    refused(f, T, "{\"series\":[{}],\"breakdown\":\"properties.a.b\"}", "breakdown", INV);
    refused(f, T, "{\"series\":[{}],\"breakdown\":\"properties.\"}", "breakdown", INV);
    refused(f, T, "{\"series\":[{}],\"breakdown\":7}", "breakdown", INV);
}

static void test_filters(void **state)
{
    struct afx *f = *state;
    enum analytics_kind T = ANALYTICS_TRENDS;
    refused(f, T, "{\"series\":[{}],\"properties\":{}}", "properties", INV);
    refused(f, T, "{\"series\":[{}],\"properties\":[5]}", "properties.0", INV);
    refused(f, T, "{\"series\":[{}],\"properties\":[{\"value\":1}]}", "properties.0.key", REQ);
    refused(f, T,
            "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"value\":1},"
            "{\"key\":\"event\",\"operator\":\"like\",\"value\":1}]}",
            "properties.1.operator", INV);
    refused(f, T, "{\"series\":[{}],\"properties\":[{\"key\":\"event\"}]}", "properties.0.value",
            REQ);
    refused(f, T,
            "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"operator\":\"gt\","
            "\"value\":\"x\"}]}",
            "properties.0.value", INV);
    refused(f, T,
            "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"operator\":\"is_set\","
            "\"value\":\"x\"}]}",
            "properties.0.value", UNK);
    refused(f, T, "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"value\":[]}]}",
            "properties.0.value", INV);
    refused(f, T, "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"value\":{}}]}",
            "properties.0.value", INV);
    refused(f, T, "{\"series\":[{}],\"properties\":[{\"key\":\"event\",\"value\":1,\"x\":2}]}",
            "properties.0.x", UNK);
    refused(f, T, "{\"series\":[{\"properties\":[{\"key\":\"traits.a.b\",\"value\":1}]}]}",
            "series.0.properties.0.key", INV);
    /* context keys nest; a name may hold "/" and "~" (escaped in the JSON pointer) */
    json_t *r = NULL;
    assert_int_equal(afx_run(f, T,
                             "{\"series\":[{\"properties\":[{\"key\":\"context.a/b.c~d\","
                             "\"operator\":\"is_set\"}]}],\"dateFrom\":\"2024-03-01\","
                             "\"dateTo\":\"2024-03-01\"}",
                             &r),
                     0);
    assert_at(r, "results.0.data", "[0]");
    json_decref(r);
    /* an error message that quotes a long client text cut inside a UTF-8 character is still
     * a 400 naming the member (the message must stay valid UTF-8 for JSON) */
    char q[1200], key[700];
    size_t k = (size_t)snprintf(key, sizeof(key), "ab");
    for (int i = 0; i < 200; i++)
        k += (size_t)snprintf(key + k, sizeof(key) - k, "\xe2\x82\xac"); /* U+20AC */
    snprintf(q, sizeof(q), "{\"series\":[{}],\"breakdown\":\"%s\"}", key);
    refused(f, T, q, "breakdown", INV);
    snprintf(q, sizeof(q), "{\"series\":[{}],\"properties\":[{\"key\":\"%s\",\"value\":1}]}", key);
    refused(f, T, q, "properties.0.key", INV);
    snprintf(q, sizeof(q), "{\"series\":[{}],\"%s\":1}", key);
    refused(f, T, q, key, UNK);
}

static void test_dates_and_zone(void **state)
{
    struct afx *f = *state;
    enum analytics_kind T = ANALYTICS_TRENDS;
    refused(f, T, "{\"series\":[{}],\"timezone\":\"Mars/Olympus\"}", "timezone", INV);
    refused(f, T, "{\"series\":[{}],\"timezone\":5}", "timezone", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"2024-02-30\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"2024-3-1\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"now\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"-0d\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"-10001d\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"-3y\"}", "dateFrom", INV);
    refused(f, T, "{\"series\":[{}],\"dateTo\":\"2024-03-01T25:00\"}", "dateTo", INV);
    refused(f, T, "{\"series\":[{}],\"dateTo\":7}", "dateTo", INV);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"2024-03-02\",\"dateTo\":\"2024-03-01\"}",
            "dateFrom", INV);
    /* 2001 buckets is one too many; 2000 is fine */
    refused(f, T,
            "{\"series\":[{}],\"interval\":\"hour\",\"dateFrom\":\"2024-01-01T00:00\","
            "\"dateTo\":\"2024-03-24T08:00\"}",
            "dateFrom", INV);
    json_t *r = NULL;
    assert_int_equal(afx_run(f, T,
                             "{\"series\":[{}],\"interval\":\"hour\",\"dateFrom\":"
                             "\"2024-01-01T00:00\",\"dateTo\":\"2024-03-24T07:00\"}",
                             &r),
                     0);
    assert_int_equal(
        json_array_size(json_object_get(json_array_get(json_object_get(r, "results"), 0), "data")),
        2000);
    json_decref(r);
    refused(f, T, "{\"series\":[{}],\"dateFrom\":\"2000-01-01\",\"dateTo\":\"2024-01-01\"}",
            "dateFrom", INV);
    /* a range no interval can hold is refused before the zone is read over it (the zone is
     * not even looked up) */
    refused(f, T,
            "{\"series\":[{}],\"interval\":\"month\",\"dateFrom\":\"1900-01-01\","
            "\"dateTo\":\"9999-12-31\",\"timezone\":\"Mars/Olympus\"}",
            "dateFrom", INV);
    /* a zone whose clocks moved by 30 minutes: no hour buckets across it (Lord Howe) */
    refused(f, T,
            "{\"series\":[{}],\"interval\":\"hour\",\"timezone\":\"Australia/Lord_Howe\","
            "\"dateFrom\":\"2024-04-06T12:00\",\"dateTo\":\"2024-04-07T12:00\"}",
            "interval", INV);
    /* the same zone without a change inside the range: 7 buckets at +10:30 */
    assert_int_equal(afx_run(f, T,
                             "{\"series\":[{}],\"interval\":\"hour\",\"timezone\":"
                             "\"Australia/Lord_Howe\",\"dateFrom\":\"2024-04-08T00:00\","
                             "\"dateTo\":\"2024-04-08T06:00\"}",
                             &r),
                     0);
    assert_at(r, "results.0.labels.0", "\"2024-04-08T00:00:00+10:30\"");
    assert_int_equal(json_array_size(json_object_get(
                         json_array_get(json_object_get(r, "results"), 0), "labels")),
                     7);
    json_decref(r);
}

static void test_funnel_fields(void **state)
{
    struct afx *f = *state;
    enum analytics_kind F = ANALYTICS_FUNNEL;
    refused(f, F, "{}", "steps", REQ);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"}]}", "steps", REQ);
    char buf[1024] = "{\"steps\":[";
    for (int i = 0; i < 21; i++)
        strcat(buf, i ? ",{\"event\":\"a\"}" : "{\"event\":\"a\"}");
    strcat(buf, "]}");
    refused(f, F, buf, "steps", INV);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"},{}]}", "steps.2.event", REQ);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\",\"math\":\"total\"}]}",
            "steps.1.math", UNK);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"funnelOrder\":\"any\"}",
            "funnelOrder", INV);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"funnelWindow\":0}",
            "funnelWindow", INV);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"funnelWindowUnit\":\"year\"}",
            "funnelWindowUnit", INV);
    refused(f, F, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"interval\":\"day\"}",
            "interval", UNK);
    refused(f, F,
            "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"exclusions\":[{\"event\":\"x\","
            "\"fromStep\":1,\"toStep\":1}]}",
            "exclusions.0.toStep", INV);
    refused(f, F,
            "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"exclusions\":[{\"event\":\"x\","
            "\"fromStep\":0,\"toStep\":2}]}",
            "exclusions.0.toStep", INV);
    refused(f, F,
            "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"exclusions\":[{\"event\":\"x\","
            "\"toStep\":1}]}",
            "exclusions.0.fromStep", REQ);
    refused(f, F,
            "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"exclusions\":[{\"fromStep\":0,"
            "\"toStep\":1}]}",
            "exclusions.0.event", REQ);
    refused(f, F,
            "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"funnelOrder\":\"unordered\","
            "\"exclusions\":[{\"event\":\"x\",\"fromStep\":0,\"toStep\":1}]}",
            "exclusions", INV);
    strcpy(buf, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"exclusions\":[");
    for (int i = 0; i < 9; i++)
        strcat(buf, i ? ",{\"event\":\"x\",\"fromStep\":0,\"toStep\":1}"
                      : "{\"event\":\"x\",\"fromStep\":0,\"toStep\":1}");
    strcat(buf, "]}");
    refused(f, F, buf, "exclusions", INV);
}

static void test_other_insights(void **state)
{
    struct afx *f = *state;
    enum analytics_kind R = ANALYTICS_RETENTION;
    refused(f, R, "{\"returningEvent\":{\"event\":\"b\"}}", "targetEvent", REQ);
    refused(f, R, "{\"targetEvent\":{\"event\":\"a\"}}", "returningEvent", REQ);
    refused(f, R, "{\"targetEvent\":{},\"returningEvent\":{\"event\":\"b\"}}", "targetEvent.event",
            REQ);
    refused(f, R,
            "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":{\"event\":\"b\"},"
            "\"totalIntervals\":101}",
            "totalIntervals", INV);
    refused(f, R,
            "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":{\"event\":\"b\"},"
            "\"period\":\"hour\"}",
            "period", INV);
    refused(f, R,
            "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":{\"event\":\"b\"},"
            "\"retentionType\":\"sometimes\"}",
            "retentionType", INV);
    refused(f, R,
            "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":{\"event\":\"b\"},"
            "\"dateFrom\":\"2024-01-01\"}",
            "dateFrom", UNK);
    refused(f, R,
            "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":{\"event\":\"b\"},"
            "\"breakdown\":\"event\"}",
            "breakdown", UNK);
    refused(f, ANALYTICS_STICKINESS, "{\"series\":[{\"math\":\"dau\"}]}", "series.0.math", UNK);
    refused(f, ANALYTICS_STICKINESS, "{\"series\":[{}],\"breakdown\":\"event\"}", "breakdown", UNK);
    refused(f, ANALYTICS_LIFECYCLE, "{\"series\":[{},{}]}", "series", INV);
    enum analytics_kind k;
    assert_int_equal(analytics_kind_parse("lifecycle", &k), 0);
    assert_int_equal(k, ANALYTICS_LIFECYCLE);
    assert_int_equal(analytics_kind_parse("paths", &k), ERR_NOTFOUND);
    assert_int_equal(analytics_kind_parse(NULL, &k), ERR_NOTFOUND);
}

static void test_timeout(void **state)
{
    struct afx *f = *state;
    /* a warehouse whose statement timeout is 1 ms, and enough events to take longer */
    wh_conn_close(f->c);
    wh_close(f->wh);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.threads = 1;
    cfg.query_timeout_ms = 1;
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    struct aev ev[2000];
    char users[2000][16];
    for (int i = 0; i < 2000; i++) {
        snprintf(users[i], sizeof(users[i]), "u%d", i);
        ev[i] = (struct aev){NULL, "e", users[i], "a", NULL, "2024-03-01T10:00:00Z", NULL};
    }
    for (int k = 0; k < 20; k++)
        afx_load(f, ev, 2000);
    json_t *r = NULL;
    int rc = afx_run(f, ANALYTICS_LIFECYCLE,
                     "{\"series\":[{}],\"dateFrom\":\"2024-01-01\",\"dateTo\":\"2024-03-31\"}", &r);
    assert_int_equal(rc, ERR_BUSY);
    assert_null(r);
}

static void test_engine_failure(void **state)
{
    struct afx *f = *state;
    /* a warehouse without the events table: the engine's error is ours, not the client's */
    wh_conn_close(f->c);
    wh_close(f->wh);
    wht_unlink(f->path);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    static const char *const qs[] = {
        "{\"series\":[{\"event\":\"e\"}]}",                  /* no persons */
        "{\"series\":[{\"event\":\"e\",\"math\":\"dau\"}]}", /* the refresh fails */
    };
    for (size_t i = 0; i < ARRAY_LEN(qs); i++) {
        json_error_t je;
        json_t *q = json_loads(qs[i], 0, &je);
        struct analytics_out out;
        int rc = analytics_run(f->c, ANALYTICS_TRENDS, q, 0, &out);
        json_decref(q);
        assert_int_equal(rc, ERR_INTERNAL);
        assert_null(out.result);
        assert_null(out.errors);
        assert_non_null(strstr(out.message, "events"));
        analytics_out_release(&out);
    }
}

/* Every insight answers on the empty warehouse, the ones that read the identity tables too
 * (they exist from the schema, not from a first refresh with events). */
static void test_empty_warehouse(void **state)
{
    struct afx *f = *state;
    static const struct {
        enum analytics_kind kind;
        const char *json;
    } qs[] = {
        {ANALYTICS_TRENDS, "{\"series\":[{\"math\":\"dau\"}],\"dateFrom\":\"2024-03-01\","
                           "\"dateTo\":\"2024-03-07\"}"},
        {ANALYTICS_FUNNEL, "{\"steps\":[{\"event\":\"a\"},{\"event\":\"b\"}],\"dateFrom\":"
                           "\"2024-03-01\",\"dateTo\":\"2024-03-07\"}"},
        {ANALYTICS_RETENTION, "{\"targetEvent\":{\"event\":\"a\"},\"returningEvent\":"
                              "{\"event\":\"a\"},\"dateTo\":\"2024-03-07\"}"},
        {ANALYTICS_STICKINESS, "{\"series\":[{}],\"dateFrom\":\"2024-03-01\",\"dateTo\":"
                               "\"2024-03-07\"}"},
        {ANALYTICS_LIFECYCLE, "{\"series\":[{}],\"dateFrom\":\"2024-03-01\",\"dateTo\":"
                              "\"2024-03-07\"}"},
    };
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        json_t *r = NULL;
        int rc = afx_run(f, qs[i].kind, qs[i].json, &r);
        if (rc != 0)
            fprintf(stderr, "%s: rc %d\n", qs[i].json, rc);
        assert_int_equal(rc, 0);
        assert_non_null(json_object_get(r, "results"));
        json_decref(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trends_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dates_and_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_funnel_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_insights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_warehouse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
