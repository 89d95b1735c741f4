#define _GNU_SOURCE
/* test_capture_fast.c - the scanner (scan.c) and the Segment fast path (fast.c): the scanner
 * never accepts what jansson rejects, and the fast path gives the events the jansson path
 * gives. A duplicate key in the envelope sends a body down the jansson path (the scanner
 * declines duplicate keys), which is how these tests compare the two. */
#include "capture_test_util.h"

#include <stdio.h>
#include <stdlib.h>

#include "capture/capture_int.h"

static int scan(const char *s)
{
    struct capture__tape tp = {0};
    int rc = capture__scan(s, strlen(s), &tp);
    capture__tape_release(&tp);
    return rc;
}

static bool jansson_ok(const char *s, size_t len)
{
    json_t *j = json_loadb(s, len, 0, NULL);
    json_decref(j);
    return j != NULL;
}

static void test_scan_accepts(void **state)
{
    (void)state;
    static const char *const good[] = {
        "{}",
        "[]",
        " \t\r\n{ \"a\" : [ 1 , -0 , 0.5 , -1.25e+10 , 1E-5 , true , false , null ] } \n",
        "{\"s\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
        "{\"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"}",
        "{\"n\":123456789012345678,\"r\":1.7e290}",
        "[[[[[[[[[[{}]]]]]]]]]]",
        "{\"a\":{\"a\":{\"a\":1}},\"b\":1}", /* equal keys in different objects */
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        if (scan(good[i]) != 0)
            print_error("declined: %s\n", good[i]);
        assert_int_equal(scan(good[i]), 0);
        assert_true(jansson_ok(good[i], strlen(good[i])));
    }
}

static void test_scan_declines(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "  ",
        "1",
        "\"s\"",
        "null",
        "{",
        "[",
        "{}}",
        "{} x",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "[01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[1e]",
        "[+1]",
        "[tru]",
        "[nul]",
        "[truex]",
        "{a:1}",
        "{'a':1}",
        "[\"\x01\"]",
        "[\"\\u0000\"]",
        "[\"\\x\"]",
        "[\"\\u12\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"\xc0\xaf\"]",         /* overlong */
        "[\"\xed\xa0\x80\"]",     /* an encoded surrogate */
        "[\"\xf4\x90\x80\x80\"]", /* past U+10FFFF */
        "[\"\xe2\x82\"]",         /* truncated */
        "[\"\x80\"]",
        "[\"\xff\"]", /* not a first byte */
        "[\"unterminated",
        "{\"a\":1,\"a\":2}",        /* duplicate keys: jansson keeps the last */
        "{\"\\u0061\":1}",          /* escaped key */
        "[1234567890123456789012]", /* range only strtoll can tell */
        "[1e400]",                  /* range only strtod can tell */
        "\xef\xbb\xbf{}",           /* byte order mark */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (scan(bad[i]) == 0)
            print_error("accepted: %s\n", bad[i]);
        assert_int_equal(scan(bad[i]), ERR_INVALID);
    }
    /* nesting: 64 levels are fine, 65 go to jansson */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    assert_int_equal(scan(deep), 0);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    assert_int_equal(scan(deep), ERR_INVALID);
    /* objects of more than 64 keys are not checked for duplicates here */
    struct buf b;
    buf_init(&b);
    buf_putc(&b, '{');
    for (int i = 0; i < 65; i++)
        buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf_putc(&b, '}');
    assert_int_equal(scan(b.ptr), ERR_INVALID);
    buf_release(&b);
}

/* Random damage to a realistic body: whatever the scanner accepts, jansson accepts. */
static void test_scan_mutations_never_looser(void **state)
{
    (void)state;
    static const char base[] =
        "{\"writeKey\":\"k\",\"batch\":[{\"type\":\"track\",\"event\":\"E \\u00e9\",\"userId\":"
        "\"u\",\"messageId\":\"m\",\"properties\":{\"a\":[1,2.5,-3e2,true,false,null],\"b\":"
        "{\"c\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}},\"context\":{\"ip\":\"1.2.3.4\"}}]}";
    static const char alphabet[] = "{}[]:,\" \\/-+.0123456789eEtrufalsn\x01\x7f\x80\xc3\xed\xf0";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char buf[sizeof(base)];
    size_t n_accepted = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, base, sizeof(base));
        size_t len = sizeof(base) - 1;
        int edits = 1 + round % 3;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (len == 0)
                break;
            size_t at = (size_t)(x % len);
            unsigned op = (unsigned)(x >> 32) % 3;
            char c = alphabet[(x >> 40) % (sizeof(alphabet) - 1)];
            if (op == 0) {
                buf[at] = c;
            } else if (op == 1 && len > 1) { /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            } else { /* truncate */
                len = at;
            }
        }
        struct capture__tape tp = {0};
        int rc = capture__scan(buf, len, &tp);
        capture__tape_release(&tp);
        if (rc == 0) {
            n_accepted++;
            if (!jansson_ok(buf, len))
                print_error("scanner accepted what jansson rejects: %.*s\n", (int)len, buf);
            assert_true(jansson_ok(buf, len));
        }
    }
    assert_true(n_accepted > 100); /* the test saw both outcomes */
    assert_true(n_accepted < 20000);
}

