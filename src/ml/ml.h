/* ml.h - machine learning on warehouse data: gradient-boosted models (XGBoost) trained from
 * a warehouse query, evaluated on a deterministic validation split, kept as versions, and
 * served back to the application (HTTP predictions, the SQL function tandem_predict).
 * docs/ml.md describes every behaviour and names its test.
 *
 * Training runs on ONE worker thread owned by struct ml, fed by a bounded queue: never on the
 * caller's thread. The worker streams the query's rows from the warehouse (wh_scan) straight
 * into float arrays, splits them by a hash of the key column, trains round by round with early
 * stopping on the validation set, and writes a new version: the model file under
 * <dir>/ml/<name>/v<N>.ubj (written to a temporary name, synced, renamed) and its metadata
 * (metrics, importance, query, row counts, parameters) in the store (store_param_put, key
 * "ml.model.<name>"). A version becomes active by promotion (explicit, or automatic when it
 * beats the active one on the validation metric); only then does serving switch to it.
 *
 * Serving keeps the active version of each model in memory; predictions run on the caller's
 * thread (short: at most ML_PREDICT_MAX_ROWS rows). Promotions swap the version atomically;
 * a prediction that started keeps the version it started with.
 *
 * Threads: every function may be called from any thread, at the same time. */
#ifndef TANDEM_ML_ML_H
#define TANDEM_ML_ML_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct store;
struct wh;
struct evlog;
struct ml;
struct wh_conn;

#define ML_PREDICT_MAX_ROWS 10000
#define ML_NAME_MAX 64

struct ml_cfg {
    const char *dir;     /* the data directory: model files go under <dir>/ml/ */
    struct store *store; /* model metadata */
    struct wh *wh;       /* training data; tandem_predict is registered on it */
    struct evlog *log;   /* the "predictions" topic; NULL: predictions are not logged */
    uint64_t max_bytes;  /* training data held in memory (features + labels); 0: 1 GiB */
    size_t queue_max;    /* trainings waiting for the worker; 0: 16 */
    int nthread;         /* XGBoost threads when the request does not say; 0: all cores */
    /* The latest published run of the data model named model, read on the training worker
     * with its warehouse connection just before a version trained from that model reads its
     * table: {"id","finishedAt"} (a new reference), or NULL when it has none. NULL: versions
     * do not record the run. (main.c wires it to models_published_run.) */
    json_t *(*model_run)(struct wh_conn *c, const char *model);
};

/* Loads every model's metadata and active version, marks versions that were training when
 * the process stopped as failed, registers tandem_predict on cfg->wh and starts the worker.
 * On failure err says why. */
int ml_open(const struct ml_cfg *cfg, struct ml **out, char *err, size_t err_len) MUST_USE;
/* Cancels the running training, drops the queued ones (they are marked failed), joins the
 * worker. Serving keeps working until ml_free. */
void ml_stop(struct ml *ml);
/* After ml_stop, once no request and no warehouse query can reach ml. NULL: no-op. */
void ml_free(struct ml *ml);

/* Queues a training. spec (docs/ml.md, "Training"): name, query, task, label, key,
 * validFraction, numRounds, earlyStoppingRounds, params, categorical, rule, autoPromote.
 * ERR_INVALID with *errors_out ({"field":{"code":..,"message":..}}, the caller's) for a bad
 * spec or hyperparameter; ERR_LIMIT when the queue is full; ERR_CONFLICT when this model is
 * already queued or training. On 0 *out (the caller's) is {"name","version","status"}. */
int ml_train(struct ml *ml, const json_t *spec, json_t **errors_out, json_t **out) MUST_USE;
/* A data model published a new version (its run run_id): queues a retraining of every ML
 * model trained from it with retrainOnModelRun (docs/ml.md "Training from a data model"),
 * unless one is already queued or training. Only queues: safe on the models' runner thread.
 * Returns how many were queued. */
int ml_data_model_published(struct ml *ml, const char *model, const char *run_id);
/* Validates a training spec as ml_train does, without queueing it: 0 with *norm_out (the
 * normalised spec, the caller's), or ERR_INVALID with *errors_out. */
int ml_train_check(struct ml *ml, const json_t *spec, json_t **norm_out,
                   json_t **errors_out) MUST_USE;
/* Asks the model's queued or running training to stop (it ends as "cancelled").
 * ERR_NOTFOUND when nothing of this model is queued or running. */
int ml_cancel(struct ml *ml, const char *name) MUST_USE;

