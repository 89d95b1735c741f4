/* audit.c - the hash-chained audit trail in the event log (see audit.h). */
#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "evlog/evlog.h"
#include "governance/audit.h"

#define ENCODE_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(17))
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct audit {
    struct evlog *log;
    pthread_mutex_t mu; /* the chain: seq and prev; held across the evlog append */
    uint64_t seq;       /* of the next entry */
    char prev[AUDIT_HASH_HEX + 1];
    atomic_uint_fast64_t n_appended, n_failed;
};

/* SHA-256 fetched once: EVP_sha256() has OpenSSL 3 look the algorithm up on every digest,
 * which cost as much as the hashing of an entry */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    pthread_once(&sha256_once, sha256_fetch);
    const EVP_MD *alg = sha256_md ? sha256_md : EVP_sha256();
    if (EVP_Digest(data, len, md, &md_len, alg, NULL) != 1 || md_len != 32)
        PANIC("SHA-256 failed");
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[AUDIT_HASH_HEX] = '\0';
}

int audit_hash(const json_t *entry, char out[AUDIT_HASH_HEX + 1])
{
    if (!json_is_object(entry))
        return ERR_INVALID;
    json_t *copy = json_copy((json_t *)entry); /* shallow: only the hash member goes */
    json_object_del(copy, "hash");
    char *text = json_dumps(copy, ENCODE_FLAGS);
    json_decref(copy);
    if (!text)
        return ERR_INVALID;
    sha256_hex(text, strlen(text), out);
    free(text);
    return 0;
}

