/* Store collections: defaults, every field type, validation, quoting, migrations, indexes,
 * rename, delete and reopening. Real SQLite files under $TMPDIR. */
#include "store_fixture.h"

#define N_DEFAULT 3 /* default collections: _superusers, users, _externalAuths */
#define N_SYSTEM 2  /* of which system ones, never dropped by an import */

static void test_defaults_on_first_open(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *su = NULL, *users = NULL;
    assert_int_equal(store_collection_get(fx.st, "pbc_3142635823", &su), 0);
    assert_string_equal(su->name, "_superusers");
    assert_true(su->system);
    assert_int_equal(su->type, STORE_COLLECTION_AUTH);
    const char *want[] = {"id",       "password", "tokenKey", "email", "emailVisibility",
                          "verified", "created",  "updated"};
    for (size_t i = 0; i < ARRAY_LEN(want); i++)
        assert_non_null(store_collection_field(su, want[i]));
    assert_true(store_collection_field(su, "password")->hidden);
    assert_int_equal(store_collection_get(fx.st, "users", &users), 0);
    assert_string_equal(users->id, "_pb_users_auth_");
    assert_string_equal(users->rules[STORE_RULE_CREATE], "");
    json_t *j = store_collection_to_json(su);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "pbc_3142635823");
    assert_true(json_is_null(json_object_get(j, "listRule")));
    assert_int_equal(json_array_size(json_object_get(j, "indexes")), 2);
    json_decref(j);
    /* by name, case-insensitively; unknown names */
    struct store_collection *again = NULL;
    assert_int_equal(store_collection_get(fx.st, "USERS", &again), 0);
    assert_ptr_equal(again, users);
    store_collection_unref(again);
    assert_int_equal(store_collection_get(fx.st, "nope", &again), ERR_NOTFOUND);
    store_collection_unref(su);
    store_collection_unref(users);
    /* the tables exist */
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM \"_superusers\""), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _collections"), N_DEFAULT);
    fx_close(&fx);
}

static const char posts_spec[] =
    "{\"name\":\"posts\",\"listRule\":\"\",\"fields\":["
    "{\"name\":\"title\",\"type\":\"text\",\"required\":true,\"min\":2,\"max\":20},"
    "{\"name\":\"views\",\"type\":\"number\",\"min\":0,\"max\":100,\"onlyInt\":true},"
    "{\"name\":\"published\",\"type\":\"bool\"},"
    "{\"name\":\"contact\",\"type\":\"email\"},"
    "{\"name\":\"site\",\"type\":\"url\"},"
    "{\"name\":\"when\",\"type\":\"date\"},"
    "{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
    "{\"name\":\"updated\",\"type\":\"autodate\",\"onCreate\":true,\"onUpdate\":true},"
    "{\"name\":\"status\",\"type\":\"select\",\"values\":[\"draft\",\"live\"],\"maxSelect\":1},"
    "{\"name\":\"tags\",\"type\":\"select\",\"values\":[\"a\",\"b\",\"c\"],\"maxSelect\":3},"
    "{\"name\":\"meta\",\"type\":\"json\"},"
    "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"_pb_users_auth_\"}]}";

