/* embed.c: multi-feature embedding lookup into one offset table (nn.h). */
#include "mmsa/nn.h"

#include <limits.h>
#include <string.h>

typedef struct {
    int64_t n, F, D;
    int32_t *rows;   /* [n, F] table rows off[f] + idx[i, f], checked */
} emb_ctx;

static mm_status emb_backward(mm_node *nd)
{
    emb_ctx *c = nd->ctx;
    mm_tensor *table = nd->in[0], *y = nd->out;
    int64_t D = c->D;
    /* Sequential scatter-add: repeated rows accumulate, deterministically. */
    for (int64_t i = 0; i < c->n; i++) {
        const float *g = y->grad + i * D;
        for (int64_t f = 0; f < c->F; f++) {
            float *tg = table->grad + (int64_t)c->rows[i * c->F + f] * D;
            for (int64_t d = 0; d < D; d++) tg[d] += g[d];
        }
    }
    return MM_OK;
}

/* Validates table and offsets, allocates the context with room for n * F rows. */
static mm_status emb_setup(mm_tape *t, mm_tensor *table, int64_t n, int nfeat, const int64_t *off,
                           emb_ctx **out)
{
    char st[64];
    if (table->ndim != 2)
        return MM_ERR(MM_ERR_ARG, "embedding: table %s must be [V, D]", mm_shape_str(table, st, sizeof st));
    if (n < 0 || nfeat < 1) return MM_ERR(MM_ERR_ARG, "embedding: n = %lld, nfeat = %d", (long long)n, nfeat);
    int64_t V = table->shape[0];
    if (V > INT32_MAX) return MM_ERR(MM_ERR_RANGE, "embedding: table of %lld rows", (long long)V);
    for (int f = 0; f < nfeat; f++) {
        int64_t next = f + 1 < nfeat ? off[f + 1] : V;
        if (off[f] < 0 || off[f] > next)
            return MM_ERR(MM_ERR_ARG,
                          "embedding: offsets of feature %d (%lld..%lld) are not non-decreasing within "
                          "the table %s",
                          f, (long long)off[f], (long long)next, mm_shape_str(table, st, sizeof st));
    }
    emb_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->n = n;
    c->F = nfeat;
    c->D = table->shape[1];
    MM_CALL(mm_tape_alloc(t, (size_t)(n * nfeat) * sizeof(int32_t), (void **)&c->rows));
    *out = c;
    return MM_OK;
}

/* Checks c->rows[i, f] (holding the raw index) and turns it into a table row. */
static mm_status emb_map(emb_ctx *c, int64_t V, const int64_t *off)
{
    for (int64_t i = 0; i < c->n; i++)
        for (int64_t f = 0; f < c->F; f++) {
            int32_t v = c->rows[i * c->F + f];
            int64_t vocab = (f + 1 < c->F ? off[f + 1] : V) - off[f];
            if (v < 0 || v >= vocab) {
                mm_status s = MM_ERR(MM_ERR_ARG,
                                     "embedding: row %lld feature %lld has index %d outside its "
                                     "vocabulary 0..%lld",
                                     (long long)i, (long long)f, (int)v, (long long)(vocab - 1));
                mm_error_hint("the featuriser and the model disagree on vocabulary sizes, or the "
                              "input is corrupt");
                return s;
            }
            c->rows[i * c->F + f] = (int32_t)(off[f] + v);
        }
    return MM_OK;
}

static mm_status emb_forward(mm_tape *t, mm_tensor *table, emb_ctx *c, mm_tensor **out)
{
    int64_t D = c->D;
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, c->n, D, mm_tape_wants_grad(t, 1, &table), &y));
    for (int64_t i = 0; i < c->n; i++) {
        float *yr = y->data + i * D;
        memset(yr, 0, (size_t)D * sizeof(float));
        for (int64_t f = 0; f < c->F; f++) {
            const float *tr = table->data + (int64_t)c->rows[i * c->F + f] * D;
            for (int64_t d = 0; d < D; d++) yr[d] += tr[d];
        }
    }
    MM_CALL(mm_tape_record(t, "embedding", emb_backward, y, 1, &table, c));
    *out = y;
    return MM_OK;
}

mm_status mm_embedding_multi(mm_tape *t, mm_tensor *table, const int32_t *idx, int64_t n,
                             int nfeat, const int64_t *off, mm_tensor **out)
{
    emb_ctx *c;
    MM_CALL(emb_setup(t, table, n, nfeat, off, &c));
    memcpy(c->rows, idx, (size_t)(n * nfeat) * sizeof(int32_t));
    MM_CALL(emb_map(c, table->shape[0], off));
    MM_CALL(emb_forward(t, table, c, out));
    return MM_OK;
}

mm_status mm_embedding_multi_u8(mm_tape *t, mm_tensor *table, const uint8_t *idx, int64_t n,
                                int nfeat, const int64_t *off, mm_tensor **out)
{
    emb_ctx *c;
    MM_CALL(emb_setup(t, table, n, nfeat, off, &c));
    for (int64_t k = 0; k < n * nfeat; k++) c->rows[k] = idx[k];
    MM_CALL(emb_map(c, table->shape[0], off));
    MM_CALL(emb_forward(t, table, c, out));
    return MM_OK;
}

mm_status mm_embedding_offsets(const int32_t *vocab, int nfeat, int64_t *off, int64_t *total)
{
    int64_t s = 0;
    for (int f = 0; f < nfeat; f++) {
        if (vocab[f] < 1) return MM_ERR(MM_ERR_ARG, "embedding: feature %d has vocabulary size %d", f, vocab[f]);
        off[f] = s;
        s += vocab[f];
    }
    *total = s;
    return MM_OK;
}
