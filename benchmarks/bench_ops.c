/* bench_ops: GEMM-heavy ops at the model's real sizes, against raw BLIS sgemm
 * measured in the same run, and RSS over many training-shaped steps.
 *
 *   bench_ops [--reps N] [--steps N] [--rows N]
 *
 * Prints a table and writes benchmarks/out/bench_ops.csv. Medians of --reps runs. */
#include <blis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mmsa/blas.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"
#include "mmsa/rng.h"

typedef struct {
    char name[64];
    double flops;      /* per call */
    double op_s;       /* median seconds of the op */
    double blis_s;     /* median seconds of the equivalent raw bli_sgemm calls */
} row;

static void fill(float *x, size_t n, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (size_t i = 0; i < n; i++) x[i] = mm_rng_uniform(&r) - 0.5f;
}

static float *buf(size_t n, uint64_t seed)
{
    float *p = mm_malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(p, n, seed);
    return p;
}

#define CHECK(expr)                                   \
    do {                                              \
        if ((expr) != MM_OK) {                        \
            mm_error_print(stderr, -1);               \
            exit(1);                                  \
        }                                             \
    } while (0)

/* Raw BLIS: C (m x n) = A (m x k) B^T, B stored n x k (the Linear layout). */
static double time_blis(int64_t m, int64_t n, int64_t k, int reps, float *a, float *b, float *c)
{
    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        mm_sgemm(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
        t[r] = bench_now() - t0;
    }
    double med = bench_median(t, reps);
    free(t);
    return med;
}

/* Linear forward (x [m, k] W^T [k, n] + b) and forward+backward. */
static void bench_linear(row *fwd, row *fb, int64_t m, int64_t k, int64_t n, int reps)
{
    float *x = buf((size_t)(m * k), 1), *w = buf((size_t)(n * k), 2), *b = buf((size_t)n, 3);
    float *gw = calloc((size_t)(n * k), sizeof(float)), *gb = calloc((size_t)n, sizeof(float));
    float *c = buf((size_t)(m * n), 4);
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    double *tf = malloc((size_t)reps * sizeof *tf), *tb = malloc((size_t)reps * sizeof *tb);
    for (int r = 0; r < reps; r++) {
        mm_tensor *X, *W, *B, *Y;
        CHECK(mm_tape_reset(&t));
        CHECK(mm_tensor_wrap(&t, x, NULL, 2, (int64_t[]){m, k}, &X));
        CHECK(mm_tensor_wrap(&t, w, gw, 2, (int64_t[]){n, k}, &W));
        CHECK(mm_tensor_wrap(&t, b, gb, 1, (int64_t[]){n}, &B));
        double t0 = bench_now();
        CHECK(mm_linear(&t, X, W, B, &Y));
        double t1 = bench_now();
        for (int64_t i = 0; i < Y->n; i++) Y->grad[i] = 1e-3f;
        CHECK(mm_tape_run_backward(&t));
        double t2 = bench_now();
        tf[r] = t1 - t0;
        tb[r] = t2 - t0;
    }
    double blis = time_blis(m, n, k, reps, x, w, c);
    *fwd = (row){"", 2.0 * m * n * k, bench_median(tf, reps), blis};
    /* backward with x not requiring grad: dW only, one more GEMM of the same size */
    *fb = (row){"", 4.0 * m * n * k, bench_median(tb, reps), 2 * blis};
    snprintf(fwd->name, sizeof fwd->name, "linear fwd %lldx%lld . %lldx%lld", (long long)m, (long long)k,
             (long long)k, (long long)n);
    snprintf(fb->name, sizeof fb->name, "linear fwd+bwd(W) %lldx%lld . %lldx%lld", (long long)m,
             (long long)k, (long long)k, (long long)n);
    free(tf);
    free(tb);
    mm_tape_destroy(&t);
    mm_free_sized(x, (size_t)(m * k) * sizeof(float));
    mm_free_sized(w, (size_t)(n * k) * sizeof(float));
    mm_free_sized(b, (size_t)n * sizeof(float));
    mm_free_sized(c, (size_t)(m * n) * sizeof(float));
    free(gw);
    free(gb);
}

