/* ratelimit.c - fixed-window request counters per client address and route class, in a
 * fixed-size set-associative table. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_int.h"
#include "metrics/metrics.h"

#define WAYS 8
#define N_LOCKS 64
#define DEFAULT_CAPACITY 65536
#define MAX_CAPACITY (1u << 24)
#define MAX_WINDOW_S 86400

struct rl_entry {
    uint8_t addr[16]; /* IPv6, IPv4-mapped, or a hash of an unparseable address */
    uint8_t cls;
    bool used;
    uint32_t hits;
    int64_t start_us; /* start of the current window */
};

struct auth_ratelimit {
    /* per class: max << 32 | window_s, replaced whole by auth_ratelimit_set_rules */
    _Atomic uint64_t rules[AUTH_RL_N_CLASSES];
    size_t n_sets;
    struct rl_entry *entries;       /* n_sets * WAYS */
    pthread_mutex_t locks[N_LOCKS]; /* leaf; set i under locks[i % N_LOCKS] */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    _Atomic size_t n_used;
    struct metrics_series *m_refused[AUTH_RL_N_CLASSES];
};

static const char *const class_names[AUTH_RL_N_CLASSES] = {"auth", "create", "batch", "default"};

const char *auth_rl_class_name(enum auth_rl_class cls)
{
    return (unsigned)cls < AUTH_RL_N_CLASSES ? class_names[cls] : "unknown";
}

void auth_ratelimit_cfg_default(struct auth_ratelimit_cfg *cfg)
{
    *cfg = (struct auth_ratelimit_cfg){
        .rules =
            {
                [AUTH_RL_AUTH] = {2, 3},
                [AUTH_RL_CREATE] = {20, 5},
                [AUTH_RL_BATCH] = {3, 1},
                [AUTH_RL_DEFAULT] = {300, 10},
            },
        .capacity = DEFAULT_CAPACITY,
    };
}

