/* keys.c - write keys through HTTP (superusers), the resolver capture uses, and their
 * replication on Kafka: the primary publishes every key to the key topic, capture nodes
 * follow it (docs/scale-out.md, "Write keys"). */
#include <stdatomic.h>
#include <string.h>

#include "api/records_int.h"
#include "evlog/evlog.h"
#include "metrics/metrics.h"

#define KEYS_CHUNK 256       /* records a publication appends at a time */
#define KEYS_LOOK_US 1000000 /* the publisher compares the store with the topic this often */
#define KEYS_WARN_US 30000000LL
#define KEYS_FIRST_WAIT_S                                                                          \
    15 /* a starting primary waits this long for its first publication */ /* a failing publication \
                                                                             is logged at most     \
                                                                             this often */

/* Replication state. Capture node: set and table (the table's thread writes set, HTTP
 * threads read it). Primary: the publisher thread owns published; mu guards poked/stop. */
struct api_keys {
    struct api_env *env;
    struct capture_keyset *set;
    struct evlog_table *table;
    atomic_bool ready; /* the table was read to its end (set on its thread) */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool poked, stop;
    bool first_done; /* [mu] the full set was published once (or the publisher stopped) */
    pthread_cond_t first_cv;
    json_t *published; /* name -> the record the topic holds for it (JSON null: a tombstone) */
};

static void wake(struct api_keys *k, bool stop)
{
    pthread_mutex_lock(&k->mu);
    k->poked = true;
    if (stop)
        k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* A capture node takes its keys from the primary: its own store's are not used. */
static bool refuse_on_capture_node(struct http_req *req, struct api_env *env)
{
    if (!env->keys || !env->keys->set)
        return false;
    http_reply_error(
        req, 400, "This capture node takes write keys from the primary: manage them there.", NULL);
    return true;
}

/* The publisher: a key changed in the store. */
static void keys_changed(struct api_env *env)
{
    if (env->keys && !env->keys->set)
        wake(env->keys, false);
}

int api__resolve_key(void *arg, const char *key, char *name_out, size_t name_cap)
{
    struct api_env *env = arg;
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    if (strlen(key) > 256)
        return ERR_NOTFOUND;
    capture_key_hash(key, hash);
    return store_writekey_find(env->store, hash, name_out, name_cap);
}

static void create_key(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (refuse_on_capture_node(req, env))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !capture_key_name_valid(name)) {
        json_t *data = json_pack("{s:{s:s,s:s}}", "name", "code", "validation_invalid_format",
                                 "message", "Must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -.");
        http_reply_error(req, 400, "Failed to create write key.", data);
        return;
    }
    char key[CAPTURE_KEY_LEN + 1], hash[CAPTURE_KEY_HASH_LEN + 1],
        prefix[CAPTURE_KEY_PREFIX_LEN + 1];
    capture_key_new(key, hash, prefix);
    int rc = store_writekey_create(env->store, name, hash, prefix);
    if (rc == ERR_CONFLICT) {
        json_t *data = json_pack("{s:{s:s,s:s}}", "name", "code", "validation_not_unique",
                                 "message", "Value must be unique.");
        http_reply_error(req, 400, "Failed to create write key.", data);
        return;
    }
    if (rc != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    keys_changed(env);
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:s}", "name", name, "key", key, "prefix", prefix));
}

static void list_keys(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (refuse_on_capture_node(req, env))
        return;
    json_t *items = NULL;
    if (store_writekey_list(env->store, &items) != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        json_object_del(item, "hash"); /* the key topic's: the API does not show it */
    }
    http_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static void revoke_key(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (refuse_on_capture_node(req, env))
        return;
    int rc = store_writekey_revoke(env->store, http_req_param(req, "name"));
    if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc != 0)
        http_reply_error(req, 503, NULL, NULL);
    else {
        keys_changed(env);
        http_reply_empty(req, 204);
    }
}

