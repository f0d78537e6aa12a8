/* model_init.c: parameter declaration (golden names and order) and initialisation. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mmsa/model.h"
#include "mmsa/nn.h"

const char *const mm_modality_names[MM_N_MODS] = {"graph", "conformer", "image", "fingerprint"};
const char *const mm_scope_names[MM_N_SCOPES] = {"other", "data", "graph encoder (GIN)", "conformer encoder (SchNet)",
                                                 "image encoder (CNN)", "fingerprint encoder", "heads, fusion, decoder",
                                                 "communication", "kNN", "HGNN", "memory bank", "losses", "optimiser"};

/* Atom features: 9 OGB vocabularies; bond features in GIN: type has a 6th value, the
 * self loop. */
const int32_t mm_atom_vocab[9] = {119, 5, 12, 12, 10, 6, 6, 2, 2};
const int32_t mm_gin_bond_vocab[3] = {6, 6, 2};

static mm_status add(mm_params *p, int *ix, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static mm_status add(mm_params *p, int *ix, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[MM_PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    MM_CALL(mm_params_add(p, name, ndim, shape, ix));
    return MM_OK;
}

/* Linear "<prefix>.weight" [out, in] and, when bias, "<prefix>.bias" [out]. */
static mm_status add_linear(mm_params *p, mm_lin_ix *l, int64_t in, int64_t out, int bias, const char *prefix)
{
    MM_CALL(add(p, &l->w, 2, (int64_t[]){out, in}, "%s.weight", prefix));
    l->b = -1;
    if (bias) MM_CALL(add(p, &l->b, 1, (int64_t[]){out}, "%s.bias", prefix));
    return MM_OK;
}

static mm_status declare_graph(mm_model *m)
{
    const mm_model_config *c = &m->cfg;
    mm_params *p = &m->params;
    char pre[MM_PARAM_NAME_MAX];
    int64_t H = c->gin_hidden, E = c->embed_dim;
    if (c->gin_layers > MM_MAX_GIN_LAYERS || c->schnet_interactions > MM_MAX_SCHNET_BLOCKS)
        return MM_ERR(MM_ERR_CONFIG, "model: at most %d GIN layers and %d SchNet blocks", MM_MAX_GIN_LAYERS,
                      MM_MAX_SCHNET_BLOCKS);
    /* graph encoder */
    int64_t off[9], n_atom_rows, n_bond_rows;
    MM_CALL(mm_embedding_offsets(mm_atom_vocab, 9, off, &n_atom_rows));
    MM_CALL(mm_embedding_offsets(mm_gin_bond_vocab, 3, off, &n_bond_rows));
    MM_CALL(add(p, &m->gin.atom_emb, 2, (int64_t[]){n_atom_rows, H}, "enc.graph.atom_enc.emb.weight"));
    for (int l = 0; l < c->gin_layers; l++)
        MM_CALL(add(p, &m->gin.bond_emb[l], 2, (int64_t[]){n_bond_rows, H}, "enc.graph.bond_encs.%d.emb.weight", l));
    for (int l = 0; l < c->gin_layers; l++) {
        snprintf(pre, sizeof pre, "enc.graph.mlps.%d.0", l);
        MM_CALL(add_linear(p, &m->gin.mlp0[l], H, 2 * H, 1, pre));
        snprintf(pre, sizeof pre, "enc.graph.mlps.%d.2", l);
        MM_CALL(add_linear(p, &m->gin.mlp2[l], 2 * H, H, 1, pre));
    }
    for (int l = 0; l < c->gin_layers; l++) {
        MM_CALL(add(p, &m->gin.bn_w[l], 1, (int64_t[]){H}, "enc.graph.norms.%d.weight", l));
        MM_CALL(add(p, &m->gin.bn_b[l], 1, (int64_t[]){H}, "enc.graph.norms.%d.bias", l));
    }
    if (c->gin_readout == MM_READOUT_MLP) MM_CALL(add_linear(p, &m->gin.readout0, H, H, 1, "enc.graph.readout.0"));
    MM_CALL(add_linear(p, &m->gin.out, H, E, 1, "enc.graph.out"));
    return MM_OK;
}

static mm_status declare(mm_model *m)
{
    const mm_model_config *c = &m->cfg;
    mm_params *p = &m->params;
    char pre[MM_PARAM_NAME_MAX];
    int64_t E = c->embed_dim;
    MM_CALL(declare_graph(m));
    /* conformer encoder */
    int64_t Hs = c->schnet_hidden, F = c->schnet_filters;
    MM_CALL(add(p, &m->schnet.emb, 2, (int64_t[]){119, Hs}, "enc.conformer.emb.weight"));
    for (int b = 0; b < c->schnet_interactions; b++) {
        snprintf(pre, sizeof pre, "enc.conformer.blocks.%d.filter.0", b);
        MM_CALL(add_linear(p, &m->schnet.filter0[b], c->schnet_n_rbf, F, 1, pre));
        snprintf(pre, sizeof pre, "enc.conformer.blocks.%d.filter.2", b);
        MM_CALL(add_linear(p, &m->schnet.filter2[b], F, F, 1, pre));
        snprintf(pre, sizeof pre, "enc.conformer.blocks.%d.lin1", b);
        MM_CALL(add_linear(p, &m->schnet.lin1[b], Hs, F, 0, pre));
        snprintf(pre, sizeof pre, "enc.conformer.blocks.%d.lin2", b);
        MM_CALL(add_linear(p, &m->schnet.lin2[b], F, Hs, 1, pre));
        snprintf(pre, sizeof pre, "enc.conformer.blocks.%d.lin", b);
        MM_CALL(add_linear(p, &m->schnet.lin[b], Hs, Hs, 1, pre));
    }
    MM_CALL(add_linear(p, &m->schnet.out, Hs, E, 1, "enc.conformer.out"));
    /* image encoder: body.{3s} conv, body.{3s+1} BatchNorm (PyTorch Sequential indices) */
    int64_t cin = 3;
    for (int s = 0; s < c->n_cnn_channels; s++) {
        int64_t co = c->cnn_channels[s];
        MM_CALL(add(p, &m->cnn.conv[s], 4, (int64_t[]){co, cin, 3, 3}, "enc.image.body.%d.weight", 3 * s));
        MM_CALL(add(p, &m->cnn.bn_w[s], 1, (int64_t[]){co}, "enc.image.body.%d.weight", 3 * s + 1));
        MM_CALL(add(p, &m->cnn.bn_b[s], 1, (int64_t[]){co}, "enc.image.body.%d.bias", 3 * s + 1));
        cin = co;
    }
    MM_CALL(add_linear(p, &m->cnn.out, cin, E, 1, "enc.image.out"));
    /* fingerprint encoder */
    MM_CALL(add(p, &m->fp.bias, 1, (int64_t[]){c->fp_hidden}, "enc.fingerprint.bias"));
    MM_CALL(add(p, &m->fp.bag, 2, (int64_t[]){c->fp_bits, c->fp_hidden}, "enc.fingerprint.bag.weight"));
    MM_CALL(add_linear(p, &m->fp.out, c->fp_hidden, E, 1, "enc.fingerprint.out"));
    /* projection heads, fusion, decoder, HGNN */
    for (int k = 0; k < MM_N_MODS; k++) {
        snprintf(pre, sizeof pre, "proj.%s.0", mm_modality_names[k]);
        MM_CALL(add_linear(p, &m->proj0[k], E, c->proj_hidden, 1, pre));
        snprintf(pre, sizeof pre, "proj.%s.2", mm_modality_names[k]);
        MM_CALL(add_linear(p, &m->proj2[k], c->proj_hidden, c->proj_dim, 1, pre));
    }
    MM_CALL(add_linear(p, &m->gate_W, E, c->gate_att_dim, 1, "fusion.W"));
    MM_CALL(add(p, &m->gate_w, 2, (int64_t[]){1, c->gate_att_dim}, "fusion.w.weight"));
    MM_CALL(add_linear(p, &m->dec0, E, c->decoder_hidden, 1, "decoder.0"));
    MM_CALL(add_linear(p, &m->dec2, c->decoder_hidden, MM_N_MODS * E, 1, "decoder.2"));
    MM_CALL(add_linear(p, &m->hg1, E, c->hg_hidden, 1, "hg1.lin"));
    MM_CALL(add_linear(p, &m->hg2, c->hg_hidden, E, 1, "hg2.lin"));
    return MM_OK;
}

/* PyTorch-style defaults: Linear and conv U(+-1/sqrt(fan_in)); embedding tables and
 * SchNet linears Xavier-uniform; BatchNorm gamma 1, beta 0; SchNet biases and the
 * fingerprint bias 0; the fingerprint bag U(+-1/sqrt(bits)). */
static void initialise(mm_model *m, uint64_t seed)
{
    mm_params *p = &m->params;
    const mm_model_config *c = &m->cfg;
    for (int i = 0; i < p->count; i++) {
        const mm_param_info *pi = &p->info[i];
        const char *n = pi->name;
        bool bias = strstr(n, ".bias") != NULL;
        if (strstr(n, ".emb.weight")) mm_params_init_xavier(p, i, seed);
        else if (strstr(n, "norms.") || (strstr(n, "enc.image.body.") && pi->ndim == 1))
            mm_params_init_const(p, i, bias ? 0.0f : 1.0f);
        else if (strstr(n, "enc.conformer.blocks.")) {
            if (bias) mm_params_init_const(p, i, 0.0f);
            else mm_params_init_xavier(p, i, seed);
        } else if (!strcmp(n, "enc.fingerprint.bias")) mm_params_init_const(p, i, 0.0f);
        else if (!strcmp(n, "enc.fingerprint.bag.weight"))
            mm_params_init_uniform(p, i, 1.0f / sqrtf((float)c->fp_bits), seed);
        else if (bias) {
            /* the bias of a Linear follows its weight's fan-in: the previous entry */
            const mm_param_info *w = &p->info[i - 1];
            mm_params_init_uniform(p, i, 1.0f / sqrtf((float)(w->n / (size_t)w->shape[0])), seed);
        } else {
            mm_params_init_uniform(p, i, 1.0f / sqrtf((float)(pi->n / (size_t)pi->shape[0])), seed);
        }
    }
}

/* graph_only: the GIN's parameters and buffers alone, then declare_more's. */
static mm_status init_model(mm_model *m, const mm_model_config *cfg, const mm_loss_config *loss, uint64_t seed,
                            bool graph_only, mm_status (*declare_more)(mm_params *p, void *ctx), void *ctx)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (graph_only) m->cfg.n_cnn_channels = 0;
    if (loss) m->loss = *loss;
    cfg = &m->cfg;
    mm_params_init(&m->params);
    mm_status st;
    MM_CALL_GOTO(st, graph_only ? declare_graph(m) : declare(m), fail);
    if (declare_more) MM_CALL_GOTO(st, declare_more(&m->params, ctx), fail);
    MM_CALL_GOTO(st, mm_params_alloc(&m->params), fail);
    initialise(m, seed);
    /* BatchNorm running statistics: GIN layers, then CNN stages; mean 0, var 1. */
    m->n_buffers = 0;
    for (int l = 0; l < cfg->gin_layers; l++) m->n_buffers += 2 * (size_t)cfg->gin_hidden;
    for (int s = 0; s < cfg->n_cnn_channels; s++) m->n_buffers += 2 * (size_t)cfg->cnn_channels[s];
    m->buffers = mm_calloc(m->n_buffers ? m->n_buffers : 1, sizeof(float));
    if (!m->buffers) {
        st = MM_ERR(MM_ERR_NOMEM, "BatchNorm buffers");
        goto fail;
    }
    float *b = m->buffers;
    for (int l = 0; l < cfg->gin_layers; l++) {
        m->gin.bn_mean[l] = b;
        m->gin.bn_var[l] = b + cfg->gin_hidden;
        for (int k = 0; k < cfg->gin_hidden; k++) m->gin.bn_var[l][k] = 1.0f;
        b += 2 * cfg->gin_hidden;
    }
    for (int s = 0; s < cfg->n_cnn_channels; s++) {
        m->cnn.bn_mean[s] = b;
        m->cnn.bn_var[s] = b + cfg->cnn_channels[s];
        for (int k = 0; k < cfg->cnn_channels[s]; k++) m->cnn.bn_var[s][k] = 1.0f;
        b += 2 * cfg->cnn_channels[s];
    }
    double spacing = cfg->schnet_cutoff / (double)(cfg->schnet_n_rbf - 1);
    m->rbf_gamma = (float)(0.5 / (spacing * spacing));
    return MM_OK;
fail:
    mm_model_destroy(m);
    return st;
}

mm_status mm_model_init(mm_model *m, const mm_model_config *cfg, const mm_loss_config *loss, uint64_t seed)
{
    return init_model(m, cfg, loss, seed, false, NULL, NULL);
}

mm_status mm_model_init_graph(mm_model *m, const mm_model_config *cfg, uint64_t seed,
                              mm_status (*declare_more)(mm_params *p, void *ctx), void *ctx)
{
    return init_model(m, cfg, NULL, seed, true, declare_more, ctx);
}

void mm_model_destroy(mm_model *m)
{
    mm_params_destroy(&m->params);
    mm_free_sized(m->buffers, (m->n_buffers ? m->n_buffers : 1) * sizeof(float));
    m->buffers = NULL;
}
