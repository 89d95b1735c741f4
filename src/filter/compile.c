/* compile.c - the AST to SQLite SQL: identifier resolution against the schema, the operator
 * rules (null/empty normalisation, LIKE wrapping, any/all on multi-valued operands), filters
 * and sort lists.
 *
 * A filter that needs joins (relation paths, back-relations, :each, @collection.*) compiles to
 *     EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN ... AS "_j1" ... WHERE <expr>)
 * which selects exactly the rows PocketBase's `SELECT DISTINCT ... LEFT JOIN ... WHERE <expr>`
 * selects: the shared joins are registered once per path, so two comparisons on the same path
 * look at the same joined row. A comparison without `?` on a multi-valued operand adds
 *     AND NOT EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN ... AS "_m1" WHERE NOT (<cond>))
 * over a fresh copy of that operand's joins: every value must match. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/util.h"
#include "filter/filter_int.h"

/* ---- SQL fragments: text plus the params of its placeholders, in order ---- */

struct frag {
    char *s;
    size_t len, cap;
    struct filter_param *p;
    size_t n, pcap;
};

struct cc {
    const struct filter_ctx *ctx;
    struct arena *a;
    struct filter__errctx e;
    unsigned n_alias;
    bool nullify; /* inside @request.*: an unknown field is NULL, not an error */
};

static void f_reserve(struct cc *cc, struct frag *f, size_t extra)
{
    if (f->len + extra + 1 <= f->cap)
        return;
    size_t cap = f->cap ? f->cap * 2 : 64;
    while (cap < f->len + extra + 1)
        cap *= 2;
    char *s = arena_alloc(cc->a, cap);
    if (f->len)
        memcpy(s, f->s, f->len);
    f->s = s;
    f->cap = cap;
}

static void f_putn(struct cc *cc, struct frag *f, const char *s, size_t n)
{
    f_reserve(cc, f, n);
    memcpy(f->s + f->len, s, n);
    f->len += n;
    f->s[f->len] = '\0';
}

static void f_put(struct cc *cc, struct frag *f, const char *s)
{
    f_putn(cc, f, s, strlen(s));
}

static void f_push_param(struct cc *cc, struct frag *f, const struct filter_param *p)
{
    if (f->n == f->pcap) {
        size_t cap = f->pcap ? f->pcap * 2 : 4;
        struct filter_param *v = arena_alloc(cc->a, cap * sizeof(*v));
        if (f->n)
            memcpy(v, f->p, f->n * sizeof(*v));
        f->p = v;
        f->pcap = cap;
    }
    f->p[f->n++] = *p;
}

static void f_cat(struct cc *cc, struct frag *f, const struct frag *src)
{
    f_putn(cc, f, src->s ? src->s : "", src->len);
    for (size_t i = 0; i < src->n; i++)
        f_push_param(cc, f, &src->p[i]);
}

static void f_param(struct cc *cc, struct frag *f, const struct filter_param *p)
{
    f_put(cc, f, "?");
    f_push_param(cc, f, p);
}

/* "name" with any '"' doubled: the only way a schema name enters the SQL text. */
static void f_ident(struct cc *cc, struct frag *f, const char *name)
{
    f_put(cc, f, "\"");
    for (const char *q = name; *q; q++) {
        if (*q == '"')
            f_put(cc, f, "\"");
        f_putn(cc, f, q, 1);
    }
    f_put(cc, f, "\"");
}

static void f_col(struct cc *cc, struct frag *f, const char *alias, const char *col)
{
    f_ident(cc, f, alias);
    f_put(cc, f, ".");
    f_ident(cc, f, col);
}

/* The JSON array in column alias.col, for json_each() / json_array_length(): anything that
 * is not valid JSON counts as []. Stored lists are valid, but SQLite propagates constants
 * from `col = 'x'` into other uses of col, so the argument may be any text a client sent. */
static void f_json_list(struct cc *cc, struct frag *f, const char *alias, const char *col)
{
    f_put(cc, f, "CASE WHEN json_valid(");
    f_col(cc, f, alias, col);
    f_put(cc, f, ") THEN ");
    f_col(cc, f, alias, col);
    f_put(cc, f, " ELSE '[]' END");
}

static struct filter_param p_text(struct cc *cc, const char *s, size_t len)
{
    return (struct filter_param){
        .type = FILTER_PARAM_TEXT, .text = arena_strndup(cc->a, s, len), .text_len = len};
}

static struct filter_param p_int(int64_t v)
{
    return (struct filter_param){.type = FILTER_PARAM_INT, .i = v};
}

static struct filter_param p_double(double v)
{
    return (struct filter_param){.type = FILTER_PARAM_DOUBLE, .d = v};
}

/* ---- joins ---- */

struct joinset {
    char prefix; /* 'j' shared, 'm' multi-match copies */
    struct frag f;
    const char **keys, **aliases;
    size_t n, cap;
};

static const char *js_find(struct joinset *js, const char *key)
{
    for (size_t i = 0; i < js->n; i++)
        if (strcmp(js->keys[i], key) == 0)
            return js->aliases[i];
    return NULL;
}

static const char *js_add(struct cc *cc, struct joinset *js, const char *key)
{
    if (js->n == js->cap) {
        size_t cap = js->cap ? js->cap * 2 : 8;
        const char **k = arena_alloc(cc->a, cap * sizeof(*k));
        const char **v = arena_alloc(cc->a, cap * sizeof(*v));
        if (js->n) {
            memcpy(k, js->keys, js->n * sizeof(*k));
            memcpy(v, js->aliases, js->n * sizeof(*v));
        }
        js->keys = k;
        js->aliases = v;
        js->cap = cap;
    }
    const char *alias = arena_printf(cc->a, "_%c%u", js->prefix, ++cc->n_alias);
    js->keys[js->n] = arena_strdup(cc->a, key);
    js->aliases[js->n] = alias;
    js->n++;
    return alias;
}

static int client_rule(struct cc *cc, struct joinset *js, const struct store_collection *t,
                       const char *t_alias, size_t off);

/* ---- values ---- */

struct val {
    struct frag f;
    bool literal;      /* a literal or a value known at compile time */
    bool empty;        /* ... that is NULL or '' (or an empty array/object) */
    bool json;         /* from a json field: compared with IS */
    bool multi;        /* several values per row: needs the all-match check */
    bool text_param;   /* f is exactly one text parameter (LIKE wraps it) */
    bool boolean;      /* the literal true or false ("1" / "0") */
    struct frag guard; /* when not empty: ANDed to every comparison of this value */
};

static bool duck(const struct cc *cc)
{
    return cc->ctx->dialect == FILTER_DIALECT_DUCKDB;
}

static void v_sql(struct cc *cc, struct val *v, const char *sql, bool empty)
{
    memset(v, 0, sizeof(*v));
    f_put(cc, &v->f, sql);
    v->literal = true;
    v->empty = empty;
}

static void v_text(struct cc *cc, struct val *v, const char *s, size_t len)
{
    memset(v, 0, sizeof(*v));
    struct filter_param p = p_text(cc, s, len);
    f_param(cc, &v->f, &p);
    v->literal = true;
    v->empty = len == 0;
    v->text_param = true;
}

static void v_int(struct cc *cc, struct val *v, int64_t i)
{
    memset(v, 0, sizeof(*v));
    struct filter_param p = p_int(i);
    f_param(cc, &v->f, &p);
    v->literal = true;
}

/* ---- identifiers ---- */

struct seg {
    const char *name; /* NUL-terminated */
    const char *mod;  /* text after ':', or NULL */
    size_t off;       /* byte offset in the input */
};

struct path {
    const struct filter_tok *tok;
    struct seg *segs;
    size_t n;
};

static int split_path(struct cc *cc, const struct filter_tok *tok, struct path *p)
{
    size_t n = 1;
    for (size_t i = 0; i < tok->text_len; i++)
        n += tok->text[i] == '.';
    p->tok = tok;
    p->segs = arena_zalloc(cc->a, n * sizeof(*p->segs));
    p->n = 0;
    const char *s = tok->text;
    size_t start = 0;
    for (size_t i = 0; i <= tok->text_len; i++) {
        if (i < tok->text_len && s[i] != '.')
            continue;
        struct seg *g = &p->segs[p->n++];
        g->off = tok->off + start;
        const char *colon = memchr(s + start, ':', i - start);
        if (colon) {
            size_t nlen = (size_t)(colon - (s + start));
            g->name = arena_strndup(cc->a, s + start, nlen);
            g->mod = arena_strndup(cc->a, colon + 1, i - start - nlen - 1);
            if (nlen == 0 || !*g->mod || strchr(g->mod, ':'))
                return filter__fail(&cc->e, ERR_INVALID, g->off, "invalid modifier in \"%s\"",
                                    tok->text);
        } else {
            g->name = arena_strndup(cc->a, s + start, i - start);
        }
        if (!*g->name)
            return filter__fail(&cc->e, ERR_INVALID, g->off, "invalid identifier \"%s\"",
                                tok->text);
        start = i + 1;
    }
    return 0;
}