/* The same body with a duplicate envelope key, which sends it down the jansson path. */
static char *slow_variant(const char *body)
{
    const char *brace = strchr(body, '{');
    assert_non_null(brace);
    char *s;
    assert_true(
        asprintf(&s, "%.*s{\"_slow\":0,\"_slow\":0,%s", (int)(brace - body), body, brace + 1) > 0);
    return s;
}

/* Parses body as it is and down the jansson path and compares the events. want_fast: the
 * first event's properties or traits hold "p":0.1, which only the fast path keeps in that
 * spelling (jansson writes 0.10000000000000001), so the test knows which path ran. */
static void expect_same(enum capture_api api, const char *body, const char *client_ip,
                        bool want_fast)
{
    char *slow = slow_variant(body);
    struct capture_input a = t_input(api, body), b = t_input(api, slow);
    a.auth_key = b.auth_key = "basic-key";
    a.client_ip = b.client_ip = client_ip;
    struct capture_result ra, rb;
    t_parse(&a, &ra, 0);
    t_parse(&b, &rb, 0);
    assert_int_equal(ra.n_events, rb.n_events);
    bool fast = memmem(ra.events[0].record, ra.events[0].record_len, "\"p\":0.1,", 8) ||
                memmem(ra.events[0].record, ra.events[0].record_len, "\"p\":0.1}", 8);
    if (fast != want_fast)
        print_error("took the %s path: %s\n%.*s\n", fast ? "fast" : "jansson", body,
                    (int)ra.events[0].record_len, ra.events[0].record);
    assert_int_equal(fast, want_fast);
    assert_int_equal(ra.n_write_keys, rb.n_write_keys);
    for (size_t i = 0; i < ra.n_write_keys; i++)
        assert_string_equal(ra.write_keys[i], rb.write_keys[i]);
    for (size_t i = 0; i < ra.n_events; i++) {
        const struct capture_event *ea = &ra.events[i], *eb = &rb.events[i];
        assert_int_equal(ea->type, eb->type);
        assert_int_equal(ea->timestamp_us, eb->timestamp_us);
        assert_int_equal(ea->received_us, eb->received_us);
        assert_string_equal(ea->write_key, eb->write_key);
        assert_int_equal(ea->write_key_len, eb->write_key_len);
        assert_string_equal(ea->source, eb->source);
        if (ea->user_id || eb->user_id)
            assert_string_equal(ea->user_id, eb->user_id);
        if (ea->anonymous_id || eb->anonymous_id)
            assert_string_equal(ea->anonymous_id, eb->anonymous_id);
        json_t *ja = t_record(&ra, i), *jb = t_record(&rb, i);
        /* assigned ids differ (random per request); everything else is equal */
        assert_int_equal(ea->message_id_len, eb->message_id_len);
        if (strncmp(ea->message_id, "m", 1) == 0) {
            assert_string_equal(ea->message_id, eb->message_id);
        } else {
            json_object_del(ja, "messageId");
            json_object_del(jb, "messageId");
        }
        if (!json_equal(ja, jb)) {
            char *sa = json_dumps(ja, JSON_COMPACT), *sb = json_dumps(jb, JSON_COMPACT);
            print_error("fast %s\nslow %s\n", sa, sb);
            free(sa);
            free(sb);
        }
        assert_true(json_equal(ja, jb));
        json_decref(ja);
        json_decref(jb);
    }
    capture_result_release(&ra);
    capture_result_release(&rb);
    free(slow);
}

