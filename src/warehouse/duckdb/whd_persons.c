/* whd_persons.c - the identity links of docs/analytics.md, kept up to date incrementally so an
 * insight never has to rebuild them from every event.
 *
 * _person_links (did, person, timestamp, log_offset): for each distinct id that links to a
 * user, the earliest link (by timestamp, then log_offset) among the events loaded so far;
 * _did_first (did, timestamp): each distinct id's earliest event (a person's first seen time
 * is the minimum over its ids); _persons_state (next_offset): every event with a lower
 * log_offset is reflected in both. A refresh reads only the events loaded since (log_offset
 * ranges skip whole row groups), in one transaction, so the tables always describe a prefix of
 * the log. Refreshes are serialized within the process. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "warehouse/duckdb/whd_int.h"

static pthread_mutex_t refresh_mu = PTHREAD_MUTEX_INITIALIZER;

static int query_u64x2(struct whd_conn *c, const char *sql, uint64_t *a, uint64_t *b)
{
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, "cannot read the persons state");
    *a = duckdb_value_uint64(&res, 0, 0);
    *b = duckdb_value_uint64(&res, 1, 0);
    duckdb_destroy_result(&res);
    return 0;
}

int whd__persons_refresh(struct wh_conn *wc, uint64_t *next_out)
{
    struct whd_conn *c = whd__conn(wc);
    uint64_t next = 0, hi = 0;
    char sql[4096];
    int rc;
    pthread_mutex_lock(&refresh_mu);
    if ((rc = whd__begin(c)) < 0)
        goto out;
    if ((rc = whd__exec(c, "CREATE TABLE IF NOT EXISTS _person_links (did VARCHAR, person VARCHAR, "
                           "\"timestamp\" TIMESTAMP, log_offset UBIGINT)")) < 0 ||
        (rc = whd__exec(c, "CREATE TABLE IF NOT EXISTS _did_first (did VARCHAR, \"timestamp\" "
                           "TIMESTAMP)")) < 0 ||
        (rc = whd__exec(c, "CREATE TABLE IF NOT EXISTS _persons_state (next_offset UBIGINT)")) < 0)
        goto fail;
    if ((rc = query_u64x2(c,
                          "SELECT coalesce((SELECT max(next_offset) FROM _persons_state), 0), "
                          "coalesce((SELECT max(log_offset) + 1 FROM events), 0)",
                          &next, &hi)) < 0)
        goto fail;
    if (hi <= next) {
        whd__rollback(c);
        hi = next;
        goto out;
    }
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TEMP TABLE _pl_delta AS "
             "WITH cand AS (SELECT anonymous_id AS did, user_id AS person, \"timestamp\" AS ts, "
             "log_offset AS lo FROM events WHERE log_offset >= %" PRIu64
             " AND log_offset < %" PRIu64
             " AND user_id IS NOT NULL AND anonymous_id IS NOT NULL AND anonymous_id <> user_id "
             "UNION ALL SELECT previous_id, user_id, \"timestamp\", log_offset FROM events "
             "WHERE log_offset >= %" PRIu64 " AND log_offset < %" PRIu64 " AND type = 'alias' AND "
             "previous_id IS NOT NULL AND user_id IS NOT NULL AND previous_id <> user_id) "
             "SELECT did, arg_min(person, (ts, lo)) AS person, min(ts) AS \"timestamp\", "
             "arg_min(lo, (ts, lo)) AS log_offset FROM cand GROUP BY did",
             next, hi, next, hi);
    if ((rc = whd__exec(c, sql)) < 0)
        goto fail;
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TEMP TABLE _df_delta AS SELECT coalesce(user_id, anonymous_id) AS "
             "did, min(\"timestamp\") AS \"timestamp\" FROM events WHERE log_offset >= %" PRIu64
             " AND log_offset < %" PRIu64 " AND coalesce(user_id, anonymous_id) IS NOT NULL "
             "GROUP BY 1",
             next, hi);
    if ((rc = whd__exec(c, sql)) < 0 ||
        /* an earlier link or first event replaces the stored one */
        (rc = whd__exec(c, "DELETE FROM _person_links p USING _pl_delta d WHERE p.did = d.did AND "
                           "(d.\"timestamp\" < p.\"timestamp\" OR (d.\"timestamp\" = "
                           "p.\"timestamp\" AND d.log_offset < p.log_offset))")) < 0 ||
        (rc = whd__exec(c, "INSERT INTO _person_links SELECT d.* FROM _pl_delta d ANTI JOIN "
                           "_person_links p ON p.did = d.did")) < 0 ||
        (rc = whd__exec(c, "DELETE FROM _did_first f USING _df_delta d WHERE f.did = d.did AND "
                           "d.\"timestamp\" < f.\"timestamp\"")) < 0 ||
        (rc = whd__exec(c, "INSERT INTO _did_first SELECT d.* FROM _df_delta d ANTI JOIN "
                           "_did_first f ON f.did = d.did")) < 0 ||
        (rc = whd__exec(c, "DELETE FROM _persons_state")) < 0)
        goto fail;
    snprintf(sql, sizeof(sql), "INSERT INTO _persons_state VALUES (%" PRIu64 ")", hi);
    if ((rc = whd__exec(c, sql)) < 0 || (rc = whd__exec(c, "DROP TABLE _pl_delta")) < 0 ||
        (rc = whd__exec(c, "DROP TABLE _df_delta")) < 0)
        goto fail;
    rc = whd__commit(c);
    goto out;
fail:
    whd__rollback(c);
out:
    pthread_mutex_unlock(&refresh_mu);
    if (rc == 0 && next_out)
        *next_out = hi;
    return rc;
}
