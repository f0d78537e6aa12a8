/* norm.c: LayerNorm and BatchNorm (nn.h), statistics in double. */
#include "mmsa/nn.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define SHAPE_ERR(op, a, b)                                                                     \
    do {                                                                                        \
        char sa_[64], sb_[64];                                                                  \
        return MM_ERR(MM_ERR_ARG, "%s: incompatible shapes %s and %s", op,                      \
                      mm_shape_str(a, sa_, sizeof sa_), mm_shape_str(b, sb_, sizeof sb_));      \
    } while (0)

/* ---- LayerNorm --------------------------------------------------------------- */

typedef struct {
    int64_t rows, cols;
    double *mean;    /* [rows] */
    double *invstd;  /* [rows] 1 / sqrt(var + eps) */
} ln_ctx;

static mm_status ln_backward(mm_node *nd)
{
    ln_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *gamma = nd->in[1], *beta = nd->in[2], *y = nd->out;
    int64_t rows = c->rows, cols = c->cols;
    double *dg = NULL, *db = NULL; /* [cols] parameter gradients summed over rows */
    if (gamma && gamma->grad)
        MM_CALL(mm_tape_calloc(nd->tape, (size_t)cols * sizeof(double), (void **)&dg));
    if (beta && beta->grad)
        MM_CALL(mm_tape_calloc(nd->tape, (size_t)cols * sizeof(double), (void **)&db));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * cols, *gy = y->grad + r * cols;
        double mu = c->mean[r], is = c->invstd[r];
        double sg = 0, sgx = 0; /* sum of g and of g * xhat, g = dy * gamma */
        for (int64_t j = 0; j < cols; j++) {
            double xh = (xr[j] - mu) * is;
            double g = gy[j] * (gamma ? (double)gamma->data[j] : 1.0);
            sg += g;
            sgx += g * xh;
            if (dg) dg[j] += gy[j] * xh;
            if (db) db[j] += gy[j];
        }
        if (x->grad) {
            float *gx = x->grad + r * cols;
            double mg = sg / (double)cols, mgx = sgx / (double)cols;
            for (int64_t j = 0; j < cols; j++) {
                double xh = (xr[j] - mu) * is;
                double g = gy[j] * (gamma ? (double)gamma->data[j] : 1.0);
                gx[j] += (float)(is * (g - mg - xh * mgx));
            }
        }
    }
    for (int64_t j = 0; j < cols; j++) {
        if (dg) gamma->grad[j] += (float)dg[j];
        if (db) beta->grad[j] += (float)db[j];
    }
    return MM_OK;
}

mm_status mm_layernorm(mm_tape *t, mm_tensor *x, int norm_dims, mm_tensor *gamma,
                       mm_tensor *beta, float eps, mm_tensor **out)
{
    if (norm_dims < 1 || norm_dims > x->ndim) {
        char sx[64];
        return MM_ERR(MM_ERR_ARG, "layernorm: norm_dims %d outside 1..%d for x %s", norm_dims,
                      x->ndim, mm_shape_str(x, sx, sizeof sx));
    }
    int64_t cols = 1;
    for (int d = x->ndim - norm_dims; d < x->ndim; d++) cols *= x->shape[d];
    int64_t rows = cols ? x->n / cols : 0;
    if (gamma && gamma->n != cols) SHAPE_ERR("layernorm (x, gamma)", x, gamma);
    if (beta && beta->n != cols) SHAPE_ERR("layernorm (x, beta)", x, beta);
    if (!(eps >= 0.0f)) return MM_ERR(MM_ERR_ARG, "layernorm: eps %g must be >= 0", (double)eps);

    mm_tensor *in[3] = {x, gamma, beta};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 3, in), &y));
    ln_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->rows = rows;
    c->cols = cols;
    MM_CALL(mm_tape_alloc(t, (size_t)rows * sizeof(double), (void **)&c->mean));
    MM_CALL(mm_tape_alloc(t, (size_t)rows * sizeof(double), (void **)&c->invstd));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * cols;
        float *yr = y->data + r * cols;
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += xr[j];
        double mu = s / (double)cols, ss = 0;
        for (int64_t j = 0; j < cols; j++) ss += (xr[j] - mu) * (xr[j] - mu);
        double is = 1.0 / sqrt(ss / (double)cols + eps);
        if (!isfinite(is))
            return MM_ERR(MM_ERR_NUMERIC, "layernorm: row %lld has zero variance and eps = 0",
                          (long long)r);
        c->mean[r] = mu;
        c->invstd[r] = is;
        for (int64_t j = 0; j < cols; j++) {
            double v = (xr[j] - mu) * is;
            if (gamma) v *= gamma->data[j];
            if (beta) v += beta->data[j];
            yr[j] = (float)v;
        }
    }
    MM_CALL(mm_tape_record(t, "layernorm", ln_backward, y, 3, in, c));
    *out = y;
    return MM_OK;
}