/* Digits, at most 10 of them, as an unsigned value; advances *p. */
static bool parse_uint(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t n = 0;
    while (*s >= '0' && *s <= '9') {
        if (++n > 10)
            return false;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    if (n == 0)
        return false;
    *p = s;
    *out = v;
    return true;
}

int auth_ratelimit_parse(const char *spec, struct auth_ratelimit_cfg *cfg, char *err,
                         size_t err_len)
{
    struct auth_ratelimit_cfg c = *cfg;
    const char *p = spec;
    while (*spec) {
        const char *item = p;
        const char *eq = strchr(p, '=');
        const char *comma = strchr(p, ',');
        size_t item_len = comma ? (size_t)(comma - item) : strlen(item);
        if (!eq || (comma && eq > comma)) {
            err_set(err, err_len, "rate limit rule '%.*s' is not CLASS=MAX/WINDOW", (int)item_len,
                    item);
            return ERR_INVALID;
        }
        int cls = -1;
        for (int i = 0; i < AUTH_RL_N_CLASSES; i++) {
            if ((size_t)(eq - p) == strlen(class_names[i]) &&
                strncmp(p, class_names[i], (size_t)(eq - p)) == 0)
                cls = i;
        }
        if (cls < 0) {
            err_set(err, err_len, "unknown rate limit class '%.*s' (auth, create, batch, default)",
                    (int)(eq - p), p);
            return ERR_INVALID;
        }
        const char *q = eq + 1;
        uint64_t max, win;
        if (!parse_uint(&q, &max) || *q++ != '/' || !parse_uint(&q, &win))
            goto bad;
        if (*q == 's')
            q++;
        else if (*q == 'm')
            win *= 60, q++;
        else if (*q == 'h')
            win *= 3600, q++;
        if ((*q != ',' && *q != '\0') || max > UINT32_MAX || win < 1 || win > MAX_WINDOW_S)
            goto bad;
        c.rules[cls] = (struct auth_rl_rule){(uint32_t)max, (uint32_t)win};
        if (*q == '\0')
            break;
        p = q + 1; /* after a comma another rule must follow */
        continue;
    bad:
        err_set(err, err_len,
                "rate limit rule '%.*s' is not CLASS=MAX/WINDOW with a window of 1s..24h",
                (int)item_len, item);
        return ERR_INVALID;
    }
    *cfg = c;
    return 0;
}

/* Segment i (0-based) of a path that starts with '/'; false past the end. */
static bool path_segment(struct str path, size_t i, struct str *out)
{
    size_t pos = 0;
    for (size_t k = 0;; k++) {
        if (pos >= path.len || path.ptr[pos] != '/')
            return false;
        size_t start = ++pos;
        while (pos < path.len && path.ptr[pos] != '/')
            pos++;
        if (k == i) {
            *out = (struct str){path.ptr + start, pos - start};
            return true;
        }
    }
}

enum auth_rl_class auth_ratelimit_classify(const char *method, struct str path)
{
    static const char *const auth_actions[] = {
        "auth-with-password",   "auth-with-oauth2",       "auth-with-otp",
        "request-otp",          "request-password-reset", "confirm-password-reset",
        "request-verification", "confirm-verification",   "request-email-change",
        "confirm-email-change",
    };
    struct str s0, s1, s3, extra;
    if (strcmp(method, "POST") != 0)
        return AUTH_RL_DEFAULT;
    if (str_eq_cstr(path, "/api/batch"))
        return AUTH_RL_BATCH;
    if (!path_segment(path, 0, &s0) || !str_eq_cstr(s0, "api") || !path_segment(path, 1, &s1) ||
        !str_eq_cstr(s1, "collections") || !path_segment(path, 3, &s3) ||
        path_segment(path, 4, &extra))
        return AUTH_RL_DEFAULT;
    if (str_eq_cstr(s3, "records"))
        return AUTH_RL_CREATE;
    for (size_t i = 0; i < ARRAY_LEN(auth_actions); i++) {
        if (str_eq_cstr(s3, auth_actions[i]))
            return AUTH_RL_AUTH;
    }
    return AUTH_RL_DEFAULT;
}

static struct auth_rl_rule rule_get(const struct auth_ratelimit *rl, enum auth_rl_class cls)
{
    uint64_t w = atomic_load_explicit(&rl->rules[cls], memory_order_relaxed);
    return (struct auth_rl_rule){(uint32_t)(w >> 32), (uint32_t)w};
}

static int rules_check(const struct auth_rl_rule *rules)
{
    for (int i = 0; i < AUTH_RL_N_CLASSES; i++)
        if (rules[i].max > 0 && (rules[i].window_s < 1 || rules[i].window_s > MAX_WINDOW_S))
            return ERR_INVALID;
    return 0;
}

int auth_ratelimit_set_rules(struct auth_ratelimit *rl,
                             const struct auth_rl_rule rules[AUTH_RL_N_CLASSES])
{
    if (rules_check(rules) != 0)
        return ERR_INVALID;
    for (int i = 0; i < AUTH_RL_N_CLASSES; i++)
        atomic_store_explicit(&rl->rules[i], (uint64_t)rules[i].max << 32 | rules[i].window_s,
                              memory_order_relaxed);
    return 0;
}

void auth_ratelimit_get_rules(const struct auth_ratelimit *rl,
                              struct auth_rl_rule rules_out[AUTH_RL_N_CLASSES])
{
    for (int i = 0; i < AUTH_RL_N_CLASSES; i++)
        rules_out[i] = rule_get(rl, (enum auth_rl_class)i);
}

int auth_ratelimit_new(const struct auth_ratelimit_cfg *cfg, struct auth_ratelimit **out)
{
    if (rules_check(cfg->rules) != 0)
        return ERR_INVALID;
    size_t cap = cfg->capacity ? cfg->capacity : DEFAULT_CAPACITY;
    if (cap > MAX_CAPACITY)
        return ERR_INVALID;
    auth__sodium_ready();
    struct auth_ratelimit *rl = xcalloc(1, sizeof(*rl));
    if (auth_ratelimit_set_rules(rl, cfg->rules) != 0)
        PANIC("rate limit rules checked above");
    rl->n_sets = (cap + WAYS - 1) / WAYS;
    rl->entries = xcalloc(rl->n_sets * WAYS, sizeof(*rl->entries));
    for (int i = 0; i < N_LOCKS; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    crypto_shorthash_keygen(rl->hash_key);
    struct metrics_family *f =
        metrics_family(METRICS_COUNTER, "tandem_ratelimit_refused_total",
                       "Requests refused by the rate limiter, by route class.", "class");
    for (int i = 0; i < AUTH_RL_N_CLASSES; i++)
        rl->m_refused[i] = metrics_series(f, (const char *const[]){class_names[i]});
    *out = rl;
    return 0;
}

void auth_ratelimit_free(struct auth_ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < N_LOCKS; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    free(rl->entries);
    free(rl);
}

/* The counting key of an address: IPv4 as IPv4-mapped IPv6, IPv6 cut to its /64, anything
 * else hashed. */
static void addr_key(const struct auth_ratelimit *rl, const char *ip, uint8_t out[16])
{
    memset(out, 0, 16);
    uint8_t v4[4];
    if (inet_pton(AF_INET, ip, v4) == 1) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        return;
    }
    if (inet_pton(AF_INET6, ip, out) == 1) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(out, mapped, sizeof(mapped)) != 0)
            memset(out + 8, 0, 8);
        return;
    }
    /* A /64 key has a zero low half; a hashed key never does. */
    crypto_generichash(out, 16, (const uint8_t *)ip, strlen(ip), rl->hash_key,
                       sizeof(rl->hash_key));
    out[15] |= 1;
}

