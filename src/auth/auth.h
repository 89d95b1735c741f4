/* auth.h - the primitives of authentication: password hashing and its worker pool, the secret
 * file, PocketBase-format tokens, token keys, constant-time comparison and rate limiting.
 *
 * auth/ never touches the store or HTTP. What it needs from the store (a record's current
 * tokenKey, a stored password hash) reaches it through callbacks or plain values, and what the
 * HTTP layer needs (suspend a request while a password hashes, answer 429 with Retry-After) it
 * gets through completion callbacks and return codes. docs/security.md explains the choices and
 * names the test behind each promise.
 *
 * libsodium is initialised on first use by every function here that needs it; auth_init()
 * lets main() find a broken libsodium at start instead. */
#ifndef TANDEM_AUTH_AUTH_H
#define TANDEM_AUTH_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Initialises libsodium. Idempotent, thread-safe. -ERR_INTERNAL when libsodium cannot start. */
int auth_init(void) MUST_USE;

/* ---- constant-time comparison (any thread) ---- */

/* True when the len bytes at a and b are equal; the time taken depends only on len. Use it for
 * every comparison of secret material (signatures, keys, one-time codes). */
bool auth_ct_equal(const void *a, const void *b, size_t len);
/* Same for NUL-terminated strings; only the lengths (not the contents) may leak through time. */
bool auth_ct_streq(const char *a, const char *b);

/* ---- passwords (any thread; each call blocks for the whole hash, ~130 ms by default) ---- */

/* A PHC string "$argon2id$v=19$m=65536,t=2,p=1$salt$hash" with its NUL fits in this many
 * bytes (libsodium's crypto_pwhash_STRBYTES). */
#define AUTH_HASH_LEN 128
/* Longer passwords are refused with ERR_LIMIT before any work is done. */
#define AUTH_PASSWORD_MAX 1024

/* argon2id cost. The production setting is libsodium's INTERACTIVE pair (2 passes, 64 MiB);
 * tests may use cheaper values through the _with variants and the pool configuration. */
struct auth_hash_params {
    unsigned long long opslimit;
    size_t memlimit; /* bytes */
};
struct auth_hash_params auth_hash_params_default(void);

/* Hashes pw (NUL-terminated) with argon2id and a random salt into out.
 * ERR_LIMIT: pw longer than AUTH_PASSWORD_MAX; -ENOMEM: the memory for the hash. */
int auth_password_hash(const char *pw, char out[AUTH_HASH_LEN]) MUST_USE;
/* ERR_INVALID when params are outside libsodium's bounds. */
int auth_password_hash_with(const char *pw, const struct auth_hash_params *params,
                            char out[AUTH_HASH_LEN]) MUST_USE;
/* A well-formed argon2id hash with params' cost whose password nobody knows (random salt and
 * random digest), made without hashing: checking a password against it costs exactly what a
 * real check costs and never matches. For unknown accounts, so they take as long as known ones. */
int auth_password_decoy(const struct auth_hash_params *params, char out[AUTH_HASH_LEN]) MUST_USE;
/* 0 when pw matches hash; ERR_DENIED when it does not; ERR_INVALID when hash is neither an
 * argon2 PHC string nor a bcrypt hash as PocketBase stores them ("$2a$10$...", checked with
 * libcrypt, cost at most 16); ERR_LIMIT when pw is too long. The cost is the one recorded in
 * hash. A bcrypt hash always needs a rehash (auth_password_needs_rehash). */
int auth_password_verify(const char *hash, const char *pw) MUST_USE;
/* 1 when hash was made with other parameters than the default ones (rehash it after a
 * successful login), 0 when not, ERR_INVALID when hash is malformed. */
int auth_password_needs_rehash(const char *hash) MUST_USE;
int auth_password_needs_rehash_with(const char *hash,
                                    const struct auth_hash_params *params) MUST_USE;

