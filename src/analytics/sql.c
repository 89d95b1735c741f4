/* sql.c - the SQL builder of the insights: text with "$n" placeholders and the JSON array of
 * their values. Client text (event names, property paths, filter values, the time zone) is
 * only ever a bound value; the text itself holds fixed column names and numbers we made. */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "analytics/analytics_int.h"

void an__sql_init(struct an_sql *s)
{
    buf_init(&s->b);
    s->params = json_array();
}

void an__sql_release(struct an_sql *s)
{
    buf_release(&s->b);
    json_decref(s->params);
    s->params = NULL;
}

void an__sql_put(struct an_sql *s, const char *text)
{
    buf_puts(&s->b, text);
}

void an__sql_printf(struct an_sql *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&s->b, fmt, ap);
    va_end(ap);
}

void an__sql_param(struct an_sql *s, json_t *v)
{
    json_array_append_new(s->params, v);
    buf_printf(&s->b, "$%zu", json_array_size(s->params));
}

void an__sql_int(struct an_sql *s, int64_t v)
{
    an__sql_param(s, json_integer(v));
}

void an__sql_str(struct an_sql *s, const char *v)
{
    an__sql_param(s, json_string(v));
}

void an__sql_key(struct an_sql *s, const struct an_key *k)
{
    if (!k->pointer) {
        an__sql_printf(s, "e.%s", k->column);
        return;
    }
    an__sql_printf(s, "json_extract_string(e.%s, ", k->column);
    an__sql_str(s, k->pointer);
    an__sql_put(s, ")");
}

static void filter_sql(struct an_sql *s, const struct an_filter *f)
{
    switch (f->op) {
    case AN_OP_EXACT:
    case AN_OP_IS_NOT: {
        an__sql_put(s, f->op == AN_OP_IS_NOT ? "NOT coalesce(" : "coalesce(");
        an__sql_key(s, &f->key);
        an__sql_put(s, " IN (");
        for (size_t i = 0; i < json_array_size(f->values); i++) {
            if (i)
                an__sql_put(s, ", ");
            an__sql_param(s, json_incref(json_array_get(f->values, i)));
        }
        an__sql_put(s, "), false)");
        return;
    }
    case AN_OP_GT:
    case AN_OP_GTE:
    case AN_OP_LT:
    case AN_OP_LTE: {
        static const char *const cmp[] = {">", ">=", "<", "<="};
        an__sql_put(s, "coalesce(TRY_CAST(");
        an__sql_key(s, &f->key);
        an__sql_printf(s, " AS DOUBLE) %s ", cmp[f->op - AN_OP_GT]);
        an__sql_param(s, json_real(f->number));
        an__sql_put(s, ", false)");
        return;
    }
    case AN_OP_ICONTAINS:
    case AN_OP_NOT_ICONTAINS:
        an__sql_put(s, f->op == AN_OP_NOT_ICONTAINS ? "NOT coalesce(contains(lower("
                                                    : "coalesce(contains(lower(");
        an__sql_key(s, &f->key);
        an__sql_put(s, "), lower(");
        an__sql_param(s, json_incref(json_array_get(f->values, 0)));
        an__sql_put(s, ")), false)");
        return;
    case AN_OP_IS_SET:
    case AN_OP_IS_NOT_SET:
        an__sql_put(s, "(");
        an__sql_key(s, &f->key);
        an__sql_put(s, f->op == AN_OP_IS_SET ? " IS NOT NULL)" : " IS NULL)");
        return;
    }
}

void an__sql_filters(struct an_sql *s, const struct an_filter *f, size_t n)
{
    if (n == 0) {
        an__sql_put(s, "true");
        return;
    }
    an__sql_put(s, "(");
    for (size_t i = 0; i < n; i++) {
        if (i)
            an__sql_put(s, " AND ");
        filter_sql(s, &f[i]);
    }
    an__sql_put(s, ")");
}

void an__sql_entity(struct an_sql *s, const struct an_entity *e)
{
    an__sql_put(s, "(");
    if (e->event) {
        /* NULL for events without a name: false wherever a match is tested */
        an__sql_put(s, "e.event = ");
        an__sql_str(s, e->event);
    } else {
        an__sql_put(s, "true");
    }
    if (e->n_filters) {
        an__sql_put(s, " AND ");
        an__sql_filters(s, e->filters, e->n_filters);
    }
    an__sql_put(s, ")");
}

void an__sql_local(struct an_sql *s, const struct an_time *t, const char *col)
{
    an__sql_printf(s, "(epoch_us(%s) + ", col);
    if (t->n_segs <= 1) {
        an__sql_int(s, t->segs[0].off_us);
    } else {
        an__sql_put(s, "CASE");
        for (size_t i = 1; i < t->n_segs; i++) {
            an__sql_printf(s, " WHEN epoch_us(%s) < ", col);
            an__sql_int(s, t->segs[i].from_us);
            an__sql_put(s, " THEN ");
            an__sql_int(s, t->segs[i - 1].off_us);
        }
        an__sql_put(s, " ELSE ");
        an__sql_int(s, t->segs[t->n_segs - 1].off_us);
        an__sql_put(s, " END");
    }
    an__sql_put(s, ")");
}

