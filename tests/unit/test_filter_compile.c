/* test_filter_compile.c - the parser and compiler: expressions to the exact SQL text and
 * parameter list, malformed expressions to the error code and position, the limits, the
 * client restrictions and the sort compiler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "filter/filter_int.h"
#include "filter_fixture.h"

/* Params as "T:x I:1 D:1.5 N" */
static void fmt_params(const struct filter_sql *q, char *out, size_t out_len)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < q->n_params; i++) {
        const struct filter_param *p = &q->params[i];
        const char *sep = i ? " " : "";
        int n = 0;
        switch (p->type) {
        case FILTER_PARAM_NULL: n = snprintf(out + len, out_len - len, "%sN", sep); break;
        case FILTER_PARAM_INT:
            n = snprintf(out + len, out_len - len, "%sI:%lld", sep, (long long)p->i);
            break;
        case FILTER_PARAM_DOUBLE:
            n = snprintf(out + len, out_len - len, "%sD:%g", sep, p->d);
            break;
        case FILTER_PARAM_TEXT:
            assert_int_equal(strlen(p->text), p->text_len);
            n = snprintf(out + len, out_len - len, "%sT:%s", sep, p->text);
            break;
        }
        len += (size_t)n;
    }
}

static const struct {
    const char *in, *sql, *params;
} SQL[] = {
    {"title = 'x'", "\"r\".\"title\" = ?", "T:x"},
    {"'x' = title", "? = \"r\".\"title\"", "T:x"},
    {"title = ''", "(\"r\".\"title\" = '' OR \"r\".\"title\" IS NULL)", ""},
    {"title = null", "(\"r\".\"title\" = '' OR \"r\".\"title\" IS NULL)", ""},
    {"null != title", "(\"r\".\"title\" IS NOT '' AND \"r\".\"title\" IS NOT NULL)", ""},
    {"title != 'x'", "\"r\".\"title\" IS NOT ?", "T:x"},
    {"title = status", "COALESCE(\"r\".\"title\", '') = COALESCE(\"r\".\"status\", '')", ""},
    {"title != status", "COALESCE(\"r\".\"title\", '') IS NOT COALESCE(\"r\".\"status\", '')", ""},
    {"null = ''", "1", ""},
    {"'' != NULL", "0", ""},
    {"data = 5", "json_extract(\"r\".\"data\", '$') IS ?", "I:5"},
    {"data.a.0.b != 'x'", "json_extract(\"r\".\"data\", ?) IS NOT ?", "T:$.\"a\"[0].\"b\" T:x"},
    {"views > 1", "\"r\".\"views\" > ?", "I:1"},
    {"views >= 2", "\"r\".\"views\" >= ?", "I:2"},
    {"views < -2.5", "\"r\".\"views\" < ?", "D:-2.5"},
    {"views <= 10", "\"r\".\"views\" <= ?", "I:10"},
    {"views > 99999999999999999999", "\"r\".\"views\" > ?", "D:1e+20"},
    {"views > 1 && views < 3 || published = true",
     "((\"r\".\"views\" > ? AND \"r\".\"views\" < ?) OR \"r\".\"published\" = 1)", "I:1 I:3"},
    {"views > 1 && (views < 3 || published = false)",
     "(\"r\".\"views\" > ? AND (\"r\".\"views\" < ? OR \"r\".\"published\" = 0))", "I:1 I:3"},
    {"views = 1 || views = 2 || views = 3",
     "(\"r\".\"views\" = ? OR \"r\".\"views\" = ? OR \"r\".\"views\" = ?)", "I:1 I:2 I:3"},
    {"(((views = 1)))", "\"r\".\"views\" = ?", "I:1"},
    {"() && views = 1 && ()", "\"r\".\"views\" = ?", "I:1"},
    {"title ~ 'abc'", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%abc%"},
    {"title ~ 'a%'", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:a%"},
    {"title ~ 'a\\%b'", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%a\\%b%"},
    {"title ?~ 'x_y\\\\z'", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%x\\_y\\\\z%"},
    {"title ~ 'a\\b'", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%a\\\\b%"},
    {"title !~ 'abc'", "\"r\".\"title\" NOT LIKE ? ESCAPE '\\'", "T:%abc%"},
    {"title !~ status", "\"r\".\"title\" NOT LIKE ('%' || \"r\".\"status\" || '%') ESCAPE '\\'",
     ""},
    {"title ~ 5", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%5%"},
    {"title ~ -2.5", "\"r\".\"title\" LIKE ? ESCAPE '\\'", "T:%-2.5%"},
    {"title ~ true", "\"r\".\"title\" LIKE ('%' || 1 || '%') ESCAPE '\\'", ""},
    {"title:lower = 'x'", "LOWER(\"r\".\"title\") = ?", "T:x"},
    {"cats:length > 1",
     "json_array_length(CASE WHEN json_valid(\"r\".\"cats\") THEN \"r\".\"cats\" ELSE '[]' END) > "
     "?",
     "I:1"},
    {"author.id = 'u1'", "\"r\".\"author\" = ?", "T:u1"},
    {"author.name = 'A'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"users\" AS \"_j1\" ON \"_j1\".\"id\" = "
     "\"r\".\"author\" WHERE \"_j1\".\"name\" = ?)",
     "T:A"},
    {"author.org.id = 'o1'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"users\" AS \"_j1\" ON \"_j1\".\"id\" = "
     "\"r\".\"author\" WHERE \"_j1\".\"org\" = ?)",
     "T:o1"},
    {"tags.name ?= 'go'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(CASE WHEN json_valid(\"r\".\"tags\") "
     "THEN \"r\".\"tags\" ELSE '[]' END) AS \"_j1\" LEFT JOIN "
     "\"tags\" AS \"_j2\" ON \"_j2\".\"id\" = \"_j1\".\"value\" WHERE \"_j2\".\"name\" = ?)",
     "T:go"},
    {"tags.name = 'go'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(CASE WHEN json_valid(\"r\".\"tags\") "
     "THEN \"r\".\"tags\" ELSE '[]' END) AS \"_j1\" LEFT JOIN "
     "\"tags\" AS \"_j2\" ON \"_j2\".\"id\" = \"_j1\".\"value\" WHERE (\"_j2\".\"name\" = ? AND "
     "NOT EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(CASE WHEN "
     "json_valid(\"r\".\"tags\") THEN \"r\".\"tags\" ELSE '[]' END) AS \"_m3\" LEFT "
     "JOIN \"tags\" AS \"_m4\" ON \"_m4\".\"id\" = \"_m3\".\"value\" WHERE NOT (\"_m4\".\"name\" "
     "= ?))))",
     "T:go T:go"},
    {"tags.name ?= 'a' && tags.color ?= 'b'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(CASE WHEN json_valid(\"r\".\"tags\") "
     "THEN \"r\".\"tags\" ELSE '[]' END) AS \"_j1\" LEFT JOIN "
     "\"tags\" AS \"_j2\" ON \"_j2\".\"id\" = \"_j1\".\"value\" WHERE (\"_j2\".\"name\" = ? AND "
     "\"_j2\".\"color\" = ?))",
     "T:a T:b"},
    {"cats:each ?= 'a'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(CASE WHEN json_valid(\"r\".\"cats\") "
     "THEN \"r\".\"cats\" ELSE '[]' END) AS \"_j1\" WHERE "
     "\"_j1\".\"value\" = ?)",
     "T:a"},
    {"comments_via_post.user ?= 'u1'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"comments\" AS \"_j1\" ON \"_j1\".\"post\" = "
     "\"r\".\"id\" WHERE \"_j1\".\"user\" = ?)",
     "T:u1"},
    {"likes_via_posts.id ?= 'l1'",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"likes\" AS \"_j1\" ON EXISTS (SELECT 1 FROM "
     "json_each(CASE WHEN json_valid(\"_j1\".\"posts\") THEN \"_j1\".\"posts\" ELSE '[]' END) AS "
     "\"_j2\" WHERE \"_j2\".\"value\" = \"r\".\"id\") WHERE "
     "\"_j1\".\"id\" = ?)",
     "T:l1"},
    {"@collection.tags:t.name ?= title",
     "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"tags\" AS \"_j1\" WHERE "
     "COALESCE(\"_j1\".\"name\", '') = COALESCE(\"r\".\"title\", ''))",
     ""},
    {"@now > created", "? > \"r\".\"created\"", "T:2026-11-21 12:30:45.123Z"},
    {"@yesterday < created && @tomorrow > created",
     "(? < \"r\".\"created\" AND ? > \"r\".\"created\")",
     "T:2026-11-20 12:30:45.123Z T:2026-11-22 12:30:45.123Z"},
    {"@todayStart = @todayEnd", "? = ?", "T:2026-11-21 00:00:00.000Z T:2026-11-21 23:59:59.999Z"},
    {"@monthStart = @monthEnd", "? = ?", "T:2026-11-01 00:00:00.000Z T:2026-11-30 23:59:59.999Z"},
    {"@yearStart = @yearEnd", "? = ?", "T:2026-01-01 00:00:00.000Z T:2026-12-31 23:59:59.999Z"},
    {"@second = @minute && @hour = @weekday && @day = @month && @year = 1",
     "(? = ? AND ? = ? AND ? = ? AND ? = ?)", "I:45 I:30 I:12 I:6 I:21 I:11 I:2026 I:1"},
    {"true = published", "1 = \"r\".\"published\"", ""},
    {"FALSE = published", "0 = \"r\".\"published\"", ""},
    {"@request.auth.id = id", "(\"r\".\"id\" = '' OR \"r\".\"id\" IS NULL)", ""},
    {"id = 'a' // comment\n", "\"r\".\"id\" = ?", "T:a"},
    {"strftime('%Y-%m', created, 'start of day',) = '2026-11'",
     "COALESCE(strftime(?, \"r\".\"created\", ?), '') = ?", "T:%Y-%m T:start of day T:2026-11"},
    {"geoDistance(views, 1, 2.5, views) < 25",
     "(6371 * acos(max(-1.0, min(1.0, cos(radians(?)) * cos(radians(\"r\".\"views\")) * "
     "cos(radians(?) - radians(\"r\".\"views\")) + sin(radians(?)) * "
     "sin(radians(\"r\".\"views\")))))) < ?",
     "I:1 D:2.5 I:1 I:25"},
    {"geoDistance(loc.lon, loc.lat, 23.32, 42.69) < 25",
     "(6371 * acos(max(-1.0, min(1.0, cos(radians(json_extract(\"r\".\"loc\", '$.lat'))) * "
     "cos(radians(?)) * cos(radians(?) - radians(json_extract(\"r\".\"loc\", '$.lon'))) + "
     "sin(radians(json_extract(\"r\".\"loc\", '$.lat'))) * sin(radians(?)))))) < ?",
     "D:42.69 D:23.32 D:42.69 I:25"},
    {"loc.lat > 42", "json_extract(\"r\".\"loc\", '$.lat') > ?", "I:42"},
};

static void test_sql_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(SQL); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, SQL[i].in, strlen(SQL[i].in), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", SQL[i].in, err.msg);
        char params[512];
        fmt_params(&q, params, sizeof(params));
        assert_int_equal(strlen(q.sql), q.sql_len);
        if (strcmp(q.sql, SQL[i].sql) != 0 || strcmp(params, SQL[i].params) != 0)
            fail_msg("`%s`:\n got  %s | %s\n want %s | %s", SQL[i].in, q.sql, params, SQL[i].sql,
                     SQL[i].params);
        arena_release(&a);
    }
}

/* @request.* values are bound, never spliced; the request text in a value stays a value. */
static void test_request_params(void **state)
{
    (void)state;
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    json_t *auth = json_pack("{s:s, s:b}", "id", "u1\" OR 1=1 --", "verified", 0);
    json_t *body = json_pack("{s:s, s:s, s:[i,i,i], s:f}", "title", "T'x", "views", "12.5", "tags",
                             1, 2, 3, "num", 1.5);
    json_t *headers = json_pack("{s:s}", "x_api_key", "k");
    struct filter_request rq = {.method = "PATCH",
                                .context = "default",
                                .auth = auth,
                                .auth_collection = FX_USERS,
                                .body = body,
                                .headers = headers};
    ctx.request = &rq;
    static const struct {
        const char *in, *sql, *params;
    } cases[] = {
        {"author = @request.auth.id", "\"r\".\"author\" = ?", "T:u1\" OR 1=1 --"},
        {"@request.auth.verified = false", "0 = 0", ""},
        {"@request.auth.collectionId = 'x'", "? = ?", "T:_pb_users_auth_ T:x"},
        {"@request.auth.role = 'admin'",
         "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN \"users\" AS \"_j1\" ON \"_j1\".\"id\" = ? "
         "WHERE \"_j1\".\"role\" = ?)",
         "T:u1\" OR 1=1 -- T:admin"},
        {"@request.body.title = title", "? = \"r\".\"title\"", "T:T'x"},
        {"@request.body.title:lower = \"t'x\"", "? = ?", "T:t'x T:t'x"},
        {"@request.body.views = views", "? = \"r\".\"views\"", "D:12.5"},
        {"@request.body.num = 1", "? = ?", "D:1.5 I:1"},
        {"@request.body.tags:length = 3", "? = ?", "I:3 I:3"},
        {"@request.body.tags:isset = true && @request.body.nope:isset = false", "(1 = 1 AND 0 = 0)",
         ""},
        {"@request.body.tags:each ?= 2",
         "EXISTS (SELECT 1 FROM (SELECT 1) LEFT JOIN json_each(?) AS \"_j1\" WHERE "
         "\"_j1\".\"value\" = ?)",
         "T:[1,2,3] I:2"},
        {"@request.body.title:changed = true", "(? IS NOT \"r\".\"title\") = 1", "T:T'x"},
        {"@request.body.status:changed = true", "0 = 1", ""},
        {"@request.headers.x_api_key = 'k'", "? = ?", "T:k T:k"},
        {"@request.query.page = ''", "1", ""},
        {"@request.method = 'PATCH'", "? = ?", "T:PATCH T:PATCH"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, cases[i].in, strlen(cases[i].in), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", cases[i].in, err.msg);
        char params[512];
        fmt_params(&q, params, sizeof(params));
        if (strcmp(q.sql, cases[i].sql) != 0 || strcmp(params, cases[i].params) != 0)
            fail_msg("`%s`:\n got  %s | %s\n want %s | %s", cases[i].in, q.sql, params,
                     cases[i].sql, cases[i].params);
        arena_release(&a);
    }
    json_decref(auth);
    json_decref(body);
    json_decref(headers);
}

static const struct {
    const char *in;
    int code;
    size_t pos;
    const char *msg;
} BAD[] = {
    {"", ERR_INVALID, 0, "empty filter expression"},
    {"   ", ERR_INVALID, 0, "empty filter expression"},
    {"()", ERR_INVALID, 0, "empty filter expression"},
    {"// nothing", ERR_INVALID, 0, "empty filter expression"},
    {"title", ERR_INVALID, 6, "unexpected end of expression"},
    {"published && views > 1", ERR_INVALID, 11, "unexpected \"&&\""},
    {"title =", ERR_INVALID, 8, "unexpected end"},
    {"title = 'x' &&", ERR_INVALID, 15, "expected an expression after && or ||"},
    {"&& title = 'x'", ERR_INVALID, 1, "unexpected \"&&\""},
    {"title = 'x' && || views = 1", ERR_INVALID, 16, "unexpected \"||\""},
    {"title = 'x' views = 1", ERR_INVALID, 13, "unexpected \"views\""},
    {"(title = 'x'", ERR_INVALID, 1, "unbalanced parenthesis"},
    {"title = 'x')", ERR_INVALID, 12, "unexpected \")\""},
    {"(title = 'x' views", ERR_INVALID, 14, "expected && or || or ')'"},
    {"title = = 'x'", ERR_INVALID, 9, "unexpected \"=\""},
    {"= 'x'", ERR_INVALID, 1, "unexpected \"=\""},
    {"'x' 'y'", ERR_INVALID, 5, "unexpected quoted text"},
    {"title = (1)", ERR_INVALID, 9, "unexpected \"(\""},
    {"title, = 1", ERR_INVALID, 6, "unexpected \",\""},
    {"titel = 'x'", ERR_INVALID, 1, "unknown field \"titel\""},
    {"views > 1 && titel = 'x'", ERR_INVALID, 14, "unknown field \"titel\""},
    {"author.nmae = 'x'", ERR_INVALID, 8, "unknown field \"nmae\" in collection \"users\""},
    {"title.x = 1", ERR_INVALID, 7, "field \"title\" is not a relation and has no \"x\""},
    {"title:upper = 'x'", ERR_INVALID, 1, "modifier \":upper\" is unknown"},
    {"title:each = 'x'", ERR_INVALID, 1, "needs a multiple select or relation field"},
    {"author:length = 1", ERR_INVALID, 1, "needs a multiple select or relation field"},
    {"title:isset = true", ERR_INVALID, 1, "can only be used on @request.body fields"},
    {"author:lower.name = 'x'", ERR_INVALID, 1, "modifiers are only allowed on the last part"},
    {"data:length = 1", ERR_INVALID, 1, "cannot be used on a json field"},
    {"data.a:each = 1", ERR_INVALID, 6, "cannot be used on a json field"},
    {"title:lower:lower = 'x'", ERR_INVALID, 1, "invalid modifier"},
    {"nope_via_post.id = 'x'", ERR_INVALID, 1, "invalid back-relation \"nope_via_post\""},
    {"comments_via_message.id = 'x'", ERR_INVALID, 1, "invalid back-relation"},
    {"comments_via_user.id = 'x'", ERR_INVALID, 1, "invalid back-relation"},
    {"@unknown = 1", ERR_INVALID, 1, "unknown identifier \"@unknown\""},
    {"@now.x = 1", ERR_INVALID, 1, "unknown identifier \"@now.x\""},
    {"@request.foo = 1", ERR_INVALID, 1, "unknown field \"@request.foo\""},
    {"@request = 1", ERR_INVALID, 1, "unknown field \"@request\""},
    {"@collection:x.tags.name = 1", ERR_INVALID, 1, "modifiers are only allowed on the last"},
    {"@request:x.method = 1", ERR_INVALID, 1, "modifiers are only allowed on the last"},
    {"@request.auth:x.id = 1", ERR_INVALID, 1, "unknown field"},
    {"@now:lower = 1", ERR_INVALID, 1, "unknown identifier"},
    {"@request.query.a.b = 1", ERR_INVALID, 1, "unknown field"},
    {"@request.body.title:bogus = 1", ERR_INVALID, 15, "modifier \":bogus\" is unknown"},
    {"@request.body.nope:changed = 1", ERR_INVALID, 15, "unknown field \"nope\""},
    {"@collection.nope.x = 1", ERR_INVALID, 13, "unknown collection \"nope\""},
    {"@collection.tags = 1", ERR_INVALID, 1, "needs a collection and a field"},
    {"@collection.tags.nope = 1", ERR_INVALID, 18, "unknown field \"nope\""},
    {"nope('%Y', created) = '2026'", ERR_INVALID, 1, "unknown function \"nope\""},
    {"views > 1 && geoDistance(1, 2, 3) < 1", ERR_INVALID, 14, "geoDistance() takes 4 arguments"},
    {"loc.alt > 1", ERR_INVALID, 5, "has only \"lon\" and \"lat\""},
    {"loc.lon.x > 1", ERR_INVALID, 5, "has only \"lon\" and \"lat\""},
    {"loc.lat:lower > 1", ERR_INVALID, 5, "cannot be used on a geoPoint field"},
    {"strftime() = ''", ERR_INVALID, 1, "strftime() takes 1 to 10 arguments"},
    {"strftime('%Y', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) = ''", ERR_INVALID, 1, "takes 1 to 10"},
    {"strftime('%Y', titel) = ''", ERR_INVALID, 16, "unknown field \"titel\""},
    {"f(a, = 1", ERR_INVALID, 6, "unexpected \"=\""},
    {"f(a b) = 1", ERR_INVALID, 5, "expected ',' or ')'"},
    {"f(g(h(i(1)))) = 1", ERR_LIMIT, 7, "functions nested deeper than 3"},
    {"views = 1 \x01", ERR_INVALID, 11, "unexpected character 0x01"},
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(BAD); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q = {0};
        struct filter_error err;
        int rc = filter_compile(&ctx, BAD[i].in, strlen(BAD[i].in), &a, &q, &err);
        if (rc != BAD[i].code || err.code != rc || err.pos != BAD[i].pos ||
            !strstr(err.msg, BAD[i].msg))
            fail_msg("`%s`: got %d pos %zu `%s`, want %d pos %zu `%s`", BAD[i].in, rc, err.pos,
                     err.msg, BAD[i].code, BAD[i].pos, BAD[i].msg);
        char prefix[64];
        if (BAD[i].pos)
            snprintf(prefix, sizeof(prefix), "invalid filter at position %zu: ", BAD[i].pos);
        else
            snprintf(prefix, sizeof(prefix), "invalid filter: ");
        assert_memory_equal(err.msg, prefix, strlen(prefix));
        arena_release(&a);
    }
}

static int compile_str(struct filter_ctx *ctx, const char *s, size_t len, struct filter_error *err)
{
    struct arena a;
    arena_init(&a, 4096);
    struct filter_sql q;
    int rc = filter_compile(ctx, s, len, &a, &q, err);
    arena_release(&a);
    return rc;
}

static void test_limits(void **state)
{
    (void)state;
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct filter_error err;
    struct buf b;
    buf_init(&b);
    /* 200 comparisons pass, 201 do not; the error points at the 201st */
    for (int i = 0; i < 200; i++)
        buf_printf(&b, "%sviews = %d", i ? " || " : "", i % 10);
    assert_true(b.len <= FILTER_MAX_LEN);
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), 0);
    size_t at = b.len + 5;
    buf_puts(&b, " || views = 1");
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), ERR_LIMIT);
    assert_int_equal(err.pos, at);
    assert_non_null(strstr(err.msg, "more than 200 expressions"));
    /* 3500 characters pass, 3501 do not */
    buf_reset(&b);
    buf_puts(&b, "title = '");
    while (b.len < FILTER_MAX_LEN - 1)
        buf_putc(&b, 'x');
    buf_putc(&b, '\'');
    assert_int_equal(b.len, FILTER_MAX_LEN);
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), 0);
    buf_putc(&b, ' ');
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), ERR_LIMIT);
    assert_int_equal(err.pos, 0);
    assert_string_equal(err.msg, "invalid filter: longer than 3500 characters");
    /* nesting */
    buf_reset(&b);
    for (int i = 0; i < FILTER__MAX_NESTING; i++)
        buf_putc(&b, '(');
    buf_puts(&b, "views = 1");
    for (int i = 0; i < FILTER__MAX_NESTING; i++)
        buf_putc(&b, ')');
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), 0);
    buf_reset(&b);
    for (int i = 0; i <= FILTER__MAX_NESTING; i++)
        buf_putc(&b, '(');
    buf_puts(&b, "views = 1");
    for (int i = 0; i <= FILTER__MAX_NESTING; i++)
        buf_putc(&b, ')');
    assert_int_equal(compile_str(&ctx, b.ptr, b.len, &err), ERR_LIMIT);
    assert_int_equal(err.pos, FILTER__MAX_NESTING + 1);
    buf_release(&b);
    /* relation depth: 6 hops pass, 7 do not */
    const char *six =
        "comments_via_post.post.comments_via_post.post.comments_via_post.post.id ?= 'x'";
    assert_int_equal(compile_str(&ctx, six, strlen(six), &err), 0);
    const char *seven =
        "comments_via_post.post.comments_via_post.post.comments_via_post.post.comments_via_post.id"
        " ?= 'x'";
    assert_int_equal(compile_str(&ctx, seven, strlen(seven), &err), ERR_LIMIT);
    assert_int_equal(err.pos, 70);
    assert_non_null(strstr(err.msg, "more than 6 nested relations"));
}

