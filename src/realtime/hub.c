/* hub.c - the realtime hub: clients, subscription groups, the command queue, per-client
 * output queues and the thread that reads the `changes` topic. See realtime.h. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "evlog/evlog.h"
#include "metrics/metrics.h"
#include "realtime/realtime.h"

#define TOPIC_CHANGES "changes"
/* one read is one burst for the queues: the clients are woken after each */
#define READ_MAX_RECORDS 256
#define READ_MAX_BYTES (1u << 20)
#define DEFAULT_POLL_US 5000
#define MIN_POLL_US 1000

/* ---- a string-keyed hash map (hub thread, or under hub->mu for the client table) ---- */

struct rt_ent {
    struct rt_ent *next;
    char *key;
    void *val;
};

struct rt_map {
    struct rt_ent **b;
    size_t n_b, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct rt_ent **map_slot(struct rt_map *m, const char *key)
{
    if (!m->n_b)
        return NULL;
    struct rt_ent **p = &m->b[hash_str(key) & (m->n_b - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static void *map_get(struct rt_map *m, const char *key)
{
    struct rt_ent **p = map_slot(m, key);
    return p && *p ? (*p)->val : NULL;
}

static void map_put(struct rt_map *m, const char *key, void *val)
{
    if (m->n + 1 > m->n_b) {
        size_t nb = m->n_b ? m->n_b * 2 : 16;
        struct rt_ent **b = xcalloc(nb, sizeof(*b));
        for (size_t i = 0; i < m->n_b; i++)
            for (struct rt_ent *e = m->b[i], *nx; e; e = nx) {
                nx = e->next;
                size_t k = hash_str(e->key) & (nb - 1);
                e->next = b[k];
                b[k] = e;
            }
        free(m->b);
        m->b = b;
        m->n_b = nb;
    }
    struct rt_ent **p = map_slot(m, key);
    if (*p) {
        (*p)->val = val;
        return;
    }
    struct rt_ent *e = xmalloc(sizeof(*e));
    e->next = NULL;
    e->key = xstrdup(key);
    e->val = val;
    *p = e;
    m->n++;
}

static void map_del(struct rt_map *m, const char *key)
{
    struct rt_ent **p = map_slot(m, key);
    if (!p || !*p)
        return;
    struct rt_ent *e = *p;
    *p = e->next;
    free(e->key);
    free(e);
    m->n--;
}

static void map_release(struct rt_map *m)
{
    for (size_t i = 0; i < m->n_b; i++)
        for (struct rt_ent *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->key);
            free(e);
        }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

/* ---- shared messages ---- */

/* One SSE message without its id line, rendered once and queued to every subscriber it goes
 * to: "\nevent:<topic>\ndata:<data>\n\n" (or, bare, the whole text, e.g. a keepalive comment).
 * Immutable once queued; each queue entry holds a reference, dropped by whichever thread
 * (the hub or a stream's reader) takes it off the queue. */
struct rt_msg {
    atomic_int refs;
    bool bare; /* no "id:<client id>" line before the text */
    size_t len;
    char text[];
};

static struct rt_msg *msg_new(bool bare, const char *event, size_t event_len, const char *data,
                              size_t data_len, int refs)
{
    size_t len = bare ? data_len : sizeof("\nevent:\ndata:\n\n") - 1 + event_len + data_len;
    struct rt_msg *m = xmalloc(sizeof(*m) + len);
    atomic_init(&m->refs, refs);
    m->bare = bare;
    m->len = len;
    char *p = m->text;
    if (!bare) {
        memcpy(p, "\nevent:", 7);
        p += 7;
        memcpy(p, event, event_len);
        p += event_len;
        memcpy(p, "\ndata:", 6);
        p += 6;
    }
    memcpy(p, data, data_len);
    p += data_len;
    if (!bare)
        memcpy(p, "\n\n", 2);
    return m;
}

static void msg_unref_n(struct rt_msg *m, int n)
{
    if (n && atomic_fetch_sub_explicit(&m->refs, n, memory_order_acq_rel) == n)
        free(m);
}

/* ---- structures ---- */

struct rt_group;

/* One subscription of one client; hub thread only. */
struct rt_sub {
    struct realtime_client *cl;
    struct rt_group *g; /* NULL: never matches */
    char *topic;
    size_t topic_len;
    struct rt_sub *cl_next;
    struct rt_sub *g_prev, *g_next;
};

struct rt_coll;

/* Subscriptions sharing (collection, record, identity, options); hub thread only. */
struct rt_group {
    char *key;
    struct realtime_group_spec spec; /* strings owned (spec_mem) */
    struct arena spec_mem;
    void *state;
    bool opened;
    struct rt_sub *subs;
    size_t n_subs;
    struct rt_coll *coll;
    struct rt_group *c_prev, *c_next;
};

/* The groups of one collection; hub thread only. */
struct rt_coll {
    char *id;
    struct rt_group *groups;
};

struct realtime_client {
    char id[REALTIME_CLIENT_ID_LEN + 1];
    atomic_int refs;
    struct realtime_hub *hub;
    void *conn; /* set once by attach, before the client is visible */
    /* under mu (leaf): the output queue and the identity the subscription requests set */
    pthread_mutex_t mu;
    struct rt_msg **q; /* q[q_head .. q_head + n_q): the messages not yet read */
    size_t q_head, n_q, cap_q;
    size_t q_off;   /* bytes of q[q_head] already read */
    size_t q_bytes; /* bytes queued and not yet read */
    bool ending;    /* dropped or stopped: the stream ends */
    int64_t last_out_us;
    bool authed; /* a non-guest identity is set */
    bool oauth2; /* subscribed to "@oauth2" (the OAuth2 redirect's message) */
    bool auth_su;
    char auth_rid[64];
    /* hub thread only */
    bool registered, gone;
    bool touched;
    struct rt_sub *subs;
    bool who_su;
    char *who_cid, *who_rid;
    struct realtime_client *h_prev, *h_next;
};

enum rt_cmd_type { CMD_ATTACH, CMD_SET, CMD_GONE };

struct rt_cmd {
    enum rt_cmd_type type;
    struct realtime_client *cl; /* holds a reference */
    struct arena mem;
    struct realtime_ident who;
    struct realtime_sub *subs;
    size_t n;
    struct rt_cmd *next;
};

struct realtime_hub {
    struct realtime_cfg cfg;
    /* under mu: the client table, the command queue, the run state */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct rt_map clients; /* id -> client, attached and not gone */
    size_t n_clients;      /* created and not gone */
    struct rt_cmd *cmd_head, *cmd_tail;
    bool stopping, running;
    pthread_t thread;
    /* hub thread only */
    struct rt_map groups;     /* key -> group */
    struct rt_map colls;      /* collection id -> rt_coll */
    struct rt_map auth_colls; /* auth collection id -> clients with that identity (count) */
    struct realtime_client *all;
    struct realtime_client **touched;
    size_t n_touched, cap_touched;
    struct buf data, key;
    struct rt_msg **msgs; /* the messages of one group and change, one per topic */
    size_t *msgs_used;
    size_t n_msgs, cap_msgs;
    int64_t now_us; /* the time of the burst being delivered */
    uint64_t next_offset;
    int64_t last_keepalive_us;
    /* statistics */
    atomic_uint_fast64_t deliveries, dropped, n_groups;
    struct metrics_series *m_clients, *m_deliveries, *m_dropped, *m_groups;
};

/* ---- clients ---- */

/* The queue's bytes of one message: its id line and its text. */
static size_t msg_size(const struct rt_msg *m)
{
    return (m->bare ? 0 : sizeof("id:") - 1 + REALTIME_CLIENT_ID_LEN) + m->len;
}

/* Under cl->mu. */
static void queue_clear(struct realtime_client *cl)
{
    for (size_t i = 0; i < cl->n_q; i++)
        msg_unref_n(cl->q[cl->q_head + i], 1);
    free(cl->q);
    cl->q = NULL;
    cl->q_head = cl->n_q = cl->cap_q = 0;
    cl->q_off = cl->q_bytes = 0;
}

static void client_unref(struct realtime_client *cl)
{
    if (!cl || atomic_fetch_sub(&cl->refs, 1) != 1)
        return;
    if (cl->conn && cl->hub->cfg.conn)
        cl->hub->cfg.conn->release(cl->conn);
    queue_clear(cl);
    pthread_mutex_destroy(&cl->mu);
    free(cl->who_cid);
    free(cl->who_rid);
    free(cl);
}

void realtime_client_unref(struct realtime_client *cl)
{
    client_unref(cl);
}

const char *realtime_client_id(const struct realtime_client *cl)
{
    return cl->id;
}

int realtime_client_new(struct realtime_hub *hub, struct realtime_client **out)
{
    *out = NULL;
    pthread_mutex_lock(&hub->mu);
    int rc = hub->stopping                                                    ? ERR_BUSY
             : hub->cfg.max_clients && hub->n_clients >= hub->cfg.max_clients ? ERR_LIMIT
                                                                              : 0;
    if (rc == 0)
        hub->n_clients++;
    pthread_mutex_unlock(&hub->mu);
    if (rc)
        return rc;
    struct realtime_client *cl = xcalloc(1, sizeof(*cl));
    rand_string(cl->id, REALTIME_CLIENT_ID_LEN,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
    atomic_init(&cl->refs, 1);
    cl->hub = hub;
    pthread_mutex_init(&cl->mu, NULL);
    cl->last_out_us = time_mono_us();
    metrics_add(hub->m_clients, 1);
    *out = cl;
    return 0;
}

static void enqueue(struct realtime_hub *hub, struct rt_cmd *cmd)
{
    /* under hub->mu */
    cmd->next = NULL;
    if (hub->cmd_tail)
        hub->cmd_tail->next = cmd;
    else
        hub->cmd_head = cmd;
    hub->cmd_tail = cmd;
    pthread_cond_signal(&hub->cond);
}

static struct rt_cmd *cmd_new(enum rt_cmd_type type, struct realtime_client *cl)
{
    struct rt_cmd *cmd = xcalloc(1, sizeof(*cmd));
    cmd->type = type;
    cmd->cl = cl;
    arena_init(&cmd->mem, 1024);
    return cmd;
}

static void cmd_free(struct rt_cmd *cmd)
{
    client_unref(cmd->cl);
    arena_release(&cmd->mem);
    free(cmd);
}

/* Appends m to the client's queue (taking one of its references when queued). Returns 2 when
 * queued to an empty queue (the stream needs a wake), 1 when queued behind others (the stream
 * has a wake or a read still to come: it parks only after reading an empty queue), 0 when the
 * client is ending, -1 when the queue would pass queue_bytes (the client is then ending, its
 * queue dropped). */
static int queue_msg(struct realtime_hub *hub, struct realtime_client *cl, struct rt_msg *m,
                     int64_t now)
{
    size_t need = msg_size(m);
    pthread_mutex_lock(&cl->mu);
    if (cl->ending) {
        pthread_mutex_unlock(&cl->mu);
        return 0;
    }
    /* an empty queue takes any one message, so a message larger than the limit still
     * reaches a client that keeps up */
    if (cl->q_bytes && cl->q_bytes + need > hub->cfg.queue_bytes) {
        cl->ending = true;
        queue_clear(cl);
        pthread_mutex_unlock(&cl->mu);
        return -1;
    }
    if (cl->q_head + cl->n_q == cl->cap_q) {
        if (cl->q_head) {
            memmove(cl->q, cl->q + cl->q_head, cl->n_q * sizeof(*cl->q));
            cl->q_head = 0;
        }
        if (cl->n_q == cl->cap_q) {
            cl->cap_q = cl->cap_q ? cl->cap_q * 2 : 8;
            cl->q = xrealloc(cl->q, cl->cap_q * sizeof(*cl->q));
        }
    }
    int rc = cl->n_q ? 1 : 2;
    cl->q[cl->q_head + cl->n_q++] = m;
    cl->q_bytes += need;
    cl->last_out_us = now;
    pthread_mutex_unlock(&cl->mu);
    return rc;
}

void realtime_client_attach(struct realtime_client *cl, void *conn)
{
    struct realtime_hub *hub = cl->hub;
    cl->conn = conn;
    char data[64 + REALTIME_CLIENT_ID_LEN];
    int n = snprintf(data, sizeof(data), "{\"clientId\":\"%s\"}", cl->id);
    struct rt_msg *m = msg_new(false, "PB_CONNECT", 10, data, (size_t)n, 1);
    if (queue_msg(hub, cl, m, time_mono_us()) <= 0)
        msg_unref_n(m, 1);
    /* one for the command, one for the hub thread until it handles CMD_GONE */
    atomic_fetch_add(&cl->refs, 2);
    pthread_mutex_lock(&hub->mu);
    map_put(&hub->clients, cl->id, cl);
    enqueue(hub, cmd_new(CMD_ATTACH, cl));
    if (hub->stopping) {
        pthread_mutex_lock(&cl->mu);
        cl->ending = true;
        pthread_mutex_unlock(&cl->mu);
    }
    pthread_mutex_unlock(&hub->mu);
}

void realtime_client_gone(struct realtime_client *cl)
{
    struct realtime_hub *hub = cl->hub;
    pthread_mutex_lock(&cl->mu);
    cl->ending = true;
    pthread_mutex_unlock(&cl->mu);
    pthread_mutex_lock(&hub->mu);
    if (map_get(&hub->clients, cl->id) == cl)
        map_del(&hub->clients, cl->id);
    hub->n_clients--;
    enqueue(hub, cmd_new(CMD_GONE, cl)); /* takes the stream's reference */
    pthread_mutex_unlock(&hub->mu);
    metrics_add(hub->m_clients, -1);
}

long realtime_client_read(struct realtime_client *cl, char *out, size_t max)
{
    char id_line[sizeof("id:") + REALTIME_CLIENT_ID_LEN];
    memcpy(id_line, "id:", 3);
    memcpy(id_line + 3, cl->id, REALTIME_CLIENT_ID_LEN);
    size_t n = 0;
    pthread_mutex_lock(&cl->mu);
    if (cl->ending) {
        pthread_mutex_unlock(&cl->mu);
        return -1;
    }
    while (n < max && cl->n_q) {
        struct rt_msg *m = cl->q[cl->q_head];
        size_t pre = m->bare ? 0 : sizeof(id_line) - 1;
        if (cl->q_off < pre) {
            size_t k = pre - cl->q_off < max - n ? pre - cl->q_off : max - n;
            memcpy(out + n, id_line + cl->q_off, k);
            cl->q_off += k;
            n += k;
        }
        if (cl->q_off >= pre && n < max) {
            size_t from = cl->q_off - pre;
            size_t k = m->len - from < max - n ? m->len - from : max - n;
            memcpy(out + n, m->text + from, k);
            cl->q_off += k;
            n += k;
        }
        if (cl->q_off < pre + m->len)
            break; /* out is full */
        cl->q_off = 0;
        cl->q_head++;
        cl->n_q--;
        msg_unref_n(m, 1);
    }
    cl->q_bytes -= n;
    if (!cl->n_q) {
        cl->q_head = 0;
        if (cl->cap_q > 1024) { /* a burst is over: give its memory back */
            free(cl->q);
            cl->q = NULL;
            cl->cap_q = 0;
        }
    }
    pthread_mutex_unlock(&cl->mu);
    return (long)n;
}

struct realtime_client *realtime_client_find(struct realtime_hub *hub, const char *id)
{
    pthread_mutex_lock(&hub->mu);
    struct realtime_client *cl = map_get(&hub->clients, id);
    if (cl)
        atomic_fetch_add(&cl->refs, 1);
    pthread_mutex_unlock(&hub->mu);
    return cl;
}

int realtime_client_send_oauth2(struct realtime_hub *hub, struct realtime_client *cl,
                                const char *data, size_t len)
{
    pthread_mutex_lock(&cl->mu);
    bool subscribed = cl->oauth2;
    cl->oauth2 = false; /* one message per subscription, as PocketBase unsubscribes */
    pthread_mutex_unlock(&cl->mu);
    if (!subscribed)
        return ERR_NOTFOUND;
    const char *topic = REALTIME_TOPIC_OAUTH2;
    struct rt_msg *m = msg_new(false, topic, strlen(topic), data, len, 1);
    int rc = queue_msg(hub, cl, m, time_mono_us());
    if (rc <= 0) {
        msg_unref_n(m, 1);
        return ERR_NOTFOUND;
    }
    if (rc == 2 && cl->conn && hub->cfg.conn)
        hub->cfg.conn->wake(cl->conn);
    return 0;
}

static const char *cmd_strdup(struct rt_cmd *cmd, const char *s)
{
    return s ? arena_strdup(&cmd->mem, s) : NULL;
}

int realtime_client_subscribe(struct realtime_hub *hub, struct realtime_client *cl,
                              const struct realtime_ident *who, const struct realtime_sub *subs,
                              size_t n)
{
    bool authed = who->superuser || who->record_id;
    const char *rid = who->record_id ? who->record_id : "";
    pthread_mutex_lock(&cl->mu);
    if (cl->authed && (!authed || cl->auth_su != who->superuser || strcmp(cl->auth_rid, rid))) {
        pthread_mutex_unlock(&cl->mu);
        return ERR_DENIED;
    }
    if (authed && !cl->authed) {
        cl->authed = true;
        cl->auth_su = who->superuser;
        snprintf(cl->auth_rid, sizeof(cl->auth_rid), "%s", rid);
    }
    cl->oauth2 = false;
    for (size_t i = 0; i < n; i++)
        if (subs[i].topic && strcmp(subs[i].topic, REALTIME_TOPIC_OAUTH2) == 0)
            cl->oauth2 = true;
    pthread_mutex_unlock(&cl->mu);

    atomic_fetch_add(&cl->refs, 1);
    struct rt_cmd *cmd = cmd_new(CMD_SET, cl);
    cmd->who.superuser = who->superuser;
    cmd->who.collection_id = cmd_strdup(cmd, who->collection_id);
    cmd->who.record_id = cmd_strdup(cmd, who->record_id);
    cmd->n = n;
    cmd->subs = n ? arena_zalloc(&cmd->mem, n * sizeof(*cmd->subs)) : NULL;
    for (size_t i = 0; i < n; i++) {
        cmd->subs[i].topic = cmd_strdup(cmd, subs[i].topic);
        cmd->subs[i].collection_id = cmd_strdup(cmd, subs[i].collection_id);
        cmd->subs[i].record_id = cmd_strdup(cmd, subs[i].record_id);
        cmd->subs[i].options = cmd_strdup(cmd, subs[i].options ? subs[i].options : "");
    }
    pthread_mutex_lock(&hub->mu);
    enqueue(hub, cmd);
    pthread_mutex_unlock(&hub->mu);
    return 0;
}

/* ---- groups (hub thread) ---- */

static void ident_key(struct buf *b, bool su, const char *cid, const char *rid)
{
    if (su)
        buf_puts(b, "su");
    else if (rid)
        buf_printf(b, "a:%s:%s", cid ? cid : "", rid);
    else
        buf_puts(b, "-");
}

static struct rt_group *group_get(struct realtime_hub *hub, const struct realtime_client *cl,
                                  const struct realtime_sub *s)
{
    struct buf *k = &hub->key;
    buf_reset(k);
    buf_printf(k, "%s\x1f%s\x1f", s->collection_id, s->record_id ? s->record_id : "*");
    ident_key(k, cl->who_su, cl->who_cid, cl->who_rid);
    buf_putc(k, '\x1f');
    buf_puts(k, s->options ? s->options : "");
    struct rt_group *g = map_get(&hub->groups, buf_cstr(k));
    if (g)
        return g;
    g = xcalloc(1, sizeof(*g));
    g->key = xstrdup(buf_cstr(k));
    arena_init(&g->spec_mem, 512);
    g->spec.collection_id = arena_strdup(&g->spec_mem, s->collection_id);
    g->spec.record_id = s->record_id ? arena_strdup(&g->spec_mem, s->record_id) : NULL;
    g->spec.options = arena_strdup(&g->spec_mem, s->options ? s->options : "");
    g->spec.who.superuser = cl->who_su;
    g->spec.who.collection_id = cl->who_cid ? arena_strdup(&g->spec_mem, cl->who_cid) : NULL;
    g->spec.who.record_id = cl->who_rid ? arena_strdup(&g->spec_mem, cl->who_rid) : NULL;
    struct rt_coll *c = map_get(&hub->colls, s->collection_id);
    if (!c) {
        c = xcalloc(1, sizeof(*c));
        c->id = xstrdup(s->collection_id);
        map_put(&hub->colls, c->id, c);
    }
    g->coll = c;
    g->c_next = c->groups;
    if (c->groups)
        c->groups->c_prev = g;
    c->groups = g;
    map_put(&hub->groups, g->key, g);
    atomic_fetch_add(&hub->n_groups, 1);
    metrics_add(hub->m_groups, 1);
    return g;
}

static void group_close_state(struct realtime_hub *hub, struct rt_group *g)
{
    if (g->opened && g->state && hub->cfg.view)
        hub->cfg.view->group_close(hub->cfg.view_arg, g->state);
    g->state = NULL;
    g->opened = false;
}

static void group_free(struct realtime_hub *hub, struct rt_group *g)
{
    group_close_state(hub, g);
    struct rt_coll *c = g->coll;
    if (g->c_prev)
        g->c_prev->c_next = g->c_next;
    else
        c->groups = g->c_next;
    if (g->c_next)
        g->c_next->c_prev = g->c_prev;
    if (!c->groups) {
        map_del(&hub->colls, c->id);
        free(c->id);
        free(c);
    }
    map_del(&hub->groups, g->key);
    free(g->key);
    arena_release(&g->spec_mem);
    free(g);
    atomic_fetch_sub(&hub->n_groups, 1);
    metrics_add(hub->m_groups, -1);
}

static void sub_link(struct rt_group *g, struct rt_sub *s)
{
    s->g = g;
    s->g_prev = NULL;
    s->g_next = g->subs;
    if (g->subs)
        g->subs->g_prev = s;
    g->subs = s;
    g->n_subs++;
}

static void sub_unlink(struct realtime_hub *hub, struct rt_sub *s)
{
    struct rt_group *g = s->g;
    if (!g)
        return;
    if (s->g_prev)
        s->g_prev->g_next = s->g_next;
    else
        g->subs = s->g_next;
    if (s->g_next)
        s->g_next->g_prev = s->g_prev;
    s->g = NULL;
    if (--g->n_subs == 0)
        group_free(hub, g);
}

static void client_drop_subs(struct realtime_hub *hub, struct realtime_client *cl)
{
    for (struct rt_sub *s = cl->subs, *nx; s; s = nx) {
        nx = s->cl_next;
        sub_unlink(hub, s);
        free(s->topic);
        free(s);
    }
    cl->subs = NULL;
}

/* Re-files every subscription of cl under its current identity. */
static void client_regroup(struct realtime_hub *hub, struct realtime_client *cl)
{
    for (struct rt_sub *s = cl->subs; s; s = s->cl_next) {
        if (!s->g)
            continue;
        struct rt_group *old = s->g;
        struct realtime_sub spec = {.collection_id = old->spec.collection_id,
                                    .record_id = old->spec.record_id,
                                    .options = old->spec.options};
        /* the new group first: unlinking may free the old one and its spec strings */
        struct rt_group *g = group_get(hub, cl, &spec);
        if (g == old)
            continue;
        sub_unlink(hub, s);
        sub_link(g, s);
    }
}

static void auth_count(struct realtime_hub *hub, const char *cid, int delta)
{
    if (!cid)
        return;
    intptr_t n = (intptr_t)map_get(&hub->auth_colls, cid) + delta;
    if (n <= 0)
        map_del(&hub->auth_colls, cid);
    else
        map_put(&hub->auth_colls, cid, (void *)n);
}

static void client_set_who(struct realtime_hub *hub, struct realtime_client *cl, bool su,
                           const char *cid, const char *rid)
{
    auth_count(hub, cl->who_cid, -1);
    free(cl->who_cid);
    free(cl->who_rid);
    cl->who_su = su;
    cl->who_cid = cid ? xstrdup(cid) : NULL;
    cl->who_rid = rid ? xstrdup(rid) : NULL;
    auth_count(hub, cl->who_cid, 1);
}

static void apply_cmd(struct realtime_hub *hub, struct rt_cmd *cmd)
{
    struct realtime_client *cl = cmd->cl;
    switch (cmd->type) {
    case CMD_ATTACH:
        cl->registered = true;
        cl->h_next = hub->all;
        if (hub->all)
            hub->all->h_prev = cl;
        hub->all = cl;
        break;
    case CMD_SET:
        if (cl->gone)
            break;
        client_drop_subs(hub, cl);
        client_set_who(hub, cl, cmd->who.superuser, cmd->who.collection_id, cmd->who.record_id);
        for (size_t i = cmd->n; i-- > 0;) {
            struct rt_sub *s = xcalloc(1, sizeof(*s));
            s->cl = cl;
            s->topic = xstrdup(cmd->subs[i].topic);
            s->topic_len = strlen(s->topic);
            s->cl_next = cl->subs;
            cl->subs = s;
            if (cmd->subs[i].collection_id)
                sub_link(group_get(hub, cl, &cmd->subs[i]), s);
        }
        break;
    case CMD_GONE:
        cl->gone = true;
        client_drop_subs(hub, cl);
        client_set_who(hub, cl, false, NULL, NULL);
        if (cl->registered) {
            cl->registered = false;
            if (cl->h_prev)
                cl->h_prev->h_next = cl->h_next;
            else
                hub->all = cl->h_next;
            if (cl->h_next)
                cl->h_next->h_prev = cl->h_prev;
            cl->h_prev = cl->h_next = NULL;
            client_unref(cl); /* the hub thread's reference */
        }
        break;
    }
    cmd_free(cmd);
}

static void drain_cmds(struct realtime_hub *hub)
{
    pthread_mutex_lock(&hub->mu);
    struct rt_cmd *cmd = hub->cmd_head;
    hub->cmd_head = hub->cmd_tail = NULL;
    pthread_mutex_unlock(&hub->mu);
    while (cmd) {
        struct rt_cmd *nx = cmd->next;
        apply_cmd(hub, cmd);
        cmd = nx;
    }
}

/* ---- delivery (hub thread) ---- */

static void touch(struct realtime_hub *hub, struct realtime_client *cl)
{
    if (cl->touched)
        return;
    cl->touched = true;
    if (hub->n_touched == hub->cap_touched) {
        hub->cap_touched = hub->cap_touched ? hub->cap_touched * 2 : 256;
        hub->touched = xrealloc(hub->touched, hub->cap_touched * sizeof(*hub->touched));
    }
    atomic_fetch_add(&cl->refs, 1);
    hub->touched[hub->n_touched++] = cl;
}

static void flush_touched(struct realtime_hub *hub)
{
    for (size_t i = 0; i < hub->n_touched; i++) {
        struct realtime_client *cl = hub->touched[i];
        cl->touched = false;
        if (cl->conn && hub->cfg.conn)
            hub->cfg.conn->wake(cl->conn);
        client_unref(cl);
    }
    hub->n_touched = 0;
}

/* Returns true when m was queued (and took one of its references). */
static bool deliver(struct realtime_hub *hub, struct realtime_client *cl, struct rt_msg *m)
{
    int rc = queue_msg(hub, cl, m, hub->now_us);
    if (rc > 0) {
        atomic_fetch_add_explicit(&hub->deliveries, 1, memory_order_relaxed);
        metrics_inc(hub->m_deliveries, 1);
        if (rc == 2)
            touch(hub, cl);
    } else if (rc < 0) {
        atomic_fetch_add(&hub->dropped, 1);
        metrics_inc(hub->m_dropped, 1);
        xlog_info("realtime client %s fell %zu bytes behind: disconnected", cl->id,
                  hub->cfg.queue_bytes);
        if (cl->conn && hub->cfg.conn)
            hub->cfg.conn->abort(cl->conn);
    }
    return rc > 0;
}

/* The message of g's current change for the topic of s, rendered into hub->data: one per
 * distinct topic, made with a reference for each subscriber of g (at most) and the hub's;
 * group_msgs_done returns the ones not queued. */
static struct rt_msg *group_msg(struct realtime_hub *hub, const struct rt_group *g,
                                const struct rt_sub *s, size_t **used_out)
{
    for (size_t i = 0; i < hub->n_msgs; i++) {
        struct rt_msg *m = hub->msgs[i];
        if (m->len == sizeof("\nevent:\ndata:\n\n") - 1 + s->topic_len + hub->data.len &&
            memcmp(m->text + 7, s->topic, s->topic_len) == 0) {
            *used_out = &hub->msgs_used[i];
            return m;
        }
    }
    if (hub->n_msgs == hub->cap_msgs) {
        hub->cap_msgs = hub->cap_msgs ? hub->cap_msgs * 2 : 4;
        hub->msgs = xrealloc(hub->msgs, hub->cap_msgs * sizeof(*hub->msgs));
        hub->msgs_used = xrealloc(hub->msgs_used, hub->cap_msgs * sizeof(*hub->msgs_used));
    }
    struct rt_msg *m =
        msg_new(false, s->topic, s->topic_len, hub->data.ptr, hub->data.len, (int)g->n_subs + 1);
    hub->msgs[hub->n_msgs] = m;
    hub->msgs_used[hub->n_msgs] = 0;
    *used_out = &hub->msgs_used[hub->n_msgs++];
    return m;
}

static void group_msgs_done(struct realtime_hub *hub, const struct rt_group *g)
{
    for (size_t i = 0; i < hub->n_msgs; i++)
        msg_unref_n(hub->msgs[i], (int)(g->n_subs + 1 - hub->msgs_used[i]));
    hub->n_msgs = 0;
}

/* What a change to an auth record means for the clients it authenticates: a deleted record
 * takes their auth away (they become guests); an updated one changes what its rules see, so
 * the groups of that identity are rebuilt at their next use. */
static void auth_effects(struct realtime_hub *hub, const struct realtime_change *ch)
{
    if (!map_get(&hub->auth_colls, ch->collection_id))
        return;
    bool del = strcmp(ch->action, "delete") == 0;
    for (struct realtime_client *cl = hub->all; cl; cl = cl->h_next) {
        if (!cl->who_rid || strcmp(cl->who_rid, ch->record_id) != 0 ||
            strcmp(cl->who_cid, ch->collection_id) != 0)
            continue;
        if (del) {
            pthread_mutex_lock(&cl->mu);
            cl->authed = false;
            cl->auth_su = false;
            cl->auth_rid[0] = '\0';
            pthread_mutex_unlock(&cl->mu);
            client_set_who(hub, cl, false, NULL, NULL);
            client_regroup(hub, cl);
        } else {
            for (struct rt_sub *s = cl->subs; s; s = s->cl_next)
                if (s->g)
                    group_close_state(hub, s->g);
        }
    }
}

static void process_change(struct realtime_hub *hub, const struct realtime_change *ch)
{
    struct rt_coll *c = map_get(&hub->colls, ch->collection_id);
    for (struct rt_group *g = c ? c->groups : NULL; g; g = g->c_next) {
        if (g->spec.record_id && strcmp(g->spec.record_id, ch->record_id) != 0)
            continue;
        if (!g->opened) {
            g->opened = true;
            g->state =
                hub->cfg.view ? hub->cfg.view->group_open(hub->cfg.view_arg, &g->spec) : NULL;
        }
        if (!g->state)
            continue;
        buf_reset(&hub->data);
        int rc = hub->cfg.view->render(hub->cfg.view_arg, g->state, ch, &hub->data);
        if (rc < 0)
            xlog_warn("realtime: cannot render change %llu for %s: %s",
                      (unsigned long long)ch->offset, ch->collection_id, err_str(rc));
        if (rc != 1)
            continue;
        for (struct rt_sub *s = g->subs; s; s = s->g_next) {
            size_t *used;
            struct rt_msg *m = group_msg(hub, g, s, &used);
            if (deliver(hub, s->cl, m))
                (*used)++;
        }
        group_msgs_done(hub, g);
    }
    auth_effects(hub, ch);
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int feed_one(struct realtime_hub *hub, const void *data, size_t len, uint64_t offset)
{
    json_t *doc = json_loadb(data, len, 0, NULL);
    struct realtime_change ch = {
        .collection_id = jstr(doc, "collectionId"),
        .record_id = jstr(doc, "recordId"),
        .action = jstr(doc, "action"),
        .record = json_object_get(doc, "record"),
        .offset = offset,
    };
    int rc = 0;
    if (!ch.collection_id || !ch.record_id || !ch.action || !json_is_object(ch.record))
        rc = ERR_INVALID;
    else
        process_change(hub, &ch);
    json_decref(doc);
    return rc;
}

int realtime_hub_feed(struct realtime_hub *hub, const void *data, size_t len)
{
    drain_cmds(hub);
    hub->now_us = time_mono_us();
    int rc = feed_one(hub, data, len, 0);
    flush_touched(hub);
    return rc;
}

static void keepalive(struct realtime_hub *hub, int64_t now)
{
    int64_t every = hub->cfg.keepalive_us;
    if (every <= 0 || now - hub->last_keepalive_us < every / 4)
        return;
    hub->last_keepalive_us = now;
    for (struct realtime_client *cl = hub->all; cl; cl = cl->h_next) {
        pthread_mutex_lock(&cl->mu);
        bool due = !cl->ending && !cl->n_q && now - cl->last_out_us >= every;
        pthread_mutex_unlock(&cl->mu);
        if (!due)
            continue;
        /* an SSE comment: EventSource ignores it */
        struct rt_msg *m = msg_new(true, NULL, 0, ":\n\n", 3, 1);
        int rc = queue_msg(hub, cl, m, now);
        if (rc == 2)
            touch(hub, cl);
        else if (rc <= 0)
            msg_unref_n(m, 1);
    }
}

/* ---- the hub thread ---- */

static void *hub_main(void *arg)
{
    struct realtime_hub *hub = arg;
    struct evlog_batch b;
    evlog_batch_init(&b);
    int64_t wait_us = MIN_POLL_US;
    for (;;) {
        pthread_mutex_lock(&hub->mu);
        bool stop = hub->stopping;
        pthread_mutex_unlock(&hub->mu);
        if (stop)
            break;
        /* read first, then apply the commands: a change read now was committed after every
         * subscription request answered before this point */
        int rc = evlog_read(hub->cfg.log, TOPIC_CHANGES, hub->next_offset, READ_MAX_RECORDS,
                            READ_MAX_BYTES, &b);
        if (rc == ERR_NOTFOUND || rc == ERR_INVALID) {
            uint64_t start = 0, end = 0;
            if (evlog_start_offset(hub->cfg.log, TOPIC_CHANGES, &start) == 0 &&
                evlog_end_offset(hub->cfg.log, TOPIC_CHANGES, &end) == 0 &&
                (hub->next_offset < start || hub->next_offset > end)) {
                xlog_warn("realtime: changes offset %llu is gone, going on at %llu",
                          (unsigned long long)hub->next_offset, (unsigned long long)end);
                hub->next_offset = end;
            }
            b.n = 0;
        } else if (rc != 0) {
            xlog_warn("realtime: cannot read the changes topic: %s (%s)", err_str(rc),
                      evlog_errmsg(hub->cfg.log));
            b.n = 0;
        }
        drain_cmds(hub);
        hub->now_us = time_mono_us();
        for (size_t i = 0; i < b.n; i++)
            if (b.recs[i].len > 0 && /* an empty record was erased */
                feed_one(hub, b.recs[i].data, b.recs[i].len, b.recs[i].offset) != 0)
                xlog_warn("realtime: change at offset %llu is malformed, skipped",
                          (unsigned long long)b.recs[i].offset);
        if (b.n)
            hub->next_offset = b.next_offset;
        keepalive(hub, time_mono_us());
        flush_touched(hub);
        if (b.n) {
            wait_us = MIN_POLL_US;
            continue;
        }
        /* nothing new: sleep until a command comes or the log may have grown */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + wait_us * 1000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_mutex_lock(&hub->mu);
        while (!hub->stopping && !hub->cmd_head) {
            if (pthread_cond_timedwait(&hub->cond, &hub->mu, &ts) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&hub->mu);
        wait_us = wait_us * 2 > hub->cfg.poll_us ? hub->cfg.poll_us : wait_us * 2;
    }
    evlog_batch_release(&b);
    return NULL;
}

/* ---- life cycle ---- */

int realtime_hub_new(const struct realtime_cfg *cfg, struct realtime_hub **out)
{
    *out = NULL;
    if (cfg->queue_bytes < REALTIME_MIN_QUEUE_BYTES)
        return ERR_INVALID;
    struct realtime_hub *hub = xcalloc(1, sizeof(*hub));
    hub->cfg = *cfg;
    if (hub->cfg.poll_us <= 0)
        hub->cfg.poll_us = DEFAULT_POLL_US;
    if (hub->cfg.poll_us < MIN_POLL_US)
        hub->cfg.poll_us = MIN_POLL_US;
    pthread_mutex_init(&hub->mu, NULL);
    pthread_cond_init(&hub->cond, NULL);
    buf_init(&hub->data);
    buf_init(&hub->key);
    hub->m_clients = metrics_series0(metrics_family(METRICS_GAUGE, "tandem_realtime_clients",
                                                    "Realtime (SSE) clients connected.", NULL));
    hub->m_deliveries =
        metrics_series0(metrics_family(METRICS_COUNTER, "tandem_realtime_deliveries_total",
                                       "Realtime messages queued to subscribers.", NULL));
    hub->m_dropped = metrics_series0(
        metrics_family(METRICS_COUNTER, "tandem_realtime_dropped_clients_total",
                       "Realtime clients disconnected because their queue was full.", NULL));
    hub->m_groups = metrics_series0(
        metrics_family(METRICS_GAUGE, "tandem_realtime_subscription_groups",
                       "Groups of realtime subscriptions sharing one rule check.", NULL));
    if (cfg->log) {
        if (evlog_end_offset(cfg->log, TOPIC_CHANGES, &hub->next_offset) != 0)
            hub->next_offset = 0;
        int rc = pthread_create(&hub->thread, NULL, hub_main, hub);
        if (rc != 0) {
            realtime_hub_free(hub);
            return -rc;
        }
        hub->running = true;
    }
    *out = hub;
    return 0;
}

void realtime_hub_stop(struct realtime_hub *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->mu);
    bool join = hub->running && !hub->stopping;
    hub->stopping = true;
    pthread_cond_signal(&hub->cond);
    pthread_mutex_unlock(&hub->mu);
    if (join)
        pthread_join(hub->thread, NULL);
    /* end every stream: collect under the table lock, wake after it */
    pthread_mutex_lock(&hub->mu);
    size_t n = 0, i = 0;
    struct realtime_client **all = hub->clients.n ? xcalloc(hub->clients.n, sizeof(*all)) : NULL;
    for (size_t k = 0; k < hub->clients.n_b; k++)
        for (struct rt_ent *e = hub->clients.b[k]; e; e = e->next) {
            struct realtime_client *cl = e->val;
            atomic_fetch_add(&cl->refs, 1);
            all[n++] = cl;
        }
    pthread_mutex_unlock(&hub->mu);
    for (i = 0; i < n; i++) {
        pthread_mutex_lock(&all[i]->mu);
        all[i]->ending = true;
        pthread_mutex_unlock(&all[i]->mu);
        if (all[i]->conn && hub->cfg.conn)
            hub->cfg.conn->wake(all[i]->conn);
        client_unref(all[i]);
    }
    free(all);
}

void realtime_hub_free(struct realtime_hub *hub)
{
    if (!hub)
        return;
    realtime_hub_stop(hub);
    drain_cmds(hub);
    flush_touched(hub);
    /* clients whose stream never reported gone (the server is closed: none should) */
    while (hub->all) {
        struct realtime_client *cl = hub->all;
        client_drop_subs(hub, cl);
        client_set_who(hub, cl, false, NULL, NULL);
        hub->all = cl->h_next;
        cl->registered = false;
        client_unref(cl);
    }
    map_release(&hub->groups);
    map_release(&hub->colls);
    map_release(&hub->auth_colls);
    map_release(&hub->clients);
    free(hub->touched);
    free(hub->msgs);
    free(hub->msgs_used);
    buf_release(&hub->data);
    buf_release(&hub->key);
    pthread_cond_destroy(&hub->cond);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
}

void realtime_hub_stats(struct realtime_hub *hub, struct realtime_stats *out)
{
    pthread_mutex_lock(&hub->mu);
    out->clients = hub->n_clients;
    pthread_mutex_unlock(&hub->mu);
    out->deliveries = atomic_load(&hub->deliveries);
    out->dropped = atomic_load(&hub->dropped);
    out->groups = atomic_load(&hub->n_groups);
}
