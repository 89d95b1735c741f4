/* train.c - the training worker: validates a training spec, streams the query's rows from
 * the warehouse into float matrices (split by a hash of the key column), trains an XGBoost
 * booster round by round with early stopping on the validation set, evaluates it, writes the
 * model file durably and records the version (auto-promoting it when it beats the active
 * one). One worker thread; cancellation is checked between chunks and between rounds. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/datadir.h"
#include "ml/ml_int.h"
#include "warehouse/warehouse.h"

#define MAX_CATEGORIES 1000 /* distinct values of one text feature */
#define MAX_FEATURES 1000
#define QUERY_MAX 100000 /* bytes of SQL */

/* ---- the split ---- */

static uint64_t fnv1a64(const char *s, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

bool ml_split_is_valid(const char *key, size_t len, double fraction)
{
    return (double)(fnv1a64(key, len) % 10000) < fraction * 10000;
}

struct str ml__key_text(const struct wh_scan_chunk *ch, size_t col, size_t row, char *buf,
                        size_t buf_len)
{
    struct str key = {"", 0};
    if (ch->cols[col].kind == WH_COL_TEXT) {
        if (ch->text[col][row].ptr)
            key = ch->text[col][row];
        return key;
    }
    double k = ch->num[col][row];
    int n = 0;
    if (isnan(k))
        n = 0;
    else if (k == floor(k) && fabs(k) < 9007199254740992.0 && buf_len >= 24) {
        /* the decimal integer, as "%lld" writes it (this runs once per training row) */
        long long v = (long long)k;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        char tmp[24];
        int t = 0;
        do {
            tmp[t++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            buf[n++] = '-';
        while (t)
            buf[n++] = tmp[--t];
    } else if (k == floor(k) && fabs(k) < 9007199254740992.0)
        n = snprintf(buf, buf_len, "%lld", (long long)k);
    else
        n = snprintf(buf, buf_len, "%.17g", k);
    key.ptr = buf;
    key.len = n > 0 ? (size_t)n : 0;
    return key;
}

/* ---- the spec ---- */

enum ptype { P_NUM, P_INT, P_STR };
struct param_def {
    const char *name;
    enum ptype type;
    double lo, hi; /* inclusive bounds of numbers */
    bool lo_open;  /* lo itself is not allowed */
    const char *const *choices;
};

static const char *const tree_methods[] = {"hist", "approx", "exact", NULL};
static const char *const grow_policies[] = {"depthwise", "lossguide", NULL};
static const char *const metrics[] = {"logloss", "auc",  "aucpr",    "error",  "rmse",
                                      "mae",     "mape", "mlogloss", "merror", NULL};

static const struct param_def param_defs[] = {
    {"eta", P_NUM, 0, 1, true, NULL},
    {"learning_rate", P_NUM, 0, 1, true, NULL},
    {"max_depth", P_INT, 0, 32, false, NULL},
    {"min_child_weight", P_NUM, 0, 1e9, false, NULL},
    {"gamma", P_NUM, 0, 1e9, false, NULL},
    {"min_split_loss", P_NUM, 0, 1e9, false, NULL},
    {"subsample", P_NUM, 0, 1, true, NULL},
    {"colsample_bytree", P_NUM, 0, 1, true, NULL},
    {"colsample_bylevel", P_NUM, 0, 1, true, NULL},
    {"colsample_bynode", P_NUM, 0, 1, true, NULL},
    {"lambda", P_NUM, 0, 1e9, false, NULL},
    {"reg_lambda", P_NUM, 0, 1e9, false, NULL},
    {"alpha", P_NUM, 0, 1e9, false, NULL},
    {"reg_alpha", P_NUM, 0, 1e9, false, NULL},
    {"max_delta_step", P_NUM, 0, 1e9, false, NULL},
    {"scale_pos_weight", P_NUM, 0, 1e9, true, NULL},
    {"max_bin", P_INT, 2, 65536, false, NULL},
    {"max_leaves", P_INT, 0, 1 << 20, false, NULL},
    {"max_cat_to_onehot", P_INT, 1, 1000, false, NULL},
    {"seed", P_INT, 0, 2147483647, false, NULL},
    {"nthread", P_INT, 0, 256, false, NULL},
    {"base_score", P_NUM, -1e9, 1e9, false, NULL},
    {"tree_method", P_STR, 0, 0, false, tree_methods},
    {"grow_policy", P_STR, 0, 0, false, grow_policies},
    {"eval_metric", P_STR, 0, 0, false, metrics},
};

static void add_err(json_t *errs, const char *field, const char *code, const char *msg)
{
    if (!json_object_get(errs, field))
        json_object_set_new(errs, field, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ML_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A data model's name (docs/models.md): 1-63 of a-z 0-9 _, starting with a letter. */
static bool data_model_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63 || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static void check_params(const json_t *params, json_t *norm, json_t *errs, const char *task)
{
    json_t *out = json_object();
    json_object_set_new(norm, "params", out);
    if (params && !json_is_object(params)) {
        add_err(errs, "params", "validation_invalid_type", "Must be an object.");
        return;
    }
    const char *key;
    json_t *v;
    char field[160];
    json_object_foreach((json_t *)params, key, v)
    {
        snprintf(field, sizeof(field), "params.%.100s", key);
        const struct param_def *d = NULL;
        for (size_t i = 0; i < ARRAY_LEN(param_defs); i++)
            if (strcmp(param_defs[i].name, key) == 0)
                d = &param_defs[i];
        if (!d) {
            add_err(errs, field, "validation_unknown_param",
                    "Unknown or unsupported hyperparameter (docs/ml.md lists them).");
            continue;
        }
        if (d->type == P_STR) {
            const char *s = json_string_value(v);
            bool ok = false;
            for (size_t i = 0; s && d->choices[i]; i++)
                ok = ok || strcmp(s, d->choices[i]) == 0;
            if (!ok) {
                add_err(errs, field, "validation_invalid_value", "Not one of the allowed values.");
                continue;
            }
            if (strcmp(key, "eval_metric") == 0) {
                bool bin = strcmp(task, "binary") == 0, mc = strcmp(task, "multiclass") == 0;
                bool fits = bin  ? (strcmp(s, "logloss") == 0 || strcmp(s, "auc") == 0 ||
                                   strcmp(s, "aucpr") == 0 || strcmp(s, "error") == 0)
                            : mc ? (strcmp(s, "mlogloss") == 0 || strcmp(s, "merror") == 0)
                                 : (strcmp(s, "rmse") == 0 || strcmp(s, "mae") == 0 ||
                                    strcmp(s, "mape") == 0);
                if (!fits) {
                    add_err(errs, field, "validation_invalid_value",
                            "This metric does not fit the task.");
                    continue;
                }
            }
            json_object_set(out, key, v);
            continue;
        }
        if (!json_is_number(v) || (d->type == P_INT && !json_is_integer(v))) {
            add_err(errs, field, "validation_invalid_type",
                    d->type == P_INT ? "Must be an integer." : "Must be a number.");
            continue;
        }
        double x = json_number_value(v);
        if (!(x >= d->lo && x <= d->hi) || (d->lo_open && x <= d->lo)) {
            char msg[128];
            snprintf(msg, sizeof(msg), "Must be %s %g and at most %g.",
                     d->lo_open ? "greater than" : "at least", d->lo, d->hi);
            add_err(errs, field, "validation_out_of_range", msg);
            continue;
        }
        json_object_set(out, key, v);
    }
}

static int64_t int_opt(const json_t *spec, json_t *errs, const char *key, int64_t def, int64_t lo,
                       int64_t hi)
{
    const json_t *v = json_object_get(spec, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Must be an integer from %lld to %lld.", (long long)lo,
                 (long long)hi);
        add_err(errs, key, "validation_out_of_range", msg);
        return def;
    }
    return json_integer_value(v);
}

int ml__spec_check(const struct ml *ml, const json_t *spec, json_t **norm_out, json_t **errors_out)
{
    *norm_out = NULL;
    *errors_out = NULL;
    json_t *errs = json_object(), *norm = json_object();
    if (!json_is_object(spec)) {
        add_err(errs, "body", "validation_invalid_type", "Must be a JSON object.");
        goto out;
    }
    static const char *const known[] = {"name",
                                        "query",
                                        "model",
                                        "task",
                                        "label",
                                        "key",
                                        "validFraction",
                                        "numRounds",
                                        "earlyStoppingRounds",
                                        "params",
                                        "rule",
                                        "autoPromote",
                                        "retrainIntervalSec",
                                        "retrainOnModelRun",
                                        "score"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)spec, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < ARRAY_LEN(known); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok)
            add_err(errs, key, "validation_unknown_field", "Unknown field.");
    }
    const char *name = json_string_value(json_object_get(spec, "name"));
    if (!name_ok(name))
        add_err(errs, "name", "validation_invalid_format",
                "Must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -.");
    else
        json_object_set_new(norm, "name", json_string(name));
    const char *query = json_string_value(json_object_get(spec, "query"));
    const json_t *mj = json_object_get(spec, "model");
    bool from_model = mj && !json_is_null(mj);
    if (from_model) {
        /* a data model (docs/models.md): its published table is the query; that it exists is
         * checked by the caller, which can read the warehouse */
        const char *model = json_string_value(mj);
        if (json_object_get(spec, "query"))
            add_err(errs, "model", "validation_invalid_value",
                    "Give either a query or a data model, not both.");
        else if (!data_model_name_ok(model))
            add_err(errs, "model", "validation_invalid_format",
                    "A data model's name: 1 to 63 of a-z, 0-9 and _, starting with a letter.");
        else {
            char q[128];
            snprintf(q, sizeof(q), "SELECT * FROM \"%s\"", model);
            json_object_set_new(norm, "model", json_string(model));
            json_object_set_new(norm, "query", json_string(q));
        }
    } else if (!query || !*query || strlen(query) > QUERY_MAX) {
        add_err(errs, "query", "validation_required", "A SELECT query of at most 100000 bytes.");
    } else {
        json_object_set_new(norm, "query", json_string(query));
    }
    const json_t *rm = json_object_get(spec, "retrainOnModelRun");
    if (rm && !json_is_null(rm) && !json_is_boolean(rm))
        add_err(errs, "retrainOnModelRun", "validation_invalid_type", "Must be a bool.");
    else if (json_is_true(rm) && !from_model)
        add_err(errs, "retrainOnModelRun", "validation_invalid_value",
                "Only a model trained from a data model (`model`) can retrain after its runs.");
    json_object_set_new(norm, "retrainOnModelRun", json_boolean(json_is_true(rm)));
    const char *task = json_string_value(json_object_get(spec, "task"));
    enum ml_task t;
    if (ml__task_parse(task, &t) != 0) {
        add_err(errs, "task", "validation_invalid_value",
                "Must be binary, regression or multiclass.");
        task = "binary";
    } else {
        json_object_set_new(norm, "task", json_string(task));
    }
    const char *label = json_string_value(json_object_get(spec, "label"));
    const char *keycol = json_string_value(json_object_get(spec, "key"));
    if (!label || !*label)
        add_err(errs, "label", "validation_required", "The label column's name.");
    else
        json_object_set_new(norm, "label", json_string(label));
    if (!keycol || !*keycol)
        add_err(errs, "key", "validation_required", "The key column's name (it drives the split).");
    else if (label && strcmp(keycol, label) == 0)
        add_err(errs, "key", "validation_invalid_value", "The key cannot be the label.");
    else
        json_object_set_new(norm, "key", json_string(keycol));
    const json_t *vf = json_object_get(spec, "validFraction");
    double frac = 0.2;
    if (vf && !json_is_null(vf)) {
        frac = json_number_value(vf);
        if (!json_is_number(vf) || !(frac >= 0.01 && frac <= 0.9)) {
            add_err(errs, "validFraction", "validation_out_of_range", "Must be from 0.01 to 0.9.");
            frac = 0.2;
        }
    }
    json_object_set_new(norm, "validFraction", json_real(frac));
    json_object_set_new(norm, "numRounds",
                        json_integer(int_opt(spec, errs, "numRounds", 100, 1, 10000)));
    json_object_set_new(norm, "earlyStoppingRounds",
                        json_integer(int_opt(spec, errs, "earlyStoppingRounds", 10, 0, 10000)));
    json_object_set_new(norm, "retrainIntervalSec",
                        json_integer(int_opt(spec, errs, "retrainIntervalSec", 0, 0, 365 * 86400)));
    int64_t ri = json_integer_value(json_object_get(norm, "retrainIntervalSec"));
    if (ri > 0 && ri < 60)
        add_err(errs, "retrainIntervalSec", "validation_out_of_range", "0 (never) or at least 60.");
    check_params(json_object_get(spec, "params"), norm, errs, task);
    const json_t *score = json_object_get(spec, "score");
    if (score && !json_is_null(score))
        ml__score_spec_check(ml, score, norm, errs);
    const json_t *rule = json_object_get(spec, "rule");
    if (rule && !json_is_null(rule) && (!json_is_string(rule) || json_string_length(rule) > 4096))
        add_err(errs, "rule", "validation_invalid_type", "Must be a filter (string) or null.");
    json_object_set_new(norm, "rule",
                        json_is_string(rule) ? json_copy((json_t *)rule) : json_null());
    const json_t *ap = json_object_get(spec, "autoPromote");
    if (ap && !json_is_boolean(ap))
        add_err(errs, "autoPromote", "validation_invalid_type", "Must be a bool.");
    json_object_set_new(norm, "autoPromote", json_boolean(!ap || json_is_true(ap)));
out:
    if (json_object_size(errs)) {
        *errors_out = errs;
        json_decref(norm);
        return ERR_INVALID;
    }
    json_decref(errs);
    *norm_out = norm;
    return 0;
}

/* ---- loading the data ---- */

struct fbuf {
    float *x;
    size_t len, cap;
};

struct load {
    struct ml *ml;
    struct ml_model *m;
    const json_t *spec;
    enum ml_task task;
    double frac;
    /* columns */
    int label_col, key_col;
    size_t n_feat;
    size_t *feat_col; /* feature j is column feat_col[j] */
    struct ml_feature *feat;
    /* data */
    struct fbuf x[2], y[2]; /* [0] train, [1] valid */
    uint64_t skipped;
    double max_label;
    char err[512];
};

#define load_fail(L, ...) ml__errf((L)->err, sizeof((L)->err), __VA_ARGS__)

static int load_columns(struct load *L, const struct wh_scan_chunk *ch)
{
    const char *label = json_string_value(json_object_get(L->spec, "label"));
    const char *key = json_string_value(json_object_get(L->spec, "key"));
    L->label_col = L->key_col = -1;
    L->feat_col = xcalloc(ch->n_cols ? ch->n_cols : 1, sizeof(size_t));
    L->feat = xcalloc(ch->n_cols ? ch->n_cols : 1, sizeof(struct ml_feature));
    for (size_t j = 0; j < ch->n_cols; j++) {
        const struct wh_scan_col *c = &ch->cols[j];
        for (size_t k = 0; k < j; k++)
            if (strcmp(ch->cols[k].name, c->name) == 0)
                return load_fail(L, "the query gives two columns named %s", c->name);
        if (strcmp(c->name, label) == 0) {
            if (c->kind != WH_COL_NUM)
                return load_fail(L, "the label column %s must be numeric or boolean", label);
            L->label_col = (int)j;
        } else if (strcmp(c->name, key) == 0) {
            if (c->kind == WH_COL_OTHER)
                return load_fail(L, "the key column %s must be a number or text", key);
            L->key_col = (int)j;
        } else {
            if (c->kind == WH_COL_OTHER)
                return load_fail(L,
                                 "column %s has a type that cannot be a feature (cast it to a "
                                 "number or text)",
                                 c->name);
            if (L->n_feat >= MAX_FEATURES)
                return load_fail(L, "more than %d feature columns", MAX_FEATURES);
            L->feat_col[L->n_feat] = j;
            L->feat[L->n_feat].name = xstrdup(c->name);
            L->feat[L->n_feat].categorical = c->kind == WH_COL_TEXT;
            L->n_feat++;
        }
    }
    if (L->label_col < 0)
        return load_fail(L, "the query has no label column %s", label);
    if (L->key_col < 0)
        return load_fail(L, "the query has no key column %s", key);
    if (L->n_feat == 0)
        return load_fail(L, "the query has no feature column");
    return 0;
}

static int cat_code(struct ml_feature *f, struct str v, float *out)
{
    for (size_t k = 0; k < f->n_cats; k++)
        if (strlen(f->cats[k]) == v.len && memcmp(f->cats[k], v.ptr, v.len) == 0) {
            *out = (float)k;
            return 0;
        }
    if (f->n_cats >= MAX_CATEGORIES)
        return ERR_LIMIT;
    f->cats = xrealloc(f->cats, (f->n_cats + 1) * sizeof(char *));
    char *s = xmalloc(v.len + 1);
    memcpy(s, v.ptr, v.len);
    s[v.len] = '\0';
    f->cats[f->n_cats] = s;
    *out = (float)f->n_cats++;
    return 0;
}

/* Room for n more floats in b. */
static int fbuf_reserve(struct fbuf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    float *x = realloc(b->x, cap * sizeof(float));
    if (!x)
        return -ENOMEM;
    b->x = x;
    b->cap = cap;
    return 0;
}

static int load_chunk(void *arg, const struct wh_scan_chunk *ch)
{
    struct load *L = arg;
    if (atomic_load(&L->m->cancel))
        return ERR_BUSY;
    if (!L->feat_col)
        return load_columns(L, ch);
    const double *lab = ch->num[L->label_col];
    size_t nf = L->n_feat, n = ch->n_rows;
    /* the bound, once per chunk: every row of the chunk counted */
    uint64_t bytes =
        (uint64_t)(L->x[0].len + L->x[1].len + L->y[0].len + L->y[1].len + (nf + 1) * n) *
        sizeof(float);
    if (bytes > L->ml->cfg.max_bytes)
        return load_fail(L,
                         "the training data exceeds %llu bytes in memory (--ml-max-bytes); "
                         "sample the query or select fewer columns",
                         (unsigned long long)L->ml->cfg.max_bytes);
    for (int p = 0; p < 2; p++)
        if (fbuf_reserve(&L->x[p], nf * n) != 0 || fbuf_reserve(&L->y[p], n) != 0)
            return load_fail(L, "out of memory loading the training data");
    char kb[64];
    for (size_t i = 0; i < n; i++) {
        double y = lab[i];
        if (isnan(y)) {
            L->skipped++;
            continue;
        }
        if (L->task == ML_TASK_BINARY && y != 0 && y != 1)
            return load_fail(L, "the label of a binary model must be 0 or 1 (or a bool); %g found",
                             y);
        if (L->task == ML_TASK_MULTICLASS && (y < 0 || y >= 1000 || y != floor(y)))
            return load_fail(L,
                             "the label of a multiclass model must be a class number from 0 "
                             "to 999; %g found",
                             y);
        struct str key = ml__key_text(ch, (size_t)L->key_col, i, kb, sizeof(kb));
        int part = ml_split_is_valid(key.ptr, key.len, L->frac) ? 1 : 0;
        float *row = L->x[part].x + L->x[part].len;
        for (size_t j = 0; j < nf; j++) {
            size_t c = L->feat_col[j];
            if (ch->cols[c].kind == WH_COL_NUM) {
                row[j] = (float)ch->num[c][i];
            } else if (!ch->text[c][i].ptr) {
                row[j] = NAN;
            } else if (cat_code(&L->feat[j], ch->text[c][i], &row[j]) != 0) {
                return load_fail(L, "column %s has more than %d distinct values", L->feat[j].name,
                                 MAX_CATEGORIES);
            }
        }
        L->x[part].len += nf;
        L->y[part].x[L->y[part].len++] = (float)y;
        if (y > L->max_label)
            L->max_label = y;
    }
    return 0;
}

/* ---- training ---- */

static void set_progress(struct ml *ml, struct ml_model *m, int64_t round, double metric)
{
    pthread_mutex_lock(&ml->mu);
    m->round = round;
    m->round_metric = metric;
    pthread_mutex_unlock(&ml->mu);
}

/* path's file written whole or not at all (core/datadir.c). */
static int write_durable(const char *path, const void *data, size_t len, char *err, size_t err_len)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int rc = ERR_INVALID;
    if (slash) {
        *slash = '\0';
        rc = datadir_write_file(dir, slash + 1, data, len);
    }
    free(dir);
    if (rc)
        snprintf(err, err_len, "cannot write %s: %s", path, err_str(rc));
    return rc;
}

static int set_param(BoosterHandle b, const char *k, const char *v, char *err, size_t err_len)
{
    if (XGBoosterSetParam(b, k, v) != 0) {
        snprintf(err, err_len, "hyperparameter %s: %s", k, XGBGetLastError());
        return ERR_INVALID;
    }
    return 0;
}

static json_t *importance(BoosterHandle b, const char *type, const struct load *L)
{
    char cfg[64];
    snprintf(cfg, sizeof(cfg), "{\"importance_type\":\"%s\"}", type);
    bst_ulong n = 0, dim = 0;
    const char **names = NULL;
    const bst_ulong *shape = NULL;
    const float *scores = NULL;
    json_t *o = json_object();
    if (XGBoosterFeatureScore(b, cfg, &n, &names, &dim, &shape, &scores) != 0)
        return o;
    for (bst_ulong i = 0; i < n; i++) {
        /* without feature names XGBoost says f<index> */
        const char *nm = names[i];
        size_t j = nm[0] == 'f' ? (size_t)strtoul(nm + 1, NULL, 10) : L->n_feat;
        json_object_set_new(o, j < L->n_feat ? L->feat[j].name : nm, json_real(scores[i]));
    }
    return o;
}

static double parse_eval(const char *s)
{
    const char *c = s ? strrchr(s, ':') : NULL;
    return c ? strtod(c + 1, NULL) : NAN;
}

static DMatrixHandle make_dmatrix(const struct load *L, int part, bool any_cat, int nthread)
{
    DMatrixHandle d = NULL;
    size_t rows = L->y[part].len;
    if (XGDMatrixCreateFromMat_omp(L->x[part].x, rows, L->n_feat, NAN, &d, nthread) != 0)
        return NULL;
    if (XGDMatrixSetFloatInfo(d, "label", L->y[part].x, rows) != 0)
        goto fail;
    if (any_cat) {
        const char **types = xcalloc(L->n_feat, sizeof(char *));
        for (size_t j = 0; j < L->n_feat; j++)
            types[j] = L->feat[j].categorical ? "c" : "q";
        int r = XGDMatrixSetStrFeatureInfo(d, "feature_type", types, L->n_feat);
        free(types);
        if (r != 0)
            goto fail;
    }
    return d;
fail:
    XGDMatrixFree(d);
    return NULL;
}

/* Trains job's version. On success *ver_out holds the fields to record and *booster_out the
 * trained booster (the caller's). */
static int train(struct ml *ml, struct wh_conn *conn, struct ml_job *job, json_t *result,
                 BoosterHandle *booster_out, char *err, size_t err_len)
{
    struct load L = {.ml = ml, .m = job->m, .spec = job->spec};
    DMatrixHandle dm[2] = {NULL, NULL};
    BoosterHandle b = NULL, best_b = NULL;
    int rc;
    (void)ml__task_parse(json_string_value(json_object_get(job->spec, "task")), &L.task);
    L.frac = json_real_value(json_object_get(job->spec, "validFraction"));
    const char *query = json_string_value(json_object_get(job->spec, "query"));
    const char *dmodel = json_string_value(json_object_get(job->spec, "model"));
    if (dmodel) { /* which run of the data model published the table read below */
        json_t *run = ml->cfg.model_run ? ml->cfg.model_run(conn, dmodel) : NULL;
        json_object_set_new(
            result, "source",
            json_pack("{s:s,s:o}", "model", dmodel, "run", run ? run : json_null()));
    }
    rc = wh_scan(conn, query, load_chunk, &L);
    if (atomic_load(&job->m->cancel)) {
        rc = ERR_BUSY;
        snprintf(err, err_len, "cancelled");
        goto out;
    }
    if (rc) {
        snprintf(err, err_len, "%s", L.err[0] ? L.err : wh_errmsg(conn));
        goto out;
    }
    if (!L.feat_col)
        rc = load_fail(&L, "the query gave no columns");
    size_t n_tr = L.y[0].len, n_va = L.y[1].len;
    if (!rc && (n_tr == 0 || n_va == 0))
        rc = load_fail(&L, "the split left %zu training and %zu validation rows: both need rows",
                       n_tr, n_va);
    int num_class = L.task == ML_TASK_MULTICLASS ? (int)L.max_label + 1 : 0;
    if (!rc && L.task == ML_TASK_MULTICLASS && num_class < 2)
        rc = load_fail(&L, "a multiclass label needs at least two classes");
    if (rc) {
        snprintf(err, err_len, "%s", L.err);
        goto out;
    }
    bool any_cat = false;
    for (size_t j = 0; j < L.n_feat; j++)
        any_cat = any_cat || L.feat[j].categorical;
    const json_t *params = json_object_get(job->spec, "params");
    /* the copy into XGBoost's matrices uses the training's threads (0: all cores) */
    int nthread = json_is_integer(json_object_get(params, "nthread"))
                      ? (int)json_integer_value(json_object_get(params, "nthread"))
                      : ml->cfg.nthread;
    dm[0] = make_dmatrix(&L, 0, any_cat, nthread);
    dm[1] = dm[0] ? make_dmatrix(&L, 1, any_cat, nthread) : NULL;
    if (!dm[1]) {
        snprintf(err, err_len, "cannot build the training matrices: %s", XGBGetLastError());
        rc = ERR_INTERNAL;
        goto out;
    }
    /* free the row buffers early: XGBoost copied them */
    if (XGBoosterCreate(dm, 2, &b) != 0) {
        snprintf(err, err_len, "%s", XGBGetLastError());
        rc = ERR_INTERNAL;
        goto out;
    }
    const char *metric = json_string_value(json_object_get(params, "eval_metric"));
    if (!metric)
        metric = L.task == ML_TASK_BINARY       ? "logloss"
                 : L.task == ML_TASK_REGRESSION ? "rmse"
                                                : "mlogloss";
    const char *tm = json_string_value(json_object_get(params, "tree_method"));
    if (any_cat && tm && strcmp(tm, "exact") == 0) {
        snprintf(err, err_len, "categorical features need tree_method hist or approx");
        rc = ERR_INVALID;
        goto out;
    }
    char nb[32];
    rc = set_param(b, "objective",
                   L.task == ML_TASK_BINARY       ? "binary:logistic"
                   : L.task == ML_TASK_REGRESSION ? "reg:squarederror"
                                                  : "multi:softprob",
                   err, err_len);
    if (!rc && num_class) {
        snprintf(nb, sizeof(nb), "%d", num_class);
        rc = set_param(b, "num_class", nb, err, err_len);
    }
    if (!rc && !tm)
        rc = set_param(b, "tree_method", "hist", err, err_len);
    if (!rc && !json_object_get(params, "nthread") && ml->cfg.nthread > 0) {
        snprintf(nb, sizeof(nb), "%d", ml->cfg.nthread);
        rc = set_param(b, "nthread", nb, err, err_len);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)params, k, v)
    {
        if (rc)
            break;
        char val[64];
        if (json_is_string(v))
            snprintf(val, sizeof(val), "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(v));
        else
            snprintf(val, sizeof(val), "%.17g", json_number_value(v));
        rc = set_param(b, k, val, err, err_len);
    }
    if (!rc)
        rc = set_param(b, "eval_metric", metric, err, err_len);
    if (rc)
        goto out;
    int64_t rounds = json_integer_value(json_object_get(job->spec, "numRounds"));
    int64_t es = json_integer_value(json_object_get(job->spec, "earlyStoppingRounds"));
    bool higher = ml__metric_higher_better(metric);
    double best = NAN;
    int64_t best_it = -1, done = 0;
    const char *names[1] = {"valid"};
    for (int64_t it = 0; it < rounds; it++) {
        if (atomic_load(&job->m->cancel)) {
            snprintf(err, err_len, "cancelled");
            rc = ERR_BUSY;
            goto out;
        }
        const char *ev = NULL;
        if (XGBoosterUpdateOneIter(b, (int)it, dm[0]) != 0 ||
            XGBoosterEvalOneIter(b, (int)it, &dm[1], names, 1, &ev) != 0) {
            snprintf(err, err_len, "%s", XGBGetLastError());
            rc = ERR_INTERNAL;
            goto out;
        }
        double score = parse_eval(ev);
        done = it + 1;
        set_progress(ml, job->m, it, score);
        if (best_it < 0 || (higher ? score > best : score < best)) {
            best = score;
            best_it = it;
        }
        if (es > 0 && it - best_it >= es)
            break;
    }
    /* keep the trees up to the best round: the file then predicts what was evaluated */
    if (es > 0 && best_it + 1 < done) {
        if (XGBoosterSlice(b, 0, (int)best_it + 1, 1, &best_b) != 0) {
            snprintf(err, err_len, "%s", XGBGetLastError());
            rc = ERR_INTERNAL;
            goto out;
        }
        XGBoosterFree(b);
        b = best_b;
        best_b = NULL;
    } else {
        best_it = done - 1;
        const char *ev = NULL;
        if (XGBoosterEvalOneIter(b, (int)best_it, &dm[1], names, 1, &ev) == 0)
            best = parse_eval(ev);
    }
    /* metrics on the validation set */
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    const float *pred = NULL;
    if (XGBoosterPredictFromDMatrix(b, dm[1],
                                    "{\"type\":0,\"training\":false,\"iteration_begin\":0,"
                                    "\"iteration_end\":0,\"strict_shape\":false}",
                                    &shape, &dim, &pred) != 0) {
        snprintf(err, err_len, "%s", XGBGetLastError());
        rc = ERR_INTERNAL;
        goto out;
    }
    json_t *mt = L.task == ML_TASK_BINARY ? ml_metrics_binary(L.y[1].x, pred, n_va)
                 : L.task == ML_TASK_REGRESSION
                     ? ml_metrics_regression(L.y[1].x, pred, n_va)
                     : ml_metrics_multiclass(L.y[1].x, pred, n_va, (size_t)num_class);
    json_t *feats = json_array();
    for (size_t j = 0; j < L.n_feat; j++) {
        json_t *f = json_pack("{s:s,s:s}", "name", L.feat[j].name, "type",
                              L.feat[j].categorical ? "categorical" : "numeric");
        if (L.feat[j].categorical) {
            json_t *cats = json_array();
            for (size_t c = 0; c < L.feat[j].n_cats; c++)
                json_array_append_new(cats, json_string(L.feat[j].cats[c]));
            json_object_set_new(f, "categories", cats);
        }
        json_array_append_new(feats, f);
    }
    json_object_set_new(result, "task", json_string(ml__task_name(L.task)));
    json_object_set_new(result, "numClass", json_integer(num_class));
    json_object_set_new(result, "features", feats);
    json_object_set_new(result, "metrics", mt);
    json_object_set_new(result, "metric",
                        json_pack("{s:s,s:o}", "name", metric, "value",
                                  isfinite(best) ? json_real(best) : json_null()));
    json_object_set_new(result, "rounds", json_integer(done));
    json_object_set_new(result, "bestIteration", json_integer(best_it));
    json_object_set_new(result, "rows",
                        json_pack("{s:I,s:I,s:I}", "train", (json_int_t)n_tr, "valid",
                                  (json_int_t)n_va, "skipped", (json_int_t)L.skipped));
    json_object_set_new(result, "importance",
                        json_pack("{s:o,s:o}", "gain", importance(b, "total_gain", &L), "weight",
                                  importance(b, "weight", &L)));
    *booster_out = b;
    b = NULL;
out:
    if (best_b)
        XGBoosterFree(best_b);
    if (b)
        XGBoosterFree(b);
    for (int i = 0; i < 2; i++) {
        if (dm[i])
            XGDMatrixFree(dm[i]);
        free(L.x[i].x);
        free(L.y[i].x);
    }
    for (size_t j = 0; j < L.n_feat; j++) {
        for (size_t c = 0; c < L.feat[j].n_cats; c++)
            free(L.feat[j].cats[c]);
        free(L.feat[j].cats);
        free(L.feat[j].name);
    }
    free(L.feat);
    free(L.feat_col);
    return rc;
}

static void set_status(struct ml *ml, struct ml_model *m, int64_t v, const char *status)
{
    pthread_mutex_lock(&ml->mu);
    json_t *ver = ml__version(m, v);
    if (ver) {
        json_object_set_new(ver, "status", json_string(status));
        if (ml__persist(ml, m) != 0)
            xlog_warn("model %s: cannot record version %lld as %s", m->name, (long long)v, status);
    }
    pthread_mutex_unlock(&ml->mu);
}

static void run_job(struct ml *ml, struct wh_conn **conn, struct ml_job *job)
{
    struct ml_model *m = job->m;
    char err[1024] = "";
    json_t *result = json_object();
    BoosterHandle b = NULL;
    int rc = 0;
    set_status(ml, m, job->version, "training");
    int64_t t0 = time_mono_us();
    if (!*conn && wh_conn_open(ml->cfg.wh, conn) != 0) {
        snprintf(err, sizeof(err), "cannot open a warehouse connection: %s", wh_errmsg(NULL));
        rc = ERR_INTERNAL;
    }
    if (!rc)
        rc = train(ml, *conn, job, result, &b, err, sizeof(err));
    char *path = ml__model_path(ml, m->name, job->version);
    if (!rc) {
        bst_ulong len = 0;
        const char *bytes = NULL;
        char *dir = xstrdup(path);
        *strrchr(dir, '/') = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, sizeof(err), "cannot create %s: %s", dir, strerror(errno));
            rc = -errno;
        } else if (XGBoosterSaveModelToBuffer(b, "{\"format\":\"ubj\"}", &len, &bytes) != 0) {
            snprintf(err, sizeof(err), "%s", XGBGetLastError());
            rc = ERR_INTERNAL;
        } else {
            rc = write_durable(path, bytes, len, err, sizeof(err));
        }
        free(dir);
    }
    char now[TIME_PB_LEN];
    time_format_pb(time_now_us(), now);
    pthread_mutex_lock(&ml->mu);
    json_t *ver = ml__version(m, job->version);
    if (ver && !m->deleted) {
        json_object_update(ver, result);
        json_object_set_new(ver, "finished", json_string(now));
        json_object_set_new(ver, "trainingMs", json_integer((time_mono_us() - t0) / 1000));
        json_object_set_new(ver, "status",
                            json_string(rc == 0 ? "ready"
                                        : rc == ERR_BUSY && strcmp(err, "cancelled") == 0
                                            ? "cancelled"
                                            : "failed"));
        if (rc)
            json_object_set_new(ver, "error", json_string(err));
        if (!rc) {
            /* auto-promotion: the first version, or one that beats the active one */
            bool promote = !m->active;
            json_t *act = m->active ? ml__version(m, m->active->version) : NULL;
            const char *mn =
                json_string_value(json_object_get(json_object_get(ver, "metric"), "name"));
            json_t *a_metric = act ? json_object_get(act, "metric") : NULL;
            if (act && json_is_true(json_object_get(m->meta, "autoPromote")) && mn &&
                strcmp(mn, json_string_value(json_object_get(a_metric, "name")) ?: "") == 0) {
                double nv =
                    json_number_value(json_object_get(json_object_get(ver, "metric"), "value"));
                double av = json_number_value(json_object_get(a_metric, "value"));
                promote = ml__metric_higher_better(mn) ? nv > av : nv < av;
            }
            json_object_set_new(ver, "autoPromoted", json_boolean(promote));
            if (promote) {
                ml__activate(m, ml__serving_new(m->name, ver, b));
                b = NULL;
                ml__queue_score(ml, m);
            }
        }
    }
    m->training = 0;
    m->round = -1;
    if (!ml->stopping) /* a cancel is for this training only, not for a later scoring run */
        atomic_store(&m->cancel, false);
    if (ver && !m->deleted && ml__persist(ml, m) != 0)
        xlog_error("model %s: cannot record version %lld", m->name, (long long)job->version);
    pthread_mutex_unlock(&ml->mu);
    if (rc)
        xlog_warn("model %s: version %lld did not train: %s", m->name, (long long)job->version,
                  err);
    if (rc && !strstr(err, "cannot write"))
        unlink(path);
    free(path);
    if (b)
        XGBoosterFree(b);
    json_decref(result);
}

