/* api_int.h - shared by the files of api/ only: each resource group registers itself. */
#ifndef TANDEM_API_API_INT_H
#define TANDEM_API_API_INT_H

#include "api/api.h"

struct store_collection;
struct store_auth_record;
struct store_cond;

/* Who makes a request, from its Authorization token. An invalid, expired or forged token
 * makes the request a guest's: never an error by itself. */
struct api_identity {
    bool superuser;
    const char *record_id;     /* NULL for guests */
    const char *collection_id; /* of the auth record */
    bool refreshable;          /* the token may be exchanged for a new one (auth-refresh) */
};

#define API_SUPERUSERS_ID "pbc_3142635823"

/* Resolved once per request and cached on it. RETURNS BORROWED: lives as long as req. */
const struct api_identity *api__identity(struct http_req *req, struct api_env *env);
/* The auth record a file token (?token=, POST /api/files/token) names, or NULL when the token
 * is not a valid file token. RETURNS an identity in req's arena. */
const struct api_identity *api__file_token_identity(struct http_req *req, struct api_env *env,
                                                    const char *token);
void api__register_files(struct http_router *r, struct api_env *env);
/* The hooks of struct api_env that identity and the hashing pool provide. */
bool api__is_superuser(struct http_req *req, void *env);
int api__hash_password(const char *password, api_hash_done_cb done, void *done_arg, void *env);

void api__register_ops(struct http_router *r, struct api_env *env);
void api__register_capture(struct http_router *r, struct api_env *env);
void api__register_persons(struct http_router *r, struct api_env *env);
void api__register_keys(struct http_router *r, struct api_env *env);
void api__register_auth(struct http_router *r, struct api_env *env);
void api__register_oauth2(struct http_router *r, struct api_env *env);
void api__register_log(struct http_router *r, struct api_env *env);
/* logs.c: GET /api/logs, /api/logs/stats, /api/logs/{id}, and the router's done hook that
 * logs every answered request. */
void api__register_logs(struct http_router *r, struct api_env *env);
/* settings.logs changed (or were loaded). */
void api__logs_configure(struct api_env *env, int64_t max_days, int64_t min_level, bool log_ip,
                         bool log_auth_id);
void api__register_warehouse(struct http_router *r, struct api_env *env);
void api__register_insights(struct http_router *r, struct api_env *env);
void api__register_realtime(struct http_router *r, struct api_env *env);
void api__register_models(struct http_router *r, struct api_env *env);
void api__register_ml(struct http_router *r, struct api_env *env);
/* audit.c: records superuser requests in env->audit through the router's reply hook. */
void api__register_audit(struct http_router *r, struct api_env *env);
/* Records a sign-in to an auth collection when it is _superusers: ok with the record signed
 * in, or failed with the identity tried (record_id NULL when unknown). No-op without
 * env->audit or for other collections. */
void api__audit_signin(struct http_req *req, struct api_env *env, const char *collection_id,
                       const char *record_id, const char *identity, bool ok);

struct wh_conn;
/* What a warehouse job answers, built off the request (the job never touches the request: a
 * watchdog may have answered it already, see warehouse.c). Exactly one of json/text. */
struct api_wh_reply {
    int status;
    json_t *json; /* owned */
    char *text;   /* owned, from malloc; a JSON document */
};
/* TAKES body. */
void api__wh_reply_json(struct api_wh_reply *rep, int status, json_t *body);
/* TAKES text (from malloc). */
void api__wh_reply_owned(struct api_wh_reply *rep, int status, char *text);
/* PocketBase's error envelope, as http_reply_error. TAKES data. */
void api__wh_reply_error(struct api_wh_reply *rep, int status, const char *message, json_t *data);
/* A job for the warehouse query threads: fills rep (conn is the thread's warehouse
 * connection, NULL when it could not be opened); the thread then answers the request with it,
 * unless the watchdog answered first. */
typedef void (*api_wh_job_cb)(struct wh_conn *conn, struct api_wh_reply *rep, void *arg);
/* Suspends req and queues run(conn, rep, arg) for the query threads (warehouse.c); answers
 * 503 itself when there are none, the queue is full or every thread is stuck. TAKES arg:
 * free_arg(arg) frees it when the job is done, possibly long after req is gone, so arg must
 * not point into req. timeout_ms > 0: req is answered with the statement-timeout error once
 * the job has run that long, even if the thread is still inside one engine call. */
void api__wh_submit(struct api_env *env, struct http_req *req, api_wh_job_cb run, void *arg,
                    void (*free_arg)(void *arg), int64_t timeout_ms);
/* capture_input.resolve_key over the store's write keys; arg is the api_env. */
int api__resolve_key(void *arg, const char *key, char *name_out, size_t name_cap);
void api__register_collections(struct http_router *r, struct api_env *env);
void api__register_records(struct http_router *r, struct api_env *env);
void api__register_settings(struct http_router *r, struct api_env *env);
void api__register_batch(struct http_router *r, struct api_env *env);
/* /api/crons and /api/backups (admin.c). */
void api__register_admin(struct http_router *r, struct api_env *env);
/* settings.backups changed (or were loaded): (re)registers or removes the scheduled backup. */
void api__backups_schedule(struct api_env *env, const char *cron, int64_t max_keep);
/* settings.warehouse changed (or were loaded): (re)registers the retention job with that
 * schedule when days > 0, removes it otherwise (retention.c). */
