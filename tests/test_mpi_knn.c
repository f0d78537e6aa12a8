/* MPI tests of the distributed kNN (knn.h): every backend, on any rank count and any
 * row layout (uneven, ranks with 0 rows), gives the lists of a serial brute force in
 * double precision with the same tie rule, bit for bit; on well-separated data also
 * the lists of mm_knn_cosine (hypergraph.h). Data with exact ties (duplicate rows,
 * rows scaled by powers of two, zero rows), near ties at 1e-3, and rows so alike that
 * ranking float GEMM values goes wrong. Errors agreed on every rank. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/alloc.h"
#include "mmsa/hypergraph.h"
#include "mmsa/knn.h"
#include "mmsa/rng.h"
#include "testutil.h"

static mm_dist D;

static const mm_knn_backend BACKENDS[3] = {MM_KNN_ALLGATHER, MM_KNN_RING, MM_KNN_SCALAPACK};

/* ---- brute-force reference, written from the contract ---------------------------- */

/* x / max(|x|, 1e-12): double sum of squares, float sqrt and reciprocal */
static void ref_normalise(const float *x, int64_t n, int64_t dim, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t p = 0; p < dim; p++) ss += (double)x[i * dim + p] * (double)x[i * dim + p];
        float nrm = (float)sqrt(ss), inv = 1.0f / fmaxf(nrm, 1e-12f);
        for (int64_t p = 0; p < dim; p++) out[i * dim + p] = x[i * dim + p] * inv;
    }
}

static double ref_score(const float *a, const float *b, int64_t dim)
{
    double s = 0;
    for (int64_t p = 0; p < dim; p++) s += (double)a[p] * (double)b[p];
    return s;
}

typedef struct {
    double s;
    int64_t j;
} scored;

static int cmp_scored(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* knn [n, k]; sorted [n, n-1] (optional) receives every row's full ranking */
static void ref_knn(const float *x, int64_t n, int64_t dim, int k, int64_t *knn, scored *sorted)
{
    float *xn = mm_malloc((size_t)(n * dim) * sizeof(float));
    scored *row = mm_malloc((size_t)n * sizeof(scored));
    ref_normalise(x, n, dim, xn);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++)
            if (j != i) row[m++] = (scored){ref_score(xn + i * dim, xn + j * dim, dim), j};
        qsort(row, (size_t)m, sizeof *row, cmp_scored);
        for (int t = 0; t < k; t++) knn[i * k + t] = row[t].j;
        if (sorted) memcpy(sorted + i * (n - 1), row, (size_t)(n - 1) * sizeof(scored));
    }
    mm_free_sized(row, (size_t)n * sizeof(scored));
    mm_free_sized(xn, (size_t)(n * dim) * sizeof(float));
}

/* ---- layouts and data -------------------------------------------------------------- */

enum { LAYOUT_BLOCK, LAYOUT_UNEVEN, LAYOUT_LAST, N_LAYOUTS };

/* counts [size]: block partition; uneven with every third rank (1, 4, ...) empty; all on the last rank */
static void make_counts(int64_t n, int layout, int64_t *counts)
{
    int P = D.size;
    if (layout == LAYOUT_BLOCK) {
        for (int r = 0; r < P; r++) {
            int64_t s;
            mm_dist_block(n, P, r, &s, &counts[r]);
        }
        return;
    }
    if (layout == LAYOUT_LAST) {
        for (int r = 0; r < P; r++) counts[r] = r == P - 1 ? n : 0;
        return;
    }
    int64_t wsum = 0, given = 0;
    for (int r = 0; r < P; r++) wsum += r % 3 == 1 ? 0 : r + 1;
    for (int r = 0; r < P; r++) {
        counts[r] = r % 3 == 1 ? 0 : n * (r + 1) / wsum;
        given += counts[r];
    }
    counts[0] += n - given;
}

static int64_t first_row(const int64_t *counts)
{
    int64_t s = 0;
    for (int r = 0; r < D.rank; r++) s += counts[r];
    return s;
}

