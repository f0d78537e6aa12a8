/* MPI test of BatchNorm's global-batch statistics (nn.h): a batch split across the
 * ranks, with the tape's allreduce hook, gives the outputs, input gradients,
 * parameter gradients (after summing them across ranks) and running statistics of
 * the whole batch computed on one rank without the hook. Run with 1 and 2 ranks. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/nn.h"
#include "mmsa/rng.h"

static MPI_Comm comm = MPI_COMM_NULL;
static int rank, nranks;

/* The tape's hook: in-place sum over the communicator. */
static mm_status mpi_sum(void *ctx, double *buf, int n)
{
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)ctx));
    return MM_OK;
}

typedef enum { SPLIT_EVEN, SPLIT_FIRST_ONE, SPLIT_FIRST_EMPTY } split_kind;

/* Contiguous share [*r0, *r1) of N rows for this rank. EVEN: floor(N r / P).
 * FIRST_ONE: rank 0 gets one row, the rest is split evenly. FIRST_EMPTY: rank 0 gets
 * none (with one rank it keeps all of them). */
static void share(int64_t N, split_kind k, int64_t *r0, int64_t *r1)
{
    if (nranks == 1 || k == SPLIT_EVEN) {
        *r0 = N * rank / nranks;
        *r1 = N * (rank + 1) / nranks;
        return;
    }
    int64_t head = k == SPLIT_FIRST_ONE ? 1 : 0; /* rows of rank 0 */
    if (rank == 0) {
        *r0 = 0;
        *r1 = head;
        return;
    }
    int64_t rest = N - head, p = nranks - 1, q = rank - 1;
    *r0 = head + rest * q / p;
    *r1 = head + rest * (q + 1) / p;
}

/* max |a - b| / max(1, max |b|), taken over all ranks */
static double rel_err(const float *a, const float *b, int64_t n, double scale_local)
{
    double e = 0, s = scale_local;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    double es[2] = {e, s};
    MPI_Allreduce(MPI_IN_PLACE, es, 2, MPI_DOUBLE, MPI_MAX, comm);
    return es[0] / fmax(1.0, es[1]);
}

/* One case: x [N, C] (S = 1, ndim 2) or [N, C, H, W]. */
static void run_case(int64_t N, int64_t C, int64_t H, int64_t W, split_kind split)
{
    int ndim = H ? 4 : 2;
    int64_t S = H ? H * W : 1, row = C * S, n = N * row;
    int64_t shape[4] = {N, C, H, W};
    float *x = mm_malloc((size_t)n * sizeof(float)), *dy = mm_malloc((size_t)n * sizeof(float));
    float *gx_full = mm_calloc((size_t)n, sizeof(float)), *gx_shard = mm_calloc((size_t)n, sizeof(float));
    float gamma[8], beta[8], gg_full[8] = {0}, gb_full[8] = {0}, gg_shard[8] = {0}, gb_shard[8] = {0};
    float rm_full[8], rv_full[8], rm_shard[8], rv_shard[8];
    assert_true(C <= 8);
    /* same values on every rank; channel means and spreads differ, one channel is
     * offset far from 0 so a one-pass variance would lose digits */
    gc_fill_uniform(x, n, -2, 2, 101);
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < S; k++) x[(i * C + (C - 1)) * S + k] = 100.0f + 0.5f * x[(i * C + (C - 1)) * S + k];
    gc_fill_uniform(dy, n, -1, 1, 102);
    gc_fill_uniform(gamma, C, 0.5f, 1.5f, 103);
    gc_fill_uniform(beta, C, -1, 1, 104);
    for (int c = 0; c < C; c++) {
        rm_full[c] = rm_shard[c] = 0.2f;
        rv_full[c] = rv_shard[c] = 1.5f;
    }

    /* whole batch on this rank, no hook */
    mm_tape tf;
    assert_int_equal(mm_tape_init(&tf, 1 << 16), MM_OK);
    mm_tensor *xf, *gf, *bf, *yf;
    assert_int_equal(mm_tensor_wrap(&tf, x, gx_full, ndim, shape, &xf), MM_OK);
    assert_int_equal(mm_tensor_wrap(&tf, gamma, gg_full, 1, &C, &gf), MM_OK);
    assert_int_equal(mm_tensor_wrap(&tf, beta, gb_full, 1, &C, &bf), MM_OK);
    assert_int_equal(mm_batchnorm(&tf, xf, gf, bf, rm_full, rv_full, 0.1f, 1e-5f, &yf), MM_OK);
    memcpy(yf->grad, dy, (size_t)n * sizeof(float));
    assert_int_equal(mm_tape_run_backward(&tf), MM_OK);

    /* this rank's rows, statistics through the hook */
    int64_t r0, r1;
    share(N, split, &r0, &r1);
    int64_t sshape[4] = {r1 - r0, C, H, W};
    mm_tape ts;
    assert_int_equal(mm_tape_init(&ts, 1 << 16), MM_OK);
    ts.allreduce = mpi_sum;
    ts.allreduce_ctx = &comm;
    mm_tensor *xs, *gs, *bs, *ys;
    assert_int_equal(mm_tensor_wrap(&ts, x + r0 * row, gx_shard + r0 * row, ndim, sshape, &xs), MM_OK);
    assert_int_equal(mm_tensor_wrap(&ts, gamma, gg_shard, 1, &C, &gs), MM_OK);
    assert_int_equal(mm_tensor_wrap(&ts, beta, gb_shard, 1, &C, &bs), MM_OK);
    assert_int_equal(mm_batchnorm(&ts, xs, gs, bs, rm_shard, rv_shard, 0.1f, 1e-5f, &ys), MM_OK);
    memcpy(ys->grad, dy + r0 * row, (size_t)((r1 - r0) * row) * sizeof(float));
    assert_int_equal(mm_tape_run_backward(&ts), MM_OK);
    /* parameter gradients are per-rank shares; the gradient allreduce sums them */
    MPI_Allreduce(MPI_IN_PLACE, gg_shard, (int)C, MPI_FLOAT, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, gb_shard, (int)C, MPI_FLOAT, MPI_SUM, comm);

    int64_t m = (r1 - r0) * row;
    double ey = rel_err(ys->data, yf->data + r0 * row, m, 0);
    double ex = rel_err(gx_shard + r0 * row, gx_full + r0 * row, m, 0);
    double eg = rel_err(gg_shard, gg_full, C, 0), eb = rel_err(gb_shard, gb_full, C, 0);
    double erm = rel_err(rm_shard, rm_full, C, 0), erv = rel_err(rv_shard, rv_full, C, 0);
    if (rank == 0)
        printf("# N=%lld C=%lld HxW=%lldx%lld split=%d on %d ranks: y %.2g dx %.2g dgamma %.2g dbeta %.2g "
               "running %.2g %.2g\n",
               (long long)N, (long long)C, (long long)H, (long long)W, (int)split, nranks, ey, ex, eg, eb, erm,
               erv);
    assert_true(ey <= 1e-5);
    assert_true(ex <= 1e-5);
    assert_true(eg <= 1e-5);
    assert_true(eb <= 1e-5);
    assert_true(erm <= 1e-5);
    assert_true(erv <= 1e-5);
    /* the gradient really flows: dx is not all zero */
    double gmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(gx_full[i]));
    assert_true(gmax > 1e-3);

    mm_tape_destroy(&tf);
    mm_tape_destroy(&ts);
    mm_free_sized(x, (size_t)n * sizeof(float));
    mm_free_sized(dy, (size_t)n * sizeof(float));
    mm_free_sized(gx_full, (size_t)n * sizeof(float));
    mm_free_sized(gx_shard, (size_t)n * sizeof(float));
}