static void test_create_every_field_type(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    assert_string_equal(c->id, "pbc_1125843985"); /* "pbc_" + crc32("base" + "posts") */
    assert_string_equal(c->rules[STORE_RULE_LIST], "");
    assert_null(c->rules[STORE_RULE_VIEW]);
    assert_int_equal(c->n_fields, 13); /* id added */
    const struct store_field *id = store_collection_field(c, "id");
    assert_true(id->primary_key && id->system);
    assert_string_equal(id->id, "text3208210256");
    assert_string_equal(store_collection_field(c, "title")->id, "text724990059");
    assert_true(store_field_multiple(store_collection_field(c, "tags")));
    assert_false(store_field_multiple(store_collection_field(c, "status")));

    json_t *j = store_collection_to_json(c);
    json_t *fields = json_object_get(j, "fields");
    json_t *views = json_array_get(fields, 2);
    assert_string_equal(json_string_value(json_object_get(views, "type")), "number");
    assert_int_equal(json_integer_value(json_object_get(views, "max")), 100);
    assert_true(json_is_true(json_object_get(views, "onlyInt")));
    /* field objects list their keys in byte order, as PocketBase writes them */
    const char *prev = "";
    const char *k;
    json_t *v;
    json_object_foreach(views, k, v)
    {
        assert_true(strcmp(prev, k) < 0);
        prev = k;
    }
    json_t *author = json_array_get(fields, 12);
    assert_string_equal(json_string_value(json_object_get(author, "collectionId")),
                        "_pb_users_auth_");
    assert_int_equal(json_integer_value(json_object_get(author, "maxSelect")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "base");
    json_decref(j);

    /* real typed columns */
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_table_info('posts')"), 13);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_table_info('posts') WHERE "
                                     "name='views' AND type='NUMERIC' AND \"notnull\"=1"),
                     1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_table_info('posts') WHERE "
                                     "name='tags' AND type='JSON' AND dflt_value='''[]'''"),
                     1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_table_info('posts') WHERE "
                                     "name='meta' AND \"notnull\"=0"),
                     1);
    assert_int_equal(fx_sql_int(&fx, "SELECT pk FROM pragma_table_info('posts') WHERE name='id'"),
                     1);
    store_collection_unref(c);

    /* an auth collection gets the auth system fields and unique indexes */
    struct store_collection *a = fx_coll(&fx, "{\"name\":\"staff\",\"type\":\"auth\",\"fields\":["
                                              "{\"name\":\"nick\",\"type\":\"text\"}]}");
    assert_non_null(store_collection_field(a, "password"));
    assert_non_null(store_collection_field(a, "tokenKey"));
    assert_non_null(store_collection_field(a, "email"));
    assert_int_equal(a->n_indexes, 2);
    assert_int_equal(
        fx_sql_int(
            &fx,
            "SELECT COUNT(*) FROM pragma_index_list('staff') WHERE \"unique\"=1 AND origin='c'"),
        2);
    store_collection_unref(a);
    fx_close(&fx);
}

static void expect_invalid(struct fx *fx, const char *spec, const char *key)
{
    json_t *j = J(spec);
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    int rc = store_collection_create(fx->st, j, &errors, &c);
    assert_int_equal(rc, ERR_INVALID);
    assert_null(c);
    if (!json_object_get(errors, key)) {
        char *t = json_dumps(errors, 0);
        fail_msg("expected an error on %s for %s, got %s", key, spec, t);
    }
    json_decref(errors);
    json_decref(j);
}

static void test_name_validation(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    expect_invalid(&fx, "{\"name\":\"1abc\"}", "name");
    expect_invalid(&fx, "{\"name\":\"a-b\"}", "name");
    expect_invalid(&fx, "{\"name\":\"a b\"}", "name");
    expect_invalid(&fx, "{\"name\":\"x\\\"; DROP TABLE users; --\"}", "name");
    expect_invalid(&fx, "{\"name\":\"\"}", "name");
    expect_invalid(&fx, "{\"name\":\"_collections\"}", "name");
    expect_invalid(&fx, "{\"name\":\"_mine\"}", "name");
    expect_invalid(&fx, "{\"name\":\"posts_via_x\"}", "name");
    expect_invalid(&fx, "{\"name\":\"USERS\"}", "name"); /* exists, case-insensitively */
    expect_invalid(&fx, "{\"name\":\"ok\",\"type\":\"view\"}", "viewQuery");
    expect_invalid(&fx, "{\"name\":\"ok\",\"type\":\"table\"}", "type");
    expect_invalid(&fx, "{\"name\":\"ok\",\"fields\":[{\"name\":\"a-b\",\"type\":\"text\"}]}",
                   "fields");
    expect_invalid(&fx, "{\"name\":\"ok\",\"fields\":[{\"name\":\"expand\",\"type\":\"text\"}]}",
                   "fields");
    expect_invalid(&fx,
                   "{\"name\":\"ok\",\"fields\":[{\"name\":\"a\",\"type\":\"text\"},"
                   "{\"name\":\"A\",\"type\":\"bool\"}]}",
                   "fields");
    expect_invalid(&fx,
                   "{\"name\":\"ok\",\"fields\":[{\"name\":\"a\",\"type\":\"file\","
                   "\"thumbs\":[\"10x\"]}]}",
                   "fields");
    expect_invalid(&fx, "{\"name\":\"ok\",\"fields\":[{\"name\":\"s\",\"type\":\"select\"}]}",
                   "fields");
    expect_invalid(&fx,
                   "{\"name\":\"ok\",\"fields\":[{\"name\":\"r\",\"type\":\"relation\","
                   "\"collectionId\":\"nope\"}]}",
                   "fields");
    expect_invalid(&fx,
                   "{\"name\":\"ok\",\"fields\":[{\"name\":\"p\",\"type\":\"password\"},"
                   "{\"name\":\"q\",\"type\":\"password\"}]}",
                   "fields"); /* one password field per collection */
    expect_invalid(&fx,
                   "{\"name\":\"ok\",\"fields\":[{\"name\":\"t\",\"type\":\"text\","
                   "\"pattern\":\"([\"}]}",
                   "fields");
    expect_invalid(&fx, "{\"name\":\"ok\",\"fields\":[{\"name\":\"d\",\"type\":\"autodate\"}]}",
                   "fields");
    expect_invalid(&fx, "{\"name\":\"ok\",\"listRule\":5}", "listRule");
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = '\0';
    char spec[400];
    snprintf(spec, sizeof(spec), "{\"name\":\"%s\"}", longname);
    expect_invalid(&fx, spec, "name");
    /* nothing was created */
    struct store_collection **all;
    size_t n;
    assert_int_equal(store_collection_list(fx.st, &all, &n), 0);
    assert_int_equal(n, N_DEFAULT);
    store_collection_list_free(all, n);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name='ok'"), 0);
    fx_close(&fx);
}