/* ---- the hashing pool ----
 *
 * Password hashing is slow (by design) and memory hungry (64 MiB each), so it never runs on an
 * HTTP thread and never runs more than max_concurrent at once. A handler suspends its request
 * (http_req_suspend), submits a job and returns; the job's callback runs on a worker thread,
 * replies and resumes the request. The queue is bounded: when it is full the submit fails
 * with ERR_BUSY at once (answer 503 with Retry-After) instead of letting logins pile up.
 *
 * Promise: every job whose submit returned 0 gets its callback called exactly once - with the
 * result, or with rc ERR_BUSY when the pool is freed before the job ran. A submit that failed
 * never calls the callback. The callback runs on a pool thread (or, at auth_pool_free, on the
 * freeing thread) while the job still holds its concurrency slot: keep it short (reply,
 * resume). It may submit new jobs (a rehash after a login) but must never call auth_pool_free
 * or a _wait function.
 *
 * All functions may be called from any thread, except auth_pool_free (the owner, once). */

struct auth_pool;

struct auth_pool_cfg {
    unsigned n_threads;             /* worker threads; 0: one per core */
    unsigned max_concurrent;        /* hashes running at once; 0: 2 (each needs memlimit bytes) */
    size_t queue_cap;               /* jobs waiting; 0: 256 */
    struct auth_hash_params params; /* all zero: auth_hash_params_default() */
};

struct auth_pool_result {
    int rc;            /* see auth_pool_hash / auth_pool_verify */
    const char *hash;  /* hash jobs with rc 0: the new hash, valid during the callback only */
    bool needs_rehash; /* verify jobs with rc 0: the stored hash uses other parameters */
};

typedef void (*auth_pool_done_cb)(void *arg, const struct auth_pool_result *res);

/* Starts the threads and computes the dummy hash used for unknown identities (one hash, so
 * this takes as long as one hash). ERR_INVALID for bad parameters; -errno when a thread
 * cannot start. */
int auth_pool_new(const struct auth_pool_cfg *cfg, struct auth_pool **out) MUST_USE;
/* Stops accepting, lets running jobs finish, calls the callbacks of queued jobs with ERR_BUSY
 * (on this thread), joins the threads and frees. NULL is fine. */
void auth_pool_free(struct auth_pool *pool);

/* Queues hashing pw (copied; the copy is wiped after use). Result rc: 0 (res->hash is set),
 * -ENOMEM. Submit errors: ERR_BUSY (queue full or pool stopping), ERR_LIMIT (pw too long). */
int auth_pool_hash(struct auth_pool *pool, const char *pw, auth_pool_done_cb cb,
                   void *arg) MUST_USE;
/* Queues checking pw against hash (both copied). hash NULL means the identity is unknown: pw
 * is checked against the pool's dummy hash, which costs exactly what a real check costs, and
 * the result is ERR_DENIED - so the time of a login does not tell which identities exist. A
 * malformed stored hash also costs a full dummy check before giving ERR_INVALID.
 * Result rc: 0 match, ERR_DENIED mismatch or unknown identity, ERR_INVALID bad hash.
 * Submit errors: as auth_pool_hash, and ERR_INVALID when hash is longer than AUTH_HASH_LEN. */
int auth_pool_verify(struct auth_pool *pool, const char *hash, const char *pw, auth_pool_done_cb cb,
                     void *arg) MUST_USE;

/* Blocking forms for the command line and tests (never an HTTP thread): submit and wait.
 * They return the submit error or the job's result code. */
int auth_pool_hash_wait(struct auth_pool *pool, const char *pw, char out[AUTH_HASH_LEN]) MUST_USE;
int auth_pool_verify_wait(struct auth_pool *pool, const char *hash, const char *pw,
                          bool *needs_rehash_out) MUST_USE;

struct auth_pool_stats {
    size_t queued;         /* jobs waiting now */
    unsigned running;      /* jobs running now */
    unsigned peak_running; /* most jobs ever running at once */
    uint64_t completed;    /* callbacks called */
    uint64_t rejected;     /* submits refused with ERR_BUSY */
    unsigned n_threads, max_concurrent;
    size_t queue_cap;
};
void auth_pool_stats(struct auth_pool *pool, struct auth_pool_stats *out);
/* RETURNS BORROWED: the dummy hash (lives as long as the pool). */
const char *auth_pool_dummy_hash(const struct auth_pool *pool);

