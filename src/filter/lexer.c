/* lexer.c - the filter scanner: bytes to tokens, following fexpr's rules (see docs/filter.md).
 * Errors name the 1-based character position where the bad token starts. */
#include <stdio.h>
#include <string.h>

#include "filter/filter_int.h"

size_t filter__pos(const char *src, size_t off)
{
    size_t n = 1;
    for (size_t i = 0; i < off; i++)
        if (((unsigned char)src[i] & 0xC0) != 0x80)
            n++;
    return n;
}

int filter__fail(const struct filter__errctx *e, int code, size_t off, const char *fmt, ...)
{
    if (!e->err)
        return code;
    char detail[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    e->err->code = code;
    if (off == (size_t)-1) {
        e->err->pos = 0;
        snprintf(e->err->msg, sizeof(e->err->msg), "invalid %s: %s", e->what, detail);
    } else {
        e->err->pos = filter__pos(e->src, off);
        snprintf(e->err->msg, sizeof(e->err->msg), "invalid %s at position %zu: %s", e->what,
                 e->err->pos, detail);
    }
    return code;
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_start(int c)
{
    return is_alpha(c) || c == '_' || c == '@' || c == '#';
}

static bool is_ident_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == ':';
}

static bool is_sign_char(int c)
{
    return c == '=' || c == '?' || c == '!' || c == '>' || c == '<' || c == '~';
}

/* A short printable description of the byte at p for messages: never echoes control or
 * non-ASCII bytes. */
static void describe_char(const char *p, char out[16])
{
    unsigned char c = (unsigned char)*p;
    if (c >= 0x21 && c < 0x7F && c != '"' && c != '\\')
        snprintf(out, 16, "'%c'", c);
    else if (c >= 0x80)
        snprintf(out, 16, "(non-ASCII)");
    else
        snprintf(out, 16, "0x%02X", c);
}

static const struct {
    const char *sign;
    enum filter_op op;
    bool any;
} SIGNS[] = {
    {"=", FILTER_OP_EQ, false},     {"!=", FILTER_OP_NEQ, false},   {">", FILTER_OP_GT, false},
    {">=", FILTER_OP_GTE, false},   {"<", FILTER_OP_LT, false},     {"<=", FILTER_OP_LTE, false},
    {"~", FILTER_OP_LIKE, false},   {"!~", FILTER_OP_NLIKE, false}, {"?=", FILTER_OP_EQ, true},
    {"?!=", FILTER_OP_NEQ, true},   {"?>", FILTER_OP_GT, true},     {"?>=", FILTER_OP_GTE, true},
    {"?<", FILTER_OP_LT, true},     {"?<=", FILTER_OP_LTE, true},   {"?~", FILTER_OP_LIKE, true},
    {"?!~", FILTER_OP_NLIKE, true},
};

struct toks {
    struct filter_tok *v;
    size_t n, cap;
};

static struct filter_tok *push(struct arena *a, struct toks *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct filter_tok *v = arena_alloc(a, cap * sizeof(*v));
        if (t->n)
            memcpy(v, t->v, t->n * sizeof(*v));
        t->v = v;
        t->cap = cap;
    }
    struct filter_tok *tok = &t->v[t->n++];
    memset(tok, 0, sizeof(*tok));
    return tok;
}

/* 'text' or "text": a quote preceded by a backslash does not close; afterwards every
 * backslash+quote becomes the quote. No other escapes. */
static int scan_text(const struct filter__errctx *e, struct arena *a, size_t i,
                     struct filter_tok *tok, size_t *end_out)
{
    const char *s = e->src;
    char q = s[i];
    size_t j = i + 1;
    char prev = 0;
    for (;;) {
        if (j >= e->src_len)
            return filter__fail(e, ERR_INVALID, i, "unterminated quoted text");
        if (s[j] == q && prev != '\\')
            break;
        prev = s[j];
        j++;
    }
    char *v = arena_alloc(a, j - i);
    size_t n = 0;
    for (size_t k = i + 1; k < j; k++) {
        if (s[k] == '\\' && k + 1 < j && s[k + 1] == q)
            continue;
        v[n++] = s[k];
    }
    v[n] = '\0';
    tok->type = FILTER_TOK_TEXT;
    tok->text = v;
    tok->text_len = n;
    *end_out = j + 1;
    return 0;
}

