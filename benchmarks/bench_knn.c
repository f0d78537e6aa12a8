/* bench_knn: time and memory of the distributed kNN backends (knn.h) for N from 1k up,
 * d = 256, k = 8, on the ranks it is launched with.
 *
 *   mpirun -n 2 bench_knn [--max-n N] [--sizes 1000,5000] [--reps R] [--dim D] [--k K]
 *                         [--backends allgather,ring,scalapack] [--tile-mib M]
 *                         [--grid-rows R] [--write-data] [--append]
 *
 * Default sizes 1k, 2k, 5k, 10k, 20k, 50k (--max-n 200000 adds 100k and 200k). Data:
 * 64 Gaussian clusters (embedding-like), each rank generates only its own rows from a
 * counter-based RNG, so the set is the same at any rank count. Per backend: median and
 * minimum of --reps calls (time of the slowest rank), peak RSS of the calls (VmHWM reset
 * before them, max over ranks), the call's own scratch, bytes sent per rank, exact
 * rescorings per query, and whether the lists equal those of allgather (and, without
 * --write-data, those an earlier run at another rank count wrote).
 * --write-data writes the raw float32 rows [N, D] to <out>/knn_data_N.bin and the lists
 * [N, K] int64 to <out>/knn_ref_N.bin for benchmarks/bench_knn_faiss.sh.
 * Prints a table and writes <out>/bench_knn.csv (--append adds to it); <out> is
 * benchmarks/out or $MMSA_BENCH_OUT. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mmsa/alloc.h"
#include "mmsa/knn.h"
#include "mmsa/rng.h"

#define CHECK(expr) BENCH_MPI_CHECK(expr, rank)

static int rank;

/* Writing 5 to clear_refs resets VmHWM, which mm_peak_rss_mib reads, to the current RSS. */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

/* Rows row0 .. row0 + n - 1 of the benchmark set: centre (one of 64, drawn per row)
 * plus unit Gaussian noise of scale 0.6. */
static void make_rows(int64_t row0, int64_t n, int64_t dim, const float *centres, float *x)
{
    for (int64_t i = 0; i < n; i++) {
        mm_rng r;
        mm_rng_init(&r, 2024, ((uint64_t)1 << 32) + (uint64_t)(row0 + i));
        const float *c = centres + (int64_t)mm_rng_below(&r, 64) * dim;
        for (int64_t p = 0; p < dim; p++) x[i * dim + p] = c[p] + 0.6f * mm_rng_normal(&r);
    }
}