/* ---- the secret file ----
 *
 * <dir>/secret holds AUTH_SECRET_LEN random bytes, the root of every signing key. It is
 * created on first start (mode 0600; written to a temporary file, fsynced, linked into place
 * so two processes starting at once cannot both create one, directory fsynced) and loaded on
 * every later start. Opening refuses - and the server must not start - when the file cannot
 * be read, is not a regular file, has the wrong size, or is accessible by group or others.
 * A struct auth_secret is immutable after opening: any thread may read it. */

#define AUTH_SECRET_LEN 64

struct auth_secret;

/* On failure err holds one line naming the file and the problem. Returns -errno for system
 * errors, ERR_DENIED for a mode that lets group or others in, ERR_CORRUPT for a wrong size or
 * a file that is not a regular file. */
int auth_secret_open(const char *dir, struct auth_secret **out, char *err, size_t err_len) MUST_USE;
/* A secret from given bytes (tests, or tools that keep the key elsewhere).
 * ERR_INVALID unless len == AUTH_SECRET_LEN. */
int auth_secret_from_bytes(const void *key, size_t len, struct auth_secret **out) MUST_USE;
/* Wipes and frees. NULL is fine. */
void auth_secret_free(struct auth_secret *s);

/* The token secret of one collection for one token purpose ("auth", later "file",
 * "passwordReset", ...): 64 lowercase hex characters of keyed BLAKE2b-256 with the secret as
 * key over "tandem-token-v1" NUL purpose NUL collection_id. It plays the role of PocketBase's
 * per-collection <purpose>Token.secret, so keys of different purposes and collections are
 * unrelated and none is ever stored. */
#define AUTH_COLLECTION_SECRET_LEN 64
void auth_secret_collection(const struct auth_secret *s, const char *purpose,
                            const char *collection_id, char out[AUTH_COLLECTION_SECRET_LEN + 1]);

/* ---- tokens (PocketBase format; any thread) ----
 *
 * A JWT signed with HS256, header {"alg":"HS256","typ":"JWT"}, claims in this exact form:
 *   {"collectionId":"_pb_users_auth_","exp":1731600000,"id":"4q1xlclmfloku33",
 *    "refreshable":true,"type":"auth"}
 * The HMAC key is the record's tokenKey followed by auth_secret_collection(s, "auth",
 * collectionId). Rotating a record's tokenKey (on password or email change) therefore revokes
 * every token issued to it. Nothing about tokens is stored server-side. */

#define AUTH_TOKEN_CACHE_SLOTS 16           /* verified tokens remembered per thread */
#define AUTH_TOKEN_CACHE_LEN 640            /* longer tokens are verified every time */
#define AUTH_TOKEN_MAX 8192                 /* longer tokens are refused before any parsing */
#define AUTH_TOKEN_KEY_LEN 50               /* length of a generated tokenKey */
#define AUTH_TOKEN_KEY_MAX 255              /* longest tokenKey accepted from the store */
#define AUTH_ID_MAX 100                     /* longest collection or record id in a token */
#define AUTH_TOKEN_DURATION_AUTH 432000     /* seconds: auth collections (5 days) */
#define AUTH_TOKEN_DURATION_SUPERUSER 86400 /* seconds: _superusers (1 day) */

/* A fresh tokenKey: AUTH_TOKEN_KEY_LEN characters drawn uniformly from [A-Za-z0-9]. */
void auth_token_key_new(char out[AUTH_TOKEN_KEY_LEN + 1]);

/* PocketBase's token types. Each type is signed with its own collection secret
 * (auth_secret_collection with purpose auth_token_type_name(type)), so a token of one type is
 * never accepted as another. */
enum auth_token_type {
    AUTH_TOKEN_AUTH = 0,       /* {collectionId, exp, id, refreshable, type} */
    AUTH_TOKEN_VERIFICATION,   /* {collectionId, email, exp, id, type} */
    AUTH_TOKEN_PASSWORD_RESET, /* {collectionId, email, exp, id, type} */
    AUTH_TOKEN_EMAIL_CHANGE,   /* {collectionId, email, exp, id, newEmail, type} */
    AUTH_TOKEN_FILE,           /* {collectionId, exp, id, type}: claims.file set */
};
/* "auth", "verification", "passwordReset", "emailChange", "file". */
const char *auth_token_type_name(enum auth_token_type type);

