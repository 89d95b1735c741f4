/* pipeline_gen.c - fills a data directory's event log with N realistic Segment events for
 * bench/pipeline.sh, so the server finds them already logged and only has to load them.
 *
 * The events look like what capture writes (about 500 bytes: messageId, type, event, userId,
 * anonymousId, the four timestamps, properties, a context with library/page/userAgent/ip,
 * traits on identifies, source), with ids, users, products and times varied per event.
 * The segment size is the server's default, so `tandem serve --dir DIR` opens the log as is.
 *
 * Build (after the CMake build):
 *   cc -O2 -std=gnu11 -Isrc bench/pipeline_gen.c build/libtandem_lib.a -lpthread -lm \
 *      -o build/pipeline_gen
 * Run: build/pipeline_gen DIR [events=5000000] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlog/evlog.h"

static const char *const names[] = {"Page Viewed",     "Product Clicked",   "Signed Up",
                                    "Order Completed", "Products Searched", "Product Added"};
static const char *const plans[] = {"free", "pro", "team", "enterprise"};

static int event_text(char *b, size_t cap, uint64_t k, const char *now)
{
    uint64_t user = (k * 2654435761u) % 200000;
    if (k % 10 == 0)
        return snprintf(
            b, cap,
            "{\"messageId\":\"ajs-next-%016llx\",\"type\":\"identify\",\"userId\":\"user_%llu\","
            "\"anonymousId\":\"anon-%llx\",\"timestamp\":\"%s\",\"originalTimestamp\":\"%s\","
            "\"sentAt\":\"%s\",\"receivedAt\":\"%s\",\"traits\":{\"email\":\"user%llu@example."
            "com\","
            "\"plan\":\"%s\",\"logins\":%llu,\"company\":{\"name\":\"Company %llu\"}},"
            "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"5.2.0\"},"
            "\"ip\":\"198.51.%d.%d\",\"userAgent\":\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
            "Chrome/121.0\",\"locale\":\"en-US\"},"
            "\"source\":\"web\"}",
            (unsigned long long)k, (unsigned long long)user, (unsigned long long)(k * 7919), now,
            now, now, now, (unsigned long long)user, plans[k % 4], (unsigned long long)(k % 97),
            (unsigned long long)(user % 5000), (int)(k % 256), (int)(k / 256 % 256));
    return snprintf(
        b, cap,
        "{\"messageId\":\"ajs-next-%016llx\",\"type\":\"track\",\"event\":\"%s\","
        "\"userId\":\"user_%llu\",\"anonymousId\":\"anon-%llx\",\"timestamp\":\"%s\","
        "\"originalTimestamp\":\"%s\",\"sentAt\":\"%s\",\"receivedAt\":\"%s\","
        "\"properties\":{\"product_id\":\"sku-%llu\",\"category\":\"Games\",\"price\":%llu.%02llu,"
        "\"quantity\":%llu,\"currency\":\"EUR\",\"in_stock\":%s},"
        "\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"5.2.0\"},"
        "\"page\":{\"path\":\"/products/%llu\",\"url\":\"https://shop.example/products/"
        "%llu\"},\"ip\":\"198.51.%d.%d\","
        "\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Chrome/121.0\"},\"source\":\"web\"}",
        (unsigned long long)k, names[k % 6], (unsigned long long)user,
        (unsigned long long)(k * 7919), now, now, now, now, (unsigned long long)(k % 9973),
        (unsigned long long)(k % 300), (unsigned long long)(k % 100),
        (unsigned long long)(1 + k % 5), k % 3 ? "true" : "false", (unsigned long long)(k % 9973),
        (unsigned long long)(k % 9973), (int)(k % 256), (int)(k / 256 % 256));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [events]\n", argv[0]);
        return 2;
    }
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 5000000;
    char logdir[4096];
    snprintf(logdir, sizeof(logdir), "%s/log", argv[1]);
    struct evlog_cfg lc;
    evlog_cfg_defaults(&lc);
    lc.dir = logdir;
    lc.fsync = EVLOG_FSYNC_NEVER;
    struct evlog *log;
    if (evlog_open(&lc, &log) < 0) {
        fprintf(stderr, "evlog: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    enum { B = 2000 };
    static char bufs[B][1024];
    static struct evlog_rec recs[B];
    uint64_t bytes = 0;
    int64_t t0 = time_mono_us();
    for (uint64_t base = 0; base < n; base += B) {
        char now[TIME_PB_LEN];
        time_format_iso(time_now_us(), now);
        size_t m = n - base < B ? (size_t)(n - base) : B;
        for (size_t i = 0; i < m; i++) {
            int len = event_text(bufs[i], sizeof(bufs[i]), base + i, now);
            recs[i] = (struct evlog_rec){bufs[i], (size_t)len};
            bytes += (uint64_t)len;
        }
        uint64_t off;
        if (evlog_append_sync(log, "events", recs, m, &off) < 0) {
            fprintf(stderr, "append: %s\n", evlog_errmsg(log));
            evlog_close(log);
            return 1;
        }
    }
    evlog_close(log);
    printf("appended %llu events (%.0f bytes each on average) in %.1f s\n", (unsigned long long)n,
           (double)bytes / (double)(n ? n : 1), (double)(time_mono_us() - t0) / 1e6);
    return 0;
}
