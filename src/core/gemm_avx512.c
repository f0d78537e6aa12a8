/* gemm_avx512.c: C = alpha op(A) op(B) + beta C in float32 on AVX-512 (blas.h, mm_gemm in
 * float32).
 *
 * Why: the BLIS of this system (Debian 0.9) runs its AVX2 kernel (haswell, 6 x 16) on
 * every x86-64, so a core with AVX-512 multiplies at half its rate in the layers'
 * products. This file is compiled with AVX-512F; nothing in it runs unless blas.c has
 * found AVX-512F on the CPU and its register state enabled by the OS.
 *
 * The usual blocking (Goto, as BLIS): op(B) in blocks of KC x NC packed into panels of
 * NR = 32 columns (k-major, 32 floats per k, zero-padded), op(A) in blocks of MC x KC; a
 * 12 x 32 tile of C is 24 zmm sums over the block's k, folded into C with alpha and beta
 * (beta only on the first block of k; C is not read when beta = 0). Row-major op(A) is
 * not packed: the kernel broadcasts its 12 rows where they lie, k contiguous in each
 * (packing it is a transpose, which cost a quarter of the time); only a last panel of
 * fewer than 12 rows is copied, zero-padded. Transposed A (the weight gradients' dY^T),
 * whose 12 rows at one k are contiguous but a k apart by a whole row of dY, is packed per
 * block of MC x KC into panels of 12 (one masked vector copy per k).
 * Every C element sums its k in the same order whatever m and n are, so a row's values
 * do not depend on the other rows of the call (1 rank vs P ranks). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "gemm_avx512.h"

#define MR 12
#define NR 32
#define KC 256
#define MC 192
#define NC 2048

/* packing buffers, grown as needed and kept for the next call (one thread per rank) */
static float *pack_a, *pack_b;
static size_t cap_a, cap_b;

static int grow(float **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    free(*buf);
    *buf = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    *cap = *buf ? n : 0;
    return *buf ? 0 : -1;
}

void mm_gemm_avx512_release(void)
{
    free(pack_a);
    free(pack_b);
    pack_a = pack_b = NULL;
    cap_a = cap_b = 0;
}

/* mr < MR rows of row-major A, from row i and k p0, by kc into ap [kc][MR], zero-padded. */
static void pack_a_edge(const float *a, int64_t lda, int64_t i, int64_t mr, int64_t p0, int64_t kc, float *restrict ap)
{
    for (int64_t l = 0; l < kc; l++)
        for (int64_t r = 0; r < MR; r++) ap[l * MR + r] = r >= mr ? 0.0f : a[(i + r) * lda + p0 + l];
}

/* Transposed A (stored k x m): op(A) rows [i0, i0 + mc) by k [p0, p0 + kc) into panels
 * ap [ceil(mc / MR)][kc][MR], zero-padded. */
static void pack_a_trans(const float *a, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                         float *restrict ap)
{
    for (int64_t ir = 0; ir < mc; ir += MR, ap += kc * MR) {
        int64_t mr = mc - ir < MR ? mc - ir : MR;
        __mmask16 mask = (__mmask16)((1u << mr) - 1u);
        for (int64_t l = 0; l < kc; l++)
            _mm512_mask_storeu_ps(ap + l * MR, 0x0fff, _mm512_maskz_loadu_ps(mask, a + (p0 + l) * lda + i0 + ir));
    }
}

static inline __m512 lo_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
static inline __m512 hi_pd(__m512 a, __m512 b)
{
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* r[16] (16 rows of 16 floats) transposed in registers: dwords, quadwords, then 128-bit
 * lanes twice. */
static inline void transpose16(__m512 *r)
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = lo_pd(t[i], t[i + 2]);
        r[i + 1] = hi_pd(t[i], t[i + 2]);
        r[i + 2] = lo_pd(t[i + 1], t[i + 3]);
        r[i + 3] = hi_pd(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
            t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    }
}

/* op(B) k [p0, p0 + kc) by columns [j0, j0 + nc) into panels bp [ceil(nc / NR)][kc][NR].
 * Transposed B (stored n x k, the Linear weights of x W^T) by 16 x 16 blocks transposed in
 * registers, masked at the edges (masked-off lanes are not read). */