static bool is_hash(const char *s)
{
    if (!s || strlen(s) != AUDIT_HASH_HEX)
        return false;
    for (size_t i = 0; i < AUDIT_HASH_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The chain position after the record at offset: from its seq and hash, or, for a record
 * that is no entry, from its raw bytes. */
static void link_to(struct audit *a, const struct evlog_rec_view *v)
{
    json_t *doc = json_loadb((const char *)v->data, v->len, 0, NULL);
    const json_t *seq = json_object_get(doc, "seq");
    const char *hash = json_string_value(json_object_get(doc, "hash"));
    if (json_is_integer(seq) && json_integer_value(seq) >= 0 && is_hash(hash)) {
        a->seq = (uint64_t)json_integer_value(seq) + 1;
        memcpy(a->prev, hash, AUDIT_HASH_HEX + 1);
    } else {
        xlog_warn("the last audit entry (offset %llu) is damaged: the next entry links to its "
                  "raw bytes; tandem audit verify reports it",
                  (unsigned long long)v->offset);
        a->seq = v->offset + 1;
        sha256_hex(v->data, v->len, a->prev);
    }
    json_decref(doc);
}

int audit_open(struct evlog *log, struct audit **out)
{
    *out = NULL;
    struct audit *a = xcalloc(1, sizeof(*a));
    a->log = log;
    pthread_mutex_init(&a->mu, NULL);
    memcpy(a->prev, ZERO_HASH, AUDIT_HASH_HEX + 1);
    uint64_t end = 0;
    int rc = evlog_end_offset(log, AUDIT_TOPIC, &end);
    if (rc == 0 && end > 0) {
        struct evlog_batch b;
        evlog_batch_init(&b);
        rc = evlog_read(log, AUDIT_TOPIC, end - 1, 1, SIZE_MAX, &b);
        if (rc == 0 && b.n == 1)
            link_to(a, &b.recs[0]);
        else if (rc == 0)
            rc = ERR_CORRUPT;
        evlog_batch_release(&b);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void audit_close(struct audit *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int audit_append(struct audit *a, const json_t *entry, uint64_t *offset_out)
{
    if (!json_is_object(entry))
        return ERR_INVALID;
    json_t *e = json_copy((json_t *)entry); /* shallow: only top-level members change */
    json_object_del(e, "hash");
    char hash[AUDIT_HASH_HEX + 1];
    int rc = 0;
    char *text = NULL;
    uint64_t off = 0;
    pthread_mutex_lock(&a->mu);
    json_object_set_new(e, "seq", json_integer((json_int_t)a->seq));
    json_object_set_new(e, "prev", json_string(a->prev));
    /* the entry encoded once: its canonical text (what audit_hash hashes) is the record, with
     * the hash member added before the closing brace */
    char *canon = json_dumps(e, ENCODE_FLAGS);
    size_t n = canon ? strlen(canon) : 0;
    if (n < 2 || canon[n - 1] != '}') {
        rc = ERR_INVALID;
    } else {
        sha256_hex(canon, n, hash);
        static const char member[] = ",\"hash\":\"";
        text = xmalloc(n - 1 + sizeof(member) - 1 + AUDIT_HASH_HEX + 3);
        char *p = text;
        memcpy(p, canon, n - 1);
        p += n - 1;
        memcpy(p, member, sizeof(member) - 1);
        p += sizeof(member) - 1;
        memcpy(p, hash, AUDIT_HASH_HEX);
        p += AUDIT_HASH_HEX;
        memcpy(p, "\"}", 3);
    }
    free(canon);
    if (rc == 0) {
        struct evlog_rec rec = {text, strlen(text)};
        rc = evlog_append(a->log, AUDIT_TOPIC, &rec, 1, &off, NULL);
    }
    if (rc == 0) {
        a->seq++;
        memcpy(a->prev, hash, sizeof(hash));
    }
    pthread_mutex_unlock(&a->mu);
    free(text);
    json_decref(e);
    atomic_fetch_add_explicit(rc == 0 ? &a->n_appended : &a->n_failed, 1, memory_order_relaxed);
    if (rc == 0 && offset_out)
        *offset_out = off;
    return rc;
}

void audit_counts(struct audit *a, uint64_t *appended_out, uint64_t *failed_out)
{
    *appended_out = atomic_load_explicit(&a->n_appended, memory_order_relaxed);
    *failed_out = atomic_load_explicit(&a->n_failed, memory_order_relaxed);
}

/* ---- summaries ---- */

#define SUM_MAX_STRING 1000
#define SUM_MAX_MEMBERS 50
#define SUM_MAX_ITEMS 20
#define SUM_MAX_DEPTH 6

static bool secret_name(const char *name)
{
    static const char *const parts[] = {"password",    "secret",  "token",
                                        "apikey",      "api_key", "privatekey",
                                        "private_key", "otp",     "credential"};
    char low[64];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        n = sizeof(low) - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = '\0';
    if (strcmp(low, "key") == 0 || strcmp(low, "hash") == 0 || strcmp(low, "salt") == 0)
        return true;
    for (size_t i = 0; i < ARRAY_LEN(parts); i++)
        if (strstr(low, parts[i]))
            return true;
    return false;
}

static json_t *bounded(const json_t *v, int depth)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n <= SUM_MAX_STRING)
            return json_stringn(s, n);
        size_t cut = SUM_MAX_STRING;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--; /* not inside a UTF-8 sequence */
        json_t *out = json_stringn(s, cut);
        json_t *dots = json_sprintf("%s...", json_string_value(out));
        json_decref(out);
        return dots ? dots : json_string("...");
    }
    if (json_is_object(v)) {
        if (depth >= SUM_MAX_DEPTH)
            return json_string("{...}");
        json_t *out = json_object();
        const char *k;
        json_t *m;
        size_t i = 0;
        json_object_foreach((json_t *)v, k, m)
        {
            if (i++ == SUM_MAX_MEMBERS) {
                json_object_set_new(out, "...", json_string("more members"));
                break;
            }
            json_object_set_new(out, k,
                                secret_name(k) ? json_string("[redacted]") : bounded(m, depth + 1));
        }
        return out;
    }
    if (json_is_array(v)) {
        if (depth >= SUM_MAX_DEPTH)
            return json_string("[...]");
        json_t *out = json_array();
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i == SUM_MAX_ITEMS) {
                json_array_append_new(out, json_string("..."));
                break;
            }
            json_array_append_new(out, bounded(json_array_get(v, i), depth + 1));
        }
        return out;
    }
    return json_deep_copy(v); /* numbers, booleans, null */
}

json_t *audit_summary(const json_t *body)
{
    if (!body)
        return json_null();
    json_t *out = bounded(body, 0);
    char *text = json_dumps(out, ENCODE_FLAGS | JSON_ENCODE_ANY);
    size_t len = text ? strlen(text) : SIZE_MAX;
    free(text);
    if (len <= AUDIT_SUMMARY_MAX)
        return out;
    json_decref(out);
    json_t *keys = json_array();
    const char *k;
    json_t *m;
    size_t i = 0;
    if (json_is_object(body))
        json_object_foreach((json_t *)body, k, m)
        {
            if (i++ == SUM_MAX_MEMBERS)
                break;
            json_array_append_new(keys, json_stringn(k, strlen(k) > 100 ? 100 : strlen(k)));
        }
    return json_pack("{s:b,s:o}", "truncated", 1, "keys", keys);
}