static void test_sql_keyword_names_are_quoted(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(
        &fx, "{\"name\":\"select\",\"fields\":[{\"name\":\"order\",\"type\":\"text\"},"
             "{\"name\":\"group\",\"type\":\"number\"},{\"name\":\"where\",\"type\":\"bool\"}],"
             "\"indexes\":[\"CREATE INDEX idx_order ON \\\"select\\\" (\\\"order\\\")\"]}");
    json_t *r = fx_rec(&fx, c, "{\"order\":\"first\",\"group\":3,\"where\":true}");
    assert_string_equal(json_string_value(json_object_get(r, "order")), "first");
    struct store_sort sort = {"order", true};
    struct store_list_query q = {.page = 1, .per_page = 10, .sort = &sort, .n_sort = 1};
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res.items, 0), "group")), 3);
    json_decref(res.items);
    json_decref(r);
    assert_string_equal(c->indexes[0], "CREATE INDEX `idx_order` ON `select` (`order`)");
    store_collection_unref(c);
    fx_close(&fx);
}

static int update(struct fx *fx, const char *name, const char *patch, json_t **errors,
                  struct store_collection **out)
{
    json_t *j = J(patch);
    int rc = store_collection_update(fx->st, name, j, errors, out);
    json_decref(j);
    return rc;
}

static void test_migration_keeps_data(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"notes\",\"fields\":[{\"name\":\"a\",\"type\":\"text\"},"
                     "{\"name\":\"b\",\"type\":\"number\"},{\"name\":\"c\",\"type\":\"text\"}]}");
    json_t *r1 = fx_rec(&fx, c, "{\"a\":\"one\",\"b\":1,\"c\":\"x\"}");
    json_t *r2 = fx_rec(&fx, c, "{\"a\":\"two\",\"b\":2,\"c\":\"y\"}");
    const char *id1 = json_string_value(json_object_get(r1, "id"));
    char patch[1024];
    /* rename b -> bb (matched by id), drop c, add d */
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"a\",\"type\":\"text\"},"
             "{\"id\":\"%s\",\"name\":\"bb\",\"type\":\"number\"},"
             "{\"name\":\"d\",\"type\":\"bool\"}]}",
             store_collection_field(c, "a")->id, store_collection_field(c, "b")->id);
    struct store_collection *c2 = NULL;
    json_t *errors = NULL;
    assert_int_equal(update(&fx, "notes", patch, &errors, &c2), 0);
    assert_non_null(store_collection_field(c2, "bb"));
    assert_null(store_collection_field(c2, "b"));
    assert_null(store_collection_field(c2, "c"));
    json_t *got = NULL;
    assert_int_equal(store_record_get(fx.st, c2, id1, &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "a")), "one");
    assert_int_equal(json_integer_value(json_object_get(got, "bb")), 1);
    assert_true(json_is_false(json_object_get(got, "d")));
    assert_null(json_object_get(got, "c"));
    json_decref(got);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_table_info('notes')"), 4);
    /* swap two names in one update */
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"bb\",\"type\":\"text\"},"
             "{\"id\":\"%s\",\"name\":\"a\",\"type\":\"number\"},"
             "{\"id\":\"%s\",\"name\":\"d\",\"type\":\"bool\"}]}",
             store_collection_field(c2, "a")->id, store_collection_field(c2, "bb")->id,
             store_collection_field(c2, "d")->id);
    struct store_collection *c3 = NULL;
    assert_int_equal(update(&fx, "notes", patch, &errors, &c3), 0);
    assert_int_equal(store_record_get(fx.st, c3, id1, &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "bb")), "one");
    assert_int_equal(json_integer_value(json_object_get(got, "a")), 1);
    json_decref(got);
    /* a type change is refused and changes nothing */
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"bb\",\"type\":\"number\"}]}",
             store_collection_field(c3, "bb")->id);
    assert_int_equal(update(&fx, "notes", patch, &errors, NULL), ERR_INVALID);
    assert_non_null(json_object_get(errors, "fields"));
    json_decref(errors);
    errors = NULL;
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM notes"), 2);
    json_decref(r1);
    json_decref(r2);
    store_collection_unref(c);
    store_collection_unref(c2);
    store_collection_unref(c3);
    fx_close(&fx);
}

