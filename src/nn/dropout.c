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
    for (int64_t i = 0; i < y->n; i++)
        if (c->keep[i]) x->grad[i] += c->scale * y->grad[i];
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
     * block g / 4. Consecutive indices share a block, so compute each block once. */
    uint32_t blk[4];
    uint64_t cur = UINT64_MAX;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            uint64_t g = (uint64_t)(row_offset + r) * (uint64_t)cols + (uint64_t)j;
            if (g / 4 != cur) {
                cur = g / 4;
                mm_philox4x32(seed, stream, cur, blk);
            }
            float u = (float)(blk[g % 4] >> 8) * (1.0f / 16777216.0f);
            int64_t i = r * cols + j;
            c->keep[i] = u >= p;
            y->data[i] = c->keep[i] ? x->data[i] * c->scale : 0.0f;
        }
    MM_CALL(mm_tape_record(t, "dropout", dropout_backward, y, 1, &x, c));
    *out = y;
    return MM_OK;
}
