/* mmsa.c: the MMSA objective over the global batch (golden README 5.6-5.13). */
#include <math.h>
#include <string.h>

#include "mmsa/index_ops.h"
#include "mmsa/knn.h"
#include "mmsa/loss.h"
#include "mmsa/model.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"

mm_status mm_model_param(mm_model *m, mm_tape *t, int i, mm_tensor **out);
mm_status mm_model_linear(mm_model *m, mm_tape *t, mm_tensor *x, mm_lin_ix l, mm_tensor **out);

#define MASK_NEG (-1e30f) /* gate score of a missing modality: exp() underflows to 0 */

/* acc = acc + w * x for scalar tensors (acc NULL: start). */
static mm_status add_weighted(mm_tape *t, mm_tensor **acc, mm_tensor *x, float w)
{
    mm_tensor *wx;
    MM_CALL(mm_affine(t, x, w, 0.0f, &wx));
    if (!*acc) *acc = wx;
    else MM_CALL(mm_add(t, *acc, wx, acc));
    return MM_OK;
}

/* p = normalise(ReLU(z W1^T + b1) W2^T + b2) */
static mm_status project(mm_model *m, mm_tape *t, int k, mm_tensor *z, mm_tensor **p)
{
    mm_tensor *h, *a, *q;
    MM_CALL(mm_model_linear(m, t, z, m->proj0[k], &h));
    MM_CALL(mm_relu(t, h, &a));
    MM_CALL(mm_model_linear(m, t, a, m->proj2[k], &q));
    MM_CALL(mm_l2_normalize(t, q, 1e-12f, p));
    return MM_OK;
}

/* This rank's part of the InfoNCE between the graph projection and modality k over
 * the global rows where k is present (a molecule without k is neither a positive nor a
 * negative): the rows of its own present molecules (pg, local) against the columns of
 * every present molecule (pk_all, gathered). */
static mm_status align_term(mm_tape *t, const mm_batch *b, const mm_col_reducer *red, mm_tensor *pg,
                            mm_tensor *pk_all, int k, float tau, mm_tensor **out)
{
    int64_t n = b->n, N = b->n_global, present = b->present_global[k];
    if (present == N) {
        MM_CALL(mm_info_nce_rows(t, pg, pk_all, b->row0, tau, red, out));
        return MM_OK;
    }
    int64_t row0 = 0, mine = 0;
    for (int64_t i = 0; i < b->row0; i++) row0 += b->mask_global[i * MM_N_MODS + k];
    for (int64_t i = 0; i < n; i++) mine += b->mask[i * MM_N_MODS + k];
    int64_t *rows, *cols;
    MM_CALL(mm_tape_alloc(t, (size_t)(mine ? mine : 1) * sizeof(int64_t), (void **)&rows));
    MM_CALL(mm_tape_alloc(t, (size_t)(present ? present : 1) * sizeof(int64_t), (void **)&cols));
    int64_t r = 0;
    for (int64_t i = 0; i < n; i++)
        if (b->mask[i * MM_N_MODS + k]) rows[r++] = i;
    r = 0;
    for (int64_t i = 0; i < N; i++)
        if (b->mask_global[i * MM_N_MODS + k]) cols[r++] = i;
    mm_tensor *a, *c;
    MM_CALL(mm_gather_rows(t, pg, rows, mine, &a));
    MM_CALL(mm_gather_rows(t, pk_all, cols, present, &c));
    MM_CALL(mm_info_nce_rows(t, a, c, row0, tau, red, out)); /* present < 2 gives 0 */
    return MM_OK;
}

static bool mod_enabled(const mm_model *m, const mm_batch *b, int k)
{
    return b->present_global[k] > 0 || (k == MM_MOD_GRAPH_I) ||
           (k == MM_MOD_CONF_I && m->cfg.use_conformer && (b->ms->modalities & MM_MOD_CONFORMER));
}

