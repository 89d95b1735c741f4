/* jscan.c - the validating in-place JSON scanner (jscan.h). */
#include "core/jscan.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX 512

static bool fail(struct jscan *s, size_t at, const char *why)
{
    s->i = at;
    s->why = why;
    return false;
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

#define BYTES(c) (0x0101010101010101ULL * (uint64_t)(c))

/* Bytes of x (eight string bytes, the first in the low byte) that need a closer look: '"',
 * '\\', a control character or a non-ASCII byte. 0 when there is none; otherwise the lowest
 * flagged byte is the first such byte (the zero-byte tests can also flag bytes above a true
 * match, never below one). */
static inline uint64_t special8(uint64_t x)
{
    uint64_t q = x ^ BYTES('"'), b = x ^ BYTES('\\');
    return (((q - BYTES(1)) & ~q) | ((b - BYTES(1)) & ~b) | ((x - BYTES(0x20)) & ~x) | x) &
           BYTES(0x80);
}

/* The index of the first byte from i on that is not plain ASCII, eight at a time while eight
 * remain. */
static inline size_t plain_run(const char *p, size_t i, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n - i >= 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t m = special8(x);
        if (m)
            return i + ((unsigned)__builtin_ctzll(m) >> 3);
        i += 8;
    }
#endif
    (void)p;
    (void)n;
    return i;
}

bool jscan_string(struct jscan *s, struct str *inner, bool *escaped)
{
    if (jscan_peek(s) != '"')
        return fail(s, s->i, "expected a string");
    const char *p = s->p;
    size_t i = s->i + 1, n = s->n;
    bool esc = false;
    for (;;) {
        i = plain_run(p, i, n);
        if (i >= n)
            return fail(s, n, "unterminated string");
        unsigned char c = (unsigned char)p[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(s, i, "control character in a string");
        if (c < 0x80 && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = str_utf8_seq((const unsigned char *)p + i, n - i);
            if (k == 0)
                return fail(s, i, "invalid UTF-8");
            i += k;
            continue;
        }
        esc = true;
        if (i + 1 >= n)
            return fail(s, n, "unterminated string");
        char e = p[i + 1];
        i += 2;
        if (e != 'u') {
            if (!strchr("\"\\/bfnrt", e) || !e)
                return fail(s, i, "bad escape");
            continue;
        }
        if (n - i < 4)
            return fail(s, i, "short \\u escape");
        int u = hex4(p + i);
        if (u < 0)
            return fail(s, i, "bad \\u escape");
        i += 4;
        if (u == 0 && !s->allow_nul)
            return fail(s, i, "\\u0000 in a string");
        if (u >= 0xDC00 && u <= 0xDFFF)
            return fail(s, i, "lone surrogate");
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (n - i < 6 || p[i] != '\\' || p[i + 1] != 'u')
                return fail(s, i, "lone surrogate");
            int lo = hex4(p + i + 2);
            if (lo < 0)
                return fail(s, i + 2, "bad \\u escape");
            i += 6;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return fail(s, i, "lone surrogate");
        }
    }
    inner->ptr = p + s->i + 1;
    inner->len = i - (s->i + 1);
    *escaped = esc;
    s->i = i + 1;
    return true;
}

/* The index after the digits from i on (i when there is none). */
static size_t digits(const char *p, size_t i, size_t n)
{
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    return i;
}

/* A number that ends where the grammar says; what follows is the caller's to check */
static bool number(struct jscan *s)
{
    const char *p = s->p;
    size_t i = s->i, n = s->n, d;
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0')
        i++;
    else if ((d = digits(p, i, n)) > i)
        i = d;
    else
        return fail(s, s->i, "bad number");
    if (i < n && p[i] == '.') {
        if ((d = digits(p, i + 1, n)) == i + 1)
            return fail(s, s->i, "bad number");
        i = d;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i += i + 1 < n && (p[i + 1] == '+' || p[i + 1] == '-') ? 2 : 1;
        if ((d = digits(p, i, n)) == i)
            return fail(s, s->i, "bad number");
        i = d;
    }
    s->i = i;
    return true;
}

static bool word(struct jscan *s, const char *w, size_t len)
{
    if (s->n - s->i < len || memcmp(s->p + s->i, w, len) != 0)
        return fail(s, s->i, "unexpected character");
    s->i += len;
    return true;
}

static bool value(struct jscan *s, enum jscan_kind *kind, int depth)
{
    char c = jscan_peek(s);
    struct str t;
    bool esc, obj = c == '{';
    switch (c) {
    case '{':
    case '[':
        *kind = obj ? JSCAN_OBJECT : JSCAN_ARRAY;
        if (depth >= (s->depth_max ? s->depth_max : DEPTH_MAX))
            return fail(s, s->i, "nested too deeply");
        s->i++;
        if (jscan_eat(s, obj ? '}' : ']'))
            return true;
        do {
            enum jscan_kind k;
            if (obj && jscan_peek(s) != '"')
                return fail(s, s->i, "expected a key");
            if (obj && !jscan_string(s, &t, &esc))
                return false;
            if (obj && !jscan_eat(s, ':'))
                return fail(s, s->i, "expected ':'");
            if (!value(s, &k, depth + 1))
                return false;
        } while (jscan_eat(s, ','));
        return jscan_eat(s, obj ? '}' : ']') ||
               fail(s, s->i, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    case '"': *kind = JSCAN_STRING; return jscan_string(s, &t, &esc);
    case 't': *kind = JSCAN_TRUE; return word(s, "true", 4);
    case 'f': *kind = JSCAN_FALSE; return word(s, "false", 5);
    case 'n': *kind = JSCAN_NULL; return word(s, "null", 4);
    default: *kind = JSCAN_NUMBER; return s->i < s->n ? number(s) : fail(s, s->i, "unexpected end");
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
