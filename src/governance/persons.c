/* persons.c - person deletion jobs and the suppression list (docs/governance.md "Person
 * deletion").
 *
 * A job is a system row of kind "person_delete" whose value is the whole job. The worker runs
 * one job at a time through its phases, storing the job after each one:
 *
 *   resolve    wait until the loader has loaded the log as it is now, then find every distinct
 *              id linked to the request's ids in the warehouse; suppress them when asked
 *   log        erase their records from the "events" topic below the log's end now (logEnd)
 *   warehouse  wait until the loader has loaded past logEnd (it skips erased records), then
 *              delete their events and identity rows from the warehouse, bytes included
 *   records    delete the records of the configured relations that point at the user, then
 *              the auth record, when asked (the store's write path: cascades, change capture,
 *              file cleanup), listing each in the job before it goes; checkpoint the store's WAL
 *   history    once the loader has loaded those deletions, erase the records' change events
 *              from the "changes" topic and their rows from the warehouse's changes table and
 *              mirrors, bytes included
 *   done
 *
 * Every phase may run again after a crash with the same result, so a restart resumes a job
 * at the phase it had reached. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "evlog/evlog.h"
#include "governance/audit.h"
#include "governance/gov_int.h"
#include "pipeline/pipeline.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

#define KIND_JOB "person_delete"
#define KIND_SUPPRESS "person_suppress"
#define LOADER_CONSUMER "warehouse-events"
#define CHANGES_CONSUMER "warehouse-changes"
#define MAX_OPEN_JOBS 100 /* queued or running at once; more: 429-like refusal */
#define MAX_RELATIONS 20  /* "relations" of one request */
#define MAX_RECORDS 10000 /* app records one job deletes (their history is erased by id) */
#define RECORD_BATCH 100  /* records found and deleted between two stores of the job */

/* ---- the suppression set ---- */

static uint64_t hash_of(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Under the write lock. */
static void sset_insert(struct gov__sset *s, char *key)
{
    size_t i = (size_t)hash_of(key, strlen(key)) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], key) == 0) {
            free(key);
            return;
        }
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = key;
    s->n++;
}

void gov__sset_add(struct gov__sset *s, const char *id)
{
    pthread_rwlock_wrlock(&s->lock);
    if ((s->n + 1) * 2 > s->cap) {
        size_t old_cap = s->cap;
        char **old = s->slots;
        s->cap = s->cap ? s->cap * 2 : 64;
        s->slots = xcalloc(s->cap, sizeof(*s->slots));
        s->n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                sset_insert(s, old[i]);
        free(old);
    }
    sset_insert(s, xstrdup(id));
    atomic_store(&s->count, s->n);
    pthread_rwlock_unlock(&s->lock);
}

static bool sset_has(struct gov__sset *s, const char *id, size_t len)
{
    bool found = false;
    pthread_rwlock_rdlock(&s->lock);
    if (s->cap) {
        size_t i = (size_t)hash_of(id, len) & (s->cap - 1);
        while (s->slots[i] && !found) {
            found = strlen(s->slots[i]) == len && memcmp(s->slots[i], id, len) == 0;
            i = (i + 1) & (s->cap - 1);
        }
    }
    pthread_rwlock_unlock(&s->lock);
    return found;
}

bool gov_suppress_any(struct gov *g)
{
    return g && atomic_load_explicit(&g->supp.count, memory_order_relaxed) > 0;
}

bool gov_suppressed(struct gov *g, const char *id, size_t len)
{
    if (!gov_suppress_any(g) || !id)
        return false;
    return sset_has(&g->supp, id, len);
}

/* Stores the ids as suppressed (one system row each) and adds them to the set. */
static int suppress_ids(struct gov *g, const json_t *ids, const char *job_id)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        json_t *val = json_pack("{s:s}", "job", job_id);
        struct store_sysrow row = {.kind = KIND_SUPPRESS, .id = json_string_value(v), .value = val};
        int rc = store_sys_put(g->cfg.store, &row);
        json_decref(val);
        if (rc != 0)
            return rc;
        gov__sset_add(&g->supp, json_string_value(v));
    }
    return 0;
}

static int suppress_load(struct gov *g)
{
    json_t *rows = NULL;
    int rc = store_sys_list(g->cfg.store, KIND_SUPPRESS, NULL, NULL, 0, SIZE_MAX, &rows);
    if (rc != 0)
        return rc;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        if (id)
            gov__sset_add(&g->supp, id);
    }
    json_decref(rows);
    return 0;
}

/* ---- ids ---- */

bool gov__id_valid(const char *s, size_t len)
{
    return s && len > 0 && len <= GOV_MAX_ID_BYTES && strlen(s) == len;
}

void gov__sql_list(struct buf *b, const json_t *ids)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        buf_puts(b, i ? ",'" : "'");
        for (const char *p = json_string_value(v); *p; p++) {
            if (*p == '\'')
                buf_putc(b, '\'');
            buf_putc(b, *p);
        }
        buf_putc(b, '\'');
    }
}

