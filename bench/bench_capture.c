/* bench_capture.c - capture_parse() and dedup throughput on one core, for a typical
 * analytics-node batch (100 track events of ~400 bytes) and a posthog-node batch.
 * Build: cc -O2 -Isrc bench/bench_capture.c build/libtandem_lib.a -ljansson -lz -lsodium \
 *          -lpthread -lm -o build/bench_capture   (after a normal build)
 * Usage: bench_capture [iterations [segment]] (segment: only the Segment parse, for
 * `valgrind --tool=callgrind`). Prints events per second; the reference is json_loadb() +
 * json_dumps() of the same body, i.e. the least any JSON-in, JSON-out path must do. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"

#define N_EVENTS 100

static char *segment_body(void)
{
    size_t cap = 64 * 1024, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b + len, cap - len, "{\"batch\":[");
    for (int i = 0; i < N_EVENTS; i++)
        len += (size_t)snprintf(
            b + len, cap - len,
            "%s{\"timestamp\":\"2026-05-01T12:00:00.000Z\",\"type\":\"track\",\"event\":"
            "\"Order Completed\",\"properties\":{\"revenue\":42.5,\"currency\":\"EUR\","
            "\"items\":3,\"coupon\":\"SPRING\"},\"userId\":\"user_%d\",\"context\":{\"library\":"
            "{\"name\":\"@segment/analytics-node\",\"version\":\"3.1.0\"}},\"integrations\":{},"
            "\"messageId\":\"node-next-1714564800000-743be593-7789-4b74-8078-%012d\","
            "\"_metadata\":{\"nodeVersion\":\"v20.11.0\",\"jsRuntime\":\"node\"}}",
            i ? "," : "", i, i);
    len +=
        (size_t)snprintf(b + len, cap - len,
                         "],\"writeKey\":\"WRITE_KEY\",\"sentAt\":\"2026-05-01T12:00:05.123Z\"}");
    return b;
}

static char *posthog_body(void)
{
    size_t cap = 64 * 1024, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b + len, cap - len, "{\"api_key\":\"phc_x\",\"batch\":[");
    for (int i = 0; i < N_EVENTS; i++)
        len += (size_t)snprintf(
            b + len, cap - len,
            "%s{\"distinct_id\":\"user_%d\",\"event\":\"order completed\",\"properties\":{"
            "\"revenue\":42,\"$lib\":\"posthog-node\",\"$lib_version\":\"4.2.0\","
            "\"$geoip_disable\":true},\"timestamp\":\"2026-05-01T12:00:00.000Z\",\"uuid\":"
            "\"0190f0c4-0000-7000-8000-%012d\"}",
            i ? "," : "", i, i);
    len += (size_t)snprintf(b + len, cap - len, "],\"sent_at\":\"2026-05-01T12:00:05.123Z\"}");
    return b;
}

static double secs(void)
{
    return (double)time_mono_us() / 1e6;
}

static double run_parse(enum capture_api api, const char *body, int iters)
{
    struct capture_input in = {
        .api = api, .body = body, .body_len = strlen(body), .received_us = time_now_us()};
    double t0 = secs();
    for (int i = 0; i < iters; i++) {
        struct capture_result r;
        if (capture_parse(&in, &r) != 0 || r.status != 0 || r.n_events != N_EVENTS) {
            fprintf(stderr, "parse failed: %s\n", r.message);
            exit(1);
        }
        capture_result_release(&r);
    }
    return (double)iters * N_EVENTS / (secs() - t0);
}

static double run_reference(const char *body, int iters)
{
    size_t len = strlen(body);
    double t0 = secs();
    for (int i = 0; i < iters; i++) {
        json_t *j = json_loadb(body, len, 0, NULL);
        char *s = json_dumps(j, JSON_COMPACT);
        free(s);
        json_decref(j);
    }
    return (double)iters * N_EVENTS / (secs() - t0);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 3000; /* e.g. 30 under callgrind */
    char *seg = segment_body(), *ph = posthog_body();
    if (argc > 2 && strcmp(argv[2], "segment") == 0) { /* for instruction counts */
        printf("segment batch parse:      %10.0f events/s\n",
               run_parse(CAPTURE_API_BATCH, seg, iters));
        free(seg);
        free(ph);
        return 0;
    }
    double ref = run_reference(seg, iters);
    double s = run_parse(CAPTURE_API_BATCH, seg, iters);
    double p = run_parse(CAPTURE_API_POSTHOG, ph, iters);
    printf("reference json load+dump: %10.0f events/s\n", ref);
    printf("segment batch parse:      %10.0f events/s (%.2fx reference)\n", s, s / ref);
    printf("posthog batch parse:      %10.0f events/s (%.2fx reference)\n", p, p / ref);

    struct capture_dedup *d = capture_dedup_new(NULL);
    char id[64];
    int n = 1000000;
    double t0 = secs();
    int64_t now = time_now_us();
    for (int i = 0; i < n; i++) {
        int k = snprintf(id, sizeof(id), "msg-%d", i);
        (void)capture_dedup_check_insert(d, "WRITE_KEY", 9, id, (size_t)k, now);
    }
    printf("dedup check+insert:       %10.0f ops/s\n", n / (secs() - t0));
    capture_dedup_free(d);
    free(seg);
    free(ph);
    return 0;
}