static void test_client_restrictions(void **state)
{
    (void)state;
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    ctx.client = true;
    struct filter_error err;
    const char *f = "title = 'x' && @request.auth.id != ''";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), ERR_DENIED);
    assert_int_equal(err.pos, 16);
    assert_non_null(strstr(err.msg, "only superusers can filter by @request."));
    f = "@collection.tags.name ?= 'x'";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), ERR_DENIED);
    assert_non_null(strstr(err.msg, "@collection."));
    f = "secret = 'x'";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "non-filterable field \"secret\""));
    f = "author.password = 'x'";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), ERR_INVALID);
    assert_int_equal(err.pos, 8);
    f = "title = '@request.auth.id'"; /* inside a text it is just text */
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), 0);
    /* a related collection's list rule that does not compile is reported, not skipped */
    fx_colls[2].rules[STORE_RULE_LIST] = "nope = 1";
    f = "tags.name ?= 'x'";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), ERR_INVALID);
    assert_int_equal(err.pos, 1);
    assert_non_null(strstr(err.msg, "the list rule of \"tags\" is broken (invalid list rule at "
                                    "position 1: unknown field \"nope\")"));
    fx_colls[2].rules[STORE_RULE_LIST] = "";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), 0);
    /* a long list rule copied into many joins: the output limit stops it */
    struct buf rule, flt;
    buf_init(&rule);
    buf_init(&flt);
    buf_puts(&rule, "name != '");
    for (int i = 0; i < 20000; i++)
        buf_putc(&rule, 'x');
    buf_puts(&rule, "'");
    for (int i = 0; i < 60; i++)
        buf_printf(&flt, "%scomments_via_post.user.name != 'y'", i ? " && " : "");
    assert_true(flt.len <= FILTER_MAX_LEN);
    const char *saved = fx_colls[0].rules[STORE_RULE_LIST];
    fx_colls[0].rules[STORE_RULE_LIST] = (char *)buf_cstr(&rule);
    assert_int_equal(compile_str(&ctx, flt.ptr, flt.len, &err), ERR_LIMIT);
    assert_string_equal(err.msg, "invalid filter: the compiled query would exceed 1048576 bytes");
    assert_int_equal(compile_str(&ctx, flt.ptr, 35, &err), 0); /* one comparison fits */
    fx_colls[0].rules[STORE_RULE_LIST] = (char *)saved;
    buf_release(&rule);
    buf_release(&flt);
    /* rules (client = false) may use all of them */
    ctx.client = false;
    f = "secret = 'x' && author.password = 'y' && @collection.tags.name ?= @request.method";
    assert_int_equal(compile_str(&ctx, f, strlen(f), &err), 0);
}

