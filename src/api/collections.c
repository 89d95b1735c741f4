/* collections.c - /api/collections: list, view, create, update and delete collections
 * (superusers only), in PocketBase's collection JSON. */
#include <string.h>
#include <strings.h>

#include "api/records_int.h"

static void reply_collection(struct http_req *req, struct store_collection *c)
{
    api__reply_picked(req, store_collection_to_json(c));
}

static void list_collections(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    struct store_collection *cat = store_collection_catalog(env->store);
    struct store_list_query q;
    struct store_list_result res = {0};
    if (!api__list_query(req, env, cat, &q))
        goto out;
    int rc = store_record_list(env->store, cat, &q, &res);
    if (rc) {
        http_reply_error(req, rc == ERR_INVALID ? 400 : 500,
                         rc == ERR_INVALID ? "Invalid filter or sort parameters." : NULL, NULL);
        goto out;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < json_array_size(res.items); i++) {
        struct store_collection *c = NULL;
        const char *id = json_string_value(json_object_get(json_array_get(res.items, i), "id"));
        if (id && store_collection_get(env->store, id, &c) == 0) /* gone meanwhile: skipped */
            json_array_append_new(items, store_collection_to_json(c));
        store_collection_unref(c);
    }
    json_t *picked = api__pick_fields(items, http_req_query(req, "fields"));
    json_decref(items);
    api__reply_list(req, &q, &res, picked);
out:
    json_decref(res.items);
    store_collection_unref(cat);
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

static const char *const rule_keys[STORE_N_RULES] = {
    "listRule", "viewRule", "createRule", "updateRule", "deleteRule", "authRule", "manageRule",
};

/* Whether every rule of c compiles against c; with patch, its rule keys stand for c's. A rule
 * that does not compile gets PocketBase's error in errors. */
static bool rules_valid(struct http_req *req, struct api_env *env, const struct store_collection *c,
                        const json_t *patch, json_t *errors)
{
    for (int i = 0; i < STORE_N_RULES; i++) {
        if (i >= STORE_RULE_AUTH && c->type != STORE_COLLECTION_AUTH)
            continue;
        const char *rule = c->rules[i];
        json_t *v = patch ? json_object_get(patch, rule_keys[i]) : NULL;
        if (v)
            rule = json_string_value(v); /* null or not a string: the store decides */
        char msg[400];
        if (api__rule_check(req, env, c, rule, msg, sizeof(msg)) != 0) {
            char full[480];
            snprintf(full, sizeof(full), "Invalid rule. Raw error: %s", msg);
            json_object_set_new(
                errors, rule_keys[i],
                json_pack("{s:s,s:s}", "code", "validation_invalid_rule", "message", full));
        }
    }
    return json_object_size(errors) == 0;
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
    json_t *rerrs = json_object();
    if (rc) {
        reply_write_error(req, env, rc, errors, "Failed to create collection.");
    } else if (!rules_valid(req, env, c, NULL, rerrs)) {
        /* the rules can only be compiled against the new collection: undo it */
        if (store_collection_delete(env->store, c->id) != 0)
            xlog_error("cannot undo collection %s: %s", c->name, store_errmsg(env->store));
        http_reply_error(req, 400, "Failed to create collection.", json_incref(rerrs));
    } else {
        reply_collection(req, c);
    }
    json_decref(rerrs);
    json_decref(errors);
    store_collection_unref(c);
}

/* Whether a file field of old is gone (or no longer a file field) in c. */
static bool file_field_removed(const struct store_collection *old, const struct store_collection *c)
{
    for (size_t i = 0; i < old->n_fields; i++) {
        if (old->fields[i].type != STORE_FIELD_FILE)
            continue;
        const struct store_field *nf = store_collection_field_by_id(c, old->fields[i].id);
        if (!nf || nf->type != STORE_FIELD_FILE)
            return true;
    }
    return false;
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
    struct store_collection *c = NULL, *old = NULL;
    json_t *rerrs = json_object();
    const char *name = http_req_param(req, "collection");
    if (json_is_object(body) && store_collection_get(env->store, name, &old) == 0 &&
        !json_object_get(body, "fields") && !rules_valid(req, env, old, body, rerrs)) {
        /* the schema stays: the new rules are checked before anything is written */
        http_reply_error(req, 400, "Failed to update collection.", json_incref(rerrs));
        goto out;
    }
    int rc = store_collection_update(env->store, name, body, &errors, &c);
    if (rc) {
        reply_write_error(req, env, rc, errors, "Failed to update collection.");
    } else if (old && !rules_valid(req, env, c, NULL, rerrs)) {
        /* new fields and new rules: the rules could only be checked against the new schema;
         * the schema change stays, the rules go back to what they were */
        json_t *undo = json_object();
        for (int i = 0; i < STORE_N_RULES; i++)
            if (i < STORE_RULE_AUTH || old->type == STORE_COLLECTION_AUTH)
                json_object_set_new(undo, rule_keys[i],
                                    old->rules[i] ? json_string(old->rules[i]) : json_null());
        json_t *uerr = NULL;
        if (store_collection_update(env->store, c->id, undo, &uerr, NULL) != 0)
            xlog_error("cannot restore the rules of %s: %s", c->name, store_errmsg(env->store));
        json_decref(uerr);
        json_decref(undo);
        http_reply_error(req, 400, "Failed to update collection.", json_incref(rerrs));
    } else {
        if (old && file_field_removed(old, c))
            api__files_collection_changed(env, c->id);
        reply_collection(req, c);
    }
out:
    json_decref(rerrs);
    json_decref(errors);
    store_collection_unref(c);
    store_collection_unref(old);
}

static void delete_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    struct store_collection *old = NULL;
    char id[128] = "";
    if (store_collection_get(env->store, http_req_param(req, "collection"), &old) == 0)
        snprintf(id, sizeof(id), "%s", old->id);
    store_collection_unref(old);
    int rc = store_collection_delete(env->store, http_req_param(req, "collection"));
    if (rc == 0 && *id)
        api__files_collection_changed(env, id); /* its files go */
    if (rc == 0)
        http_reply_empty(req, 204);
    else if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc == ERR_CONFLICT || rc == ERR_DENIED)
        http_reply_error(req, 400, store_errmsg(env->store), NULL);
    else
        reply_write_error(req, env, rc, NULL, "Failed to delete collection.");
}

