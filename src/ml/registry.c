/* registry.c - the models: metadata in the store, versions, promotion and rollback, the
 * serving handles of the active versions, the training queue, and predictions (HTTP and the
 * SQL function tandem_predict). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog/evlog.h"
#include "ml/ml_int.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

#define INDEX_KEY "ml.models"
#define MODEL_KEY_PREFIX "ml.model."

static const char *const task_names[] = {"binary", "regression", "multiclass"};

const char *ml__task_name(enum ml_task t)
{
    return task_names[t];
}

int ml__task_parse(const char *s, enum ml_task *out)
{
    for (size_t i = 0; s && i < ARRAY_LEN(task_names); i++)
        if (strcmp(s, task_names[i]) == 0) {
            *out = (enum ml_task)i;
            return 0;
        }
    return ERR_INVALID;
}

bool ml__metric_higher_better(const char *metric)
{
    return metric && (strcmp(metric, "auc") == 0 || strcmp(metric, "aucpr") == 0);
}

struct ml_model *ml__find(struct ml *ml, const char *name)
{
    for (size_t i = 0; name && i < ml->n_models; i++)
        if (strcmp(ml->models[i]->name, name) == 0)
            return ml->models[i];
    return NULL;
}

json_t *ml__version(struct ml_model *m, int64_t version)
{
    json_t *vs = json_object_get(m->meta, "versions"), *v;
    size_t i;
    json_array_foreach(vs, i, v)
    {
        if (json_integer_value(json_object_get(v, "version")) == version)
            return v;
    }
    return NULL;
}

static int persist_index(struct ml *ml)
{
    json_t *names = json_array();
    for (size_t i = 0; i < ml->n_models; i++)
        json_array_append_new(names, json_string(ml->models[i]->name));
    int rc = store_param_put(ml->cfg.store, INDEX_KEY, names);
    json_decref(names);
    return rc;
}

int ml__persist(struct ml *ml, struct ml_model *m)
{
    char key[sizeof(MODEL_KEY_PREFIX) + ML_NAME_MAX + 1];
    snprintf(key, sizeof(key), MODEL_KEY_PREFIX "%s", m->name);
    char now[TIME_PB_LEN];
    time_format_pb(time_now_us(), now);
    json_object_set_new(m->meta, "updated", json_string(now));
    int rc = store_param_put(ml->cfg.store, key, m->meta);
    if (rc)
        xlog_error("cannot store model %s: %s", m->name, store_errmsg(ml->cfg.store));
    return rc;
}

char *ml__model_path(const struct ml *ml, const char *name, int64_t v)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s/%s/v%lld.ubj", ml->dir, name, (long long)v);
    return buf_detach(&b, NULL);
}

int ml__errf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

/* ---- serving handles ---- */

static void features_free(struct ml_feature *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < f[i].n_cats; k++)
            free(f[i].cats[k]);
        free(f[i].cats);
        free(f[i].name);
    }
    free(f);
}

struct ml_serving *ml__serving_new(const char *name, const json_t *ver, BoosterHandle booster)
{
    struct ml_serving *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->booster = booster;
    bst_ulong len = 0;
    const char *bytes = NULL;
    if (XGBoosterSaveModelToBuffer(booster, "{\"format\":\"ubj\"}", &len, &bytes) != 0 ||
        XGBoosterCreate(NULL, 0, &s->booster1) != 0 ||
        XGBoosterLoadModelFromBuffer(s->booster1, bytes, len) != 0 ||
        XGBoosterSetParam(s->booster1, "nthread", "1") != 0) {
        xlog_warn("model %s: no single-threaded copy for small batches: %s", name,
                  XGBGetLastError());
        if (s->booster1)
            XGBoosterFree(s->booster1);
        s->booster1 = NULL;
    }
    s->name = xstrdup(name);
    s->version = json_integer_value(json_object_get(ver, "version"));
    enum ml_task t = ML_TASK_BINARY;
    (void)ml__task_parse(json_string_value(json_object_get(ver, "task")), &t);
    s->task = t;
    s->num_class = (int)json_integer_value(json_object_get(ver, "numClass"));
    const json_t *fs = json_object_get(ver, "features");
    s->n_features = json_array_size(fs);
    s->features = xcalloc(s->n_features ? s->n_features : 1, sizeof(*s->features));
    for (size_t i = 0; i < s->n_features; i++) {
        const json_t *f = json_array_get(fs, i);
        struct ml_feature *mf = &s->features[i];
        mf->name = xstrdup(json_string_value(json_object_get(f, "name")));
        const json_t *cats = json_object_get(f, "categories");
        mf->categorical = json_is_array(cats);
        if (!mf->categorical)
            continue;
        s->any_categorical = true;
        mf->n_cats = json_array_size(cats);
        mf->cats = xcalloc(mf->n_cats ? mf->n_cats : 1, sizeof(char *));
        for (size_t k = 0; k < mf->n_cats; k++)
            mf->cats[k] = xstrdup(json_string_value(json_array_get(cats, k)));
    }
    return s;
}

