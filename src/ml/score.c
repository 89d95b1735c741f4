/* score.c - the scheduled scoring job: a model's active version scores the rows of a
 * warehouse query and the scores are written into a collection through the store (upserts in
 * one transaction per batch, with their outbox rows), so the records API, realtime, rules and
 * the collection's warehouse mirror all see them. Runs on the ML worker: after a promotion,
 * every score.intervalSec, and on POST /api/ml/models/{name}/score. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/ml_int.h"
#include "store/store.h"

#define BATCH 1000
#define QUERY_MAX 100000

static void add_err(json_t *errs, const char *field, const char *msg)
{
    char key[64];
    snprintf(key, sizeof(key), "score.%s", field);
    if (!json_object_get(errs, key))
        json_object_set_new(
            errs, key, json_pack("{s:s,s:s}", "code", "validation_invalid_value", "message", msg));
}

/* The collection c and its key and score fields, checked. */
static int target_check(struct store *st, const json_t *sc, struct store_collection **c_out,
                        char *err, size_t err_len, const char **field_out)
{
    *c_out = NULL;
    *field_out = "collection";
    const char *coll = json_string_value(json_object_get(sc, "collection"));
    struct store_collection *c = NULL;
    if (!coll || store_collection_get(st, coll, &c) != 0) {
        snprintf(err, err_len, "no collection named %s", coll ? coll : "(none)");
        return ERR_INVALID;
    }
    const char *kf = json_string_value(json_object_get(sc, "keyField"));
    const char *sf = json_string_value(json_object_get(sc, "scoreField"));
    const struct store_field *k = kf ? store_collection_field(c, kf) : NULL;
    const struct store_field *s = sf ? store_collection_field(c, sf) : NULL;
    if (!k || k->type != STORE_FIELD_TEXT) {
        *field_out = "keyField";
        snprintf(err, err_len, "collection %s has no text field %s", c->name, kf ? kf : "");
        store_collection_unref(c);
        return ERR_INVALID;
    }
    if (!s || s->type != STORE_FIELD_NUMBER) {
        *field_out = "scoreField";
        snprintf(err, err_len, "collection %s has no number field %s", c->name, sf ? sf : "");
        store_collection_unref(c);
        return ERR_INVALID;
    }
    *c_out = c;
    return 0;
}

void ml__score_spec_check(const struct ml *ml, const json_t *score, json_t *norm, json_t *errs)
{
    if (!json_is_object(score)) {
        json_object_set_new(errs, "score",
                            json_pack("{s:s,s:s}", "code", "validation_invalid_type", "message",
                                      "Must be an object."));
        return;
    }
    static const char *const keys[] = {"query", "key", "collection", "keyField", "scoreField"};
    json_t *out = json_object();
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const char *v = json_string_value(json_object_get(score, keys[i]));
        if (!v || !*v || strlen(v) > QUERY_MAX)
            add_err(errs, keys[i], "Required (a non-empty string).");
        else
            json_object_set_new(out, keys[i], json_string(v));
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)score, key, v)
    {
        bool known = strcmp(key, "intervalSec") == 0;
        for (size_t i = 0; i < ARRAY_LEN(keys); i++)
            known = known || strcmp(key, keys[i]) == 0;
        if (!known)
            add_err(errs, key, "Unknown field.");
    }
    const json_t *iv = json_object_get(score, "intervalSec");
    json_int_t every = 0;
    if (iv && !json_is_null(iv)) {
        every = json_integer_value(iv);
        if (!json_is_integer(iv) || every < 0 || (every > 0 && every < 60) || every > 365 * 86400)
            add_err(errs, "intervalSec", "0 (after promotions only) or 60 to 31536000.");
    }
    json_object_set_new(out, "intervalSec", json_integer(every));
    if (json_object_size(out) == ARRAY_LEN(keys) + 1) {
        struct store_collection *c = NULL;
        char msg[200];
        const char *field = NULL;
        if (target_check(ml->cfg.store, out, &c, msg, sizeof(msg), &field) != 0)
            add_err(errs, field, msg);
        store_collection_unref(c);
    }
    json_object_set_new(norm, "score", out);
}

void ml__queue_score(struct ml *ml, struct ml_model *m)
{
    if (!json_is_object(json_object_get(m->meta, "score")) || m->scoring || ml->stopping ||
        ml->n_queued >= ml->cfg.queue_max)
        return;
    ml__enqueue(ml, m, 0, json_deep_copy(json_object_get(m->meta, "score")));
}

