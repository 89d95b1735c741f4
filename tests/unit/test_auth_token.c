/* test_auth_token.c - PocketBase-format auth tokens: issue, verify, and every way a token
 * must be refused; the Authorization header forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

#define NOW 1800000000LL

struct rec {
    const char *collection_id;
    const char *id;
    char token_key[AUTH_TOKEN_KEY_MAX + 1];
};

struct db {
    struct rec recs[4];
    size_t n;
    int lookups;
    int fail_with; /* when non-zero, the lookup returns it */
};

static int lookup(void *arg, const char *collection_id, const char *record_id,
                  char token_key_out[AUTH_TOKEN_KEY_MAX + 1])
{
    struct db *db = arg;
    db->lookups++;
    if (db->fail_with)
        return db->fail_with;
    for (size_t i = 0; i < db->n; i++) {
        if (strcmp(db->recs[i].collection_id, collection_id) == 0 &&
            strcmp(db->recs[i].id, record_id) == 0) {
            strcpy(token_key_out, db->recs[i].token_key);
            return 0;
        }
    }
    return ERR_NOTFOUND;
}

struct fixture {
    struct auth_secret *secret;
    struct db db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uint8_t key[AUTH_SECRET_LEN];
    for (int i = 0; i < AUTH_SECRET_LEN; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    if (auth_secret_from_bytes(key, sizeof(key), &f->secret) != 0)
        return -1;
    f->db.recs[0] = (struct rec){"_pb_users_auth_", "4q1xlclmfloku33", ""};
    f->db.recs[1] = (struct rec){"_pb_users_auth_", "victimvictim123", ""};
    f->db.recs[2] = (struct rec){"pbc_3142635823", "4q1xlclmfloku33", ""};
    auth_token_key_new(f->db.recs[0].token_key);
    auth_token_key_new(f->db.recs[1].token_key);
    /* same record id and tokenKey in another collection: only the collection secret differs */
    strcpy(f->db.recs[2].token_key, f->db.recs[0].token_key);
    f->db.n = 3;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    auth_secret_free(f->secret);
    free(f);
    return 0;
}

static struct auth_token_claims claims_for(const char *coll, const char *id, int64_t exp)
{
    struct auth_token_claims c = {.exp = exp, .refreshable = true};
    strcpy(c.collection_id, coll);
    strcpy(c.record_id, id);
    return c;
}

static char *issue(struct fixture *f, size_t rec, int64_t exp)
{
    struct auth_token_claims c = claims_for(f->db.recs[rec].collection_id, f->db.recs[rec].id, exp);
    char *tok = NULL;
    assert_int_equal(auth_token_issue(f->secret, &c, f->db.recs[rec].token_key, &tok), 0);
    return tok;
}

static int verify(struct fixture *f, const char *tok, struct auth_token_claims *out)
{
    struct auth_token_claims dummy;
    return auth_token_verify(f->secret, tok, strlen(tok), NOW, lookup, &f->db, out ? out : &dummy);
}

static char *b64(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

static void b64_decode(const char *s, size_t len, char *out, size_t cap, size_t *len_out)
{
    assert_int_equal(sodium_base642bin((unsigned char *)out, cap, s, len, NULL, len_out, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    out[*len_out] = '\0';
}

/* The HMAC key a token of record rec is signed with: tokenKey + collection secret. */
static size_t hmac_key(struct fixture *f, const char *coll, const char *token_key, uint8_t *out)
{
    char cs[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(f->secret, "auth", coll, cs);
    size_t n = strlen(token_key);
    memcpy(out, token_key, n);
    memcpy(out + n, cs, AUTH_COLLECTION_SECRET_LEN);
    return n + AUTH_COLLECTION_SECRET_LEN;
}

enum mac { MAC_NONE, MAC_SHA256, MAC_SHA512 };

/* Builds base64url(header).base64url(payload).signature by hand, signed with key. */
static char *craft(const char *header, const char *payload, enum mac mac, const uint8_t *key,
                   size_t key_len)
{
    char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
    size_t in_len = strlen(h) + 1 + strlen(p);
    char *in = malloc(in_len + 1);
    snprintf(in, in_len + 1, "%s.%s", h, p);
    char *sig = NULL;
    if (mac == MAC_SHA256) {
        uint8_t m[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, key, key_len);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)in, in_len);
        crypto_auth_hmacsha256_final(&st, m);
        sig = b64(m, sizeof(m));
    } else if (mac == MAC_SHA512) {
        uint8_t m[crypto_auth_hmacsha512_BYTES];
        crypto_auth_hmacsha512_state st;
        crypto_auth_hmacsha512_init(&st, key, key_len);
        crypto_auth_hmacsha512_update(&st, (const uint8_t *)in, in_len);
        crypto_auth_hmacsha512_final(&st, m);
        sig = b64(m, sizeof(m));
    } else {
        sig = strdup("");
    }
    size_t out_len = in_len + 1 + strlen(sig) + 1;
    char *out = malloc(out_len);
    snprintf(out, out_len, "%s.%s", in, sig);
    free(h);
    free(p);
    free(in);
    free(sig);
    return out;
}

/* A crafted token for record 0, correctly signed with its real key unless told otherwise. */
static char *craft0(struct fixture *f, const char *header, const char *payload, enum mac mac)
{
    uint8_t key[512];
    size_t n = hmac_key(f, f->db.recs[0].collection_id, f->db.recs[0].token_key, key);
    return craft(header, payload, mac, key, n);
}

static char *payload0(struct fixture *f, int64_t exp)
{
    char *p = malloc(512);
    snprintf(p, 512,
             "{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"refreshable\":true,"
             "\"type\":\"auth\"}",
             f->db.recs[0].collection_id, (long long)exp, f->db.recs[0].id);
    return p;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void test_round_trip_and_exact_format(void **state)
{
    struct fixture *f = *state;
    char *tok = issue(f, 0, NOW + AUTH_TOKEN_DURATION_AUTH);
    struct auth_token_claims c;
    assert_int_equal(verify(f, tok, &c), 0);
    assert_string_equal(c.collection_id, "_pb_users_auth_");
    assert_string_equal(c.record_id, "4q1xlclmfloku33");
    assert_int_equal(c.exp, NOW + AUTH_TOKEN_DURATION_AUTH);
    assert_true(c.refreshable);
    assert_int_equal(f->db.lookups, 1);

    /* PocketBase's exact header and claims */
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char buf[1024];
    size_t len;
    b64_decode(tok, (size_t)(d1 - tok), buf, sizeof(buf), &len);
    assert_string_equal(buf, HS256);
    b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf), &len);
    char want[512];
    snprintf(want, sizeof(want),
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"4q1xlclmfloku33\","
             "\"refreshable\":true,\"type\":\"auth\"}",
             (long long)(NOW + AUTH_TOKEN_DURATION_AUTH));
    assert_string_equal(buf, want);

    /* the signature is HMAC-SHA256 keyed with tokenKey + collection secret */
    char *p = payload0(f, NOW + AUTH_TOKEN_DURATION_AUTH);
    char *again = craft0(f, HS256, p, MAC_SHA256);
    assert_string_equal(again, tok);

    /* the claims are JSON-escaped as jansson escapes them */
    struct auth_token_claims qc = claims_for("_pb_users_auth_", "q\"uo\\te/x", NOW + 60);
    char *tq = NULL;
    assert_int_equal(auth_token_issue(f->secret, &qc, f->db.recs[0].token_key, &tq), 0);
    char *q1 = strchr(tq, '.'), *q2 = strchr(q1 + 1, '.');
    b64_decode(q1 + 1, (size_t)(q2 - q1 - 1), buf, sizeof(buf), &len);
    json_t *jc =
        json_pack("{s:s, s:I, s:s, s:b, s:s}", "collectionId", "_pb_users_auth_", "exp",
                  (json_int_t)(NOW + 60), "id", "q\"uo\\te/x", "refreshable", 1, "type", "auth");
    char *jtext = json_dumps(jc, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(buf, jtext);
    free(jtext);
    json_decref(jc);
    free(tq);

    /* refreshable:false survives the trip */
    struct auth_token_claims nc = claims_for("_pb_users_auth_", "4q1xlclmfloku33", NOW + 60);
    nc.refreshable = false;
    char *t2 = NULL;
    assert_int_equal(auth_token_issue(f->secret, &nc, f->db.recs[0].token_key, &t2), 0);
    assert_int_equal(verify(f, t2, &c), 0);
    assert_false(c.refreshable);
    free(t2);
    free(p);
    free(again);
    free(tok);
}

static void test_tampered_payload_rejected(void **state)
{
    struct fixture *f = *state;
    char *tok = issue(f, 0, NOW + 3600);
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');

    /* the payload swapped for another user's, the signature kept */
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"victimvictim123\","
             "\"refreshable\":true,\"type\":\"auth\"}",
             (long long)(NOW + 3600));
    char *pb = b64(payload, strlen(payload));
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, pb, d2);
    assert_int_equal(verify(f, forged, NULL), ERR_DENIED);

    /* a longer exp, the signature kept */
    snprintf(payload, sizeof(payload),
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"4q1xlclmfloku33\","
             "\"refreshable\":true,\"type\":\"auth\"}",
             (long long)(NOW + 9999999));
    free(pb);
    pb = b64(payload, strlen(payload));
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, pb, d2);
    assert_int_equal(verify(f, forged, NULL), ERR_DENIED);

