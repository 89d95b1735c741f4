/* recshape.c - shaping record responses: `expand` (relations and back-relations, up to six
 * levels) and the `fields` picker with the :excerpt modifier. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "api/records_int.h"
#include "filter/filter.h"

bool api__require_superuser(struct http_req *req, struct api_env *env, bool collections_api)
{
    if (!env->store) {
        http_reply_error(req, 503, "The data store is not available.", NULL);
        return false;
    }
    if (env->is_superuser && env->is_superuser(req, env->auth_arg))
        return true;
    if (!collections_api)
        http_reply_error(req, 403, "Only superusers can perform this action.", NULL);
    else if (!api__identity(req, env)->record_id) /* a guest: no token, or an invalid one */
        http_reply_error(req, 401, "The request requires valid superuser authorization token.",
                         NULL);
    else
        http_reply_error(req, 403, "The authorized record is not allowed to perform this action.",
                         NULL);
    return false;
}

int api__parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ERR_INVALID;
}

int api__parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return ERR_INVALID;
    *out = v;
    return 0;
}

/* ---- list queries ---- */

/* Collections the filter compiler looked up; released with the request. */
struct found_list {
    struct api_env *env;
    struct store_collection *items[64];
    size_t n;
};

static void found_release(void *arg)
{
    struct found_list *fl = arg;
    for (size_t i = 0; i < fl->n; i++)
        store_collection_unref(fl->items[i]);
}

static const struct store_collection *find_collection(void *ud, const char *name_or_id)
{
    struct found_list *fl = ud;
    struct store_collection *c = NULL;
    if (fl->n == ARRAY_LEN(fl->items) || store_collection_get(fl->env->store, name_or_id, &c) != 0)
        return NULL;
    fl->items[fl->n++] = c;
    return c;
}

static void reply_filter_error(struct http_req *req, const struct filter_error *fe, int rc)
{
    if (rc == ERR_DENIED)
        http_reply_error(req, 403, fe->msg, NULL);
    else
        http_reply_error(req, 400, "Invalid filter or sort parameters.",
                         json_pack("{s:s}", "detail", fe->msg));
}

bool api__list_query(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     struct store_list_query *q)
{
    struct arena *a = http_req_arena(req);
    struct found_list *fl = arena_zalloc(a, sizeof(*fl));
    fl->env = env;
    arena_on_release(a, found_release, fl);
    struct filter_ctx fctx = {
        .collection = c,
        .alias = STORE_LIST_ALIAS,
        .find_collection = find_collection,
        .find_ud = fl,
        .now_us = time_now_us(),
        .request = NULL,
        .client = false, /* superusers: collections API */
    };
    return api__list_query_ctx(req, &fctx, q);
}

bool api__list_query_ctx(struct http_req *req, const struct filter_ctx *fctx,
                         struct store_list_query *q)
{
    int64_t page = 1, per_page = 30;
    bool skip_total = false;
    const char *s;
    memset(q, 0, sizeof(*q));
    if ((s = http_req_query(req, "page")) && *s && api__parse_int(s, &page) != 0) {
        http_reply_error(req, 400, "Invalid page parameter.", NULL);
        return false;
    }
    if ((s = http_req_query(req, "perPage")) && *s && api__parse_int(s, &per_page) != 0) {
        http_reply_error(req, 400, "Invalid perPage parameter.", NULL);
        return false;
    }
    if ((s = http_req_query(req, "skipTotal")) && *s && api__parse_bool(s, &skip_total) != 0) {
        http_reply_error(req, 400, "Invalid skipTotal parameter.", NULL);
        return false;
    }
    q->page = page < 1 ? 1 : page;
    q->per_page = per_page < 1 ? 30 : per_page > 1000 ? 1000 : per_page;
    q->skip_total = skip_total;

