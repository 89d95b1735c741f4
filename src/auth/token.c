/* token.c - PocketBase-format auth tokens (JWT, HS256) and the Authorization header.
 *
 * Verification parses the token itself, strictly, before anything else sees it: libjwt 1.10
 * would accept alg:none when no key is given and never looks at exp, so libjwt is only asked
 * to agree once our own constant-time HMAC check has passed. Checking our MAC first also
 * means a forged signature never reaches a comparison whose timing we do not control. */
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_int.h"

#define SIG_LEN crypto_auth_hmacsha256_BYTES /* 32 */
#define KEY_MAX (AUTH_TOKEN_KEY_MAX + AUTH_COLLECTION_SECRET_LEN)

/* Ids and token keys: printable ASCII without spaces, so the payload stays ASCII (the JS SDK
 * decodes it with atob) and needs no escaping surprises. */
static bool printable_ascii(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (n >= max || (unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return false;
    }
    return n > 0;
}

static const char *const type_names[] = {"auth", "verification", "passwordReset", "emailChange",
                                         "file"};

const char *auth_token_type_name(enum auth_token_type type)
{
    return (unsigned)type < sizeof(type_names) / sizeof(type_names[0]) ? type_names[type] : "";
}

static void signing_key(const struct auth_secret *s, enum auth_token_type type,
                        const char *collection_id, const char *token_key, uint8_t key[KEY_MAX],
                        size_t *key_len_out)
{
    char coll[AUTH_COLLECTION_SECRET_LEN + 1];
    size_t tk_len = strlen(token_key);
    auth_secret_collection(s, auth_token_type_name(type), collection_id, coll);
    memcpy(key, token_key, tk_len);
    memcpy(key + tk_len, coll, AUTH_COLLECTION_SECRET_LEN);
    *key_len_out = tk_len + AUTH_COLLECTION_SECRET_LEN;
    sodium_memzero(coll, sizeof(coll));
}

/* Appends s to out as the inside of a JSON string, escaped as jansson escapes it (ids and
 * tokens are printable ASCII: only '"' and '\\' need it). */
static void json_ascii(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *s);
    }
}

static void b64url(struct buf *out, const void *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf_reserve(out, cap);
    sodium_bin2base64(out->ptr + out->len, cap, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out->len += strlen(out->ptr + out->len);
}

/* The token is written here, not by libjwt: the same bytes libjwt 1.10 wrote (its header,
 * the claims compact with sorted keys: PocketBase's exact form; tests compare them). libjwt
 * went through jansson and OpenSSL's EVP HMAC: 18% of an auth-refresh's CPU in a profile. */
int auth_token_issue(const struct auth_secret *s, const struct auth_token_claims *c,
                     const char *token_key, char **token_out)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    uint8_t key[KEY_MAX], mac[SIG_LEN];
    size_t key_len;

    if (!printable_ascii(c->collection_id, AUTH_ID_MAX) ||
        !printable_ascii(c->record_id, AUTH_ID_MAX) ||
        !printable_ascii(token_key, AUTH_TOKEN_KEY_MAX) || c->exp <= 0)
        return ERR_INVALID;
    enum auth_token_type type = c->file ? AUTH_TOKEN_FILE : c->type;
    if (!*auth_token_type_name(type))
        return ERR_INVALID;
    bool with_email = type != AUTH_TOKEN_AUTH && type != AUTH_TOKEN_FILE;
    bool with_new = c->type == AUTH_TOKEN_EMAIL_CHANGE;
    if ((with_email && (!c->email[0] || memchr(c->email, '\0', sizeof(c->email)) == NULL)) ||
        (with_new &&
         (!c->new_email[0] || memchr(c->new_email, '\0', sizeof(c->new_email)) == NULL)))
        return ERR_INVALID;
    auth__sodium_ready();
    struct buf claims, tok;
    buf_init(&claims);
    buf_init(&tok);
    if (!with_email) {
        buf_puts(&claims, "{\"collectionId\":\"");
        json_ascii(&claims, c->collection_id);
        buf_printf(&claims, "\",\"exp\":%lld,\"id\":\"", (long long)c->exp);
        json_ascii(&claims, c->record_id);
        if (type == AUTH_TOKEN_FILE)
            buf_puts(&claims, "\",\"type\":\"file\"}");
        else
            buf_printf(&claims, "\",\"refreshable\":%s,\"type\":\"auth\"}",
                       c->refreshable ? "true" : "false");
    } else {
        /* emails may hold any UTF-8: jansson escapes them */
        json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s}", "collectionId", c->collection_id, "email",
                              c->email, "exp", (json_int_t)c->exp, "id", c->record_id, "type",
                              auth_token_type_name(c->type));
        if (o && with_new)
            json_object_set_new(o, "newEmail", json_string(c->new_email));
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(o);
        if (!text) {
            buf_release(&claims);
            buf_release(&tok);
            return ERR_INVALID; /* an email that is not UTF-8 */
        }
        buf_puts(&claims, text);
        free(text);
    }
    b64url(&tok, header, sizeof(header) - 1);
    buf_putc(&tok, '.');
    b64url(&tok, claims.ptr, claims.len);

    signing_key(s, type, c->collection_id, token_key, key, &key_len);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)tok.ptr, tok.len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(key, sizeof(key));
    buf_putc(&tok, '.');
    b64url(&tok, mac, sizeof(mac));
    buf_release(&claims);
    *token_out = buf_detach(&tok, NULL);
    return 0;
}

