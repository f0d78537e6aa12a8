/* nn.h: neural-network layer ops (normalisation, dropout, embeddings, convolution,
 * pooling), each differentiable on the autograd tape.
 *
 * Same contract as ops.h: inputs are tensors on tape t, the output is a new tensor in
 * t's arena returned through `out`, and when an input carries a gradient the op
 * records a backward that ADDS into the input gradients. Shape errors are
 * MM_ERR_ARG naming the op and the shapes.
 *
 * Distributed promise: BatchNorm and dropout give the same result for a batch split
 * across ranks as for the whole batch on one rank. BatchNorm reaches the other ranks
 * only through the tape's allreduce hook (tensor.h), so every rank of a batch must run
 * the same sequence of BatchNorm calls (forward, and backward when x needs a
 * gradient), each of which is then a collective; dropout needs no communication
 * because its mask is a pure function of (seed, stream, global element index). */
#ifndef MMSA_NN_H
#define MMSA_NN_H

#include <stdint.h>

#include "mmsa/tensor.h"

/* ---- LayerNorm ---------------------------------------------------------------
 * x viewed as [rows, cols], cols = product of the last `norm_dims` dimensions
 * (1 <= norm_dims <= x->ndim), rows = product of the others. Each row is
 * normalised with its own mean and biased variance (computed in double):
 *   y = (x - mean) / sqrt(var + eps) * gamma + beta,
 * gamma, beta [cols] (each may be NULL: scale 1, shift 0). */
mm_status mm_layernorm(mm_tape *t, mm_tensor *x, int norm_dims, mm_tensor *gamma,
                       mm_tensor *beta, float eps, mm_tensor **out);

/* ---- BatchNorm (PyTorch BatchNorm1d / BatchNorm2d semantics) ------------------
 * x [N, C] (1d), [N, C, L] or [N, C, H, W] (2d); statistics per channel c over the
 * N rows and all positions (n = N * L or N * H * W values per channel).
 * gamma, beta [C] (each may be NULL). running_mean, running_var: float[C] owned by
 * the caller.
 *
 * t->training: mean and BIASED variance of the batch, accumulated in double in two
 *   passes (sum -> mean, then sum of squared deviations -> variance). With
 *   t->allreduce set, counts and sums are summed across ranks, so the statistics are
 *   those of the GLOBAL batch, and the backward likewise sums sum(dy) and
 *   sum(dy * xhat) across ranks before forming dx. gamma/beta gradients stay local
 *   (they are parameters; the gradient allreduce sums them). If running_mean and
 *   running_var are non-NULL they are updated with the global n:
 *     running_mean = (1 - momentum) running_mean + momentum * mean
 *     running_var  = (1 - momentum) running_var  + momentum * var * n / (n - 1)
 *   A global count n < 2 is MM_ERR_ARG (the same on every rank).
 * !t->training: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta, no
 *   communication; running_mean and running_var are required. */
mm_status mm_batchnorm(mm_tape *t, mm_tensor *x, mm_tensor *gamma, mm_tensor *beta,
                       float *running_mean, float *running_var, float momentum, float eps,
                       mm_tensor **out);
/* mm_relu(mm_batchnorm(...)) as one op: the same values, statistics and gradients,
 * without the normalised tensor and its gradient. Its backward masks out's gradient in
 * place, so out->grad is unspecified once the backward has passed this op. */
mm_status mm_batchnorm_relu(mm_tape *t, mm_tensor *x, mm_tensor *gamma, mm_tensor *beta,
                            float *running_mean, float *running_var, float momentum, float eps,
                            mm_tensor **out);

/* ---- Dropout --------------------------------------------------------------------
 * x viewed as [rows, cols]. Element (r, j) has the global index
 * g = (row_offset + r) * cols + j and is kept when mm_rng_uniform_at(seed, stream, g)
 * >= p; kept values are scaled by 1 / (1 - p) (inverted dropout; p == 1 drops all).
 * A shard of rows on rank r passes the global index of its first row as row_offset
 * and draws the same mask as those rows in a single-rank run.
 * When p == 0 or !t->training the op is the identity and *out = x (no copy).
 * 0 <= p <= 1. */