static int bad_mod(struct cc *cc, const struct seg *g, const char *why)
{
    return filter__fail(&cc->e, ERR_INVALID, g->off, "modifier \":%s\" %s", g->mod, why);
}

static bool known_mod(const char *m)
{
    return !strcmp(m, "lower") || !strcmp(m, "length") || !strcmp(m, "each") ||
           !strcmp(m, "isset") || !strcmp(m, "changed");
}

/* Joins target collection t to a relation value src (a column or a bound value, a JSON array
 * when multiple); returns the alias of t's row. */
/* src is the relation value: a bound value, or (src_alias not NULL) the column
 * src_alias.src_col. */
static int join_relation(struct cc *cc, struct joinset *js, const char *key, const struct frag *src,
                         const char *src_alias, const char *src_col, bool multiple,
                         const struct store_collection *t, size_t off, const char **alias_out)
{
    const char *alias = js_find(js, key);
    *alias_out = alias;
    if (alias)
        return 0;
    if (multiple) {
        const char *each = js_add(cc, js, arena_printf(cc->a, "%s#each", key));
        f_put(cc, &js->f, " LEFT JOIN json_each(");
        if (src_alias)
            f_json_list(cc, &js->f, src_alias, src_col);
        else
            f_cat(cc, &js->f, src);
        f_put(cc, &js->f, ") AS ");
        f_ident(cc, &js->f, each);
        alias = js_add(cc, js, key);
        f_put(cc, &js->f, " LEFT JOIN ");
        f_ident(cc, &js->f, t->name);
        f_put(cc, &js->f, " AS ");
        f_ident(cc, &js->f, alias);
        f_put(cc, &js->f, " ON ");
        f_col(cc, &js->f, alias, "id");
        f_put(cc, &js->f, " = ");
        f_col(cc, &js->f, each, "value");
    } else {
        alias = js_add(cc, js, key);
        f_put(cc, &js->f, " LEFT JOIN ");
        f_ident(cc, &js->f, t->name);
        f_put(cc, &js->f, " AS ");
        f_ident(cc, &js->f, alias);
        f_put(cc, &js->f, " ON ");
        f_col(cc, &js->f, alias, "id");
        f_put(cc, &js->f, " = ");
        f_cat(cc, &js->f, src);
    }
    *alias_out = alias;
    return client_rule(cc, js, t, alias, off);
}

static const struct store_collection *find_coll(struct cc *cc, const char *name_or_id)
{
    if (!cc->ctx->find_collection)
        return NULL;
    return cc->ctx->find_collection(cc->ctx->find_ud, name_or_id);
}

static int walk(struct cc *cc, struct joinset *js, const struct store_collection *coll,
                const char *alias, const char *key, const struct path *p, size_t i, int depth,
                bool multi, struct val *out);

/* true when c has a UNIQUE index on exactly the column name: a back-relation through a
 * single relation field with such an index has at most one row (PocketBase's rule). */
