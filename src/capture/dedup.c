/* dedup.c - bounded, time-bucketed set of recent (write key, message id) pairs.
 *
 * A pair is reduced to a 64-bit keyed hash (SipHash-2-4 through libsodium's crypto_shorthash,
 * with a random key per process, so clients cannot aim collisions at other sources' ids).
 * The hash picks one of DD_SHARDS shards, each with its own mutex (a leaf lock: nothing is
 * called while it is held). A shard keeps a ring of n_buckets + 1 time buckets, each an
 * open-addressing set of hashes (linear probing, 0 = empty). A check probes every live
 * bucket (a constant number), an insert goes into the bucket of the current time, expiry
 * drops whole buckets, and the size cap drops the oldest buckets first. */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#include "capture/capture.h"

#define DD_SHARDS 16
#define DD_MIN_SET 64

struct dd_bucket {
    int64_t epoch; /* time / width */
    uint64_t *slots;
    size_t cap; /* power of two, 0 when empty */
    size_t n;
};

struct dd_shard {
    pthread_mutex_t mu;
    struct dd_bucket *ring; /* n_ring buckets */
    size_t n_entries;
    char pad[64];
};

struct capture_dedup {
    int64_t width_us; /* one bucket's span */
    int64_t n_buckets;
    size_t n_ring; /* n_buckets + 1 */
    size_t cap_per_shard;
    unsigned char key[crypto_shorthash_KEYBYTES];
    atomic_uint_fast64_t checks, hits, evicted;
    struct dd_shard shards[DD_SHARDS];
};

void capture_dedup_cfg_default(struct capture_dedup_cfg *c)
{
    c->window_us = 24LL * 3600 * 1000000;
    c->n_buckets = 24;
    c->max_entries = 10000000;
}

struct capture_dedup *capture_dedup_new(const struct capture_dedup_cfg *cfg)
{
    struct capture_dedup_cfg c;
    capture_dedup_cfg_default(&c);
    if (cfg) {
        if (cfg->window_us > 0)
            c.window_us = cfg->window_us;
        if (cfg->n_buckets > 0)
            c.n_buckets = cfg->n_buckets;
        if (cfg->max_entries > 0)
            c.max_entries = cfg->max_entries;
    }
    if (c.n_buckets > 1024)
        c.n_buckets = 1024;
    struct capture_dedup *d = xcalloc(1, sizeof(*d));
    d->n_buckets = (int64_t)c.n_buckets;
    d->width_us = c.window_us / d->n_buckets;
    if (d->width_us < 1)
        d->width_us = 1;
    d->n_ring = c.n_buckets + 1;
    d->cap_per_shard = (c.max_entries + DD_SHARDS - 1) / DD_SHARDS;
    rand_bytes(d->key, sizeof(d->key));
    for (size_t i = 0; i < DD_SHARDS; i++) {
        pthread_mutex_init(&d->shards[i].mu, NULL);
        d->shards[i].ring = xcalloc(d->n_ring, sizeof(struct dd_bucket));
        for (size_t k = 0; k < d->n_ring; k++)
            d->shards[i].ring[k].epoch = INT64_MIN;
    }
    return d;
}

void capture_dedup_free(struct capture_dedup *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < DD_SHARDS; i++) {
        for (size_t k = 0; k < d->n_ring; k++)
            free(d->shards[i].ring[k].slots);
        free(d->shards[i].ring);
        pthread_mutex_destroy(&d->shards[i].mu);
    }
    free(d);
}

