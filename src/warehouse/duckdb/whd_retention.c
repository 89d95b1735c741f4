/* whd_retention.c - deleting old rows from the log-ordered tables (wh_retain).
 *
 * The facade drives the run: one retain_range per table, then one retain_delete per window of
 * log offsets, each an autocommitted DELETE, so no transaction holds the tables for long and
 * every committed window stays done after a crash. events and changes are appended in log
 * order, so a window of offsets is a run of row groups and the scan skips the others by
 * their log_offset zone maps.
 *
 * changes keeps the latest change of each record that still exists, whatever its age: a
 * mirror that is created or refilled (docs/warehouse.md) is rebuilt from those, and must not
 * lose a record that simply did not change for a while. The offsets to keep are taken once per
 * run (retain_range) into a temporary table of the connection: a record that changes during
 * the run only makes its kept change deletable, which the next run does. */
#include <inttypes.h>
#include <stdio.h>

#include "warehouse/duckdb/whd_int.h"

/* The row's age: an event's "timestamp" (its received time when it has none). */
static const char *const age_expr[] = {
    [WH_TABLE_EVENTS] = "coalesce(\"timestamp\", received_at)",
    [WH_TABLE_CHANGES] = "changed_at",
};
static const char *const table_name[] = {
    [WH_TABLE_EVENTS] = "events",
    [WH_TABLE_CHANGES] = "changes",
};

int whd__retain_range(struct wh_conn *wc, enum wh_table t, int64_t before_us, uint64_t *lo_out,
                      uint64_t *hi_out)
{
    struct whd_conn *c = whd__conn(wc);
    char sql[1024];
    int rc;
    if (t == WH_TABLE_CHANGES) {
        snprintf(sql, sizeof(sql),
                 "CREATE OR REPLACE TEMP TABLE _retain_keep AS SELECT lo AS log_offset FROM "
                 "(SELECT max(log_offset) AS lo, arg_max(action, log_offset) AS action, "
                 "max(changed_at) AS last_at FROM changes GROUP BY collection_id, record_id) "
                 "WHERE action <> 'delete' AND last_at < make_timestamp(%" PRId64 ")",
                 before_us);
        if ((rc = whd__exec(c, sql)) < 0)
            return rc;
    }
    snprintf(
        sql, sizeof(sql),
        "SELECT min(log_offset), max(log_offset) + 1 FROM %s WHERE %s < make_timestamp(%" PRId64
        ")",
        table_name[t], age_expr[t], before_us);
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, "cannot find the rows past retention");
    bool none = duckdb_value_is_null(&res, 0, 0);
    *lo_out = duckdb_value_uint64(&res, 0, 0);
    *hi_out = duckdb_value_uint64(&res, 1, 0);
    duckdb_destroy_result(&res);
    return none ? ERR_NOTFOUND : 0;
}

int whd__retain_delete(struct wh_conn *wc, enum wh_table t, int64_t before_us, uint64_t lo,
                       uint64_t hi, uint64_t *n_out)
{
    struct whd_conn *c = whd__conn(wc);
    char sql[1024];
    int n = snprintf(sql, sizeof(sql),
                     "DELETE FROM %s WHERE log_offset >= %" PRIu64 " AND log_offset < %" PRIu64
                     " AND %s < make_timestamp(%" PRId64 ")",
                     table_name[t], lo, hi, age_expr[t], before_us);
    if (t == WH_TABLE_CHANGES)
        snprintf(sql + n, sizeof(sql) - (size_t)n,
                 " AND log_offset NOT IN (SELECT log_offset FROM _retain_keep WHERE log_offset "
                 ">= %" PRIu64 " AND log_offset < %" PRIu64 ")",
                 lo, hi);
    *n_out = 0;
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, "cannot delete rows past retention");
    *n_out = duckdb_rows_changed(&res);
    duckdb_destroy_result(&res);
    return 0;
}
