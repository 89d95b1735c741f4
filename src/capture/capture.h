/* capture.h - the event model: Segment and PostHog capture requests turned into canonical
 * event records, plus the message-id dedup set.
 *
 * No HTTP in here. capture_parse() is a pure function over the request body bytes and a few
 * request facts (Content-Encoding, the Basic-auth write key, the receive time); it inflates
 * gzip, parses the JSON once with jansson, validates every message per the Segment spec (or
 * PostHog's rules), and writes one canonical JSON object per event (the record that goes into
 * the event log). See docs/capture.md for the field mapping.
 *
 * Canonical record, keys always present, in this order (null when absent):
 *   {"messageId","type","event","userId","anonymousId","groupId","previousId","timestamp",
 *    "originalTimestamp","sentAt","receivedAt","properties","traits","context","source"}
 * type is track|identify|page|screen|group|alias; the four times are ISO 8601 UTC with
 * milliseconds; properties, traits and context are objects ({} when absent).
 *
 * Threads: capture_parse() and struct capture_result are touched by one thread at a time
 * (the request's). struct capture_dedup is shared by all threads (sharded leaf locks). */
#ifndef TANDEM_CAPTURE_CAPTURE_H
#define TANDEM_CAPTURE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Which endpoint the body arrived on. */
enum capture_api {
    CAPTURE_API_TRACK,    /* Segment /v1/track, /v1/t: one message of that type */
    CAPTURE_API_IDENTIFY, /* /v1/identify, /v1/i */
    CAPTURE_API_PAGE,     /* /v1/page, /v1/p */
    CAPTURE_API_SCREEN,   /* /v1/screen, /v1/s */
    CAPTURE_API_GROUP,    /* /v1/group, /v1/g */
    CAPTURE_API_ALIAS,    /* /v1/alias, /v1/a */
    CAPTURE_API_BATCH,    /* /v1/batch, /v1/b, /v1/import: {"batch":[...]} with typed items */
    CAPTURE_API_POSTHOG,  /* /batch/, /e/, /i/v0/e/, /capture/: array, batch or single event */
};

enum capture_type {
    CAPTURE_TRACK,
    CAPTURE_IDENTIFY,
    CAPTURE_PAGE,
    CAPTURE_SCREEN,
    CAPTURE_GROUP,
    CAPTURE_ALIAS,
};

/* "track", "identify", ... */
const char *capture_type_name(enum capture_type t);

struct capture_limits {
    size_t max_message; /* bytes of one canonical record; Segment: 32 KB */
    size_t max_body;    /* bytes of the body after inflation; Segment: 500 KB */
    size_t max_events;  /* events per request; Segment: 2,500 */
    size_t max_inflate; /* inflation stops here (413); default max_body + 64 KiB */
};

#define CAPTURE_MAX_MESSAGE_DEFAULT (32 * 1024)
#define CAPTURE_MAX_BODY_DEFAULT (500 * 1024)
#define CAPTURE_MAX_EVENTS_DEFAULT 2500
#define CAPTURE_INFLATE_MARGIN (64 * 1024)
#define CAPTURE_MAX_MESSAGE_ID 100 /* Segment: messageId is at most 100 characters */
/* How deep an event's properties, traits and context may nest (the object itself is level 1).
 * The one limit of both sides: capture refuses a deeper event with 400, and the loader
 * (pipeline/jscan.c) refuses deeper JSON, so nothing acknowledged is refused when loaded. */
#define CAPTURE_MAX_DEPTH 64

/* Segment's limits. */
void capture_limits_default(struct capture_limits *l);

