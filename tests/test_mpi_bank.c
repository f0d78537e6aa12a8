/* The partitioned memory bank equals the single-rank bank: assignment (ties to the
 * smallest index), sharded-softmax loss, gradient (summed over ranks), momentum update
 * and re-seeding order. Run on 1 and 2 ranks (and more by hand). */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/memory_bank.h"
#include "mmsa/rng.h"
#include "testutil.h"

static mm_dist WORLD, SELF;
enum { N = 20, DIM = 6, M = 11 };

static void random_rows(float *s, int n, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (int j = 0; j < DIM; j++) {
            s[i * DIM + j] = mm_rng_normal(&r);
            q += (double)s[i * DIM + j] * s[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++) s[i * DIM + j] /= (float)sqrt(q);
    }
}

/* loss, gradient (summed over the bank's ranks) and assignment */
static double loss_and_grad(mm_memory_bank *b, float *s, float *grad, int64_t *assign)
{
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *x, *l;
    memset(grad, 0, sizeof(float) * N * DIM);
    assert_int_equal(mm_tensor_wrap(&t, s, grad, 2, (int64_t[]){N, DIM}, &x), MM_OK);
    assert_int_equal(mm_bank_loss(b, &t, x, assign, &l), MM_OK);
    assert_int_equal(mm_tape_backward(&t, l), MM_OK);
    double v = l->data[0];
    mm_tape_destroy(&t);
    assert_int_equal(mm_dist_allreduce_float(b->d, grad, N * DIM), MM_OK);
    return v;
}

/* the whole bank on every rank */
static void gather_anchors(mm_memory_bank *b, float *all)
{
    int64_t counts[64];
    for (int r = 0; r < b->d->size; r++) {
        int64_t s0;
        mm_dist_block(b->m, b->d->size, r, &s0, &counts[r]);
    }
    assert_int_equal(mm_dist_allgather_bytes(b->d, b->anchors, sizeof(float) * DIM, counts, all), MM_OK);
}

static void test_partitioned_equals_single(void **state)
{
    (void)state;
    mm_memory_bank one, part;
    /* re-seed an anchor as soon as it misses one step, so re-seeding is exercised */
    assert_int_equal(mm_bank_init(&one, &SELF, M, DIM, 42, 0.1f, 0.9f, 1), MM_OK);
    assert_int_equal(mm_bank_init(&part, &WORLD, M, DIM, 42, 0.1f, 0.9f, 1), MM_OK);
    float all[M * DIM];
    gather_anchors(&part, all);
    assert_memory_equal(all, one.anchors, sizeof all); /* init is rank-count independent */
    /* two identical anchors (3 and 8) and a molecule exactly on them: smallest index wins */
    memcpy(one.anchors + 8 * DIM, one.anchors + 3 * DIM, sizeof(float) * DIM);
    if (8 >= part.m0 && 8 < part.m0 + part.m_local) memcpy(part.anchors + (8 - part.m0) * DIM, all + 3 * DIM, sizeof(float) * DIM);
    float s[N * DIM];
    random_rows(s, N, 7);
    memcpy(s, one.anchors + 3 * DIM, sizeof(float) * DIM);
    int64_t reseeded = 0;
    for (int step = 0; step < 6; step++) {
        float g1[N * DIM], gp[N * DIM];
        int64_t a1[N], ap[N];
        double l1 = loss_and_grad(&one, s, g1, a1), lp = loss_and_grad(&part, s, gp, ap);
        for (int i = 0; i < N; i++) assert_int_equal(a1[i], ap[i]);
        if (step == 0) assert_int_equal(a1[0], 3); /* on the tied anchors 3 and 8 */
        assert_true(fabs(l1 - lp) <= 1e-6 * fabs(l1));
        assert_true(tu_max_abs_diff(g1, gp, N * DIM) <= 1e-6 * tu_max_abs(g1, N * DIM));
        /* updates (with re-seeding after 3 idle steps) keep the two banks equal */
        mm_bank_stats st1, stp;
        assert_int_equal(mm_bank_update(&one, s, a1, N, &st1), MM_OK);
        assert_int_equal(mm_bank_update(&part, s, ap, N, &stp), MM_OK);
        assert_int_equal(st1.anchors_hit, stp.anchors_hit);
        assert_int_equal(st1.reseeded, stp.reseeded);
        assert_float_equal(st1.entropy, stp.entropy, 1e-12);
        gather_anchors(&part, all);
        assert_true(tu_max_abs_diff(all, one.anchors, M * DIM) <= 1e-7);
        reseeded += st1.reseeded;
        random_rows(s, N, 100 + (uint64_t)step);
    }
    assert_true(reseeded > 0);
    mm_bank_destroy(&one);
    mm_bank_destroy(&part);
}

static void test_reseed_takes_rows_in_index_order(void **state)
{
    (void)state;
    mm_memory_bank b;
    assert_int_equal(mm_bank_init(&b, &WORLD, M, DIM, 5, 0.1f, 0.5f, 1), MM_OK);
    float s[N * DIM];
    random_rows(s, N, 11);
    int64_t assign[N];
    for (int i = 0; i < N; i++) assign[i] = 0; /* everyone on anchor 0: all others idle */
    mm_bank_stats st;
    assert_int_equal(mm_bank_update(&b, s, assign, N, &st), MM_OK);
    assert_int_equal(st.reseeded, M - 1);
    float all[M * DIM];
    gather_anchors(&b, all);
    /* anchor j >= 1 is now row j - 1 */
    for (int j = 1; j < M; j++) assert_true(tu_max_abs_diff(all + j * DIM, s + (j - 1) * DIM, DIM) < 1e-6);
    mm_bank_destroy(&b);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) || mm_dist_init(&SELF, MPI_COMM_SELF)) MPI_Abort(MPI_COMM_WORLD, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partitioned_equals_single),
        cmocka_unit_test(test_reseed_takes_rows_in_index_order),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return failed;
}
