/* queue.c - the persisted mail queue and its sender thread.
 *
 * Each queued message is a system row of kind "mail" in the store: its value holds the
 * message and the attempts made, its due_us when it may be tried next. The sender thread
 * sleeps until the earliest due message (or a kick), sends the due ones one by one and
 * deletes each once the SMTP server accepted it. Sending is at-least-once: a crash between
 * the server's acceptance and the delete sends that message again after the restart. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "mail/mail.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define KIND "mail"
#define KIND_DEAD "mail_dead"
#define BATCH 16
#define IDLE_WAIT_MS 60000 /* looks at the queue at least this often */
#define DEAD_KEEP 1000     /* dead letters kept; the oldest go first */

/* Process-wide series: tandem_mail_{sent,failed_attempts,dead}_total and tandem_mail_queued. */
static struct metrics_series *m_sent, *m_failed, *m_dead, *m_queued;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_start(void)
{
    m_sent = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_mail_sent_total",
                                            "Mails the SMTP server accepted.", NULL));
    m_failed = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_mail_failed_attempts_total",
                                              "Mail send attempts that failed.", NULL));
    m_dead = metrics_series0(metrics_family(METRICS_COUNTER, "tandem_mail_dead_total",
                                            "Mails moved to the dead letters.", NULL));
    m_queued = metrics_series0(
        metrics_family(METRICS_GAUGE, "tandem_mail_queued", "Mails waiting in the queue.", NULL));
}

struct mail {
    struct store *st;
    struct mail_cfg cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked; /* under mu */
    _Atomic uint64_t sent, failed, dead;
    _Atomic int64_t queued;
};

static int64_t backoff_us(const struct mail_cfg *cfg, unsigned attempts)
{
    int64_t ms = cfg->retry_base_ms;
    for (unsigned i = 1; i < attempts && ms < cfg->retry_max_ms; i++)
        ms *= 2;
    return (ms < cfg->retry_max_ms ? ms : cfg->retry_max_ms) * 1000;
}

static void msg_from_json(const json_t *v, struct mail_msg *m)
{
    m->from_name = json_string_value(json_object_get(v, "fromName"));
    m->from_addr = json_string_value(json_object_get(v, "from"));
    m->to = json_string_value(json_object_get(v, "to"));
    m->subject = json_string_value(json_object_get(v, "subject"));
    m->html = json_string_value(json_object_get(v, "html"));
}

/* Keeps at most DEAD_KEEP dead letters (in created order, the oldest leave first). */
static void trim_dead(struct mail *m)
{
    int64_t n = 0;
    json_t *old = NULL;
    if (store_sys_count(m->st, KIND_DEAD, &n) != 0 || n <= DEAD_KEEP ||
        store_sys_list(m->st, KIND_DEAD, NULL, NULL, 0, (size_t)(n - DEAD_KEEP), &old) != 0)
        return;
    for (size_t i = 0; i < json_array_size(old); i++)
        if (store_sys_take(m->st, KIND_DEAD,
                           json_string_value(json_object_get(json_array_get(old, i), "id"))))
            break;
    json_decref(old);
}

/* Sends one queued row; deletes it, reschedules it or moves it to the dead letters. */
static void send_row(struct mail *m, const json_t *row, const struct mail_smtp_cfg *smtp)
{
    const char *id = json_string_value(json_object_get(row, "id"));
    const json_t *v = json_object_get(row, "value");
    struct mail_msg msg;
    msg_from_json(v, &msg);
    char err[512] = "";
    int rc = mail_smtp_send(smtp, &msg, m->cfg.send_timeout_ms, err, sizeof(err));
    if (rc == 0) {
        if (store_sys_take(m->st, KIND, id) == 0)
            metrics_set(m_queued, (double)(atomic_fetch_sub(&m->queued, 1) - 1));
        atomic_fetch_add(&m->sent, 1);
        metrics_inc(m_sent, 1);
        return;
    }
    atomic_fetch_add(&m->failed, 1);
    metrics_inc(m_failed, 1);
    unsigned attempts = (unsigned)json_integer_value(json_object_get(v, "attempts")) + 1;
    json_t *nv = json_deep_copy(v);
    json_object_set_new(nv, "attempts", json_integer(attempts));
    json_object_set_new(nv, "lastError", json_string(err));
    if (rc == ERR_INVALID || attempts >= m->cfg.max_attempts) {
        struct store_sysrow dead = {KIND_DEAD, id, NULL, nv, 0, 0};
        if (store_sys_put(m->st, &dead) == 0 && store_sys_take(m->st, KIND, id) == 0) {
            metrics_set(m_queued, (double)(atomic_fetch_sub(&m->queued, 1) - 1));
            atomic_fetch_add(&m->dead, 1);
            metrics_inc(m_dead, 1);
            xlog_warn("mail %s to %s is dead after %u attempts: %s", id, msg.to ? msg.to : "?",
                      attempts, err);
            trim_dead(m);
        } else {
            xlog_error("cannot move mail %s to the dead letters: %s", id, store_errmsg(m->st));
        }
    } else {
        int64_t due = time_now_us() + backoff_us(&m->cfg, attempts);
        struct store_sysrow again = {KIND, id, NULL, nv, 0, due};
        if (store_sys_put(m->st, &again) != 0)
            xlog_error("cannot reschedule mail %s: %s", id, store_errmsg(m->st));
        xlog_warn("cannot send mail %s (attempt %u): %s", id, attempts, err);
    }
    json_decref(nv);
}

