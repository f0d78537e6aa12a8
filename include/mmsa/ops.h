/* ops.h: basic differentiable ops (dense algebra, elementwise, reductions).
 *
 * Every op follows one contract: inputs are tensors on tape t, the output is a new
 * tensor in t's arena returned through `out`, and when any input carries a gradient
 * the op records its backward on the tape. Shapes are checked and a mismatch is
 * MM_ERR_ARG naming the op and both shapes. "Rows" means the first dimension and
 * "columns" everything after it (a [N, C, H, W] tensor has N rows of C*H*W). */
#ifndef MMSA_OPS_H
#define MMSA_OPS_H

#include "mmsa/tensor.h"

/* out (M x N) = op(a) op(b), with op = transpose when ta / tb. a, b 2-D. */
mm_status mm_matmul(mm_tape *t, mm_tensor *a, bool ta, mm_tensor *b, bool tb, mm_tensor **out);
/* out [n, out] = x [n, in] W^T [in, out] + b [out] (PyTorch Linear; b may be NULL). */
mm_status mm_linear(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, mm_tensor **out);
/* mm_relu(mm_linear(x, w, b)) as one op: the same values and gradients, without the
 * pre-activation tensor and its gradient. Its backward masks out's gradient in place,
 * so out->grad is unspecified once the backward has passed this op. */
mm_status mm_linear_relu(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, mm_tensor **out);
/* out[i, j] = x[i, j] + b[j mod len(b)]... precisely: x is [rows, C, inner...] viewed
 * as [rows, C, S] with S = cols / C; b [C] is added along the second dimension. */
mm_status mm_bias_add(mm_tape *t, mm_tensor *x, mm_tensor *b, mm_tensor **out);

/* Elementwise, same shapes. */
mm_status mm_add(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out);
mm_status mm_sub(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out);
mm_status mm_mul(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out);
/* out = alpha * x + beta */
mm_status mm_affine(mm_tape *t, mm_tensor *x, float alpha, float beta, mm_tensor **out);
/* out[i, :] = x[i, :] * s[i]   (s has one value per row) */
mm_status mm_row_scale(mm_tape *t, mm_tensor *x, mm_tensor *s, mm_tensor **out);

/* Elementwise activations. */
mm_status mm_relu(mm_tape *t, mm_tensor *x, mm_tensor **out);
mm_status mm_gelu(mm_tape *t, mm_tensor *x, mm_tensor **out);      /* exact, erf form */
mm_status mm_tanh(mm_tape *t, mm_tensor *x, mm_tensor **out);
mm_status mm_sigmoid(mm_tape *t, mm_tensor *x, mm_tensor **out);
mm_status mm_softplus(mm_tape *t, mm_tensor *x, mm_tensor **out);  /* ln(1+e^x), x if x > 20 */
mm_status mm_ssp(mm_tape *t, mm_tensor *x, mm_tensor **out);       /* softplus(x) - ln 2 */
mm_status mm_exp(mm_tape *t, mm_tensor *x, mm_tensor **out);
mm_status mm_log(mm_tape *t, mm_tensor *x, mm_tensor **out);       /* x must be > 0 */

/* Reductions over x viewed as [rows, cols]:
 * MM_AXIS_ROWS sums over rows -> [cols]; MM_AXIS_COLS sums each row -> [rows];
 * MM_AXIS_ALL -> [1]. */
typedef enum { MM_AXIS_ALL = -1, MM_AXIS_ROWS = 0, MM_AXIS_COLS = 1 } mm_axis;
mm_status mm_sum(mm_tape *t, mm_tensor *x, mm_axis axis, mm_tensor **out);
mm_status mm_mean(mm_tape *t, mm_tensor *x, mm_axis axis, mm_tensor **out);

/* Row-wise x / max(||x||_2, eps), gradient through the norm. */
mm_status mm_l2_normalize(mm_tape *t, mm_tensor *x, float eps, mm_tensor **out);

/* Same data and gradient, another shape with the same element count (no copy). */
mm_status mm_reshape(mm_tape *t, mm_tensor *x, int ndim, const int64_t *shape, mm_tensor **out);

#endif
