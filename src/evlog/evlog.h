/* evlog.h - the durable event log: ordered, replayable topics of records.
 *
 * A log holds named topics ("events", "changes"); each topic is a dense sequence of records
 * numbered from 0 (the offset). Appending returns the first offset of the batch and a ticket;
 * the records are *durable* once the sync that covers the ticket has finished. Only durable
 * records are visible to readers, so a reader never sees a record that could still be lost.
 *
 * Backends sit behind struct evlog_ops; the rest of tandem calls the evlog_* facade only.
 * "local" (src/evlog/local/) keeps segment files in a directory; docs/evlog.md describes its
 * on-disk format, durability contract and recovery rules. "kafka" (src/evlog/kafka/) appends
 * to Kafka topics and reads from a local mirror of them; docs/scale-out.md describes it.
 *
 * Error codes (besides -errno):
 *   ERR_INVALID   bad topic/consumer name, empty batch, offset beyond the end
 *   ERR_LIMIT     a record or batch larger than the configured maximum (answer 413)
 *   ERR_BUSY      the disk is full (ENOSPC, EDQUOT, EFBIG): nothing was written or
 *                 acknowledged; the partial write was cut away. Answer 503 + Retry-After.
 *                 Later appends try again, so writes resume when space returns.
 *                 evlog_open: another process has the log directory open.
 *   ERR_IO        a write or a sync failed: the log refuses every further append and every
 *                 pending ticket fails. Never retried (the kernel may have dropped the
 *                 dirty pages); a restart recovers from what is on disk. Answer 503.
 *   ERR_NOTFOUND  reading an offset that retention already deleted, or an unknown topic
 *   ERR_CORRUPT   stored data fails its checks (open, read, check); evlog_errmsg() names
 *                 the segment file and byte offset
 *
 * Threads: a struct evlog is shared by every thread. evlog_append, evlog_when_durable,
 * evlog_wait_durable, evlog_read, evlog_end_offset, evlog_start_offset and the consumer
 * functions may be called from any thread at the same time. evlog_open and evlog_close run
 * on one thread while no other thread uses the log. Each log owns one flusher thread that
 * syncs appended data (group commit), runs retention and calls durable callbacks.
 * Appenders hold the log's leaf lock only to assign offsets and copy their records into the
 * page cache; no lock is held across a sync or a callback. */
#ifndef TANDEM_EVLOG_EVLOG_H
#define TANDEM_EVLOG_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

/* ---- configuration ---- */

enum evlog_fsync {
    /* sync as soon as anything is pending: lowest latency, one fdatasync per group that
     * formed while the previous sync ran */
    EVLOG_FSYNC_ALWAYS,
    /* at most one sync every sync_interval_us: larger groups, fewer syncs (default) */
    EVLOG_FSYNC_BATCH,
    /* never sync record data: durable = written to the page cache. Survives a process
     * crash, not a power loss or kernel crash */
    EVLOG_FSYNC_NEVER,
};

/* "always", "batch" or "never" -> policy; ERR_INVALID otherwise. */
int evlog_fsync_parse(const char *text, enum evlog_fsync *out) MUST_USE;
const char *evlog_fsync_name(enum evlog_fsync policy);