static void test_fast_matches_jansson_path(void **state)
{
    (void)state;
    expect_same(CAPTURE_API_BATCH,
                "{\"writeKey\":\"wk\",\"sentAt\":\"2026-05-01T12:00:05.000Z\",\"batch\":["
                "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u1\",\"messageId\":"
                "\"m1\",\"timestamp\":\"2026-05-01T12:00:00.000Z\",\"properties\":{\"p\":0.1,"
                "\"price\":19.99,\"n\":1,\"big\":-1.5e299,\"tiny\":1e-320,\"z\":-0,\"s\":\"caf"
                "\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\/\",\"u\":\"\xc3\xa9\",\"a\":[1,{\"b\":null}]},"
                "\"context\":{\"library\":{\"name\":\"analytics-node\"},\"ip\":\"1.2.3.4\"},"
                "\"integrations\":{},\"_metadata\":{}},"
                "{\"type\":\"identify\",\"anonymousId\":\"a1\",\"traits\":{\"email\":\"x@y.z\"},"
                "\"writeKey\":\"other\",\"originalTimestamp\":\"2026-05-01T11:00:00Z\","
                "\"sentAt\":\"2026-05-01T11:00:01Z\"},"
                "{\"type\":\"group\",\"userId\":\"u1\",\"groupId\":\"g\",\"messageId\":null,"
                "\"properties\":null,\"context\":null},"
                "{\"type\":\"alias\",\"userId\":\"u2\",\"previousId\":\"u1\",\"messageId\":\"\"},"
                "{\"type\":\"page\",\"userId\":\"u1\",\"properties\":{\"path\":\"/\"},"
                "\"name\":7},"
                "{\"type\":\"screen\",\"anonymousId\":\"a2\",\"userId\":\"\"}]}",
                "9.9.9.9", true);
    /* whitespace between tokens is dropped from the copied objects, not from strings */
    expect_same(CAPTURE_API_BATCH,
                "{ \"batch\" : [ { \"type\" : \"track\" , \"event\" : \"e\" , \"userId\" : "
                "\"u\" ,\n \"messageId\":\"m2\", \"properties\" : { \"p\":0.1, \"a b\" : [ 1 , 2 ]"
                " ,\t\"c\" : \" x \\\" y \" } ,\r\n \"context\" : { } } ] }\n",
                NULL, true);
    /* single-message endpoints */
    expect_same(CAPTURE_API_TRACK,
                "{\"userId\":\"u\",\"event\":\"e\",\"messageId\":\"m3\",\"properties\":{\"k\":[],"
                "\"p\":0.1}}",
                "9.9.9.9", true);
    expect_same(CAPTURE_API_IDENTIFY,
                "{\"userId\":\"u\",\"traits\":{\"plan\":\"pro\",\"p\":0.1},\"messageId\":\"m4\"}",
                NULL, true);
    /* the cases the fast path leaves to jansson give the same events too */
    expect_same(CAPTURE_API_BATCH,
                "{\"context\":{\"app\":\"x\"},\"batch\":[{\"type\":\"track\",\"event\":\"e\","
                "\"userId\":\"u\",\"messageId\":\"m5\",\"properties\":{\"p\":0.1}}]}",
                NULL, false);
    expect_same(CAPTURE_API_BATCH,
                "{\"batch\":[{\"type\":\"page\",\"userId\":\"u\",\"properties\":{\"p\":0.1},"
                "\"name\":\"Home\",\"messageId\":\"m6\"},{\"type\":\"track\",\"event\":\"e\","
                "\"userId\":7,\"messageId\":\"m7\",\"context\":{\"library\":{\"name\":"
                "\"analytics.js\"}}},{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\","
                "\"messageId\":\"m8\",\"context\":{\"direct\":true,\"tandem\":{\"verifiedUserId\":"
                "\"forged\"}}},{\"type\":\"track\",\"event\":\"\\u00e9\",\"userId\":\"\\u00fc\","
                "\"messageId\":\"m9\"}]}",
                "9.9.9.9", false);
    const char *plain = "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\","
                        "\"messageId\":\"m10\",\"properties\":{\"p\":0.1}}]}";
    expect_same(CAPTURE_API_BATCH, plain, NULL, true);
    /* each reason alone sends the request to jansson */
    static const char *const slow_items[] = {
        "\"context\":{\"library\":{\"name\":\"analytics.js\"}}", /* gets the client ip */
        "\"context\":{\"direct\":true}",                         /* likewise */
        "\"context\":{\"tandem\":{}}",                           /* removed */
        "\"anonymousId\":12",                                    /* numeric id */
        "\"writeKey\":\"k\\u0031\"",                             /* escaped id */
    };
    for (size_t i = 0; i < ARRAY_LEN(slow_items); i++) {
        char *body;
        assert_true(asprintf(&body,
                             "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\","
                             "\"messageId\":\"m11\",\"properties\":{\"p\":0.1},%s}]}",
                             slow_items[i]) > 0);
        expect_same(CAPTURE_API_BATCH, body, "9.9.9.9", false);
        free(body);
    }
}

