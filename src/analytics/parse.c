/* parse.c - validation of an insight query into struct an_query. Every error names the member
 * by its path ("series.0.math") with a PocketBase validation code. Validation goes on after an
 * error so that one reply names every bad member. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analytics/analytics_int.h"

#define C_REQUIRED "validation_required"
#define C_INVALID "validation_invalid_value"
#define C_UNKNOWN "validation_unknown_field"

void an__error(json_t *errors, const char *path, const char *code, const char *fmt, ...)
{
    if (json_object_get(errors, path))
        return; /* the first error of a member is the one reported */
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    str_utf8_scrub(msg); /* a precision or the size may have cut a client's character */
    json_object_set_new(errors, path, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

/* arena cleanup of a json_t (json_decref itself has another type) */
static void release_json(void *j)
{
    json_decref(j);
}

struct pctx {
    struct arena *a;
    json_t *errors;
};

static const char *path2(struct pctx *p, const char *base, const char *member)
{
    return *base ? arena_printf(p->a, "%s.%s", base, member) : member;
}

/* Refuses members of o not in allowed (NULL-terminated). */
static void check_members(struct pctx *p, const json_t *o, const char *base,
                          const char *const *allowed)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], k) == 0;
        if (!ok)
            an__error(p->errors, path2(p, base, k), C_UNKNOWN, "Unknown member \"%s\".", k);
    }
}

/* ---- keys ---- */

static bool parse_key(struct pctx *p, const json_t *v, const char *path, struct an_key *out)
{
    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v)) {
        an__error(p->errors, path, C_REQUIRED, "Missing key.");
        return false;
    }
    if (!json_is_string(v)) {
        an__error(p->errors, path, C_INVALID, "The key must be a string.");
        return false;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len) {
        an__error(p->errors, path, C_INVALID, "The key holds a NUL byte.");
        return false;
    }
    static const char *const cols[] = {"event", "type", "source", "user_id", "anonymous_id"};
    for (size_t i = 0; i < ARRAY_LEN(cols); i++)
        if (strcmp(s, cols[i]) == 0) {
            out->column = cols[i];
            return true;
        }
    static const char *const json_cols[] = {"properties", "traits", "context"};
    const char *col = NULL;
    const char *rest = NULL;
    for (size_t i = 0; i < ARRAY_LEN(json_cols) && !col; i++) {
        size_t n = strlen(json_cols[i]);
        if (strncmp(s, json_cols[i], n) == 0 && s[n] == '.') {
            col = json_cols[i];
            rest = s + n + 1;
        }
    }
    if (!col) {
        an__error(p->errors, path, C_INVALID,
                  "Unknown key \"%.100s\": use event, type, source, user_id, anonymous_id, "
                  "properties.<name>, traits.<name> or context.<name>.",
                  s);
        return false;
    }
    bool nested = strcmp(col, "context") == 0;
    struct buf ptr;
    buf_init(&ptr);
    const char *seg = rest;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (n == 0 || n > AN_MAX_NAME || (dot && !nested)) {
            buf_release(&ptr);
            an__error(p->errors, path, C_INVALID,
                      n == 0            ? "A name in the key is empty."
                      : n > AN_MAX_NAME ? "A name in the key is longer than 200 bytes."
                                        : "Only context keys can be nested.");
            return false;
        }
        buf_putc(&ptr, '/');
        for (size_t i = 0; i < n; i++) {
            if (seg[i] == '~')
                buf_puts(&ptr, "~0");
            else if (seg[i] == '/')
                buf_puts(&ptr, "~1");
            else
                buf_putc(&ptr, seg[i]);
        }
        if (!dot)
            break;
        seg = dot + 1;
    }
    out->column = col;
    out->pointer = arena_strdup(p->a, buf_cstr(&ptr));
    buf_release(&ptr);
    return true;
}

/* ---- filters ---- */

static const struct {
    const char *name;
    enum an_op op;
} ops[] = {
    {"exact", AN_OP_EXACT},
    {"is_not", AN_OP_IS_NOT},
    {"gt", AN_OP_GT},
    {"gte", AN_OP_GTE},
    {"lt", AN_OP_LT},
    {"lte", AN_OP_LTE},
    {"icontains", AN_OP_ICONTAINS},
    {"not_icontains", AN_OP_NOT_ICONTAINS},
    {"is_set", AN_OP_IS_SET},
    {"is_not_set", AN_OP_IS_NOT_SET},
};

