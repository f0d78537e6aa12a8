/* index_ops.h: differentiable index, segment and sparse ops (message passing, pooling,
 * concatenation, the fingerprint's sparse first layer, row-wise softmax).
 *
 * Owns nothing beyond the contract of ops.h: outputs live in the tape's arena, the
 * backward ADDS into input gradients and is recorded only when an input carries one.
 * Index arrays are caller memory; an op that needs them in its backward copies them
 * into the tape's arena (as int64), so the caller may free or reuse them right after
 * the call. Every index is range-checked before anything is written, and a bad one is
 * MM_ERR_ARG naming the op, the array, the position and the valid range.
 *
 * "Rows" is the first dimension and "columns" everything after it, as in ops.h; the
 * row ops (gather, scatter, segment, concat/split of rows) keep the trailing shape,
 * the column ops (concat/split/slice of columns) take 2-D tensors. */
#ifndef MMSA_INDEX_OPS_H
#define MMSA_INDEX_OPS_H

#include <stdint.h>

#include "mmsa/tensor.h"

/* ---- gather / scatter ------------------------------------------------------- */

/* out [n_idx, ...] : out[i, :] = x[idx[i], :], 0 <= idx[i] < rows(x). Repeated indices
 * are allowed; their gradients add up. idx: [n_idx]. */
mm_status mm_gather_rows(mm_tape *t, mm_tensor *x, const int64_t *idx, int64_t n_idx,
                         mm_tensor **out);
mm_status mm_gather_rows_i32(mm_tape *t, mm_tensor *x, const int32_t *idx, int64_t n_idx,
                             mm_tensor **out);

/* out [n_out, ...] zero-initialised, out[idx[i], :] += x[i, :] for i < rows(x).
 * idx: [n_idx] with n_idx == rows(x), 0 <= idx[i] < n_out. Output rows no index
 * points at stay zero. */
mm_status mm_scatter_add_rows(mm_tape *t, mm_tensor *x, const int64_t *idx, int64_t n_idx,
                              int64_t n_out, mm_tensor **out);
mm_status mm_scatter_add_rows_i32(mm_tape *t, mm_tensor *x, const int32_t *idx, int64_t n_idx,
                                  int64_t n_out, mm_tensor **out);

/* ---- segment reductions over CSR offsets ------------------------------------ */

/* x [n, ...], offsets [n_seg + 1] with offsets[0] = 0, non-decreasing,
 * offsets[n_seg] = n. out [n_seg, ...]: out[s] = sum (or mean) of rows
 * offsets[s] .. offsets[s+1]-1. An empty segment gives a zero row (no NaN for the
 * mean) and passes no gradient. */
mm_status mm_segment_sum(mm_tape *t, mm_tensor *x, const int64_t *offsets, int64_t n_seg,
                         mm_tensor **out);
mm_status mm_segment_mean(mm_tape *t, mm_tensor *x, const int64_t *offsets, int64_t n_seg,
                          mm_tensor **out);

/* ---- concatenation, split, slices ------------------------------------------- */

/* Columns: xs[k] are 2-D [rows, c_k] with equal rows; out [rows, sum c_k]. */
mm_status mm_concat_cols(mm_tape *t, int n, mm_tensor *const *xs, mm_tensor **out);
/* Rows: xs[k] [r_k, ...] with equal trailing shapes; out [sum r_k, ...]. */
mm_status mm_concat_rows(mm_tape *t, int n, mm_tensor *const *xs, mm_tensor **out);

/* out [rows, width] = x[:, c0 .. c0+width-1] of a 2-D x (a copy: columns are not
 * contiguous); the backward adds into that column range of x's gradient. */
mm_status mm_slice_cols(mm_tape *t, mm_tensor *x, int64_t c0, int64_t width, mm_tensor **out);
/* out [count, ...] = x[r0 .. r0+count-1, ...]: a view that shares x's data and
 * gradient (rows are contiguous), so it records nothing on the tape. */
mm_status mm_slice_rows(mm_tape *t, mm_tensor *x, int64_t r0, int64_t count, mm_tensor **out);

/* Split a 2-D x into n column blocks of sizes[k] (sum = cols), outs[k] [rows, sizes[k]].
 * Each block is an mm_slice_cols, so each one's backward writes into its own slice. */
mm_status mm_split_cols(mm_tape *t, mm_tensor *x, int n, const int64_t *sizes, mm_tensor **outs);
/* Split x into n row blocks of sizes[k] (sum = rows): views, as mm_slice_rows. */
mm_status mm_split_rows(mm_tape *t, mm_tensor *x, int n, const int64_t *sizes, mm_tensor **outs);

/* ---- sparse (CSR) x dense --------------------------------------------------- */

/* A sparse matrix S [n_rows, n_cols] in CSR form; caller memory, treated as data (no
 * gradient). row_ptr [n_rows + 1] (row_ptr[0] = 0, non-decreasing), col_idx [nnz]
 * with nnz = row_ptr[n_rows], values [nnz] or NULL for all ones (a set of bits). */
typedef struct mm_csr {
    int64_t n_rows, n_cols;
    const int64_t *row_ptr;
    const int64_t *col_idx;
    const float *values;
} mm_csr;

/* out [n_rows, d] = S D with D [n_cols, d]. Gradient to D only: dD += S^T dY. A row
 * of S with no nonzeros gives a zero output row. */
mm_status mm_csr_matmul(mm_tape *t, const mm_csr *s, mm_tensor *d, mm_tensor **out);

/* ---- row-wise softmax ------------------------------------------------------- */

/* x viewed as [rows, cols]; out has x's shape. Stable: the row maximum is subtracted
 * before exponentiating, so logits of any magnitude give finite results. Entries of
 * -inf (masked choices, e.g. a missing modality in the gate) get probability 0, as long
 * as each row has one finite entry. */
mm_status mm_softmax(mm_tape *t, mm_tensor *x, mm_tensor **out);
mm_status mm_log_softmax(mm_tape *t, mm_tensor *x, mm_tensor **out);

#endif
