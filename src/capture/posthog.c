/* posthog.c - one PostHog capture event to the event model (see docs/capture.md).
 *
 * distinct_id is the user: userId, or anonymousId when PostHog marks the person anonymous.
 * $identify -> identify ($set -> traits, $anon_distinct_id -> anonymousId), $create_alias ->
 * alias (properties.alias -> previousId), $pageview -> page, $screen -> screen,
 * $groupidentify -> group ($group_key -> groupId, $group_set -> traits), anything else ->
 * track. uuid -> messageId. $lib and friends are copied into a Segment-style context. */
#include <stdio.h>
#include <string.h>

#include "capture/capture_int.h"

#define DISTINCT_ID_MAX 200 /* PostHog truncates distinct ids to 200 characters */

static json_t *first_of(json_t *a, const char *ka, json_t *b, const char *kb)
{
    json_t *v = json_object_get(a, ka);
    if (v && !json_is_null(v))
        return v;
    return json_object_get(b, kb);
}

/* PostHog stringifies non-string distinct ids; it truncates at 200 characters. */
static int distinct_id(struct capture__ctx *cx, json_t *item, json_t *props, struct str *out)
{
    json_t *v = json_object_get(item, "distinct_id");
    if (!v || json_is_null(v))
        v = first_of(item, "$distinct_id", props, "distinct_id");
    if (!v || json_is_null(v))
        v = json_object_get(props, "$distinct_id");
    *out = (struct str){NULL, 0};
    if (!v || json_is_null(v))
        return capture__fail(cx, 400, "distinct_id: required");
    if (json_is_string(v)) {
        *out = capture__json_str(v);
    } else if (json_is_integer(v)) {
        char *s = arena_printf(&cx->st->arena, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = (struct str){s, strlen(s)};
    } else if (json_is_real(v)) {
        char *s = arena_printf(&cx->st->arena, "%.17g", json_real_value(v));
        *out = (struct str){s, strlen(s)};
    } else {
        return capture__fail(cx, 400, "distinct_id: must be a string");
    }
    if (!out->ptr)
        return capture__fail(cx, 400, "distinct_id: required");
    if (out->len > DISTINCT_ID_MAX) {
        size_t len = DISTINCT_ID_MAX; /* counted in bytes, cut at a UTF-8 boundary */
        while (len > 0 && ((unsigned char)out->ptr[len] & 0xc0) == 0x80)
            len--;
        out->ptr = arena_strndup(&cx->st->arena, out->ptr, len);
        out->len = len;
    }
    return 0;
}

/* PostHog property -> context path (Segment's context names). */
static const struct {
    const char *prop;
    const char *obj; /* NULL: top level of context */
    const char *key;
} ctx_map[] = {
    {"$lib", "library", "name"},
    {"$lib_version", "library", "version"},
    {"$ip", NULL, "ip"},
    {"$current_url", "page", "url"},
    {"$pathname", "page", "path"},
    {"$referrer", "page", "referrer"},
    {"$title", "page", "title"},
    {"$os", "os", "name"},
    {"$os_version", "os", "version"},
    {"$device_id", "device", "id"},
    {"$device_type", "device", "type"},
    {"$screen_width", "screen", "width"},
    {"$screen_height", "screen", "height"},
    {"$raw_user_agent", NULL, "userAgent"},
    {"$timezone", NULL, "timezone"},
    {"$locale", NULL, "locale"},
};

static json_t *build_context(json_t *item, json_t *props)
{
    json_t *ctx = json_object();
    for (size_t i = 0; i < ARRAY_LEN(ctx_map); i++) {
        json_t *v = json_object_get(props, ctx_map[i].prop);
        if (!v || json_is_null(v) || json_is_object(v) || json_is_array(v))
            continue;
        json_t *dst = ctx;
        if (ctx_map[i].obj) {
            dst = json_object_get(ctx, ctx_map[i].obj);
            if (!dst) {
                dst = json_object();
                json_object_set_new(ctx, ctx_map[i].obj, dst);
            }
        }
        json_object_set(dst, ctx_map[i].key, v);
    }
    /* older posthog-node put the library beside the event instead of in properties */
    if (!json_object_get(ctx, "library")) {
        json_t *lib = json_object_get(item, "library");
        json_t *ver = json_object_get(item, "library_version");
        if (json_is_string(lib)) {
            json_t *l = json_object();
            json_object_set(l, "name", lib);
            if (json_is_string(ver))
                json_object_set(l, "version", ver);
            json_object_set_new(ctx, "library", l);
        }
    }
    return ctx;
}

/* PostHog's person-less events: $is_identified false, person processing off, or (posthog-js)
 * an anonymous distinct id that is the device id. */
static bool is_anonymous(json_t *props, struct str did)
{
    if (json_is_false(json_object_get(props, "$is_identified")) ||
        json_is_false(json_object_get(props, "$process_person_profile")))
        return true;
    struct str dev = capture__json_str(json_object_get(props, "$device_id"));
    return dev.ptr && str_eq(dev, did);
}

static int object_or_null(struct capture__ctx *cx, json_t *props, const char *key, json_t **out)
{
    json_t *v = json_object_get(props, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return capture__fail(cx, 400, "properties.%s: must be an object", key);
    *out = v;
    return 0;
}

int capture__posthog_item(struct capture__ctx *cx, json_t *item, struct capture__msg *m)
{
    memset(m, 0, sizeof(*m));
    json_t *props;
    if (capture__get_object(cx, item, "properties", &props))
        return ERR_INVALID;

    json_t *ev = json_object_get(item, "event");
    if (!ev || json_is_null(ev))
        return capture__fail(cx, 400, "event: required");
    if (!json_is_string(ev))
        return capture__fail(cx, 400, "event: must be a string");
    struct str name = capture__json_str(ev);
    if (!name.ptr)
        return capture__fail(cx, 400, "event: required");

    struct str did;
    if (distinct_id(cx, item, props, &did))
        return ERR_INVALID;

    m->properties = props;
    if (str_eq_cstr(name, "$identify")) {
        m->type = CAPTURE_IDENTIFY;
        m->user_id = did;
        m->anonymous_id = capture__json_str(json_object_get(props, "$anon_distinct_id"));
        if (object_or_null(cx, props, "$set", &m->traits))
            return ERR_INVALID;
    } else if (str_eq_cstr(name, "$create_alias")) {
        m->type = CAPTURE_ALIAS;
        m->user_id = did;
        json_t *alias = json_object_get(props, "alias");
        if (json_is_string(alias))
            m->previous_id = capture__json_str(alias);
        else if (json_is_integer(alias))
            m->previous_id = str_from(
                arena_printf(&cx->st->arena, "%" JSON_INTEGER_FORMAT, json_integer_value(alias)));
        if (!m->previous_id.ptr)
            return capture__fail(cx, 400, "properties.alias: required for $create_alias");
    } else {
        if (str_eq_cstr(name, "$pageview")) {
            m->type = CAPTURE_PAGE;
        } else if (str_eq_cstr(name, "$screen")) {
            m->type = CAPTURE_SCREEN;
        } else if (str_eq_cstr(name, "$groupidentify")) {
            m->type = CAPTURE_GROUP;
            if (capture__get_id(cx, props, "$group_key", &m->group_id))
                return ERR_INVALID;
            if (!m->group_id.ptr)
                return capture__fail(cx, 400, "properties.$group_key: required for $groupidentify");
            if (object_or_null(cx, props, "$group_set", &m->traits))
                return ERR_INVALID;
        } else {
            m->type = CAPTURE_TRACK;
            m->event = name;
        }
        if (is_anonymous(props, did))
            m->anonymous_id = did;
        else
            m->user_id = did;
    }

    if (capture__message_id(cx, json_object_get(item, "uuid"), "uuid", &m->message_id))
        return ERR_INVALID;

    /* the token: on the event (several spellings), else the envelope or Basic auth */
    static const char *const token_keys[] = {"token", "$token", "api_key"};
    for (size_t i = 0; i < ARRAY_LEN(token_keys) && !m->write_key.ptr; i++)
        m->write_key = capture__json_str(json_object_get(item, token_keys[i]));
    for (size_t i = 0; i < 2 && !m->write_key.ptr; i++)
        m->write_key = capture__json_str(json_object_get(props, token_keys[i]));
    if (!m->write_key.ptr)
        m->write_key = cx->env_write_key;
    if (!m->write_key.ptr)
        return capture__fail(cx, 401, "api_key: missing");

    /* Times: offset (ms before sending) wins; else timestamp corrected by sent_at. */
    int64_t ts = 0;
    bool has_ts = false;
    if (capture__get_time(cx, item, "timestamp", &ts, &has_ts))
        return ERR_INVALID;
    if (has_ts) {
        m->original_us = ts;
        m->has_original = true;
    }
    if (cx->env_has_sent && !json_is_true(json_object_get(props, "$ignore_sent_at"))) {
        m->sent_us = cx->env_sent_us;
        m->has_sent = true;
    }
    int64_t received = cx->in->received_us;
    json_t *offset = json_object_get(item, "offset");
    if (offset && !json_is_null(offset)) {
        if (!json_is_integer(offset) || json_integer_value(offset) < 0 ||
            json_integer_value(offset) > 100LL * 365 * 86400 * 1000)
            return capture__fail(cx, 400, "offset: must be a non-negative number of ms");
        m->timestamp_us = capture__skew_correct(
            received, true, received - json_integer_value(offset) * 1000, false, 0);
    } else {
        m->timestamp_us = capture__skew_correct(received, m->has_original, m->original_us,
                                                m->has_sent, m->sent_us);
    }

    m->context = build_context(item, props);
    json_object_set_new(item, "context", m->context); /* the tree owns it */
    /* PostHog records the request address unless the event has $ip or is from a server
     * library ($geoip_disable, as posthog-node sends) */
    const char *ip = cx->in->client_ip;
    if (ip && *ip && !json_object_get(m->context, "ip") &&
        !json_is_true(json_object_get(props, "$geoip_disable")))
        json_object_set_new(m->context, "ip", json_string(ip));
    capture__context_tandem(cx, item, m);
    return 0;
}
