/* whd.c - the DuckDB warehouse backend: database and connections, the fixed tables, offsets,
 * rejects, event loading with a reused data chunk, checkpoints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "warehouse/duckdb/whd_int.h"

/* events: the columns of (nearly) unique strings - message ids, anonymous ids, the JSON
 * objects - are compressed with FSST without DuckDB first trying a dictionary on every
 * string of them (FSST is what it picks for them anyway; the analysis was a fifth of the
 * loading CPU). A segment FSST cannot take (e.g. all NULL) is stored uncompressed. */
static const char *const schema_sql[] = {
    "CREATE TABLE IF NOT EXISTS events ("
    "id VARCHAR USING COMPRESSION fsst, type VARCHAR, event VARCHAR, user_id VARCHAR, "
    "anonymous_id VARCHAR USING COMPRESSION fsst, group_id VARCHAR, previous_id VARCHAR, "
    "\"timestamp\" TIMESTAMP, original_timestamp TIMESTAMP, sent_at TIMESTAMP, "
    "received_at TIMESTAMP, properties JSON USING COMPRESSION fsst, "
    "traits JSON USING COMPRESSION fsst, context JSON USING COMPRESSION fsst, source VARCHAR, "
    "log_offset UBIGINT, did_key UBIGINT, person_key UBIGINT)",
    "CREATE TABLE IF NOT EXISTS changes ("
    "id BIGINT, collection VARCHAR, collection_id VARCHAR, record_id VARCHAR, action VARCHAR, "
    "record JSON, changed_at TIMESTAMP, log_offset UBIGINT)",
    "CREATE TABLE IF NOT EXISTS _offsets ("
    "consumer VARCHAR, topic VARCHAR, next_offset UBIGINT, updated_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS _rejects ("
    "consumer VARCHAR, topic VARCHAR, log_offset UBIGINT, reason VARCHAR, payload BLOB, "
    "rejected_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS _mirrors ("
    "collection_id VARCHAR, collection VARCHAR, table_name VARCHAR)",
    "CREATE TABLE IF NOT EXISTS _mirror_fields ("
    "collection_id VARCHAR, field_id VARCHAR, column_name VARCHAR, column_type VARCHAR)",
    /* SQL models (whd_models.c) */
    "CREATE TABLE IF NOT EXISTS _models (name VARCHAR, spec JSON, updated_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS _model_state ("
    "model VARCHAR, events_offset UBIGINT, changes_offset UBIGINT, built_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS _model_runs ("
    "id VARCHAR, model VARCHAR, \"trigger\" VARCHAR, status VARCHAR, mode VARCHAR, "
    "started_at TIMESTAMP, finished_at TIMESTAMP, \"rows\" BIGINT, events_from UBIGINT, "
    "events_to UBIGINT, changes_from UBIGINT, changes_to UBIGINT, message VARCHAR, sync JSON)",
    "CREATE TABLE IF NOT EXISTS _model_tests ("
    "run_id VARCHAR, model VARCHAR, test VARCHAR, type VARCHAR, \"column\" VARCHAR, "
    "severity VARCHAR, status VARCHAR, failures BIGINT, message VARCHAR)",
    "CREATE TABLE IF NOT EXISTS predictions ("
    "model VARCHAR, version BIGINT, \"timestamp\" TIMESTAMP, features JSON, prediction JSON, "
    "score DOUBLE, log_offset UBIGINT)",
    /* request logs (whd_logs.c): created is PocketBase's date text, as its filters compare it */
    "CREATE TABLE IF NOT EXISTS requests ("
    "id VARCHAR, created VARCHAR, level INTEGER, message VARCHAR, data JSON, log_offset UBIGINT)",
    /* the audit trail (governance/audit.h) */
    "CREATE TABLE IF NOT EXISTS audit ("
    "seq BIGINT, \"time\" TIMESTAMP, action VARCHAR, actor_id VARCHAR, actor_email VARCHAR, "
    "ip VARCHAR, method VARCHAR, route VARCHAR, path VARCHAR, status INTEGER, summary JSON, "
    "prev VARCHAR, hash VARCHAR, log_offset UBIGINT)",
};

