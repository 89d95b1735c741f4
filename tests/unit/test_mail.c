/* mail: the store's system rows (single-use take), template placeholders, the message text
 * (encoded headers, base64 body, no header injection), and the queue's retries ending in a
 * dead letter when the SMTP server cannot be reached. The SMTP conversation itself is
 * covered end to end by tests/integration/accounts_mail.test.mjs against a real server. */
#include <arpa/inet.h>
#include <sys/socket.h>

#include "mail/mail.h"
#include "store_fixture.h"

static void test_sysrows(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx);
    json_t *v = json_pack("{s:i}", "n", 1);
    struct store_sysrow a = {"otp", "a1", "c/r1", v, 0, 500};
    struct store_sysrow b = {"otp", "b2", "c/r2", v, 0, 100};
    struct store_sysrow other = {"mfa", "a1", "c/r1", v, 0, 0};
    assert_int_equal(store_sys_put(fx.st, &a), 0);
    assert_int_equal(store_sys_put(fx.st, &b), 0);
    assert_int_equal(store_sys_put(fx.st, &other), 0);
    json_t *rows = NULL;
    assert_int_equal(store_sys_list(fx.st, "otp", NULL, NULL, 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 2);
    /* ordered by due_us */
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "id")), "b2");
    json_decref(rows);
    assert_int_equal(store_sys_list(fx.st, "otp", NULL, "c/r1", 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    assert_int_equal(store_sys_list(fx.st, "otp", NULL, NULL, 200, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 1); /* only b2 is due by 200 */
    json_decref(rows);
    /* an update keeps created_us and changes the value */
    json_t *row = NULL;
    assert_int_equal(store_sys_get(fx.st, "otp", "a1", &row), 0);
    json_int_t created = json_integer_value(json_object_get(row, "created_us"));
    json_decref(row);
    json_t *v2 = json_pack("{s:i}", "n", 2);
    a.value = v2;
    assert_int_equal(store_sys_put(fx.st, &a), 0);
    assert_int_equal(store_sys_get(fx.st, "otp", "a1", &row), 0);
    assert_int_equal(json_integer_value(json_object_get(row, "created_us")), created);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(row, "value"), "n")), 2);
    json_decref(row);
    /* take: exactly once */
    assert_int_equal(store_sys_take(fx.st, "otp", "a1"), 0);
    assert_int_equal(store_sys_take(fx.st, "otp", "a1"), ERR_NOTFOUND);
    assert_int_equal(store_sys_get(fx.st, "otp", "a1", &row), ERR_NOTFOUND);
    assert_int_equal(store_sys_get(fx.st, "mfa", "a1", &row), 0); /* another kind: untouched */
    json_decref(row);
    int64_t n = 0;
    assert_int_equal(store_sys_count(fx.st, "otp", &n), 0);
    assert_int_equal(n, 1);
    /* rows survive a restart */
    fx_reopen(&fx);
    assert_int_equal(store_sys_count(fx.st, "otp", &n), 0);
    assert_int_equal(n, 1);
    json_decref(v);
    json_decref(v2);
    fx_close(&fx);
}

static void test_template_apply(void **state)
{
    (void)state;
    json_t *vars = json_pack("{s:s,s:s,s:s}", "{APP_NAME}", "Acme", "{TOKEN}", "t.o.k",
                             "{RECORD:name}", "{TOKEN}");
    char *out = mail_template_apply("Hi {RECORD:name} of {APP_NAME}: {TOKEN} {UNKNOWN} {x", vars);
    /* substituted values are never substituted again; unknown placeholders stay */
    assert_string_equal(out, "Hi {TOKEN} of Acme: t.o.k {UNKNOWN} {x");
    free(out);
    const char *subject, *body;
    mail_template_default(MAIL_TPL_OTP, &subject, &body);
    assert_string_equal(subject, "OTP for {APP_NAME}");
    assert_non_null(strstr(body, "<strong>{OTP}</strong>"));
    mail_template_default(MAIL_TPL_RESET, &subject, &body);
    assert_non_null(strstr(body, "{APP_URL}/_/#/auth/confirm-password-reset/{TOKEN}"));
    char *html = mail_layout("<p>x</p>");
    assert_non_null(strstr(html, "<p>x</p>"));
    free(html);
    json_decref(vars);
}