static bool unique_single_index(const struct store_collection *c, const char *name)
{
    for (size_t i = 0; i < c->n_indexes; i++) {
        const char *s = c->indexes[i];
        while (*s == ' ' || *s == '\t' || *s == '\n')
            s++;
        if (strncasecmp(s, "CREATE UNIQUE INDEX", 19) != 0)
            continue;
        const char *open = strchr(s, '(');
        const char *close = open ? strchr(open, ')') : NULL;
        if (!close)
            continue;
        const char *b = open + 1, *e = close;
        while (b < e && (*b == ' ' || *b == '\t' || *b == '\n'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
            e--;
        if (e - b >= 2 && (*b == '`' || *b == '"' || *b == '[')) {
            b++;
            e--;
        }
        if ((size_t)(e - b) == strlen(name) && strncasecmp(b, name, (size_t)(e - b)) == 0)
            return true;
    }
    return false;
}

/* A back-relation segment "<collection>_via_<field>": rows of <collection> whose relation
 * <field> points at the current row. Sets *handled when seg has that form. */
static int walk_back(struct cc *cc, struct joinset *js, const struct store_collection *coll,
                     const char *alias, const char *key, const struct path *p, size_t i, int depth,
                     bool multi, struct val *out, bool *handled)
{
    const struct seg *g = &p->segs[i];
    const char *via = NULL;
    for (const char *q = strstr(g->name, "_via_"); q; q = strstr(q + 1, "_via_"))
        via = q;
    *handled = via && via != g->name && via[5];
    if (!*handled)
        return 0;
    char *cname = arena_strndup(cc->a, g->name, (size_t)(via - g->name));
    const char *fname = via + 5;
    const struct store_collection *src = find_coll(cc, cname);
    const struct store_field *f = src ? store_collection_field(src, fname) : NULL;
    if (!f || f->type != STORE_FIELD_RELATION || !f->collection_id ||
        (strcmp(f->collection_id, coll->id) != 0 && strcmp(f->collection_id, coll->name) != 0)) {
        if (cc->nullify) {
            v_sql(cc, out, "NULL", true);
            return 0;
        }
        return filter__fail(&cc->e, ERR_INVALID, g->off, "invalid back-relation \"%s\"", g->name);
    }
    bool many = store_field_multiple(f) || !unique_single_index(src, f->name);
    if (cc->ctx->client && (f->hidden || f->type == STORE_FIELD_PASSWORD))
        return filter__fail(&cc->e, ERR_INVALID, g->off, "non-filterable field \"%s\"", fname);
    if (g->mod)
        return bad_mod(cc, g, "cannot be used on a back-relation");
    if (depth + 1 > FILTER_MAX_DEPTH)
        return filter__fail(&cc->e, ERR_LIMIT, g->off, "more than %d nested relations",
                            FILTER_MAX_DEPTH);
    const char *k = arena_printf(cc->a, "%s.%s", key, g->name);
    const char *b = js_find(js, k);
    if (!b) {
        b = js_add(cc, js, k);
        f_put(cc, &js->f, " LEFT JOIN ");
        f_ident(cc, &js->f, src->name);
        f_put(cc, &js->f, " AS ");
        f_ident(cc, &js->f, b);
        f_put(cc, &js->f, " ON ");
        if (store_field_multiple(f)) {
            const char *e = arena_printf(cc->a, "_%c%u", js->prefix, ++cc->n_alias);
            f_put(cc, &js->f, "EXISTS (SELECT 1 FROM json_each(");
            f_json_list(cc, &js->f, b, f->name);
            f_put(cc, &js->f, ") AS ");
            f_ident(cc, &js->f, e);
            f_put(cc, &js->f, " WHERE ");
            f_col(cc, &js->f, e, "value");
            f_put(cc, &js->f, " = ");
            f_col(cc, &js->f, alias, "id");
            f_put(cc, &js->f, ")");
        } else {
            f_col(cc, &js->f, b, f->name);
            f_put(cc, &js->f, " = ");
            f_col(cc, &js->f, alias, "id");
        }
        int rc = client_rule(cc, js, src, b, g->off);
        if (rc < 0)
            return rc;
    }
    if (i + 1 == p->n) {
        memset(out, 0, sizeof(*out));
        f_col(cc, &out->f, b, "id");
        out->multi = multi || many;
        return 0;
    }
    return walk(cc, js, src, b, k, p, i + 1, depth + 1, multi || many, out);
}

static void json_path_param(struct cc *cc, const struct path *p, size_t from, struct frag *f)
{
    struct frag path = {0};
    f_put(cc, &path, "$");
    for (size_t k = from; k < p->n; k++) {
        const char *s = p->segs[k].name;
        bool num = *s != '\0';
        for (const char *q = s; *q; q++)
            num = num && *q >= '0' && *q <= '9';
        f_put(cc, &path, num ? "[" : ".\"");
        f_put(cc, &path, s);
        f_put(cc, &path, num ? "]" : "\"");
    }
    struct filter_param prm = p_text(cc, path.s, path.len);
    f_param(cc, f, &prm);
}

/* Resolves segment i (and the rest) of a field path over collection coll whose row is alias. */
static int walk(struct cc *cc, struct joinset *js, const struct store_collection *coll,
                const char *alias, const char *key, const struct path *p, size_t i, int depth,
                bool multi, struct val *out)
{
    const struct seg *g = &p->segs[i];
    const struct store_field *f = store_collection_field(coll, g->name);
    if (!f) {
        bool handled;
        int rc = walk_back(cc, js, coll, alias, key, p, i, depth, multi, out, &handled);
        if (handled || rc < 0)
            return rc;
        if (cc->nullify) {
            v_sql(cc, out, "NULL", true);
            return 0;
        }
        if (coll == cc->ctx->collection)
            return filter__fail(&cc->e, ERR_INVALID, g->off, "unknown field \"%s\"", g->name);
        return filter__fail(&cc->e, ERR_INVALID, g->off,
                            "unknown field \"%s\" in collection \"%s\"", g->name, coll->name);
    }
    /* a password field is never filterable by clients, hidden or not: a LIKE would read the
     * hash out a character at a time */
    if (cc->ctx->client && (f->hidden || f->type == STORE_FIELD_PASSWORD))
        return filter__fail(&cc->e, ERR_INVALID, g->off, "non-filterable field \"%s\"", g->name);
    memset(out, 0, sizeof(*out));
    out->multi = multi;
    bool last = i + 1 == p->n;
    if (g->mod && !last)
        return filter__fail(&cc->e, ERR_INVALID, g->off,
                            "modifiers are only allowed on the last part of \"%s\"", p->tok->text);

    if (duck(cc) && (f->type == STORE_FIELD_GEO_POINT || f->type == STORE_FIELD_RELATION))
        return filter__fail(&cc->e, ERR_INVALID, g->off, "field \"%s\" cannot be filtered here",
                            g->name);
    if (f->type == STORE_FIELD_JSON && duck(cc)) {
        /* DuckDB: the value at the path as text (NULL for a missing key or a JSON null);
         * build_cond reads it as a number or a boolean when the other side is one */
        const char *lm = p->segs[p->n - 1].mod;
        for (size_t k = i; k < p->n; k++)
            if (p->segs[k].mod && (k + 1 < p->n || strcmp(p->segs[k].mod, "lower") != 0))
                return known_mod(p->segs[k].mod)
                           ? bad_mod(cc, &p->segs[k], "cannot be used on a json field")
                           : bad_mod(cc, &p->segs[k], "is unknown");
        f_put(cc, &out->f, lm ? "LOWER(" : "");
        if (last) {
            f_put(cc, &out->f, "CAST(");
            f_col(cc, &out->f, alias, f->name);
            f_put(cc, &out->f, " AS VARCHAR)");
        } else {
            f_put(cc, &out->f, "json_extract_string(");
            f_col(cc, &out->f, alias, f->name);
            f_put(cc, &out->f, ", ");
            json_path_param(cc, p, i + 1, &out->f);
            f_put(cc, &out->f, ")");
        }
        f_put(cc, &out->f, lm ? ")" : "");
        out->json = true;
        return 0;
    }

    if (f->type == STORE_FIELD_GEO_POINT) {
        /* the point itself (as JSON), or its lon / lat as numbers */
        const struct seg *sub = last ? NULL : &p->segs[i + 1];
        if (sub && (i + 2 != p->n || (strcmp(sub->name, "lon") && strcmp(sub->name, "lat"))))
            return filter__fail(&cc->e, ERR_INVALID, sub->off,
                                "geoPoint field \"%s\" has only \"lon\" and \"lat\"", f->name);
        const struct seg *mg = sub ? sub : g;
        if (mg->mod)
            return known_mod(mg->mod) ? bad_mod(cc, mg, "cannot be used on a geoPoint field")
                                      : bad_mod(cc, mg, "is unknown");
        f_put(cc, &out->f, "json_extract(");
        f_col(cc, &out->f, alias, f->name);
        f_put(cc, &out->f,
              !sub                        ? ", '$')"
              : !strcmp(sub->name, "lon") ? ", '$.lon')"
                                          : ", '$.lat')");
        out->json = !sub;
        return 0;
    }

    if (f->type == STORE_FIELD_JSON) {
        if (g->mod && strcmp(g->mod, "lower") != 0)
            return known_mod(g->mod) ? bad_mod(cc, g, "cannot be used on a json field")
                                     : bad_mod(cc, g, "is unknown");
        if (g->mod)
            f_put(cc, &out->f, "LOWER(");
        f_put(cc, &out->f, "json_extract(");
        f_col(cc, &out->f, alias, f->name);
        if (last)
            f_put(cc, &out->f, ", '$')");
        else {
            f_put(cc, &out->f, ", ");
            json_path_param(cc, p, i + 1, &out->f);
            f_put(cc, &out->f, ")");
            const char *lm = p->segs[p->n - 1].mod;
            if (lm && strcmp(lm, "lower") != 0) {
                const struct seg *lg = &p->segs[p->n - 1];
                return known_mod(lm) ? bad_mod(cc, lg, "cannot be used on a json field")
                                     : bad_mod(cc, lg, "is unknown");
            }
            if (lm) {
                struct frag w = {0};
                f_put(cc, &w, "LOWER(");
                f_cat(cc, &w, &out->f);
                f_put(cc, &w, ")");
                out->f = w;
            }
        }
        if (g->mod)
            f_put(cc, &out->f, ")");
        out->json = true;
        return 0;
    }

    if (!last) {
        if (f->type != STORE_FIELD_RELATION)
            return filter__fail(&cc->e, ERR_INVALID, p->segs[i + 1].off,
                                "field \"%s\" is not a relation and has no \"%s\"", f->name,
                                p->segs[i + 1].name);
        const struct store_collection *t =
            f->collection_id ? find_coll(cc, f->collection_id) : NULL;
        if (!t)
            return filter__fail(&cc->e, ERR_INVALID, g->off,
                                "the collection of relation \"%s\" does not exist", f->name);
        if (depth + 1 > FILTER_MAX_DEPTH)
            return filter__fail(&cc->e, ERR_LIMIT, g->off, "more than %d nested relations",
                                FILTER_MAX_DEPTH);
        bool many = store_field_multiple(f);
        /* rel.id of a single relation is the column itself */
        if (!many && i + 2 == p->n && !strcmp(p->segs[i + 1].name, "id") && !p->segs[i + 1].mod) {
            f_col(cc, &out->f, alias, f->name);
            return 0;
        }
        struct frag src = {0};
        f_col(cc, &src, alias, f->name);
        const char *k = arena_printf(cc->a, "%s.%s", key, f->name);
        const char *ta;
        int rc = join_relation(cc, js, k, &src, alias, f->name, many, t, g->off, &ta);
        if (rc < 0)
            return rc;
        return walk(cc, js, t, ta, k, p, i + 1, depth + 1, multi || many, out);
    }

    if (!g->mod || !strcmp(g->mod, "lower")) {
        f_put(cc, &out->f, g->mod ? "LOWER(" : "");
        f_col(cc, &out->f, alias, f->name);
        f_put(cc, &out->f, g->mod ? ")" : "");
        /* clients only see the emails of auth records that made them visible */
        if (cc->ctx->client && coll->type == STORE_COLLECTION_AUTH && !strcmp(f->name, "email") &&
            store_collection_field(coll, "emailVisibility")) {
            f_col(cc, &out->guard, alias, "emailVisibility");
            f_put(cc, &out->guard, " = 1");
        }
        return 0;
    }
    if (!strcmp(g->mod, "length") || !strcmp(g->mod, "each")) {
        if (!store_field_multiple(f))
            return bad_mod(cc, g, "needs a multiple select or relation field");
        if (g->mod[0] == 'l') {
            f_put(cc, &out->f, "json_array_length(");
            f_json_list(cc, &out->f, alias, f->name);
            f_put(cc, &out->f, ")");
            return 0;
        }
        const char *k = arena_printf(cc->a, "%s.%s:each", key, f->name);
        const char *ea = js_find(js, k);
        if (!ea) {
            ea = js_add(cc, js, k);
            f_put(cc, &js->f, " LEFT JOIN json_each(");
            f_json_list(cc, &js->f, alias, f->name);
            f_put(cc, &js->f, ") AS ");
            f_ident(cc, &js->f, ea);
        }
        f_col(cc, &out->f, ea, "value");
        out->multi = true;
        return 0;
    }
    if (!strcmp(g->mod, "isset") || !strcmp(g->mod, "changed"))
        return bad_mod(cc, g, "can only be used on @request.body fields");
    return bad_mod(cc, g, "is unknown");
}

/* ---- @request.* values known at compile time ---- */

static bool json_empty(const json_t *j)
{
    return !j || json_is_null(j) || (json_is_string(j) && json_string_length(j) == 0) ||
           (json_is_array(j) && json_array_size(j) == 0) ||
           (json_is_object(j) && json_object_size(j) == 0);
}

static char *json_text(struct cc *cc, const json_t *j, size_t *len_out)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!s) {
        *len_out = 4;
        return arena_strdup(cc->a, "null");
    }
    char *r = arena_strdup(cc->a, s);
    *len_out = strlen(r);
    free(s);
    return r;
}

