/* evlog.c - the facade: configuration, the backend registry, dispatch, batches, errors. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "evlog/evlog_int.h"

static const struct evlog_ops *const backends[] = {&evlog_local_ops, &evlog_kafka_ops};

static _Thread_local char tl_err[512];

void evlog__errf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_err, sizeof(tl_err), fmt, ap);
    va_end(ap);
}

const char *evlog__errmsg(void)
{
    return tl_err;
}

int evlog_fsync_parse(const char *text, enum evlog_fsync *out)
{
    static const char *const names[] = {"always", "batch", "never"};
    for (size_t i = 0; text && i < ARRAY_LEN(names); i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (enum evlog_fsync)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

const char *evlog_fsync_name(enum evlog_fsync policy)
{
    switch (policy) {
    case EVLOG_FSYNC_ALWAYS: return "always";
    case EVLOG_FSYNC_BATCH: return "batch";
    case EVLOG_FSYNC_NEVER: return "never";
    }
    return "unknown";
}

void evlog_cfg_defaults(struct evlog_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = "local";
    cfg->fsync = EVLOG_FSYNC_BATCH;
    cfg->segment_bytes = 128u << 20;
    cfg->sync_interval_us = 2000;
    cfg->retention_check_us = 1000000;
    cfg->max_record_bytes = 16u << 20;
}

bool evlog_name_valid(const char *name)
{
    size_t n = 0;
    if (!name)
        return false;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

const struct evlog_ops *evlog_backend(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(backends); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int evlog_open(const struct evlog_cfg *cfg, struct evlog **out)
{
    *out = NULL;
    const char *name = cfg->backend ? cfg->backend : "local";
    const struct evlog_ops *ops = evlog_backend(name);
    if (!ops) {
        evlog__errf("unknown event log backend \"%s\"", name);
        return ERR_INVALID;
    }
    return ops->open(cfg, out);
}

void evlog_close(struct evlog *log)
{
    if (log)
        log->ops->close(log);
}

int evlog_append(struct evlog *log, const char *topic, const struct evlog_rec *recs, size_t n,
                 uint64_t *first_offset_out, uint64_t *ticket_out)
{
    uint64_t ticket;
    return log->ops->append(log, topic, recs, n, first_offset_out,
                            ticket_out ? ticket_out : &ticket);
}

int evlog_append_keyed(struct evlog *log, const char *topic, const struct evlog_rec *recs,
                       const struct evlog_key *keys, size_t n, uint64_t *first_offset_out,
                       uint64_t *ticket_out)
{
    uint64_t ticket;
    if (!ticket_out)
        ticket_out = &ticket;
    if (keys && log->ops->append_keyed)
        return log->ops->append_keyed(log, topic, recs, keys, n, first_offset_out, ticket_out);
    return log->ops->append(log, topic, recs, n, first_offset_out, ticket_out);
}

int evlog_append_keyed_sync(struct evlog *log, const char *topic, const struct evlog_rec *recs,
                            const struct evlog_key *keys, size_t n, uint64_t *first_offset_out)
{
    uint64_t ticket;
    int rc = evlog_append_keyed(log, topic, recs, keys, n, first_offset_out, &ticket);
    if (rc < 0)
        return rc;
    return log->ops->wait_durable(log, ticket);
}

void evlog_when_durable(struct evlog *log, uint64_t ticket, evlog_durable_cb cb, void *arg)
{
    log->ops->when_durable(log, ticket, cb, arg);
}

int evlog_wait_durable(struct evlog *log, uint64_t ticket)
{
    return log->ops->wait_durable(log, ticket);
}

int evlog_append_sync(struct evlog *log, const char *topic, const struct evlog_rec *recs, size_t n,
                      uint64_t *first_offset_out)
{
    uint64_t ticket;
    int rc = log->ops->append(log, topic, recs, n, first_offset_out, &ticket);
    if (rc < 0)
        return rc;
    return log->ops->wait_durable(log, ticket);
}

int evlog_read(struct evlog *log, const char *topic, uint64_t from, size_t max_records,
               size_t max_bytes, struct evlog_batch *out)
{
    return log->ops->read(log, topic, from, max_records, max_bytes, out);
}

int evlog_tail(struct evlog *log, const char *topic, struct evlog_batch *out)
{
    if (log->ops->tail)
        return log->ops->tail(log, topic, out);
    out->n = 0;
    uint64_t end = 0;
    int rc = log->ops->end_offset(log, topic, &end);
    if (rc != 0 || end == 0)
        return rc;
    return log->ops->read(log, topic, end - 1, 1, EVLOG_TAIL_MAX_BYTES, out);
}

const char *evlog_backend_name(const struct evlog *log)
{
    return log->ops->name;
}

int evlog_end_offset(struct evlog *log, const char *topic, uint64_t *out)
{
    return log->ops->end_offset(log, topic, out);
}

int evlog_start_offset(struct evlog *log, const char *topic, uint64_t *out)
{
    return log->ops->start_offset(log, topic, out);
}

int evlog_consumer_commit(struct evlog *log, const char *consumer, const char *topic,
                          uint64_t next_offset)
{
    return log->ops->consumer_commit(log, consumer, topic, next_offset);
}

int evlog_consumer_get(struct evlog *log, const char *consumer, const char *topic,
                       uint64_t *next_offset_out)
{
    return log->ops->consumer_get(log, consumer, topic, next_offset_out);
}

int evlog_consumer_remove(struct evlog *log, const char *consumer)
{
    return log->ops->consumer_remove(log, consumer);
}

int evlog_retain(struct evlog *log)
{
    return log->ops->retain(log);
}

const char *evlog_errmsg(struct evlog *log)
{
    return log ? log->ops->errmsg(log) : tl_err;
}

void evlog_batch_init(struct evlog_batch *b)
{
    memset(b, 0, sizeof(*b));
}

void evlog_batch_release(struct evlog_batch *b)
{
    free(b->recs);
    free(b->mem);
    memset(b, 0, sizeof(*b));
}

int evlog__batch_reserve(struct evlog_batch *b, size_t n_recs, size_t mem_len)
{
    if (n_recs > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < n_recs)
            cap *= 2;
        struct evlog_rec_view *r = realloc(b->recs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        b->recs = r;
        b->cap = cap;
    }
    if (mem_len > b->mem_cap) {
        size_t cap = b->mem_cap ? b->mem_cap : 65536;
        while (cap < mem_len)
            cap *= 2;
        uint8_t *m = realloc(b->mem, cap);
        if (!m)
            return -ENOMEM;
        b->mem = m;
        b->mem_cap = cap;
    }
    return 0;
}

int evlog_snapshot(struct evlog *log, const char *dest_dir, const struct evlog_cut *cuts,
                   size_t n_cuts)
{
    if (!log->ops->snapshot) { /* e.g. kafka: the log lives outside the data directory */
        evlog__errf("the %s event log cannot be copied into a backup", log->ops->name);
        return ERR_INVALID;
    }
    return log->ops->snapshot(log, dest_dir, cuts, n_cuts);
}

int evlog_erase(struct evlog *log, const char *topic, uint64_t end, evlog_erase_cb match, void *arg,
                uint64_t *n_erased_out)
{
    uint64_t n = 0;
    if (!log->ops->erase) {
        evlog__errf("the %s event log cannot erase records", log->ops->name);
        return ERR_INVALID;
    }
    int rc = log->ops->erase(log, topic, end, match, arg, &n);
    if (n_erased_out)
        *n_erased_out = n;
    return rc;
}
