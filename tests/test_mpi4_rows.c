/* The global-batch terms split by rows equal the replicated ones: the InfoNCE of each
 * rank's rows against the gathered columns (mm_info_nce_rows) and the hypergraph
 * propagation for each rank's own hyperedges and vertices (mm_hypergraph_propagate_rows)
 * give the loss, the output rows and every input gradient of the single-process op.
 * Run by make check on 2 and 4 ranks; each run tries every communicator size from 1 to
 * its own (sub-communicators of the first s ranks), with uneven shares and a rank that
 * holds no row. */
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

#include "mmsa/dist.h"
#include "mmsa/hypergraph.h"
#include "mmsa/loss.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"
#include "testutil.h"

static int world_rank, world_size;

static void random_matrix(float *x, int64_t n, int64_t d, uint64_t seed, bool normalise)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int64_t i = 0; i < n; i++) {
        double q = 0;
        for (int64_t j = 0; j < d; j++) {
            x[i * d + j] = mm_rng_normal(&r);
            q += (double)x[i * d + j] * x[i * d + j];
        }
        if (normalise)
            for (int64_t j = 0; j < d; j++) x[i * d + j] /= (float)sqrt(q);
    }
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mb = fmax(mb, fabs((double)b[i]));
    }
    return mb > 0 ? md / mb : md;
}

/* The first s ranks of the world as an mm_dist (false on the others). */
static bool sub_dist(int s, mm_dist *d)
{
    MPI_Comm c;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank < s ? 0 : MPI_UNDEFINED, world_rank, &c);
    if (c == MPI_COMM_NULL) return false;
    assert_int_equal(mm_dist_init(d, c), MM_OK);
    MPI_Comm_free(&c);
    return true;
}

/* This rank's share of n rows on the first s ranks (false: not one of them). */
typedef struct {
    mm_dist d;
    int64_t counts[64], row0, m;
} share;

static bool take_share(int s, int64_t n, share *sh)
{
    if (!sub_dist(s, &sh->d)) return false;
    for (int r = 0; r < sh->d.size; r++) {
        int64_t s0;
        mm_dist_block(n, sh->d.size, r, &s0, &sh->counts[r]);
        if (r == sh->d.rank) sh->row0 = s0;
    }
    sh->m = sh->counts[sh->d.rank];
    return true;
}

/* ---- InfoNCE split by rows ---------------------------------------------------------------- */

/* Every rank of the world agrees on the outcome before cmocka is told (a failure on one
 * rank alone would leave the others in the next collective). */
static void assert_all_ok(int bad)
{
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    assert_int_equal(bad, 0);
}

static void check_info_nce(int64_t n, int64_t dim, float tau, uint64_t seed)
{
    int bad = 0;
    float *A = malloc((size_t)(n * dim) * sizeof(float)), *B = malloc((size_t)(n * dim) * sizeof(float));
    float *gA = calloc((size_t)(n * dim), sizeof(float)), *gB = calloc((size_t)(n * dim), sizeof(float));
    random_matrix(A, n, dim, seed, true);
    random_matrix(B, n, dim, seed + 1, true);
    /* the replicated op on the whole batch */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 18), MM_OK);
    mm_tensor *a, *b, *y;
    assert_int_equal(mm_tensor_wrap(&t, A, gA, 2, (int64_t[]){n, dim}, &a), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, B, gB, 2, (int64_t[]){n, dim}, &b), MM_OK);
    assert_int_equal(mm_info_nce(&t, a, b, tau, &y), MM_OK);
    double ref = y->data[0];
    assert_int_equal(mm_tape_backward(&t, y), MM_OK);
    mm_tape_destroy(&t);

    for (int s = 1; s <= world_size; s++) {
        share sh;
        if (!take_share(s, n, &sh)) continue;
        mm_dist d = sh.d;
        int64_t *counts = sh.counts, row0 = sh.row0, m = sh.m;
        float *ga = calloc((size_t)((m ? m : 1) * dim), sizeof(float));
        float *gb = calloc((size_t)((m ? m : 1) * dim), sizeof(float));
        assert_int_equal(mm_tape_init(&t, 1 << 18), MM_OK);
        mm_tensor *al, *bl, *ball, *part;
        assert_int_equal(mm_tensor_wrap(&t, A + row0 * dim, ga, 2, (int64_t[]){m, dim}, &al), MM_OK);
        assert_int_equal(mm_tensor_wrap(&t, B + row0 * dim, gb, 2, (int64_t[]){m, dim}, &bl), MM_OK);
        assert_int_equal(mm_dist_allgather_rows(&t, &d, bl, counts, &ball), MM_OK);
        mm_col_reducer red = mm_dist_col_reducer(&d);
        mm_status st = mm_info_nce_rows(&t, al, ball, row0, tau, &red, &part);
        if (st) mm_error_print(stderr, d.rank);
        assert_int_equal(st, MM_OK);
        double total = part->data[0];
        assert_int_equal(mm_dist_allreduce_double(&d, &total, 1), MM_OK);
        assert_int_equal(mm_tape_backward(&t, part), MM_OK);
        double e_loss = fabs(total - ref) / fabs(ref);
        double e_ga = m ? rel_err(ga, gA + row0 * dim, m * dim) : 0;
        double e_gb = m ? rel_err(gb, gB + row0 * dim, m * dim) : 0;
        if (d.rank == 0)
            printf("  info_nce n=%-3lld on %d rank(s): loss %.3e, dA %.3e, dB %.3e (rank 0; rows %lld..)\n",
                   (long long)n, s, e_loss, e_ga, e_gb, (long long)row0);
        if (e_loss > 1e-6 || e_ga > 1e-5 || e_gb > 1e-5) {
            printf("  rank %d of %d: info_nce_rows differs: loss %.3e dA %.3e dB %.3e\n", d.rank, s, e_loss, e_ga, e_gb);
            bad = 1;
        }
        mm_tape_destroy(&t);
        free(ga);
        free(gb);
        mm_dist_destroy(&d);
    }
    free(A);
    free(B);
    free(gA);
    free(gB);
    assert_all_ok(bad);
}

