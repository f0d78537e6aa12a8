/* Gradient and value tests for nn.h: LayerNorm, BatchNorm, dropout, multi-table
 * embedding, conv2d (NCHW and channels last), conv1d, global average pooling. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/nn.h"
#include "mmsa/rng.h"
#include "testutil.h"

#define IN(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, true})

static mm_tensor *wrap(mm_tape *t, float *data, float *grad, int nd, const int64_t *shape)
{
    mm_tensor *x = NULL;
    assert_int_equal(mm_tensor_wrap(t, data, grad, nd, shape, &x), MM_OK);
    return x;
}

/* ---- LayerNorm ---------------------------------------------------------------- */

typedef struct { int norm_dims; bool affine; } ln_args;

static mm_status build_ln(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    ln_args *a = ctx;
    return mm_layernorm(t, in[0], a->norm_dims, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL,
                        1e-5f, out);
}

static void test_layernorm_grad(void **state)
{
    (void)state;
    float x[4 * 6], g[6], b[6];
    gc_fill_uniform(x, 24, -2, 2, 11);
    gc_fill_uniform(g, 6, 0.5f, 1.5f, 12);
    gc_fill_uniform(b, 6, -1, 1, 13);
    ln_args a = {1, true};
    gc_input in[3] = {IN(x, 2, 4, 6), IN(g, 1, 6), IN(b, 1, 6)};
    assert_int_equal(gradcheck(build_ln, &a, 3, in, NULL), 0);
    /* batch of one row */
    gc_input one[3] = {IN(x, 2, 1, 6), IN(g, 1, 6), IN(b, 1, 6)};
    assert_int_equal(gradcheck(build_ln, &a, 3, one, NULL), 0);
    /* no affine parameters */
    ln_args na = {1, false};
    assert_int_equal(gradcheck(build_ln, &na, 1, in, NULL), 0);
    /* over the last two dimensions of [2, 3, 4]: 2 rows of 12 */
    float g12[12], b12[12];
    gc_fill_uniform(g12, 12, 0.5f, 1.5f, 14);
    gc_fill_uniform(b12, 12, -1, 1, 15);
    ln_args a2 = {2, true};
    gc_input in3[3] = {IN(x, 3, 2, 3, 4), IN(g12, 2, 3, 4), IN(b12, 2, 3, 4)};
    assert_int_equal(gradcheck(build_ln, &a2, 3, in3, NULL), 0);
}

static void test_layernorm_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* rows {1,2,3,4} and {-2,0,2,4}: means 2.5 and 1, variances 1.25 and 5 */
    float x[8] = {1, 2, 3, 4, -2, 0, 2, 4}, g[4] = {1, 2, 1, 1}, b[4] = {0, 0, 1, 0};
    mm_tensor *y;
    assert_int_equal(mm_layernorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){2, 4}), 1,
                                  wrap(&t, g, NULL, 1, (int64_t[]){4}), wrap(&t, b, NULL, 1, (int64_t[]){4}),
                                  1e-5f, &y),
                     MM_OK);
    double s0 = sqrt(1.25 + 1e-5), s1 = sqrt(5.0 + 1e-5);
    double want[8] = {-1.5 / s0, 2 * -0.5 / s0, 0.5 / s0 + 1, 1.5 / s0,
                      -3 / s1,   2 * -1 / s1,   1 / s1 + 1,   3 / s1};
    for (int i = 0; i < 8; i++) assert_float_equal(y->data[i], want[i], 1e-6);
    /* gamma of the wrong length */
    assert_int_equal(mm_layernorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){2, 4}), 1,
                                  wrap(&t, g, NULL, 1, (int64_t[]){3}), NULL, 1e-5f, &y),
                     MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* ---- BatchNorm ---------------------------------------------------------------- */

typedef struct {
    bool affine;
    bool eval;
    float *rm, *rv;      /* running stats for eval mode */
    bool wrong_backward; /* see test_batchnorm_gradcheck_is_discriminating */
} bn_args;

static mm_status build_bn(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    bn_args *a = ctx;
    t->training = !a->eval;
    if (a->wrong_backward && t->grad_enabled) t->training = false;
    mm_tensor *g = a->affine ? in[1] : NULL, *b = a->affine ? in[2] : NULL;
    return mm_batchnorm(t, in[0], g, b, t->training ? NULL : a->rm, t->training ? NULL : a->rv, 0.1f,
                        1e-5f, out);
}

static void test_batchnorm1d_grad(void **state)
{
    (void)state;
    float x[6 * 3], g[3], b[3];
    gc_fill_uniform(x, 18, -2, 2, 21);
    gc_fill_uniform(g, 3, 0.5f, 1.5f, 22);
    gc_fill_uniform(b, 3, -1, 1, 23);
    bn_args a = {.affine = true};
    gc_input in[3] = {IN(x, 2, 6, 3), IN(g, 1, 3), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_bn, &a, 3, in, NULL), 0);
    bn_args na = {.affine = false};
    assert_int_equal(gradcheck(build_bn, &na, 1, in, NULL), 0);
    /* smallest batch that has a variance: two rows */
    gc_input two[3] = {IN(x, 2, 2, 3), IN(g, 1, 3), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_bn, &a, 3, two, NULL), 0);
}

static void test_batchnorm2d_grad(void **state)
{
    (void)state;
    float x[3 * 2 * 3 * 3], g[2], b[2];
    gc_fill_uniform(x, 54, -2, 2, 24);
    gc_fill_uniform(g, 2, 0.5f, 1.5f, 25);
    gc_fill_uniform(b, 2, -1, 1, 26);
    bn_args a = {.affine = true};
    gc_input in[3] = {IN(x, 4, 3, 2, 3, 3), IN(g, 1, 2), IN(b, 1, 2)};
    assert_int_equal(gradcheck(build_bn, &a, 3, in, NULL), 0);
    /* a single image: statistics over H*W only */
    gc_input one[3] = {IN(x, 4, 1, 2, 3, 3), IN(g, 1, 2), IN(b, 1, 2)};
    assert_int_equal(gradcheck(build_bn, &a, 3, one, NULL), 0);
}

