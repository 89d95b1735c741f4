/* test_filter_sqlite.c - filter and sort semantics against a real SQLite database: every
 * filter of the table compiles, runs as `SELECT id FROM "posts" r WHERE <sql> ORDER BY id`
 * with its bound parameters, and must return exactly the expected ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "filter_fixture.h"

enum req { REQ_NONE, REQ_USER, REQ_GUEST };

struct sem_case {
    const char *filter;
    const char *ids;
    enum req req;
};

static const struct sem_case CASES[] = {
    /* = != and the null/empty rules */
    {"title = \"Hello World\"", "p1", REQ_NONE},
    {"title != \"Hello World\"", "p2,p3,p4", REQ_NONE},
    {"title = ''", "p3", REQ_NONE},
    {"title = null", "p3", REQ_NONE},
    {"null = title", "p3", REQ_NONE},
    {"title != ''", "p1,p2,p4", REQ_NONE},
    {"title != NULL", "p1,p2,p4", REQ_NONE},
    {"null = ''", "p1,p2,p3,p4", REQ_NONE},
    {"null != ''", "", REQ_NONE},
    {"1 = 1", "p1,p2,p3,p4", REQ_NONE},
    {"1 != 1", "", REQ_NONE},
    {"views = views", "p1,p2,p3,p4", REQ_NONE},
    {"title = status", "p3", REQ_NONE},
    {"title != status", "p1,p2,p4", REQ_NONE},
    {"published = true", "p1,p4", REQ_NONE},
    {"published = false", "p2,p3", REQ_NONE},
    {"published != TRUE", "p2,p3", REQ_NONE},
    {"id ?= 'p1'", "p1", REQ_NONE},
    /* ordering comparisons */
    {"views > 5", "p1,p4", REQ_NONE},
    {"views >= 5", "p1,p2,p4", REQ_NONE},
    {"views < 5", "p3", REQ_NONE},
    {"views <= 5", "p2,p3", REQ_NONE},
    {"views = 10.0", "p1", REQ_NONE},
    {"views > -1", "p1,p2,p3,p4", REQ_NONE},
    {"views > -0.5 && views < 5.5", "p2,p3", REQ_NONE},
    {"title > ''", "p1,p2,p4", REQ_NONE},
    /* LIKE with automatic wrapping and escaping */
    {"title ~ 'lorem'", "p2", REQ_NONE},
    {"title ~ 'Lorem%'", "p2", REQ_NONE},
    {"title ~ '%World'", "p1", REQ_NONE},
    {"title ~ '50%'", "", REQ_NONE},
    {"title ~ '50\\%'", "p2", REQ_NONE},
    {"title ~ '_'", "p4", REQ_NONE},
    {"title ~ 'r_s'", "p4", REQ_NONE},
    {"title ~ 'm_i'", "", REQ_NONE},
    {"title !~ 'o'", "p3", REQ_NONE},
    {"title !~ 'world'", "p2,p3,p4", REQ_NONE},
    {"'Hello World, hi' ~ title", "p1,p3", REQ_NONE},
    /* precedence and parentheses */
    {"status = 'active' || status = 'pending' && views < 50", "p1,p2,p4", REQ_NONE},
    {"(status = 'active' || status = 'pending') && views < 50", "p1,p2", REQ_NONE},
    {"status = 'pending' && views < 50 || status = 'active'", "p1,p2,p4", REQ_NONE},
    {"status = 'pending' && (views < 50 || status = 'active')", "p2", REQ_NONE},
    {"((views > 1)) && (() || title ~ 'o')", "p1,p2,p4", REQ_NONE},
    {"views > 50 // a comment\n || views = 0", "p3,p4", REQ_NONE},
    /* single relations */
    {"author.name = 'Alice'", "p1,p4", REQ_NONE},
    {"author.name != 'Alice'", "p2,p3", REQ_NONE},
    {"author.org.name = 'Beta'", "p2", REQ_NONE},
    {"author.id = 'u2'", "p2", REQ_NONE},
    {"author = 'u1'", "p1,p4", REQ_NONE},
    {"author.role = ''", "p3", REQ_NONE},
    {"author.name:lower = 'alice'", "p1,p4", REQ_NONE},
    /* multiple relations: all without ?, any with ? */
    {"tags.name = 'go'", "p2", REQ_NONE},
    {"tags.name ?= 'go'", "p1,p2,p4", REQ_NONE},
    {"tags.color = 'red'", "p2,p4", REQ_NONE},
    {"tags.color ?= 'blue'", "p1", REQ_NONE},
    {"tags.name != 'go'", "", REQ_NONE},
    {"tags.name ?!= 'go'", "p1,p3,p4", REQ_NONE},
    {"tags.name ?~ 'q'", "p1", REQ_NONE},
    {"tags.name ~ 'o'", "p2", REQ_NONE},
    {"tags.name !~ 'o'", "", REQ_NONE},
    {"tags.name ?!~ 'o'", "p1,p4", REQ_NONE},
    {"tags.name > 'd'", "p1,p2", REQ_NONE},
    {"tags.name ?> 'h'", "p1", REQ_NONE},
    {"tags.name >= 'go'", "p1,p2", REQ_NONE},
    {"tags.name ?>= 'sqlite'", "p1", REQ_NONE},
    {"tags.name < 'h'", "p2,p4", REQ_NONE},
    {"tags.name ?< 'd'", "p4", REQ_NONE},
    {"tags.name <= 'go'", "p2,p4", REQ_NONE},
    {"tags.name ?<= 'c'", "p4", REQ_NONE},
    {"tags.id ?= 't3'", "p4", REQ_NONE},
    /* two comparisons on the same path look at the same related row (PocketBase's joins) */
    {"tags.name ?= 'go' && tags.color ?= 'blue'", "", REQ_NONE},
    {"tags.name ?= 'c' && tags.color ?= 'red'", "p4", REQ_NONE},
    /* multiple select / relation columns and modifiers */
    {"cats ~ 'b'", "p1", REQ_NONE},
    {"cats:each = 'a'", "p2", REQ_NONE},
    {"cats:each ?= 'a'", "p1,p2", REQ_NONE},
    {"cats:each != 'a'", "p4", REQ_NONE},
    {"cats:each ?~ 'c'", "p4", REQ_NONE},
    {"cats:length = 0", "p3", REQ_NONE},
    {"cats:length > 1", "p1", REQ_NONE},
    {"tags:length = 2", "p1,p4", REQ_NONE},
    {"tags:each ?= 't2'", "p1", REQ_NONE},
    /* SQLite propagates the constant of `col = 'x'` into json_each/json_array_length(col):
     * text that is not JSON must not turn into a "malformed JSON" error */
    {"cats = 'x' && cats:length = 1", "", REQ_NONE},
    {"tags = 'zz' && tags.name ?= 'go'", "", REQ_NONE},
    {"cats = 'x' && cats:each ?= 'x'", "", REQ_NONE},
    {"cats = '[\"a\"]' && cats:each = 'a'", "p2", REQ_NONE},
    {"title:lower = 'hello world'", "p1", REQ_NONE},
    {"title:lower ~ 'LO W'", "p1", REQ_NONE},
    /* back-relations */
    {"comments_via_post.message ?~ 'hi'", "p1,p2", REQ_NONE},
    {"comments_via_post.message = 'hi'", "p2", REQ_NONE},
    {"comments_via_post.user.name ?= 'Alice'", "p1", REQ_NONE},
    {"comments_via_post.id = ''", "p3,p4", REQ_NONE},
    {"likes_via_posts.user.name ?= 'bob'", "p1", REQ_NONE},
    {"likes_via_posts.id ?= 'l1'", "p1,p2", REQ_NONE},
    {"likes_via_posts.user.org.name = 'Acme'", "p2", REQ_NONE},
    /* json fields */
    {"data.a.b = 1", "p1", REQ_NONE},
    {"data.a.b > 1", "p3", REQ_NONE},
    {"data.n = 'x'", "p1", REQ_NONE},
    {"data.n:lower = 'x'", "p1", REQ_NONE},
    {"data = null", "p2", REQ_NONE},
    {"data != null", "p1,p3,p4", REQ_NONE},
    {"data = ''", "", REQ_NONE},
    {"data != ''", "p1,p2,p3,p4", REQ_NONE},
    {"data.0 = 1", "p4", REQ_NONE},
    {"data.1 = 2", "p4", REQ_NONE},
    /* date macros, now = 2026-11-21 12:30:45.123Z (a Saturday) */
    {"due > @now", "p2", REQ_NONE},
    {"due >= @todayStart && due <= @todayEnd", "p1", REQ_NONE},
    {"created >= @monthStart", "p1,p2", REQ_NONE},
    {"created < @yearStart", "p4", REQ_NONE},
    {"due = ''", "p3", REQ_NONE},
    {"created > @yesterday", "p2", REQ_NONE},
    {"due < @tomorrow && due > @now", "p2", REQ_NONE},
    {"due <= @monthEnd && due > @monthStart", "p1,p2", REQ_NONE},
    {"created <= @yearEnd && created >= @yearStart", "p1,p2,p3", REQ_NONE},
    {"@weekday = 6 && @day = 21 && @month = 11 && @year = 2026", "p1,p2,p3,p4", REQ_NONE},
    {"@hour = 12 && @minute = 30 && @second = 45", "p1,p2,p3,p4", REQ_NONE},
    {"@now = '2026-11-21 12:30:45.123Z' && @todayEnd = '2026-11-21 23:59:59.999Z'", "p1,p2,p3,p4",
     REQ_NONE},
    {"@monthEnd = '2026-11-30 23:59:59.999Z' && @yearEnd = '2026-12-31 23:59:59.999Z'",
     "p1,p2,p3,p4", REQ_NONE},
    /* functions */
    {"strftime('%Y-%m', created) = '2026-11'", "p1,p2", REQ_NONE},
    {"strftime('%Y', due) = ''", "p3", REQ_NONE},
    {"strftime('%H', due, '+2 hours') = '12'", "p1", REQ_NONE},
    {"strftime('%Y', @now) = '2026'", "p1,p2,p3,p4", REQ_NONE},
    {"geoDistance(23.32, 42.69, 23.32, 42.69) = 0", "p1,p2,p3,p4", REQ_NONE},
    {"geoDistance(0, 0, 0, 1) > 111 && geoDistance(0, 0, 0, 1) < 112", "p1,p2,p3,p4", REQ_NONE},
    {"geoDistance(data.a.b, 0, 0, 0) > 200", "p3", REQ_NONE},
    {"geoDistance(data.a.b, 0, 0, 0) > 100", "p1,p3", REQ_NONE},
    {"strftime('%m', comments_via_post.id) ?= ''", "p1,p2,p3,p4", REQ_NONE},
    /* @request.* */
    {"author = @request.auth.id", "p1,p4", REQ_USER},
    {"author = @request.auth.id", "p3", REQ_GUEST},
    {"@request.auth.id != '' && author = @request.auth.id", "p1,p4", REQ_USER},
    {"@request.auth.id != '' && author = @request.auth.id", "", REQ_GUEST},
    {"@request.auth.id != ''", "", REQ_NONE},
    {"@request.auth.role = 'admin'", "p1,p2,p3,p4", REQ_USER},
    {"@request.auth.role = 'admin'", "", REQ_GUEST},
    {"@request.auth.org.name = 'Acme'", "p1,p2,p3,p4", REQ_USER},
    {"@request.auth.verified = true", "p1,p2,p3,p4", REQ_USER},
    {"@request.auth.collectionName = 'users'", "p1,p2,p3,p4", REQ_USER},
    {"@request.auth.email:lower = 'alice@example.com'", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.title = title", "p1", REQ_USER},
    {"@request.body.views > views", "p2,p3", REQ_USER},
    {"@request.body.tags:length > 1", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.status:isset = true", "", REQ_USER},
    {"@request.body.title:isset = true", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.title:changed = true", "p2,p3,p4", REQ_USER},
    {"@request.body.cats:each ?= 'a'", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.cats:each = 'a'", "", REQ_USER},
    {"@request.body.cats:each ?= cats:each", "p1,p2", REQ_USER},
    {"cats:each != @request.body.cats:each", "p4", REQ_USER},
    {"cats:each ?!= @request.body.cats:each", "p1,p2,p3,p4", REQ_USER},
    {"cats:each < @request.body.cats:each", "", REQ_USER},
    {"@request.body.cats:each < 'c'", "p1,p2,p3,p4", REQ_USER},
    {"cats:each <= 'b'", "p1,p2", REQ_NONE},
    {"@request.body.author.name = 'bob'", "p1,p2,p3,p4", REQ_USER},
    /* unknown fields under @request.* are NULL, not errors (as PocketBase) */
    {"@request.auth.nope = null && @request.auth.org.nope = ''", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.author.nope = null", "p1,p2,p3,p4", REQ_USER},
    {"@request.auth.nope_via_x.id = null", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.meta.level = 3", "p1,p2,p3,p4", REQ_USER},
    {"@request.body.missing = null", "p1,p2,p3,p4", REQ_USER},
    {"@request.query.x = '1' && @request.headers.x_token = 'abc'", "p1,p2,p3,p4", REQ_USER},
    {"@request.method = 'GET' && @request.context = 'default'", "p1,p2,p3,p4", REQ_USER},
    {"@request.method = ''", "p1,p2,p3,p4", REQ_NONE},
    /* @collection.* */
    {"@collection.tags.name ?= 'c' && @collection.tags.color ?= 'red'", "p1,p2,p3,p4", REQ_NONE},
    {"@collection.tags.name ?= 'sqlite' && @collection.tags.color ?= 'red'", "", REQ_NONE},
    {"@collection.tags.color = 'red'", "", REQ_NONE},
    {"@collection.comments.post ?= id", "p1,p2", REQ_NONE},
    {"@collection.comments.post ?= id && @collection.comments.message ?= 'nice'", "p1", REQ_NONE},
    {"@collection.comments:c.post ?= id && @collection.comments:c.user ?= author", "p1,p2",
     REQ_NONE},
    {"@collection.comments:a.post ?= id && @collection.comments:b.message ?= 'nice'", "p1,p2",
     REQ_NONE},
    {"@collection.users.org.name ?= 'Beta' && @collection.users.id ?= author", "p2", REQ_NONE},
};

static void set_request(struct filter_ctx *ctx, struct filter_request *rq, enum req kind,
                        json_t **hold)
{
    if (kind == REQ_NONE)
        return;
    memset(rq, 0, sizeof(*rq));
    rq->method = "GET";
    rq->context = "default";
    if (kind == REQ_USER) {
        rq->auth = hold[0] = json_pack("{s:s, s:s, s:b, s:s}", "id", "u1", "email",
                                       "Alice@Example.com", "verified", 1, "name", "Alice");
        rq->auth_collection = FX_USERS;
        rq->body = hold[1] = json_pack("{s:s, s:s, s:[s,s], s:[s,s], s:s, s:{s:i}, s:n}", "title",
                                       "Hello World", "views", "6", "tags", "t1", "t2", "cats", "a",
                                       "b", "author", "u2", "meta", "level", 3, "missing");
        rq->query = hold[2] = json_pack("{s:[s,s]}", "x", "1", "2");
        rq->headers = hold[3] = json_pack("{s:s}", "x_token", "abc");
    }
    ctx->request = rq;
}

static void test_semantics(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    for (size_t i = 0; i < ARRAY_LEN(CASES); i++) {
        const struct sem_case *c = &CASES[i];
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct filter_request rq;
        json_t *hold[4] = {0};
        set_request(&ctx, &rq, c->req, hold);
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile(&ctx, c->filter, strlen(c->filter), &a, &q, &err);
        if (rc != 0)
            fail_msg("case %zu `%s`: %s", i, c->filter, err.msg);
        char ids[256];
        rc = fx_query(db, "posts", &q, NULL, ids, sizeof(ids));
        if (rc != SQLITE_DONE)
            fail_msg("case %zu `%s`: sqlite %d: %s\n  %s", i, c->filter, rc, sqlite3_errmsg(db),
                     q.sql);
        if (strcmp(ids, c->ids) != 0)
            fail_msg("case %zu `%s`: got [%s], want [%s]\n  %s", i, c->filter, ids, c->ids, q.sql);
        arena_release(&a);
        for (size_t k = 0; k < 4; k++)
            json_decref(hold[k]);
    }
    sqlite3_close(db);
}

struct sort_case {
    const char *sort;
    const char *ids;
};

static const struct sort_case SORTS[] = {
    {"-views", "p4,p1,p2,p3"},
    {"views", "p3,p2,p1,p4"},
    {"+title", "p3,p1,p2,p4"},
    {"-author.name,id", "p2,p1,p4,p3"},
    {" -author.name , -id ", "p2,p4,p1,p3"},
    {"@rowid", "p1,p2,p3,p4"},
    {"-@rowid", "p4,p3,p2,p1"},
    {"title:lower", "p3,p1,p2,p4"},
    {"-published,views", "p1,p4,p3,p2"},
    {"-tags:length,id", "p1,p4,p2,p3"},
    {"data.a.b,id", "p2,p4,p1,p3"},
    {"-author.org.name,id", "p2,p1,p4,p3"},
    {"comments_via_post.message,id", "p3,p4,p2,p1"},
    {"", "p1,p2,p3,p4"},
    {" \t", "p1,p2,p3,p4"},
};

static void test_sort(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    for (size_t i = 0; i < ARRAY_LEN(SORTS); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile_sort(&ctx, SORTS[i].sort, strlen(SORTS[i].sort), &a, &q, &err);
        if (rc != 0)
            fail_msg("sort `%s`: %s", SORTS[i].sort, err.msg);
        char ids[256];
        rc = fx_query(db, "posts", NULL, &q, ids, sizeof(ids));
        if (rc != SQLITE_DONE || strcmp(ids, SORTS[i].ids) != 0)
            fail_msg("sort `%s`: rc %d got [%s], want [%s]\n  %s", SORTS[i].sort, rc, ids,
                     SORTS[i].ids, q.sql);
        arena_release(&a);
    }
    sqlite3_close(db);
}

/* @random gives every row, in some order; the filter and the sort bind one after the other. */
static void test_sort_random_with_filter(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct arena a;
    arena_init(&a, 4096);
    struct filter_sql w, s;
    const char *f = "tags.name ?= 'go' && title != 'x'";
    assert_int_equal(filter_compile(&ctx, f, strlen(f), &a, &w, NULL), 0);
    assert_int_equal(filter_compile_sort(&ctx, "@random", 7, &a, &s, NULL), 0);
    assert_string_equal(s.sql, "RANDOM()");
    char ids[256];
    assert_int_equal(fx_query(db, "posts", &w, &s, ids, sizeof(ids)), SQLITE_DONE);
    assert_int_equal(strlen(ids), strlen("p1,p2,p4"));
    assert_non_null(strstr(ids, "p1"));
    assert_non_null(strstr(ids, "p2"));
    assert_non_null(strstr(ids, "p4"));
    /* a sort over a relation path binds nothing but still uses a subquery */
    assert_int_equal(filter_compile_sort(&ctx, "author.name,-views", 18, &a, &s, NULL), 0);
    assert_int_equal(s.n_params, 0);
    assert_int_equal(fx_query(db, "posts", &w, &s, ids, sizeof(ids)), SQLITE_DONE);
    assert_string_equal(ids, "p4,p1,p2");
    arena_release(&a);
    sqlite3_close(db);
}

/* Rules of another collection: users filtered through their back-relations. */
static void test_other_collection(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    static const struct {
        const char *f, *ids;
    } cases[] = {
        {"posts_via_author.title ?~ 'world'", "u1"},
        {"posts_via_author.views > 50", ""},
        {"posts_via_author.views ?> 50", "u1"},
        {"comments_via_user.post.title ?~ 'lorem'", "u2"},
        {"org.name ~ 'a'", "u1,u2"},
        {"password = 'h1'", "u1"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct filter_ctx ctx = fx_ctx(FX_USERS);
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, cases[i].f, strlen(cases[i].f), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", cases[i].f, err.msg);
        char ids[256];
        int rc = fx_query(db, "users", &q, NULL, ids, sizeof(ids));
        if (rc != SQLITE_DONE || strcmp(ids, cases[i].ids) != 0)
            fail_msg("`%s`: rc %d got [%s], want [%s]\n  %s", cases[i].f, rc, ids, cases[i].ids,
                     q.sql);
        arena_release(&a);
    }
    sqlite3_close(db);
}

/* Client filters: related rows count only when the client could list them (the target's
 * list rule joins the ON condition; a locked target is an error), and auth emails only when
 * their owner made them visible. */
static void test_client_filters(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    static const struct {
        const struct store_collection *c;
        const char *f, *ids;
        bool client;
    } cases[] = {
        {FX_POSTS, "author.name ?= 'bob'", "p2", false},
        {FX_POSTS, "author.name ?= 'bob'", "", true},
        {FX_POSTS, "author.name ?= 'Alice'", "p1,p4", true},
        {FX_POSTS, "author.name = ''", "p2,p3", true},
        {FX_POSTS, "tags.name ?= 'go'", "p1,p2,p4", true},
        {FX_POSTS, "comments_via_post.user.name ?= 'Alice'", "p1", true},
        {FX_POSTS, "comments_via_post.user.name ?= 'bob'", "", true},
        {FX_POSTS, "comments_via_post.user.name ?= 'bob'", "p1,p2", false},
        {FX_POSTS, "author.email ?~ 'alice'", "p1,p4", true},
        {FX_USERS, "email = 'alice@example.com'", "u1", true},
        {FX_USERS, "email = 'bob@example.com'", "", true},
        {FX_USERS, "email = 'bob@example.com'", "u2", false},
        {FX_USERS, "email != 'x'", "u1", true},
        {FX_USERS, "email:lower ~ 'EXAMPLE'", "u1", true},
        {FX_USERS, "email:lower ~ 'EXAMPLE'", "u1,u2", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct filter_ctx ctx = fx_ctx(cases[i].c);
        ctx.client = cases[i].client;
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, cases[i].f, strlen(cases[i].f), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", cases[i].f, err.msg);
        char ids[256];
        int rc = fx_query(db, cases[i].c->name, &q, NULL, ids, sizeof(ids));
        if (rc != SQLITE_DONE || strcmp(ids, cases[i].ids) != 0)
            fail_msg("`%s` (client %d): rc %d got [%s], want [%s]\n  %s", cases[i].f,
                     cases[i].client, rc, ids, cases[i].ids, q.sql);
        arena_release(&a);
    }
    /* a list rule that itself walks a relation: an EXISTS inside the join's ON */
    const char *saved = fx_colls[0].rules[STORE_RULE_LIST];
    fx_colls[0].rules[STORE_RULE_LIST] = "org.name = 'Beta' || @request.auth.id = id";
    static const struct {
        const char *f, *ids;
        bool guest;
    } nested[] = {
        {"author.name ?= 'bob'", "p2", true},
        {"author.name ?= 'Alice'", "", true},
        {"author.name ?= 'Alice'", "p1,p4", false},
        {"comments_via_post.user.name ?= 'bob'", "p1,p2", true},
    };
    json_t *me = json_pack("{s:s}", "id", "u1");
    for (size_t i = 0; i < ARRAY_LEN(nested); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct filter_request rq = {.auth = nested[i].guest ? NULL : me,
                                    .auth_collection = FX_USERS};
        ctx.client = true;
        ctx.request = &rq;
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, nested[i].f, strlen(nested[i].f), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", nested[i].f, err.msg);
        char ids[256];
        int rc = fx_query(db, "posts", &q, NULL, ids, sizeof(ids));
        if (rc != SQLITE_DONE || strcmp(ids, nested[i].ids) != 0)
            fail_msg("`%s`: rc %d got [%s], want [%s]\n  %s", nested[i].f, rc, ids, nested[i].ids,
                     q.sql);
        arena_release(&a);
    }
    json_decref(me);
    fx_colls[0].rules[STORE_RULE_LIST] = (char *)saved;
    /* locked targets */
    static const struct {
        const char *f;
        size_t pos;
    } locked[] = {{"author.org.name = 'Acme'", 8}, {"likes_via_posts.id ?= 'l1'", 1}};
    for (size_t i = 0; i < ARRAY_LEN(locked); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        ctx.client = true;
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        assert_int_equal(filter_compile(&ctx, locked[i].f, strlen(locked[i].f), &a, &q, &err),
                         ERR_INVALID);
        assert_int_equal(err.pos, locked[i].pos);
        assert_non_null(strstr(err.msg, "only superusers can filter by the collection"));
        ctx.client = false;
        assert_int_equal(filter_compile(&ctx, locked[i].f, strlen(locked[i].f), &a, &q, &err), 0);
        arena_release(&a);
    }
    sqlite3_close(db);
}

/* A back-relation through a single relation field with a unique index is single-valued:
 * no all-match check, so a post without comments passes `!=`. */
static void test_unique_back_relation(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    static const char *const f = "comments_via_post.message != 'x'";
    static const char *const want[2] = {"p1,p2", "p1,p2,p3,p4"};
    char *idx[] = {"CREATE INDEX `idx_msg` ON `comments` (`message`)",
                   "CREATE UNIQUE INDEX `idx_pu` ON `comments` (`post`, `user`)",
                   "CREATE UNIQUE INDEX `idx_post` ON `comments` (`post`)"};
    for (int unique = 0; unique < 2; unique++) {
        fx_colls[4].indexes = idx;
        fx_colls[4].n_indexes = unique ? 3 : 2;
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, f, strlen(f), &a, &q, &err) != 0)
            fail_msg("%s", err.msg);
        assert_int_equal(strstr(q.sql, "NOT EXISTS") == NULL, unique);
        char ids[256];
        assert_int_equal(fx_query(db, "posts", &q, NULL, ids, sizeof(ids)), SQLITE_DONE);
        if (strcmp(ids, want[unique]) != 0)
            fail_msg("unique %d: got [%s], want [%s]\n  %s", unique, ids, want[unique], q.sql);
        arena_release(&a);
    }
    fx_colls[4].indexes = NULL;
    fx_colls[4].n_indexes = 0;
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semantics),
        cmocka_unit_test(test_sort),
        cmocka_unit_test(test_sort_random_with_filter),
        cmocka_unit_test(test_other_collection),
        cmocka_unit_test(test_client_filters),
        cmocka_unit_test(test_unique_back_relation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
