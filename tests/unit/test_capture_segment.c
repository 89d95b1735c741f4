#define _GNU_SOURCE
/* test_capture_segment.c - Segment HTTP Tracking API bodies through capture_parse(). */
#include "capture_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static int64_t iso(const char *s)
{
    int64_t us;
    assert_int_equal(time_parse(s, strlen(s), &us), 0);
    return us;
}

static void test_single_track(void **state)
{
    (void)state;
    struct capture_input in = t_input(
        CAPTURE_API_TRACK,
        "{\"userId\":\"019mr8mf4r\",\"event\":\"Item Purchased\",\"properties\":{\"name\":"
        "\"Leap\",\"revenue\":14.99},\"context\":{\"ip\":\"24.5.68.47\"},\"messageId\":\"m-1\","
        "\"timestamp\":\"2012-12-02T00:30:12.984Z\",\"writeKey\":\"WK\",\"integrations\":{}}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 1);
    assert_int_equal(r.n_write_keys, 1);
    assert_string_equal(r.write_keys[0], "WK");
    assert_int_equal(r.events[0].type, CAPTURE_TRACK);
    assert_string_equal(r.events[0].message_id, "m-1");
    assert_string_equal(r.events[0].user_id, "019mr8mf4r");
    assert_null(r.events[0].anonymous_id);
    json_t *j = t_record(&r, 0);
    assert_int_equal(json_object_size(j), 15); /* exactly the warehouse columns */
    assert_string_equal(t_str(j, "messageId"), "m-1");
    assert_string_equal(t_str(j, "type"), "track");
    assert_string_equal(t_str(j, "event"), "Item Purchased");
    assert_string_equal(t_str(j, "userId"), "019mr8mf4r");
    t_assert_null_field(j, "anonymousId");
    t_assert_null_field(j, "groupId");
    t_assert_null_field(j, "previousId");
    t_assert_null_field(j, "sentAt");
    assert_string_equal(t_str(j, "timestamp"), "2012-12-02T00:30:12.984Z");
    assert_string_equal(t_str(j, "originalTimestamp"), "2012-12-02T00:30:12.984Z");
    assert_string_equal(t_str(j, "receivedAt"), "2026-05-01T12:00:10.000Z");
    json_t *want = json_pack("{s:s,s:f}", "name", "Leap", "revenue", 14.99);
    assert_true(json_equal(json_object_get(j, "properties"), want));
    json_decref(want);
    assert_string_equal(t_str(json_object_get(j, "context"), "ip"), "24.5.68.47");
    assert_int_equal(json_object_size(json_object_get(j, "traits")), 0);
    assert_string_equal(t_str(j, "source"), "WK");
    assert_null(json_object_get(j, "integrations"));
    json_decref(j);
    capture_result_release(&r);
}

static void test_single_types(void **state)
{
    (void)state;
    struct {
        enum capture_api api;
        const char *body;
        const char *type;
        const char *field, *value;
    } cases[] = {
        {CAPTURE_API_IDENTIFY, "{\"userId\":\"u\",\"traits\":{\"email\":\"a@b.c\"}}", "identify",
         "userId", "u"},
        {CAPTURE_API_PAGE, "{\"anonymousId\":\"a1\",\"name\":\"Docs\"}", "page", "anonymousId",
         "a1"},
        {CAPTURE_API_SCREEN, "{\"userId\":\"u\",\"name\":\"Home\"}", "screen", "userId", "u"},
        {CAPTURE_API_GROUP, "{\"userId\":\"u\",\"groupId\":\"g1\",\"traits\":{\"n\":1}}", "group",
         "groupId", "g1"},
        {CAPTURE_API_ALIAS, "{\"userId\":\"u\",\"previousId\":\"old\"}", "alias", "previousId",
         "old"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct capture_input in = t_input(cases[i].api, cases[i].body);
        in.auth_key = "basic-key";
        struct capture_result r;
        t_parse(&in, &r, 0);
        assert_int_equal(r.n_events, 1);
        json_t *j = t_record(&r, 0);
        assert_string_equal(t_str(j, "type"), cases[i].type);
        assert_string_equal(t_str(j, cases[i].field), cases[i].value);
        assert_string_equal(t_str(j, "source"), "basic-key");
        t_assert_null_field(j, "event");
        json_decref(j);
        capture_result_release(&r);
    }
}

static void test_identify_traits_and_page_name(void **state)
{
    (void)state;
    struct capture_input in =
        t_input(CAPTURE_API_BATCH,
                "{\"writeKey\":\"k\",\"batch\":[{\"type\":\"identify\",\"userId\":\"u\",\"traits\":"
                "{\"email\":\"x@y.z\"}},{\"type\":\"page\",\"userId\":\"u\",\"name\":\"Pricing\","
                "\"category\":\"Docs\"},{\"type\":\"screen\",\"userId\":\"u\",\"name\":\"S\","
                "\"properties\":{\"name\":\"kept\"}}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 3);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(json_object_get(j, "traits"), "email"), "x@y.z");
    json_decref(j);
    j = t_record(&r, 1);
    assert_string_equal(t_str(json_object_get(j, "properties"), "name"), "Pricing");
    assert_string_equal(t_str(json_object_get(j, "properties"), "category"), "Docs");
    json_decref(j);
    j = t_record(&r, 2);
    assert_string_equal(t_str(json_object_get(j, "properties"), "name"), "kept");
    json_decref(j);
    capture_result_release(&r);
}

static void test_required_fields(void **state)
{
    (void)state;
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\"}", "k", 400, "event: required for track");
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"\"}", "k", 400,
                   "event: required for track");
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":5}", "k", 400,
                   "event: must be a string");
    t_expect_error(CAPTURE_API_TRACK, "{\"event\":\"e\"}", "k", 400,
                   "userId: required (or anonymousId)");
    t_expect_error(CAPTURE_API_IDENTIFY, "{\"userId\":\"\",\"anonymousId\":null}", "k", 400,
                   "userId: required (or anonymousId)");
    t_expect_error(CAPTURE_API_GROUP, "{\"userId\":\"u\"}", "k", 400,
                   "groupId: required for group");
    t_expect_error(CAPTURE_API_ALIAS, "{\"userId\":\"u\"}", "k", 400,
                   "previousId: required for alias");
    t_expect_error(CAPTURE_API_IDENTIFY, "{\"userId\":[1]}", "k", 400, "userId: must be a string");
    t_expect_error(CAPTURE_API_IDENTIFY, "{\"userId\":\"u\",\"traits\":[]}", "k", 400,
                   "traits: must be an object");
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"context\":\"x\"}", "k",
                   400, "context: must be an object");
    t_expect_error(CAPTURE_API_PAGE, "{\"userId\":\"u\",\"timestamp\":\"yesterday\"}", "k", 400,
                   "timestamp: must be an ISO 8601 date");
    t_expect_error(CAPTURE_API_PAGE, "{\"userId\":\"u\",\"sentAt\":12}", "k", 400,
                   "sentAt: must be an ISO 8601 date");
    t_expect_error(CAPTURE_API_PAGE, "{\"userId\":\"u\",\"writeKey\":7}", "k", 400,
                   "writeKey: must be a string");
    t_expect_error(CAPTURE_API_PAGE, "[{\"userId\":\"u\"}]", "k", 400,
                   "body: must be a JSON object");
}

