/* cli_int.h - shared by the files of cli/ only: a minimal HTTP/1.1 client for plain http on a
 * trusted network, and signing in as a superuser. */
#ifndef TANDEM_CLI_CLI_INT_H
#define TANDEM_CLI_CLI_INT_H

#include "cli/cli.h"

struct url {
    char host[256];
    char port[8];
};

/* "http://HOST:PORT" -> host and port. ERR_INVALID for anything else. */
int cli__parse_url(const char *u, struct url *out) MUST_USE;
/* Sends one request with a JSON body (NULL: none); returns the status (or a negative error)
 * and appends the response body to resp. */
int cli__http(const struct url *u, const char *method, const char *path, const char *token,
              const char *body, struct buf *resp);
/* The token to send: given (TANDEM_TOKEN) when set, else a superuser's from signing in with
 * email and password. 0, or an exit status (1, 2) after a line on err. */
int cli__token(const struct url *u, const char *url_text, const char *given, const char *email,
               const char *password, char **token_out, FILE *err) MUST_USE;

#endif
