/* records_int.h - shared by the collection and record resources of api/ only. */
#ifndef TANDEM_API_RECORDS_INT_H
#define TANDEM_API_RECORDS_INT_H

#include <pthread.h>

#include "api/api_int.h"
#include "filter/filter.h"
#include "store/store.h"

#define API_EXPAND_MAX_DEPTH 6
#define API_BACKREL_MAX 1000
/* Records one request's expand may load in all; further relations are left unexpanded. */
#define API_EXPAND_MAX_RECORDS 20000

/* Answers 503 and returns false when there is no store; answers 401/403 (collections API) or
 * 403 "Only superusers can perform this action." (records) and returns false unless the
 * request is a superuser's. */
bool api__require_superuser(struct http_req *req, struct api_env *env, bool collections_api);

/* ---- group commit of creates (recwriter.c) ---- */

/* One queued create; lives in its request's arena, the request suspended. The writer fills
 * item's outputs after the batch's COMMIT returned (or failed) and calls done on its thread;
 * done answers and resumes the request and owns item.errors / item.record. */
struct api_wjob {
    struct store_create_item item;
    void (*done)(struct api_wjob *job);
    struct api_wjob *next; /* the writer's */
};

/* Queues job for the writer. ERR_LIMIT when the queue is full, ERR_BUSY when the writer is
 * stopping; then done is never called and the caller answers. */
int api__writer_submit(struct api_writer *w, struct api_wjob *job) MUST_USE;

/* ---- API rules (rules.c) ----
 *
 * What one request may do with records: built once per request by api__rules_init on the
 * HTTP thread and used by that request only. Everything it points to lives in the request
 * arena. */
struct api_rules {
    struct http_req *req; /* NULL for api__rules_init_bare */
    struct arena *arena;  /* the request's, or the one given to api__rules_init_bare */
    struct api_env *env;
    bool superuser;                 /* bypasses every rule and sees everything */
    const struct api_identity *who; /* BORROWED from the request */
    struct filter_request fr;       /* @request.* for rules: auth (loaded lazily), body, ... */
    bool auth_loaded, auth_full;
    int64_t deadline_us; /* time_mono_us() at which the request's store work stops; 0: none */
    /* the manageRule last compiled, for shaping many records of one collection */
    const struct store_collection *manage_c;
    struct store_cond manage_cond;
    int manage_rc;
};

void api__rules_init(struct api_rules *ar, struct http_req *req, struct api_env *env);
/* Rules for a requester without a request (realtime): everything lives in a, the method is
 * GET, query and headers (objects, BORROWED; NULL: empty) are what @request.query.* and
 * @request.headers.* read. */
void api__rules_init_bare(struct api_rules *ar, struct api_env *env, struct arena *a,
                          const struct api_identity *who, const char *context, const json_t *query,
                          const json_t *headers);
/* The submitted body for @request.body.* (BORROWED: must outlive the request's rule uses). */
void api__rules_set_body(struct api_rules *ar, const json_t *body);
/* The context for a client's own filter/sort on c: client mode unless superuser. */
struct filter_ctx api__rules_filter_ctx(struct api_rules *ar, const struct store_collection *c);
/* Hands j to a: json_decref'd when a is released. Returns j (BORROWED from then on). */
json_t *api__arena_json(struct arena *a, json_t *j);
/* The JSON array of a compiled filter's parameters, in order, owned by a. */
json_t *api__filter_params(struct arena *a, const struct filter_sql *f);
/* Rule `which` of c as a condition for the store. 0 with out->sql NULL: no condition
 * (superuser, or the rule is ""); ERR_DENIED: the rule is null (superusers only);
 * ERR_INVALID: the stored rule does not compile (logged; callers deny). */
int api__rule_compile(struct api_rules *ar, const struct store_collection *c, enum store_rule which,
                      struct store_cond *out) MUST_USE;
/* The same for a rule text (NULL: ERR_DENIED), ignoring the superuser bypass. */
int api__rule_compile_expr(struct api_rules *ar, const struct store_collection *c, const char *rule,
                           struct store_cond *out) MUST_USE;
/* acc = (acc) AND (more); params in placeholder order. */
void api__cond_and(struct arena *a, struct store_cond *acc, const struct store_cond *more);
/* Whether the requester is the auth record record_id of c. */
bool api__rules_is_owner(const struct api_rules *ar, const struct store_collection *c,
                         const char *record_id);