static void test_batch_item_errors(void **state)
{
    (void)state;
    const char *ok = "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\"}";
    char body[1024];
    snprintf(body, sizeof(body), "{\"batch\":[%s,%s,%s,{\"type\":\"track\",\"userId\":\"u\"}]}", ok,
             ok, ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[3].event: required for track");
    snprintf(body, sizeof(body), "{\"batch\":[%s,{\"userId\":\"u\",\"event\":\"e\"}]}", ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[1].type: required");
    snprintf(body, sizeof(body), "{\"batch\":[{\"type\":\"click\",\"userId\":\"u\"}]}");
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[0].type: unknown type \"click\"");
    snprintf(body, sizeof(body), "{\"batch\":[{\"type\":7,\"userId\":\"u\"}]}");
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[0].type: must be a string");
    snprintf(body, sizeof(body), "{\"batch\":[%s,%s,\"track\"]}", ok, ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[2]: must be an object");
    snprintf(body, sizeof(body), "{\"batch\":[null]}");
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[0]: must be an object");
    snprintf(body, sizeof(body), "{\"batch\":[%s,{\"type\":\"group\",\"userId\":\"u\"}]}", ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[1].groupId: required for group");
    snprintf(body, sizeof(body), "{\"batch\":[{\"type\":\"alias\",\"anonymousId\":\"a\"}]}");
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[0].previousId: required for alias");
    snprintf(body, sizeof(body), "{\"batch\":[%s,{\"type\":\"page\"}]}", ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "batch[1].userId: required (or anonymousId)");
    t_expect_error(CAPTURE_API_BATCH, "{\"batch\":[]}", "k", 400, "batch: empty");
    t_expect_error(CAPTURE_API_BATCH, "{}", "k", 400, "batch: required");
    t_expect_error(CAPTURE_API_BATCH, "{\"batch\":{}}", "k", 400, "batch: must be an array");
    t_expect_error(CAPTURE_API_BATCH, "[]", "k", 400, "body: must be a JSON object");
    snprintf(body, sizeof(body), "{\"batch\":[%s],\"context\":[]}", ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "context: must be an object");
    snprintf(body, sizeof(body), "{\"batch\":[%s],\"sentAt\":\"soon\"}", ok);
    t_expect_error(CAPTURE_API_BATCH, body, "k", 400, "sentAt: must be an ISO 8601 date");
}

static void test_batch_mixed_and_context_merge(void **state)
{
    (void)state;
    struct capture_input in = t_input(
        CAPTURE_API_BATCH,
        "{\"batch\":[{\"type\":\"identify\",\"userId\":\"019mr8mf4r\",\"traits\":{\"age\":26}},"
        "{\"type\":\"track\",\"userId\":\"019mr8mf4r\",\"event\":\"Song Played\",\"context\":"
        "{\"device\":{\"type\":\"tablet\"},\"locale\":\"fr\"}},"
        "{\"type\":\"page\",\"anonymousId\":\"a\"},{\"type\":\"screen\",\"anonymousId\":\"a\"},"
        "{\"type\":\"group\",\"userId\":42,\"groupId\":7},"
        "{\"type\":\"alias\",\"userId\":\"n\",\"previousId\":\"o\"}],"
        "\"writeKey\":\"WK\",\"context\":{\"device\":{\"type\":\"phone\"},\"app\":{\"name\":"
        "\"x\"}},\"integrations\":{\"All\":false}}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 6);
    const char *types[] = {"identify", "track", "page", "screen", "group", "alias"};
    for (size_t i = 0; i < 6; i++) {
        json_t *j = t_record(&r, i);
        assert_string_equal(t_str(j, "type"), types[i]);
        assert_int_equal((int)r.events[i].type, (int)i == 0 ? CAPTURE_IDENTIFY
                                                : i == 1    ? CAPTURE_TRACK
                                                : i == 2    ? CAPTURE_PAGE
                                                : i == 3    ? CAPTURE_SCREEN
                                                : i == 4    ? CAPTURE_GROUP
                                                            : CAPTURE_ALIAS);
        json_t *ctx = json_object_get(j, "context");
        assert_string_equal(t_str(json_object_get(ctx, "app"), "name"), "x");
        /* the item's own context wins over the batch's */
        assert_string_equal(t_str(json_object_get(ctx, "device"), "type"),
                            i == 1 ? "tablet" : "phone");
        if (i == 4) { /* numeric ids become strings */
            assert_string_equal(t_str(j, "userId"), "42");
            assert_string_equal(t_str(j, "groupId"), "7");
        }
        json_decref(j);
    }
    assert_int_equal(r.n_write_keys, 1);
    capture_result_release(&r);
}

static void test_write_keys(void **state)
{
    (void)state;
    const char *body =
        "{\"writeKey\":\"env\",\"batch\":["
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"b\",\"writeKey\":\"i1\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"c\",\"writeKey\":\"i2\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"d\",\"writeKey\":\"i1\"}]}";
    struct capture_input in = t_input(CAPTURE_API_BATCH, body);
    in.auth_key = "basic";
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 4);
    assert_string_equal(r.events[0].write_key, "env"); /* body beats Basic auth */
    assert_string_equal(r.events[1].write_key, "i1");  /* item beats envelope */
    assert_string_equal(r.events[2].write_key, "i2");
    assert_string_equal(r.events[3].write_key, "i1");
    assert_int_equal(r.n_write_keys, 3);
    assert_string_equal(r.write_keys[0], "env");
    assert_string_equal(r.write_keys[1], "i1");
    assert_string_equal(r.write_keys[2], "i2");
    json_t *j = t_record(&r, 2);
    assert_string_equal(t_str(j, "source"), "i2");
    json_decref(j);
    capture_result_release(&r);

    /* Basic auth alone; the result keeps its own copy of the key */
    char basic[] = "basic";
    in = t_input(CAPTURE_API_BATCH, "{\"batch\":[{\"type\":\"track\",\"userId\":\"u\","
                                    "\"event\":\"a\"}]}");
    in.auth_key = basic;
    t_parse(&in, &r, 0);
    memset(basic, 'X', 5);
    assert_string_equal(r.events[0].write_key, "basic");
    assert_string_equal(r.write_keys[0], "basic");
    capture_result_release(&r);

    /* no key anywhere: 401 naming the item */
    t_expect_error(CAPTURE_API_BATCH,
                   "{\"batch\":[{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\","
                   "\"writeKey\":\"k\"},{\"type\":\"track\",\"userId\":\"u\",\"event\":\"b\"}]}",
                   NULL, 401,
                   "batch[1].writeKey: missing (send it by HTTP Basic auth or in the body)");
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"a\"}", "", 401,
                   "writeKey: missing (send it by HTTP Basic auth or in the body)");
}

static char *make_batch(size_t n_items, size_t pad)
{
    size_t cap = 256 + n_items * (96 + pad);
    char *body = malloc(cap);
    char *padding = malloc(pad + 1);
    memset(padding, 'x', pad);
    padding[pad] = '\0';
    size_t len = (size_t)snprintf(body, cap, "{\"writeKey\":\"k\",\"batch\":[");
    for (size_t i = 0; i < n_items; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
                                "\"properties\":{\"p\":\"%s\"}}",
                                i ? "," : "", padding);
    snprintf(body + len, cap - len, "]}");
    free(padding);
    return body;
}

static void test_limits(void **state)
{
    (void)state;
    struct capture_result r;
    /* 2,500 events pass, 2,501 do not */
    char *body = make_batch(2500, 0);
    struct capture_input in = t_input(CAPTURE_API_BATCH, body);
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 2500);
    capture_result_release(&r);
    free(body);
    body = make_batch(2501, 0);
    t_expect_error(CAPTURE_API_BATCH, body, NULL, 400, "batch: more than 2500 events");
    free(body);

    /* one message just under 32 KB passes; over it fails naming the item */
    body = make_batch(2, 31 * 1024);
    in = t_input(CAPTURE_API_BATCH, body);
    t_parse(&in, &r, 0);
    assert_true(r.events[1].record_len <= 32 * 1024);
    assert_true(r.events[1].record_len > 31 * 1024);
    capture_result_release(&r);
    free(body);
    body = make_batch(2, 33 * 1024);
    t_expect_error(CAPTURE_API_BATCH, body, NULL, 400, "batch[0]: larger than 32768 bytes");
    free(body);
    char *big = malloc(40 * 1024);
    int n = snprintf(big, 40 * 1024, "{\"userId\":\"u\",\"event\":\"e\",\"properties\":{\"p\":\"");
    memset(big + n, 'y', 33 * 1024);
    strcpy(big + n + 33 * 1024, "\"}}");
    t_expect_error(CAPTURE_API_TRACK, big, "k", 400, "message: larger than 32768 bytes");
    free(big);

    /* the whole body: 500 KB */
    body = make_batch(20, 26 * 1024); /* ~520 KB */
    assert_true(strlen(body) > 500 * 1024);
    t_expect_error(CAPTURE_API_BATCH, body, NULL, 400, "body: larger than 512000 bytes");
    free(body);

    /* configured limits */
    struct capture_limits lim = {
        .max_message = 300, .max_body = 4096, .max_events = 3, .max_inflate = 8192};
    body = make_batch(4, 0);
    in = t_input(CAPTURE_API_BATCH, body);
    in.limits = &lim;
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "batch: more than 3 events");
    capture_result_release(&r);
    free(body);
    body = make_batch(1, 200);
    in = t_input(CAPTURE_API_BATCH, body);
    in.limits = &lim;
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "batch[0]: larger than 300 bytes");
    capture_result_release(&r);
    free(body);
}

