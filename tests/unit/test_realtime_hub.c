/* The realtime hub without a log: PB_CONNECT, SSE framing, groups sharing one render,
 * queue bounds (a client that falls behind is dropped and aborted once, the others go on),
 * identity changes, the client limit, malformed changes. Changes are fed by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/core.h"
#include "realtime/realtime.h"

/* ---- test doubles for the edge: count what the hub asks of it ---- */

struct conn {
    int wakes, aborts, released;
};

static void conn_wake(void *c)
{
    ((struct conn *)c)->wakes++;
}

static void conn_abort(void *c)
{
    ((struct conn *)c)->aborts++;
}

static void conn_release(void *c)
{
    ((struct conn *)c)->released++;
}

static const struct realtime_conn_ops conn_ops = {conn_wake, conn_abort, conn_release};

static int n_opens, n_renders;

static void *view_open(void *arg, const struct realtime_group_spec *spec)
{
    UNUSED(arg);
    UNUSED(spec);
    n_opens++;
    return &n_opens;
}

static void view_close(void *arg, void *state)
{
    UNUSED(arg);
    UNUSED(state);
}

/* Sees records whose "visible" is not false; data = {"record":<record>,"action":...}. */
static int view_render(void *arg, void *state, const struct realtime_change *ch, struct buf *out)
{
    UNUSED(arg);
    UNUSED(state);
    n_renders++;
    if (json_is_false(json_object_get(ch->record, "visible")))
        return 0;
    char *rec = json_dumps(ch->record, JSON_COMPACT);
    buf_printf(out, "{\"record\":%s,\"action\":\"%s\"}", rec, ch->action);
    free(rec);
    return 1;
}

static const struct realtime_view_ops view_ops = {view_open, view_close, view_render};

static struct realtime_hub *hub_new(size_t queue_bytes, size_t max_clients)
{
    struct realtime_cfg cfg = {
        .queue_bytes = queue_bytes,
        .max_clients = max_clients,
        .view = &view_ops,
        .conn = &conn_ops,
    };
    struct realtime_hub *hub = NULL;
    assert_int_equal(realtime_hub_new(&cfg, &hub), 0);
    n_opens = n_renders = 0;
    return hub;
}

static struct realtime_client *connect_client(struct realtime_hub *hub, struct conn *c)
{
    struct realtime_client *cl = NULL;
    assert_int_equal(realtime_client_new(hub, &cl), 0);
    realtime_client_attach(cl, c);
    return cl;
}

static void subscribe(struct realtime_hub *hub, struct realtime_client *cl, const char *topic,
                      const char *record_id)
{
    struct realtime_ident guest = {0};
    struct realtime_sub s = {topic, "c1", record_id, ""};
    assert_int_equal(realtime_client_subscribe(hub, cl, &guest, &s, 1), 0);
}

static int feed(struct realtime_hub *hub, const char *action, const char *id, size_t pad)
{
    char *filler = xcalloc(1, pad + 1);
    memset(filler, 'p', pad);
    char *text = NULL;
    json_t *doc = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "collectionId", "c1", "recordId", id,
                            "action", action, "record", "id", id, "pad", filler);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(filler);
    int rc = realtime_hub_feed(hub, text, strlen(text));
    free(text);
    return rc;
}

/* Everything queued for cl, as a string. */
static char *drain(struct realtime_client *cl)
{
    struct buf b;
    buf_init(&b);
    char chunk[100]; /* small reads: the queue is consumed piecewise */
    long n;
    while ((n = realtime_client_read(cl, chunk, sizeof(chunk))) > 0)
        buf_append(&b, chunk, (size_t)n);
    size_t len;
    buf_cstr(&b);
    return buf_detach(&b, &len);
}

static void finish(struct realtime_hub *hub, struct realtime_client **cls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        realtime_client_gone(cls[i]);
    realtime_hub_free(hub);
}

static void test_connect_and_framing(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(64 * 1024, 0);
    struct conn c = {0};
    struct realtime_client *cl = connect_client(hub, &c);
    const char *id = realtime_client_id(cl);
    assert_int_equal(strlen(id), REALTIME_CLIENT_ID_LEN);
    char *out = drain(cl);
    char want[256];
    snprintf(want, sizeof(want), "id:%s\nevent:PB_CONNECT\ndata:{\"clientId\":\"%s\"}\n\n", id, id);
    assert_string_equal(out, want);
    free(out);

    struct realtime_client *found = realtime_client_find(hub, id);
    assert_ptr_equal(found, cl);
    realtime_client_unref(found);
    assert_null(realtime_client_find(hub, "nobody"));

    subscribe(hub, cl, "c1/*?options=x", NULL);
    assert_int_equal(feed(hub, "create", "r1", 0), 0);
    assert_int_equal(feed(hub, "update", "r1", 0), 0);
    out = drain(cl);
    snprintf(want, sizeof(want),
             "id:%s\nevent:c1/*?options=x\ndata:{\"record\":{\"id\":\"r1\",\"pad\":\"\"},"
             "\"action\":\"create\"}\n\n"
             "id:%s\nevent:c1/*?options=x\ndata:{\"record\":{\"id\":\"r1\",\"pad\":\"\"},"
             "\"action\":\"update\"}\n\n",
             id, id);
    assert_string_equal(out, want);
    free(out);
    /* one wake per queue going from empty to not: the update queued behind the create */
    assert_int_equal(c.wakes, 1);
    assert_int_equal(feed(hub, "update", "r1", 0), 0);
    assert_int_equal(c.wakes, 2);
    assert_int_equal(feed(hub, "update", "r1", 0), 0);
    assert_int_equal(c.wakes, 2);
    free(drain(cl));
    struct realtime_stats st;
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.deliveries, 4);
    assert_int_equal(st.clients, 1);
    assert_int_equal(feed(hub, "create", "r2", 0), 0);
    realtime_client_gone(cl);
    realtime_hub_free(hub);
    assert_int_equal(c.released, 1);
}

