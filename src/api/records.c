/* records.c - /api/collections/{collection}/records: PocketBase's list/search, view, create,
 * update and delete, under the collection's API rules (rules.c): null is superusers only (403),
 * "" is open, other rules are conditions the store checks in the operation's transaction.
 * Filters and sorts go through the filter compiler; values are always bound parameters. */
#include <stddef.h>
#include <regex.h>
#include <string.h>

#include "api/records_int.h"

struct rec_req {
    struct http_req *req;
    struct api_env *env;
    struct store_collection *c;
    struct api_rules ar;         /* who asks, built once for the request */
    const char *expand, *fields; /* of the answer: the query's (a batch: the sub-request's) */
};

int64_t api__deadline_start(struct api_env *env)
{
    int64_t deadline = time_mono_us() + env->records.timeout_ms * 1000;
    store_deadline(env->store, deadline);
    return deadline;
}

void api__deadline_lift(struct api_env *env)
{
    store_deadline(env->store, 0);
}

void api__reply_timeout(struct http_req *req)
{
    http_reply_error(req, 400, API_TIMEOUT_MESSAGE, NULL);
}

/* The answer to a store failure that is not about the request's input. */
static void reply_failure(struct http_req *req, int rc)
{
    if (rc == ERR_TIMEOUT)
        api__reply_timeout(req);
    else
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
}

static bool fail(struct api_fail *f, int status, const char *message, json_t *data)
{
    f->status = status;
    f->message = message;
    f->data = data;
    return false;
}

void api__reply_fail(struct http_req *req, struct api_fail *f)
{
    http_reply_error(req, f->status, f->message, f->data);
    f->data = NULL;
}

static void coll_release(void *arg)
{
    store_collection_unref(arg);
}

/* Store, collection (by name or id), requester; false with f set when the operation cannot
 * go on. Does not reply. */
static bool begin_in(struct rec_req *rr, struct http_req *req, struct api_env *env,
                     const char *collection, struct api_fail *f)
{
    rr->req = req;
    rr->env = env;
    rr->c = NULL;
    rr->expand = http_req_query(req, "expand");
    rr->fields = http_req_query(req, "fields");
    if (!env->store)
        return fail(f, 503, "The data store is not available.", NULL);
    if (!collection || store_collection_get(env->store, collection, &rr->c) != 0)
        return fail(f, 404, "Missing collection context.", NULL);
    arena_on_release(http_req_arena(req), coll_release, rr->c);
    api__rules_init(&rr->ar, req, env);
    rr->ar.deadline_us = api__deadline_start(env); /* lifted when the route returns */
    return true;
}

/* Common start of every handler; answers and returns false when it cannot go on. */
static bool begin(struct http_req *req, struct api_env *env, struct rec_req *rr)
{
    struct api_fail f;
    if (begin_in(rr, req, env, http_req_param(req, "collection"), &f))
        return true;
    api__reply_fail(req, &f);
    return false;
}

/* The rule `which` of the collection as a condition; false with a 403 in f (null rule, or a
 * stored rule that no longer compiles) when the request may not go on. */
static bool rule_cond_in(struct rec_req *rr, enum store_rule which, struct store_cond *cond,
                         struct api_fail *f)
{
    if (api__rule_compile(&rr->ar, rr->c, which, cond) == 0)
        return true;
    return fail(f, 403, "Only superusers can perform this action.", NULL);
}

/* The same, answering the 403 itself. */
static bool rule_cond(struct rec_req *rr, enum store_rule which, struct store_cond *cond)
{
    struct api_fail f;
    if (rule_cond_in(rr, which, cond, &f))
        return true;
    api__reply_fail(rr->req, &f);
    return false;
}

/* Shapes, expands and picks fields of one record (TAKES rec) as the answer shows it. NULL with
 * *rc_out set when the expansion fails (api__reply_expand_error). */
static json_t *render_record(struct rec_req *rr, json_t *rec, int *rc_out)
{
    api__rules_shape(&rr->ar, rr->c, rec);
    json_t *arr = json_pack("[o]", rec);
    *rc_out = api__expand_rules(&rr->ar, rr->c, arr, rr->expand);
    json_t *out = *rc_out ? NULL : api__pick_fields(json_array_get(arr, 0), rr->fields);
    json_decref(arr);
    return out;
}

/* Replies 200 with one record (TAKES rec). */
static void reply_record(struct rec_req *rr, json_t *rec)
{
    int rc;
    json_t *out = render_record(rr, rec, &rc);
    if (out)
        http_reply_json(rr->req, 200, out);
    else
        api__reply_expand_error(rr->req, rc);
}

