/* serve.c - the text path of predictions (docs/ml.md "Serving"): a predict body is read in
 * place into the float matrix (no JSON tree), the answer and the predictions log records
 * are written as text, each row's features copied into its log record as the client sent
 * them. Anything this path does not take (a malformed or invalid body, contributions, an
 * escaped key or category) is left to ml_predict, which answers it; so both paths give the
 * same answers and errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jscan.h"
#include "evlog/evlog.h"
#include "ml/ml_int.h"

struct ml_request {
    struct ml_serving *s;
    const char *body;
    size_t n, cap;
    float *x;
    struct str *raw; /* each row's text as sent */
};

void ml_request_free(struct ml_request *r)
{
    if (!r)
        return;
    ml__serving_unref(r->s);
    free(r->x);
    free(r->raw);
    free(r);
}

/* The feature whose name is k (after hint, the usual next one), or -1. */
static int feature_of(const struct ml_serving *s, const size_t *lens, struct str k, size_t hint)
{
    size_t f = s->n_features;
    for (size_t t = 0; t < f; t++) {
        size_t j = hint + t < f ? hint + t : hint + t - f;
        if (lens[j] == k.len && memcmp(s->features[j].name, k.ptr, k.len) == 0)
            return (int)j;
    }
    return -1;
}

/* One row object into row[0..f). false: not for this path. */
static bool read_row(struct jscan *js, const struct ml_serving *s, const size_t *lens,
                     unsigned *seen, unsigned stamp, float *row)
{
    size_t f = s->n_features, got = 0, hint = 0;
    if (!jscan_eat(js, '{'))
        return false;
    if (jscan_peek(js) == '}')
        return false; /* every feature is required: ml_predict names the missing one */
    do {
        struct str k, raw;
        bool esc;
        enum jscan_kind kind;
        if (!jscan_string(js, &k, &esc) || esc || !jscan_eat(js, ':'))
            return false;
        int j = feature_of(s, lens, k, hint);
        if (j < 0 || seen[j] == stamp || !jscan_value(js, &kind, &raw))
            return false;
        seen[j] = stamp;
        got++;
        hint = (size_t)j + 1 < f ? (size_t)j + 1 : 0;
        const struct ml_feature *ft = &s->features[j];
        float *cell = &row[j];
        if (kind == JSCAN_NULL) {
            *cell = NAN;
        } else if (ft->categorical) {
            if (kind != JSCAN_STRING)
                return false;
            struct str in = {raw.ptr + 1, raw.len - 2};
            if (memchr(in.ptr, '\\', in.len))
                return false;
            int c = ml__category_code(ft, in.ptr, in.len);
            *cell = c < 0 ? NAN : (float)c;
        } else if (kind == JSCAN_NUMBER) {
            double v;
            if (!jscan_number(raw, &v))
                return false;
            *cell = (float)v;
        } else if (kind == JSCAN_TRUE || kind == JSCAN_FALSE) {
            *cell = kind == JSCAN_TRUE ? 1.0f : 0.0f;
        } else {
            return false;
        }
    } while (jscan_eat(js, ','));
    return jscan_eat(js, '}') && got == f;
}

int ml_request_parse(struct ml *ml, const char *name, const char *body, size_t len,
                     struct ml_request **out)
{
    *out = NULL;
    int rc;
    struct ml_serving *s = ml__active_ref(ml, name, &rc);
    if (!s)
        return rc;
    struct ml_request *r = xcalloc(1, sizeof(*r));
    r->s = s;
    r->body = body;
    size_t f = s->n_features ? s->n_features : 1;
    size_t *lens = xcalloc(f, sizeof(size_t));
    unsigned *seen = xcalloc(f, sizeof(unsigned));
    for (size_t j = 0; j < s->n_features; j++)
        lens[j] = strlen(s->features[j].name);
    struct jscan js = {.p = body, .n = len};
    bool rows_done = false, ok = jscan_eat(&js, '{') && jscan_peek(&js) != '}';
    while (ok) {
        struct str k, raw;
        bool esc;
        enum jscan_kind kind;
        if (!jscan_string(&js, &k, &esc) || !jscan_eat(&js, ':')) {
            ok = false;
        } else if (!esc && str_eq_cstr(k, "rows") && !rows_done) {
            rows_done = true;
            ok = jscan_eat(&js, '[') && jscan_peek(&js) != ']';
            while (ok) {
                if (r->n == ML_PREDICT_MAX_ROWS) {
                    ok = false;
                    break;
                }
                if (r->n == r->cap) {
                    r->cap = r->cap ? r->cap * 2 : 16;
                    if (r->cap > ML_PREDICT_MAX_ROWS)
                        r->cap = ML_PREDICT_MAX_ROWS;
                    r->x = xrealloc(r->x, r->cap * f * sizeof(float));
                    r->raw = xrealloc(r->raw, r->cap * sizeof(struct str));
                }
                jscan_peek(&js);
                size_t start = js.i;
                ok = read_row(&js, s, lens, seen, (unsigned)r->n + 1, r->x + r->n * f);
                r->raw[r->n] = (struct str){body + start, js.i - start};
                r->n++;
                if (ok && !jscan_eat(&js, ','))
                    break;
            }
            ok = ok && jscan_eat(&js, ']');
        } else if (!esc && str_eq_cstr(k, "contributions")) {
            /* false only: contributions are answered by ml_predict */
            ok = jscan_value(&js, &kind, &raw) && kind == JSCAN_FALSE;
        } else if (esc || str_eq_cstr(k, "rows")) {
            ok = false; /* which of two "rows" counts is jansson's to say */
        } else {
            ok = jscan_value(&js, &kind, &raw);
        }
        if (ok && !jscan_eat(&js, ','))
            break;
    }
    ok = ok && rows_done && jscan_eat(&js, '}') && jscan_end(&js);
    free(lens);
    free(seen);
    if (!ok) {
        ml_request_free(r);
        return ERR_INVALID;
    }
    *out = r;
    return 0;
}

