/* What a client must not be able to do to the HTTP core: smuggle a request past an ambiguous
 * body length, grow the metrics with made-up methods, hold a connection by sending a request
 * slowly, or take more connections than the open-file limit leaves room for. Real sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "metrics/metrics.h"
#include "http_test_util.h"

static struct http_server *srv;
static struct http_router *router;

static void echo(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    struct str b = http_req_body(req);
    http_reply_bytes(req, 200, "text/plain", b.ptr, b.len);
}

static int setup(void **state)
{
    UNUSED(state);
    xlog_set_level(XLOG_WARN);
    router = http_router_new();
    http_route(router, "POST", "/echo", echo, NULL);
    http_route(router, "GET", "/echo", echo, NULL);
    /* the idle timeout is long, so only the request deadline can close a slow client */
    struct http_opts o = {.addr = "127.0.0.1:0",
                          .threads = 2,
                          .max_body = 1 << 20,
                          .idle_timeout_s = 60,
                          .request_timeout_s = 1};
    char err[256];
    assert_int_equal(http_server_open(&o, router, &srv, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    UNUSED(state);
    http_server_close(srv, 2000);
    http_router_free(router);
    return 0;
}

static int dial(void)
{
    return http_test_dial(http_server_port(srv));
}

/* Reads until the peer closes or nothing arrives for wait_ms; returns true when it closed. */
static bool read_until_close(int fd, char *out, size_t cap, int wait_ms)
{
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, wait_ms) <= 0)
            return false;
        ssize_t r = recv(fd, out + len, cap - 1 - len, 0);
        if (r <= 0)
            return true;
        len += (size_t)r;
        out[len] = '\0';
        if (len == cap - 1)
            return false;
    }
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Sends raw, then a second request on the same connection; the answer must be exactly one
 * 400 envelope carrying message, and the connection closed: nothing after the ambiguous
 * request may be read as a request of its own. */
static void expect_refused(const char *raw, const char *message)
{
    char out[8192];
    int fd = dial();
    http_test_send_all(fd, raw, strlen(raw));
    http_test_send_all(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 31);
    bool closed = read_until_close(fd, out, sizeof(out), 5000);
    close(fd);
    assert_true(closed);
    assert_int_equal(strncmp(out, "HTTP/1.1 400 ", 13), 0);
    assert_int_equal(count_of(out, "HTTP/1.1 "), 1);
    char body[256];
    snprintf(body, sizeof(body), "{\"data\":{},\"message\":\"%s\",\"status\":400}", message);
    assert_non_null(strstr(out, body));
}

static void test_content_length_and_transfer_encoding(void **state)
{
    UNUSED(state);
    const char *both = "A request must not have both Content-Length and Transfer-Encoding.";
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                   both);
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 5\r\n\r\n0\r\n\r\n",
                   both);
}

static void test_conflicting_content_lengths(void **state)
{
    UNUSED(state);
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Content-Length: 6\r\n\r\nhello!",
                   "Conflicting Content-Length headers.");
    /* a second one that is not a number at all */
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   "Content-Length: 5x\r\n\r\nhello",
                   "Invalid Content-Length header.");
}

static void test_transfer_codings_other_than_chunked(void **state)
{
    UNUSED(state);
    const char *msg = "Unsupported Transfer-Encoding: only chunked is accepted.";
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello", msg);
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                   "0\r\n\r\n",
                   msg);
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                   msg);
    expect_refused("POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                   "Transfer-Encoding is not allowed in an HTTP/1.0 request.");
}

static void test_header_name_with_space(void **state)
{
    UNUSED(state);
    /* another server may read this as Content-Length: 5 and the body as part of it */
    expect_refused("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length :5\r\n\r\nhello",
                   "Invalid request header name.");
}

static void test_malformed_content_length_closes(void **state)
{
    UNUSED(state);
    /* libmicrohttpd refuses these itself (its own 400 page) and closes */
    const char *raws[] = {"Content-Length: 5, 6", "Content-Length: abc", "Content-Length: -1"};
    for (size_t i = 0; i < ARRAY_LEN(raws); i++) {
        char req[256], out[8192];
        snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: x\r\n%s\r\n\r\nhello!", raws[i]);
        int fd = dial();
        http_test_send_all(fd, req, strlen(req));
        bool closed = read_until_close(fd, out, sizeof(out), 5000);
        close(fd);
        assert_true(closed);
        assert_int_equal(strncmp(out, "HTTP/1.1 400 ", 13), 0);
    }
}

