/* cron.c - the registry of the server's periodic jobs and the one thread that runs them. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/ops.h"

#define CRON_ID_MAX 64
#define CRON_EXPR_MAX 128

/* ---- schedules ---- */

static const struct {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int parse_num(const char **p, int *out)
{
    const char *s = *p;
    int v = 0, n = 0;
    while (*s >= '0' && *s <= '9' && n < 3) {
        v = v * 10 + (*s++ - '0');
        n++;
    }
    if (n == 0 || (*s >= '0' && *s <= '9'))
        return ERR_INVALID;
    *p = s;
    *out = v;
    return 0;
}

/* One field (text up to a space or the end) into bits lo..hi. */
static int parse_field(const char *f, size_t len, int lo, int hi, uint64_t *bits_out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return ERR_INVALID;
    memcpy(buf, f, len);
    buf[len] = '\0';
    uint64_t bits = 0;
    const char *p = buf;
    for (;;) {
        int a = lo, b = hi, step = 1;
        if (*p == '*') {
            p++;
        } else {
            if (parse_num(&p, &a) != 0)
                return ERR_INVALID;
            b = a;
            if (*p == '-') {
                p++;
                if (parse_num(&p, &b) != 0)
                    return ERR_INVALID;
            }
        }
        if (*p == '/') {
            p++;
            if (parse_num(&p, &step) != 0 || step < 1)
                return ERR_INVALID;
        }
        if (a < lo || b > hi || a > b)
            return ERR_INVALID;
        for (int v = a; v <= b; v += step)
            bits |= UINT64_C(1) << v;
        if (*p == '\0')
            break;
        if (*p++ != ',')
            return ERR_INVALID;
    }
    *bits_out = bits;
    return 0;
}

int ops_cron_parse(const char *expr, struct ops_cron_sched *out)
{
    if (!expr)
        return ERR_INVALID;
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
        if (strcmp(expr, macros[i].name) == 0)
            expr = macros[i].expr;
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 6};
    uint64_t bits[5];
    const char *p = expr;
    for (int i = 0; i < 5; i++) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (parse_field(p, (size_t)(e - p), lo[i], hi[i], &bits[i]) != 0)
            return ERR_INVALID;
        p = e;
    }
    while (*p == ' ')
        p++;
    if (*p)
        return ERR_INVALID;
    *out = (struct ops_cron_sched){bits[0], (uint32_t)bits[1], (uint32_t)bits[2], (uint16_t)bits[3],
                                   (uint8_t)bits[4]};
    return 0;
}

bool ops_cron_due(const struct ops_cron_sched *s, int64_t t_s)
{
    time_t t = (time_t)t_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return (s->minutes >> tm.tm_min & 1) && (s->hours >> tm.tm_hour & 1) &&
           (s->days >> tm.tm_mday & 1) && (s->months >> (tm.tm_mon + 1) & 1) &&
           (s->weekdays >> tm.tm_wday & 1);
}

/* ---- the registry and its thread ---- */

struct job {
    struct job *next;
    char id[CRON_ID_MAX + 1];
    char expr[CRON_EXPR_MAX + 1];
    struct ops_cron_sched sched;
    ops_cron_job_cb fn;
    void *arg;
    bool run_now; /* [lock] asked for by ops_cron_run */
};

struct ops_cron {
    pthread_mutex_t lock; /* leaf: guards jobs, stop, kicked; never held across a job */
    pthread_cond_t cond;
    struct job *jobs;
    bool stop, kicked;
    pthread_t thread;
};

