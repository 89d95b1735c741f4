/* migrate.c - the Kafka half of `tandem log migrate --to kafka` (docs/scale-out.md
 * "Switching"): pins where the primary's copy of every shared topic starts.
 *
 * On Kafka the local log stays: it is the mirror every reader uses, so the records already
 * in it (loaded or not) stay where the loader's stored position expects them, and what the
 * mirror copies from Kafka is appended after them. What the switch must fix is where that
 * copy starts in each partition: at the end of the topic as it is now, which must be empty,
 * since anything already there was written by someone else. That start is one intent record
 * per topic ("migrated": true, no ranges) on "kafka-<topic>" in the local log, the record the
 * mirror resumes from (mirror.c, recover). A directory whose mirror already has intent
 * records was switched before (by this command or by serving with --log kafka): its
 * positions are checked against the topics instead, so running the command again changes
 * nothing. */
#include <jansson.h>
#include <string.h>

#include "evlog/kafka/kafka_int.h"

#define META_TIMEOUT_MS 5000

/* The "end" positions of the last intent record of itopic (RD_KAFKA_OFFSET_BEGINNING for a
 * partition never copied); *found false when there is none. */
static int last_positions(struct evlog *local, const char *itopic, int64_t *pos, int n, bool *found)
{
    *found = false;
    for (int p = 0; p < n; p++)
        pos[p] = RD_KAFKA_OFFSET_BEGINNING;
    uint64_t end = 0;
    int rc = evlog_end_offset(local, itopic, &end);
    if (rc != 0 || end == 0)
        return rc;
    struct evlog_batch b;
    evlog_batch_init(&b);
    rc = evlog_read(local, itopic, end - 1, 1, EVLOG_TAIL_MAX_BYTES, &b);
    json_t *j = rc == 0 && b.n == 1
                    ? json_loadb((const char *)b.recs[0].data, b.recs[0].len, 0, NULL)
                    : NULL;
    evlog_batch_release(&b);
    if (rc != 0)
        return rc;
    json_t *a = json_object_get(j, "end");
    if (!json_is_array(a) || (int)json_array_size(a) > n) {
        json_decref(j);
        evlog__errf("the last record of %s does not fit the topic (%d partitions now)", itopic, n);
        return ERR_CONFLICT;
    }
    for (size_t i = 0; i < json_array_size(a); i++)
        pos[i] = json_integer_value(json_array_get(a, i));
    json_decref(j);
    *found = true;
    return 0;
}

static json_t *all(int n, int64_t v)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v));
    return a;
}

/* One topic: checks it, and writes the start of its copy unless the mirror has one. */
static int migrate_topic(struct kafka *k, rd_kafka_t *rk, struct evlog *local, const char *topic,
                         struct buf *report)
{
    char ktopic[256], itopic[80];
    kafka__topic_name(k, topic, ktopic, sizeof(ktopic));
    snprintf(itopic, sizeof(itopic), "kafka-%s", topic);
    int n = 0;
    int rc = kafka__partition_count(rk, ktopic, &n);
    if (rc != 0) {
        buf_printf(report, "%s: %s; create it (and the other topics) first\n", ktopic,
                   evlog__errmsg());
        return rc;
    }
    int64_t *lo = xcalloc((size_t)n, sizeof(*lo)), *hi = xcalloc((size_t)n, sizeof(*hi));
    int64_t *pos = xcalloc((size_t)n, sizeof(*pos));
    for (int p = 0; rc == 0 && p < n; p++) {
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, ktopic, p, &lo[p], &hi[p], META_TIMEOUT_MS);
        if (err) {
            buf_printf(report, "%s partition %d: %s\n", ktopic, p, rd_kafka_err2str(err));
            rc = ERR_BUSY;
        }
    }
    bool found = false;
    if (rc == 0 && (rc = last_positions(local, itopic, pos, n, &found)) != 0)
        buf_printf(report, "%s: %s\n", ktopic, evlog__errmsg());
    if (rc == 0 && found) { /* switched before: the positions must still fit the topic */
        for (int p = 0; p < n; p++) {
            if (pos[p] < 0)
                continue;
            if (pos[p] > hi[p] || pos[p] < lo[p]) {
                buf_printf(report,
                           "%s partition %d holds offsets %lld..%lld, but this directory's "
                           "copy is at %lld: these are not the topics it was switched to "
                           "(recreated or truncated, or another --kafka-topic-prefix)\n",
                           ktopic, p, (long long)lo[p], (long long)hi[p], (long long)pos[p]);
                rc = ERR_CONFLICT;
            }
        }
        if (rc == 0)
            buf_printf(report, "%s: already switched; the copy continues where it is\n", ktopic);
    }
    if (rc == 0 && !found) { /* a first switch: the topic must be empty */
        for (int p = 0; p < n; p++)
            if (hi[p] > lo[p]) {
                buf_printf(report,
                           "%s partition %d already holds %lld messages (offsets %lld..%lld) "
                           "that this directory never copied: they are not its events, and a "
                           "switch would load them into its warehouse. Switch to empty topics "
                           "(create new ones, or use another --kafka-topic-prefix), and start "
                           "capture nodes only after the switch\n",
                           ktopic, p, (long long)(hi[p] - lo[p]), (long long)lo[p],
                           (long long)(hi[p] - 1));
                rc = ERR_CONFLICT;
            }
    }
    if (rc == 0 && !found) {
        uint64_t base = 0, first = 0;
        rc = evlog_end_offset(local, topic, &base);
        json_t *j = json_object();
        json_t *start = json_array();
        for (int p = 0; p < n; p++)
            json_array_append_new(start, json_integer(hi[p]));
        json_object_set_new(j, "migrated", json_true());
        json_object_set_new(j, "base", json_integer((json_int_t)base));
        json_object_set_new(j, "ranges", json_array());
        json_object_set_new(j, "start", start);
        json_object_set_new(j, "end", json_deep_copy(start));
        json_object_set_new(j, "seq0", all(n, -1));
        json_object_set_new(j, "seq", all(n, -1));
        char *text = rc == 0 ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (text) {
            struct evlog_rec r = {.data = text, .len = strlen(text)};
            rc = evlog_append_sync(local, itopic, &r, 1, &first);
            free(text);
        }
        if (rc != 0)
            buf_printf(report, "%s: cannot write the start of the copy: %s\n", ktopic,
                       evlog_errmsg(local));
        else
            buf_printf(report,
                       "%s: %d empty partitions; the copy starts there, after the %llu "
                       "records of %s in the local log\n",
                       ktopic, n, (unsigned long long)base, topic);
    }
    free(lo);
    free(hi);
    free(pos);
    return rc;
}

int evlog_kafka_migrate(struct evlog *local, const struct evlog_cfg *cfg, FILE *out)
{
    struct kafka k;
    memset(&k, 0, sizeof(k));
    kafka__settings(&k, cfg);
    rd_kafka_t *rk = kafka__new_consumer(&k);
    if (!rk) {
        fprintf(out, "kafka: %s\n", evlog__errmsg());
        return ERR_INVALID;
    }
    int rc = 0;
    for (const char *const *t = kafka__shared_topics; rc == 0 && *t; t++) {
        struct buf report;
        buf_init(&report);
        rc = migrate_topic(&k, rk, local, *t, &report);
        fputs(buf_cstr(&report), out);
        fflush(out); /* one line per step as it happens */
        buf_release(&report);
    }
    rd_kafka_destroy(rk);
    return rc;
}