    /* one character of the encoded payload changed: never accepted */
    for (char *q = d1 + 1; q < d2; q++) {
        char saved = *q;
        *q = saved == 'A' ? 'B' : 'A';
        assert_int_not_equal(verify(f, tok, NULL), 0);
        *q = saved;
    }
    assert_int_equal(verify(f, tok, NULL), 0);
    free(pb);
    free(tok);
}

static void test_tampered_signature_rejected(void **state)
{
    struct fixture *f = *state;
    char *tok = issue(f, 0, NOW + 3600);
    char *d2 = strrchr(tok, '.');
    for (char *q = d2 + 1; *q; q++) {
        char saved = *q;
        *q = saved == 'A' ? 'B' : 'A';
        assert_int_not_equal(verify(f, tok, NULL), 0);
        *q = saved;
    }
    /* the first character changes the first MAC byte: a clean signature mismatch */
    d2[1] = d2[1] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(f, tok, NULL), ERR_DENIED);
    /* truncated or extended signatures */
    char *t2 = issue(f, 0, NOW + 3600);
    size_t n = strlen(t2);
    t2[n - 1] = '\0';
    assert_int_not_equal(verify(f, t2, NULL), 0);
    char longer[2048];
    t2[n - 1] = 'A';
    snprintf(longer, sizeof(longer), "%sAAAA", t2);
    assert_int_not_equal(verify(f, longer, NULL), 0);
    free(t2);
    free(tok);
}

