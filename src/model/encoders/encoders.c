/* encoders.c: the four modality encoders (golden README 5.2-5.5). Each maps the
 * rank's molecules to z [n, embed_dim]. */
#include <string.h>

#include "mmsa/cfconv.h"
#include "mmsa/graph_ops.h"
#include "mmsa/index_ops.h"
#include "mmsa/model.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"

mm_status mm_model_param(mm_model *m, mm_tape *t, int i, mm_tensor **out);
mm_status mm_model_linear(mm_model *m, mm_tape *t, mm_tensor *x, mm_lin_ix l, mm_tensor **out);

mm_status mm_model_param(mm_model *m, mm_tape *t, int i, mm_tensor **out)
{
    MM_CALL(mm_params_tensor(&m->params, t, i, out));
    return MM_OK;
}

static mm_status model_linear(mm_model *m, mm_tape *t, mm_tensor *x, mm_lin_ix l, bool relu, mm_tensor **out)
{
    mm_tensor *w, *b = NULL;
    MM_CALL(mm_model_param(m, t, l.w, &w));
    if (l.b >= 0) MM_CALL(mm_model_param(m, t, l.b, &b));
    MM_CALL(relu ? mm_linear_relu(t, x, w, b, out) : mm_linear(t, x, w, b, out));
    return MM_OK;
}

mm_status mm_model_linear(mm_model *m, mm_tape *t, mm_tensor *x, mm_lin_ix l, mm_tensor **out)
{
    return model_linear(m, t, x, l, false, out);
}

/* ---- graph: GIN with edge features, BatchNorm, mean or sum pooling, readout ------------------------ */

mm_status mm_encode_graph(mm_model *m, mm_tape *t, const mm_batch *b, uint64_t step, mm_tensor **z)
{
    const mm_model_config *c = &m->cfg;
    mm_tape_scope(t, MM_SCOPE_GIN);
    int64_t atom_off[9], bond_off[3], total;
    MM_CALL(mm_embedding_offsets(mm_atom_vocab, 9, atom_off, &total));
    MM_CALL(mm_embedding_offsets(mm_gin_bond_vocab, 3, bond_off, &total));
    mm_tensor *table, *h;
    MM_CALL(mm_model_param(m, t, m->gin.atom_emb, &table));
    MM_CALL(mm_embedding_multi_u8(t, table, b->ms->atom_feat, b->n_atoms, 9, atom_off, &h)); /* [A, H] */
    for (int l = 0; l < c->gin_layers; l++) {
        mm_tensor *bt, *agg, *a1, *y2, *gamma, *beta, *yn;
        MM_CALL(mm_model_param(m, t, m->gin.bond_emb[l], &bt));
        /* agg[a] = sum over edges e into a of h[src(e)] + bond_emb(e), no [E, H] tensor */
        MM_CALL(mm_gin_aggregate(t, h, bt, bond_off, &b->gin_graph, &agg));              /* [A, H] */
        MM_CALL(model_linear(m, t, agg, m->gin.mlp0[l], true, &a1));                      /* [A, 2H], ReLU */
        MM_CALL(model_linear(m, t, a1, m->gin.mlp2[l], false, &y2));                      /* [A, H] */
        MM_CALL(mm_model_param(m, t, m->gin.bn_w[l], &gamma));
        MM_CALL(mm_model_param(m, t, m->gin.bn_b[l], &beta));
        /* BatchNorm, then ReLU on every layer but the last */
        MM_CALL((l < c->gin_layers - 1 ? mm_batchnorm_relu : mm_batchnorm)(
            t, y2, gamma, beta, m->gin.bn_mean[l], m->gin.bn_var[l], c->bn_momentum, c->bn_eps, &yn));
        MM_CALL(mm_dropout(t, yn, c->gin_dropout, 0, MM_STREAM_DROPOUT + step * 64 + (uint64_t)l, b->atom_row0, &h));
    }
    mm_tensor *g;
    if (c->gin_pool == MM_POOL_SUM) MM_CALL(mm_segment_sum(t, h, b->ms->atom_offset, b->n, &g)); /* [n, H] */
    else MM_CALL(mm_segment_mean(t, h, b->ms->atom_offset, b->n, &g));
    if (c->gin_readout == MM_READOUT_MLP) {
        MM_CALL(model_linear(m, t, g, m->gin.readout0, true, &g));
    }
    MM_CALL(mm_model_linear(m, t, g, m->gin.out, z));
    return MM_OK;
}

/* ---- conformer: SchNet-style continuous-filter convolutions ------------------------- */

