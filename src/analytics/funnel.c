/* funnel.c - funnels over the events in range, each with a bit mask of the steps and exclusions
 * it matches. Without a breakdown one C aggregate, tandem_funnel_steps, gives every step's
 * cumulative count and mean and median conversion time; with one, tandem_funnel per actor
 * (GROUP BY person), then those totals per breakdown value. */
#include <string.h>

#include "analytics/analytics_int.h"

/* n_steps, window_us, mode, exclusions: the constant arguments of both funnel aggregates */
static void funnel_args(struct an_sql *s, const struct an_query *q, const char *mode,
                        const char *ex)
{
    an__sql_int(s, (int64_t)q->n_ents);
    an__sql_put(s, "::INTEGER, ");
    an__sql_int(s, q->window_us);
    an__sql_put(s, "::BIGINT, ");
    an__sql_str(s, mode);
    an__sql_put(s, ", ");
    an__sql_str(s, ex);
}

static void build(struct an_sql *s, const struct an_query *q, const struct an_time *t,
                  int64_t horizon)
{
    an__sql_put(s, "WITH ev AS (SELECT " AN_SQL_PERSON " AS person, e.\"timestamp\" AS ts, (");
    for (size_t i = 0; i < q->n_ents; i++) {
        an__sql_put(s, i ? " + CASE WHEN " : "CASE WHEN ");
        an__sql_entity(s, &q->ents[i]);
        an__sql_printf(s, " THEN %lu ELSE 0 END", 1UL << i);
    }
    for (size_t j = 0; j < q->n_excl; j++) {
        an__sql_put(s, " + CASE WHEN ");
        an__sql_entity(s, &q->excl[j]);
        an__sql_printf(s, " THEN %lu ELSE 0 END", 1UL << (20 + j));
    }
    an__sql_put(s, ")::UINTEGER AS mask");
    an__sql_breakdown(s, q);
    an__sql_events(s, horizon);
    an__sql_range(s, "e.\"timestamp\"", t->range_lo_us, t->range_hi_us);
    an__sql_put(s, " AND ");
    an__sql_filters(s, q->filters, q->n_filters);
    if (q->order != AN_ORDER_STRICT) {
        an__sql_put(s, " AND (");
        for (size_t i = 0; i < q->n_ents; i++) {
            if (i)
                an__sql_put(s, " OR ");
            an__sql_entity(s, &q->ents[i]);
        }
        for (size_t j = 0; j < q->n_excl; j++) {
            an__sql_put(s, " OR ");
            an__sql_entity(s, &q->excl[j]);
        }
        an__sql_put(s, ")");
    }
    /* the aggregate's constant arguments */
    struct buf ex;
    buf_init(&ex);
    for (size_t j = 0; j < q->n_excl; j++)
        buf_printf(&ex, "%s%d-%d", j ? "," : "", q->excl[j].from_step, q->excl[j].to_step);
    static const char *const modes[] = {"ordered", "strict", "unordered"};
    an__sql_put(s, "), ");
    if (!q->has_breakdown) {
        /* the whole funnel in one aggregate: [c0, c1, avg1, median1, ...] */
        an__sql_put(s, "a AS (SELECT tandem_funnel_steps(person, ts, mask, ");
        funnel_args(s, q, modes[q->order], buf_cstr(&ex));
        an__sql_put(s, ") AS r FROM ev) SELECT 0 AS rk, NULL::VARCHAR AS bd");
        for (size_t i = 1; i <= 3 * q->n_ents - 2; i++)
            an__sql_printf(s, ", r[%zu]", i);
        an__sql_put(s, " FROM a WHERE r IS NOT NULL");
        buf_release(&ex);
        return;
    }
    an__sql_put(s, "a AS (SELECT person, tandem_funnel(ts, mask, ");
    funnel_args(s, q, modes[q->order], buf_cstr(&ex));
    buf_release(&ex);
    /* the person's breakdown value: that of its first event that has one */
    an__sql_put(s, ") AS r, arg_min(bd, ts) FILTER (WHERE bd IS NOT NULL) AS bd FROM ev "
                   "GROUP BY person), ");
    /* the furthest step and the step times, taken out of the list once */
    an__sql_put(s, "f AS (SELECT r[1]::INTEGER AS fs");
    for (size_t i = 1; i < q->n_ents; i++)
        an__sql_printf(s, ", r[%zu] AS t%zu", i + 1, i);
    an__sql_put(s, ", bd FROM a WHERE r[1] >= 0), ");
    an__sql_rank(s, q, "f", "g", 0);
    an__sql_printf(s, "SELECT rk, CASE WHEN rk < %d THEN any_value(bd) END", AN_RANK_OTHER);
    for (size_t i = 0; i < q->n_ents; i++) {
        an__sql_printf(s, ", count(*) FILTER (WHERE fs >= %zu)", i);
        if (i)
            an__sql_printf(s,
                           ", avg(t%zu) FILTER (WHERE fs >= %zu)"
                           ", quantile_cont(t%zu, 0.5) FILTER (WHERE fs >= %zu)",
                           i, i, i, i);
    }
    an__sql_put(s, " FROM g GROUP BY rk ORDER BY rk");
}

