/* admin.c - /api/crons, /api/backups and /api/sql (superusers), PocketBase's routes and
 * answers.
 *
 * Threads: the HTTP thread checks the request and answers what is quick (lists, deletes,
 * downloads as a file reply). The rest runs on two lanes, each one thread with a bounded
 * queue; the request is suspended until its job is answered:
 *   - backups: a backup, an upload (its archive is read through) and a restore (the same,
 *     then a restart); one at a time, a second one answers 400 as PocketBase does;
 *   - sql: SQL console statements, one at a time in arrival order, up to SQL_QUEUE waiting
 *     (503 past it). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/records_int.h"
#include "ops/ops.h"
#include "pipeline/pipeline.h"
#include "store/store.h"

#define AUTO_BACKUP_JOB "__pbAutoBackup__"
#define AUTO_BACKUP_PREFIX "auto_backup_"
#define BUSY_MESSAGE "Try again later - another backup/restore operation has already been started."

#define SQL_QUEUE 16
#define SQL_MAX_BYTES ((size_t)32 << 20)

enum admin_kind { JOB_CREATE, JOB_UPLOAD, JOB_RESTORE, JOB_SQL };
enum { LANE_BACKUPS, LANE_SQL, N_LANES };

struct admin_job {
    enum admin_kind kind;
    struct http_req *req; /* suspended; answered and resumed by the lane's thread */
    char name[OPS_BACKUP_NAME_MAX + 1];
    struct str data; /* upload: the archive, a view into the request body */
    const char *sql; /* JOB_SQL: in the request's arena */
    struct admin_job *next;
};

struct lane {
    struct api_admin *ad;
    pthread_t thread;
    pthread_cond_t cond;
    struct admin_job *head, *tail; /* [ad->lock] */
    size_t n, cap;                 /* [ad->lock] queued (and running) jobs, their bound */
    bool started;
};

struct api_admin {
    struct api_env *env;
    pthread_mutex_t lock; /* leaf: guards the lanes' queues, stop, max_keep */
    struct lane lanes[N_LANES];
    bool stop;
    /* the scheduled backup's settings, read by the cron job */
    int64_t max_keep;
};

static void backup_src(struct api_env *env, struct ops_backup_src *src)
{
    *src = (struct ops_backup_src){.dir = env->cfg->dir,
                                   .store = env->store,
                                   .log = env->log,
                                   .wh = env->wh,
                                   .relay = env->relay};
}

static void run_job(struct api_admin *ad, struct admin_job *job)
{
    struct api_env *env = ad->env;
    char err[512] = "";
    int rc;
    bool restart = false;
    if (job->kind == JOB_CREATE) {
        struct ops_backup_src src;
        backup_src(env, &src);
        rc = ops_backup_create(&src, job->name, err, sizeof(err));
    } else if (job->kind == JOB_UPLOAD) {
        rc = ops_backup_store(env->cfg->dir, job->name, job->data.ptr, job->data.len, err,
                              sizeof(err));
    } else {
        rc = ops_backup_mark_restore(env->cfg->dir, job->name, err, sizeof(err));
        restart = rc == 0;
    }
    if (rc == 0) {
        http_reply_empty(job->req, 204);
    } else if (rc == ERR_INVALID || rc == ERR_CONFLICT || rc == ERR_BUSY || rc == ERR_NOTFOUND) {
        json_t *data = NULL;
        if (rc == ERR_INVALID)
            data = json_pack("{s:{s:s,s:s}}", job->kind == JOB_CREATE ? "name" : "file", "code",
                             "validation_invalid_value", "message", err);
        const char *msg =
            rc == ERR_BUSY                                   ? BUSY_MESSAGE
            : job->kind == JOB_RESTORE && rc == ERR_INVALID  ? "Missing or invalid backup file."
            : job->kind == JOB_RESTORE || rc == ERR_CONFLICT ? err
                                                             : "Failed to submit the backup form.";
        http_reply_error(job->req, 400, msg, data);
    } else {
        xlog_error("backup operation failed: %s", err);
        http_reply_error(job->req, 500, NULL, NULL);
    }
    http_req_resume(job->req);
    if (restart && env->restart) {
        xlog_info("restarting to restore backup %s", job->name);
        env->restart(env->restart_arg);
    }
}

