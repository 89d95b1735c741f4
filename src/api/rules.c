/* rules.c - API rules for the record routes: who is asking (struct api_rules, built once per
 * request), rules compiled into conditions the store checks inside its transactions, the
 * filter context of a client's own filter/sort, and what a non-superuser may see of a record
 * (hidden fields, emails) and may write (hidden fields, tokenKey). */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "api/records_int.h"

static void unref_cb(void *c)
{
    store_collection_unref(c);
}

static void json_release(void *arg)
{
    json_decref(arg);
}

json_t *api__arena_json(struct arena *a, json_t *j)
{
    arena_on_release(a, json_release, j);
    return j;
}

/* filter_find_collection_cb: collections stay referenced until the request ends. */
static const struct store_collection *find_collection(void *ud, const char *name_or_id)
{
    struct api_rules *ar = ud;
    struct store_collection *c = NULL;
    if (store_collection_get(ar->env->store, name_or_id, &c) != 0)
        return NULL;
    arena_on_release(ar->arena, unref_cb, c);
    return c;
}

void api__rules_init(struct api_rules *ar, struct http_req *req, struct api_env *env)
{
    memset(ar, 0, sizeof(*ar));
    ar->req = req;
    ar->arena = http_req_arena(req);
    ar->env = env;
    ar->superuser = env->is_superuser && env->is_superuser(req, env->auth_arg);
    ar->who = api__identity(req, env);
    struct arena *a = http_req_arena(req);
    ar->fr.method = http_req_method(req);
    ar->fr.context = "default";
    json_t *query = json_object();
    const struct http_kv *kv = NULL;
    size_t n = http_req_query_all(req, &kv);
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && kv[i].value && !json_object_get(query, kv[i].key))
            json_object_set_new(query, kv[i].key, json_string(kv[i].value));
    api__arena_json(a, query);
    ar->fr.query = query;
    json_t *headers = json_object();
    api__arena_json(a, headers);
    ar->fr.headers = headers;
}

void api__rules_init_bare(struct api_rules *ar, struct api_env *env, struct arena *a,
                          const struct api_identity *who, const char *context, const json_t *query,
                          const json_t *headers)
{
    memset(ar, 0, sizeof(*ar));
    ar->arena = a;
    ar->env = env;
    ar->who = who;
    ar->superuser = who && who->superuser;
    ar->fr.method = "GET";
    ar->fr.context = context;
    ar->fr.query = query ? query : api__arena_json(a, json_object());
    ar->fr.headers = headers ? headers : api__arena_json(a, json_object());
}

void api__rules_set_body(struct api_rules *ar, const json_t *body)
{
    ar->fr.body = body;
}

/* The requester for @request.auth, loaded the first time a rule needs it. The filter module
 * reads only id, collectionId, collectionName, email, emailVisibility and verified from the
 * JSON (other fields through a join on the auth collection by id), so the record itself is
 * read only for a rule that names one of the last three (full); otherwise {id, collectionId,
 * collectionName} does, without a query. */
static void load_auth(struct api_rules *ar, bool full)
{
    if (ar->auth_loaded && (!full || ar->auth_full))
        return;
    ar->auth_loaded = true;
    if (!ar->who || !ar->who->record_id)
        return;
    struct arena *a = ar->arena;
    if (!ar->fr.auth_collection) {
        struct store_collection *c = NULL;
        if (store_collection_get(ar->env->store, ar->who->collection_id, &c) != 0)
            return;
        arena_on_release(a, unref_cb, c);
        ar->fr.auth_collection = c;
    }
    const struct store_collection *c = ar->fr.auth_collection;
    json_t *auth = NULL;
    if (full) {
        ar->auth_full = true;
        struct store_auth_record rec = {0};
        if (store_auth_get(ar->env->store, c, ar->who->record_id, &rec) == 0)
            auth = json_incref(rec.record);
        store_auth_record_release(&rec);
    }
    if (!auth && !ar->fr.auth)
        auth = json_pack("{s:s,s:s,s:s}", "id", ar->who->record_id, "collectionId", c->id,
                         "collectionName", c->name);
    if (auth) {
        api__arena_json(a, auth);
        ar->fr.auth = auth;
    }
}

