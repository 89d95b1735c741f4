/* test_store_views.c - view collections in the store: the viewQuery check (only reads of the
 * application's collections, one SELECT, no `*`, an id column), field inference, reads through
 * the view, refused writes, the views kept working (or the change refused) when their tables
 * change, import order, and a password field on a base collection. */
#include "store_fixture.h"

#include "core/core.h"

static struct store_collection *posts_and_view(struct fx *fx, struct store_collection **posts_out)
{
    struct store_collection *posts = fx_coll(
        fx, "{\"name\":\"posts\",\"fields\":[{\"name\":\"title\",\"type\":\"text\"},"
            "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"_pb_users_auth_\"},"
            "{\"name\":\"views\",\"type\":\"number\"}]}");
    struct store_collection *users = NULL;
    assert_int_equal(store_collection_get(fx->st, "users", &users), 0);
    json_t *u = J("{\"id\":\"u1aaaaaaaaaaaaa\",\"email\":\"a@x.io\",\"name\":\"Ada\"}");
    json_t *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx->st, users, u, "$argon2id$x", &errors, &rec), 0);
    json_decref(rec);
    json_decref(u);
    json_decref(
        fx_rec(fx, posts, "{\"title\":\"one\",\"author\":\"u1aaaaaaaaaaaaa\",\"views\":3}"));
    json_decref(
        fx_rec(fx, posts, "{\"title\":\"two\",\"author\":\"u1aaaaaaaaaaaaa\",\"views\":4}"));
    store_collection_unref(users);
    *posts_out = posts;
    return fx_coll(fx, "{\"name\":\"counts\",\"type\":\"view\",\"listRule\":\"\","
                       "\"viewQuery\":\"SELECT p.author AS id, u.name, count(*) AS n, "
                       "CAST(sum(p.views) AS TEXT) AS s, CAST(1 AS BOOLEAN) AS b, "
                       "max(p.title) AS last FROM posts p JOIN users u ON u.id = p.author "
                       "GROUP BY p.author;\"}");
}

static void test_fields_inferred_and_records_read(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *posts, *v = posts_and_view(&fx, &posts);
    assert_int_equal(v->type, STORE_COLLECTION_VIEW);
    assert_int_equal(v->n_fields, 6);
    const struct store_field *id = store_collection_field(v, "id");
    assert_true(id->primary_key);
    assert_int_equal(id->type, STORE_FIELD_TEXT);
    assert_int_equal(store_collection_field(v, "name")->type, STORE_FIELD_TEXT);
    assert_int_equal(store_collection_field(v, "name")->max, 255); /* users.name's options */
    assert_int_equal(store_collection_field(v, "n")->type, STORE_FIELD_NUMBER);
    assert_int_equal(store_collection_field(v, "s")->type, STORE_FIELD_TEXT);
    assert_int_equal(store_collection_field(v, "b")->type, STORE_FIELD_BOOL);
    assert_int_equal(store_collection_field(v, "last")->type, STORE_FIELD_JSON);
    assert_string_equal(v->view_query, "SELECT p.author AS id, u.name, count(*) AS n, "
                                       "CAST(sum(p.views) AS TEXT) AS s, CAST(1 AS BOOLEAN) AS b, "
                                       "max(p.title) AS last FROM posts p JOIN users u ON u.id = "
                                       "p.author GROUP BY p.author");
    json_t *rec = NULL;
    assert_int_equal(store_record_get(fx.st, v, "u1aaaaaaaaaaaaa", &rec), 0);
    assert_int_equal(json_integer_value(json_object_get(rec, "n")), 2);
    assert_string_equal(json_string_value(json_object_get(rec, "s")), "7");
    assert_true(json_is_true(json_object_get(rec, "b")));
    assert_string_equal(json_string_value(json_object_get(rec, "collectionName")), "counts");
    json_decref(rec);
    /* the definition survives a restart */
    store_collection_unref(v);
    store_collection_unref(posts);
    fx_reopen(&fx);
    assert_int_equal(store_collection_get(fx.st, "counts", &v), 0);
    assert_int_equal(v->type, STORE_COLLECTION_VIEW);
    assert_int_equal(store_collection_field(v, "n")->type, STORE_FIELD_NUMBER);
    json_t *j = store_collection_to_json(v);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "view");
    assert_non_null(json_string_value(json_object_get(j, "viewQuery")));
    json_decref(j);
    store_collection_unref(v);
    fx_close(&fx);
}