/* ---- BatchNorm --------------------------------------------------------------- */

typedef struct {
    int64_t N, C, S;   /* x viewed as [N, C, S] */
    double n;          /* values per channel in the (global) batch */
    bool training;     /* batch statistics (backward through them) or running ones */
    bool relu;         /* mm_batchnorm_relu: y = max(normalised, 0) */
    double *mean;      /* [C] */
    double *invstd;    /* [C] */
} bn_ctx;

/* Sum buf[0..n) across the ranks of the batch, if the tape has a hook. */
static mm_status bn_allreduce(mm_tape *t, double *buf, int64_t n)
{
    if (!t->allreduce) return MM_OK;
    if (n > INT_MAX) return MM_ERR(MM_ERR_RANGE, "batchnorm: %lld channels exceed an MPI count", (long long)n);
    MM_CALL(t->allreduce(t->allreduce_ctx, buf, (int)n));
    return MM_OK;
}

/* ---- [N, C], channels innermost (the GIN's rows, the CNN's positions) ----------------
 * Per element the arithmetic of the strided loops further down, in double; the row
 * kernels vectorise over the channels and are compiled for AVX-512, AVX2 and baseline
 * x86-64, picked at load time (the default build runs on any x86-64; without
 * contraction or reassociation every version gives the same bits). */
#define BN_VEC __attribute__((target_clones("avx512f", "avx2", "default")))

/* acc[C] += the column sums of x [N, C] */
BN_VEC
static void bn_rows_sum(const float *restrict x, int64_t N, int64_t C, double *restrict acc)
{
    for (int64_t i = 0; i < N * C; i += C)
        for (int64_t c = 0; c < C; c++) acc[c] += x[i + c];
}

/* acc[C] += the column sums of (x - mean)^2 */
BN_VEC
static void bn_rows_sqdev(const float *restrict x, int64_t N, int64_t C, const double *restrict mean,
                          double *restrict acc)
{
    for (int64_t i = 0; i < N * C; i += C)
        for (int64_t c = 0; c < C; c++) {
            double d = x[i + c] - mean[c];
            acc[c] += d * d;
        }
}

/* y = (x - mean) * invstd * g + b, then max(., 0) with relu (NaN -> 0 as well). */
BN_VEC
static void bn_rows_normalise(const float *restrict x, int64_t N, int64_t C, const double *restrict mean,
                              const double *restrict invstd, const double *restrict g, const double *restrict b,
                              bool relu, float *restrict y)
{
    if (relu)
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) {
                float v = (float)((x[i + c] - mean[c]) * invstd[c] * g[c] + b[c]);
                y[i + c] = v > 0.0f ? v : 0.0f;
            }
    else
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) y[i + c] = (float)((x[i + c] - mean[c]) * invstd[c] * g[c] + b[c]);
}

/* With the ReLU, dy is gy where the output is positive, else 0. The output's sign is
 * recomputed from x with the forward's arithmetic (gb: g then b, as bn_rows_normalise
 * takes them), the same bits, instead of read from y: one pass less over memory. */
#define BN_RELU_DY(i, c, xh) ((float)((xh) * gb[c] + gb[C + (c)]) > 0.0f ? gy[(i) + (c)] : 0.0f)