/* A JSON value as a bound value. num: cast numeric strings to numbers (number fields). */
static void v_json(struct cc *cc, struct val *v, const json_t *j, bool num, bool lower)
{
    if (!j || json_is_null(j)) {
        v_sql(cc, v, "NULL", true);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        char *end = NULL;
        double d = num && len ? strtod(s, &end) : 0;
        if (num && len && end == s + len && isfinite(d)) {
            memset(v, 0, sizeof(*v));
            struct filter_param p = p_double(d);
            f_param(cc, &v->f, &p);
            v->literal = true;
            return;
        }
        char *t = arena_strndup(cc->a, s, len);
        if (lower)
            for (size_t i = 0; i < len; i++)
                if (t[i] >= 'A' && t[i] <= 'Z')
                    t[i] = (char)(t[i] - 'A' + 'a');
        v_text(cc, v, t, len);
    } else if (json_is_integer(j)) {
        v_int(cc, v, (int64_t)json_integer_value(j));
    } else if (json_is_real(j)) {
        memset(v, 0, sizeof(*v));
        struct filter_param p = p_double(json_real_value(j));
        f_param(cc, &v->f, &p);
        v->literal = true;
    } else if (json_is_boolean(j)) {
        v_sql(cc, v, json_is_true(j) ? "1" : "0", false);
    } else {
        size_t len;
        char *t = json_text(cc, j, &len);
        v_text(cc, v, t, len);
        v->empty = json_empty(j);
    }
}

/* A static value with the modifier of the last segment applied. j NULL: absent. */
static int static_value(struct cc *cc, struct joinset *js, const struct path *p, const json_t *j,
                        bool num, struct val *out)
{
    const struct seg *g = &p->segs[p->n - 1];
    for (size_t k = 0; k + 1 < p->n; k++)
        if (p->segs[k].mod)
            return filter__fail(&cc->e, ERR_INVALID, p->segs[k].off,
                                "modifiers are only allowed on the last part of \"%s\"",
                                p->tok->text);
    if (!g->mod) {
        v_json(cc, out, j, num, false);
        return 0;
    }
    if (!strcmp(g->mod, "lower")) {
        v_json(cc, out, j, false, true);
        return 0;
    }
    if (!strcmp(g->mod, "isset")) {
        v_sql(cc, out, j ? "1" : "0", false);
        return 0;
    }
    if (!strcmp(g->mod, "length")) {
        int64_t n = json_is_array(j) ? (int64_t)json_array_size(j) : json_empty(j) ? 0 : 1;
        v_int(cc, out, n);
        return 0;
    }
    if (!strcmp(g->mod, "each")) {
        json_t *arr = json_is_array(j) ? json_incref((json_t *)j) : json_array();
        if (!json_is_array(j) && !json_empty(j))
            json_array_append(arr, (json_t *)j);
        size_t len;
        char *t = json_text(cc, arr, &len);
        json_decref(arr);
        const char *ea = js_add(cc, js, arena_printf(cc->a, "@each#%u", cc->n_alias));
        struct filter_param prm = p_text(cc, t, len);
        f_put(cc, &js->f, " LEFT JOIN json_each(");
        f_param(cc, &js->f, &prm);
        f_put(cc, &js->f, ") AS ");
        f_ident(cc, &js->f, ea);
        memset(out, 0, sizeof(*out));
        f_col(cc, &out->f, ea, "value");
        out->multi = true;
        return 0;
    }
    if (!strcmp(g->mod, "changed"))
        return bad_mod(cc, g, "can only be used on @request.body fields");
    return bad_mod(cc, g, "is unknown");
}

static const json_t *obj_get(const json_t *o, const char *key)
{
    return json_is_object(o) ? json_object_get(o, key) : NULL;
}

static void build_cond(struct cc *cc, enum filter_op op, const struct val *l, const struct val *r,
                       struct frag *out);

static int resolve_body(struct cc *cc, struct joinset *js, const struct path *p, struct val *out)
{
    const struct filter_request *rq = cc->ctx->request;
    const json_t *body = rq ? rq->body : NULL;
    const struct seg *g = &p->segs[2];
    const json_t *j = obj_get(body, g->name);
    const struct store_field *f = store_collection_field(cc->ctx->collection, g->name);
    if (p->n == 3 && g->mod && !strcmp(g->mod, "changed")) {
        if (!f)
            return filter__fail(&cc->e, ERR_INVALID, g->off, "unknown field \"%s\"", g->name);
        if (!j) {
            v_sql(cc, out, "0", false);
            return 0;
        }
        struct val bv, fv;
        v_json(cc, &bv, j, f->type == STORE_FIELD_NUMBER, false);
        memset(&fv, 0, sizeof(fv));
        if (f->type == STORE_FIELD_JSON) {
            f_put(cc, &fv.f, "json_extract(");
            f_col(cc, &fv.f, cc->ctx->alias, f->name);
            f_put(cc, &fv.f, ", '$')");
            fv.json = true;
        } else {
            f_col(cc, &fv.f, cc->ctx->alias, f->name);
        }
        memset(out, 0, sizeof(*out));
        f_put(cc, &out->f, "(");
        build_cond(cc, FILTER_OP_NEQ, &bv, &fv, &out->f);
        f_put(cc, &out->f, ")");
        return 0;
    }
    if (p->n > 3 && f && f->type == STORE_FIELD_RELATION) {
        if (g->mod)
            return filter__fail(&cc->e, ERR_INVALID, g->off,
                                "modifiers are only allowed on the last part of \"%s\"",
                                p->tok->text);
        const struct store_collection *t =
            f->collection_id ? find_coll(cc, f->collection_id) : NULL;
        if (!t)
            return filter__fail(&cc->e, ERR_INVALID, g->off,
                                "the collection of relation \"%s\" does not exist", f->name);
        bool many = store_field_multiple(f);
        struct frag src = {0};
        struct val sv;
        if (many) {
            json_t *arr = json_is_array(j) ? json_incref((json_t *)j) : json_array();
            if (!json_is_array(j) && !json_empty(j))
                json_array_append(arr, (json_t *)j);
            size_t len;
            char *t2 = json_text(cc, arr, &len);
            json_decref(arr);
            struct filter_param prm = p_text(cc, t2, len);
            f_param(cc, &src, &prm);
        } else {
            v_json(cc, &sv, json_is_string(j) ? j : NULL, false, false);
            src = sv.f;
        }
        const char *k = arena_printf(cc->a, "@body.%s", f->name);
        const char *ta;
        int rc = join_relation(cc, js, k, &src, NULL, NULL, many, t, g->off, &ta);
        if (rc < 0)
            return rc;
        cc->nullify = true;
        rc = walk(cc, js, t, ta, k, p, 3, 1, many, out);
        cc->nullify = false;
        return rc;
    }
    /* plain value, or a path inside a submitted object */
    for (size_t k = 3; k < p->n && j; k++) {
        const char *s = p->segs[k].name;
        char *end;
        if (json_is_array(j)) {
            unsigned long idx = strtoul(s, &end, 10);
            j = *end ? NULL : json_array_get(j, idx);
        } else {
            j = obj_get(j, s);
        }
    }
    return static_value(cc, js, p, j, p->n == 3 && f && f->type == STORE_FIELD_NUMBER, out);
}

