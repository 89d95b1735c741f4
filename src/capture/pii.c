/* pii.c - personal data rules applied to an event before its record is written: drop a field,
 * replace it by a keyed hash (the same input always gives the same hash, so joins on it still
 * work, but it cannot be looked up without the key), or truncate it (an IP address keeps its
 * network part, other text its first characters). Rules name a field by its path in the
 * canonical record (properties.email, context.ip, context.traits.email, ...) and may be
 * limited to some sources (write key names). A compiled rule set is immutable and shared by
 * reference, so a settings change swaps it while requests keep the one they started with. */
#include <arpa/inet.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#include "capture/capture_int.h"

#define PII_MAX_RULES 64
#define PII_MAX_DEPTH 8
#define PII_MAX_SOURCES 16
#define PII_SEG_MAX 128
#define PII_MAX_LENGTH 10000

struct pii_rule {
    enum capture_pii_action action;
    unsigned length;
    size_t n_segs; /* segs[0] is "properties", "traits" or "context" */
    char segs[PII_MAX_DEPTH][PII_SEG_MAX + 1];
    size_t n_sources; /* 0: every source */
    char sources[PII_MAX_SOURCES][CAPTURE_KEY_NAME_MAX + 1];
};

struct capture_pii {
    atomic_int refs;
    unsigned char key[crypto_generichash_KEYBYTES];
    size_t n;
    struct pii_rule rules[];
};

/* The rules `defaults: true` switches on (docs/governance.md). */
static const struct {
    const char *field;
    enum capture_pii_action action;
} defaults[] = {
    {"context.ip", CAPTURE_PII_TRUNCATE},       {"properties.$ip", CAPTURE_PII_TRUNCATE},
    {"properties.email", CAPTURE_PII_HASH},     {"traits.email", CAPTURE_PII_HASH},
    {"context.traits.email", CAPTURE_PII_HASH}, {"properties.$set.email", CAPTURE_PII_HASH},
};

static const char *const action_names[] = {
    [CAPTURE_PII_DROP] = "drop", [CAPTURE_PII_HASH] = "hash", [CAPTURE_PII_TRUNCATE] = "truncate"};

static int parse_path(struct pii_rule *r, const char *field, char *err, size_t err_len)
{
    size_t len = strlen(field);
    if (len == 0 || len > 512) {
        err_set(err, err_len, "field: must be 1 to 512 characters");
        return ERR_INVALID;
    }
    r->n_segs = 0;
    for (const char *p = field;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n > PII_SEG_MAX || r->n_segs == PII_MAX_DEPTH) {
            err_set(err, err_len, "field: '%s' is not a path of 2 to %d names", field,
                    PII_MAX_DEPTH);
            return ERR_INVALID;
        }
        memcpy(r->segs[r->n_segs], p, n);
        r->segs[r->n_segs++][n] = '\0';
        if (!dot)
            break;
        p = dot + 1;
    }
    if (r->n_segs < 2 ||
        (strcmp(r->segs[0], "properties") != 0 && strcmp(r->segs[0], "traits") != 0 &&
         strcmp(r->segs[0], "context") != 0)) {
        err_set(err, err_len, "field: '%s' must start with properties., traits. or context.",
                field);
        return ERR_INVALID;
    }
    return 0;
}

static int add_rule(struct capture_pii *p, const char *field, const char *action, json_int_t length,
                    const json_t *sources, char *err, size_t err_len)
{
    if (p->n == PII_MAX_RULES) {
        err_set(err, err_len, "rules: at most %d", PII_MAX_RULES);
        return ERR_INVALID;
    }
    struct pii_rule *r = &p->rules[p->n];
    memset(r, 0, sizeof(*r));
    int rc = parse_path(r, field, err, err_len);
    if (rc != 0)
        return rc;
    size_t k = 0;
    while (k < ARRAY_LEN(action_names) && strcmp(action, action_names[k]) != 0)
        k++;
    if (k == ARRAY_LEN(action_names)) {
        err_set(err, err_len, "action: must be drop, hash or truncate");
        return ERR_INVALID;
    }
    r->action = (enum capture_pii_action)k;
    if (length < 0 || length > PII_MAX_LENGTH) {
        err_set(err, err_len, "length: must be 0 to %d", PII_MAX_LENGTH);
        return ERR_INVALID;
    }
    r->length = (unsigned)length;
    if (sources && !json_is_array(sources)) {
        err_set(err, err_len, "sources: must be an array of source names");
        return ERR_INVALID;
    }
    if (json_array_size(sources) > PII_MAX_SOURCES) {
        err_set(err, err_len, "sources: at most %d", PII_MAX_SOURCES);
        return ERR_INVALID;
    }
    for (size_t i = 0; i < json_array_size(sources); i++) {
        const char *s = json_string_value(json_array_get(sources, i));
        if (!s || !capture_key_name_valid(s)) {
            err_set(err, err_len, "sources: each must be a write key's name");
            return ERR_INVALID;
        }
        snprintf(r->sources[r->n_sources++], CAPTURE_KEY_NAME_MAX + 1, "%s", s);
    }
    p->n++;
    return 0;
}

