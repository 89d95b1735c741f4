/* test_capture_posthog.c - PostHog capture bodies mapped onto the event model. */
#include "capture_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static struct capture_input ph(const char *body)
{
    return t_input(CAPTURE_API_POSTHOG, body);
}

static void test_single_event(void **state)
{
    (void)state;
    struct capture_input in =
        ph("{\"api_key\":\"phc_1\",\"event\":\"clicked\",\"distinct_id\":\"u1\",\"uuid\":"
           "\"0190f0c4-aaaa-7bbb-8ccc-000000000001\",\"timestamp\":\"2026-05-01T12:00:00Z\","
           "\"properties\":{\"$lib\":\"web\",\"$lib_version\":\"1.2.3\",\"$current_url\":"
           "\"https://x.test/y\",\"$pathname\":\"/y\",\"$ip\":\"1.2.3.4\",\"color\":\"red\"}}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 1);
    assert_int_equal(r.events[0].type, CAPTURE_TRACK);
    assert_string_equal(r.events[0].write_key, "phc_1");
    assert_string_equal(r.events[0].message_id, "0190f0c4-aaaa-7bbb-8ccc-000000000001");
    json_t *j = t_record(&r, 0);
    assert_int_equal(json_object_size(j), 15);
    assert_string_equal(t_str(j, "type"), "track");
    assert_string_equal(t_str(j, "event"), "clicked");
    assert_string_equal(t_str(j, "userId"), "u1");
    t_assert_null_field(j, "anonymousId");
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:00.000Z");
    assert_string_equal(t_str(j, "originalTimestamp"), "2026-05-01T12:00:00.000Z");
    assert_string_equal(t_str(j, "source"), "phc_1");
    json_t *ctx = json_object_get(j, "context");
    assert_string_equal(t_str(json_object_get(ctx, "library"), "name"), "web");
    assert_string_equal(t_str(json_object_get(ctx, "library"), "version"), "1.2.3");
    assert_string_equal(t_str(json_object_get(ctx, "page"), "url"), "https://x.test/y");
    assert_string_equal(t_str(json_object_get(ctx, "page"), "path"), "/y");
    assert_string_equal(t_str(ctx, "ip"), "1.2.3.4");
    /* the PostHog properties are kept as they are */
    assert_string_equal(t_str(json_object_get(j, "properties"), "color"), "red");
    assert_string_equal(t_str(json_object_get(j, "properties"), "$lib"), "web");
    json_decref(j);
    capture_result_release(&r);
}

static void test_array_form_token_in_properties(void **state)
{
    (void)state;
    /* posthog-js: an array, token and distinct_id inside properties */
    struct capture_input in =
        ph("[{\"event\":\"$autocapture\",\"properties\":{\"token\":\"phc_js\",\"distinct_id\":"
           "\"d1\"}},{\"event\":\"x\",\"properties\":{\"$token\":\"phc_js\",\"$distinct_id\":"
           "\"d2\"}}]");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 2);
    assert_string_equal(r.events[0].write_key, "phc_js");
    assert_string_equal(r.events[0].user_id, "d1");
    assert_string_equal(r.events[1].write_key, "phc_js");
    assert_string_equal(r.events[1].user_id, "d2");
    assert_int_equal(r.n_write_keys, 1);
    /* no uuid: assigned */
    assert_int_equal(r.events[0].message_id_len, 36);
    assert_string_not_equal(r.events[0].message_id, r.events[1].message_id);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG, "[]", NULL, 400, "batch: empty");
    t_expect_error(CAPTURE_API_POSTHOG, "[{\"event\":\"x\",\"distinct_id\":\"d\"},7]", "k", 400,
                   "batch[1]: must be an object");
}

