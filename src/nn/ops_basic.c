/* ops_basic.c: dense algebra, elementwise ops and reductions (ops.h). */
#include "mmsa/ops.h"

#include <math.h>
#include <string.h>

#include "mmsa/blas.h"

#define SHAPE_ERR(op, a, b)                                                                     \
    do {                                                                                        \
        char sa_[64], sb_[64];                                                                  \
        return MM_ERR(MM_ERR_ARG, "%s: incompatible shapes %s and %s", op,                      \
                      mm_shape_str(a, sa_, sizeof sa_), mm_shape_str(b, sb_, sizeof sb_));      \
    } while (0)

/* ---- matmul ---------------------------------------------------------------- */

typedef struct { bool ta, tb; } matmul_ctx;

static mm_status matmul_backward(mm_node *nd)
{
    matmul_ctx *c = nd->ctx;
    mm_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    int64_t m = y->shape[0], n = y->shape[1];
    int64_t k = c->ta ? a->shape[0] : a->shape[1];
    if (a->grad) {
        /* dA = dY op(B)^T (or its transpose when A was transposed) */
        if (!c->ta)
            mm_sgemm(false, !c->tb, m, k, n, 1.0f, y->grad, n, b->data, b->shape[1], 1.0f, a->grad, k);
        else
            mm_sgemm(c->tb, true, k, m, n, 1.0f, b->data, b->shape[1], y->grad, n, 1.0f, a->grad, m);
    }
    if (b->grad) {
        /* dB = op(A)^T dY (or its transpose) */
        if (!c->tb)
            mm_sgemm(!c->ta, false, k, n, m, 1.0f, a->data, a->shape[1], y->grad, n, 1.0f, b->grad, n);
        else
            mm_sgemm(true, c->ta, n, k, m, 1.0f, y->grad, n, a->data, a->shape[1], 1.0f, b->grad, k);
    }
    return MM_OK;
}

mm_status mm_matmul(mm_tape *t, mm_tensor *a, bool ta, mm_tensor *b, bool tb, mm_tensor **out)
{
    if (a->ndim != 2 || b->ndim != 2) SHAPE_ERR("matmul (needs 2-D)", a, b);
    int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
    int64_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
    if (k != kb) SHAPE_ERR("matmul", a, b);
    mm_tensor *in[2] = {a, b};
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, m, n, mm_tape_wants_grad(t, 2, in), &y));
    mm_sgemm(ta, tb, m, n, k, 1.0f, a->data, a->shape[1], b->data, b->shape[1], 0.0f, y->data, n);
    if (y->grad) {
        matmul_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->ta = ta;
        c->tb = tb;
        MM_CALL(mm_tape_record(t, "matmul", matmul_backward, y, 2, in, c));
    }
    *out = y;
    return MM_OK;
}

/* ---- linear: y = x W^T + b --------------------------------------------------- */

static mm_status linear_backward(mm_node *nd)
{
    mm_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    int64_t n = x->shape[0], in = w->shape[1], o = w->shape[0];
    if (x->grad) mm_gemm(false, false, n, in, o, 1.0f, y->grad, o, w->data, in, 1.0f, x->grad, in);
    if (w->grad) mm_gemm(true, false, o, in, n, 1.0f, y->grad, o, x->data, in, 1.0f, w->grad, in);
    if (b && b->grad) {
        float *restrict gb = b->grad; /* a local pointer: the loop vectorises (same sums, rows in order) */
        for (int64_t i = 0; i < n; i++) {
            const float *restrict g = y->grad + i * o;
            for (int64_t j = 0; j < o; j++) gb[j] += g[j];
        }
    }
    return MM_OK;
}

