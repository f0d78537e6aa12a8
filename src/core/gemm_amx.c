/* gemm_amx.c: C = alpha op(A) op(B) + beta C with bfloat16 inputs and float32
 * accumulation on Intel AMX tiles (blas.h, mm_gemm with train.precision bf16).
 *
 * This file is compiled with the AMX and AVX-512 BF16 instruction sets; nothing in it
 * runs unless blas.c has found AMX-BF16 on the CPU and the kernel has granted the
 * tile state (mm_gemm_amx_usable). op(A) is packed into 16 x 32 bf16 tiles (rows of
 * C by k), op(B) into 16 x (16 x 2) tiles in the pair-interleaved layout TDPBF16PS
 * reads (VNNI: row r holds k = 2r, 2r+1 of 16 columns), both zero-padded to whole
 * blocks of 32 rows / columns / k. Each 32 x 32 block of C is four accumulator tiles
 * over the whole k, stored once and folded into C with alpha and beta. Rounding to
 * bf16 is to nearest, ties to even (as _mm512_cvtne2ps_pbh). */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_amx.h"

typedef struct {
    uint8_t palette_id, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* packing buffers, grown as needed and kept for the next call (one thread per rank) */
static uint16_t *pack_a, *pack_b;
static size_t cap_a, cap_b;

static int grow(uint16_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    free(*buf);
    *buf = aligned_alloc(64, (n * sizeof(uint16_t) + 63) / 64 * 64);
    *cap = *buf ? n : 0;
    return *buf ? 0 : -1;
}

void mm_gemm_amx_release(void)
{
    free(pack_a);
    free(pack_b);
    pack_a = pack_b = NULL;
    cap_a = cap_b = 0;
}

/* 32 floats (the first n valid, the rest 0) as 32 bf16. */
static inline __m512i cvt32v(const float *src, int64_t n)
{
    __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u);
    __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1u);
    __m512 lo = _mm512_maskz_loadu_ps(m0, src), hi = _mm512_maskz_loadu_ps(m1, src + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* Rows x0 and x1 (16 floats each, lanes outside `mask` read as 0) as 16 dwords, dword c
 * holding the pair (x0[c], x1[c]) in bf16: the VNNI layout of two consecutive k. */
static inline __m512i pair16(const float *x0, const float *x1, __mmask16 mask)
{
    static const short order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __m512 lo = x0 ? _mm512_maskz_loadu_ps(mask, x0) : _mm512_setzero_ps();
    __m512 hi = x1 ? _mm512_maskz_loadu_ps(mask, x1) : _mm512_setzero_ps();
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* x0 in words 0..15, x1 in 16..31 */
    return _mm512_permutexvar_epi16(_mm512_loadu_si512((const void *)order), both);
}

/* v[0..16) as the rows of a 16 x 16 matrix of dwords, transposed in place: unpack dwords,
 * then quadwords, within 128-bit lanes, then a 4 x 4 transpose of the lanes. */
static inline void transpose16(__m512i v[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* u[g + j], lane L: column 4L + j of rows g .. g+3 */
        v[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        v[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        v[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        v[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512i s0 = _mm512_shuffle_i32x4(v[j], v[4 + j], 0x44), s1 = _mm512_shuffle_i32x4(v[j], v[4 + j], 0xEE);
        __m512i s2 = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], 0x44), s3 = _mm512_shuffle_i32x4(v[8 + j], v[12 + j], 0xEE);
        t[j] = _mm512_shuffle_i32x4(s0, s2, 0x88);      /* column j */
        t[4 + j] = _mm512_shuffle_i32x4(s0, s2, 0xDD);  /* column 4 + j */
        t[8 + j] = _mm512_shuffle_i32x4(s1, s3, 0x88);  /* column 8 + j */
        t[12 + j] = _mm512_shuffle_i32x4(s1, s3, 0xDD); /* column 12 + j */
    }
    for (int i = 0; i < 16; i++) v[i] = t[i];
}

/* op(A) [m, k] -> tiles [mb][kb] of 16 x 32. With A transposed (stored [k, m]), two k
 * rows of 16 columns become 16 pairs at once, and 16 such vectors transposed are 16 tile rows. */
static void pack_rows(bool ta, const float *a, int64_t lda, int64_t m, int64_t k, int64_t mb, int64_t kb,
                      uint16_t *dst)
{
    for (int64_t ib = 0; ib < mb; ib++)
        for (int64_t kk = 0; kk < kb; kk++) {
            uint16_t *t = dst + (ib * kb + kk) * 512;
            int64_t k0 = kk * 32, kn = k - k0 < 32 ? k - k0 : 32;
            int64_t i0 = ib * 16, in = m - i0 < 16 ? (m - i0 > 0 ? m - i0 : 0) : 16;
            if (ta) {
                __mmask16 mask = in == 16 ? 0xffff : (__mmask16)((1u << in) - 1u);
                __m512i v[16];
                for (int64_t p = 0; p < 16; p++) {
                    int64_t q = 2 * p;
                    const float *x0 = in && q < kn ? a + (k0 + q) * lda + i0 : NULL;
                    const float *x1 = in && q + 1 < kn ? a + (k0 + q + 1) * lda + i0 : NULL;
                    v[p] = pair16(x0, x1, mask); /* dword i: row i's k pair p */
                }
                transpose16(v); /* v[i]: row i's 16 pairs */
                for (int64_t i = 0; i < 16; i++) _mm512_storeu_si512((void *)(t + 32 * i), v[i]);
                continue;
            }
            for (int64_t r = 0; r < 16; r++) {
                uint16_t *row = t + r * 32;
                if (r >= in) memset(row, 0, 64);
                else _mm512_storeu_si512((void *)row, cvt32v(a + (i0 + r) * lda + k0, kn));
            }
        }
}

/* op(B) [k, n] -> tiles [kb][nb] of 16 rows x (16 columns x 2 k). Transposed (stored
 * [n, k]), a column's 32 k are contiguous: 16 columns converted are the tile transposed;
 * not transposed, rows k and k+1 interleave into one tile row. */
static void pack_cols(bool tb, const float *b, int64_t ldb, int64_t k, int64_t n, int64_t kb, int64_t nb,
                      uint16_t *dst)
{
    for (int64_t kk = 0; kk < kb; kk++)
        for (int64_t jb = 0; jb < nb; jb++) {
            uint32_t *t = (uint32_t *)(dst + (kk * nb + jb) * 512);
            int64_t k0 = kk * 32, kn = k - k0 < 32 ? k - k0 : 32;
            int64_t j0 = jb * 16, jn = n - j0 < 16 ? (n - j0 > 0 ? n - j0 : 0) : 16;
            if (!tb) {
                __mmask16 mask = jn == 16 ? 0xffff : (__mmask16)((1u << jn) - 1u);
                for (int64_t r = 0; r < 16; r++) {
                    int64_t q = 2 * r;
                    const float *x0 = jn && q < kn ? b + (k0 + q) * ldb + j0 : NULL;
                    const float *x1 = jn && q + 1 < kn ? b + (k0 + q + 1) * ldb + j0 : NULL;
                    _mm512_storeu_si512((void *)(t + r * 16), pair16(x0, x1, mask));
                }
                continue;
            }
            __m512i v[16];
            for (int64_t c = 0; c < 16; c++) {
                if (c >= jn) {
                    v[c] = _mm512_setzero_si512();
                    continue;
                }
                v[c] = cvt32v(b + (j0 + c) * ldb + k0, kn); /* k contiguous in row j of B; dword r: pair r */
            }
            transpose16(v); /* v[r]: k pair r of the 16 columns, the tile's row r */
            for (int64_t r = 0; r < 16; r++) _mm512_storeu_si512((void *)(t + r * 16), v[r]);
        }
}

int mm_gemm_amx(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    /* blocks of 16, rounded up to pairs so every 32 x 32 block of C has four tiles */
    int64_t mb = (m + 31) / 32 * 2, nb = (n + 31) / 32 * 2, kb = (k + 31) / 32;
    if (grow(&pack_a, &cap_a, (size_t)(mb * kb * 512)) || grow(&pack_b, &cap_b, (size_t)(kb * nb * 512))) return -1;
    pack_rows(ta, a, lda, m, k, mb, kb, pack_a);
    pack_cols(tb, b, ldb, k, n, kb, nb, pack_b);

    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    float acc[4][16 * 16] __attribute__((aligned(64)));
    for (int64_t ib = 0; ib < mb; ib += 2)
        for (int64_t jb = 0; jb < nb; jb += 2) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            const uint16_t *a0 = pack_a + ib * kb * 512, *a1 = a0 + kb * 512;
            for (int64_t kk = 0; kk < kb; kk++) {
                const uint16_t *b0 = pack_b + (kk * nb + jb) * 512;
                _tile_loadd(4, a0 + kk * 512, 64);
                _tile_loadd(5, a1 + kk * 512, 64);
                _tile_loadd(6, b0, 64);
                _tile_loadd(7, b0 + 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, acc[0], 64);
            _tile_stored(1, acc[1], 64);
            _tile_stored(2, acc[2], 64);
            _tile_stored(3, acc[3], 64);
            for (int q = 0; q < 4; q++) {
                int64_t i0 = (ib + (q >> 1)) * 16, j0 = (jb + (q & 1)) * 16;
                if (i0 >= m || j0 >= n) continue;
                int64_t rows = m - i0 < 16 ? m - i0 : 16, cols = n - j0 < 16 ? n - j0 : 16;
                __mmask16 mask = cols == 16 ? 0xffff : (__mmask16)((1u << cols) - 1u);
                __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
                for (int64_t r = 0; r < rows; r++) {
                    float *cr = c + (i0 + r) * ldc + j0;
                    __m512 v = _mm512_mul_ps(va, _mm512_load_ps(acc[q] + r * 16));
                    if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, cr), v);
                    _mm512_mask_storeu_ps(cr, mask, v);
                }
            }
        }
    _tile_release();
    return 0;
}
