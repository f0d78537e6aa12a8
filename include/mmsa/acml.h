/* acml.h: the ACML objective's projection heads and loss (DESIGN.md section 3b; golden
 * README-acml.md), over a global batch spread across ranks.
 *
 * Owns: the parameters of a projection head (declared in a caller's registry under a
 * prefix, named as in the golden file: "proj.teacher.0.lin_a.weight", ...), its forward
 * on a tape, the loss, and the retrieval ranks that evaluate it. Promises:
 *  - a head is n_cells cells; cell(x) = LayerNorm(dropout(GELU(z) W_b^T + b_b) + z) with
 *    z = x W_a^T + b_a, GELU in erf form, LayerNorm eps 1e-5 with gain and bias; no L2
 *    normalisation;
 *  - the loss is split by rows like MMSA's InfoNCE terms: each rank passes the head
 *    outputs of its own pairs (rows row0 ..), the loss gathers U and G, computes the rows
 *    of the soft targets T = softmax_rows(tau (U U^T + G G^T) / 2) and of Z = U G^T / tau
 *    that its pairs own, and returns its part; the parts of all ranks add up to
 *    L = mean_i (l1_i + l2_i) / 2, no rank holds a B x B matrix, and the targets are not
 *    detached (their gradient reaches U and G);
 *  - retrieval ranks: dot-product scores, ties to the smaller index. */
#ifndef MMSA_ACML_H
#define MMSA_ACML_H

#include <stdint.h>

#include "mmsa/dist.h"
#include "mmsa/params.h"
#include "mmsa/tensor.h"

#define MM_ACML_MAX_CELLS 4

typedef struct mm_acml_head {
    int n_cells;
    int64_t in_dim, width[MM_ACML_MAX_CELLS];
    /* parameter indices per cell: lin_a [w, in], lin_b [w, w], norm gain and bias [w] */
    int wa[MM_ACML_MAX_CELLS], ba[MM_ACML_MAX_CELLS], wb[MM_ACML_MAX_CELLS], bb[MM_ACML_MAX_CELLS];
    int gain[MM_ACML_MAX_CELLS], bias[MM_ACML_MAX_CELLS];
} mm_acml_head;

/* Declare the head's parameters in p (before mm_params_alloc): prefix.<c>.lin_a.weight
 * [width[c], in], .lin_a.bias, .lin_b.weight [width[c], width[c]], .lin_b.bias,
 * .norm.weight, .norm.bias, for c = 0 .. n_cells - 1; the input of cell c > 0 is cell
 * c - 1's output. */
mm_status mm_acml_head_declare(mm_params *p, const char *prefix, int64_t in_dim, const int64_t *width, int n_cells,
                               mm_acml_head *h);
/* PyTorch defaults after mm_params_alloc: Linear U(+-1/sqrt(fan_in)), LayerNorm gain 1, bias 0. */
void mm_acml_head_init(mm_params *p, const mm_acml_head *h, uint64_t seed);

/* out [n, width[n_cells - 1]] for x [n, in_dim]. dropout p applies in training mode,
 * with masks indexed by global row (row0: the global index of x's first row; stream
 * picks the head) so that a run on P ranks draws those of one rank. cell_z and cell_out
 * (each [n_cells] or NULL) receive every cell's z and output, for tests. */
mm_status mm_acml_head_forward(mm_tape *t, const mm_params *p, const mm_acml_head *h, mm_tensor *x, float dropout,
                               uint64_t seed, uint64_t stream, int64_t row0, mm_tensor **out, mm_tensor **cell_z,
                               mm_tensor **cell_out);

/* This rank's part of the ACML loss: u, g [counts[rank], d] its pairs' teacher and graph
 * head outputs (global rows row0 ..). Collective over d (two allgathers, the column
 * statistics). targets_out (may be NULL) receives this rank's rows of T [m, B]. */
mm_status mm_acml_loss_rows(mm_tape *t, mm_dist *d, mm_tensor *u, mm_tensor *g, const int64_t *counts, int64_t row0,
                            float tau, mm_tensor **out, mm_tensor **targets_out);

/* Cross-modal retrieval: rank[i] = 0-based rank of b_i among all b_j scored by
 * a_i . b_j, ties to the smaller j (a, b [n, d], row-major). */
void mm_retrieval_ranks(const float *a, const float *b, int64_t n, int64_t d, int64_t *rank);

#endif
