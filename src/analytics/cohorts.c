/* cohorts.c - the insights built on each person's set of active buckets: retention,
 * stickiness and lifecycle. Each is one statement: the active buckets of every person first
 * ((person, bucket) pairs by a DISTINCT that shrinks the events a lot, or, for retention over
 * at most 64 periods, one bit mask per person), then joins, window functions or bit counts. */
#include <string.h>

#include "analytics/analytics_int.h"

static void events_from(struct an_sql *s, const struct an_query *q, int64_t horizon, int64_t lo,
                        int64_t hi)
{
    an__sql_events(s, horizon);
    an__sql_range(s, "e.\"timestamp\"", lo, hi);
    an__sql_put(s, " AND ");
    an__sql_filters(s, q->filters, q->n_filters);
}

/* ft: each person's first target event, over all time */
static void first_time(struct an_sql *s, const struct an_query *q, int64_t horizon)
{
    an__sql_put(s, "ft AS (SELECT " AN_SQL_PERSON " AS person, min(e.\"timestamp\") AS ft");
    an__sql_events(s, horizon);
    an__sql_filters(s, q->filters, q->n_filters);
    an__sql_put(s, " AND ");
    an__sql_entity(s, &q->target);
    an__sql_put(s, " GROUP BY 1)");
}

/* ---- retention ---- */

/* Whether two entities select the same events (the same SQL and parameters). */
static bool same_entity(const struct an_entity *a, const struct an_entity *b)
{
    struct an_sql x, y;
    an__sql_init(&x);
    an__sql_init(&y);
    an__sql_entity(&x, a);
    an__sql_entity(&y, b);
    bool same = x.b.len == y.b.len && memcmp(x.b.ptr, y.b.ptr, x.b.len) == 0 &&
                json_equal(x.params, y.params);
    an__sql_release(&x);
    an__sql_release(&y);
    return same;
}

/* Retention with at most 64 periods: each person's target and return periods as two bit
 * masks (one GROUP BY over the events), then one pass counting every (cohort, k) cell. One row
 * of n(n+1)/2 counts, cohort by cohort. When the target and the returning event are the same
 * (pageview -> pageview, the common case) the two masks are equal: one mask is aggregated,
 * without the per-row CASE (the GROUP BY was most of the statement's time). */
static void retention_bits(struct an_sql *s, const struct an_query *q, const struct an_time *t,
                           int64_t horizon)
{
    bool same = same_entity(&q->target, &q->returning);
    an__sql_put(s, "WITH ev AS (SELECT " AN_SQL_PERSON " AS person, ");
    an__sql_bucket(s, t, "e.\"timestamp\"");
    an__sql_put(s, " AS b");
    if (!same) {
        an__sql_put(s, ", ");
        an__sql_entity(s, &q->target);
        an__sql_put(s, " AS tg, ");
        an__sql_entity(s, &q->returning);
        an__sql_put(s, " AS rt");
    }
    events_from(s, q, horizon, t->range_lo_us, t->range_hi_us);
    an__sql_put(s, " AND (");
    an__sql_entity(s, &q->target);
    if (!same) {
        an__sql_put(s, " OR ");
        an__sql_entity(s, &q->returning);
    }
    /* (UTINYINT shifts keep the masks UBIGINT; a BIGINT shift would make them HUGEINT) */
    if (same)
        an__sql_put(s, ")), p AS (SELECT person, tm, tm AS rm FROM (SELECT person, "
                       "bit_or(1::UBIGINT << b::UTINYINT) AS tm FROM ev GROUP BY person))");
    else
        an__sql_put(s, ")), p AS (SELECT person, coalesce(bit_or(CASE WHEN tg THEN 1::UBIGINT "
                       "<< b::UTINYINT END), 0::UBIGINT) AS tm, coalesce(bit_or(CASE WHEN rt "
                       "THEN 1::UBIGINT << b::UTINYINT END), 0::UBIGINT) AS rm FROM ev GROUP BY "
                       "person)");
    const char *from = "p";
    if (q->first_time) {
        an__sql_put(s, ", ");
        first_time(s, q, horizon);
        an__sql_put(s, ", p2 AS (SELECT p.person, CASE WHEN ");
        an__sql_range(s, "ft.ft", t->range_lo_us, t->range_hi_us);
        an__sql_put(s, " THEN 1::UBIGINT << (");
        an__sql_bucket(s, t, "ft.ft");
        an__sql_put(s, ")::UTINYINT ELSE 0::UBIGINT END AS tm, p.rm FROM p JOIN ft ON ft.person = "
                       "p.person)");
        from = "p2";
    }
    /* each person's cohorts i (bits of tm), and per cohort the later periods i + k it returned
     * in (bits of rm above i): rows (cohort, k, persons) */
    an__sql_printf(s,
                   ", c AS (SELECT unnest(tandem_bits(tm)) AS i, rm FROM %s) "
                   "SELECT i, 0, count(*) FROM c GROUP BY i UNION ALL SELECT i, k, count(*) FROM "
                   "(SELECT i, unnest(tandem_bits((rm >> i) >> 1)) + 1 AS k FROM c) GROUP BY i, k",
                   from);
}