/* events columns in table order */
enum {
    EV_ID,
    EV_TYPE,
    EV_EVENT,
    EV_USER_ID,
    EV_ANONYMOUS_ID,
    EV_GROUP_ID,
    EV_PREVIOUS_ID,
    EV_TIMESTAMP,
    EV_ORIGINAL_TIMESTAMP,
    EV_SENT_AT,
    EV_RECEIVED_AT,
    EV_PROPERTIES,
    EV_TRAITS,
    EV_CONTEXT,
    EV_SOURCE,
    EV_LOG_OFFSET,
    EV_DID_KEY,
    EV_PERSON_KEY,
    EV_NCOLS
};

int whd__fail(struct whd_conn *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return rc;
}

int whd__result_fail(struct whd_conn *c, duckdb_result *res, const char *what)
{
    const char *msg = duckdb_result_error(res);
    int rc;
    switch (duckdb_result_error_type(res)) {
    case DUCKDB_ERROR_TRANSACTION:
    case DUCKDB_ERROR_INTERRUPT: rc = ERR_BUSY; break;
    /* over memory_limit even with spilling to the temporary directory (or over its size) */
    case DUCKDB_ERROR_OUT_OF_MEMORY: rc = ERR_LIMIT; break;
    case DUCKDB_ERROR_PARSER:
    case DUCKDB_ERROR_BINDER:
    case DUCKDB_ERROR_CATALOG:
    case DUCKDB_ERROR_CONVERSION:
    case DUCKDB_ERROR_INVALID_INPUT:
    case DUCKDB_ERROR_OUT_OF_RANGE:
    case DUCKDB_ERROR_MISMATCH_TYPE:
    case DUCKDB_ERROR_NOT_IMPLEMENTED:
    case DUCKDB_ERROR_PERMISSION:
    case DUCKDB_ERROR_SYNTAX:
    case DUCKDB_ERROR_CONSTRAINT:
    case DUCKDB_ERROR_DIVIDE_BY_ZERO:
    case DUCKDB_ERROR_INVALID_TYPE:
    case DUCKDB_ERROR_PARAMETER_NOT_RESOLVED: rc = ERR_INVALID; break;
    default: rc = ERR_INTERNAL; break;
    }
    if (rc == ERR_LIMIT)
        whd__fail(c, rc, "%s%s" WH_NO_MEMORY ": %s", what ? what : "", what ? ": " : "",
                  msg ? msg : "unknown error");
    else if (what)
        whd__fail(c, rc, "%s: %s", what, msg ? msg : "unknown error");
    else
        whd__fail(c, rc, "%s", msg ? msg : "unknown error");
    duckdb_destroy_result(res);
    return rc;
}

int whd__exec(struct whd_conn *c, const char *sql)
{
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    duckdb_destroy_result(&res);
    return 0;
}

int whd__begin(struct whd_conn *c)
{
    return whd__exec(c, "BEGIN TRANSACTION");
}

int whd__commit(struct whd_conn *c)
{
    int rc = whd__exec(c, "COMMIT");
    if (rc < 0)
        whd__rollback(c);
    return rc;
}

void whd__rollback(struct whd_conn *c)
{
    duckdb_result res;
    /* fails harmlessly when no transaction is open (a failed COMMIT already ended it) */
    (void)duckdb_query(c->con, "ROLLBACK", &res);
    duckdb_destroy_result(&res);
}

void whd__quote_ident(struct buf *b, const char *name)
{
    buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            buf_putc(b, '"');
        buf_putc(b, *p);
    }
    buf_putc(b, '"');
}

/* ---- database and connections ---- */

static int set_cfg(duckdb_config dc, const char *name, const char *value)
{
    if (duckdb_set_config(dc, name, value) != DuckDBSuccess) {
        wh__set_open_err("cannot set duckdb option %s=%s", name, value);
        return ERR_INTERNAL;
    }
    return 0;
}

static void whd_close(struct wh *w);