void ml__serving_unref(struct ml_serving *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    XGBoosterFree(s->booster);
    if (s->booster1)
        XGBoosterFree(s->booster1);
    features_free(s->features, s->n_features);
    free(s->name);
    free(s);
}

struct ml_serving *ml__serving_ref(struct ml_serving *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

int ml__serving_load(struct ml *ml, const char *name, const json_t *ver, struct ml_serving **out)
{
    *out = NULL;
    char *path = ml__model_path(ml, name, json_integer_value(json_object_get(ver, "version")));
    BoosterHandle b = NULL;
    int rc = 0;
    if (XGBoosterCreate(NULL, 0, &b) != 0 || XGBoosterLoadModel(b, path) != 0) {
        xlog_error("cannot load model file %s: %s", path, XGBGetLastError());
        rc = ERR_IO;
        if (b)
            XGBoosterFree(b);
    } else {
        *out = ml__serving_new(name, ver, b);
    }
    free(path);
    return rc;
}

void ml__activate(struct ml_model *m, struct ml_serving *s)
{
    json_t *prev = json_object_get(m->meta, "active");
    if (json_is_integer(prev) && json_integer_value(prev) != s->version) {
        json_t *hist = json_object_get(m->meta, "history");
        if (!json_is_array(hist)) {
            hist = json_array();
            json_object_set_new(m->meta, "history", hist);
        }
        json_array_append(hist, prev);
    }
    json_object_set_new(m->meta, "active", json_integer(s->version));
    ml__serving_unref(m->active);
    m->active = s;
}

/* ---- open / close ---- */

static struct ml_model *model_new(const char *name, json_t *meta)
{
    struct ml_model *m = xcalloc(1, sizeof(*m));
    m->name = xstrdup(name);
    m->meta = meta;
    m->round = -1;
    atomic_init(&m->cancel, false);
    return m;
}

static void model_free(struct ml_model *m)
{
    if (!m)
        return;
    json_decref(m->meta);
    ml__serving_unref(m->active);
    free(m->name);
    free(m);
}

static int load_model(struct ml *ml, const char *name)
{
    char key[sizeof(MODEL_KEY_PREFIX) + ML_NAME_MAX + 1];
    snprintf(key, sizeof(key), MODEL_KEY_PREFIX "%s", name);
    json_t *meta = NULL;
    int rc = store_param_get(ml->cfg.store, key, &meta);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    struct ml_model *m = model_new(name, meta);
    ml->models = xrealloc(ml->models, (ml->n_models + 1) * sizeof(*ml->models));
    ml->models[ml->n_models++] = m;
    /* a training the process did not finish (a crash, kill -9, a stop) failed; its file, if
     * any, was never promoted */
    bool changed = false;
    json_t *v;
    size_t i;
    json_array_foreach(json_object_get(meta, "versions"), i, v)
    {
        const char *st = json_string_value(json_object_get(v, "status"));
        if (st && (strcmp(st, "queued") == 0 || strcmp(st, "training") == 0)) {
            json_object_set_new(v, "status", json_string("failed"));
            json_object_set_new(v, "error",
                                json_string("interrupted: the server stopped during training"));
            changed = true;
        }
    }
    json_t *act = json_object_get(meta, "active");
    if (json_is_integer(act)) {
        json_t *ver = ml__version(m, json_integer_value(act));
        struct ml_serving *s = NULL;
        if (ver && ml__serving_load(ml, name, ver, &s) == 0)
            m->active = s;
        else
            xlog_error("model %s: the active version %lld cannot be served", name,
                       (long long)json_integer_value(act));
    }
    if (changed && ml__persist(ml, m) != 0)
        return ERR_IO;
    return 0;
}

static int score_cb(void *arg, const char *model, size_t model_len, const struct wh_scan_chunk *ch,
                    size_t first, size_t n_rows, double *out, char *err, size_t err_len);

int ml_open(const struct ml_cfg *cfg, struct ml **out, char *err, size_t err_len)
{
    *out = NULL;
    struct ml *ml = xcalloc(1, sizeof(*ml));
    ml->cfg = *cfg;
    if (!ml->cfg.max_bytes)
        ml->cfg.max_bytes = UINT64_C(1) << 30;
    if (!ml->cfg.queue_max)
        ml->cfg.queue_max = 16;
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s/ml", cfg->dir);
    ml->dir = buf_detach(&b, NULL);
    pthread_mutex_init(&ml->mu, NULL);
    pthread_cond_init(&ml->cv, NULL);
    int rc = 0;
    if (mkdir(ml->dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, err_len, "cannot create %s: %s", ml->dir, strerror(errno));
        goto fail;
    }
    json_t *names = NULL;
    rc = store_param_get(cfg->store, INDEX_KEY, &names);
    if (rc == ERR_NOTFOUND)
        rc = 0;
    else if (rc) {
        snprintf(err, err_len, "cannot read the models: %s", store_errmsg(cfg->store));
        goto fail;
    }
    json_t *nm;
    size_t i;
    json_array_foreach(names, i, nm)
    {
        if (json_is_string(nm) && (rc = load_model(ml, json_string_value(nm))) != 0) {
            json_decref(names);
            snprintf(err, err_len, "cannot load model %s", json_string_value(nm));
            goto fail;
        }
    }
    json_decref(names);
    if (cfg->wh && (rc = wh_set_scorer(cfg->wh, score_cb, ml)) != 0) {
        snprintf(err, err_len, "cannot register tandem_predict in the warehouse");
        goto fail;
    }
    if ((rc = -pthread_create(&ml->worker, NULL, ml__worker_main, ml)) != 0) {
        snprintf(err, err_len, "cannot start the training worker");
        goto fail;
    }
    ml->started = true;
    *out = ml;
    return 0;
fail:
    ml_free(ml);
    return rc;
}

void ml_stop(struct ml *ml)
{
    if (!ml || !ml->started)
        return;
    pthread_mutex_lock(&ml->mu);
    ml->stopping = true;
    for (size_t i = 0; i < ml->n_models; i++)
        atomic_store(&ml->models[i]->cancel, true);
    pthread_cond_broadcast(&ml->cv);
    pthread_mutex_unlock(&ml->mu);
    pthread_join(ml->worker, NULL);
    ml->started = false;
}

void ml_free(struct ml *ml)
{
    if (!ml)
        return;
    ml_stop(ml);
    while (ml->head) {
        struct ml_job *j = ml->head;
        ml->head = j->next;
        json_decref(j->spec);
        free(j);
    }
    for (size_t i = 0; i < ml->n_models; i++)
        model_free(ml->models[i]);
    for (size_t i = 0; i < ml->n_dead; i++)
        model_free(ml->dead[i]);
    free(ml->models);
    free(ml->dead);
    pthread_cond_destroy(&ml->cv);
    pthread_mutex_destroy(&ml->mu);
    free(ml->dir);
    free(ml);
}

/* ---- training requests ---- */

void ml__enqueue(struct ml *ml, struct ml_model *m, int64_t version, json_t *spec)
{
    struct ml_job *j = xcalloc(1, sizeof(*j));
    j->m = m;
    j->version = version;
    j->score = version == 0;
    j->spec = spec;
    if (ml->tail)
        ml->tail->next = j;
    else
        ml->head = j;
    ml->tail = j;
    ml->n_queued++;
    if (j->score)
        m->scoring = true;
    else
        m->training = version;
    pthread_cond_signal(&ml->cv);
}

int ml_train_check(struct ml *ml, const json_t *spec, json_t **norm_out, json_t **errors_out)
{
    return ml__spec_check(ml, spec, norm_out, errors_out);
}

int ml_train(struct ml *ml, const json_t *spec, json_t **errors_out, json_t **out)
{
    *out = NULL;
    *errors_out = NULL;
    json_t *norm = NULL;
    int rc = ml__spec_check(ml, spec, &norm, errors_out);
    if (rc)
        return rc;
    const char *name = json_string_value(json_object_get(norm, "name"));
    char now[TIME_PB_LEN];
    time_format_pb(time_now_us(), now);
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    if (ml->stopping) {
        rc = ERR_BUSY;
        goto out;
    }
    if (ml->n_queued >= ml->cfg.queue_max) {
        rc = ERR_LIMIT;
        goto out;
    }
    if (m && m->training) {
        rc = ERR_CONFLICT;
        goto out;
    }
    bool is_new = !m;
    if (is_new) {
        json_t *meta = json_pack("{s:s,s:s,s:n,s:[],s:[],s:i}", "name", name, "created", now,
                                 "active", "history", "versions", "nextVersion", 1);
        m = model_new(name, meta);
        ml->models = xrealloc(ml->models, (ml->n_models + 1) * sizeof(*ml->models));
        ml->models[ml->n_models++] = m;
    }
    /* the model's definition is the latest spec; rule and autoPromote only when given */
    const char *key;
    json_t *val;
    json_object_foreach(norm, key, val)
    {
        if ((strcmp(key, "rule") == 0 || strcmp(key, "autoPromote") == 0) && !is_new &&
            !json_object_get(spec, key))
            continue;
        json_object_set(m->meta, key, val);
    }
    if (!json_object_get(norm, "model")) /* trained from a query now */
        json_object_del(m->meta, "model");
    int64_t v = json_integer_value(json_object_get(m->meta, "nextVersion"));
    if (v < 1)
        v = 1;
    json_object_set_new(m->meta, "nextVersion", json_integer(v + 1));
    json_t *ver = json_pack("{s:I,s:s,s:s,s:O}", "version", (json_int_t)v, "status", "queued",
                            "created", now, "spec", norm);
    json_array_append_new(json_object_get(m->meta, "versions"), ver);
    m->training = v;
    m->round = -1;
    atomic_store(&m->cancel, false);
    if ((rc = ml__persist(ml, m)) != 0 || (is_new && (rc = persist_index(ml)) != 0)) {
        m->training = 0;
        json_array_remove(json_object_get(m->meta, "versions"),
                          json_array_size(json_object_get(m->meta, "versions")) - 1);
        goto out;
    }
    ml__enqueue(ml, m, v, json_incref(norm));
    *out = json_pack("{s:s,s:I,s:s}", "name", name, "version", (json_int_t)v, "status", "queued");
out:
    pthread_mutex_unlock(&ml->mu);
    json_decref(norm);
    return rc;
}

int ml_cancel(struct ml *ml, const char *name)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = m && m->training ? 0 : ERR_NOTFOUND;
    if (rc == 0)
        atomic_store(&m->cancel, true);
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

/* ---- reading models ---- */

static json_t *model_json(struct ml_model *m, bool full)
{
    json_t *j = json_deep_copy(m->meta);
    json_object_del(j, "nextVersion");
    if (m->training) {
        json_t *ver = ml__version(m, m->training);
        json_t *vj = NULL;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(j, "versions"), i, x)
        {
            if (json_integer_value(json_object_get(x, "version")) == m->training)
                vj = x;
        }
        if (ver && vj && m->round >= 0) {
            json_object_set_new(vj, "round", json_integer(m->round));
            json_object_set_new(vj, "roundMetric",
                                isfinite(m->round_metric) ? json_real(m->round_metric)
                                                          : json_null());
        }
    }
    if (!full) {
        /* the list: the active version's metrics, no curves or importances */
        json_t *vs = json_object_get(j, "versions");
        json_object_set_new(j, "versionCount", json_integer((json_int_t)json_array_size(vs)));
        json_object_del(j, "versions");
        json_t *act = m->active ? ml__version(m, m->active->version) : NULL;
        json_t *mt = act ? json_deep_copy(json_object_get(act, "metrics")) : json_null();
        json_object_del(mt, "roc");
        json_object_set_new(j, "activeMetrics", mt);
    }
    return j;
}

