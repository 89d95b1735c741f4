/* auth_int.h - shared by the files of src/auth/ only. */
#ifndef TANDEM_AUTH_AUTH_INT_H
#define TANDEM_AUTH_AUTH_INT_H

#include <stdint.h>

#include "auth/auth.h"

struct auth_secret {
    uint8_t key[AUTH_SECRET_LEN];
};

/* libsodium is ready: initialises it once; PANICs if it cannot start (auth_init() reports the
 * same failure as an error for main() to print first). */
void auth__sodium_ready(void);

#endif
