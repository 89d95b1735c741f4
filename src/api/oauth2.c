/* oauth2.c - sign-in with OAuth2 / OpenID Connect providers, the providers of auth-methods,
 * the OAuth2 redirect page, the providers list, and impersonation.
 *
 * auth-with-oauth2 calls the provider (token endpoint, JWKS, user info): that can take
 * seconds, so the request is suspended and the whole sign-in runs on an oauth2 worker thread
 * (auth/oauth2.c), which then answers through api__auth_finish - the one answer of every
 * sign-in - and resumes the request. The links between auth records and provider accounts
 * live in the `_externalAuths` system collection, readable and deletable by their owner
 * through the records API (the SDK's listExternalAuths/unlinkExternalAuth).
 *
 * What a sign-in does, as PocketBase does it: an existing link signs its record in; else the
 * record signed in by the request (linking a second provider); else the record whose email
 * the provider says is verified; else a new record from createData and the mapped fields. A
 * found record that was not verified gets a new random password (someone may have registered
 * the address before its owner), and is marked verified when its email is the provider's. */
#include <sodium.h>
#include <string.h>

#include "api/records_int.h"
#include "auth/auth.h"
#include "realtime/realtime.h"
#include "store/store.h"

#define OAUTH2_FAIL "Failed to authenticate."
#define OAUTH2_PASSWORD_LEN 30
#define OAUTH2_STATE_LEN 30
#define OAUTH2_VERIFIER_LEN 43
#define OAUTH2_FIELD_MAX 4096 /* bytes of code, codeVerifier, redirectURL */

static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

static void unref_cb(void *c)
{
    store_collection_unref(c);
}

/* The enabled oauth2 option object of c, or NULL. RETURNS BORROWED. */
static const json_t *oauth2_opts(const struct store_collection *c)
{
    const json_t *o = c->auth_options ? json_object_get(c->auth_options, "oauth2") : NULL;
    return json_is_true(json_object_get(o, "enabled")) ? o : NULL;
}

/* The provider of c named name, parsed into p. */
static bool find_provider(const struct store_collection *c, const char *name,
                          struct auth_oauth2_provider *p)
{
    const json_t *list = json_object_get(oauth2_opts(c), "providers");
    size_t i;
    const json_t *cfg;
    char err[256];
    json_array_foreach(list, i, cfg)
    {
        const char *n = json_string_value(json_object_get(cfg, "name"));
        if (n && name && strcmp(n, name) == 0)
            return auth_oauth2_provider_parse(cfg, p, err, sizeof(err)) == 0;
    }
    return false;
}

/* The HMAC key of c's nonces. */
static void nonce_key(struct api_env *env, const struct store_collection *c,
                      char out[AUTH_COLLECTION_SECRET_LEN + 1])
{
    auth_secret_collection(env->secret, "oauth2-nonce", c->id, out);
}

/* ---- auth-methods ---- */

struct methods {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
    json_t *body;
};

