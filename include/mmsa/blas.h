/* blas.h: the dense products, on BLIS.
 *
 * Row-major matrices with explicit leading dimensions (BLIS takes row and column
 * strides, so no copies are made for transposes). The thread count is passed per
 * call; mm_sgemm uses one thread, the default of one BLIS thread per MPI rank. */
#ifndef MMSA_BLAS_H
#define MMSA_BLAS_H

#include <stdbool.h>
#include <stdint.h>

/* C (m x n) = alpha * op(A) op(B) + beta * C, op(A) m x k, op(B) k x n.
 * A is stored m x k (or k x m when ta) with row stride lda; likewise B, C. */
void mm_sgemm_ex(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc, int nthreads);
void mm_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);

/* Floating-point operations done by mm_sgemm calls so far in this process (2 m n k
 * each), for achieved-GFLOP/s figures. */
double mm_blas_flops(void);
void mm_blas_flops_reset(void);

#endif
