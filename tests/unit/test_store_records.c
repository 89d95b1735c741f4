/* Store records: CRUD with every field type, one test per validation rule, modifiers,
 * autodate, cascades, the outbox, list queries, auth lookups and concurrent writers. */
#include <limits.h>
#include <pthread.h>

#include "metrics/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "store_fixture.h"

static const char posts_spec[] =
    "{\"name\":\"posts\",\"fields\":["
    "{\"name\":\"title\",\"type\":\"text\",\"required\":true,\"min\":2,\"max\":10,"
    "\"pattern\":\"^[a-zA-Z ]*$\"},"
    "{\"name\":\"views\",\"type\":\"number\",\"min\":0,\"max\":100,\"onlyInt\":true},"
    "{\"name\":\"score\",\"type\":\"number\"},"
    "{\"name\":\"published\",\"type\":\"bool\"},"
    "{\"name\":\"contact\",\"type\":\"email\",\"exceptDomains\":[\"spam.com\"]},"
    "{\"name\":\"site\",\"type\":\"url\",\"onlyDomains\":[\"example.com\"]},"
    "{\"name\":\"when\",\"type\":\"date\",\"min\":\"2000-01-01 00:00:00.000Z\"},"
    "{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
    "{\"name\":\"updated\",\"type\":\"autodate\",\"onCreate\":true,\"onUpdate\":true},"
    "{\"name\":\"status\",\"type\":\"select\",\"values\":[\"draft\",\"live\"],\"maxSelect\":1},"
    "{\"name\":\"tags\",\"type\":\"select\",\"values\":[\"a\",\"b\",\"c\"],\"maxSelect\":2},"
    "{\"name\":\"meta\",\"type\":\"json\",\"maxSize\":50},"
    "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"_pb_users_auth_\"}]}";

static json_t *make_user(struct fx *fx, const char *email)
{
    struct store_collection *u = NULL;
    assert_int_equal(store_collection_get(fx->st, "users", &u), 0);
    json_t *body = json_pack("{s:s, s:s}", "email", email, "name", "U");
    json_t *rec = NULL, *errors = NULL;
    int rc = store_record_create(fx->st, u, body, "$argon2id$fakehash", &errors, &rec);
    if (rc) {
        char *t = errors ? json_dumps(errors, 0) : NULL;
        fail_msg("user create: %s %s", err_str(rc), t ? t : store_errmsg(fx->st));
    }
    json_decref(body);
    store_collection_unref(u);
    return rec;
}

static void test_crud_every_type(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *user = make_user(&fx, "a@example.com");
    const char *uid = json_string_value(json_object_get(user, "id"));
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"title\":\"Hello\",\"views\":\"42\",\"score\":1.5,\"published\":\"true\","
             "\"contact\":\"x@y.org\",\"site\":\"https://example.com/a?b=1\","
             "\"when\":\"2024-02-08T16:03:27.354Z\",\"created\":\"1999-01-01\","
             "\"status\":[\"draft\",\"live\"],\"tags\":[\"a\",\"a\",\"b\"],"
             "\"meta\":\"{\\\"k\\\":[1,2]}\",\"author\":\"%s\",\"unknown\":1}",
             uid);
    json_t *r = fx_rec(&fx, c, body);
    const char *id = json_string_value(json_object_get(r, "id"));
    assert_int_equal(strlen(id), 15);
    for (const char *p = id; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'));
    assert_string_equal(json_string_value(json_object_get(r, "collectionId")), c->id);
    assert_string_equal(json_string_value(json_object_get(r, "collectionName")), "posts");
    assert_string_equal(json_string_value(json_object_get(r, "title")), "Hello");
    assert_true(json_is_integer(json_object_get(r, "views")));
    assert_int_equal(json_integer_value(json_object_get(r, "views")), 42);
    assert_true(json_real_value(json_object_get(r, "score")) == 1.5);
    assert_true(json_is_true(json_object_get(r, "published")));
    assert_string_equal(json_string_value(json_object_get(r, "when")), "2024-02-08 16:03:27.354Z");
    const char *created = json_string_value(json_object_get(r, "created"));
    assert_int_equal(strlen(created), 24);
    assert_true(strcmp(created, "2020") > 0); /* client value ignored */
    assert_string_equal(json_string_value(json_object_get(r, "status")), "live");
    json_t *tags = json_object_get(r, "tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "b");
    json_t *meta = json_object_get(r, "meta");
    assert_true(json_is_object(meta));
    assert_int_equal(json_array_size(json_object_get(meta, "k")), 2);
    assert_string_equal(json_string_value(json_object_get(r, "author")), uid);
    assert_null(json_object_get(r, "unknown"));

    /* get returns the same */
    json_t *got = NULL;
    assert_int_equal(store_record_get(fx.st, c, id, &got), 0);
    assert_true(json_equal(got, r));
    json_decref(got);

    /* update: partial, autodate updated changes, created stays */
    usleep(2000);
    json_t *patch = J("{\"title\":\"Bye\",\"meta\":null,\"published\":false}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_string_equal(json_string_value(json_object_get(u, "title")), "Bye");
    assert_true(json_is_null(json_object_get(u, "meta")));
    assert_true(json_is_false(json_object_get(u, "published")));
    assert_int_equal(json_integer_value(json_object_get(u, "views")), 42);
    assert_string_equal(json_string_value(json_object_get(u, "created")), created);
    assert_true(strcmp(json_string_value(json_object_get(u, "updated")), created) > 0);
    json_decref(patch);
    json_decref(u);

    /* update/delete of a missing record */
    patch = J("{\"title\":\"Nope\"}");
    assert_int_equal(store_record_update(fx.st, c, "missing00000000", patch, NULL, &errors, &u),
                     ERR_NOTFOUND);
    json_decref(patch);
    assert_int_equal(store_record_delete(fx.st, c, "missing00000000"), ERR_NOTFOUND);

    assert_int_equal(store_record_delete(fx.st, c, id), 0);
    assert_int_equal(store_record_get(fx.st, c, id, &got), ERR_NOTFOUND);
    json_decref(r);
    json_decref(user);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_autogenerate_modifier(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"slugs\",\"fields\":[{\"name\":\"slug\",\"type\":\"text\","
                     "\"autogeneratePattern\":\"[a-c]{6}\",\"pattern\":\"^[a-z-]+$\"},"
                     "{\"name\":\"n\",\"type\":\"number\"}]}");
    json_t *r = fx_rec(&fx, c, "{\"slug:autogenerate\":\"post-\"}");
    const char *slug = json_string_value(json_object_get(r, "slug"));
    assert_int_equal(strlen(slug), 11);
    assert_memory_equal(slug, "post-", 5);
    for (const char *p = slug + 5; *p; p++)
        assert_true(*p >= 'a' && *p <= 'c');
    json_decref(r);
    /* empty on create: the pattern fills it */
    r = fx_rec(&fx, c, "{}");
    assert_int_equal(strlen(json_string_value(json_object_get(r, "slug"))), 6);
    json_decref(r);
    /* only for text fields */
    fx_rec_invalid(&fx, c, "{\"n:autogenerate\":\"x\"}", "n", "validation_invalid_value");
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_client_id(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *r = fx_rec(&fx, c, "{\"id\":\"abcdefghij12345\",\"title\":\"Hi\"}");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "abcdefghij12345");
    fx_rec_invalid(&fx, c, "{\"id\":\"abcdefghij12345\",\"title\":\"Hi\"}", "id",
                   "validation_not_unique");
    fx_rec_invalid(&fx, c, "{\"id\":\"short\",\"title\":\"Hi\"}", "id",
                   "validation_min_text_constraint");
    fx_rec_invalid(&fx, c, "{\"id\":\"ABCDEFGHIJ12345\",\"title\":\"Hi\"}", "id",
                   "validation_invalid_format");
    /* the primary key cannot change */
    json_t *patch = J("{\"id\":\"zzzzzzzzzzzzzzz\"}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, "abcdefghij12345", patch, NULL, &errors, &u),
                     ERR_INVALID);
    assert_string_equal(json_string_value(json_object_get(json_object_get(errors, "id"), "code")),
                        "validation_pk_change");
    json_decref(errors);
    json_decref(patch);
    json_decref(r);
    store_collection_unref(c);
    fx_close(&fx);
}

/* PocketBase holds a number of 0 (the blank value) only to required, never to min/max. */
static void test_zero_number_is_blank(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"r\",\"fields\":[{\"name\":\"n\",\"type\":\"number\","
                     "\"min\":1,\"max\":5}]}");
    json_decref(fx_rec(&fx, c, "{\"n\":0}"));
    json_decref(fx_rec(&fx, c, "{}"));
    fx_rec_invalid(&fx, c, "{\"n\":0.5}", "n", "validation_min_number_constraint");
    store_collection_unref(c);
    c = fx_coll(&fx, "{\"name\":\"q\",\"fields\":[{\"name\":\"n\",\"type\":\"number\","
                     "\"min\":1,\"required\":true}]}");
    fx_rec_invalid(&fx, c, "{\"n\":0}", "n", "validation_required");
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_validation_rules(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    fx_rec_invalid(&fx, c, "{}", "title", "validation_required");
    fx_rec_invalid(&fx, c, "{\"title\":\"\"}", "title", "validation_required");
    fx_rec_invalid(&fx, c, "{\"title\":\"H\"}", "title", "validation_min_text_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"Hello World\"}", "title",
                   "validation_max_text_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"He11o\"}", "title", "validation_invalid_format");
    fx_rec_invalid(&fx, c, "{\"title\":{\"a\":1}}", "title", "validation_invalid_value");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"views\":\"many\"}", "views",
                   "validation_not_a_number");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"views\":-1}", "views",
                   "validation_min_number_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"views\":101}", "views",
                   "validation_max_number_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"views\":1.5}", "views",
                   "validation_only_int_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"contact\":\"not-an-email\"}", "contact",
                   "validation_invalid_email");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"contact\":\"a@spam.com\"}", "contact",
                   "validation_email_domain_not_allowed");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"site\":\"example.com\"}", "site",
                   "validation_invalid_url");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"site\":\"https://other.com/\"}", "site",
                   "validation_url_domain_not_allowed");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"when\":\"yesterday\"}", "when",
                   "validation_invalid_date");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"when\":\"1999-12-31 00:00:00.000Z\"}", "when",
                   "validation_min_date_constraint");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"status\":\"gone\"}", "status",
                   "validation_invalid_value");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"tags\":[\"a\",\"b\",\"c\"]}", "tags",
                   "validation_too_many_values");
    fx_rec_invalid(&fx, c, "{\"title\":\"Ok\",\"author\":\"nosuchuser00000\"}", "author",
                   "validation_missing_rel_records");
    fx_rec_invalid(
        &fx, c,
        "{\"title\":\"Ok\",\"meta\":{\"long\":\"0123456789012345678901234567890123456789\"}}",
        "meta", "validation_json_size_limit");
    /* several fields fail at once */
    json_t *body = J("{\"views\":500,\"status\":\"x\"}");
    json_t *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), ERR_INVALID);
    assert_int_equal(json_object_size(errors), 3);
    assert_string_equal(store_errmsg(fx.st), "Failed to create record.");
    json_t *p = json_object_get(json_object_get(errors, "views"), "params");
    assert_int_equal(json_integer_value(json_object_get(p, "max")), 100);
    json_decref(errors);
    json_decref(body);
    /* a non-object body */
    body = J("[1]");
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), ERR_INVALID);
    json_decref(errors);
    json_decref(body);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), 0);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_required_per_type(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"req\",\"fields\":["
                     "{\"name\":\"n\",\"type\":\"number\",\"required\":true},"
                     "{\"name\":\"b\",\"type\":\"bool\",\"required\":true},"
                     "{\"name\":\"m\",\"type\":\"select\",\"values\":[\"x\",\"y\"],\"maxSelect\":2,"
                     "\"required\":true},"
                     "{\"name\":\"j\",\"type\":\"json\",\"required\":true}]}");
    const char *names[] = {"n", "b", "m", "j"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        fx_rec_invalid(&fx, c, "{\"n\":0,\"b\":false,\"m\":[],\"j\":{}}", names[i],
                       "validation_required");
    json_decref(fx_rec(&fx, c, "{\"n\":1,\"b\":true,\"m\":\"x\",\"j\":[0]}"));
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_modifiers(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *r = fx_rec(&fx, c, "{\"title\":\"Hi\",\"views\":10,\"tags\":[\"a\"]}");
    const char *id = json_string_value(json_object_get(r, "id"));
    json_t *patch = J("{\"views+\":5,\"score-\":2.5,\"tags+\":\"b\"}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "views")), 15);
    assert_true(json_real_value(json_object_get(u, "score")) == -2.5);
    json_t *tags = json_object_get(u, "tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "b");
    json_decref(patch);
    json_decref(u);
    /* remove, then prepend */
    patch = J("{\"tags-\":[\"a\"],\"+tags\":\"c\"}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    tags = json_object_get(u, "tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 0)), "c");
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "b");
    json_decref(patch);
    json_decref(u);
    /* modifiers are validated like plain values */
    patch = J("{\"views+\":200}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), ERR_INVALID);
    assert_non_null(json_object_get(errors, "views"));
    json_decref(errors);
    json_decref(patch);
    patch = J("{\"tags+\":[\"a\"]}"); /* three values with maxSelect 2 */
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), ERR_INVALID);
    assert_string_equal(json_string_value(json_object_get(json_object_get(errors, "tags"), "code")),
                        "validation_too_many_values");
    json_decref(errors);
    json_decref(patch);
    patch = J("{\"views+\":\"x\"}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), ERR_INVALID);
    json_decref(errors);
    json_decref(patch);
    /* a plain value and a modifier together: the plain value first */
    patch = J("{\"views\":1,\"views+\":2}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "views")), 3);
    json_decref(patch);
    json_decref(u);
    json_decref(r);
    store_collection_unref(c);
    fx_close(&fx);
}

static const char *err_code(const json_t *errors, const char *field)
{
    return json_string_value(json_object_get(json_object_get(errors, field), "code"));
}

/* A file field takes only names the record held or the write uploaded (STORE_BODY_UPLOADS),
 * at most maxSelect of them; the modifiers work on names as on select values. */
static void test_file_names(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, "{\"name\":\"docs\",\"fields\":["
                                              "{\"name\":\"one\",\"type\":\"file\"},"
                                              "{\"name\":\"many\",\"type\":\"file\","
                                              "\"maxSelect\":2}]}");
    json_t *errors = NULL, *r = NULL, *u = NULL;
    json_t *body = J("{\"one\":\"a_x.png\"}"); /* not uploaded */
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &r), ERR_INVALID);
    assert_string_equal(err_code(errors, "one"), "validation_invalid_file");
    json_decref(errors);
    json_decref(body);
    body = J("{\"one\":[\"a_x.png\",\"b_x.png\"],\"many\":[\"c_x.txt\"],"
             "\"@uploads\":{\"one\":[\"a_x.png\",\"b_x.png\"],\"many\":[\"c_x.txt\"]}}");
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "one")), "b_x.png"); /* the last */
    assert_int_equal(json_array_size(json_object_get(r, "many")), 1);
    json_decref(body);
    const char *id = json_string_value(json_object_get(r, "id"));
    /* an upload appended; a name held is kept; a name from elsewhere is refused */
    body = J("{\"many+\":\"d_x.txt\",\"@uploads\":{\"many\":[\"d_x.txt\"]}}");
    assert_int_equal(store_record_update(fx.st, c, id, body, NULL, &errors, &u), 0);
    assert_int_equal(json_array_size(json_object_get(u, "many")), 2);
    json_decref(body);
    json_decref(u);
    body = J("{\"many+\":\"e_x.txt\",\"@uploads\":{\"many\":[\"e_x.txt\"]}}");
    assert_int_equal(store_record_update(fx.st, c, id, body, NULL, &errors, &u), ERR_INVALID);
    assert_string_equal(err_code(errors, "many"), "validation_too_many_files");
    json_decref(errors);
    json_decref(body);
    body = J("{\"many\":[\"c_x.txt\",\"zzz_x.txt\"]}");
    assert_int_equal(store_record_update(fx.st, c, id, body, NULL, &errors, &u), ERR_INVALID);
    assert_string_equal(err_code(errors, "many"), "validation_invalid_file");
    json_decref(errors);
    json_decref(body);
    body = J("{\"many-\":\"c_x.txt\",\"one\":\"\"}");
    assert_int_equal(store_record_update(fx.st, c, id, body, NULL, &errors, &u), 0);
    assert_int_equal(json_array_size(json_object_get(u, "many")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(u, "many"), 0)),
                        "d_x.txt");
    assert_string_equal(json_string_value(json_object_get(u, "one")), "");
    assert_null(json_object_get(u, "@uploads"));
    json_decref(body);
    json_decref(u);
    json_decref(r);
    store_collection_unref(c);
    fx_close(&fx);
}

