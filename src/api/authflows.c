/* authflows.c - the account flows of auth collections, with PocketBase's routes, bodies,
 * token types and expiry settings:
 *   request-verification / confirm-verification     (token type "verification")
 *   request-password-reset / confirm-password-reset (token type "passwordReset")
 *   request-email-change / confirm-email-change     (token type "emailChange")
 *   request-otp / auth-with-otp                     (one-time codes in the store)
 *
 * Requests that name an email answer the same whether or not it belongs to a record, after the
 * same lookup and the same throttle write; only a known one additionally signs a token and
 * queues a mail (mail/ sends it later, never this thread). Tokens are single-use: each confirm
 * writes under a condition that the token's own premise still holds (the tokenKey it was
 * signed with, the email it names, the unverified state), so a replay - or two racing
 * confirms - finds it false and answers 400 with nothing changed. */
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/records_int.h"
#include "mail/mail.h"
#include "store/store.h"

#define RESEND_WAIT_US (120 * INT64_C(1000000)) /* one mail per record and flow per 2 min */
#define OTP_MAX_ATTEMPTS 5
#define OTP_RECENT_MAX 10 /* unexpired codes per record; past it the newest is reused */
#define VALIDATION_FAILED "An error occurred while validating the submitted data."

static void unref_cb(void *c)
{
    store_collection_unref(c);
}

/* The auth collection of the path, released with the request; NULL after answering 404, or
 * 400 with no_superusers when that is set and the collection is _superusers. */
static struct store_collection *flow_collection(struct http_req *req, struct api_env *env,
                                                const char *no_superusers)
{
    struct store_collection *c = api__auth_collection(req, env);
    if (!c)
        return NULL;
    arena_on_release(http_req_arena(req), unref_cb, c);
    if (no_superusers && strcmp(c->id, API_SUPERUSERS_ID) == 0) {
        http_reply_error(req, 400, no_superusers, NULL);
        return NULL;
    }
    return c;
}

#define SU_VERIFIED "All superusers are verified by default."
#define SU_EMAIL "All superusers can change their emails directly."

static void reply_invalid(struct http_req *req, const char *field, const char *code,
                          const char *message)
{
    http_reply_error(req, 400, VALIDATION_FAILED, api__field_error(field, code, message));
}

/* The email of a body field, validated as PocketBase's forms do (required, 1..255, email
 * format); NULL after answering 400. */
static const char *body_email(struct http_req *req, const json_t *body, const char *field)
{
    const char *e = json_string_value(json_object_get(body, field));
    if (!e || !*e)
        reply_invalid(req, field, "validation_required", "Cannot be blank.");
    else if (strlen(e) > 255)
        reply_invalid(req, field, "validation_length_out_of_range",
                      "The length must be between 1 and 255.");
    else if (!mail_addr_ok(e) || !strchr(strrchr(e, '@'), '.'))
        reply_invalid(req, field, "validation_is_email", "Must be a valid email address.");
    else
        return e;
    return NULL;
}

/* A required string field of body, at most max bytes; NULL after answering 400. */
static const char *body_text(struct http_req *req, const json_t *body, const char *field,
                             size_t max)
{
    const char *v = json_string_value(json_object_get(body, field));
    if (!v || !*v)
        reply_invalid(req, field, "validation_required", "Cannot be blank.");
    else if (strlen(v) > max)
        reply_invalid(req, field, "validation_length_out_of_range", "The value is too long.");
    else
        return v;
    return NULL;
}

/* Deletes a few rows of kind whose due_us has passed (expired throttles, codes, MFA
 * sessions), so that what clients make the server remember stays bounded in time. */
void api__sys_sweep(struct api_env *env, const char *kind)
{
    json_t *old = NULL;
    if (store_sys_list(env->store, kind, NULL, NULL, time_now_us(), 8, &old) != 0)
        return;
    for (size_t i = 0; i < json_array_size(old); i++)
        if (store_sys_take(env->store, kind,
                           json_string_value(json_object_get(json_array_get(old, i), "id"))))
            break; /* taken by another request meanwhile */
    json_decref(old);
}

/* True when no mail of this flow went to the email within RESEND_WAIT_US; records the
 * attempt either way, so a known and an unknown email cost the same store work. */
