/* Gradient and value tests for loss.h. Expected values are worked out by hand in the
 * comments (closed forms of logsumexp for two or three terms), not recomputed by a
 * second implementation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/index_ops.h"
#include "mmsa/loss.h"
#include "mmsa/ops.h"

#define IN(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, true})
#define IN_NOGRAD(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, false})

static void assert_arg_error(mm_status s, const char *what)
{
    assert_int_equal(s, MM_ERR_ARG);
    if (what && !strstr(mm_error_message(), what)) fail_msg("message '%s' lacks '%s'", mm_error_message(), what);
    mm_error_clear();
}

/* Rows of x [n, d] scaled to unit length, as the model's projection heads give them. */
static void normalise_rows(float *x, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / sqrt(s));
    }
}

/* ---- cross-entropy, hard targets ---------------------------------------------------- */

typedef struct { const int64_t *tgt; const float *w; } ce_arg;

static mm_status build_ce(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    ce_arg *a = ctx;
    static int64_t tg[16];
    static float w[16];
    int64_t n = in[0]->shape[0];
    memcpy(tg, a->tgt, (size_t)n * sizeof(int64_t));
    if (a->w) memcpy(w, a->w, (size_t)n * sizeof(float));
    mm_status st = mm_cross_entropy(t, in[0], tg, a->w ? w : NULL, out);
    for (int i = 0; i < 16; i++) { tg[i] = 0; w[i] = 0.0f; } /* the op keeps copies */
    return st;
}

static void test_cross_entropy_gradients(void **state)
{
    (void)state;
    float z[5 * 4];
    gc_fill_uniform(z, 20, -3, 3, 1);
    const int64_t tgt[5] = {3, 0, -1, 2, 0}; /* row 2 is masked: its -1 is never read */
    const float w[5] = {1.0f, 0.5f, 0.0f, 2.0f, 1.0f};
    ce_arg plain = {(const int64_t[]){3, 0, 1, 2, 0}, NULL}, weighted = {tgt, w};
    gc_input in[1] = {IN(z, 2, 5, 4)};
    assert_int_equal(gradcheck(build_ce, &plain, 1, in, NULL), 0);
    assert_int_equal(gradcheck(build_ce, &weighted, 1, in, NULL), 0);
    gc_input one[1] = {IN(z, 2, 1, 4)}; /* a batch of one row */
    assert_int_equal(gradcheck(build_ce, &plain, 1, one, NULL), 0);
}

static void test_cross_entropy_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* row 0: z = (1, 2, 3), target 2: CE = log(1 + e^-1 + e^-2) = 0.40760596
     * row 1: z = (0, 0, 0), target 0: CE = log 3 = 1.09861229 */
    float v[6] = {1, 2, 3, 0, 0, 0};
    const double ce0 = log(1 + exp(-1.0) + exp(-2.0)), ce1 = log(3.0);
    assert_float_equal(ce0, 0.40760596, 1e-8);
    mm_tensor *z, *y;
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 2, (int64_t[]){2, 3}, &z), MM_OK);
    const int64_t tg[2] = {2, 0};
    assert_int_equal(mm_cross_entropy(&t, z, tg, NULL, &y), MM_OK);
    assert_float_equal(y->data[0], (ce0 + ce1) / 2, 1e-6);
    /* weights 1 and 3: (ce0 + 3 ce1) / 4; a 0/1 mask keeps only row 1 */
    assert_int_equal(mm_cross_entropy(&t, z, tg, (const float[]){1, 3}, &y), MM_OK);
    assert_float_equal(y->data[0], (ce0 + 3 * ce1) / 4, 1e-6);
    assert_int_equal(mm_cross_entropy(&t, z, (const int64_t[]){-5, 0}, (const float[]){0, 1}, &y), MM_OK);
    assert_float_equal(y->data[0], ce1, 1e-6);
    /* errors name the row */
    assert_arg_error(mm_cross_entropy(&t, z, (const int64_t[]){0, 3}, NULL, &y), "targets[1] = 3");
    assert_arg_error(mm_cross_entropy(&t, z, tg, (const float[]){1, -1}, &y), "row_weight[1]");
    mm_tape_destroy(&t);
}

