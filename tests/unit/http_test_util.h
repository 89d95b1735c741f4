/* http_test_util.h - raw-socket helpers shared by the HTTP server tests. */
#ifndef TANDEM_TESTS_HTTP_TEST_UTIL_H
#define TANDEM_TESTS_HTTP_TEST_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

/* A connection to 127.0.0.1:port (the test fails when it cannot be made). */
static inline int http_test_dial(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Sends all n bytes of s (the test fails when the peer is gone). */
static inline void http_test_send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

#endif
