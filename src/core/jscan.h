/* jscan.h - a validating JSON scanner over text in place (no tree is built).
 *
 * For hot paths that read a known shape of JSON and copy parts of it verbatim (the loader's
 * events, the ML module's predict requests, the predictions log records): each call checks the
 * grammar of what it steps over as strictly as jansson does (UTF-8, escapes, no \u0000 unless
 * allowed, paired surrogates, number syntax) and returns false where jansson would refuse the
 * text, so a caller can fall back to jansson for its error message; jscan_string and
 * jscan_value also leave the reason in why and its offset in i. Strings are stepped over eight
 * plain bytes at a time. The text need not be NUL-terminated. A position is an index into
 * p[0..n). */
#ifndef TANDEM_CORE_JSCAN_H
#define TANDEM_CORE_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/str.h"

enum jscan_kind {
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL
};

struct jscan {
    const char *p;
    size_t n, i;
    int depth_max;   /* the deepest nesting jscan_value accepts; 0: 512 */
    bool allow_nul;  /* accept \u0000 in strings (jansson refuses it) */
    const char *why; /* after a false return: what was wrong, at byte i (a static string) */
};

/* Skips white space; returns the next byte, or 0 at the end. */
static inline char jscan_peek(struct jscan *s)
{
    while (s->i < s->n) {
        char c = s->p[s->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return c;
        s->i++;
    }
    return 0;
}

/* Skips white space; whether the text ends there (a NUL byte is not an end). */
static inline bool jscan_end(struct jscan *s)
{
    jscan_peek(s);
    return s->i == s->n;
}

/* Consumes c after white space; false when the next byte is not c. */
static inline bool jscan_eat(struct jscan *s, char c)
{
    if (jscan_peek(s) != c)
        return false;
    s->i++;
    return true;
}
/* Steps over one string (the next byte must be '"'); *inner gets the bytes between the quotes
 * as written and *escaped whether they hold a backslash escape. */
bool jscan_string(struct jscan *s, struct str *inner, bool *escaped);
/* Steps over one value of any kind (nesting at most depth_max deep); *kind gets its kind and
 * *raw its text as written (no surrounding white space). What follows it is not looked at:
 * "12abc" is the number 12 followed by a byte that no caller accepts. */
bool jscan_value(struct jscan *s, enum jscan_kind *kind, struct str *raw);
/* The number text t (JSON grammar, checked by jscan_value) as the nearest double, or false
 * when jansson would refuse it (an integer outside int64, a real that overflows). */
bool jscan_number(struct str t, double *out);

#endif
