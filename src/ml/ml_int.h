/* ml_int.h - shared by the files of ml/ only. */
#ifndef TANDEM_ML_ML_INT_H
#define TANDEM_ML_ML_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <xgboost/c_api.h>

#include "ml/ml.h"
#include "warehouse/warehouse.h"

enum ml_task { ML_TASK_BINARY, ML_TASK_REGRESSION, ML_TASK_MULTICLASS };

/* One feature of a version: a numeric column, or a text column whose values are categories
 * (codes 0..n_cats-1 in first-seen order of the training scan). */
struct ml_feature {
    char *name;
    bool categorical;
    char **cats;
    size_t n_cats;
};

/* A version loaded for serving: immutable once built, shared by predictions (refs). */
struct ml_serving {
    atomic_int refs;
    BoosterHandle booster;
    /* the same model with nthread 1 (NULL if the copy failed): small batches, and
     * tandem_predict, whose chunks DuckDB already scores on several threads at once, do not
     * pay for waking (or oversubscribing) XGBoost's OpenMP threads */
    BoosterHandle booster1;
    char *name;
    int64_t version;
    enum ml_task task;
    int num_class;
    struct ml_feature *features;
    size_t n_features;
    bool any_categorical;
};

/* A model. name and the pointer itself live until ml_free (a deleted model is unlinked and
 * kept in ml->dead); everything else is under ml->mu. */
struct ml_model {
    char *name;
    json_t *meta;              /* the stored document (docs/ml.md, "Versions") */
    struct ml_serving *active; /* NULL: no active version */
    int64_t training;          /* version queued or running, 0: none */
    int64_t round;             /* the running training's last finished round, -1: none yet */
    double round_metric;       /* its validation metric */
    atomic_bool cancel;        /* set by ml_cancel / ml_stop, read by the worker */
    bool scoring;              /* a scoring job is queued or running */
    bool deleted;
};

struct ml_job {
    struct ml_model *m;
    bool score; /* a scoring job (score.c), not a training */
    int64_t version;
    json_t *spec; /* the validated spec of this training (owned) */
    struct ml_job *next;
};

struct ml {
    struct ml_cfg cfg;
    char *dir; /* <data dir>/ml */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ml_model **models;
    size_t n_models;
    struct ml_model **dead;
    size_t n_dead;
    struct ml_job *head, *tail;
    size_t n_queued;
    bool stopping, started;
    pthread_t worker;
};

/* registry.c */
/* requests of at most this many rows are scored on one thread (booster1) */
#define ML__SMALL_BATCH 256
/* Formats a failure into buf and returns ERR_INVALID. */
int ml__errf(char *buf, size_t len, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Appends a job to the worker's queue and wakes it (under ml->mu): a training of version
 * (> 0), or a scoring run (version 0). TAKES spec. */
void ml__enqueue(struct ml *ml, struct ml_model *m, int64_t version, json_t *spec);
/* The model named name (under ml->mu), or NULL. */
struct ml_model *ml__find(struct ml *ml, const char *name);
/* Writes m->meta to the store (under ml->mu). */
int ml__persist(struct ml *ml, struct ml_model *m) MUST_USE;
/* The version object of m with this number, or NULL (under ml->mu). */
json_t *ml__version(struct ml_model *m, int64_t version);
/* Builds a serving handle from a version object and its booster. TAKES booster. */
struct ml_serving *ml__serving_new(const char *name, const json_t *ver, BoosterHandle booster);
void ml__serving_unref(struct ml_serving *s);
/* Loads the booster of version ver of model name from its file. */
int ml__serving_load(struct ml *ml, const char *name, const json_t *ver,
                     struct ml_serving **out) MUST_USE;
struct ml_serving *ml__serving_ref(struct ml_serving *s);
/* A reference to the active version of the model (unref it); NULL with *rc_out ERR_NOTFOUND
 * (no model) or ERR_BUSY (no active version). */
struct ml_serving *ml__active_ref(struct ml *ml, const char *name, int *rc_out);
/* Runs s's booster over n rows of its features (row-major, NaN missing). type: 0 scores,
 * 2 contributions. one_thread: the caller is one of several threads scoring at once, or n is
 * small: use the single-threaded copy. *out_len floats in *res (XGBoost's thread-local buffer: copy
 * before the next call on this thread). */
int ml__run_booster(const struct ml_serving *s, const float *x, size_t n, int type, bool one_thread,
                    const float **res, bst_ulong *out_len, char *err, size_t err_len) MUST_USE;
/* The code of category v[0..len) of f, or -1 when training never saw it. */
int ml__category_code(const struct ml_feature *f, const char *v, size_t len);
/* Makes s (TAKES it) the active version of m and records it in meta (under ml->mu). */
void ml__activate(struct ml_model *m, struct ml_serving *s);
const char *ml__task_name(enum ml_task t);
int ml__task_parse(const char *s, enum ml_task *out);
/* Whether a higher value of the validation metric is better. */
bool ml__metric_higher_better(const char *metric);

/* score.c */
/* Queues a scoring job of m when it has a `score` spec and none is queued (under ml->mu). */
void ml__queue_score(struct ml *ml, struct ml_model *m);
/* Runs a scoring job on the worker (docs/ml.md "Scores in a collection"). */
void ml__score_run(struct ml *ml, struct wh_conn **conn, struct ml_job *job);
/* Validates a spec's "score" object into norm (errors under "score.<field>"). */
void ml__score_spec_check(const struct ml *ml, const json_t *score, json_t *norm, json_t *errs);
/* The text a key column's value hashes and is stored as: the string, or a number's decimal
 * integer form (%.17g when not an integer); "" for NULL. buf holds at least 40 bytes. */
struct str ml__key_text(const struct wh_scan_chunk *ch, size_t col, size_t row, char *buf,
                        size_t buf_len);

/* train.c */
/* Validates spec into a normalised copy (defaults filled in). ERR_INVALID with *errors_out. */
int ml__spec_check(const struct ml *ml, const json_t *spec, json_t **norm_out,
                   json_t **errors_out) MUST_USE;
void *ml__worker_main(void *arg);
/* The file of version v of model name: <dir>/<name>/v<v>.ubj (the caller frees). */
char *ml__model_path(const struct ml *ml, const char *name, int64_t v);

#endif
