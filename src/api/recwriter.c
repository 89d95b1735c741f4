/* recwriter.c - group commit of record creates and updates. Their handlers suspend the request
 * and queue the validated write here; ONE writer thread takes everything queued, runs it as one
 * store transaction (store_record_create_batch: a savepoint per record) and only after the
 * COMMIT returned calls each job's done(), which answers and resumes its request. So a 200
 * still means committed, and each request still gets its own 400 for its own record. */
#include <pthread.h>
#include <sys/prctl.h>

#include "api/records_int.h"

/* Jobs waiting at most; beyond, 503 with Retry-After. */
#define WRITER_QUEUE_MAX 4096
/* Writes in one transaction at most. */
#define WRITER_BATCH_MAX 256

struct api_writer {
    struct store *store;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct api_wjob *head, *tail; /* FIFO, guarded by mu */
    size_t queued;
    bool stopping; /* no new jobs; the thread commits what is queued and exits */
    bool running;  /* the thread was started and not yet joined */
    pthread_t thread;
};

static void run_batch(struct api_writer *w, struct api_wjob **jobs, size_t n)
{
    struct store_create_item items[WRITER_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = jobs[i]->item;
    int rc = store_record_create_batch(w->store, items, n);
    if (rc)
        xlog_warn("a group commit of %zu writes failed: %s", n, store_errmsg(w->store));
    for (size_t i = 0; i < n; i++) {
        jobs[i]->item = items[i];
        jobs[i]->done(jobs[i]); /* answers and resumes: not touched after this */
    }
}

static void *writer_main(void *arg)
{
    struct api_writer *w = arg;
    struct api_wjob *batch[WRITER_BATCH_MAX];
    prctl(PR_SET_NAME, "rec-writer"); /* per-thread CPU in bench/records_write.sh */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break; /* stopping, and everything queued was answered */
        size_t n = 0;
        while (w->head && n < WRITER_BATCH_MAX) {
            batch[n++] = w->head;
            w->head = w->head->next;
        }
        if (!w->head)
            w->tail = NULL;
        w->queued -= n;
        pthread_mutex_unlock(&w->mu);
        run_batch(w, batch, n);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int api__writer_submit(struct api_writer *w, struct api_wjob *job)
{
    int rc = 0;
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->stopping || !w->running) {
        rc = ERR_BUSY;
    } else if (w->queued >= WRITER_QUEUE_MAX) {
        rc = ERR_LIMIT;
    } else {
        if (w->tail)
            w->tail->next = job;
        else
            w->head = job;
        w->tail = job;
        w->queued++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int api_records_start(struct api_env *env)
{
    if (env->writer || !env->store)
        return ERR_INVALID;
    struct api_writer *w = xmalloc(sizeof(*w));
    *w = (struct api_writer){.store = env->store};
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return ERR_INTERNAL;
    }
    w->running = true;
    env->writer = w;
    return 0;
}

void api_records_stop(struct api_env *env)
{
    struct api_writer *w = env->writer;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    bool join = w->running;
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (join)
        pthread_join(w->thread, NULL); /* it commits and answers what is queued first */
    pthread_mutex_lock(&w->mu);
    w->running = false;
    pthread_mutex_unlock(&w->mu);
}

void api_records_free(struct api_env *env)
{
    struct api_writer *w = env->writer;
    if (!w)
        return;
    api_records_stop(env);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    env->writer = NULL;
}
