/* metrics.c - the registry, lock-free series lookup and exposition. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

#define METRICS_MAX_LABELS 8
#define TABLE_SIZE (METRICS_MAX_SERIES * 2) /* power of two, at most half full */
#define DEFAULT_BUCKETS 14

static const double default_buckets[DEFAULT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

struct metrics_series {
    struct metrics_family *family;
    char *key;                  /* label values joined by \x1f */
    char **values;              /* label values */
    _Atomic uint64_t value;     /* counter: the count; gauge: bits of a double */
    _Atomic uint64_t sum_bits;  /* histogram: bits of a double */
    _Atomic uint64_t count;     /* histogram */
    _Atomic uint64_t buckets[]; /* histogram: per bucket, not cumulative */
};

struct metrics_family {
    struct metrics_family *next;
    enum metrics_type type;
    char *name;
    char *help;
    char *label_names[METRICS_MAX_LABELS];
    size_t n_labels;
    double *bounds;
    size_t n_bounds;
    metrics_collect_cb collect;
    void *collect_arg;
    pthread_mutex_t lock; /* leaf: only for inserting a series */
    size_t n_series;
    struct metrics_series *overflow;
    _Atomic(struct metrics_series *) *table;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_family *registry_head, **registry_tail = &registry_head;

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double double_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static struct metrics_family *family_find(const char *name)
{
    for (struct metrics_family *f = registry_head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static struct metrics_family *family_add(enum metrics_type type, const char *name, const char *help,
                                         const char *labels, const double *bounds, size_t n_bounds)
{
    pthread_mutex_lock(&registry_lock);
    struct metrics_family *f = family_find(name);
    if (f) {
        pthread_mutex_unlock(&registry_lock);
        return f;
    }
    f = xcalloc(1, sizeof(*f));
    f->type = type;
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    if (labels && *labels) {
        char *copy = xstrdup(labels), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (f->n_labels == METRICS_MAX_LABELS)
                PANIC("metric %s has too many labels", name);
            f->label_names[f->n_labels++] = xstrdup(t);
        }
        free(copy);
    }
    if (type == METRICS_HISTOGRAM) {
        if (!bounds) {
            bounds = default_buckets;
            n_bounds = DEFAULT_BUCKETS;
        }
        f->bounds = xmalloc(n_bounds * sizeof(double));
        memcpy(f->bounds, bounds, n_bounds * sizeof(double));
        f->n_bounds = n_bounds;
    }
    pthread_mutex_init(&f->lock, NULL);
    f->table = xcalloc(TABLE_SIZE, sizeof(*f->table));
    *registry_tail = f;
    registry_tail = &f->next;
    pthread_mutex_unlock(&registry_lock);
    return f;
}

struct metrics_family *metrics_family(enum metrics_type type, const char *name, const char *help,
                                      const char *labels)
{
    return family_add(type, name, help, labels, NULL, 0);
}

struct metrics_family *metrics_histogram(const char *name, const char *help, const char *labels,
                                         const double *buckets, size_t n_buckets)
{
    return family_add(METRICS_HISTOGRAM, name, help, labels, buckets, n_buckets);
}

void metrics_collector(enum metrics_type type, const char *name, const char *help,
                       metrics_collect_cb fn, void *arg)
{
    struct metrics_family *f = family_add(type, name, help, NULL, NULL, 0);
    f->collect = fn;
    f->collect_arg = arg;
}

static uint64_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ull;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return h;
}

static struct metrics_series *series_new(struct metrics_family *f, const char *key,
                                         const char *const *values)
{
    size_t nb = f->type == METRICS_HISTOGRAM ? f->n_bounds + 1 : 0;
    struct metrics_series *s = xcalloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));
    s->family = f;
    s->key = xstrdup(key);
    s->values = xcalloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
    for (size_t i = 0; i < f->n_labels; i++)
        s->values[i] = xstrdup(values ? values[i] : "overflow");
    return s;
}