/* The providers of c as auth-methods lists them; fetch: discovery may call the network. */
static json_t *provider_infos(struct api_env *env, const struct store_collection *c, bool fetch,
                              bool *pending_out)
{
    json_t *out = json_array();
    const json_t *list = json_object_get(oauth2_opts(c), "providers");
    char key[AUTH_COLLECTION_SECRET_LEN + 1], err[256];
    nonce_key(env, c, key);
    size_t i;
    const json_t *cfg;
    json_array_foreach(list, i, cfg)
    {
        struct auth_oauth2_provider p;
        if (auth_oauth2_provider_parse(cfg, &p, err, sizeof(err)) != 0) {
            xlog_debug("oauth2 provider of %s skipped: %s", c->name, err);
            continue;
        }
        int rc = fetch ? auth_oauth2_discover(env->oauth2, &p, err, sizeof(err))
                       : auth_oauth2_discover_cached(env->oauth2, &p);
        if (rc == ERR_NOTFOUND && !fetch)
            *pending_out = true;
        if (rc) {
            if (fetch)
                xlog_warn("oauth2 provider %s of %s skipped: %s", p.name, c->name, err);
            auth_oauth2_provider_release(&p);
            continue;
        }
        char state[OAUTH2_STATE_LEN + 1], verifier[OAUTH2_VERIFIER_LEN + 1];
        char challenge[AUTH_OAUTH2_NONCE_LEN + 1], nonce[AUTH_OAUTH2_NONCE_LEN + 1];
        rand_string(state, OAUTH2_STATE_LEN, alnum);
        rand_string(verifier, OAUTH2_VERIFIER_LEN, alnum);
        auth_oauth2_challenge(verifier, challenge);
        auth_oauth2_nonce(key, verifier, nonce);
        /* OpenID providers get a verifier even without PKCE: it binds the nonce */
        bool has_verifier = p.pkce || p.oidc;
        char *url =
            auth_oauth2_auth_url(&p, state, p.pkce ? challenge : NULL, p.oidc ? nonce : NULL);
        json_array_append_new(
            out,
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", p.name, "displayName",
                      p.display_name ? p.display_name : p.name, "state", state, "authURL", url,
                      "authUrl", url, "codeVerifier", has_verifier ? verifier : "", "codeChallenge",
                      p.pkce ? challenge : "", "codeChallengeMethod", p.pkce ? "S256" : ""));
        free(url);
        auth_oauth2_provider_release(&p);
    }
    return out;
}

/* Puts infos (TAKEN) into the answer and replies. */
static void methods_reply(struct methods *m, json_t *infos)
{
    if (infos) {
        json_t *o = json_object_get(m->body, "oauth2");
        json_object_set_new(o, "enabled", json_true());
        json_object_set(o, "providers", infos);
        json_object_set_new(m->body, "authProviders", infos); /* before PocketBase 0.23 */
    }
    http_reply_json(m->req, 200, m->body);
    m->body = NULL;
}

static void methods_job(void *arg, bool cancelled)
{
    struct methods *m = arg;
    if (cancelled) {
        json_decref(m->body);
        http_reply_error(m->req, 503, NULL, NULL);
    } else {
        bool pending = false;
        methods_reply(m, provider_infos(m->env, m->c, true, &pending));
    }
    http_req_resume(m->req);
}

void api__oauth2_reply_methods(struct http_req *req, struct api_env *env,
                               struct store_collection *c, json_t *body)
{
    struct arena *a = http_req_arena(req);
    arena_on_release(a, unref_cb, c);
    struct methods *m = arena_zalloc(a, sizeof(*m));
    *m = (struct methods){req, env, c, body};
    if (!oauth2_opts(c) || !env->oauth2) {
        methods_reply(m, NULL);
        return;
    }
    bool pending = false;
    json_t *infos = provider_infos(env, c, false, &pending);
    if (!pending) {
        methods_reply(m, infos);
        return;
    }
    /* a discovery document to fetch: not on this thread */
    json_decref(infos);
    http_req_suspend(req);
    if (auth_oauth2_submit(env->oauth2, methods_job, m) != 0) {
        json_decref(body);
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, NULL, NULL);
        http_req_resume(req);
    }
}

/* ---- auth-with-oauth2 ---- */

struct oa_login {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c, *links; /* references */
    struct auth_oauth2_provider p;
    char *code, *verifier, *redirect;
    json_t *create_data; /* object or NULL */
    char nonce[AUTH_OAUTH2_NONCE_LEN + 1];
    char *signed_in;    /* the record id of the request's own token in c, or NULL */
    const char *mfa_id; /* the mfaId sent (query or body), in the request's arena, or NULL */
};

static void oa_release(void *arg)
{
    struct oa_login *l = arg;
    auth_oauth2_provider_release(&l->p);
    free(l->code);
    free(l->verifier);
    free(l->redirect);
    free(l->signed_in);
    json_decref(l->create_data);
    store_collection_unref(l->c);
    store_collection_unref(l->links);
}

