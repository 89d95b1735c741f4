/* cfg.c - the option table and its parser. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "core/cfg.h"
#include "core/str.h"

#define STR_OPT(field)                                                                             \
    CFG_STRING, offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field), 0, 0
/* a string option whose value may be empty (see struct cfg_opt.min) */
#define STR_OPT_OR_EMPTY(field)                                                                    \
    CFG_STRING, offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field), 1, 0
#define BOOL_OPT(field) CFG_BOOL, offsetof(struct cfg, field), sizeof(bool), 0, 1
#define NUM_OPT(type, field, lo, hi) type, offsetof(struct cfg, field), sizeof(int64_t), lo, hi

const struct cfg_opt cfg_opts[] = {
    {"http", "TANDEM_HTTP", "127.0.0.1:8090",
     "address and port to listen on (port 0 picks a free port)", STR_OPT(http)},
    {"dir", "TANDEM_DIR", "./tandem_data", "data directory (created with mode 0700)", STR_OPT(dir)},
    {"log-level", "TANDEM_LOG_LEVEL", "info", "debug, info, warn, error or off",
     STR_OPT(log_level)},
    {"max-body", "TANDEM_MAX_BODY", "32MiB", "largest request body accepted",
     NUM_OPT(CFG_SIZE, max_body, 1, INT64_C(1) << 40)},
    {"idle-timeout", "TANDEM_IDLE_TIMEOUT", "60s", "close a connection idle or stalled this long",
     NUM_OPT(CFG_DURATION, idle_timeout, 1, 86400)},
    {"request-timeout", "TANDEM_REQUEST_TIMEOUT", "60s",
     "close a connection whose request (headers and body) takes longer than this to arrive, "
     "counted from its first byte (0: no limit)",
     NUM_OPT(CFG_DURATION, request_timeout, 0, 86400)},
    {"max-connections", "TANDEM_MAX_CONNECTIONS", "0",
     "open HTTP connections at most (0: as many as the open-file limit leaves room for)",
     NUM_OPT(CFG_INT, max_conns, 0, 1 << 20)},
    {"max-connections-per-ip", "TANDEM_MAX_CONNECTIONS_PER_IP", "256",
     "open HTTP connections from one client address at most; more are closed at once (0: no "
     "limit)",
     NUM_OPT(CFG_INT, max_conns_per_ip, 0, 1 << 20)},
    {"threads", "TANDEM_THREADS", "0", "HTTP threads (0: one per core)",
     NUM_OPT(CFG_INT, threads, 0, 256)},
    {"ratelimit", "TANDEM_RATELIMIT", "off",
     "per-client rate limits: off, default (PocketBase's rules) or CLASS=MAX/WINDOW,... "
     "with classes auth, create, batch, default; when given, it overrides settings.rateLimits",
     STR_OPT(ratelimit)},
    {"origins", "TANDEM_ORIGINS", "*",
     "CORS allowed origins: * (any) or a comma-separated list such as https://app.example.com",
     STR_OPT(origins)},
    {"fsync", "TANDEM_FSYNC", "batch",
     "when the event log syncs: always, batch (group commit every few ms) or never",
     STR_OPT(fsync)},
    {"log", "TANDEM_LOG", "local",
     "event log backend: local (segment files under --dir) or kafka (--kafka-brokers)",
     STR_OPT(log_backend)},
    {"role", "TANDEM_ROLE", "all",
     "all (one node does everything), primary (with --log kafka: copies the Kafka topics into "
     "the warehouse, serves records, realtime and insights) or capture (with --log kafka: only "
     "appends captured events to Kafka)",
     STR_OPT(role)},
    {"kafka-brokers", "TANDEM_KAFKA_BROKERS", "",
     "Kafka bootstrap servers, host:port,... (with --log kafka)", STR_OPT_OR_EMPTY(kafka_brokers)},
    {"kafka-topic-prefix", "TANDEM_KAFKA_TOPIC_PREFIX", "tandem-",
     "prefix of tandem's Kafka topic names (<prefix>events, <prefix>changes)",
     STR_OPT_OR_EMPTY(kafka_topic_prefix)},
    {"kafka-config", "TANDEM_KAFKA_CONFIG", "",
     "file of librdkafka key=value settings passed to the Kafka client (security.protocol, "
     "sasl.*, ssl.*, ...)",
     STR_OPT_OR_EMPTY(kafka_config)},
    {"log-segment-size", "TANDEM_LOG_SEGMENT_SIZE", "128MiB", "event log segment size",
     NUM_OPT(CFG_SIZE, log_segment_size, 1 << 20, INT64_C(1) << 40)},
    {"log-retention-size", "TANDEM_LOG_RETENTION_SIZE", "0",
     "keep at most this much of each topic (0: no limit); consumers hold back deletion",
     NUM_OPT(CFG_SIZE, log_retention_size, 0, INT64_C(1) << 50)},
    {"log-retention-age", "TANDEM_LOG_RETENTION_AGE", "0",
     "delete log segments older than this (0: never)",
     NUM_OPT(CFG_DURATION, log_retention_age, 0, INT64_C(10) * 365 * 86400)},
    {"dedup-window", "TANDEM_DEDUP_WINDOW", "24h",
     "captured events with a messageId seen this recently are dropped as retries",
     NUM_OPT(CFG_DURATION, dedup_window, 1, 30 * 86400)},
    {"dedup-snapshot", "TANDEM_DEDUP_SNAPSHOT", "60s",
     "write the dedup set to the data directory this often when events came (0: only at stop)",
     NUM_OPT(CFG_DURATION, dedup_snapshot, 0, 86400)},
    {"warehouse-memory", "TANDEM_WAREHOUSE_MEMORY", "2GiB", "memory limit of the DuckDB warehouse",
     NUM_OPT(CFG_SIZE, warehouse_memory, 64 << 20, INT64_C(1) << 42)},
    {"warehouse-threads", "TANDEM_WAREHOUSE_THREADS", "0",
     "warehouse query threads (0: one per core)", NUM_OPT(CFG_INT, warehouse_threads, 0, 256)},
    {"ml-max-bytes", "TANDEM_ML_MAX_BYTES", "1GiB",
     "training data one ML training may hold in memory (features and labels as floats)",
     NUM_OPT(CFG_SIZE, ml_max_bytes, 1 << 20, INT64_C(1) << 42)},
    {"ml-threads", "TANDEM_ML_THREADS", "0", "XGBoost threads of a training (0: one per core)",
     NUM_OPT(CFG_INT, ml_threads, 0, 256)},
    {"sql-timeout", "TANDEM_SQL_TIMEOUT", "30s", "statement timeout of the SQL API",
     NUM_OPT(CFG_DURATION, sql_timeout, 1, 3600)},
    {"sql-max-rows", "TANDEM_SQL_MAX_ROWS", "10000", "rows the SQL API returns at most",
     NUM_OPT(CFG_INT, sql_max_rows, 1, 10000000)},
    {"records-timeout", "TANDEM_RECORDS_TIMEOUT", "5s",
     "store work one record or auth request may take; past it the request is answered 400",
     NUM_OPT(CFG_DURATION, records_timeout, 1, 3600)},
    {"records-max-body", "TANDEM_RECORDS_MAX_BODY", "8MiB",
     "largest body of a record or auth request (413 past it; --max-body still applies)",
     NUM_OPT(CFG_SIZE, records_max_body, 1024, INT64_C(1) << 40)},
    {"records-max-keys", "TANDEM_RECORDS_MAX_KEYS", "1000",
     "most top-level keys (form fields) in a record or auth request body (400 past it)",
     NUM_OPT(CFG_INT, records_max_keys, 1, 10000000)},
    {"records-max-expand", "TANDEM_RECORDS_MAX_EXPAND", "8MiB",
     "most bytes of expanded records in one response (400 past it)",
     NUM_OPT(CFG_SIZE, records_max_expand, 1024, INT64_C(1) << 40)},
    {"realtime-queue", "TANDEM_REALTIME_QUEUE", "256KiB",
     "output a realtime client may fall behind by before it is disconnected",
     NUM_OPT(CFG_SIZE, realtime_queue, 1024, INT64_C(1) << 30)},
    {"realtime-keepalive", "TANDEM_REALTIME_KEEPALIVE", "30s",
     "send an SSE comment to a realtime client quiet this long (0: never)",
     NUM_OPT(CFG_DURATION, realtime_keepalive, 0, 86400)},
    {"realtime-max-clients", "TANDEM_REALTIME_MAX_CLIENTS", "100000",
     "realtime (SSE) clients connected at once (0: no limit)",
     NUM_OPT(CFG_INT, realtime_max_clients, 0, 10000000)},
    {"public", "TANDEM_PUBLIC", "auto",
     "directory of static files served at / (auto: <dir>/../tandem_public if it exists; off or "
     "an empty value: none)",
     STR_OPT_OR_EMPTY(public_dir)},
    {"index-fallback", "TANDEM_INDEX_FALLBACK", "true",
     "serve the public directory's index.html for a missing static path (single-page apps)",
     BOOL_OPT(index_fallback)},
    {"smtp-ca-file", "TANDEM_SMTP_CA_FILE", "",
     "PEM file of the certificate authorities SMTP servers' certificates are checked against, "
     "instead of the system's (empty: the system's)",
     STR_OPT_OR_EMPTY(smtp_ca_file)},
    {NULL, NULL, NULL, NULL, CFG_STRING, 0, 0, 0, 0},
};

