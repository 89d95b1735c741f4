/* trends.c - trends: one value per series, breakdown row and bucket.
 *
 * One statement: the events of the range (and, for wau/mau, of the days before it) that match
 * the query's filters and some series, with their bucket, person (the stored person_key) and
 * breakdown rank; then per series a GROUP BY GROUPING SETS ((rank, bucket), (rank)) with the
 * series' math, the second set giving the whole-range count. Unique users instead group each
 * person's buckets into bit masks and count the persons of every bucket with the aggregate
 * tandem_bitcount. wau/mau use the merged-interval trick: each person's
 * active days become the intervals [day, day + W), overlaps cut off with lag(), and the
 * statement returns +1/-1 per interval edge per day; the running sum (done here over the few
 * aggregated day rows) is the number of distinct persons active in the W days ending on a day.
 *
 * Rows: (kind, series, rank, bucket or day, value, breakdown text). kind 0: a value (bucket
 * NULL: the whole range), 1: a wau/mau edge. */
#include <string.h>

#include "analytics/analytics_int.h"

static bool needs_person(enum an_math m)
{
    return m == AN_MATH_UNIQUE || m == AN_MATH_WAU || m == AN_MATH_MAU;
}

/* wau/mau window in days, 0 when the math is plain unique users at this interval */
static int window_days(const struct an_query *q, const struct an_entity *e)
{
    if (e->math == AN_MATH_WAU && q->interval != AN_WEEK && q->interval != AN_MONTH)
        return 7;
    if (e->math == AN_MATH_MAU && q->interval != AN_MONTH)
        return 30;
    return 0;
}

static void agg_sql(struct an_sql *s, enum an_math m, size_t i)
{
    static const char *const fn[] = {
        [AN_MATH_SUM] = "sum",
        [AN_MATH_AVG] = "avg",
        [AN_MATH_MIN] = "min",
        [AN_MATH_MAX] = "max",
        [AN_MATH_MEDIAN] = "quantile_cont",
        [AN_MATH_P90] = "quantile_cont",
        [AN_MATH_P95] = "quantile_cont",
        [AN_MATH_P99] = "quantile_cont",
    };
    static const char *const arg[] = {
        [AN_MATH_SUM] = "",       [AN_MATH_AVG] = "",         [AN_MATH_MIN] = "",
        [AN_MATH_MAX] = "",       [AN_MATH_MEDIAN] = ", 0.5", [AN_MATH_P90] = ", 0.9",
        [AN_MATH_P95] = ", 0.95", [AN_MATH_P99] = ", 0.99",
    };
    switch (m) {
    case AN_MATH_TOTAL: an__sql_put(s, "count(*)::DOUBLE"); return;
    case AN_MATH_UNIQUE:
    case AN_MATH_WAU:
    case AN_MATH_MAU: an__sql_put(s, "count(DISTINCT person)::DOUBLE"); return;
    default: an__sql_printf(s, "coalesce(%s(mp%zu%s), 0)::DOUBLE", fn[m], i, arg[m]); return;
    }
}