/* The link of (collection, provider, providerId), or NULL. RETURNS a new reference. */
static json_t *find_link(struct oa_login *l, const char *provider_id, int *rc_out)
{
    json_t *params = json_pack("[s,s,s]", l->c->id, l->p.name, provider_id);
    struct store_list_query q = {
        .page = 1,
        .per_page = 1,
        .skip_total = true,
        .where_sql = "\"" STORE_LIST_ALIAS "\".\"collectionRef\" = ? AND \"" STORE_LIST_ALIAS
                     "\".\"provider\" = ? AND \"" STORE_LIST_ALIAS "\".\"providerId\" = ?",
        .where_params = params,
    };
    struct store_list_result res = {0};
    *rc_out = store_record_list(l->env->store, l->links, &q, &res);
    json_decref(params);
    json_t *link = *rc_out == 0 ? json_incref(json_array_get(res.items, 0)) : NULL;
    json_decref(res.items);
    return link;
}

static void put_mapped(json_t *payload, const json_t *mapped, const char *key, const char *value)
{
    const char *field = json_string_value(json_object_get(mapped, key));
    if (field && *field && !json_object_get(payload, field) && value && *value)
        json_object_set_new(payload, field, json_string(value));
}

/* The body of a new record: createData (less what only managers may write), the provider's
 * email, and the mapped fields the client did not give. */
static json_t *new_record_body(struct oa_login *l, struct api_rules *ar,
                               const struct auth_oauth2_user *u)
{
    json_t *payload =
        json_is_object(l->create_data) ? json_deep_copy(l->create_data) : json_object();
    api__rules_strip_body(ar, l->c, payload);
    json_object_del(payload, "verified");
    json_object_del(payload, "id");
    json_object_set_new(payload, "email", json_string(u->email));
    const json_t *mapped = json_object_get(oauth2_opts(l->c), "mappedFields");
    put_mapped(payload, mapped, "id", u->id);
    put_mapped(payload, mapped, "name", u->name);
    put_mapped(payload, mapped, "username", u->username);
    put_mapped(payload, mapped, "avatarURL", u->avatar_url);
    return payload;
}

static json_t *user_meta(const struct auth_oauth2_user *u, bool is_new)
{
    char expiry[TIME_PB_LEN] = "";
    if (u->expiry_s > 0)
        time_format_pb(u->expiry_s * 1000000, expiry);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:b}", "id", u->id, "name", u->name,
                     "username", u->username, "email", u->email, "avatarURL", u->avatar_url,
                     "accessToken", u->access_token, "refreshToken", u->refresh_token, "expiry",
                     expiry, "rawUser", u->raw ? u->raw : json_null(), "isNew", is_new);
}

/* Hashes a fresh random password (the record's old one must stop working). Worker thread. */
static int random_password_hash(struct api_env *env, char hash[AUTH_HASH_LEN])
{
    char pw[OAUTH2_PASSWORD_LEN + 1];
    rand_string(pw, OAUTH2_PASSWORD_LEN, alnum);
    int rc = auth_pool_hash_wait(env->pool, pw, hash);
    sodium_memzero(pw, sizeof(pw));
    return rc;
}

/* The sign-in once the provider has vouched for u: finds, creates or updates the record,
 * links it, checks the authRule and answers. Worker thread, store deadline set. */
