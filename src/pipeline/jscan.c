/* jscan.c - a validating scanner for the top level of a JSON object.
 *
 * The loader needs a dozen top-level members of each event and the nested objects as JSON
 * text. Building a jansson tree and dumping it again cost 15 us an event; this scanner checks
 * the whole text once (grammar, UTF-8, nesting) and hands back spans of the original bytes. */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "capture/capture.h"
#include "pipeline/pipeline_int.h"

/* the limit capture checks before it acknowledges an event */
#define MAX_DEPTH CAPTURE_MAX_DEPTH

struct scan {
    const unsigned char *p, *end, *start;
    char *reason;
    size_t reason_len;
};

static int fail(struct scan *s, const char *what)
{
    snprintf(s->reason, s->reason_len, "not JSON: %s at byte %zu", what, (size_t)(s->p - s->start));
    return ERR_INVALID;
}

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(struct scan *s, unsigned *out)
{
    if (s->end - s->p < 4)
        return fail(s, "short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return fail(s, "bad \\u escape");
    }
    s->p += 4;
    *out = v;
    return 0;
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

/* Skips the plain ASCII bytes at p, eight at a time while eight remain. */
static inline void plain_run(struct scan *s)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (s->end - s->p >= 8) {
        uint64_t x;
        memcpy(&x, s->p, 8);
        uint64_t m = special8(x);
        if (m) {
            s->p += (unsigned)__builtin_ctzll(m) >> 3;
            return;
        }
        s->p += 8;
    }
#endif
    (void)s;
}

/* At the opening quote; leaves p after the closing one. */
static int string(struct scan *s, const char **body, size_t *body_len, bool *escaped)
{
    s->p++;
    const unsigned char *b = s->p;
    bool esc = false;
    for (;;) {
        plain_run(s);
        if (s->p >= s->end)
            break;
        unsigned char c = *s->p;
        if (c == '"') {
            if (body) {
                *body = (const char *)b;
                *body_len = (size_t)(s->p - b);
                *escaped = esc;
            }
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return fail(s, "control character in a string");
        if (c == '\\') {
            esc = true;
            s->p++;
            if (s->p >= s->end)
                break;
            c = *s->p++;
            if (c == 'u') {
                unsigned u;
                if (hex4(s, &u) < 0)
                    return ERR_INVALID;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                        return fail(s, "lone surrogate");
                    s->p += 2;
                    if (hex4(s, &lo) < 0)
                        return ERR_INVALID;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail(s, "lone surrogate");
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return fail(s, "lone surrogate");
                }
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return fail(s, "bad escape");
            }
            continue;
        }
        if (c < 0x80) {
            s->p++;
            continue;
        }
        size_t n = str_utf8_seq(s->p, (size_t)(s->end - s->p));
        if (!n)
            return fail(s, "invalid UTF-8");
        s->p += n;
    }
    return fail(s, "unterminated string");
}

static int number(struct scan *s)
{
    const unsigned char *q = s->p;
    if (q < s->end && *q == '-')
        q++;
    if (q < s->end && *q == '0')
        q++;
    else if (q < s->end && *q >= '1' && *q <= '9')
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    else
        return fail(s, "bad number");
    if (q < s->end && *q == '.') {
        q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return fail(s, "bad number");
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < s->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return fail(s, "bad number");
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    s->p = q;
    return 0;
}

static int literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "unexpected character");
    s->p += n;
    return 0;
}

static int value(struct scan *s, int depth);

static int container(struct scan *s, int depth, bool object)
{
    if (depth > MAX_DEPTH)
        return fail(s, "nested too deeply");
    char close = object ? '}' : ']';
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        if (object) {
            if (s->p >= s->end || *s->p != '"')
                return fail(s, "expected a key");
            if (string(s, NULL, NULL, NULL) < 0)
                return ERR_INVALID;
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                return fail(s, "expected ':'");
            s->p++;
            ws(s);
        }
        if (value(s, depth + 1) < 0)
            return ERR_INVALID;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        return fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int value(struct scan *s, int depth)
{
    if (s->p >= s->end)
        return fail(s, "unexpected end");
    switch (*s->p) {
    case '{': return container(s, depth, true);
    case '[': return container(s, depth, false);
    case '"': return string(s, NULL, NULL, NULL);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default: return number(s);
    }
}

int pipeline__scan_object(const char *text, size_t len, struct pipeline__member *out, size_t max,
                          size_t *n_out, char *reason, size_t reason_len)
{
    struct scan s = {(const unsigned char *)text, (const unsigned char *)text + len,
                     (const unsigned char *)text, reason, reason_len};
    size_t n = 0;
    *n_out = 0;
    ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        /* say "not an object" only for valid JSON of another kind */
        if (value(&s, 1) < 0)
            return ERR_INVALID;
        ws(&s);
        if (s.p != s.end)
            return fail(&s, "trailing characters");
        snprintf(reason, reason_len, "not a JSON object");
        return ERR_INVALID;
    }
    s.p++;
    ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
        goto done;
    }
    for (;;) {
        struct pipeline__member m = {0};
        bool kesc = false;
        if (s.p >= s.end || *s.p != '"')
            return fail(&s, "expected a key");
        if (string(&s, &m.key, &m.key_len, &kesc) < 0)
            return ERR_INVALID;
        ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return fail(&s, "expected ':'");
        s.p++;
        ws(&s);
        if (s.p >= s.end)
            return fail(&s, "unexpected end");
        const unsigned char *v = s.p;
        char c = (char)*s.p;
        if (c == '"') {
            if (string(&s, &m.val, &m.val_len, &m.escaped) < 0)
                return ERR_INVALID;
            m.type = 's';
        } else {
            if (value(&s, 1) < 0)
                return ERR_INVALID;
            m.val = (const char *)v;
            m.val_len = (size_t)(s.p - v);
            m.type = c == '{'   ? 'o'
                     : c == '[' ? 'a'
                     : c == 't' ? 't'
                     : c == 'f' ? 'f'
                     : c == 'n' ? 'z'
                                : 'n';
        }
        m.key_escaped = kesc;
        if (n == max) {
            snprintf(reason, reason_len, "more than %zu members", max);
            return ERR_LIMIT;
        }
        out[n++] = m;
        ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            ws(&s);
            continue;
        }
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        return fail(&s, "expected ',' or '}'");
    }
done:
    ws(&s);
    if (s.p != s.end)
        return fail(&s, "trailing characters");
    *n_out = n;
    return 0;
}

static void put_utf8(char *o, size_t *k, unsigned cp)
{
    if (cp < 0x80) {
        o[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*k)++] = (char)(0xC0 | cp >> 6);
        o[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        o[(*k)++] = (char)(0xE0 | cp >> 12);
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        o[(*k)++] = (char)(0xF0 | cp >> 18);
        o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static unsigned hexval(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* The span was validated by pipeline__scan_object. */
int pipeline__unescape(const char *s, size_t len, struct arena *a, char **out)
{
    char *o = arena_alloc(a, len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') {
            o[k++] = s[i];
            continue;
        }
        char c = s[++i];
        switch (c) {
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            unsigned cp = hexval(s + i + 1);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo = hexval(s + i + 3);
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return ERR_INVALID;
            put_utf8(o, &k, cp);
            break;
        }
        default: o[k++] = c; break; /* " \ / */
        }
    }
    o[k] = 0;
    *out = o;
    return 0;
}
