/* request.c - request accessors and replies. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "http/http_int.h"

struct arena *http_req_arena(struct http_req *req)
{
    return &req->arena;
}

const char *http_req_method(const struct http_req *req)
{
    return req->method;
}

struct str http_req_path(const struct http_req *req)
{
    return req->path;
}

const char *http_req_id(const struct http_req *req)
{
    return req->id;
}

const char *http_req_param(struct http_req *req, const char *name)
{
    for (size_t i = 0; i < req->params.n; i++)
        if (strcmp(req->params.p[i].name, name) == 0)
            return http_url_decode(&req->arena, req->params.p[i].value.ptr,
                                   req->params.p[i].value.len, false);
    return NULL;
}

static void parse_query(struct http_req *req)
{
    if (req->query_parsed)
        return;
    req->query_parsed = true;
    if (http_query_parse(&req->arena, req->query_raw, req->query_len, &req->query, &req->n_query) !=
        0) {
        /* over the limit: keep none; the caller sees absent parameters */
        req->n_query = 0;
    }
}

const char *http_req_query(struct http_req *req, const char *name)
{
    parse_query(req);
    for (size_t i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i].key, name) == 0)
            return req->query[i].value;
    return NULL;
}

size_t http_req_query_all(struct http_req *req, const struct http_kv **kv_out)
{
    parse_query(req);
    *kv_out = req->query;
    return req->n_query;
}

int http_req_status(const struct http_req *req)
{
    return req->resp ? req->status : 0;
}

const char *http_req_route(const struct http_req *req)
{
    return http_route_pattern(req->route);
}

void *http_req_data(const struct http_req *req)
{
    return req->data;
}

void http_req_set_data(struct http_req *req, void *data)
{
    req->data = data;
}

const char *http_req_query_raw(const struct http_req *req)
{
    return req->query_raw ? req->query_raw : "";
}

const char *http_req_error(const struct http_req *req)
{
    return req->error;
}

const char *http_req_error_data(const struct http_req *req)
{
    return req->error_data;
}

const char *http_req_header(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_req_client_ip(struct http_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char text[INET6_ADDRSTRLEN] = "unknown";
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof(text));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof(text));
    }
    return arena_strdup(&req->arena, text);
}

struct str http_req_body(const struct http_req *req)
{
    struct str s = {req->body.ptr ? req->body.ptr : "", req->body.len};
    return s;
}

static void json_decref_cb(void *p)
{
    json_decref(p);
}

json_t *http_req_json(struct http_req *req, bool allow_empty)
{
    if (req->json)
        return req->json;
    struct str body = http_req_body(req);
    size_t i = 0;
    while (i < body.len && strchr(" \t\r\n", body.ptr[i]))
        i++;
    if (i == body.len) {
        if (!allow_empty) {
            http_reply_error(req, 400, "The request body must be a JSON value.", NULL);
            return NULL;
        }
        req->json = json_object();
    } else {
        json_error_t jerr;
        req->json = json_loadb(body.ptr, body.len, 0, &jerr);
        if (!req->json) {
            http_reply_error(req, 400,
                             "Failed to load the submitted data due to invalid formatting.", NULL);
            return NULL;
        }
    }
    arena_on_release(&req->arena, json_decref_cb, req->json);
    return req->json;
}

const char *http_status_message(int status)
{
    switch (status) {
    case 400: return "Something went wrong while processing your request.";
    case 401: return "Missing or invalid authentication.";
    case 403: return "You are not allowed to perform this request.";
    case 404: return "The requested resource wasn't found.";
    case 405: return "Method not allowed.";
    case 408: return "Request timeout.";
    case 413: return "Request entity too large.";
    case 429: return "Too Many Requests.";
    case 503: return "Service unavailable, try again later.";
    default: break;
    }
    return "Something went wrong while processing your request.";
}

bool http_replied(const struct http_req *req)
{
    return req->resp != NULL;
}