static void list_records(struct http_req *req, void *ctx)
{
    struct rec_req rr;
    if (!begin(req, ctx, &rr))
        return;
    struct api_env *env = ctx;
    struct store_cond cond;
    if (!rule_cond(&rr, STORE_RULE_LIST, &cond))
        return;
    struct filter_ctx fctx = api__rules_filter_ctx(&rr.ar, rr.c);
    struct store_list_query q;
    if (!api__list_query_ctx(req, &fctx, &q))
        return;
    if (cond.sql) { /* rows the rule refuses are simply absent: (rule) AND (filter) */
        struct store_cond where = {.sql = q.where_sql, .params = q.where_params};
        api__cond_and(http_req_arena(req), &cond, &where);
        q.where_sql = cond.sql;
        q.where_params = cond.params;
    }
    struct store_list_result res;
    int rc = store_record_list(env->store, rr.c, &q, &res);
    if (rc == ERR_TIMEOUT) {
        api__reply_timeout(req);
        return;
    }
    if (rc == ERR_INVALID) {
        http_reply_error(req, 400, "Invalid filter or sort parameters.", NULL);
        return;
    }
    if (rc == ERR_NOTFOUND) { /* the collection went away meanwhile */
        http_reply_error(req, 404, "Missing collection context.", NULL);
        return;
    }
    if (rc) {
        xlog_error("cannot list records of %s: %s", rr.c->name, store_errmsg(env->store));
        http_reply_error(req, rc == ERR_BUSY ? 503 : 500, NULL, NULL);
        return;
    }
    api__rules_shape_all(&rr.ar, rr.c, res.items);
    rc = api__expand_rules(&rr.ar, rr.c, res.items, http_req_query(req, "expand"));
    if (rc) {
        json_decref(res.items);
        api__reply_expand_error(req, rc);
        return;
    }
    json_t *items = api__pick_fields(res.items, http_req_query(req, "fields"));
    json_decref(res.items);
    api__reply_list(req, &q, &res, items);
}

static void view_record(struct http_req *req, void *ctx)
{
    struct rec_req rr;
    if (!begin(req, ctx, &rr))
        return;
    struct store_cond cond;
    if (!rule_cond(&rr, STORE_RULE_VIEW, &cond))
        return;
    json_t *rec = NULL;
    int rc = store_record_get_if(rr.env->store, rr.c, http_req_param(req, "id"),
                                 cond.sql ? &cond : NULL, &rec);
    if (rc == ERR_NOTFOUND) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    if (rc) {
        reply_failure(req, rc);
        return;
    }
    reply_record(&rr, rec);
}

static json_t *verr(const char *code, const char *message, json_t *params)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (params)
        json_object_set_new(e, "params", params);
    return e;
}

/* The password of a record body (the collection's password field: `password` of an auth
 * collection, any password field of a base one), checked against the field's options. */
int api__password_from_body(const struct store_collection *c, bool create, json_t *body,
                            json_t *errors, const char **pw_out)
{
    *pw_out = NULL;
    const struct store_field *f = NULL;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_PASSWORD)
            f = &c->fields[i];
    if (!f)
        return 0;
    bool auth = c->type == STORE_COLLECTION_AUTH;
    const char *key = f->name;
    json_t *pw = json_object_get(body, key);
    if (!pw || (json_is_string(pw) && json_string_length(pw) == 0)) {
        if (auth || !create || !f->required)
            return 0; /* auth records: auth_checks says what a create without one gets */
        json_object_set_new(errors, key, verr("validation_required", "Cannot be blank.", NULL));
        return ERR_INVALID;
    }
    if (!json_is_string(pw)) {
        json_object_set_new(errors, key,
                            verr("validation_invalid_value", "Must be a string.", NULL));
        return ERR_INVALID;
    }
    const char *p = json_string_value(pw);
    size_t n = 0;
    for (const char *q = p; *q; q++)
        if (((unsigned char)*q & 0xC0) != 0x80)
            n++;
    /* PocketBase: no minimum unless set (the auth field sets 8), at most 71 by default (what
     * bcrypt can hash; tandem keeps the limit) */
    double min = f->has_min ? f->min : (auth ? 8 : 0), max = f->has_max ? f->max : 71;
    char msg[96];
    if ((double)n < min) {
        snprintf(msg, sizeof(msg), "Must be at least %.0f character(s).", min);
        json_object_set_new(
            errors, key,
            verr("validation_min_text_constraint", msg, json_pack("{s:i}", "min", (int)min)));
    } else if ((double)n > max) {
        snprintf(msg, sizeof(msg), "Must be no more than %.0f character(s).", max);
        json_object_set_new(
            errors, key,
            verr("validation_max_text_constraint", msg, json_pack("{s:i}", "max", (int)max)));
    } else if (f->pattern && *f->pattern) {
        regex_t re;
        bool ok = regcomp(&re, f->pattern, REG_EXTENDED | REG_NOSUB) == 0;
        bool match = ok && regexec(&re, p, 0, NULL, 0) == 0;
        if (ok)
            regfree(&re);
        if (!match)
            json_object_set_new(errors, key,
                                verr("validation_invalid_format", "Invalid value format.", NULL));
    }
    if (auth) {
        json_t *confirm = json_object_get(body, "passwordConfirm");
        if (!json_is_string(confirm) || strcmp(json_string_value(confirm), p) != 0)
            json_object_set_new(errors, "passwordConfirm",
                                verr("validation_values_mismatch", "Values don't match.", NULL));
    }
    if (json_object_size(errors))
        return ERR_INVALID;
    *pw_out = p;
    return 0;
}

