/* batch.c - POST /api/batch: PocketBase's batch of record creates, updates, upserts and deletes
 * in one transaction. Disabled unless settings.batch.enabled (403 "Batch requests are not
 * allowed."); at most settings.batch.maxRequests sub-requests; the body JSON, or multipart
 * with the JSON in @jsonPayload. Every sub-request is checked as its own route would check it
 * (records.c: rules as the batch's requester, @request.context "batch", the sub-request's
 * query), passwords are hashed on the pool, then the store runs them all in one transaction
 * (store_record_ops) under settings.batch.timeout: all or nothing. The answer is the array of
 * {"body","status"} in order; a refused sub-request fails the whole batch with 400 naming its
 * index, and nothing is written.
 *
 * Threads: the HTTP thread parses and checks the envelope, suspends the request and queues it
 * for ONE batch thread, which does the rest, replies and resumes. Batches run one at a time
 * (as PocketBase's do, under its single writer); the queue is bounded (503 beyond). */
#include <pthread.h>
#include <string.h>

#include "api/records_int.h"

#define BATCH_QUEUE_MAX 64
#define BATCH_DEFAULT_MAX_BODY (INT64_C(128) << 20) /* PocketBase's, when maxBodySize is 0 */
#define BATCH_URL_MAX 2000

struct batch_job {
    struct http_req *req;
    struct api_env *env;
    const json_t *requests; /* borrowed from the request's parsed body */
    struct api_uploads ups; /* its file parts, "requests.N.field" or "requests[N].field" */
    int64_t timeout_s;
    struct batch_job *next;
};

struct api_batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch_job *head, *tail; /* guarded by mu */
    size_t queued;
    bool stopping;
    bool running;
    pthread_t thread;
};

void api__batch_latch_up(struct api_batch_latch *l)
{
    pthread_mutex_lock(&l->mu);
    l->n++;
    pthread_mutex_unlock(&l->mu);
}

