/* Gradient and value tests for index_ops.h (gather/scatter, segments, concat/split,
 * CSR products, softmax). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/index_ops.h"

#define IN(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, true})
#define IN_NOGRAD(buf, nd, ...) ((gc_input){(buf), (nd), {__VA_ARGS__}, false})

/* The error is MM_ERR_ARG and its message names `what` (the array position). */
static void assert_arg_error(mm_status s, const char *what)
{
    assert_int_equal(s, MM_ERR_ARG);
    if (what && !strstr(mm_error_message(), what)) fail_msg("message '%s' lacks '%s'", mm_error_message(), what);
    mm_error_clear();
}

/* ---- gather ------------------------------------------------------------------ */

typedef struct { const int64_t *idx; int64_t n; bool i32; } idx_arg;

static mm_status build_gather(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    idx_arg *a = ctx;
    /* Pass a scratch copy and overwrite it after the call: the backward must use the
     * op's own copy of the indices. Static, so the overwrite is not optimised away. */
    static int64_t s64[16];
    static int32_t s32[16];
    for (int64_t i = 0; i < a->n; i++) {
        s64[i] = a->idx[i];
        s32[i] = (int32_t)a->idx[i];
    }
    mm_status st = a->i32 ? mm_gather_rows_i32(t, in[0], s32, a->n, out)
                          : mm_gather_rows(t, in[0], s64, a->n, out);
    for (int i = 0; i < 16; i++) s64[i] = s32[i] = 0; /* valid but wrong: a kept pointer shows as a mismatch */
    return st;
}

static void test_gather_repeated_indices(void **state)
{
    (void)state;
    float x[3 * 4];
    gc_fill_uniform(x, 12, -1, 1, 1);
    const int64_t idx[5] = {2, 0, 2, 1, 2};
    for (int w = 0; w < 2; w++) {
        idx_arg a = {idx, 5, w == 1};
        gc_input in[1] = {IN(x, 2, 3, 4)};
        assert_int_equal(gradcheck(build_gather, &a, 1, in, NULL), 0);
    }
    /* a batch of one row gathered twice; a 3-D tensor keeps its trailing shape */
    const int64_t zz[2] = {0, 0};
    idx_arg one = {zz, 2, false};
    gc_input in1[1] = {IN(x, 2, 1, 4)};
    assert_int_equal(gradcheck(build_gather, &one, 1, in1, NULL), 0);
    idx_arg three = {idx, 5, false};
    gc_input in3[1] = {IN(x, 3, 3, 2, 2)};
    assert_int_equal(gradcheck(build_gather, &three, 1, in3, NULL), 0);
}

static void test_gather_values_and_errors(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float v[6] = {1, 2, 3, 4, 5, 6};
    float g[6] = {0};
    mm_tensor *x, *y;
    assert_int_equal(mm_tensor_wrap(&t, v, g, 2, (int64_t[]){3, 2}, &x), MM_OK);
    const int64_t idx[3] = {2, 2, 0};
    assert_int_equal(mm_gather_rows(&t, x, idx, 3, &y), MM_OK);
    assert_int_equal(y->shape[0], 3);
    assert_int_equal(y->shape[1], 2);
    const float want[6] = {5, 6, 5, 6, 1, 2};
    for (int i = 0; i < 6; i++) assert_float_equal(y->data[i], want[i], 0);
    /* a repeated row receives the sum of its gradients */
    for (int i = 0; i < 6; i++) y->grad[i] = 1.0f;
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    const float gwant[6] = {1, 1, 0, 0, 2, 2};
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], gwant[i], 0);
    /* no indices: an empty gather */
    assert_int_equal(mm_gather_rows(&t, x, idx, 0, &y), MM_OK);
    assert_int_equal(y->shape[0], 0);
    assert_int_equal(y->n, 0);
    /* out of range, past the end and negative, named by position */
    const int64_t bad[3] = {0, 3, 1};
    assert_arg_error(mm_gather_rows(&t, x, bad, 3, &y), "idx[1] = 3");
    const int32_t bad32[2] = {1, -1};
    assert_arg_error(mm_gather_rows_i32(&t, x, bad32, 2, &y), "idx[1] = -1");
    mm_tape_destroy(&t);
}

