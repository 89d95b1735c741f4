/* audit.h - the audit trail: a hash-chained sequence of entries in the event log's `audit`
 * topic (docs/governance.md "Audit trail").
 *
 * Every entry is a JSON object. audit_append adds three members: "seq" (0, 1, 2, ... in log
 * order), "prev" (the previous entry's hash; 64 zeros for the first) and "hash": SHA-256, in
 * lowercase hex, of the entry's canonical encoding, which is the entry without its "hash"
 * member as compact JSON with sorted keys and every non-ASCII character escaped (\uXXXX).
 * An edited entry no longer matches its hash; a removed or reordered one breaks the next
 * entry's "prev" or "seq". audit_verify walks a topic and names the first broken link.
 *
 * Threads: an audit handle may be used by any thread; appends are serialized by its lock,
 * which is held across the evlog append so that log order is chain order (the evlog append
 * only copies into the page cache; it never waits for a sync). */
#ifndef TANDEM_GOVERNANCE_AUDIT_H
#define TANDEM_GOVERNANCE_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

struct evlog;
struct audit;

#define AUDIT_TOPIC "audit"
#define AUDIT_HASH_HEX 64
/* Largest summary an entry carries, as compact JSON; a larger one is cut down (see
 * audit_summary). */
#define AUDIT_SUMMARY_MAX 4096

/* Opens the chain of log's audit topic: the next entry links to the topic's last record (the
 * chain survives restarts). A last record that is not an entry (damaged) is warned about and
 * linked to by the SHA-256 of its raw bytes, so verify reports the break there. */
int audit_open(struct evlog *log, struct audit **out) MUST_USE;
void audit_close(struct audit *a);

/* Appends entry (borrowed; its "seq", "prev" and "hash" are set on a copy) as the next link.
 * Returns 0 once it is in the log (not yet durable: the log's next group sync covers it), or
 * the evlog's error; a failed entry does not advance the chain. *offset_out (may be NULL)
 * gets its log offset. */
int audit_append(struct audit *a, const json_t *entry, uint64_t *offset_out) MUST_USE;
/* Entries appended and entries the log refused since open. */
void audit_counts(struct audit *a, uint64_t *appended_out, uint64_t *failed_out);

/* The hash of entry (its "hash" member, if any, is left out), as 64 hex characters + NUL.
 * ERR_INVALID when it cannot be encoded. */
int audit_hash(const json_t *entry, char out[AUDIT_HASH_HEX + 1]) MUST_USE;

/* A bounded copy of a request body for an entry's summary: members whose name suggests a
 * secret (password, secret, token, key, otp, ...) become "[redacted]" at any depth, strings
 * longer than 1,000 characters are cut (with "..."), objects keep 50 members, arrays 20 items,
 * nesting 6 levels; when the result is still over AUDIT_SUMMARY_MAX bytes only the top-level
 * member names are kept ({"truncated":true,"keys":[...]}). RETURNS a new value. */
json_t *audit_summary(const json_t *body);

/* Walks the audit topic of log from its first stored record to its end. 0 when every link
 * holds; ERR_CORRUPT at the first broken one (*bad_offset_out: its log offset), with the
 * reason in report; other negative codes when the log cannot be read. report gets one line
 * per finding and a last summary line. */
struct buf;
int audit_verify(struct evlog *log, struct buf *report, uint64_t *bad_offset_out) MUST_USE;

#endif
