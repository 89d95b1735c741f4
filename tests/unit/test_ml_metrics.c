/* ML validation metrics (ml/metrics.c) against values worked out by hand, and the key split
 * (FNV-1a 64 of the key's text, docs/ml.md "The split"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "ml/ml.h"

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static void test_auc_ties_count_half(void **state)
{
    (void)state;
    /* positives 0.9, 0.5; negatives 0.5, 0.1: pairs (0.9>0.5) (0.9>0.1) (0.5=0.5: half)
     * (0.5>0.1) -> 3.5 / 4 */
    float y[] = {1, 1, 0, 0}, p[] = {0.9f, 0.5f, 0.5f, 0.1f};
    assert_true(fabs(ml_auc(y, p, 4) - 0.875) < 1e-12);
    float perfect[] = {0.8f, 0.7f, 0.2f, 0.1f};
    assert_true(fabs(ml_auc(y, perfect, 4) - 1.0) < 1e-12);
    float y1[] = {1, 1};
    assert_true(isnan(ml_auc(y1, p, 2))); /* one class only */
}

static void test_binary(void **state)
{
    (void)state;
    float y[] = {1, 0, 1, 0}, p[] = {0.8f, 0.6f, 0.4f, 0.2f};
    json_t *m = ml_metrics_binary(y, p, 4);
    /* at 0.5: tp 1 (0.8), fp 1 (0.6), fn 1 (0.4), tn 1 (0.2) */
    assert_true(fabs(num(m, "accuracy") - 0.5) < 1e-12);
    assert_true(fabs(num(m, "precision") - 0.5) < 1e-12);
    assert_true(fabs(num(m, "recall") - 0.5) < 1e-12);
    assert_true(fabs(num(m, "f1") - 0.5) < 1e-12);
    double ll = -(log(0.8) + log(0.4) + log(0.4) + log(0.8)) / 4;
    assert_true(fabs(num(m, "logloss") - ll) < 1e-6);
    assert_true(fabs(num(m, "auc") - 0.75) < 1e-12);
    json_t *roc = json_object_get(m, "roc");
    assert_true(json_array_size(roc) >= 2);
    json_t *last = json_array_get(roc, json_array_size(roc) - 1);
    assert_true(json_real_value(json_array_get(last, 0)) == 1.0);
    assert_true(json_real_value(json_array_get(last, 1)) == 1.0);
    json_decref(m);
}

static void test_regression(void **state)
{
    (void)state;
    float y[] = {1, 2, 3, 4}, p[] = {1, 2, 3, 6};
    json_t *m = ml_metrics_regression(y, p, 4);
    assert_true(fabs(num(m, "rmse") - 1.0) < 1e-12); /* sqrt(4/4) */
    assert_true(fabs(num(m, "mae") - 0.5) < 1e-12);
    assert_true(fabs(num(m, "r2") - (1 - 4.0 / 5.0)) < 1e-12); /* tot = 2.25+.25+.25+2.25 */
    json_decref(m);
}

static void test_multiclass(void **state)
{
    (void)state;
    float y[] = {0, 1, 2};
    float p[] = {0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f, 0.2f, 0.2f, 0.6f};
    json_t *m = ml_metrics_multiclass(y, p, 3, 3);
    assert_true(fabs(num(m, "accuracy") - 2.0 / 3.0) < 1e-12);
    double ll = -(log(0.7) + log(0.3) + log(0.6)) / 3;
    assert_true(fabs(num(m, "logloss") - ll) < 1e-6);
    char *cm = json_dumps(json_object_get(m, "confusion"), JSON_COMPACT);
    assert_string_equal(cm, "[[1,0,0],[0,0,1],[0,0,1]]");
    free(cm);
    json_decref(m);
}

static void test_split(void **state)
{
    (void)state;
    /* FNV-1a 64 of "" is the offset basis 14695981039346656037: % 10000 = 6037 */
    assert_false(ml_split_is_valid("", 0, 0.6037));
    assert_true(ml_split_is_valid("", 0, 0.6038));
    /* the same key always lands on the same side, and about the fraction does */
    size_t valid = 0;
    char k[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof(k), "%d", i);
        bool v = ml_split_is_valid(k, (size_t)n, 0.2);
        assert_int_equal(v, ml_split_is_valid(k, (size_t)n, 0.2));
        valid += v;
    }
    assert_in_range(valid, 19000, 21000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_ties_count_half),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_multiclass),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