mm_status mm_dropout(mm_tape *t, mm_tensor *x, float p, uint64_t seed, uint64_t stream,
                     int64_t row_offset, mm_tensor **out);

/* ---- Multi-table embedding ------------------------------------------------------
 * One table [V, D] holding F categorical vocabularies back to back: feature f owns
 * rows off[f] .. off[f+1] - 1 (off[F] taken as V; off non-decreasing, off[0] >= 0).
 * idx [n, F] row-major. out [n, D]: out[i] = sum over f of table[off[f] + idx[i, f]].
 * Every index is range-checked against its feature's vocabulary; a bad one is
 * MM_ERR_ARG naming the row, the feature and the value. Backward scatter-adds into the
 * table gradient (repeated indices accumulate). */
mm_status mm_embedding_multi(mm_tape *t, mm_tensor *table, const int32_t *idx, int64_t n,
                             int nfeat, const int64_t *off, mm_tensor **out);
/* Same with uint8 indices (the dataset's storage type). */
mm_status mm_embedding_multi_u8(mm_tape *t, mm_tensor *table, const uint8_t *idx, int64_t n,
                                int nfeat, const int64_t *off, mm_tensor **out);
/* off[f] = vocab[0] + ... + vocab[f-1]; *total = sum of all vocab (the table's V). */
mm_status mm_embedding_offsets(const int32_t *vocab, int nfeat, int64_t *off, int64_t *total);

/* ---- 2-D convolution --------------------------------------------------------------
 * x [N, Cin, H, W], w [Cout, Cin, kh, kw], b [Cout] or NULL. Cross-correlation (no
 * kernel flip, as PyTorch), zero padding `padding` on every side, step `stride`:
 *   y[n, o, r, c] = b[o] + sum_{i,p,q} w[o, i, p, q] x[n, i, r*s + p - pad, c*s + q - pad]
 * y [N, Cout, Ho, Wo], Ho = floor((H + 2 pad - kh) / s) + 1 (likewise Wo).
 * Computed as im2col + GEMM over blocks of images, so the scratch buffer (in the
 * tape's arena) is bounded independently of N; backward gives dx by col2im, dW and db. */
mm_status mm_conv2d(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride,
                    int padding, mm_tensor **out);

/* The same convolution with channels last: x [N, H, W, Cin] -> y [N, Ho, Wo, Cout], w and
 * b as above. The image encoder's layout: the GEMM writes y in place, and y viewed as
 * [N*Ho*Wo, Cout] is what BatchNorm over channels (rows = positions) wants. */
mm_status mm_conv2d_nhwc(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride,
                         int padding, mm_tensor **out);

/* ---- 1-D convolution --------------------------------------------------------------
 * x [N, Cin, L], w [Cout, Cin, k], b [Cout] or NULL; zero padding `padding` at both
 * ends, step `stride`: y[n, o, j] = b[o] + sum_{i,q} w[o, i, q] x[n, i, j*s + q - pad],
 * y [N, Cout, Lo], Lo = floor((L + 2 pad - k) / s) + 1. The 2-D convolution over rows of
 * height 1 (no padding in height), so it shares its im2col, blocking and backward. */
mm_status mm_conv1d(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride,
                    int padding, mm_tensor **out);

/* ---- Global average pooling ------------------------------------------------------
 * x [N, C, H, W] (or [N, C, L]) -> [N, C]: mean over the spatial positions. */
mm_status mm_global_avg_pool(mm_tape *t, mm_tensor *x, mm_tensor **out);
/* Channels last: x [N, H, W, C] (or [N, L, C]) -> [N, C]. */
mm_status mm_global_avg_pool_nhwc(mm_tape *t, mm_tensor *x, mm_tensor **out);

#endif
