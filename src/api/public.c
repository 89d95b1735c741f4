/* public.c - static hosting: the files of --public served at / (PocketBase's pb_public).
 *
 * The router hands this file every request no route fits (http_router_fallback), so the API
 * and the dashboard always win; a path under /api/ or /_/ that reaches here is a JSON 404.
 * Only GET and HEAD are answered (others 405); a file is sent from its descriptor as the
 * client reads it, never loaded into memory.
 *
 * What a request may name: the URL path is split on '/' before percent-decoding, and a
 * decoded segment that is empty (in the middle), ".", "..", holds '/', '\\', a control
 * character or NUL, or begins with '.' (hidden files, except the first segment
 * ".well-known") makes the request a 404, with no index fallback. The rest is resolved with
 * realpath() and must stay inside the root's own real path: symbolic links inside the root
 * are followed, links that lead out are a 404 (no fallback either). The final open() uses
 * O_NOFOLLOW on the resolved path (no link is left in it) and O_NONBLOCK, so a FIFO cannot stall
 * the thread; only regular files and directories are served. A link swapped in between realpath()
 * and open() by someone who can write the directory is the one race left: they could serve that
 * content anyway.
 *
 * As PocketBase's apis.Static does: a directory is served by its index.html and redirected
 * (301) to its slash form; a file named with a trailing slash, or ".../index.html", is
 * redirected to its plain form; with --index-fallback (the default) a path that names
 * nothing gets the root index.html with 200. Replies carry a strong ETag (size, mtime,
 * inode), Last-Modified, and Cache-Control: "no-cache" for HTML, "max-age=3600" otherwise
 * (PocketBase sets none for pb_public; these keep pages fresh after a deploy while assets
 * need no request for an hour). If-None-Match, or else If-Modified-Since, gives 304.
 *
 * Threads: a struct api_public is made at start and only read afterwards, from any HTTP
 * thread. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api_int.h"
#include "api/dashboard_int.h"

#define INDEX_PAGE "index.html"
#define CACHE_HTML "no-cache"
#define CACHE_OTHER "max-age=3600"

struct api_public {
    char *root;      /* real path, without a trailing slash ("" for "/") */
    size_t root_len; /* strlen(root) */
    bool index_fallback;
};

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"webmanifest", "application/manifest+json; charset=utf-8"},
    {"svg", "image/svg+xml; charset=utf-8"},
    {"xml", "application/xml; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
};

const char *api__public_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) {
        for (size_t i = 0; i < ARRAY_LEN(types); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

/* Appends the percent-decoded segment s to out; ERR_INVALID for a malformed escape or a
 * byte no file name here may hold. */
static int decode_segment(struct str s, char *out, size_t *len_io)
{
    size_t o = *len_io;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '%') {
            if (i + 2 >= s.len || str_hex_digit(s.ptr[i + 1]) < 0 ||
                str_hex_digit(s.ptr[i + 2]) < 0)
                return ERR_INVALID;
            c = (unsigned char)(str_hex_digit(s.ptr[i + 1]) << 4 | str_hex_digit(s.ptr[i + 2]));
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return ERR_INVALID;
        out[o++] = (char)c;
    }
    *len_io = o;
    return 0;
}

int api__public_clean(struct arena *a, struct str path, const char **rel_out, bool *dir_form_out)
{
    if (path.len == 0 || path.ptr[0] != '/' || path.len >= PATH_MAX)
        return ERR_INVALID;
    char *rel = arena_alloc(a, path.len + 1);
    size_t len = 0, n_seg = 0;
    const char *p = path.ptr + 1, *end = path.ptr + path.len;
    bool dir_form = false;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        struct str seg = {p, (size_t)((slash ? slash : end) - p)};
        if (seg.len == 0) {
            if (slash) /* "//" */
                return ERR_INVALID;
            dir_form = true; /* "/" or a trailing slash */
            break;
        }
        if (n_seg++ > 0)
            rel[len++] = '/';
        size_t start = len;
        if (decode_segment(seg, rel, &len) != 0)
            return ERR_INVALID;
        size_t seg_len = len - start;
        if (rel[start] == '.' &&
            !(n_seg == 1 && seg_len == 11 && memcmp(rel, ".well-known", 11) == 0))
            return ERR_INVALID; /* ".", "..", hidden files */
        if (!slash)
            break;
        p = slash + 1;
    }
    rel[len] = '\0';
    *rel_out = rel;
    *dir_form_out = dir_form;
    return 0;
}

/* ---- serving ---- */

static void format_http_date(time_t t, char out[32])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the form HTTP/1.1 clients send; other
 * forms give -1 and the header is ignored. */
