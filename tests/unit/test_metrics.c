/* Metrics: counters, gauges and histograms with labels, exposition format, concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "metrics/metrics.h"

static char *render(void)
{
    struct buf b;
    buf_init(&b);
    metrics_render(&b);
    return buf_detach(&b, NULL);
}

static void test_counter_labels_and_escaping(void **state)
{
    UNUSED(state);
    struct metrics_family *f =
        metrics_family(METRICS_COUNTER, "t_requests_total", "Requests.\nSecond line", "m,route");
    const char *v1[] = {"GET", "/a"};
    const char *v2[] = {"POST", "/q\"u\\o\nte"};
    metrics_inc(metrics_series(f, v1), 3);
    metrics_inc(metrics_series(f, v1), 2);
    metrics_inc(metrics_series(f, v2), 1);
    assert_ptr_equal(metrics_series(f, v1), metrics_series(f, v1));
    assert_true(metrics_value(metrics_series(f, v1)) == 5);
    /* registering again returns the same family */
    assert_ptr_equal(metrics_family(METRICS_COUNTER, "t_requests_total", "x", "m,route"), f);

    char *text = render();
    assert_non_null(strstr(text, "# HELP t_requests_total Requests.\\nSecond line\n"));
    assert_non_null(strstr(text, "# TYPE t_requests_total counter\n"));
    assert_non_null(strstr(text, "t_requests_total{m=\"GET\",route=\"/a\"} 5\n"));
    assert_non_null(strstr(text, "t_requests_total{m=\"POST\",route=\"/q\\\"u\\\\o\\nte\"} 1\n"));
    free(text);
}

static void test_gauge(void **state)
{
    UNUSED(state);
    struct metrics_series *g =
        metrics_series0(metrics_family(METRICS_GAUGE, "t_gauge", "A gauge.", NULL));
    metrics_set(g, 10);
    metrics_add(g, -2.5);
    assert_true(metrics_value(g) == 7.5);
    char *text = render();
    assert_non_null(strstr(text, "# TYPE t_gauge gauge\nt_gauge 7.5\n"));
    free(text);
}

static void test_histogram(void **state)
{
    UNUSED(state);
    const double b[] = {0.1, 1, 10};
    struct metrics_family *f = metrics_histogram("t_latency_seconds", "Latency.", "route", b, 3);
    const char *v[] = {"/x"};
    struct metrics_series *s = metrics_series(f, v);
    metrics_observe(s, 0.05);
    metrics_observe(s, 0.1); /* le is inclusive */
    metrics_observe(s, 5);
    metrics_observe(s, 50);
    assert_int_equal(metrics_hist_count(s), 4);
    char *text = render();
    assert_non_null(strstr(text, "# TYPE t_latency_seconds histogram\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"10\"} 3\n"
                                 "t_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
                                 "t_latency_seconds_sum{route=\"/x\"} 55.15\n"
                                 "t_latency_seconds_count{route=\"/x\"} 4\n"));
    free(text);
}

static void collect(struct buf *out, const char *name, void *arg)
{
    const char *v[] = {arg};
    metrics_write_sample(out, name, "topic", v, 42);
}

static void test_collector(void **state)
{
    UNUSED(state);
    metrics_collector(METRICS_GAUGE, "t_collected", "Collected.", collect, "events");
    char *text = render();
    assert_non_null(strstr(text, "# TYPE t_collected gauge\nt_collected{topic=\"events\"} 42\n"));
    free(text);
}

static void test_overflow_series(void **state)
{
    UNUSED(state);
    struct metrics_family *f = metrics_family(METRICS_COUNTER, "t_many", "Many.", "k");
    char key[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        const char *v[] = {key};
        metrics_inc(metrics_series(f, v), 1);
    }
    const char *v[] = {"k99999"};
    struct metrics_series *over = metrics_series(f, v);
    assert_true(metrics_value(over) == 10);
    char *text = render();
    assert_non_null(strstr(text, "t_many{k=\"overflow\"} 10\n"));
    free(text);
}

struct worker {
    struct metrics_family *f;
    int id;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char key[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "s%d", i % 16);
        const char *v[] = {key};
        metrics_inc(metrics_series(w->f, v), 1);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    UNUSED(state);
    struct metrics_family *f = metrics_family(METRICS_COUNTER, "t_conc", "Concurrent.", "s");
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i].f = f;
        w[i].id = i;
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    double total = 0;
    char key[16];
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof(key), "s%d", i);
        const char *v[] = {key};
        total += metrics_value(metrics_series(f, v));
    }
    assert_true(total == 4 * 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_labels_and_escaping),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_collector),
        cmocka_unit_test(test_overflow_series),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