static void test_single_to_multiple_rebuilds(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(
        &fx, "{\"name\":\"items\",\"fields\":[{\"name\":\"s\",\"type\":\"select\","
             "\"values\":[\"x\",\"y\"],\"maxSelect\":1},{\"name\":\"n\",\"type\":\"text\"}],"
             "\"indexes\":[\"CREATE INDEX idx_n ON items (n)\"]}");
    json_t *r1 = fx_rec(&fx, c, "{\"s\":\"x\",\"n\":\"a\"}");
    json_t *r2 = fx_rec(&fx, c, "{\"n\":\"b\"}");
    char patch[512];
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"s\",\"type\":\"select\","
             "\"values\":[\"x\",\"y\"],\"maxSelect\":2},{\"name\":\"n\",\"type\":\"text\"}]}",
             store_collection_field(c, "s")->id);
    struct store_collection *c2 = NULL;
    json_t *errors = NULL;
    assert_int_equal(update(&fx, "items", patch, &errors, &c2), 0);
    json_t *got;
    assert_int_equal(
        store_record_get(fx.st, c2, json_string_value(json_object_get(r1, "id")), &got), 0);
    json_t *s = json_object_get(got, "s");
    assert_true(json_is_array(s));
    assert_int_equal(json_array_size(s), 1);
    assert_string_equal(json_string_value(json_array_get(s, 0)), "x");
    json_decref(got);
    assert_int_equal(
        store_record_get(fx.st, c2, json_string_value(json_object_get(r2, "id")), &got), 0);
    assert_int_equal(json_array_size(json_object_get(got, "s")), 0);
    json_decref(got);
    /* the index survived the rebuild */
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_index_list('items') WHERE "
                                     "name='idx_n'"),
                     1);
    /* and back to single keeps the last value */
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"s\",\"type\":\"select\","
             "\"values\":[\"x\",\"y\"],\"maxSelect\":1},{\"name\":\"n\",\"type\":\"text\"}]}",
             store_collection_field(c, "s")->id);
    struct store_collection *c3 = NULL;
    assert_int_equal(update(&fx, "items", patch, &errors, &c3), 0);
    assert_int_equal(
        store_record_get(fx.st, c3, json_string_value(json_object_get(r1, "id")), &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "s")), "x");
    json_decref(got);
    json_decref(r1);
    json_decref(r2);
    store_collection_unref(c);
    store_collection_unref(c2);
    store_collection_unref(c3);
    fx_close(&fx);
}