/* The fast path copies the client's objects: numbers keep their spelling. The jansson path
 * rebuilds them (17 significant digits). */
static void test_fast_keeps_number_text(void **state)
{
    (void)state;
    const char *body = "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\","
                       "\"properties\":{\"price\":19.99,\"e\":1E2}}]}";
    char *slow = slow_variant(body);
    struct capture_input a = t_input(CAPTURE_API_BATCH, body), b = t_input(CAPTURE_API_BATCH, slow);
    a.auth_key = b.auth_key = "k";
    struct capture_result ra, rb;
    t_parse(&a, &ra, 0);
    t_parse(&b, &rb, 0);
    assert_non_null(memmem(ra.events[0].record, ra.events[0].record_len,
                           "\"properties\":{\"price\":19.99,\"e\":1E2}", 35));
    assert_null(memmem(rb.events[0].record, rb.events[0].record_len, "19.99,", 6));
    capture_result_release(&ra);
    capture_result_release(&rb);
    free(slow);
}

/* Errors found on the fast path are reported by the jansson path, with its messages. */
static void test_fast_errors_come_from_jansson_path(void **state)
{
    (void)state;
    t_expect_error(CAPTURE_API_BATCH,
                   "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\"},"
                   "{\"type\":\"track\",\"userId\":\"u\"}]}",
                   "k", 400, "batch[1].event: required for track");
    t_expect_error(CAPTURE_API_BATCH,
                   "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\","
                   "\"properties\":[]}]}",
                   "k", 400, "batch[0].properties: must be an object");
    t_expect_error(CAPTURE_API_BATCH, "{\"batch\":[{\"type\":\"track\",\"event\":\"e\"}]}", "k",
                   400, "batch[0].userId: required (or anonymousId)");
    t_expect_error(CAPTURE_API_BATCH,
                   "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":\"u\"}]}", NULL, 401,
                   "batch[0].writeKey: missing (send it by HTTP Basic auth or in the body)");
    /* a record past max_message */
    struct capture_limits lim;
    capture_limits_default(&lim);
    lim.max_message = 300;
    struct capture_input in =
        t_input(CAPTURE_API_BATCH, "{\"batch\":[{\"type\":\"track\",\"event\":\"e\",\"userId\":"
                                   "\"u\",\"properties\":{\"pad\":\"0123456789012345678901234567"
                                   "890123456789012345678901234567890123456789\"}}]}");
    in.auth_key = "k";
    in.limits = &lim;
    struct capture_result r;
    t_parse(&in, &r, 400);
    assert_string_equal(r.message, "batch[0]: larger than 300 bytes");
    capture_result_release(&r);
}

/* The result borrows nothing from the input: the body is freed before the result is read. */
static void test_fast_result_owns_its_strings(void **state)
{
    (void)state;
    char *body = strdup("{\"writeKey\":\"env-key\",\"batch\":[{\"type\":\"track\",\"event\":"
                        "\"e\",\"userId\":\"u-1\",\"anonymousId\":\"a-1\",\"messageId\":"
                        "\"m-1\",\"properties\":{\"p\":0.1}},{\"type\":\"identify\","
                        "\"userId\":\"u-2\",\"writeKey\":\"item-key\",\"messageId\":\"m-2\"}]}");
    struct capture_input in = t_input(CAPTURE_API_BATCH, body);
    struct capture_result r;
    t_parse(&in, &r, 0);
    memset(body, 'x', strlen(body));
    free(body);
    assert_int_equal(r.n_events, 2);
    assert_string_equal(r.events[0].message_id, "m-1");
    assert_string_equal(r.events[0].user_id, "u-1");
    assert_string_equal(r.events[0].anonymous_id, "a-1");
    assert_string_equal(r.events[0].write_key, "env-key");
    assert_string_equal(r.events[1].write_key, "item-key");
    assert_int_equal(r.n_write_keys, 2);
    assert_string_equal(r.write_keys[0], "env-key");
    assert_string_equal(r.write_keys[1], "item-key");
    json_t *j = t_record(&r, 0);
    assert_string_equal(t_str(j, "event"), "e");
    assert_true(json_real_value(json_object_get(json_object_get(j, "properties"), "p")) == 0.1);
    json_decref(j);
    capture_result_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_accepts),
        cmocka_unit_test(test_scan_declines),
        cmocka_unit_test(test_scan_mutations_never_looser),
        cmocka_unit_test(test_fast_matches_jansson_path),
        cmocka_unit_test(test_fast_keeps_number_text),
        cmocka_unit_test(test_fast_errors_come_from_jansson_path),
        cmocka_unit_test(test_fast_result_owns_its_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
