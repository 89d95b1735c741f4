/* log.c - reading the event log over HTTP (superusers): replay from any offset. */
#include <string.h>

#include "api/records_int.h"
#include "evlog/evlog.h"

#define LOG_READ_MAX 1000

static void read_topic(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    if (!api__require_superuser(req, env, true))
        return;
    const char *topic = http_req_param(req, "topic");
    int64_t from = 0, limit = 100;
    const char *f = http_req_query(req, "from");
    const char *l = http_req_query(req, "limit");
    if ((f && (api__parse_int(f, &from) != 0 || from < 0)) ||
        (l && (api__parse_int(l, &limit) != 0 || limit < 1))) {
        http_reply_error(req, 400, "from and limit must be non-negative integers.", NULL);
        return;
    }
    if (limit > LOG_READ_MAX)
        limit = LOG_READ_MAX;
    if (!evlog_name_valid(topic)) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    uint64_t start = 0, end = 0;
    if (evlog_start_offset(env->log, topic, &start) != 0 ||
        evlog_end_offset(env->log, topic, &end) != 0) {
        http_reply_error(req, 503, NULL, NULL);
        return;
    }
    json_t *recs = json_array();
    uint64_t next = (uint64_t)from;
    if ((uint64_t)from < end) {
        struct evlog_batch b;
        evlog_batch_init(&b);
        int rc = evlog_read(env->log, topic, (uint64_t)from, (size_t)limit, 16 << 20, &b);
        if (rc != 0) {
            evlog_batch_release(&b);
            json_decref(recs);
            http_reply_error(req, rc == ERR_NOTFOUND ? 404 : 503,
                             rc == ERR_NOTFOUND ? "That offset is no longer retained." : NULL,
                             NULL);
            return;
        }
        for (size_t i = 0; i < b.n; i++) {
            json_t *v = json_loadb((const char *)b.recs[i].data, b.recs[i].len, 0, NULL);
            json_array_append_new(recs,
                                  json_pack("{s:I,s:I,s:o}", "offset", (json_int_t)b.recs[i].offset,
                                            "timestamp", (json_int_t)b.recs[i].timestamp_us,
                                            "value", v ? v : json_null()));
        }
        next = b.next_offset;
        evlog_batch_release(&b);
    }
    http_reply_json(req, 200,
                    json_pack("{s:s,s:I,s:I,s:I,s:o}", "topic", topic, "startOffset",
                              (json_int_t)start, "endOffset", (json_int_t)end, "nextOffset",
                              (json_int_t)next, "records", recs));
}

void api__register_log(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/log/{topic}", read_topic, env);
}