int capture_pii_compile(const json_t *rules, bool with_defaults, const void *key, size_t key_len,
                        struct capture_pii **out, char *err, size_t err_len)
{
    *out = NULL;
    if (rules && !json_is_array(rules)) {
        err_set(err, err_len, "rules: must be an array");
        return ERR_INVALID;
    }
    size_t n = json_array_size(rules) + (with_defaults ? ARRAY_LEN(defaults) : 0);
    if (n == 0)
        return 0; /* nothing to do: no rule set at all */
    struct capture_pii *p = xcalloc(1, sizeof(*p) + (n < PII_MAX_RULES ? n : PII_MAX_RULES + 1) *
                                                        sizeof(struct pii_rule));
    atomic_init(&p->refs, 1);
    crypto_generichash(p->key, sizeof(p->key), key, key_len, (const unsigned char *)"tandem-pii-v1",
                       13);
    int rc = 0;
    for (size_t i = 0; with_defaults && rc == 0 && i < ARRAY_LEN(defaults); i++)
        rc =
            add_rule(p, defaults[i].field, action_names[defaults[i].action], 0, NULL, err, err_len);
    for (size_t i = 0; rc == 0 && i < json_array_size(rules); i++) {
        const json_t *r = json_array_get(rules, i);
        const char *field = json_string_value(json_object_get(r, "field"));
        const char *action = json_string_value(json_object_get(r, "action"));
        const json_t *len = json_object_get(r, "length");
        if (!json_is_object(r) || !field || !action || (len && !json_is_integer(len))) {
            err_set(err, err_len,
                    "rules: each needs a field and an action (and an integer length)");
            rc = ERR_INVALID;
            break;
        }
        rc = add_rule(p, field, action, len ? json_integer_value(len) : 0,
                      json_object_get(r, "sources"), err, err_len);
    }
    if (rc != 0) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

struct capture_pii *capture_pii_ref(struct capture_pii *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void capture_pii_unref(struct capture_pii *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) {
        sodium_memzero(p->key, sizeof(p->key));
        free(p);
    }
}

static bool rule_applies(const struct pii_rule *r, struct str source)
{
    if (r->n_sources == 0)
        return true;
    for (size_t i = 0; i < r->n_sources; i++)
        if (strlen(r->sources[i]) == source.len &&
            memcmp(r->sources[i], source.ptr, source.len) == 0)
            return true;
    return false;
}

bool capture__pii_touches(const struct capture_pii *p, struct str source, const char *object)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (strcmp(p->rules[i].segs[0], object) == 0 && rule_applies(&p->rules[i], source))
            return true;
    return false;
}

/* 32 lowercase hex characters: keyed BLAKE2b-128 of the value's text (a string's own
 * characters, any other value's compact JSON). */
static json_t *hashed(const struct capture_pii *p, const json_t *v)
{
    char *dumped = NULL;
    const char *text;
    size_t len;
    if (json_is_string(v)) {
        text = json_string_value(v);
        len = json_string_length(v);
    } else {
        dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        text = dumped ? dumped : "";
        len = strlen(text);
    }
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)text, len, p->key, sizeof(p->key));
    free(dumped);
    char hex[33];
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    return json_string(hex);
}

/* An IP address with its host part zeroed (IPv4 /24, IPv6 /48), or NULL for other text. */
static json_t *ip_network(const char *s)
{
    unsigned char a[16];
    char out[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, s, a) == 1) {
        a[3] = 0;
        return json_string(inet_ntop(AF_INET, a, out, sizeof(out)));
    }
    if (inet_pton(AF_INET6, s, a) == 1) {
        memset(a + 6, 0, 10);
        return json_string(inet_ntop(AF_INET6, a, out, sizeof(out)));
    }
    return NULL;
}

/* The first n characters (UTF-8 sequences) of s. */
static json_t *first_chars(const char *s, size_t len, unsigned n)
{
    size_t at = 0;
    for (unsigned k = 0; k < n && at < len; k++) {
        size_t q = str_utf8_seq((const unsigned char *)s + at, len - at);
        at += q ? q : 1;
    }
    return json_stringn(s, at);
}

static void apply_rule(const struct capture_pii *p, const struct pii_rule *r, json_t *obj)
{
    for (size_t i = 1; i + 1 < r->n_segs; i++) {
        obj = json_object_get(obj, r->segs[i]);
        if (!json_is_object(obj))
            return;
    }
    const char *leaf = r->segs[r->n_segs - 1];
    json_t *v = json_object_get(obj, leaf);
    if (!v)
        return;
    switch (r->action) {
    case CAPTURE_PII_DROP: json_object_del(obj, leaf); break;
    case CAPTURE_PII_HASH:
        if (!json_is_null(v))
            json_object_set_new(obj, leaf, hashed(p, v));
        break;
    case CAPTURE_PII_TRUNCATE:
        if (json_is_string(v)) {
            json_t *t = ip_network(json_string_value(v));
            json_object_set_new(
                obj, leaf,
                t ? t : first_chars(json_string_value(v), json_string_length(v), r->length));
        }
        break;
    }
}

void capture__pii_apply(const struct capture_pii *p, struct str source, const char *object,
                        json_t *obj)
{
    for (size_t i = 0; p && i < p->n; i++) {
        const struct pii_rule *r = &p->rules[i];
        if (strcmp(r->segs[0], object) == 0 && rule_applies(r, source))
            apply_rule(p, r, obj);
    }
}
