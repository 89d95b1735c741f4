/* analytics_int.h - shared by the files of src/analytics only: the validated query, the time
 * context (time zone, range, buckets) and the SQL builder. */
#ifndef TANDEM_ANALYTICS_ANALYTICS_INT_H
#define TANDEM_ANALYTICS_ANALYTICS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analytics/analytics.h"
#include "core/core.h"
#include "warehouse/warehouse.h"

#define AN_MAX_SERIES 10
#define AN_MAX_STEPS 20
#define AN_MIN_STEPS 2
#define AN_MAX_EXCLUSIONS 8
#define AN_MAX_FILTERS 50
#define AN_MAX_BUCKETS 2000
#define AN_BREAKDOWN_LIMIT 25
#define AN_MAX_NAME 200
#define AN_US_HOUR 3600000000LL
#define AN_US_DAY 86400000000LL

#define AN_NULL_LABEL "$$_posthog_breakdown_null_$$"
#define AN_OTHER_LABEL "$$_posthog_breakdown_other_$$"
#define AN_RANK_OTHER 1000 /* the rows past the top AN_BREAKDOWN_LIMIT values */
#define AN_RANK_NULL 1001  /* the rows without a value */

enum an_interval { AN_HOUR, AN_DAY, AN_WEEK, AN_MONTH };

enum an_op {
    AN_OP_EXACT,
    AN_OP_IS_NOT,
    AN_OP_GT,
    AN_OP_GTE,
    AN_OP_LT,
    AN_OP_LTE,
    AN_OP_ICONTAINS,
    AN_OP_NOT_ICONTAINS,
    AN_OP_IS_SET,
    AN_OP_IS_NOT_SET,
};

/* A property key: a plain column, or a JSON pointer into a JSON column. */
struct an_key {
    const char *column; /* "event", "properties", ... (a fixed name, never client text) */
    char *pointer;      /* "/plan" for properties.plan; NULL for plain columns */
};

struct an_filter {
    struct an_key key;
    enum an_op op;
    json_t *values; /* array of the value texts (strings); NULL for set and comparison ops */
    double number;  /* gt/gte/lt/lte */
};

enum an_math {
    AN_MATH_TOTAL,
    AN_MATH_UNIQUE,
    AN_MATH_WAU,
    AN_MATH_MAU,
    AN_MATH_SUM,
    AN_MATH_AVG,
    AN_MATH_MIN,
    AN_MATH_MAX,
    AN_MATH_MEDIAN,
    AN_MATH_P90,
    AN_MATH_P95,
    AN_MATH_P99,
};

/* A series, step, exclusion or retention entity. */
struct an_entity {
    char *event; /* NULL: every event */
    char *label;
    const char *math_name;
    enum an_math math;
    struct an_key math_prop;
    bool has_math_prop;
    struct an_filter *filters;
    size_t n_filters;
    int from_step, to_step; /* exclusions */
};

struct an_date {
    enum { AN_DATE_LOCAL, AN_DATE_RELATIVE, AN_DATE_NOW } kind;
    int64_t local_us; /* AN_DATE_LOCAL: wall clock as if UTC */
    bool date_only;   /* AN_DATE_LOCAL given as YYYY-MM-DD */
    int64_t delta_us; /* AN_DATE_RELATIVE: subtracted from now */
};

enum an_order { AN_ORDER_ORDERED, AN_ORDER_STRICT, AN_ORDER_UNORDERED };

struct an_query {
    enum analytics_kind kind;
    char *timezone;
    enum an_interval interval;
    bool week_sunday;
    struct an_date from, to;
    struct an_filter *filters;
    size_t n_filters;
    struct an_key breakdown;
    bool has_breakdown;
    struct an_entity *ents; /* series or steps */
    size_t n_ents;
    struct an_entity *excl;
    size_t n_excl;
    /* funnel */
    int64_t window_us;
    enum an_order order;
    /* retention */
    struct an_entity target, returning;
    bool first_time;
    int total_intervals;
};

/* parse.c: validates q into out (memory in a); on failure errors holds the members. */
int an__parse(struct arena *a, enum analytics_kind kind, const json_t *q, struct an_query *out,
              json_t *errors) MUST_USE;