static void truncate_collection(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    int rc = store_collection_truncate(env->store, http_req_param(req, "collection"));
    if (rc == 0) {
        struct store_collection *c = NULL;
        if (store_collection_get(env->store, http_req_param(req, "collection"), &c) == 0)
            api__files_collection_changed(env, c->id); /* no record is left to name a file */
        store_collection_unref(c);
        http_reply_empty(req, 204);
    } else if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc == ERR_CONFLICT)
        http_reply_error(req, 400,
                         "Failed to delete record. Make sure that the record is not part of a "
                         "required relation reference.",
                         NULL);
    else
        reply_write_error(req, env, rc, NULL, "Failed to truncate collection.");
}

static void get_scaffolds(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    api__reply_picked(req, store_collection_scaffolds());
}

/* POST /api/collections/meta/dry-run-view {"query":"SELECT ..."}: the fields a view
 * collection with this query would have, nothing saved. */
static void dry_run_view(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    json_t *q = json_object_get(body, "query");
    if (!json_is_string(q)) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                         json_pack("{s:{s:s,s:s}}", "query", "code", "validation_required",
                                   "message", "Cannot be blank."));
        return;
    }
    json_t *errors = NULL, *fields = NULL;
    int rc = store_collection_view_fields(env->store, json_string_value(q), &errors, &fields);
    if (rc == 0) {
        json_t *out = json_object();
        json_object_set_new(out, "fields", fields);
        api__reply_picked(req, out);
    } else {
        reply_write_error(req, env, rc, errors, "Invalid view query.");
    }
    json_decref(errors);
}

static void import_collections(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    json_t *errors = NULL;
    /* the collections with file fields before: after the import, the files of those it
     * dropped (deleteMissing) or whose file fields it removed go */
    struct store_collection **before = NULL;
    size_t n_before = 0;
    if (store_collection_list(env->store, &before, &n_before) != 0)
        n_before = 0;
    int rc = store_collection_import(env->store, json_object_get(body, "collections"),
                                     json_is_true(json_object_get(body, "deleteMissing")), &errors);
    for (size_t i = 0; rc == 0 && i < n_before; i++) {
        struct store_collection *now = NULL;
        if (store_collection_get(env->store, before[i]->id, &now) != 0 ||
            strcmp(now->id, before[i]->id) != 0 || file_field_removed(before[i], now))
            api__files_collection_changed(env, before[i]->id);
        store_collection_unref(now);
    }
    store_collection_list_free(before, n_before);
    if (rc == 0)
        http_reply_empty(req, 204);
    else
        reply_write_error(req, env, rc, errors, "Failed to import collections.");
    json_decref(errors);
}

void api__register_collections(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/collections", list_collections, env);
    http_route(r, "GET", "/api/collections/meta/scaffolds", get_scaffolds, env);
    http_route(r, "PUT", "/api/collections/import", import_collections, env);
    http_route(r, "POST", "/api/collections/meta/dry-run-view", dry_run_view, env);
    http_route(r, "POST", "/api/collections", create_collection, env);
    http_route(r, "GET", "/api/collections/{collection}", view_collection, env);
    http_route(r, "PATCH", "/api/collections/{collection}", update_collection, env);
    http_route(r, "DELETE", "/api/collections/{collection}", delete_collection, env);
    http_route(r, "DELETE", "/api/collections/{collection}/truncate", truncate_collection, env);
}