static int resolve_auth(struct cc *cc, struct joinset *js, const struct path *p, struct val *out)
{
    const struct filter_request *rq = cc->ctx->request;
    const json_t *auth = rq ? rq->auth : NULL;
    const struct store_collection *ac = rq ? rq->auth_collection : NULL;
    const struct seg *g = &p->segs[2];
    if (!json_is_object(auth)) {
        /* a guest: everything is NULL */
        return static_value(cc, js, p, NULL, false, out);
    }
    static const char *const plain[] = {"id",    "collectionId",    "collectionName",
                                        "email", "emailVisibility", "verified"};
    bool is_plain = false;
    for (size_t k = 0; k < ARRAY_LEN(plain); k++)
        is_plain = is_plain || !strcmp(g->name, plain[k]);
    if ((is_plain && p->n == 3) || !ac) {
        const json_t *j = obj_get(auth, g->name);
        json_t *tmp = NULL;
        if (!j && ac && !strcmp(g->name, "collectionId"))
            j = tmp = json_string(ac->id);
        if (!j && ac && !strcmp(g->name, "collectionName"))
            j = tmp = json_string(ac->name);
        int rc = p->n == 3 ? static_value(cc, js, p, j, false, out)
                           : static_value(cc, js, p, NULL, false, out);
        json_decref(tmp);
        return rc;
    }
    const json_t *id = obj_get(auth, "id");
    if (!json_is_string(id))
        return static_value(cc, js, p, NULL, false, out);
    const char *a = js_find(js, "@auth");
    if (!a) {
        a = js_add(cc, js, "@auth");
        f_put(cc, &js->f, " LEFT JOIN ");
        f_ident(cc, &js->f, ac->name);
        f_put(cc, &js->f, " AS ");
        f_ident(cc, &js->f, a);
        f_put(cc, &js->f, " ON ");
        f_col(cc, &js->f, a, "id");
        f_put(cc, &js->f, " = ");
        struct filter_param prm = p_text(cc, json_string_value(id), json_string_length(id));
        f_param(cc, &js->f, &prm);
    }
    if (g->mod && (!strcmp(g->mod, "isset") || !strcmp(g->mod, "changed")))
        return bad_mod(cc, g, "can only be used on @request.body fields");
    cc->nullify = true;
    int rc = walk(cc, js, ac, a, "@auth", p, 2, 0, false, out);
    cc->nullify = false;
    return rc;
}

static int resolve_request(struct cc *cc, struct joinset *js, const struct path *p, struct val *out)
{
    const struct filter_request *rq = cc->ctx->request;
    const struct seg *g = p->n > 1 ? &p->segs[1] : &p->segs[0];
    if (cc->ctx->client)
        return filter__fail(&cc->e, ERR_DENIED, p->tok->off,
                            "only superusers can filter by @request.");
    if (p->n < 2)
        return filter__fail(&cc->e, ERR_INVALID, p->tok->off, "unknown field \"%s\"", p->tok->text);
    if (p->n == 2 && (!strcmp(g->name, "method") || !strcmp(g->name, "context"))) {
        const char *s = rq ? (g->name[0] == 'm' ? rq->method : rq->context) : NULL;
        json_t *tmp = s ? json_string(s) : NULL;
        int rc = static_value(cc, js, p, tmp, false, out);
        json_decref(tmp);
        return rc;
    }
    if (p->n >= 3 && !g->mod) {
        if (!strcmp(g->name, "auth"))
            return resolve_auth(cc, js, p, out);
        if (!strcmp(g->name, "body"))
            return resolve_body(cc, js, p, out);
        if (p->n == 3 && (!strcmp(g->name, "query") || !strcmp(g->name, "headers"))) {
            const json_t *j =
                obj_get(rq ? (g->name[0] == 'q' ? rq->query : rq->headers) : NULL, p->segs[2].name);
            if (json_is_array(j))
                j = json_array_get(j, 0);
            return static_value(cc, js, p, j, false, out);
        }
    }
    return filter__fail(&cc->e, ERR_INVALID, p->tok->off, "unknown field \"%s\"", p->tok->text);
}

static int resolve_collection(struct cc *cc, struct joinset *js, const struct path *p,
                              struct val *out)
{
    if (cc->ctx->client)
        return filter__fail(&cc->e, ERR_DENIED, p->tok->off,
                            "only superusers can filter by @collection.");
    if (p->n < 3)
        return filter__fail(&cc->e, ERR_INVALID, p->tok->off,
                            "\"%s\" needs a collection and a field", p->tok->text);
    const struct seg *g = &p->segs[1];
    const struct store_collection *t = find_coll(cc, g->name);
    if (!t)
        return filter__fail(&cc->e, ERR_INVALID, g->off, "unknown collection \"%s\"", g->name);
    const char *k = arena_printf(cc->a, "@collection.%s:%s", t->name, g->mod ? g->mod : "");
    const char *a = js_find(js, k);
    if (!a) {
        a = js_add(cc, js, k);
        f_put(cc, &js->f, " LEFT JOIN ");
        f_ident(cc, &js->f, t->name);
        f_put(cc, &js->f, " AS ");
        f_ident(cc, &js->f, a);
    }
    return walk(cc, js, t, a, k, p, 2, 0, true, out);
}

/* Date macros relative to ctx->now_us; *found is false for any other name. */
static void macro_value(struct cc *cc, const char *name, struct val *out, bool *found)
{
    int64_t now = cc->ctx->now_us;
    time_t secs = (time_t)(now >= 0 ? now / 1000000 : (now - 999999) / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    const int64_t day = 86400LL * 1000000;
    struct tm t0 = tm;
    t0.tm_hour = t0.tm_min = t0.tm_sec = 0;
    int64_t today = (int64_t)timegm(&t0) * 1000000;
    struct tm m0 = t0, m1 = t0, y0 = t0, y1 = t0;
    m0.tm_mday = 1;
    m1.tm_mday = 1;
    m1.tm_mon += 1;
    y0.tm_mday = 1;
    y0.tm_mon = 0;
    y1.tm_mday = 1;
    y1.tm_mon = 0;
    y1.tm_year += 1;
    static const char *const dates[] = {"@now",        "@yesterday", "@tomorrow",
                                        "@todayStart", "@todayEnd",  "@monthStart",
                                        "@monthEnd",   "@yearStart", "@yearEnd"};
    int64_t dv[] = {now,
                    now - day,
                    now + day,
                    today,
                    today + day - 1000,
                    (int64_t)timegm(&m0) * 1000000,
                    (int64_t)timegm(&m1) * 1000000 - 1000,
                    (int64_t)timegm(&y0) * 1000000,
                    (int64_t)timegm(&y1) * 1000000 - 1000};
    *found = true;
    for (size_t k = 0; k < ARRAY_LEN(dates); k++) {
        if (strcmp(name, dates[k]) == 0) {
            char buf[TIME_PB_LEN];
            time_format_pb(dv[k], buf);
            v_text(cc, out, buf, strlen(buf));
            return;
        }
    }
    static const char *const nums[] = {"@second", "@minute", "@hour", "@weekday",
                                       "@day",    "@month",  "@year"};
    int64_t nv[] = {tm.tm_sec,  tm.tm_min,     tm.tm_hour,       tm.tm_wday,
                    tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900};
    for (size_t k = 0; k < ARRAY_LEN(nums); k++) {
        if (strcmp(name, nums[k]) == 0) {
            v_int(cc, out, nv[k]);
            return;
        }
    }
    *found = false;
}

static int resolve_ident(struct cc *cc, struct joinset *js, const struct filter_tok *tok,
                         struct val *out)
{
    struct path p;
    int rc = split_path(cc, tok, &p);
    if (rc < 0)
        return rc;
    const char *first = p.segs[0].name;
    if (first[0] == '@' && p.segs[0].mod && p.n > 1)
        return filter__fail(&cc->e, ERR_INVALID, tok->off,
                            "modifiers are only allowed on the last part of \"%s\"", tok->text);
    if (first[0] == '@') {
        if (duck(cc) && (!strcmp(first, "@request") || !strcmp(first, "@collection")))
            return filter__fail(&cc->e, ERR_INVALID, tok->off, "unknown field \"%s\"", tok->text);
        if (!strcmp(first, "@request"))
            return resolve_request(cc, js, &p, out);
        if (!strcmp(first, "@collection"))
            return resolve_collection(cc, js, &p, out);
        if (p.n == 1 && !p.segs[0].mod) {
            bool found;
            macro_value(cc, first, out, &found);
            if (found)
                return 0;
        }
        return filter__fail(&cc->e, ERR_INVALID, tok->off, "unknown identifier \"%s\"", tok->text);
    }
    const struct store_collection *c = cc->ctx->collection;
    if (p.n == 1 && !p.segs[0].mod && !store_collection_field(c, first)) {
        if (!strcasecmp(first, "null")) {
            v_sql(cc, out, "NULL", true);
            return 0;
        }
        if (!strcasecmp(first, "true") || !strcasecmp(first, "false")) {
            v_sql(cc, out, first[0] == 't' || first[0] == 'T' ? "1" : "0", false);
            out->boolean = true;
            return 0;
        }
    }
    return walk(cc, js, c, cc->ctx->alias, "", &p, 0, 0, false, out);
}

static int resolve_operand(struct cc *cc, struct joinset *js, const struct filter_operand *o,
                           struct val *out);

/* geoDistance(lonA, latA, lonB, latB): kilometres on a sphere (haversine via the law of
 * cosines, clamped into acos's domain); strftime(format[, time[, modifier...]]): SQLite's
 * strftime with NULL as ''. The result is multi-valued when an argument is. */
static int resolve_func(struct cc *cc, struct joinset *js, const struct filter_operand *o,
                        struct val *out)
{
    const struct filter_tok *t = o->tok;
    bool geo = !strcmp(t->text, "geoDistance");
    if (duck(cc) || (!geo && strcmp(t->text, "strftime") != 0))
        return filter__fail(&cc->e, ERR_INVALID, t->off, "unknown function \"%s\"", t->text);
    if (geo ? o->n_args != 4 : (o->n_args < 1 || o->n_args > 10))
        return filter__fail(&cc->e, ERR_INVALID, t->off, "%s() takes %s arguments", t->text,
                            geo ? "4" : "1 to 10");
    struct val *args = arena_zalloc(cc->a, o->n_args * sizeof(*args));
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < o->n_args; i++) {
        int rc = resolve_operand(cc, js, &o->args[i], &args[i]);
        if (rc < 0)
            return rc;
        out->multi = out->multi || args[i].multi;
    }
    struct frag *f = &out->f;
    if (!geo) {
        f_put(cc, f, "COALESCE(strftime(");
        for (size_t i = 0; i < o->n_args; i++) {
            f_put(cc, f, i ? ", " : "");
            f_cat(cc, f, &args[i].f);
        }
        f_put(cc, f, "), '')");
        return 0;
    }
    const struct frag *lon_a = &args[0].f, *lat_a = &args[1].f, *lon_b = &args[2].f,
                      *lat_b = &args[3].f;
    f_put(cc, f, "(6371 * acos(max(-1.0, min(1.0, cos(radians(");
    f_cat(cc, f, lat_a);
    f_put(cc, f, ")) * cos(radians(");
    f_cat(cc, f, lat_b);
    f_put(cc, f, ")) * cos(radians(");
    f_cat(cc, f, lon_b);
    f_put(cc, f, ") - radians(");
    f_cat(cc, f, lon_a);
    f_put(cc, f, ")) + sin(radians(");
    f_cat(cc, f, lat_a);
    f_put(cc, f, ")) * sin(radians(");
    f_cat(cc, f, lat_b);
    f_put(cc, f, "))))))");
    return 0;
}

