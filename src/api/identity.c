/* identity.c - who makes a request: the Authorization token checked against the store. */
#include <string.h>

#include "api/api_int.h"
#include "store/store.h"

static const struct api_identity guest = {false, NULL, NULL, false};

/* auth_token_lookup_cb: the current tokenKey of an auth record. The ids come from a token
 * whose signature is not checked yet; the store binds them as parameters. */
int api__token_lookup(void *arg, const char *collection_id, const char *record_id,
                      char token_key_out[AUTH_TOKEN_KEY_MAX + 1])
{
    struct api_env *env = arg;
    struct store_collection *c = NULL;
    int rc = store_collection_get(env->store, collection_id, &c);
    if (rc != 0)
        return ERR_NOTFOUND;
    /* by id only: a name in the token would let one collection stand for another */
    if (strcmp(c->id, collection_id) != 0 || c->type != STORE_COLLECTION_AUTH) {
        store_collection_unref(c);
        return ERR_NOTFOUND;
    }
    rc = store_auth_token_key(env->store, c, record_id, token_key_out, AUTH_TOKEN_KEY_MAX + 1);
    if (rc == 0 && token_key_out[0] == '\0')
        rc = ERR_NOTFOUND;
    store_collection_unref(c);
    return rc == 0 ? 0 : ERR_NOTFOUND;
}

/* Through the per-thread cache of verified tokens while the store offers its token epoch (read
 * here, before any lookup), else in full. */
static int verify(struct api_env *env, struct str token, struct auth_token_claims *claims)
{
    int64_t now_s = time_now_us() / 1000000;
    uint64_t scope, epoch;
    if (store_auth_epoch(env->store, &scope, &epoch) != 0)
        return auth_token_verify(env->secret, token.ptr, token.len, now_s, api__token_lookup, env,
                                 claims);
    return auth_token_verify_cached(env->secret, token.ptr, token.len, now_s, scope, epoch,
                                    api__token_lookup, env, claims);
}

const struct api_identity *api__identity(struct http_req *req, struct api_env *env)
{
    const struct api_identity *cached = http_req_data(req);
    if (cached)
        return cached;
    const struct api_identity *who = &guest;
    struct str token;
    struct auth_token_claims claims;
    if (env->store && env->secret &&
        auth_token_from_header(http_req_header(req, "Authorization"), &token) == 0 &&
        verify(env, token, &claims) == 0) {
        struct arena *a = http_req_arena(req);
        struct api_identity *id = arena_zalloc(a, sizeof(*id));
        id->record_id = arena_strdup(a, claims.record_id);
        id->collection_id = arena_strdup(a, claims.collection_id);
        id->superuser = strcmp(claims.collection_id, API_SUPERUSERS_ID) == 0;
        id->refreshable = claims.refreshable;
        who = id;
    }
    http_req_set_data(req, (void *)who);
    return who;
}

const struct api_identity *api__file_token_identity(struct http_req *req, struct api_env *env,
                                                    const char *token)
{
    struct auth_token_claims claims;
    if (!token || !env->store || !env->secret ||
        auth_token_verify_file(env->secret, token, strlen(token), time_now_us() / 1000000,
                               api__token_lookup, env, &claims) != 0)
        return NULL;
    struct arena *a = http_req_arena(req);
    struct api_identity *id = arena_zalloc(a, sizeof(*id));
    id->record_id = arena_strdup(a, claims.record_id);
    id->collection_id = arena_strdup(a, claims.collection_id);
    id->superuser = strcmp(claims.collection_id, API_SUPERUSERS_ID) == 0;
    return id;
}

bool api__is_superuser(struct http_req *req, void *env)
{
    return api__identity(req, env)->superuser;
}

struct hash_job {
    api_hash_done_cb done;
    void *done_arg;
};

static void hashed(void *arg, const struct auth_pool_result *res)
{
    struct hash_job job = *(struct hash_job *)arg;
    free(arg);
    job.done(job.done_arg, res->rc, res->rc == 0 ? res->hash : NULL);
}

int api__hash_password(const char *password, api_hash_done_cb done, void *done_arg, void *arg)
{
    struct api_env *env = arg;
    struct hash_job *job = xmalloc(sizeof(*job));
    job->done = done;
    job->done_arg = done_arg;
    int rc = auth_pool_hash(env->pool, password, hashed, job);
    if (rc != 0)
        free(job);
    return rc;
}