int ml_model_get(struct ml *ml, const char *name, json_t **out)
{
    *out = NULL;
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    if (m)
        *out = model_json(m, true);
    pthread_mutex_unlock(&ml->mu);
    return m ? 0 : ERR_NOTFOUND;
}

int ml_model_list(struct ml *ml, json_t **out)
{
    json_t *items = json_array();
    pthread_mutex_lock(&ml->mu);
    for (size_t i = 0; i < ml->n_models; i++)
        json_array_append_new(items, model_json(ml->models[i], false));
    pthread_mutex_unlock(&ml->mu);
    *out = json_pack("{s:o}", "items", items);
    return 0;
}

int ml_model_rule(struct ml *ml, const char *name, char **rule_out)
{
    *rule_out = NULL;
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    if (m) {
        const char *r = json_string_value(json_object_get(m->meta, "rule"));
        *rule_out = r ? xstrdup(r) : NULL;
    }
    pthread_mutex_unlock(&ml->mu);
    return m ? 0 : ERR_NOTFOUND;
}

/* ---- promotion ---- */

/* Loads version v of m (unlocked: reads a file) and activates it. */
static int promote_locked_load(struct ml *ml, struct ml_model *m, int64_t v, bool from_history)
{
    json_t *ver = ml__version(m, v);
    if (!ver)
        return ERR_NOTFOUND;
    if (strcmp(json_string_value(json_object_get(ver, "status")) ?: "", "ready") != 0)
        return ERR_INVALID;
    json_t *copy = json_deep_copy(ver);
    pthread_mutex_unlock(&ml->mu);
    struct ml_serving *s = NULL;
    int rc = ml__serving_load(ml, m->name, copy, &s);
    json_decref(copy);
    pthread_mutex_lock(&ml->mu);
    if (rc)
        return rc;
    if (m->deleted) {
        ml__serving_unref(s);
        return ERR_NOTFOUND;
    }
    ml__activate(m, s);
    ml__queue_score(ml, m);
    if (from_history) {
        /* a rollback pops the history instead of pushing the version it leaves */
        json_t *hist = json_object_get(m->meta, "history");
        size_t n = json_array_size(hist);
        if (n >= 2)
            json_array_remove(hist, n - 1); /* the one just pushed */
        if (json_array_size(hist) >= 1)
            json_array_remove(hist, json_array_size(hist) - 1); /* v itself */
    }
    return ml__persist(ml, m);
}

