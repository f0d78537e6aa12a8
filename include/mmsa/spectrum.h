/* spectrum.h: the NMR spectrum encoder (DESIGN.md 3b), its autoencoder pre-training
 * (model.objective: spectrum_autoencoder) and the frozen encoder an ACML teacher uses.
 *
 * Owns: binning peak lists onto a grid, the 1-D CNN encoder and the reconstruction
 * decoder (one parameter registry: "enc.spectrum.*" then "dec.spectrum.*", BatchNorm
 * running statistics of the encoder only), the autoencoder trainer (run directory,
 * log.jsonl, checkpoints in checkpoint.h's format with the resolved job text), and the
 * frozen encoder loaded from such a checkpoint.
 *
 * Binning. Grid of kind k: bins b = 0 .. L-1 of width `step` from `min` (13C: -50 to 350
 * ppm at 0.1 = 4000 bins; 1H: 0 to 12 ppm at 0.01 = 1200 bins; job keys spectrum.*).
 * Every peak is a Gaussian of height 1 and standard deviation sigma (ppm), evaluated at
 * the bin centres within 4 sigma: x_b = sum_peaks exp(-(c_b - shift)^2 / (2 sigma^2)).
 * Unit height, not unit area per spectrum: a peak looks the same whatever the number of
 * other peaks (dividing by the peak count would shrink the peaks of big molecules), and
 * coinciding peaks add up, as equivalent nuclei do in a measured spectrum. A peak whose
 * shift lies outside [min, min + L step) is DROPPED and counted (clamping would pile
 * wrong peaks up at the edges); a non-finite shift is dropped and counted likewise.
 *
 * Encoder: input [n, 2, L] = the binned spectrum and a coordinate channel (the bin
 * centre mapped linearly to [-1, 1]) so that global pooling keeps where a feature is,
 * not only that it is (chemical shift IS position); then per stage s a conv1d (kernel
 * spectrum.kernel, stride 2, padding kernel / 2, no bias) + BatchNorm + ReLU, named
 * enc.spectrum.body.{3s}.weight and enc.spectrum.body.{3s+1}.{weight,bias} as the image
 * CNN's stages; global average pooling; Linear to spectrum.embed_dim
 * (enc.spectrum.out.{weight,bias}). Decoder: Linear(E, H) - ReLU - Linear(H, L) giving
 * one logit per bin (dec.spectrum.0, dec.spectrum.2); dense, not a mirrored transposed
 * CNN, because it is thrown away after pre-training and a dense layer makes the
 * embedding itself say where every peak is.
 *
 * Loss: binary cross-entropy with logits against the presence map min(1, x_b), mean over
 * the bins and the molecules of the global batch. A presence map is a valid BCE target
 * whatever the multiplicity; MSE on a target that is ~98% zeros is minimised early by
 * predicting a flat baseline, while BCE's log-loss keeps rewarding every peak bin. Each
 * rank enters its molecules' part with weight n_local / B, so the parts add up to the
 * global mean and summing the gradients over ranks gives the single-rank gradient.
 *
 * Distribution: data parallel over the molecules that have the kind's spectrum; the
 * global batch of step s is a pure function of (seed, s) as in train.h; BatchNorm
 * statistics are global (tape allreduce hook); the gradient allreduce is bucketed
 * (grad_sync.h). N steps + checkpoint + resume + M steps = N + M steps straight. */
#ifndef MMSA_SPECTRUM_H
#define MMSA_SPECTRUM_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "mmsa/grad_sync.h"
#include "mmsa/job.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"
#include "mmsa/run.h"
#include "mmsa/tensor.h"

#define MM_SPECTRUM_MAX_STAGES MM_CFG_LIST_MAX

extern const char *const mm_nmr_kind_names[MM_NMR_KINDS]; /* "nmr13c", "nmr1h" (the job's spellings) */

/* ---- binning ----------------------------------------------------------------------- */

