/* blas.c: BLIS typed expert API behind mm_sgemm; the layers' mm_gemm, which runs on
 * AMX tiles in bfloat16 when the job asks for it (gemm_amx.c) and otherwise, on a CPU
 * with AVX-512, on this project's float32 AVX-512 kernel (gemm_avx512.c): the BLIS of
 * the system runs its AVX2 kernel there, at half the core's rate. */
#include "mmsa/blas.h"

#include <blis.h>
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gemm_amx.h"
#include "gemm_avx512.h"
#include "mmsa/error.h"

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

/* ---- layer products: float32 or bfloat16 ----------------------------------------- */

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static bool use_bf16;
static int amx_state = -1; /* -1 not probed, 0 unusable, 1 usable */
static const char *amx_why = "";
static int avx512_state = -1; /* likewise, for the float32 kernel */

/* AVX-512F on the CPU and its register state (opmask, upper ZMM) enabled by the OS. */
static bool probe_avx512(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned need = (1u << 1) | (1u << 2) | (7u << 5); /* SSE, AVX, AVX-512 state */
    return (lo & need) == need;
}

/* AMX-BF16, AMX-TILE, AVX512F/BW and AVX512_BF16 on the CPU, their state enabled by the
 * OS (XCR0), and the tile data granted to this process (Linux arch_prctl). */
static bool probe_amx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) {
        amx_why = "the CPU has no AMX-BF16 tiles";
        return false;
    }
    if (!(b & (1u << 16)) || !(b & (1u << 30))) {
        amx_why = "the CPU has no AVX-512F/BW";
        return false;
    }
    unsigned a1, b1, c1, d1;
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !(a1 & (1u << 5))) {
        amx_why = "the CPU has no AVX512_BF16";
        return false;
    }
    if (!__get_cpuid(1, &a1, &b1, &c1, &d1) || !(c1 & (1u << 27))) {
        amx_why = "the OS does not enable XSAVE";
        return false;
    }
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned need = (1u << 1) | (1u << 2) | (7u << 5) | (3u << 17); /* SSE, AVX, AVX-512, tiles */
    if ((lo & need) != need) {
        amx_why = "the OS does not enable the AVX-512 or AMX register state";
        return false;
    }
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        amx_why = "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)";
        return false;
    }
    return true;
}

bool mm_blas_bf16_available(const char **why)
{
    if (amx_state < 0) amx_state = probe_amx() ? 1 : 0;
    if (why) *why = amx_state ? "" : amx_why;
    return amx_state == 1;
}

mm_status mm_blas_set_precision(mm_precision p)
{
    const char *why = "";
    if (p == MM_PREC_BF16 && !mm_blas_bf16_available(&why)) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "precision bf16 needs Intel AMX-BF16, and %s", why);
        mm_error_hint("use precision fp32 (the default) on this machine");
        return st;
    }
    use_bf16 = p == MM_PREC_BF16;
    if (!use_bf16) mm_gemm_amx_release();
    return MM_OK;
}

mm_precision mm_blas_precision(void) { return use_bf16 ? MM_PREC_BF16 : MM_PREC_FP32; }

/* Below this many multiply-adds the packing costs more than the tiles save. */
#define BF16_MIN_MACS (32.0 * 32.0 * 32.0)

bool mm_blas_avx512_used(void)
{
    if (avx512_state < 0) avx512_state = probe_avx512() ? 1 : 0;
    return avx512_state == 1;
}

void mm_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    bool any = m > 0 && n > 0 && k > 0, big = any && (double)m * (double)n * (double)k >= BF16_MIN_MACS;
    /* float32 (and bf16's small products): every size on the one kernel, so that a row of
     * C comes out the same whether the call has all the batch's rows or one rank's share */
    if ((big && use_bf16 && mm_gemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0) ||
        (any && mm_blas_avx512_used() && mm_gemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0)) {
        flops += 2.0 * (double)m * (double)n * (double)k;
        return;
    }
    mm_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
