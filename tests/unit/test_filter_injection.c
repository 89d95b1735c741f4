/* test_filter_injection.c - filters, sort strings and request values crafted to break out of
 * the SQL. Each must either fail to compile, or compile to ONE statement that, run against
 * the fixture, returns no row it should not and changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "filter_fixture.h"

/* Everything in the database as one string: the schema and every row. */
static char *snapshot(sqlite3 *db)
{
    static const char *const q =
        "SELECT (SELECT group_concat(type || name || sql, ';') FROM sqlite_master) || '#' ||"
        " (SELECT group_concat(id || title || views || published || author || tags || cats ||"
        "  status || ifnull(data, 'N') || due || created || secret, ';') FROM posts) || '#' ||"
        " (SELECT group_concat(id || name || email || role || password || org, ';') FROM users)"
        " || '#' || (SELECT group_concat(id || name || color, ';') FROM tags) || '#' ||"
        " (SELECT group_concat(id || post || user || message, ';') FROM comments) || '#' ||"
        " (SELECT group_concat(id || posts || user, ';') FROM likes) || '#' ||"
        " (SELECT group_concat(id || name, ';') FROM orgs)";
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return s;
}

/* Runs the compiled filter (and sort) as one statement; asserts that the SQL text holds
 * exactly one statement and returns the ids it selects. */
static void run_one(sqlite3 *db, const struct filter_sql *w, const struct filter_sql *s, char *ids,
                    size_t ids_len)
{
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql, "SELECT id FROM \"posts\" r WHERE %s ORDER BY %s", w ? w->sql : "1",
               s && s->sql_len ? s->sql : "id");
    sqlite3_stmt *st;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(db, buf_cstr(&sql), -1, &st, &tail);
    if (rc != SQLITE_OK)
        fail_msg("prepare: %s\n  %s", sqlite3_errmsg(db), buf_cstr(&sql));
    assert_non_null(tail);
    assert_string_equal(tail, ""); /* nothing after the one statement */
    assert_int_equal(sqlite3_bind_parameter_count(st),
                     (int)((w ? w->n_params : 0) + (s ? s->n_params : 0)));
    buf_release(&sql);
    sqlite3_finalize(st);
    rc = fx_query(db, "posts", w, s, ids, ids_len);
    if (rc != SQLITE_DONE)
        fail_msg("step %d: %s\n  WHERE %s\n  ORDER BY %s", rc, sqlite3_errmsg(db), w ? w->sql : "-",
                 s ? s->sql : "-");
}

/* Must not compile. */
static const char *const BAD_FILTERS[] = {
    "id\" OR 1=1 --",
    "id\" = id OR \"1\" = \"1",
    "title = 'x' OR 1=1",
    "title = 'x'; DROP TABLE posts",
    "title = 'x'; DROP TABLE posts; --",
    "title = 'x' -- comment",
    "title = 'x' /* comment */",
    "title = 'x'' OR ''1''=''1'",
    "title = x' OR '1'='1",
    "title = 1 UNION SELECT password FROM users",
    "(SELECT 1) = 1",
    "title = (SELECT secret FROM posts)",
    "data.a') OR 1=1 --",
    "data.a\"b = 1",
    "\"title\" = 'x' || 1",
    "`title` = 1",
    "[title] = 1",
    "title = 0x41",
    "title = 1e3",
    "title = $1",
    "title = ?",
    "title = :name",
    "title = @x",
    "@collection.sqlite_master.name ?= 'posts'",
    "@collection.sqlite_master:x.sql ~ 'CREATE'",
    "@collection.sqlite_schema.sql ~ ''",
    "sqlite_master_via_name.sql ~ ''",
    "posts_via_id.id = 1",
    "r.secret = 'x'",
    "_rowid_ = 1",
    "rowid = 1",
    "title COLLATE NOCASE = 'x'",
    "title = 'x' ESCAPE 'y'",
    "title\xef\xbc\x9d'x'",             /* fullwidth = */
    "t\xc3\xactle = 'x'",               /* non-ASCII letter */
    "title = 'x' \xe2\x80\xa8|| 1 = 1", /* line separator */
    "title = 'x'\r|| 1 = 1",
    "title:lower) OR (1 = 1",
    "title:sql = 1",
    "author.\"name\" = 1",
    "@request.auth.id'--",
    "@request.body.x:each)--",
};

