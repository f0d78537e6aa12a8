/* mm_gemm with bf16 inputs on AMX tiles (blas.h) against a double-precision product of
 * the same bf16-rounded inputs, over every transpose, edge sizes that are not whole
 * tiles, alpha and beta, and leading dimensions wider than the matrices. Skipped (and
 * said so) on a CPU without AMX-BF16, where precision bf16 must be an error instead.
 * Likewise mm_gemm in float32 on the AVX-512 kernel against the double product of the
 * float inputs, skipped without AVX-512. */
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
#include "mmsa/blas.h"
#include "mmsa/ops.h"

static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* C = alpha op(A) op(B) + beta C0 in double, A and B rounded to bf16 (exact products). */
static void ref_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, const float *c0, int ldc, double *out, bool round_inputs)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int q = 0; q < k; q++) {
                float x = ta ? a[q * lda + i] : a[i * lda + q], y = tb ? b[j * ldb + q] : b[q * ldb + j];
                if (round_inputs) x = bf16_round(x), y = bf16_round(y);
                s += (double)x * y;
            }
            out[i * n + j] = alpha * s + (beta != 0.0f ? (double)beta * c0[i * ldc + j] : 0.0);
        }
}

static bool have_amx(void)
{
    const char *why = NULL;
    if (mm_blas_bf16_available(&why)) return true;
    printf("bf16 GEMM tests skipped: %s\n", why);
    return false;
}

/* One product through mm_gemm in the current precision; bf16: against the product of
 * the bf16-rounded inputs, else against the float inputs' at float32 accumulation. */
static void check_case(bool ta, bool tb, int m, int n, int k, float alpha, float beta, int pad, uint64_t seed)
{
    bool bf16 = mm_blas_precision() == MM_PREC_BF16;
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int arows = ta ? k : m, brows = tb ? n : k;
    float *a = malloc(sizeof(float) * (size_t)(arows * lda + 1)), *b = malloc(sizeof(float) * (size_t)(brows * ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc + 1)), *c0 = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    double *want = malloc(sizeof(double) * (size_t)(m * n + 1)), *want32 = malloc(sizeof(double) * (size_t)(m * n + 1));
    assert_true(a && b && c && c0 && want && want32);
    gc_fill_uniform(a, arows * lda, -1, 1, seed);
    gc_fill_uniform(b, brows * ldb, -1, 1, seed + 1);
    gc_fill_uniform(c0, m * ldc, -1, 1, seed + 2);
    memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
    ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, want, true);
    ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, want32, false);
    mm_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double err = 0, err32 = 0, scale = sqrt((double)k) + 1;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            err = fmax(err, fabs(c[i * ldc + j] - want[i * n + j]));
            err32 = fmax(err32, fabs(c[i * ldc + j] - want32[i * n + j]));
        }
    /* below 32^3 multiply-adds, or in float32, the product is float32 */
    if (!bf16 || (double)m * n * k < 32.0 * 32 * 32) err = err32;
    /* the same bf16 inputs: float32 accumulation only (k terms of size <= 1) */
    if (err > 1e-5 * scale * (fabs(alpha) + 1))
        fail_msg("ta %d tb %d m %d n %d k %d alpha %g beta %g: %.3g from the %s product", ta, tb, m, n, k,
                 (double)alpha, (double)beta, err, bf16 ? "bf16" : "float32");
    /* against float32 inputs: bf16 rounding (2^-9 relative per input) */
    assert_true(err32 < (bf16 ? 2.0 * 0.0039 : 1e-5) * scale * (fabs(alpha) + 1));
    /* the padding columns of C are not touched */
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++) assert_true(c[i * ldc + j] == c0[i * ldc + j]);
    free(a), free(b), free(c), free(c0), free(want), free(want32);
}

