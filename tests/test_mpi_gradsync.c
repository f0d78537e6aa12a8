/* Bucketed gradient allreduce: same sums as one plain allreduce, every bucket covered,
 * buckets started during the backward, any bucket size. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/grad_sync.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"
#include "testutil.h"

static mm_dist D;

/* A chain of 6 linear layers; the third layer's parameters are never used. */
static void step(mm_params *p, mm_tape *t, mm_grad_sync *g, float *x)
{
    assert_int_equal(mm_tape_reset(t), MM_OK);
    mm_params_zero_grad(p);
    mm_tensor *h, *w, *b, *loss;
    assert_int_equal(mm_tensor_wrap(t, x, NULL, 2, (int64_t[]){5, 7}, &h), MM_OK);
    for (int l = 0; l < 6; l++) {
        if (l == 2) continue;
        assert_int_equal(mm_params_tensor(p, t, 2 * l, &w), MM_OK);
        assert_int_equal(mm_params_tensor(p, t, 2 * l + 1, &b), MM_OK);
        assert_int_equal(mm_linear(t, h, w, b, &h), MM_OK);
        assert_int_equal(mm_tanh(t, h, &h), MM_OK);
    }
    assert_int_equal(mm_sum(t, h, MM_AXIS_ALL, &loss), MM_OK);
    if (g) assert_int_equal(mm_grad_sync_begin(g, t), MM_OK);
    assert_int_equal(mm_tape_backward(t, loss), MM_OK);
    if (g) assert_int_equal(mm_grad_sync_finish(g, t), MM_OK);
}

static void test_buckets_match_plain_allreduce(void **state)
{
    (void)state;
    mm_params p;
    mm_params_init(&p);
    for (int l = 0; l < 6; l++) {
        char name[32];
        snprintf(name, sizeof name, "l%d.w", l);
        assert_int_equal(mm_params_add(&p, name, 2, (int64_t[]){7, 7}, NULL), MM_OK);
        snprintf(name, sizeof name, "l%d.b", l);
        assert_int_equal(mm_params_add(&p, name, 1, (int64_t[]){7}, NULL), MM_OK);
    }
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    for (int i = 0; i < p.count; i++) mm_params_init_uniform(&p, i, 0.5f, 3);
    float x[35];
    mm_rng r;
    mm_rng_init(&r, 10 + (uint64_t)D.rank, MM_STREAM_USER); /* each rank its own data */
    for (int i = 0; i < 35; i++) x[i] = mm_rng_normal(&r);
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    step(&p, &t, NULL, x);
    assert_int_equal(mm_dist_allreduce_float(&D, p.grad, p.total), MM_OK);
    float ref[16 * 100];
    assert_true(p.total <= sizeof ref / sizeof ref[0]);
    memcpy(ref, p.grad, p.total * sizeof(float));
    double sizes[5] = {1, 200, 300, 1000, 1e9}; /* bytes: a bucket per parameter ... one bucket */
    for (int k = 0; k < 5; k++) {
        mm_grad_sync g;
        assert_int_equal(mm_grad_sync_init(&g, &D, &p, sizes[k]), MM_OK);
        size_t covered = 0;
        for (int b = 0; b < g.n_buckets; b++) {
            assert_int_equal(g.start[b], covered); /* contiguous, in registry order */
            covered += g.count[b];
        }
        assert_int_equal(covered, p.total);
        step(&p, &t, &g, x);
        assert_true(tu_max_abs_diff(ref, p.grad, (int64_t)p.total) <= 1e-6 * tu_max_abs(ref, (int64_t)p.total));
        /* the unused layer's gradient is reduced too: zeros everywhere */
        assert_true(tu_max_abs(mm_params_grad(&p, 4), 49) == 0);
        if (D.size > 1 && g.n_buckets > 1) assert_true(g.overlap_started > 0);
        if (D.rank == 0) printf("  bucket %.0f bytes: %d buckets, %.0f started during the backward\n", sizes[k], g.n_buckets, g.overlap_started);
        mm_grad_sync_destroy(&g);
    }
    mm_tape_destroy(&t);
    mm_params_destroy(&p);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD) != MM_OK) MPI_Abort(MPI_COMM_WORLD, 1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_buckets_match_plain_allreduce)};
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