static void expect_query_refused(struct fx *fx, const char *query, const char *words)
{
    json_t *spec = json_pack("{s:s, s:s, s:s}", "name", "bad", "type", "view", "viewQuery", query);
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    assert_int_equal(store_collection_create(fx->st, spec, &errors, &c), ERR_INVALID);
    assert_null(c);
    const char *msg =
        json_string_value(json_object_get(json_object_get(errors, "viewQuery"), "message"));
    if (!msg || !strstr(msg, words)) {
        char *t = json_dumps(errors, 0);
        fail_msg("%s: expected \"%s\", got %s", query, words, t);
    }
    json_decref(errors);
    /* the dry run says the same */
    json_t *fields = NULL;
    assert_int_equal(store_collection_view_fields(fx->st, query, &errors, &fields), ERR_INVALID);
    assert_null(fields);
    assert_non_null(json_object_get(errors, "viewQuery"));
    json_decref(errors);
    json_decref(spec);
}

static void test_queries_refused(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *posts, *v = posts_and_view(&fx, &posts);
    expect_query_refused(&fx, "DELETE FROM posts", "only read");
    expect_query_refused(&fx, "INSERT INTO posts (title) VALUES ('x') RETURNING id", "only read");
    expect_query_refused(&fx, "SELECT id FROM posts; DROP TABLE posts", "exactly one");
    expect_query_refused(&fx, "SELECT id FROM posts; SELECT 1", "exactly one");
    expect_query_refused(&fx, "SELECT id, name, type FROM _collections", "only read");
    expect_query_refused(&fx, "SELECT name AS id, sql FROM sqlite_master", "only read");
    expect_query_refused(&fx, "SELECT * FROM posts", "Wildcard");
    expect_query_refused(&fx, "SELECT id, p.* FROM posts p", "Wildcard");
    expect_query_refused(&fx, "SELECT title FROM posts", "Missing required id");
    expect_query_refused(&fx, "SELECT id, title, upper(title) FROM posts", "alias");
    expect_query_refused(&fx, "SELECT id, title AS a, views AS A FROM posts", "Duplicated");
    expect_query_refused(&fx, "SELECT id FROM nosuch", "no such table");
    expect_query_refused(&fx, "SELECT id, upper(password) AS p FROM users", "password or tokenKey");
    expect_query_refused(&fx, "SELECT id FROM users WHERE tokenKey != ''", "password or tokenKey");
    expect_query_refused(&fx, "SELECT id, email FROM _superusers WHERE password LIKE '$2%'",
                         "password or tokenKey");
    expect_query_refused(&fx, "SELECT id FROM pragma_table_info('posts')", "only read");
    expect_query_refused(&fx, "SELECT id FROM posts WHERE", "Invalid query");
    expect_query_refused(&fx, "   ;; ", "blank");
    /* nothing was written, the tables are all there */
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM posts"), 2);
    /* a view over a view, CTEs and subqueries are reads too */
    store_collection_unref(
        fx_coll(&fx, "{\"name\":\"v2\",\"type\":\"view\",\"viewQuery\":\"WITH t AS (SELECT id, n "
                     "FROM counts) SELECT id, (SELECT count(*) FROM posts) AS total FROM t\"}"));
    /* PocketBase's hint for a view without ids: the records are found by their id string */
    struct store_collection *numbered =
        fx_coll(&fx, "{\"name\":\"numbered\",\"type\":\"view\",\"viewQuery\":\"SELECT "
                     "(ROW_NUMBER() OVER (ORDER BY title)) AS id, title FROM posts\"}");
    json_t *rec = NULL;
    assert_int_equal(store_record_get(fx.st, numbered, "2", &rec), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "title")), "two");
    json_decref(rec);
    store_collection_unref(numbered);
    json_t *fields = NULL, *errors = NULL;
    assert_int_equal(
        store_collection_view_fields(fx.st, "select id, author from posts", &errors, &fields), 0);
    assert_int_equal(json_array_size(fields), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 1), "type")),
                        "relation");
    json_decref(fields);
    store_collection_unref(v);
    store_collection_unref(posts);
    fx_close(&fx);
}

