/* hypergraph.h: the kNN hypergraph over a batch's unified embeddings, and its
 * propagation operator (DESIGN.md section 3, golden README 5.9-5.10).
 *
 * Owns: the neighbour lists, the incidence structure and the degrees of one step,
 * all in the tape's arena. Promises:
 *  - neighbours by cosine of the L2-normalised rows, self excluded, k = min(k, n-1),
 *    most similar first; ties broken by the smaller index, so every rank and every
 *    backend produces identical lists;
 *  - hyperedge e = {e} + its k neighbours (k+1 vertices); W = identity;
 *  - propagation G X = Dv^-1/2 H De^-1 H^T Dv^-1/2 X, differentiable in X (G is a
 *    constant of the step: no gradient flows through the neighbour search). */
#ifndef MMSA_HYPERGRAPH_H
#define MMSA_HYPERGRAPH_H

#include <stdint.h>

#include "mmsa/dist.h"
#include "mmsa/tensor.h"

typedef struct mm_hypergraph {
    int64_t n;            /* vertices = hyperedges */
    int k;                /* neighbours per hyperedge (centre excluded) */
    int64_t *knn;         /* [n, k] neighbour indices, most similar first */
    int64_t *members;     /* [n, k+1] hyperedge e: e, then knn[e] */
    int64_t *dv;          /* [n] vertex degree: hyperedges containing v */
    float *dv_isqrt;      /* [n] Dv^-1/2 */
    int64_t *v_ptr;       /* [n+1] CSR: hyperedges containing vertex v ... */
    int64_t *v_edges;     /* [n*(k+1)] ... v_edges[v_ptr[v] .. v_ptr[v+1]-1] */
} mm_hypergraph;

/* Top-k cosine neighbours of every row of u [n, d] (rows normalised internally,
 * x / max(|x|, 1e-12)), written to knn [n, k]. cos (optional, [n, n]) receives the
 * cosine matrix with its diagonal as computed. k must be < n. Scratch in the arena. */
mm_status mm_knn_cosine(mm_tape *t, const float *u, int64_t n, int64_t d, int k, int64_t *knn, float *cos);
/* Select the k largest entries of row[0..n-1] except `self`, larger first, ties to the
 * smaller index. Shared by every kNN backend. */
void mm_topk_row(const float *row, int64_t n, int64_t self, int k, int64_t *idx);

/* Build the hypergraph of u [n, d] (k clipped to n-1). */
mm_status mm_hypergraph_build(mm_tape *t, const float *u, int64_t n, int64_t d, int k, mm_hypergraph **out);
/* Build from given neighbour lists knn [n, k] (e.g. from a distributed backend). */
mm_status mm_hypergraph_from_knn(mm_tape *t, const int64_t *knn, int64_t n, int k, mm_hypergraph **out);
/* out [n, c] = G x for x [n, c]. */
mm_status mm_hypergraph_propagate(mm_tape *t, const mm_hypergraph *hg, mm_tensor *x, mm_tensor **out);

/* G x split by rows over the ranks of d (every rank knows hg; rank r holds the rows
 * row0 .. row0 + counts[r] - 1 of x and of the result): out [counts[r], c] = those rows
 * of G x, from x [counts[r], c]. Collective (two allgathers of [n, c]; their backward
 * reduce-scatters); per rank O(counts[r] (k+1) c) arithmetic instead of O(n (k+1) c). */
mm_status mm_hypergraph_propagate_rows(mm_tape *t, mm_dist *d, const mm_hypergraph *hg, mm_tensor *x,
                                       const int64_t *counts, int64_t row0, mm_tensor **out);
/* Its halves, for the rows first .. first + count - 1: z [count, c], z_h = (1/(k+1))
 * sum over the members v of hyperedge h of Dv^-1/2 x_v, x [n, c] all vertices; and
 * out [count, c], out_v = Dv^-1/2 sum over the hyperedges h containing v of z_h, z [n, c]
 * all hyperedges. */
mm_status mm_hypergraph_edge_pool(mm_tape *t, const mm_hypergraph *hg, mm_tensor *x, int64_t first, int64_t count,
                                  mm_tensor **out);
mm_status mm_hypergraph_vertex_sum(mm_tape *t, const mm_hypergraph *hg, mm_tensor *z, int64_t first, int64_t count,
                                   mm_tensor **out);

#endif