void an__sql_day(struct an_sql *s, const struct an_time *t, const char *col)
{
    an__sql_put(s, "((");
    an__sql_local(s, t, col);
    an__sql_put(s, " - ");
    an__sql_int(s, t->dbase_us);
    an__sql_printf(s, ") // %lld)", (long long)AN_US_DAY);
}

void an__sql_bucket(struct an_sql *s, const struct an_time *t, const char *col)
{
    switch (t->interval) {
    case AN_DAY:
    case AN_WEEK:
        an__sql_put(s, "((");
        an__sql_local(s, t, col);
        an__sql_put(s, " - ");
        an__sql_int(s, t->dbase_us);
        an__sql_printf(s, ") // %lld - ",
                       (long long)(t->interval == AN_DAY ? AN_US_DAY : 7 * AN_US_DAY));
        an__sql_int(s, t->k0);
        an__sql_put(s, ")");
        return;
    case AN_MONTH:
        an__sql_put(s, "(year(make_timestamp(");
        an__sql_local(s, t, col);
        an__sql_put(s, ")) * 12 + month(make_timestamp(");
        an__sql_local(s, t, col);
        an__sql_put(s, ")) - 1 - ");
        an__sql_int(s, t->k0);
        an__sql_put(s, ")");
        return;
    case AN_HOUR:
        an__sql_printf(s, "((epoch_us(%s) - (", col);
        an__sql_local(s, t, col);
        an__sql_put(s, " - ");
        an__sql_int(s, t->dbase_us);
        an__sql_printf(s, ") %% %lld - ", (long long)AN_US_HOUR);
        an__sql_int(s, t->hbase_us);
        an__sql_printf(s, ") // %lld - ", (long long)AN_US_HOUR);
        an__sql_int(s, t->k0);
        an__sql_put(s, ")");
        return;
    }
}

void an__sql_breakdown(struct an_sql *s, const struct an_query *q)
{
    if (!q->has_breakdown) {
        an__sql_put(s, ", NULL::VARCHAR AS bd");
        return;
    }
    an__sql_put(s, ", nullif(");
    an__sql_key(s, &q->breakdown);
    an__sql_put(s, ", '') AS bd");
}

void an__sql_rank(struct an_sql *s, const struct an_query *q, const char *from, const char *out,
                  size_t n_buckets)
{
    if (!q->has_breakdown) {
        an__sql_printf(s, "%s AS (SELECT %s.*, 0 AS rk FROM %s) ", out, from, from);
        return;
    }
    an__sql_printf(s, "bdr AS (SELECT bd, count(*) AS n FROM %s WHERE ", from);
    if (n_buckets)
        an__sql_printf(s, "b >= 0 AND b < %zu AND ", n_buckets);
    an__sql_printf(s,
                   "bd IS NOT NULL GROUP BY bd), top AS (SELECT bd, row_number() OVER (ORDER BY "
                   "n DESC, bd) AS rk FROM bdr ORDER BY rk LIMIT %d), %s AS (SELECT %s.*, CASE "
                   "WHEN %s.bd IS NULL THEN %d ELSE coalesce(top.rk, %d) END AS rk FROM %s LEFT "
                   "JOIN top ON top.bd = %s.bd) ",
                   AN_BREAKDOWN_LIMIT, out, from, from, AN_RANK_NULL, AN_RANK_OTHER, from, from);
}

void an__sql_events(struct an_sql *s, int64_t horizon)
{
    an__sql_put(s, " FROM events e WHERE ");
    if (horizon >= 0) {
        /* typed like the column: a BIGINT would compare every row as HUGEINT */
        an__sql_put(s, "e.log_offset < ");
        an__sql_int(s, horizon);
        an__sql_put(s, "::UBIGINT AND ");
    }
}

void an__sql_range(struct an_sql *s, const char *col, int64_t lo_us, int64_t hi_us)
{
    an__sql_printf(s, "%s >= make_timestamp(", col);
    an__sql_int(s, lo_us);
    an__sql_printf(s, ") AND %s < make_timestamp(", col);
    an__sql_int(s, hi_us);
    an__sql_put(s, ")");
}

int an__sql_run(struct wh_conn *c, struct an_sql *s, json_t **rows_out, char *msg, size_t msg_len)
{
    struct wh_query q = {
        .sql = buf_cstr(&s->b), .params = s->params, .timeout_ms = 0, .max_rows = 100000000};
    struct wh_result r;
    *rows_out = NULL;
    int rc = wh_query(c, &q, &r);
    if (xlog_enabled(XLOG_DEBUG)) {
        char *p = json_dumps(s->params, JSON_COMPACT);
        xlog_debug("insight statement (%s, %lld us): %s params %s", rc == 0 ? "ok" : "failed",
                   rc == 0 ? (long long)r.elapsed_us : 0LL, q.sql, p ? p : "?");
        free(p);
    }
    if (rc < 0) {
        snprintf(msg, msg_len, "%s", wh_errmsg(c));
        return rc;
    }
    *rows_out = r.rows;
    r.rows = NULL;
    wh_result_release(&r);
    return 0;
}