static void test_alg_none_rejected(void **state)
{
    struct fixture *f = *state;
    char *p = payload0(f, NOW + 3600);
    const char *headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"NONE\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":null,\"typ\":\"JWT\"}",
        "{\"alg\":\"\",\"typ\":\"JWT\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        /* empty signature, by hand: header.payload. */
        char *tok = craft0(f, headers[i], p, MAC_NONE);
        assert_int_equal(tok[strlen(tok) - 1], '.');
        assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
        free(tok);
        /* and with a valid HS256 MAC attached, still refused */
        tok = craft0(f, headers[i], p, MAC_SHA256);
        assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
        free(tok);
    }
    /* header.payload without the last dot */
    char *tok = craft0(f, "{\"alg\":\"none\",\"typ\":\"JWT\"}", p, MAC_NONE);
    tok[strlen(tok) - 1] = '\0';
    assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
    free(tok);
    assert_int_equal(f->db.lookups, 0); /* refused before anything looked at the ids */
    free(p);
}

static void test_other_algorithms_rejected(void **state)
{
    struct fixture *f = *state;
    char *p = payload0(f, NOW + 3600);
    /* each signed with the record's real key: only the algorithm is wrong */
    struct {
        const char *header;
        enum mac mac;
    } cases[] = {
        {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}", MAC_SHA512},
        {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"HS384\",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", MAC_SHA256}, /* RS/HS key confusion */
        {"{\"alg\":\"ES256\",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"PS256\",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"hs256\",\"typ\":\"JWT\"}", MAC_SHA256}, /* libjwt compares without case */
        {"{\"alg\":\"HS256 \",\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":[\"HS256\"],\"typ\":\"JWT\"}", MAC_SHA256},
        {"{\"alg\":\"HS256\",\"alg\":\"none\",\"typ\":\"JWT\"}", MAC_SHA256}, /* duplicate */
        {"{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", MAC_SHA256},
        {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}", MAC_SHA256},
        {"[\"HS256\"]", MAC_SHA256},
        {"not json", MAC_SHA256},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = craft0(f, cases[i].header, p, cases[i].mac);
        assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
        free(tok);
    }
    assert_int_equal(f->db.lookups, 0);

    /* control: the same crafting with a correct header is accepted, typ is optional, and
     * headers we do not use (kid, jku) change nothing */
    const char *fine[] = {HS256, "{\"alg\":\"HS256\"}",
                          "{\"alg\":\"HS256\",\"kid\":\"../../etc/passwd\",\"jku\":\"http://x\"}"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        char *tok = craft0(f, fine[i], p, MAC_SHA256);
        assert_int_equal(verify(f, tok, NULL), 0);
        free(tok);
    }
    free(p);
}

static void test_expiry_and_not_before(void **state)
{
    struct fixture *f = *state;
    char *tok = issue(f, 0, NOW - 1);
    assert_int_equal(verify(f, tok, NULL), ERR_DENIED);
    free(tok);
    tok = issue(f, 0, NOW);
    assert_int_equal(verify(f, tok, NULL), ERR_DENIED);
    free(tok);
    assert_int_equal(f->db.lookups, 0); /* expired tokens cost no lookup */
    tok = issue(f, 0, NOW + 1);
    assert_int_equal(verify(f, tok, NULL), 0);
    /* the same token later on */
    assert_int_equal(auth_token_verify(f->secret, tok, strlen(tok), NOW + 1, lookup, &f->db,
                                       &(struct auth_token_claims){0}),
                     ERR_DENIED);
    free(tok);

    char pl[512];
    const char *coll = f->db.recs[0].collection_id, *id = f->db.recs[0].id;
    /* exp as a fraction is read as whole seconds */
    snprintf(pl, sizeof(pl),
             "{\"collectionId\":\"%s\",\"exp\":%lld.5,\"id\":\"%s\",\"type\":\"auth\"}", coll,
             (long long)NOW + 10, id);
    tok = craft0(f, HS256, pl, MAC_SHA256);
    struct auth_token_claims c;
    assert_int_equal(verify(f, tok, &c), 0);
    assert_int_equal(c.exp, NOW + 10);
    assert_false(c.refreshable); /* absent: false */
    free(tok);
    /* nbf in the future, and in the past */
    snprintf(pl, sizeof(pl),
             "{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"nbf\":%lld,\"type\":\"auth\"}",
             coll, (long long)NOW + 100, id, (long long)NOW + 50);
    tok = craft0(f, HS256, pl, MAC_SHA256);
    assert_int_equal(verify(f, tok, NULL), ERR_DENIED);
    free(tok);
    snprintf(pl, sizeof(pl),
             "{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"nbf\":%lld,\"type\":\"auth\"}",
             coll, (long long)NOW + 100, id, (long long)NOW - 50);
    tok = craft0(f, HS256, pl, MAC_SHA256);
    assert_int_equal(verify(f, tok, NULL), 0);
    free(tok);
}

static void test_claims_must_be_well_formed(void **state)
{
    struct fixture *f = *state;
    const char *coll = f->db.recs[0].collection_id, *id = f->db.recs[0].id;
    long long exp = NOW + 100;
    char pl[14][512];
    int n = 0;
#define PL(...) snprintf(pl[n++], sizeof(pl[0]), __VA_ARGS__)
    PL("{\"collectionId\":\"%s\",\"id\":\"%s\",\"type\":\"auth\"}", coll, id); /* no exp */
    PL("{\"collectionId\":\"%s\",\"exp\":\"%lld\",\"id\":\"%s\",\"type\":\"auth\"}", coll, exp, id);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"type\":\"file\"}", coll, exp, id);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"type\":\"passwordReset\"}", coll, exp,
       id);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\"}", coll, exp, id); /* no type */
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"type\":\"auth\"}", coll, exp); /* no id */
    PL("{\"exp\":%lld,\"id\":\"%s\",\"type\":\"auth\"}", exp, id);             /* no collectionId */
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"\",\"type\":\"auth\"}", coll, exp);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":7,\"type\":\"auth\"}", coll, exp);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"refreshable\":\"yes\","
       "\"type\":\"auth\"}",
       coll, exp, id);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"a b\",\"type\":\"auth\"}", coll, exp);
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"victimvictim123\",\"id\":\"%s\","
       "\"type\":\"auth\"}",
       coll, exp, id); /* duplicate key: which one would a second parser read? */
    PL("{\"collectionId\":\"%s\",\"exp\":%lld,\"id\":\"%s\",\"type\":\"auth\",\"type\":\"auth\"}",
       coll, exp, id);
    PL("[\"%s\",%lld,\"%s\"]", coll, exp, id);
