/* index_ops.c: gather/scatter, segment reductions, concat/split, CSR products and
 * row-wise softmax (index_ops.h). */
#include "mmsa/index_ops.h"

#include <math.h>
#include <string.h>

/* Values per row: the product of the dimensions after the first (1 for a 1-D tensor).
 * Unlike mm_cols this stays correct for a tensor with zero rows. */
static int64_t row_len(const mm_tensor *x)
{
    int64_t c = 1;
    for (int i = 1; i < x->ndim; i++) c *= x->shape[i];
    return c;
}

/* Copy of an index array in the arena, as int64, every entry checked against [0, hi). */
static mm_status copy_indices(mm_tape *t, const char *op, const char *name, const int64_t *i64,
                              const int32_t *i32, int64_t n, int64_t hi, int64_t **out)
{
    if (n < 0) return MM_ERR(MM_ERR_ARG, "%s: negative index count %lld", op, (long long)n);
    if (n > 0 && !i64 && !i32) return MM_ERR(MM_ERR_ARG, "%s: %s is NULL", op, name);
    int64_t *c;
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(int64_t), (void **)&c));
    for (int64_t i = 0; i < n; i++) {
        int64_t v = i64 ? i64[i] : (int64_t)i32[i];
        if (v < 0 || v >= hi)
            return MM_ERR(MM_ERR_ARG, "%s: %s[%lld] = %lld outside [0, %lld)", op, name,
                          (long long)i, (long long)v, (long long)hi);
        c[i] = v;
    }
    *out = c;
    return MM_OK;
}

/* ---- gather rows -------------------------------------------------------------- */

typedef struct { int64_t *idx; int64_t n; } index_ctx; /* idx: [n] */

static mm_status gather_backward(mm_node *nd)
{
    index_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t cols = row_len(x);
    for (int64_t i = 0; i < c->n; i++) {
        const float *g = y->grad + i * cols;
        float *gx = x->grad + c->idx[i] * cols;
        for (int64_t j = 0; j < cols; j++) gx[j] += g[j];
    }
    return MM_OK;
}