static void test_context_amplification_capped(void **state)
{
    (void)state;
    /* a batch context copied into 2,500 items would be ~75 MB of records: refused */
    size_t cap = 600 * 1024;
    char *body = malloc(cap);
    size_t len = (size_t)snprintf(body, cap, "{\"writeKey\":\"k\",\"context\":{\"x\":\"");
    memset(body + len, 'z', 30 * 1024);
    len += 30 * 1024;
    len += (size_t)snprintf(body + len, cap - len, "\"},\"batch\":[");
    for (size_t i = 0; i < 2500; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"type\":\"page\",\"userId\":\"u\"}",
                                i ? "," : "");
    snprintf(body + len, cap - len, "]}");
    struct capture_input in = t_input(CAPTURE_API_BATCH, body);
    struct capture_result r;
    t_parse(&in, &r, 400);
    assert_non_null(strstr(r.message, "batch: events larger than"));
    capture_result_release(&r);
    free(body);
}

static void test_message_ids(void **state)
{
    (void)state;
    char *body = make_batch(50, 0);
    struct capture_input in = t_input(CAPTURE_API_BATCH, body);
    struct capture_result r;
    t_parse(&in, &r, 0);
    for (size_t i = 0; i < r.n_events; i++) {
        assert_int_equal(r.events[i].message_id_len, 36);
        assert_int_equal(strlen(r.events[i].message_id), 36);
        json_t *j = t_record(&r, i);
        assert_string_equal(t_str(j, "messageId"), r.events[i].message_id);
        json_decref(j);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(r.events[i].message_id, r.events[k].message_id);
    }
    /* another request gets other ids */
    struct capture_result r2;
    t_parse(&in, &r2, 0);
    for (size_t i = 0; i < r.n_events; i++)
        assert_string_not_equal(r.events[i].message_id, r2.events[i].message_id);
    capture_result_release(&r2);
    capture_result_release(&r);
    free(body);

    /* an empty messageId is assigned, a given one kept */
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"\"}");
    in.auth_key = "k";
    t_parse(&in, &r, 0);
    assert_int_equal(r.events[0].message_id_len, 36);
    capture_result_release(&r);

    char long_id[200];
    memset(long_id, 'a', 101);
    long_id[101] = '\0';
    char b[400];
    snprintf(b, sizeof(b), "{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"%s\"}", long_id);
    t_expect_error(CAPTURE_API_TRACK, b, "k", 400, "messageId: longer than 100 characters");
    t_expect_error(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"messageId\":3}", "k",
                   400, "messageId: must be a string");
}

