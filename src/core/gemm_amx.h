/* gemm_amx.h: the AMX bf16 GEMM kernel (gemm_amx.c), internal to blas.c. */
#ifndef MMSA_GEMM_AMX_H
#define MMSA_GEMM_AMX_H

#include <stdbool.h>
#include <stdint.h>

/* mm_sgemm's contract with bf16 inputs and float32 accumulation; the caller has checked
 * that the CPU and the kernel allow AMX. Returns -1 when the packing buffers cannot
 * be allocated (nothing written to C), else 0. */
int mm_gemm_amx(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Frees the packing buffers. */
void mm_gemm_amx_release(void);

#endif
