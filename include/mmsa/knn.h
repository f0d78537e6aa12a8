/* knn.h: distributed k-nearest-neighbour search by cosine over rows spread across
 * the ranks (the hypergraph's neighbour lists, DESIGN.md section 3; the job key
 * dist.knn_backend chooses the algorithm).
 *
 * Owns: nothing between calls. Each call takes every rank's own rows of the global
 * set and returns, on each rank, the lists of its own rows.
 *
 * Promises: the lists are the same, bit for bit, whatever the backend and the number
 * of ranks, because the ranking never rests on a GEMM result:
 *  - rows are normalised as x / max(|x|, 1e-12) exactly as hypergraph.c does it
 *    (double sum of squares, float sqrt, float reciprocal, float products);
 *  - the score of a pair is mm_knn_dot of the two normalised rows: float products
 *    summed in double in index order. It is a pure function of the two rows, the
 *    same on any rank and symmetric;
 *  - the order is score descending, then global index ascending; self excluded;
 *  - the GEMMs (BLIS, or PSGEMM with the system BLAS) only shortlist: a column is
 *    rescored exactly when its GEMM value is within 2*delta of the k-th largest GEMM
 *    value of the row seen so far, delta bounding |GEMM value - score| for any
 *    summation order (knn.c states the bound). Every true neighbour passes this
 *    filter, so the result is the exact top k under the order above.
 * On well-separated data this equals mm_knn_cosine (hypergraph.h), which ranks the
 * float GEMM values; the two can differ only where two scores are closer than the
 * float rounding of a dot product, and there this module's answer is the one every
 * rank count agrees on.
 *
 * Collective: every rank of d->comm calls with the same backend, counts, dim, k and
 * options. Arguments are checked on every rank and the verdict is agreed before any
 * data moves, so a bad argument on one rank fails the call on all ranks (no hang).
 * Ranks may hold 0 rows in every backend. Traffic is accounted in d->bytes under
 * MM_COMM_GATHER. */
#ifndef MMSA_KNN_H
#define MMSA_KNN_H

#include <stddef.h>
#include <stdint.h>

#include "mmsa/dist.h"
#include "mmsa/error.h"
#include "mmsa/job.h" /* mm_knn_backend */

typedef struct mm_knn_opts {
    size_t tile_bytes; /* bound on the similarity block a rank holds at once; 0 = 8 MiB */
    int block;         /* ScaLAPACK block size (rows and columns); 0 = chosen from N and the grid */
    int grid_rows;     /* ScaLAPACK process rows, a divisor of the rank count; 0 = the most square
                          grid, taller than wide (2x1, 3x1, 2x2) */
} mm_knn_opts;

typedef struct mm_knn_stats {
    double seconds;            /* wall time of the call on this rank */
    double bytes_sent;         /* payload this rank handed to MPI (point-to-point view of collectives) */
    double bytes_recv;         /* payload this rank received */
    double bytes_psgemm_model; /* scalapack: traffic inside PSGEMM, which MMSA-C cannot see, as the
                                  lower bound "every process fetches the operand rows it lacks" */
    size_t peak_scratch_bytes; /* most memory the call held at once (excludes ScaLAPACK's own work
                                  buffers, which the benchmark sees in the process RSS) */
    int64_t rescored;          /* exact dot products computed by this rank */
    int grid_rows, grid_cols;  /* process grid used (1 x P for allgather and ring) */
} mm_knn_stats;

/* "allgather", "ring", "scalapack" (or "?"). */
const char *mm_knn_backend_name(mm_knn_backend b);

/* out [n, dim] = rows of x [n, dim] divided by max(|row|, 1e-12); out may equal x. */
void mm_knn_normalise(const float *x, int64_t n, int64_t dim, float *out);
/* The score of a pair of normalised rows a, b [dim]: sum of (double)a[p]*b[p], p in order. */
double mm_knn_dot(const float *a, const float *b, int64_t dim);

/* Every rank holds its own rows of the global set: local [n_local, dim], rows in rank
 * order, counts[r] rows on rank r (counts [size], identical on every rank, so rank r's
 * first row has global index sum of counts[0..r-1]). Writes, for each local row, its k
 * nearest neighbours among all N = sum(counts) rows: knn_local [n_local, k] of global
 * indices, most similar first. Needs 1 <= k < N (MM_ERR_ARG otherwise) and finite
 * inputs (MM_ERR_NUMERIC). opts and stats may be NULL. */
mm_status mm_knn_ex(mm_knn_backend backend, mm_dist *d, const float *local, int64_t n_local,
                    const int64_t *counts, int64_t dim, int k, const mm_knn_opts *opts,
                    int64_t *knn_local, mm_knn_stats *stats);
/* mm_knn_ex with default options. */
mm_status mm_knn(mm_knn_backend backend, mm_dist *d, const float *local, int64_t n_local,
                 const int64_t *counts, int64_t dim, int k, int64_t *knn_local, mm_knn_stats *stats);

/* Gather the lists of every rank: knn_local [counts[rank], k] -> knn_global [N, k] on
 * every rank (the input of mm_hypergraph_from_knn). */
mm_status mm_knn_allgather_lists(mm_dist *d, const int64_t *knn_local, const int64_t *counts, int k,
                                 int64_t *knn_global);

#endif