void api__retention_schedule(struct api_env *env, int64_t days, const char *cron);
/* The static files (public.c): the router's fallback, when env->pub is set. */
void api__register_public(struct http_router *r, struct api_env *env);
/* A URL path (raw, percent-encoded) as the relative file path it names, decoded, in the
 * arena ("" for "/"); *dir_form_out when it ends in '/'. ERR_INVALID for a path that may
 * name no file: an empty segment before the last, ".", "..", a hidden name (except a first
 * ".well-known"), a malformed escape, or a decoded '/', '\', NUL or control character. */
int api__public_clean(struct arena *a, struct str path, const char **rel_out,
                      bool *dir_form_out) MUST_USE;
/* The Content-Type for a file name, from its extension. */
const char *api__public_type(const char *name);

/* settings.batch, as the batch route uses it. */
struct api_batch_settings {
    bool enabled;
    int64_t max_requests, timeout_s, max_body;
};
void api__settings_batch(struct api_env *env, struct api_batch_settings *out);
/* A copy of one settings section ("meta", "smtp", ...), secrets included: never send it to a
 * client. RETURNS a new object (empty without settings). */
json_t *api__settings_section(struct api_env *env, const char *section);
/* auth_token_lookup_cb over the store (identity.c); arg is the api_env. */
int api__token_lookup(void *arg, const char *collection_id, const char *record_id,
                      char token_key_out[AUTH_TOKEN_KEY_MAX + 1]);
/* mail.c: the mail queue's sender (api_mail_start), the test email route, and one templated
 * mail to an auth record. tpl is a mail_template; vars holds the extra placeholders
 * ({TOKEN}, {OTP}, ...; may be NULL); to NULL: the record's email. 0 when queued. */
int api__mail_record(struct api_env *env, const struct store_collection *c, const json_t *record,
                     int tpl, const json_t *vars, const char *to);
void api__register_mail(struct http_router *r, struct api_env *env);
/* authflows.c: verification, password reset, email change and OTP routes. */
void api__register_authflows(struct http_router *r, struct api_env *env);
/* Deletes a few system rows of kind whose due_us has passed (authflows.c). */
void api__sys_sweep(struct api_env *env, const char *kind);
/* How a sign-in factor succeeded, for api__auth_finish. */
struct api_auth_factor {
    const char *method;            /* "password", "otp", "oauth2"; NULL or "": skip MFA and alert */
    const char *mfa_id;            /* the mfaId the client sent (api__mfa_id), or NULL */
    const struct store_cond *rule; /* the compiled authRule to check, or NULL: checked already */
    json_t *meta;                  /* TAKEN: added to the answer as "meta" (OAuth2), or NULL */
    int64_t deadline_us;           /* the request's store deadline (api__deadline_start) */
};
/* The one place where a successful sign-in factor becomes a token (auth.c): checks the
 * authRule, then MFA (a first factor answers 401 {mfaId}; a second one must bring that mfaId,
 * another method, the same record, within mfa.duration; 400 otherwise), then the new-device
 * alert, and answers {token, record[, meta]}. Every sign-in route calls it; nothing else signs
 * a sign-in token. Any thread (an HTTP thread or the hashing pool's callback): store point
 * reads and short writes only. */
void api__auth_finish(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const struct store_auth_record *rec, const struct api_auth_factor *f);
/* {"<field>": {"code": code, "message": message}}. RETURNS a new object. */
json_t *api__field_error(const char *field, const char *code, const char *message);
/* The mfaId a sign-in request carries: the query's (what the JS SDK sends) or the body's.
 * RETURNS a string living as long as req, or NULL. */
const char *api__mfa_id(struct http_req *req, const json_t *body);
/* An auth option of c with PocketBase's default: c->auth_options[key][sub] (sub NULL: the
 * option itself). */
bool api__auth_opt_bool(const struct store_collection *c, const char *key, const char *sub,
                        bool def);
int64_t api__auth_opt_int(const struct store_collection *c, const char *key, const char *sub,
                          int64_t def);
/* The client's address: from the first trusted proxy header that holds one (settings
 * trustedProxy), else the connection's. RETURNS BORROWED: lives as long as req. */
const char *api__client_ip(struct http_req *req, struct api_env *env);
/* Who may use the analytics routes (insights, the warehouse SQL API): a superuser, or an
 * analyst, an auth record for which settings.analytics.accessRule holds (insights.c). Answers
 * 401 (guest) or 403 itself and returns API_ANALYTICS_NONE otherwise. Store point reads. */
enum api_analytics { API_ANALYTICS_NONE, API_ANALYTICS_ANALYST, API_ANALYTICS_SUPERUSER };
enum api_analytics api__analytics_access(struct http_req *req, struct api_env *env);
/* Whether rule (NULL or "": superusers only) is a valid accessRule; msg gets the reason. */
int api__analytics_rule_check(struct http_req *req, struct api_env *env, const char *rule,
                              char *msg, size_t msg_cap) MUST_USE;
/* An analyst's warehouse scope (the ids of the auth collections), heap-owned: a job may
 * outlive its request. NULL when the collections cannot be listed. */
struct wh_scope *api__analyst_scope(struct api_env *env);
void api__analyst_scope_free(struct wh_scope *scope);
/* A reference to the privacy rules capture applies (settings.privacy), or NULL when there are
 * none; release with capture_pii_unref. One atomic load when there are none. */
struct capture_pii *api__settings_pii(struct api_env *env);

#endif
