/* loss.c: cross-entropies, MSE, masked BCE, symmetric InfoNCE and ACML's CLIP loss
 * (loss.h). Each loss is fused: one forward that saves what its backward reads, one
 * backward that writes the input gradients directly. */
#include "mmsa/loss.h"

#include <math.h>
#include <string.h>

#include "mmsa/blas.h"
#include "mmsa/index_ops.h"

#define SHAPE_ERR(op, a, b)                                                                     \
    do {                                                                                        \
        char sa_[64], sb_[64];                                                                  \
        return MM_ERR(MM_ERR_ARG, "%s: incompatible shapes %s and %s", op,                      \
                      mm_shape_str(a, sa_, sizeof sa_), mm_shape_str(b, sb_, sizeof sb_));      \
    } while (0)

/* The [1] output of a loss, zeroed; it has a gradient when any of in[] has one. */
static mm_status scalar_out(mm_tape *t, int n_in, mm_tensor *const *in, mm_tensor **out)
{
    MM_CALL(mm_tensor_zeros(t, 1, (int64_t[]){1}, mm_tape_wants_grad(t, n_in, in), out));
    return MM_OK;
}

/* logsumexp of row x [n], stable: max first, then the sum of exponentials in double. */
static double lse_row(const float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) s += exp((double)x[j] - mx);
    return mx + log(s);
}

/* ---- cross-entropy, hard targets --------------------------------------------------- */

typedef struct {
    float *prob;      /* [n, C] softmax of the counted rows (others unset) */
    int64_t *target;  /* [n] */
    float *weight;    /* [n] or NULL (all 1) */
    double wsum;      /* sum of the weights, > 0 when recorded */
} ce_ctx;

static mm_status ce_backward(mm_node *nd)
{
    ce_ctx *c = nd->ctx;
    mm_tensor *z = nd->in[0];
    int64_t n = z->shape[0], C = z->shape[1];
    double s = nd->out->grad[0] / c->wsum;
    for (int64_t i = 0; i < n; i++) {
        float w = c->weight ? c->weight[i] : 1.0f;
        if (w == 0.0f) continue;
        float f = (float)(s * w);
        const float *p = c->prob + i * C;
        float *g = z->grad + i * C;
        for (int64_t j = 0; j < C; j++) g[j] += f * p[j];
        g[c->target[i]] -= f;
    }
    return MM_OK;
}

mm_status mm_cross_entropy(mm_tape *t, mm_tensor *logits, const int64_t *targets,
                           const float *row_weight, mm_tensor **out)
{
    char sa[64];
    if (logits->ndim != 2)
        return MM_ERR(MM_ERR_ARG, "cross_entropy: logits must be 2-D [n, C], got %s",
                      mm_shape_str(logits, sa, sizeof sa));
    int64_t n = logits->shape[0], C = logits->shape[1];
    if (n > 0 && !targets) return MM_ERR(MM_ERR_ARG, "cross_entropy: targets is NULL");
    ce_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(int64_t), (void **)&c->target));
    c->weight = NULL;
    if (row_weight) {
        MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(float), (void **)&c->weight));
        memcpy(c->weight, row_weight, (size_t)n * sizeof(float));
    }
    /* Validate every counted row before computing anything. */
    double wsum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float w = row_weight ? row_weight[i] : 1.0f;
        if (!(w >= 0.0f) || isinf(w))
            return MM_ERR(MM_ERR_ARG, "cross_entropy: row_weight[%lld] = %g, must be finite and >= 0",
                          (long long)i, (double)w);
        c->target[i] = targets[i];
        if (w == 0.0f) continue;
        if (targets[i] < 0 || targets[i] >= C)
            return MM_ERR(MM_ERR_ARG, "cross_entropy: targets[%lld] = %lld outside [0, %lld)",
                          (long long)i, (long long)targets[i], (long long)C);
        wsum += w;
    }
    mm_tensor *y;
    MM_CALL(scalar_out(t, 1, &logits, &y));
    if (wsum == 0.0) {
        *out = y; /* nothing counted: loss 0, no gradient */
        return MM_OK;
    }
    MM_CALL(mm_tape_alloc(t, (size_t)(n * C) * sizeof(float), (void **)&c->prob));
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float w = row_weight ? row_weight[i] : 1.0f;
        if (w == 0.0f) continue;
        const float *z = logits->data + i * C;
        double lse = lse_row(z, C);
        loss += w * (lse - z[targets[i]]);
        for (int64_t j = 0; j < C; j++) c->prob[i * C + j] = (float)exp((double)z[j] - lse);
    }
    y->data[0] = (float)(loss / wsum);
    c->wsum = wsum;
    MM_CALL(mm_tape_record(t, "cross_entropy", ce_backward, y, 1, &logits, c));
    *out = y;
    return MM_OK;
}

