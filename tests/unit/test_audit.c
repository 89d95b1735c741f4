/* test_audit.c - the audit trail's hash chain (governance/audit.h): concurrent appends form one
 * dense chain, the chain resumes after a reopen, verify names the first inserted, replayed or
 * foreign record, the hash ignores member order but not content, and summaries redact secrets
 * and stay bounded. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/core.h"
#include "evlog_testlib.h"
#include "governance/audit.h"

struct fx {
    char *tmp;
    char dir[600];
    struct evlog_cfg cfg;
    struct evlog *log;
    struct audit *audit;
};

static void fx_open(struct fx *f)
{
    tl_cfg(&f->cfg, f->tmp, f->dir, sizeof(f->dir));
    f->cfg.fsync = EVLOG_FSYNC_NEVER;
    assert_int_equal(evlog_open(&f->cfg, &f->log), 0);
    assert_int_equal(audit_open(f->log, &f->audit), 0);
}

static void fx_close(struct fx *f)
{
    audit_close(f->audit);
    evlog_close(f->log);
    f->audit = NULL;
    f->log = NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->tmp = tl_tmpdir("audit");
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    tl_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static void append_n(struct audit *a, int n, const char *who)
{
    for (int i = 0; i < n; i++) {
        json_t *e = json_pack("{s:s,s:s,s:i}", "action", "request", "actor", who, "i", i);
        assert_int_equal(audit_append(a, e, NULL), 0);
        json_decref(e);
    }
}

static int verify(struct evlog *log, uint64_t *bad, char *report_out, size_t cap)
{
    struct buf r;
    buf_init(&r);
    int rc = audit_verify(log, &r, bad);
    snprintf(report_out, cap, "%s", buf_cstr(&r));
    buf_release(&r);
    return rc;
}

struct writer {
    struct audit *a;
    char who[16];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    append_n(w->a, 50, w->who);
    return NULL;
}

static void test_concurrent_appends_one_chain_across_reopen(void **state)
{
    struct fx *f = *state;
    pthread_t th[4];
    struct writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i].a = f->audit;
        snprintf(w[i].who, sizeof(w[i].who), "w%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    fx_close(f);
    fx_open(f);
    char report[1024];
    uint64_t bad = 0;
    assert_int_equal(verify(f->log, &bad, report, sizeof(report)), 0);
    assert_non_null(strstr(report, "audit chain ok: 200 entries"));
    /* the chain goes on from the last record after the reopen */
    append_n(f->audit, 3, "again");
    fx_close(f);
    fx_open(f);
    assert_int_equal(verify(f->log, &bad, report, sizeof(report)), 0);
    assert_non_null(strstr(report, "audit chain ok: 203 entries"));
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(f->log, AUDIT_TOPIC, 202, 1, 1 << 20, &b), 0);
    json_t *last = json_loadb((const char *)b.recs[0].data, b.recs[0].len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(last, "seq")), 202);
    json_decref(last);
    evlog_batch_release(&b);
}

static void test_verify_names_inserted_and_replayed_records(void **state)
{
    struct fx *f = *state;
    append_n(f->audit, 3, "a");
    /* a copy of entry 1 appended again behind the chain's back (a replay) */
    struct evlog_batch b;
    evlog_batch_init(&b);
    assert_int_equal(evlog_read(f->log, AUDIT_TOPIC, 1, 1, 1 << 20, &b), 0);
    char *copy = strndup((const char *)b.recs[0].data, b.recs[0].len);
    evlog_batch_release(&b);
    struct evlog_rec rec = {copy, strlen(copy)};
    uint64_t off = 0;
    assert_int_equal(evlog_append_sync(f->log, AUDIT_TOPIC, &rec, 1, &off), 0);
    assert_int_equal(off, 3);
    char report[1024];
    uint64_t bad = 0;
    assert_int_equal(verify(f->log, &bad, report, sizeof(report)), ERR_CORRUPT);
    assert_int_equal(bad, 3);
    assert_non_null(strstr(report, "audit chain broken at offset 3: prev"));
    free(copy);
}

