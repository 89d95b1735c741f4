/* index.c - the CREATE INDEX statements of a collection's `indexes`, parsed into a structure
 * and rendered back in one canonical, fully quoted form. Only plain column lists and a WHERE
 * clause comparing columns with literals are accepted, so no client text reaches SQL
 * unparsed. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "store/store_int.h"

enum tok_kind { T_END, T_IDENT, T_QIDENT, T_STRING, T_NUMBER, T_PUNCT, T_BAD };

struct tok {
    enum tok_kind kind;
    char *text; /* heap: identifier (unquoted), string contents, number or punctuation */
};

struct lexer {
    const char *s;
    size_t pos;
};

static struct tok next_tok(struct lexer *lx)
{
    const char *s = lx->s;
    while (s[lx->pos] && isspace((unsigned char)s[lx->pos]))
        lx->pos++;
    char ch = s[lx->pos];
    struct tok t = {T_END, NULL};
    if (!ch)
        return t;
    size_t start = lx->pos;
    if (isalpha((unsigned char)ch) || ch == '_') {
        while (isalnum((unsigned char)s[lx->pos]) || s[lx->pos] == '_')
            lx->pos++;
        t.kind = T_IDENT;
        t.text = xstrndup(s + start, lx->pos - start);
        return t;
    }
    if (ch == '`' || ch == '"' || ch == '[' || ch == '\'') {
        char close = ch == '[' ? ']' : ch;
        struct buf b;
        buf_init(&b);
        lx->pos++;
        for (;;) {
            char c = s[lx->pos];
            if (!c) {
                buf_release(&b);
                t.kind = T_BAD;
                return t;
            }
            lx->pos++;
            if (c == close) {
                if (close != ']' && s[lx->pos] == close) {
                    buf_putc(&b, c);
                    lx->pos++;
                    continue;
                }
                break;
            }
            buf_putc(&b, c);
        }
        t.kind = ch == '\'' ? T_STRING : T_QIDENT;
        buf_putc(&b, '\0');
        t.text = buf_detach(&b, NULL);
        return t;
    }
    if (isdigit((unsigned char)ch) || (ch == '-' && isdigit((unsigned char)s[lx->pos + 1]))) {
        lx->pos++;
        while (isdigit((unsigned char)s[lx->pos]) || s[lx->pos] == '.')
            lx->pos++;
        t.kind = T_NUMBER;
        t.text = xstrndup(s + start, lx->pos - start);
        return t;
    }
    static const char *const puncts[] = {"!=", "<>", "<=", ">=", "(", ")", ",", ";", "=", "<", ">"};
    for (size_t i = 0; i < ARRAY_LEN(puncts); i++) {
        size_t n = strlen(puncts[i]);
        if (strncmp(s + lx->pos, puncts[i], n) == 0) {
            lx->pos += n;
            t.kind = T_PUNCT;
            t.text = xstrdup(puncts[i]);
            return t;
        }
    }
    t.kind = T_BAD;
    return t;
}

static bool is_kw(const struct tok *t, const char *kw)
{
    return t->kind == T_IDENT && strcasecmp(t->text, kw) == 0;
}

static bool is_p(const struct tok *t, const char *p)
{
    return t->kind == T_PUNCT && strcmp(t->text, p) == 0;
}

static bool is_name(const struct tok *t)
{
    return (t->kind == T_IDENT || t->kind == T_QIDENT) && store_name_valid(t->text, 255);
}

void store__index_release(struct store__index *ix)
{
    free(ix->name);
    free(ix->table);
    for (size_t i = 0; i < ix->n_cols; i++) {
        free(ix->cols[i]);
        free(ix->col_suffix[i]);
    }
    free(ix->cols);
    free(ix->col_suffix);
    for (size_t i = 0; i < ix->n_where; i++)
        free(ix->where[i]);
    free(ix->where);
    memset(ix, 0, sizeof(*ix));
}

#define MAX_TOKS 256
#define MAX_WHERE_DEPTH 16

/* The WHERE clause of a partial index, checked by a small recursive-descent parser and
 * copied token by token in canonical form:
 *   cond    := term (("AND" | "OR") term)*
 *   term    := "NOT" term | "(" cond ")" | operand ("IS" ["NOT"] | cmp) operand
 *   operand := column | 'string' | number | NULL | TRUE | FALSE
 *   cmp     := = | != | <> | < | <= | > | >=
 * Column names are marked with a leading '\x01' so that they can be renamed and quoted. */
