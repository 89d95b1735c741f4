/* settings.c - /api/settings (superusers): PocketBase's application settings. The sections
 * meta, logs, smtp, batch, rateLimits and trustedProxy, with PocketBase's defaults, field
 * names and validation codes, persisted as one JSON value in the store (_params "settings").
 * GET answers them without secrets (smtp.password); PATCH merges the submitted keys into the
 * stored ones (unknown keys are ignored, a value of the wrong type is refused), validates the
 * whole and stores it, then applies what the running server uses: the rate limits (unless
 * --ratelimit was given, which wins and is said so in the log) and the trusted proxy headers
 * that give the client address. */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#include "api/api_int.h"
#include "api/records_int.h"
#include "governance/governance.h"
#include "ops/ops.h"
#include "mail/mail.h"
#include "store/store.h"

#define PARAM_ID "settings"
#define PROXY_MAX_HEADERS 8
#define PROXY_HEADER_MAX 64
#define BATCH_MAX_REQUESTS 1000 /* what maxRequests may be set to */
#define RETENTION_DAYS_MAX 36500
#define RETENTION_BATCH_DEFAULT 122880 /* log offsets per delete transaction: one row group */
#define RETENTION_BATCH_MIN 100
#define RETENTION_BATCH_MAX 10000000

/* Shared by every thread: the settings under a leaf lock (never held across I/O); the trusted proxy
 * headers also readable without it while has_proxy is false (the common case costs one atomic
 * load). */
struct api_settings {
    pthread_mutex_t patch_lock; /* one PATCH at a time, held while it stores (I/O) */
    pthread_mutex_t lock;
    json_t *cur; /* every section, secrets included */
    _Atomic bool has_proxy;
    char proxy_headers[PROXY_MAX_HEADERS][PROXY_HEADER_MAX + 1];
    size_t n_proxy_headers;
    bool leftmost;
    _Atomic bool has_pii;
    struct capture_pii *pii; /* [lock] the compiled privacy rules, NULL for none */
};

/* PocketBase's defaults (core/settings_model.go). */
static json_t *defaults(void)
{
    json_t *d = json_pack(
        "{s:{s:s,s:s,s:s,s:s,s:b},s:{s:i,s:i,s:b,s:b},"
        "s:{s:b,s:i,s:s,s:s,s:s,s:s,s:b,s:s},s:{s:b,s:i,s:i,s:i},"
        "s:{s:b,s:[{s:s,s:s,s:i,s:i},{s:s,s:s,s:i,s:i},{s:s,s:s,s:i,s:i},{s:s,s:s,s:i,s:i}]},"
        "s:{s:[],s:b},s:{s:b,s:[]}}",
        "meta", "appName", "Acme", "appURL", "http://localhost:8090", "senderName", "Support",
        "senderAddress", "support@example.com", "hideControls", 0, "logs", "maxDays", 5, "minLevel",
        0, "logIP", 1, "logAuthId", 0, "smtp", "enabled", 0, "port", 587, "host",
        "smtp.example.com", "username", "", "password", "", "authMethod", "", "tls", 0, "localName",
        "", "batch", "enabled", 0, "maxRequests", 50, "timeout", 3, "maxBodySize", 0, "rateLimits",
        "enabled", 0, "rules", "label", "*:auth", "audience", "", "duration", 3, "maxRequests", 2,
        "label", "*:create", "audience", "", "duration", 5, "maxRequests", 20, "label",
        "/api/batch", "audience", "", "duration", 1, "maxRequests", 3, "label", "/api/", "audience",
        "", "duration", 10, "maxRequests", 300, "trustedProxy", "headers", "useLeftmostIP", 0,
        "privacy", "defaults", 0, "rules");
    json_object_set_new(d, "analytics", json_pack("{s:s}", "accessRule", ""));
    /* tandem's own: the relations a person deletion follows (docs/governance.md) */
    json_object_set_new(d, "persons", json_pack("{s:[]}", "deleteRelations"));
    json_object_set_new(d, "backups",
                        json_pack("{s:s,s:i,s:{s:b,s:s,s:s,s:s,s:s,s:s,s:b}}", "cron", "",
                                  "cronMaxKeep", 3, "s3", "enabled", 0, "bucket", "", "region", "",
                                  "endpoint", "", "accessKey", "", "secret", "", "forcePathStyle",
                                  0));
    /* tandem's own: warehouse retention (docs/warehouse.md "Retention") */
    json_object_set_new(d, "warehouse",
                        json_pack("{s:i,s:s,s:i}", "retentionDays", 0, "retentionCron", "@hourly",
                                  "retentionBatch", RETENTION_BATCH_DEFAULT));
    return d;
}

