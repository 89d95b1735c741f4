/* mail.c - the API side of mail: starting the queue's sender with settings.smtp, rendering
 * an auth collection's templates for one record (PocketBase's placeholders), and
 * POST /api/settings/test/email. Nothing here sends: requests only queue (mail/). */
#include <string.h>

#include "api/api_int.h"
#include "ops/ops.h"
#include "api/records_int.h"
#include "mail/mail.h"
#include "store/store.h"

static void copy_text(char *dst, size_t cap, const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, cap, "%s", v ? v : "");
}

/* mail_smtp_cfg_cb: settings.smtp of the moment (on the sender thread). */
static void smtp_cfg(void *arg, struct mail_smtp_cfg *out)
{
    json_t *smtp = api__settings_section(arg, "smtp");
    out->enabled = json_is_true(json_object_get(smtp, "enabled"));
    copy_text(out->host, sizeof(out->host), smtp, "host");
    out->port = (int)json_integer_value(json_object_get(smtp, "port"));
    copy_text(out->username, sizeof(out->username), smtp, "username");
    copy_text(out->password, sizeof(out->password), smtp, "password");
    copy_text(out->auth_method, sizeof(out->auth_method), smtp, "authMethod");
    out->tls = json_is_true(json_object_get(smtp, "tls"));
    copy_text(out->local_name, sizeof(out->local_name), smtp, "localName");
    json_decref(smtp);
    const struct api_env *env = arg;
    snprintf(out->ca_file, sizeof(out->ca_file), "%s", env->cfg ? env->cfg->smtp_ca_file : "");
}

/* The cron job: wakes the sender, which then sends whatever is due (it also wakes by itself
 * at the earliest due time; the job makes a run visible in /api/crons and runnable by hand). */
static void mail_queue_job(void *arg)
{
    mail_kick(arg);
}

int api_mail_start(struct api_env *env)
{
    if (!env->store)
        return 0;
    struct mail_cfg cfg = {.smtp = smtp_cfg, .smtp_arg = env};
    int rc = mail_open(env->store, &cfg, &env->mail);
    if (rc == 0 && env->cron)
        rc = ops_cron_add(env->cron, "__tandemMailQueue__", "* * * * *", mail_queue_job, env->mail);
    return rc;
}

void api_mail_stop(struct api_env *env)
{
    mail_close(env->mail);
    env->mail = NULL;
}

/* The option key of each template and where its subject/body live. */
static const struct {
    const char *key, *sub; /* sub NULL: the option is the template itself */
} tpl_opts[MAIL_TPL_N] = {
    [MAIL_TPL_VERIFICATION] = {"verificationTemplate", NULL},
    [MAIL_TPL_RESET] = {"resetPasswordTemplate", NULL},
    [MAIL_TPL_EMAIL_CHANGE] = {"confirmEmailChangeTemplate", NULL},
    [MAIL_TPL_OTP] = {"otp", "emailTemplate"},
    [MAIL_TPL_AUTH_ALERT] = {"authAlert", "emailTemplate"},
};

/* {RECORD:<field>} for each visible field of c: strings HTML-escaped, numbers, booleans and
 * dates as they are (PocketBase's rule). */
static void record_vars(const struct store_collection *c, const json_t *record, json_t *vars)
{
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        if (f->hidden)
            continue;
        char key[300];
        snprintf(key, sizeof(key), "{RECORD:%s}", f->name);
        if (json_object_get(vars, key))
            continue;
        const json_t *v = json_object_get(record, f->name);
        struct buf b;
        buf_init(&b);
        if (json_is_string(v)) {
            bool raw = f->type == STORE_FIELD_DATE || f->type == STORE_FIELD_AUTODATE;
            if (raw)
                buf_puts(&b, json_string_value(v));
            else
                mail_html_escape(&b, json_string_value(v));
        } else if (json_is_number(v) || json_is_boolean(v)) {
            char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            buf_puts(&b, t ? t : "");
            free(t);
        } else if (v && !json_is_null(v)) {
            char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            mail_html_escape(&b, t ? t : "");
            free(t);
        }
        json_object_set_new(vars, key, json_string(buf_cstr(&b)));
        buf_release(&b);
    }
}

/* Renders template tpl of c (its option, else PocketBase's default) for record and queues it
 * to `to` with the sender of settings.meta. */