static int scan_number(const struct filter__errctx *e, size_t i, size_t *end_out)
{
    const char *s = e->src;
    size_t n = e->src_len, j = i;
    if (s[j] == '-')
        j++;
    if (j >= n || !is_digit(s[j]))
        return filter__fail(e, ERR_INVALID, i, "invalid number");
    while (j < n && is_digit(s[j]))
        j++;
    if (j < n && s[j] == '.') {
        j++;
        if (j >= n || !is_digit(s[j]))
            return filter__fail(e, ERR_INVALID, i, "invalid number");
        while (j < n && is_digit(s[j]))
            j++;
        if (j < n && s[j] == '.')
            return filter__fail(e, ERR_INVALID, i, "invalid number");
    }
    *end_out = j;
    return 0;
}

int filter__lex(const struct filter__errctx *e, struct arena *a, struct filter_tok **toks_out,
                size_t *n_out)
{
    const char *s = e->src;
    size_t n = e->src_len, i = 0;
    struct toks t = {0};
    int rc;
    while (i < n) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            i++;
            continue;
        }
        if (c == '/' && i + 1 < n && s[i + 1] == '/') {
            while (i < n && s[i] != '\n')
                i++;
            continue;
        }
        struct filter_tok *tok = push(a, &t);
        tok->off = i;
        size_t end = i + 1;
        if (is_ident_start((unsigned char)c)) {
            while (end < n && is_ident_char((unsigned char)s[end]))
                end++;
            size_t len = end - i;
            if (s[end - 1] == '.' || s[end - 1] == ':' || (len == 1 && !is_alpha(c)))
                return filter__fail(e, ERR_INVALID, i, "invalid identifier \"%.*s\"", (int)len,
                                    s + i);
            tok->type = (end < n && s[end] == '(') ? FILTER_TOK_FUNC : FILTER_TOK_IDENT;
        } else if (is_digit((unsigned char)c) || c == '-') {
            if ((rc = scan_number(e, i, &end)) < 0)
                return rc;
            tok->type = FILTER_TOK_NUMBER;
        } else if (c == '\'' || c == '"') {
            if ((rc = scan_text(e, a, i, tok, &end)) < 0)
                return rc;
        } else if (is_sign_char((unsigned char)c)) {
            while (end < n && is_sign_char((unsigned char)s[end]))
                end++;
            size_t k;
            for (k = 0; k < ARRAY_LEN(SIGNS); k++)
                if (strlen(SIGNS[k].sign) == end - i && memcmp(SIGNS[k].sign, s + i, end - i) == 0)
                    break;
            if (k == ARRAY_LEN(SIGNS))
                return filter__fail(e, ERR_INVALID, i, "invalid operator \"%.*s\"", (int)(end - i),
                                    s + i);
            tok->type = FILTER_TOK_SIGN;
            tok->op = SIGNS[k].op;
            tok->any = SIGNS[k].any;
        } else if ((c == '&' || c == '|') && i + 1 < n && s[i + 1] == c) {
            end = i + 2;
            tok->type = c == '&' ? FILTER_TOK_AND : FILTER_TOK_OR;
        } else if (c == '(') {
            tok->type = FILTER_TOK_LPAREN;
        } else if (c == ')') {
            tok->type = FILTER_TOK_RPAREN;
        } else if (c == ',') {
            tok->type = FILTER_TOK_COMMA;
        } else {
            char d[16];
            describe_char(s + i, d);
            return filter__fail(e, ERR_INVALID, i, "unexpected character %s", d);
        }
        tok->len = end - i;
        if (tok->type != FILTER_TOK_TEXT) {
            tok->text = arena_strndup(a, s + i, end - i);
            tok->text_len = end - i;
        }
        i = end;
    }
    struct filter_tok *eof = push(a, &t);
    eof->type = FILTER_TOK_EOF;
    eof->off = n;
    eof->text = "";
    *toks_out = t.v;
    *n_out = t.n;
    return 0;
}