int ml_promote(struct ml *ml, const char *name, int64_t version)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = m ? promote_locked_load(ml, m, version, false) : ERR_NOTFOUND;
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

int ml_rollback(struct ml *ml, const char *name)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = ERR_NOTFOUND;
    if (m) {
        json_t *hist = json_object_get(m->meta, "history");
        size_t n = json_array_size(hist);
        rc = n ? promote_locked_load(ml, m, json_integer_value(json_array_get(hist, n - 1)), true)
               : ERR_INVALID;
    }
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

int ml_model_update(struct ml *ml, const char *name, bool rule_set, const char *rule,
                    int auto_promote)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = ERR_NOTFOUND;
    if (m) {
        if (rule_set)
            json_object_set_new(m->meta, "rule", rule ? json_string(rule) : json_null());
        if (auto_promote >= 0)
            json_object_set_new(m->meta, "autoPromote", json_boolean(auto_promote));
        rc = ml__persist(ml, m);
    }
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

int ml_model_delete(struct ml *ml, const char *name)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = !m ? ERR_NOTFOUND : m->training ? ERR_CONFLICT : 0;
    if (rc)
        goto out;
    char key[sizeof(MODEL_KEY_PREFIX) + ML_NAME_MAX + 1];
    snprintf(key, sizeof(key), MODEL_KEY_PREFIX "%s", m->name);
    size_t i = 0;
    while (ml->models[i] != m)
        i++;
    memmove(ml->models + i, ml->models + i + 1, (ml->n_models - i - 1) * sizeof(*ml->models));
    ml->n_models--;
    if ((rc = persist_index(ml)) != 0) {
        ml->models[ml->n_models++] = m; /* order does not matter for correctness */
        goto out;
    }
    json_t *null = json_null();
    if (store_param_put(ml->cfg.store, key, null) != 0)
        xlog_warn("cannot clear the metadata of model %s", name);
    json_t *v;
    json_array_foreach(json_object_get(m->meta, "versions"), i, v)
    {
        char *path = ml__model_path(ml, name, json_integer_value(json_object_get(v, "version")));
        unlink(path);
        free(path);
    }
    char *dir = ml__model_path(ml, name, 0);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
    free(dir);
    m->deleted = true;
    ml->dead = xrealloc(ml->dead, (ml->n_dead + 1) * sizeof(*ml->dead));
    ml->dead[ml->n_dead++] = m;