static bool b64url_chars(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* Strict base64url without padding (non-zero leftover bits are refused), then JSON with no
 * duplicate keys; an object or NULL. */
static json_t *decode_json_part(const char *p, size_t len, uint8_t *scratch, size_t scratch_len)
{
    size_t bin_len;
    if (sodium_base642bin(scratch, scratch_len, p, len, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return NULL;
    json_t *v = json_loadb((const char *)scratch, bin_len, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static bool header_ok(json_t *h)
{
    json_t *alg = json_object_get(h, "alg");
    json_t *typ = json_object_get(h, "typ");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5)
        return false;
    if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0 ||
                json_string_length(typ) != 3))
        return false;
    return json_object_get(h, "crit") == NULL; /* no extension we would have to understand */
}

/* A numeric date as whole seconds; false when absent, not a number or not finite. */
static bool numeric_date(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d > 9.2e18 || d < -9.2e18)
            return false;
        *out = (int64_t)floor(d);
        return true;
    }
    return false;
}

static bool id_claim(json_t *v, char out[AUTH_ID_MAX + 1])
{
    if (!json_is_string(v) || json_string_length(v) > AUTH_ID_MAX)
        return false;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v) || !printable_ascii(s, AUTH_ID_MAX))
        return false;
    memcpy(out, s, json_string_length(v) + 1);
    return true;
}

static bool email_claim(json_t *v, char out[AUTH_EMAIL_MAX + 1])
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > AUTH_EMAIL_MAX)
        return false;
    const char *e = json_string_value(v);
    if (strlen(e) != json_string_length(v))
        return false;
    memcpy(out, e, json_string_length(v) + 1);
    return true;
}

/* Reads and checks the claims of an unverified payload of the given type. */
static int payload_claims(json_t *pl, enum auth_token_type want, int64_t now_s,
                          struct auth_token_claims *c)
{
    json_t *type = json_object_get(pl, "type");
    json_t *refreshable = json_object_get(pl, "refreshable");
    const char *want_name = auth_token_type_name(want);
    int64_t nbf;
    if (!id_claim(json_object_get(pl, "collectionId"), c->collection_id) ||
        !id_claim(json_object_get(pl, "id"), c->record_id))
        return ERR_INVALID;
    if (!*want_name || !json_is_string(type) || strcmp(json_string_value(type), want_name) != 0 ||
        json_string_length(type) != strlen(want_name))
        return ERR_INVALID;
    c->type = want;
    c->file = want == AUTH_TOKEN_FILE;
    if (want != AUTH_TOKEN_AUTH && !c->file && !email_claim(json_object_get(pl, "email"), c->email))
        return ERR_INVALID;
    if (want == AUTH_TOKEN_EMAIL_CHANGE &&
        !email_claim(json_object_get(pl, "newEmail"), c->new_email))
        return ERR_INVALID;
    if (refreshable && !json_is_boolean(refreshable))
        return ERR_INVALID;
    c->refreshable = json_is_true(refreshable);
    if (!numeric_date(json_object_get(pl, "exp"), &c->exp))
        return ERR_INVALID;
    if (c->exp <= now_s)
        return ERR_DENIED;
    json_t *nbf_v = json_object_get(pl, "nbf");
    if (nbf_v) {
        if (!numeric_date(nbf_v, &nbf))
            return ERR_INVALID;
        if (nbf > now_s)
            return ERR_DENIED;
    }
    return 0;
}