/* Queues a scoring job of the model (docs/ml.md "Scores in a collection"). ERR_NOTFOUND;
 * ERR_INVALID: the model has no `score` spec; ERR_BUSY: no active version; ERR_CONFLICT: one
 * is already queued or running; ERR_LIMIT: the queue is full. */
int ml_score(struct ml *ml, const char *name) MUST_USE;

/* The model with its versions, metrics and, while it trains, the round and validation metric
 * reached. ERR_NOTFOUND. *out is the caller's. */
int ml_model_get(struct ml *ml, const char *name, json_t **out) MUST_USE;
/* {"items":[model summary...]} */
int ml_model_list(struct ml *ml, json_t **out) MUST_USE;
/* Makes version the active one (serving switches at once). ERR_NOTFOUND (model or version),
 * ERR_INVALID when the version did not finish training. */
int ml_promote(struct ml *ml, const char *name, int64_t version) MUST_USE;
/* Makes the version that was active before the current one active again. ERR_NOTFOUND,
 * ERR_INVALID when there is no earlier active version. */
int ml_rollback(struct ml *ml, const char *name) MUST_USE;
/* Changes the predict rule (rule_set: rule may be NULL for superusers only) and/or
 * autoPromote of a model. ERR_NOTFOUND. */
int ml_model_update(struct ml *ml, const char *name, bool rule_set, const char *rule,
                    int auto_promote /* -1: unchanged */) MUST_USE;
/* Deletes the model, its versions and their files. ERR_NOTFOUND; ERR_CONFLICT while it
 * trains. */
int ml_model_delete(struct ml *ml, const char *name) MUST_USE;
/* The predict rule of the model into *rule_out (the caller's, free(); NULL means superusers
 * only). ERR_NOTFOUND. */
int ml_model_rule(struct ml *ml, const char *name, char **rule_out) MUST_USE;

/* Scores rows (a JSON array of objects keyed by feature name, 1..ML_PREDICT_MAX_ROWS) with
 * the active version. contribs adds per-feature SHAP contributions. ERR_INVALID with
 * *errors_out naming the field ("rows.<i>.<feature>"); ERR_NOTFOUND: no such model;
 * ERR_BUSY: the model has no active version. *out (the caller's) is {"model","version",
 * "predictions":[...]}. When a log was configured the call is appended to the "predictions"
 * topic (not waited for: a prediction is never held up by the log). */
int ml_predict(struct ml *ml, const char *name, const json_t *rows, bool contribs, json_t **out,
               json_t **errors_out) MUST_USE;

/* The text path of ml_predict (serve.c), for a predict request's body as sent: reads it in
 * place into a request of the active version (no JSON tree). ERR_NOTFOUND / ERR_BUSY as
 * ml_predict; ERR_INVALID when the body is not one this path takes (malformed, invalid,
 * contributions, escaped names or categories): then answer with ml_predict, which says why
 * or scores it. body must outlive the request. */
struct ml_request;
int ml_request_parse(struct ml *ml, const char *name, const char *body, size_t len,
                     struct ml_request **out) MUST_USE;
/* Scores it, logs it (as ml_predict) and writes the answer, ml_predict's JSON, as text into
 * *out (the caller's, free()). */
int ml_request_run(struct ml *ml, struct ml_request *r, char **out, size_t *out_len) MUST_USE;
void ml_request_free(struct ml_request *r);

/* The key split (docs/ml.md, "The split"): whether a row whose key is the text key[0..len)
 * goes to validation when a fraction of rows does. */
bool ml_split_is_valid(const char *key, size_t len, double fraction);

/* ---- metrics (metrics.c), on the validation set ---- */

/* Binary: y in {0,1}, p probabilities. {"auc","logloss","accuracy","precision","recall",
 * "f1","roc":[[fpr,tpr]...] (at most ~200 points)}. */
json_t *ml_metrics_binary(const float *y, const float *p, size_t n);
/* {"rmse","mae","r2"} */
json_t *ml_metrics_regression(const float *y, const float *p, size_t n);
/* p is n x k row-major probabilities. {"logloss","accuracy","confusion":[[..]..]} (rows:
 * true class, columns: predicted class). */
json_t *ml_metrics_multiclass(const float *y, const float *p, size_t n, size_t k);
/* The area under the ROC curve, ties counted half (as sklearn's roc_auc_score). NaN when one
 * class is absent. */
double ml_auc(const float *y, const float *p, size_t n);

#endif
