/* jscan.c - the validating in-place JSON scanner (jscan.h). */
#include "core/jscan.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX 512

char jscan_peek(struct jscan *s)
{
    while (s->i < s->n) {
        char c = s->p[s->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return c;
        s->i++;
    }
    return 0;
}

bool jscan_eat(struct jscan *s, char c)
{
    if (jscan_peek(s) != c)
        return false;
    s->i++;
    return true;
}

/* The 4 hex digits at p as a code unit, or -1. */
static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        int d = str_hex_digit(p[k]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

bool jscan_string(struct jscan *s, struct str *inner, bool *escaped)
{
    if (jscan_peek(s) != '"')
        return false;
    const char *p = s->p;
    size_t i = s->i + 1, n = s->n;
    bool esc = false;
    for (;;) {
        if (i >= n)
            return false;
        unsigned char c = (unsigned char)p[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return false;
        if (c < 0x80 && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = str_utf8_seq((const unsigned char *)p + i, n - i);
            if (k == 0)
                return false;
            i += k;
            continue;
        }
        esc = true;
        if (i + 1 >= n)
            return false;
        char e = p[i + 1];
        if (strchr("\"\\/bfnrt", e) && e) {
            i += 2;
            continue;
        }
        if (e != 'u' || i + 6 > n)
            return false;
        int u = hex4(p + i + 2);
        if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return false; /* \u0000 and a lone low surrogate are refused */
        i += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            int lo = i + 6 <= n && p[i] == '\\' && p[i + 1] == 'u' ? hex4(p + i + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return false;
            i += 6;
        }
    }
    inner->ptr = p + s->i + 1;
    inner->len = i - (s->i + 1);
    *escaped = esc;
    s->i = i + 1;
    return true;
}

static bool digits(struct jscan *s)
{
    size_t start = s->i;
    while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
        s->i++;
    return s->i > start;
}

static bool number(struct jscan *s)
{
    if (s->i < s->n && s->p[s->i] == '-')
        s->i++;
    if (s->i < s->n && s->p[s->i] == '0') {
        s->i++;
    } else if (!digits(s)) {
        return false;
    }
    if (s->i < s->n && s->p[s->i] == '.') {
        s->i++;
        if (!digits(s))
            return false;
    }
    if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
        s->i++;
        if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
            s->i++;
        if (!digits(s))
            return false;
    }
    /* "12abc" is not a number followed by something else */
    return s->i >= s->n ||
           !((s->p[s->i] >= 'a' && s->p[s->i] <= 'z') || (s->p[s->i] >= 'A' && s->p[s->i] <= 'Z') ||
             (s->p[s->i] >= '0' && s->p[s->i] <= '9') || s->p[s->i] == '.');
}

static bool word(struct jscan *s, const char *w, size_t len)
{
    if (s->n - s->i < len || memcmp(s->p + s->i, w, len) != 0)
        return false;
    s->i += len;
    return true;
}

static bool value(struct jscan *s, enum jscan_kind *kind, int depth)
{
    char c = jscan_peek(s);
    struct str t;
    bool esc;
    switch (c) {
    case '{':
        *kind = JSCAN_OBJECT;
        if (depth >= DEPTH_MAX)
            return false;
        s->i++;
        if (jscan_eat(s, '}'))
            return true;
        do {
            enum jscan_kind k;
            if (!jscan_string(s, &t, &esc) || !jscan_eat(s, ':') || !value(s, &k, depth + 1))
                return false;
        } while (jscan_eat(s, ','));
        return jscan_eat(s, '}');
    case '[':
        *kind = JSCAN_ARRAY;
        if (depth >= DEPTH_MAX)
            return false;
        s->i++;
        if (jscan_eat(s, ']'))
            return true;
        do {
            enum jscan_kind k;
            if (!value(s, &k, depth + 1))
                return false;
        } while (jscan_eat(s, ','));
        return jscan_eat(s, ']');
    case '"': *kind = JSCAN_STRING; return jscan_string(s, &t, &esc);
    case 't': *kind = JSCAN_TRUE; return word(s, "true", 4);
    case 'f': *kind = JSCAN_FALSE; return word(s, "false", 5);
    case 'n': *kind = JSCAN_NULL; return word(s, "null", 4);
    default: *kind = JSCAN_NUMBER; return (c == '-' || (c >= '0' && c <= '9')) && number(s);
    }
}

bool jscan_value(struct jscan *s, enum jscan_kind *kind, struct str *raw)
{
    jscan_peek(s);
    size_t start = s->i;
    if (!value(s, kind, 0))
        return false;
    raw->ptr = s->p + start;
    raw->len = s->i - start;
    return true;
}

/* 10^k for k <= 22: exact doubles */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

bool jscan_number(struct str t, double *out)
{
    const char *p = t.ptr, *end = t.ptr + t.len;
    bool neg = p < end && *p == '-';
    p += neg;
    uint64_t m = 0;
    int nd = 0, exp10 = 0;
    bool is_int = true;
    for (; p < end && *p >= '0' && *p <= '9'; p++, nd++)
        m = m * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        is_int = false;
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, nd++, exp10--)
            m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p < end) { /* an exponent: the slow path below */
        is_int = false;
        nd = 99;
    }
    if (is_int && nd > 18)
        return false; /* jansson's integers are int64: leave the exact verdict to it */
    /* Clinger's fast path: a mantissa below 2^53 times an exact power of ten is one
     * correctly rounded operation, the same double strtod gives */
    if (nd <= 15 || (nd <= 19 && m < (UINT64_C(1) << 53))) {
        if (exp10 >= -22) {
            double v = (double)m;
            v = exp10 < 0 ? v / pow10_exact[-exp10] : v;
            *out = neg ? -v : v;
            return true;
        }
    }
    char buf[64];
    char *heap = NULL, *s = buf;
    if (t.len >= sizeof(buf))
        s = heap = malloc(t.len + 1);
    if (!s)
        return false;
    memcpy(s, t.ptr, t.len);
    s[t.len] = '\0';
    errno = 0;
    double v = strtod(s, NULL);
    bool ok = !(errno == ERANGE && isinf(v));
    free(heap);
    *out = v;
    return ok;
}