/* g[i] = 0 where y[i] is not positive; local pointers, so the loop vectorises. */
static void relu_mask(float *restrict g, const float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

static void relu_inplace(float *restrict y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* dy of the pre-activation: kept where the output is positive (relu(z) > 0 iff z > 0).
 * Every consumer of y has added into y->grad before this runs, so it is masked in place. */
static mm_status linear_relu_backward(mm_node *nd)
{
    mm_tensor *y = nd->out;
    relu_mask(y->grad, y->data, y->n);
    return linear_backward(nd);
}

static mm_status linear(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, bool relu, mm_tensor **out)
{
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) SHAPE_ERR("linear (x, W)", x, w);
    if (b && (b->n != w->shape[0])) SHAPE_ERR("linear (W, bias)", w, b);
    int64_t n = x->shape[0], in = w->shape[1], o = w->shape[0];
    mm_tensor *ins[3] = {x, w, b};
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, n, o, mm_tape_wants_grad(t, 3, ins), &y));
    if (b) {
        for (int64_t i = 0; i < n; i++) memcpy(y->data + i * o, b->data, (size_t)o * sizeof(float));
    }
    mm_gemm(false, true, n, o, in, 1.0f, x->data, in, w->data, in, b ? 1.0f : 0.0f, y->data, o);
    if (relu) relu_inplace(y->data, y->n);
    MM_CALL(mm_tape_record(t, relu ? "linear_relu" : "linear", relu ? linear_relu_backward : linear_backward, y, 3,
                           ins, NULL));
    *out = y;
    return MM_OK;
}

mm_status mm_linear(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, mm_tensor **out)
{
    return linear(t, x, w, b, false, out);
}

mm_status mm_linear_relu(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, mm_tensor **out)
{
    return linear(t, x, w, b, true, out);
}

/* ---- bias add along dimension 1 ------------------------------------------- */

static mm_status bias_backward(mm_node *nd)
{
    mm_tensor *x = nd->in[0], *b = nd->in[1], *y = nd->out;
    int64_t rows = y->shape[0], C = b->n, S = mm_cols(y) / (C ? C : 1);
    if (x->grad)
        for (int64_t i = 0; i < y->n; i++) x->grad[i] += y->grad[i];
    if (b->grad)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < C; c++) {
                const float *g = y->grad + (r * C + c) * S;
                double s = 0;
                for (int64_t k = 0; k < S; k++) s += g[k];
                b->grad[c] += (float)s;
            }
    return MM_OK;
}

mm_status mm_bias_add(mm_tape *t, mm_tensor *x, mm_tensor *b, mm_tensor **out)
{
    if (x->ndim < 2 || x->shape[1] != b->n) SHAPE_ERR("bias_add", x, b);
    int64_t rows = x->shape[0], C = b->n, S = mm_cols(x) / (C ? C : 1);
    mm_tensor *in[2] = {x, b};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 2, in), &y));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) {
            const float *xs = x->data + (r * C + c) * S;
            float *ys = y->data + (r * C + c) * S;
            for (int64_t k = 0; k < S; k++) ys[k] = xs[k] + b->data[c];
        }
    MM_CALL(mm_tape_record(t, "bias_add", bias_backward, y, 2, in, NULL));
    *out = y;
    return MM_OK;
}

/* ---- elementwise binary ----------------------------------------------------- */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL } bin_kind;

static mm_status binary_backward(mm_node *nd)
{
    bin_kind k = (bin_kind)(intptr_t)nd->ctx;
    mm_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    for (int64_t i = 0; i < y->n; i++) {
        float g = y->grad[i];
        switch (k) {
        case BIN_ADD:
            if (a->grad) a->grad[i] += g;
            if (b->grad) b->grad[i] += g;
            break;
        case BIN_SUB:
            if (a->grad) a->grad[i] += g;
            if (b->grad) b->grad[i] -= g;
            break;
        case BIN_MUL:
            if (a->grad) a->grad[i] += g * b->data[i];
            if (b->grad) b->grad[i] += g * a->data[i];
            break;
        }
    }
    return MM_OK;
}