static void test_cross_entropy_large_logits_and_all_masked(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* z = (1000, 0, -1000), target 1: CE = 1000 (+ e^-1000), gradient (1, -1, 0) */
    float v[3] = {1000.0f, 0.0f, -1000.0f}, g[3] = {0};
    mm_tensor *z, *y;
    assert_int_equal(mm_tensor_wrap(&t, v, g, 2, (int64_t[]){1, 3}, &z), MM_OK);
    assert_int_equal(mm_cross_entropy(&t, z, (const int64_t[]){1}, NULL, &y), MM_OK);
    assert_true(isfinite(y->data[0]));
    assert_float_equal(y->data[0], 1000.0f, 1e-3);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    assert_float_equal(g[0], 1.0f, 1e-6);
    assert_float_equal(g[1], -1.0f, 1e-6);
    assert_float_equal(g[2], 0.0f, 1e-6);
    /* every row masked: loss 0 and gradient 0, not NaN */
    assert_int_equal(mm_tape_reset(&t), MM_OK);
    memset(g, 0, sizeof g);
    assert_int_equal(mm_tensor_wrap(&t, v, g, 2, (int64_t[]){1, 3}, &z), MM_OK);
    assert_int_equal(mm_cross_entropy(&t, z, (const int64_t[]){-1}, (const float[]){0}, &y), MM_OK);
    assert_float_equal(y->data[0], 0.0f, 0);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    for (int i = 0; i < 3; i++) assert_float_equal(g[i], 0.0f, 0);
    mm_tape_destroy(&t);
}

/* ---- cross-entropy, soft targets ------------------------------------------------------- */

static mm_status build_soft_ce(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_cross_entropy_soft(t, in[0], in[1], out);
}

static void test_soft_cross_entropy(void **state)
{
    (void)state;
    float z[4 * 3], q[4 * 3];
    gc_fill_uniform(z, 12, -3, 3, 2);
    gc_fill_uniform(q, 12, 0.05f, 1, 3);
    /* gradient into both the logits and the targets (rows of q need not sum to 1) */
    gc_input in[2] = {IN(z, 2, 4, 3), IN(q, 2, 4, 3)};
    assert_int_equal(gradcheck(build_soft_ce, NULL, 2, in, NULL), 0);
    gc_input onlyz[2] = {IN(z, 2, 4, 3), IN_NOGRAD(q, 2, 4, 3)};
    assert_int_equal(gradcheck(build_soft_ce, NULL, 2, onlyz, NULL), 0);
    gc_input one[2] = {IN(z, 2, 1, 3), IN(q, 2, 1, 3)};
    assert_int_equal(gradcheck(build_soft_ce, NULL, 2, one, NULL), 0);

    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* z = (0, 0): any q summing to 1 gives log 2. z = (1000, 0), q = (0.25, 0.75):
     * log p = (-e^-1000, -1000) -> CE = 750. */
    float zv[4] = {0, 0, 1000, 0}, qv[4] = {0.3f, 0.7f, 0.25f, 0.75f};
    mm_tensor *Z, *Q, *y;
    assert_int_equal(mm_tensor_wrap(&t, zv, NULL, 2, (int64_t[]){1, 2}, &Z), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, qv, NULL, 2, (int64_t[]){1, 2}, &Q), MM_OK);
    assert_int_equal(mm_cross_entropy_soft(&t, Z, Q, &y), MM_OK);
    assert_float_equal(y->data[0], log(2.0), 1e-6);
    assert_int_equal(mm_tensor_wrap(&t, zv + 2, NULL, 2, (int64_t[]){1, 2}, &Z), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, qv + 2, NULL, 2, (int64_t[]){1, 2}, &Q), MM_OK);
    assert_int_equal(mm_cross_entropy_soft(&t, Z, Q, &y), MM_OK);
    assert_float_equal(y->data[0], 750.0f, 1e-3);
    /* a one-hot q equals the hard-target cross-entropy */
    float z3[3] = {1, 2, 3}, oh[3] = {0, 0, 1};
    mm_tensor *y2;
    assert_int_equal(mm_tensor_wrap(&t, z3, NULL, 2, (int64_t[]){1, 3}, &Z), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, oh, NULL, 2, (int64_t[]){1, 3}, &Q), MM_OK);
    assert_int_equal(mm_cross_entropy_soft(&t, Z, Q, &y), MM_OK);
    assert_int_equal(mm_cross_entropy(&t, Z, (const int64_t[]){2}, NULL, &y2), MM_OK);
    assert_float_equal(y->data[0], y2->data[0], 1e-6);
    mm_tensor *Q2;
    assert_int_equal(mm_tensor_wrap(&t, qv, NULL, 2, (int64_t[]){1, 2}, &Q2), MM_OK);
    assert_arg_error(mm_cross_entropy_soft(&t, Z, Q2, &y), "[1, 3] and [1, 2]");
    mm_tape_destroy(&t);
}