struct metrics_series *metrics_series(struct metrics_family *f, const char *const *values)
{
    char stack[256];
    struct buf key = {0};
    const char *k;
    size_t off = 0;
    bool fits = true;
    /* build "v1\x1fv2..." on the stack when it fits */
    for (size_t i = 0; i < f->n_labels && fits; i++) {
        size_t n = strlen(values[i]);
        if (off + n + 2 > sizeof(stack)) {
            fits = false;
            break;
        }
        memcpy(stack + off, values[i], n);
        off += n;
        if (i + 1 < f->n_labels)
            stack[off++] = '\x1f';
    }
    if (fits) {
        stack[off] = '\0';
        k = stack;
    } else {
        for (size_t i = 0; i < f->n_labels; i++) {
            buf_puts(&key, values[i]);
            if (i + 1 < f->n_labels)
                buf_putc(&key, '\x1f');
        }
        k = buf_cstr(&key);
    }

    uint64_t h = hash_key(k);
    struct metrics_series *found = NULL;
    for (size_t probe = 0; probe < TABLE_SIZE; probe++) {
        size_t slot = (h + probe) & (TABLE_SIZE - 1);
        struct metrics_series *s = atomic_load_explicit(&f->table[slot], memory_order_acquire);
        if (!s) {
            /* not present: insert under the lock, re-checking the slot chain */
            pthread_mutex_lock(&f->lock);
            for (size_t p2 = probe; p2 < TABLE_SIZE; p2++) {
                size_t sl = (h + p2) & (TABLE_SIZE - 1);
                struct metrics_series *t =
                    atomic_load_explicit(&f->table[sl], memory_order_acquire);
                if (t && strcmp(t->key, k) == 0) {
                    found = t;
                    break;
                }
                if (!t) {
                    if (f->n_series >= METRICS_MAX_SERIES) {
                        if (!f->overflow)
                            f->overflow = series_new(f, "", NULL);
                        found = f->overflow;
                    } else {
                        found = series_new(f, k, values);
                        f->n_series++;
                        atomic_store_explicit(&f->table[sl], found, memory_order_release);
                    }
                    break;
                }
            }
            pthread_mutex_unlock(&f->lock);
            break;
        }
        if (strcmp(s->key, k) == 0) {
            found = s;
            break;
        }
    }
    buf_release(&key);
    if (!found)
        PANIC("metric %s: series table full", f->name);
    return found;
}

struct metrics_series *metrics_series0(struct metrics_family *f)
{
    return metrics_series(f, NULL);
}

