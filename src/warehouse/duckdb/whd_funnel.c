/* whd_funnel.c - the funnel aggregates (docs/analytics.md, "The funnel aggregate"), DuckDB C API
 * aggregates: tandem_funnel(ts, mask, n_steps, window_us, mode, exclusions) -> DOUBLE[], the
 * funnel of one actor, and tandem_funnel_steps(actor, ...) -> DOUBLE[], the per-step totals of
 * a whole funnel (its own section below; it shares the row checks, the sort and the walks).
 *
 * tandem_funnel: one state per group (one actor): the group's events as (timestamp, mask) in a
 * growable array plus the constant parameters, parsed once per run of equal arguments and checked
 * on every row. Finalize sorts the events (timestamp, then the lowest step matched, events matching
 * no step last; a stable sort, so events equal on both keep the order the group received them in),
 * runs the ordered, strict or unordered walk, applies the exclusions to the actor's chain and
 * writes [furthest, t1, ..., t_furthest] (seconds between consecutive steps of the chain), or [-1].
 * Rows with a NULL argument are ignored; outside strict funnels so are rows whose mask is 0.
 *
 * DuckDB may move a state's bytes (its hash tables copy rows), so a state never points into
 * itself: the first events live in an inline array, later ones in an array the state owns
 * (from per-thread chunks, see "event arrays"). A zeroed state is a valid empty state. Combine
 * copies, leaving the source intact. Bad input never asserts: it fails the query through
 * duckdb_aggregate_function_set_error.
 *
 * DuckDB 1.4.4 cannot run a C aggregate with ORDER BY inside the call or as a window function
 * over whole partitions (see whd_guard.c): the SQL API refuses both.
 *
 * Threads: DuckDB calls the callbacks from its worker threads; a state is touched by one thread
 * at a time. The only shared data is the event-array chunks (atomic counts, per-thread current
 * chunk). */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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

/* The constant arguments, parsed. Fully zeroed before filling so fn_params_eq compares them. */
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
    struct fn_params p;
    struct fn_ev inl[FN_INLINE];
};

