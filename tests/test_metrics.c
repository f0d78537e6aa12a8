/* Tests of the evaluation metrics (metrics.h): ROC-AUC and average precision against
 * scikit-learn (tests/metrics_ref.py run by /usr/bin/python3) on random scores with
 * many ties, hand-computed values, multi-task masking and skipped tasks, RMSE/MAE, and
 * the errors for bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "mmsa/metrics.h"
#include "mmsa/rng.h"
#include "testutil.h"

/* tests/metrics_ref.py next to this source file (the tests run from the repository root) */
static void ref_script(char *buf, size_t n)
{
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    if (slash) snprintf(buf, n, "%.*s/metrics_ref.py", (int)(slash - src), src);
    else snprintf(buf, n, "metrics_ref.py");
}

static void test_hand_computed(void **state)
{
    (void)state;
    /* sklearn docs example: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75,
     * average_precision_score = 0.8333... (1/2 * 1 + 1/2 * 2/3) */
    float s[4] = {0.1f, 0.4f, 0.35f, 0.8f}, y[4] = {0, 0, 1, 1};
    double auc, ap;
    assert_int_equal(mm_binary_metrics(s, y, 4, 1, &auc, &ap), MM_OK);
    assert_true(fabs(auc - 0.75) < 1e-15);
    assert_true(fabs(ap - (0.5 + 0.5 * 2.0 / 3.0)) < 1e-15);
    /* all scores tied: one threshold, the diagonal: AUC 0.5, AP = positive rate */
    float t[5] = {1, 1, 1, 1, 1}, yt[5] = {1, 0, 0, 1, 0};
    assert_int_equal(mm_binary_metrics(t, yt, 5, 1, &auc, &ap), MM_OK);
    assert_true(fabs(auc - 0.5) < 1e-15);
    assert_true(fabs(ap - 0.4) < 1e-15);
    /* a tie between one positive and one negative counts one half */
    float u[3] = {0.2f, 0.7f, 0.7f}, yu[3] = {0, 1, 0};
    assert_int_equal(mm_binary_metrics(u, yu, 3, 1, &auc, &ap), MM_OK);
    assert_true(fabs(auc - 0.75) < 1e-15); /* pairs (+0.7 vs -0.2) = 1, (+0.7 vs -0.7) = 0.5 */
    /* reversed ranking */
    float v[4] = {0.9f, 0.8f, 0.2f, 0.1f}, yv[4] = {0, 0, 1, 1};
    assert_int_equal(mm_binary_metrics(v, yv, 4, 1, &auc, NULL), MM_OK);
    assert_true(auc == 0.0);
    /* one class only: undefined (NaN), not an error */
    float w[3] = {0.1f, 0.5f, 0.2f}, yw[3] = {1, 1, NAN};
    assert_int_equal(mm_binary_metrics(w, yw, 3, 1, &auc, &ap), MM_OK);
    assert_true(isnan(auc) && isnan(ap));
}

/* Random binary cases with heavy ties, written as CSV, scored by scikit-learn. */
static void test_against_sklearn(void **state)
{
    (void)state;
    enum { CASES = 60 };
    char dir[300], csv[400], script[400], cmd[1400], out[400];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(csv, sizeof csv, "%s/metric_cases.csv", dir);
    snprintf(out, sizeof out, "%s/metric_ref.txt", dir);
    ref_script(script, sizeof script);
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "SKIP: /usr/bin/python3 is missing; the scikit-learn comparison did not run\n");
        skip();
    }
    static float score[CASES][400], label[CASES][400];
    int n[CASES];
    mm_rng r;
    mm_rng_init(&r, 2024, 7);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "case,label,score\n");
    for (int c = 0; c < CASES; c++) {
        n[c] = 2 + (int)mm_rng_below(&r, 398);
        int levels = c % 3 == 0 ? 3 : c % 3 == 1 ? 10 : 1000; /* 3 levels: almost everything tied */
        double pos_rate = 0.05 + 0.9 * mm_rng_uniform_double(&r);
        for (int i = 0; i < n[c]; i++) {
            label[c][i] = mm_rng_uniform_double(&r) < pos_rate ? 1.0f : 0.0f;
            /* scores correlated with the label so AUCs spread over (0, 1) */
            int lv = (int)mm_rng_below(&r, (uint64_t)levels) + (label[c][i] == 1.0f && c % 2 ? levels / 3 : 0);
            score[c][i] = (float)lv * 0.25f - 3.0f;
        }
        if (c == CASES - 1) /* one class: sklearn and we both leave it undefined */
            for (int i = 0; i < n[c]; i++) label[c][i] = 1.0f;
        for (int i = 0; i < n[c]; i++) fprintf(f, "%d,%g,%.9g\n", c, (double)label[c][i], (double)score[c][i]);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' > '%s'", script, csv, out);
    int rc = system(cmd);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 3) {
        fprintf(stderr, "SKIP: scikit-learn is missing (apt-get install -y python3-sklearn); comparison not run\n");
        skip();
    }
    assert_int_equal(rc, 0);
    f = fopen(out, "r");
    assert_non_null(f);
    int checked = 0;
    double worst = 0;
    for (int c = 0; c < CASES; c++) {
        int id;
        char a[64], b[64];
        assert_int_equal(fscanf(f, "%d %63s %63s", &id, a, b), 3);
        assert_int_equal(id, c);
        double auc, ap;
        assert_int_equal(mm_binary_metrics(score[c], label[c], n[c], 1, &auc, &ap), MM_OK);
        if (!strcmp(a, "nan")) {
            assert_true(isnan(auc) && isnan(ap));
            continue;
        }
        double ra = strtod(a, NULL), rp = strtod(b, NULL);
        worst = fmax(worst, fmax(fabs(auc - ra), fabs(ap - rp)));
        if (fabs(auc - ra) > 1e-12 || fabs(ap - rp) > 1e-12)
            fprintf(stderr, "case %d (n %d): ROC-AUC %.17g vs sklearn %.17g, AP %.17g vs %.17g\n", c, n[c], auc, ra, ap, rp);
        assert_true(fabs(auc - ra) <= 1e-12);
        assert_true(fabs(ap - rp) <= 1e-12);
        checked++;
    }
    fclose(f);
    assert_int_equal(checked, CASES - 1);
    printf("metrics vs scikit-learn: %d cases with ties, largest difference %.3g\n", checked, worst);
}

