/* http.h - the HTTP edge: server on libmicrohttpd, router, requests, JSON replies.
 *
 * http/ knows nothing of records or events. A handler receives a request, reads its
 * method, path parameters, query, headers and body, and answers with one of the http_reply_*
 * functions. Everything a request allocates comes from its arena and is freed when the
 * response has been sent.
 *
 * Threads: handlers run on the server's threads (one per core). A handler whose work may
 * take longer than about a millisecond calls http_req_suspend(), hands the request to another
 * thread, and that thread replies and then calls http_req_resume(). Between suspend and
 * resume only that other thread may touch the request. */
#ifndef TANDEM_HTTP_HTTP_H
#define TANDEM_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

struct http_req;
struct http_router;
struct http_route;
struct http_server;

typedef void (*http_handler_cb)(struct http_req *req, void *ctx);

/* ---- router ---- */

#define HTTP_MAX_PARAMS 8
#define HTTP_MAX_SEGMENTS 32

struct http_params {
    size_t n;
    struct {
        const char *name;
        struct str value; /* raw, still percent-encoded */
    } p[HTTP_MAX_PARAMS];
};

enum http_match {
    HTTP_MATCH_OK,
    HTTP_MATCH_NOT_FOUND,  /* no pattern fits the path */
    HTTP_MATCH_BAD_METHOD, /* a pattern fits, but not for this method */
};

struct http_router *http_router_new(void);
void http_router_free(struct http_router *r);
/* Registers METHOD PATTERN. Pattern segments are literals, {name} (one segment) or a final
 * {name...} (the rest of the path, possibly empty). The earliest registered match wins. */
void http_route(struct http_router *r, const char *method, const char *pattern, http_handler_cb fn,
                void *ctx);
/* The handler for requests no route fits, whatever their method (static files); without one
 * they get a JSON 404. A path some route fits with another method still gets 405. pattern
 * only labels these requests in metrics. One fallback per router. */
void http_router_fallback(struct http_router *r, const char *pattern, http_handler_cb fn,
                          void *ctx);
/* Finds the route for method + path. On HTTP_MATCH_BAD_METHOD, *route_out is a route whose
 * pattern fits (for metrics) and allow_out (if given) lists the allowed methods. */
enum http_match http_router_match(const struct http_router *r, const char *method, struct str path,
                                  const struct http_route **route_out,
                                  struct http_params *params_out, struct buf *allow_out);
/* http_route with a tighter body limit for this route: a larger body is answered 413 before
 * it is read in full, as for the server's max_body (which still applies when smaller). */
void http_route_max_body(struct http_router *r, const char *method, const char *pattern,
                         http_handler_cb fn, void *ctx, uint64_t max_body);
const char *http_route_pattern(const struct http_route *route);
/* Calls fn(arg, method, pattern) for every route in registration order, then once for the
 * fallback, if any, with method "*". For listings and the test that checks docs/api.md. */
typedef void (*http_route_each_cb)(void *arg, const char *method, const char *pattern);
void http_router_each(const struct http_router *r, http_route_each_cb fn, void *arg);

/* A guard runs before routing for every request; it returns true to let the request go on,
 * or replies itself (e.g. 429) and returns false. One guard per router. */
typedef bool (*http_guard_cb)(struct http_req *req, void *ctx);
void http_router_guard(struct http_router *r, http_guard_cb fn, void *ctx);
/* A hook called once for every request that was answered, on a server thread, when its
 * response is done: status is the one sent, us the time from the request's first byte to
 * the end of the response. The request's headers, data and arena are still there; no reply
 * may be made. It must be quick (copy what it needs and hand it to another thread): the
 * connection waits for it. One hook per router. */
typedef void (*http_done_cb)(struct http_req *req, int status, int64_t us, void *ctx);
void http_router_on_done(struct http_router *r, http_done_cb fn, void *ctx);
/* A reply hook runs on the server thread just before each reply to a request that reached a
 * route (not the fallback, a preflight or a guard's answer) is handed to the client: the
 * request is still whole (method, route, params, headers, body, identity data) and its status
 * is known (http_req_status). It must be short (no waiting). One hook per router; the audit
 * trail uses it (api/audit.c). */
