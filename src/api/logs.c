/* logs.c - the request logs (docs/operations.md "Request logs"): every answered request
 * becomes a PocketBase log entry in the event log's `requests` topic, which the pipeline
 * loads into the warehouse table `requests`; GET /api/logs, /api/logs/stats and
 * /api/logs/{id} (superusers) read it there; the cron job __pbLogsCleanup__ deletes entries
 * older than settings.logs.maxDays.
 *
 * Request logs are best-effort, unlike events: the HTTP thread only copies what the entry needs
 * into a bounded queue (a full queue drops the entry and counts it in
 * tandem_request_logs_dropped_total); one writer thread turns the queued entries into JSON and
 * appends them in batches, without waiting for the sync. Nothing on the request path waits
 * for the log.
 *
 * Threads: the done hook runs on the server threads; the writer thread owns the batch; the
 * settings are atomics any thread reads; the queue is under a leaf lock. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "api/records_int.h"
#include "evlog/evlog.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

#define LOGS_TOPIC "requests"
#define LOGS_CLEANUP_JOB "__pbLogsCleanup__"
#define LOGS_QUEUE_MAX 8192  /* entries waiting for the writer */
#define LOGS_BATCH_MAX 1024  /* entries appended at once */
#define LOGS_FLUSH_US 500000 /* the longest an entry waits for its batch */
#define LOGS_URL_MAX 3000    /* PocketBase's cuts (cutStr) */
#define LOGS_HEADER_MAX 2000
#define LOGS_ERROR_MAX 2000
#define LOGS_DETAILS_MAX 4000
#define LEVEL_INFO 0
#define LEVEL_ERROR 8

/* One request as the hook copied it; strings point into the same allocation. */
struct entry {
    struct entry *next;
    int64_t created_us;
    int64_t exec_us;
    int status;
    const char *method, *url, *referer, *user_agent, *user_ip, *remote_ip;
    const char *auth_collection; /* NULL: a guest */
    const char *auth_id;         /* NULL unless logAuthId */
    bool superuser;
    const char *error, *details; /* NULL when the answer was no error envelope */
};

struct api_logs {
    struct api_env *env;
    atomic_int max_days, min_level;
    atomic_bool log_ip, log_auth_id;
    pthread_mutex_t lock; /* leaf: the queue and stop */
    pthread_cond_t cond;
    struct entry *head, *tail;
    size_t n;
    bool stop;
    pthread_t thread;
    bool started;
    struct metrics_series *m_written, *m_dropped;
};

/* ---- the hook (server threads) ---- */

/* Copies s (at most max bytes, "..." appended when cut, as PocketBase does) into *p. */
static const char *put(char **p, const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    bool cut = n > max;
    if (cut)
        n = max;
    char *d = *p;
    memcpy(d, s, n);
    if (cut)
        memcpy(d + n, "...", 3);
    d[n + (cut ? 3 : 0)] = '\0';
    *p += n + (cut ? 3 : 0) + 1;
    return d;
}

static size_t cap(const char *s, size_t max)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    return (n > max ? max + 3 : n) + 1;
}

static bool is_logs_route(struct str path)
{
    return path.len >= 9 && memcmp(path.ptr, "/api/logs", 9) == 0 &&
           (path.len == 9 || path.ptr[9] == '/');
}