out:
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

/* ---- predictions ---- */

struct ml_serving *ml__active_ref(struct ml *ml, const char *name, int *rc_out)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    struct ml_serving *s = m ? ml__serving_ref(m->active) : NULL;
    *rc_out = !m ? ERR_NOTFOUND : !s ? ERR_BUSY : 0;
    pthread_mutex_unlock(&ml->mu);
    return s;
}

int ml__run_booster(const struct ml_serving *s, const float *x, size_t n, int type, bool one_thread,
                    const float **res, bst_ulong *out_len, char *err, size_t err_len)
{
    BoosterHandle b = one_thread && s->booster1 ? s->booster1 : s->booster;
    DMatrixHandle dm = NULL;
    int rc = 0;
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    if (type == 0 && !s->any_categorical) {
        /* scores of numeric features: XGBoost reads x in place (no DMatrix is built) */
        char arr[192];
        snprintf(arr, sizeof(arr),
                 "{\"data\":[%" PRIuPTR ",true],\"shape\":[%zu,%zu],\"typestr\":\"<f4\","
                 "\"version\":3}",
                 (uintptr_t)x, n, s->n_features);
        if (XGBoosterPredictFromDense(b, arr,
                                      "{\"type\":0,\"training\":false,\"iteration_begin\":0,"
                                      "\"iteration_end\":0,\"strict_shape\":false,"
                                      "\"missing\":NaN,\"cache_id\":0}",
                                      NULL, &shape, &dim, res) != 0)
            goto fail;
        goto shaped;
    }
    if (XGDMatrixCreateFromMat(x, n, s->n_features, NAN, &dm) != 0)
        goto fail;
    if (s->any_categorical) {
        const char **types = xcalloc(s->n_features, sizeof(char *));
        for (size_t j = 0; j < s->n_features; j++)
            types[j] = s->features[j].categorical ? "c" : "q";
        int r = XGDMatrixSetStrFeatureInfo(dm, "feature_type", types, s->n_features);
        free(types);
        if (r != 0)
            goto fail;
    }
    char cfg[160];
    snprintf(cfg, sizeof(cfg),
             "{\"type\":%d,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
             "\"strict_shape\":false}",
             type);
    if (XGBoosterPredictFromDMatrix(b, dm, cfg, &shape, &dim, res) != 0)
        goto fail;
shaped:;
    bst_ulong len = 1;
    for (bst_ulong d = 0; d < dim; d++)
        len *= shape[d];
    *out_len = len;
    goto out;
fail:
    snprintf(err, err_len, "%s", XGBGetLastError());
    rc = ERR_INTERNAL;
out:
    if (dm)
        XGDMatrixFree(dm);
    return rc;
}