static bool resend_allowed(struct api_env *env, const char *flow, const struct store_collection *c,
                           const char *email)
{
    char id[400];
    snprintf(id, sizeof(id), "%s/%s/", flow, c->id);
    size_t n = strlen(id);
    for (size_t i = 0; email[i] && n + 1 < sizeof(id); i++)
        id[n++] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    id[n] = '\0';
    api__sys_sweep(env, "resend");
    json_t *row = NULL;
    int64_t now = time_now_us();
    bool allowed = store_sys_get(env->store, "resend", id, &row) != 0 ||
                   json_integer_value(json_object_get(row, "due_us")) <= now;
    json_decref(row);
    if (allowed) {
        json_t *v = json_object();
        struct store_sysrow r = {"resend", id, NULL, v, now, now + RESEND_WAIT_US};
        if (store_sys_put(env->store, &r) != 0)
            xlog_warn("cannot record a mail throttle: %s", store_errmsg(env->store));
        json_decref(v);
    }
    return allowed;
}

/* Signs a token of type for rec, valid for the collection's <option>.duration (default
 * def_s). new_email for emailChange. RETURNS a malloc'd token, or NULL. */
static char *issue(struct api_env *env, const struct store_collection *c,
                   const struct store_auth_record *rec, enum auth_token_type type,
                   const char *option, int64_t def_s, const char *new_email)
{
    struct auth_token_claims cl = {0};
    const char *id = json_string_value(json_object_get(rec->record, "id"));
    const char *email = json_string_value(json_object_get(rec->record, "email"));
    if (!id || !email || !rec->token_key)
        return NULL;
    cl.type = type;
    snprintf(cl.collection_id, sizeof(cl.collection_id), "%s", c->id);
    snprintf(cl.record_id, sizeof(cl.record_id), "%s", id);
    snprintf(cl.email, sizeof(cl.email), "%s", email);
    if (new_email)
        snprintf(cl.new_email, sizeof(cl.new_email), "%s", new_email);
    cl.exp = time_now_us() / 1000000 + api__auth_opt_int(c, option, "duration", def_s);
    char *tok = NULL;
    return auth_token_issue(env->secret, &cl, rec->token_key, &tok) == 0 ? tok : NULL;
}

/* Checks a token of type for collection c: signature, expiry, collection, and that the
 * record's email is still the one the token was issued for. Fills rec (released by the
 * caller) and claims; otherwise answers 400 on the token field and returns false. */
/* The tokenKey a token was verified with, kept for the check against the record read after. */
struct verified_key {
    struct api_env *env;
    char key[AUTH_TOKEN_KEY_MAX + 1];
};

static int lookup_keep(void *arg, const char *collection_id, const char *record_id,
                       char token_key_out[AUTH_TOKEN_KEY_MAX + 1])
{
    struct verified_key *vk = arg;
    int rc = api__token_lookup(vk->env, collection_id, record_id, token_key_out);
    if (rc == 0)
        memcpy(vk->key, token_key_out, sizeof(vk->key));
    return rc;
}

static bool check_token(struct http_req *req, struct api_env *env, const struct store_collection *c,
                        enum auth_token_type type, const char *token, struct store_auth_record *rec,
                        struct auth_token_claims *cl)
{
    memset(rec, 0, sizeof(*rec));
    struct verified_key vk = {.env = env, .key = ""};
    int rc = auth_token_verify_as(env->secret, type, token, strlen(token), time_now_us() / 1000000,
                                  lookup_keep, &vk, cl);
    if (rc == 0 && strcmp(cl->collection_id, c->id) != 0) {
        reply_invalid(req, "token", "validation_token_collection_mismatch",
                      "The provided token is for different auth collection.");
        return false;
    }
    if (rc == 0)
        rc = store_auth_get(env->store, c, cl->record_id, rec);
    const char *email = rc == 0 ? json_string_value(json_object_get(rec->record, "email")) : NULL;
    if (rc == 0 && (!email || strcmp(email, cl->email) != 0))
        rc = ERR_DENIED; /* the email changed since: the token's premise is gone */
    /* the callers' writes are conditioned on rec->token_key: it must be the key the token was
     * verified with, not one a racing confirm set between the two reads (that write would
     * then hold, and one token would be used twice) */
    if (rc == 0 && (!rec->token_key || strcmp(rec->token_key, vk.key) != 0))
        rc = ERR_DENIED;
    if (rc != 0) {
        store_auth_record_release(rec);
        reply_invalid(req, "token", "validation_invalid_token", "Invalid or expired token.");
        return false;
    }
    return true;
}

