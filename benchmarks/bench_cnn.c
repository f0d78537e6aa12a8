/* bench_cnn: the image encoder's ops (DESIGN sizes: 64 x 64 x 3 images, four stride-2 3 x 3
 * convolutions 32-64-128-256, each with BatchNorm2d + ReLU, global average pool) at batch
 * 256 on one core, each op's forward and backward timed on its own, against raw BLIS sgemm
 * of the convolutions' GEMM shapes in the same run.
 *
 *   bench_cnn [--reps N] [--batch N]
 *
 * Prints a table (medians of --reps steps after one warm-up) and writes
 * benchmarks/out/bench_cnn.csv. Times are this thread's CPU time, not wall time: on the
 * shared machine a run that loses the core for a while is not charged for it. */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "mmsa/blas.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"

#define CHECK(expr)                                   \
    do {                                              \
        if ((expr) != MM_OK) {                        \
            mm_error_print(stderr, -1);               \
            exit(1);                                  \
        }                                             \
    } while (0)

#define STAGES 4
#define MAX_OPS 16
static const int64_t chans[STAGES] = {32, 64, 128, 256};

/* CPU seconds of the calling thread */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    double *fwd[MAX_OPS], *bwd[MAX_OPS]; /* [reps] seconds per op of the step */
    const char *name[MAX_OPS];
    int nops;
    double last; /* time of the previous node_done */
    int rep;
} timing;

/* Backward time of each op: the time since the previous op's backward ended. Ops run in
 * reverse order of recording; a node's seq is its position in forward order. */
static mm_status node_done(void *ctx, mm_node *nd)
{
    timing *tm = ctx;
    double now = cpu_now();
    if (nd->seq >= 0 && nd->seq < tm->nops) tm->bwd[nd->seq][tm->rep] = now - tm->last;
    tm->last = now;
    return MM_OK;
}

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (size_t i = 0; i < n; i++) x[i] = scale * (mm_rng_uniform(&r) - 0.5f);
}

