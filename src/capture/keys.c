/* keys.c - write keys: random secrets that identify a capture source. Only their hash is
 * stored; the key itself is shown once, when it is made. Capture nodes learn the hashes of
 * the live keys from the primary through the key topic (capture_keyset). */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "capture/capture.h"

bool capture_key_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CAPTURE_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void capture_key_hash(const char *key, char hash_out[CAPTURE_KEY_HASH_LEN + 1])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key), NULL, 0);
    sodium_bin2hex(hash_out, CAPTURE_KEY_HASH_LEN + 1, h, sizeof(h));
}

void capture_key_new(char key_out[CAPTURE_KEY_LEN + 1], char hash_out[CAPTURE_KEY_HASH_LEN + 1],
                     char prefix_out[CAPTURE_KEY_PREFIX_LEN + 1])
{
    char a[ID_LEN + 1], b[ID_LEN + 1];
    id_random(a);
    id_random(b);
    /* "tk_" + 30 characters of [a-z0-9]: about 155 bits */
    snprintf(key_out, CAPTURE_KEY_LEN + 1, "tk_%s%s", a, b);
    capture_key_hash(key_out, hash_out);
    memcpy(prefix_out, key_out, CAPTURE_KEY_PREFIX_LEN);
    prefix_out[CAPTURE_KEY_PREFIX_LEN] = '\0';
}

/* ---- the key topic's records ---- */

