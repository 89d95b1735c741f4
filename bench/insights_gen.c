/* insights_gen.c - the product data set of bench/insights.sh: EVENTS events (default
 * 10,000,000) of EVENTS/10 users over 10 weeks (2026-09-07 .. 2026-11-15, UTC), the same events
 * written twice:
 *
 *   - into a tandem data directory's event log (DIR/log, topic "events"), in time order, as
 *     capture would have logged them (Segment track/identify JSON), so `tandem serve --dir DIR`
 *     only has to load them;
 *   - as a TSV file for ClickHouse and PostgreSQL: `timestamp\tevent\tperson`, the timestamp
 *     "YYYY-MM-DD HH:MM:SS" (UTC), the event name (empty for identify events) and the person
 *     already resolved the way docs/analytics.md defines it.
 *
 * Users (each drawn from its own seeded generator, so the data depends only on EVENTS):
 *   - about a third start anonymous: their events carry only `anonymousId` "anon-N" until they
 *     sign up, when an identify event with `userId` "user-N" and `anonymousId` "anon-N" links
 *     the two; later events carry both. Those who never sign up stay the person "anon-N";
 *   - the others are known from the start: every event has `userId` "user-N" and
 *     `anonymousId` "anon-N" (the link is the same one);
 *   so the person of every event of user N is "user-N" if N ever identifies, else "anon-N",
 *   and no distinct id links to two users (the merge rules cannot disagree).
 *   - activity: a first day, then active days with random gaps and churn; pageviews on each
 *     active day;
 *   - the funnel signup -> activate -> purchase -> invite with drop-off at each step and
 *     delays from minutes to three weeks (some beyond the 14-day window), and repeat
 *     purchases on later days.
 * A user's events have distinct whole-second timestamps (ClickHouse 18.16's DateTime has
 * seconds, and its windowFunnel orders events of one timestamp arbitrarily), so all three
 * engines see the same order.
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc bench/insights_gen.c build/libtandem_lib.a -lpthread -lm \
 *      -o build/insights_gen
 * Run: build/insights_gen EVENTS TSV [DIR]     (without DIR only the TSV is written)
 * Prints "events N users U persons P" on its last line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlog/evlog.h"

enum { DAYS = 70, MAX_USER_EVENTS = 512 };
#define START_S 1788739200LL /* 2026-09-07T00:00:00Z, a Monday */
#define END_S (START_S + DAYS * 86400LL)

enum kind { K_PAGEVIEW, K_SIGNUP, K_ACTIVATE, K_PURCHASE, K_INVITE, K_IDENTIFY };
static const char *const kind_name[] = {"pageview", "signup", "activate", "purchase", "invite", ""};

struct ev {
    int64_t t;     /* seconds since the epoch */
    uint32_t user; /* user number */
    uint8_t kind;
    uint8_t ident; /* 1: the event carries userId (and anonymousId), 0: anonymousId only */
    uint16_t page; /* page number (pageview), amount (purchase) */
};

/* splitmix64: one stream per user */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}
static int64_t range_s(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(unif(s) * (double)(hi - lo));
}

static int cmp_t(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->user < y->user ? -1 : x->user > y->user;
}

/* Appends user u's events to out (at most MAX_USER_EVENTS); returns how many. Sets *known
 * when the user's person is "user-N". */