static void test_bad_context(void **state)
{
    (void)state;
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct filter_error err;
    ctx.alias = "r\" OR 1";
    assert_int_equal(compile_str(&ctx, "id = 'x'", 8, &err), ERR_INVALID);
    ctx.alias = NULL;
    assert_int_equal(compile_str(&ctx, "id = 'x'", 8, &err), ERR_INVALID);
    ctx = fx_ctx(NULL);
    assert_int_equal(compile_str(&ctx, "id = 'x'", 8, &err), ERR_INVALID);
    /* no collection lookup: relations cannot resolve */
    ctx = fx_ctx(FX_POSTS);
    ctx.find_collection = NULL;
    assert_int_equal(compile_str(&ctx, "author.name = 'x'", 17, &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "the collection of relation \"author\" does not exist"));
    /* err may be NULL */
    struct arena a;
    arena_init(&a, 1024);
    struct filter_sql q;
    assert_int_equal(filter_compile(&ctx, "titel = 1", 9, &a, &q, NULL), ERR_INVALID);
    /* NULL input with length 0: an empty filter, an empty sort */
    struct filter_error e2;
    assert_int_equal(filter_compile(&ctx, NULL, 0, &a, &q, &e2), ERR_INVALID);
    assert_string_equal(e2.msg, "invalid filter: empty filter expression");
    assert_int_equal(filter_compile_sort(&ctx, NULL, 0, &a, &q, &e2), 0);
    assert_int_equal(q.sql_len, 0);
    assert_string_equal(q.sql, "");
    assert_int_equal(q.n_params, 0);
    arena_release(&a);
}