static void oa_sign_in(struct oa_login *l, const struct auth_oauth2_user *u, int64_t deadline)
{
    struct http_req *req = l->req;
    struct api_env *env = l->env;
    struct store_auth_record rec = {0};
    json_t *errors = NULL, *link = NULL, *body = NULL;
    bool have = false, is_new = false;
    int rc;
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    api__rules_init(ar, req, env);
    ar->fr.context = "oauth2";
    ar->deadline_us = deadline;

    link = find_link(l, u->id, &rc);
    if (rc)
        goto store_fail;
    if (link) {
        const char *rid = json_string_value(json_object_get(link, "recordRef"));
        have = rid && store_auth_get(env->store, l->c, rid, &rec) == 0;
        if (!have) { /* a link left by a deleted record: it links nothing */
            const char *lid = json_string_value(json_object_get(link, "id"));
            if (lid && store_record_delete(env->store, l->links, lid) != 0)
                goto store_fail;
            json_decref(link);
            link = NULL;
        }
    }
    if (!have && l->signed_in)
        have = store_auth_get(env->store, l->c, l->signed_in, &rec) == 0;
    if (!have && *u->email) {
        rc = store_auth_find(env->store, l->c, "email", u->email, &rec);
        have = rc == 0;
        if (rc == ERR_TIMEOUT)
            goto store_fail;
    }

    char hash[AUTH_HASH_LEN];
    struct store_op ops[2];
    size_t n_ops = 0, failed;
    memset(ops, 0, sizeof(ops));
    char new_id[AUTH_ID_MAX + 1];
    const char *rid;
    if (!have) {
        if (strcmp(l->c->id, API_SUPERUSERS_ID) == 0)
            goto denied; /* superusers never sign up with OAuth2 */
        body = new_record_body(l, ar, u);
        const char *pw = NULL;
        errors = json_object();
        if (api__password_from_body(l->c, true, body, errors, &pw) != 0) {
            http_reply_error(req, 400, OAUTH2_FAIL, errors);
            errors = NULL;
            goto out;
        }
        json_decref(errors);
        errors = NULL;
        rc = pw ? auth_pool_hash_wait(env->pool, pw, hash) : random_password_hash(env, hash);
        if (rc)
            goto denied;
        json_object_del(body, "password");
        json_object_del(body, "passwordConfirm");
        id_random(new_id); /* ID_LEN characters */
        json_object_set_new(body, "id", json_string(new_id));
        /* verified when the email is the provider's (even both empty), as PocketBase does */
        const char *email = json_string_value(json_object_get(body, "email"));
        json_object_set_new(body, "verified",
                            json_boolean(strcmp(email ? email : "", u->email) == 0));
        struct store_cond *create = arena_zalloc(http_req_arena(req), sizeof(*create));
        api__rules_set_body(ar, body);
        if (api__rule_compile(ar, l->c, STORE_RULE_CREATE, create) != 0)
            goto denied;
        ops[n_ops++] = (struct store_op){.kind = STORE_OP_CREATE,
                                         .c = l->c,
                                         .body = body,
                                         .password_hash = hash,
                                         .cond = create};
        rid = new_id;
        is_new = true;
    } else {
        rid = json_string_value(json_object_get(rec.record, "id"));
        const char *email = json_string_value(json_object_get(rec.record, "email"));
        bool verified = json_is_true(json_object_get(rec.record, "verified"));
        bool own = l->signed_in && rid && strcmp(l->signed_in, rid) == 0;
        body = json_object();
        const char *new_hash = NULL;
        if (!own && email && *email && !verified) {
            if (random_password_hash(env, hash) != 0)
                goto denied;
            new_hash = hash;
        }
        if ((!email || !*email) && *u->email) {
            json_object_set_new(body, "email", json_string(u->email));
            email = u->email;
        }
        if (!verified && (!email || !*email || strcmp(email, u->email) == 0))
            json_object_set_new(body, "verified", json_true());
        if (json_object_size(body) || new_hash)
            ops[n_ops++] = (struct store_op){.kind = STORE_OP_UPDATE,
                                             .c = l->c,
                                             .id = rid,
                                             .body = body,
                                             .password_hash = new_hash};
    }
    json_t *link_body = NULL;
    if (!link) {
        link_body = json_pack("{s:s,s:s,s:s,s:s}", "collectionRef", l->c->id, "recordRef", rid,
                              "provider", l->p.name, "providerId", u->id);
        ops[n_ops++] = (struct store_op){.kind = STORE_OP_CREATE, .c = l->links, .body = link_body};
    }
    rc = n_ops ? store_record_ops(env->store, ops, n_ops, &failed) : 0;
    for (size_t i = 0; i < n_ops; i++) {
        if (rc && i == failed && ops[i].errors && ops[i].c == l->c)
            errors = json_incref(ops[i].errors);
        json_decref(ops[i].errors);
        json_decref(ops[i].record);
    }
    json_decref(link_body);
    if (rc == ERR_TIMEOUT)
        goto store_fail;
    if (rc == ERR_INVALID || rc == ERR_DENIED || rc == ERR_CONFLICT) {
        xlog_info("oauth2 sign-in to %s refused: %s", l->c->name, err_str(rc));
        http_reply_error(req, 400, OAUTH2_FAIL, errors);
        errors = NULL;
        goto out;
    }
    if (rc)
        goto store_fail;
    /* the record as it is now (a new password means a new tokenKey) */
    if (rid != new_id) {
        snprintf(new_id, sizeof(new_id), "%s", rid);
        rid = new_id;
    }
    store_auth_record_release(&rec);
    rc = store_auth_get(env->store, l->c, rid, &rec);
    if (rc)
        goto store_fail;
    struct store_cond rule;
    if (api__rule_compile_expr(ar, l->c, l->c->rules[STORE_RULE_AUTH], &rule) != 0) {
        http_reply_error(req, 403,
                         "The request doesn't satisfy the collection requirements to "
                         "authenticate.",
                         NULL);
        goto out;
    }
    /* the authRule, MFA and the new-device alert, as for every sign-in */
    api__auth_finish(
        req, env, l->c, &rec,
        &(struct api_auth_factor){"oauth2", l->mfa_id, &rule, user_meta(u, is_new), deadline});
    goto out;
denied:
    xlog_info("oauth2 sign-in to %s refused: no sign-up (superusers, createRule or password)",
              l->c->name);
    http_reply_error(req, 400, OAUTH2_FAIL, NULL);
    goto out;
store_fail:
    xlog_info("oauth2 sign-in to %s failed in the store: %s (%s)", l->c->name, err_str(rc),
              store_errmsg(env->store));
    if (rc == ERR_TIMEOUT)
        api__reply_timeout(req);
    else
        http_reply_error(req, 400, OAUTH2_FAIL, NULL);
out:
    json_decref(errors);
    json_decref(link);
    json_decref(body);
    store_auth_record_release(&rec);
}