static mm_status binary(mm_tape *t, const char *op, bin_kind k, mm_tensor *a, mm_tensor *b,
                        mm_tensor **out)
{
    if (!mm_same_shape(a, b)) SHAPE_ERR(op, a, b);
    mm_tensor *in[2] = {a, b};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, a->ndim, a->shape, mm_tape_wants_grad(t, 2, in), &y));
    for (int64_t i = 0; i < y->n; i++) {
        float u = a->data[i], v = b->data[i];
        y->data[i] = k == BIN_ADD ? u + v : k == BIN_SUB ? u - v : u * v;
    }
    MM_CALL(mm_tape_record(t, op, binary_backward, y, 2, in, (void *)(intptr_t)k));
    *out = y;
    return MM_OK;
}

mm_status mm_add(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out) { return binary(t, "add", BIN_ADD, a, b, out); }
mm_status mm_sub(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out) { return binary(t, "sub", BIN_SUB, a, b, out); }
mm_status mm_mul(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out) { return binary(t, "mul", BIN_MUL, a, b, out); }

typedef struct { float alpha; } affine_ctx;

static mm_status affine_backward(mm_node *nd)
{
    float alpha = ((affine_ctx *)nd->ctx)->alpha;
    for (int64_t i = 0; i < nd->out->n; i++) nd->in[0]->grad[i] += alpha * nd->out->grad[i];
    return MM_OK;
}

mm_status mm_affine(mm_tape *t, mm_tensor *x, float alpha, float beta, mm_tensor **out)
{
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    for (int64_t i = 0; i < x->n; i++) y->data[i] = alpha * x->data[i] + beta;
    if (y->grad) {
        affine_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->alpha = alpha;
        MM_CALL(mm_tape_record(t, "affine", affine_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

static mm_status row_scale_backward(mm_node *nd)
{
    mm_tensor *x = nd->in[0], *s = nd->in[1], *y = nd->out;
    int64_t rows = x->shape[0], cols = mm_cols(x);
    for (int64_t r = 0; r < rows; r++) {
        const float *g = y->grad + r * cols;
        if (x->grad)
            for (int64_t j = 0; j < cols; j++) x->grad[r * cols + j] += g[j] * s->data[r];
        if (s->grad) {
            double acc = 0;
            for (int64_t j = 0; j < cols; j++) acc += (double)g[j] * x->data[r * cols + j];
            s->grad[r] += (float)acc;
        }
    }
    return MM_OK;
}

mm_status mm_row_scale(mm_tape *t, mm_tensor *x, mm_tensor *s, mm_tensor **out)
{
    if (s->n != x->shape[0]) SHAPE_ERR("row_scale", x, s);
    mm_tensor *in[2] = {x, s};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 2, in), &y));
    int64_t rows = x->shape[0], cols = mm_cols(x);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) y->data[r * cols + j] = x->data[r * cols + j] * s->data[r];
    MM_CALL(mm_tape_record(t, "row_scale", row_scale_backward, y, 2, in, NULL));
    *out = y;
    return MM_OK;
}

/* ---- elementwise unary ------------------------------------------------------ */

typedef enum { U_RELU, U_GELU, U_TANH, U_SIGMOID, U_SOFTPLUS, U_SSP, U_EXP, U_LOG } unary_kind;

static inline float softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float sigmoid_f(float x)
{
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* One loop per kind (the switch outside the loop) so each loop vectorises. */
static mm_status unary_backward(mm_node *nd)
{
    unary_kind k = (unary_kind)(intptr_t)nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    const float *xs = x->data, *ys = y->data, *g = y->grad;
    float *gx = x->grad;
    int64_t n = y->n;
    switch (k) {
    case U_RELU:
        for (int64_t i = 0; i < n; i++) gx[i] += xs[i] > 0.0f ? g[i] : 0.0f;
        break;
    case U_GELU:
        for (int64_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + erff(xs[i] * (float)M_SQRT1_2));
            float pdf = expf(-0.5f * xs[i] * xs[i]) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
            gx[i] += g[i] * (cdf + xs[i] * pdf);
        }
        break;
    case U_TANH:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * (1.0f - ys[i] * ys[i]);
        break;
    case U_SIGMOID:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * ys[i] * (1.0f - ys[i]);
        break;
    case U_SOFTPLUS:
    case U_SSP:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * (xs[i] > 20.0f ? 1.0f : sigmoid_f(xs[i]));
        break;
    case U_EXP:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * ys[i];
        break;
    case U_LOG:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] / xs[i];
        break;
    }
    return MM_OK;
}