/* PocketBase's rate limit labels that name one of our route classes. */
static const struct {
    const char *label;
    enum auth_rl_class cls;
} rl_labels[] = {
    {"*:auth", AUTH_RL_AUTH},
    {"*:create", AUTH_RL_CREATE},
    {"/api/batch", AUTH_RL_BATCH},
    {"/api/", AUTH_RL_DEFAULT},
};

#define N_RL_LABELS (sizeof(rl_labels) / sizeof(rl_labels[0]))

/* The index in rl_labels of a rule label, or N_RL_LABELS. */
static size_t rl_label_index(const char *label)
{
    size_t k = 0;
    while (label && k < N_RL_LABELS && strcmp(label, rl_labels[k].label) != 0)
        k++;
    return label ? k : N_RL_LABELS;
}

static bool same_kind(const json_t *a, const json_t *b)
{
    if (json_is_boolean(a) || json_is_boolean(b))
        return json_is_boolean(a) && json_is_boolean(b);
    if (json_is_integer(a))
        return json_is_integer(b) ||
               (json_is_real(b) && json_real_value(b) == (json_int_t)json_real_value(b));
    return json_typeof(a) == json_typeof(b);
}

/* Merges the known keys of patch into cur (same shape as the defaults). ERR_INVALID when a
 * value has the wrong type. Arrays are replaced whole; their items are checked later. */
static int merge(json_t *cur, const json_t *patch)
{
    if (!json_is_object(patch))
        return ERR_INVALID;
    const char *sec;
    json_t *sv;
    json_object_foreach(cur, sec, sv)
    {
        json_t *pv = json_object_get(patch, sec);
        if (!pv)
            continue;
        if (!json_is_object(pv))
            return ERR_INVALID;
        const char *key;
        json_t *v;
        json_object_foreach(sv, key, v)
        {
            json_t *nv = json_object_get(pv, key);
            if (!nv)
                continue;
            if (!same_kind(v, nv))
                return ERR_INVALID;
            json_object_set_new(sv, key,
                                json_is_real(nv) && json_is_integer(v)
                                    ? json_integer((json_int_t)json_real_value(nv))
                                    : json_deep_copy(nv));
        }
    }
    return 0;
}

static void verr(json_t *errors, const char *sec, const char *key, const char *code,
                 const char *msg)
{
    json_t *s = json_object_get(errors, sec);
    if (!s) {
        s = json_object();
        json_object_set_new(errors, sec, s);
    }
    if (!json_object_get(s, key))
        json_object_set_new(s, key, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

static void item_err(json_t *e, const char *key, const char *code, const char *msg)
{
    if (!json_object_get(e, key))
        json_object_set_new(e, key, json_pack("{s:s,s:s}", "code", code, "message", msg));
}

static const char *sget(const json_t *cur, const char *sec, const char *key)
{
    const char *v = json_string_value(json_object_get(json_object_get(cur, sec), key));
    return v ? v : "";
}

static json_int_t iget(const json_t *cur, const char *sec, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(cur, sec), key));
}

static bool bget(const json_t *cur, const char *sec, const char *key)
{
    return json_is_true(json_object_get(json_object_get(cur, sec), key));
}