/* Equality of two parameter sets, inline (memcmp would be a call per row). */
static inline bool fn_params_eq(const struct fn_params *a, const struct fn_params *b)
{
    uint64_t x[4], y[4];
    _Static_assert(sizeof(struct fn_params) == sizeof(x), "fn_params is four words");
    memcpy(x, a, sizeof(x));
    memcpy(y, b, sizeof(y));
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static inline bool str_same_bytes(const duckdb_string_t *a, const duckdb_string_t *b)
{
    uint64_t x[2], y[2];
    memcpy(x, a, sizeof(x));
    memcpy(y, b, sizeof(y));
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

static inline struct fn_ev *fn_events(struct fn_state *s)
{
    return s->heap ? s->heap : s->inl;
}

/* whether the state has seen a row (valid parameters have n_steps >= 2) */
static inline bool fn_has_params(const struct fn_state *s)
{
    return s->p.n_steps != 0;
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

/* ---- event arrays ----
 *
 * A query creates millions of short-lived states (DuckDB's hash aggregate flushes its tables
 * and combines the partial states later), most holding a handful of events, all freed when the
 * query ends. Arrays come from 1 MiB chunks: each thread bumps a pointer in its own current
 * chunk; a chunk counts its live arrays (plus one while it is some thread's current chunk) and
 * is freed by whichever thread frees its last array. Growing an array leaves the old copy in
 * its chunk until the chunk dies. Arrays too big for a chunk use malloc. */

#define FN_CHUNK_BYTES (1u << 20)
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FN_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(FN_ASAN)
#define FN_CHUNK_MAX_ALLOC 0 /* under ASan every array is its own malloc, so overflows show */
#else
#define FN_CHUNK_MAX_ALLOC (FN_CHUNK_BYTES / 8)
#endif

struct fn_chunk {
    atomic_long live;
    size_t used;
    _Alignas(16) char data[];
};

/* in front of every array: its chunk, NULL for a malloc'ed array */
struct fn_hdr {
    struct fn_chunk *chunk;
    uint64_t pad;
};

static pthread_key_t chunk_key;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;
static _Thread_local struct fn_chunk *tl_chunk;

static void chunk_unref(struct fn_chunk *c)
{
    if (atomic_fetch_sub_explicit(&c->live, 1, memory_order_acq_rel) == 1)
        free(c);
}

/* a thread that exits drops its current chunk */
static void chunk_thread_exit(void *c)
{
    if (c)
        chunk_unref(c);
}

static void chunk_key_init(void)
{
    if (pthread_key_create(&chunk_key, chunk_thread_exit) != 0)
        PANIC("cannot create the funnel allocator's thread key");
}

static struct fn_ev *arr_alloc(uint32_t n_events)
{
    size_t need = sizeof(struct fn_hdr) + (size_t)n_events * sizeof(struct fn_ev);
    struct fn_hdr *h;
    if (need > FN_CHUNK_MAX_ALLOC) {
        if (!(h = malloc(need)))
            return NULL;
        h->chunk = NULL;
        return (struct fn_ev *)(h + 1);
    }
    struct fn_chunk *c = tl_chunk;
    if (!c || c->used + need > FN_CHUNK_BYTES) {
        pthread_once(&chunk_once, chunk_key_init);
        struct fn_chunk *nc = malloc(sizeof(*nc) + FN_CHUNK_BYTES);
        if (!nc)
            return NULL;
        atomic_init(&nc->live, 1); /* the thread's reference */
        nc->used = 0;
        if (pthread_setspecific(chunk_key, nc) != 0) {
            free(nc);
            return NULL;
        }
        tl_chunk = nc;
        if (c)
            chunk_unref(c);
        c = nc;
    }
    h = (struct fn_hdr *)(c->data + c->used);
    c->used += need;
    atomic_fetch_add_explicit(&c->live, 1, memory_order_relaxed);
    h->chunk = c;
    return (struct fn_ev *)(h + 1);
}

static void arr_free(struct fn_ev *a)
{
    if (!a)
        return;
    struct fn_hdr *h = (struct fn_hdr *)a - 1;
    if (h->chunk)
        chunk_unref(h->chunk);
    else
        free(h);
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
    struct fn_ev *nh = arr_alloc(ncap);
    if (!nh) {
        fn_fail(info, "out of memory for %u events", ncap);
        return -1;
    }
    memcpy(nh, fn_events(s), (size_t)s->n * sizeof(*nh));
    arr_free(s->heap);
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

/* Both aggregates: the state's size is the function's extra info, a zeroed state is empty. */
static idx_t fn_state_size(duckdb_function_info info)
{
    return (idx_t)(uintptr_t)duckdb_aggregate_function_get_extra_info(info);
}

static void fn_init(duckdb_function_info info, duckdb_aggregate_state state)
{
    memset((void *)state, 0, fn_state_size(info));
}

static void fn_destroy(duckdb_aggregate_state *states, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fn_state *s = (struct fn_state *)states[i];
        arr_free(s->heap);
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

/* One input chunk: the funnel's six arguments from column first on (tandem_funnel_steps has
 * its actor in front), the validity of every column, and the last parsed constants. */
struct fn_args {
    idx_t rows;
    int n_cols;
    bool any_null;
    const uint64_t *val[7];
    const int64_t *ts;
    const uint32_t *mask;
    const int32_t *n_steps;
    const int64_t *window;
    duckdb_string_t *mode, *ex;
    struct fn_cache cache;
};

static void fn_args_init(struct fn_args *a, duckdb_data_chunk input, int first)
{
    duckdb_vector v[7];
    a->rows = duckdb_data_chunk_get_size(input);
    a->n_cols = first + 6;
    a->any_null = false;
    for (int c = 0; c < a->n_cols; c++) {
        v[c] = duckdb_data_chunk_get_vector(input, (idx_t)c);
        a->val[c] = duckdb_vector_get_validity(v[c]);
        a->any_null |= a->val[c] != NULL;
    }
    a->ts = duckdb_vector_get_data(v[first]);
    a->mask = duckdb_vector_get_data(v[first + 1]);
    a->n_steps = duckdb_vector_get_data(v[first + 2]);
    a->window = duckdb_vector_get_data(v[first + 3]);
    a->mode = duckdb_vector_get_data(v[first + 4]);
    a->ex = duckdb_vector_get_data(v[first + 5]);
    a->cache.set = false;
}

/* Gives a state that has parameters *sp those of a row (or a combined state), or checks that
 * they are the same; 0, or -1 with the error set on info. */
static int fn_params_join(duckdb_function_info info, struct fn_params *sp,
                          const struct fn_params *p)
{
    if (sp->n_steps == 0) {
        *sp = *p;
    } else if (!fn_params_eq(sp, p)) {
        fn_fail(info, "n_steps, window_us, mode and exclusions must be the same on every row of "
                      "a group");
        return -1;
    }
    return 0;
}

/* Reads row r for a state with parameters *sp into ev: 1 to keep it, 0 to skip it (a NULL
 * argument, or a mask of 0 outside strict funnels), -1 with the error set on info. */
static inline int fn_args_row(duckdb_function_info info, struct fn_args *a, idx_t r,
                              struct fn_params *sp, struct fn_ev *ev)
{
    if (a->any_null) {
        for (int c = 0; c < a->n_cols; c++)
            if (!valid_at(a->val[c], r))
                return 0;
    }
    struct fn_cache *k = &a->cache;
    if (!k->set || k->n_steps != a->n_steps[r] || k->window != a->window[r] ||
        !str_same_bytes(&k->mode, &a->mode[r]) || !str_same_bytes(&k->ex, &a->ex[r])) {
        if (fn_params_parse(info, a->n_steps[r], a->window[r], str_ptr(&a->mode[r]),
                            duckdb_string_t_length(a->mode[r]), str_ptr(&a->ex[r]),
                            duckdb_string_t_length(a->ex[r]), &k->p) < 0)
            return -1;
        k->set = true;
        k->n_steps = a->n_steps[r];
        k->window = a->window[r];
        k->mode = a->mode[r];
        k->ex = a->ex[r];
    }
    if (!fn_params_eq(sp, &k->p) && fn_params_join(info, sp, &k->p) < 0)
        return -1;
    uint32_t m = a->mask[r];
    if (m & ~k->p.allowed) {
        fn_fail(
            info, "mask 0x%x has bits beyond the %d steps (bits 0-%d) and %d exclusions (bits %d-)",
            (unsigned)m, (int)k->p.n_steps, (int)k->p.n_steps - 1, (int)k->p.n_excl, FN_EXCL_SHIFT);
        return -1;
    }
    if (m == 0 && k->p.mode != FN_STRICT)
        return 0; /* only strict funnels care about events that match nothing */
    uint32_t steps = m & ((1u << k->p.n_steps) - 1);
    ev->ts = a->ts[r];
    ev->mask = m;
    ev->rank = steps ? (uint32_t)__builtin_ctz(steps) : FN_NO_STEP;
    return 1;
}

static void fn_update(duckdb_function_info info, duckdb_data_chunk input,
                      duckdb_aggregate_state *states)
{
    struct fn_args a;
    fn_args_init(&a, input, 0);
    for (idx_t r = 0; r < a.rows; r++) {
        /* the states are scattered over DuckDB's hash table: fetch a state's line 16 rows
         * ahead, and 8 rows ahead the place its next event goes */
        if (r + 16 < a.rows)
            __builtin_prefetch((void *)states[r + 16], 1);
        if (r + 8 < a.rows) {
            struct fn_state *ps = (struct fn_state *)states[r + 8];
            __builtin_prefetch(fn_events(ps) + ps->n, 1);
        }
        struct fn_state *s = (struct fn_state *)states[r];
        struct fn_ev ev;
        int k = fn_args_row(info, &a, r, &s->p, &ev);
        if (k < 0)
            return;
        if (k == 0)
            continue;
        if (s->n == fn_capacity(s) && fn_reserve(info, s, 1) < 0)
            return;
        fn_events(s)[s->n++] = ev;
    }
}

static void fn_combine(duckdb_function_info info, duckdb_aggregate_state *source,
                       duckdb_aggregate_state *target, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fn_state *src = (struct fn_state *)source[i];
        struct fn_state *dst = (struct fn_state *)target[i];
        if (!fn_has_params(src))
            continue; /* empty: never saw a row */
        if (fn_params_join(info, &dst->p, &src->p) < 0)
            return;
        if (!src->n)
            continue;
        if (fn_reserve(info, dst, src->n) < 0)
            return;
        /* the source stays valid: DuckDB may combine it again (window frames) */
        memcpy(fn_events(dst) + dst->n, fn_events(src), (size_t)src->n * sizeof(struct fn_ev));
        dst->n += src->n;
    }
}

/* ---- sorting ----
 *
 * FN_DEFINE_SORT(name, T, less) defines name(a, n, tmp): a stable sort of T a[0..n) by
 * less(&x, &y), tmp holding n elements (unused below 2 * FN_RUN). Runs of FN_RUN elements are
 * insertion-sorted, then merged bottom-up; sorted input costs one pass. */

#define FN_RUN 24

#define FN_DEFINE_SORT(name, T, less)                                                              \
    static void name##_insertion(T *a, size_t n)                                                   \
    {                                                                                              \
        for (size_t i = 1; i < n; i++) {                                                           \
            if (!less(&a[i], &a[i - 1]))                                                           \
                continue;                                                                          \
            T x = a[i];                                                                            \
            size_t j = i;                                                                          \
            do {                                                                                   \
                a[j] = a[j - 1];                                                                   \
                j--;                                                                               \
            } while (j > 0 && less(&x, &a[j - 1]));                                                \
            a[j] = x;                                                                              \
        }                                                                                          \
    }                                                                                              \
    static void name(T *a, size_t n, T *tmp)                                                       \
    {                                                                                              \
        size_t i = 1;                                                                              \
        while (i < n && !less(&a[i], &a[i - 1]))                                                   \
            i++;                                                                                   \
        if (i >= n)                                                                                \
            return;                                                                                \
        if (n <= FN_RUN * 2) {                                                                     \
            name##_insertion(a, n);                                                                \
            return;                                                                                \
        }                                                                                          \
        for (size_t lo = 0; lo < n; lo += FN_RUN)                                                  \
            name##_insertion(a + lo, n - lo < FN_RUN ? n - lo : FN_RUN);                           \
        T *from = a, *to = tmp;                                                                    \
        for (size_t w = FN_RUN; w < n; w *= 2) {                                                   \
            for (size_t lo = 0; lo < n; lo += 2 * w) {                                             \
                size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;        \
                size_t x = lo, y = mid, k = lo;                                                    \
                while (x < mid && y < hi)                                                          \
                    to[k++] = less(&from[y], &from[x]) ? from[y++] : from[x++];                    \
                while (x < mid)                                                                    \
                    to[k++] = from[x++];                                                           \
                while (y < hi)                                                                     \
                    to[k++] = from[y++];                                                           \
            }                                                                                      \
            T *t = from;                                                                           \
            from = to;                                                                             \
            to = t;                                                                                \
        }                                                                                          \
        if (from != a)                                                                             \
            memcpy(a, from, n * sizeof(*a));                                                       \
    }

/* By timestamp, then the lowest step matched (no step last). The sort is stable: events equal
 * on both keep the order the group received them in. */
static inline bool ev_less(const struct fn_ev *a, const struct fn_ev *b)
{
    if (a->ts != b->ts)
        return a->ts < b->ts;
    return a->rank < b->rank;
}

FN_DEFINE_SORT(fn_sort, struct fn_ev, ev_less)

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

/* Evaluates one actor's n sorted events into out (at most 1 + FN_MAX_STEPS values):
 * [furthest, t1, ..., t_furthest] or [-1]; returns how many. */
static size_t fn_eval_sorted(const struct fn_params *p, const struct fn_ev *ev, size_t n,
                             double *out)
{
    out[0] = -1;
    if (p->mode == FN_UNORDERED) {
        out[0] = fn_walk_unordered(p, ev, n);
        return 1;
    }
    int64_t times[FN_MAX_STEPS];
    int best = fn_walk_ordered(p, ev, n, times);
    if (best < 0 || (p->n_excl && fn_excluded(p, ev, n, best, times)))
        return 1;
    out[0] = best;
    for (int k = 1; k <= best; k++)
        out[k] = (double)span(times[k - 1], times[k]) / 1e6;
    return (size_t)best + 1;
}

/* Evaluates one group into out, as fn_eval_sorted; tmp holds s->n events. */
static size_t fn_eval(struct fn_state *s, struct fn_ev *tmp, double *out)
{
    out[0] = -1;
    if (!fn_has_params(s) || !s->n)
        return 1;
    fn_sort(fn_events(s), s->n, tmp);
    return fn_eval_sorted(&s->p, fn_events(s), s->n, out);
}

#define FN_BATCH 64 /* results written to the list vector at a time */

static void fn_finalize(duckdb_function_info info, duckdb_aggregate_state *source,
                        duckdb_vector result, idx_t count, idx_t offset)
{
    duckdb_list_entry *entries = duckdb_vector_get_data(result);
    struct fn_ev *tmp = NULL;
    size_t tmp_cap = 0;
    double vals[FN_BATCH * (1 + FN_MAX_STEPS)];
    for (idx_t b0 = 0; b0 < count; b0 += FN_BATCH) {
        idx_t nb = count - b0 < FN_BATCH ? count - b0 : FN_BATCH;
        idx_t base = duckdb_list_vector_get_size(result), used = 0;
        for (idx_t i = b0; i < b0 + nb; i++) {
            if (i + 8 < count)
                __builtin_prefetch((void *)source[i + 8]);
            if (i + 4 < count)
                __builtin_prefetch(fn_events((struct fn_state *)source[i + 4]));
            struct fn_state *s = (struct fn_state *)source[i];
            if (s->n > tmp_cap && s->n > FN_RUN * 2) {
                free(tmp);
                tmp_cap = s->n;
                if (!(tmp = malloc(tmp_cap * sizeof(*tmp)))) {
                    fn_fail(info, "out of memory sorting %u events", s->n);
                    goto out;
                }
            }
            size_t k = fn_eval(s, tmp, vals + used);
            entries[offset + i].offset = base + used;
            entries[offset + i].length = k;
            used += k;
        }
        if (duckdb_list_vector_reserve(result, base + used) != DuckDBSuccess) {
            fn_fail(info, "cannot grow the result list");
            goto out;
        }
        double *child = duckdb_vector_get_data(duckdb_list_vector_get_child(result));
        memcpy(child + base, vals, used * sizeof(double));
        if (duckdb_list_vector_set_size(result, base + used) != DuckDBSuccess) {
            fn_fail(info, "cannot grow the result list");
            goto out;
        }
    }
out:
    free(tmp);
}

/* ---- tandem_funnel_steps ----
 *
 * The whole funnel in one aggregate, for a query that needs only the per-step totals (the
 * insight without a breakdown): each state collects its rows (actor, event) in one array;
 * finalize groups them by actor (two radix passes on a hash of the actor, then a sort of each
 * small partition by actor, timestamp and step), evaluates every actor as tandem_funnel does
 * and totals the results. That skips DuckDB's hash table of actors and a result list per actor,
 * most of the cost of GROUP BY actor with tandem_funnel. Finalize runs on one thread. */

#define FS_NAME "tandem_funnel_steps"
#define FS_MAX_ROWS ((size_t)1 << 31) /* rows of one group; 48 GiB of state */
#define FS_PART_BITS 16               /* partitions: at most 2^16, about 32 rows each */

struct fs_row {
    uint64_t actor;
    struct fn_ev ev;
};

/* A zeroed state is a valid empty one; it never points into itself (DuckDB may move it). */
struct fs_state {
    struct fs_row *rows; /* malloc'ed */
    size_t n, cap;
    struct fn_params p;
};

static void fs_destroy(duckdb_aggregate_state *states, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fs_state *s = (struct fs_state *)states[i];
        free(s->rows);
        s->rows = NULL;
        s->n = s->cap = 0;
    }
}

/* Makes room for extra more rows; 0, or -1 with the error set on info. */
static int fs_reserve(duckdb_function_info info, struct fs_state *s, size_t extra)
{
    if (extra <= s->cap - s->n)
        return 0;
    if (extra > FS_MAX_ROWS - s->n) {
        fn_fail(info, "more than %zu rows in one group", FS_MAX_ROWS);
        return -1;
    }
    size_t cap = s->cap ? s->cap : 16;
    while (cap < s->n + extra)
        cap *= 2;
    struct fs_row *rows = realloc(s->rows, cap * sizeof(*rows));
    if (!rows) {
        fn_fail(info, "out of memory for %zu rows", cap);
        return -1;
    }
    s->rows = rows;
    s->cap = cap;
    return 0;
}

static void fs_update(duckdb_function_info info, duckdb_data_chunk input,
                      duckdb_aggregate_state *states)
{
    struct fn_args a;
    fn_args_init(&a, input, 1);
    const uint64_t *actor = duckdb_vector_get_data(duckdb_data_chunk_get_vector(input, 0));
    for (idx_t r = 0; r < a.rows; r++) {
        struct fs_state *s = (struct fs_state *)states[r];
        struct fn_ev ev;
        int k = fn_args_row(info, &a, r, &s->p, &ev);
        if (k < 0)
            return;
        if (k == 0)
            continue;
        if (s->n == s->cap && fs_reserve(info, s, 1) < 0)
            return;
        s->rows[s->n].actor = actor[r];
        s->rows[s->n].ev = ev;
        s->n++;
    }
}

static void fs_combine(duckdb_function_info info, duckdb_aggregate_state *source,
                       duckdb_aggregate_state *target, idx_t count)
{
    for (idx_t i = 0; i < count; i++) {
        struct fs_state *src = (struct fs_state *)source[i];
        struct fs_state *dst = (struct fs_state *)target[i];
        if (src->p.n_steps == 0)
            continue; /* empty: never saw a row */
        if (fn_params_join(info, &dst->p, &src->p) < 0 || fs_reserve(info, dst, src->n) < 0)
            return;
        if (src->n) /* the source stays valid */
            memcpy(dst->rows + dst->n, src->rows, src->n * sizeof(*src->rows));
        dst->n += src->n;
    }
}

/* ---- grouping rows by actor ---- */

/* the top bits of a multiplicative hash of the actor: any keys spread, not only random ones */
static inline uint32_t fs_part(uint64_t actor, unsigned bits)
{
    return (uint32_t)((actor * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* One stable counting pass: to = from ordered by bits [shift, shift + width) of fs_part. */
static void fs_scatter(const struct fs_row *from, struct fs_row *to, size_t n, unsigned bits,
                       unsigned shift, unsigned width)
{
    size_t pos[256] = {0};
    uint32_t m = (1u << width) - 1;
    for (size_t i = 0; i < n; i++)
        pos[(fs_part(from[i].actor, bits) >> shift) & m]++;
    size_t sum = 0;
    for (uint32_t d = 0; d <= m; d++) {
        size_t c = pos[d];
        pos[d] = sum;
        sum += c;
    }
    for (size_t i = 0; i < n; i++)
        to[pos[(fs_part(from[i].actor, bits) >> shift) & m]++] = from[i];
}

static inline bool row_less(const struct fs_row *a, const struct fs_row *b)
{
    if (a->actor != b->actor)
        return a->actor < b->actor;
    return ev_less(&a->ev, &b->ev);
}

FN_DEFINE_SORT(fs_sort, struct fs_row, row_less)

/* Orders rows[0..n) so that each actor's rows are together, by timestamp then step, ties in
 * the order received; tmp holds n rows. */
static void fs_group(struct fs_row *rows, size_t n, struct fs_row *tmp)
{
    unsigned bits = 0;
    while (bits < FS_PART_BITS && (n >> bits) > 32)
        bits++;
    if (bits < 2) {
        fs_sort(rows, n, tmp);
        return;
    }
    unsigned lo = bits / 2;
    fs_scatter(rows, tmp, n, bits, 0, lo);
    fs_scatter(tmp, rows, n, bits, lo, bits - lo);
    for (size_t i = 0; i < n;) {
        uint32_t part = fs_part(rows[i].actor, bits);
        size_t j = i + 1;
        while (j < n && fs_part(rows[j].actor, bits) == part)
            j++;
        fs_sort(rows + i, j - i, tmp);
        i = j;
    }
}

/* ---- totals ---- */

/* The k-th smallest of a[0..n) (k < n), leaving every element after position k no smaller: a
 * quickselect with pseudo-random pivots and three-way partitions (many times are equal). */
static double fs_select(double *a, size_t n, size_t k)
{
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    size_t lo = 0, hi = n;
    while (hi - lo > 16) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double pivot = a[lo + (size_t)((rng >> 33) % (hi - lo))];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            double x = a[i];
            if (x < pivot) {
                a[i++] = a[lt];
                a[lt++] = x;
            } else if (x > pivot) {
                a[i] = a[--gt];
                a[gt] = x;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return pivot;
    }
    for (size_t i = lo + 1; i < hi; i++) {
        double x = a[i];
        size_t j = i;
        for (; j > lo && a[j - 1] > x; j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
    return a[k];
}

/* DuckDB's quantile_cont(x, 0.5): x[lo] + (x[hi] - x[lo]) * (h - lo), h = (n - 1) / 2. */
static double fs_median(double *a, size_t n)
{
    double h = (double)(n - 1) * 0.5;
    size_t lo = (size_t)h;
    double x = fs_select(a, n, lo);
    if ((double)lo == h)
        return x;
    double y = a[lo + 1];
    for (size_t i = lo + 2; i < n; i++)
        if (a[i] < y)
            y = a[i];
    return x + (y - x) * (h - (double)lo);
}

/* The step times of one step over the actors that reached it. */
struct fs_times {
    double *v;
    size_t n, cap;
    double sum;
};

/* Evaluates every actor of s into out[3 * n_steps - 2] (null[i] for a NULL value); 0, or -1
 * with the error set on info. */
static int fs_eval(duckdb_function_info info, struct fs_state *s, double *out, bool *null)
{
    int ns = s->p.n_steps, rc = -1;
    size_t reach[FN_MAX_STEPS] = {0}, ev_cap = 0;
    struct fs_times t[FN_MAX_STEPS];
    memset(t, 0, sizeof(t));
    struct fn_ev *ev = NULL;
    struct fs_row *tmp = malloc((s->n ? s->n : 1) * sizeof(*tmp));
    if (!tmp)
        goto oom;
    fs_group(s->rows, s->n, tmp);
    for (size_t i = 0; i < s->n;) {
        size_t j = i + 1;
        while (j < s->n && s->rows[j].actor == s->rows[i].actor)
            j++;
        if (j - i > ev_cap) {
            ev_cap = (j - i) * 2;
            free(ev);
            if (!(ev = malloc(ev_cap * sizeof(*ev))))
                goto oom;
        }
        for (size_t k = i; k < j; k++)
            ev[k - i] = s->rows[k].ev;
        double r[1 + FN_MAX_STEPS];
        size_t nr = fn_eval_sorted(&s->p, ev, j - i, r);
        i = j;
        if (r[0] < 0)
            continue;
        reach[(int)r[0]]++;
        for (size_t k = 1; k < nr; k++) {
            struct fs_times *tk = &t[k];
            if (tk->n == tk->cap) {
                size_t cap = tk->cap ? tk->cap * 2 : 1024;
                double *v = realloc(tk->v, cap * sizeof(*v));
                if (!v)
                    goto oom;
                tk->v = v;
                tk->cap = cap;
            }
            tk->v[tk->n++] = r[k];
            tk->sum += r[k];
        }
    }
    size_t actors = 0;
    for (int k = ns - 1; k >= 0; k--) {
        actors += reach[k];
        double *o = k ? out + 3 * k - 2 : out;
        o[0] = (double)actors;
        null[k ? 3 * k - 2 : 0] = false;
        if (!k)
            break;
        bool none = t[k].n == 0;
        null[3 * k - 1] = null[3 * k] = none;
        o[1] = none ? 0 : t[k].sum / (double)t[k].n;
        o[2] = none ? 0 : fs_median(t[k].v, t[k].n);
    }
    rc = 0;
    goto out;
oom:
    fn_fail(info, "out of memory evaluating %zu rows", s->n);
out:
    for (int k = 0; k < FN_MAX_STEPS; k++)
        free(t[k].v);
    free(ev);
    free(tmp);
    return rc;
}

static void fs_finalize(duckdb_function_info info, duckdb_aggregate_state *source,
                        duckdb_vector result, idx_t count, idx_t offset)
{
    duckdb_list_entry *entries = duckdb_vector_get_data(result);
    for (idx_t i = 0; i < count; i++) {
        struct fs_state *s = (struct fs_state *)source[i];
        entries[offset + i].offset = duckdb_list_vector_get_size(result);
        entries[offset + i].length = 0;
        if (s->p.n_steps == 0) { /* no rows: NULL, like the other aggregates */
            duckdb_vector_ensure_validity_writable(result);
            duckdb_validity_set_row_invalid(duckdb_vector_get_validity(result), offset + i);
            continue;
        }
        double vals[3 * FN_MAX_STEPS];
        bool null[3 * FN_MAX_STEPS];
        size_t len = 3 * (size_t)s->p.n_steps - 2;
        if (fs_eval(info, s, vals, null) < 0)
            return;
        idx_t base = duckdb_list_vector_get_size(result);
        if (duckdb_list_vector_reserve(result, base + len) != DuckDBSuccess) {
            fn_fail(info, "cannot grow the result list");
            return;
        }
        duckdb_vector child = duckdb_list_vector_get_child(result);
        double *data = duckdb_vector_get_data(child);
        duckdb_vector_ensure_validity_writable(child);
        uint64_t *valid = duckdb_vector_get_validity(child);
        for (size_t k = 0; k < len; k++) {
            data[base + k] = vals[k];
            if (null[k])
                duckdb_validity_set_row_invalid(valid, base + k);
            else
                duckdb_validity_set_row_valid(valid, base + k);
        }
        if (duckdb_list_vector_set_size(result, base + len) != DuckDBSuccess) {
            fn_fail(info, "cannot grow the result list");
            return;
        }
        entries[offset + i].length = len;
    }
}

/* ---- registration ---- */

/* Registers one aggregate over params[0..n) returning DOUBLE[], with states of state_bytes;
 * 0, or ERR_INTERNAL. */
static int fn_register(duckdb_connection con, const char *name, const duckdb_type *params, int n,
                       size_t state_bytes, duckdb_aggregate_update_t update,
                       duckdb_aggregate_combine_t combine, duckdb_aggregate_finalize_t finalize,
                       duckdb_aggregate_destroy_t destroy)
{
    if (whd__has_function(con, name))
        return 0; /* DuckDB keeps functions per database: registered by another connection */
    duckdb_aggregate_function f = duckdb_create_aggregate_function();
    if (!f)
        return ERR_INTERNAL;
    duckdb_aggregate_function_set_name(f, name);
    for (int i = 0; i < n; i++) {
        duckdb_logical_type t = duckdb_create_logical_type(params[i]);
        duckdb_aggregate_function_add_parameter(f, t);
        duckdb_destroy_logical_type(&t);
    }
    duckdb_logical_type dbl = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
    duckdb_logical_type list = duckdb_create_list_type(dbl);
    duckdb_aggregate_function_set_return_type(f, list);
    duckdb_destroy_logical_type(&list);
    duckdb_destroy_logical_type(&dbl);
    duckdb_aggregate_function_set_extra_info(f, (void *)(uintptr_t)state_bytes, NULL);
    duckdb_aggregate_function_set_functions(f, fn_state_size, fn_init, update, combine, finalize);
    duckdb_aggregate_function_set_destructor(f, destroy);
    int rc = duckdb_register_aggregate_function(con, f) == DuckDBSuccess ? 0 : ERR_INTERNAL;
    duckdb_destroy_aggregate_function(&f);
    return rc;
}

int whd__funnel_register(duckdb_connection con)
{
    static const duckdb_type params[7] = {
        DUCKDB_TYPE_UBIGINT, DUCKDB_TYPE_TIMESTAMP, DUCKDB_TYPE_UINTEGER, DUCKDB_TYPE_INTEGER,
        DUCKDB_TYPE_BIGINT,  DUCKDB_TYPE_VARCHAR,   DUCKDB_TYPE_VARCHAR};
    int rc = fn_register(con, FN_NAME, params + 1, 6, sizeof(struct fn_state), fn_update,
                         fn_combine, fn_finalize, fn_destroy);
    if (rc == 0)
        rc = fn_register(con, FS_NAME, params, 7, sizeof(struct fs_state), fs_update, fs_combine,
                         fs_finalize, fs_destroy);
    return rc;
}
