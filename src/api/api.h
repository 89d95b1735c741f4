/* api.h - the HTTP resources: one file per resource group. Handlers parse the request, call
 * a domain module and render the answer; no SQL here. */
#ifndef TANDEM_API_API_H
#define TANDEM_API_API_H

#include "auth/auth.h"
#include "capture/capture.h"
#include "core/core.h"
#include "http/http.h"

struct store;
struct evlog;
struct capture_dedup;
struct pipeline;
struct wh;
struct api_sql;
struct api_writer;
struct realtime_hub;
struct api_public;
struct mail;
struct models;
struct api_admin;
struct ops_cron;
struct pipeline_relay;
struct ml;
struct gov;
struct storage;
struct storage_pool;
struct audit;

typedef void (*api_hash_done_cb)(void *done_arg, int rc, const char *hash);

/* Bounds of the record and auth routes, so that no guest request can hold a server thread or
 * much memory for long (docs/records.md). A field left 0 takes its default. */
struct api_record_limits {
    int64_t timeout_ms;      /* store work of one request; 400 when it runs out */
    uint64_t max_body;       /* bytes of a request body; 413 past it */
    size_t max_keys;         /* top-level keys (form fields) of a body; 400 past it */
    size_t max_expand_bytes; /* expanded records in one response, as JSON; 400 past it */
};
#define API_RECORDS_TIMEOUT_MS 5000
#define API_RECORDS_MAX_BODY (UINT64_C(8) << 20)
#define API_RECORDS_MAX_KEYS 1000
#define API_RECORDS_MAX_EXPAND ((size_t)8 << 20)

/* What the handlers need from the running process; filled by main, read-only afterwards
 * (the handles themselves are safe to use from any thread). */
struct api_env {
    const struct cfg *cfg;
    struct auth_secret *secret;
    struct auth_pool *pool;    /* password hashing off the HTTP threads */
    struct auth_ratelimit *rl; /* NULL when rate limiting is off */
    struct store *store;       /* collections and records */
    struct evlog *log;         /* the durable event log */
    struct capture_dedup *dedup;
    struct pipeline *pipeline;     /* the warehouse loader, for its status */
    struct api_sql *sql;           /* the warehouse query threads (api_sql_start) */
    struct api_writer *writer;     /* the group-commit writer of record creates, or NULL */
    struct api_settings *settings; /* /api/settings (api_settings_open), or NULL */
    struct api_batcher *batcher;   /* the /api/batch thread (api_batch_start), or NULL */
    struct realtime_hub *realtime; /* the realtime hub (api_realtime_start), or NULL */
    struct api_public *pub;        /* static files at / (api_public_open), or NULL */
    struct mail *mail;             /* the mail queue (api_mail_start), or NULL: no mail */
    struct models *models;         /* the SQL models' runner (models_start), or NULL */
    struct auth_oauth2 *oauth2;    /* OAuth2 provider calls off the HTTP threads, or NULL */
    struct ml *ml;                 /* models and predictions (ml_open), or NULL */
    struct wh *wh;                 /* the warehouse (backups copy it), or NULL */
    struct pipeline_relay *relay;  /* the outbox relay (paused by backups), or NULL */
    struct ops_cron *cron;         /* the server's periodic jobs, or NULL */
    struct api_admin *admin;       /* the backup thread (api_admin_start), or NULL */
    struct api_logs *logs;         /* the request log writer (api_logs_start), or NULL */
    struct audit *audit;           /* the audit trail (audit_open), or NULL: none kept */
    struct gov *gov; /* person deletion, suppression and export (gov_start), or NULL */
    /* Asks the process to stop and start again (a restore applies at start). NULL: a restore
     * is marked and applies at the next start. Called on the admin thread. */
    void (*restart)(void *arg);
    void *restart_arg;
    /* file fields (api_files_start; NULL without): their storage, the pool writing uploads
     * (they wait on fsync) and the pool making thumbnails (CPU: a few threads at most) */
    struct storage *storage;
    struct storage_pool *files_pool;
    struct storage_pool *thumbs_pool;
    struct capture_limits capture_limits;
    struct api_record_limits records; /* defaults filled in by api_register */
    /* Write key -> source name (see capture_input.resolve_key). */
    int (*resolve_key)(void *arg, const char *key, char *name_out, size_t name_cap);
    void *resolve_arg;
    /* Whether the request is made by a superuser (the auth module checks its token).
     * NULL: nobody is. Called on the HTTP thread. */
    bool (*is_superuser)(struct http_req *req, void *arg);
    void *auth_arg;
    /* Starts hashing the password of an auth record (slow: it must not run on the calling
     * HTTP thread). On 0, done(done_arg, rc, hash) is called exactly once, on any thread
     * (possibly before hash_password returns); hash is valid during the call only. Non-zero:
     * nothing was started and done is never called. NULL: records with a password cannot
     * be written (503). */
    int (*hash_password)(const char *password, api_hash_done_cb done, void *done_arg, void *arg);
};

/* Fills the capture dedup set with the pairs of the last window_us: from its snapshot in the
 * data directory when one belongs to this log, plus the events logged after it. A tail of more
 * than 200,000 events is read by a thread while capture answers 503 (Retry-After: 1); a
 * damaged or foreign snapshot is ignored with a warning. */