/* sd[C] += column sums of dy, sdx[C] += of dy * xhat. gb: NULL without the ReLU. */
BN_VEC
static void bn_rows_grad_sums(const float *restrict x, const float *restrict gy, const double *restrict gb,
                              int64_t N, int64_t C, const double *restrict mean, const double *restrict invstd,
                              double *restrict sd, double *restrict sdx)
{
    if (gb)
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) {
                double xh = (x[i + c] - mean[c]) * invstd[c];
                float g = BN_RELU_DY(i, c, xh);
                sd[c] += g;
                sdx[c] += g * xh;
            }
    else
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) {
                sd[c] += gy[i + c];
                sdx[c] += gy[i + c] * ((x[i + c] - mean[c]) * invstd[c]);
            }
}

/* gx += scale * (dy - md - xhat * mdx) */
BN_VEC
static void bn_rows_grad(const float *restrict x, const float *restrict gy, const double *restrict gb, int64_t N,
                         int64_t C, const double *restrict mean, const double *restrict invstd,
                         const double *restrict scale, const double *restrict md, const double *restrict mdx,
                         float *restrict gx)
{
    if (gb)
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) {
                double xh = (x[i + c] - mean[c]) * invstd[c];
                gx[i + c] += (float)(scale[c] * (BN_RELU_DY(i, c, xh) - md[c] - xh * mdx[c]));
            }
    else
        for (int64_t i = 0; i < N * C; i += C)
            for (int64_t c = 0; c < C; c++) {
                double xh = (x[i + c] - mean[c]) * invstd[c];
                gx[i + c] += (float)(scale[c] * (gy[i + c] - md[c] - xh * mdx[c]));
            }
}

/* gamma then beta [2 C] in double, 1 and 0 when absent. */
static mm_status bn_affine(mm_tape *t, const mm_tensor *gamma, const mm_tensor *beta, int64_t C, double **gb)
{
    MM_CALL(mm_tape_alloc(t, (size_t)(2 * C) * sizeof(double), (void **)gb));
    for (int64_t ch = 0; ch < C; ch++) {
        (*gb)[ch] = gamma ? gamma->data[ch] : 1.0;
        (*gb)[C + ch] = beta ? beta->data[ch] : 0.0;
    }
    return MM_OK;
}

/* The backward over [N, C] rows (S == 1): two passes, the sums, then dx. */
static mm_status bn_rows_backward(mm_node *nd)
{
    bn_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *gamma = nd->in[1], *beta = nd->in[2], *y = nd->out;
    int64_t N = c->N, C = c->C;
    double *gb = NULL; /* the ReLU's mask from x (bn_rows_grad_sums) */
    if (c->relu) MM_CALL(bn_affine(nd->tape, gamma, beta, C, &gb));
    /* sums[0..C): sum of dy per channel; sums[C..2C): sum of dy * xhat (local part) */
    double *sums;
    MM_CALL(mm_tape_calloc(nd->tape, (size_t)(2 * C) * sizeof(double), (void **)&sums));
    bn_rows_grad_sums(x->data, y->grad, gb, N, C, c->mean, c->invstd, sums, sums + C);
    /* Parameter gradients are this rank's share; the gradient allreduce adds the rest. */
    for (int64_t ch = 0; ch < C; ch++) {
        if (gamma && gamma->grad) gamma->grad[ch] += (float)sums[C + ch];
        if (beta && beta->grad) beta->grad[ch] += (float)sums[ch];
    }
    if (!x->grad) return MM_OK;
    if (c->training) MM_CALL(bn_allreduce(nd->tape, sums, 2 * C));
    /* training: d/dx of (x - mu) * invstd through mu and var of the whole batch; with
     * running statistics only the scale (md = mdx = 0) */
    double *scale;
    MM_CALL(mm_tape_calloc(nd->tape, (size_t)(3 * C) * sizeof(double), (void **)&scale));
    double *md = scale + C, *mdx = md + C;
    for (int64_t ch = 0; ch < C; ch++) {
        scale[ch] = c->invstd[ch] * (gamma ? (double)gamma->data[ch] : 1.0);
        if (c->training) {
            md[ch] = sums[ch] / c->n;
            mdx[ch] = sums[C + ch] / c->n;
        }
    }
    bn_rows_grad(x->data, y->grad, gb, N, C, c->mean, c->invstd, scale, md, mdx, x->grad);
    return MM_OK;
}