static void oa_job(void *arg, bool cancelled)
{
    struct oa_login *l = arg;
    if (cancelled) {
        http_set_header(l->req, "Retry-After", "1");
        http_reply_error(l->req, 503, NULL, NULL);
        http_req_resume(l->req);
        return;
    }
    struct auth_oauth2_user u;
    enum auth_oauth2_stage stage;
    char err[512];
    int rc = auth_oauth2_exchange(l->env->oauth2, &l->p, l->code, l->verifier, l->redirect,
                                  l->p.oidc ? l->nonce : NULL, &u, &stage, err, sizeof(err));
    if (rc) {
        xlog_info("oauth2 sign-in with %s refused: %s", l->p.name, err);
        http_reply_error(l->req, 400,
                         stage == AUTH_OAUTH2_STAGE_TOKEN ? "Failed to fetch OAuth2 token."
                                                          : "Failed to fetch OAuth2 user.",
                         NULL);
    } else {
        int64_t deadline = api__deadline_start(l->env); /* after the provider's time */
        oa_sign_in(l, &u, deadline);
        api__deadline_lift(l->env);
        auth_oauth2_user_release(&u);
    }
    http_req_resume(l->req);
}

static json_t *verr(const char *code, const char *message)
{
    return json_pack("{s:s,s:s}", "code", code, "message", message);
}

