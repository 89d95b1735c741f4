/* main.c - command line, wiring and signals. Thin: everything else lives in modules. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "auth/auth.h"
#include "capture/capture.h"
#include "cli/cli.h"
#include "core/core.h"
#include "core/datadir.h"
#include "evlog/evlog.h"
#include "governance/audit.h"
#include "governance/governance.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "models/models.h"
#include "ops/ops.h"
#include "ml/ml.h"
#include "pipeline/pipeline.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

extern char **environ;

#define EXIT_USAGE 2
#define DRAIN_MS 8000

static void usage(FILE *out)
{
    fprintf(out,
            "tandem %s - one program that is both an app backend and its data platform\n\n"
            "usage: tandem <command> [options]\n\n"
            "commands:\n"
            "  serve                             start the server\n"
            "  superuser upsert EMAIL PASSWORD   create or update a superuser\n"
            "  superuser delete EMAIL            delete a superuser\n"
            "  writekey create NAME              make a capture write key (printed once)\n"
            "  writekey list                     list write keys\n"
            "  writekey revoke NAME              revoke a write key\n"
            "  log check | repair                verify or repair the event log (server "
            "stopped)\n"
            "  log dump TOPIC [--from N]         print a topic as JSON lines (server stopped)\n"
            "  log migrate --to kafka            move the data directory to --log kafka\n"
            "                                    (--kafka-brokers ...; server stopped)\n"
            "  audit verify                      check the audit trail's hash chain (server "
            "stopped)\n"
            "  backup create [NAME]              back up the data directory (server stopped)\n"
            "  backup list                       list the backups\n"
            "  backup restore NAME               restore a backup (now if the server is "
            "stopped,\n"
            "                                    else when it restarts)\n"
            "  query SQL [--url URL] [--email E --password P] [--format table|csv|json]\n"
            "                                    run a read-only warehouse query\n"
            "  models list | run | export | import [--url URL] [--email E --password P]\n"
            "                                    SQL models of a running server\n"
            "  import pocketbase PATH            import a PocketBase app's collections and\n"
            "                                    records (PATH: its pb_data or data.db)\n"
            "  persons delete | export [--user ID] [--delete-user B] [--relations C.F,...] "
            "[--suppress B] [--wait S]\n"
            "                                    delete or export a person (running server)\n"
            "  ml train SPEC.json [--wait S] [--url URL] [--email E --password P]\n"
            "                                    train a model on the running server\n"
            "  version                           print the version\n"
            "  help                              show this help\n\n"
            "Every command takes the options below (--dir in particular).\n\n",
            TANDEM_VERSION);
    cfg_print_help(out);
}

/* The data directory, created or made private (see core/datadir.h). The secret is left to
 * auth_secret_open, which refuses one that group or others could read: a key that may have
 * been copied must be replaced, not just hidden. */
static int prepare_dir(const char *dir)
{
    static const char *const keep[] = {"secret", NULL};
    char err[600];
    int rc = datadir_prepare(dir, keep, NULL, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "tandem: %s\n", err);
    return rc;
}