static void run_sql(struct api_env *env, struct admin_job *job);

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    struct api_admin *ad = l->ad;
    pthread_mutex_lock(&ad->lock);
    for (;;) {
        while (!l->head && !ad->stop)
            pthread_cond_wait(&l->cond, &ad->lock);
        if (!l->head)
            break; /* stopping with nothing queued */
        /* taken off the queue before it runs: the job lives in its request's arena, which is
         * gone once the job has answered; n still counts it until it is done */
        struct admin_job *job = l->head;
        l->head = job->next;
        if (!l->head)
            l->tail = NULL;
        pthread_mutex_unlock(&ad->lock);
        if (job->kind == JOB_SQL)
            run_sql(ad->env, job);
        else
            run_job(ad, job);
        pthread_mutex_lock(&ad->lock);
        l->n--;
    }
    pthread_mutex_unlock(&ad->lock);
    return NULL;
}

/* One SQL console statement (sql lane): PocketBase's {execTime, affectedRows, columns, rows}. */
static void run_sql(struct api_env *env, struct admin_job *job)
{
    struct store_sql_result res;
    int64_t t0 = time_mono_us();
    int64_t timeout_us =
        env->cfg && env->cfg->sql_timeout > 0 ? env->cfg->sql_timeout * 1000000 : 30000000;
    size_t max_rows =
        env->cfg && env->cfg->sql_max_rows > 0 ? (size_t)env->cfg->sql_max_rows : 10000;
    int rc = store_sql(env->store, job->sql, max_rows, SQL_MAX_BYTES, t0 + timeout_us, &res);
    if (rc == 0) {
        double ms = (double)(time_mono_us() - t0) / 1000.0;
        http_reply_json(job->req, 200,
                        json_pack("{s:f,s:I,s:o,s:o}", "execTime", ms, "affectedRows",
                                  (json_int_t)res.affected, "columns", res.columns, "rows",
                                  res.rows));
        if (res.affected > 0)
            pipeline_relay_kick(env->relay);
    } else if (rc == ERR_INVALID || rc == ERR_DENIED || rc == ERR_LIMIT || rc == ERR_TIMEOUT) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s",
                 rc == ERR_TIMEOUT ? "The statement took too long and was stopped; nothing "
                                     "was changed."
                                   : store_errmsg(env->store));
        http_reply_error(job->req, 400, msg, NULL);
    } else {
        xlog_error("sql console: %s", store_errmsg(env->store));
        http_reply_error(job->req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
    }
    http_req_resume(job->req);
}

/* The scheduled backup (cron thread): a new archive, then the oldest ones beyond maxKeep. */
static void auto_backup(void *arg)
{
    struct api_env *env = arg;
    struct ops_backup_src src;
    char name[OPS_BACKUP_NAME_MAX + 1], err[512];
    backup_src(env, &src);
    ops_backup_default_name(AUTO_BACKUP_PREFIX, name, sizeof(name));
    if (ops_backup_create(&src, name, err, sizeof(err)) != 0)
        return; /* logged by ops */
    pthread_mutex_lock(&env->admin->lock);
    int64_t keep = env->admin->max_keep;
    pthread_mutex_unlock(&env->admin->lock);
    if (ops_backup_prune(env->cfg->dir, AUTO_BACKUP_PREFIX, keep) != 0)
        xlog_warn("cannot delete old scheduled backups");
}

void api__backups_schedule(struct api_env *env, const char *cron, int64_t max_keep)
{
    if (!env->cron || !env->admin)
        return;
    pthread_mutex_lock(&env->admin->lock);
    env->admin->max_keep = max_keep > 0 ? max_keep : 1;
    pthread_mutex_unlock(&env->admin->lock);
    if (!cron || !*cron)
        (void)ops_cron_remove(env->cron, AUTO_BACKUP_JOB);
    else if (ops_cron_add(env->cron, AUTO_BACKUP_JOB, cron, auto_backup, env) != 0)
        xlog_warn("settings: invalid backups.cron '%s'", cron);
}

void api_admin_stop(struct api_env *env)
{
    struct api_admin *ad = env->admin;
    if (!ad)
        return;
    pthread_mutex_lock(&ad->lock);
    ad->stop = true;
    for (int i = 0; i < N_LANES; i++)
        pthread_cond_signal(&ad->lanes[i].cond);
    pthread_mutex_unlock(&ad->lock);
    /* each lane answers what it holds first (new jobs are refused once stop is set) */
    for (int i = 0; i < N_LANES; i++)
        if (ad->lanes[i].started)
            pthread_join(ad->lanes[i].thread, NULL);
}

