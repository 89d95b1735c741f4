/* collections.c - /api/collections: list, view, create, update and delete collections
 * (superusers only), in PocketBase's collection JSON. */
#include <string.h>
#include <strings.h>

#include "api/records_int.h"

static void reply_collection(struct http_req *req, struct store_collection *c)
{
    json_t *j = store_collection_to_json(c);
    json_t *picked = api__pick_fields(j, http_req_query(req, "fields"));
    json_decref(j);
    http_reply_json(req, 200, picked);
}

static int by_name(const void *a, const void *b)
{
    const struct store_collection *x = *(struct store_collection *const *)a;
    const struct store_collection *y = *(struct store_collection *const *)b;
    return strcasecmp(x->name, y->name);
}

static int by_created(const void *a, const void *b)
{
    const struct store_collection *x = *(struct store_collection *const *)a;
    const struct store_collection *y = *(struct store_collection *const *)b;
    return strcmp(x->created ? x->created : "", y->created ? y->created : "");
}

static void list_collections(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    int64_t page = 1, per_page = 30;
    bool skip_total = false;
    const char *s;
    if (((s = http_req_query(req, "page")) && api__parse_int(s, &page) != 0) ||
        ((s = http_req_query(req, "perPage")) && api__parse_int(s, &per_page) != 0) ||
        ((s = http_req_query(req, "skipTotal")) && *s && api__parse_bool(s, &skip_total) != 0)) {
        http_reply_error(req, 400, "Invalid query parameters.", NULL);
        return;
    }
    if (http_req_query(req, "filter") && *http_req_query(req, "filter")) {
        http_reply_error(req, 400, "Filtering collections is not supported.", NULL);
        return;
    }
    if (page < 1)
        page = 1;
    if (per_page < 1)
        per_page = 30;
    if (per_page > 1000)
        per_page = 1000;
    struct store_collection **all;
    size_t n;
    if (store_collection_list(env->store, &all, &n) != 0) {
        http_reply_error(req, 500, NULL, NULL);
        return;
    }
    const char *sort = http_req_query(req, "sort");
    bool desc = sort && sort[0] == '-';
    const char *key = sort ? sort + (sort[0] == '-' || sort[0] == '+') : "";
    if (strcmp(key, "name") == 0)
        qsort(all, n, sizeof(all[0]), by_name);
    else if (strcmp(key, "created") == 0)
        qsort(all, n, sizeof(all[0]), by_created);
    if (desc)
        for (size_t i = 0; i < n / 2; i++) {
            struct store_collection *t = all[i];
            all[i] = all[n - 1 - i];
            all[n - 1 - i] = t;
        }
    json_t *items = json_array();
    for (int64_t i = (page - 1) * per_page; i < (int64_t)n && i < page * per_page; i++)
        json_array_append_new(items, store_collection_to_json(all[i]));
    json_t *picked = api__pick_fields(items, http_req_query(req, "fields"));
    json_decref(items);
    json_int_t total = skip_total ? -1 : (json_int_t)n;
    json_int_t pages =
        skip_total ? -1 : (json_int_t)((n + (size_t)per_page - 1) / (size_t)per_page);
    http_reply_json(req, 200,
                    json_pack("{s:o, s:I, s:I, s:I, s:I}", "items", picked, "page",
                              (json_int_t)page, "perPage", (json_int_t)per_page, "totalItems",
                              total, "totalPages", pages));
    store_collection_list_free(all, n);
}

static void view_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    struct store_collection *c = NULL;
    if (store_collection_get(env->store, http_req_param(req, "collection"), &c) != 0) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    reply_collection(req, c);
    store_collection_unref(c);
}

static void reply_write_error(struct http_req *req, struct api_env *env, int rc, json_t *errors,
                              const char *what)
{
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, what, errors ? json_incref(errors) : NULL);
    } else if (rc == ERR_NOTFOUND) {
        http_reply_error(req, 404, NULL, NULL);
    } else if (rc == ERR_BUSY) {
        http_reply_error(req, 503, "The data store is busy; try again.", NULL);
    } else {
        xlog_error("collection write failed: %s: %s", err_str(rc), store_errmsg(env->store));
        http_reply_error(req, 500, NULL, NULL);
    }
}

static void create_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    int rc = store_collection_create(env->store, body, &errors, &c);
    if (rc)
        reply_write_error(req, env, rc, errors, "Failed to create collection.");
    else
        reply_collection(req, c);
    json_decref(errors);
    store_collection_unref(c);
}

static void update_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, true);
    if (!body)
        return;
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    int rc =
        store_collection_update(env->store, http_req_param(req, "collection"), body, &errors, &c);
    if (rc)
        reply_write_error(req, env, rc, errors, "Failed to update collection.");
    else
        reply_collection(req, c);
    json_decref(errors);
    store_collection_unref(c);
}

static void delete_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    int rc = store_collection_delete(env->store, http_req_param(req, "collection"));
    if (rc == 0)
        http_reply_empty(req, 204);
    else if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc == ERR_CONFLICT || rc == ERR_DENIED)
        http_reply_error(req, 400, store_errmsg(env->store), NULL);
    else
        reply_write_error(req, env, rc, NULL, "Failed to delete collection.");
}

void api__register_collections(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/collections", list_collections, env);
    http_route(r, "POST", "/api/collections", create_collection, env);
    http_route(r, "GET", "/api/collections/{collection}", view_collection, env);
    http_route(r, "PATCH", "/api/collections/{collection}", update_collection, env);
    http_route(r, "DELETE", "/api/collections/{collection}", delete_collection, env);
}