/* Whether the requester is a superuser or satisfies c's manageRule for record_id. */
bool api__rules_manages(struct api_rules *ar, const struct store_collection *c,
                        const char *record_id);
/* Removes what a non-superuser may not see of a record of c: hidden fields, and the email of
 * an auth record unless emailVisibility is set or the requester owns or manages it. ar NULL:
 * nothing is removed. */
void api__rules_shape(struct api_rules *ar, const struct store_collection *c, json_t *rec);
void api__rules_shape_all(struct api_rules *ar, const struct store_collection *c, json_t *records);
/* Whether rule compiles against c (NULL and "" do). On failure msg holds the reason. For
 * the collections API: a rule is checked before it is relied on. */
int api__rule_check(struct http_req *req, struct api_env *env, const struct store_collection *c,
                    const char *rule, char *msg, size_t msg_cap) MUST_USE;
/* Drops the body keys a non-superuser may not write: hidden fields (tokenKey, ...) but the
 * password, with their modifiers. */
void api__rules_strip_body(struct api_rules *ar, const struct store_collection *c, json_t *body);

/* The password of a record body, checked against c's password field (`password` of an auth
 * collection, or the one password field of a base one): min, max, pattern, and for auth
 * collections passwordConfirm; a required one of a base collection on create (create). Returns
 * 0 with *pw_out NULL when the body sets no password; ERR_INVALID with errors filled. *pw_out
 * borrows body. */
int api__password_from_body(const struct store_collection *c, bool create, json_t *body,
                            json_t *errors, const char **pw_out) MUST_USE;

/* ---- sign-in answers (auth.c) ---- */

/* The auth collection named by the path parameter "collection", or NULL after answering 404
 * "Missing or invalid auth collection context.". RETURNS a reference. */
struct store_collection *api__auth_collection(struct http_req *req, struct api_env *env);

/* THE answer of every successful sign-in (password, OAuth2, ...): signs a refreshable token
 * of the collection's duration for rec and answers {"record":...,"token":...[,"meta":...]}.
 * deadline_us: the request's store deadline (api__deadline_start), for its expand. TAKES meta
 * (NULL: none). Any thread (the request suspended or not). */
void api__reply_auth(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     const struct store_auth_record *rec, int64_t deadline_us, json_t *meta);
/* The token and answer themselves, for what is not a sign-in (impersonate): duration in
 * seconds (<= 0: the collection's), refreshable as given. TAKES meta. */
void api__reply_token(struct http_req *req, struct api_env *env, const struct store_collection *c,
                      const struct store_auth_record *rec, int64_t deadline_us, int64_t duration,
                      bool refreshable, json_t *meta);
/* Completes the auth-methods answer body of c with its OAuth2 providers (fresh state, code
 * verifier and challenge each) and replies; suspends req when a provider's discovery document
 * must be fetched first (oauth2.c). TAKES body and the reference c. */
void api__oauth2_reply_methods(struct http_req *req, struct api_env *env,
                               struct store_collection *c, json_t *body);

/* ---- bounds of the record and auth routes (env->records) ---- */

/* Starts the store deadline of a request (now + env->records.timeout_ms) on the calling
 * thread and returns it, so that work continued on another thread (hashing pool, writer) can
 * set the same deadline there with store_deadline. */
int64_t api__deadline_start(struct api_env *env);
/* Lifts the calling thread's store deadline: every route that started one calls this when its
 * handler returns, so it never reaches the thread's next request. */
void api__deadline_lift(struct api_env *env);
#define API_TIMEOUT_MESSAGE                                                                        \
    "The request took too long and was stopped; use a simpler filter, sort or expand."

/* Why a record operation was refused before (or by) the store: the answer it gets. */
struct api_fail {
    int status;
    const char *message; /* NULL: the status's default */
    json_t *data;        /* the reply's data, owned by f (api__reply_fail hands it on), or NULL */
};
/* Replies with f (takes f->data). */
void api__reply_fail(struct http_req *req, struct api_fail *f);

/* 400 in PocketBase's envelope for a request stopped at its deadline (ERR_TIMEOUT). */
void api__reply_timeout(struct http_req *req);
/* The answer to a failed expand: 400 for ERR_TIMEOUT and ERR_LIMIT (too many bytes). */
void api__reply_expand_error(struct http_req *req, int rc);
/* The same answer as a failure. */
void api__expand_fail(int rc, struct api_fail *f);