static bool id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CRON_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static struct job *find(struct ops_cron *c, const char *id)
{
    for (struct job *j = c->jobs; j; j = j->next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

/* Under lock: the first job asked to run; copies its callback out so the job may be removed
 * or replaced while it runs. */
static bool take_due(struct ops_cron *c, ops_cron_job_cb *fn, void **arg, char *id)
{
    for (struct job *j = c->jobs; j; j = j->next) {
        if (!j->run_now)
            continue;
        j->run_now = false;
        *fn = j->fn;
        *arg = j->arg;
        memcpy(id, j->id, sizeof(j->id));
        return true;
    }
    return false;
}

static void *cron_main(void *arg)
{
    struct ops_cron *c = arg;
    int64_t last_minute = time_now_us() / 60000000;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        int64_t now_min = time_now_us() / 60000000;
        if (now_min > last_minute) {
            /* a new minute: every job scheduled at it is due once (a clock that jumped
             * forward runs each due job once, not once per skipped minute) */
            for (struct job *j = c->jobs; j; j = j->next)
                if (ops_cron_due(&j->sched, now_min * 60))
                    j->run_now = true;
            last_minute = now_min;
        }
        ops_cron_job_cb fn;
        void *fn_arg;
        char id[CRON_ID_MAX + 1];
        if (take_due(c, &fn, &fn_arg, id)) {
            pthread_mutex_unlock(&c->lock);
            xlog_debug("cron: running %s", id);
            fn(fn_arg);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        if (c->kicked) {
            c->kicked = false;
            continue;
        }
        /* sleep to the next minute boundary (or a kick) */
        int64_t wake_us = (now_min + 1) * 60000000 + 1000;
        struct timespec ts = {.tv_sec = (time_t)(wake_us / 1000000),
                              .tv_nsec = (long)(wake_us % 1000000) * 1000};
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int ops_cron_new(struct ops_cron **out)
{
    struct ops_cron *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL); /* CLOCK_REALTIME: schedules follow the wall clock */
    if (pthread_create(&c->thread, NULL, cron_main, c) != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
        *out = NULL;
        return ERR_INTERNAL;
    }
    *out = c;
    return 0;
}

void ops_cron_free(struct ops_cron *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    while (c->jobs) {
        struct job *j = c->jobs;
        c->jobs = j->next;
        free(j);
    }
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int ops_cron_add(struct ops_cron *c, const char *id, const char *expr, ops_cron_job_cb fn,
                 void *arg)
{
    struct ops_cron_sched s;
    if (!id_valid(id) || !expr || strlen(expr) > CRON_EXPR_MAX || !fn ||
        ops_cron_parse(expr, &s) != 0)
        return ERR_INVALID;
    pthread_mutex_lock(&c->lock);
    struct job *j = find(c, id);
    if (!j) {
        j = xcalloc(1, sizeof(*j));
        snprintf(j->id, sizeof(j->id), "%s", id);
        j->next = c->jobs;
        c->jobs = j;
    }
    snprintf(j->expr, sizeof(j->expr), "%s", expr);
    j->sched = s;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int ops_cron_remove(struct ops_cron *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    for (struct job **pp = &c->jobs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct job *j = *pp;
            *pp = j->next;
            pthread_mutex_unlock(&c->lock);
            free(j);
            return 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ERR_NOTFOUND;
}

int ops_cron_run(struct ops_cron *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    struct job *j = id ? find(c, id) : NULL;
    if (j) {
        j->run_now = true;
        c->kicked = true;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    return j ? 0 : ERR_NOTFOUND;
}

bool ops_cron_stopping(struct ops_cron *c)
{
    pthread_mutex_lock(&c->lock);
    bool stop = c->stop;
    pthread_mutex_unlock(&c->lock);
    return stop;
}

static int cmp_jobs(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));
    bool sx = strncmp(x, "__", 2) == 0, sy = strncmp(y, "__", 2) == 0;
    if (sx != sy)
        return sx ? 1 : -1;
    return strcmp(x, y);
}

json_t *ops_cron_list(struct ops_cron *c)
{
    size_t n = 0, cap = 0;
    json_t **items = NULL;
    pthread_mutex_lock(&c->lock);
    for (struct job *j = c->jobs; j; j = j->next) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            items = xrealloc(items, cap * sizeof(*items));
        }
        items[n++] = json_pack("{s:s,s:s}", "id", j->id, "expression", j->expr);
    }
    pthread_mutex_unlock(&c->lock);
    if (n > 1)
        qsort(items, n, sizeof(items[0]), cmp_jobs);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    free(items);
    return arr;
}
