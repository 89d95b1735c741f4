/* fuzz_auth_token.c - libFuzzer target for auth_token_verify and auth_token_from_header.
 *
 * The input is an Authorization header value. Even inputs are verified as they are; odd ones
 * first get a correct HS256 signature for their "header.payload" part (everything before the
 * last '.'), so the fuzzer also explores the claims checks and libjwt's decoding of tokens
 * whose MAC is valid. Invariants: no crash or sanitizer report; an accepted token had its
 * lookup called exactly once and yields printable ids and an exp in the future.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -Isrc \
 *     tests/fuzz/fuzz_auth_token.c src/auth/token.c src/auth/secret.c src/auth/password.c \
 *     src/core/arena.c src/core/cfg.c src/core/err.c src/core/str.c src/core/util.c \
 *     src/core/xlog.c -lsodium -ljwt -ljansson -lpthread -lm -o fuzz_auth_token
 *   ./fuzz_auth_token -max_total_time=60 -max_len=9000 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

#define NOW 1800000000LL
#define TOKEN_KEY "fuzzTokenKey0123456789fuzzTokenKey0123456789abcdef"

static struct auth_secret *secret;
static int lookups;

static int lookup(void *arg, const char *collection_id, const char *record_id,
                  char token_key_out[AUTH_TOKEN_KEY_MAX + 1])
{
    (void)arg;
    lookups++;
    if (strlen(collection_id) > AUTH_ID_MAX || strlen(record_id) > AUTH_ID_MAX)
        abort();
    strcpy(token_key_out, TOKEN_KEY);
    return 0;
}

/* in[0..len) cut at its last '.', followed by a valid signature made with the key of
 * collection "c": tokens claiming collectionId "c" pass the MAC check. */
static char *sign(const uint8_t *in, size_t len)
{
    size_t cut = len;
    while (cut > 0 && in[cut - 1] != '.')
        cut--;
    if (cut == 0)
        cut = len + 1; /* no dot: sign everything */
    size_t body = cut - 1;
    char cs[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(secret, "auth", "c", cs);
    uint8_t key[256];
    size_t tk = strlen(TOKEN_KEY);
    memcpy(key, TOKEN_KEY, tk);
    memcpy(key + tk, cs, AUTH_COLLECTION_SECRET_LEN);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, tk + AUTH_COLLECTION_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, in, body);
    crypto_auth_hmacsha256_final(&st, mac);
    char sig[64];
    sodium_bin2base64(sig, sizeof(sig), mac, sizeof(mac), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(body + 1 + strlen(sig) + 1);
    memcpy(out, in, body);
    out[body] = '.';
    strcpy(out + body + 1, sig);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!secret) {
        uint8_t k[AUTH_SECRET_LEN] = {1, 2, 3};
        if (auth_secret_from_bytes(k, sizeof(k), &secret) != 0)
            abort();
    }
    if (size == 0 || size > 3 * AUTH_TOKEN_MAX)
        return 0;
    char *text;
    if (data[0] & 1) {
        text = sign(data + 1, size - 1);
    } else {
        text = malloc(size);
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
    }
    struct str tok;
    if (auth_token_from_header(text, &tok) == 0) {
        struct auth_token_claims c;
        lookups = 0;
        int rc = auth_token_verify(secret, tok.ptr, tok.len, NOW, lookup, NULL, &c);
        if (rc == 0) {
            if (lookups != 1 || c.exp <= NOW || strlen(c.collection_id) == 0 ||
                strlen(c.record_id) == 0)
                abort();
            for (const char *p = c.record_id; *p; p++)
                if (*p < 0x21 || *p > 0x7e)
                    abort();
        } else if (lookups > 1) {
            abort();
        }
    }
    free(text);
    return 0;
}
