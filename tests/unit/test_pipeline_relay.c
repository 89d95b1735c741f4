/* test_pipeline_relay.c - the outbox relay: committed changes reach the "changes" topic in
 * commit order, each exactly once, including after a crash between "appended to the log" and
 * "deleted from the outbox" (simulated by appending the rows the way the relay does and not
 * deleting them), a stop moves what is left, and an erased newest record is no obstacle. */
#include "store_fixture.h"

#include <time.h>

#include "evlog_testlib.h"
#include "pipeline/pipeline.h"

static const char spec[] = "{\"name\":\"items\",\"fields\":[{\"name\":\"n\",\"type\":\"number\"}]}";

struct env {
    struct fx fx;
    char logdir[600];
    struct evlog *log;
    struct store_collection *c;
};

static void env_open(struct env *e)
{
    fx_open(&e->fx);
    struct evlog_cfg cfg;
    tl_cfg(&cfg, e->fx.dir, e->logdir, sizeof(e->logdir));
    assert_int_equal(evlog_open(&cfg, &e->log), 0);
    e->c = fx_coll(&e->fx, spec);
}

static void env_close(struct env *e)
{
    store_collection_unref(e->c);
    evlog_close(e->log);
    fx_close(&e->fx);
}

static uint64_t end_of(struct evlog *log)
{
    uint64_t end = 0;
    int rc = evlog_end_offset(log, PIPELINE_TOPIC_CHANGES, &end);
    if (rc == ERR_NOTFOUND)
        return 0;
    assert_int_equal(rc, 0);
    return end;
}

/* Waits up to 5 s until the topic holds n records. */
static void wait_end(struct evlog *log, uint64_t n)
{
    for (int i = 0; i < 500 && end_of(log) < n; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(end_of(log), n);
}

/* The outbox ids in the topic, in log order; returns how many. */
static size_t logged_ids(struct evlog *log, int64_t *ids, size_t max, const char **actions)
{
    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t end = end_of(log);
    size_t n = 0;
    for (uint64_t at = 0; at < end; at = b.next_offset) {
        assert_int_equal(evlog_read(log, PIPELINE_TOPIC_CHANGES, at, 100, 1 << 20, &b), 0);
        for (size_t i = 0; i < b.n && n < max; i++, n++) {
            json_t *j = json_loadb((const char *)b.recs[i].data, b.recs[i].len, 0, NULL);
            assert_non_null(j);
            ids[n] = json_integer_value(json_object_get(j, "id"));
            if (actions)
                assert_string_equal(json_string_value(json_object_get(j, "action")), actions[n]);
            json_decref(j);
        }
    }
    evlog_batch_release(&b);
    return n;
}

static json_t *item(struct env *e, const char *id, int n)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"n\":%d}", id, n);
    return fx_rec(&e->fx, e->c, body);
}

static void test_moves_in_order_once(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    json_decref(item(&e, "aaaaaaaaaaaaaaa", 1));
    json_decref(item(&e, "bbbbbbbbbbbbbbb", 2));
    json_t *patch = J("{\"n\":3}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(e.fx.st, e.c, "aaaaaaaaaaaaaaa", patch, NULL, &errors, &u),
                     0);
    json_decref(u);
    json_decref(patch);
    assert_int_equal(store_record_delete(e.fx.st, e.c, "bbbbbbbbbbbbbbb"), 0);

    struct pipeline_relay *r;
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    wait_end(e.log, 4);
    pipeline_relay_stop(r);
    const char *actions[] = {"create", "create", "update", "delete"};
    int64_t ids[8];
    assert_int_equal(logged_ids(e.log, ids, 8, actions), 4);
    for (int i = 1; i < 4; i++)
        assert_true(ids[i] > ids[i - 1]);
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 0);

    /* a second start finds nothing to move and appends nothing */
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    pipeline_relay_stop(r);
    assert_int_equal(end_of(e.log), 4);

    /* a stop moves what was committed just before it */
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    json_decref(item(&e, "ccccccccccccccc", 5));
    pipeline_relay_stop(r);
    assert_int_equal(end_of(e.log), 5);
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 0);
    env_close(&e);
}

/* A relay that crashed after its append was durable but before it deleted the rows: the
 * next start must drop those rows from the outbox, not append them again, and move the rows
 * committed since. */
static void test_crash_between_append_and_delete(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    json_decref(item(&e, "aaaaaaaaaaaaaaa", 1));
    json_decref(item(&e, "bbbbbbbbbbbbbbb", 2));
    json_decref(item(&e, "ccccccccccccccc", 3));
    json_t *rows = NULL;
    assert_int_equal(store_outbox_read(e.fx.st, 0, 100, &rows), 0);
    assert_int_equal(json_array_size(rows), 3);
    struct evlog_rec recs[3];
    char *texts[3];
    for (size_t i = 0; i < 3; i++) {
        texts[i] = json_dumps(json_array_get(rows, i), JSON_COMPACT);
        recs[i] = (struct evlog_rec){texts[i], strlen(texts[i])};
    }
    uint64_t first;
    assert_int_equal(evlog_append_sync(e.log, PIPELINE_TOPIC_CHANGES, recs, 3, &first), 0);
    for (size_t i = 0; i < 3; i++)
        free(texts[i]);
    json_decref(rows);
    /* still in the outbox, as after the crash; and two more writes since */
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 3);
    json_decref(item(&e, "ddddddddddddddd", 4));
    json_decref(item(&e, "eeeeeeeeeeeeeee", 5));

    struct pipeline_relay *r;
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    wait_end(e.log, 5);
    pipeline_relay_stop(r);
    int64_t ids[8];
    assert_int_equal(logged_ids(e.log, ids, 8, NULL), 5);
    for (int i = 1; i < 5; i++)
        assert_true(ids[i] > ids[i - 1]);
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 0);
    env_close(&e);
}

static bool erase_from(void *arg, const struct evlog_rec_view *rec)
{
    return rec->offset >= *(const uint64_t *)arg;
}

/* Person deletion erases change records into tombstones (docs/evlog.md): with the newest
 * record of the topic erased, or every one, a start still finds where the relay left off and
 * moves what was committed since, once. */
static void test_erased_tail(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    json_decref(item(&e, "aaaaaaaaaaaaaaa", 1));
    json_decref(item(&e, "bbbbbbbbbbbbbbb", 2));
    struct pipeline_relay *r;
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    wait_end(e.log, 2);
    pipeline_relay_stop(r);

    uint64_t from = 1, n = 0;
    assert_int_equal(evlog_erase(e.log, PIPELINE_TOPIC_CHANGES, 2, erase_from, &from, &n), 0);
    assert_int_equal(n, 1);
    json_decref(item(&e, "ccccccccccccccc", 3));
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    wait_end(e.log, 3);
    pipeline_relay_stop(r);
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 0);

    from = 0;
    assert_int_equal(evlog_erase(e.log, PIPELINE_TOPIC_CHANGES, 3, erase_from, &from, &n), 0);
    assert_int_equal(n, 2);
    json_decref(item(&e, "ddddddddddddddd", 4));
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    wait_end(e.log, 4);
    pipeline_relay_stop(r);
    assert_int_equal(fx_sql_int(&e.fx, "SELECT COUNT(*) FROM _outbox"), 0);
    /* and a start with nothing to move appends nothing */
    assert_int_equal(pipeline_relay_start(e.fx.st, e.log, &r), 0);
    pipeline_relay_stop(r);
    assert_int_equal(end_of(e.log), 4);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moves_in_order_once),
        cmocka_unit_test(test_crash_between_append_and_delete),
        cmocka_unit_test(test_erased_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
