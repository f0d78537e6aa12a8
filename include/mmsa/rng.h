/* rng.h: counter-based random numbers (Philox4x32-10).
 *
 * A draw is a pure function of (seed, stream, counter), so every random number in a
 * run can be recomputed on any rank in any order: dropout masks are indexed by the
 * global row, shuffles by the epoch, initialisations by the parameter. The state
 * struct only carries the next counter for sequential use. */
#ifndef MMSA_RNG_H
#define MMSA_RNG_H

#include <stdint.h>

typedef struct mm_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;   /* next block; each block yields 4 x 32 bits */
    uint32_t buf[4];
    int buf_left;
} mm_rng;

/* Well-known stream ids, so independent uses never share draws. */
enum {
    MM_STREAM_INIT = 1,     /* + parameter index */
    MM_STREAM_SHUFFLE = 1u << 20, /* + epoch */
    MM_STREAM_DROPOUT = 1u << 21, /* + step * 64 + layer */
    MM_STREAM_ANCHOR = 1u << 22,
    MM_STREAM_USER = 1u << 23
};

/* The 4 x 32-bit block number `counter` of (seed, stream). */
void mm_philox4x32(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4]);
/* Blocks counter .. counter + n - 1 at once (the same values, faster): out [4 n]. */
void mm_philox4x32_blocks(uint64_t seed, uint64_t stream, uint64_t counter, int64_t n, uint32_t *out);

void mm_rng_init(mm_rng *r, uint64_t seed, uint64_t stream);
uint32_t mm_rng_u32(mm_rng *r);
uint64_t mm_rng_u64(mm_rng *r);
float mm_rng_uniform(mm_rng *r);            /* [0, 1), 24-bit resolution */
double mm_rng_uniform_double(mm_rng *r);    /* [0, 1), 53-bit resolution */
float mm_rng_normal(mm_rng *r);             /* standard normal (Box-Muller) */
uint64_t mm_rng_below(mm_rng *r, uint64_t n); /* uniform in [0, n), unbiased */

/* Stateless: uniform [0, 1) number `index` of (seed, stream). */
float mm_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t index);

/* Fisher-Yates permutation of 0..n-1 into perm. */
void mm_rng_permutation(mm_rng *r, int64_t n, int64_t *perm);

#endif
