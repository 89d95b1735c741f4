/* analytics_fixture.h - a temporary warehouse for the analytics tests, events written by a
 * compact spec, and a helper that runs an insight query given as JSON text (included, not
 * linked). */
#ifndef TANDEM_TESTS_ANALYTICS_FIXTURE_H
#define TANDEM_TESTS_ANALYTICS_FIXTURE_H

#include "analytics/analytics.h"
#include "wh_test_util.h"

struct afx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
    uint64_t next_offset;
};

/* One event: type ("track" when NULL), event, user_id, anonymous_id, previous_id, UTC time
 * "YYYY-MM-DDTHH:MM:SSZ", properties JSON text (NULL: none). */
struct aev {
    const char *type, *event, *user, *anon, *prev, *ts, *props;
};

static inline struct afx *afx_open(const char *name)
{
    struct afx *f = calloc(1, sizeof(*f));
    wht_path(f->path, sizeof(f->path), name);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.threads = 2;
    if (wh_open(&cfg, &f->wh) != 0 || wh_conn_open(f->wh, &f->c) != 0 ||
        wh_ensure_schema(f->c) != 0) {
        fprintf(stderr, "cannot open warehouse: %s\n", wh_errmsg(NULL));
        abort();
    }
    return f;
}

static inline void afx_close(struct afx *f)
{
    wh_conn_close(f->c);
    wh_close(f->wh);
    wht_unlink(f->path);
    free(f);
}

static inline int64_t afx_us(const char *ts)
{
    int64_t us = 0;
    if (time_parse(ts, strlen(ts), &us) != 0) {
        fprintf(stderr, "bad time %s\n", ts);
        abort();
    }
    return us;
}

static inline void afx_load(struct afx *f, const struct aev *evs, size_t n)
{
    struct wh_event *w = calloc(n, sizeof(*w));
    char(*ids)[32] = calloc(n, 32);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], 32, "m%llu", (unsigned long long)(f->next_offset + i));
        w[i] = (struct wh_event){.log_offset = f->next_offset + i,
                                 .id = ids[i],
                                 .type = evs[i].type ? evs[i].type : "track",
                                 .event = evs[i].event,
                                 .user_id = evs[i].user,
                                 .anonymous_id = evs[i].anon,
                                 .previous_id = evs[i].prev,
                                 .timestamp_us = afx_us(evs[i].ts),
                                 .original_timestamp_us = WH_NO_TIME,
                                 .sent_at_us = WH_NO_TIME,
                                 .received_at_us = WH_NO_TIME,
                                 .properties = evs[i].props,
                                 .source = "test"};
    }
    f->next_offset += n;
    struct wh_load ld = {.consumer = "t", .topic = "events", .next_offset = f->next_offset};
    if (wh_load_events(f->c, &ld, w, n, NULL) != 0) {
        fprintf(stderr, "load failed: %s\n", wh_errmsg(f->c));
        abort();
    }
    free(ids);
    free(w);
}

/* Runs the query (JSON text); returns its rc; *res_out gets the result or the errors. */
static inline int afx_run(struct afx *f, enum analytics_kind kind, const char *json,
                          json_t **res_out)
{
    json_error_t je;
    json_t *q = json_loads(json, 0, &je);
    if (!q) {
        fprintf(stderr, "bad test JSON: %s: %s\n", json, je.text);
        abort();
    }
    struct analytics_out out;
    int rc = analytics_run(f->c, kind, q, afx_us("2024-06-01T00:00:00Z"), &out);
    json_decref(q);
    if (rc == 0) {
        *res_out = out.result;
        out.result = NULL;
    } else if (out.errors) {
        *res_out = out.errors;
        out.errors = NULL;
    } else {
        fprintf(stderr, "insight failed (%d): %s\n", rc, out.message);
        *res_out = NULL;
    }
    analytics_out_release(&out);
    return rc;
}

/* The value at a path of keys and indexes, e.g. afx_at(r, "results.0.data"), as compact JSON
 * text (caller frees). */
static inline char *afx_at(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else
            cur = json_object_get(cur, tok);
    }
    if (!cur)
        return strdup("<missing>");
    return json_dumps(cur, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
}

#define assert_at(j, path, expect)                                                                 \
    do {                                                                                           \
        char *got_ = afx_at((j), (path));                                                          \
        if (strcmp(got_, (expect)) != 0)                                                           \
            fprintf(stderr, "at %s: got %s, want %s\n", (path), got_, (expect));                   \
        assert_string_equal(got_, (expect));                                                       \
        free(got_);                                                                                \
    } while (0)

#endif