    struct arena *a = http_req_arena(req);
    struct filter_error fe;
    const char *filter = http_req_query(req, "filter");
    if (filter && *filter) {
        struct filter_sql fs;
        int rc = filter_compile(fctx, filter, strlen(filter), a, &fs, &fe);
        if (rc) {
            reply_filter_error(req, &fe, rc);
            return false;
        }
        q->where_sql = fs.sql;
        q->where_params = api__filter_params(a, &fs);
    }
    const char *sort = http_req_query(req, "sort");
    if (sort && *sort) {
        struct filter_sql fs;
        int rc = filter_compile_sort(fctx, sort, strlen(sort), a, &fs, &fe);
        if (rc) {
            reply_filter_error(req, &fe, rc);
            return false;
        }
        if (fs.sql_len) {
            q->order_sql = fs.sql;
            q->order_params = api__filter_params(a, &fs);
        }
    }
    return true;
}

void api__reply_list(struct http_req *req, const struct store_list_query *q,
                     const struct store_list_result *res, json_t *items)
{
    http_reply_json(req, 200,
                    json_pack("{s:o, s:I, s:I, s:I, s:I}", "items", items, "page",
                              (json_int_t)q->page, "perPage", (json_int_t)q->per_page, "totalItems",
                              (json_int_t)res->total_items, "totalPages",
                              (json_int_t)res->total_pages));
}

/* ---- expand ---- */

/* Splits "a,b.c, a.d" into a tree {"a":{"d":{}},"b":{"c":{}}}. */
static json_t *path_tree(const char *expand)
{
    json_t *root = json_object();
    const char *p = expand;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        json_t *node = root;
        size_t depth = 0;
        size_t i = 0;
        while (i < len && depth < API_EXPAND_MAX_DEPTH) {
            while (i < len && isspace((unsigned char)p[i]))
                i++;
            size_t s = i;
            while (i < len && p[i] != '.')
                i++;
            size_t e = i;
            while (e > s && isspace((unsigned char)p[e - 1]))
                e--;
            if (e > s && e - s < 256) {
                char name[256];
                memcpy(name, p + s, e - s);
                name[e - s] = '\0';
                json_t *child = json_object_get(node, name);
                if (!child) {
                    child = json_object();
                    json_object_set_new(node, name, child);
                }
                node = child;
                depth++;
            }
            i++; /* skip '.' */
        }
        if (!end)
            break;
        p = end + 1;
    }
    return root;
}

static bool unique_on(const struct store_collection *c, const char *field)
{
    for (size_t i = 0; i < c->n_indexes; i++) {
        const char *ix = c->indexes[i];
        if (strncmp(ix, "CREATE UNIQUE INDEX", 19) != 0)
            continue;
        const char *open = strchr(ix, '(');
        char want[300];
        snprintf(want, sizeof(want), "(`%s`)", field);
        if (open && strncmp(open, want, strlen(want)) == 0)
            return true;
    }
    return false;
}

/* One expand request: the records it may still load and the bytes of JSON they may still
 * come to (guards against fan-out through multiple relations six levels deep: a record
 * appears once for every path that reaches it), its deadline, and why it stopped. */
struct expand_ctx {
    struct api_env *env;
    struct api_rules *ar; /* NULL: no rules (superuser) */
    size_t budget;
    size_t bytes_left;
    int64_t deadline_us; /* 0: none */
    int rc;              /* ERR_LIMIT, ERR_TIMEOUT: stop, nothing more is loaded */
};

/* Whether the expansion may go on loading records (false once it stopped). */
static bool may_load(struct expand_ctx *x)
{
    if (!x->rc && x->deadline_us && time_mono_us() >= x->deadline_us)
        x->rc = ERR_TIMEOUT;
    return x->rc == 0;
}

/* Counts a loaded (and shaped) record against the byte budget, before it joins the answer:
 * the answer stops growing as soon as it passes the limit instead of being measured once
 * built. false (x->rc ERR_LIMIT) when it does not fit. */
static bool spend(struct expand_ctx *x, const json_t *rec)
{
    size_t n = json_dumpb(rec, NULL, 0, JSON_COMPACT) + 16; /* + its key and separators */
    if (n > x->bytes_left) {
        x->rc = ERR_LIMIT;
        return false;
    }
    x->bytes_left -= n;
    return true;
}