static void check_required_text(json_t *errors, const json_t *cur, const char *sec, const char *key,
                                size_t max)
{
    size_t n = strlen(sget(cur, sec, key));
    if (n == 0)
        verr(errors, sec, key, "validation_required", "Cannot be blank.");
    else if (n > max)
        verr(errors, sec, key, "validation_length_out_of_range",
             "The length must be between 1 and 255.");
}

static bool is_url(const char *s)
{
    const char *p = strncmp(s, "http://", 7) == 0    ? s + 7
                    : strncmp(s, "https://", 8) == 0 ? s + 8
                                                     : NULL;
    if (!p || !*p || *p == '/')
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' || *p == '\\')
            return false;
    return true;
}

static bool is_email(const char *s)
{
    const char *at = strchr(s, '@');
    return at && at > s && at[1] && !strchr(at + 1, '@') && strchr(at + 1, '.') &&
           !strpbrk(s, " \t\r\n<>\",;") && strlen(s) <= 255;
}

/* A DNS name or an IP address, as ozzo's is.Host accepts. */
static bool is_host(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    unsigned char buf[16];
    if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
        return true;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* An HTTP header name (RFC 9110 token). */
static bool is_header_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PROXY_HEADER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
            return false;
    return true;
}

static void check_min(json_t *errors, const json_t *cur, const char *sec, const char *key,
                      json_int_t min, bool required)
{
    json_int_t v = iget(cur, sec, key);
    if (required && v == 0)
        verr(errors, sec, key, "validation_required", "Cannot be blank.");
    else if (v < min)
        verr(errors, sec, key, "validation_min_greater_equal_than_required",
             min == 0 ? "Must be no less than 0." : "Must be no less than 1.");
}

static void check_rules(json_t *errors, const json_t *cur)
{
    const json_t *rules = json_object_get(json_object_get(cur, "rateLimits"), "rules");
    if (bget(cur, "rateLimits", "enabled") && json_array_size(rules) == 0) {
        verr(errors, "rateLimits", "rules", "validation_required", "Cannot be blank.");
        return;
    }
    json_t *items = json_object();
    bool seen[N_RL_LABELS] = {0};
    for (size_t i = 0; i < json_array_size(rules); i++) {
        const json_t *r = json_array_get(rules, i);
        json_t *e = json_object();
        const char *label = json_string_value(json_object_get(r, "label"));
        const char *aud = json_string_value(json_object_get(r, "audience"));
        json_t *max = json_object_get(r, "maxRequests"), *dur = json_object_get(r, "duration");
        size_t k = rl_label_index(label);
        if (!label || !*label)
            item_err(e, "label", "validation_required", "Cannot be blank.");
        else if (k == N_RL_LABELS)
            item_err(e, "label", "validation_invalid_rate_limit_label",
                     "Supported labels: *:auth, *:create, /api/batch and /api/.");
        else if (seen[k])
            item_err(e, "label", "validation_conflicting_rate_limit_rule",
                     "Rate limit rule configuration with this label already exists.");
        else
            seen[k] = true;
        if (aud && *aud)
            item_err(e, "audience", "validation_in_invalid",
                     "Only the audience \"\" (guests and users alike) is supported.");
        if (!json_is_integer(max) || json_integer_value(max) < 1 ||
            json_integer_value(max) > UINT32_MAX)
            item_err(e, "maxRequests", "validation_min_greater_equal_than_required",
                     "Must be a whole number of at least 1.");
        if (!json_is_integer(dur) || json_integer_value(dur) < 1 || json_integer_value(dur) > 86400)
            item_err(e, "duration", "validation_min_greater_equal_than_required",
                     "Must be a whole number of seconds from 1 to 86400.");
        if (json_object_size(e)) {
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i);
            json_object_set_new(items, idx, e);
        } else {
            json_decref(e);
        }
    }
    if (json_object_size(items)) {
        json_t *s = json_object_get(errors, "rateLimits");
        if (!s) {
            s = json_object();
            json_object_set_new(errors, "rateLimits", s);
        }
        json_object_set_new(s, "rules", items);
    } else {
        json_decref(items);
    }
}