struct evlog_cfg {
    const char *backend;        /* "local" (NULL means "local") */
    const char *dir;            /* local: the log directory, e.g. "<--dir>/log"; created */
    enum evlog_fsync fsync;     /* default EVLOG_FSYNC_BATCH */
    uint64_t segment_bytes;     /* roll the active segment past this size */
    uint64_t retention_bytes;   /* per topic; 0 = unlimited */
    int64_t retention_age_us;   /* delete segments last written longer ago; 0 = forever */
    int64_t retention_check_us; /* how often the flusher runs retention (default 1 s) */
    int64_t sync_interval_us;   /* batch: least time between two syncs, so the longest a group
                                 * waits to grow; 0..50 ms */
    uint32_t max_record_bytes;  /* largest payload accepted (ERR_LIMIT above) */
    bool verify_all;            /* open checks every segment, not only the last one */
    /* kafka: the cluster, the topic names ("<prefix><topic>") and librdkafka's own settings
     * (a file of key=value lines: security.protocol, sasl.*, ssl.*, ...) */
    const char *kafka_brokers;
    const char *kafka_topic_prefix; /* NULL means "tandem-" */
    const char *kafka_config;       /* NULL: none */
    /* kafka: the topics copied into the local log at dir, which serves every read (NULL: none,
     * a node that only appends). Copying starts once mirror_gate() says so (NULL: at once),
     * so the caller can first rebuild what the filter needs from evlog_read. */
    const char *const *kafka_mirror_topics;
    bool (*mirror_gate)(void);
    /* kafka: asked for each record of "events" before it is copied; *drop set = a retry that
     * already reached the log through another capture node. NULL: keep everything. */
    int (*mirror_filter)(void *arg, const char *topic, const void *data, size_t len, bool *drop);
    void *mirror_filter_arg;
    /* kafka: a record's sequence number for topics whose one producer resends in sequence
     * order after a failure (the outbox relay's ids on "changes"), or -1. The mirror drops a
     * record whose number is not above the last one copied from its partition. NULL: none. */
    int64_t (*mirror_seq)(const char *topic, const void *data, size_t len);
};

/* Defaults: local, batch, 128 MiB segments, no retention (checked every second), 2 ms sync
 * interval, 16 MiB records. */
void evlog_cfg_defaults(struct evlog_cfg *cfg);

/* ---- records and batches ---- */

/* One record to append: the payload bytes, borrowed for the duration of the call. */
struct evlog_rec {
    const void *data;
    size_t len;
};

/* A record's key (evlog_append_keyed): records with the same key keep their order on a
 * partitioned backend (Kafka); the local log keeps one order for the whole topic. data NULL:
 * no key (the backend places the record). */
struct evlog_key {
    const void *data;
    size_t len;
};

/* One record read back. data points into the batch's buffer. */
struct evlog_rec_view {
    uint64_t offset;
    int64_t timestamp_us; /* when it was appended (wall clock) */
    const uint8_t *data;
    size_t len;
};

/* The result of evlog_read. Touched by one thread at a time; reusable across reads (each
 * read replaces the contents). */
struct evlog_batch {
    struct evlog_rec_view *recs;
    size_t n;
    uint64_t next_offset; /* where the next read continues: last offset + 1, or from */
    /* internal */
    size_t cap;
    uint8_t *mem;
    size_t mem_len, mem_cap;
};

void evlog_batch_init(struct evlog_batch *b);
void evlog_batch_release(struct evlog_batch *b);

/* Called exactly once per evlog_when_durable registration with rc = 0 (durable) or a
 * negative error (ERR_IO: the covering sync failed; the records may be lost). Runs on the
 * flusher thread, or on the registering thread when the answer is already known. It must
 * not block for long: it may call evlog_append, evlog_when_durable and evlog_read, but
 * never evlog_wait_durable (the flusher would wait for itself) or evlog_close. */
typedef void (*evlog_durable_cb)(void *arg, int rc);

/* Where a snapshot ends one topic: records below offset only. */
struct evlog_cut {
    const char *topic;
    uint64_t offset;
};

/* Decides whether one record is erased by evlog_erase: true erases it. rec is borrowed for
 * the call. Called on the erasing thread, never for a record already erased. */
typedef bool (*evlog_erase_cb)(void *arg, const struct evlog_rec_view *rec);

/* ---- the backend interface ---- */

struct evlog;

