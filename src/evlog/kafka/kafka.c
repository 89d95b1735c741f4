/* kafka.c - the Kafka backend: appends go to Kafka topics through one idempotent producer
 * (acks=all); a ticket is durable when the delivery reports of all its records came back
 * without error and with the offset the broker gave each record. Reads are served by the local
 * mirror (mirror.c). Only the shared topics (events, changes) and the key table's topic go
 * to Kafka; appends to the node-local ones (audit, requests, predictions) go to the mirror's local
 * log, with its own durability, and their tickets carry KAFKA_LOCAL_TICKET.
 *
 * Tickets: each append gets the next number and a struct kticket counting the records still
 * unreported (plus one while the append itself is producing). The last report completes it
 * and calls its waiters. Unlike the local log, a ticket covers only its own records: one
 * slow partition does not hold back the answers of requests that went elsewhere. A ticket
 * asked about after it completed is found in the ring of recently failed tickets, or else it
 * succeeded. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "evlog/kafka/kafka_int.h"

struct kwaiter {
    evlog_durable_cb cb;
    void *arg;
    struct kwaiter *next;
};

struct kticket {
    uint64_t id;
    atomic_size_t remaining;
    atomic_int rc;
    struct kwaiter *waiters; /* [k->mu] */
    struct kticket *hnext;   /* [k->mu] */
};

const char *const kafka__shared_topics[] = {"events", "changes", NULL};

bool kafka__topic_shared(const char *topic)
{
    for (const char *const *t = kafka__shared_topics; *t; t++)
        if (strcmp(*t, topic) == 0)
            return true;
    return false;
}

void kafka__settings(struct kafka *k, const struct evlog_cfg *cfg)
{
    snprintf(k->prefix, sizeof(k->prefix), "%s",
             cfg->kafka_topic_prefix ? cfg->kafka_topic_prefix : KAFKA_DEFAULT_PREFIX);
    snprintf(k->brokers, sizeof(k->brokers), "%s", cfg->kafka_brokers ? cfg->kafka_brokers : "");
    if (cfg->kafka_config)
        snprintf(k->config_path, sizeof(k->config_path), "%s", cfg->kafka_config);
}

bool kafka__topic_produced(const char *topic)
{
    return kafka__topic_shared(topic) || strcmp(topic, EVLOG_KEYS_TOPIC) == 0;
}

void kafka__topic_name(const struct kafka *k, const char *topic, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", k->prefix, topic);
}

static int conf_set(rd_kafka_conf_t *c, const char *key, const char *value)
{
    char err[256];
    if (rd_kafka_conf_set(c, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        evlog__errf("kafka setting %s: %s", key, err);
        return ERR_INVALID;
    }
    return 0;
}

/* The pass-through file: "key=value" lines; blank lines and lines starting with # skipped. */
static int conf_file(rd_kafka_conf_t *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        evlog__errf("cannot open the kafka configuration %s: %s", path, strerror(errno));
        return ERR_INVALID;
    }
    char line[4096];
    int rc = 0, n = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        n++;
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            evlog__errf("%s:%d: expected key=value", path, n);
            rc = ERR_INVALID;
            break;
        }
        *eq = '\0';
        char *end = eq;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        rc = conf_set(c, p, v);
    }
    fclose(f);
    return rc;
}