static void test_batchnorm_constant_channel(void **state)
{
    (void)state;
    /* channel 1 is constant: var 0, so 1/sqrt(eps) ~ 316 amplifies any
     * perturbation; the output stays finite and equals beta there. */
    float x[8 * 2], g[2] = {1.2f, 0.7f}, b[2] = {0.1f, -0.3f};
    gc_fill_uniform(x, 16, -2, 2, 27);
    for (int i = 0; i < 8; i++) x[i * 2 + 1] = 0.75f;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    float rm[2] = {0, 0}, rv[2] = {1, 1};
    mm_tensor *y;
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){8, 2}), wrap(&t, g, NULL, 1, (int64_t[]){2}),
                                  wrap(&t, b, NULL, 1, (int64_t[]){2}), rm, rv, 0.1f, 1e-5f, &y),
                     MM_OK);
    for (int i = 0; i < 8; i++) assert_float_equal(y->data[i * 2 + 1], -0.3f, 1e-5);
    assert_float_equal(rm[1], 0.075f, 1e-6);
    assert_float_equal(rv[1], 0.9f, 1e-6);
    mm_tape_destroy(&t);
    /* The derivative there is ~316 * gamma: a step of 1e-4 keeps the variance the
     * step creates (~h^2 / n) well below eps, so central differences stay accurate. */
    bn_args a = {.affine = true};
    gc_input in[3] = {IN(x, 2, 8, 2), IN(g, 1, 2), IN(b, 1, 2)};
    gc_opts o = {.h = 1e-4, .rtol = 1e-2, .atol = 1e-3};
    assert_int_equal(gradcheck(build_bn, &a, 3, in, &o), 0);
}

static void test_batchnorm_gradcheck_is_discriminating(void **state)
{
    (void)state;
    /* The analytic pass runs eval-mode BN with running stats equal to the batch's:
     * the same values, but a gradient that ignores the mean and variance paths.
     * The gradcheck of the training-mode function must reject it. */
    float x[6 * 3], g[3], b[3];
    gc_fill_uniform(x, 18, -2, 2, 21);
    gc_fill_uniform(g, 3, 0.5f, 1.5f, 22);
    gc_fill_uniform(b, 3, -1, 1, 23);
    float rm[3], rv[3];
    for (int c = 0; c < 3; c++) {
        double s = 0, ss = 0;
        for (int i = 0; i < 6; i++) s += x[i * 3 + c];
        for (int i = 0; i < 6; i++) ss += (x[i * 3 + c] - s / 6) * (x[i * 3 + c] - s / 6);
        rm[c] = (float)(s / 6);
        rv[c] = (float)(ss / 6);
    }
    bn_args a = {.affine = true, .rm = rm, .rv = rv, .wrong_backward = true};
    gc_input in[3] = {IN(x, 2, 6, 3), IN(g, 1, 3), IN(b, 1, 3)};
    in[1].grad = in[2].grad = false; /* gamma and beta gradients agree in both modes */
    int bad = gradcheck(build_bn, &a, 3, in, NULL);
    assert_true(bad > 9);
}

static void test_batchnorm_values_and_running_stats(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* [4, 2]: channel 0 = {1, 2, 3, 4} (mean 2.5, var 1.25), channel 1 = {0, 0, 2, 2}
     * (mean 1, var 1) */
    float x[8] = {1, 0, 2, 0, 3, 2, 4, 2}, g[2] = {2, 1}, b[2] = {0, 0.5f};
    float rm[2] = {0, 0}, rv[2] = {1, 1};
    mm_tensor *y;
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){4, 2}), wrap(&t, g, NULL, 1, (int64_t[]){2}),
                                  wrap(&t, b, NULL, 1, (int64_t[]){2}), rm, rv, 0.1f, 1e-5f, &y),
                     MM_OK);
    double s0 = sqrt(1.25 + 1e-5), s1 = sqrt(1 + 1e-5);
    double want[8] = {2 * -1.5 / s0, -1 / s1 + 0.5, 2 * -0.5 / s0, -1 / s1 + 0.5,
                      2 * 0.5 / s0,  1 / s1 + 0.5,  2 * 1.5 / s0,  1 / s1 + 0.5};
    for (int i = 0; i < 8; i++) assert_float_equal(y->data[i], want[i], 1e-5);
    /* running_var takes the unbiased variance: 1.25 * 4/3 and 1 * 4/3 */
    assert_float_equal(rm[0], 0.25f, 1e-6);
    assert_float_equal(rm[1], 0.1f, 1e-6);
    assert_float_equal(rv[0], 0.9f + 0.1f * 1.25f * 4 / 3, 1e-6);
    assert_float_equal(rv[1], 0.9f + 0.1f * 4.0f / 3, 1e-6);

    /* BatchNorm2d [2, 1, 1, 2]: one channel, n = 4 values {1, 2, 3, 4}, momentum 0.5 */
    float x2[4] = {1, 2, 3, 4}, rm2[1] = {1}, rv2[1] = {2};
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x2, NULL, 4, (int64_t[]){2, 1, 1, 2}), NULL, NULL, rm2, rv2, 0.5f,
                                  1e-5f, &y),
                     MM_OK);
    for (int i = 0; i < 4; i++) assert_float_equal(y->data[i], (x2[i] - 2.5) / s0, 1e-5);
    assert_float_equal(rm2[0], 0.5f * 1 + 0.5f * 2.5f, 1e-6);
    assert_float_equal(rv2[0], 0.5f * 2 + 0.5f * 1.25f * 4 / 3, 1e-6);

    /* a training batch with one value per channel has no variance: an error */
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){1, 2}), NULL, NULL, NULL, NULL, 0.1f,
                                  1e-5f, &y),
                     MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

