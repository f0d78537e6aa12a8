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
 *    of its members); an anchor unused for reseed_after steps (hit by no row, counted
 *    from its last hit or re-seeding) is overwritten, in increasing global index, by
 *    batch rows taken in the order of the re-seeding rule, at most N per step:
 *      MM_BANK_RESEED_FIRST     rows 0, 1, 2, ... (golden README 5.12);
 *      MM_BANK_RESEED_FARTHEST  rows by increasing cosine to their assigned anchor
 *                               (before the momentum update; ties: smaller row), so
 *                               the molecules the bank represents worst come first;
 *  - initial anchors are a pure function of (seed, global index), so the bank is the
 *    same whatever the number of ranks. With MM_BANK_INIT_BATCH every anchor starts
 *    due for re-seeding: the first updates replace the random anchors by batch rows
 *    (N per step, in index order) before the loss could collapse onto one of them;
 *  - re-seeding depends only on the global batch and the global anchor index, never
 *    on the number of ranks: 1, 2 or 3 ranks (uneven blocks) give the same bank.
 * mm_bank_init gives the golden rule (random init, rows in order); mm_bank_set_rules
 * changes it before the first step (the job keys loss.mem_init, loss.mem_reseed_from). */
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
    int reseed_rule;        /* mm_bank_reseed_rule */
    uint8_t *window_hit;    /* [m_local] hit since the last mm_bank_window call */
    int64_t window_reseeded, window_steps;
    double *cosv;           /* [cap] scratch: each row's cosine to its anchor (FARTHEST) */
    struct mm_bank_key { double cos; int64_t row; } *keys; /* [cap] rows in re-seeding order (scratch) */
    int64_t cap;
    double *sum;            /* [m_local, dim] scratch of the update (kept: no per-step allocation) */
    int64_t *count;         /* [m_local] */
} mm_memory_bank;

/* Statistics of one step, identical on every rank. */
typedef struct mm_bank_stats {
    int64_t anchors_hit;    /* distinct anchors assigned in this batch */
    double entropy_bits;    /* entropy (bits) of the assignment distribution over the batch */
    int64_t reseeded;       /* anchors re-seeded by the last update */
} mm_bank_stats;

/* Since the previous mm_bank_window call (or the start): identical on every rank. */
typedef struct mm_bank_window_stats {
    int64_t steps;          /* updates in the window */
    int64_t anchors_hit;    /* distinct anchors hit by some row in the window */
    int64_t reseeded;       /* anchors re-seeded in the window */
} mm_bank_window_stats;

typedef enum { MM_BANK_INIT_RANDOM = 0, MM_BANK_INIT_BATCH = 1 } mm_bank_init_rule;
typedef enum { MM_BANK_RESEED_FIRST = 0, MM_BANK_RESEED_FARTHEST = 1 } mm_bank_reseed_rule;

mm_status mm_bank_init(mm_memory_bank *b, mm_dist *d, int64_t m, int64_t dim, uint64_t seed, float tau,
                       float momentum, int64_t reseed_after);
void mm_bank_destroy(mm_memory_bank *b);
/* Initialisation and re-seeding rules (mm_bank_init_rule, mm_bank_reseed_rule); call
 * before the first update (INIT_BATCH marks every anchor due; a checkpoint read after
 * this call restores the saved counters). */
mm_status mm_bank_set_rules(mm_memory_bank *b, int init_rule, int reseed_rule);

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
/* Window statistics since the previous call, then a new window. Collective. */
mm_status mm_bank_window(mm_memory_bank *b, mm_bank_window_stats *w);

#endif
