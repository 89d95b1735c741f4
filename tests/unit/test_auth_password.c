/* test_auth_password.c - argon2id hashes, constant-time helpers, tokenKeys and the hashing
 * pool. Most tests use the cheapest argon2id parameters; one checks the production default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"

static const struct auth_hash_params cheap = {1, 8192}; /* libsodium's minimum: sub-ms */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- passwords ---- */

static void test_hash_default_is_interactive_argon2id(void **state)
{
    (void)state;
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash("correct horse", hash), 0);
    /* libsodium's INTERACTIVE pair: 64 MiB, 2 passes, 1 lane */
    assert_true(strncmp(hash, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    assert_int_equal(auth_password_verify(hash, "correct horse"), 0);
    assert_int_equal(auth_password_verify(hash, "correct horsf"), ERR_DENIED);
    assert_int_equal(auth_password_needs_rehash(hash), 0);
}

static void test_hash_verify_cheap(void **state)
{
    (void)state;
    char h1[AUTH_HASH_LEN], h2[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("s3cret pass", &cheap, h1), 0);
    assert_int_equal(auth_password_hash_with("s3cret pass", &cheap, h2), 0);
    assert_string_not_equal(h1, h2); /* random salt */
    assert_int_equal(auth_password_verify(h1, "s3cret pass"), 0);
    assert_int_equal(auth_password_verify(h2, "s3cret pass"), 0);
    assert_int_equal(auth_password_verify(h1, "s3cret pas"), ERR_DENIED);
    assert_int_equal(auth_password_verify(h1, ""), ERR_DENIED);
    /* made with other parameters than the default: rehash after login */
    assert_int_equal(auth_password_needs_rehash(h1), 1);
    assert_int_equal(auth_password_needs_rehash_with(h1, &cheap), 0);
}

static void test_verify_malformed_hash(void **state)
{
    (void)state;
    char good[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("pw", &cheap, good), 0);
    char truncated[AUTH_HASH_LEN];
    strcpy(truncated, good);
    *strrchr(truncated, '$') = '\0'; /* the salt without the hash */
    char long_hash[AUTH_HASH_LEN + 10];
    memset(long_hash, 'a', sizeof(long_hash) - 1);
    long_hash[sizeof(long_hash) - 1] = '\0';
    memcpy(long_hash, "$argon2id$", 10);

    const char *bad[] = {
        "",
        "pw",
        "$2a$31$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", /* bcrypt, too costly */
        "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhW",  /* one short */
        "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lh!y", /* not bcrypt base64 */
        "$2x$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", /* unknown variant */
        "$2a$03$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", /* cost below 4 */
        "$argon2id$v=19$m=abc,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        "$argon2id$v=19$m=65536,t=2,p=1$",
        "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA",
        truncated,
        long_hash,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(auth_password_verify(bad[i], "pw"), ERR_INVALID);
        assert_int_equal(auth_password_needs_rehash(bad[i]), ERR_INVALID);
    }
}

static void test_argon2i_hash_verifies_and_needs_rehash(void **state)
{
    (void)state;
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_init(), 0);
    assert_int_equal(crypto_pwhash_argon2i_str(hash, "old", 3, 3, 8192), 0);
    assert_int_equal(auth_password_verify(hash, "old"), 0);
    assert_int_equal(auth_password_verify(hash, "new"), ERR_DENIED);
    /* even with matching cost, argon2i is moved to argon2id */
    struct auth_hash_params p = {3, 8192};
    assert_int_equal(auth_password_needs_rehash_with(hash, &p), 1);
}

/* PocketBase stores Go's bcrypt hashes; these are published test vectors (Go's
 * x/crypto/bcrypt tests, and the OpenBSD/John the Ripper "U*U" one), not made by libcrypt. */