/* 503 with Retry-After for a suspended request the hashing pool could not take; resumes it. */
static void reply_busy_resume(struct http_req *req)
{
    http_set_header(req, "Retry-After", "1");
    http_reply_error(req, 503, "Password hashing is busy; try again.", NULL);
    http_req_resume(req);
}

/* A condition on the record's current state, checked in the write's transaction. */
static struct store_cond *cond_eq(struct http_req *req, const char *column, const char *value)
{
    struct arena *a = http_req_arena(req);
    struct store_cond *cond = arena_zalloc(a, sizeof(*cond));
    char sql[128];
    snprintf(sql, sizeof(sql), "\"" STORE_LIST_ALIAS "\".\"%s\" = ?", column);
    cond->sql = arena_strdup(a, sql);
    cond->params = api__arena_json(a, json_pack("[s]", value));
    return cond;
}

/* ---- verification ---- */

/* The request half of a mailed-token flow: answers 204 for any well-formed email; for a
 * known one (and, when only_unverified, an unverified one) not mailed within the resend wait,
 * signs a token of type and queues template tpl with it. */
static void request_mailed_token(struct http_req *req, struct api_env *env,
                                 const struct store_collection *c, const char *flow,
                                 enum auth_token_type type, const char *option, int64_t def_s,
                                 int tpl, bool only_unverified)
{
    json_t *body = api__json_body(req, env, false);
    const char *email = body ? body_email(req, body, "email") : NULL;
    if (!email)
        return;
    struct store_auth_record rec = {0};
    bool found = store_auth_find(env->store, c, "email", email, &rec) == 0;
    bool allowed = resend_allowed(env, flow, c, email);
    if (found && allowed &&
        !(only_unverified && json_is_true(json_object_get(rec.record, "verified")))) {
        char *tok = issue(env, c, &rec, type, option, def_s, NULL);
        json_t *vars = json_pack("{s:s}", "{TOKEN}", tok ? tok : "");
        if (!tok || api__mail_record(env, c, rec.record, tpl, vars, NULL) != 0)
            xlog_warn("cannot queue the %s mail of a %s record", flow, c->name);
        json_decref(vars);
        free(tok);
    }
    store_auth_record_release(&rec);
    http_reply_empty(req, 204);
}

static void request_verification(struct http_req *req, void *ctx)
{
    struct store_collection *c = flow_collection(req, ctx, SU_VERIFIED);
    if (c)
        request_mailed_token(req, ctx, c, "verification", AUTH_TOKEN_VERIFICATION,
                             "verificationToken", 259200, MAIL_TPL_VERIFICATION, true);
}

static void confirm_verification(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, SU_VERIFIED);
    if (!c)
        return;
    json_t *body = api__json_body(req, env, false);
    const char *token = body ? body_text(req, body, "token", AUTH_TOKEN_MAX) : NULL;
    struct store_auth_record rec;
    struct auth_token_claims cl;
    if (!token || !check_token(req, env, c, AUTH_TOKEN_VERIFICATION, token, &rec, &cl))
        return;
    /* single use: only an unverified record with the token's tokenKey is changed */
    struct store_cond *cond = cond_eq(req, "tokenKey", rec.token_key);
    char sql[160];
    snprintf(sql, sizeof(sql), "(%s) AND NOT \"" STORE_LIST_ALIAS "\".\"verified\"", cond->sql);
    cond->sql = arena_strdup(http_req_arena(req), sql);
    json_t *patch = json_pack("{s:b}", "verified", 1), *errs = NULL, *out = NULL;
    int rc = store_record_update_if(env->store, c, cl.record_id, patch, NULL, cond, &errs, &out);
    json_decref(patch);
    json_decref(errs);
    json_decref(out);
    store_auth_record_release(&rec);
    if (rc == 0)
        http_reply_empty(req, 204);
    else if (rc == ERR_NOTFOUND)
        reply_invalid(req, "token", "validation_invalid_token", "Invalid or expired token.");
    else
        http_reply_error(req, 400, "An error occurred while saving the verified state.", NULL);
}

/* ---- password reset ---- */

static void request_password_reset(struct http_req *req, void *ctx)
{
    struct store_collection *c = flow_collection(req, ctx, NULL);
    if (c)
        request_mailed_token(req, ctx, c, "passwordReset", AUTH_TOKEN_PASSWORD_RESET,
                             "passwordResetToken", 1800, MAIL_TPL_RESET, false);
}