static float *gaussian(int64_t n, int64_t dim, uint64_t seed)
{
    float *x = mm_malloc((size_t)(n * dim) * sizeof(float));
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int64_t i = 0; i < n * dim; i++) x[i] = mm_rng_normal(&r);
    return x;
}

static void copy_row(float *x, int64_t dim, int64_t to, int64_t from, float scale)
{
    for (int64_t p = 0; p < dim; p++) x[to * dim + p] = scale * x[from * dim + p];
}

/* ---- the check every test uses ----------------------------------------------------- */

/* Runs every backend on every layout with a few option sets and compares the lists of
 * every rank, and the gathered global lists, with want [n, k]. */
static void check_all(const float *x, int64_t n, int64_t dim, int k, const int64_t *want)
{
    /* {tile bytes, ScaLAPACK block, grid rows}: defaults, tiny tiles, blocks of 1 to 5,
     * 1 x P and P x 1 grids beside the automatic one */
    const mm_knn_opts opts[] = {{0, 0, 0}, {64, 1, 0}, {256, 2, 1}, {1024, 5, 0}, {2048, 3, D.size}};
    int64_t counts[64];
    assert_true(D.size <= 64);
    int64_t *global = mm_malloc((size_t)(n * k) * sizeof(int64_t));
    for (int layout = 0; layout < N_LAYOUTS; layout++) {
        make_counts(n, layout, counts);
        int64_t r0 = first_row(counts), nl = counts[D.rank];
        int64_t *local = mm_malloc((size_t)(nl * k + 1) * sizeof(int64_t));
        for (int b = 0; b < 3; b++)
            for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
                size_t live = mm_alloc_live_bytes();
                mm_knn_stats st;
                memset(local, 0xff, (size_t)(nl * k + 1) * sizeof(int64_t));
                mm_status s = mm_knn_ex(BACKENDS[b], &D, x + r0 * dim, nl, counts, dim, k, &opts[o], local, &st);
                if (s != MM_OK) mm_error_print(stderr, D.rank);
                assert_int_equal(s, MM_OK);
                assert_int_equal(mm_alloc_live_bytes(), live);
                /* agreed verdicts: a failure on one rank must not leave the others
                 * waiting in a collective */
                int ok[2] = {memcmp(local, want + r0 * k, (size_t)(nl * k) * sizeof(int64_t)) == 0, 0};
                if (!ok[0])
                    fprintf(stderr, "rank %d: %s, layout %d, options %zu differ from the reference\n", D.rank,
                            mm_knn_backend_name(BACKENDS[b]), layout, o);
                assert_int_equal(mm_knn_allgather_lists(&D, local, counts, k, global), MM_OK);
                ok[1] = memcmp(global, want, (size_t)(n * k) * sizeof(int64_t)) == 0;
                MPI_Allreduce(MPI_IN_PLACE, ok, 2, MPI_INT, MPI_MIN, D.comm);
                assert_true(ok[0] && ok[1]);
                /* every answer was scored exactly somewhere */
                int64_t rescored = st.rescored;
                MPI_Allreduce(MPI_IN_PLACE, &rescored, 1, MPI_INT64_T, MPI_SUM, D.comm);
                assert_true(rescored >= n * k);
            }
        mm_free_sized(local, (size_t)(nl * k + 1) * sizeof(int64_t));
    }
    mm_free_sized(global, (size_t)(n * k) * sizeof(int64_t));
}

/* mm_knn_cosine (one float GEMM over the whole set, hypergraph.h) on every rank */
static void serial_cosine(const float *x, int64_t n, int64_t dim, int k, int64_t *knn)
{
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
    assert_int_equal(mm_knn_cosine(&t, x, n, dim, k, knn, NULL), MM_OK);
    mm_tape_destroy(&t);
}

/* ---- tests --------------------------------------------------------------------------- */

/* Gaussian rows with exact ties (copies, power-of-two multiples, a zero row) and near
 * ties (two rows within 1e-3 of a third): separated enough that float GEMM values rank
 * them right, so both serial references apply. */