/* Expands the relation paths of `expand` ("author,comments_via_post.user") in every record
 * of the array (records of c). Unknown paths and missing records are skipped silently.
 * ERR_LIMIT as soon as the expanded records come to more than env->records.max_expand_bytes
 * of JSON (the records are then partly expanded: answer with api__reply_expand_error, not
 * with them). */
int api__expand(struct api_env *env, const struct store_collection *c, json_t *records,
                const char *expand) MUST_USE;
/* api__expand for a request: every expanded record must satisfy its collection's viewRule
 * for ar (null rules expand nothing) and is shaped with api__rules_shape. Also ERR_TIMEOUT
 * once ar->deadline_us has passed. */
int api__expand_rules(struct api_rules *ar, const struct store_collection *c, json_t *records,
                      const char *expand) MUST_USE;

/* api__expand with another limit on the records loaded in all (API_EXPAND_MAX_RECORDS). */
int api__expand_max(struct api_env *env, const struct store_collection *c, json_t *records,
                    const char *expand, size_t max_records) MUST_USE;

/* A copy of v that keeps only the keys named by `fields` ("id,title,expand.author.name",
 * "*", "body:excerpt(200,true)"). Arrays are picked element by element. RETURNS a new
 * reference; NULL fields gives v itself (incref'd). */
json_t *api__pick_fields(json_t *v, const char *fields);
/* Replies 200 with v reduced to the request's `fields` query. TAKES v. */
void api__reply_picked(struct http_req *req, json_t *v);

/* Parses page, perPage (default 30, capped at 1000), skipTotal, filter and sort (compiled
 * against c as a superuser's) into q. On bad input it answers 400 (403 for forbidden
 * identifiers) itself and returns false. Compiled SQL and parameters live as long as the
 * request. */
bool api__list_query(struct http_req *req, struct api_env *env, const struct store_collection *c,
                     struct store_list_query *q);
/* api__list_query with the filter context fctx (from api__rules_filter_ctx). */
bool api__list_query_ctx(struct http_req *req, const struct filter_ctx *fctx,
                         struct store_list_query *q);
/* Replies 200 with PocketBase's list envelope. TAKES items. */
void api__reply_list(struct http_req *req, const struct store_list_query *q,
                     const struct store_list_result *res, json_t *items);

/* The body of a record write: JSON, multipart/form-data or x-www-form-urlencoded (see
 * formbody.c). On malformed input, or more than env->records.max_keys keys (parts, pairs),
 * it answers 400 itself and returns NULL. RETURNS BORROWED: lives as long as the request. */
json_t *api__record_body(struct http_req *req, struct api_env *env, bool allow_empty);

/* One file part of a multipart body: its key ("avatar", "documents+"), the client's file name
 * and its bytes (pointing into the request body). */
struct api_upload {
    const char *key;
    const char *filename;
    const char *data;
    size_t len;
};
/* The file parts of a body, in the order sent; arena-allocated. */
struct api_uploads {
    struct arena *arena;
    struct api_upload *v;
    size_t n, cap;
};
/* Appends a file part (key and filename copied into ups->arena; data borrowed). */
void api__uploads_add(struct api_uploads *ups, const char *key, const char *filename,
                      const char *data, size_t len);
/* api__record_body that also hands back the file parts (ups->n == 0 for other bodies). The
 * key STORE_BODY_UPLOADS is removed from whatever the client sent. */
json_t *api__record_body_files(struct http_req *req, struct api_env *env, bool allow_empty,
                               struct api_uploads *ups);
/* ---- file fields (files.c) ---- */

/* One record write's file work (uploads to store, files to remove after the commit). */
struct api_files_change;
/* Checks the uploads of a write to c (update: id is the record's; create: NULL, and a body
 * without an id gets a fresh one, since the id names the files' directory) against their
 * fields (maxSize, mimeTypes sniffed from the bytes), names them and puts the names in body
 * with the uploads list the store checks (STORE_BODY_UPLOADS). *out NULL when c has no file
 * field. false with f set (400 naming the field, 404, 503) when the write is refused; nothing
 * is stored before api__files_write_async. */
bool api__files_prepare(struct http_req *req, struct api_env *env, const struct store_collection *c,
                        const char *id, json_t *body, const struct api_uploads *ups,
                        struct api_files_change **out, struct api_fail *f);
