/* The group-commit writer of record creates (api/recwriter.c): queued creates commit in
 * batches and each job hears its own outcome after the COMMIT; a full queue refuses with
 * ERR_LIMIT; stopping commits and answers everything queued, then refuses new jobs. The
 * store's write lock is held from another connection to keep jobs waiting. */
#include <pthread.h>
#include <time.h>

#include "api/api.h"
#include "api/records_int.h"
#include "metrics/metrics.h"
#include "store_fixture.h"

struct tjob {
    struct api_wjob w; /* first: done() gets &w */
    int rc;
    bool done;
};

static int n_done;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;

static void tjob_done(struct api_wjob *w)
{
    struct tjob *j = (struct tjob *)(void *)w;
    j->rc = w->item.rc;
    json_decref(w->item.record);
    json_decref(w->item.errors);
    pthread_mutex_lock(&done_mu);
    j->done = true;
    n_done++;
    pthread_mutex_unlock(&done_mu);
}

static int done_count(void)
{
    pthread_mutex_lock(&done_mu);
    int n = n_done;
    pthread_mutex_unlock(&done_mu);
    return n;
}

struct wfx {
    struct fx fx;
    struct store_collection *c;
    sqlite3 *other; /* holds the write lock while open in a transaction */
    struct api_env env;
    json_t *good, *bad;
};

static void wfx_open(struct wfx *w, int busy_ms)
{
    fx_open(&w->fx);
    store_close(w->fx.st);
    struct store_cfg cfg = {.dir = w->fx.dir, .busy_timeout_ms = busy_ms};
    char err[256];
    assert_int_equal(store_open(&cfg, &w->fx.st, err, sizeof(err)), 0);
    w->c = fx_coll(&w->fx, "{\"name\":\"posts\",\"fields\":[{\"name\":\"title\",\"type\":\"text\","
                           "\"min\":2}]}");
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", w->fx.dir);
    assert_int_equal(sqlite3_open(path, &w->other), SQLITE_OK);
    w->env = (struct api_env){.store = w->fx.st};
    w->good = J("{\"title\":\"fine\"}");
    w->bad = J("{\"title\":\"x\"}");
    n_done = 0;
}

static void wfx_close(struct wfx *w)
{
    sqlite3_close(w->other);
    json_decref(w->good);
    json_decref(w->bad);
    store_collection_unref(w->c);
    fx_close(&w->fx);
}

