/* conv.c: 2-D and 1-D convolution by im2col + GEMM, and global average pooling (nn.h).
 * A 1-D convolution is the 2-D one over rows of height 1 with no padding in height. */
#include "mmsa/nn.h"

#include <string.h>

#include "mmsa/blas.h"
#include "mmsa/ops.h"

/* Scratch floats per block of images: the column matrix and the GEMM output
 * (K + Cout) * P * B stay under this, so memory does not grow with the batch. Channels
 * last, the columns alone, under a quarter of that: a 1 MiB block is still in L2 when the
 * GEMM reads it (3-5% faster image encoder than 4 MiB blocks, bench_cnn). */
#define CONV_BLOCK_FLOATS ((int64_t)1 << 20)
#define NHWC_BLOCK_FLOATS ((int64_t)1 << 18)

typedef struct {
    int64_t N, Cin, H, W;      /* x [N, Cin, H, W] */
    int64_t Cout, kh, kw;      /* w [Cout, Cin, kh, kw] */
    int64_t Ho, Wo;            /* y [N, Cout, Ho, Wo] */
    int64_t s, pad_h, pad_w;   /* zero padding on each side in height and width */
    int64_t block;             /* images per im2col block */
} conv_geom;

/* Output columns ow whose input column ow*s - pad + q lies in [0, W): [*lo, *hi). */
static void valid_range(int64_t W, int64_t Wo, int64_t s, int64_t pad, int64_t q, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = pad - q; /* ow*s >= a */
    int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
    int64_t b = W - 1 + pad - q; /* ow*s <= b */
    int64_t h = b < 0 ? 0 : b / s + 1;
    if (h > Wo) h = Wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col [K, ld] block columns from `col0`: rows (c, p, q), columns (oh, ow) of one image
 * xi [Cin, H, W]. Positions in the zero padding get 0. */
static void im2col(const conv_geom *g, const float *xi, float *col, int64_t ld, int64_t col0)
{
    for (int64_t c = 0; c < g->Cin; c++)
        for (int64_t p = 0; p < g->kh; p++)
            for (int64_t q = 0; q < g->kw; q++) {
                float *row = col + ((c * g->kh + p) * g->kw + q) * ld + col0;
                int64_t lo, hi;
                valid_range(g->W, g->Wo, g->s, g->pad_w, q, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    float *dst = row + oh * g->Wo;
                    int64_t ih = oh * g->s - g->pad_h + p;
                    if (ih < 0 || ih >= g->H) {
                        memset(dst, 0, (size_t)g->Wo * sizeof(float));
                        continue;
                    }
                    /* input column of ow is ow*s + shift, >= 0 on [lo, hi) */
                    const float *src = xi + (c * g->H + ih) * g->W;
                    int64_t shift = q - g->pad_w;
                    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (g->s == 1) {
                        if (hi > lo) memcpy(dst + lo, src + lo + shift, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->s + shift];
                    }
                    for (int64_t ow = hi; ow < g->Wo; ow++) dst[ow] = 0.0f;
                }
            }
}

/* Adjoint of im2col: dxi [Cin, H, W] += the column block's contributions. */
static void col2im(const conv_geom *g, const float *col, int64_t ld, int64_t col0, float *dxi)
{
    for (int64_t c = 0; c < g->Cin; c++)
        for (int64_t p = 0; p < g->kh; p++)
            for (int64_t q = 0; q < g->kw; q++) {
                const float *row = col + ((c * g->kh + p) * g->kw + q) * ld + col0;
                int64_t lo, hi;
                valid_range(g->W, g->Wo, g->s, g->pad_w, q, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    int64_t ih = oh * g->s - g->pad_h + p;
                    if (ih < 0 || ih >= g->H) continue;
                    const float *src = row + oh * g->Wo;
                    float *dst = dxi + (c * g->H + ih) * g->W;
                    int64_t shift = q - g->pad_w;
                    for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->s + shift] += src[ow];
                }
            }
}

