/* local.c - the local event log backend: segment files in a directory, group commit by one
 * flusher thread, recovery on open, retention and consumer positions.
 *
 * Threads and what they touch:
 *   - any thread (appenders, readers, consumer commits) takes L->mu, a leaf lock, for the
 *     fields marked [mu]; it never holds mu across fsync, a callback or a directory change.
 *     Appenders do pwrite() under mu: that is the copy into the page cache.
 *   - the flusher thread (one per log) snapshots what was written under mu, syncs it without
 *     mu, then under mu advances the durable marks and takes the callbacks that became due,
 *     which it calls without mu. It also runs retention about once a second.
 *   - create_mu serializes topic creation (mkdir, first segment, directory syncs);
 *     consumers_mu serializes writes of the consumer positions file. Both are taken before
 *     mu, never after it.
 *   - the segment an appender rolls away from is synced by that appender (without mu) before
 *     the new segment exists, so only the last segment of a topic can ever have a torn tail;
 *     other appenders of that topic wait on durable_cv while t->rolling is set. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evlog/local/local_int.h"
#include "metrics/metrics.h"

#define MAX_TOPICS 1024
#define MAX_APPEND_BYTES (512u << 20) /* frames of one append call */
#define MIN_SEGMENT_BYTES 64

struct seg {
    uint64_t base;
    uint64_t bytes;        /* [mu] written bytes */
    int64_t last_write_us; /* [mu] for retention by age */
    int fd;
    int refs;              /* [mu] the topic's list holds one; readers, the flusher more */
    bool idx_ready;        /* [mu] idx covers every record of the segment */
    bool erasing;          /* [mu] being rewritten by evlog_erase: retention keeps it */
    struct evlog__idx idx; /* [mu] */
    char *path;
};

struct topic {
    char name[65];
    char *dir;
    struct seg **segs; /* [mu] sorted by base; the last one is active */
    size_t n_segs, cap_segs;
    uint64_t next;    /* [mu] next offset to assign */
    uint64_t durable; /* [mu] every offset below is durable; readers stop here */
    uint64_t snap;    /* [mu] next at the flusher's snapshot */
    bool dirty;       /* [mu] written since the flusher's last snapshot */
    bool rolling;     /* [mu] an appender is rolling the active segment */
    struct metrics_series *m_appends, *m_bytes, *m_end;
};

struct waiter {
    struct waiter *next;
    uint64_t ticket;
    int rc; /* set when taken */
    evlog_durable_cb cb;
    void *arg;
};

struct cpos {
    char consumer[65];
    char topic[65];
    uint64_t next;
};

struct local {
    struct evlog base;
    struct evlog_cfg cfg;
    char *dir;
    int lock_fd;
    pthread_mutex_t mu;
    pthread_cond_t work;       /* flusher: something to sync, or stop (monotonic clock) */
    pthread_cond_t durable_cv; /* durable_seq moved, failed set, or a roll ended */
    pthread_mutex_t create_mu;
    pthread_mutex_t consumers_mu;
    pthread_mutex_t erase_mu; /* one evlog_erase at a time; taken before mu */
    struct topic **topics;    /* [mu] */
    size_t n_topics, cap_topics;
    uint64_t written_seq;   /* [mu] last ticket handed out */
    uint64_t durable_seq;   /* [mu] every ticket up to here is durable */
    int failed;             /* [mu] 0, or ERR_IO once a write or sync failed */
    char fail_msg[400];     /* [mu] what failed */
    struct waiter *waiters; /* [mu] */
    struct cpos *cons;      /* [mu] replaced whole under consumers_mu + mu */
    size_t n_cons;
    bool stop;         /* [mu] */
    bool flusher_idle; /* [mu] */
    bool flusher_started;
    pthread_t flusher;
    /* flusher thread only */
    struct seg **f_segs;
    struct topic **f_topics;
    size_t f_cap;
    int64_t last_sync_us, last_retain_us;
};

int (*evlog__sync_fn)(int fd) = fdatasync;

/* ---- metrics ---- */

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct metrics_family *m_appends, *m_bytes, *m_end, *m_errors;
static struct metrics_series *m_fsyncs, *m_fsync_dur, *m_group;

static void metrics_setup(void)
{
    static const double group_buckets[] = {1,   2,   5,    10,   20,   50,    100,
                                           200, 500, 1000, 2000, 5000, 10000, 50000};
    m_appends = metrics_family(METRICS_COUNTER, "tandem_evlog_appends_total",
                               "Records appended to the event log.", "topic");
    m_bytes = metrics_family(METRICS_COUNTER, "tandem_evlog_append_bytes_total",
                             "Payload bytes appended to the event log.", "topic");
    m_end = metrics_family(METRICS_GAUGE, "tandem_evlog_end_offset",
                           "Durable end offset (next offset) of each topic.", "topic");
    m_errors =
        metrics_family(METRICS_COUNTER, "tandem_evlog_write_errors_total",
                       "Failed event log writes and syncs by kind (nospace, io, fsync).", "kind");
    m_fsyncs = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_evlog_fsyncs_total",
                                              "Event log segment syncs.", NULL));
    m_fsync_dur =
        metrics_series0(metrics_histogram("tandem_evlog_fsync_duration_seconds",
                                          "Time one event log sync round took.", NULL, NULL, 0));
    m_group = metrics_series0(metrics_histogram("tandem_evlog_group_records",
                                                "Records made durable by one sync round.", NULL,
                                                group_buckets, ARRAY_LEN(group_buckets)));
}

static void count_error(const char *kind)
{
    const char *v[] = {kind};
    metrics_inc(metrics_series(m_errors, v), 1);
}

/* ---- segments and topics ---- */

static char *seg_path(const char *dir, uint64_t base)
{
    size_t n = strlen(dir) + 1 + EVLOG_SEG_NAME_LEN + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%020" PRIu64 EVLOG_SEG_SUFFIX, dir, base);
    return p;
}

static struct seg *seg_new(const char *dir, uint64_t base, int fd)
{
    struct seg *s = xcalloc(1, sizeof(*s));
    s->base = base;
    s->fd = fd;
    s->refs = 1;
    s->path = seg_path(dir, base);
    return s;
}

static void seg_free(struct seg *s)
{
    if (s->fd >= 0)
        close(s->fd);
    evlog__idx_release(&s->idx);
    free(s->path);
    free(s);
}

/* Under mu, or when no other thread can see s. */
static void seg_unref(struct seg *s)
{
    if (--s->refs == 0)
        seg_free(s);
}

static void topic_push_seg(struct topic *t, struct seg *s)
{
    if (t->n_segs == t->cap_segs) {
        t->cap_segs = t->cap_segs ? t->cap_segs * 2 : 8;
        t->segs = xrealloc(t->segs, t->cap_segs * sizeof(*t->segs));
    }
    t->segs[t->n_segs++] = s;
}