static void build(struct an_sql *s, const struct an_query *q, const struct an_time *t,
                  bool lookback, int64_t horizon)
{
    bool persons = false;
    for (size_t i = 0; i < q->n_ents; i++)
        persons |= needs_person(q->ents[i].math);
    an__sql_put(s, "WITH ");
    /* read more than once: computed once */
    bool multi = q->has_breakdown || q->n_ents > 1 || lookback;
    an__sql_put(s, multi ? "e0 AS MATERIALIZED (SELECT " : "e0 AS (SELECT ");
    an__sql_bucket(s, t, "e.\"timestamp\"");
    an__sql_put(s, " AS b");
    if (lookback) {
        an__sql_put(s, ", ");
        an__sql_day(s, t, "e.\"timestamp\"");
        an__sql_put(s, " AS dd");
    }
    if (persons)
        an__sql_put(s, ", " AN_SQL_PERSON " AS person");
    an__sql_breakdown(s, q);
    for (size_t i = 0; i < q->n_ents; i++) {
        an__sql_put(s, ", ");
        an__sql_entity(s, &q->ents[i]);
        an__sql_printf(s, " AS f%zu", i);
        if (q->ents[i].has_math_prop) {
            an__sql_put(s, ", TRY_CAST(");
            an__sql_key(s, &q->ents[i].math_prop);
            an__sql_printf(s, " AS DOUBLE) AS mp%zu", i);
        }
    }
    an__sql_events(s, horizon);
    /* wau/mau with hour buckets: the last label's whole local day counts */
    int64_t hi = t->range_hi_us;
    if (lookback && t->interval == AN_HOUR)
        hi = an__utc_of_local(t, (t->day_of[t->n_buckets - 1] + 1) * AN_US_DAY);
    an__sql_range(s, "e.\"timestamp\"", lookback ? t->scan_lo_us : t->range_lo_us, hi);
    an__sql_put(s, " AND ");
    an__sql_filters(s, q->filters, q->n_filters);
    an__sql_put(s, " AND (");
    for (size_t i = 0; i < q->n_ents; i++) {
        if (i)
            an__sql_put(s, " OR ");
        an__sql_entity(s, &q->ents[i]);
    }
    an__sql_put(s, ")), ");
    an__sql_rank(s, q, "e0", "e", t->n_buckets);
    /* wau/mau: each person's active days (read twice below) */
    for (size_t i = 0; i < q->n_ents; i++)
        if (window_days(q, &q->ents[i]))
            an__sql_printf(s,
                           ", pd%zu AS MATERIALIZED (SELECT DISTINCT rk, person, dd FROM e "
                           "WHERE f%zu) ",
                           i, i);
    /* unique users: per (row, person) the buckets active as bit masks of 64 buckets each (one
     * GROUP BY over the events, by person alone without breakdown or beyond 64 buckets), then
     * per (row, word) the persons of each bucket (tandem_bitcount) and of the row */
    bool wide = t->n_buckets > 64;
    for (size_t i = 0; i < q->n_ents; i++)
        if (needs_person(q->ents[i].math)) {
            an__sql_printf(s,
                           ", u%zu AS %s(SELECT %s, person, %s, bit_or(1::UBIGINT << (b %% "
                           "64)::UTINYINT) AS m FROM e WHERE f%zu AND b >= 0 AND b < ",
                           i, wide ? "MATERIALIZED " : "", q->has_breakdown ? "rk" : "0 AS rk",
                           wide ? "b // 64 AS w" : "0 AS w", i);
            an__sql_int(s, (int64_t)t->n_buckets);
            an__sql_printf(s,
                           " GROUP BY person%s%s), a%zu AS MATERIALIZED (SELECT rk, w, "
                           "tandem_bitcount(m) AS c, count(*) AS n FROM u%zu GROUP BY rk, w) ",
                           q->has_breakdown ? ", rk" : "", wide ? ", w" : "", i, i);
        }
    /* per series: the value of each (row, bucket) and of each row over the range; the rows
     * with a whole-range value are the breakdown rows present */
    for (size_t i = 0; i < q->n_ents; i++) {
        const struct an_entity *en = &q->ents[i];
        int w = window_days(q, en);
        an__sql_printf(s, "%sSELECT 0 AS kind, %zu AS s, rk, ", i ? " UNION ALL " : "", i);
        if (needs_person(en->math)) {
            an__sql_printf(s,
                           "w * 64 + unnest(range(64)) AS b, unnest(c)::DOUBLE AS v, NULL AS bd "
                           "FROM a%zu UNION ALL SELECT 0, %zu, rk, NULL, ",
                           i, i);
            /* up to 64 buckets a person is one row of u: a row's persons are its count */
            an__sql_put(s, wide ? "count(DISTINCT person)::DOUBLE, " : "n::DOUBLE, ");
            if (q->has_breakdown)
                an__sql_printf(s,
                               "CASE WHEN rk < %d THEN (SELECT t2.bd FROM top t2 WHERE t2.rk = "
                               "u.rk) END",
                               AN_RANK_OTHER);
            else
                an__sql_put(s, "NULL");
            an__sql_printf(s, wide ? " FROM u%zu u GROUP BY rk" : " FROM a%zu u", i);
        } else {
            an__sql_put(s, "b, ");
            agg_sql(s, en->math, i);
            an__sql_printf(s,
                           " AS v, CASE WHEN rk < %d THEN any_value(bd) END AS bd FROM e WHERE "
                           "f%zu AND b >= 0 AND b < ",
                           AN_RANK_OTHER, i);
            an__sql_int(s, (int64_t)t->n_buckets);
            an__sql_put(s, " GROUP BY GROUPING SETS ((rk, b), (rk))");
        }
        if (w) {
            an__sql_printf(s,
                           " UNION ALL SELECT 1, %zu, rk, day, sum(d)::DOUBLE, NULL FROM ("
                           "SELECT rk, greatest(dd, coalesce(lag(dd) OVER (PARTITION BY rk, "
                           "person ORDER BY dd) + %d, dd)) AS day, 1 AS d, dd FROM pd%zu "
                           "UNION ALL SELECT rk, dd + %d, -1, dd FROM pd%zu) GROUP BY rk, day",
                           i, w, i, w, i);
        }
    }
}

struct row_key {
    int rk;
    const char *bd;
};

static int cmp_rk(const void *a, const void *b)
{
    const struct row_key *x = a, *y = b;
    return (x->rk > y->rk) - (x->rk < y->rk);
}