/* ---- MSE -------------------------------------------------------------------------------- */

static mm_status build_mse(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    if (!ctx) return mm_mse(t, in[0], in[1], out);
    static uint8_t m[16];
    memcpy(m, ctx, (size_t)in[0]->shape[0]);
    mm_status st = mm_mse_masked(t, in[0], in[1], m, out);
    memset(m, 0, sizeof m);
    return st;
}

static void test_mse_gradients(void **state)
{
    (void)state;
    float a[4 * 3], b[4 * 3];
    gc_fill_uniform(a, 12, -2, 2, 4);
    gc_fill_uniform(b, 12, -2, 2, 5);
    gc_input in[2] = {IN(a, 2, 4, 3), IN(b, 2, 4, 3)};
    assert_int_equal(gradcheck(build_mse, NULL, 2, in, NULL), 0);
    static const uint8_t mask[4] = {1, 0, 1, 1};
    assert_int_equal(gradcheck(build_mse, (void *)mask, 2, in, NULL), 0);
    static const uint8_t none[4] = {0, 0, 0, 0};
    assert_int_equal(gradcheck(build_mse, (void *)none, 2, in, NULL), 0);
    gc_input one[2] = {IN(a, 2, 1, 3), IN(b, 2, 1, 3)};
    assert_int_equal(gradcheck(build_mse, NULL, 2, one, NULL), 0);
}

static void test_mse_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* a - b = (1, 0 | -2, 0 | 3, 1): squares 1, 0 | 4, 0 | 9, 1 */
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {0, 2, 5, 4, 2, 5};
    float ga[6] = {0}, gb[6] = {0};
    mm_tensor *a, *b, *y;
    assert_int_equal(mm_tensor_wrap(&t, av, ga, 2, (int64_t[]){3, 2}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, bv, gb, 2, (int64_t[]){3, 2}, &b), MM_OK);
    assert_int_equal(mm_mse(&t, a, b, &y), MM_OK);
    assert_float_equal(y->data[0], 15.0 / 6.0, 1e-6);
    /* rows 0 and 2 present: per-row means 0.5 and 5, their mean 2.75 */
    assert_int_equal(mm_mse_masked(&t, a, b, (const uint8_t[]){1, 0, 1}, &y), MM_OK);
    assert_float_equal(y->data[0], 2.75, 1e-6);
    /* gradient: 2 (a - b) / (2 rows * 2 cols) on present rows, the negative to b */
    assert_int_equal(mm_tape_reset(&t), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, av, ga, 2, (int64_t[]){3, 2}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, bv, gb, 2, (int64_t[]){3, 2}, &b), MM_OK);
    assert_int_equal(mm_mse_masked(&t, a, b, (const uint8_t[]){1, 0, 1}, &y), MM_OK);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    const float want[6] = {0.5f, 0, 0, 0, 1.5f, 0.5f};
    for (int i = 0; i < 6; i++) {
        assert_float_equal(ga[i], want[i], 1e-6);
        assert_float_equal(gb[i], -want[i], 1e-6);
    }
    assert_int_equal(mm_mse_masked(&t, a, b, (const uint8_t[]){0, 0, 0}, &y), MM_OK);
    assert_float_equal(y->data[0], 0.0f, 0);
    mm_tensor *c;
    assert_int_equal(mm_tensor_wrap(&t, bv, NULL, 2, (int64_t[]){2, 3}, &c), MM_OK);
    assert_arg_error(mm_mse(&t, a, c, &y), "[3, 2] and [2, 3]");
    mm_tape_destroy(&t);
}

/* ---- BCE with logits, NaN = missing -------------------------------------------------------- */

typedef struct { float *labels; int64_t n, T; } bce_arg;

static mm_status build_bce(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    bce_arg *a = ctx;
    mm_tensor *y;
    MM_CALL(mm_tensor_wrap(t, a->labels, NULL, 2, (int64_t[]){a->n, a->T}, &y));
    return mm_bce_logits_masked(t, in[0], y, out);
}