static uint64_t pair_hash(const struct capture_dedup *d, const char *wk, size_t wk_len,
                          const char *id, size_t id_len)
{
    unsigned char out[crypto_shorthash_BYTES];
    unsigned char tmp[512];
    if (wk_len + 1 + id_len <= sizeof(tmp)) {
        memcpy(tmp, wk, wk_len);
        tmp[wk_len] = 0; /* write keys and ids hold no NUL, so the split is unambiguous */
        memcpy(tmp + wk_len + 1, id, id_len);
        crypto_shorthash(out, tmp, wk_len + 1 + id_len, d->key);
    } else {
        /* long inputs: hash the write key first, then (hash, id) */
        crypto_shorthash(tmp, (const unsigned char *)wk, wk_len, d->key);
        size_t n = id_len < sizeof(tmp) - 9 ? id_len : sizeof(tmp) - 9;
        tmp[8] = 1;
        memcpy(tmp + 9, id, n);
        crypto_shorthash(out, tmp, 9 + n, d->key);
    }
    uint64_t h = le_get64(out);
    return h ? h : 1;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static size_t ring_index(const struct capture_dedup *d, int64_t epoch)
{
    int64_t m = epoch % (int64_t)d->n_ring;
    return (size_t)(m < 0 ? m + (int64_t)d->n_ring : m);
}

static void bucket_clear(struct dd_shard *s, struct dd_bucket *b)
{
    s->n_entries -= b->n;
    free(b->slots);
    b->slots = NULL;
    b->cap = 0;
    b->n = 0;
}

static bool set_contains(const struct dd_bucket *b, uint64_t h)
{
    if (b->n == 0)
        return false;
    size_t mask = b->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (b->slots[i] == h)
            return true;
        if (b->slots[i] == 0)
            return false;
    }
}

static void set_put(uint64_t *slots, size_t cap, uint64_t h)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = h;
}

/* Grows b's table so that n more hashes keep it at most 3/4 full. */
static void set_reserve(struct dd_bucket *b, size_t more)
{
    size_t cap = b->cap ? b->cap : DD_MIN_SET;
    while ((b->n + more) * 4 > cap * 3)
        cap *= 2;
    if (cap == b->cap)
        return;
    uint64_t *slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < b->cap; i++)
        if (b->slots[i])
            set_put(slots, cap, b->slots[i]);
    free(b->slots);
    b->slots = slots;
    b->cap = cap;
}

static void set_insert(struct dd_bucket *b, uint64_t h)
{
    set_reserve(b, 1);
    set_put(b->slots, b->cap, h);
    b->n++;
}

/* Linear-probing delete with backward shift, so no tombstones are needed. */
static bool set_remove(struct dd_bucket *b, uint64_t h)
{
    if (b->n == 0)
        return false;
    size_t mask = b->cap - 1;
    size_t i = h & mask;
    while (b->slots[i] != h) {
        if (b->slots[i] == 0)
            return false;
        i = (i + 1) & mask;
    }
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (b->slots[j] == 0)
            break;
        size_t home = b->slots[j] & mask;
        /* move slots[j] into the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            b->slots[i] = b->slots[j];
            i = j;
        }
    }
    b->slots[i] = 0;
    b->n--;
    return true;
}

/* Drops expired buckets and says whether h is in a live one. Shard locked. */
static bool shard_contains(struct capture_dedup *d, struct dd_shard *s, uint64_t h,
                           int64_t now_epoch)
{
    bool found = false;
    for (size_t k = 0; k < d->n_ring; k++) {
        struct dd_bucket *b = &s->ring[k];
        if (b->n == 0)
            continue;
        if (b->epoch < now_epoch - d->n_buckets) {
            bucket_clear(s, b);
            continue;
        }
        if (!found && set_contains(b, h))
            found = true;
    }
    return found;
}

/* Inserts h into the bucket of epoch, making room under the cap. Shard locked. */
static void shard_insert(struct capture_dedup *d, struct dd_shard *s, uint64_t h, int64_t epoch)
{
    struct dd_bucket *cur = &s->ring[ring_index(d, epoch)];
    if (cur->epoch != epoch) {
        if (cur->n)
            bucket_clear(s, cur);
        cur->epoch = epoch;
    }
    while (s->n_entries >= d->cap_per_shard) {
        struct dd_bucket *oldest = NULL;
        for (size_t k = 0; k < d->n_ring; k++) {
            struct dd_bucket *b = &s->ring[k];
            if (b != cur && b->n > 0 && (!oldest || b->epoch < oldest->epoch))
                oldest = b;
        }
        if (!oldest)
            oldest = cur; /* the current bucket alone holds the cap: start it over */
        bucket_clear(s, oldest);
        atomic_fetch_add_explicit(&d->evicted, 1, memory_order_relaxed);
    }
    set_insert(cur, h);
    s->n_entries++;
}

static bool check_insert_hash(struct capture_dedup *d, uint64_t h, int64_t epoch)
{
    struct dd_shard *s = &d->shards[h >> 60];
    atomic_fetch_add_explicit(&d->checks, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->mu);
    bool dup = shard_contains(d, s, h, epoch);
    if (!dup)
        shard_insert(d, s, h, epoch);
    pthread_mutex_unlock(&s->mu);
    if (dup)
        atomic_fetch_add_explicit(&d->hits, 1, memory_order_relaxed);
    return dup;
}

bool capture_dedup_check_insert(struct capture_dedup *d, const char *write_key, size_t wk_len,
                                const char *message_id, size_t id_len, int64_t now_us)
{
    uint64_t h = pair_hash(d, write_key, wk_len, message_id, id_len);
    return check_insert_hash(d, h, floor_div(now_us, d->width_us));
}

/* Asks the CPU to load the slots where h would sit in each live bucket. The tables are large
 * and probed at random, so each check is a cache miss; issuing a group's loads together
 * lets them overlap instead of waiting one after another. Only a hint: nothing is read. */
static void prefetch_hash(struct capture_dedup *d, uint64_t h)
{
    struct dd_shard *s = &d->shards[h >> 60];
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < d->n_ring; k++) {
        const struct dd_bucket *b = &s->ring[k];
        if (b->n)
            __builtin_prefetch(&b->slots[h & (b->cap - 1)]);
    }
    pthread_mutex_unlock(&s->mu);
}

