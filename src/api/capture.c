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
 * first copy, and waits for it (or gets 503 if that sync fails). */
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "api/api_int.h"
#include "capture/capture.h"
#include "evlog/evlog.h"
#include "metrics/metrics.h"

#define EVENTS_TOPIC "events"

struct capture_route {
    struct api_env *env;
    enum capture_api api;
};

static struct metrics_family *m_requests, *m_events;

static pthread_mutex_t dedup_mu = PTHREAD_MUTEX_INITIALIZER; /* held across filter + append */
static uint64_t last_ticket; /* [dedup_mu] ticket of the latest append to EVENTS_TOPIC; 0 none */

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
    in.client_ip = http_req_client_ip(req);
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

    struct capture_result r;
    int rc = capture_parse(&in, &r);
    if (rc != 0) {
        capture_result_release(&r);
        count(label, "unavailable", 0);
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    if (r.status != 0) {
        count(label, r.status == 401 ? "unauthorized" : "invalid", 0);
        http_reply_error(req, r.status, r.message, NULL);
        capture_result_release(&r);
        return;
    }

    /* under dedup_mu: which events are new, their append, and the ticket to wait for. On
     * Kafka every node appends and the primary's mirror drops retries (docs/scale-out.md):
     * a node-local filter could not see the other nodes, and would answer a retry of events
     * whose delivery failed as a duplicate. */
    bool local_dedup = strcmp(evlog_backend_name(env->log), "kafka") != 0;
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
        if (rc != 0 && local_dedup)
            capture_dedup_unfilter(env->dedup, &r);
        else
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

int api_capture_warm(struct api_env *env, int64_t window_us)
{
    int64_t now = time_now_us();
    uint64_t from = 0, end = 0;
    int rc = first_since(env->log, EVENTS_TOPIC, now - window_us, &from);
    if (rc == 0)
        rc = evlog_end_offset(env->log, EVENTS_TOPIC, &end);
    struct evlog_batch b;
    evlog_batch_init(&b);
    size_t n = 0, bad = 0;
    while (rc == 0 && from < end) {
        rc = evlog_read(env->log, EVENTS_TOPIC, from, 10000, 32 << 20, &b);
        if (rc != 0 || b.n == 0)
            break;
        for (size_t i = 0; i < b.n; i++) {
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
    if (rc == 0)
        xlog_info("capture dedup rebuilt from %zu logged events (%zu unreadable)", n, bad);
    return rc;
}