void api_admin_free(struct api_env *env)
{
    struct api_admin *ad = env->admin;
    if (!ad)
        return;
    for (int i = 0; i < N_LANES; i++)
        pthread_cond_destroy(&ad->lanes[i].cond);
    pthread_mutex_destroy(&ad->lock);
    free(ad);
    env->admin = NULL;
}

/* __pbDBOptimize__ (cron thread): PocketBase's nightly upkeep of the store, SQLite's
 * PRAGMA optimize (statistics for the query planner) and a WAL checkpoint. */
static void db_optimize(void *arg)
{
    struct api_env *env = arg;
    struct store_sql_result res;
    if (store_sql(env->store, "PRAGMA optimize", 1, 4096, 0, &res) == 0)
        store_sql_result_release(&res);
    else
        xlog_warn("db optimize: %s", store_errmsg(env->store));
    if (store_sync(env->store) != 0)
        xlog_warn("db optimize: checkpoint: %s", store_errmsg(env->store));
}

int api_admin_start(struct api_env *env)
{
    struct api_admin *ad = xcalloc(1, sizeof(*ad));
    ad->env = env;
    ad->max_keep = 3;
    pthread_mutex_init(&ad->lock, NULL);
    env->admin = ad;
    for (int i = 0; i < N_LANES; i++) {
        struct lane *l = &ad->lanes[i];
        l->ad = ad;
        l->cap = i == LANE_SQL ? SQL_QUEUE : 1;
        pthread_cond_init(&l->cond, NULL);
    }
    for (int i = 0; i < N_LANES; i++) {
        struct lane *l = &ad->lanes[i];
        if (pthread_create(&l->thread, NULL, lane_main, l) != 0) {
            api_admin_stop(env);
            api_admin_free(env);
            return ERR_INTERNAL;
        }
        l->started = true;
    }
    if (env->cron && env->store &&
        ops_cron_add(env->cron, "__pbDBOptimize__", "0 0 * * *", db_optimize, env) != 0)
        xlog_warn("cannot register the db optimize job");
    return 0;
}

/* Queues job (in req's arena) on a lane, or answers: 400 busy (backups) / 503 (sql). */
static void submit(struct api_env *env, struct http_req *req, struct admin_job *job)
{
    struct api_admin *ad = env->admin;
    if (!ad) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    struct lane *l = &ad->lanes[job->kind == JOB_SQL ? LANE_SQL : LANE_BACKUPS];
    job->req = req;
    job->next = NULL;
    pthread_mutex_lock(&ad->lock);
    bool taken = l->n >= l->cap || ad->stop;
    if (!taken) {
        http_req_suspend(req);
        if (l->tail)
            l->tail->next = job;
        else
            l->head = job;
        l->tail = job;
        l->n++;
        pthread_cond_signal(&l->cond);
    }
    pthread_mutex_unlock(&ad->lock);
    if (taken && job->kind == JOB_SQL)
        http_reply_error(req, 503, "Too many SQL statements are waiting; try again later.", NULL);
    else if (taken)
        http_reply_error(req, 400, BUSY_MESSAGE, NULL);
}

/* ---- crons ---- */

static void list_crons(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    http_reply_json(req, 200, env->cron ? ops_cron_list(env->cron) : json_array());
}

static void run_cron(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    if (!env->cron || ops_cron_run(env->cron, http_req_param(req, "id")) != 0) {
        http_reply_error(req, 404, "Missing or invalid cron job.", NULL);
        return;
    }
    http_reply_empty(req, 204);
}

/* ---- backups ---- */

static void list_backups(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *items = NULL;
    if (ops_backup_list(env->cfg->dir, &items) != 0) {
        http_reply_error(req, 500, NULL, NULL);
        return;
    }
    http_reply_json(req, 200, items);
}

static void name_error(struct http_req *req, const char *field)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "Must be 1 to %d characters of a-z, 0-9, _ or - ending with %s.",
             OPS_BACKUP_NAME_MAX, OPS_BACKUP_SUFFIX);
    http_reply_error(
        req, 400, "An error occurred while validating the submitted data.",
        json_pack("{s:{s:s,s:s}}", field, "code", "validation_match_invalid", "message", msg));
}

static void create_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, true);
    if (!body && http_replied(req))
        return;
    const json_t *name = body ? json_object_get(body, "name") : NULL;
    struct admin_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->kind = JOB_CREATE;
    if (name && !json_is_null(name) && !(json_is_string(name) && !*json_string_value(name))) {
        if (!json_is_string(name) || !ops_backup_name_valid(json_string_value(name))) {
            name_error(req, "name");
            return;
        }
        snprintf(job->name, sizeof(job->name), "%s", json_string_value(name));
    } else {
        ops_backup_default_name("pb_backup_", job->name, sizeof(job->name));
    }
    submit(env, req, job);
}

