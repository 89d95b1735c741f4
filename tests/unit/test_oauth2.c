/* test_oauth2.c - OpenID id token checks (auth/jwks.c) with keys made here by OpenSSL and
 * libsodium, and the provider configuration of auth/oauth2.c: presets, the URL policy, the
 * authorization URL, the nonce and the challenge. No network: a provider URL that the policy
 * refuses is refused before any call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "auth/auth.h"

#define ISS "https://idp.example.com"
#define AUD "client-1"
#define NONCE "n-0123456789abcdef"

static EVP_PKEY *rsa, *rsa_other, *ec;
static uint8_t ed_pk[crypto_sign_PUBLICKEYBYTES], ed_sk[crypto_sign_SECRETKEYBYTES];
static json_t *jwks;

static char *b64u(const void *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

static json_t *bn_member(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    uint8_t buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    char *s = b64u(buf, (size_t)n);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *rsa_jwk(EVP_PKEY *k, const char *kid)
{
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s}", "kty", "RSA", "kid", kid, "use", "sig", "alg", "RS256");
    json_object_set_new(j, "n", bn_member(k, OSSL_PKEY_PARAM_RSA_N));
    json_object_set_new(j, "e", bn_member(k, OSSL_PKEY_PARAM_RSA_E));
    return j;
}

static json_t *ec_jwk(EVP_PKEY *k, const char *kid)
{
    uint8_t pub[65];
    size_t n = 0;
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &n), 1);
    assert_int_equal(n, 65);
    char *x = b64u(pub + 1, 32), *y = b64u(pub + 33, 32);
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "kid", kid, "crv", "P-256", "x", x, "y", y);
    free(x);
    free(y);
    return j;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(auth_init(), 0);
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(rsa);
    assert_non_null(rsa_other);
    assert_non_null(ec);
    crypto_sign_keypair(ed_pk, ed_sk);
    char *x = b64u(ed_pk, sizeof(ed_pk));
    jwks = json_pack("{s:[o,o,{s:s,s:s,s:s,s:s}]}", "keys", rsa_jwk(rsa, "rsa1"), ec_jwk(ec, "ec1"),
                     "kty", "OKP", "crv", "Ed25519", "kid", "ed1", "x", x);
    free(x);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec);
    json_decref(jwks);
    return 0;
}

/* A compact JWS of header and claims, signed by key (alg from the header). */
static char *sign(const char *header, json_t *claims, EVP_PKEY *key)
{
    char *cj = json_dumps(claims, JSON_COMPACT);
    char *h = b64u(header, strlen(header)), *p = b64u(cj, strlen(cj));
    size_t in_len = strlen(h) + 1 + strlen(p);
    char *in = malloc(in_len + 1);
    snprintf(in, in_len + 1, "%s.%s", h, p);
    uint8_t sig[512];
    size_t sig_len = sizeof(sig);
    if (strstr(header, "EdDSA")) {
        unsigned long long n;
        crypto_sign_detached(sig, &n, (const uint8_t *)in, in_len, ed_sk);
        sig_len = (size_t)n;
    } else if (key) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)in, in_len), 1);
        EVP_MD_CTX_free(md);
        if (strstr(header, "ES256")) { /* DER to r||s */
            const uint8_t *der = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)sig_len);
            assert_non_null(es);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            sig_len = 64;
            ECDSA_SIG_free(es);
        }
    } else {
        sig_len = 0;
    }
    char *s = b64u(sig, sig_len);
    size_t out_len = in_len + 2 + strlen(s);
    char *out = malloc(out_len);
    snprintf(out, out_len, "%s.%s", in, s);
    free(cj);
    free(h);
    free(p);
    free(in);
    free(s);
    return out;
}

static int64_t now_s(void)
{
    return time_now_us() / 1000000;
}

static json_t *good_claims(void)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:b}", "iss", ISS, "sub", "user-1", "aud", AUD,
                     "exp", (json_int_t)(now_s() + 300), "iat", (json_int_t)now_s(), "nonce", NONCE,
                     "email", "u@example.com", "email_verified", 1);
}