struct evlog_ops {
    const char *name; /* "local", later "kafka" */
    int (*open)(const struct evlog_cfg *cfg, struct evlog **out);
    void (*close)(struct evlog *log);
    int (*append)(struct evlog *log, const char *topic, const struct evlog_rec *recs, size_t n,
                  uint64_t *first_offset_out, uint64_t *ticket_out);
    void (*when_durable)(struct evlog *log, uint64_t ticket, evlog_durable_cb cb, void *arg);
    int (*wait_durable)(struct evlog *log, uint64_t ticket);
    int (*read)(struct evlog *log, const char *topic, uint64_t from, size_t max_records,
                size_t max_bytes, struct evlog_batch *out);
    int (*end_offset)(struct evlog *log, const char *topic, uint64_t *out);
    int (*start_offset)(struct evlog *log, const char *topic, uint64_t *out);
    int (*consumer_commit)(struct evlog *log, const char *consumer, const char *topic,
                           uint64_t next_offset);
    int (*consumer_get)(struct evlog *log, const char *consumer, const char *topic,
                        uint64_t *next_offset_out);
    int (*consumer_remove)(struct evlog *log, const char *consumer);
    int (*retain)(struct evlog *log);
    int (*snapshot)(struct evlog *log, const char *dest_dir, const struct evlog_cut *cuts,
                    size_t n_cuts);
    int (*erase)(struct evlog *log, const char *topic, uint64_t end, evlog_erase_cb match,
                 void *arg, uint64_t *n_erased_out);
    const char *(*errmsg)(struct evlog *log);
    /* optional: append with keys (NULL: append, the keys ignored) */
    int (*append_keyed)(struct evlog *log, const char *topic, const struct evlog_rec *recs,
                        const struct evlog_key *keys, size_t n, uint64_t *first_offset_out,
                        uint64_t *ticket_out);
    /* optional: NULL means end_offset + read of the last record */
    int (*tail)(struct evlog *log, const char *topic, struct evlog_batch *out);
};

struct evlog {
    const struct evlog_ops *ops; /* every backend embeds this first */
};

/* The backend registered under name, or NULL. */
const struct evlog_ops *evlog_backend(const char *name);

/* ---- the facade ---- */

/* Opens (creating if needed) the log cfg describes and recovers it: a torn or corrupt tail
 * of a topic's last segment is cut back to the last intact record; damage followed by intact
 * records, or a damaged non-last segment, fails with ERR_CORRUPT. Starts the flusher.
 * Sets SIGXFSZ to ignored (process-wide) so a file size limit gives EFBIG, handled as a
 * full disk. On failure *out is NULL and evlog_errmsg(NULL) says why. */
int evlog_open(const struct evlog_cfg *cfg, struct evlog **out) MUST_USE;
/* Syncs what is pending, answers every pending ticket, stops the flusher, frees the log.
 * No other thread may use the log during or after the call. NULL is a no-op. */
void evlog_close(struct evlog *log);

/* Topic names: [a-z0-9_-]{1,64}. Consumer names follow the same rule. */
bool evlog_name_valid(const char *name);

/* Appends n >= 1 records to topic (created on first append) as one contiguous run of
 * offsets. *first_offset_out gets the first one's offset; *ticket_out (may be NULL) the
 * ticket to pass to evlog_when_durable / evlog_wait_durable. A success means the records are
 * written, NOT that they are durable: acknowledge a client only after the ticket is. */
int evlog_append(struct evlog *log, const char *topic, const struct evlog_rec *recs, size_t n,
                 uint64_t *first_offset_out, uint64_t *ticket_out) MUST_USE;
/* evlog_append with a key per record (keys[i] for recs[i]; keys may be NULL). */
int evlog_append_keyed(struct evlog *log, const char *topic, const struct evlog_rec *recs,
                       const struct evlog_key *keys, size_t n, uint64_t *first_offset_out,
                       uint64_t *ticket_out) MUST_USE;
/* Calls cb(arg, rc) exactly once when ticket is durable or has failed: immediately on this
 * thread if already known (always so with EVLOG_FSYNC_NEVER), otherwise later from the
 * flusher. An HTTP handler therefore suspends its request before registering. */
void evlog_when_durable(struct evlog *log, uint64_t ticket, evlog_durable_cb cb, void *arg);
/* Blocks until ticket is durable (0) or failed (ERR_IO). For threads that may block. */
int evlog_wait_durable(struct evlog *log, uint64_t ticket) MUST_USE;
/* Appends and waits: the blocking form, for relays and tests. */
int evlog_append_sync(struct evlog *log, const char *topic, const struct evlog_rec *recs, size_t n,
                      uint64_t *first_offset_out) MUST_USE;

