/* capture.c - capture_parse(): decoding, envelopes, limits and the per-item loop. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "capture/capture_int.h"

static const char *const type_names[] = {
    [CAPTURE_TRACK] = "track",   [CAPTURE_IDENTIFY] = "identify", [CAPTURE_PAGE] = "page",
    [CAPTURE_SCREEN] = "screen", [CAPTURE_GROUP] = "group",       [CAPTURE_ALIAS] = "alias",
};

const char *capture_type_name(enum capture_type t)
{
    return (unsigned)t < ARRAY_LEN(type_names) ? type_names[t] : "unknown";
}

void capture_limits_default(struct capture_limits *l)
{
    l->max_message = CAPTURE_MAX_MESSAGE_DEFAULT;
    l->max_body = CAPTURE_MAX_BODY_DEFAULT;
    l->max_events = CAPTURE_MAX_EVENTS_DEFAULT;
    l->max_inflate = CAPTURE_MAX_BODY_DEFAULT + CAPTURE_INFLATE_MARGIN;
}

void capture_result_release(struct capture_result *r)
{
    struct capture__state *st = r->st;
    if (st) {
        if (st->root)
            json_decref(st->root);
        buf_release(&st->inflated);
        buf_release(&st->records);
        capture__tape_release(&st->tape);
        arena_release(&st->arena);
        free(st);
    }
    memset(r, 0, sizeof(*r));
}

/* Content-Encoding: 1 gzip, 0 none, -1 something we do not decode. */
static int encoding_kind(const char *ce)
{
    if (!ce)
        return 0;
    while (*ce == ' ' || *ce == '\t')
        ce++;
    size_t len = strlen(ce);
    while (len > 0 && (ce[len - 1] == ' ' || ce[len - 1] == '\t'))
        len--;
    if (len == 0 || (len == 8 && strncasecmp(ce, "identity", 8) == 0))
        return 0;
    if ((len == 4 && strncasecmp(ce, "gzip", 4) == 0) ||
        (len == 6 && strncasecmp(ce, "x-gzip", 6) == 0))
        return 1;
    return -1;
}

static int add_write_key(struct capture__ctx *cx, struct str key)
{
    struct capture_result *r = cx->res;
    for (size_t i = r->n_write_keys; i-- > 0;) {
        const char *k = r->write_keys[i];
        if (k == key.ptr || (strlen(k) == key.len && memcmp(k, key.ptr, key.len) == 0))
            return 0;
    }
    r->write_keys[r->n_write_keys++] = key.ptr;
    return 0;
}

/* The envelope of a Segment batch: writeKey, sentAt, context shared by every item. */
static int segment_envelope(struct capture__ctx *cx, json_t *root, json_t **items_out)
{
    if (!json_is_object(root))
        return capture__fail(cx, 400, "body: must be a JSON object");
    json_t *batch = json_object_get(root, "batch");
    if (!batch || json_is_null(batch))
        return capture__fail(cx, 400, "batch: required");
    if (!json_is_array(batch))
        return capture__fail(cx, 400, "batch: must be an array");
    json_t *wk = json_object_get(root, "writeKey");
    if (wk && !json_is_null(wk) && !json_is_string(wk))
        return capture__fail(cx, 400, "writeKey: must be a string");
    struct str key = capture__json_str(wk);
    if (key.ptr)
        cx->env_write_key = key;
    int64_t sent;
    bool has_sent;
    if (capture__get_time(cx, root, "sentAt", &sent, &has_sent) ||
        capture__get_object(cx, root, "context", &cx->env_context))
        return ERR_INVALID;
    if (has_sent) {
        cx->env_sent_us = sent;
        cx->env_has_sent = true;
    }
    if (cx->env_context)
        json_object_del(cx->env_context, "tandem");
    *items_out = batch;
    return 0;
}

/* PostHog bodies: an array of events, {"batch":[...]} with api_key/token and sent_at, or
 * one event. *items_out is an array, or the single event object (*single_out true). */