/* An increment or decrement whose result the store could not keep exactly is refused with a
 * field error; it never leaves the value as it was while reporting success. */
static void test_modifier_overflow(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"counters\",\"fields\":[{\"name\":\"n\",\"type\":\"number\"}]}");
    static const struct {
        const char *start, *patch;
    } bad[] = {
        {"1e308", "{\"n+\":1e308}"},        /* overflows to infinity */
        {"-1e308", "{\"n-\":1e308}"},       /* and to minus infinity */
        {"1e308", "{\"n+\":\"1e308\"}"},    /* as a string too */
        {"1e300", "{\"n+\":1}"},            /* swallowed by rounding */
        {"1e300", "{\"n-\":0.5}"},          /* not whole, swallowed too */
        {"9007199254740992", "{\"n+\":1}"}, /* past 2^53 counting is not exact */
        {"-9007199254740992", "{\"n-\":1}"},
        {"0", "{\"n+\":9007199254740994}"},
        {"0", "{\"n+\":\"1e309\"}"}, /* not a finite number to begin with */
        {"0", "{\"n+\":\"lots\"}"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"n\":%s}", bad[i].start);
        json_t *r = fx_rec(&fx, c, body);
        const char *id = json_string_value(json_object_get(r, "id"));
        double before = json_number_value(json_object_get(r, "n"));
        json_t *patch = J(bad[i].patch), *errors = NULL, *u = NULL;
        int rc = store_record_update(fx.st, c, id, patch, NULL, &errors, &u);
        if (rc != ERR_INVALID)
            fail_msg("%s on n=%s: expected ERR_INVALID, got %s (n=%.17g)", bad[i].patch,
                     bad[i].start, err_str(rc), json_number_value(json_object_get(u, "n")));
        assert_null(u);
        json_t *e = json_object_get(errors, "n");
        assert_string_equal(json_string_value(json_object_get(e, "code")),
                            "validation_not_a_number");
        assert_non_null(json_string_value(json_object_get(e, "message")));
        json_t *now = NULL;
        assert_int_equal(store_record_get(fx.st, c, id, &now), 0);
        assert_true(json_number_value(json_object_get(now, "n")) == before);
        json_decref(now);
        json_decref(errors);
        json_decref(patch);
        json_decref(r);
    }
    /* the edges that are still exact work */
    json_t *r = fx_rec(&fx, c, "{\"n\":9007199254740991}");
    const char *id = json_string_value(json_object_get(r, "id"));
    json_t *patch = J("{\"n+\":1}"), *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_true(json_number_value(json_object_get(u, "n")) == 9007199254740992.0);
    json_decref(u);
    json_decref(patch);
    patch = J("{\"n-\":\"9007199254740992\"}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_true(json_number_value(json_object_get(u, "n")) == 0);
    json_decref(u);
    json_decref(patch);
    patch = J("{\"n+\":0.25}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_true(json_number_value(json_object_get(u, "n")) == 0.25);
    json_decref(u);
    json_decref(patch);
    json_decref(r);
    r = fx_rec(&fx, c, "{\"n\":1e300}");
    id = json_string_value(json_object_get(r, "id"));
    patch = J("{\"n-\":1e300}");
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_true(json_number_value(json_object_get(u, "n")) == 0);
    json_decref(u);
    json_decref(patch);
    json_decref(r);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_cascade_delete(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *a = fx_coll(&fx, "{\"name\":\"authors\",\"fields\":[]}");
    char spec[1024];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"books\",\"fields\":["
             "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"cascadeDelete\":true},"
             "{\"name\":\"editors\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"maxSelect\":5}]}",
             a->id, a->id);
    struct store_collection *b = fx_coll(&fx, spec);
    snprintf(spec, sizeof(spec),
             "{\"name\":\"reviews\",\"fields\":["
             "{\"name\":\"book\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"cascadeDelete\":true},"
             "{\"name\":\"fan\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"required\":true}]}",
             b->id, a->id);
    struct store_collection *rv = fx_coll(&fx, spec);
    json_t *a1 = fx_rec(&fx, a, "{\"id\":\"author000000001\"}");
    json_t *a2 = fx_rec(&fx, a, "{\"id\":\"author000000002\"}");
    json_t *a3 = fx_rec(&fx, a, "{\"id\":\"author000000003\"}");
    json_t *b1 = fx_rec(&fx, b,
                        "{\"id\":\"book00000000001\",\"author\":\"author000000001\","
                        "\"editors\":[\"author000000002\",\"author000000003\"]}");
    json_t *b2 = fx_rec(&fx, b, "{\"id\":\"book00000000002\",\"author\":\"author000000002\"}");
    json_t *r1 = fx_rec(&fx, rv,
                        "{\"id\":\"review000000001\",\"book\":\"book00000000001\","
                        "\"fan\":\"author000000002\"}");
    json_t *r2 = fx_rec(&fx, rv,
                        "{\"id\":\"review000000002\",\"book\":\"book00000000002\","
                        "\"fan\":\"author000000003\"}");
    int64_t before = fx_sql_int(&fx, "SELECT MAX(id) FROM _outbox");
    /* a required non-cascading reference blocks the delete, and nothing changes */
    assert_int_equal(store_record_delete(fx.st, a, "author000000003"), ERR_CONFLICT);
    assert_non_null(strstr(store_errmsg(fx.st), "required relation reference"));
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM books"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT json_array_length(editors) FROM books WHERE "
                                     "id='book00000000001'"),
                     2);
    assert_int_equal(fx_sql_int(&fx, "SELECT MAX(id) FROM _outbox"), before);
    /* deleting author 1 cascades to book 1 and its review */
    assert_int_equal(store_record_delete(fx.st, a, "author000000001"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM books WHERE id='book00000000001'"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM reviews WHERE id='review000000001'"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM reviews"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox WHERE action='delete'"), 3);
    /* a non-cascading multiple relation loses the id; the record stays */
    json_t *b3 = fx_rec(&fx, b,
                        "{\"id\":\"book00000000003\",\"editors\":[\"author000000002\","
                        "\"author000000003\"]}");
    json_decref(r2);
    json_t *patch = J("{\"fan\":\"author000000002\"}");
    json_t *errors = NULL;
    assert_int_equal(store_record_update(fx.st, rv, "review000000002", patch, NULL, &errors, &r2),
                     0);
    json_decref(patch);
    assert_int_equal(store_record_delete(fx.st, a, "author000000003"), 0);
    json_t *got = NULL;
    assert_int_equal(store_record_get(fx.st, b, "book00000000003", &got), 0);
    assert_int_equal(json_array_size(json_object_get(got, "editors")), 1);
    json_decref(got);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox WHERE action='update' AND "
                                     "record_id='book00000000003'"),
                     1);
    json_decref(a1);
    json_decref(a2);
    json_decref(a3);
    json_decref(b1);
    json_decref(b2);
    json_decref(b3);
    json_decref(r1);
    json_decref(r2);
    store_collection_unref(a);
    store_collection_unref(b);
    store_collection_unref(rv);
    fx_close(&fx);
}

