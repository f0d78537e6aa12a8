/* The partitioned memory bank equals the single-rank bank: assignment (ties to the
 * smallest index), sharded-softmax loss, gradient (summed over ranks), momentum update
 * and re-seeding order, under every initialisation and re-seeding rule; a batch that
 * starts collapsed onto one anchor ends up spread over many. Run on 1, 2 and 3 ranks
 * (tests/run_tests.sh; 11 and 47 anchors split unevenly). */
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

/* rows of every rank's block (anchors or their idle-step counters), in global index order */
static void gather_rows(mm_memory_bank *b, const void *mine, size_t row_bytes, void *all)
{
    int64_t counts[64];
    for (int r = 0; r < b->d->size; r++) {
        int64_t s0;
        mm_dist_block(b->m, b->d->size, r, &s0, &counts[r]);
    }
    assert_int_equal(mm_dist_allgather_bytes(b->d, mine, row_bytes, counts, all), MM_OK);
}

/* the whole bank on every rank */
static void gather_anchors(mm_memory_bank *b, float *all) { gather_rows(b, b->anchors, sizeof(float) * b->dim, all); }

static void partitioned_equals_single(int init_rule, int reseed_rule, int64_t reseed_after)
{
    mm_memory_bank one, part;
    assert_int_equal(mm_bank_init(&one, &SELF, M, DIM, 42, 0.1f, 0.9f, reseed_after), MM_OK);
    assert_int_equal(mm_bank_init(&part, &WORLD, M, DIM, 42, 0.1f, 0.9f, reseed_after), MM_OK);
    assert_int_equal(mm_bank_set_rules(&one, init_rule, reseed_rule), MM_OK);
    assert_int_equal(mm_bank_set_rules(&part, init_rule, reseed_rule), MM_OK);
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
        assert_float_equal(st1.entropy_bits, stp.entropy_bits, 1e-12);
        /* same arithmetic on the owner whatever the split: bitwise the same bank */
        gather_anchors(&part, all);
        assert_memory_equal(all, one.anchors, sizeof all);
        int64_t ages[M];
        gather_rows(&part, part.unused, sizeof(int64_t), ages);
        assert_memory_equal(ages, one.unused, sizeof ages);
        reseeded += st1.reseeded;
        random_rows(s, N, 100 + (uint64_t)step);
    }
    assert_true(reseeded > 0);
    mm_bank_window_stats w1, wp;
    assert_int_equal(mm_bank_window(&one, &w1), MM_OK);
    assert_int_equal(mm_bank_window(&part, &wp), MM_OK);
    assert_int_equal(w1.steps, 6);
    assert_int_equal(wp.steps, 6);
    assert_int_equal(w1.anchors_hit, wp.anchors_hit);
    assert_int_equal(w1.reseeded, reseeded);
    assert_int_equal(wp.reseeded, reseeded);
    mm_bank_destroy(&one);
    mm_bank_destroy(&part);
}

static void test_partitioned_equals_single(void **state)
{
    (void)state;
    /* re-seed an anchor as soon as it misses one step, so re-seeding is exercised */
    partitioned_equals_single(MM_BANK_INIT_RANDOM, MM_BANK_RESEED_FIRST, 1);
    partitioned_equals_single(MM_BANK_INIT_RANDOM, MM_BANK_RESEED_FARTHEST, 1);
    partitioned_equals_single(MM_BANK_INIT_BATCH, MM_BANK_RESEED_FARTHEST, 3);
    partitioned_equals_single(MM_BANK_INIT_BATCH, MM_BANK_RESEED_FIRST, 3);
}

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (int j = 0; j < DIM; j++) s += (double)a[j] * b[j];
    return s;
}

static void reseed_takes_rows_in_index_order(int reseed_rule)
{
    mm_memory_bank b;
    assert_int_equal(mm_bank_init(&b, &WORLD, M, DIM, 5, 0.1f, 0.5f, 1), MM_OK);
    assert_int_equal(mm_bank_set_rules(&b, MM_BANK_INIT_RANDOM, reseed_rule), MM_OK);
    float s[N * DIM], all[M * DIM];
    random_rows(s, N, 11);
    gather_anchors(&b, all);
    /* FARTHEST: rows by increasing cosine to anchor 0 (before its update), recomputed here */
    int order[N];
    for (int i = 0; i < N; i++) order[i] = i;
    if (reseed_rule == MM_BANK_RESEED_FARTHEST)
        for (int i = 1; i < N; i++)
            for (int j = i; j > 0 && dot(s + order[j] * DIM, all) < dot(s + order[j - 1] * DIM, all); j--) {
                int x = order[j];
                order[j] = order[j - 1];
                order[j - 1] = x;
            }
    int64_t assign[N];
    for (int i = 0; i < N; i++) assign[i] = 0; /* everyone on anchor 0: all others idle */
    mm_bank_stats st;
    assert_int_equal(mm_bank_update(&b, s, assign, N, &st), MM_OK);
    assert_int_equal(st.reseeded, M - 1);
    assert_int_equal(st.anchors_hit, 1);
    assert_true(st.entropy_bits == 0);
    gather_anchors(&b, all);
    /* anchor j >= 1 is now the (j - 1)-th row of the order */
    for (int j = 1; j < M; j++) assert_true(tu_max_abs_diff(all + j * DIM, s + order[j - 1] * DIM, DIM) < 1e-6);
    if (reseed_rule == MM_BANK_RESEED_FARTHEST) assert_true(order[0] != 0 || order[1] != 1); /* a different order */
    mm_bank_window_stats w;
    assert_int_equal(mm_bank_window(&b, &w), MM_OK);
    assert_true(w.steps == 1 && w.anchors_hit == 1 && w.reseeded == M - 1);
    assert_int_equal(mm_bank_window(&b, &w), MM_OK); /* a new window */
    assert_true(w.steps == 0 && w.anchors_hit == 0 && w.reseeded == 0);
    mm_bank_destroy(&b);
}

