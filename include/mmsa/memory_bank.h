/* memory_bank.h: the memory bank of anchors, partitioned across ranks.
 *
 * Owns: rank r's contiguous block of the M anchors (L2-normalised rows of width
 * dim) and their "steps since last hit" counters. Memory per rank is O(M dim / P).
 * Promises (golden README 5.12):
 *  - nearest anchor = largest cosine over the whole bank, first (smallest) global
 *    index on ties: local best, then an allreduce (MPI_MAXLOC, which keeps the
 *    smallest index on ties), so the assignment equals the single-rank one;
 *  - L_mem = mean_i [logsumexp_j(sim_ij / tau) - sim_{i,a_i} / tau] over the whole
 *    bank, with allreduced max and sum (sharded softmax); its backward gives each
 *    rank the gradient of its own anchors' share (the sum over ranks is exact);
 *  - after the optimiser step, every hit anchor moves to normalise(m A + (1-m) mean
 *    of its members); an anchor unused for reseed_after steps is overwritten, in
 *    increasing global index, by the batch rows 0, 1, ... (at most N per step);
 *  - initial anchors are a pure function of (seed, global index), so the bank is the
 *    same whatever the number of ranks. */
#ifndef MMSA_MEMORY_BANK_H
#define MMSA_MEMORY_BANK_H

#include <stdint.h>

#include "mmsa/dist.h"
#include "mmsa/tensor.h"

typedef struct mm_memory_bank {
    mm_dist *d;
    int64_t m, dim;         /* global anchors and width */
    int64_t m0, m_local;    /* this rank owns anchors m0 .. m0 + m_local - 1 */
    float *anchors;         /* [m_local, dim] */
    int64_t *unused;        /* [m_local] steps since the anchor was last hit */
    float tau, momentum;
    int64_t reseed_after;
    double *sum;            /* [m_local, dim] scratch of the update (kept: no per-step allocation) */
    int64_t *count;         /* [m_local] */
} mm_memory_bank;

/* Statistics of one step, identical on every rank. */
typedef struct mm_bank_stats {
    int64_t anchors_hit;    /* distinct anchors assigned in this batch */
    double entropy;         /* entropy (nats) of the assignment distribution */
    int64_t reseeded;       /* anchors re-seeded by the last update */
} mm_bank_stats;

mm_status mm_bank_init(mm_memory_bank *b, mm_dist *d, int64_t m, int64_t dim, uint64_t seed, float tau,
                       float momentum, int64_t reseed_after);
void mm_bank_destroy(mm_memory_bank *b);

/* s_hat [N, dim]: normalised embeddings of the global batch, identical on every rank.
 * assign [N] (caller-owned) receives the nearest anchor of each row; sim (optional,
 * [N, m_local]) the local cosines. *loss is the scalar L_mem (same value on every
 * rank), differentiable in s_hat. */
mm_status mm_bank_loss(mm_memory_bank *b, mm_tape *t, mm_tensor *s_hat, int64_t *assign, mm_tensor **loss);
/* Momentum update and re-seeding from the same step's (detached) s_hat and assign. */
mm_status mm_bank_update(mm_memory_bank *b, const float *s_hat, const int64_t *assign, int64_t n,
                         mm_bank_stats *stats);
/* Assignment statistics of a step (no communication: assign is global). */
void mm_bank_assign_stats(const mm_memory_bank *b, const int64_t *assign, int64_t n, mm_bank_stats *stats);

#endif