/* the deleted hook: "collectionName/id:file names" of each call, in order */
static void note_deleted(void *arg, const struct store_collection *c, const char *id,
                         const json_t *record)
{
    json_t *calls = arg;
    char line[256];
    const json_t *v =
        json_object_get(record, store_collection_field(c, "photo") ? "photo" : "scans");
    char *names = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(line, sizeof(line), "%s/%s:%s", c->name, id, names);
    free(names);
    json_array_append_new(calls, json_string(line));
}

static void test_deleted_hook_after_commit(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    json_t *calls = json_array();
    store_on_deleted(fx.st, note_deleted, calls);
    struct store_collection *a =
        fx_coll(&fx, "{\"name\":\"writers\",\"fields\":[{\"name\":\"photo\",\"type\":\"file\"}]}");
    char spec[1024];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"drafts\",\"fields\":["
             "{\"name\":\"writer\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"cascadeDelete\":true},"
             "{\"name\":\"scans\",\"type\":\"file\",\"maxSelect\":3}]}",
             a->id);
    struct store_collection *d = fx_coll(&fx, spec);
    /* no file field: never reported */
    snprintf(spec, sizeof(spec),
             "{\"name\":\"notes\",\"fields\":[{\"name\":\"writer\",\"type\":\"relation\","
             "\"collectionId\":\"%s\",\"cascadeDelete\":true}]}",
             a->id);
    struct store_collection *n = fx_coll(&fx, spec);
    /* blocks deletes of the writer it names (required, not cascading) */
    snprintf(spec, sizeof(spec),
             "{\"name\":\"pins\",\"fields\":[{\"name\":\"writer\",\"type\":\"relation\","
             "\"collectionId\":\"%s\",\"required\":true}]}",
             a->id);
    struct store_collection *p = fx_coll(&fx, spec);
    json_t *w1 = fx_rec(&fx, a,
                        "{\"id\":\"writer000000001\",\"photo\":\"me_0123456789.png\","
                        "\"@uploads\":{\"photo\":[\"me_0123456789.png\"]}}");
    json_t *w2 = fx_rec(&fx, a,
                        "{\"id\":\"writer000000002\",\"photo\":\"you_0123456789.png\","
                        "\"@uploads\":{\"photo\":[\"you_0123456789.png\"]}}");
    json_t *d1 = fx_rec(&fx, d,
                        "{\"id\":\"draft0000000001\",\"writer\":\"writer000000001\","
                        "\"scans\":[\"a_0123456789.txt\",\"b_0123456789.txt\"],"
                        "\"@uploads\":{\"scans\":[\"a_0123456789.txt\",\"b_0123456789.txt\"]}}");
    json_t *n1 = fx_rec(&fx, n, "{\"id\":\"note00000000001\",\"writer\":\"writer000000001\"}");
    json_t *p2 = fx_rec(&fx, p, "{\"id\":\"pin000000000002\",\"writer\":\"writer000000002\"}");
    assert_int_equal(json_array_size(calls), 0);
    /* a delete that rolls back reports nothing */
    assert_int_equal(store_record_delete(fx.st, a, "writer000000002"), ERR_CONFLICT);
    assert_int_equal(json_array_size(calls), 0);
    /* a cascade reports every deleted record with a file field, after its commit */
    assert_int_equal(store_record_delete(fx.st, a, "writer000000001"), 0);
    assert_int_equal(json_array_size(calls), 2);
    char want[2][128];
    snprintf(want[0], sizeof(want[0]),
             "drafts/draft0000000001:[\"a_0123456789.txt\",\"b_0123456789.txt\"]");
    snprintf(want[1], sizeof(want[1]), "writers/writer000000001:\"me_0123456789.png\"");
    for (int i = 0; i < 2; i++) {
        bool found = false;
        for (size_t k = 0; k < json_array_size(calls); k++)
            found |= strcmp(json_string_value(json_array_get(calls, k)), want[i]) == 0;
        if (!found)
            fail_msg("no call %s", want[i]);
    }
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM notes"), 0);
    /* a delete through the SQL console is reported too */
    json_array_clear(calls);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM pins"), 1);
    struct store_sql_result res = {0};
    assert_int_equal(store_sql(fx.st, "DELETE FROM pins", 10, 1 << 20, 0, &res), 0);
    store_sql_result_release(&res);
    assert_int_equal(store_sql(fx.st, "DELETE FROM writers", 10, 1 << 20, 0, &res), 0);
    store_sql_result_release(&res);
    assert_int_equal(json_array_size(calls), 1);
    assert_string_equal(json_string_value(json_array_get(calls, 0)),
                        "writers/writer000000002:\"you_0123456789.png\"");
    store_on_deleted(fx.st, NULL, NULL);
    json_decref(calls);
    json_decref(w1);
    json_decref(w2);
    json_decref(d1);
    json_decref(n1);
    json_decref(p2);
    store_collection_unref(a);
    store_collection_unref(d);
    store_collection_unref(n);
    store_collection_unref(p);
    fx_close(&fx);
}

