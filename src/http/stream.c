/* stream.c - streamed replies (server-sent events) on libmicrohttpd.
 *
 * The body comes from a content reader. When the owner has nothing to send, the reader
 * suspends the connection instead of returning 0 to a polling loop (MHD would call it again
 * at once and spin); http_stream_wake resumes it. The race between "nothing to send" and a
 * concurrent wake is closed by the woken flag: the reader clears it before asking the owner
 * and parks only if no wake came in meanwhile, both under the stream's leaf lock.
 *
 * Life: one reference for the caller of http_reply_stream, one for the MHD response (dropped
 * by its free callback, which runs when the connection is finished: after that the socket
 * may be closed and its descriptor reused, so abort checks `finished` under the lock). */
#include <stdatomic.h>
#include <sys/socket.h>

#include "http/http_int.h"

/* Touched under mu by any thread; conn and srv are fixed at creation. */
struct http_stream {
    pthread_mutex_t mu;
    atomic_int refs;
    struct MHD_Connection *conn;
    struct http_streams *owner;
    struct http_stream *prev, *next; /* owner->head list, under owner->mu */
    http_stream_read_cb read;
    http_stream_done_cb done;
    void *ctx;
    bool woken;    /* a wake came since the reader last asked */
    bool parked;   /* the connection is suspended by the reader */
    bool ending;   /* the next read ends the stream */
    bool finished; /* MHD is done with the connection */
};

void http__streams_init(struct http_streams *ss)
{
    pthread_mutex_init(&ss->mu, NULL);
    ss->head = NULL;
    ss->closing = false;
}

void http__streams_release(struct http_streams *ss)
{
    pthread_mutex_destroy(&ss->mu);
}

static void stream_unlink(struct http_stream *s)
{
    struct http_streams *ss = s->owner;
    pthread_mutex_lock(&ss->mu);
    if (s->prev)
        s->prev->next = s->next;
    else if (ss->head == s)
        ss->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    pthread_mutex_unlock(&ss->mu);
}

void http_stream_unref(struct http_stream *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Resumes the connection if the reader parked it. Called with s->mu held; the resume itself
 * happens after unlocking (returns true when the caller must resume). While parked, MHD
 * does not touch the connection, so it cannot finish between the unlock and the resume. */
static bool unpark_locked(struct http_stream *s)
{
    if (!s->parked || s->finished)
        return false;
    s->parked = false;
    return true;
}

void http_stream_wake(struct http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->woken = true;
    bool resume = unpark_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (resume)
        MHD_resume_connection(s->conn);
}

void http_stream_abort(struct http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->ending = true;
    s->woken = true;
    bool resume = unpark_locked(s);
    if (!resume && !s->finished) {
        /* the connection is live and not parked: it may be stuck writing to a client that
         * does not read, so the reader would never run. Shutting the socket down makes the
         * pending write fail and MHD close the connection. The descriptor stays valid: MHD
         * closes it only after the response's free callback has set finished. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            shutdown(ci->connect_fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&s->mu);
    if (resume)
        MHD_resume_connection(s->conn);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_stream *s = cls;
    UNUSED(pos);
    pthread_mutex_lock(&s->mu);
    bool ending = s->ending;
    s->woken = false;
    pthread_mutex_unlock(&s->mu);
    if (ending)
        return MHD_CONTENT_READER_END_OF_STREAM;
    long n = s->read(s->ctx, buf, max);
    if (n == HTTP_STREAM_END || n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n > 0)
        return (ssize_t)n;
    pthread_mutex_lock(&s->mu);
    if (!s->woken && !s->ending) {
        s->parked = true;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->mu);
    return 0; /* parked: MHD calls again after the resume; woken: at once */
}

static void stream_free(void *cls)
{
    struct http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->finished = true;
    pthread_mutex_unlock(&s->mu);
    stream_unlink(s);
    s->done(s->ctx);
    http_stream_unref(s);
}

struct http_stream *http_reply_stream(struct http_req *req, const char *content_type,
                                      http_stream_read_cb read, http_stream_done_cb done, void *ctx)
{
    struct http_stream *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 2);
    s->conn = req->conn;
    s->read = read;
    s->done = done;
    s->ctx = ctx;
    struct http_streams *ss = http__server_streams(req->srv);
    s->owner = ss;
    pthread_mutex_lock(&ss->mu);
    s->ending = ss->closing;
    s->next = ss->head;
    if (ss->head)
        ss->head->prev = s;
    ss->head = s;
    pthread_mutex_unlock(&ss->mu);

    /* a stream may stay quiet for long: the idle timeout is for requests, not for it */
    MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int)0);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!resp)
        PANIC("cannot create a streamed response");
    MHD_add_response_header(resp, "X-Request-Id", req->id);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (struct http_header *h = req->headers; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);
    if (req->resp) {
        xlog_error("second reply to request %s ignored (stream)", req->id);
        MHD_destroy_response(resp); /* runs stream_free: done and one unref */
        return s;
    }
    req->status = 200;
    req->resp = resp;
    req->resp_bytes = 0;
    return s;
}

void http__streams_end_all(struct http_streams *ss)
{
    /* collect under the list lock, act after it: abort/wake take each stream's lock */
    pthread_mutex_lock(&ss->mu);
    ss->closing = true;
    size_t n = 0;
    for (struct http_stream *s = ss->head; s; s = s->next)
        n++;
    struct http_stream **all = n ? xcalloc(n, sizeof(*all)) : NULL;
    n = 0;
    for (struct http_stream *s = ss->head; s; s = s->next) {
        atomic_fetch_add(&s->refs, 1);
        all[n++] = s;
    }
    pthread_mutex_unlock(&ss->mu);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&all[i]->mu);
        all[i]->ending = true;
        pthread_mutex_unlock(&all[i]->mu);
        http_stream_wake(all[i]);
        http_stream_unref(all[i]);
    }
    free(all);
}