static const struct {
    const char *in, *sql, *params;
} SORT_SQL[] = {
    {"id", "\"r\".\"id\" ASC", ""},
    {"-created,+title", "\"r\".\"created\" DESC, \"r\".\"title\" ASC", ""},
    {"@rowid", "\"r\"._rowid_ ASC", ""},
    {"-@random", "RANDOM()", ""},
    {"title:lower", "LOWER(\"r\".\"title\") ASC", ""},
    {"data.a", "json_extract(\"r\".\"data\", ?) ASC", "T:$.\"a\""},
    {"author.name",
     "(SELECT \"_j1\".\"name\" FROM (SELECT 1) LEFT JOIN \"users\" AS \"_j1\" ON \"_j1\".\"id\" = "
     "\"r\".\"author\" LIMIT 1) ASC",
     ""},
    {"", "", ""},
    {" \n ", "", ""},
};

static void test_sort_sql(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(SORT_SQL); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile_sort(&ctx, SORT_SQL[i].in, strlen(SORT_SQL[i].in), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", SORT_SQL[i].in, err.msg);
        char params[256];
        fmt_params(&q, params, sizeof(params));
        if (strcmp(q.sql, SORT_SQL[i].sql) != 0 || strcmp(params, SORT_SQL[i].params) != 0)
            fail_msg("`%s`:\n got  %s | %s\n want %s | %s", SORT_SQL[i].in, q.sql, params,
                     SORT_SQL[i].sql, SORT_SQL[i].params);
        arena_release(&a);
    }
}

