/* password.c - argon2id password hashes through libsodium, constant-time comparison and
 * tokenKey generation. */
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "auth/auth_int.h"

_Static_assert(AUTH_HASH_LEN == crypto_pwhash_STRBYTES, "AUTH_HASH_LEN is libsodium's size");

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc;

static void sodium_start(void)
{
    sodium_rc = sodium_init() < 0 ? ERR_INTERNAL : 0;
}

int auth_init(void)
{
    pthread_once(&sodium_once, sodium_start);
    return sodium_rc;
}

void auth__sodium_ready(void)
{
    if (auth_init() != 0)
        PANIC("libsodium cannot initialise");
}

bool auth_ct_equal(const void *a, const void *b, size_t len)
{
    auth__sodium_ready();
    return sodium_memcmp(a, b, len) == 0;
}

bool auth_ct_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return auth_ct_equal(a, b, la);
}

struct auth_hash_params auth_hash_params_default(void)
{
    return (struct auth_hash_params){crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                     crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

static bool params_valid(const struct auth_hash_params *p)
{
    return p->opslimit >= crypto_pwhash_OPSLIMIT_MIN && p->opslimit <= crypto_pwhash_OPSLIMIT_MAX &&
           p->memlimit >= crypto_pwhash_MEMLIMIT_MIN && p->memlimit <= crypto_pwhash_MEMLIMIT_MAX;
}

/* Bounded strlen: more than max bytes gives max + 1. */
static size_t pw_len(const char *pw, size_t max)
{
    const char *nul = memchr(pw, '\0', max + 1);
    return nul ? (size_t)(nul - pw) : max + 1;
}

int auth_password_hash_with(const char *pw, const struct auth_hash_params *params,
                            char out[AUTH_HASH_LEN])
{
    auth__sodium_ready();
    if (!params_valid(params))
        return ERR_INVALID;
    size_t len = pw_len(pw, AUTH_PASSWORD_MAX);
    if (len > AUTH_PASSWORD_MAX)
        return ERR_LIMIT;
    if (crypto_pwhash_str(out, pw, len, params->opslimit, params->memlimit) != 0)
        return -ENOMEM; /* libsodium's only failure here: the memory for the hash */
    return 0;
}

int auth_password_decoy(const struct auth_hash_params *params, char out[AUTH_HASH_LEN])
{
    auth__sodium_ready();
    if (!params_valid(params))
        return ERR_INVALID;
    unsigned char salt[crypto_pwhash_SALTBYTES], hash[32];
    char salt64[sodium_base64_ENCODED_LEN(sizeof(salt), sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    char hash64[sodium_base64_ENCODED_LEN(sizeof(hash), sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    randombytes_buf(salt, sizeof(salt));
    randombytes_buf(hash, sizeof(hash));
    sodium_bin2base64(salt64, sizeof(salt64), salt, sizeof(salt),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(hash64, sizeof(hash64), hash, sizeof(hash),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    int n =
        snprintf(out, AUTH_HASH_LEN, "%sv=19$m=%llu,t=%llu,p=1$%s$%s",
                 crypto_pwhash_argon2id_STRPREFIX, (unsigned long long)(params->memlimit / 1024),
                 (unsigned long long)params->opslimit, salt64, hash64);
    /* libsodium must read it as a hash of exactly these parameters, or it would cost less */
    if (n < 0 || n >= AUTH_HASH_LEN ||
        crypto_pwhash_str_needs_rehash(out, params->opslimit, params->memlimit) != 0)
        return ERR_INTERNAL;
    return 0;
}

int auth_password_hash(const char *pw, char out[AUTH_HASH_LEN])
{
    struct auth_hash_params p = auth_hash_params_default();
    return auth_password_hash_with(pw, &p, out);
}

/* An argon2 PHC string libsodium can read: "$argon2id$" or "$argon2i$", shorter than
 * AUTH_HASH_LEN. libsodium answers -1 for both "malformed" and "mismatch"; this tells them
 * apart without looking at secret parts. */
static bool hash_well_formed(const char *hash)
{
    size_t len = pw_len(hash, AUTH_HASH_LEN - 1);
    if (len >= AUTH_HASH_LEN)
        return false;
    if (strncmp(hash, crypto_pwhash_argon2id_STRPREFIX, strlen(crypto_pwhash_argon2id_STRPREFIX)) !=
            0 &&
        strncmp(hash, crypto_pwhash_argon2i_STRPREFIX, strlen(crypto_pwhash_argon2i_STRPREFIX)) !=
            0)
        return false;
    /* needs_rehash parses the whole parameter block and rejects what verify cannot use */
    struct auth_hash_params p = auth_hash_params_default();
    return crypto_pwhash_str_needs_rehash(hash, p.opslimit, p.memlimit) >= 0;
}

/* A bcrypt hash as PocketBase (Go's x/crypto/bcrypt) writes it: "$2a$" (or "$2b$", "$2y$"),
 * a two-digit cost, "$", 22 characters of salt and 31 of hash in bcrypt's base64. Costs above
 * AUTH_BCRYPT_COST_MAX are refused: each step doubles the work of a check. */
#define AUTH_BCRYPT_COST_MAX 16

static bool bcrypt_well_formed(const char *hash)
{
    static const char b64[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (pw_len(hash, 60) != 60 || hash[0] != '$' || hash[1] != '2' ||
        (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y') || hash[3] != '$' || hash[6] != '$')
        return false;
    if (hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9')
        return false;
    int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
    if (cost < 4 || cost > AUTH_BCRYPT_COST_MAX)
        return false;
    for (size_t i = 7; i < 60; i++)
        if (!memchr(b64, hash[i], sizeof(b64) - 1))
            return false;
    return true;
}

static int bcrypt_verify(const char *hash, const char *pw)
{
    struct crypt_data *cd = xcalloc(1, sizeof(*cd)); /* 32 KiB: not on a worker's stack */
    const char *out = crypt_r(pw, hash, cd);
    int rc = out && out[0] != '*' && auth_ct_streq(out, hash) ? 0 : ERR_DENIED;
    sodium_memzero(cd, sizeof(*cd));
    free(cd);
    return rc;
}

int auth_password_verify(const char *hash, const char *pw)
{
    auth__sodium_ready();
    size_t len = pw_len(pw, AUTH_PASSWORD_MAX);
    if (len > AUTH_PASSWORD_MAX)
        return ERR_LIMIT;
    if (bcrypt_well_formed(hash))
        return len > 72 ? ERR_DENIED : bcrypt_verify(hash, pw); /* bcrypt reads 72 bytes */
    if (!hash_well_formed(hash))
        return ERR_INVALID;
    if (crypto_pwhash_str_verify(hash, pw, len) != 0)
        return ERR_DENIED;
    return 0;
}

int auth_password_needs_rehash_with(const char *hash, const struct auth_hash_params *params)
{
    auth__sodium_ready();
    if (bcrypt_well_formed(hash))
        return 1; /* imported from PocketBase: move it to argon2id */
    if (!hash_well_formed(hash))
        return ERR_INVALID;
    if (strncmp(hash, crypto_pwhash_argon2id_STRPREFIX, strlen(crypto_pwhash_argon2id_STRPREFIX)) !=
        0)
        return 1; /* argon2i: move it to argon2id */
    int r = crypto_pwhash_str_needs_rehash(hash, params->opslimit, params->memlimit);
    if (r < 0)
        return ERR_INVALID;
    return r;
}

int auth_password_needs_rehash(const char *hash)
{
    struct auth_hash_params p = auth_hash_params_default();
    return auth_password_needs_rehash_with(hash, &p);
}

void auth_token_key_new(char out[AUTH_TOKEN_KEY_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    auth__sodium_ready();
    for (size_t i = 0; i < AUTH_TOKEN_KEY_LEN; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)]; /* unbiased */
    out[AUTH_TOKEN_KEY_LEN] = '\0';
}
