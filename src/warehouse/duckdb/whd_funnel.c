/* whd_funnel.c - the funnel aggregate tandem_funnel(ts, mask, n_steps, window_us, mode,
 * exclusions) -> DOUBLE[], a DuckDB C API aggregate (docs/analytics.md, "The funnel aggregate").
 *
 * One state per group (one actor): the group's events as (timestamp, mask) in a growable array
 * plus the constant parameters, parsed once and checked on every row. Finalize sorts the events
 * (timestamp, then the lowest step matched, events matching no step last), runs the ordered,
 * strict or unordered walk, applies the exclusions to the actor's chain and writes
 * [furthest, t1, ..., t_furthest] (seconds between consecutive steps of the chain), or [-1].
 *
 * DuckDB may move a state's bytes (its hash tables copy rows), so a state never points into
 * itself: the first events live in an inline array, later ones in a heap array the state owns.
 * A zeroed state is a valid empty state. Bad input never asserts: it fails the query through
 * duckdb_aggregate_function_set_error.
 *
 * Threads: DuckDB calls the callbacks from its worker threads; a state is touched by one thread
 * at a time, and nothing here is global. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warehouse/duckdb/whd_int.h"

#define FN_NAME "tandem_funnel"
#define FN_MAX_STEPS 20
#define FN_MAX_EXCL 8
#define FN_EXCL_SHIFT 20
#define FN_INLINE 2
#define FN_MAX_EVENTS (1u << 28) /* events of one group; 4 GiB of state */
#define FN_NO_STEP 31u           /* sort rank of an event that matches no step */

enum fn_mode { FN_ORDERED = 1, FN_STRICT, FN_UNORDERED };

/* The constant arguments, parsed. Fully zeroed before filling so memcmp compares them. */
struct fn_params {
    int64_t window;
    uint32_t allowed; /* mask bits a row may carry */
    uint8_t n_steps, mode, n_excl, pad;
    uint8_t ex_from[FN_MAX_EXCL], ex_to[FN_MAX_EXCL];
};

struct fn_ev {
    int64_t ts;
    uint32_t mask;
    uint32_t rank; /* lowest step matched, FN_NO_STEP for none */
};

struct fn_state {
    struct fn_ev *heap; /* NULL while the events fit in inl */
    uint32_t n;
    uint32_t cap; /* of heap; meaningless while heap is NULL */
    uint32_t has_params;
    struct fn_params p;
    struct fn_ev inl[FN_INLINE];
};

static inline struct fn_ev *fn_events(struct fn_state *s)
{
    return s->heap ? s->heap : s->inl;
}

static inline uint32_t fn_capacity(const struct fn_state *s)
{
    return s->heap ? s->cap : FN_INLINE;
}

static void fn_fail(duckdb_function_info info, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void fn_fail(duckdb_function_info info, const char *fmt, ...)
{
    char msg[512];
    int k = snprintf(msg, sizeof(msg), "%s: ", FN_NAME);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof(msg) - (size_t)k, fmt, ap);
    va_end(ap);
    duckdb_aggregate_function_set_error(info, msg);
}

/* Makes room for extra more events; 0, or -1 with the error set on info. */
static int fn_reserve(duckdb_function_info info, struct fn_state *s, uint32_t extra)
{
    uint32_t cap = fn_capacity(s);
    if (extra <= cap - s->n)
        return 0;
    if (extra > FN_MAX_EVENTS - s->n) {
        fn_fail(info, "more than %u events in one group", FN_MAX_EVENTS);
        return -1;
    }
    uint32_t need = s->n + extra;
    uint32_t ncap = cap < 8 ? 8 : cap;
    while (ncap < need)
        ncap = ncap > FN_MAX_EVENTS / 2 ? FN_MAX_EVENTS : ncap * 2;
    struct fn_ev *nh = realloc(s->heap, (size_t)ncap * sizeof(*nh));
    if (!nh) {
        fn_fail(info, "out of memory for %u events", ncap);
        return -1;
    }
    if (!s->heap)
        memcpy(nh, s->inl, (size_t)s->n * sizeof(*nh));
    s->heap = nh;
    s->cap = ncap;
    return 0;
}

/* ---- parameters ---- */

static const char *const mode_names[] = {NULL, "ordered", "strict", "unordered"};

static int parse_uint(const char **pp, const char *end, unsigned *out)
{
    const char *p = *pp;
    unsigned v = 0;
    if (p == end || *p < '0' || *p > '9')
        return -1;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 1000)
            return -1;
        p++;
    }
    *pp = p;
    *out = v;
    return 0;
}

