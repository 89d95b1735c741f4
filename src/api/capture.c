/* capture.c - the Segment HTTP Tracking API and PostHog's capture API.
 *
 * A request is parsed and validated by capture/, its write keys are resolved to source
 * names, retried message ids are dropped, and the remaining events are appended to the log's
 * "events" topic. The connection is then suspended and answered 200 from the log's flusher
 * once the sync that covers the events has finished: nothing is acknowledged before it is
 * durable.
 *
 * Duplicates too: a retry whose first copy was appended by this process but is not yet
 * synced must not be answered before that sync. dedup_mu makes "filter, append, note the
 * ticket" one step, so a request that finds a duplicate also finds last_ticket covering the
 * first copy, and waits for it (or gets 503 if that sync fails).
 *
 * The dedup set survives restarts as a snapshot (<dir>/dedup.snapshot, see snapshot_take):
 * at start the snapshot is loaded and only the log after it is read again, so the server
 * listens at once however long the log is. A long tail (after a kill -9) is read by a thread
 * of its own while capture answers 503 with Retry-After, so dedup is never missing. */
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "core/datadir.h"
#include "capture/capture.h"
#include "evlog/evlog.h"
#include "governance/governance.h"
#include "metrics/metrics.h"

#define EVENTS_TOPIC "events"

struct capture_route {
    struct api_env *env;
    enum capture_api api;
};

static struct metrics_family *m_requests, *m_events;

static pthread_mutex_t dedup_mu = PTHREAD_MUTEX_INITIALIZER; /* held across filter + append */
static uint64_t last_ticket; /* [dedup_mu] ticket of the latest append to EVENTS_TOPIC; 0 none */
static uint64_t removals;    /* [dedup_mu] pairs taken back after a failed append */
static atomic_bool warm;     /* the set holds every pair of the window: capture may run */

static void set_warm(bool on)
{
    atomic_store(&warm, on);
    metrics_set(metrics_series0(metrics_family(METRICS_GAUGE, "tandem_capture_ready",
                                               "1 when capture takes events; 0 while its dedup "
                                               "set is still read from the log.",
                                               NULL)),
                on ? 1 : 0);
}

bool api_capture_ready(void)
{
    return atomic_load(&warm);
}

/* On Kafka the dedup set belongs to the primary's mirror (docs/scale-out.md): the HTTP path
 * does not filter, and no snapshot is taken (the mirror adds pairs before their batch is in
 * the log, so a snapshot could hold pairs of a batch that a crash then takes back). */
static bool on_kafka(const struct api_env *env)
{
    return env->log && strcmp(evlog_backend_name(env->log), "kafka") == 0;
}

static void count(const char *api, const char *outcome, size_t events)
{
    const char *v[2] = {api, outcome};
    metrics_inc(metrics_series(m_requests, v), 1);
    if (events) {
        const char *e[1] = {outcome};
        metrics_inc(metrics_series(m_events, e), events);
    }
}

static const char *api_label(enum capture_api api)
{
    return api == CAPTURE_API_POSTHOG ? "posthog" : "segment";
}

