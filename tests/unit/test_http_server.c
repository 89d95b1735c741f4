/* The HTTP core against real sockets: envelopes, JSON bodies, limits, keep-alive, timeouts,
 * and suspended requests that must not stall other connections on the same thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "http_test_util.h"

static struct http_server *srv;
static struct http_router *router;

static void echo_json(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    json_t *j = http_req_json(req, false);
    if (!j)
        return;
    http_reply_json(req, 200, json_incref(j));
}

static void params(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    json_t *o = json_object();
    json_object_set_new(o, "a", json_string(http_req_param(req, "a")));
    json_object_set_new(o, "rest", json_string(http_req_param(req, "rest")));
    const char *q = http_req_query(req, "q");
    json_object_set_new(o, "q", q ? json_string(q) : json_null());
    http_reply_json(req, 200, o);
}

static sem_t release_slow;

static void *finish_later(void *arg)
{
    struct http_req *req = arg;
    sem_wait(&release_slow); /* the test lets it go once the fast request is answered */
    http_set_header(req, "X-Slow", "1");
    http_reply_bytes(req, 200, "text/plain", "slow", 4);
    http_req_resume(req);
    return NULL;
}

static void slow(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    pthread_t t;
    http_req_suspend(req);
    pthread_create(&t, NULL, finish_later, req);
    pthread_detach(t);
}

static void fast(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    http_reply_static(req, 200, "text/plain", "fast", 4);
}

/* what the reply hook saw: "<route> <status>" per call */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static char hook_seen[16][64];
static int n_hook;

static void on_reply(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    pthread_mutex_lock(&hook_mu);
    if (n_hook < 16)
        snprintf(hook_seen[n_hook], sizeof(hook_seen[0]), "%s %d", http_req_route(req),
                 http_req_status(req));
    n_hook++;
    pthread_mutex_unlock(&hook_mu);
}

static int setup(void **state)
{
    UNUSED(state);
    xlog_set_level(XLOG_WARN);
    sem_init(&release_slow, 0, 0);
    router = http_router_new();
    http_route(router, "POST", "/echo", echo_json, NULL);
    http_route(router, "GET", "/p/{a}/{rest...}", params, NULL);
    http_route(router, "GET", "/slow", slow, NULL);
    http_route(router, "GET", "/fast", fast, NULL);
    http_router_on_reply(router, on_reply, NULL);
    /* one thread: the slow and the fast request share it */
    struct http_opts o = {
        .addr = "127.0.0.1:0", .threads = 1, .max_body = 1024, .idle_timeout_s = 1};
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

/* Reads one response (headers + Content-Length body) into out; returns the status or -1 when
 * the peer closed first. timeout_ms bounds the wait. */
static int read_response(int fd, char *out, size_t cap, int timeout_ms)
{
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        char *hdr_end = strstr(out, "\r\n\r\n");
        if (hdr_end) {
            const char *cl = strstr(out, "Content-Length: ");
            size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(hdr_end + 4 - out) + body)
                return atoi(out + 9);
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            return -2;
        ssize_t r = recv(fd, out + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        out[len] = '\0';
    }
}

static int request(const char *raw, char *out, size_t cap)
{
    int fd = dial();
    http_test_send_all(fd, raw, strlen(raw));
    int st = read_response(fd, out, cap, 5000);
    close(fd);
    return st;
}

static void test_json_body_and_malformed(void **state)
{
    UNUSED(state);
    char out[4096];
    assert_int_equal(request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n"
                             "{\"a\":[1,2.5]}",
                             out, sizeof(out)),
                     200);
    assert_non_null(strstr(out, "\r\n\r\n{\"a\":[1,2.5]}"));
    assert_non_null(strstr(out, "X-Request-Id: "));

    assert_int_equal(request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n{\"a\":}",
                             out, sizeof(out)),
                     400);
    assert_non_null(strstr(out, "{\"data\":{},\"message\":\"Failed to load the submitted data "
                                "due to invalid formatting.\",\"status\":400}"));
    assert_int_equal(
        request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", out, sizeof(out)),
        400);
}

