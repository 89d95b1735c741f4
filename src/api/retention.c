/* retention.c - the scheduled warehouse retention job (settings.warehouse, docs/warehouse.md
 * "Retention"): __tandemWarehouseRetention__ deletes the events and changes older than
 * retentionDays through wh_retain, on the cron thread, on its own warehouse connection. The
 * settings are read when the job runs, so a PATCH applies to the next run. */
#include <inttypes.h>

#include "api/api_int.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "warehouse/warehouse.h"

#define RETENTION_JOB "__tandemWarehouseRetention__"
#define DAY_US (INT64_C(86400) * 1000000)

static bool cron_stopping(void *arg)
{
    struct api_env *env = arg;
    return env->cron && ops_cron_stopping(env->cron);
}

static void count(const char *table, uint64_t n)
{
    struct metrics_family *f =
        metrics_family(METRICS_COUNTER, "tandem_warehouse_retention_rows_total",
                       "Rows deleted from the warehouse by retention.", "table");
    metrics_inc(metrics_series(f, (const char *const[]){table}), n);
}

/* The job (cron thread). */
static void retention_job(void *arg)
{
    struct api_env *env = arg;
    json_t *w = api__settings_section(env, "warehouse");
    int64_t days = json_integer_value(json_object_get(w, "retentionDays"));
    int64_t batch = json_integer_value(json_object_get(w, "retentionBatch"));
    json_decref(w);
    if (days <= 0 || !env->wh)
        return;
    struct wh_conn *c = NULL;
    if (wh_conn_open(env->wh, &c) != 0) {
        xlog_error("warehouse retention: cannot connect: %s", wh_errmsg(NULL));
        return;
    }
    struct wh_retention r = {.before_us = time_now_us() - days * DAY_US,
                             .batch_offsets = batch > 0 ? (uint64_t)batch : 0,
                             .stop = cron_stopping,
                             .stop_arg = env};
    struct wh_retention_stats st = {0};
    int rc = wh_retain(c, &r, &st);
    count("events", st.events);
    count("changes", st.changes);
    count("_person_links", st.links);
    count("_did_first", st.firsts);
    if (rc != 0)
        xlog_error("warehouse retention: %s (the next run goes on)", wh_errmsg(c));
    else
        xlog_info("warehouse retention: deleted %" PRIu64 " events, %" PRIu64
                  " changes and %" PRIu64 " identity rows older than %" PRId64 " days in %" PRIu64
                  " transactions (longest %" PRId64 " ms, %" PRIu64 " retried) in %" PRId64 " ms%s",
                  st.events, st.changes, st.links + st.firsts, days, st.batches,
                  st.max_batch_us / 1000, st.conflicts, st.elapsed_us / 1000,
                  st.stopped ? "; stopped early, the next run goes on" : "");
    wh_conn_close(c);
}

void api__retention_schedule(struct api_env *env, int64_t days, const char *cron)
{
    if (!env->cron)
        return;
    if (days <= 0 || !env->wh)
        (void)ops_cron_remove(env->cron, RETENTION_JOB);
    else if (ops_cron_add(env->cron, RETENTION_JOB, cron, retention_job, env) != 0)
        xlog_warn("settings: invalid warehouse.retentionCron '%s'", cron);
}
