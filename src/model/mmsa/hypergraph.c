/* hypergraph.c: kNN by cosine, incidence and degrees, and G X with its backward. */
#include "mmsa/hypergraph.h"

#include <math.h>
#include <string.h>

#include "mmsa/blas.h"
#include "mmsa/dist.h"

/* a ranks before b: larger value, then smaller index */
static inline int before(float va, int64_t ia, float vb, int64_t ib) { return va > vb || (va == vb && ia < ib); }

void mm_topk_row(const float *row, int64_t n, int64_t self, int k, int64_t *idx)
{
    /* Insertion into a sorted list of k: O(n k), fine for k = 8. */
    int have = 0;
    for (int64_t j = 0; j < n; j++) {
        if (j == self) continue;
        float v = row[j];
        if (have == k && !before(v, j, row[idx[k - 1]], idx[k - 1])) continue;
        int pos = have < k ? have++ : k - 1;
        while (pos > 0 && before(v, j, row[idx[pos - 1]], idx[pos - 1])) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = j;
    }
}

mm_status mm_knn_cosine(mm_tape *t, const float *u, int64_t n, int64_t d, int k, int64_t *knn, float *cos)
{
    if (k < 1 || k >= n) return MM_ERR(MM_ERR_ARG, "kNN: k = %d needs 1 <= k < n = %lld", k, (long long)n);
    float *un, *c = cos;
    MM_CALL(mm_tape_alloc(t, (size_t)(n * d) * sizeof(float), (void **)&un));
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += (double)u[i * d + j] * u[i * d + j];
        float nrm = (float)sqrt(s);
        float inv = 1.0f / (nrm > 1e-12f ? nrm : 1e-12f);
        for (int64_t j = 0; j < d; j++) un[i * d + j] = u[i * d + j] * inv;
    }
    if (!c) MM_CALL(mm_tape_alloc(t, (size_t)(n * n) * sizeof(float), (void **)&c));
    mm_sgemm(false, true, n, n, d, 1.0f, un, d, un, d, 0.0f, c, n);
    for (int64_t i = 0; i < n; i++) mm_topk_row(c + i * n, n, i, k, knn + i * k);
    return MM_OK;
}

mm_status mm_hypergraph_from_knn(mm_tape *t, const int64_t *knn, int64_t n, int k, mm_hypergraph **out)
{
    mm_hypergraph *hg;
    MM_CALL(mm_tape_calloc(t, sizeof *hg, (void **)&hg));
    hg->n = n;
    hg->k = k;
    int64_t e = k + 1;
    MM_CALL(mm_tape_alloc(t, (size_t)(n * k + 1) * sizeof(int64_t), (void **)&hg->knn));
    MM_CALL(mm_tape_alloc(t, (size_t)(n * e) * sizeof(int64_t), (void **)&hg->members));
    MM_CALL(mm_tape_calloc(t, (size_t)n * sizeof(int64_t), (void **)&hg->dv));
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(float), (void **)&hg->dv_isqrt));
    MM_CALL(mm_tape_calloc(t, (size_t)(n + 1) * sizeof(int64_t), (void **)&hg->v_ptr));
    MM_CALL(mm_tape_alloc(t, (size_t)(n * e) * sizeof(int64_t), (void **)&hg->v_edges));
    memcpy(hg->knn, knn, (size_t)(n * k) * sizeof(int64_t));
    for (int64_t c = 0; c < n; c++) {
        hg->members[c * e] = c;
        for (int j = 0; j < k; j++) {
            int64_t v = knn[c * k + j];
            if (v < 0 || v >= n || v == c)
                return MM_ERR(MM_ERR_ARG, "hypergraph: neighbour %lld of vertex %lld is invalid", (long long)v, (long long)c);
            hg->members[c * e + 1 + j] = v;
        }
    }
    for (int64_t i = 0; i < n * e; i++) hg->dv[hg->members[i]]++;
    for (int64_t v = 0; v < n; v++) {
        hg->v_ptr[v + 1] = hg->v_ptr[v] + hg->dv[v];
        hg->dv_isqrt[v] = (float)(1.0 / sqrt((double)hg->dv[v]));
    }
    /* fill the vertex -> hyperedge lists in increasing hyperedge order */
    int64_t *fill;
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof(int64_t), (void **)&fill));
    memcpy(fill, hg->v_ptr, (size_t)n * sizeof(int64_t));
    for (int64_t c = 0; c < n; c++)
        for (int64_t j = 0; j < e; j++) {
            int64_t v = hg->members[c * e + j];
            hg->v_edges[fill[v]++] = c;
        }
    *out = hg;
    return MM_OK;
}