static int verify_typed(const struct auth_secret *s, const char *token, size_t token_len,
                        int64_t now_s, bool want_file, auth_token_lookup_cb lookup,
                        void *lookup_arg, struct auth_token_claims *claims_out)
{
    return auth_token_verify_as(s, want_file ? AUTH_TOKEN_FILE : AUTH_TOKEN_AUTH, token, token_len,
                                now_s, lookup, lookup_arg, claims_out);
}

int auth_token_verify_as(const struct auth_secret *s, enum auth_token_type type, const char *token,
                         size_t token_len, int64_t now_s, auth_token_lookup_cb lookup,
                         void *lookup_arg, struct auth_token_claims *claims_out)
{
    struct auth_token_claims c = {0};
    char token_key[AUTH_TOKEN_KEY_MAX + 1];
    uint8_t key[KEY_MAX], mac[SIG_LEN], sig[SIG_LEN];
    size_t key_len = 0, sig_len = 0;
    json_t *hdr = NULL, *pl = NULL;
    uint8_t *scratch = NULL;
    char *tok = NULL;
    jwt_t *jwt = NULL;
    int rc = ERR_INVALID;

    auth__sodium_ready();
    if (token_len > AUTH_TOKEN_MAX)
        return ERR_LIMIT;
    const char *dot1 = memchr(token, '.', token_len);
    if (!dot1)
        return ERR_INVALID;
    const char *dot2 = memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token));
    if (!dot2)
        return ERR_INVALID;
    const char *end = token + token_len;
    size_t h_len = (size_t)(dot1 - token), p_len = (size_t)(dot2 - dot1 - 1),
           s_len = (size_t)(end - dot2 - 1);
    if (h_len == 0 || p_len == 0 || s_len == 0 || !b64url_chars(token, h_len) ||
        !b64url_chars(dot1 + 1, p_len) || !b64url_chars(dot2 + 1, s_len))
        return ERR_INVALID; /* also refuses a fourth part: '.' is not base64url */

    scratch = xmalloc(token_len);
    hdr = decode_json_part(token, h_len, scratch, token_len);
    if (!hdr || !header_ok(hdr))
        goto out;
    pl = decode_json_part(dot1 + 1, p_len, scratch, token_len);
    if (!pl)
        goto out;
    if (sodium_base642bin(sig, sizeof(sig), dot2 + 1, s_len, NULL, &sig_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        sig_len != SIG_LEN)
        goto out;
    rc = payload_claims(pl, type, now_s, &c);
    if (rc != 0)
        goto out;

    /* Only now does anything outside this file see the (still unverified) ids. */
    memset(token_key, 0, sizeof(token_key));
    rc = lookup(lookup_arg, c.collection_id, c.record_id, token_key);
    if (rc != 0) {
        rc = rc < 0 ? rc : ERR_INTERNAL;
        goto out;
    }
    token_key[AUTH_TOKEN_KEY_MAX] = '\0';
    if (!printable_ascii(token_key, AUTH_TOKEN_KEY_MAX)) {
        rc = ERR_DENIED; /* a record without a usable tokenKey cannot hold tokens */
        goto out;
    }
    signing_key(s, type, c.collection_id, token_key, key, &key_len);

    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)token, (size_t)(dot2 - token));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    if (sodium_memcmp(mac, sig, SIG_LEN) != 0) {
        rc = ERR_DENIED;
        goto out;
    }

    /* libjwt, given the key, must agree, and must have seen HS256. */
    tok = xstrndup(token, token_len);
    if (jwt_decode(&jwt, tok, key, (int)key_len) != 0 || !jwt ||
        jwt_get_alg(jwt) != JWT_ALG_HS256) {
        rc = ERR_DENIED;
        goto out;
    }
    *claims_out = c;
    rc = 0;