/* Whether uploads wait to be stored. */
bool api__files_pending(const struct api_files_change *ch);
/* Stores the uploads on the calling thread (not an HTTP thread: the batch thread). */
int api__files_write_now(struct api_files_change *ch) MUST_USE;
/* Stores the uploads on the storage pool (durable), then calls done(arg, rc) on that
 * thread. Non-zero: nothing was queued, done is never called. */
int api__files_write_async(struct api_files_change *ch, void (*done)(void *arg, int rc),
                           void *arg) MUST_USE;
/* After the write: rc 0 and the committed record rec remove the files the record no longer
 * names; a refusal removes the uploads. Once per change (NULL: nothing); a change never
 * settled is settled as refused when its request ends. */
void api__files_settle(struct api_files_change *ch, int rc, const json_t *rec);
/* After a committed collection change (update or delete) of coll_id: files of a deleted
 * collection or of removed file fields go. */
void api__files_collection_changed(struct api_env *env, const char *coll_id);

/* http_req_json for the record and auth routes: a JSON object with more than
 * env->records.max_keys top-level keys is answered 400 before it is parsed. */
json_t *api__json_body(struct http_req *req, struct api_env *env, bool allow_empty);
/* The top-level keys of JSON text that is an object, counted up to max + 1 without parsing
 * it (0 for any other value). Malformed text may count wrong: the parser judges it. */
size_t api__json_top_keys(struct str text, size_t max);

/* Adds the parts of a multipart/form-data body (boundary from ctype) to out, the file parts to
 * ups (NULL: they are skipped). ERR_INVALID for a malformed body, ERR_LIMIT past max_parts
 * parts or keys (exposed for the fuzz target). */
int api__parse_multipart(const char *ctype, struct str body, size_t max_parts, json_t *out,
                         struct api_uploads *ups) MUST_USE;

/* Go strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. */
int api__parse_bool(const char *s, bool *out) MUST_USE;
/* A base-10 integer; ERR_INVALID otherwise. */
int api__parse_int(const char *s, int64_t *out) MUST_USE;

/* ---- batch (batch.c drives, records.c checks and writes) ---- */

/* A count the batch thread waits to reach zero (the password jobs of its sub-requests). */
struct api_batch_latch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
};
void api__batch_latch_up(struct api_batch_latch *l);
void api__batch_latch_down(struct api_batch_latch *l);
void api__batch_latch_wait(struct api_batch_latch *l);

/* One record sub-request of a batch, in the batch request's arena. */
struct api_batch_op;

/* Checks one sub-request as its own route would (collection, rules as the batch's requester
 * with @request.context "batch" and the sub-request's query, body checks): method POST
 * (create), PUT (upsert: an update when body.id names an existing record), PATCH (update of
 * id) or DELETE (of id). NULL with f set when refused. On the batch thread; req suspended. */
struct api_batch_op *api__batch_op_new(struct http_req *req, struct api_env *env,
                                       const char *method, const char *collection, const char *id,
                                       json_t *body, const char *query,
                                       const struct api_uploads *ups, struct api_fail *f);
/* Stores the op's uploads now (the batch thread may wait on the disk). */
int api__batch_op_files(struct api_batch_op *op) MUST_USE;
/* After the batch transaction (rc its result, done the op's store op): removes what the
 * committed op dropped (or deleted), or a refused op's uploads. Before api__batch_op_result. */
void api__batch_op_settle(struct api_batch_op *op, int rc, const struct store_op *done);
/* Runs the password work of ops[0..n) on the hashing pool (old-password checks, new hashes)
 * and waits for it. ERR_* with *failed_out and f for the first op refused. */
int api__batch_passwords(struct api_batch_op **ops, size_t n, struct api_batch_latch *latch,
                         size_t *failed_out, struct api_fail *f) MUST_USE;
/* The store operation of op (borrowing op's memory). */
void api__batch_op_store(struct api_batch_op *op, struct store_op *out);
/* The answer of a committed op, {"body":...,"status":N} (takes done->record); NULL with f
 * when its expansion fails. */
json_t *api__batch_op_result(struct api_batch_op *op, struct store_op *done, struct api_fail *f);
/* The answer of the op the store refused (done->rc). */
void api__batch_op_failed(struct api_batch_op *op, const struct store_op *done, struct api_fail *f);

#endif