void api__batch_latch_down(struct api_batch_latch *l)
{
    pthread_mutex_lock(&l->mu);
    if (--l->n == 0)
        pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void api__batch_latch_wait(struct api_batch_latch *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->n > 0)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* 400 "Batch transaction failed." naming sub-request i and its own answer (takes f->data). */
static void reply_failed_at(struct http_req *req, size_t i, struct api_fail *f)
{
    json_t *resp = http_error_envelope(f->status, f->message, f->data);
    f->data = NULL;
    char idx[24];
    snprintf(idx, sizeof(idx), "%zu", i);
    json_t *data =
        json_pack("{s:{s:{s:s,s:s,s:o}}}", "requests", idx, "code", "batch_request_failed",
                  "message", "Batch request failed.", "response", resp);
    http_reply_error(req, 400, "Batch transaction failed.", data);
}

/* The record action of METHOD URL: "/api/collections/{c}/records[/{id}][?query]". false for
 * anything else. collection, id (NULL without) and query (NULL without) are in the arena. */
static bool parse_action(struct arena *a, const char *method, const char *url,
                         const char **collection, const char **id, const char **query)
{
    static const char pfx[] = "/api/collections/";
    if (strncmp(url, pfx, sizeof(pfx) - 1) != 0)
        return false;
    const char *p = url + sizeof(pfx) - 1;
    const char *q = strchr(p, '?');
    size_t path_len = q ? (size_t)(q - p) : strlen(p);
    *query = q ? arena_strdup(a, q + 1) : NULL;
    const char *slash = memchr(p, '/', path_len);
    if (!slash || slash == p)
        return false;
    *collection = http_url_decode(a, p, (size_t)(slash - p), false);
    const char *rest = slash + 1;
    size_t rest_len = path_len - (size_t)(rest - p);
    if (rest_len < 7 || strncmp(rest, "records", 7) != 0)
        return false;
    rest += 7;
    rest_len -= 7;
    *id = NULL;
    if (rest_len > 0) {
        if (rest[0] != '/' || rest_len == 1 || memchr(rest + 1, '/', rest_len - 1))
            return false;
        *id = http_url_decode(a, rest + 1, rest_len - 1, false);
    }
    bool with_id = *id != NULL;
    if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
        return !with_id;
    if (strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0)
        return with_id;
    return false;
}

/* The file parts of sub-request i, keyed by their field ("avatar", "documents+"). */
static void uploads_of(struct arena *a, const struct api_uploads *all, size_t i,
                       struct api_uploads *out)
{
    char p1[40], p2[40];
    *out = (struct api_uploads){.arena = a};
    size_t l1 = (size_t)snprintf(p1, sizeof(p1), "requests.%zu.", i);
    size_t l2 = (size_t)snprintf(p2, sizeof(p2), "requests[%zu].", i);
    for (size_t k = 0; k < all->n; k++) {
        const char *key = all->v[k].key;
        const char *field = strncmp(key, p1, l1) == 0   ? key + l1
                            : strncmp(key, p2, l2) == 0 ? key + l2
                                                        : NULL;
        if (!field)
            continue;
        const struct api_upload *u = &all->v[k];
        api__uploads_add(out, field, u->filename, u->data, u->len);
    }
}

static void run_batch(struct batch_job *job)
{
    struct http_req *req = job->req;
    struct api_env *env = job->env;
    struct arena *a = http_req_arena(req);
    size_t n = json_array_size(job->requests);
    struct api_batch_op **ops = arena_zalloc(a, n * sizeof(*ops));
    struct store_op *sops = arena_zalloc(a, n * sizeof(*sops));
    struct api_fail f = {0};
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(job->requests, i);
        const char *method = json_string_value(json_object_get(r, "method"));
        const char *url = json_string_value(json_object_get(r, "url"));
        json_t *body = json_object_get(r, "body");
        const char *collection, *id, *query;
        char m[8] = "";
        for (size_t k = 0; method && method[k] && k + 1 < sizeof(m); k++)
            m[k] = (char)(method[k] >= 'a' && method[k] <= 'z' ? method[k] - 32 : method[k]);
        if (!parse_action(a, m, url, &collection, &id, &query)) {
            f = (struct api_fail){400, "Unknown batch request action.", NULL};
            reply_failed_at(req, i, &f);
            goto out;
        }
        body = body ? json_deep_copy(body) : json_object();
        api__arena_json(a, body);
        if (env->records.max_keys && json_object_size(body) > env->records.max_keys) {
            f = (struct api_fail){400, "The request body has too many keys.", NULL};
            reply_failed_at(req, i, &f);
            goto out;
        }
        struct api_uploads mine;
        uploads_of(a, &job->ups, i, &mine);
        ops[i] =
            api__batch_op_new(req, env, arena_strdup(a, m), collection, id, body, query, &mine, &f);
        if (!ops[i]) {
            reply_failed_at(req, i, &f);
            goto out;
        }
    }
    struct api_batch_latch latch = {.n = 0};
    pthread_mutex_init(&latch.mu, NULL);
    pthread_cond_init(&latch.cv, NULL);
    int rc = api__batch_passwords(ops, n, &latch, &failed, &f);
    pthread_cond_destroy(&latch.cv);
    pthread_mutex_destroy(&latch.mu);
    if (rc) {
        reply_failed_at(req, failed, &f);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (api__batch_op_files(ops[i]) != 0) {
            http_reply_error(req, 503, "The uploaded files could not be stored.", NULL);
            goto out; /* the request's end removes the uploads */
        }
        api__batch_op_store(ops[i], &sops[i]);
    }
    /* the whole transaction under the batch timeout (checked inside SQLite) */
    store_deadline(env->store, time_mono_us() + job->timeout_s * 1000000);
    rc = store_record_ops(env->store, sops, n, &failed);
    store_deadline(env->store, 0);
    for (size_t i = 0; i < n; i++)
        api__batch_op_settle(ops[i], rc, &sops[i]);
    if (rc == ERR_TIMEOUT) {
        http_reply_error(req, 400, "Batch transaction failed: it took longer than the timeout.",
                         NULL);
    } else if (rc && failed < n) {
        api__batch_op_failed(ops[failed], &sops[failed], &f);
        reply_failed_at(req, failed, &f);
    } else if (rc) {
        xlog_error("cannot commit a batch: %s", store_errmsg(env->store));
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
    } else {
        /* committed: each answer as its route would give it (an expand past its bounds only
         * spoils that record's body, as the write itself stands) */
        json_t *out = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *res = api__batch_op_result(ops[i], &sops[i], &f);
            if (!res) {
                res =
                    json_pack("{s:o,s:i}", "body", http_error_envelope(f.status, f.message, f.data),
                              "status", f.status);
                f.data = NULL;
            }
            json_array_append_new(out, res);
        }
        http_reply_json(req, 200, out);
    }
    for (size_t i = 0; i < n; i++) {
        json_decref(sops[i].record);
        json_decref(sops[i].errors);
    }