void metrics_inc(struct metrics_series *s, uint64_t n)
{
    atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

static void add_double(_Atomic uint64_t *cell, double delta)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(cell, &old, bits_of(double_of(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void metrics_set(struct metrics_series *s, double v)
{
    atomic_store_explicit(&s->value, bits_of(v), memory_order_relaxed);
}

void metrics_add(struct metrics_series *s, double delta)
{
    add_double(&s->value, delta);
}

void metrics_observe(struct metrics_series *s, double v)
{
    const struct metrics_family *f = s->family;
    size_t i = 0;
    while (i < f->n_bounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    add_double(&s->sum_bits, v);
}

double metrics_value(const struct metrics_series *s)
{
    uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    return s->family->type == METRICS_COUNTER ? (double)v : double_of(v);
}

uint64_t metrics_hist_count(const struct metrics_series *s)
{
    return atomic_load_explicit(&s->count, memory_order_relaxed);
}

static void write_double(struct buf *out, double v)
{
    if (isnan(v))
        buf_puts(out, "NaN");
    else if (isinf(v))
        buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 1e15)
        buf_printf(out, "%lld", (long long)v);
    else {
        /* the shortest of 15 or 17 digits that reads back as the same double */
        char tmp[40];
        snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
            snprintf(tmp, sizeof(tmp), "%.17g", v);
        buf_puts(out, tmp);
    }
}

static void write_label_value(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            buf_puts(out, "\\\\");
        else if (*v == '"')
            buf_puts(out, "\\\"");
        else if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_putc(out, *v);
    }
}

/* {a="x",b="y"[,extra]} or nothing when there are no labels and no extra */
static void write_labels(struct buf *out, char *const *names, size_t n, const char *const *values,
                         const char *extra)
{
    if (n == 0 && !extra)
        return;
    buf_putc(out, '{');
    for (size_t i = 0; i < n; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", names[i]);
        write_label_value(out, values[i]);
        buf_putc(out, '"');
    }
    if (extra)
        buf_printf(out, "%s%s", n ? "," : "", extra);
    buf_putc(out, '}');
}

void metrics_write_sample(struct buf *out, const char *name, const char *label_names,
                          const char *const *values, double v)
{
    char *names[METRICS_MAX_LABELS];
    size_t n = 0;
    char *copy = label_names ? xstrdup(label_names) : NULL, *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && n < METRICS_MAX_LABELS;
         t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    buf_puts(out, name);
    write_labels(out, names, n, values, NULL);
    buf_putc(out, ' ');
    write_double(out, v);
    buf_putc(out, '\n');
    free(copy);
}

static int cmp_series(const void *a, const void *b)
{
    const struct metrics_series *x = *(struct metrics_series *const *)a;
    const struct metrics_series *y = *(struct metrics_series *const *)b;
    return strcmp(x->key, y->key);
}

static void render_series(struct buf *out, const struct metrics_family *f,
                          const struct metrics_series *s)
{
    const char *const *vals = (const char *const *)s->values;
    if (f->type != METRICS_HISTOGRAM) {
        buf_puts(out, f->name);
        write_labels(out, f->label_names, f->n_labels, vals, NULL);
        buf_putc(out, ' ');
        write_double(out, metrics_value(s));
        buf_putc(out, '\n');
        return;
    }
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i <= f->n_bounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < f->n_bounds)
            snprintf(le, sizeof(le), "le=\"%g\"", f->bounds[i]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        buf_printf(out, "%s_bucket", f->name);
        write_labels(out, f->label_names, f->n_labels, vals, le);
        buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    buf_printf(out, "%s_sum", f->name);
    write_labels(out, f->label_names, f->n_labels, vals, NULL);
    buf_putc(out, ' ');
    write_double(out, double_of(atomic_load_explicit(&s->sum_bits, memory_order_relaxed)));
    buf_printf(out, "\n%s_count", f->name);
    write_labels(out, f->label_names, f->n_labels, vals, NULL);
    /* the count is the sum of the buckets read above, so the two always agree */
    buf_printf(out, " %llu\n", (unsigned long long)cum);
}

void metrics_render(struct buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    /* snapshot the family list so collectors run without the registry lock */
    size_t n_fam = 0, cap = 16;
    struct metrics_family **fams = xmalloc(cap * sizeof(*fams));
    pthread_mutex_lock(&registry_lock);
    for (struct metrics_family *f = registry_head; f; f = f->next) {
        if (n_fam == cap)
            fams = xrealloc(fams, (cap *= 2) * sizeof(*fams));
        fams[n_fam++] = f;
    }
    pthread_mutex_unlock(&registry_lock);
    for (size_t fi = 0; fi < n_fam; fi++) {
        struct metrics_family *f = fams[fi];
        buf_printf(out, "# HELP %s ", f->name);
        for (const char *h = f->help; *h; h++) {
            if (*h == '\\' || *h == '\n')
                buf_puts(out, *h == '\\' ? "\\\\" : "\\n");
            else
                buf_putc(out, *h);
        }
        buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        if (f->collect) {
            f->collect(out, f->name, f->collect_arg);
            continue;
        }
        struct metrics_series **list = xmalloc((METRICS_MAX_SERIES + 1) * sizeof(*list));
        size_t n = 0;
        for (size_t i = 0; i < TABLE_SIZE; i++) {
            struct metrics_series *s = atomic_load_explicit(&f->table[i], memory_order_acquire);
            if (s)
                list[n++] = s;
        }
        qsort(list, n, sizeof(*list), cmp_series);
        pthread_mutex_lock(&f->lock);
        if (f->overflow)
            list[n++] = f->overflow;
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; i < n; i++)
            render_series(out, f, list[i]);
        free(list);
    }
    free(fams);
}
