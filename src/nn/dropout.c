/* dropout.c: inverted dropout with a counter-based mask (nn.h). */
#include "mmsa/nn.h"

#include "mmsa/rng.h"

typedef struct {
    uint8_t *keep;  /* [n] 1 = kept */
    float scale;    /* 1 / (1 - p), 0 when p == 1 */
} dropout_ctx;

static mm_status dropout_backward(mm_node *nd)
{
    dropout_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    /* local pointers, and every element computed then selected, so the loop vectorises;
     * a dropped element's gradient is left as it was */
    float *restrict gx = x->grad;
    const float *restrict gy = y->grad;
    const uint8_t *restrict keep = c->keep;
    const float scale = c->scale;
    for (int64_t i = 0, n = y->n; i < n; i++) {
        float sum = gx[i] + scale * gy[i], old = gx[i];
        gx[i] = keep[i] ? sum : old;
    }
    return MM_OK;
}

mm_status mm_dropout(mm_tape *t, mm_tensor *x, float p, uint64_t seed, uint64_t stream,
                     int64_t row_offset, mm_tensor **out)
{
    if (!(p >= 0.0f && p <= 1.0f)) return MM_ERR(MM_ERR_ARG, "dropout: p = %g outside [0, 1]", (double)p);
    if (row_offset < 0) return MM_ERR(MM_ERR_ARG, "dropout: negative row_offset %lld", (long long)row_offset);
    if (p == 0.0f || !t->training) {
        *out = x;
        return MM_OK;
    }
    int64_t rows = x->shape[0], cols = mm_cols(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    dropout_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)x->n, (void **)&c->keep));
    c->scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    /* Draws are those of mm_rng_uniform_at(seed, stream, g): lane g % 4 of Philox
     * block g / 4, g = g0 + i for element i (rows are consecutive). The blocks of a
     * chunk of elements are computed together (mm_philox4x32_blocks), each once. */
    enum { CHUNK_BLOCKS = 256 };
    uint32_t draw[4 * CHUNK_BLOCKS];
    const uint64_t g0 = (uint64_t)row_offset * (uint64_t)cols, n = (uint64_t)rows * (uint64_t)cols;
    const float *restrict xs = x->data;
    float *restrict ys = y->data;
    uint8_t *restrict keep = c->keep;
    const float scale = c->scale;
    for (uint64_t i0 = 0; i0 < n;) {
        uint64_t blk0 = (g0 + i0) / 4, i1 = 4 * (blk0 + CHUNK_BLOCKS) - g0; /* elements of these blocks */
        if (i1 > n) i1 = n;
        mm_philox4x32_blocks(seed, stream, blk0, (int64_t)((g0 + i1 - 1) / 4 - blk0 + 1), draw);
        const uint32_t *d = draw + (g0 + i0 - 4 * blk0); /* draw of element i0 */
        for (uint64_t i = i0; i < i1; i++) {
            float u = (float)(int32_t)(d[i - i0] >> 8) * (1.0f / 16777216.0f), v = xs[i] * scale;
            keep[i] = u >= p;
            ys[i] = u >= p ? v : 0.0f;
        }
        i0 = i1;
    }
    MM_CALL(mm_tape_record(t, "dropout", dropout_backward, y, 1, &x, c));
    *out = y;
    return MM_OK;
}
