/* metrics.c - validation metrics of a trained version: binary (AUC, log loss, accuracy,
 * precision/recall/F1 at 0.5, the ROC curve), regression (RMSE, MAE, R²), multiclass (log
 * loss, accuracy, confusion matrix). Computed in double precision from the float predictions
 * XGBoost returns. */
#include <math.h>
#include <stdlib.h>

#include "ml/ml_int.h"

#define EPS 1e-15

struct scored {
    float p;
    float y;
};

static int by_score_desc(const void *a, const void *b)
{
    float x = ((const struct scored *)a)->p, y = ((const struct scored *)b)->p;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* The ROC curve at every distinct score, from the highest down: cumulative false and true
 * positives after each threshold (pts[2i], pts[2i+1]), *n_out points. */
static double *curve(const float *y, const float *p, size_t n, size_t *n_out, double *pos_out,
                     double *neg_out)
{
    struct scored *s = xmalloc((n ? n : 1) * sizeof(*s));
    double pos = 0;
    for (size_t i = 0; i < n; i++) {
        s[i].p = p[i];
        s[i].y = y[i];
        pos += y[i] > 0.5f;
    }
    qsort(s, n, sizeof(*s), by_score_desc);
    double *pts = xmalloc((n ? n : 1) * 2 * sizeof(double)), tp = 0, fp = 0;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        for (; j < n && s[j].p == s[i].p; j++) {
            if (s[j].y > 0.5f)
                tp++;
            else
                fp++;
        }
        pts[2 * k] = fp;
        pts[2 * k + 1] = tp;
        k++;
        i = j;
    }
    free(s);
    *n_out = k;
    *pos_out = pos;
    *neg_out = (double)n - pos;
    return pts;
}

double ml_auc(const float *y, const float *p, size_t n)
{
    size_t k;
    double pos, neg, area = 0, fp0 = 0, tp0 = 0;
    double *pts = curve(y, p, n, &k, &pos, &neg);
    for (size_t i = 0; i < k; i++) {
        /* trapezoids: a run of tied scores counts half */
        area += (pts[2 * i] - fp0) * (pts[2 * i + 1] + tp0) / 2;
        fp0 = pts[2 * i];
        tp0 = pts[2 * i + 1];
    }
    free(pts);
    if (pos == 0 || neg == 0)
        return NAN;
    return area / (pos * neg);
}

static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *roc_curve(const float *y, const float *p, size_t n)
{
    size_t k;
    double pos, neg, last_fpr = 0, last_tpr = 0;
    double *pts = curve(y, p, n, &k, &pos, &neg);
    json_t *out = json_array();
    json_array_append_new(out, json_pack("[f,f]", 0.0, 0.0));
    for (size_t i = 0; i < k; i++) {
        double fpr = neg > 0 ? pts[2 * i] / neg : 0, tpr = pos > 0 ? pts[2 * i + 1] / pos : 0;
        /* at most ~200 points: one per 1 % step of either rate, and the last */
        if (i + 1 == k || fpr - last_fpr >= 0.01 || tpr - last_tpr >= 0.01) {
            json_array_append_new(out, json_pack("[f,f]", fpr, tpr));
            last_fpr = fpr;
            last_tpr = tpr;
        }
    }
    free(pts);
    return out;
}

json_t *ml_metrics_binary(const float *y, const float *p, size_t n)
{
    double ll = 0, tp = 0, fp = 0, tn = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        double q = fmin(fmax(p[i], EPS), 1 - EPS);
        bool yes = y[i] > 0.5f, pred = p[i] >= 0.5f;
        ll -= yes ? log(q) : log(1 - q);
        tp += yes && pred;
        fp += !yes && pred;
        tn += !yes && !pred;
        fn += yes && !pred;
    }
    double prec = tp + fp > 0 ? tp / (tp + fp) : 0, rec = tp + fn > 0 ? tp / (tp + fn) : 0;
    double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0;
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "auc", num(ml_auc(y, p, n)), "logloss",
                     num(n ? ll / (double)n : NAN), "accuracy",
                     num(n ? (tp + tn) / (double)n : NAN), "precision", num(prec), "recall",
                     num(rec), "f1", num(f1), "roc", roc_curve(y, p, n));
}

json_t *ml_metrics_regression(const float *y, const float *p, size_t n)
{
    double se = 0, ae = 0, mean = 0, tot = 0;
    for (size_t i = 0; i < n; i++)
        mean += y[i];
    mean = n ? mean / (double)n : 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - p[i];
        se += d * d;
        ae += fabs(d);
        tot += ((double)y[i] - mean) * ((double)y[i] - mean);
    }
    return json_pack("{s:o,s:o,s:o}", "rmse", num(n ? sqrt(se / (double)n) : NAN), "mae",
                     num(n ? ae / (double)n : NAN), "r2", num(tot > 0 ? 1 - se / tot : NAN));
}

json_t *ml_metrics_multiclass(const float *y, const float *p, size_t n, size_t k)
{
    double ll = 0, right = 0;
    uint64_t *cm = xcalloc(k * k, sizeof(*cm));
    for (size_t i = 0; i < n; i++) {
        size_t t = (size_t)y[i], best = 0;
        for (size_t c = 1; c < k; c++)
            if (p[i * k + c] > p[i * k + best])
                best = c;
        if (t < k) {
            ll -= log(fmin(fmax(p[i * k + t], EPS), 1 - EPS));
            cm[t * k + best]++;
        }
        right += best == t;
    }
    json_t *conf = json_array();
    for (size_t t = 0; t < k; t++) {
        json_t *row = json_array();
        for (size_t c = 0; c < k; c++)
            json_array_append_new(row, json_integer((json_int_t)cm[t * k + c]));
        json_array_append_new(conf, row);
    }
    free(cm);
    return json_pack("{s:o,s:o,s:o}", "logloss", num(n ? ll / (double)n : NAN), "accuracy",
                     num(n ? right / (double)n : NAN), "confusion", conf);
}
