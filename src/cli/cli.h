/* cli.h - command-line clients that are more than wiring: `tandem query`, `tandem ml`.
 *
 * Runs on the main thread of a short-lived process. */
#ifndef TANDEM_CLI_CLI_H
#define TANDEM_CLI_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/core.h"

enum cli_format { CLI_TABLE, CLI_CSV, CLI_JSON };

struct cli_query_opts {
    const char *sql;
    const char *dir;   /* the data directory, for a direct open */
    const char *url;   /* a running server ("http://HOST:PORT"), or NULL */
    const char *token; /* a superuser token, or NULL */
    const char *email; /* sign in with these when there is no token */
    const char *password;
    const char *default_url; /* tried when the warehouse is held by a server and url is NULL */
    enum cli_format format;
    int64_t timeout_ms;
    uint64_t max_rows;
};

/* Runs the query and prints the result on out; problems go to err as one line. Returns the
 * process exit status: 0, 1 for a failed query or connection, 2 for bad usage. */
int cli_query(const struct cli_query_opts *o, FILE *out, FILE *err);

/* `tandem import pocketbase PATH`: imports the collections and records of the PocketBase
 * data directory (or data.db) at PATH into st, and the stored files of their file fields into
 * the file storage of the data directory dir (see pbimport.c). Progress goes to out, each
 * problem to err as one line. Returns the exit status: 0, or 1 when something was not
 * imported. */
struct store;
int cli_import_pocketbase(const char *path, struct store *st, const char *dir, FILE *out,
                          FILE *err);

/* Prints an SQL API response ({"columns":[...],"rows":[...],...}) in a format. Exposed for
 * tests. */
void cli_print_result(const json_t *resp, enum cli_format format, FILE *out);

struct cli_ml_opts {
    const char *spec_path; /* a JSON file, "-" for stdin */
    const char *url;       /* the server ("http://HOST:PORT") */
    const char *token;     /* a superuser token, or NULL */
    const char *email, *password;
    int64_t wait_s; /* > 0: poll up to this long until the version is done and print it */
};

/* `tandem ml train`: 0 when queued (or, with wait, trained), 1 on failure, 2 bad usage. */
int cli_ml_train(const struct cli_ml_opts *o, FILE *out, FILE *err);

/* ---- `tandem models` ---- */

struct cli_models_opts {
    const char *url;   /* the server ("http://HOST:PORT") */
    const char *token; /* a superuser token, or NULL */
    const char *email; /* sign in with these when there is no token */
    const char *password;
    bool full, confirm;
    int64_t wait_s; /* models run: wait up to this long for the run (0: only queue it) */
};

/* `tandem models list | run NAME | export DIR | import DIR` against a running server (models
 * run on its runner thread). Returns the exit status: 0, 1 for a failure, 2 for bad usage. */
int cli_models(const struct cli_models_opts *o, const char *verb, const char *arg, FILE *out,
               FILE *err);

/* ---- `tandem persons` ---- */

struct cli_persons_opts {
    const char *url;   /* the server ("http://HOST:PORT") */
    const char *token; /* a superuser token, or NULL */
    const char *email; /* sign in with these when there is no token */
    const char *password;
    const char *export_id;  /* export: the distinct id; NULL: delete */
    const char *const *ids; /* delete: distinct ids (or user_id) */
    size_t n_ids;
    const char *user_id;
    const char *relations; /* delete: "collection.field,..." or NULL */
    bool delete_user, suppress;
    int64_t wait_s; /* delete: wait up to this long for the job (0: only queue it) */
};

/* `tandem persons delete ID... | --user ID` and `tandem persons export ID` against a running
 * server. Prints the job (or the export document). 0, 1 for a failure (or a job that did not
 * finish in time), 2 for bad usage. */
int cli_persons(const struct cli_persons_opts *o, FILE *out, FILE *err);

/* ---- `tandem log migrate` ---- */

struct evlog_cfg;
/* `tandem log migrate --to kafka`: switches the stopped data directory data_dir, whose local
 * log kcfg describes (dir, and the kafka_* settings), to Kafka. 0 done (or done before), 1 it
 * failed (a line on err says why; run it again once fixed), 2 bad usage or a server runs. */
int cli_log_migrate(const char *to, const struct evlog_cfg *kcfg, const char *data_dir, FILE *out,
                    FILE *err);

#endif
