/* table.c - a table kept in a compacted Kafka topic, followed from its beginning (see
 * evlog_table_open in evlog.h). Write keys reach capture nodes this way (docs/scale-out.md).
 *
 * One consumer thread per table: it finds the topic's partitions and their ends (high
 * watermarks), assigns every partition at its beginning, and hands each record to the
 * caller. The table is ready when every partition was read up to the end it had when the
 * thread started. Nothing is committed to Kafka: every start reads the whole topic again,
 * which a compacted topic keeps small (one record per key). A position that retention or
 * compaction removed restarts the partition at its earliest record (auto.offset.reset
 * earliest): the records are states, not changes, so reading one again is harmless. */
#include <string.h>

#include "evlog/kafka/kafka_int.h"

#define TABLE_TIMEOUT_MS 5000
#define TABLE_RETRY_US 1000000
#define TABLE_LOOK_US 10000000 /* how often the partition count is read again */

struct evlog_table {
    struct kafka *k;
    char ktopic[256];
    evlog_table_record_cb on_record;
    void *arg;
    rd_kafka_t *rk; /* the table thread's only */
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool ready;
    atomic_bool missing;
};

/* Sleeps up to us, waking early when the table stops. */
static void nap(struct evlog_table *t, int64_t us)
{
    int64_t until = time_mono_us() + us;
    while (!atomic_load(&t->stop) && time_mono_us() < until) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static rd_kafka_t *table_consumer(struct kafka *k)
{
    rd_kafka_conf_t *c = kafka__conf(k, false);
    if (!c)
        return NULL;
    char group[200], err[512];
    snprintf(group, sizeof(group), "%stable", k->prefix); /* never joined nor committed */
    if (rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(c, "auto.offset.reset", "earliest", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(c);
        xlog_error("kafka table: %s", err);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(c);
        xlog_error("cannot create a kafka consumer: %s", err);
    }
    return rk;
}

/* Reads the partitions and their ends, then assigns every partition at its beginning.
 * *n_out partitions; (*ends_out)[p] the end to reach, -1 when the partition is empty. */
static int table_setup(struct evlog_table *t, int *n_out, int64_t **ends_out)
{
    int n = 0;
    int rc = kafka__partition_count(t->rk, t->ktopic, &n);
    atomic_store(&t->missing, rc == ERR_NOTFOUND);
    if (rc != 0)
        return rc;
    int64_t *ends = xcalloc((size_t)n, sizeof(*ends));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; rc == 0 && p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(t->rk, t->ktopic, p, &lo, &hi, TABLE_TIMEOUT_MS);
        if (err) {
            evlog__errf("watermarks of %s[%d]: %s", t->ktopic, p, rd_kafka_err2str(err));
            rc = ERR_BUSY;
        }
        ends[p] = hi > lo ? hi : -1;
        rd_kafka_topic_partition_list_add(l, t->ktopic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    if (rc == 0 && rd_kafka_assign(t->rk, l) != 0) {
        evlog__errf("cannot assign the partitions of %s", t->ktopic);
        rc = ERR_BUSY;
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (rc != 0) {
        free(ends);
        return rc;
    }
    *n_out = n;
    *ends_out = ends;
    return 0;
}

static bool reached(const int64_t *ends, int n)
{
    for (int p = 0; p < n; p++)
        if (ends[p] >= 0)
            return false;
    return true;
}

/* Partitions added to the topic while it is followed are read from their beginning; the
 * others go on from where they are (next[p]: the offset after the last record delivered). */
static void follow_new_partitions(struct evlog_table *t, int *n, int64_t **ends, int64_t **next)
{
    int now = 0;
    if (kafka__partition_count(t->rk, t->ktopic, &now) != 0 || now <= *n)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(now);
    for (int p = 0; p < now; p++)
        rd_kafka_topic_partition_list_add(l, t->ktopic, p)->offset =
            p < *n ? (*next)[p] : RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(t->rk, l) == 0) {
        *ends = xrealloc(*ends, (size_t)now * sizeof(**ends));
        *next = xrealloc(*next, (size_t)now * sizeof(**next));
        for (int p = *n; p < now; p++) {
            (*ends)[p] = -1; /* readiness was about the partitions found at start */
            (*next)[p] = RD_KAFKA_OFFSET_BEGINNING;
        }
        xlog_info("kafka table %s: now %d partitions (was %d)", t->ktopic, now, *n);
        *n = now;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void *table_main(void *arg)
{
    struct evlog_table *t = arg;
    int n = 0;
    int64_t *ends = NULL, *next = NULL;
    int64_t last_warn = 0, last_look = time_mono_us();
    while (!atomic_load(&t->stop)) {
        if (table_setup(t, &n, &ends) == 0)
            break;
        if (time_mono_us() - last_warn > 30 * 1000000LL) {
            last_warn = time_mono_us();
            xlog_warn("kafka table %s: %s; retrying every second", t->ktopic, evlog__errmsg());
        }
        nap(t, TABLE_RETRY_US);
    }
    next = xcalloc((size_t)(n > 0 ? n : 1), sizeof(*next));
    for (int p = 0; p < n; p++)
        next[p] = RD_KAFKA_OFFSET_BEGINNING;
    while (!atomic_load(&t->stop)) {
        if (time_mono_us() - last_look > TABLE_LOOK_US) {
            last_look = time_mono_us();
            follow_new_partitions(t, &n, &ends, &next);
        }
        if (!atomic_load(&t->ready) && reached(ends, n)) {
            atomic_store(&t->ready, true);
            t->on_record(t->arg, NULL, 0, NULL, 0);
            xlog_info("kafka table %s: read to its end (%d partitions)", t->ktopic, n);
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(t->rk, 200);
        if (!msg)
            continue;
        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                time_mono_us() - last_warn > 30 * 1000000LL) {
                last_warn = time_mono_us();
                xlog_warn("kafka table %s: %s", t->ktopic, rd_kafka_message_errstr(msg));
            }
        } else {
            t->on_record(t->arg, msg->key, msg->key_len, msg->payload, msg->payload ? msg->len : 0);
            int p = msg->partition;
            if (p >= 0 && p < n) {
                next[p] = msg->offset + 1;
                if (ends[p] >= 0 && msg->offset + 1 >= ends[p])
                    ends[p] = -1;
            }
        }
        rd_kafka_message_destroy(msg);
    }
    free(ends);
    free(next);
    return NULL;
}

int evlog_table_open(struct evlog *log, const char *topic, evlog_table_record_cb on_record,
                     void *arg, struct evlog_table **out)
{
    if (log->ops != &evlog_kafka_ops) {
        evlog__errf("a table topic needs the kafka event log");
        return ERR_INVALID;
    }
    struct kafka *k = (struct kafka *)log;
    struct evlog_table *t = xcalloc(1, sizeof(*t));
    t->k = k;
    kafka__topic_name(k, topic, t->ktopic, sizeof(t->ktopic));
    t->on_record = on_record;
    t->arg = arg;
    atomic_init(&t->stop, false);
    atomic_init(&t->ready, false);
    atomic_init(&t->missing, false);
    t->rk = table_consumer(k);
    if (!t->rk) {
        free(t);
        evlog__errf("cannot create the consumer of %s", topic);
        return ERR_INVALID;
    }
    int e = pthread_create(&t->thread, NULL, table_main, t);
    if (e != 0) {
        rd_kafka_destroy(t->rk);
        free(t);
        evlog__errf("cannot start the table thread: %s", strerror(e));
        return -e;
    }
    t->started = true;
    *out = t;
    return 0;
}

bool evlog_table_ready(struct evlog_table *t)
{
    return atomic_load(&t->ready);
}

bool evlog_table_missing(struct evlog_table *t)
{
    return atomic_load(&t->missing);
}

void evlog_table_close(struct evlog_table *t)
{
    if (!t)
        return;
    atomic_store(&t->stop, true);
    if (t->started)
        pthread_join(t->thread, NULL);
    rd_kafka_consumer_close(t->rk);
    rd_kafka_destroy(t->rk);
    free(t);
}

void kafka__table_check(struct kafka *k, rd_kafka_t *rk, const char *topic, struct buf *report)
{
    char ktopic[256];
    kafka__topic_name(k, topic, ktopic, sizeof(ktopic));
    int n = 0;
    if (kafka__partition_count(rk, ktopic, &n) != 0) {
        buf_printf(report, "%s: %s (capture nodes cannot take events without it)\n", ktopic,
                   evlog__errmsg());
        return;
    }
    buf_printf(report, "%s: %d partition%s (compacted, read by capture nodes)\n", ktopic, n,
               n == 1 ? "" : "s");
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, ktopic, p, &lo, &hi, TABLE_TIMEOUT_MS);
        if (err)
            buf_printf(report, "  partition %d: %s\n", p, rd_kafka_err2str(err));
        else
            buf_printf(report, "  partition %d: offsets %lld..%lld\n", p, (long long)lo,
                       (long long)hi);
    }
}