/* Similarity matrix (normalised embeddings U U^T), as in kNN and InfoNCE. */
static void bench_similarity(row *out, int64_t n, int64_t d, int reps)
{
    float *u = buf((size_t)(n * d), 5), *c = buf((size_t)(n * n), 6);
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    t.grad_enabled = false;
    double *ts = malloc((size_t)reps * sizeof *ts);
    for (int r = 0; r < reps; r++) {
        mm_tensor *U, *S;
        CHECK(mm_tape_reset(&t));
        CHECK(mm_tensor_wrap(&t, u, NULL, 2, (int64_t[]){n, d}, &U));
        double t0 = bench_now();
        CHECK(mm_matmul(&t, U, false, U, true, &S));
        ts[r] = bench_now() - t0;
    }
    *out = (row){"", 2.0 * n * n * d, bench_median(ts, reps), time_blis(n, n, d, reps, u, u, c)};
    snprintf(out->name, sizeof out->name, "similarity %lldx%lld . T", (long long)n, (long long)d);
    free(ts);
    mm_tape_destroy(&t);
    mm_free_sized(u, (size_t)(n * d) * sizeof(float));
    mm_free_sized(c, (size_t)(n * n) * sizeof(float));
}

/* conv2d 3x3 stride 2 pad 1 (the image encoder's first layers at batch 64). */
static void bench_conv(row *out, int64_t nb, int64_t cin, int64_t hw, int64_t cout, int reps)
{
    int64_t ho = (hw + 2 - 3) / 2 + 1;
    float *x = buf((size_t)(nb * cin * hw * hw), 7), *w = buf((size_t)(cout * cin * 9), 8);
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    t.grad_enabled = false;
    double *ts = malloc((size_t)reps * sizeof *ts);
    for (int r = 0; r < reps; r++) {
        mm_tensor *X, *W, *Y;
        CHECK(mm_tape_reset(&t));
        CHECK(mm_tensor_wrap(&t, x, NULL, 4, (int64_t[]){nb, cin, hw, hw}, &X));
        CHECK(mm_tensor_wrap(&t, w, NULL, 4, (int64_t[]){cout, cin, 3, 3}, &W));
        double t0 = bench_now();
        CHECK(mm_conv2d(&t, X, W, NULL, 2, 1, &Y));
        ts[r] = bench_now() - t0;
    }
    /* the GEMM inside: per image, W [cout, cin*9] x cols [cin*9, ho*ho] */
    int64_t m = cout, n = ho * ho, k = cin * 9;
    float *a = buf((size_t)(m * k), 9), *b = buf((size_t)(n * k), 10), *c = buf((size_t)(m * n), 11);
    double blis = time_blis(m, n, k, reps, a, b, c) * (double)nb;
    *out = (row){"", 2.0 * nb * m * n * k, bench_median(ts, reps), blis};
    snprintf(out->name, sizeof out->name, "conv2d %lldx%lldx%lld^2 -> %lld s2", (long long)nb,
             (long long)cin, (long long)hw, (long long)cout);
    free(ts);
    mm_tape_destroy(&t);
    mm_free_sized(x, (size_t)(nb * cin * hw * hw) * sizeof(float));
    mm_free_sized(w, (size_t)(cout * cin * 9) * sizeof(float));
    mm_free_sized(a, (size_t)(m * k) * sizeof(float));
    mm_free_sized(b, (size_t)(n * k) * sizeof(float));
    mm_free_sized(c, (size_t)(m * n) * sizeof(float));
}

/* One GIN-MLP-shaped training step: Linear(300->600), ReLU, Linear(600->300),
 * mean-square loss, backward, AdamW. Returns the loss. */
static float train_step(mm_tape *t, mm_params *p, mm_optimizer *o, float *x, int64_t rows)
{
    mm_tensor *X, *W1, *B1, *W2, *B2, *h, *a, *y, *sq, *loss;
    CHECK(mm_tape_reset(t));
    mm_params_zero_grad(p);
    CHECK(mm_tensor_wrap(t, x, NULL, 2, (int64_t[]){rows, 300}, &X));
    CHECK(mm_params_tensor(p, t, 0, &W1));
    CHECK(mm_params_tensor(p, t, 1, &B1));
    CHECK(mm_params_tensor(p, t, 2, &W2));
    CHECK(mm_params_tensor(p, t, 3, &B2));
    CHECK(mm_linear(t, X, W1, B1, &h));
    CHECK(mm_relu(t, h, &a));
    CHECK(mm_linear(t, a, W2, B2, &y));
    CHECK(mm_mul(t, y, y, &sq));
    CHECK(mm_mean(t, sq, MM_AXIS_ALL, &loss));
    CHECK(mm_tape_backward(t, loss));
    CHECK(mm_optim_step(o, p, 1e-4f));
    return loss->data[0];
}