/* ---- cross-entropy, soft targets --------------------------------------------------------- */

typedef struct { float *logp; } soft_ce_ctx; /* logp: [n, C] log_softmax of the logits */

static mm_status soft_ce_backward(mm_node *nd)
{
    soft_ce_ctx *c = nd->ctx;
    mm_tensor *z = nd->in[0], *q = nd->in[1];
    int64_t n = z->shape[0], C = z->shape[1];
    float s = (float)(nd->out->grad[0] / (double)n);
    for (int64_t i = 0; i < n; i++) {
        const float *lp = c->logp + i * C, *qi = q->data + i * C;
        if (z->grad) {
            /* d/dz_ij of -sum_k q_ik log p_ik = p_ij sum_k q_ik - q_ij (q need not sum to 1) */
            double qs = 0.0;
            for (int64_t j = 0; j < C; j++) qs += qi[j];
            float *g = z->grad + i * C;
            for (int64_t j = 0; j < C; j++) g[j] += s * ((float)(exp((double)lp[j]) * qs) - qi[j]);
        }
        if (q->grad) {
            float *g = q->grad + i * C;
            for (int64_t j = 0; j < C; j++) g[j] -= s * lp[j];
        }
    }
    return MM_OK;
}

mm_status mm_cross_entropy_soft(mm_tape *t, mm_tensor *logits, mm_tensor *targets,
                                mm_tensor **out)
{
    if (logits->ndim != 2 || !mm_same_shape(logits, targets))
        SHAPE_ERR("cross_entropy_soft (logits [n, C], targets [n, C])", logits, targets);
    int64_t n = logits->shape[0], C = logits->shape[1];
    mm_tensor *in[2] = {logits, targets};
    mm_tensor *y;
    MM_CALL(scalar_out(t, 2, in, &y));
    if (n == 0) {
        *out = y;
        return MM_OK;
    }
    soft_ce_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)(n * C) * sizeof(float), (void **)&c->logp));
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits->data + i * C, *q = targets->data + i * C;
        double lse = lse_row(z, C);
        for (int64_t j = 0; j < C; j++) {
            double lp = (double)z[j] - lse;
            c->logp[i * C + j] = (float)lp;
            loss -= q[j] * lp;
        }
    }
    y->data[0] = (float)(loss / (double)n);
    MM_CALL(mm_tape_record(t, "cross_entropy_soft", soft_ce_backward, y, 2, in, c));
    *out = y;
    return MM_OK;
}

/* ---- mean squared error ------------------------------------------------------------------- */

/* mask: [rows] copy of the row mask, or NULL (all rows). scale = 2 / counted elements. */
typedef struct { uint8_t *mask; double scale; } mse_ctx;

static mm_status mse_backward(mm_node *nd)
{
    mse_ctx *c = nd->ctx;
    mm_tensor *a = nd->in[0], *b = nd->in[1];
    int64_t rows = a->shape[0], cols = mm_cols(a);
    float f = (float)(nd->out->grad[0] * c->scale);
    for (int64_t r = 0; r < rows; r++) {
        if (c->mask && !c->mask[r]) continue;
        for (int64_t j = r * cols; j < (r + 1) * cols; j++) {
            float d = f * (a->data[j] - b->data[j]);
            if (a->grad) a->grad[j] += d;
            if (b->grad) b->grad[j] -= d;
        }
    }
    return MM_OK;
}