static int whd_open(const struct wh_cfg *cfg, struct wh **out)
{
    *out = NULL;
    if (!cfg->path || !*cfg->path) {
        wh__set_open_err("warehouse path is empty");
        return ERR_INVALID;
    }
    struct whd *d = xcalloc(1, sizeof(*d));
    d->base.ops = &wh__duckdb_ops;
    d->cfg = *cfg;
    d->path = xstrdup(cfg->path);
    struct buf wal;
    buf_init(&wal);
    buf_printf(&wal, "%s.wal", cfg->path);
    d->wal_path = buf_detach(&wal, NULL);
    d->cfg.path = d->path;
    d->cfg.backend = "duckdb";
    d->cfg.memory_limit = NULL;
    d->cfg.temp_limit = NULL;
    if (!d->cfg.query_max_bytes)
        d->cfg.query_max_bytes = 32u << 20;
    d->cfg.checkpoint_threshold = NULL;

    duckdb_config dc = NULL;
    int rc = ERR_INTERNAL;
    if (duckdb_create_config(&dc) != DuckDBSuccess) {
        wh__set_open_err("cannot create duckdb config");
        goto fail;
    }
    /* never download or load an extension behind our back; never read or write a file other
     * than the database itself (this also closes read_csv, COPY, ATTACH, EXPORT to queries) */
    if ((rc = set_cfg(dc, "autoinstall_known_extensions", "false")) < 0 ||
        (rc = set_cfg(dc, "autoload_known_extensions", "false")) < 0 ||
        (rc = set_cfg(dc, "enable_external_access", "false")) < 0)
        goto fail;
    if (cfg->threads > 0) {
        char t[32];
        snprintf(t, sizeof(t), "%d", cfg->threads);
        if ((rc = set_cfg(dc, "threads", t)) < 0)
            goto fail;
    }
    /* never the engine's defaults (80 % of RAM, 90 % of the free disk): a query's memory and
     * what it spills are bounded (string values are not counted by DuckDB: the SQL API caps
     * the result's bytes itself) */
    if ((rc = set_cfg(dc, "memory_limit", cfg->memory_limit ? cfg->memory_limit : "2GB")) < 0 ||
        (rc = set_cfg(dc, "max_temp_directory_size", cfg->temp_limit ? cfg->temp_limit : "4GB")) <
            0)
        goto fail;
    if (cfg->checkpoint_threshold &&
        (rc = set_cfg(dc, "checkpoint_threshold", cfg->checkpoint_threshold)) < 0)
        goto fail;
    char *err = NULL;
    if (duckdb_open_ext(d->path, &d->db, dc, &err) != DuckDBSuccess) {
        wh__set_open_err("cannot open warehouse %s: %s", d->path, err ? err : "unknown error");
        duckdb_free(err);
        rc = ERR_INTERNAL;
        goto fail;
    }
    duckdb_destroy_config(&dc);
    /* functions live in the database's catalog: registered once, every connection sees them */
    duckdb_connection fc = NULL;
    rc = duckdb_connect(d->db, &fc) == DuckDBSuccess ? whd__funnel_register(fc) : ERR_INTERNAL;
    if (rc == 0)
        rc = whd__persons_register(fc);
    duckdb_disconnect(&fc);
    if (rc < 0) {
        wh__set_open_err("cannot register the tandem functions in warehouse %s", d->path);
        goto fail;
    }
    *out = &d->base;
    return 0;
fail:
    if (dc)
        duckdb_destroy_config(&dc);
    whd_close(&d->base);
    return rc;
}

static void whd_close(struct wh *w)
{
    struct whd *d = (struct whd *)w;
    if (d->db)
        duckdb_close(&d->db);
    free(d->path);
    free(d->wal_path);
    free(d);
}

static int whd_conn_open(struct wh *w, struct wh_conn **out)
{
    struct whd *d = (struct whd *)w;
    *out = NULL;
    struct whd_conn *c = xcalloc(1, sizeof(*c));
    c->base.wh = w;
    if (duckdb_connect(d->db, &c->con) != DuckDBSuccess) {
        free(c);
        wh__set_open_err("cannot connect to warehouse %s", d->path);
        return ERR_INTERNAL;
    }
    *out = &c->base;
    return 0;
}

static void whd_conn_close(struct wh_conn *wc)
{
    struct whd_conn *c = whd__conn(wc);
    if (c->ev_chunk)
        duckdb_destroy_data_chunk(&c->ev_chunk);
    if (c->off_update)
        duckdb_destroy_prepare(&c->off_update);
    whd__mirror_cache_clear(c);
    duckdb_disconnect(&c->con);
    free(c);
}

