/* eval.h: mmsa_eval, the evaluation of an ACML run on the molecules it held out:
 * cross-modal retrieval and isomer discrimination (DESIGN.md section 3b, issue 11 item 5).
 *
 * Owns: the held-out embeddings file (read and write), the retrieval pools, the isomer
 * groups, and the report (JSON, Markdown, a gnuplot PNG of the top-k curves).
 *
 * Held-out embeddings file (HDF5; written by the ACML trainer, read here):
 *   /            attrs format="mmsa-acml-embeddings", version=1 (int64), dataset (path),
 *                checkpoint (path), step (int64)
 *   /index                       int64 [n]     dataset rows of the held-out molecules,
 *                                              strictly increasing, >= 0
 *   /<teacher>/graph             float32 [n,P] student (graph) head outputs of that pairing
 *   /<teacher>/teacher           float32 [n,P] teacher head outputs
 *   /<teacher>/ok                uint8 [n]     0/1: the molecule has this teacher's modality
 *   /untrained/<teacher>/graph, /untrained/<teacher>/teacher   the same from the untrained
 *                                              model (same seed, step 0), same shapes
 *   <teacher> in mm_eval_teacher_names (those the run trained; at least one). Rows whose
 *   ok is 0 may hold anything finite; every value must be finite.
 *
 * Promises:
 *  - Scores are dot products s(a, b) = sum_q a_q b_q summed in double in the order q = 0..P-1
 *    (no normalisation), exactly as mm_retrieval_ranks, so the ranks here equal its ranks.
 *    A rank is 0-based; ties go to the smaller index (the true partner loses a tie to a
 *    candidate of smaller held-out row, wins it against a larger one). Top-k = rank < k.
 *  - Retrieval, per teacher, over the m molecules with ok = 1: pools of a given size are
 *    disjoint consecutive blocks of the Philox permutation of those m molecules
 *    (mm_rng_permutation, seed, stream 0); the m mod size molecules past the last whole
 *    block are in no pool; pool 0 ("all") is one pool of all m. Within a pool, members are
 *    in increasing held-out row. Each molecule is a query in both directions: teacher ->
 *    graph (its teacher embedding ranks the pool's graph embeddings) and graph -> teacher.
 *    A pool size larger than m is skipped (reported as such); sizes are >= 2.
 *    Top-k is the mean over pools of the per-pool fraction (pools are equally large, so
 *    also the mean over queries). Chance level of top-k in a pool of size s: min(k, s) / s.
 *    The untrained model is evaluated on the same pools.
 *  - Isomer groups, per teacher: the molecules with ok = 1 and a formula, grouped by
 *    molecular formula (mm_chem_formula_atoms, Open Babel's convention, net charge
 *    included); within a formula, one molecule per canonical SMILES (the first held-out
 *    row; later rows with the same SMILES are counted as duplicates and left out); a group
 *    is a formula with >= 2 distinct SMILES. (Stereoisomers have different canonical
 *    SMILES and so count as different members.) Groups are ordered by their first
 *    member, members by held-out row. Each member's teacher embedding scores the group's
 *    graph embeddings; its rank follows the tie rule above; accuracy = fraction of rank 0,
 *    chance = mean of 1 / group size over the same molecules; reported overall and by
 *    group size (2, 3, 4-5, 6-10, 11+).
 *  - Bad input is an mm error naming the file and the dataset or row: a missing file
 *    (MM_ERR_IO), a foreign or malformed one (MM_ERR_FORMAT: format, version, shapes,
 *    dtypes, index order, ok values), a non-finite value (MM_ERR_NUMERIC), an index past
 *    the dataset's molecules, a teacher with no held-out molecule that has its modality
 *    (MM_ERR_ARG). Nothing is printed by the library except by mm_eval_files (its report).
 *  - Serial; O(m^2 P) per teacher and model. */
#ifndef MMSA_EVAL_H
#define MMSA_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/error.h"

#define MM_EVAL_FORMAT "mmsa-acml-embeddings"
#define MM_EVAL_VERSION 1
#define MM_EVAL_N_TEACHERS 5
#define MM_EVAL_KMAX 50    /* top-k curves: k = 1 .. MM_EVAL_KMAX */
#define MM_EVAL_MAX_POOLS 8
#define MM_EVAL_N_BINS 5   /* isomer group sizes: 2, 3, 4-5, 6-10, 11+ */
#define MM_EVAL_FORMULA_MAX 64

