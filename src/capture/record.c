/* record.c - field readers shared by both dialects, message ids, clock-skew correction and
 * the canonical record writer. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "capture/capture_int.h"

/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z */
#define TS_MIN_US (-62167219200LL * 1000000)
#define TS_MAX_US (253402300799LL * 1000000 + 999999)
#define FUTURE_SLACK_US (23LL * 3600 * 1000000)

static void vfail(struct capture__ctx *cx, int status, bool whole, const char *fmt, va_list ap)
{
    struct capture_result *r = cx->res;
    if (r->status != 0)
        return; /* the first problem wins */
    r->status = status;
    int n;
    if (cx->item >= 0)
        n = snprintf(r->message, sizeof(r->message), whole ? "batch[%ld]: " : "batch[%ld].",
                     cx->item);
    else
        n = snprintf(r->message, sizeof(r->message), "%s", whole ? "message: " : "");
    if (n < 0 || (size_t)n >= sizeof(r->message))
        n = 0;
    vsnprintf(r->message + n, sizeof(r->message) - (size_t)n, fmt, ap);
}

int capture__fail(struct capture__ctx *cx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(cx, status, false, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

int capture__fail_item(struct capture__ctx *cx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(cx, status, true, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

struct str capture__json_str(json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0)
        return (struct str){NULL, 0};
    return (struct str){json_string_value(v), json_string_length(v)};
}

int capture__get_id(struct capture__ctx *cx, json_t *obj, const char *key, struct str *out)
{
    json_t *v = json_object_get(obj, key);
    *out = (struct str){NULL, 0};
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        *out = capture__json_str(v);
        return 0;
    }
    if (json_is_integer(v)) { /* numeric ids are kept as their decimal text */
        char *s = arena_printf(&cx->st->arena, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = (struct str){s, strlen(s)};
        return 0;
    }
    return capture__fail(cx, 400, "%s: must be a string", key);
}

int capture__get_object(struct capture__ctx *cx, json_t *obj, const char *key, json_t **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return capture__fail(cx, 400, "%s: must be an object", key);
    *out = v;
    return 0;
}

int capture__get_time(struct capture__ctx *cx, json_t *obj, const char *key, int64_t *us_out,
                      bool *has_out)
{
    json_t *v = json_object_get(obj, key);
    *has_out = false;
    *us_out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || time_parse(json_string_value(v), json_string_length(v), us_out) < 0)
        return capture__fail(cx, 400, "%s: must be an ISO 8601 date", key);
    *has_out = true;
    return 0;
}

static const char hex_digits[] = "0123456789abcdef";

/* A UUID (version 4 layout) from the request's random seed and a counter: unique within the
 * request by the counter, across requests by the 96 random bits of the seed. */
static char *assign_id(struct capture__state *st)
{
    if (!st->seeded) {
        rand_bytes(st->id_seed, sizeof(st->id_seed));
        st->seeded = true;
    }
    unsigned char b[16];
    memcpy(b, st->id_seed, sizeof(b));
    uint32_t n = st->n_assigned++;
    b[12] ^= (unsigned char)(n >> 24);
    b[13] ^= (unsigned char)(n >> 16);
    b[14] ^= (unsigned char)(n >> 8);
    b[15] ^= (unsigned char)n;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *s = arena_alloc(&st->arena, 37);
    char *p = s;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex_digits[b[i] >> 4];
        *p++ = hex_digits[b[i] & 15];
    }
    *p = '\0';
    return s;
}

int capture__message_id(struct capture__ctx *cx, json_t *v, const char *field, struct str *out)
{
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return capture__fail(cx, 400, "%s: must be a string", field);
        size_t len = json_string_length(v);
        if (len > CAPTURE_MAX_MESSAGE_ID)
            return capture__fail(cx, 400, "%s: longer than %d characters", field,
                                 CAPTURE_MAX_MESSAGE_ID);
        if (len > 0) {
            *out = (struct str){json_string_value(v), len};
            return 0;
        }
    }
    char *id = assign_id(cx->st);
    *out = (struct str){id, 36};
    return 0;
}