void an__error(json_t *errors, const char *path, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

/* ---- time (timectx.c) ---- */

struct an_seg {
    int64_t from_us; /* UTC instant the offset starts at (INT64_MIN for the first) */
    int64_t off_us;  /* local - UTC */
};

struct an_time {
    enum an_interval interval;
    bool week_sunday;
    struct an_seg *segs;
    size_t n_segs;
    int64_t scan_lo_us; /* UTC: earliest instant the query's SQL may bucket */
    int64_t dbase_us;   /* local wall clock (as if UTC) of a local midnight <= scan_lo's, on a
                         * week start day */
    int64_t hbase_us;   /* hour: UTC start of the hour bucket holding scan_lo */
    int64_t k0;         /* bucket number (in the SQL numbering) of the first range bucket */
    int64_t range_lo_us, range_hi_us; /* the range (UTC) */
    size_t n_buckets;
    int64_t *starts_us; /* UTC start of each bucket (n_buckets + 1: the last is range_hi) */
    int64_t *day_of;    /* local day number (days since 1970-01-01) of each bucket's label */
    char **labels;
};

/* Reads the zone's offsets over [lo_us, hi_us] (UTC) from the engine. ERR_INVALID: unknown
 * zone (errors gets "timezone"). */
int an__time_zone(struct wh_conn *c, struct arena *a, const char *tz, int64_t lo_us, int64_t hi_us,
                  struct an_time *t, json_t *errors, char *msg, size_t msg_len) MUST_USE;
int64_t an__local_of(const struct an_time *t, int64_t utc_us);
/* The earliest instant whose wall clock is >= local_us. */
int64_t an__utc_of_local(const struct an_time *t, int64_t local_us);
/* Builds the buckets of [from, to] (lookback: extra days the SQL may scan before the range).
 * ERR_INVALID with errors set when from > to or too many buckets. */
int an__time_buckets(struct arena *a, struct an_time *t, int64_t from_utc, int64_t to_utc,
                     int lookback_days, json_t *errors) MUST_USE;
/* Computes a first guess of a date's UTC instant (for the window of offsets). */
int64_t an__date_guess(const struct an_date *d, int64_t now_us);
/* The exact UTC instant of d (once the offsets are known). A date-only dateTo (is_to) stands
 * for the last instant of that local day. */
int64_t an__date_utc(const struct an_time *t, const struct an_date *d, int64_t now_us, bool is_to);
void an__iso_utc(int64_t us, char out[32]);
int64_t an__days_from_civil(int64_t y, unsigned m, unsigned d);
void an__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

/* ---- SQL (sql.c) ---- */

struct an_sql {
    struct buf b;
    json_t *params;
};

void an__sql_init(struct an_sql *s);
void an__sql_release(struct an_sql *s);
void an__sql_put(struct an_sql *s, const char *text);
void an__sql_printf(struct an_sql *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Appends "$n" bound to v (TAKES v). */
void an__sql_param(struct an_sql *s, json_t *v);
void an__sql_int(struct an_sql *s, int64_t v);
void an__sql_str(struct an_sql *s, const char *v);
/* The text form of a key: a column, or json_extract_string(col, $n). */
void an__sql_key(struct an_sql *s, const struct an_key *k);
/* A boolean: every filter holds. */
void an__sql_filters(struct an_sql *s, const struct an_filter *f, size_t n);
/* A boolean: the event matches the entity (event name and its filters). */
void an__sql_entity(struct an_sql *s, const struct an_entity *e);
/* Local wall-clock microseconds of "timestamp" (or of col) in the query's zone. */
void an__sql_local(struct an_sql *s, const struct an_time *t, const char *col);
/* The bucket number of col (0 = the first range bucket; negative before the range). */
void an__sql_bucket(struct an_sql *s, const struct an_time *t, const char *col);
/* The local day number relative to dbase (0 = the day of dbase). */
void an__sql_day(struct an_sql *s, const struct an_time *t, const char *col);
/* " FROM events e WHERE " and, when horizon >= 0, "e.log_offset < horizon::UBIGINT AND ": a
 * condition follows. Insights that count persons read e.person_key, which the persons refresh
 * keeps right for every event below the horizon it returned. */
void an__sql_events(struct an_sql *s, int64_t horizon);
/* ", nullif(<breakdown key>, '') AS bd", or ", NULL::VARCHAR AS bd" without a breakdown. */
void an__sql_breakdown(struct an_sql *s, const struct an_query *q);
/* "<out> AS (SELECT <from>.*, rk ...) ": the breakdown rank of each row of from: 1..25 for
 * the values with the most rows of from (ties by value), AN_RANK_OTHER for the rest,
 * AN_RANK_NULL for no value; 0 for every row without a breakdown. With n_buckets > 0 only
 * from's rows with 0 <= b < n_buckets are counted for the ranking. */
void an__sql_rank(struct an_sql *s, const struct an_query *q, const char *from, const char *out,
                  size_t n_buckets);
/* The response's breakdown value of a row of rank rk with text bd (NULL: none). */
json_t *an__breakdown_json(const struct an_query *q, int rk, const char *bd);
/* The person of an event row aliased e. */
#define AN_SQL_PERSON "e.person_key"
void an__sql_range(struct an_sql *s, const char *col, int64_t lo_us, int64_t hi_us);

/* Runs the statement; rows_out TAKES the rows on success. */
int an__sql_run(struct wh_conn *c, struct an_sql *s, json_t **rows_out, char *msg,
                size_t msg_len) MUST_USE;

/* ---- insights ---- */

struct an_ctx {
    struct wh_conn *c;
    struct arena *a;
    struct an_query *q;
    struct an_time *t;
    int64_t horizon; /* persons are right below this log offset (-1: persons not needed) */
    char *msg;
    size_t msg_len;
};

int an__trends(struct an_ctx *x, json_t **out) MUST_USE;
int an__funnel(struct an_ctx *x, json_t **out) MUST_USE;
int an__retention(struct an_ctx *x, json_t **out) MUST_USE;
int an__stickiness(struct an_ctx *x, json_t **out) MUST_USE;
int an__lifecycle(struct an_ctx *x, json_t **out) MUST_USE;

/* Common response members: interval, timezone, dateFrom, dateTo. */
void an__common(json_t *o, const struct an_query *q, const struct an_time *t, bool interval);
/* A JSON array of the bucket labels. */
json_t *an__labels(const struct an_time *t);
/* Double from a row cell (integer or real); 0 for null. */
double an__num(const json_t *v);

#endif
