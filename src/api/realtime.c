/* realtime.c - GET /api/realtime (the SSE stream) and POST /api/realtime (set subscriptions):
 * the edge of the realtime hub (src/realtime/), and the view the hub asks, once per group of
 * subscribers and change, whether the change is visible and what to send.
 *
 * How a change is checked (docs/realtime.md): the rule of the topic (listRule for
 * `coll/\*`, viewRule for `coll/<id>`) and the subscription's own `filter` option are
 * compiled once per group for its identity and evaluated against the record image that the
 * change carries (store_record_match): the image's own fields as they were written (for a
 * delete: the record as it was before), relations and other collections as they are now. So
 * a create that was updated again before the hub got to it is judged as created, and a
 * delete is judged on the deleted data, as PocketBase does. Superusers skip the rules; a null
 * rule lets only superusers through. The record is then shaped for the identity (hidden
 * fields, emails), expanded (each expanded record under its viewRule) and picked by
 * `fields`, like a REST response. */
#include <ctype.h>
#include <string.h>

#include "api/records_int.h"
#include "realtime/realtime.h"

/* ---- the view: one per subscription group, used on the hub thread only ---- */

struct rt_view {
    struct api_env *env;
    struct arena opts; /* identity, options: fixed for the group */
    struct api_identity who;
    bool record_topic;
    const char *filter, *expand, *fields; /* from options.query; NULL when absent */
    json_t *query, *headers;              /* @request.query.*, @request.headers.* */
    /* compiled against the collection snapshot c; rebuilt when the snapshot changes */
    struct arena comp;
    struct store_collection *c;
    int cond_rc; /* 0, or why the group sees nothing (ERR_DENIED, ERR_INVALID) */
    struct store_cond cond;
};

static void json_free_cb(void *j)
{
    json_decref(j);
}

/* options = {"query":{...},"headers":{...}} as the SDK serialises it into the topic. */
static void parse_options(struct rt_view *v, const char *qs)
{
    struct http_kv *kv = NULL;
    size_t n = 0;
    v->query = json_object();
    v->headers = json_object();
    arena_on_release(&v->opts, json_free_cb, v->query);
    arena_on_release(&v->opts, json_free_cb, v->headers);
    if (!qs || !*qs || http_query_parse(&v->opts, qs, strlen(qs), &kv, &n) != 0)
        return;
    json_t *opt = NULL;
    for (size_t i = 0; i < n && !opt; i++)
        if (strcmp(kv[i].key, "options") == 0)
            opt = json_loads(kv[i].value, 0, NULL);
    if (!json_is_object(opt)) {
        json_decref(opt);
        return; /* malformed options are ignored, as PocketBase ignores them */
    }
    const char *key;
    json_t *val;
    json_object_foreach(json_object_get(opt, "query"), key, val)
    {
        const char *s = json_string_value(val);
        if (!s)
            continue;
        json_object_set_new(v->query, key, json_string(s));
        if (strcmp(key, "filter") == 0)
            v->filter = arena_strdup(&v->opts, s);
        else if (strcmp(key, "expand") == 0)
            v->expand = arena_strdup(&v->opts, s);
        else if (strcmp(key, "fields") == 0)
            v->fields = arena_strdup(&v->opts, s);
    }
    json_object_foreach(json_object_get(opt, "headers"), key, val)
    {
        const char *s = json_string_value(val);
        char name[128];
        size_t k = 0;
        for (; key[k] && k + 1 < sizeof(name); k++)
            name[k] = key[k] == '-' ? '_' : (char)tolower((unsigned char)key[k]);
        name[k] = '\0';
        if (s && k)
            json_object_set_new(v->headers, name, json_string(s));
    }
    json_decref(opt);
}

static void *view_open(void *arg, const struct realtime_group_spec *spec)
{
    struct rt_view *v = xcalloc(1, sizeof(*v));
    v->env = arg;
    arena_init(&v->opts, 1024);
    arena_init(&v->comp, 2048);
    v->who.superuser = spec->who.superuser;
    v->who.record_id = spec->who.record_id ? arena_strdup(&v->opts, spec->who.record_id) : NULL;
    v->who.collection_id =
        spec->who.collection_id ? arena_strdup(&v->opts, spec->who.collection_id) : NULL;
    v->record_topic = spec->record_id != NULL;
    parse_options(v, spec->options);
    return v;
}

static void view_close(void *arg, void *state)
{
    struct rt_view *v = state;
    UNUSED(arg);
    arena_release(&v->comp);
    arena_release(&v->opts);
    if (v->c)
        store_collection_unref(v->c);
    free(v);
}

