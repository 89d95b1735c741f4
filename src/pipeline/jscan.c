/* jscan.c - the loader's reading of an event's top-level JSON object.
 *
 * The loader needs a dozen top-level members of each event and the nested objects as JSON
 * text. Building a jansson tree and dumping it again cost 15 us an event; core/jscan checks
 * the whole text once (grammar, UTF-8, nesting) and this hands back spans of the original
 * bytes, with the reason for a rejection. */
#include <string.h>

#include "capture/capture.h"
#include "core/jscan.h"
#include "pipeline/pipeline_int.h"

static int fail(const struct jscan *s, const char *why, char *reason, size_t reason_len)
{
    snprintf(reason, reason_len, "not JSON: %s at byte %zu", why ? why : s->why, s->i);
    return ERR_INVALID;
}

int pipeline__scan_object(const char *text, size_t len, struct pipeline__member *out, size_t max,
                          size_t *n_out, char *reason, size_t reason_len)
{
    /* the depth capture checks before it acknowledges an event; \u0000 is refused only where a
     * member is read (pipeline__unescape) */
    struct jscan s = {.p = text, .n = len, .depth_max = CAPTURE_MAX_DEPTH, .allow_nul = true};
    enum jscan_kind kind;
    struct str raw;
    size_t n = 0;
    *n_out = 0;
    if (jscan_peek(&s) != '{') {
        /* say "not an object" only for valid JSON of another kind */
        if (!jscan_value(&s, &kind, &raw))
            return fail(&s, NULL, reason, reason_len);
        if (jscan_peek(&s), s.i != s.n)
            return fail(&s, "trailing characters", reason, reason_len);
        snprintf(reason, reason_len, "not a JSON object");
        return ERR_INVALID;
    }
    s.i++;
    if (!jscan_eat(&s, '}')) {
        do {
            struct pipeline__member m = {0};
            struct str k;
            if (jscan_peek(&s) != '"')
                return fail(&s, "expected a key", reason, reason_len);
            if (!jscan_string(&s, &k, &m.key_escaped))
                return fail(&s, NULL, reason, reason_len);
            if (!jscan_eat(&s, ':'))
                return fail(&s, "expected ':'", reason, reason_len);
            bool str = jscan_peek(&s) == '"';
            if (str ? !jscan_string(&s, &raw, &m.escaped) : !jscan_value(&s, &kind, &raw))
                return fail(&s, NULL, reason, reason_len);
            static const char types[] = {
                [JSCAN_OBJECT] = 'o', [JSCAN_ARRAY] = 'a', [JSCAN_NUMBER] = 'n',
                [JSCAN_TRUE] = 't',   [JSCAN_FALSE] = 'f', [JSCAN_NULL] = 'z'};
            m.type = str ? 's' : types[kind];
            m.key = k.ptr;
            m.key_len = k.len;
            m.val = raw.ptr;
            m.val_len = raw.len;
            if (n == max) {
                snprintf(reason, reason_len, "more than %zu members", max);
                return ERR_LIMIT;
            }
            out[n++] = m;
        } while (jscan_eat(&s, ','));
        if (!jscan_eat(&s, '}'))
            return fail(&s, "expected ',' or '}'", reason, reason_len);
    }
    if (jscan_peek(&s), s.i != s.n)
        return fail(&s, "trailing characters", reason, reason_len);
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