static void on_done(struct http_req *req, int status, int64_t us, void *ctx)
{
    struct api_env *env = ctx;
    struct api_logs *lg = env->logs;
    if (!lg || atomic_load_explicit(&lg->max_days, memory_order_relaxed) <= 0)
        return; /* maxDays 0: nothing is logged (PocketBase) */
    int level = status >= 400 ? LEVEL_ERROR : LEVEL_INFO;
    if (level < atomic_load_explicit(&lg->min_level, memory_order_relaxed))
        return;
    struct str path = http_req_path(req);
    /* PocketBase logs only the failures of its logs routes (SkipSuccessActivityLog) */
    if (level == LEVEL_INFO && is_logs_route(path))
        return;
    /* the URL as the client sent it: path and raw query */
    const char *q = http_req_query_raw(req);
    char *url =
        arena_printf(http_req_arena(req), "%.*s%s%s", (int)path.len, path.ptr, *q ? "?" : "", q);
    const char *method = http_req_method(req);
    const struct api_identity *who = http_req_data(req) || http_req_header(req, "Authorization")
                                         ? api__identity(req, env)
                                         : NULL;
    bool authed = who && who->record_id;
    bool log_ip = atomic_load_explicit(&lg->log_ip, memory_order_relaxed);
    bool log_id = authed && atomic_load_explicit(&lg->log_auth_id, memory_order_relaxed);
    const char *referer = http_req_header(req, "Referer");
    const char *agent = http_req_header(req, "User-Agent");
    const char *user_ip = log_ip ? api__client_ip(req, env) : NULL;
    const char *remote_ip = log_ip ? http_req_client_ip(req) : NULL;
    const char *error = http_req_error(req);
    const char *details = http_req_error_data(req);
    size_t size = sizeof(struct entry) + cap(method ? method : "", 50) + cap(url, LOGS_URL_MAX) +
                  cap(referer ? referer : "", LOGS_HEADER_MAX) +
                  cap(agent ? agent : "", LOGS_HEADER_MAX) + cap(user_ip, 64) + cap(remote_ip, 64) +
                  cap(authed ? who->collection_id : NULL, 64) +
                  cap(log_id ? who->record_id : NULL, 64) + cap(error, LOGS_ERROR_MAX) +
                  cap(details, LOGS_DETAILS_MAX);
    struct entry *e = malloc(size);
    if (!e) {
        metrics_inc(lg->m_dropped, 1);
        return;
    }
    char *p = (char *)(e + 1);
    *e = (struct entry){.created_us = time_now_us(), .exec_us = us, .status = status};
    e->method = put(&p, method ? method : "", 50);
    e->url = put(&p, url, LOGS_URL_MAX);
    e->referer = put(&p, referer ? referer : "", LOGS_HEADER_MAX);
    e->user_agent = put(&p, agent ? agent : "", LOGS_HEADER_MAX);
    e->user_ip = put(&p, user_ip, 64);
    e->remote_ip = put(&p, remote_ip, 64);
    e->auth_collection = authed ? put(&p, who->collection_id, 64) : NULL;
    e->superuser = authed && who->superuser;
    e->auth_id = log_id ? put(&p, who->record_id, 64) : NULL;
    /* details only when they can be whole (a cut one would not be JSON) */
    e->error = put(&p, error, LOGS_ERROR_MAX);
    e->details =
        details && strlen(details) <= LOGS_DETAILS_MAX ? put(&p, details, LOGS_DETAILS_MAX) : NULL;
    pthread_mutex_lock(&lg->lock);
    bool take = !lg->stop && lg->n < LOGS_QUEUE_MAX;
    if (take) {
        if (lg->tail)
            lg->tail->next = e;
        else
            lg->head = e;
        lg->tail = e;
        if (++lg->n == LOGS_BATCH_MAX)
            pthread_cond_signal(&lg->cond);
    }
    pthread_mutex_unlock(&lg->lock);
    if (!take) {
        free(e);
        metrics_inc(lg->m_dropped, 1);
    }
}

/* ---- the writer thread ---- */

/* The collection name of an auth collection id, "" when it is gone. */
static const char *auth_name(struct api_env *env, const struct entry *e, char *buf, size_t len)
{
    if (e->superuser)
        return "_superusers";
    struct store_collection *c = NULL;
    buf[0] = '\0';
    if (env->store && store_collection_get(env->store, e->auth_collection, &c) == 0) {
        snprintf(buf, len, "%s", c->name);
        store_collection_unref(c);
    }
    return buf;
}

/* The percent-decoded form of a URL, for the message (PocketBase: url.PathUnescape), or the
 * URL itself when an escape is malformed. */
