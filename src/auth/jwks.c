/* jwks.c - OpenID Connect id tokens: a compact JWS checked against the provider's JSON Web Key
 * Set, then its claims (iss, aud, azp, exp, iat, nonce).
 *
 * Nothing of the token is trusted before its signature checks out: the header is parsed only
 * to pick the algorithm and the key. Accepted algorithms are the asymmetric ones providers
 * use: RS256 and ES256 through OpenSSL's libcrypto (EVP), EdDSA (Ed25519) through libsodium.
 * "none" and the HMAC family are refused: an HMAC key would be the client secret, which the
 * JWKS never holds, and accepting HS256 against a public key is the classic confusion. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <sodium.h>
#include <string.h>

#include "auth/auth_int.h"

#define JWT_MAX 16384 /* longer id tokens are refused before any parsing */
#define JWK_BIN_MAX 1024

/* base64url without padding (padding tolerated for JWK members) into out; -1 on bad input. */
static long b64url_dec(const char *p, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (len > 0 && p[len - 1] == '=')
        len--;
    if (sodium_base642bin(out, cap, p, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return (long)n;
}

static json_t *dec_json(const char *p, size_t len)
{
    if (len > JWT_MAX)
        return NULL;
    uint8_t *bin = xmalloc(len + 1);
    long n = b64url_dec(p, len, bin, len + 1);
    json_t *v =
        n < 0 ? NULL : json_loadb((const char *)bin, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(bin);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* A JWK member (base64url) as bytes; -1 when absent or malformed. */
static long jwk_bytes(const json_t *jwk, const char *key, uint8_t *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(jwk, key));
    return s ? b64url_dec(s, strlen(s), out, cap) : -1;
}

static EVP_PKEY *rsa_key(const json_t *jwk)
{
    uint8_t n[JWK_BIN_MAX], e[16];
    long n_len = jwk_bytes(jwk, "n", n, sizeof(n));
    long e_len = jwk_bytes(jwk, "e", e, sizeof(e));
    if (n_len < 256 || e_len < 1) /* RSA keys of 2048 bits at least */
        return NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (bn_n && bn_e && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

static EVP_PKEY *ec_key(const json_t *jwk)
{
    uint8_t pub[65], x[64], y[64];
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv || strcmp(crv, "P-256") != 0 || jwk_bytes(jwk, "x", x, sizeof(x)) != 32 ||
        jwk_bytes(jwk, "y", y, sizeof(y)) != 32)
        return NULL;
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* 1 when sig is a valid signature of msg by pkey (SHA-256), 0 when not. ES256 signatures are
 * r||s (32 bytes each) in a JWS and DER for OpenSSL. */
static int evp_verify(EVP_PKEY *pkey, bool ec, const uint8_t *msg, size_t msg_len,
                      const uint8_t *sig, size_t sig_len)
{
    uint8_t *der = NULL;
    int der_len = 0, ok = 0;
    if (ec) {
        if (sig_len != 64)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        der_len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (der_len <= 0)
            return 0;
        sig = der;
        sig_len = (size_t)der_len;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
        EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1)
        ok = 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok;
}

/* Whether jwk may verify a token of alg with header kid: 1 verified, 0 not this key (or a
 * bad signature), -1 the key does not fit alg at all. */
static int try_key(const json_t *jwk, const char *alg, const uint8_t *msg, size_t msg_len,
                   const uint8_t *sig, size_t sig_len)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *jalg = json_string_value(json_object_get(jwk, "alg"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    if (!kty || (jalg && strcmp(jalg, alg) != 0) || (use && strcmp(use, "sig") != 0))
        return -1;
    if (strcmp(alg, "EdDSA") == 0) {
        uint8_t x[crypto_sign_PUBLICKEYBYTES];
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        if (strcmp(kty, "OKP") != 0 || !crv || strcmp(crv, "Ed25519") != 0 ||
            jwk_bytes(jwk, "x", x, sizeof(x)) != (long)sizeof(x))
            return -1;
        return sig_len == crypto_sign_BYTES &&
               crypto_sign_verify_detached(sig, msg, msg_len, x) == 0;
    }
    bool ec = strcmp(alg, "ES256") == 0;
    if (strcmp(kty, ec ? "EC" : "RSA") != 0)
        return -1;
    EVP_PKEY *pkey = ec ? ec_key(jwk) : rsa_key(jwk);
    if (!pkey)
        return -1;
    int ok = evp_verify(pkey, ec, msg, msg_len, sig, sig_len);
    EVP_PKEY_free(pkey);
    return ok;
}

static bool aud_holds(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), want) == 0) return true;
    return false;
}

static bool num_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v))
        *out = (int64_t)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) > -9e15 && json_real_value(v) < 9e15)
        *out = (int64_t)json_real_value(v);
    else
        return false;
    return true;
}