rd_kafka_conf_t *kafka__conf(const struct kafka *k, bool producer)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc = conf_set(c, "bootstrap.servers", k->brokers);
    if (rc == 0)
        rc = conf_set(c, "client.id", "tandem");
    /* our own defaults first, so the file can change them... */
    if (rc == 0 && producer) {
        rc = conf_set(c, "linger.ms", "2");
        if (rc == 0) /* a capture request waits this long at most for its reports */
            rc = conf_set(c, "message.timeout.ms", "10000");
    }
    if (rc == 0 && k->config_path[0])
        rc = conf_file(c, k->config_path);
    /* ...but never the guarantees */
    if (rc == 0 && producer) {
        rc = conf_set(c, "enable.idempotence", "true");
        if (rc == 0)
            rc = conf_set(c, "acks", "all");
    }
    if (rc == 0 && !producer) {
        rc = conf_set(c, "enable.auto.commit", "false");
        if (rc == 0) /* a position Kafka no longer has is an error, never a silent reset */
            rc = conf_set(c, "auto.offset.reset", "error");
        if (rc == 0)
            rc = conf_set(c, "enable.partition.eof", "false");
    }
    if (rc != 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

/* ---- tickets ---- */

static struct kticket **bucket(struct kafka *k, uint64_t id)
{
    return &k->buckets[id % KAFKA_TICKET_BUCKETS];
}

/* The last report (or the append) is in: unlink, remember a failure, call the waiters. */
static void complete(struct kafka *k, struct kticket *t)
{
    int rc = atomic_load(&t->rc);
    pthread_mutex_lock(&k->mu);
    for (struct kticket **pp = bucket(k, t->id); *pp; pp = &(*pp)->hnext)
        if (*pp == t) {
            *pp = t->hnext;
            break;
        }
    if (rc != 0)
        k->failed[k->n_failed++ % KAFKA_FAILED_RING] = t->id;
    struct kwaiter *w = t->waiters;
    t->waiters = NULL;
    pthread_mutex_unlock(&k->mu);
    while (w) {
        struct kwaiter *next = w->next;
        w->cb(w->arg, rc);
        free(w);
        w = next;
    }
    free(t);
}

static void release(struct kafka *k, struct kticket *t)
{
    if (atomic_fetch_sub(&t->remaining, 1) == 1)
        complete(k, t);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    UNUSED(rk);
    struct kafka *k = opaque;
    struct kticket *t = m->_private;
    /* A success without an offset is an "implicit ack": a request failed with an uncertain
     * outcome (a timeout, a lost connection) and a later one for the same partition
     * succeeded, from which librdkafka concludes that the broker, which enforces the
     * idempotent producer's sequence, stored the first one. A broker that does not enforce
     * it (librdkafka's mock cluster, without a transactional id) appends the later request
     * anyway, and the messages were never stored. Only a reported offset confirms: here the
     * request is answered 503, and the client's retry is a duplicate the mirror drops when
     * the first copy did land. */
    if (m->err || m->offset < 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&t->rc, &zero, ERR_BUSY);
        pthread_mutex_lock(&k->mu);
        if (m->err)
            snprintf(k->last_error, sizeof(k->last_error), "kafka delivery failed: %s",
                     rd_kafka_err2str(m->err));
        else
            snprintf(k->last_error, sizeof(k->last_error),
                     "kafka delivery not confirmed: no offset reported");
        pthread_mutex_unlock(&k->mu);
    } else {
        atomic_store(&k->down, false);
    }
    release(k, t);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&k->down, true);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[256];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        atomic_store(&k->fatal, true);
        xlog_error("kafka producer: fatal error: %s; appends are refused until restart", why);
    } else {
        xlog_warn("kafka: %s", reason);
    }
    pthread_mutex_lock(&k->mu);
    snprintf(k->last_error, sizeof(k->last_error), "kafka: %s", reason);
    pthread_mutex_unlock(&k->mu);
}

