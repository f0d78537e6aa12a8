/* loss.h: the training losses, each a scalar tensor [1] with its own fused backward.
 *
 * Contract as in ops.h: the output lives in the tape's arena, a backward is recorded
 * when an input carries a gradient, and it ADDS d(loss)/d(input) scaled by the
 * loss's incoming gradient. Every loss is a MEAN over the rows (or elements) it
 * counts; when it counts none (an empty batch, every label missing, every row
 * masked) the loss is exactly 0 with a zero gradient, never NaN, so a step whose
 * local shard has no labels still takes part in the gradient allreduce.
 *
 * Log-sum-exp is always taken stably (row maximum subtracted, sums in double), so
 * logits of magnitude 1e3 or more give finite losses and gradients.
 *
 * Label, mask and weight arrays given as plain pointers are copied into the tape's
 * arena; tensors passed as data (labels, targets) must stay valid until the backward. */
#ifndef MMSA_LOSS_H
#define MMSA_LOSS_H

#include <stdint.h>

#include "mmsa/tensor.h"

/* Cross-entropy from logits with hard targets: logits [n, C], targets [n] in [0, C).
 * CE_i = logsumexp_j z_ij - z_i,targets[i]. row_weight [n] or NULL (all 1):
 * loss = sum_i w_i CE_i / sum_i w_i, so 0/1 weights are a mask and the loss is the
 * mean over the rows kept. Weights must be finite and >= 0; a row of weight 0 is
 * skipped entirely (its target is not read, so -1 may mark a missing label). */
mm_status mm_cross_entropy(mm_tape *t, mm_tensor *logits, const int64_t *targets,
                           const float *row_weight, mm_tensor **out);

/* Cross-entropy with soft targets: logits [n, C], targets q [n, C] (probabilities).
 * loss = (1/n) sum_i -sum_j q_ij log_softmax(z_i)_j. Differentiated with respect to
 * both z and q: targets that carry a gradient receive -(1/n) log_softmax(z). */
mm_status mm_cross_entropy_soft(mm_tape *t, mm_tensor *logits, mm_tensor *targets,
                                mm_tensor **out);

/* Mean squared error over all elements of a and b (same shape); gradient to both. */
mm_status mm_mse(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out);

/* Masked MSE: a, b [rows, cols], row_mask [rows] (nonzero = present) or NULL (all).
 * loss = mean over present rows of the per-row mean over columns of (a - b)^2. This
 * is the golden model's L_rec with one row per (molecule, modality) pair. Gradient to
 * both a and b (the reconstruction targets are not detached). */
mm_status mm_mse_masked(mm_tape *t, mm_tensor *a, mm_tensor *b, const uint8_t *row_mask,
                        mm_tensor **out);

/* Binary cross-entropy with logits and missing labels: logits [n, T], labels [n, T]
 * (float data, NaN = missing, no gradient). loss = mean over present entries of
 * max(z, 0) - z y + log(1 + exp(-|z|)). */
mm_status mm_bce_logits_masked(mm_tape *t, mm_tensor *logits, const mm_tensor *labels,
                               mm_tensor **out);

/* Symmetric InfoNCE: a, b [n, d] (rows L2-normalised by the caller), tau > 0.
 * S = a b^T / tau; L_row = mean_i (logsumexp_j S_ij - S_ii);
 * L_col = mean_j (logsumexp_i S_ij - S_jj); loss = (L_row + L_col) / 2.
 * n < 2 gives 0 (a single pair has no negatives). a and b may be the same tensor. */
mm_status mm_info_nce(mm_tape *t, mm_tensor *a, mm_tensor *b, float tau, mm_tensor **out);

/* The same loss split by rows, for a batch spread over ranks: A and B have n rows in
 * all; this call gets a = rows row0 .. row0 + m - 1 of A ([m, d], this rank's
 * molecules) and b = all of B ([n, d], gathered), and returns this block's part of the
 * loss, (1/2n) sum over its rows i of (lse_row_i - S_ii + lse_col_i - S_ii). The parts
 * of all blocks add up to mm_info_nce(A, B); the per-block work and memory are
 * O(m n), not O(n^2). The column logsumexp spans every row: `red` combines the column
 * maxima and sums over the blocks (collective when it is mm_dist_col_reducer; every
 * rank calls, with m = 0 too). The backward needs no communication; the parts must
 * enter the objective with equal weights. red == NULL: a holds every row (row0 = 0). */
typedef struct mm_col_reducer {
    mm_status (*max_float)(void *ctx, float *buf, int64_t n);   /* in place, over the blocks */
    mm_status (*sum_double)(void *ctx, double *buf, int64_t n); /* in place, over the blocks */
    void *ctx;
} mm_col_reducer;
mm_status mm_info_nce_rows(mm_tape *t, mm_tensor *a, mm_tensor *b, int64_t row0, float tau,
                           const mm_col_reducer *red, mm_tensor **out);

/* The two-way cross-entropy with given soft targets, split by rows like mm_info_nce_rows:
 * u = rows row0 .. row0 + m - 1 of U ([m, d]), g = all of G ([n, d]), targets = the same
 * rows of T ([m, n]); returns this block's part of (CE_rows + CE_cols) / 2 of
 * mm_clip_soft_loss_given. Targets that carry a gradient receive it (ACML's targets are
 * computed from U and G and are not detached). */
mm_status mm_clip_soft_loss_rows(mm_tape *t, mm_tensor *u, mm_tensor *g, int64_t row0, mm_tensor *targets, float tau,
                                 const mm_col_reducer *red, mm_tensor **out);

/* ACML's CLIP-style loss with soft targets (DESIGN.md, ACML objective), U, G [n, d]:
 *   logits = U G^T / tau;
 *   targets = row-softmax of ((U U^T + G G^T) / 2 * tau)   (multiplied by tau, as
 *             DESIGN writes it);
 *   loss = (CE_rows + CE_cols) / 2, CE_rows = (1/n) sum_i -sum_j T_ij log_softmax_j(logits)_ij,
 *   CE_cols = (1/n) sum_j -sum_i T_ij log_softmax_i(logits)_ij (logits^T against T^T).
 * The TARGETS ARE DETACHED: no gradient flows through them, only through the logits
 * (to U and G). n = 0 gives 0. */
mm_status mm_clip_soft_loss(mm_tape *t, mm_tensor *u, mm_tensor *g, float tau, mm_tensor **out);
/* Its pieces: the detached targets [n, n] (a tensor without gradient) ... */
mm_status mm_clip_soft_targets(mm_tape *t, const mm_tensor *u, const mm_tensor *g, float tau,
                               mm_tensor **out);
/* ... and the loss for given targets [n, n], treated as constants (columns of T need
 * not sum to 1; the gradient uses the general soft-target form). */
mm_status mm_clip_soft_loss_given(mm_tape *t, mm_tensor *u, mm_tensor *g,
                                  const mm_tensor *targets, float tau, mm_tensor **out);

#endif