static int verify(const char *jwt, const char *nonce)
{
    const char *iss[] = {ISS};
    struct auth_oidc_expect want = {iss, 1, AUD, nonce, now_s()};
    json_t *claims = NULL;
    char err[200] = "";
    int rc = auth_oidc_verify(jwt, jwks, &want, &claims, err, sizeof(err));
    if (rc == 0) {
        assert_string_equal(json_string_value(json_object_get(claims, "sub")), "user-1");
        json_decref(claims);
    } else {
        assert_null(claims);
        assert_true(err[0] != '\0');
    }
    return rc;
}

static const char RS[] = "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}";
static const char ES[] = "{\"alg\":\"ES256\",\"kid\":\"ec1\"}";
static const char ED[] = "{\"alg\":\"EdDSA\",\"kid\":\"ed1\"}";

/* sign c with header and key, verify with nonce, free */
static int check(const char *header, json_t *c, EVP_PKEY *key, const char *nonce)
{
    char *jwt = sign(header, c, key);
    int rc = verify(jwt, nonce);
    free(jwt);
    json_decref(c);
    return rc;
}

static void test_valid_tokens_of_each_algorithm(void **state)
{
    (void)state;
    assert_int_equal(check(RS, good_claims(), rsa, NONCE), 0);
    assert_int_equal(check(ES, good_claims(), ec, NONCE), 0);
    assert_int_equal(check(ED, good_claims(), NULL, NONCE), 0);
    /* no kid: any key that fits the alg */
    assert_int_equal(check("{\"alg\":\"RS256\"}", good_claims(), rsa, NONCE), 0);
    /* no nonce required */
    json_t *c = good_claims();
    json_object_del(c, "nonce");
    assert_int_equal(check(RS, c, rsa, NULL), 0);
}

static void test_forged_tokens(void **state)
{
    (void)state;
    /* another key under the provider's kid */
    assert_int_equal(check(RS, good_claims(), rsa_other, NONCE), ERR_DENIED);
    /* a claim changed after signing */
    json_t *good = good_claims();
    char *jwt = sign(RS, good, rsa);
    json_decref(good);
    json_t *evil = good_claims();
    json_object_set_new(evil, "sub", json_string("admin"));
    char *forged = sign(RS, evil, rsa_other);
    char *d1 = strchr(jwt, '.'), *d2 = strrchr(jwt, '.');
    char *f1 = strchr(forged, '.'), *f2 = strrchr(forged, '.');
    char mixed[8192];
    snprintf(mixed, sizeof(mixed), "%.*s%.*s%s", (int)(d1 - jwt), jwt, (int)(f2 - f1), f1, d2);
    assert_int_equal(verify(mixed, NONCE), ERR_DENIED);
    free(jwt);
    free(forged);
    json_decref(evil);
    /* alg none, HMAC (the public key as an HMAC secret), unknown alg: refused as such */
    assert_int_equal(check("{\"alg\":\"none\"}", good_claims(), NULL, NONCE), ERR_INVALID);
    assert_int_equal(check("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", good_claims(), NULL, NONCE),
                     ERR_INVALID);
    assert_int_equal(
        check("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"x\"]}", good_claims(), rsa, NONCE),
        ERR_INVALID);
    /* an RS256 header naming the EC key: no key fits */
    assert_int_equal(check("{\"alg\":\"RS256\",\"kid\":\"ec1\"}", good_claims(), rsa, NONCE),
                     ERR_NOTFOUND);
    /* an unknown kid: the caller fetches the key set again */
    assert_int_equal(check("{\"alg\":\"RS256\",\"kid\":\"rotated\"}", good_claims(), rsa, NONCE),
                     ERR_NOTFOUND);
    /* malformed */
    assert_int_equal(verify("a.b", NONCE), ERR_INVALID);
    assert_int_equal(verify("a.b.c.d", NONCE), ERR_INVALID);
    assert_int_equal(verify("", NONCE), ERR_INVALID);
    assert_int_equal(verify("e30.e30.", NONCE), ERR_INVALID);
}