void capture_dedup_remove(struct capture_dedup *d, const char *write_key, size_t wk_len,
                          const char *message_id, size_t id_len)
{
    uint64_t h = pair_hash(d, write_key, wk_len, message_id, id_len);
    struct dd_shard *s = &d->shards[h >> 60];
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < d->n_ring; k++) {
        if (set_remove(&s->ring[k], h)) {
            s->n_entries--;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void capture_dedup_add(struct capture_dedup *d, const char *write_key, size_t wk_len,
                       const char *message_id, size_t id_len, int64_t received_us, int64_t now_us)
{
    int64_t now_epoch = floor_div(now_us, d->width_us);
    int64_t epoch = floor_div(received_us, d->width_us);
    if (epoch < now_epoch - d->n_buckets)
        return; /* older than the window */
    if (epoch > now_epoch)
        epoch = now_epoch;
    uint64_t h = pair_hash(d, write_key, wk_len, message_id, id_len);
    struct dd_shard *s = &d->shards[h >> 60];
    pthread_mutex_lock(&s->mu);
    if (!shard_contains(d, s, h, now_epoch)) {
        struct dd_bucket *b = &s->ring[ring_index(d, epoch)];
        /* a slot holding a newer epoch than this pair's cannot take it: skip the pair */
        if (!(b->n > 0 && b->epoch > epoch))
            shard_insert(d, s, h, epoch);
    }
    pthread_mutex_unlock(&s->mu);
}

#define DD_GROUP 16 /* hashes prefetched together */

size_t capture_dedup_filter(struct capture_dedup *d, struct capture_result *r, int64_t now_us)
{
    size_t n_dup = 0;
    int64_t epoch = floor_div(now_us, d->width_us);
    uint64_t h[DD_GROUP];
    for (size_t base = 0; base < r->n_events; base += DD_GROUP) {
        size_t n = r->n_events - base < DD_GROUP ? r->n_events - base : DD_GROUP;
        for (size_t j = 0; j < n; j++) {
            const struct capture_event *e = &r->events[base + j];
            h[j] = pair_hash(d, e->source, e->source_len, e->message_id, e->message_id_len);
            prefetch_hash(d, h[j]);
        }
        for (size_t j = 0; j < n; j++) {
            struct capture_event *e = &r->events[base + j];
            e->duplicate = check_insert_hash(d, h[j], epoch);
            n_dup += e->duplicate;
        }
    }
    return n_dup;
}

void capture_dedup_unfilter(struct capture_dedup *d, const struct capture_result *r)
{
    for (size_t i = 0; i < r->n_events; i++) {
        const struct capture_event *e = &r->events[i];
        if (!e->duplicate)
            capture_dedup_remove(d, e->source, e->source_len, e->message_id, e->message_id_len);
    }
}

void capture_dedup_stats(struct capture_dedup *d, struct capture_dedup_stats *out)
{
    out->checks = atomic_load_explicit(&d->checks, memory_order_relaxed);
    out->hits = atomic_load_explicit(&d->hits, memory_order_relaxed);
    out->evicted_buckets = atomic_load_explicit(&d->evicted, memory_order_relaxed);
    out->entries = 0;
    for (size_t i = 0; i < DD_SHARDS; i++) {
        pthread_mutex_lock(&d->shards[i].mu);
        out->entries += d->shards[i].n_entries;
        pthread_mutex_unlock(&d->shards[i].mu);
    }
}

/* ---- snapshot ----
 *
 * Little-endian: "TDDS" | u32 version | u32 tag_len | tag | key[16] | i64 width_us |
 * i64 n_buckets | per shard (DD_SHARDS): u32 live buckets, then per bucket i64 epoch, u64 n,
 * n x u64 hash | u32 CRC32C of everything before it. */

#define DD_SNAP_MAGIC "TDDS"
#define DD_SNAP_VERSION 1
#define DD_SNAP_TAG_MAX 4096

static void put32(struct buf *b, uint32_t v)
{
    uint8_t x[4];
    le_put32(x, v);
    buf_append(b, x, 4);
}

static void put64(struct buf *b, uint64_t v)
{
    uint8_t x[8];
    le_put64(x, v);
    buf_append(b, x, 8);
}

void capture_dedup_encode(struct capture_dedup *d, const void *tag, size_t tag_len, struct buf *out)
{
    size_t start = out->len;
    if (tag_len > DD_SNAP_TAG_MAX)
        tag_len = DD_SNAP_TAG_MAX;
    buf_append(out, DD_SNAP_MAGIC, 4);
    put32(out, DD_SNAP_VERSION);
    put32(out, (uint32_t)tag_len);
    buf_append(out, tag, tag_len);
    buf_append(out, d->key, sizeof(d->key));
    put64(out, (uint64_t)d->width_us);
    put64(out, (uint64_t)d->n_buckets);
    for (size_t i = 0; i < DD_SHARDS; i++) {
        struct dd_shard *s = &d->shards[i];
        pthread_mutex_lock(&s->mu);
        uint32_t live = 0;
        for (size_t k = 0; k < d->n_ring; k++)
            live += s->ring[k].n > 0;
        buf_reserve(out, 4 + (size_t)live * 16 + s->n_entries * 8);
        put32(out, live);
        for (size_t k = 0; k < d->n_ring; k++) {
            const struct dd_bucket *b = &s->ring[k];
            if (b->n == 0)
                continue;
            put64(out, (uint64_t)b->epoch);
            put64(out, b->n);
            for (size_t j = 0; j < b->cap; j++)
                if (b->slots[j])
                    put64(out, b->slots[j]);
        }
        pthread_mutex_unlock(&s->mu);
    }
    put32(out, crc32c(0, out->ptr + start, out->len - start));
}

/* A reader over the snapshot's bytes; every take fails once the bytes run out. */
struct rd {
    const uint8_t *p, *end;
};

static bool take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static bool take64(struct rd *r, uint64_t *v)
{
    const uint8_t *x;
    if (!take(r, 8, &x))
        return false;
    *v = le_get64(x);
    return true;
}

static bool take32(struct rd *r, uint32_t *v)
{
    const uint8_t *x;
    if (!take(r, 4, &x))
        return false;
    *v = le_get32(x);
    return true;
}

/* Walks the shards' sections; with load, inserts the live buckets' hashes into d. */
static bool snap_walk(struct capture_dedup *d, struct rd *r, bool load, int64_t now_epoch)
{
    for (size_t i = 0; i < DD_SHARDS; i++) {
        uint32_t live;
        if (!take32(r, &live) || live > d->n_ring)
            return false;
        struct dd_shard *s = &d->shards[i];
        for (uint32_t k = 0; k < live; k++) {
            uint64_t epoch, n;
            const uint8_t *h;
            if (!take64(r, &epoch) || !take64(r, &n) || n > (uint64_t)(r->end - r->p) / 8 ||
                !take(r, (size_t)n * 8, &h))
                return false;
            int64_t e = (int64_t)epoch;
            if (e > now_epoch)
                e = now_epoch; /* written by a clock that has since gone back: keep it */
            bool keep = load && e >= now_epoch - d->n_buckets;
            /* The hashes come in the order of the writer's table, i.e. sorted by their low
             * bits: put into a smaller table as it grows, they would pile up in runs and make
             * linear probing quadratic. Sized for all of them first, each lands at or near
             * its own slot. */
            if (keep) {
                struct dd_bucket *b = &s->ring[ring_index(d, e)];
                if (b->epoch != e) { /* as shard_insert would: the slot starts over */
                    if (b->n)
                        bucket_clear(s, b);
                    b->epoch = e;
                }
                set_reserve(b, (size_t)n);
            }
            for (uint64_t j = 0; j < n; j++) {
                uint64_t x = le_get64(h + j * 8);
                if (x == 0 || (x >> 60) != i)
                    return false;
                if (keep)
                    shard_insert(d, s, x, e);
            }
        }
    }
    return true;
}

/* Checks the checksum and reads the header up to the window's shape. */
static bool snap_header(struct rd *r, const uint8_t *p, size_t len, const uint8_t **tag,
                        uint32_t *tag_len, const uint8_t **key, uint64_t *width, uint64_t *nb)
{
    const uint8_t *x;
    uint32_t version;
    if (len < 8 || le_get32(p + len - 4) != crc32c(0, p, len - 4))
        return false;
    *r = (struct rd){p, p + len - 4};
    return take(r, 4, &x) && memcmp(x, DD_SNAP_MAGIC, 4) == 0 && take32(r, &version) &&
           version == DD_SNAP_VERSION && take32(r, tag_len) && *tag_len <= DD_SNAP_TAG_MAX &&
           take(r, *tag_len, tag) && take(r, crypto_shorthash_KEYBYTES, key) && take64(r, width) &&
           take64(r, nb);
}

int capture_dedup_snapshot_tag(const void *data, size_t len, const void **tag, size_t *tag_len)
{
    struct rd r;
    const uint8_t *t, *key;
    uint32_t tl;
    uint64_t width, nb;
    if (!snap_header(&r, data, len, &t, &tl, &key, &width, &nb))
        return ERR_INVALID;
    *tag = t;
    *tag_len = tl;
    return 0;
}

int capture_dedup_decode(struct capture_dedup *d, const void *data, size_t len, int64_t now_us,
                         const void **tag, size_t *tag_len)
{
    struct rd r;
    const uint8_t *t, *key;
    uint32_t tl;
    uint64_t width, nb;
    if (!snap_header(&r, data, len, &t, &tl, &key, &width, &nb) || (int64_t)width != d->width_us ||
        (int64_t)nb != d->n_buckets)
        return ERR_INVALID;
    /* a dry walk first, so damaged bytes never leave d half loaded */
    struct rd body = r;
    if (!snap_walk(d, &r, false, 0) || r.p != r.end)
        return ERR_INVALID;
    struct capture_dedup_stats st;
    capture_dedup_stats(d, &st);
    if (st.entries != 0)
        return ERR_INVALID; /* its hashes were made with another key */
    memcpy(d->key, key, sizeof(d->key));
    int64_t now_epoch = floor_div(now_us, d->width_us);
    for (size_t i = 0; i < DD_SHARDS; i++)
        pthread_mutex_lock(&d->shards[i].mu);
    bool ok = snap_walk(d, &body, true, now_epoch);
    for (size_t i = 0; i < DD_SHARDS; i++)
        pthread_mutex_unlock(&d->shards[i].mu);
    if (!ok)
        return ERR_INVALID; /* cannot happen after the dry walk; kept for the reader */
    *tag = t;
    *tag_len = tl;
    return 0;
}

/* ---- rebuilding from canonical records ---- */

/* The JSON string starting at p (just after its opening quote): its length up to the closing
 * quote, or -1 when it holds an escape (then the slow path decodes it) or is unterminated. */
static long plain_string(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (*q == '"')
            return q - p;
        if (*q == '\\')
            return -1;
    }
    return -1;
}

static const char *find_last(const char *hay, size_t len, const char *needle, size_t n)
{
    if (len < n)
        return NULL;
    for (size_t i = len - n + 1; i-- > 0;)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static const char *find_first(const char *hay, size_t len, const char *needle, size_t n)
{
    return memmem(hay, len, needle, n);
}

/* Adds the pair (or, with dup set, checks and inserts it, telling in *dup whether it was seen). */
static void record_pair(struct capture_dedup *d, const char *wk, size_t wk_len, const char *id,
                        size_t id_len, int64_t received_us, int64_t now_us, bool *dup)
{
    if (dup)
        *dup = capture_dedup_check_insert(d, wk, wk_len, id, id_len, now_us);
    else
        capture_dedup_add(d, wk, wk_len, id, id_len, received_us, now_us);
}

static int add_record_slow(struct capture_dedup *d, const char *rec, size_t len, int64_t now_us,
                           bool *dup)
{
    json_t *j = json_loadb(rec, len, 0, NULL);
    if (!j)
        return ERR_INVALID;
    json_t *id = json_object_get(j, "messageId");
    json_t *wk = json_object_get(j, "source");
    json_t *ra = json_object_get(j, "receivedAt");
    int64_t us;
    int rc = ERR_INVALID;
    if (json_is_string(id) && json_is_string(wk) && json_is_string(ra) &&
        time_parse(json_string_value(ra), json_string_length(ra), &us) == 0) {
        record_pair(d, json_string_value(wk), json_string_length(wk), json_string_value(id),
                    json_string_length(id), us, now_us, dup);
        rc = 0;
    }
    json_decref(j);
    return rc;
}

static int apply_record(struct capture_dedup *d, const char *rec, size_t len, int64_t now_us,
                        bool *dup)
{
    /* A canonical record starts with messageId, has receivedAt before any object and ends
     * with source: an unescaped quote cannot occur inside a JSON string, so the first
     * ',"receivedAt":"' and the last ',"source":"' are the record's own keys. */
    static const char k_id[] = "{\"messageId\":\"";
    static const char k_ra[] = ",\"receivedAt\":\"";
    static const char k_wk[] = ",\"source\":\"";
    const char *end = rec + len;
    if (len < sizeof(k_id) || memcmp(rec, k_id, sizeof(k_id) - 1) != 0)
        return add_record_slow(d, rec, len, now_us, dup);
    const char *id = rec + sizeof(k_id) - 1;
    long id_len = plain_string(id, end);
    const char *ra = find_first(rec, len, k_ra, sizeof(k_ra) - 1);
    const char *wk = find_last(rec, len, k_wk, sizeof(k_wk) - 1);
    if (id_len <= 0 || !ra || !wk)
        return add_record_slow(d, rec, len, now_us, dup);
    ra += sizeof(k_ra) - 1;
    wk += sizeof(k_wk) - 1;
    long ra_len = plain_string(ra, end);
    long wk_len = plain_string(wk, end);
    int64_t us;
    if (ra_len <= 0 || wk_len <= 0 || wk + wk_len + 2 != end || wk[wk_len + 1] != '}' ||
        time_parse(ra, (size_t)ra_len, &us) < 0)
        return add_record_slow(d, rec, len, now_us, dup);
    record_pair(d, wk, (size_t)wk_len, id, (size_t)id_len, us, now_us, dup);
    return 0;
}

int capture_dedup_add_record(struct capture_dedup *d, const char *rec, size_t len, int64_t now_us)
{
    return apply_record(d, rec, len, now_us, NULL);
}

int capture_dedup_check_record(struct capture_dedup *d, const char *rec, size_t len, int64_t now_us,
                               bool *dup)
{
    *dup = false;
    return apply_record(d, rec, len, now_us, dup);
}