int main(int argc, char **argv)
{
    int reps = 5;
    int64_t N = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_cnn [--reps N] [--batch N]\n"
                   "  The image encoder's convolutions, BatchNorm2d + ReLU and pooling at DESIGN sizes\n"
                   "  (64x64x3 images, channels 32-64-128-256, batch default 256), forward and backward\n"
                   "  of each op, median of --reps (default 5) after one warm-up, against raw BLIS sgemm\n"
                   "  of the convolutions' GEMMs in the same run, in CPU time of the thread. Writes\n"
                   "  benchmarks/out/bench_cnn.csv.\n");
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) N = atoll(argv[++i]);
        else {
            fprintf(stderr, "bench_cnn: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || N < 2) {
        fprintf(stderr, "bench_cnn: --reps >= 1 and --batch >= 2 required\n");
        return 2;
    }
    bli_thread_set_num_threads(1);

    int64_t hw = 64;
    float *img = malloc((size_t)(N * hw * hw * 3) * sizeof(float));
    fill(img, (size_t)(N * hw * hw * 3), 1, 2.0f);
    for (int64_t i = 0; i < N * hw * hw * 3; i++) img[i] = img[i] < 0 ? -img[i] : img[i];
    float *w[STAGES], *gw[STAGES], *gam[STAGES], *bet[STAGES], *ggam[STAGES], *gbet[STAGES], *rm[STAGES], *rv[STAGES];
    int64_t cin = 3;
    for (int s = 0; s < STAGES; s++) {
        size_t nw = (size_t)(chans[s] * cin * 9), nc = (size_t)chans[s];
        w[s] = malloc(nw * sizeof(float));
        gw[s] = calloc(nw, sizeof(float));
        fill(w[s], nw, 10 + (uint64_t)s, 0.5f);
        gam[s] = malloc(nc * sizeof(float));
        bet[s] = calloc(nc, sizeof(float));
        ggam[s] = calloc(nc, sizeof(float));
        gbet[s] = calloc(nc, sizeof(float));
        rm[s] = calloc(nc, sizeof(float));
        rv[s] = malloc(nc * sizeof(float));
        for (size_t c = 0; c < nc; c++) gam[s][c] = rv[s][c] = 1.0f;
        cin = chans[s];
    }

    timing tm = {0};
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    t.training = true;
    t.node_done = node_done;
    t.node_done_ctx = &tm;
    for (int k = 0; k < MAX_OPS; k++) {
        tm.fwd[k] = calloc((size_t)reps, sizeof(double));
        tm.bwd[k] = calloc((size_t)reps, sizeof(double));
    }
    double *step = calloc((size_t)reps, sizeof(double));
    for (int r = -1; r < reps; r++) {
        tm.rep = r < 0 ? 0 : r;
        CHECK(mm_tape_reset(&t));
        mm_tensor *x;
        CHECK(mm_tensor_wrap(&t, img, NULL, 4, (int64_t[]){N, hw, hw, 3}, &x));
        int k = 0;
        double t0 = cpu_now(), ts = t0;
        for (int s = 0; s < STAGES; s++) {
            mm_tensor *W, *G, *B, *y, *rows, *a;
            CHECK(mm_tensor_wrap(&t, w[s], gw[s], 4, (int64_t[]){chans[s], x->shape[3], 3, 3}, &W));
            CHECK(mm_tensor_wrap(&t, gam[s], ggam[s], 1, (int64_t[]){chans[s]}, &G));
            CHECK(mm_tensor_wrap(&t, bet[s], gbet[s], 1, (int64_t[]){chans[s]}, &B));
            CHECK(mm_conv2d_nhwc(&t, x, W, NULL, 2, 1, &y));
            double t1 = cpu_now();
            tm.name[k] = s == 0 ? "conv 3->32" : s == 1 ? "conv 32->64" : s == 2 ? "conv 64->128" : "conv 128->256";
            tm.fwd[k++][tm.rep] = t1 - ts;
            CHECK(mm_reshape(&t, y, 2, (int64_t[]){y->n / chans[s], chans[s]}, &rows));
            ts = cpu_now();
            CHECK(mm_batchnorm_relu(&t, rows, G, B, rm[s], rv[s], 0.1f, 1e-5f, &a));
            t1 = cpu_now();
            tm.name[k] = "bn+relu";
            tm.fwd[k++][tm.rep] = t1 - ts;
            CHECK(mm_reshape(&t, a, 4, y->shape, &x));
            ts = cpu_now();
        }
        mm_tensor *pooled, *loss;
        CHECK(mm_global_avg_pool_nhwc(&t, x, &pooled));
        tm.name[k] = "avg pool";
        tm.fwd[k++][tm.rep] = cpu_now() - ts;
        CHECK(mm_sum(&t, pooled, MM_AXIS_ALL, &loss));
        tm.nops = (int)t.n_nodes;
        tm.last = cpu_now();
        CHECK(mm_tape_backward(&t, loss));
        if (r >= 0) step[r] = cpu_now() - t0;
    }

    /* A node's seq is its position on the tape (reshapes are views, not ops), so the
     * timed ops are nodes 0 .. nk-1 in forward order. */
    int nk = 2 * STAGES + 1;
    /* raw BLIS sgemm of the convolution GEMMs: forward [M, K] x [K, Cout], dW and dX */
    double blis[STAGES];
    cin = 3;
    int64_t side = hw;
    for (int s = 0; s < STAGES; s++) {
        side /= 2;
        int64_t M = N * side * side, K = cin * 9, C = chans[s];
        float *a = malloc((size_t)(M * K) * sizeof(float)), *b = malloc((size_t)(K * C) * sizeof(float)),
              *c = malloc((size_t)(M * C) * sizeof(float));
        fill(a, (size_t)(M * K), 3, 1.0f);
        fill(b, (size_t)(K * C), 4, 1.0f);
        double *v = calloc((size_t)reps, sizeof(double));
        for (int r = 0; r < reps; r++) {
            double t0 = cpu_now();
            mm_sgemm(false, true, M, C, K, 1.0f, a, K, b, K, 0.0f, c, C);
            v[r] = cpu_now() - t0;
        }
        blis[s] = bench_median(v, reps);
        free(v);
        free(a);
        free(b);
        free(c);
        cin = chans[s];
    }

    char path[512];
    FILE *csv = bench_csv("bench_cnn", path, sizeof path);
    if (csv) fprintf(csv, "op,fwd_ms,bwd_ms,blis_fwd_gemm_ms\n");
    printf("image encoder, batch %lld, 1 thread, median of %d\n", (long long)N, reps);
    printf("%-16s %9s %9s %14s\n", "op", "fwd ms", "bwd ms", "BLIS GEMM ms");
    double tf = 0, tb = 0;
    for (int i = 0; i < nk; i++) {
        double f = 1e3 * bench_median(tm.fwd[i], reps), b = 1e3 * bench_median(tm.bwd[i], reps);
        double g = i < 2 * STAGES && i % 2 == 0 ? 1e3 * blis[i / 2] : 0.0;
        tf += f;
        tb += b;
        printf("%-16s %9.1f %9.1f %14.1f\n", tm.name[i], f, b, g);
        if (csv) fprintf(csv, "\"%s\",%.3f,%.3f,%.3f\n", tm.name[i], f, b, g);
    }
    printf("%-16s %9.1f %9.1f    (step median %.1f ms)\n", "sum", tf, tb, 1e3 * bench_median(step, reps));
    if (csv) fclose(csv);
    mm_tape_destroy(&t);
    return 0;
}