typedef struct mm_spectrum_grid {
    double min, step;        /* ppm: bin b covers [min + b step, min + (b+1) step) */
    int64_t n_bins;          /* L */
    double sigma;            /* peak standard deviation, ppm */
} mm_spectrum_grid;

/* The grid of cfg->kind (or of `kind` >= 0). */
mm_status mm_spectrum_grid_of(const mm_spectrum_config *cfg, int kind, mm_spectrum_grid *g);
/* Grid and sizes: max > min, at least 2^stages bins, sigma > 0, odd kernel. Names the keys. */
mm_status mm_spectrum_config_validate(const mm_spectrum_config *cfg);

/* Bins molecules mols[0 .. n) of sp (indices into sp's molecules) into x [n, L] (row i
 * = mols[i]); *dropped (may be NULL) += the peaks outside the grid or not finite. */
void mm_spectrum_bin(const mm_spectrum_grid *g, const mm_spectra *sp, const int64_t *mols, int64_t n, float *x,
                     int64_t *dropped);

/* ---- the network ------------------------------------------------------------------- */

typedef struct mm_spectrum_net {
    mm_spectrum_config cfg;
    mm_spectrum_grid grid;
    float bn_eps, bn_momentum;
    bool decoder;              /* the decoder's parameters exist */
    mm_params params;
    int conv[MM_SPECTRUM_MAX_STAGES], bn_w[MM_SPECTRUM_MAX_STAGES], bn_b[MM_SPECTRUM_MAX_STAGES];
    float *bn_mean[MM_SPECTRUM_MAX_STAGES], *bn_var[MM_SPECTRUM_MAX_STAGES]; /* [channels[s]] */
    int out_w, out_b, dec0_w, dec0_b, dec2_w, dec2_b;
    float *buffers;            /* BatchNorm running statistics, stage by stage (mean, var) */
    size_t n_buffers;
    int64_t bn_batches;
    float *coord;              /* [L] the coordinate channel */
} mm_spectrum_net;

/* Declares, allocates and initialises (PyTorch defaults: conv and Linear
 * U(+-1/sqrt(fan_in)), BatchNorm gain 1, bias 0, running mean 0, var 1). */
mm_status mm_spectrum_net_init(mm_spectrum_net *net, const mm_spectrum_config *cfg, float bn_eps, float bn_momentum,
                               bool with_decoder, uint64_t seed);
void mm_spectrum_net_destroy(mm_spectrum_net *net);

/* z [n, E] from binned spectra x [n, L] (not copied: must outlive the tape's step).
 * t->training chooses batch or running BatchNorm statistics. */
mm_status mm_spectrum_net_encode(mm_spectrum_net *net, mm_tape *t, float *x, int64_t n, mm_tensor **z);
/* Eval-mode encoding of a molecule set as mm_spectrum_encode describes it, on tape t
 * (reset on the way; gradients and training mode switched off). */
mm_status mm_spectrum_net_encode_set(mm_spectrum_net *net, mm_tape *t, const mm_molset *ms, float *out);
/* logits [n, L] from z [n, E]. */
mm_status mm_spectrum_net_decode(mm_spectrum_net *net, mm_tape *t, mm_tensor *z, mm_tensor **logits);
/* This rank's part of the reconstruction loss: BCE(logits, min(1, x)) mean over this
 * rank's n molecules and L bins, times n / n_global (the parts of all ranks add up to
 * the mean over the global batch). */
mm_status mm_spectrum_loss(mm_tape *t, mm_tensor *logits, const float *x, int64_t n_global, mm_tensor **out);

/* ---- autoencoder pre-training -------------------------------------------------------- */

typedef struct mm_spectrum_report {
    int64_t step, epoch;
    float lr;
    double loss, grad_norm;    /* global */
    int64_t dropped;           /* peaks of the batch outside the grid (global) */
    double seconds;
} mm_spectrum_report;