/* Sends what is due; returns when the next message is due (0: none queued). */
static int64_t run_due(struct mail *m)
{
    struct mail_smtp_cfg smtp;
    memset(&smtp, 0, sizeof(smtp));
    m->cfg.smtp(m->cfg.smtp_arg, &smtp);
    for (;;) {
        json_t *rows = NULL;
        int64_t now = time_now_us();
        if (!smtp.enabled) {
            /* nothing can be sent: the messages wait, their attempts uncounted */
            json_decref(rows);
            break;
        }
        if (store_sys_list(m->st, KIND, NULL, NULL, now, BATCH, &rows) != 0) {
            xlog_error("cannot read the mail queue: %s", store_errmsg(m->st));
            break;
        }
        size_t n = json_array_size(rows);
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&m->mu);
            bool stop = m->stop;
            pthread_mutex_unlock(&m->mu);
            if (stop)
                break;
            send_row(m, json_array_get(rows, i), &smtp);
        }
        json_decref(rows);
        if (n < BATCH)
            break;
    }
    memset(smtp.password, 0, sizeof(smtp.password));
    json_t *next = NULL;
    int64_t due = 0;
    if (store_sys_list(m->st, KIND, NULL, NULL, 0, 1, &next) == 0 && json_array_size(next))
        due = json_integer_value(json_object_get(json_array_get(next, 0), "due_us"));
    json_decref(next);
    return due;
}

static void *sender_main(void *arg)
{
    struct mail *m = arg;
    for (;;) {
        int64_t due = run_due(m);
        pthread_mutex_lock(&m->mu);
        int64_t wait_us = IDLE_WAIT_MS * 1000;
        if (due > 0) {
            int64_t d = due - time_now_us();
            wait_us = d < 0 ? 0 : d < wait_us ? d : wait_us;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t at = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + wait_us;
        ts.tv_sec = (time_t)(at / 1000000);
        ts.tv_nsec = (long)(at % 1000000) * 1000;
        while (!m->stop && !m->kicked && wait_us > 0)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT)
                break;
        bool stop = m->stop;
        m->kicked = false;
        pthread_mutex_unlock(&m->mu);
        if (stop)
            break;
    }
    return NULL;
}

int mail_open(struct store *st, const struct mail_cfg *cfg, struct mail **out)
{
    if (!st || !cfg || !cfg->smtp)
        return ERR_INVALID;
    struct mail *m = xcalloc(1, sizeof(*m));
    m->st = st;
    m->cfg = *cfg;
    if (!m->cfg.queue_cap)
        m->cfg.queue_cap = 10000;
    if (!m->cfg.max_attempts)
        m->cfg.max_attempts = 8;
    if (m->cfg.retry_base_ms <= 0)
        m->cfg.retry_base_ms = 2000;
    if (m->cfg.retry_max_ms <= 0)
        m->cfg.retry_max_ms = 3600 * 1000;
    if (m->cfg.send_timeout_ms <= 0)
        m->cfg.send_timeout_ms = 30000;
    int64_t n = 0;
    pthread_once(&metrics_once, metrics_start);
    if (store_sys_count(st, KIND, &n) == 0)
        atomic_store(&m->queued, n);
    metrics_set(m_queued, (double)n);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&m->thread, NULL, sender_main, m);
    if (rc != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return -rc;
    }
    *out = m;
    return 0;
}

void mail_close(struct mail *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void mail_kick(struct mail *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->kicked = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

int mail_enqueue(struct mail *m, const struct mail_msg *msg)
{
    if (!mail_addr_ok(msg->from_addr) || !mail_addr_ok(msg->to) || !msg->subject ||
        strpbrk(msg->subject, "\r\n") || (msg->from_name && strpbrk(msg->from_name, "\r\n")))
        return ERR_INVALID;
    if (atomic_load(&m->queued) >= (int64_t)m->cfg.queue_cap)
        return ERR_LIMIT;
    char id[ID_LEN + 1];
    id_random(id);
    json_t *v =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "fromName", msg->from_name ? msg->from_name : "",
                  "from", msg->from_addr, "to", msg->to, "subject", msg->subject, "html",
                  msg->html ? msg->html : "", "attempts", 0);
    if (!v)
        return ERR_INVALID; /* not UTF-8 */
    struct store_sysrow row = {KIND, id, NULL, v, 0, time_now_us()};
    int rc = store_sys_put(m->st, &row);
    json_decref(v);
    if (rc)
        return rc;
    metrics_set(m_queued, (double)(atomic_fetch_add(&m->queued, 1) + 1));
    mail_kick(m);
    return 0;
}

void mail_stats(struct mail *m, struct mail_stats *out)
{
    out->sent = atomic_load(&m->sent);
    out->failed_attempts = atomic_load(&m->failed);
    out->dead = atomic_load(&m->dead);
    out->queued = atomic_load(&m->queued);
}