static void test_indexes(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(
        &fx, "{\"name\":\"people\",\"fields\":[{\"name\":\"code\",\"type\":\"text\"},"
             "{\"name\":\"age\",\"type\":\"number\"}],"
             "\"indexes\":[\"CREATE UNIQUE INDEX `idx_code` ON `people` (`code` COLLATE nocase) "
             "WHERE code != ''\",\"create index idx_age on people (age desc, code)\"]}");
    assert_string_equal(c->indexes[0], "CREATE UNIQUE INDEX `idx_code` ON `people` (`code` "
                                       "COLLATE NOCASE) WHERE `code` != ''");
    assert_string_equal(c->indexes[1], "CREATE INDEX `idx_age` ON `people` (`age` DESC, `code`)");
    assert_int_equal(
        fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_index_list('people') WHERE origin='c'"), 2);
    json_t *r = fx_rec(&fx, c, "{\"code\":\"AB\"}");
    fx_rec_invalid(&fx, c, "{\"code\":\"ab\"}", "code", "validation_not_unique");
    json_decref(fx_rec(&fx, c, "{\"code\":\"\"}"));
    json_decref(fx_rec(&fx, c, "{\"code\":\"\"}")); /* partial index: blanks are fine */
    /* renaming a field rewrites the index */
    char patch[512];
    snprintf(patch, sizeof(patch),
             "{\"fields\":[{\"id\":\"%s\",\"name\":\"kode\",\"type\":\"text\"},"
             "{\"name\":\"age\",\"type\":\"number\"}]}",
             store_collection_field(c, "code")->id);
    struct store_collection *c2 = NULL;
    json_t *errors = NULL;
    assert_int_equal(update(&fx, "people", patch, &errors, &c2), 0);
    assert_string_equal(c2->indexes[0], "CREATE UNIQUE INDEX `idx_code` ON `people` (`kode` "
                                        "COLLATE NOCASE) WHERE `kode` != ''");
    fx_rec_invalid(&fx, c2, "{\"kode\":\"Ab\"}", "kode", "validation_not_unique");
    /* a unique index over duplicate values is refused and nothing changes */
    assert_int_equal(update(&fx, "people",
                            "{\"indexes\":[\"CREATE UNIQUE INDEX idx_age2 ON people (age)\"]}",
                            &errors, NULL),
                     ERR_INVALID);
    assert_non_null(json_object_get(errors, "indexes"));
    json_decref(errors);
    errors = NULL;
    assert_int_equal(
        fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_index_list('people') WHERE origin='c'"), 2);
    /* bad index expressions */
    const char *bad[] = {
        "{\"indexes\":[\"DROP TABLE people\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (nope)\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE age > (SELECT 1)\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE age kode\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE age = 1 2\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE (age = 1\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE age = 1 AND\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age) WHERE nope = 1\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (lower(age))\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age); DROP TABLE people\"]}",
        "{\"indexes\":[\"CREATE INDEX i ON people (age)\",\"CREATE INDEX i ON people (kode)\"]}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(update(&fx, "people", bad[i], &errors, NULL), ERR_INVALID);
        assert_non_null(json_object_get(errors, "indexes"));
        json_decref(errors);
        errors = NULL;
    }
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM people"), 3);
    /* a richer partial index executes */
    struct store_collection *c3 = NULL;
    assert_int_equal(update(&fx, "people",
                            "{\"indexes\":[\"CREATE INDEX i2 ON people (age) WHERE (kode IS NOT "
                            "NULL AND NOT age = 1.5) OR kode <> 'it''s'\"]}",
                            &errors, &c3),
                     0);
    assert_string_equal(c3->indexes[0], "CREATE INDEX `i2` ON `people` (`age`) WHERE ( `kode` IS "
                                        "NOT NULL AND NOT `age` = 1.5 ) OR `kode` <> 'it''s'");
    store_collection_unref(c3);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_index_list('people') WHERE "
                                     "origin='c' AND partial=1"),
                     1);
    /* an index name used by another collection's index */
    expect_invalid(&fx,
                   "{\"name\":\"other\",\"fields\":[{\"name\":\"x\",\"type\":\"text\"}],"
                   "\"indexes\":[\"CREATE INDEX i2 ON other (x)\"]}",
                   "indexes");
    json_decref(r);
    store_collection_unref(c);
    store_collection_unref(c2);
    fx_close(&fx);
}

static void test_rename_and_delete(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *a =
        fx_coll(&fx, "{\"name\":\"authors\",\"fields\":[{\"name\":\"name\",\"type\":\"text\"}],"
                     "\"indexes\":[\"CREATE INDEX idx_name ON authors (name)\"]}");
    char spec[512];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"books\",\"fields\":[{\"name\":\"author\",\"type\":\"relation\","
             "\"collectionId\":\"%s\"}]}",
             a->id);
    struct store_collection *b = fx_coll(&fx, spec);
    json_t *ra = fx_rec(&fx, a, "{\"name\":\"Ann\"}");
    char body[128];
    snprintf(body, sizeof(body), "{\"author\":\"%s\"}",
             json_string_value(json_object_get(ra, "id")));
    json_decref(fx_rec(&fx, b, body));
    struct store_collection *a2 = NULL;
    json_t *errors = NULL;
    assert_int_equal(update(&fx, "authors", "{\"name\":\"writers\"}", &errors, &a2), 0);
    assert_string_equal(a2->id, a->id);
    assert_string_equal(a2->indexes[0], "CREATE INDEX `idx_name` ON `writers` (`name`)");
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM writers"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name='authors'"), 0);
    struct store_collection *tmp = NULL;
    assert_int_equal(store_collection_get(fx.st, "authors", &tmp), ERR_NOTFOUND);
    /* relations still point at it (by id) */
    json_decref(fx_rec(&fx, b, body));
    /* referenced: cannot be deleted */
    assert_int_equal(store_collection_delete(fx.st, "writers"), ERR_CONFLICT);
    assert_int_equal(store_collection_delete(fx.st, "_superusers"), ERR_DENIED);
    assert_int_equal(store_collection_delete(fx.st, "nope"), ERR_NOTFOUND);
    /* system collections cannot be renamed */
    assert_int_equal(update(&fx, "_superusers", "{\"name\":\"admins\"}", &errors, NULL),
                     ERR_INVALID);
    json_decref(errors);
    errors = NULL;
    assert_int_equal(store_collection_delete(fx.st, "books"), 0);
    assert_int_equal(store_collection_delete(fx.st, "writers"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                                     "('books','writers','idx_name')"),
                     0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _collections"), N_DEFAULT);
    json_decref(ra);
    store_collection_unref(a);
    store_collection_unref(a2);
    store_collection_unref(b);
    fx_close(&fx);
}