/* ---- scatter-add --------------------------------------------------------------------- */

typedef struct { const int64_t *idx; int64_t n, n_out; bool i32; } scatter_arg;

static mm_status build_scatter(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    scatter_arg *a = ctx;
    static int64_t s64[16];
    static int32_t s32[16];
    for (int64_t i = 0; i < a->n; i++) {
        s64[i] = a->idx[i];
        s32[i] = (int32_t)a->idx[i];
    }
    mm_status st = a->i32 ? mm_scatter_add_rows_i32(t, in[0], s32, a->n, a->n_out, out)
                          : mm_scatter_add_rows(t, in[0], s64, a->n, a->n_out, out);
    for (int i = 0; i < 16; i++) s64[i] = s32[i] = 0;
    return st;
}

static void test_scatter_add_repeated_indices(void **state)
{
    (void)state;
    float x[6 * 3];
    gc_fill_uniform(x, 18, -1, 1, 2);
    const int64_t idx[6] = {1, 3, 1, 0, 3, 1}; /* row 2 of the output receives nothing */
    for (int w = 0; w < 2; w++) {
        scatter_arg a = {idx, 6, 4, w == 1};
        gc_input in[1] = {IN(x, 2, 6, 3)};
        assert_int_equal(gradcheck(build_scatter, &a, 1, in, NULL), 0);
    }
    scatter_arg one = {idx, 1, 2, false};
    gc_input in1[1] = {IN(x, 2, 1, 3)};
    assert_int_equal(gradcheck(build_scatter, &one, 1, in1, NULL), 0);
}

static void test_scatter_add_values_and_errors(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    mm_tensor *x, *y;
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 2, (int64_t[]){4, 2}, &x), MM_OK);
    const int64_t idx[4] = {2, 0, 2, 2};
    assert_int_equal(mm_scatter_add_rows(&t, x, idx, 4, 4, &y), MM_OK);
    const float want[8] = {3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8, 0, 0};
    for (int i = 0; i < 8; i++) assert_float_equal(y->data[i], want[i], 0);
    assert_int_equal(t.n_nodes, 0); /* no input gradient: nothing recorded */
    const int64_t bad[4] = {0, 1, 4, 0};
    assert_arg_error(mm_scatter_add_rows(&t, x, bad, 4, 4, &y), "idx[2] = 4");
    assert_arg_error(mm_scatter_add_rows(&t, x, idx, 3, 4, &y), "3 indices");
    mm_tape_destroy(&t);
}

/* ---- segments ---------------------------------------------------------------------------- */

typedef struct { const int64_t *off; int64_t n_seg; bool mean; } seg_arg;

static mm_status build_segment(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    seg_arg *a = ctx;
    static int64_t scratch[16];
    memcpy(scratch, a->off, (size_t)(a->n_seg + 1) * sizeof(int64_t));
    mm_status st = a->mean ? mm_segment_mean(t, in[0], scratch, a->n_seg, out)
                           : mm_segment_sum(t, in[0], scratch, a->n_seg, out);
    for (int i = 0; i < 16; i++) scratch[i] = 0;
    return st;
}