/* Queues a new version of m with the spec of its latest version (under ml->mu): trigger
 * "schedule" (retrainIntervalSec) or "modelRun" (its data model published run run_id). */
static bool queue_version(struct ml *ml, struct ml_model *m, const char *trigger,
                          const char *run_id)
{
    json_t *vs = json_object_get(m->meta, "versions");
    json_t *last = json_array_get(vs, json_array_size(vs) - 1);
    json_t *spec = json_object_get(last, "spec");
    if (!spec)
        return false;
    int64_t v = json_integer_value(json_object_get(m->meta, "nextVersion"));
    char ts[TIME_PB_LEN];
    time_format_pb(time_now_us(), ts);
    json_object_set_new(m->meta, "nextVersion", json_integer(v + 1));
    json_t *ver = json_pack("{s:I,s:s,s:s,s:O,s:s}", "version", (json_int_t)v, "status", "queued",
                            "created", ts, "spec", spec, "trigger", trigger);
    if (strcmp(trigger, "schedule") == 0)
        json_object_set_new(ver, "scheduled", json_true());
    if (run_id)
        json_object_set_new(ver, "triggerRun", json_string(run_id));
    json_array_append_new(vs, ver);
    if (ml__persist(ml, m) != 0) {
        json_array_remove(vs, json_array_size(vs) - 1);
        return false;
    }
    m->round = -1;
    atomic_store(&m->cancel, false);
    ml__enqueue(ml, m, v, json_incref(spec));
    return true;
}

