/* dashboard.c - GET /_/ and GET /_/{path...}: the dashboard's files from the binary.
 *
 * The files are compiled in (dashboard_int.h), so the dashboard needs nothing on disk and no
 * network at run time. Every reply carries a strong ETag and "Cache-Control: no-cache": the
 * file names carry no version, so browsers revalidate and get 304 while the binary is the
 * same. The Content-Security-Policy allows only the server's own origin: the pages have no
 * inline scripts or styles and load nothing from elsewhere. The API calls the pages make are
 * ordinary API requests, authorised by the superuser token the sign-in page obtains. */
#include <string.h>

#include "api/dashboard_int.h"

#define DASH_CSP                                                                                   \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "        \
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "                    \
    "form-action 'self'; frame-ancestors 'none'"

const struct api_asset *api__dashboard_find(struct str path)
{
    if (path.len == 0)
        path = str_from("index.html");
    for (size_t i = 0; i < api_dashboard_n_assets; i++)
        if (str_eq_cstr(path, api_dashboard_assets[i].path))
            return &api_dashboard_assets[i];
    return NULL;
}

/* One entity tag of a list: optional W/, then a quoted opaque string. Compares the opaque
 * parts (weak comparison). */
bool api__etag_matches(const char *inm, const char *etag)
{
    if (!inm || !etag)
        return false;
    size_t etag_len = strlen(etag);
    const char *p = inm;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return false;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return false; /* malformed: nothing matches */
        const char *end = strchr(p + 1, '"');
        if (!end)
            return false;
        size_t len = (size_t)(end - p) + 1;
        if (len == etag_len && memcmp(p, etag, len) == 0)
            return true;
        p = end + 1;
    }
}

static void set_common_headers(struct http_req *req)
{
    http_set_header(req, "Content-Security-Policy", DASH_CSP);
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    http_set_header(req, "X-Frame-Options", "DENY");
    http_set_header(req, "Referrer-Policy", "no-referrer");
}

static void get_asset(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    const char *path = http_req_param(req, "path");
    const struct api_asset *a = api__dashboard_find(str_from(path));
    if (!a) {
        http_reply_error(req, 404, "The requested resource wasn't found.", NULL);
        return;
    }
    set_common_headers(req);
    http_set_header(req, "Cache-Control", "no-cache");
    http_set_header(req, "ETag", a->etag);
    if (api__etag_matches(http_req_header(req, "If-None-Match"), a->etag)) {
        /* the 200's length, as RFC 9110 asks of a Content-Length on a 304 (libmicrohttpd
         * sends no body with a 304) */
        http_reply_static(req, 304, NULL, a->data, a->len);
        return;
    }
    http_reply_static(req, 200, a->content_type, a->data, a->len);
}

/* /_ without the slash: the pages' relative URLs need the directory form. */
static void get_root(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    http_set_header(req, "Location", "/_/");
    http_reply_empty(req, 301);
}

void api__register_dashboard(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/_", get_root, env);
    http_route(r, "GET", "/_/{path...}", get_asset, env);
}