static mm_status gather(mm_tape *t, mm_tensor *x, const int64_t *i64, const int32_t *i32,
                        int64_t n_idx, mm_tensor **out)
{
    int64_t *idx;
    MM_CALL(copy_indices(t, "gather_rows", "idx", i64, i32, n_idx, x->shape[0], &idx));
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = n_idx;
    int64_t cols = row_len(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, shape, mm_tape_wants_grad(t, 1, &x), &y));
    for (int64_t i = 0; i < n_idx; i++)
        memcpy(y->data + i * cols, x->data + idx[i] * cols, (size_t)cols * sizeof(float));
    if (y->grad) {
        index_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->idx = idx;
        c->n = n_idx;
        MM_CALL(mm_tape_record(t, "gather_rows", gather_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_gather_rows(mm_tape *t, mm_tensor *x, const int64_t *idx, int64_t n_idx,
                         mm_tensor **out)
{
    MM_CALL(gather(t, x, idx, NULL, n_idx, out));
    return MM_OK;
}

mm_status mm_gather_rows_i32(mm_tape *t, mm_tensor *x, const int32_t *idx, int64_t n_idx,
                             mm_tensor **out)
{
    MM_CALL(gather(t, x, NULL, idx, n_idx, out));
    return MM_OK;
}

/* ---- scatter-add rows ------------------------------------------------------------ */

static mm_status scatter_backward(mm_node *nd)
{
    index_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t cols = row_len(x);
    for (int64_t i = 0; i < c->n; i++) {
        const float *g = y->grad + c->idx[i] * cols;
        float *gx = x->grad + i * cols;
        for (int64_t j = 0; j < cols; j++) gx[j] += g[j];
    }
    return MM_OK;
}

static mm_status scatter(mm_tape *t, mm_tensor *x, const int64_t *i64, const int32_t *i32,
                         int64_t n_idx, int64_t n_out, mm_tensor **out)
{
    if (n_idx != x->shape[0])
        return MM_ERR(MM_ERR_ARG, "scatter_add_rows: %lld indices for %lld rows of x",
                      (long long)n_idx, (long long)x->shape[0]);
    if (n_out < 0) return MM_ERR(MM_ERR_ARG, "scatter_add_rows: n_out = %lld", (long long)n_out);
    int64_t *idx;
    MM_CALL(copy_indices(t, "scatter_add_rows", "idx", i64, i32, n_idx, n_out, &idx));
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = n_out;
    int64_t cols = row_len(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, x->ndim, shape, mm_tape_wants_grad(t, 1, &x), &y));
    for (int64_t i = 0; i < n_idx; i++) {
        const float *xs = x->data + i * cols;
        float *ys = y->data + idx[i] * cols;
        for (int64_t j = 0; j < cols; j++) ys[j] += xs[j];
    }
    if (y->grad) {
        index_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->idx = idx;
        c->n = n_idx;
        MM_CALL(mm_tape_record(t, "scatter_add_rows", scatter_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_scatter_add_rows(mm_tape *t, mm_tensor *x, const int64_t *idx, int64_t n_idx,
                              int64_t n_out, mm_tensor **out)
{
    MM_CALL(scatter(t, x, idx, NULL, n_idx, n_out, out));
    return MM_OK;
}

mm_status mm_scatter_add_rows_i32(mm_tape *t, mm_tensor *x, const int32_t *idx, int64_t n_idx,
                                  int64_t n_out, mm_tensor **out)
{
    MM_CALL(scatter(t, x, NULL, idx, n_idx, n_out, out));
    return MM_OK;
}

/* ---- segment sum / mean ------------------------------------------------------------ */

typedef struct { int64_t *off; int64_t n_seg; bool mean; } segment_ctx; /* off: [n_seg+1] */

static mm_status segment_backward(mm_node *nd)
{
    segment_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t cols = row_len(x);
    for (int64_t s = 0; s < c->n_seg; s++) {
        int64_t lo = c->off[s], hi = c->off[s + 1];
        if (hi == lo) continue;
        float scale = c->mean ? 1.0f / (float)(hi - lo) : 1.0f;
        const float *g = y->grad + s * cols;
        for (int64_t r = lo; r < hi; r++) {
            float *gx = x->grad + r * cols;
            for (int64_t j = 0; j < cols; j++) gx[j] += scale * g[j];
        }
    }
    return MM_OK;
}

static mm_status segment(mm_tape *t, const char *op, mm_tensor *x, const int64_t *offsets,
                         int64_t n_seg, bool mean, mm_tensor **out)
{
    int64_t n = x->shape[0];
    if (n_seg < 0) return MM_ERR(MM_ERR_ARG, "%s: n_seg = %lld", op, (long long)n_seg);
    if (!offsets) return MM_ERR(MM_ERR_ARG, "%s: offsets is NULL", op);
    if (offsets[0] != 0)
        return MM_ERR(MM_ERR_ARG, "%s: offsets[0] = %lld, must be 0", op, (long long)offsets[0]);
    for (int64_t s = 0; s < n_seg; s++)
        if (offsets[s + 1] < offsets[s])
            return MM_ERR(MM_ERR_ARG, "%s: offsets[%lld] = %lld < offsets[%lld] = %lld (must not decrease)",
                          op, (long long)(s + 1), (long long)offsets[s + 1], (long long)s,
                          (long long)offsets[s]);
    if (offsets[n_seg] != n)
        return MM_ERR(MM_ERR_ARG, "%s: offsets[%lld] = %lld, must equal the %lld rows of x", op,
                      (long long)n_seg, (long long)offsets[n_seg], (long long)n);
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = n_seg;
    int64_t cols = row_len(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, x->ndim, shape, mm_tape_wants_grad(t, 1, &x), &y));
    /* Accumulate in double: a large molecule's atom sum loses digits in float. */
    double *acc;
    MM_CALL(mm_tape_alloc(t, (size_t)cols * sizeof(double), (void **)&acc));
    for (int64_t s = 0; s < n_seg; s++) {
        int64_t lo = offsets[s], hi = offsets[s + 1];
        if (hi == lo) continue; /* empty segment: the zero row stays */
        for (int64_t j = 0; j < cols; j++) acc[j] = 0.0;
        for (int64_t r = lo; r < hi; r++) {
            const float *xs = x->data + r * cols;
            for (int64_t j = 0; j < cols; j++) acc[j] += xs[j];
        }
        double scale = mean ? 1.0 / (double)(hi - lo) : 1.0;
        for (int64_t j = 0; j < cols; j++) y->data[s * cols + j] = (float)(acc[j] * scale);
    }
    if (y->grad) {
        segment_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        MM_CALL(mm_tape_alloc(t, (size_t)(n_seg + 1) * sizeof(int64_t), (void **)&c->off));
        memcpy(c->off, offsets, (size_t)(n_seg + 1) * sizeof(int64_t));
        c->n_seg = n_seg;
        c->mean = mean;
        MM_CALL(mm_tape_record(t, op, segment_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_segment_sum(mm_tape *t, mm_tensor *x, const int64_t *offsets, int64_t n_seg,
                         mm_tensor **out)
{
    MM_CALL(segment(t, "segment_sum", x, offsets, n_seg, false, out));
    return MM_OK;
}

mm_status mm_segment_mean(mm_tape *t, mm_tensor *x, const int64_t *offsets, int64_t n_seg,
                          mm_tensor **out)
{
    MM_CALL(segment(t, "segment_mean", x, offsets, n_seg, true, out));
    return MM_OK;
}

/* ---- concatenation ------------------------------------------------------------------ */

/* The inputs may outnumber MM_NODE_MAX_IN, so the node keeps them here, not in nd->in.
 * xs: [n]; off: [n + 1], the column (or row) where input k starts in the output. */
typedef struct { mm_tensor **xs; int64_t *off; int n; } concat_ctx;

static mm_status concat_cols_backward(mm_node *nd)
{
    concat_ctx *c = nd->ctx;
    mm_tensor *y = nd->out;
    int64_t rows = y->shape[0], ycols = y->shape[1];
    for (int k = 0; k < c->n; k++) {
        mm_tensor *x = c->xs[k];
        if (!x->grad) continue;
        int64_t w = c->off[k + 1] - c->off[k];
        for (int64_t r = 0; r < rows; r++) {
            const float *g = y->grad + r * ycols + c->off[k];
            float *gx = x->grad + r * w;
            for (int64_t j = 0; j < w; j++) gx[j] += g[j];
        }
    }
    return MM_OK;
}

static mm_status concat_rows_backward(mm_node *nd)
{
    concat_ctx *c = nd->ctx;
    mm_tensor *y = nd->out;
    int64_t cols = row_len(y);
    for (int k = 0; k < c->n; k++) {
        mm_tensor *x = c->xs[k];
        if (!x->grad) continue;
        const float *g = y->grad + c->off[k] * cols;
        int64_t m = (c->off[k + 1] - c->off[k]) * cols;
        for (int64_t j = 0; j < m; j++) x->grad[j] += g[j];
    }
    return MM_OK;
}

static mm_status concat_ctx_new(mm_tape *t, int n, mm_tensor *const *xs, concat_ctx **out)
{
    concat_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(mm_tensor *), (void **)&c->xs));
    MM_CALL(mm_tape_alloc(t, (size_t)(n + 1) * sizeof(int64_t), (void **)&c->off));
    memcpy(c->xs, xs, (size_t)n * sizeof(mm_tensor *));
    c->n = n;
    *out = c;
    return MM_OK;
}

mm_status mm_concat_cols(mm_tape *t, int n, mm_tensor *const *xs, mm_tensor **out)
{
    if (n < 1 || !xs) return MM_ERR(MM_ERR_ARG, "concat_cols: %d inputs", n);
    for (int k = 0; k < n; k++) {
        char sa[64], sb[64];
        if (xs[k]->ndim != 2 || xs[k]->shape[0] != xs[0]->shape[0])
            return MM_ERR(MM_ERR_ARG, "concat_cols: input %d has shape %s, input 0 %s (need 2-D, equal rows)",
                          k, mm_shape_str(xs[k], sa, sizeof sa), mm_shape_str(xs[0], sb, sizeof sb));
    }
    concat_ctx *c;
    MM_CALL(concat_ctx_new(t, n, xs, &c));
    c->off[0] = 0;
    for (int k = 0; k < n; k++) c->off[k + 1] = c->off[k] + xs[k]->shape[1];
    int64_t rows = xs[0]->shape[0], ycols = c->off[n];
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, rows, ycols, mm_tape_wants_grad(t, n, xs), &y));
    for (int k = 0; k < n; k++) {
        int64_t w = xs[k]->shape[1];
        for (int64_t r = 0; r < rows; r++)
            memcpy(y->data + r * ycols + c->off[k], xs[k]->data + r * w, (size_t)w * sizeof(float));
    }
    MM_CALL(mm_tape_record(t, "concat_cols", concat_cols_backward, y, 0, NULL, c));
    *out = y;
    return MM_OK;
}

mm_status mm_concat_rows(mm_tape *t, int n, mm_tensor *const *xs, mm_tensor **out)
{
    if (n < 1 || !xs) return MM_ERR(MM_ERR_ARG, "concat_rows: %d inputs", n);
    for (int k = 0; k < n; k++) {
        bool ok = xs[k]->ndim == xs[0]->ndim;
        for (int d = 1; ok && d < xs[0]->ndim; d++) ok = xs[k]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char sa[64], sb[64];
            return MM_ERR(MM_ERR_ARG, "concat_rows: input %d has shape %s, input 0 %s (need equal trailing shapes)",
                          k, mm_shape_str(xs[k], sa, sizeof sa), mm_shape_str(xs[0], sb, sizeof sb));
        }
    }
    concat_ctx *c;
    MM_CALL(concat_ctx_new(t, n, xs, &c));
    c->off[0] = 0;
    for (int k = 0; k < n; k++) c->off[k + 1] = c->off[k] + xs[k]->shape[0];
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[0] = c->off[n];
    int64_t cols = row_len(xs[0]);
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, xs[0]->ndim, shape, mm_tape_wants_grad(t, n, xs), &y));
    for (int k = 0; k < n; k++)
        memcpy(y->data + c->off[k] * cols, xs[k]->data, (size_t)(xs[k]->shape[0] * cols) * sizeof(float));
    MM_CALL(mm_tape_record(t, "concat_rows", concat_rows_backward, y, 0, NULL, c));
    *out = y;
    return MM_OK;
}

/* ---- slices and splits --------------------------------------------------------------- */

typedef struct { int64_t c0; } slice_ctx;

static mm_status slice_cols_backward(mm_node *nd)
{
    int64_t c0 = ((slice_ctx *)nd->ctx)->c0;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t rows = y->shape[0], w = y->shape[1], xcols = x->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *g = y->grad + r * w;
        float *gx = x->grad + r * xcols + c0;
        for (int64_t j = 0; j < w; j++) gx[j] += g[j];
    }
    return MM_OK;
}

mm_status mm_slice_cols(mm_tape *t, mm_tensor *x, int64_t c0, int64_t width, mm_tensor **out)
{
    char sa[64];
    if (x->ndim != 2)
        return MM_ERR(MM_ERR_ARG, "slice_cols: needs a 2-D tensor, got %s", mm_shape_str(x, sa, sizeof sa));
    if (c0 < 0 || width < 0 || c0 + width > x->shape[1])
        return MM_ERR(MM_ERR_ARG, "slice_cols: columns [%lld, %lld) outside the %lld columns of %s",
                      (long long)c0, (long long)(c0 + width), (long long)x->shape[1],
                      mm_shape_str(x, sa, sizeof sa));
    int64_t rows = x->shape[0], xcols = x->shape[1];
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, rows, width, mm_tape_wants_grad(t, 1, &x), &y));
    for (int64_t r = 0; r < rows; r++)
        memcpy(y->data + r * width, x->data + r * xcols + c0, (size_t)width * sizeof(float));
    if (y->grad) {
        slice_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->c0 = c0;
        MM_CALL(mm_tape_record(t, "slice_cols", slice_cols_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_slice_rows(mm_tape *t, mm_tensor *x, int64_t r0, int64_t count, mm_tensor **out)
{
    if (r0 < 0 || count < 0 || r0 + count > x->shape[0]) {
        char sa[64];
        return MM_ERR(MM_ERR_ARG, "slice_rows: rows [%lld, %lld) outside the %lld rows of %s",
                      (long long)r0, (long long)(r0 + count), (long long)x->shape[0],
                      mm_shape_str(x, sa, sizeof sa));
    }
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = count;
    int64_t off = r0 * row_len(x);
    MM_CALL(mm_tensor_wrap(t, x->data + off, x->grad ? x->grad + off : NULL, x->ndim, shape, out));
    return MM_OK;
}

static mm_status check_sizes(const char *op, int n, const int64_t *sizes, int64_t total)
{
    if (n < 1 || !sizes) return MM_ERR(MM_ERR_ARG, "%s: %d blocks", op, n);
    int64_t sum = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] < 0)
            return MM_ERR(MM_ERR_ARG, "%s: sizes[%d] = %lld is negative", op, k, (long long)sizes[k]);
        sum += sizes[k];
    }
    if (sum != total)
        return MM_ERR(MM_ERR_ARG, "%s: sizes add up to %lld, the tensor has %lld", op,
                      (long long)sum, (long long)total);
    return MM_OK;
}