static void test_segment_sum_mean_gradients(void **state)
{
    (void)state;
    float x[6 * 3];
    gc_fill_uniform(x, 18, -1, 1, 3);
    /* segments: rows 0-1, EMPTY, row 2 alone (a one-atom molecule), rows 3-5, EMPTY */
    const int64_t off[6] = {0, 2, 2, 3, 6, 6};
    for (int m = 0; m < 2; m++) {
        seg_arg a = {off, 5, m == 1};
        gc_input in[1] = {IN(x, 2, 6, 3)};
        assert_int_equal(gradcheck(build_segment, &a, 1, in, NULL), 0);
    }
    /* a batch of one molecule of one atom */
    const int64_t off1[2] = {0, 1};
    for (int m = 0; m < 2; m++) {
        seg_arg a = {off1, 1, m == 1};
        gc_input in[1] = {IN(x, 2, 1, 3)};
        assert_int_equal(gradcheck(build_segment, &a, 1, in, NULL), 0);
    }
}

static void test_segment_values_and_errors(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float g[8] = {0};
    mm_tensor *x, *s, *m;
    assert_int_equal(mm_tensor_wrap(&t, v, g, 2, (int64_t[]){4, 2}, &x), MM_OK);
    const int64_t off[4] = {0, 3, 3, 4}; /* rows 0-2, empty, row 3 */
    assert_int_equal(mm_segment_sum(&t, x, off, 3, &s), MM_OK);
    assert_int_equal(mm_segment_mean(&t, x, off, 3, &m), MM_OK);
    const float ws[6] = {9, 12, 0, 0, 7, 8}, wm[6] = {3, 4, 0, 0, 7, 8};
    for (int i = 0; i < 6; i++) {
        assert_float_equal(s->data[i], ws[i], 1e-6);
        assert_float_equal(m->data[i], wm[i], 1e-6); /* empty mean: 0, not NaN */
    }
    /* gradient through the mean: 1/3 to each of rows 0-2, 1 to row 3 */
    for (int i = 0; i < 6; i++) m->grad[i] = 1.0f;
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    for (int i = 0; i < 6; i++) assert_float_equal(g[i], 1.0f / 3.0f, 1e-6);
    assert_float_equal(g[6], 1.0f, 0);
    const int64_t dec[4] = {0, 3, 2, 4}, last[3] = {0, 2, 3}, first[3] = {1, 2, 4};
    assert_arg_error(mm_segment_sum(&t, x, dec, 3, &s), "offsets[2] = 2");
    assert_arg_error(mm_segment_mean(&t, x, last, 2, &s), "offsets[2] = 3");
    assert_arg_error(mm_segment_sum(&t, x, first, 2, &s), "offsets[0] = 1");
    mm_tape_destroy(&t);
}

/* ---- concat / split -------------------------------------------------------------------- */

static mm_status build_concat(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    int n = (int)(intptr_t)ctx;
    bool rows = n < 0;
    if (rows) n = -n;
    return rows ? mm_concat_rows(t, n, in, out) : mm_concat_cols(t, n, in, out);
}

static void test_concat_gradients(void **state)
{
    (void)state;
    float a[3 * 2], b[3 * 1], c[3 * 4], d[3 * 3], e[3 * 2];
    gc_fill_uniform(a, 6, -1, 1, 4);
    gc_fill_uniform(b, 3, -1, 1, 5);
    gc_fill_uniform(c, 12, -1, 1, 6);
    gc_fill_uniform(d, 9, -1, 1, 7);
    gc_fill_uniform(e, 6, -1, 1, 8);
    /* five inputs (more than a node's in[] holds), one of them without a gradient */
    gc_input cols[5] = {IN(a, 2, 3, 2), IN(b, 2, 3, 1), IN_NOGRAD(c, 2, 3, 4), IN(d, 2, 3, 3),
                        IN(e, 2, 3, 2)};
    assert_int_equal(gradcheck(build_concat, (void *)(intptr_t)5, 5, cols, NULL), 0);
    /* rows: [2, 3] + [1, 3] + [4, 3] + [0, 3] + [3, 3] with an empty block */
    gc_input rows[5] = {IN(a, 2, 2, 3), IN(b, 2, 1, 3), IN(c, 2, 4, 3), IN(d, 2, 0, 3),
                        IN_NOGRAD(e, 2, 2, 3)};
    assert_int_equal(gradcheck(build_concat, (void *)(intptr_t)-5, 5, rows, NULL), 0);
    /* a single row per input */
    gc_input one[2] = {IN(a, 2, 1, 2), IN(b, 2, 1, 3)};
    assert_int_equal(gradcheck(build_concat, (void *)(intptr_t)2, 2, one, NULL), 0);
}