#undef PL
    for (int i = 0; i < n; i++) {
        char *tok = craft0(f, HS256, pl[i], MAC_SHA256);
        assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
        free(tok);
    }
    assert_int_equal(f->db.lookups, 0);
}

static void test_wrong_collection_and_unknown_record(void **state)
{
    struct fixture *f = *state;
    /* unknown record */
    struct auth_token_claims c = claims_for("_pb_users_auth_", "nosuchrecord000", NOW + 60);
    char *tok = NULL;
    assert_int_equal(auth_token_issue(f->secret, &c, f->db.recs[0].token_key, &tok), 0);
    assert_int_equal(verify(f, tok, NULL), ERR_NOTFOUND);
    free(tok);
    /* the record exists, but not in that collection */
    c = claims_for("posts", "4q1xlclmfloku33", NOW + 60);
    assert_int_equal(auth_token_issue(f->secret, &c, f->db.recs[0].token_key, &tok), 0);
    assert_int_equal(verify(f, tok, NULL), ERR_NOTFOUND);
    free(tok);

    /* the collectionId of a valid token rewritten to another collection holding the same id
     * with the same tokenKey: the collection secret differs, so the signature fails */
    tok = issue(f, 0, NOW + 60);
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char pl[512];
    snprintf(pl, sizeof(pl),
             "{\"collectionId\":\"pbc_3142635823\",\"exp\":%lld,\"id\":\"4q1xlclmfloku33\","
             "\"refreshable\":true,\"type\":\"auth\"}",
             (long long)NOW + 60);
    char *pb = b64(pl, strlen(pl));
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, pb, d2);
    assert_int_equal(verify(f, forged, NULL), ERR_DENIED);
    free(pb);
    free(tok);

    /* a lookup failure is passed through; an empty tokenKey holds no tokens */
    tok = issue(f, 0, NOW + 60);
    f->db.fail_with = ERR_BUSY;
    assert_int_equal(verify(f, tok, NULL), ERR_BUSY);
    f->db.fail_with = 0;
    char saved[AUTH_TOKEN_KEY_MAX + 1];
    strcpy(saved, f->db.recs[0].token_key);
    f->db.recs[0].token_key[0] = '\0';
    assert_int_equal(verify(f, tok, NULL), ERR_DENIED);
    strcpy(f->db.recs[0].token_key, saved);
    assert_int_equal(verify(f, tok, NULL), 0);
    free(tok);
}

