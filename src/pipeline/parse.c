/* parse.c - log payloads ("events", "changes") into warehouse rows, with the reason when a
 * payload cannot become a row. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "core/jscan.h"
#include "pipeline/pipeline_int.h"

static int bad(char *reason, size_t len, const char *fmt, ...) PRINTF_LIKE(3, 4);
static int bad(char *reason, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, len, fmt, ap);
    va_end(ap);
    return ERR_INVALID;
}

/* An optional string member: NULL when absent or null; ERR_INVALID for another type. */
static int opt_str(const json_t *o, const char *key, const char **out, char *reason, size_t len)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(reason, len, "%s: not a string", key);
    *out = json_string_value(v);
    return 0;
}

static int opt_time(const json_t *o, const char *key, int64_t *out, char *reason, size_t len)
{
    const json_t *v = json_object_get(o, key);
    *out = WH_NO_TIME;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(reason, len, "%s: not a string", key);
    if (json_string_length(v) == 0)
        return 0;
    if (time_parse(json_string_value(v), json_string_length(v), out) < 0)
        return bad(reason, len, "%s: not an ISO 8601 date", key);
    return 0;
}

static json_t *load_obj(const void *data, size_t len, char *reason, size_t reason_len)
{
    json_error_t e;
    json_t *doc = json_loadb(data, len, 0, &e);
    if (!doc) {
        snprintf(reason, reason_len, "not JSON: %s", e.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(reason, reason_len, "not a JSON object");
        return NULL;
    }
    return doc;
}

enum ev_slot {
    S_MESSAGE_ID,
    S_TYPE,
    S_EVENT,
    S_USER_ID,
    S_ANONYMOUS_ID,
    S_GROUP_ID,
    S_PREVIOUS_ID,
    S_SOURCE,
    S_TIMESTAMP,
    S_ORIGINAL_TIMESTAMP,
    S_SENT_AT,
    S_RECEIVED_AT,
    S_PROPERTIES,
    S_TRAITS,
    S_CONTEXT,
    S_N
};

#define KEY(k)                                                                                     \
    {                                                                                              \
        k, sizeof(k) - 1                                                                           \
    }
static const struct {
    const char *name;
    size_t len;
} slot_keys[S_N] = {KEY("messageId"),   KEY("type"),
                    KEY("event"),       KEY("userId"),
                    KEY("anonymousId"), KEY("groupId"),
                    KEY("previousId"),  KEY("source"),
                    KEY("timestamp"),   KEY("originalTimestamp"),
                    KEY("sentAt"),      KEY("receivedAt"),
                    KEY("properties"),  KEY("traits"),
                    KEY("context")};
#undef KEY

#define MAX_MEMBERS 256

static int member_str(const struct pipeline__member *m, struct arena *a, char **out)
{
    if (m->escaped)
        return pipeline__unescape(m->val, m->val_len, a, out);
    *out = arena_strndup(a, m->val, m->val_len);
    return 0;
}

int pipeline_parse_event(const void *data, size_t len, uint64_t offset, struct wh_event *ev,
                         struct arena *a, char *reason, size_t reason_len)
{
    struct pipeline__member ms[MAX_MEMBERS];
    size_t n = 0;
    memset(ev, 0, sizeof(*ev));
    int rc = pipeline__scan_object(data, len, ms, MAX_MEMBERS, &n, reason, reason_len);
    if (rc < 0)
        return ERR_INVALID;
    const struct pipeline__member *slot[S_N] = {0};
    for (size_t i = 0; i < n; i++) {
        char *key = NULL;
        const char *k = ms[i].key;
        size_t klen = ms[i].key_len;
        if (ms[i].key_escaped) {
            if (pipeline__unescape(ms[i].key, ms[i].key_len, a, &key) < 0)
                continue; /* a key with NUL is none of ours */
            k = key;
            klen = strlen(key);
        }
        for (int j = 0; j < S_N; j++)
            if (slot_keys[j].len == klen && memcmp(slot_keys[j].name, k, klen) == 0)
                slot[j] = &ms[i]; /* the last duplicate wins, as in jansson */
    }
    ev->log_offset = offset;
    const char **strs[] = {&ev->id,           &ev->type,     &ev->event,       &ev->user_id,
                           &ev->anonymous_id, &ev->group_id, &ev->previous_id, &ev->source};
    for (int j = S_MESSAGE_ID; j <= S_SOURCE; j++) {
        const struct pipeline__member *m = slot[j];
        if (!m || m->type == 'z')
            continue;
        if (m->type != 's')
            return bad(reason, reason_len, "%s: not a string", slot_keys[j].name);
        char *v;
        if (member_str(m, a, &v) < 0)
            return bad(reason, reason_len, "%s: contains a NUL character", slot_keys[j].name);
        *strs[j] = v;
    }
    int64_t *times[] = {&ev->timestamp_us, &ev->original_timestamp_us, &ev->sent_at_us,
                        &ev->received_at_us};
    for (int j = S_TIMESTAMP; j <= S_RECEIVED_AT; j++) {
        const struct pipeline__member *m = slot[j];
        int64_t *t = times[j - S_TIMESTAMP];
        *t = WH_NO_TIME;
        if (!m || m->type == 'z')
            continue;
        if (m->type != 's')
            return bad(reason, reason_len, "%s: not a string", slot_keys[j].name);
        if (!m->escaped) { /* the usual case: parse in place, no copy */
            if (m->val_len > 0 && time_parse(m->val, m->val_len, t) < 0)
                return bad(reason, reason_len, "%s: not an ISO 8601 date", slot_keys[j].name);
            continue;
        }
        char *v;
        if (member_str(m, a, &v) < 0 || (*v && time_parse(v, strlen(v), t) < 0))
            return bad(reason, reason_len, "%s: not an ISO 8601 date", slot_keys[j].name);
    }
    const char **objs[] = {&ev->properties, &ev->traits, &ev->context};
    for (int j = S_PROPERTIES; j <= S_CONTEXT; j++) {
        const struct pipeline__member *m = slot[j];
        if (!m || m->type == 'z')
            continue;
        if (m->type != 'o')
            return bad(reason, reason_len, "%s: not an object", slot_keys[j].name);
        *objs[j - S_PROPERTIES] = arena_strndup(a, m->val, m->val_len);
    }
    if (!ev->id || !ev->type)
        return bad(reason, reason_len, "%s: missing", ev->id ? "type" : "messageId");
    return 0;
}

int pipeline_parse_change(const void *data, size_t len, uint64_t offset, struct wh_change *ch,
                          json_t **doc_out, char *reason, size_t reason_len)
{
    memset(ch, 0, sizeof(*ch));
    *doc_out = NULL;
    json_t *doc = load_obj(data, len, reason, reason_len);
    if (!doc)
        return ERR_INVALID;
    ch->log_offset = offset;
    const char *action = NULL;
    int rc;
    if ((rc = opt_str(doc, "collection", &ch->collection, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "collectionId", &ch->collection_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "recordId", &ch->record_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "action", &action, reason, reason_len)) < 0 ||
        (rc = opt_time(doc, "changedAt", &ch->changed_at_us, reason, reason_len)) < 0)
        goto fail;
    const json_t *id = json_object_get(doc, "id");
    if (json_is_integer(id))
        ch->id = json_integer_value(id);
    else if (id && !json_is_null(id)) {
        rc = bad(reason, reason_len, "%s: not an integer", "id");
        goto fail;
    }
    if (!ch->collection_id || !ch->record_id || !action) {
        rc = bad(reason, reason_len, "%s: missing",
                 !ch->collection_id ? "collectionId"
                 : !ch->record_id   ? "recordId"
                                    : "action");
        goto fail;
    }
    if (strcmp(action, "create") == 0)
        ch->action = WH_ACTION_CREATE;
    else if (strcmp(action, "update") == 0)
        ch->action = WH_ACTION_UPDATE;
    else if (strcmp(action, "delete") == 0)
        ch->action = WH_ACTION_DELETE;
    else {
        rc = bad(reason, reason_len, "action: %s is not create, update or delete", action);
        goto fail;
    }
    const json_t *rec = json_object_get(doc, "record");
    if (rec && !json_is_null(rec) && !json_is_object(rec)) {
        rc = bad(reason, reason_len, "%s: not an object", "record");
        goto fail;
    }
    if (ch->action != WH_ACTION_DELETE && !json_is_object(rec)) {
        rc = bad(reason, reason_len, "%s: missing on create/update", "record");
        goto fail;
    }
    ch->record = json_is_object(rec) ? rec : NULL;
    *doc_out = doc;
    return 0;
fail:
    json_decref(doc);
    memset(ch, 0, sizeof(*ch));
    return rc;
}

/* The number of key k in the object text o (a prediction), or NAN. */
static double prediction_number(struct str o, const char *k)
{
    struct jscan js = {.p = o.ptr, .n = o.len};
    if (!jscan_eat(&js, '{') || jscan_peek(&js) == '}')
        return NAN;
    do {
        struct str key, raw;
        bool esc;
        enum jscan_kind kind;
        double v;
        if (!jscan_string(&js, &key, &esc) || !jscan_eat(&js, ':') ||
            !jscan_value(&js, &kind, &raw))
            return NAN;
        if (!esc && str_eq_cstr(key, k))
            return kind == JSCAN_NUMBER && jscan_number(raw, &v) ? v : NAN;
    } while (jscan_eat(&js, ','));
    return NAN;
}

/* The record as the ML module writes it, read in place: {"model","version","timestamp",
 * "features","prediction"} in any order, each once, the features and prediction objects
 * copied as they are. false (nothing kept) for anything else: then jansson reads it. */
static bool prediction_text(const char *data, size_t len, struct wh_prediction *p, struct arena *a)
{
    struct jscan js = {.p = data, .n = len};
    struct str model = {0}, ts = {0}, feat = {0}, pred = {0};
    bool have_version = false;
    if (!jscan_eat(&js, '{') || jscan_peek(&js) == '}')
        return false;
    do {
        struct str k, raw;
        bool esc;
        enum jscan_kind kind;
        if (!jscan_string(&js, &k, &esc) || esc || !jscan_eat(&js, ':') ||
            !jscan_value(&js, &kind, &raw))
            return false;
        struct str *slot = str_eq_cstr(k, "model")        ? &model
                           : str_eq_cstr(k, "timestamp")  ? &ts
                           : str_eq_cstr(k, "features")   ? &feat
                           : str_eq_cstr(k, "prediction") ? &pred
                                                          : NULL;
        if (slot) {
            enum jscan_kind want = slot == &feat || slot == &pred ? JSCAN_OBJECT : JSCAN_STRING;
            if (slot->ptr || kind != want)
                return false;
            *slot = raw;
            if (want == JSCAN_STRING) { /* the inside, unescaped only */
                slot->ptr++;
                slot->len -= 2;
                if (memchr(slot->ptr, '\\', slot->len))
                    return false;
            }
        } else if (str_eq_cstr(k, "version") && !have_version && kind == JSCAN_NUMBER &&
                   raw.len <= 18 && !memchr(raw.ptr, '.', raw.len) &&
                   !memchr(raw.ptr, 'e', raw.len) && !memchr(raw.ptr, 'E', raw.len)) {
            have_version = true;
            bool neg = raw.ptr[0] == '-';
            int64_t v = 0;
            for (size_t d = neg; d < raw.len; d++)
                v = v * 10 + (raw.ptr[d] - '0');
            p->version = neg ? -v : v;
        } else {
            return false;
        }
    } while (jscan_eat(&js, ','));
    if (!jscan_eat(&js, '}') || !jscan_end(&js) || !model.ptr || !have_version || !feat.ptr ||
        !pred.ptr || memchr(model.ptr, 0, model.len))
        return false;
    p->timestamp_us = WH_NO_TIME;
    if (ts.ptr && ts.len && time_parse(ts.ptr, ts.len, &p->timestamp_us) < 0)
        return false;
    p->score = prediction_number(pred, "score");
    if (isnan(p->score))
        p->score = prediction_number(pred, "label");
    p->model = arena_strndup(a, model.ptr, model.len);
    p->features = arena_strndup(a, feat.ptr, feat.len);
    p->prediction = arena_strndup(a, pred.ptr, pred.len);
    return true;
}

int pipeline_parse_prediction(const void *data, size_t len, uint64_t offset,
                              struct wh_prediction *p, struct arena *a, char *reason,
                              size_t reason_len)
{
    memset(p, 0, sizeof(*p));
    p->log_offset = offset;
    if (prediction_text(data, len, p, a))
        return 0;
    memset(p, 0, sizeof(*p));
    json_t *doc = load_obj(data, len, reason, reason_len);
    if (!doc)
        return ERR_INVALID;
    p->log_offset = offset;
    p->score = NAN;
    const char *model = NULL;
    int rc;
    if ((rc = opt_str(doc, "model", &model, reason, reason_len)) < 0 ||
        (rc = opt_time(doc, "timestamp", &p->timestamp_us, reason, reason_len)) < 0)
        goto out;
    const json_t *ver = json_object_get(doc, "version");
    const json_t *feat = json_object_get(doc, "features");
    const json_t *pred = json_object_get(doc, "prediction");
    if (!model || !json_is_integer(ver) || !json_is_object(feat) || !json_is_object(pred)) {
        rc = bad(reason, reason_len, "%s: missing or of the wrong type",
                 !model                  ? "model"
                 : !json_is_integer(ver) ? "version"
                 : !json_is_object(feat) ? "features"
                                         : "prediction");
        goto out;
    }
    const json_t *score = json_object_get(pred, "score");
    if (!json_is_number(score))
        score = json_object_get(pred, "label");
    if (json_is_number(score))
        p->score = json_number_value(score);
    p->model = arena_strdup(a, model);
    p->version = json_integer_value(ver);
    char *f = json_dumps(feat, JSON_COMPACT | JSON_REAL_PRECISION(17));
    char *q = json_dumps(pred, JSON_COMPACT | JSON_REAL_PRECISION(17));
    p->features = arena_strdup(a, f ? f : "{}");
    p->prediction = arena_strdup(a, q ? q : "{}");
    free(f);
    free(q);
out:
    json_decref(doc);
    return rc;
}

int pipeline_parse_request(const void *data, size_t len, uint64_t offset, struct wh_request *r,
                           struct arena *a, char *reason, size_t reason_len)
{
    memset(r, 0, sizeof(*r));
    json_t *doc = load_obj(data, len, reason, reason_len);
    if (!doc)
        return ERR_INVALID;
    r->log_offset = offset;
    const char *id = NULL, *created = NULL, *message = NULL;
    int rc;
    if ((rc = opt_str(doc, "id", &id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "created", &created, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "message", &message, reason, reason_len)) < 0)
        goto out;
    const json_t *level = json_object_get(doc, "level");
    const json_t *d = json_object_get(doc, "data");
    if (!id || !created || !json_is_integer(level) || !json_is_object(d)) {
        rc = bad(reason, reason_len, "%s: missing or of the wrong type",
                 !id                       ? "id"
                 : !created                ? "created"
                 : !json_is_integer(level) ? "level"
                                           : "data");
        goto out;
    }
    r->id = arena_strdup(a, id);
    r->created = arena_strdup(a, created);
    r->level = json_integer_value(level);
    r->message = arena_strdup(a, message ? message : "");
    char *text = json_dumps(d, JSON_COMPACT | JSON_REAL_PRECISION(17));
    r->data = arena_strdup(a, text ? text : "{}");
    free(text);
out:
    json_decref(doc);
    return rc;
}

/* A string member copied into a, or NULL (absent, null or not a string). */
static const char *audit_str(const json_t *o, const char *key, struct arena *a)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? arena_strdup(a, s) : NULL;
}

