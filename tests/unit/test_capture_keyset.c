/* test_capture_keyset.c - the write keys a capture node learns from the key topic: records
 * made by capture_key_record applied in order, revocations, tombstones, bad records. */
#include "capture_test_util.h"

#include <sodium.h>
#include <stdio.h>

struct made {
    char key[CAPTURE_KEY_LEN + 1];
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    char prefix[CAPTURE_KEY_PREFIX_LEN + 1];
};

static void make(struct made *m)
{
    capture_key_new(m->key, m->hash, m->prefix);
}

static int put(struct capture_keyset *ks, const char *name, const struct made *m,
               const char *revoked)
{
    char *rec = capture_key_record(name, m->hash, m->prefix, "2026-12-07 10:00:00.000Z", revoked);
    assert_non_null(rec);
    int rc = capture_keyset_apply(ks, name, strlen(name), rec, strlen(rec));
    free(rec);
    return rc;
}

/* The name resolve gives for key, or "" when it is unknown. */
static const char *who(struct capture_keyset *ks, const struct made *m)
{
    static char name[CAPTURE_KEY_NAME_MAX + 1];
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    capture_key_hash(m->key, hash);
    int rc = capture_keyset_find(ks, hash, name, sizeof(name));
    if (rc == ERR_NOTFOUND)
        return "";
    assert_int_equal(rc, 0);
    return name;
}

static void test_live_revoked_tombstone(void **state)
{
    (void)state;
    struct capture_keyset *ks = capture_keyset_new();
    struct made web, app;
    make(&web);
    make(&app);
    assert_int_equal(put(ks, "web", &web, ""), 0);
    assert_int_equal(put(ks, "app", &app, ""), 0);
    assert_string_equal(who(ks, &web), "web");
    assert_string_equal(who(ks, &app), "app");
    assert_int_equal(capture_keyset_count(ks), 2);
    /* the same record again (an uncompacted topic, a republication) changes nothing */
    assert_int_equal(put(ks, "web", &web, ""), 0);
    assert_int_equal(capture_keyset_count(ks), 2);
    /* revoked: forgotten at once; the other key stays */
    assert_int_equal(put(ks, "web", &web, "2026-12-07 11:00:00.000Z"), 0);
    assert_string_equal(who(ks, &web), "");
    assert_string_equal(who(ks, &app), "app");
    assert_int_equal(capture_keyset_count(ks), 1);
    /* a tombstone deletes the name */
    assert_int_equal(capture_keyset_apply(ks, "app", 3, NULL, 0), 0);
    assert_string_equal(who(ks, &app), "");
    assert_int_equal(capture_keyset_count(ks), 0);
    /* a name made again with another key (a restored store): the new key only */
    struct made again;
    make(&again);
    assert_int_equal(put(ks, "app", &app, ""), 0);
    assert_int_equal(put(ks, "app", &again, ""), 0);
    assert_string_equal(who(ks, &again), "app");
    assert_string_equal(who(ks, &app), "");
    assert_int_equal(capture_keyset_count(ks), 1);
    capture_keyset_free(ks);
}

static void test_revocation_is_final(void **state)
{
    (void)state;
    struct capture_keyset *ks = capture_keyset_new();
    struct made old, young;
    make(&old);
    make(&young);
    /* out of order (the records sit in two partitions): revoked first, then the older live */
    assert_int_equal(put(ks, "web", &old, "2026-12-07 11:00:00.000Z"), 0);
    assert_int_equal(put(ks, "web", &old, ""), 0);
    assert_string_equal(who(ks, &old), "");
    assert_int_equal(capture_keyset_count(ks), 0);
    /* a newer key of the same name, then the revocation of the old one: the new one stays */
    assert_int_equal(put(ks, "web", &young, ""), 0);
    assert_int_equal(put(ks, "web", &old, "2026-12-07 11:00:00.000Z"), 0);
    assert_string_equal(who(ks, &young), "web");
    assert_string_equal(who(ks, &old), "");
    /* a tombstone of the name does not bring the revoked key back either */
    assert_int_equal(capture_keyset_apply(ks, "web", 3, NULL, 0), 0);
    assert_int_equal(put(ks, "web", &old, ""), 0);
    assert_string_equal(who(ks, &old), "");
    assert_string_equal(who(ks, &young), "");
    capture_keyset_free(ks);
}

static void test_bad_records_change_nothing(void **state)
{
    (void)state;
    struct capture_keyset *ks = capture_keyset_new();
    struct made web;
    make(&web);
    assert_int_equal(put(ks, "web", &web, ""), 0);
    char *rec = capture_key_record("web", web.hash, web.prefix, "", "2026-12-07 11:00:00.000Z");
    /* a record under another name than its Kafka key, no key, a bad name, not JSON */
    assert_int_equal(capture_keyset_apply(ks, "other", 5, rec, strlen(rec)), ERR_INVALID);
    assert_int_equal(capture_keyset_apply(ks, NULL, 0, rec, strlen(rec)), ERR_INVALID);
    assert_int_equal(capture_keyset_apply(ks, "we b", 4, rec, strlen(rec)), ERR_INVALID);
    assert_int_equal(capture_keyset_apply(ks, "web", 3, "{", 1), ERR_INVALID);
    const char *no_hash = "{\"name\":\"web\",\"revoked\":\"\"}";
    assert_int_equal(capture_keyset_apply(ks, "web", 3, no_hash, strlen(no_hash)), ERR_INVALID);
    const char *short_hash = "{\"name\":\"web\",\"hash\":\"abc\",\"revoked\":\"\"}";
    assert_int_equal(capture_keyset_apply(ks, "web", 3, short_hash, strlen(short_hash)),
                     ERR_INVALID);
    assert_string_equal(who(ks, &web), "web");
    free(rec);
    /* capture_key_record refuses what it could not publish */
    assert_null(capture_key_record("", web.hash, "", "", ""));
    assert_null(capture_key_record("web", "not-a-hash", "", "", ""));
    capture_keyset_free(ks);
}

static void test_record_carries_no_key(void **state)
{
    (void)state;
    struct made web;
    make(&web);
    char *rec = capture_key_record("web", web.hash, web.prefix, "", "");
    assert_non_null(rec);
    assert_null(strstr(rec, web.key));
    assert_non_null(strstr(rec, web.hash));
    free(rec);
}

static void test_many_keys(void **state)
{
    (void)state;
    struct capture_keyset *ks = capture_keyset_new();
    enum { N = 5000 };
    struct made *m = calloc(N, sizeof(*m));
    char name[32];
    for (int i = 0; i < N; i++) {
        make(&m[i]);
        snprintf(name, sizeof(name), "k%d", i);
        assert_int_equal(put(ks, name, &m[i], ""), 0);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "k%d", i);
        assert_int_equal(put(ks, name, &m[i], "2026-12-07 11:00:00.000Z"), 0);
    }
    assert_int_equal(capture_keyset_count(ks), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        assert_string_equal(who(ks, &m[i]), i % 2 ? name : "");
    }
    free(m);
    capture_keyset_free(ks);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_revoked_tombstone),
        cmocka_unit_test(test_revocation_is_final),
        cmocka_unit_test(test_bad_records_change_nothing),
        cmocka_unit_test(test_record_carries_no_key),
        cmocka_unit_test(test_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