static void test_bcrypt_hash_verifies_and_needs_rehash(void **state)
{
    (void)state;
    const char *go = "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga";
    assert_int_equal(auth_password_verify(go, "allmine"), 0);
    assert_int_equal(auth_password_verify(go, "allmine2"), ERR_DENIED);
    assert_int_equal(auth_password_verify(go, ""), ERR_DENIED);
    assert_int_equal(auth_password_needs_rehash(go), 1);
    const char *jtr = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    assert_int_equal(auth_password_verify(jtr, "U*U"), 0);
    assert_int_equal(auth_password_verify(jtr, "U*V"), ERR_DENIED);
    /* the $2b$ and $2y$ spellings of the same hash */
    char b[61];
    strcpy(b, jtr);
    b[2] = 'b';
    assert_int_equal(auth_password_verify(b, "U*U"), 0);
    b[2] = 'y';
    assert_int_equal(auth_password_verify(b, "U*U"), 0);
    /* bcrypt reads 72 bytes: a longer password is refused rather than cut */
    char longpw[100];
    memset(longpw, 'a', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    assert_int_equal(auth_password_verify(jtr, longpw), ERR_DENIED);
}

static void test_password_limits_and_params(void **state)
{
    (void)state;
    char hash[AUTH_HASH_LEN];
    char *pw = malloc(AUTH_PASSWORD_MAX + 2);
    memset(pw, 'x', AUTH_PASSWORD_MAX);
    pw[AUTH_PASSWORD_MAX] = '\0';
    assert_int_equal(auth_password_hash_with(pw, &cheap, hash), 0);
    assert_int_equal(auth_password_verify(hash, pw), 0);
    pw[AUTH_PASSWORD_MAX] = 'x';
    pw[AUTH_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(auth_password_hash_with(pw, &cheap, hash), ERR_LIMIT);
    assert_int_equal(auth_password_hash(pw, hash), ERR_LIMIT);
    assert_int_equal(auth_password_verify(hash, pw), ERR_LIMIT);
    free(pw);

    struct auth_hash_params zero_ops = {0, 8192}, tiny_mem = {1, 1024};
    assert_int_equal(auth_password_hash_with("pw", &zero_ops, hash), ERR_INVALID);
    assert_int_equal(auth_password_hash_with("pw", &tiny_mem, hash), ERR_INVALID);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(auth_ct_equal("abcdef", "abcdef", 6));
    assert_false(auth_ct_equal("abcdef", "abcdeg", 6));
    assert_false(auth_ct_equal("xbcdef", "abcdef", 6));
    assert_true(auth_ct_equal("a", "b", 0));
    assert_true(auth_ct_streq("token", "token"));
    assert_false(auth_ct_streq("token", "tokem"));
    assert_false(auth_ct_streq("token", "token2"));
    assert_false(auth_ct_streq("", "x"));
    assert_true(auth_ct_streq("", ""));
}

static void test_token_key_new(void **state)
{
    (void)state;
    int seen[256] = {0};
    char prev[AUTH_TOKEN_KEY_LEN + 1] = "";
    for (int i = 0; i < 200; i++) {
        char k[AUTH_TOKEN_KEY_LEN + 1];
        auth_token_key_new(k);
        assert_int_equal(strlen(k), 50);
        for (size_t j = 0; j < AUTH_TOKEN_KEY_LEN; j++) {
            unsigned char ch = (unsigned char)k[j];
            assert_true((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                        (ch >= '0' && ch <= '9'));
            seen[ch]++;
        }
        assert_string_not_equal(k, prev);
        strcpy(prev, k);
    }
    /* 10000 draws from 62 symbols: every symbol appears (expected ~161 times each) */
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c] > 0;
    assert_int_equal(distinct, 62);
}

/* ---- the pool ---- */

struct job_rec {
    _Atomic int calls;
    int rc;
    char hash[AUTH_HASH_LEN];
};

struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    /* the gate: callbacks of gated jobs wait here until opened */
    bool gate_open;
    /* concurrency measured inside callbacks */
    _Atomic int inside, max_inside;
    int sleep_ms;
    int wait_for_inside; /* a callback waits (up to 10 s) until this many are inside at once */
};

struct job_ctx {
    struct tracker *t;
    struct job_rec *rec;
    bool gated;
};

static void tracker_init(struct tracker *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
}

static void tracker_release(struct tracker *t)
{
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}

static void job_done(void *arg, const struct auth_pool_result *res)
{
    struct job_ctx *c = arg;
    struct tracker *t = c->t;
    int now = atomic_fetch_add(&t->inside, 1) + 1;
    int m = atomic_load(&t->max_inside);
    while (now > m && !atomic_compare_exchange_weak(&t->max_inside, &m, now))
        ;
    if (t->sleep_ms)
        sleep_ms(t->sleep_ms);
    for (int waited = 0; t->wait_for_inside && waited < 10000; waited++) {
        if (atomic_load(&t->max_inside) >= t->wait_for_inside)
            break;
        sleep_ms(1);
    }
    pthread_mutex_lock(&t->lock);
    while (c->gated && !t->gate_open)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);

    c->rec->rc = res->rc;
    if (res->hash)
        strcpy(c->rec->hash, res->hash);
    atomic_fetch_add(&c->rec->calls, 1);
    atomic_fetch_sub(&t->inside, 1);

    pthread_mutex_lock(&t->lock);
    t->done++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void wait_done(struct tracker *t, int n)
{
    pthread_mutex_lock(&t->lock);
    while (t->done < n)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static void open_gate(struct tracker *t)
{
    pthread_mutex_lock(&t->lock);
    t->gate_open = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void wait_running(struct auth_pool *p, unsigned running, size_t queued)
{
    for (int i = 0; i < 5000; i++) {
        struct auth_pool_stats st;
        auth_pool_stats(p, &st);
        if (st.running == running && st.queued == queued)
            return;
        sleep_ms(1);
    }
    fail_msg("pool never reached running=%u queued=%zu", running, queued);
}

static struct auth_pool *cheap_pool(unsigned threads, unsigned conc, size_t cap)
{
    struct auth_pool_cfg cfg = {threads, conc, cap, cheap};
    struct auth_pool *p = NULL;
    assert_int_equal(auth_pool_new(&cfg, &p), 0);
    return p;
}

static void test_pool_hash_and_verify(void **state)
{
    (void)state;
    struct auth_pool *p = cheap_pool(2, 2, 16);
    char hash[AUTH_HASH_LEN];
    bool rehash = true;
    assert_int_equal(auth_pool_hash_wait(p, "hunter22", hash), 0);
    assert_int_equal(auth_password_verify(hash, "hunter22"), 0);
    assert_int_equal(auth_pool_verify_wait(p, hash, "hunter22", &rehash), 0);
    assert_false(rehash);
    assert_int_equal(auth_pool_verify_wait(p, hash, "hunter23", &rehash), ERR_DENIED);
    /* unknown identity: checked against the dummy, never a match */
    assert_int_equal(auth_pool_verify_wait(p, NULL, "hunter22", &rehash), ERR_DENIED);
    assert_int_equal(auth_pool_verify_wait(p, "not a hash", "hunter22", &rehash), ERR_INVALID);

    /* a stored hash with the default (stronger) cost than the pool's: no rehash asked */
    struct auth_hash_params other = {2, 16384};
    char h2[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("pw", &other, h2), 0);
    assert_int_equal(auth_pool_verify_wait(p, h2, "pw", &rehash), 0);
    assert_true(rehash);

    /* submit-time errors never run a job */
    char *big = malloc(AUTH_PASSWORD_MAX + 2);
    memset(big, 'y', AUTH_PASSWORD_MAX + 1);
    big[AUTH_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(auth_pool_hash_wait(p, big, hash), ERR_LIMIT);
    assert_int_equal(auth_pool_verify_wait(p, hash, big, NULL), ERR_LIMIT);
    free(big);
    char long_hash[AUTH_HASH_LEN + 1];
    memset(long_hash, 'h', AUTH_HASH_LEN);
    long_hash[AUTH_HASH_LEN] = '\0';
    assert_int_equal(auth_pool_verify_wait(p, long_hash, "pw", NULL), ERR_INVALID);

    wait_running(p, 0, 0); /* the last callback has returned */
    struct auth_pool_stats st;
    auth_pool_stats(p, &st);
    assert_int_equal(st.completed, 6);
    assert_int_equal(st.rejected, 0);
    auth_pool_free(p);
}

static void test_pool_defaults(void **state)
{
    (void)state;
    struct auth_pool_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct auth_pool *p = NULL;
    assert_int_equal(auth_pool_new(&cfg, &p), 0);
    struct auth_pool_stats st;
    auth_pool_stats(p, &st);
    assert_int_equal(st.n_threads, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(st.max_concurrent, 2);
    assert_int_equal(st.queue_cap, 256);
    /* production cost: the dummy is an INTERACTIVE argon2id hash */
    const char *dummy = auth_pool_dummy_hash(p);
    assert_true(strncmp(dummy, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    assert_int_equal(auth_password_needs_rehash(dummy), 0);
    /* libsodium runs the whole check on it (a malformed one would be ERR_INVALID at once) */
    assert_int_equal(auth_password_verify(dummy, "anything"), ERR_DENIED);
    assert_int_equal(auth_password_verify(dummy, ""), ERR_DENIED);
    /* two pools never share one */
    struct auth_pool *q = NULL;
    assert_int_equal(auth_pool_new(&cfg, &q), 0);
    assert_string_not_equal(auth_pool_dummy_hash(q), dummy);
    auth_pool_free(q);
    auth_pool_free(p);
}

static void test_pool_new_rejects_bad_config(void **state)
{
    (void)state;
    struct auth_pool *p = NULL;
    struct auth_pool_cfg bad_params = {1, 1, 4, {1, 1024}};
    assert_int_equal(auth_pool_new(&bad_params, &p), ERR_INVALID);
    struct auth_pool_cfg too_many = {100000, 1, 4, cheap};
    assert_int_equal(auth_pool_new(&too_many, &p), ERR_INVALID);
    assert_null(p);
}

static void test_pool_callback_exactly_once(void **state)
{
    (void)state;
    enum { N = 200 };
    struct auth_pool *p = cheap_pool(3, 2, N);
    struct tracker t;
    tracker_init(&t);
    static struct job_rec recs[N];
    static struct job_ctx ctx[N];
    memset(recs, 0, sizeof(recs));
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("pw", &cheap, hash), 0);
    for (int i = 0; i < N; i++) {
        ctx[i] = (struct job_ctx){&t, &recs[i], false};
        int rc = i % 2 ? auth_pool_hash(p, "pw", job_done, &ctx[i])
                       : auth_pool_verify(p, hash, i % 4 ? "pw" : "wrong", job_done, &ctx[i]);
        assert_int_equal(rc, 0);
    }
    wait_done(&t, N);
    auth_pool_free(p); /* nothing left to cancel: no extra calls */
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&recs[i].calls), 1);
        if (i % 2)
            assert_int_equal(auth_password_verify(recs[i].hash, "pw"), 0);
        else
            assert_int_equal(recs[i].rc, i % 4 ? 0 : ERR_DENIED);
    }
    tracker_release(&t);
}

static void test_pool_queue_full_is_busy(void **state)
{
    (void)state;
    struct auth_pool *p = cheap_pool(1, 1, 2);
    struct tracker t;
    tracker_init(&t);
    struct job_rec recs[4];
    memset(recs, 0, sizeof(recs));
    struct job_ctx ctx[4];
    for (int i = 0; i < 4; i++)
        ctx[i] = (struct job_ctx){&t, &recs[i], i == 0};

    assert_int_equal(auth_pool_hash(p, "a", job_done, &ctx[0]), 0);
    wait_running(p, 1, 0); /* job 0 holds the only slot, its callback waits at the gate */
    assert_int_equal(auth_pool_hash(p, "b", job_done, &ctx[1]), 0);
    assert_int_equal(auth_pool_verify(p, NULL, "c", job_done, &ctx[2]), 0);
    assert_int_equal(auth_pool_hash(p, "d", job_done, &ctx[3]), ERR_BUSY);
    assert_int_equal(auth_pool_verify(p, NULL, "d", job_done, &ctx[3]), ERR_BUSY);
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_pool_hash_wait(p, "d", hash), ERR_BUSY);

    struct auth_pool_stats st;
    auth_pool_stats(p, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.rejected, 3);

    open_gate(&t);
    wait_done(&t, 3);
    auth_pool_free(p);
    assert_int_equal(atomic_load(&recs[0].calls), 1);
    assert_int_equal(atomic_load(&recs[1].calls), 1);
    assert_int_equal(atomic_load(&recs[2].calls), 1);
    assert_int_equal(recs[2].rc, ERR_DENIED);
    assert_int_equal(atomic_load(&recs[3].calls), 0); /* refused submits never call back */
    tracker_release(&t);
}

static int run_concurrency(unsigned threads, unsigned conc, int wait_for_inside)
{
    enum { N = 24 };
    struct auth_pool *p = cheap_pool(threads, conc, N);
    struct tracker t;
    tracker_init(&t);
    t.sleep_ms = 15;
    t.wait_for_inside = wait_for_inside;
    struct job_rec recs[N];
    memset(recs, 0, sizeof(recs));
    struct job_ctx ctx[N];
    for (int i = 0; i < N; i++) {
        ctx[i] = (struct job_ctx){&t, &recs[i], false};
        assert_int_equal(auth_pool_hash(p, "pw", job_done, &ctx[i]), 0);
    }
    wait_done(&t, N);
    struct auth_pool_stats st;
    auth_pool_stats(p, &st);
    assert_true(st.peak_running <= conc);
    auth_pool_free(p);
    tracker_release(&t);
    return atomic_load(&t.max_inside);
}

static void test_pool_concurrency_capped(void **state)
{
    (void)state;
    /* 6 threads, cap 2: measured from inside the jobs, never more than 2 at once */
    int m = run_concurrency(6, 2, 0);
    assert_true(m >= 1 && m <= 2);
    /* the measurement can see more: with cap 5, jobs wait inside their slot until three are
     * in at once, which only a pool that lets three run can reach (no timing involved) */
    m = run_concurrency(6, 5, 3);
    assert_true(m >= 3);
}

struct free_arg {
    struct auth_pool *p;
};

static void *free_thread(void *arg)
{
    auth_pool_free(((struct free_arg *)arg)->p);
    return NULL;
}

static void test_pool_free_cancels_queued_jobs(void **state)
{
    (void)state;
    enum { MAX = 64 };
    struct auth_pool *p = cheap_pool(1, 1, MAX);
    struct tracker t;
    tracker_init(&t);
    struct job_rec recs[MAX];
    memset(recs, 0, sizeof(recs));
    struct job_ctx ctx[MAX];
    for (int i = 0; i < MAX; i++)
        ctx[i] = (struct job_ctx){&t, &recs[i], i == 0};

    assert_int_equal(auth_pool_hash(p, "a", job_done, &ctx[0]), 0);
    wait_running(p, 1, 0);
    int n = 1;
    for (; n < 4; n++)
        assert_int_equal(auth_pool_hash(p, "q", job_done, &ctx[n]), 0);

    pthread_t th;
    struct free_arg fa = {p};
    pthread_create(&th, NULL, free_thread, &fa);
    /* once stopping, submits are refused even though the queue has room */
    int rc = 0;
    while (n < MAX && (rc = auth_pool_hash(p, "q", job_done, &ctx[n])) == 0) {
        n++;
        sleep_ms(1);
    }
    assert_int_equal(rc, ERR_BUSY);
    open_gate(&t);
    pthread_join(th, NULL);

    assert_int_equal(atomic_load(&recs[0].calls), 1);
    assert_int_equal(recs[0].rc, 0);
    for (int i = 1; i < n; i++) {
        assert_int_equal(atomic_load(&recs[i].calls), 1);
        assert_int_equal(recs[i].rc, ERR_BUSY);
    }
    assert_int_equal(atomic_load(&recs[n].calls), 0);
    tracker_release(&t);
}

struct chain {
    struct auth_pool *pool;
    struct tracker *t;
    struct job_rec first;
    struct job_rec second;
    struct job_ctx second_ctx;
    int submit_rc;
};

/* A verify whose callback submits a rehash, as a login does when the cost changed. */
static void chain_first_done(void *arg, const struct auth_pool_result *res)
{
    struct chain *c = arg;
    c->first.rc = res->rc;
    atomic_fetch_add(&c->first.calls, 1);
    c->second_ctx = (struct job_ctx){c->t, &c->second, false};
    c->submit_rc = auth_pool_hash(c->pool, "pw", job_done, &c->second_ctx);
}

static void test_pool_callback_may_submit(void **state)
{
    (void)state;
    struct auth_pool *p = cheap_pool(1, 1, 4);
    struct tracker t;
    tracker_init(&t);
    struct chain c;
    memset(&c, 0, sizeof(c));
    c.pool = p;
    c.t = &t;
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("pw", &cheap, hash), 0);
    assert_int_equal(auth_pool_verify(p, hash, "pw", chain_first_done, &c), 0);
    wait_done(&t, 1);
    assert_int_equal(c.submit_rc, 0);
    assert_int_equal(c.first.rc, 0);
    assert_int_equal(atomic_load(&c.first.calls), 1);
    assert_int_equal(atomic_load(&c.second.calls), 1);
    assert_int_equal(auth_password_verify(c.second.hash, "pw"), 0);
    auth_pool_free(p);
    tracker_release(&t);
}

/* CPU time the process spends on runs checks (the pool thread does the work; nothing else
 * in this process is busy). CPU time, unlike wall time, does not grow when other programs
 * compete for the cores. */
static double verify_cpu_s(struct auth_pool *p, const char *hash, int runs)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    for (int i = 0; i < runs; i++) {
        int rc = auth_pool_verify_wait(p, hash, "guess", NULL);
        assert_true(rc == ERR_DENIED || rc == ERR_INVALID);
    }
    getrusage(RUSAGE_SELF, &b);
    return (double)(b.ru_utime.tv_sec - a.ru_utime.tv_sec) +
           (double)(b.ru_utime.tv_usec - a.ru_utime.tv_usec) / 1e6 +
           (double)(b.ru_stime.tv_sec - a.ru_stime.tv_sec) +
           (double)(b.ru_stime.tv_usec - a.ru_stime.tv_usec) / 1e6;
}