static struct topic *topic_new(struct local *L, const char *name)
{
    struct topic *t = xcalloc(1, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    size_t n = strlen(L->dir) + 1 + strlen(name) + 1;
    t->dir = xmalloc(n);
    snprintf(t->dir, n, "%s/%s", L->dir, name);
    const char *v[] = {name};
    t->m_appends = metrics_series(m_appends, v);
    t->m_bytes = metrics_series(m_bytes, v);
    t->m_end = metrics_series(m_end, v);
    return t;
}

static void topic_free(struct topic *t)
{
    for (size_t i = 0; i < t->n_segs; i++)
        seg_unref(t->segs[i]);
    free(t->segs);
    free(t->dir);
    free(t);
}

/* Under mu. */
static struct topic *topic_find(struct local *L, const char *name)
{
    for (size_t i = 0; i < L->n_topics; i++)
        if (strcmp(L->topics[i]->name, name) == 0)
            return L->topics[i];
    return NULL;
}

static void topic_insert(struct local *L, struct topic *t)
{
    if (L->n_topics == L->cap_topics) {
        L->cap_topics = L->cap_topics ? L->cap_topics * 2 : 8;
        L->topics = xrealloc(L->topics, L->cap_topics * sizeof(*L->topics));
    }
    L->topics[L->n_topics++] = t;
}

static bool is_nospace(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG;
}

/* Under mu: the log stops accepting writes for good. The calling thread's error message
 * says what failed; the caller logs it once mu is released. */
static void fail_log(struct local *L, const char *kind)
{
    if (!L->failed) {
        L->failed = ERR_IO;
        snprintf(L->fail_msg, sizeof(L->fail_msg), "%s", evlog__errmsg());
    }
    count_error(kind);
    pthread_cond_broadcast(&L->durable_cv);
    pthread_cond_signal(&L->work);
}

/* Creates (or adopts, when empty) the segment file dir/<base>.seg and syncs dir.
 * ERR_BUSY when the disk is full, ERR_CORRUPT when a non-empty file is in the way. */
static int seg_create(const char *dir, uint64_t base, struct seg **out)
{
    char *path = seg_path(dir, base);
    struct stat st;
    int rc = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        evlog__errf("cannot create segment %s: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        evlog__errf("cannot stat segment %s: %s", path, strerror(errno));
        goto fail;
    }
    if (st.st_size != 0) {
        rc = ERR_CORRUPT;
        evlog__errf("segment %s already exists with %lld bytes", path, (long long)st.st_size);
        goto fail;
    }
    rc = evlog__fsync_dir(dir);
    if (rc < 0) {
        evlog__errf("cannot sync directory %s: %s", dir, err_str(rc));
        goto fail;
    }
    *out = seg_new(dir, base, fd);
    (*out)->last_write_us = time_now_us();
    (*out)->idx_ready = true;
    evlog__idx_add(&(*out)->idx, base, 0);
    free(path);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    return is_nospace(rc) ? ERR_BUSY : rc;
}

/* Finds topic name, creating its directory and first segment when create is set.
 * Without create, a missing topic gives *out = NULL and 0. */
static int topic_get(struct local *L, const char *name, bool create, struct topic **out)
{
    struct topic *t;
    struct seg *s = NULL;
    int rc = 0;
    pthread_mutex_lock(&L->mu);
    t = topic_find(L, name);
    pthread_mutex_unlock(&L->mu);
    *out = t;
    if (t || !create)
        return 0;

    pthread_mutex_lock(&L->create_mu);
    pthread_mutex_lock(&L->mu);
    t = topic_find(L, name);
    size_t n_topics = L->n_topics;
    pthread_mutex_unlock(&L->mu);
    if (t)
        goto out;
    if (n_topics >= MAX_TOPICS) {
        evlog__errf("too many topics (at most %d)", MAX_TOPICS);
        rc = ERR_LIMIT;
        goto out;
    }
    t = topic_new(L, name);
    if (mkdir(t->dir, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        evlog__errf("cannot create topic directory %s: %s", t->dir, strerror(errno));
        goto fail;
    }
    rc = seg_create(t->dir, 0, &s);
    if (rc < 0)
        goto fail;
    rc = evlog__fsync_dir(L->dir);
    if (rc < 0) {
        evlog__errf("cannot sync directory %s: %s", L->dir, err_str(rc));
        goto fail;
    }
    topic_push_seg(t, s);
    s = NULL;
    pthread_mutex_lock(&L->mu);
    topic_insert(L, t);
    pthread_mutex_unlock(&L->mu);
    metrics_set(t->m_end, 0);
    goto out;
fail:
    if (s)
        seg_free(s);
    topic_free(t);
    t = NULL;
    if (is_nospace(rc))
        rc = ERR_BUSY;
out:
    pthread_mutex_unlock(&L->create_mu);
    *out = t;
    return rc;
}

/* Under mu, with t->rolling clear: syncs the active segment and starts a new one at
 * t->next. Releases mu while it does I/O. */
static int topic_roll(struct local *L, struct topic *t)
{
    struct seg *old = t->segs[t->n_segs - 1], *s = NULL;
    uint64_t base = t->next;
    int rc;
    t->rolling = true;
    old->refs++;
    pthread_mutex_unlock(&L->mu);

    int64_t t0 = time_mono_us();
    rc = evlog__sync_fn(old->fd) < 0 ? -errno : 0;
    metrics_inc(m_fsyncs, 1);
    metrics_observe(m_fsync_dur, (double)(time_mono_us() - t0) / 1e6);
    if (rc < 0)
        evlog__errf("cannot sync segment %s: %s", old->path, err_str(rc));
    else
        rc = seg_create(t->dir, base, &s);
    if (rc < 0 && rc != ERR_BUSY)
        xlog_error("%s; the event log stops accepting writes", evlog__errmsg());

    pthread_mutex_lock(&L->mu);
    seg_unref(old);
    t->rolling = false;
    pthread_cond_broadcast(&L->durable_cv);
    if (rc == 0) {
        topic_push_seg(t, s);
        return 0;
    }
    if (rc == ERR_BUSY) {
        count_error("nospace");
        return rc;
    }
    fail_log(L, rc == ERR_CORRUPT ? "io" : "fsync");
    return ERR_IO;
}

/* ---- append ---- */

static int local_append(struct evlog *lg, const char *topic, const struct evlog_rec *recs, size_t n,
                        uint64_t *first_offset_out, uint64_t *ticket_out)
{
    struct local *L = (struct local *)lg;
    struct topic *t = NULL;
    uint8_t *buf = NULL;
    size_t total = 0, payload = 0;
    int rc = 0;
    enum xlog_level log_level = XLOG_OFF; /* what to log once mu is released */

    if (!evlog_name_valid(topic)) {
        evlog__errf("invalid topic name \"%s\"", topic ? topic : "");
        return ERR_INVALID;
    }
    if (n == 0) {
        evlog__errf("empty append");
        return ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (recs[i].len > L->cfg.max_record_bytes) {
            evlog__errf("record of %zu bytes is over the limit of %u", recs[i].len,
                        L->cfg.max_record_bytes);
            return ERR_LIMIT;
        }
        total += evlog__frame_size(recs[i].len);
        payload += recs[i].len;
        if (total > MAX_APPEND_BYTES) {
            evlog__errf("append of more than %u bytes", MAX_APPEND_BYTES);
            return ERR_LIMIT;
        }
    }
    pthread_mutex_lock(&L->mu);
    rc = L->failed;
    if (rc < 0)
        evlog__errf("the event log stopped accepting writes: %s", L->fail_msg);
    pthread_mutex_unlock(&L->mu);
    if (rc < 0)
        return rc;
    buf = malloc(total);
    if (!buf) {
        evlog__errf("out of memory for an append of %zu bytes", total);
        return -ENOMEM;
    }
    /* Frame payloads and their checksums outside the lock; the payload CRC waits in the
     * header's crc field until the offset is known. */
    for (size_t i = 0, pos = 0; i < n; i++) {
        uint8_t *f = buf + pos;
        if (recs[i].len)
            memcpy(f + EVLOG_FRAME_HDR, recs[i].data, recs[i].len);
        le_put32(f + 4, evlog__frame_payload_crc(recs[i].data, recs[i].len));
        pos += evlog__frame_size(recs[i].len);
    }
    int64_t ts = time_now_us();

    rc = topic_get(L, topic, true, &t);
    if (rc < 0)
        goto out;

    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (t->rolling && !L->failed)
            pthread_cond_wait(&L->durable_cv, &L->mu);
        if (L->failed) {
            evlog__errf("the event log stopped accepting writes: %s", L->fail_msg);
            rc = L->failed;
            goto unlock;
        }
        struct seg *s = t->segs[t->n_segs - 1];
        if (s->bytes == 0 || s->bytes + total <= L->cfg.segment_bytes)
            break;
        rc = topic_roll(L, t);
        if (rc < 0)
            goto unlock;
    }
    struct seg *s = t->segs[t->n_segs - 1];
    uint64_t first = t->next, start = s->bytes;
    for (size_t i = 0, pos = 0; i < n; i++) {
        uint8_t *f = buf + pos;
        evlog__frame_seal(f, (uint32_t)recs[i].len, first + i, ts, le_get32(f + 4));
        pos += evlog__frame_size(recs[i].len);
    }
    rc = evlog__pwrite_all(s->fd, buf, total, start);
    if (rc < 0) {
        if (is_nospace(rc) && ftruncate(s->fd, (off_t)start) == 0) {
            evlog__errf("no space to append %zu bytes to segment %s: %s", total, s->path,
                        err_str(rc));
            log_level = XLOG_WARN;
            count_error("nospace");
            rc = ERR_BUSY;
            goto unlock;
        }
        evlog__errf("cannot write segment %s at byte %" PRIu64 ": %s", s->path, start, err_str(rc));
        log_level = XLOG_ERROR;
        fail_log(L, "io");
        rc = ERR_IO;
        goto unlock;
    }
    for (size_t i = 0, pos = 0; i < n; i++) {
        if (s->idx_ready && start + pos - s->idx.last_pos >= EVLOG_IDX_EVERY)
            evlog__idx_add(&s->idx, first + i, start + pos);
        pos += evlog__frame_size(recs[i].len);
    }
    s->bytes += total;
    s->last_write_us = ts;
    t->next += n;
    t->dirty = true;
    *first_offset_out = first;
    *ticket_out = ++L->written_seq;
    if (L->cfg.fsync == EVLOG_FSYNC_NEVER) {
        L->durable_seq = L->written_seq;
        t->durable = t->next;
        metrics_set(t->m_end, (double)t->durable);
    } else if (L->flusher_idle) {
        pthread_cond_signal(&L->work);
    }
unlock:
    pthread_mutex_unlock(&L->mu);
    if (rc == 0) {
        metrics_inc(t->m_appends, n);
        metrics_inc(t->m_bytes, payload);
    } else if (log_level == XLOG_WARN) {
        xlog_warn("%s", evlog__errmsg());
    } else if (log_level == XLOG_ERROR) {
        xlog_error("%s; the event log stops accepting writes", evlog__errmsg());
    }
out:
    free(buf);
    return rc;
}

/* ---- durability ---- */

static void local_when_durable(struct evlog *lg, uint64_t ticket, evlog_durable_cb cb, void *arg)
{
    struct local *L = (struct local *)lg;
    int rc;
    pthread_mutex_lock(&L->mu);
    if (ticket <= L->durable_seq) {
        rc = 0;
    } else if (L->failed) {
        rc = L->failed;
    } else if (ticket > L->written_seq) {
        rc = ERR_INVALID;
    } else {
        struct waiter *w = xmalloc(sizeof(*w));
        w->ticket = ticket;
        w->cb = cb;
        w->arg = arg;
        w->next = L->waiters;
        L->waiters = w;
        pthread_mutex_unlock(&L->mu);
        return;
    }
    pthread_mutex_unlock(&L->mu);
    cb(arg, rc);
}

static int local_wait_durable(struct evlog *lg, uint64_t ticket)
{
    struct local *L = (struct local *)lg;
    int rc = 0;
    pthread_mutex_lock(&L->mu);
    if (ticket > L->written_seq) {
        rc = ERR_INVALID;
        goto out;
    }
    while (L->durable_seq < ticket && !L->failed)
        pthread_cond_wait(&L->durable_cv, &L->mu);
    if (L->durable_seq < ticket) {
        evlog__errf("the records may be lost: %s", L->fail_msg);
        rc = L->failed;
    }
out:
    pthread_mutex_unlock(&L->mu);
    return rc;
}

/* Under mu: unlinks the waiters that are answered (durable, or all when failed). */
static struct waiter *take_due(struct local *L)
{
    struct waiter *due = NULL, **pp = &L->waiters;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->ticket <= L->durable_seq || L->failed) {
            w->rc = w->ticket <= L->durable_seq ? 0 : L->failed;
            *pp = w->next;
            w->next = due;
            due = w;
        } else {
            pp = &w->next;
        }
    }
    return due;
}

