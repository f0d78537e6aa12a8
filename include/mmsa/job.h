/* job.h: the mmsa_pretrain job: every setting, its default, and its schema.
 *
 * Owns: the mm_job struct and the schema that fills it from YAML (config.h).
 * Promises: mm_job_load gives a job whose every field is set (defaults where the file
 * is silent) and validated; cross-field rules (e.g. knn_k < global batch) are checked
 * by mm_job_validate with a message naming the keys. configs/reference.yaml is this
 * schema printed. */
#ifndef MMSA_JOB_H
#define MMSA_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/config.h"

typedef enum { MM_OBJ_MMSA = 0, MM_OBJ_SPECTRUM_AE = 1, MM_OBJ_ACML = 2 } mm_objective;
typedef enum { MM_POOL_MEAN = 0, MM_POOL_SUM = 1 } mm_gin_pool;
typedef enum { MM_READOUT_LINEAR = 0, MM_READOUT_MLP = 1 } mm_gin_readout;
/* ACML teachers (acml.teacher); MM_TEACHER_ALL: every teacher the job can load, one loss each. */
typedef enum {
    MM_TEACHER_IMAGE = 0, MM_TEACHER_CONFORMER, MM_TEACHER_FINGERPRINT, MM_TEACHER_NMR13C, MM_TEACHER_NMR1H,
    MM_N_TEACHERS, MM_TEACHER_ALL = MM_N_TEACHERS
} mm_teacher_kind;
typedef enum { MM_KNN_ALLGATHER = 0, MM_KNN_RING = 1, MM_KNN_SCALAPACK = 2 } mm_knn_backend;
typedef enum { MM_OPTIMIZER_ADAMW = 0, MM_OPTIMIZER_SGD = 1 } mm_optimizer_kind;

typedef struct mm_model_config {
    int objective;             /* mm_objective */
    int embed_dim;
    int proj_hidden, proj_dim;
    int gin_layers, gin_hidden;
    float gin_dropout;
    int gin_pool;              /* mm_gin_pool */
    int gin_readout;           /* mm_gin_readout: linear, or Linear-ReLU-Linear (ACML's student) */
    int schnet_hidden, schnet_filters, schnet_interactions, schnet_n_rbf;
    float schnet_cutoff;
    bool schnet_keep_filters;       /* cfconv keeps its filters for the backward (cfconv.h) */
    int n_cnn_channels;        /* count of cnn_channels (must precede it) */
    int cnn_channels[MM_CFG_LIST_MAX];
    int image_size;
    int fp_bits, fp_hidden;
    int gate_att_dim, decoder_hidden, hg_hidden;
    bool use_conformer, use_image, use_fingerprint;
    float bn_eps, bn_momentum;
} mm_model_config;

typedef struct mm_loss_config {
    int knn_k;
    int n_anchors;
    float tau_align, tau_hg, tau_mem;
    float mem_momentum;
    int mem_reseed_after;
    int mem_init;              /* mm_bank_init_rule (memory_bank.h) */
    int mem_reseed_from;       /* mm_bank_reseed_rule */
    float w_align, w_rec, w_hg, w_mem;
} mm_loss_config;

typedef struct mm_train_config {
    char dataset[MM_CFG_STR_MAX];
    char run_dir[MM_CFG_STR_MAX];
    int64_t seed;
    int batch_size;            /* global: molecules per step over all ranks */
    int epochs;
    int64_t max_steps;         /* 0 = epochs decide */
    int optimizer;             /* mm_optimizer_kind */
    float lr, lr_min;
    int64_t warmup_steps;
    float weight_decay, beta1, beta2, adam_eps, momentum;
    float grad_clip;
    int log_every;
    bool progress;
    int64_t holdout;           /* molecules kept out of training for retrieval evaluation */
    int precision;             /* mm_precision of the layers' GEMMs */
} mm_train_config;

typedef struct mm_checkpoint_config {
    int64_t every;             /* steps; 0 = only at the end */
    int keep;
    bool resume;               /* resume from run_dir/checkpoints/latest if present */
} mm_checkpoint_config;

typedef struct mm_dist_config {
    int knn_backend;           /* mm_knn_backend */
    float bucket_mb;
    int blis_threads;
} mm_dist_config;

/* The NMR spectrum autoencoder (model.objective: spectrum_autoencoder; spectrum.h). */
typedef struct mm_spectrum_config {
    int kind;                  /* MM_NMR_13C or MM_NMR_1H (dataset.h) */
    float nmr13c_min, nmr13c_max, nmr13c_step, nmr13c_sigma; /* grid and peak width, ppm */
    float nmr1h_min, nmr1h_max, nmr1h_step, nmr1h_sigma;
    int n_channels;            /* count of channels (must precede it) */
    int channels[MM_CFG_LIST_MAX];
    int kernel;
    int embed_dim;
    int decoder_hidden;
} mm_spectrum_config;
/* ACML (DESIGN.md section 3b): the student is the graph encoder of `model` (ACML's
 * sizes: gin_layers 5, gin_hidden 64, embed_dim 64, gin_pool sum, gin_readout mlp). */
typedef struct mm_acml_config {
    int teacher;               /* mm_teacher_kind */
    char teacher_init[MM_CFG_STR_MAX]; /* mmsa_pretrain checkpoint (image, conformer, fingerprint)
                                        * or spectrum-autoencoder checkpoint (nmr13c, nmr1h) */
    char nmr13c_init[MM_CFG_STR_MAX];  /* teacher all: the 13C spectrum autoencoder ("" = none) */
    char nmr1h_init[MM_CFG_STR_MAX];   /* teacher all: the 1H spectrum autoencoder ("" = none) */
    int n_head_widths;
    int head_widths[MM_CFG_LIST_MAX];
    float head_dropout;
    float tau;
    bool cache_teachers;
    int teacher_norm;          /* 0 none, 1 standardize (per dimension, over the training molecules) */
    float holdout_fraction;    /* scaffold split: this share of the molecules is held out */
} mm_acml_config;

typedef struct mm_job {
    mm_model_config model;
    mm_loss_config loss;
    mm_train_config train;
    mm_checkpoint_config checkpoint;
    mm_dist_config dist;
    mm_spectrum_config spectrum;
    mm_acml_config acml;
} mm_job;

extern const mm_cfg_schema mm_job_schema;

mm_status mm_job_load(const char *path, mm_job *job);
mm_status mm_job_validate(const mm_job *job);

#endif