/* evlog_append_keyed and wait. */
int evlog_append_keyed_sync(struct evlog *log, const char *topic, const struct evlog_rec *recs,
                            const struct evlog_key *keys, size_t n,
                            uint64_t *first_offset_out) MUST_USE;

/* Reads durable records of topic starting at from: at most max_records, and at most
 * max_bytes of payload unless the first record alone is larger (then just that one).
 * out->n == 0 when from is the end. ERR_NOTFOUND when retention deleted from, or the topic
 * does not exist; ERR_INVALID when from is beyond the end; ERR_CORRUPT when a record fails
 * its checksum. */
int evlog_read(struct evlog *log, const char *topic, uint64_t from, size_t max_records,
               size_t max_bytes, struct evlog_batch *out) MUST_USE;
/* The durable end (next offset to be made durable) of topic; 0 for an unknown topic. */
int evlog_end_offset(struct evlog *log, const char *topic, uint64_t *out) MUST_USE;
/* The first offset still stored (retention moves it); 0 for an unknown topic. */
int evlog_start_offset(struct evlog *log, const char *topic, uint64_t *out) MUST_USE;

/* The last record of each partition of topic as appended (one record on the local log; one
 * per non-empty partition on Kafka, read from the cluster, not the mirror). out->n == 0 for
 * an empty or unknown topic. The outbox relay finds where it left off with it on the local log. */
int evlog_tail(struct evlog *log, const char *topic, struct evlog_batch *out) MUST_USE;
/* The backend's name ("local", "kafka"). */
const char *evlog_backend_name(const struct evlog *log);

/* Registers (or moves) consumer's committed position on topic: every offset below
 * next_offset has been processed. Retention never deletes a record at or above the lowest
 * committed offset of any consumer registered on that topic. Stored durably before the
 * call returns. ERR_INVALID when next_offset is beyond the topic's durable end. */
int evlog_consumer_commit(struct evlog *log, const char *consumer, const char *topic,
                          uint64_t next_offset) MUST_USE;
/* ERR_NOTFOUND when the consumer has no position on topic. */
int evlog_consumer_get(struct evlog *log, const char *consumer, const char *topic,
                       uint64_t *next_offset_out) MUST_USE;
/* Forgets every position of consumer, so it no longer holds back retention. */
int evlog_consumer_remove(struct evlog *log, const char *consumer) MUST_USE;

/* Copies every topic into dest_dir (created; the layout of a log directory, without consumer
 * positions) as it is now: each topic up to its durable end, or up to the offset of its cut
 * when one is given (and it is not beyond the durable end). Appends go on meanwhile. The copy
 * opens as a log whose topics end exactly there. Files are synced. ERR_INVALID for a backend
 * that keeps no files here (kafka). */
int evlog_snapshot(struct evlog *log, const char *dest_dir, const struct evlog_cut *cuts,
                   size_t n_cuts) MUST_USE;

/* Erases the records of topic below end (at most its durable end) that match accepts: each
 * becomes an erased record (a tombstone: an empty payload with the same offset and
 * timestamp), so every other record keeps its offset and no consumer position moves. The
 * bytes of an erased record are gone from the log's files when the call returns: each segment
 * holding one is rewritten to a new file, synced and renamed over the old one (docs/evlog.md
 * "Erasing records"). Consumers skip records of length 0. Appends, reads and retention go on
 * meanwhile; a reader that held the old segment may still read it until it moves on.
 * Idempotent (a crash half way is finished by calling it again). *n_erased_out (may be NULL):
 * records erased by this call. ERR_INVALID for a bad topic or a backend that cannot erase. */
int evlog_erase(struct evlog *log, const char *topic, uint64_t end, evlog_erase_cb match, void *arg,
                uint64_t *n_erased_out) MUST_USE;

