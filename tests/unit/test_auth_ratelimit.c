/* test_auth_ratelimit.c - fixed-window limits per address and route class, bounded memory,
 * thread safety, rule parsing and route classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

#define SEC 1000000LL
#define T0 (1000 * SEC)

static struct auth_ratelimit *make(size_t capacity)
{
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    cfg.capacity = capacity;
    struct auth_ratelimit *rl = NULL;
    assert_int_equal(auth_ratelimit_new(&cfg, &rl), 0);
    return rl;
}

static int check(struct auth_ratelimit *rl, const char *ip, enum auth_rl_class cls, int64_t now,
                 int *retry)
{
    return auth_ratelimit_check(rl, ip, cls, now, retry);
}

static void test_defaults_are_pocketbase_rules(void **state)
{
    (void)state;
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    assert_int_equal(cfg.rules[AUTH_RL_AUTH].max, 2);
    assert_int_equal(cfg.rules[AUTH_RL_AUTH].window_s, 3);
    assert_int_equal(cfg.rules[AUTH_RL_CREATE].max, 20);
    assert_int_equal(cfg.rules[AUTH_RL_CREATE].window_s, 5);
    assert_int_equal(cfg.rules[AUTH_RL_BATCH].max, 3);
    assert_int_equal(cfg.rules[AUTH_RL_BATCH].window_s, 1);
    assert_int_equal(cfg.rules[AUTH_RL_DEFAULT].max, 300);
    assert_int_equal(cfg.rules[AUTH_RL_DEFAULT].window_s, 10);
    assert_string_equal(auth_rl_class_name(AUTH_RL_CREATE), "create");
}

static void test_window_refuses_then_resets(void **state)
{
    (void)state;
    struct auth_ratelimit *rl = make(1024);
    int retry = -1;
    /* auth: 2 per 3 s */
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0, &retry), 0);
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 1000, &retry), 0);
    assert_int_equal(retry, -1); /* untouched when allowed */
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 2000, &retry), ERR_LIMIT);
    assert_int_equal(retry, 3); /* 2.998 s left, rounded up */
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 2 * SEC + SEC / 2, &retry),
                     ERR_LIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 3 * SEC - 1, &retry), ERR_LIMIT);
    assert_int_equal(retry, 1); /* never 0 */
    /* refused requests do not extend the window: it resets 3 s after it began */
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 3 * SEC, &retry), 0);
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 3 * SEC + 1, &retry), 0);
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 + 3 * SEC + 2, &retry), ERR_LIMIT);
    assert_int_equal(retry, 3);

    /* default: 300 per 10 s; the 301st is refused */
    for (int i = 0; i < 300; i++)
        assert_int_equal(check(rl, "10.0.0.9", AUTH_RL_DEFAULT, T0 + i, NULL), 0);
    assert_int_equal(check(rl, "10.0.0.9", AUTH_RL_DEFAULT, T0 + 300, &retry), ERR_LIMIT);
    assert_int_equal(retry, 10);
    assert_int_equal(check(rl, "10.0.0.9", AUTH_RL_DEFAULT, T0 + 10 * SEC, NULL), 0);

    /* a clock that goes backwards starts a new window instead of misbehaving */
    assert_int_equal(check(rl, "10.0.0.1", AUTH_RL_AUTH, T0 - 100 * SEC, &retry), 0);
    auth_ratelimit_free(rl);
}