static void lock_store(struct wfx *w)
{
    assert_int_equal(sqlite3_exec(w->other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
}

static void unlock_store(struct wfx *w)
{
    assert_int_equal(sqlite3_exec(w->other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
}

static void job_init(struct wfx *w, struct tjob *j, const json_t *body)
{
    *j = (struct tjob){.rc = 1};
    j->w.item = (struct store_create_item){.c = w->c, .body = body};
    j->w.done = tjob_done;
}

static void wait_done(int n)
{
    for (int i = 0; i < 2000 && done_count() < n; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    assert_int_equal(done_count(), n);
}

/* Every job hears its own outcome: the invalid ones fail alone, the rest commit. */
static void test_batches_answer_each_job(void **state)
{
    UNUSED(state);
    struct wfx w;
    wfx_open(&w, 20000);
    assert_int_equal(api_records_start(&w.env), 0);
    assert_int_equal(api_records_start(&w.env), ERR_INVALID); /* once */
    enum { N = 300 };
    static struct tjob jobs[N];
    struct metrics_series *commits = metrics_series(
        metrics_family(METRICS_COUNTER, "tandem_store_write_transactions_total", "", "result"),
        (const char *const[]){"commit"});
    double commits_before = metrics_value(commits);
    lock_store(&w); /* so that they queue up and share transactions */
    for (int i = 0; i < N; i++) {
        job_init(&w, &jobs[i], i % 3 == 1 ? w.bad : w.good);
        assert_int_equal(api__writer_submit(w.env.writer, &jobs[i].w), 0);
    }
    unlock_store(&w);
    wait_done(N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        assert_true(jobs[i].done);
        assert_int_equal(jobs[i].rc, i % 3 == 1 ? ERR_INVALID : 0);
        ok += jobs[i].rc == 0;
    }
    assert_int_equal(fx_sql_int(&w.fx, "SELECT COUNT(*) FROM posts"), ok);
    assert_int_equal(fx_sql_int(&w.fx, "SELECT COUNT(*) FROM _outbox"), ok);
    /* grouped: the first job waits in BEGIN while the others queue; then batches of 256 */
    double tx = metrics_value(commits) - commits_before;
    assert_true(tx >= 2 && tx <= 3);
    api_records_free(&w.env);
    assert_null(w.env.writer);
    wfx_close(&w);
}

/* A full queue refuses with ERR_LIMIT (the caller answers 503) and calls no done. */
static void test_full_queue_refuses(void **state)
{
    UNUSED(state);
    struct wfx w;
    wfx_open(&w, 20000);
    assert_int_equal(api_records_start(&w.env), 0);
    enum { MAX = 5000 };
    static struct tjob jobs[MAX];
    lock_store(&w);
    int accepted = 0, rc = 0;
    for (int i = 0; i < MAX && rc == 0; i++) {
        job_init(&w, &jobs[i], w.good);
        rc = api__writer_submit(w.env.writer, &jobs[i].w);
        accepted += rc == 0;
    }
    assert_int_equal(rc, ERR_LIMIT);
    assert_true(accepted >= 4096 && accepted <= 4096 + 256); /* one batch may be taken */
    assert_false(jobs[accepted].done);
    unlock_store(&w);
    wait_done(accepted);
    assert_false(jobs[accepted].done);
    assert_int_equal(fx_sql_int(&w.fx, "SELECT COUNT(*) FROM posts"), accepted);
    api_records_free(&w.env);
    wfx_close(&w);
}

static void *unlock_later(void *arg)
{
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    unlock_store(arg);
    return NULL;
}

/* Stopping commits and answers what is queued before it returns, then refuses. */
static void test_stop_answers_queued(void **state)
{
    UNUSED(state);
    struct wfx w;
    wfx_open(&w, 20000);
    assert_int_equal(api_records_start(&w.env), 0);
    enum { N = 10 };
    struct tjob jobs[N + 1];
    lock_store(&w);
    for (int i = 0; i < N; i++) {
        job_init(&w, &jobs[i], w.good);
        assert_int_equal(api__writer_submit(w.env.writer, &jobs[i].w), 0);
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unlock_later, &w), 0);
    api_records_stop(&w.env);
    assert_int_equal(done_count(), N); /* before stop returned */
    for (int i = 0; i < N; i++)
        assert_int_equal(jobs[i].rc, 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(fx_sql_int(&w.fx, "SELECT COUNT(*) FROM posts"), N);
    job_init(&w, &jobs[N], w.good);
    assert_int_equal(api__writer_submit(w.env.writer, &jobs[N].w), ERR_BUSY);
    api_records_stop(&w.env); /* twice is fine */
    api_records_free(&w.env);
    assert_false(jobs[N].done);
    assert_int_equal(done_count(), N);
    wfx_close(&w);
}

/* A batch that cannot commit reports the store's error to every job. */
static void test_failed_batch_reaches_every_job(void **state)
{
    UNUSED(state);
    struct wfx w;
    wfx_open(&w, 50);
    assert_int_equal(api_records_start(&w.env), 0);
    struct tjob jobs[3];
    lock_store(&w);
    for (int i = 0; i < 3; i++) {
        job_init(&w, &jobs[i], i == 1 ? w.bad : w.good);
        assert_int_equal(api__writer_submit(w.env.writer, &jobs[i].w), 0);
    }
    wait_done(3);
    unlock_store(&w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(jobs[i].rc, ERR_BUSY);
    assert_int_equal(fx_sql_int(&w.fx, "SELECT COUNT(*) FROM posts"), 0);
    api_records_free(&w.env);
    wfx_close(&w);
}

/* Without a store there is nothing to start. */
static void test_start_needs_store(void **state)
{
    UNUSED(state);
    struct api_env env = {0};
    assert_int_equal(api_records_start(&env), ERR_INVALID);
    assert_null(env.writer);
    api_records_stop(&env);
    api_records_free(&env);
}

int main(void)
{
    xlog_set_level(XLOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_answer_each_job),
        cmocka_unit_test(test_full_queue_refuses),
        cmocka_unit_test(test_stop_answers_queued),
        cmocka_unit_test(test_failed_batch_reaches_every_job),
        cmocka_unit_test(test_start_needs_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