int main(int argc, char **argv)
{
    int reps = 7, steps = 1000;
    int64_t rows = 6400, step_rows = 640;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_ops [--reps N] [--steps N] [--rows N] [--step-rows N]\n"
                   "  GEMM-heavy ops at model sizes (rows = atoms in a batch, default 6400) vs raw\n"
                   "  BLIS sgemm in the same run (median of --reps, default 7), and RSS after 10\n"
                   "  and after --steps (default 1000) GIN-MLP-shaped training steps of\n"
                   "  --step-rows rows (default 640). Writes benchmarks/out/bench_ops.csv.\n");
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--step-rows") && i + 1 < argc) step_rows = atoll(argv[++i]);
        else {
            fprintf(stderr, "bench_ops: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || steps < 10 || rows < 1 || step_rows < 1) {
        fprintf(stderr, "bench_ops: --reps >= 1, --steps >= 10, --rows >= 1 required\n");
        return 2;
    }
    bli_thread_set_num_threads(1);
    row r[8];
    int nr = 0;
    bench_linear(&r[nr], &r[nr + 1], rows, 300, 600, reps);
    nr += 2;
    bench_linear(&r[nr], &r[nr + 1], rows, 600, 300, reps);
    nr += 2;
    bench_similarity(&r[nr++], 1024, 256, reps);
    bench_conv(&r[nr++], 64, 3, 64, 32, reps);
    bench_conv(&r[nr++], 64, 32, 32, 64, reps);

    char path[512];
    FILE *csv = bench_csv("bench_ops", path, sizeof path);
    printf("%-40s %10s %10s %10s %8s\n", "op", "ms", "GFLOP/s", "BLIS GF/s", "ratio");
    if (csv) fprintf(csv, "op,ms,gflops,blis_gflops,ratio\n");
    for (int i = 0; i < nr; i++) {
        double g = r[i].flops / r[i].op_s * 1e-9, gb = r[i].flops / r[i].blis_s * 1e-9;
        printf("%-40s %10.2f %10.2f %10.2f %8.2f\n", r[i].name, r[i].op_s * 1e3, g, gb, g / gb);
        if (csv) fprintf(csv, "\"%s\",%.4f,%.3f,%.3f,%.4f\n", r[i].name, r[i].op_s * 1e3, g, gb, g / gb);
    }

    /* RSS over training-shaped steps. */
    mm_params p;
    mm_params_init(&p);
    CHECK(mm_params_add(&p, "w1", 2, (int64_t[]){600, 300}, NULL));
    CHECK(mm_params_add(&p, "b1", 1, (int64_t[]){600}, NULL));
    CHECK(mm_params_add(&p, "w2", 2, (int64_t[]){300, 600}, NULL));
    CHECK(mm_params_add(&p, "b2", 1, (int64_t[]){300}, NULL));
    CHECK(mm_params_alloc(&p));
    mm_params_init_linear(&p, 0, 1, 1);
    mm_params_init_linear(&p, 2, 3, 1);
    mm_optimizer o;
    CHECK(mm_optim_adamw(&o, &p, 0.9f, 0.999f, 1e-8f, 0.01f));
    float *x = buf((size_t)(step_rows * 300), 12);
    mm_tape t;
    CHECK(mm_tape_init(&t, 1 << 20));
    double rss10 = 0, t0 = bench_now();
    float loss = 0;
    for (int s = 1; s <= steps; s++) {
        loss = train_step(&t, &p, &o, x, step_rows);
        if (s == 10) rss10 = bench_rss_mib();
    }
    double rss_end = bench_rss_mib(), secs = bench_now() - t0;
    printf("\ntraining-shaped steps (%lld x 300 -> 600 -> 300, AdamW): loss %.4g\n", (long long)step_rows, loss);
    printf("%-40s %10.1f MiB\n", "RSS after 10 steps", rss10);
    printf("%-40s %10.1f MiB   (growth %.2f MiB, %.1f ms/step)\n", "RSS after all steps", rss_end,
           rss_end - rss10, secs / steps * 1e3);
    if (csv) {
        fprintf(csv, "\"rss_mib_after_10_steps\",%.2f,,,\n", rss10);
        fprintf(csv, "\"rss_mib_after_%d_steps\",%.2f,,,\n", steps, rss_end);
        fclose(csv);
        printf("wrote %s\n", path);
    }
    mm_tape_destroy(&t);
    mm_optim_destroy(&o);
    mm_params_destroy(&p);
    mm_free_sized(x, (size_t)(step_rows * 300) * sizeof(float));
    return 0;
}
