/* conns.c - open connections and the request deadline.
 *
 * libmicrohttpd's connection timeout restarts with every byte, so it bounds silence, not the
 * time a client may take to send one request: a client that sends a header byte every few
 * seconds (slowloris) keeps its connection, and enough of them keep everyone else out. Here a
 * reaper thread closes a connection whose current request has been arriving for longer than
 * the request timeout, counted from the request's first byte.
 *
 * The first byte of a request is seen in one of two ways. The server thread marks the
 * connection RECEIVING when the request line is complete (MHD's URI callback). Before that,
 * MHD gives the application nothing, so the reaper asks the kernel how many bytes the socket
 * has received (TCP_INFO tcpi_bytes_received): more than when the connection last went idle
 * means a request has begun. The deadline is thus at most one reaper tick late. */
#include <assert.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/http_int.h"

/* phase: the state in the low two bits, the monotonic time (us) it began above them; one
 * word, so the reaper can move IDLE to RECEIVING with a compare-and-swap that fails if the
 * server thread moved it meanwhile */
#define PHASE(st, us) (((uint64_t)(us) << 2) | (uint64_t)(st))
#define PHASE_STATE(p) ((enum http_conn_state)((p)&3u))
#define PHASE_SINCE(p) ((int64_t)((p) >> 2))

/* One open connection. Created and freed by MHD's notify callback on the connection's server
 * thread; phase and base_bytes are written by that thread and by the reaper (atomics); the
 * list links only under conns->mu. */
struct http_conn {
    struct http_conn *prev, *next; /* [mu] */
    struct http_conns *cs;
    int fd;
    _Atomic uint64_t phase;
    _Atomic uint64_t base_bytes; /* bytes received when the connection last went idle */
    atomic_bool timed_out;
};

/* The connection list and its reaper. mu is a leaf lock; the reaper holds it while it walks the
 * list and makes only non-blocking socket calls under it (getsockopt, send with MSG_DONTWAIT,
 * shutdown), which is what keeps a connection's fd from being closed and reused meanwhile: MHD
 * reports a connection closed (and we unlink it under mu) before it closes the fd. */
struct http_conns {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct http_conn *head; /* [mu] */
    bool stop;              /* [mu] */
    int64_t timeout_us;     /* 0: no deadline */
    bool reaper_started;
    pthread_t reaper;
    struct metrics_series *m_open;
    struct metrics_series *m_timeouts;
};

static const char timeout_reply[] = "HTTP/1.1 408 Request Timeout\r\n"
                                    "Connection: close\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Content-Length: 52\r\n"
                                    "\r\n"
                                    "{\"data\":{},\"message\":\"Request timeout.\",\"status\":408}";

/* Bytes the socket has received so far, or -1 when the kernel does not say. */
static int64_t bytes_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
        return -1;
    return (int64_t)ti.tcpi_bytes_received;
}