static int load_cfg(struct cfg *cfg, int argc, char **argv)
{
    char err[512];
    if (cfg_load(cfg, argc, argv, environ, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return EXIT_USAGE;
    }
    enum xlog_level level;
    if (xlog_parse_level(cfg->log_level, &level) != 0) {
        fprintf(stderr,
                "tandem: invalid value '%s' for --log-level (expected debug, info, "
                "warn, error or off)\n",
                cfg->log_level);
        return EXIT_USAGE;
    }
    xlog_set_level(level);
    /* options checked by the modules that use them are checked here too, so a bad value
     * stops the command before it creates or opens anything */
    enum evlog_fsync policy;
    if (evlog_fsync_parse(cfg->fsync, &policy) != 0) {
        fprintf(stderr,
                "tandem: invalid value '%s' for --fsync (expected always, batch or "
                "never)\n",
                cfg->fsync);
        return EXIT_USAGE;
    }
    if (!evlog_backend(cfg->log_backend)) {
        fprintf(stderr, "tandem: invalid value '%s' for --log (expected local or kafka)\n",
                cfg->log_backend);
        return EXIT_USAGE;
    }
    if (strcmp(cfg->role, "all") != 0 && strcmp(cfg->role, "primary") != 0 &&
        strcmp(cfg->role, "capture") != 0) {
        fprintf(stderr,
                "tandem: invalid value '%s' for --role (expected all, primary or capture)\n",
                cfg->role);
        return EXIT_USAGE;
    }
    if (strcmp(cfg->role, "all") != 0 && strcmp(cfg->log_backend, "kafka") != 0) {
        fprintf(stderr, "tandem: --role %s needs --log kafka\n", cfg->role);
        return EXIT_USAGE;
    }
    if (strcmp(cfg->log_backend, "kafka") == 0 && !cfg->kafka_brokers[0]) {
        fprintf(stderr, "tandem: --log kafka needs --kafka-brokers\n");
        return EXIT_USAGE;
    }
    if (strcmp(cfg->ratelimit, "off") != 0 && strcmp(cfg->ratelimit, "default") != 0) {
        struct auth_ratelimit_cfg rc;
        auth_ratelimit_cfg_default(&rc);
        if (auth_ratelimit_parse(cfg->ratelimit, &rc, err, sizeof(err)) != 0) {
            fprintf(stderr, "tandem: invalid value for --ratelimit: %s\n", err);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* --ratelimit: "off" no limits (settings.rateLimits may set them); "default" PocketBase's
 * rules; otherwise rules on top of them */
static int open_ratelimit(const char *spec, struct auth_ratelimit **out)
{
    *out = NULL;
    struct auth_ratelimit_cfg rc;
    char err[256];
    auth_ratelimit_cfg_default(&rc);
    if (strcmp(spec, "off") == 0)
        for (int i = 0; i < AUTH_RL_N_CLASSES; i++)
            rc.rules[i].max = 0;
    if (strcmp(spec, "off") != 0 && strcmp(spec, "default") != 0 &&
        auth_ratelimit_parse(spec, &rc, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: invalid value for --ratelimit: %s\n", err);
        return EXIT_USAGE;
    }
    if (auth_ratelimit_new(&rc, out) != 0) {
        fprintf(stderr, "tandem: invalid value for --ratelimit '%s'\n", spec);
        return EXIT_USAGE;
    }
    return 0;
}

static int open_store(const struct cfg *cfg, struct store **out)
{
    char err[512];
    struct store_cfg sc = {.backend = NULL, .dir = cfg->dir, .busy_timeout_ms = 0};
    if (store_open(&sc, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return 1;
    }
    return 0;
}

/* The topics a serving node copies from Kafka into its local mirror, which every read uses. */
static const char *const kafka_mirrored[] = {"events", "changes", NULL};

/* The Kafka mirror's filter: an event whose (source, messageId) it already copied within
 * --dedup-window is a retry that reached another capture node (or the same one twice). */
static int mirror_filter(void *arg, const char *topic, const void *data, size_t len, bool *drop)
{
    struct capture_dedup *d = arg;
    *drop = false;
    if (strcmp(topic, "events") != 0)
        return 0;
    return capture_dedup_check_record(d, data, len, time_now_us(), drop);
}

/* The Kafka mirror's sequence of "changes": the outbox id, which the relay resends in order. */
static int64_t mirror_seq(const char *topic, const void *data, size_t len)
{
    if (strcmp(topic, "changes") != 0)
        return -1;
    json_t *j = json_loadb(data, len, 0, NULL);
    json_t *id = json_object_get(j, "id");
    int64_t seq = json_is_integer(id) ? json_integer_value(id) : -1;
    json_decref(j);
    return seq;
}

static void kafka_settings(const struct cfg *cfg, struct evlog_cfg *lc)
{
    lc->backend = cfg->log_backend;
    lc->kafka_brokers = cfg->kafka_brokers;
    lc->kafka_topic_prefix = cfg->kafka_topic_prefix;
    lc->kafka_config = cfg->kafka_config[0] ? cfg->kafka_config : NULL;
}

/* dedup: the Kafka mirror's filter (NULL: open without copying anything from Kafka). */
static int open_log_with(const struct cfg *cfg, struct capture_dedup *dedup, struct evlog **out)
{
    char dir[1100];
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    snprintf(dir, sizeof(dir), "%s/log", cfg->dir);
    lc.dir = dir;
    kafka_settings(cfg, &lc);
    if (dedup) {
        lc.kafka_mirror_topics = kafka_mirrored;
        lc.mirror_filter = mirror_filter;
        lc.mirror_filter_arg = dedup;
        lc.mirror_seq = mirror_seq;
        lc.mirror_gate = api_capture_ready; /* the dedup set is rebuilt from the mirror first */
    }
    if (evlog_fsync_parse(cfg->fsync, &lc.fsync) != 0) {
        fprintf(stderr,
                "tandem: invalid value '%s' for --fsync (expected always, batch or "
                "never)\n",
                cfg->fsync);
        return EXIT_USAGE;
    }
    lc.segment_bytes = (uint64_t)cfg->log_segment_size;
    lc.retention_bytes = (uint64_t)cfg->log_retention_size;
    lc.retention_age_us = cfg->log_retention_age * 1000000;
    if (evlog_open(&lc, out) != 0) {
        fprintf(stderr, "tandem: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    return 0;
}

static int open_log(const struct cfg *cfg, struct evlog **out)
{
    return open_log_with(cfg, NULL, out);
}

static int open_warehouse(const struct cfg *cfg, struct wh **out)
{
    char path[1100], mem[32];
    struct wh_cfg wc;
    wh_cfg_defaults(&wc);
    snprintf(path, sizeof(path), "%s/warehouse.duckdb", cfg->dir);
    snprintf(mem, sizeof(mem), "%lldMB", (long long)(cfg->warehouse_memory >> 20));
    wc.path = path;
    wc.memory_limit = mem;
    wc.threads = (int)cfg->warehouse_threads;
    wc.query_timeout_ms = cfg->sql_timeout * 1000;
    wc.query_max_rows = (uint64_t)cfg->sql_max_rows;
    if (wh_open(&wc, out) != 0) {
        fprintf(stderr, "tandem: %s\n", wh_errmsg(NULL));
        return 1;
    }
    return 0;
}

/* Set by a restore through the API: serve stops and starts again (the same process image, so
 * a supervisor or test keeps its process id), and the start applies the restore. */
static volatile sig_atomic_t restart_asked;

static void request_restart(void *arg)
{
    UNUSED(arg);
    restart_asked = 1;
    kill(getpid(), SIGTERM);
}

/* Everything `serve` opens, released in reverse order through one path. */
struct app {
    struct cfg cfg;
    struct auth_secret *secret;
    struct auth_pool *pool;
    struct auth_ratelimit *rl;
    struct store *store;
    struct evlog *log;
    struct audit *audit;
    struct capture_dedup *dedup;
    struct pipeline_relay *relay;
    struct wh *wh;
    struct pipeline *pipeline;
    struct models *models;
    struct ops_cron *cron;
    struct ml *ml;
    struct gov *gov;
    struct api_env env;
    struct http_router *router;
    struct http_server *srv;
};

/* Returns whether a warehouse query thread is still inside the engine (stuck in one long
 * function call): the warehouse is then left open under it and the caller must _exit. */
static bool app_close(struct app *a)
{
    ops_cron_free(a->cron); /* after the job it runs, which may use everything below */
    a->cron = NULL;
    a->env.cron = NULL;
    bool wh_busy = api_sql_stop(&a->env) > 0;
    api_admin_stop(&a->env);
    api_files_stop(&a->env); /* its queued uploads go on to the writer: before it stops */
    api_records_stop(&a->env);
    api_realtime_stop(&a->env);
    api_batch_stop(&a->env);
    auth_oauth2_stop(a->env.oauth2);
    http_server_close(a->srv, DRAIN_MS);
    api_logs_stop(&a->env);
    api_mail_stop(&a->env);
    api_capture_stop(&a->env);
    api_keys_stop(&a->env);
    api_realtime_free(&a->env);
    api_sql_free(&a->env);
    api_records_free(&a->env);
    api_files_free(&a->env);
    api_settings_free(&a->env);
    api_admin_free(&a->env);
    api_batch_free(&a->env);
    api_public_free(&a->env);
    http_router_free(a->router);
    gov_stop(a->gov); /* a running deletion resumes at the next start */
    a->env.gov = NULL;
    models_stop(a->models);
    ml_stop(a->ml);
    if (!wh_busy) /* a stuck query may be inside tandem_predict: then ml stays allocated */
        ml_free(a->ml);
    pipeline_relay_stop(a->relay);
    pipeline_stop(a->pipeline);
    if (wh_busy) /* read-only queries: nothing is lost; the loader above has committed */
        xlog_warn("leaving the warehouse open: a query is still running");
    else
        wh_close(a->wh);
    audit_close(a->audit); /* no request runs any more */
    evlog_close(a->log);
    capture_dedup_free(a->dedup);
    if (a->store)
        store_close(a->store);
    auth_oauth2_free(a->env.oauth2);
    auth_pool_free(a->pool);
    auth_ratelimit_free(a->rl);
    auth_secret_free(a->secret);
    return wh_busy;
}

/* The ML module's view of the models (docs/ml.md "Training from a data model"): which run
 * published a data model's table, and a retraining queued when one publishes. */
static json_t *ml_model_run(struct wh_conn *c, const char *model)
{
    json_t *run = NULL;
    return models_published_run(c, model, &run) == 0 ? run : NULL;
}

static void ml_after_model_run(void *arg, const char *model, const char *run_id)
{
    (void)ml_data_model_published(arg, model, run_id);
}

static int app_open(struct app *a)
{
    char err[512];
    int rc = prepare_dir(a->cfg.dir);
    if (rc != 0)
        return 1;
    bool restored = false;
    if (ops_backup_apply_pending(a->cfg.dir, &restored, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: cannot restore the backup: %s\n", err);
        return 1;
    }
    if (restored)
        xlog_info("restored the backup marked for restore");
    if (auth_init() != 0) {
        fprintf(stderr, "tandem: libsodium failed to initialise\n");
        return 1;
    }
    if (auth_secret_open(a->cfg.dir, &a->secret, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return 1;
    }
    rc = open_ratelimit(a->cfg.ratelimit, &a->rl);
    if (rc != 0)
        return rc;
    struct auth_pool_cfg pc = {0};
    if (auth_pool_new(&pc, &a->pool) != 0) {
        fprintf(stderr, "tandem: cannot start the password hashing pool\n");
        return 1;
    }

    rc = open_store(&a->cfg, &a->store);
    if (rc != 0)
        return rc;
    struct capture_dedup_cfg dc;
    capture_dedup_cfg_default(&dc);
    dc.window_us = a->cfg.dedup_window * 1000000;
    a->dedup = capture_dedup_new(&dc);
    /* a capture node copies nothing from Kafka: its reads (and warehouse) stay empty */
    bool capture_only = strcmp(a->cfg.role, "capture") == 0;
    rc = open_log_with(&a->cfg, capture_only ? NULL : a->dedup, &a->log);
    if (rc != 0)
        return rc;
    /* superuser actions happen where the records API is: a capture node keeps no trail */
    if (!capture_only && (rc = audit_open(a->log, &a->audit)) != 0) {
        fprintf(stderr, "tandem: cannot read the audit trail: %s: %s\n", err_str(rc),
                evlog_errmsg(a->log));
        return 1;
    }
    /* a capture node publishes no record changes (and must start while brokers are down) */
    if (!capture_only && pipeline_relay_start(a->store, a->log, &a->relay) != 0) {
        fprintf(stderr, "tandem: cannot start the outbox relay: %s\n", store_errmsg(a->store));
        return 1;
    }

    rc = open_warehouse(&a->cfg, &a->wh);
    if (rc != 0)
        return rc;
    struct pipeline_cfg plc;
    pipeline_cfg_defaults(&plc);
    plc.log = a->log;
    plc.wh = a->wh;
    plc.store = a->store;
    if (pipeline_start(&plc, &a->pipeline) != 0) {
        fprintf(stderr, "tandem: cannot start the warehouse loader: %s\n", wh_errmsg(NULL));
        return 1;
    }
    struct ml_cfg mc = {
        .dir = a->cfg.dir,
        .store = a->store,
        .wh = a->wh,
        .log = a->log,
        .max_bytes = (uint64_t)a->cfg.ml_max_bytes,
        .nthread = (int)a->cfg.ml_threads,
        .model_run = ml_model_run,
    };
    if (a->store && ml_open(&mc, &a->ml, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return 1;
    }
    a->env.ml = a->ml;
    struct models_cfg mdc = {.wh = a->wh,
                             .store = a->store,
                             .pipeline = a->pipeline,
                             .on_publish = a->ml ? ml_after_model_run : NULL,
                             .on_publish_arg = a->ml};
    if (models_start(&mdc, &a->models) != 0) {
        fprintf(stderr, "tandem: cannot start the models runner\n");
        return 1;
    }
    a->env.models = a->models;
    if (api_sql_start(&a->env, a->wh) != 0) {
        fprintf(stderr, "tandem: cannot start the SQL API threads\n");
        return 1;
    }
    struct gov_cfg gc = {
        .store = a->store, .log = a->log, .wh = a->wh, .pipeline = a->pipeline, .audit = a->audit};
    if (a->store && gov_start(&gc, &a->gov) != 0) {
        fprintf(stderr, "tandem: cannot start the person deletion worker\n");
        return 1;
    }
    a->env.gov = a->gov;

    metrics_register_process(TANDEM_VERSION);
    a->env.cfg = &a->cfg;
    a->env.pipeline = a->pipeline;
    a->env.secret = a->secret;
    a->env.pool = a->pool;
    if (auth_oauth2_new(NULL, &a->env.oauth2) != 0) {
        fprintf(stderr, "tandem: cannot start the OAuth2 threads\n");
        return 1;
    }
    a->env.rl = a->rl;
    a->env.store = a->store;
    a->env.log = a->log;
    a->env.audit = a->audit;
    a->env.dedup = a->dedup;
    a->env.wh = a->wh;
    a->env.relay = a->relay;
    a->env.restart = request_restart;
    capture_limits_default(&a->env.capture_limits);
    a->env.records = (struct api_record_limits){
        .timeout_ms = a->cfg.records_timeout * 1000,
        .max_body = (uint64_t)a->cfg.records_max_body,
        .max_keys = (size_t)a->cfg.records_max_keys,
        .max_expand_bytes = (size_t)a->cfg.records_max_expand,
    };
    if (api_capture_warm(&a->env, a->cfg.dedup_window * 1000000) != 0) {
        fprintf(stderr, "tandem: cannot read the event log: %s\n", evlog_errmsg(a->log));
        return 1;
    }
    if (api_capture_start(&a->env, a->cfg.dedup_snapshot * 1000000) != 0) {
        fprintf(stderr, "tandem: cannot start the dedup snapshot thread\n");
        return 1;
    }
    /* on Kafka: a capture node takes write keys from the key topic, a primary publishes them */
    if (api_keys_start(&a->env, capture_only) != 0) {
        fprintf(stderr, "tandem: cannot replicate write keys: %s\n", evlog_errmsg(a->log));
        return 1;
    }
    if (a->store && api_records_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the record writer thread\n");
        return 1;
    }
    if (ops_cron_new(&a->cron) == 0)
        a->env.cron = a->cron;
    if (!a->cron || api_admin_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the cron and backup threads\n");
        return 1;
    }
    if (a->store && api_files_start(&a->env, a->cfg.dir) != 0) {
        fprintf(stderr, "tandem: cannot open the file storage in %s/storage\n", a->cfg.dir);
        return 1;
    }
    if (api_logs_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the request log writer thread\n");
        return 1;
    }
    if (api_settings_open(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot read the settings: %s\n", store_errmsg(a->store));
        return 1;
    }
    if (api_mail_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the mail sender thread\n");
        return 1;
    }
    if (api_public_open(&a->env, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return EXIT_USAGE;
    }
    if (a->store && api_batch_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the batch thread\n");
        return 1;
    }
    if (a->store && api_realtime_start(&a->env) != 0) {
        fprintf(stderr, "tandem: cannot start the realtime hub\n");
        return 1;
    }
    a->router = http_router_new();
    if (http_router_cors(a->router, a->cfg.origins) != 0) {
        fprintf(stderr, "tandem: invalid value for --origins: '%s'\n", a->cfg.origins);
        return EXIT_USAGE;
    }
    api_register(a->router, &a->env);

    struct http_opts opts = {
        .addr = a->cfg.http,
        .threads = (unsigned)a->cfg.threads,
        .max_body = (uint64_t)a->cfg.max_body,
        .idle_timeout_s = (unsigned)a->cfg.idle_timeout,
        .request_timeout_s = (unsigned)a->cfg.request_timeout,
        .max_conns = (unsigned)a->cfg.max_conns,
        .max_conns_per_ip = (unsigned)a->cfg.max_conns_per_ip,
    };
    if (http_server_open(&opts, a->router, &a->srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return 1;
    }
    return 0;
}

/* Raises the soft open-file limit to the hard one, so the HTTP server's connection limit,
 * which is set below it, is as high as the system allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rlim_t old = rl.rlim_cur;
    /* the kernel refuses more than fs.nr_open (1048576 by default), also for "unlimited" */
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
    if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) != 0)
        xlog_warn("cannot raise the open-file limit from %llu to %llu: %s", (unsigned long long)old,
                  (unsigned long long)rl.rlim_cur, strerror(errno));
}

static int cmd_serve(int argc, char **argv, char **full_argv)
{
    struct app a;
    memset(&a, 0, sizeof(a));
    int rc = load_cfg(&a.cfg, argc, argv);
    if (rc != 0)
        return rc;

    /* signals are taken by sigwait() below, never by the worker threads */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    rc = app_open(&a);
    if (rc != 0) {
        (void)app_close(&a); /* no query has run yet */
        return rc;
    }
    printf("tandem listening on http://%s:%u\n", http_server_url_host(a.srv),
           http_server_port(a.srv));
    fflush(stdout);
    xlog_info("serving, data in %s, at most %u connections", a.cfg.dir,
              http_server_max_conns(a.srv));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    xlog_info("received signal %d, shutting down", sig);
    bool wh_busy = app_close(&a);
    xlog_info("stopped");
    if (restart_asked) {
        fflush(NULL);
        /* signals stay blocked across exec; the new image blocks them again anyway */
        execv("/proc/self/exe", full_argv);
        xlog_error("cannot restart: %s; start tandem again to apply the restore", strerror(errno));
        return 1;
    }
    if (wh_busy) {
        /* the engine's static destructors must not run under the thread still inside it */
        fflush(NULL);
        _exit(0);
    }
    return 0;
}

/* ---- commands that work on the data directory without a server ---- */

/* Takes "--name value" / "--name=value" out of argv (for a command's own options). */
static const char *take_opt(int *argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < *argc; i++) {
        if (strncmp(argv[i], name, n) != 0)
            continue;
        const char *value = NULL;
        int used = 0;
        if (argv[i][n] == '=') {
            value = argv[i] + n + 1;
            used = 1;
        } else if (argv[i][n] == '\0' && i + 1 < *argc) {
            value = argv[i + 1];
            used = 2;
        } else {
            continue;
        }
        memmove(argv + i, argv + i + used, (size_t)(*argc - i - used) * sizeof(char *));
        *argc -= used;
        return value;
    }
    return NULL;
}

/* $TANDEM_TOKEN, or NULL when unset or empty (the CLI then signs in with --email/--password). */
static const char *env_token(void)
{
    const char *t = getenv("TANDEM_TOKEN");
    return t && *t ? t : NULL;
}

/* Splits argv into positional words (up to max) and options; loads the options. */
static int cli_args(int argc, char **argv, const char **words, size_t max, size_t *n_out,
                    struct cfg *cfg)
{
    char **opts = xcalloc((size_t)argc + 1, sizeof(char *));
    int n_opts = 0;
    size_t n = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            opts[n_opts++] = argv[i];
            if (!strchr(argv[i], '=') && i + 1 < argc)
                opts[n_opts++] = argv[++i];
        } else if (n < max) {
            words[n++] = argv[i];
        } else {
            fprintf(stderr, "tandem: unexpected argument '%s'\n", argv[i]);
            free(opts);
            return EXIT_USAGE;
        }
    }
    int rc = load_cfg(cfg, n_opts, opts);
    free(opts);
    *n_out = n;
    return rc;
}

/* The store of the data directory for a command that writes records (passwords included). */
static int open_cli_store(const struct cfg *cfg, struct store **st)
{
    if (prepare_dir(cfg->dir) != 0)
        return 1;
    if (auth_init() != 0) {
        fprintf(stderr, "tandem: libsodium failed to initialise\n");
        return 1;
    }
    return open_store(cfg, st) != 0 ? 1 : 0;
}

static int cmd_superuser(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[3];
    size_t n;
    int rc = cli_args(argc, argv, w, 3, &n, &cfg);
    if (rc != 0)
        return rc;
    bool upsert = n == 3 && strcmp(w[0], "upsert") == 0;
    bool del = n == 2 && strcmp(w[0], "delete") == 0;
    if (!upsert && !del) {
        fprintf(stderr, "usage: tandem superuser upsert EMAIL PASSWORD | delete EMAIL\n");
        return EXIT_USAGE;
    }
    const char *email = w[1];
    if (!strchr(email, '@') || strlen(email) > 255) {
        fprintf(stderr, "tandem: '%s' is not an email address\n", email);
        return EXIT_USAGE;
    }
    if (upsert && (strlen(w[2]) < 8 || strlen(w[2]) > 71)) {
        fprintf(stderr, "tandem: the password must be 8 to 71 characters\n");
        return EXIT_USAGE;
    }
    struct store *st = NULL;
    if (open_cli_store(&cfg, &st) != 0)
        return 1;
    if (upsert) {
        char hash[AUTH_HASH_LEN];
        rc = auth_password_hash(w[2], hash);
        if (rc == 0)
            rc = store_superuser_upsert(st, email, hash, NULL);
        if (rc == 0)
            printf("superuser %s saved\n", email);
    } else {
        struct store_collection *c = NULL;
        struct store_auth_record rec = {0};
        rc = store_collection_get(st, "_superusers", &c);
        if (rc == 0)
            rc = store_auth_find(st, c, "email", email, &rec);
        if (rc == 0)
            rc = store_record_delete(st, c, json_string_value(json_object_get(rec.record, "id")));
        store_auth_record_release(&rec);
        if (c)
            store_collection_unref(c);
        if (rc == 0)
            printf("superuser %s deleted\n", email);
        else if (rc == ERR_NOTFOUND)
            fprintf(stderr, "tandem: no superuser %s\n", email);
    }
    if (rc != 0 && rc != ERR_NOTFOUND)
        fprintf(stderr, "tandem: %s: %s\n", err_str(rc), store_errmsg(st));
    store_close(st);
    return rc == 0 ? 0 : 1;
}

static int cmd_import(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[2];
    size_t n;
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    if (n != 2 || strcmp(w[0], "pocketbase") != 0) {
        fprintf(stderr, "usage: tandem import pocketbase PATH\n");
        return EXIT_USAGE;
    }
    struct store *st = NULL;
    if (open_cli_store(&cfg, &st) != 0)
        return 1;
    rc = cli_import_pocketbase(w[1], st, cfg.dir, stdout, stderr);
    store_close(st);
    return rc;
}

static int cmd_writekey(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[2];
    size_t n;
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    bool create = n == 2 && strcmp(w[0], "create") == 0;
    bool revoke = n == 2 && strcmp(w[0], "revoke") == 0;
    bool list = n == 1 && strcmp(w[0], "list") == 0;
    if (!create && !revoke && !list) {
        fprintf(stderr, "usage: tandem writekey create NAME | list | revoke NAME\n");
        return EXIT_USAGE;
    }
    if (create && !capture_key_name_valid(w[1])) {
        fprintf(stderr, "tandem: a write key name is 1 to 64 characters of A-Z, a-z, 0-9, _ "
                        "or -\n");
        return EXIT_USAGE;
    }
    if (prepare_dir(cfg.dir) != 0)
        return 1;
    struct store *st = NULL;
    if (open_store(&cfg, &st) != 0)
        return 1;
    if (create) {
        char key[CAPTURE_KEY_LEN + 1], hash[CAPTURE_KEY_HASH_LEN + 1];
        char prefix[CAPTURE_KEY_PREFIX_LEN + 1];
        capture_key_new(key, hash, prefix);
        rc = store_writekey_create(st, w[1], hash, prefix);
        if (rc == 0)
            printf("%s\n", key);
        else if (rc == ERR_CONFLICT)
            fprintf(stderr, "tandem: a write key named %s exists already\n", w[1]);
    } else if (revoke) {
        rc = store_writekey_revoke(st, w[1]);
        if (rc == ERR_NOTFOUND)
            fprintf(stderr, "tandem: no live write key named %s\n", w[1]);
    } else {
        json_t *items = NULL;
        rc = store_writekey_list(st, &items);
        size_t i;
        json_t *k;
        json_array_foreach(items, i, k)
        {
            const char *revoked = json_string_value(json_object_get(k, "revoked"));
            printf("%-24s %s...  created %s%s%s\n", json_string_value(json_object_get(k, "name")),
                   json_string_value(json_object_get(k, "prefix")),
                   json_string_value(json_object_get(k, "created")),
                   revoked && *revoked ? "  revoked " : "", revoked ? revoked : "");
        }
        json_decref(items);
    }
    if (rc != 0 && rc != ERR_NOTFOUND && rc != ERR_CONFLICT)
        fprintf(stderr, "tandem: %s: %s\n", err_str(rc), store_errmsg(st));
    store_close(st);
    return rc == 0 ? 0 : 1;
}

static int cmd_log(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[2];
    size_t n;
    const char *from_text = take_opt(&argc, argv, "--from"); /* this command's own */
    const char *to = take_opt(&argc, argv, "--to");
    char *rest = NULL;
    int64_t from = from_text ? strtoll(from_text, &rest, 10) : 0;
    if (from_text && (rest == from_text || *rest))
        from = -1; /* refused below */
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/log", cfg.dir);
    if (n == 1 && (strcmp(w[0], "check") == 0 || strcmp(w[0], "repair") == 0)) {
        struct buf report;
        buf_init(&report);
        rc = strcmp(w[0], "check") == 0 ? evlog_check(dir, &report) : evlog_repair(dir, &report);
        if (strcmp(w[0], "check") == 0 && strcmp(cfg.log_backend, "kafka") == 0) {
            struct evlog_cfg lc; /* the local directory above is the Kafka mirror */
            evlog_cfg_defaults(&lc);
            kafka_settings(&cfg, &lc);
            lc.dir = dir;
            int krc = evlog_kafka_check(&lc, &report);
            if (rc == 0 && krc != 0)
                rc = ERR_CORRUPT;
        }
        fputs(buf_cstr(&report), stdout);
        buf_release(&report);
        if (rc == ERR_BUSY)
            fprintf(stderr, "tandem: %s\n", evlog_errmsg(NULL));
        return rc == 0 ? 0 : rc == ERR_CORRUPT ? 1 : 2;
    }
    if (n == 1 && strcmp(w[0], "migrate") == 0) {
        struct evlog_cfg lc;
        evlog_cfg_defaults(&lc);
        kafka_settings(&cfg, &lc);
        lc.dir = dir;
        return cli_log_migrate(to, &lc, cfg.dir, stdout, stderr);
    }
    if (n != 2 || strcmp(w[0], "dump") != 0 || from < 0) {
        fprintf(stderr,
                "usage: tandem log check | repair | dump TOPIC [--from N] | migrate --to kafka\n");
        return EXIT_USAGE;
    }
    struct evlog *log = NULL;
    if (open_log(&cfg, &log) != 0)
        return 1;
    struct evlog_batch b;
    evlog_batch_init(&b);
    uint64_t end = 0, at = (uint64_t)from;
    rc = evlog_end_offset(log, w[1], &end);
    while (rc == 0 && at < end) {
        rc = evlog_read(log, w[1], at, 10000, 16 << 20, &b);
        for (size_t i = 0; rc == 0 && i < b.n; i++)
            printf("{\"offset\":%llu,\"timestamp\":%lld,\"value\":%.*s}\n",
                   (unsigned long long)b.recs[i].offset, (long long)b.recs[i].timestamp_us,
                   b.recs[i].len ? (int)b.recs[i].len : 4,
                   b.recs[i].len ? (const char *)b.recs[i].data : "null"); /* erased: null */
        if (rc != 0 || b.n == 0)
            break;
        at = b.next_offset;
    }
    if (rc != 0)
        fprintf(stderr, "tandem: %s: %s\n", err_str(rc), evlog_errmsg(log));
    evlog_batch_release(&b);
    evlog_close(log);
    return rc == 0 ? 0 : 1;
}

/* `tandem audit verify`: walks the audit topic's hash chain; exit 1 at the first broken
 * link (its offset is in the report), 2 when the log cannot be opened or read. */
static int cmd_audit(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[1];
    size_t n;
    int rc = cli_args(argc, argv, w, 1, &n, &cfg);
    if (rc != 0)
        return rc;
    if (n != 1 || strcmp(w[0], "verify") != 0) {
        fprintf(stderr, "usage: tandem audit verify\n");
        return EXIT_USAGE;
    }
    struct evlog *log = NULL;
    if (open_log(&cfg, &log) != 0)
        return 2;
    struct buf report;
    buf_init(&report);
    uint64_t bad = 0;
    rc = audit_verify(log, &report, &bad);
    fputs(buf_cstr(&report), stdout);
    buf_release(&report);
    evlog_close(log);
    return rc == 0 ? 0 : rc == ERR_CORRUPT ? 1 : 2;
}

static int cmd_ml(int argc, char **argv)
{
    struct cli_ml_opts o = {0};
    const char *url = take_opt(&argc, argv, "--url");
    o.email = take_opt(&argc, argv, "--email");
    o.password = take_opt(&argc, argv, "--password");
    const char *wait = take_opt(&argc, argv, "--wait");
    if (wait) {
        char *end = NULL;
        long long s = strtoll(wait, &end, 10);
        if (!*wait || *end || s < 1 || s > 7 * 86400) {
            fprintf(stderr, "tandem: --wait takes seconds (1 to 604800)\n");
            return EXIT_USAGE;
        }
        o.wait_s = s;
    }
    struct cfg cfg;
    const char *w[2];
    size_t n;
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    if (n != 2 || strcmp(w[0], "train") != 0) {
        fprintf(stderr, "usage: tandem ml train SPEC.json|- [--wait S] [--url http://HOST:PORT] "
                        "[--email E --password P]\n");
        return EXIT_USAGE;
    }
    char default_url[300];
    snprintf(default_url, sizeof(default_url), "http://%s", cfg.http);
    o.spec_path = w[1];
    o.url = url ? url : default_url;
    o.token = env_token();
    return cli_ml_train(&o, stdout, stderr);
}

static int cmd_backup(int argc, char **argv)
{
    struct cfg cfg;
    const char *w[2];
    size_t n;
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    bool create = n >= 1 && strcmp(w[0], "create") == 0;
    bool list = n == 1 && strcmp(w[0], "list") == 0;
    bool restore = n == 2 && strcmp(w[0], "restore") == 0;
    if (!create && !list && !restore) {
        fprintf(stderr, "usage: tandem backup create [NAME] | list | restore NAME\n");
        return EXIT_USAGE;
    }
    char name[OPS_BACKUP_NAME_MAX + 1], err[600];
    if (create && n == 2)
        snprintf(name, sizeof(name), "%s", w[1]);
    else if (create)
        ops_backup_default_name("pb_backup_", name, sizeof(name));
    if ((create || restore) && !ops_backup_name_valid(create ? name : w[1])) {
        fprintf(stderr, "tandem: a backup name is a-z, 0-9, _ or - characters ending with %s\n",
                OPS_BACKUP_SUFFIX);
        return EXIT_USAGE;
    }
    if (prepare_dir(cfg.dir) != 0)
        return 1;
    if (list) {
        json_t *items = NULL;
        if (ops_backup_list(cfg.dir, &items) != 0) {
            fprintf(stderr, "tandem: cannot read %s/backups\n", cfg.dir);
            return 1;
        }
        size_t i;
        json_t *b;
        json_array_foreach(items, i, b)
        {
            printf("%-40s %12lld  %s\n", json_string_value(json_object_get(b, "key")),
                   (long long)json_integer_value(json_object_get(b, "size")),
                   json_string_value(json_object_get(b, "modified")));
        }
        json_decref(items);
        return 0;
    }
    if (restore) {
        rc = ops_backup_mark_restore(cfg.dir, w[1], err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "tandem: %s\n", err);
            return 1;
        }
        struct evlog *log = NULL; /* held by a running server: it restores when restarted */
        if (open_log(&cfg, &log) != 0) {
            printf("backup %s is marked: it is restored when the server starts again\n", w[1]);
            return 0;
        }
        evlog_close(log);
        bool applied = false;
        if (ops_backup_apply_pending(cfg.dir, &applied, err, sizeof(err)) != 0) {
            fprintf(stderr, "tandem: %s\n", err);
            return 1;
        }
        printf("backup %s restored into %s\n", w[1], cfg.dir);
        return 0;
    }
    struct store *st = NULL;
    struct evlog *log = NULL;
    struct wh *wh = NULL;
    rc = open_store(&cfg, &st);
    if (rc == 0)
        rc = open_log(&cfg, &log);
    if (rc == 0)
        rc = open_warehouse(&cfg, &wh);
    if (rc == 0) {
        struct ops_backup_src src = {.dir = cfg.dir, .store = st, .log = log, .wh = wh};
        rc = ops_backup_create(&src, name, err, sizeof(err));
        if (rc == 0)
            printf("%s/backups/%s\n", cfg.dir, name);
        else
            fprintf(stderr, "tandem: %s\n", err);
    }
    wh_close(wh);
    evlog_close(log);
    if (st)
        store_close(st);
    return rc == 0 ? 0 : 1;
}

static int cmd_query(int argc, char **argv)
{
    struct cli_query_opts o = {0};
    o.url = take_opt(&argc, argv, "--url");
    o.email = take_opt(&argc, argv, "--email");
    o.password = take_opt(&argc, argv, "--password");
    const char *format = take_opt(&argc, argv, "--format");
    struct cfg cfg;
    const char *w[1];
    size_t n;
    int rc = cli_args(argc, argv, w, 1, &n, &cfg);
    if (rc != 0)
        return rc;
    if (n != 1 || !*w[0]) {
        fprintf(stderr, "usage: tandem query \"SQL\" [--url http://HOST:PORT] [--email E "
                        "--password P] [--format table|csv|json]\n");
        return EXIT_USAGE;
    }
    o.format = CLI_TABLE;
    if (format && strcmp(format, "csv") == 0) {
        o.format = CLI_CSV;
    } else if (format && strcmp(format, "json") == 0) {
        o.format = CLI_JSON;
    } else if (format && strcmp(format, "table") != 0) {
        fprintf(stderr,
                "tandem: invalid value '%s' for --format (expected table, csv or "
                "json)\n",
                format);
        return EXIT_USAGE;
    }
    char default_url[300];
    snprintf(default_url, sizeof(default_url), "http://%s", cfg.http);
    o.sql = w[0];
    o.dir = cfg.dir;
    o.default_url = default_url;
    o.token = env_token();
    o.timeout_ms = cfg.sql_timeout * 1000;
    o.max_rows = (uint64_t)cfg.sql_max_rows;
    return cli_query(&o, stdout, stderr);
}

/* true/false, yes/no, on/off, 1/0; -1 for anything else */
static int bool_word(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Boolean options as take_opt gave them (NULL: absent, its vals[i] untouched), or a usage
 * error naming the option. */
static int opt_bools(const char *const *given, const char *const *names, int *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (given[i] && (vals[i] = bool_word(given[i])) < 0) {
            fprintf(stderr, "tandem: invalid value '%s' for %s (expected true or false)\n",
                    given[i], names[i]);
            return EXIT_USAGE;
        }
    return 0;
}

/* --wait as take_opt gave it: seconds, 0-86400; absent: 600. */
static int opt_wait(const char *given, int64_t *out)
{
    *out = 600;
    if (!given)
        return 0;
    char *end;
    long long v = strtoll(given, &end, 10);
    if (!*given || *end || v < 0 || v > 86400) {
        fprintf(stderr, "tandem: invalid value '%s' for --wait (expected seconds, 0-86400)\n",
                given);
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

static int cmd_models(int argc, char **argv)
{
    struct cli_models_opts o = {0};
    o.url = take_opt(&argc, argv, "--url");
    o.email = take_opt(&argc, argv, "--email");
    o.password = take_opt(&argc, argv, "--password");
    const char *bools[2] = {take_opt(&argc, argv, "--full-refresh"),
                            take_opt(&argc, argv, "--confirm")};
    const char *wait = take_opt(&argc, argv, "--wait");
    int vals[2] = {0, 0};
    struct cfg cfg;
    const char *w[2];
    size_t n;
    int rc = cli_args(argc, argv, w, 2, &n, &cfg);
    if (rc != 0)
        return rc;
    static const char *const names[2] = {"--full-refresh", "--confirm"};
    if ((rc = opt_bools(bools, names, vals, 2)) != 0 || (rc = opt_wait(wait, &o.wait_s)) != 0)
        return rc;
    bool ok =
        (n == 1 && strcmp(w[0], "list") == 0) ||
        (n == 2 &&
         (strcmp(w[0], "run") == 0 || strcmp(w[0], "export") == 0 || strcmp(w[0], "import") == 0) &&
         *w[1]);
    if (!ok) {
        fprintf(stderr,
                "usage: tandem models list | models run NAME [--full-refresh B] [--confirm B] "
                "[--wait S] | models export DIR | models import DIR [--url URL] [--email E "
                "--password P]\n");
        return EXIT_USAGE;
    }
    char default_url[300];
    snprintf(default_url, sizeof(default_url), "http://%s", cfg.http);
    if (!o.url)
        o.url = default_url;
    o.token = env_token();
    o.full = vals[0];
    o.confirm = vals[1];
    return cli_models(&o, w[0], n == 2 ? w[1] : NULL, stdout, stderr);
}

static int cmd_persons(int argc, char **argv)
{
    struct cli_persons_opts o = {0};
    o.url = take_opt(&argc, argv, "--url");
    o.email = take_opt(&argc, argv, "--email");
    o.password = take_opt(&argc, argv, "--password");
    o.user_id = take_opt(&argc, argv, "--user");
    o.relations = take_opt(&argc, argv, "--relations");
    const char *bools[2] = {take_opt(&argc, argv, "--delete-user"),
                            take_opt(&argc, argv, "--suppress")};
    const char *wait = take_opt(&argc, argv, "--wait");
    struct cfg cfg;
    const char *w[65];
    size_t n;
    int rc = cli_args(argc, argv, w, ARRAY_LEN(w), &n, &cfg);
    if (rc != 0)
        return rc;
    int vals[2] = {0, 0};
    static const char *const names[2] = {"--delete-user", "--suppress"};
    if ((rc = opt_bools(bools, names, vals, 2)) != 0 || (rc = opt_wait(wait, &o.wait_s)) != 0)
        return rc;
    bool del = n >= 1 && strcmp(w[0], "delete") == 0 && ((n > 1) != (o.user_id != NULL));
    bool exp = n == 2 && strcmp(w[0], "export") == 0 && !o.user_id;
    if (!del && !exp) {
        fprintf(stderr, "usage: tandem persons delete ID... | persons delete --user ID "
                        "[--delete-user B] [--relations C.F,...] [--suppress B] [--wait S] | "
                        "persons export ID "
                        "[--url URL] [--email E --password P]\n");
        return EXIT_USAGE;
    }
    if (exp)
        o.export_id = w[1];
    o.ids = w + 1;
    o.n_ids = n - 1;
    o.delete_user = vals[0];
    o.suppress = vals[1];
    char default_url[300];
    snprintf(default_url, sizeof(default_url), "http://%s", cfg.http);
    if (!o.url)
        o.url = default_url;
    o.token = env_token();
    return cli_persons(&o, stdout, stderr);
}

int main(int argc, char **argv)
{
    /* Before anything can create a file: every file tandem, SQLite, DuckDB or the event log
     * creates is then 0600 and every directory 0700 (nothing else in the process calls
     * umask; SQLite gives -wal/-shm the database's own mode, which this makes 0600). */
    umask(DATADIR_UMASK);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2, argv);
    if (strcmp(cmd, "superuser") == 0)
        return cmd_superuser(argc - 2, argv + 2);
    if (strcmp(cmd, "writekey") == 0)
        return cmd_writekey(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "log") == 0)
        return cmd_log(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(argc - 2, argv + 2);
    if (strcmp(cmd, "ml") == 0)
        return cmd_ml(argc - 2, argv + 2);
    if (strcmp(cmd, "backup") == 0)
        return cmd_backup(argc - 2, argv + 2);
    if (strcmp(cmd, "query") == 0)
        return cmd_query(argc - 2, argv + 2);
    if (strcmp(cmd, "models") == 0)
        return cmd_models(argc - 2, argv + 2);
    if (strcmp(cmd, "persons") == 0)
        return cmd_persons(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tandem %s\n", TANDEM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tandem: unknown command '%s' (try 'tandem help')\n", cmd);
    return EXIT_USAGE;
}
