/* main.c - command line, wiring and signals. Thin: everything else lives in modules. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "metrics/metrics.h"

extern char **environ;

#define EXIT_USAGE 2
#define DRAIN_MS 8000

static void usage(FILE *out)
{
    fprintf(out,
            "tandem %s - one program that is both an app backend and its data platform\n\n"
            "usage: tandem <command> [options]\n\n"
            "commands:\n"
            "  serve     start the server\n"
            "  version   print the version\n"
            "  help      show this help\n\n",
            TANDEM_VERSION);
    cfg_print_help(out);
}

/* mkdir -p, new directories with mode 0700 */
static int make_dir(const char *path)
{
    char tmp[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(tmp, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
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
    return 0;
}

/* --ratelimit: "off" gives NULL; "default" PocketBase's rules; otherwise rules on top of them */
static int open_ratelimit(const char *spec, struct auth_ratelimit **out)
{
    *out = NULL;
    if (strcmp(spec, "off") == 0)
        return 0;
    struct auth_ratelimit_cfg rc;
    char err[256];
    auth_ratelimit_cfg_default(&rc);
    if (strcmp(spec, "default") != 0 && auth_ratelimit_parse(spec, &rc, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: invalid value for --ratelimit: %s\n", err);
        return EXIT_USAGE;
    }
    if (auth_ratelimit_new(&rc, out) != 0) {
        fprintf(stderr, "tandem: invalid value for --ratelimit '%s'\n", spec);
        return EXIT_USAGE;
    }
    return 0;
}

/* Everything `serve` opens, released in reverse order through one path. */
struct app {
    struct cfg cfg;
    struct auth_secret *secret;
    struct auth_pool *pool;
    struct auth_ratelimit *rl;
    struct api_env env;
    struct http_router *router;
    struct http_server *srv;
};

static void app_close(struct app *a)
{
    http_server_close(a->srv, DRAIN_MS);
    http_router_free(a->router);
    auth_pool_free(a->pool);
    auth_ratelimit_free(a->rl);
    auth_secret_free(a->secret);
}

static int app_open(struct app *a)
{
    char err[512];
    int rc = make_dir(a->cfg.dir);
    if (rc != 0) {
        fprintf(stderr, "tandem: cannot create data directory %s: %s\n", a->cfg.dir, err_str(rc));
        return 1;
    }
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

    metrics_register_process(TANDEM_VERSION);
    a->env.cfg = &a->cfg;
    a->env.secret = a->secret;
    a->env.pool = a->pool;
    a->env.rl = a->rl;
    a->router = http_router_new();
    api_register(a->router, &a->env);

    struct http_opts opts = {
        .addr = a->cfg.http,
        .threads = (unsigned)a->cfg.threads,
        .max_body = (uint64_t)a->cfg.max_body,
        .idle_timeout_s = (unsigned)a->cfg.idle_timeout,
    };
    if (http_server_open(&opts, a->router, &a->srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
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

    rc = app_open(&a);
    if (rc != 0) {
        app_close(&a);
        return rc;
    }
    printf("tandem listening on http://%s:%u\n", http_server_url_host(a.srv),
           http_server_port(a.srv));
    fflush(stdout);
    xlog_info("serving, data in %s", a.cfg.dir);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    xlog_info("received signal %d, shutting down", sig);
    app_close(&a);
    xlog_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
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
