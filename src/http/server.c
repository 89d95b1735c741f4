/* server.c - libmicrohttpd glue: connections, request life cycle, access log, metrics. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http_int.h"

#define BODY_PREALLOC_MAX (1u << 20)
/* open files kept back from connections, at least: the stores, the event log and the
 * warehouse need theirs (see conn_limit) */
#define FD_RESERVE_MIN 256u

struct http_server {
    struct MHD_Daemon *mhd;
    struct http_router *router;
    struct http_conns *conns;
    unsigned max_conns;
    uint64_t max_body;
    int listen_fd;
    char host[128];
    unsigned port;
    atomic_int in_flight;
    struct metrics_family *m_requests;
    struct metrics_family *m_duration;
    struct metrics_series *m_in_flight;
    struct http_streams streams; /* stream.c */
};

struct http_streams *http__server_streams(struct http_server *srv)
{
    return &srv->streams;
}

/* Request ids: a per-thread xorshift generator seeded from the kernel. */
static _Thread_local uint64_t rid_state;

static void request_id(char out[17])
{
    static const char hex[] = "0123456789abcdef";
    if (rid_state == 0)
        rand_bytes(&rid_state, sizeof(rid_state));
    rid_state |= 1;
    uint64_t x = rid_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rid_state = x;
    for (int i = 15; i >= 0; i--, x >>= 4)
        out[i] = hex[x & 15];
    out[16] = '\0';
}

/* Called by MHD with the raw request line's URI before anything else; its return value
 * becomes the connection's per-request pointer. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_server *srv = cls;
    struct http_req *req = xcalloc(1, sizeof(*req));
    arena_init(&req->arena, 8192);
    req->srv = srv;
    req->conn = conn;
    req->hc = http__conn_of(conn);
    http__conn_mark(req->hc, HTTP_CONN_RECEIVING);
    req->start_us = time_mono_us();
    request_id(req->id);
    buf_init(&req->body);
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    req->path.ptr = arena_strndup(&req->arena, uri, plen);
    req->path.len = plen;
    if (q) {
        req->query_len = strlen(q + 1);
        req->query_raw = arena_strndup(&req->arena, q + 1, req->query_len);
    } else {
        req->query_raw = "";
    }
    atomic_fetch_add(&srv->in_flight, 1);
    metrics_add(srv->m_in_flight, 1);
    return req;
}

/* What the header walk found: the first framing problem, or what decides the body's length. */
struct framing {
    const char *error;
    const char *content_length; /* the first one */
    unsigned n_te;
    const char *te;
};

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct framing *f = cls;
    UNUSED(kind);
    /* a name that is not a token ("Content-Length :5") is a field another server may read
     * differently (RFC 9112 section 5.1) */
    const char *k = key;
    while (is_tchar((unsigned char)*k))
        k++;
    if (k == key || *k) {
        f->error = "Invalid request header name.";
        return MHD_NO;
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        const char *v = value ? value : "";
        size_t n = strspn(v, "0123456789");
        if (n == 0 || v[n]) {
            f->error = "Invalid Content-Length header.";
            return MHD_NO;
        }
        if (f->content_length && strcmp(f->content_length, v) != 0) {
            f->error = "Conflicting Content-Length headers.";
            return MHD_NO;
        }
        f->content_length = v;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_te++;
        f->te = value ? value : "";
    }
    return MHD_YES;
}

/* Why the request's body length is ambiguous, or NULL when it is not. Such a request must be
 * refused and its connection closed (RFC 9112 section 6.3): a proxy in front may have read
 * the length differently, and what it took for the next request would be smuggled in.
 * libmicrohttpd itself refuses a malformed first Content-Length, but takes a second one or a
 * Transfer-Encoding beside it without complaint. */
static const char *framing_error(struct MHD_Connection *conn, const char *version)
{
    struct framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_header, &f);
    if (f.error)
        return f.error;
    if (f.n_te == 0)
        return NULL;
    if (f.content_length)
        return "A request must not have both Content-Length and Transfer-Encoding.";
    if (strcmp(version, MHD_HTTP_VERSION_1_0) == 0)
        return "Transfer-Encoding is not allowed in an HTTP/1.0 request.";
    /* chunked is the only coding this server decodes, and it must be the only one */
    const char *te = f.te;
    size_t n = strlen(te);
    while (*te == ' ' || *te == '\t')
        te++, n--;
    while (n && (te[n - 1] == ' ' || te[n - 1] == '\t'))
        n--;
    if (f.n_te > 1 || n != 7 || strncasecmp(te, "chunked", 7) != 0)
        return "Unsupported Transfer-Encoding: only chunked is accepted.";
    return NULL;
}

/* ASCII methods the API answers; any other value a client sends is counted as OTHER, so the
 * metric labels stay a fixed set. */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; method && i < ARRAY_LEN(known); i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "OTHER";
}