/* check_case over every transpose of each m x n x k, with three alpha, beta and padding */
static void check_sizes(const int (*sizes)[3], size_t n, uint64_t seed)
{
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < n; s++) {
            bool ta = t & 1, tb = t & 2;
            check_case(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], 1.0f, 0.0f, 0, seed += 3);
            check_case(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], 0.5f, 1.0f, 3, seed += 3);
            check_case(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], -2.0f, 0.25f, 1, seed += 3);
        }
}

static void test_bf16_products(void **state)
{
    (void)state;
    if (!have_amx()) skip();
    assert_int_equal(mm_blas_set_precision(MM_PREC_BF16), MM_OK);
    assert_int_equal(mm_blas_precision(), MM_PREC_BF16);
    static const int sizes[][3] = {{32, 32, 32}, {16, 48, 40}, {33, 17, 65}, {100, 70, 300}, {5, 300, 600},
                                   {600, 64, 7}, {47, 129, 33}, {256, 300, 600}, {16, 16, 16}};
    check_sizes(sizes, sizeof sizes / sizeof sizes[0], 1);
    assert_int_equal(mm_blas_set_precision(MM_PREC_FP32), MM_OK);
}

/* float32 products on the AVX-512 kernel (gemm_avx512.c): panels of 12 rows and 32
 * columns, blocks of 256 k, 192 rows and 2048 columns; sizes on and off those edges. */
static void test_fp32_avx512_products(void **state)
{
    (void)state;
    if (!mm_blas_avx512_used()) {
        printf("AVX-512 GEMM tests skipped: the CPU or the OS has no AVX-512F\n");
        skip();
    }
    assert_int_equal(mm_blas_set_precision(MM_PREC_FP32), MM_OK);
    static const int sizes[][3] = {{32, 32, 32}, {12, 32, 256}, {13, 33, 257}, {100, 70, 300}, {5, 300, 600},
                                   {600, 64, 7}, {47, 129, 33}, {193, 17, 520}, {11, 2049, 40}, {256, 31, 27}};
    check_sizes(sizes, sizeof sizes / sizeof sizes[0], 1001);
    /* beta = 0 does not read C: NaN there must not come through */
    static float a[64 * 64], b[64 * 64], c[64 * 64];
    gc_fill_uniform(a, 64 * 64, -1, 1, 5);
    gc_fill_uniform(b, 64 * 64, -1, 1, 6);
    for (int i = 0; i < 64 * 64; i++) c[i] = NAN;
    mm_gemm(false, false, 64, 64, 64, 1.0f, a, 64, b, 64, 0.0f, c, 64);
    for (int i = 0; i < 64 * 64; i++) assert_true(isfinite(c[i]));
}

/* Below 32^3 multiply-adds mm_gemm stays float32: with bf16 asked for, the same bits as
 * in float32 mode. In float32 it is BLIS's product (mm_sgemm) bit for bit on a CPU
 * without AVX-512, and the AVX-512 kernel's within float rounding of it with. */
static void test_small_and_fp32_stay_float32(void **state)
{
    (void)state;
    float a[8 * 8], b[8 * 8], c1[8 * 8], c2[8 * 8];
    gc_fill_uniform(a, 64, -1, 1, 7);
    gc_fill_uniform(b, 64, -1, 1, 8);
    if (mm_blas_bf16_available(NULL)) assert_int_equal(mm_blas_set_precision(MM_PREC_BF16), MM_OK);
    mm_gemm(false, false, 8, 8, 8, 1.0f, a, 8, b, 8, 0.0f, c1, 8);
    assert_int_equal(mm_blas_set_precision(MM_PREC_FP32), MM_OK);
    mm_gemm(false, false, 8, 8, 8, 1.0f, a, 8, b, 8, 0.0f, c2, 8);
    assert_memory_equal(c1, c2, sizeof c1);
    static float x[64 * 64], y[64 * 64], z1[64 * 64], z2[64 * 64];
    gc_fill_uniform(x, 64 * 64, -1, 1, 9);
    gc_fill_uniform(y, 64 * 64, -1, 1, 10);
    mm_gemm(false, true, 64, 64, 64, 1.0f, x, 64, y, 64, 0.0f, z1, 64);
    mm_sgemm(false, true, 64, 64, 64, 1.0f, x, 64, y, 64, 0.0f, z2, 64);
    if (!mm_blas_avx512_used()) assert_memory_equal(z1, z2, sizeof z1);
    for (int i = 0; i < 64 * 64; i++) assert_true(fabs(z1[i] - z2[i]) < 1e-5 * 9);
}

