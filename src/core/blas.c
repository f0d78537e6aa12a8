/* blas.c: BLIS typed expert API behind mm_sgemm. */
#include "mmsa/blas.h"

#include <blis.h>

static double flops;

double mm_blas_flops(void) { return flops; }
void mm_blas_flops_reset(void) { flops = 0; }

void mm_sgemm_ex(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc, int nthreads)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {
        /* BLIS handles k = 0 as C = beta C, but be explicit about beta = 0. */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    flops += 2.0 * (double)m * (double)n * (double)k;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nthreads > 0 ? nthreads : 1, &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &alpha, (float *)a, (inc_t)lda, 1, (float *)b,
                 (inc_t)ldb, 1, &beta, c, (inc_t)ldc, 1, NULL, &rntm);
}

void mm_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc)
{
    mm_sgemm_ex(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 1);
}