static void whd_interrupt(struct wh_conn *wc)
{
    struct whd_conn *c = whd__conn(wc);
    /* the query's timer sees the flag and keeps interrupting until the query is over */
    atomic_store(&c->stopping, true);
    duckdb_interrupt(c->con);
}

static const char *whd_errmsg(struct wh_conn *wc)
{
    return whd__conn(wc)->err;
}

/* A warehouse written before events carried person keys: adds and fills them, and drops the
 * identity tables so the next persons refresh rebuilds them (with keys) from every event. */
static int migrate_person_keys(struct whd_conn *c)
{
    duckdb_result res;
    if (duckdb_query(c->con,
                     "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND "
                     "table_name = 'events' AND column_name = 'did_key'",
                     &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, "cannot read the events columns");
    bool has = duckdb_value_int64(&res, 0, 0) > 0;
    duckdb_destroy_result(&res);
    if (has)
        return 0;
    xlog_info("warehouse: adding person keys to every event (once; one UPDATE of the table)");
    static const char *const steps[] = {
        "ALTER TABLE events ADD COLUMN did_key UBIGINT",
        "ALTER TABLE events ADD COLUMN person_key UBIGINT",
        "UPDATE events SET did_key = tandem_key(coalesce(user_id, anonymous_id)), "
        "person_key = tandem_key(coalesce(user_id, anonymous_id))",
        "DROP TABLE IF EXISTS _person_links",
        "DROP TABLE IF EXISTS _did_first",
        "DROP TABLE IF EXISTS _persons_state",
    };
    int rc = 0;
    for (size_t i = 0; i < ARRAY_LEN(steps) && rc == 0; i++)
        rc = whd__exec(c, steps[i]);
    return rc;
}

static int whd_ensure_schema(struct wh_conn *wc)
{
    struct whd_conn *c = whd__conn(wc);
    int rc = whd__begin(c);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < ARRAY_LEN(schema_sql); i++)
        if ((rc = whd__exec(c, schema_sql[i])) < 0) {
            whd__rollback(c);
            return rc;
        }
    if ((rc = migrate_person_keys(c)) < 0 || (rc = whd__persons_schema(c)) < 0) {
        whd__rollback(c);
        return rc;
    }
    return whd__commit(c);
}

/* ---- offsets and rejects ---- */

static int prepare(struct whd_conn *c, const char *sql, duckdb_prepared_statement *ps)
{
    if (duckdb_prepare(c->con, sql, ps) != DuckDBSuccess) {
        int rc =
            whd__fail(c, ERR_INTERNAL, "cannot prepare %s: %s", sql, duckdb_prepare_error(*ps));
        duckdb_destroy_prepare(ps);
        return rc;
    }
    return 0;
}

static int run_prepared(struct whd_conn *c, duckdb_prepared_statement ps, idx_t *changed_out)
{
    duckdb_result res;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    if (changed_out)
        *changed_out = duckdb_rows_changed(&res);
    duckdb_destroy_result(&res);
    return 0;
}

int whd__offset_store(struct whd_conn *c, const char *consumer, const char *topic,
                      uint64_t next_offset)
{
    duckdb_prepared_statement ps;
    idx_t changed = 0;
    int rc;
    /* once per batch: prepared once per connection (preparing cost about as much as running) */
    if (!c->off_update && (rc = prepare(c,
                                        "UPDATE _offsets SET next_offset = $1, topic = $2, "
                                        "updated_at = now()::TIMESTAMP WHERE consumer = $3",
                                        &c->off_update)) < 0) {
        c->off_update = NULL;
        return rc;
    }
    if (duckdb_bind_uint64(c->off_update, 1, next_offset) != DuckDBSuccess ||
        duckdb_bind_varchar(c->off_update, 2, topic) != DuckDBSuccess ||
        duckdb_bind_varchar(c->off_update, 3, consumer) != DuckDBSuccess)
        return whd__fail(c, ERR_INTERNAL, "cannot bind the offset update");
    rc = run_prepared(c, c->off_update, &changed);
    if (rc < 0 || changed > 0)
        return rc;
    if ((rc = prepare(c, "INSERT INTO _offsets VALUES ($1, $2, $3, now()::TIMESTAMP)", &ps)) < 0)
        return rc;
    duckdb_bind_varchar(ps, 1, consumer);
    duckdb_bind_varchar(ps, 2, topic);
    duckdb_bind_uint64(ps, 3, next_offset);
    rc = run_prepared(c, ps, NULL);
    duckdb_destroy_prepare(&ps);
    return rc;
}