/* A store failure while expanding: a timeout stops everything, anything else (a record
 * that is missing or not visible) only leaves that record out. */
static void store_failed(struct expand_ctx *x, int rc)
{
    if (rc == ERR_TIMEOUT)
        x->rc = ERR_TIMEOUT;
}

/* The target's viewRule as a condition. false: nothing of target may be expanded. */
static bool view_cond(struct expand_ctx *x, const struct store_collection *target,
                      struct store_cond *cond)
{
    cond->sql = NULL;
    cond->params = NULL;
    if (!x->ar)
        return true;
    const char *ctx = x->ar->fr.context;
    x->ar->fr.context = "expand"; /* @request.context, as PocketBase sets it for expansions */
    int rc = api__rule_compile(x->ar, target, STORE_RULE_VIEW, cond);
    x->ar->fr.context = ctx;
    return rc == 0;
}

static void expand_tree(struct expand_ctx *x, const struct store_collection *c, json_t *records,
                        json_t *tree);

static void expand_one(struct expand_ctx *x, const struct store_collection *c, json_t *rec,
                       const char *key, json_t *sub)
{
    struct api_env *env = x->env;
    json_t *result = NULL;
    struct store_collection *target = NULL;
    const struct store_field *f = store_collection_field(c, key);
    if (f && f->type == STORE_FIELD_RELATION) {
        if (store_collection_get(env->store, f->collection_id, &target) != 0)
            return;
        struct store_cond cond;
        if (!view_cond(x, target, &cond)) {
            store_collection_unref(target);
            return;
        }
        json_t *v = json_object_get(rec, key);
        json_t *found = json_array();
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n; i++) {
            const char *id = json_string_value(json_is_array(v) ? json_array_get(v, i) : v);
            json_t *r = NULL;
            if (x->budget == 0 || !may_load(x))
                break;
            if (!id || !*id)
                continue;
            int rc = store_record_get_if(env->store, target, id, cond.sql ? &cond : NULL, &r);
            if (rc) {
                store_failed(x, rc);
                continue;
            }
            api__rules_shape(x->ar, target, r);
            if (!spend(x, r)) {
                json_decref(r);
                break;
            }
            json_array_append_new(found, r);
            x->budget--;
        }
        if (json_object_size(sub) && !x->rc)
            expand_tree(x, target, found, sub);
        if (store_field_multiple(f))
            result = json_array_size(found) ? json_incref(found) : NULL;
        else if (json_array_size(found))
            result = json_incref(json_array_get(found, 0));
        json_decref(found);
    } else {
        const char *via = strstr(key, "_via_");
        if (!via || via == key)
            return;
        char cname[256];
        size_t cl = (size_t)(via - key);
        if (cl >= sizeof(cname))
            return;
        memcpy(cname, key, cl);
        cname[cl] = '\0';
        const char *fname = via + 5;
        if (store_collection_get(env->store, cname, &target) != 0)
            return;
        const struct store_field *bf = store_collection_field(target, fname);
        if (!bf || bf->type != STORE_FIELD_RELATION || strcmp(bf->collection_id, c->id) != 0 ||
            (x->ar && bf->hidden)) {
            store_collection_unref(target);
            return;
        }
        const char *id = json_string_value(json_object_get(rec, "id"));
        json_t *found = NULL;
        size_t max = x->budget < API_BACKREL_MAX ? x->budget : API_BACKREL_MAX;
        struct store_cond cond;
        int rc = 0;
        if (!id || max == 0 || !may_load(x) || !view_cond(x, target, &cond) ||
            (rc = store_record_referencing(env->store, target, fname, id, max, &found)) != 0) {
            store_failed(x, rc);
            store_collection_unref(target);
            return;
        }
        for (size_t i = json_array_size(found); i-- > 0;) {
            json_t *r = json_array_get(found, i), *chk = NULL;
            const char *rid = json_string_value(json_object_get(r, "id"));
            if (!may_load(x))
                break;
            if (cond.sql &&
                (!rid || (rc = store_record_get_if(env->store, target, rid, &cond, &chk)) != 0)) {
                store_failed(x, rc);
                json_array_remove(found, i);
            } else {
                api__rules_shape(x->ar, target, r);
                if (!spend(x, r))
                    break;
            }
            json_decref(chk);
        }
        if (x->rc) { /* the answer is an error: keep nothing of it */
            json_decref(found);
            store_collection_unref(target);
            return;
        }
        x->budget -= json_array_size(found);
        if (json_object_size(sub))
            expand_tree(x, target, found, sub);
        if (!store_field_multiple(bf) && unique_on(target, fname))
            result = json_array_size(found) ? json_incref(json_array_get(found, 0)) : NULL;
        else
            result = json_array_size(found) ? json_incref(found) : NULL;
        json_decref(found);
    }
    if (x->rc) {
        json_decref(result);
        store_collection_unref(target);
        return;
    }
    json_t *ex = json_object_get(rec, "expand");
    if (!ex) {
        /* keep the record's keys in byte order: re-insert the ones after "expand" */
        ex = json_object();
        json_object_set_new(rec, "expand", ex);
        json_t *later = json_object();
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(rec, tmp, k, v)
        {
            if (strcmp(k, "expand") > 0) {
                json_object_set(later, k, v);
                json_object_del(rec, k);
            }
        }
        json_object_update(rec, later);
        json_decref(later);
    }
    if (result)
        json_object_set_new(ex, key, result);
    store_collection_unref(target);
}

