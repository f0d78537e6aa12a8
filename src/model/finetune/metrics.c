/* metrics.c: ROC-AUC, average precision, RMSE and MAE (metrics.h). */
#include "mmsa/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "mmsa/alloc.h"

typedef struct scored {
    float s;
    uint8_t y;
} scored;

/* descending score; ties in any order (a tie group is one threshold) */
static int cmp_desc(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x < y) - (x > y);
}

mm_status mm_binary_metrics(const float *score, const float *label, int64_t n, int64_t stride,
                            double *roc_auc, double *avg_precision)
{
    MM_CHECK_ARG(n >= 0 && stride >= 1 && (n == 0 || (score && label)), "binary metrics: n %lld, stride %lld",
                 (long long)n, (long long)stride);
    if (roc_auc) *roc_auc = NAN;
    if (avg_precision) *avg_precision = NAN;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        float y = label[i * stride];
        if (isnan(y)) continue;
        if (y != 0.0f && y != 1.0f)
            return MM_ERR(MM_ERR_ARG, "binary metrics: label of row %lld is %g, not 0 or 1", (long long)i, (double)y);
        if (!isfinite(score[i * stride]))
            return MM_ERR(MM_ERR_NUMERIC, "binary metrics: score of row %lld is %g", (long long)i,
                          (double)score[i * stride]);
        m++;
    }
    size_t bytes = (size_t)(m ? m : 1) * sizeof(scored);
    scored *v = mm_malloc(bytes);
    if (!v) return MM_ERR(MM_ERR_NOMEM, "binary metrics: %lld scores", (long long)m);
    int64_t k = 0, pos = 0;
    for (int64_t i = 0; i < n; i++) {
        float y = label[i * stride];
        if (isnan(y)) continue;
        v[k].s = score[i * stride];
        v[k].y = y == 1.0f;
        pos += v[k].y;
        k++;
    }
    int64_t neg = m - pos;
    if (pos > 0 && neg > 0) {
        qsort(v, (size_t)m, sizeof *v, cmp_desc);
        /* walk the distinct thresholds from the highest: (fp, tp) after each group */
        double area2 = 0, ap = 0; /* area2: twice the area, in units of one negative x one positive */
        int64_t tp = 0, fp = 0;
        for (int64_t i = 0; i < m;) {
            int64_t j = i, tp0 = tp, fp0 = fp;
            while (j < m && v[j].s == v[i].s) {
                tp += v[j].y;
                fp += !v[j].y;
                j++;
            }
            area2 += (double)(fp - fp0) * (double)(tp + tp0);
            if (tp > tp0) ap += (double)(tp - tp0) / (double)pos * ((double)tp / (double)(tp + fp));
            i = j;
        }
        if (roc_auc) *roc_auc = area2 / (2.0 * (double)pos * (double)neg);
        if (avg_precision) *avg_precision = ap;
    }
    mm_free_sized(v, bytes);
    return MM_OK;
}

mm_status mm_metrics_classification(const float *score, const float *label, int64_t n, int T,
                                    mm_class_metrics *out, double *task_roc, double *task_pr)
{
    MM_CHECK_ARG(T >= 1 && n >= 0 && out, "classification metrics: n %lld, T %d", (long long)n, T);
    double sum_roc = 0, sum_pr = 0;
    int used = 0;
    out->n_tasks = T;
    out->n_labels = 0;
    for (int t = 0; t < T; t++) {
        double roc, pr;
        mm_status st = mm_binary_metrics(score + t, label + t, n, T, &roc, &pr);
        if (st != MM_OK) {
            mm_error_push(__FILE__, __LINE__, __func__);
            return st;
        }
        for (int64_t i = 0; i < n; i++) out->n_labels += !isnan(label[i * T + t]);
        if (task_roc) task_roc[t] = roc;
        if (task_pr) task_pr[t] = pr;
        if (isnan(roc)) continue;
        sum_roc += roc;
        sum_pr += pr;
        used++;
    }
    out->n_skipped = T - used;
    out->roc_auc = used ? sum_roc / used : NAN;
    out->pr_auc = used ? sum_pr / used : NAN;
    return MM_OK;
}

mm_status mm_metrics_regression(const float *pred, const float *target, int64_t n, int T,
                                mm_reg_metrics *out, double *task_rmse)
{
    MM_CHECK_ARG(T >= 1 && n >= 0 && out, "regression metrics: n %lld, T %d", (long long)n, T);
    double sum_rmse = 0, sum_mae = 0;
    int used = 0;
    out->n_tasks = T;
    out->n_labels = 0;
    for (int t = 0; t < T; t++) {
        double se = 0, ae = 0;
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++) {
            float y = target[i * T + t];
            if (isnan(y)) continue;
            float p = pred[i * T + t];
            if (!isfinite(p) || !isfinite(y))
                return MM_ERR(MM_ERR_NUMERIC, "regression metrics: row %lld task %d: prediction %g, target %g",
                              (long long)i, t, (double)p, (double)y);
            double d = (double)p - (double)y;
            se += d * d;
            ae += fabs(d);
            cnt++;
        }
        out->n_labels += cnt;
        double rmse = cnt ? sqrt(se / (double)cnt) : NAN;
        if (task_rmse) task_rmse[t] = rmse;
        if (!cnt) continue;
        sum_rmse += rmse;
        sum_mae += ae / (double)cnt;
        used++;
    }
    out->n_skipped = T - used;
    out->rmse = used ? sum_rmse / used : NAN;
    out->mae = used ? sum_mae / used : NAN;
    return MM_OK;
}