int auth_ratelimit_check(struct auth_ratelimit *rl, const char *ip, enum auth_rl_class cls,
                         int64_t now_us, int *retry_after_s_out)
{
    if ((unsigned)cls >= AUTH_RL_N_CLASSES)
        cls = AUTH_RL_DEFAULT;
    const struct auth_rl_rule rule = rule_get(rl, cls);
    if (rule.max == 0)
        return 0;
    int64_t win_us = (int64_t)rule.window_s * 1000000;

    uint8_t key[17];
    addr_key(rl, ip ? ip : "", key);
    key[16] = (uint8_t)cls;
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, sizeof(key), rl->hash_key);
    size_t set = (size_t)(le_get64(h) % rl->n_sets);
    struct rl_entry *ways = &rl->entries[set * WAYS];
    pthread_mutex_t *lock = &rl->locks[set % N_LOCKS];

    pthread_mutex_lock(lock);
    struct rl_entry *e = NULL, *victim = NULL;
    for (int i = 0; i < WAYS && !e; i++) {
        struct rl_entry *w = &ways[i];
        if (w->used && w->cls == cls && memcmp(w->addr, key, 16) == 0)
            e = w;
    }
    if (!e) {
        /* A free way, else one whose window is over, else the oldest window. */
        struct rl_entry *oldest = NULL;
        for (int i = 0; i < WAYS && !victim; i++) {
            struct rl_entry *w = &ways[i];
            int64_t w_win = (int64_t)rule_get(rl, (enum auth_rl_class)w->cls).window_s * 1000000;
            if (!w->used || now_us - w->start_us >= w_win)
                victim = w;
            else if (!oldest || w->start_us < oldest->start_us)
                oldest = w;
        }
        if (!victim)
            victim = oldest;
        if (!victim->used)
            rl->n_used++;
        e = victim;
        memcpy(e->addr, key, 16);
        e->cls = (uint8_t)cls;
        e->used = true;
        e->hits = 0;
        e->start_us = now_us;
    }
    if (now_us - e->start_us >= win_us || now_us < e->start_us) {
        e->start_us = now_us;
        e->hits = 0;
    }
    int rc = 0;
    if (e->hits >= rule.max) {
        int64_t left = e->start_us + win_us - now_us;
        int secs = (int)((left + 999999) / 1000000);
        if (retry_after_s_out)
            *retry_after_s_out = secs < 1 ? 1 : secs;
        rc = ERR_LIMIT;
    } else {
        e->hits++;
    }
    pthread_mutex_unlock(lock);
    if (rc != 0)
        metrics_inc(rl->m_refused[cls], 1);
    return rc;
}

size_t auth_ratelimit_size(struct auth_ratelimit *rl)
{
    return rl->n_used;
}

size_t auth_ratelimit_capacity(const struct auth_ratelimit *rl)
{
    return rl->n_sets * WAYS;
}