static void test_batch_forms(void **state)
{
    (void)state;
    struct capture_result r;
    /* {"batch":[...]} with per-event token spellings */
    struct capture_input in =
        ph("{\"batch\":[{\"event\":\"a\",\"distinct_id\":\"u\",\"token\":\"t1\"},"
           "{\"event\":\"b\",\"distinct_id\":\"u\",\"$token\":\"t2\"},"
           "{\"event\":\"c\",\"distinct_id\":\"u\",\"api_key\":\"t3\"}]}");
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 3);
    assert_string_equal(r.events[0].write_key, "t1");
    assert_string_equal(r.events[1].write_key, "t2");
    assert_string_equal(r.events[2].write_key, "t3");
    assert_int_equal(r.n_write_keys, 3);
    capture_result_release(&r);

    /* posthog-node: {"api_key":...,"batch":[...],"sent_at":...} with clock skew */
    in = ph("{\"api_key\":\"phc_node\",\"sent_at\":\"2026-05-01T12:00:05.000Z\",\"batch\":["
            "{\"distinct_id\":\"user_123\",\"event\":\"order completed\",\"properties\":{"
            "\"revenue\":42,\"$lib\":\"posthog-node\"},\"type\":\"capture\",\"library\":"
            "\"posthog-node\",\"library_version\":\"4.1.0\",\"timestamp\":"
            "\"2026-05-01T12:00:00.000Z\",\"uuid\":\"u-1\"}]}");
    t_parse(&in, &r, 0);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "source"), "phc_node");
    /* received 12:00:10 - (sent 12:00:05 - ts 12:00:00) = 12:00:05 */
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T12:00:05.000Z");
    assert_string_equal(t_str(j, "sentAt"), "2026-05-01T12:00:05.000Z");
    assert_string_equal(t_str(j, "messageId"), "u-1");
    assert_string_equal(t_str(json_object_get(json_object_get(j, "context"), "library"), "name"),
                        "posthog-node");
    json_decref(j);
    capture_result_release(&r);

    /* envelope "token"; Basic auth as the last resort */
    in = ph("{\"token\":\"tok\",\"batch\":[{\"event\":\"a\",\"distinct_id\":\"u\"}]}");
    t_parse(&in, &r, 0);
    assert_string_equal(r.events[0].write_key, "tok");
    capture_result_release(&r);
    in = ph("{\"event\":\"a\",\"distinct_id\":\"u\"}");
    in.auth_key = "basic";
    t_parse(&in, &r, 0);
    assert_string_equal(r.events[0].write_key, "basic");
    capture_result_release(&r);

    /* older posthog-node: library beside the event */
    in = ph("{\"api_key\":\"k\",\"batch\":[{\"event\":\"a\",\"distinct_id\":\"u\","
            "\"library\":\"posthog-node\",\"library_version\":\"2.0.0\"}]}");
    t_parse(&in, &r, 0);
    j = t_record(&r, 0);
    json_t *lib = json_object_get(json_object_get(j, "context"), "library");
    assert_string_equal(t_str(lib, "name"), "posthog-node");
    assert_string_equal(t_str(lib, "version"), "2.0.0");
    json_decref(j);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG, "{\"batch\":\"x\"}", "k", 400, "batch: must be an array");
    t_expect_error(CAPTURE_API_POSTHOG, "7", "k", 400,
                   "body: invalid JSON: '[' or '{' expected near '7' (line 1, column 1)");
}

static void test_identify(void **state)
{
    (void)state;
    struct capture_input in =
        ph("{\"api_key\":\"k\",\"batch\":[{\"event\":\"$identify\",\"distinct_id\":\"user-9\","
           "\"properties\":{\"$anon_distinct_id\":\"anon-1\",\"$set\":{\"email\":\"a@b.c\"},"
           "\"$set_once\":{\"first\":\"x\"}}}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.events[0].type, CAPTURE_IDENTIFY);
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "type"), "identify");
    t_assert_null_field(j, "event");
    assert_string_equal(t_str(j, "userId"), "user-9");
    assert_string_equal(t_str(j, "anonymousId"), "anon-1");
    json_t *traits = json_object_get(j, "traits");
    assert_int_equal(json_object_size(traits), 1);
    assert_string_equal(t_str(traits, "email"), "a@b.c");
    json_decref(j);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"event\":\"$identify\",\"distinct_id\":\"u\",\"properties\":{\"$set\":1}}",
                   "k", 400, "properties.$set: must be an object");
}