static void test_reopen_keeps_everything(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *r = fx_rec(&fx, c,
                       "{\"title\":\"hello\",\"views\":5,\"tags\":[\"a\",\"b\"],"
                       "\"meta\":{\"k\":[1,2]}}");
    json_t *cj = store_collection_to_json(c);
    store_collection_unref(c);
    fx_reopen(&fx);
    struct store_collection **all;
    size_t n;
    assert_int_equal(store_collection_list(fx.st, &all, &n), 0);
    assert_int_equal(n, N_DEFAULT + 1);
    assert_string_equal(all[0]->name, "_superusers");
    assert_string_equal(all[1]->name, "users");
    assert_string_equal(all[N_DEFAULT]->name, "posts");
    json_t *cj2 = store_collection_to_json(all[N_DEFAULT]);
    assert_true(json_equal(cj, cj2));
    json_t *got = NULL;
    assert_int_equal(
        store_record_get(fx.st, all[N_DEFAULT], json_string_value(json_object_get(r, "id")), &got),
        0);
    assert_true(json_equal(got, r));
    json_decref(got);
    json_decref(cj);
    json_decref(cj2);
    json_decref(r);
    store_collection_list_free(all, n);
    /* a second reopen does not add the default collections again */
    fx_reopen(&fx);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _collections"), N_DEFAULT + 1);
    fx_close(&fx);
}

static int import(struct fx *fx, const char *text, bool delete_missing, json_t **errors)
{
    json_t *j = J(text);
    int rc = store_collection_import(fx->st, j, delete_missing, errors);
    json_decref(j);
    return rc;
}

static void test_import_swaps_names(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    json_t *errors = NULL;
    assert_int_equal(import(&fx,
                            "[{\"id\":\"first0000000001\",\"name\":\"alpha\",\"fields\":["
                            "{\"name\":\"t\",\"type\":\"text\"}]},"
                            "{\"id\":\"second000000001\",\"name\":\"beta\",\"fields\":["
                            "{\"name\":\"t\",\"type\":\"text\"}]}]",
                            false, &errors),
                     0);
    struct store_collection *c = NULL;
    assert_int_equal(store_collection_get(fx.st, "alpha", &c), 0);
    json_decref(fx_rec(&fx, c, "{\"id\":\"rowofalpha00001\",\"t\":\"was alpha\"}"));
    store_collection_unref(c);
    /* the two collections trade names in one import: each keeps its own rows */
    int rc = import(&fx,
                    "[{\"id\":\"first0000000001\",\"name\":\"beta\",\"fields\":["
                    "{\"name\":\"t\",\"type\":\"text\"}]},"
                    "{\"id\":\"second000000001\",\"name\":\"alpha\",\"fields\":["
                    "{\"name\":\"t\",\"type\":\"text\"}]}]",
                    false, &errors);
    if (rc != 0)
        fail_msg("import: %s %s %s", err_str(rc), store_errmsg(fx.st),
                 errors ? json_dumps(errors, 0) : "");
    assert_int_equal(store_collection_get(fx.st, "beta", &c), 0);
    assert_string_equal(c->id, "first0000000001");
    store_collection_unref(c);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM beta WHERE t='was alpha'"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM alpha"), 0);
    assert_int_equal(
        fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_tandem_import_%'"),
        0);
    fx_close(&fx);
}