int gov__resolve(struct wh_conn *c, const json_t *seeds, json_t **ids_out, char *err,
                 size_t err_len)
{
    struct buf sql, l;
    struct wh_result res;
    buf_init(&sql);
    buf_init(&l);
    wh_result_init(&res);
    gov__sql_list(&l, seeds);
    const char *s = buf_cstr(&l);
    buf_printf(&sql,
               "WITH users AS (SELECT user_id AS u FROM events WHERE user_id IN (%s) OR "
               "((anonymous_id IN (%s) OR previous_id IN (%s)) AND user_id IS NOT NULL)), "
               "ids AS (SELECT unnest([%s]) AS id UNION SELECT u FROM users "
               "UNION SELECT anonymous_id FROM events WHERE user_id IN (SELECT u FROM users) "
               "AND anonymous_id IS NOT NULL "
               "UNION SELECT previous_id FROM events WHERE user_id IN (SELECT u FROM users) "
               "AND previous_id IS NOT NULL) SELECT id FROM ids ORDER BY id",
               s, s, s, s);
    struct wh_query q = {.sql = buf_cstr(&sql), .max_rows = GOV_MAX_IDS + 1};
    int rc = wh_query(c, &q, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot find the linked ids: %s", wh_errmsg(c));
        goto out;
    }
    if (res.n_rows > GOV_MAX_IDS || res.truncated) {
        snprintf(err, err_len, "more than %d distinct ids are linked to this person", GOV_MAX_IDS);
        rc = ERR_LIMIT;
        goto out;
    }
    json_t *ids = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(res.rows, i, row)
    {
        json_t *v = json_array_get(row, 0);
        if (json_is_string(v) && gov__id_valid(json_string_value(v), json_string_length(v)))
            json_array_append(ids, v);
    }
    *ids_out = ids;
out:
    wh_result_release(&res);
    buf_release(&sql);
    buf_release(&l);
    return rc;
}

/* ---- jobs ---- */

static json_t *now_json(void)
{
    char t[TIME_PB_LEN];
    time_format_pb(time_now_us(), t);
    return json_string(t);
}

static int job_store(struct gov *g, json_t *job)
{
    json_object_set_new(job, "updated", now_json());
    struct store_sysrow row = {
        .kind = KIND_JOB,
        .id = json_string_value(json_object_get(job, "id")),
        .value = job,
    };
    return store_sys_put(g->cfg.store, &row);
}