static void test_batchnorm_eval_uses_running_stats(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    t.training = false;
    float x[6] = {1, -1, 2, 0, 3, 5}, g[2] = {2, 1}, b[2] = {0.5f, 0};
    float rm[2] = {1, 2}, rv[2] = {4, 0.25f};
    mm_tensor *y;
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){3, 2}), wrap(&t, g, NULL, 1, (int64_t[]){2}),
                                  wrap(&t, b, NULL, 1, (int64_t[]){2}), rm, rv, 0.1f, 1e-5f, &y),
                     MM_OK);
    for (int i = 0; i < 3; i++) {
        assert_float_equal(y->data[i * 2], (x[i * 2] - 1) / sqrt(4 + 1e-5) * 2 + 0.5, 1e-5);
        assert_float_equal(y->data[i * 2 + 1], (x[i * 2 + 1] - 2) / sqrt(0.25 + 1e-5), 1e-5);
    }
    /* eval mode leaves the running stats alone, works on a single row, and needs them */
    assert_float_equal(rm[0], 1, 0);
    assert_float_equal(rv[1], 0.25f, 0);
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){1, 2}), NULL, NULL, rm, rv, 0.1f, 1e-5f, &y),
                     MM_OK);
    assert_int_equal(mm_batchnorm(&t, wrap(&t, x, NULL, 2, (int64_t[]){3, 2}), NULL, NULL, NULL, NULL, 0.1f, 1e-5f, &y),
                     MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);

    /* eval-mode gradient: dy * gamma / sqrt(running_var + eps) */
    bn_args a = {.affine = true, .eval = true, .rm = rm, .rv = rv};
    float xg[5 * 2 * 2 * 2], gg[2] = {1.5f, -0.5f}, bb[2] = {0.2f, 0.1f};
    gc_fill_uniform(xg, 40, -2, 2, 28);
    gc_input in[3] = {IN(xg, 4, 5, 2, 2, 2), IN(gg, 1, 2), IN(bb, 1, 2)};
    assert_int_equal(gradcheck(build_bn, &a, 3, in, NULL), 0);
}

/* ---- dropout -------------------------------------------------------------------- */

typedef struct { float p; int64_t row_offset; } drop_args;

static mm_status build_dropout(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    drop_args *a = ctx;
    return mm_dropout(t, in[0], a->p, 42, MM_STREAM_DROPOUT + 3, a->row_offset, out);
}

static void test_dropout_mask_and_shards(void **state)
{
    (void)state;
    enum { R = 200, C = 500 };
    static float x[R * C];
    for (int i = 0; i < R * C; i++) x[i] = 1.0f + (float)(i % 7);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 22), MM_OK);
    const float p = 0.3f;
    mm_tensor *full, *shard;
    assert_int_equal(mm_dropout(&t, wrap(&t, x, NULL, 2, (int64_t[]){R, C}), p, 42, 9, 0, &full), MM_OK);
    int64_t kept = 0;
    for (int64_t i = 0; i < (int64_t)R * C; i++) {
        bool keep = mm_rng_uniform_at(42, 9, (uint64_t)i) >= p;
        assert_float_equal(full->data[i], keep ? x[i] / (1 - p) : 0.0f, 1e-6 * x[i]);
        kept += keep;
    }
    /* binomial: sd of the kept fraction is sqrt(p(1-p)/n) ~ 0.0014 */
    double frac = (double)kept / (R * C);
    assert_true(fabs(frac - (1 - p)) < 0.01);
    /* rows 37..136 as a shard with row_offset 37 draw the same mask */
    assert_int_equal(mm_dropout(&t, wrap(&t, x + 37 * C, NULL, 2, (int64_t[]){100, C}), p, 42, 9, 37, &shard),
                     MM_OK);
    assert_memory_equal(shard->data, full->data + 37 * C, 100 * C * sizeof(float));
    /* a different stream draws a different mask */
    mm_tensor *other;
    assert_int_equal(mm_dropout(&t, wrap(&t, x, NULL, 2, (int64_t[]){R, C}), p, 42, 10, 0, &other), MM_OK);
    assert_true(memcmp(other->data, full->data, sizeof x) != 0);
    /* identity (the same tensor) in eval mode and for p = 0; p outside [0, 1] is an error */
    mm_tensor *xt = wrap(&t, x, NULL, 2, (int64_t[]){R, C}), *y;
    assert_int_equal(mm_dropout(&t, xt, 0.0f, 42, 9, 0, &y), MM_OK);
    assert_ptr_equal(y, xt);
    t.training = false;
    assert_int_equal(mm_dropout(&t, xt, 0.5f, 42, 9, 0, &y), MM_OK);
    assert_ptr_equal(y, xt);
    t.training = true;
    assert_int_equal(mm_dropout(&t, xt, 1.5f, 42, 9, 0, &y), MM_ERR_ARG);
    mm_error_clear();
    /* p = 1 drops everything */
    assert_int_equal(mm_dropout(&t, xt, 1.0f, 42, 9, 0, &y), MM_OK);
    assert_true(tu_max_abs(y->data, (int64_t)R * C) == 0.0);
    mm_tape_destroy(&t);
}

/* Rows whose global element index does not start on a Philox block (cols 7, row_offset 3)
 * and a tensor longer than one chunk of blocks: every element, forward and backward. */
static void test_dropout_unaligned_rows(void **state)
{
    (void)state;
    enum { R = 300, C = 7 };
    static float x[R * C], gy[R * C], gx[R * C];
    for (int i = 0; i < R * C; i++) x[i] = 0.5f + (float)(i % 5), gy[i] = (float)(i % 3) - 1.0f, gx[i] = 0.25f;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
    const float p = 0.4f, scale = 1.0f / (1.0f - p);
    mm_tensor *y;
    assert_int_equal(mm_dropout(&t, wrap(&t, x, gx, 2, (int64_t[]){R, C}), p, 5, 11, 3, &y), MM_OK);
    memcpy(y->grad, gy, sizeof gy);
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    for (int64_t i = 0; i < (int64_t)R * C; i++) {
        bool keep = mm_rng_uniform_at(5, 11, (uint64_t)(3 * C + i)) >= p;
        assert_true(y->data[i] == (keep ? x[i] * scale : 0.0f));
        assert_true(gx[i] == (keep ? 0.25f + scale * gy[i] : 0.25f));
    }
    mm_tape_destroy(&t);
}