static void test_import(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    json_t *errors = NULL;
    /* a relation may point to a collection defined later in the same import */
    assert_int_equal(import(&fx,
                            "[{\"name\":\"books\",\"fields\":[{\"name\":\"author\","
                            "\"type\":\"relation\",\"collectionId\":\"authors00000001\"}]},"
                            "{\"id\":\"authors00000001\",\"name\":\"authors\",\"fields\":["
                            "{\"name\":\"name\",\"type\":\"text\"}],"
                            "\"indexes\":[\"CREATE INDEX idx_an ON authors (name)\"]}]",
                            false, &errors),
                     0);
    struct store_collection *a = NULL;
    assert_int_equal(store_collection_get(fx.st, "authors", &a), 0);
    json_decref(fx_rec(&fx, a, "{\"id\":\"ann000000000001\",\"name\":\"Ann\"}"));
    store_collection_unref(a);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pragma_index_list('authors') WHERE "
                                     "name='idx_an'"),
                     1);
    /* re-import: matched by name, a field added, the data kept */
    assert_int_equal(import(&fx,
                            "[{\"name\":\"authors\",\"fields\":[{\"name\":\"name\","
                            "\"type\":\"text\"},{\"name\":\"bio\",\"type\":\"text\"}]}]",
                            false, &errors),
                     0);
    assert_int_equal(store_collection_get(fx.st, "authors", &a), 0);
    assert_string_equal(a->id, "authors00000001");
    assert_non_null(store_collection_field(a, "bio"));
    store_collection_unref(a);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM authors WHERE name='Ann'"), 1);
    /* one bad item: nothing at all changes */
    assert_int_equal(import(&fx, "[{\"name\":\"extra\"},{\"name\":\"bad name\"}]", false, &errors),
                     ERR_INVALID);
    assert_non_null(json_object_get(json_object_get(errors, "collections"), "1"));
    json_decref(errors);
    errors = NULL;
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name='extra'"), 0);
    /* deleting a collection that a kept relation needs is refused */
    assert_int_equal(import(&fx,
                            "[{\"name\":\"books\",\"fields\":[{\"name\":\"author\","
                            "\"type\":\"relation\",\"collectionId\":\"authors00000001\"}]}]",
                            true, &errors),
                     ERR_INVALID);
    json_decref(errors);
    errors = NULL;
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name='authors'"), 1);
    /* deleteMissing drops what is not named, never system collections (nor, as in
     * PocketBase, the fields the import lists) */
    assert_int_equal(import(&fx,
                            "[{\"name\":\"authors\",\"fields\":[{\"name\":\"name\","
                            "\"type\":\"text\"},{\"name\":\"bio\",\"type\":\"text\"}]}]",
                            true, &errors),
                     0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM sqlite_master WHERE name='books'"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _collections"), N_SYSTEM + 1);
    assert_int_equal(store_collection_get(fx.st, "books", &a), ERR_NOTFOUND);
    assert_int_equal(store_collection_get(fx.st, "_superusers", &a), 0);
    store_collection_unref(a);
    /* PocketBase's import goes on top of an existing collection: without deleteMissing a
     * field the import does not list stays; with it, only the listed and system fields do */
    assert_int_equal(import(&fx, "[{\"name\":\"authors\",\"fields\":[]}]", false, &errors), 0);
    assert_int_equal(store_collection_get(fx.st, "authors", &a), 0);
    assert_non_null(store_collection_field(a, "bio"));
    store_collection_unref(a);
    assert_int_equal(import(&fx,
                            "[{\"name\":\"authors\",\"fields\":[{\"name\":\"name\","
                            "\"type\":\"text\"}]}]",
                            true, &errors),
                     0);
    assert_int_equal(store_collection_get(fx.st, "authors", &a), 0);
    assert_null(store_collection_field(a, "bio"));
    assert_non_null(store_collection_field(a, "id"));
    store_collection_unref(a);
    assert_int_equal(import(&fx,
                            "[{\"name\":\"authors\",\"fields\":[{\"name\":\"name\","
                            "\"type\":\"text\"},{\"name\":\"bio\",\"type\":\"text\"}]}]",
                            false, &errors),
                     0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM authors WHERE name='Ann'"), 1);
    /* not an array */
    assert_int_equal(import(&fx, "{}", false, &errors), ERR_INVALID);
    json_decref(errors);
    /* survives a reopen */
    fx_reopen(&fx);
    assert_int_equal(store_collection_get(fx.st, "authors", &a), 0);
    assert_non_null(store_collection_field(a, "bio"));
    store_collection_unref(a);
    fx_close(&fx);
}