/* [n, T] with missing labels: per-task values equal the single-task ones on the
 * present rows; a one-class task is skipped and counted. */
static void test_multitask_mask_and_skip(void **state)
{
    (void)state;
    enum { N = 40, T = 3 };
    float s[N * T], y[N * T];
    for (int i = 0; i < N; i++) {
        for (int t = 0; t < T; t++) s[i * T + t] = (float)((i * 7 + t * 3) % 11);
        y[i * T + 0] = (float)(i % 3 == 0);
        y[i * T + 1] = i % 4 == 1 ? NAN : (float)((i * 5) % 7 < 3);
        y[i * T + 2] = i % 2 ? NAN : 0.0f; /* one class (negatives only) */
    }
    mm_class_metrics m;
    double roc[T], pr[T];
    assert_int_equal(mm_metrics_classification(s, y, N, T, &m, roc, pr), MM_OK);
    assert_int_equal(m.n_tasks, T);
    assert_int_equal(m.n_skipped, 1);
    assert_true(isnan(roc[2]) && isnan(pr[2]));
    /* task 1 on its present rows only, as a plain array */
    float s1[N], y1[N];
    int k = 0;
    for (int i = 0; i < N; i++)
        if (!isnan(y[i * T + 1])) {
            s1[k] = s[i * T + 1];
            y1[k++] = y[i * T + 1];
        }
    double a1, p1, a0, p0;
    assert_int_equal(mm_binary_metrics(s1, y1, k, 1, &a1, &p1), MM_OK);
    assert_int_equal(mm_binary_metrics(s, y, N, T, &a0, &p0), MM_OK);
    assert_true(a1 == roc[1] && p1 == pr[1] && a0 == roc[0]);
    assert_true(fabs(m.roc_auc - (roc[0] + roc[1]) / 2) < 1e-15);
    assert_true(fabs(m.pr_auc - (pr[0] + pr[1]) / 2) < 1e-15);
    assert_int_equal(m.n_labels, N + k + N / 2);
    /* every task one class: NaN mean, all skipped */
    float yy[N * T];
    for (int i = 0; i < N * T; i++) yy[i] = 1.0f;
    assert_int_equal(mm_metrics_classification(s, yy, N, T, &m, NULL, NULL), MM_OK);
    assert_int_equal(m.n_skipped, T);
    assert_true(isnan(m.roc_auc));
}

static void test_regression(void **state)
{
    (void)state;
    /* task 0: errors 1, -2, 2 -> RMSE sqrt(3), MAE 5/3; task 1: one target, error 0.5;
     * task 2: no target (skipped) */
    float p[3 * 3] = {1, 0.5f, 0, 3, 7, 0, 5, 9, 0};
    float y[3 * 3] = {0, 0, NAN, 5, NAN, NAN, 3, NAN, NAN};
    mm_reg_metrics m;
    double rm[3];
    assert_int_equal(mm_metrics_regression(p, y, 3, 3, &m, rm), MM_OK);
    assert_true(fabs(rm[0] - sqrt(3.0)) < 1e-12);
    assert_true(fabs(rm[1] - 0.5) < 1e-12);
    assert_true(isnan(rm[2]));
    assert_int_equal(m.n_skipped, 1);
    assert_int_equal(m.n_labels, 4);
    assert_true(fabs(m.rmse - (sqrt(3.0) + 0.5) / 2) < 1e-12);
    assert_true(fabs(m.mae - (5.0 / 3 + 0.5) / 2) < 1e-12);
}

static void test_bad_input(void **state)
{
    (void)state;
    float s[3] = {0.1f, 0.2f, 0.3f}, y[3] = {0, 2, 1};
    double auc;
    assert_int_equal(mm_binary_metrics(s, y, 3, 1, &auc, NULL), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "row 1"));
    mm_error_clear();
    float sn[3] = {0.1f, NAN, 0.3f}, yn[3] = {0, 1, 1};
    assert_int_equal(mm_binary_metrics(sn, yn, 3, 1, &auc, NULL), MM_ERR_NUMERIC);
    mm_error_clear();
    /* a NaN score where the label is missing is ignored */
    float ym[3] = {0, NAN, 1};
    assert_int_equal(mm_binary_metrics(sn, ym, 3, 1, &auc, NULL), MM_OK);
    assert_true(auc == 1.0);
    float p[2] = {INFINITY, 1}, t[2] = {1, 2};
    mm_reg_metrics m;
    assert_int_equal(mm_metrics_regression(p, t, 2, 1, &m, NULL), MM_ERR_NUMERIC);
    mm_error_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_against_sklearn),
        cmocka_unit_test(test_multitask_mask_and_skip),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