/* PocketBase's validation of every section; errors gets {section: {field: {code, message}}}. */
static void validate(const json_t *cur, json_t *errors)
{
    check_required_text(errors, cur, "meta", "appName", 255);
    if (!*sget(cur, "meta", "appURL"))
        verr(errors, "meta", "appURL", "validation_required", "Cannot be blank.");
    else if (!is_url(sget(cur, "meta", "appURL")))
        verr(errors, "meta", "appURL", "validation_is_url", "Must be a valid URL.");
    check_required_text(errors, cur, "meta", "senderName", 255);
    if (!*sget(cur, "meta", "senderAddress"))
        verr(errors, "meta", "senderAddress", "validation_required", "Cannot be blank.");
    else if (!is_email(sget(cur, "meta", "senderAddress")))
        verr(errors, "meta", "senderAddress", "validation_is_email",
             "Must be a valid email address.");
    check_min(errors, cur, "logs", "maxDays", 0, false);
    struct ops_cron_sched sched;
    const char *cron = sget(cur, "backups", "cron");
    if (*cron && ops_cron_parse(cron, &sched) != 0)
        verr(errors, "backups", "cron", "validation_invalid_cron", "Invalid cron expression.");
    if (iget(cur, "backups", "cronMaxKeep") < 1)
        verr(errors, "backups", "cronMaxKeep", "validation_min_greater_equal_than_required",
             "Must be no less than 1.");
    if (json_is_true(
            json_object_get(json_object_get(json_object_get(cur, "backups"), "s3"), "enabled")))
        verr(errors, "backups", "s3", "validation_unsupported",
             "S3 storage of backups is not supported; backups are kept in the data directory.");
    json_int_t days = iget(cur, "warehouse", "retentionDays");
    if (days < 0)
        verr(errors, "warehouse", "retentionDays", "validation_min_greater_equal_than_required",
             "Must be no less than 0.");
    else if (days > RETENTION_DAYS_MAX)
        verr(errors, "warehouse", "retentionDays", "validation_max_less_equal_than_required",
             "Must be no greater than 36500.");
    if (ops_cron_parse(sget(cur, "warehouse", "retentionCron"), &sched) != 0)
        verr(errors, "warehouse", "retentionCron", "validation_invalid_cron",
             "Invalid cron expression.");
    json_int_t rb = iget(cur, "warehouse", "retentionBatch");
    if (rb < RETENTION_BATCH_MIN || rb > RETENTION_BATCH_MAX)
        verr(errors, "warehouse", "retentionBatch", "validation_invalid_value",
             "Must be between 100 and 10000000.");
    bool smtp = bget(cur, "smtp", "enabled");
    const char *host = sget(cur, "smtp", "host");
    if (smtp && !*host)
        verr(errors, "smtp", "host", "validation_required", "Cannot be blank.");
    else if (*host && !is_host(host))
        verr(errors, "smtp", "host", "validation_is_host", "Must be a valid host.");
    check_min(errors, cur, "smtp", "port", 0, smtp);
    if (iget(cur, "smtp", "port") > 65535)
        verr(errors, "smtp", "port", "validation_max_less_equal_than_required",
             "Must be no greater than 65535.");
    const char *am = sget(cur, "smtp", "authMethod");
    if (*am && strcmp(am, "PLAIN") != 0 && strcmp(am, "LOGIN") != 0)
        verr(errors, "smtp", "authMethod", "validation_in_invalid", "Must be a valid value.");
    const char *ln = sget(cur, "smtp", "localName");
    if (*ln && !is_host(ln))
        verr(errors, "smtp", "localName", "validation_is_host", "Must be a valid host.");
    bool batch = bget(cur, "batch", "enabled");
    check_min(errors, cur, "batch", "maxRequests", 0, batch);
    if (iget(cur, "batch", "maxRequests") > BATCH_MAX_REQUESTS)
        verr(errors, "batch", "maxRequests", "validation_max_less_equal_than_required",
             "Must be no greater than 1000.");
    check_min(errors, cur, "batch", "timeout", 0, batch);
    check_min(errors, cur, "batch", "maxBodySize", 0, false);
    check_rules(errors, cur);
    const json_t *hs = json_object_get(json_object_get(cur, "trustedProxy"), "headers");
    if (json_array_size(hs) > PROXY_MAX_HEADERS)
        verr(errors, "trustedProxy", "headers", "validation_length_too_long", "At most 8 headers.");
    for (size_t i = 0; i < json_array_size(hs); i++)
        if (!json_is_string(json_array_get(hs, i)) ||
            !is_header_name(json_string_value(json_array_get(hs, i))))
            verr(errors, "trustedProxy", "headers", "validation_invalid_value",
                 "Each header must be a valid HTTP header name.");
    /* the privacy rules are checked by compiling them, as apply() will */
    struct capture_pii *pii = NULL;
    char msg[160];
    if (capture_pii_compile(json_object_get(json_object_get(cur, "privacy"), "rules"),
                            bget(cur, "privacy", "defaults"), "", 0, &pii, msg, sizeof(msg)) != 0)
        verr(errors, "privacy", "rules", "validation_invalid_value", msg);
    capture_pii_unref(pii);
}