mm_status mm_hypergraph_build(mm_tape *t, const float *u, int64_t n, int64_t d, int k, mm_hypergraph **out)
{
    if (n < 2) return MM_ERR(MM_ERR_ARG, "hypergraph needs at least 2 molecules, got %lld", (long long)n);
    if (k > n - 1) k = (int)(n - 1);
    int64_t *knn;
    MM_CALL(mm_tape_alloc(t, (size_t)(n * k) * sizeof(int64_t), (void **)&knn));
    MM_CALL(mm_knn_cosine(t, u, n, d, k, knn, NULL));
    MM_CALL(mm_hypergraph_from_knn(t, knn, n, k, out));
    return MM_OK;
}

/* out += G x, x and out [n, c]; z is scratch [n, c]. */
static void apply_g(const mm_hypergraph *hg, const float *x, int64_t c, float *z, float *out)
{
    int64_t e = hg->k + 1;
    float inv_de = 1.0f / (float)e;
    for (int64_t h = 0; h < hg->n; h++) {
        float *zh = z + h * c;
        memset(zh, 0, (size_t)c * sizeof(float));
        for (int64_t j = 0; j < e; j++) {
            int64_t v = hg->members[h * e + j];
            float s = hg->dv_isqrt[v];
            for (int64_t q = 0; q < c; q++) zh[q] += s * x[v * c + q];
        }
        for (int64_t q = 0; q < c; q++) zh[q] *= inv_de;
    }
    for (int64_t v = 0; v < hg->n; v++) {
        float *ov = out + v * c, s = hg->dv_isqrt[v];
        for (int64_t p = hg->v_ptr[v]; p < hg->v_ptr[v + 1]; p++) {
            const float *zh = z + hg->v_edges[p] * c;
            for (int64_t q = 0; q < c; q++) ov[q] += s * zh[q];
        }
    }
}

static mm_status propagate_backward(mm_node *nd)
{
    const mm_hypergraph *hg = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    int64_t c = mm_cols(x);
    float *z;
    MM_CALL(mm_tape_alloc(nd->tape, (size_t)(hg->n * c) * sizeof(float), (void **)&z));
    apply_g(hg, y->grad, c, z, x->grad); /* G is symmetric: dX = G dY */
    return MM_OK;
}

mm_status mm_hypergraph_propagate(mm_tape *t, const mm_hypergraph *hg, mm_tensor *x, mm_tensor **out)
{
    if (x->shape[0] != hg->n)
        return MM_ERR(MM_ERR_ARG, "hypergraph propagate: %lld rows for %lld vertices", (long long)x->shape[0],
                      (long long)hg->n);
    int64_t c = mm_cols(x);
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, x->ndim, x->shape, mm_tape_wants_grad(t, 1, &x), &y));
    float *z;
    MM_CALL(mm_tape_alloc(t, (size_t)(hg->n * c) * sizeof(float), (void **)&z));
    apply_g(hg, x->data, c, z, y->data);
    MM_CALL(mm_tape_record(t, "hypergraph_propagate", propagate_backward, y, 1, &x, (void *)hg));
    *out = y;
    return MM_OK;
}

/* ---- propagation split by rows ---------------------------------------------------------
 * G X in two halves, each owned by rows: z_h = (1/|e|) sum_{v in h} Dv^-1/2 x_v for the
 * hyperedges a rank owns (its molecules' hyperedges), then out_v = Dv^-1/2 sum_{h ∋ v} z_h
 * for the vertices it owns. Between them every rank needs the x (then z) of all rows:
 * two allgathers. The sums run in the order of apply_g, so one rank gives G X bit for
 * bit. */

typedef struct {
    const mm_hypergraph *hg;
    int64_t first, count; /* the hyperedges (edge_pool) or vertices (vertex_sum) computed */
} rows_ctx;

static mm_status check_rows(const char *op, const mm_hypergraph *hg, const mm_tensor *x, int64_t first, int64_t count)
{
    if (x->ndim != 2 || x->shape[0] != hg->n || first < 0 || count < 0 || first + count > hg->n)
        return MM_ERR(MM_ERR_ARG, "%s: %lld rows for a hypergraph of %lld vertices, rows %lld + %lld asked", op,
                      (long long)x->shape[0], (long long)hg->n, (long long)first, (long long)count);
    return MM_OK;
}