static void test_conditional_operations(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *params = J("[10]");
    struct store_cond cond = {.sql = "\"r\".\"views\" >= ?", .params = params};
    json_t *lo = fx_rec(&fx, c, "{\"id\":\"low000000000001\",\"title\":\"Lo\",\"views\":5}");
    json_t *hi = fx_rec(&fx, c, "{\"id\":\"high00000000001\",\"title\":\"Hi\",\"views\":50}");
    json_t *got = NULL, *errors = NULL;
    /* get */
    assert_int_equal(store_record_get_if(fx.st, c, "high00000000001", &cond, &got), 0);
    assert_true(json_equal(got, hi));
    json_decref(got);
    assert_int_equal(store_record_get_if(fx.st, c, "low000000000001", &cond, &got), ERR_NOTFOUND);
    assert_null(got);
    assert_int_equal(store_record_get_if(fx.st, c, "missing00000000", &cond, &got), ERR_NOTFOUND);
    struct store_cond empty = {0};
    assert_int_equal(store_record_get_if(fx.st, c, "low000000000001", &empty, &got), 0);
    json_decref(got);
    /* update: checked on the record as it is before the change */
    json_t *patch = J("{\"views\":99}");
    assert_int_equal(
        store_record_update_if(fx.st, c, "low000000000001", patch, NULL, &cond, &errors, &got),
        ERR_NOTFOUND);
    assert_int_equal(fx_sql_int(&fx, "SELECT views FROM posts WHERE id='low000000000001'"), 5);
    json_decref(patch);
    patch = J("{\"views\":1}");
    assert_int_equal(
        store_record_update_if(fx.st, c, "high00000000001", patch, NULL, &cond, &errors, &got), 0);
    assert_int_equal(json_integer_value(json_object_get(got, "views")), 1);
    json_decref(got);
    json_decref(patch);
    /* create: checked on the new record; a refused one leaves nothing behind */
    int64_t outbox = fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox");
    json_t *body = J("{\"title\":\"New\",\"views\":3}");
    assert_int_equal(store_record_create_if(fx.st, c, body, NULL, &cond, &errors, &got),
                     ERR_DENIED);
    assert_null(got);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), outbox);
    json_decref(body);
    body = J("{\"title\":\"New\",\"views\":30}");
    assert_int_equal(store_record_create_if(fx.st, c, body, NULL, &cond, &errors, &got), 0);
    json_decref(got);
    json_decref(body);
    /* delete */
    assert_int_equal(store_record_delete_if(fx.st, c, "low000000000001", &cond), ERR_NOTFOUND);
    assert_int_equal(store_record_delete_if(fx.st, c, "high00000000001", &cond), ERR_NOTFOUND);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 3);
    struct store_cond lowc = {.sql = "\"r\".\"views\" < 10", .params = NULL};
    assert_int_equal(store_record_delete_if(fx.st, c, "low000000000001", &lowc), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    /* a condition the engine rejects is an error, not a pass */
    struct store_cond bad = {.sql = "\"r\".\"nosuch\" = 1", .params = NULL};
    assert_true(store_record_get_if(fx.st, c, "high00000000001", &bad, &got) < 0);
    assert_int_not_equal(store_record_delete_if(fx.st, c, "high00000000001", &bad), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    json_decref(lo);
    json_decref(hi);
    json_decref(params);
    store_collection_unref(c);
    fx_close(&fx);
}

/* store_cond.build: the view a write's rule is compiled over, inside the write's transaction,
 * is the body as that write stores it. */
struct built {
    json_t *view; /* the last view the write handed over */
    const char *sql;
    json_t *params;
};

static int build_cb(void *arg, const json_t *view, struct store_cond *out)
{
    struct built *b = arg;
    json_decref(b->view);
    b->view = json_deep_copy(view);
    out->sql = b->sql;
    out->params = b->params;
    return 0;
}

static void test_condition_built_from_the_written_body(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *rec = fx_rec(&fx, c,
                         "{\"id\":\"rec000000000001\",\"title\":\"Aa\",\"views\":5,"
                         "\"status\":\"draft\",\"tags\":[\"a\"]}");
    struct built b = {.sql = "1"};
    struct store_cond cond = {.sql = "0", .build = build_cb, .build_arg = &b};
    json_t *got = NULL, *errors = NULL;
    /* modifiers before and after the plain key, resolved as the write resolves them */
    json_t *patch = J("{\"views+\":3,\"status+\":\"live\",\"tags-\":\"a\",\"+tags\":\"b\","
                      "\"title\":\"Bb\",\"nosuch\":1}");
    assert_int_equal(
        store_record_update_if(fx.st, c, "rec000000000001", patch, NULL, &cond, &errors, &got), 0);
    assert_int_equal(json_integer_value(json_object_get(b.view, "views")), 8);
    const char *keys[] = {"views", "status", "tags", "title"};
    for (size_t i = 0; i < 4; i++)
        assert_true(json_equal(json_object_get(b.view, keys[i]), json_object_get(got, keys[i])));
    assert_string_equal(json_string_value(json_object_get(b.view, "status")), "live");
    assert_int_equal(json_integer_value(json_object_get(b.view, "nosuch")), 1); /* as sent */
    assert_null(json_object_get(b.view, "score")); /* not in the body */
    json_decref(got);
    /* the same body over the value the record has now: 11, not the 8 of a stale read */
    json_decref(patch);
    patch = J("{\"views+\":3}");
    assert_int_equal(
        store_record_update_if(fx.st, c, "rec000000000001", patch, NULL, &cond, &errors, &got), 0);
    assert_int_equal(json_integer_value(json_object_get(b.view, "views")), 11);
    json_decref(got);
    /* the built condition decides: refused, nothing written */
    b.sql = "\"r\".\"views\" > 100";
    assert_int_equal(
        store_record_update_if(fx.st, c, "rec000000000001", patch, NULL, &cond, &errors, &got),
        ERR_NOTFOUND);
    assert_int_equal(fx_sql_int(&fx, "SELECT views FROM posts WHERE id='rec000000000001'"), 11);
    /* create: the view is what the create stores, a removal after the plain key included */
    b.sql = "1";
    json_t *body = J("{\"title\":\"Cc\",\"status\":\"live\",\"status-\":\"live\"}");
    assert_int_equal(store_record_create_if(fx.st, c, body, NULL, &cond, &errors, &got), 0);
    assert_string_equal(json_string_value(json_object_get(b.view, "status")), "");
    assert_string_equal(json_string_value(json_object_get(got, "status")), "");
    json_decref(got);
    json_decref(body);
    b.sql = "\"r\".\"status\" = 'draft'";
    body = J("{\"title\":\"Dd\",\"status\":\"draft\",\"status+\":\"live\"}");
    assert_int_equal(store_record_create_if(fx.st, c, body, NULL, &cond, &errors, &got),
                     ERR_DENIED);
    assert_string_equal(json_string_value(json_object_get(b.view, "status")), "live");
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE title='Dd'"), 0);
    /* the view outside a write comes from the same code */
    json_t *view = store_record_body_view(c, rec, patch);
    assert_int_equal(json_integer_value(json_object_get(view, "views")), 8);
    json_decref(view);
    json_decref(body);
    json_decref(patch);
    json_decref(rec);
    json_decref(b.view);
    store_collection_unref(c);
    fx_close(&fx);
}

/* store_record_ops: one transaction, all or nothing, upserts choosing by the id. */
static void test_record_ops(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_decref(fx_rec(&fx, c, "{\"id\":\"old000000000001\",\"title\":\"Old\",\"views\":1}"));
    json_decref(fx_rec(&fx, c, "{\"id\":\"gone00000000001\",\"title\":\"Gone\"}"));
    int64_t outbox = fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox");
    json_t *b_new = J("{\"title\":\"New\"}"), *b_inc = J("{\"views+\":2}");
    json_t *b_up1 = J("{\"id\":\"old000000000001\",\"title\":\"Upd\"}");
    json_t *b_up2 = J("{\"id\":\"fresh0000000001\",\"title\":\"Fresh\"}");
    json_t *b_bad = J("{\"title\":\"x\"}"); /* min 2 characters */
    struct store_cond deny = {.sql = "0"};
    struct store_op ops[] = {
        {.kind = STORE_OP_CREATE, .c = c, .body = b_new},
        {.kind = STORE_OP_UPDATE, .c = c, .id = "old000000000001", .body = b_inc},
        {.kind = STORE_OP_UPSERT,
         .c = c,
         .id = "old000000000001",
         .body = b_up1,
         .create_cond = &deny},
        {.kind = STORE_OP_UPSERT, .c = c, .id = "fresh0000000001", .body = b_up2},
        {.kind = STORE_OP_DELETE, .c = c, .id = "gone00000000001"},
        {.kind = STORE_OP_CREATE, .c = c, .body = b_bad},
    };
    size_t failed = 0;
    /* the last one fails: nothing of the others is written */
    assert_int_equal(store_record_ops(fx.st, ops, 6, &failed), ERR_INVALID);
    assert_int_equal(failed, 5);
    assert_non_null(json_object_get(ops[5].errors, "title"));
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT views FROM posts WHERE id='old000000000001'"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), outbox);
    for (size_t i = 0; i < 6; i++) {
        assert_null(ops[i].record);
        json_decref(ops[i].errors);
    }
    /* without it, all of them, in order, with their outbox rows */
    assert_int_equal(store_record_ops(fx.st, ops, 5, &failed), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT views FROM posts WHERE id='old000000000001'"), 3);
    assert_string_equal(json_string_value(json_object_get(ops[2].record, "title")), "Upd");
    assert_false(ops[2].created); /* updated: the deny create rule was not used */
    assert_true(ops[3].created);
    assert_true(ops[0].created);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE id='gone00000000001'"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 3);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), outbox + 5);
    for (size_t i = 0; i < 5; i++)
        json_decref(ops[i].record);
    /* an upsert that creates is checked with the create rule */
    json_t *b_up3 = J("{\"id\":\"fresh0000000002\",\"title\":\"Nope\"}");
    struct store_op up = {.kind = STORE_OP_UPSERT,
                          .c = c,
                          .id = "fresh0000000002",
                          .body = b_up3,
                          .create_cond = &deny};
    assert_int_equal(store_record_ops(fx.st, &up, 1, &failed), ERR_DENIED);
    assert_int_equal(failed, 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE id='fresh0000000002'"), 0);
    json_decref(b_up3);
    json_decref(b_new);
    json_decref(b_inc);
    json_decref(b_up1);
    json_decref(b_up2);
    json_decref(b_bad);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_truncate(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *a = fx_coll(&fx, "{\"name\":\"parents\",\"fields\":[]}");
    char spec[512];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"kids\",\"fields\":[{\"name\":\"p\",\"type\":\"relation\","
             "\"collectionId\":\"%s\",\"cascadeDelete\":true}]}",
             a->id);
    struct store_collection *k = fx_coll(&fx, spec);
    snprintf(spec, sizeof(spec),
             "{\"name\":\"pins\",\"fields\":[{\"name\":\"p\",\"type\":\"relation\","
             "\"collectionId\":\"%s\",\"required\":true}]}",
             a->id);
    struct store_collection *pins = fx_coll(&fx, spec);
    json_decref(fx_rec(&fx, a, "{\"id\":\"parent000000001\"}"));
    json_decref(fx_rec(&fx, a, "{\"id\":\"parent000000002\"}"));
    json_decref(fx_rec(&fx, k, "{\"p\":\"parent000000001\"}"));
    json_decref(fx_rec(&fx, k, "{\"p\":\"parent000000002\"}"));
    json_decref(fx_rec(&fx, pins, "{\"id\":\"pin000000000001\",\"p\":\"parent000000002\"}"));
    assert_int_equal(store_outbox_delete(fx.st, INT64_MAX), 0);
    /* a required reference blocks the whole truncate */
    assert_int_equal(store_collection_truncate(fx.st, "parents"), ERR_CONFLICT);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM parents"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM kids"), 2);
    assert_int_equal(store_record_delete(fx.st, pins, "pin000000000001"), 0);
    assert_int_equal(store_collection_truncate(fx.st, "parents"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM parents"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM kids"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox WHERE action='delete'"), 5);
    assert_int_equal(store_collection_truncate(fx.st, "nope"), ERR_NOTFOUND);
    store_collection_unref(a);
    store_collection_unref(k);
    store_collection_unref(pins);
    fx_close(&fx);
}

static void test_self_relation_cycle(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(
        &fx, "{\"id\":\"nodes0000000001\",\"name\":\"nodes\",\"fields\":["
             "{\"name\":\"next\",\"type\":\"relation\",\"collectionId\":\"nodes0000000001\","
             "\"cascadeDelete\":true}]}");
    json_decref(fx_rec(&fx, c, "{\"id\":\"n00000000000001\"}"));
    json_decref(fx_rec(&fx, c, "{\"id\":\"n00000000000002\",\"next\":\"n00000000000001\"}"));
    json_t *patch = J("{\"next\":\"n00000000000002\"}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, "n00000000000001", patch, NULL, &errors, &u), 0);
    json_decref(patch);
    json_decref(u);
    assert_int_equal(store_record_delete(fx.st, c, "n00000000000001"), 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM nodes"), 0);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_outbox(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *r = fx_rec(&fx, c, "{\"title\":\"Hi\"}");
    const char *id = json_string_value(json_object_get(r, "id"));
    json_t *patch = J("{\"views\":7}");
    json_t *errors = NULL, *u = NULL;
    assert_int_equal(store_record_update(fx.st, c, id, patch, NULL, &errors, &u), 0);
    assert_int_equal(store_record_delete(fx.st, c, id), 0);
    json_t *rows = NULL;
    assert_int_equal(store_outbox_read(fx.st, 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 3);
    const char *actions[] = {"create", "update", "delete"};
    int64_t prev = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *row = json_array_get(rows, i);
        int64_t rid = json_integer_value(json_object_get(row, "id"));
        assert_true(rid > prev);
        prev = rid;
        assert_string_equal(json_string_value(json_object_get(row, "action")), actions[i]);
        assert_string_equal(json_string_value(json_object_get(row, "recordId")), id);
        assert_string_equal(json_string_value(json_object_get(row, "collection")), "posts");
        assert_string_equal(json_string_value(json_object_get(row, "collectionId")), c->id);
        assert_int_equal(strlen(json_string_value(json_object_get(row, "time"))), 24);
    }
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(rows, 1), "record"), "views")),
                     7);
    assert_true(json_equal(json_object_get(json_array_get(rows, 1), "record"), u));
    /* read after an id, then trim */
    json_t *rest = NULL;
    int64_t first = json_integer_value(json_object_get(json_array_get(rows, 0), "id"));
    assert_int_equal(store_outbox_read(fx.st, first, 10, &rest), 0);
    assert_int_equal(json_array_size(rest), 2);
    json_decref(rest);
    assert_int_equal(store_outbox_delete(fx.st, first), 0);
    assert_int_equal(store_outbox_read(fx.st, 0, 10, &rest), 0);
    assert_int_equal(json_array_size(rest), 2);
    json_decref(rest);
    /* a failed write leaves no outbox row: the row and the outbox share a transaction */
    assert_int_equal(store_outbox_delete(fx.st, INT64_MAX), 0);
    fx_rec_invalid(&fx, c, "{\"title\":\"Hi\",\"author\":\"nosuchuser00000\"}", "author",
                   "validation_missing_rel_records");
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), 0);
    /* ids keep increasing after a trim (AUTOINCREMENT) */
    json_decref(fx_rec(&fx, c, "{\"title\":\"Again\"}"));
    assert_true(fx_sql_int(&fx, "SELECT MIN(id) FROM _outbox") > prev);
    json_decref(rows);
    json_decref(patch);
    json_decref(u);
    json_decref(r);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_list(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    for (int i = 0; i < 25; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"title\":\"T%c\",\"views\":%d,\"published\":%s}", 'a' + i,
                 i, i % 2 ? "true" : "false");
        json_decref(fx_rec(&fx, c, body));
    }
    struct store_sort sort = {"views", true};
    struct store_list_query q = {.page = 2, .per_page = 10, .sort = &sort, .n_sort = 1};
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, 25);
    assert_int_equal(res.total_pages, 3);
    assert_int_equal(json_array_size(res.items), 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res.items, 0), "views")),
                     14);
    json_decref(res.items);
    /* skip total, last page */
    q.page = 3;
    q.skip_total = true;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, -1);
    assert_int_equal(res.total_pages, -1);
    assert_int_equal(json_array_size(res.items), 5);
    json_decref(res.items);
    /* a where clause with bound parameters */
    json_t *params = J("[true, 10]");
    q = (struct store_list_query){.page = 1, .per_page = 30};
    q.where_sql = "\"r\".\"published\" = ? AND \"r\".\"views\" > ?";
    q.where_params = params;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, 7); /* 11,13,...,23 */
    json_decref(res.items);
    json_decref(params);
    /* bad sort field, bad where */
    struct store_sort bad = {"nope", false};
    q = (struct store_list_query){.page = 1, .per_page = 30, .sort = &bad, .n_sort = 1};
    assert_int_equal(store_record_list(fx.st, c, &q, &res), ERR_INVALID);
    assert_non_null(strstr(store_errmsg(fx.st), "nope"));
    q = (struct store_list_query){.page = 1, .per_page = 30};
    q.where_sql = "nosuchcolumn = 1";
    assert_int_equal(store_record_list(fx.st, c, &q, &res), ERR_INVALID);
    /* @random and @rowid are accepted */
    struct store_sort sp[2] = {{"@rowid", true}, {"@random", false}};
    q = (struct store_list_query){.page = 1, .per_page = 3, .sort = sp, .n_sort = 2};
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res.items, 0), "title")),
                        "Ty");
    json_decref(res.items);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_referencing(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *u = make_user(&fx, "r@example.com");
    char body[128];
    snprintf(body, sizeof(body), "{\"title\":\"Aa\",\"author\":\"%s\"}",
             json_string_value(json_object_get(u, "id")));
    json_decref(fx_rec(&fx, c, body));
    json_decref(fx_rec(&fx, c, body));
    json_decref(fx_rec(&fx, c, "{\"title\":\"Bb\"}"));
    json_t *out = NULL;
    assert_int_equal(store_record_referencing(
                         fx.st, c, "author", json_string_value(json_object_get(u, "id")), 10, &out),
                     0);
    assert_int_equal(json_array_size(out), 2);
    json_decref(out);
    assert_int_equal(store_record_referencing(fx.st, c, "author",
                                              json_string_value(json_object_get(u, "id")), 1, &out),
                     0);
    assert_int_equal(json_array_size(out), 1);
    json_decref(out);
    assert_int_equal(store_record_referencing(fx.st, c, "title", "x", 10, &out), ERR_INVALID);
    json_decref(u);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_auth_records(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    char id[ID_LEN + 1];
    assert_int_equal(store_superuser_upsert(fx.st, "Admin@Example.com", "hash-1", id), 0);
    assert_int_equal(strlen(id), 15);
    struct store_collection *su = NULL;
    assert_int_equal(store_collection_get(fx.st, "_superusers", &su), 0);
    struct store_auth_record ar;
    assert_int_equal(store_auth_find(fx.st, su, "email", "admin@example.com", &ar), 0);
    assert_string_equal(ar.password_hash, "hash-1");
    assert_int_equal(strlen(ar.token_key), 50);
    char tk1[64];
    snprintf(tk1, sizeof(tk1), "%s", ar.token_key);
    assert_null(json_object_get(ar.record, "password"));
    assert_null(json_object_get(ar.record, "tokenKey"));
    assert_string_equal(json_string_value(json_object_get(ar.record, "id")), id);
    assert_string_equal(json_string_value(json_object_get(ar.record, "collectionName")),
                        "_superusers");
    store_auth_record_release(&ar);
    /* upsert again: same record, new hash, new tokenKey */
    char id2[ID_LEN + 1];
    assert_int_equal(store_superuser_upsert(fx.st, "admin@example.com", "hash-2", id2), 0);
    assert_string_equal(id, id2);
    assert_int_equal(store_auth_get(fx.st, su, id, &ar), 0);
    assert_string_equal(ar.password_hash, "hash-2");
    assert_string_not_equal(ar.token_key, tk1);
    char key[64];
    assert_int_equal(store_auth_token_key(fx.st, su, id, key, sizeof(key)), 0);
    assert_string_equal(key, ar.token_key);
    assert_int_equal(store_auth_token_key(fx.st, su, id, key, 50), ERR_LIMIT);
    assert_int_equal(store_auth_token_key(fx.st, su, "missing00000000", key, sizeof(key)),
                     ERR_NOTFOUND);
    store_auth_record_release(&ar);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _superusers"), 1);
    assert_int_equal(store_superuser_upsert(fx.st, "not-an-email", "hash-3", NULL), ERR_INVALID);
    assert_int_equal(store_superuser_upsert(fx.st, "x@example.com", "", NULL), ERR_INVALID);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _superusers"), 1);
    /* misses and misuse */
    assert_int_equal(store_auth_find(fx.st, su, "email", "nobody@example.com", &ar), ERR_NOTFOUND);
    assert_int_equal(store_auth_find(fx.st, su, "email", "", &ar), ERR_NOTFOUND);
    assert_int_equal(store_auth_find(fx.st, su, "password", "hash-2", &ar), ERR_INVALID);
    assert_int_equal(store_auth_find(fx.st, su, "tokenKey", tk1, &ar), ERR_INVALID);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    assert_int_equal(store_auth_find(fx.st, c, "title", "x", &ar), ERR_INVALID);
    assert_int_equal(store_auth_get(fx.st, c, id, &ar), ERR_INVALID);
    assert_int_equal(store_auth_token_key(fx.st, c, id, key, sizeof(key)), ERR_INVALID);
    /* auth records need a password and a unique email; records never show secrets */
    struct store_collection *users = NULL;
    assert_int_equal(store_collection_get(fx.st, "users", &users), 0);
    fx_rec_invalid(&fx, users, "{\"email\":\"u@example.com\"}", "password", "validation_required");
    json_t *u1 = make_user(&fx, "u@example.com");
    assert_null(json_object_get(u1, "password"));
    assert_null(json_object_get(u1, "tokenKey"));
    assert_true(json_is_false(json_object_get(u1, "verified")));
    json_t *body = J("{\"email\":\"u@example.com\"}");
    json_t *errors = NULL, *rec = NULL;
    assert_int_equal(store_record_create(fx.st, users, body, "h", &errors, &rec), ERR_INVALID);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(errors, "email"), "code")),
        "validation_not_unique");
    json_decref(errors);
    json_decref(body);
    json_decref(u1);
    store_collection_unref(users);
    store_collection_unref(c);
    store_collection_unref(su);
    fx_close(&fx);
}