static void test_claims(void **state)
{
    (void)state;
    json_t *c;
    /* expired (past the leeway), issued in the future */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(now_s() - AUTH_OAUTH2_LEEWAY_S - 5));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    c = good_claims();
    json_object_set_new(c, "iat", json_integer(now_s() + AUTH_OAUTH2_LEEWAY_S + 600));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    /* within the leeway */
    c = good_claims();
    json_object_set_new(c, "exp", json_integer(now_s() - 5));
    assert_int_equal(check(RS, c, rsa, NONCE), 0);
    /* wrong issuer, audience, nonce; a missing nonce */
    c = good_claims();
    json_object_set_new(c, "iss", json_string("https://evil.example.com"));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    c = good_claims();
    json_object_set_new(c, "aud", json_string("another-client"));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    assert_int_equal(check(RS, good_claims(), rsa, "n-another-sign-in"), ERR_DENIED);
    c = good_claims();
    json_object_del(c, "nonce");
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    /* several audiences: ours and azp ours, else refused */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "other", AUD));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_DENIED);
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "other", AUD));
    json_object_set_new(c, "azp", json_string(AUD));
    assert_int_equal(check(RS, c, rsa, NONCE), 0);
    /* required claims */
    const char *required[] = {"iss", "sub", "aud", "exp", "iat"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        c = good_claims();
        json_object_del(c, required[i]);
        assert_int_equal(check(RS, c, rsa, NONCE), ERR_INVALID);
    }
    c = good_claims();
    json_object_set_new(c, "exp", json_string("tomorrow"));
    assert_int_equal(check(RS, c, rsa, NONCE), ERR_INVALID);
}

static int parse(const char *spec, struct auth_oauth2_provider *p)
{
    json_t *cfg = json_loads(spec, 0, NULL);
    assert_non_null(cfg);
    char err[200];
    int rc = auth_oauth2_provider_parse(cfg, p, err, sizeof(err));
    json_decref(cfg);
    return rc;
}

static void test_providers(void **state)
{
    (void)state;
    struct auth_oauth2_provider p;
    /* presets */
    assert_int_equal(parse("{\"name\":\"google\",\"clientId\":\"g\"}", &p), 0);
    assert_true(p.oidc && p.pkce);
    assert_string_equal(p.issuer, "https://accounts.google.com");
    assert_int_equal(p.n_issuers, 1);
    assert_string_equal(p.issuers[0], "accounts.google.com");
    assert_non_null(p.jwks_url);
    auth_oauth2_provider_release(&p);
    assert_int_equal(parse("{\"name\":\"github\",\"clientId\":\"g\"}", &p), 0);
    assert_false(p.oidc);
    assert_string_equal(p.userinfo_url, "https://api.github.com/user");
    auth_oauth2_provider_release(&p);
    /* a given URL wins over the preset; pkce may be turned off */
    assert_int_equal(parse("{\"name\":\"microsoft\",\"clientId\":\"m\",\"pkce\":false,"
                           "\"authURL\":\"https://login.example.com/a\"}",
                           &p),
                     0);
    assert_string_equal(p.auth_url, "https://login.example.com/a");
    assert_false(p.pkce);
    auth_oauth2_provider_release(&p);
    /* refused: unknown name, no client id, OIDC with nothing to find its endpoints from */
    assert_int_equal(parse("{\"name\":\"myspace\",\"clientId\":\"x\"}", &p), ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"google\"}", &p), ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"oidc\",\"clientId\":\"x\",\"authURL\":\"https://a\","
                           "\"tokenURL\":\"https://t\"}",
                           &p),
                     ERR_INVALID);
    assert_int_equal(parse("{\"name\":\"oidc\",\"clientId\":\"x\",\"extra\":{\"issuer\":"
                           "\"https://idp.example.com\"}}",
                           &p),
                     0);
    auth_oauth2_provider_release(&p);
}

