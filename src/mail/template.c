/* template.c - PocketBase's email templates: the defaults of each auth collection's
 * templates, placeholder substitution and the HTML layout a body is sent in. The wording of
 * the defaults follows PocketBase's (core/collection_model_auth_templates.go) so that
 * applications moving over see the mails they know. */
#include <string.h>

#include "mail/mail.h"

static const struct {
    const char *subject, *body;
} defaults[MAIL_TPL_N] = {
    [MAIL_TPL_VERIFICATION] =
        {"Verify your {APP_NAME} email",
         "<p>Hello,</p>\n<p>Thank you for joining us at {APP_NAME}.</p>\n"
         "<p>Click on the button below to verify your email address.</p>\n<p>\n"
         "  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-verification/{TOKEN}\" "
         "target=\"_blank\" rel=\"noopener\">Verify</a>\n</p>\n"
         "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"},
    [MAIL_TPL_RESET] =
        {"Reset your {APP_NAME} password",
         "<p>Hello,</p>\n<p>Click on the button below to reset your password.</p>\n<p>\n"
         "  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-password-reset/{TOKEN}\" "
         "target=\"_blank\" rel=\"noopener\">Reset password</a>\n</p>\n"
         "<p><i>If you didn't ask to reset your password, you can ignore this email.</i></p>\n"
         "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"},
    [MAIL_TPL_EMAIL_CHANGE] =
        {"Confirm your {APP_NAME} new email address",
         "<p>Hello,</p>\n<p>Click on the button below to confirm your new email address.</p>\n"
         "<p>\n  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-email-change/{TOKEN}\" "
         "target=\"_blank\" rel=\"noopener\">Confirm new email</a>\n</p>\n"
         "<p><i>If you didn't ask to change your email address, you can ignore this "
         "email.</i></p>\n<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"},
    [MAIL_TPL_OTP] = {"OTP for {APP_NAME}",
                      "<p>Hello,</p>\n<p>Your one-time password is: <strong>{OTP}</strong></p>\n"
                      "<p><i>If you didn't ask for the one-time password, you can ignore this "
                      "email.</i></p>\n<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"},
    [MAIL_TPL_AUTH_ALERT] =
        {"Login from a new location",
         "<p>Hello,</p>\n<p>We noticed a login to your {APP_NAME} account from a new "
         "location:</p>\n<p><em>{ALERT_INFO}</em></p>\n<p><strong>If this wasn't you, you should "
         "immediately change your {APP_NAME} account password to revoke access from all other "
         "locations.</strong></p>\n<p>If this was you, you may disregard this email.</p>\n"
         "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"},
};

void mail_template_default(enum mail_template t, const char **subject_out, const char **body_out)
{
    if ((unsigned)t >= MAIL_TPL_N)
        t = MAIL_TPL_VERIFICATION;
    *subject_out = defaults[t].subject;
    *body_out = defaults[t].body;
}

char *mail_template_apply(const char *text, const json_t *vars)
{
    struct buf b;
    buf_init(&b);
    const char *p = text ? text : "";
    while (*p) {
        const char *open = strchr(p, '{');
        if (!open) {
            buf_puts(&b, p);
            break;
        }
        buf_append(&b, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        const char *key;
        json_t *v;
        bool done = false;
        if (close) {
            size_t klen = (size_t)(close - open) + 1;
            json_object_foreach((json_t *)vars, key, v)
            {
                if (strlen(key) == klen && memcmp(key, open, klen) == 0 && json_is_string(v)) {
                    buf_puts(&b, json_string_value(v));
                    p = close + 1;
                    done = true;
                    break;
                }
            }
        }
        if (!done) {
            buf_putc(&b, '{');
            p = open + 1;
        }
    }
    return buf_detach(&b, NULL);
}

char *mail_layout(const char *body)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
                 "<style>body{font-family:Arial,Helvetica,sans-serif;font-size:14px;"
                 "line-height:1.5;color:#16161a;background:#fff}"
                 ".wrapper{max-width:600px;margin:0 auto;padding:20px}"
                 ".btn{display:inline-block;padding:8px 16px;border-radius:4px;"
                 "background:#16161a;color:#fff !important;text-decoration:none}</style>\n"
                 "</head>\n<body>\n<div class=\"wrapper\">\n");
    buf_puts(&b, body ? body : "");
    buf_puts(&b, "\n</div>\n</body>\n</html>\n");
    return buf_detach(&b, NULL);
}

void mail_html_escape(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '&': buf_puts(b, "&amp;"); break;
        case '"': buf_puts(b, "&#34;"); break;
        case '\'': buf_puts(b, "&#39;"); break;
        default: buf_putc(b, *s);
        }
    }
}