static void test_views_refuse_writes(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *posts, *v = posts_and_view(&fx, &posts);
    json_t *body = J("{\"n\":5}"), *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx.st, v, body, NULL, &errors, &rec), ERR_DENIED);
    assert_int_equal(store_record_update(fx.st, v, "u1aaaaaaaaaaaaa", body, NULL, &errors, &rec),
                     ERR_DENIED);
    assert_int_equal(store_record_delete(fx.st, v, "u1aaaaaaaaaaaaa"), ERR_DENIED);
    assert_int_equal(store_collection_truncate(fx.st, "counts"), ERR_INVALID);
    json_decref(body);
    /* a view's relation field never takes part in cascades: deleting the user works */
    struct store_collection *users = NULL;
    assert_int_equal(store_collection_get(fx.st, "users", &users), 0);
    assert_int_equal(store_record_delete(fx.st, users, "u1aaaaaaaaaaaaa"), 0);
    assert_int_equal(store_record_get(fx.st, v, "u1aaaaaaaaaaaaa", &rec), ERR_NOTFOUND);
    store_collection_unref(users);
    store_collection_unref(v);
    store_collection_unref(posts);
    fx_close(&fx);
}

static void test_tables_change_under_views(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *posts, *v = posts_and_view(&fx, &posts);
    store_collection_unref(
        fx_coll(&fx, "{\"name\":\"titles\",\"type\":\"view\",\"viewQuery\":\"SELECT id, title "
                     "FROM posts\"}"));
    /* a new field and a rebuild keep the views working; a copied field follows its options */
    json_t *patch =
        J("{\"fields\":[{\"name\":\"title\",\"type\":\"text\",\"max\":50,\"hidden\":true},"
          "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"_pb_users_auth_\"},"
          "{\"name\":\"views\",\"type\":\"number\"},"
          "{\"name\":\"tag\",\"type\":\"select\",\"values\":[\"a\",\"b\"],\"maxSelect\":2}]}");
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    assert_int_equal(store_collection_update(fx.st, "posts", patch, &errors, &c), 0);
    store_collection_unref(c);
    json_decref(patch);
    assert_int_equal(fx_sql_int(&fx, "SELECT n FROM counts"), 2);
    struct store_collection *t = NULL;
    assert_int_equal(store_collection_get(fx.st, "titles", &t), 0);
    assert_int_equal(store_collection_field(t, "title")->max, 50);
    assert_true(store_collection_field(t, "title")->hidden);
    store_collection_unref(t);
    assert_int_equal(store_collection_delete(fx.st, "titles"), 0);
    /* dropping a column it reads is refused, naming the view; so is dropping its table */
    patch = J("{\"fields\":[{\"name\":\"title\",\"type\":\"text\"},"
              "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"_pb_users_auth_\"}]}");
    assert_int_equal(store_collection_update(fx.st, "posts", patch, &errors, &c), ERR_INVALID);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(errors, "fields"), "message")),
               "counts"));
    json_decref(errors);
    json_decref(patch);
    assert_int_equal(store_collection_delete(fx.st, "posts"), ERR_CONFLICT);
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM posts"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT n FROM counts"), 2);
    /* the view goes first, then the table may */
    assert_int_equal(store_collection_delete(fx.st, "counts"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM sqlite_master WHERE name = 'counts'"),
                     0);
    assert_int_equal(store_collection_delete(fx.st, "posts"), 0);
    store_collection_unref(v);
    store_collection_unref(posts);
    fx_close(&fx);
}