void api__register_keys(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/capture/keys", list_keys, env);
    http_route(r, "POST", "/api/capture/keys", create_key, env);
    http_route(r, "DELETE", "/api/capture/keys/{name}", revoke_key, env);
}

/* ---- capture node: the keys come from the topic ---- */

/* The gauges of a capture node's keys (ready: 1 once the topic was read to its end). */
static void key_gauges(struct api_keys *k, bool ready)
{
    metrics_set(metrics_series0(metrics_family(
                    METRICS_GAUGE, "tandem_capture_keys_ready",
                    "1 once this capture node has read the write keys from the key topic; 0 "
                    "before, when capture answers 503.",
                    NULL)),
                ready ? 1 : 0);
    metrics_set(metrics_series0(metrics_family(
                    METRICS_GAUGE, "tandem_capture_keys",
                    "Live write keys this capture node knows from the key topic.", NULL)),
                (double)capture_keyset_count(k->set));
}

static void on_key_record(void *arg, const void *key, size_t key_len, const void *value,
                          size_t value_len)
{
    struct api_keys *k = arg;
    if (!key) { /* the table was read to its end */
        atomic_store(&k->ready, true);
        key_gauges(k, true);
        xlog_info("write keys: %zu live keys read from the key topic",
                  capture_keyset_count(k->set));
        return;
    }
    int rc = capture_keyset_apply(k->set, key, key_len, value, value_len);
    if (atomic_load(&k->ready))
        key_gauges(k, true);
    if (rc == ERR_LIMIT)
        xlog_warn("write keys: more than %d live keys on the key topic; %.*s ignored",
                  CAPTURE_KEYSET_MAX, (int)(key_len < 64 ? key_len : 64), (const char *)key);
    else if (rc != 0)
        xlog_warn("write keys: a record of the key topic that is not a key was ignored");
}

static int resolve_replicated(void *arg, const char *key, char *name_out, size_t name_cap)
{
    struct api_keys *k = arg;
    if (!atomic_load(&k->ready))
        return ERR_BUSY; /* never judge a key before the whole set is known: 503 */
    if (strlen(key) > 256)
        return ERR_NOTFOUND;
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    capture_key_hash(key, hash);
    return capture_keyset_find(k->set, hash, name_out, name_cap);
}

/* ---- primary: the store's keys go to the topic ---- */

static void on_seen_record(void *arg, const void *key, size_t key_len, const void *value,
                           size_t value_len)
{
    struct api_keys *k = arg;
    if (!key || key_len == 0 || key_len > CAPTURE_KEY_NAME_MAX)
        return;
    char name[CAPTURE_KEY_NAME_MAX + 1];
    memcpy(name, key, key_len);
    name[key_len] = '\0';
    json_object_set_new(k->published, name, value ? json_stringn(value, value_len) : json_null());
}

/* Waits up to us for a poke; false once the publisher is to stop. */
static bool publisher_wait(struct api_keys *k, int64_t us)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += us / 1000000;
    until.tv_nsec += (long)(us % 1000000) * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->poked && !k->stop)
        if (pthread_cond_timedwait(&k->cv, &k->mu, &until) != 0)
            break;
    k->poked = false;
    bool go = !k->stop;
    pthread_mutex_unlock(&k->mu);
    return go;
}

/* Appends records (value NULL: a tombstone) and waits until Kafka confirmed them all. */
static int publish_chunk(struct api_keys *k, const char *const *names, char *const *values,
                         size_t n)
{
    struct evlog_rec recs[KEYS_CHUNK];
    struct evlog_key keys[KEYS_CHUNK];
    for (size_t i = 0; i < n; i++) {
        recs[i] = (struct evlog_rec){values[i], values[i] ? strlen(values[i]) : 0};
        keys[i] = (struct evlog_key){names[i], strlen(names[i])};
    }
    uint64_t first = 0, ticket = 0;
    int rc = evlog_append_keyed(k->env->log, EVLOG_KEYS_TOPIC, recs, keys, n, &first, &ticket);
    if (ticket) { /* after a failure too: records produced before it may still be sent */
        int durable = evlog_wait_durable(k->env->log, ticket);
        if (rc == 0)
            rc = durable;
    }
    return rc;
}