struct writer_arg {
    struct store *st;
    struct store_collection *c;
    int n;
    int failures;
    char msg[256];
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        json_t *body = json_pack("{s:s, s:i}", "title", "Conc", "views", i % 100);
        json_t *rec = NULL, *errors = NULL;
        int rc = store_record_create(a->st, a->c, body, NULL, &errors, &rec);
        if (rc == 0) {
            json_t *patch = json_pack("{s:i}", "views+", 0);
            json_t *u = NULL;
            rc = store_record_update(a->st, a->c, json_string_value(json_object_get(rec, "id")),
                                     patch, NULL, &errors, &u);
            json_decref(patch);
            json_decref(u);
        }
        if (rc) {
            a->failures++;
            snprintf(a->msg, sizeof(a->msg), "%s: %s", err_str(rc), store_errmsg(a->st));
        }
        /* a read on the same thread's connection between writes */
        struct store_list_query q = {.page = 1, .per_page = 5, .skip_total = false};
        struct store_list_result res;
        if (store_record_list(a->st, a->c, &q, &res) == 0)
            json_decref(res.items);
        else
            a->failures++;
        json_decref(body);
        json_decref(rec);
        json_decref(errors);
    }
    return NULL;
}

static void sql_exec(struct fx *fx, const char *sql)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("test SQL %s: %s", sql, msg);
    sqlite3_close(db);
}