static int resolve_operand(struct cc *cc, struct joinset *js, const struct filter_operand *o,
                           struct val *out)
{
    const struct filter_tok *t = o->tok;
    switch (o->kind) {
    case FILTER_OPND_IDENT: return resolve_ident(cc, js, t, out);
    case FILTER_OPND_TEXT: v_text(cc, out, t->text, t->text_len); return 0;
    case FILTER_OPND_NUMBER: {
        memset(out, 0, sizeof(*out));
        out->literal = true;
        struct filter_param prm;
        errno = 0;
        char *end = NULL;
        long long i = strchr(t->text, '.') ? 0 : strtoll(t->text, &end, 10);
        if (!strchr(t->text, '.') && errno == 0 && *end == '\0')
            prm = p_int(i);
        else
            prm = p_double(strtod(t->text, NULL));
        f_param(cc, &out->f, &prm);
        return 0;
    }
    case FILTER_OPND_FUNC: return resolve_func(cc, js, o, out);
    }
    return filter__fail(&cc->e, ERR_INVALID, t->off, "invalid operand");
}

/* ---- operators ---- */

/* The LIKE pattern of a text: with no unescaped '%' it is a "contains" search: '%', '_' and
 * '\' that are not already escaped (by a '\' before one of those three) get escaped and the
 * whole is wrapped in '%'. With an unescaped '%' the text is the pattern as it is. */
static struct filter_param like_param(struct cc *cc, const struct filter_param *p)
{
    const char *s = p->text;
    size_t n = p->text_len;
    bool wild = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        else if (s[i] == '%')
            wild = true;
    }
    if (wild)
        return *p;
    char *w = arena_alloc(cc->a, 2 * n + 3);
    size_t k = 0;
    w[k++] = '%';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '\\' || s[i + 1] == '%' || s[i + 1] == '_')) {
            w[k++] = s[i++];
            w[k++] = s[i];
        } else if (s[i] == '\\' || s[i] == '%' || s[i] == '_') {
            w[k++] = '\\';
            w[k++] = s[i];
        } else {
            w[k++] = s[i];
        }
    }
    w[k++] = '%';
    w[k] = '\0';
    return (struct filter_param){.type = FILTER_PARAM_TEXT, .text = w, .text_len = k};
}

/* A number bound for LIKE becomes its text, as PocketBase turns every bound value into text
 * before wrapping it: shortest form that reads back the same. */
static struct filter_param number_text(struct cc *cc, const struct filter_param *p)
{
    char buf[64];
    if (p->type == FILTER_PARAM_INT) {
        snprintf(buf, sizeof(buf), "%lld", (long long)p->i);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, p->d);
            if (strtod(buf, NULL) == p->d)
                break;
        }
    }
    return p_text(cc, buf, strlen(buf));
}

static bool v_number(const struct val *v)
{
    return v->literal && v->f.n == 1 && v->f.len == 1 &&
           (v->f.p[0].type == FILTER_PARAM_INT || v->f.p[0].type == FILTER_PARAM_DOUBLE);
}

/* DuckDB: one side of a comparison. A json value (text) compared with a number or a boolean
 * is read as one (NULL when it is not), as SQLite's json_extract would have typed it; a
 * boolean literal compared with a json value is a real boolean. */
static void duck_side(struct cc *cc, const struct val *v, const struct val *other, struct frag *out)
{
    if (v->json && v_number(other)) {
        f_put(cc, out, "TRY_CAST(");
        f_cat(cc, out, &v->f);
        f_put(cc, out, " AS DOUBLE)");
    } else if (v->json && other->boolean) {
        f_put(cc, out, "TRY_CAST(");
        f_cat(cc, out, &v->f);
        f_put(cc, out, " AS BOOLEAN)");
    } else if (v->boolean && other->json) {
        f_put(cc, out, v->f.s[0] == '1' ? "TRUE" : "FALSE");
    } else {
        f_cat(cc, out, &v->f);
    }
}

static void f_text(struct cc *cc, struct frag *out, const struct frag *v)
{
    f_put(cc, out, "CAST(");
    f_cat(cc, out, v);
    f_put(cc, out, " AS VARCHAR)");
}

/* build_cond for DuckDB: the same rules, in DuckDB's SQL. Values of columns of different
 * types, and empty checks on non-text columns, are compared as text: DuckDB refuses to
 * compare them otherwise where SQLite compares loosely. */
