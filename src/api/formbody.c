/* formbody.c - record bodies sent as multipart/form-data or application/x-www-form-urlencoded
 * (the JS SDK sends FormData as multipart), turned into the same JSON object a JSON body
 * gives: values inferred as PocketBase does ("true"/"false" become bools, numbers in their
 * canonical form become numbers, anything else stays a string), repeated keys become arrays,
 * and the special part "@jsonPayload" holds a JSON object merged as it is. File parts are
 * handed to the caller (files.c stores them). */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "api/records_int.h"

/* A number whose shortest fixed-point form is exactly s (Go's FormatFloat(v, 'f', -1, 64)). */
static bool canonical_number(const char *s, double *out)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p) || (p[0] == '0' && isdigit((unsigned char)p[1])))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    int frac = 0;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)p[frac]))
            frac++;
        if (frac == 0 || p[frac - 1] == '0')
            return false;
        p += frac;
    }
    if (*p)
        return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return false;
    char buf[400];
    /* the input must be the shortest form that reads back as v */
    for (int k = 0; k <= frac; k++) {
        snprintf(buf, sizeof(buf), "%.*f", k, v);
        if (strtod(buf, NULL) == v) {
            *out = v;
            return k == frac && strcmp(buf, s) == 0;
        }
    }
    return false;
}

static json_t *infer(const char *v, size_t len)
{
    if (len == 4 && memcmp(v, "true", 4) == 0)
        return json_true();
    if (len == 5 && memcmp(v, "false", 5) == 0)
        return json_false();
    char tmp[64];
    double d = 0;
    if (len < sizeof(tmp)) {
        memcpy(tmp, v, len);
        tmp[len] = '\0';
        if (canonical_number(tmp, &d))
            return d == floor(d) && fabs(d) < 9007199254740992.0 ? json_integer((json_int_t)d)
                                                                 : json_real(d);
    }
    return json_stringn(v, len);
}

/* body[key] = value, or appended when the key repeats. TAKES value. */
static void add_value(json_t *body, const char *key, json_t *value)
{
    json_t *cur = json_object_get(body, key);
    if (!cur) {
        json_object_set_new(body, key, value);
    } else if (json_is_array(cur)) {
        json_array_append_new(cur, value);
    } else {
        json_t *arr = json_pack("[O]", cur);
        json_array_append_new(arr, value);
        json_object_set_new(body, key, arr);
    }
}

size_t api__json_top_keys(struct str text, size_t max)
{
    size_t i = 0, n = 0, depth = 0;
    while (i < text.len && strchr(" \t\r\n", text.ptr[i]))
        i++;
    if (i == text.len || text.ptr[i] != '{')
        return 0;
    for (; i < text.len && n <= max; i++) {
        char ch = text.ptr[i];
        if (ch == '"') { /* a string: skip it with its escapes */
            for (i++; i < text.len && text.ptr[i] != '"'; i++)
                if (text.ptr[i] == '\\')
                    i++;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth-- == 0)
                break;
        } else if (ch == ':' && depth == 1) {
            n++; /* every key of the outer object is followed by one */
        }
    }
    return n;
}

static int add_json_payload(json_t *body, const char *text, size_t len, size_t max_keys)
{
    if (api__json_top_keys((struct str){text, len}, max_keys) > max_keys)
        return ERR_LIMIT;
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ERR_INVALID;
    }
    json_object_update(body, j);
    json_decref(j);
    return 0;
}

static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    return m == 0 ? NULL : memmem(hay, n, needle, m);
}

/* The value of param (name= or filename=) in a Content-Disposition line, into out. */
static bool disposition_param(const char *line, size_t len, const char *param, char *out,
                              size_t out_len)
{
    size_t pl = strlen(param);
    for (size_t i = 0; i + pl + 1 < len; i++) {
        if ((i == 0 || line[i - 1] == ' ' || line[i - 1] == ';') &&
            strncasecmp(line + i, param, pl) == 0 && line[i + pl] == '=') {
            const char *v = line + i + pl + 1;
            size_t rest = len - (size_t)(v - line);
            size_t k = 0;
            if (rest && *v == '"') {
                v++;
                rest--;
                while (k < rest && v[k] != '"')
                    k++;
            } else {
                while (k < rest && v[k] != ';' && v[k] != ' ')
                    k++;
            }
            if (k >= out_len)
                return false;
            memcpy(out, v, k);
            out[k] = '\0';
            return true;
        }
    }
    return false;
}

void api__uploads_add(struct api_uploads *ups, const char *key, const char *filename,
                      const char *data, size_t len)
{
    if (ups->n == ups->cap) {
        size_t cap = ups->cap ? ups->cap * 2 : 4;
        struct api_upload *v = arena_alloc(ups->arena, cap * sizeof(*v));
        if (ups->n)
            memcpy(v, ups->v, ups->n * sizeof(*v));
        ups->v = v;
        ups->cap = cap;
    }
    ups->v[ups->n++] = (struct api_upload){arena_strdup(ups->arena, key),
                                           arena_strdup(ups->arena, filename), data, len};
}

