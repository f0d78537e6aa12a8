/* model.h: the MMSA model (DESIGN.md section 3; golden README section 5) and the
 * batch it consumes.
 *
 * Owns: the parameter registry of the whole model (names as in the golden file, e.g.
 * "enc.graph.mlps.0.0.weight"), the BatchNorm running statistics, and the per-step
 * batch structures (edges, atom pairs, images as floats, fingerprint bits) built in
 * the tape's arena from the rank's molecules.
 *
 * Distribution: each rank encodes its own molecules (a contiguous slice of the global
 * batch). BatchNorm statistics are global through the tape's allreduce hook. The
 * terms over the global batch are split by rows, so no rank holds an N x N matrix or
 * does O(N^2) work: each InfoNCE term is computed for the rows of the rank's own
 * molecules against the gathered columns (column statistics allreduced, loss.h
 * mm_info_nce_rows); the kNN search finds the neighbours of the rank's own rows; the
 * HGNN propagates for its own hyperedges and vertices (two allgathers per layer); the
 * memory bank scores every molecule against the anchors the rank owns. The
 * reconstruction term is per molecule, on the owner. Every rank's part enters the
 * objective with the same weights, so summing the parameter gradients over ranks gives
 * the gradient of the global loss, and a run on P ranks follows the single-rank
 * trajectory up to the order of floating-point sums.
 *
 * Missing modalities (conformer ok = 0, or a modality switched off) are masked:
 * excluded from their InfoNCE term, weight 0 in the fusion, excluded from L_rec. */
#ifndef MMSA_MODEL_H
#define MMSA_MODEL_H

#include <stdint.h>

#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "mmsa/graph_ops.h"
#include "mmsa/hypergraph.h"
#include "mmsa/job.h"
#include "mmsa/memory_bank.h"
#include "mmsa/params.h"
#include "mmsa/tensor.h"

enum { MM_MOD_GRAPH_I = 0, MM_MOD_CONF_I = 1, MM_MOD_IMAGE_I = 2, MM_MOD_FP_I = 3, MM_N_MODS = 4 };
extern const char *const mm_modality_names[MM_N_MODS]; /* graph, conformer, image, fingerprint */
/* OGB atom vocabularies (9 features), and GIN's bond vocabularies: type has a 6th
 * value, 5 = self loop; then stereo 6, conjugated 2. */
extern const int32_t mm_atom_vocab[9];
extern const int32_t mm_gin_bond_vocab[3];

/* Profiling scopes of a training step (tape.h mm_tape_scope), for bench_train. */
enum {
    MM_SCOPE_OTHER = 0, MM_SCOPE_DATA, MM_SCOPE_GIN, MM_SCOPE_SCHNET, MM_SCOPE_CNN, MM_SCOPE_FP, MM_SCOPE_HEADS,
    MM_SCOPE_COMM, MM_SCOPE_KNN, MM_SCOPE_HGNN, MM_SCOPE_BANK, MM_SCOPE_LOSS, MM_SCOPE_OPTIM, MM_N_SCOPES
};
extern const char *const mm_scope_names[MM_N_SCOPES];

#define MM_MAX_GIN_LAYERS 64
#define MM_MAX_SCHNET_BLOCKS 32
#define MM_MAX_CNN_STAGES MM_CFG_LIST_MAX

/* Indices into the parameter registry. */
typedef struct mm_lin_ix { int w, b; } mm_lin_ix; /* b = -1: no bias */

typedef struct mm_model {
    mm_model_config cfg;
    mm_loss_config loss;
    mm_params params;
    struct {
        int atom_emb;
        int bond_emb[MM_MAX_GIN_LAYERS];
        mm_lin_ix mlp0[MM_MAX_GIN_LAYERS], mlp2[MM_MAX_GIN_LAYERS];
        int bn_w[MM_MAX_GIN_LAYERS], bn_b[MM_MAX_GIN_LAYERS];
        float *bn_mean[MM_MAX_GIN_LAYERS], *bn_var[MM_MAX_GIN_LAYERS]; /* [gin_hidden] */
        mm_lin_ix readout0;  /* gin_readout mlp: Linear(H, H) before out */
        mm_lin_ix out;
    } gin;
    struct {
        int emb;
        mm_lin_ix filter0[MM_MAX_SCHNET_BLOCKS], filter2[MM_MAX_SCHNET_BLOCKS];
        mm_lin_ix lin1[MM_MAX_SCHNET_BLOCKS], lin2[MM_MAX_SCHNET_BLOCKS], lin[MM_MAX_SCHNET_BLOCKS];
        mm_lin_ix out;
    } schnet;
    struct {
        int conv[MM_MAX_CNN_STAGES], bn_w[MM_MAX_CNN_STAGES], bn_b[MM_MAX_CNN_STAGES];
        float *bn_mean[MM_MAX_CNN_STAGES], *bn_var[MM_MAX_CNN_STAGES];
        mm_lin_ix out;
    } cnn;
    struct {
        int bag, bias;
        mm_lin_ix out;
    } fp;
    mm_lin_ix proj0[MM_N_MODS], proj2[MM_N_MODS];
    mm_lin_ix gate_W;
    int gate_w;
    mm_lin_ix dec0, dec2, hg1, hg2;
    float *buffers;          /* BatchNorm running statistics, one allocation */
    size_t n_buffers;
    int64_t bn_batches;      /* num_batches_tracked */
    int knn_backend;         /* mm_knn_backend for the hypergraph (job key dist.knn_backend) */
    float rbf_gamma;         /* 0.5 / spacing^2 */
} mm_model;