static void build_cond_duck(struct cc *cc, enum filter_op op, const struct val *l,
                            const struct val *r, struct frag *out)
{
    static const char *const cmp[] = {[FILTER_OP_GT] = " > ",
                                      [FILTER_OP_GTE] = " >= ",
                                      [FILTER_OP_LT] = " < ",
                                      [FILTER_OP_LTE] = " <= "};
    bool le = l->literal && l->empty, re = r->literal && r->empty;
    bool eq = op == FILTER_OP_EQ;
    switch (op) {
    case FILTER_OP_EQ:
    case FILTER_OP_NEQ:
        if (l->json || r->json) {
            duck_side(cc, l, r, out);
            f_put(cc, out, eq ? " IS NOT DISTINCT FROM " : " IS DISTINCT FROM ");
            duck_side(cc, r, l, out);
        } else if (le && re) {
            f_put(cc, out, eq ? "TRUE" : "FALSE");
        } else if (le || re) {
            const struct val *x = le ? r : l;
            f_put(cc, out, "(");
            f_text(cc, out, &x->f);
            f_put(cc, out, eq ? " = '' OR " : " <> '' AND ");
            f_cat(cc, out, &x->f);
            f_put(cc, out, eq ? " IS NULL)" : " IS NOT NULL)");
        } else if (l->literal || r->literal) {
            f_cat(cc, out, &l->f);
            f_put(cc, out, eq ? " = " : " IS DISTINCT FROM ");
            f_cat(cc, out, &r->f);
        } else {
            f_put(cc, out, "COALESCE(");
            f_text(cc, out, &l->f);
            f_put(cc, out, eq ? ", '') = COALESCE(" : ", '') IS DISTINCT FROM COALESCE(");
            f_text(cc, out, &r->f);
            f_put(cc, out, ", '')");
        }
        return;
    case FILTER_OP_GT:
    case FILTER_OP_GTE:
    case FILTER_OP_LT:
    case FILTER_OP_LTE:
        duck_side(cc, l, r, out);
        f_put(cc, out, cmp[op]);
        duck_side(cc, r, l, out);
        return;
    case FILTER_OP_LIKE:
    case FILTER_OP_NLIKE:
        f_text(cc, out, &l->f);
        f_put(cc, out, op == FILTER_OP_LIKE ? " ILIKE " : " NOT ILIKE ");
        if (r->f.len == 1 && r->f.n == 1 && r->f.p[0].type != FILTER_PARAM_NULL) {
            struct filter_param t =
                r->f.p[0].type == FILTER_PARAM_TEXT ? r->f.p[0] : number_text(cc, &r->f.p[0]);
            struct filter_param w = like_param(cc, &t);
            f_param(cc, out, &w);
        } else {
            f_put(cc, out, "('%' || ");
            f_text(cc, out, &r->f);
            f_put(cc, out, " || '%')");
        }
        f_put(cc, out, " ESCAPE '\\'");
        return;
    }
}

static void build_cond(struct cc *cc, enum filter_op op, const struct val *l, const struct val *r,
                       struct frag *out)
{
    if (duck(cc)) {
        build_cond_duck(cc, op, l, r, out);
        return;
    }
    static const char *const cmp[] = {[FILTER_OP_GT] = " > ",
                                      [FILTER_OP_GTE] = " >= ",
                                      [FILTER_OP_LT] = " < ",
                                      [FILTER_OP_LTE] = " <= "};
    bool le = l->literal && l->empty, re = r->literal && r->empty;
    switch (op) {
    case FILTER_OP_EQ:
    case FILTER_OP_NEQ: {
        bool eq = op == FILTER_OP_EQ;
        if (l->json || r->json) {
            f_cat(cc, out, &l->f);
            f_put(cc, out, eq ? " IS " : " IS NOT ");
            f_cat(cc, out, &r->f);
        } else if (le && re) {
            f_put(cc, out, eq ? "1" : "0");
        } else if (le || re) {
            const struct val *x = le ? r : l;
            f_put(cc, out, "(");
            f_cat(cc, out, &x->f);
            f_put(cc, out, eq ? " = '' OR " : " IS NOT '' AND ");
            f_cat(cc, out, &x->f);
            f_put(cc, out, eq ? " IS NULL)" : " IS NOT NULL)");
        } else if (l->literal || r->literal) {
            f_cat(cc, out, &l->f);
            f_put(cc, out, eq ? " = " : " IS NOT ");
            f_cat(cc, out, &r->f);
        } else {
            f_put(cc, out, "COALESCE(");
            f_cat(cc, out, &l->f);
            f_put(cc, out, eq ? ", '') = COALESCE(" : ", '') IS NOT COALESCE(");
            f_cat(cc, out, &r->f);
            f_put(cc, out, ", '')");
        }
        return;
    }
    case FILTER_OP_GT:
    case FILTER_OP_GTE:
    case FILTER_OP_LT:
    case FILTER_OP_LTE:
        f_cat(cc, out, &l->f);
        f_put(cc, out, cmp[op]);
        f_cat(cc, out, &r->f);
        return;
    case FILTER_OP_LIKE:
    case FILTER_OP_NLIKE:
        f_cat(cc, out, &l->f);
        f_put(cc, out, op == FILTER_OP_LIKE ? " LIKE " : " NOT LIKE ");
        if (r->f.len == 1 && r->f.n == 1 && r->f.p[0].type != FILTER_PARAM_NULL) {
            /* a bound value: a "contains" pattern unless it has its own '%' */
            struct filter_param t =
                r->f.p[0].type == FILTER_PARAM_TEXT ? r->f.p[0] : number_text(cc, &r->f.p[0]);
            struct filter_param w = like_param(cc, &t);
            f_param(cc, out, &w);
        } else {
            f_put(cc, out, "('%' || ");
            f_cat(cc, out, &r->f);
            f_put(cc, out, " || '%')");
        }
        f_put(cc, out, " ESCAPE '\\'");
        return;
    }
}

/* The condition of the all-match check: a value fails when the comparison is false, and,
 * except for `=`, when it is NULL (a missing related row or an empty list). */
static void mm_where(struct cc *cc, enum filter_op op, const struct val *l, const struct val *r,
                     struct frag *out)
{
    if (op != FILTER_OP_EQ)
        f_put(cc, out, "(");
    f_put(cc, out, "NOT (");
    build_cond(cc, op, l, r, out);
    f_put(cc, out, ")");
    if (op == FILTER_OP_EQ)
        return;
    for (int side = 0; side < 2; side++) {
        const struct val *v = side ? r : l;
        if (!v->multi)
            continue;
        f_put(cc, out, " OR ");
        f_cat(cc, out, &v->f);
        f_put(cc, out, " IS NULL");
    }
    f_put(cc, out, ")");
}

static int compile_cmp(struct cc *cc, struct joinset *js, const struct filter_node *n,
                       struct frag *out)
{
    struct val l, r;
    int rc;
    if ((rc = resolve_operand(cc, js, &n->left, &l)) < 0)
        return rc;
    if ((rc = resolve_operand(cc, js, &n->right, &r)) < 0)
        return rc;
    bool all = !n->any && (l.multi || r.multi), guarded = l.guard.len || r.guard.len;
    if (all || guarded)
        f_put(cc, out, "(");
    build_cond(cc, n->op, &l, &r, out);
    if (all) {
        /* every value (pair of values when both sides are multi-valued) must match: over
         * fresh copies of the multi-valued sides' joins, none may fail */
        struct joinset fl = {.prefix = 'm'}, fr = {.prefix = 'm'};
        struct val lc = l, rcv = r;
        lc.multi = rcv.multi = false;
        if (l.multi && (rc = resolve_operand(cc, &fl, &n->left, &lc)) < 0)
            return rc;
        if (r.multi && (rc = resolve_operand(cc, &fr, &n->right, &rcv)) < 0)
            return rc;
        f_put(cc, out, " AND NOT EXISTS (SELECT 1 FROM (SELECT 1)");
        f_cat(cc, out, &fl.f);
        f_cat(cc, out, &fr.f);
        f_put(cc, out, " WHERE ");
        mm_where(cc, n->op, &lc, &rcv, out);
        f_put(cc, out, ")");
    }
    for (int side = 0; side < 2; side++) {
        const struct val *v = side ? &r : &l;
        if (v->guard.len) {
            f_put(cc, out, " AND ");
            f_cat(cc, out, &v->guard);
        }
    }
    if (all || guarded)
        f_put(cc, out, ")");
    return 0;
}

static int compile_node(struct cc *cc, struct joinset *js, const struct filter_node *n,
                        struct frag *out)
{
    if (n->kind == FILTER_NODE_CMP)
        return compile_cmp(cc, js, n, out);
    f_put(cc, out, "(");
    for (size_t i = 0; i < n->n_kids; i++) {
        if (i)
            f_put(cc, out, n->kind == FILTER_NODE_AND ? " AND " : " OR ");
        int rc = compile_node(cc, js, n->kids[i], out);
        if (rc < 0)
            return rc;
    }
    f_put(cc, out, ")");
    return 0;
}