static bool bool_opt(const json_t *req, const char *key, bool *out, char *err, size_t err_len)
{
    json_t *v = json_object_get(req, key);
    *out = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v)) {
        snprintf(err, err_len, "%s: must be true or false", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* One relation name "collection.field": a relation field (single or multiple) of a base or
 * auth collection whose target is an auth collection, auth_id's when given. On success, its
 * name with the collection's current name is appended to out (when not NULL) and 0 returned;
 * otherwise ERR_INVALID or ERR_NOTFOUND (no such collection) with a message naming what. */
static int resolve_relation(struct gov *g, const json_t *v, const struct store_collection *auth,
                            json_t *out, char *err, size_t err_len)
{
    const char *s = json_string_value(v);
    const char *dot = s ? strchr(s, '.') : NULL;
    if (!dot || dot == s || !dot[1] || json_string_length(v) > 200) {
        snprintf(err, err_len, "\"collection.field\"");
        return ERR_INVALID;
    }
    char cname[201];
    snprintf(cname, sizeof(cname), "%.*s", (int)(dot - s), s);
    struct store_collection *c = NULL, *target = NULL;
    if (store_collection_get(g->cfg.store, cname, &c) != 0) {
        snprintf(err, err_len, "no collection \"%s\"", cname);
        return ERR_NOTFOUND;
    }
    const struct store_field *fd = NULL;
    for (size_t f = 0; f < c->n_fields && !fd; f++)
        if (strcmp(c->fields[f].name, dot + 1) == 0)
            fd = &c->fields[f];
    bool ok = c->type != STORE_COLLECTION_VIEW && fd && fd->type == STORE_FIELD_RELATION &&
              fd->collection_id;
    if (ok && auth)
        ok = strcmp(fd->collection_id, auth->id) == 0;
    else if (ok)
        ok = store_collection_get(g->cfg.store, fd->collection_id, &target) == 0 &&
             target->type == STORE_COLLECTION_AUTH;
    if (target)
        store_collection_unref(target);
    if (!ok)
        snprintf(err, err_len,
                 "\"%s\": not a relation field of a base or auth collection pointing at %s%s%s", s,
                 auth ? "\"" : "an auth collection", auth ? auth->name : "", auth ? "\"" : "");
    else if (out)
        json_array_append_new(out, json_sprintf("%s.%s", c->name, fd->name));
    store_collection_unref(c);
    return ok ? 0 : ERR_INVALID;
}

int gov_check_relations(struct gov *g, const json_t *rels, char *err, size_t err_len)
{
    if (!json_is_array(rels) || json_array_size(rels) > MAX_RELATIONS) {
        snprintf(err, err_len, "an array of at most %d \"collection.field\" names", MAX_RELATIONS);
        return ERR_INVALID;
    }
    size_t i;
    json_t *v;
    json_array_foreach(rels, i, v)
    {
        char msg[300];
        if (resolve_relation(g, v, NULL, NULL, msg, sizeof(msg)) != 0) {
            snprintf(err, err_len, "[%zu]: %s", i, msg);
            return ERR_INVALID;
        }
    }
    return 0;
}

/* Checks the relations of a request for a user of the auth collection auth_name and appends
 * each, as "name.field" with the collection's current name, to out. given: the request's
 * "relations" (each must be right); else dflt, the settings' list, of which the relations to
 * this auth collection are taken (the others, and those gone since, are left out). */
static bool check_relations(struct gov *g, const json_t *given, const json_t *dflt,
                            const char *auth_name, bool has_uid, json_t *out, char *err,
                            size_t err_len)
{
    const json_t *rels = given ? given : dflt;
    if (!json_is_array(rels) || json_array_size(rels) > MAX_RELATIONS) {
        if (!given)
            return true; /* no usable default */
        snprintf(err, err_len, "relations: an array of at most %d \"collection.field\" names",
                 MAX_RELATIONS);
        return false;
    }
    if (json_array_size(rels) == 0 || (!given && !has_uid))
        return true;
    if (!has_uid) {
        snprintf(err, err_len, "relations: needs userId (the auth record's id)");
        return false;
    }
    struct store_collection *auth = NULL;
    if (store_collection_get(g->cfg.store, auth_name, &auth) != 0 ||
        auth->type != STORE_COLLECTION_AUTH) {
        snprintf(err, err_len, "collection: \"%s\" is not an auth collection", auth_name);
        if (auth)
            store_collection_unref(auth);
        return false;
    }
    bool ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(rels, i, v)
    {
        char msg[300];
        if (resolve_relation(g, v, auth, out, msg, sizeof(msg)) != 0 && given) {
            snprintf(err, err_len, "relations[%zu]: %s", i, msg);
            ok = false;
            break;
        }
    }
    store_collection_unref(auth);
    return ok;
}

int gov_delete_submit(struct gov *g, const json_t *req, const json_t *default_relations,
                      json_t **job_out, char *err, size_t err_len)
{
    *job_out = NULL;
    if (!json_is_object(req)) {
        snprintf(err, err_len, "the body must be a JSON object");
        return ERR_INVALID;
    }
    json_t *dids = json_object_get(req, "distinctIds");
    json_t *uid = json_object_get(req, "userId");
    if (uid && json_is_null(uid))
        uid = NULL;
    if (dids && json_is_null(dids))
        dids = NULL;
    if (!dids == !uid) {
        snprintf(err, err_len, "give either distinctIds (an array of strings) or userId");
        return ERR_INVALID;
    }
    json_t *seeds = json_array();
    if (uid) {
        if (!json_is_string(uid) ||
            !gov__id_valid(json_string_value(uid), json_string_length(uid))) {
            snprintf(err, err_len, "userId: a string of 1 to %d bytes", GOV_MAX_ID_BYTES);
            goto invalid;
        }
        json_array_append(seeds, uid);
    } else {
        if (!json_is_array(dids) || json_array_size(dids) == 0 ||
            json_array_size(dids) > GOV_MAX_IDS) {
            snprintf(err, err_len, "distinctIds: an array of 1 to %d strings", GOV_MAX_IDS);
            goto invalid;
        }
        size_t i;
        json_t *v;
        json_array_foreach(dids, i, v)
        {
            if (!json_is_string(v) || !gov__id_valid(json_string_value(v), json_string_length(v))) {
                snprintf(err, err_len, "distinctIds[%zu]: a string of 1 to %d bytes", i,
                         GOV_MAX_ID_BYTES);
                goto invalid;
            }
            json_array_append(seeds, v);
        }
    }
    bool delete_user, suppress;
    if (!bool_opt(req, "deleteUser", &delete_user, err, err_len) ||
        !bool_opt(req, "suppress", &suppress, err, err_len))
        goto invalid;
    json_t *coll = json_object_get(req, "collection");
    if (coll && !json_is_null(coll) &&
        (!json_is_string(coll) || json_string_length(coll) == 0 ||
         json_string_length(coll) > 100)) {
        snprintf(err, err_len, "collection: the name or id of an auth collection");
        goto invalid;
    }
    const char *coll_name = coll && json_is_string(coll) ? json_string_value(coll) : "users";
    if (delete_user && !uid) {
        snprintf(err, err_len, "deleteUser: needs userId (the auth record's id)");
        goto invalid;
    }
    json_t *rels = json_object_get(req, "relations");
    if (rels && json_is_null(rels))
        rels = NULL;
    json_t *rel_names = json_array();
    if (!check_relations(g, rels, default_relations, coll_name, !!uid, rel_names, err, err_len)) {
        json_decref(rel_names);
        goto invalid;
    }
    if (delete_user) {
        struct store_collection *c = NULL;
        if (store_collection_get(g->cfg.store, coll_name, &c) != 0) {
            snprintf(err, err_len, "collection: no collection \"%s\"", coll_name);
            json_decref(rel_names);
            goto invalid;
        }
        bool auth = c->type == STORE_COLLECTION_AUTH;
        store_collection_unref(c);
        if (!auth) {
            snprintf(err, err_len, "collection: \"%s\" is not an auth collection", coll_name);
            json_decref(rel_names);
            goto invalid;
        }
    }
    int64_t n_open = 0;
    json_t *rows = NULL;
    if (store_sys_list(g->cfg.store, KIND_JOB, NULL, NULL, 0, SIZE_MAX, &rows) == 0) {
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r)
        {
            const char *st =
                json_string_value(json_object_get(json_object_get(r, "value"), "status"));
            n_open += st && (strcmp(st, "queued") == 0 || strcmp(st, "running") == 0);
        }
        json_decref(rows);
    }
    if (n_open >= MAX_OPEN_JOBS) {
        json_decref(seeds);
        json_decref(rel_names);
        snprintf(err, err_len, "%d deletions are already waiting: try again later", MAX_OPEN_JOBS);
        return ERR_BUSY;
    }

    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    char id[17];
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    json_t *request =
        json_pack("{s:o,s:O?,s:b,s:s,s:o,s:b}", "distinctIds",
                  uid ? json_array() : json_copy(seeds), "userId", uid, "deleteUser", delete_user,
                  "collection", coll_name, "relations", rel_names, "suppress", suppress);
    json_t *job =
        json_pack("{s:s,s:s,s:s,s:o,s:o,s:n,s:n,s:[],s:{s:I,s:I,s:b,s:I,s:I,s:I},s:n,s:o}", "id",
                  id, "status", "queued", "phase", "resolve", "request", request, "distinctIds",
                  seeds, "logEnd", "changesEnd", "records", "erased", "log", (json_int_t)0,
                  "warehouse", (json_int_t)0, "user", 0, "records", (json_int_t)0, "changesLog",
                  (json_int_t)0, "changesWarehouse", (json_int_t)0, "error", "created", now_json());
    int rc = job_store(g, job);
    if (rc != 0) {
        json_decref(job);
        snprintf(err, err_len, "cannot store the job: %s", store_errmsg(g->cfg.store));
        return rc;
    }
    pthread_mutex_lock(&g->mu);
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    *job_out = job;
    return 0;
invalid:
    json_decref(seeds);
    return ERR_INVALID;
}

int gov_delete_get(struct gov *g, const char *id, json_t **out)
{
    json_t *row = NULL;
    int rc = store_sys_get(g->cfg.store, KIND_JOB, id, &row);
    if (rc != 0)
        return rc;
    *out = json_incref(json_object_get(row, "value"));
    json_decref(row);
    return *out ? 0 : ERR_NOTFOUND;
}

/* ---- the worker ---- */

static bool stopping(struct gov *g)
{
    pthread_mutex_lock(&g->mu);
    bool s = g->stop;
    pthread_mutex_unlock(&g->mu);
    return s;
}

/* Sleeps up to ms unless stopping; returns whether stopping. */
static bool nap(struct gov *g, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&g->mu);
    if (!g->stop)
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    bool s = g->stop;
    pthread_mutex_unlock(&g->mu);
    return s;
}

