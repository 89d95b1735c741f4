/* models_int.h - shared by the files of models/ only. */
#ifndef TANDEM_MODELS_MODELS_INT_H
#define TANDEM_MODELS_MODELS_INT_H

#include "models/models.h"

#define MODELS_SYNC_BATCH 500        /* records per store transaction */
#define MODELS_SYNC_MAX_ROWS 1000000 /* rows of a synced model */
#define MODELS_MAX_MODELS 1000
#define MODELS_MAX_SQL (256 * 1024)
#define MODELS_MAX_TESTS 100

/* def.c */

/* Every stored definition, as an object name -> spec (in name order). */
int models__load(struct wh_conn *c, json_t **defs_out) MUST_USE;
/* The names a spec reads (its SQL's references plus the "to" of relationships tests), as
 * stored in its "dependsOn" (computed when it was saved). RETURNS BORROWED. */
const json_t *models__deps(const json_t *spec);
/* Models in dependency order (every model after the models it reads): an array of names.
 * Only models of defs; names that are not models are ignored. */
json_t *models__order(const json_t *defs);
/* names plus every model that reads one of them, directly or not. RETURNS a new set
 * (object name -> true). */
json_t *models__downstream(const json_t *defs, const json_t *names);
/* Whether the model reads events or changes, directly or through other models. */
bool models__reads_log(const json_t *defs, const char *name, bool *events, bool *changes);

/* sync.c */

/* Syncs the published rows of model into the collection spec names ({"collection","key",
 * "delete","maxChangeShare"}). *out: {"status":"done"|"needs_confirmation"|"failed",
 * "created","updated","deleted","unchanged","message"}. Returns 0 when *out says what
 * happened. */
int models__sync(struct store *st, struct wh_conn *c, const char *model, const json_t *sync,
                 bool confirm, json_t **out) MUST_USE;
/* Checks that columns ([{"name","type"}]) fit the sync target; errors into *why. */
int models__sync_check(struct store *st, const json_t *sync, const json_t *columns, char *why,
                       size_t why_len) MUST_USE;

#endif