mm_status mm_model_embed(mm_model *m, mm_tape *t, const mm_batch *b, uint64_t step, mm_step_out *o)
{
    const mm_model_config *c = &m->cfg;
    int64_t n = b->n, E = c->embed_dim;
    memset(o, 0, sizeof *o);
    /* encoders on this rank's molecules; a modality that is off gets zeros (masked) */
    bool on[MM_N_MODS];
    for (int k = 0; k < MM_N_MODS; k++) on[k] = mod_enabled(m, b, k);
    MM_CALL(mm_encode_graph(m, t, b, step, &o->z[MM_MOD_GRAPH_I]));
    if (on[MM_MOD_CONF_I]) MM_CALL(mm_encode_conformer(m, t, b, &o->z[MM_MOD_CONF_I]));
    if (on[MM_MOD_IMAGE_I]) MM_CALL(mm_encode_image(m, t, b, &o->z[MM_MOD_IMAGE_I]));
    if (on[MM_MOD_FP_I]) MM_CALL(mm_encode_fingerprint(m, t, b, &o->z[MM_MOD_FP_I]));
    mm_tensor *zero = NULL;
    for (int k = 0; k < MM_N_MODS; k++)
        if (!on[k]) {
            if (!zero) MM_CALL(mm_tensor_zeros(t, 2, (int64_t[]){n, E}, false, &zero));
            o->z[k] = zero;
        }
    mm_tape_scope(t, MM_SCOPE_HEADS);
    for (int k = 0; k < MM_N_MODS; k++)
        if (on[k]) MM_CALL(project(m, t, k, o->z[k], &o->p[k]));

    /* gated fusion: alpha = softmax over present modalities of w . tanh(W z + c) */
    mm_tensor *scores[MM_N_MODS], *gw;
    MM_CALL(mm_model_param(m, t, m->gate_w, &gw));
    for (int k = 0; k < MM_N_MODS; k++) {
        mm_tensor *h, *a;
        MM_CALL(mm_model_linear(m, t, o->z[k], m->gate_W, &h));
        MM_CALL(mm_tanh(t, h, &a));
        MM_CALL(mm_linear(t, a, gw, NULL, &scores[k])); /* [n, 1] */
    }
    MM_CALL(mm_concat_cols(t, MM_N_MODS, scores, &o->gate_score));
    mm_tensor *maskadd, *masked;
    MM_CALL(mm_tensor_new(t, 2, (int64_t[]){n, MM_N_MODS}, false, &maskadd));
    for (int64_t i = 0; i < n * MM_N_MODS; i++) maskadd->data[i] = b->mask[i] ? 0.0f : MASK_NEG;
    MM_CALL(mm_add(t, o->gate_score, maskadd, &masked));
    MM_CALL(mm_softmax(t, masked, &o->alpha));
    mm_tensor *u = NULL;
    for (int k = 0; k < MM_N_MODS; k++) {
        mm_tensor *ak, *term;
        MM_CALL(mm_slice_cols(t, o->alpha, k, 1, &ak));
        MM_CALL(mm_row_scale(t, o->z[k], ak, &term));
        if (!u) u = term;
        else MM_CALL(mm_add(t, u, term, &u));
    }
    o->u_local = u;

    return MM_OK;
}