static void test_alias_pageview_screen_group(void **state)
{
    (void)state;
    struct capture_input in = ph(
        "{\"api_key\":\"k\",\"batch\":["
        "{\"event\":\"$create_alias\",\"distinct_id\":\"main\",\"properties\":{\"distinct_id\":"
        "\"main\",\"alias\":\"other\"}},"
        "{\"event\":\"$pageview\",\"distinct_id\":\"main\",\"properties\":{\"$current_url\":"
        "\"https://a.test/p\",\"$title\":\"P\"}},"
        "{\"event\":\"$screen\",\"distinct_id\":\"main\",\"properties\":{\"$screen_name\":\"S\"}},"
        "{\"event\":\"$groupidentify\",\"distinct_id\":\"$company_acme\",\"properties\":{"
        "\"$group_type\":\"company\",\"$group_key\":\"acme\",\"$group_set\":{\"plan\":\"pro\"}}}"
        "]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 4);

    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "type"), "alias");
    assert_string_equal(t_str(j, "userId"), "main");
    assert_string_equal(t_str(j, "previousId"), "other");
    json_decref(j);

    j = t_record(&r, 1);
    assert_string_equal(t_str(j, "type"), "page");
    assert_string_equal(t_str(j, "userId"), "main");
    json_t *page = json_object_get(json_object_get(j, "context"), "page");
    assert_string_equal(t_str(page, "url"), "https://a.test/p");
    assert_string_equal(t_str(page, "title"), "P");
    json_decref(j);

    j = t_record(&r, 2);
    assert_string_equal(t_str(j, "type"), "screen");
    assert_string_equal(t_str(json_object_get(j, "properties"), "$screen_name"), "S");
    json_decref(j);

    j = t_record(&r, 3);
    assert_string_equal(t_str(j, "type"), "group");
    assert_string_equal(t_str(j, "groupId"), "acme");
    assert_string_equal(t_str(json_object_get(j, "traits"), "plan"), "pro");
    assert_string_equal(t_str(json_object_get(j, "properties"), "$group_type"), "company");
    json_decref(j);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"batch\":[{\"event\":\"$create_alias\",\"distinct_id\":"
                   "\"m\",\"properties\":{}}]}",
                   NULL, 400, "batch[0].properties.alias: required for $create_alias");
    t_expect_error(
        CAPTURE_API_POSTHOG,
        "{\"api_key\":\"k\",\"batch\":[{\"event\":\"a\",\"distinct_id\":\"m\"},{\"event\":"
        "\"$groupidentify\",\"distinct_id\":\"m\",\"properties\":{\"$group_type\":"
        "\"company\"}}]}",
        NULL, 400, "batch[1].properties.$group_key: required for $groupidentify");
}

static void test_anonymous_rules(void **state)
{
    (void)state;
    struct capture_input in =
        ph("[{\"event\":\"a\",\"distinct_id\":\"d1\",\"properties\":{\"token\":\"k\","
           "\"$is_identified\":false}},"
           "{\"event\":\"b\",\"distinct_id\":\"dev-7\",\"properties\":{\"token\":\"k\","
           "\"$device_id\":\"dev-7\"}},"
           "{\"event\":\"c\",\"distinct_id\":\"d3\",\"properties\":{\"token\":\"k\","
           "\"$process_person_profile\":false}},"
           "{\"event\":\"d\",\"distinct_id\":\"user\",\"properties\":{\"token\":\"k\","
           "\"$device_id\":\"dev-7\",\"$is_identified\":true}}]");
    struct capture_result r;
    t_parse(&in, &r, 0);
    const char *anon[] = {"d1", "dev-7", "d3", NULL};
    for (size_t i = 0; i < 4; i++) {
        json_t *j = t_record(&r, i);
        if (anon[i]) {
            assert_string_equal(t_str(j, "anonymousId"), anon[i]);
            t_assert_null_field(j, "userId");
            assert_null(r.events[i].user_id);
        } else {
            assert_string_equal(t_str(j, "userId"), "user");
            t_assert_null_field(j, "anonymousId");
        }
        json_decref(j);
    }
    /* $device_id also lands in context.device.id */
    json_t *j = t_record(&r, 3);
    assert_string_equal(t_str(json_object_get(json_object_get(j, "context"), "device"), "id"),
                        "dev-7");
    json_decref(j);
    capture_result_release(&r);
}