static void test_bce_gradients(void **state)
{
    (void)state;
    float z[4 * 3];
    gc_fill_uniform(z, 12, -3, 3, 6);
    /* task 1 is missing for every molecule; others partly */
    float lab[12] = {1, NAN, 0, 0, NAN, NAN, 1, NAN, 1, NAN, NAN, 0};
    bce_arg a = {lab, 4, 3};
    gc_input in[1] = {IN(z, 2, 4, 3)};
    assert_int_equal(gradcheck(build_bce, &a, 1, in, NULL), 0);
    /* soft labels in (0, 1) are allowed */
    float soft[12];
    gc_fill_uniform(soft, 12, 0, 1, 7);
    bce_arg s = {soft, 4, 3};
    assert_int_equal(gradcheck(build_bce, &s, 1, in, NULL), 0);
    bce_arg one = {lab, 1, 3};
    gc_input in1[1] = {IN(z, 2, 1, 3)};
    assert_int_equal(gradcheck(build_bce, &one, 1, in1, NULL), 0);
}

static void test_bce_values_and_all_missing(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* (z, y): (0, 1) -> log 2; (2, 0) -> 2 + log(1 + e^-2); (-3, 1) -> 3 + log(1 + e^-3);
     * (1000, 0) -> 1000; (x, NaN) skipped. */
    float zv[6] = {0, 2, 7, -3, 1000, 5}, yv[6] = {1, 0, NAN, 1, 0, NAN}, g[6] = {0};
    mm_tensor *z, *lab, *y;
    assert_int_equal(mm_tensor_wrap(&t, zv, g, 2, (int64_t[]){2, 3}, &z), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, yv, NULL, 2, (int64_t[]){2, 3}, &lab), MM_OK);
    assert_int_equal(mm_bce_logits_masked(&t, z, lab, &y), MM_OK);
    double want = (log(2.0) + 2 + log1p(exp(-2.0)) + 3 + log1p(exp(-3.0)) + 1000) / 4;
    assert_float_equal(y->data[0], want, 1e-4);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    /* dz = (sigmoid(z) - y) / 4 on present entries */
    assert_float_equal(g[0], (0.5 - 1) / 4, 1e-6);
    assert_float_equal(g[2], 0.0f, 0);
    assert_float_equal(g[3], (1 / (1 + exp(3.0)) - 1) / 4, 1e-6);
    assert_float_equal(g[4], 0.25f, 1e-6);
    assert_float_equal(g[5], 0.0f, 0);
    /* a batch whose labels are all missing: loss 0, gradient 0, nothing NaN */
    assert_int_equal(mm_tape_reset(&t), MM_OK);
    memset(g, 0, sizeof g);
    float nan6[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    assert_int_equal(mm_tensor_wrap(&t, zv, g, 2, (int64_t[]){2, 3}, &z), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, nan6, NULL, 2, (int64_t[]){2, 3}, &lab), MM_OK);
    assert_int_equal(mm_bce_logits_masked(&t, z, lab, &y), MM_OK);
    assert_float_equal(y->data[0], 0.0f, 0);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 0.0f, 0);
    assert_int_equal(mm_tensor_wrap(&t, nan6, NULL, 2, (int64_t[]){3, 2}, &lab), MM_OK);
    assert_arg_error(mm_bce_logits_masked(&t, z, lab, &y), "bce_logits_masked");
    mm_tape_destroy(&t);
}

/* ---- symmetric InfoNCE ------------------------------------------------------------------------ */

static mm_status build_nce(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    float tau = *(float *)ctx;
    return mm_info_nce(t, in[0], in[1], tau, out);
}

static mm_status build_nce_self(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_info_nce(t, in[0], in[0], 0.5f, out);
}

/* InfoNCE on raw rows, normalised inside the graph as the model does. */
static mm_status build_nce_normalised(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    mm_tensor *a, *b;
    MM_CALL(mm_l2_normalize(t, in[0], 1e-12f, &a));
    MM_CALL(mm_l2_normalize(t, in[1], 1e-12f, &b));
    return mm_info_nce(t, a, b, 0.1f, out);
}

