/* http_int.h - shared by the files of http/ only. */
#ifndef TANDEM_HTTP_HTTP_INT_H
#define TANDEM_HTTP_HTTP_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/http.h"
#include "metrics/metrics.h"

/* ---- connections (conns.c) ----
 *
 * Every open connection has a struct http_conn, kept from MHD's "started" to its "closed"
 * notification. A reaper thread closes a connection that has spent longer than the request
 * timeout receiving one request, counted from its first byte: MHD's own timeout measures only
 * silence, so a client sending a byte every few seconds would otherwise hold the connection
 * for ever. */

enum http_conn_state {
    HTTP_CONN_IDLE,      /* between requests: only the idle timeout applies */
    HTTP_CONN_RECEIVING, /* bytes of a request have arrived, the request is not complete */
    HTTP_CONN_PROCESSING /* the request is complete: handled, suspended, or answered */
};

struct http_conns;
struct http_conn;

/* Starts the reaper; timeout_s 0 means no request deadline (connections are still counted).
 * The MHD callbacks below then keep the connection list. */
int http__conns_open(unsigned timeout_s, struct http_conns **out) MUST_USE;
/* Stops the reaper. Call after MHD_stop_daemon, when no connection is left. */
void http__conns_close(struct http_conns *cs);
/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the struct http_conns. */
void http__conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/* The connection's record, or NULL. Server threads only. */
struct http_conn *http__conn_of(struct MHD_Connection *conn);
/* The owning server thread marks where the current request is: RECEIVING when its request line
 * has arrived (kept if the reaper saw its first bytes earlier), PROCESSING once the whole
 * request is in, IDLE when its response is done. NULL conn: nothing. */
void http__conn_mark(struct http_conn *c, enum http_conn_state st);
/* True once the reaper has closed the connection for taking too long to send its request. */
bool http__conn_timed_out(const struct http_conn *c);

struct http_header {
    struct http_header *next;
    const char *name;
    const char *value;
};

/* One request. Touched by the server thread that owns its connection, or, between suspend
 * and resume, by the thread the handler handed it to. */
struct http_req {
    struct arena arena;
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct http_conn *hc; /* NULL when MHD gave no socket context */
    const char *method;
    struct str path;
    const char *query_raw;
    size_t query_len;
    struct http_kv *query;
    size_t n_query;
    bool query_parsed;
    const struct http_route *route;
    struct http_params params;
    struct buf body;
    json_t *json;
    int64_t start_us;
    char id[17];
    unsigned calls;
    bool too_large;
    uint64_t max_body;  /* the server's, or the route's when tighter */
    uint64_t discarded; /* body bytes dropped after the limit was passed */
    bool suspended;
    bool hooked; /* the router's reply hook has run */
    /* the reply */
    int status;
    struct MHD_Response *resp;
    size_t resp_bytes;
    struct http_header *headers;
    void *data;             /* http_req_data */
    const char *error;      /* http_req_error (arena) */
    const char *error_data; /* http_req_error_data (arena) */
};

/* Calls r's done hook, if any (server.c, at the end of a request). */
void http__router_done(const struct http_router *r, struct http_req *req, int status, int64_t us);

struct http_route {
    struct http_route *next;
    char *method;
    char *pattern;
    size_t n_segs;
    char **segs; /* literal text, or a parameter name when is_param[i] */
    bool *is_param;
    bool rest; /* the last segment is {name...} */
    http_handler_cb fn;
    void *ctx;
    uint64_t max_body;                         /* 0: the server's */
    _Atomic(struct metrics_series *) duration; /* cached histogram series */
};

/* stream.c: the server's live streams, ended when it closes. */
struct http_streams {
    pthread_mutex_t mu;
    struct http_stream *head;
    bool closing;
};
void http__streams_init(struct http_streams *ss);
void http__streams_release(struct http_streams *ss);
/* Ends every stream (they finish once the server thread gets to them); refuses new ones. */
void http__streams_end_all(struct http_streams *ss);
struct http_streams *http__server_streams(struct http_server *srv);

void http__dispatch(struct http_req *req, const struct http_router *router);
/* Runs the router's reply hook for req (once), just before its reply is queued. */
void http__router_replying(const struct http_router *router, struct http_req *req);
/* The body limit of the route that method + path would reach; 0 when it has none of its own
 * (or no route fits). */
uint64_t http__route_max_body(const struct http_router *router, const char *method,
                              struct str path);

/* Deepest nesting http__json_render writes (jansson's loop check has no such limit, but a
 * reply nested this deep is a reference loop or a bug). */
#define HTTP_JSON_MAX_DEPTH 512

/* Appends v as json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY) would
 * write it, byte for byte. ERR_INVALID (out unchanged) for what it does not write: a string
 * that is not valid UTF-8, a real that is not finite, nesting past HTTP_JSON_MAX_DEPTH;
 * json_dumps then decides. Any thread; v is only read. */
int http__json_render(struct buf *out, const json_t *v) MUST_USE;

#endif
