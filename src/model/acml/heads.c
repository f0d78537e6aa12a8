/* heads.c: ACML's projection heads, its loss over the global batch split by rows, and
 * the retrieval ranks (acml.h; golden README-acml.md). */
#include "mmsa/acml.h"

#include <stdio.h>
#include <string.h>

#include "mmsa/index_ops.h"
#include "mmsa/loss.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"

#define LN_EPS 1e-5f

mm_status mm_acml_head_declare(mm_params *p, const char *prefix, int64_t in_dim, const int64_t *width, int n_cells,
                               mm_acml_head *h)
{
    if (n_cells < 1 || n_cells > MM_ACML_MAX_CELLS)
        return MM_ERR(MM_ERR_ARG, "ACML head %s: %d cells, need 1 to %d", prefix, n_cells, MM_ACML_MAX_CELLS);
    memset(h, 0, sizeof *h);
    h->n_cells = n_cells;
    h->in_dim = in_dim;
    int64_t in = in_dim;
    for (int c = 0; c < n_cells; c++) {
        int64_t w = width[c];
        if (w < 1 || in < 1) return MM_ERR(MM_ERR_ARG, "ACML head %s: cell %d maps %lld to %lld", prefix, c, (long long)in, (long long)w);
        h->width[c] = w;
        char name[MM_PARAM_NAME_MAX];
        struct { const char *leaf; int ndim; int64_t shape[2]; int *index; } decl[6] = {
            {"lin_a.weight", 2, {w, in}, &h->wa[c]}, {"lin_a.bias", 1, {w, 0}, &h->ba[c]},
            {"lin_b.weight", 2, {w, w}, &h->wb[c]},  {"lin_b.bias", 1, {w, 0}, &h->bb[c]},
            {"norm.weight", 1, {w, 0}, &h->gain[c]}, {"norm.bias", 1, {w, 0}, &h->bias[c]},
        };
        for (int k = 0; k < 6; k++) {
            snprintf(name, sizeof name, "%s.%d.%s", prefix, c, decl[k].leaf);
            MM_CALL(mm_params_add(p, name, decl[k].ndim, decl[k].shape, decl[k].index));
        }
        in = w;
    }
    return MM_OK;
}

void mm_acml_head_init(mm_params *p, const mm_acml_head *h, uint64_t seed)
{
    for (int c = 0; c < h->n_cells; c++) {
        mm_params_init_linear(p, h->wa[c], h->ba[c], seed);
        mm_params_init_linear(p, h->wb[c], h->bb[c], seed);
        mm_params_init_const(p, h->gain[c], 1.0f);
        mm_params_init_const(p, h->bias[c], 0.0f);
    }
}

mm_status mm_acml_head_forward(mm_tape *t, const mm_params *p, const mm_acml_head *h, mm_tensor *x, float dropout,
                               uint64_t seed, uint64_t stream, int64_t row0, mm_tensor **out, mm_tensor **cell_z,
                               mm_tensor **cell_out)
{
    if (x->ndim != 2 || x->shape[1] != h->in_dim)
        return MM_ERR(MM_ERR_ARG, "ACML head: input has %lld columns, the head takes %lld",
                      (long long)(x->ndim == 2 ? x->shape[1] : -1), (long long)h->in_dim);
    mm_tensor *v = x;
    for (int c = 0; c < h->n_cells; c++) {
        mm_tensor *wa, *ba, *wb, *bb, *gain, *bias, *z, *a, *y, *yd, *r;
        MM_CALL(mm_params_tensor(p, t, h->wa[c], &wa));
        MM_CALL(mm_params_tensor(p, t, h->ba[c], &ba));
        MM_CALL(mm_params_tensor(p, t, h->wb[c], &wb));
        MM_CALL(mm_params_tensor(p, t, h->bb[c], &bb));
        MM_CALL(mm_params_tensor(p, t, h->gain[c], &gain));
        MM_CALL(mm_params_tensor(p, t, h->bias[c], &bias));
        MM_CALL(mm_linear(t, v, wa, ba, &z)); /* z = x W_a^T + b_a */
        MM_CALL(mm_gelu(t, z, &a));
        MM_CALL(mm_linear(t, a, wb, bb, &y));
        /* one mask stream per cell of the head */
        MM_CALL(mm_dropout(t, y, dropout, seed, stream * MM_ACML_MAX_CELLS + (uint64_t)c, row0, &yd));
        MM_CALL(mm_add(t, yd, z, &r));
        MM_CALL(mm_layernorm(t, r, 1, gain, bias, LN_EPS, &v));
        if (cell_z) cell_z[c] = z;
        if (cell_out) cell_out[c] = v;
    }
    *out = v;
    return MM_OK;
}

mm_status mm_acml_loss_rows(mm_tape *t, mm_dist *d, mm_tensor *u, mm_tensor *g, const int64_t *counts, int64_t row0,
                            float tau, mm_tensor **out, mm_tensor **targets_out)
{
    if (u->ndim != 2 || !mm_same_shape(u, g) || u->shape[0] != counts[d->rank])
        return MM_ERR(MM_ERR_ARG, "ACML loss: teacher rows [%lld, %lld] and graph rows [%lld, %lld] for %lld pairs of "
                                  "rank %d",
                      (long long)u->shape[0], (long long)(u->ndim == 2 ? u->shape[1] : -1), (long long)g->shape[0],
                      (long long)(g->ndim == 2 ? g->shape[1] : -1), (long long)counts[d->rank], d->rank);
    if (!(tau > 0.0f)) return MM_ERR(MM_ERR_ARG, "ACML loss: temperature %g must be positive", (double)tau);
    mm_tensor *U, *G, *uu, *gg, *s, *a, *tg;
    MM_CALL(mm_dist_allgather_rows(t, d, u, counts, &U));
    MM_CALL(mm_dist_allgather_rows(t, d, g, counts, &G));
    /* this rank's rows of T = softmax_rows(tau (U U^T + G G^T) / 2), kept on the tape */
    MM_CALL(mm_matmul(t, u, false, U, true, &uu));
    MM_CALL(mm_matmul(t, g, false, G, true, &gg));
    MM_CALL(mm_add(t, uu, gg, &s));
    MM_CALL(mm_affine(t, s, 0.5f * tau, 0.0f, &a));
    MM_CALL(mm_softmax(t, a, &tg));
    mm_col_reducer red = mm_dist_col_reducer(d);
    MM_CALL(mm_clip_soft_loss_rows(t, u, G, row0, tg, tau, &red, out));
    if (targets_out) *targets_out = tg;
    return MM_OK;
}

void mm_retrieval_ranks(const float *a, const float *b, int64_t n, int64_t d, int64_t *rank)
{
    for (int64_t i = 0; i < n; i++) {
        double self = 0;
        for (int64_t q = 0; q < d; q++) self += (double)a[i * d + q] * b[i * d + q];
        int64_t r = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double s = 0;
            for (int64_t q = 0; q < d; q++) s += (double)a[i * d + q] * b[j * d + q];
            r += s > self || (s == self && j < i);
        }
        rank[i] = r;
    }
}