static mm_status conv_backward(mm_node *nd)
{
    const conv_geom *g = nd->ctx;
    mm_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    int64_t P = g->Ho * g->Wo, K = g->Cin * g->kh * g->kw, Cout = g->Cout;
    int64_t chw = g->Cin * g->H * g->W;
    bool need_col = w->grad || x->grad;
    float *col = NULL, *dyt; /* col [K, B*P] (then dcol), dyt [Cout, B*P] */
    if (need_col) MM_CALL(mm_tape_alloc(nd->tape, (size_t)(K * g->block * P) * sizeof(float), (void **)&col));
    MM_CALL(mm_tape_alloc(nd->tape, (size_t)(Cout * g->block * P) * sizeof(float), (void **)&dyt));
    for (int64_t n0 = 0; n0 < g->N; n0 += g->block) {
        int64_t nb = g->N - n0 < g->block ? g->N - n0 : g->block, ld = nb * P;
        /* Gather dy of the block as one [Cout, nb*P] matrix. */
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < Cout; o++)
                memcpy(dyt + o * ld + i * P, y->grad + ((n0 + i) * Cout + o) * P, (size_t)P * sizeof(float));
        if (b && b->grad)
            for (int64_t o = 0; o < Cout; o++) {
                double s = 0;
                for (int64_t j = 0; j < ld; j++) s += dyt[o * ld + j];
                b->grad[o] += (float)s;
            }
        if (w->grad) {
            /* dW [Cout, K] += dy [Cout, nb*P] col^T [nb*P, K] */
            for (int64_t i = 0; i < nb; i++) im2col(g, x->data + (n0 + i) * chw, col, ld, i * P);
            mm_gemm(false, true, Cout, K, ld, 1.0f, dyt, ld, col, ld, 1.0f, w->grad, K);
        }
        if (x->grad) {
            /* dcol [K, nb*P] = W^T [K, Cout] dy [Cout, nb*P], folded back by col2im */
            mm_gemm(true, false, K, ld, Cout, 1.0f, w->data, K, dyt, ld, 0.0f, col, ld);
            for (int64_t i = 0; i < nb; i++) col2im(g, col, ld, i * P, x->grad + (n0 + i) * chw);
        }
    }
    return MM_OK;
}

/* The geometry of x [N, ...] (Cin channels of H x W) against w [Cout, Cin, kh, kw]: output
 * size, and the images per im2col block, so that the block's columns (and, with
 * `out_block`, its GEMM output) stay under block_floats. */
static mm_status conv_geom_init(conv_geom *g, const char *op, mm_tensor *x, mm_tensor *w, int64_t Cin, int64_t H,
                                int64_t W, int stride, int pad_h, int pad_w, bool out_block, int64_t block_floats)
{
    *g = (conv_geom){.N = x->shape[0], .Cin = Cin, .H = H, .W = W, .Cout = w->shape[0], .kh = w->shape[2],
                     .kw = w->shape[3], .s = stride, .pad_h = pad_h, .pad_w = pad_w};
    int64_t hp = g->H + 2 * g->pad_h - g->kh, wp = g->W + 2 * g->pad_w - g->kw;
    if (g->kh < 1 || g->kw < 1 || hp < 0 || wp < 0) {
        char sx[64], sw[64];
        return MM_ERR(MM_ERR_ARG, "%s: kernel of weight %s does not fit x %s with padding %d", op,
                      mm_shape_str(w, sw, sizeof sw), mm_shape_str(x, sx, sizeof sx), pad_w);
    }
    g->Ho = hp / g->s + 1;
    g->Wo = wp / g->s + 1;
    int64_t per_image = (g->Cin * g->kh * g->kw + (out_block ? g->Cout : 0)) * g->Ho * g->Wo;
    g->block = block_floats / (per_image > 0 ? per_image : 1);
    if (g->block < 1) g->block = 1;
    if (g->block > g->N) g->block = g->N > 0 ? g->N : 1;
    return MM_OK;
}