/* Parses one row's constants into p; 0, or -1 with the error set on info. */
static int fn_params_parse(duckdb_function_info info, int32_t n_steps, int64_t window,
                           const char *mode, size_t mode_len, const char *ex, size_t ex_len,
                           struct fn_params *p)
{
    memset(p, 0, sizeof(*p));
    if (n_steps < 2 || n_steps > FN_MAX_STEPS) {
        fn_fail(info, "n_steps must be 2 to %d, got %d", FN_MAX_STEPS, (int)n_steps);
        return -1;
    }
    if (window < 0) {
        fn_fail(info, "window_us must not be negative, got %lld", (long long)window);
        return -1;
    }
    p->n_steps = (uint8_t)n_steps;
    p->window = window;
    for (int m = FN_ORDERED; m <= FN_UNORDERED; m++)
        if (strlen(mode_names[m]) == mode_len && memcmp(mode_names[m], mode, mode_len) == 0)
            p->mode = (uint8_t)m;
    if (!p->mode) {
        fn_fail(info, "unknown mode \"%.*s\" (ordered, strict or unordered)",
                (int)(mode_len > 40 ? 40 : mode_len), mode);
        return -1;
    }
    const char *q = ex, *end = ex + ex_len;
    while (q < end) {
        unsigned from, to;
        if (p->n_excl == FN_MAX_EXCL) {
            fn_fail(info, "more than %d exclusions", FN_MAX_EXCL);
            return -1;
        }
        if (parse_uint(&q, end, &from) < 0 || q == end || *q++ != '-' ||
            parse_uint(&q, end, &to) < 0 || (q < end && *q != ',') || (q < end && q + 1 == end)) {
            fn_fail(info, "bad exclusions \"%.*s\" (expected \"from-to,from-to,...\")",
                    (int)(ex_len > 80 ? 80 : ex_len), ex);
            return -1;
        }
        if (q < end)
            q++; /* the comma */
        if (from >= to || to >= (unsigned)n_steps) {
            fn_fail(info, "exclusion %u-%u must have 0 <= from < to < n_steps (%d)", from, to,
                    (int)n_steps);
            return -1;
        }
        p->ex_from[p->n_excl] = (uint8_t)from;
        p->ex_to[p->n_excl] = (uint8_t)to;
        p->n_excl++;
    }
    if (p->n_excl && p->mode == FN_UNORDERED) {
        fn_fail(info, "an unordered funnel takes no exclusions");
        return -1;
    }
    p->allowed = ((1u << p->n_steps) - 1) | (((1u << p->n_excl) - 1) << FN_EXCL_SHIFT);
    return 0;
}

/* ---- DuckDB callbacks: state, update, combine ---- */

static idx_t fn_state_size(duckdb_function_info info)
{
    (void)info;
    return sizeof(struct fn_state);
}

static void fn_init(duckdb_function_info info, duckdb_aggregate_state state)
{
    (void)info;
    memset((void *)state, 0, sizeof(struct fn_state));
}

static void fn_destroy(duckdb_aggregate_state *states, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fn_state *s = (struct fn_state *)states[i];
        free(s->heap);
        s->heap = NULL;
        s->n = 0;
    }
}

static inline bool valid_at(const uint64_t *validity, idx_t row)
{
    return !validity || duckdb_validity_row_is_valid((uint64_t *)validity, row);
}

static const char *str_ptr(duckdb_string_t *s)
{
    return duckdb_string_is_inlined(*s) ? s->value.inlined.inlined : s->value.pointer.ptr;
}

/* The raw constants of the last parsed row and what they parsed to. */
struct fn_cache {
    bool set;
    int32_t n_steps;
    int64_t window;
    duckdb_string_t mode, ex;
    struct fn_params p;
};

