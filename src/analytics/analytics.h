/* analytics.h - product insights (trends, funnels, retention, stickiness, lifecycle) over the
 * warehouse's `events` table. docs/analytics.md is the definition of every request member,
 * response member and semantic.
 *
 * A query is a JSON object. analytics_run validates it (naming the bad member by its path,
 * e.g. "series.0.math"), turns its dates into UTC instants in the query's time zone (two small
 * warehouse queries check the zone and read its clock changes from the engine's ICU data;
 * none for UTC), compiles the
 * insight to ONE warehouse SQL statement whose every client value is a bound parameter, runs
 * it through wh_query and shapes the aggregated rows into the response. No event is looked at
 * row by row in C.
 *
 * Threads: analytics_run may be called from any thread with a warehouse connection owned by
 * that thread. It keeps no state between calls. It knows nothing of HTTP. */
#ifndef TANDEM_ANALYTICS_ANALYTICS_H
#define TANDEM_ANALYTICS_ANALYTICS_H

#include <jansson.h>
#include <stdint.h>

#include "core/core.h"

struct wh_conn;

enum analytics_kind {
    ANALYTICS_TRENDS,
    ANALYTICS_FUNNEL,
    ANALYTICS_RETENTION,
    ANALYTICS_STICKINESS,
    ANALYTICS_LIFECYCLE,
};

/* The insight named name ("trends", "funnel", "retention", "stickiness", "lifecycle");
 * ERR_NOTFOUND for any other name. */
int analytics_kind_parse(const char *name, enum analytics_kind *out) MUST_USE;

struct analytics_out {
    json_t *result;    /* on 0: the response body (owned by the caller) */
    json_t *errors;    /* on ERR_INVALID: {"path":{"code":..,"message":..}} (owned by the caller) */
    char message[512]; /* on any failure: what went wrong, for the log or the reply */
};

/* Runs one insight query against c. now_us anchors relative dates ("-7d", "now").
 * Returns 0 (out->result set); ERR_INVALID when the query is bad (out->errors names the
 * members); ERR_BUSY when the warehouse statement ran past its timeout; another code when the
 * warehouse failed (out->message says why). Borrows query. */
int analytics_run(struct wh_conn *c, enum analytics_kind kind, const json_t *query, int64_t now_us,
                  struct analytics_out *out) MUST_USE;

/* Frees what analytics_run left in out (safe on a zeroed or already released out). */
void analytics_out_release(struct analytics_out *out);

#endif