/* The checks every convolution entry shares: x and w of rank `ndim` with x's channel axis
 * `cin_axis` matching w's, a bias of Cout values, stride >= 1, padding >= 0. `layout` is
 * the expected shapes, for the message. */
static mm_status conv_check_args(const char *op, const char *layout, mm_tensor *x, mm_tensor *w, mm_tensor *b,
                                 int ndim, int cin_axis, int stride, int padding)
{
    char sx[64], sw[64];
    if (x->ndim != ndim || w->ndim != ndim || x->shape[cin_axis] != w->shape[1])
        return MM_ERR(MM_ERR_ARG, "%s: x %s and weight %s must be %s", op, mm_shape_str(x, sx, sizeof sx),
                      mm_shape_str(w, sw, sizeof sw), layout);
    if (b && b->n != w->shape[0])
        return MM_ERR(MM_ERR_ARG, "%s: bias %s does not match weight %s", op, mm_shape_str(b, sx, sizeof sx),
                      mm_shape_str(w, sw, sizeof sw));
    if (stride < 1 || padding < 0)
        return MM_ERR(MM_ERR_ARG, "%s: stride %d must be >= 1 and padding %d >= 0", op, stride, padding);
    return MM_OK;
}

/* The convolution of x [N, Cin, H, W] with w [Cout, Cin, kh, kw], padding pad_h rows and
 * pad_w columns on each side; `op` names the caller in messages and on the tape. */
static mm_status conv_forward(mm_tape *t, const char *op, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride,
                              int pad_h, int pad_w, mm_tensor **out)
{
    conv_geom *g;
    MM_CALL(mm_tape_alloc(t, sizeof *g, (void **)&g));
    MM_CALL(conv_geom_init(g, op, x, w, x->shape[1], x->shape[2], x->shape[3], stride, pad_h, pad_w, true,
                           CONV_BLOCK_FLOATS));
    int64_t P = g->Ho * g->Wo, K = g->Cin * g->kh * g->kw, Cout = g->Cout;

    mm_tensor *in[3] = {x, w, b};
    mm_tensor *y;
    int64_t shape[4] = {g->N, Cout, g->Ho, g->Wo};
    MM_CALL(mm_tensor_new(t, 4, shape, mm_tape_wants_grad(t, 3, in), &y));
    float *col, *tmp; /* col [K, B*P], tmp [Cout, B*P] */
    MM_CALL(mm_tape_alloc(t, (size_t)(K * g->block * P) * sizeof(float), (void **)&col));
    MM_CALL(mm_tape_alloc(t, (size_t)(Cout * g->block * P) * sizeof(float), (void **)&tmp));
    int64_t chw = g->Cin * g->H * g->W;
    for (int64_t n0 = 0; n0 < g->N; n0 += g->block) {
        int64_t nb = g->N - n0 < g->block ? g->N - n0 : g->block, ld = nb * P;
        for (int64_t i = 0; i < nb; i++) im2col(g, x->data + (n0 + i) * chw, col, ld, i * P);
        /* tmp [Cout, nb*P] = W [Cout, K] col [K, nb*P] */
        mm_gemm(false, false, Cout, ld, K, 1.0f, w->data, K, col, ld, 0.0f, tmp, ld);
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < Cout; o++) {
                float *yo = y->data + ((n0 + i) * Cout + o) * P;
                const float *src = tmp + o * ld + i * P;
                float bo = b ? b->data[o] : 0.0f;
                for (int64_t j = 0; j < P; j++) yo[j] = src[j] + bo;
            }
    }
    MM_CALL(mm_tape_record(t, op, conv_backward, y, 3, in, g));
    *out = y;
    return MM_OK;
}