static mm_status build_split_permute(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    bool rows = ctx != NULL;
    mm_tensor *p[3];
    const int64_t sizes[3] = {1, 3, 2};
    if (rows) {
        MM_CALL(mm_split_rows(t, in[0], 3, sizes, p));
    } else {
        MM_CALL(mm_split_cols(t, in[0], 3, sizes, p));
    }
    mm_tensor *q[3] = {p[2], p[0], p[1]};
    return rows ? mm_concat_rows(t, 3, q, out) : mm_concat_cols(t, 3, q, out);
}

static mm_status build_split_one_piece(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    mm_tensor *p[3];
    MM_CALL(mm_split_cols(t, in[0], 3, (const int64_t[]){2, 2, 2}, p));
    *out = p[1]; /* pieces 0 and 2 are unused: their columns get no gradient */
    return MM_OK;
}

static void test_split_gradients(void **state)
{
    (void)state;
    float x[4 * 6];
    gc_fill_uniform(x, 24, -1, 1, 9);
    gc_input cols[1] = {IN(x, 2, 4, 6)};
    assert_int_equal(gradcheck(build_split_permute, NULL, 1, cols, NULL), 0);
    assert_int_equal(gradcheck(build_split_one_piece, NULL, 1, cols, NULL), 0);
    gc_input rows[1] = {IN(x, 2, 6, 4)};
    assert_int_equal(gradcheck(build_split_permute, (void *)1, 1, rows, NULL), 0);
}

static void test_concat_split_values_and_errors(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float va[4] = {1, 2, 3, 4}, vb[2] = {5, 6};
    mm_tensor *a, *b, *y, *p[2];
    assert_int_equal(mm_tensor_wrap(&t, va, NULL, 2, (int64_t[]){2, 2}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, vb, NULL, 2, (int64_t[]){2, 1}, &b), MM_OK);
    assert_int_equal(mm_concat_cols(&t, 2, (mm_tensor *[]){a, b}, &y), MM_OK);
    const float wc[6] = {1, 2, 5, 3, 4, 6};
    for (int i = 0; i < 6; i++) assert_float_equal(y->data[i], wc[i], 0);
    assert_int_equal(mm_split_cols(&t, y, 2, (const int64_t[]){1, 2}, p), MM_OK);
    assert_int_equal(p[1]->shape[1], 2);
    assert_float_equal(p[0]->data[1], 3, 0);
    assert_float_equal(p[1]->data[3], 6, 0);
    assert_int_equal(mm_split_rows(&t, y, 2, (const int64_t[]){1, 1}, p), MM_OK);
    assert_float_equal(p[1]->data[0], 3, 0);
    assert_int_equal(mm_slice_cols(&t, y, 1, 2, &p[0]), MM_OK);
    assert_float_equal(p[0]->data[2], 4, 0);
    /* mismatches are argument errors */
    assert_arg_error(mm_concat_rows(&t, 2, (mm_tensor *[]){a, b}, &y), "input 1");
    mm_tensor *c;
    assert_int_equal(mm_tensor_wrap(&t, va, NULL, 2, (int64_t[]){1, 4}, &c), MM_OK);
    assert_arg_error(mm_concat_cols(&t, 2, (mm_tensor *[]){a, c}, &y), "input 1");
    assert_arg_error(mm_split_cols(&t, a, 2, (const int64_t[]){1, 2}, p), "add up to 3");
    assert_arg_error(mm_split_rows(&t, a, 2, (const int64_t[]){-1, 3}, p), "sizes[0]");
    assert_arg_error(mm_slice_cols(&t, a, 1, 2, &y), "[1, 3)");
    assert_arg_error(mm_slice_rows(&t, a, 2, 1, &y), "[2, 3)");
    mm_tape_destroy(&t);
}

