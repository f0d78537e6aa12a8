/* bench_rows: time and memory per rank of the global-batch terms, split by rows (what
 * training runs) against replicated (every rank computing the whole batch, as before
 * issue 13), at fixed global batch N on the ranks it is launched with:
 *   - InfoNCE, forward and backward: mm_info_nce_rows on the rank's rows vs mm_info_nce
 *     on all N rows (d = --dim, the projection width);
 *   - HGNN propagation G X, forward and backward: mm_hypergraph_propagate_rows vs
 *     mm_hypergraph_propagate (k = --k neighbours, c = --width channels).
 *
 *   mpirun -n P bench_rows [--sizes 1024,4096] [--reps 5] [--dim 128] [--width 256] [--k 8]
 *
 * Per case: median over --reps of the slowest rank's wall time, and of the largest
 * per-rank CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID: the rank's own work,
 * meaningful when ranks outnumber cores; run with OMPI_MCA_mpi_yield_when_idle=1 then, so
 * that MPI waits do not spin), and the largest per-rank arena bytes the call used (its
 * matrices and scratch). Prints a table; writes <out>/bench_rows.csv (benchmarks/out or
 * $MMSA_BENCH_OUT; --append adds to it). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "mmsa/dist.h"
#include "mmsa/hypergraph.h"
#include "mmsa/loss.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"

#define CHECK(expr) BENCH_MPI_CHECK(expr, rank)

static int rank, size;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rows row0 .. row0 + n - 1 of a [N, d] matrix of unit rows, the same at any rank count. */
static void make_rows(int64_t row0, int64_t n, int64_t d, uint64_t seed, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        double q = 0;
        for (int64_t j = 0; j < d; j++) {
            float v = mm_rng_uniform_at(seed, (uint64_t)(row0 + i), (uint64_t)j) - 0.5f;
            x[i * d + j] = v;
            q += (double)v * v;
        }
        for (int64_t j = 0; j < d; j++) x[i * d + j] /= (float)sqrt(q);
    }
}

typedef struct {
    double wall, cpu, mib;
} sample;

typedef enum { INFO_NCE, PROPAGATE } term;