static void test_dropout_grad(void **state)
{
    (void)state;
    float x[6 * 5];
    gc_fill_uniform(x, 30, -2, 2, 31);
    /* the mask is a function of (seed, stream, index), so it is fixed across the
     * finite-difference forwards */
    drop_args a = {0.4f, 3};
    gc_input in[1] = {IN(x, 2, 6, 5)};
    assert_int_equal(gradcheck(build_dropout, &a, 1, in, NULL), 0);
    drop_args zero = {0.0f, 0};
    assert_int_equal(gradcheck(build_dropout, &zero, 1, in, NULL), 0);
}

/* ---- embedding ------------------------------------------------------------------ */

typedef struct { const int32_t *idx; int64_t n; int F; const int64_t *off; } emb_args;

static mm_status build_emb(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    emb_args *a = ctx;
    return mm_embedding_multi(t, in[0], a->idx, a->n, a->F, a->off, out);
}

static void test_embedding_grad_repeated_indices(void **state)
{
    (void)state;
    /* three features with vocabularies 3, 2, 4 -> V = 9; rows repeat indices, and
     * row 0 and row 3 are identical */
    int32_t vocab[3] = {3, 2, 4};
    int64_t off[3], V;
    assert_int_equal(mm_embedding_offsets(vocab, 3, off, &V), MM_OK);
    assert_int_equal(V, 9);
    assert_int_equal(off[1], 3);
    assert_int_equal(off[2], 5);
    int32_t idx[5 * 3] = {0, 1, 3, 2, 1, 0, 2, 0, 3, 0, 1, 3, 1, 1, 1};
    float table[9 * 4];
    gc_fill_uniform(table, 36, -1, 1, 41);
    emb_args a = {idx, 5, 3, off};
    gc_input in[1] = {IN(table, 2, 9, 4)};
    assert_int_equal(gradcheck(build_emb, &a, 1, in, NULL), 0);

    /* values and the scatter-added gradient, by hand */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    float tg[36] = {0};
    mm_tensor *tt = wrap(&t, table, tg, 2, (int64_t[]){9, 4}), *y;
    assert_int_equal(mm_embedding_multi(&t, tt, idx, 5, 3, off, &y), MM_OK);
    for (int i = 0; i < 5; i++)
        for (int d = 0; d < 4; d++) {
            float s = 0;
            for (int f = 0; f < 3; f++) s += table[(off[f] + idx[i * 3 + f]) * 4 + d];
            assert_float_equal(y->data[i * 4 + d], s, 1e-6);
        }
    for (int i = 0; i < 20; i++) y->grad[i] = 1.0f;
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    /* feature 1 index 1 (row 4) is used by rows 0, 1, 3, 4; feature 2 index 3 (row 8) by 0, 2, 3 */
    assert_float_equal(tg[4 * 4], 4.0f, 0);
    assert_float_equal(tg[8 * 4 + 2], 3.0f, 0);
    assert_float_equal(tg[7 * 4], 0.0f, 0); /* row 7 (feature 2 index 2) unused */

    /* the uint8 form gives the same rows */
    uint8_t idx8[15];
    for (int i = 0; i < 15; i++) idx8[i] = (uint8_t)idx[i];
    mm_tensor *y8;
    assert_int_equal(mm_embedding_multi_u8(&t, tt, idx8, 5, 3, off, &y8), MM_OK);
    assert_memory_equal(y8->data, y->data, 20 * sizeof(float));
    mm_tape_destroy(&t);
}

static void test_embedding_range_errors(void **state)
{
    (void)state;
    int32_t vocab[9] = {119, 5, 12, 12, 10, 6, 6, 2, 2}; /* the OGB atom features */
    int64_t off[9], V;
    assert_int_equal(mm_embedding_offsets(vocab, 9, off, &V), MM_OK);
    int64_t want_off[9] = {0, 119, 124, 136, 148, 158, 164, 170, 172};
    for (int f = 0; f < 9; f++) assert_int_equal(off[f], want_off[f]);
    assert_int_equal(V, 174);
    static float table[174 * 2];
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *tt = wrap(&t, table, NULL, 2, (int64_t[]){174, 2}), *y;
    /* last index of every feature is valid */
    int32_t ok[9] = {118, 4, 11, 11, 9, 5, 5, 1, 1};
    assert_int_equal(mm_embedding_multi(&t, tt, ok, 1, 9, off, &y), MM_OK);
    /* row 2, feature 1 (chirality, vocab 5) has 5: would silently read feature 2's rows */
    uint8_t bad[3 * 9] = {0};
    bad[2 * 9 + 1] = 5;
    assert_int_equal(mm_embedding_multi_u8(&t, tt, bad, 3, 9, off, &y), MM_ERR_ARG);
    const char *msg = mm_error_message();
    assert_non_null(strstr(msg, "row 2"));
    assert_non_null(strstr(msg, "feature 1"));
    assert_non_null(strstr(msg, "index 5"));
    mm_error_clear();
    /* negative index, last feature beyond the table */
    int32_t neg[9] = {0, 0, 0, 0, 0, 0, -1, 0, 0};
    assert_int_equal(mm_embedding_multi(&t, tt, neg, 1, 9, off, &y), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "row 0 feature 6"));
    mm_error_clear();
    int32_t last[9] = {0, 0, 0, 0, 0, 0, 0, 0, 2};
    assert_int_equal(mm_embedding_multi(&t, tt, last, 1, 9, off, &y), MM_ERR_ARG);
    mm_error_clear();
    /* offsets that decrease are rejected */
    int64_t badoff[2] = {5, 3};
    assert_int_equal(mm_embedding_multi(&t, tt, ok, 1, 2, badoff, &y), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* ---- conv2d --------------------------------------------------------------------- */

typedef struct { int stride, pad; bool bias; } conv_args;

static mm_status build_conv(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    conv_args *a = ctx;
    return mm_conv2d(t, in[0], in[1], a->bias ? in[2] : NULL, a->stride, a->pad, out);
}

/* Direct definition, in double: y [N, Co, Ho, Wo]. */
static void conv_ref(const float *x, const float *w, const float *b, int N, int Ci, int H, int W, int Co,
                     int kh, int kw, int s, int pad, double *y)
{
    int Ho = (H + 2 * pad - kh) / s + 1, Wo = (W + 2 * pad - kw) / s + 1;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Co; o++)
            for (int r = 0; r < Ho; r++)
                for (int c = 0; c < Wo; c++) {
                    double acc = b ? b[o] : 0;
                    for (int i = 0; i < Ci; i++)
                        for (int p = 0; p < kh; p++)
                            for (int q = 0; q < kw; q++) {
                                int ih = r * s + p - pad, iw = c * s + q - pad;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)w[((o * Ci + i) * kh + p) * kw + q] * x[((n * Ci + i) * H + ih) * W + iw];
                            }
                    y[((n * Co + o) * Ho + r) * Wo + c] = acc;
                }
}