/* The text form of a scalar JSON value (as the engine prints it), or NULL. */
static json_t *text_form(const json_t *v)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_STRING: return json_stringn(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(tmp);
    case JSON_REAL: {
        double d = json_real_value(v);
        /* the shortest text that reads back, with ".0" on whole numbers as the engine does */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        if (!strpbrk(tmp, ".eEn"))
            strcat(tmp, ".0");
        return json_string(tmp);
    }
    case JSON_TRUE: return json_string("true");
    case JSON_FALSE: return json_string("false");
    default: return NULL;
    }
}

static bool parse_filter(struct pctx *p, const json_t *f, const char *path, struct an_filter *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(f)) {
        an__error(p->errors, path, C_INVALID, "A filter must be an object.");
        return false;
    }
    static const char *const allowed[] = {"key", "operator", "value", "type", NULL};
    check_members(p, f, path, allowed);
    bool ok = parse_key(p, json_object_get(f, "key"), path2(p, path, "key"), &out->key);
    const json_t *jop = json_object_get(f, "operator");
    const char *opath = path2(p, path, "operator");
    out->op = AN_OP_EXACT;
    if (jop && !json_is_null(jop)) {
        bool found = false;
        for (size_t i = 0; i < ARRAY_LEN(ops) && json_is_string(jop); i++)
            if (strcmp(ops[i].name, json_string_value(jop)) == 0) {
                out->op = ops[i].op;
                found = true;
            }
        if (!found) {
            an__error(p->errors, opath, C_INVALID, "Unknown operator.");
            return false;
        }
    }
    const json_t *v = json_object_get(f, "value");
    const char *vpath = path2(p, path, "value");
    switch (out->op) {
    case AN_OP_IS_SET:
    case AN_OP_IS_NOT_SET:
        if (v && !json_is_null(v)) {
            an__error(p->errors, vpath, C_UNKNOWN, "This operator takes no value.");
            return false;
        }
        return ok;
    case AN_OP_GT:
    case AN_OP_GTE:
    case AN_OP_LT:
    case AN_OP_LTE:
        if (!v || json_is_null(v)) {
            an__error(p->errors, vpath, C_REQUIRED, "Missing value.");
            return false;
        }
        if (!json_is_number(v)) {
            an__error(p->errors, vpath, C_INVALID, "The value must be a number.");
            return false;
        }
        out->number = json_number_value(v);
        return ok;
    case AN_OP_ICONTAINS:
    case AN_OP_NOT_ICONTAINS:
        if (!v || json_is_null(v)) {
            an__error(p->errors, vpath, C_REQUIRED, "Missing value.");
            return false;
        }
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v)) {
            an__error(p->errors, vpath, C_INVALID, "The value must be a string.");
            return false;
        }
        out->values = json_array();
        json_array_append_new(out->values, text_form(v));
        arena_on_release(p->a, release_json, out->values);
        return ok;
    default:
        if (!v || json_is_null(v)) {
            an__error(p->errors, vpath, C_REQUIRED, "Missing value.");
            return false;
        }
        out->values = json_array();
        arena_on_release(p->a, release_json, out->values);
        if (json_is_array(v)) {
            if (json_array_size(v) == 0 || json_array_size(v) > 1000) {
                an__error(p->errors, vpath, C_INVALID,
                          "The value list must hold 1 to 1000 values.");
                return false;
            }
            size_t i;
            const json_t *x;
            json_array_foreach(v, i, x)
            {
                json_t *t = text_form(x);
                if (!t) {
                    an__error(p->errors, vpath, C_INVALID,
                              "Values must be strings, numbers or booleans.");
                    return false;
                }
                json_array_append_new(out->values, t);
            }
            return ok;
        }
        json_t *t = text_form(v);
        if (!t) {
            an__error(p->errors, vpath, C_INVALID,
                      "The value must be a string, number or boolean.");
            return false;
        }
        json_array_append_new(out->values, t);
        return ok;
    }
}

static bool parse_filters(struct pctx *p, const json_t *v, const char *path, struct an_filter **out,
                          size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v)) {
        an__error(p->errors, path, C_INVALID, "Must be an array of filters.");
        return false;
    }
    size_t n = json_array_size(v);
    if (n > AN_MAX_FILTERS) {
        an__error(p->errors, path, C_INVALID, "At most %d filters.", AN_MAX_FILTERS);
        return false;
    }
    *out = arena_zalloc(p->a, (n ? n : 1) * sizeof(**out));
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= parse_filter(p, json_array_get(v, i), arena_printf(p->a, "%s.%zu", path, i),
                           &(*out)[i]);
    *n_out = n;
    return ok;
}