mm_status mm_split_cols(mm_tape *t, mm_tensor *x, int n, const int64_t *sizes, mm_tensor **outs)
{
    if (x->ndim != 2) {
        char sa[64];
        return MM_ERR(MM_ERR_ARG, "split_cols: needs a 2-D tensor, got %s", mm_shape_str(x, sa, sizeof sa));
    }
    MM_CALL(check_sizes("split_cols", n, sizes, x->shape[1]));
    int64_t c0 = 0;
    for (int k = 0; k < n; k++) {
        MM_CALL(mm_slice_cols(t, x, c0, sizes[k], &outs[k]));
        c0 += sizes[k];
    }
    return MM_OK;
}

mm_status mm_split_rows(mm_tape *t, mm_tensor *x, int n, const int64_t *sizes, mm_tensor **outs)
{
    MM_CALL(check_sizes("split_rows", n, sizes, x->shape[0]));
    int64_t r0 = 0;
    for (int k = 0; k < n; k++) {
        MM_CALL(mm_slice_rows(t, x, r0, sizes[k], &outs[k]));
        r0 += sizes[k];
    }
    return MM_OK;
}

/* ---- CSR x dense ------------------------------------------------------------------------ */

/* Arena copies of the sparse matrix. row_ptr [n_rows+1], col_idx [nnz], values [nnz] or NULL. */
typedef struct { int64_t n_rows; int64_t *row_ptr; int64_t *col_idx; float *values; } csr_ctx;