mm_status mm_conv2d(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride,
                    int padding, mm_tensor **out)
{
    MM_CALL(conv_check_args("conv2d", "[N, Cin, H, W] and [Cout, Cin, kh, kw]", x, w, b, 4, 1, stride, padding));
    MM_CALL(conv_forward(t, "conv2d", x, w, b, stride, padding, padding, out));
    return MM_OK;
}

/* [N, C, L] viewed as [N, C, 1, L] (the same data and gradient), and back. */
mm_status mm_conv1d(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride, int padding,
                    mm_tensor **out)
{
    MM_CALL(conv_check_args("conv1d", "[N, Cin, L] and [Cout, Cin, k]", x, w, b, 3, 1, stride, padding));
    mm_tensor *x4, *w4, *y4;
    MM_CALL(mm_reshape(t, x, 4, (int64_t[]){x->shape[0], x->shape[1], 1, x->shape[2]}, &x4));
    MM_CALL(mm_reshape(t, w, 4, (int64_t[]){w->shape[0], w->shape[1], 1, w->shape[2]}, &w4));
    MM_CALL(conv_forward(t, "conv1d", x4, w4, b, stride, 0, padding, &y4));
    MM_CALL(mm_reshape(t, y4, 3, (int64_t[]){y4->shape[0], y4->shape[1], y4->shape[3]}, out));
    return MM_OK;
}

/* ---- 2-D convolution, channels last ------------------------------------------ */

/* NHWC: an image is [H, W, Cin], a column row is one output position (oh, ow) with the
 * taps in the order (p, q, c), so an image block's columns are [nb*P, K] and the GEMM
 * writes y [nb*P, Cout] in place: no transposed copies of y or dy. The weight keeps its
 * [Cout, Cin, kh, kw] layout (checkpoints, the golden file); the op permutes it into the
 * taps' order (wp) once per step and its gradient back. */
typedef struct {
    conv_geom g;
    float *wp; /* [Cout, kh, kw, Cin] */
} nhwc_ctx;

/* col [P, K] of one image xi [H, W, Cin]; positions in the padding get 0. A tap row p
 * of an output position is, away from the left and right edges, one run of kw * Cin
 * floats of the input row: copied as one plain loop (this file is compiled without
 * GCC's conversion of such loops into calls to memcpy, which cost more than a run of
 * 9 floats, the first layer's). */
static void im2col_nhwc(const conv_geom *g, const float *restrict xi, float *restrict col)
{
    int64_t K = g->kh * g->kw * g->Cin, C = g->Cin, run = g->kw * C;
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            float *restrict row = col + (oh * g->Wo + ow) * K;
            int64_t iw0 = ow * g->s - g->pad_w;
            bool inside = iw0 >= 0 && iw0 + g->kw <= g->W;
            for (int64_t p = 0; p < g->kh; p++) {
                int64_t ih = oh * g->s - g->pad_h + p;
                float *restrict dst = row + p * run;
                if (ih < 0 || ih >= g->H) {
                    for (int64_t k = 0; k < run; k++) dst[k] = 0.0f;
                } else if (inside) {
                    const float *restrict src = xi + (ih * g->W + iw0) * C;
                    for (int64_t k = 0; k < run; k++) dst[k] = src[k];
                } else
                    for (int64_t q = 0; q < g->kw; q++) {
                        int64_t iw = iw0 + q;
                        if (iw < 0 || iw >= g->W) {
                            for (int64_t c = 0; c < C; c++) dst[q * C + c] = 0.0f;
                            continue;
                        }
                        const float *restrict src = xi + (ih * g->W + iw) * C;
                        for (int64_t c = 0; c < C; c++) dst[q * C + c] = src[c];
                    }
            }
        }
}

