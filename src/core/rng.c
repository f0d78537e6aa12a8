/* rng.c: Philox4x32-10 (Salmon et al., SC'11), as in Random123. */
#include "mmsa/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void mm_philox4x32(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4])
{
    /* counter block = (counter lo, counter hi, stream lo, stream hi); key = seed. */
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The rounds of mm_philox4x32 over a run of counters, lane by lane: the loops over the
 * lanes are plain C the vectoriser turns into SIMD (32 x 32 -> 64-bit multiplies). */
void mm_philox4x32_blocks(uint64_t seed, uint64_t stream, uint64_t counter, int64_t n, uint32_t *out)
{
    enum { LANES = 64 };
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int64_t b0 = 0; b0 < n; b0 += LANES) {
        int m = n - b0 < LANES ? (int)(n - b0) : LANES;
        for (int j = 0; j < m; j++) {
            uint64_t ctr = counter + (uint64_t)(b0 + j);
            c0[j] = (uint32_t)ctr;
            c1[j] = (uint32_t)(ctr >> 32);
            c2[j] = (uint32_t)stream;
            c3[j] = (uint32_t)(stream >> 32);
        }
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int round = 0; round < 10; round++) {
            for (int j = 0; j < m; j++) {
                uint64_t p0 = (uint64_t)PHILOX_M0 * c0[j], p1 = (uint64_t)PHILOX_M1 * c2[j];
                uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
                c0[j] = n0;
                c1[j] = (uint32_t)p1;
                c2[j] = n2;
                c3[j] = (uint32_t)p0;
            }
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint32_t *o = out + 4 * b0;
        for (int j = 0; j < m; j++) {
            o[4 * j] = c0[j];
            o[4 * j + 1] = c1[j];
            o[4 * j + 2] = c2[j];
            o[4 * j + 3] = c3[j];
        }
    }
}

void mm_rng_init(mm_rng *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
    r->buf_left = 0;
}

uint32_t mm_rng_u32(mm_rng *r)
{
    if (r->buf_left == 0) {
        mm_philox4x32(r->seed, r->stream, r->counter++, r->buf);
        r->buf_left = 4;
    }
    return r->buf[4 - r->buf_left--];
}

uint64_t mm_rng_u64(mm_rng *r)
{
    uint64_t hi = mm_rng_u32(r);
    return (hi << 32) | mm_rng_u32(r);
}

float mm_rng_uniform(mm_rng *r) { return (float)(mm_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double mm_rng_uniform_double(mm_rng *r)
{
    return (double)(mm_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

float mm_rng_normal(mm_rng *r)
{
    double u1 = mm_rng_uniform_double(r), u2 = mm_rng_uniform_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t mm_rng_below(mm_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = mm_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float mm_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t out[4];
    mm_philox4x32(seed, stream, index / 4, out);
    return (float)(out[index % 4] >> 8) * (1.0f / 16777216.0f);
}

void mm_rng_permutation(mm_rng *r, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mm_rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