static void call_due(struct waiter *due)
{
    while (due) {
        struct waiter *w = due;
        due = w->next;
        w->cb(w->arg, w->rc);
        free(w);
    }
}

static int retain_run(struct local *L);

static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t mono_us)
{
    struct timespec ts = {.tv_sec = mono_us / 1000000, .tv_nsec = (mono_us % 1000000) * 1000};
    pthread_cond_timedwait(c, m, &ts);
}

/* Under mu: one group commit. Returns with mu held. */
static void flush_round(struct local *L)
{
    uint64_t target = L->written_seq;
    size_t n = 0;
    if (L->f_cap < L->n_topics) {
        L->f_cap = L->n_topics * 2;
        L->f_segs = xrealloc(L->f_segs, L->f_cap * sizeof(*L->f_segs));
        L->f_topics = xrealloc(L->f_topics, L->f_cap * sizeof(*L->f_topics));
    }
    for (size_t i = 0; i < L->n_topics; i++) {
        struct topic *t = L->topics[i];
        if (!t->dirty)
            continue;
        t->dirty = false;
        t->snap = t->next;
        struct seg *s = t->segs[t->n_segs - 1];
        s->refs++;
        L->f_topics[n] = t;
        L->f_segs[n++] = s;
    }
    pthread_mutex_unlock(&L->mu);

    int rc = 0;
    struct seg *bad = NULL;
    int64_t t0 = time_mono_us();
    L->last_sync_us = t0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (evlog__sync_fn(L->f_segs[i]->fd) < 0) {
            rc = -errno;
            bad = L->f_segs[i];
        }
        metrics_inc(m_fsyncs, 1);
    }
    metrics_observe(m_fsync_dur, (double)(time_mono_us() - t0) / 1e6);
    if (rc < 0) {
        evlog__errf("cannot sync segment %s: %s", bad->path, err_str(rc));
        xlog_error("%s; the event log stops accepting writes", evlog__errmsg());
    }

    pthread_mutex_lock(&L->mu);
    if (rc < 0) {
        fail_log(L, "fsync");
    } else if (!L->failed) {
        uint64_t records = 0;
        L->durable_seq = target;
        for (size_t i = 0; i < n; i++) {
            struct topic *t = L->f_topics[i];
            records += t->snap - t->durable;
            t->durable = t->snap;
            metrics_set(t->m_end, (double)t->durable);
        }
        metrics_observe(m_group, (double)records);
        pthread_cond_broadcast(&L->durable_cv);
    }
    for (size_t i = 0; i < n; i++)
        seg_unref(L->f_segs[i]);
}