/* The user part of "Authorization: Basic base64(user:password)", or NULL. */
static const char *basic_user(struct http_req *req)
{
    const char *h = http_req_header(req, "Authorization");
    if (!h || strncasecmp(h, "Basic ", 6) != 0)
        return NULL;
    const char *b64 = h + 6;
    size_t len = strlen(b64);
    if (len == 0 || len > 1024)
        return NULL;
    unsigned char *out = arena_alloc(http_req_arena(req), len + 1);
    size_t n = 0;
    if (sodium_base642bin(out, len, b64, len, " ", &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        return NULL;
    out[n] = '\0';
    char *colon = memchr(out, ':', n);
    if (colon)
        *colon = '\0';
    return out[0] ? (const char *)out : NULL;
}

struct pending {
    struct http_req *req;
    enum capture_api api;
    size_t n_events;
};

static void reply_success(struct http_req *req, enum capture_api api)
{
    static const char segment_ok[] = "{\"success\":true}";
    static const char posthog_ok[] = "{\"status\":1}";
    if (api == CAPTURE_API_POSTHOG)
        http_reply_static(req, 200, "application/json", posthog_ok, sizeof(posthog_ok) - 1);
    else
        http_reply_static(req, 200, "application/json", segment_ok, sizeof(segment_ok) - 1);
}

/* From the log's flusher (or inline when already durable). */
static void on_durable(void *arg, int rc)
{
    struct pending *p = arg;
    if (rc == 0) {
        if (p->n_events) /* a request of duplicates only was counted as such */
            count(api_label(p->api), "accepted", p->n_events);
        reply_success(p->req, p->api);
    } else {
        /* the sync failed: the log refuses writes until restart, and after a restart dedup is
         * rebuilt from what the log holds, so the client's retry will be taken then */
        count(api_label(p->api), "unavailable", 0);
        http_set_header(p->req, "Retry-After", "5");
        http_reply_error(p->req, 503, "The event log cannot make events durable right now.", NULL);
    }
    http_req_resume(p->req);
}

static void handle(struct http_req *req, void *ctx)
{
    const struct capture_route *route = ctx;
    struct api_env *env = route->env;
    const char *label = api_label(route->api);
    struct str body = http_req_body(req);
    struct capture_input in = {0};
    in.api = route->api;
    in.body = body.ptr;
    in.body_len = body.len;
    in.content_encoding = http_req_header(req, "Content-Encoding");
    in.auth_key = basic_user(req);
    if (!in.auth_key)
        in.auth_key = http_req_header(req, "X-Write-Key");
    if (!in.auth_key)
        in.auth_key = http_req_query(req, "writeKey");
    in.client_ip = api__client_ip(req, env); /* behind a trusted proxy: the client's */
    in.received_us = time_now_us();
    const char *sent = http_req_query(req, "_"); /* posthog-js: client time in ms */
    if (sent && route->api == CAPTURE_API_POSTHOG)
        in.sent_at_us = strtoll(sent, NULL, 10) * 1000;
    const struct api_identity *who = api__identity(req, env);
    if (who->record_id && !who->superuser)
        in.verified_user_id = who->record_id;
    in.limits = &env->capture_limits;
    in.resolve_key = env->resolve_key;
    in.resolve_arg = env->resolve_arg;

    struct capture_pii *pii = api__settings_pii(env);
    in.pii = pii;
    struct capture_result r;
    int rc = capture_parse(&in, &r);
    capture_pii_unref(pii); /* the records are written: the rules are no longer needed */
    if (rc != 0) {
        capture_result_release(&r);
        count(label, "unavailable", 0);
        if (rc == ERR_BUSY) { /* a capture node that has not read the key topic yet */
            http_set_header(req, "Retry-After", "1");
            http_reply_error(req, 503, "Write keys are not loaded yet: retry shortly.", NULL);
        } else {
            http_reply_error(req, 503, NULL, NULL);
        }
        return;
    }
    if (r.status != 0) {
        count(label, r.status == 401 ? "unauthorized" : "invalid", 0);
        http_reply_error(req, r.status, r.message, NULL);
        capture_result_release(&r);
        return;
    }

    if (!atomic_load(&warm)) {
        capture_result_release(&r);
        count(label, "unavailable", 0);
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Capture is starting: retry shortly.", NULL);
        return;
    }

    /* events of suppressed distinct ids (a person deletion asked for it) are dropped here and
     * acknowledged like the others (Segment answers 200 for suppressed data) */
    if (gov_suppress_any(env->gov)) {
        size_t k = 0;
        for (size_t i = 0; i < r.n_events; i++) {
            const struct capture_event *e = &r.events[i];
            if ((e->user_id && gov_suppressed(env->gov, e->user_id, strlen(e->user_id))) ||
                (e->anonymous_id &&
                 gov_suppressed(env->gov, e->anonymous_id, strlen(e->anonymous_id))))
                continue;
            r.events[k++] = *e;
        }
        if (k < r.n_events) {
            const char *o[1] = {"suppressed"};
            metrics_inc(metrics_series(m_events, o), r.n_events - k);
        }
        r.n_events = k;
    }

    /* under dedup_mu: which events are new, their append, and the ticket to wait for. On
     * Kafka every node appends and the primary's mirror drops retries (docs/scale-out.md):
     * a node-local filter could not see the other nodes, and would answer a retry of events
     * whose delivery failed as a duplicate. */
    bool local_dedup = !on_kafka(env);
    pthread_mutex_lock(&dedup_mu);
    size_t dups = local_dedup ? capture_dedup_filter(env->dedup, &r, in.received_us) : 0;
    size_t n = r.n_events - dups;
    uint64_t first, ticket = last_ticket; /* a duplicate waits for the newest append */
    rc = 0;
    if (n > 0) {
        struct evlog_rec *recs = arena_alloc(http_req_arena(req), n * sizeof(*recs));
        struct evlog_key *keys = arena_alloc(http_req_arena(req), n * sizeof(*keys));
        size_t k = 0;
        for (size_t i = 0; i < r.n_events; i++) {
            if (r.events[i].duplicate)
                continue;
            const struct capture_event *e = &r.events[i];
            recs[k].data = e->record;
            recs[k].len = e->record_len;
            /* the person: their events keep their order on a partitioned log */
            keys[k].data = e->user_id ? e->user_id : e->anonymous_id;
            keys[k].len = keys[k].data ? strlen(keys[k].data) : 0;
            k++;
        }
        rc = evlog_append_keyed(env->log, EVENTS_TOPIC, recs, keys, n, &first, &ticket);
        if (rc != 0 && local_dedup) {
            capture_dedup_unfilter(env->dedup, &r);
            removals++;
        } else
            last_ticket = ticket;
    }
    pthread_mutex_unlock(&dedup_mu);
    if (dups)
        count(label, "duplicate", dups);
    if (rc != 0) {
        capture_result_release(&r);
        count(label, "unavailable", 0);
        if (rc == ERR_LIMIT) {
            http_reply_error(req, 413, NULL, NULL);
            return;
        }
        http_set_header(req, "Retry-After", "5");
        http_reply_error(req, 503, "The event log cannot take events right now.", NULL);
        return;
    }
    capture_result_release(&r);
    struct pending *p = arena_alloc(http_req_arena(req), sizeof(*p));
    p->req = req;
    p->api = route->api;
    p->n_events = n;
    http_req_suspend(req);
    evlog_when_durable(env->log, ticket, on_durable, p);
}

static const struct {
    const char *path;
    enum capture_api api;
} capture_paths[] = {
    {"/v1/track", CAPTURE_API_TRACK},       {"/v1/t", CAPTURE_API_TRACK},
    {"/v1/identify", CAPTURE_API_IDENTIFY}, {"/v1/i", CAPTURE_API_IDENTIFY},
    {"/v1/page", CAPTURE_API_PAGE},         {"/v1/p", CAPTURE_API_PAGE},
    {"/v1/screen", CAPTURE_API_SCREEN},     {"/v1/s", CAPTURE_API_SCREEN},
    {"/v1/group", CAPTURE_API_GROUP},       {"/v1/g", CAPTURE_API_GROUP},
    {"/v1/alias", CAPTURE_API_ALIAS},       {"/v1/a", CAPTURE_API_ALIAS},
    {"/v1/batch", CAPTURE_API_BATCH},       {"/v1/b", CAPTURE_API_BATCH},
    {"/v1/import", CAPTURE_API_BATCH},      {"/batch", CAPTURE_API_POSTHOG},
    {"/batch/", CAPTURE_API_POSTHOG},       {"/e", CAPTURE_API_POSTHOG},
    {"/e/", CAPTURE_API_POSTHOG},           {"/i/v0/e", CAPTURE_API_POSTHOG},
    {"/i/v0/e/", CAPTURE_API_POSTHOG},      {"/capture", CAPTURE_API_POSTHOG},
    {"/capture/", CAPTURE_API_POSTHOG},
};

static struct capture_route routes[ARRAY_LEN(capture_paths)];

void api__register_capture(struct http_router *r, struct api_env *env)
{
    m_requests = metrics_family(METRICS_COUNTER, "tandem_capture_requests_total",
                                "Capture requests by API and outcome.", "api,outcome");
    m_events = metrics_family(METRICS_COUNTER, "tandem_capture_events_total",
                              "Captured events by outcome.", "outcome");
    pthread_mutex_lock(&dedup_mu);
    last_ticket = 0; /* tickets belong to env->log */
    pthread_mutex_unlock(&dedup_mu);
    for (size_t i = 0; i < ARRAY_LEN(capture_paths); i++) {
        routes[i].env = env;
        routes[i].api = capture_paths[i].api;
        http_route(r, "POST", capture_paths[i].path, handle, &routes[i]);
    }
}

/* The first offset of topic whose append time is at or after cutoff_us (binary search: the
 * log appends in time order). */
static int first_since(struct evlog *log, const char *topic, int64_t cutoff_us, uint64_t *out)
{
    uint64_t lo, hi;
    int rc = evlog_start_offset(log, topic, &lo);
    if (rc == 0)
        rc = evlog_end_offset(log, topic, &hi);
    if (rc != 0)
        return rc;
    struct evlog_batch b;
    evlog_batch_init(&b);
    while (lo < hi && rc == 0) {
        uint64_t mid = lo + (hi - lo) / 2;
        rc = evlog_read(log, topic, mid, 1, 1, &b);
        if (rc == 0 && b.n == 1 && b.recs[0].timestamp_us < cutoff_us)
            lo = mid + 1;
        else
            hi = mid;
    }
    evlog_batch_release(&b);
    *out = lo;
    return rc;
}

/* ---- the dedup set across restarts ---- */

#define SNAPSHOT_FILE "dedup.snapshot"
#define SNAPSHOT_MAX ((size_t)4 << 30)
#define SNAPSHOT_TAG_LEN 24
#define INLINE_TAIL_MAX 200000 /* a tail this long is read before listening, a longer one after */

/* Where in the events topic a snapshot stands (next: the first offset it does not hold), and
 * the record just before that point, so a snapshot is only taken for the log it was made from
 * (not after a restore, a repair that cut the log short, or a deletion that rewrote it). */
struct snap_tag {
    uint64_t next;
    int64_t anchor_ts;
    uint32_t anchor_len, anchor_crc;
};

static struct {
    pthread_mutex_t mu; /* one snapshot at a time; guards the fields below */
    pthread_cond_t cv;
    bool stop, running;
    pthread_t thread;
    int64_t interval_us;
    uint64_t saved_next; /* the events' end offset at the last snapshot written */
    bool warmer_running;
    pthread_t warmer;
    atomic_bool warmer_stop;
} snap = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int tag_of(struct evlog *log, uint64_t next, struct snap_tag *t)
{
    *t = (struct snap_tag){.next = next};
    if (next == 0)
        return 0;
    struct evlog_batch b;
    evlog_batch_init(&b);
    int rc = evlog_read(log, EVENTS_TOPIC, next - 1, 1, 1, &b);
    if (rc == 0 && (b.n != 1 || b.recs[0].offset != next - 1))
        rc = ERR_NOTFOUND; /* removed by retention */
    if (rc == 0) {
        t->anchor_ts = b.recs[0].timestamp_us;
        t->anchor_len = (uint32_t)b.recs[0].len;
        t->anchor_crc = crc32c(0, b.recs[0].data, b.recs[0].len);
    }
    evlog_batch_release(&b);
    return rc;
}

static void tag_encode(const struct snap_tag *t, uint8_t out[SNAPSHOT_TAG_LEN])
{
    le_put64(out, t->next);
    le_put64(out + 8, (uint64_t)t->anchor_ts);
    le_put32(out + 16, t->anchor_len);
    le_put32(out + 20, t->anchor_crc);
}

static bool tag_decode(const void *p, size_t len, struct snap_tag *t)
{
    const uint8_t *x = p;
    if (len != SNAPSHOT_TAG_LEN)
        return false;
    *t = (struct snap_tag){le_get64(x), (int64_t)le_get64(x + 8), le_get32(x + 16),
                           le_get32(x + 20)};
    return true;
}

static int events_end(struct evlog *log, uint64_t *out)
{
    int rc = evlog_end_offset(log, EVENTS_TOPIC, out);
    if (rc == ERR_NOTFOUND) {
        *out = 0;
        rc = 0;
    }
    return rc;
}

/* Writes the set and where it stands. A pair in the set is in the log at an offset below the
 * tag's or is appended after it (every append happens under dedup_mu with its insert, and the
 * tail from the tag's offset is read again at start), except a pair taken back after a failed
 * append: if one was taken back while the shards were copied, the snapshot is dropped. It is
 * written only once the log is durable through every append the copy can hold, so after a
 * power loss it never remembers an event the log lost (whose retry must be taken). Caller
 * holds snap.mu. */
static int snapshot_take(struct api_env *env)
{
    uint64_t next, rm;
    pthread_mutex_lock(&dedup_mu);
    rm = removals;
    int rc = events_end(env->log, &next);
    pthread_mutex_unlock(&dedup_mu);
    struct snap_tag tag;
    if (rc == 0)
        rc = tag_of(env->log, next, &tag);
    if (rc != 0)
        return rc;
    uint8_t t[SNAPSHOT_TAG_LEN];
    tag_encode(&tag, t);
    struct buf b;
    buf_init(&b);
    capture_dedup_encode(env->dedup, t, sizeof(t), &b);
    pthread_mutex_lock(&dedup_mu);
    bool clean = rm == removals;
    uint64_t ticket = last_ticket;
    pthread_mutex_unlock(&dedup_mu);
    rc = clean ? 0 : ERR_BUSY;
    if (rc == 0 && ticket)
        rc = evlog_wait_durable(env->log, ticket);
    if (rc == 0)
        rc = datadir_write_file(env->cfg->dir, SNAPSHOT_FILE, b.ptr, b.len);
    if (rc == 0)
        snap.saved_next = next;
    else
        xlog_warn("capture dedup snapshot not written: %s", err_str(rc));
    buf_release(&b);
    return rc;
}

/* Adds the events of [from, end) to the set. */
static int replay(struct api_env *env, uint64_t from, uint64_t end, int64_t now, size_t *n_out)
{
    struct evlog_batch b;
    evlog_batch_init(&b);
    size_t n = 0, bad = 0;
    int rc = 0;
    while (rc == 0 && from < end && !atomic_load(&snap.warmer_stop)) {
        rc = evlog_read(env->log, EVENTS_TOPIC, from, 10000, 32 << 20, &b);
        if (rc != 0 || b.n == 0)
            break;
        for (size_t i = 0; i < b.n; i++) {
            if (b.recs[i].len == 0)
                continue; /* erased (docs/evlog.md "Erasing records") */
            if (capture_dedup_add_record(env->dedup, (const char *)b.recs[i].data, b.recs[i].len,
                                         now) != 0)
                bad++;
            n++;
        }
        from = b.next_offset;
    }
    evlog_batch_release(&b);
    if (rc == ERR_NOTFOUND)
        rc = 0; /* no events yet */
    if (bad)
        xlog_warn("capture dedup: %zu logged events could not be read", bad);
    *n_out = n;
    return rc;
}

/* Loads the snapshot when it belongs to this log (true, with *from the offset the log must be
 * read again from); false when there is none or it cannot be used. */
static bool snapshot_load(struct api_env *env, uint64_t end, int64_t now, uint64_t *from)
{
    struct buf b;
    buf_init(&b);
    const void *tp;
    size_t tl;
    struct snap_tag tag, here;
    const char *why = NULL;
    int rc = datadir_read_file(env->cfg->dir, SNAPSHOT_FILE, SNAPSHOT_MAX, &b);
    if (rc == ERR_NOTFOUND) {
        buf_release(&b);
        return false;
    }
    if (rc != 0)
        why = err_str(rc);
    else if (capture_dedup_snapshot_tag(b.ptr, b.len, &tp, &tl) != 0 || !tag_decode(tp, tl, &tag))
        why = "it is damaged or from another version";
    else if (tag.next > end || tag_of(env->log, tag.next, &here) != 0 ||
             memcmp(&here, &tag, sizeof(tag)) != 0)
        why = "it was taken from another log";
    else if (capture_dedup_decode(env->dedup, b.ptr, b.len, now, &tp, &tl) != 0)
        why = "it was taken with another --dedup-window";
    buf_release(&b);
    if (why) {
        xlog_warn("capture dedup snapshot %s/%s not used (%s): rebuilding from the log",
                  env->cfg->dir, SNAPSHOT_FILE, why);
        return false;
    }
    snap.saved_next = tag.next;
    *from = tag.next; /* pairs it holds older than the window were dropped by the decode */
    return true;
}

#define FROM_WINDOW UINT64_MAX /* no snapshot: read the whole window */

/* Reads [from, end) into the set; from FROM_WINDOW starts at the window's first event (a
 * binary search over the log by append time). */
static int warm_read(struct api_env *env, uint64_t from, uint64_t end, int64_t now,
                     int64_t window_us, size_t *n)
{
    *n = 0;
    if (from == FROM_WINDOW) {
        int rc = first_since(env->log, EVENTS_TOPIC, now - window_us, &from);
        if (rc == ERR_NOTFOUND)
            return 0; /* no events yet */
        if (rc != 0)
            return rc;
    }
    return replay(env, from, end, now, n);
}

struct warm_job {
    struct api_env *env;
    uint64_t from, end;
    int64_t now, window_us;
};

static void *warmer_main(void *arg)
{
    struct warm_job *j = arg;
    size_t n = 0;
    int64_t t0 = time_mono_us();
    int rc = warm_read(j->env, j->from, j->end, j->now, j->window_us, &n);
    if (rc == 0 && !atomic_load(&snap.warmer_stop)) {
        set_warm(true);
        xlog_info("capture dedup: read %zu logged events in %.1f s; capture is open", n,
                  (double)(time_mono_us() - t0) / 1e6);
    } else if (rc != 0) {
        xlog_error("capture dedup: cannot read the event log (%s): capture stays closed",
                   err_str(rc));
    }
    free(j);
    return NULL;
}

int api_capture_warm(struct api_env *env, int64_t window_us)
{
    int64_t now = time_now_us(), t0 = time_mono_us();
    uint64_t from = FROM_WINDOW, start = 0, end = 0;
    set_warm(false);
    atomic_store(&snap.warmer_stop, false);
    snap.saved_next = UINT64_MAX;
    int rc = events_end(env->log, &end);
    if (rc == 0)
        rc = evlog_start_offset(env->log, EVENTS_TOPIC, &start);
    if (rc == ERR_NOTFOUND)
        rc = 0;
    if (rc != 0)
        return rc;
    bool from_snapshot = snapshot_load(env, end, now, &from);
    const char *how = from_snapshot ? "its snapshot" : "the log";
    /* what is left to read, at most (the window may start later than the log) */
    uint64_t tail = end - (from_snapshot ? from : start < end ? start : end);
    if (tail > INLINE_TAIL_MAX) {
        struct warm_job *j = xmalloc(sizeof(*j));
        *j = (struct warm_job){env, from, end, now, window_us};
        xlog_info("capture dedup: reading up to %" PRIu64 " logged events from %s in the "
                  "background (capture answers 503 until then)",
                  tail, how);
        if (pthread_create(&snap.warmer, NULL, warmer_main, j) != 0) {
            free(j);
            return ERR_INTERNAL;
        }
        snap.warmer_running = true;
        return 0;
    }
    size_t n = 0;
    rc = warm_read(env, from, end, now, window_us, &n);
    if (rc != 0)
        return rc;
    set_warm(true);
    xlog_info("capture dedup rebuilt from %s and %zu logged events in %.2f s", how, n,
              (double)(time_mono_us() - t0) / 1e6);
    return 0;
}

static void *snapshot_main(void *arg)
{
    struct api_env *env = arg;
    pthread_mutex_lock(&snap.mu);
    while (!snap.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = (int64_t)until.tv_nsec + (snap.interval_us % 1000000) * 1000;
        until.tv_sec += (time_t)(snap.interval_us / 1000000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&snap.cv, &snap.mu, &until);
        uint64_t end;
        if (!snap.stop && atomic_load(&warm) && events_end(env->log, &end) == 0 &&
            end != snap.saved_next)
            (void)snapshot_take(env);
    }
    pthread_mutex_unlock(&snap.mu);
    return NULL;
}

int api_capture_start(struct api_env *env, int64_t interval_us)
{
    snap.stop = false;
    snap.interval_us = interval_us;
    if (interval_us <= 0 || on_kafka(env))
        return 0;
    if (pthread_create(&snap.thread, NULL, snapshot_main, env) != 0)
        return ERR_INTERNAL;
    snap.running = true;
    return 0;
}

void api_capture_stop(struct api_env *env)
{
    pthread_mutex_lock(&snap.mu);
    snap.stop = true;
    pthread_cond_signal(&snap.cv);
    pthread_mutex_unlock(&snap.mu);
    if (snap.running)
        pthread_join(snap.thread, NULL);
    snap.running = false;
    atomic_store(&snap.warmer_stop, true);
    if (snap.warmer_running)
        pthread_join(snap.warmer, NULL);
    snap.warmer_running = false;
    /* no capture runs any more: the set is the log's, so the next start reads nothing */
    uint64_t end;
    pthread_mutex_lock(&snap.mu);
    if (env->log && env->dedup && !on_kafka(env) && atomic_load(&warm) &&
        events_end(env->log, &end) == 0 && end != snap.saved_next)
        (void)snapshot_take(env);
    pthread_mutex_unlock(&snap.mu);
    set_warm(false);
}