/* Compiles the rule and the filter option against c (the snapshot the change is read with). */
static void view_compile(struct rt_view *v, struct store_collection *c)
{
    arena_release(&v->comp);
    arena_init(&v->comp, 2048);
    if (v->c)
        store_collection_unref(v->c);
    v->c = c;
    v->cond.sql = NULL;
    v->cond.params = NULL;
    struct api_rules ar;
    api__rules_init_bare(&ar, v->env, &v->comp, &v->who, "realtime", v->query, v->headers);
    v->cond_rc =
        api__rule_compile(&ar, c, v->record_topic ? STORE_RULE_VIEW : STORE_RULE_LIST, &v->cond);
    if (v->cond_rc || !v->filter || !*v->filter)
        return;
    struct filter_ctx fctx = api__rules_filter_ctx(&ar, c);
    struct filter_sql fs;
    struct filter_error fe;
    if (filter_compile(&fctx, v->filter, strlen(v->filter), &v->comp, &fs, &fe) != 0) {
        v->cond_rc = ERR_INVALID; /* a bad filter option matches nothing */
        return;
    }
    struct store_cond more = {.sql = fs.sql, .params = api__filter_params(&v->comp, &fs)};
    api__cond_and(&v->comp, &v->cond, &more);
}

static int view_render(void *arg, void *state, const struct realtime_change *ch, struct buf *out)
{
    struct rt_view *v = state;
    struct api_env *env = arg;
    struct store_collection *c = NULL;
    if (store_collection_get(env->store, ch->collection_id, &c) != 0)
        return 0; /* the collection is gone since */
    if (c != v->c)
        view_compile(v, c); /* takes the reference */
    else
        store_collection_unref(c);
    c = v->c;
    if (v->cond_rc)
        return 0;
    int m = store_record_match(env->store, c, ch->record, &v->cond);
    if (m <= 0)
        return m;

    struct arena scratch;
    arena_init(&scratch, 4096);
    struct api_rules ar;
    api__rules_init_bare(&ar, env, &scratch, &v->who, "realtime", v->query, v->headers);
    json_t *rec = json_deep_copy(ch->record);
    api__rules_shape(&ar, c, rec);
    if (v->expand && *v->expand) {
        /* an expansion past the byte cap is left out whole, never sent half done */
        json_t *arr = json_pack("[O]", rec);
        json_t *plain = json_deep_copy(rec);
        if (api__expand_rules(&ar, c, arr, v->expand) != 0) {
            json_decref(rec);
            rec = plain;
        } else {
            json_decref(plain);
        }
        json_decref(arr);
    }
    json_t *picked = api__pick_fields(rec, v->fields);
    json_decref(rec);
    json_t *data = json_object();
    json_object_set_new(data, "record", picked);
    json_object_set_new(data, "action", json_string(ch->action));
    char *text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(data);
    arena_release(&scratch);
    if (!text)
        return ERR_INTERNAL;
    buf_puts(out, text);
    free(text);
    return 1;
}

static const struct realtime_view_ops view_ops = {
    .group_open = view_open,
    .group_close = view_close,
    .render = view_render,
};

/* ---- the connection: an http_stream ---- */

static void conn_wake(void *conn)
{
    http_stream_wake(conn);
}

static void conn_abort(void *conn)
{
    http_stream_abort(conn);
}

static void conn_release(void *conn)
{
    http_stream_unref(conn);
}

static const struct realtime_conn_ops conn_ops = {
    .wake = conn_wake,
    .abort = conn_abort,
    .release = conn_release,
};

static long sse_read(void *ctx, char *out, size_t max)
{
    long n = realtime_client_read(ctx, out, max);
    return n < 0 ? HTTP_STREAM_END : n;
}

static void sse_done(void *ctx)
{
    realtime_client_gone(ctx);
}

/* ---- routes ---- */

static void connect_stream(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct realtime_client *cl = NULL;
    int rc = env->realtime ? realtime_client_new(env->realtime, &cl) : ERR_BUSY;
    if (rc) {
        http_reply_error(req, 503, rc == ERR_LIMIT ? "Too many realtime clients." : NULL, NULL);
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "X-Accel-Buffering", "no");
    struct http_stream *s =
        http_reply_stream(req, "text/event-stream; charset=UTF-8", sse_read, sse_done, cl);
    realtime_client_attach(cl, s);
}

static json_t *verr(const char *code, const char *message)
{
    return json_pack("{s:s,s:s}", "code", code, "message", message);
}

/* "coll/\*", "coll" (deprecated alias of "coll/\*") or "coll/<id>", then "?options=...".
 * Topics that name no collection stay subscribed but never match. */
