/* train.h: the pre-training loop behind mmsa_pretrain.
 *
 * Owns: the model, optimiser, memory bank, the step arena, the dataset handle and the
 * run directory (log.jsonl, job.yaml, checkpoints/). Promises:
 *  - the global batch of step s is a pure function of (seed, s): epoch e shuffles the
 *    training molecules with the counter-based RNG, batch k takes perm[kB .. kB+B),
 *    sorted, and rank r takes its contiguous block of it, reading only those rows;
 *  - N steps + checkpoint + restart + N steps gives bitwise the parameters of 2N
 *    steps straight (every state that a step reads is in the checkpoint);
 *  - a NaN or Inf in the loss or the gradients stops the run with an error naming the
 *    step and the terms, before any parameter or checkpoint is touched;
 *  - memory does not grow with the number of steps (one arena, reset each step). */
#ifndef MMSA_TRAIN_H
#define MMSA_TRAIN_H

#include <stdio.h>

#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "mmsa/grad_sync.h"
#include "mmsa/job.h"
#include "mmsa/memory_bank.h"
#include "mmsa/model.h"
#include "mmsa/optim.h"
#include "mmsa/run.h"
#include "mmsa/tensor.h"

/* What one step reports (global values, identical on every rank). */
typedef struct mm_step_report {
    int64_t step, epoch;
    float lr;
    double loss, l_align, l_align_mod[MM_N_MODS], l_rec, l_hg, l_mem, grad_norm;
    mm_bank_stats bank;
    double seconds;          /* wall time of the step on this rank */
    double grad_exposed_s;   /* of which waiting for the gradient allreduce (not hidden by the backward) */
    double comm_bytes[MM_COMM_KINDS]; /* payload bytes of this rank's collectives in the step */
} mm_step_report;

typedef struct mm_trainer {
    mm_job job;
    mm_dist *d;
    mm_dataset *ds;
    mm_model model;
    mm_optimizer opt;
    mm_memory_bank bank;
    mm_tape tape;
    mm_grad_sync gsync;         /* bucketed gradient allreduce */
    mm_molset ms;               /* this rank's molecules of the current step */
    unsigned modalities;        /* read from the file */
    int64_t n_molecules, n_train;
    int64_t steps_per_epoch, total_steps;
    int64_t step;               /* steps done */
    int64_t *perm;              /* [n_train] permutation of the current epoch */
    int64_t perm_epoch;         /* epoch perm belongs to (-1: none) */
    int64_t *counts;            /* [ranks] molecules per rank in a batch */
    int64_t *batch_idx;         /* [batch_size] scratch */
    mm_schedule sched;
    FILE *log;                  /* rank 0: run_dir/log.jsonl */
    char ckpt_dir[1024];
    char *job_text;             /* resolved job, YAML */
    mm_run_clock clock;
    bool quiet;                 /* no progress line */
} mm_trainer;

/* Set everything up; resumes from run_dir/checkpoints/latest when job.checkpoint.resume. */
mm_status mm_trainer_init(mm_trainer *tr, const mm_job *job, mm_dist *d);
/* One optimiser step. */
mm_status mm_trainer_step(mm_trainer *tr, mm_step_report *rep);
/* Steps until total_steps (or until `max_steps` more when > 0), with logging, progress
 * and checkpoints; writes a final checkpoint. */
mm_status mm_trainer_run(mm_trainer *tr, int64_t max_steps);
mm_status mm_trainer_checkpoint(mm_trainer *tr);
void mm_trainer_destroy(mm_trainer *tr);

/* Global batch of step s: indices (sorted) into the dataset, batch_size of them. */
mm_status mm_trainer_batch_indices(mm_trainer *tr, int64_t step, int64_t *idx);

/* Cross-modal retrieval: top-1 accuracy of graph -> fingerprint projections among the
 * molecules [start, end) of the dataset (eval mode: running BatchNorm statistics, no
 * dropout). Collective; every rank gets the same value. */
mm_status mm_eval_retrieval(mm_trainer *tr, int64_t start, int64_t end, double *top1, double *top5);

#endif
