/* cfconv.h: SchNet's continuous-filter convolution as one fused, differentiable op.
 *
 * For atom features x [A, F], unordered atom pairs k = {p_k, q_k} with radial basis
 * values rbf_k [R] and cutoff weights fcut_k (functions of the distance, so the same in
 * both directions), and the filter network's parameters W0 [F, R], b0 [F], W2 [F, F],
 * b2 [F] (PyTorch Linear layout: [out, in]):
 *
 *   Wf_k       = (ssp(rbf_k W0^T + b0) W2^T + b2) * fcut_k          (ssp = softplus - ln 2)
 *   out[p_k]  += x[q_k] * Wf_k   and   out[q_k] += x[p_k] * Wf_k       (out [A, F], from 0)
 *
 * which is the composition linear, ssp, linear, row_scale, gather_rows, mul,
 * scatter_add_rows of ops.h / index_ops.h over the ORDERED pairs (p, q) and (q, p), with
 * the same result up to float rounding (with the pairs sorted by p then q, the sums of
 * out and of x's gradient even come in the same order). Each filter is computed once
 * for both directions, and the op never holds a [pairs, F] tensor: it walks the pairs
 * in blocks of `block`, computes a block's filters with two small GEMMs and uses them at
 * once; the backward recomputes them and adds the weight gradients block by block as
 * GEMMs. Its memory is O(block * F), not O(pairs * F). With `keep`, the forward instead
 * keeps each block's pre-activation and filters (two [pairs, F] arrays on the tape, when
 * a gradient is wanted) and the backward reads them back: 3 GEMMs per block instead of 5,
 * for 2 * pairs * F floats, the same values either way. On x86 both passes run with
 * subnormal floats flushed to zero (every RBF row of a real conformer holds a few, from
 * centres far from the distance, and each subnormal operand costs a microcode assist; cfconv.c),
 * restoring the caller's MXCSR: values under 1.2e-38 become 0, nothing else changes.
 * Its GEMMs are the filter network's Linear layers and go through mm_gemm (blas.h) as
 * Linear's do, so train.precision applies to them alike.
 *
 * Contract as ops.h: out lives in the tape's arena, the backward ADDS into the gradients
 * of x, W0, b0, W2, b2 (whichever carry one); rbf, fcut and the indices are data (no
 * gradient). Unlike index_ops.h, the pair arrays are NOT copied: they are read again by
 * the backward, so they must stay valid until the tape is reset (the batch arrays of
 * mm_batch_build live in the tape's arena, which is). Checked before anything is
 * written, each a clear MM_ERR_ARG: every p_k, q_k in [0, A) with p_k != q_k, and the
 * shapes. */
#ifndef MMSA_CFCONV_H
#define MMSA_CFCONV_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/tensor.h"

/* Pairs per block when mm_cfconv_pairs.block is 0: the block's five [block, F] float
 * buffers stay in L2 at F = 128. */
#define MM_CFCONV_BLOCK 128

typedef struct mm_cfconv_pairs {
    int64_t n_pairs;
    int64_t n_rbf;            /* R */
    const int64_t *p, *q;     /* [n_pairs] the two atoms of each pair (p != q) */
    const float *rbf;         /* [n_pairs, n_rbf] */
    const float *fcut;        /* [n_pairs] */
    int64_t block;            /* pairs per block, 0 = MM_CFCONV_BLOCK */
    bool keep;                /* keep the filters for the backward instead of recomputing */
} mm_cfconv_pairs;

mm_status mm_cfconv(mm_tape *t, mm_tensor *x, const mm_cfconv_pairs *pairs, mm_tensor *w0, mm_tensor *b0,
                    mm_tensor *w2, mm_tensor *b2, mm_tensor **out);

/* The elementwise math of the op, exposed for its tests: softplus(x) - ln 2 and
 * sigmoid(x) (ssp's derivative) of n values, in plain C the compiler vectorises (no libm
 * call), within a few float ulps of log1pf(expf(x)) - ln 2 and 1 / (1 + expf(-x)).
 * sig may be NULL. */
void mm_cfconv_ssp(const float *x, int64_t n, float *ssp, float *sig);

#endif