static void test_info_nce_gradients(void **state)
{
    (void)state;
    float a[6 * 4], b[6 * 4];
    gc_fill_uniform(a, 24, -1, 1, 8);
    gc_fill_uniform(b, 24, -1, 1, 9);
    normalise_rows(a, 6, 4);
    normalise_rows(b, 6, 4);
    float tau = 0.1f;
    gc_input in[2] = {IN(a, 2, 6, 4), IN(b, 2, 6, 4)};
    assert_int_equal(gradcheck(build_nce, &tau, 2, in, NULL), 0);
    tau = 1.0f;
    gc_input two[2] = {IN(a, 2, 2, 4), IN_NOGRAD(b, 2, 2, 4)};
    assert_int_equal(gradcheck(build_nce, &tau, 2, two, NULL), 0);
    gc_input self[1] = {IN(a, 2, 5, 4)};
    assert_int_equal(gradcheck(build_nce_self, NULL, 1, self, NULL), 0);
    gc_fill_uniform(a, 24, -1, 1, 10);
    gc_fill_uniform(b, 24, -1, 1, 11);
    gc_input raw[2] = {IN(a, 2, 6, 4), IN(b, 2, 6, 4)};
    assert_int_equal(gradcheck(build_nce_normalised, NULL, 2, raw, NULL), 0);
}

static void test_info_nce_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* a = (1,0),(0,1); b = (1,0),(0.6,0.8); tau = 0.5: S = [[2, 1.2], [0, 1.6]].
     * rows: log(1+e^-0.8), log(1+e^-1.6); columns: log(1+e^-2), log(1+e^-0.4). */
    float av[4] = {1, 0, 0, 1}, bv[4] = {1, 0, 0.6f, 0.8f};
    mm_tensor *a, *b, *y, *y2;
    assert_int_equal(mm_tensor_wrap(&t, av, NULL, 2, (int64_t[]){2, 2}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, bv, NULL, 2, (int64_t[]){2, 2}, &b), MM_OK);
    assert_int_equal(mm_info_nce(&t, a, b, 0.5f, &y), MM_OK);
    double lrow = (log1p(exp(-0.8)) + log1p(exp(-1.6))) / 2;
    double lcol = (log1p(exp(-2.0)) + log1p(exp(-0.4))) / 2;
    assert_float_equal(y->data[0], (lrow + lcol) / 2, 1e-6);
    assert_float_equal(y->data[0], 0.29873617, 1e-6); /* 0.371101 + 0.183901 + 0.126928 + 0.513015, over 4 */
    /* symmetric in its arguments */
    assert_int_equal(mm_info_nce(&t, b, a, 0.5f, &y2), MM_OK);
    assert_float_equal(y->data[0], y2->data[0], 1e-6);
    /* n = 3, a = b = identity rows, tau = 1: S = I, every row and column gives
     * log(e + 2) - 1 */
    float id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    assert_int_equal(mm_tensor_wrap(&t, id, NULL, 2, (int64_t[]){3, 3}, &a), MM_OK);
    assert_int_equal(mm_info_nce(&t, a, a, 1.0f, &y), MM_OK);
    assert_float_equal(y->data[0], log(exp(1.0) + 2) - 1, 1e-6);
    assert_arg_error(mm_info_nce(&t, a, a, 0.0f, &y), "temperature");
    mm_tape_destroy(&t);
}

static void test_info_nce_single_pair_is_zero(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    float av[3] = {0.6f, 0.8f, 0}, bv[3] = {0, 1, 0}, ga[3] = {0}, gb[3] = {0};
    mm_tensor *a, *b, *y;
    assert_int_equal(mm_tensor_wrap(&t, av, ga, 2, (int64_t[]){1, 3}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, bv, gb, 2, (int64_t[]){1, 3}, &b), MM_OK);
    assert_int_equal(mm_info_nce(&t, a, b, 0.1f, &y), MM_OK);
    assert_float_equal(y->data[0], 0.0f, 0);
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    for (int i = 0; i < 3; i++) {
        assert_float_equal(ga[i], 0.0f, 0);
        assert_float_equal(gb[i], 0.0f, 0);
    }
    mm_tape_destroy(&t);
}

/* ---- ACML CLIP loss with soft targets ----------------------------------------------------------- */

typedef struct { const float *targets; int64_t n; float tau; } clip_arg;

/* The loss for FIXED targets (computed once from the unperturbed U, G), so finite
 * differences see exactly what the detached analytic gradient describes. */
static mm_status build_clip_given(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    clip_arg *a = ctx;
    mm_tensor *tg;
    MM_CALL(mm_tensor_wrap(t, (float *)a->targets, NULL, 2, (int64_t[]){a->n, a->n}, &tg));
    return mm_clip_soft_loss_given(t, in[0], in[1], tg, a->tau, out);
}