int ml__category_code(const struct ml_feature *f, const char *v, size_t len)
{
    for (size_t k = 0; k < f->n_cats; k++)
        if (strlen(f->cats[k]) == len && memcmp(f->cats[k], v, len) == 0)
            return (int)k;
    return -1;
}

static json_t *field_error(const char *code, const char *message)
{
    return json_pack("{s:s,s:s}", "code", code, "message", message);
}

/* rows -> x (row-major). ERR_INVALID with *errors_out naming the first bad field. */
/* The first key of row that is not a feature of s, or NULL. */
static const char *unknown_key(const struct ml_serving *s, const json_t *row)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)row, key, v)
    {
        size_t j = 0;
        while (j < s->n_features && strcmp(s->features[j].name, key) != 0)
            j++;
        if (j == s->n_features)
            return key;
    }
    return NULL;
}

static int rows_matrix(const struct ml_serving *s, const json_t *rows, float **x_out,
                       json_t **errors_out)
{
    size_t n = json_array_size(rows), f = s->n_features;
    float *x = xmalloc((n ? n : 1) * (f ? f : 1) * sizeof(float));
    char field[ML_NAME_MAX * 4 + 64];
    const char *code = NULL, *msg = NULL, *bad = NULL;
    size_t i;
    for (i = 0; i < n; i++) {
        const json_t *row = json_array_get(rows, i);
        if (!json_is_object(row)) {
            snprintf(field, sizeof(field), "rows.%zu", i);
            *errors_out = json_pack("{s:o}", field,
                                    field_error("validation_invalid_row", "Must be an object."));
            goto fail;
        }
        /* a row with as many keys as features and every feature has no unknown key */
        if (json_object_size(row) != f && (bad = unknown_key(s, row)) != NULL)
            goto unknown;
        for (size_t j = 0; j < f; j++) {
            const struct ml_feature *ft = &s->features[j];
            const json_t *v2 = json_object_get(row, ft->name);
            float *cell = &x[i * f + j];
            bad = ft->name;
            if (!v2) {
                if ((bad = unknown_key(s, row)) != NULL)
                    goto unknown;
                bad = ft->name;
                code = "validation_required";
                msg = "Missing feature (send null for a missing value).";
                goto invalid;
            }
            if (json_is_null(v2)) {
                *cell = NAN;
            } else if (ft->categorical) {
                if (!json_is_string(v2)) {
                    code = "validation_invalid_type";
                    msg = "Must be a string (a category).";
                    goto invalid;
                }
                int c = ml__category_code(ft, json_string_value(v2), json_string_length(v2));
                *cell = c < 0 ? NAN : (float)c; /* an unseen category is missing */
            } else if (json_is_number(v2)) {
                *cell = (float)json_number_value(v2);
            } else if (json_is_boolean(v2)) {
                *cell = json_is_true(v2) ? 1.0f : 0.0f;
            } else {
                code = "validation_invalid_type";
                msg = "Must be a number, a bool or null.";
                goto invalid;
            }
        }
    }
    *x_out = x;
    return 0;
unknown:
    code = "validation_unknown_feature";
    msg = "The model has no such feature.";
invalid:
    snprintf(field, sizeof(field), "rows.%zu.%.200s", i, bad);
    *errors_out = json_pack("{s:o}", field, field_error(code, msg));
fail:
    free(x);
    return ERR_INVALID;
}