static void fn_update(duckdb_function_info info, duckdb_data_chunk input,
                      duckdb_aggregate_state *states)
{
    idx_t rows = duckdb_data_chunk_get_size(input);
    duckdb_vector v[6];
    const uint64_t *val[6];
    for (idx_t c = 0; c < 6; c++) {
        v[c] = duckdb_data_chunk_get_vector(input, c);
        val[c] = duckdb_vector_get_validity(v[c]);
    }
    const int64_t *ts = duckdb_vector_get_data(v[0]);
    const uint32_t *mask = duckdb_vector_get_data(v[1]);
    const int32_t *n_steps = duckdb_vector_get_data(v[2]);
    const int64_t *window = duckdb_vector_get_data(v[3]);
    duckdb_string_t *mode = duckdb_vector_get_data(v[4]);
    duckdb_string_t *ex = duckdb_vector_get_data(v[5]);
    bool any_null = false;
    for (int c = 0; c < 6; c++)
        any_null |= val[c] != NULL;

    struct fn_cache cache;
    cache.set = false;
    for (idx_t r = 0; r < rows; r++) {
        if (any_null) {
            bool ok = true;
            for (int c = 0; c < 6 && ok; c++)
                ok = valid_at(val[c], r);
            if (!ok)
                continue;
        }
        if (!cache.set || cache.n_steps != n_steps[r] || cache.window != window[r] ||
            memcmp(&cache.mode, &mode[r], sizeof(duckdb_string_t)) != 0 ||
            memcmp(&cache.ex, &ex[r], sizeof(duckdb_string_t)) != 0) {
            if (fn_params_parse(info, n_steps[r], window[r], str_ptr(&mode[r]),
                                duckdb_string_t_length(mode[r]), str_ptr(&ex[r]),
                                duckdb_string_t_length(ex[r]), &cache.p) < 0)
                return;
            cache.set = true;
            cache.n_steps = n_steps[r];
            cache.window = window[r];
            cache.mode = mode[r];
            cache.ex = ex[r];
        }
        struct fn_state *s = (struct fn_state *)states[r];
        if (!s->has_params) {
            s->p = cache.p;
            s->has_params = 1;
        } else if (memcmp(&s->p, &cache.p, sizeof(cache.p)) != 0) {
            fn_fail(info, "n_steps, window_us, mode and exclusions must be the same on every "
                          "row of a group");
            return;
        }
        uint32_t m = mask[r];
        if (m & ~cache.p.allowed) {
            fn_fail(info,
                    "mask 0x%x has bits beyond the %d steps (bits 0-%d) and %d exclusions "
                    "(bits %d-)",
                    (unsigned)m, (int)cache.p.n_steps, (int)cache.p.n_steps - 1,
                    (int)cache.p.n_excl, FN_EXCL_SHIFT);
            return;
        }
        if (m == 0 && cache.p.mode != FN_STRICT)
            continue; /* only strict funnels care about events that match nothing */
        if (s->n == fn_capacity(s) && fn_reserve(info, s, 1) < 0)
            return;
        uint32_t steps = m & ((1u << cache.p.n_steps) - 1);
        struct fn_ev *e = &fn_events(s)[s->n++];
        e->ts = ts[r];
        e->mask = m;
        e->rank = steps ? (uint32_t)__builtin_ctz(steps) : FN_NO_STEP;
    }
}

static void fn_combine(duckdb_function_info info, duckdb_aggregate_state *source,
                       duckdb_aggregate_state *target, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fn_state *src = (struct fn_state *)source[i];
        struct fn_state *dst = (struct fn_state *)target[i];
        if (!src->has_params)
            continue; /* empty: never saw a row */
        if (!dst->has_params) {
            dst->p = src->p;
            dst->has_params = 1;
        } else if (memcmp(&dst->p, &src->p, sizeof(src->p)) != 0) {
            fn_fail(info, "n_steps, window_us, mode and exclusions must be the same on every "
                          "row of a group");
            return;
        }
        if (!src->n)
            continue;
        if (fn_reserve(info, dst, src->n) < 0)
            return;
        /* the source stays valid: DuckDB may combine it again (window frames) */
        memcpy(fn_events(dst) + dst->n, fn_events(src), (size_t)src->n * sizeof(struct fn_ev));
        dst->n += src->n;
    }
}

/* ---- sorting ---- */

static inline bool ev_less(const struct fn_ev *a, const struct fn_ev *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts;
    if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->mask < b->mask;
}

static void insertion_sort(struct fn_ev *ev, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (!ev_less(&ev[i], &ev[i - 1]))
            continue;
        struct fn_ev x = ev[i];
        size_t j = i;
        do {
            ev[j] = ev[j - 1];
            j--;
        } while (j > 0 && ev_less(&x, &ev[j - 1]));
        ev[j] = x;
    }
}

#define FN_RUN 24

/* Sorts ev[0..n); tmp holds n events. Sorted input costs one pass. */
static void fn_sort(struct fn_ev *ev, size_t n, struct fn_ev *tmp)
{
    size_t i = 1;
    while (i < n && !ev_less(&ev[i], &ev[i - 1]))
        i++;
    if (i >= n)
        return;
    if (n <= FN_RUN * 2) {
        insertion_sort(ev, n);
        return;
    }
    for (size_t lo = 0; lo < n; lo += FN_RUN)
        insertion_sort(ev + lo, n - lo < FN_RUN ? n - lo : FN_RUN);
    struct fn_ev *from = ev, *to = tmp;
    for (size_t w = FN_RUN; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                to[k++] = ev_less(&from[b], &from[a]) ? from[b++] : from[a++];
            while (a < mid)
                to[k++] = from[a++];
            while (b < hi)
                to[k++] = from[b++];
        }
        struct fn_ev *t = from;
        from = to;
        to = t;
    }
    if (from != ev)
        memcpy(ev, from, n * sizeof(*ev));
}