static void test_bad_filters(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(BAD_FILTERS); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile(&ctx, BAD_FILTERS[i], strlen(BAD_FILTERS[i]), &a, &q, &err);
        if (rc == 0)
            fail_msg("`%s` compiled to %s", BAD_FILTERS[i], q.sql);
        assert_true(rc == ERR_INVALID || rc == ERR_LIMIT);
        assert_true(err.pos >= 1 && err.pos <= strlen(BAD_FILTERS[i]) + 1);
        arena_release(&a);
    }
}

/* Compile, but the dangerous part is a bound value: no row, no change. */
static const char *const VALUE_FILTERS[] = {
    "id = \"x\\\" OR 1=1 --\"",
    "title = '\\'; DROP TABLE posts; --'",
    "title = \"'); DELETE FROM posts; --\"",
    "id = 'p1'' OR ''1''=''1'  ",
    "title ~ \"' OR 1=1 --\"",
    "title ~ '\\%\\_\\''",
    "secret = \"s1\\\" OR \\\"1\\\"=\\\"1\"",
    "data.a = \"') OR 1=1 --\"",
    "id = 'p1\xe2\x80\xae' || id = '\xef\xbc\x87 OR 1=1'",
};

static void test_value_filters(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    char *before = snapshot(db);
    for (size_t i = 0; i < ARRAY_LEN(VALUE_FILTERS); i++) {
        const char *f = VALUE_FILTERS[i];
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile(&ctx, f, strlen(f), &a, &q, &err);
        if (strstr(f, "''1''"))
            assert_int_equal(rc, ERR_INVALID); /* adjacent texts: a parse error */
        else if (rc != 0)
            fail_msg("`%s`: %s", f, err.msg);
        if (rc == 0) {
            char ids[256];
            run_one(db, &q, NULL, ids, sizeof(ids));
            if (ids[0])
                fail_msg("`%s` selected [%s]\n  %s", f, ids, q.sql);
        }
        arena_release(&a);
    }
    /* an embedded NUL ends nothing early: it is an error where it stands */
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct arena a;
    arena_init(&a, 1024);
    struct filter_sql q;
    struct filter_error err;
    static const char nul[] = "title = 'x'\0 || 1 = 1";
    assert_int_equal(filter_compile(&ctx, nul, sizeof(nul) - 1, &a, &q, &err), ERR_INVALID);
    assert_int_equal(err.pos, 12);
    arena_release(&a);
    char *after = snapshot(db);
    assert_string_equal(before, after);
    free(before);
    free(after);
    sqlite3_close(db);
}

static const char *const BAD_SORTS[] = {
    "id; DROP TABLE posts",
    "id DESC",
    "id--",
    "(SELECT 1)",
    "1",
    "-id,title)",
    "title COLLATE NOCASE",
    "@collection.sqlite_master.sql",
    "RANDOM()",
    "id\" DESC, \"x",
    "id,'x'",
    "id,\"secret\"",
    "-",
    "+-id",
    "id /* x */",
    "_rowid_",
    "@rowid; DELETE FROM posts",
    "t\xc3\xactle",
    "@request.auth.id",
};

static void test_bad_sorts(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    json_t *auth = json_pack("{s:s}", "id", "u1");
    struct filter_request rq = {.auth = auth};
    for (size_t i = 0; i < ARRAY_LEN(BAD_SORTS); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        ctx.request = &rq;
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        int rc = filter_compile_sort(&ctx, BAD_SORTS[i], strlen(BAD_SORTS[i]), &a, &q, &err);
        if (rc == 0)
            fail_msg("sort `%s` compiled to %s", BAD_SORTS[i], q.sql);
        assert_true(err.pos >= 1);
        arena_release(&a);
    }
    json_decref(auth);
    sqlite3_close(db);
}

/* Request values are bound: hostile auth ids, bodies, headers and query values select
 * nothing and change nothing. */
