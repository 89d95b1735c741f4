/* fast.c - Segment requests without a jansson tree.
 *
 * The plain case (what the SDKs send: a batch of valid messages, ids without escapes, no
 * object the server must change) is read from the scanner's token tape, and properties,
 * traits and context go into the record as the client's own JSON text instead of being
 * rebuilt and dumped. Everything else returns CAPTURE__SLOW and capture_parse() starts over
 * with jansson (segment.c), so every error, message and rewrite has one implementation. The
 * checks here mirror segment.c's: a request this path accepts must give the same events
 * there, up to the spelling of numbers and escapes inside the copied objects. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "capture/capture_int.h"

/* The fields of one message that the record is made from (token indexes, 0 = absent). */
struct fields {
    size_t type, user_id, anonymous_id, event, group_id, previous_id, properties, traits, context,
        message_id, write_key, original_ts, timestamp, sent_at, name, category;
};

#define FIELD(name, member)                                                                        \
    {                                                                                              \
        name, sizeof(name) - 1, offsetof(struct fields, member)                                    \
    }
static const struct {
    const char *key;
    size_t len;
    size_t off;
} field_keys[] = {
    FIELD("type", type),
    FIELD("userId", user_id),
    FIELD("anonymousId", anonymous_id),
    FIELD("event", event),
    FIELD("groupId", group_id),
    FIELD("previousId", previous_id),
    FIELD("properties", properties),
    FIELD("traits", traits),
    FIELD("context", context),
    FIELD("messageId", message_id),
    FIELD("writeKey", write_key),
    FIELD("originalTimestamp", original_ts),
    FIELD("timestamp", timestamp),
    FIELD("sentAt", sent_at),
    FIELD("name", name),
    FIELD("category", category),
};

struct fast {
    struct capture__ctx *cx;
    const struct capture__tape *tp;
    const char *s;
};

static const struct capture__tok *tok(const struct fast *f, size_t i)
{
    return &f->tp->toks[i];
}

static bool is_null(const struct fast *f, size_t i)
{
    return i == 0 || tok(f, i)->type == CAPTURE__TOK_NULL;
}

/* The text of an unescaped string token without its quotes: borrowed from the request body,
 * so only for what goes into the record; what the result hands out goes through own(). */
static struct str text(const struct fast *f, size_t i)
{
    const struct capture__tok *t = tok(f, i);
    return (struct str){f->s + t->start + 1, t->len - 2};
}

/* The events hand out ids as C strings: a NUL-terminated copy in the result's arena. */
static struct str own(const struct fast *f, struct str v)
{
    if (!v.ptr)
        return v;
    return (struct str){arena_strndup(&f->cx->st->arena, v.ptr, v.len), v.len};
}

static bool plain_string(const struct fast *f, size_t i)
{
    return tok(f, i)->type == CAPTURE__TOK_STRING && !tok(f, i)->escaped;
}

/* Like capture__get_id: absent, null and "" give ptr NULL. Numbers and escaped strings are
 * left to the slow path. */
static int get_id(const struct fast *f, size_t i, struct str *out)
{
    *out = (struct str){NULL, 0};
    if (is_null(f, i))
        return 0;
    if (!plain_string(f, i))
        return CAPTURE__SLOW;
    if (tok(f, i)->len > 2)
        *out = own(f, text(f, i));
    return 0;
}

static int get_object(const struct fast *f, size_t i, struct str *out)
{
    *out = (struct str){NULL, 0};
    if (is_null(f, i))
        return 0;
    if (tok(f, i)->type != CAPTURE__TOK_OBJECT)
        return CAPTURE__SLOW;
    *out = (struct str){f->s + tok(f, i)->start, tok(f, i)->len};
    return 0;
}

static int get_time(const struct fast *f, size_t i, int64_t *us_out, bool *has_out)
{
    *has_out = false;
    *us_out = 0;
    if (is_null(f, i))
        return 0;
    if (!plain_string(f, i))
        return CAPTURE__SLOW;
    struct str t = text(f, i);
    if (time_parse(t.ptr, t.len, us_out) < 0)
        return CAPTURE__SLOW;
    *has_out = true;
    return 0;
}