/* ---- CSR x dense -------------------------------------------------------------------------- */

/* S [4, 5]; row 2 has no nonzeros, column 3 appears twice in row 3. */
static const int64_t csr_ptr[5] = {0, 2, 3, 3, 6};
static const int64_t csr_col[6] = {0, 4, 2, 3, 1, 3};
static const float csr_val[6] = {0.5f, -1.0f, 2.0f, 1.5f, -0.25f, 0.75f};

static mm_status build_csr(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    /* scratch copies, scribbled after the call: the backward must use its own */
    static int64_t ptr[5], col[6];
    static float val[6];
    memcpy(ptr, csr_ptr, sizeof ptr);
    memcpy(col, csr_col, sizeof col);
    memcpy(val, csr_val, sizeof val);
    mm_csr s = {4, 5, ptr, col, ctx ? val : NULL};
    mm_status st = mm_csr_matmul(t, &s, in[0], out);
    for (int i = 0; i < 6; i++) {
        col[i] = 0;
        val[i] = 0.0f;
    }
    for (int i = 0; i < 5; i++) ptr[i] = 0;
    return st;
}

static void test_csr_matmul_gradients(void **state)
{
    (void)state;
    float d[5 * 3];
    gc_fill_uniform(d, 15, -1, 1, 10);
    gc_input in[1] = {IN(d, 2, 5, 3)};
    assert_int_equal(gradcheck(build_csr, (void *)1, 1, in, NULL), 0);  /* with values */
    assert_int_equal(gradcheck(build_csr, NULL, 1, in, NULL), 0);       /* bits: all ones */
}

