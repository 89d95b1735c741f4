/* timectx.c - the query's time zone and buckets.
 *
 * The zone's UTC offsets over the query's window come from the engine's ICU data: one small
 * query checks that the zone exists, one reads its offsets (day steps find the days with a
 * clock change, minute steps find the minute); UTC needs neither. The rest is arithmetic
 * here: wall clock of an instant, first instant of a wall-clock time, bucket starts and
 * labels. The big statement then buckets events with integer arithmetic on
 * epoch_us("timestamp") + offset (a CASE over the few changes), which is far cheaper per row
 * than calling ICU on every event. */
#include <stdio.h>
#include <string.h>

#include "analytics/analytics_int.h"

static int64_t floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floormod(int64_t a, int64_t b)
{
    return a - floordiv(a, b) * b;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm) */
int64_t an__days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floordiv(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void an__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = floordiv(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

void an__iso_utc(int64_t us, char out[32])
{
    int64_t days = floordiv(us, AN_US_DAY);
    int64_t rem = us - days * AN_US_DAY;
    int64_t y;
    unsigned m, d;
    an__civil_from_days(days, &y, &m, &d);
    int64_t s = rem / 1000000;
    snprintf(out, 32, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", (int)y, m, d, (int)(s / 3600),
             (int)(s / 60 % 60), (int)(s % 60), (int)(rem % 1000000 / 1000));
}

static void date_label(int64_t day, char out[16])
{
    int64_t y;
    unsigned m, d;
    an__civil_from_days(day, &y, &m, &d);
    snprintf(out, 16, "%04d-%02u-%02u", (int)y, m, d);
}

/* ---- offsets ---- */

static int64_t off_at(const struct an_time *t, int64_t utc)
{
    size_t lo = 0, hi = t->n_segs;
    while (hi - lo > 1) { /* the last segment starting at or before utc */
        size_t mid = (lo + hi) / 2;
        if (t->segs[mid].from_us <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return t->segs[lo].off_us;
}

int64_t an__local_of(const struct an_time *t, int64_t utc_us)
{
    return utc_us + off_at(t, utc_us);
}

int64_t an__utc_of_local(const struct an_time *t, int64_t local_us)
{
    for (size_t i = 0; i < t->n_segs; i++) {
        int64_t cand = local_us - t->segs[i].off_us;
        if (cand < t->segs[i].from_us)
            cand = t->segs[i].from_us;
        int64_t end = i + 1 < t->n_segs ? t->segs[i + 1].from_us : INT64_MAX;
        if (cand < end)
            return cand;
    }
    return local_us - t->segs[t->n_segs - 1].off_us;
}

int an__time_zone(struct wh_conn *c, struct arena *a, const char *tz, int64_t lo_us, int64_t hi_us,
                  struct an_time *t, json_t *errors, char *msg, size_t msg_len)
{
    memset(t, 0, sizeof(*t));
    if (strcmp(tz, "UTC") == 0) { /* the default: one offset, 0, for all time; no statements */
        t->segs = arena_zalloc(a, sizeof(*t->segs));
        t->segs[0].from_us = INT64_MIN;
        t->n_segs = 1;
        return 0;
    }
    struct an_sql s;
    json_t *rows = NULL;
    int rc;
    an__sql_init(&s);
    an__sql_put(&s, "SELECT count(*) FROM pg_timezone_names() WHERE name = ");
    an__sql_str(&s, tz);
    rc = an__sql_run(c, &s, &rows, msg, msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    bool known = json_integer_value(json_array_get(json_array_get(rows, 0), 0)) > 0;
    json_decref(rows);
    rows = NULL;
    if (!known) {
        an__error(errors, "timezone", "validation_invalid_value", "Unknown time zone \"%.64s\".",
                  tz);
        return ERR_INVALID;
    }
    /* whole UTC days around the window */
    lo_us = floordiv(lo_us, AN_US_DAY) * AN_US_DAY - AN_US_DAY;
    hi_us = floordiv(hi_us, AN_US_DAY) * AN_US_DAY + 2 * AN_US_DAY;
    an__sql_init(&s);
    an__sql_put(&s, "WITH d AS (SELECT t, epoch_us(timezone(");
    an__sql_str(&s, tz);
    an__sql_put(&s,
                ", timezone('UTC', t))) - epoch_us(t) AS o FROM generate_series(make_timestamp(");
    an__sql_int(&s, lo_us);
    an__sql_put(&s, "), make_timestamp(");
    an__sql_int(&s, hi_us);
    an__sql_put(&s, "), INTERVAL 1 DAY) g(t)), "
                    "c AS (SELECT t, o, lead(o) OVER (ORDER BY t) AS o2 FROM d), "
                    "m AS (SELECT DISTINCT c.t + to_minutes(k) AS t FROM c, range(0, 1441) r(k) "
                    "WHERE c.o2 <> c.o), "
                    "mo AS (SELECT t, epoch_us(timezone(");
    an__sql_str(&s, tz);
    an__sql_put(&s, ", timezone('UTC', t))) - epoch_us(t) AS o FROM m), "
                    "tr AS (SELECT t, o, lag(o) OVER (ORDER BY t) AS p FROM mo) "
                    "SELECT NULL::BIGINT AS at, (SELECT o FROM d ORDER BY t LIMIT 1) AS o "
                    "UNION ALL SELECT epoch_us(t), o FROM tr WHERE p <> o "
                    "ORDER BY 1 NULLS FIRST");
    rc = an__sql_run(c, &s, &rows, msg, msg_len);
    an__sql_release(&s);
    if (rc < 0)
        return rc;
    size_t n = json_array_size(rows);
    t->segs = arena_zalloc(a, (n ? n : 1) * sizeof(*t->segs));
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rows, i);
        t->segs[i].from_us = i == 0 ? INT64_MIN : json_integer_value(json_array_get(r, 0));
        t->segs[i].off_us = json_integer_value(json_array_get(r, 1));
    }
    t->n_segs = n ? n : 1;
    json_decref(rows);
    return 0;
}

int64_t an__date_guess(const struct an_date *d, int64_t now_us)
{
    switch (d->kind) {
    case AN_DATE_LOCAL: return d->local_us;
    case AN_DATE_RELATIVE: return now_us - d->delta_us;
    default: return now_us;
    }
}

int64_t an__date_utc(const struct an_time *t, const struct an_date *d, int64_t now_us, bool is_to)
{
    if (d->kind == AN_DATE_LOCAL && d->date_only && is_to)
        return an__utc_of_local(t, d->local_us + AN_US_DAY) - 1;
    if (d->kind == AN_DATE_LOCAL)
        return an__utc_of_local(t, d->local_us);
    return an__date_guess(d, now_us);
}

/* ---- buckets ---- */

/* local day number of the start of the bucket holding local day z */
static int64_t bucket_day(const struct an_time *t, int64_t z)
{
    switch (t->interval) {
    case AN_WEEK: return z - floormod(z + (t->week_sunday ? 4 : 3), 7);
    case AN_MONTH: {
        int64_t y;
        unsigned m, d;
        an__civil_from_days(z, &y, &m, &d);
        return an__days_from_civil(y, m, 1);
    }
    default: return z;
    }
}

static int64_t next_day(const struct an_time *t, int64_t z)
{
    switch (t->interval) {
    case AN_WEEK: return z + 7;
    case AN_MONTH: {
        int64_t y;
        unsigned m, d;
        an__civil_from_days(z, &y, &m, &d);
        return m == 12 ? an__days_from_civil(y + 1, 1, 1) : an__days_from_civil(y, m + 1, 1);
    }
    default: return z + 1;
    }
}

static int64_t month_no(int64_t day)
{
    int64_t y;
    unsigned m, d;
    an__civil_from_days(day, &y, &m, &d);
    return y * 12 + (int64_t)m - 1;
}

int an__time_buckets(struct arena *a, struct an_time *t, int64_t from_utc, int64_t to_utc,
                     int lookback_days, json_t *errors)
{
    if (from_utc > to_utc) {
        an__error(errors, "dateFrom", "validation_invalid_value", "dateFrom is after dateTo.");
        return ERR_INVALID;
    }
    size_t cap = AN_MAX_BUCKETS + 1;
    t->starts_us = arena_alloc(a, (cap + 1) * sizeof(int64_t));
    t->day_of = arena_alloc(a, cap * sizeof(int64_t));
    t->labels = arena_alloc(a, cap * sizeof(char *));
    size_t n = 0;
    if (t->interval == AN_HOUR) {
        int64_t lf = an__local_of(t, from_utc);
        int64_t rs = from_utc - floormod(lf, AN_US_HOUR);
        int64_t lt = an__local_of(t, to_utc);
        int64_t re = to_utc - floormod(lt, AN_US_HOUR) + AN_US_HOUR;
        for (size_t i = 1; i < t->n_segs; i++)
            if (t->segs[i].from_us > rs && t->segs[i].from_us < re &&
                (t->segs[i].off_us - t->segs[i - 1].off_us) % AN_US_HOUR != 0) {
                an__error(errors, "interval", "validation_invalid_value",
                          "Hour buckets are not supported across this time zone's clock change "
                          "of less than an hour.");
                return ERR_INVALID;
            }
        if ((re - rs) / AN_US_HOUR > AN_MAX_BUCKETS) {
            an__error(errors, "dateFrom", "validation_invalid_value",
                      "The range holds more than %d buckets.", AN_MAX_BUCKETS);
            return ERR_INVALID;
        }
        for (int64_t s = rs; s < re; s += AN_US_HOUR) {
            int64_t off = off_at(t, s);
            int64_t loc = s + off;
            int64_t day = floordiv(loc, AN_US_DAY);
            int64_t y;
            unsigned m, d;
            an__civil_from_days(day, &y, &m, &d);
            int64_t aoff = off < 0 ? -off : off;
            int64_t offm = aoff / 60000000;
            t->starts_us[n] = s;
            t->day_of[n] = day;
            t->labels[n] = arena_printf(a, "%04d-%02u-%02uT%02d:00:00%c%02d:%02d", (int)y, m, d,
                                        (int)(floormod(loc, AN_US_DAY) / AN_US_HOUR),
                                        off < 0 ? '-' : '+', (int)(offm / 60), (int)(offm % 60));
            n++;
        }
        t->starts_us[n] = re;
        t->range_lo_us = rs;
        t->range_hi_us = re;
    } else {
        int64_t z0 = bucket_day(t, floordiv(an__local_of(t, from_utc), AN_US_DAY));
        int64_t zl = bucket_day(t, floordiv(an__local_of(t, to_utc), AN_US_DAY));
        for (int64_t z = z0; z <= zl; z = next_day(t, z)) {
            if (n == AN_MAX_BUCKETS) {
                an__error(errors, "dateFrom", "validation_invalid_value",
                          "The range holds more than %d buckets.", AN_MAX_BUCKETS);
                return ERR_INVALID;
            }
            char lab[16];
            date_label(z, lab);
            t->starts_us[n] = an__utc_of_local(t, z * AN_US_DAY);
            t->day_of[n] = z;
            t->labels[n] = arena_strdup(a, lab);
            n++;
        }
        t->starts_us[n] = an__utc_of_local(t, next_day(t, zl) * AN_US_DAY);
        t->range_lo_us = t->starts_us[0];
        t->range_hi_us = t->starts_us[n];
    }
    t->n_buckets = n;

    /* what the SQL may scan: lookback days before the first label's day, and the bucket
     * before the range */
    int64_t first_day = t->day_of[0];
    int64_t prev_day;
    if (t->interval == AN_HOUR)
        prev_day = floordiv(an__local_of(t, t->range_lo_us - AN_US_HOUR), AN_US_DAY);
    else
        prev_day = bucket_day(t, first_day - 1);
    int64_t scan_day = first_day - lookback_days;
    if (prev_day < scan_day)
        scan_day = prev_day;
    /* a week start day at or before it, so week numbers divide evenly */
    int64_t dbase = scan_day - floormod(scan_day + (t->week_sunday ? 4 : 3), 7);
    t->scan_lo_us = an__utc_of_local(t, dbase * AN_US_DAY);
    /* numbering starts a week earlier still, so that a wall clock set back just after
     * scan_lo never gives a negative day number (integer division truncates) */
    dbase -= 7;
    t->dbase_us = dbase * AN_US_DAY;
    if (t->interval == AN_HOUR) {
        /* hour numbers count from a whole number of hours before the range, at least an
         * hour before scan_lo, so they are exact inside the range and negative before it */
        t->k0 = (t->range_lo_us - t->scan_lo_us) / AN_US_HOUR + 2;
        t->hbase_us = t->range_lo_us - t->k0 * AN_US_HOUR;
    } else if (t->interval == AN_DAY) {
        t->k0 = first_day - dbase;
    } else if (t->interval == AN_WEEK) {
        t->k0 = (first_day - dbase) / 7;
    } else {
        t->k0 = month_no(first_day);
    }
    return 0;
}