/* v as JSON: at most 9 significant digits, enough to read back the same float (8 when they
 * do); null when not finite. */
static void put_f32(struct buf *b, float v)
{
    if (!isfinite(v)) {
        buf_append(b, "null", 4);
        return;
    }
    char t[32];
    int len = snprintf(t, sizeof(t), "%.8g", (double)v);
    if (strtof(t, NULL) != v)
        len = snprintf(t, sizeof(t), "%.9g", (double)v);
    buf_append(b, t, (size_t)len);
}

static void put_int(struct buf *b, long long v)
{
    char t[24];
    buf_append(b, t, (size_t)snprintf(t, sizeof(t), "%lld", v));
}

/* Appends the predictions log records of r (rows' texts, with the prediction texts at
 * preds[pos[i]..pos[i+1])) to the "predictions" topic, not waiting for them to be durable. */
static void log_rows(struct ml *ml, const struct ml_request *r, const struct buf *preds,
                     const size_t *pos)
{
    const struct ml_serving *s = r->s;
    struct buf head, all;
    buf_init(&head);
    buf_init(&all);
    char now[TIME_PB_LEN];
    time_format_iso(time_now_us(), now);
    buf_puts(&head, "{\"model\":\"");
    buf_json_escape(&head, s->name, strlen(s->name));
    buf_puts(&head, "\",\"version\":");
    put_int(&head, (long long)s->version);
    buf_puts(&head, ",\"timestamp\":\"");
    buf_puts(&head, now);
    buf_puts(&head, "\",\"features\":");
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++)
        total += head.len + r->raw[i].len + 16 + (pos[i + 1] - pos[i]);
    buf_reserve(&all, total);
    size_t *at = xmalloc((r->n + 1) * sizeof(size_t));
    for (size_t i = 0; i < r->n; i++) {
        at[i] = all.len;
        buf_append(&all, head.ptr, head.len);
        buf_append(&all, r->raw[i].ptr, r->raw[i].len);
        buf_append(&all, ",\"prediction\":", 14);
        buf_append(&all, preds->ptr + pos[i], pos[i + 1] - pos[i]);
        buf_putc(&all, '}');
    }
    at[r->n] = all.len;
    struct evlog_rec *recs = xcalloc(r->n, sizeof(*recs));
    for (size_t i = 0; i < r->n; i++)
        recs[i] = (struct evlog_rec){.data = all.ptr + at[i], .len = at[i + 1] - at[i]};
    uint64_t first = 0, ticket = 0;
    /* appended, not waited for (docs/ml.md "The predictions log") */
    if (evlog_append(ml->cfg.log, "predictions", recs, r->n, &first, &ticket) != 0)
        xlog_warn("cannot log %zu predictions of model %s", r->n, s->name);
    free(recs);
    free(at);
    buf_release(&all);
    buf_release(&head);
}

int ml_request_run(struct ml *ml, struct ml_request *r, char **out, size_t *out_len)
{
    const struct ml_serving *s = r->s;
    const float *res = NULL;
    bst_ulong len = 0;
    char err[512];
    int rc =
        ml__run_booster(s, r->x, r->n, 0, r->n <= ML__SMALL_BATCH, &res, &len, err, sizeof(err));
    if (rc) {
        xlog_error("model %s: prediction failed: %s", s->name, err);
        return rc;
    }
    size_t k = s->task == ML_TASK_MULTICLASS ? (size_t)s->num_class : 1;
    if (len != r->n * k)
        return ERR_INTERNAL;
    /* every row's prediction text, once: for the answer and the log */
    struct buf preds;
    buf_init(&preds);
    buf_reserve(&preds, r->n * (k * 12 + 24));
    size_t *pos = xmalloc((r->n + 1) * sizeof(size_t));
    for (size_t i = 0; i < r->n; i++) {
        pos[i] = preds.len;
        const float *p = res + i * k;
        if (s->task == ML_TASK_MULTICLASS) {
            size_t best = 0;
            buf_puts(&preds, "{\"probabilities\":[");
            for (size_t c = 0; c < k; c++) {
                if (c)
                    buf_putc(&preds, ',');
                put_f32(&preds, p[c]);
                if (p[c] > p[best])
                    best = c;
            }
            buf_puts(&preds, "],\"label\":");
            put_int(&preds, (long long)best);
            buf_putc(&preds, '}');
        } else {
            buf_puts(&preds, "{\"score\":");
            put_f32(&preds, p[0]);
            if (s->task == ML_TASK_BINARY)
                buf_puts(&preds, p[0] >= 0.5f ? ",\"label\":1}" : ",\"label\":0}");
            else
                buf_putc(&preds, '}');
        }
    }
    pos[r->n] = preds.len;
    if (ml->cfg.log)
        log_rows(ml, r, &preds, pos);
    struct buf ans;
    buf_init(&ans);
    buf_reserve(&ans, preds.len + r->n + 64 + strlen(s->name));
    buf_puts(&ans, "{\"model\":\"");
    buf_json_escape(&ans, s->name, strlen(s->name));
    buf_puts(&ans, "\",\"version\":");
    put_int(&ans, (long long)s->version);
    buf_puts(&ans, ",\"predictions\":[");
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            buf_putc(&ans, ',');
        buf_append(&ans, preds.ptr + pos[i], pos[i + 1] - pos[i]);
    }
    buf_puts(&ans, "]}");
    free(pos);
    buf_release(&preds);
    *out = buf_detach(&ans, out_len);
    return 0;
}