static mm_status mse(mm_tape *t, const char *op, mm_tensor *a, mm_tensor *b, const uint8_t *mask,
                     mm_tensor **out)
{
    if (!mm_same_shape(a, b)) SHAPE_ERR(op, a, b);
    int64_t rows = a->shape[0], cols = mm_cols(a);
    mm_tensor *in[2] = {a, b};
    mm_tensor *y;
    MM_CALL(scalar_out(t, 2, in, &y));
    /* Plain MSE: the mean over all elements. Masked: the mean over present rows of
     * per-row means, which with equal row lengths is the mean over their elements. */
    int64_t present = 0;
    for (int64_t r = 0; r < rows; r++) present += (!mask || mask[r]) ? 1 : 0;
    int64_t count = present * cols;
    if (count == 0) {
        *out = y;
        return MM_OK;
    }
    double acc = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int64_t j = r * cols; j < (r + 1) * cols; j++) {
            double d = (double)a->data[j] - b->data[j];
            acc += d * d;
        }
    }
    y->data[0] = (float)(acc / (double)count);
    if (y->grad) {
        mse_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->mask = NULL;
        if (mask) {
            MM_CALL(mm_tape_alloc(t, (size_t)rows, (void **)&c->mask));
            memcpy(c->mask, mask, (size_t)rows);
        }
        c->scale = 2.0 / (double)count;
        MM_CALL(mm_tape_record(t, op, mse_backward, y, 2, in, c));
    }
    *out = y;
    return MM_OK;
}

mm_status mm_mse(mm_tape *t, mm_tensor *a, mm_tensor *b, mm_tensor **out)
{
    MM_CALL(mse(t, "mse", a, b, NULL, out));
    return MM_OK;
}

mm_status mm_mse_masked(mm_tape *t, mm_tensor *a, mm_tensor *b, const uint8_t *row_mask,
                        mm_tensor **out)
{
    MM_CALL(mse(t, "mse_masked", a, b, row_mask, out));
    return MM_OK;
}

/* ---- BCE with logits, NaN = missing ---------------------------------------------------------- */

typedef struct { const float *labels; int64_t count; } bce_ctx; /* labels: [n, T] */

static inline double sigmoid_d(double z)
{
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

static mm_status bce_backward(mm_node *nd)
{
    bce_ctx *c = nd->ctx;
    mm_tensor *z = nd->in[0];
    double s = nd->out->grad[0] / (double)c->count;
    for (int64_t i = 0; i < z->n; i++) {
        float yv = c->labels[i];
        if (isnan(yv)) continue;
        z->grad[i] += (float)(s * (sigmoid_d(z->data[i]) - yv));
    }
    return MM_OK;
}

mm_status mm_bce_logits_masked(mm_tape *t, mm_tensor *logits, const mm_tensor *labels,
                               mm_tensor **out)
{
    if (!mm_same_shape(logits, labels)) SHAPE_ERR("bce_logits_masked (logits, labels)", logits, labels);
    mm_tensor *y;
    MM_CALL(scalar_out(t, 1, &logits, &y));
    double acc = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < logits->n; i++) {
        float yv = labels->data[i];
        if (isnan(yv)) continue;
        double z = logits->data[i];
        /* max(z, 0) - z y + log(1 + e^-|z|): no overflow for any z */
        acc += (z > 0 ? z : 0.0) - z * yv + log1p(exp(-fabs(z)));
        count++;
    }
    if (count == 0) {
        *out = y; /* every label missing: loss 0, no gradient */
        return MM_OK;
    }
    y->data[0] = (float)(acc / (double)count);
    if (y->grad) {
        bce_ctx *c;
        MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
        c->labels = labels->data;
        c->count = count;
        MM_CALL(mm_tape_record(t, "bce_logits_masked", bce_backward, y, 1, &logits, c));
    }
    *out = y;
    return MM_OK;
}

