/* Gradient and value tests for ops.h (dense algebra, elementwise, reductions). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/ops.h"

#define IN(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, true})

typedef struct { bool ta, tb; } mm_flags;

static mm_status build_matmul(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    mm_flags *f = ctx;
    return mm_matmul(t, in[0], f->ta, in[1], f->tb, out);
}

static void test_matmul_all_transposes(void **state)
{
    (void)state;
    float a[5 * 3], b[3 * 4];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gc_fill_uniform(a, 15, -1, 1, 1);
            gc_fill_uniform(b, 12, -1, 1, 2);
            gc_input in[2] = {ta ? IN(a, 2, 3, 5) : IN(a, 2, 5, 3), tb ? IN(b, 2, 4, 3) : IN(b, 2, 3, 4)};
            mm_flags f = {ta, tb};
            assert_int_equal(gradcheck(build_matmul, &f, 2, in, NULL), 0);
        }
}

static void test_matmul_values_and_shape_error(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    mm_tensor *A, *B, *C;
    assert_int_equal(mm_tensor_wrap(&t, a, NULL, 2, (int64_t[]){2, 3}, &A), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, b, NULL, 2, (int64_t[]){3, 2}, &B), MM_OK);
    assert_int_equal(mm_matmul(&t, A, false, B, false, &C), MM_OK);
    float want[4] = {4, 5, 10, 11};
    for (int i = 0; i < 4; i++) assert_float_equal(C->data[i], want[i], 1e-6);
    assert_int_equal(mm_matmul(&t, A, false, B, true, &C), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

static mm_status build_linear(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    return mm_linear(t, in[0], in[1], ctx ? NULL : in[2], out);
}

static void test_linear(void **state)
{
    (void)state;
    float x[4 * 6], w[5 * 6], b[5];
    gc_fill_uniform(x, 24, -1, 1, 3);
    gc_fill_uniform(w, 30, -1, 1, 4);
    gc_fill_uniform(b, 5, -1, 1, 5);
    gc_input in[3] = {IN(x, 2, 4, 6), IN(w, 2, 5, 6), IN(b, 1, 5)};
    assert_int_equal(gradcheck(build_linear, NULL, 3, in, NULL), 0);
    assert_int_equal(gradcheck(build_linear, (void *)1, 2, in, NULL), 0);
    /* a batch of one row */
    gc_input one[3] = {IN(x, 2, 1, 6), IN(w, 2, 5, 6), IN(b, 1, 5)};
    assert_int_equal(gradcheck(build_linear, NULL, 3, one, NULL), 0);
}

static mm_status build_bias(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_bias_add(t, in[0], in[1], out);
}

static void test_bias_add_2d_and_4d(void **state)
{
    (void)state;
    float x[2 * 3 * 2 * 2], b[3];
    gc_fill_uniform(x, 24, -1, 1, 6);
    gc_fill_uniform(b, 3, -1, 1, 7);
    gc_input in4[2] = {IN(x, 4, 2, 3, 2, 2), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_bias, NULL, 2, in4, NULL), 0);
    gc_input in2[2] = {IN(x, 2, 8, 3), IN(b, 1, 3)};
    assert_int_equal(gradcheck(build_bias, NULL, 2, in2, NULL), 0);
}

typedef mm_status (*binop)(mm_tape *, mm_tensor *, mm_tensor *, mm_tensor **);
static mm_status build_binary(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    return (*(binop *)ctx)(t, in[0], in[1], out);
}

static void test_elementwise_binary(void **state)
{
    (void)state;
    binop ops[3] = {mm_add, mm_sub, mm_mul};
    float a[12], b[12];
    for (int k = 0; k < 3; k++) {
        gc_fill_uniform(a, 12, -2, 2, 8);
        gc_fill_uniform(b, 12, -2, 2, 9);
        gc_input in[2] = {IN(a, 2, 3, 4), IN(b, 2, 3, 4)};
        assert_int_equal(gradcheck(build_binary, &ops[k], 2, in, NULL), 0);
    }
}

static mm_status build_same_input_twice(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_mul(t, in[0], in[0], out); /* x*x: gradients from both uses add up */
}

static void test_gradient_accumulates_over_uses(void **state)
{
    (void)state;
    float a[6];
    gc_fill_uniform(a, 6, -2, 2, 10);
    gc_input in[1] = {IN(a, 2, 2, 3)};
    assert_int_equal(gradcheck(build_same_input_twice, NULL, 1, in, NULL), 0);
}

static mm_status build_affine(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_affine(t, in[0], -2.5f, 0.75f, out);
}

static mm_status build_row_scale(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_row_scale(t, in[0], in[1], out);
}

static void test_affine_and_row_scale(void **state)
{
    (void)state;
    float x[12], s[3];
    gc_fill_uniform(x, 12, -2, 2, 11);
    gc_fill_uniform(s, 3, -2, 2, 12);
    gc_input in[2] = {IN(x, 2, 3, 4), IN(s, 1, 3)};
    assert_int_equal(gradcheck(build_affine, NULL, 1, in, NULL), 0);
    assert_int_equal(gradcheck(build_row_scale, NULL, 2, in, NULL), 0);
}

typedef mm_status (*unop)(mm_tape *, mm_tensor *, mm_tensor **);
static mm_status build_unary(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    return (*(unop *)ctx)(t, in[0], out);
}