static void test_auth_url_nonce_and_challenge(void **state)
{
    (void)state;
    struct auth_oauth2_provider p;
    assert_int_equal(parse("{\"name\":\"oidc\",\"clientId\":\"my app\",\"authURL\":"
                           "\"https://idp.example.com/auth?x=1\",\"tokenURL\":\"https://t\","
                           "\"extra\":{\"jwksURL\":\"https://j\"}}",
                           &p),
                     0);
    char *url = auth_oauth2_auth_url(&p, "st8", "chal", "non");
    assert_string_equal(url, "https://idp.example.com/auth?x=1&client_id=my%20app&response_type="
                             "code&scope=openid%20email%20profile&state=st8&code_challenge=chal&"
                             "code_challenge_method=S256&nonce=non&redirect_uri=");
    free(url);
    auth_oauth2_provider_release(&p);
    /* S256: base64url(SHA-256(verifier)), the expected value from Python's hashlib (the
     * integration test has oidc-provider check it too) */
    char ch[AUTH_OAUTH2_NONCE_LEN + 1];
    auth_oauth2_challenge("dBjftJeZ4CVP-mJ92q9TB6y1wpr1DaM3wN2aBqGJKSc", ch);
    assert_string_equal(ch, "bNL87PYpCtilo0ulyeVmvUHycRx1kwvqIz7FLVfFNHs");
    /* the nonce depends on the key and the verifier */
    char n1[AUTH_OAUTH2_NONCE_LEN + 1], n2[AUTH_OAUTH2_NONCE_LEN + 1],
        n3[AUTH_OAUTH2_NONCE_LEN + 1];
    auth_oauth2_nonce("key-a", "verifier-1", n1);
    auth_oauth2_nonce("key-a", "verifier-2", n2);
    auth_oauth2_nonce("key-b", "verifier-1", n3);
    assert_int_equal(strlen(n1), AUTH_OAUTH2_NONCE_LEN);
    assert_string_not_equal(n1, n2);
    assert_string_not_equal(n1, n3);
    auth_oauth2_nonce("key-a", "verifier-1", n2);
    assert_string_equal(n1, n2);
}

static void test_url_policy_and_workers(void **state)
{
    (void)state;
    struct auth_oauth2 *o = NULL;
    struct auth_oauth2_cfg cfg = {.n_threads = 1, .queue_cap = 1};
    assert_int_equal(auth_oauth2_new(&cfg, &o), 0);
    struct auth_oauth2_provider p;
    /* plain http to a host that is not loopback is refused before any call */
    assert_int_equal(parse("{\"name\":\"oidc\",\"clientId\":\"x\",\"extra\":{\"issuer\":"
                           "\"http://idp.example.com\"}}",
                           &p),
                     0);
    assert_int_equal(auth_oauth2_discover_cached(o, &p), ERR_NOTFOUND);
    char err[300];
    assert_int_equal(auth_oauth2_discover(o, &p, err, sizeof(err)), ERR_INVALID);
    assert_non_null(strstr(err, "refusing"));
    /* the failure is remembered: no new attempt (and no wait) for a minute */
    assert_int_equal(auth_oauth2_discover_cached(o, &p), ERR_IO);
    assert_int_equal(auth_oauth2_discover(o, &p, err, sizeof(err)), ERR_IO);
    auth_oauth2_provider_release(&p);
    assert_int_equal(parse("{\"name\":\"oidc\",\"clientId\":\"x\",\"extra\":{\"issuer\":"
                           "\"file:///etc/passwd\"}}",
                           &p),
                     0);
    assert_int_equal(auth_oauth2_discover(o, &p, err, sizeof(err)), ERR_INVALID);
    auth_oauth2_provider_release(&p);
    /* a stopped pool refuses jobs */
    auth_oauth2_stop(o);
    assert_int_equal(auth_oauth2_submit(o, NULL, NULL), ERR_BUSY);
    auth_oauth2_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_tokens_of_each_algorithm),
        cmocka_unit_test(test_forged_tokens),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_auth_url_nonce_and_challenge),
        cmocka_unit_test(test_url_policy_and_workers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
