/* cfg.h - the configuration table.
 *
 * Every option is one row of a declarative table (name, environment variable, default,
 * description); the same table parses the command line and the environment and prints
 * --help. Precedence: default < TANDEM_<NAME> environment variable < --name on the command
 * line. A struct cfg is filled once at start and read-only afterwards (any thread). */
#ifndef TANDEM_CORE_CFG_H
#define TANDEM_CORE_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

struct cfg {
    char http[256];           /* ADDR:PORT to listen on */
    char dir[1024];           /* data directory */
    char log_level[16];       /* debug|info|warn|error|off */
    int64_t max_body;         /* bytes */
    int64_t idle_timeout;     /* seconds a connection may stay idle or stalled */
    int64_t request_timeout;  /* seconds one request may take to arrive; 0 = no limit */
    int64_t max_conns;        /* 0 = as many as the open-file limit allows */
    int64_t max_conns_per_ip; /* 0 = no limit */
    int64_t threads;          /* HTTP threads; 0 = one per core */
    char ratelimit[512];      /* "off", "default" or CLASS=MAX/WINDOW,... */
    char origins[2048];       /* CORS: "*" or a comma-separated list of origins */
    char fsync[16];           /* always|batch|never */
    char log_backend[16];     /* local|kafka */
    char role[16];            /* all|primary|capture */
    char kafka_brokers[1024];
    char kafka_topic_prefix[128];
    char kafka_config[1024];    /* a file of librdkafka settings; "" none */
    int64_t log_segment_size;   /* bytes */
    int64_t log_retention_size; /* bytes per topic; 0 = unlimited */
    int64_t log_retention_age;  /* seconds; 0 = forever */
    int64_t dedup_window;       /* seconds */
    int64_t dedup_snapshot;     /* seconds; 0: only at stop */
    int64_t warehouse_memory;   /* bytes */
    int64_t warehouse_threads;  /* 0 = DuckDB's default (one per core) */
    int64_t ml_max_bytes;       /* training data in memory, bytes */
    int64_t ml_threads;         /* XGBoost threads; 0 = one per core */
    int64_t sql_timeout;        /* seconds */
    int64_t sql_max_rows;
    int64_t records_timeout;      /* seconds of store work per record/auth request */
    int64_t records_max_body;     /* bytes of a record/auth request body */
    int64_t records_max_keys;     /* top-level keys of a record/auth request body */
    int64_t records_max_expand;   /* bytes of expanded records per response */
    int64_t realtime_queue;       /* bytes a realtime client may fall behind */
    int64_t realtime_keepalive;   /* seconds; 0 = no keep-alive comments */
    int64_t realtime_max_clients; /* 0 = unlimited */
    char public_dir[1024];        /* static files at /: "auto", "off", "" or a directory */
    bool index_fallback;          /* unknown static paths get the root index.html */
    char smtp_ca_file[1024];      /* CA bundle for SMTP TLS; "": the system's */
    uint64_t given; /* bit i: option cfg_opts[i] came from the environment or the command line */
};

enum cfg_type {
    CFG_STRING,
    CFG_SIZE,     /* bytes: 1048576, 512KiB, 32MiB, 1GiB (also k, M, G, KB, MB, GB) */
    CFG_INT,      /* a whole number in [min, max] */
    CFG_DURATION, /* seconds: 30, 30s, 5m, 1h */
    CFG_BOOL      /* true/false, on/off, yes/no, 1/0; a bare --name means true */
};

struct cfg_opt {
    const char *name; /* long option without "--" */
    const char *env;  /* environment variable */
    const char *def;  /* default, as text parsed like user input */
    const char *help;
    enum cfg_type type;
    size_t offset;    /* into struct cfg */
    size_t size;      /* of the field, for strings */
    int64_t min, max; /* for CFG_STRING, min 1 allows the empty string */
};

/* The table, terminated by a row whose name is NULL. */
extern const struct cfg_opt cfg_opts[];

/* Applies defaults, then the environment (envp, NULL-terminated "NAME=VALUE"), then argv.
 * Stops at the first problem: -ERR_INVALID with a one-line message naming the option in
 * err (e.g. "unknown option --foo"). argv holds only options (no command word). */
int cfg_load(struct cfg *c, int argc, char **argv, char **envp, char *err, size_t err_len) MUST_USE;
/* Parses one value of the given type; -ERR_INVALID when malformed or out of range. */
int cfg_parse_value(const struct cfg_opt *o, const char *text, struct cfg *c) MUST_USE;
/* Whether option `name` was set by the environment or the command line (not its default). */
bool cfg_given(const struct cfg *c, const char *name);
/* Writes the option table as help text. */
void cfg_print_help(FILE *out);

#endif