static void test_request_values(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    char *before = snapshot(db);
    json_t *auth = json_pack("{s:s}", "id", "u1' OR '1'='1");
    json_t *body = json_pack("{s:s, s:s, s:s, s:[s]}", "title", "x') OR 1=1; DROP TABLE posts;--",
                             "author", "' OR 1=1 --", "views", "1 OR 1=1", "tags", "\") OR 1=1 --");
    json_t *headers = json_pack("{s:s}", "x_evil", "'; DELETE FROM posts; --");
    struct filter_request rq = {.method = "GET' OR '1'='1",
                                .auth = auth,
                                .auth_collection = FX_USERS,
                                .body = body,
                                .headers = headers};
    static const char *const filters[] = {
        "author = @request.auth.id",
        "@request.auth.role = 'admin'",
        "title = @request.body.title",
        "author.name = @request.body.author.name && @request.body.author.id != ''",
        "views = @request.body.views",
        "tags:each ?= @request.body.tags:each",
        "title = @request.headers.x_evil",
        "@request.method = 'GET'",
        "title ~ @request.body.title",
    };
    for (size_t i = 0; i < ARRAY_LEN(filters); i++) {
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        ctx.request = &rq;
        struct arena a;
        arena_init(&a, 1024);
        struct filter_sql q;
        struct filter_error err;
        if (filter_compile(&ctx, filters[i], strlen(filters[i]), &a, &q, &err) != 0)
            fail_msg("`%s`: %s", filters[i], err.msg);
        assert_null(strstr(q.sql, "OR 1=1"));
        assert_null(strstr(q.sql, "DROP"));
        assert_null(strstr(q.sql, "DELETE"));
        char ids[256];
        run_one(db, &q, NULL, ids, sizeof(ids));
        if (ids[0])
            fail_msg("`%s` selected [%s]\n  %s", filters[i], ids, q.sql);
        arena_release(&a);
    }
    char *after = snapshot(db);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(auth);
    json_decref(body);
    json_decref(headers);
    sqlite3_close(db);
}

/* Huge inputs are refused before any work; deep nesting within the length limit too. */
static void test_huge_inputs(void **state)
{
    (void)state;
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    struct filter_error err;
    size_t n = 4 << 20;
    char *big = xmalloc(n);
    memset(big, '(', n);
    struct arena a;
    arena_init(&a, 1024);
    struct filter_sql q;
    assert_int_equal(filter_compile(&ctx, big, n, &a, &q, &err), ERR_LIMIT);
    assert_int_equal(filter_compile_sort(&ctx, big, n, &a, &q, &err), ERR_LIMIT);
    assert_true(a.n_bytes < 4096); /* refused before scanning */
    memset(big, '(', 3500);
    assert_int_equal(filter_compile(&ctx, big, 3500, &a, &q, &err), ERR_LIMIT);
    assert_non_null(strstr(err.msg, "parentheses nested deeper than"));
    /* 3500 characters of one identifier / of one long text */
    memset(big, 'a', 3500);
    assert_int_equal(filter_compile(&ctx, big, 3500, &a, &q, &err), ERR_INVALID);
    memcpy(big, "id = '", 6);
    big[3499] = '\'';
    assert_int_equal(filter_compile(&ctx, big, 3500, &a, &q, &err), 0);
    /* many sort fields */
    for (size_t i = 0; i < 3000; i += 3)
        memcpy(big + i, "id,", 3);
    assert_int_equal(filter_compile_sort(&ctx, big, 3000, &a, &q, &err), ERR_LIMIT);
    arena_release(&a);
    free(big);
}

/* Names from the schema are quoted with any '"' doubled, so even a hostile collection name
 * (which the store would refuse) stays one identifier. */
static const struct store_collection *weird_coll;

static const struct store_collection *find_weird(void *ud, const char *name_or_id)
{
    if (!strcmp(name_or_id, weird_coll->id) || !strcmp(name_or_id, weird_coll->name))
        return weird_coll;
    return fx_find(ud, name_or_id);
}