static void *flusher_main(void *arg)
{
    struct local *L = arg;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        struct waiter *due = take_due(L);
        if (due) {
            pthread_mutex_unlock(&L->mu);
            call_due(due);
            pthread_mutex_lock(&L->mu);
            continue;
        }
        bool pending = L->written_seq > L->durable_seq && !L->failed;
        int64_t now = time_mono_us();
        if (!L->stop && now - L->last_retain_us >= L->cfg.retention_check_us) {
            /* also under constant load, so retention never starves */
            L->last_retain_us = now;
            pthread_mutex_unlock(&L->mu);
            if (retain_run(L) < 0)
                xlog_warn("event log retention: %s", evlog__errmsg());
            pthread_mutex_lock(&L->mu);
            continue;
        }
        if (!pending) {
            if (L->stop)
                break;
            L->flusher_idle = true;
            cond_wait_until(&L->work, &L->mu, L->last_retain_us + L->cfg.retention_check_us);
            L->flusher_idle = false;
            continue;
        }
        if (L->cfg.fsync == EVLOG_FSYNC_BATCH && !L->stop &&
            now < L->last_sync_us + L->cfg.sync_interval_us) {
            /* let the group grow until the interval since the last sync has passed */
            cond_wait_until(&L->work, &L->mu, L->last_sync_us + L->cfg.sync_interval_us);
            continue;
        }
        flush_round(L);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- reading ---- */

/* Under mu: the segment holding offset off (the last one with base <= off). */
static size_t seg_index(const struct topic *t, uint64_t off)
{
    size_t lo = 0, hi = t->n_segs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->segs[mid]->base <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* Builds the index of a closed segment found at open (outside mu). */
static int seg_build_index(struct local *L, struct seg *s)
{
    struct evlog__idx idx = {0};
    struct evlog__scan scan;
    int rc = evlog__scan_segment(s->fd, s->base, EVLOG_HARD_MAX_RECORD, &scan, &idx);
    if (rc < 0) {
        evlog__errf("cannot read segment %s: %s", s->path, err_str(rc));
        evlog__idx_release(&idx);
        return rc;
    }
    if (idx.n == 0)
        evlog__idx_add(&idx, s->base, 0);
    pthread_mutex_lock(&L->mu);
    if (!s->idx_ready) {
        s->idx = idx;
        s->idx_ready = true;
        memset(&idx, 0, sizeof(idx));
    }
    pthread_mutex_unlock(&L->mu);
    evlog__idx_release(&idx);
    return 0;
}

static int read_chunk(struct evlog_batch *b, size_t at, int fd, uint64_t pos, size_t want,
                      size_t *got_out)
{
    int rc = evlog__batch_reserve(b, 0, at + want);
    if (rc < 0)
        return rc;
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, b->mem + at + got, want - got, (off_t)(pos + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *got_out = got;
    return 0;
}

#define READ_CHUNK (256u << 10)

static int local_read(struct evlog *lg, const char *topic, uint64_t from, size_t max_records,
                      size_t max_bytes, struct evlog_batch *out)
{
    struct local *L = (struct local *)lg;
    struct seg *s = NULL;
    int rc = 0;
    out->n = 0;
    out->next_offset = from;
    out->mem_len = 0;
    if (!evlog_name_valid(topic)) {
        evlog__errf("invalid topic name \"%s\"", topic ? topic : "");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->mu);
    struct topic *t = topic_find(L, topic);
    if (!t) {
        pthread_mutex_unlock(&L->mu);
        evlog__errf("no topic \"%s\"", topic);
        return ERR_NOTFOUND;
    }
    uint64_t end = t->durable;
    if (from > end) {
        pthread_mutex_unlock(&L->mu);
        evlog__errf("offset %" PRIu64 " is beyond the end %" PRIu64 " of topic %s", from, end,
                    topic);
        return ERR_INVALID;
    }
    if (from < t->segs[0]->base) {
        uint64_t first = t->segs[0]->base;
        pthread_mutex_unlock(&L->mu);
        evlog__errf("offset %" PRIu64
                    " of topic %s was deleted by retention; the first is %" PRIu64,
                    from, topic, first);
        return ERR_NOTFOUND;
    }
    if (from == end || max_records == 0) {
        pthread_mutex_unlock(&L->mu);
        return 0;
    }
    s = t->segs[seg_index(t, from)];
    s->refs++;
    pthread_mutex_unlock(&L->mu);

    uint64_t off = from;
    size_t bytes = 0, n = 0;
    size_t *data_at = NULL; /* mem positions, turned into pointers at the end */
    size_t data_cap = 0;
    while (n < max_records && off < end) {
        pthread_mutex_lock(&L->mu);
        bool ready = s->idx_ready;
        pthread_mutex_unlock(&L->mu);
        if (!ready) {
            rc = seg_build_index(L, s);
            if (rc < 0)
                goto out;
        }
        uint64_t cur, pos;
        pthread_mutex_lock(&L->mu);
        evlog__idx_find(&s->idx, off, &cur, &pos);
        uint64_t seg_bytes = s->bytes;
        pthread_mutex_unlock(&L->mu);

        /* chunk: file bytes [cpos, cpos + clen) sit at mem[cat] */
        uint64_t cpos = pos;
        size_t cat = out->mem_len, clen = 0;
        while (n < max_records && off < end && pos < seg_bytes) {
            struct evlog_rec_view v;
            size_t have = (size_t)(cpos + clen - pos);
            const uint8_t *p = have ? out->mem + cat + (pos - cpos) : NULL;
            enum evlog__frame_rc fr =
                have ? evlog__frame_get(p, have, EVLOG_HARD_MAX_RECORD, cur, &v)
                     : EVLOG_FRAME_SHORT;
            if (fr == EVLOG_FRAME_SHORT) {
                size_t need =
                    have >= EVLOG_FRAME_HDR ? EVLOG_FRAME_HDR + le_get32(p) : EVLOG_FRAME_HDR;
                if (seg_bytes - pos < need) {
                    fr = EVLOG_FRAME_SHORT;
                    goto corrupt;
                }
                /* read ahead about what the caller still wants, at most READ_CHUNK */
                size_t left_recs = max_records - n, hint = READ_CHUNK;
                if (left_recs < READ_CHUNK / EVLOG_FRAME_HDR && max_bytes - bytes < READ_CHUNK)
                    hint = (max_bytes - bytes) + left_recs * EVLOG_FRAME_HDR;
                if (cur < from) /* records to skip first: up to one index interval */
                    hint = READ_CHUNK;
                size_t want = need > hint ? need : hint;
                if (want > seg_bytes - pos)
                    want = (size_t)(seg_bytes - pos);
                cat += (size_t)(pos - cpos);
                cpos = pos;
                rc = read_chunk(out, cat, s->fd, pos, want, &clen);
                if (rc < 0) {
                    evlog__errf("cannot read segment %s: %s", s->path, err_str(rc));
                    goto out;
                }
                if (clen < need) {
                    fr = EVLOG_FRAME_SHORT;
                    goto corrupt;
                }
                continue;
            }
            if (fr != EVLOG_FRAME_OK) {
            corrupt:
                evlog__errf("segment %s: %s at byte %" PRIu64 " (offset %" PRIu64 ")", s->path,
                            evlog__frame_rc_str(fr), pos, cur);
                xlog_error("%s", evlog__errmsg());
                rc = ERR_CORRUPT;
                goto out;
            }
            if (cur >= from) {
                if (n > 0 && bytes + v.len > max_bytes)
                    goto done;
                rc = evlog__batch_reserve(out, n + 1, 0);
                if (rc < 0)
                    goto out;
                if (n == data_cap) {
                    data_cap = data_cap ? data_cap * 2 : 64;
                    data_at = xrealloc(data_at, data_cap * sizeof(*data_at));
                }
                out->recs[n] = v;
                data_at[n] = (size_t)(p - out->mem) + EVLOG_FRAME_HDR;
                n++;
                bytes += v.len;
                off = cur + 1;
                out->mem_len = cat + (size_t)(pos - cpos) + EVLOG_FRAME_HDR + v.len;
            }
            cur++;
            pos += EVLOG_FRAME_HDR + v.len;
        }
        if (n >= max_records || off >= end)
            break;
        /* this segment is exhausted: move to the one starting at off */
        pthread_mutex_lock(&L->mu);
        if (off < t->segs[0]->base) {
            pthread_mutex_unlock(&L->mu);
            evlog__errf("offset %" PRIu64 " of topic %s was deleted by retention while read", off,
                        topic);
            rc = ERR_NOTFOUND;
            goto out;
        }
        size_t i = seg_index(t, off);
        struct seg *next = t->segs[i];
        if (next == s || next->base != off) {
            pthread_mutex_unlock(&L->mu);
            evlog__errf("topic %s: segment %s ends before offset %" PRIu64, topic, s->path, off);
            rc = ERR_CORRUPT;
            goto out;
        }
        next->refs++;
        seg_unref(s);
        s = next;
        pthread_mutex_unlock(&L->mu);
        out->mem_len = cat + (size_t)(pos - cpos);
    }
done:
    for (size_t i = 0; i < n; i++)
        out->recs[i].data = out->mem + data_at[i];
    out->n = n;
    out->next_offset = off;
out:
    free(data_at);
    if (rc < 0)
        out->n = 0;
    pthread_mutex_lock(&L->mu);
    seg_unref(s);
    pthread_mutex_unlock(&L->mu);
    return rc;
}

static int local_end_offset(struct evlog *lg, const char *topic, uint64_t *out)
{
    struct local *L = (struct local *)lg;
    if (!evlog_name_valid(topic)) {
        evlog__errf("invalid topic name \"%s\"", topic ? topic : "");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->mu);
    struct topic *t = topic_find(L, topic);
    *out = t ? t->durable : 0;
    pthread_mutex_unlock(&L->mu);
    return 0;
}

static int local_start_offset(struct evlog *lg, const char *topic, uint64_t *out)
{
    struct local *L = (struct local *)lg;
    if (!evlog_name_valid(topic)) {
        evlog__errf("invalid topic name \"%s\"", topic ? topic : "");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->mu);
    struct topic *t = topic_find(L, topic);
    *out = t ? t->segs[0]->base : 0;
    pthread_mutex_unlock(&L->mu);
    return 0;
}

/* ---- retention ---- */

/* Under mu: the lowest position of a consumer registered on topic, or UINT64_MAX. */
static uint64_t min_needed(struct local *L, const char *topic)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < L->n_cons; i++)
        if (strcmp(L->cons[i].topic, topic) == 0 && L->cons[i].next < m)
            m = L->cons[i].next;
    return m;
}

static int retain_run(struct local *L)
{
    struct doomed {
        struct seg *seg;
        const char *dir;
    } *doomed = NULL;
    size_t n_doomed = 0, cap = 0;
    int64_t now = time_now_us();
    int rc = 0;

    if (!L->cfg.retention_bytes && !L->cfg.retention_age_us)
        return 0;
    pthread_mutex_lock(&L->mu);
    for (size_t ti = 0; ti < L->n_topics; ti++) {
        struct topic *t = L->topics[ti];
        uint64_t need = min_needed(L, t->name), total = 0;
        size_t k = 0; /* segments to drop from the front */
        for (size_t i = 0; i < t->n_segs; i++)
            total += t->segs[i]->bytes;
        for (; k + 1 < t->n_segs; k++) {
            struct seg *s = t->segs[k];
            bool by_size = L->cfg.retention_bytes && total > L->cfg.retention_bytes;
            bool by_age =
                L->cfg.retention_age_us && now - s->last_write_us > L->cfg.retention_age_us;
            if (t->segs[k + 1]->base > need || !(by_size || by_age) || s->erasing)
                break;
            total -= s->bytes;
            if (n_doomed == cap) {
                cap = cap ? cap * 2 : 8;
                doomed = xrealloc(doomed, cap * sizeof(*doomed));
            }
            doomed[n_doomed].seg = s; /* takes the list's reference */
            doomed[n_doomed++].dir = t->dir;
        }
        if (k) {
            memmove(t->segs, t->segs + k, (t->n_segs - k) * sizeof(*t->segs));
            t->n_segs -= k;
        }
    }
    pthread_mutex_unlock(&L->mu);

    /* oldest first, one directory sync each, so a crash never leaves a gap */
    for (size_t i = 0; i < n_doomed; i++) {
        struct seg *s = doomed[i].seg;
        if (unlink(s->path) < 0 && errno != ENOENT) {
            evlog__errf("cannot delete segment %s: %s", s->path, strerror(errno));
            xlog_warn("%s", evlog__errmsg());
            rc = -errno;
            continue;
        }
        int r = evlog__fsync_dir(doomed[i].dir);
        if (r < 0) {
            evlog__errf("cannot sync directory %s: %s", doomed[i].dir, err_str(r));
            rc = r;
        }
        xlog_info("retention deleted segment %s", s->path);
    }
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < n_doomed; i++)
        seg_unref(doomed[i].seg);
    pthread_mutex_unlock(&L->mu);
    free(doomed);
    return rc;
}