static mm_status csr_backward(mm_node *nd)
{
    csr_ctx *c = nd->ctx;
    mm_tensor *d = nd->in[0], *y = nd->out;
    int64_t w = d->shape[1];
    /* dD[col, :] += v * dY[row, :] for every nonzero (row, col, v): dD = S^T dY */
    for (int64_t i = 0; i < c->n_rows; i++) {
        const float *g = y->grad + i * w;
        for (int64_t p = c->row_ptr[i]; p < c->row_ptr[i + 1]; p++) {
            float v = c->values ? c->values[p] : 1.0f;
            float *gd = d->grad + c->col_idx[p] * w;
            for (int64_t j = 0; j < w; j++) gd[j] += v * g[j];
        }
    }
    return MM_OK;
}

mm_status mm_csr_matmul(mm_tape *t, const mm_csr *s, mm_tensor *d, mm_tensor **out)
{
    char sa[64];
    if (!s || !s->row_ptr || s->n_rows < 0 || s->n_cols < 0)
        return MM_ERR(MM_ERR_ARG, "csr_matmul: missing or negative-sized sparse matrix");
    if (d->ndim != 2 || d->shape[0] != s->n_cols)
        return MM_ERR(MM_ERR_ARG, "csr_matmul: sparse [%lld, %lld] times dense %s", (long long)s->n_rows,
                      (long long)s->n_cols, mm_shape_str(d, sa, sizeof sa));
    if (s->row_ptr[0] != 0)
        return MM_ERR(MM_ERR_ARG, "csr_matmul: row_ptr[0] = %lld, must be 0", (long long)s->row_ptr[0]);
    for (int64_t i = 0; i < s->n_rows; i++)
        if (s->row_ptr[i + 1] < s->row_ptr[i])
            return MM_ERR(MM_ERR_ARG, "csr_matmul: row_ptr[%lld] = %lld < row_ptr[%lld] = %lld (must not decrease)",
                          (long long)(i + 1), (long long)s->row_ptr[i + 1], (long long)i,
                          (long long)s->row_ptr[i]);
    int64_t nnz = s->row_ptr[s->n_rows];
    if (nnz > 0 && !s->col_idx) return MM_ERR(MM_ERR_ARG, "csr_matmul: col_idx is NULL");
    for (int64_t p = 0; p < nnz; p++)
        if (s->col_idx[p] < 0 || s->col_idx[p] >= s->n_cols)
            return MM_ERR(MM_ERR_ARG, "csr_matmul: col_idx[%lld] = %lld outside [0, %lld)", (long long)p,
                          (long long)s->col_idx[p], (long long)s->n_cols);
    int64_t w = d->shape[1];
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, 2, (int64_t[]){s->n_rows, w}, mm_tape_wants_grad(t, 1, &d), &y));
    for (int64_t i = 0; i < s->n_rows; i++) {
        float *ys = y->data + i * w;
        for (int64_t p = s->row_ptr[i]; p < s->row_ptr[i + 1]; p++) {
            float v = s->values ? s->values[p] : 1.0f;
            const float *ds = d->data + s->col_idx[p] * w;
            for (int64_t j = 0; j < w; j++) ys[j] += v * ds[j];
        }
    }
    if (y->grad) {
        csr_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->n_rows = s->n_rows;
        MM_CALL(mm_tape_alloc(t, (size_t)(s->n_rows + 1) * sizeof(int64_t), (void **)&c->row_ptr));
        memcpy(c->row_ptr, s->row_ptr, (size_t)(s->n_rows + 1) * sizeof(int64_t));
        MM_CALL(mm_tape_alloc(t, (size_t)nnz * sizeof(int64_t), (void **)&c->col_idx));
        if (nnz) memcpy(c->col_idx, s->col_idx, (size_t)nnz * sizeof(int64_t));
        c->values = NULL;
        if (s->values) {
            MM_CALL(mm_tape_alloc(t, (size_t)nnz * sizeof(float), (void **)&c->values));
            if (nnz) memcpy(c->values, s->values, (size_t)nnz * sizeof(float));
        }
        MM_CALL(mm_tape_record(t, "csr_matmul", csr_backward, y, 1, &d, c));
    }
    *out = y;
    return MM_OK;
}