int ml_score(struct ml *ml, const char *name)
{
    pthread_mutex_lock(&ml->mu);
    struct ml_model *m = ml__find(ml, name);
    int rc = !m                                                   ? ERR_NOTFOUND
             : !json_is_object(json_object_get(m->meta, "score")) ? ERR_INVALID
             : !m->active                                         ? ERR_BUSY
             : m->scoring                                         ? ERR_CONFLICT
             : ml->n_queued >= ml->cfg.queue_max                  ? ERR_LIMIT
                                                                  : 0;
    if (rc == 0)
        ml__queue_score(ml, m);
    pthread_mutex_unlock(&ml->mu);
    return rc;
}

/* ---- the run ---- */

struct run {
    struct ml *ml;
    struct ml_model *m;
    struct ml_serving *s;
    struct store_collection *c;
    const char *key_field, *score_field;
    const char *key_name; /* the query's key column */
    int key_col;
    size_t *feat_col; /* feature j of s is column feat_col[j] */
    char **keys;
    float *x;
    size_t n;
    uint64_t rows;
    char err[512];
};

#define run_fail(r, ...) ml__errf((r)->err, sizeof((r)->err), __VA_ARGS__)

/* The record id a key is stored under: 15 hex digits of FNV-1a 64 of the key (PocketBase's
 * id pattern [a-z0-9]{15}), so rescoring updates the same record. */
static void record_id(const char *key, char out[16])
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)h);
    memcpy(out, hex + 1, 15);
    out[15] = '\0';
}

static int flush(struct run *r)
{
    if (r->n == 0)
        return 0;
    const float *res = NULL;
    bst_ulong len = 0;
    int rc = ml__run_booster(r->s, r->x, r->n, 0, false, &res, &len, r->err, sizeof(r->err));
    if (rc)
        return rc;
    size_t k = r->s->task == ML_TASK_MULTICLASS ? (size_t)r->s->num_class : 1;
    if (len != r->n * k)
        return run_fail(r, "unexpected prediction shape");
    struct store_op *ops = xcalloc(r->n, sizeof(*ops));
    json_t **bodies = xcalloc(r->n, sizeof(*bodies));
    char ids[BATCH][16];
    for (size_t i = 0; i < r->n; i++) {
        double score = res[i * k];
        if (k > 1) {
            size_t best = 0;
            for (size_t c = 1; c < k; c++)
                if (res[i * k + c] > res[i * k + best])
                    best = c;
            score = (double)best;
        }
        record_id(r->keys[i], ids[i]);
        bodies[i] = json_pack("{s:s,s:s,s:f}", "id", ids[i], r->key_field, r->keys[i],
                              r->score_field, score);
        ops[i] =
            (struct store_op){.kind = STORE_OP_UPSERT, .c = r->c, .id = ids[i], .body = bodies[i]};
    }
    size_t failed = 0;
    rc = store_record_ops(r->ml->cfg.store, ops, r->n, &failed);
    if (rc) {
        char *e = failed < r->n && ops[failed].errors ? json_dumps(ops[failed].errors, JSON_COMPACT)
                                                      : NULL;
        run_fail(r, "cannot write the scores into %s: %s %s", r->c->name, err_str(rc),
                 e ? e : store_errmsg(r->ml->cfg.store));
        free(e);
    }
    for (size_t i = 0; i < r->n; i++) {
        json_decref(ops[i].record);
        json_decref(ops[i].errors);
        json_decref(bodies[i]);
        free(r->keys[i]);
    }
    free(ops);
    free(bodies);
    if (rc == 0)
        r->rows += r->n;
    r->n = 0;
    return rc ? ERR_INVALID : 0;
}