static void auth_with_oauth2(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = api__auth_collection(req, env);
    if (!c)
        return;
    struct arena *a = http_req_arena(req);
    struct oa_login *l = arena_zalloc(a, sizeof(*l));
    l->req = req;
    l->env = env;
    l->c = c;
    arena_on_release(a, oa_release, l);
    if (!oauth2_opts(c) || !env->oauth2) {
        http_reply_error(req, 403,
                         "The collection is not configured to allow OAuth2 authentication.", NULL);
        return;
    }
    json_t *body = api__json_body(req, env, true);
    if (!body)
        return;
    const char *provider = json_string_value(json_object_get(body, "provider"));
    const char *code = json_string_value(json_object_get(body, "code"));
    const char *verifier = json_string_value(json_object_get(body, "codeVerifier"));
    const char *redirect = json_string_value(json_object_get(body, "redirectURL"));
    if (!redirect || !*redirect)
        redirect = json_string_value(json_object_get(body, "redirectUrl")); /* before 0.23 */
    const json_t *create = json_object_get(body, "createData");
    json_t *errs = json_object();
    if (!provider || !*provider)
        json_object_set_new(errs, "provider", verr("validation_required", "Cannot be blank."));
    else if (!find_provider(c, provider, &l->p)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Provider with name \"%.100s\" is missing or is not enabled.",
                 provider);
        json_t *e = verr("validation_invalid_provider", msg);
        json_object_set_new(e, "params", json_pack("{s:s}", "name", provider));
        json_object_set_new(errs, "provider", e);
    }
    if (!code || !*code || strlen(code) > OAUTH2_FIELD_MAX)
        json_object_set_new(errs, "code", verr("validation_required", "Cannot be blank."));
    if (!redirect || !*redirect || strlen(redirect) > OAUTH2_FIELD_MAX)
        json_object_set_new(errs, "redirectURL", verr("validation_required", "Cannot be blank."));
    if (verifier && strlen(verifier) > OAUTH2_FIELD_MAX)
        json_object_set_new(errs, "codeVerifier",
                            verr("validation_length_too_long", "Must be no more than 4096."));
    if (create && !json_is_object(create) && !json_is_null(create))
        json_object_set_new(errs, "createData",
                            verr("validation_invalid_value", "Must be an object."));
    if (json_object_size(errs)) {
        http_reply_error(req, 400, "An error occurred while loading the submitted data.", errs);
        return;
    }
    json_decref(errs);
    l->code = xstrdup(code);
    l->verifier = xstrdup(verifier ? verifier : "");
    l->redirect = xstrdup(redirect);
    l->create_data = json_is_object(create) ? json_incref((json_t *)create) : NULL;
    l->mfa_id = api__mfa_id(req, body);
    char key[AUTH_COLLECTION_SECRET_LEN + 1];
    nonce_key(env, c, key);
    auth_oauth2_nonce(key, l->verifier, l->nonce);
    const struct api_identity *who = api__identity(req, env);
    if (who->record_id && strcmp(who->collection_id, c->id) == 0)
        l->signed_in = xstrdup(who->record_id);
    if (store_collection_get(env->store, STORE_EXTERNAL_AUTHS_ID, &l->links) != 0) {
        http_reply_error(req, 500, NULL, NULL);
        return;
    }
    http_req_suspend(req);
    if (auth_oauth2_submit(env->oauth2, oa_job, l) != 0) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, NULL, NULL);
        http_req_resume(req);
    }
}

/* ---- the redirect page ---- */

static void redirect_page(struct http_req *req, bool ok)
{
    static const char fail_html[] =
        "Failed to authenticate. You can close this window and go back to the app to try again.";
    static const char ok_html[] =
        "Auth completed. You can close this window and go back to the app.";
    if (ok)
        http_reply_static(req, 200, "text/html; charset=utf-8", ok_html, sizeof(ok_html) - 1);
    else
        http_reply_static(req, 200, "text/plain; charset=utf-8", fail_html, sizeof(fail_html) - 1);
}

/* The provider sends the browser here with state and code (GET, or POST for form_post): they
 * go to the realtime client whose id is the state and that subscribed to "@oauth2" (the
 * SDK's authWithOAuth2 listens there), as PocketBase does. */