int an__trends(struct an_ctx *x, json_t **out)
{
    const struct an_query *q = x->q;
    const struct an_time *t = x->t;
    bool lookback = false;
    for (size_t i = 0; i < q->n_ents; i++)
        lookback |= window_days(q, &q->ents[i]) > 0;
    struct an_sql s;
    an__sql_init(&s);
    build(&s, q, t, lookback, x->horizon);
    json_t *rows = NULL;
    int rc = an__sql_run(x->c, &s, &rows, x->msg, x->msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;

    /* breakdown rows in rank order (AN_RANK_OTHER, then AN_RANK_NULL come last) */
    size_t n_rows = 0;
    struct row_key *keys = arena_zalloc(x->a, (json_array_size(rows) + 1) * sizeof(*keys));
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        if (json_integer_value(json_array_get(r, 0)) != 0 || !json_is_null(json_array_get(r, 3)))
            continue;
        int rk = (int)json_integer_value(json_array_get(r, 2));
        size_t k = 0;
        while (k < n_rows && keys[k].rk != rk)
            k++;
        if (k < n_rows)
            continue; /* present already (another series) */
        keys[n_rows].rk = rk;
        const char *bd = json_string_value(json_array_get(r, 5));
        keys[n_rows].bd = bd ? arena_strdup(x->a, bd) : NULL;
        n_rows++;
    }
    if (n_rows == 0 && !q->has_breakdown)
        keys[n_rows++].rk = 0; /* no event at all: one row of zeros per series */
    qsort(keys, n_rows, sizeof(*keys), cmp_rk);
    size_t nb = t->n_buckets;
    size_t n_cells = q->n_ents * n_rows;
    double *vals = arena_zalloc(x->a, (n_cells * nb + 1) * sizeof(double));
    double *counts = arena_zalloc(x->a, (n_cells + 1) * sizeof(double));
    /* wau/mau: per (series, row) the edges per day, from the first scanned day */
    int64_t first_day = (t->scan_lo_us - t->dbase_us) / AN_US_DAY - 2;
    int64_t last_day = t->day_of[nb - 1] - t->dbase_us / AN_US_DAY + 1;
    size_t n_days = (size_t)(last_day - first_day + 1);
    double *edges = NULL;
    if (lookback)
        edges = arena_zalloc(x->a, (n_cells * n_days + 1) * sizeof(double));
    json_array_foreach(rows, i, r)
    {
        int kind = (int)json_integer_value(json_array_get(r, 0));
        size_t se = (size_t)json_integer_value(json_array_get(r, 1));
        int rk = (int)json_integer_value(json_array_get(r, 2));
        size_t row = 0;
        while (row < n_rows && keys[row].rk != rk)
            row++;
        if (row == n_rows || se >= q->n_ents)
            continue;
        size_t cell = se * n_rows + row;
        json_t *jb = json_array_get(r, 3);
        double v = an__num(json_array_get(r, 4));
        if (kind == 1) {
            int64_t day = json_integer_value(jb);
            if (day >= first_day && day <= last_day)
                edges[cell * n_days + (size_t)(day - first_day)] += v;
        } else if (json_is_null(jb)) {
            counts[cell] = v;
        } else {
            int64_t b = json_integer_value(jb);
            if (b >= 0 && (size_t)b < nb)
                vals[cell * nb + (size_t)b] = v;
        }
    }
    json_decref(rows);

    json_t *results = json_array();
    for (size_t se = 0; se < q->n_ents; se++) {
        const struct an_entity *en = &q->ents[se];
        bool prop = en->math >= AN_MATH_SUM;
        int w = window_days(q, en);
        for (size_t row = 0; row < n_rows; row++) {
            size_t cell = se * n_rows + row;
            if (w) {
                /* running sum of the edges, read at each label's day */
                double run = 0;
                size_t k = 0;
                for (size_t d = 0; d < n_days && k < nb; d++) {
                    run += edges[cell * n_days + d];
                    while (k < nb &&
                           t->day_of[k] - t->dbase_us / AN_US_DAY == first_day + (int64_t)d) {
                        vals[cell * nb + k] = run;
                        k++;
                    }
                }
            }
            json_t *data = json_array();
            for (size_t k = 0; k < nb; k++) {
                double v = vals[cell * nb + k];
                json_array_append_new(data, prop ? json_real(v) : json_integer((json_int_t)v));
            }
            json_t *bd = an__breakdown_json(q, keys[row].rk, keys[row].bd ? keys[row].bd : "");
            json_t *o = json_object();
            json_object_set_new(o, "series", json_integer((json_int_t)se));
            json_object_set_new(o, "label", json_string(en->label));
            json_object_set_new(o, "event", en->event ? json_string(en->event) : json_null());
            json_object_set_new(o, "math", json_string(en->math_name));
            json_object_set_new(o, "breakdown", bd);
            json_object_set_new(o, "labels", an__labels(t));
            json_object_set_new(o, "data", data);
            json_object_set_new(o, "count",
                                prop ? json_real(counts[cell])
                                     : json_integer((json_int_t)counts[cell]));
            json_array_append_new(results, o);
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "results", results);
    an__common(o, q, t, true);
    *out = o;
    return 0;
}