/* One forward + backward of the term, split or replicated; the tape is fresh. */
static sample run_once(mm_dist *d, term which, bool split, int64_t N, int64_t dim, int64_t width, int k,
                       const int64_t *counts, int64_t row0, const int64_t *knn)
{
    int64_t m = split ? counts[rank] : N, r0 = split ? row0 : 0, c = which == INFO_NCE ? dim : width;
    float *a = malloc((size_t)((m ? m : 1) * c) * sizeof(float)), *b = NULL;
    float *ga = calloc((size_t)((m ? m : 1) * c), sizeof(float)), *gb = NULL;
    make_rows(r0, m, c, 1, a);
    if (which == INFO_NCE) {
        b = malloc((size_t)((m ? m : 1) * c) * sizeof(float));
        gb = calloc((size_t)((m ? m : 1) * c), sizeof(float));
        make_rows(r0, m, c, 2, b);
    }
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    MPI_Barrier(d->comm);
    double w0 = bench_now(), c0 = thread_cpu();
    mm_tensor *x, *y, *l;
    CHECK(mm_tensor_wrap(&t, a, ga, 2, (int64_t[]){m, c}, &x));
    if (which == INFO_NCE) {
        mm_tensor *bl, *ball;
        CHECK(mm_tensor_wrap(&t, b, gb, 2, (int64_t[]){m, c}, &bl));
        if (split) {
            mm_col_reducer red = mm_dist_col_reducer(d);
            CHECK(mm_dist_allgather_rows(&t, d, bl, counts, &ball));
            CHECK(mm_info_nce_rows(&t, x, ball, r0, 0.1f, &red, &l));
        } else {
            CHECK(mm_info_nce(&t, x, bl, 0.1f, &l));
        }
    } else {
        mm_hypergraph *hg;
        CHECK(mm_hypergraph_from_knn(&t, knn, N, k, &hg));
        if (split) CHECK(mm_hypergraph_propagate_rows(&t, d, hg, x, counts, r0, &y));
        else CHECK(mm_hypergraph_propagate(&t, hg, x, &y));
        CHECK(mm_sum(&t, y, MM_AXIS_ALL, &l));
    }
    CHECK(mm_tape_backward(&t, l));
    double cpu = thread_cpu() - c0;
    double used = (double)t.arena.high_water;
    MPI_Barrier(d->comm);
    double wall = bench_now() - w0;
    mm_tape_destroy(&t);
    free(a);
    free(b);
    free(ga);
    free(gb);
    double v[3] = {wall, cpu, used / 1048576.0};
    MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_MAX, d->comm);
    return (sample){v[0], v[1], v[2]};
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int64_t sizes[16] = {1024, 4096};
    int n_sizes = 2, reps = 5, k = 8;
    int64_t dim = 128, width = 256;
    bool append = false;
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--sizes") && more) {
            n_sizes = 0;
            for (char *s = strtok(argv[++i], ","); s && n_sizes < 16; s = strtok(NULL, ",")) sizes[n_sizes++] = atoll(s);
        } else if (!strcmp(argv[i], "--reps") && more) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && more) dim = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--width") && more) width = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--k") && more) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--append")) append = true;
        else {
            if (rank == 0)
                fprintf(stderr, "usage: mpirun -n P bench_rows [--sizes 1024,4096] [--reps 5] [--dim 128] "
                                "[--width 256] [--k 8] [--append]\n");
            MPI_Finalize();
            return !(strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) ? 2 : 0;
        }
    }
    if (reps < 1 || reps > 1000 || dim < 1 || width < 1 || k < 1) {
        if (rank == 0) fprintf(stderr, "bench_rows: --reps, --dim, --width and --k must be positive\n");
        MPI_Finalize();
        return 2;
    }
    mm_dist d;
    CHECK(mm_dist_init(&d, MPI_COMM_WORLD));
    FILE *csv = NULL;
    char path[512];
    if (rank == 0) {
        if (append) {
            const char *dir = getenv("MMSA_BENCH_OUT");
            snprintf(path, sizeof path, "%s/bench_rows.csv", dir && *dir ? dir : "benchmarks/out");
            csv = fopen(path, "a");
        } else {
            csv = bench_csv("bench_rows", path, sizeof path);
            if (csv) fprintf(csv, "term,n,ranks,version,wall_ms,cpu_ms_per_rank,arena_mib_per_rank\n");
        }
        printf("%-10s %7s %5s %-10s %10s %14s %14s\n", "term", "N", "ranks", "version", "wall ms", "cpu ms/rank",
               "arena MiB/rank");
    }
    for (int si = 0; si < n_sizes; si++) {
        int64_t N = sizes[si];
        if (N < size || N <= k) {
            if (rank == 0) fprintf(stderr, "bench_rows: N = %lld is too small for %d ranks and k = %d\n", (long long)N, size, k);
            continue;
        }
        int64_t counts[1024], row0 = 0, *knn = malloc((size_t)(N * k) * sizeof(int64_t));
        for (int r = 0; r < size && r < 1024; r++) {
            int64_t s0;
            mm_dist_block(N, size, r, &s0, &counts[r]);
            if (r == rank) row0 = s0;
        }
        for (int64_t h = 0; h < N; h++) /* a fixed neighbour pattern: h+1 .. h+k (mod N) */
            for (int j = 0; j < k; j++) knn[h * k + j] = (h + 1 + j) % N;
        for (int which = INFO_NCE; which <= PROPAGATE; which++)
            for (int split = 1; split >= 0; split--) {
                double wall[1000], cpu[1000], mib = 0;
                for (int r = 0; r < reps; r++) {
                    sample s = run_once(&d, (term)which, split, N, dim, width, k, counts, row0, knn);
                    wall[r] = s.wall;
                    cpu[r] = s.cpu;
                    mib = fmax(mib, s.mib);
                }
                double w = bench_median(wall, reps) * 1e3, c = bench_median(cpu, reps) * 1e3;
                const char *name = which == INFO_NCE ? "info_nce" : "propagate", *ver = split ? "split" : "replicated";
                if (rank == 0) {
                    printf("%-10s %7lld %5d %-10s %10.2f %14.2f %14.2f\n", name, (long long)N, size, ver, w, c, mib);
                    if (csv) fprintf(csv, "%s,%lld,%d,%s,%.3f,%.3f,%.3f\n", name, (long long)N, size, ver, w, c, mib);
                }
            }
        free(knn);
    }
    if (csv) {
        fclose(csv);
        printf("wrote %s\n", path);
    }
    mm_dist_destroy(&d);
    MPI_Finalize();
    return 0;
}