struct reset_job {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
    char record_id[AUTH_ID_MAX + 1];
    struct store_cond *cond; /* tokenKey and email as the token saw them */
};

static void reset_hashed(void *arg, int rc, const char *hash)
{
    struct reset_job *job = arg;
    struct http_req *req = job->req;
    if (rc != 0 || !hash) {
        reply_busy_resume(req);
        return;
    }
    /* a new password hash makes the store rotate the tokenKey: every session of the record
     * and this very token stop working */
    json_t *patch = json_pack("{s:b}", "verified", 1), *errs = NULL, *out = NULL;
    rc = store_record_update_if(job->env->store, job->c, job->record_id, patch, hash, job->cond,
                                &errs, &out);
    json_decref(patch);
    json_decref(out);
    if (rc == 0) {
        json_decref(errs);
        http_reply_empty(req, 204);
    } else if (rc == ERR_NOTFOUND) {
        json_decref(errs);
        reply_invalid(req, "token", "validation_invalid_token", "Invalid or expired token.");
    } else if (rc == ERR_INVALID && errs) {
        http_reply_error(req, 400, "Failed to set new password.", errs);
    } else {
        json_decref(errs);
        http_reply_error(req, 400, "Failed to set new password.", NULL);
    }
    http_req_resume(req);
}

static void confirm_password_reset(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, NULL);
    if (!c)
        return;
    json_t *body = api__json_body(req, env, false);
    if (!body)
        return;
    const struct store_field *pf = store_collection_field(c, "password");
    size_t min = pf && pf->has_min && pf->min > 1 ? (size_t)pf->min : 1;
    const char *token = json_string_value(json_object_get(body, "token"));
    const char *pw = json_string_value(json_object_get(body, "password"));
    const char *pc = json_string_value(json_object_get(body, "passwordConfirm"));
    json_t *errs = json_object();
    if (!token || !*token)
        json_object_update(errs,
                           api__field_error("token", "validation_required", "Cannot be blank."));
    if (!pw || !*pw)
        json_object_update(errs,
                           api__field_error("password", "validation_required", "Cannot be blank."));
    else if (strlen(pw) < min || strlen(pw) > 255)
        json_object_update(errs, api__field_error("password", "validation_length_out_of_range",
                                                  "The length is out of range."));
    if (!pc || !*pc)
        json_object_update(
            errs, api__field_error("passwordConfirm", "validation_required", "Cannot be blank."));
    else if (pw && strcmp(pw, pc) != 0)
        json_object_update(errs, api__field_error("passwordConfirm", "validation_values_mismatch",
                                                  "Values don't match."));
    if (json_object_size(errs)) {
        http_reply_error(req, 400, VALIDATION_FAILED, errs);
        return;
    }
    json_decref(errs);
    struct store_auth_record rec;
    struct auth_token_claims cl;
    if (!check_token(req, env, c, AUTH_TOKEN_PASSWORD_RESET, token, &rec, &cl))
        return;
    struct reset_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->req = req;
    job->env = env;
    job->c = c;
    snprintf(job->record_id, sizeof(job->record_id), "%s", cl.record_id);
    job->cond = cond_eq(req, "tokenKey", rec.token_key);
    store_auth_record_release(&rec);
    http_req_suspend(req);
    int rc = env->hash_password ? env->hash_password(pw, reset_hashed, job, env->auth_arg)
                                : ERR_INTERNAL;
    if (rc)
        reply_busy_resume(req);
}

/* ---- email change ---- */