/* Waits until the loader's consumer has committed every offset of its topic below target.
 * ERR_BUSY when stopping. */
static int wait_loaded(struct gov *g, const char *consumer, uint64_t target)
{
    for (;;) {
        struct pipeline_status st[8];
        size_t n = pipeline_status(g->cfg.pipeline, st, ARRAY_LEN(st));
        for (size_t i = 0; i < n && i < ARRAY_LEN(st); i++)
            if (strcmp(st[i].consumer, consumer) == 0 && st[i].ready && st[i].committed >= target)
                return 0;
        if (nap(g, 100))
            return ERR_BUSY;
    }
}

struct match_ctx {
    const json_t *ids;
    struct gov *g;
};

/* Finds "key":"value" members at the top level of a canonical record cheaply: parse it. */
static bool record_matches(void *arg, const struct evlog_rec_view *rec)
{
    struct match_ctx *m = arg;
    json_t *doc = json_loadb((const char *)rec->data, rec->len, 0, NULL);
    if (!doc)
        return false;
    static const char *const keys[] = {"userId", "anonymousId", "previousId"};
    bool hit = false;
    for (size_t k = 0; k < ARRAY_LEN(keys) && !hit; k++) {
        json_t *v = json_object_get(doc, keys[k]);
        if (!json_is_string(v))
            continue;
        size_t i;
        json_t *id;
        json_array_foreach(m->ids, i, id)
        {
            if (json_equal(id, v)) {
                hit = true;
                break;
            }
        }
    }
    json_decref(doc);
    return hit;
}

static int phase_resolve(struct gov *g, struct wh_conn *c, json_t *job, char *err, size_t err_len)
{
    uint64_t end = 0;
    int rc = evlog_end_offset(g->cfg.log, "events", &end);
    if (rc == 0)
        rc = wait_loaded(g, LOADER_CONSUMER, end);
    if (rc != 0)
        return rc;
    json_t *req = json_object_get(job, "request");
    json_t *seeds = json_object_get(job, "distinctIds");
    json_t *ids = NULL;
    rc = gov__resolve(c, seeds, &ids, err, err_len);
    if (rc != 0)
        return rc;
    json_object_set_new(job, "distinctIds", ids);
    if (json_is_true(json_object_get(req, "suppress"))) {
        rc = suppress_ids(g, ids, json_string_value(json_object_get(job, "id")));
        if (rc != 0) {
            snprintf(err, err_len, "cannot store the suppression list: %s",
                     store_errmsg(g->cfg.store));
            return rc;
        }
    }
    return 0;
}