static bool hash_valid(const char *h)
{
    if (strlen(h) != CAPTURE_KEY_HASH_LEN)
        return false;
    for (size_t i = 0; i < CAPTURE_KEY_HASH_LEN; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return true;
}

char *capture_key_record(const char *name, const char *hash, const char *prefix,
                         const char *created, const char *revoked)
{
    if (!capture_key_name_valid(name) || !hash_valid(hash))
        return NULL;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", name, "hash", hash, "prefix",
                          prefix ? prefix : "", "created", created ? created : "", "revoked",
                          revoked ? revoked : "");
    if (!j)
        return NULL;
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

/* ---- the live keys a capture node knows ---- */

#define KS_BUCKETS 4096

struct ks_entry {
    char name[CAPTURE_KEY_NAME_MAX + 1];
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    struct ks_entry *next_name; /* chain of its name's bucket */
    struct ks_entry *next_hash; /* chain of its hash's bucket */
};

/* A revoked key's hash: revocation is final, so a live record of it read later (from another
 * partition, after partitions were added to the topic) does not bring it back. */
struct ks_revoked {
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    struct ks_revoked *next;
};

struct capture_keyset {
    pthread_rwlock_t lock; /* everything below */
    size_t n, n_revoked;
    struct ks_entry *by_name[KS_BUCKETS];
    struct ks_entry *by_hash[KS_BUCKETS];
    struct ks_revoked *revoked[KS_BUCKETS];
};

static size_t bucket_of(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % KS_BUCKETS;
}

struct capture_keyset *capture_keyset_new(void)
{
    struct capture_keyset *ks = xcalloc(1, sizeof(*ks));
    pthread_rwlock_init(&ks->lock, NULL);
    return ks;
}

void capture_keyset_free(struct capture_keyset *ks)
{
    if (!ks)
        return;
    for (size_t b = 0; b < KS_BUCKETS; b++)
        for (struct ks_entry *e = ks->by_name[b], *next; e; e = next) {
            next = e->next_name;
            free(e);
        }
    for (size_t b = 0; b < KS_BUCKETS; b++)
        for (struct ks_revoked *r = ks->revoked[b], *next; r; r = next) {
            next = r->next;
            free(r);
        }
    pthread_rwlock_destroy(&ks->lock);
    free(ks);
}

static bool was_revoked(struct capture_keyset *ks, const char *hash)
{
    for (struct ks_revoked *r = ks->revoked[bucket_of(hash)]; r; r = r->next)
        if (strcmp(r->hash, hash) == 0)
            return true;
    return false;
}

static int remember_revoked(struct capture_keyset *ks, const char *hash)
{
    if (ks->n_revoked >= CAPTURE_KEYSET_MAX)
        return ERR_LIMIT;
    struct ks_revoked *r = xcalloc(1, sizeof(*r));
    memcpy(r->hash, hash, CAPTURE_KEY_HASH_LEN + 1);
    size_t b = bucket_of(r->hash);
    r->next = ks->revoked[b];
    ks->revoked[b] = r;
    ks->n_revoked++;
    return 0;
}

/* Unlinks and frees the entry of name, if any (only when its hash is hash, unless NULL).
 * [ks->lock held for writing] */
static void forget(struct capture_keyset *ks, const char *name, const char *hash)
{
    struct ks_entry **pp = &ks->by_name[bucket_of(name)];
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next_name;
    struct ks_entry *e = *pp;
    if (!e || (hash && strcmp(e->hash, hash) != 0))
        return;
    *pp = e->next_name;
    for (struct ks_entry **hp = &ks->by_hash[bucket_of(e->hash)]; *hp; hp = &(*hp)->next_hash)
        if (*hp == e) {
            *hp = e->next_hash;
            break;
        }
    ks->n--;
    free(e);
}

int capture_keyset_apply(struct capture_keyset *ks, const char *name, size_t name_len,
                         const void *value, size_t value_len)
{
    char kname[CAPTURE_KEY_NAME_MAX + 1];
    if (!name || name_len == 0 || name_len > CAPTURE_KEY_NAME_MAX)
        return ERR_INVALID;
    memcpy(kname, name, name_len);
    kname[name_len] = '\0';
    if (!capture_key_name_valid(kname))
        return ERR_INVALID;
    const char *hash = NULL;
    bool live = false;
    json_t *j = NULL;
    if (value) {
        j = json_loadb(value, value_len, 0, NULL);
        const char *vname = json_string_value(json_object_get(j, "name"));
        hash = json_string_value(json_object_get(j, "hash"));
        const char *revoked = json_string_value(json_object_get(j, "revoked"));
        if (!vname || strcmp(vname, kname) != 0 || !hash || !hash_valid(hash) || !revoked) {
            json_decref(j);
            return ERR_INVALID;
        }
        live = revoked[0] == '\0';
    }
    int rc = 0;
    pthread_rwlock_wrlock(&ks->lock);
    if (!value) {
        forget(ks, kname, NULL); /* the name is gone */
    } else if (!live) {
        /* this key only: a newer key of the same name, read first, stays */
        forget(ks, kname, hash);
        if (!was_revoked(ks, hash))
            rc = remember_revoked(ks, hash);
    } else if (was_revoked(ks, hash)) {
        forget(ks, kname, hash); /* an older record of a revoked key: it stays revoked */
    } else {
        forget(ks, kname, NULL);
        rc = ks->n >= CAPTURE_KEYSET_MAX ? ERR_LIMIT : 0;
    }
    if (rc == 0 && live && !was_revoked(ks, hash)) {
        struct ks_entry *e = xcalloc(1, sizeof(*e));
        memcpy(e->name, kname, name_len + 1);
        memcpy(e->hash, hash, CAPTURE_KEY_HASH_LEN + 1);
        size_t bn = bucket_of(e->name), bh = bucket_of(e->hash);
        e->next_name = ks->by_name[bn];
        ks->by_name[bn] = e;
        e->next_hash = ks->by_hash[bh];
        ks->by_hash[bh] = e;
        ks->n++;
    }
    pthread_rwlock_unlock(&ks->lock);
    json_decref(j);
    return rc;
}

int capture_keyset_find(struct capture_keyset *ks, const char *hash, char *name_out, size_t cap)
{
    int rc = ERR_NOTFOUND;
    pthread_rwlock_rdlock(&ks->lock);
    for (struct ks_entry *e = ks->by_hash[bucket_of(hash)]; e; e = e->next_hash)
        if (strcmp(e->hash, hash) == 0) {
            snprintf(name_out, cap, "%s", e->name);
            rc = 0;
            break;
        }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

size_t capture_keyset_count(struct capture_keyset *ks)
{
    pthread_rwlock_rdlock(&ks->lock);
    size_t n = ks->n;
    pthread_rwlock_unlock(&ks->lock);
    return n;
}