/* Whether the body changes a field relative to its current value ("f+", "+f", "f-"), which
 * the body as rules see it must resolve against the record. */
static bool has_modifiers(const json_t *body)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        char name[STORE_BODY_KEY_MAX + 1];
        char op;
        if (store_body_key(key, name, &op) && op && op != 'g')
            return true;
    }
    return false;
}

/* A record write, possibly waiting for an old-password check and a password hash. Lives in
 * the request arena. */
struct write_job {
    struct rec_req rr;
    json_t *body;
    bool create;
    struct store_cond cond;
    const char *pw;                 /* new password, or NULL */
    const char *old_pw;             /* oldPassword to check first, or NULL */
    const char *old_hash;           /* the stored hash it is checked against */
    bool and_manage;                /* a non-manager's create sets `verified`: the manageRule too */
    struct api_wjob w;              /* the write queued for the group-commit writer */
    struct api_files_change *files; /* its uploads and file removals, or NULL */
};

/* store_cond.build: the write's rule over the body exactly as the store writes it, compiled
 * inside the write's transaction (on the writer's thread for a queued create; the request is
 * suspended then and its arena is this thread's). */
static int build_cond(void *arg, const json_t *view, struct store_cond *out)
{
    struct write_job *job = arg;
    struct rec_req *rr = &job->rr;
    struct arena *a = http_req_arena(rr->req);
    api__rules_set_body(&rr->ar, api__arena_json(a, json_incref((json_t *)view)));
    struct store_cond cond;
    int rc = api__rule_compile(&rr->ar, rr->c, job->create ? STORE_RULE_CREATE : STORE_RULE_UPDATE,
                               &cond);
    if (rc == 0 && job->and_manage) {
        struct store_cond m;
        rc = api__rule_compile_expr(&rr->ar, rr->c, rr->c->rules[STORE_RULE_MANAGE], &m);
        if (rc == 0)
            api__cond_and(a, &cond, &m);
    }
    if (rc)
        return rc;
    out->sql = cond.sql;
    out->params = cond.params;
    out->build = NULL;
    return 0;
}

/* The answer to a write the store refused with rc (errors: its field errors, borrowed). */
static void write_failed(const struct rec_req *rr, bool create, int rc, const json_t *errors,
                         struct api_fail *f)
{
    const char *what = create ? "Failed to create record." : "Failed to update record.";
    if (rc == ERR_INVALID || rc == ERR_DENIED) /* ERR_DENIED: the create rule refused it */
        fail(f, 400, what, errors ? json_incref((json_t *)errors) : NULL);
    else if (rc == ERR_NOTFOUND)
        fail(f, 404, NULL, NULL);
    else if (rc == ERR_BUSY)
        fail(f, 503, "The data store is busy; try again.", NULL);
    else if (rc == ERR_TIMEOUT)
        fail(f, 400, API_TIMEOUT_MESSAGE, NULL);
    else {
        xlog_error("cannot write a record of %s: %s", rr->c->name, store_errmsg(rr->env->store));
        fail(f, 500, NULL, NULL);
    }
}

/* Answers a finished write (TAKES errors and rec). */
static void answer_write(struct write_job *job, int rc, json_t *errors, json_t *rec)
{
    api__files_settle(job->files, rc, rec);
    if (rc == 0) {
        reply_record(&job->rr, rec);
    } else {
        struct api_fail f;
        write_failed(&job->rr, job->create, rc, errors, &f);
        api__reply_fail(job->rr.req, &f);
        json_decref(rec);
    }
    json_decref(errors);
}

/* On the writer thread, after the group's COMMIT returned. */
static void write_done(struct api_wjob *w)
{
    struct write_job *job = (struct write_job *)(void *)((char *)w - offsetof(struct write_job, w));
    struct http_req *req = job->rr.req;
    struct api_env *env = job->rr.env;
    store_deadline(env->store, job->rr.ar.deadline_us); /* the answer's expand */
    answer_write(job, w->item.rc, w->item.errors, w->item.record);
    api__deadline_lift(env);
    http_req_resume(req); /* job lives in the request's arena: not touched after this */
}

/* Writes the record and answers. suspended: the request is suspended and this thread holds
 * it. Returns true when the write went to the group-commit writer, which answers and resumes
 * the request (neither job nor the request may be touched then); false when answered here. */