static void test_token_key_rotation_revokes(void **state)
{
    struct fixture *f = *state;
    char *old = issue(f, 0, NOW + 3600);
    char *other = issue(f, 1, NOW + 3600);
    assert_int_equal(verify(f, old, NULL), 0);
    auth_token_key_new(f->db.recs[0].token_key); /* password change */
    assert_int_equal(verify(f, old, NULL), ERR_DENIED);
    assert_int_equal(verify(f, other, NULL), 0); /* other users keep their sessions */
    char *fresh = issue(f, 0, NOW + 3600);
    assert_int_equal(verify(f, fresh, NULL), 0);

    /* a new data-directory secret revokes everything */
    uint8_t key[AUTH_SECRET_LEN] = {0};
    struct auth_secret *s2 = NULL;
    assert_int_equal(auth_secret_from_bytes(key, sizeof(key), &s2), 0);
    struct auth_token_claims c;
    assert_int_equal(auth_token_verify(s2, fresh, strlen(fresh), NOW, lookup, &f->db, &c),
                     ERR_DENIED);
    auth_secret_free(s2);
    free(old);
    free(other);
    free(fresh);
}

static void test_oversized_and_malformed(void **state)
{
    struct fixture *f = *state;
    /* a token just over 8 KiB: refused before parsing (a valid one padded with a long id) */
    char *big = malloc(AUTH_TOKEN_MAX + 2);
    memset(big, 'A', AUTH_TOKEN_MAX + 1);
    big[10] = '.';
    big[20] = '.';
    big[AUTH_TOKEN_MAX + 1] = '\0';
    assert_int_equal(verify(f, big, NULL), ERR_LIMIT);
    char *p = malloc(AUTH_TOKEN_MAX);
    memset(p, 'x', AUTH_TOKEN_MAX - 1);
    p[AUTH_TOKEN_MAX - 1] = '\0';
    char *pl = malloc(AUTH_TOKEN_MAX + 256);
    snprintf(pl, AUTH_TOKEN_MAX + 256,
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"4q1xlclmfloku33\","
             "\"pad\":\"%s\",\"type\":\"auth\"}",
             (long long)NOW + 60, p);
    char *tok = craft0(f, HS256, pl, MAC_SHA256);
    assert_true(strlen(tok) > AUTH_TOKEN_MAX);
    assert_int_equal(verify(f, tok, NULL), ERR_LIMIT);
    free(tok);
    /* the same padding, small enough: accepted, so the limit is what refused it */
    pl[0] = '\0';
    snprintf(pl, AUTH_TOKEN_MAX + 256,
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"4q1xlclmfloku33\","
             "\"pad\":\"%.4000s\",\"type\":\"auth\"}",
             (long long)NOW + 60, p);
    tok = craft0(f, HS256, pl, MAC_SHA256);
    assert_true(strlen(tok) <= AUTH_TOKEN_MAX);
    assert_int_equal(verify(f, tok, NULL), 0);
    free(tok);
    free(pl);
    free(p);
    free(big);

    char *good = issue(f, 0, NOW + 60);
    char buf[2048];
    const char *bad[] = {"", ".", "..", "a.b", "a.b.c.d", "...", "eyJ.eyJ.", good + 1};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_not_equal(verify(f, bad[i], NULL), 0);
    /* a fourth part, padding, spaces, standard base64 characters */
    snprintf(buf, sizeof(buf), "%s.xyz", good);
    assert_int_equal(verify(f, buf, NULL), ERR_INVALID);
    snprintf(buf, sizeof(buf), "%s=", good);
    assert_int_equal(verify(f, buf, NULL), ERR_INVALID);
    snprintf(buf, sizeof(buf), " %s", good);
    assert_int_equal(verify(f, buf, NULL), ERR_INVALID);
    strcpy(buf, good);
    buf[3] = '+';
    assert_int_equal(verify(f, buf, NULL), ERR_INVALID);
    /* a length that stops inside the token */
    assert_int_not_equal(auth_token_verify(f->secret, good, strlen(good) - 1, NOW, lookup, &f->db,
                                           &(struct auth_token_claims){0}),
                         0);
    assert_int_equal(verify(f, good, NULL), 0);
    free(good);
}

