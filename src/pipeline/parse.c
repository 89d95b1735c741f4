/* parse.c - log payloads ("events", "changes") into warehouse rows, with the reason when a
 * payload cannot become a row. */
#include <stdarg.h>
#include <string.h>

#include "pipeline/pipeline.h"

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

static int opt_obj(const json_t *o, const char *key, char **out, char *reason, size_t len)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(reason, len, "%s: not an object", key);
    *out = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));
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

int pipeline_parse_event(const void *data, size_t len, uint64_t offset, struct wh_event *ev,
                         json_t **doc_out, char *dumps[3], char *reason, size_t reason_len)
{
    memset(ev, 0, sizeof(*ev));
    dumps[0] = dumps[1] = dumps[2] = NULL;
    *doc_out = NULL;
    json_t *doc = load_obj(data, len, reason, reason_len);
    if (!doc)
        return ERR_INVALID;
    ev->log_offset = offset;
    int rc;
    if ((rc = opt_str(doc, "messageId", &ev->id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "type", &ev->type, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "event", &ev->event, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "userId", &ev->user_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "anonymousId", &ev->anonymous_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "groupId", &ev->group_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "previousId", &ev->previous_id, reason, reason_len)) < 0 ||
        (rc = opt_str(doc, "source", &ev->source, reason, reason_len)) < 0 ||
        (rc = opt_time(doc, "timestamp", &ev->timestamp_us, reason, reason_len)) < 0 ||
        (rc = opt_time(doc, "originalTimestamp", &ev->original_timestamp_us, reason, reason_len)) <
            0 ||
        (rc = opt_time(doc, "sentAt", &ev->sent_at_us, reason, reason_len)) < 0 ||
        (rc = opt_time(doc, "receivedAt", &ev->received_at_us, reason, reason_len)) < 0)
        goto fail;
    if (!ev->id || !ev->type) {
        rc = bad(reason, reason_len, "%s: missing", ev->id ? "type" : "messageId");
        goto fail;
    }
    if ((rc = opt_obj(doc, "properties", &dumps[0], reason, reason_len)) < 0 ||
        (rc = opt_obj(doc, "traits", &dumps[1], reason, reason_len)) < 0 ||
        (rc = opt_obj(doc, "context", &dumps[2], reason, reason_len)) < 0)
        goto fail;
    ev->properties = dumps[0];
    ev->traits = dumps[1];
    ev->context = dumps[2];
    *doc_out = doc;
    return 0;
fail:
    for (int i = 0; i < 3; i++) {
        free(dumps[i]);
        dumps[i] = NULL;
    }
    json_decref(doc);
    memset(ev, 0, sizeof(*ev));
    return rc;
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
