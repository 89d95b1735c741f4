/* auth_int.h - shared by the files of src/auth/ only. */
#ifndef TANDEM_AUTH_AUTH_INT_H
#define TANDEM_AUTH_AUTH_INT_H

#include <stdint.h>

#include "auth/auth.h"

struct auth_secret {
    uint8_t key[AUTH_SECRET_LEN];
};

/* Advanced by every auth_secret_free: a verified-token cache entry made under a secret that
 * has been freed since (its address may be reused) is never trusted. */
extern uint64_t auth__secrets_freed; /* atomic */

/* libsodium is ready: initialises it once; PANICs if it cannot start (auth_init() reports the
 * same failure as an error for main() to print first). */
void auth__sodium_ready(void);

/* Writes the message into err (when err_len > 0) and returns rc: the one-line reasons of the
 * OAuth2 and id token functions. */
int auth__fail(char *err, size_t err_len, int rc, const char *fmt, ...) PRINTF_LIKE(4, 5);

#endif
