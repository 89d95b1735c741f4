/* test_filter_lexer.c - the filter scanner: a table of inputs to token lists, the sign table,
 * and bad input with the position of the error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/core.h"
#include "filter/filter_int.h"

static const char *const TYPE_NAMES[] = {
    [FILTER_TOK_EOF] = "EOF",    [FILTER_TOK_IDENT] = "ID", [FILTER_TOK_FUNC] = "FN",
    [FILTER_TOK_NUMBER] = "NUM", [FILTER_TOK_TEXT] = "TXT", [FILTER_TOK_SIGN] = "OP",
    [FILTER_TOK_AND] = "AND",    [FILTER_TOK_OR] = "OR",    [FILTER_TOK_LPAREN] = "LP",
    [FILTER_TOK_RPAREN] = "RP",  [FILTER_TOK_COMMA] = "CM",
};

/* "ID(title)@1 OP(=)@7 TXT(x)@9" : type, value and 1-based position of every token but EOF */
static int lex_str(const char *src, char *out, size_t out_len, struct filter_error *err)
{
    struct arena a;
    arena_init(&a, 1024);
    struct filter__errctx e = {.src = src, .src_len = strlen(src), .what = "filter", .err = err};
    struct filter_tok *t;
    size_t n;
    int rc = filter__lex(&e, &a, &t, &n);
    out[0] = '\0';
    if (rc == 0) {
        size_t len = 0;
        assert_true(n >= 1);
        assert_int_equal(t[n - 1].type, FILTER_TOK_EOF);
        for (size_t i = 0; i + 1 < n; i++)
            len += (size_t)snprintf(out + len, out_len - len, "%s%s(%s)@%zu", i ? " " : "",
                                    TYPE_NAMES[t[i].type], t[i].text, filter__pos(src, t[i].off));
    }
    arena_release(&a);
    return rc;
}

static const struct {
    const char *in, *want;
} TOKENS[] = {
    {"title = 'x'", "ID(title)@1 OP(=)@7 TXT(x)@9"},
    {"a=\"b\"", "ID(a)@1 OP(=)@2 TXT(b)@3"},
    {"'it\\'s' \"say \\\"hi\\\"\"", "TXT(it's)@1 TXT(say \"hi\")@9"},
    {"'a\\\"b' \"a\\'b\"", "TXT(a\\\"b)@1 TXT(a\\'b)@8"},
    {"'back\\\\slash'", "TXT(back\\\\slash)@1"},
    {"'' \"\"", "TXT()@1 TXT()@4"},
    {"'a && b || (c)'", "TXT(a && b || (c))@1"},
    {"1 -2 3.25 -0.5 007", "NUM(1)@1 NUM(-2)@3 NUM(3.25)@6 NUM(-0.5)@11 NUM(007)@16"},
    {"a>-1", "ID(a)@1 OP(>)@2 NUM(-1)@3"},
    {"author.name:lower", "ID(author.name:lower)@1"},
    {"@request.auth.id @now _x #tag x1_2", "ID(@request.auth.id)@1 ID(@now)@18 ID(_x)@23 "
                                           "ID(#tag)@26 ID(x1_2)@31"},
    {"@collection.news:n.title", "ID(@collection.news:n.title)@1"},
    {"a&&b||c", "ID(a)@1 AND(&&)@2 ID(b)@4 OR(||)@5 ID(c)@7"},
    {"((a = 1))", "LP(()@1 LP(()@2 ID(a)@3 OP(=)@5 NUM(1)@7 RP())@8 RP())@9"},
    {"f(a, 'b',)", "FN(f)@1 LP(()@2 ID(a)@3 CM(,)@4 TXT(b)@6 CM(,)@9 RP())@10"},
    {"f (a)", "ID(f)@1 LP(()@3 ID(a)@4 RP())@5"},
    {"a = 1 // the rest is a comment = 'x\n&& b = 2",
     "ID(a)@1 OP(=)@3 NUM(1)@5 AND(&&)@37 ID(b)@40 OP(=)@42 NUM(2)@44"},
    {"// only a comment", ""},
    {" \t\n ", ""},
    {"title ~ 'héllo' && x = 1", "ID(title)@1 OP(~)@7 TXT(héllo)@9 AND(&&)@17 ID(x)@20 OP(=)@22 "
                                 "NUM(1)@24"},
    {"a?!~b", "ID(a)@1 OP(?!~)@2 ID(b)@5"},
};

static void test_tokens(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(TOKENS); i++) {
        char got[512];
        struct filter_error err;
        int rc = lex_str(TOKENS[i].in, got, sizeof(got), &err);
        if (rc != 0)
            fail_msg("`%s`: %s", TOKENS[i].in, err.msg);
        if (strcmp(got, TOKENS[i].want) != 0)
            fail_msg("`%s`:\n got  %s\n want %s", TOKENS[i].in, got, TOKENS[i].want);
    }
}