static void test_schema_names_quoted(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE \"we\"\"ird\" (id TEXT PRIMARY KEY, x TEXT);"
                                  "INSERT INTO \"we\"\"ird\" VALUES ('k1', 'hit');"
                                  "ALTER TABLE posts ADD COLUMN w TEXT NOT NULL DEFAULT '';"
                                  "UPDATE posts SET w = 'k1' WHERE id = 'p2';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    struct store_field wf[] = {FX_F("id", STORE_FIELD_TEXT), FX_F("x", STORE_FIELD_TEXT)};
    struct store_collection weird = {
        .id = "weird_id", .name = "we\"ird", .fields = wf, .n_fields = ARRAY_LEN(wf)};
    weird_coll = &weird;
    struct store_field pf[ARRAY_LEN(fx_posts_fields) + 1];
    memcpy(pf, fx_posts_fields, sizeof(fx_posts_fields));
    pf[ARRAY_LEN(fx_posts_fields)] = (struct store_field)FX_REL("w", "weird_id", 1);
    struct store_collection posts = *FX_POSTS;
    posts.fields = pf;
    posts.n_fields = ARRAY_LEN(pf);
    struct filter_ctx ctx = fx_ctx(&posts);
    ctx.find_collection = find_weird;
    struct arena a;
    arena_init(&a, 1024);
    struct filter_sql q;
    struct filter_error err;
    char *before = snapshot(db);
    assert_int_equal(filter_compile(&ctx, "w.x = 'hit'", 11, &a, &q, &err), 0);
    assert_non_null(strstr(q.sql, "LEFT JOIN \"we\"\"ird\" AS"));
    char ids[256];
    run_one(db, &q, NULL, ids, sizeof(ids));
    assert_string_equal(ids, "p2");
    assert_int_equal(filter_compile(&ctx, "@collection.weird_id.x ?= 'hit'", 31, &a, &q, &err), 0);
    run_one(db, &q, NULL, ids, sizeof(ids));
    assert_string_equal(ids, "p1,p2,p3,p4");
    char *after = snapshot(db);
    assert_string_equal(before, after);
    free(before);
    free(after);
    arena_release(&a);
    sqlite3_close(db);
}

