/* cron.c - five-field cron expressions for model schedules: minute hour day-of-month month
 * day-of-week, each "*", a number, a range a-b, a step (*\/n, a-b/n) or a comma list of these;
 * day-of-week 0-7 with 0 and 7 Sunday. As in cron, when both day fields are restricted a day
 * matching either fires. Times are UTC. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/models_int.h"

struct field_range {
    int lo, hi;
};

static const struct field_range ranges[5] = {{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}};

static int parse_num(const char **p, int *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    int v = 0;
    while (*s >= '0' && *s <= '9' && v < 1000)
        v = v * 10 + (*s++ - '0');
    *p = s;
    *out = v;
    return 0;
}

/* Parses one field (up to a space or the end) into the bit set; *star when it is "*" alone. */
static int parse_field(const char **pp, int idx, uint64_t *bits, bool *star)
{
    const char *p = *pp;
    int lo = ranges[idx].lo, hi = ranges[idx].hi;
    *bits = 0;
    *star = false;
    for (;;) {
        int a, b, step = 1;
        if (*p == '*') {
            a = lo;
            b = hi;
            p++;
            if (*p != '/' && (*p == ' ' || *p == '\t' || *p == 0) && *bits == 0)
                *star = true;
        } else {
            if (parse_num(&p, &a) < 0)
                return ERR_INVALID;
            b = a;
            if (*p == '-') {
                p++;
                if (parse_num(&p, &b) < 0)
                    return ERR_INVALID;
            }
        }
        if (*p == '/') {
            p++;
            if (parse_num(&p, &step) < 0 || step < 1)
                return ERR_INVALID;
            *star = false;
        }
        if (a < lo || b > hi || a > b)
            return ERR_INVALID;
        for (int v = a; v <= b; v += step)
            *bits |= UINT64_C(1) << v;
        if (*p == ',') {
            p++;
            *star = false;
            continue;
        }
        break;
    }
    if (*p && *p != ' ' && *p != '\t')
        return ERR_INVALID;
    *pp = p;
    return 0;
}

static int parse(const char *expr, uint64_t bits[5], bool star[5])
{
    const char *p = expr;
    if (!p || strlen(p) > 200)
        return ERR_INVALID;
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (parse_field(&p, i, &bits[i], &star[i]) < 0)
            return ERR_INVALID;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return ERR_INVALID;
    if (bits[4] & (UINT64_C(1) << 7))
        bits[4] |= 1; /* 7 is Sunday too */
    return 0;
}

int models_cron_check(const char *expr)
{
    uint64_t bits[5];
    bool star[5];
    return parse(expr, bits, star);
}

bool models_cron_match(const char *expr, int64_t t_us)
{
    uint64_t bits[5];
    bool star[5];
    if (parse(expr, bits, star) < 0)
        return false;
    time_t t = (time_t)(t_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!(bits[0] >> tm.tm_min & 1) || !(bits[1] >> tm.tm_hour & 1) ||
        !(bits[3] >> (tm.tm_mon + 1) & 1))
        return false;
    bool dom = bits[2] >> tm.tm_mday & 1, dow = bits[4] >> tm.tm_wday & 1;
    if (star[2] || star[4])
        return dom && dow;
    return dom || dow;
}
