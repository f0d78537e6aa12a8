/* cfconv.c: SchNet's continuous-filter convolution, fused and blocked (cfconv.h).
 *
 * Forward, per block of nb pairs (k0 .. k0+nb-1), with [nb, F] scratch buffers:
 *   f1 = rbf_blk W0^T + b0            GEMM  [nb, R] x [R, F]
 *   a1 = ssp(f1)
 *   wb = a1 W2^T + b2                 GEMM  [nb, F] x [F, F]
 *   out[p_k] += x[q_k] * (wb_k * fcut_k),  out[q_k] += x[p_k] * (wb_k * fcut_k)
 * Backward, per block, with G = d out: the same filters again (with pairs.keep, f1 and
 * wb as the forward stored them, a1 and ssp'(f1) from f1 elementwise), then
 *   dx[q_k] += G[p_k] * (wb_k * fcut_k),   dx[p_k] += G[q_k] * (wb_k * fcut_k)
 *   dwb_k    = (G[p_k] * x[q_k] + G[q_k] * x[p_k]) * fcut_k
 *   db2 += colsum dwb,  dW2 += dwb^T a1,  da1 = dwb W2,  df1 = da1 * ssp'(f1),
 *   db0 += colsum df1,  dW0 += df1^T rbf_blk.
 * Products are taken in the order of the unfused composition (bias first, then the
 * GEMM; wb * fcut before the product with x), and with pairs sorted by p then q every
 * row of out and of dx receives its terms in the same order as the scatter and gather
 * of the unfused ops, so those match it bit for bit wherever the softplus below does;
 * the weight gradients are the same sums in another order. */
#include "mmsa/cfconv.h"

#include <math.h>
#include <string.h>

#include "mmsa/blas.h"

#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#endif

/* ---- subnormal floats ------------------------------------------------------------ */

/* On real conformers every row of rbf holds a few subnormal values: exp(-gamma (d - mu)^2)
 * of a centre 1.35 to 1.47 A from the distance (gamma = 48 / A^2 at the DESIGN sizes) lies
 * in (1.4e-45, 1.2e-38), and the products of the values under ~1e-30 (centres from 1.2 A)
 * with the weights are subnormal too. x86 cores take a microcode assist of ~100 cycles
 * for each such operand or result: the op ran 13 times slower on real RBF rows than on
 * random ones (38,000 pairs, F 128). So the op runs with
 * flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) and restores the caller's
 * MXCSR on the way out; only values under 1.2e-38 change, to 0. BLIS runs on the calling
 * thread at one BLIS thread per rank (blas.h); with more, its other threads keep their own
 * mode (the same values, slower). */
static inline unsigned ftz_enter(void)
{
#if defined(__x86_64__) || defined(__SSE__)
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
#else
    return 0;
#endif
}

static inline void ftz_leave(unsigned old)
{
#if defined(__x86_64__) || defined(__SSE__)
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

/* ---- elementwise math without libm calls, so the loops over it vectorise --------- */

/* exp(x) for x <= 0: Cephes expf (Cody-Waite reduction by ln 2, degree-5 polynomial,
 * within an ulp). Below -87 it returns exp(-87) = 1.6e-38 (still a normal float):
 * softplus and sigmoid are then that small either way. */
static inline float exp_nonpos(float x)
{
    const float round_big = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + round_big) - round_big;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) * (1 << 23); /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* log(1 + t) for t in [0, 1]: u = 1 + t rounded, log u by Cephes logf on the mantissa
 * in [sqrt(1/2), sqrt(2)), plus the rounding of u, (t - (u - 1)) / u. */
static inline float log1p_unit(float t)
{
    float u = 1.0f + t;
    float c = (t - (u - 1.0f)) / u;
    int hi = u > 1.41421356237f;
    float f = u * (hi ? 0.5f : 1.0f) - 1.0f; /* exact */
    float e = hi ? 1.0f : 0.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return (f + y) + 0.693359375f * e + c;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void mm_cfconv_ssp(const float *restrict x, int64_t n, float *restrict ssp, float *restrict sig)
{
    const float ln2 = (float)M_LN2;
    if (sig) {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i], t = exp_nonpos(-fabsf(v)); /* softplus(v) = max(v, 0) + log1p(e^-|v|) */
            ssp[i] = ((v > 0.0f ? v : 0.0f) + log1p_unit(t)) - ln2;
            sig[i] = (v >= 0.0f ? 1.0f : t) / (1.0f + t);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i], t = exp_nonpos(-fabsf(v));
            ssp[i] = ((v > 0.0f ? v : 0.0f) + log1p_unit(t)) - ln2;
        }
    }
}

/* ---- the op ------------------------------------------------------------------- */

typedef struct {
    mm_cfconv_pairs pr; /* block resolved */
    float *scratch;     /* [5, block, F] */
    float *kept;        /* with pr.keep: [2, n_pairs, F], f1 then wb of every pair */
} cf_ctx;