void http_set_header(struct http_req *req, const char *name, const char *value)
{
    struct http_header *h = arena_alloc(&req->arena, sizeof(*h));
    h->name = arena_strdup(&req->arena, name);
    h->value = arena_strdup(&req->arena, value);
    h->next = req->headers;
    req->headers = h;
}

static void finish(struct http_req *req, int status, const char *content_type,
                   struct MHD_Response *resp, size_t len)
{
    if (!resp)
        PANIC("cannot create a response of %zu bytes", len);
    if (req->resp) {
        /* a second reply is a bug in a handler; keep the first */
        xlog_error("second reply to request %s ignored (status %d)", req->id, status);
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, "X-Request-Id", req->id);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (struct http_header *h = req->headers; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);
    req->status = status;
    req->resp = resp;
    req->resp_bytes = len;
}

void http_reply_static(struct http_req *req, int status, const char *content_type, const void *body,
                       size_t len)
{
    finish(req, status, content_type,
           MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT), len);
}

void http_reply_bytes(struct http_req *req, int status, const char *content_type, const void *body,
                      size_t len)
{
    finish(req, status, content_type,
           MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY), len);
}

void http_reply_owned(struct http_req *req, int status, const char *content_type, char *body,
                      size_t len)
{
    finish(req, status, content_type,
           MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE), len);
}

void http_reply_empty(struct http_req *req, int status)
{
    finish(req, status, NULL, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), 0);
}

void http_reply_fd(struct http_req *req, int status, const char *content_type, int fd,
                   uint64_t size)
{
    http_reply_fd_at(req, status, content_type, fd, 0, size);
}

void http_reply_fd_at(struct http_req *req, int status, const char *content_type, int fd,
                      uint64_t offset, uint64_t size)
{
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(size, fd, offset);
    if (!resp) {
        close(fd);
        xlog_error("cannot create a response for a file of %llu bytes", (unsigned long long)size);
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    finish(req, status, content_type, resp, (size_t)size);
}

#define JSON_TYPE "application/json"

/* Keeps the message and data of an error envelope for http_req_error (the request log). */
static void keep_error(struct http_req *req, const json_t *body)
{
    const char *msg = json_string_value(json_object_get(body, "message"));
    if (!msg || !json_is_integer(json_object_get(body, "status")))
        return;
    req->error = arena_strdup(&req->arena, msg);
    const json_t *data = json_object_get(body, "data");
    if (json_object_size(data) > 0) {
        char *text = json_dumps(data, JSON_COMPACT);
        req->error_data = text ? arena_strdup(&req->arena, text) : NULL;
        free(text);
    }
}

void http_reply_json(struct http_req *req, int status, json_t *body)
{
    if (status >= 400 && json_is_object(body))
        keep_error(req, body);
    struct buf b;
    buf_init(&b);
    buf_reserve(&b, 512);
    if (http__json_render(&b, body) == 0) {
        json_decref(body);
        size_t len;
        char *text = buf_detach(&b, &len);
        http_reply_owned(req, status, JSON_TYPE, text, len);
        return;
    }
    buf_release(&b);
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY);
    json_decref(body);
    if (!text)
        PANIC("cannot serialise a JSON reply");
    http_reply_owned(req, status, JSON_TYPE, text, strlen(text));
}

json_t *http_error_envelope(int status, const char *message, json_t *data)
{
    json_t *env = json_object();
    json_object_set_new(env, "data", data ? data : json_object());
    json_object_set_new(env, "message",
                        json_string(message ? message : http_status_message(status)));
    json_object_set_new(env, "status", json_integer(status));
    return env;
}

void http_reply_error(struct http_req *req, int status, const char *message, json_t *data)
{
    http_reply_json(req, status, http_error_envelope(status, message, data));
}

void http_req_suspend(struct http_req *req)
{
    req->suspended = true;
    MHD_suspend_connection(req->conn);
}

void http_req_resume(struct http_req *req)
{
    MHD_resume_connection(req->conn);
}
