/* Store deadlines (store_deadline): a statement still running at the calling thread's deadline
 * stops with ERR_TIMEOUT and changes nothing; the bound is lifted for the thread's next work;
 * in a group commit only the late item's own reads stop, and the others still commit. */
#include <pthread.h>

#include "store_fixture.h"

static const char notes_spec[] = "{\"name\":\"notes\",\"fields\":["
                                 "{\"name\":\"title\",\"type\":\"text\"},"
                                 "{\"name\":\"n\",\"type\":\"number\"}]}";

/* A condition that takes tens of millions of VM steps (seconds) unless it is stopped. */
#define SLOW_COND                                                                                  \
    "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "        \
    "SELECT count(*) FROM c) > 0"
/* The same shape, over a few hundred thousand steps: well past the progress handler's period,
 * well within any deadline a test sets. */
#define QUICK_COND                                                                                 \
    "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) "            \
    "SELECT count(*) FROM c) > 0"

static int64_t passed(void)
{
    return time_mono_us() - 1; /* a deadline already behind us */
}

static void test_list_stops_at_deadline(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, notes_spec);
    json_decref(fx_rec(&fx, c, "{\"title\":\"a\",\"n\":1}"));
    json_t *one = fx_rec(&fx, c, "{\"title\":\"b\"}");
    const char *id = json_string_value(json_object_get(one, "id"));
    struct store_list_query q = {.page = 1, .per_page = 30, .where_sql = SLOW_COND};
    struct store_list_result res;

    store_deadline(fx.st, passed());
    assert_int_equal(store_record_list(fx.st, c, &q, &res), ERR_TIMEOUT);
    assert_null(res.items);
    /* a point read under a condition stops the same way */
    json_t *rec = NULL;
    struct store_cond slow = {.sql = SLOW_COND};
    assert_int_equal(store_record_get_if(fx.st, c, id, &slow, &rec), ERR_TIMEOUT);
    assert_null(rec);

    /* lifted: the thread's next work runs to its end */
    store_deadline(fx.st, 0);
    q.where_sql = QUICK_COND;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(json_array_size(res.items), 2);
    json_decref(res.items);

    /* a deadline still ahead does not stop work that ends before it */
    store_deadline(fx.st, time_mono_us() + INT64_C(60) * 1000000);
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, 2);
    json_decref(res.items);
    store_deadline(fx.st, 0);
    json_decref(one);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_write_stops_and_changes_nothing(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, notes_spec);
    json_t *rec = fx_rec(&fx, c, "{\"title\":\"old\",\"n\":1}");
    const char *id = json_string_value(json_object_get(rec, "id"));
    struct store_cond slow = {.sql = SLOW_COND};
    json_t *body = J("{\"title\":\"new\"}"), *errors = NULL, *out = NULL;

    store_deadline(fx.st, passed());
    assert_int_equal(store_record_update_if(fx.st, c, id, body, NULL, &slow, &errors, &out),
                     ERR_TIMEOUT);
    assert_null(out);
    assert_int_equal(store_record_delete_if(fx.st, c, id, &slow), ERR_TIMEOUT);
    json_t *created = NULL;
    assert_int_equal(store_record_create_if(fx.st, c, body, NULL, &slow, &errors, &created),
                     ERR_TIMEOUT);
    store_deadline(fx.st, 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM notes WHERE title = 'old'"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM notes"), 1);
    /* the write lock was released: the next write goes through */
    assert_int_equal(store_record_update_if(fx.st, c, id, body, NULL, NULL, &errors, &out), 0);
    assert_string_equal(json_string_value(json_object_get(out, "title")), "new");
    json_decref(out);
    json_decref(body);
    json_decref(rec);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_batch_stops_only_the_late_item(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, notes_spec);
    struct store_cond slow = {.sql = SLOW_COND}, quick = {.sql = QUICK_COND};
    json_t *b0 = J("{\"title\":\"first\"}"), *b1 = J("{\"title\":\"late\"}"),
           *b2 = J("{\"title\":\"last\"}");
    struct store_create_item items[3] = {
        {.c = c, .body = b0, .cond = &quick, .deadline_us = passed()}, /* late, but quick */
        {.c = c, .body = b1, .cond = &slow, .deadline_us = passed()},
        {.c = c, .body = b2, .cond = &quick},
    };
    assert_int_equal(store_record_create_batch(fx.st, items, 3), 0);
    assert_int_equal(items[0].rc, ERR_TIMEOUT); /* the quick check still runs past the period */
    assert_int_equal(items[1].rc, ERR_TIMEOUT);
    assert_int_equal(items[2].rc, 0);
    assert_string_equal(json_string_value(json_object_get(items[2].record, "title")), "last");
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM notes"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), 1);
    for (size_t i = 0; i < 3; i++) {
        json_decref(items[i].record);
        json_decref(items[i].errors);
    }
    /* the writer's connection carries no deadline into its next work */
    struct store_list_query q = {.page = 1, .per_page = 30, .where_sql = QUICK_COND};
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    json_decref(res.items);
    json_decref(b0);
    json_decref(b1);
    json_decref(b2);
    store_collection_unref(c);
    fx_close(&fx);
}

struct other {
    struct store *st;
    const struct store_collection *c;
    int rc;
};

static void *list_on_other_thread(void *arg)
{
    struct other *o = arg;
    struct store_list_query q = {.page = 1, .per_page = 30, .where_sql = QUICK_COND};
    struct store_list_result res;
    o->rc = store_record_list(o->st, o->c, &q, &res);
    json_decref(res.items);
    return NULL;
}

static void test_deadline_is_per_thread(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, notes_spec);
    store_deadline(fx.st, passed());
    struct other o = {fx.st, c, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, list_on_other_thread, &o), 0);
    pthread_join(t, NULL);
    assert_int_equal(o.rc, 0);
    store_deadline(fx.st, 0);
    store_collection_unref(c);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_stops_at_deadline),
        cmocka_unit_test(test_write_stops_and_changes_nothing),
        cmocka_unit_test(test_batch_stops_only_the_late_item),
        cmocka_unit_test(test_deadline_is_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