static void test_signs(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        enum filter_op op;
        bool any;
    } signs[] = {
        {"=", FILTER_OP_EQ, false},   {"!=", FILTER_OP_NEQ, false},
        {">", FILTER_OP_GT, false},   {">=", FILTER_OP_GTE, false},
        {"<", FILTER_OP_LT, false},   {"<=", FILTER_OP_LTE, false},
        {"~", FILTER_OP_LIKE, false}, {"!~", FILTER_OP_NLIKE, false},
        {"?=", FILTER_OP_EQ, true},   {"?!=", FILTER_OP_NEQ, true},
        {"?>", FILTER_OP_GT, true},   {"?>=", FILTER_OP_GTE, true},
        {"?<", FILTER_OP_LT, true},   {"?<=", FILTER_OP_LTE, true},
        {"?~", FILTER_OP_LIKE, true}, {"?!~", FILTER_OP_NLIKE, true},
    };
    for (size_t i = 0; i < ARRAY_LEN(signs); i++) {
        char src[32];
        snprintf(src, sizeof(src), "a %s b", signs[i].s);
        struct arena a;
        arena_init(&a, 1024);
        struct filter__errctx e = {.src = src, .src_len = strlen(src), .what = "filter"};
        struct filter_tok *t;
        size_t n;
        assert_int_equal(filter__lex(&e, &a, &t, &n), 0);
        assert_int_equal(n, 4);
        assert_int_equal(t[1].type, FILTER_TOK_SIGN);
        assert_int_equal(t[1].op, signs[i].op);
        assert_int_equal(t[1].any, signs[i].any);
        assert_string_equal(t[1].text, signs[i].s);
        arena_release(&a);
    }
}

static const struct {
    const char *in;
    size_t pos;
    const char *msg;
} BAD[] = {
    {"title = 'abc", 9, "unterminated quoted text"},
    {"title = \"abc'", 9, "unterminated quoted text"},
    {"title = 'abc\\'", 9, "unterminated quoted text"},
    {"a = 1 & b = 2", 7, "unexpected character '&'"},
    {"a = 1 | b", 7, "unexpected character '|'"},
    {"a = 1\r", 6, "unexpected character 0x0D"},
    {"a = $x", 5, "unexpected character '$'"},
    {"a = ;", 5, "unexpected character ';'"},
    {"a = `x`", 5, "unexpected character '`'"},
    {"a = [1]", 5, "unexpected character '['"},
    {"a / b", 3, "unexpected character '/'"},
    {"é = 1", 1, "unexpected character (non-ASCII)"},
    {"a = 1 && é = 1", 10, "unexpected character (non-ASCII)"},
    {"a == 1", 3, "invalid operator \"==\""},
    {"a =! 1", 3, "invalid operator \"=!\""},
    {"a ?? 1", 3, "invalid operator \"??\""},
    {"a ! 1", 3, "invalid operator \"!\""},
    {"a = -", 5, "invalid number"},
    {"a = -x", 5, "invalid number"},
    {"a = 5.", 5, "invalid number"},
    {"a = 1.2.3", 5, "invalid number"},
    {"a = .5", 5, "unexpected character '.'"},
    {"author. = 1", 1, "invalid identifier \"author.\""},
    {"title: = 1", 1, "invalid identifier \"title:\""},
    {"@ = 1", 1, "invalid identifier \"@\""},
    {"_ = 1", 1, "invalid identifier \"_\""},
    {"# = 1", 1, "invalid identifier \"#\""},
};

static void test_bad_input(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(BAD); i++) {
        char got[256];
        struct filter_error err;
        int rc = lex_str(BAD[i].in, got, sizeof(got), &err);
        if (rc != ERR_INVALID)
            fail_msg("`%s`: rc %d, tokens %s", BAD[i].in, rc, got);
        assert_int_equal(err.code, ERR_INVALID);
        if (err.pos != BAD[i].pos || !strstr(err.msg, BAD[i].msg))
            fail_msg("`%s`: got pos %zu `%s`, want pos %zu `%s`", BAD[i].in, err.pos, err.msg,
                     BAD[i].pos, BAD[i].msg);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "invalid filter at position %zu: ", BAD[i].pos);
        assert_memory_equal(err.msg, prefix, strlen(prefix));
    }
}

/* Positions count characters, not bytes. */
static void test_positions_utf8(void **state)
{
    (void)state;
    assert_int_equal(filter__pos("abc", 0), 1);
    assert_int_equal(filter__pos("abc", 2), 3);
    assert_int_equal(filter__pos("\xc3\xa9\xc3\xa9x", 4), 3);
    assert_int_equal(filter__pos("\xe2\x82\xac!", 3), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_signs),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_positions_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