static int phase_log(struct gov *g, json_t *job, char *err, size_t err_len)
{
    uint64_t end = 0, n = 0;
    json_t *le = json_object_get(job, "logEnd");
    int rc = 0;
    if (json_is_integer(le)) {
        end = (uint64_t)json_integer_value(le); /* resumed: the same range as before */
    } else {
        rc = evlog_end_offset(g->cfg.log, "events", &end);
        if (rc != 0)
            goto fail;
        json_object_set_new(job, "logEnd", json_integer((json_int_t)end));
        rc = job_store(g, job);
        if (rc != 0)
            goto fail;
    }
    struct match_ctx m = {.ids = json_object_get(job, "distinctIds"), .g = g};
    rc = evlog_erase(g->cfg.log, "events", end, record_matches, &m, &n);
    if (rc != 0)
        goto fail;
    json_t *er = json_object_get(job, "erased");
    json_object_set_new(
        er, "log", json_integer(json_integer_value(json_object_get(er, "log")) + (json_int_t)n));
    return 0;
fail:
    snprintf(err, err_len, "cannot erase from the event log: %s", evlog_errmsg(g->cfg.log));
    return rc;
}

static int phase_warehouse(struct gov *g, struct wh_conn *c, json_t *job, char *err, size_t err_len)
{
    uint64_t end = (uint64_t)json_integer_value(json_object_get(job, "logEnd"));
    int rc = wait_loaded(g, LOADER_CONSUMER, end);
    if (rc != 0)
        return rc;
    json_t *ids = json_object_get(job, "distinctIds");
    size_t n = json_array_size(ids);
    const char **v = xcalloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_string_value(json_array_get(ids, i));
    uint64_t deleted = 0;
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = wh_erase_persons(c, v, n, &deleted);
        if (rc != ERR_BUSY || nap(g, 200))
            break;
    }
    free(v);
    if (rc != 0) {
        snprintf(err, err_len, "cannot delete from the warehouse: %s", wh_errmsg(c));
        return rc;
    }
    json_t *er = json_object_get(job, "erased");
    json_object_set_new(
        er, "warehouse",
        json_integer(json_integer_value(json_object_get(er, "warehouse")) + (json_int_t)deleted));
    return 0;
}

static void erased_add(json_t *job, const char *key, int64_t n)
{
    json_t *er = json_object_get(job, "erased");
    json_object_set_new(er, key, json_integer(json_integer_value(json_object_get(er, key)) + n));
}

/* The key "collectionId/recordId" of a record in a job's set (freed by the caller). */
static char *rec_key(const char *coll_id, const char *id)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s/%s", coll_id ? coll_id : "", id ? id : "");
    char *k = xstrdup(buf_cstr(&b));
    buf_release(&b);
    return k;
}

/* The job's list of app records ([collection id, record id], each listed before it is deleted)
 * and, in keys, the same as "collectionId/recordId" members. */
static json_t *job_records(json_t *job, json_t *keys)
{
    json_t *recs = json_object_get(job, "records");
    if (!json_is_array(recs)) {
        recs = json_array();
        json_object_set_new(job, "records", recs);
    }
    size_t i;
    json_t *r;
    json_array_foreach(recs, i, r)
    {
        char *k = rec_key(json_string_value(json_array_get(r, 0)),
                          json_string_value(json_array_get(r, 1)));
        json_object_set_new(keys, k, json_true());
        free(k);
    }
    return recs;
}

/* Lists one record in the job (once). false past MAX_RECORDS. */
static bool record_list_add(json_t *recs, json_t *keys, const char *coll_id, const char *id)
{
    char *k = rec_key(coll_id, id);
    bool ok = true;
    if (!json_object_get(keys, k)) {
        ok = json_array_size(recs) < MAX_RECORDS;
        if (ok) {
            json_object_set_new(keys, k, json_true());
            json_array_append_new(recs, json_pack("[s,s]", coll_id, id));
        }
    }
    free(k);
    return ok;
}

/* Deletes one record through the store's write path (cascades, the outbox, file cleanup).
 * Gone already: fine. */
static int delete_one(struct gov *g, const struct store_collection *c, const char *id, int64_t *n,
                      char *err, size_t err_len)
{
    int rc = store_record_delete(g->cfg.store, c, id);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc == ERR_CONFLICT)
        snprintf(err, err_len,
                 "cannot delete %s record %s: a required relation still references it (list "
                 "that relation in \"relations\" too)",
                 c->name, id);
    else if (rc != 0)
        snprintf(err, err_len, "cannot delete %s record %s: %s", c->name, id,
                 store_errmsg(g->cfg.store));
    else
        (*n)++;
    return rc;
}

