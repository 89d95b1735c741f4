/* admin.c - /api/crons and /api/backups (superusers), PocketBase's routes and answers.
 *
 * Threads: the HTTP thread checks the request and answers what is quick (lists, deletes,
 * downloads as a file reply). A backup, an upload (its archive is read through) and a restore
 * (the same, then a restart) run on ONE admin thread: the request is suspended and queued in a
 * single slot; a second one while it is taken answers 400 as PocketBase does. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/records_int.h"
#include "ops/ops.h"

#define AUTO_BACKUP_JOB "__pbAutoBackup__"
#define AUTO_BACKUP_PREFIX "auto_backup_"
#define BUSY_MESSAGE "Try again later - another backup/restore operation has already been started."

enum admin_kind { JOB_CREATE, JOB_UPLOAD, JOB_RESTORE };

struct admin_job {
    enum admin_kind kind;
    struct http_req *req; /* suspended; answered and resumed by the admin thread */
    char name[OPS_BACKUP_NAME_MAX + 1];
    struct str data; /* upload: the archive, a view into the request body */
};

struct api_admin {
    struct api_env *env;
    pthread_t thread;
    pthread_mutex_t lock; /* leaf: guards job, stop */
    pthread_cond_t cond;
    struct admin_job *job; /* the one slot */
    bool stop;
    /* the scheduled backup's settings, read by the cron job (under lock) */
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
        if (job->kind != JOB_RESTORE && rc == ERR_INVALID)
            data = json_pack("{s:{s:s,s:s}}", job->kind == JOB_UPLOAD ? "file" : "name", "code",
                             "validation_invalid_value", "message", err);
        http_reply_error(job->req, 400,
                         rc == ERR_BUSY                ? BUSY_MESSAGE
                         : job->kind == JOB_RESTORE    ? err
                         : rc == ERR_CONFLICT          ? err
                                                       : "Failed to submit the backup form.",
                         data);
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

static void *admin_main(void *arg)
{
    struct api_admin *ad = arg;
    pthread_mutex_lock(&ad->lock);
    for (;;) {
        while (!ad->job && !ad->stop)
            pthread_cond_wait(&ad->cond, &ad->lock);
        if (!ad->job)
            break;
        struct admin_job *job = ad->job;
        pthread_mutex_unlock(&ad->lock);
        run_job(ad, job); /* job lives in the request's arena: gone once answered */
        pthread_mutex_lock(&ad->lock);
        ad->job = NULL;
    }
    pthread_mutex_unlock(&ad->lock);
    return NULL;
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

int api_admin_start(struct api_env *env)
{
    struct api_admin *ad = xcalloc(1, sizeof(*ad));
    ad->env = env;
    ad->max_keep = 3;
    pthread_mutex_init(&ad->lock, NULL);
    pthread_cond_init(&ad->cond, NULL);
    if (pthread_create(&ad->thread, NULL, admin_main, ad) != 0) {
        pthread_cond_destroy(&ad->cond);
        pthread_mutex_destroy(&ad->lock);
        free(ad);
        return ERR_INTERNAL;
    }
    env->admin = ad;
    return 0;
}

void api_admin_stop(struct api_env *env)
{
    struct api_admin *ad = env->admin;
    if (!ad)
        return;
    pthread_mutex_lock(&ad->lock);
    ad->stop = true;
    pthread_cond_signal(&ad->cond);
    pthread_mutex_unlock(&ad->lock);
    pthread_join(ad->thread, NULL); /* finishes (and answers) a running job first */
}

void api_admin_free(struct api_env *env)
{
    struct api_admin *ad = env->admin;
    if (!ad)
        return;
    pthread_cond_destroy(&ad->cond);
    pthread_mutex_destroy(&ad->lock);
    free(ad);
    env->admin = NULL;
}

/* Queues job (in req's arena) for the admin thread, or answers 400/503. */
static void submit(struct api_env *env, struct http_req *req, struct admin_job *job)
{
    struct api_admin *ad = env->admin;
    if (!ad) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    job->req = req;
    pthread_mutex_lock(&ad->lock);
    bool taken = ad->job != NULL || ad->stop;
    if (!taken) {
        http_req_suspend(req);
        ad->job = job;
        pthread_cond_signal(&ad->cond);
    }
    pthread_mutex_unlock(&ad->lock);
    if (taken)
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
    http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                     json_pack("{s:{s:s,s:s}}", field, "code", "validation_match_invalid",
                               "message", msg));
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
    int rc = ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0
                 ? api__multipart_file(ctype, http_req_body(req), "file", 16, job->name,
                                       sizeof(job->name), &job->data)
                 : ERR_INVALID;
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

/* The file token of PocketBase's download link (?token=), or the Authorization header. */
static void download_backup(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const char *token = http_req_query(req, "token");
    if (!(token && api__token_is_superuser(env, token)) &&
        !api__require_superuser(req, env, false))
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

void api__register_admin(struct http_router *r, struct api_env *env)
{
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