typedef void (*http_reply_hook_cb)(struct http_req *req, void *ctx);
void http_router_on_reply(struct http_router *r, http_reply_hook_cb fn, void *ctx);

/* CORS origins: "*" (any, the default) or a comma-separated list of exact origins
 * ("https://app.example.com"). ERR_INVALID for an empty list. Preflights (every OPTIONS) are
 * answered 204 by the router itself, before the guard and any handler. */
int http_router_cors(struct http_router *r, const char *origins) MUST_USE;

/* ---- query strings and URL decoding (exposed for tests) ---- */

struct http_kv {
    const char *key;
    const char *value;
};

#define HTTP_MAX_QUERY_PARAMS 256
/* Splits a raw query string (without '?') into decoded pairs in the arena; '+' is a space.
 * -ERR_LIMIT when there are more than HTTP_MAX_QUERY_PARAMS pairs. */
int http_query_parse(struct arena *a, const char *qs, size_t len, struct http_kv **kv_out,
                     size_t *n_out) MUST_USE;
/* Percent-decodes into the arena. Malformed escapes are kept as they are. */
char *http_url_decode(struct arena *a, const char *s, size_t len, bool plus_is_space);

/* ---- requests ---- */

struct arena *http_req_arena(struct http_req *req);
const char *http_req_method(const struct http_req *req);
struct str http_req_path(const struct http_req *req);
const char *http_req_id(const struct http_req *req);
/* The decoded path parameter, or NULL. */
const char *http_req_param(struct http_req *req, const char *name);
/* The first decoded value of a query parameter, or NULL. */
const char *http_req_query(struct http_req *req, const char *name);
/* All query pairs in order. */
size_t http_req_query_all(struct http_req *req, const struct http_kv **kv_out);
/* One pointer of the API's own per request (e.g. the caller's identity), NULL at first. */
void *http_req_data(const struct http_req *req);
void http_req_set_data(struct http_req *req, void *data);
/* Header value (case-insensitive name), or NULL. */
const char *http_req_header(struct http_req *req, const char *name);
/* The raw query string (still percent-encoded, without '?'); "" when there is none. */
const char *http_req_query_raw(const struct http_req *req);
/* The "message" of the error envelope ({"status","message","data"}) the request was answered
 * with, and its "data" as JSON text when not empty; NULL when it was not answered with one. */
const char *http_req_error(const struct http_req *req);
const char *http_req_error_data(const struct http_req *req);
/* The status of the reply made so far (0 before one). */
int http_req_status(const struct http_req *req);
/* The pattern of the route the request reached ("unmatched" when none). */
const char *http_req_route(const struct http_req *req);
/* The client's IP address as text. */
const char *http_req_client_ip(struct http_req *req);
struct str http_req_body(const struct http_req *req);
/* The body parsed as JSON. On malformed JSON (or an empty body unless allow_empty, which
 * then gives an empty object) it answers 400 itself and returns NULL.
 * RETURNS BORROWED: the value lives as long as the request. */
json_t *http_req_json(struct http_req *req, bool allow_empty);

/* ---- replies: exactly one per request ---- */

/* TAKES body. */
void http_reply_json(struct http_req *req, int status, json_t *body);
/* Copies len bytes. */
void http_reply_bytes(struct http_req *req, int status, const char *content_type, const void *body,
                      size_t len);
/* body must outlive the server (string literals, assets). */
void http_reply_static(struct http_req *req, int status, const char *content_type, const void *body,
                       size_t len);
/* TAKES body, which must come from malloc. */
void http_reply_owned(struct http_req *req, int status, const char *content_type, char *body,
                      size_t len);
void http_reply_empty(struct http_req *req, int status);
/* size bytes of the open file fd from its start, sent as the client reads (sendfile), never
 * loaded whole; no body for HEAD, 304 or 204. TAKES fd: it is closed when the response is
 * done (503 and closed at once when no response can be made). */