int an__retention(struct an_ctx *x, json_t **out)
{
    const struct an_query *q = x->q;
    const struct an_time *t = x->t;
    struct an_sql s;
    an__sql_init(&s);
    if (t->n_buckets <= 64) {
        retention_bits(&s, q, t, x->horizon);
        goto run;
    }
    an__sql_put(&s, "WITH ev AS (SELECT " AN_SQL_PERSON " AS person, ");
    an__sql_bucket(&s, t, "e.\"timestamp\"");
    an__sql_put(&s, " AS b, ");
    an__sql_entity(&s, &q->target);
    an__sql_put(&s, " AS tg, ");
    an__sql_entity(&s, &q->returning);
    an__sql_put(&s, " AS rt");
    events_from(&s, q, x->horizon, t->range_lo_us, t->range_hi_us);
    an__sql_put(&s, " AND (");
    an__sql_entity(&s, &q->target);
    an__sql_put(&s, " OR ");
    an__sql_entity(&s, &q->returning);
    /* each person's active periods, once (cohorts and returns both read them) */
    an__sql_put(&s, ")), pb AS MATERIALIZED (SELECT person, b, bool_or(tg) AS tg, bool_or(rt) AS "
                    "rt FROM ev GROUP BY person, b), ");
    if (q->first_time) {
        first_time(&s, q, x->horizon);
        an__sql_put(&s, ", cohort AS (SELECT person, ");
        an__sql_bucket(&s, t, "ft");
        an__sql_put(&s, " AS b FROM ft WHERE ");
        an__sql_range(&s, "ft", t->range_lo_us, t->range_hi_us);
        an__sql_put(&s, "), ");
    } else {
        an__sql_put(&s, "cohort AS (SELECT person, b FROM pb WHERE tg), ");
    }
    an__sql_put(&s, "ret AS (SELECT person, b FROM pb WHERE rt) "
                    "SELECT b, 0 AS k, count(*) FROM cohort GROUP BY b "
                    "UNION ALL SELECT c.b, r.b - c.b, count(*) FROM cohort c JOIN ret r "
                    "ON r.person = c.person AND r.b > c.b GROUP BY ALL");
run:;
    json_t *rows = NULL;
    int rc = an__sql_run(x->c, &s, &rows, x->msg, x->msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    size_t n = t->n_buckets;
    int64_t *cnt = arena_zalloc(x->a, n * n * sizeof(int64_t));
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        int64_t b = json_integer_value(json_array_get(r, 0));
        int64_t k = json_integer_value(json_array_get(r, 1));
        if (b >= 0 && (size_t)b < n && k >= 0 && (size_t)(b + k) < n)
            cnt[(size_t)b * n + (size_t)k] = (int64_t)an__num(json_array_get(r, 2));
    }
    json_decref(rows);
    json_t *results = json_array();
    for (size_t c = 0; c < n; c++) {
        int64_t size = cnt[c * n];
        json_t *vals = json_array();
        for (size_t k = 0; c + k < n; k++) {
            int64_t v = cnt[c * n + k];
            json_array_append_new(vals,
                                  json_pack("{s:I,s:f}", "count", (json_int_t)v, "percentage",
                                            size > 0 ? 100.0 * (double)v / (double)size : 0.0));
        }
        json_array_append_new(results, json_pack("{s:s,s:I,s:o}", "date", t->labels[c],
                                                 "cohortSize", (json_int_t)size, "values", vals));
    }
    json_t *o = json_object();
    json_object_set_new(o, "results", results);
    an__common(o, q, t, true);
    *out = o;
    return 0;
}