static void test_params_and_query(void **state)
{
    UNUSED(state);
    char out[4096];
    assert_int_equal(
        request("GET /p/x%2Fy/r/s%20t?q=a+b%26c HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)),
        200);
    assert_non_null(strstr(out, "{\"a\":\"x/y\",\"rest\":\"r/s t\",\"q\":\"a b&c\"}"));
}

static void test_body_limit_declared(void **state)
{
    UNUSED(state);
    char out[4096];
    /* 1 MiB declared, limit 1 KiB: answered before the body is sent */
    int fd = dial();
    const char *h = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    http_test_send_all(fd, h, strlen(h));
    assert_int_equal(read_response(fd, out, sizeof(out), 5000), 413);
    assert_non_null(strstr(out, "\"message\":\"Request entity too large.\",\"status\":413"));
    close(fd);
}

static void send_chunk(int fd, size_t n)
{
    char sz[16], chunk[600];
    memset(chunk, 'a', sizeof(chunk));
    snprintf(sz, sizeof(sz), "%zx\r\n", n);
    send(fd, sz, strlen(sz), MSG_NOSIGNAL);
    send(fd, chunk, n, MSG_NOSIGNAL);
    send(fd, "\r\n", 2, MSG_NOSIGNAL);
}

static void test_body_limit_chunked(void **state)
{
    UNUSED(state);
    char out[4096];
    const char *h = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    /* a little over the 1 KiB limit without a declared length: 413 at the end */
    int fd = dial();
    http_test_send_all(fd, h, strlen(h));
    send_chunk(fd, 600);
    send_chunk(fd, 600);
    http_test_send_all(fd, "0\r\n\r\n", 5);
    assert_int_equal(read_response(fd, out, sizeof(out), 5000), 413);
    assert_non_null(strstr(out, "\"status\":413"));
    close(fd);

    /* a body that never ends is cut off without reading it all */
    fd = dial();
    http_test_send_all(fd, h, strlen(h));
    int st = 0;
    for (int i = 0; i < 100; i++) {
        send_chunk(fd, 600);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 20) > 0) {
            st = read_response(fd, out, sizeof(out), 2000);
            break;
        }
    }
    assert_int_equal(st, -1);
    close(fd);
}

static void test_keep_alive(void **state)
{
    UNUSED(state);
    char out[4096];
    int fd = dial();
    for (int i = 0; i < 3; i++) {
        const char *r = "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n";
        http_test_send_all(fd, r, strlen(r));
        assert_int_equal(read_response(fd, out, sizeof(out), 2000), 200);
        assert_null(strstr(out, "Connection: close"));
    }
    close(fd);
}

static void test_suspended_request_does_not_stall_thread(void **state)
{
    UNUSED(state);
    char out[4096];
    int slow_fd = dial();
    const char *r = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    http_test_send_all(slow_fd, r, strlen(r));
    /* the slow request stays suspended until released, so the fast one can only be answered
     * if the suspended connection does not hold the server's only thread */
    assert_int_equal(request("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 200);
    struct pollfd p = {slow_fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0); /* still waiting */
    sem_post(&release_slow);
    assert_int_equal(read_response(slow_fd, out, sizeof(out), 3000), 200);
    assert_non_null(strstr(out, "X-Slow: 1"));
    assert_non_null(strstr(out, "\r\n\r\nslow"));
    close(slow_fd);
}

static void test_idle_and_stalled_connections_closed(void **state)
{
    UNUSED(state);
    char out[256];
    /* idle: connect and send nothing (timeout is 1 s) */
    int idle = dial();
    /* stalled: half a request line */
    int stalled = dial();
    http_test_send_all(stalled, "GET /fa", 7);
    assert_int_equal(read_response(idle, out, sizeof(out), 5000), -1);
    assert_int_equal(read_response(stalled, out, sizeof(out), 5000), -1);
    close(idle);
    close(stalled);
}

static void test_not_found_and_method(void **state)
{
    UNUSED(state);
    char out[4096];
    assert_int_equal(request("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 404);
    assert_non_null(strstr(out, "{\"data\":{},\"message\":\"The requested resource wasn't "
                                "found.\",\"status\":404}"));
    assert_int_equal(request("DELETE /fast HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 405);
    assert_non_null(strstr(out, "Allow: GET"));
    assert_non_null(strstr(out, "\"status\":405"));
}

/* The reply hook runs once per routed request before its answer leaves, also for a request
 * answered from another thread; not for a path no route fits. */
static void test_reply_hook(void **state)
{
    UNUSED(state);
    char out[4096];
    pthread_mutex_lock(&hook_mu);
    n_hook = 0;
    pthread_mutex_unlock(&hook_mu);
    assert_int_equal(request("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 200);
    assert_int_equal(request("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 404);
    sem_post(&release_slow);
    assert_int_equal(request("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out)), 200);
    assert_int_equal(
        request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{", out, sizeof(out)),
        400);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(n_hook, 3);
    assert_string_equal(hook_seen[0], "/fast 200");
    assert_string_equal(hook_seen[1], "/slow 200");
    assert_string_equal(hook_seen[2], "/echo 400");
    pthread_mutex_unlock(&hook_mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_body_and_malformed),
        cmocka_unit_test(test_params_and_query),
        cmocka_unit_test(test_body_limit_declared),
        cmocka_unit_test(test_body_limit_chunked),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_suspended_request_does_not_stall_thread),
        cmocka_unit_test(test_idle_and_stalled_connections_closed),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_reply_hook),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