static mm_status unary(mm_tape *t, const char *op, unary_kind k, mm_tensor *x, mm_tensor **out)
{
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    const float *xs = x->data;
    float *ys = y->data;
    int64_t n = x->n;
    switch (k) {
    case U_RELU:
        for (int64_t i = 0; i < n; i++) ys[i] = xs[i] > 0.0f ? xs[i] : 0.0f;
        break;
    case U_GELU:
        for (int64_t i = 0; i < n; i++) ys[i] = 0.5f * xs[i] * (1.0f + erff(xs[i] * (float)M_SQRT1_2));
        break;
    case U_TANH:
        for (int64_t i = 0; i < n; i++) ys[i] = tanhf(xs[i]);
        break;
    case U_SIGMOID:
        for (int64_t i = 0; i < n; i++) ys[i] = sigmoid_f(xs[i]);
        break;
    case U_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) ys[i] = softplus_f(xs[i]);
        break;
    case U_SSP:
        for (int64_t i = 0; i < n; i++) ys[i] = softplus_f(xs[i]) - (float)M_LN2;
        break;
    case U_EXP:
        for (int64_t i = 0; i < n; i++) ys[i] = expf(xs[i]);
        break;
    case U_LOG:
        for (int64_t i = 0; i < n; i++) {
            if (!(xs[i] > 0.0f))
                return MM_ERR(MM_ERR_NUMERIC, "log of a non-positive value %g at element %lld", (double)xs[i],
                              (long long)i);
            ys[i] = logf(xs[i]);
        }
        break;
    }
    MM_CALL(mm_tape_record(t, op, unary_backward, y, 1, &x, (void *)(intptr_t)k));
    *out = y;
    return MM_OK;
}

mm_status mm_relu(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "relu", U_RELU, x, out); }
mm_status mm_gelu(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "gelu", U_GELU, x, out); }
mm_status mm_tanh(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "tanh", U_TANH, x, out); }
mm_status mm_sigmoid(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "sigmoid", U_SIGMOID, x, out); }
mm_status mm_softplus(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "softplus", U_SOFTPLUS, x, out); }
mm_status mm_ssp(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "ssp", U_SSP, x, out); }
mm_status mm_exp(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "exp", U_EXP, x, out); }
mm_status mm_log(mm_tape *t, mm_tensor *x, mm_tensor **out) { return unary(t, "log", U_LOG, x, out); }

/* ---- reductions --------------------------------------------------------------- */

typedef struct { mm_axis axis; float scale; } reduce_ctx;

static mm_status reduce_backward(mm_node *nd)
{
    reduce_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t rows = x->shape[0], cols = mm_cols(x);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float g = c->axis == MM_AXIS_ALL ? y->grad[0] : c->axis == MM_AXIS_ROWS ? y->grad[j] : y->grad[r];
            x->grad[r * cols + j] += c->scale * g;
        }
    return MM_OK;
}