static void test_csr_matmul_values_and_errors(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float dv[5 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    mm_tensor *d, *y;
    assert_int_equal(mm_tensor_wrap(&t, dv, NULL, 2, (int64_t[]){5, 2}, &d), MM_OK);
    mm_csr s = {4, 5, csr_ptr, csr_col, csr_val};
    assert_int_equal(mm_csr_matmul(&t, &s, d, &y), MM_OK);
    /* row 0: 0.5 D0 - D4; row 1: 2 D2; row 2: none; row 3: 1.5 D3 - 0.25 D1 + 0.75 D3 */
    const float want[8] = {0.5f - 9, 1 - 10, 10, 12, 0, 0, 2.25f * 7 - 0.75f, 2.25f * 8 - 1};
    for (int i = 0; i < 8; i++) assert_float_equal(y->data[i], want[i], 1e-5);
    mm_csr bits = {4, 5, csr_ptr, csr_col, NULL};
    assert_int_equal(mm_csr_matmul(&t, &bits, d, &y), MM_OK);
    assert_float_equal(y->data[6], 7 + 3 + 7, 0); /* D3 + D1 + D3 */
    const int64_t badcol[6] = {0, 4, 2, 5, 1, 3};
    mm_csr bad = {4, 5, csr_ptr, badcol, NULL};
    assert_arg_error(mm_csr_matmul(&t, &bad, d, &y), "col_idx[3] = 5");
    const int64_t badptr[5] = {0, 2, 1, 3, 6};
    mm_csr bad2 = {4, 5, badptr, csr_col, NULL};
    assert_arg_error(mm_csr_matmul(&t, &bad2, d, &y), "row_ptr[2]");
    mm_csr wide = {4, 6, csr_ptr, csr_col, NULL};
    assert_arg_error(mm_csr_matmul(&t, &wide, d, &y), "sparse [4, 6]");
    mm_tape_destroy(&t);
}

/* ---- softmax -------------------------------------------------------------------------------- */

static mm_status build_softmax(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    return ctx ? mm_log_softmax(t, in[0], out) : mm_softmax(t, in[0], out);
}

static void test_softmax_gradients(void **state)
{
    (void)state;
    float x[4 * 5];
    gc_fill_uniform(x, 20, -3, 3, 11);
    gc_input in[1] = {IN(x, 2, 4, 5)};
    assert_int_equal(gradcheck(build_softmax, NULL, 1, in, NULL), 0);
    assert_int_equal(gradcheck(build_softmax, (void *)1, 1, in, NULL), 0);
    gc_input one[1] = {IN(x, 2, 1, 5)};
    assert_int_equal(gradcheck(build_softmax, NULL, 1, one, NULL), 0);
    assert_int_equal(gradcheck(build_softmax, (void *)1, 1, one, NULL), 0);
}

static void test_softmax_values_large_logits(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4096), MM_OK);
    float v[6] = {0.0f, logf(3.0f), 0.0f, 1000.0f, -1000.0f, 999.0f};
    mm_tensor *x, *p, *lp;
    assert_int_equal(mm_tensor_wrap(&t, v, NULL, 2, (int64_t[]){2, 3}, &x), MM_OK);
    assert_int_equal(mm_softmax(&t, x, &p), MM_OK);
    assert_int_equal(mm_log_softmax(&t, x, &lp), MM_OK);
    /* row 0: weights 1, 3, 1 */
    assert_float_equal(p->data[0], 0.2f, 1e-6);
    assert_float_equal(p->data[1], 0.6f, 1e-6);
    assert_float_equal(lp->data[2], logf(0.2f), 1e-6);
    /* row 1: 1e3 logits stay finite; the -1000 entry has probability 0 */
    const double e = exp(-1.0);
    assert_float_equal(p->data[3], 1.0 / (1.0 + e), 1e-6);
    assert_float_equal(p->data[4], 0.0f, 0);
    assert_float_equal(lp->data[5], -1.0 - log1p(e), 1e-5);
    assert_float_equal(lp->data[4], -2000.0 - log1p(e), 1e-2);
    for (int i = 0; i < 6; i++) assert_true(isfinite(p->data[i]) && isfinite(lp->data[i]));
    /* a masked (-inf) entry gets probability 0 and passes no gradient */
    float m[3] = {-INFINITY, 0.0f, logf(3.0f)}, gm[3] = {0};
    assert_int_equal(mm_tensor_wrap(&t, m, gm, 2, (int64_t[]){1, 3}, &x), MM_OK);
    assert_int_equal(mm_softmax(&t, x, &p), MM_OK);
    assert_float_equal(p->data[0], 0.0f, 0);
    assert_float_equal(p->data[1], 0.25f, 1e-6);
    assert_float_equal(p->data[2], 0.75f, 1e-6);
    p->grad[1] = 1.0f; /* d p1 / dx = p1 (e1 - p) */
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    assert_float_equal(gm[0], 0.0f, 0);
    assert_float_equal(gm[1], 0.25f * 0.75f, 1e-6);
    assert_float_equal(gm[2], -0.25f * 0.75f, 1e-6);
    mm_tape_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_repeated_indices),
        cmocka_unit_test(test_gather_values_and_errors),
        cmocka_unit_test(test_scatter_add_repeated_indices),
        cmocka_unit_test(test_scatter_add_values_and_errors),
        cmocka_unit_test(test_segment_sum_mean_gradients),
        cmocka_unit_test(test_segment_values_and_errors),
        cmocka_unit_test(test_concat_gradients),
        cmocka_unit_test(test_split_gradients),
        cmocka_unit_test(test_concat_split_values_and_errors),
        cmocka_unit_test(test_csr_matmul_gradients),
        cmocka_unit_test(test_csr_matmul_values_and_errors),
        cmocka_unit_test(test_softmax_gradients),
        cmocka_unit_test(test_softmax_values_large_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
