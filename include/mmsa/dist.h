/* dist.h: the communicator MMSA-C owns, and the collectives the core needs.
 *
 * Owns: a duplicate of the caller's communicator (library traffic never collides
 * with the application's), set to MPI_ERRORS_RETURN so every MPI failure comes back
 * as an mm_status with MPI's error string instead of aborting inside a rank.
 * Promises: the sum reductions are deterministic for a given rank count (MPI_SUM over
 * a fixed communicator), and every count is range-checked before it becomes an int. */
#ifndef MMSA_DIST_H
#define MMSA_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mmsa/error.h"
#include "mmsa/loss.h"
#include "mmsa/tensor.h"

/* What the traffic of a collective is for, so a step can report its bytes by kind. */
typedef enum {
    MM_COMM_GRAD = 0,        /* gradient allreduce (bucketed) */
    MM_COMM_GATHER,          /* allgather of embeddings / projections (forward) */
    MM_COMM_REDUCE_SCATTER,  /* their gradients routed back to the owners (backward) */
    MM_COMM_NORM,            /* BatchNorm statistics */
    MM_COMM_BANK,            /* memory bank: nearest anchor and sharded softmax */
    MM_COMM_LOSS_COLS,       /* column statistics of the losses split by rows */
    MM_COMM_OTHER,           /* scalars, masks, agreement flags */
    MM_COMM_KINDS
} mm_comm_kind;
extern const char *const mm_comm_kind_names[MM_COMM_KINDS];

typedef struct mm_dist {
    MPI_Comm comm;
    int rank, size;
    double bytes[MM_COMM_KINDS];   /* payload bytes of the collectives this rank took part in */
    int64_t calls[MM_COMM_KINDS];
} mm_dist;

/* Account one collective of `bytes` payload (the size of the reduced or gathered data). */
static inline void mm_dist_account(mm_dist *d, mm_comm_kind k, double bytes)
{
    d->bytes[k] += bytes;
    d->calls[k]++;
}
void mm_dist_reset_counters(mm_dist *d);

mm_status mm_dist_init(mm_dist *d, MPI_Comm parent);
void mm_dist_destroy(mm_dist *d);

/* Convert a count to an MPI int, or MM_ERR_RANGE naming what it counts. */
mm_status mm_dist_count(size_t n, const char *what, int *out);

/* In-place sums across the ranks. */
mm_status mm_dist_allreduce_double(mm_dist *d, double *buf, size_t n);
mm_status mm_dist_allreduce_float(mm_dist *d, float *buf, size_t n);
/* Matches mm_allreduce_fn: install with tape->allreduce = mm_dist_tape_allreduce,
 * tape->allreduce_ctx = d, so normalisation statistics are those of the global batch. */
mm_status mm_dist_tape_allreduce(void *ctx, double *buf, int n);

/* The column reducer of the losses split by rows (loss.h: mm_info_nce_rows): maxima
 * and sums over the ranks of d, by MPI_Allreduce. */
mm_col_reducer mm_dist_col_reducer(mm_dist *d);

/* Contiguous block partition of n items: rank r gets [*start, *start + *count). */
void mm_dist_block(int64_t n, int size, int rank, int64_t *start, int64_t *count);
/* Collective: the ranks agree on a local outcome st. Every rank returns the status of
 * the lowest failing rank, with that rank's message and "(reported by rank R)" (the
 * failing rank keeps its own record, frames and hint; the others get its hint too), marked
 * agreed (mm_error_agreed) so a program can report it once; MM_OK when no rank failed. So
 * a failure on one rank never leaves the others waiting in the next collective. */
mm_status mm_dist_agree(mm_dist *d, mm_status st);

#endif

/* ---- Differentiable collectives ---------------------------------------------
 * Convention for a loss spread over ranks: the objective is L = sum over ranks of the
 * rank's own part L_r. A tensor gathered from all ranks is therefore reduce-scattered
 * in the backward pass (each rank gets the sum over ranks of the gradient of its own
 * rows). A term over the global batch is split by rows (an InfoNCE: the rank's rows
 * against the gathered columns, loss.h mm_info_nce_rows; the hypergraph: its own
 * hyperedges and vertices), so each rank's part counts once and every parameter
 * gradient summed over ranks is exact. */

/* out [sum of counts, cols] = the rows of every rank in rank order; counts[r] rows
 * come from rank r (counts identical on every rank; x has counts[rank] rows). */
mm_status mm_dist_allgather_rows(mm_tape *t, mm_dist *d, mm_tensor *x, const int64_t *counts,
                                 mm_tensor **out);
/* Gather an int64 or uint8 array likewise (no gradient): out has sum(counts)*width items. */
mm_status mm_dist_allgather_bytes(mm_dist *d, const void *in, size_t item_bytes, const int64_t *counts,
                                  void *out);