static mm_status bn_backward(mm_node *nd)
{
    bn_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *gamma = nd->in[1], *beta = nd->in[2], *y = nd->out;
    int64_t N = c->N, C = c->C, S = c->S;
    if (S == 1) return bn_rows_backward(nd);
    /* ReLU: the gradient passes where the output is positive. Every consumer of y has
     * added into y->grad before this runs, so it is masked in place. */
    if (c->relu) {
        float *restrict gy = y->grad;
        const float *restrict yv = y->data;
        for (int64_t i = 0, n = y->n; i < n; i++) gy[i] = yv[i] > 0.0f ? gy[i] : 0.0f;
    }
    /* sums[0..C): sum of dy per channel; sums[C..2C): sum of dy * xhat (local part). */
    double *sums;
    MM_CALL(mm_tape_calloc(nd->tape, (size_t)(2 * C) * sizeof(double), (void **)&sums));
    for (int64_t i = 0; i < N; i++)
        for (int64_t ch = 0; ch < C; ch++) {
            const float *xs = x->data + (i * C + ch) * S, *gy = y->grad + (i * C + ch) * S;
            double mu = c->mean[ch], is = c->invstd[ch], sd = 0, sdx = 0;
            for (int64_t k = 0; k < S; k++) {
                sd += gy[k];
                sdx += gy[k] * ((xs[k] - mu) * is);
            }
            sums[ch] += sd;
            sums[C + ch] += sdx;
        }
    /* Parameter gradients are this rank's share; the gradient allreduce adds the rest. */
    for (int64_t ch = 0; ch < C; ch++) {
        if (gamma && gamma->grad) gamma->grad[ch] += (float)sums[C + ch];
        if (beta && beta->grad) beta->grad[ch] += (float)sums[ch];
    }
    if (!x->grad) return MM_OK;
    if (c->training) MM_CALL(bn_allreduce(nd->tape, sums, 2 * C));
    for (int64_t ch = 0; ch < C; ch++) {
        double is = c->invstd[ch], mu = c->mean[ch];
        double scale = is * (gamma ? (double)gamma->data[ch] : 1.0);
        double md = sums[ch] / c->n, mdx = sums[C + ch] / c->n;
        for (int64_t i = 0; i < N; i++) {
            const float *xs = x->data + (i * C + ch) * S, *gy = y->grad + (i * C + ch) * S;
            float *gx = x->grad + (i * C + ch) * S;
            if (c->training) {
                /* d/dx of (x - mu) * invstd through mu and var of the whole batch */
                for (int64_t k = 0; k < S; k++) {
                    double xh = (xs[k] - mu) * is;
                    gx[k] += (float)(scale * (gy[k] - md - xh * mdx));
                }
            } else {
                for (int64_t k = 0; k < S; k++) gx[k] += (float)(scale * gy[k]);
            }
        }
    }
    return MM_OK;
}