static void expand_tree(struct expand_ctx *x, const struct store_collection *c, json_t *records,
                        json_t *tree)
{
    const char *key;
    json_t *sub;
    for (size_t i = 0; i < json_array_size(records) && !x->rc; i++) {
        json_t *rec = json_array_get(records, i);
        json_object_foreach(tree, key, sub)
        {
            if (x->rc)
                break;
            expand_one(x, c, rec, key, sub);
        }
    }
}

static int expand_run(struct expand_ctx *x, const struct store_collection *c, json_t *records,
                      const char *expand)
{
    if (!expand || !*expand)
        return 0;
    if (!x->bytes_left)
        x->bytes_left = API_RECORDS_MAX_EXPAND;
    json_t *tree = path_tree(expand);
    expand_tree(x, c, records, tree);
    json_decref(tree);
    return x->rc;
}

int api__expand(struct api_env *env, const struct store_collection *c, json_t *records,
                const char *expand)
{
    return api__expand_max(env, c, records, expand, API_EXPAND_MAX_RECORDS);
}

int api__expand_max(struct api_env *env, const struct store_collection *c, json_t *records,
                    const char *expand, size_t max_records)
{
    struct expand_ctx x = {
        .env = env, .budget = max_records, .bytes_left = env->records.max_expand_bytes};
    return expand_run(&x, c, records, expand);
}

int api__expand_rules(struct api_rules *ar, const struct store_collection *c, json_t *records,
                      const char *expand)
{
    struct expand_ctx x = {.env = ar->env,
                           .ar = ar->superuser ? NULL : ar,
                           .budget = API_EXPAND_MAX_RECORDS,
                           .bytes_left = ar->env->records.max_expand_bytes,
                           .deadline_us = ar->deadline_us};
    return expand_run(&x, c, records, expand);
}

void api__expand_fail(int rc, struct api_fail *f)
{
    *f = (struct api_fail){.status = rc == ERR_TIMEOUT || rc == ERR_LIMIT ? 400 : 500};
    if (rc == ERR_TIMEOUT)
        f->message = API_TIMEOUT_MESSAGE;
    else if (rc == ERR_LIMIT)
        f->message = "The expanded relations are too large for one response; expand fewer "
                     "relations or ask for fewer records (perPage).";
}

void api__reply_expand_error(struct http_req *req, int rc)
{
    struct api_fail f;
    api__expand_fail(rc, &f);
    api__reply_fail(req, &f);
}

/* ---- fields ---- */

/* Leaf options live under this key of a node (never a JSON key of a record). */
#define EXCERPT_KEY "\x01excerpt"