/* Lexes, parses and compiles cc->e.src into out, wrapped in EXISTS when it needs joins. */
static int compile_expr(struct cc *cc, struct frag *out)
{
    struct filter_tok *toks;
    size_t n_toks;
    struct filter_node *root;
    int rc;
    if ((rc = filter__lex(&cc->e, cc->a, &toks, &n_toks)) < 0)
        return rc;
    if ((rc = filter__parse(&cc->e, cc->a, toks, n_toks, &root)) < 0)
        return rc;
    struct joinset js = {.prefix = 'j'};
    struct frag where = {0};
    if ((rc = compile_node(cc, &js, root, &where)) < 0)
        return rc;
    if (js.n == 0) {
        *out = where;
        return 0;
    }
    f_put(cc, out, "EXISTS (SELECT 1 FROM (SELECT 1)");
    f_cat(cc, out, &js.f);
    f_put(cc, out, " WHERE ");
    f_cat(cc, out, &where);
    f_put(cc, out, ")");
    return 0;
}

/* A client's filter may only look at related rows it could list: appends the target's list
 * rule (compiled for the joined row t_alias) to the join's ON condition in js. A locked
 * (superusers only) target is an error; an empty rule adds nothing. */
static int client_rule(struct cc *cc, struct joinset *js, const struct store_collection *t,
                       const char *t_alias, size_t off)
{
    if (!cc->ctx->client)
        return 0;
    const char *rule = t->rules[STORE_RULE_LIST];
    if (!rule)
        return filter__fail(&cc->e, ERR_INVALID, off,
                            "only superusers can filter by the collection \"%s\"", t->name);
    if (!*rule)
        return 0;
    struct filter_ctx sub = *cc->ctx;
    sub.collection = t;
    sub.alias = t_alias;
    sub.client = false;
    struct filter_error serr;
    struct cc scc = {.ctx = &sub,
                     .a = cc->a,
                     .e = {.src = rule, .src_len = strlen(rule), .what = "list rule", .err = &serr},
                     .n_alias = cc->n_alias};
    struct frag f = {0};
    int rc = compile_expr(&scc, &f);
    cc->n_alias = scc.n_alias;
    if (rc < 0)
        return filter__fail(&cc->e, ERR_INVALID, off, "the list rule of \"%s\" is broken (%s)",
                            t->name, serr.msg);
    f_put(cc, &js->f, " AND (");
    f_cat(cc, &js->f, &f);
    f_put(cc, &js->f, ")");
    return 0;
}

static bool valid_alias(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static int cc_init(struct cc *cc, const struct filter_ctx *ctx, const char *src, size_t len,
                   struct arena *a, struct filter_error *err, const char *what)
{
    memset(cc, 0, sizeof(*cc));
    cc->ctx = ctx;
    cc->a = a;
    cc->e = (struct filter__errctx){.src = src, .src_len = len, .what = what, .err = err};
    if (err)
        memset(err, 0, sizeof(*err));
    if (!ctx || !ctx->collection || !valid_alias(ctx->alias) || (!src && len))
        return filter__fail(&cc->e, ERR_INVALID, (size_t)-1, "bad compile context");
    return 0;
}

/* Hands the result out, unless the SQL text and its bound texts together exceed
 * FILTER__MAX_OUTPUT (list rules of related collections are copied into every join, so a
 * short filter can grow large). */
static int finish(struct cc *cc, struct frag *f, struct filter_sql *out)
{
    size_t total = f->len;
    for (size_t i = 0; i < f->n; i++)
        total += f->p[i].text_len;
    if (total > FILTER__MAX_OUTPUT)
        return filter__fail(&cc->e, ERR_LIMIT, (size_t)-1,
                            "the compiled query would exceed %d bytes", FILTER__MAX_OUTPUT);
    out->sql = f->s ? f->s : arena_strdup(cc->a, "");
    out->sql_len = f->len;
    out->params = f->p;
    out->n_params = f->n;
    return 0;
}

int filter_compile(const struct filter_ctx *ctx, const char *expr, size_t len, struct arena *a,
                   struct filter_sql *out, struct filter_error *err)
{
    struct cc cc;
    int rc = cc_init(&cc, ctx, expr, len, a, err, "filter");
    if (rc < 0)
        return rc;
    if (len > FILTER_MAX_LEN)
        return filter__fail(&cc.e, ERR_LIMIT, (size_t)-1, "longer than %d characters",
                            FILTER_MAX_LEN);
    if (len && memchr(expr, '\0', len))
        return filter__fail(&cc.e, ERR_INVALID,
                            (size_t)((const char *)memchr(expr, '\0', len) - expr),
                            "unexpected character 0x00");
    struct frag f = {0};
    if ((rc = compile_expr(&cc, &f)) < 0)
        return rc;
    return finish(&cc, &f, out);
}

/* ---- sort ---- */

static bool sort_ident_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    char c = s[0];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '@' || c == '#'))
        return false;
    for (size_t i = 1; i < n; i++) {
        c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':'))
            return false;
    }
    /* a lone "@", "_" or "#" is not a name; a single letter is */
    return s[n - 1] != '.' && s[n - 1] != ':' &&
           (n > 1 || (s[0] != '@' && s[0] != '_' && s[0] != '#'));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

int filter_compile_sort(const struct filter_ctx *ctx, const char *sort, size_t len, struct arena *a,
                        struct filter_sql *out, struct filter_error *err)
{
    struct cc cc;
    int rc = cc_init(&cc, ctx, sort, len, a, err, "sort");
    if (rc < 0)
        return rc;
    if (len > FILTER_MAX_LEN)
        return filter__fail(&cc.e, ERR_LIMIT, (size_t)-1, "longer than %d characters",
                            FILTER_MAX_LEN);
    struct frag list = {0};
    size_t n_fields = 0, i = 0;
    bool blank = true;
    for (size_t k = 0; k < len && blank; k++)
        blank = is_space(sort[k]);
    while (i <= len) {
        size_t start = i;
        while (i < len && sort[i] != ',')
            i++;
        size_t end = i++;
        while (start < end && is_space(sort[start]))
            start++;
        while (end > start && is_space(sort[end - 1]))
            end--;
        if (start == end) {
            if (blank)
                continue; /* an empty sort string: no order */
            return filter__fail(&cc.e, ERR_INVALID, start, "invalid sort field \"\"");
        }
        if (++n_fields > FILTER_MAX_SORT)
            return filter__fail(&cc.e, ERR_LIMIT, start, "more than %d sort fields",
                                FILTER_MAX_SORT);
        if (end - start > FILTER_MAX_SORT_LEN)
            return filter__fail(&cc.e, ERR_LIMIT, start, "sort field longer than %d characters",
                                FILTER_MAX_SORT_LEN);
        bool desc = sort[start] == '-';
        size_t name = start + (sort[start] == '-' || sort[start] == '+');
        if (!sort_ident_ok(sort + name, end - name))
            return filter__fail(&cc.e, ERR_INVALID, start, "invalid sort field");
        struct filter_tok tok = {.type = FILTER_TOK_IDENT,
                                 .off = name,
                                 .len = end - name,
                                 .text = arena_strndup(a, sort + name, end - name),
                                 .text_len = end - name};
        if (list.len)
            f_put(&cc, &list, ", ");
        if (!strcmp(tok.text, "@random")) {
            f_put(&cc, &list, "RANDOM()");
            continue;
        }
        if (!strcmp(tok.text, "@rowid")) {
            if (ctx->rowid_column) {
                f_col(&cc, &list, ctx->alias, ctx->rowid_column);
            } else {
                f_ident(&cc, &list, ctx->alias);
                f_put(&cc, &list, ctx->dialect == FILTER_DIALECT_DUCKDB ? ".rowid" : "._rowid_");
            }
        } else {
            struct joinset js = {.prefix = 'j'};
            struct val v;
            if ((rc = resolve_ident(&cc, &js, &tok, &v)) < 0)
                return rc;
            if (v.literal)
                return filter__fail(&cc.e, ERR_INVALID, name, "invalid sort field \"%s\"",
                                    tok.text);
            if (js.n) {
                f_put(&cc, &list, "(SELECT ");
                f_cat(&cc, &list, &v.f);
                f_put(&cc, &list, " FROM (SELECT 1)");
                f_cat(&cc, &list, &js.f);
                f_put(&cc, &list, " LIMIT 1)");
            } else {
                f_cat(&cc, &list, &v.f);
            }
        }
        f_put(&cc, &list, desc ? " DESC" : " ASC");
    }
    return finish(&cc, &list, out);
}
