/* mirror.c - copies Kafka topics, every partition, into the local log that serves tandem's
 * reads (the loader, the realtime hub, the capture dedup rebuild), exactly once.
 *
 * Each copied batch is two appends to the local log: first an intent record on topic
 * "kafka-<topic>" saying where the batch starts (the mirror's end, base) and which Kafka
 * messages it holds in order (runs of (partition, first, last) offsets) and the position
 * every partition reaches after it; once that is durable, the records themselves on <topic>.
 * On start the last intent and the mirror's end tell exactly how much of the last batch
 * landed (end - base records, a prefix: the local log cuts only a torn tail), so copying
 * resumes at the first message that is not in the mirror. The positions live in the mirror
 * itself, made durable before the data: Kafka's committed offsets (group "<prefix>mirror")
 * are written after each batch for monitoring only and never read back.
 *
 * A position Kafka no longer has (the topic was deleted and recreated, or retention removed
 * what was never copied) stops the copy of that topic with an error naming the partition,
 * shown by `tandem log check` and /api/pipeline: never a silent restart at offset 0. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "evlog/kafka/kafka_int.h"

#define BATCH_MAX_MSGS 20000
#define BATCH_MAX_BYTES (32u << 20)
#define META_TIMEOUT_MS 5000

struct kmirror {
    struct kafka *k;
    char topic[65];   /* the tandem topic, e.g. "events" */
    char ktopic[256]; /* the Kafka topic, e.g. "tandem-events" */
    char itopic[80];  /* the intent topic in the mirror */
    rd_kafka_t *rk;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu; /* leaf: everything below */
    int nparts;
    int64_t *next; /* per partition: the next offset to copy; RD_KAFKA_OFFSET_BEGINNING when none */
    int64_t *seq;  /* per partition: the last sequence number copied (cfg.mirror_seq); -1 none */
    int64_t *gap_offset; /* per partition: the offset a gap was last seen before */
    int *gap_tries;      /* per partition: seeks back to gap_offset so far */
    int64_t *ends;       /* per partition: the end read from its leader at ends_mono; -1 none */
    int64_t ends_mono;   /* when the last read of every partition's end started; 0 never */
    char error[300];
    bool fatal; /* the error needs an operator: the copy stopped */
};

static void set_error(struct kmirror *m, bool fatal, const char *fmt, ...) PRINTF_LIKE(3, 4);
static void set_error(struct kmirror *m, bool fatal, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&m->mu);
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
    m->fatal = fatal;
    pthread_mutex_unlock(&m->mu);
    if (fatal)
        xlog_error("kafka mirror %s: %s; copying stopped", m->topic, m->error);
    else
        xlog_warn("kafka mirror %s: %s", m->topic, m->error);
}

rd_kafka_t *kafka__new_consumer(const struct kafka *k)
{
    rd_kafka_conf_t *c = kafka__conf(k, false);
    if (!c)
        return NULL;
    char group[200], err[512];
    snprintf(group, sizeof(group), "%smirror", k->prefix);
    if (rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(c);
        evlog__errf("kafka: %s", err);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(c);
        evlog__errf("cannot create a kafka consumer: %s", err);
    }
    return rk;
}

/* The partition count of ktopic; ERR_NOTFOUND when the topic does not exist. */
int kafka__partition_count(rd_kafka_t *rk, const char *ktopic, int *out)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, ktopic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, META_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        evlog__errf("kafka metadata for %s: %s", ktopic, rd_kafka_err2str(err));
        return ERR_BUSY;
    }
    int rc = 0;
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        evlog__errf("kafka topic %s does not exist (%s)", ktopic,
                    md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
        rc = ERR_NOTFOUND;
    } else {
        *out = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* ---- positions ---- */

static json_t *positions_json(const int64_t *pos, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(pos[i]));
    return a;
}

static int read_positions(json_t *a, int64_t *pos, int n)
{
    if (!json_is_array(a) || (int)json_array_size(a) > n)
        return ERR_CORRUPT;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v))
            return ERR_CORRUPT;
        pos[i] = json_integer_value(v);
    }
    return 0;
}