/* The rank's share of a global batch, prepared for the encoders (tape arena). */
typedef struct mm_batch {
    const mm_molset *ms;     /* this rank's molecules */
    int64_t n;               /* local molecules */
    int64_t n_global;        /* molecules in the global batch */
    int64_t row0;            /* global batch index of the first local molecule */
    int64_t *counts;         /* [ranks] molecules per rank */
    int64_t n_atoms;
    int64_t atom_row0;       /* global index of the first local atom (dropout masks) */
    /* GIN: directed bond edges both ways, then one self-loop per atom */
    int64_t n_edges;
    int64_t *edge_src, *edge_dst;   /* [n_edges] atom rows (local to the rank) */
    int32_t *edge_feat;             /* [n_edges, 3] bond type (5 = self loop), stereo, conjugated */
    mm_graph gin_graph;             /* the same edges indexed for mm_gin_aggregate */
    /* SchNet: atom pairs p < q within the cutoff, molecules with a conformer only; each
     * stands for both directions (mm_cfconv) */
    int64_t n_pairs;
    int64_t *pair_p, *pair_q;       /* [n_pairs], p < q, sorted by p then q */
    float *rbf;                     /* [n_pairs, n_rbf] */
    float *fcut;                    /* [n_pairs] cosine cutoff */
    int64_t *pairs_per_mol;         /* [n] unordered pairs of each molecule */
    float *image;                   /* [n, H, W, 3] value / 255 (channels last) */
    int64_t *fp_ptr, *fp_col;       /* CSR of set fingerprint bits, [n+1], [nnz] */
    uint8_t *mask;                  /* [n, 4] modality present */
    uint8_t *mask_global;           /* [n_global, 4] */
    int64_t present_global[MM_N_MODS];
} mm_batch;

/* Everything a step reports; values are those of the global batch on every rank. */
typedef struct mm_step_out {
    double l_align, l_align_mod[MM_N_MODS], l_rec, l_hg, l_mem, total;
    mm_tensor *z[MM_N_MODS];   /* local encoder outputs [n, E] (NULL: modality off) */
    mm_tensor *p[MM_N_MODS];   /* local projections [n, P] */
    mm_tensor *u_local;        /* [n, E] */
    mm_tensor *s;              /* global [N, E] HGNN output (gathered) */
    mm_tensor *hg1;            /* local [n, hg_hidden] first HGNN layer */
    mm_tensor *gate_score, *alpha; /* local [n, 4] */
    mm_tensor *rec;            /* local [n, 4E] */
    mm_hypergraph *hg;
    int64_t *assign;           /* [N] nearest anchors */
    mm_tensor *loss_local;     /* scalar this rank backpropagates */
} mm_step_out;

/* Declare and allocate the parameters for the given sizes, initialised from seed. */
mm_status mm_model_init(mm_model *m, const mm_model_config *cfg, const mm_loss_config *loss, uint64_t seed);
/* The graph encoder alone (ACML's student, fine-tuning): only enc.graph.* parameters and
 * the GIN's BatchNorm buffers. `declare_more` (may be NULL) declares further parameters
 * in the same registry before it is allocated (e.g. projection heads); they receive the
 * generic Linear initialisation and the caller re-initialises them as it needs. */
mm_status mm_model_init_graph(mm_model *m, const mm_model_config *cfg, uint64_t seed,
                              mm_status (*declare_more)(mm_params *p, void *ctx), void *ctx);
void mm_model_destroy(mm_model *m);

/* Build the batch from the rank's molecules (a collective: gathers the masks and
 * atom counts). counts: molecules per rank, identical on every rank. */
mm_status mm_batch_build(mm_tape *t, const mm_model *m, const mm_molset *ms, mm_dist *d, const int64_t *counts,
                         mm_batch **out);

/* Encoders: z [n, E] for the local molecules. */
mm_status mm_encode_graph(mm_model *m, mm_tape *t, const mm_batch *b, uint64_t step, mm_tensor **z);
mm_status mm_encode_conformer(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z);
mm_status mm_encode_image(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z);
mm_status mm_encode_fingerprint(mm_model *m, mm_tape *t, const mm_batch *b, mm_tensor **z);

/* The local part of the forward: encoders, projections (p: L2-normalised) and the
 * gated fusion u for this rank's molecules; fills z, p, gate_score, alpha, u_local.
 * Needs no communication except BatchNorm's statistics in training mode. */
mm_status mm_model_embed(mm_model *m, mm_tape *t, const mm_batch *b, uint64_t step, mm_step_out *o);

/* Called for each chunk of molecules embedded by mm_model_embed_dataset: rows
 * [first, first + n) of the range (0-based within it), with the chunk's outputs. */
typedef mm_status (*mm_embed_fn)(void *ctx, int64_t first, int64_t n, const mm_step_out *o, const mm_batch *b);
/* Embed molecules [start, end) of ds in eval mode (running BatchNorm statistics, no
 * dropout, no gradients): each rank takes a contiguous block, in chunks of `chunk`,
 * reading only its rows into `scratch`. Collective over d (ds opened on d's
 * communicator, or on MPI_COMM_SELF with d of one rank). */
mm_status mm_model_embed_dataset(mm_model *m, mm_tape *t, mm_dataset *ds, mm_molset *scratch, unsigned modalities,
                                 mm_dist *d, int64_t start, int64_t end, int64_t chunk, mm_embed_fn fn, void *ctx);

/* Forward of the whole MMSA objective on the global batch. After it, the caller runs
 * mm_tape_backward(t, out->loss_local) and sums the parameter gradients over ranks.
 * The memory bank is read, not updated (see mm_bank_update). `step` seeds dropout. */
mm_status mm_model_forward(mm_model *m, mm_tape *t, mm_dist *d, mm_memory_bank *bank, const mm_batch *b,
                           uint64_t seed, uint64_t step, mm_step_out *out);

#endif