/* Runs retention now (the flusher also runs it every retention_check_us). */
int evlog_retain(struct evlog *log) MUST_USE;

/* Detail of the calling thread's last failure in evlog (log may be NULL, e.g. after a
 * failed evlog_open). RETURNS BORROWED: valid until this thread's next evlog call. */
const char *evlog_errmsg(struct evlog *log);

/* ---- kafka ---- */

/* Appends a JSON array describing each mirrored topic's partitions to out:
 * [{"topic":..,"partition":N,"next":N,"end":N,"lag":N},...] (end = Kafka's high watermark
 * as last seen), or "[]" on another backend. Any thread. */
void evlog_kafka_partitions_json(struct evlog *log, struct buf *out);
/* Checks the cluster: connects, reads the topics' partitions and watermarks, and appends a
 * report to out. 0 when every topic is reachable. */
int evlog_kafka_check(const struct evlog_cfg *cfg, struct buf *report) MUST_USE;

/* `tandem log migrate --to kafka` (docs/scale-out.md "Switching"): with the local log of the
 * data directory open (local, server stopped; it becomes the Kafka mirror), checks every
 * shared Kafka topic and pins where the mirror's copy of it starts: at its end, which must be
 * empty unless the mirror already copies from it (then its positions are checked instead).
 * Prints one line per topic on out. ERR_CONFLICT when a topic holds messages the directory
 * never copied or does not fit its positions; ERR_NOTFOUND when a topic is missing. */
int evlog_kafka_migrate(struct evlog *local, const struct evlog_cfg *cfg, FILE *out) MUST_USE;

/* A table kept in a compacted Kafka topic ("<prefix><topic>", cleanup.policy=compact): the
 * latest record of each Kafka key is the key's value, a record with no value (a tombstone)
 * deletes it. evlog_table_open follows the topic, every partition, from its beginning on its
 * own consumer thread and calls on_record(arg, key, key_len, value, value_len) for every
 * record in each partition's order (value NULL: a tombstone); applying the records in that
 * order gives the table whether or not the cluster compacted the topic yet. The table is
 * *ready* once it has delivered every record below the partitions' ends as read when it
 * started; it then keeps following the topic, and keeps what it has when the cluster
 * becomes unreachable. A missing topic is retried every second (never ready meanwhile).
 * When the table becomes ready, on_record(arg, NULL, 0, NULL, 0) is called once. ERR_INVALID
 * on a log that is not on Kafka. on_record runs on the table's thread. */
/* The write keys' table topic (api/keys.c publishes, capture nodes follow); produced to
 * Kafka, never mirrored. */
#define EVLOG_KEYS_TOPIC "keys"
typedef void (*evlog_table_record_cb)(void *arg, const void *key, size_t key_len, const void *value,
                                      size_t value_len);
struct evlog_table;
int evlog_table_open(struct evlog *log, const char *topic, evlog_table_record_cb on_record,
                     void *arg, struct evlog_table **out) MUST_USE;
/* Whether the table has read its topic to the end seen at start. Any thread. */
bool evlog_table_ready(struct evlog_table *t);
/* Whether the topic was found missing at the last attempt to read it. Any thread. */
bool evlog_table_missing(struct evlog_table *t);
/* Stops the thread (on_record is not called after it returns) and frees t. NULL: nothing. */
void evlog_table_close(struct evlog_table *t);

/* ---- offline tools for `tandem log check|repair` (local backend; log not open) ---- */

/* Verifies every record of every topic under dir and appends a human-readable report to
 * report (one line per topic, one per problem). Changes nothing. 0 when clean,
 * ERR_CORRUPT when any damage was found (torn tail, bad record, gap between segments). */
int evlog_check(const char *dir, struct buf *report) MUST_USE;
/* Cuts each damaged topic at its first bad record: the bytes from there to the end of that
 * segment go to "<segment>.damaged-<byte>", later segments are renamed "<name>.damaged";
 * nothing is deleted. Appends what it did to report. 0 when the log is now clean. */
int evlog_repair(const char *dir, struct buf *report) MUST_USE;

#endif