static void test_issue_validates_input(void **state)
{
    struct fixture *f = *state;
    char *tok = NULL;
    const char *tk = f->db.recs[0].token_key;
    struct auth_token_claims c = claims_for("users", "abc", NOW);
    assert_int_equal(auth_token_issue(f->secret, &c, "", &tok), ERR_INVALID);
    assert_int_equal(auth_token_issue(f->secret, &c, "has space", &tok), ERR_INVALID);
    char long_key[AUTH_TOKEN_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    assert_int_equal(auth_token_issue(f->secret, &c, long_key, &tok), ERR_INVALID);
    c.exp = 0;
    assert_int_equal(auth_token_issue(f->secret, &c, tk, &tok), ERR_INVALID);
    c = claims_for("", "abc", NOW);
    assert_int_equal(auth_token_issue(f->secret, &c, tk, &tok), ERR_INVALID);
    c = claims_for("users", "a\"b", NOW);
    c.record_id[1] = '\n';
    assert_int_equal(auth_token_issue(f->secret, &c, tk, &tok), ERR_INVALID);
    c = claims_for("users", "", NOW);
    assert_int_equal(auth_token_issue(f->secret, &c, tk, &tok), ERR_INVALID);
    assert_null(tok);
    /* the longest accepted id and key */
    memset(c.record_id, 'r', AUTH_ID_MAX);
    c.record_id[AUTH_ID_MAX] = '\0';
    long_key[AUTH_TOKEN_KEY_MAX] = '\0';
    assert_int_equal(auth_token_issue(f->secret, &c, long_key, &tok), 0);
    assert_true(strlen(tok) < AUTH_TOKEN_MAX);
    free(tok);
}

static void test_authorization_header_forms(void **state)
{
    struct fixture *f = *state;
    char *tok = issue(f, 0, NOW + 60);
    char hdr[2048];
    const char *pre[] = {"", "Bearer ", "bearer ", "BEARER ", "Bearer   ", "  ", "\tBearer\t"};
    const char *post[] = {"", "", "", "", "  ", "", ""};
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
        snprintf(hdr, sizeof(hdr), "%s%s%s", pre[i], tok, post[i]);
        struct str t;
        assert_int_equal(auth_token_from_header(hdr, &t), 0);
        assert_int_equal(t.len, strlen(tok));
        assert_memory_equal(t.ptr, tok, t.len);
        struct auth_token_claims c;
        assert_int_equal(auth_token_verify(f->secret, t.ptr, t.len, NOW, lookup, &f->db, &c), 0);
        assert_string_equal(c.record_id, "4q1xlclmfloku33");
    }
    struct str t;
    assert_int_equal(auth_token_from_header(NULL, &t), ERR_NOTFOUND);
    assert_int_equal(auth_token_from_header("", &t), ERR_NOTFOUND);
    assert_int_equal(auth_token_from_header("   ", &t), ERR_NOTFOUND);
    assert_int_equal(auth_token_from_header("Bearer   ", &t), ERR_NOTFOUND);
    /* another scheme is not stripped: the token then fails verification (a guest) */
    snprintf(hdr, sizeof(hdr), "Basic %s", tok);
    assert_int_equal(auth_token_from_header(hdr, &t), 0);
    assert_int_not_equal(auth_token_verify(f->secret, t.ptr, t.len, NOW, lookup, &f->db,
                                           &(struct auth_token_claims){0}),
                         0);
    /* "Bearer" glued to the token is not a scheme */
    snprintf(hdr, sizeof(hdr), "Bearer%s", tok);
    assert_int_equal(auth_token_from_header(hdr, &t), 0);
    assert_int_equal(t.len, strlen(hdr));
    free(tok);
}

static int verify_cached(struct fixture *f, const char *tok, int64_t now, uint64_t scope,
                         uint64_t epoch, struct auth_token_claims *out)
{
    struct auth_token_claims dummy;
    return auth_token_verify_cached(f->secret, tok, strlen(tok), now, scope, epoch, lookup, &f->db,
                                    out ? out : &dummy);
}