mm_status mm_model_forward(mm_model *m, mm_tape *t, mm_dist *d, mm_memory_bank *bank, const mm_batch *b,
                           uint64_t seed, uint64_t step, mm_step_out *o)
{
    (void)seed;
    const mm_model_config *c = &m->cfg;
    const mm_loss_config *L = &m->loss;
    int64_t n = b->n, E = c->embed_dim;
    t->allreduce = mm_dist_tape_allreduce;
    t->allreduce_ctx = d;
    MM_CALL(mm_model_embed(m, t, b, step, o));
    mm_tensor *u = o->u_local;

    /* 1. L_align over the global batch, split by rows: the graph projections of this
     * rank's molecules against every molecule's projection of modality k (gathered) */
    mm_col_reducer red = mm_dist_col_reducer(d);
    mm_tensor *P[MM_N_MODS] = {0}, *l_align = NULL;
    mm_tape_scope(t, MM_SCOPE_COMM);
    for (int k = 1; k < MM_N_MODS; k++)
        if (o->p[k]) MM_CALL(mm_dist_allgather_rows(t, d, o->p[k], b->counts, &P[k]));
    mm_tape_scope(t, MM_SCOPE_LOSS);
    for (int k = 1; k < MM_N_MODS; k++) {
        if (!P[k]) continue;
        mm_tensor *term;
        MM_CALL(align_term(t, b, &red, o->p[MM_MOD_GRAPH_I], P[k], k, L->tau_align, &term));
        o->l_align_mod[k] = term->data[0]; /* this rank's part; summed below */
        MM_CALL(add_weighted(t, &l_align, term, 1.0f));
    }

    /* 2. decoder and L_rec: mean over present (molecule, modality) pairs of the global
     * batch; each rank adds its molecules' share (targets not detached). */
    mm_tensor *r1, *r1a, *l_rec = NULL;
    mm_tape_scope(t, MM_SCOPE_HEADS);
    MM_CALL(mm_model_linear(m, t, u, m->dec0, &r1));
    MM_CALL(mm_relu(t, r1, &r1a));
    MM_CALL(mm_model_linear(m, t, r1a, m->dec2, &o->rec));
    mm_tape_scope(t, MM_SCOPE_LOSS);
    int64_t pairs_global = 0;
    for (int k = 0; k < MM_N_MODS; k++) pairs_global += b->present_global[k];
    uint8_t *col;
    MM_CALL(mm_tape_alloc(t, (size_t)(n ? n : 1), (void **)&col));
    double rec_local = 0;
    for (int k = 0; k < MM_N_MODS; k++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++) cnt += col[i] = b->mask[i * MM_N_MODS + k];
        if (cnt == 0) continue;
        mm_tensor *rk, *err;
        MM_CALL(mm_slice_cols(t, o->rec, k * E, E, &rk));
        MM_CALL(mm_mse_masked(t, rk, o->z[k], col, &err));
        float w = (float)cnt / (float)pairs_global;
        rec_local += (double)w * err->data[0];
        MM_CALL(add_weighted(t, &l_rec, err, w));
    }
    o->l_rec = rec_local;
    mm_tape_scope(t, MM_SCOPE_COMM);
    MM_CALL(mm_dist_allreduce_double(d, &o->l_rec, 1));

    /* 3. kNN hypergraph over the global batch; the HGNN split by rows (each rank
     * propagates for its own molecules' hyperedges and vertices) */
    int64_t N = b->n_global;
    /* neighbour lists by the configured distributed backend: each rank searches for its
     * own rows, then every rank gets all lists (identical on any backend and rank count) */
    mm_tape_scope(t, MM_SCOPE_KNN);
    if (N < 2) return MM_ERR(MM_ERR_ARG, "the hypergraph needs a global batch of at least 2 molecules");
    int k = L->knn_k < N - 1 ? L->knn_k : (int)(N - 1);
    int64_t *knn_local, *knn_global;
    MM_CALL(mm_tape_alloc(t, (size_t)((n ? n : 1) * k) * sizeof(int64_t), (void **)&knn_local));
    MM_CALL(mm_tape_alloc(t, (size_t)(N * k) * sizeof(int64_t), (void **)&knn_global));
    MM_CALL(mm_knn((mm_knn_backend)m->knn_backend, d, u->data, n, b->counts, E, k, knn_local, NULL));
    MM_CALL(mm_knn_allgather_lists(d, knn_local, b->counts, k, knn_global));
    MM_CALL(mm_hypergraph_from_knn(t, knn_global, N, k, &o->hg));
    mm_tape_scope(t, MM_SCOPE_HGNN);
    mm_tensor *y1, *g1, *y2, *s_local;
    MM_CALL(mm_model_linear(m, t, u, m->hg1, &y1));
    MM_CALL(mm_hypergraph_propagate_rows(t, d, o->hg, y1, b->counts, b->row0, &g1));
    MM_CALL(mm_relu(t, g1, &o->hg1));
    MM_CALL(mm_model_linear(m, t, o->hg1, m->hg2, &y2));
    MM_CALL(mm_hypergraph_propagate_rows(t, d, o->hg, y2, b->counts, b->row0, &s_local));
    mm_tape_scope(t, MM_SCOPE_COMM);
    MM_CALL(mm_dist_allgather_rows(t, d, s_local, b->counts, &o->s));

    /* 4. L_hg = InfoNCE(normalised u, normalised s), split by rows like L_align; L_mem
     * over the whole bank (each rank scores every s against the anchors it owns) */
    mm_tensor *uh, *sh, *l_hg, *l_mem;
    mm_tape_scope(t, MM_SCOPE_LOSS);
    MM_CALL(mm_l2_normalize(t, u, 1e-12f, &uh));
    MM_CALL(mm_l2_normalize(t, o->s, 1e-12f, &sh));
    MM_CALL(mm_info_nce_rows(t, uh, sh, b->row0, L->tau_hg, &red, &l_hg));
    o->l_hg = l_hg->data[0]; /* this rank's part; summed below */
    mm_tape_scope(t, MM_SCOPE_BANK);
    MM_CALL(mm_tape_alloc(t, (size_t)N * sizeof(int64_t), (void **)&o->assign));
    MM_CALL(mm_bank_loss(bank, t, sh, o->assign, &l_mem));
    o->l_mem = l_mem->data[0];

    /* 5. this rank's part of the objective: L_align and L_hg by row owner, L_rec by
     * molecule owner, the bank's loss by anchor owner; the reported terms are the sums
     * of the parts (one allreduce) */
    mm_tape_scope(t, MM_SCOPE_LOSS);
    mm_tensor *total = NULL;
    if (l_align) MM_CALL(add_weighted(t, &total, l_align, L->w_align));
    if (l_rec) MM_CALL(add_weighted(t, &total, l_rec, L->w_rec));
    MM_CALL(add_weighted(t, &total, l_hg, L->w_hg));
    MM_CALL(add_weighted(t, &total, l_mem, L->w_mem));
    o->loss_local = total;
    double parts[MM_N_MODS + 1];
    memcpy(parts, o->l_align_mod, sizeof o->l_align_mod);
    parts[MM_N_MODS] = o->l_hg;
    mm_tape_scope(t, MM_SCOPE_COMM);
    MM_CALL(mm_dist_allreduce_double(d, parts, MM_N_MODS + 1));
    memcpy(o->l_align_mod, parts, sizeof o->l_align_mod);
    o->l_hg = parts[MM_N_MODS];
    o->l_align = 0;
    for (int q = 1; q < MM_N_MODS; q++) o->l_align += o->l_align_mod[q];
    mm_tape_scope(t, MM_SCOPE_LOSS);
    o->total = L->w_align * o->l_align + L->w_rec * o->l_rec + L->w_hg * o->l_hg + L->w_mem * o->l_mem;
    return MM_OK;
}
