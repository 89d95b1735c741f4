/* whd_query.c - the read-only SQL API on DuckDB: the statement guard, parameters, the timeout
 * (a timer thread that interrupts the connection), the row cap, and DuckDB values as JSON.
 *
 * The guard does not match strings: DuckDB parses the text (exactly one statement), prepares
 * it and reports its statement type; only SELECT passes (DESCRIBE, SHOW, SUMMARIZE, FROM-first
 * queries and reading PRAGMAs such as table_info are SELECTs to DuckDB; EXPLAIN is refused
 * because EXPLAIN ANALYZE runs its statement). The statement then runs inside
 * BEGIN TRANSACTION READ ONLY, so even a SELECT that would write (nextval) fails, and the
 * database was opened with enable_external_access=false, so no file, ATTACH or COPY is
 * reachable at all. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "warehouse/duckdb/whd_int.h"

/* ---- type names ---- */

void whd__type_name(struct buf *b, duckdb_logical_type t)
{
    char *alias = duckdb_logical_type_get_alias(t);
    if (alias) {
        buf_puts(b, alias);
        duckdb_free(alias);
        return;
    }
    duckdb_type id = duckdb_get_type_id(t);
    const char *s = NULL;
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: s = "BOOLEAN"; break;
    case DUCKDB_TYPE_TINYINT: s = "TINYINT"; break;
    case DUCKDB_TYPE_SMALLINT: s = "SMALLINT"; break;
    case DUCKDB_TYPE_INTEGER: s = "INTEGER"; break;
    case DUCKDB_TYPE_BIGINT: s = "BIGINT"; break;
    case DUCKDB_TYPE_UTINYINT: s = "UTINYINT"; break;
    case DUCKDB_TYPE_USMALLINT: s = "USMALLINT"; break;
    case DUCKDB_TYPE_UINTEGER: s = "UINTEGER"; break;
    case DUCKDB_TYPE_UBIGINT: s = "UBIGINT"; break;
    case DUCKDB_TYPE_HUGEINT: s = "HUGEINT"; break;
    case DUCKDB_TYPE_UHUGEINT: s = "UHUGEINT"; break;
    case DUCKDB_TYPE_FLOAT: s = "FLOAT"; break;
    case DUCKDB_TYPE_DOUBLE: s = "DOUBLE"; break;
    case DUCKDB_TYPE_VARCHAR: s = "VARCHAR"; break;
    case DUCKDB_TYPE_BLOB: s = "BLOB"; break;
    case DUCKDB_TYPE_DATE: s = "DATE"; break;
    case DUCKDB_TYPE_TIME: s = "TIME"; break;
    case DUCKDB_TYPE_TIMESTAMP: s = "TIMESTAMP"; break;
    case DUCKDB_TYPE_TIMESTAMP_S: s = "TIMESTAMP_S"; break;
    case DUCKDB_TYPE_TIMESTAMP_MS: s = "TIMESTAMP_MS"; break;
    case DUCKDB_TYPE_TIMESTAMP_NS: s = "TIMESTAMP_NS"; break;
    case DUCKDB_TYPE_TIMESTAMP_TZ: s = "TIMESTAMP WITH TIME ZONE"; break;
    case DUCKDB_TYPE_INTERVAL: s = "INTERVAL"; break;
    case DUCKDB_TYPE_UUID: s = "UUID"; break;
    case DUCKDB_TYPE_ENUM: s = "ENUM"; break;
    case DUCKDB_TYPE_SQLNULL: s = "NULL"; break;
    case DUCKDB_TYPE_DECIMAL:
        buf_printf(b, "DECIMAL(%u,%u)", duckdb_decimal_width(t), duckdb_decimal_scale(t));
        return;
    case DUCKDB_TYPE_LIST: {
        duckdb_logical_type ct = duckdb_list_type_child_type(t);
        whd__type_name(b, ct);
        duckdb_destroy_logical_type(&ct);
        buf_puts(b, "[]");
        return;
    }
    case DUCKDB_TYPE_ARRAY: {
        duckdb_logical_type ct = duckdb_array_type_child_type(t);
        whd__type_name(b, ct);
        duckdb_destroy_logical_type(&ct);
        buf_printf(b, "[%llu]", (unsigned long long)duckdb_array_type_array_size(t));
        return;
    }
    case DUCKDB_TYPE_MAP: {
        duckdb_logical_type kt = duckdb_map_type_key_type(t);
        duckdb_logical_type vt = duckdb_map_type_value_type(t);
        buf_puts(b, "MAP(");
        whd__type_name(b, kt);
        buf_puts(b, ", ");
        whd__type_name(b, vt);
        buf_putc(b, ')');
        duckdb_destroy_logical_type(&kt);
        duckdb_destroy_logical_type(&vt);
        return;
    }
    case DUCKDB_TYPE_STRUCT: {
        buf_puts(b, "STRUCT(");
        idx_t n = duckdb_struct_type_child_count(t);
        for (idx_t i = 0; i < n; i++) {
            char *name = duckdb_struct_type_child_name(t, i);
            duckdb_logical_type ct = duckdb_struct_type_child_type(t, i);
            if (i)
                buf_puts(b, ", ");
            whd__quote_ident(b, name);
            buf_putc(b, ' ');
            whd__type_name(b, ct);
            duckdb_destroy_logical_type(&ct);
            duckdb_free(name);
        }
        buf_putc(b, ')');
        return;
    }
    default: buf_printf(b, "TYPE%d", (int)id); return;
    }
    buf_puts(b, s);
}