static void request_email_change(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, SU_EMAIL);
    if (!c)
        return;
    const struct api_identity *who = api__identity(req, env);
    if (!who->record_id || strcmp(who->collection_id, c->id) != 0) {
        http_reply_error(req, 401, "The request requires valid auth record.", NULL);
        return;
    }
    json_t *body = api__json_body(req, env, false);
    const char *email = body ? body_email(req, body, "newEmail") : NULL;
    if (!email)
        return;
    struct store_auth_record rec = {0}, other = {0};
    if (store_auth_get(env->store, c, who->record_id, &rec) != 0) {
        http_reply_error(req, 401, "The request requires valid auth record.", NULL);
        return;
    }
    const char *cur = json_string_value(json_object_get(rec.record, "email"));
    if (cur && strcasecmp(cur, email) == 0) {
        store_auth_record_release(&rec);
        reply_invalid(req, "newEmail", "validation_in_invalid", "Must be a valid value.");
        return;
    }
    if (store_auth_find(env->store, c, "email", email, &other) == 0) {
        store_auth_record_release(&other);
        store_auth_record_release(&rec);
        reply_invalid(req, "newEmail", "validation_invalid_new_email",
                      "Invalid new email address.");
        return;
    }
    char *tok = issue(env, c, &rec, AUTH_TOKEN_EMAIL_CHANGE, "emailChangeToken", 1800, email);
    json_t *vars = json_pack("{s:s}", "{TOKEN}", tok ? tok : "");
    int rc = tok ? api__mail_record(env, c, rec.record, MAIL_TPL_EMAIL_CHANGE, vars, email)
                 : ERR_INVALID;
    json_decref(vars);
    free(tok);
    store_auth_record_release(&rec);
    if (rc)
        http_reply_error(req, 400, "Failed to request email change.", NULL);
    else
        http_reply_empty(req, 204);
}

struct email_job {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
    char record_id[AUTH_ID_MAX + 1];
    char new_email[AUTH_EMAIL_MAX + 1];
    struct store_cond *cond; /* the email the token was issued for */
};

static void email_password_checked(void *arg, const struct auth_pool_result *res)
{
    struct email_job *job = arg;
    struct http_req *req = job->req;
    if (res->rc != 0) {
        if (res->rc == ERR_BUSY) {
            reply_busy_resume(req);
            return;
        }
        reply_invalid(req, "password", "validation_invalid_password",
                      "Missing or invalid auth record password.");
        http_req_resume(req);
        return;
    }
    /* the new email gets a new tokenKey: the sessions of the old address end with it */
    char tk[AUTH_TOKEN_KEY_LEN + 1];
    auth_token_key_new(tk);
    json_t *patch =
        json_pack("{s:s,s:b,s:s}", "email", job->new_email, "verified", 1, "tokenKey", tk);
    json_t *errs = NULL, *out = NULL;
    int rc = store_record_update_if(job->env->store, job->c, job->record_id, patch, NULL, job->cond,
                                    &errs, &out);
    json_decref(patch);
    json_decref(out);
    json_decref(errs);
    if (rc == 0)
        http_reply_empty(req, 204);
    else if (rc == ERR_NOTFOUND)
        reply_invalid(req, "token", "validation_invalid_token", "Invalid or expired token.");
    else
        http_reply_error(req, 400, "Failed to confirm email change.", NULL);
    http_req_resume(req);
}

static void confirm_email_change(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, SU_EMAIL);
    if (!c)
        return;
    json_t *body = api__json_body(req, env, false);
    const char *token = body ? body_text(req, body, "token", AUTH_TOKEN_MAX) : NULL;
    const char *pw = token ? body_text(req, body, "password", 100) : NULL;
    struct store_auth_record rec, other = {0};
    struct auth_token_claims cl;
    if (!pw || !check_token(req, env, c, AUTH_TOKEN_EMAIL_CHANGE, token, &rec, &cl))
        return;
    if (store_auth_find(env->store, c, "email", cl.new_email, &other) == 0) {
        store_auth_record_release(&other);
        store_auth_record_release(&rec);
        reply_invalid(req, "token", "validation_invalid_token_email",
                      "The new email address is invalid.");
        return;
    }
    struct email_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    job->req = req;
    job->env = env;
    job->c = c;
    snprintf(job->record_id, sizeof(job->record_id), "%s", cl.record_id);
    snprintf(job->new_email, sizeof(job->new_email), "%s", cl.new_email);
    job->cond = cond_eq(req, "email", cl.email);
    http_req_suspend(req);
    int rc = auth_pool_verify(env->pool, rec.password_hash, pw, email_password_checked, job);
    store_auth_record_release(&rec);
    if (rc)
        reply_busy_resume(req);
}

/* ---- one-time passwords ---- */

/* The stored form of a code: keyed BLAKE2b under the collection's "otp" secret, in hex. Codes
 * live minutes and allow OTP_MAX_ATTEMPTS guesses, so a fast keyed hash suffices. */
static void otp_hash(struct api_env *env, const struct store_collection *c, const char *code,
                     char out[65])
{
    char key[AUTH_COLLECTION_SECRET_LEN + 1];
    unsigned char h[32];
    auth_secret_collection(env->secret, "otp", c->id, key);
    crypto_generichash(h, sizeof(h), (const unsigned char *)code, strlen(code),
                       (const unsigned char *)key, 64);
    sodium_memzero(key, sizeof(key));
    sodium_bin2hex(out, 65, h, sizeof(h));
}