static time_t parse_http_date(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char wday[4], mon[4];
    int d, y, h, mi, se, n = 0;
    if (!s ||
        sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &h, &mi,
               &se, &n) != 7 ||
        n == 0 || s[n] != '\0' || strlen(wday) != 3)
        return -1;
    const char *m = strstr(months, mon);
    if (!m || strlen(mon) != 3 || (m - months) % 3 != 0 || d < 1 || d > 31 || y < 1970 || h > 23 ||
        mi > 59 || se > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    return timegm(&tm);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

enum lookup {
    LOOKUP_FILE,     /* *fd_out is an open regular file */
    LOOKUP_DIR,      /* a directory */
    LOOKUP_MISSING,  /* nothing there */
    LOOKUP_REFUSED,  /* there, but outside the root (a link) or neither file nor directory */
    LOOKUP_NO_FILES, /* out of descriptors or memory */
};

/* Resolves rel (decoded, relative, checked by api__public_clean) inside the root. */
static enum lookup lookup(const struct api_public *pub, const char *rel, int *fd_out,
                          struct stat *st_out)
{
    char path[PATH_MAX], real[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", pub->root, rel);
    if (n < 0 || (size_t)n >= sizeof(path))
        return LOOKUP_MISSING;
    if (!realpath(path, real))
        return errno == ENOMEM ? LOOKUP_NO_FILES : LOOKUP_MISSING;
    /* inside the root: the root itself or below "root/" */
    if (strncmp(real, pub->root, pub->root_len) != 0 ||
        (real[pub->root_len] != '/' && real[pub->root_len] != '\0'))
        return LOOKUP_REFUSED;
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? LOOKUP_NO_FILES
                                                                     : LOOKUP_MISSING;
    if (fstat(fd, st_out) != 0 || !(S_ISREG(st_out->st_mode) || S_ISDIR(st_out->st_mode))) {
        close(fd);
        return LOOKUP_REFUSED;
    }
    if (S_ISDIR(st_out->st_mode)) {
        close(fd);
        return LOOKUP_DIR;
    }
    *fd_out = fd;
    return LOOKUP_FILE;
}

/* Answers with the open file fd (TAKES it): 200, or 304 when the client's copy is current. */
static void send_file(struct http_req *req, const char *name, int fd, const struct stat *st)
{
    const char *type = api__public_type(name);
    char etag[80], modified[32];
    snprintf(etag, sizeof(etag), "\"%llx-%llx-%lx-%llx\"", (unsigned long long)st->st_size,
             (unsigned long long)st->st_mtim.tv_sec, (unsigned long)st->st_mtim.tv_nsec,
             (unsigned long long)st->st_ino);
    format_http_date(st->st_mtim.tv_sec, modified);
    http_set_header(req, "ETag", etag);
    http_set_header(req, "Last-Modified", modified);
    http_set_header(req, "Cache-Control",
                    strncmp(type, "text/html", 9) == 0 ? CACHE_HTML : CACHE_OTHER);
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    const char *inm = http_req_header(req, "If-None-Match");
    bool fresh;
    if (inm) {
        fresh = api__etag_matches(inm, etag);
    } else {
        time_t since = parse_http_date(http_req_header(req, "If-Modified-Since"));
        fresh = since >= 0 && st->st_mtim.tv_sec <= since;
    }
    /* a 304 keeps the 200's Content-Length; libmicrohttpd sends no body with it */
    http_reply_fd(req, fresh ? 304 : 200, fresh ? NULL : type, fd, (uint64_t)st->st_size);
}

static void redirect(struct http_req *req, const char *location)
{
    /* never "//host" or "/\host", which a browser takes for another site */
    while (location[0] == '/' && (location[1] == '/' || location[1] == '\\'))
        location++;
    http_set_header(req, "Location", location);
    http_reply_empty(req, 301);
}

static void not_found(struct http_req *req)
{
    http_reply_error(req, 404, NULL, NULL);
}

static void no_files(struct http_req *req)
{
    xlog_warn("cannot open a public file: out of file descriptors or memory");
    http_reply_error(req, 503, NULL, NULL);
}

/* The request named nothing servable: the root index.html with --index-fallback, else 404. */
static void fallback(struct http_req *req, const struct api_public *pub, const char *rel)
{
    int fd = -1;
    struct stat st;
    if (!pub->index_fallback || strcmp(rel, INDEX_PAGE) == 0) {
        not_found(req);
        return;
    }
    switch (lookup(pub, INDEX_PAGE, &fd, &st)) {
    case LOOKUP_FILE: send_file(req, INDEX_PAGE, fd, &st); return;
    case LOOKUP_NO_FILES: no_files(req); return;
    case LOOKUP_DIR:
    case LOOKUP_MISSING:
    case LOOKUP_REFUSED: not_found(req); return;
    }
}

/* The first segment of rel is "api" or "_": those paths belong to the API and the dashboard,
 * never to files, whatever the public directory holds. */
static bool reserved(const char *rel)
{
    size_t n = strcspn(rel, "/");
    return (n == 3 && memcmp(rel, "api", 3) == 0) || (n == 1 && rel[0] == '_');
}

static void serve(struct http_req *req, void *ctx)
{
    const struct api_public *pub = ctx;
    struct arena *a = http_req_arena(req);
    struct str path = http_req_path(req);
    const char *rel;
    bool dir_form;
    if (api__public_clean(a, path, &rel, &dir_form) != 0 || reserved(rel)) {
        not_found(req);
        return;
    }
    const char *method = http_req_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        http_set_header(req, "Allow", "GET, HEAD");
        http_reply_error(req, 405, NULL, NULL);
        return;
    }
    const char *raw = arena_strndup(a, path.ptr, path.len);
    int fd = -1;
    struct stat st;
    switch (lookup(pub, rel, &fd, &st)) {
    case LOOKUP_NO_FILES: no_files(req); return;
    case LOOKUP_REFUSED: not_found(req); return;
    case LOOKUP_MISSING: fallback(req, pub, rel); return;
    case LOOKUP_DIR: {
        if (!dir_form) {
            redirect(req, arena_printf(a, "%s/", raw));
            return;
        }
        const char *index = *rel ? arena_printf(a, "%s/" INDEX_PAGE, rel) : INDEX_PAGE;
        switch (lookup(pub, index, &fd, &st)) {
        case LOOKUP_FILE: send_file(req, index, fd, &st); return;
        case LOOKUP_NO_FILES: no_files(req); return;
        case LOOKUP_REFUSED: not_found(req); return;
        case LOOKUP_DIR:
        case LOOKUP_MISSING: fallback(req, pub, rel); return; /* no listing, ever */
        }
        return;
    }
    case LOOKUP_FILE: break;
    }
    if (dir_form) {
        /* a file named with a trailing slash: its plain form */
        close(fd);
        redirect(req, arena_strndup(a, path.ptr, path.len - 1));
        return;
    }
    if (has_suffix(raw, "/" INDEX_PAGE)) {
        /* ".../index.html": the directory form, as PocketBase does */
        close(fd);
        redirect(req, arena_strndup(a, path.ptr, path.len - strlen(INDEX_PAGE)));
        return;
    }
    send_file(req, rel, fd, &st);
}

/* ---- setup ---- */

/* The directory --public names: NULL when there is none to serve (off, empty, or "auto"
 * without <dir>/../tandem_public), written to buf otherwise. */
static const char *public_dir(const struct cfg *cfg, char *buf, size_t cap)
{
    const char *v = cfg->public_dir;
    if (!*v || strcmp(v, "off") == 0)
        return NULL;
    if (strcmp(v, "auto") != 0) {
        snprintf(buf, cap, "%s", v);
        return buf;
    }
    struct stat st;
    int n = snprintf(buf, cap, "%s/../tandem_public", cfg->dir);
    if (n < 0 || (size_t)n >= cap || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return buf;
}

int api_public_open(struct api_env *env, char *err, size_t err_len)
{
    char buf[PATH_MAX], real[PATH_MAX];
    struct stat st;
    const char *dir = public_dir(env->cfg, buf, sizeof(buf));
    if (!dir)
        return 0;
    if (!realpath(dir, real) || stat(real, &st) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot open the public directory %s: %s", dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "the public directory %s is not a directory", dir);
        return ERR_INVALID;
    }
    struct api_public *pub = xcalloc(1, sizeof(*pub));
    pub->root = xstrdup(strcmp(real, "/") == 0 ? "" : real);
    pub->root_len = strlen(pub->root);
    pub->index_fallback = env->cfg->index_fallback;
    env->pub = pub;
    xlog_info("serving the files of %s at /%s", real,
              pub->index_fallback ? " (index fallback on)" : "");
    return 0;
}

void api_public_free(struct api_env *env)
{
    if (!env->pub)
        return;
    free(env->pub->root);
    free(env->pub);
    env->pub = NULL;
}

void api__register_public(struct http_router *r, struct api_env *env)
{
    if (env->pub)
        http_router_fallback(r, "/{path...}", serve, env->pub);
}
