/* router.c - method + path patterns, query strings, URL decoding, CORS, dispatch. */
#include <string.h>
#include <strings.h>

#include "http/http_int.h"

struct http_router {
    struct http_route *head;
    struct http_route **tail;
    struct http_route *fallback; /* for requests no route fits, or NULL */
    http_guard_cb guard;
    void *guard_ctx;
    http_done_cb done;
    void *done_ctx;
    http_reply_hook_cb reply_hook;
    void *reply_hook_ctx;
    char **origins; /* allowed CORS origins; NULL: any ("*") */
    size_t n_origins;
};

int http_router_cors(struct http_router *r, const char *origins)
{
    for (size_t i = 0; i < r->n_origins; i++)
        free(r->origins[i]);
    free(r->origins);
    r->origins = NULL;
    r->n_origins = 0;
    size_t n = 0;
    char **list = NULL;
    for (const char *p = origins ? origins : "*"; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p;
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 1 && *s == '*') { /* any origin */
            for (size_t i = 0; i < n; i++)
                free(list[i]);
            free(list);
            return 0;
        }
        if (len) {
            list = xrealloc(list, (n + 1) * sizeof(*list));
            list[n++] = xstrndup(s, len);
        }
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    if (n == 0)
        return ERR_INVALID;
    r->origins = list;
    r->n_origins = n;
    return 0;
}

/* The Access-Control-Allow-Origin value for this request's Origin, or NULL (no CORS headers:
 * no Origin, or one not allowed). */
static const char *cors_origin(const struct http_router *r, const char *origin)
{
    if (!origin || !*origin)
        return NULL;
    if (!r->origins)
        return "*";
    for (size_t i = 0; i < r->n_origins; i++)
        if (strcasecmp(r->origins[i], origin) == 0)
            return origin;
    return NULL;
}

void http_router_on_done(struct http_router *r, http_done_cb fn, void *ctx)
{
    r->done = fn;
    r->done_ctx = ctx;
}

void http__router_done(const struct http_router *r, struct http_req *req, int status, int64_t us)
{
    if (r && r->done)
        r->done(req, status, us, r->done_ctx);
}

void http_router_guard(struct http_router *r, http_guard_cb fn, void *ctx)
{
    r->guard = fn;
    r->guard_ctx = ctx;
}

void http_router_on_reply(struct http_router *r, http_reply_hook_cb fn, void *ctx)
{
    r->reply_hook = fn;
    r->reply_hook_ctx = ctx;
}

void http__router_replying(const struct http_router *r, struct http_req *req)
{
    if (r->reply_hook && req->route && req->route != r->fallback && !req->hooked) {
        req->hooked = true;
        r->reply_hook(req, r->reply_hook_ctx);
    }
}

struct http_router *http_router_new(void)
{
    struct http_router *r = xcalloc(1, sizeof(*r));
    r->tail = &r->head;
    return r;
}

static void route_free(struct http_route *rt)
{
    if (!rt)
        return;
    for (size_t i = 0; i < rt->n_segs; i++)
        free(rt->segs[i]);
    free(rt->segs);
    free(rt->is_param);
    free(rt->method);
    free(rt->pattern);
    free(rt);
}

void http_router_free(struct http_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_origins; i++)
        free(r->origins[i]);
    free(r->origins);
    while (r->head) {
        struct http_route *rt = r->head;
        r->head = rt->next;
        route_free(rt);
    }
    route_free(r->fallback);
    free(r);
}

/* Splits "/a/b/c" into segments after the leading '/'. Returns the count, or SIZE_MAX when
 * the path does not start with '/' or has too many segments. */
