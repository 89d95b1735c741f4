/* scan.c - a one-pass JSON validator that leaves a token tape, for capture's fast path.
 *
 * It accepts a subset of what jansson accepts (same grammar, same string rules: UTF-8 checked,
 * no control characters, no \u0000, surrogates paired) and declines, rather than judges, the
 * rest: duplicate or escaped object keys, deep nesting, numbers whose range only a real
 * conversion can tell, huge objects. Declining is never an answer to the client: the caller
 * then parses the body with jansson, which gives the verdict and the message. So the one
 * property this file must keep is: whatever it accepts, jansson accepts with the same meaning. */
#include <string.h>

#include "capture/capture_int.h"

#define SCAN_MAX_DEPTH 64 /* deeper documents go the slow way (jansson allows 2048) */
/* the body's root is level 1, so what this accepts nests no deeper than capture allows */
_Static_assert(SCAN_MAX_DEPTH <= CAPTURE_MAX_DEPTH, "the fast path accepts what capture accepts");
#define SCAN_MAX_KEYS 64       /* objects with more keys are not checked for duplicates here */
#define SCAN_MAX_INT_DIGITS 18 /* every 18-digit integer fits in int64 */
#define SCAN_MAX_EXP 300       /* |exponent| + digits below this cannot overflow a double */

#define ONES 0x0101010101010101ull

struct scanner {
    const char *s, *p, *end;
    struct capture__tape *tp;
    int depth;
};

static void grow(struct capture__tape *tp)
{
    tp->cap = tp->cap ? tp->cap * 2 : 256;
    tp->toks = xrealloc(tp->toks, tp->cap * sizeof(*tp->toks));
}

static inline size_t push(struct scanner *sc, enum capture__tok_type type)
{
    struct capture__tape *tp = sc->tp;
    if (tp->n == tp->cap)
        grow(tp);
    struct capture__tok *t = &tp->toks[tp->n];
    t->start = (uint32_t)(sc->p - sc->s);
    t->len = 0;
    t->next = 0;
    t->type = (uint8_t)type;
    t->escaped = 0;
    return tp->n++;
}

static void close_tok(struct scanner *sc, size_t i)
{
    struct capture__tok *t = &sc->tp->toks[i];
    t->len = (uint32_t)(sc->p - sc->s) - t->start;
    t->next = (uint32_t)sc->tp->n;
}

static void skip_ws_run(struct scanner *sc)
{
    const char *p = sc->p;
    while (p < sc->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p != sc->p)
        sc->tp->spaced = true;
    sc->p = p;
}

/* Most bodies have no whitespace at all: one compare per token then. */
static inline void skip_ws(struct scanner *sc)
{
    if (sc->p < sc->end && (unsigned char)*sc->p <= ' ')
        skip_ws_run(sc);
}

static int hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static int scan_string(struct scanner *sc)
{
    size_t i = push(sc, CAPTURE__TOK_STRING);
    const unsigned char *p = (const unsigned char *)sc->p + 1;
    const unsigned char *end = (const unsigned char *)sc->end;
    bool escaped = false;
    for (;;) {
        /* eight bytes at a time while none is a quote, a backslash, a control byte or
         * non-ASCII; then byte by byte up to the first that is */
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t q = v ^ (ONES * '"'), bs = v ^ (ONES * '\\');
            uint64_t m = ((q - ONES) & ~q) | ((bs - ONES) & ~bs) | ((v - ONES * 0x20) & ~v) | v;
            m &= ONES * 0x80;
            if (m) {
                p += __builtin_ctzll(m) / 8; /* the lowest flagged byte is a true hit */
                break;
            }
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return -1;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            size_t n = str_utf8_seq(p, (size_t)(end - p));
            if (!n)
                return -1;
            p += n;
            continue;
        }
        /* a backslash */
        escaped = true;
        if (end - p < 2)
            return -1;
        c = p[1];
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
            c == 't') {
            p += 2;
            continue;
        }
        unsigned cp, lo;
        if (c != 'u' || hex4((const char *)p + 2, (const char *)end, &cp) < 0 || cp == 0)
            return -1;
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return -1;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                hex4((const char *)p + 2, (const char *)end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                return -1;
            p += 6;
        }
    }
    sc->p = (const char *)p + 1;
    close_tok(sc, i);
    sc->tp->toks[i].escaped = escaped;
    return 0;
}