static void pack_b_block(bool tb, const float *b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                         float *restrict bp)
{
    for (int64_t jr = 0; jr < nc; jr += NR, bp += kc * NR) {
        int64_t nr = nc - jr < NR ? nc - jr : NR;
        if (!tb) { /* B stored k x n: NR columns contiguous at each k */
            __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
            __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
            for (int64_t l = 0; l < kc; l++) {
                const float *src = b + (p0 + l) * ldb + j0 + jr;
                _mm512_store_ps(bp + l * NR, _mm512_maskz_loadu_ps(m0, src));
                _mm512_store_ps(bp + l * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
        } else {
            for (int64_t c0 = 0; c0 < NR; c0 += 16) {
                int64_t rows = nr - c0 < 0 ? 0 : nr - c0 < 16 ? nr - c0 : 16;
                for (int64_t l0 = 0; l0 < kc; l0 += 16) {
                    int64_t kl = kc - l0 < 16 ? kc - l0 : 16;
                    __mmask16 mk = (__mmask16)((1u << kl) - 1u);
                    __m512 r[16];
                    for (int64_t i = 0; i < 16; i++)
                        r[i] = i < rows ? _mm512_maskz_loadu_ps(mk, b + (j0 + jr + c0 + i) * ldb + p0 + l0)
                                        : _mm512_setzero_ps();
                    transpose16(r);
                    for (int64_t i = 0; i < kl; i++) _mm512_store_ps(bp + (l0 + i) * NR + c0, r[i]);
                }
            }
        }
    }
}

/* The MR x NR tile: c [mr, nr] (row stride ldc) = alpha A bp + beta c, A's element (r, l)
 * at ap[r * rs + l * ks]: rs = 1 (k-major, ks its stride) or ks = 1 (row-major, rs). */
static inline __attribute__((always_inline)) void kernel_body(int64_t kc, const float *restrict ap, int64_t rs,
                                                              int64_t ks, const float *restrict bp, float *c,
                                                              int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                                              float beta)
{
    __m512 s[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
    for (int64_t l = 0; l < kc; l++) {
        __m512 b0 = _mm512_load_ps(bp + l * NR), b1 = _mm512_load_ps(bp + l * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ap[r * rs + l * ks]);
            s[r][0] = _mm512_fmadd_ps(av, b0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(av, b1, s[r][1]);
        }
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(va, s[r][0]), v1 = _mm512_mul_ps(va, s[r][1]);
        if (beta != 0.0f) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/* A k-major (transposed, or an edge copy): rows contiguous at each k, k at stride ks. */
static void kernel_kmajor(int64_t kc, const float *ap, int64_t ks, const float *bp, float *c, int64_t ldc, int64_t mr,
                          int64_t nr, float alpha, float beta)
{
    kernel_body(kc, ap, 1, ks, bp, c, ldc, mr, nr, alpha, beta);
}

/* A row-major: k contiguous in each row, rows at stride rs. */
static void kernel_rows(int64_t kc, const float *ap, int64_t rs, const float *bp, float *c, int64_t ldc, int64_t mr,
                        int64_t nr, float alpha, float beta)
{
    kernel_body(kc, ap, rs, 1, bp, c, ldc, mr, nr, alpha, beta);
}

int mm_gemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    int64_t ncb = n < NC ? n : NC, kcb = k < KC ? k : KC;
    int64_t mcb = m < MC ? m : MC;
    if (grow(&pack_b, &cap_b, (size_t)((ncb + NR - 1) / NR * NR * kcb)) ||
        grow(&pack_a, &cap_a, (size_t)((mcb + MR - 1) / MR * MR * kcb)))
        return -1;
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        int64_t nc = n - j0 < NC ? n - j0 : NC;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            int64_t kc = k - p0 < KC ? k - p0 : KC;
            float bet = p0 == 0 ? beta : 1.0f;
            pack_b_block(tb, b, ldb, p0, kc, j0, nc, pack_b);
            for (int64_t i0 = 0; i0 < m; i0 += MC) {
                int64_t mc = m - i0 < MC ? m - i0 : MC;
                if (ta) pack_a_trans(a, lda, i0, mc, p0, kc, pack_a);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const float *bp = pack_b + jr * kc;
                    int64_t nr = nc - jr < NR ? nc - jr : NR;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t i = i0 + ir, mr = mc - ir < MR ? mc - ir : MR;
                        float *ct = c + i * ldc + j0 + jr;
                        if (ta)
                            kernel_kmajor(kc, pack_a + ir * kc, MR, bp, ct, ldc, mr, nr, alpha, bet);
                        else if (mr < MR) {
                            if (jr == 0) pack_a_edge(a, lda, i, mr, p0, kc, pack_a);
                            kernel_kmajor(kc, pack_a, MR, bp, ct, ldc, mr, nr, alpha, bet);
                        } else
                            kernel_rows(kc, a + i * lda + p0, lda, bp, ct, ldc, mr, nr, alpha, bet);
                    }
                }
            }
        }
    }
    return 0;
}