/* ---- stickiness ---- */

int an__stickiness(struct an_ctx *x, json_t **out)
{
    const struct an_query *q = x->q;
    const struct an_time *t = x->t;
    struct an_sql s;
    an__sql_init(&s);
    an__sql_printf(&s, "WITH ev AS %s(SELECT DISTINCT " AN_SQL_PERSON " AS person, ",
                   q->n_ents > 1 ? "MATERIALIZED " : "");
    an__sql_bucket(&s, t, "e.\"timestamp\"");
    an__sql_put(&s, " AS b");
    for (size_t i = 0; i < q->n_ents; i++) {
        an__sql_put(&s, ", ");
        an__sql_entity(&s, &q->ents[i]);
        an__sql_printf(&s, " AS f%zu", i);
    }
    events_from(&s, q, x->horizon, t->range_lo_us, t->range_hi_us);
    an__sql_put(&s, " AND (");
    for (size_t i = 0; i < q->n_ents; i++) {
        if (i)
            an__sql_put(&s, " OR ");
        an__sql_entity(&s, &q->ents[i]);
    }
    an__sql_put(&s, ")) SELECT s, n, count(*) FROM (");
    for (size_t i = 0; i < q->n_ents; i++)
        an__sql_printf(&s,
                       "%sSELECT %zu AS s, person, count(DISTINCT b) AS n FROM ev WHERE f%zu "
                       "GROUP BY person",
                       i ? " UNION ALL " : "", i, i);
    an__sql_put(&s, ") GROUP BY s, n");
    json_t *rows = NULL;
    int rc = an__sql_run(x->c, &s, &rows, x->msg, x->msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    size_t m = t->n_buckets;
    int64_t *cnt = arena_zalloc(x->a, q->n_ents * m * sizeof(int64_t));
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        int64_t se = json_integer_value(json_array_get(r, 0));
        int64_t k = json_integer_value(json_array_get(r, 1));
        if (se >= 0 && (size_t)se < q->n_ents && k >= 1 && (size_t)k <= m)
            cnt[(size_t)se * m + (size_t)k - 1] = (int64_t)an__num(json_array_get(r, 2));
    }
    json_decref(rows);
    static const char *const unit[] = {"hour", "day", "week", "month"};
    json_t *results = json_array();
    for (size_t se = 0; se < q->n_ents; se++) {
        json_t *labels = json_array(), *days = json_array(), *data = json_array();
        int64_t total = 0;
        for (size_t k = 1; k <= m; k++) {
            char lab[32];
            snprintf(lab, sizeof(lab), "%zu %s%s", k, unit[q->interval], k == 1 ? "" : "s");
            json_array_append_new(labels, json_string(lab));
            json_array_append_new(days, json_integer((json_int_t)k));
            json_array_append_new(data, json_integer(cnt[se * m + k - 1]));
            total += cnt[se * m + k - 1];
        }
        const struct an_entity *en = &q->ents[se];
        json_array_append_new(results, json_pack("{s:I,s:s,s:o,s:o,s:o,s:o,s:I}", "series",
                                                 (json_int_t)se, "label", en->label, "event",
                                                 en->event ? json_string(en->event) : json_null(),
                                                 "labels", labels, "days", days, "data", data,
                                                 "count", (json_int_t)total));
    }
    json_t *o = json_object();
    json_object_set_new(o, "results", results);
    an__common(o, q, t, true);
    *out = o;
    return 0;
}