struct capture_input {
    enum capture_api api;
    const void *body; /* borrowed; the raw request body */
    size_t body_len;
    const char *content_encoding; /* header value or NULL */
    const char *auth_key;         /* write key from HTTP Basic auth (user part) or NULL */
    const char *verified_user_id; /* user id of a valid tandem user token, or NULL */
    const char *client_ip;        /* the request's client address, or NULL (see docs) */
    int64_t received_us;          /* server receive time, us since the epoch */
    int64_t sent_at_us;           /* client send time from the query (PostHog `_`), 0 = none */
    /* Maps a write key to its source name, which the records carry as "source" so that no
     * secret ever reaches the log: 0 with the name copied into name_out (NUL-terminated),
     * ERR_NOTFOUND for an unknown or revoked key (the request gets 401). Called once per
     * distinct key. NULL: the key itself is the source (tests). */
    int (*resolve_key)(void *arg, const char *key, char *name_out, size_t name_cap);
    void *resolve_arg;
    const struct capture_limits *limits; /* NULL: capture_limits_default() */
    const struct capture_pii *pii;       /* personal data rules, or NULL for none */
};

/* One normalised event. Every pointer is borrowed from the capture_result that holds it. */
struct capture_event {
    enum capture_type type;
    const char *message_id; /* NUL-terminated, never empty */
    size_t message_id_len;
    const char *write_key; /* NUL-terminated, never empty */
    size_t write_key_len;
    const char *source; /* the key's name (the record's "source"); dedup scope */
    size_t source_len;
    const char *user_id;      /* NULL when absent; for routing by user */
    const char *anonymous_id; /* NULL when absent */
    int64_t timestamp_us;     /* skew-corrected */
    int64_t received_us;
    const char *record; /* the canonical JSON object (not NUL-terminated) */
    size_t record_len;
    bool duplicate; /* set by capture_dedup_filter() */
};

#define CAPTURE_ERRMSG_LEN 256

struct capture_result {
    /* 0 when events were produced; otherwise the HTTP status (400, 401 or 413) and a
     * PocketBase-style message naming the item and field, e.g.
     * "batch[3].event: required for track". */
    int status;
    char message[CAPTURE_ERRMSG_LEN];
    struct capture_event *events;
    size_t n_events;
    /* The distinct write keys the events claim (borrowed). The caller looks each one up and
     * answers 401 when one is unknown. */
    const char **write_keys;
    size_t n_write_keys;
    /* private */
    struct capture__state *st;
};

/* Parses, validates and normalises one request. Returns 0 when out->status tells the
 * outcome (success or a client error); a negative code when the request could not be handled
 * through no fault of the client: -ENOMEM when memory for a client-sized allocation ran out,
 * or the resolver's own error when a write key could not be looked up (the caller answers
 * 503 and acknowledges nothing). In every case call capture_result_release() afterwards.
 * The input is only borrowed during the call: the result owns everything it points to (the
 * parsed tree, the records, assigned ids, a copy of the Basic-auth key). */
int capture_parse(const struct capture_input *in, struct capture_result *out) MUST_USE;
void capture_result_release(struct capture_result *r);

/* Inflates gzip data (one or more members) into out (appending). -ERR_INVALID for data that
 * is not gzip or is truncated, -ERR_LIMIT when the output would exceed max_out bytes,
 * -ENOMEM. Exposed for tests. */
int capture_gunzip(const void *in, size_t in_len, size_t max_out, struct buf *out) MUST_USE;
/* True when the bytes start with the gzip magic 1f 8b. */
bool capture_is_gzip(const void *data, size_t len);

/* ---- personal data rules ---- */

/* What a rule does to the field it names (docs/governance.md). */
enum capture_pii_action {
    CAPTURE_PII_DROP,     /* removed from the record */
    CAPTURE_PII_HASH,     /* 32 hex characters of a keyed BLAKE2b-128 of its text */
    CAPTURE_PII_TRUNCATE, /* an IP address keeps its network (/24, /48), text its first
                           * `length` characters; other values are kept */
};

struct capture_pii;
struct json_t;

/* Compiles rules (a JSON array of {"field": "properties.email", "action": "drop|hash|truncate",
 * "length": N, "sources": ["web"]}, or NULL) plus, with with_defaults, the default rules;
 * key (any length) keys the hash. *out is NULL when there is no rule at all. ERR_INVALID with
 * one line in err naming the problem. */