static int score_chunk(void *arg, const struct wh_scan_chunk *ch)
{
    struct run *r = arg;
    const struct ml_serving *s = r->s;
    if (atomic_load(&r->m->cancel))
        return run_fail(r, "cancelled");
    if (!r->feat_col) {
        r->key_col = -1;
        for (size_t c = 0; c < ch->n_cols; c++)
            if (strcmp(ch->cols[c].name, r->key_name) == 0 && ch->cols[c].kind != WH_COL_OTHER)
                r->key_col = (int)c;
        r->feat_col = xcalloc(s->n_features ? s->n_features : 1, sizeof(size_t));
        for (size_t j = 0; j < s->n_features; j++) {
            size_t c = 0;
            while (c < ch->n_cols && strcmp(ch->cols[c].name, s->features[j].name) != 0)
                c++;
            if (c == ch->n_cols)
                return run_fail(r, "the scoring query has no column %s (a feature of version %lld)",
                                s->features[j].name, (long long)s->version);
            enum wh_col_kind want = s->features[j].categorical ? WH_COL_TEXT : WH_COL_NUM;
            if (ch->cols[c].kind != want)
                return run_fail(r, "column %s must be %s", s->features[j].name,
                                want == WH_COL_TEXT ? "text (a category)" : "numeric");
            r->feat_col[j] = c;
        }
        return r->key_col < 0 ? run_fail(r, "the scoring query has no key column") : 0;
    }
    char kb[64];
    for (size_t i = 0; i < ch->n_rows; i++) {
        struct str key = ml__key_text(ch, (size_t)r->key_col, i, kb, sizeof(kb));
        r->keys[r->n] = xmalloc(key.len + 1);
        memcpy(r->keys[r->n], key.ptr, key.len);
        r->keys[r->n][key.len] = '\0';
        float *row = r->x + r->n * s->n_features;
        for (size_t j = 0; j < s->n_features; j++) {
            size_t c = r->feat_col[j];
            if (!s->features[j].categorical) {
                row[j] = (float)ch->num[c][i];
                continue;
            }
            const struct str *t = &ch->text[c][i];
            int code = t->ptr ? ml__category_code(&s->features[j], t->ptr, t->len) : -1;
            row[j] = code < 0 ? NAN : (float)code;
        }
        if (++r->n == BATCH) {
            int rc = flush(r);
            if (rc)
                return rc;
        }
    }
    return 0;
}

void ml__score_run(struct ml *ml, struct wh_conn **conn, struct ml_job *job)
{
    struct ml_model *m = job->m;
    struct run r = {.ml = ml,
                    .m = m,
                    .key_col = -1,
                    .key_name = json_string_value(json_object_get(job->spec, "key"))};
    char started[TIME_PB_LEN];
    time_format_pb(time_now_us(), started);
    int rc = 0;
    pthread_mutex_lock(&ml->mu);
    r.s = ml__serving_ref(m->active);
    pthread_mutex_unlock(&ml->mu);
    const char *field = NULL;
    if (!r.s) {
        rc = run_fail(&r, "the model has no active version");
    } else if ((rc = target_check(ml->cfg.store, job->spec, &r.c, r.err, sizeof(r.err), &field)) ==
               0) {
        r.key_field = json_string_value(json_object_get(job->spec, "keyField"));
        r.score_field = json_string_value(json_object_get(job->spec, "scoreField"));
        r.keys = xcalloc(BATCH, sizeof(char *));
        r.x = xmalloc(BATCH * (r.s->n_features ? r.s->n_features : 1) * sizeof(float));
        if (!*conn && wh_conn_open(ml->cfg.wh, conn) != 0)
            rc = run_fail(&r, "cannot open a warehouse connection: %s", wh_errmsg(NULL));
        if (!rc) {
            rc = wh_scan(*conn, json_string_value(json_object_get(job->spec, "query")), score_chunk,
                         &r);
            if (rc && !r.err[0])
                snprintf(r.err, sizeof(r.err), "%s", wh_errmsg(*conn));
        }
        if (!rc)
            rc = flush(&r);
        for (size_t i = 0; i < r.n; i++)
            free(r.keys[i]);
    }
    char finished[TIME_PB_LEN];
    time_format_pb(time_now_us(), finished);
    pthread_mutex_lock(&ml->mu);
    m->scoring = false;
    if (!m->deleted) {
        json_t *st = json_pack("{s:s,s:s,s:I,s:I,s:s}", "started", started, "finished", finished,
                               "version", (json_int_t)(r.s ? r.s->version : 0), "rows",
                               (json_int_t)r.rows, "status", rc ? "failed" : "ok");
        if (rc)
            json_object_set_new(st, "error", json_string(r.err));
        json_object_set_new(m->meta, "scoring", st);
        if (ml__persist(ml, m) != 0)
            xlog_warn("model %s: cannot record its scoring run", m->name);
    }
    pthread_mutex_unlock(&ml->mu);
    if (rc)
        xlog_warn("model %s: scoring failed after %llu rows: %s", m->name,
                  (unsigned long long)r.rows, r.err);
    free(r.keys);
    free(r.x);
    free(r.feat_col);
    store_collection_unref(r.c);
    ml__serving_unref(r.s);
}