static void test_distinct_id_forms(void **state)
{
    (void)state;
    struct capture_result r;
    struct capture_input in = ph("{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":12345}");
    t_parse(&in, &r, 0);
    assert_string_equal(r.events[0].user_id, "12345");
    capture_result_release(&r);

    /* truncated to 200 bytes, never inside a UTF-8 sequence */
    char body[1024];
    char id[300];
    memset(id, 'a', 199);
    strcpy(id + 199, "\xc3\xa9zzzz"); /* the 2-byte e-acute straddles byte 200 */
    snprintf(body, sizeof(body), "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"%s\"}", id);
    in = ph(body);
    t_parse(&in, &r, 0);
    assert_int_equal(strlen(r.events[0].user_id), 199);
    json_t *j = t_record(&r, 0); /* still valid JSON and UTF-8 */
    assert_int_equal(strlen(t_str(j, "userId")), 199);
    json_decref(j);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG, "{\"api_key\":\"k\",\"event\":\"a\"}", NULL, 400,
                   "distinct_id: required");
    t_expect_error(CAPTURE_API_POSTHOG, "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"\"}",
                   NULL, 400, "distinct_id: required");
    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":{\"x\":1}}", NULL, 400,
                   "distinct_id: must be a string");
    t_expect_error(CAPTURE_API_POSTHOG, "{\"api_key\":\"k\",\"distinct_id\":\"u\"}", NULL, 400,
                   "event: required");
    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"distinct_id\":\"u\",\"event\":\"a\",\"properties\":[]}",
                   NULL, 400, "properties: must be an object");
    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"batch\":[{\"event\":\"a\",\"distinct_id\":\"u\",\"token\":\"t\"},"
                   "{\"event\":\"b\",\"distinct_id\":\"u\"}]}",
                   NULL, 401, "batch[1].api_key: missing");
    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"distinct_id\":\"u\",\"event\":\"a\",\"uuid\":1}", NULL,
                   400, "uuid: must be a string");
}

static void test_offset_and_ignore_sent_at(void **state)
{
    (void)state;
    struct capture_input in =
        ph("{\"api_key\":\"k\",\"sent_at\":\"2026-05-01T11:00:00Z\",\"batch\":["
           "{\"event\":\"a\",\"distinct_id\":\"u\",\"offset\":5000,\"timestamp\":"
           "\"2020-01-01T00:00:00Z\"},"
           "{\"event\":\"b\",\"distinct_id\":\"u\",\"timestamp\":\"2026-05-01T10:59:00Z\","
           "\"properties\":{\"$ignore_sent_at\":true}},"
           "{\"event\":\"c\",\"distinct_id\":\"u\",\"timestamp\":\"2026-05-01T10:59:00Z\"}]}");
    struct capture_result r;
    t_parse(&in, &r, 0);
    /* offset: received - 5 s, whatever the timestamp says */
    assert_true(r.events[0].timestamp_us == T_RECV - 5000000);
    /* $ignore_sent_at: the client timestamp as is */
    json_t *j = t_record(&r, 1);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T10:59:00.000Z");
    t_assert_null_field(j, "sentAt");
    json_decref(j);
    /* skew: received 12:00:10 - (11:00:00 - 10:59:00) = 11:59:10 */
    j = t_record(&r, 2);
    assert_string_equal(t_str(j, "timestamp"), "2026-05-01T11:59:10.000Z");
    json_decref(j);
    capture_result_release(&r);

    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"u\",\"offset\":-1}", NULL,
                   400, "offset: must be a non-negative number of ms");
    t_expect_error(CAPTURE_API_POSTHOG,
                   "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"u\",\"offset\":\"5\"}",
                   NULL, 400, "offset: must be a non-negative number of ms");
}

