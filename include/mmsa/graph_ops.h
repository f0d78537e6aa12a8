/* graph_ops.h: fused message passing over a molecular graph's directed edges.
 *
 * Owns: mm_graph, the edges of a batch indexed for message passing (built once per
 * batch in the tape's arena), and the ops that consume it. Same contract as ops.h:
 * outputs live in the tape's arena and the backward ADDS into input gradients.
 *
 * Why: GIN's message h[src(e)] + bond_emb(e) summed into dst(e), written as
 * gather + embedding + add + scatter-add, materialises three [E, H] tensors and their
 * gradients per layer. mm_gin_aggregate makes one pass over the edges coming INTO each
 * atom (no [E, H] tensor, no scatter), and its backward one pass over the edges going
 * OUT of each atom. Bond embeddings are summed once per distinct bond (feature tuple)
 * of the batch, not once per edge.
 *
 * Exactness: the forward adds the same float terms in the same order as the unfused
 * composition (edges of an atom by increasing edge id, message = h + embedding), so its
 * output is bit-for-bit that of gather/embedding/add/scatter-add; so is the gradient
 * to h. The gradient to the bond table is summed per bond kind first, so it agrees with
 * the unfused one to float rounding. */
#ifndef MMSA_GRAPH_OPS_H
#define MMSA_GRAPH_OPS_H

#include <stdint.h>

#include "mmsa/tensor.h"

#define MM_GRAPH_MAX_FEAT 8

/* Directed edges e = 0 .. n_edges-1 from src[e] to dst[e] over n_nodes nodes, each
 * with a categorical feature tuple; arrays in the tape's arena (or caller memory). */
typedef struct mm_graph {
    int64_t n_nodes, n_edges;
    const int64_t *src, *dst;          /* [n_edges] */
    int64_t *in_ptr, *in_edge;         /* [n_nodes + 1], [n_edges]: edges into node a are
                                          in_edge[in_ptr[a] .. in_ptr[a+1]-1], increasing */
    int64_t *out_ptr, *out_edge;       /* the same for the edges out of each node */
    int nfeat;                         /* features per edge, 1 .. MM_GRAPH_MAX_FEAT */
    int32_t vocab[MM_GRAPH_MAX_FEAT];  /* vocabulary size of each feature */
    int64_t n_kinds;                   /* distinct feature tuples among the edges */
    int32_t *kind;                     /* [n_edges] in [0, n_kinds), numbered by first use */
    int32_t *kind_feat;                /* [n_kinds, nfeat] the tuple of each kind */
} mm_graph;

/* Index the edges: feat [n_edges, nfeat] row-major, feature f in [0, vocab[f]).
 * Every src/dst is checked against [0, n_nodes) and every feature against its
 * vocabulary (MM_ERR_ARG naming the edge, the feature and the value); the product of
 * the vocabularies must not exceed 2^20 (kinds are found through a dense table).
 * src and dst are referenced, not copied: they must outlive the graph. */
mm_status mm_graph_build(mm_tape *t, int64_t n_nodes, int64_t n_edges, const int64_t *src,
                         const int64_t *dst, int nfeat, const int32_t *feat,
                         const int32_t *vocab, mm_graph *g);

/* GIN aggregation with edge embeddings:
 *   out[a] = sum over edges e into a (increasing e) of (h[src(e)] + emb(e)),
 *   emb(e) = sum over f of table[off[f] + feat(e, f)]   (f increasing, from 0),
 * h [n_nodes, H], table [V, H] holding the nfeat vocabularies back to back from the
 * offsets off[nfeat] (as mm_embedding_multi: feature f owns rows off[f] .. off[f+1]-1,
 * off[nfeat] taken as V; each must fit its vocabulary). out [n_nodes, H]; a node with no
 * incoming edge gets a zero row. Gradients to h and to the table. */
mm_status mm_gin_aggregate(mm_tape *t, mm_tensor *h, mm_tensor *table, const int64_t *off,
                           const mm_graph *g, mm_tensor **out);

#endif