static void test_clip_soft_loss_gradients(void **state)
{
    (void)state;
    enum { N = 5, D = 4 };
    float u[N * D], g[N * D], tg[N * N];
    gc_fill_uniform(u, N * D, -1, 1, 12);
    gc_fill_uniform(g, N * D, -1, 1, 13);
    normalise_rows(u, N, D);
    normalise_rows(g, N, D);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *U, *G, *T;
    assert_int_equal(mm_tensor_wrap(&t, u, NULL, 2, (int64_t[]){N, D}, &U), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, g, NULL, 2, (int64_t[]){N, D}, &G), MM_OK);
    assert_int_equal(mm_clip_soft_targets(&t, U, G, 0.1f, &T), MM_OK);
    assert_null(T->grad);
    memcpy(tg, T->data, sizeof tg);
    mm_tape_destroy(&t);
    clip_arg a = {tg, N, 0.1f};
    gc_input in[2] = {IN(u, 2, N, D), IN(g, 2, N, D)};
    assert_int_equal(gradcheck(build_clip_given, &a, 2, in, NULL), 0);
    /* targets whose columns do not sum to 1 exercise the general soft form */
    float skew[N * N];
    gc_fill_uniform(skew, N * N, 0, 1, 14);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < N; j++) s += skew[i * N + j];
        for (int j = 0; j < N; j++) skew[i * N + j] = (float)(skew[i * N + j] / s);
    }
    clip_arg b = {skew, N, 0.5f};
    assert_int_equal(gradcheck(build_clip_given, &b, 2, in, NULL), 0);
    float one = 1.0f;
    clip_arg c = {&one, 1, 0.1f};
    gc_input in1[2] = {IN(u, 2, 1, D), IN(g, 2, 1, D)};
    assert_int_equal(gradcheck(build_clip_given, &c, 2, in1, NULL), 0);
}

/* ACML's loss with the targets NOT detached (DESIGN 3b): T = softmax_rows(tau (U U^T +
 * G G^T) / 2) built from U and G on the tape, so the gradient flows through T too; and
 * targets given as an input of their own, so dL/dT is checked directly. */
static mm_status build_clip_through_targets(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    float tau = *(float *)ctx;
    mm_tensor *uu, *gg, *s, *a, *tg;
    MM_CALL(mm_matmul(t, in[0], false, in[0], true, &uu));
    MM_CALL(mm_matmul(t, in[1], false, in[1], true, &gg));
    MM_CALL(mm_add(t, uu, gg, &s));
    MM_CALL(mm_affine(t, s, 0.5f * tau, 0.0f, &a));
    MM_CALL(mm_softmax(t, a, &tg));
    return mm_clip_soft_loss_rows(t, in[0], in[1], 0, tg, tau, NULL, out);
}

static mm_status build_clip_target_input(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    float tau = *(float *)ctx;
    return mm_clip_soft_loss_rows(t, in[0], in[1], 0, in[2], tau, NULL, out);
}

static void test_clip_soft_loss_gradient_through_targets(void **state)
{
    (void)state;
    enum { N = 5, D = 4 };
    float u[N * D], g[N * D], tg[N * N];
    gc_fill_uniform(u, N * D, -1, 1, 21);
    gc_fill_uniform(g, N * D, -1, 1, 22);
    float tau = 0.7f;
    gc_input in[2] = {IN(u, 2, N, D), IN(g, 2, N, D)};
    assert_int_equal(gradcheck(build_clip_through_targets, &tau, 2, in, NULL), 0);
    gc_fill_uniform(tg, N * N, 0.05f, 1, 23);
    gc_input in3[3] = {IN(u, 2, N, D), IN(g, 2, N, D), IN(tg, 2, N, N)};
    assert_int_equal(gradcheck(build_clip_target_input, &tau, 3, in3, NULL), 0);
}

