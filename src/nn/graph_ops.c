/* graph_ops.c: edge indexing and fused GIN aggregation (graph_ops.h). Built with the
 * loop vectoriser on (Makefile VEC_CFLAGS): the row loops below are plain C so that
 * any x86-64 gets them in SIMD; no loop reduces across a row, so vectorising changes
 * no result. */
#include "mmsa/graph_ops.h"

#include <string.h>

#define MAX_KIND_CODES (1 << 20)

/* Stable counting sort of edge ids by key[e] in [0, n): ptr [n + 1], idx [n_edges]. */
static mm_status group_edges(mm_tape *t, int64_t n, int64_t n_edges, const int64_t *key, int64_t **ptr_out,
                             int64_t **idx_out)
{
    int64_t *ptr, *idx, *fill;
    MM_CALL(mm_tape_calloc(t, (size_t)(n + 1) * sizeof(int64_t), (void **)&ptr));
    MM_CALL(mm_tape_alloc(t, (size_t)(n_edges > 0 ? n_edges : 1) * sizeof(int64_t), (void **)&idx));
    MM_CALL(mm_tape_alloc(t, (size_t)(n > 0 ? n : 1) * sizeof(int64_t), (void **)&fill));
    for (int64_t e = 0; e < n_edges; e++) ptr[key[e] + 1]++;
    for (int64_t a = 0; a < n; a++) ptr[a + 1] += ptr[a];
    if (n > 0) memcpy(fill, ptr, (size_t)n * sizeof(int64_t));
    for (int64_t e = 0; e < n_edges; e++) idx[fill[key[e]]++] = e;
    *ptr_out = ptr;
    *idx_out = idx;
    return MM_OK;
}

mm_status mm_graph_build(mm_tape *t, int64_t n_nodes, int64_t n_edges, const int64_t *src,
                         const int64_t *dst, int nfeat, const int32_t *feat,
                         const int32_t *vocab, mm_graph *g)
{
    memset(g, 0, sizeof *g);
    if (n_nodes < 0 || n_edges < 0)
        return MM_ERR(MM_ERR_ARG, "graph: %lld nodes, %lld edges", (long long)n_nodes, (long long)n_edges);
    if (nfeat < 1 || nfeat > MM_GRAPH_MAX_FEAT)
        return MM_ERR(MM_ERR_ARG, "graph: %d edge features (1 .. %d)", nfeat, MM_GRAPH_MAX_FEAT);
    if (n_edges > 0 && (!src || !dst || !feat)) return MM_ERR(MM_ERR_ARG, "graph: NULL edge arrays");
    int64_t codes = 1;
    for (int f = 0; f < nfeat; f++) {
        if (vocab[f] < 1) return MM_ERR(MM_ERR_ARG, "graph: feature %d has vocabulary size %d", f, vocab[f]);
        codes *= vocab[f];
        if (codes > MAX_KIND_CODES)
            return MM_ERR(MM_ERR_ARG, "graph: the edge vocabularies span more than %d tuples", MAX_KIND_CODES);
        g->vocab[f] = vocab[f];
    }
    for (int64_t e = 0; e < n_edges; e++) {
        if (src[e] < 0 || src[e] >= n_nodes || dst[e] < 0 || dst[e] >= n_nodes)
            return MM_ERR(MM_ERR_ARG, "graph: edge %lld runs from %lld to %lld, outside the %lld nodes",
                          (long long)e, (long long)src[e], (long long)dst[e], (long long)n_nodes);
        for (int f = 0; f < nfeat; f++) {
            int32_t v = feat[e * nfeat + f];
            if (v < 0 || v >= vocab[f]) {
                mm_status s = MM_ERR(MM_ERR_ARG, "graph: edge %lld feature %d has index %d outside its vocabulary 0..%d",
                                     (long long)e, f, (int)v, vocab[f] - 1);
                mm_error_hint("the featuriser and the model disagree on vocabulary sizes, or the input is corrupt");
                return s;
            }
        }
    }
    g->n_nodes = n_nodes;
    g->n_edges = n_edges;
    g->src = src;
    g->dst = dst;
    g->nfeat = nfeat;
    MM_CALL(group_edges(t, n_nodes, n_edges, dst, &g->in_ptr, &g->in_edge));
    MM_CALL(group_edges(t, n_nodes, n_edges, src, &g->out_ptr, &g->out_edge));

    /* Kinds: a dense table from the mixed-radix code of a tuple to its kind. */
    int32_t *lut;
    int64_t max_kinds = n_edges < codes ? n_edges : codes;
    MM_CALL(mm_tape_alloc(t, (size_t)codes * sizeof(int32_t), (void **)&lut));
    MM_CALL(mm_tape_alloc(t, (size_t)(n_edges > 0 ? n_edges : 1) * sizeof(int32_t), (void **)&g->kind));
    MM_CALL(mm_tape_alloc(t, (size_t)(max_kinds > 0 ? max_kinds : 1) * (size_t)nfeat * sizeof(int32_t),
                          (void **)&g->kind_feat));
    for (int64_t c = 0; c < codes; c++) lut[c] = -1;
    for (int64_t e = 0; e < n_edges; e++) {
        const int32_t *fe = feat + e * nfeat;
        int64_t code = 0;
        for (int f = 0; f < nfeat; f++) code = code * vocab[f] + fe[f];
        if (lut[code] < 0) {
            lut[code] = (int32_t)g->n_kinds;
            memcpy(g->kind_feat + g->n_kinds * nfeat, fe, (size_t)nfeat * sizeof(int32_t));
            g->n_kinds++;
        }
        g->kind[e] = lut[code];
    }
    return MM_OK;
}