/* Where copying resumes, from the last intent and the mirror's end (see the file comment). */
/* The sequence numbers after the first `landed` records of the batch the intent j describes:
 * its "seq0", moved by each landed record (read back from the mirror at base). */
static int recover_seq(struct kmirror *m, json_t *j, uint64_t base, uint64_t landed, int64_t *seq)
{
    if (read_positions(json_object_get(j, "seq0"), seq, m->nparts) != 0)
        return ERR_CORRUPT;
    if (!m->k->cfg.mirror_seq || landed == 0)
        return 0;
    struct evlog_batch b;
    evlog_batch_init(&b);
    json_t *ranges = json_object_get(j, "ranges");
    uint64_t at = base, done = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(ranges) && done < landed; i++) {
        json_t *r = json_array_get(ranges, i);
        int p = (int)json_integer_value(json_array_get(r, 0));
        uint64_t len = (uint64_t)(json_integer_value(json_array_get(r, 2)) -
                                  json_integer_value(json_array_get(r, 1)) + 1);
        for (uint64_t k = 0; rc == 0 && k < len && done < landed; k++, done++, at++) {
            rc = evlog_local_ops.read(m->k->mirror, m->topic, at, 1, EVLOG_TAIL_MAX_BYTES, &b);
            if (rc == 0 && b.n == 1) {
                int64_t s = m->k->cfg.mirror_seq(m->topic, b.recs[0].data, b.recs[0].len);
                if (s > seq[p])
                    seq[p] = s;
            }
        }
    }
    evlog_batch_release(&b);
    return rc;
}

static int recover(struct kmirror *m, int64_t *pos, int64_t *seq)
{
    struct evlog *mir = m->k->mirror;
    for (int p = 0; p < m->nparts; p++) {
        pos[p] = RD_KAFKA_OFFSET_BEGINNING;
        seq[p] = -1;
    }
    uint64_t iend = 0, end = 0;
    int rc = evlog_local_ops.end_offset(mir, m->itopic, &iend);
    if (rc == 0)
        rc = evlog_local_ops.end_offset(mir, m->topic, &end);
    if (rc != 0 || iend == 0)
        return rc; /* never copied: from the beginning (records already in the mirror were
                    * appended by the local log before a switch, and stay) */
    struct evlog_batch b;
    evlog_batch_init(&b);
    rc = evlog_local_ops.read(mir, m->itopic, iend - 1, 1, EVLOG_TAIL_MAX_BYTES, &b);
    json_t *j = NULL;
    if (rc == 0 && b.n == 1)
        j = json_loadb((const char *)b.recs[0].data, b.recs[0].len, 0, NULL);
    evlog_batch_release(&b);
    if (rc != 0)
        return rc;
    json_t *ranges = json_object_get(j, "ranges");
    json_t *base = json_object_get(j, "base");
    if (!j || !json_is_integer(base) || !json_is_array(ranges) ||
        read_positions(json_object_get(j, "start"), pos, m->nparts) != 0) {
        json_decref(j);
        evlog__errf("the last intent record of %s cannot be read; the topic may have fewer "
                    "partitions than before",
                    m->itopic);
        return ERR_CORRUPT;
    }
    if (json_is_true(json_object_get(j, "migrated"))) {
        /* written by `tandem log migrate`: where the copy starts in every partition; the
         * records after base came from the local log (before or after the switch) */
        rc = read_positions(json_object_get(j, "end"), pos, m->nparts);
        if (rc == 0)
            rc = read_positions(json_object_get(j, "seq"), seq, m->nparts);
        json_decref(j);
        if (rc != 0)
            evlog__errf("the migration record of %s cannot be read", m->itopic);
        return rc;
    }
    if ((uint64_t)json_integer_value(base) > end) {
        json_decref(j);
        evlog__errf("the mirror of %s ends before its last intent record's base", m->topic);
        return ERR_CORRUPT;
    }
    uint64_t landed = end - (uint64_t)json_integer_value(base), total = 0;
    for (size_t i = 0; i < json_array_size(ranges); i++) {
        json_t *r = json_array_get(ranges, i);
        int p = (int)json_integer_value(json_array_get(r, 0));
        int64_t a = json_integer_value(json_array_get(r, 1));
        int64_t z = json_integer_value(json_array_get(r, 2));
        if (p < 0 || p >= m->nparts || z < a) {
            json_decref(j);
            evlog__errf("bad range in the last intent record of %s", m->itopic);
            return ERR_CORRUPT;
        }
        uint64_t len = (uint64_t)(z - a + 1);
        if (total < landed) /* this run is (partly) in the mirror */
            pos[p] = a + (int64_t)(len < landed - total ? len : landed - total);
        total += len;
    }
    if (landed > total) {
        json_decref(j);
        evlog__errf("the mirror of %s holds more records than its last intent accounts for",
                    m->topic);
        return ERR_CORRUPT;
    }
    /* the whole batch landed: its end positions also step over what the filter dropped */
    if (landed == total)
        rc = read_positions(json_object_get(j, "end"), pos, m->nparts);
    if (rc == 0 && landed == total)
        rc = read_positions(json_object_get(j, "seq"), seq, m->nparts);
    else if (rc == 0)
        rc = recover_seq(m, j, (uint64_t)json_integer_value(base), landed, seq);
    json_decref(j);
    return rc;
}