static json_t *user_create(struct fx *fx, const char *body, json_t **errors_out, int *rc_out)
{
    struct store_collection *u = NULL;
    assert_int_equal(store_collection_get(fx->st, "users", &u), 0);
    json_t *j = J(body), *rec = NULL;
    *errors_out = NULL;
    *rc_out = store_record_create(fx->st, u, j, "$argon2id$fakehash", errors_out, &rec);
    json_decref(j);
    store_collection_unref(u);
    return rec;
}

static void assert_email_not_unique(int rc, json_t *errors)
{
    assert_int_equal(rc, ERR_INVALID);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(errors, "email"), "code")),
        "validation_not_unique");
    json_decref(errors);
}

/* Emails are one address whatever their case: a second record cannot take one (create, update,
 * superuser upsert), and every auth collection's definition has the case-insensitive index. */
static void test_email_unique_without_case(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    json_t *victim = make_user(&fx, "Victim@Corp.com");
    json_t *errors = NULL;
    int rc;
    static const char *const variants[] = {"victim@corp.com", "VICTIM@CORP.COM", "victim@Corp.com"};
    for (size_t i = 0; i < ARRAY_LEN(variants); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"email\":\"%s\"}", variants[i]);
        assert_null(user_create(&fx, body, &errors, &rc));
        assert_email_not_unique(rc, errors);
    }
    /* another record cannot change its email to one */
    json_t *other = make_user(&fx, "other@example.com");
    struct store_collection *u = NULL;
    assert_int_equal(store_collection_get(fx.st, "users", &u), 0);
    const char *oid = json_string_value(json_object_get(other, "id"));
    json_t *patch = J("{\"email\":\"VICTIM@corp.com\"}"), *rec = NULL;
    rc = store_record_update(fx.st, u, oid, patch, NULL, &errors, &rec);
    assert_null(rec);
    assert_email_not_unique(rc, errors);
    json_decref(patch);
    /* the owner may change the case of its own */
    const char *vid = json_string_value(json_object_get(victim, "id"));
    patch = J("{\"email\":\"victim@corp.com\"}");
    assert_int_equal(store_record_update(fx.st, u, vid, patch, NULL, &errors, &rec), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "email")), "victim@corp.com");
    json_decref(rec);
    json_decref(patch);
    /* the database index: users and _superusers */
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                     "AND sql LIKE '%(`email` COLLATE NOCASE) WHERE `email` != %'"),
                     2);
    /* a new auth collection gets it, also next to a case-sensitive index of its own, and a
     * case-sensitive index under the system index's name is replaced */
    struct store_collection *m =
        fx_coll(&fx, "{\"name\":\"members\",\"type\":\"auth\",\"fields\":[],\"indexes\":["
                     "\"CREATE UNIQUE INDEX `idx_mine` ON `members` (`email`)\"]}");
    char sys_name[128];
    snprintf(sys_name, sizeof(sys_name), "`idx_email_%s`", m->id);
    size_t n_nocase = 0;
    for (size_t i = 0; i < m->n_indexes; i++)
        if (strstr(m->indexes[i], sys_name) &&
            strstr(m->indexes[i], "(`email` COLLATE NOCASE) WHERE `email` != ''"))
            n_nocase++;
    assert_int_equal(n_nocase, 1);
    char spec_text[512];
    snprintf(
        spec_text, sizeof(spec_text),
        "{\"indexes\":[\"CREATE UNIQUE INDEX %s ON `members` (`email`) WHERE `email` != ''\"]}",
        sys_name);
    json_t *spec = J(spec_text), *cerr = NULL;
    struct store_collection *m2 = NULL;
    rc = store_collection_update(fx.st, "members", spec, &cerr, &m2);
    json_decref(spec);
    if (rc)
        fail_msg("update: %s %s", err_str(rc), cerr ? json_dumps(cerr, 0) : "");
    n_nocase = 0;
    size_t n_sys = 0;
    for (size_t i = 0; i < m2->n_indexes; i++) {
        n_sys += strstr(m2->indexes[i], sys_name) != NULL;
        n_nocase += strstr(m2->indexes[i], "(`email` COLLATE NOCASE)") != NULL;
    }
    assert_int_equal(n_sys, 1);
    assert_int_equal(n_nocase, 1);
    store_collection_unref(m2);
    store_collection_unref(m);
    json_t *mrec = NULL, *merr = NULL;
    struct store_collection *mc = NULL;
    assert_int_equal(store_collection_get(fx.st, "members", &mc), 0);
    json_t *b1 = J("{\"email\":\"a@b.c\"}"), *b2 = J("{\"email\":\"A@B.C\"}");
    assert_int_equal(store_record_create(fx.st, mc, b1, "h", &merr, &mrec), 0);
    json_decref(mrec);
    mrec = NULL;
    rc = store_record_create(fx.st, mc, b2, "h", &merr, &mrec);
    assert_email_not_unique(rc, merr);
    json_decref(b1);
    json_decref(b2);
    store_collection_unref(mc);
    /* a superuser upserted with another case of an existing one's email is that superuser */
    char id1[ID_LEN + 1], id2[ID_LEN + 1];
    assert_int_equal(store_superuser_upsert(fx.st, "Root@Example.com", "h1", id1), 0);
    assert_int_equal(store_superuser_upsert(fx.st, "root@example.COM", "h2", id2), 0);
    assert_string_equal(id1, id2);
    store_collection_unref(u);
    json_decref(other);
    json_decref(victim);
    fx_close(&fx);
}

/* What reopening a database made before the rule does: with case-duplicates a warning names
 * the collection and the count, sign-in by those emails is refused rather than picking one,
 * and no new duplicate gets in; once they are resolved the index becomes case-insensitive. */
static void test_email_case_upgrade(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    /* the database as older versions left it: a case-sensitive email index */
    sql_exec(&fx, "DROP INDEX `idx_email__pb_users_auth_`;"
                  "CREATE UNIQUE INDEX `idx_email__pb_users_auth_` ON `users` (`email`) "
                  "WHERE `email` != '';"
                  "UPDATE _collections SET spec = replace(spec, '(`email` COLLATE NOCASE)', "
                  "'(`email`)') WHERE id = '_pb_users_auth_';");
    sql_exec(&fx, "INSERT INTO users (id, email, tokenKey, password) VALUES "
                  "('aaaaaaaaaaaaaa1', 'Victim@Corp.com', 'tk1', 'h'), "
                  "('aaaaaaaaaaaaaa2', 'victim@corp.com', 'tk2', 'h'), "
                  "('aaaaaaaaaaaaaa3', 'twin@x.org', 'tk3', 'h'), "
                  "('aaaaaaaaaaaaaa4', 'TWIN@x.org', 'tk4', 'h'), "
                  "('aaaaaaaaaaaaaa5', 'Single@x.org', 'tk5', 'h')");
    static const char nocase_ix[] = "SELECT count(*) FROM sqlite_master WHERE name = "
                                    "'idx_email__pb_users_auth_' AND sql LIKE "
                                    "'%(`email` COLLATE NOCASE) WHERE `email` != %'";
    assert_int_equal(fx_sql_int(&fx, nocase_ix), 0);
    char logpath[600];
    snprintf(logpath, sizeof(logpath), "%s/xlog", fx.dir);
    int lfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(lfd >= 0);
    xlog_set_level(XLOG_INFO);
    xlog_set_fd(lfd);
    fx_reopen(&fx);
    xlog_set_fd(-1);
    char text[4096] = "";
    assert_true(pread(lfd, text, sizeof(text) - 1, 0) > 0);
    close(lfd);
    assert_non_null(strstr(text, "auth collection users: 2 emails are each held by more than one "
                                 "record when case is ignored (4 records)"));
    assert_int_equal(fx_sql_int(&fx, nocase_ix), 0); /* cannot exist over duplicates */
    struct store_collection *u = NULL;
    assert_int_equal(store_collection_get(fx.st, "users", &u), 0);
    struct store_auth_record ar;
    static const char *const ambiguous[] = {"victim@corp.com", "Victim@Corp.com", "twin@X.org"};
    for (size_t i = 0; i < ARRAY_LEN(ambiguous); i++) {
        assert_int_equal(store_auth_find(fx.st, u, "email", ambiguous[i], &ar), ERR_CONFLICT);
        assert_null(ar.record);
        assert_null(ar.password_hash);
    }
    assert_int_equal(store_auth_find(fx.st, u, "email", "single@X.org", &ar), 0);
    assert_string_equal(json_string_value(json_object_get(ar.record, "id")), "aaaaaaaaaaaaaa5");
    store_auth_record_release(&ar);
    /* no new duplicate gets in, though the index cannot say so yet */
    json_t *errors = NULL;
    int rc;
    assert_null(user_create(&fx, "{\"email\":\"VICTIM@corp.com\"}", &errors, &rc));
    assert_email_not_unique(rc, errors);
    assert_null(user_create(&fx, "{\"email\":\"SINGLE@x.org\"}", &errors, &rc));
    assert_email_not_unique(rc, errors);
    json_t *fresh = user_create(&fx, "{\"email\":\"new@x.org\"}", &errors, &rc);
    assert_int_equal(rc, 0);
    json_decref(fresh);
    /* resolve the duplicates (one deleted, one renamed), reopen: the index is created */
    assert_int_equal(store_record_delete(fx.st, u, "aaaaaaaaaaaaaa2"), 0);
    json_t *patch = J("{\"email\":\"twin2@x.org\"}"), *rec = NULL;
    assert_int_equal(store_record_update(fx.st, u, "aaaaaaaaaaaaaa4", patch, NULL, &errors, &rec),
                     0);
    json_decref(rec);
    json_decref(patch);
    store_collection_unref(u);
    fx_reopen(&fx);
    assert_int_equal(fx_sql_int(&fx, nocase_ix), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT count(*) FROM _collections WHERE id = "
                                     "'_pb_users_auth_' AND spec LIKE '%COLLATE NOCASE%'"),
                     1);
    assert_int_equal(store_collection_get(fx.st, "users", &u), 0);
    assert_int_equal(store_auth_find(fx.st, u, "email", "VICTIM@corp.com", &ar), 0);
    assert_string_equal(json_string_value(json_object_get(ar.record, "id")), "aaaaaaaaaaaaaa1");
    store_auth_record_release(&ar);
    store_collection_unref(u);
    fx_close(&fx);
}