static void read_fields(const struct fast *f, size_t obj, struct fields *fl)
{
    memset(fl, 0, sizeof(*fl));
    for (size_t k = obj + 1; k < tok(f, obj)->next; k = tok(f, k + 1)->next) {
        struct str key = text(f, k);
        for (size_t j = 0; j < ARRAY_LEN(field_keys); j++) {
            if (field_keys[j].len == key.len && memcmp(field_keys[j].key, key.ptr, key.len) == 0) {
                *(size_t *)((char *)fl + field_keys[j].off) = k + 1;
                break;
            }
        }
    }
}

/* The context needs no change from the server (segment.c's client_ip and
 * capture__context_tandem would leave it as it is). */
static bool context_untouched(const struct fast *f, size_t ctx)
{
    const struct capture_input *in = f->cx->in;
    if (in->verified_user_id && *in->verified_user_id)
        return false;
    if (ctx == 0 || tok(f, ctx)->type != CAPTURE__TOK_OBJECT)
        return true; /* null or absent: nothing to remove, and no library or direct flag */
    if (capture__tok_get(f->tp, f->s, ctx, "tandem"))
        return false;
    if (!in->client_ip || !*in->client_ip || capture__tok_get(f->tp, f->s, ctx, "ip"))
        return true;
    size_t lib = capture__tok_get(f->tp, f->s, ctx, "library");
    if (lib && tok(f, lib)->type == CAPTURE__TOK_OBJECT) {
        size_t name = capture__tok_get(f->tp, f->s, lib, "name");
        if (name && tok(f, name)->type == CAPTURE__TOK_STRING) {
            if (tok(f, name)->escaped)
                return false;
            if (str_eq(text(f, name), STR_LIT("analytics.js")))
                return false;
        }
    }
    size_t direct = capture__tok_get(f->tp, f->s, ctx, "direct");
    return !(direct && tok(f, direct)->type == CAPTURE__TOK_TRUE);
}

static int fast_item(const struct fast *f, size_t obj, int type_from_path, struct capture__msg *m)
{
    struct capture__ctx *cx = f->cx;
    memset(m, 0, sizeof(*m));
    if (tok(f, obj)->type != CAPTURE__TOK_OBJECT)
        return CAPTURE__SLOW;
    struct fields fl;
    read_fields(f, obj, &fl);

    int type = type_from_path;
    if (type < 0) {
        if (is_null(f, fl.type) || !plain_string(f, fl.type))
            return CAPTURE__SLOW;
        struct str t = text(f, fl.type);
        for (int k = CAPTURE_TRACK; k <= CAPTURE_ALIAS; k++)
            if (str_eq_cstr(t, capture_type_name((enum capture_type)k)))
                type = k;
        if (type < 0)
            return CAPTURE__SLOW;
    }
    m->type = (enum capture_type)type;

    if (get_id(f, fl.user_id, &m->user_id) || get_id(f, fl.anonymous_id, &m->anonymous_id))
        return CAPTURE__SLOW;
    if (!m->user_id.ptr && !m->anonymous_id.ptr)
        return CAPTURE__SLOW;
    switch (m->type) {
    case CAPTURE_TRACK:
        if (is_null(f, fl.event) || !plain_string(f, fl.event) || tok(f, fl.event)->len == 2)
            return CAPTURE__SLOW;
        m->event = text(f, fl.event);
        break;
    case CAPTURE_GROUP:
        if (get_id(f, fl.group_id, &m->group_id) || !m->group_id.ptr)
            return CAPTURE__SLOW;
        break;
    case CAPTURE_ALIAS:
        if (get_id(f, fl.previous_id, &m->previous_id) || !m->previous_id.ptr)
            return CAPTURE__SLOW;
        break;
    default: break;
    }

    if (get_object(f, fl.properties, &m->raw_properties) ||
        get_object(f, fl.traits, &m->raw_traits) || get_object(f, fl.context, &m->raw_context))
        return CAPTURE__SLOW;
    /* page and screen names go into properties: the slow path edits the object */
    if ((m->type == CAPTURE_PAGE || m->type == CAPTURE_SCREEN) &&
        ((fl.name && tok(f, fl.name)->type == CAPTURE__TOK_STRING) ||
         (fl.category && tok(f, fl.category)->type == CAPTURE__TOK_STRING)))
        return CAPTURE__SLOW;
    if (!context_untouched(f, fl.context))
        return CAPTURE__SLOW;
    m->raw_spaced = f->tp->spaced;

    if (!is_null(f, fl.message_id)) {
        if (!plain_string(f, fl.message_id) ||
            tok(f, fl.message_id)->len - 2 > CAPTURE_MAX_MESSAGE_ID)
            return CAPTURE__SLOW;
        if (tok(f, fl.message_id)->len > 2)
            m->message_id = own(f, text(f, fl.message_id));
    }
    if (!m->message_id.ptr && capture__message_id(cx, NULL, "messageId", &m->message_id))
        return CAPTURE__SLOW;

    if (get_id(f, fl.write_key, &m->write_key))
        return CAPTURE__SLOW;
    if (!m->write_key.ptr)
        m->write_key = cx->env_write_key;
    if (!m->write_key.ptr)
        return CAPTURE__SLOW;

    bool has_ts;
    int64_t ts;
    if (get_time(f, fl.original_ts, &m->original_us, &m->has_original) ||
        get_time(f, fl.timestamp, &ts, &has_ts) ||
        get_time(f, fl.sent_at, &m->sent_us, &m->has_sent))
        return CAPTURE__SLOW;
    capture__segment_times(cx, m, has_ts, ts);
    return 0;
}