/* ---- the walks ---- */

/* t1 - t0 for t1 >= t0, exact for any pair of int64 */
static inline uint64_t span(int64_t t0, int64_t t1)
{
    return (uint64_t)t1 - (uint64_t)t0;
}

struct fn_chain {
    int64_t id; /* index of the step-0 event that started it; -1 when the level is empty */
    int64_t t[FN_MAX_STEPS];
};

/* Ordered and strict: the furthest step (or -1 without a step-0 event) and, in times, the step
 * times of the chain that reached it first. */
static int fn_walk_ordered(const struct fn_params *p, const struct fn_ev *ev, size_t n,
                           int64_t *times)
{
    struct fn_chain lv[FN_MAX_STEPS];
    int ns = p->n_steps;
    uint32_t step_mask = (1u << ns) - 1;
    uint64_t window = (uint64_t)p->window;
    bool strict = p->mode == FN_STRICT;
    int best = -1;
    for (int l = 0; l < ns; l++)
        lv[l].id = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t t = ev[i].ts;
        uint32_t sm = ev[i].mask & step_mask, filled = 0;
        while (sm) {
            int s = 31 - __builtin_clz(sm);
            sm &= ~(1u << s);
            if (s == 0) {
                lv[0].id = (int64_t)i;
                lv[0].t[0] = t;
                filled |= 1;
                if (best < 0) {
                    best = 0;
                    times[0] = t;
                }
                continue;
            }
            struct fn_chain *prev = &lv[s - 1], *cur = &lv[s];
            if (prev->id < 0 || cur->id == prev->id || span(prev->t[0], t) > window)
                continue;
            cur->id = prev->id;
            memcpy(cur->t, prev->t, (size_t)s * sizeof(int64_t));
            cur->t[s] = t;
            filled |= 1u << s;
            if (s > best) {
                best = s;
                memcpy(times, cur->t, (size_t)(s + 1) * sizeof(int64_t));
            }
        }
        if (best == ns - 1)
            break; /* nothing can change the result any more */
        if (strict)
            for (int l = 0; l < ns; l++)
                if (!(filled & (1u << l)))
                    lv[l].id = -1;
    }
    return best;
}

/* Whether an exclusion event removes the actor whose chain reached best with these times. */
static bool fn_excluded(const struct fn_params *p, const struct fn_ev *ev, size_t n, int best,
                        const int64_t *times)
{
    uint32_t ex_mask = ((1u << p->n_excl) - 1) << FN_EXCL_SHIFT;
    uint64_t window = (uint64_t)p->window;
    for (size_t i = 0; i < n; i++) {
        uint32_t em = ev[i].mask & ex_mask;
        int64_t t = ev[i].ts;
        while (em) {
            int j = __builtin_ctz(em) - FN_EXCL_SHIFT;
            em &= em - 1;
            int from = p->ex_from[j], to = p->ex_to[j];
            if (best < from || t <= times[from])
                continue;
            if (best >= to ? t < times[to] : span(times[0], t) <= window)
                return true;
        }
    }
    return false;
}

/* Unordered: the most distinct steps inside any window [t - window, t], minus 1; -1 without a
 * step-0 event. */
static int fn_walk_unordered(const struct fn_params *p, const struct fn_ev *ev, size_t n)
{
    int ns = p->n_steps;
    uint32_t step_mask = (1u << ns) - 1;
    bool has0 = false;
    for (size_t i = 0; i < n && !has0; i++)
        has0 = ev[i].mask & 1;
    if (!has0)
        return -1;
    uint32_t cnt[FN_MAX_STEPS] = {0};
    uint64_t window = (uint64_t)p->window;
    int distinct = 0, best = 0;
    size_t lo = 0, i = 0;
    while (i < n) {
        int64_t t = ev[i].ts;
        for (; i < n && ev[i].ts == t; i++)
            for (uint32_t m = ev[i].mask & step_mask; m; m &= m - 1)
                distinct += cnt[__builtin_ctz(m)]++ == 0;
        for (; span(ev[lo].ts, t) > window; lo++)
            for (uint32_t m = ev[lo].mask & step_mask; m; m &= m - 1)
                distinct -= --cnt[__builtin_ctz(m)] == 0;
        if (distinct > best)
            best = distinct;
        if (best == ns)
            break;
    }
    return best - 1;
}