/* ---- verification ---- */

/* Checks one record against the chain so far; fills why on a broken link. */
static bool check_link(const struct evlog_rec_view *v, bool first, uint64_t first_offset,
                       int64_t *seq_io, char prev_io[AUDIT_HASH_HEX + 1], char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)v->data, v->len, 0, &jerr);
    bool ok = false;
    if (!json_is_object(doc)) {
        snprintf(why, why_len, "not an audit entry (%s)", doc ? "not an object" : jerr.text);
        goto out;
    }
    const json_t *seq = json_object_get(doc, "seq");
    const char *prev = json_string_value(json_object_get(doc, "prev"));
    const char *hash = json_string_value(json_object_get(doc, "hash"));
    if (!json_is_integer(seq) || !is_hash(prev) || !is_hash(hash)) {
        snprintf(why, why_len, "not an audit entry (seq, prev or hash missing)");
        goto out;
    }
    char want[AUDIT_HASH_HEX + 1];
    if (audit_hash(doc, want) != 0 || strcmp(want, hash) != 0) {
        snprintf(why, why_len,
                 "the entry was changed: its content hashes to %.16s..., it says "
                 "%.16s...",
                 want, hash);
        goto out;
    }
    int64_t s = json_integer_value(seq);
    if (first && first_offset == 0 && (s != 0 || strcmp(prev, ZERO_HASH) != 0)) {
        snprintf(why, why_len,
                 "the first entry has seq %lld and a non-zero prev: entries "
                 "before it were removed",
                 (long long)s);
        goto out;
    }
    if (!first && strcmp(prev, prev_io) != 0) {
        snprintf(why, why_len,
                 "prev %.16s... is not the hash of the entry before (%.16s...): an "
                 "entry was removed, inserted or moved",
                 prev, prev_io);
        goto out;
    }
    if (!first && s != *seq_io + 1) {
        snprintf(why, why_len, "seq %lld follows seq %lld", (long long)s, (long long)*seq_io);
        goto out;
    }
    *seq_io = s;
    memcpy(prev_io, hash, AUDIT_HASH_HEX + 1);
    ok = true;
out:
    json_decref(doc);
    return ok;
}

int audit_verify(struct evlog *log, struct buf *report, uint64_t *bad_offset_out)
{
    uint64_t start = 0, end = 0, at;
    int rc = evlog_start_offset(log, AUDIT_TOPIC, &start);
    if (rc == 0)
        rc = evlog_end_offset(log, AUDIT_TOPIC, &end);
    if (rc != 0) {
        buf_printf(report, "cannot read the audit topic: %s\n", evlog_errmsg(log));
        return rc;
    }
    if (start > 0)
        buf_printf(report,
                   "entries 0..%llu were deleted by the log's retention; the chain is "
                   "checked from offset %llu\n",
                   (unsigned long long)start - 1, (unsigned long long)start);
    struct evlog_batch b;
    evlog_batch_init(&b);
    int64_t seq = -1;
    char prev[AUDIT_HASH_HEX + 1] = ZERO_HASH;
    char why[300];
    uint64_t n = 0;
    at = start;
    while (rc == 0 && at < end) {
        rc = evlog_read(log, AUDIT_TOPIC, at, 1000, 16u << 20, &b);
        if (rc != 0) {
            buf_printf(report, "audit chain broken at offset %llu: the log cannot be read: %s\n",
                       (unsigned long long)at, evlog_errmsg(log));
            *bad_offset_out = at;
            rc = rc == ERR_CORRUPT ? ERR_CORRUPT : rc;
            break;
        }
        if (b.n == 0)
            break;
        for (size_t i = 0; i < b.n; i++) {
            const struct evlog_rec_view *v = &b.recs[i];
            if (!check_link(v, n == 0, start, &seq, prev, why, sizeof(why))) {
                buf_printf(report, "audit chain broken at offset %llu: %s\n",
                           (unsigned long long)v->offset, why);
                *bad_offset_out = v->offset;
                rc = ERR_CORRUPT;
                break;
            }
            n++;
        }
        at = b.next_offset;
    }
    evlog_batch_release(&b);
    if (rc == 0)
        buf_printf(report, "audit chain ok: %llu entries%s%s\n", (unsigned long long)n,
                   n ? ", last hash " : "", n ? prev : "");
    return rc;
}