static size_t split_path(struct str path, struct str *segs)
{
    if (path.len == 0 || path.ptr[0] != '/')
        return SIZE_MAX;
    size_t n = 0, start = 1;
    for (size_t i = 1; i <= path.len; i++) {
        if (i == path.len || path.ptr[i] == '/') {
            if (n == HTTP_MAX_SEGMENTS)
                return SIZE_MAX;
            segs[n].ptr = path.ptr + start;
            segs[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static struct http_route *route_new(const char *method, const char *pattern, http_handler_cb fn,
                                    void *ctx)
{
    struct str segs[HTTP_MAX_SEGMENTS];
    size_t n = split_path(str_from(pattern), segs);
    if (n == SIZE_MAX)
        PANIC("bad route pattern %s", pattern);
    struct http_route *rt = xcalloc(1, sizeof(*rt));
    rt->method = xstrdup(method);
    rt->pattern = xstrdup(pattern);
    rt->n_segs = n;
    rt->segs = xcalloc(n, sizeof(char *));
    rt->is_param = xcalloc(n, sizeof(bool));
    size_t n_params = 0;
    for (size_t i = 0; i < n; i++) {
        struct str s = segs[i];
        if (s.len >= 2 && s.ptr[0] == '{' && s.ptr[s.len - 1] == '}') {
            s.ptr++;
            s.len -= 2;
            if (s.len > 3 && memcmp(s.ptr + s.len - 3, "...", 3) == 0) {
                if (i + 1 != n)
                    PANIC("route %s: {name...} must be last", pattern);
                rt->rest = true;
                s.len -= 3;
            }
            if (++n_params > HTTP_MAX_PARAMS)
                PANIC("route %s has too many parameters", pattern);
            rt->is_param[i] = true;
        }
        rt->segs[i] = xstrndup(s.ptr, s.len);
    }
    rt->fn = fn;
    rt->ctx = ctx;
    return rt;
}

void http_route(struct http_router *r, const char *method, const char *pattern, http_handler_cb fn,
                void *ctx)
{
    http_route_max_body(r, method, pattern, fn, ctx, 0);
}

void http_route_max_body(struct http_router *r, const char *method, const char *pattern,
                         http_handler_cb fn, void *ctx, uint64_t max_body)
{
    struct http_route *rt = route_new(method, pattern, fn, ctx);
    rt->max_body = max_body;
    *r->tail = rt;
    r->tail = &rt->next;
}

void http_router_fallback(struct http_router *r, const char *pattern, http_handler_cb fn, void *ctx)
{
    route_free(r->fallback);
    r->fallback = route_new("*", pattern, fn, ctx);
}

const char *http_route_pattern(const struct http_route *route)
{
    return route ? route->pattern : "unmatched";
}

void http_router_each(const struct http_router *r, http_route_each_cb fn, void *arg)
{
    for (const struct http_route *rt = r->head; rt; rt = rt->next)
        fn(arg, rt->method, rt->pattern);
    if (r->fallback)
        fn(arg, r->fallback->method, r->fallback->pattern);
}

static bool route_fits(const struct http_route *rt, struct str path, const struct str *segs,
                       size_t n, struct http_params *params)
{
    if (rt->rest ? n + 1 < rt->n_segs : n != rt->n_segs)
        return false;
    params->n = 0;
    for (size_t i = 0; i < rt->n_segs; i++) {
        if (!rt->is_param[i]) {
            if (!str_eq_cstr(segs[i], rt->segs[i]))
                return false;
            continue;
        }
        struct str v = segs[i];
        if (rt->rest && i + 1 == rt->n_segs) {
            /* everything from this segment to the end of the path */
            v.len = i < n ? (size_t)(path.ptr + path.len - segs[i].ptr) : 0;
            if (i >= n)
                v.ptr = path.ptr + path.len;
        } else if (v.len == 0) {
            return false; /* {name} needs a non-empty segment */
        }
        params->p[params->n].name = rt->segs[i];
        params->p[params->n].value = v;
        params->n++;
    }
    return true;
}

enum http_match http_router_match(const struct http_router *r, const char *method, struct str path,
                                  const struct http_route **route_out,
                                  struct http_params *params_out, struct buf *allow_out)
{
    struct str segs[HTTP_MAX_SEGMENTS];
    struct http_params scratch;
    size_t n = split_path(path, segs);
    const struct http_route *other = NULL;
    *route_out = NULL;
    if (n == SIZE_MAX)
        return HTTP_MATCH_NOT_FOUND;
    for (const struct http_route *rt = r->head; rt; rt = rt->next) {
        bool same_method = strcmp(rt->method, method) == 0 ||
                           (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
        if (!same_method && other && !allow_out)
            continue;
        if (!route_fits(rt, path, segs, n, same_method ? params_out : &scratch))
            continue;
        if (same_method) {
            *route_out = rt;
            return HTTP_MATCH_OK;
        }
        if (!other)
            other = rt;
        if (allow_out) {
            if (allow_out->len)
                buf_puts(allow_out, ", ");
            buf_puts(allow_out, rt->method);
        }
    }
    if (!other)
        return HTTP_MATCH_NOT_FOUND;
    *route_out = other;
    return HTTP_MATCH_BAD_METHOD;
}

char *http_url_decode(struct arena *a, const char *s, size_t len, bool plus_is_space)
{
    char *out = arena_alloc(a, len + 1), *o = out;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len) {
            int hi = str_hex_digit(s[i + 1]);
            int lo = str_hex_digit(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                *o++ = (char)(hi << 4 | lo);
                i += 2;
                continue;
            }
        }
        *o++ = plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
    *o = '\0';
    return out;
}

int http_query_parse(struct arena *a, const char *qs, size_t len, struct http_kv **kv_out,
                     size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += qs[i] == '&';
    n++;
    if (n > HTTP_MAX_QUERY_PARAMS)
        return ERR_LIMIT;
    struct http_kv *kv = arena_alloc(a, n * sizeof(*kv));
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && qs[i] != '&')
            continue;
        if (i > start) {
            const char *p = qs + start;
            size_t plen = i - start;
            const char *eq = memchr(p, '=', plen);
            size_t klen = eq ? (size_t)(eq - p) : plen;
            kv[k].key = http_url_decode(a, p, klen, true);
            kv[k].value = eq ? http_url_decode(a, eq + 1, plen - klen - 1, true) : "";
            k++;
        }
        start = i + 1;
    }
    *kv_out = kv;
    *n_out = k;
    return 0;
}

/* PocketBase's CORS (echo's middleware with its defaults): every OPTIONS is a preflight,
 * answered 204 here with the allowed methods and the requested headers, before any guard or
 * handler; other requests from an allowed Origin get Access-Control-Allow-Origin. Returns
 * true when the request was answered. */
static bool cors(struct http_req *req, const struct http_router *router)
{
    const char *allow = cors_origin(router, http_req_header(req, "Origin"));
    if (router->origins)
        http_set_header(req, "Vary", "Origin");
    if (strcmp(req->method, "OPTIONS") != 0) {
        if (allow)
            http_set_header(req, "Access-Control-Allow-Origin", allow);
        return false;
    }
    if (allow) {
        http_set_header(req, "Access-Control-Allow-Origin", allow);
        http_set_header(req, "Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE");
        const char *h = http_req_header(req, "Access-Control-Request-Headers");
        if (h && *h)
            http_set_header(req, "Access-Control-Allow-Headers", h);
        http_set_header(req, "Access-Control-Max-Age", "86400");
    }
    http_reply_empty(req, 204);
    return true;
}

uint64_t http__route_max_body(const struct http_router *router, const char *method, struct str path)
{
    const struct http_route *rt;
    struct http_params params;
    if (http_router_match(router, method, path, &rt, &params, NULL) != HTTP_MATCH_OK)
        return 0;
    return rt->max_body;
}

void http__dispatch(struct http_req *req, const struct http_router *router)
{
    if (cors(req, router))
        return;
    if (router->guard && !router->guard(req, router->guard_ctx))
        return;
    struct buf allow;
    buf_init(&allow);
    enum http_match m =
        http_router_match(router, req->method, req->path, &req->route, &req->params, &allow);
    switch (m) {
    case HTTP_MATCH_OK: req->route->fn(req, req->route->ctx); break;
    case HTTP_MATCH_NOT_FOUND:
        if (router->fallback) {
            req->route = router->fallback;
            req->params.n = 0;
            router->fallback->fn(req, router->fallback->ctx);
        } else {
            http_reply_error(req, 404, NULL, NULL);
        }
        break;
    case HTTP_MATCH_BAD_METHOD:
        http_set_header(req, "Allow", buf_cstr(&allow));
        http_reply_error(req, 405, NULL, NULL);
        break;
    }
    buf_release(&allow);
}