static bool write_finish(struct write_job *job, const char *hash, bool suspended)
{
    struct rec_req *rr = &job->rr;
    struct http_req *req = rr->req;
    const struct store_cond *cond = job->cond.sql ? &job->cond : NULL;
    if (rr->env->writer) { /* creates and updates: group commit */
        if (!suspended)
            http_req_suspend(req);
        job->w.item = (struct store_create_item){
            .c = rr->c,
            .update_id = job->create ? NULL : http_req_param(req, "id"),
            .body = job->body,
            .password_hash = hash ? arena_strdup(http_req_arena(req), hash) : NULL,
            .cond = cond,
            .deadline_us = rr->ar.deadline_us,
        };
        job->w.done = write_done;
        if (api__writer_submit(rr->env->writer, &job->w) == 0)
            return true;
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "The data store is busy; try again.", NULL);
        if (!suspended)
            http_req_resume(req);
        return false;
    }
    json_t *rec = NULL, *errors = NULL;
    int rc;
    if (job->create)
        rc = store_record_create_if(rr->env->store, rr->c, job->body, hash, cond, &errors, &rec);
    else
        rc = store_record_update_if(rr->env->store, rr->c, http_req_param(req, "id"), job->body,
                                    hash, cond, &errors, &rec);
    answer_write(job, rc, errors, rec);
    return false;
}

static void hashed(void *arg, int rc, const char *hash)
{
    struct write_job *job = arg;
    struct http_req *req = job->rr.req;
    if (rc == 0 && hash) {
        struct api_env *env = job->rr.env;
        store_deadline(env->store, job->rr.ar.deadline_us); /* on the hashing thread */
        bool queued = write_finish(job, hash, true);
        api__deadline_lift(env);
        if (queued)
            return; /* the writer answers and resumes */
    } else {
        http_reply_error(req, 503, "Password hashing is not available; try again.", NULL);
    }
    http_req_resume(req); /* job lives in the request's arena: not touched after this */
}

/* Starts hashing job->pw; the request must be suspended. Answers and resumes on failure. */
static void start_hash(struct write_job *job)
{
    struct api_env *env = job->rr.env;
    struct http_req *req = job->rr.req;
    int rc =
        env->hash_password ? env->hash_password(job->pw, hashed, job, env->auth_arg) : ERR_INTERNAL;
    if (rc) {
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "Password hashing is busy; try again.", NULL);
        http_req_resume(req);
    }
}

static void old_checked(void *arg, const struct auth_pool_result *res)
{
    struct write_job *job = arg;
    struct http_req *req = job->rr.req;
    if (res->rc != 0) {
        int status = res->rc == ERR_BUSY ? 503 : 400;
        http_reply_error(req, status, status == 400 ? "Failed to update record." : NULL,
                         status == 400 ? json_pack("{s:{s:s,s:s}}", "oldPassword", "code",
                                                   "validation_invalid_old_password", "message",
                                                   "Missing or invalid old password.")
                                       : NULL);
        http_req_resume(req);
        return;
    }
    start_hash(job);
}

/* Whether an auth collection other than c holds a record with this id. */
static bool other_auth_has(struct api_env *env, const struct store_collection *c, const char *id)
{
    struct store_collection **list = NULL;
    size_t n = 0;
    if (store_collection_list(env->store, &list, &n) != 0)
        return true; /* cannot tell: refuse the chosen id */
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        if (list[i]->type != STORE_COLLECTION_AUTH || strcmp(list[i]->id, c->id) == 0)
            continue;
        char key[AUTH_TOKEN_KEY_MAX + 1];
        found = store_auth_token_key(env->store, list[i], id, key, sizeof(key)) != ERR_NOTFOUND;
    }
    store_collection_list_free(list, n);
    return found;
}

/* The auth-collection checks of a write by the requester. old is the current record (update)
 * or NULL (create). Fills errors; may add a condition (manage) or a tokenKey to the body. */
static void auth_checks(struct write_job *job, const char *id, const json_t *old, json_t *errors)
{
    struct rec_req *rr = &job->rr;
    const struct store_collection *c = rr->c;
    json_t *body = job->body;
    struct api_rules *ar = &rr->ar;
    json_t *verified = json_object_get(body, "verified");
    json_t *email = json_object_get(body, "email");
    if (job->create) {
        /* auth record ids are unique across auth collections, so that a rule comparing
         * @request.auth.id cannot take a record of one collection for one of another */
        const char *want = json_string_value(json_object_get(body, "id"));
        if (want && *want && other_auth_has(rr->env, c, want))
            json_object_set_new(errors, "id",
                                verr("validation_not_unique", "Value must be unique.", NULL));
        /* verified only by superusers and managers: a manager's create must satisfy the
         * manageRule as well as the createRule */
        if (!ar->superuser && verified && !json_is_false(verified)) {
            struct store_cond m;
            if (api__rule_compile_expr(ar, c, c->rules[STORE_RULE_MANAGE], &m) != 0)
                json_object_set_new(errors, "verified",
                                    verr("validation_values_mismatch",
                                         "Only superusers and managers can set this field.", NULL));
            else
                api__cond_and(http_req_arena(rr->req), &job->cond, &m);
            job->and_manage = true;
        }
        return;
    }
    bool manage = api__rules_manages(ar, c, id);
    const char *old_email = json_string_value(json_object_get(old, "email"));
    bool email_change =
        json_is_string(email) && old_email && strcasecmp(json_string_value(email), old_email) != 0;
    if (!manage) {
        if (verified && !json_equal(verified, json_object_get(old, "verified")))
            json_object_set_new(errors, "verified",
                                verr("validation_values_mismatch",
                                     "Only superusers and managers can change this field.", NULL));
        if (email_change)
            json_object_set_new(errors, "email",
                                verr("validation_values_mismatch",
                                     "Only superusers and managers can change the email.", NULL));
        if (job->pw) {
            const char *op = json_string_value(json_object_get(body, "oldPassword"));
            if (!op || !*op)
                json_object_set_new(errors, "oldPassword",
                                    verr("validation_required", "Cannot be blank.", NULL));
            else
                job->old_pw = op;
        }
    }
    if (email_change && !json_object_size(errors)) {
        /* a new email invalidates the tokens signed with the old tokenKey (the store rotates
         * it itself for a new password) */
        char key[AUTH_TOKEN_KEY_LEN + 1];
        auth_token_key_new(key);
        json_object_set_new(body, "tokenKey", json_string(key));
    }
}