static bool otp_enabled(struct http_req *req, const struct store_collection *c)
{
    if (api__auth_opt_bool(c, "otp", "enabled", false))
        return true;
    http_reply_error(req, 403, "The collection is not configured to allow OTP authentication.",
                     NULL);
    return false;
}

static void request_otp(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, NULL);
    if (!c || !otp_enabled(req, c))
        return;
    json_t *body = api__json_body(req, env, false);
    const char *email = body ? body_email(req, body, "email") : NULL;
    if (!email)
        return;
    char otp_id[ID_LEN + 1];
    id_random(otp_id);
    api__sys_sweep(env, "otp");
    struct store_auth_record rec = {0};
    if (store_auth_find(env->store, c, "email", email, &rec) != 0) {
        /* the same answer as for a known email: a fresh id that names nothing */
        http_reply_json(req, 200, json_pack("{s:s}", "otpId", otp_id));
        return;
    }
    const char *rid = json_string_value(json_object_get(rec.record, "id"));
    char ref[2 * AUTH_ID_MAX + 2];
    snprintf(ref, sizeof(ref), "%s/%s", c->id, rid ? rid : "");
    int64_t ttl = api__auth_opt_int(c, "otp", "duration", 180);
    int64_t now = time_now_us();
    json_t *mine = NULL;
    size_t recent = 0;
    const char *reuse = NULL;
    if (store_sys_list(env->store, "otp", NULL, ref, 0, 100, &mine) == 0)
        for (size_t i = 0; i < json_array_size(mine); i++) {
            json_t *o = json_array_get(mine, i);
            if (json_integer_value(json_object_get(o, "created_us")) + ttl * 1000000 >= now) {
                recent++;
                reuse = json_string_value(json_object_get(o, "id")); /* the newest last */
            } else if (store_sys_take(env->store, "otp",
                                      json_string_value(json_object_get(o, "id"))))
                xlog_debug("an expired otp was already gone");
        }
    if (recent >= OTP_RECENT_MAX && reuse) {
        xlog_warn("too many otp requests for a %s record: reusing the last code", c->name);
        http_reply_json(req, 200, json_pack("{s:s}", "otpId", reuse));
        json_decref(mine);
        store_auth_record_release(&rec);
        return;
    }
    json_decref(mine);
    int64_t len = api__auth_opt_int(c, "otp", "length", 8);
    len = len < 4 ? 4 : len > 32 ? 32 : len;
    char code[33], hash[65];
    rand_string(code, (size_t)len, "0123456789");
    otp_hash(env, c, code, hash);
    json_t *v = json_pack("{s:s,s:s,s:s,s:s,s:i}", "collectionRef", c->id, "recordRef",
                          rid ? rid : "", "password", hash, "sentTo", email, "attempts", 0);
    struct store_sysrow row = {"otp", otp_id, ref, v, now, now + ttl * 1000000};
    int rc = store_sys_put(env->store, &row);
    json_decref(v);
    if (rc == 0) {
        json_t *vars = json_pack("{s:s,s:s}", "{OTP}", code, "{OTP_ID}", otp_id);
        if (api__mail_record(env, c, rec.record, MAIL_TPL_OTP, vars, email) != 0)
            xlog_warn("cannot queue the otp mail of a %s record", c->name);
        json_decref(vars);
    }
    sodium_memzero(code, sizeof(code));
    store_auth_record_release(&rec);
    if (rc)
        http_reply_error(req, 500, "Failed to create the OTP.", NULL);
    else
        http_reply_json(req, 200, json_pack("{s:s}", "otpId", otp_id));
}