/* Serves delivery reports; while the cluster is down, probes it every second. */
static void *poller_main(void *arg)
{
    struct kafka *k = arg;
    int64_t last_probe = 0;
    while (!atomic_load(&k->stop)) {
        rd_kafka_poll(k->rk, 100);
        if (atomic_load(&k->down) && time_mono_us() - last_probe > 1000000) {
            last_probe = time_mono_us();
            const struct rd_kafka_metadata *md = NULL;
            if (rd_kafka_metadata(k->rk, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (md->broker_cnt > 0)
                    atomic_store(&k->down, false);
                rd_kafka_metadata_destroy(md);
            }
        }
    }
    return NULL;
}

/* ---- ops ---- */

static void kafka_close(struct evlog *lg);

static int kafka_open(const struct evlog_cfg *cfg, struct evlog **out)
{
    if (!cfg->kafka_brokers || !cfg->kafka_brokers[0]) {
        evlog__errf("the kafka event log needs --kafka-brokers");
        return ERR_INVALID;
    }
    struct kafka *k = xcalloc(1, sizeof(*k));
    k->base.ops = &evlog_kafka_ops;
    k->cfg = *cfg;
    kafka__settings(k, cfg);
    pthread_mutex_init(&k->mu, NULL);
    atomic_init(&k->stop, false);
    atomic_init(&k->down, false);
    atomic_init(&k->fatal, false);

    rd_kafka_conf_t *c = kafka__conf(k, true);
    char err[512];
    int rc = c ? 0 : ERR_INVALID;
    if (rc == 0) {
        rd_kafka_conf_set_opaque(c, k);
        rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
        rd_kafka_conf_set_error_cb(c, on_error);
        k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        if (!k->rk) {
            rd_kafka_conf_destroy(c);
            evlog__errf("cannot create the kafka producer: %s", err);
            rc = ERR_INVALID;
        }
    }
    if (rc == 0) {
        int e = pthread_create(&k->poller, NULL, poller_main, k);
        if (e != 0) {
            evlog__errf("cannot start the kafka poller: %s", strerror(e));
            rc = -e;
        } else {
            k->poller_started = true;
        }
    }
    if (rc == 0 && cfg->dir) { /* the local mirror every read goes to */
        struct evlog_cfg lc = *cfg;
        lc.backend = "local";
        rc = evlog_local_ops.open(&lc, &k->mirror);
    }
    if (rc == 0)
        rc = kafka__mirrors_open(k);
    if (rc == 0)
        rc = kafka__mirrors_start(k);
    if (rc != 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", evlog__errmsg());
        kafka_close(&k->base);
        evlog__errf("%s", msg);
        return rc;
    }
    *out = &k->base;
    return 0;
}

static void kafka_close(struct evlog *lg)
{
    struct kafka *k = (struct kafka *)lg;
    kafka__mirrors_stop(k);
    if (k->rk) {
        /* deliver what is queued (bounded), then fail what is left so every waiter is told */
        rd_kafka_flush(k->rk, 10000);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->rk, 1000);
    }
    atomic_store(&k->stop, true);
    if (k->poller_started)
        pthread_join(k->poller, NULL);
    if (k->rk) {
        rd_kafka_poll(k->rk, 0);
        for (size_t i = 0; i < k->n_topics; i++)
            rd_kafka_topic_destroy(k->topics[i].rkt);
        rd_kafka_destroy(k->rk);
    }
    if (k->mirror)
        evlog_local_ops.close(k->mirror);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* Reads go to the mirror; a node without one (a capture node) has nothing to read. */
static int no_mirror(void)
{
    evlog__errf("this node keeps no mirror of the kafka topics");
    return ERR_NOTFOUND;
}

static rd_kafka_topic_t *topic_handle(struct kafka *k, const char *topic)
{
    rd_kafka_topic_t *rkt = NULL;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->n_topics && !rkt; i++)
        if (strcmp(k->topics[i].name, topic) == 0)
            rkt = k->topics[i].rkt;
    if (!rkt && k->n_topics < ARRAY_LEN(k->topics)) {
        char name[256];
        kafka__topic_name(k, topic, name, sizeof(name));
        rkt = rd_kafka_topic_new(k->rk, name, NULL);
        if (rkt) {
            snprintf(k->topics[k->n_topics].name, sizeof(k->topics[0].name), "%s", topic);
            k->topics[k->n_topics++].rkt = rkt;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return rkt;
}

static int kafka_append_keyed(struct evlog *lg, const char *topic, const struct evlog_rec *recs,
                              const struct evlog_key *keys, size_t n, uint64_t *first_offset_out,
                              uint64_t *ticket_out)
{
    struct kafka *k = (struct kafka *)lg;
    if (!evlog_name_valid(topic) || n == 0) {
        evlog__errf("bad topic name or empty batch");
        return ERR_INVALID;
    }
    if (!kafka__topic_produced(topic)) { /* node-local: the local log, its ticket marked */
        if (!k->mirror)
            return no_mirror();
        int rc = evlog_local_ops.append(k->mirror, topic, recs, n, first_offset_out, ticket_out);
        if (rc == 0 && ticket_out)
            *ticket_out |= KAFKA_LOCAL_TICKET;
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (recs[i].len > k->cfg.max_record_bytes) {
            evlog__errf("record of %zu bytes exceeds the maximum of %u", recs[i].len,
                        k->cfg.max_record_bytes);
            return ERR_LIMIT;
        }
    if (atomic_load(&k->fatal)) {
        evlog__errf("the kafka producer failed; restart to append again");
        return ERR_IO;
    }
    if (atomic_load(&k->down)) {
        evlog__errf("no kafka broker is reachable");
        return ERR_BUSY;
    }
    rd_kafka_topic_t *rkt = topic_handle(k, topic);
    if (!rkt) {
        evlog__errf("cannot use kafka topic %s%s", k->prefix, topic);
        return ERR_BUSY;
    }
    struct kticket *t = xcalloc(1, sizeof(*t));
    atomic_init(&t->remaining, 1); /* the append's own hold */
    atomic_init(&t->rc, 0);
    pthread_mutex_lock(&k->mu);
    t->id = ++k->next_ticket;
    struct kticket **b = bucket(k, t->id);
    t->hnext = *b;
    *b = t;
    pthread_mutex_unlock(&k->mu);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add(&t->remaining, 1);
        int e =
            rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)recs[i].data,
                             recs[i].len, keys ? keys[i].data : NULL, keys ? keys[i].len : 0, t);
        if (e != 0) {
            rd_kafka_resp_err_t err = rd_kafka_last_error();
            atomic_fetch_sub(&t->remaining, 1);
            /* the records produced so far may still arrive: a retry of this request is a
             * duplicate then, which the mirror's filter drops */
            evlog__errf("kafka: %s", rd_kafka_err2str(err));
            rc = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? ERR_LIMIT : ERR_BUSY;
            atomic_store(&t->rc, rc);
            break;
        }
    }
    *first_offset_out = 0; /* Kafka assigns offsets per partition, on delivery */
    *ticket_out = t->id;
    release(k, t);
    return rc;
}