static const struct {
    const char *in;
    int code;
    size_t pos;
    const char *msg;
} SORT_BAD[] = {
    {"titel", ERR_INVALID, 1, "invalid sort at position 1: unknown field \"titel\""},
    {"id,-titel", ERR_INVALID, 5, "unknown field \"titel\""},
    {"title desc", ERR_INVALID, 1, "invalid sort field"},
    {"'title'", ERR_INVALID, 1, "invalid sort field"},
    {"-", ERR_INVALID, 1, "invalid sort field"},
    {"_", ERR_INVALID, 1, "invalid sort field"},
    {"-@", ERR_INVALID, 1, "invalid sort field"},
    {"#", ERR_INVALID, 1, "invalid sort field"},
    {"x", ERR_INVALID, 1, "unknown field \"x\""}, /* one letter is a name, just not a field */
    {"id,+", ERR_INVALID, 4, "invalid sort field"},
    {"null", ERR_INVALID, 1, "invalid sort field \"null\""},
    {"@now", ERR_INVALID, 1, "invalid sort field \"@now\""},
    {"id;DROP TABLE posts", ERR_INVALID, 1, "invalid sort field"},
    {"id,id,id,id,id,id,id,id,id", ERR_LIMIT, 25, "more than 8 sort fields"},
    {"title:upper", ERR_INVALID, 1, "modifier \":upper\" is unknown"},
    {",", ERR_INVALID, 1, "invalid sort field \"\""},
    {"id,,title", ERR_INVALID, 4, "invalid sort field \"\""},
    {"id, ", ERR_INVALID, 5, "invalid sort field \"\""},
};

