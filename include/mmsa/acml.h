/* acml.h: the ACML objective's projection heads and loss (DESIGN.md section 3b; golden
 * README-acml.md), over a global batch spread across ranks.
 *
 * Owns: the parameters of a projection head (declared in a caller's registry under a
 * prefix, named as in the golden file: "proj.teacher.0.lin_a.weight", ...), its forward
 * on a tape, the loss, and the retrieval ranks that evaluate it. Promises:
 *  - a head is n_cells cells; cell(x) = LayerNorm(dropout(GELU(z) W_b^T + b_b) + z) with
 *    z = x W_a^T + b_a, GELU in erf form, LayerNorm eps 1e-5 with gain and bias; no L2
 *    normalisation;
 *  - the loss is split by rows like MMSA's InfoNCE terms: each rank passes the head
 *    outputs of its own pairs (rows row0 ..), the loss gathers U and G, computes the rows
 *    of the soft targets T = softmax_rows(tau (U U^T + G G^T) / 2) and of Z = U G^T / tau
 *    that its pairs own, and returns its part; the parts of all ranks add up to
 *    L = mean_i (l1_i + l2_i) / 2, no rank holds a B x B matrix, and the targets are not
 *    detached (their gradient reaches U and G);
 *  - retrieval ranks: dot-product scores, ties to the smaller index. */
#ifndef MMSA_ACML_H
#define MMSA_ACML_H

#include <stdint.h>

#include <stdio.h>

#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "mmsa/grad_sync.h"
#include "mmsa/job.h"
#include "mmsa/model.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"
#include "mmsa/run.h"
#include "mmsa/tensor.h"

#define MM_ACML_MAX_CELLS 4

typedef struct mm_acml_head {
    int n_cells;
    int64_t in_dim, width[MM_ACML_MAX_CELLS];
    /* parameter indices per cell: lin_a [w, in], lin_b [w, w], norm gain and bias [w] */
    int wa[MM_ACML_MAX_CELLS], ba[MM_ACML_MAX_CELLS], wb[MM_ACML_MAX_CELLS], bb[MM_ACML_MAX_CELLS];
    int gain[MM_ACML_MAX_CELLS], bias[MM_ACML_MAX_CELLS];
} mm_acml_head;

/* Declare the head's parameters in p (before mm_params_alloc): prefix.<c>.lin_a.weight
 * [width[c], in], .lin_a.bias, .lin_b.weight [width[c], width[c]], .lin_b.bias,
 * .norm.weight, .norm.bias, for c = 0 .. n_cells - 1; the input of cell c > 0 is cell
 * c - 1's output. */
mm_status mm_acml_head_declare(mm_params *p, const char *prefix, int64_t in_dim, const int64_t *width, int n_cells,
                               mm_acml_head *h);
/* PyTorch defaults after mm_params_alloc: Linear U(+-1/sqrt(fan_in)), LayerNorm gain 1, bias 0. */
void mm_acml_head_init(mm_params *p, const mm_acml_head *h, uint64_t seed);

/* out [n, width[n_cells - 1]] for x [n, in_dim]. dropout p applies in training mode,
 * with masks indexed by global row (row0: the global index of x's first row; stream
 * picks the head) so that a run on P ranks draws those of one rank. cell_z and cell_out
 * (each [n_cells] or NULL) receive every cell's z and output, for tests. */
mm_status mm_acml_head_forward(mm_tape *t, const mm_params *p, const mm_acml_head *h, mm_tensor *x, float dropout,
                               uint64_t seed, uint64_t stream, int64_t row0, mm_tensor **out, mm_tensor **cell_z,
                               mm_tensor **cell_out);

/* This rank's part of the ACML loss: u, g [counts[rank], d] its pairs' teacher and graph
 * head outputs (global rows row0 ..). Collective over d (two allgathers, the column
 * statistics). targets_out (may be NULL) receives this rank's rows of T [m, B]. */
mm_status mm_acml_loss_rows(mm_tape *t, mm_dist *d, mm_tensor *u, mm_tensor *g, const int64_t *counts, int64_t row0,
                            float tau, mm_tensor **out, mm_tensor **targets_out);

/* Cross-modal retrieval: rank[i] = 0-based rank of b_i among all b_j scored by
 * a_i . b_j, ties to the smaller j (a, b [n, d], row-major). */
void mm_retrieval_ranks(const float *a, const float *b, int64_t n, int64_t d, int64_t *rank);

/* ---------------------------------------------------------------- teachers
 *
 * A teacher is a frozen encoder of one modality: the image CNN, the conformer SchNet or
 * the fingerprint MLP of an mmsa_pretrain checkpoint (the model is rebuilt from the job
 * stored in the checkpoint, and its parameters and BatchNorm statistics are loaded), or a
 * spectrum encoder (spectrum.h). Frozen: eval mode (running statistics, no dropout), no
 * gradient, not in the optimiser or the gradient allreduce. */