out:
    jwt_free(jwt);
    free(tok);
    free(scratch);
    json_decref(hdr);
    json_decref(pl);
    sodium_memzero(key, sizeof(key));
    sodium_memzero(token_key, sizeof(token_key));
    return rc;
}

/* ---- the verified-token cache ---- */

struct cached_token {
    const struct auth_secret *secret; /* NULL: empty */
    uint64_t secrets_freed, scope, epoch;
    size_t len;
    struct auth_token_claims claims;
    char token[AUTH_TOKEN_CACHE_LEN];
};

static _Thread_local struct cached_token tl_tokens[AUTH_TOKEN_CACHE_SLOTS];
static uint8_t slot_key[crypto_shorthash_KEYBYTES];
static pthread_once_t slot_key_once = PTHREAD_ONCE_INIT;

static void slot_key_init(void)
{
    auth__sodium_ready();
    randombytes_buf(slot_key, sizeof(slot_key));
}

/* A keyed hash picks the slot, so which tokens share a slot cannot be chosen by a client. */
static struct cached_token *slot_of(const char *token, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    pthread_once(&slot_key_once, slot_key_init);
    crypto_shorthash(h, (const uint8_t *)token, len, slot_key);
    return &tl_tokens[h[0] % AUTH_TOKEN_CACHE_SLOTS];
}

void auth_token_cache_clear(void)
{
    for (size_t i = 0; i < AUTH_TOKEN_CACHE_SLOTS; i++)
        sodium_memzero(&tl_tokens[i], sizeof(tl_tokens[i]));
}

int auth_token_verify(const struct auth_secret *s, const char *token, size_t token_len,
                      int64_t now_s, auth_token_lookup_cb lookup, void *lookup_arg,
                      struct auth_token_claims *claims_out)
{
    return verify_typed(s, token, token_len, now_s, false, lookup, lookup_arg, claims_out);
}

int auth_token_verify_file(const struct auth_secret *s, const char *token, size_t token_len,
                           int64_t now_s, auth_token_lookup_cb lookup, void *lookup_arg,
                           struct auth_token_claims *claims_out)
{
    return verify_typed(s, token, token_len, now_s, true, lookup, lookup_arg, claims_out);
}

int auth_token_verify_cached(const struct auth_secret *s, const char *token, size_t token_len,
                             int64_t now_s, uint64_t scope, uint64_t epoch,
                             auth_token_lookup_cb lookup, void *lookup_arg,
                             struct auth_token_claims *claims_out)
{
    if (token_len == 0 || token_len > AUTH_TOKEN_CACHE_LEN)
        return auth_token_verify(s, token, token_len, now_s, lookup, lookup_arg, claims_out);
    uint64_t freed = __atomic_load_n(&auth__secrets_freed, __ATOMIC_SEQ_CST);
    struct cached_token *e = slot_of(token, token_len);
    if (e->secret == s && e->secrets_freed == freed && e->scope == scope && e->epoch == epoch &&
        e->len == token_len && sodium_memcmp(e->token, token, token_len) == 0) {
        if (e->claims.exp > now_s) {
            *claims_out = e->claims;
            return 0;
        }
        sodium_memzero(e, sizeof(*e)); /* expired: auth_token_verify says why */
    }
    struct auth_token_claims c;
    int rc = auth_token_verify(s, token, token_len, now_s, lookup, lookup_arg, &c);
    if (rc != 0)
        return rc;
    e->secret = s;
    e->secrets_freed = freed;
    e->scope = scope;
    e->epoch = epoch;
    e->len = token_len;
    e->claims = c;
    memcpy(e->token, token, token_len);
    *claims_out = c;
    return 0;
}

int auth_token_from_header(const char *value, struct str *token_out)
{
    if (!value)
        return ERR_NOTFOUND;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
        p += 6;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0)
        return ERR_NOTFOUND;
    *token_out = (struct str){p, len};
    return 0;
}