static void upload_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    const char *ctype = http_req_header(req, "Content-Type");
    struct admin_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->kind = JOB_UPLOAD;
    struct api_uploads ups = {.arena = http_req_arena(req)};
    json_t *fields = json_object();
    int rc = ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0
                 ? api__parse_multipart(ctype, http_req_body(req), 16, fields, &ups)
                 : ERR_INVALID;
    json_decref(fields);
    const struct api_upload *file = NULL;
    for (size_t i = 0; rc == 0 && i < ups.n && !file; i++)
        if (strcmp(ups.v[i].key, "file") == 0)
            file = &ups.v[i];
    if (rc == 0 && !file)
        rc = ERR_NOTFOUND;
    if (rc == 0 && strlen(file->filename) < sizeof(job->name)) {
        memcpy(job->name, file->filename, strlen(file->filename) + 1);
        job->data = (struct str){file->data, file->len};
    }
    if (rc != 0) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                         json_pack("{s:{s:s,s:s}}", "file", "code", "validation_required",
                                   "message", "Missing required value."));
        return;
    }
    if (!ops_backup_name_valid(job->name)) {
        name_error(req, "file");
        return;
    }
    submit(env, req, job);
}

/* A superuser's file token (POST /api/files/token) in ?token=, PocketBase's download link, or
 * a superuser's Authorization header. */
static void download_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const char *token = http_req_query(req, "token");
    const struct api_identity *who = token ? api__file_token_identity(req, env, token) : NULL;
    if (!(who && who->superuser) && !api__require_superuser(req, env, false))
        return;
    int fd = -1;
    uint64_t size = 0;
    int rc = ops_backup_open(env->cfg->dir, http_req_param(req, "key"), &fd, &size);
    if (rc != 0) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    char disp[OPS_BACKUP_NAME_MAX + 64];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", http_req_param(req, "key"));
    http_set_header(req, "Content-Disposition", disp);
    http_reply_fd(req, 200, "application/gzip", fd, size);
}

static void delete_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    int rc = ops_backup_delete(env->cfg->dir, http_req_param(req, "key"));
    if (rc == ERR_CONFLICT)
        http_reply_error(req, 400, "The backup is being restored.", NULL);
    else if (rc != 0)
        http_reply_error(req, 400, "Invalid or already deleted backup file.", NULL);
    else
        http_reply_empty(req, 204);
}

static void restore_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    struct admin_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->kind = JOB_RESTORE;
    const char *key = http_req_param(req, "key");
    if (!ops_backup_name_valid(key)) {
        http_reply_error(req, 400, "Missing or invalid backup file.", NULL);
        return;
    }
    snprintf(job->name, sizeof(job->name), "%s", key);
    submit(env, req, job);
}

#define SQL_MAX_QUERY 100000 /* bytes of one statement */

static void post_sql(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const json_t *q = json_object_get(body, "query");
    const char *sql = json_string_value(q);
    if (!sql || !*sql || json_string_length(q) > SQL_MAX_QUERY ||
        strlen(sql) != json_string_length(q)) {
        http_reply_error(
            req, 400, "An error occurred while validating the submitted data.",
            json_pack("{s:{s:s,s:s}}", "query", "code",
                      sql && *sql ? "validation_length_too_long" : "validation_required", "message",
                      sql && *sql ? "Must be at most 100000 bytes." : "Cannot be blank."));
        return;
    }
    struct admin_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->kind = JOB_SQL;
    job->sql = sql; /* the body lives as long as the request */
    submit(env, req, job);
}

void api__register_admin(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/sql", post_sql, env);
    http_route(r, "GET", "/api/crons", list_crons, env);
    http_route(r, "POST", "/api/crons/{id}", run_cron, env);
    http_route(r, "GET", "/api/backups", list_backups, env);
    http_route(r, "POST", "/api/backups", create_backup, env);
    http_route_max_body(r, "POST", "/api/backups/upload", upload_backup, env,
                        API_BACKUP_MAX_UPLOAD);
    http_route(r, "GET", "/api/backups/{key}", download_backup, env);
    http_route(r, "DELETE", "/api/backups/{key}", delete_backup, env);
    http_route(r, "POST", "/api/backups/{key}/restore", restore_backup, env);
}