/* ---- entities ---- */

static const struct {
    const char *name;
    enum an_math math;
} maths[] = {
    {"total", AN_MATH_TOTAL}, {"unique_users", AN_MATH_UNIQUE},
    {"dau", AN_MATH_UNIQUE},  {"wau", AN_MATH_WAU},
    {"mau", AN_MATH_MAU},     {"sum", AN_MATH_SUM},
    {"avg", AN_MATH_AVG},     {"min", AN_MATH_MIN},
    {"max", AN_MATH_MAX},     {"median", AN_MATH_MEDIAN},
    {"p90", AN_MATH_P90},     {"p95", AN_MATH_P95},
    {"p99", AN_MATH_P99},
};

enum ent_kind { ENT_SERIES_MATH, ENT_SERIES, ENT_STEP, ENT_EXCLUSION, ENT_RETENTION };

static bool parse_entity(struct pctx *p, const json_t *o, const char *path, enum ent_kind ek,
                         struct an_entity *out)
{
    memset(out, 0, sizeof(*out));
    if (!o || json_is_null(o)) {
        an__error(p->errors, path, C_REQUIRED, "Missing.");
        return false;
    }
    if (!json_is_object(o)) {
        an__error(p->errors, path, C_INVALID, "Must be an object.");
        return false;
    }
    static const char *const a_math[] = {"event", "name",         "properties",
                                         "math",  "mathProperty", NULL};
    static const char *const a_plain[] = {"event", "name", "properties", NULL};
    static const char *const a_excl[] = {"event", "name", "properties", "fromStep", "toStep", NULL};
    check_members(p, o, path,
                  ek == ENT_SERIES_MATH ? a_math
                  : ek == ENT_EXCLUSION ? a_excl
                                        : a_plain);
    bool ok = true;
    const json_t *ev = json_object_get(o, "event");
    const char *epath = path2(p, path, "event");
    bool may_be_all = ek == ENT_SERIES_MATH || ek == ENT_SERIES;
    if (!ev || json_is_null(ev)) {
        if (!may_be_all) {
            an__error(p->errors, epath, C_REQUIRED, "Missing event.");
            ok = false;
        }
    } else if (!json_is_string(ev) || json_string_length(ev) == 0 ||
               json_string_length(ev) > 1000 ||
               strlen(json_string_value(ev)) != json_string_length(ev)) {
        an__error(p->errors, epath, C_INVALID, "The event must be a non-empty string.");
        ok = false;
    } else {
        out->event = arena_strdup(p->a, json_string_value(ev));
    }
    const json_t *name = json_object_get(o, "name");
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || strlen(json_string_value(name)) != json_string_length(name)) {
            an__error(p->errors, path2(p, path, "name"), C_INVALID, "The name must be a string.");
            ok = false;
        } else {
            out->label = arena_strdup(p->a, json_string_value(name));
        }
    }
    if (!out->label)
        out->label = out->event ? out->event : "All events";
    ok &= parse_filters(p, json_object_get(o, "properties"), path2(p, path, "properties"),
                        &out->filters, &out->n_filters);
    out->math = AN_MATH_TOTAL;
    out->math_name = "total";
    if (ek == ENT_SERIES_MATH) {
        const json_t *m = json_object_get(o, "math");
        const char *mpath = path2(p, path, "math");
        if (m && !json_is_null(m)) {
            bool found = false;
            for (size_t i = 0; i < ARRAY_LEN(maths) && json_is_string(m); i++)
                if (strcmp(maths[i].name, json_string_value(m)) == 0) {
                    out->math = maths[i].math;
                    out->math_name = maths[i].name;
                    found = true;
                }
            if (!found) {
                if (json_is_string(m))
                    an__error(p->errors, mpath, C_INVALID, "Unknown math \"%.60s\".",
                              json_string_value(m));
                else
                    an__error(p->errors, mpath, C_INVALID, "The math must be a string.");
                ok = false;
            }
        }
        bool prop_math = out->math >= AN_MATH_SUM;
        const json_t *mp = json_object_get(o, "mathProperty");
        const char *mppath = path2(p, path, "mathProperty");
        if (prop_math) {
            if (!parse_key(p, mp, mppath, &out->math_prop))
                ok = false;
            else
                out->has_math_prop = true;
        } else if (mp && !json_is_null(mp)) {
            an__error(p->errors, mppath, C_UNKNOWN,
                      "Only sum, avg, min, max, median, p90, p95 "
                      "and p99 take a mathProperty.");
            ok = false;
        }
    }
    if (ek == ENT_EXCLUSION) {
        const char *names[2] = {"fromStep", "toStep"};
        int *dst[2] = {&out->from_step, &out->to_step};
        for (int i = 0; i < 2; i++) {
            const json_t *s = json_object_get(o, names[i]);
            const char *spath = path2(p, path, names[i]);
            if (!s || json_is_null(s)) {
                an__error(p->errors, spath, C_REQUIRED, "Missing %s.", names[i]);
                ok = false;
            } else if (!json_is_integer(s) || json_integer_value(s) < 0 ||
                       json_integer_value(s) >= AN_MAX_STEPS) {
                an__error(p->errors, spath, C_INVALID, "Must be a step number (0-based).");
                ok = false;
            } else {
                *dst[i] = (int)json_integer_value(s);
            }
        }
    }
    return ok;
}