int64_t capture__skew_correct(int64_t received, bool has_original, int64_t original, bool has_sent,
                              int64_t sent)
{
    int64_t ts;
    if (has_original && has_sent)
        ts = received - (sent - original); /* all within +-2^58: no overflow */
    else if (has_original)
        ts = original;
    else
        ts = received;
    if (ts > received + FUTURE_SLACK_US)
        ts = received;
    if (ts < TS_MIN_US)
        ts = TS_MIN_US;
    if (ts > TS_MAX_US)
        ts = TS_MAX_US;
    return ts;
}

void capture__segment_times(const struct capture__ctx *cx, struct capture__msg *m, bool has_ts,
                            int64_t ts)
{
    if (!m->has_original && has_ts) {
        m->original_us = ts;
        m->has_original = true;
    }
    if (!m->has_sent && cx->env_has_sent) {
        m->sent_us = cx->env_sent_us;
        m->has_sent = true;
    }
    m->timestamp_us = capture__skew_correct(cx->in->received_us, m->has_original, m->original_us,
                                            m->has_sent, m->sent_us);
}

void capture__context_tandem(struct capture__ctx *cx, json_t *item, struct capture__msg *m)
{
    if (m->context)
        json_object_del(m->context, "tandem"); /* only the server may say who is verified */
    const char *uid = cx->in->verified_user_id;
    if (!uid || !*uid)
        return;
    if (!m->context) {
        m->context = json_object();
        json_object_set_new(item, "context", m->context); /* the tree owns it */
    }
    json_object_set_new(m->context, "tandem", json_pack("{s:s}", "verifiedUserId", uid));
}

/* ---- writer ---- */

static void put_lit(struct buf *b, const char *s, size_t len)
{
    buf_append(b, s, len);
}
#define PUT(b, lit) put_lit((b), (lit), sizeof(lit) - 1)

/* JSON string body; the input is valid UTF-8 (jansson checked it), so only quotes,
 * backslashes and control characters need escapes. Runs of plain bytes go in one copy. */
static void put_escaped(struct buf *b, const char *s, size_t len)
{
    size_t run = 0, i = 0;
    /* ids are mostly plain: skip eight bytes at a time while none needs an escape */
    const uint64_t ones = 0x0101010101010101ull, high = ones * 0x80;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t q = v ^ (ones * '"'), bs = v ^ (ones * '\\');
        /* flags a byte that is '"', '\\' or below 0x20; bytes >= 0x80 never flag */
        uint64_t m = (((q - ones) & ~q) | ((bs - ones) & ~bs) | ((v - ones * 0x20) & ~v)) & high;
        if (m)
            break;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, s + run, i - run);
        run = i + 1;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex_digits[c >> 4];
            e[5] = hex_digits[c & 15];
            buf_append(b, e, 6);
            continue;
        }
        buf_append(b, e, 2);
    }
    buf_append(b, s + run, len - run);
}