static void test_foreign_record_and_chain_after_it(void **state)
{
    struct fx *f = *state;
    append_n(f->audit, 2, "a");
    struct evlog_rec rec = {"not json", 8};
    uint64_t off = 0;
    assert_int_equal(evlog_append_sync(f->log, AUDIT_TOPIC, &rec, 1, &off), 0);
    /* a reopened chain links to the damaged record's bytes: verify still stops there */
    fx_close(f);
    fx_open(f);
    append_n(f->audit, 1, "b");
    fx_close(f);
    fx_open(f);
    char report[1024];
    uint64_t bad = 0;
    assert_int_equal(verify(f->log, &bad, report, sizeof(report)), ERR_CORRUPT);
    assert_int_equal(bad, 2);
    assert_non_null(strstr(report, "not an audit entry"));
}

static void test_empty_topic_verifies(void **state)
{
    struct fx *f = *state;
    char report[256];
    uint64_t bad = 0;
    assert_int_equal(verify(f->log, &bad, report, sizeof(report)), 0);
    assert_non_null(strstr(report, "audit chain ok: 0 entries"));
}

static void test_hash_is_canonical(void **state)
{
    (void)state;
    json_t *a = json_pack("{s:i,s:s,s:{s:s,s:s}}", "seq", 1, "ip", "::1", "actor", "id", "x",
                          "email", "\xc3\xa9@example.com");
    json_t *b = json_pack("{s:{s:s,s:s},s:s,s:i}", "actor", "email", "\xc3\xa9@example.com", "id",
                          "x", "ip", "::1", "seq", 1);
    char ha[AUDIT_HASH_HEX + 1], hb[AUDIT_HASH_HEX + 1];
    assert_int_equal(audit_hash(a, ha), 0);
    assert_int_equal(audit_hash(b, hb), 0);
    assert_string_equal(ha, hb);
    /* the hash member itself is left out */
    json_object_set_new(b, "hash", json_string(hb));
    assert_int_equal(audit_hash(b, hb), 0);
    assert_string_equal(ha, hb);
    json_object_set_new(b, "ip", json_string("::2"));
    assert_int_equal(audit_hash(b, hb), 0);
    assert_string_not_equal(ha, hb);
    assert_int_equal(audit_hash(json_null(), hb), ERR_INVALID);
    json_decref(a);
    json_decref(b);
}

static void test_summary_redacts_and_bounds(void **state)
{
    (void)state;
    char *long_text = malloc(3001);
    memset(long_text, 'q', 3000);
    long_text[3000] = '\0';
    json_t *body = json_pack("{s:s,s:{s:s,s:s},s:s,s:s,s:[{s:s}],s:s}", "name", "web", "smtp",
                             "host", "mail", "password", "p1", "passwordConfirm", "p2", "key", "k",
                             "list", "clientSecret", "s", "query", long_text);
    json_t *s = audit_summary(body);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "web");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "smtp"), "password")),
                        "[redacted]");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "smtp"), "host")),
                        "mail");
    assert_string_equal(json_string_value(json_object_get(s, "passwordConfirm")), "[redacted]");
    assert_string_equal(json_string_value(json_object_get(s, "key")), "[redacted]");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(s, "list"), 0), "clientSecret")),
                        "[redacted]");
    const char *q = json_string_value(json_object_get(s, "query"));
    assert_int_equal(strlen(q), 1003);
    assert_string_equal(q + 1000, "...");
    json_decref(s);
    json_decref(body);
    /* many long members: only the names are kept */
    body = json_object();
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof(k), "m%d", i);
        json_object_set_new(body, k, json_string(long_text));
    }
    s = audit_summary(body);
    assert_true(json_is_true(json_object_get(s, "truncated")));
    assert_int_equal(json_array_size(json_object_get(s, "keys")), 10);
    char *text = json_dumps(s, JSON_COMPACT);
    assert_true(strlen(text) <= AUDIT_SUMMARY_MAX);
    free(text);
    json_decref(s);
    json_decref(body);
    free(long_text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_appends_one_chain_across_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_names_inserted_and_replayed_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_foreign_record_and_chain_after_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_topic_verifies, setup, teardown),
        cmocka_unit_test(test_hash_is_canonical),
        cmocka_unit_test(test_summary_redacts_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