/* Queues a retraining of every model whose interval has passed, and a scoring of every
 * model whose scoring interval has (under ml->mu). */
static void schedule_retrains(struct ml *ml)
{
    int64_t now = time_now_us();
    for (size_t i = 0; i < ml->n_models && ml->n_queued < ml->cfg.queue_max; i++) {
        struct ml_model *m = ml->models[i];
        const json_t *sc = json_object_get(m->meta, "score");
        int64_t severy = json_integer_value(json_object_get(sc, "intervalSec"));
        if (severy > 0 && m->active && !m->scoring) {
            const char *lr =
                json_string_value(json_object_get(json_object_get(m->meta, "scoring"), "started"));
            int64_t at = 0;
            if (!lr || time_parse(lr, strlen(lr), &at) != 0 || now - at >= severy * 1000000)
                ml__queue_score(ml, m);
        }
        int64_t every = json_integer_value(json_object_get(m->meta, "retrainIntervalSec"));
        if (every <= 0 || m->training)
            continue;
        json_t *vs = json_object_get(m->meta, "versions");
        json_t *last = json_array_get(vs, json_array_size(vs) - 1);
        int64_t at = 0;
        const char *c = json_string_value(json_object_get(last, "created"));
        if (!c || time_parse(c, strlen(c), &at) != 0 || now - at < every * 1000000)
            continue;
        (void)queue_version(ml, m, "schedule", NULL);
    }
}

