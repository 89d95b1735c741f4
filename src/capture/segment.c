/* segment.c - one Segment message (a single-call body or a batch item) to the event model,
 * validated per the Segment spec. */
#include <string.h>

#include "capture/capture_int.h"

static int type_from_string(const char *s, size_t len)
{
    for (int t = CAPTURE_TRACK; t <= CAPTURE_ALIAS; t++) {
        const char *name = capture_type_name((enum capture_type)t);
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return t;
    }
    return -1;
}

/* Segment's page and screen calls carry name and category beside the properties; the
 * warehouse has no column for them, so they go into properties unless already there. */
static void keep_page_fields(json_t *item, struct capture__msg *m)
{
    static const char *const keys[] = {"name", "category"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        json_t *v = json_object_get(item, keys[i]);
        if (!json_is_string(v))
            continue;
        if (!m->properties) {
            m->properties = json_object();
            json_object_set_new(item, "properties", m->properties); /* the tree owns it */
        }
        if (!json_object_get(m->properties, keys[i]))
            json_object_set(m->properties, keys[i], v);
    }
}

/* Segment fills context.ip from the request for client-side events only: those sent by
 * analytics.js, or asking for it with context.direct = true. */
static void client_ip(struct capture__ctx *cx, json_t *item, struct capture__msg *m)
{
    const char *ip = cx->in->client_ip;
    if (!ip || !*ip || (m->context && json_object_get(m->context, "ip")))
        return;
    json_t *lib = json_object_get(json_object_get(m->context, "library"), "name");
    bool browser = json_is_string(lib) && strcmp(json_string_value(lib), "analytics.js") == 0;
    if (!browser && !json_is_true(json_object_get(m->context, "direct")))
        return;
    if (m->context == cx->env_context) { /* shared with other items: give this one its own */
        m->context = json_deep_copy(cx->env_context);
        json_object_set_new(item, "context", m->context);
    }
    json_object_set_new(m->context, "ip", json_string(ip));
}

int capture__segment_item(struct capture__ctx *cx, json_t *item, int type_from_path,
                          struct capture__msg *m)
{
    memset(m, 0, sizeof(*m));
    int type = type_from_path;
    if (type < 0) {
        json_t *t = json_object_get(item, "type");
        if (!t || json_is_null(t))
            return capture__fail(cx, 400, "type: required");
        if (!json_is_string(t))
            return capture__fail(cx, 400, "type: must be a string");
        type = type_from_string(json_string_value(t), json_string_length(t));
        if (type < 0)
            return capture__fail(cx, 400, "type: unknown type \"%.40s\"", json_string_value(t));
    }
    m->type = (enum capture_type)type;

    if (capture__get_id(cx, item, "userId", &m->user_id) ||
        capture__get_id(cx, item, "anonymousId", &m->anonymous_id))
        return ERR_INVALID;
    if (!m->user_id.ptr && !m->anonymous_id.ptr)
        return capture__fail(cx, 400, "userId: required (or anonymousId)");

    switch (m->type) {
    case CAPTURE_TRACK: {
        json_t *ev = json_object_get(item, "event");
        if (!ev || json_is_null(ev))
            return capture__fail(cx, 400, "event: required for track");
        if (!json_is_string(ev))
            return capture__fail(cx, 400, "event: must be a string");
        m->event = capture__json_str(ev);
        if (!m->event.ptr)
            return capture__fail(cx, 400, "event: required for track");
        break;
    }
    case CAPTURE_GROUP:
        if (capture__get_id(cx, item, "groupId", &m->group_id))
            return ERR_INVALID;
        if (!m->group_id.ptr)
            return capture__fail(cx, 400, "groupId: required for group");
        break;
    case CAPTURE_ALIAS:
        if (capture__get_id(cx, item, "previousId", &m->previous_id))
            return ERR_INVALID;
        if (!m->previous_id.ptr)
            return capture__fail(cx, 400, "previousId: required for alias");
        break;
    default: break;
    }

    if (capture__get_object(cx, item, "properties", &m->properties) ||
        capture__get_object(cx, item, "traits", &m->traits) ||
        capture__get_object(cx, item, "context", &m->context))
        return ERR_INVALID;
    if (m->type == CAPTURE_PAGE || m->type == CAPTURE_SCREEN)
        keep_page_fields(item, m);

    if (capture__message_id(cx, json_object_get(item, "messageId"), "messageId", &m->message_id))
        return ERR_INVALID;

    json_t *wk = json_object_get(item, "writeKey");
    if (wk && !json_is_null(wk) && !json_is_string(wk))
        return capture__fail(cx, 400, "writeKey: must be a string");
    m->write_key = capture__json_str(wk);
    if (!m->write_key.ptr)
        m->write_key = cx->env_write_key;
    if (!m->write_key.ptr)
        return capture__fail(cx, 401,
                             "writeKey: missing (send it by HTTP Basic auth or in the "
                             "body)");

    /* Times: the client's timestamp becomes originalTimestamp; sentAt from the message, else
     * the batch envelope, else the query. */
    bool has_ts = false;
    int64_t ts = 0;
    if (capture__get_time(cx, item, "originalTimestamp", &m->original_us, &m->has_original) ||
        capture__get_time(cx, item, "timestamp", &ts, &has_ts) ||
        capture__get_time(cx, item, "sentAt", &m->sent_us, &m->has_sent))
        return ERR_INVALID;
    capture__segment_times(cx, m, has_ts, ts);

    if (cx->env_context) {
        if (m->context)
            json_object_update_missing(m->context, cx->env_context);
        else
            m->context = cx->env_context;
    }
    client_ip(cx, item, m);
    capture__context_tandem(cx, item, m);
    return 0;
}