/* image, conformer, fingerprint, nmr13c, nmr1h (the HDF5 group names). */
extern const char *const mm_eval_teacher_names[MM_EVAL_N_TEACHERS];
/* Smallest group size of each bin; bin b holds sizes [lo[b], lo[b + 1]). */
extern const int64_t mm_eval_bin_lo[MM_EVAL_N_BINS];

/* ---------------------------------------------------------------- the embeddings file */

typedef struct mm_eval_pairing {
    int64_t dim;                /* P */
    float *graph, *teacher;     /* [n, P] trained model */
    float *graph0, *teacher0;   /* [n, P] untrained model */
    uint8_t *ok;                /* [n] */
} mm_eval_pairing;

typedef struct mm_eval_emb {
    char *dataset, *checkpoint; /* attributes (mm_malloc'd strings) */
    int64_t step;
    int64_t n;                  /* held-out molecules */
    int64_t *index;             /* [n] dataset rows, increasing */
    bool has[MM_EVAL_N_TEACHERS];
    mm_eval_pairing t[MM_EVAL_N_TEACHERS]; /* t[k] valid when has[k] */
} mm_eval_emb;

/* Reads and validates the whole file (see the header comment). out is overwritten. */
mm_status mm_eval_emb_read(const char *path, mm_eval_emb *out);
/* Writes e as a file of the format above (serial; to "<path>.tmp.<pid>", then renamed).
 * e->dataset and e->checkpoint NULL are written as "". */
mm_status mm_eval_emb_write(const char *path, const mm_eval_emb *e);
/* Allocates e's arrays for n molecules and the teachers with has[k] (dims dim[k]),
 * zeroed; strings stay NULL. */
mm_status mm_eval_emb_alloc(mm_eval_emb *e, int64_t n, const bool has[MM_EVAL_N_TEACHERS],
                            const int64_t dim[MM_EVAL_N_TEACHERS]);
/* Frees and zeroes; safe on a zeroed struct. */
void mm_eval_emb_free(mm_eval_emb *e);

/* ---------------------------------------------------------------- retrieval */

/* Ranks both ways among m pairs (a_i, b_i), a and b [m, d] row-major:
 * rank_ab[i] = rank of b_i among all b_j scored by a_i . b_j (= mm_retrieval_ranks(a, b)),
 * rank_ba[j] = rank of a_j among all a_i scored by a_i . b_j (= mm_retrieval_ranks(b, a)).
 * One pass over the score matrix; either output may be NULL. */
mm_status mm_eval_ranks_both(const float *a, const float *b, int64_t m, int64_t d, int64_t *rank_ab,
                             int64_t *rank_ba);

typedef struct mm_eval_topk {
    int64_t pool;               /* requested size; 0 = all */
    int64_t size;               /* molecules per pool (m for "all"); 0 when skipped */
    int64_t n_pools, n_queries; /* n_queries = n_pools * size per direction */
    bool skipped;               /* pool > m */
    double t2g[MM_EVAL_KMAX];   /* teacher -> graph top-k, k = 1 .. KMAX */
    double g2t[MM_EVAL_KMAX];   /* graph -> teacher */
} mm_eval_topk;

/* Top-k of one model for one pool size (see the header comment): u, g [n, d] teacher and
 * graph embeddings, ok [n] (NULL = all present). */
mm_status mm_eval_pool_retrieval(const float *u, const float *g, const uint8_t *ok, int64_t n, int64_t d, int64_t pool,
                            uint64_t seed, mm_eval_topk *out);
/* Chance level of top-k in a pool of `size`: min(k, size) / size. */
double mm_eval_chance(int64_t k, int64_t size);

/* ---------------------------------------------------------------- isomers */

typedef struct mm_eval_groups {
    int64_t n_groups;
    int64_t *offset;            /* [n_groups + 1] */
    int64_t *member;            /* [n_members] held-out rows */
    int64_t n_members;          /* offset[n_groups] */
    int64_t n_candidates;       /* molecules with ok = 1 and a formula */
    int64_t n_duplicates;       /* left out: same SMILES as an earlier member */
    int64_t n_no_formula;       /* ok = 1 but no formula ("" given) */
} mm_eval_groups;

/* formula, smiles [n] strings ("" formula = none); ok [n] or NULL. out is overwritten. */
mm_status mm_eval_isomer_groups(const char *const *formula, const char *const *smiles, const uint8_t *ok,
                                int64_t n, mm_eval_groups *out);
void mm_eval_groups_free(mm_eval_groups *g);

