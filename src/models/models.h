/* models.h - SQL models: named SELECTs over the warehouse (events, changes, app_* mirrors,
 * other models), built as a view, a table or incrementally from the log, tested before they
 * are published, and synced back into a collection through the store (docs/models.md).
 *
 * Definitions live in the warehouse (_models) and are validated when saved: a model that does
 * not parse, writes, reads an unknown table or model, makes a cycle, does not bind, or has
 * columns its sync target cannot take is refused with the reason. The builds themselves
 * (write-audit-publish, tests, incremental ranges) are the warehouse's (wh_model_build).
 *
 * Threads: one runner thread owns its warehouse connection and runs every build and sync, one
 * model at a time, in dependency order; it wakes for requests (models_request_run), once a
 * second for schedules (cron) and log-record thresholds. The definition functions
 * (models_list ... models_runs) run on the caller's thread with the caller's warehouse
 * connection (the API's query threads): never on an HTTP thread. */
#ifndef TANDEM_MODELS_MODELS_H
#define TANDEM_MODELS_MODELS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

struct pipeline;

struct models_cfg {
    struct wh *wh;             /* borrowed */
    struct store *store;       /* borrowed; sync target */
    struct pipeline *pipeline; /* borrowed, or NULL: source freshness is then not checked */
    int64_t tick_us;           /* how often schedules and thresholds are checked; default 1 s */
    /* Called on the runner thread after a run published a new version of model (status
     * success or warn, whatever its sync did), once the run is recorded; it must only queue
     * work (the ML module's retraining after a data model run). NULL: nobody is told. */
    void (*on_publish)(void *arg, const char *model, const char *run_id);
    void *on_publish_arg;
};

struct models;

int models_start(const struct models_cfg *cfg, struct models **out) MUST_USE;
/* Interrupts the running build (its transaction rolls back as a whole: the published version
 * stays), drops the queued requests and joins the thread. NULL is fine. */
void models_stop(struct models *m);

/* Queues a run of the model name and every model that depends on it (in dependency order).
 * full_refresh: incremental models rebuild from every row; confirm: a sync may change more
 * than its share of rows. run_id_out receives the id of name's run (ID_LEN + 1 bytes).
 * ERR_LIMIT when the queue is full, ERR_BUSY when stopping. Any thread. */
int models_request_run(struct models *m, const char *name, bool full_refresh, bool confirm,
                       char *run_id_out) MUST_USE;

/* The runs queued or running now: [{"id","model","status":"queued"|"running","trigger"}]
 * (name NULL: of every model). RETURNS a new array. Any thread; m NULL gives []. */
json_t *models_pending(struct models *m, const char *name);

/* ---- definitions (caller's thread and warehouse connection) ---- */

#define MODELS_NAME_MAX 63

/* Every model: [{definition..., "dependsOn":[...], "lastRun":{...}|null}] by name. */
int models_list(struct wh_conn *c, json_t **out) MUST_USE;
/* One model; ERR_NOTFOUND. */
int models_get(struct wh_conn *c, const char *name, json_t **out) MUST_USE;
/* Creates (name NULL: the body's "name") or replaces (name given: the body is the complete
 * new definition; a different "name" in it is refused) a model. ERR_INVALID with *errors_out
 * ({"field":{"code","message"}}, the caller's) naming the problem; ERR_CONFLICT: a model or
 * table of that name exists (create); ERR_NOTFOUND (replace). *out: the saved model. */
int models_save(struct store *st, struct wh_conn *c, const char *name, const json_t *body,
                json_t **errors_out, json_t **out) MUST_USE;
/* Deletes the model and its published relation. ERR_NOTFOUND; ERR_CONFLICT (message in
 * *why_out, the caller's) when another model reads it. */
int models_delete(struct wh_conn *c, const char *name, char **why_out) MUST_USE;
/* The latest runs of a model (at most limit), newest first, each with its "tests". */
int models_runs(struct wh_conn *c, const char *name, int64_t limit, json_t **out) MUST_USE;

/* The latest run of the model that published a version (success, warn, or a sync that did
 * not apply after publishing): *out {"id","finishedAt" (as the SQL API gives a timestamp),"rows"},
 * the caller's. ERR_NOTFOUND when it never published. */
int models_published_run(struct wh_conn *c, const char *name, json_t **out) MUST_USE;

/* ---- pieces exposed for tests ---- */

/* A five-field cron expression (minute hour day-of-month month day-of-week; "*", lists,
 * ranges, steps). 0 or ERR_INVALID. */
int models_cron_check(const char *expr) MUST_USE;
/* Whether expr fires in the minute that contains t_us (UTC). */
bool models_cron_match(const char *expr, int64_t t_us);
/* The record id a sync gives the row whose key is key (15 characters of [a-z0-9] + NUL). */
void models_sync_id(const char *collection_id, const char *key, char out[16]);

#endif