/* ---- values ---- */

static json_t *u128_json(unsigned __int128 v, bool neg)
{
    if (!neg && v <= (unsigned __int128)INT64_MAX)
        return json_integer((json_int_t)v);
    if (neg && v <= (unsigned __int128)INT64_MAX + 1)
        return json_integer((json_int_t)(-(__int128)v));
    char tmp[48];
    size_t i = sizeof(tmp);
    tmp[--i] = 0;
    do {
        tmp[--i] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    if (neg)
        tmp[--i] = '-';
    return json_string(tmp + i);
}

static json_t *i128_json(__int128 v)
{
    return v < 0 ? u128_json((unsigned __int128)(-(v + 1)) + 1, true)
                 : u128_json((unsigned __int128)v, false);
}

static json_t *double_json(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* us since the epoch as ISO 8601 UTC; milliseconds unless microseconds are needed */
static json_t *ts_json(int64_t us)
{
    if (us == INT64_MAX)
        return json_string("infinity");
    if (us == -INT64_MAX)
        return json_string("-infinity");
    duckdb_timestamp_struct t = duckdb_from_timestamp((duckdb_timestamp){us});
    char out[64];
    int frac = t.time.micros;
    if (frac % 1000 == 0)
        snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)t.date.year,
                 t.date.month, t.date.day, t.time.hour, t.time.min, t.time.sec, frac / 1000);
    else
        snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", (int)t.date.year,
                 t.date.month, t.date.day, t.time.hour, t.time.min, t.time.sec, frac);
    return json_string(out);
}

static json_t *decimal_json(__int128 v, uint8_t scale)
{
    bool neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    char digits[64];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u || n <= scale);
    char out[72];
    size_t k = 0;
    if (neg)
        out[k++] = '-';
    for (size_t i = n; i-- > 0;) {
        out[k++] = digits[i];
        if (i == scale && scale > 0)
            out[k++] = '.';
    }
    out[k] = 0;
    return json_string(out);
}

static json_t *str_json(duckdb_string_t *s, bool as_json)
{
    const char *p = duckdb_string_t_data(s);
    uint32_t len = duckdb_string_t_length(*s);
    if (as_json) {
        json_t *j = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (j)
            return j;
    }
    return json_stringn(p, len);
}

static json_t *value_json(duckdb_vector v, duckdb_logical_type t, idx_t row, char *err,
                          size_t err_len);

static json_t *list_json(duckdb_vector child, duckdb_logical_type ct, uint64_t off, uint64_t len,
                         char *err, size_t err_len)
{
    json_t *a = json_array();
    for (uint64_t i = 0; i < len; i++) {
        json_t *x = value_json(child, ct, off + i, err, err_len);
        if (!x) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, x);
    }
    return a;
}