static void test_conv2d_grad(void **state)
{
    (void)state;
    float x[2 * 2 * 5 * 4], w[3 * 2 * 3 * 3], b[3];
    gc_fill_uniform(x, 80, -1, 1, 51);
    gc_fill_uniform(w, 54, -1, 1, 52);
    gc_fill_uniform(b, 3, -1, 1, 53);
    for (int s = 1; s <= 2; s++)
        for (int pad = 0; pad <= 1; pad++) {
            conv_args a = {s, pad, true};
            gc_input in[3] = {IN(x, 4, 2, 2, 5, 4), IN(w, 4, 3, 2, 3, 3), IN(b, 1, 3)};
            assert_int_equal(gradcheck(build_conv, &a, 3, in, NULL), 0);
        }
    /* non-square kernel 2x3, stride 2, padding 1, no bias */
    conv_args nb = {2, 1, false};
    gc_input ns[2] = {IN(x, 4, 2, 2, 5, 4), IN(w, 4, 3, 2, 2, 3)};
    assert_int_equal(gradcheck(build_conv, &nb, 2, ns, NULL), 0);
    /* 1x1 image: 3x3 kernel with padding 1 sees only its centre; 1x1 kernel */
    conv_args one = {1, 1, true};
    gc_input px[3] = {IN(x, 4, 3, 2, 1, 1), IN(w, 4, 3, 2, 3, 3), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_conv, &one, 3, px, NULL), 0);
    conv_args pw = {2, 0, true};
    gc_input k1[3] = {IN(x, 4, 2, 2, 5, 4), IN(w, 4, 3, 2, 1, 1), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_conv, &pw, 3, k1, NULL), 0);
}