int api__parse_multipart(const char *ctype, struct str body, size_t max_parts, json_t *out,
                         struct api_uploads *ups)
{
    size_t n_parts = 0;
    char boundary[256];
    const char *b = NULL;
    for (const char *q = ctype; *q && !b; q++)
        if (strncasecmp(q, "boundary=", 9) == 0)
            b = q;
    if (!b)
        return ERR_INVALID;
    b += 9;
    size_t bl = 0;
    if (*b == '"') {
        b++;
        while (b[bl] && b[bl] != '"')
            bl++;
    } else {
        while (b[bl] && b[bl] != ';' && b[bl] != ' ')
            bl++;
    }
    if (bl == 0 || bl + 4 >= sizeof(boundary))
        return ERR_INVALID;
    boundary[0] = '-';
    boundary[1] = '-';
    memcpy(boundary + 2, b, bl);
    size_t dl = bl + 2;
    boundary[dl] = '\0';

    const char *p = find_bytes(body.ptr, body.len, boundary, dl);
    const char *end = body.ptr + body.len;
    if (!p)
        return ERR_INVALID;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 0; /* closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return ERR_INVALID;
        p += 2;
        if (++n_parts > max_parts)
            return ERR_LIMIT; /* before the part is read */
        const char *hend = find_bytes(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return ERR_INVALID;
        char name[256] = "", filename[256];
        bool is_file = false;
        for (const char *line = p; line < hend;) {
            const char *eol = find_bytes(line, (size_t)(hend - line), "\r\n", 2);
            size_t ll = eol ? (size_t)(eol - line) : (size_t)(hend - line);
            if (ll > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0) {
                if (!disposition_param(line, ll, "name", name, sizeof(name)))
                    return ERR_INVALID;
                is_file = disposition_param(line, ll, "filename", filename, sizeof(filename));
            }
            line += ll + 2;
        }
        const char *data = hend + 4;
        char delim[300];
        snprintf(delim, sizeof(delim), "\r\n%s", boundary);
        const char *next = find_bytes(data, (size_t)(end - data), delim, dl + 2);
        if (!next || !name[0])
            return ERR_INVALID;
        size_t vlen = (size_t)(next - data);
        if (strcmp(name, "@jsonPayload") == 0) {
            int rc = add_json_payload(out, data, vlen, max_parts);
            if (rc)
                return rc;
        } else if (!is_file) {
            add_value(out, name, infer(data, vlen));
        } else if (ups) {
            api__uploads_add(ups, name, filename, data, vlen);
        }
        if (json_object_size(out) > max_parts)
            return ERR_LIMIT;
        p = next + 2;
    }
}

static int parse_urlencoded(struct http_req *req, struct str body, size_t max_keys, json_t *out)
{
    struct http_kv *kv;
    size_t n = 1;
    for (size_t i = 0; i < body.len && n <= max_keys; i++)
        n += body.ptr[i] == '&';
    if (n > max_keys)
        return ERR_LIMIT; /* before anything is decoded */
    if (http_query_parse(http_req_arena(req), body.ptr, body.len, &kv, &n) != 0)
        return ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].key, "@jsonPayload") == 0) {
            int rc = add_json_payload(out, kv[i].value, strlen(kv[i].value), max_keys);
            if (rc)
                return rc;
        } else {
            add_value(out, kv[i].key, infer(kv[i].value, strlen(kv[i].value)));
        }
        if (json_object_size(out) > max_keys)
            return ERR_LIMIT;
    }
    return 0;
}

static void reply_too_many_keys(struct http_req *req, size_t max)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "The request body has too many keys (at most %zu).", max);
    http_reply_error(req, 400, msg, NULL);
}

json_t *api__json_body(struct http_req *req, struct api_env *env, bool allow_empty)
{
    size_t max = env->records.max_keys ? env->records.max_keys : API_RECORDS_MAX_KEYS;
    if (api__json_top_keys(http_req_body(req), max) > max) {
        reply_too_many_keys(req, max); /* before the parser builds them all */
        return NULL;
    }
    return http_req_json(req, allow_empty);
}

json_t *api__record_body(struct http_req *req, struct api_env *env, bool allow_empty)
{
    struct api_uploads ups = {.arena = http_req_arena(req)};
    return api__record_body_files(req, env, allow_empty, &ups);
}

json_t *api__record_body_files(struct http_req *req, struct api_env *env, bool allow_empty,
                               struct api_uploads *ups)
{
    const char *ctype = http_req_header(req, "Content-Type");
    bool multipart = ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0;
    bool urlenc = ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
    *ups = (struct api_uploads){.arena = http_req_arena(req)};
    if (!multipart && !urlenc) {
        json_t *j = api__json_body(req, env, allow_empty);
        if (json_is_object(j))
            json_object_del(j, STORE_BODY_UPLOADS);
        return j;
    }
    size_t max = env->records.max_keys ? env->records.max_keys : API_RECORDS_MAX_KEYS;
    json_t *out = json_object();
    api__arena_json(http_req_arena(req), out);
    struct str body = http_req_body(req);
    int rc = multipart ? api__parse_multipart(ctype, body, max, out, ups)
                       : parse_urlencoded(req, body, max, out);
    json_object_del(out, STORE_BODY_UPLOADS);
    if (rc == ERR_LIMIT) {
        reply_too_many_keys(req, max);
        return NULL;
    }
    if (rc) {
        http_reply_error(req, 400, "Failed to load the submitted data due to invalid formatting.",
                         NULL);
        return NULL;
    }
    return out;
}