struct where_parser {
    const struct tok *toks;
    size_t i, n;
    struct store__index *out;
    int depth;
};

static void where_emit(struct where_parser *wp, char *w)
{
    wp->out->where[wp->out->n_where++] = w;
}

static int where_operand(struct where_parser *wp)
{
    if (wp->i >= wp->n)
        return ERR_INVALID;
    const struct tok *t = &wp->toks[wp->i];
    if (is_kw(t, "NULL") || is_kw(t, "TRUE") || is_kw(t, "FALSE")) {
        where_emit(wp, xstrdup(is_kw(t, "NULL") ? "NULL" : is_kw(t, "TRUE") ? "1" : "0"));
    } else if (t->kind == T_NUMBER) {
        char *end;
        (void)strtod(t->text, &end);
        if (*end)
            return ERR_INVALID;
        where_emit(wp, xstrdup(t->text));
    } else if (t->kind == T_STRING) {
        struct buf b;
        buf_init(&b);
        buf_putc(&b, '\'');
        for (const char *p = t->text; *p; p++) {
            if (*p == '\'')
                buf_putc(&b, '\'');
            buf_putc(&b, *p);
        }
        buf_putc(&b, '\'');
        where_emit(wp, buf_detach(&b, NULL));
    } else if (is_name(t) && !is_kw(t, "AND") && !is_kw(t, "OR") && !is_kw(t, "NOT") &&
               !is_kw(t, "IS")) {
        char *w = xmalloc(strlen(t->text) + 2);
        w[0] = '\x01';
        strcpy(w + 1, t->text);
        where_emit(wp, w);
    } else {
        return ERR_INVALID;
    }
    wp->i++;
    return 0;
}

static int where_cond(struct where_parser *wp);

static int where_term(struct where_parser *wp)
{
    if (wp->i >= wp->n || ++wp->depth > MAX_WHERE_DEPTH)
        return ERR_INVALID;
    const struct tok *t = &wp->toks[wp->i];
    int rc;
    if (is_kw(t, "NOT")) {
        where_emit(wp, xstrdup("NOT"));
        wp->i++;
        rc = where_term(wp);
    } else if (is_p(t, "(")) {
        where_emit(wp, xstrdup("("));
        wp->i++;
        rc = where_cond(wp);
        if (rc == 0 && wp->i < wp->n && is_p(&wp->toks[wp->i], ")")) {
            where_emit(wp, xstrdup(")"));
            wp->i++;
        } else {
            rc = ERR_INVALID;
        }
    } else {
        rc = where_operand(wp);
        if (rc == 0 && wp->i < wp->n && is_kw(&wp->toks[wp->i], "IS")) {
            where_emit(wp, xstrdup("IS"));
            wp->i++;
            if (wp->i < wp->n && is_kw(&wp->toks[wp->i], "NOT")) {
                where_emit(wp, xstrdup("NOT"));
                wp->i++;
            }
        } else if (rc == 0 && wp->i < wp->n && wp->toks[wp->i].kind == T_PUNCT &&
                   !is_p(&wp->toks[wp->i], "(") && !is_p(&wp->toks[wp->i], ")") &&
                   !is_p(&wp->toks[wp->i], ",") && !is_p(&wp->toks[wp->i], ";")) {
            where_emit(wp, xstrdup(wp->toks[wp->i].text));
            wp->i++;
        } else {
            rc = ERR_INVALID;
        }
        if (rc == 0)
            rc = where_operand(wp);
    }
    wp->depth--;
    return rc;
}

static int where_cond(struct where_parser *wp)
{
    int rc = where_term(wp);
    while (rc == 0 && wp->i < wp->n &&
           (is_kw(&wp->toks[wp->i], "AND") || is_kw(&wp->toks[wp->i], "OR"))) {
        where_emit(wp, xstrdup(is_kw(&wp->toks[wp->i], "AND") ? "AND" : "OR"));
        wp->i++;
        rc = where_term(wp);
    }
    return rc;
}

