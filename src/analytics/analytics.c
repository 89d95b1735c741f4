/* analytics.c - analytics_run: validate, resolve the time zone and the buckets, run the
 * insight, and the helpers every insight uses to shape its response. */
#include <stdio.h>
#include <string.h>

#include "analytics/analytics_int.h"

int analytics_kind_parse(const char *name, enum analytics_kind *out)
{
    static const char *const names[] = {"trends", "funnel", "retention", "stickiness", "lifecycle"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (name && strcmp(name, names[i]) == 0) {
            *out = (enum analytics_kind)i;
            return 0;
        }
    return ERR_NOTFOUND;
}

void analytics_out_release(struct analytics_out *out)
{
    json_decref(out->result);
    json_decref(out->errors);
    out->result = NULL;
    out->errors = NULL;
}

static const char *const interval_names[] = {"hour", "day", "week", "month"};

void an__common(json_t *o, const struct an_query *q, const struct an_time *t, bool interval)
{
    char a[32], b[32];
    an__iso_utc(t->range_lo_us, a);
    an__iso_utc(t->range_hi_us, b);
    if (interval)
        json_object_set_new(o, q->kind == ANALYTICS_RETENTION ? "period" : "interval",
                            json_string(interval_names[q->interval]));
    json_object_set_new(o, "timezone", json_string(q->timezone));
    json_object_set_new(o, "dateFrom", json_string(a));
    json_object_set_new(o, "dateTo", json_string(b));
}

json_t *an__labels(const struct an_time *t)
{
    json_t *a = json_array();
    for (size_t i = 0; i < t->n_buckets; i++)
        json_array_append_new(a, json_string(t->labels[i]));
    return a;
}

json_t *an__breakdown_json(const struct an_query *q, int rk, const char *bd)
{
    if (!q->has_breakdown)
        return json_null();
    if (rk == AN_RANK_OTHER)
        return json_string(AN_OTHER_LABEL);
    if (rk == AN_RANK_NULL)
        return json_string(AN_NULL_LABEL);
    return bd ? json_string(bd) : json_null();
}

double an__num(const json_t *v)
{
    if (json_is_integer(v))
        return (double)json_integer_value(v);
    if (json_is_real(v))
        return json_real_value(v);
    if (json_is_string(v)) /* HUGEINT sums come as text when they do not fit */
        return strtod(json_string_value(v), NULL);
    return 0;
}

/* The range's first instant for retention: the start of the period N-1 periods before the one
 * holding to_utc. */
static int64_t retention_from(const struct an_time *t, int64_t to_utc, int n)
{
    int64_t day = an__local_of(t, to_utc);
    day = day >= 0 ? day / AN_US_DAY : -((-day + AN_US_DAY - 1) / AN_US_DAY);
    int64_t y;
    unsigned m, d;
    an__civil_from_days(day, &y, &m, &d);
    switch (t->interval) {
    case AN_WEEK: day -= 7LL * (n - 1); break;
    case AN_MONTH: {
        int64_t mm = y * 12 + (int64_t)m - 1 - (n - 1);
        int64_t yy = mm >= 0 ? mm / 12 : -((-mm + 11) / 12);
        day = an__days_from_civil(yy, (unsigned)(mm - yy * 12 + 1), 1);
        break;
    }
    default: day -= (n - 1); break;
    }
    return an__utc_of_local(t, day * AN_US_DAY);
}

int analytics_run(struct wh_conn *c, enum analytics_kind kind, const json_t *query, int64_t now_us,
                  struct analytics_out *out)
{
    memset(out, 0, sizeof(*out));
    struct arena a;
    arena_init(&a, 16384);
    struct an_query q;
    struct an_time t;
    json_t *errors = json_object();
    int rc = an__parse(&a, kind, query, &q, errors);
    if (rc < 0)
        goto out;

    /* the identity tables: brought up to date with every event loaded so far */
    bool persons = kind != ANALYTICS_TRENDS;
    for (size_t i = 0; kind == ANALYTICS_TRENDS && i < q.n_ents; i++)
        persons |= q.ents[i].math == AN_MATH_UNIQUE || q.ents[i].math == AN_MATH_WAU ||
                   q.ents[i].math == AN_MATH_MAU;
    uint64_t horizon = 0;
    if (persons && (rc = wh_persons_refresh(c, &horizon)) < 0) {
        snprintf(out->message, sizeof(out->message), "%s", wh_errmsg(c));
        goto out;
    }

    int lookback_days = 0;
    for (size_t i = 0; kind == ANALYTICS_TRENDS && i < q.n_ents; i++) {
        if (q.ents[i].math == AN_MATH_WAU && lookback_days < 6)
            lookback_days = 6;
        if (q.ents[i].math == AN_MATH_MAU)
            lookback_days = 29;
    }
    int64_t to_guess = an__date_guess(&q.to, now_us);
    int64_t from_guess = kind == ANALYTICS_RETENTION
                             ? to_guess - (int64_t)q.total_intervals * 31 * AN_US_DAY
                             : an__date_guess(&q.from, now_us);
    /* longer than AN_MAX_BUCKETS months cannot fit at any interval: refused before the zone's
     * offsets are read over it (centuries of them take seconds) */
    if (to_guess - from_guess > (int64_t)(AN_MAX_BUCKETS + 1) * 31 * AN_US_DAY) {
        an__error(errors, "dateFrom", "validation_invalid_value",
                  "The range holds more than %d buckets.", AN_MAX_BUCKETS);
        rc = ERR_INVALID;
        goto out;
    }
    int64_t lo = from_guess - (int64_t)(lookback_days + 40) * AN_US_DAY;
    int64_t hi = to_guess + 40 * AN_US_DAY;
    if (lo > hi)
        lo = hi - 80 * AN_US_DAY; /* dateFrom after dateTo: reported by the bucket step */
    rc = an__time_zone(c, &a, q.timezone, lo, hi, &t, errors, out->message, sizeof(out->message));
    if (rc < 0)
        goto out;
    t.interval = q.interval;
    t.week_sunday = q.week_sunday;
    int64_t to_utc = an__date_utc(&t, &q.to, now_us, true);
    int64_t from_utc = kind == ANALYTICS_RETENTION ? retention_from(&t, to_utc, q.total_intervals)
                                                   : an__date_utc(&t, &q.from, now_us, false);
    rc = an__time_buckets(&a, &t, from_utc, to_utc, lookback_days, errors);
    if (rc < 0)
        goto out;

    struct an_ctx x = {.c = c,
                       .a = &a,
                       .q = &q,
                       .t = &t,
                       .horizon = persons ? (int64_t)horizon : -1,
                       .msg = out->message,
                       .msg_len = sizeof(out->message)};
    switch (kind) {
    case ANALYTICS_TRENDS: rc = an__trends(&x, &out->result); break;
    case ANALYTICS_FUNNEL: rc = an__funnel(&x, &out->result); break;
    case ANALYTICS_RETENTION: rc = an__retention(&x, &out->result); break;
    case ANALYTICS_STICKINESS: rc = an__stickiness(&x, &out->result); break;
    case ANALYTICS_LIFECYCLE: rc = an__lifecycle(&x, &out->result); break;
    }
out:
    if (rc == ERR_INVALID && json_object_size(errors)) {
        out->errors = errors;
        errors = NULL;
        snprintf(out->message, sizeof(out->message), "Invalid insight query.");
    } else if (rc == ERR_INVALID) {
        /* the engine refused our statement: our bug, not the client's */
        rc = ERR_INTERNAL;
    }
    json_decref(errors);
    arena_release(&a);
    return rc;
}
