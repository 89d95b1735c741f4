/* ops.c - operations endpoints: health and Prometheus metrics. */
#include <string.h>

#include "api/api_int.h"
#include "metrics/metrics.h"

static const char health_body[] = "{\"code\":200,\"message\":\"API is healthy.\",\"data\":{}}";

static void get_health(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    http_reply_static(req, 200, "application/json", health_body, sizeof(health_body) - 1);
}

static void get_metrics(struct http_req *req, void *ctx)
{
    UNUSED(ctx);
    struct buf out;
    buf_init(&out);
    metrics_render(&out);
    size_t len;
    char *text = buf_detach(&out, &len);
    http_reply_owned(req, 200, METRICS_CONTENT_TYPE, text, len);
}

void api__register_ops(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/health", get_health, env);
    http_route(r, "GET", "/metrics", get_metrics, env);
}