static void test_limits_are_413(void **state)
{
    (void)state;
    struct capture_limits lim = {
        .max_message = 400, .max_body = 2048, .max_events = 2, .max_inflate = 4096};
    struct capture_result r;
    struct capture_input in = ph("[{\"event\":\"a\",\"distinct_id\":\"u\",\"token\":\"k\"},"
                                 "{\"event\":\"a\",\"distinct_id\":\"u\",\"token\":\"k\"},"
                                 "{\"event\":\"a\",\"distinct_id\":\"u\",\"token\":\"k\"}]");
    in.limits = &lim;
    t_parse(&in, &r, 413);
    assert_string_equal(r.message, "batch: more than 2 events");
    capture_result_release(&r);

    char body[4096];
    char pad[1024];
    memset(pad, 'p', 600);
    pad[600] = '\0';
    snprintf(body, sizeof(body),
             "{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"u\",\"properties\":{\"x\":"
             "\"%s\"}}",
             pad);
    in = ph(body);
    in.limits = &lim;
    t_parse(&in, &r, 413);
    assert_string_equal(r.message, "message: larger than 400 bytes");
    capture_result_release(&r);

    memset(pad, 'p', 1000);
    pad[1000] = '\0';
    snprintf(body, sizeof(body), "[{\"event\":\"%s\"},{\"event\":\"%s\"},{\"event\":\"%s\"}]", pad,
             pad, pad);
    in = ph(body);
    in.limits = &lim;
    t_parse(&in, &r, 413);
    assert_string_equal(r.message, "body: larger than 2048 bytes");
    capture_result_release(&r);
}

static void test_gzip_magic_without_header(void **state)
{
    (void)state;
    /* posthog-js gzip-js: compressed body, no Content-Encoding header */
    const char *plain = "[{\"event\":\"$pageview\",\"properties\":{\"token\":\"phc\","
                        "\"distinct_id\":\"d\"}}]";
    size_t gz_len;
    unsigned char *gz = t_gzip(plain, strlen(plain), &gz_len);
    struct capture_input in = ph("");
    in.body = gz;
    in.body_len = gz_len;
    struct capture_result r;
    t_parse(&in, &r, 0);
    assert_int_equal(r.n_events, 1);
    assert_int_equal(r.events[0].type, CAPTURE_PAGE);
    capture_result_release(&r);
    free(gz);
}

static void test_verified_user(void **state)
{
    (void)state;
    struct capture_input in = ph("{\"api_key\":\"k\",\"event\":\"a\",\"distinct_id\":\"u\"}");
    in.verified_user_id = "usr1";
    struct capture_result r;
    t_parse(&in, &r, 0);
    json_t *j = t_record(&r, 0);
    json_t *t = json_object_get(json_object_get(j, "context"), "tandem");
    assert_string_equal(t_str(t, "verifiedUserId"), "usr1");
    json_decref(j);
    capture_result_release(&r);
}

static void test_client_ip(void **state)
{
    (void)state;
    struct capture_input in =
        ph("[{\"event\":\"a\",\"distinct_id\":\"u\",\"properties\":{\"token\":\"k\","
           "\"$lib\":\"web\"}},"
           "{\"event\":\"a\",\"distinct_id\":\"u\",\"properties\":{\"token\":\"k\","
           "\"$geoip_disable\":true}},"
           "{\"event\":\"a\",\"distinct_id\":\"u\",\"properties\":{\"token\":\"k\","
           "\"$ip\":\"9.9.9.9\"}}]");
    in.client_ip = "203.0.113.5";
    struct capture_result r;
    t_parse(&in, &r, 0);
    const char *want[] = {"203.0.113.5", NULL, "9.9.9.9"};
    for (size_t i = 0; i < 3; i++) {
        json_t *j = t_record(&r, i);
        const char *ip = t_str(json_object_get(j, "context"), "ip");
        if (want[i])
            assert_string_equal(ip, want[i]);
        else
            assert_null(ip);
        json_decref(j);
    }
    capture_result_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_event),
        cmocka_unit_test(test_array_form_token_in_properties),
        cmocka_unit_test(test_batch_forms),
        cmocka_unit_test(test_identify),
        cmocka_unit_test(test_alias_pageview_screen_group),
        cmocka_unit_test(test_anonymous_rules),
        cmocka_unit_test(test_distinct_id_forms),
        cmocka_unit_test(test_offset_and_ignore_sent_at),
        cmocka_unit_test(test_limits_are_413),
        cmocka_unit_test(test_gzip_magic_without_header),
        cmocka_unit_test(test_verified_user),
        cmocka_unit_test(test_client_ip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