/* A Linear layer's output and every gradient with train.precision bf16 against float32:
 * what a training step sees (relative error of a few bf16 ulps, direction kept). */
static void linear_pass(mm_precision p, const float *x, const float *w, const float *b, const float *dy, float *y,
                        float *gx, float *gw, float *gb)
{
    enum { N = 300, I = 200, O = 150 };
    assert_int_equal(mm_blas_set_precision(p), MM_OK);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
    memset(gx, 0, sizeof(float) * N * I);
    memset(gw, 0, sizeof(float) * O * I);
    memset(gb, 0, sizeof(float) * O);
    mm_tensor *X, *W, *B, *Y;
    assert_int_equal(mm_tensor_wrap(&t, (float *)x, gx, 2, (int64_t[]){N, I}, &X), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, (float *)w, gw, 2, (int64_t[]){O, I}, &W), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, (float *)b, gb, 1, (int64_t[]){O}, &B), MM_OK);
    assert_int_equal(mm_linear(&t, X, W, B, &Y), MM_OK);
    memcpy(y, Y->data, sizeof(float) * N * O);
    memcpy(Y->grad, dy, sizeof(float) * N * O);
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    mm_tape_destroy(&t);
    assert_int_equal(mm_blas_set_precision(MM_PREC_FP32), MM_OK);
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

static void test_linear_bf16_tracks_fp32(void **state)
{
    (void)state;
    if (!have_amx()) skip();
    enum { N = 300, I = 200, O = 150 };
    static float x[N * I], w[O * I], b[O], dy[N * O];
    static float y[2][N * O], gx[2][N * I], gw[2][O * I], gb[2][O];
    gc_fill_uniform(x, N * I, -1, 1, 31);
    gc_fill_uniform(w, O * I, -0.1f, 0.1f, 32);
    gc_fill_uniform(b, O, -0.1f, 0.1f, 33);
    gc_fill_uniform(dy, N * O, -1, 1, 34);
    linear_pass(MM_PREC_FP32, x, w, b, dy, y[0], gx[0], gw[0], gb[0]);
    linear_pass(MM_PREC_BF16, x, w, b, dy, y[1], gx[1], gw[1], gb[1]);
    double ey = rel_err(y[1], y[0], N * O), ex = rel_err(gx[1], gx[0], N * I), ew = rel_err(gw[1], gw[0], O * I);
    /* bf16 keeps 8 bits: a product of two rounded inputs is off by up to 2^-8 relative,
     * random signs average that down over the sums */
    assert_true(ey < 4e-3 && ex < 4e-3 && ew < 4e-3);
    assert_true(ey > 1e-6 && ew > 1e-6); /* the bf16 path did run */
    assert_true(rel_err(gb[1], gb[0], O) < 1e-6); /* the bias gradient is a float32 sum */
}

/* Without AMX, asking for bf16 is a configuration error that names what is missing. */
static void test_unavailable_is_an_error(void **state)
{
    (void)state;
    if (mm_blas_bf16_available(NULL)) skip();
    assert_int_equal(mm_blas_set_precision(MM_PREC_BF16), MM_ERR_CONFIG);
    mm_error_clear();
    assert_int_equal(mm_blas_precision(), MM_PREC_FP32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_products),
        cmocka_unit_test(test_fp32_avx512_products),
        cmocka_unit_test(test_small_and_fp32_stay_float32),
        cmocka_unit_test(test_linear_bf16_tracks_fp32),
        cmocka_unit_test(test_unavailable_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