static void test_addresses_and_classes_are_independent(void **state)
{
    (void)state;
    struct auth_ratelimit *rl = make(1024);
    int retry;
    for (int i = 0; i < 2; i++)
        assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_AUTH, T0, &retry), ERR_LIMIT);
    /* another address, same class */
    assert_int_equal(check(rl, "192.0.2.2", AUTH_RL_AUTH, T0, NULL), 0);
    /* same address, other classes */
    assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_CREATE, T0, NULL), 0);
    assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_DEFAULT, T0, NULL), 0);
    assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_BATCH, T0, NULL), 0);
    /* and the exhausted one is still exhausted */
    assert_int_equal(check(rl, "192.0.2.1", AUTH_RL_AUTH, T0 + 1, &retry), ERR_LIMIT);

    /* IPv6 counts per /64; IPv4-mapped IPv6 is the IPv4 address */
    for (int i = 0; i < 2; i++)
        assert_int_equal(check(rl, "2001:db8::1", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(check(rl, "2001:db8::2", AUTH_RL_AUTH, T0, &retry), ERR_LIMIT);
    assert_int_equal(check(rl, "2001:db8:0:0:ffff:1:2:3", AUTH_RL_AUTH, T0, &retry), ERR_LIMIT);
    assert_int_equal(check(rl, "2001:db8:0:1::1", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(check(rl, "::ffff:192.0.2.1", AUTH_RL_AUTH, T0, &retry), ERR_LIMIT);
    assert_int_equal(check(rl, "::ffff:192.0.2.3", AUTH_RL_AUTH, T0, NULL), 0);
    /* something that is not an address is still counted, by its text */
    for (int i = 0; i < 2; i++)
        assert_int_equal(check(rl, "unix:socket", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(check(rl, "unix:socket", AUTH_RL_AUTH, T0, &retry), ERR_LIMIT);
    assert_int_equal(check(rl, "unix:other", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(check(rl, NULL, AUTH_RL_AUTH, T0, NULL), 0);
    auth_ratelimit_free(rl);
}

static void test_unlimited_class_keeps_no_state(void **state)
{
    (void)state;
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    cfg.rules[AUTH_RL_DEFAULT].max = 0;
    cfg.capacity = 64;
    struct auth_ratelimit *rl = NULL;
    assert_int_equal(auth_ratelimit_new(&cfg, &rl), 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(check(rl, "10.1.1.1", AUTH_RL_DEFAULT, T0 + i, NULL), 0);
    assert_int_equal(auth_ratelimit_size(rl), 0);
    assert_int_equal(check(rl, "10.1.1.1", AUTH_RL_AUTH, T0, NULL), 0);
    assert_int_equal(auth_ratelimit_size(rl), 1);
    auth_ratelimit_free(rl);
}

static void test_table_stays_bounded(void **state)
{
    (void)state;
    struct auth_ratelimit *rl = make(60); /* rounded up to whole sets of 8 */
    assert_int_equal(auth_ratelimit_capacity(rl), 64);
    char ip[64];
    for (int i = 0; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_int_equal(check(rl, ip, AUTH_RL_CREATE, T0 + i, NULL), 0);
        assert_true(auth_ratelimit_size(rl) <= 64);
    }
    assert_int_equal(auth_ratelimit_size(rl), 64);
    assert_int_equal(auth_ratelimit_capacity(rl), 64);
    /* still limiting correctly after all that eviction */
    int retry;
    for (int i = 0; i < 20; i++)
        assert_int_equal(check(rl, "203.0.113.7", AUTH_RL_CREATE, T0 + 200000, NULL), 0);
    assert_int_equal(check(rl, "203.0.113.7", AUTH_RL_CREATE, T0 + 200001, &retry), ERR_LIMIT);
    assert_int_equal(retry, 5);
    auth_ratelimit_free(rl);
}

static void test_expired_entries_are_reused_first(void **state)
{
    (void)state;
    /* one set of 8 ways: 7 idle addresses whose windows ended, one busy address */
    struct auth_ratelimit *rl = make(8);
    int retry;
    char ip[32];
    for (int i = 0; i < 7; i++) {
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        assert_int_equal(check(rl, ip, AUTH_RL_AUTH, T0, NULL), 0);
    }
    /* the busy one starts its window later than the idle ones */
    assert_int_equal(check(rl, "10.9.9.9", AUTH_RL_DEFAULT, T0 + 5 * SEC, NULL), 0);
    for (int i = 0; i < 299; i++)
        assert_int_equal(check(rl, "10.9.9.9", AUTH_RL_DEFAULT, T0 + 5 * SEC, NULL), 0);
    /* newcomers take the expired ways, never the busy one's */
    for (int i = 0; i < 7; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
        assert_int_equal(check(rl, ip, AUTH_RL_AUTH, T0 + 6 * SEC, NULL), 0);
    }
    assert_int_equal(check(rl, "10.9.9.9", AUTH_RL_DEFAULT, T0 + 6 * SEC, &retry), ERR_LIMIT);
    assert_int_equal(retry, 9);
    assert_int_equal(auth_ratelimit_size(rl), 8);
    auth_ratelimit_free(rl);
}

struct hammer {
    struct auth_ratelimit *rl;
    _Atomic int allowed;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 2000; i++) {
        if (auth_ratelimit_check(h->rl, "198.51.100.1", AUTH_RL_DEFAULT, T0 + 1, NULL) == 0)
            atomic_fetch_add(&h->allowed, 1);
        /* other keys in between, so sets and locks are shared */
        char ip[32];
        snprintf(ip, sizeof(ip), "198.51.%d.%d", i & 255, (i >> 8) & 255);
        int rc = auth_ratelimit_check(h->rl, ip, AUTH_RL_CREATE, T0 + 1, NULL);
        (void)rc;
    }
    return NULL;
}

static void test_thread_safe_counting(void **state)
{
    (void)state;
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    cfg.rules[AUTH_RL_DEFAULT] = (struct auth_rl_rule){1000, 100};
    cfg.capacity = 1 << 16;
    struct hammer h = {NULL, 0};
    assert_int_equal(auth_ratelimit_new(&cfg, &h.rl), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_main, &h);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&h.allowed), 1000); /* 8000 tries, exactly the limit passes */
    auth_ratelimit_free(h.rl);
}

static void test_parse_rules(void **state)
{
    (void)state;
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    char err[256];
    assert_int_equal(auth_ratelimit_parse("auth=5/1m,default=0/1s,batch=7/2h,create=9/4", &cfg, err,
                                          sizeof(err)),
                     0);
    assert_int_equal(cfg.rules[AUTH_RL_AUTH].max, 5);
    assert_int_equal(cfg.rules[AUTH_RL_AUTH].window_s, 60);
    assert_int_equal(cfg.rules[AUTH_RL_DEFAULT].max, 0);
    assert_int_equal(cfg.rules[AUTH_RL_BATCH].window_s, 7200);
    assert_int_equal(cfg.rules[AUTH_RL_CREATE].max, 9);
    assert_int_equal(cfg.rules[AUTH_RL_CREATE].window_s, 4);
    assert_int_equal(auth_ratelimit_parse("", &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.rules[AUTH_RL_AUTH].max, 5);

    const char *bad[] = {"auth",        "auth=5",       "foo=1/1s",      "auth=1/0s",
                         "auth=1/25h",  "auth=x/1s",    "auth=1/1sx",    "auth=1/1s,",
                         "auth=-1/1s",  "=1/1s",        "auth=1/1s;x=1", "auth=99999999999/1s",
                         "auth=1/1s,,", "auth=1/100000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct auth_ratelimit_cfg before = cfg;
        err[0] = '\0';
        assert_int_equal(auth_ratelimit_parse(bad[i], &cfg, err, sizeof(err)), ERR_INVALID);
        assert_true(strlen(err) > 0);
        assert_memory_equal(&before, &cfg, sizeof(cfg)); /* untouched on error */
    }
}

static void test_new_rejects_bad_config(void **state)
{
    (void)state;
    struct auth_ratelimit_cfg cfg;
    auth_ratelimit_cfg_default(&cfg);
    cfg.rules[AUTH_RL_AUTH].window_s = 0;
    struct auth_ratelimit *rl = NULL;
    assert_int_equal(auth_ratelimit_new(&cfg, &rl), ERR_INVALID);
    auth_ratelimit_cfg_default(&cfg);
    cfg.capacity = (size_t)1 << 40;
    assert_int_equal(auth_ratelimit_new(&cfg, &rl), ERR_INVALID);
    assert_null(rl);
    auth_ratelimit_free(NULL);
}

static void test_classify_routes(void **state)
{
    (void)state;
    struct {
        const char *method, *path;
        enum auth_rl_class want;
    } cases[] = {
        {"POST", "/api/collections/users/auth-with-password", AUTH_RL_AUTH},
        {"POST", "/api/collections/_superusers/auth-with-password", AUTH_RL_AUTH},
        {"POST", "/api/collections/users/request-password-reset", AUTH_RL_AUTH},
        {"POST", "/api/collections/users/confirm-verification", AUTH_RL_AUTH},
        {"POST", "/api/collections/users/request-otp", AUTH_RL_AUTH},
        {"POST", "/api/collections/users/auth-with-oauth2", AUTH_RL_AUTH},
        {"POST", "/api/collections/users/auth-refresh", AUTH_RL_DEFAULT},
        {"GET", "/api/collections/users/auth-with-password", AUTH_RL_DEFAULT},
        {"GET", "/api/collections/users/auth-methods", AUTH_RL_DEFAULT},
        {"POST", "/api/collections/posts/records", AUTH_RL_CREATE},
        {"POST", "/api/collections/posts/records/abc", AUTH_RL_DEFAULT},
        {"PATCH", "/api/collections/posts/records/abc", AUTH_RL_DEFAULT},
        {"GET", "/api/collections/posts/records", AUTH_RL_DEFAULT},
        {"POST", "/api/batch", AUTH_RL_BATCH},
        {"POST", "/api/batch/x", AUTH_RL_DEFAULT},
        {"POST", "/api/collections", AUTH_RL_DEFAULT},
        {"POST", "/api/collections/records", AUTH_RL_DEFAULT},
        {"POST", "/v1/batch", AUTH_RL_DEFAULT},
        {"GET", "/api/health", AUTH_RL_DEFAULT},
        {"POST", "", AUTH_RL_DEFAULT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum auth_rl_class got = auth_ratelimit_classify(cases[i].method, str_from(cases[i].path));
        if (got != cases[i].want)
            fail_msg("%s %s: %s, want %s", cases[i].method, cases[i].path, auth_rl_class_name(got),
                     auth_rl_class_name(cases[i].want));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_pocketbase_rules),
        cmocka_unit_test(test_window_refuses_then_resets),
        cmocka_unit_test(test_addresses_and_classes_are_independent),
        cmocka_unit_test(test_unlimited_class_keeps_no_state),
        cmocka_unit_test(test_table_stays_bounded),
        cmocka_unit_test(test_expired_entries_are_reused_first),
        cmocka_unit_test(test_thread_safe_counting),
        cmocka_unit_test(test_parse_rules),
        cmocka_unit_test(test_new_rejects_bad_config),
        cmocka_unit_test(test_classify_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