/* The batch envelope: writeKey and sentAt; a batch-level context goes the slow way (it is
 * merged into every item). */
static int fast_envelope(const struct fast *f, size_t *items_out)
{
    struct capture__ctx *cx = f->cx;
    if (tok(f, 0)->type != CAPTURE__TOK_OBJECT)
        return CAPTURE__SLOW;
    size_t batch = capture__tok_get(f->tp, f->s, 0, "batch");
    if (!batch || tok(f, batch)->type != CAPTURE__TOK_ARRAY)
        return CAPTURE__SLOW;
    if (!is_null(f, capture__tok_get(f->tp, f->s, 0, "context")))
        return CAPTURE__SLOW;
    struct str key;
    if (get_id(f, capture__tok_get(f->tp, f->s, 0, "writeKey"), &key))
        return CAPTURE__SLOW;
    if (key.ptr)
        cx->env_write_key = key;
    int64_t sent;
    bool has_sent;
    if (get_time(f, capture__tok_get(f->tp, f->s, 0, "sentAt"), &sent, &has_sent))
        return CAPTURE__SLOW;
    if (has_sent) {
        cx->env_sent_us = sent;
        cx->env_has_sent = true;
    }
    *items_out = batch;
    return 0;
}

int capture__segment_fast(struct capture__ctx *cx, const char *body, size_t len, int path_type)
{
    struct capture__state *st = cx->st;
    struct capture_result *r = cx->res;
    if (capture__scan(body, len, &st->tape) != 0)
        return CAPTURE__SLOW;
    struct fast f = {.cx = cx, .tp = &st->tape, .s = body};

    size_t first, n;
    if (path_type >= 0) {
        if (tok(&f, 0)->type != CAPTURE__TOK_OBJECT)
            return CAPTURE__SLOW;
        first = 0;
        n = 1;
    } else {
        size_t items;
        if (fast_envelope(&f, &items))
            return CAPTURE__SLOW;
        first = items + 1;
        n = 0;
        for (size_t i = first; i < tok(&f, items)->next; i = tok(&f, i)->next)
            n++;
    }
    if (n == 0 || n > cx->lim->max_events)
        return CAPTURE__SLOW;
    size_t max_total = cx->lim->max_body * 4 + n * 1024;

    r->events = arena_zalloc(&st->arena, n * sizeof(*r->events));
    r->write_keys = arena_zalloc(&st->arena, n * sizeof(*r->write_keys));
    st->offsets = arena_alloc(&st->arena, n * sizeof(*st->offsets));
    /* records are the body's bytes plus about 200 of fixed keys and times per event */
    if (buf_try_reserve(&st->records, len + n * 256) < 0)
        return -ENOMEM;

    size_t it = first;
    for (size_t i = 0; i < n; i++, it = tok(&f, it)->next) {
        struct capture__msg m;
        if (fast_item(&f, it, path_type, &m))
            return CAPTURE__SLOW;
        cx->item = path_type >= 0 ? -1 : (long)i;
        int rc = capture__add_event(cx, &m, i, max_total);
        if (rc == -ENOMEM)
            return rc;
        if (rc != 0 || r->status != 0)
            return CAPTURE__SLOW;
    }
    for (size_t i = 0; i < n; i++)
        r->events[i].record = st->records.ptr + st->offsets[i];
    r->n_events = n;
    return 0;
}