static void test_skew_correction(void **state)
{
    (void)state;
    /* client clock 1 h behind: event at 10:59:50 client, sent 10:59:58 client, received
     * 12:00:10 server -> timestamp = 12:00:10 - 8 s = 12:00:02 */
    struct capture_input in = t_input(
        CAPTURE_API_BATCH,
        "{\"writeKey\":\"k\",\"sentAt\":\"2026-05-01T10:59:58.000Z\",\"batch\":["
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
        "\"timestamp\":\"2026-05-01T10:59:50.000Z\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
        "\"timestamp\":\"2026-05-01T10:59:50.000Z\",\"sentAt\":\"2026-05-01T10:59:51.500Z\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"e\","
        "\"originalTimestamp\":\"2026-05-01T10:59:57+00:00\","
        "\"timestamp\":\"2000-01-01T00:00:00Z\"}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:02.000Z");
    assert_string_equal(t_str(j, "originalTimestamp"), "2026-05-01T10:59:50.000Z");
    assert_string_equal(t_str(j, "sentAt"), "2026-05-01T10:59:58.000Z");
    assert_string_equal(t_str(j, "receivedAt"), "2026-05-01T12:00:10.000Z");
    assert_true(r.events[0].timestamp_us == iso("2026-05-01T12:00:02Z"));
    assert_true(r.events[0].received_us == T_RECV);
    json_decref(j);
    /* the message's own sentAt beats the envelope's: 12:00:10 - 1.5 s */
    j = t_record(&r, 1);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:08.500Z");
    assert_string_equal(t_str(j, "sentAt"), "2026-05-01T10:59:51.500Z");
    json_decref(j);
    /* no client timestamp: the server's time */
    j = t_record(&r, 2);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:10.000Z");
    t_assert_null_field(j, "originalTimestamp");
    json_decref(j);
    /* originalTimestamp beats timestamp as the client time */
    j = t_record(&r, 3);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:09.000Z");
    assert_string_equal(t_str(j, "originalTimestamp"), "2026-05-01T10:59:57.000Z");
    json_decref(j);
    capture_result_release(&r);

    /* no sentAt: the client timestamp as is (historical import) */
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":"
                                    "\"2012-12-02T00:30:12.984Z\"}");
    in.auth_key = "k";
    t_parse(&in, &r, 0);
    j = t_record(&r, 0);
    assert_string_equal(t_str(j, "timestamp"), "2012-12-02T00:30:12.984Z");
    t_assert_null_field(j, "sentAt");
    json_decref(j);
    capture_result_release(&r);

    /* more than 23 h in the future: clamped to receivedAt */
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":"
                                    "\"2026-05-03T12:00:00Z\"}");
    in.auth_key = "k";
    t_parse(&in, &r, 0);
    assert_true(r.events[0].timestamp_us == T_RECV);
    capture_result_release(&r);
    /* 22 h in the future is kept */
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":"
                                    "\"2026-05-02T10:00:10Z\"}");
    in.auth_key = "k";
    t_parse(&in, &r, 0);
    assert_true(r.events[0].timestamp_us == T_RECV + 22LL * 3600 * 1000000);
    capture_result_release(&r);
    /* a skew that would leave year 0000 is clamped to the first representable instant */
    in =
        t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":"
                                   "\"0001-01-01T00:00:00Z\",\"sentAt\":\"9999-01-01T00:00:00Z\"}");
    in.auth_key = "k";
    t_parse(&in, &r, 0);
    j = t_record(&r, 0);
    assert_string_equal(t_str(j, "timestamp"), "0000-01-01T00:00:00.000Z");
    json_decref(j);
    capture_result_release(&r);
}