static void test_pool_unknown_identity_costs_a_real_check(void **state)
{
    (void)state;
    /* about 10 ms per check, so a skipped check (microseconds) stands out */
    struct auth_hash_params params = {2, 8u << 20};
    struct auth_pool_cfg cfg = {1, 1, 8, params};
    struct auth_pool *p = NULL;
    assert_int_equal(auth_pool_new(&cfg, &p), 0);
    /* the dummy is made with exactly the pool's cost */
    assert_int_equal(auth_password_needs_rehash_with(auth_pool_dummy_hash(p), &params), 0);

    char real[AUTH_HASH_LEN];
    assert_int_equal(auth_pool_hash_wait(p, "the real one", real), 0);
    double t_real = verify_cpu_s(p, real, 5);
    double t_unknown = verify_cpu_s(p, NULL, 5);
    double t_malformed = verify_cpu_s(p, "$argon2id$broken", 5);
    assert_true(t_unknown >= t_real / 4);
    assert_true(t_malformed >= t_real / 4);
    auth_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_default_is_interactive_argon2id),
        cmocka_unit_test(test_hash_verify_cheap),
        cmocka_unit_test(test_verify_malformed_hash),
        cmocka_unit_test(test_argon2i_hash_verifies_and_needs_rehash),
        cmocka_unit_test(test_bcrypt_hash_verifies_and_needs_rehash),
        cmocka_unit_test(test_password_limits_and_params),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_token_key_new),
        cmocka_unit_test(test_pool_hash_and_verify),
        cmocka_unit_test(test_pool_defaults),
        cmocka_unit_test(test_pool_new_rejects_bad_config),
        cmocka_unit_test(test_pool_callback_exactly_once),
        cmocka_unit_test(test_pool_queue_full_is_busy),
        cmocka_unit_test(test_pool_concurrency_capped),
        cmocka_unit_test(test_pool_free_cancels_queued_jobs),
        cmocka_unit_test(test_pool_callback_may_submit),
        cmocka_unit_test(test_pool_unknown_identity_costs_a_real_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