static int posthog_envelope(struct capture__ctx *cx, json_t *root, json_t **items_out,
                            bool *single_out)
{
    *single_out = false;
    if (json_is_array(root)) {
        *items_out = root;
        return 0;
    }
    if (!json_is_object(root))
        return capture__fail(cx, 400, "body: must be a JSON object or array");
    json_t *batch = json_object_get(root, "batch");
    if (!batch || json_is_null(batch)) {
        *items_out = root;
        *single_out = true;
        return 0;
    }
    if (!json_is_array(batch))
        return capture__fail(cx, 400, "batch: must be an array");
    struct str key = capture__json_str(json_object_get(root, "api_key"));
    if (!key.ptr)
        key = capture__json_str(json_object_get(root, "token"));
    if (key.ptr)
        cx->env_write_key = key;
    int64_t sent;
    bool has_sent;
    if (capture__get_time(cx, root, "sent_at", &sent, &has_sent))
        return ERR_INVALID;
    if (has_sent) {
        cx->env_sent_us = sent;
        cx->env_has_sent = true;
    }
    *items_out = batch;
    return 0;
}

static int decode_body(struct capture__ctx *cx, const char **body, size_t *len)
{
    const struct capture_input *in = cx->in;
    int enc = encoding_kind(in->content_encoding);
    if (enc < 0)
        return capture__fail(cx, 400, "Content-Encoding: unsupported \"%.40s\"",
                             in->content_encoding);
    if (enc == 1 || capture_is_gzip(in->body, in->body_len)) {
        int rc = capture_gunzip(in->body, in->body_len, cx->lim->max_inflate, &cx->st->inflated);
        if (rc == -ENOMEM)
            return rc;
        if (rc == ERR_LIMIT)
            return capture__fail(cx, 413, "body: inflates to more than %zu bytes",
                                 cx->lim->max_inflate);
        if (rc < 0)
            return capture__fail(cx, 400, "body: invalid gzip data");
        *body = cx->st->inflated.ptr ? cx->st->inflated.ptr : "";
        *len = cx->st->inflated.len;
    } else {
        *body = in->body ? in->body : "";
        *len = in->body_len;
    }
    return 0;
}

/* Sets m->source from m->write_key through the caller's resolver, remembering the answer
 * for each distinct key of the request. */
int capture__resolve_source(struct capture__ctx *cx, struct capture__msg *m)
{
    const struct capture_input *in = cx->in;
    struct capture__state *st = cx->st;
    if (!in->resolve_key) {
        m->source = m->write_key;
        return 0;
    }
    for (size_t i = 0; i < st->n_sources; i++) {
        if (str_eq(st->sources[i].key, m->write_key)) {
            m->source = st->sources[i].name;
            return 0;
        }
    }
    char name[256];
    int rc = in->resolve_key(in->resolve_arg, m->write_key.ptr, name, sizeof(name));
    if (rc == ERR_NOTFOUND)
        return capture__fail(cx, 401, "writeKey: unknown or revoked write key");
    if (rc != 0)
        return rc;
    if (st->n_sources == st->cap_sources) {
        size_t cap = st->cap_sources ? st->cap_sources * 2 : 4;
        struct capture__source *grown = arena_alloc(&st->arena, cap * sizeof(*grown));
        if (st->n_sources)
            memcpy(grown, st->sources, st->n_sources * sizeof(*grown));
        st->sources = grown;
        st->cap_sources = cap;
    }
    struct capture__source *s = &st->sources[st->n_sources++];
    s->key = m->write_key;
    s->name = str_from(arena_strdup(&st->arena, name));
    m->source = s->name;
    return 0;
}

/* Whether v nests deeper than max levels (an object or array is one level). */
static bool nests_deeper(const json_t *v, int max)
{
    if (!json_is_object(v) && !json_is_array(v))
        return false;
    if (max <= 0)
        return true;
    if (json_is_array(v)) {
        for (size_t k = 0; k < json_array_size(v); k++)
            if (nests_deeper(json_array_get(v, k), max - 1))
                return true;
        return false;
    }
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        if (nests_deeper(x, max - 1))
            return true;
    }
    return false;
}

/* The personal data rules act on the record as written: each object a rule touches is
 * replaced by a private copy (the fast path's raw text parsed, a shared object copied) with
 * the rules applied; own[] gets the copies, which the caller frees after writing. */