int pipeline_parse_audit(const void *data, size_t len, uint64_t offset, struct wh_audit *au,
                         struct arena *a, char *reason, size_t reason_len)
{
    memset(au, 0, sizeof(*au));
    json_t *doc = load_obj(data, len, reason, reason_len);
    if (!doc)
        return ERR_INVALID;
    int rc = 0;
    const json_t *seq = json_object_get(doc, "seq");
    const json_t *time = json_object_get(doc, "time");
    if (!json_is_integer(seq) || !json_is_integer(time)) {
        rc = bad(reason, reason_len, "%s: missing or not an integer",
                 !json_is_integer(seq) ? "seq" : "time");
        goto out;
    }
    au->log_offset = offset;
    au->seq = json_integer_value(seq);
    au->time_us = json_integer_value(time);
    const json_t *actor = json_object_get(doc, "actor");
    au->action = audit_str(doc, "action", a);
    au->actor_id = audit_str(actor, "id", a);
    au->actor_email = audit_str(actor, "email", a);
    au->ip = audit_str(doc, "ip", a);
    au->method = audit_str(doc, "method", a);
    au->route = audit_str(doc, "route", a);
    au->path = audit_str(doc, "path", a);
    au->prev = audit_str(doc, "prev", a);
    au->hash = audit_str(doc, "hash", a);
    const json_t *status = json_object_get(doc, "status");
    au->status = json_is_integer(status) ? json_integer_value(status) : 0;
    const json_t *sum = json_object_get(doc, "summary");
    if (sum && !json_is_null(sum)) {
        char *t = json_dumps(sum, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        au->summary = t ? arena_strdup(a, t) : NULL;
        free(t);
    }
out:
    json_decref(doc);
    return rc;
}
