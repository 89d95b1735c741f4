/* pool.c - the bounded password hashing pool.
 *
 * One mutex and one condition variable guard a ring of queued jobs. A worker takes a job only
 * while fewer than max_concurrent jobs run, so the number of argon2 computations (each with
 * its 64 MiB) stays capped whatever n_threads is. The lock is a leaf: it is never held while
 * hashing or while a callback runs. */
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_int.h"
#include "metrics/metrics.h"

#define DEFAULT_MAX_CONCURRENT 2
#define DEFAULT_QUEUE_CAP 256
#define MAX_THREADS 256
#define MAX_QUEUE_CAP (1u << 20)

enum job_kind { JOB_HASH, JOB_VERIFY };

struct job {
    enum job_kind kind;
    bool unknown;             /* verify: no stored hash, check the dummy */
    char *pw;                 /* owned, wiped before free */
    char hash[AUTH_HASH_LEN]; /* verify: the stored hash */
    auth_pool_done_cb cb;
    void *arg;
};

struct auth_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a job was queued, a slot freed, or stopping */
    struct job *ring;
    size_t cap, head, n;
    unsigned running, peak_running;
    uint64_t completed, rejected;
    bool stopping;

    unsigned n_threads, max_concurrent;
    pthread_t *threads;
    unsigned n_started;
    struct auth_hash_params params;
    char dummy[AUTH_HASH_LEN];

    struct metrics_series *m_hash_seconds, *m_verify_seconds, *m_rejected, *m_queued;
};

static void job_wipe(struct job *j)
{
    if (j->pw) {
        sodium_memzero(j->pw, strlen(j->pw));
        free(j->pw);
        j->pw = NULL;
    }
}

static void run_job(struct auth_pool *p, struct job *j)
{
    struct auth_pool_result res = {0};
    char out[AUTH_HASH_LEN];
    int64_t t0 = time_mono_us();

    if (j->kind == JOB_HASH) {
        res.rc = auth_password_hash_with(j->pw, &p->params, out);
        if (res.rc == 0)
            res.hash = out;
        metrics_observe(p->m_hash_seconds, (double)(time_mono_us() - t0) / 1e6);
    } else {
        if (j->unknown) {
            /* Same work as a real check; the result cannot be a match. */
            int rc = auth_password_verify(p->dummy, j->pw);
            UNUSED(rc);
            res.rc = ERR_DENIED;
        } else {
            res.rc = auth_password_verify(j->hash, j->pw);
            if (res.rc == ERR_INVALID) {
                int rc = auth_password_verify(p->dummy, j->pw);
                UNUSED(rc);
            } else if (res.rc == 0) {
                res.needs_rehash = auth_password_needs_rehash_with(j->hash, &p->params) == 1;
            }
        }
        metrics_observe(p->m_verify_seconds, (double)(time_mono_us() - t0) / 1e6);
    }
    j->cb(j->arg, &res);
    sodium_memzero(out, sizeof(out));
}

static void *worker_main(void *arg)
{
    struct auth_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && (p->n == 0 || p->running >= p->max_concurrent))
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stopping)
            break;
        struct job j = p->ring[p->head];
        memset(&p->ring[p->head], 0, sizeof(p->ring[p->head]));
        p->head = (p->head + 1) % p->cap;
        p->n--;
        p->running++;
        if (p->running > p->peak_running)
            p->peak_running = p->running;
        metrics_set(p->m_queued, (double)p->n);
        pthread_mutex_unlock(&p->lock);

        run_job(p, &j); /* the callback runs here, still inside the slot */
        job_wipe(&j);
        sodium_memzero(j.hash, sizeof(j.hash));

        pthread_mutex_lock(&p->lock);
        p->running--;
        p->completed++;
        pthread_cond_signal(&p->cond); /* a slot is free */
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int auth_pool_new(const struct auth_pool_cfg *cfg, struct auth_pool **out)
{
    int rc = auth_init();
    if (rc != 0)
        return rc;
    struct auth_pool_cfg c = *cfg;
    if (c.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.n_threads = n > 0 ? (unsigned)n : 1;
    }
    if (c.max_concurrent == 0)
        c.max_concurrent = DEFAULT_MAX_CONCURRENT;
    if (c.queue_cap == 0)
        c.queue_cap = DEFAULT_QUEUE_CAP;
    if (c.params.opslimit == 0 && c.params.memlimit == 0)
        c.params = auth_hash_params_default();
    if (c.n_threads > MAX_THREADS || c.max_concurrent > MAX_THREADS || c.queue_cap > MAX_QUEUE_CAP)
        return ERR_INVALID;

    struct auth_pool *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->cap = c.queue_cap;
    p->ring = xcalloc(p->cap, sizeof(*p->ring));
    p->n_threads = c.n_threads;
    p->max_concurrent = c.max_concurrent;
    p->params = c.params;

    struct metrics_family *hist =
        metrics_histogram("tandem_auth_password_seconds",
                          "Time to hash or check one password on the auth pool.", "op", NULL, 0);
    p->m_hash_seconds = metrics_series(hist, (const char *const[]){"hash"});
    p->m_verify_seconds = metrics_series(hist, (const char *const[]){"verify"});
    p->m_rejected = metrics_series0(
        metrics_family(METRICS_COUNTER, "tandem_auth_pool_rejected_total",
                       "Password jobs refused because the auth pool queue was full.", NULL));
    p->m_queued = metrics_series0(metrics_family(METRICS_GAUGE, "tandem_auth_pool_queued",
                                                 "Password jobs waiting for a worker.", NULL));

    /* The dummy hash, for unknown accounts: the pool's own cost, a password nobody knows. Made
     * without hashing, so a start does not spend a whole hash (and its 64 MiB) on it. */
    rc = auth_password_decoy(&p->params, p->dummy);
    if (rc != 0)
        goto fail;

    p->threads = xcalloc(p->n_threads, sizeof(*p->threads));
    for (; p->n_started < p->n_threads; p->n_started++) {
        int e = pthread_create(&p->threads[p->n_started], NULL, worker_main, p);
        if (e != 0) {
            rc = -e;
            goto fail;
        }
    }
    *out = p;
    return 0;

fail:
    auth_pool_free(p);
    return rc;
}