#define AUTH_EMAIL_MAX 255 /* longest email or newEmail claim */

struct auth_token_claims {
    char collection_id[AUTH_ID_MAX + 1];
    char record_id[AUTH_ID_MAX + 1];
    int64_t exp; /* Unix seconds */
    bool refreshable;
    enum auth_token_type type;          /* zero: an auth token */
    char email[AUTH_EMAIL_MAX + 1];     /* the types with an email claim */
    char new_email[AUTH_EMAIL_MAX + 1]; /* AUTH_TOKEN_EMAIL_CHANGE */
    /* a file token (type "file", POST /api/files/token): signed with its own collection
     * secret, so it never passes for an auth token, and only good for ?token= on files */
    bool file;
};

/* Signs a token of claims->type for claims with token_key. Ids must be 1..AUTH_ID_MAX characters of
 * [A-Za-z0-9_-], token_key 1..AUTH_TOKEN_KEY_MAX printable ASCII characters, exp positive;
 * otherwise ERR_INVALID. *token_out belongs to the caller (free()). */
int auth_token_issue(const struct auth_secret *s, const struct auth_token_claims *claims,
                     const char *token_key, char **token_out) MUST_USE;

/* Finds the current tokenKey of record_id in collection_id: 0 and the key (NUL-terminated)
 * in token_key_out, or a negative code (ERR_NOTFOUND when there is no such record, or the
 * collection is not an auth collection). Called at most once per verification, on the
 * verifying thread, with ids taken from the payload before the signature was checked: treat
 * them as untrusted input (bind them as parameters). */
typedef int (*auth_token_lookup_cb)(void *arg, const char *collection_id, const char *record_id,
                                    char token_key_out[AUTH_TOKEN_KEY_MAX + 1]);

/* Verifies an auth token. Trusts nothing before the signature checks out:
 *   1. at most AUTH_TOKEN_MAX bytes, three base64url parts, the header a JSON object whose alg
 *      is exactly "HS256" (none, HS384, HS512, RS256, ... are refused), typ absent or "JWT",
 *      no "crit"; the signature 32 bytes;
 *   2. the payload a JSON object without duplicate keys: collectionId and id strings of valid
 *      ids, type "auth", exp a number, refreshable (if present) a boolean, nbf (if present) a
 *      number; exp > now_s and nbf <= now_s;
 *   3. lookup(collectionId, id) gives the record's current tokenKey;
 *   4. HMAC-SHA256 with tokenKey + collection secret, compared in constant time; then libjwt
 *      (given the key) must agree and report HS256.
 * Returns 0 and fills *claims_out, or a negative code: ERR_LIMIT (too long), ERR_INVALID
 * (malformed, wrong alg or type), ERR_DENIED (bad signature, expired, not yet valid) or the
 * lookup's code. Whatever the failure, the request is a guest's: this never means 401. */
int auth_token_verify(const struct auth_secret *s, const char *token, size_t token_len,
                      int64_t now_s, auth_token_lookup_cb lookup, void *lookup_arg,
                      struct auth_token_claims *claims_out) MUST_USE;
/* auth_token_verify for a token of the given type: the payload's type must name it, and the
 * types with an email claim must carry one (1..AUTH_EMAIL_MAX bytes, and newEmail for
 * AUTH_TOKEN_EMAIL_CHANGE). What the claims must still match (the record's current email) is
 * the caller's to check. */
int auth_token_verify_as(const struct auth_secret *s, enum auth_token_type type, const char *token,
                         size_t token_len, int64_t now_s, auth_token_lookup_cb lookup,
                         void *lookup_arg, struct auth_token_claims *claims_out) MUST_USE;

/* auth_token_verify for a file token (type "file", signed with the file secret): an auth
 * token is refused here, as a file token is by auth_token_verify. */