int store__index_parse(const char *sql, struct store__index *out)
{
    struct lexer lx = {sql, 0};
    struct tok toks[MAX_TOKS];
    size_t n = 0;
    int rc = ERR_INVALID;
    memset(out, 0, sizeof(*out));
    for (;;) {
        if (n == MAX_TOKS)
            goto out;
        toks[n] = next_tok(&lx);
        if (toks[n].kind == T_BAD)
            goto out;
        if (toks[n].kind == T_END)
            break;
        n++;
    }
    size_t i = 0;
    if (n < 2 || !is_kw(&toks[i++], "CREATE"))
        goto out;
    if (is_kw(&toks[i], "UNIQUE")) {
        out->unique = true;
        i++;
    }
    if (i >= n || !is_kw(&toks[i++], "INDEX"))
        goto out;
    if (i + 2 < n && is_kw(&toks[i], "IF") && is_kw(&toks[i + 1], "NOT") &&
        is_kw(&toks[i + 2], "EXISTS"))
        i += 3;
    if (i >= n || !is_name(&toks[i]))
        goto out;
    out->name = xstrdup(toks[i++].text);
    if (i >= n || !is_kw(&toks[i++], "ON"))
        goto out;
    if (i >= n || !is_name(&toks[i]))
        goto out;
    out->table = xstrdup(toks[i++].text);
    if (i >= n || !is_p(&toks[i++], "("))
        goto out;
    out->cols = xcalloc(n, sizeof(char *));
    out->col_suffix = xcalloc(n, sizeof(char *));
    for (;;) {
        if (i >= n || !is_name(&toks[i]))
            goto out;
        struct buf suf;
        buf_init(&suf);
        out->cols[out->n_cols] = xstrdup(toks[i++].text);
        if (i + 1 < n && is_kw(&toks[i], "COLLATE")) {
            const struct tok *cl = &toks[i + 1];
            if (!(is_kw(cl, "NOCASE") || is_kw(cl, "BINARY") || is_kw(cl, "RTRIM"))) {
                buf_release(&suf);
                free(out->cols[out->n_cols]);
                goto out;
            }
            buf_puts(&suf, " COLLATE ");
            for (const char *p = cl->text; *p; p++)
                buf_putc(&suf, (char)toupper((unsigned char)*p));
            i += 2;
        }
        if (i < n && (is_kw(&toks[i], "ASC") || is_kw(&toks[i], "DESC"))) {
            buf_puts(&suf, is_kw(&toks[i], "ASC") ? " ASC" : " DESC");
            i++;
        }
        buf_putc(&suf, '\0');
        out->col_suffix[out->n_cols++] = buf_detach(&suf, NULL);
        if (i < n && is_p(&toks[i], ",")) {
            i++;
            continue;
        }
        if (i < n && is_p(&toks[i], ")")) {
            i++;
            break;
        }
        goto out;
    }
    if (i < n && is_kw(&toks[i], "WHERE")) {
        i++;
        out->where = xcalloc(n, sizeof(char *));
        size_t stop = i;
        while (stop < n && !is_p(&toks[stop], ";"))
            stop++;
        struct where_parser wp = {toks, i, stop, out, 0};
        if (i == stop || where_cond(&wp) != 0 || wp.i != stop)
            goto out;
        i = stop;
    }
    if (i < n && is_p(&toks[i], ";"))
        i++;
    if (i != n)
        goto out;
    rc = 0;
out:
    for (size_t k = 0; k < n; k++)
        free(toks[k].text);
    if (rc)
        store__index_release(out);
    return rc;
}

static void quote_bt(struct buf *b, const char *s)
{
    /* names are [A-Za-z0-9_] (checked at parse time), so backticks need no escaping */
    buf_putc(b, '`');
    buf_puts(b, s);
    buf_putc(b, '`');
}

char *store__index_render(const struct store__index *ix)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, ix->unique ? "CREATE UNIQUE INDEX " : "CREATE INDEX ");
    quote_bt(&b, ix->name);
    buf_puts(&b, " ON ");
    quote_bt(&b, ix->table);
    buf_puts(&b, " (");
    for (size_t i = 0; i < ix->n_cols; i++) {
        if (i)
            buf_puts(&b, ", ");
        quote_bt(&b, ix->cols[i]);
        buf_puts(&b, ix->col_suffix[i]);
    }
    buf_putc(&b, ')');
    if (ix->n_where) {
        buf_puts(&b, " WHERE");
        for (size_t i = 0; i < ix->n_where; i++) {
            buf_putc(&b, ' ');
            if (ix->where[i][0] == '\x01')
                quote_bt(&b, ix->where[i] + 1);
            else
                buf_puts(&b, ix->where[i]);
        }
    }
    return buf_detach(&b, NULL);
}

void store__quote(struct buf *b, const char *ident)
{
    buf_putc(b, '"');
    for (const char *p = ident; *p; p++) {
        if (*p == '"')
            buf_putc(b, '"');
        buf_putc(b, *p);
    }
    buf_putc(b, '"');
}