static int pii_copies(struct capture__ctx *cx, struct capture__msg *m, json_t *own[3])
{
    struct {
        const char *name;
        json_t **obj;
        struct str *raw;
    } objs[] = {{"properties", &m->properties, &m->raw_properties},
                {"traits", &m->traits, &m->raw_traits},
                {"context", &m->context, &m->raw_context}};
    for (size_t k = 0; k < ARRAY_LEN(objs); k++) {
        if (!capture__pii_touches(cx->in->pii, m->source, objs[k].name))
            continue;
        json_t *copy;
        if (objs[k].raw->ptr)
            copy = json_loadb(objs[k].raw->ptr, objs[k].raw->len, JSON_DECODE_ANY, NULL);
        else
            copy = *objs[k].obj ? json_deep_copy(*objs[k].obj) : json_object();
        if (!json_is_object(copy)) {
            json_decref(copy);
            return ERR_INVALID;
        }
        capture__pii_apply(cx->in->pii, m->source, objs[k].name, copy);
        own[k] = copy;
        *objs[k].obj = copy;
        *objs[k].raw = (struct str){NULL, 0};
    }
    return 0;
}

int capture__add_event(struct capture__ctx *cx, struct capture__msg *m, size_t i, size_t max_total)
{
    const struct capture_limits *lim = cx->lim;
    struct capture__state *st = cx->st;
    int too_big = cx->in->api == CAPTURE_API_POSTHOG ? 413 : 400;
    int rc = capture__resolve_source(cx, m);
    if (rc != 0)
        return rc;
    /* the loader refuses deeper JSON: such an event must not be acknowledged (the fast
     * path's raw objects are no deeper, see scan.c) */
    const struct {
        const char *name;
        const json_t *v;
    } objs[] = {{"properties", m->properties}, {"traits", m->traits}, {"context", m->context}};
    for (size_t k = 0; k < ARRAY_LEN(objs); k++)
        if (nests_deeper(objs[k].v, CAPTURE_MAX_DEPTH))
            return capture__fail(cx, 400, "%s: nested deeper than %d levels", objs[k].name,
                                 CAPTURE_MAX_DEPTH);
    json_t *own[3] = {NULL, NULL, NULL};
    if (cx->in->pii && pii_copies(cx, m, own) != 0)
        return capture__fail_item(cx, 400, "cannot be serialised");
    size_t start = st->records.len;
    rc = capture__write_record(&st->records, m, cx->in->received_us);
    for (size_t k = 0; k < ARRAY_LEN(own); k++)
        json_decref(own[k]);
    if (rc < 0)
        return capture__fail_item(cx, 400, "cannot be serialised");
    size_t rec_len = st->records.len - start;
    if (rec_len > lim->max_message)
        return capture__fail_item(cx, too_big, "larger than %zu bytes", lim->max_message);
    cx->item = -1;
    if (st->records.len > max_total)
        return capture__fail(cx, too_big, "batch: events larger than %zu bytes in all", max_total);
    struct capture_event *e = &cx->res->events[i];
    e->type = m->type;
    e->message_id = m->message_id.ptr;
    e->message_id_len = m->message_id.len;
    e->write_key = m->write_key.ptr;
    e->write_key_len = m->write_key.len;
    e->source = m->source.ptr;
    e->source_len = m->source.len;
    e->user_id = m->user_id.ptr;
    e->anonymous_id = m->anonymous_id.ptr;
    e->timestamp_us = m->timestamp_us;
    e->received_us = cx->in->received_us;
    e->record_len = rec_len;
    st->offsets[i] = start;
    return add_write_key(cx, m->write_key);
}

static int parse_items(struct capture__ctx *cx, json_t *items, bool single, int path_type)
{
    const struct capture_limits *lim = cx->lim;
    struct capture__state *st = cx->st;
    struct capture_result *r = cx->res;
    bool posthog = cx->in->api == CAPTURE_API_POSTHOG;
    int too_big = posthog ? 413 : 400;

    size_t n = single ? 1 : json_array_size(items);
    if (n == 0)
        return capture__fail(cx, 400, "batch: empty");
    if (n > lim->max_events)
        return capture__fail(cx, too_big, "batch: more than %zu events", lim->max_events);
    size_t max_total = lim->max_body * 4 + n * 1024; /* envelope context copied into items */

    r->events = arena_zalloc(&st->arena, n * sizeof(*r->events));
    r->write_keys = arena_zalloc(&st->arena, n * sizeof(*r->write_keys));
    st->offsets = arena_alloc(&st->arena, n * sizeof(*st->offsets));
    if (buf_try_reserve(&st->records, n * 512) < 0)
        return -ENOMEM;

    for (size_t i = 0; i < n; i++) {
        json_t *item = single ? items : json_array_get(items, i);
        cx->item = single ? -1 : (long)i;
        if (!json_is_object(item))
            return capture__fail_item(cx, 400, "must be an object");
        struct capture__msg m;
        int rc = posthog ? capture__posthog_item(cx, item, &m)
                         : capture__segment_item(cx, item, path_type, &m);
        if (rc < 0)
            return rc;
        rc = capture__add_event(cx, &m, i, max_total);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++)
        r->events[i].record = st->records.ptr + st->offsets[i];
    r->n_events = n;
    return 0;
}