/* The privacy rules' hash key: derived from the secret, so hashes are stable across restarts
 * and unguessable without it. */
static struct capture_pii *compile_pii(struct api_env *env, const json_t *cur)
{
    char key[AUTH_COLLECTION_SECRET_LEN + 1] = "";
    if (env->secret)
        auth_secret_collection(env->secret, "pii", "events", key);
    struct capture_pii *pii = NULL;
    char msg[160];
    if (capture_pii_compile(json_object_get(json_object_get(cur, "privacy"), "rules"),
                            bget(cur, "privacy", "defaults"), key, strlen(key), &pii, msg,
                            sizeof(msg)) != 0)
        xlog_warn("settings: the stored privacy rules are invalid (%s); none apply", msg);
    sodium_memzero(key, sizeof(key));
    return pii;
}

/* Makes cur what the running server uses. Called with s->lock held. */
static void apply(struct api_env *env, struct api_settings *s)
{
    const json_t *cur = s->cur;
    if (env->rl && !(env->cfg && cfg_given(env->cfg, "ratelimit"))) {
        struct auth_rl_rule rules[AUTH_RL_N_CLASSES] = {{0, 1}, {0, 1}, {0, 1}, {0, 1}};
        const json_t *list = json_object_get(json_object_get(cur, "rateLimits"), "rules");
        for (size_t i = 0; bget(cur, "rateLimits", "enabled") && i < json_array_size(list); i++) {
            const json_t *r = json_array_get(list, i);
            size_t k = rl_label_index(json_string_value(json_object_get(r, "label")));
            if (k < N_RL_LABELS)
                rules[rl_labels[k].cls] = (struct auth_rl_rule){
                    (uint32_t)json_integer_value(json_object_get(r, "maxRequests")),
                    (uint32_t)json_integer_value(json_object_get(r, "duration"))};
        }
        if (auth_ratelimit_set_rules(env->rl, rules) != 0)
            xlog_warn("settings: the rate limit rules are out of range; kept the old ones");
    }
    const json_t *hs = json_object_get(json_object_get(cur, "trustedProxy"), "headers");
    atomic_store(&s->has_proxy, false);
    s->n_proxy_headers = 0;
    for (size_t i = 0; i < json_array_size(hs) && i < PROXY_MAX_HEADERS; i++)
        snprintf(s->proxy_headers[s->n_proxy_headers++], PROXY_HEADER_MAX + 1, "%s",
                 json_string_value(json_array_get(hs, i)));
    s->leftmost = bget(cur, "trustedProxy", "useLeftmostIP");
    atomic_store(&s->has_proxy, s->n_proxy_headers > 0);
    api__backups_schedule(env, sget(cur, "backups", "cron"), iget(cur, "backups", "cronMaxKeep"));
    api__logs_configure(env, iget(cur, "logs", "maxDays"), iget(cur, "logs", "minLevel"),
                        bget(cur, "logs", "logIP"), bget(cur, "logs", "logAuthId"));
    api__retention_schedule(env, iget(cur, "warehouse", "retentionDays"),
                            sget(cur, "warehouse", "retentionCron"));
    capture_pii_unref(s->pii);
    s->pii = compile_pii(env, cur);
    atomic_store(&s->has_pii, s->pii != NULL);
}