/* The value at row of v as JSON; NULL (with err set) for a type we cannot render. */
static json_t *value_json(duckdb_vector v, duckdb_logical_type t, idx_t row, char *err,
                          size_t err_len)
{
    uint64_t *validity = duckdb_vector_get_validity(v);
    if (validity && !duckdb_validity_row_is_valid(validity, row))
        return json_null();
    void *data = duckdb_vector_get_data(v);
    duckdb_type id = duckdb_get_type_id(t);
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: return json_boolean(((bool *)data)[row]);
    case DUCKDB_TYPE_TINYINT: return json_integer(((int8_t *)data)[row]);
    case DUCKDB_TYPE_SMALLINT: return json_integer(((int16_t *)data)[row]);
    case DUCKDB_TYPE_INTEGER: return json_integer(((int32_t *)data)[row]);
    case DUCKDB_TYPE_BIGINT: return json_integer(((int64_t *)data)[row]);
    case DUCKDB_TYPE_UTINYINT: return json_integer(((uint8_t *)data)[row]);
    case DUCKDB_TYPE_USMALLINT: return json_integer(((uint16_t *)data)[row]);
    case DUCKDB_TYPE_UINTEGER: return json_integer(((uint32_t *)data)[row]);
    case DUCKDB_TYPE_UBIGINT: return u128_json(((uint64_t *)data)[row], false);
    case DUCKDB_TYPE_HUGEINT: {
        duckdb_hugeint h = ((duckdb_hugeint *)data)[row];
        return i128_json((__int128)(((unsigned __int128)(uint64_t)h.upper << 64) | h.lower));
    }
    case DUCKDB_TYPE_UHUGEINT: {
        duckdb_uhugeint h = ((duckdb_uhugeint *)data)[row];
        return u128_json(((unsigned __int128)h.upper << 64) | h.lower, false);
    }
    case DUCKDB_TYPE_FLOAT: return double_json(((float *)data)[row]);
    case DUCKDB_TYPE_DOUBLE: return double_json(((double *)data)[row]);
    case DUCKDB_TYPE_DECIMAL: {
        uint8_t scale = duckdb_decimal_scale(t);
        __int128 x;
        switch (duckdb_decimal_internal_type(t)) {
        case DUCKDB_TYPE_SMALLINT: x = ((int16_t *)data)[row]; break;
        case DUCKDB_TYPE_INTEGER: x = ((int32_t *)data)[row]; break;
        case DUCKDB_TYPE_BIGINT: x = ((int64_t *)data)[row]; break;
        default: {
            duckdb_hugeint h = ((duckdb_hugeint *)data)[row];
            x = (__int128)(((unsigned __int128)(uint64_t)h.upper << 64) | h.lower);
        }
        }
        return decimal_json(x, scale);
    }
    case DUCKDB_TYPE_VARCHAR: {
        char *alias = duckdb_logical_type_get_alias(t);
        bool is_json = alias && strcmp(alias, "JSON") == 0;
        duckdb_free(alias);
        return str_json(&((duckdb_string_t *)data)[row], is_json);
    }
    case DUCKDB_TYPE_BLOB: {
        duckdb_string_t *s = &((duckdb_string_t *)data)[row];
        uint32_t len = duckdb_string_t_length(*s);
        size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
        char *out = xmalloc(n);
        sodium_bin2base64(out, n, (const unsigned char *)duckdb_string_t_data(s), len,
                          sodium_base64_VARIANT_ORIGINAL);
        json_t *j = json_string(out);
        free(out);
        return j;
    }
    case DUCKDB_TYPE_DATE: {
        int32_t days = ((int32_t *)data)[row];
        if (days == INT32_MAX)
            return json_string("infinity");
        if (days == -INT32_MAX)
            return json_string("-infinity");
        duckdb_date_struct d = duckdb_from_date((duckdb_date){days});
        char out[32];
        snprintf(out, sizeof(out), "%04d-%02d-%02d", (int)d.year, d.month, d.day);
        return json_string(out);
    }
    case DUCKDB_TYPE_TIME: {
        duckdb_time_struct tm = duckdb_from_time((duckdb_time){((int64_t *)data)[row]});
        char out[32];
        snprintf(out, sizeof(out), "%02d:%02d:%02d.%06d", tm.hour, tm.min, tm.sec, tm.micros);
        return json_string(out);
    }
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_TZ: return ts_json(((int64_t *)data)[row]);
    case DUCKDB_TYPE_TIMESTAMP_S: {
        int64_t s = ((int64_t *)data)[row];
        return ts_json(s == INT64_MAX || s == -INT64_MAX ? s : s * 1000000);
    }
    case DUCKDB_TYPE_TIMESTAMP_MS: {
        int64_t s = ((int64_t *)data)[row];
        return ts_json(s == INT64_MAX || s == -INT64_MAX ? s : s * 1000);
    }
    case DUCKDB_TYPE_TIMESTAMP_NS: {
        int64_t s = ((int64_t *)data)[row];
        return ts_json(s == INT64_MAX || s == -INT64_MAX ? s : s / 1000);
    }
    case DUCKDB_TYPE_INTERVAL: {
        duckdb_interval iv = ((duckdb_interval *)data)[row];
        return json_pack("{s:i,s:i,s:I}", "months", (int)iv.months, "days", (int)iv.days, "micros",
                         (json_int_t)iv.micros);
    }
    case DUCKDB_TYPE_UUID: {
        duckdb_hugeint h = ((duckdb_hugeint *)data)[row];
        uint64_t hi = (uint64_t)h.upper ^ ((uint64_t)1 << 63), lo = h.lower;
        char out[40];
        snprintf(out, sizeof(out),
                 "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, hi >> 32,
                 (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & (uint64_t)0xffffffffffff);
        return json_string(out);
    }
    case DUCKDB_TYPE_ENUM: {
        uint64_t idx;
        switch (duckdb_enum_internal_type(t)) {
        case DUCKDB_TYPE_UTINYINT: idx = ((uint8_t *)data)[row]; break;
        case DUCKDB_TYPE_USMALLINT: idx = ((uint16_t *)data)[row]; break;
        default: idx = ((uint32_t *)data)[row]; break;
        }
        char *s = duckdb_enum_dictionary_value(t, idx);
        json_t *j = json_string(s ? s : "");
        duckdb_free(s);
        return j;
    }
    case DUCKDB_TYPE_LIST: {
        duckdb_list_entry e = ((duckdb_list_entry *)data)[row];
        duckdb_logical_type ct = duckdb_list_type_child_type(t);
        json_t *a =
            list_json(duckdb_list_vector_get_child(v), ct, e.offset, e.length, err, err_len);
        duckdb_destroy_logical_type(&ct);
        return a;
    }
    case DUCKDB_TYPE_ARRAY: {
        idx_t size = duckdb_array_type_array_size(t);
        duckdb_logical_type ct = duckdb_array_type_child_type(t);
        json_t *a = list_json(duckdb_array_vector_get_child(v), ct, row * size, size, err, err_len);
        duckdb_destroy_logical_type(&ct);
        return a;
    }
    case DUCKDB_TYPE_MAP: {
        /* a list of {key, value} structs: rendered as an array of {"key":..,"value":..} */
        duckdb_list_entry e = ((duckdb_list_entry *)data)[row];
        duckdb_vector entries = duckdb_list_vector_get_child(v);
        duckdb_vector kv = duckdb_struct_vector_get_child(entries, 0);
        duckdb_vector vv = duckdb_struct_vector_get_child(entries, 1);
        duckdb_logical_type kt = duckdb_map_type_key_type(t);
        duckdb_logical_type vt = duckdb_map_type_value_type(t);
        json_t *a = json_array();
        for (uint64_t i = 0; i < e.length && a; i++) {
            json_t *k = value_json(kv, kt, e.offset + i, err, err_len);
            json_t *x = k ? value_json(vv, vt, e.offset + i, err, err_len) : NULL;
            if (!x) {
                json_decref(k);
                json_decref(a);
                a = NULL;
                break;
            }
            json_array_append_new(a, json_pack("{s:o,s:o}", "key", k, "value", x));
        }
        duckdb_destroy_logical_type(&kt);
        duckdb_destroy_logical_type(&vt);
        return a;
    }
    case DUCKDB_TYPE_STRUCT: {
        json_t *o = json_object();
        idx_t n = duckdb_struct_type_child_count(t);
        for (idx_t i = 0; i < n && o; i++) {
            char *name = duckdb_struct_type_child_name(t, i);
            duckdb_logical_type ct = duckdb_struct_type_child_type(t, i);
            json_t *x = value_json(duckdb_struct_vector_get_child(v, i), ct, row, err, err_len);
            if (x)
                json_object_set_new(o, name, x);
            else {
                json_decref(o);
                o = NULL;
            }
            duckdb_destroy_logical_type(&ct);
            duckdb_free(name);
        }
        return o;
    }
    case DUCKDB_TYPE_SQLNULL: return json_null();
    default: {
        struct buf b;
        buf_init(&b);
        whd__type_name(&b, t);
        snprintf(err, err_len, "cannot return a value of type %s: cast it, e.g. to VARCHAR",
                 buf_cstr(&b));
        buf_release(&b);
        return NULL;
    }
    }
}

