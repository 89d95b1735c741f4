/* keys.c - write keys through HTTP (superusers), and the resolver capture uses. */
#include <string.h>

#include "api/records_int.h"

int api__resolve_key(void *arg, const char *key, char *name_out, size_t name_cap)
{
    struct api_env *env = arg;
    char hash[CAPTURE_KEY_HASH_LEN + 1];
    if (strlen(key) > 256)
        return ERR_NOTFOUND;
    capture_key_hash(key, hash);
    return store_writekey_find(env->store, hash, name_out, name_cap);
}

static void create_key(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, false);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !capture_key_name_valid(name)) {
        json_t *data = json_pack("{s:{s:s,s:s}}", "name", "code", "validation_invalid_format",
                                 "message", "Must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -.");
        http_reply_error(req, 400, "Failed to create write key.", data);
        return;
    }
    char key[CAPTURE_KEY_LEN + 1], hash[CAPTURE_KEY_HASH_LEN + 1],
        prefix[CAPTURE_KEY_PREFIX_LEN + 1];
    capture_key_new(key, hash, prefix);
    int rc = store_writekey_create(env->store, name, hash, prefix);
    if (rc == ERR_CONFLICT) {
        json_t *data = json_pack("{s:{s:s,s:s}}", "name", "code", "validation_not_unique",
                                 "message", "Value must be unique.");
        http_reply_error(req, 400, "Failed to create write key.", data);
        return;
    }
    if (rc != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:s}", "name", name, "key", key, "prefix", prefix));
}

static void list_keys(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *items = NULL;
    if (store_writekey_list(env->store, &items) != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    http_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static void revoke_key(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    int rc = store_writekey_revoke(env->store, http_req_param(req, "name"));
    if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc != 0)
        http_reply_error(req, 503, NULL, NULL);
    else
        http_reply_empty(req, 204);
}

void api__register_keys(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/capture/keys", list_keys, env);
    http_route(r, "POST", "/api/capture/keys", create_key, env);
    http_route(r, "DELETE", "/api/capture/keys/{name}", revoke_key, env);
}