static void test_sent_at_from_query(void **state)
{
    (void)state;
    struct capture_input in =
        t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\",\"timestamp\":"
                                   "\"2026-05-01T11:00:00Z\"}");
    in.auth_key = "k";
    in.sent_at_us = iso("2026-05-01T11:00:05Z");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_true(r.events[0].timestamp_us == T_RECV - 5000000);
    capture_result_release(&r);
}

static void test_gzip_bodies(void **state)
{
    (void)state;
    const char *plain = "{\"writeKey\":\"k\",\"batch\":[{\"type\":\"track\",\"userId\":\"u\","
                        "\"event\":\"zipped\"}]}";
    size_t gz_len;
    unsigned char *gz = t_gzip(plain, strlen(plain), &gz_len);
    struct capture_result r;

    /* by header */
    struct capture_input in = t_input(CAPTURE_API_BATCH, "");
    in.body = gz;
    in.body_len = gz_len;
    in.content_encoding = " GZIP ";
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 1);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "event"), "zipped");
    json_decref(j);
    capture_result_release(&r);

    /* by magic bytes, no header */
    in.content_encoding = NULL;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 1);
    capture_result_release(&r);

    /* header says gzip, body is not */
    in = t_input(CAPTURE_API_BATCH, plain);
    in.content_encoding = "gzip";
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "body: invalid gzip data");
    capture_result_release(&r);

    /* truncated gzip */
    in.body = gz;
    in.body_len = gz_len - 6;
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "body: invalid gzip data");
    capture_result_release(&r);

    /* an encoding we do not decode */
    in = t_input(CAPTURE_API_BATCH, plain);
    in.content_encoding = "br";
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "Content-Encoding: unsupported \"br\"");
    capture_result_release(&r);
    in.content_encoding = "identity";
    t_parse(&in, &r, 0);
    capture_result_release(&r);
    free(gz);
}