static int parse_number(const char *text, int64_t *value_out, const char **unit_out)
{
    const char *p = text;
    if (!isdigit((unsigned char)*p))
        return ERR_INVALID;
    int64_t v = 0;
    while (isdigit((unsigned char)*p)) {
        if (v > (INT64_MAX - 9) / 10)
            return ERR_INVALID;
        v = v * 10 + (*p++ - '0');
    }
    *value_out = v;
    *unit_out = p;
    return 0;
}

static int parse_size(const char *text, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1024},
        {"kb", 1024},
        {"kib", 1024},
        {"m", 1024 * 1024},
        {"mb", 1024 * 1024},
        {"mib", 1024 * 1024},
        {"g", INT64_C(1) << 30},
        {"gb", INT64_C(1) << 30},
        {"gib", INT64_C(1) << 30},
    };
    int64_t v;
    const char *unit;
    if (parse_number(text, &v, &unit) != 0)
        return ERR_INVALID;
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcasecmp(unit, units[i].unit) == 0) {
            if (v > INT64_MAX / units[i].mult)
                return ERR_INVALID;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return ERR_INVALID;
}

/* 1 or 0 for the words a boolean option takes, -1 for anything else. */
static int parse_bool(const char *text)
{
    static const char *const yes[] = {"true", "on", "yes", "1"};
    static const char *const no[] = {"false", "off", "no", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int parse_duration(const char *text, int64_t *out)
{
    int64_t v;
    const char *unit;
    if (parse_number(text, &v, &unit) != 0)
        return ERR_INVALID;
    int64_t mult;
    if (!*unit || strcmp(unit, "s") == 0)
        mult = 1;
    else if (strcmp(unit, "m") == 0)
        mult = 60;
    else if (strcmp(unit, "h") == 0)
        mult = 3600;
    else
        return ERR_INVALID;
    if (v > INT64_MAX / mult)
        return ERR_INVALID;
    *out = v * mult;
    return 0;
}

int cfg_parse_value(const struct cfg_opt *o, const char *text, struct cfg *c)
{
    char *field = (char *)c + o->offset;
    int64_t v = 0;
    int rc = 0;
    switch (o->type) {
    case CFG_STRING:
        if ((!*text && o->min != 1) || strlen(text) >= o->size)
            return ERR_INVALID;
        memcpy(field, text, strlen(text) + 1);
        return 0;
    case CFG_SIZE: rc = parse_size(text, &v); break;
    case CFG_DURATION: rc = parse_duration(text, &v); break;
    case CFG_BOOL: {
        int b = parse_bool(text);
        if (b < 0)
            return ERR_INVALID;
        *(bool *)field = b == 1;
        return 0;
    }
    case CFG_INT: {
        const char *unit;
        rc = parse_number(text, &v, &unit);
        if (rc == 0 && *unit)
            rc = ERR_INVALID;
        break;
    }
    }
    if (rc != 0 || v < o->min || v > o->max)
        return ERR_INVALID;
    memcpy(field, &v, sizeof(v));
    return 0;
}

static const char *type_hint(enum cfg_type t)
{
    switch (t) {
    case CFG_SIZE: return "a size such as 32MiB";
    case CFG_DURATION: return "a duration such as 30s, 5m or 1h";
    case CFG_INT: return "a whole number";
    case CFG_BOOL: return "true or false";
    case CFG_STRING: break;
    }
    return "a non-empty value";
}

static const struct cfg_opt *find_opt(const char *name, size_t len)
{
    for (const struct cfg_opt *o = cfg_opts; o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static int apply(const struct cfg_opt *o, const char *value, const char *from, struct cfg *c,
                 char *err, size_t err_len)
{
    if (cfg_parse_value(o, value, c) == 0) {
        c->given |= UINT64_C(1) << (o - cfg_opts);
        return 0;
    }
    snprintf(err, err_len, "invalid value '%s' for %s%s (expected %s)", value, from ? from : "--",
             from ? "" : o->name, type_hint(o->type));
    return ERR_INVALID;
}

int cfg_load(struct cfg *c, int argc, char **argv, char **envp, char *err, size_t err_len)
{
    memset(c, 0, sizeof(*c));
    _Static_assert(sizeof(cfg_opts) / sizeof(cfg_opts[0]) <= 64, "struct cfg.given has 64 bits");
    for (const struct cfg_opt *o = cfg_opts; o->name; o++)
        if (cfg_parse_value(o, o->def, c) != 0)
            PANIC("default of --%s does not parse", o->name);
    c->given = 0;

    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "TANDEM_", 7) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        for (const struct cfg_opt *o = cfg_opts; o->name; o++) {
            if (strlen(o->env) == (size_t)(eq - *e) && memcmp(o->env, *e, eq - *e) == 0) {
                if (apply(o, eq + 1, o->env, c, err, err_len) != 0)
                    return ERR_INVALID;
            }
        }
    }

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            snprintf(err, err_len, "unexpected argument '%s'", a);
            return ERR_INVALID;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct cfg_opt *o = find_opt(name, name_len);
        if (!o) {
            snprintf(err, err_len, "unknown option --%.*s", (int)name_len, name);
            return ERR_INVALID;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == CFG_BOOL && (i + 1 == argc || parse_bool(argv[i + 1]) < 0)) {
            value = "true"; /* a bare flag */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, err_len, "option --%s needs a value", o->name);
            return ERR_INVALID;
        }
        if (apply(o, value, NULL, c, err, err_len) != 0)
            return ERR_INVALID;
    }
    return 0;
}

bool cfg_given(const struct cfg *c, const char *name)
{
    const struct cfg_opt *o = find_opt(name, strlen(name));
    return o && (c->given >> (o - cfg_opts) & 1);
}

void cfg_print_help(FILE *out)
{
    fprintf(out, "options (each also from its environment variable):\n");
    for (const struct cfg_opt *o = cfg_opts; o->name; o++) {
        fprintf(out, "  --%-14s %-20s %s (default %s)\n", o->name, o->env, o->help, o->def);
    }
}