/* Adjoint of im2col_nhwc: dxi [H, W, Cin] += the columns' contributions. */
static void col2im_nhwc(const conv_geom *g, const float *restrict col, float *restrict dxi)
{
    int64_t K = g->kh * g->kw * g->Cin, C = g->Cin, run = g->kw * C;
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            const float *restrict row = col + (oh * g->Wo + ow) * K;
            int64_t iw0 = ow * g->s - g->pad_w;
            bool inside = iw0 >= 0 && iw0 + g->kw <= g->W;
            for (int64_t p = 0; p < g->kh; p++) {
                int64_t ih = oh * g->s - g->pad_h + p;
                if (ih < 0 || ih >= g->H) continue;
                const float *restrict src = row + p * run;
                if (inside) {
                    float *restrict dst = dxi + (ih * g->W + iw0) * C;
                    for (int64_t k = 0; k < run; k++) dst[k] += src[k];
                    continue;
                }
                for (int64_t q = 0; q < g->kw; q++) {
                    int64_t iw = iw0 + q;
                    if (iw < 0 || iw >= g->W) continue;
                    float *restrict dst = dxi + (ih * g->W + iw) * C;
                    for (int64_t c = 0; c < C; c++) dst[c] += src[q * C + c];
                }
            }
        }
}

/* [Cout, Cin, kh, kw] <-> the taps' order [Cout, kh, kw, Cin]: to_taps copies w into
 * taps, else adds taps into w (the weight gradient). */
static void weight_taps(const conv_geom *g, float *w, float *taps, bool to_taps)
{
    int64_t C = g->Cin, K = C * g->kh * g->kw;
    for (int64_t o = 0; o < g->Cout; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < g->kh; p++)
                for (int64_t q = 0; q < g->kw; q++) {
                    float *a = w + ((o * C + c) * g->kh + p) * g->kw + q, *t = taps + o * K + (p * g->kw + q) * C + c;
                    if (to_taps)
                        *t = *a;
                    else
                        *a += *t;
                }
}

/* ---- direct forward for few taps (the first layer: K = 3 x 3 x 3 = 27) ----------------
 * A GEMM with K = 27 spends its time packing and writing C, not multiplying (BLIS ran it at
 * a quarter of its rate), and the im2col matrix it reads is as large as y. Instead each
 * output position's 16 channels at a time are accumulated from the zero-padded image
 * directly: per tap one broadcast of the input value times a 16-wide weight vector. The
 * kernel is plain C on GCC vectors, compiled for AVX-512, AVX2 and baseline x86-64 and
 * picked at load time. Used when Cout is a multiple of 16 and K at most DIRECT_MAX_K. */
#define DIRECT_MAX_K 32
#define DIRECT_PIX 8 /* output positions per step: independent sums to cover the add latency */
typedef float vf16 __attribute__((vector_size(64), aligned(4)));

static bool conv_direct_ok(const conv_geom *g)
{
    return g->Cout % 16 == 0 && g->Cin * g->kh * g->kw <= DIRECT_MAX_K;
}

/* y [Ho, Wo, Cout] of one zero-padded image xp [H + 2 pad_h, W + 2 pad_w, Cin]; wt [K, Cout]
 * the weights tap-major, b [Cout] or NULL. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void conv_direct_image(const conv_geom *g, const float *restrict xp, const float *restrict wt,
                              const float *restrict b, float *restrict y)
{
    int64_t C = g->Cin, Cout = g->Cout, run = g->kw * C, Wp = g->W + 2 * g->pad_w;
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t j = 0; j < Cout; j += 16) {
            vf16 bias = {0};
            if (b) bias = *(const vf16 *)(b + j);
            int64_t ow = 0;
            for (; ow + DIRECT_PIX <= g->Wo; ow += DIRECT_PIX) {
                vf16 a[DIRECT_PIX];
                for (int i = 0; i < DIRECT_PIX; i++) a[i] = bias;
                for (int64_t p = 0; p < g->kh; p++) {
                    const float *x0 = xp + ((oh * g->s + p) * Wp + ow * g->s) * C;
                    const float *wp = wt + p * run * Cout + j;
                    for (int64_t k = 0; k < run; k++) {
                        vf16 w = *(const vf16 *)(wp + k * Cout);
#pragma GCC unroll 8
                        for (int i = 0; i < DIRECT_PIX; i++) a[i] += x0[i * g->s * C + k] * w;
                    }
                }
                float *yo = y + (oh * g->Wo + ow) * Cout + j;
#pragma GCC unroll 8
                for (int i = 0; i < DIRECT_PIX; i++) *(vf16 *)(yo + i * Cout) = a[i];
            }
            for (; ow < g->Wo; ow++) {
                vf16 a0 = bias;
                for (int64_t p = 0; p < g->kh; p++) {
                    const float *x0 = xp + ((oh * g->s + p) * Wp + ow * g->s) * C;
                    const float *wp = wt + p * run * Cout + j;
                    for (int64_t k = 0; k < run; k++) a0 += x0[k] * *(const vf16 *)(wp + k * Cout);
                }
                *(vf16 *)(y + (oh * g->Wo + ow) * Cout + j) = a0;
            }
        }
}

/* y [N, Ho, Wo, Cout] of x [N, H, W, Cin] by conv_direct_image; wp [Cout, K] in the taps'
 * order. */