/* Connects, recovers the positions and checks them against the cluster, then assigns. */
static int setup(struct kmirror *m)
{
    int n = 0;
    int rc = kafka__partition_count(m->rk, m->ktopic, &n);
    if (rc != 0) {
        set_error(m, false, "%s", evlog__errmsg());
        return rc;
    }
    int64_t *pos = xcalloc((size_t)n, sizeof(*pos));
    int64_t *seq = xcalloc((size_t)n, sizeof(*seq));
    pthread_mutex_lock(&m->mu);
    m->nparts = n;
    pthread_mutex_unlock(&m->mu);
    rc = recover(m, pos, seq);
    if (rc != 0) {
        set_error(m, true, "%s", evlog__errmsg());
        free(pos);
        free(seq);
        return rc;
    }
    free(m->seq);
    m->seq = seq; /* only this thread uses it, and the two below */
    free(m->gap_offset);
    free(m->gap_tries);
    m->gap_offset = xcalloc((size_t)n, sizeof(*m->gap_offset));
    m->gap_tries = xcalloc((size_t)n, sizeof(*m->gap_tries));
    for (int p = 0; p < n; p++)
        m->gap_offset[p] = -1;
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(m->rk, m->ktopic, p, &lo, &hi, META_TIMEOUT_MS);
        if (err) {
            set_error(m, false, "watermarks of %s[%d]: %s", m->ktopic, p, rd_kafka_err2str(err));
            free(pos);
            return ERR_BUSY;
        }
        if (pos[p] >= 0 && pos[p] > hi) {
            set_error(m, true,
                      "%s partition %d ends at offset %lld but %lld messages were already "
                      "copied: the topic was recreated or truncated. Point --kafka-topic-prefix "
                      "at the right topics, or move the data directory's log aside to start over",
                      m->ktopic, p, (long long)hi, (long long)pos[p]);
            free(pos);
            return ERR_CORRUPT;
        }
        if (pos[p] >= 0 && pos[p] < lo) {
            set_error(m, true,
                      "%s partition %d starts at offset %lld: messages from %lld were deleted by "
                      "Kafka's retention before they were copied",
                      m->ktopic, p, (long long)lo, (long long)pos[p]);
            free(pos);
            return ERR_CORRUPT;
        }
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, m->ktopic, p)->offset = pos[p];
    rd_kafka_resp_err_t err = rd_kafka_assign(m->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        set_error(m, false, "cannot assign %s: %s", m->ktopic, rd_kafka_err2str(err));
        free(pos);
        return ERR_BUSY;
    }
    pthread_mutex_lock(&m->mu);
    free(m->next);
    m->next = pos;
    free(m->ends);
    m->ends = xcalloc((size_t)n, sizeof(*m->ends));
    for (int p = 0; p < n; p++)
        m->ends[p] = -1;
    m->ends_mono = 0;
    m->error[0] = '\0';
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* ---- copying ---- */

struct batch {
    rd_kafka_message_t **msgs;
    size_t n, bytes;
};