static void test_groups_share_one_render(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(64 * 1024, 0);
    struct conn c[3] = {{0}};
    struct realtime_client *cl[3];
    for (int i = 0; i < 3; i++) {
        cl[i] = connect_client(hub, &c[i]);
        subscribe(hub, cl[i], i == 2 ? "c1/r9" : "c1/*", i == 2 ? "r9" : NULL);
    }
    assert_int_equal(feed(hub, "create", "r1", 0), 0);
    struct realtime_stats st;
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.groups, 2);
    assert_int_equal(n_renders, 1); /* the r9 group is not asked about r1 */
    assert_int_equal(st.deliveries, 2);
    assert_int_equal(feed(hub, "update", "r9", 0), 0);
    assert_int_equal(n_renders, 3);
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.deliveries, 5);
    /* a client leaving removes its group when it was the last one */
    realtime_client_gone(cl[2]);
    assert_int_equal(feed(hub, "update", "r9", 0), 0);
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.groups, 1);
    finish(hub, cl, 2);
}

/* One group, several topic spellings ("c1/\*", "c1"): one render, each subscriber gets the
 * message under its own topic, a client subscribed under both gets it twice, in order. */
static void test_one_group_many_topics(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(64 * 1024, 0);
    struct conn c[3] = {{0}};
    struct realtime_client *cl[3];
    for (int i = 0; i < 3; i++) {
        cl[i] = connect_client(hub, &c[i]);
        free(drain(cl[i]));
    }
    subscribe(hub, cl[0], "c1/*", NULL);
    subscribe(hub, cl[1], "c1", NULL);
    struct realtime_ident guest = {0};
    struct realtime_sub both[2] = {{"c1", "c1", NULL, ""}, {"c1/*", "c1", NULL, ""}};
    assert_int_equal(realtime_client_subscribe(hub, cl[2], &guest, both, 2), 0);
    assert_int_equal(feed(hub, "create", "r1", 0), 0);
    assert_int_equal(feed(hub, "delete", "r1", 0), 0);
    assert_int_equal(n_renders, 2);
    const char *topics[3][4] = {{"c1/*", "c1/*"}, {"c1", "c1"}, {"c1", "c1/*", "c1", "c1/*"}};
    const char *actions[3][4] = {
        {"create", "delete"}, {"create", "delete"}, {"create", "create", "delete", "delete"}};
    for (int i = 0; i < 3; i++) {
        const char *id = realtime_client_id(cl[i]);
        char want[1024] = "";
        for (int k = 0; k < 4 && topics[i][k]; k++)
            snprintf(want + strlen(want), sizeof(want) - strlen(want),
                     "id:%s\nevent:%s\ndata:{\"record\":{\"id\":\"r1\",\"pad\":\"\"},"
                     "\"action\":\"%s\"}\n\n",
                     id, topics[i][k], actions[i][k]);
        char *out = drain(cl[i]);
        assert_string_equal(out, want);
        free(out);
    }
    struct realtime_stats st;
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.groups, 1);
    assert_int_equal(st.deliveries, 8);
    /* messages still queued when the clients go are released with them (ASan checks) */
    assert_int_equal(feed(hub, "update", "r1", 0), 0);
    finish(hub, cl, 3);
}

static void test_slow_client_dropped_others_go_on(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(4096, 0);
    struct conn slow_c = {0}, fast_c = {0};
    struct realtime_client *slow = connect_client(hub, &slow_c);
    struct realtime_client *fast = connect_client(hub, &fast_c);
    subscribe(hub, slow, "c1/*", NULL);
    subscribe(hub, fast, "c1/*", NULL);
    free(drain(fast));
    size_t fast_msgs = 0;
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "r%d", i);
        assert_int_equal(feed(hub, "create", id, 200), 0);
        char *out = drain(fast); /* the fast one keeps up */
        fast_msgs += strstr(out, "event:c1/*") != NULL;
        free(out);
    }
    assert_int_equal(fast_msgs, 100);
    assert_int_equal(slow_c.aborts, 1);
    assert_int_equal(fast_c.aborts, 0);
    assert_int_equal(realtime_client_read(slow, (char[8]){0}, 8), -1);
    struct realtime_stats st;
    realtime_hub_stats(hub, &st);
    assert_int_equal(st.dropped, 1);
    /* the slow one got as many as fit in 4096 bytes, then nothing more */
    assert_true(st.deliveries > 100 && st.deliveries < 100 + 4096 / 200);
    struct realtime_client *cls[2] = {slow, fast};
    finish(hub, cls, 2);
}