static void test_gzip_bomb(void **state)
{
    (void)state;
    /* 64 MB of zeros compresses to ~64 KB; inflation must stop at the cap */
    size_t n = 64u << 20;
    char *zeros = calloc(1, n);
    size_t gz_len;
    unsigned char *gz = t_gzip(zeros, n, &gz_len);
    free(zeros);
    assert_true(gz_len < 200 * 1024);
    struct capture_input in = t_input(CAPTURE_API_BATCH, "");
    in.body = gz;
    in.body_len = gz_len;
    struct capture_result r;
    t_parse(&in, &r, 413);
    assert_string_equal(r.message, "body: inflates to more than 577536 bytes");
    capture_result_release(&r);

    /* capture_gunzip itself: exact cap, and one byte over */
    const char *text = "hello hello hello hello";
    unsigned char *g = t_gzip(text, strlen(text), &gz_len);
    struct buf out;
    buf_init(&out);
    assert_int_equal(capture_gunzip(g, gz_len, strlen(text), &out), 0);
    assert_int_equal(out.len, strlen(text));
    assert_memory_equal(out.ptr, text, out.len);
    buf_reset(&out);
    assert_int_equal(capture_gunzip(g, gz_len, strlen(text) - 1, &out), ERR_LIMIT);
    /* two concatenated members inflate to both texts */
    unsigned char *two = malloc(gz_len * 2);
    memcpy(two, g, gz_len);
    memcpy(two + gz_len, g, gz_len);
    buf_reset(&out);
    assert_int_equal(capture_gunzip(two, gz_len * 2, 1000, &out), 0);
    assert_int_equal(out.len, 2 * strlen(text));
    /* trailing garbage after a member */
    memcpy(two + gz_len, "garbage", 7);
    buf_reset(&out);
    assert_int_equal(capture_gunzip(two, gz_len + 7, 1000, &out), ERR_INVALID);
    buf_release(&out);
    free(two);
    free(g);
    free(gz);
}