/* f1 = rbf_blk W0^T + b0, a1 = ssp(f1) (sig = ssp'(f1) when sig), wb = a1 W2^T + b2 */
static void block_filters(const mm_cfconv_pairs *pr, int64_t k0, int64_t nb, int64_t F, const mm_tensor *w0,
                          const mm_tensor *b0, const mm_tensor *w2, const mm_tensor *b2, float *f1, float *a1,
                          float *sig, float *wb)
{
    int64_t R = pr->n_rbf;
    for (int64_t i = 0; i < nb; i++) memcpy(f1 + i * F, b0->data, (size_t)F * sizeof(float));
    mm_gemm(false, true, nb, F, R, 1.0f, pr->rbf + k0 * R, R, w0->data, R, 1.0f, f1, F);
    mm_cfconv_ssp(f1, nb * F, a1, sig);
    for (int64_t i = 0; i < nb; i++) memcpy(wb + i * F, b2->data, (size_t)F * sizeof(float));
    mm_gemm(false, true, nb, F, F, 1.0f, a1, F, w2->data, F, 1.0f, wb, F);
}

static void col_sums(const float *restrict a, int64_t rows, int64_t F, float *restrict acc)
{
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < F; j++) acc[j] += a[i * F + j];
}

static mm_status cfconv_backward(mm_node *nd)
{
    cf_ctx *c = nd->ctx;
    const mm_cfconv_pairs *pr = &c->pr;
    mm_tensor *x = nd->in[0], *w0 = nd->in[1], *b0 = nd->in[2], *w2 = nd->in[3], *b2 = nd->in[4], *y = nd->out;
    int64_t F = x->shape[1], R = pr->n_rbf, B = pr->block;
    bool filter_grad = w0->grad || b0->grad || w2->grad || b2->grad, f1_grad = w0->grad || b0->grad;
    float *f1 = c->scratch, *a1 = f1 + B * F, *sig = a1 + B * F, *wb = sig + B * F, *da1 = wb + B * F;
    const float *restrict g = y->grad, *restrict xs = x->data;
    float *restrict gx = x->grad;
    unsigned csr = ftz_enter();
    for (int64_t k0 = 0; k0 < pr->n_pairs; k0 += B) {
        int64_t nb = pr->n_pairs - k0 < B ? pr->n_pairs - k0 : B;
        if (c->kept) { /* the forward's f1 and filters: a1 and ssp' again, no GEMM */
            memcpy(wb, c->kept + (pr->n_pairs + k0) * F, (size_t)(nb * F) * sizeof(float));
            if (filter_grad) mm_cfconv_ssp(c->kept + k0 * F, nb * F, a1, f1_grad ? sig : NULL);
        } else {
            block_filters(pr, k0, nb, F, w0, b0, w2, b2, f1, a1, f1_grad ? sig : NULL, wb);
        }
        for (int64_t i = 0; i < nb; i++) {
            int64_t k = k0 + i;
            const float *restrict gp = g + pr->p[k] * F, *restrict gq = g + pr->q[k] * F;
            const float *restrict xp = xs + pr->p[k] * F, *restrict xq = xs + pr->q[k] * F;
            float *restrict w = wb + i * F, s = pr->fcut[k];
            if (gx) {
                float *restrict dp = gx + pr->p[k] * F, *restrict dq = gx + pr->q[k] * F;
                for (int64_t j = 0; j < F; j++) {
                    float wf = w[j] * s;
                    dq[j] += gp[j] * wf;
                    dp[j] += gq[j] * wf;
                }
            }
            for (int64_t j = 0; j < F; j++) w[j] = (gp[j] * xq[j] + gq[j] * xp[j]) * s; /* wb becomes dwb */
        }
        if (!filter_grad) continue;
        if (b2->grad) col_sums(wb, nb, F, b2->grad);
        if (w2->grad) mm_gemm(true, false, F, F, nb, 1.0f, wb, F, a1, F, 1.0f, w2->grad, F);
        if (!f1_grad) continue;
        mm_gemm(false, false, nb, F, F, 1.0f, wb, F, w2->data, F, 0.0f, da1, F);
        for (int64_t i = 0; i < nb * F; i++) da1[i] *= sig[i];
        if (b0->grad) col_sums(da1, nb, F, b0->grad);
        if (w0->grad) mm_gemm(true, false, F, R, nb, 1.0f, da1, F, pr->rbf + k0 * R, R, 1.0f, w0->grad, R);
    }
    ftz_leave(csr);
    return MM_OK;
}