static void test_cache_hits_skip_the_lookup(void **state)
{
    struct fixture *f = *state;
    auth_token_cache_clear();
    char *tok = issue(f, 0, NOW + 60);
    struct auth_token_claims c;
    assert_int_equal(verify_cached(f, tok, NOW, 1, 7, &c), 0);
    assert_int_equal(f->db.lookups, 1);
    for (int i = 0; i < 5; i++) {
        memset(&c, 0, sizeof(c));
        assert_int_equal(verify_cached(f, tok, NOW, 1, 7, &c), 0);
        assert_string_equal(c.record_id, "4q1xlclmfloku33");
        assert_string_equal(c.collection_id, "_pb_users_auth_");
        assert_int_equal(c.exp, NOW + 60);
        assert_true(c.refreshable);
    }
    assert_int_equal(f->db.lookups, 1);
    /* another scope or epoch is a miss, and the entry moves to the new one */
    assert_int_equal(verify_cached(f, tok, NOW, 2, 7, NULL), 0);
    assert_int_equal(f->db.lookups, 2);
    assert_int_equal(verify_cached(f, tok, NOW, 2, 8, NULL), 0);
    assert_int_equal(f->db.lookups, 3);
    assert_int_equal(verify_cached(f, tok, NOW, 2, 8, NULL), 0);
    assert_int_equal(f->db.lookups, 3);
    /* the same bytes one shorter or with one byte changed never hit */
    char *bad = strdup(tok);
    char *q = bad + strlen(bad) - 2, saved = *q;
    *q = saved == 'A' ? 'B' : 'A'; /* stays in the base64url alphabet: a MAC mismatch */
    assert_int_equal(verify_cached(f, bad, NOW, 2, 8, NULL), ERR_DENIED);
    *q = saved;
    bad[strlen(bad) - 1] = '\0';
    assert_int_not_equal(verify_cached(f, bad, NOW, 2, 8, NULL), 0);
    free(bad);
    /* the cache is per thread: clearing it costs a lookup */
    auth_token_cache_clear();
    int before = f->db.lookups;
    assert_int_equal(verify_cached(f, tok, NOW, 2, 8, NULL), 0);
    assert_int_equal(f->db.lookups, before + 1);
    free(tok);
}

static void test_cache_rotation_expiry_and_failures(void **state)
{
    struct fixture *f = *state;
    auth_token_cache_clear();
    char *tok = issue(f, 0, NOW + 60);
    assert_int_equal(verify_cached(f, tok, NOW, 1, 1, NULL), 0);
    /* a password change rotates the tokenKey and advances the epoch: refused at once */
    auth_token_key_new(f->db.recs[0].token_key);
    assert_int_equal(verify_cached(f, tok, NOW, 1, 2, NULL), ERR_DENIED);
    assert_int_equal(verify_cached(f, tok, NOW, 1, 2, NULL), ERR_DENIED); /* failures: no entry */
    char *fresh = issue(f, 0, NOW + 60);
    assert_int_equal(verify_cached(f, fresh, NOW, 1, 2, NULL), 0);
    /* a cached token still expires */
    int before = f->db.lookups;
    assert_int_equal(verify_cached(f, fresh, NOW + 59, 1, 2, NULL), 0);
    assert_int_equal(f->db.lookups, before);
    assert_int_equal(verify_cached(f, fresh, NOW + 60, 1, 2, NULL), ERR_DENIED);
    assert_int_equal(verify_cached(f, fresh, NOW + 59, 1, 2, NULL), 0); /* verified again */
    assert_int_equal(f->db.lookups, before + 1);
    /* a lookup failure is passed through and not remembered */
    char *other = issue(f, 1, NOW + 60);
    f->db.fail_with = ERR_BUSY;
    assert_int_equal(verify_cached(f, other, NOW, 1, 2, NULL), ERR_BUSY);
    f->db.fail_with = 0;
    assert_int_equal(verify_cached(f, other, NOW, 1, 2, NULL), 0);
    /* another secret: never a hit from entries made under the first one */
    uint8_t key[AUTH_SECRET_LEN] = {0};
    struct auth_secret *s2 = NULL;
    assert_int_equal(auth_secret_from_bytes(key, sizeof(key), &s2), 0);
    struct auth_token_claims c;
    assert_int_equal(
        auth_token_verify_cached(s2, fresh, strlen(fresh), NOW, 1, 2, lookup, &f->db, &c),
        ERR_DENIED);
    auth_secret_free(s2);
    /* a secret freed (its address may come back) ends every entry */
    before = f->db.lookups;
    assert_int_equal(verify_cached(f, fresh, NOW, 1, 2, NULL), 0);
    assert_int_equal(f->db.lookups, before + 1);
    /* too long to cache: verified in full every time */
    char *p = malloc(AUTH_TOKEN_CACHE_LEN);
    memset(p, 'x', AUTH_TOKEN_CACHE_LEN - 1);
    p[AUTH_TOKEN_CACHE_LEN - 1] = '\0';
    char pl[AUTH_TOKEN_CACHE_LEN + 256];
    snprintf(pl, sizeof(pl),
             "{\"collectionId\":\"_pb_users_auth_\",\"exp\":%lld,\"id\":\"victimvictim123\","
             "\"pad\":\"%s\",\"type\":\"auth\"}",
             (long long)NOW + 60, p);
    free(p);
    uint8_t k[512];
    size_t kl = hmac_key(f, "_pb_users_auth_", f->db.recs[1].token_key, k);
    char *big = craft(HS256, pl, MAC_SHA256, k, kl);
    assert_true(strlen(big) > AUTH_TOKEN_CACHE_LEN);
    before = f->db.lookups;
    assert_int_equal(verify_cached(f, big, NOW, 1, 2, NULL), 0);
    assert_int_equal(verify_cached(f, big, NOW, 1, 2, NULL), 0);
    assert_int_equal(f->db.lookups, before + 2);
    free(big);
    free(other);
    free(fresh);
    free(tok);
}