/* Collects what the consumer has (waiting up to 100 ms for the first message). */
static int collect(struct kmirror *m, struct batch *b)
{
    b->n = b->bytes = 0;
    int timeout = 100;
    while (b->n < BATCH_MAX_MSGS && b->bytes < BATCH_MAX_BYTES) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->rk, timeout);
        if (!msg)
            break;
        timeout = 0;
        if (msg->err) {
            rd_kafka_resp_err_t err = msg->err;
            int32_t p = msg->partition;
            rd_kafka_message_destroy(msg);
            if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                continue;
            if (err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
                set_error(m, true,
                          "%s partition %d no longer has the next offset to copy: the topic "
                          "was recreated or truncated",
                          m->ktopic, (int)p);
                return ERR_CORRUPT;
            }
            set_error(m, false, "%s", rd_kafka_err2str(err));
            continue;
        }
        b->msgs[b->n++] = msg;
        b->bytes += msg->len;
    }
    return 0;
}

#define GAP_RETRIES 5 /* seeks back to one offset before a gap is taken as real */

/* Whether a gap before expected in partition p is accepted: only after GAP_RETRIES seeks to
 * the same offset found it again (offsets a compacted topic or a transactional producer left
 * out). */
static bool gap_accept(struct kmirror *m, int p, int64_t expected)
{
    if (m->gap_offset[p] != expected) {
        m->gap_offset[p] = expected;
        m->gap_tries[p] = 0;
    }
    if (m->gap_tries[p] < GAP_RETRIES)
        return false;
    xlog_warn("kafka mirror %s: partition %d has no offset %lld after %d reads; going on", m->topic,
              p, (long long)expected, GAP_RETRIES);
    return true;
}