static void parse_topic(struct api_env *env, struct arena *a, const char *topic,
                        struct realtime_sub *out)
{
    memset(out, 0, sizeof(*out));
    out->topic = topic;
    const char *q = strchr(topic, '?');
    size_t path_len = q ? (size_t)(q - topic) : strlen(topic);
    out->options = q ? q + 1 : "";
    char *path = arena_strndup(a, topic, path_len);
    char *slash = strchr(path, '/');
    if (slash) {
        *slash = '\0';
        const char *rid = slash + 1;
        if (!*rid || strchr(rid, '/'))
            return;
        out->record_id = strcmp(rid, "*") == 0 ? NULL : rid;
    }
    struct store_collection *c = NULL;
    if (!*path || !env->store || store_collection_get(env->store, path, &c) != 0)
        return;
    out->collection_id = arena_strdup(a, c->id);
    store_collection_unref(c);
}

static void set_subscriptions(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    json_t *body = http_req_json(req, true);
    if (!body)
        return;
    if (!env->realtime) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    json_t *errors = json_object();
    const json_t *jid = json_object_get(body, "clientId");
    const char *client_id = json_string_value(jid);
    if (!client_id || !*client_id)
        json_object_set_new(errors, "clientId", verr("validation_required", "Cannot be blank."));
    else if (strlen(client_id) > 255)
        json_object_set_new(
            errors, "clientId",
            verr("validation_length_out_of_range", "The length must be between 1 and 255."));
    const json_t *jsubs = json_object_get(body, "subscriptions");
    size_t n = json_array_size(jsubs);
    if (jsubs && !json_is_null(jsubs) && !json_is_array(jsubs))
        json_object_set_new(errors, "subscriptions",
                            verr("validation_invalid_value", "Must be a valid value."));
    else if (n > REALTIME_MAX_SUBS)
        json_object_set_new(
            errors, "subscriptions",
            verr("validation_length_too_long", "The length must be no more than 1000."));
    else {
        json_t *each = json_object();
        for (size_t i = 0; i < n; i++) {
            const char *t = json_string_value(json_array_get(jsubs, i));
            json_t *e = NULL;
            if (!t)
                e = verr("validation_invalid_value", "Must be a valid value.");
            else if (!*t || strlen(t) > REALTIME_MAX_TOPIC_LEN)
                e = verr("validation_length_out_of_range",
                         "The length must be between 1 and 2500.");
            else if (strpbrk(t, "\r\n")) /* it becomes the SSE event line */
                e = verr("validation_invalid_value", "Must be a valid value.");
            if (e) {
                char k[24];
                snprintf(k, sizeof(k), "%zu", i);
                json_object_set_new(each, k, e);
            }
        }
        if (json_object_size(each))
            json_object_set_new(errors, "subscriptions", each);
        else
            json_decref(each);
    }
    if (json_object_size(errors)) {
        http_reply_error(req, 400, NULL, errors);
        return;
    }
    json_decref(errors);

    struct realtime_client *cl = realtime_client_find(env->realtime, client_id);
    if (!cl) {
        http_reply_error(req, 404, "Missing or invalid client id.", NULL);
        return;
    }
    const struct api_identity *who = api__identity(req, env);
    struct realtime_ident ident = {
        .superuser = who->superuser,
        .collection_id = who->collection_id,
        .record_id = who->record_id,
    };
    struct arena *a = http_req_arena(req);
    struct realtime_sub *subs = n ? arena_zalloc(a, n * sizeof(*subs)) : NULL;
    for (size_t i = 0; i < n; i++)
        parse_topic(env, a, json_string_value(json_array_get(jsubs, i)), &subs[i]);
    int rc = realtime_client_subscribe(env->realtime, cl, &ident, subs, n);
    realtime_client_unref(cl);
    if (rc == ERR_DENIED) {
        http_reply_error(req, 403,
                         "The current and the previous request authorization don't match.", NULL);
        return;
    }
    http_reply_empty(req, 204);
}

void api__register_realtime(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/realtime", connect_stream, env);
    http_route(r, "POST", "/api/realtime", set_subscriptions, env);
}

/* ---- life cycle ---- */

int api_realtime_start(struct api_env *env)
{
    struct realtime_cfg rc = {
        .log = env->log,
        .queue_bytes = 256 * 1024,
        .max_clients = 100000,
        .keepalive_us = 30 * INT64_C(1000000),
        .view = &view_ops,
        .view_arg = env,
        .conn = &conn_ops,
    };
    if (env->cfg) {
        rc.queue_bytes = (size_t)env->cfg->realtime_queue;
        rc.max_clients = (size_t)env->cfg->realtime_max_clients;
        rc.keepalive_us = env->cfg->realtime_keepalive * INT64_C(1000000);
    }
    return realtime_hub_new(&rc, &env->realtime);
}

void api_realtime_stop(struct api_env *env)
{
    realtime_hub_stop(env->realtime);
}

void api_realtime_free(struct api_env *env)
{
    realtime_hub_free(env->realtime);
    env->realtime = NULL;
}