mm_status mm_encode_conformer(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z)
{
    const mm_model_config *c = &m->cfg;
    mm_tape_scope(t, MM_SCOPE_SCHNET);
    mm_tensor *table, *h;
    int64_t off0 = 0;
    MM_CALL(mm_model_param(m, t, m->schnet.emb, &table));
    /* the atom-type row is the OGB atomic-number index, column 0 of atom_feat */
    int32_t *z_idx;
    MM_CALL(mm_tape_alloc(t, (size_t)(b->n_atoms ? b->n_atoms : 1) * sizeof(int32_t), (void **)&z_idx));
    for (int64_t a = 0; a < b->n_atoms; a++) z_idx[a] = b->ms->atom_feat[9 * a];
    MM_CALL(mm_embedding_multi(t, table, z_idx, b->n_atoms, 1, &off0, &h));                /* [A, Hs] */
    /* the batch's pairs (p < q, each for both directions) live on the tape, as mm_cfconv wants */
    mm_cfconv_pairs pairs = {b->n_pairs, c->schnet_n_rbf, b->pair_p, b->pair_q, b->rbf, b->fcut, 0,
                             c->schnet_keep_filters};
    for (int k = 0; k < c->schnet_interactions; k++) {
        mm_tensor *w0, *b0, *w2, *b2, *x, *agg, *v1, *v1a, *v;
        MM_CALL(mm_model_param(m, t, m->schnet.filter0[k].w, &w0));
        MM_CALL(mm_model_param(m, t, m->schnet.filter0[k].b, &b0));
        MM_CALL(mm_model_param(m, t, m->schnet.filter2[k].w, &w2));
        MM_CALL(mm_model_param(m, t, m->schnet.filter2[k].b, &b2));
        MM_CALL(mm_model_linear(m, t, h, m->schnet.lin1[k], &x));                            /* [A, F] */
        /* agg[p] = sum over pairs (p, q) of x[q] * filter(rbf, fcut), no [P, F] tensor */
        MM_CALL(mm_cfconv(t, x, &pairs, w0, b0, w2, b2, &agg));                               /* [A, F] */
        MM_CALL(mm_model_linear(m, t, agg, m->schnet.lin2[k], &v1));                         /* [A, Hs] */
        MM_CALL(mm_ssp(t, v1, &v1a));
        MM_CALL(mm_model_linear(m, t, v1a, m->schnet.lin[k], &v));
        MM_CALL(mm_add(t, h, v, &h));                                                         /* residual */
    }
    mm_tensor *pooled;
    MM_CALL(mm_segment_sum(t, h, b->ms->atom_offset, b->n, &pooled));                       /* [n, Hs] */
    MM_CALL(mm_model_linear(m, t, pooled, m->schnet.out, z));
    return MM_OK;
}

/* ---- image: stride-2 conv + BatchNorm2d + ReLU stages, global average pool ----------
 * Channels last (NHWC): each stage's output [n, Ho, Wo, C] is, as [n*Ho*Wo, C], the rows
 * BatchNorm2d normalises over, so no layout changes between the ops. */

mm_status mm_encode_image(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z)
{
    const mm_model_config *c = &m->cfg;
    mm_tape_scope(t, MM_SCOPE_CNN);
    mm_tensor *x;
    MM_CALL(mm_tensor_wrap(t, b->image, NULL, 4, (int64_t[]){b->n, c->image_size, c->image_size, 3}, &x));
    for (int s = 0; s < c->n_cnn_channels; s++) {
        mm_tensor *w, *gamma, *beta, *y, *rows, *act;
        MM_CALL(mm_model_param(m, t, m->cnn.conv[s], &w));
        MM_CALL(mm_conv2d_nhwc(t, x, w, NULL, 2, 1, &y));
        int64_t ch = y->shape[3];
        MM_CALL(mm_reshape(t, y, 2, (int64_t[]){y->n / ch, ch}, &rows));
        MM_CALL(mm_model_param(m, t, m->cnn.bn_w[s], &gamma));
        MM_CALL(mm_model_param(m, t, m->cnn.bn_b[s], &beta));
        MM_CALL(mm_batchnorm_relu(t, rows, gamma, beta, m->cnn.bn_mean[s], m->cnn.bn_var[s], c->bn_momentum, c->bn_eps,
                                  &act));
        MM_CALL(mm_reshape(t, act, 4, y->shape, &x));
    }
    mm_tensor *pooled;
    MM_CALL(mm_global_avg_pool_nhwc(t, x, &pooled));
    MM_CALL(mm_model_linear(m, t, pooled, m->cnn.out, z));
    return MM_OK;
}

/* ---- fingerprint: sparse first layer (sum of the set bits' rows) ------------------- */

mm_status mm_encode_fingerprint(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z)
{
    mm_tape_scope(t, MM_SCOPE_FP);
    mm_tensor *bag, *bias, *h, *hb, *ha;
    MM_CALL(mm_model_param(m, t, m->fp.bag, &bag));
    MM_CALL(mm_model_param(m, t, m->fp.bias, &bias));
    mm_csr s = {b->n, m->cfg.fp_bits, b->fp_ptr, b->fp_col, NULL};
    MM_CALL(mm_csr_matmul(t, &s, bag, &h));                                                  /* [n, Hf] */
    MM_CALL(mm_bias_add(t, h, bias, &hb));
    MM_CALL(mm_relu(t, hb, &ha));
    MM_CALL(mm_model_linear(m, t, ha, m->fp.out, z));
    return MM_OK;
}