int api_capture_warm(struct api_env *env, int64_t window_us) MUST_USE;
/* Whether capture takes events (false while api_capture_warm's thread still reads the log). */
bool api_capture_ready(void);
/* Snapshots the set every interval_us (0: only at stop) when events were logged since. */
int api_capture_start(struct api_env *env, int64_t interval_us) MUST_USE;
/* Stops the snapshot and warm-up threads and writes a last snapshot; call once the HTTP server
 * is closed (no capture runs). */
void api_capture_stop(struct api_env *env);

/* Starts the threads that run SQL API queries against wh. api_sql_stop interrupts running
 * queries, answers every queued and running one and joins the threads: call it before the
 * HTTP server closes, so no suspended request outlives its server. A thread stuck inside one
 * long engine call is waited for at most ~2 s, then left running (detached). Returns how many
 * threads were left running: then wh must stay open (wh_close would pull the engine from
 * under them) and the process should end with _exit. */
int api_sql_start(struct api_env *env, struct wh *wh) MUST_USE;
size_t api_sql_stop(struct api_env *env);
/* Frees what api_sql_start made, once no request can reach it (after the server closed); with
 * a thread still running it leaves the pool allocated for that thread. */
void api_sql_free(struct api_env *env);

/* Starts the writer thread that commits record creates in groups (needs env->store; without
 * it every create is its own transaction on the HTTP thread). api_records_stop refuses new
 * creates (503), commits and answers every queued one and joins the thread: call it before
 * the HTTP server closes, so no suspended request outlives its server. api_records_free frees
 * the rest once no request can reach it (after the server closed). */
int api_records_start(struct api_env *env) MUST_USE;
void api_records_stop(struct api_env *env);
void api_records_free(struct api_env *env);

/* Loads the application settings from env->store (PocketBase's defaults where none are
 * stored) and applies them to env->rl (unless --ratelimit was given) and to the client
 * address of rate-limited requests (trustedProxy). Call after env is filled, before
 * api_register. api_settings_free once no request can reach them. */
int api_settings_open(struct api_env *env) MUST_USE;
void api_settings_free(struct api_env *env);

/* Starts the thread that runs /api/batch transactions (needs env->store). api_batch_stop
 * answers what is queued (503), finishes the running batch and joins the thread: call it
 * before the HTTP server closes. api_batch_free frees it once no request can reach it. */
int api_batch_start(struct api_env *env) MUST_USE;
void api_batch_stop(struct api_env *env);
void api_batch_free(struct api_env *env);
/* Starts the realtime hub (needs env->store and env->log; options from env->cfg, defaults
 * without). api_realtime_stop stops it and ends every SSE stream: call it before the HTTP
 * server closes. api_realtime_free frees it once no request can reach it. */
int api_realtime_start(struct api_env *env) MUST_USE;
void api_realtime_stop(struct api_env *env);
void api_realtime_free(struct api_env *env);
/* Prepares static hosting from env->cfg (--public, --index-fallback): with "auto" the
 * directory <dir>/../tandem_public if it exists, nothing with "off" or an empty value; a
 * named directory must exist (negative, with a message in err, when not). Call before
 * api_register; api_public_free once no request can reach it. */
int api_public_open(struct api_env *env, char *err, size_t err_len) MUST_USE;
void api_public_free(struct api_env *env);
/* Starts the mail queue's sender thread (env->mail) over env->store, sending with
 * settings.smtp (api_settings_open first). api_mail_stop joins it once no request can queue
 * more mail (after the HTTP server closed). */
int api_mail_start(struct api_env *env) MUST_USE;
void api_mail_stop(struct api_env *env);

/* Starts the thread that makes backups and restores for /api/backups (needs env->cfg, store
 * and log; env->wh, relay and cron when they run). api_admin_stop finishes and answers the job
 * it runs and joins the thread: call it before the HTTP server closes. api_admin_free once no
 * request can reach it. Call api_admin_start before api_settings_open, which schedules the
 * backups of settings.backups.cron in env->cron. */
int api_admin_start(struct api_env *env) MUST_USE;
void api_admin_stop(struct api_env *env);
void api_admin_free(struct api_env *env);
/* The largest backup archive POST /api/backups/upload takes (the body is held in memory). */
#define API_BACKUP_MAX_UPLOAD (UINT64_C(256) << 20)
/* Starts the thread that appends request log entries to the `requests` topic (needs env->log;
 * registers the __pbLogsCleanup__ job when env->cron and env->wh are set: call it after they
 * are). api_logs_stop writes what is queued, joins the thread and frees it: call it after the
 * HTTP server closed, before the log closes. */
int api_logs_start(struct api_env *env) MUST_USE;
void api_logs_stop(struct api_env *env);
/* Opens the file storage under dir (<dir>/storage), starts the worker pool for uploads and
 * thumbnails and sweeps orphans: files of records, fields or collections that no longer
 * exist, and uploads whose record never committed (needs env->store). Call before the server
 * accepts requests. api_files_stop finishes queued work (call before the HTTP server
 * closes); api_files_free once no request can reach them. Without it file fields cannot be
 * written (503) or served (404). */
int api_files_start(struct api_env *env, const char *dir) MUST_USE;
void api_files_stop(struct api_env *env);
void api_files_free(struct api_env *env);

/* Registers every route. env must outlive the router. */
void api_register(struct http_router *r, struct api_env *env);

#endif
