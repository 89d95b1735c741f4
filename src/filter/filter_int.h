/* filter_int.h - internals of the filter module shared by its files and its unit tests:
 * the scanner's tokens, the AST, and the error helper. Not for other modules. */
#ifndef TANDEM_FILTER_FILTER_INT_H
#define TANDEM_FILTER_FILTER_INT_H

#include <stdarg.h>

#include "filter/filter.h"

#define FILTER__MAX_NESTING 64 /* parenthesised groups inside each other */
#define FILTER__MAX_FUNC_DEPTH 3
#define FILTER__MAX_OUTPUT (1 << 20) /* bytes of compiled SQL plus bound texts */

enum filter_tok_type {
    FILTER_TOK_EOF,
    FILTER_TOK_IDENT,  /* title, author.name, @request.auth.id, tags:each */
    FILTER_TOK_FUNC,   /* an identifier immediately followed by '(' (the '(' is LPAREN) */
    FILTER_TOK_NUMBER, /* -12.5 */
    FILTER_TOK_TEXT,   /* 'x' or "x"; text holds the value with \<quote> unescaped */
    FILTER_TOK_SIGN,   /* = != > >= < <= ~ !~ and the ?-forms; op/any say which */
    FILTER_TOK_AND,    /* && */
    FILTER_TOK_OR,     /* || */
    FILTER_TOK_LPAREN,
    FILTER_TOK_RPAREN,
    FILTER_TOK_COMMA,
};

enum filter_op {
    FILTER_OP_EQ,
    FILTER_OP_NEQ,
    FILTER_OP_GT,
    FILTER_OP_GTE,
    FILTER_OP_LT,
    FILTER_OP_LTE,
    FILTER_OP_LIKE,
    FILTER_OP_NLIKE,
};

struct filter_tok {
    enum filter_tok_type type;
    size_t off;       /* byte offset of the token in the input */
    size_t len;       /* bytes of the token in the input (quotes included) */
    const char *text; /* NUL-terminated value (arena): the identifier, number or text */
    size_t text_len;
    enum filter_op op; /* SIGN */
    bool any;          /* SIGN: the ?-form */
};

/* Where errors go while compiling: the input (for positions) and its kind ("filter"/"sort"). */
struct filter__errctx {
    const char *src;
    size_t src_len;
    const char *what;
    struct filter_error *err;
};

/* Fills e->err (if any) with "invalid <what> at position <pos>: <msg>" and returns code.
 * off is a byte offset into the input; (size_t)-1 means the whole input. */
int filter__fail(const struct filter__errctx *e, int code, size_t off, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* 1-based character position of byte offset off (UTF-8 continuation bytes not counted). */
size_t filter__pos(const char *src, size_t off);

/* Scans src into tokens (ending with one EOF token) allocated in a. */
int filter__lex(const struct filter__errctx *e, struct arena *a, struct filter_tok **toks_out,
                size_t *n_out) MUST_USE;

enum filter_operand_kind {
    FILTER_OPND_IDENT,
    FILTER_OPND_NUMBER,
    FILTER_OPND_TEXT,
    FILTER_OPND_FUNC,
};

struct filter_operand {
    enum filter_operand_kind kind;
    const struct filter_tok *tok; /* the identifier, number, text or function name */
    struct filter_operand *args;  /* FUNC */
    size_t n_args;
};

enum filter_node_kind {
    FILTER_NODE_CMP,
    FILTER_NODE_AND,
    FILTER_NODE_OR,
};

struct filter_node {
    enum filter_node_kind kind;
    size_t off; /* byte offset where the node starts */
    /* CMP */
    struct filter_operand left, right;
    enum filter_op op;
    bool any;
    /* AND / OR: at least two children */
    struct filter_node **kids;
    size_t n_kids;
};

/* Parses tokens into a tree: || of && of comparisons and groups. Counts comparisons against
 * FILTER_MAX_EXPRS. An input without any comparison is an error. */
int filter__parse(const struct filter__errctx *e, struct arena *a, const struct filter_tok *toks,
                  size_t n_toks, struct filter_node **root_out) MUST_USE;

#endif