static int check_claims(const json_t *c, const struct auth_oidc_expect *want, char *err,
                        size_t err_len)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));
    const char *sub = json_string_value(json_object_get(c, "sub"));
    const json_t *aud = json_object_get(c, "aud");
    int64_t exp, iat;
    if (!iss || !sub || !*sub || !aud)
        return auth__fail(err, err_len, ERR_INVALID, "id token lacks iss, sub or aud");
    if (!num_date(json_object_get(c, "exp"), &exp) || !num_date(json_object_get(c, "iat"), &iat))
        return auth__fail(err, err_len, ERR_INVALID, "id token lacks a numeric exp or iat");
    if (want->n_issuers) {
        bool ok = false;
        for (size_t i = 0; i < want->n_issuers && !ok; i++)
            ok = strcmp(iss, want->issuers[i]) == 0;
        if (!ok)
            return auth__fail(err, err_len, ERR_DENIED, "id token iss %.200s is not the provider's",
                              iss);
    }
    if (!want->audience || !aud_holds(aud, want->audience))
        return auth__fail(err, err_len, ERR_DENIED, "id token aud is not the client id");
    /* several audiences: the authorized party must be us */
    const char *azp = json_string_value(json_object_get(c, "azp"));
    if (json_is_array(aud) && json_array_size(aud) > 1 &&
        (!azp || strcmp(azp, want->audience) != 0))
        return auth__fail(err, err_len, ERR_DENIED, "id token azp is not the client id");
    if (exp + AUTH_OAUTH2_LEEWAY_S <= want->now_s)
        return auth__fail(err, err_len, ERR_DENIED, "id token expired");
    if (iat - AUTH_OAUTH2_LEEWAY_S > want->now_s)
        return auth__fail(err, err_len, ERR_DENIED, "id token issued in the future");
    if (want->nonce) {
        const char *nonce = json_string_value(json_object_get(c, "nonce"));
        if (!nonce || !auth_ct_streq(nonce, want->nonce))
            return auth__fail(err, err_len, ERR_DENIED, "id token nonce does not match");
    }
    return 0;
}

int auth_oidc_verify(const char *jwt, const json_t *jwks, const struct auth_oidc_expect *want,
                     json_t **claims_out, char *err, size_t err_len)
{
    *claims_out = NULL;
    auth__sodium_ready();
    size_t len = jwt ? strlen(jwt) : 0;
    if (len == 0 || len > JWT_MAX)
        return auth__fail(err, err_len, ERR_INVALID, "id token missing or too long");
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return auth__fail(err, err_len, ERR_INVALID, "id token is not a compact JWS");
    json_t *hdr = dec_json(jwt, (size_t)(d1 - jwt));
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    int rc = 0;
    json_t *claims = NULL;
    uint8_t *sig = xmalloc(len);
    if (!alg || json_object_get(hdr, "crit") ||
        (strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0 && strcmp(alg, "EdDSA") != 0)) {
        rc = auth__fail(err, err_len, ERR_INVALID, "id token alg %.20s is not accepted",
                        alg ? alg : "(none)");
        goto out;
    }
    long sig_len = b64url_dec(d2 + 1, len - (size_t)(d2 + 1 - jwt), sig, len);
    if (sig_len <= 0) {
        rc = auth__fail(err, err_len, ERR_INVALID, "id token signature is not base64url");
        goto out;
    }
    /* the key: by kid when the header names one, else any key that fits alg */
    const json_t *keys = json_object_get(jwks, "keys");
    size_t i;
    const json_t *jwk;
    int verified = 0;
    bool candidate = false;
    json_array_foreach(keys, i, jwk)
    {
        const char *jkid = json_string_value(json_object_get(jwk, "kid"));
        if (kid && (!jkid || strcmp(jkid, kid) != 0))
            continue;
        int r = try_key(jwk, alg, (const uint8_t *)jwt, (size_t)(d2 - jwt), sig, (size_t)sig_len);
        if (r >= 0)
            candidate = true;
        if (r == 1) {
            verified = 1;
            break;
        }
    }
    if (!candidate) {
        rc = auth__fail(err, err_len, ERR_NOTFOUND,
                        "no key of the provider's JWKS fits the id token");
        goto out;
    }
    if (!verified) {
        rc = auth__fail(err, err_len, ERR_DENIED, "id token signature is not valid");
        goto out;
    }
    claims = dec_json(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!claims) {
        rc = auth__fail(err, err_len, ERR_INVALID, "id token claims are not a JSON object");
        goto out;
    }
    rc = check_claims(claims, want, err, err_len);
out:
    free(sig);
    json_decref(hdr);
    if (rc)
        json_decref(claims);
    else
        *claims_out = claims;
    return rc;
}

void auth_oauth2_nonce(const char *key, const char *verifier, char out[AUTH_OAUTH2_NONCE_LEN + 1])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    auth__sodium_ready();
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)"oidc-nonce", 11);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)verifier, strlen(verifier));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(out, AUTH_OAUTH2_NONCE_LEN + 1, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(&st, sizeof(st));
}

void auth_oauth2_challenge(const char *verifier, char out[AUTH_OAUTH2_NONCE_LEN + 1])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    auth__sodium_ready();
    crypto_hash_sha256(h, (const uint8_t *)verifier, strlen(verifier));
    sodium_bin2base64(out, AUTH_OAUTH2_NONCE_LEN + 1, h, sizeof(h),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}
