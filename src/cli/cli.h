/* cli.h - command-line clients that are more than wiring: `tandem query`.
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

/* Prints an SQL API response ({"columns":[...],"rows":[...],...}) in a format. Exposed for
 * tests. */
void cli_print_result(const json_t *resp, enum cli_format format, FILE *out);

/* ---- plain HTTP to a running server ---- */

/* Sends METHOD url+path with a JSON body (or NULL) and token (or NULL); returns the status or
 * a negative error, and the parsed response (the caller's; NULL when empty or not JSON). */
int cli_http(const char *url, const char *method, const char *path, const char *token,
             const char *body, json_t **resp_out);
/* A superuser token for email/password at url (the caller frees it), or NULL after printing
 * why on err. */
char *cli_signin(const char *url, const char *email, const char *password, FILE *err);

/* ---- `tandem models` ---- */

struct cli_models_opts {
    const char *url;   /* the server ("http://HOST:PORT") */
    const char *token; /* a superuser token, or NULL */
    const char *email; /* sign in with these when there is no token */
    const char *password;
    bool full, confirm, wait;
};

/* `tandem models list | run NAME | export DIR | import DIR` against a running server (models
 * run on its runner thread). Returns the exit status: 0, 1 for a failure, 2 for bad usage. */
int cli_models(const struct cli_models_opts *o, const char *verb, const char *arg, FILE *out,
               FILE *err);

#endif