static int local_retain(struct evlog *lg)
{
    return retain_run((struct local *)lg);
}

/* ---- consumer positions ---- */

#define CONS_MAGIC "tandem-evlog-consumers 1\n"

static char *cons_path(struct local *L, const char *suffix)
{
    size_t n = strlen(L->dir) + sizeof(EVLOG_CONSUMERS_FILE) + strlen(suffix) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s%s", L->dir, EVLOG_CONSUMERS_FILE, suffix);
    return p;
}

/* Writes the positions file: temp, fsync, rename, fsync dir. */
static int cons_store(struct local *L, const struct cpos *c, size_t n)
{
    struct buf b;
    char *tmp = cons_path(L, ".tmp"), *path = cons_path(L, "");
    int fd = -1, rc = 0;
    buf_init(&b);
    buf_puts(&b, CONS_MAGIC);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s %s %" PRIu64 "\n", c[i].consumer, c[i].topic, c[i].next);
    buf_printf(&b, "end %08x\n", crc32c(0, b.ptr, b.len));

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = evlog__pwrite_all(fd, b.ptr, b.len, 0);
    if (rc < 0)
        goto fail;
    if (fsync(fd) < 0) {
        rc = -errno;
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = evlog__fsync_dir(L->dir);
    if (rc < 0)
        goto fail;
    goto out;
fail:
    evlog__errf("cannot store consumer positions in %s: %s", path, err_str(rc));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    if (is_nospace(rc))
        rc = ERR_BUSY;
out:
    buf_release(&b);
    free(tmp);
    free(path);
    return rc;
}

/* Parses the positions file at path; a missing file is an empty list. */
static int cons_read(const char *path, struct cpos **out, size_t *n_out)
{
    FILE *f = fopen(path, "re");
    struct cpos *cons = NULL;
    size_t n = 0;
    struct buf b;
    int rc = 0;
    buf_init(&b);
    if (!f) {
        rc = errno == ENOENT ? 0 : -errno;
        if (rc < 0)
            evlog__errf("cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, got);
    fclose(f);
    const char *s = buf_cstr(&b);
    size_t len = b.len, mlen = strlen(CONS_MAGIC);
    /* the last line is the trailer "end %08x\n" (13 bytes): CRC-32C of everything before */
    if (len < mlen + 13 || memcmp(s, CONS_MAGIC, mlen) != 0 ||
        memcmp(s + len - 13, "end ", 4) != 0 || s[len - 1] != '\n')
        goto corrupt;
    unsigned crc;
    if (sscanf(s + len - 9, "%8x", &crc) != 1 || crc != crc32c(0, s, len - 13))
        goto corrupt;
    for (const char *p = s + mlen; p < s + len - 13;) {
        const char *nl = memchr(p, '\n', (size_t)(s + len - 13 - p));
        char cons_name[80], topic[80], line[256];
        unsigned long long next;
        if (!nl || (size_t)(nl - p) >= sizeof(line))
            goto corrupt;
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = 0;
        if (sscanf(line, "%79s %79s %llu", cons_name, topic, &next) != 3 ||
            !evlog_name_valid(cons_name) || !evlog_name_valid(topic))
            goto corrupt;
        cons = xrealloc(cons, (n + 1) * sizeof(*cons));
        memcpy(cons[n].consumer, cons_name, strlen(cons_name) + 1); /* valid: <= 64 */
        memcpy(cons[n].topic, topic, strlen(topic) + 1);
        cons[n++].next = next;
        p = nl + 1;
    }
    goto out;
corrupt:
    evlog__errf("consumer positions file %s is damaged", path);
    rc = ERR_CORRUPT;
    free(cons);
    cons = NULL;
    n = 0;
out:
    buf_release(&b);
    *out = cons;
    *n_out = n;
    return rc;
}

static int cons_load(struct local *L)
{
    char *path = cons_path(L, "");
    int rc = cons_read(path, &L->cons, &L->n_cons);
    free(path);
    return rc;
}

int evlog__cons_check(const char *dir)
{
    size_t len = strlen(dir) + sizeof(EVLOG_CONSUMERS_FILE) + 2, n;
    char *path = xmalloc(len);
    struct cpos *c;
    snprintf(path, len, "%s/%s", dir, EVLOG_CONSUMERS_FILE);
    int rc = cons_read(path, &c, &n);
    free(c);
    free(path);
    return rc;
}

/* Replaces the consumer list by a copy with consumer's position on topic set (set = true)
 * or with every position of consumer removed (topic NULL). */
static int cons_change(struct local *L, const char *consumer, const char *topic, uint64_t next)
{
    int rc = 0;
    pthread_mutex_lock(&L->consumers_mu);
    pthread_mutex_lock(&L->mu);
    size_t n = 0;
    struct cpos *c = xmalloc((L->n_cons + 1) * sizeof(*c));
    bool found = false;
    for (size_t i = 0; i < L->n_cons; i++) {
        if (strcmp(L->cons[i].consumer, consumer) != 0) {
            c[n++] = L->cons[i];
        } else if (topic && strcmp(L->cons[i].topic, topic) == 0) {
            c[n] = L->cons[i];
            c[n++].next = next;
            found = true;
        } else if (topic) {
            c[n++] = L->cons[i];
        } else {
            found = true;
        }
    }
    if (topic && !found) {
        snprintf(c[n].consumer, sizeof(c[n].consumer), "%s", consumer);
        snprintf(c[n].topic, sizeof(c[n].topic), "%s", topic);
        c[n++].next = next;
    }
    pthread_mutex_unlock(&L->mu);
    if (!topic && !found) {
        evlog__errf("no consumer \"%s\"", consumer);
        rc = ERR_NOTFOUND;
        free(c);
        goto out;
    }
    /* durable first, then visible to retention */
    rc = cons_store(L, c, n);
    if (rc < 0) {
        free(c);
        goto out;
    }
    pthread_mutex_lock(&L->mu);
    free(L->cons);
    L->cons = c;
    L->n_cons = n;
    pthread_mutex_unlock(&L->mu);
out:
    pthread_mutex_unlock(&L->consumers_mu);
    return rc;
}

static int local_consumer_commit(struct evlog *lg, const char *consumer, const char *topic,
                                 uint64_t next_offset)
{
    struct local *L = (struct local *)lg;
    if (!evlog_name_valid(consumer) || !evlog_name_valid(topic)) {
        evlog__errf("invalid consumer or topic name");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->mu);
    struct topic *t = topic_find(L, topic);
    uint64_t end = t ? t->durable : 0;
    pthread_mutex_unlock(&L->mu);
    if (next_offset > end) {
        evlog__errf("offset %" PRIu64 " is beyond the end %" PRIu64 " of topic %s", next_offset,
                    end, topic);
        return ERR_INVALID;
    }
    return cons_change(L, consumer, topic, next_offset);
}

static int local_consumer_get(struct evlog *lg, const char *consumer, const char *topic,
                              uint64_t *next_offset_out)
{
    struct local *L = (struct local *)lg;
    int rc = ERR_NOTFOUND;
    if (!evlog_name_valid(consumer) || !evlog_name_valid(topic)) {
        evlog__errf("invalid consumer or topic name");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < L->n_cons; i++) {
        if (strcmp(L->cons[i].consumer, consumer) == 0 && strcmp(L->cons[i].topic, topic) == 0) {
            *next_offset_out = L->cons[i].next;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&L->mu);
    if (rc < 0)
        evlog__errf("consumer %s has no position on topic %s", consumer, topic);
    return rc;
}

static int local_consumer_remove(struct evlog *lg, const char *consumer)
{
    struct local *L = (struct local *)lg;
    if (!evlog_name_valid(consumer)) {
        evlog__errf("invalid consumer name");
        return ERR_INVALID;
    }
    return cons_change(L, consumer, NULL, 0);
}

/* ---- open, recovery, close ---- */

static int mkdir_p(const char *dir)
{
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            rc = -errno;
            goto out;
        }
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        rc = -errno;
out:
    free(p);
    return rc;
}

/* Opens the segments of one topic; recovers the tail of the last one. */
static int topic_load(struct local *L, const char *name)
{
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc;
    struct topic *t = topic_new(L, name);
    rc = evlog__seg_list(t->dir, &bases, &n);
    if (rc < 0) {
        evlog__errf("cannot list %s: %s", t->dir, err_str(rc));
        goto fail;
    }
    if (n == 0) { /* created but its first segment never made it: as if it never existed */
        topic_free(t);
        free(bases);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct seg *s = seg_new(t->dir, bases[i], -1);
        struct stat st;
        topic_push_seg(t, s);
        s->fd = open(s->path, O_RDWR | O_CLOEXEC);
        if (s->fd < 0 || fstat(s->fd, &st) < 0) {
            rc = -errno;
            evlog__errf("cannot open segment %s: %s", s->path, strerror(errno));
            goto fail;
        }
        s->bytes = (uint64_t)st.st_size;
        s->last_write_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
        bool last = i + 1 == n;
        if (!last && !L->cfg.verify_all) {
            if (s->bytes == 0) {
                evlog__errf("segment %s is empty but segment %020" PRIu64
                            " follows: records %" PRIu64 "..%" PRIu64 " are missing",
                            s->path, bases[i + 1], bases[i], bases[i + 1] - 1);
                rc = ERR_CORRUPT;
                goto fail;
            }
            continue;
        }
        struct evlog__scan sc;
        rc = evlog__scan_segment(s->fd, s->base, EVLOG_HARD_MAX_RECORD, &sc, last ? &s->idx : NULL);
        if (rc < 0) {
            evlog__errf("cannot read segment %s: %s", s->path, err_str(rc));
            goto fail;
        }
        if (sc.damaged && (!last || sc.intact_after)) {
            if (sc.intact_after)
                evlog__errf("segment %s: %s at byte %" PRIu64 " (offset %" PRIu64
                            "), but intact records follow at byte %" PRIu64 " (offset %" PRIu64
                            "); run `tandem log check` and `tandem log repair`",
                            s->path, evlog__frame_rc_str(sc.why), sc.good_bytes,
                            s->base + sc.n_records, sc.intact_at, sc.intact_offset);
            else
                evlog__errf("segment %s: %s at byte %" PRIu64 " (offset %" PRIu64
                            ") in a segment that is not the last; run `tandem log check` and "
                            "`tandem log repair`",
                            s->path, evlog__frame_rc_str(sc.why), sc.good_bytes,
                            s->base + sc.n_records);
            rc = ERR_CORRUPT;
            goto fail;
        }
        if (!last && s->base + sc.n_records != bases[i + 1]) {
            evlog__errf("segment %s ends at offset %" PRIu64
                        " but the next segment starts at %" PRIu64,
                        s->path, s->base + sc.n_records, bases[i + 1]);
            rc = ERR_CORRUPT;
            goto fail;
        }
        if (!last)
            continue;
        if (sc.damaged) {
            /* torn tail: cut back to the last intact record */
            if (ftruncate(s->fd, (off_t)sc.good_bytes) < 0 || fdatasync(s->fd) < 0) {
                rc = -errno;
                evlog__errf("cannot cut the torn tail of segment %s: %s", s->path, strerror(errno));
                goto fail;
            }
            xlog_warn("cut the torn tail of segment %s at byte %" PRIu64 " (offset %" PRIu64
                      "): %" PRIu64 " bytes dropped (%s)",
                      s->path, sc.good_bytes, s->base + sc.n_records, sc.file_bytes - sc.good_bytes,
                      evlog__frame_rc_str(sc.why));
            s->bytes = sc.good_bytes;
        }
        if (s->idx.n == 0)
            evlog__idx_add(&s->idx, s->base, 0);
        s->idx_ready = true;
        t->next = t->durable = s->base + sc.n_records;
    }
    metrics_set(t->m_end, (double)t->durable);
    topic_insert(L, t);
    free(bases);
    return 0;
fail:
    topic_free(t);
    free(bases);
    return rc;
}

static void local_free(struct local *L)
{
    for (size_t i = 0; i < L->n_topics; i++)
        topic_free(L->topics[i]);
    free(L->topics);
    free(L->cons);
    free(L->f_segs);
    free(L->f_topics);
    if (L->lock_fd >= 0)
        close(L->lock_fd);
    pthread_mutex_destroy(&L->mu);
    pthread_mutex_destroy(&L->create_mu);
    pthread_mutex_destroy(&L->consumers_mu);
    pthread_mutex_destroy(&L->erase_mu);
    pthread_cond_destroy(&L->work);
    pthread_cond_destroy(&L->durable_cv);
    free(L->dir);
    free(L);
}

extern const struct evlog_ops evlog_local_ops;

int evlog__lock_dir(const char *dir, bool exclusive, int *fd_out)
{
    size_t n = strlen(dir) + sizeof(EVLOG_LOCK_FILE) + 2;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, EVLOG_LOCK_FILE);
    /* check only reads: it creates nothing, and a log that never ran has no LOCK yet */
    int rc = 0, fd = exclusive ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
                               : open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && !exclusive && errno == ENOENT && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = 0;
    } else if (fd < 0) {
        rc = -errno;
        evlog__errf("cannot open %s: %s", path, strerror(errno));
    } else if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? ERR_BUSY : -errno;
        evlog__errf("event log directory %s is in use by another process", dir);
        close(fd);
        fd = -1;
    }
    free(path);
    *fd_out = fd;
    return rc;
}