static void test_concurrent_writers(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    enum { N_THREADS = 4, N_EACH = 40 };
    pthread_t th[N_THREADS];
    struct writer_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (struct writer_arg){.st = fx.st, .c = c, .n = N_EACH};
        assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (args[i].failures)
            fail_msg("thread %d: %d failures, last: %s", i, args[i].failures, args[i].msg);
    }
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), N_THREADS * N_EACH);
    /* every write transaction was measured */
    struct metrics_family *tx = metrics_histogram("tandem_store_write_seconds", "", NULL, NULL, 0);
    struct metrics_family *n =
        metrics_family(METRICS_COUNTER, "tandem_store_write_transactions_total", "", "result");
    assert_true(metrics_hist_count(metrics_series0(tx)) >= 2 * N_THREADS * N_EACH);
    assert_true(metrics_value(metrics_series(n, (const char *const[]){"commit"})) >=
                2 * N_THREADS * N_EACH);
    assert_true(metrics_value(metrics_series(n, (const char *const[]){"busy"})) == 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM _outbox"), 2 * N_THREADS * N_EACH);
    store_collection_unref(c);
    fx_close(&fx);
}

/* Open file descriptors of this process on path (the db file itself). */
static int fds_on(const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return -1;
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) {
        char link[64], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, real) == 0)
            n++;
    }
    return n;
}

struct reader_arg {
    struct store *st;
    struct store_collection *c;
    int rc;
};

static void *one_read(void *p)
{
    struct reader_arg *a = p;
    struct store_list_query q = {.page = 1, .per_page = 1};
    struct store_list_result res;
    a->rc = store_record_list(a->st, a->c, &q, &res);
    if (a->rc == 0)
        json_decref(res.items);
    return NULL;
}

static void test_exiting_threads_close_their_connections(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx.dir);
    int before = fds_on(path);
    assert_true(before >= 1);
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        struct reader_arg a = {fx.st, c, -1};
        assert_int_equal(pthread_create(&t, NULL, one_read, &a), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(a.rc, 0);
    }
    /* Without the close at thread exit there would be 20 more. SQLite may keep one closed
     * handle's descriptor for reuse while other connections hold POSIX locks on the file. */
    assert_true(fds_on(path) <= before + 1);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_stale_collection_reference(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c =
        fx_coll(&fx, "{\"name\":\"s\",\"fields\":[{\"name\":\"a\",\"type\":\"text\"}]}");
    json_t *patch = J("{\"fields\":[{\"name\":\"a\",\"type\":\"text\"},"
                      "{\"name\":\"b\",\"type\":\"text\",\"required\":true}]}");
    json_t *errors = NULL;
    assert_int_equal(store_collection_update(fx.st, "s", patch, &errors, NULL), 0);
    json_decref(patch);
    /* writes through the old snapshot use the current schema */
    fx_rec_invalid(&fx, c, "{\"a\":\"x\"}", "b", "validation_required");
    /* and so do reads, also after a rename of the table and a field */
    json_decref(fx_rec(&fx, c, "{\"id\":\"rec000000000001\",\"a\":\"x\",\"b\":\"y\"}"));
    struct store_collection *now = NULL;
    assert_int_equal(store_collection_get(fx.st, "s", &now), 0);
    char spec[512];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"s2\",\"fields\":[{\"id\":\"%s\",\"name\":\"a2\",\"type\":\"text\"},"
             "{\"name\":\"b\",\"type\":\"text\",\"required\":true}]}",
             store_collection_field(now, "a")->id);
    store_collection_unref(now);
    patch = J(spec);
    assert_int_equal(store_collection_update(fx.st, "s", patch, &errors, NULL), 0);
    json_decref(patch);
    json_t *got = NULL;
    assert_int_equal(store_record_get(fx.st, c, "rec000000000001", &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "a2")), "x");
    assert_string_equal(json_string_value(json_object_get(got, "collectionName")), "s2");
    json_decref(got);
    struct store_list_query q = {.page = 1, .per_page = 5};
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    assert_int_equal(res.total_items, 1);
    json_decref(res.items);
    assert_int_equal(store_collection_delete(fx.st, "s2"), 0);
    json_t *body = J("{\"a\":\"x\"}");
    json_t *rec = NULL;
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), ERR_NOTFOUND);
    assert_int_equal(store_record_get(fx.st, c, "rec000000000001", &got), ERR_NOTFOUND);
    assert_int_equal(store_record_list(fx.st, c, &q, &res), ERR_NOTFOUND);
    json_decref(body);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_locked_by_another_process_is_busy(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    store_collection_unref(c);
    /* reopen with a short busy timeout */
    store_close(fx.st);
    struct store_cfg cfg = {.dir = fx.dir, .busy_timeout_ms = 50};
    char err[256];
    assert_int_equal(store_open(&cfg, &fx.st, err, sizeof(err)), 0);
    assert_int_equal(store_collection_get(fx.st, "posts", &c), 0);
    /* another connection (as another process would) holds the write lock */
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx.dir);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    json_t *body = J("{\"title\":\"Hi\"}");
    json_t *errors = NULL, *rec = NULL;
    struct metrics_series *busy = metrics_series(
        metrics_family(METRICS_COUNTER, "tandem_store_write_transactions_total", "", "result"),
        (const char *const[]){"busy"});
    double busy_before = metrics_value(busy);
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), ERR_BUSY);
    assert_null(rec);
    assert_true(metrics_value(busy) == busy_before + 1);
    json_t *patch = J("{\"fields\":[]}");
    assert_int_equal(store_collection_update(fx.st, "posts", patch, &errors, NULL), ERR_BUSY);
    /* reads still work during the other writer's transaction (WAL) */
    struct store_list_query q = {.page = 1, .per_page = 10};
    struct store_list_result res;
    assert_int_equal(store_record_list(fx.st, c, &q, &res), 0);
    json_decref(res.items);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* and the store recovers once the lock is gone */
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), 0);
    json_decref(rec);
    json_decref(body);
    json_decref(patch);
    store_collection_unref(c);
    fx_close(&fx);
}

/* Group commit: one transaction, a savepoint per item; a failing item undoes only itself,
 * the others commit with their outbox rows in item order. */
static void test_create_batch(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    json_t *params = J("[10]");
    struct store_cond cond = {.sql = "\"r\".\"views\" >= ?", .params = params};
    const char *bodies[] = {
        "{\"id\":\"batch0000000001\",\"title\":\"First\",\"views\":1}",
        "{\"title\":\"x\"}",                                /* too short */
        "{\"id\":\"batch0000000001\",\"title\":\"Again\"}", /* the first one's id */
        "{\"title\":\"Denied\",\"views\":3}",               /* fails the condition */
        "{\"id\":\"batch0000000005\",\"title\":\"Last\",\"views\":50}",
    };
    struct store_create_item items[5];
    json_t *js[5];
    for (size_t i = 0; i < 5; i++) {
        js[i] = J(bodies[i]);
        items[i] = (struct store_create_item){.c = c, .body = js[i]};
    }
    items[3].cond = &cond;
    items[4].cond = &cond;
    assert_int_equal(store_record_create_batch(fx.st, items, 5), 0);
    assert_int_equal(items[0].rc, 0);
    assert_string_equal(json_string_value(json_object_get(items[0].record, "title")), "First");
    assert_int_equal(items[1].rc, ERR_INVALID);
    assert_null(items[1].record);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(items[1].errors, "title"), "code")),
        "validation_min_text_constraint");
    assert_int_equal(items[2].rc, ERR_INVALID);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(items[2].errors, "id"), "code")),
        "validation_not_unique");
    assert_int_equal(items[3].rc, ERR_DENIED);
    assert_null(items[3].record);
    assert_int_equal(items[4].rc, 0);
    assert_string_equal(json_string_value(json_object_get(items[4].record, "id")),
                        "batch0000000005");
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE title = 'First'"), 1);
    /* outbox: exactly the two committed records, in item order */
    json_t *rows = NULL;
    assert_int_equal(store_outbox_read(fx.st, 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "recordId")),
                        "batch0000000001");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "recordId")),
                        "batch0000000005");
    json_decref(rows);
    for (size_t i = 0; i < 5; i++) {
        json_decref(items[i].record);
        json_decref(items[i].errors);
        json_decref(js[i]);
    }
    /* an empty batch commits nothing and succeeds */
    assert_int_equal(store_record_create_batch(fx.st, items, 0), 0);
    json_decref(params);
    store_collection_unref(c);
    fx_close(&fx);
}

/* A batch whose transaction cannot start fails every item with the store's error and
 * writes nothing. */
/* Updates and deletes in a group: each fails alone (missing record, invalid body), the
 * others commit, with their outbox rows in item order. */
