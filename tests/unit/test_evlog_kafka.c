/* test_evlog_kafka.c - the Kafka backend against librdkafka's mock cluster (in process, over
 * TCP on 127.0.0.1): node-local topics stay in the local log, and `tandem log migrate`'s
 * half (evlog_kafka_migrate) pins the copy, is idempotent and refuses foreign messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "evlog_testlib.h"

struct fixture {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    char bootstrap[512];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "log_level", "0", err, sizeof(err));
    f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    assert_non_null(f->rk);
    f->mc = rd_kafka_mock_cluster_new(f->rk, 1);
    assert_non_null(f->mc);
    snprintf(f->bootstrap, sizeof(f->bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(f->mc));
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "tandem-events", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "tandem-changes", 2, 1), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->rk);
    free(f);
    return 0;
}

static void kcfg(struct evlog_cfg *cfg, const struct fixture *f, const char *tmp, char *dir,
                 size_t len)
{
    tl_cfg(cfg, tmp, dir, len);
    cfg->backend = "kafka";
    cfg->kafka_brokers = f->bootstrap;
}

static void durable_cb(void *arg, int rc)
{
    *(int *)arg = rc;
}

/* audit, requests, predictions: appended to the local log, readable at once; events to Kafka */
static void test_node_local_topics(void **state)
{
    struct fixture *f = *state;
    char *tmp = tl_tmpdir("kafka-local");
    char dir[4200];
    struct evlog_cfg cfg;
    kcfg(&cfg, f, tmp, dir, sizeof(dir));
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&cfg, &log), 0);
    struct evlog_rec r = {.data = "{\"a\":1}", .len = 7};
    uint64_t first = 99, ticket = 0;
    assert_int_equal(evlog_append(log, "audit", &r, 1, &first, &ticket), 0);
    assert_int_equal(first, 0);
    assert_int_equal(evlog_wait_durable(log, ticket), 0);
    int rc = -1;
    evlog_when_durable(log, ticket, durable_cb, &rc);
    assert_int_equal(rc, 0);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(log, "audit", 0, 10, 1 << 20, &b), 0);
    assert_int_equal(b.n, 1);
    assert_memory_equal(b.recs[0].data, "{\"a\":1}", 7);
    assert_int_equal(evlog_tail(log, "audit", &b), 0);
    assert_int_equal(b.n, 1);
    /* a shared topic goes to Kafka: durable by its delivery report, not in the local log */
    struct evlog_key k = {.data = "u1", .len = 2};
    assert_int_equal(evlog_append_keyed_sync(log, "events", &r, &k, 1, &first), 0);
    uint64_t end = 9;
    assert_int_equal(evlog_end_offset(log, "events", &end), 0);
    assert_int_equal(end, 0);
    assert_int_equal(evlog_tail(log, "events", &b), 0); /* read from the cluster */
    assert_int_equal(b.n, 1);
    evlog_batch_release(&b);
    evlog_close(log);
    tl_rmrf(tmp);
    free(tmp);
}

static uint64_t topic_end(struct evlog *log, const char *topic)
{
    uint64_t end = 0;
    assert_int_equal(evlog_end_offset(log, topic, &end), 0);
    return end;
}

/* A local log with events, migrated: one pinning record, twice the same; the mirror then
 * appends what Kafka gets after the local records; another directory is refused. */
static void test_migrate(void **state)
{
    struct fixture *f = *state;
    char *tmp = tl_tmpdir("kafka-migrate");
    char dir[4200];
    struct evlog_cfg cfg;
    tl_cfg(&cfg, tmp, dir, sizeof(dir));
    struct evlog *local = NULL;
    assert_int_equal(evlog_open(&cfg, &local), 0);
    struct evlog_rec recs[3] = {{"{\"messageId\":\"l1\"}", 18},
                                {"{\"messageId\":\"l2\"}", 18},
                                {"{\"messageId\":\"l3\"}", 18}};
    uint64_t first = 0;
    assert_int_equal(evlog_append_sync(local, "events", recs, 3, &first), 0);
    /* topics of this test's own (the other test produced to tandem-events) */
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "mig-events", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "mig-changes", 2, 1), 0);
    struct evlog_cfg kc;
    kcfg(&kc, f, tmp, dir, sizeof(dir));
    kc.kafka_topic_prefix = "mig-";
    FILE *out = fopen("/dev/null", "w");
    assert_int_equal(evlog_kafka_migrate(local, &kc, out), 0);
    assert_int_equal(topic_end(local, "kafka-events"), 1);
    assert_int_equal(topic_end(local, "kafka-changes"), 1);
    assert_int_equal(evlog_kafka_migrate(local, &kc, out), 0); /* again: nothing to do */
    assert_int_equal(topic_end(local, "kafka-events"), 1);
    evlog_close(local);

    /* served on Kafka: a produced event lands after the three local ones */
    static const char *const mirrored[] = {"events", "changes", NULL};
    kc.kafka_mirror_topics = mirrored;
    struct evlog *log = NULL;
    assert_int_equal(evlog_open(&kc, &log), 0);
    struct evlog_rec r = {"{\"messageId\":\"k1\"}", 18};
    struct evlog_key key = {"u", 1};
    assert_int_equal(evlog_append_keyed_sync(log, "events", &r, &key, 1, &first), 0);
    for (int i = 0; i < 3000 && topic_end(log, "events") < 4; i++)
        usleep(10000);
    assert_int_equal(topic_end(log, "events"), 4);
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(log, "events", 3, 10, 1 << 20, &b), 0);
    assert_int_equal(b.n, 1);
    assert_memory_equal(b.recs[0].data, r.data, r.len);
    evlog_batch_release(&b);
    evlog_close(log);

    /* another directory: mig-events holds a message it never copied */
    char *tmp2 = tl_tmpdir("kafka-migrate2");
    char dir2[4200];
    tl_cfg(&cfg, tmp2, dir2, sizeof(dir2));
    assert_int_equal(evlog_open(&cfg, &local), 0);
    kcfg(&kc, f, tmp2, dir2, sizeof(dir2));
    kc.kafka_topic_prefix = "mig-";
    assert_int_equal(evlog_kafka_migrate(local, &kc, out), ERR_CONFLICT);
    assert_int_equal(topic_end(local, "kafka-events"), 0);
    evlog_close(local);
    fclose(out);
    tl_rmrf(tmp);
    tl_rmrf(tmp2);
    free(tmp);
    free(tmp2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_local_topics),
        cmocka_unit_test(test_migrate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