/* The records of one configured relation ("collection.field") that point at uid. */
static int delete_related(struct gov *g, json_t *job, json_t *recs, json_t *keys, const char *rel,
                          const char *uid, char *err, size_t err_len)
{
    const char *dot = strchr(rel, '.');
    char cname[201];
    snprintf(cname, sizeof(cname), "%.*s", dot ? (int)(dot - rel) : 0, rel);
    struct store_collection *c = NULL;
    if (!dot || store_collection_get(g->cfg.store, cname, &c) != 0)
        return 0; /* the collection went since the request: nothing points at the user there */
    int rc = 0;
    /* bounded: every round lists new records (or finds none), and a job lists MAX_RECORDS */
    for (int round = 0; rc == 0 && !stopping(g) && round <= MAX_RECORDS / RECORD_BATCH + 1;
         round++) {
        json_t *found = NULL;
        rc = store_record_referencing(g->cfg.store, c, dot + 1, uid, RECORD_BATCH, &found);
        if (rc != 0) {
            snprintf(err, err_len, "cannot find the records of %s: %s", rel,
                     store_errmsg(g->cfg.store));
            break;
        }
        size_t n = json_array_size(found), i;
        json_t *r;
        json_array_foreach(found, i, r)
        {
            if (!record_list_add(recs, keys, c->id, json_string_value(json_object_get(r, "id")))) {
                snprintf(err, err_len, "more than %d records point at the user", MAX_RECORDS);
                rc = ERR_LIMIT;
                break;
            }
        }
        /* listed before they go: a crash after the deletions still erases their history */
        if (rc == 0 && n > 0 && (rc = job_store(g, job)) != 0)
            snprintf(err, err_len, "cannot store the job: %s", store_errmsg(g->cfg.store));
        int64_t done = 0;
        json_array_foreach(found, i, r)
        {
            if (rc != 0)
                break;
            rc = delete_one(g, c, json_string_value(json_object_get(r, "id")), &done, err, err_len);
        }
        json_decref(found);
        erased_add(job, "records", done);
        if (rc == 0 && done > 0 && (rc = job_store(g, job)) != 0) /* progress */
            snprintf(err, err_len, "cannot store the job: %s", store_errmsg(g->cfg.store));
        if (n == 0)
            break; /* none left */
    }
    store_collection_unref(c);
    return rc == 0 && stopping(g) ? ERR_BUSY : rc;
}

/* Waits up to max_ms until every outbox row committed so far is in the log: the relay moves
 * rows in id order and deletes them once appended, so that is when the oldest row left is
 * newer than the newest one now (other writes may go on meanwhile). 0; ERR_TIMEOUT; ERR_BUSY
 * when stopping; a store error. */
static int wait_outbox(struct gov *g, int64_t max_ms)
{
    int64_t newest = 0;
    struct store_outbox_row *rows = NULL;
    size_t n = 0;
    int rc;
    for (;;) { /* the backlog, a page at a time: usually a few rows */
        rc = store_outbox_rows(g->cfg.store, newest, 1000, &rows, &n);
        if (rc != 0)
            return rc;
        if (n > 0)
            newest = rows[n - 1].id;
        store_outbox_rows_free(rows, n);
        if (n < 1000)
            break;
    }
    for (int64_t waited = 0;; waited += 100) {
        rc = store_outbox_rows(g->cfg.store, 0, 1, &rows, &n);
        if (rc != 0)
            return rc;
        bool shipped = n == 0 || rows[0].id > newest;
        store_outbox_rows_free(rows, n);
        if (shipped)
            return 0;
        if (waited >= max_ms)
            return ERR_TIMEOUT;
        if (nap(g, 100))
            return ERR_BUSY;
    }
}

/* How many records of one configured relation point at uid (at most MAX_RECORDS + 1). */
static size_t count_related(struct gov *g, const char *rel, const char *uid)
{
    const char *dot = strchr(rel, '.');
    char cname[201];
    snprintf(cname, sizeof(cname), "%.*s", dot ? (int)(dot - rel) : 0, rel);
    struct store_collection *c = NULL;
    if (!dot || store_collection_get(g->cfg.store, cname, &c) != 0)
        return 0;
    json_t *found = NULL;
    size_t n = 0;
    if (store_record_referencing(g->cfg.store, c, dot + 1, uid, MAX_RECORDS + 1, &found) == 0)
        n = json_array_size(found);
    json_decref(found);
    store_collection_unref(c);
    return n;
}

static int phase_records(struct gov *g, json_t *job, char *err, size_t err_len)
{
    json_t *req = json_object_get(job, "request");
    json_t *rels = json_object_get(req, "relations");
    bool del_user = json_is_true(json_object_get(req, "deleteUser"));
    if (!del_user && json_array_size(rels) == 0)
        return 0;
    const char *uid = json_string_value(json_object_get(req, "userId"));
    json_t *keys = json_object();
    json_t *recs = job_records(job, keys);
    int rc = 0;
    size_t i;
    json_t *rel;
    /* too many records fail the job before any is deleted (so that none of them loses its
     * history to a job that cannot list it) */
    size_t total = json_array_size(recs);
    json_array_foreach(rels, i, rel)
    {
        total += count_related(g, json_string_value(rel), uid);
        if (total > MAX_RECORDS) {
            snprintf(err, err_len, "more than %d records point at the user", MAX_RECORDS);
            json_decref(keys);
            return ERR_LIMIT;
        }
    }
    json_array_foreach(rels, i, rel)
    {
        rc = delete_related(g, job, recs, keys, json_string_value(rel), uid, err, err_len);
        if (rc != 0)
            break;
    }
    if (rc == 0 && del_user) {
        const char *cname = json_string_value(json_object_get(req, "collection"));
        struct store_collection *c = NULL;
        rc = store_collection_get(g->cfg.store, cname ? cname : "users", &c);
        if (rc != 0) {
            snprintf(err, err_len, "no collection \"%s\"", cname ? cname : "users");
        } else {
            /* listed even when the record is gone already (deleted before the job): its
             * history is erased all the same */
            if (!record_list_add(recs, keys, c->id, uid)) {
                snprintf(err, err_len, "more than %d records point at the user", MAX_RECORDS);
                rc = ERR_LIMIT;
            } else if ((rc = job_store(g, job)) != 0) {
                snprintf(err, err_len, "cannot store the job: %s", store_errmsg(g->cfg.store));
            }
            int64_t n = 0;
            if (rc == 0)
                rc = delete_one(g, c, uid, &n, err, err_len);
            if (n > 0)
                json_object_set_new(json_object_get(job, "erased"), "user", json_true());
            store_collection_unref(c);
        }
    }
    json_decref(keys);
    if (rc != 0)
        return rc;
    /* the deletions' outbox rows (with the records' last images) go to the log and are deleted
     * by the relay (zeroed: secure_delete); wait for that, up to a minute (the history
     * phase waits again, longer) */
    rc = wait_outbox(g, 60000);
    if (rc == ERR_BUSY && stopping(g))
        return rc;
    /* the deleted pages are zeroed (secure_delete); the WAL that held them is emptied */
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = store_wal_truncate(g->cfg.store);
        if (rc != ERR_BUSY || nap(g, 100))
            break;
    }
    if (rc != 0)
        snprintf(err, err_len, "cannot checkpoint the store: %s", store_errmsg(g->cfg.store));
    return rc;
}

