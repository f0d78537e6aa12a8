/* bench_train: throughput of pre-training steps and where the time goes.
 *
 *   mpirun -n P bench_train --dataset DATA.h5 [--job JOB.yaml] [--steps N] [--warmup N] [--set k=v]
 *
 * Runs N training steps (after warm-up steps that are not timed) with the tape's
 * profiling on, and prints per rank-averaged: molecules/s per rank, achieved GFLOP/s of
 * the GEMMs against a raw BLIS sgemm measured in the same run (1024^3, 5 times before and
 * 5 times after the timed steps, the median of the 10: on a shared machine one side alone
 * can catch a busy or a quiet moment), peak RSS per rank, and
 * the time of a step split by component (forward and backward), and how much of the
 * bucketed gradient allreduce the backward hides: the time a step waits for it (inside
 * MPI_Testall during the backward and MPI_Waitall after it, which also holds any wait
 * for a rank that finished its backward later) against the time the same buckets take
 * reduced alone, one blocking MPI_Allreduce each, right after the timed steps. Writes
 * benchmarks/out/bench_train.csv. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mmsa/alloc.h"
#include "mmsa/blas.h"
#include "mmsa/train.h"

#define BLIS_N 1024

/* GFLOP/s of 5 raw BLIS sgemm of BLIS_N^3 into g[0..5). */
static void blis_gflops(double *g)
{
    int64_t n = BLIS_N;
    float *a = malloc((size_t)(n * n) * sizeof(float)), *b = malloc((size_t)(n * n) * sizeof(float)),
          *c = malloc((size_t)(n * n) * sizeof(float));
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 13) * 0.01f;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now();
        mm_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        g[r] = 2.0 * n * n * n / (bench_now() - t0) * 1e-9;
    }
    free(a);
    free(b);
    free(c);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -n P bench_train --dataset DATA.h5 [--job JOB.yaml] [--steps N] [--warmup N]\n"
               "                 [--set SECTION.KEY=VALUE ...]\n"
               "  default job: configs/zinc250k.yaml (DESIGN sizes); default 10 timed steps after 2 warm-up.\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *job_path = "configs/zinc250k.yaml", *dataset = NULL;
    int steps = 10, warmup = 2, n_set = 0;
    const char *sets[32];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--job") && i + 1 < argc) job_path = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_set < 32) sets[n_set++] = argv[++i];
        else {
            if (rank == 0) usage(stderr);
            MPI_Finalize();
            return 2;
        }
    }
    if (!dataset || steps < 1 || warmup < 0) {
        if (rank == 0) usage(stderr);
        MPI_Finalize();
        return 2;
    }
    mm_job job;
    mm_dist d;
    mm_trainer tr;
    char run_dir[256];
    snprintf(run_dir, sizeof run_dir, "benchmarks/out/bench_train_run_%d", size);
    mm_status st = mm_dist_init(&d, MPI_COMM_WORLD);
    if (st == MM_OK) st = mm_cfg_load_file(&mm_job_schema, job_path, &job);
    for (int i = 0; i < n_set && st == MM_OK; i++) st = mm_cfg_set(&mm_job_schema, sets[i], &job);
    if (st == MM_OK) {
        snprintf(job.train.dataset, sizeof job.train.dataset, "%s", dataset);
        snprintf(job.train.run_dir, sizeof job.train.run_dir, "%s", run_dir);
        job.checkpoint.resume = false;
        job.train.holdout = 0;
        st = mm_job_validate(&job);
    }
    if (st == MM_OK) st = mm_trainer_init(&tr, &job, &d);
    double prof[2 * MM_PROF_SCOPES] = {0};
    mm_step_report rep;
    for (int s = 0; s < warmup && st == MM_OK; s++) st = mm_trainer_step(&tr, &rep);
    double blis[10];
    blis_gflops(blis);
    MPI_Barrier(MPI_COMM_WORLD);
    mm_blas_flops_reset();
    tr.tape.prof = prof;
    double t0 = bench_now(), exposed = 0;
    for (int s = 0; s < steps && st == MM_OK; s++) {
        st = mm_trainer_step(&tr, &rep);
        exposed += rep.grad_exposed_s;
    }
    double secs = bench_now() - t0;
    blis_gflops(blis + 5);
    double peak = bench_median(blis, 10);
    /* the same buckets reduced alone (median of 5), on a copy of the gradients */
    double alone = 0;
    if (st == MM_OK && size > 1) {
        mm_grad_sync *g = &tr.gsync;
        float *scratch = malloc(tr.model.params.total * sizeof(float));
        double t[5];
        for (int r = 0; r < 5; r++) {
            memcpy(scratch, tr.model.params.grad, tr.model.params.total * sizeof(float));
            MPI_Barrier(MPI_COMM_WORLD);
            double a0 = bench_now();
            for (int b = g->n_buckets - 1; b >= 0; b--)
                MPI_Allreduce(MPI_IN_PLACE, scratch + g->start[b], (int)g->count[b], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t[r] = bench_now() - a0;
        }
        alone = bench_median(t, 5);
        free(scratch);
    }
    if (st != MM_OK) {
        mm_error_print(stderr, rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double flops = mm_blas_flops(), rss = mm_peak_rss_mib();
    /* averages over ranks */
    double sums[2 * MM_PROF_SCOPES + 5];
    memcpy(sums, prof, sizeof prof);
    sums[2 * MM_PROF_SCOPES] = flops;
    sums[2 * MM_PROF_SCOPES + 1] = secs;
    sums[2 * MM_PROF_SCOPES + 2] = peak;
    sums[2 * MM_PROF_SCOPES + 3] = exposed / steps;
    sums[2 * MM_PROF_SCOPES + 4] = alone;
    MPI_Allreduce(MPI_IN_PLACE, sums, 2 * MM_PROF_SCOPES + 5, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double max_rss = rss;
    MPI_Allreduce(MPI_IN_PLACE, &max_rss, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        double step_s = sums[2 * MM_PROF_SCOPES + 1] / size / steps;
        double gflops = sums[2 * MM_PROF_SCOPES] / size / (step_s * steps) * 1e-9, pk = sums[2 * MM_PROF_SCOPES + 2] / size;
        double mol_s_rank = job.train.batch_size / step_s / size;
        printf("bench_train: %s, batch %d on %d rank(s), %d timed steps (after %d warm-up)\n", dataset,
               job.train.batch_size, size, steps, warmup);
        printf("  step time            %8.3f s\n", step_s);
        printf("  molecules/s per rank %8.1f   (all ranks %.1f)\n", mol_s_rank, mol_s_rank * size);
        printf("  GEMM GFLOP/s         %8.2f   vs raw BLIS sgemm %.2f (ratio %.2f) per rank\n", gflops, pk, gflops / pk);
        printf("  peak RSS per rank    %8.1f MiB (max over ranks)\n", max_rss);
        double exp_ms = sums[2 * MM_PROF_SCOPES + 3] / size * 1e3, alone_ms = sums[2 * MM_PROF_SCOPES + 4] / size * 1e3;
        /* the wait also holds the time a rank waits for a slower one to finish its
         * backward, so 1 - waited / alone is a lower bound of the share hidden */
        double hidden = alone_ms > 0 ? 1.0 - exp_ms / alone_ms : 0.0;
        if (size > 1)
            printf("  gradient allreduce   %8.1f ms per step waited for (with waiting for slower ranks), %.1f ms alone;"
                   " hidden by the backward: at least %.0f%%\n",
                   exp_ms, alone_ms, 100 * (hidden > 0 ? hidden : 0));
        printf("\n  %-28s %10s %10s %7s\n", "component", "fwd ms", "bwd ms", "share");
        char path[512];
        FILE *csv = bench_csv("bench_train", path, sizeof path);
        if (csv) {
            fprintf(csv, "ranks,batch,step_s,mol_per_s_per_rank,gemm_gflops,blis_peak_gflops,peak_rss_mib,"
                         "grad_exposed_ms,grad_alone_ms\n");
            fprintf(csv, "%d,%d,%.4f,%.2f,%.3f,%.3f,%.1f,%.3f,%.3f\n", size, job.train.batch_size, step_s, mol_s_rank,
                    gflops, pk, max_rss, exp_ms, alone_ms);
            fprintf(csv, "component,fwd_ms,bwd_ms,share\n");
        }
        for (int k = 0; k < MM_N_SCOPES; k++) {
            double f = sums[k] / size / steps * 1e3, b = sums[MM_PROF_SCOPES + k] / size / steps * 1e3;
            double share = (f + b) / (step_s * 1e3);
            printf("  %-28s %10.1f %10.1f %6.1f%%\n", mm_scope_names[k], f, b, 100 * share);
            if (csv) fprintf(csv, "\"%s\",%.3f,%.3f,%.4f\n", mm_scope_names[k], f, b, share);
        }
        if (csv) {
            fclose(csv);
            printf("wrote %s\n", path);
        }
    }
    mm_trainer_destroy(&tr);
    mm_dist_destroy(&d);
    MPI_Finalize();
    return 0;
}