/* ---- GIN aggregation ------------------------------------------------------------- */

typedef struct {
    mm_graph g;                      /* a copy: the arrays it points to outlive the step */
    int64_t off[MM_GRAPH_MAX_FEAT];  /* the table offsets of the features */
} gin_agg_ctx;

/* Table row of feature f of kind k. */
static inline int64_t kind_row(const gin_agg_ctx *c, int64_t k, int f)
{
    return c->off[f] + c->g.kind_feat[k * c->g.nfeat + f];
}

static mm_status gin_agg_backward(mm_node *nd)
{
    const gin_agg_ctx *c = nd->ctx;
    const mm_graph *g = &c->g;
    mm_tensor *h = nd->in[0], *table = nd->in[1], *y = nd->out;
    const int64_t H = h->shape[1];
    const float *dy = y->grad;
    if (h->grad) {
        /* dh[s] += dy[dst(e)] over the edges out of s, increasing e (as gather's backward) */
        for (int64_t s = 0; s < g->n_nodes; s++) {
            float *restrict gx = h->grad + s * H;
            for (int64_t p = g->out_ptr[s]; p < g->out_ptr[s + 1]; p++) {
                const float *restrict gy = dy + g->dst[g->out_edge[p]] * H;
                for (int64_t j = 0; j < H; j++) gx[j] += gy[j];
            }
        }
    }
    if (table->grad) {
        /* d emb(kind) = sum of dy[dst(e)] over the edges of that kind, then into its rows */
        float *dk;
        MM_CALL(mm_tape_calloc(nd->tape, (size_t)(g->n_kinds * H) * sizeof(float), (void **)&dk));
        for (int64_t e = 0; e < g->n_edges; e++) {
            float *restrict d = dk + (int64_t)g->kind[e] * H;
            const float *restrict gy = dy + g->dst[e] * H;
            for (int64_t j = 0; j < H; j++) d[j] += gy[j];
        }
        for (int64_t k = 0; k < g->n_kinds; k++)
            for (int f = 0; f < g->nfeat; f++) {
                float *restrict tg = table->grad + kind_row(c, k, f) * H;
                const float *restrict d = dk + k * H;
                for (int64_t j = 0; j < H; j++) tg[j] += d[j];
            }
    }
    return MM_OK;
}

mm_status mm_gin_aggregate(mm_tape *t, mm_tensor *h, mm_tensor *table, const int64_t *off,
                           const mm_graph *g, mm_tensor **out)
{
    char sh[64], st[64];
    if (h->ndim != 2 || table->ndim != 2 || h->shape[1] != table->shape[1] || h->shape[0] != g->n_nodes)
        return MM_ERR(MM_ERR_ARG, "gin_aggregate: h %s and table %s for a graph of %lld nodes (need [nodes, H], [V, H])",
                      mm_shape_str(h, sh, sizeof sh), mm_shape_str(table, st, sizeof st), (long long)g->n_nodes);
    const int64_t H = h->shape[1], V = table->shape[0];
    gin_agg_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->g = *g;
    for (int f = 0; f < g->nfeat; f++) {
        int64_t next = f + 1 < g->nfeat ? off[f + 1] : V;
        if (off[f] < 0 || next - off[f] < g->vocab[f] || next > V)
            return MM_ERR(MM_ERR_ARG,
                          "gin_aggregate: feature %d owns table rows %lld..%lld of %s, its vocabulary needs %d",
                          f, (long long)off[f], (long long)next - 1, mm_shape_str(table, st, sizeof st), g->vocab[f]);
        c->off[f] = off[f];
    }
    /* emb [n_kinds, H]: each kind's bond embedding, summed as mm_embedding_multi does */
    float *emb;
    MM_CALL(mm_tape_calloc(t, (size_t)(g->n_kinds * H) * sizeof(float), (void **)&emb));
    for (int64_t k = 0; k < g->n_kinds; k++)
        for (int f = 0; f < g->nfeat; f++) {
            float *restrict em = emb + k * H;
            const float *restrict tr = table->data + kind_row(c, k, f) * H;
            for (int64_t j = 0; j < H; j++) em[j] += tr[j];
        }
    mm_tensor *ins[2] = {h, table};
    mm_tensor *y;
    MM_CALL(mm_tensor_new2(t, g->n_nodes, H, mm_tape_wants_grad(t, 2, ins), &y));
    for (int64_t a = 0; a < g->n_nodes; a++) {
        float *restrict ya = y->data + a * H;
        memset(ya, 0, (size_t)H * sizeof(float));
        for (int64_t p = g->in_ptr[a]; p < g->in_ptr[a + 1]; p++) {
            int64_t e = g->in_edge[p];
            const float *restrict hs = h->data + g->src[e] * H;
            const float *restrict em = emb + (int64_t)g->kind[e] * H;
            for (int64_t j = 0; j < H; j++) ya[j] += hs[j] + em[j];
        }
    }
    MM_CALL(mm_tape_record(t, "gin_aggregate", gin_agg_backward, y, 2, ins, c));
    *out = y;
    return MM_OK;
}