static int local_open(const struct evlog_cfg *cfg, struct evlog **out)
{
    struct local *L = NULL;
    char **names = NULL;
    size_t n_names = 0;
    int rc = 0;
    pthread_condattr_t ca;

    pthread_once(&metrics_once, metrics_setup);
    if (!cfg->dir || !*cfg->dir) {
        evlog__errf("no event log directory given");
        return ERR_INVALID;
    }
    if (cfg->fsync > EVLOG_FSYNC_NEVER || cfg->segment_bytes < MIN_SEGMENT_BYTES ||
        cfg->sync_interval_us < 0 || cfg->sync_interval_us > 50000 || cfg->max_record_bytes == 0 ||
        cfg->max_record_bytes > EVLOG_HARD_MAX_RECORD || cfg->retention_age_us < 0 ||
        cfg->retention_check_us <= 0) {
        evlog__errf("invalid event log configuration");
        return ERR_INVALID;
    }
    L = xcalloc(1, sizeof(*L));
    L->base.ops = &evlog_local_ops;
    L->cfg = *cfg;
    L->dir = xstrdup(cfg->dir);
    L->cfg.dir = L->dir;
    L->cfg.backend = evlog_local_ops.name;
    L->lock_fd = -1;
    pthread_mutex_init(&L->mu, NULL);
    pthread_mutex_init(&L->create_mu, NULL);
    pthread_mutex_init(&L->consumers_mu, NULL);
    pthread_mutex_init(&L->erase_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&L->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&L->durable_cv, NULL);

    /* a file size limit must give EFBIG (handled as a full disk), not kill the process */
    signal(SIGXFSZ, SIG_IGN);

    rc = mkdir_p(L->dir);
    if (rc < 0) {
        evlog__errf("cannot create event log directory %s: %s", L->dir, err_str(rc));
        goto fail;
    }
    rc = evlog__lock_dir(L->dir, true, &L->lock_fd);
    if (rc < 0)
        goto fail;
    rc = cons_load(L);
    if (rc < 0)
        goto fail;
    rc = evlog__topic_list(L->dir, &names, &n_names);
    if (rc < 0) {
        evlog__errf("cannot list %s: %s", L->dir, err_str(rc));
        goto fail;
    }
    for (size_t i = 0; i < n_names; i++) {
        rc = topic_load(L, names[i]);
        if (rc < 0)
            goto fail;
    }
    L->last_retain_us = time_mono_us();
    rc = pthread_create(&L->flusher, NULL, flusher_main, L);
    if (rc != 0) {
        evlog__errf("cannot start the event log flusher: %s", strerror(rc));
        rc = -rc;
        goto fail;
    }
    L->flusher_started = true;
    *out = &L->base;
    goto out;
fail:
    local_free(L);
out:
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return rc;
}