static void test_empty_queue_takes_a_large_message(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(REALTIME_MIN_QUEUE_BYTES, 0);
    struct conn c = {0};
    struct realtime_client *cl = connect_client(hub, &c);
    free(drain(cl));
    subscribe(hub, cl, "c1/*", NULL);
    assert_int_equal(feed(hub, "create", "big", 10000), 0);
    char *out = drain(cl);
    assert_true(strlen(out) > 10000);
    free(out);
    assert_int_equal(c.aborts, 0);
    /* two large ones without a read in between: over the limit */
    assert_int_equal(feed(hub, "create", "big2", 10000), 0);
    assert_int_equal(feed(hub, "create", "big3", 10000), 0);
    assert_int_equal(c.aborts, 1);
    finish(hub, &cl, 1);
}

static void test_identity_rules_of_subscribe(void **state)
{
    UNUSED(state);
    struct realtime_hub *hub = hub_new(64 * 1024, 0);
    struct conn c = {0};
    struct realtime_client *cl = connect_client(hub, &c);
    struct realtime_ident guest = {0};
    struct realtime_ident a = {false, "users", "aaa"};
    struct realtime_ident b = {false, "users", "bbb"};
    struct realtime_ident su = {true, "pbc_3142635823", "sss"};
    assert_int_equal(realtime_client_subscribe(hub, cl, &guest, NULL, 0), 0);
    assert_int_equal(realtime_client_subscribe(hub, cl, &a, NULL, 0), 0);
    assert_int_equal(realtime_client_subscribe(hub, cl, &a, NULL, 0), 0);
    assert_int_equal(realtime_client_subscribe(hub, cl, &b, NULL, 0), ERR_DENIED);
    assert_int_equal(realtime_client_subscribe(hub, cl, &guest, NULL, 0), ERR_DENIED);
    assert_int_equal(realtime_client_subscribe(hub, cl, &su, NULL, 0), ERR_DENIED);
    /* the auth record is deleted: the client is a guest again */
    struct realtime_sub s = {"c1/*", "c1", NULL, ""};
    assert_int_equal(realtime_client_subscribe(hub, cl, &a, &s, 1), 0);
    const char *del = "{\"collectionId\":\"users\",\"recordId\":\"aaa\",\"action\":\"delete\","
                      "\"record\":{\"id\":\"aaa\"}}";
    assert_int_equal(realtime_hub_feed(hub, del, strlen(del)), 0);
    assert_int_equal(realtime_client_subscribe(hub, cl, &guest, &s, 1), 0);
    assert_int_equal(realtime_client_subscribe(hub, cl, &b, &s, 1), 0);
    finish(hub, &cl, 1);
}

static void test_limits_and_bad_input(void **state)
{
    UNUSED(state);
    struct realtime_cfg bad = {.queue_bytes = 10, .view = &view_ops, .conn = &conn_ops};
    struct realtime_hub *h = NULL;
    assert_int_equal(realtime_hub_new(&bad, &h), ERR_INVALID);
    struct realtime_hub *hub = hub_new(64 * 1024, 2);
    struct conn c[2] = {{0}};
    struct realtime_client *cl[2];
    cl[0] = connect_client(hub, &c[0]);
    cl[1] = connect_client(hub, &c[1]);
    struct realtime_client *third = NULL;
    assert_int_equal(realtime_client_new(hub, &third), ERR_LIMIT);
    assert_int_equal(realtime_hub_feed(hub, "{", 1), ERR_INVALID);
    assert_int_equal(realtime_hub_feed(hub, "{\"collectionId\":\"c1\"}", 20), ERR_INVALID);
    realtime_client_gone(cl[1]);
    assert_int_equal(realtime_client_new(hub, &third), 0); /* a slot is free again */
    realtime_client_attach(third, &c[1]);
    cl[1] = third;
    /* stopping ends every stream and refuses new clients */
    realtime_hub_stop(hub);
    assert_int_equal(realtime_client_read(cl[0], (char[8]){0}, 8), -1);
    assert_int_equal(realtime_client_new(hub, &third), ERR_BUSY);
    finish(hub, cl, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_and_framing),
        cmocka_unit_test(test_groups_share_one_render),
        cmocka_unit_test(test_one_group_many_topics),
        cmocka_unit_test(test_slow_client_dropped_others_go_on),
        cmocka_unit_test(test_empty_queue_takes_a_large_message),
        cmocka_unit_test(test_identity_rules_of_subscribe),
        cmocka_unit_test(test_limits_and_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
