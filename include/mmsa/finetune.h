/* finetune.h: mmsa_finetune: the graph encoder fine-tuned on a labelled set, with
 * MoleculeNet splits and metrics.
 *
 * Owns: the fine-tuning job and its schema (sections data, split, model, train), the
 * dataset splits (scaffold, random), and one fine-tuning run: data preparation (a CSV
 * is featurised on the fly by the prep library, graph and scaffold only), label
 * checks, the split written into the run directory, then for every seed a GIN graph
 * encoder (mm_model_init with the pre-training job's model sizes; from scratch or
 * with "enc.graph.*" loaded from a checkpoint) plus a linear or MLP head, trained
 * data-parallel with AdamW and selected on the validation metric.
 *
 * Promises:
 *  - Splits are deterministic functions of the data (scaffold) or of (n, seed)
 *    (random), independent of the number of ranks, and written to run_dir/split.json.
 *  - Scaffold split: molecules grouped by their Bemis-Murcko scaffold string (the
 *    string "" of acyclic molecules is one group), groups sorted by size, largest
 *    first, each group placed whole. Two published tie and fill rules:
 *      deepchem (MoleculeNet's ScaffoldSplitter, pretrain-gnns; the default): equal
 *        sizes ordered by first occurrence DESCENDING (Python's sorted of the key
 *        (size, first index) with reverse=True); a group goes to train unless
 *        train + group > frac_train n, then to valid unless train + valid + group >
 *        (frac_train + frac_valid) n, else to test;
 *      chemprop (scaffold_split, balanced = false): equal sizes in order of first
 *        occurrence (a stable sort); train if train + group <= frac_train n, else
 *        valid if valid + group <= frac_valid n, else test.
 *    (On a file sorted by label, as MoleculeNet's BBBP is, chemprop's order sends the
 *    last rows' singletons to valid and test, which then hold one class.)
 *  - Random split = a Philox permutation of the molecules seeded with split.seed:
 *    the first floor(frac_train n) to train, up to floor((frac_train + frac_valid) n)
 *    to valid, the rest to test (chemprop's random split, with our generator).
 *  - Data parallel: the global batch of a step is a pure function of (seed, epoch,
 *    step); rank r trains on its contiguous block of it; BatchNorm statistics are
 *    those of the global batch (tape allreduce hook); dropout masks are indexed by
 *    global rows; each rank's loss is scaled by its share of the global label count,
 *    so the allreduced gradient is the gradient of the global batch's mean loss. A
 *    run on P ranks follows the single-rank run to float tolerance.
 *  - Labels: classification labels must be 0 or 1 (NaN = missing); any other value,
 *    and any CSV cell that is not a number, is reported by row and column (every
 *    such cell counted, the first ones quoted) and is an error unless
 *    data.bad_labels = missing, which keeps those cells as missing labels.
 *  - Regression trains on targets standardised with the mean and standard deviation
 *    of the TRAIN split only; metrics are computed on the original scale.
 *  - Model selection: the epoch with the best validation metric (ROC-AUC higher,
 *    RMSE lower; the first such epoch on ties) gives the reported test metric.
 *    Several seeds report mean and standard deviation (ddof = 0, as chemprop).
 *    With train.patience P > 0 a seed stops after P epochs without a better
 *    validation metric (early stopping; the result records the epoch it stopped at);
 *    the epochs it ran are those of the run without patience, so the reported test
 *    metric is the one the full run would report whenever its best epoch comes before
 *    the stop.
 *  - Every function that takes an mm_dist is collective and returns the same status
 *    on every rank. Output files are written by rank 0. */
#ifndef MMSA_FINETUNE_H
#define MMSA_FINETUNE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/config.h"
#include "mmsa/dist.h"
#include "mmsa/error.h"

/* ---------------------------------------------------------------- splits */

enum { MM_SPLIT_TRAIN = 0, MM_SPLIT_VALID = 1, MM_SPLIT_TEST = 2, MM_N_SPLITS = 3 };
extern const char *const mm_split_names[MM_N_SPLITS]; /* train, valid, test */

typedef struct mm_split {
    int64_t *idx[MM_N_SPLITS]; /* [n[k]] molecule indices, ascending */
    int64_t n[MM_N_SPLITS];
    int64_t n_groups;          /* scaffold split: distinct scaffolds; random: 0 */
} mm_split;

typedef enum { MM_SCAFFOLD_DEEPCHEM = 0, MM_SCAFFOLD_CHEMPROP = 1 } mm_scaffold_rule;

/* scaffold [n] strings (NULL counts as ""); 0 < frac_train, 0 <= frac_valid,
 * frac_train + frac_valid <= 1. out must be zeroed or freed. */
mm_status mm_split_scaffold(const char *const *scaffold, int64_t n, double frac_train, double frac_valid,
                            mm_scaffold_rule rule, mm_split *out);
mm_status mm_split_random(int64_t n, double frac_train, double frac_valid, uint64_t seed, mm_split *out);
void mm_split_free(mm_split *s);
/* JSON: {"type": ..., "n": N, "n_groups": G, "train": [...], "valid": [...], "test": [...],
 * "train_source_row": [...], ...}; source_row [N] may be NULL. */
mm_status mm_split_write_json(const mm_split *s, const char *type, const int64_t *source_row, int64_t n,
                              const char *path);

/* ---------------------------------------------------------------- the job */