static void test_conv2d_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* x[r][c] = 4r + c + 1 on a 4x4 image; kernel w = [[1,2,0],[0,1,0],[0,0,-1]]:
     * y[r][c] = x[r][c] + 2 x[r][c+1] + x[r+1][c+1] - x[r+2][c+2] = 12 r + 3 c */
    float x[16], w[9] = {1, 2, 0, 0, 1, 0, 0, 0, -1}, b[1] = {0.5f};
    for (int i = 0; i < 16; i++) x[i] = (float)(i + 1);
    mm_tensor *X = wrap(&t, x, NULL, 4, (int64_t[]){1, 1, 4, 4}), *Wt = wrap(&t, w, NULL, 4, (int64_t[]){1, 1, 3, 3});
    mm_tensor *B = wrap(&t, b, NULL, 1, (int64_t[]){1}), *y;
    assert_int_equal(mm_conv2d(&t, X, Wt, NULL, 1, 0, &y), MM_OK);
    assert_int_equal(y->shape[2], 2);
    assert_int_equal(y->shape[3], 2);
    float want[4] = {0, 3, 12, 15};
    for (int i = 0; i < 4; i++) assert_float_equal(y->data[i], want[i], 1e-6);
    /* padding 1, stride 2: windows start at (-1,-1), (-1,1), (1,-1), (1,1) */
    assert_int_equal(mm_conv2d(&t, X, Wt, B, 2, 1, &y), MM_OK);
    float want2[4] = {-4.5f, -4.5f, 5.5f, 15.5f};
    for (int i = 0; i < 4; i++) assert_float_equal(y->data[i], want2[i], 1e-6);
    /* kernel larger than the padded image, and a channel mismatch */
    float w5[25] = {0};
    assert_int_equal(mm_conv2d(&t, X, wrap(&t, w5, NULL, 4, (int64_t[]){1, 1, 5, 5}), NULL, 1, 0, &y), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_conv2d(&t, X, wrap(&t, w5, NULL, 4, (int64_t[]){1, 2, 3, 3}), NULL, 1, 0, &y), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* ---- conv1d --------------------------------------------------------------------- */

static mm_status build_conv1d(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    conv_args *a = ctx;
    return mm_conv1d(t, in[0], in[1], a->bias ? in[2] : NULL, a->stride, a->pad, out);
}

static void test_conv1d_grad(void **state)
{
    (void)state;
    float x[3 * 2 * 11], w[4 * 2 * 5], b[4];
    gc_fill_uniform(x, 66, -1, 1, 71);
    gc_fill_uniform(w, 40, -1, 1, 72);
    gc_fill_uniform(b, 4, -1, 1, 73);
    for (int s = 1; s <= 2; s++)
        for (int pad = 0; pad <= 2; pad += 2) {
            conv_args a = {s, pad, true};
            gc_input in[3] = {IN(x, 3, 3, 2, 11), IN(w, 3, 4, 2, 5), IN(b, 1, 4)};
            assert_int_equal(gradcheck(build_conv1d, &a, 3, in, NULL), 0);
        }
    /* kernel 3, stride 2, padding 1 (the spectrum encoder's shape), no bias; length 1 */
    conv_args nb = {2, 1, false};
    gc_input k3[2] = {IN(x, 3, 3, 2, 11), IN(w, 3, 4, 2, 3)};
    assert_int_equal(gradcheck(build_conv1d, &nb, 2, k3, NULL), 0);
    gc_input l1[2] = {IN(x, 3, 3, 2, 1), IN(w, 3, 4, 2, 3)};
    assert_int_equal(gradcheck(build_conv1d, &nb, 2, l1, NULL), 0);
}

static void test_conv1d_values(void **state)
{
    (void)state;
    /* against the direct sum y[n,o,j] = b[o] + sum w[o,i,q] x[n,i,j s + q - pad], padding
     * at the ends only (a 2-D convolution of height 1 padded on every side would have 3 rows) */
    enum { N = 2, Ci = 3, L = 13, Co = 4, K = 5 };
    float x[N * Ci * L], w[Co * Ci * K], b[Co];
    gc_fill_uniform(x, N * Ci * L, -1, 1, 74);
    gc_fill_uniform(w, Co * Ci * K, -1, 1, 75);
    gc_fill_uniform(b, Co, -1, 1, 76);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    for (int s = 1; s <= 3; s++)
        for (int pad = 0; pad <= 2; pad++) {
            mm_tensor *y;
            assert_int_equal(mm_conv1d(&t, wrap(&t, x, NULL, 3, (int64_t[]){N, Ci, L}),
                                       wrap(&t, w, NULL, 3, (int64_t[]){Co, Ci, K}), wrap(&t, b, NULL, 1, (int64_t[]){Co}),
                                       s, pad, &y),
                             MM_OK);
            int Lo = (L + 2 * pad - K) / s + 1;
            assert_int_equal(y->ndim, 3);
            assert_int_equal(y->shape[1], Co);
            assert_int_equal(y->shape[2], Lo);
            for (int n = 0; n < N; n++)
                for (int o = 0; o < Co; o++)
                    for (int j = 0; j < Lo; j++) {
                        double acc = b[o];
                        for (int i = 0; i < Ci; i++)
                            for (int q = 0; q < K; q++) {
                                int at = j * s + q - pad;
                                if (at >= 0 && at < L) acc += (double)w[(o * Ci + i) * K + q] * x[(n * Ci + i) * L + at];
                            }
                        assert_float_equal(y->data[(n * Co + o) * Lo + j], acc, 1e-5);
                    }
        }
    /* wrong ranks and a kernel longer than the padded input are errors */
    mm_tensor *y;
    assert_int_equal(mm_conv1d(&t, wrap(&t, x, NULL, 4, (int64_t[]){N, Ci, 1, L}),
                               wrap(&t, w, NULL, 3, (int64_t[]){Co, Ci, K}), NULL, 1, 0, &y),
                     MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_conv1d(&t, wrap(&t, x, NULL, 3, (int64_t[]){N, Ci, 2}),
                               wrap(&t, w, NULL, 3, (int64_t[]){Co, Ci, K}), NULL, 1, 1, &y),
                     MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

static void test_conv2d_blocked_matches_direct(void **state)
{
    (void)state;
    /* 40 images of 3x32x32 -> 8 channels: larger than one im2col block, so the
     * blocked path and the block boundaries are exercised; gradients are checked
     * against the direct sums dW = sum dy x and dx = sum dy w on a sample. */
    enum { N = 40, Ci = 3, H = 32, W = 32, Co = 8, K = 3 };
    static float x[N * Ci * H * W], w[Co * Ci * K * K], b[Co], gx[N * Ci * H * W], gw[Co * Ci * K * K], gb[Co];
    static double yref[N * Co * H * W]; /* big enough for stride 1 */
    gc_fill_uniform(x, N * Ci * H * W, -1, 1, 61);
    gc_fill_uniform(w, Co * Ci * K * K, -1, 1, 62);
    gc_fill_uniform(b, Co, -1, 1, 63);
    for (int s = 1; s <= 2; s++) {
        int Ho = (H + 2 - K) / s + 1;
        memset(gx, 0, sizeof gx);
        memset(gw, 0, sizeof gw);
        memset(gb, 0, sizeof gb);
        mm_tape t;
        assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
        mm_tensor *y;
        assert_int_equal(mm_conv2d(&t, wrap(&t, x, gx, 4, (int64_t[]){N, Ci, H, W}),
                                   wrap(&t, w, gw, 4, (int64_t[]){Co, Ci, K, K}), wrap(&t, b, gb, 1, (int64_t[]){Co}),
                                   s, 1, &y),
                         MM_OK);
        conv_ref(x, w, b, N, Ci, H, W, Co, K, K, s, 1, yref);
        double err = 0;
        for (int64_t i = 0; i < y->n; i++) err = fmax(err, fabs(y->data[i] - yref[i]));
        assert_true(err < 1e-4);
        /* dy = 1 everywhere: db = N*Ho*Ho; dW[o,i,p,q] = sum of the inputs each tap sees;
         * dx[n,i,h,w] = sum of the weights that touch (h, w) */
        for (int64_t i = 0; i < y->n; i++) y->grad[i] = 1.0f;
        assert_int_equal(mm_tape_run_backward(&t), MM_OK);
        for (int o = 0; o < Co; o++) assert_float_equal(gb[o], (float)(N * Ho * Ho), 1e-3);
        for (int o = 0; o < Co; o += 3)
            for (int i = 0; i < Ci; i++)
                for (int p = 0; p < K; p++)
                    for (int q = 0; q < K; q++) {
                        double want = 0;
                        for (int n = 0; n < N; n++)
                            for (int r = 0; r < Ho; r++)
                                for (int c = 0; c < Ho; c++) {
                                    int ih = r * s + p - 1, iw = c * s + q - 1;
                                    if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                        want += x[((n * Ci + i) * H + ih) * W + iw];
                                }
                        assert_true(fabs(gw[((o * Ci + i) * K + p) * K + q] - want) < 1e-3 * fmax(1, fabs(want)));
                    }
        for (int n = 0; n < N; n += 13)
            for (int i = 0; i < Ci; i++)
                for (int h = 0; h < H; h += 5)
                    for (int ww = 0; ww < W; ww += 3) {
                        double want = 0;
                        for (int r = 0; r < Ho; r++)
                            for (int c = 0; c < Ho; c++) {
                                int p = h - r * s + 1, q = ww - c * s + 1;
                                if (p < 0 || p >= K || q < 0 || q >= K) continue;
                                for (int o = 0; o < Co; o++) want += w[((o * Ci + i) * K + p) * K + q];
                            }
                        assert_true(fabs(gx[((n * Ci + i) * H + h) * W + ww] - want) < 1e-4 * fmax(1, fabs(want)));
                    }
        mm_tape_destroy(&t);
    }
}

/* ---- conv2d, channels last ---------------------------------------------------------- */

static mm_status build_conv_nhwc(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    conv_args *a = ctx;
    return mm_conv2d_nhwc(t, in[0], in[1], a->bias ? in[2] : NULL, a->stride, a->pad, out);
}

static void test_conv2d_nhwc_grad(void **state)
{
    (void)state;
    float x[2 * 5 * 4 * 3], w[4 * 3 * 3 * 3], b[4];
    gc_fill_uniform(x, 120, -1, 1, 91);
    gc_fill_uniform(w, 108, -1, 1, 92);
    gc_fill_uniform(b, 4, -1, 1, 93);
    for (int s = 1; s <= 2; s++)
        for (int pad = 0; pad <= 1; pad++) {
            conv_args a = {s, pad, true};
            gc_input in[3] = {IN(x, 4, 2, 5, 4, 3), IN(w, 4, 4, 3, 3, 3), IN(b, 1, 4)};
            assert_int_equal(gradcheck(build_conv_nhwc, &a, 3, in, NULL), 0);
        }
    /* non-square 2x3 kernel, no bias; a 1x1 image (only the centre tap sees it) */
    conv_args nb = {2, 1, false};
    gc_input ns[2] = {IN(x, 4, 2, 5, 4, 3), IN(w, 4, 4, 3, 2, 3)};
    assert_int_equal(gradcheck(build_conv_nhwc, &nb, 2, ns, NULL), 0);
    conv_args one = {1, 1, true};
    gc_input px[3] = {IN(x, 4, 3, 1, 1, 3), IN(w, 4, 4, 3, 3, 3), IN(b, 1, 4)};
    assert_int_equal(gradcheck(build_conv_nhwc, &one, 3, px, NULL), 0);
    /* 16 output channels and 27 taps: the direct forward (conv.c), against its backward */
    float wd[16 * 3 * 3 * 3], bd[16];
    gc_fill_uniform(wd, 432, -1, 1, 94);
    gc_fill_uniform(bd, 16, -1, 1, 95);
    for (int s = 1; s <= 2; s++) {
        conv_args a = {s, 1, true};
        gc_input in[3] = {IN(x, 4, 2, 5, 4, 3), IN(wd, 4, 16, 3, 3, 3), IN(bd, 1, 16)};
        assert_int_equal(gradcheck(build_conv_nhwc, &a, 3, in, NULL), 0);
    }
}

/* The channels-last convolution is the NCHW one with its axes moved: values and every
 * gradient, on image blocks large enough for several im2col blocks. */
static void check_nhwc_vs_nchw(int N, int Ci, int H, int Co, int s, bool bias, uint64_t seed)
{
    int64_t nx = (int64_t)N * Ci * H * H, nw = (int64_t)Co * Ci * 9;
    int Ho = (H + 2 - 3) / s + 1;
    int64_t ny = (int64_t)N * Co * Ho * Ho;
    float *x = malloc((size_t)nx * sizeof(float)), *xt = malloc((size_t)nx * sizeof(float));
    float *gx = calloc((size_t)nx, sizeof(float)), *gxt = calloc((size_t)nx, sizeof(float));
    float *dy = malloc((size_t)ny * sizeof(float));
    assert_true(x && xt && gx && gxt && dy);
    float w[64 * 16 * 9], b[64], gw[64 * 16 * 9] = {0}, gwt[64 * 16 * 9] = {0}, gb[64] = {0}, gbt[64] = {0};
    assert_true(nw <= 64 * 16 * 9 && Co <= 64);
    gc_fill_uniform(x, nx, -1, 1, seed);
    gc_fill_uniform(w, nw, -1, 1, seed + 1);
    gc_fill_uniform(b, Co, -1, 1, seed + 2);
    gc_fill_uniform(dy, ny, -1, 1, seed + 3);
    int64_t S = (int64_t)H * H, So = (int64_t)Ho * Ho;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < Ci; c++)
            for (int64_t k = 0; k < S; k++) xt[((int64_t)n * S + k) * Ci + c] = x[((int64_t)n * Ci + c) * S + k];
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
    mm_tensor *y, *yt;
    assert_int_equal(mm_conv2d(&t, wrap(&t, x, gx, 4, (int64_t[]){N, Ci, H, H}), wrap(&t, w, gw, 4, (int64_t[]){Co, Ci, 3, 3}),
                               bias ? wrap(&t, b, gb, 1, (int64_t[]){Co}) : NULL, s, 1, &y),
                     MM_OK);
    assert_int_equal(mm_conv2d_nhwc(&t, wrap(&t, xt, gxt, 4, (int64_t[]){N, H, H, Ci}),
                                    wrap(&t, w, gwt, 4, (int64_t[]){Co, Ci, 3, 3}),
                                    bias ? wrap(&t, b, gbt, 1, (int64_t[]){Co}) : NULL, s, 1, &yt),
                     MM_OK);
    assert_int_equal(yt->shape[1], Ho);
    assert_int_equal(yt->shape[3], Co);
    double err = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Co; o++)
            for (int64_t k = 0; k < So; k++) {
                int64_t a = ((int64_t)n * Co + o) * So + k, bt = ((int64_t)n * So + k) * Co + o;
                err = fmax(err, fabs(y->data[a] - yt->data[bt]));
                y->grad[a] = dy[a];
                yt->grad[bt] = dy[a];
            }
    assert_true(err < 1e-5);
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    err = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < Ci; c++)
            for (int64_t k = 0; k < S; k++)
                err = fmax(err, fabs(gx[((int64_t)n * Ci + c) * S + k] - gxt[((int64_t)n * S + k) * Ci + c]));
    assert_true(err < 1e-5);
    for (int64_t i = 0; i < nw; i++) assert_true(fabs(gw[i] - gwt[i]) < 1e-3 * fmax(1, fabs(gw[i])));
    for (int o = 0; o < Co; o++) assert_true(fabs(gb[o] - gbt[o]) < 1e-3 * fmax(1, fabs(gb[o])));
    mm_tape_destroy(&t);
    free(x), free(xt), free(gx), free(gxt), free(dy);
}

