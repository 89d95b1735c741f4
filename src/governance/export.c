/* export.c - a person's data as one JSON document, streamed (docs/governance.md "Person
 * export").
 *
 * One thread per export writes the document into a bounded buffer (EXPORT_BUF bytes; it waits
 * while the buffer is full, so a slow client holds at most that much memory); the HTTP
 * stream's read callback takes from it. At most MAX_EXPORTS run at once. An export stops at
 * MAX_EVENTS events or after MAX_EXPORT_US, and then says "truncated": true. */
#include <string.h>

#include "governance/gov_int.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

#define EXPORT_BUF ((size_t)1 << 20)
#define MAX_EXPORTS 2
#define MAX_EVENTS 1000000
#define MAX_EXPORT_US (INT64_C(600) * 1000000)
#define MAX_RELATED 1000 /* records of one relation field that point at the user */

struct gov_export {
    struct gov *g;
    char *distinct_id, *collection;
    pthread_t thread;
    pthread_mutex_t mu; /* leaf: the fields below */
    pthread_cond_t cv;  /* the reader took bytes or left */
    struct buf out;     /* [mu] produced, not yet read, from out_at */
    size_t out_at;
    bool finished;    /* [mu] the producer wrote its last byte */
    bool reader_gone; /* [mu] */
    gov_export_wake_cb wake;
    void *wake_arg;
    int refs; /* [mu] the producer and the reader */
    int64_t deadline_us;
    uint64_t n_events;
    bool truncated;
};

static void export_unref(struct gov_export *e)
{
    pthread_mutex_lock(&e->mu);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (!last)
        return;
    buf_release(&e->out);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e->distinct_id);
    free(e->collection);
    free(e);
}

/* Hands bytes to the reader; false when the reader is gone (stop producing). */
static bool emit(struct gov_export *e, const char *p, size_t n)
{
    pthread_mutex_lock(&e->mu);
    while (!e->reader_gone && e->out.len - e->out_at >= EXPORT_BUF)
        pthread_cond_wait(&e->cv, &e->mu);
    bool ok = !e->reader_gone;
    if (ok) {
        if (e->out_at > 0 && e->out_at == e->out.len) {
            buf_reset(&e->out);
            e->out_at = 0;
        }
        buf_append(&e->out, p, n);
        if (e->wake)
            e->wake(e->wake_arg);
    }
    pthread_mutex_unlock(&e->mu);
    return ok;
}

static bool emit_buf(struct gov_export *e, struct buf *b)
{
    if (b->len == 0)
        return true;
    bool ok = emit(e, b->ptr, b->len);
    buf_reset(b);
    return ok;
}

long gov_export_read(struct gov_export *e, char *out, size_t max)
{
    pthread_mutex_lock(&e->mu);
    size_t have = e->out.len - e->out_at;
    long rc;
    if (have == 0) {
        rc = e->finished ? -1 : 0;
    } else {
        size_t n = have < max ? have : max;
        memcpy(out, e->out.ptr + e->out_at, n);
        e->out_at += n;
        if (e->out_at == e->out.len) {
            buf_reset(&e->out);
            e->out_at = 0;
        } else if (e->out_at > EXPORT_BUF) {
            memmove(e->out.ptr, e->out.ptr + e->out_at, e->out.len - e->out_at);
            e->out.len -= e->out_at;
            e->out_at = 0;
        }
        pthread_cond_broadcast(&e->cv);
        rc = (long)n;
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void gov_export_release(struct gov_export *e)
{
    pthread_mutex_lock(&e->mu);
    e->reader_gone = true;
    e->wake = NULL;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    export_unref(e);
}

/* ---- the document ---- */

static void put_str(struct buf *b, const char *s, size_t n)
{
    buf_putc(b, '"');
    buf_json_escape(b, s, n);
    buf_putc(b, '"');
}

/* A record without its secrets: password fields and the token key. */
static void put_record(struct buf *b, const struct store_collection *c, json_t *rec)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_PASSWORD)
            json_object_del(rec, c->fields[i].name);
    json_object_del(rec, "tokenKey");
    char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
    buf_printf(b, "{\"collection\":");
    put_str(b, c->name, strlen(c->name));
    buf_printf(b, ",\"record\":%s}", s ? s : "null");
    free(s);
}

