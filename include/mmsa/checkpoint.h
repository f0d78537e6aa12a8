/* checkpoint.h: training checkpoints in parallel HDF5, atomic, restartable at any rank count.
 *
 * Owns: the checkpoint file format and the checkpoint directory (<dir>/step_<012d>.h5
 * files and the <dir>/latest pointer). It does not own the objects it saves: the
 * caller passes the parameter registry, the optimiser, the BatchNorm running
 * statistics and the memory bank, already built for the model.
 *
 * File layout (HDF5, superblock v2+ so every metadata block carries a checksum):
 *   /            attrs format="mmsa-checkpoint", version=1, step, epoch, cursor, seed,
 *                n_ranks_written, created_by, job (the resolved job text, may be "")
 *   /params/<name>       float32 with the parameter's shape (names may contain dots)
 *   /optim               attrs kind ("adamw"|"sgd"), step, beta1, beta2, eps,
 *                        weight_decay, momentum, nesterov
 *   /optim/m/<name>      first moment (AdamW) or momentum buffer (SGD), like /params
 *   /optim/v/<name>      second moment (AdamW only)
 *   /buffers             float32 [n_buffers], attr bn_batches
 *   /memory/anchors      float32 [M, dim]  (only when a bank was saved)
 *   /memory/unused       int64 [M]         attrs tau, momentum, reseed_after
 * Every dataset carries a uint64 attribute "checksum" over its values (replicated
 * datasets: a hash of the whole array; bank datasets: the sum over rows of a hash of
 * (row index, row), so any partition of the rows gives the same value): a flipped
 * byte in the raw data is an error on reading, not a silently different restart.
 *
 * Promises:
 *  - a checkpoint becomes visible only when complete: it is written collectively to
 *    <dir>/.step_<012d>.h5.tmp, closed, renamed by rank 0, and only then is `latest`
 *    replaced (temp file + rename). A failed write leaves no file under a final name,
 *    removes the temp file and leaves `latest` untouched;
 *  - every collective function returns the same status on every rank: the outcome of
 *    each phase is agreed (allreduce), and the message of the first failing rank is
 *    broadcast, so a failure on one rank never leaves the others waiting;
 *  - replicated state (parameters, optimiser, buffers, scalars) is written once, with
 *    rank 0's values; the memory bank is one global dataset, each rank writing and
 *    reading its own block of rows, so a run saved on P ranks restores on any Q;
 *  - errors name the file and the dataset (not a checkpoint, truncated, corrupt,
 *    another model's parameters); HDF5's own error printing is silenced meanwhile. */
#ifndef MMSA_CHECKPOINT_H
#define MMSA_CHECKPOINT_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmsa/dist.h"
#include "mmsa/error.h"
#include "mmsa/memory_bank.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"

#define MM_CKPT_FORMAT "mmsa-checkpoint"
#define MM_CKPT_VERSION 1

typedef struct mm_ckpt_state {
    int64_t step;            /* optimiser steps done */
    int64_t epoch, cursor;   /* data position: epoch, and steps done within it */
    uint64_t seed;           /* the run's seed (every random draw is counter-based: seed + step suffice) */
    mm_params *params;       /* parameters by name (required) */
    mm_optimizer *opt;       /* state laid out like params; NULL: not saved / not restored */
    float *buffers;          /* (n_buffers) BatchNorm running statistics, may be NULL when n_buffers = 0 */
    size_t n_buffers;
    int64_t bn_batches;      /* batches folded into the running statistics */
    mm_memory_bank *bank;    /* may be NULL */
    const char *job_text;    /* resolved job YAML, stored as the root attribute "job" (may be NULL) */
} mm_ckpt_state;

/* Collective over d. Writes <dir>/step_<012d>.h5 (step = s->step) atomically, then
 * points <dir>/latest at it, then deletes the oldest step_*.h5 files so that at most
 * `keep` remain (keep <= 0 keeps all; the file just written is never deleted, the
 * others are ranked by step). Creates <dir> (and its parents) if needed. The bank,
 * if any, must be partitioned over d (mm_dist_block of its M over d's ranks). */
mm_status mm_ckpt_write(const char *dir, mm_dist *d, const mm_ckpt_state *s, int keep);

/* Not collective (any rank may call it). path (n bytes) receives <dir>/<name> of the
 * checkpoint named by <dir>/latest; *found = false (and MM_OK) when <dir> or `latest`
 * does not exist. A `latest` that names a missing file, or holds no valid name, is an
 * error with a HINT. */
mm_status mm_ckpt_latest(const char *dir, char *path, size_t n, bool *found);

/* Collective over d. Loads the checkpoint at path into s's already-initialised
 * objects of the same model: every parameter name and shape must match the registry
 * (the error names the first mismatch: missing, extra or wrong shape); with s->opt,
 * the optimiser kind must match and its step and state buffers are restored (its
 * hyperparameters stay the caller's: they belong to the job); n_buffers must match;
 * with s->bank, the bank's M and dim must match, and each rank reads its own block
 * under the CURRENT partition (the writer's rank count is irrelevant). Restores step,
 * epoch, cursor, seed, bn_batches. s->job_text is not touched. On failure the
 * objects' values are unspecified (their allocations stay valid). */
mm_status mm_ckpt_read(const char *path, mm_dist *d, mm_ckpt_state *s);

/* Parameters only (fine-tuning, embedding, frozen encoders): every parameter of
 * `params` whose name starts with `prefix` (NULL or "": all) and appears in the file
 * is loaded (its shape must match); *n_loaded counts them. Collective over comm only
 * for the file open and close (MPI_COMM_SELF is fine); reads are independent. */
mm_status mm_ckpt_load_params(const char *path, MPI_Comm comm, mm_params *params, const char *prefix,
                              int *n_loaded);

/* Like mm_ckpt_load_params, but every parameter of `params` whose name starts with
 * `prefix` must be in the file: the error names the first one missing (frozen teachers). */
mm_status mm_ckpt_load_params_all(const char *path, MPI_Comm comm, mm_params *params, const char *prefix);
/* BatchNorm running statistics for fine-tuning and embedding: the first n values of the
 * checkpoint's /buffers (a model's buffers are laid out encoder by encoder, the graph
 * encoder's first) into dst, and its bn_batches. The file must hold at least n values;
 * the checksum is checked. Collective over comm like mm_ckpt_load_params. */
mm_status mm_ckpt_load_buffers(const char *path, MPI_Comm comm, float *dst, size_t n, int64_t *bn_batches);

/* The resolved job text stored in the checkpoint (root attribute "job"; "" when the
 * writer stored none) into *text (malloc'ed, the caller frees it). The format is checked
 * as for the loads above. Collective over comm like mm_ckpt_load_params. */
mm_status mm_ckpt_load_job(const char *path, MPI_Comm comm, char **text);

#endif