/* Revocation is final (capture nodes hold to it): a key the topic says is revoked but the
 * store has live - a backup from before the revocation was restored - is revoked again. */
static int keep_revoked(struct api_keys *k)
{
    json_t *items = NULL;
    int rc = store_writekey_list(k->env->store, &items);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *hash = json_string_value(json_object_get(it, "hash"));
        const char *revoked = json_string_value(json_object_get(it, "revoked"));
        const char *text = name ? json_string_value(json_object_get(k->published, name)) : NULL;
        json_t *on_topic = text ? json_loads(text, 0, NULL) : NULL;
        const char *t_hash = json_string_value(json_object_get(on_topic, "hash"));
        const char *t_revoked = json_string_value(json_object_get(on_topic, "revoked"));
        if (rc == 0 && hash && revoked && !revoked[0] && t_hash && strcmp(t_hash, hash) == 0 &&
            t_revoked && t_revoked[0]) {
            xlog_warn("write keys: %s was revoked on the key topic (%s) but is live in the "
                      "store (a restored backup?): revoked again",
                      name, t_revoked);
            rc = store_writekey_revoke(k->env->store, name);
            if (rc == ERR_NOTFOUND)
                rc = 0;
        }
        json_decref(on_topic);
    }
    json_decref(items);
    return rc;
}

/* Publishes what differs between the store and the topic (everything when all). */
static int publish(struct api_keys *k, bool all, size_t *n_out)
{
    *n_out = 0;
    json_t *items = NULL;
    int rc = all ? keep_revoked(k) : 0;
    if (rc == 0)
        rc = store_writekey_list(k->env->store, &items);
    if (rc != 0)
        return rc;
    json_t *want = json_object(); /* name -> record text, as the topic should hold it */
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *hash = json_string_value(json_object_get(it, "hash"));
        char *text = capture_key_record(name ? name : "", hash ? hash : "",
                                        json_string_value(json_object_get(it, "prefix")),
                                        json_string_value(json_object_get(it, "created")),
                                        json_string_value(json_object_get(it, "revoked")));
        if (text)
            json_object_set_new(want, name, json_string(text));
        free(text);
    }
    json_decref(items);
    /* the changes: keys whose record differs, and names the topic has that the store lost */
    size_t cap = json_object_size(want) + json_object_size(k->published) + 1, n = 0;
    const char **names = xcalloc(cap, sizeof(*names));
    char **values = xcalloc(cap, sizeof(*values));
    const char *name;
    json_t *v;
    json_object_foreach(want, name, v)
    {
        json_t *had = json_object_get(k->published, name);
        if (all || !json_is_string(had) || strcmp(json_string_value(had), json_string_value(v)))
            names[n] = name, values[n++] = (char *)json_string_value(v);
    }
    json_object_foreach(k->published, name, v)
    {
        if (!json_object_get(want, name) && (all || !json_is_null(v)))
            names[n] = name, values[n++] = NULL;
    }
    for (size_t at = 0; rc == 0 && at < n; at += KEYS_CHUNK)
        rc = publish_chunk(k, names + at, values + at, n - at < KEYS_CHUNK ? n - at : KEYS_CHUNK);
    if (rc == 0) {
        for (size_t j = 0; j < n; j++)
            json_object_set_new(k->published, names[j],
                                values[j] ? json_string(values[j]) : json_null());
        *n_out = n;
    }
    free(names);
    free(values);
    json_decref(want);
    return rc;
}

static void first_published(struct api_keys *k)
{
    pthread_mutex_lock(&k->mu);
    k->first_done = true;
    pthread_cond_broadcast(&k->first_cv);
    pthread_mutex_unlock(&k->mu);
}