static int queue_templated(struct api_env *env, const struct store_collection *c,
                           const json_t *record, int tpl, const json_t *extra, const char *to)
{
    if (!env->mail)
        return ERR_INVALID;
    if (tpl < 0 || tpl >= MAIL_TPL_N)
        return ERR_INVALID;
    const char *subject, *body;
    mail_template_default((enum mail_template)tpl, &subject, &body);
    const json_t *opt =
        c->auth_options ? json_object_get(c->auth_options, tpl_opts[tpl].key) : NULL;
    if (opt && tpl_opts[tpl].sub)
        opt = json_object_get(opt, tpl_opts[tpl].sub);
    const char *s = json_string_value(json_object_get(opt, "subject"));
    const char *bd = json_string_value(json_object_get(opt, "body"));
    if (s && *s && bd && *bd) {
        subject = s;
        body = bd;
    }
    json_t *meta = api__settings_section(env, "meta");
    json_t *vars = extra ? json_deep_copy(extra) : json_object();
    if (!json_object_get(vars, "{APP_NAME}"))
        json_object_set(vars, "{APP_NAME}", json_object_get(meta, "appName"));
    if (!json_object_get(vars, "{APP_URL}"))
        json_object_set(vars, "{APP_URL}", json_object_get(meta, "appURL"));
    if (record)
        record_vars(c, record, vars);
    char *subj = mail_template_apply(subject, vars);
    for (char *p = subj; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' '; /* a record value with a line break cannot end the Subject header */
    char *raw = mail_template_apply(body, vars);
    char *html = mail_layout(raw);
    struct mail_msg msg = {
        .from_name = json_string_value(json_object_get(meta, "senderName")),
        .from_addr = json_string_value(json_object_get(meta, "senderAddress")),
        .to = to,
        .subject = subj,
        .html = html,
    };
    int rc = mail_enqueue(env->mail, &msg);
    if (rc)
        xlog_warn("cannot queue a mail to %s: %s", to ? to : "?", err_str(rc));
    free(subj);
    free(raw);
    free(html);
    json_decref(vars);
    json_decref(meta);
    return rc;
}

int api__mail_record(struct api_env *env, const struct store_collection *c, const json_t *record,
                     int tpl, const json_t *vars, const char *to)
{
    if (!to)
        to = json_string_value(json_object_get(record, "email"));
    if (!to || !*to)
        return ERR_INVALID;
    return queue_templated(env, c, record, tpl, vars, to);
}

/* POST /api/settings/test/email {email, template, collection?}: queues the template with
 * sample values. PocketBase sends it before answering; tandem queues it (a request never
 * sends) and answers 204 once it is queued. */
static void test_email(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    json_t *body = http_req_json(req, true);
    if (!body)
        return;
    const char *email = json_string_value(json_object_get(body, "email"));
    const char *tpl = json_string_value(json_object_get(body, "template"));
    const char *coll = json_string_value(json_object_get(body, "collection"));
    static const char *const names[MAIL_TPL_N] = {[MAIL_TPL_VERIFICATION] = "verification",
                                                  [MAIL_TPL_RESET] = "password-reset",
                                                  [MAIL_TPL_EMAIL_CHANGE] = "email-change",
                                                  [MAIL_TPL_OTP] = "otp",
                                                  [MAIL_TPL_AUTH_ALERT] = "login-alert"};
    int which = -1;
    for (int i = 0; tpl && i < MAIL_TPL_N; i++)
        if (strcmp(tpl, names[i]) == 0)
            which = i;
    json_t *errs = json_object();
    if (!email || !*email)
        json_object_set_new(
            errs, "email",
            json_pack("{s:s,s:s}", "code", "validation_required", "message", "Cannot be blank."));
    else if (!mail_addr_ok(email))
        json_object_set_new(errs, "email",
                            json_pack("{s:s,s:s}", "code", "validation_is_email", "message",
                                      "Must be a valid email address."));
    if (which < 0)
        json_object_set_new(errs, "template",
                            json_pack("{s:s,s:s}", "code",
                                      tpl && *tpl ? "validation_in_invalid" : "validation_required",
                                      "message",
                                      tpl && *tpl ? "Must be a valid value." : "Cannot be blank."));
    struct store_collection *c = NULL;
    if (!json_object_size(errs) &&
        (store_collection_get(env->store, coll && *coll ? coll : "_superusers", &c) != 0 ||
         c->type != STORE_COLLECTION_AUTH))
        json_object_set_new(errs, "collection",
                            json_pack("{s:s,s:s}", "code", "validation_invalid_collection",
                                      "message", "Missing or invalid auth collection."));
    if (json_object_size(errs)) {
        if (c)
            store_collection_unref(c);
        http_reply_error(req, 400, "An error occurred while validating the submitted data.", errs);
        return;
    }
    json_decref(errs);
    json_t *vars =
        json_pack("{s:s,s:s,s:s,s:s}", "{TOKEN}", "____test_token____", "{OTP}", "123456",
                  "{OTP_ID}", "____test_otp_id____", "{ALERT_INFO}", "Test alert info");
    int rc = env->mail ? queue_templated(env, c, NULL, which, vars, email) : ERR_INVALID;
    json_decref(vars);
    store_collection_unref(c);
    if (rc)
        http_reply_error(req, 400, "Failed to send the test email.", NULL);
    else
        http_reply_empty(req, 204);
}

void api__register_mail(struct http_router *r, struct api_env *env)
{
    http_route(r, "POST", "/api/settings/test/email", test_email, env);
}
