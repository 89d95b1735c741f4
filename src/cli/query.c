/* query.c - `tandem query "SQL"`: the warehouse from the command line.
 *
 * With --url the query goes to that server's SQL API. Without it, the warehouse file is
 * opened directly; DuckDB lets only one process hold it, so when a server has it open the
 * query goes to that server instead (at the --http address). Over HTTP the request carries a
 * superuser token: TANDEM_TOKEN, or one got by signing in with --email and --password. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "warehouse/warehouse.h"

/* ---- output ---- */

/* A cell as text: strings as they are, NULL as "NULL", anything else as compact JSON. */
static char *cell_text(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_null(v) || !v)
        return xstrdup("NULL");
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    return s ? s : xstrdup("?");
}

/* display width in characters (UTF-8 continuation bytes do not count) */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

static void put_csv(const char *s, FILE *out)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void cli_print_result(const json_t *resp, enum cli_format format, FILE *out)
{
    if (format == CLI_JSON) {
        char *s = json_dumps(resp, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        fprintf(out, "%s\n", s ? s : "{}");
        free(s);
        return;
    }
    const json_t *cols = json_object_get(resp, "columns");
    const json_t *rows = json_object_get(resp, "rows");
    size_t nc = json_array_size(cols), nr = json_array_size(rows);
    char **cells = xcalloc((nr + 1) * (nc ? nc : 1), sizeof(char *));
    size_t *w = xcalloc(nc ? nc : 1, sizeof(size_t));
    for (size_t c = 0; c < nc; c++) {
        cells[c] = cell_text(json_object_get(json_array_get(cols, c), "name"));
        w[c] = width(cells[c]);
    }
    for (size_t r = 0; r < nr; r++) {
        const json_t *row = json_array_get(rows, r);
        for (size_t c = 0; c < nc; c++) {
            char *t = cell_text(json_array_get(row, c));
            cells[(r + 1) * nc + c] = t;
            if (width(t) > w[c])
                w[c] = width(t);
        }
    }
    for (size_t r = 0; r <= nr; r++) {
        for (size_t c = 0; c < nc; c++) {
            const char *t = cells[r * nc + c];
            if (format == CLI_CSV) {
                if (c)
                    fputc(',', out);
                put_csv(t, out);
            } else {
                fprintf(out, "%s%s", c ? " | " : "", t);
                if (c + 1 < nc)
                    for (size_t k = width(t); k < w[c]; k++)
                        fputc(' ', out);
            }
        }
        fputc('\n', out);
        if (r == 0 && format == CLI_TABLE) {
            for (size_t c = 0; c < nc; c++) {
                fputs(c ? "-+-" : "", out);
                for (size_t k = 0; k < w[c]; k++)
                    fputc('-', out);
            }
            fputc('\n', out);
        }
    }
    if (format == CLI_TABLE) {
        json_t *t = json_object_get(resp, "truncated");
        fprintf(out, "(%zu row%s%s)\n", nr, nr == 1 ? "" : "s",
                json_is_true(t) ? ", truncated" : "");
    }
    for (size_t i = 0; i < (nr + 1) * nc; i++)
        free(cells[i]);
    free(cells);
    free(w);
}

/* ---- a minimal HTTP/1.1 client for plain http on a trusted network ---- */

/* Whether the headers [h, end) say "Transfer-Encoding: chunked" (a streamed answer). */
static bool is_chunked(const char *h, const char *end)
{
    static const char key[] = "\r\ntransfer-encoding:";
    for (const char *p = h; p + sizeof(key) - 1 < end; p++) {
        if (strncasecmp(p, key, sizeof(key) - 1) != 0)
            continue;
        const char *v = p + sizeof(key) - 1;
        while (v < end && *v == ' ')
            v++;
        return end - v >= 7 && strncasecmp(v, "chunked", 7) == 0;
    }
    return false;
}

/* Appends the data of a chunked body [p, end) to out (stops at the last chunk or at damage). */
static void dechunk(const char *p, const char *end, struct buf *out)
{
    while (p < end) {
        char *after;
        unsigned long long n = strtoull(p, &after, 16);
        const char *eol = memchr(after, '\n', (size_t)(end - after));
        if (after == p || !eol || n == 0 || (unsigned long long)(end - (eol + 1)) < n)
            return;
        buf_append(out, eol + 1, (size_t)n);
        p = eol + 1 + n;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            p += 2;
    }
}

int cli__parse_url(const char *u, struct url *out)
{
    if (strncmp(u, "http://", 7) != 0)
        return ERR_INVALID;
    u += 7;
    const char *slash = strchr(u, '/');
    size_t n = slash ? (size_t)(slash - u) : strlen(u);
    char hostport[300];
    if (n == 0 || n >= sizeof(hostport))
        return ERR_INVALID;
    memcpy(hostport, u, n);
    hostport[n] = '\0';
    char *colon = strrchr(hostport, ':');
    snprintf(out->port, sizeof(out->port), "%s", colon ? colon + 1 : "80");
    if (colon)
        *colon = '\0';
    char *h = hostport;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    snprintf(out->host, sizeof(out->host), "%s", h);
    return 0;
}

int cli__http(const struct url *u, const char *method, const char *path, const char *token,
              const char *body, struct buf *resp)
{
    if (!body)
        body = "";
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &ai) != 0)
        return ERR_NOTFOUND;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -e;
    }
    freeaddrinfo(ai);
    struct buf req;
    buf_init(&req);
    buf_printf(&req,
               "%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n",
               method, path, u->host, u->port, strlen(body));
    if (token)
        buf_printf(&req, "Authorization: %s\r\n", token);
    buf_printf(&req, "\r\n%s", body);
    size_t off = 0;
    while (off < req.len) {
        ssize_t w = send(fd, req.ptr + off, req.len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    buf_release(&req);
    struct buf raw;
    buf_init(&raw);
    char chunk[65536];
    ssize_t r;
    while ((r = recv(fd, chunk, sizeof(chunk), 0)) > 0)
        buf_append(&raw, chunk, (size_t)r);
    close(fd);
    int status = -EPROTO;
    const char *hdr_end = raw.ptr ? strstr(raw.ptr, "\r\n\r\n") : NULL;
    if (hdr_end && raw.len > 12 && strncmp(raw.ptr, "HTTP/1.", 7) == 0) {
        status = atoi(raw.ptr + 9);
        const char *body_at = hdr_end + 4, *end = raw.ptr + raw.len;
        if (is_chunked(raw.ptr, hdr_end))
            dechunk(body_at, end, resp);
        else
            buf_append(resp, body_at, (size_t)(end - body_at));
    }
    buf_release(&raw);
    return status;
}

int cli__token(const struct url *u, const char *url_text, const char *given, const char *email,
               const char *password, char **token_out, FILE *err)
{
    *token_out = NULL;
    if (given) {
        *token_out = xstrdup(given);
        return 0;
    }
    if (!email || !password) {
        fprintf(err, "tandem: a server holds the warehouse; give a superuser token in "
                     "TANDEM_TOKEN or --email and --password\n");
        return 2;
    }
    struct buf body;
    buf_init(&body);
    json_t *cred = json_pack("{s:s,s:s}", "identity", email, "password", password);
    char *text = json_dumps(cred, JSON_COMPACT);
    json_decref(cred);
    int st =
        cli__http(u, "POST", "/api/collections/_superusers/auth-with-password", NULL, text, &body);
    free(text);
    json_t *j = st == 200 ? json_loads(buf_cstr(&body), 0, NULL) : NULL;
    buf_release(&body);
    const char *t = json_string_value(json_object_get(j, "token"));
    if (!t) {
        fprintf(err, "tandem: cannot sign in at %s (%s)\n", url_text,
                st < 0 ? err_str(st) : "wrong email or password");
        json_decref(j);
        return 1;
    }
    *token_out = xstrdup(t);
    json_decref(j);
    return 0;
}

static int query_http(const struct cli_query_opts *o, const char *url_text, json_t **resp_out,
                      FILE *err)
{
    struct url u;
    if (cli__parse_url(url_text, &u) != 0) {
        fprintf(err, "tandem: --url must look like http://HOST:PORT\n");
        return 2;
    }
    char *token = NULL;
    struct buf body;
    buf_init(&body);
    int rc = cli__token(&u, url_text, o->token, o->email, o->password, &token, err);
    if (rc)
        return rc;
    json_t *q = json_pack("{s:s}", "query", o->sql);
    char *text = json_dumps(q, JSON_COMPACT);
    json_decref(q);
    int st = cli__http(&u, "POST", "/api/warehouse/sql", token, text, &body);
    free(text);
    free(token);
    json_t *j = st > 0 ? json_loads(buf_cstr(&body), 0, NULL) : NULL;
    buf_release(&body);
    if (st != 200) {
        const char *msg = json_string_value(json_object_get(j, "message"));
        const char *detail =
            json_string_value(json_object_get(json_object_get(j, "data"), "detail"));
        if (st < 0)
            fprintf(err, "tandem: cannot reach %s: %s\n", url_text, err_str(st));
        else
            fprintf(err, "tandem: %d %s%s%s\n", st, msg ? msg : "error", detail ? ": " : "",
                    detail ? detail : "");
        json_decref(j);
        return 1;
    }
    *resp_out = j;
    return 0;
}

static int query_direct(const struct cli_query_opts *o, json_t **resp_out, bool *held_out,
                        FILE *err)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/warehouse.duckdb", o->dir);
    *held_out = false;
    if (access(path, F_OK) != 0) {
        fprintf(err, "tandem: no warehouse at %s\n", path);
        return 1;
    }
    struct wh_cfg wc;
    wh_cfg_defaults(&wc);
    wc.path = path;
    wc.query_timeout_ms = o->timeout_ms;
    wc.query_max_rows = o->max_rows;
    struct wh *wh = NULL;
    if (wh_open(&wc, &wh) != 0) {
        const char *why = wh_errmsg(NULL);
        if (why && (strstr(why, "lock") || strstr(why, "Conflicting"))) {
            *held_out = true;
            return 1;
        }
        fprintf(err, "tandem: %s\n", why ? why : "cannot open the warehouse");
        return 1;
    }
    struct wh_conn *conn = NULL;
    struct wh_result res = {0};
    int status = 1;
    struct wh_query q = {.sql = o->sql, .params = NULL, .timeout_ms = 0, .max_rows = 0};
    if (wh_conn_open(wh, &conn) != 0) {
        fprintf(err, "tandem: %s\n", wh_errmsg(NULL));
    } else if (wh_query(conn, &q, &res) != 0) {
        fprintf(err, "tandem: %s\n", wh_errmsg(conn));
    } else {
        *resp_out = wh_result_to_json(&res);
        status = 0;
    }
    wh_result_release(&res);
    if (conn)
        wh_conn_close(conn);
    wh_close(wh);
    return status;
}

int cli_query(const struct cli_query_opts *o, FILE *out, FILE *err)
{
    json_t *resp = NULL;
    int status;
    if (o->url) {
        status = query_http(o, o->url, &resp, err);
    } else {
        bool held = false;
        status = query_direct(o, &resp, &held, err);
        if (held)
            status = query_http(o, o->default_url, &resp, err);
    }
    if (status == 0)
        cli_print_result(resp, o->format, out);
    json_decref(resp);
    return status;
}