static json_t *steps_json(const struct an_query *q, const json_t *row)
{
    json_t *steps = json_array();
    double c0 = 0, prev = 0;
    size_t col = 2;
    for (size_t i = 0; i < q->n_ents; i++) {
        double c = row ? an__num(json_array_get(row, col)) : 0;
        col++;
        json_t *avg = json_null(), *med = json_null();
        if (i) {
            const json_t *ja = row ? json_array_get(row, col) : NULL;
            const json_t *jm = row ? json_array_get(row, col + 1) : NULL;
            col += 2;
            if (c > 0 && ja && !json_is_null(ja)) {
                json_decref(avg);
                avg = json_real(an__num(ja));
            }
            if (c > 0 && jm && !json_is_null(jm)) {
                json_decref(med);
                med = json_real(an__num(jm));
            }
        } else {
            c0 = c;
        }
        json_t *o = json_object();
        json_object_set_new(o, "order", json_integer((json_int_t)i));
        json_object_set_new(o, "name", json_string(q->ents[i].label));
        json_object_set_new(o, "count", json_integer((json_int_t)c));
        json_object_set_new(o, "conversionRate",
                            i == 0 ? json_integer(c0 > 0) : json_real(c0 > 0 ? c / c0 : 0));
        json_object_set_new(o, "stepConversionRate",
                            i == 0 ? json_integer(1) : json_real(prev > 0 ? c / prev : 0));
        json_object_set_new(o, "averageConversionTime", avg);
        json_object_set_new(o, "medianConversionTime", med);
        json_array_append_new(steps, o);
        prev = c;
    }
    return steps;
}

int an__funnel(struct an_ctx *x, json_t **out)
{
    const struct an_query *q = x->q;
    struct an_sql s;
    an__sql_init(&s);
    build(&s, q, x->t, x->horizon);
    json_t *rows = NULL;
    int rc = an__sql_run(x->c, &s, &rows, x->msg, x->msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    json_t *results = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        int rk = (int)json_integer_value(json_array_get(r, 0));
        json_t *bd = an__breakdown_json(q, rk, json_string_value(json_array_get(r, 1)));
        json_array_append_new(results,
                              json_pack("{s:o,s:o}", "breakdown", bd, "steps", steps_json(q, r)));
    }
    if (json_array_size(rows) == 0 && !q->has_breakdown)
        json_array_append_new(results,
                              json_pack("{s:n,s:o}", "breakdown", "steps", steps_json(q, NULL)));
    json_decref(rows);
    json_t *o = json_object();
    json_object_set_new(o, "results", results);
    an__common(o, q, x->t, false);
    *out = o;
    return 0;
}