int capture_parse(const struct capture_input *in, struct capture_result *out)
{
    memset(out, 0, sizeof(*out));
    struct capture__state *st = xcalloc(1, sizeof(*st));
    arena_init(&st->arena, 8192);
    buf_init(&st->inflated);
    buf_init(&st->records);
    out->st = st;

    struct capture_limits deflim;
    const struct capture_limits *lim = in->limits;
    if (!lim) {
        capture_limits_default(&deflim);
        lim = &deflim;
    }
    struct capture__ctx cx = {.in = in, .lim = lim, .res = out, .st = st, .item = -1};
    if (in->auth_key && *in->auth_key) /* copied: the result must not borrow the input */
        cx.env_write_key = str_from(arena_strdup(&st->arena, in->auth_key));
    if (in->sent_at_us > 0) {
        cx.env_sent_us = in->sent_at_us;
        cx.env_has_sent = true;
    }
    bool posthog = in->api == CAPTURE_API_POSTHOG;

    const char *body = "";
    size_t len = 0;
    int rc = decode_body(&cx, &body, &len);
    if (rc < 0)
        goto done;
    if (len > lim->max_body) {
        capture__fail(&cx, posthog ? 413 : 400, "body: larger than %zu bytes", lim->max_body);
        goto done;
    }
    if (len == 0) {
        capture__fail(&cx, 400, "body: empty");
        goto done;
    }
    int path_type = -1;
    switch (in->api) {
    case CAPTURE_API_TRACK: path_type = CAPTURE_TRACK; break;
    case CAPTURE_API_IDENTIFY: path_type = CAPTURE_IDENTIFY; break;
    case CAPTURE_API_PAGE: path_type = CAPTURE_PAGE; break;
    case CAPTURE_API_SCREEN: path_type = CAPTURE_SCREEN; break;
    case CAPTURE_API_GROUP: path_type = CAPTURE_GROUP; break;
    case CAPTURE_API_ALIAS: path_type = CAPTURE_ALIAS; break;
    case CAPTURE_API_BATCH:
    case CAPTURE_API_POSTHOG: break;
    }
    if (!posthog) {
        struct capture__ctx saved = cx;
        rc = capture__segment_fast(&cx, body, len, path_type);
        if (rc != CAPTURE__SLOW)
            goto done;
        /* start over with jansson, which gives the verdict and the messages */
        cx = saved;
        memset(out, 0, sizeof(*out));
        out->st = st;
        buf_reset(&st->records);
        rc = 0;
    }
    json_error_t jerr;
    st->root = json_loadb(body, len, 0, &jerr);
    if (!st->root) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            rc = -ENOMEM;
            goto done;
        }
        capture__fail(&cx, 400, "body: invalid JSON: %.120s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
        goto done;
    }

    json_t *items = NULL;
    bool single = false;
    if (path_type >= 0) {
        if (!json_is_object(st->root)) {
            capture__fail(&cx, 400, "body: must be a JSON object");
            goto done;
        }
        items = st->root;
        single = true;
    } else if (in->api == CAPTURE_API_BATCH) {
        if (segment_envelope(&cx, st->root, &items) < 0)
            goto done;
    } else {
        if (posthog_envelope(&cx, st->root, &items, &single) < 0)
            goto done;
    }
    rc = parse_items(&cx, items, single, path_type);

done:
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0 && out->status == 0) {
        /* not the client's fault (the write-key lookup failed): nothing may be acknowledged */
        out->events = NULL;
        out->n_events = 0;
        return rc == ERR_INVALID ? ERR_INTERNAL : rc;
    }
    if (out->status != 0) {
        out->events = NULL;
        out->n_events = 0;
        out->write_keys = NULL;
        out->n_write_keys = 0;
    }
    return 0;
}
