/* grad_sync.h: bucketed gradient allreduce, overlapped with the backward pass.
 *
 * Owns: a partition of the parameter registry's gradient buffer into buckets of
 * consecutive parameters (about bucket_bytes each, in registry order) and their
 * non-blocking allreduces. Promises:
 *  - every bucket is reduced every step, in the same order on every rank (descending
 *    bucket index), with zeros where a parameter got no gradient, so the summed
 *    gradient is exact and ranks never disagree about which collectives run;
 *  - a bucket starts as soon as every op that uses one of its parameters has run its
 *    backward (the first use of each parameter is found on the step's tape), so the
 *    reduction of the late layers overlaps the backward of the early ones;
 *  - mm_grad_sync_finish returns when every bucket is reduced;
 *  - progress_s and wait_s say how long the step waited for the reductions (the time
 *    they took beyond that was hidden behind the backward). */
#ifndef MMSA_GRAD_SYNC_H
#define MMSA_GRAD_SYNC_H

#include "mmsa/dist.h"
#include "mmsa/params.h"
#include "mmsa/tensor.h"

typedef struct mm_grad_sync {
    mm_dist *d;
    mm_params *p;
    int n_buckets;
    size_t *start, *count;     /* [n_buckets] float ranges of p->grad */
    int *first_param, *n_param;/* [n_buckets] registry ranges */
    int64_t *ready_at;         /* [n_buckets] tape seq at or below which the bucket is final */
    int64_t *first_use;        /* [p->count] smallest tape seq using the parameter */
    MPI_Request *req;          /* [n_buckets] */
    int next;                  /* next bucket to start (descending) */
    double overlap_started;    /* buckets started during the backward (for reports) */
    /* this step's seconds inside MPI for the gradients, what the backward did not hide:
     * the progress calls made during the backward, and the final wait after it */
    double progress_s, wait_s;
} mm_grad_sync;

mm_status mm_grad_sync_init(mm_grad_sync *g, mm_dist *d, mm_params *p, double bucket_bytes);
void mm_grad_sync_destroy(mm_grad_sync *g);
/* After the forward, before mm_tape_backward: scan the tape and hook into it. */
mm_status mm_grad_sync_begin(mm_grad_sync *g, mm_tape *t);
/* After the backward: start what is left, wait for everything, unhook. */
mm_status mm_grad_sync_finish(mm_grad_sync *g, mm_tape *t);

#endif