static int kafka_append(struct evlog *lg, const char *topic, const struct evlog_rec *recs, size_t n,
                        uint64_t *first_offset_out, uint64_t *ticket_out)
{
    return kafka_append_keyed(lg, topic, recs, NULL, n, first_offset_out, ticket_out);
}

static void kafka_when_durable(struct evlog *lg, uint64_t ticket, evlog_durable_cb cb, void *arg)
{
    struct kafka *k = (struct kafka *)lg;
    if (ticket & KAFKA_LOCAL_TICKET) { /* a node-local topic's append */
        evlog_local_ops.when_durable(k->mirror, ticket & ~KAFKA_LOCAL_TICKET, cb, arg);
        return;
    }
    struct kwaiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&k->mu);
    for (struct kticket *t = *bucket(k, ticket); t; t = t->hnext)
        if (t->id == ticket) {
            w->next = t->waiters;
            t->waiters = w;
            pthread_mutex_unlock(&k->mu);
            return;
        }
    int rc = 0;
    size_t n = k->n_failed < KAFKA_FAILED_RING ? k->n_failed : KAFKA_FAILED_RING;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (k->failed[i] == ticket)
            rc = ERR_BUSY;
    if (ticket == 0 || ticket > k->next_ticket)
        rc = ERR_INVALID;
    pthread_mutex_unlock(&k->mu);
    free(w);
    cb(arg, rc);
}

struct syncwait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
};