/* Under mu. */
static void expire(struct http_conns *cs, struct http_conn *c)
{
    atomic_store(&c->timed_out, true);
    metrics_inc(cs->m_timeouts, 1);
    /* nothing of a response has been sent while a request is arriving, so the 408 is the
     * whole reply; if the socket buffer is full the client is not reading anyway */
    ssize_t w = send(c->fd, timeout_reply, sizeof(timeout_reply) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    UNUSED(w);
    /* MHD then sees end of input on its own thread and closes the connection there */
    shutdown(c->fd, SHUT_RDWR);
}

/* Under mu: one pass over the connections. */
static void sweep(struct http_conns *cs)
{
    int64_t now = time_mono_us();
    for (struct http_conn *c = cs->head; c; c = c->next) {
        if (atomic_load(&c->timed_out))
            continue;
        uint64_t p = atomic_load(&c->phase);
        if (PHASE_STATE(p) == HTTP_CONN_IDLE) {
            int64_t got = bytes_received(c->fd);
            if (got < 0 || (uint64_t)got <= atomic_load(&c->base_bytes))
                continue;
            /* a request has begun; it may have begun up to one tick ago */
            uint64_t next = PHASE(HTTP_CONN_RECEIVING, now);
            if (!atomic_compare_exchange_strong(&c->phase, &p, next))
                continue; /* the server thread moved it: it knows better */
            p = next;
        }
        if (PHASE_STATE(p) == HTTP_CONN_RECEIVING && now - PHASE_SINCE(p) >= cs->timeout_us)
            expire(cs, c);
    }
}

static void *reaper_main(void *arg)
{
    struct http_conns *cs = arg;
    /* a quarter of the timeout, between 100 ms and 1 s: the deadline is met that closely */
    int64_t tick_us = cs->timeout_us / 4;
    if (tick_us < 100000)
        tick_us = 100000;
    if (tick_us > 1000000)
        tick_us = 1000000;
    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (tick_us % 1000000) * 1000;
        ts.tv_sec += tick_us / 1000000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        int rc = 0;
        while (!cs->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&cs->cv, &cs->mu, &ts);
        if (!cs->stop)
            sweep(cs);
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

int http__conns_open(unsigned timeout_s, struct http_conns **out)
{
    struct http_conns *cs = xcalloc(1, sizeof(*cs));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cs->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&cs->mu, NULL);
    cs->timeout_us = (int64_t)timeout_s * 1000000;
    cs->m_open = metrics_series0(
        metrics_family(METRICS_GAUGE, "tandem_http_connections", "Open HTTP connections.", NULL));
    cs->m_timeouts = metrics_series0(
        metrics_family(METRICS_COUNTER, "tandem_http_request_timeouts_total",
                       "Connections closed because a request took longer than the request "
                       "timeout to arrive.",
                       NULL));
    if (cs->timeout_us > 0) {
        int rc = pthread_create(&cs->reaper, NULL, reaper_main, cs);
        if (rc != 0) {
            pthread_cond_destroy(&cs->cv);
            pthread_mutex_destroy(&cs->mu);
            free(cs);
            return -rc;
        }
        cs->reaper_started = true;
    }
    *out = cs;
    return 0;
}

void http__conns_close(struct http_conns *cs)
{
    if (!cs)
        return;
    pthread_mutex_lock(&cs->mu);
    cs->stop = true;
    pthread_cond_signal(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    if (cs->reaper_started)
        pthread_join(cs->reaper, NULL);
    assert(!cs->head);
    pthread_cond_destroy(&cs->cv);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
}

void http__conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    struct http_conns *cs = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct http_conn *c = xcalloc(1, sizeof(*c));
        c->cs = cs;
        c->fd = ci ? ci->connect_fd : -1;
        atomic_init(&c->phase, PHASE(HTTP_CONN_IDLE, time_mono_us()));
        atomic_init(&c->base_bytes, 0);
        atomic_init(&c->timed_out, false);
        pthread_mutex_lock(&cs->mu);
        if (c->fd >= 0) {
            c->next = cs->head;
            if (cs->head)
                cs->head->prev = c;
            cs->head = c;
        }
        pthread_mutex_unlock(&cs->mu);
        metrics_add(cs->m_open, 1);
        *socket_context = c;
        return;
    }
    struct http_conn *c = *socket_context;
    if (!c)
        return;
    *socket_context = NULL;
    pthread_mutex_lock(&cs->mu);
    if (c->fd >= 0) {
        if (c->prev)
            c->prev->next = c->next;
        else
            cs->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&cs->mu);
    metrics_add(cs->m_open, -1);
    free(c);
}

struct http_conn *http__conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void http__conn_mark(struct http_conn *c, enum http_conn_state st)
{
    if (!c)
        return;
    int64_t now = time_mono_us();
    if (st == HTTP_CONN_RECEIVING) {
        /* keep the earlier start the reaper may have seen */
        uint64_t p = atomic_load(&c->phase);
        while (PHASE_STATE(p) != HTTP_CONN_RECEIVING &&
               !atomic_compare_exchange_weak(&c->phase, &p, PHASE(st, now)))
            ;
        return;
    }
    if (st == HTTP_CONN_IDLE && c->fd >= 0) {
        /* what has arrived so far belongs to requests already seen (or pipelined behind
         * them, which MHD reads next); only bytes beyond this start a new request */
        int64_t got = bytes_received(c->fd);
        if (got >= 0)
            atomic_store(&c->base_bytes, (uint64_t)got);
    }
    atomic_store(&c->phase, PHASE(st, now));
}

bool http__conn_timed_out(const struct http_conn *c)
{
    return c && atomic_load((atomic_bool *)&c->timed_out);
}