static void local_close(struct evlog *lg)
{
    struct local *L = (struct local *)lg;
    if (L->flusher_started) {
        pthread_mutex_lock(&L->mu);
        L->stop = true;
        pthread_cond_signal(&L->work);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->flusher, NULL);
    }
    call_due(take_due(L)); /* only when the log failed can any be left */
    local_free(L);
}

/* ---- snapshots (backups) ---- */

/* Byte position of offset `at` in segment s (at is in s, or its end). Outside mu; s is held. */
static int seg_pos_of(struct local *L, struct seg *s, uint64_t at, uint64_t *pos_out)
{
    pthread_mutex_lock(&L->mu);
    bool ready = s->idx_ready;
    pthread_mutex_unlock(&L->mu);
    int rc = ready ? 0 : seg_build_index(L, s);
    if (rc < 0)
        return rc;
    uint64_t cur, pos;
    pthread_mutex_lock(&L->mu);
    evlog__idx_find(&s->idx, at, &cur, &pos);
    pthread_mutex_unlock(&L->mu);
    while (cur < at) {
        uint8_t hdr[EVLOG_FRAME_HDR];
        ssize_t r = pread(s->fd, hdr, sizeof(hdr), (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof(hdr) || le_get64(hdr + 8) != cur) {
            evlog__errf("segment %s: no record %" PRIu64 " at byte %" PRIu64, s->path, cur, pos);
            return ERR_CORRUPT;
        }
        pos += EVLOG_FRAME_HDR + le_get32(hdr);
        cur++;
    }
    *pos_out = pos;
    return 0;
}

/* The first len bytes of s into the new file path, synced. */
static int seg_copy(struct seg *s, uint64_t len, const char *path)
{
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        evlog__errf("cannot create %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = 0;
    char *buf = xmalloc(1 << 16);
    for (uint64_t at = 0; at < len && rc == 0;) {
        size_t want = len - at < (1 << 16) ? (size_t)(len - at) : (size_t)1 << 16;
        ssize_t r = pread(s->fd, buf, want, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : ERR_CORRUPT;
            evlog__errf("cannot read segment %s: %s", s->path, r < 0 ? strerror(errno) : "short");
            break;
        }
        rc = evlog__pwrite_all(out, buf, (size_t)r, at);
        if (rc < 0)
            evlog__errf("cannot write %s: %s", path, err_str(rc));
        at += (uint64_t)r;
    }
    free(buf);
    if (rc == 0 && fsync(out) != 0) {
        rc = -errno;
        evlog__errf("cannot sync %s: %s", path, strerror(errno));
    }
    close(out);
    return rc;
}

/* One topic: its segments from the first to the one holding the cut, that one cut there. */
static int snapshot_topic(struct local *L, struct topic *t, const char *dest, uint64_t cut)
{
    size_t n = strlen(dest) + 1 + strlen(t->name) + 1;
    char *dir = xmalloc(n);
    snprintf(dir, n, "%s/%s", dest, t->name);
    int rc = mkdir_p(dir);
    if (rc < 0) {
        evlog__errf("cannot create %s: %s", dir, err_str(rc));
        free(dir);
        return rc;
    }
    /* the segments are taken under mu; closed ones never change, retention may drop them
     * from the list meanwhile but the references keep their files readable */
    pthread_mutex_lock(&L->mu);
    if (cut > t->durable)
        cut = t->durable;
    if (cut < t->segs[0]->base)
        cut = t->segs[0]->base;
    size_t last = seg_index(t, cut), n_segs = last + 1;
    struct seg **segs = xcalloc(n_segs, sizeof(*segs));
    uint64_t *lens = xcalloc(n_segs, sizeof(*lens));
    for (size_t i = 0; i < n_segs; i++) {
        segs[i] = t->segs[i];
        segs[i]->refs++;
        lens[i] = segs[i]->bytes;
    }
    pthread_mutex_unlock(&L->mu);
    rc = seg_pos_of(L, segs[last], cut, &lens[last]);
    for (size_t i = 0; i < n_segs && rc == 0; i++) {
        char *path = seg_path(dir, segs[i]->base);
        rc = seg_copy(segs[i], lens[i], path);
        free(path);
    }
    if (rc == 0 && (rc = evlog__fsync_dir(dir)) < 0)
        evlog__errf("cannot sync %s: %s", dir, err_str(rc));
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < n_segs; i++)
        seg_unref(segs[i]);
    pthread_mutex_unlock(&L->mu);
    free(segs);
    free(lens);
    free(dir);
    return rc;
}

static int local_snapshot(struct evlog *lg, const char *dest_dir, const struct evlog_cut *cuts,
                          size_t n_cuts)
{
    struct local *L = (struct local *)lg;
    int rc = mkdir_p(dest_dir);
    if (rc < 0) {
        evlog__errf("cannot create %s: %s", dest_dir, err_str(rc));
        return rc;
    }
    /* topics are never freed while the log is open, so the pointers stay valid */
    pthread_mutex_lock(&L->mu);
    size_t n = L->n_topics;
    struct topic **topics = xcalloc(n ? n : 1, sizeof(*topics));
    uint64_t *ends = xcalloc(n ? n : 1, sizeof(*ends));
    for (size_t i = 0; i < n; i++) {
        topics[i] = L->topics[i];
        ends[i] = topics[i]->durable;
        for (size_t k = 0; k < n_cuts; k++)
            if (strcmp(cuts[k].topic, topics[i]->name) == 0 && cuts[k].offset < ends[i])
                ends[i] = cuts[k].offset;
    }
    pthread_mutex_unlock(&L->mu);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = snapshot_topic(L, topics[i], dest_dir, ends[i]);
    if (rc == 0 && (rc = evlog__fsync_dir(dest_dir)) < 0)
        evlog__errf("cannot sync %s: %s", dest_dir, err_str(rc));
    free(topics);
    free(ends);
    return rc;
}

/* ---- erasing records ---- */

#define ERASE_SUFFIX ".erase"
#define ERASE_BUF (1u << 20)

/* Where seg_filter writes the new segment: a buffer flushed to fd. */
struct erase_out {
    int fd; /* -1: count only */
    uint8_t *buf;
    size_t len;
    uint64_t pos; /* file position of buf[0] */
};

static int erase_out_put(struct erase_out *o, const void *p, size_t n)
{
    if (o->len + n > ERASE_BUF && o->len) {
        int rc = evlog__pwrite_all(o->fd, o->buf, o->len, o->pos);
        if (rc < 0)
            return rc;
        o->pos += o->len;
        o->len = 0;
    }
    if (n > ERASE_BUF) {
        int rc = evlog__pwrite_all(o->fd, p, n, o->pos);
        o->pos += n;
        return rc;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

/* Reads the first bytes of the closed segment s (outside mu; s is held) frame by frame and
 * counts in *n_out the records below end that match erases. With o->fd >= 0 it also writes
 * the new segment there: each such record as a tombstone, every other frame unchanged. */
static int seg_filter(struct seg *s, uint64_t bytes, uint64_t end, evlog_erase_cb match, void *arg,
                      struct erase_out *o, uint64_t *n_out)
{
    size_t cap = ERASE_BUF, have = 0;
    uint8_t *buf = xmalloc(cap);
    uint64_t fpos = 0, pos = 0, off = s->base, n = 0; /* buf holds [fpos, fpos + have) */
    int rc = 0;
    enum evlog__frame_rc fr = EVLOG_FRAME_OK;
    while (pos < bytes) {
        size_t in_buf = (size_t)(fpos + have - pos);
        const uint8_t *f = buf + (pos - fpos);
        struct evlog_rec_view v;
        fr = in_buf ? evlog__frame_get(f, in_buf, EVLOG_HARD_MAX_RECORD, off, &v)
                    : EVLOG_FRAME_SHORT;
        if (fr == EVLOG_FRAME_SHORT) {
            size_t need =
                in_buf >= EVLOG_FRAME_HDR ? EVLOG_FRAME_HDR + le_get32(f) : EVLOG_FRAME_HDR;
            if (bytes - pos < need)
                goto corrupt;
            memmove(buf, f, in_buf);
            fpos = pos;
            have = in_buf;
            if (need > cap) {
                cap = need;
                buf = xrealloc(buf, cap);
            }
            size_t want = cap - have;
            if (want > bytes - (fpos + have))
                want = (size_t)(bytes - (fpos + have));
            size_t got = 0;
            while (got < want) {
                ssize_t r = pread(s->fd, buf + have + got, want - got, (off_t)(fpos + have + got));
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0) {
                    rc = -errno;
                    evlog__errf("cannot read segment %s: %s", s->path, strerror(errno));
                    goto out;
                }
                if (r == 0)
                    break;
                got += (size_t)r;
            }
            have += got;
            if (have < need)
                goto corrupt;
            continue;
        }
        if (fr != EVLOG_FRAME_OK)
            goto corrupt;
        size_t flen = EVLOG_FRAME_HDR + v.len;
        bool erase = off < end && v.len > 0 && match(arg, &v);
        n += erase;
        if (o->fd >= 0) {
            uint8_t tomb[EVLOG_FRAME_HDR];
            if (erase)
                evlog__frame_put(tomb, off, v.timestamp_us, "", 0);
            rc = erase ? erase_out_put(o, tomb, sizeof(tomb)) : erase_out_put(o, f, flen);
            if (rc < 0) {
                evlog__errf("cannot write %s" ERASE_SUFFIX ": %s", s->path, err_str(rc));
                goto out;
            }
        }
        pos += flen;
        off++;
    }
    if (o->fd >= 0 && o->len) {
        rc = evlog__pwrite_all(o->fd, o->buf, o->len, o->pos);
        if (rc < 0)
            evlog__errf("cannot write %s" ERASE_SUFFIX ": %s", s->path, err_str(rc));
        o->pos += o->len;
        o->len = 0;
    }
    goto out;
corrupt:
    evlog__errf("segment %s: %s at byte %" PRIu64 " (offset %" PRIu64 ")", s->path,
                evlog__frame_rc_str(fr), pos, off);
    rc = ERR_CORRUPT;
out:
    free(buf);
    *n_out = n;
    return rc;
}

/* Rewrites the closed segment s of t (held, marked erasing) without the records match
 * erases: "<segment>.erase" is written and synced, renamed over the segment, the directory
 * synced, and the new file takes the old one's place in the list. Nothing when no record
 * matches. */
static int seg_erase(struct local *L, struct topic *t, struct seg *s, uint64_t end,
                     evlog_erase_cb match, void *arg, uint64_t *n_out)
{
    struct erase_out o = {.fd = -1};
    uint64_t n = 0;
    pthread_mutex_lock(&L->mu);
    uint64_t bytes = s->bytes;
    int64_t last_write = s->last_write_us;
    pthread_mutex_unlock(&L->mu);
    *n_out = 0;
    int rc = seg_filter(s, bytes, end, match, arg, &o, &n);
    if (rc < 0 || n == 0)
        return rc;

    size_t plen = strlen(s->path) + sizeof(ERASE_SUFFIX);
    char *tmp = xmalloc(plen);
    snprintf(tmp, plen, "%s" ERASE_SUFFIX, s->path);
    o.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (o.fd < 0) {
        rc = -errno;
        evlog__errf("cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    o.buf = xmalloc(ERASE_BUF);
    rc = seg_filter(s, bytes, end, match, arg, &o, &n);
    free(o.buf);
    if (rc < 0)
        goto fail;
    /* the segment keeps its age for retention by age, also across a restart */
    struct timespec times[2] = {
        {.tv_nsec = UTIME_NOW},
        {.tv_sec = last_write / 1000000, .tv_nsec = (last_write % 1000000) * 1000}};
    if (futimens(o.fd, times) < 0)
        xlog_warn("cannot keep the modification time of %s: %s", tmp, strerror(errno));
    if (fsync(o.fd) < 0) {
        rc = -errno;
        evlog__errf("cannot sync %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, s->path) < 0) {
        rc = -errno;
        evlog__errf("cannot rename %s over %s: %s", tmp, s->path, strerror(errno));
        goto fail;
    }
    rc = evlog__fsync_dir(t->dir);
    if (rc < 0) {
        /* the rename may not be durable: the old file can come back after a power loss, and
         * the caller's retry rewrites it again */
        evlog__errf("cannot sync directory %s: %s", t->dir, err_str(rc));
    }
    struct seg *ns = seg_new(t->dir, s->base, o.fd);
    o.fd = -1;
    ns->bytes = o.pos;
    ns->last_write_us = last_write;
    bool placed = false;
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < t->n_segs; i++) {
        if (t->segs[i] == s) {
            t->segs[i] = ns; /* takes the list's reference of ns, drops s's */
            seg_unref(s);
            placed = true;
            break;
        }
    }
    if (!placed) /* cannot happen: retention keeps a segment marked erasing */
        seg_unref(ns);
    pthread_mutex_unlock(&L->mu);
    free(tmp);
    *n_out = n;
    return rc;
fail:
    if (o.fd >= 0)
        close(o.fd);
    unlink(tmp);
    free(tmp);
    return rc;
}

static int local_erase(struct evlog *lg, const char *topic, uint64_t end, evlog_erase_cb match,
                       void *arg, uint64_t *n_erased_out)
{
    struct local *L = (struct local *)lg;
    struct seg **segs = NULL;
    size_t n = 0;
    int rc = 0;
    *n_erased_out = 0;
    if (!evlog_name_valid(topic)) {
        evlog__errf("invalid topic name \"%s\"", topic ? topic : "");
        return ERR_INVALID;
    }
    pthread_mutex_lock(&L->erase_mu);
    pthread_mutex_lock(&L->mu);
    struct topic *t = topic_find(L, topic);
    if (!t)
        goto unlock;
    if (end > t->durable)
        end = t->durable;
    /* only closed segments are rewritten: roll the active one when it holds records below end
     * (appends go on into its successor) */
    for (;;) {
        while (t->rolling && !L->failed)
            pthread_cond_wait(&L->durable_cv, &L->mu);
        if (L->failed) {
            evlog__errf("the event log stopped accepting writes: %s", L->fail_msg);
            rc = L->failed;
            goto unlock;
        }
        struct seg *act = t->segs[t->n_segs - 1];
        if (act->base >= end || act->bytes == 0)
            break;
        rc = topic_roll(L, t);
        if (rc < 0)
            goto unlock;
    }
    segs = xcalloc(t->n_segs, sizeof(*segs));
    for (size_t i = 0; i + 1 < t->n_segs && t->segs[i]->base < end; i++) {
        segs[n++] = t->segs[i];
        t->segs[i]->refs++;
        t->segs[i]->erasing = true;
    }
    pthread_mutex_unlock(&L->mu);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t k = 0;
        rc = seg_erase(L, t, segs[i], end, match, arg, &k);
        *n_erased_out += k;
    }
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < n; i++) {
        segs[i]->erasing = false;
        seg_unref(segs[i]);
    }
unlock:
    pthread_mutex_unlock(&L->mu);
    pthread_mutex_unlock(&L->erase_mu);
    free(segs);
    if (rc < 0)
        xlog_warn("event log erase: %s", evlog__errmsg());
    return rc;
}

static const char *local_errmsg(struct evlog *lg)
{
    UNUSED(lg);
    return evlog__errmsg();
}

const struct evlog_ops evlog_local_ops = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .append = local_append,
    .when_durable = local_when_durable,
    .wait_durable = local_wait_durable,
    .read = local_read,
    .end_offset = local_end_offset,
    .start_offset = local_start_offset,
    .consumer_commit = local_consumer_commit,
    .consumer_get = local_consumer_get,
    .consumer_remove = local_consumer_remove,
    .retain = local_retain,
    .snapshot = local_snapshot,
    .erase = local_erase,
    .errmsg = local_errmsg,
};