static mm_status batchnorm(mm_tape *t, mm_tensor *x, mm_tensor *gamma, mm_tensor *beta,
                           float *running_mean, float *running_var, float momentum, float eps,
                           bool relu, mm_tensor **out)
{
    if (x->ndim < 2) {
        char sx[64];
        return MM_ERR(MM_ERR_ARG, "batchnorm: x %s needs [N, C, ...]", mm_shape_str(x, sx, sizeof sx));
    }
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    if (gamma && gamma->n != C) SHAPE_ERR("batchnorm (x, gamma)", x, gamma);
    if (beta && beta->n != C) SHAPE_ERR("batchnorm (x, beta)", x, beta);
    if (!(eps > 0.0f)) return MM_ERR(MM_ERR_ARG, "batchnorm: eps %g must be > 0", (double)eps);
    if (!t->training && (!running_mean || !running_var))
        return MM_ERR(MM_ERR_ARG, "batchnorm: eval mode needs running_mean and running_var");

    mm_tensor *in[3] = {x, gamma, beta};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 3, in), &y));
    bn_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->N = N;
    c->C = C;
    c->S = S;
    c->training = t->training;
    c->relu = relu;
    MM_CALL(mm_tape_alloc(t, (size_t)C * sizeof(double), (void **)&c->mean));
    MM_CALL(mm_tape_alloc(t, (size_t)C * sizeof(double), (void **)&c->invstd));

    if (t->training) {
        /* Pass 1: per-channel sums and the count -> global mean. buf [C + 1]. */
        double *buf;
        MM_CALL(mm_tape_calloc(t, (size_t)(C + 1) * sizeof(double), (void **)&buf));
        if (S == 1) /* [N, C]: the same sums, channels innermost */
            bn_rows_sum(x->data, N, C, buf);
        else
            for (int64_t i = 0; i < N; i++)
                for (int64_t ch = 0; ch < C; ch++) {
                    const float *xs = x->data + (i * C + ch) * S;
                    double s = 0;
                    for (int64_t k = 0; k < S; k++) s += xs[k];
                    buf[ch] += s;
                }
        buf[C] = (double)N * (double)S;
        MM_CALL(bn_allreduce(t, buf, C + 1));
        double n = buf[C];
        if (n < 2.0)
            return MM_ERR(MM_ERR_ARG,
                          "batchnorm: training needs more than one value per channel, the batch has %.0f",
                          n);
        c->n = n;
        for (int64_t ch = 0; ch < C; ch++) c->mean[ch] = buf[ch] / n;
        /* Pass 2: sum of squared deviations from the global mean -> biased variance. */
        memset(buf, 0, (size_t)C * sizeof(double));
        if (S == 1)
            bn_rows_sqdev(x->data, N, C, c->mean, buf);
        else
            for (int64_t i = 0; i < N; i++)
                for (int64_t ch = 0; ch < C; ch++) {
                    const float *xs = x->data + (i * C + ch) * S;
                    double mu = c->mean[ch], s = 0;
                    for (int64_t k = 0; k < S; k++) s += (xs[k] - mu) * (xs[k] - mu);
                    buf[ch] += s;
                }
        MM_CALL(bn_allreduce(t, buf, C));
        for (int64_t ch = 0; ch < C; ch++) {
            double var = buf[ch] / n;
            c->invstd[ch] = 1.0 / sqrt(var + eps);
            if (running_mean && running_var) {
                running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * c->mean[ch]);
                running_var[ch] =
                    (float)((1.0 - momentum) * running_var[ch] + momentum * var * n / (n - 1.0));
            }
        }
    } else {
        c->n = (double)N * (double)S;
        for (int64_t ch = 0; ch < C; ch++) {
            if (!(running_var[ch] + eps > 0.0f))
                return MM_ERR(MM_ERR_NUMERIC, "batchnorm: running_var[%lld] = %g is not usable",
                              (long long)ch, (double)running_var[ch]);
            c->mean[ch] = running_mean[ch];
            c->invstd[ch] = 1.0 / sqrt((double)running_var[ch] + eps);
        }
    }

    if (S == 1) {
        /* [N, C], channels innermost: per element the arithmetic of the loop below */
        double *gb;
        MM_CALL(bn_affine(t, gamma, beta, C, &gb));
        bn_rows_normalise(x->data, N, C, c->mean, c->invstd, gb, gb + C, relu, y->data);
    } else {
        for (int64_t i = 0; i < N; i++)
            for (int64_t ch = 0; ch < C; ch++) {
                const float *xs = x->data + (i * C + ch) * S;
                float *ys = y->data + (i * C + ch) * S;
                double mu = c->mean[ch], is = c->invstd[ch];
                double g = gamma ? gamma->data[ch] : 1.0, b = beta ? beta->data[ch] : 0.0;
                for (int64_t k = 0; k < S; k++) {
                    float v = (float)((xs[k] - mu) * is * g + b);
                    ys[k] = relu && !(v > 0.0f) ? 0.0f : v;
                }
            }
    }
    MM_CALL(mm_tape_record(t, relu ? "batchnorm_relu" : "batchnorm", bn_backward, y, 3, in, c));
    *out = y;
    return MM_OK;
}

mm_status mm_batchnorm(mm_tape *t, mm_tensor *x, mm_tensor *gamma, mm_tensor *beta,
                       float *running_mean, float *running_var, float momentum, float eps,
                       mm_tensor **out)
{
    return batchnorm(t, x, gamma, beta, running_mean, running_var, momentum, eps, false, out);
}

mm_status mm_batchnorm_relu(mm_tape *t, mm_tensor *x, mm_tensor *gamma, mm_tensor *beta,
                            float *running_mean, float *running_var, float momentum, float eps,
                            mm_tensor **out)
{
    return batchnorm(t, x, gamma, beta, running_mean, running_var, momentum, eps, true, out);
}