static char *unescape(const char *url)
{
    size_t n = strlen(url);
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (url[i] != '%') {
            *o++ = url[i];
            continue;
        }
        int hi = i + 2 < n ? str_hex_digit(url[i + 1]) : -1;
        int lo = i + 2 < n ? str_hex_digit(url[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            memcpy(out, url, n + 1);
            return out;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* Drops the bytes of s that are not well-formed UTF-8 (a client's header or URL may hold any
 * byte; a cut may split a character): JSON strings must be UTF-8. s is the entry's own. */
static void scrub(const char *s)
{
    if (s)
        str_utf8_scrub((char *)s);
}

static char *entry_json(struct api_env *env, const struct entry *e)
{
    char created[TIME_PB_LEN], id[ID_LEN + 1], name[256];
    const char *texts[] = {e->method,  e->url,       e->referer,         e->user_agent,
                           e->user_ip, e->remote_ip, e->auth_collection, e->auth_id,
                           e->error,   e->details};
    for (size_t i = 0; i < ARRAY_LEN(texts); i++)
        scrub(texts[i]);
    time_format_pb(e->created_us, created);
    id_random(id);
    json_t *data =
        json_pack("{s:s,s:f,s:s,s:s,s:i,s:s,s:s,s:s}", "type", "request", "execTime",
                  (double)e->exec_us / 1000.0, "url", e->url, "method", e->method, "status",
                  e->status, "referer", e->referer, "userAgent", e->user_agent, "auth",
                  e->auth_collection ? auth_name(env, e, name, sizeof(name)) : "");
    if (e->auth_id)
        json_object_set_new(data, "authId", json_string(e->auth_id));
    if (e->user_ip) {
        json_object_set_new(data, "userIP", json_string(e->user_ip));
        json_object_set_new(data, "remoteIP", json_string(e->remote_ip ? e->remote_ip : ""));
    }
    if (e->error) {
        json_object_set_new(data, "error", json_string(e->error));
        json_t *d = e->details ? json_loads(e->details, 0, NULL) : NULL;
        json_object_set_new(data, "details", d ? d : json_object());
    }
    char *msg_url = unescape(e->url);
    str_utf8_scrub(msg_url);
    struct buf mb;
    buf_init(&mb);
    buf_printf(&mb, "%s %s", e->method, msg_url);
    free(msg_url);
    char *message = buf_detach(&mb, NULL);
    json_t *doc =
        json_pack("{s:s,s:s,s:i,s:s,s:o}", "id", id, "created", created, "level",
                  e->status >= 400 ? LEVEL_ERROR : LEVEL_INFO, "message", message, "data", data);
    free(message);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(doc);
    return text;
}

/* Appends the entries of list (and frees them). */
static void write_batch(struct api_logs *lg, struct entry *list, size_t n)
{
    struct evlog_rec *recs = xcalloc(n ? n : 1, sizeof(*recs));
    char **texts = xcalloc(n ? n : 1, sizeof(char *));
    size_t k = 0;
    while (list) {
        struct entry *e = list;
        list = e->next;
        texts[k] = entry_json(lg->env, e);
        if (texts[k]) {
            recs[k].data = texts[k];
            recs[k].len = strlen(texts[k]);
            k++;
        } else {
            metrics_inc(lg->m_dropped, 1);
        }
        free(e);
    }
    uint64_t first = 0, ticket = 0;
    /* appended, not waited for: best-effort, see the header comment */
    if (k > 0 && evlog_append(lg->env->log, LOGS_TOPIC, recs, k, &first, &ticket) != 0) {
        xlog_warn("cannot log %zu request log entries: %s", k, evlog_errmsg(lg->env->log));
        metrics_inc(lg->m_dropped, k);
    } else {
        metrics_inc(lg->m_written, k);
    }
    for (size_t i = 0; i < k; i++)
        free(texts[i]);
    free(texts);
    free(recs);
}

static void *writer_main(void *arg)
{
    struct api_logs *lg = arg;
    pthread_mutex_lock(&lg->lock);
    for (;;) {
        if (lg->n < LOGS_BATCH_MAX && !lg->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += LOGS_FLUSH_US * 1000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&lg->cond, &lg->lock, &ts);
        }
        /* up to one batch */
        struct entry *list = lg->head, *last = NULL;
        size_t n = 0;
        for (struct entry *e = lg->head; e && n < LOGS_BATCH_MAX; e = e->next, n++)
            last = e;
        if (last) {
            lg->head = last->next;
            if (!lg->head)
                lg->tail = NULL;
            last->next = NULL;
            lg->n -= n;
        }
        bool stop = lg->stop && !lg->head;
        pthread_mutex_unlock(&lg->lock);
        if (n > 0)
            write_batch(lg, list, n);
        pthread_mutex_lock(&lg->lock);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&lg->lock);
    return NULL;
}

/* ---- retention (cron thread) ---- */

static void cleanup(void *arg)
{
    struct api_env *env = arg;
    struct api_logs *lg = env->logs;
    if (!lg || !env->wh)
        return;
    int days = atomic_load(&lg->max_days);
    char before[TIME_PB_LEN];
    /* maxDays 0 keeps nothing: every entry goes */
    time_format_pb(time_now_us() - (int64_t)(days > 0 ? days : 0) * 86400 * 1000000 + 1, before);
    struct wh_conn *conn = NULL;
    if (wh_conn_open(env->wh, &conn) != 0) {
        xlog_warn("logs cleanup: cannot connect to the warehouse: %s", wh_errmsg(NULL));
        return;
    }
    uint64_t n = 0;
    if (wh_logs_delete(conn, before, &n) != 0)
        xlog_warn("logs cleanup: %s", wh_errmsg(conn));
    else if (n > 0)
        xlog_info("logs cleanup: deleted %llu request log entries created before %s",
                  (unsigned long long)n, before);
    wh_conn_close(conn);
}

/* ---- life cycle and settings ---- */

int api_logs_start(struct api_env *env)
{
    if (!env->log)
        return 0;
    struct api_logs *lg = xcalloc(1, sizeof(*lg));
    lg->env = env;
    atomic_init(&lg->max_days, 5); /* PocketBase's defaults until the settings are read */
    atomic_init(&lg->min_level, 0);
    atomic_init(&lg->log_ip, true);
    atomic_init(&lg->log_auth_id, false);
    pthread_mutex_init(&lg->lock, NULL);
    pthread_cond_init(&lg->cond, NULL);
    lg->m_written = metrics_series0(
        metrics_family(METRICS_COUNTER, "tandem_request_logs_total",
                       "Request log entries appended to the requests topic.", NULL));
    lg->m_dropped = metrics_series0(metrics_family(
        METRICS_COUNTER, "tandem_request_logs_dropped_total",
        "Request log entries dropped (queue full or the log refused them): best-effort.", NULL));
    if (pthread_create(&lg->thread, NULL, writer_main, lg) != 0) {
        pthread_cond_destroy(&lg->cond);
        pthread_mutex_destroy(&lg->lock);
        free(lg);
        return ERR_INTERNAL;
    }
    lg->started = true;
    env->logs = lg;
    if (env->cron && env->wh &&
        ops_cron_add(env->cron, LOGS_CLEANUP_JOB, "0 */6 * * *", cleanup, env) != 0)
        xlog_warn("cannot register the request logs cleanup job");
    return 0;
}

void api_logs_stop(struct api_env *env)
{
    struct api_logs *lg = env->logs;
    if (!lg)
        return;
    pthread_mutex_lock(&lg->lock);
    lg->stop = true;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->lock);
    if (lg->started)
        pthread_join(lg->thread, NULL); /* writes what is queued first */
    env->logs = NULL;
    pthread_cond_destroy(&lg->cond);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}

void api__logs_configure(struct api_env *env, int64_t max_days, int64_t min_level, bool log_ip,
                         bool log_auth_id)
{
    struct api_logs *lg = env->logs;
    if (!lg)
        return;
    atomic_store(&lg->max_days, max_days > INT32_MAX ? INT32_MAX : (int)max_days);
    atomic_store(&lg->min_level, min_level > INT32_MAX   ? INT32_MAX
                                 : min_level < INT32_MIN ? INT32_MIN
                                                         : (int)min_level);
    atomic_store(&lg->log_ip, log_ip);
    atomic_store(&lg->log_auth_id, log_auth_id);
}

/* ---- the routes ---- */

struct logs_job {
    struct wh_logs_query q;
    char *id, *filter, *sort;
    bool stats;
};

static void free_job(void *arg)
{
    struct logs_job *j = arg;
    free(j->id);
    free(j->filter);
    free(j->sort);
    free(j);
}

static void run_job(struct wh_conn *conn, struct api_wh_reply *rep, void *arg)
{
    struct logs_job *j = arg;
    if (!conn) {
        api__wh_reply_error(rep, 503, NULL, NULL);
        return;
    }
    json_t *out = NULL;
    int rc = j->stats ? wh_logs_stats(conn, &j->q, &out) : wh_logs_list(conn, &j->q, &out);
    if (rc == 0) {
        api__wh_reply_json(rep, 200, out);
    } else if (rc == ERR_NOTFOUND) {
        api__wh_reply_error(rep, 404, "The requested resource wasn't found.", NULL);
    } else if (rc == ERR_INVALID || rc == ERR_LIMIT) {
        char msg[1200];
        snprintf(msg, sizeof(msg), "%s%s",
                 j->stats ? "Invalid filter format. "
                          : "Something went wrong while processing "
                            "your request. ",
                 wh_errmsg(conn));
        api__wh_reply_error(rep, 400, msg, NULL);
    } else if (rc == ERR_BUSY) {
        api__wh_reply_error(rep, 503, "The logs query took too long or the warehouse is busy.",
                            NULL);
    } else {
        xlog_error("logs query failed: %s", wh_errmsg(conn));
        api__wh_reply_error(rep, 500, NULL, NULL);
    }
}

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

static void submit(struct http_req *req, struct api_env *env, struct logs_job *j)
{
    j->q.filter = j->filter;
    j->q.sort = j->sort;
    j->q.id = j->id;
    j->q.now_us = time_now_us();
    int64_t timeout_ms =
        env->cfg && env->cfg->sql_timeout > 0 ? env->cfg->sql_timeout * 1000 : 30000;
    j->q.timeout_ms = timeout_ms;
    api__wh_submit(env, req, run_job, j, free_job, timeout_ms + 1000);
}

static bool ready(struct http_req *req, struct api_env *env)
{
    if (!api__require_superuser(req, env, true))
        return false;
    if (!env->wh || !env->sql) {
        http_reply_error(req, 503, "The warehouse is not running.", NULL);
        return false;
    }
    return true;
}

static void list_logs(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!ready(req, env))
        return;
    int64_t page = 1, per_page = 30;
    bool skip_total = false;
    const char *s;
    if ((s = http_req_query(req, "page")) && *s && api__parse_int(s, &page) != 0) {
        http_reply_error(req, 400, "Invalid page parameter.", NULL);
        return;
    }
    if ((s = http_req_query(req, "perPage")) && *s && api__parse_int(s, &per_page) != 0) {
        http_reply_error(req, 400, "Invalid perPage parameter.", NULL);
        return;
    }
    if ((s = http_req_query(req, "skipTotal")) && *s && api__parse_bool(s, &skip_total) != 0) {
        http_reply_error(req, 400, "Invalid skipTotal parameter.", NULL);
        return;
    }
    struct logs_job *j = xcalloc(1, sizeof(*j));
    /* PocketBase's search provider: perPage 1..1000 (default 30), page >= 1 */
    j->q.page = page < 1 ? 1 : page > INT32_MAX ? INT32_MAX : page;
    j->q.per_page = per_page < 1 ? 30 : per_page > 1000 ? 1000 : per_page;
    j->q.skip_total = skip_total;
    j->filter = dup_or_null(http_req_query(req, "filter"));
    j->sort = dup_or_null(http_req_query(req, "sort"));
    submit(req, env, j);
}

static void logs_stats(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!ready(req, env))
        return;
    struct logs_job *j = xcalloc(1, sizeof(*j));
    j->stats = true;
    j->filter = dup_or_null(http_req_query(req, "filter"));
    submit(req, env, j);
}

static void view_log(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!ready(req, env))
        return;
    const char *id = http_req_param(req, "id");
    if (!id || !*id || strlen(id) > 100) {
        http_reply_error(req, 404, "The requested resource wasn't found.", NULL);
        return;
    }
    struct logs_job *j = xcalloc(1, sizeof(*j));
    j->id = xstrdup(id);
    submit(req, env, j);
}

void api__register_logs(struct http_router *r, struct api_env *env)
{
    http_router_on_done(r, on_done, env);
    http_route(r, "GET", "/api/logs", list_logs, env);
    http_route(r, "GET", "/api/logs/stats", logs_stats, env);
    http_route(r, "GET", "/api/logs/{id}", view_log, env);
}