static enum MHD_Result queue(struct http_req *req)
{
    if (!req->resp)
        http_reply_error(req, 500, NULL, NULL);
    http__router_replying(req->srv->router, req);
    return MHD_queue_response(req->conn, (unsigned)req->status, req->resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    UNUSED(url);
    if (!req)
        return MHD_NO; /* on_uri always runs first */

    if (req->calls++ == 0) {
        req->method = arena_strdup(&req->arena, method);
        const char *bad = framing_error(conn, version);
        if (bad) {
            /* answered before any body is read; the connection closes after it */
            http__conn_mark(req->hc, HTTP_CONN_PROCESSING);
            http_set_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
            http_reply_error(req, 400, bad, NULL);
            return queue(req);
        }
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        uint64_t route_max = http__route_max_body(srv->router, req->method, req->path);
        req->max_body = route_max && route_max < srv->max_body ? route_max : srv->max_body;
        if (declared > req->max_body) {
            /* answer now without reading the body; MHD then closes the connection */
            http__conn_mark(req->hc, HTTP_CONN_PROCESSING);
            req->too_large = true;
            http_reply_error(req, 413, NULL, NULL);
            return queue(req);
        }
        /* room for the declared body at once, so it is not regrown while it arrives; only up
         * to 1 MiB, so a client cannot reserve memory by declaring a size it never sends */
        if (declared > 0 && buf_try_reserve(&req->body, (size_t)(declared < BODY_PREALLOC_MAX
                                                                     ? declared
                                                                     : BODY_PREALLOC_MAX)) != 0)
            buf_release(&req->body);
        /* answering on the first call would cost keep-alive: wait for the next one */
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large) {
            /* A body without a declared length went over the limit. libmicrohttpd can only
             * answer once the upload is complete, so the rest is discarded and answered 413
             * at the end; a body that keeps going past twice the limit is cut off. */
            req->discarded += n;
            return req->discarded > req->max_body ? MHD_NO : MHD_YES;
        }
        if (req->body.len + n > req->max_body) {
            req->too_large = true;
            req->discarded = req->body.len + n - req->max_body;
            buf_release(&req->body);
            http_reply_error(req, 413, NULL, NULL);
            return MHD_YES;
        }
        if (buf_try_reserve(&req->body, n) != 0) {
            req->too_large = true;
            buf_release(&req->body);
            http_reply_error(req, 503, NULL, NULL);
            return MHD_NO;
        }
        buf_append(&req->body, upload_data, n);
        return MHD_YES;
    }

    /* the whole request is in: from here on no request deadline applies */
    http__conn_mark(req->hc, HTTP_CONN_PROCESSING);
    if (req->resp)
        return queue(req); /* resumed after a suspended handler replied, or 413 */
    if (req->suspended)
        return MHD_YES; /* spurious call while suspended */

    http__dispatch(req, srv->router);
    if (req->suspended)
        return MHD_YES;
    return queue(req);
}

static void access_log(struct http_server *srv, struct http_req *req, int64_t us)
{
    UNUSED(srv);
    if (!xlog_enabled(XLOG_INFO))
        return;
    struct buf f;
    buf_init(&f);
    buf_puts(&f, "\"method\":\"");
    buf_json_escape(&f, req->method ? req->method : "-", strlen(req->method ? req->method : "-"));
    buf_puts(&f, "\",\"path\":\"");
    buf_json_escape(&f, req->path.ptr, req->path.len);
    buf_printf(&f, "\",\"status\":%d,\"bytes\":%zu,\"us\":%lld,\"rid\":\"%s\"", req->status,
               req->resp_bytes, (long long)us, req->id);
    xlog_emit(XLOG_INFO, buf_cstr(&f), "request");
    buf_release(&f);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    UNUSED(conn);
    if (!req)
        return;
    *con_cls = NULL;
    int64_t us = time_mono_us() - req->start_us;
    if (!req->resp)
        req->status = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED || http__conn_timed_out(req->hc)
                          ? 408
                          : 499;
    http__conn_mark(req->hc, HTTP_CONN_IDLE);

    /* every label value comes from a fixed set: the methods above, the registered route
     * patterns ("unmatched" for the rest) and the status codes the server writes */
    char status[8];
    snprintf(status, sizeof(status), "%d", req->status);
    const char *pattern = http_route_pattern(req->route);
    const char *labels[3] = {method_label(req->method), pattern, status};
    metrics_inc(metrics_series(srv->m_requests, labels), 1);
    struct metrics_series *dur = NULL;
    struct http_route *rt = (struct http_route *)req->route;
    if (rt)
        dur = atomic_load_explicit(&rt->duration, memory_order_relaxed);
    if (!dur) {
        dur = metrics_series(srv->m_duration, &pattern);
        if (rt)
            atomic_store_explicit(&rt->duration, dur, memory_order_relaxed);
    }
    metrics_observe(dur, (double)us / 1e6);
    access_log(srv, req, us);
    if (req->resp)
        http__router_done(srv->router, req, req->status, us);

    if (req->resp)
        MHD_destroy_response(req->resp);
    buf_release(&req->body);
    arena_release(&req->arena);
    free(req);
    metrics_add(srv->m_in_flight, -1);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    UNUSED(cls);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    xlog_debug("libmicrohttpd: %s", msg);
}

