/* mpi_pingpong: the MPI costs the performance model needs (benchmarks/perf_model.py).
 *
 *   mpirun -n 2 mpi_pingpong [--max-bytes N] [--reps R] [--target-s T]
 *
 * - ping-pong between ranks 0 and 1 (MPI_Send/MPI_Recv): one-way time = half the round
 *   trip, for messages of 1 B .. max-bytes; latency alpha and bandwidth 1/beta fitted as
 *   t(n) = alpha + n * beta by least squares over all sizes (weighted by 1/t, so the
 *   small sizes count), beside the plain small-message latency and large-message bandwidth;
 * - MPI_Allreduce (float sum) and MPI_Allgather on all ranks for 4 B .. max-bytes of
 *   payload (the allgather payload is the gathered total, as log.jsonl counts it).
 * Every time is the median of R repetitions (the minimum is printed beside it), each
 * repetition a loop long enough to take about T seconds (at least 4 iterations). Prints a table and writes
 * benchmarks/out/mpi_pingpong.csv (or $MMSA_BENCH_OUT/mpi_pingpong.csv) with the rows
 * kind,ranks,bytes,iters,time_us (median),min_us,mb_per_s (from the median), and the
 * ping-pong fit as kind "fit" (time_us = alpha, mb_per_s = BW). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define MAX_SIZES 40

typedef enum { K_PINGPONG, K_ALLREDUCE, K_ALLGATHER } kind;
static const char *kind_names[] = {"pingpong", "allreduce", "allgather"};

/* One timed loop of `iters` operations of `bytes` payload; returns seconds per operation
 * (one-way for the ping-pong). Every rank returns rank 0's time. */