struct capture_pii *api__settings_pii(struct api_env *env)
{
    struct api_settings *s = env->settings;
    if (!s || !atomic_load_explicit(&s->has_pii, memory_order_relaxed))
        return NULL;
    pthread_mutex_lock(&s->lock);
    struct capture_pii *p = capture_pii_ref(s->pii);
    pthread_mutex_unlock(&s->lock);
    return p;
}

int api_settings_open(struct api_env *env)
{
    struct api_settings *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->patch_lock, NULL);
    s->cur = defaults();
    if (env->store) {
        json_t *stored = NULL;
        int rc = store_param_get(env->store, PARAM_ID, &stored);
        if (rc == 0 && merge(s->cur, stored) != 0)
            xlog_warn("settings: the stored settings have values of the wrong type; "
                      "those keep their defaults");
        json_decref(stored);
        if (rc && rc != ERR_NOTFOUND) {
            xlog_error("cannot read the settings: %s", store_errmsg(env->store));
            json_decref(s->cur);
            pthread_mutex_destroy(&s->patch_lock);
            pthread_mutex_destroy(&s->lock);
            free(s);
            return rc;
        }
    }
    if (env->cfg && cfg_given(env->cfg, "ratelimit") && bget(s->cur, "rateLimits", "enabled"))
        xlog_warn("--ratelimit overrides settings.rateLimits, which are enabled");
    env->settings = s;
    apply(env, s);
    return 0;
}

void api_settings_free(struct api_env *env)
{
    struct api_settings *s = env->settings;
    if (!s)
        return;
    json_decref(s->cur);
    capture_pii_unref(s->pii);
    pthread_mutex_destroy(&s->patch_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
    env->settings = NULL;
}

void api__settings_batch(struct api_env *env, struct api_batch_settings *out)
{
    struct api_settings *s = env->settings;
    *out = (struct api_batch_settings){0};
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    out->enabled = bget(s->cur, "batch", "enabled");
    out->max_requests = iget(s->cur, "batch", "maxRequests");
    out->timeout_s = iget(s->cur, "batch", "timeout");
    out->max_body = iget(s->cur, "batch", "maxBodySize");
    pthread_mutex_unlock(&s->lock);
}

json_t *api__settings_section(struct api_env *env, const char *section)
{
    struct api_settings *s = env->settings;
    if (!s)
        return json_object();
    pthread_mutex_lock(&s->lock);
    json_t *out = json_deep_copy(json_object_get(s->cur, section));
    pthread_mutex_unlock(&s->lock);
    return out ? out : json_object();
}

/* The address in one header value: a list "a, b, c" read from the right (the closest proxy
 * appended last) or from the left; the first that parses as an IP. Written into out. */
static bool pick_ip(const char *v, bool leftmost, char *out, size_t cap)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", v);
    char *items[32];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < 32;
         t = strtok_r(NULL, ",", &save))
        items[n++] = t;
    for (size_t k = 0; k < n; k++) {
        char *t = items[leftmost ? k : n - 1 - k];
        while (*t == ' ' || *t == '\t')
            t++;
        size_t len = strcspn(t, " \t");
        t[len] = '\0';
        unsigned char bin[16];
        if (len < cap && (inet_pton(AF_INET, t, bin) == 1 || inet_pton(AF_INET6, t, bin) == 1)) {
            memcpy(out, t, len + 1);
            return true;
        }
    }
    return false;
}