static void test_ties_match_both_serial_references(void **state)
{
    (void)state;
    enum { N = 101, DIM = 20, K = 6 };
    float *x = gaussian(N, DIM, 11);
    copy_row(x, DIM, 7, 3, 1.0f);    /* same rank as 3 under most layouts */
    copy_row(x, DIM, 95, 3, 1.0f);   /* another rank */
    copy_row(x, DIM, 90, 12, 4.0f);  /* x and 4x normalise to the same bits */
    copy_row(x, DIM, 33, 80, 0.5f);
    copy_row(x, DIM, 60, 0, 0.0f);   /* zero row: every score 0, its neighbours 0..K (1..K+1 skipping self) */
    mm_rng r;
    mm_rng_init(&r, 12, MM_STREAM_USER);
    for (int64_t p = 0; p < DIM; p++) {
        x[70 * DIM + p] = x[20 * DIM + p] + 3e-2f * mm_rng_normal(&r);
        x[71 * DIM + p] = x[20 * DIM + p] + 3e-2f * mm_rng_normal(&r);
    }
    int64_t want[N * K], cosine[N * K];
    scored *sorted = mm_malloc((size_t)N * (N - 1) * sizeof(scored));
    ref_knn(x, N, DIM, K, want, sorted);
    /* the data is what it claims: ranking gaps in the top K + 1 are 0 or clearly above
     * float rounding, ties exist, near ties exist */
    int exact_ties = 0, near_ties = 0;
    for (int64_t i = 0; i < N; i++)
        for (int t = 0; t < K; t++) {
            double gap = sorted[i * (N - 1) + t].s - sorted[i * (N - 1) + t + 1].s;
            if (!(gap == 0 || gap > 1e-5))
                fprintf(stderr, "row %lld pos %d: %lld %.17g vs %lld %.17g\n", (long long)i, t, (long long)sorted[i * (N - 1) + t].j,
                        sorted[i * (N - 1) + t].s, (long long)sorted[i * (N - 1) + t + 1].j, sorted[i * (N - 1) + t + 1].s);
            assert_true(gap == 0 || gap > 1e-5);
            exact_ties += gap == 0;
            near_ties += gap > 0 && gap < 1e-3;
        }
    assert_true(exact_ties >= 10);
    assert_true(near_ties >= 2);
    for (int t = 0; t < K; t++) assert_int_equal(want[60 * K + t], t);
    serial_cosine(x, N, DIM, K, cosine);
    assert_memory_equal(cosine, want, sizeof want);
    check_all(x, N, DIM, K, want);
    mm_free_sized(sorted, (size_t)N * (N - 1) * sizeof(scored));
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

/* Two tight clusters, rows 1e-4 (relative) from their centre: the cosines inside a
 * cluster are 1 - O(1e-8) and differ by about the rounding of a float dot product, so
 * the order of float GEMM values is noise. Every backend on every rank count must
 * still give the exact-order lists (a shortlist margin of 0 fails here). */
static void test_rounding_level_ties_identical_everywhere(void **state)
{
    (void)state;
    enum { N = 64, DIM = 48, K = 5 };
    float *c = gaussian(2, DIM, 21), *x = gaussian(N, DIM, 22);
    for (int64_t i = 0; i < N; i++)
        for (int64_t p = 0; p < DIM; p++) x[i * DIM + p] = c[(i % 2) * DIM + p] + 1e-4f * x[i * DIM + p];
    int64_t want[N * K], cosine[N * K];
    ref_knn(x, N, DIM, K, want, NULL);
    serial_cosine(x, N, DIM, K, cosine);
    /* proof that the data is hard: ranking the float GEMM values gets some lists wrong */
    assert_true(memcmp(cosine, want, sizeof want) != 0);
    for (int64_t i = 0; i < N; i++)
        for (int t = 0; t < K; t++) assert_int_equal(want[i * K + t] % 2, i % 2); /* own cluster */
    check_all(x, N, DIM, K, want);
    mm_free_sized(c, (size_t)(2 * DIM) * sizeof(float));
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

/* Every row the same direction (scaled by powers of two): all scores tie, so each list
 * is the smallest indices other than the row itself. Expected lists written out. */
static void test_all_rows_tied_gives_smallest_indices(void **state)
{
    (void)state;
    enum { N = 40, DIM = 16, K = 7 };
    float *x = gaussian(N, DIM, 31);
    for (int64_t i = 1; i < N; i++) copy_row(x, DIM, i, 0, (float)(1 << (i % 5)));
    int64_t want[N * K];
    for (int64_t i = 0; i < N; i++) {
        int t = 0;
        for (int64_t j = 0; t < K; j++)
            if (j != i) want[i * K + t++] = j;
    }
    check_all(x, N, DIM, K, want);
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

/* k = N - 1: each list is the full ranking of every other row. */
static void test_k_is_n_minus_one(void **state)
{
    (void)state;
    enum { N = 13, DIM = 5, K = N - 1 };
    float *x = gaussian(N, DIM, 41);
    copy_row(x, DIM, 9, 2, 2.0f);
    int64_t want[N * K];
    ref_knn(x, N, DIM, K, want, NULL);
    for (int64_t i = 0; i < N; i++) {
        int seen[N] = {0};
        for (int t = 0; t < K; t++) seen[want[i * K + t]]++;
        for (int64_t j = 0; j < N; j++) assert_int_equal(seen[j], j != i);
    }
    check_all(x, N, DIM, K, want);
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

/* Errors are agreed: a bad argument on one rank fails the call on every rank, and the
 * next valid call works. */
static void test_errors_agreed_on_every_rank(void **state)
{
    (void)state;
    enum { N = 17, DIM = 4 };
    float *x = gaussian(N, DIM, 51);
    int64_t counts[64], out[N * N];
    make_counts(N, LAYOUT_BLOCK, counts);
    int64_t r0 = first_row(counts), nl = counts[D.rank];
    const float *mine = x + r0 * DIM;
    for (int b = 0; b < 3; b++) {
        mm_knn_backend be = BACKENDS[b];
        assert_int_equal(mm_knn(be, &D, mine, nl, counts, DIM, N, out, NULL), MM_ERR_ARG);
        assert_non_null(strstr(mm_error_message(), "k = 17"));
        assert_int_equal(mm_knn(be, &D, mine, nl, counts, DIM, N + 5, out, NULL), MM_ERR_ARG);
        assert_int_equal(mm_knn(be, &D, mine, nl, counts, DIM, 0, out, NULL), MM_ERR_ARG);
        assert_int_equal(mm_knn(be, &D, mine, nl, counts, 0, 3, out, NULL), MM_ERR_ARG);
        /* rank 0 alone claims a row it does not have */
        assert_int_equal(mm_knn(be, &D, mine, nl + (D.rank == 0), counts, DIM, 3, out, NULL), MM_ERR_ARG);
        if (D.rank != 0) assert_non_null(strstr(mm_error_message(), "rank 0"));
        /* the last rank alone passes a different k */
        if (D.size > 1) {
            assert_int_equal(mm_knn(be, &D, mine, nl, counts, DIM, D.rank == D.size - 1 ? 4 : 3, out, NULL), MM_ERR_ARG);
            assert_non_null(strstr(mm_error_message(), "disagree"));
        }
        /* a NaN in the last rank's rows */
        float *bad = mm_malloc((size_t)(nl * DIM + 1) * sizeof(float));
        memcpy(bad, mine, (size_t)(nl * DIM) * sizeof(float));
        if (D.rank == D.size - 1 && nl > 0) bad[nl * DIM - 1] = NAN;
        assert_int_equal(mm_knn(be, &D, bad, nl, counts, DIM, 3, out, NULL), MM_ERR_NUMERIC);
        if (D.rank == D.size - 1) assert_non_null(strstr(mm_error_message(), "non-finite"));
        mm_free_sized(bad, (size_t)(nl * DIM + 1) * sizeof(float));
        mm_error_clear();
        assert_int_equal(mm_knn(be, &D, mine, nl, counts, DIM, 3, out, NULL), MM_OK);
    }
    assert_int_equal(mm_knn((mm_knn_backend)7, &D, mine, nl, counts, DIM, 3, out, NULL), MM_ERR_ARG);
    mm_knn_opts neg = {0, -2, 0}, grid = {0, 0, D.size + 1};
    assert_int_equal(mm_knn_ex(MM_KNN_SCALAPACK, &D, mine, nl, counts, DIM, 3, &neg, out, NULL), MM_ERR_ARG);
    assert_int_equal(mm_knn_ex(MM_KNN_SCALAPACK, &D, mine, nl, counts, DIM, 3, &grid, out, NULL), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "grid rows"));
    mm_error_clear();
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

/* What the stats promise: the ring moves every block but the right neighbour's once
 * and holds two blocks; allgather receives everything it lacks; the grid is the most
 * square factorisation (2x1, 3x1, 2x2). */
static void test_stats_traffic_memory_grid(void **state)
{
    (void)state;
    enum { N = 240, DIM = 64, K = 8 };
    const size_t tile = 4096;
    float *x = gaussian(N, DIM, 61);
    int64_t counts[64], out[N * K];
    for (int layout = 0; layout < N_LAYOUTS; layout++) {
        int64_t maxc = 0;
        make_counts(N, layout, counts);
        for (int r = 0; r < D.size; r++) maxc = counts[r] > maxc ? counts[r] : maxc;
        int64_t r0 = first_row(counts), nl = counts[D.rank];
        const double row = DIM * sizeof(float);
        mm_knn_opts o = {tile, 0, 0};
        mm_knn_stats ag, ring, sl;
        assert_int_equal(mm_knn_ex(MM_KNN_ALLGATHER, &D, x + r0 * DIM, nl, counts, DIM, K, &o, out, &ag), MM_OK);
        assert_int_equal(mm_knn_ex(MM_KNN_RING, &D, x + r0 * DIM, nl, counts, DIM, K, &o, out, &ring), MM_OK);
        assert_int_equal(mm_knn_ex(MM_KNN_SCALAPACK, &D, x + r0 * DIM, nl, counts, DIM, K, &o, out, &sl), MM_OK);
        if (D.size == 1) {
            assert_true(ag.bytes_sent == 0 && ag.bytes_recv == 0 && ring.bytes_sent == 0 && ring.bytes_recv == 0);
        } else {
            assert_true(ag.bytes_recv == (double)(N - nl) * row);
            assert_true(ring.bytes_sent == (double)(N - counts[(D.rank + 1) % D.size]) * row);
            assert_true(ring.bytes_recv == (double)(N - nl) * row);
            assert_true(sl.bytes_psgemm_model > 0);
        }
        /* ring: own normalised rows, two blocks of the largest rank, one tile, the
         * per-row state (+ small arrays); allgather: at least the whole set */
        double ring_bound = (double)(nl + 2 * maxc) * row + tile + (double)nl * K * 20 + nl * 24 + 4096;
        assert_true((double)ring.peak_scratch_bytes <= ring_bound);
        assert_true((double)ag.peak_scratch_bytes >= (double)N * row);
        if (D.size >= 3 && layout == LAYOUT_BLOCK) assert_true(ring.peak_scratch_bytes < ag.peak_scratch_bytes);
        int pc = 1; /* most square, taller than wide */
        for (int q = 1; q * q <= D.size; q++)
            if (D.size % q == 0) pc = q;
        assert_int_equal(sl.grid_rows, D.size / pc);
        assert_int_equal(sl.grid_cols, pc);
        assert_true(ag.seconds > 0 && ring.seconds > 0 && sl.seconds > 0);
    }
    mm_free_sized(x, (size_t)(N * DIM) * sizeof(float));
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD) != MM_OK) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_match_both_serial_references),
        cmocka_unit_test(test_rounding_level_ties_identical_everywhere),
        cmocka_unit_test(test_all_rows_tied_gives_smallest_indices),
        cmocka_unit_test(test_k_is_n_minus_one),
        cmocka_unit_test(test_errors_agreed_on_every_rank),
        cmocka_unit_test(test_stats_traffic_memory_grid),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