static void test_conv2d_nhwc_matches_nchw(void **state)
{
    (void)state;
    check_nhwc_vs_nchw(40, 3, 32, 8, 1, true, 101);  /* 3 input channels (the images), 2 blocks */
    check_nhwc_vs_nchw(40, 3, 32, 8, 2, false, 111); /* the encoder's stride 2, no bias */
    check_nhwc_vs_nchw(9, 16, 9, 64, 2, true, 121);  /* odd size, wider channels */
    /* Cout a multiple of 16 with 27 taps: the direct forward; 13 -> 7 columns (a step of 4
     * positions and 3 single ones) and 10 -> 10 */
    check_nhwc_vs_nchw(6, 3, 13, 32, 2, true, 131);
    check_nhwc_vs_nchw(5, 3, 10, 16, 1, false, 141);
}

static mm_status build_gap_nhwc(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_global_avg_pool_nhwc(t, in[0], out);
}

static void test_global_avg_pool_nhwc(void **state)
{
    (void)state;
    float x[2 * 2 * 3 * 3];
    gc_fill_uniform(x, 36, -2, 2, 131);
    gc_input in[1] = {IN(x, 4, 2, 2, 3, 3)};
    assert_int_equal(gradcheck(build_gap_nhwc, NULL, 1, in, NULL), 0);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *y;
    assert_int_equal(mm_global_avg_pool_nhwc(&t, wrap(&t, x, NULL, 4, (int64_t[]){2, 2, 3, 3}), &y), MM_OK);
    assert_int_equal(y->shape[1], 3);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++) {
            double s = 0;
            for (int k = 0; k < 6; k++) s += x[(n * 6 + k) * 3 + c];
            assert_float_equal(y->data[n * 3 + c], s / 6, 1e-6);
        }
    assert_int_equal(mm_global_avg_pool_nhwc(&t, wrap(&t, x, NULL, 2, (int64_t[]){6, 6}), &y), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* ---- global average pooling ------------------------------------------------------ */

static mm_status build_gap(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_global_avg_pool(t, in[0], out);
}

static void test_global_avg_pool(void **state)
{
    (void)state;
    float x[2 * 3 * 2 * 3];
    gc_fill_uniform(x, 36, -2, 2, 71);
    gc_input in[1] = {IN(x, 4, 2, 3, 2, 3)};
    assert_int_equal(gradcheck(build_gap, NULL, 1, in, NULL), 0);
    gc_input one[1] = {IN(x, 4, 1, 3, 1, 1)};
    assert_int_equal(gradcheck(build_gap, NULL, 1, one, NULL), 0);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *y;
    assert_int_equal(mm_global_avg_pool(&t, wrap(&t, x, NULL, 4, (int64_t[]){2, 3, 2, 3}), &y), MM_OK);
    assert_int_equal(y->ndim, 2);
    assert_int_equal(y->shape[1], 3);
    for (int i = 0; i < 6; i++) {
        double s = 0;
        for (int k = 0; k < 6; k++) s += x[i * 6 + k];
        assert_float_equal(y->data[i], s / 6, 1e-6);
    }
    assert_int_equal(mm_global_avg_pool(&t, wrap(&t, x, NULL, 2, (int64_t[]){6, 6}), &y), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* ---- a small CNN stack, as the image encoder uses it ------------------------------ */

static mm_status build_stack(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    mm_tensor *h, *n;
    MM_CALL(mm_conv2d(t, in[0], in[1], NULL, 2, 1, &h));
    MM_CALL(mm_batchnorm(t, h, in[2], in[3], NULL, NULL, 0.1f, 1e-5f, &n));
    MM_CALL(mm_global_avg_pool(t, n, out));
    return MM_OK;
}

static void test_conv_bn_pool_chain(void **state)
{
    (void)state;
    float x[3 * 2 * 4 * 4], w[3 * 2 * 3 * 3], g[3], b[3];
    gc_fill_uniform(x, 96, -1, 1, 81);
    gc_fill_uniform(w, 54, -1, 1, 82);
    gc_fill_uniform(g, 3, 0.5f, 1.5f, 83);
    gc_fill_uniform(b, 3, -1, 1, 84);
    /* conv (stride 2, pad 1) -> BatchNorm2d over N x H x W -> global average pool:
     * the chain of the image encoder, every input checked through all three ops */
    gc_input in[4] = {IN(x, 4, 3, 2, 4, 4), IN(w, 4, 3, 2, 3, 3), IN(g, 1, 3), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_stack, NULL, 4, in, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_grad),
        cmocka_unit_test(test_layernorm_values),
        cmocka_unit_test(test_batchnorm1d_grad),
        cmocka_unit_test(test_batchnorm2d_grad),
        cmocka_unit_test(test_batchnorm_constant_channel),
        cmocka_unit_test(test_batchnorm_gradcheck_is_discriminating),
        cmocka_unit_test(test_batchnorm_values_and_running_stats),
        cmocka_unit_test(test_batchnorm_eval_uses_running_stats),
        cmocka_unit_test(test_dropout_mask_and_shards),
        cmocka_unit_test(test_dropout_unaligned_rows),
        cmocka_unit_test(test_dropout_grad),
        cmocka_unit_test(test_embedding_grad_repeated_indices),
        cmocka_unit_test(test_embedding_range_errors),
        cmocka_unit_test(test_conv2d_grad),
        cmocka_unit_test(test_conv2d_values),
        cmocka_unit_test(test_conv2d_blocked_matches_direct),
        cmocka_unit_test(test_conv2d_nhwc_grad),
        cmocka_unit_test(test_conv2d_nhwc_matches_nchw),
        cmocka_unit_test(test_global_avg_pool_nhwc),
        cmocka_unit_test(test_conv1d_grad),
        cmocka_unit_test(test_conv1d_values),
        cmocka_unit_test(test_global_avg_pool),
        cmocka_unit_test(test_conv_bn_pool_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