static void test_import_views_after_tables(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    /* the view comes first in the array and reads a table and a view the import makes; its
     * exported fields are ignored (inferred again) */
    json_t *cols =
        J("[{\"name\":\"per_kind\",\"type\":\"view\",\"fields\":[{\"name\":\"bogus\",\"type\":"
          "\"nope\"}],"
          "\"viewQuery\":\"SELECT min(id) AS id, kind, count(*) AS n FROM things GROUP BY kind\"},"
          "{\"name\":\"things\",\"type\":\"base\",\"fields\":[{\"name\":\"kind\",\"type\":\"text\"}"
          "]}]");
    json_t *errors = NULL;
    int rc = store_collection_import(fx.st, cols, false, &errors);
    if (rc) {
        char *t = json_dumps(errors, 0);
        fail_msg("import: %s %s", err_str(rc), t);
    }
    json_decref(cols);
    struct store_collection *v = NULL;
    assert_int_equal(store_collection_get(fx.st, "per_kind", &v), 0);
    assert_int_equal(store_collection_field(v, "n")->type, STORE_FIELD_NUMBER);
    assert_null(store_collection_field(v, "bogus"));
    store_collection_unref(v);
    /* deleteMissing drops the view too; a bad view query fails the whole import */
    cols = J("[{\"name\":\"things\",\"type\":\"base\",\"fields\":[{\"name\":\"kind\",\"type\":"
             "\"text\"}]},"
             "{\"name\":\"broken\",\"type\":\"view\",\"viewQuery\":\"SELECT kind FROM things\"}]");
    assert_int_equal(store_collection_import(fx.st, cols, true, &errors), ERR_INVALID);
    assert_non_null(json_object_get(json_object_get(errors, "collections"), "1"));
    json_decref(errors);
    assert_int_equal(store_collection_get(fx.st, "per_kind", &v), 0); /* nothing changed */
    store_collection_unref(v);
    json_decref(cols);
    cols = J("[{\"name\":\"things\",\"type\":\"base\",\"fields\":[{\"name\":\"kind\",\"type\":"
             "\"text\"}]}]");
    assert_int_equal(store_collection_import(fx.st, cols, true, &errors), 0);
    assert_int_equal(store_collection_get(fx.st, "per_kind", &v), ERR_NOTFOUND);
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM sqlite_master WHERE name = 'per_kind'"),
                     0);
    json_decref(cols);
    fx_close(&fx);
}

static void test_password_field_on_base_collection(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"vault\",\"fields\":[{\"name\":\"label\",\"type\":\"text\"},"
                     "{\"name\":\"pin\",\"type\":\"password\",\"min\":4,\"hidden\":true}]}");
    json_t *body = J("{\"label\":\"x\",\"pin\":\"plain-text-must-not-be-stored\"}");
    json_t *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx.st, c, body, "$argon2id$hashed", &errors, &rec), 0);
    assert_null(json_object_get(rec, "pin")); /* never returned */
    const char *id = json_string_value(json_object_get(rec, "id"));
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT pin = '$argon2id$hashed' FROM vault WHERE id = '%s'", id);
    assert_int_equal(fx_sql_int(&fx, sql), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM vault WHERE pin LIKE '%plain%'"), 0);
    json_t *again = NULL;
    assert_int_equal(store_record_get(fx.st, c, id, &again), 0);
    assert_null(json_object_get(again, "pin"));
    json_decref(again);
    /* the outbox row (what the warehouse and realtime see) has no password either */
    json_t *rows = NULL;
    assert_int_equal(store_outbox_read(fx.st, 0, 100, &rows), 0);
    char *dump = json_dumps(rows, 0);
    assert_null(strstr(dump, "argon2id"));
    assert_null(strstr(dump, "plain-text"));
    free(dump);
    json_decref(rows);
    json_decref(rec);
    json_decref(body);
    store_collection_unref(c);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_inferred_and_records_read),
        cmocka_unit_test(test_queries_refused),
        cmocka_unit_test(test_views_refuse_writes),
        cmocka_unit_test(test_tables_change_under_views),
        cmocka_unit_test(test_import_views_after_tables),
        cmocka_unit_test(test_password_field_on_base_collection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