static void oauth2_redirect(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const char *state, *code, *error;
    if (strcmp(http_req_method(req), "POST") == 0) {
        json_t *body = api__record_body(req, env, true);
        if (!body) {
            return;
        }
        state = json_string_value(json_object_get(body, "state"));
        code = json_string_value(json_object_get(body, "code"));
        error = json_string_value(json_object_get(body, "error"));
    } else {
        state = http_req_query(req, "state");
        code = http_req_query(req, "code");
        error = http_req_query(req, "error");
    }
    if (!state || !*state || strlen(state) > REALTIME_CLIENT_ID_LEN || !env->realtime) {
        redirect_page(req, false);
        return;
    }
    struct realtime_client *cl = realtime_client_find(env->realtime, state);
    json_t *msg = json_pack("{s:s,s:s}", "state", state, "code", code ? code : "");
    if (error && *error)
        json_object_set_new(msg, "error", json_string(error));
    char *data = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    int rc = cl ? realtime_client_send_oauth2(env->realtime, cl, data, strlen(data)) : ERR_NOTFOUND;
    free(data);
    if (cl)
        realtime_client_unref(cl);
    redirect_page(req, rc == 0 && code && *code && !(error && *error));
}

/* ---- the providers list ---- */

static void oauth2_providers(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    static const char *const names[] = {"google", "github", "microsoft", "oidc", "oidc2", "oidc3"};
    json_t *out = json_array();
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        json_t *cfg = json_pack("{s:s,s:s}", "name", names[i], "clientId", "x");
        struct auth_oauth2_provider p;
        char err[200];
        bool ok = auth_oauth2_provider_parse(cfg, &p, err, sizeof(err)) == 0;
        json_decref(cfg);
        json_array_append_new(
            out, json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "name", names[i], "displayName",
                           ok && p.display_name ? p.display_name : names[i], "authURL",
                           ok && p.auth_url ? p.auth_url : "", "tokenURL",
                           ok && p.token_url ? p.token_url : "", "userInfoURL",
                           ok && p.userinfo_url ? p.userinfo_url : "", "pkce", ok && p.pkce));
        if (ok)
            auth_oauth2_provider_release(&p);
    }
    http_reply_json(req, 200, out);
}

/* ---- impersonate ---- */

static void impersonate(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const struct api_identity *who = api__identity(req, env);
    if (!who->superuser) {
        http_reply_error(req, 403, "The authorized record is not allowed to perform this action.",
                         NULL);
        return;
    }
    struct store_collection *c = api__auth_collection(req, env);
    if (!c)
        return;
    arena_on_release(http_req_arena(req), unref_cb, c);
    json_t *body = api__json_body(req, env, true);
    if (!body)
        return;
    json_t *jd = json_object_get(body, "duration");
    if (jd && !json_is_null(jd) &&
        (!json_is_integer(jd) || json_integer_value(jd) < 0 ||
         json_integer_value(jd) > 10LL * 365 * 86400)) {
        http_reply_error(req, 400, "An error occurred while validating the submitted data.",
                         json_pack("{s:o}", "duration",
                                   verr("validation_min_greater_equal_than_required",
                                        "Must be no less than 0.")));
        return;
    }
    int64_t deadline = api__deadline_start(env);
    struct store_auth_record rec = {0};
    int rc = store_auth_get(env->store, c, http_req_param(req, "id"), &rec);
    if (rc == ERR_TIMEOUT)
        api__reply_timeout(req);
    else if (rc)
        http_reply_error(req, 404, NULL, NULL);
    else /* a static token: not refreshable, and not a sign-in (no MFA, no alert) */
        api__reply_token(req, env, c, &rec, deadline, jd ? json_integer_value(jd) : 0, false, NULL);
    store_auth_record_release(&rec);
    api__deadline_lift(env);
}

void api__register_oauth2(struct http_router *r, struct api_env *env)
{
    http_route_max_body(r, "POST", "/api/collections/{collection}/auth-with-oauth2",
                        auth_with_oauth2, env, env->records.max_body);
    http_route(r, "GET", "/api/oauth2-redirect", oauth2_redirect, env);
    http_route_max_body(r, "POST", "/api/oauth2-redirect", oauth2_redirect, env,
                        env->records.max_body);
    http_route(r, "GET", "/api/collections/meta/oauth2-providers", oauth2_providers, env);
    http_route_max_body(r, "POST", "/api/collections/{collection}/impersonate/{id}", impersonate,
                        env, env->records.max_body);
}