static int whd_offset_get(struct wh_conn *wc, const char *consumer, uint64_t *next_out)
{
    struct whd_conn *c = whd__conn(wc);
    duckdb_prepared_statement ps;
    int rc = prepare(c, "SELECT next_offset FROM _offsets WHERE consumer = $1", &ps);
    if (rc < 0)
        return rc;
    duckdb_bind_varchar(ps, 1, consumer);
    duckdb_result res;
    if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess) {
        duckdb_destroy_prepare(&ps);
        return whd__result_fail(c, &res, "cannot read offset");
    }
    duckdb_destroy_prepare(&ps);
    if (duckdb_row_count(&res) == 0) {
        duckdb_destroy_result(&res);
        return whd__fail(c, ERR_NOTFOUND, "consumer %s has no stored offset", consumer);
    }
    *next_out = duckdb_value_uint64(&res, 0, 0);
    duckdb_destroy_result(&res);
    return 0;
}

static int appender_fail(struct whd_conn *c, duckdb_appender *app, const char *what)
{
    const char *msg = *app ? duckdb_appender_error(*app) : NULL;
    int rc = whd__fail(c, ERR_INTERNAL, "%s: %s", what, msg ? msg : "unknown error");
    duckdb_appender_destroy(app);
    return rc;
}

