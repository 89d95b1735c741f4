/* mail.h - outgoing mail: a persisted queue, one sender thread speaking SMTP through libcurl,
 * and PocketBase's email templates.
 *
 * A request never sends mail itself: it renders a message and queues it (one short store
 * write, mail_enqueue), and answers. The sender thread takes due messages from the queue in
 * the store (_sysrows kind "mail"), sends each with the SMTP settings of the moment
 * (settings.smtp, read through a callback) and deletes it once the server accepted it. A
 * failure is retried with exponential backoff; after max_attempts the message moves to the
 * dead letters (kind "mail_dead") with its last error. Messages survive restarts: whatever is
 * queued when the process stops is sent after the next start.
 *
 * Threads: mail_enqueue, mail_kick and mail_stats from any thread; mail_open/mail_close by
 * the owner. */
#ifndef TANDEM_MAIL_MAIL_H
#define TANDEM_MAIL_MAIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

struct store;

/* settings.smtp and the sender of settings.meta, as one send uses them. */
#define MAIL_TEXT_MAX 256
struct mail_smtp_cfg {
    bool enabled;
    char host[MAIL_TEXT_MAX];
    int port;
    char username[MAIL_TEXT_MAX];
    char password[MAIL_TEXT_MAX];
    char auth_method[16]; /* "", "PLAIN" or "LOGIN" */
    bool tls;             /* implicit TLS (smtps); otherwise STARTTLS when the server offers it */
    char local_name[MAIL_TEXT_MAX];
    /* PEM file of the certificate authorities the server's certificate is checked against
     * (--smtp-ca-file); "": the system's. The check itself is never turned off. */
    char ca_file[1024];
};

/* Fills *out with the SMTP settings of the moment; called on the sender thread. */
typedef void (*mail_smtp_cfg_cb)(void *arg, struct mail_smtp_cfg *out);

struct mail_cfg {
    mail_smtp_cfg_cb smtp;
    void *smtp_arg;
    size_t queue_cap;        /* messages waiting at most; 0: 10000. Past it mail_enqueue fails */
    unsigned max_attempts;   /* sends before a message is dead; 0: 8 */
    int64_t retry_base_ms;   /* first retry delay, doubled each time; 0: 2000 */
    int64_t retry_max_ms;    /* longest delay; 0: 1 hour */
    int64_t send_timeout_ms; /* one SMTP transaction at most; 0: 30000 */
};

struct mail;

/* Starts the sender thread over the queue in st (which must outlive the mail). ERR_INVALID
 * without a smtp callback; -errno when the thread cannot start. */
int mail_open(struct store *st, const struct mail_cfg *cfg, struct mail **out) MUST_USE;
/* Stops and joins the sender (a send in progress finishes or times out first). What is still
 * queued stays in the store for the next start. NULL is fine. */
void mail_close(struct mail *m);

/* A message: from (name and address), one recipient, subject and an HTML body. */
struct mail_msg {
    const char *from_name, *from_addr;
    const char *to;
    const char *subject;
    const char *html;
};

/* Queues msg (copied into the store) and wakes the sender. ERR_INVALID when an address is not
 * a plain address or a header value holds a line break; ERR_LIMIT when the queue is full; a
 * store error otherwise. */
int mail_enqueue(struct mail *m, const struct mail_msg *msg) MUST_USE;
/* Makes the sender look at the queue now, retries included (the mail-queue cron job). */
void mail_kick(struct mail *m);

struct mail_stats {
    uint64_t sent, failed_attempts, dead;
    int64_t queued; /* in the store now */
};
void mail_stats(struct mail *m, struct mail_stats *out);

/* Sends msg now through SMTP with cfg, on the calling thread (the sender's; tests). 0, or
 * ERR_IO with the reason in err (libcurl's message and the server's reply); ERR_INVALID for
 * a message mail cannot carry. */
int mail_smtp_send(const struct mail_smtp_cfg *cfg, const struct mail_msg *msg, int64_t timeout_ms,
                   char *err, size_t err_len) MUST_USE;
/* The RFC 5322 message mail_smtp_send transmits (headers, base64 HTML body), CRLF lines.
 * RETURNS a new string (free()). */
char *mail_format(const struct mail_msg *msg, int64_t now_us);
/* True when s is an address mail accepts: local@domain, no spaces, quotes, angle brackets or
 * control characters, at most 254 bytes. */
bool mail_addr_ok(const char *s);

/* ---- templates (PocketBase's placeholders) ---- */

enum mail_template {
    MAIL_TPL_VERIFICATION, /* collection option verificationTemplate */
    MAIL_TPL_RESET,        /* resetPasswordTemplate */
    MAIL_TPL_EMAIL_CHANGE, /* confirmEmailChangeTemplate */
    MAIL_TPL_OTP,          /* otp.emailTemplate */
    MAIL_TPL_AUTH_ALERT,   /* authAlert.emailTemplate */
    MAIL_TPL_N,
};
/* PocketBase's default subject and body of a template. RETURNS BORROWED static strings. */
void mail_template_default(enum mail_template t, const char **subject_out, const char **body_out);
/* Replaces every placeholder of vars (an object {"{APP_NAME}": "Acme", ...}, string values)
 * in text, left to right, never inside a substituted value. RETURNS a new string. */
char *mail_template_apply(const char *text, const json_t *vars);
/* Appends s with <, >, &, " and ' as HTML entities (for values from clients or records). */
void mail_html_escape(struct buf *b, const char *s);
/* The HTML document a rendered body is sent in (PocketBase wraps bodies in a layout).
 * RETURNS a new string. */
char *mail_layout(const char *body);

#endif