static size_t gen_user(uint32_t u, struct ev *out, int *known)
{
    uint64_t s = 0x5eed0000ull ^ ((uint64_t)u * 0x2545f4914f6cdd1dull);
    struct ev e[MAX_USER_EVENTS];
    size_t n = 0;
    int anon_start = unif(&s) < 0.35;
    int64_t days[48];
    size_t nd = 0;
    int d = (int)(rnd(&s) % DAYS); /* first day */
    while (d < DAYS && nd < 48) {
        days[nd++] = d;
        if (unif(&s) > 0.80)
            break; /* churned */
        d += 1 + (int)(-6.0 * __builtin_log(1.0 - unif(&s)));
    }
    int64_t first_pv = 0;
    for (size_t i = 0; i < nd && n < MAX_USER_EVENTS - 64; i++) {
        int64_t t = START_S + days[i] * 86400 + range_s(&s, 6 * 3600, 23 * 3600);
        int pv = 1;
        while (pv < 12 && unif(&s) < 0.62)
            pv++;
        for (int k = 0; k < pv; k++) {
            e[n++] = (struct ev){t, u, K_PAGEVIEW, 0, (uint16_t)(rnd(&s) % 500)};
            if (i == 0 && k == 0)
                first_pv = t;
            t += range_s(&s, 5, 400);
        }
    }
    /* the funnel: signup on the first day (or a later active day), then the next steps */
    int64_t identify_t = -1;
    if (nd && unif(&s) < 0.5) {
        int64_t t = first_pv + range_s(&s, 20, 900);
        if (nd > 1 && unif(&s) < 0.2)
            t = START_S + days[1 + rnd(&s) % (nd - 1)] * 86400 + range_s(&s, 6 * 3600, 23 * 3600);
        e[n++] = (struct ev){t, u, K_SIGNUP, 0, 0};
        if (anon_start) {
            identify_t = t - 1;
            e[n++] = (struct ev){identify_t, u, K_IDENTIFY, 1, 0};
        }
        if (unif(&s) < 0.65) {
            double r = unif(&s);
            t += r < 0.6    ? range_s(&s, 120, 7200)
                 : r < 0.85 ? range_s(&s, 7200, 5 * 86400)
                            : range_s(&s, 5 * 86400, 20 * 86400);
            e[n++] = (struct ev){t, u, K_ACTIVATE, 0, 0};
            if (unif(&s) < 0.55) {
                r = unif(&s);
                t += r < 0.5    ? range_s(&s, 300, 86400)
                     : r < 0.85 ? range_s(&s, 86400, 7 * 86400)
                                : range_s(&s, 7 * 86400, 20 * 86400);
                e[n++] = (struct ev){t, u, K_PURCHASE, 0, (uint16_t)(5 + rnd(&s) % 200)};
                int64_t first_purchase = t;
                if (unif(&s) < 0.45)
                    e[n++] = (struct ev){t + range_s(&s, 60, 10 * 86400), u, K_INVITE, 0, 0};
                for (size_t i = 0; i < nd; i++) {
                    int64_t dt = START_S + days[i] * 86400 + range_s(&s, 6 * 3600, 23 * 3600);
                    if (dt > first_purchase && unif(&s) < 0.25)
                        e[n++] = (struct ev){dt, u, K_PURCHASE, 0, (uint16_t)(5 + rnd(&s) % 200)};
                }
            }
        }
    }
    qsort(e, n, sizeof(e[0]), cmp_t);
    /* distinct seconds per user, in the order generated by time */
    for (size_t i = 1; i < n; i++)
        if (e[i].t <= e[i - 1].t)
            e[i].t = e[i - 1].t + 1;
    size_t m = 0;
    int identified = !anon_start;
    *known = !anon_start || identify_t >= 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].t >= END_S)
            break;
        if (e[i].kind == K_IDENTIFY)
            identified = 1;
        e[i].ident = (uint8_t)identified;
        out[m++] = e[i];
    }
    /* an identify cut off by the end of the data leaves the user anonymous */
    if (anon_start && identify_t >= 0) {
        *known = 0;
        for (size_t i = 0; i < m; i++)
            if (out[i].kind == K_IDENTIFY)
                *known = 1;
    }
    return m;
}

static int event_json(char *b, size_t cap, const struct ev *e, uint64_t seq)
{
    char ts[TIME_PB_LEN];
    time_format_iso(e->t * 1000000, ts);
    char ids[64];
    if (e->ident)
        snprintf(ids, sizeof(ids), "\"userId\":\"user-%u\",\"anonymousId\":\"anon-%u\"", e->user,
                 e->user);
    else
        snprintf(ids, sizeof(ids), "\"anonymousId\":\"anon-%u\"", e->user);
    const char *ctx = "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"5.2.0\"},"
                      "\"locale\":\"en-US\"},\"source\":\"web\"}";
    if (e->kind == K_IDENTIFY)
        return snprintf(b, cap,
                        "{\"messageId\":\"ins-%012llx\",\"type\":\"identify\",%s,"
                        "\"timestamp\":\"%s\",\"sentAt\":\"%s\",\"receivedAt\":\"%s\","
                        "\"traits\":{\"email\":\"user%u@example.com\",\"plan\":\"%s\"},%s",
                        (unsigned long long)seq, ids, ts, ts, ts, e->user,
                        e->user % 3 ? "free" : "pro", ctx);
    char props[96];
    switch (e->kind) {
    case K_PAGEVIEW: snprintf(props, sizeof(props), "{\"path\":\"/docs/page-%u\"}", e->page); break;
    case K_PURCHASE:
        snprintf(props, sizeof(props), "{\"amount\":%u,\"currency\":\"EUR\"}", e->page);
        break;
    default: snprintf(props, sizeof(props), "{\"plan\":\"%s\"}", e->user % 3 ? "free" : "pro");
    }
    return snprintf(b, cap,
                    "{\"messageId\":\"ins-%012llx\",\"type\":\"track\",\"event\":\"%s\",%s,"
                    "\"timestamp\":\"%s\",\"sentAt\":\"%s\",\"receivedAt\":\"%s\","
                    "\"properties\":%s,%s",
                    (unsigned long long)seq, kind_name[e->kind], ids, ts, ts, ts, props, ctx);
}