static void test_format_and_addresses(void **state)
{
    (void)state;
    char body[400];
    memset(body, 'a', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    struct mail_msg m = {"Sp\xc3\xa4ter", "from@example.com", "to@example.com",
                         "Gr\xc3\xbc\xc3\x9f"
                         "e",
                         body};
    char *text = mail_format(&m, 1700000000LL * 1000000);
    assert_non_null(strstr(text, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
    assert_non_null(strstr(text, "From: =?UTF-8?B?U3DDpHRlcg==?= <from@example.com>\r\n"));
    assert_non_null(strstr(text, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
    assert_non_null(strstr(text, "Content-Transfer-Encoding: base64\r\n\r\n"));
    /* every body line is base64 of at most 76 characters */
    const char *p = strstr(text, "\r\n\r\n") + 4;
    while (*p) {
        size_t len = strcspn(p, "\r");
        assert_true(len <= 76);
        assert_int_equal(
            strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="), len);
        p += len + 2;
    }
    free(text);
    assert_true(mail_addr_ok("a.b+c@example.com"));
    assert_false(mail_addr_ok("a b@example.com"));
    assert_false(mail_addr_ok("<a@example.com>"));
    assert_false(mail_addr_ok("a@example.com\r\nRCPT TO:<x@y>"));
    assert_false(mail_addr_ok("a@b@c"));
    assert_false(mail_addr_ok("@example.com"));
    assert_false(mail_addr_ok(NULL));
}

/* An SMTP cfg pointing at a port nothing listens on. */
static int dead_port;
static void closed_smtp(void *arg, struct mail_smtp_cfg *out)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
    out->enabled = true;
    snprintf(out->host, sizeof(out->host), "127.0.0.1");
    out->port = dead_port;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void test_queue_retries_then_dead_letter(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx);
    dead_port = free_port();
    struct mail_cfg cfg = {.smtp = closed_smtp,
                           .max_attempts = 3,
                           .retry_base_ms = 5,
                           .retry_max_ms = 20,
                           .queue_cap = 2};
    struct mail *m = NULL;
    assert_int_equal(mail_open(fx.st, &cfg, &m), 0);
    struct mail_msg bad = {"x", "from@example.com", "to@example.com", "a\r\nBcc: x@y", "b"};
    assert_int_equal(mail_enqueue(m, &bad), ERR_INVALID);
    bad.subject = "ok";
    bad.to = "not an address";
    assert_int_equal(mail_enqueue(m, &bad), ERR_INVALID);
    struct mail_msg msg = {"x", "from@example.com", "to@example.com", "hello", "<p>hi</p>"};
    assert_int_equal(mail_enqueue(m, &msg), 0);
    struct mail_stats st;
    for (int i = 0; i < 1000; i++) { /* bounded: fail rather than hang */
        mail_stats(m, &st);
        if (st.dead == 1)
            break;
        usleep(10000);
    }
    mail_stats(m, &st);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.failed_attempts, 3);
    assert_int_equal(st.queued, 0);
    mail_close(m);
    json_t *rows = NULL;
    assert_int_equal(store_sys_list(fx.st, "mail_dead", NULL, NULL, 0, 10, &rows), 0);
    assert_int_equal(json_array_size(rows), 1);
    const json_t *v = json_object_get(json_array_get(rows, 0), "value");
    assert_int_equal(json_integer_value(json_object_get(v, "attempts")), 3);
    assert_string_equal(json_string_value(json_object_get(v, "to")), "to@example.com");
    assert_true(strlen(json_string_value(json_object_get(v, "lastError"))) > 0);
    json_decref(rows);
    int64_t n = -1;
    assert_int_equal(store_sys_count(fx.st, "mail", &n), 0);
    assert_int_equal(n, 0);
    fx_close(&fx);
}

/* With SMTP disabled nothing is attempted and the queue keeps the mail across a restart; the
 * queue is bounded. */
static void disabled_smtp(void *arg, struct mail_smtp_cfg *out)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
}

static void test_queue_bounded_and_persistent(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx);
    struct mail_cfg cfg = {.smtp = disabled_smtp, .queue_cap = 2};
    struct mail *m = NULL;
    assert_int_equal(mail_open(fx.st, &cfg, &m), 0);
    struct mail_msg msg = {"x", "from@example.com", "to@example.com", "hello", "<p>hi</p>"};
    assert_int_equal(mail_enqueue(m, &msg), 0);
    assert_int_equal(mail_enqueue(m, &msg), 0);
    assert_int_equal(mail_enqueue(m, &msg), ERR_LIMIT);
    mail_kick(m);
    mail_close(m);
    assert_int_equal(mail_open(fx.st, &cfg, &m), 0);
    struct mail_stats st;
    mail_stats(m, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.failed_attempts, 0);
    assert_int_equal(mail_enqueue(m, &msg), ERR_LIMIT);
    mail_close(m);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sysrows),
        cmocka_unit_test(test_template_apply),
        cmocka_unit_test(test_format_and_addresses),
        cmocka_unit_test(test_queue_retries_then_dead_letter),
        cmocka_unit_test(test_queue_bounded_and_persistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