/* ---- the statement timer ----
 *
 * A thread started before the statement is parsed and stopped after its last row is read, so
 * the timeout covers parsing, the check, preparing (constant folding runs there) and running.
 * Once the deadline passes, or wh_interrupt stops the connection, it interrupts the connection
 * every TIMER_REPEAT_MS until the query is over: DuckDB clears the interrupt flag when the
 * next step (the check's own query, the execution) begins, so one interrupt could be lost
 * between two steps. A function that runs long inside one call (no step ends) is only stopped
 * when it returns. */

#define TIMER_POLL_MS 50   /* how often the timer looks at the connection's stop flag */
#define TIMER_REPEAT_MS 10 /* interrupts once it has fired */

struct timer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, fired, stopped;
    int64_t deadline_us; /* time_mono_us() */
    struct whd_conn *c;
};

static void *timer_main(void *arg)
{
    struct timer *tm = arg;
    pthread_mutex_lock(&tm->mu);
    while (!tm->done) {
        int64_t now = time_mono_us();
        if (!tm->fired && now >= tm->deadline_us)
            tm->fired = true;
        if (!tm->stopped && atomic_load_explicit(&tm->c->stopping, memory_order_relaxed))
            tm->stopped = true;
        int64_t wake;
        if (tm->fired || tm->stopped) {
            duckdb_interrupt(tm->c->con);
            wake = now + TIMER_REPEAT_MS * 1000;
        } else {
            wake = now + TIMER_POLL_MS * 1000;
            if (wake > tm->deadline_us)
                wake = tm->deadline_us;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t delta = wake - now;
        ts.tv_sec += delta / 1000000;
        ts.tv_nsec += (delta % 1000000) * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (!tm->done && pthread_cond_timedwait(&tm->cv, &tm->mu, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&tm->mu);
    return NULL;
}

static int timer_start(struct timer *tm, pthread_t *th, struct whd_conn *c, int64_t timeout_us)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&tm->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&tm->mu, NULL);
    tm->done = tm->fired = tm->stopped = false;
    tm->deadline_us = time_mono_us() + timeout_us;
    tm->c = c;
    int rc = pthread_create(th, NULL, timer_main, tm);
    if (rc != 0) {
        pthread_cond_destroy(&tm->cv);
        pthread_mutex_destroy(&tm->mu);
        return -rc;
    }
    return 0;
}

/* Stops the timer (tm->fired and tm->stopped say whether it interrupted the query). */
static void timer_stop(struct timer *tm, pthread_t th)
{
    pthread_mutex_lock(&tm->mu);
    tm->done = true;
    pthread_cond_signal(&tm->cv);
    pthread_mutex_unlock(&tm->mu);
    pthread_join(th, NULL);
    pthread_cond_destroy(&tm->cv);
    pthread_mutex_destroy(&tm->mu);
}

/* ---- the query ---- */

static const char *stmt_type_name(duckdb_statement_type t)
{
    switch (t) {
    case DUCKDB_STATEMENT_TYPE_INSERT: return "INSERT";
    case DUCKDB_STATEMENT_TYPE_UPDATE: return "UPDATE";
    case DUCKDB_STATEMENT_TYPE_DELETE: return "DELETE";
    case DUCKDB_STATEMENT_TYPE_EXPLAIN: return "EXPLAIN";
    case DUCKDB_STATEMENT_TYPE_PREPARE: return "PREPARE";
    case DUCKDB_STATEMENT_TYPE_EXECUTE: return "EXECUTE";
    case DUCKDB_STATEMENT_TYPE_CREATE:
    case DUCKDB_STATEMENT_TYPE_CREATE_FUNC: return "CREATE";
    case DUCKDB_STATEMENT_TYPE_ALTER: return "ALTER";
    case DUCKDB_STATEMENT_TYPE_DROP: return "DROP";
    case DUCKDB_STATEMENT_TYPE_TRANSACTION: return "transaction control";
    case DUCKDB_STATEMENT_TYPE_COPY: return "COPY";
    case DUCKDB_STATEMENT_TYPE_EXPORT: return "EXPORT";
    case DUCKDB_STATEMENT_TYPE_ATTACH: return "ATTACH";
    case DUCKDB_STATEMENT_TYPE_DETACH: return "DETACH";
    case DUCKDB_STATEMENT_TYPE_LOAD: return "INSTALL/LOAD";
    case DUCKDB_STATEMENT_TYPE_SET:
    case DUCKDB_STATEMENT_TYPE_VARIABLE_SET: return "SET";
    case DUCKDB_STATEMENT_TYPE_PRAGMA: return "PRAGMA";
    case DUCKDB_STATEMENT_TYPE_VACUUM: return "VACUUM";
    case DUCKDB_STATEMENT_TYPE_ANALYZE: return "ANALYZE";
    case DUCKDB_STATEMENT_TYPE_CALL: return "CALL";
    default: return "this statement";
    }
}

static int bind_params(struct whd_conn *c, duckdb_prepared_statement ps, const json_t *params)
{
    idx_t want = duckdb_nparams(ps);
    size_t have = params ? json_array_size(params) : 0;
    if (params && !json_is_array(params))
        return whd__fail(c, ERR_INVALID, "params must be an array");
    if (have != want)
        return whd__fail(c, ERR_INVALID, "the query takes %llu parameters, %zu given",
                         (unsigned long long)want, have);
    for (size_t i = 0; i < have; i++) {
        const json_t *p = json_array_get(params, i);
        idx_t k = i + 1;
        duckdb_state st;
        switch (json_typeof(p)) {
        case JSON_NULL: st = duckdb_bind_null(ps, k); break;
        case JSON_TRUE:
        case JSON_FALSE: st = duckdb_bind_boolean(ps, k, json_is_true(p)); break;
        case JSON_INTEGER: st = duckdb_bind_int64(ps, k, json_integer_value(p)); break;
        case JSON_REAL: st = duckdb_bind_double(ps, k, json_real_value(p)); break;
        case JSON_STRING:
            st = duckdb_bind_varchar_length(ps, k, json_string_value(p), json_string_length(p));
            break;
        default: {
            char *text = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
            st = duckdb_bind_varchar(ps, k, text);
            free(text);
        }
        }
        if (st != DuckDBSuccess)
            return whd__fail(c, ERR_INVALID, "cannot bind parameter %zu: %s", i + 1,
                             duckdb_prepare_error(ps) ? duckdb_prepare_error(ps) : "bad value");
    }
    return 0;
}

/* json_dump_callback's sink: counts the bytes */
static int count_bytes(const char *buf, size_t len, void *data)
{
    (void)buf;
    *(uint64_t *)data += len;
    return 0;
}

/* The bytes of row r's strings and blobs (the values that can be large): checked against the
 * cap before they are copied into JSON. */
static uint64_t row_text_bytes(duckdb_data_chunk ch, const duckdb_logical_type *types, idx_t ncols,
                               idx_t r)
{
    uint64_t n = 0;
    for (idx_t k = 0; k < ncols; k++) {
        duckdb_type id = duckdb_get_type_id(types[k]);
        if (id != DUCKDB_TYPE_VARCHAR && id != DUCKDB_TYPE_BLOB)
            continue;
        duckdb_vector v = duckdb_data_chunk_get_vector(ch, k);
        uint64_t *validity = duckdb_vector_get_validity(v);
        if (validity && !duckdb_validity_row_is_valid(validity, r))
            continue;
        n += duckdb_string_t_length(((duckdb_string_t *)duckdb_vector_get_data(v))[r]);
    }
    return n;
}

static int fetch_rows(struct whd_conn *c, duckdb_result *res, uint64_t max_rows, uint64_t max_bytes,
                      struct wh_result *out)
{
    idx_t ncols = duckdb_column_count(res);
    duckdb_logical_type *types = xcalloc(ncols ? ncols : 1, sizeof(*types));
    out->columns = json_array();
    for (idx_t i = 0; i < ncols; i++) {
        types[i] = duckdb_column_logical_type(res, i);
        struct buf b;
        buf_init(&b);
        whd__type_name(&b, types[i]);
        json_array_append_new(
            out->columns,
            json_pack("{s:s,s:s}", "name", duckdb_column_name(res, i), "type", buf_cstr(&b)));
        buf_release(&b);
    }
    out->rows = json_array();
    int rc = 0;
    uint64_t bytes = 0;
    char err[512] = "";
    json_dump_callback(out->columns, count_bytes, &bytes, WH_RESULT_JSON_FLAGS);
    for (;;) {
        duckdb_data_chunk ch = duckdb_fetch_chunk(*res);
        if (!ch)
            break;
        idx_t n = duckdb_data_chunk_get_size(ch);
        for (idx_t r = 0; r < n; r++) {
            if (out->n_rows == max_rows) {
                out->truncated = true;
                break;
            }
            if (row_text_bytes(ch, types, ncols, r) > max_bytes - bytes) {
                rc = ERR_LIMIT;
                break;
            }
            json_t *row = json_array();
            for (idx_t k = 0; k < ncols; k++) {
                json_t *x =
                    value_json(duckdb_data_chunk_get_vector(ch, k), types[k], r, err, sizeof(err));
                if (!x) {
                    json_decref(row);
                    row = NULL;
                    break;
                }
                json_array_append_new(row, x);
            }
            if (!row) {
                rc = whd__fail(c, ERR_INVALID, "%s", err);
                break;
            }
            /* the row as the response will write it, plus its comma */
            uint64_t row_bytes = 1;
            json_dump_callback(row, count_bytes, &row_bytes, WH_RESULT_JSON_FLAGS);
            if (row_bytes > max_bytes - bytes) {
                json_decref(row);
                rc = ERR_LIMIT;
                break;
            }
            bytes += row_bytes;
            json_array_append_new(out->rows, row);
            out->n_rows++;
        }
        duckdb_destroy_data_chunk(&ch);
        if (rc < 0 || out->truncated)
            break;
    }
    if (rc == ERR_LIMIT)
        whd__fail(c, ERR_LIMIT,
                  "the result is larger than %llu bytes after %llu rows: select fewer rows or "
                  "columns, or shorter values",
                  (unsigned long long)max_bytes, (unsigned long long)out->n_rows);
    /* a failure while streaming (an interrupt, a runtime error) shows on the result */
    if (rc == 0 && !out->truncated) {
        const char *e = duckdb_result_error(res);
        duckdb_error_type et = duckdb_result_error_type(res);
        if (e)
            rc = whd__fail(c,
                           et == DUCKDB_ERROR_INTERRUPT       ? ERR_BUSY
                           : et == DUCKDB_ERROR_OUT_OF_MEMORY ? ERR_LIMIT
                                                              : ERR_INVALID,
                           "%s%s", et == DUCKDB_ERROR_OUT_OF_MEMORY ? WH_NO_MEMORY ": " : "", e);
    }
    for (idx_t i = 0; i < ncols; i++)
        duckdb_destroy_logical_type(&types[i]);
    free(types);
    return rc;
}

int whd__query(struct wh_conn *wc, const struct wh_query *q, struct wh_result *out)
{
    struct whd_conn *c = whd__conn(wc);
    struct whd *d = whd__db(wc);
    wh_result_init(out);
    int64_t t0 = time_mono_us();
    int64_t timeout_ms = q->timeout_ms > 0 ? q->timeout_ms : d->cfg.query_timeout_ms;
    uint64_t max_rows = q->max_rows > 0 ? q->max_rows : d->cfg.query_max_rows;
    uint64_t max_bytes = q->max_bytes > 0 ? q->max_bytes : d->cfg.query_max_bytes;
    duckdb_extracted_statements ex = NULL;
    duckdb_prepared_statement ps = NULL;
    duckdb_pending_result pending = NULL;
    duckdb_result res;
    bool have_res = false, in_tx = false, timing = false;
    struct timer tm;
    pthread_t th;
    int rc;

    if (!q->sql)
        return whd__fail(c, ERR_INVALID, "query is missing");
    if (atomic_load(&c->stopping))
        return whd__fail(c, ERR_BUSY, "the warehouse connection is stopping");
    /* the READ ONLY transaction covers preparing too */
    if ((rc = whd__exec(c, "BEGIN TRANSACTION READ ONLY")) < 0) {
        /* a timer that fired just as the previous query finished can leave the interrupt
         * flag set so that its ROLLBACK failed: end that transaction and try once more */
        whd__rollback(c);
        if ((rc = whd__exec(c, "BEGIN TRANSACTION READ ONLY")) < 0)
            goto out;
    }
    in_tx = true;
    /* from here on everything runs under the timeout: parsing, the check, preparing */
    if ((rc = timer_start(&tm, &th, c, timeout_ms * 1000)) < 0) {
        whd__fail(c, rc, "cannot start the query timer");
        goto out;
    }
    timing = true;
    idx_t n = duckdb_extract_statements(c->con, q->sql, &ex);
    if (n == 0) {
        const char *e = duckdb_extract_statements_error(ex);
        rc = whd__fail(c, ERR_INVALID, "%s", e ? e : "empty query");
        goto out;
    }
    if (n > 1) {
        rc = whd__fail(c, ERR_DENIED, "only one statement is allowed, %llu given",
                       (unsigned long long)n);
        goto out;
    }
    /* an analyst's reach is checked before anything is bound: a binder error would name
     * what the statement reached (columns of a table the analyst may not read) */
    if (q->scope && (rc = whd__scope_guard(c->con, q->sql, q->scope, c->err, sizeof(c->err))) < 0)
        goto out;
    if (duckdb_prepare_extracted_statement(c->con, ex, 0, &ps) != DuckDBSuccess) {
        const char *e = duckdb_prepare_error(ps);
        rc = whd__fail(c, ERR_INVALID, "%s", e ? e : "cannot prepare the query");
        goto out;
    }
    duckdb_statement_type st = duckdb_prepared_statement_type(ps);
    if (st != DUCKDB_STATEMENT_TYPE_SELECT) {
        rc = whd__fail(c, ERR_DENIED, "the SQL API is read-only: %s is not allowed",
                       stmt_type_name(st));
        goto out;
    }
    if ((rc = whd__sql_guard(c->con, q->sql, c->err, sizeof(c->err))) < 0)
        goto out;
    if ((rc = bind_params(c, ps, q->params)) < 0)
        goto out;
    if (duckdb_pending_prepared_streaming(ps, &pending) != DuckDBSuccess) {
        const char *e = duckdb_pending_error(pending);
        rc = whd__fail(c, ERR_INVALID, "%s", e ? e : "cannot run the query");
        goto out;
    }
    if (duckdb_execute_pending(pending, &res) != DuckDBSuccess) {
        rc = whd__result_fail(c, &res, NULL);
        goto out;
    }
    have_res = true;
    rc = fetch_rows(c, &res, max_rows, max_bytes, out);
out:
    if (timing)
        timer_stop(&tm, th);
    /* a statement that ran past its deadline fails even when it finished (one long function
     * call, e.g. while folding constants, cannot be interrupted) */
    if (timing && (tm.stopped || (rc < 0 && atomic_load(&c->stopping))))
        rc = whd__fail(c, ERR_BUSY, "the query was interrupted: the warehouse is stopping");
    else if (timing && tm.fired)
        rc = whd__fail(c, ERR_BUSY, "the query ran longer than its %lld ms timeout",
                       (long long)timeout_ms);
    else if (rc == ERR_BUSY)
        rc = ERR_INVALID; /* e.g. a write refused by the READ ONLY transaction: the query's fault */
    if (have_res)
        duckdb_destroy_result(&res);
    if (pending)
        duckdb_destroy_pending(&pending);
    if (ps)
        duckdb_destroy_prepare(&ps);
    if (ex)
        duckdb_destroy_extracted(&ex);
    if (in_tx)
        whd__rollback(c);
    out->elapsed_us = time_mono_us() - t0;
    if (rc < 0)
        wh_result_release(out);
    return rc;
}