static int write_log(const char *dir, const struct ev *ev, size_t n)
{
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    struct evlog *log;
    if (evlog_open(&lc, &log) < 0) {
        fprintf(stderr, "evlog: %s\n", evlog_errmsg(NULL));
        return -1;
    }
    enum { B = 2000 };
    static char bufs[B][640];
    static struct evlog_rec recs[B];
    uint64_t bytes = 0;
    for (size_t base = 0; base < n; base += B) {
        size_t m = n - base < B ? n - base : B;
        for (size_t i = 0; i < m; i++) {
            int len = event_json(bufs[i], sizeof(bufs[i]), &ev[base + i], base + i);
            if (len < 0 || (size_t)len >= sizeof(bufs[i])) {
                fprintf(stderr, "event %zu too long\n", base + i);
                evlog_close(log);
                return -1;
            }
            recs[i] = (struct evlog_rec){bufs[i], (size_t)len};
            bytes += (uint64_t)len;
        }
        uint64_t off;
        if (evlog_append_sync(log, "events", recs, m, &off) < 0) {
            fprintf(stderr, "append: %s\n", evlog_errmsg(log));
            evlog_close(log);
            return -1;
        }
    }
    evlog_close(log);
    printf("log: %.0f bytes per event on average\n", (double)bytes / (double)(n ? n : 1));
    return 0;
}

static int write_tsv(const char *path, const struct ev *ev, size_t n, const uint8_t *known)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    static char fbuf[1 << 20];
    setvbuf(f, fbuf, _IOFBF, sizeof(fbuf));
    int64_t day = -1;
    char date[16] = "";
    for (size_t i = 0; i < n; i++) {
        int64_t t = ev[i].t, d = t / 86400;
        if (d != day) {
            char iso[TIME_PB_LEN];
            time_format_iso(d * 86400 * 1000000, iso);
            memcpy(date, iso, 10);
            date[10] = 0;
            day = d;
        }
        int sec = (int)(t - d * 86400);
        fprintf(f, "%s %02d:%02d:%02d\t%s\t%s-%u\n", date, sec / 3600, sec / 60 % 60, sec % 60,
                kind_name[ev[i].kind], known[ev[i].user] ? "user" : "anon", ev[i].user);
    }
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s EVENTS TSV [DIR]\n", argv[0]);
        return 2;
    }
    uint64_t target = strtoull(argv[1], NULL, 10);
    uint32_t users = (uint32_t)(target / 10 ? target / 10 : 1);
    int64_t t0 = time_mono_us();
    size_t cap = (size_t)target + target / 4 + MAX_USER_EVENTS, n = 0;
    struct ev *ev = malloc(cap * sizeof(*ev));
    uint8_t *known = calloc(users, 1);
    if (!ev || !known) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t persons_known = 0;
    for (uint32_t u = 0; u < users; u++) {
        if (n + MAX_USER_EVENTS > cap) {
            cap *= 2;
            struct ev *g = realloc(ev, cap * sizeof(*ev));
            if (!g) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            ev = g;
        }
        int k;
        n += gen_user(u, ev + n, &k);
        known[u] = (uint8_t)k;
        persons_known += (uint64_t)k;
    }
    qsort(ev, n, sizeof(*ev), cmp_t);
    printf("generated in %.1f s\n", (double)(time_mono_us() - t0) / 1e6);
    if (write_tsv(argv[2], ev, n, known) < 0)
        return 1;
    if (argc > 3 && write_log(argv[3], ev, n) < 0)
        return 1;
    printf("written in %.1f s\n", (double)(time_mono_us() - t0) / 1e6);
    /* every user is one person: "user-N" when identified, else "anon-N" */
    printf("events %zu users %u identified %llu\n", n, users, (unsigned long long)persons_known);
    free(ev);
    free(known);
    return 0;
}
