/* kafka_int.h - the Kafka backend's pieces: the producer side (kafka.c) and the mirror that
 * copies topics into a local log for reading (mirror.c). See docs/scale-out.md. */
#ifndef TANDEM_EVLOG_KAFKA_INT_H
#define TANDEM_EVLOG_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "evlog/evlog_int.h"

#define KAFKA_DEFAULT_PREFIX "tandem-"
#define KAFKA_MAX_MIRRORS 4
#define KAFKA_FAILED_RING 4096 /* failed tickets remembered for late when_durable calls */
#define KAFKA_TICKET_BUCKETS 4096
/* marks the ticket of an append to a node-local topic (the local log's own ticket below it) */
#define KAFKA_LOCAL_TICKET (1ULL << 63)

struct kticket;
struct kmirror;

struct kafka {
    struct evlog base; /* first */
    struct evlog_cfg cfg;
    char prefix[128];
    char brokers[1024];
    char config_path[1024];
    rd_kafka_t *rk; /* the producer */
    pthread_t poller;
    bool poller_started;
    atomic_bool stop;
    atomic_bool down;   /* every broker unreachable: appends answer ERR_BUSY at once */
    atomic_bool fatal;  /* the idempotent producer hit a fatal error: appends refused */
    pthread_mutex_t mu; /* leaf: tickets, topic handles, last_error */
    uint64_t next_ticket;
    struct kticket *buckets[KAFKA_TICKET_BUCKETS];
    uint64_t failed[KAFKA_FAILED_RING];
    size_t n_failed;
    char last_error[256];
    struct {
        char name[65];
        rd_kafka_topic_t *rkt;
    } topics[8];
    size_t n_topics;
    /* the read side */
    struct evlog *mirror; /* the local log every read goes to */
    struct kmirror *mirrors[KAFKA_MAX_MIRRORS];
    size_t n_mirrors;
};

/* Copies the topic prefix, the brokers and the pass-through file's path from cfg into k. */
void kafka__settings(struct kafka *k, const struct evlog_cfg *cfg);
/* Builds a librdkafka configuration: bootstrap servers, the pass-through file, then the
 * fixed settings of the role (producer or consumer). NULL with evlog__errf on failure. */
rd_kafka_conf_t *kafka__conf(const struct kafka *k, bool producer);
/* The topics every node shares through Kafka and the primary mirrors into its local log
 * ("events", "changes"; NULL-terminated). The key table's topic ("keys", evlog_table_*) is
 * produced to Kafka too but read from Kafka only, never mirrored. Every other topic (audit,
 * requests, predictions) is node-local: the node that writes it keeps it in its local log
 * (the mirror's directory), where its readers are. */
extern const char *const kafka__shared_topics[];
bool kafka__topic_shared(const char *topic);
/* Whether appends to topic are produced to Kafka: a shared topic or the key table's. */
bool kafka__topic_produced(const char *topic);
/* "<prefix><topic>" into out. */
void kafka__topic_name(const struct kafka *k, const char *topic, char *out, size_t cap);

/* A consumer in group "<prefix>mirror" (never subscribed: partitions are assigned). */
rd_kafka_t *kafka__new_consumer(const struct kafka *k);
/* The partition count of ktopic; ERR_NOTFOUND when the topic does not exist. */
int kafka__partition_count(rd_kafka_t *rk, const char *ktopic, int *out);

int kafka__mirrors_open(struct kafka *k);
int kafka__mirrors_start(struct kafka *k);
void kafka__mirrors_stop(struct kafka *k);
void kafka__mirrors_json(struct kafka *k, struct buf *out);
/* The partition count of ktopic (metadata through rk); ERR_NOTFOUND when the topic does not
 * exist, ERR_BUSY when the cluster did not answer. */
int kafka__partition_count(rd_kafka_t *rk, const char *ktopic, int *out);
/* Appends the partitions and offsets of the table topic <prefix><topic> to report (for
 * `tandem log check`; a missing topic is reported, not an error). */
void kafka__table_check(struct kafka *k, rd_kafka_t *rk, const char *topic, struct buf *report);
/* The last message of every partition of topic, read from the cluster. */
int kafka__tail(struct kafka *k, const char *topic, struct evlog_batch *out);

#endif