typedef struct mm_eval_isomer_bin {
    int64_t n_groups, n_molecules;
    double top1;                /* accuracy; NaN when the bin is empty */
    double chance;              /* mean 1 / group size over its molecules */
    double mean_rank;           /* mean 0-based rank of the true graph */
} mm_eval_isomer_bin;

typedef struct mm_eval_isomers {
    mm_eval_isomer_bin all, bin[MM_EVAL_N_BINS];
} mm_eval_isomers;

/* Ranks every group member's graph among its group's by its teacher embedding;
 * u, g [n, d] as the groups' rows. rank [offset[n_groups]] (may be NULL) receives them. */
mm_status mm_eval_isomer_ranks(const float *u, const float *g, int64_t d, const mm_eval_groups *gr,
                               mm_eval_isomers *out, int64_t *rank);

/* ---------------------------------------------------------------- the whole evaluation */

typedef struct mm_eval_opts {
    uint64_t seed;                      /* pool permutation (default 0) */
    int n_pools;
    int64_t pools[MM_EVAL_MAX_POOLS];   /* sizes; 0 = all (default 100, 1000, all) */
} mm_eval_opts;

void mm_eval_opts_default(mm_eval_opts *o);
/* "100,1000,all" -> sizes (each >= 2, or "all"); MM_ERR_CONFIG naming flag and item. */
mm_status mm_eval_parse_pools(const char *flag, const char *list, mm_eval_opts *o);

typedef struct mm_eval_teacher_result {
    int64_t n_ok, dim;
    mm_eval_topk trained[MM_EVAL_MAX_POOLS], untrained[MM_EVAL_MAX_POOLS];
    mm_eval_groups groups;
    mm_eval_isomers iso_trained, iso_untrained;
} mm_eval_teacher_result;

typedef struct mm_eval_result {
    mm_eval_opts opts;
    int64_t n;                  /* held-out molecules */
    int64_t n_formula_unknown;  /* held-out molecules without a formula (misc features) */
    bool has[MM_EVAL_N_TEACHERS];
    mm_eval_teacher_result t[MM_EVAL_N_TEACHERS];
} mm_eval_result;

/* Every teacher of e: retrieval for every pool size (trained and untrained) and isomer
 * discrimination. formula, smiles [e->n]: the held-out molecules' (as mm_eval_mols gives). */
mm_status mm_eval_compute(const mm_eval_emb *e, const char *const *formula, const char *const *smiles,
                          const mm_eval_opts *o, mm_eval_result *out);
void mm_eval_result_free(mm_eval_result *r);

/* The canonical SMILES and formulas of the held-out molecules: dataset rows index[0..n)
 * (increasing), each checked against the dataset's molecule count. *smiles and *formula
 * are [n] strings in one block each (free with mm_eval_mols_free); a molecule whose atom
 * features hold a "misc" element, H count or charge gets formula "". */
mm_status mm_eval_mols(const char *dataset, const int64_t *index, int64_t n, char ***smiles, char ***formula);
void mm_eval_mols_free(char ***smiles, char ***formula, int64_t n);

/* Report files. src_* name the inputs in the JSON. */
mm_status mm_eval_write_json(const mm_eval_result *r, const mm_eval_emb *e, const char *emb_path,
                             const char *dataset_path, const char *path);
void mm_eval_write_markdown(const mm_eval_result *r, const mm_eval_emb *e, const char *emb_path, FILE *f);
/* topk.csv and topk.gp in dir, then gnuplot -> topk.png. *plotted = false (and a note on
 * `note`, if not NULL) when gnuplot is not installed; a gnuplot failure is MM_ERR_IO. */
mm_status mm_eval_plot(const mm_eval_result *r, const char *dir, FILE *note, bool *plotted);

/* --run DIR: emb = DIR/heldout_embeddings.h5 (MM_ERR_IO saying the run must be evaluated
 * first when it is missing), dataset = train.dataset of DIR/job.yaml. */
mm_status mm_eval_resolve_run(const char *run_dir, char *emb, size_t emb_n, char *dataset, size_t dataset_n);
/* The program: reads both files, computes, writes DIR/eval.json, DIR/eval.md, DIR/topk.*
 * (out_dir NULL = "<directory of the embeddings file>/eval"), prints the Markdown and
 * the written paths to `report`. */
mm_status mm_eval_files(const char *emb_path, const char *dataset_path, const char *out_dir, const mm_eval_opts *o,
                        FILE *report);

#endif