/* Evaluates one group into out (at most 1 + FN_MAX_STEPS values); returns how many. */
static size_t fn_eval(struct fn_state *s, struct fn_ev *tmp, double *out)
{
    out[0] = -1;
    if (!s->has_params || !s->n)
        return 1;
    struct fn_ev *ev = fn_events(s);
    size_t n = s->n;
    fn_sort(ev, n, tmp);
    if (s->p.mode == FN_UNORDERED) {
        out[0] = fn_walk_unordered(&s->p, ev, n);
        return 1;
    }
    int64_t times[FN_MAX_STEPS];
    int best = fn_walk_ordered(&s->p, ev, n, times);
    if (best < 0 || (s->p.n_excl && fn_excluded(&s->p, ev, n, best, times)))
        return 1;
    out[0] = best;
    for (int k = 1; k <= best; k++)
        out[k] = (double)span(times[k - 1], times[k]) / 1e6;
    return (size_t)best + 1;
}

static void fn_finalize(duckdb_function_info info, duckdb_aggregate_state *source,
                        duckdb_vector result, idx_t count, idx_t offset)
{
    duckdb_list_entry *entries = duckdb_vector_get_data(result);
    struct fn_ev *tmp = NULL;
    size_t tmp_cap = 0;
    for (idx_t i = 0; i < count; i++) {
        struct fn_state *s = (struct fn_state *)source[i];
        if (s->n > tmp_cap && s->n > FN_RUN * 2) {
            free(tmp);
            tmp_cap = s->n;
            tmp = malloc(tmp_cap * sizeof(*tmp));
            if (!tmp) {
                fn_fail(info, "out of memory sorting %u events", s->n);
                return;
            }
        }
        double out[1 + FN_MAX_STEPS];
        size_t k = fn_eval(s, tmp, out);
        idx_t base = duckdb_list_vector_get_size(result);
        if (duckdb_list_vector_reserve(result, base + k) != DuckDBSuccess) {
            free(tmp);
            fn_fail(info, "cannot grow the result list");
            return;
        }
        double *child = duckdb_vector_get_data(duckdb_list_vector_get_child(result));
        memcpy(child + base, out, k * sizeof(double));
        if (duckdb_list_vector_set_size(result, base + k) != DuckDBSuccess) {
            free(tmp);
            fn_fail(info, "cannot grow the result list");
            return;
        }
        entries[offset + i].offset = base;
        entries[offset + i].length = k;
    }
    free(tmp);
}

/* ---- registration ---- */

static bool fn_registered(duckdb_connection con)
{
    duckdb_result res;
    if (duckdb_query(con,
                     "SELECT count(*) FROM duckdb_functions() WHERE function_name = '" FN_NAME
                     "' AND function_type = 'aggregate'",
                     &res) != DuckDBSuccess) {
        duckdb_destroy_result(&res);
        return false;
    }
    bool found = duckdb_value_int64(&res, 0, 0) > 0;
    duckdb_destroy_result(&res);
    return found;
}

int whd__funnel_register(duckdb_connection con)
{
    if (fn_registered(con))
        return 0; /* DuckDB keeps functions per database: registered by another connection */
    static const duckdb_type params[6] = {DUCKDB_TYPE_TIMESTAMP, DUCKDB_TYPE_UINTEGER,
                                          DUCKDB_TYPE_INTEGER,   DUCKDB_TYPE_BIGINT,
                                          DUCKDB_TYPE_VARCHAR,   DUCKDB_TYPE_VARCHAR};
    duckdb_aggregate_function f = duckdb_create_aggregate_function();
    if (!f)
        return ERR_INTERNAL;
    duckdb_aggregate_function_set_name(f, FN_NAME);
    for (int i = 0; i < 6; i++) {
        duckdb_logical_type t = duckdb_create_logical_type(params[i]);
        duckdb_aggregate_function_add_parameter(f, t);
        duckdb_destroy_logical_type(&t);
    }
    duckdb_logical_type dbl = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
    duckdb_logical_type list = duckdb_create_list_type(dbl);
    duckdb_aggregate_function_set_return_type(f, list);
    duckdb_destroy_logical_type(&list);
    duckdb_destroy_logical_type(&dbl);
    duckdb_aggregate_function_set_functions(f, fn_state_size, fn_init, fn_update, fn_combine,
                                            fn_finalize);
    duckdb_aggregate_function_set_destructor(f, fn_destroy);
    int rc = duckdb_register_aggregate_function(con, f) == DuckDBSuccess ? 0 : ERR_INTERNAL;
    duckdb_destroy_aggregate_function(&f);
    return rc;
}