/* Random filters and sort strings: grammar-built expressions, token soup and byte-level
 * mutations. Whatever compiles must prepare as one statement, bind exactly its params, run
 * to the end and change nothing; whatever does not compile must say where. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const char *const OPERANDS[] = {
    "title",
    "views",
    "published",
    "author",
    "author.name",
    "author.org.name",
    "author.id",
    "tags",
    "tags.name",
    "tags.color",
    "tags:each",
    "tags:length",
    "cats",
    "cats:each",
    "cats:length",
    "data",
    "data.a.b",
    "data.0",
    "due",
    "created",
    "id",
    "status",
    "comments_via_post.message",
    "comments_via_post.user.name",
    "likes_via_posts.user.org.name",
    "title:lower",
    "@now",
    "@todayStart",
    "@monthEnd",
    "@year",
    "@weekday",
    "null",
    "true",
    "false",
    "'x'",
    "''",
    "\"go\"",
    "'a%'",
    "'_'",
    "'\\%'",
    "5",
    "-1.5",
    "0",
    "100",
    "@request.auth.id",
    "@request.auth.role",
    "@request.auth.org.name",
    "@request.body.title",
    "@request.body.tags:each",
    "@request.body.tags:length",
    "@request.body.title:isset",
    "@request.body.title:changed",
    "@request.method",
    "@request.query.x",
    "@collection.tags.name",
    "@collection.comments:c.post",
    "strftime('%Y', created)",
    "geoDistance(views, 1, data.a.b, 3)",
    "strftime('%m', tags.name, 'start of month')",
};
static const char *const OPS[] = {"=",  "!=",  ">",  ">=",  "<",  "<=",  "~",  "!~",
                                  "?=", "?!=", "?>", "?>=", "?<", "?<=", "?~", "?!~"};

static void gen_expr(struct buf *b, int depth)
{
    int terms = 1 + (int)rnd(3);
    for (int i = 0; i < terms; i++) {
        if (i)
            buf_puts(b, rnd(2) ? " && " : " || ");
        if (depth < 3 && rnd(4) == 0) {
            buf_putc(b, '(');
            gen_expr(b, depth + 1);
            buf_putc(b, ')');
        } else {
            buf_printf(b, "%s %s %s", OPERANDS[rnd(ARRAY_LEN(OPERANDS))], OPS[rnd(ARRAY_LEN(OPS))],
                       OPERANDS[rnd(ARRAY_LEN(OPERANDS))]);
        }
    }
}

static void gen_soup(struct buf *b)
{
    static const char *const extra[] = {"&&", "||", "(",  ")",  ",", "//", "\n", "'",
                                        "\"", ";",  "--", "\\", ":", ".",  "@",  "\xc3\xa9"};
    int n = 1 + (int)rnd(12);
    for (int i = 0; i < n; i++) {
        switch (rnd(3)) {
        case 0: buf_puts(b, OPERANDS[rnd(ARRAY_LEN(OPERANDS))]); break;
        case 1: buf_puts(b, OPS[rnd(ARRAY_LEN(OPS))]); break;
        default: buf_puts(b, extra[rnd(ARRAY_LEN(extra))]); break;
        }
        if (rnd(2))
            buf_putc(b, ' ');
    }
}

static void test_random(void **state)
{
    (void)state;
    sqlite3 *db = fx_db_open();
    assert_non_null(db);
    char *before = snapshot(db);
    int changes = sqlite3_total_changes(db);
    json_t *auth = json_pack("{s:s}", "id", "u1");
    json_t *body = json_pack("{s:s, s:[s]}", "title", "Hello World", "tags", "t1");
    struct filter_request rq = {
        .method = "GET", .auth = auth, .auth_collection = FX_USERS, .body = body};
    size_t n_ok = 0, n_err = 0;
    struct buf b;
    buf_init(&b);
    for (int iter = 0; iter < 6000; iter++) {
        buf_reset(&b);
        int kind = (int)rnd(3);
        if (kind == 2) {
            gen_soup(&b);
        } else {
            gen_expr(&b, 0);
            if (kind == 1) { /* mutate a few bytes */
                for (int m = 0; m < 3; m++) {
                    size_t at = rnd((uint32_t)b.len);
                    static const char bytes[] = "'\"()=!?~<>&|.:@_ ,\\;-0a\x01\xff";
                    b.ptr[at] = bytes[rnd(sizeof(bytes) - 1)];
                }
            }
        }
        struct filter_ctx ctx = fx_ctx(FX_POSTS);
        ctx.request = &rq;
        ctx.client = rnd(4) == 0;
        struct arena a;
        arena_init(&a, 4096);
        struct filter_sql q, srt;
        struct filter_error err;
        int rc = filter_compile(&ctx, b.ptr, b.len, &a, &q, &err);
        if (rc == 0) {
            n_ok++;
            char ids[256];
            run_one(db, &q, NULL, ids, sizeof(ids));
        } else {
            n_err++;
            assert_true(rc == ERR_INVALID || rc == ERR_LIMIT || rc == ERR_DENIED);
            assert_int_equal(err.code, rc);
            assert_true(err.pos <= b.len + 1);
            assert_non_null(strstr(err.msg, "invalid filter"));
        }
        /* the same text as a sort string: one field, or many */
        rc = filter_compile_sort(&ctx, b.ptr, b.len, &a, &srt, &err);
        if (rc == 0) {
            char ids[256];
            run_one(db, NULL, &srt, ids, sizeof(ids));
        }
        const char *one = OPERANDS[rnd(ARRAY_LEN(OPERANDS))];
        if (filter_compile_sort(&ctx, one, strlen(one), &a, &srt, &err) == 0) {
            char ids[256];
            run_one(db, NULL, &srt, ids, sizeof(ids));
            assert_int_equal(strlen(ids), strlen("p1,p2,p3,p4"));
        }
        arena_release(&a);
    }
    buf_release(&b);
    /* the generator must exercise both outcomes */
    assert_true(n_ok > 1000);
    assert_true(n_err > 1000);
    assert_int_equal(sqlite3_total_changes(db), changes);
    char *after = snapshot(db);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(auth);
    json_decref(body);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_filters), cmocka_unit_test(test_value_filters),
        cmocka_unit_test(test_bad_sorts),   cmocka_unit_test(test_request_values),
        cmocka_unit_test(test_huge_inputs), cmocka_unit_test(test_schema_names_quoted),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
