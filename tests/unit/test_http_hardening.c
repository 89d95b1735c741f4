/* What a client must not be able to do to the HTTP core: grow the metrics with made-up
 * methods. Real sockets. */
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
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "metrics/metrics.h"

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
    struct http_opts o = {
        .addr = "127.0.0.1:0", .threads = 2, .max_body = 1 << 20, .idle_timeout_s = 60};
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
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_server_port(srv));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
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
            send_all(fd, raw, strlen(raw));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metric_labels_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