extern const char *const mm_teacher_names[MM_N_TEACHERS + 1]; /* image .. nmr1h, all */

typedef struct mm_acml_teacher {
    int kind;                 /* mm_teacher_kind */
    int64_t dim;              /* output width */
    unsigned modality;        /* the MM_MOD_* bit it reads */
    char init[MM_CFG_STR_MAX];/* the checkpoint it came from */
    mm_model mmsa;            /* image, conformer, fingerprint */
    void *spectrum;           /* nmr13c, nmr1h: mm_spectrum_model */
} mm_acml_teacher;

/* Loads teacher `kind` from checkpoint `path`; errors name the path and, when the
 * checkpoint lacks one of the encoder's parameters, that parameter. Not collective
 * (each rank reads the file). */
mm_status mm_acml_teacher_load(mm_acml_teacher *te, int kind, const char *path);
void mm_acml_teacher_free(mm_acml_teacher *te);
/* Frozen outputs of the molecules of ms (read with te->modality): out [ms->n, dim];
 * ok[i] = 1 when molecule i has the modality (else its row is zeros). Uses the tape's
 * arena (reset first) and no communication. */
mm_status mm_acml_teacher_encode(mm_acml_teacher *te, mm_tape *t, const mm_molset *ms, float *out, uint8_t *ok);

/* ---------------------------------------------------------------- training */

typedef struct mm_acml_report {
    int64_t step, epoch;
    float lr;
    double loss, loss_t[MM_N_TEACHERS], grad_norm, seconds;
    int64_t pairs[MM_N_TEACHERS];  /* pairs of the global batch in each teacher's loss */
} mm_acml_report;

typedef struct mm_acml_trainer {
    mm_job job;
    mm_dist *d;
    mm_dataset *ds;
    int n_teachers;
    mm_acml_teacher teacher[MM_N_TEACHERS];
    float *t_out[MM_N_TEACHERS];  /* cached outputs [N, dim] (NULL: on the fly) */
    uint8_t *t_ok[MM_N_TEACHERS]; /* [N] modality present */
    float *t_mean[MM_N_TEACHERS], *t_inv_sd[MM_N_TEACHERS]; /* acml.teacher_norm standardize: [dim] */
    mm_model student;             /* graph encoder + both heads of every teacher */
    mm_acml_head head_t[MM_N_TEACHERS], head_g[MM_N_TEACHERS];
    mm_optimizer opt;
    mm_tape tape;
    mm_grad_sync gsync;
    mm_molset ms;
    int64_t n_molecules;
    int64_t *train_idx, n_train;  /* training molecules (with at least one teacher's modality) */
    int64_t *held_idx, n_held;    /* held out by the scaffold split */
    int64_t steps_per_epoch, total_steps, step;
    int64_t *perm, perm_epoch, *counts, *batch_idx;
    float *row_out[MM_N_TEACHERS]; /* this rank's teacher rows of a step [row_cap, dim] */
    uint8_t *row_ok[MM_N_TEACHERS];/* [row_cap] */
    int64_t row_cap;               /* the largest share of a batch: ceil(batch / ranks) */
    mm_schedule sched;
    FILE *log;
    char ckpt_dir[1024];
    char *job_text;
    mm_run_clock clock;
    bool quiet;
} mm_acml_trainer;

/* Collective. Opens the dataset, splits it (run_dir/split.json), loads the teachers
 * (and computes or reuses their cache in run_dir/teachers/), builds the student and the
 * heads, resumes from the latest checkpoint when job.checkpoint.resume. */
mm_status mm_acml_trainer_init(mm_acml_trainer *tr, const mm_job *job, mm_dist *d);
/* The teacher k's (standardised) outputs of dataset rows idx[0..n) into out [n, dim] and
 * their flags: from the cache, or encoded now from ms (which holds those molecules with
 * the teacher's modality), using the arena of t. */
mm_status mm_acml_teacher_rows(mm_acml_trainer *tr, int k, const int64_t *idx, int64_t n, const mm_molset *ms,
                               mm_tape *t, float *out, uint8_t *ok);
/* The student (the job's graph encoder) and the heads of tr's teachers in one registry,
 * initialised from train.seed as at step 0 (fills tr->head_t, tr->head_g). */
mm_status mm_acml_build_student(mm_acml_trainer *tr, mm_model *m);
mm_status mm_acml_trainer_step(mm_acml_trainer *tr, mm_acml_report *rep);
mm_status mm_acml_trainer_run(mm_acml_trainer *tr, int64_t max_steps);
void mm_acml_trainer_destroy(mm_acml_trainer *tr);
/* Collective. Head outputs of the held-out molecules, trained and untrained (the model at
 * step 0 of the same seed), written by rank 0 to path in the format mmsa_eval reads
 * (eval.h). top1 (may be NULL): teacher->graph top-1 among the held-out molecules with
 * the first teacher's modality, trained and untrained. */
mm_status mm_acml_write_heldout(mm_acml_trainer *tr, const char *path, double top1[2]);

#endif