int capture_pii_compile(const struct json_t *rules, bool with_defaults, const void *key,
                        size_t key_len, struct capture_pii **out, char *err,
                        size_t err_len) MUST_USE;
struct capture_pii *capture_pii_ref(struct capture_pii *p); /* NULL is fine */
void capture_pii_unref(struct capture_pii *p);              /* NULL is fine */

/* ---- dedup ---- */

/* A bounded, time-bucketed set of recent (write key, message id) pairs, keyed by a keyed
 * 64-bit hash (SipHash, random key per process). Entries are remembered for at least
 * window_us and at most window_us + window_us / n_buckets. When more than max_entries are
 * held, the oldest buckets are dropped first. Any thread; internally sharded with leaf
 * locks. Times are passed in by the caller (the request's receive time), so tests inject
 * their own clock. */
struct capture_dedup;

struct capture_dedup_cfg {
    int64_t window_us;  /* default 24 h */
    size_t n_buckets;   /* time buckets per window; default 24 */
    size_t max_entries; /* cap over all buckets; default 10,000,000 */
};

struct capture_dedup_stats {
    uint64_t checks;
    uint64_t hits;
    uint64_t evicted_buckets; /* buckets dropped early because of the cap */
    uint64_t entries;         /* currently held */
};

void capture_dedup_cfg_default(struct capture_dedup_cfg *c);
/* cfg NULL: defaults. Zero fields take their default too. */
struct capture_dedup *capture_dedup_new(const struct capture_dedup_cfg *cfg);
void capture_dedup_free(struct capture_dedup *d);
/* Checks and inserts in one step. Returns true when the pair was already seen within the
 * window (a duplicate; nothing changes), false when it is new (now remembered at now_us). */
bool capture_dedup_check_insert(struct capture_dedup *d, const char *write_key, size_t wk_len,
                                const char *message_id, size_t id_len, int64_t now_us);
/* Forgets a pair (when the log append of a new event failed, so a retry is not a dup). */
void capture_dedup_remove(struct capture_dedup *d, const char *write_key, size_t wk_len,
                          const char *message_id, size_t id_len);
/* Rebuild from the log tail at start: adds a pair seen at received_us. Pairs older than the
 * window relative to now_us are ignored. */
void capture_dedup_add(struct capture_dedup *d, const char *write_key, size_t wk_len,
                       const char *message_id, size_t id_len, int64_t received_us, int64_t now_us);
/* The same from a canonical record read back from the log (as capture_parse() wrote it):
 * takes its messageId, source and receivedAt, with a fast scan and a full parse only for
 * records the scan cannot read (escaped strings). ERR_INVALID when rec is not a record. */
int capture_dedup_add_record(struct capture_dedup *d, const char *rec, size_t len,
                             int64_t now_us) MUST_USE;
/* check_insert for a canonical record read back from a log: *dup tells whether its pair was
 * already seen (the Kafka mirror drops retries that reached different capture nodes).
 * ERR_INVALID (and *dup false) when rec is not a record. */
int capture_dedup_check_record(struct capture_dedup *d, const char *rec, size_t len, int64_t now_us,
                               bool *dup) MUST_USE;
/* Runs check_insert over a parsed request, setting events[i].duplicate (a repeat inside the
 * same request counts as a duplicate too). Returns how many are duplicates. */
size_t capture_dedup_filter(struct capture_dedup *d, struct capture_result *r, int64_t now_us);
/* Undoes capture_dedup_filter() for the non-duplicate events of r. */
void capture_dedup_unfilter(struct capture_dedup *d, const struct capture_result *r);
void capture_dedup_stats(struct capture_dedup *d, struct capture_dedup_stats *out);
/* Snapshot: the whole set as bytes, so a restart need not re-read the log. Appends to out the
 * caller's tag (opaque, at most 4096 bytes: where in the log the set stands), the hash key, the
 * window's shape and every live bucket, under a CRC32C. Each shard is copied under its own
 * lock, so a snapshot taken while checks run holds some of them and not others: the caller
 * makes that safe (api/capture.c). */