static void test_sort_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(SORT_BAD); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile_sort(&ctx, SORT_BAD[i].in, strlen(SORT_BAD[i].in), &a, &q, &err);
        if (rc != SORT_BAD[i].code || err.pos != SORT_BAD[i].pos ||
            !strstr(err.msg, SORT_BAD[i].msg))
            fail_msg("`%s`: got %d pos %zu `%s`, want %d pos %zu `%s`", SORT_BAD[i].in, rc, err.pos,
                     err.msg, SORT_BAD[i].code, SORT_BAD[i].pos, SORT_BAD[i].msg);
        arena_release(&a);
    }
    /* 8 fields pass; a 255-character name is checked, 256 is over the limit */
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct arena a;
    arena_init(&a, 1024);
    struct filter_sql q;
    struct filter_error err;
    const char *eight = "id,id,id,id,id,id,id,id";
    assert_int_equal(filter_compile_sort(&ctx, eight, strlen(eight), &a, &q, &err), 0);
    char name[300];
    memset(name, 'a', sizeof(name));
    assert_int_equal(filter_compile_sort(&ctx, name, 255, &a, &q, &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "unknown field"));
    assert_int_equal(filter_compile_sort(&ctx, name, 256, &a, &q, &err), ERR_LIMIT);
    /* client sorts cannot use @request / @collection / hidden fields */
    ctx.client = true;
    assert_int_equal(filter_compile_sort(&ctx, "@request.method", 15, &a, &q, &err), ERR_DENIED);
    assert_int_equal(filter_compile_sort(&ctx, "-secret", 7, &a, &q, &err), ERR_INVALID);
    assert_int_equal(err.pos, 2);
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sql_table),
        cmocka_unit_test(test_request_params),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_client_restrictions),
        cmocka_unit_test(test_bad_context),
        cmocka_unit_test(test_sort_sql),
        cmocka_unit_test(test_sort_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