static double timed_loop(kind k, size_t bytes, int iters, char *a, char *b, int rank, int size)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        switch (k) {
        case K_PINGPONG:
            if (rank == 0) {
                MPI_Send(a, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(b, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(b, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(a, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
            break;
        case K_ALLREDUCE:
            MPI_Allreduce(a, b, (int)(bytes / sizeof(float)), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            break;
        case K_ALLGATHER:
            MPI_Allgather(a, (int)(bytes / (size_t)size), MPI_BYTE, b, (int)(bytes / (size_t)size), MPI_BYTE,
                          MPI_COMM_WORLD);
            break;
        }
    }
    double t = (MPI_Wtime() - t0) / iters;
    if (k == K_PINGPONG) t *= 0.5;
    MPI_Bcast(&t, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return t;
}

/* Median (and minimum) seconds per operation over `reps` loops sized to take about
 * target_s each. The loop length is calibrated by doubling until a loop takes a tenth
 * of the target, so one preemption during calibration cannot distort it much. */
static double measure(kind k, size_t bytes, int reps, double target_s, char *a, char *b, int rank, int size,
                      int *iters_out, double *min_out)
{
    timed_loop(k, bytes, 2, a, b, rank, size); /* warm-up: connections, registration */
    int iters = 1;
    double t = timed_loop(k, bytes, iters, a, b, rank, size);
    while (t * iters < 0.1 * target_s && iters < (1 << 20)) {
        iters *= 2;
        t = timed_loop(k, bytes, iters, a, b, rank, size);
    }
    double want = target_s / (t > 1e-9 ? t : 1e-9);
    iters = want < 4 ? 4 : want > 1e6 ? 1000000 : (int)want;
    double v[64];
    if (reps > 64) reps = 64;
    double mn = 1e30;
    for (int r = 0; r < reps; r++) {
        v[r] = timed_loop(k, bytes, iters, a, b, rank, size);
        if (v[r] < mn) mn = v[r];
    }
    *iters_out = iters;
    *min_out = mn;
    return bench_median(v, reps);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t max_bytes = 16u << 20;
    int reps = 7;
    double target_s = 0.02;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_bytes = (size_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--target-s") && i + 1 < argc) target_s = atof(argv[++i]);
        else {
            if (rank == 0)
                fprintf(stderr, "usage: mpirun -n P mpi_pingpong [--max-bytes N] [--reps R] [--target-s T]\n"
                                "  (the ping-pong runs between ranks 0 and 1; P >= 2)\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (size < 2 || max_bytes < 64 || max_bytes > (size_t)1 << 30 || reps < 1 || target_s <= 0) {
        if (rank == 0) fprintf(stderr, "mpi_pingpong: needs at least 2 ranks, 64 B <= max-bytes <= 1 GiB, reps >= 1\n");
        MPI_Finalize();
        return 2;
    }
    char *a = malloc(max_bytes), *b = malloc(max_bytes);
    if (!a || !b) {
        fprintf(stderr, "[rank %d] mpi_pingpong: cannot allocate 2 x %zu bytes\n", rank, max_bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(a, 1, max_bytes);
    memset(b, 0, max_bytes);

    FILE *csv = NULL;
    char path[512];
    if (rank == 0) {
        csv = bench_csv("mpi_pingpong", path, sizeof path);
        if (csv) fprintf(csv, "kind,ranks,bytes,iters,time_us,min_us,mb_per_s\n");
        printf("mpi_pingpong: %d ranks, median of %d loops of ~%.0f ms each\n\n", size, reps, target_s * 1e3);
        printf("  %-10s %12s %10s %12s %12s %12s\n", "kind", "bytes", "iters", "median us", "min us", "MB/s");
    }
    double pp_bytes[MAX_SIZES], pp_t[MAX_SIZES];
    int n_pp = 0;
    for (int k = K_PINGPONG; k <= K_ALLGATHER; k++) {
        size_t start = k == K_PINGPONG ? 1 : k == K_ALLREDUCE ? 4 : (size_t)size * 4;
        for (size_t n = start; n <= max_bytes; n *= 4) {
            size_t bytes = n;
            if (k == K_ALLGATHER) bytes -= bytes % (size_t)size;
            int iters = 0;
            double tmin = 0, t = measure((kind)k, bytes, reps, target_s, a, b, rank, size, &iters, &tmin);
            if (k == K_PINGPONG && n_pp < MAX_SIZES) {
                pp_bytes[n_pp] = (double)bytes;
                pp_t[n_pp++] = t;
            }
            if (rank == 0) {
                double mbs = (double)bytes / t * 1e-6;
                printf("  %-10s %12zu %10d %12.2f %12.2f %12.1f\n", kind_names[k], bytes, iters, t * 1e6, tmin * 1e6, mbs);
                if (csv)
                    fprintf(csv, "%s,%d,%zu,%d,%.4f,%.4f,%.2f\n", kind_names[k], size, bytes, iters, t * 1e6, tmin * 1e6,
                            mbs);
            }
        }
        if (rank == 0) printf("\n");
    }
    if (rank == 0) {
        /* t = alpha + beta n, least squares with weights 1/t^2 (relative error) */
        double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < n_pp; i++) {
            double w = 1.0 / (pp_t[i] * pp_t[i]);
            sw += w;
            sx += w * pp_bytes[i];
            sy += w * pp_t[i];
            sxx += w * pp_bytes[i] * pp_bytes[i];
            sxy += w * pp_bytes[i] * pp_t[i];
        }
        double beta = (sw * sxy - sx * sy) / (sw * sxx - sx * sx), alpha = (sy - beta * sx) / sw;
        double lat_small = pp_t[0], bw_large = pp_bytes[n_pp - 1] / pp_t[n_pp - 1];
        printf("  ping-pong fit t(n) = alpha + n/BW: alpha %.2f us, BW %.0f MB/s\n", alpha * 1e6, 1e-6 / beta);
        printf("  1-byte one-way latency %.2f us; bandwidth at %.0f bytes %.0f MB/s\n", lat_small * 1e6,
               pp_bytes[n_pp - 1], bw_large * 1e-6);
        if (csv) {
            fprintf(csv, "fit,%d,0,0,%.4f,%.4f,%.2f\n", size, alpha * 1e6, alpha * 1e6, 1e-6 / beta);
            fclose(csv);
            printf("wrote %s\n", path);
        }
    }
    free(a);
    free(b);
    MPI_Finalize();
    return 0;
}