/* Seeks the partitions that jumped back to the next offset to copy. */
static void reseek(struct kmirror *m, const bool *gap, const int64_t *end, int n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        if (gap[p]) {
            rd_kafka_topic_partition_list_add(l, m->ktopic, p)->offset = end[p];
            m->gap_tries[p]++;
            xlog_warn("kafka mirror %s: partition %d skipped ahead of offset %lld; seeking back",
                      m->topic, p, (long long)end[p]);
        }
    if (l->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(m->rk, l, META_TIMEOUT_MS);
        if (e) {
            set_error(m, false, "cannot seek %s: %s", m->ktopic, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int write_batch(struct kmirror *m, struct batch *b)
{
    struct kafka *k = m->k;
    int n = m->nparts;
    int64_t *end = xcalloc((size_t)n, sizeof(*end));
    pthread_mutex_lock(&m->mu);
    memcpy(end, m->next, (size_t)n * sizeof(*end));
    pthread_mutex_unlock(&m->mu);
    int64_t *seq = xcalloc((size_t)n, sizeof(*seq));
    memcpy(seq, m->seq, (size_t)n * sizeof(*seq));
    json_t *intent = json_object();
    json_object_set_new(intent, "start", positions_json(end, n));
    json_object_set_new(intent, "seq0", positions_json(seq, n));
    json_t *ranges = json_array();
    bool *gap = xcalloc((size_t)n, sizeof(*gap));
    struct evlog_rec *recs = xcalloc(b->n ? b->n : 1, sizeof(*recs));
    size_t nrec = 0;
    int rc = 0;
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_message_t *msg = b->msgs[i];
        int p = msg->partition;
        if (p < 0 || p >= n) {
            set_error(m, true, "a message of %s came from partition %d of %d", m->ktopic, p, n);
            rc = ERR_CORRUPT;
            break;
        }
        /* Offsets of a partition are dense (an idempotent producer, no compaction): one the
         * mirror already has is a redelivery, and one past the expected offset is a jump
         * of the consumer's position (seen after leader changes), which would skip messages.
         * The copy never trusts the consumer's position: it seeks back. */
        if (end[p] >= 0 && msg->offset < end[p])
            continue;
        if (end[p] >= 0 && msg->offset > end[p] && !gap_accept(m, p, end[p])) {
            gap[p] = true;
            continue;
        }
        if (gap[p])
            continue;
        end[p] = msg->offset + 1;
        if (k->cfg.mirror_seq) { /* a resend of what this partition already gave */
            int64_t sq = k->cfg.mirror_seq(m->topic, msg->payload, msg->len);
            if (sq >= 0 && sq <= seq[p])
                continue;
            if (sq >= 0)
                seq[p] = sq;
        }
        bool drop = false;
        if (k->cfg.mirror_filter &&
            k->cfg.mirror_filter(k->cfg.mirror_filter_arg, m->topic, msg->payload, msg->len,
                                 &drop) == 0 &&
            drop)
            continue;
        recs[nrec].data = msg->payload;
        recs[nrec].len = msg->len;
        nrec++;
        json_t *last =
            json_array_size(ranges) ? json_array_get(ranges, json_array_size(ranges) - 1) : NULL;
        if (last && json_integer_value(json_array_get(last, 0)) == p &&
            json_integer_value(json_array_get(last, 2)) == msg->offset - 1) {
            json_array_set_new(last, 2, json_integer(msg->offset));
        } else {
            json_t *r = json_array();
            json_array_append_new(r, json_integer(p));
            json_array_append_new(r, json_integer(msg->offset));
            json_array_append_new(r, json_integer(msg->offset));
            json_array_append_new(ranges, r);
        }
    }
    uint64_t base = 0, first = 0;
    if (rc == 0)
        rc = evlog_local_ops.end_offset(k->mirror, m->topic, &base);
    json_object_set_new(intent, "base", json_integer((json_int_t)base));
    json_object_set_new(intent, "ranges", ranges);
    json_object_set_new(intent, "end", positions_json(end, n));
    json_object_set_new(intent, "seq", positions_json(seq, n));
    char *text = rc == 0 ? json_dumps(intent, JSON_COMPACT) : NULL;
    json_decref(intent);
    if (text) {
        struct evlog_rec ir = {.data = text, .len = strlen(text)};
        rc = evlog_append_sync(k->mirror, m->itopic, &ir, 1, &first);
        free(text);
    }
    if (rc == 0 && nrec > 0)
        rc = evlog_append_sync(k->mirror, m->topic, recs, nrec, &first);
    free(recs);
    if (rc != 0) {
        set_error(m, true, "cannot write the mirror: %s", evlog__errmsg());
        free(gap);
        free(end);
        free(seq);
        return rc;
    }
    memcpy(m->seq, seq, (size_t)n * sizeof(*seq));
    free(seq);
    reseek(m, gap, end, n);
    free(gap);
    /* Kafka's committed offsets: for monitoring (consumer-group lag tools) only */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        if (end[p] >= 0)
            rd_kafka_topic_partition_list_add(l, m->ktopic, p)->offset = end[p];
    if (l->cnt > 0)
        rd_kafka_commit(m->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    pthread_mutex_lock(&m->mu);
    free(m->next);
    m->next = end;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

#define ENDS_IDLE_US 250000   /* how often the partitions' ends are read while idle... */
#define ENDS_BUSY_US 1000000  /* ...and while copying */
#define ENDS_RETRY_US 5000000 /* ...and after a leader did not answer */
#define ENDS_TIMEOUT_MS 1000

/* Reads every partition's end from its leader. The consumer's own high watermark comes with
 * each fetch response and goes stale whenever fetches stall (a leader that moved or came
 * back, a fetch in backoff or long poll): a lag computed from it can say 0 while acknowledged
 * messages wait in Kafka. An end read here after a moment T covers everything acknowledged
 * before T, so "lag 0 with ends read after T" means the copy holds all of it. It asks through
 * the producer's connections: on the consumer's, the request would wait behind a stalled or
 * long-polling fetch. */
static bool read_ends(struct kmirror *m)
{
    int n = m->nparts;
    int64_t at = time_mono_us();
    int64_t *ends = xcalloc((size_t)n, sizeof(*ends));
    bool all = true;
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = -1;
        if (rd_kafka_query_watermark_offsets(m->k->rk, m->ktopic, p, &lo, &hi, ENDS_TIMEOUT_MS) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            hi = -1;
            all = false;
        }
        ends[p] = hi;
    }
    pthread_mutex_lock(&m->mu);
    for (int p = 0; p < n; p++)
        if (ends[p] >= 0)
            m->ends[p] = ends[p];
    if (all)
        m->ends_mono = at;
    pthread_mutex_unlock(&m->mu);
    free(ends);
    return all;
}

static void *mirror_main(void *arg)
{
    struct kmirror *m = arg;
    struct batch b = {.msgs = xcalloc(BATCH_MAX_MSGS, sizeof(rd_kafka_message_t *))};
    bool ready = false, stopped = false;
    int64_t ends_next = 0;
    /* the filter's state is rebuilt from the mirror first */
    while (m->k->cfg.mirror_gate && !m->k->cfg.mirror_gate() && !atomic_load(&m->k->stop))
        usleep(20000);
    while (!atomic_load(&m->k->stop) && !stopped) {
        if (!ready) {
            int rc = setup(m);
            if (rc == 0) {
                ready = true;
                continue;
            }
            pthread_mutex_lock(&m->mu);
            stopped = m->fatal;
            pthread_mutex_unlock(&m->mu);
            for (int i = 0; i < 10 && !atomic_load(&m->k->stop); i++)
                usleep(100000);
            continue;
        }
        int rc = collect(m, &b);
        if (rc == 0 && b.n > 0)
            rc = write_batch(m, &b);
        if (rc == 0 && time_mono_us() >= ends_next) { /* what the copy has to catch up with */
            bool all = read_ends(m);
            ends_next = time_mono_us() + (!all ? ENDS_RETRY_US : b.n ? ENDS_BUSY_US : ENDS_IDLE_US);
        }
        for (size_t i = 0; i < b.n; i++)
            rd_kafka_message_destroy(b.msgs[i]);
        if (rc != 0)
            stopped = true;
    }
    free(b.msgs);
    return NULL;
}

int kafka__mirrors_open(struct kafka *k)
{
    if (!k->cfg.kafka_mirror_topics || !k->mirror)
        return 0;
    for (const char *const *t = k->cfg.kafka_mirror_topics; *t; t++) {
        if (k->n_mirrors == KAFKA_MAX_MIRRORS || !evlog_name_valid(*t) || strlen(*t) > 50) {
            evlog__errf("cannot mirror topic %s", *t);
            return ERR_INVALID;
        }
        struct kmirror *m = xcalloc(1, sizeof(*m));
        m->k = k;
        pthread_mutex_init(&m->mu, NULL);
        snprintf(m->topic, sizeof(m->topic), "%s", *t);
        kafka__topic_name(k, *t, m->ktopic, sizeof(m->ktopic));
        snprintf(m->itopic, sizeof(m->itopic), "kafka-%s", *t);
        k->mirrors[k->n_mirrors++] = m;
        m->rk = kafka__new_consumer(k);
        if (!m->rk)
            return ERR_INVALID;
    }
    return 0;
}

int kafka__mirrors_start(struct kafka *k)
{
    for (size_t i = 0; i < k->n_mirrors; i++) {
        struct kmirror *m = k->mirrors[i];
        if (m->started)
            continue;
        int e = pthread_create(&m->thread, NULL, mirror_main, m);
        if (e != 0) {
            evlog__errf("cannot start the kafka mirror: %s", strerror(e));
            return -e;
        }
        m->started = true;
    }
    return 0;
}

void kafka__mirrors_stop(struct kafka *k)
{
    atomic_store(&k->stop, true); /* the mirrors and the poller watch it */
    for (size_t i = 0; i < k->n_mirrors; i++) {
        struct kmirror *m = k->mirrors[i];
        if (m->started)
            pthread_join(m->thread, NULL);
        if (m->rk) {
            rd_kafka_consumer_close(m->rk);
            rd_kafka_destroy(m->rk);
        }
        pthread_mutex_destroy(&m->mu);
        free(m->next);
        free(m->seq);
        free(m->gap_offset);
        free(m->gap_tries);
        free(m->ends);
        free(m);
    }
    k->n_mirrors = 0;
}

void kafka__mirrors_json(struct kafka *k, struct buf *out)
{
    buf_putc(out, '[');
    bool first = true;
    int64_t now = time_mono_us();
    for (size_t i = 0; i < k->n_mirrors; i++) {
        struct kmirror *m = k->mirrors[i];
        pthread_mutex_lock(&m->mu);
        for (int p = 0; p < m->nparts && m->next; p++) {
            /* the end read from the leader, or the consumer's later one when it is larger */
            int64_t lo = 0, hi = -1;
            rd_kafka_get_watermark_offsets(m->rk, m->ktopic, p, &lo, &hi);
            if (m->ends && m->ends[p] > hi)
                hi = m->ends[p];
            int64_t next = m->next[p] < 0 ? 0 : m->next[p];
            int64_t lag = hi >= next ? hi - next : 0;
            buf_printf(out,
                       "%s{\"topic\":\"%s\",\"partition\":%d,\"next\":%lld,\"end\":%lld,"
                       "\"lag\":%lld",
                       first ? "" : ",", m->ktopic, p, (long long)next, (long long)hi,
                       (long long)lag);
            if (m->ends_mono > 0) /* how long ago the ends were read from the leaders */
                buf_printf(out, ",\"endAgeMs\":%lld", (long long)((now - m->ends_mono) / 1000));
            buf_putc(out, '}');
            first = false;
        }
        if (m->error[0]) {
            buf_printf(out, "%s{\"topic\":\"%s\",\"error\":", first ? "" : ",", m->ktopic);
            buf_putc(out, '"');
            buf_json_escape(out, m->error, strlen(m->error));
            buf_printf(out, "\",\"stopped\":%s}", m->fatal ? "true" : "false");
            first = false;
        }
        pthread_mutex_unlock(&m->mu);
    }
    buf_putc(out, ']');
}

/* ---- reading the cluster directly ---- */

int kafka__tail(struct kafka *k, const char *topic, struct evlog_batch *out)
{
    out->n = 0;
    char ktopic[256];
    kafka__topic_name(k, topic, ktopic, sizeof(ktopic));
    rd_kafka_t *rk = kafka__new_consumer(k);
    if (!rk)
        return ERR_INVALID;
    int n = 0;
    int rc = kafka__partition_count(rk, ktopic, &n);
    if (rc == ERR_NOTFOUND) { /* no topic yet: nothing was appended */
        rd_kafka_destroy(rk);
        return 0;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int p = 0; rc == 0 && p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, ktopic, p, &lo, &hi, META_TIMEOUT_MS);
        if (err) {
            evlog__errf("watermarks of %s[%d]: %s", ktopic, p, rd_kafka_err2str(err));
            rc = ERR_BUSY;
        } else if (hi > lo) {
            rd_kafka_topic_partition_list_add(l, ktopic, p)->offset = hi - 1;
        }
    }
    if (rc == 0 && l->cnt > 0 && rd_kafka_assign(rk, l) != 0) {
        evlog__errf("cannot read the tail of %s", ktopic);
        rc = ERR_BUSY;
    }
    int want = rc == 0 ? l->cnt : 0, got = 0;
    bool *seen = xcalloc((size_t)(n > 0 ? n : 1), sizeof(bool));
    int64_t deadline = time_mono_us() + 15 * 1000000LL;
    size_t mem = 0;
    while (rc == 0 && got < want) {
        if (time_mono_us() > deadline) {
            evlog__errf("timed out reading the tail of %s", ktopic);
            rc = ERR_BUSY;
            break;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
        if (!msg)
            continue;
        if (!msg->err && msg->partition >= 0 && msg->partition < n && !seen[msg->partition]) {
            seen[msg->partition] = true;
            got++;
            if (evlog__batch_reserve(out, out->n + 1, mem + msg->len) != 0) {
                rc = -ENOMEM;
            } else {
                memcpy(out->mem + mem, msg->payload, msg->len);
                out->recs[out->n].offset = (uint64_t)msg->offset;
                out->recs[out->n].len = msg->len;
                out->recs[out->n].timestamp_us = rd_kafka_message_timestamp(msg, NULL) * 1000;
                out->recs[out->n].data = NULL;
                out->n++;
                mem += msg->len;
            }
        }
        rd_kafka_message_destroy(msg);
    }
    /* mem may have moved while growing: point the views at their bytes now */
    size_t at = 0;
    for (size_t i = 0; i < out->n; i++) {
        out->recs[i].data = out->mem + at;
        at += out->recs[i].len;
    }
    free(seen);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

/* The "end" positions of topic's last intent record in the mirror (a batch whose data did not
 * land yet is counted as copied: for reports only). */
static void mirror_positions(struct evlog *mirror, const char *topic, int64_t *pos, int n)
{
    char itopic[80];
    snprintf(itopic, sizeof(itopic), "kafka-%s", topic);
    uint64_t end = 0;
    if (evlog_local_ops.end_offset(mirror, itopic, &end) != 0 || end == 0)
        return;
    struct evlog_batch b;
    evlog_batch_init(&b);
    if (evlog_local_ops.read(mirror, itopic, end - 1, 1, EVLOG_TAIL_MAX_BYTES, &b) == 0 &&
        b.n == 1) {
        json_t *j = json_loadb((const char *)b.recs[0].data, b.recs[0].len, 0, NULL);
        if (read_positions(json_object_get(j, "end"), pos, n) != 0)
            for (int p = 0; p < n; p++)
                pos[p] = -1;
        for (int p = 0; p < n; p++)
            if (pos[p] == RD_KAFKA_OFFSET_BEGINNING)
                pos[p] = -1;
        json_decref(j);
    }
    evlog_batch_release(&b);
}

int evlog_kafka_check(const struct evlog_cfg *cfg, struct buf *report)
{
    struct kafka k;
    memset(&k, 0, sizeof(k));
    kafka__settings(&k, cfg);
    rd_kafka_t *rk = kafka__new_consumer(&k);
    if (!rk)
        return ERR_INVALID;
    struct evlog *mirror = NULL; /* the positions the mirror reached, when it can be opened */
    if (cfg->dir) {
        struct evlog_cfg lc = *cfg;
        lc.backend = "local";
        if (evlog_local_ops.open(&lc, &mirror) != 0)
            buf_printf(report, "mirror: %s\n", evlog__errmsg());
    }
    const char *const *topics = kafka__shared_topics;
    int rc = 0;
    for (size_t t = 0; topics[t]; t++) {
        char ktopic[256];
        kafka__topic_name(&k, topics[t], ktopic, sizeof(ktopic));
        int n = 0;
        int r = kafka__partition_count(rk, ktopic, &n);
        if (r != 0) {
            buf_printf(report, "%s: %s\n", ktopic, evlog__errmsg());
            rc = r;
            continue;
        }
        buf_printf(report, "%s: %d partitions\n", ktopic, n);
        int64_t *pos = xcalloc((size_t)n, sizeof(*pos));
        for (int p = 0; p < n; p++)
            pos[p] = -1;
        if (mirror)
            mirror_positions(mirror, topics[t], pos, n);
        for (int p = 0; p < n; p++) {
            int64_t lo = 0, hi = 0;
            rd_kafka_resp_err_t err =
                rd_kafka_query_watermark_offsets(rk, ktopic, p, &lo, &hi, META_TIMEOUT_MS);
            if (err) {
                buf_printf(report, "  partition %d: %s\n", p, rd_kafka_err2str(err));
                rc = ERR_BUSY;
            } else {
                buf_printf(report, "  partition %d: offsets %lld..%lld", p, (long long)lo,
                           (long long)hi);
                if (pos[p] > hi) {
                    buf_printf(report,
                               ", but %lld were already mirrored: the topic was recreated or "
                               "truncated\n",
                               (long long)pos[p]);
                    rc = ERR_CORRUPT;
                } else if (pos[p] >= 0)
                    buf_printf(report, ", mirrored up to %lld, lag %lld\n", (long long)pos[p],
                               (long long)(hi - pos[p]));
                else
                    buf_printf(report, ", lag %lld (nothing mirrored)\n", (long long)(hi - lo));
            }
        }
        free(pos);
    }
    kafka__table_check(&k, rk, EVLOG_KEYS_TOPIC, report); /* write keys (docs/scale-out.md) */
    rd_kafka_destroy(rk);
    if (mirror)
        evlog_local_ops.close(mirror);
    return rc;
}