/* ---- two-way cross-entropy over a similarity matrix (InfoNCE, CLIP) -------------------------- */

/* loss = (CE_rows + CE_cols) / 2 over S = A B^T / tau, A and B [n, d], targets T [n, n]
 * (NULL = the identity, which is the symmetric InfoNCE):
 *   CE_rows = (1/n) sum_i sum_j T_ij (lse_row_i - S_ij),
 *   CE_cols = (1/n) sum_j sum_i T_ij (lse_col_j - S_ij).
 * One call computes the rows row0 .. row0 + m - 1 of S (a = those rows of A, b = all of
 * B) and returns their part of the loss, (1/2n) sum over its rows i and all j of
 * T_ij (lse_row_i - S_ij + lse_col_j - S_ij); the parts of all row blocks add up to the
 * loss. The column statistics (maxima, sums of exponentials, sums of T) span every row:
 * `red` combines them over the blocks (NULL: this call holds every row).
 * dS_ij = (1/2n) (softmax_row_ij rsum_i + softmax_col_ij csum_j - 2 T_ij), with rsum/csum
 * the row/column sums of T; then da = dS b / tau, db = dS^T a / tau. Targets that carry a
 * gradient (ACML's, computed from the embeddings) get dT_ij = (1/2n) (lse_row_i - S_ij +
 * lse_col_j - S_ij). The column term of
 * dS uses this part's incoming gradient for every part: the parts must be added with
 * equal weights (they are: each rank adds its part to the objective with the loss weight). */
typedef struct {
    float *s;          /* [m, n] S; the backward overwrites it with dL/dS (it runs once) */
    double *lse_r;     /* [m] logsumexp of each row of S */
    double *lse_c;     /* [n] logsumexp of each column of S (over every row block) */
    double *rsum;      /* [m] row sums of T, or NULL (identity: all 1) */
    double *csum;      /* [n] column sums of T (over every row block), or NULL */
    const float *tgt;  /* [m, n] targets, or NULL (identity) */
    float *tgt_grad;   /* [m, n] their gradient, or NULL (constants) */
    int64_t n, row0;
    float tau;
} pair_ctx;

static inline double target_of(const pair_ctx *c, int64_t i, int64_t j)
{
    return c->tgt ? c->tgt[i * c->n + j] : (c->row0 + i == j ? 1.0 : 0.0);
}

static mm_status pair_backward(mm_node *nd)
{
    pair_ctx *c = nd->ctx;
    mm_tensor *a = nd->in[0], *b = nd->in[1];
    int64_t m = a->shape[0], n = c->n, d = a->shape[1];
    double f = nd->out->grad[0] * 0.5 / (double)n;
    if (c->tgt_grad)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double sij = c->s[i * n + j];
                c->tgt_grad[i * n + j] += (float)(f * (c->lse_r[i] - sij + c->lse_c[j] - sij));
            }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sij = c->s[i * n + j];
            double pr = exp(sij - c->lse_r[i]) * (c->rsum ? c->rsum[i] : 1.0);
            double pc = exp(sij - c->lse_c[j]) * (c->csum ? c->csum[j] : 1.0);
            c->s[i * n + j] = (float)(f * (pr + pc - 2.0 * target_of(c, i, j)));
        }
    float it = 1.0f / c->tau;
    if (m == 0) return MM_OK;
    if (a->grad) mm_sgemm(false, false, m, d, n, it, c->s, n, b->data, d, 1.0f, a->grad, d);
    if (b->grad) mm_sgemm(true, false, n, d, m, it, c->s, n, a->data, d, 1.0f, b->grad, d);
    return MM_OK;
}

