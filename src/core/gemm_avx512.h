/* gemm_avx512.h: the AVX-512 float32 GEMM kernel (gemm_avx512.c), internal to blas.c. */
#ifndef MMSA_GEMM_AVX512_H
#define MMSA_GEMM_AVX512_H

#include <stdbool.h>
#include <stdint.h>

/* mm_sgemm's contract in float32 (fused multiply-adds); the caller has checked that the
 * CPU and the OS allow AVX-512F. Returns -1 when the packing buffers cannot be
 * allocated (nothing written to C), else 0. */
int mm_gemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Frees the packing buffers. */
void mm_gemm_avx512_release(void);

#endif