static json_t *fields_tree(const char *fields)
{
    json_t *root = json_object();
    const char *p = fields;
    while (*p) {
        /* a comma inside :excerpt(...) does not end the item */
        const char *q = p;
        int depth = 0;
        while (*q && (depth > 0 || *q != ',')) {
            if (*q == '(')
                depth++;
            else if (*q == ')' && depth > 0)
                depth--;
            q++;
        }
        char item[512];
        size_t len = (size_t)(q - p);
        while (len && isspace((unsigned char)p[0])) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (len && len < sizeof(item)) {
            memcpy(item, p, len);
            item[len] = '\0';
            json_t *excerpt = NULL;
            char *mod = strstr(item, ":excerpt(");
            if (mod) {
                long max = 0;
                char ell[16] = "";
                if (sscanf(mod + 9, "%ld , %15[a-zA-Z0-9]", &max, ell) >= 1 && max > 0) {
                    bool e = false;
                    if (api__parse_bool(ell, &e) != 0)
                        e = false;
                    excerpt = json_pack("{s:i, s:b}", "max", (int)max, "ellipsis", e);
                }
                *mod = '\0';
            }
            json_t *node = root;
            char *save = NULL;
            for (char *seg = strtok_r(item, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
                json_t *child = json_object_get(node, seg);
                if (!child) {
                    child = json_object();
                    json_object_set_new(node, seg, child);
                }
                node = child;
            }
            if (excerpt && node != root)
                json_object_set_new(node, EXCERPT_KEY, excerpt);
            else
                json_decref(excerpt);
        }
        if (!*q)
            break;
        p = q + 1;
    }
    return root;
}

static json_t *excerpt(const char *s, size_t max, bool ellipsis)
{
    struct buf b;
    buf_init(&b);
    bool in_tag = false, space = false;
    size_t runes = 0;
    bool cut = false;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '<') {
            in_tag = true;
            continue;
        }
        if (in_tag) {
            if (ch == '>') {
                in_tag = false;
                space = true;
            }
            continue;
        }
        if (isspace(ch)) {
            space = true;
            continue;
        }
        if ((ch & 0xC0) != 0x80) {
            if (runes + (space && b.len ? 1 : 0) >= max) {
                cut = true;
                break;
            }
            if (space && b.len) {
                buf_putc(&b, ' ');
                runes++;
            }
            runes++;
        }
        space = false;
        buf_putc(&b, (char)ch);
    }
    if (cut && ellipsis)
        buf_puts(&b, "...");
    json_t *r = json_stringn(b.ptr ? b.ptr : "", b.len);
    buf_release(&b);
    return r;
}

static json_t *pick(json_t *v, json_t *tree)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_append_new(a, pick(json_array_get(v, i), tree));
        return a;
    }
    if (!json_is_object(v))
        return json_incref(v);
    json_t *o = json_object();
    const char *key;
    json_t *val;
    json_t *star = json_object_get(tree, "*");
    json_object_foreach(v, key, val)
    {
        json_t *node = json_object_get(tree, key);
        if (!node && !star)
            continue;
        if (!node)
            node = star;
        json_t *ex = json_object_get(node, EXCERPT_KEY);
        size_t n_children = json_object_size(node) - (ex ? 1 : 0);
        if (ex && json_is_string(val))
            json_object_set_new(o, key,
                                excerpt(json_string_value(val),
                                        (size_t)json_integer_value(json_object_get(ex, "max")),
                                        json_is_true(json_object_get(ex, "ellipsis"))));
        else if (n_children)
            json_object_set_new(o, key, pick(val, node));
        else
            json_object_set(o, key, val);
    }
    return o;
}

json_t *api__pick_fields(json_t *v, const char *fields)
{
    if (!fields || !*fields)
        return json_incref(v);
    json_t *tree = fields_tree(fields);
    json_t *r = json_object_size(tree) ? pick(v, tree) : json_incref(v);
    json_decref(tree);
    return r;
}

void api__reply_picked(struct http_req *req, json_t *v)
{
    json_t *picked = api__pick_fields(v, http_req_query(req, "fields"));
    json_decref(v);
    http_reply_json(req, 200, picked);
}