/* A change event of one of the job's records ("collectionId/recordId" in keys). */
static bool change_matches(void *arg, const struct evlog_rec_view *rec)
{
    const json_t *keys = arg;
    json_t *doc = json_loadb((const char *)rec->data, rec->len, 0, NULL);
    if (!doc)
        return false;
    const char *cid = json_string_value(json_object_get(doc, "collectionId"));
    const char *rid = json_string_value(json_object_get(doc, "recordId"));
    bool hit = false;
    if (cid && rid) {
        char *k = rec_key(cid, rid);
        hit = json_object_get(keys, k) != NULL;
        free(k);
    }
    json_decref(doc);
    return hit;
}

static int phase_history(struct gov *g, struct wh_conn *c, json_t *job, char *err, size_t err_len)
{
    json_t *keys = json_object();
    json_t *recs = job_records(job, keys);
    size_t n = json_array_size(recs);
    const char **cids = NULL, **rids = NULL;
    int rc = 0;
    if (n == 0)
        goto out;
    /* every deletion is in the log once the outbox is empty; its end then bounds the erase */
    json_t *ce = json_object_get(job, "changesEnd");
    uint64_t end = 0;
    if (json_is_integer(ce)) {
        end = (uint64_t)json_integer_value(ce); /* resumed: the same range as before */
    } else {
        rc = wait_outbox(g, 600000);
        if (rc == ERR_TIMEOUT)
            snprintf(err, err_len, "the outbox was not shipped to the log within 10 minutes");
        else if (rc == ERR_BUSY && stopping(g))
            goto out;
        else if (rc != 0)
            snprintf(err, err_len, "cannot read the outbox: %s", store_errmsg(g->cfg.store));
        if (rc != 0)
            goto out;
        rc = evlog_end_offset(g->cfg.log, "changes", &end);
        if (rc != 0) {
            snprintf(err, err_len, "cannot read the end of the changes topic");
            goto out;
        }
        json_object_set_new(job, "changesEnd", json_integer((json_int_t)end));
        if ((rc = job_store(g, job)) != 0) {
            snprintf(err, err_len, "cannot store the job: %s", store_errmsg(g->cfg.store));
            goto out;
        }
    }
    /* the loader applies the deletions to the mirrors before their events are erased */
    if ((rc = wait_loaded(g, CHANGES_CONSUMER, end)) != 0)
        goto out;
    uint64_t nlog = 0;
    rc = evlog_erase(g->cfg.log, "changes", end, change_matches, keys, &nlog);
    if (rc != 0) {
        snprintf(err, err_len, "cannot erase from the event log: %s", evlog_errmsg(g->cfg.log));
        goto out;
    }
    erased_add(job, "changesLog", (int64_t)nlog);
    cids = xcalloc(n, sizeof(*cids));
    rids = xcalloc(n, sizeof(*rids));
    for (size_t i = 0; i < n; i++) {
        cids[i] = json_string_value(json_array_get(json_array_get(recs, i), 0));
        rids[i] = json_string_value(json_array_get(json_array_get(recs, i), 1));
    }
    uint64_t nwh = 0;
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = wh_erase_records(c, cids, rids, n, &nwh);
        if (rc != ERR_BUSY || nap(g, 200))
            break;
    }
    if (rc != 0) {
        snprintf(err, err_len, "cannot delete from the warehouse: %s", wh_errmsg(c));
        goto out;
    }
    erased_add(job, "changesWarehouse", (int64_t)nwh);
out:
    free(cids);
    free(rids);
    json_decref(keys);
    return rc;
}

static const char *const phases[] = {"resolve", "log", "warehouse", "records", "history", "done"};

/* Runs job from its phase to the end, storing it after each phase. */
/* A finished deletion is an entry of the audit trail (the request itself is one already, made
 * by the router's reply hook): the job's id, status and error, not the ids it erased. */