static void auth_with_otp(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct store_collection *c = flow_collection(req, env, NULL);
    if (!c || !otp_enabled(req, c))
        return;
    json_t *body = api__json_body(req, env, false);
    const char *otp_id = body ? body_text(req, body, "otpId", 255) : NULL;
    const char *code = otp_id ? body_text(req, body, "password", 71) : NULL;
    if (!code)
        return;
    json_t *row = NULL;
    int64_t ttl = api__auth_opt_int(c, "otp", "duration", 180);
    int rc = store_sys_get(env->store, "otp", otp_id, &row);
    const json_t *v = json_object_get(row, "value");
    const char *rid = json_string_value(json_object_get(v, "recordRef"));
    const char *cref = json_string_value(json_object_get(v, "collectionRef"));
    if (rc != 0 || !cref || strcmp(cref, c->id) != 0 || !rid ||
        json_integer_value(json_object_get(row, "created_us")) + ttl * 1000000 < time_now_us()) {
        json_decref(row);
        http_reply_error(req, 400, "Invalid or expired OTP", NULL);
        return;
    }
    int64_t attempts = json_integer_value(json_object_get(v, "attempts"));
    if (attempts >= OTP_MAX_ATTEMPTS) {
        json_decref(row);
        http_reply_error(req, 429, "Too many attempts, please try again later with a new OTP.",
                         NULL);
        return;
    }
    char hash[65];
    otp_hash(env, c, code, hash);
    const char *want = json_string_value(json_object_get(v, "password"));
    if (!want || strlen(want) != 64 || !auth_ct_equal(hash, want, 64)) {
        json_t *nv = json_deep_copy(v);
        json_object_set_new(nv, "attempts", json_integer(attempts + 1));
        struct store_sysrow upd = {
            "otp", otp_id, json_string_value(json_object_get(row, "ref")),
            nv,    0,      json_integer_value(json_object_get(row, "due_us"))};
        if (store_sys_put(env->store, &upd) != 0)
            xlog_warn("cannot count an otp attempt: %s", store_errmsg(env->store));
        json_decref(nv);
        json_decref(row);
        http_reply_error(req, 400, "Invalid or expired OTP", NULL);
        return;
    }
    struct store_auth_record rec = {0};
    char sent_to[AUTH_EMAIL_MAX + 1], record_id[AUTH_ID_MAX + 1];
    const char *st = json_string_value(json_object_get(v, "sentTo"));
    snprintf(sent_to, sizeof(sent_to), "%s", st ? st : "");
    snprintf(record_id, sizeof(record_id), "%s", rid); /* row is released below */
    rc = store_auth_get(env->store, c, record_id, &rec);
    /* single use: of two requests with the same code only one takes it */
    if (rc == 0)
        rc = store_sys_take(env->store, "otp", otp_id);
    json_decref(row);
    if (rc != 0) {
        store_auth_record_release(&rec);
        http_reply_error(req, 400, "Invalid or expired OTP", NULL);
        return;
    }
    /* a code that reached the record's own address verifies it */
    const char *email = json_string_value(json_object_get(rec.record, "email"));
    if (!json_is_true(json_object_get(rec.record, "verified")) && email && *sent_to &&
        strcmp(email, sent_to) == 0) {
        json_t *patch = json_pack("{s:b}", "verified", 1), *errs = NULL, *out = NULL;
        if (store_record_update(env->store, c, record_id, patch, NULL, &errs, &out) == 0)
            json_object_set_new(rec.record, "verified", json_true());
        json_decref(patch);
        json_decref(errs);
        json_decref(out);
    }
    struct store_cond rule;
    struct api_rules *ar = arena_zalloc(http_req_arena(req), sizeof(*ar));
    api__rules_init(ar, req, env);
    ar->fr.context = "otp";
    if (api__rule_compile_expr(ar, c, c->rules[STORE_RULE_AUTH], &rule) != 0) {
        store_auth_record_release(&rec);
        http_reply_error(req, 403,
                         "The request doesn't satisfy the collection requirements to authenticate.",
                         NULL);
        return;
    }
    int64_t deadline = api__deadline_start(env);
    api__auth_finish(
        req, env, c, &rec,
        &(struct api_auth_factor){"otp", api__mfa_id(req, body), &rule, NULL, deadline});
    api__deadline_lift(env);
    store_auth_record_release(&rec);
}

void api__register_authflows(struct http_router *r, struct api_env *env)
{
    uint64_t max = env->records.max_body;
    http_route_max_body(r, "POST", "/api/collections/{collection}/request-verification",
                        request_verification, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/confirm-verification",
                        confirm_verification, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/request-password-reset",
                        request_password_reset, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/confirm-password-reset",
                        confirm_password_reset, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/request-email-change",
                        request_email_change, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/confirm-email-change",
                        confirm_email_change, env, max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/request-otp", request_otp, env,
                        max);
    http_route_max_body(r, "POST", "/api/collections/{collection}/auth-with-otp", auth_with_otp,
                        env, max);
}