static mm_status conv_direct_forward(mm_tape *t, const conv_geom *g, const float *x, const float *wp, const float *b,
                                     float *y)
{
    int64_t C = g->Cin, K = C * g->kh * g->kw, Hp = g->H + 2 * g->pad_h, Wp = g->W + 2 * g->pad_w;
    float *wt, *xp; /* wt [K, Cout], xp [Hp, Wp, Cin] */
    MM_CALL(mm_tape_alloc(t, (size_t)(K * g->Cout) * sizeof(float), (void **)&wt));
    MM_CALL(mm_tape_calloc(t, (size_t)(Hp * Wp * C) * sizeof(float), (void **)&xp));
    for (int64_t o = 0; o < g->Cout; o++)
        for (int64_t k = 0; k < K; k++) wt[k * g->Cout + o] = wp[o * K + k];
    for (int64_t n = 0; n < g->N; n++) {
        const float *xi = x + n * g->H * g->W * C;
        for (int64_t h = 0; h < g->H; h++) /* the border stays 0 */
            memcpy(xp + ((h + g->pad_h) * Wp + g->pad_w) * C, xi + h * g->W * C, (size_t)(g->W * C) * sizeof(float));
        conv_direct_image(g, xp, wt, b, y + n * g->Ho * g->Wo * g->Cout);
    }
    return MM_OK;
}

static mm_status conv_nhwc_backward(mm_node *nd)
{
    const nhwc_ctx *cx = nd->ctx;
    const conv_geom *g = &cx->g;
    mm_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    int64_t P = g->Ho * g->Wo, K = g->Cin * g->kh * g->kw, Cout = g->Cout, C = g->Cin;
    int64_t hwc = g->H * g->W * C;
    float *col = NULL, *dwp = NULL; /* col [nb*P, K] (then dcol), dwp [Cout, K] */
    double *db = NULL;
    if (w->grad || x->grad) MM_CALL(mm_tape_alloc(nd->tape, (size_t)(g->block * P * K) * sizeof(float), (void **)&col));
    if (w->grad) MM_CALL(mm_tape_calloc(nd->tape, (size_t)(Cout * K) * sizeof(float), (void **)&dwp));
    if (b && b->grad) MM_CALL(mm_tape_calloc(nd->tape, (size_t)Cout * sizeof(double), (void **)&db));
    for (int64_t n0 = 0; n0 < g->N; n0 += g->block) {
        int64_t nb = g->N - n0 < g->block ? g->N - n0 : g->block, M = nb * P;
        const float *dy = y->grad + n0 * P * Cout; /* [M, Cout] */
        if (db)
            for (int64_t r = 0; r < M; r++) {
                const float *restrict dr = dy + r * Cout;
                double *restrict acc = db;
                for (int64_t o = 0; o < Cout; o++) acc[o] += dr[o];
            }
        if (w->grad) {
            /* dWp [Cout, K] += dy^T [Cout, M] col [M, K] */
            for (int64_t i = 0; i < nb; i++) im2col_nhwc(g, x->data + (n0 + i) * hwc, col + i * P * K);
            mm_gemm(true, false, Cout, K, M, 1.0f, dy, Cout, col, K, 1.0f, dwp, K);
        }
        if (x->grad) {
            /* dcol [M, K] = dy [M, Cout] Wp [Cout, K], folded back by col2im */
            mm_gemm(false, false, M, K, Cout, 1.0f, dy, Cout, cx->wp, K, 0.0f, col, K);
            for (int64_t i = 0; i < nb; i++) col2im_nhwc(g, col + i * P * K, x->grad + (n0 + i) * hwc);
        }
    }
    if (db)
        for (int64_t o = 0; o < Cout; o++) b->grad[o] += (float)db[o];
    if (dwp) weight_taps(g, w->grad, dwp, false);
    return MM_OK;
}

