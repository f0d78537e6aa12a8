/* bench_gemm: the layers' products in float32 (BLIS sgemm) and in bfloat16 on AMX tiles
 * (mm_gemm with train.precision bf16), at the shapes a training step of DESIGN sizes
 * runs: the GIN's Linear layers forward (x W^T), backward to the input (dY W) and to the
 * weight (dY^T X) over ~6,000 atoms, and the image encoder's stride-2 convolutions.
 * Interleaved fp32 / bf16 repetitions, medians, ratios in the same run; table on stdout,
 * CSV in benchmarks/out/bench_gemm.csv. One thread (BLIS_NUM_THREADS=1). */
#include <stdbool.h>
#include <stdint.h>

#include "bench_common.h"
#include "mmsa/blas.h"

typedef struct {
    const char *what;
    bool ta, tb;
    int64_t m, n, k;
} shape;

static const shape shapes[] = {
    {"GIN Linear 300->600, forward", false, true, 6000, 600, 300},
    {"GIN Linear 600->300, forward", false, true, 6000, 300, 600},
    {"GIN Linear 600->300, dX = dY W", false, false, 6000, 600, 300},
    {"GIN Linear 600->300, dW = dY^T X", true, false, 300, 600, 6000},
    {"CNN conv 32->64 (16x16 out, 16 images)", false, true, 4096, 64, 288},
    {"CNN conv 128->256 (4x4 out, 256 images)", false, true, 4096, 256, 1152},
    {"CNN conv 128->256, dW", true, false, 256, 1152, 4096},
};

static double run(const shape *s, const float *a, const float *b, float *c)
{
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double t0 = bench_now();
    mm_gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
    return bench_now() - t0;
}

int main(int argc, char **argv)
{
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else {
            printf("usage: bench_gemm [--reps N]   (default 7; N >= 1)\n"
                   "  float32 vs bfloat16-on-AMX products at a training step's shapes; table and\n"
                   "  benchmarks/out/bench_gemm.csv\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (reps < 1 || reps > 1000) reps = 7;
    const char *why = "";
    bool bf16 = mm_blas_bf16_available(&why);
    if (!bf16) printf("bf16 not measured: %s\n", why);
    size_t big = (size_t)6000 * 1152;
    float *a = malloc(big * sizeof(float)), *b = malloc(big * sizeof(float)), *c = malloc(big * sizeof(float));
    if (!a || !b || !c) return 1;
    for (size_t i = 0; i < big; i++) {
        a[i] = (float)((int)(i % 17) - 8) * 0.01f;
        b[i] = (float)((int)(i % 13) - 6) * 0.02f;
    }
    char path[512];
    FILE *csv = bench_csv("bench_gemm", path, sizeof path);
    if (csv) fprintf(csv, "shape,ta,tb,m,n,k,fp32_ms,bf16_ms,fp32_gflops,bf16_gflops,speedup\n");
    printf("%-42s %18s %10s %10s %9s %9s %7s\n", "product", "m x n x k", "fp32 ms", "bf16 ms", "fp32 GF/s", "bf16 GF/s",
           "ratio");
    double t32[1000], t16[1000];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *sh = &shapes[s];
        for (int r = 0; r < reps; r++) {
            mm_blas_set_precision(MM_PREC_FP32);
            t32[r] = run(sh, a, b, c);
            t16[r] = 0;
            if (bf16 && mm_blas_set_precision(MM_PREC_BF16) == MM_OK) t16[r] = run(sh, a, b, c);
        }
        mm_blas_set_precision(MM_PREC_FP32);
        double m32 = bench_median(t32, reps), m16 = bench_median(t16, reps);
        double gf = 2.0 * (double)sh->m * (double)sh->n * (double)sh->k * 1e-9;
        char dims[64];
        snprintf(dims, sizeof dims, "%lld x %lld x %lld", (long long)sh->m, (long long)sh->n, (long long)sh->k);
        printf("%-42s %18s %10.2f %10.2f %9.1f %9.1f %7.2f\n", sh->what, dims, 1e3 * m32, 1e3 * m16, gf / m32,
               m16 > 0 ? gf / m16 : 0.0, m16 > 0 ? m32 / m16 : 0.0);
        if (csv)
            fprintf(csv, "\"%s\",%d,%d,%lld,%lld,%lld,%.4f,%.4f,%.2f,%.2f,%.3f\n", sh->what, sh->ta, sh->tb,
                    (long long)sh->m, (long long)sh->n, (long long)sh->k, 1e3 * m32, 1e3 * m16, gf / m32,
                    m16 > 0 ? gf / m16 : 0.0, m16 > 0 ? m32 / m16 : 0.0);
    }
    if (csv) {
        fclose(csv);
        printf("wrote %s\n", path);
    }
    free(a), free(b), free(c);
    return 0;
}