/* The auth records with one of the ids as their id, and the records whose relation fields
 * point at them. */
static bool emit_records(struct gov_export *e, const json_t *ids)
{
    struct store *st = e->g->cfg.store;
    struct store_collection *users = NULL, **all = NULL;
    size_t n_all = 0;
    struct buf b;
    bool first = true, ok = true;
    buf_init(&b);
    buf_puts(&b, ",\"records\":[");
    if (store_collection_get(st, e->collection, &users) != 0 ||
        users->type != STORE_COLLECTION_AUTH)
        goto done;
    if (store_collection_list(st, &all, &n_all) != 0)
        n_all = 0;
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_t *rec = NULL;
        if (store_record_get(st, users, json_string_value(id), &rec) != 0)
            continue;
        if (!first)
            buf_putc(&b, ',');
        first = false;
        put_record(&b, users, rec);
        json_decref(rec);
        for (size_t k = 0; k < n_all; k++) {
            const struct store_collection *c = all[k];
            if (c->type == STORE_COLLECTION_VIEW)
                continue;
            for (size_t f = 0; f < c->n_fields; f++) {
                const struct store_field *fd = &c->fields[f];
                if (fd->type != STORE_FIELD_RELATION || !fd->collection_id ||
                    strcmp(fd->collection_id, users->id) != 0)
                    continue;
                json_t *found = NULL;
                if (store_record_referencing(st, c, fd->name, json_string_value(id), MAX_RELATED,
                                             &found) != 0)
                    continue;
                size_t j;
                json_t *r;
                json_array_foreach(found, j, r)
                {
                    buf_putc(&b, ',');
                    put_record(&b, c, r);
                }
                json_decref(found);
            }
        }
        if (!emit_buf(e, &b)) {
            ok = false;
            goto done;
        }
    }
done:
    if (ok) {
        buf_putc(&b, ']');
        ok = emit_buf(e, &b);
    }
    if (all)
        store_collection_list_free(all, n_all);
    if (users)
        store_collection_unref(users);
    buf_release(&b);
    return ok;
}

static const char *const ev_cols[] = {"id",         "type",        "event",
                                      "userId",     "anonymousId", "groupId",
                                      "previousId", "timestamp",   "originalTimestamp",
                                      "sentAt",     "receivedAt",  "properties",
                                      "traits",     "context",     "source",
                                      "logOffset"};
#define N_EV_COLS 16
static const bool ev_raw[N_EV_COLS] = {[11] = true, [12] = true, [13] = true, [15] = true};

struct scan_ctx {
    struct gov_export *e;
    struct buf b;
    bool stopped;
};

static int on_chunk(void *arg, const struct wh_scan_chunk *ch)
{
    struct scan_ctx *x = arg;
    struct gov_export *e = x->e;
    if (ch->n_cols != N_EV_COLS)
        return ERR_INTERNAL;
    for (size_t i = 0; i < ch->n_rows; i++) {
        if (e->n_events >= MAX_EVENTS || time_now_us() > e->deadline_us) {
            e->truncated = true;
            return 1;
        }
        buf_puts(&x->b, e->n_events++ ? ",{" : "{");
        for (size_t j = 0; j < N_EV_COLS; j++) {
            struct str v = ch->text[j] ? ch->text[j][i] : (struct str){NULL, 0};
            buf_printf(&x->b, "%s\"%s\":", j ? "," : "", ev_cols[j]);
            if (!v.ptr)
                buf_puts(&x->b, "null");
            else if (ev_raw[j])
                buf_append(&x->b, v.ptr, v.len);
            else
                put_str(&x->b, v.ptr, v.len);
        }
        buf_putc(&x->b, '}');
    }
    if (!emit_buf(e, &x->b)) {
        x->stopped = true;
        return 1;
    }
    return 0;
}