void http_reply_fd(struct http_req *req, int status, const char *content_type, int fd,
                   uint64_t size);
/* The same for size bytes from offset (a Range answer). TAKES fd. */
void http_reply_fd_at(struct http_req *req, int status, const char *content_type, int fd,
                      uint64_t offset, uint64_t size);
/* PocketBase's envelope {"data":{...},"message":"...","status":N}. TAKES data (NULL: {}).
 * message NULL: the default message for the status. */
void http_reply_error(struct http_req *req, int status, const char *message, json_t *data);
/* That envelope as a value, for a reply made elsewhere. TAKES data. RETURNS a new reference. */
json_t *http_error_envelope(int status, const char *message, json_t *data);
/* Adds a header to the reply; call before the reply. Both strings are copied. */
void http_set_header(struct http_req *req, const char *name, const char *value);
bool http_replied(const struct http_req *req);
const char *http_status_message(int status);

/* Hands the request to another thread; see the header comment. */
void http_req_suspend(struct http_req *req);
void http_req_resume(struct http_req *req);

/* ---- streamed replies (server-sent events) ----
 *
 * A stream is a 200 reply whose body is produced as it goes: the server pulls bytes with the
 * read callback whenever the connection can take more. When read has nothing (returns 0)
 * the connection is parked (suspended: no CPU, no timeout) until http_stream_wake. A stream
 * ends when read returns HTTP_STREAM_END, on http_stream_abort, when the client goes away,
 * or when the server closes. Streams are exempt from the request timeout once started.
 *
 * Threads: read runs on the connection's server thread; done runs once, on a server thread,
 * when the connection is finished (after it, read is never called again). wake, abort and
 * unref may be called from any thread, also after done. */
struct http_stream;

#define HTTP_STREAM_END (-1)
/* Writes at most max bytes into out; returns the count, 0 for "nothing now", or
 * HTTP_STREAM_END. */
typedef long (*http_stream_read_cb)(void *ctx, char *out, size_t max);
typedef void (*http_stream_done_cb)(void *ctx);

/* Replies 200 with a streamed body of content_type (headers set with http_set_header go
 * along). RETURNS a reference the caller releases with http_stream_unref; the stream itself
 * lives until both that reference and the connection are done. */
struct http_stream *http_reply_stream(struct http_req *req, const char *content_type,
                                      http_stream_read_cb read, http_stream_done_cb done,
                                      void *ctx);
/* Has the server call read again (soon, on its thread). */
void http_stream_wake(struct http_stream *s);
/* Closes the connection now, even when the client does not read (a slow consumer). */
void http_stream_abort(struct http_stream *s);
void http_stream_unref(struct http_stream *s);

/* ---- server ---- */

struct http_opts {
    const char *addr; /* "HOST:PORT"; port 0 picks a free one */
    unsigned threads; /* 0: one per core */
    uint64_t max_body;
    unsigned idle_timeout_s;    /* a connection silent this long is closed */
    unsigned request_timeout_s; /* one request's headers and body must arrive within this,
                                   from its first byte; 0: no limit */
    unsigned max_conns;         /* open connections; 0 or more than fit: as many as the
                                   open-file limit leaves room for */
    unsigned max_conns_per_ip;  /* open connections from one address; 0: no limit. Over it, a
                                   new connection is closed at once */
};

int http_server_open(const struct http_opts *opts, struct http_router *router,
                     struct http_server **out, char *err, size_t err_len) MUST_USE;
/* "HOST:PORT" actually bound. */
const char *http_server_url_host(const struct http_server *srv);
unsigned http_server_port(const struct http_server *srv);
/* Stops accepting, waits up to drain_ms for in-flight requests, then stops. */
void http_server_close(struct http_server *srv, int drain_ms);
/* The connection limit in force (see http_opts.max_conns). */
unsigned http_server_max_conns(const struct http_server *srv);
/* Requests begun and not yet completed. */
int http_server_in_flight(const struct http_server *srv);

#endif