static void test_malformed_bodies(void **state)
{
    (void)state;
    struct capture_input in = t_input(CAPTURE_API_BATCH, "{\"batch\":[");
    struct capture_result r;
    t_parse(&in, &r, 400);
    assert_true(strncmp(r.message, "body: invalid JSON: ", 20) == 0);
    assert_non_null(strstr(r.message, "line 1"));
    capture_result_release(&r);
    t_expect_error(CAPTURE_API_TRACK, "", "k", 400, "body: empty");
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"u\",\"event\":\"e\"} trailing");
    t_parse(&in, &r, 400);
    assert_true(strncmp(r.message, "body: invalid JSON: ", 20) == 0);
    capture_result_release(&r);
    /* NUL inside a string is refused by the parser */
    in = t_input(CAPTURE_API_TRACK, "{\"userId\":\"a\\u0000b\",\"event\":\"e\"}");
    t_parse(&in, &r, 400);
    capture_result_release(&r);
    /* a bare scalar is not a body */
    in = t_input(CAPTURE_API_TRACK, "\"just a string\"");
    t_parse(&in, &r, 400);
    assert_true(strncmp(r.message, "body: invalid JSON: ", 20) == 0);
    capture_result_release(&r);
}

static void test_verified_user_and_escaping(void **state)
{
    (void)state;
    struct capture_input in = t_input(
        CAPTURE_API_TRACK, "{\"userId\":\"u\\\"q\\n\\u0001\",\"event\":\"caf\\u00e9 \\\\ ok\","
                           "\"context\":{\"tandem\":{\"verifiedUserId\":\"forged\"}}}");
    in.auth_key = "k";
    struct capture_result r;
    t_parse(&in, &r, 0);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "userId"), "u\"q\n\001");
    assert_string_equal(t_str(j, "event"), "caf\xc3\xa9 \\ ok");
    /* a client cannot claim to be verified */
    assert_null(json_object_get(json_object_get(j, "context"), "tandem"));
    json_decref(j);
    capture_result_release(&r);

    in.verified_user_id = "usr123";
    t_parse(&in, &r, 0);
    j = t_record(&r, 0);
    json_t *t = json_object_get(json_object_get(j, "context"), "tandem");
    assert_string_equal(t_str(t, "verifiedUserId"), "usr123");
    json_decref(j);
    capture_result_release(&r);

    /* a batch without contexts gets one per item */
    in = t_input(CAPTURE_API_BATCH,
                 "{\"writeKey\":\"k\",\"batch\":[{\"type\":\"page\",\"userId\":\"u\"},"
                 "{\"type\":\"page\",\"userId\":\"u\"}]}");
    in.verified_user_id = "usr9";
    t_parse(&in, &r, 0);
    for (size_t i = 0; i < 2; i++) {
        j = t_record(&r, i);
        t = json_object_get(json_object_get(j, "context"), "tandem");
        assert_string_equal(t_str(t, "verifiedUserId"), "usr9");
        json_decref(j);
    }
    capture_result_release(&r);
}

static void test_client_ip(void **state)
{
    (void)state;
    struct capture_input in = t_input(
        CAPTURE_API_BATCH,
        "{\"writeKey\":\"k\",\"context\":{\"library\":{\"name\":\"analytics.js\"}},\"batch\":["
        "{\"type\":\"page\",\"userId\":\"u\"},"
        "{\"type\":\"page\",\"userId\":\"u\",\"context\":{\"ip\":\"9.9.9.9\"}},"
        "{\"type\":\"page\",\"userId\":\"u\",\"context\":{\"library\":{\"name\":"
        "\"@segment/analytics-node\"}}},"
        "{\"type\":\"page\",\"userId\":\"u\",\"context\":{\"library\":{\"name\":"
        "\"analytics-python\"},\"direct\":true}}]}");
    in.client_ip = "203.0.113.5";
    struct capture_result r;
    t_parse(&in, &r, 0);
    const char *want[] = {"203.0.113.5", "9.9.9.9", NULL, "203.0.113.5"};
    for (size_t i = 0; i < 4; i++) {
        json_t *j = t_record(&r, i);
        const char *ip = t_str(json_object_get(j, "context"), "ip");
        if (want[i])
            assert_string_equal(ip, want[i]);
        else
            assert_null(ip); /* a server library: its address is not the user's */
        json_decref(j);
    }
    capture_result_release(&r);
}