void auth_pool_free(struct auth_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);

    /* Every accepted job gets its callback: the ones that never ran are cancelled. */
    struct auth_pool_result res = {.rc = ERR_BUSY};
    while (p->n > 0) {
        struct job *j = &p->ring[p->head];
        j->cb(j->arg, &res);
        job_wipe(j);
        p->head = (p->head + 1) % p->cap;
        p->n--;
        p->completed++;
    }
    metrics_set(p->m_queued, 0);
    sodium_memzero(p->ring, p->cap * sizeof(*p->ring));
    free(p->ring);
    free(p->threads);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int submit(struct auth_pool *p, struct job *j)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->n == p->cap) {
        p->rejected++;
        pthread_mutex_unlock(&p->lock);
        metrics_inc(p->m_rejected, 1);
        job_wipe(j);
        return ERR_BUSY;
    }
    p->ring[(p->head + p->n) % p->cap] = *j;
    p->n++;
    metrics_set(p->m_queued, (double)p->n);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static int copy_pw(const char *pw, char **out)
{
    const char *nul = memchr(pw, '\0', AUTH_PASSWORD_MAX + 1);
    if (!nul)
        return ERR_LIMIT;
    *out = xstrndup(pw, (size_t)(nul - pw));
    return 0;
}

int auth_pool_hash(struct auth_pool *p, const char *pw, auth_pool_done_cb cb, void *arg)
{
    struct job j = {.kind = JOB_HASH, .cb = cb, .arg = arg};
    int rc = copy_pw(pw, &j.pw);
    if (rc != 0)
        return rc;
    return submit(p, &j);
}

int auth_pool_verify(struct auth_pool *p, const char *hash, const char *pw, auth_pool_done_cb cb,
                     void *arg)
{
    struct job j = {.kind = JOB_VERIFY, .cb = cb, .arg = arg, .unknown = hash == NULL};
    if (hash) {
        if (!memchr(hash, '\0', AUTH_HASH_LEN))
            return ERR_INVALID;
        strcpy(j.hash, hash);
    }
    int rc = copy_pw(pw, &j.pw);
    if (rc != 0)
        return rc;
    return submit(p, &j);
}

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    bool needs_rehash;
    char hash[AUTH_HASH_LEN];
};

static void waiter_done(void *arg, const struct auth_pool_result *res)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->rc = res->rc;
    w->needs_rehash = res->needs_rehash;
    if (res->hash)
        strcpy(w->hash, res->hash);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static int waiter_wait(struct waiter *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return w->rc;
}

static void waiter_release(struct waiter *w)
{
    sodium_memzero(w->hash, sizeof(w->hash));
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

int auth_pool_hash_wait(struct auth_pool *p, const char *pw, char out[AUTH_HASH_LEN])
{
    struct waiter w;
    waiter_init(&w);
    int rc = auth_pool_hash(p, pw, waiter_done, &w);
    if (rc == 0)
        rc = waiter_wait(&w);
    if (rc == 0)
        memcpy(out, w.hash, AUTH_HASH_LEN);
    waiter_release(&w);
    return rc;
}

int auth_pool_verify_wait(struct auth_pool *p, const char *hash, const char *pw,
                          bool *needs_rehash_out)
{
    struct waiter w;
    waiter_init(&w);
    int rc = auth_pool_verify(p, hash, pw, waiter_done, &w);
    if (rc == 0)
        rc = waiter_wait(&w);
    if (needs_rehash_out)
        *needs_rehash_out = rc == 0 && w.needs_rehash;
    waiter_release(&w);
    return rc;
}

void auth_pool_stats(struct auth_pool *p, struct auth_pool_stats *out)
{
    pthread_mutex_lock(&p->lock);
    *out = (struct auth_pool_stats){
        .queued = p->n,
        .running = p->running,
        .peak_running = p->peak_running,
        .completed = p->completed,
        .rejected = p->rejected,
        .n_threads = p->n_threads,
        .max_concurrent = p->max_concurrent,
        .queue_cap = p->cap,
    };
    pthread_mutex_unlock(&p->lock);
}

const char *auth_pool_dummy_hash(const struct auth_pool *p)
{
    return p->dummy;
}