const char *api__client_ip(struct http_req *req, struct api_env *env)
{
    struct api_settings *s = env->settings;
    if (!s || !atomic_load_explicit(&s->has_proxy, memory_order_relaxed))
        return http_req_client_ip(req);
    char ip[INET6_ADDRSTRLEN] = "";
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_proxy_headers && !found; i++) {
        const char *v = http_req_header(req, s->proxy_headers[i]);
        found = v && pick_ip(v, s->leftmost, ip, sizeof(ip));
    }
    pthread_mutex_unlock(&s->lock);
    return found ? arena_strdup(http_req_arena(req), ip) : http_req_client_ip(req);
}

/* The settings as a client sees them: smtp.password is never sent. RETURNS a new value. */
static json_t *redacted(struct api_settings *s)
{
    pthread_mutex_lock(&s->lock);
    json_t *out = json_deep_copy(s->cur);
    pthread_mutex_unlock(&s->lock);
    json_object_del(json_object_get(out, "smtp"), "password");
    json_object_del(json_object_get(json_object_get(out, "backups"), "s3"), "secret");
    return out;
}

static void get_settings(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    http_reply_json(req, 200, redacted(env->settings));
}

static void patch_settings(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    struct api_settings *s = env->settings;
    if (!env->store) {
        http_reply_error(req, 503, "The data store is not available.", NULL);
        return;
    }
    json_t *body = http_req_json(req, true);
    if (!body)
        return;
    /* a null accessRule is the empty one: superusers only */
    json_t *an = json_object_get(body, "analytics");
    if (json_is_object(an) && json_is_null(json_object_get(an, "accessRule")))
        json_object_set_new(an, "accessRule", json_string(""));
    pthread_mutex_lock(&s->patch_lock);
    pthread_mutex_lock(&s->lock);
    json_t *next = json_deep_copy(s->cur);
    pthread_mutex_unlock(&s->lock);
    json_t *errors = json_object();
    int rc = 0;
    if (merge(next, body) != 0) {
        http_reply_error(req, 400, "An error occurred while loading the submitted data.", NULL);
        goto out;
    }
    validate(next, errors);
    char msg[200];
    const char *rule = sget(next, "analytics", "accessRule");
    if (api__analytics_rule_check(req, env, rule, msg, sizeof(msg)) != 0)
        verr(errors, "analytics", "accessRule", "validation_invalid_rule", msg);
    if (env->gov &&
        gov_check_relations(env->gov,
                            json_object_get(json_object_get(next, "persons"), "deleteRelations"),
                            msg, sizeof(msg)) != 0)
        verr(errors, "persons", "deleteRelations", "validation_invalid_value", msg);
    if (json_object_size(errors)) {
        http_reply_error(req, 400, "An error occurred while submitting the form.",
                         json_incref(errors));
        goto out;
    }
    rc = store_param_put(env->store, PARAM_ID, next);
    if (rc) {
        xlog_error("cannot store the settings: %s", store_errmsg(env->store));
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
        goto out;
    }
    pthread_mutex_lock(&s->lock);
    json_decref(s->cur);
    s->cur = json_incref(next);
    apply(env, s);
    pthread_mutex_unlock(&s->lock);
    if (json_object_get(body, "smtp"))
        mail_kick(env->mail); /* waiting mail goes out with the new settings now */
    if (env->cfg && cfg_given(env->cfg, "ratelimit") && json_object_get(body, "rateLimits"))
        xlog_warn("settings.rateLimits stored; --ratelimit overrides it until it is removed");
    http_reply_json(req, 200, redacted(s));
out:
    pthread_mutex_unlock(&s->patch_lock);
    json_decref(errors);
    json_decref(next);
}

void api__register_settings(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/settings", get_settings, env);
    http_route(r, "PATCH", "/api/settings", patch_settings, env);
}