int auth_token_verify_file(const struct auth_secret *s, const char *token, size_t token_len,
                           int64_t now_s, auth_token_lookup_cb lookup, void *lookup_arg,
                           struct auth_token_claims *claims_out) MUST_USE;

/* auth_token_verify behind a small per-thread cache of tokens it accepted, keyed by the exact
 * token bytes (found through a keyed hash, compared in constant time). A hit skips the
 * parsing, both HMAC checks and the lookup; it is taken only when the entry was made with the
 * same secret, scope and epoch and the token has not expired by now_s. The caller reads the
 * epoch BEFORE calling (the lookup must not see older data than the epoch it is stored
 * under) and advances it after any change that may invalidate tokens (see
 * store_auth_epoch): scope names the store, epoch its state. Only successes are cached.
 * Same returns as auth_token_verify. */
int auth_token_verify_cached(const struct auth_secret *s, const char *token, size_t token_len,
                             int64_t now_s, uint64_t scope, uint64_t epoch,
                             auth_token_lookup_cb lookup, void *lookup_arg,
                             struct auth_token_claims *claims_out) MUST_USE;
/* Forgets the calling thread's cached tokens. */
void auth_token_cache_clear(void);

/* The token in an Authorization header value: the raw token (what the JS SDK sends) or
 * "Bearer <token>" with the scheme in any case; surrounding spaces are ignored. The view
 * borrows value. ERR_NOTFOUND when value is NULL or holds no token. */
int auth_token_from_header(const char *value, struct str *token_out) MUST_USE;

/* ---- rate limiting ----
 *
 * Fixed windows counted per client address and route class, as PocketBase's limiter does.
 * The table has a fixed number of entries chosen at creation (set-associative, 8 ways per
 * set); a new key takes a free or expired way of its set, else evicts the way whose window
 * started first, so memory never grows with the number of clients. Set indexes come from
 * SipHash with a random key, so clients cannot aim at one set. IPv6 addresses count per /64
 * (one subscriber's prefix); IPv4 per address. Sets are split over sharded leaf locks: any
 * thread may call auth_ratelimit_check. */

enum auth_rl_class {
    AUTH_RL_AUTH,    /* login, OTP, password reset, verification, email change */
    AUTH_RL_CREATE,  /* record create */
    AUTH_RL_BATCH,   /* POST /api/batch */
    AUTH_RL_DEFAULT, /* everything else */
    AUTH_RL_N_CLASSES,
};

struct auth_rl_rule {
    uint32_t max;      /* requests per window; 0: this class is not limited */
    uint32_t window_s; /* 1..86400 */
};

struct auth_ratelimit_cfg {
    struct auth_rl_rule rules[AUTH_RL_N_CLASSES];
    size_t capacity; /* entries; rounded up to a multiple of 8; 0: 65536 */
};

/* PocketBase's default rules: auth 2 per 3 s, create 20 per 5 s, batch 3 per 1 s, default 300
 * per 10 s; capacity 65536 (about 2 MiB). */
void auth_ratelimit_cfg_default(struct auth_ratelimit_cfg *cfg);
/* Applies a comma-separated list of CLASS=MAX/WINDOW on top of cfg, e.g.
 * "auth=5/1m,default=0/1s" (WINDOW: seconds with an optional s, m or h). ERR_INVALID with a
 * one-line message in err when malformed. */
int auth_ratelimit_parse(const char *spec, struct auth_ratelimit_cfg *cfg, char *err,
                         size_t err_len) MUST_USE;
const char *auth_rl_class_name(enum auth_rl_class cls);
/* The class of a request, from its method and path (as PocketBase tags its routes). */
enum auth_rl_class auth_ratelimit_classify(const char *method, struct str path);

struct auth_ratelimit;

/* ERR_INVALID for a rule with a window outside 1..86400. */
int auth_ratelimit_new(const struct auth_ratelimit_cfg *cfg, struct auth_ratelimit **out) MUST_USE;
void auth_ratelimit_free(struct auth_ratelimit *rl);
/* Replaces the rules (capacity and counters stay); any thread, while others check. A window
 * that started under the old rule is judged by the new one. ERR_INVALID as for _new. */