typedef enum { MM_FT_CLASSIFICATION = 0, MM_FT_REGRESSION = 1 } mm_ft_task_type;
typedef enum { MM_FT_SPLIT_SCAFFOLD = 0, MM_FT_SPLIT_SCAFFOLD_CHEMPROP = 1, MM_FT_SPLIT_RANDOM = 2 } mm_ft_split_type;
typedef enum { MM_FT_HEAD_LINEAR = 0, MM_FT_HEAD_MLP = 1 } mm_ft_head;
typedef enum { MM_FT_BAD_ERROR = 0, MM_FT_BAD_MISSING = 1 } mm_ft_bad_labels;

typedef struct mm_ft_data_config {
    char dataset[MM_CFG_STR_MAX];    /* an mmsa_prep file with /labels (or "") */
    char csv[MM_CFG_STR_MAX];        /* or a CSV (plain or .gz), prepared into run_dir/dataset.h5 */
    char smiles_col[MM_CFG_STR_MAX]; /* CSV: SMILES column ("" = prep's default names) */
    char tasks[MM_CFG_STR_MAX];      /* "all" or label names, comma-separated (CSV quoting) */
    int task_type;                   /* mm_ft_task_type */
    int bad_labels;                  /* mm_ft_bad_labels */
    int64_t limit;                   /* first N rows / molecules only (0 = all) */
} mm_ft_data_config;

typedef struct mm_ft_split_config {
    int type;                        /* mm_ft_split_type */
    float train, valid, test;        /* fractions, sum 1 */
    int64_t seed;                    /* random split */
} mm_ft_split_config;

typedef struct mm_ft_model_config {
    char init[MM_CFG_STR_MAX];         /* "from_scratch" or a checkpoint path */
    char pretrain_job[MM_CFG_STR_MAX]; /* pre-training job.yaml with the encoder sizes ("" = next to the checkpoint) */
    int embed_dim, gin_layers, gin_hidden; /* 0 = from the pre-training job (or its defaults) */
    float gin_dropout;
    int head;                          /* mm_ft_head */
    int head_hidden;
    float head_dropout;
} mm_ft_model_config;

typedef struct mm_ft_train_config {
    char run_dir[MM_CFG_STR_MAX];
    int epochs, batch_size;            /* batch_size: GLOBAL, over all ranks */
    int patience;                      /* stop after this many epochs without a better valid metric (0: off) */
    float lr, weight_decay, beta1, beta2, adam_eps, grad_clip;
    int seeds;                         /* runs with seeds seed, seed + 1, ... */
    int64_t seed;
    int eval_chunk;                    /* molecules per evaluation forward */
    bool progress;                     /* one line per epoch on rank 0 (stderr) */
    int precision;                     /* mm_precision of the layers' GEMMs */
} mm_ft_train_config;

typedef struct mm_ft_job {
    mm_ft_data_config data;
    mm_ft_split_config split;
    mm_ft_model_config model;
    mm_ft_train_config train;
} mm_ft_job;

extern const mm_cfg_schema mm_ft_schema;

/* Schema only (defaults + the YAML text); `name` is used in messages. */
mm_status mm_ft_job_parse(const char *name, const char *yaml, mm_ft_job *job);
/* Cross-key rules. yaml (may be NULL) is the job text, so a message can name the
 * file:line:column of the key at fault. */
mm_status mm_ft_job_validate(const mm_ft_job *job, const char *name, const char *yaml);
/* Read the file, parse, validate. */
mm_status mm_ft_job_load(const char *path, mm_ft_job *job);
/* Text of a file (NUL-terminated, mm_malloc'ed; *len bytes without the NUL). */
mm_status mm_ft_read_text(const char *path, char **text, size_t *len);

/* ---------------------------------------------------------------- a run */

#define MM_FT_MAX_SEEDS 64
#define MM_FT_MAX_TASKS 1024

typedef struct mm_ft_seed_result {
    int64_t seed;
    int best_epoch;            /* 1-based */
    int stopped_epoch;         /* last epoch run (train.epochs, or earlier by train.patience) */
    double valid, test;        /* main metric at the best epoch */
    double valid_aux, test_aux;/* PR-AUC (classification) or MAE (regression) at the best epoch */
    int test_skipped;          /* tasks without both classes in test (classification) */
    double seconds;            /* wall time of the seed (training and evaluation) */
} mm_ft_seed_result;

typedef struct mm_ft_result {
    char metric[16], aux_metric[16]; /* "roc_auc" / "pr_auc", or "rmse" / "mae" */
    bool higher_better;
    int n_tasks;
    int64_t n_molecules;             /* molecules used (after data.limit) */
    int64_t n_split[MM_N_SPLITS];
    int64_t n_groups;                /* scaffold groups */
    int skipped[MM_N_SPLITS];        /* classification: tasks with one class in each split */
    int64_t bad_labels;              /* bad cells found (kept as missing with bad_labels = missing) */
    int n_seeds;
    mm_ft_seed_result seed[MM_FT_MAX_SEEDS];
    double valid_mean, valid_std, test_mean, test_std, aux_mean, aux_std;
    double epoch_seconds;            /* mean wall time of one training epoch (evaluation excluded) */
    double eval_seconds;             /* mean wall time of one validation + test evaluation */
    int epochs;
    int64_t n_params;                /* trainable values of the encoder + head */
    char dataset[MM_CFG_STR_MAX];    /* the dataset file used */
    char encoder_from[MM_CFG_STR_MAX]; /* where the encoder sizes came from */
} mm_ft_result;

enum {
    MM_FT_PREPARE_ONLY = 1u << 0     /* data, label checks and split only, no training */
};

/* Collective over d. res may be NULL. */
mm_status mm_finetune_run(const mm_ft_job *job, mm_dist *d, unsigned flags, mm_ft_result *res);

/* One line per seed and the summary, as mmsa_finetune prints them. */
void mm_ft_result_print(const mm_ft_result *r, FILE *f);

#endif