typedef struct mm_spectrum_trainer {
    mm_job job;
    mm_dist *d;
    mm_dataset *ds;
    mm_spectrum_net net;
    mm_optimizer opt;
    mm_tape tape;
    mm_grad_sync gsync;
    mm_molset ms;              /* this rank's molecules of the current step */
    unsigned modality;         /* MM_MOD_NMR13C or MM_MOD_NMR1H */
    int64_t n_molecules;       /* in the file */
    int64_t n_with;            /* molecules with the spectrum */
    int64_t *with_idx;         /* [n_with] their dataset indices, increasing */
    int64_t n_train;           /* the first n_train of with_idx (train.holdout: the rest) */
    int64_t steps_per_epoch, total_steps, step;
    int64_t *perm, perm_epoch; /* [n_train] */
    int64_t *counts;           /* [ranks] molecules per rank in a batch */
    int64_t *batch_idx;        /* [batch_size] */
    mm_schedule sched;
    int64_t dropped_total;     /* peaks outside the grid over the steps of this process */
    FILE *log;
    char ckpt_dir[1024];
    char *job_text;
    mm_run_clock clock;
    bool quiet;
} mm_spectrum_trainer;

/* Collective. job->model.objective must be spectrum_autoencoder. Resumes from
 * run_dir/checkpoints/latest when job->checkpoint.resume. */
mm_status mm_spectrum_trainer_init(mm_spectrum_trainer *tr, const mm_job *job, mm_dist *d);
mm_status mm_spectrum_trainer_step(mm_spectrum_trainer *tr, mm_spectrum_report *rep);
/* Steps until total_steps (or max_steps more when > 0), log, progress, checkpoints, and a
 * final checkpoint. */
mm_status mm_spectrum_trainer_run(mm_spectrum_trainer *tr, int64_t max_steps);
mm_status mm_spectrum_trainer_checkpoint(mm_spectrum_trainer *tr);
void mm_spectrum_trainer_destroy(mm_spectrum_trainer *tr);
/* Dataset indices (increasing) of the global batch of step s, batch_size of them. */
mm_status mm_spectrum_trainer_batch_indices(mm_spectrum_trainer *tr, int64_t step, int64_t *idx);

/* ---- the frozen encoder (the ACML teacher) -------------------------------------------- */

typedef struct mm_spectrum_model mm_spectrum_model;
/* Loads the encoder half from a spectrum-autoencoder checkpoint (the job text stored in
 * the checkpoint gives the sizes and the grid). An error names the missing parameter when
 * the checkpoint lacks one, and says so when the checkpoint is not a spectrum
 * autoencoder. Collective over comm (the file is opened on it). Only the stored job's
 * spectrum section and model.objective, bn_eps and bn_momentum are read: keys of other
 * sections, added or renamed by later builds, do not matter. */
mm_status mm_spectrum_model_load(const char *ckpt_path, MPI_Comm comm, mm_spectrum_model **out);
void mm_spectrum_model_free(mm_spectrum_model **m);
int mm_spectrum_model_kind(const mm_spectrum_model *m);    /* MM_NMR_13C or MM_NMR_1H */
int64_t mm_spectrum_model_dim(const mm_spectrum_model *m); /* embedding width */
const mm_spectrum_grid *mm_spectrum_model_grid(const mm_spectrum_model *m);
/* The encoder itself (read-only): its configuration, grid and BatchNorm constants. */
const mm_spectrum_net *mm_spectrum_model_net(const mm_spectrum_model *m);
/* Frozen eval-mode encoding (running BatchNorm statistics, no dropout, no gradient) of
 * the molecules of ms: out [ms->n, dim] row-major; rows of molecules without the spectrum
 * (ok = 0) are zeros. Not collective; each molecule's row depends on it alone. */
mm_status mm_spectrum_encode(mm_spectrum_model *m, const mm_molset *ms, float *out);

#endif
