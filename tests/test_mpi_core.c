/* MPI tests of the core: wrapped MPI errors, count range checks, block partition,
 * and a data-parallel step (shards + gradient allreduce) equal to the single-rank step. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/dist.h"
#include "mmsa/ops.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"
#include "mmsa/rng.h"
#include "testutil.h"

static mm_dist D;

static mm_status bad_send(mm_dist *d)
{
    int x = 1;
    MM_MPI_CALL(MPI_Send(&x, 1, MPI_INT, d->size + 5, 0, d->comm));
    return MM_OK;
}

static void test_mpi_error_is_wrapped(void **state)
{
    (void)state;
    assert_int_equal(bad_send(&D), MM_ERR_MPI);
    assert_non_null(strstr(mm_error_message(), "MPI_Send"));
    assert_non_null(strstr(mm_error_message(), "failed"));
    mm_error_clear();
    int c;
    assert_int_equal(mm_dist_count((size_t)1 << 33, "rows", &c), MM_ERR_RANGE);
    assert_non_null(strstr(mm_error_message(), "rows"));
    mm_error_clear();
}

static void test_block_partition_covers_everything(void **state)
{
    (void)state;
    for (int64_t n = 0; n < 20; n++)
        for (int size = 1; size <= 5; size++) {
            int64_t next = 0;
            for (int r = 0; r < size; r++) {
                int64_t s, c;
                mm_dist_block(n, size, r, &s, &c);
                assert_int_equal(s, next);
                assert_true(c == n / size || c == n / size + 1);
                next = s + c;
            }
            assert_int_equal(next, n);
        }
}

/* loss = (1/N_global) sum over the rows of this rank of (tanh(x W^T + b) . v)^2 */
static double shard_step(mm_params *p, const float *x, int64_t row0, int64_t rows, int64_t nglobal)
{
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 14), MM_OK);
    mm_tensor *X, *W, *B, *h, *a, *s, *sq, *sum, *loss;
    assert_int_equal(mm_tensor_wrap(&t, (float *)x + row0 * 6, NULL, 2, (int64_t[]){rows, 6}, &X), MM_OK);
    assert_int_equal(mm_params_tensor(p, &t, 0, &W), MM_OK);
    assert_int_equal(mm_params_tensor(p, &t, 1, &B), MM_OK);
    assert_int_equal(mm_linear(&t, X, W, B, &h), MM_OK);
    assert_int_equal(mm_tanh(&t, h, &a), MM_OK);
    assert_int_equal(mm_sum(&t, a, MM_AXIS_COLS, &s), MM_OK);
    assert_int_equal(mm_mul(&t, s, s, &sq), MM_OK);
    assert_int_equal(mm_sum(&t, sq, MM_AXIS_ALL, &sum), MM_OK);
    assert_int_equal(mm_affine(&t, sum, 1.0f / (float)nglobal, 0.0f, &loss), MM_OK);
    assert_int_equal(mm_tape_backward(&t, loss), MM_OK);
    double l = loss->data[0];
    mm_tape_destroy(&t);
    return l;
}

static void make_params(mm_params *p)
{
    mm_params_init(p);
    assert_int_equal(mm_params_add(p, "w", 2, (int64_t[]){4, 6}, NULL), MM_OK);
    assert_int_equal(mm_params_add(p, "b", 1, (int64_t[]){4}, NULL), MM_OK);
    assert_int_equal(mm_params_alloc(p), MM_OK);
    mm_params_init_linear(p, 0, 1, 11);
}

static void test_data_parallel_step_equals_single_rank(void **state)
{
    (void)state;
    enum { N = 13 }; /* does not divide evenly */
    float x[N * 6];
    mm_rng r;
    mm_rng_init(&r, 5, MM_STREAM_USER);
    for (int i = 0; i < N * 6; i++) x[i] = mm_rng_normal(&r);
    mm_params whole, shard;
    make_params(&whole);
    make_params(&shard);
    mm_optimizer ow, os;
    assert_int_equal(mm_optim_adamw(&ow, &whole, 0.9f, 0.999f, 1e-8f, 0.01f), MM_OK);
    assert_int_equal(mm_optim_adamw(&os, &shard, 0.9f, 0.999f, 1e-8f, 0.01f), MM_OK);
    for (int step = 0; step < 5; step++) {
        mm_params_zero_grad(&whole);
        mm_params_zero_grad(&shard);
        double lw = shard_step(&whole, x, 0, N, N);
        int64_t s0, cnt;
        mm_dist_block(N, D.size, D.rank, &s0, &cnt);
        double ls = shard_step(&shard, x, s0, cnt, N);
        assert_int_equal(mm_dist_allreduce_double(&D, &ls, 1), MM_OK);
        assert_int_equal(mm_dist_allreduce_float(&D, shard.grad, shard.total), MM_OK);
        assert_true(fabs(lw - ls) <= 1e-5 * fabs(lw));
        assert_true(tu_max_abs_diff(whole.grad, shard.grad, (int64_t)whole.total) <=
                    1e-5 * tu_max_abs(whole.grad, (int64_t)whole.total));
        assert_int_equal(mm_optim_step(&ow, &whole, 1e-2f), MM_OK);
        assert_int_equal(mm_optim_step(&os, &shard, 1e-2f), MM_OK);
    }
    assert_true(tu_max_abs_diff(whole.data, shard.data, (int64_t)whole.total) < 1e-5);
    /* every rank holds bitwise the same parameters */
    float *copy = mm_malloc(shard.total * sizeof(float));
    memcpy(copy, shard.data, shard.total * sizeof(float));
    MPI_Bcast(copy, (int)shard.total, MPI_FLOAT, 0, D.comm);
    assert_memory_equal(copy, shard.data, shard.total * sizeof(float));
    mm_free_sized(copy, shard.total * sizeof(float));
    mm_optim_destroy(&ow);
    mm_optim_destroy(&os);
    mm_params_destroy(&whole);
    mm_params_destroy(&shard);
}

/* mm_dist_agree: the lowest failing rank's status and message reach every rank. */
static void test_agree_hands_on_the_cause(void **state)
{
    (void)state;
    assert_int_equal(mm_dist_agree(&D, MM_OK), MM_OK);
    int culprit = D.size - 1; /* rank 0 when alone */
    mm_status st = MM_OK;
    if (D.rank == culprit) st = MM_ERR(MM_ERR_IO, "disk full on rank %d", D.rank);
    st = mm_dist_agree(&D, st);
    assert_int_equal(st, MM_ERR_IO);
    char want[64];
    snprintf(want, sizeof want, "disk full on rank %d", culprit);
    assert_non_null(strstr(mm_error_message(), want));
    if (D.rank != culprit) assert_non_null(strstr(mm_error_message(), "reported by rank"));
    mm_error_clear();
    /* two failing ranks: the lower one's message wins everywhere */
    st = D.rank >= 1 || D.size == 1 ? MM_ERR(MM_ERR_FORMAT, "bad row on rank %d", D.rank) : MM_OK;
    st = mm_dist_agree(&D, st);
    assert_int_equal(st, MM_ERR_FORMAT);
    snprintf(want, sizeof want, "bad row on rank %d", D.size == 1 ? 0 : 1);
    assert_non_null(strstr(mm_error_message(), want));
    mm_error_clear();
    assert_int_equal(mm_dist_agree(&D, MM_OK), MM_OK);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD) != MM_OK) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpi_error_is_wrapped),
        cmocka_unit_test(test_block_partition_covers_everything),
        cmocka_unit_test(test_data_parallel_step_equals_single_rank),
        cmocka_unit_test(test_agree_hands_on_the_cause),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