static void test_valid_framing_still_served(void **state)
{
    UNUSED(state);
    char out[4096];
    /* chunked (any case), one Content-Length, and the same one twice keep the connection */
    const char *raws[] = {
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
        "Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    };
    for (size_t i = 0; i < ARRAY_LEN(raws); i++) {
        int fd = dial();
        http_test_send_all(fd, raws[i], strlen(raws[i]));
        bool closed = read_until_close(fd, out, sizeof(out), 500);
        close(fd);
        assert_false(closed);
        assert_int_equal(strncmp(out, "HTTP/1.1 200 ", 13), 0);
        assert_non_null(strstr(out, "\r\n\r\nhello"));
    }
}

/* Series of tandem_http_requests_total in the exposition. */
static size_t request_series(void)
{
    struct buf b;
    buf_init(&b);
    metrics_render(&b);
    size_t n = count_of(buf_cstr(&b), "\ntandem_http_requests_total{");
    buf_release(&b);
    return n;
}

static void test_metric_labels_bounded(void **state)
{
    UNUSED(state);
    char raw[256], out[4096];
    /* one request of each kind first, so the series they need exist */
    for (int round = 0; round < 2; round++) {
        size_t before = request_series();
        for (int i = 0; i < 40; i++) {
            snprintf(raw, sizeof(raw),
                     "M%dX%d /odd/%d/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", round, i,
                     round, i);
            int fd = dial();
            http_test_send_all(fd, raw, strlen(raw));
            assert_true(read_until_close(fd, out, sizeof(out), 5000));
            close(fd);
            assert_int_equal(strncmp(out, "HTTP/1.1 404 ", 13), 0);
        }
        /* the first round may add the one series odd requests share, never one per method */
        size_t after = request_series();
        assert_true(after <= before + 1);
        if (round == 1)
            assert_int_equal(after, before);
    }
    struct buf b;
    buf_init(&b);
    metrics_render(&b);
    assert_non_null(strstr(buf_cstr(&b),
                           "tandem_http_requests_total{method=\"OTHER\",route=\"unmatched\","
                           "status=\"404\"} 80\n"));
    assert_null(strstr(buf_cstr(&b), "M1X"));
    buf_release(&b);
}

static void test_slow_request_closed_at_deadline(void **state)
{
    UNUSED(state);
    char out[4096];
    /* a request line sent one byte at a time, then headers the same way: never silent for
     * long, so only a deadline counted from the first byte can end it (timeout 1 s) */
    const char *slow = "GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int fd = dial();
    bool closed = false;
    for (size_t i = 0; slow[i] && !closed; i++) {
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd p = {fd, POLLIN, 0};
        closed = poll(&p, 1, 200) > 0;
    }
    assert_true(closed); /* well before the 60 s idle timeout and before the text ran out */
    assert_true(read_until_close(fd, out, sizeof(out), 5000));
    close(fd);
    assert_int_equal(strncmp(out, "HTTP/1.1 408 ", 13), 0);
    assert_non_null(strstr(out, "{\"data\":{},\"message\":\"Request timeout.\",\"status\":408}"));

    /* a keep-alive connection idle between requests is not a slow request */
    fd = dial();
    const char *get = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
    http_test_send_all(fd, get, strlen(get));
    assert_false(read_until_close(fd, out, sizeof(out), 2500));
    assert_int_equal(strncmp(out, "HTTP/1.1 200 ", 13), 0);
    http_test_send_all(fd, get, strlen(get));
    assert_false(read_until_close(fd, out, sizeof(out), 500));
    assert_int_equal(strncmp(out, "HTTP/1.1 200 ", 13), 0);
    close(fd);

    struct buf b;
    buf_init(&b);
    metrics_render(&b);
    assert_non_null(strstr(buf_cstr(&b), "\ntandem_http_request_timeouts_total 1\n"));
    buf_release(&b);
}

static void test_connection_limit_fits_open_files(void **state)
{
    UNUSED(state);
    struct rlimit old, rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = old;
    rl.rlim_cur = 512;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    struct http_router *r = http_router_new();
    struct http_server *s;
    char err[256];
    unsigned wanted[] = {0, 100000, 100};
    unsigned want_got[] = {256, 256, 100};
    for (size_t i = 0; i < ARRAY_LEN(wanted); i++) {
        struct http_opts o = {.addr = "127.0.0.1:0",
                              .threads = 2,
                              .max_body = 1024,
                              .idle_timeout_s = 5,
                              .max_conns = wanted[i]};
        assert_int_equal(http_server_open(&o, r, &s, err, sizeof(err)), 0);
        assert_int_equal(http_server_max_conns(s), want_got[i]);
        http_server_close(s, 100);
    }
    http_router_free(r);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_and_transfer_encoding),
        cmocka_unit_test(test_conflicting_content_lengths),
        cmocka_unit_test(test_transfer_codings_other_than_chunked),
        cmocka_unit_test(test_header_name_with_space),
        cmocka_unit_test(test_malformed_content_length_closes),
        cmocka_unit_test(test_valid_framing_still_served),
        cmocka_unit_test(test_metric_labels_bounded),
        cmocka_unit_test(test_slow_request_closed_at_deadline),
        cmocka_unit_test(test_connection_limit_fits_open_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
