/* governance.h - personal data across the app, the event log and the warehouse: person
 * deletion jobs, the suppression list checked at capture, and person exports
 * (docs/governance.md).
 *
 * A deletion is a job stored in the store's system rows (kind "person_delete"), so it
 * survives a crash: one worker thread runs jobs one at a time, phase by phase, each phase
 * idempotent and recorded before the next begins; at start the worker resumes every job that
 * did not finish. Nothing here runs on an HTTP thread except gov_suppressed (a hash lookup
 * under a read lock) and the quick checks of a request.
 *
 * Threads: struct gov is shared; every function may be called from any thread. */
#ifndef TANDEM_GOVERNANCE_GOVERNANCE_H
#define TANDEM_GOVERNANCE_GOVERNANCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct store;
struct evlog;
struct wh;
struct pipeline;

#define GOV_MAX_IDS 1000     /* distinct ids of one person (given plus linked) */
#define GOV_MAX_ID_BYTES 200 /* one distinct id (PostHog's distinct_id is cut there too) */

struct audit;

struct gov_cfg {
    struct store *store;
    struct evlog *log;
    struct wh *wh;
    struct pipeline *pipeline; /* the loader: a job waits until it has loaded past a point */
    struct audit *audit;       /* a finished deletion is an audit entry; NULL: none */
};

struct gov;

/* Loads the suppression list and starts the worker, which resumes unfinished jobs. */
int gov_start(const struct gov_cfg *cfg, struct gov **out) MUST_USE;
/* Stops the worker after the phase it is in (the job resumes at the next start) and any
 * export still streaming, then frees g. NULL is a no-op. */
void gov_stop(struct gov *g);

/* Whether future events of this distinct id are dropped at capture. Any thread; cheap when
 * the list is empty. g NULL: false. */
bool gov_suppressed(struct gov *g, const char *id, size_t len);
bool gov_suppress_any(struct gov *g);

/* Checks a deletion request ({"distinctIds":[...]} or {"userId":"..."}, options
 * "deleteUser", "collection", "relations" (["collection.field", ...]: relation fields to the
 * auth collection whose records pointing at the user are deleted too), "suppress") and records
 * it as a queued job. default_relations (settings.persons.deleteRelations, or NULL): used
 * when the request has userId and no "relations"; only its relations to the request's auth
 * collection apply. *job_out (the
 * caller's): the job as gov_delete_get shows it. ERR_INVALID with a message in err naming
 * the field. */
int gov_delete_submit(struct gov *g, const json_t *req, const json_t *default_relations,
                      json_t **job_out, char *err, size_t err_len) MUST_USE;
/* Checks settings.persons.deleteRelations: at most 20 "collection.field" names, each a
 * relation field of a base or auth collection to an auth collection. ERR_INVALID with a
 * message ("[i]: ...") in err. */
int gov_check_relations(struct gov *g, const json_t *rels, char *err, size_t err_len) MUST_USE;
/* The job: {"id","status":"queued"|"running"|"done"|"failed","phase","request",
 * "distinctIds","logEnd","changesEnd","records":[[collectionId,recordId],...],
 * "erased":{"log","warehouse","user","records","changesLog","changesWarehouse"},"error",
 * "created","updated"}.
 * ERR_NOTFOUND. */
int gov_delete_get(struct gov *g, const char *id, json_t **out) MUST_USE;

/* ---- export ---- */

/* The person's document is produced by a thread into a bounded buffer; the HTTP stream pulls
 * from it. */
struct gov_export;
/* Called (on the producing thread) when bytes were added or the export ended. */
typedef void (*gov_export_wake_cb)(void *arg);
/* Starts the export of the person with this distinct id. ERR_BUSY when too many exports run;
 * ERR_INVALID for a bad id. The export holds one reference for the caller. */
int gov_export_start(struct gov *g, const char *distinct_id, const char *collection,
                     gov_export_wake_cb wake, void *wake_arg, struct gov_export **out) MUST_USE;
/* Copies at most max bytes into out: the count, 0 when nothing is ready yet (wake follows),
 * -1 at the end. */
long gov_export_read(struct gov_export *e, char *out, size_t max);
/* Drops the caller's reference; the producer stops early when the reader is gone. */
void gov_export_release(struct gov_export *e);

#endif