static bool parse_entities(struct pctx *p, const json_t *v, const char *path, enum ent_kind ek,
                           size_t min, size_t max, struct an_entity **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!v || json_is_null(v)) {
        if (min == 0)
            return true;
        an__error(p->errors, path, C_REQUIRED, "Missing %s.", path);
        return false;
    }
    if (!json_is_array(v)) {
        an__error(p->errors, path, C_INVALID, "Must be an array.");
        return false;
    }
    size_t n = json_array_size(v);
    if (n < min || n > max) {
        if (min == max)
            an__error(p->errors, path, C_INVALID, "Must hold exactly %zu item%s.", min,
                      min == 1 ? "" : "s");
        else
            an__error(p->errors, path, min && n < min ? C_REQUIRED : C_INVALID,
                      "Must hold %zu to %zu items.", min, max);
        if (n == 0 || n > 1000)
            return false;
    }
    *out = arena_zalloc(p->a, n * sizeof(**out));
    bool ok = n >= min && n <= max;
    for (size_t i = 0; i < n; i++)
        ok &= parse_entity(p, json_array_get(v, i), arena_printf(p->a, "%s.%zu", path, i), ek,
                           &(*out)[i]);
    *n_out = n;
    return ok;
}

/* ---- dates and enums ---- */

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool parse_date(struct pctx *p, const json_t *v, const char *path, bool is_to,
                       struct an_date *out)
{
    if (!json_is_string(v)) {
        an__error(p->errors, path, C_INVALID, "The date must be a string.");
        return false;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strcmp(s, "now") == 0) {
        if (!is_to) {
            an__error(p->errors, path, C_INVALID, "\"now\" is only a dateTo.");
            return false;
        }
        out->kind = AN_DATE_NOW;
        return true;
    }
    if (s[0] == '-' && len >= 3 && len <= 7) {
        int n = 0;
        char unit = s[len - 1];
        if (digits(s + 1, (int)len - 2, &n) && n >= 1 && n <= 10000 && strchr("hdwm", unit)) {
            int64_t u = unit == 'h'   ? AN_US_HOUR
                        : unit == 'd' ? AN_US_DAY
                        : unit == 'w' ? 7 * AN_US_DAY
                                      : 30 * AN_US_DAY;
            out->kind = AN_DATE_RELATIVE;
            out->delta_us = (int64_t)n * u;
            return true;
        }
    }
    int y, mo, d, h = 0, mi = 0, se = 0;
    bool ok = (len == 10 || len == 16 || len == 19) && digits(s, 4, &y) && s[4] == '-' &&
              digits(s + 5, 2, &mo) && s[7] == '-' && digits(s + 8, 2, &d);
    if (ok && len >= 16)
        ok = s[10] == 'T' && digits(s + 11, 2, &h) && s[13] == ':' && digits(s + 14, 2, &mi);
    if (ok && len == 19)
        ok = s[16] == ':' && digits(s + 17, 2, &se);
    if (ok)
        ok = y >= 1900 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 &&
             se <= 59;
    if (ok) {
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        ok = d <= mdays[mo - 1] + (mo == 2 && leap);
    }
    if (!ok) {
        an__error(p->errors, path, C_INVALID,
                  "Use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], -Nh, -Nd, -Nw or -Nm%s.",
                  is_to ? " or now" : "");
        return false;
    }
    out->kind = AN_DATE_LOCAL;
    out->date_only = len == 10;
    out->local_us =
        (an__days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se) *
        1000000LL;
    return true;
}