/* Everything a write checks before the store: the rule (as far as it can be told before the
 * transaction, which compiles it again over the written body), the current record where the
 * body or the auth checks need it, the password fields and the auth-collection checks. The
 * body is job->body, already parsed; id is the record's on update. false with f set when the
 * write is refused; then nothing was started. Does not reply. */
static bool write_prepare(struct write_job *job, const char *id, struct api_fail *f)
{
    struct rec_req *rr = &job->rr;
    struct api_env *env = rr->env;
    struct arena *a = http_req_arena(rr->req);
    bool create = job->create;
    const char *what = create ? "Failed to create record." : "Failed to update record.";
    if (!json_is_object(job->body))
        return fail(f, 400, what, NULL);
    api__rules_strip_body(&rr->ar, rr->c, job->body);

    /* the current record, as far as the rule lets the requester see it */
    json_t *old = NULL;
    int rc;
    bool auth = rr->c->type == STORE_COLLECTION_AUTH;
    if (!create && !rr->ar.superuser && !rr->c->rules[STORE_RULE_UPDATE])
        return fail(f, 403, "Only superusers can perform this action.", NULL);
    if (!create && (auth || has_modifiers(job->body))) {
        /* read to resolve body modifiers and for the auth checks; nothing of it is told
         * before the rule holds */
        rc = store_record_get_if(env->store, rr->c, id, NULL, &old);
        if (rc) {
            write_failed(rr, create, rc, NULL, f);
            return false;
        }
        api__arena_json(a, old);
    }
    /* the rule sees the body as the store would write it now; the store compiles the rule
     * again over what it actually writes, in the write's transaction (build_cond). A
     * superuser's write is under no rule: the view (a second validation of the body) is not
     * built for it. */
    if (!rr->ar.superuser)
        api__rules_set_body(&rr->ar,
                            api__arena_json(a, store_record_body_view(rr->c, old, job->body)));
    if (!rule_cond_in(rr, create ? STORE_RULE_CREATE : STORE_RULE_UPDATE, &job->cond, f))
        return false;
    if (!create && job->cond.sql && auth) {
        /* the auth checks below answer 400 with details: only once the rule holds (the store
         * checks it again, in the write's transaction, before its own validation) */
        json_t *chk = NULL;
        rc = store_record_get_if(env->store, rr->c, id, &job->cond, &chk);
        json_decref(chk);
        if (rc) {
            write_failed(rr, create, rc, NULL, f);
            return false;
        }
    }

    json_t *errors = json_object();
    api__arena_json(a, errors);
    rc = api__password_from_body(rr->c, create, job->body, errors, &job->pw);
    if (auth)
        auth_checks(job, id, old, errors);
    if (rc == ERR_INVALID || json_object_size(errors))
        return fail(f, 400, what, json_incref(errors));
    if (job->cond.sql) {
        job->cond.build = build_cond;
        job->cond.build_arg = job;
    }
    if (job->old_pw) {
        struct store_auth_record arec = {0};
        rc = store_auth_get(env->store, rr->c, id, &arec);
        if (rc == 0)
            job->old_hash = arena_strdup(a, arec.password_hash ? arec.password_hash : "");
        store_auth_record_release(&arec);
        if (rc == ERR_NOTFOUND)
            return fail(f, 404, NULL, NULL);
        if (rc || !env->pool)
            return fail(f, 503, "Password checks are not available.", NULL);
    }
    return true;
}

/* Goes on with a prepared write: the old-password check, the password hash, the store.
 * suspended: the request is suspended and this thread holds it (then it is answered and
 * resumed here or by whoever the write went to). */