static void log_predictions(struct ml *ml, const struct ml_serving *s, const json_t *rows,
                            const json_t *preds)
{
    if (!ml->cfg.log)
        return;
    char now[TIME_PB_LEN];
    time_format_iso(time_now_us(), now);
    size_t n = json_array_size(rows);
    struct evlog_rec *recs = xcalloc(n ? n : 1, sizeof(*recs));
    char **bufs = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s,s:I,s:s,s:O,s:O}", "model", s->name, "version",
                              (json_int_t)s->version, "timestamp", now, "features",
                              json_array_get(rows, i), "prediction", json_array_get(preds, i));
        bufs[i] = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(o);
        recs[i].data = bufs[i];
        recs[i].len = strlen(bufs[i]);
    }
    uint64_t first = 0, ticket = 0;
    /* appended, not waited for: the prediction was already made; a lost tail of the log on
     * power loss loses only log lines */
    if (evlog_append(ml->cfg.log, "predictions", recs, n, &first, &ticket) != 0)
        xlog_warn("cannot log %zu predictions of model %s", n, s->name);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(recs);
}

int ml_predict(struct ml *ml, const char *name, const json_t *rows, bool contribs, json_t **out,
               json_t **errors_out)
{
    *out = NULL;
    *errors_out = NULL;
    size_t n = json_array_size(rows);
    if (!json_is_array(rows) || n == 0 || n > ML_PREDICT_MAX_ROWS) {
        *errors_out = json_pack(
            "{s:o}", "rows",
            field_error("validation_invalid_rows", "Must be an array of 1 to 10000 objects."));
        return ERR_INVALID;
    }
    int rc;
    struct ml_serving *s = ml__active_ref(ml, name, &rc);
    if (!s)
        return rc;
    float *x = NULL;
    json_t *preds = NULL;
    char err[512];
    if ((rc = rows_matrix(s, rows, &x, errors_out)) != 0)
        goto out;
    const float *res = NULL;
    bst_ulong len = 0;
    if ((rc = ml__run_booster(s, x, n, 0, n <= ML__SMALL_BATCH, &res, &len, err, sizeof(err))) !=
        0) {
        xlog_error("model %s: prediction failed: %s", name, err);
        goto out;
    }
    size_t k = s->task == ML_TASK_MULTICLASS ? (size_t)s->num_class : 1;
    if (len != n * k) {
        rc = ERR_INTERNAL;
        goto out;
    }
    preds = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p;
        if (s->task == ML_TASK_MULTICLASS) {
            json_t *probs = json_array();
            size_t best = 0;
            for (size_t c = 0; c < k; c++) {
                json_array_append_new(probs, json_real(res[i * k + c]));
                if (res[i * k + c] > res[i * k + best])
                    best = c;
            }
            p = json_pack("{s:o,s:I}", "probabilities", probs, "label", (json_int_t)best);
        } else if (s->task == ML_TASK_BINARY) {
            p = json_pack("{s:f,s:i}", "score", (double)res[i], "label", res[i] >= 0.5f);
        } else {
            p = json_pack("{s:f}", "score", (double)res[i]);
        }
        json_array_append_new(preds, p);
    }
    if (contribs) {
        if ((rc = ml__run_booster(s, x, n, 2, n <= ML__SMALL_BATCH, &res, &len, err,
                                  sizeof(err))) != 0) {
            xlog_error("model %s: contributions failed: %s", name, err);
            goto out;
        }
        size_t per = s->n_features + 1; /* + the bias */
        if (len != n * k * per) {
            rc = ERR_INTERNAL;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *all = json_array();
            for (size_t c = 0; c < k; c++) {
                const float *r = res + (i * k + c) * per;
                json_t *o = json_object();
                for (size_t j = 0; j < s->n_features; j++)
                    json_object_set_new(o, s->features[j].name, json_real(r[j]));
                json_object_set_new(o, "bias", json_real(r[s->n_features]));
                json_array_append_new(all, o);
            }
            json_t *p = json_array_get(preds, i);
            if (k == 1) {
                json_object_set(p, "contributions", json_array_get(all, 0));
                json_decref(all);
            } else {
                json_object_set_new(p, "contributions", all);
            }
        }
    }
    log_predictions(ml, s, rows, preds);
    *out = json_pack("{s:s,s:I,s:O}", "model", name, "version", (json_int_t)s->version,
                     "predictions", preds);
