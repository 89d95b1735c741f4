/* realtime.h - the realtime hub: clients, their subscriptions, rule checks and per-client
 * output queues, fed by the `changes` topic of the event log.
 *
 * The hub knows nothing of HTTP nor of how a record is rendered: the SSE edge (api/realtime.c)
 * gives it a struct realtime_conn_ops to wake and close a client's stream, and a struct
 * realtime_view_ops that decides whether a group of subscribers may see a change and renders
 * the event's data. A group is every subscription that shares (collection, record id or "*",
 * identity, options): one rule check and one rendering serve all of them.
 *
 * Data flow: the hub thread reads the `changes` topic from its end at start-up (no history
 * is replayed), so a change reaches subscribers only once it is committed and durable in the
 * log, whichever path wrote it. For each change it finds the groups of the change's
 * collection, asks the view ops once per group, and appends the framed SSE message
 * (`id:<clientId>\nevent:<topic>\ndata:<json>\n\n`) to each subscriber's queue. A queue is
 * bounded in bytes: a client that falls that far behind is dropped (its stream is closed;
 * the SDK reconnects and subscribes again).
 *
 * Threads: one hub thread owns groups and subscriptions. HTTP threads create clients,
 * look them up and hand subscription sets over through a command queue, which the hub
 * applies before it processes any change read after the command was queued. A client's
 * queue is under its own leaf lock, shared by the hub (writer) and the server thread of its
 * stream (reader). */
#ifndef TANDEM_REALTIME_REALTIME_H
#define TANDEM_REALTIME_REALTIME_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

struct evlog;
struct realtime_hub;
struct realtime_client;

#define REALTIME_CLIENT_ID_LEN 40
#define REALTIME_MAX_SUBS 1000        /* subscriptions of one client (PocketBase's limit) */
#define REALTIME_MAX_TOPIC_LEN 2500   /* characters of one subscription (PocketBase's) */
#define REALTIME_MIN_QUEUE_BYTES 1024 /* smallest queue limit accepted */

/* Who a client is for rule checks: set by its subscription requests. */
struct realtime_ident {
    bool superuser;
    const char *collection_id; /* of the auth record; NULL for guests */
    const char *record_id;     /* NULL for guests */
};

/* One subscription as the edge parsed it. */
struct realtime_sub {
    const char *topic;         /* the exact string the client sent: the event name */
    const char *collection_id; /* resolved; NULL: a topic that never matches (unknown) */
    const char *record_id;     /* NULL: every record ("coll/\*" or "coll") */
    const char *options;       /* the raw query string after '?', "" when none */
};

/* What the view ops get to build a group. */
struct realtime_group_spec {
    const char *collection_id;
    const char *record_id; /* NULL: "*" */
    struct realtime_ident who;
    const char *options;
};

/* One change read from the log (borrowed during the call). */
struct realtime_change {
    const char *collection_id;
    const char *record_id;
    const char *action;   /* "create", "update" or "delete" */
    const json_t *record; /* the after-image (create/update), the before-image (delete) */
    uint64_t offset;
};

/* Decides and renders for a group. All calls on the hub thread. */
struct realtime_view_ops {
    /* Builds what the group needs (e.g. its compiled rule); NULL on failure (the group then
     * sees nothing). */
    void *(*group_open)(void *arg, const struct realtime_group_spec *spec);
    void (*group_close)(void *arg, void *state);
    /* 1: the group sees ch, and out holds the event's data JSON; 0: it does not; < 0: a
     * failure (logged by the hub, nothing sent). */
    int (*render)(void *arg, void *state, const struct realtime_change *ch, struct buf *out);
};

/* How the hub reaches a client's connection (any thread). */
struct realtime_conn_ops {
    void (*wake)(void *conn);    /* there is output to read */
    void (*abort)(void *conn);   /* close the connection now */
    void (*release)(void *conn); /* the client is freed: drop the reference to conn */
};

struct realtime_cfg {
    struct evlog *log;    /* NULL: no hub thread (tests feed changes with _feed) */
    size_t queue_bytes;   /* per client; past it the client is dropped */
    size_t max_clients;   /* connected at once; 0: unlimited */
    int64_t keepalive_us; /* a comment line after this long without output; 0: never */
    int64_t poll_us;      /* longest wait for new log records (default 5 ms) */
    const struct realtime_view_ops *view;
    void *view_arg;
    const struct realtime_conn_ops *conn;
};

int realtime_hub_new(const struct realtime_cfg *cfg, struct realtime_hub **out) MUST_USE;
/* Stops the hub thread and ends every client's stream (their connections finish on their
 * own threads). Call before the HTTP server closes. */
void realtime_hub_stop(struct realtime_hub *hub);
/* Frees the hub once no stream can reach it (after the HTTP server closed). NULL: no-op. */
void realtime_hub_free(struct realtime_hub *hub);

/* A new client with a random id, not yet visible: ERR_LIMIT at max_clients, ERR_BUSY when
 * the hub is stopping. RETURNS a reference for the stream (released by _gone). */
int realtime_client_new(struct realtime_hub *hub, struct realtime_client **out) MUST_USE;
const char *realtime_client_id(const struct realtime_client *cl);
/* Makes the client visible with its connection and queues PB_CONNECT. TAKES conn (given back
 * to conn_ops.release when the client is freed). */
void realtime_client_attach(struct realtime_client *cl, void *conn);
/* The stream of the client ended: unregisters it and drops the stream's reference. */
void realtime_client_gone(struct realtime_client *cl);
/* Copies queued output (at most max bytes) into out: the count, 0 when nothing is queued,
 * -1 when the stream must end (dropped, or the hub stopped). Stream thread. */
long realtime_client_read(struct realtime_client *cl, char *out, size_t max);

/* The client with this id: RETURNS a reference (realtime_client_unref), or NULL. */
struct realtime_client *realtime_client_find(struct realtime_hub *hub, const char *id);
void realtime_client_unref(struct realtime_client *cl);
/* Replaces the client's subscriptions (copied) and sets its identity. ERR_DENIED when the
 * client already has another identity than who (a guest may become authenticated, not the
 * reverse nor someone else). Applied by the hub thread before any change read later. */
int realtime_client_subscribe(struct realtime_hub *hub, struct realtime_client *cl,
                              const struct realtime_ident *who, const struct realtime_sub *subs,
                              size_t n) MUST_USE;

/* The topic of the OAuth2 redirect's message (the SDK's authWithOAuth2 subscribes to it). */
#define REALTIME_TOPIC_OAUTH2 "@oauth2"
/* Queues the event "@oauth2" with data (JSON) to cl when it is subscribed to that topic, and
 * ends that subscription (one message, as PocketBase). ERR_NOTFOUND when it is not subscribed
 * or is ending. Any thread. */
int realtime_client_send_oauth2(struct realtime_hub *hub, struct realtime_client *cl,
                                const char *data, size_t len) MUST_USE;

/* Processes one `changes` record on the calling thread, after the pending commands: for
 * tests, and for hubs without a log. ERR_INVALID for a record that is not a change. */
int realtime_hub_feed(struct realtime_hub *hub, const void *data, size_t len) MUST_USE;

/* Counters, for tests and /metrics. */
struct realtime_stats {
    uint64_t clients;    /* connected now */
    uint64_t deliveries; /* messages queued to subscribers */
    uint64_t dropped;    /* clients dropped for a full queue */
    uint64_t groups;     /* subscription groups now */
};
void realtime_hub_stats(struct realtime_hub *hub, struct realtime_stats *out);

#endif