static void test_bn1d_split(void **state)
{
    (void)state;
    run_case(7, 3, 0, 0, SPLIT_EVEN);  /* 7 rows: 3 + 4 on two ranks */
    run_case(8, 4, 0, 0, SPLIT_EVEN);
    run_case(7, 3, 0, 0, SPLIT_FIRST_ONE);
    run_case(7, 3, 0, 0, SPLIT_FIRST_EMPTY); /* a rank without rows still joins the sums */
}

static void test_bn2d_split(void **state)
{
    (void)state;
    run_case(7, 3, 3, 3, SPLIT_EVEN);
    run_case(4, 2, 5, 4, SPLIT_EVEN);
    run_case(5, 2, 2, 3, SPLIT_FIRST_ONE);
    run_case(5, 2, 2, 3, SPLIT_FIRST_EMPTY);
}

static void test_hook_is_used(void **state)
{
    (void)state;
    /* Each rank holds a different single row: no rank alone has a variance, but the
     * global batch (of >= 2 rows when run on >= 2 ranks) does. With one rank the
     * call must fail with the count in the message. */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 12), MM_OK);
    t.allreduce = mpi_sum;
    t.allreduce_ctx = &comm;
    float x[2] = {(float)rank, -2.0f * (float)rank}, rm[2] = {0, 0}, rv[2] = {1, 1};
    mm_tensor *xt, *y;
    assert_int_equal(mm_tensor_wrap(&t, x, NULL, 2, (int64_t[]){1, 2}, &xt), MM_OK);
    mm_status s = mm_batchnorm(&t, xt, NULL, NULL, rm, rv, 1.0f, 1e-5f, &y);
    if (nranks == 1) {
        assert_int_equal(s, MM_ERR_ARG);
        mm_error_clear();
    } else {
        assert_int_equal(s, MM_OK);
        /* momentum 1: running mean is the global mean of 0..P-1, running var the
         * unbiased variance of 0..P-1 (P (P+1) / 12); channel 1 is -2 times that */
        double P = nranks, mean = (P - 1) / 2, uvar = P * (P + 1) / 12;
        assert_float_equal(rm[0], mean, 1e-5);
        assert_float_equal(rv[0], uvar, 1e-5 * uvar);
        assert_float_equal(rm[1], -2 * mean, 1e-5);
        assert_float_equal(rv[1], 4 * uvar, 1e-5 * uvar);
        assert_float_equal(y->data[0], (rank - mean) / sqrt(uvar * (P - 1) / P + 1e-5), 1e-5);
    }
    mm_tape_destroy(&t);
}

/* Open MPI's dynamically loaded components leave allocations behind at
 * MPI_Finalize, which LeakSanitizer would report against this program; the test
 * checks its own heap through mm_alloc_live_bytes instead (see main). */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return 1; }

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn1d_split),
        cmocka_unit_test(test_bn2d_split),
        cmocka_unit_test(test_hook_is_used),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (mm_alloc_live_bytes() != 0) {
        fprintf(stderr, "[  FAILED  ] 1 test(s): %zu bytes still allocated through mm_malloc\n",
                mm_alloc_live_bytes());
        rc = rc ? rc : 1;
    }
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return rc;
}
