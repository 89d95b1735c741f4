/* parser.c - tokens to a tree. The grammar is fexpr's:
 *
 *     expr    := term ( ("&&" | "||") term )*
 *     term    := operand SIGN operand | "(" expr ")" | "(" ")"
 *     operand := identifier | number | text | function
 *     function:= name "(" [ operand ( "," operand )* [","] ] ")"
 *
 * with && binding tighter than ||. Empty groups are dropped together with their join. */
#include <string.h>

#include "filter/filter_int.h"

struct parser {
    const struct filter__errctx *e;
    struct arena *a;
    const struct filter_tok *t;
    size_t n, i;
    size_t n_cmp;
};

static const struct filter_tok *peek(struct parser *p)
{
    return &p->t[p->i < p->n ? p->i : p->n - 1];
}

static const struct filter_tok *next(struct parser *p)
{
    const struct filter_tok *t = peek(p);
    if (p->i < p->n - 1)
        p->i++;
    return t;
}

static int unexpected(struct parser *p, const struct filter_tok *t, const char *expected)
{
    if (t->type == FILTER_TOK_EOF)
        return filter__fail(p->e, ERR_INVALID, t->off, "unexpected end of expression, %s",
                            expected);
    if (t->type == FILTER_TOK_TEXT)
        return filter__fail(p->e, ERR_INVALID, t->off, "unexpected quoted text, %s", expected);
    return filter__fail(p->e, ERR_INVALID, t->off, "unexpected \"%s\", %s", t->text, expected);
}

static int parse_operand(struct parser *p, int depth, struct filter_operand *o)
{
    const struct filter_tok *t = next(p);
    memset(o, 0, sizeof(*o));
    o->tok = t;
    switch (t->type) {
    case FILTER_TOK_IDENT: o->kind = FILTER_OPND_IDENT; return 0;
    case FILTER_TOK_NUMBER: o->kind = FILTER_OPND_NUMBER; return 0;
    case FILTER_TOK_TEXT: o->kind = FILTER_OPND_TEXT; return 0;
    case FILTER_TOK_FUNC: break;
    default: return unexpected(p, t, "expected an identifier, a number or a quoted text");
    }
    o->kind = FILTER_OPND_FUNC;
    if (depth >= FILTER__MAX_FUNC_DEPTH)
        return filter__fail(p->e, ERR_LIMIT, t->off, "functions nested deeper than %d",
                            FILTER__MAX_FUNC_DEPTH);
    next(p); /* the '(' the scanner saw right after the name */
    size_t cap = 0;
    for (;;) {
        if (peek(p)->type == FILTER_TOK_RPAREN) {
            next(p);
            return 0;
        }
        if (o->n_args == cap) {
            cap = cap ? cap * 2 : 4;
            struct filter_operand *v = arena_alloc(p->a, cap * sizeof(*v));
            if (o->n_args)
                memcpy(v, o->args, o->n_args * sizeof(*v));
            o->args = v;
        }
        int rc = parse_operand(p, depth + 1, &o->args[o->n_args]);
        if (rc < 0)
            return rc;
        o->n_args++;
        const struct filter_tok *sep = peek(p);
        if (sep->type == FILTER_TOK_COMMA)
            next(p);
        else if (sep->type != FILTER_TOK_RPAREN)
            return unexpected(p, sep, "expected ',' or ')' in the function arguments");
    }
}

static int parse_expr(struct parser *p, int depth, struct filter_node **out);