void capture_dedup_encode(struct capture_dedup *d, const void *tag, size_t tag_len,
                          struct buf *out);
/* Replaces the contents of d (which must be empty) with a snapshot made by a set of the same
 * window and bucket count, dropping buckets that have expired by now_us; on success *tag and
 * *tag_len point into data. ERR_INVALID (d untouched) when the bytes are damaged, truncated or
 * from another version or window. */
int capture_dedup_decode(struct capture_dedup *d, const void *data, size_t len, int64_t now_us,
                         const void **tag, size_t *tag_len) MUST_USE;
/* The tag of a snapshot whose checksum and header hold, without loading it; ERR_INVALID
 * otherwise. */
int capture_dedup_snapshot_tag(const void *data, size_t len, const void **tag,
                               size_t *tag_len) MUST_USE;

/* ---- write keys ---- */

#define CAPTURE_KEY_LEN 33       /* "tk_" + 30 characters */
#define CAPTURE_KEY_HASH_LEN 64  /* hex of BLAKE2b-256 */
#define CAPTURE_KEY_PREFIX_LEN 7 /* shown in listings to tell keys apart */
#define CAPTURE_KEY_NAME_MAX 64

/* Source names: [A-Za-z0-9_-]{1,64}. */
bool capture_key_name_valid(const char *name);
/* A new random key, its hash (what the store keeps) and its display prefix. */
void capture_key_new(char key_out[CAPTURE_KEY_LEN + 1], char hash_out[CAPTURE_KEY_HASH_LEN + 1],
                     char prefix_out[CAPTURE_KEY_PREFIX_LEN + 1]);
void capture_key_hash(const char *key, char hash_out[CAPTURE_KEY_HASH_LEN + 1]);

/* ---- write keys replicated to capture nodes (docs/scale-out.md, "Write keys") ----
 *
 * The primary publishes one record per key, keyed by the key's name, on a compacted topic:
 * {"name","hash","prefix","created","revoked"} (revoked "" while the key is live). Only the
 * hash travels: capture compares hashes, so no node but the one that made a key ever holds
 * it. A capture node applies the records in order to a capture_keyset and resolves keys
 * against it. */

/* The record of one key, a JSON text the caller frees; NULL for a name or hash that is not
 * valid. */
char *capture_key_record(const char *name, const char *hash, const char *prefix,
                         const char *created, const char *revoked);

#define CAPTURE_KEYSET_MAX 100000 /* live keys a capture node holds; more are ignored */

/* The live write keys a capture node knows: hash -> name. Shared by every HTTP thread (a
 * read-write lock inside); written by the thread that follows the key topic. */
struct capture_keyset;
struct capture_keyset *capture_keyset_new(void);
void capture_keyset_free(struct capture_keyset *ks);
/* Applies one record of the key topic (value NULL: a tombstone, the name is deleted). A key
 * revoked or deleted is forgotten at once. Revocation is final: a live record of a key whose
 * revoked record was read (an older one, read later from another partition) is ignored. ERR_INVALID
 * for a record that is not one of capture_key_record's (it changes nothing), ERR_LIMIT past
 * CAPTURE_KEYSET_MAX live keys. */
int capture_keyset_apply(struct capture_keyset *ks, const char *name, size_t name_len,
                         const void *value, size_t value_len) MUST_USE;
/* The name of the live key whose hash is hash into name_out; ERR_NOTFOUND when none. */
int capture_keyset_find(struct capture_keyset *ks, const char *hash, char *name_out,
                        size_t cap) MUST_USE;
size_t capture_keyset_count(struct capture_keyset *ks);

#endif