static void test_reseed_takes_rows_in_index_order(void **state)
{
    (void)state;
    reseed_takes_rows_in_index_order(MM_BANK_RESEED_FIRST);
    reseed_takes_rows_in_index_order(MM_BANK_RESEED_FARTHEST);
}

static void test_entropy_in_bits(void **state)
{
    (void)state;
    mm_memory_bank b;
    assert_int_equal(mm_bank_init(&b, &WORLD, M, DIM, 5, 0.1f, 0.5f, 1), MM_OK);
    mm_bank_stats st;
    mm_bank_assign_stats(&b, (const int64_t[]){7, 2, 9, 2, 4, 7, 9, 4}, 8, &st); /* four anchors, twice each */
    assert_int_equal(st.anchors_hit, 4);
    assert_float_equal(st.entropy_bits, 2.0, 1e-12);
    assert_int_equal(mm_bank_set_rules(&b, 2, MM_BANK_RESEED_FIRST), MM_ERR_ARG);
    mm_error_clear();
    mm_bank_destroy(&b);
}

enum { MC = 47, NC = 32 }; /* 47 anchors: 16, 16, 15 on three ranks */

/* NC unit rows within ~0.05 rad of one direction: a collapsed batch */
static void collapsed_rows(float *s, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int i = 0; i < NC; i++) {
        double q = 0;
        for (int j = 0; j < DIM; j++) {
            s[i * DIM + j] = (j == 0 ? 1.0f : 0.0f) + 0.05f * mm_rng_normal(&r);
            q += (double)s[i * DIM + j] * s[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++) s[i * DIM + j] /= (float)sqrt(q);
    }
}

/* Ten steps of fresh collapsed batches; returns the last step's statistics and the
 * anchors re-seeded over the run. */
static mm_bank_stats run_collapsed(int init_rule, int reseed_rule, int64_t reseed_after, int64_t *reseeded)
{
    mm_memory_bank b;
    assert_int_equal(mm_bank_init(&b, &WORLD, MC, DIM, 3, 0.1f, 0.99f, reseed_after), MM_OK);
    assert_int_equal(mm_bank_set_rules(&b, init_rule, reseed_rule), MM_OK);
    mm_bank_stats st = {0};
    *reseeded = 0;
    for (int step = 0; step < 10; step++) {
        float s[NC * DIM];
        collapsed_rows(s, 500 + (uint64_t)step);
        int64_t assign[NC];
        mm_tape t;
        assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
        mm_tensor *x, *l;
        assert_int_equal(mm_tensor_wrap(&t, s, NULL, 2, (int64_t[]){NC, DIM}, &x), MM_OK);
        assert_int_equal(mm_bank_loss(&b, &t, x, assign, &l), MM_OK);
        mm_tape_destroy(&t);
        assert_int_equal(mm_bank_update(&b, s, assign, NC, &st), MM_OK);
        if (step == 0) assert_true(st.anchors_hit <= 2); /* the random anchors: collapsed */
        *reseeded += st.reseeded;
    }
    mm_bank_destroy(&b);
    return st;
}

static void test_collapsed_batch_spreads_over_the_bank(void **state)
{
    (void)state;
    int64_t reseeded;
    /* the golden rule (random anchors, 1000 idle steps): stays on one or two anchors */
    mm_bank_stats old = run_collapsed(MM_BANK_INIT_RANDOM, MM_BANK_RESEED_FIRST, 1000, &reseeded);
    assert_true(old.anchors_hit <= 2);
    assert_int_equal(reseeded, 0);
    /* the batch init alone (no idle anchor reaches 1000 steps), re-seeding alone (from
     * random anchors), and both: the bank is re-seeded from the batches and the
     * assignment spreads */
    const struct { int init, reseed, after; } rules[4] = {{MM_BANK_INIT_BATCH, MM_BANK_RESEED_FARTHEST, 1000},
                                                          {MM_BANK_INIT_RANDOM, MM_BANK_RESEED_FARTHEST, 2},
                                                          {MM_BANK_INIT_RANDOM, MM_BANK_RESEED_FIRST, 2},
                                                          {MM_BANK_INIT_BATCH, MM_BANK_RESEED_FIRST, 5}};
    for (int k = 0; k < 4; k++) {
        mm_bank_stats st = run_collapsed(rules[k].init, rules[k].reseed, rules[k].after, &reseeded);
        if (WORLD.rank == 0)
            printf("  init %d, re-seed %d after %d: %lld anchors in use, %.2f bits, %lld re-seeded\n", rules[k].init,
                   rules[k].reseed, rules[k].after, (long long)st.anchors_hit, st.entropy_bits, (long long)reseeded);
        assert_true(reseeded >= MC - 2);
        assert_true(st.anchors_hit >= NC / 2);
        assert_true(st.entropy_bits >= 3.5); /* of at most log2(32) = 5 */
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) || mm_dist_init(&SELF, MPI_COMM_SELF)) MPI_Abort(MPI_COMM_WORLD, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partitioned_equals_single),
        cmocka_unit_test(test_reseed_takes_rows_in_index_order),
        cmocka_unit_test(test_entropy_in_bits),
        cmocka_unit_test(test_collapsed_batch_spreads_over_the_bank),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return failed;
}