static void test_time_format_matches_core(void **state)
{
    (void)state;
    /* the record writer formats times itself; it must agree with core's formatter */
    struct capture_input in = t_input(CAPTURE_API_PAGE, "{\"userId\":\"u\"}");
    in.auth_key = "k";
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* anywhere in 0000..9999, plus the edges of days and leap years */
        int64_t us = -62167219200LL * 1000000 + (int64_t)(x % 315537897600000000ull);
        if (i < 4)
            us = (int64_t[]){0, -1, 951782400LL * 1000000 - 1, 253402300799999999LL}[i];
        in.received_us = us;
        struct capture_result r;
        t_parse(&in, &r, 0);
        json_t *j = t_record(&r, 0);
        char want[TIME_PB_LEN];
        time_format_iso(us, want);
        assert_string_equal(t_str(j, "receivedAt"), want);
        assert_string_equal(t_str(j, "timestamp"), want);
        json_decref(j);
        capture_result_release(&r);
    }
}

static int n_resolved;

static int resolve(void *arg, const char *key, char *name_out, size_t cap)
{
    (void)arg;
    n_resolved++;
    if (strcmp(key, "secret-key-1") == 0) {
        snprintf(name_out, cap, "web");
        return 0;
    }
    if (strcmp(key, "secret-key-2") == 0) {
        snprintf(name_out, cap, "backend");
        return 0;
    }
    return ERR_NOTFOUND;
}

static void test_write_keys_resolve_to_source_names(void **state)
{
    (void)state;
    struct capture_input in = t_input(
        CAPTURE_API_BATCH,
        "{\"writeKey\":\"secret-key-1\",\"batch\":["
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"a\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"b\"},"
        "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"c\",\"writeKey\":\"secret-key-2\"}]}");
    in.resolve_key = resolve;
    struct capture_result r;
    n_resolved = 0;
    t_parse(&in, &r, 0);
    assert_int_equal(n_resolved, 2); /* once per distinct key */
    assert_string_equal(r.events[0].source, "web");
    assert_string_equal(r.events[2].source, "backend");
    for (size_t i = 0; i < r.n_events; i++) {
        json_t *j = t_record(&r, i);
        assert_string_equal(t_str(j, "source"), i == 2 ? "backend" : "web");
        assert_null(json_object_get(j, "writeKey"));
        json_decref(j);
        /* the secret never appears in what goes to the log */
        assert_null(memmem(r.events[i].record, r.events[i].record_len, "secret-key", 10));
    }
    capture_result_release(&r);

    in = t_input(CAPTURE_API_TRACK, "{\"writeKey\":\"revoked\",\"userId\":\"u\",\"event\":\"a\"}");
    in.resolve_key = resolve;
    t_parse(&in, &r, 401);
    assert_int_equal(r.n_events, 0);
    assert_non_null(strstr(r.message, "writeKey"));
    capture_result_release(&r);
}

static int resolve_broken(void *arg, const char *key, char *name_out, size_t cap)
{
    (void)arg;
    (void)key;
    (void)name_out;
    (void)cap;
    return ERR_BUSY; /* e.g. the store could not be read */
}

static void test_resolver_failure_acknowledges_nothing(void **state)
{
    (void)state;
    const struct {
        enum capture_api api;
        const char *body;
    } cases[] = {
        {CAPTURE_API_TRACK, "{\"writeKey\":\"k\",\"userId\":\"u\",\"event\":\"a\"}"},
        /* PostHog bodies always take the jansson path */
        {CAPTURE_API_POSTHOG, "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"u\"}"},
    };
    for (size_t i = 0; i < 2; i++) {
        struct capture_input in = t_input(cases[i].api, cases[i].body);
        in.resolve_key = resolve_broken;
        struct capture_result r;
        assert_int_equal(capture_parse(&in, &r), ERR_BUSY);
        assert_int_equal(r.n_events, 0);
        capture_result_release(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_track),
        cmocka_unit_test(test_single_types),
        cmocka_unit_test(test_identify_traits_and_page_name),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_batch_item_errors),
        cmocka_unit_test(test_batch_mixed_and_context_merge),
        cmocka_unit_test(test_write_keys),
        cmocka_unit_test(test_write_keys_resolve_to_source_names),
        cmocka_unit_test(test_resolver_failure_acknowledges_nothing),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_context_amplification_capped),
        cmocka_unit_test(test_message_ids),
        cmocka_unit_test(test_skew_correction),
        cmocka_unit_test(test_sent_at_from_query),
        cmocka_unit_test(test_gzip_bodies),
        cmocka_unit_test(test_gzip_bomb),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_verified_user_and_escaping),
        cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_time_format_matches_core),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