static mm_status pair_loss_rows(mm_tape *t, const char *op, mm_tensor *a, mm_tensor *b, int64_t row0,
                                mm_tensor *targets, float tau, int64_t min_n, const mm_col_reducer *red,
                                mm_tensor **out)
{
    char sa[64], sb[64];
    if (a->ndim != 2 || b->ndim != 2 || a->shape[1] != b->shape[1] || row0 < 0 || row0 + a->shape[0] > b->shape[0])
        return MM_ERR(MM_ERR_ARG, "%s: rows %lld.. %s of A against B %s (need A's rows within B's)", op,
                      (long long)row0, mm_shape_str(a, sa, sizeof sa), mm_shape_str(b, sb, sizeof sb));
    if (!(tau > 0.0f) || isinf(tau))
        return MM_ERR(MM_ERR_ARG, "%s: temperature %g must be positive and finite", op, (double)tau);
    int64_t m = a->shape[0], n = b->shape[0], d = a->shape[1];
    if (targets && (targets->ndim != 2 || targets->shape[0] != m || targets->shape[1] != n))
        return MM_ERR(MM_ERR_ARG, "%s: targets %s, need [%lld, %lld] for inputs %s", op,
                      mm_shape_str(targets, sa, sizeof sa), (long long)m, (long long)n,
                      mm_shape_str(a, sb, sizeof sb));
    /* the targets are an input of the op only when they carry a gradient */
    mm_tensor *in[3] = {a, b, targets};
    int n_in = targets && targets->grad ? 3 : 2;
    mm_tensor *y;
    MM_CALL(scalar_out(t, n_in, in, &y));
    if (n < min_n) {
        *out = y;
        return MM_OK;
    }
    pair_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)((m ? m : 1) * n) * sizeof(float), (void **)&c->s));
    MM_CALL(mm_tape_alloc(t, (size_t)(m ? m : 1) * sizeof(double), (void **)&c->lse_r));
    MM_CALL(mm_tape_calloc(t, (size_t)n * sizeof(double), (void **)&c->lse_c));
    c->tgt = targets ? targets->data : NULL;
    c->tgt_grad = n_in == 3 ? targets->grad : NULL;
    c->rsum = c->csum = NULL;
    c->n = n;
    c->row0 = row0;
    c->tau = tau;
    float *s = c->s;
    if (m > 0) mm_sgemm(false, true, m, n, d, 1.0f / tau, a->data, d, b->data, d, 0.0f, s, n);

    /* Column maxima first (over every row block), then the column sums in one
     * row-major sweep. */
    float *cmax;
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(float), (void **)&cmax));
    for (int64_t j = 0; j < n; j++) cmax[j] = -INFINITY;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) cmax[j] = s[i * n + j] > cmax[j] ? s[i * n + j] : cmax[j];
    if (red) MM_CALL(red->max_float(red->ctx, cmax, n));
    for (int64_t i = 0; i < m; i++) {
        c->lse_r[i] = lse_row(s + i * n, n);
        for (int64_t j = 0; j < n; j++) c->lse_c[j] += exp((double)s[i * n + j] - cmax[j]);
    }
    if (targets) {
        MM_CALL(mm_tape_alloc(t, (size_t)(m ? m : 1) * sizeof(double), (void **)&c->rsum));
        MM_CALL(mm_tape_calloc(t, (size_t)n * sizeof(double), (void **)&c->csum));
        for (int64_t i = 0; i < m; i++) {
            double rs = 0.0;
            for (int64_t j = 0; j < n; j++) {
                rs += c->tgt[i * n + j];
                c->csum[j] += c->tgt[i * n + j];
            }
            c->rsum[i] = rs;
        }
    }
    if (red) {
        MM_CALL(red->sum_double(red->ctx, c->lse_c, n));
        if (c->csum) MM_CALL(red->sum_double(red->ctx, c->csum, n));
    }
    for (int64_t j = 0; j < n; j++) c->lse_c[j] = cmax[j] + log(c->lse_c[j]);

    double rows = 0.0, cols = 0.0;
    if (!targets) {
        for (int64_t i = 0; i < m; i++) {
            rows += c->lse_r[i] - s[i * n + row0 + i];
            cols += c->lse_c[row0 + i] - s[i * n + row0 + i];
        }
    } else {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double tij = c->tgt[i * n + j];
                rows += tij * (c->lse_r[i] - s[i * n + j]);
                cols += tij * (c->lse_c[j] - s[i * n + j]);
            }
    }
    y->data[0] = (float)(0.5 * (rows + cols) / (double)n);
    MM_CALL(mm_tape_record(t, op, pair_backward, y, n_in, in, c));
    *out = y;
    return MM_OK;
}