static void *publisher_main(void *arg)
{
    struct api_keys *k = arg;
    /* first what the topic holds, so names the store no longer has get their tombstone */
    struct evlog_table *seen = NULL;
    int64_t last_warn = 0;
    while (!seen && publisher_wait(k, 0)) {
        if (evlog_table_open(k->env->log, EVLOG_KEYS_TOPIC, on_seen_record, k, &seen) != 0) {
            xlog_error("write keys: cannot read the key topic: %s", evlog_errmsg(k->env->log));
            if (!publisher_wait(k, KEYS_LOOK_US))
                break;
        }
    }
    while (seen && !evlog_table_ready(seen) && !evlog_table_missing(seen))
        if (!publisher_wait(k, 100000))
            break;
    bool missing = seen && !evlog_table_ready(seen);
    evlog_table_close(seen); /* joins its thread: published is this thread's from here */
    pthread_mutex_lock(&k->mu);
    bool stopping = k->stop;
    pthread_mutex_unlock(&k->mu);
    if (missing && !stopping)
        xlog_warn("write keys: the key topic does not exist; publishing to it anyway (create it "
                  "compacted, see docs/scale-out.md)");
    bool all = true;
    while (!stopping) {
        size_t n = 0;
        int rc = publish(k, all, &n);
        if (rc == 0) {
            if (n)
                xlog_info("write keys: %zu record%s published to the key topic", n,
                          n == 1 ? "" : "s");
            if (all)
                first_published(k);
            all = false;
        } else if (time_mono_us() - last_warn > KEYS_WARN_US) {
            last_warn = time_mono_us();
            xlog_warn("write keys: cannot publish to the key topic: %s: %s; retrying", err_str(rc),
                      evlog_errmsg(k->env->log));
        }
        stopping = !publisher_wait(k, KEYS_LOOK_US);
    }
    first_published(k); /* no one waits for what will not come */
    return NULL;
}

/* Waits (bounded) until the full set was published once, so that when a primary says it is
 * listening, capture nodes started after it find its keys on the topic. */
static bool first_wait(struct api_keys *k)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += KEYS_FIRST_WAIT_S;
    pthread_mutex_lock(&k->mu);
    while (!k->first_done)
        if (pthread_cond_timedwait(&k->first_cv, &k->mu, &until) != 0)
            break;
    bool done = k->first_done;
    pthread_mutex_unlock(&k->mu);
    return done;
}

int api_keys_start(struct api_env *env, bool capture_only)
{
    if (!env->log || strcmp(evlog_backend_name(env->log), "kafka") != 0)
        return 0;
    struct api_keys *k = xcalloc(1, sizeof(*k));
    k->env = env;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    pthread_cond_init(&k->first_cv, NULL);
    atomic_init(&k->ready, false);
    int rc = 0;
    if (capture_only) {
        k->set = capture_keyset_new();
        key_gauges(k, false);
        rc = evlog_table_open(env->log, EVLOG_KEYS_TOPIC, on_key_record, k, &k->table);
        if (rc == 0) {
            env->resolve_key = resolve_replicated;
            env->resolve_arg = k;
        }
    } else if (env->store) {
        k->published = json_object();
        int e = pthread_create(&k->thread, NULL, publisher_main, k);
        rc = e ? -e : 0;
        k->started = e == 0;
        if (e == 0 && !first_wait(k))
            xlog_warn("write keys: not published to the key topic within %d s of the start; "
                      "capture nodes learn them once they are",
                      KEYS_FIRST_WAIT_S);
    }
    if (rc != 0) {
        env->keys = k;
        api_keys_stop(env);
        return rc;
    }
    env->keys = k;
    return 0;
}

void api_keys_stop(struct api_env *env)
{
    struct api_keys *k = env->keys;
    if (!k)
        return;
    if (k->started) {
        wake(k, true);
        pthread_join(k->thread, NULL);
    }
    evlog_table_close(k->table);
    capture_keyset_free(k->set);
    json_decref(k->published);
    pthread_cond_destroy(&k->first_cv);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    if (env->resolve_arg == k) {
        env->resolve_key = NULL;
        env->resolve_arg = NULL;
    }
    free(k);
    env->keys = NULL;
}