/* ---- row-wise softmax / log-softmax ------------------------------------------------------- */

/* y [rows, cols] = softmax or log-softmax of x [rows, cols], row by row. The sum of
 * exponentials is taken in double so a long row of small terms keeps its digits. */
static void softmax_rows(const float *x, int64_t rows, int64_t cols, bool logp, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xs = x + r * cols;
        float *ys = y + r * cols;
        float mx = -INFINITY;
        for (int64_t j = 0; j < cols; j++) mx = xs[j] > mx ? xs[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < cols; j++) sum += exp((double)xs[j] - mx);
        if (logp) {
            double lse = mx + log(sum);
            for (int64_t j = 0; j < cols; j++) ys[j] = (float)((double)xs[j] - lse);
        } else {
            for (int64_t j = 0; j < cols; j++) ys[j] = (float)(exp((double)xs[j] - mx) / sum);
        }
    }
}

static mm_status softmax_backward(mm_node *nd)
{
    bool logp = (bool)(intptr_t)nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t rows = x->shape[0], cols = row_len(x);
    for (int64_t r = 0; r < rows; r++) {
        const float *g = y->grad + r * cols, *ys = y->data + r * cols;
        float *gx = x->grad + r * cols;
        double s = 0.0;
        if (logp) {
            /* y = x - lse(x): dx = g - softmax(x) * sum(g) */
            for (int64_t j = 0; j < cols; j++) s += g[j];
            for (int64_t j = 0; j < cols; j++) gx[j] += g[j] - (float)(exp((double)ys[j]) * s);
        } else {
            /* dx = y * (g - y . g) */
            for (int64_t j = 0; j < cols; j++) s += (double)g[j] * ys[j];
            for (int64_t j = 0; j < cols; j++) gx[j] += ys[j] * (g[j] - (float)s);
        }
    }
    return MM_OK;
}

static mm_status softmax_op(mm_tape *t, const char *op, mm_tensor *x, bool logp, mm_tensor **out)
{
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    softmax_rows(x->data, x->shape[0], row_len(x), logp, y->data);
    MM_CALL(mm_tape_record(t, op, softmax_backward, y, 1, &x, (void *)(intptr_t)logp));
    *out = y;
    return MM_OK;
}

mm_status mm_softmax(mm_tape *t, mm_tensor *x, mm_tensor **out)
{
    MM_CALL(softmax_op(t, "softmax", x, false, out));
    return MM_OK;
}

mm_status mm_log_softmax(mm_tape *t, mm_tensor *x, mm_tensor **out)
{
    MM_CALL(softmax_op(t, "log_softmax", x, true, out));
    return MM_OK;
}