static void test_write_batch_mixed(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    const char *seed[] = {"{\"id\":\"mixed0000000001\",\"title\":\"One\",\"views\":1}",
                          "{\"id\":\"mixed0000000002\",\"title\":\"Two\",\"views\":2}"};
    for (size_t i = 0; i < 2; i++) {
        json_t *b = J(seed[i]), *rec = NULL;
        assert_int_equal(store_record_create_if(fx.st, c, b, NULL, NULL, NULL, &rec), 0);
        json_decref(rec);
        json_decref(b);
    }
    json_t *upd = J("{\"title\":\"One again\"}"), *bad = J("{\"title\":\"x\"}"),
           *cre = J("{\"id\":\"mixed0000000003\",\"title\":\"Three\"}");
    struct store_create_item items[] = {
        {.c = c, .update_id = "mixed0000000001", .body = upd},
        {.c = c, .update_id = "mixed0000000009", .body = upd}, /* no such record */
        {.c = c, .update_id = "mixed0000000002", .body = bad}, /* too short */
        {.c = c, .update_id = "mixed0000000002", .delete_it = true},
        {.c = c, .update_id = "mixed0000000009", .delete_it = true}, /* no such record */
        {.c = c, .body = cre},
    };
    assert_int_equal(store_record_create_batch(fx.st, items, ARRAY_LEN(items)), 0);
    assert_int_equal(items[0].rc, 0);
    assert_string_equal(json_string_value(json_object_get(items[0].record, "title")), "One again");
    assert_int_equal(items[1].rc, ERR_NOTFOUND);
    assert_int_equal(items[2].rc, ERR_INVALID);
    assert_non_null(json_object_get(items[2].errors, "title"));
    assert_int_equal(items[3].rc, 0);
    assert_null(items[3].record);
    assert_int_equal(items[4].rc, ERR_NOTFOUND);
    assert_int_equal(items[5].rc, 0);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 2);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE title = 'One again'"), 1);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts WHERE id = 'mixed0000000002'"), 0);
    json_t *rows = NULL;
    assert_int_equal(store_outbox_read(fx.st, 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 5); /* two seeds, then update, delete, create */
    const char *actions[] = {"create", "create", "update", "delete", "create"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(rows, i), "action")),
                            actions[i]);
    json_decref(rows);
    for (size_t i = 0; i < ARRAY_LEN(items); i++) {
        json_decref(items[i].record);
        json_decref(items[i].errors);
    }
    json_decref(upd);
    json_decref(bad);
    json_decref(cre);
    store_collection_unref(c);
    fx_close(&fx);
}

static void test_create_batch_busy(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_collection *c = fx_coll(&fx, posts_spec);
    store_collection_unref(c);
    store_close(fx.st);
    struct store_cfg cfg = {.dir = fx.dir, .busy_timeout_ms = 50};
    char err[256];
    assert_int_equal(store_open(&cfg, &fx.st, err, sizeof(err)), 0);
    assert_int_equal(store_collection_get(fx.st, "posts", &c), 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx.dir);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    json_t *b1 = J("{\"title\":\"One\"}"), *b2 = J("{\"title\":\"x\"}");
    struct store_create_item items[2] = {{.c = c, .body = b1}, {.c = c, .body = b2}};
    assert_int_equal(store_record_create_batch(fx.st, items, 2), ERR_BUSY);
    assert_int_equal(items[0].rc, ERR_BUSY);
    assert_int_equal(items[1].rc, ERR_BUSY);
    assert_null(items[0].record);
    assert_null(items[1].errors);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 0);
    /* the write lock was not left held: the next batch works */
    assert_int_equal(store_record_create_batch(fx.st, items, 1), 0);
    assert_int_equal(items[0].rc, 0);
    json_decref(items[0].record);
    assert_int_equal(fx_sql_int(&fx, "SELECT COUNT(*) FROM posts"), 1);
    json_decref(b1);
    json_decref(b2);
    store_collection_unref(c);
    fx_close(&fx);
}

static uint64_t epoch_of(struct store *st, uint64_t *instance)
{
    uint64_t inst, e;
    assert_int_equal(store_auth_epoch(st, &inst, &e), 0);
    if (instance)
        *instance = inst;
    return e;
}

static void test_auth_epoch(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct store_cfg cfg = {.dir = fx.dir};
    char err[256];
    struct store *other = NULL; /* a second open of the same directory: another process */
    assert_int_equal(store_open(&cfg, &other, err, sizeof(err)), 0);
    uint64_t i1, i2;
    uint64_t e = epoch_of(fx.st, &i1);
    assert_int_equal(epoch_of(other, &i2), e);
    assert_int_not_equal(i1, i2);

    /* creating a superuser or a plain record leaves tokens alone */
    char id[ID_LEN + 1];
    assert_int_equal(store_superuser_upsert(fx.st, "a@example.com", "hash-1", id), 0);
    assert_int_equal(epoch_of(fx.st, NULL), e);
    struct store_collection *c = fx_coll(&fx, "{\"name\":\"notes\",\"type\":\"base\","
                                              "\"fields\":[{\"name\":\"t\",\"type\":\"text\"}]}");
    json_t *rec = fx_rec(&fx, c, "{\"t\":\"x\"}");
    assert_int_equal(epoch_of(fx.st, NULL), e);
    /* updating a plain record neither */
    json_t *patch = J("{\"t\":\"y\"}"), *out = NULL, *errors = NULL;
    const char *rid = json_string_value(json_object_get(rec, "id"));
    assert_int_equal(store_record_update(fx.st, c, rid, patch, NULL, &errors, &out), 0);
    json_decref(out);
    assert_int_equal(epoch_of(fx.st, NULL), e);

    /* an auth record update (the upsert's new password) advances it, seen by both opens */
    assert_int_equal(store_superuser_upsert(fx.st, "a@example.com", "hash-2", id), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    assert_int_equal(epoch_of(other, NULL), e);
    /* and the other way round */
    assert_int_equal(store_superuser_upsert(other, "a@example.com", "hash-3", id), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    /* any record delete (cascades may reach auth records) */
    assert_int_equal(store_record_delete(fx.st, c, rid), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    /* collection changes: update, truncate, delete */
    json_t *cpatch = J("{\"name\":\"notes2\"}");
    struct store_collection *c2 = NULL;
    assert_int_equal(store_collection_update(fx.st, "notes", cpatch, &errors, &c2), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    assert_int_equal(store_collection_truncate(fx.st, "notes2"), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    assert_int_equal(store_collection_delete(fx.st, "notes2"), 0);
    assert_true(epoch_of(fx.st, NULL) > e);
    e = epoch_of(fx.st, NULL);
    /* a failed auth update (validation) changes nothing and advances nothing */
    struct store_collection *su = NULL;
    assert_int_equal(store_collection_get(fx.st, "_superusers", &su), 0);
    json_t *bad = J("{\"email\":\"not an email\"}");
    assert_int_equal(store_record_update(fx.st, su, id, bad, NULL, &errors, &out), ERR_INVALID);
    json_decref(errors);
    errors = NULL;
    assert_int_equal(epoch_of(fx.st, NULL), e);

    /* it survives reopening (it lives in a file beside the database) */
    fx_reopen(&fx);
    assert_int_equal(epoch_of(fx.st, NULL), e);
    json_decref(bad);
    json_decref(cpatch);
    json_decref(patch);
    json_decref(rec);
    store_collection_unref(su);
    store_collection_unref(c2);
    store_collection_unref(c);
    store_close(other);
    fx_close(&fx);
}

/* Twelve fields with their own patterns: more than the per-thread cache of compiled patterns
 * holds, so entries are replaced while records keep being checked against the right one. */
static void test_many_patterns(void **state)
{
    UNUSED(state);
    struct fx fx;
    fx_open(&fx);
    struct buf spec;
    buf_init(&spec);
    buf_puts(&spec, "{\"name\":\"pats\",\"type\":\"base\",\"fields\":[");
    for (int i = 0; i < 12; i++)
        buf_printf(&spec, "%s{\"name\":\"f%d\",\"type\":\"text\",\"pattern\":\"^%c+$\"}",
                   i ? "," : "", i, 'a' + i);
    buf_puts(&spec, "]}");
    struct store_collection *c = fx_coll(&fx, buf_cstr(&spec));
    buf_release(&spec);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 12; i++) {
            char body[64];
            snprintf(body, sizeof(body), "{\"f%d\":\"%c%c\"}", i, 'a' + i, 'a' + i);
            json_decref(fx_rec(&fx, c, body));
            char field[8];
            snprintf(field, sizeof(field), "f%d", i);
            /* the letter of the next field is refused */
            snprintf(body, sizeof(body), "{\"f%d\":\"%c\"}", i, 'a' + (i + 1) % 12);
            fx_rec_invalid(&fx, c, body, field, "validation_invalid_format");
        }
    }
    store_collection_unref(c);
    fx_close(&fx);
}

/* Without its epoch file the store still works and says so (callers verify every token). */
static void test_auth_epoch_unavailable(void **state)
{
    UNUSED(state);
    struct fx fx;
    const char *tmp = getenv("TMPDIR");
    snprintf(fx.dir, sizeof(fx.dir), "%s/storeXXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx.dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db-tokens", fx.dir);
    assert_int_equal(mkdir(path, 0700), 0); /* a directory where the file should be */
    struct store_cfg cfg = {.dir = fx.dir};
    char err[256];
    assert_int_equal(store_open(&cfg, &fx.st, err, sizeof(err)), 0);
    uint64_t inst, e;
    assert_int_equal(store_auth_epoch(fx.st, &inst, &e), ERR_INTERNAL);
    char id[ID_LEN + 1];
    assert_int_equal(store_superuser_upsert(fx.st, "a@example.com", "hash-1", id), 0);
    assert_int_equal(store_superuser_upsert(fx.st, "a@example.com", "hash-2", id), 0);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_every_type),
        cmocka_unit_test(test_autogenerate_modifier),
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_client_id),
        cmocka_unit_test(test_zero_number_is_blank),
        cmocka_unit_test(test_validation_rules),
        cmocka_unit_test(test_required_per_type),
        cmocka_unit_test(test_modifiers),
        cmocka_unit_test(test_modifier_overflow),
        cmocka_unit_test(test_cascade_delete),
        cmocka_unit_test(test_conditional_operations),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_self_relation_cycle),
        cmocka_unit_test(test_outbox),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_referencing),
        cmocka_unit_test(test_auth_records),
        cmocka_unit_test(test_email_unique_without_case),
        cmocka_unit_test(test_email_case_upgrade),
        cmocka_unit_test(test_auth_epoch),
        cmocka_unit_test(test_many_patterns),
        cmocka_unit_test(test_auth_epoch_unavailable),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_exiting_threads_close_their_connections),
        cmocka_unit_test(test_stale_collection_reference),
        cmocka_unit_test(test_locked_by_another_process_is_busy),
        cmocka_unit_test(test_condition_built_from_the_written_body),
        cmocka_unit_test(test_record_ops),
        cmocka_unit_test(test_deleted_hook_after_commit),
        cmocka_unit_test(test_create_batch),
        cmocka_unit_test(test_write_batch_mixed),
        cmocka_unit_test(test_create_batch_busy), /* after test_concurrent_writers: busy */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