out:
    json_decref(preds);
    free(x);
    ml__serving_unref(s);
    return rc;
}

/* tandem_predict: the features in the order of the active version's feature list; a
 * categorical feature as its text (or its category code as a number). Binary: the
 * probability; regression: the value; multiclass: the most probable class. */
static int score_cb(void *arg, const char *model, size_t model_len, const struct wh_scan_chunk *ch,
                    size_t first, size_t n_rows, double *out, char *err, size_t err_len)
{
    struct ml *ml = arg;
    char name[ML_NAME_MAX + 1];
    if (model_len > ML_NAME_MAX) {
        snprintf(err, err_len, "tandem_predict: no model named %.*s", (int)ML_NAME_MAX, model);
        return ERR_NOTFOUND;
    }
    memcpy(name, model, model_len);
    name[model_len] = '\0';
    int rc;
    struct ml_serving *s = ml__active_ref(ml, name, &rc);
    if (!s) {
        snprintf(err, err_len, "tandem_predict: %s %s",
                 rc == ERR_NOTFOUND ? "no model named" : "no active version of model", name);
        return rc;
    }
    size_t f = s->n_features;
    float *x = NULL;
    if (ch->n_cols != f) {
        snprintf(err, err_len, "tandem_predict: model %s takes %zu features, %zu given", name, f,
                 ch->n_cols);
        rc = ERR_INVALID;
        goto out;
    }
    for (size_t j = 0; j < f; j++)
        if (ch->cols[j].kind == WH_COL_TEXT && !s->features[j].categorical) {
            snprintf(err, err_len, "tandem_predict: feature %zu (%s) of model %s is numeric", j + 1,
                     s->features[j].name, name);
            rc = ERR_INVALID;
            goto out;
        }
    x = xmalloc((n_rows ? n_rows : 1) * (f ? f : 1) * sizeof(float));
    for (size_t i = 0; i < n_rows; i++)
        for (size_t j = 0; j < f; j++) {
            float *cell = &x[i * f + j];
            if (ch->cols[j].kind == WH_COL_NUM) {
                *cell = (float)ch->num[j][first + i];
                continue;
            }
            const struct str *t = &ch->text[j][first + i];
            int code = t->ptr ? ml__category_code(&s->features[j], t->ptr, t->len) : -1;
            *cell = code < 0 ? NAN : (float)code;
        }
    const float *res = NULL;
    bst_ulong len = 0;
    if ((rc = ml__run_booster(s, x, n_rows, 0, true, &res, &len, err, err_len)) != 0)
        goto out;
    size_t k = s->task == ML_TASK_MULTICLASS ? (size_t)s->num_class : 1;
    if (len != n_rows * k) {
        snprintf(err, err_len, "tandem_predict: unexpected output shape");
        rc = ERR_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < n_rows; i++) {
        if (k == 1) {
            out[i] = res[i];
            continue;
        }
        size_t best = 0;
        for (size_t c = 1; c < k; c++)
            if (res[i * k + c] > res[i * k + best])
                best = c;
        out[i] = (double)best;
    }
out:
    free(x);
    ml__serving_unref(s);
    return rc;
}