static mm_status check_args(const mm_tensor *x, const mm_cfconv_pairs *pr, const mm_tensor *w0, const mm_tensor *b0,
                            const mm_tensor *w2, const mm_tensor *b2)
{
    char s1[64], s2[64];
    if (!x || !pr || !w0 || !b0 || !w2 || !b2) return MM_ERR(MM_ERR_ARG, "cfconv: a NULL input");
    if (x->ndim != 2) return MM_ERR(MM_ERR_ARG, "cfconv: x must be [atoms, filters], got %s", mm_shape_str(x, s1, sizeof s1));
    int64_t A = x->shape[0], F = x->shape[1], R = pr->n_rbf;
    if (R < 1) return MM_ERR(MM_ERR_ARG, "cfconv: n_rbf = %lld", (long long)R);
    if (w0->ndim != 2 || w0->shape[0] != F || w0->shape[1] != R)
        return MM_ERR(MM_ERR_ARG, "cfconv: W0 %s is not [filters %lld, n_rbf %lld]", mm_shape_str(w0, s1, sizeof s1),
                      (long long)F, (long long)R);
    if (w2->ndim != 2 || w2->shape[0] != F || w2->shape[1] != F)
        return MM_ERR(MM_ERR_ARG, "cfconv: W2 %s is not [%lld, %lld] (x is %s)", mm_shape_str(w2, s1, sizeof s1),
                      (long long)F, (long long)F, mm_shape_str(x, s2, sizeof s2));
    if (b0->n != F || b2->n != F)
        return MM_ERR(MM_ERR_ARG, "cfconv: biases %s and %s, want %lld values each", mm_shape_str(b0, s1, sizeof s1),
                      mm_shape_str(b2, s2, sizeof s2), (long long)F);
    if (pr->n_pairs < 0 || pr->block < 0)
        return MM_ERR(MM_ERR_ARG, "cfconv: n_pairs = %lld, block = %lld", (long long)pr->n_pairs, (long long)pr->block);
    if (pr->n_pairs > 0 && (!pr->p || !pr->q || !pr->rbf || !pr->fcut))
        return MM_ERR(MM_ERR_ARG, "cfconv: %lld pairs but p, q, rbf or fcut is NULL", (long long)pr->n_pairs);
    for (int64_t k = 0; k < pr->n_pairs; k++)
        if (pr->p[k] < 0 || pr->p[k] >= A || pr->q[k] < 0 || pr->q[k] >= A || pr->p[k] == pr->q[k])
            return MM_ERR(MM_ERR_ARG, "cfconv: pair %lld = (p %lld, q %lld): want p != q, both in [0, %lld)",
                          (long long)k, (long long)pr->p[k], (long long)pr->q[k], (long long)A);
    return MM_OK;
}

mm_status mm_cfconv(mm_tape *t, mm_tensor *x, const mm_cfconv_pairs *pairs, mm_tensor *w0, mm_tensor *b0,
                    mm_tensor *w2, mm_tensor *b2, mm_tensor **out)
{
    MM_CALL(check_args(x, pairs, w0, b0, w2, b2));
    mm_tensor *in[5] = {x, w0, b0, w2, b2};
    int64_t A = x->shape[0], F = x->shape[1];
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, 2, (int64_t[]){A, F}, mm_tape_wants_grad(t, 5, in), &y));
    cf_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->pr = *pairs;
    int64_t B = c->pr.block ? c->pr.block : MM_CFCONV_BLOCK;
    if (B > c->pr.n_pairs) B = c->pr.n_pairs > 0 ? c->pr.n_pairs : 1;
    c->pr.block = B;
    /* the forward uses f1, a1 and wb; the backward all five */
    MM_CALL(mm_tape_alloc(t, (size_t)(5 * B * F) * sizeof(float), (void **)&c->scratch));
    c->kept = NULL;
    if (c->pr.keep && y->grad && c->pr.n_pairs > 0)
        MM_CALL(mm_tape_alloc(t, (size_t)(2 * c->pr.n_pairs * F) * sizeof(float), (void **)&c->kept));
    const float *restrict xs = x->data;
    float *restrict ys = y->data;
    unsigned csr = ftz_enter();
    for (int64_t k0 = 0; k0 < c->pr.n_pairs; k0 += B) {
        int64_t nb = c->pr.n_pairs - k0 < B ? c->pr.n_pairs - k0 : B;
        /* the block's f1 and filters land in the kept rows when the backward wants them */
        float *f1 = c->kept ? c->kept + k0 * F : c->scratch, *a1 = c->scratch + B * F,
              *wb = c->kept ? c->kept + (c->pr.n_pairs + k0) * F : c->scratch + 3 * B * F;
        block_filters(&c->pr, k0, nb, F, w0, b0, w2, b2, f1, a1, NULL, wb);
        for (int64_t i = 0; i < nb; i++) {
            int64_t k = k0 + i;
            const float *restrict w = wb + i * F, *restrict xp = xs + c->pr.p[k] * F, *restrict xq = xs + c->pr.q[k] * F;
            float *restrict yp = ys + c->pr.p[k] * F, *restrict yq = ys + c->pr.q[k] * F, s = c->pr.fcut[k];
            for (int64_t j = 0; j < F; j++) {
                float wf = w[j] * s;
                yp[j] += xq[j] * wf;
                yq[j] += xp[j] * wf;
            }
        }
    }
    ftz_leave(csr);
    MM_CALL(mm_tape_record(t, "cfconv", cfconv_backward, y, 5, in, c));
    *out = y;
    return MM_OK;
}