static int parse_term(struct parser *p, int depth, struct filter_node **out)
{
    const struct filter_tok *t = peek(p);
    *out = NULL;
    if (t->type == FILTER_TOK_LPAREN) {
        next(p);
        if (depth >= FILTER__MAX_NESTING)
            return filter__fail(p->e, ERR_LIMIT, t->off, "parentheses nested deeper than %d",
                                FILTER__MAX_NESTING);
        if (peek(p)->type == FILTER_TOK_RPAREN) {
            next(p);
            return 0; /* empty group: dropped */
        }
        int rc = parse_expr(p, depth + 1, out);
        if (rc < 0)
            return rc;
        const struct filter_tok *close = peek(p);
        if (close->type == FILTER_TOK_EOF)
            return filter__fail(p->e, ERR_INVALID, t->off, "unbalanced parenthesis");
        if (close->type != FILTER_TOK_RPAREN)
            return unexpected(p, close, "expected && or || or ')'");
        next(p);
        return 0;
    }
    struct filter_node *n = arena_zalloc(p->a, sizeof(*n));
    n->kind = FILTER_NODE_CMP;
    n->off = t->off;
    int rc = parse_operand(p, 0, &n->left);
    if (rc < 0)
        return rc;
    const struct filter_tok *sign = next(p);
    if (sign->type != FILTER_TOK_SIGN)
        return unexpected(p, sign, "expected an operator such as = or ~");
    n->op = sign->op;
    n->any = sign->any;
    if ((rc = parse_operand(p, 0, &n->right)) < 0)
        return rc;
    if (++p->n_cmp > FILTER_MAX_EXPRS)
        return filter__fail(p->e, ERR_LIMIT, n->off, "more than %d expressions", FILTER_MAX_EXPRS);
    *out = n;
    return 0;
}

static struct filter_node *group(struct parser *p, enum filter_node_kind kind,
                                 struct filter_node **kids, size_t n)
{
    if (n == 1)
        return kids[0];
    struct filter_node *g = arena_zalloc(p->a, sizeof(*g));
    g->kind = kind;
    g->off = kids[0]->off;
    g->kids = arena_alloc(p->a, n * sizeof(*kids));
    memcpy(g->kids, kids, n * sizeof(*kids));
    g->n_kids = n;
    return g;
}

struct nodes {
    struct filter_node **v;
    size_t n, cap;
};

static void nodes_push(struct arena *a, struct nodes *l, struct filter_node *x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        struct filter_node **v = arena_alloc(a, l->cap * sizeof(*v));
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
    }
    l->v[l->n++] = x;
}

/* Sets *out to NULL when the expression held only empty groups. */
static int parse_expr(struct parser *p, int depth, struct filter_node **out)
{
    struct nodes ors = {0}, ands = {0};
    *out = NULL;
    for (;;) {
        struct filter_node *term;
        int rc = parse_term(p, depth, &term);
        if (rc < 0)
            return rc;
        if (term)
            nodes_push(p->a, &ands, term);
        const struct filter_tok *j = peek(p);
        if (j->type != FILTER_TOK_AND && j->type != FILTER_TOK_OR)
            break;
        next(p);
        const struct filter_tok *after = peek(p);
        if (after->type == FILTER_TOK_EOF || after->type == FILTER_TOK_RPAREN ||
            after->type == FILTER_TOK_AND || after->type == FILTER_TOK_OR)
            return unexpected(p, after, "expected an expression after && or ||");
        if (j->type == FILTER_TOK_OR && ands.n) {
            nodes_push(p->a, &ors, group(p, FILTER_NODE_AND, ands.v, ands.n));
            ands = (struct nodes){0};
        }
    }
    if (ands.n)
        nodes_push(p->a, &ors, group(p, FILTER_NODE_AND, ands.v, ands.n));
    if (ors.n)
        *out = group(p, FILTER_NODE_OR, ors.v, ors.n);
    return 0;
}

int filter__parse(const struct filter__errctx *e, struct arena *a, const struct filter_tok *toks,
                  size_t n_toks, struct filter_node **root_out)
{
    struct parser p = {.e = e, .a = a, .t = toks, .n = n_toks};
    struct filter_node *root;
    if (toks[0].type == FILTER_TOK_EOF)
        return filter__fail(e, ERR_INVALID, (size_t)-1, "empty filter expression");
    int rc = parse_expr(&p, 0, &root);
    if (rc < 0)
        return rc;
    const struct filter_tok *t = peek(&p);
    if (t->type != FILTER_TOK_EOF)
        return unexpected(&p, t, "expected && or || or the end");
    if (!root)
        return filter__fail(e, ERR_INVALID, (size_t)-1, "empty filter expression");
    *root_out = root;
    return 0;
}