out:
    json_decref(f.data);
    api__deadline_lift(env);
}

static void *batch_main(void *arg)
{
    struct api_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->cv, &b->mu);
        struct batch_job *job = b->head;
        if (!job)
            break;
        b->head = job->next;
        if (!b->head)
            b->tail = NULL;
        b->queued--;
        bool stopping = b->stopping;
        pthread_mutex_unlock(&b->mu);
        if (stopping) {
            http_set_header(job->req, "Retry-After", "1");
            http_reply_error(job->req, 503, "The server is stopping.", NULL);
        } else {
            run_batch(job);
        }
        http_req_resume(job->req); /* job lives in the request's arena */
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void batch_route(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct api_batcher *b = env->batcher;
    struct api_batch_settings bs;
    api__settings_batch(env, &bs);
    if (!bs.enabled || bs.max_requests <= 0) {
        http_reply_error(req, 403, "Batch requests are not allowed.", NULL);
        return;
    }
    if (!b) {
        http_reply_error(req, 503, "The data store is not available.", NULL);
        return;
    }
    int64_t max_body = bs.max_body > 0 ? bs.max_body : BATCH_DEFAULT_MAX_BODY;
    if ((int64_t)http_req_body(req).len > max_body) {
        http_reply_error(req, 413, NULL, NULL);
        return;
    }
    struct api_uploads ups;
    json_t *body = api__record_body_files(req, env, false, &ups);
    if (!body)
        return;
    const json_t *requests = json_object_get(body, "requests");
    json_t *err = NULL;
    if (!json_is_array(requests) || json_array_size(requests) == 0)
        err = json_pack("{s:{s:s,s:s}}", "requests", "code", "validation_required", "message",
                        "Cannot be blank.");
    else if ((int64_t)json_array_size(requests) > bs.max_requests)
        err = json_pack("{s:{s:s,s:s}}", "requests", "code", "validation_length_too_long",
                        "message", "Too many requests.");
    for (size_t i = 0; !err && i < json_array_size(requests); i++) {
        const json_t *r = json_array_get(requests, i);
        const char *url = json_string_value(json_object_get(r, "url"));
        const json_t *rb = json_object_get(r, "body");
        if (!json_is_object(r) || !json_is_string(json_object_get(r, "method")) || !url || !*url ||
            strlen(url) > BATCH_URL_MAX || (rb && !json_is_object(rb) && !json_is_null(rb))) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i);
            err =
                json_pack("{s:{s:{s:s,s:s}}}", "requests", idx, "code", "validation_invalid_value",
                          "message", "Each request needs a method, a url and an object body.");
        }
    }
    if (err) {
        http_reply_error(req, 400, "Invalid batch request data.", err);
        return;
    }
    struct batch_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    *job = (struct batch_job){req, env, requests, ups, bs.timeout_s > 0 ? bs.timeout_s : 3, NULL};
    http_req_suspend(req);
    pthread_mutex_lock(&b->mu);
    bool full = b->stopping || b->queued >= BATCH_QUEUE_MAX;
    if (!full) {
        if (b->tail)
            b->tail->next = job;
        else
            b->head = job;
        b->tail = job;
        b->queued++;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (full) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Too many batches are waiting; try again.", NULL);
        http_req_resume(req);
    }
}

int api_batch_start(struct api_env *env)
{
    struct api_batcher *b = xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, batch_main, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return ERR_INTERNAL;
    }
    b->running = true;
    env->batcher = b;
    return 0;
}

void api_batch_stop(struct api_env *env)
{
    struct api_batcher *b = env->batcher;
    if (!b || !b->running)
        return;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->running = false;
}

void api_batch_free(struct api_env *env)
{
    struct api_batcher *b = env->batcher;
    if (!b)
        return;
    api_batch_stop(env);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
    env->batcher = NULL;
}

void api__register_batch(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/batch", batch_route, env);
}