/* Whether a rule reads the requester's email, emailVisibility or verified. */
static bool needs_full_auth(const char *rule)
{
    return strstr(rule, "@request.auth.email") || strstr(rule, "@request.auth.verified");
}

/* http_req_header() cannot list the headers, so the ones a rule names are fetched: the rule
 * says `x_token`, the client sent `X-Token` (or, rarely, `x_token`). */
static void load_headers(struct api_rules *ar, const char *rule)
{
    static const char pfx[] = "@request.headers.";
    json_t *headers = (json_t *)ar->fr.headers;
    if (!ar->req)
        return; /* no request (realtime): the headers were given */
    for (const char *p = strstr(rule, pfx); p; p = strstr(p, pfx)) {
        p += sizeof(pfx) - 1;
        char name[128];
        size_t n = 0;
        while (n + 1 < sizeof(name) && (isalnum((unsigned char)p[n]) || p[n] == '_')) {
            name[n] = (char)tolower((unsigned char)p[n]);
            n++;
        }
        name[n] = '\0';
        if (!n || json_object_get(headers, name))
            continue;
        char dashed[128];
        for (size_t i = 0; i <= n; i++)
            dashed[i] = name[i] == '_' ? '-' : name[i];
        const char *v = http_req_header(ar->req, dashed);
        if (!v)
            v = http_req_header(ar->req, name);
        if (v)
            json_object_set_new(headers, name, json_string(v));
    }
}

json_t *api__filter_params(struct arena *a, const struct filter_sql *f)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < f->n_params; i++) {
        const struct filter_param *p = &f->params[i];
        switch (p->type) {
        case FILTER_PARAM_NULL: json_array_append_new(arr, json_null()); break;
        case FILTER_PARAM_INT: json_array_append_new(arr, json_integer(p->i)); break;
        case FILTER_PARAM_DOUBLE: json_array_append_new(arr, json_real(p->d)); break;
        case FILTER_PARAM_TEXT:
            json_array_append_new(arr, json_stringn(p->text, p->text_len));
            break;
        }
    }
    api__arena_json(a, arr);
    return arr;
}

struct filter_ctx api__rules_filter_ctx(struct api_rules *ar, const struct store_collection *c)
{
    struct filter_ctx f = {
        .collection = c,
        .alias = STORE_LIST_ALIAS,
        .find_collection = find_collection,
        .find_ud = ar,
        .now_us = time_now_us(),
        .request = &ar->fr,
        .client = !ar->superuser,
    };
    if (!ar->superuser && ar->req) {
        /* a client filter through a relation applies the target's list rule, which is not
         * known here: the whole record when the filter or sort has a path */
        const char *fl = http_req_query(ar->req, "filter"), *so = http_req_query(ar->req, "sort");
        load_auth(ar, (fl && strchr(fl, '.')) || (so && strchr(so, '.')));
    }
    return f;
}

int api__rule_compile_expr(struct api_rules *ar, const struct store_collection *c, const char *rule,
                           struct store_cond *out)
{
    out->sql = NULL;
    out->params = NULL;
    if (!rule)
        return ERR_DENIED;
    if (!*rule)
        return 0;
    load_auth(ar, needs_full_auth(rule));
    load_headers(ar, rule);
    struct filter_ctx f = api__rules_filter_ctx(ar, c);
    f.client = false; /* a rule may use @request.* and @collection.* */
    struct arena *a = ar->arena;
    struct filter_sql fs;
    struct filter_error fe;
    int rc = filter_compile(&f, rule, strlen(rule), a, &fs, &fe);
    if (rc) {
        xlog_warn("the rule of %s does not compile: %s", c->name, fe.msg);
        return ERR_INVALID;
    }
    out->sql = fs.sql;
    out->params = api__filter_params(a, &fs);
    return 0;
}

int api__rule_compile(struct api_rules *ar, const struct store_collection *c, enum store_rule which,
                      struct store_cond *out)
{
    out->sql = NULL;
    out->params = NULL;
    if (ar->superuser)
        return 0;
    return api__rule_compile_expr(ar, c, c->rules[which], out);
}