static int open_listener(struct http_server *srv, const char *addr, char *err, size_t err_len)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(err, err_len, "invalid --http address '%s' (expected HOST:PORT)", addr);
        return ERR_INVALID;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535) {
        snprintf(err, err_len, "invalid port in --http '%s'", addr);
        return ERR_INVALID;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, colon + 1, &hints, &ai);
    if (gai != 0) {
        snprintf(err, err_len, "cannot resolve '%s': %s", host, gai_strerror(gai));
        return ERR_INVALID;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot listen on %s: %s", addr, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -e;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(srv->host, sizeof(srv->host), "[%s]", host);
    } else {
        srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(srv->host, sizeof(srv->host), "%s", host);
    }
    freeaddrinfo(ai);
    srv->listen_fd = fd;
    return 0;
}

/* How many connections fit under the soft open-file limit: all but a quarter of it, or at
 * least FD_RESERVE_MIN (half of a very small limit), which stay for the stores, the event
 * log, the warehouse and the listener. wanted 0 asks for all that fit; more than fit is cut
 * down to fit, since MHD would otherwise fail accept() for everyone at the limit. */
static unsigned conn_limit(unsigned wanted, unsigned threads)
{
    struct rlimit rl;
    uint64_t files = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        files = rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20 : (uint64_t)rl.rlim_cur;
    if (files > (uint64_t)1 << 20)
        files = (uint64_t)1 << 20;
    uint64_t reserve = files / 4;
    uint64_t floor_reserve = files / 2 < FD_RESERVE_MIN ? files / 2 : FD_RESERVE_MIN;
    if (reserve < floor_reserve)
        reserve = floor_reserve;
    unsigned fit = (unsigned)(files - reserve);
    unsigned n = wanted;
    if (n == 0 || n > fit) {
        if (n > fit)
            xlog_warn("--max-connections %u lowered to %u to fit the open-file limit of %llu", n,
                      fit, (unsigned long long)files);
        n = fit;
    }
    /* MHD shares the limit out among its threads; each needs at least one */
    return n < threads ? threads : n;
}

int http_server_open(const struct http_opts *opts, struct http_router *router,
                     struct http_server **out, char *err, size_t err_len)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->router = router;
    srv->max_body = opts->max_body;
    srv->listen_fd = -1;
    http__streams_init(&srv->streams);
    srv->m_requests = metrics_family(METRICS_COUNTER, "tandem_http_requests_total",
                                     "HTTP requests answered.", "method,route,status");
    srv->m_duration =
        metrics_histogram("tandem_http_request_duration_seconds",
                          "Time from request line to response sent.", "route", NULL, 0);
    srv->m_in_flight = metrics_series0(
        metrics_family(METRICS_GAUGE, "tandem_http_in_flight", "Requests being served.", NULL));

    int rc = http__conns_open(opts->request_timeout_s, &srv->conns);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the HTTP reaper thread: %s", strerror(-rc));
        http__streams_release(&srv->streams);
        free(srv);
        return rc;
    }
    rc = open_listener(srv, opts->addr, err, err_len);
    if (rc != 0) {
        http__conns_close(srv->conns);
        http__streams_release(&srv->streams);
        free(srv);
        return rc;
    }
    unsigned threads = opts->threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    srv->max_conns = conn_limit(opts->max_conns, threads);
    unsigned flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    srv->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, opts->idle_timeout_s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32 * 1024, MHD_OPTION_NOTIFY_CONNECTION, http__conns_notify, srv->conns,
        MHD_OPTION_CONNECTION_LIMIT, srv->max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        opts->max_conns_per_ip, MHD_OPTION_END);
    if (!srv->mhd) {
        snprintf(err, err_len, "cannot start the HTTP server on %s", opts->addr);
        close(srv->listen_fd);
        http__conns_close(srv->conns);
        http__streams_release(&srv->streams);
        free(srv);
        return ERR_INTERNAL;
    }
    *out = srv;
    return 0;
}

const char *http_server_url_host(const struct http_server *srv)
{
    return srv->host;
}

unsigned http_server_port(const struct http_server *srv)
{
    return srv->port;
}

unsigned http_server_max_conns(const struct http_server *srv)
{
    return srv->max_conns;
}

int http_server_in_flight(const struct http_server *srv)
{
    return atomic_load((atomic_int *)&srv->in_flight);
}

void http_server_close(struct http_server *srv, int drain_ms)
{
    if (!srv)
        return;
    MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    /* streams never finish by themselves, and MHD must not stop with a suspended one */
    http__streams_end_all(&srv->streams);
    int64_t deadline = time_mono_us() + (int64_t)drain_ms * 1000;
    while (http_server_in_flight(srv) > 0 && time_mono_us() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(srv->mhd);
    http__conns_close(srv->conns);
    http__streams_release(&srv->streams);
    free(srv);
}