static void test_info_nce_rows_equals_replicated(void **state)
{
    (void)state;
    check_info_nce(11, 6, 0.2f, 1);  /* uneven shares on 2, 3, 4 ranks */
    check_info_nce(3, 4, 0.1f, 7);   /* on 4 ranks one rank holds no row */
    check_info_nce(40, 16, 0.07f, 3);
}

/* ---- hypergraph propagation split by rows --------------------------------------------------- */

static void check_propagate(int64_t n, int k, int64_t c, uint64_t seed)
{
    int bad = 0;
    /* neighbour lists: k distinct vertices other than the centre, seeded */
    int64_t *knn = malloc((size_t)(n * k) * sizeof(int64_t));
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int64_t h = 0; h < n; h++)
        for (int j = 0; j < k; j++) {
            int64_t v;
            bool again;
            do {
                v = (int64_t)(mm_rng_uniform(&r) * (double)n) % n;
                again = v == h;
                for (int q = 0; q < j; q++) again |= knn[h * k + q] == v;
            } while (again);
            knn[h * k + j] = v;
        }
    float *X = malloc((size_t)(n * c) * sizeof(float)), *W = malloc((size_t)(n * c) * sizeof(float));
    float *gX = calloc((size_t)(n * c), sizeof(float));
    random_matrix(X, n, c, seed + 1, false);
    random_matrix(W, n, c, seed + 2, false);
    /* replicated: y = G X, loss = sum(W * y) */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 18), MM_OK);
    mm_hypergraph *hg;
    mm_tensor *x, *w, *y, *wy, *l;
    assert_int_equal(mm_hypergraph_from_knn(&t, knn, n, k, &hg), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, X, gX, 2, (int64_t[]){n, c}, &x), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, W, NULL, 2, (int64_t[]){n, c}, &w), MM_OK);
    assert_int_equal(mm_hypergraph_propagate(&t, hg, x, &y), MM_OK);
    float *Y = malloc((size_t)(n * c) * sizeof(float));
    memcpy(Y, y->data, (size_t)(n * c) * sizeof(float));
    assert_int_equal(mm_mul(&t, w, y, &wy), MM_OK);
    assert_int_equal(mm_sum(&t, wy, MM_AXIS_ALL, &l), MM_OK);
    assert_int_equal(mm_tape_backward(&t, l), MM_OK);
    mm_tape_destroy(&t);

    for (int s = 1; s <= world_size; s++) {
        share sh;
        if (!take_share(s, n, &sh)) continue;
        mm_dist d = sh.d;
        int64_t *counts = sh.counts, row0 = sh.row0, m = sh.m;
        float *gx = calloc((size_t)((m ? m : 1) * c), sizeof(float));
        assert_int_equal(mm_tape_init(&t, 1 << 18), MM_OK);
        mm_tensor *xl, *wl, *yl, *wyl, *ll;
        assert_int_equal(mm_hypergraph_from_knn(&t, knn, n, k, &hg), MM_OK);
        assert_int_equal(mm_tensor_wrap(&t, X + row0 * c, gx, 2, (int64_t[]){m, c}, &xl), MM_OK);
        assert_int_equal(mm_tensor_wrap(&t, W + row0 * c, NULL, 2, (int64_t[]){m, c}, &wl), MM_OK);
        mm_status st = mm_hypergraph_propagate_rows(&t, &d, hg, xl, counts, row0, &yl);
        if (st) mm_error_print(stderr, d.rank);
        assert_int_equal(st, MM_OK);
        assert_int_equal(yl->shape[0], m);
        /* every rank's rows: bit for bit on one rank, within rounding on several */
        double e_y = m ? rel_err(yl->data, Y + row0 * c, m * c) : 0;
        assert_int_equal(mm_mul(&t, wl, yl, &wyl), MM_OK);
        assert_int_equal(mm_sum(&t, wyl, MM_AXIS_ALL, &ll), MM_OK);
        assert_int_equal(mm_tape_backward(&t, ll), MM_OK);
        double e_g = m ? rel_err(gx, gX + row0 * c, m * c) : 0;
        if (d.rank == 0)
            printf("  propagate n=%-3lld k=%d on %d rank(s): out %.3e, dX %.3e\n", (long long)n, k, s, e_y, e_g);
        if ((s == 1 && e_y != 0) || e_y > 1e-6 || e_g > 1e-6) {
            printf("  rank %d of %d: propagate_rows differs: out %.3e dX %.3e\n", d.rank, s, e_y, e_g);
            bad = 1;
        }
        mm_tape_destroy(&t);
        free(gx);
        mm_dist_destroy(&d);
    }
    free(knn);
    free(X);
    free(W);
    free(gX);
    free(Y);
    assert_all_ok(bad);
}

static void test_propagate_rows_equals_replicated(void **state)
{
    (void)state;
    check_propagate(13, 3, 5, 11);
    check_propagate(3, 2, 4, 5); /* on 4 ranks one rank holds no row */
    check_propagate(64, 8, 16, 9);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_nce_rows_equals_replicated),
        cmocka_unit_test(test_propagate_rows_equals_replicated),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