static void audit_finished(struct gov *g, const json_t *job)
{
    if (!g->cfg.audit)
        return;
    json_t *e =
        json_pack("{s:s,s:I,s:{s:O?,s:O?,s:O?}}", "action", "person_deletion", "time",
                  (json_int_t)time_now_us(), "summary", "job", json_object_get(job, "id"), "status",
                  json_object_get(job, "status"), "error", json_object_get(job, "error"));
    if (!e || audit_append(g->cfg.audit, e, NULL) != 0)
        xlog_warn("cannot add person deletion %s to the audit trail",
                  json_string_value(json_object_get(job, "id")));
    json_decref(e);
}

static void job_run(struct gov *g, struct wh_conn *c, json_t *job)
{
    char err[512] = "";
    int rc = 0;
    json_object_set_new(job, "status", json_string("running"));
    if (job_store(g, job) != 0)
        return;
    for (;;) {
        const char *ph = json_string_value(json_object_get(job, "phase"));
        if (ph && strcmp(ph, "user") == 0)
            ph = "records"; /* a job stored before the phase had this name */
        size_t k = 0;
        while (k < ARRAY_LEN(phases) && (!ph || strcmp(phases[k], ph) != 0))
            k++;
        if (k >= ARRAY_LEN(phases) - 1)
            break;
        if (k == 0)
            rc = phase_resolve(g, c, job, err, sizeof(err));
        else if (k == 1)
            rc = phase_log(g, job, err, sizeof(err));
        else if (k == 2)
            rc = phase_warehouse(g, c, job, err, sizeof(err));
        else if (k == 3)
            rc = phase_records(g, job, err, sizeof(err));
        else
            rc = phase_history(g, c, job, err, sizeof(err));
        if (rc != 0)
            break;
        json_object_set_new(job, "phase", json_string(phases[k + 1]));
        if (job_store(g, job) != 0)
            return; /* the store failed: the job resumes at the next start */
        xlog_info("person deletion %s: %s done", json_string_value(json_object_get(job, "id")),
                  phases[k]);
        if (g->pause_ms > 0 && nap(g, g->pause_ms))
            return; /* stopping: resumes at the next start */
    }
    if (rc == ERR_BUSY && stopping(g))
        return; /* resumes at the next start */
    if (rc != 0) {
        xlog_warn("person deletion %s failed: %s", json_string_value(json_object_get(job, "id")),
                  err);
        json_object_set_new(job, "status", json_string("failed"));
        json_object_set_new(job, "error", json_string(err));
    } else {
        json_object_set_new(job, "status", json_string("done"));
    }
    audit_finished(g, job);
    if (job_store(g, job) != 0)
        xlog_warn("cannot store person deletion %s: %s",
                  json_string_value(json_object_get(job, "id")), store_errmsg(g->cfg.store));
}

/* The oldest job that is queued or running (a new reference), or NULL. */
static json_t *next_job(struct gov *g)
{
    json_t *rows = NULL, *best = NULL;
    if (store_sys_list(g->cfg.store, KIND_JOB, NULL, NULL, 0, SIZE_MAX, &rows) != 0)
        return NULL;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        json_t *v = json_object_get(r, "value");
        const char *st = json_string_value(json_object_get(v, "status"));
        if (st && (strcmp(st, "queued") == 0 || strcmp(st, "running") == 0)) {
            best = json_deep_copy(v);
            break; /* listed by due time, then creation: the oldest first */
        }
    }
    json_decref(rows);
    return best;
}

static void *worker_main(void *arg)
{
    struct gov *g = arg;
    struct wh_conn *c = NULL;
    while (!stopping(g)) {
        json_t *job = next_job(g);
        if (!job) {
            nap(g, 1000);
            continue;
        }
        if (!c && wh_conn_open(g->cfg.wh, &c) != 0) {
            xlog_warn("person deletion: cannot open a warehouse connection: %s", wh_errmsg(NULL));
            c = NULL;
            json_decref(job);
            nap(g, 1000);
            continue;
        }
        job_run(g, c, job);
        json_decref(job);
    }
    wh_conn_close(c);
    return NULL;
}

int gov_start(const struct gov_cfg *cfg, struct gov **out)
{
    struct gov *g = xcalloc(1, sizeof(*g));
    g->cfg = *cfg;
    pthread_rwlock_init(&g->supp.lock, NULL);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    const char *pause = getenv("TANDEM_TEST_DELETE_PAUSE_MS");
    if (pause)
        g->pause_ms = strtoll(pause, NULL, 10);
    int rc = suppress_load(g);
    if (rc != 0) {
        xlog_error("cannot read the suppression list: %s", store_errmsg(cfg->store));
        gov_stop(g);
        return rc;
    }
    rc = pthread_create(&g->worker, NULL, worker_main, g);
    if (rc != 0) {
        gov_stop(g);
        return -rc;
    }
    g->worker_started = true;
    *out = g;
    return 0;
}

void gov_stop(struct gov *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_broadcast(&g->cv);
    while (g->n_exports > 0)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    if (g->worker_started)
        pthread_join(g->worker, NULL);
    for (size_t i = 0; i < g->supp.cap; i++)
        free(g->supp.slots[i]);
    free(g->supp.slots);
    pthread_rwlock_destroy(&g->supp.lock);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}