static void write_continue(struct write_job *job, bool suspended)
{
    struct http_req *req = job->rr.req;
    struct api_env *env = job->rr.env;
    if (job->old_pw) {
        if (!suspended)
            http_req_suspend(req);
        int rc = auth_pool_verify(env->pool, *job->old_hash ? job->old_hash : NULL, job->old_pw,
                                  old_checked, job);
        if (rc == ERR_LIMIT || rc == ERR_INVALID) {
            struct auth_pool_result bad = {.rc = ERR_DENIED};
            old_checked(job, &bad); /* answers and resumes */
        } else if (rc) {
            http_set_header(req, "Retry-After", "1");
            http_reply_error(req, 503, "Password checks are busy; try again.", NULL);
            http_req_resume(req);
        }
        return;
    }
    if (!job->pw) {
        bool queued = write_finish(job, NULL, suspended);
        if (suspended && !queued)
            http_req_resume(req);
        return;
    }
    if (!suspended)
        http_req_suspend(req);
    start_hash(job);
}

/* On the storage pool, once the uploads are stored (rc 0) or failed. */
static void files_stored(void *arg, int rc)
{
    struct write_job *job = arg;
    struct api_env *env = job->rr.env;
    if (rc) {
        api__files_settle(job->files, ERR_INVALID, NULL);
        http_reply_error(job->rr.req, 503, "The uploaded files could not be stored.", NULL);
        http_req_resume(job->rr.req);
        return;
    }
    store_deadline(env->store, job->rr.ar.deadline_us);
    write_continue(job, true);
    api__deadline_lift(env);
}

static void write_record(struct http_req *req, void *ctx, bool create)
{
    struct write_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    if (!begin(req, ctx, &job->rr))
        return;
    if (job->rr.c->type == STORE_COLLECTION_VIEW) {
        http_reply_error(req, 400, "Unsupported collection type.", NULL);
        return;
    }
    struct api_env *env = ctx;
    job->create = create;
    struct api_uploads ups;
    job->body = api__record_body_files(req, env, !create, &ups);
    if (!job->body)
        return;
    struct api_fail f;
    if (!create && !job->rr.ar.superuser && !job->rr.c->rules[STORE_RULE_UPDATE]) {
        http_reply_error(req, 403, "Only superusers can perform this action.", NULL);
        return; /* before the files read the record */
    }
    if ((json_is_object(job->body) &&
         !api__files_prepare(req, env, job->rr.c, create ? NULL : http_req_param(req, "id"),
                             job->body, &ups, &job->files, &f)) ||
        !write_prepare(job, http_req_param(req, "id"), &f)) {
        api__reply_fail(req, &f);
        return;
    }
    if (api__files_pending(job->files)) {
        http_req_suspend(req);
        if (api__files_write_async(job->files, files_stored, job) != 0) {
            http_set_header(req, "Retry-After", "1");
            http_reply_error(req, 503, "Too many uploads are waiting; try again.", NULL);
            http_req_resume(req);
        }
        return;
    }
    write_continue(job, false);
}

/* A delete queued for the group-commit writer; lives in the request arena. */
struct delete_job {
    struct rec_req rr;
    struct store_cond cond;
    struct api_wjob w;
};

static void delete_answer(struct rec_req *rr, int rc)
{
    struct http_req *req = rr->req;
    if (rc == 0) {
        http_reply_empty(req, 204); /* its files went after the commit (api_files_start) */
    } else if (rc == ERR_NOTFOUND)
        http_reply_error(req, 404, NULL, NULL);
    else if (rc == ERR_CONFLICT)
        http_reply_error(req, 400,
                         "Failed to delete record. Make sure that the record is not part of a "
                         "required relation reference.",
                         NULL);
    else
        reply_failure(req, rc);
}

/* On the writer thread, after the group's COMMIT returned. */
static void delete_done(struct api_wjob *w)
{
    struct delete_job *job =
        (struct delete_job *)(void *)((char *)w - offsetof(struct delete_job, w));
    struct http_req *req = job->rr.req;
    delete_answer(&job->rr, w->item.rc);
    http_req_resume(req); /* job lives in the request's arena: not touched after this */
}

static void delete_record(struct http_req *req, void *ctx)
{
    struct delete_job *job = arena_zalloc(http_req_arena(req), sizeof(*job));
    struct rec_req *rr = &job->rr;
    if (!begin(req, ctx, rr))
        return;
    if (rr->c->type == STORE_COLLECTION_VIEW) {
        http_reply_error(req, 400, "Unsupported collection type.", NULL);
        return;
    }
    if (!rule_cond(rr, STORE_RULE_DELETE, &job->cond))
        return;
    const struct store_cond *cond = job->cond.sql ? &job->cond : NULL;
    if (rr->env->writer) { /* group commit, answered after the COMMIT that holds it */
        http_req_suspend(req);
        job->w.item = (struct store_create_item){
            .c = rr->c,
            .update_id = http_req_param(req, "id"),
            .delete_it = true,
            .cond = cond,
            .deadline_us = rr->ar.deadline_us,
        };
        job->w.done = delete_done;
        if (api__writer_submit(rr->env->writer, &job->w) == 0)
            return;
        http_set_header(req, "Retry-After", "1");
        http_reply_error(req, 503, "The data store is busy; try again.", NULL);
        http_req_resume(req);
        return;
    }
    delete_answer(rr,
                  store_record_delete_if(rr->env->store, rr->c, http_req_param(req, "id"), cond));
}