/* ---- lifecycle ---- */

int an__lifecycle(struct an_ctx *x, json_t **out)
{
    const struct an_query *q = x->q;
    const struct an_time *t = x->t;
    int64_t m = (int64_t)t->n_buckets;
    struct an_sql s;
    an__sql_init(&s);
    an__sql_put(&s, "WITH act AS MATERIALIZED (SELECT DISTINCT " AN_SQL_PERSON " AS person, ");
    an__sql_bucket(&s, t, "e.\"timestamp\"");
    an__sql_put(&s, " AS b");
    /* from the bucket before the range: scan_lo is at or before its start */
    events_from(&s, q, x->horizon, t->scan_lo_us, t->range_hi_us);
    an__sql_put(&s, " AND ");
    an__sql_entity(&s, &q->ents[0]);
    /* first seen: the earliest first event over the person's distinct ids */
    an__sql_put(
        &s, "), act2 AS (SELECT * FROM act WHERE b >= -1), "
            "fs AS (SELECT coalesce(l.person_key, f.did_key) AS person, min(f.\"timestamp\") AS "
            "ft FROM _did_first f LEFT JOIN _person_links l ON l.did_key = f.did_key WHERE "
            "coalesce(l.person_key, f.did_key) IN (SELECT person FROM act2) GROUP BY 1), "
            "w AS (SELECT a.person, a.b, lag(a.b) OVER (PARTITION BY a.person ORDER BY "
            "a.b) AS pb, lead(a.b) OVER (PARTITION BY a.person ORDER BY a.b) AS nb, "
            "CASE WHEN ");
    an__sql_range(&s, "fs.ft", t->scan_lo_us, t->range_hi_us);
    an__sql_put(&s, " THEN ");
    an__sql_bucket(&s, t, "fs.ft");
    an__sql_put(&s, " ELSE -1000000 END AS fb FROM act2 a JOIN fs ON fs.person = a.person) "
                    "SELECT b, CASE WHEN fb = b THEN 0 WHEN pb = b - 1 THEN 1 ELSE 2 END AS st, "
                    "count(*) FROM w WHERE b >= 0 GROUP BY ALL "
                    "UNION ALL SELECT b + 1, 3, count(*) FROM w WHERE (nb IS NULL OR nb > b + 1) "
                    "AND b + 1 >= 0 AND b + 1 < ");
    an__sql_int(&s, m);
    an__sql_put(&s, " GROUP BY ALL");
    json_t *rows = NULL;
    int rc = an__sql_run(x->c, &s, &rows, x->msg, x->msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    int64_t *cnt = arena_zalloc(x->a, 4 * (size_t)m * sizeof(int64_t));
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        int64_t b = json_integer_value(json_array_get(r, 0));
        int64_t st = json_integer_value(json_array_get(r, 1));
        if (b >= 0 && b < m && st >= 0 && st < 4)
            cnt[st * m + b] = (int64_t)an__num(json_array_get(r, 2));
    }
    json_decref(rows);
    static const char *const names[] = {"new", "returning", "resurrecting", "dormant"};
    json_t *results = json_array();
    for (int st = 0; st < 4; st++) {
        json_t *data = json_array();
        for (int64_t b = 0; b < m; b++)
            json_array_append_new(data, json_integer(st == 3 ? -cnt[st * m + b] : cnt[st * m + b]));
        json_array_append_new(results, json_pack("{s:s,s:o,s:o}", "status", names[st], "labels",
                                                 an__labels(t), "data", data));
    }
    json_t *o = json_object();
    json_object_set_new(o, "results", results);
    an__common(o, q, t, true);
    *out = o;
    return 0;
}