static mm_status edge_pool_backward(mm_node *nd)
{
    const rows_ctx *c = nd->ctx;
    const mm_hypergraph *hg = c->hg;
    mm_tensor *x = nd->in[0];
    int64_t ch = mm_cols(x), e = hg->k + 1;
    float inv_de = 1.0f / (float)e;
    for (int64_t r = 0; r < c->count; r++) {
        const float *gz = nd->out->grad + r * ch;
        int64_t h = c->first + r;
        for (int64_t j = 0; j < e; j++) {
            int64_t v = hg->members[h * e + j];
            float s = hg->dv_isqrt[v] * inv_de;
            float *gx = x->grad + v * ch;
            for (int64_t q = 0; q < ch; q++) gx[q] += s * gz[q];
        }
    }
    return MM_OK;
}

mm_status mm_hypergraph_edge_pool(mm_tape *t, const mm_hypergraph *hg, mm_tensor *x, int64_t first, int64_t count,
                                  mm_tensor **out)
{
    MM_CALL(check_rows("hypergraph edge pool", hg, x, first, count));
    int64_t ch = mm_cols(x), e = hg->k + 1;
    float inv_de = 1.0f / (float)e;
    mm_tensor *z;
    MM_CALL(mm_tensor_zeros(t, 2, (int64_t[]){count, ch}, mm_tape_wants_grad(t, 1, &x), &z));
    for (int64_t r = 0; r < count; r++) {
        float *zh = z->data + r * ch;
        int64_t h = first + r;
        for (int64_t j = 0; j < e; j++) {
            int64_t v = hg->members[h * e + j];
            float s = hg->dv_isqrt[v];
            for (int64_t q = 0; q < ch; q++) zh[q] += s * x->data[v * ch + q];
        }
        for (int64_t q = 0; q < ch; q++) zh[q] *= inv_de;
    }
    rows_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    *c = (rows_ctx){hg, first, count};
    MM_CALL(mm_tape_record(t, "hypergraph_edge_pool", edge_pool_backward, z, 1, &x, c));
    *out = z;
    return MM_OK;
}

static mm_status vertex_sum_backward(mm_node *nd)
{
    const rows_ctx *c = nd->ctx;
    const mm_hypergraph *hg = c->hg;
    mm_tensor *z = nd->in[0];
    int64_t ch = mm_cols(z);
    for (int64_t r = 0; r < c->count; r++) {
        int64_t v = c->first + r;
        const float *go = nd->out->grad + r * ch;
        float s = hg->dv_isqrt[v];
        for (int64_t p = hg->v_ptr[v]; p < hg->v_ptr[v + 1]; p++) {
            float *gz = z->grad + hg->v_edges[p] * ch;
            for (int64_t q = 0; q < ch; q++) gz[q] += s * go[q];
        }
    }
    return MM_OK;
}

mm_status mm_hypergraph_vertex_sum(mm_tape *t, const mm_hypergraph *hg, mm_tensor *z, int64_t first, int64_t count,
                                   mm_tensor **out)
{
    MM_CALL(check_rows("hypergraph vertex sum", hg, z, first, count));
    int64_t ch = mm_cols(z);
    mm_tensor *y;
    MM_CALL(mm_tensor_zeros(t, 2, (int64_t[]){count, ch}, mm_tape_wants_grad(t, 1, &z), &y));
    for (int64_t r = 0; r < count; r++) {
        int64_t v = first + r;
        float *ov = y->data + r * ch, s = hg->dv_isqrt[v];
        for (int64_t p = hg->v_ptr[v]; p < hg->v_ptr[v + 1]; p++) {
            const float *zh = z->data + hg->v_edges[p] * ch;
            for (int64_t q = 0; q < ch; q++) ov[q] += s * zh[q];
        }
    }
    rows_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    *c = (rows_ctx){hg, first, count};
    MM_CALL(mm_tape_record(t, "hypergraph_vertex_sum", vertex_sum_backward, y, 1, &z, c));
    *out = y;
    return MM_OK;
}

mm_status mm_hypergraph_propagate_rows(mm_tape *t, mm_dist *d, const mm_hypergraph *hg, mm_tensor *x,
                                       const int64_t *counts, int64_t row0, mm_tensor **out)
{
    mm_tensor *x_all, *z, *z_all;
    int64_t n = x->shape[0];
    MM_CALL(mm_dist_allgather_rows(t, d, x, counts, &x_all));
    MM_CALL(mm_hypergraph_edge_pool(t, hg, x_all, row0, n, &z));
    MM_CALL(mm_dist_allgather_rows(t, d, z, counts, &z_all));
    MM_CALL(mm_hypergraph_vertex_sum(t, hg, z_all, row0, n, out));
    return MM_OK;
}