/* ---- batch sub-requests (driven by batch.c on its thread) ---- */

struct api_batch_op {
    struct write_job job; /* create, update; delete uses job.rr and job.cond */
    enum store_op_kind kind;
    const char *id;
    const char *hash; /* the new password's hash, once api__batch_passwords ran */
    int pw_rc;        /* the pool's answers */
    int old_rc;
    struct api_fail fail; /* when prepare refused it */
};

/* The sub-request's query as @request.query and as the answer's expand/fields. */
static void batch_query(struct rec_req *rr, const char *query)
{
    struct arena *a = http_req_arena(rr->req);
    struct http_kv *kv = NULL;
    size_t n = 0;
    json_t *q = api__arena_json(a, json_object());
    rr->expand = rr->fields = NULL;
    if (query && http_query_parse(a, query, strlen(query), &kv, &n) == 0)
        for (size_t i = 0; i < n; i++) {
            if (!json_object_get(q, kv[i].key))
                json_object_set_new(q, kv[i].key, json_string(kv[i].value));
            if (!rr->expand && strcmp(kv[i].key, "expand") == 0)
                rr->expand = kv[i].value;
            if (!rr->fields && strcmp(kv[i].key, "fields") == 0)
                rr->fields = kv[i].value;
        }
    rr->ar.fr.query = q;
}

struct api_batch_op *api__batch_op_new(struct http_req *req, struct api_env *env,
                                       const char *method, const char *collection, const char *id,
                                       json_t *body, const char *query,
                                       const struct api_uploads *ups, struct api_fail *f)
{
    struct api_batch_op *op = arena_zalloc(http_req_arena(req), sizeof(*op));
    struct write_job *job = &op->job;
    struct rec_req *rr = &job->rr;
    if (!begin_in(rr, req, env, collection, f))
        return NULL;
    if (rr->c->type == STORE_COLLECTION_VIEW) {
        fail(f, 400, "Unsupported collection type.", NULL);
        return NULL;
    }
    rr->ar.fr.method = method;
    rr->ar.fr.context = "batch";
    batch_query(rr, query);
    if (strcmp(method, "DELETE") == 0) {
        op->kind = STORE_OP_DELETE;
        op->id = id;
        return rule_cond_in(rr, STORE_RULE_DELETE, &job->cond, f) ? op : NULL;
    }
    job->body = body;
    if (strcmp(method, "PUT") == 0) { /* upsert: an update when the record exists */
        const char *bid = json_string_value(json_object_get(body, "id"));
        json_t *cur = NULL;
        int rc =
            bid && *bid ? store_record_get_if(env->store, rr->c, bid, NULL, &cur) : ERR_NOTFOUND;
        json_decref(cur);
        if (rc && rc != ERR_NOTFOUND) {
            write_failed(rr, true, rc, NULL, f);
            return NULL;
        }
        id = rc == 0 ? bid : NULL;
        rr->ar.fr.method = rc == 0 ? "PATCH" : "POST";
    }
    job->create = id == NULL;
    op->kind = job->create ? STORE_OP_CREATE : STORE_OP_UPDATE;
    op->id = id;
    if (json_is_object(body) && !api__files_prepare(req, env, rr->c, id, body, ups, &job->files, f))
        return NULL;
    return write_prepare(job, id, f) ? op : NULL;
}

int api__batch_op_files(struct api_batch_op *op)
{
    return api__files_write_now(op->job.files);
}

void api__batch_op_settle(struct api_batch_op *op, int rc, const struct store_op *done)
{
    if (op->kind == STORE_OP_DELETE)
        return; /* its files went after the commit (api_files_start) */
    api__files_settle(op->job.files, rc, rc == 0 ? done->record : NULL);
}

/* The pool's answer to one of an op's jobs; the batch thread waits on the latch. */
struct pw_wait {
    struct api_batch_latch *latch;
    struct api_batch_op *op;
    bool old; /* the old-password check (else the new password's hash) */
};

static void pw_done(void *arg, const struct auth_pool_result *res)
{
    struct pw_wait *w = arg;
    struct api_batch_op *op = w->op;
    if (w->old) {
        op->old_rc = res->rc;
    } else {
        op->pw_rc = res->rc;
        if (res->rc == 0 && res->hash)
            op->hash = arena_strdup(http_req_arena(op->job.rr.req), res->hash);
    }
    api__batch_latch_down(w->latch);
}