void api__cond_and(struct arena *a, struct store_cond *acc, const struct store_cond *more)
{
    if (!more->sql)
        return;
    if (!acc->sql) {
        *acc = *more;
        return;
    }
    json_t *params = json_array();
    if (acc->params)
        json_array_extend(params, (json_t *)acc->params);
    if (more->params)
        json_array_extend(params, (json_t *)more->params);
    api__arena_json(a, params);
    acc->sql = arena_printf(a, "(%s) AND (%s)", acc->sql, more->sql);
    acc->params = params;
}

bool api__rules_is_owner(const struct api_rules *ar, const struct store_collection *c,
                         const char *record_id)
{
    return ar->who && ar->who->record_id && record_id &&
           strcmp(ar->who->collection_id, c->id) == 0 && strcmp(ar->who->record_id, record_id) == 0;
}

bool api__rules_manages(struct api_rules *ar, const struct store_collection *c,
                        const char *record_id)
{
    if (ar->superuser)
        return true;
    if (c->type != STORE_COLLECTION_AUTH || !c->rules[STORE_RULE_MANAGE] || !record_id)
        return false;
    if (ar->manage_c != c) { /* the body is set before any rule is compiled: same result */
        ar->manage_rc =
            api__rule_compile_expr(ar, c, c->rules[STORE_RULE_MANAGE], &ar->manage_cond);
        ar->manage_c = c;
    }
    if (ar->manage_rc != 0)
        return false;
    const struct store_cond *cond = ar->manage_cond.sql ? &ar->manage_cond : NULL;
    json_t *rec = NULL;
    if (store_record_get_if(ar->env->store, c, record_id, cond, &rec) != 0)
        return false;
    json_decref(rec);
    return true;
}

void api__rules_shape(struct api_rules *ar, const struct store_collection *c, json_t *rec)
{
    if (!ar || ar->superuser || !json_is_object(rec))
        return;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].hidden)
            json_object_del(rec, c->fields[i].name);
    if (c->type != STORE_COLLECTION_AUTH || !json_object_get(rec, "email"))
        return;
    const char *id = json_string_value(json_object_get(rec, "id"));
    if (json_is_true(json_object_get(rec, "emailVisibility")) || api__rules_is_owner(ar, c, id) ||
        api__rules_manages(ar, c, id))
        return;
    json_object_del(rec, "email");
}

void api__rules_shape_all(struct api_rules *ar, const struct store_collection *c, json_t *records)
{
    for (size_t i = 0; i < json_array_size(records); i++)
        api__rules_shape(ar, c, json_array_get(records, i));
}

/* The field a body key writes ("tags+" "+tags" "tags-" "slug:autogenerate" -> tags), parsed
 * as the store parses it. */
static const struct store_field *body_field(const struct store_collection *c, const char *key)
{
    char name[STORE_BODY_KEY_MAX + 1];
    char op;
    return store_body_key(key, name, &op) ? store_collection_field(c, name) : NULL;
}

void api__rules_strip_body(struct api_rules *ar, const struct store_collection *c, json_t *body)
{
    if (ar->superuser)
        return;
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(body, tmp, key, v)
    {
        const struct store_field *f = body_field(c, key);
        if (f && f->hidden && f->type != STORE_FIELD_PASSWORD)
            json_object_del(body, key);
    }
}

int api__rule_check(struct http_req *req, struct api_env *env, const struct store_collection *c,
                    const char *rule, char *msg, size_t msg_cap)
{
    if (!rule || !*rule)
        return 0;
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    ar->req = req;
    ar->arena = http_req_arena(req);
    ar->env = env;
    ar->auth_loaded = true; /* no requester: @request.auth.* resolve to NULL */
    struct filter_request fr = {.method = "GET", .context = "default"};
    struct filter_ctx f = {
        .collection = c,
        .alias = STORE_LIST_ALIAS,
        .find_collection = find_collection,
        .find_ud = ar,
        .now_us = time_now_us(),
        .request = &fr,
        .client = false,
    };
    struct filter_sql fs;
    struct filter_error fe;
    int rc = filter_compile(&f, rule, strlen(rule), http_req_arena(req), &fs, &fe);
    if (rc)
        snprintf(msg, msg_cap, "%s", fe.msg);
    return rc;
}