static void put_str(struct buf *b, struct str s)
{
    if (!s.ptr) {
        PUT(b, "null");
        return;
    }
    buf_putc(b, '"');
    put_escaped(b, s.ptr, s.len);
    buf_putc(b, '"');
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" for a time inside years 0000..9999, without gmtime/printf
 * (four of these per event). Days to civil date after H. Hinnant's public algorithm. */
static void format_iso(int64_t us, char out[24])
{
    int64_t secs = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        secs--;
        rem += 1000000;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        days--;
        sod += 86400;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int y = (int)(yoe + era * 400 + (m <= 2));
    int ms = (int)(rem / 1000);
    put2(out, y / 100);
    put2(out + 2, y % 100);
    out[4] = '-';
    put2(out + 5, m);
    out[7] = '-';
    put2(out + 8, d);
    out[10] = 'T';
    put2(out + 11, (int)(sod / 3600));
    out[13] = ':';
    put2(out + 14, (int)(sod / 60 % 60));
    out[16] = ':';
    put2(out + 17, (int)(sod % 60));
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    put2(out + 21, ms % 100);
    out[23] = 'Z';
}

static void put_time(struct buf *b, bool has, int64_t us)
{
    if (!has) {
        PUT(b, "null");
        return;
    }
    if (us < TS_MIN_US)
        us = TS_MIN_US;
    if (us > TS_MAX_US)
        us = TS_MAX_US;
    /* the events of a batch share receivedAt and sentAt and often their own times: a
     * record has four times, so the last four formatted are kept */
    static _Thread_local struct {
        int64_t us;
        char text[26];
    } cache[4] = {{INT64_MIN, ""}, {INT64_MIN, ""}, {INT64_MIN, ""}, {INT64_MIN, ""}};
    static _Thread_local unsigned next;
    for (size_t i = 0; i < ARRAY_LEN(cache); i++) {
        if (cache[i].us == us) {
            buf_append(b, cache[i].text, sizeof(cache[i].text));
            return;
        }
    }
    char *t = cache[next].text;
    cache[next].us = us;
    next = (next + 1) % ARRAY_LEN(cache);
    t[0] = '"';
    format_iso(us, t + 1);
    t[25] = '"';
    buf_append(b, t, 26);
}

/* Dumps straight into the buffer's spare room; a second pass only when it did not fit. */
static int put_object(struct buf *b, json_t *obj)
{
    if (!obj || json_object_size(obj) == 0) {
        PUT(b, "{}");
        return 0;
    }
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(17);
    buf_reserve(b, 1024);
    size_t room = b->cap - b->len - 1;
    size_t n = json_dumpb(obj, b->ptr + b->len, room, flags);
    if (n == 0)
        return ERR_INVALID;
    if (n > room) {
        buf_reserve(b, n);
        n = json_dumpb(obj, b->ptr + b->len, b->cap - b->len - 1, flags);
        if (n == 0)
            return ERR_INVALID;
    }
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

/* A raw object from the body: as is, or without the whitespace between tokens. */
static void put_raw(struct buf *b, struct str raw, bool spaced)
{
    if (raw.len == 0) {
        PUT(b, "{}");
        return;
    }
    if (!spaced) {
        buf_append(b, raw.ptr, raw.len);
        return;
    }
    buf_reserve(b, raw.len);
    char *out = b->ptr + b->len;
    bool in_string = false;
    for (size_t i = 0; i < raw.len; i++) {
        char c = raw.ptr[i];
        if (in_string) {
            if (c == '\\')
                *out++ = raw.ptr[i++]; /* the escaped byte follows below */
            else if (c == '"')
                in_string = false;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else if (c == '"') {
            in_string = true;
        }
        *out++ = raw.ptr[i];
    }
    b->len = (size_t)(out - b->ptr);
    b->ptr[b->len] = '\0';
}

static int put_any(struct buf *b, json_t *obj, struct str raw, bool spaced)
{
    if (raw.ptr) {
        put_raw(b, raw, spaced);
        return 0;
    }
    return put_object(b, obj);
}

int capture__write_record(struct buf *b, const struct capture__msg *m, int64_t received_us)
{
    PUT(b, "{\"messageId\":");
    put_str(b, m->message_id);
    PUT(b, ",\"type\":\"");
    buf_puts(b, capture_type_name(m->type));
    PUT(b, "\",\"event\":");
    put_str(b, m->event);
    PUT(b, ",\"userId\":");
    put_str(b, m->user_id);
    PUT(b, ",\"anonymousId\":");
    put_str(b, m->anonymous_id);
    PUT(b, ",\"groupId\":");
    put_str(b, m->group_id);
    PUT(b, ",\"previousId\":");
    put_str(b, m->previous_id);
    PUT(b, ",\"timestamp\":");
    put_time(b, true, m->timestamp_us);
    PUT(b, ",\"originalTimestamp\":");
    put_time(b, m->has_original, m->original_us);
    PUT(b, ",\"sentAt\":");
    put_time(b, m->has_sent, m->sent_us);
    PUT(b, ",\"receivedAt\":");
    put_time(b, true, received_us);
    PUT(b, ",\"properties\":");
    if (put_any(b, m->properties, m->raw_properties, m->raw_spaced) < 0)
        return ERR_INVALID;
    PUT(b, ",\"traits\":");
    if (put_any(b, m->traits, m->raw_traits, m->raw_spaced) < 0)
        return ERR_INVALID;
    PUT(b, ",\"context\":");
    if (put_any(b, m->context, m->raw_context, m->raw_spaced) < 0)
        return ERR_INVALID;
    PUT(b, ",\"source\":");
    put_str(b, m->source);
    buf_putc(b, '}');
    return 0;
}