static void test_auth_options(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(
        &fx, "{\"name\":\"staff\",\"type\":\"auth\",\"authRule\":\"verified = true\","
             "\"manageRule\":\"\",\"fields\":[{\"name\":\"nick\",\"type\":\"text\"}],"
             "\"passwordAuth\":{\"enabled\":true,\"identityFields\":[\"email\",\"nick\"]},"
             "\"authToken\":{\"duration\":3600},\"oauth2\":{\"enabled\":false,\"providers\":[]}}");
    assert_int_equal(c->n_identity_fields, 2);
    assert_string_equal(c->identity_fields[1], "nick");
    assert_int_equal(c->auth_token_duration_s, 3600);
    assert_string_equal(c->rules[STORE_RULE_AUTH], "verified = true");
    assert_null(c->rules[STORE_RULE_MANAGE]); /* "" is stored as null, as PocketBase does */
    json_t *j = store_collection_to_json(c);
    assert_true(json_is_false(json_object_get(json_object_get(j, "oauth2"), "enabled")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "authToken"), "duration")), 3600);
    json_decref(j);
    store_collection_unref(c);
    /* a partial update keeps the options; an unknown identity field is refused */
    json_t *patch = J("{\"listRule\":\"\"}");
    json_t *errors = NULL;
    assert_int_equal(store_collection_update(fx.st, "staff", patch, &errors, &c), 0);
    json_decref(patch);
    assert_int_equal(c->n_identity_fields, 2);
    assert_int_equal(c->auth_token_duration_s, 3600);
    assert_non_null(json_object_get(c->auth_options, "oauth2"));
    store_collection_unref(c);
    patch = J("{\"passwordAuth\":{\"identityFields\":[\"nope\"]}}");
    assert_int_equal(store_collection_update(fx.st, "staff", patch, &errors, NULL), ERR_INVALID);
    assert_non_null(json_object_get(errors, "passwordAuth"));
    json_decref(errors);
    json_decref(patch);
    /* auth system fields keep their type and cannot be removed */
    patch = J("{\"fields\":[{\"name\":\"email\",\"type\":\"text\"}]}");
    assert_int_equal(store_collection_update(fx.st, "staff", patch, &errors, NULL), ERR_INVALID);
    json_decref(errors);
    json_decref(patch);
    patch = J("{\"fields\":[{\"name\":\"nick\",\"type\":\"text\"}]}");
    assert_int_equal(store_collection_update(fx.st, "staff", patch, &errors, &c), 0);
    assert_non_null(store_collection_field(c, "tokenKey")); /* put back */
    store_collection_unref(c);
    json_decref(patch);
    fx_reopen(&fx);
    assert_int_equal(store_collection_get(fx.st, "staff", &c), 0);
    assert_int_equal(c->auth_token_duration_s, 3600);
    assert_int_equal(c->n_identity_fields, 2);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_catalog(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, "{\"name\":\"zeta\"}");
    store_collection_unref(c);
    struct store_collection *cat = store_collection_catalog(fx.st);
    json_t *params = J("[\"base\"]");
    struct store_list_query q = {.page = 1, .per_page = 10};
    q.where_sql = "\"r\".\"type\" = ? AND NOT \"r\".\"system\""; /* not _externalAuths */
    q.where_params = params;
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, cat, &q, &res), 0);
    assert_int_equal(res.total_items, 1);
    json_t *row = json_array_get(res.items, 0);
    assert_string_equal(json_string_value(json_object_get(row, "name")), "zeta");
    assert_true(json_is_false(json_object_get(row, "system")));
    json_decref(res.items);
    json_decref(params);
    /* it is not a real collection: writes through it find nothing */
    json_t *body = J("{\"name\":\"x\"}");
    json_t *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx.st, cat, body, NULL, &errors, &rec), ERR_NOTFOUND);
    assert_int_equal(store_record_delete(fx.st, cat, "zeta"), ERR_NOTFOUND);
    json_decref(body);
    store_collection_unref(cat);
    fx_close(&fx);
}

static void test_open_failures(void **state)
{
    UNUSED(state);
    struct store *st = NULL;
    char err[256];
    struct store_cfg cfg = {.dir = "/proc/definitely/not/here"};
    assert_int_not_equal(store_open(&cfg, &st, err, sizeof(err)), 0);
    assert_null(st);
    assert_non_null(strstr(err, "/proc/definitely"));
    struct store_cfg bad = {.dir = "/tmp", .backend = "nosuch"};
    assert_int_equal(store_open(&bad, &st, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "nosuch"));
    /* a file that is not a database */
    struct fx fx;
    const char *tmp = getenv("TMPDIR");
    snprintf(fx.dir, sizeof(fx.dir), "%s/storeXXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx.dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a database, not at all, really not a database file......", f);
    fclose(f);
    struct store_cfg cfg2 = {.dir = fx.dir};
    assert_int_not_equal(store_open(&cfg2, &st, err, sizeof(err)), 0);
    assert_null(st);
    fx.st = NULL;
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_on_first_open),
        cmocka_unit_test(test_create_every_field_type),
        cmocka_unit_test(test_name_validation),
        cmocka_unit_test(test_sql_keyword_names_are_quoted),
        cmocka_unit_test(test_migration_keeps_data),
        cmocka_unit_test(test_single_to_multiple_rebuilds),
        cmocka_unit_test(test_indexes),
        cmocka_unit_test(test_rename_and_delete),
        cmocka_unit_test(test_reopen_keeps_everything),
        cmocka_unit_test(test_import),
        cmocka_unit_test(test_import_swaps_names),
        cmocka_unit_test(test_auth_options),
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_open_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