static int scan_number(struct scanner *sc)
{
    size_t i = push(sc, CAPTURE__TOK_NUMBER);
    const char *p = sc->p, *end = sc->end;
    if (p < end && *p == '-')
        p++;
    const char *digits = p;
    if (p < end && *p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return -1;
    } else {
        if (p >= end || *p < '1' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n_int = (size_t)(p - digits);
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    long exp = 0;
    bool neg_exp = false;
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            neg_exp = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 100000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
    }
    /* jansson rejects integers outside int64 and reals that overflow a double; leave any
     * number whose range is not obvious to it */
    if (!real && n_int > SCAN_MAX_INT_DIGITS)
        return -1;
    if (real && (long)n_int + (neg_exp ? -exp : exp) > SCAN_MAX_EXP) /* underflow is fine */
        return -1;
    sc->p = p;
    close_tok(sc, i);
    return 0;
}

static int scan_literal(struct scanner *sc, const char *word, size_t len,
                        enum capture__tok_type type)
{
    if ((size_t)(sc->end - sc->p) < len || memcmp(sc->p, word, len) != 0)
        return -1;
    size_t i = push(sc, type);
    sc->p += len;
    close_tok(sc, i);
    return 0;
}

/* Keys are unescaped (checked when read): equal text means equal keys. */
static bool has_duplicate_key(const struct scanner *sc, size_t obj)
{
    const struct capture__tok *t = sc->tp->toks;
    size_t end = t[obj].next, n = 0;
    for (size_t k = obj + 1; k < end; k = t[k + 1].next) {
        if (++n > SCAN_MAX_KEYS)
            return true;
        for (size_t j = t[k + 1].next; j < end; j = t[j + 1].next)
            if (t[j].len == t[k].len &&
                memcmp(sc->s + t[j].start, sc->s + t[k].start, t[k].len) == 0)
                return true;
    }
    return false;
}

static int scan_value(struct scanner *sc);

static int scan_object(struct scanner *sc)
{
    size_t i = push(sc, CAPTURE__TOK_OBJECT);
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        close_tok(sc, i);
        return 0;
    }
    for (;;) {
        if (sc->p >= sc->end || *sc->p != '"' || scan_string(sc) < 0)
            return -1;
        if (sc->tp->toks[sc->tp->n - 1].escaped)
            return -1;
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ':')
            return -1;
        sc->p++;
        skip_ws(sc);
        if (scan_value(sc) < 0)
            return -1;
        skip_ws(sc);
        if (sc->p >= sc->end)
            return -1;
        if (*sc->p == '}')
            break;
        if (*sc->p != ',')
            return -1;
        sc->p++;
        skip_ws(sc);
    }
    sc->p++;
    close_tok(sc, i);
    return has_duplicate_key(sc, i) ? -1 : 0;
}

static int scan_array(struct scanner *sc)
{
    size_t i = push(sc, CAPTURE__TOK_ARRAY);
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        close_tok(sc, i);
        return 0;
    }
    for (;;) {
        if (scan_value(sc) < 0)
            return -1;
        skip_ws(sc);
        if (sc->p >= sc->end)
            return -1;
        if (*sc->p == ']')
            break;
        if (*sc->p != ',')
            return -1;
        sc->p++;
        skip_ws(sc);
    }
    sc->p++;
    close_tok(sc, i);
    return 0;
}

static int scan_value(struct scanner *sc)
{
    if (sc->p >= sc->end)
        return -1;
    int rc;
    switch (*sc->p) {
    case '{':
    case '[':
        if (++sc->depth > SCAN_MAX_DEPTH)
            return -1;
        rc = *sc->p == '{' ? scan_object(sc) : scan_array(sc);
        sc->depth--;
        return rc;
    case '"': return scan_string(sc);
    case 't': return scan_literal(sc, "true", 4, CAPTURE__TOK_TRUE);
    case 'f': return scan_literal(sc, "false", 5, CAPTURE__TOK_FALSE);
    case 'n': return scan_literal(sc, "null", 4, CAPTURE__TOK_NULL);
    default: return scan_number(sc);
    }
}

int capture__scan(const char *s, size_t len, struct capture__tape *tp)
{
    tp->n = 0;
    tp->spaced = false;
    if (len >= UINT32_MAX)
        return ERR_INVALID;
    struct scanner sc = {.s = s, .p = s, .end = s + len, .tp = tp};
    skip_ws(&sc);
    /* like json_loadb() without JSON_DECODE_ANY: an object or an array, then only space */
    if (sc.p >= sc.end || (*sc.p != '{' && *sc.p != '['))
        return ERR_INVALID;
    if (scan_value(&sc) < 0)
        return ERR_INVALID;
    skip_ws(&sc);
    return sc.p == sc.end ? 0 : ERR_INVALID;
}

void capture__tape_release(struct capture__tape *tp)
{
    free(tp->toks);
    memset(tp, 0, sizeof(*tp));
}

size_t capture__tok_get(const struct capture__tape *tp, const char *s, size_t obj, const char *key)
{
    const struct capture__tok *t = tp->toks;
    size_t klen = strlen(key);
    for (size_t k = obj + 1; k < t[obj].next; k = t[k + 1].next)
        if (t[k].len == klen + 2 && memcmp(s + t[k].start + 1, key, klen) == 0)
            return k + 1;
    return 0;
}