int auth_ratelimit_set_rules(struct auth_ratelimit *rl,
                             const struct auth_rl_rule rules[AUTH_RL_N_CLASSES]) MUST_USE;
void auth_ratelimit_get_rules(const struct auth_ratelimit *rl,
                              struct auth_rl_rule rules_out[AUTH_RL_N_CLASSES]);
/* Counts one request of ip (text, as http_req_client_ip gives it) in class at now_us (a
 * monotonic clock: time_mono_us). 0 when allowed; ERR_LIMIT when the window is used up, with
 * *retry_after_s_out (if given) the whole seconds until it resets, at least 1. */
int auth_ratelimit_check(struct auth_ratelimit *rl, const char *ip, enum auth_rl_class cls,
                         int64_t now_us, int *retry_after_s_out) MUST_USE;
/* Entries in use now, and the fixed capacity. */
size_t auth_ratelimit_size(struct auth_ratelimit *rl);
size_t auth_ratelimit_capacity(const struct auth_ratelimit *rl);

/* ---- OAuth2 / OpenID Connect (oauth2.c, jwks.c) ----
 *
 * A provider is configured per auth collection (PocketBase's oauth2.providers[]): name,
 * clientId, clientSecret, authURL, tokenURL, userInfoURL, displayName, pkce, extra. The names
 * "google", "github" and "microsoft" are presets (their endpoints and scopes; any URL given
 * wins); "oidc", "oidc2", "oidc3" are generic OpenID Connect providers whose endpoints come
 * from the config or from the discovery document of extra.issuer. For OpenID providers the id
 * token of the token response is required and checked: signature against the provider's JWKS
 * (RS256, ES256 with OpenSSL's libcrypto, EdDSA with libsodium), iss, aud, exp, iat, nonce.
 *
 * Calls to providers are slow (network): they run on the oauth2 worker threads, never on an
 * HTTP thread. A handler suspends its request and submits a job; the job makes the calls
 * (auth_oauth2_exchange blocks), answers and resumes. URLs must be https, except http to a
 * loopback address (a provider on the same machine). Each call has a timeout and a response
 * size bound. */

#define AUTH_OAUTH2_RESPONSE_MAX (1 << 20) /* bytes of one provider response */
#define AUTH_OAUTH2_TIMEOUT_MS 15000       /* one provider call */
#define AUTH_OAUTH2_LEEWAY_S 60            /* clock skew allowed on exp and iat */

struct auth_oauth2_provider {
    char *name, *display_name, *client_id, *client_secret;
    char *auth_url, *token_url, *userinfo_url, *jwks_url;
    char *issuer;   /* OpenID: the discovery issuer (iss must be it), or NULL */
    char **issuers; /* OpenID: extra.issuers: accepted iss values (with issuer) */
    size_t n_issuers;
    char *scopes; /* space separated */
    bool pkce;
    bool oidc; /* an id token is required and checked */
};

/* Fills p from one entry of oauth2.providers. ERR_INVALID (with a reason in err) for an unknown
 * name, a missing clientId, or an entry that lacks endpoints and has nothing to discover them
 * from. p is released on failure. */
int auth_oauth2_provider_parse(const json_t *cfg, struct auth_oauth2_provider *p, char *err,
                               size_t err_len) MUST_USE;
void auth_oauth2_provider_release(struct auth_oauth2_provider *p);

/* What a provider says about its user. Strings never NULL ("" when absent); email only when
 * the provider says it is verified. */
struct auth_oauth2_user {
    char *id, *name, *username, *email, *avatar_url;
    char *access_token, *refresh_token;
    int64_t expiry_s; /* Unix seconds, 0 when unknown */
    json_t *raw;      /* the user info as the provider gave it */
};
void auth_oauth2_user_release(struct auth_oauth2_user *u);

/* The nonce bound to a code verifier: base64url(HMAC-SHA256(key, verifier)). The auth URL
 * carries it and the id token must carry it back, so a token minted for another sign-in is
 * refused; nothing is stored between the two requests. */