static void test_activations(void **state)
{
    (void)state;
    unop ops[7] = {mm_relu, mm_gelu, mm_tanh, mm_sigmoid, mm_softplus, mm_ssp, mm_exp};
    float x[20];
    for (int k = 0; k < 7; k++) {
        gc_fill_away_from_zero(x, 20, 0.05f, 3.0f, 13 + k);
        gc_input in[1] = {IN(x, 2, 4, 5)};
        assert_int_equal(gradcheck(build_unary, &ops[k], 1, in, NULL), 0);
    }
    unop lg = mm_log;
    gc_fill_uniform(x, 20, 0.2f, 3.0f, 30);
    gc_input in[1] = {IN(x, 1, 20)};
    assert_int_equal(gradcheck(build_unary, &lg, 1, in, NULL), 0);
}

static void test_activation_values(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float v[5] = {-30.0f, -1.0f, 0.0f, 1.0f, 30.0f};
    mm_tensor *x, *y;
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 1, (int64_t[]){5}, &x), MM_OK);
    assert_int_equal(mm_ssp(&t, x, &y), MM_OK);
    assert_float_equal(y->data[2], 0.0f, 1e-7);          /* ssp(0) = 0 */
    assert_float_equal(y->data[4], 30.0f - logf(2.0f), 1e-5); /* linear branch above 20 */
    assert_int_equal(mm_gelu(&t, x, &y), MM_OK);
    assert_float_equal(y->data[3], 0.8413447f, 1e-6);    /* 1 * Phi(1) */
    assert_int_equal(mm_sigmoid(&t, x, &y), MM_OK);
    assert_true(y->data[0] > 0.0f && y->data[0] < 1e-12f); /* no overflow for large -x */
    assert_int_equal(mm_log(&t, x, &y), MM_ERR_NUMERIC);   /* log of a negative value */
    mm_error_clear();
    mm_tape_destroy(&t);
}

static mm_status build_reduce(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    int code = (int)(intptr_t)ctx;
    mm_axis axis = (mm_axis)(code % 3 - 1);
    return code >= 3 ? mm_mean(t, in[0], axis, out) : mm_sum(t, in[0], axis, out);
}

static void test_reductions(void **state)
{
    (void)state;
    float x[3 * 2 * 2];
    gc_fill_uniform(x, 12, -1, 1, 40);
    for (int code = 0; code < 6; code++) {
        gc_input in[1] = {IN(x, 3, 3, 2, 2)};
        assert_int_equal(gradcheck(build_reduce, (void *)(intptr_t)code, 1, in, NULL), 0);
    }
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    mm_tensor *X, *y;
    float v[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 2, (int64_t[]){2, 3}, &X), MM_OK);
    assert_int_equal(mm_mean(&t, X, MM_AXIS_ROWS, &y), MM_OK);
    assert_int_equal(y->n, 3);
    assert_float_equal(y->data[0], 2.5f, 1e-6);
    assert_int_equal(mm_sum(&t, X, MM_AXIS_COLS, &y), MM_OK);
    assert_float_equal(y->data[1], 15.0f, 1e-6);
    /* mean over an empty tensor is an error, not a NaN */
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 2, (int64_t[]){0, 3}, &X), MM_OK);
    assert_int_equal(mm_mean(&t, X, MM_AXIS_ALL, &y), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

static mm_status build_l2n(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_l2_normalize(t, in[0], 1e-12f, out);
}

static void test_l2_normalize(void **state)
{
    (void)state;
    float x[4 * 5];
    gc_fill_uniform(x, 20, -1, 1, 50);
    gc_input in[1] = {IN(x, 2, 4, 5)};
    assert_int_equal(gradcheck(build_l2n, NULL, 1, in, NULL), 0);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    mm_tensor *X, *y;
    float z[4] = {0, 0, 3, 4};
    assert_int_equal(mm_tensor_wrap(&t, z, NULL, 2, (int64_t[]){2, 2}, &X), MM_OK);
    assert_int_equal(mm_l2_normalize(&t, X, 1e-12f, &y), MM_OK);
    assert_float_equal(y->data[0], 0.0f, 0); /* zero row stays zero, no NaN */
    assert_float_equal(y->data[2], 0.6f, 1e-6);
    mm_tape_destroy(&t);
}

static mm_status build_reshape_chain(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    mm_tensor *r, *s;
    MM_CALL(mm_reshape(t, in[0], 2, (int64_t[]){2, 6}, &r));
    MM_CALL(mm_tanh(t, r, &s));
    MM_CALL(mm_sum(t, s, MM_AXIS_COLS, out));
    return MM_OK;
}

static void test_reshape_shares_gradient(void **state)
{
    (void)state;
    float x[12];
    gc_fill_uniform(x, 12, -1, 1, 60);
    gc_input in[1] = {IN(x, 3, 3, 2, 2)};
    assert_int_equal(gradcheck(build_reshape_chain, NULL, 1, in, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_all_transposes),
        cmocka_unit_test(test_matmul_values_and_shape_error),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_bias_add_2d_and_4d),
        cmocka_unit_test(test_elementwise_binary),
        cmocka_unit_test(test_gradient_accumulates_over_uses),
        cmocka_unit_test(test_affine_and_row_scale),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_activation_values),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_l2_normalize),
        cmocka_unit_test(test_reshape_shares_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