static void *export_main(void *arg)
{
    struct gov_export *e = arg;
    struct gov *g = e->g;
    struct wh_conn *c = NULL;
    struct buf b, sql;
    json_t *ids = NULL;
    char err[512] = "";
    buf_init(&b);
    buf_init(&sql);
    char now[TIME_PB_LEN];
    time_format_pb(time_now_us(), now);
    buf_puts(&b, "{\"distinctId\":");
    put_str(&b, e->distinct_id, strlen(e->distinct_id));
    buf_printf(&b, ",\"exportedAt\":\"%s\"", now);
    json_t *seeds = json_pack("[s]", e->distinct_id);
    int rc = wh_conn_open(g->cfg.wh, &c);
    if (rc != 0)
        snprintf(err, sizeof(err), "cannot open the warehouse: %s", wh_errmsg(NULL));
    else
        rc = gov__resolve(c, seeds, &ids, err, sizeof(err));
    json_decref(seeds);
    if (rc != 0)
        goto end;
    char *s = json_dumps(ids, JSON_COMPACT);
    buf_printf(&b, ",\"distinctIds\":%s", s);
    free(s);
    if (!emit_buf(e, &b) || !emit_records(e, ids))
        goto out;
    buf_puts(&b, ",\"events\":[");
    if (!emit_buf(e, &b))
        goto out;
    gov__sql_list(&sql, ids);
    struct buf q;
    buf_init(&q);
    const char *l = buf_cstr(&sql);
    buf_printf(&q,
               "SELECT id, type, event, user_id, anonymous_id, group_id, previous_id, "
               "strftime(\"timestamp\", '%%Y-%%m-%%dT%%H:%%M:%%S.%%gZ'), "
               "strftime(original_timestamp, '%%Y-%%m-%%dT%%H:%%M:%%S.%%gZ'), "
               "strftime(sent_at, '%%Y-%%m-%%dT%%H:%%M:%%S.%%gZ'), "
               "strftime(received_at, '%%Y-%%m-%%dT%%H:%%M:%%S.%%gZ'), "
               "CAST(properties AS VARCHAR), CAST(traits AS VARCHAR), CAST(context AS VARCHAR), "
               "source, CAST(log_offset AS VARCHAR) FROM events WHERE user_id IN (%s) OR "
               "anonymous_id IN (%s) OR previous_id IN (%s) ORDER BY log_offset",
               l, l, l);
    struct scan_ctx x = {.e = e};
    buf_init(&x.b);
    rc = wh_scan(c, buf_cstr(&q), on_chunk, &x);
    buf_release(&q);
    buf_release(&x.b);
    if (x.stopped)
        goto out;
    if (rc == 1)
        rc = 0; /* stopped at a bound: truncated */
    if (rc != 0)
        snprintf(err, sizeof(err), "cannot read the events: %s", wh_errmsg(c));
    buf_putc(&b, ']');
end:
    buf_printf(&b,
               ",\"eventCount\":%llu,\"truncated\":%s,\"error\":", (unsigned long long)e->n_events,
               e->truncated ? "true" : "false");
    if (err[0])
        put_str(&b, err, strlen(err));
    else
        buf_puts(&b, "null");
    buf_puts(&b, "}\n");
    (void)emit_buf(e, &b);
out:
    json_decref(ids);
    wh_conn_close(c);
    buf_release(&b);
    buf_release(&sql);
    pthread_mutex_lock(&e->mu);
    e->finished = true;
    if (e->wake)
        e->wake(e->wake_arg);
    pthread_mutex_unlock(&e->mu);
    export_unref(e);
    pthread_mutex_lock(&g->mu);
    g->n_exports--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int gov_export_start(struct gov *g, const char *distinct_id, const char *collection,
                     gov_export_wake_cb wake, void *wake_arg, struct gov_export **out)
{
    *out = NULL;
    if (!distinct_id || !gov__id_valid(distinct_id, strlen(distinct_id)))
        return ERR_INVALID;
    pthread_mutex_lock(&g->mu);
    bool full = g->stop || g->n_exports >= MAX_EXPORTS;
    if (!full)
        g->n_exports++;
    pthread_mutex_unlock(&g->mu);
    if (full)
        return ERR_BUSY;
    struct gov_export *e = xcalloc(1, sizeof(*e));
    e->g = g;
    e->distinct_id = xstrdup(distinct_id);
    e->collection = xstrdup(collection ? collection : "users");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    buf_init(&e->out);
    e->wake = wake;
    e->wake_arg = wake_arg;
    e->refs = 2;
    e->deadline_us = time_now_us() + MAX_EXPORT_US;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&e->thread, &at, export_main, e);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        e->refs = 1;
        export_unref(e);
        pthread_mutex_lock(&g->mu);
        g->n_exports--;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return -rc;
    }
    *out = e;
    return 0;
}