/* The account-flow token types: each verifies only as itself, carries its email claims in
 * PocketBase's form, and is refused when presented as another type (an auth token included). */
static void test_typed_tokens(void **state)
{
    struct fixture *f = *state;
    struct auth_token_claims c =
        claims_for(f->db.recs[0].collection_id, f->db.recs[0].id, NOW + 60);
    c.type = AUTH_TOKEN_EMAIL_CHANGE;
    strcpy(c.email, "old@example.com");
    strcpy(c.new_email, "n\u00e9w@example.com");
    char *tok = NULL, *auth = issue(f, 0, NOW + 60);
    assert_int_equal(auth_token_issue(f->secret, &c, f->db.recs[0].token_key, &tok), 0);
    size_t dot1 = strcspn(tok, "."), dot2 = dot1 + 1 + strcspn(tok + dot1 + 1, ".");
    char payload[512];
    size_t plen = 0;
    b64_decode(tok + dot1 + 1, dot2 - dot1 - 1, payload, sizeof(payload), &plen);
    payload[plen] = '\0';
    assert_string_equal(payload,
                        "{\"collectionId\":\"_pb_users_auth_\",\"email\":\"old@example.com\","
                        "\"exp\":1800000060,\"id\":\"4q1xlclmfloku33\",\"newEmail\":"
                        "\"n\u00e9w@example.com\",\"type\":\"emailChange\"}");
    struct auth_token_claims out;
    assert_int_equal(auth_token_verify_as(f->secret, AUTH_TOKEN_EMAIL_CHANGE, tok, strlen(tok), NOW,
                                          lookup, &f->db, &out),
                     0);
    assert_int_equal(out.type, AUTH_TOKEN_EMAIL_CHANGE);
    assert_string_equal(out.email, "old@example.com");
    assert_string_equal(out.new_email, c.new_email);
    /* type confusion in every direction is refused */
    assert_int_equal(verify(f, tok, NULL), ERR_INVALID);
    assert_int_not_equal(auth_token_verify_as(f->secret, AUTH_TOKEN_PASSWORD_RESET, tok,
                                              strlen(tok), NOW, lookup, &f->db, &out),
                         0);
    assert_int_not_equal(auth_token_verify_as(f->secret, AUTH_TOKEN_VERIFICATION, auth,
                                              strlen(auth), NOW, lookup, &f->db, &out),
                         0);
    /* expired */
    assert_int_equal(auth_token_verify_as(f->secret, AUTH_TOKEN_EMAIL_CHANGE, tok, strlen(tok),
                                          NOW + 61, lookup, &f->db, &out),
                     ERR_DENIED);
    /* a verification token without its email claim cannot be issued */
    struct auth_token_claims v =
        claims_for(f->db.recs[0].collection_id, f->db.recs[0].id, NOW + 60);
    v.type = AUTH_TOKEN_VERIFICATION;
    char *none = NULL;
    assert_int_equal(auth_token_issue(f->secret, &v, f->db.recs[0].token_key, &none), ERR_INVALID);
    /* signed under the verification secret, the same claims do not pass as a reset token */
    strcpy(v.email, "old@example.com");
    char *vt = NULL;
    assert_int_equal(auth_token_issue(f->secret, &v, f->db.recs[0].token_key, &vt), 0);
    assert_int_equal(auth_token_verify_as(f->secret, AUTH_TOKEN_VERIFICATION, vt, strlen(vt), NOW,
                                          lookup, &f->db, &out),
                     0);
    assert_string_equal(auth_token_type_name(AUTH_TOKEN_PASSWORD_RESET), "passwordReset");
    free(vt);
    free(tok);
    free(auth);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip_and_exact_format),
        T(test_tampered_payload_rejected),
        T(test_tampered_signature_rejected),
        T(test_alg_none_rejected),
        T(test_other_algorithms_rejected),
        T(test_expiry_and_not_before),
        T(test_claims_must_be_well_formed),
        T(test_wrong_collection_and_unknown_record),
        T(test_token_key_rotation_revokes),
        T(test_oversized_and_malformed),
        T(test_issue_validates_input),
        T(test_authorization_header_forms),
        T(test_cache_hits_skip_the_lookup),
        T(test_cache_rotation_expiry_and_failures),
        T(test_typed_tokens),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