static void sync_done(void *arg, int rc)
{
    struct syncwait *s = arg;
    pthread_mutex_lock(&s->mu);
    s->done = true;
    s->rc = rc;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int kafka_wait_durable(struct evlog *lg, uint64_t ticket)
{
    if (ticket & KAFKA_LOCAL_TICKET)
        return evlog_local_ops.wait_durable(((struct kafka *)lg)->mirror,
                                            ticket & ~KAFKA_LOCAL_TICKET);
    struct syncwait s = {.done = false};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    kafka_when_durable(lg, ticket, sync_done, &s);
    pthread_mutex_lock(&s.mu);
    while (!s.done)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    if (s.rc != 0) {
        struct kafka *k = (struct kafka *)lg;
        pthread_mutex_lock(&k->mu);
        evlog__errf("%s", k->last_error[0] ? k->last_error : "kafka delivery failed");
        pthread_mutex_unlock(&k->mu);
    }
    return s.rc;
}

static int kafka_read(struct evlog *lg, const char *topic, uint64_t from, size_t max_records,
                      size_t max_bytes, struct evlog_batch *out)
{
    struct kafka *k = (struct kafka *)lg;
    if (!k->mirror)
        return no_mirror();
    return evlog_local_ops.read(k->mirror, topic, from, max_records, max_bytes, out);
}

static int kafka_end_offset(struct evlog *lg, const char *topic, uint64_t *out)
{
    struct kafka *k = (struct kafka *)lg;
    *out = 0;
    return k->mirror ? evlog_local_ops.end_offset(k->mirror, topic, out) : 0;
}

static int kafka_start_offset(struct evlog *lg, const char *topic, uint64_t *out)
{
    struct kafka *k = (struct kafka *)lg;
    *out = 0;
    return k->mirror ? evlog_local_ops.start_offset(k->mirror, topic, out) : 0;
}

static int kafka_consumer_commit(struct evlog *lg, const char *consumer, const char *topic,
                                 uint64_t next_offset)
{
    struct kafka *k = (struct kafka *)lg;
    if (!k->mirror)
        return no_mirror();
    return evlog_local_ops.consumer_commit(k->mirror, consumer, topic, next_offset);
}

static int kafka_consumer_get(struct evlog *lg, const char *consumer, const char *topic,
                              uint64_t *next_offset_out)
{
    struct kafka *k = (struct kafka *)lg;
    if (!k->mirror)
        return no_mirror();
    return evlog_local_ops.consumer_get(k->mirror, consumer, topic, next_offset_out);
}

static int kafka_consumer_remove(struct evlog *lg, const char *consumer)
{
    struct kafka *k = (struct kafka *)lg;
    return k->mirror ? evlog_local_ops.consumer_remove(k->mirror, consumer) : 0;
}

static int kafka_retain(struct evlog *lg)
{
    struct kafka *k = (struct kafka *)lg;
    return k->mirror ? evlog_local_ops.retain(k->mirror) : 0;
}

static const char *kafka_errmsg(struct evlog *lg)
{
    UNUSED(lg);
    return evlog__errmsg();
}

static int kafka_tail(struct evlog *lg, const char *topic, struct evlog_batch *out)
{
    struct kafka *k = (struct kafka *)lg;
    if (!kafka__topic_shared(topic)) /* node-local */
        return k->mirror ? evlog_tail(k->mirror, topic, out) : no_mirror();
    return kafka__tail(k, topic, out);
}

const struct evlog_ops evlog_kafka_ops = {
    .name = "kafka",
    .open = kafka_open,
    .close = kafka_close,
    .append = kafka_append,
    .when_durable = kafka_when_durable,
    .wait_durable = kafka_wait_durable,
    .read = kafka_read,
    .end_offset = kafka_end_offset,
    .start_offset = kafka_start_offset,
    .consumer_commit = kafka_consumer_commit,
    .consumer_get = kafka_consumer_get,
    .consumer_remove = kafka_consumer_remove,
    .retain = kafka_retain,
    .errmsg = kafka_errmsg,
    .tail = kafka_tail,
    .append_keyed = kafka_append_keyed,
};

void evlog_kafka_partitions_json(struct evlog *log, struct buf *out)
{
    if (log->ops != &evlog_kafka_ops) {
        buf_puts(out, "[]");
        return;
    }
    kafka__mirrors_json((struct kafka *)log, out);
}
