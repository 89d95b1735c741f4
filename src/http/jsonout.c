/* jsonout.c - compact JSON text of a jansson value for replies, byte for byte what
 * json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY) writes, without
 * its costs: jansson 2.14 formats every container's address with snprintf and keeps it in a
 * hash table (loop detection) and appends through a callback; that was a third of the CPU of
 * a 30-record list reply. Anything this writer is not sure to write the same way (a string
 * that is not valid UTF-8, a real that is not finite, nesting past HTTP_JSON_MAX_DEPTH, which
 * is where a reference loop ends up) makes it give up, and the caller falls back to jansson. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "http/http_int.h"

static int put_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    buf_putc(b, '"');
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = str_utf8_seq(p + i, n - i);
            if (k == 0)
                return -1;
            run += k;
            i += k;
            continue;
        }
        buf_append(b, p + i - run, run);
        run = 0;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        buf_append(b, esc, el);
        i++;
    }
    buf_append(b, p + n - run, run);
    buf_putc(b, '"');
    return 0;
}

/* jansson's jsonp_dtostr with precision 15: %.15g, ".0" when it would read as an integer,
 * no '+' and no leading zeros in the exponent. */
static int put_real(struct buf *b, double d)
{
    if (!isfinite(d))
        return -1;
    char t[64];
    int len = snprintf(t, sizeof(t), "%.15g", d);
    if (len < 0 || (size_t)len >= sizeof(t) - 3)
        return -1;
    if (!strchr(t, '.') && !strchr(t, 'e')) {
        memcpy(t + len, ".0", 3);
        len += 2;
    }
    char *e = strchr(t, 'e');
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(t + len - end) + 1);
            len -= (int)(end - start);
        }
    }
    buf_append(b, t, (size_t)len);
    return 0;
}

static int put_value(struct buf *b, const json_t *v, int depth)
{
    if (depth > HTTP_JSON_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        buf_putc(b, '{');
        const char *key;
        size_t key_len;
        json_t *item;
        bool first = true;
        json_object_keylen_foreach((json_t *)v, key, key_len, item)
        {
            if (!first)
                buf_putc(b, ',');
            first = false;
            if (put_string(b, key, key_len) != 0)
                return -1;
            buf_putc(b, ':');
            if (put_value(b, item, depth + 1) != 0)
                return -1;
        }
        buf_putc(b, '}');
        return 0;
    }
    case JSON_ARRAY: {
        buf_putc(b, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_putc(b, ',');
            if (put_value(b, json_array_get(v, i), depth + 1) != 0)
                return -1;
        }
        buf_putc(b, ']');
        return 0;
    }
    case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        char t[32];
        int len = snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_append(b, t, (size_t)len);
        return 0;
    }
    case JSON_REAL: return put_real(b, json_real_value(v));
    case JSON_TRUE: buf_append(b, "true", 4); return 0;
    case JSON_FALSE: buf_append(b, "false", 5); return 0;
    case JSON_NULL: buf_append(b, "null", 4); return 0;
    }
    return -1;
}

int http__json_render(struct buf *out, const json_t *v)
{
    size_t start = out->len;
    if (!v || put_value(out, v, 0) != 0) {
        out->len = start;
        return ERR_INVALID;
    }
    return 0;
}