static mm_status pair_loss(mm_tape *t, const char *op, mm_tensor *a, mm_tensor *b,
                           mm_tensor *targets, float tau, int64_t min_n, mm_tensor **out)
{
    if (a->ndim != 2 || !mm_same_shape(a, b)) SHAPE_ERR(op, a, b);
    MM_CALL(pair_loss_rows(t, op, a, b, 0, targets, tau, min_n, NULL, out));
    return MM_OK;
}

mm_status mm_info_nce_rows(mm_tape *t, mm_tensor *a, mm_tensor *b, int64_t row0, float tau,
                           const mm_col_reducer *red, mm_tensor **out)
{
    MM_CALL(pair_loss_rows(t, "info_nce_rows", a, b, row0, NULL, tau, 2, red, out));
    return MM_OK;
}

mm_status mm_clip_soft_loss_rows(mm_tape *t, mm_tensor *u, mm_tensor *g, int64_t row0, mm_tensor *targets, float tau,
                                 const mm_col_reducer *red, mm_tensor **out)
{
    if (!targets) return MM_ERR(MM_ERR_ARG, "clip_soft_loss_rows: targets is NULL");
    MM_CALL(pair_loss_rows(t, "clip_soft_loss_rows", u, g, row0, targets, tau, 1, red, out));
    return MM_OK;
}

mm_status mm_info_nce(mm_tape *t, mm_tensor *a, mm_tensor *b, float tau, mm_tensor **out)
{
    MM_CALL(pair_loss(t, "info_nce", a, b, NULL, tau, 2, out));
    return MM_OK;
}

mm_status mm_clip_soft_loss_given(mm_tape *t, mm_tensor *u, mm_tensor *g,
                                  const mm_tensor *targets, float tau, mm_tensor **out)
{
    if (!targets) return MM_ERR(MM_ERR_ARG, "clip_soft_loss: targets is NULL");
    /* constants: a tensor without gradient is never written */
    MM_CALL(pair_loss(t, "clip_soft_loss", u, g, (mm_tensor *)targets, tau, 1, out));
    return MM_OK;
}

mm_status mm_clip_soft_targets(mm_tape *t, const mm_tensor *u, const mm_tensor *g, float tau,
                               mm_tensor **out)
{
    if (u->ndim != 2 || !mm_same_shape(u, g)) SHAPE_ERR("clip_soft_targets", u, g);
    if (!(tau > 0.0f) || isinf(tau))
        return MM_ERR(MM_ERR_ARG, "clip_soft_targets: temperature %g must be positive and finite",
                      (double)tau);
    int64_t n = u->shape[0], d = u->shape[1];
    mm_tensor *m;
    MM_CALL(mm_tensor_new2(t, n, n, false, &m)); /* no gradient: the targets are detached */
    /* (U U^T + G G^T) / 2 * tau */
    mm_sgemm(false, true, n, n, d, 0.5f * tau, u->data, d, u->data, d, 0.0f, m->data, n);
    mm_sgemm(false, true, n, n, d, 0.5f * tau, g->data, d, g->data, d, 1.0f, m->data, n);
    MM_CALL(mm_softmax(t, m, out));
    return MM_OK;
}

mm_status mm_clip_soft_loss(mm_tape *t, mm_tensor *u, mm_tensor *g, float tau, mm_tensor **out)
{
    mm_tensor *tg;
    MM_CALL(mm_clip_soft_targets(t, u, g, tau, &tg));
    MM_CALL(mm_clip_soft_loss_given(t, u, g, tg, tau, out));
    return MM_OK;
}
