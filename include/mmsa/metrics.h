/* metrics.h: evaluation metrics of fine-tuning (MoleculeNet conventions).
 *
 * Owns nothing: pure functions over score / label matrices.
 *
 * Promises:
 *  - ROC-AUC equals scikit-learn's roc_auc_score (binary): the trapezoid under the ROC
 *    curve whose points are the DISTINCT score thresholds, so tied scores form one
 *    step (equivalently, the Mann-Whitney statistic with ties counted one half).
 *    Computed from integer counts in double precision.
 *  - Average precision equals scikit-learn's average_precision_score:
 *    AP = sum over distinct thresholds k (descending) of (R_k - R_{k-1}) P_k, with
 *    precision P_k and recall R_k of "score >= threshold k".
 *  - Multi-task matrices are [n, T] row-major; a NaN label is a missing entry and is
 *    left out of that task. A task whose present labels hold one class only (or none)
 *    has no ROC-AUC: it is skipped, counted in n_skipped, and its per-task value is NaN.
 *    The reported value is the mean over the tasks not skipped (NaN when all are).
 *  - Regression: RMSE and MAE per task over its present targets, then the mean over
 *    the tasks that have at least one target (chemprop's convention for multi-task
 *    regression; identical to the plain RMSE/MAE for one task).
 *  - A label other than 0, 1 or NaN is MM_ERR_ARG naming the row and task; a NaN or
 *    infinite score where a label is present is MM_ERR_NUMERIC (scikit-learn refuses
 *    such input too). */
#ifndef MMSA_METRICS_H
#define MMSA_METRICS_H

#include <stdint.h>

#include "mmsa/error.h"

/* One binary task: score and label are columns read with a stride (stride = T for
 * column t of an [n, T] matrix; 1 for plain arrays). *roc_auc and *avg_precision get
 * NaN when the present labels hold one class or none (either pointer may be NULL). */
mm_status mm_binary_metrics(const float *score, const float *label, int64_t n, int64_t stride,
                            double *roc_auc, double *avg_precision);

typedef struct mm_class_metrics {
    double roc_auc;       /* mean ROC-AUC over the tasks not skipped; NaN if none */
    double pr_auc;        /* mean average precision over the same tasks */
    int n_tasks;          /* T */
    int n_skipped;        /* tasks with one class (or no label) in this set */
    int64_t n_labels;     /* present labels over all tasks */
} mm_class_metrics;

/* score, label [n, T]. task_roc, task_pr [T] receive per-task values (NaN when
 * skipped); either may be NULL. */
mm_status mm_metrics_classification(const float *score, const float *label, int64_t n, int T,
                                    mm_class_metrics *out, double *task_roc, double *task_pr);

typedef struct mm_reg_metrics {
    double rmse;          /* mean over tasks with targets of the per-task RMSE; NaN if none */
    double mae;           /* likewise for the mean absolute error */
    int n_tasks;
    int n_skipped;        /* tasks without any target in this set */
    int64_t n_labels;
} mm_reg_metrics;

/* pred, target [n, T]; target NaN = missing. task_rmse [T] may be NULL. */
mm_status mm_metrics_regression(const float *pred, const float *target, int64_t n, int T,
                                mm_reg_metrics *out, double *task_rmse);

#endif