int ml_data_model_published(struct ml *ml, const char *model, const char *run_id)
{
    int n = 0;
    pthread_mutex_lock(&ml->mu);
    for (size_t i = 0; i < ml->n_models && !ml->stopping; i++) {
        struct ml_model *m = ml->models[i];
        const char *src = json_string_value(json_object_get(m->meta, "model"));
        if (m->deleted || m->training || !src || strcmp(src, model) != 0 ||
            !json_is_true(json_object_get(m->meta, "retrainOnModelRun")))
            continue;
        if (ml->n_queued >= ml->cfg.queue_max) {
            xlog_warn("model %s: not retrained after run %s of %s: the training queue is full",
                      m->name, run_id, model);
            continue;
        }
        n += queue_version(ml, m, "modelRun", run_id) ? 1 : 0;
    }
    pthread_mutex_unlock(&ml->mu);
    return n;
}

void *ml__worker_main(void *arg)
{
    struct ml *ml = arg;
    struct wh_conn *conn = NULL;
    pthread_mutex_lock(&ml->mu);
    while (!ml->stopping) {
        schedule_retrains(ml);
        if (!ml->head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 5;
            pthread_cond_timedwait(&ml->cv, &ml->mu, &ts);
            continue;
        }
        struct ml_job *j = ml->head;
        ml->head = j->next;
        if (!ml->head)
            ml->tail = NULL;
        ml->n_queued--;
        pthread_mutex_unlock(&ml->mu);
        if (j->score)
            ml__score_run(ml, &conn, j);
        else
            run_job(ml, &conn, j);
        json_decref(j->spec);
        free(j);
        pthread_mutex_lock(&ml->mu);
    }
    /* what is still queued did not train */
    while (ml->head) {
        struct ml_job *j = ml->head;
        ml->head = j->next;
        ml->n_queued--;
        json_t *ver = j->score ? NULL : ml__version(j->m, j->version);
        j->m->scoring = j->score ? false : j->m->scoring;
        if (ver) {
            json_object_set_new(ver, "status", json_string("failed"));
            json_object_set_new(ver, "error", json_string("the server stopped before training"));
            if (ml__persist(ml, j->m) != 0)
                xlog_warn("model %s: cannot record version %lld as failed", j->m->name,
                          (long long)j->version);
        }
        if (!j->score)
            j->m->training = 0;
        json_decref(j->spec);
        free(j);
    }
    ml->tail = NULL;
    pthread_mutex_unlock(&ml->mu);
    wh_conn_close(conn);
    return NULL;
}