int api__batch_passwords(struct api_batch_op **ops, size_t n, struct api_batch_latch *latch,
                         size_t *failed_out, struct api_fail *f)
{
    for (size_t i = 0; i < n; i++) {
        struct api_batch_op *op = ops[i];
        struct write_job *job = &op->job;
        struct api_env *env = job->rr.env;
        struct arena *a = http_req_arena(job->rr.req);
        for (int k = 0; k < 2; k++) {
            bool old = k == 0;
            if (old ? !job->old_pw : !job->pw)
                continue;
            struct pw_wait *w = arena_zalloc(a, sizeof(*w));
            *w = (struct pw_wait){latch, op, old};
            api__batch_latch_up(latch);
            int rc = !env->pool ? ERR_BUSY
                     : old      ? auth_pool_verify(env->pool, *job->old_hash ? job->old_hash : NULL,
                                                   job->old_pw, pw_done, w)
                                : auth_pool_hash(env->pool, job->pw, pw_done, w);
            if (rc) {
                struct auth_pool_result r = {.rc = rc == ERR_LIMIT || rc == ERR_INVALID ? ERR_DENIED
                                                                                        : ERR_BUSY};
                pw_done(w, &r);
            }
        }
    }
    api__batch_latch_wait(latch);
    for (size_t i = 0; i < n; i++) {
        struct api_batch_op *op = ops[i];
        *failed_out = i;
        if (op->job.old_pw && op->old_rc) {
            if (op->old_rc == ERR_BUSY) {
                fail(f, 503, "Password checks are busy; try again.", NULL);
                return ERR_BUSY;
            }
            fail(f, 400, "Failed to update record.",
                 json_pack("{s:{s:s,s:s}}", "oldPassword", "code",
                           "validation_invalid_old_password", "message",
                           "Missing or invalid old password."));
            return ERR_INVALID;
        }
        if (op->job.pw && (op->pw_rc || !op->hash)) {
            fail(f, 503, "Password hashing is busy; try again.", NULL);
            return ERR_BUSY;
        }
    }
    return 0;
}

void api__batch_op_store(struct api_batch_op *op, struct store_op *out)
{
    struct write_job *job = &op->job;
    *out = (struct store_op){
        .kind = op->kind,
        .c = job->rr.c,
        .id = op->id,
        .body = job->body,
        .password_hash = op->hash,
        .cond = job->cond.sql ? &job->cond : NULL,
    };
}

void api__batch_op_failed(struct api_batch_op *op, const struct store_op *done, struct api_fail *f)
{
    if (op->kind != STORE_OP_DELETE) {
        write_failed(&op->job.rr, op->kind == STORE_OP_CREATE, done->rc, done->errors, f);
        return;
    }
    if (done->rc == ERR_NOTFOUND)
        fail(f, 404, NULL, NULL);
    else if (done->rc == ERR_CONFLICT)
        fail(f, 400,
             "Failed to delete record. Make sure that the record is not part of a required "
             "relation reference.",
             NULL);
    else
        write_failed(&op->job.rr, false, done->rc, NULL, f);
}

json_t *api__batch_op_result(struct api_batch_op *op, struct store_op *done, struct api_fail *f)
{
    if (op->kind == STORE_OP_DELETE)
        return json_pack("{s:n,s:i}", "body", "status", 204);
    int rc;
    op->job.rr.ar.deadline_us = api__deadline_start(op->job.rr.env); /* for the expand */
    json_t *rec = render_record(&op->job.rr, done->record, &rc);
    done->record = NULL; /* taken by render_record */
    if (!rec) {
        api__expand_fail(rc, f);
        return NULL;
    }
    return json_pack("{s:o,s:i}", "body", rec, "status", 200);
}

/* The routes: each lifts the store deadline its handler started (begin) when it returns. */
static void list_route(struct http_req *req, void *ctx)
{
    list_records(req, ctx);
    api__deadline_lift(ctx);
}

static void view_route(struct http_req *req, void *ctx)
{
    view_record(req, ctx);
    api__deadline_lift(ctx);
}

static void create_route(struct http_req *req, void *ctx)
{
    write_record(req, ctx, true);
    api__deadline_lift(ctx);
}

static void update_route(struct http_req *req, void *ctx)
{
    write_record(req, ctx, false);
    api__deadline_lift(ctx);
}

static void delete_route(struct http_req *req, void *ctx)
{
    delete_record(req, ctx);
    api__deadline_lift(ctx);
}

void api__register_records(struct http_router *r, struct api_env *env)
{
    uint64_t max_body = env->records.max_body;
    http_route_max_body(r, "GET", "/api/collections/{collection}/records", list_route, env,
                        max_body);
    http_route_max_body(r, "POST", "/api/collections/{collection}/records", create_route, env,
                        max_body);
    http_route_max_body(r, "GET", "/api/collections/{collection}/records/{id}", view_route, env,
                        max_body);
    http_route_max_body(r, "PATCH", "/api/collections/{collection}/records/{id}", update_route, env,
                        max_body);
    http_route_max_body(r, "DELETE", "/api/collections/{collection}/records/{id}", delete_route,
                        env, max_body);
}