/* Picks names[i] matching v; default when absent. -1 on error (reported). */
static int parse_enum(struct pctx *p, const json_t *v, const char *path, const char *const *names,
                      int def)
{
    if (!v || json_is_null(v))
        return def;
    for (int i = 0; names[i] && json_is_string(v); i++)
        if (strcmp(names[i], json_string_value(v)) == 0)
            return i;
    struct buf b;
    buf_init(&b);
    for (int i = 0; names[i]; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", names[i]);
    an__error(p->errors, path, C_INVALID, "Must be one of %s.", buf_cstr(&b));
    buf_release(&b);
    return -1;
}

int an__parse(struct arena *a, enum analytics_kind kind, const json_t *q, struct an_query *out,
              json_t *errors)
{
    struct pctx p = {.a = a, .errors = errors};
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->interval = AN_DAY;
    if (!json_is_object(q)) {
        an__error(errors, "body", C_INVALID, "The query must be a JSON object.");
        return ERR_INVALID;
    }
    static const char *const a_trends[] = {"series",    "dateFrom",  "dateTo",
                                           "interval",  "timezone",  "properties",
                                           "breakdown", "weekStart", NULL};
    static const char *const a_funnel[] = {
        "steps",      "dateFrom",     "dateTo",           "timezone",    "properties", "breakdown",
        "exclusions", "funnelWindow", "funnelWindowUnit", "funnelOrder", NULL};
    static const char *const a_ret[] = {
        "targetEvent", "returningEvent", "retentionType", "period",    "totalIntervals",
        "dateTo",      "timezone",       "properties",    "weekStart", NULL};
    static const char *const a_series[] = {"series",   "dateFrom",   "dateTo",    "interval",
                                           "timezone", "properties", "weekStart", NULL};
    check_members(&p, q, "",
                  kind == ANALYTICS_TRENDS      ? a_trends
                  : kind == ANALYTICS_FUNNEL    ? a_funnel
                  : kind == ANALYTICS_RETENTION ? a_ret
                                                : a_series);

    /* timezone */
    const json_t *tz = json_object_get(q, "timezone");
    out->timezone = "UTC";
    if (tz && !json_is_null(tz)) {
        if (!json_is_string(tz) || json_string_length(tz) == 0 || json_string_length(tz) > 64 ||
            strlen(json_string_value(tz)) != json_string_length(tz))
            an__error(errors, "timezone", C_INVALID, "Must be an IANA time zone name.");
        else
            out->timezone = arena_strdup(a, json_string_value(tz));
    }
    static const char *const intervals[] = {"hour", "day", "week", "month", NULL};
    static const char *const periods[] = {"hour", "day", "week", "month", NULL};
    static const char *const wstarts[] = {"monday", "sunday", NULL};
    int ws = parse_enum(&p, json_object_get(q, "weekStart"), "weekStart", wstarts, 0);
    out->week_sunday = ws == 1;
    if (kind == ANALYTICS_RETENTION) {
        int per = parse_enum(&p, json_object_get(q, "period"), "period", periods, AN_DAY);
        if (per == AN_HOUR) {
            an__error(errors, "period", C_INVALID, "Must be one of day, week, month.");
            per = -1;
        }
        out->interval = per < 0 ? AN_DAY : (enum an_interval)per;
    } else if (kind != ANALYTICS_FUNNEL) { /* a funnel's range is whole local days */
        int iv = parse_enum(&p, json_object_get(q, "interval"), "interval", intervals, AN_DAY);
        out->interval = iv < 0 ? AN_DAY : (enum an_interval)iv;
    }

    /* dates */
    out->from = (struct an_date){.kind = AN_DATE_RELATIVE, .delta_us = 7 * AN_US_DAY};
    out->to = (struct an_date){.kind = AN_DATE_NOW};
    const json_t *df = json_object_get(q, "dateFrom");
    if (df && !json_is_null(df))
        parse_date(&p, df, "dateFrom", false, &out->from);
    const json_t *dt = json_object_get(q, "dateTo");
    if (dt && !json_is_null(dt))
        parse_date(&p, dt, "dateTo", true, &out->to);

    parse_filters(&p, json_object_get(q, "properties"), "properties", &out->filters,
                  &out->n_filters);
    const json_t *bd = json_object_get(q, "breakdown");
    if (bd && !json_is_null(bd) && (kind == ANALYTICS_TRENDS || kind == ANALYTICS_FUNNEL))
        out->has_breakdown = parse_key(&p, bd, "breakdown", &out->breakdown);

    switch (kind) {
    case ANALYTICS_TRENDS:
        parse_entities(&p, json_object_get(q, "series"), "series", ENT_SERIES_MATH, 1,
                       AN_MAX_SERIES, &out->ents, &out->n_ents);
        break;
    case ANALYTICS_STICKINESS:
        parse_entities(&p, json_object_get(q, "series"), "series", ENT_SERIES, 1, AN_MAX_SERIES,
                       &out->ents, &out->n_ents);
        break;
    case ANALYTICS_LIFECYCLE:
        parse_entities(&p, json_object_get(q, "series"), "series", ENT_SERIES, 1, 1, &out->ents,
                       &out->n_ents);
        break;
    case ANALYTICS_FUNNEL: {
        parse_entities(&p, json_object_get(q, "steps"), "steps", ENT_STEP, AN_MIN_STEPS,
                       AN_MAX_STEPS, &out->ents, &out->n_ents);
        static const char *const orders[] = {"ordered", "strict", "unordered", NULL};
        int ord = parse_enum(&p, json_object_get(q, "funnelOrder"), "funnelOrder", orders, 0);
        out->order = ord < 0 ? AN_ORDER_ORDERED : (enum an_order)ord;
        static const char *const units[] = {"second", "minute", "hour", "day",
                                            "week",   "month",  NULL};
        static const int64_t unit_us[] = {1000000LL, 60000000LL,    AN_US_HOUR,
                                          AN_US_DAY, 7 * AN_US_DAY, 30 * AN_US_DAY};
        int unit =
            parse_enum(&p, json_object_get(q, "funnelWindowUnit"), "funnelWindowUnit", units, 3);
        const json_t *w = json_object_get(q, "funnelWindow");
        int64_t n = 14;
        if (w && !json_is_null(w)) {
            if (!json_is_integer(w) || json_integer_value(w) < 1 ||
                json_integer_value(w) > 100000) {
                an__error(errors, "funnelWindow", C_INVALID,
                          "Must be a whole number from 1 to 100000.");
                n = 14;
            } else {
                n = json_integer_value(w);
            }
        }
        out->window_us = n * unit_us[unit < 0 ? 3 : unit];
        const json_t *ex = json_object_get(q, "exclusions");
        if (ex && !json_is_null(ex) && out->order == AN_ORDER_UNORDERED &&
            (!json_is_array(ex) || json_array_size(ex) > 0)) {
            an__error(errors, "exclusions", C_INVALID, "Unordered funnels take no exclusions.");
        } else if (parse_entities(&p, ex, "exclusions", ENT_EXCLUSION, 0, AN_MAX_EXCLUSIONS,
                                  &out->excl, &out->n_excl)) {
            for (size_t i = 0; i < out->n_excl; i++) {
                const char *path = arena_printf(a, "exclusions.%zu.toStep", i);
                if (out->excl[i].from_step >= out->excl[i].to_step)
                    an__error(errors, path, C_INVALID, "toStep must be greater than fromStep.");
                else if (out->n_ents >= AN_MIN_STEPS && (size_t)out->excl[i].to_step >= out->n_ents)
                    an__error(errors, path, C_INVALID, "There is no step %d.",
                              out->excl[i].to_step);
            }
        }
        break;
    }
    case ANALYTICS_RETENTION: {
        parse_entity(&p, json_object_get(q, "targetEvent"), "targetEvent", ENT_RETENTION,
                     &out->target);
        parse_entity(&p, json_object_get(q, "returningEvent"), "returningEvent", ENT_RETENTION,
                     &out->returning);
        static const char *const types[] = {"recurring", "first_time", NULL};
        out->first_time =
            parse_enum(&p, json_object_get(q, "retentionType"), "retentionType", types, 0) == 1;
        const json_t *ti = json_object_get(q, "totalIntervals");
        out->total_intervals = 7;
        if (ti && !json_is_null(ti)) {
            if (!json_is_integer(ti) || json_integer_value(ti) < 1 || json_integer_value(ti) > 100)
                an__error(errors, "totalIntervals", C_INVALID,
                          "Must be a whole number from 1 to 100.");
            else
                out->total_intervals = (int)json_integer_value(ti);
        }
        break;
    }
    }
    return json_object_size(errors) ? ERR_INVALID : 0;
}