static void test_clip_soft_loss_detached_targets(void **state)
{
    (void)state;
    enum { N = 4, D = 3 };
    float u[N * D], g[N * D];
    gc_fill_uniform(u, N * D, -1, 1, 15);
    gc_fill_uniform(g, N * D, -1, 1, 16);
    normalise_rows(u, N, D);
    normalise_rows(g, N, D);
    float gu1[N * D] = {0}, gg1[N * D] = {0}, gu2[N * D] = {0}, gg2[N * D] = {0};
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *U, *G, *T, *y1, *y2;
    /* the full loss ... */
    assert_int_equal(mm_tensor_wrap(&t, u, gu1, 2, (int64_t[]){N, D}, &U), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, g, gg1, 2, (int64_t[]){N, D}, &G), MM_OK);
    assert_int_equal(mm_clip_soft_loss(&t, U, G, 0.1f, &y1), MM_OK);
    assert_int_equal(mm_tape_backward(&t, y1), MM_OK);
    float v1 = y1->data[0];
    /* ... equals the loss with the targets as given constants, gradient included:
     * nothing flows through the targets */
    assert_int_equal(mm_tape_reset(&t), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, u, gu2, 2, (int64_t[]){N, D}, &U), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, g, gg2, 2, (int64_t[]){N, D}, &G), MM_OK);
    assert_int_equal(mm_clip_soft_targets(&t, U, G, 0.1f, &T), MM_OK);
    assert_int_equal(mm_clip_soft_loss_given(&t, U, G, T, 0.1f, &y2), MM_OK);
    assert_int_equal(t.n_nodes, 1);
    assert_int_equal(mm_tape_backward(&t, y2), MM_OK);
    assert_float_equal(v1, y2->data[0], 0);
    for (int i = 0; i < N * D; i++) {
        assert_float_equal(gu1[i], gu2[i], 0);
        assert_float_equal(gg1[i], gg2[i], 0);
    }
    mm_tape_destroy(&t);
}

static void test_clip_soft_loss_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* U = (1,0),(0,1); G = (1,0),(0.6,0.8); tau = 0.5.
     * (UU^T + GG^T)/2 * tau = [[0.5, 0.15], [0.15, 0.5]] -> targets
     *   T = [[p, q], [q, p]], p = sigmoid(0.35), q = 1 - p.
     * logits = U G^T / tau = [[2, 1.2], [0, 1.6]].
     * rows: row 0 CE = l1 + 0.8 q, l1 = log(1+e^-0.8); row 1 CE = l2 + 1.6 q, l2 = log(1+e^-1.6)
     * cols: col 0 CE = c1 + 2 q, c1 = log(1+e^-2); col 1 CE = c2 + 0.4 q, c2 = log(1+e^-0.4) */
    float uv[4] = {1, 0, 0, 1}, gv[4] = {1, 0, 0.6f, 0.8f};
    mm_tensor *U, *G, *T, *y;
    assert_int_equal(mm_tensor_wrap(&t, uv, NULL, 2, (int64_t[]){2, 2}, &U), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, gv, NULL, 2, (int64_t[]){2, 2}, &G), MM_OK);
    double p = 1 / (1 + exp(-0.35)), q = 1 - p;
    assert_int_equal(mm_clip_soft_targets(&t, U, G, 0.5f, &T), MM_OK);
    assert_float_equal(T->data[0], p, 1e-6);
    assert_float_equal(T->data[1], q, 1e-6);
    assert_float_equal(T->data[2], q, 1e-6);
    assert_float_equal(T->data[3], p, 1e-6);
    assert_int_equal(mm_clip_soft_loss(&t, U, G, 0.5f, &y), MM_OK);
    double rows = (log1p(exp(-0.8)) + 0.8 * q + log1p(exp(-1.6)) + 1.6 * q) / 2;
    double cols = (log1p(exp(-2.0)) + 2 * q + log1p(exp(-0.4)) + 0.4 * q) / 2;
    assert_float_equal(y->data[0], (rows + cols) / 2, 1e-6);
    mm_tape_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_entropy_gradients),
        cmocka_unit_test(test_cross_entropy_values),
        cmocka_unit_test(test_cross_entropy_large_logits_and_all_masked),
        cmocka_unit_test(test_soft_cross_entropy),
        cmocka_unit_test(test_mse_gradients),
        cmocka_unit_test(test_mse_values),
        cmocka_unit_test(test_bce_gradients),
        cmocka_unit_test(test_bce_values_and_all_missing),
        cmocka_unit_test(test_info_nce_gradients),
        cmocka_unit_test(test_info_nce_values),
        cmocka_unit_test(test_info_nce_single_pair_is_zero),
        cmocka_unit_test(test_clip_soft_loss_gradients),
        cmocka_unit_test(test_clip_soft_loss_gradient_through_targets),
        cmocka_unit_test(test_clip_soft_loss_detached_targets),
        cmocka_unit_test(test_clip_soft_loss_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