static mm_status reduce(mm_tape *t, const char *op, mm_tensor *x, mm_axis axis, bool mean,
                        mm_tensor **out)
{
    int64_t rows = x->shape[0], cols = mm_cols(x);
    int64_t len = axis == MM_AXIS_ALL ? 1 : axis == MM_AXIS_ROWS ? cols : rows;
    int64_t count = axis == MM_AXIS_ALL ? x->n : axis == MM_AXIS_ROWS ? rows : cols;
    if (axis != MM_AXIS_ALL && axis != MM_AXIS_ROWS && axis != MM_AXIS_COLS)
        return MM_ERR(MM_ERR_ARG, "%s: axis %d is not one of ALL, ROWS, COLS", op, (int)axis);
    if (mean && count == 0) return MM_ERR(MM_ERR_ARG, "%s: mean over zero elements", op);
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, 1, &len, mm_tape_wants_grad(t, 1, &x), &y));
    /* Accumulate in double: sums over a large batch lose digits in float. */
    double *acc;
    MM_CALL(mm_tape_calloc(t, (size_t)len * sizeof(double), (void **)&acc));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float v = x->data[r * cols + j];
            acc[axis == MM_AXIS_ALL ? 0 : axis == MM_AXIS_ROWS ? j : r] += v;
        }
    float scale = mean ? 1.0f / (float)count : 1.0f;
    for (int64_t i = 0; i < len; i++) y->data[i] = (float)(acc[i] * scale);
    if (y->grad) {
        reduce_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->axis = axis;
        c->scale = scale;
        MM_CALL(mm_tape_record(t, op, reduce_backward, y, 1, &x, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_sum(mm_tape *t, mm_tensor *x, mm_axis axis, mm_tensor **out) { return reduce(t, "sum", x, axis, false, out); }
mm_status mm_mean(mm_tape *t, mm_tensor *x, mm_axis axis, mm_tensor **out) { return reduce(t, "mean", x, axis, true, out); }

/* ---- row L2 normalisation ------------------------------------------------- */

typedef struct { float *norm; float eps; } l2n_ctx; /* norm: [rows] */

static mm_status l2n_backward(mm_node *nd)
{
    l2n_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t rows = x->shape[0], cols = mm_cols(x);
    for (int64_t r = 0; r < rows; r++) {
        const float *g = y->grad + r * cols, *yr = y->data + r * cols;
        float *gx = x->grad + r * cols;
        float nrm = c->norm[r];
        if (nrm > c->eps) {
            /* y = x / |x|: dx = (g - y (y . g)) / |x| */
            double dot = 0;
            for (int64_t j = 0; j < cols; j++) dot += (double)yr[j] * g[j];
            for (int64_t j = 0; j < cols; j++) gx[j] += (g[j] - yr[j] * (float)dot) / nrm;
        } else {
            for (int64_t j = 0; j < cols; j++) gx[j] += g[j] / c->eps;
        }
    }
    return MM_OK;
}

mm_status mm_l2_normalize(mm_tape *t, mm_tensor *x, float eps, mm_tensor **out)
{
    int64_t rows = x->shape[0], cols = mm_cols(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    l2n_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)(rows ? rows : 1) * sizeof(float), (void **)&c->norm));
    c->eps = eps;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += (double)x->data[r * cols + j] * x->data[r * cols + j];
        float nrm = (float)sqrt(s);
        c->norm[r] = nrm;
        float d = nrm > eps ? nrm : eps;
        for (int64_t j = 0; j < cols; j++) y->data[r * cols + j] = x->data[r * cols + j] / d;
    }
    MM_CALL(mm_tape_record(t, "l2_normalize", l2n_backward, y, 1, &x, c));
    *out = y;
    return MM_OK;
}

/* ---- reshape (a view) --------------------------------------------------------- */

mm_status mm_reshape(mm_tape *t, mm_tensor *x, int ndim, const int64_t *shape, mm_tensor **out)
{
    mm_tensor *y;
    MM_CALL(mm_tensor_wrap(t, x->data, x->grad, ndim, shape, &y));
    if (y->n != x->n) {
        char sa[64], sb[64];
        return MM_ERR(MM_ERR_ARG, "reshape: %s has %lld values, %s has %lld",
                      mm_shape_str(x, sa, sizeof sa), (long long)x->n, mm_shape_str(y, sb, sizeof sb),
                      (long long)y->n);
    }
    *out = y;
    return MM_OK;
}