mm_status mm_conv2d_nhwc(mm_tape *t, mm_tensor *x, mm_tensor *w, mm_tensor *b, int stride, int padding,
                         mm_tensor **out)
{
    MM_CALL(conv_check_args("conv2d_nhwc", "[N, H, W, Cin] and [Cout, Cin, kh, kw]", x, w, b, 4, 3, stride, padding));
    nhwc_ctx *cx;
    MM_CALL(mm_tape_alloc(t, sizeof *cx, (void **)&cx));
    conv_geom *g = &cx->g;
    MM_CALL(conv_geom_init(g, "conv2d_nhwc", x, w, x->shape[3], x->shape[1], x->shape[2], stride, padding, padding,
                           false, NHWC_BLOCK_FLOATS));
    int64_t P = g->Ho * g->Wo, K = g->Cin * g->kh * g->kw, Cout = g->Cout;

    MM_CALL(mm_tape_alloc(t, (size_t)(Cout * K) * sizeof(float), (void **)&cx->wp));
    weight_taps(g, w->data, cx->wp, true);

    mm_tensor *in[3] = {x, w, b};
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, 4, (int64_t[]){g->N, g->Ho, g->Wo, Cout}, mm_tape_wants_grad(t, 3, in), &y));
    if (conv_direct_ok(g)) {
        MM_CALL(conv_direct_forward(t, g, x->data, cx->wp, b ? b->data : NULL, y->data));
        MM_CALL(mm_tape_record(t, "conv2d_nhwc", conv_nhwc_backward, y, 3, in, cx));
        *out = y;
        return MM_OK;
    }
    float *col, *wt; /* col [nb*P, K], wt [K, Cout] = Wp^T (the GEMM copies it as it lies) */
    MM_CALL(mm_tape_alloc(t, (size_t)(g->block * P * K) * sizeof(float), (void **)&col));
    MM_CALL(mm_tape_alloc(t, (size_t)(K * Cout) * sizeof(float), (void **)&wt));
    for (int64_t o = 0; o < Cout; o++)
        for (int64_t k = 0; k < K; k++) wt[k * Cout + o] = cx->wp[o * K + k];
    int64_t hwc = g->H * g->W * g->Cin;
    for (int64_t n0 = 0; n0 < g->N; n0 += g->block) {
        int64_t nb = g->N - n0 < g->block ? g->N - n0 : g->block, M = nb * P;
        float *yb = y->data + n0 * P * Cout;
        for (int64_t i = 0; i < nb; i++) im2col_nhwc(g, x->data + (n0 + i) * hwc, col + i * P * K);
        if (b)
            for (int64_t r = 0; r < M; r++) memcpy(yb + r * Cout, b->data, (size_t)Cout * sizeof(float));
        /* y [M, Cout] (+)= col [M, K] Wp^T [K, Cout] */
        mm_gemm(false, false, M, Cout, K, 1.0f, col, K, wt, Cout, b ? 1.0f : 0.0f, yb, Cout);
    }
    MM_CALL(mm_tape_record(t, "conv2d_nhwc", conv_nhwc_backward, y, 3, in, cx));
    *out = y;
    return MM_OK;
}

