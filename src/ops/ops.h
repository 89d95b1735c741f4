/* ops.h - the server's own operations: the cron registry of periodic jobs and backups of the
 * data directory (docs/operations.md).
 *
 * Cron: a job has an id, a schedule (five fields "min hour day-of-month month day-of-week",
 * UTC, or a macro such as "@daily") and a callback. One scheduler thread runs the jobs that are
 * due at each minute and the ones asked for by ops_cron_run, one job at a time, never on the
 * caller's thread. Any module may register a job:
 *
 *     ops_cron_add(cron, "__mailQueue__", "* * * * *", mail_retry_job, mail);
 *
 * Threads: every ops_cron_* function may be called from any thread, except ops_cron_free.
 * A callback runs on the scheduler thread with no lock held; it may call ops_cron_add/remove.
 *
 * Backups: one archive (<dir>/backups/<name>.tar.gz) holding a consistent copy of app.db (the
 * SQLite online backup API), the event log up to a synced offset per topic, the warehouse
 * (checkpointed, copied while its writers wait) and the secret, taken while the server
 * serves. Restoring marks the archive; the next start (ops_backup_apply_pending) replaces the
 * data directory with it before anything is opened. */
#ifndef TANDEM_OPS_OPS_H
#define TANDEM_OPS_OPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

/* ---- cron ---- */

/* A parsed schedule: one bit per allowed value of each field. */
struct ops_cron_sched {
    uint64_t minutes; /* bits 0..59 */
    uint32_t hours;   /* bits 0..23 */
    uint32_t days;    /* bits 1..31 */
    uint16_t months;  /* bits 1..12 */
    uint8_t weekdays; /* bits 0..6, Sunday 0 */
};

/* Parses "m h dom mon dow" (each field "*", "*\/n", "a", "a-b", "a-b/n" or a comma list of
 * those) or a macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly).
 * ERR_INVALID otherwise. */
int ops_cron_parse(const char *expr, struct ops_cron_sched *out) MUST_USE;
/* Whether the schedule is due at the minute holding unix time t_s (UTC): every field matches. */
bool ops_cron_due(const struct ops_cron_sched *s, int64_t t_s);

typedef void (*ops_cron_job_cb)(void *arg);

struct ops_cron;

/* Starts the scheduler thread. */
int ops_cron_new(struct ops_cron **out) MUST_USE;
/* Stops the thread after the job it runs (if any) and frees every job. NULL is a no-op. */
void ops_cron_free(struct ops_cron *c);
/* Registers job id (1..64 characters of [A-Za-z0-9_-]) or replaces its schedule and callback.
 * ERR_INVALID for a bad id or expression. */
int ops_cron_add(struct ops_cron *c, const char *id, const char *expr, ops_cron_job_cb fn,
                 void *arg) MUST_USE;
/* Removes a job (a run already started finishes). ERR_NOTFOUND when there is none. */
int ops_cron_remove(struct ops_cron *c, const char *id);
/* Asks the scheduler thread to run the job now (returns at once). ERR_NOTFOUND. */
int ops_cron_run(struct ops_cron *c, const char *id) MUST_USE;
/* Whether ops_cron_free was called: a long job asks between its steps and ends early (it
 * must leave its work resumable by the next run). */
bool ops_cron_stopping(struct ops_cron *c);
/* [{"id":..., "expression":...}] sorted by id, the "__" system jobs last (PocketBase's order).
 * RETURNS a new reference. */
json_t *ops_cron_list(struct ops_cron *c);

/* ---- backups ---- */

struct store;
struct evlog;
struct wh;
struct pipeline_relay;

/* What a backup reads; all borrowed and shared with the running server. */
struct ops_backup_src {
    const char *dir; /* the data directory */
    struct store *store;
    struct evlog *log;
    struct wh *wh;                /* NULL: no warehouse in the archive */
    struct pipeline_relay *relay; /* paused around the store copy; NULL when none runs */
};

#define OPS_BACKUP_SUFFIX ".tar.gz"
#define OPS_BACKUP_NAME_MAX 150

/* A backup name: [a-z0-9_-]+ then ".tar.gz", at most OPS_BACKUP_NAME_MAX characters. */
bool ops_backup_name_valid(const char *name);
/* "<prefix>YYYYMMDDhhmmss.tar.gz" for now (UTC) into out. */
void ops_backup_default_name(const char *prefix, char *out, size_t cap);
/* Writes <dir>/backups/<name> (see the header comment). ERR_CONFLICT when the name exists or
 * another backup or restore runs; ERR_INVALID for a bad name; detail in err. Slow: never on an
 * HTTP thread. */
int ops_backup_create(const struct ops_backup_src *src, const char *name, char *err,
                      size_t err_len) MUST_USE;
/* [{"key","size","modified"}] of <dir>/backups, newest first. */
int ops_backup_list(const char *dir, json_t **out) MUST_USE;
/* Deletes one archive; ERR_NOTFOUND, ERR_INVALID (name), ERR_CONFLICT (being restored). */
int ops_backup_delete(const char *dir, const char *name) MUST_USE;
/* Keeps the newest `keep` archives whose names start with prefix and deletes the others. */
int ops_backup_prune(const char *dir, const char *prefix, int64_t keep) MUST_USE;
/* Opens <dir>/backups/<name> for reading; *size_out its size. */
int ops_backup_open(const char *dir, const char *name, int *fd_out, uint64_t *size_out) MUST_USE;
/* Stores an uploaded archive as <dir>/backups/<name> after checking that it reads as one
 * (ERR_INVALID otherwise, ERR_CONFLICT when the name exists). */
int ops_backup_store(const char *dir, const char *name, const void *data, size_t len, char *err,
                     size_t err_len) MUST_USE;
/* Marks name to be restored at the next start (after checking it reads as an archive). */
int ops_backup_mark_restore(const char *dir, const char *name, char *err, size_t err_len) MUST_USE;
/* At start, before anything in dir is opened: removes what an interrupted backup or upload
 * left in <dir>/backups (temporary files, never an archive); when a restore is marked, replaces
 * app.db, the log, the warehouse and the secret with the archive's. Safe to run again after a crash
 * at any step. 0 also when nothing was marked; *applied_out says whether something was restored. */
int ops_backup_apply_pending(const char *dir, bool *applied_out, char *err,
                             size_t err_len) MUST_USE;

#endif
