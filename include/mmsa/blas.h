/* blas.h: the dense products, on BLIS.
 *
 * Row-major matrices with explicit leading dimensions (BLIS takes row and column
 * strides, so no copies are made for transposes). The thread count is passed per
 * call; mm_sgemm uses one thread, the default of one BLIS thread per MPI rank. */
#ifndef MMSA_BLAS_H
#define MMSA_BLAS_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/error.h"

/* C (m x n) = alpha * op(A) op(B) + beta * C, op(A) m x k, op(B) k x n.
 * A is stored m x k (or k x m when ta) with row stride lda; likewise B, C. */
void mm_sgemm_ex(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc, int nthreads);
void mm_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);

/* The layers' products (Linear, convolution; not the losses, kNN or memory bank): in
 * float32, or with train.precision bf16 with their inputs rounded to bfloat16 (to
 * nearest, ties to even) and float32 accumulation on Intel AMX tiles. Products below
 * 32^3 multiply-adds stay in float32. On a CPU with AVX-512 the float32 products run on
 * this project's AVX-512 kernel, BLIS's otherwise (the same values up to float rounding:
 * fused multiply-adds, another order of the sums; either way a row of C does not depend
 * on the other rows of the call, as 1 vs P ranks needs). */
typedef enum { MM_PREC_FP32 = 0, MM_PREC_BF16 = 1 } mm_precision;
void mm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
             const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
             float *c, int64_t ldc);
/* Whether mm_gemm's float32 products run on the AVX-512 kernel on this CPU. */
bool mm_blas_avx512_used(void);
/* For this process; bf16 is an error (naming what is missing) without AMX-BF16. */
mm_status mm_blas_set_precision(mm_precision p);
mm_precision mm_blas_precision(void);
/* Whether bf16 can run here; *why (if not NULL) says what is missing. */
bool mm_blas_bf16_available(const char **why);

/* Floating-point operations done by mm_sgemm calls so far in this process (2 m n k
 * each), for achieved-GFLOP/s figures. */
double mm_blas_flops(void);
void mm_blas_flops_reset(void);

#endif