/* Every rank writes its part of a row-major array to path (collective open and close). */
static void write_part(const char *path, const void *buf, size_t bytes, size_t offset)
{
    MPI_File f;
    if (MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &f) != MPI_SUCCESS) {
        if (rank == 0) fprintf(stderr, "bench_knn: cannot write %s\n", path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_File_set_size(f, 0);
    const char *p = buf;
    for (size_t done = 0; done < bytes;) {
        int chunk = (int)(bytes - done > ((size_t)1 << 30) ? ((size_t)1 << 30) : bytes - done);
        MPI_File_write_at(f, (MPI_Offset)(offset + done), p + done, chunk, MPI_BYTE, MPI_STATUS_IGNORE);
        done += (size_t)chunk;
    }
    MPI_File_close(&f);
}

/* Every rank reads its part of path; 0 on every rank if the file is missing or short. */
static int read_part(const char *path, void *buf, size_t bytes, size_t offset)
{
    MPI_File f;
    int ok = MPI_File_open(MPI_COMM_WORLD, path, MPI_MODE_RDONLY, MPI_INFO_NULL, &f) == MPI_SUCCESS;
    if (!ok) return 0;
    MPI_Offset size = 0;
    MPI_File_get_size(f, &size);
    ok = (size_t)size >= offset + bytes;
    char *p = buf;
    for (size_t done = 0; ok && done < bytes;) {
        int chunk = (int)(bytes - done > ((size_t)1 << 30) ? ((size_t)1 << 30) : bytes - done);
        ok = MPI_File_read_at(f, (MPI_Offset)(offset + done), p + done, chunk, MPI_BYTE, MPI_STATUS_IGNORE) == MPI_SUCCESS;
        done += (size_t)chunk;
    }
    MPI_File_close(&f);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return ok;
}

typedef struct {
    int64_t n;
    mm_knn_backend be;
    int grid_r, grid_c;
    double med_s, min_s, rss_mib, scratch_mib, sent_mib, psgemm_mib, rescored_per_q, gflops;
    int identical;
} result;

static const char *out_dir(void)
{
    const char *d = getenv("MMSA_BENCH_OUT");
    return d && *d ? d : "benchmarks/out";
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    int64_t max_n = 50000, dim = 256;
    int reps = 3, k = 8, write_data = 0, append = 0;
    double tile_mib = 8;
    int grid_rows = 0;
    int64_t sizes[64] = {1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000};
    int n_sizes = 8, use_backend[3] = {1, 1, 1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            if (rank == 0)
                printf("usage: mpirun -n P bench_knn [--max-n N] [--sizes a,b,..] [--reps R] [--dim D] [--k K]\n"
                       "                 [--backends allgather,ring,scalapack] [--tile-mib M] [--grid-rows R]\n"
                       "                 [--write-data] [--append]\n");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--max-n") && i + 1 < argc) max_n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) dim = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tile-mib") && i + 1 < argc) tile_mib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--grid-rows") && i + 1 < argc) grid_rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--write-data")) write_data = 1;
        else if (!strcmp(argv[i], "--append")) append = 1;
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            for (char *s = strtok(argv[++i], ","); s && n_sizes < 64; s = strtok(NULL, ",")) sizes[n_sizes++] = atoll(s);
            max_n = INT64_MAX;
        } else if (!strcmp(argv[i], "--backends") && i + 1 < argc) {
            use_backend[0] = use_backend[1] = use_backend[2] = 0;
            for (char *s = strtok(argv[++i], ","); s; s = strtok(NULL, ","))
                for (int b = 0; b < 3; b++)
                    if (!strcmp(s, mm_knn_backend_name((mm_knn_backend)b))) use_backend[b] = 1;
        } else {
            if (rank == 0) fprintf(stderr, "bench_knn: unknown argument %s (see --help)\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    if (reps < 1 || k < 1 || dim < 1 || tile_mib <= 0) {
        if (rank == 0) fprintf(stderr, "bench_knn: --reps, --k, --dim, --tile-mib must be positive\n");
        MPI_Finalize();
        return 2;
    }
    mm_dist d;
    CHECK(mm_dist_init(&d, MPI_COMM_WORLD));
    mm_knn_opts opts = {(size_t)(tile_mib * 1048576.0), 0, grid_rows};
    float *centres = mm_malloc((size_t)(64 * dim) * sizeof(float));
    mm_rng cr;
    mm_rng_init(&cr, 2024, MM_STREAM_USER);
    for (int64_t i = 0; i < 64 * dim; i++) centres[i] = mm_rng_normal(&cr);
    int64_t *counts = mm_malloc((size_t)P * sizeof(int64_t));
    result res[64 * 3];
    int nres = 0;
    if (rank == 0)
        printf("bench_knn: %d rank(s), d = %lld, k = %d, %d rep(s), tile %.0f MiB, BLIS_NUM_THREADS=%s\n", P,
               (long long)dim, k, reps, tile_mib, getenv("BLIS_NUM_THREADS") ? getenv("BLIS_NUM_THREADS") : "unset");

    for (int si = 0; si < n_sizes; si++) {
        int64_t n = sizes[si];
        if (n > max_n || n <= k) continue;
        int64_t row0, nl;
        for (int r = 0; r < P; r++) mm_dist_block(n, P, r, &row0, &counts[r]);
        mm_dist_block(n, P, rank, &row0, &nl);
        float *x = mm_malloc((size_t)(nl * dim + 1) * sizeof(float));
        int64_t *ref = mm_malloc((size_t)(nl * k + 1) * sizeof(int64_t));
        int64_t *got = mm_malloc((size_t)(nl * k + 1) * sizeof(int64_t));
        if (!x || !ref || !got) {
            fprintf(stderr, "bench_knn: out of memory at N = %lld\n", (long long)n);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        make_rows(row0, nl, dim, centres, x);
        int have_ref = 0, earlier = 0, earlier_same = 1;
        for (int b = 0; b < 3; b++) {
            if (!use_backend[b]) continue;
            mm_knn_backend be = (mm_knn_backend)b;
            double *t = malloc((size_t)reps * sizeof *t);
            mm_knn_stats st;
            reset_peak_rss();
            for (int r = 0; r < reps; r++) {
                MPI_Barrier(MPI_COMM_WORLD);
                CHECK(mm_knn_ex(be, &d, x, nl, counts, dim, k, &opts, have_ref ? got : ref, &st));
                MPI_Allreduce(&st.seconds, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            }
            result *o = &res[nres++];
            o->n = n;
            o->be = be;
            o->grid_r = st.grid_rows;
            o->grid_c = st.grid_cols;
            o->med_s = bench_median(t, reps);
            o->min_s = t[0];
            free(t);
            o->gflops = 2.0 * (double)n * (double)n * (double)dim / o->med_s * 1e-9;
            double loc[4] = {mm_peak_rss_mib(), st.peak_scratch_bytes / 1048576.0, st.bytes_sent / 1048576.0,
                             st.bytes_psgemm_model / 1048576.0},
                   mx[4];
            MPI_Allreduce(loc, mx, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            o->rss_mib = mx[0];
            o->scratch_mib = mx[1];
            o->sent_mib = mx[2];
            o->psgemm_mib = mx[3];
            int64_t resc = st.rescored;
            MPI_Allreduce(MPI_IN_PLACE, &resc, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
            o->rescored_per_q = (double)resc / (double)n;
            if (!have_ref && !write_data) { /* lists of an earlier run (another rank count) */
                char path[1024];
                snprintf(path, sizeof path, "%s/knn_ref_%lld.bin", out_dir(), (long long)n);
                earlier = read_part(path, got, (size_t)(nl * k) * sizeof(int64_t), (size_t)(row0 * k) * sizeof(int64_t));
                if (earlier) earlier_same = memcmp(got, ref, (size_t)(nl * k) * sizeof(int64_t)) == 0;
            }
            int same = !have_ref || memcmp(got, ref, (size_t)(nl * k) * sizeof(int64_t)) == 0;
            same = same && earlier_same;
            MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
            o->identical = same;
            have_ref = 1;
            if (rank == 0) {
                printf("  N = %7lld  %-9s %8.3f s  peak RSS %7.1f MiB  (%.0f GFLOP/s)%s\n", (long long)n,
                       mm_knn_backend_name(be), o->med_s, o->rss_mib, o->gflops, same ? "" : "  LISTS DIFFER");
                fflush(stdout);
            }
        }
        if (write_data && have_ref) {
            char path[1024];
            mkdir(out_dir(), 0755);
            snprintf(path, sizeof path, "%s/knn_data_%lld.bin", out_dir(), (long long)n);
            write_part(path, x, (size_t)(nl * dim) * sizeof(float), (size_t)(row0 * dim) * sizeof(float));
            snprintf(path, sizeof path, "%s/knn_ref_%lld.bin", out_dir(), (long long)n);
            write_part(path, ref, (size_t)(nl * k) * sizeof(int64_t), (size_t)(row0 * k) * sizeof(int64_t));
        }
        mm_free_sized(got, (size_t)(nl * k + 1) * sizeof(int64_t));
        mm_free_sized(ref, (size_t)(nl * k + 1) * sizeof(int64_t));
        mm_free_sized(x, (size_t)(nl * dim + 1) * sizeof(float));
    }

    int bad = 0;
    if (rank == 0) {
        printf("\n%8s %-10s %5s %5s %10s %10s %10s %10s %10s %10s %9s %8s %9s\n", "N", "method", "ranks", "grid",
               "median_s", "min_s", "rss_MiB", "scratch", "sent_MiB", "GFLOP/s", "resc/q", "lists", "");
        char path[1024];
        mkdir(out_dir(), 0755);
        snprintf(path, sizeof path, "%s/bench_knn.csv", out_dir());
        FILE *probe = append ? fopen(path, "r") : NULL;
        int header = !probe;
        if (probe) fclose(probe);
        FILE *csv = fopen(path, append ? "a" : "w");
        if (!csv) fprintf(stderr, "bench_knn: cannot write %s\n", path);
        if (csv && header)
            fprintf(csv, "n,dim,k,method,ranks,threads,grid,median_s,min_s,reps,peak_rss_mib,scratch_mib,sent_mib,"
                         "psgemm_model_mib,rescored_per_query,gflops,identical_lists,recall\n");
        for (int i = 0; i < nres; i++) {
            result *o = &res[i];
            char grid[32];
            snprintf(grid, sizeof grid, "%dx%d", o->grid_r, o->grid_c);
            bad |= !o->identical;
            printf("%8lld %-10s %5d %5s %10.3f %10.3f %10.1f %10.1f %10.1f %10.1f %9.1f %8s\n", (long long)o->n,
                   mm_knn_backend_name(o->be), P, grid, o->med_s, o->min_s, o->rss_mib, o->scratch_mib,
                   o->sent_mib + o->psgemm_mib, o->gflops, o->rescored_per_q, o->identical ? "same" : "DIFFER");
            if (csv)
                fprintf(csv, "%lld,%lld,%d,%s,%d,1,%s,%.5f,%.5f,%d,%.2f,%.2f,%.3f,%.3f,%.2f,%.2f,%.4f,1.0000\n",
                        (long long)o->n, (long long)dim, k, mm_knn_backend_name(o->be), P, grid, o->med_s, o->min_s,
                        reps, o->rss_mib, o->scratch_mib, o->sent_mib, o->psgemm_mib, o->rescored_per_q, o->gflops,
                        o->identical ? 1.0 : 0.0);
        }
        printf("(min_s: fastest rep; rss: peak RSS of the process during the calls, max over ranks; scratch: the\n"
               " call's own buffers; sent: MiB sent per rank, for scalapack plus the modelled PSGEMM traffic;\n"
               " resc/q: exact dot products per query; lists: equal to allgather's and to the lists an earlier\n"
               " run wrote, if any)\n");
        if (csv) {
            fclose(csv);
            printf("wrote %s\n", path);
        }
        printf("beside FAISS (IndexFlatIP) on the same rows: benchmarks/bench_knn_faiss.sh\n");
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    mm_free_sized(counts, (size_t)P * sizeof(int64_t));
    mm_free_sized(centres, (size_t)(64 * dim) * sizeof(float));
    mm_dist_destroy(&d);
    MPI_Finalize();
    return bad;
}