int whd__rejects_append(struct whd_conn *c, const char *consumer, const char *topic,
                        const struct wh_reject *rej, size_t n)
{
    if (n == 0)
        return 0;
    duckdb_appender app = NULL;
    if (duckdb_appender_create(c->con, NULL, "_rejects", &app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to _rejects");
    duckdb_timestamp now = {time_now_us()};
    for (size_t i = 0; i < n; i++) {
        if (duckdb_append_varchar(app, consumer) != DuckDBSuccess ||
            duckdb_append_varchar(app, topic) != DuckDBSuccess ||
            duckdb_append_uint64(app, rej[i].log_offset) != DuckDBSuccess ||
            duckdb_append_varchar(app, rej[i].reason ? rej[i].reason : "") != DuckDBSuccess ||
            duckdb_append_blob(app, rej[i].payload ? rej[i].payload : "", rej[i].payload_len) !=
                DuckDBSuccess ||
            duckdb_append_timestamp(app, now) != DuckDBSuccess ||
            duckdb_appender_end_row(app) != DuckDBSuccess)
            return appender_fail(c, &app, "cannot append to _rejects");
    }
    if (duckdb_appender_close(app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to _rejects");
    duckdb_appender_destroy(&app);
    return 0;
}

/* ---- events ---- */

static void put_null(duckdb_vector v, idx_t row)
{
    duckdb_vector_ensure_validity_writable(v);
    duckdb_validity_set_row_invalid(duckdb_vector_get_validity(v), row);
}

static void put_str(duckdb_vector v, idx_t row, const char *s)
{
    if (!s) {
        put_null(v, row);
        return;
    }
    duckdb_vector_assign_string_element_len(v, row, s, strlen(s));
}

static void put_ts(duckdb_vector v, idx_t row, int64_t us)
{
    if (us == WH_NO_TIME) {
        put_null(v, row);
        return;
    }
    ((int64_t *)duckdb_vector_get_data(v))[row] = us;
}

static int ev_chunk_ready(struct whd_conn *c, duckdb_appender app)
{
    if (c->ev_chunk)
        return 0;
    idx_t n = duckdb_appender_column_count(app);
    if (n != EV_NCOLS)
        return whd__fail(c, ERR_CORRUPT, "table events has %llu columns, expected %d",
                         (unsigned long long)n, EV_NCOLS);
    duckdb_logical_type types[EV_NCOLS];
    for (idx_t i = 0; i < n; i++)
        types[i] = duckdb_appender_column_type(app, i);
    c->ev_chunk = duckdb_create_data_chunk(types, n);
    for (idx_t i = 0; i < n; i++)
        duckdb_destroy_logical_type(&types[i]);
    return 0;
}

static int append_events(struct whd_conn *c, const struct wh_event *ev, size_t n)
{
    duckdb_appender app = NULL;
    if (duckdb_appender_create(c->con, NULL, "events", &app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to events");
    int rc = ev_chunk_ready(c, app);
    if (rc < 0) {
        duckdb_appender_destroy(&app);
        return rc;
    }
    idx_t cap = duckdb_vector_size();
    for (size_t base = 0; base < n; base += cap) {
        size_t m = n - base < cap ? n - base : cap;
        duckdb_data_chunk ch = c->ev_chunk;
        duckdb_data_chunk_reset(ch);
        duckdb_vector v[EV_NCOLS];
        for (idx_t k = 0; k < EV_NCOLS; k++)
            v[k] = duckdb_data_chunk_get_vector(ch, k);
        uint64_t *offs = duckdb_vector_get_data(v[EV_LOG_OFFSET]);
        uint64_t *dkey = duckdb_vector_get_data(v[EV_DID_KEY]);
        uint64_t *pkey = duckdb_vector_get_data(v[EV_PERSON_KEY]);
        for (size_t i = 0; i < m; i++) {
            const struct wh_event *e = &ev[base + i];
            put_str(v[EV_ID], i, e->id);
            put_str(v[EV_TYPE], i, e->type);
            put_str(v[EV_EVENT], i, e->event);
            put_str(v[EV_USER_ID], i, e->user_id);
            put_str(v[EV_ANONYMOUS_ID], i, e->anonymous_id);
            put_str(v[EV_GROUP_ID], i, e->group_id);
            put_str(v[EV_PREVIOUS_ID], i, e->previous_id);
            put_ts(v[EV_TIMESTAMP], i, e->timestamp_us);
            put_ts(v[EV_ORIGINAL_TIMESTAMP], i, e->original_timestamp_us);
            put_ts(v[EV_SENT_AT], i, e->sent_at_us);
            put_ts(v[EV_RECEIVED_AT], i, e->received_at_us);
            put_str(v[EV_PROPERTIES], i, e->properties);
            put_str(v[EV_TRAITS], i, e->traits);
            put_str(v[EV_CONTEXT], i, e->context);
            put_str(v[EV_SOURCE], i, e->source);
            offs[i] = e->log_offset;
            /* the distinct id's own key; the persons refresh corrects it for linked ids */
            const char *did = e->user_id ? e->user_id : e->anonymous_id;
            if (did) {
                dkey[i] = pkey[i] = whd__key(did, strlen(did));
            } else {
                put_null(v[EV_DID_KEY], i);
                put_null(v[EV_PERSON_KEY], i);
            }
        }
        duckdb_data_chunk_set_size(ch, m);
        if (duckdb_append_data_chunk(app, ch) != DuckDBSuccess)
            return appender_fail(c, &app, "cannot append to events");
    }
    if (duckdb_appender_close(app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to events");
    duckdb_appender_destroy(&app);
    return 0;
}

static int whd_load_events(struct wh_conn *wc, const struct wh_load *ld, const struct wh_event *ev,
                           size_t n, struct wh_load_stats *st)
{
    struct whd_conn *c = whd__conn(wc);
    memset(st, 0, sizeof(*st));
    int rc;
    /* a transaction left open by a call with `more` continues; else this call begins one */
    if (!wc->load_open && (rc = whd__begin(c)) < 0)
        return rc;
    if ((n > 0 && (rc = append_events(c, ev, n)) < 0) ||
        (rc = whd__rejects_append(c, ld->consumer, ld->topic, ld->rejects, ld->n_rejects)) < 0 ||
        (!ld->more && (rc = whd__offset_store(c, ld->consumer, ld->topic, ld->next_offset)) < 0)) {
        whd__rollback(c);
        return rc;
    }
    if (!ld->more && (rc = whd__commit(c)) < 0)
        return rc;
    st->rows = n;
    st->rejects = ld->n_rejects;
    return 0;
}

/* One load of an append-only topic table: the rows (append(c, rows, n)), the rejects and the
 * consumer's next offset in one transaction, rolled back whole on any failure. */
int whd__load_rows(struct whd_conn *c, const struct wh_load *ld, whd_append_fn append,
                   const void *rows, size_t n, struct wh_load_stats *st)
{
    memset(st, 0, sizeof(*st));
    int rc;
    if ((rc = whd__begin(c)) < 0)
        return rc;
    if ((n > 0 && (rc = append(c, rows, n)) < 0) ||
        (rc = whd__rejects_append(c, ld->consumer, ld->topic, ld->rejects, ld->n_rejects)) < 0 ||
        (rc = whd__offset_store(c, ld->consumer, ld->topic, ld->next_offset)) < 0) {
        whd__rollback(c);
        return rc;
    }
    if ((rc = whd__commit(c)) < 0)
        return rc;
    st->rows = n;
    st->rejects = ld->n_rejects;
    return 0;
}

static int append_predictions(struct whd_conn *c, const void *rows, size_t n)
{
    const struct wh_prediction *p = rows;
    duckdb_appender app = NULL;
    if (duckdb_appender_create(c->con, NULL, "predictions", &app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to predictions");
    for (size_t i = 0; i < n; i++) {
        duckdb_timestamp ts = {p[i].timestamp_us};
        if (duckdb_append_varchar(app, p[i].model) != DuckDBSuccess ||
            duckdb_append_int64(app, p[i].version) != DuckDBSuccess ||
            (p[i].timestamp_us == WH_NO_TIME ? duckdb_append_null(app)
                                             : duckdb_append_timestamp(app, ts)) != DuckDBSuccess ||
            duckdb_append_varchar(app, p[i].features) != DuckDBSuccess ||
            duckdb_append_varchar(app, p[i].prediction) != DuckDBSuccess ||
            (isfinite(p[i].score) ? duckdb_append_double(app, p[i].score)
                                  : duckdb_append_null(app)) != DuckDBSuccess ||
            duckdb_append_uint64(app, p[i].log_offset) != DuckDBSuccess ||
            duckdb_appender_end_row(app) != DuckDBSuccess)
            return appender_fail(c, &app, "cannot append to predictions");
    }
    if (duckdb_appender_destroy(&app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to predictions");
    return 0;
}

static duckdb_state append_text(duckdb_appender app, const char *s)
{
    return s ? duckdb_append_varchar(app, s) : duckdb_append_null(app);
}

static int append_audit(struct whd_conn *c, const void *rows, size_t n)
{
    const struct wh_audit *a = rows;
    duckdb_appender app = NULL;
    if (duckdb_appender_create(c->con, NULL, "audit", &app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to audit");
    for (size_t i = 0; i < n; i++) {
        duckdb_timestamp ts = {a[i].time_us};
        if (duckdb_append_int64(app, a[i].seq) != DuckDBSuccess ||
            (a[i].time_us == WH_NO_TIME ? duckdb_append_null(app)
                                        : duckdb_append_timestamp(app, ts)) != DuckDBSuccess ||
            append_text(app, a[i].action) != DuckDBSuccess ||
            append_text(app, a[i].actor_id) != DuckDBSuccess ||
            append_text(app, a[i].actor_email) != DuckDBSuccess ||
            append_text(app, a[i].ip) != DuckDBSuccess ||
            append_text(app, a[i].method) != DuckDBSuccess ||
            append_text(app, a[i].route) != DuckDBSuccess ||
            append_text(app, a[i].path) != DuckDBSuccess ||
            (a[i].status ? duckdb_append_int32(app, (int32_t)a[i].status)
                         : duckdb_append_null(app)) != DuckDBSuccess ||
            append_text(app, a[i].summary) != DuckDBSuccess ||
            append_text(app, a[i].prev) != DuckDBSuccess ||
            append_text(app, a[i].hash) != DuckDBSuccess ||
            duckdb_append_uint64(app, a[i].log_offset) != DuckDBSuccess ||
            duckdb_appender_end_row(app) != DuckDBSuccess)
            return appender_fail(c, &app, "cannot append to audit");
    }
    if (duckdb_appender_destroy(&app) != DuckDBSuccess)
        return appender_fail(c, &app, "cannot append to audit");
    return 0;
}

static int whd_load_audit(struct wh_conn *wc, const struct wh_load *ld, const struct wh_audit *a,
                          size_t n, struct wh_load_stats *st)
{
    return whd__load_rows(whd__conn(wc), ld, append_audit, a, n, st);
}

static int whd_load_predictions(struct wh_conn *wc, const struct wh_load *ld,
                                const struct wh_prediction *p, size_t n, struct wh_load_stats *st)
{
    return whd__load_rows(whd__conn(wc), ld, append_predictions, p, n, st);
}

/* ---- checkpoints ---- */

static int whd_checkpoint(struct wh_conn *wc, bool force)
{
    struct whd_conn *c = whd__conn(wc);
    struct whd *d = whd__db(wc);
    if (!force && d->cfg.wal_force_bytes > 0) {
        struct stat sb;
        if (stat(d->wal_path, &sb) == 0 && (uint64_t)sb.st_size >= d->cfg.wal_force_bytes)
            force = true;
    }
    return whd__exec(c, force ? "FORCE CHECKPOINT" : "CHECKPOINT");
}

/* ---- backup ---- */

/* Copies the file src to the new file dst and syncs it; a missing src copies nothing when
 * optional. */
static int copy_file(struct whd_conn *c, const char *src, const char *dst, bool optional)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0 && optional && errno == ENOENT)
        return 0;
    if (in < 0)
        return whd__fail(c, -errno, "cannot open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = 0;
    if (out < 0) {
        rc = whd__fail(c, -errno, "cannot create %s: %s", dst, strerror(errno));
        close(in);
        return rc;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = whd__fail(c, -errno, "cannot read %s: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t w = 0; w < r;) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                rc = whd__fail(c, -errno, "cannot write %s: %s", dst, strerror(errno));
                goto out;
            }
            w += k;
        }
    }
    if (rc == 0 && fsync(out) != 0)
        rc = whd__fail(c, -errno, "cannot sync %s: %s", dst, strerror(errno));
out:
    close(out);
    close(in);
    return rc;
}

/* Called with every writer held off (wh_backup): no commit and no checkpoint can run, so the
 * database file is the last checkpoint's state and the WAL holds whole committed transactions
 * after it. The checkpoint first keeps the WAL small; it may find another connection's load
 * transaction open and fail, then the WAL copy carries what it would have written. */
static int whd_backup(struct wh_conn *wc, const char *dest_path)
{
    struct whd_conn *c = whd__conn(wc);
    struct whd *d = whd__db(wc);
    if (whd__exec(c, "CHECKPOINT") < 0)
        xlog_debug("warehouse backup: checkpoint skipped: %s", c->err);
    char wal[PATH_MAX];
    if (snprintf(wal, sizeof(wal), "%s.wal", dest_path) >= (int)sizeof(wal))
        return whd__fail(c, ERR_INVALID, "backup path too long");
    int rc = copy_file(c, d->path, dest_path, false);
    if (rc == 0)
        rc = copy_file(c, d->wal_path, wal, true);
    return rc;
}

const struct wh_ops wh__duckdb_ops = {
    .name = "duckdb",
    .open = whd_open,
    .close = whd_close,
    .conn_open = whd_conn_open,
    .conn_close = whd_conn_close,
    .interrupt = whd_interrupt,
    .ensure_schema = whd_ensure_schema,
    .offset_get = whd_offset_get,
    .load_events = whd_load_events,
    .load_changes = whd__load_changes,
    .load_predictions = whd_load_predictions,
    .load_requests = whd__load_requests,
    .logs_list = whd__logs_list,
    .logs_stats = whd__logs_stats,
    .logs_delete = whd__logs_delete,
    .load_audit = whd_load_audit,
    .apply_collection = whd__apply_collection,
    .drop_collection = whd__drop_collection,
    .query = whd__query,
    .checkpoint = whd_checkpoint,
    .persons_refresh = whd__persons_refresh,
    .model_parse = whd__model_parse,
    .model_columns = whd__model_columns,
    .model_define = whd__model_define,
    .model_build = whd__model_build,
    .model_record = whd__model_record,
    .backup = whd_backup,
    .retain_range = whd__retain_range,
    .retain_delete = whd__retain_delete,
    .retain_persons = whd__persons_forget,
    .errmsg = whd_errmsg,
    .scan = whd__scan,
    .set_scorer = whd__set_scorer,
    .erase_persons = whd__erase_persons,
    .erase_records = whd__erase_records,
};
