/* smtp.c - one message over SMTP with libcurl, and the message text it sends.
 *
 * libcurl speaks the protocol: implicit TLS (smtps://) when settings.smtp.tls is set, else
 * plain smtp:// upgraded with STARTTLS whenever the server offers it (CURLUSESSL_TRY, as
 * PocketBase's mailer does), AUTH PLAIN or LOGIN with the configured user. The message is
 * ours: headers with RFC 2047 encoded words for anything not plain ASCII, and the HTML body
 * in base64, so no line of it can be longer than 76 characters or start a "." line. */
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "mail/mail.h"

bool mail_addr_ok(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    const char *at = strrchr(s, '@');
    if (n == 0 || n > 254 || !at || at == s || !at[1] || strchr(s, '@') != at)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f || strchr("<>\"(),;:\\[]", *p))
            return false;
    return true;
}

static bool header_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

static void put_b64(struct buf *b, const void *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    buf_reserve(b, cap);
    sodium_bin2base64(b->ptr + b->len, cap, bin, len, sodium_base64_VARIANT_ORIGINAL);
    b->len += strlen(b->ptr + b->len);
}

/* A header value: as is when printable ASCII, else RFC 2047 encoded words of at most 45
 * bytes of UTF-8 each (never splitting a character), folded onto continuation lines. */
static void put_header_text(struct buf *b, const char *s)
{
    bool plain = true;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            plain = false;
    if (plain) {
        buf_puts(b, s);
        return;
    }
    size_t n = strlen(s), i = 0;
    while (i < n) {
        size_t k = n - i > 45 ? 45 : n - i;
        while (k > 0 && i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80)
            k--; /* do not cut a UTF-8 sequence */
        if (k == 0)
            k = n - i > 45 ? 45 : n - i;
        if (i > 0)
            buf_puts(b, "\r\n ");
        buf_puts(b, "=?UTF-8?B?");
        put_b64(b, s + i, k);
        buf_puts(b, "?=");
        i += k;
    }
}

char *mail_format(const struct mail_msg *msg, int64_t now_us)
{
    struct buf b;
    buf_init(&b);
    char date[64], id[ID_LEN + 1];
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    id_random(id);
    buf_printf(&b, "Date: %s\r\n", date);
    buf_puts(&b, "From: ");
    if (msg->from_name && *msg->from_name) {
        put_header_text(&b, msg->from_name);
        buf_putc(&b, ' ');
    }
    buf_printf(&b, "<%s>\r\nTo: <%s>\r\nSubject: ", msg->from_addr, msg->to);
    put_header_text(&b, msg->subject ? msg->subject : "");
    const char *dom = strrchr(msg->from_addr, '@');
    buf_printf(&b, "\r\nMessage-ID: <%s@%s>\r\n", id, dom ? dom + 1 : "localhost");
    buf_puts(&b, "MIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n");
    const char *html = msg->html ? msg->html : "";
    size_t n = strlen(html);
    for (size_t i = 0; i < n; i += 57) { /* 57 bytes: 76 characters a line */
        put_b64(&b, html + i, n - i > 57 ? 57 : n - i);
        buf_puts(&b, "\r\n");
    }
    return buf_detach(&b, NULL);
}

struct reader {
    const char *p;
    size_t left;
};

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
    struct reader *r = arg;
    size_t n = size * nmemb;
    if (n > r->left)
        n = r->left;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int mail_smtp_send(const struct mail_smtp_cfg *cfg, const struct mail_msg *msg, int64_t timeout_ms,
                   char *err, size_t err_len)
{
    if (!mail_addr_ok(msg->from_addr) || !mail_addr_ok(msg->to) || !header_ok(msg->subject) ||
        !header_ok(msg->from_name)) {
        snprintf(err, err_len, "the message has an invalid address or header");
        return ERR_INVALID;
    }
    if (!cfg->enabled || !cfg->host[0] || cfg->port <= 0 || cfg->port > 65535) {
        snprintf(err, err_len, "smtp is not enabled in the settings");
        return ERR_IO;
    }
    pthread_once(&curl_once, curl_start);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, err_len, "cannot start libcurl");
        return ERR_IO;
    }
    char url[2 * MAIL_TEXT_MAX + 64], from[300], errbuf[CURL_ERROR_SIZE] = "";
    snprintf(url, sizeof(url), "%s://%s:%d/%s", cfg->tls ? "smtps" : "smtp", cfg->host, cfg->port,
             cfg->local_name[0] ? cfg->local_name : "localhost");
    snprintf(from, sizeof(from), "<%s>", msg->from_addr);
    char *text = mail_format(msg, time_now_us());
    struct reader r = {text, strlen(text)};
    char rcpt_s[300];
    snprintf(rcpt_s, sizeof(rcpt_s), "<%s>", msg->to);
    struct curl_slist *rcpt = curl_slist_append(NULL, rcpt_s);

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 30000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (!cfg->tls)
        curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    /* the peer and host checks stay on (libcurl's defaults); only whom to trust may change */
    if (cfg->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
    if (cfg->username[0]) {
        curl_easy_setopt(h, CURLOPT_USERNAME, cfg->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->password);
        if (strcmp(cfg->auth_method, "LOGIN") == 0)
            curl_easy_setopt(h, CURLOPT_LOGIN_OPTIONS, "AUTH=LOGIN");
        else
            curl_easy_setopt(h, CURLOPT_LOGIN_OPTIONS, "AUTH=PLAIN");
    }
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &r);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    if (cc != CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        snprintf(err, err_len, "%s%s%s (smtp reply %ld)", curl_easy_strerror(cc),
                 errbuf[0] ? ": " : "", errbuf, code);
        rc = ERR_IO;
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}