#define AUTH_OAUTH2_NONCE_LEN 43
void auth_oauth2_nonce(const char *key, const char *verifier, char out[AUTH_OAUTH2_NONCE_LEN + 1]);
/* The S256 code challenge of verifier (base64url of its SHA-256). */
void auth_oauth2_challenge(const char *verifier, char out[AUTH_OAUTH2_NONCE_LEN + 1]);

/* What an id token must say. */
struct auth_oidc_expect {
    const char *const *issuers; /* iss must be one of them; n_issuers 0: any */
    size_t n_issuers;
    const char *audience; /* the client id: aud must hold it */
    const char *nonce;    /* NULL: no nonce is required */
    int64_t now_s;
};

/* Verifies a compact JWS id token against jwks ({"keys":[...]}) and want. ERR_INVALID: not a
 * JWS, an unsupported alg ("none", HS*), malformed claims; ERR_NOTFOUND: no key of jwks fits
 * (kid unknown: the caller may fetch the JWKS again once); ERR_DENIED: bad signature, wrong
 * iss, aud or nonce, expired, issued in the future. On 0 *claims_out is the caller's. err
 * says why in one line. */
int auth_oidc_verify(const char *jwt, const json_t *jwks, const struct auth_oidc_expect *want,
                     json_t **claims_out, char *err, size_t err_len) MUST_USE;

struct auth_oauth2;

struct auth_oauth2_cfg {
    unsigned n_threads; /* 0: 4 */
    size_t queue_cap;   /* 0: 256 */
};

/* A job: runs on a worker thread (cancelled false), or at auth_oauth2_free on the freeing
 * thread with cancelled true when it never ran. It must answer and resume its request. */
typedef void (*auth_oauth2_job_cb)(void *arg, bool cancelled);

int auth_oauth2_new(const struct auth_oauth2_cfg *cfg, struct auth_oauth2 **out) MUST_USE;
/* Refuses new jobs, stops the calls in flight (they fail at once), cancels the queued jobs
 * and joins the threads: call before the HTTP server closes. NULL is fine. */
void auth_oauth2_stop(struct auth_oauth2 *o);
/* Stops (if not yet) and frees. NULL is fine. */
void auth_oauth2_free(struct auth_oauth2 *o);
/* Queues a job. ERR_BUSY when the queue is full or stopping (the job is never called). */
int auth_oauth2_submit(struct auth_oauth2 *o, auth_oauth2_job_cb fn, void *arg) MUST_USE;

/* Fills in the endpoints p lacks from its discovery document (cached for an hour; a failed
 * fetch is not tried again for a minute); blocks: worker threads only. 0 when nothing was
 * missing. err says why on failure. */
int auth_oauth2_discover(struct auth_oauth2 *o, struct auth_oauth2_provider *p, char *err,
                         size_t err_len) MUST_USE;
/* The same from the cache only (any thread): 0 when p is complete, ERR_NOTFOUND when a fetch
 * is needed, ERR_IO when the last fetch failed less than a minute ago. */
int auth_oauth2_discover_cached(struct auth_oauth2 *o, struct auth_oauth2_provider *p) MUST_USE;
/* The authorization URL, ending in "&redirect_uri=" for the client to complete, as PocketBase
 * gives it. challenge and nonce may be NULL. The string is the caller's (free()). */
char *auth_oauth2_auth_url(const struct auth_oauth2_provider *p, const char *state,
                           const char *challenge, const char *nonce);

enum auth_oauth2_stage {
    AUTH_OAUTH2_STAGE_TOKEN, /* the code could not be exchanged: "Failed to fetch OAuth2 token." */
    AUTH_OAUTH2_STAGE_USER,  /* the id token or user info failed: "Failed to fetch OAuth2 user." */
};

/* Exchanges code (with the PKCE verifier when p->pkce) at the token endpoint, checks the id
 * token of OpenID providers (nonce required when given), and reads the user. Blocks: worker
 * threads only. On failure *stage_out says which step failed and err why. */
int auth_oauth2_exchange(struct auth_oauth2 *o, struct auth_oauth2_provider *p, const char *code,
                         const char *verifier, const char *redirect_url, const char *nonce,
                         struct auth_oauth2_user *out, enum auth_oauth2_stage *stage_out, char *err,
                         size_t err_len) MUST_USE;

#endif