/* ---- global average pooling ------------------------------------------------ */

static mm_status gap_backward(mm_node *nd)
{
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t NC = y->n, S = NC ? x->n / NC : 0;
    float inv = S ? 1.0f / (float)S : 0.0f;
    for (int64_t i = 0; i < NC; i++) {
        float g = y->grad[i] * inv;
        float *gx = x->grad + i * S;
        for (int64_t k = 0; k < S; k++) gx[k] += g;
    }
    return MM_OK;
}

mm_status mm_global_avg_pool(mm_tape *t, mm_tensor *x, mm_tensor **out)
{
    if (x->ndim < 3) {
        char sx[64];
        return MM_ERR(MM_ERR_ARG, "global_avg_pool: x %s must be [N, C, H, W] or [N, C, L]",
                      mm_shape_str(x, sx, sizeof sx));
    }
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    if (S == 0) return MM_ERR(MM_ERR_ARG, "global_avg_pool: no spatial positions to average");
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, N, C, mm_tape_wants_grad(t, 1, &x), &y));
    for (int64_t i = 0; i < N * C; i++) {
        const float *xs = x->data + i * S;
        double s = 0;
        for (int64_t k = 0; k < S; k++) s += xs[k];
        y->data[i] = (float)(s / (double)S);
    }
    MM_CALL(mm_tape_record(t, "global_avg_pool", gap_backward, y, 1, &x, NULL));
    *out = y;
    return MM_OK;
}

static mm_status gap_nhwc_backward(mm_node *nd)
{
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t N = y->shape[0], C = y->shape[1], S = N * C > 0 ? x->n / (N * C) : 0;
    float inv = S ? 1.0f / (float)S : 0.0f;
    for (int64_t i = 0; i < N; i++) {
        const float *restrict gy = y->grad + i * C;
        for (int64_t k = 0; k < S; k++) {
            float *restrict gx = x->grad + (i * S + k) * C;
            for (int64_t c = 0; c < C; c++) gx[c] += gy[c] * inv;
        }
    }
    return MM_OK;
}

mm_status mm_global_avg_pool_nhwc(mm_tape *t, mm_tensor *x, mm_tensor **out)
{
    if (x->ndim < 3) {
        char sx[64];
        return MM_ERR(MM_ERR_ARG, "global_avg_pool_nhwc: x %s must be [N, H, W, C] or [N, L, C]",
                      mm_shape_str(x, sx, sizeof sx));
    }
    int64_t N = x->shape[0], C = x->shape[x->ndim - 1], S = 1;
    for (int d = 1; d < x->ndim - 1; d++) S *= x->shape[d];
    if (S == 0) return MM_ERR(MM_ERR_ARG, "global_avg_pool_nhwc: no spatial positions to average");
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, N, C, mm_tape_wants_grad(t, 1, &x), &y));
    double *acc;
    MM_CALL(mm_tape_alloc(t, (size_t)C * sizeof(double), (void **)&acc));
    for (int64_t i = 0; i < N; i++) {
        memset(acc, 0, (size_t)C * sizeof(double));
        for (int64_t k = 0; k < S; k++) {
            const float *restrict xs = x->data + (i * S + k) * C;
            double *restrict a = acc;
            for (int64_t c = 0; c < C; c++) a[c] += xs[c];
        }
        for (int64_t c = 0; c < C; c++) y->data[i * C + c] = (float)(acc[c] / (double)S);
    }
    MM_CALL(mm_tape_record(t, "global_avg_pool_nhwc", gap_nhwc_backward, y, 1, &x, NULL));
    *out = y;
    return MM_OK;
}
