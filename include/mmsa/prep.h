/* prep.h: mmsa_prep as a library call: a molecule file (CSV, SMILES, SD; plain or gzip)
 * featurised in parallel into one dataset file (dataset.h layout).
 *
 * Owns: the prep settings and their schema (YAML through config.h; flags become
 * "section.key=value" overrides of the same schema), and one run: row counting,
 * per-rank slices, featurisation (chem.h), the collective write (dataset.h), the
 * summary and the progress line.
 *
 * Promises:
 * - Rank r featurises the contiguous block r of the input rows (mm_dist_block over the
 *   rows counted by rank 0), so molecules and rejects reach the file in input order.
 * - The datasets in the file do not depend on the number of ranks: a molecule's 3D
 *   conformer is seeded with mm_prep_mol_seed(features.seed, source row), never with a
 *   per-rank random stream.
 * - Nothing is lost silently: every row read is either a molecule or a row of /rejects
 *   (source row, input text, "<reason>: <detail>"), so rows = written + rejected. A label
 *   cell that is not a number keeps its molecule with that label NaN and is counted and
 *   quoted (file, line, row, column) in the summary. A featuriser exception on one
 *   molecule (MM_ERR_INTERNAL from chem.h) rejects that molecule as "featuriser error"
 *   instead of ending a long run; running out of memory or failing I/O ends the run. An
 *   NMR spectrum of an SD record that cannot be read keeps its molecule without it and is
 *   counted and quoted (row, line, data item, peak) in the summary, as are the spectra
 *   not read (further ones of a kind, other nuclei; see "NMR spectra" below).
 * - Collective outcome: every rank returns the same status. The rank where a failure
 *   happened holds the real message and is named in result->failed_rank; the others
 *   return the same code with a message pointing at that rank. On failure no output
 *   file appears (dataset.h writes to a temporary name and renames).
 * - Memory: a rank holds at most output.chunk_molecules rows featurised (about 1 KiB per
 *   molecule plus 3*H*W bytes of image, 12 KiB at 64x64); each full chunk goes to a spool
 *   file of the rank next to the output (dataset.h; unlinked at creation, so it never
 *   outlives the run), from which the file is written at the end. The disk next to the
 *   output needs room for the spool and the file, each about the dataset's size. The
 *   file's bytes do not depend on the chunk size. Debug PNGs keep png_count depictions.
 * - Output on rank 0 only: the summary to the FILE given to mm_prep_run, the progress
 *   line (every report.progress_seconds, after the first such interval) to stderr. */
#ifndef MMSA_PREP_H
#define MMSA_PREP_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/config.h"
#include "mmsa/dataset.h"
#include "mmsa/error.h"

/* Version of the program, written into created_by ("mmsa_prep 0.1.0"); CITATION.cff's. */
#define MM_PREP_VERSION "0.1.0"

typedef enum { MM_PREP_FMT_AUTO = 0, MM_PREP_FMT_CSV, MM_PREP_FMT_SMI, MM_PREP_FMT_SDF } mm_prep_format;

typedef struct mm_prep_input_config {
    char path[MM_CFG_STR_MAX];       /* .csv .csv.gz .smi .sdf .sdf.gz (.txt .sd .mol) */
    int format;                      /* mm_prep_format; auto = from the file name */
    char smiles_col[MM_CFG_STR_MAX]; /* "" = smiles, SMILES, Smiles, mol, canonical_smiles */
    char labels[MM_CFG_STR_MAX];     /* "" none; "all" every column but the SMILES one (CSV);
                                        else names separated by commas, CSV-quoted when a name
                                        holds a comma: "a,\"b, c\"" */
    int64_t limit;                   /* featurise the first `limit` rows only (0 = all) */
} mm_prep_input_config;

typedef struct mm_prep_output_config {
    char path[MM_CFG_STR_MAX];       /* the .h5 file */
    int64_t chunk_molecules;         /* rows a rank holds featurised at once (>= 1) */
} mm_prep_output_config;

typedef struct mm_prep_features_config {
    bool conformer;       /* build 3D conformers (SD input keeps its own 3D regardless) */
    int ff_steps;         /* MMFF94/UFF conjugate-gradient steps */
    bool keep_input_3d;   /* SD records with 3D coordinates keep them */
    int64_t seed;         /* conformer seed; per molecule mm_prep_mol_seed(seed, row) */
    bool image;           /* 2D depiction */
    int image_size;       /* H = W */
    bool fingerprint;     /* ECFP4, 2048 bits */
    bool scaffold;        /* Bemis-Murcko scaffold */
    int max_atoms;        /* heavy-atom limit; larger molecules are rejected */
    bool nmr;             /* SD input: NMR spectra from the records' data items (see below) */
} mm_prep_features_config;

typedef struct mm_prep_report_config {
    bool progress;            /* progress line on rank 0 (stderr) */
    float progress_seconds;   /* seconds between progress lines */
    int examples;             /* examples per reject reason in the summary */
    char png_dir[MM_CFG_STR_MAX]; /* "" = none; else PNGs of the first png_count molecules */
    int png_count;
} mm_prep_report_config;

typedef struct mm_prep_config {
    mm_prep_input_config input;
    mm_prep_output_config output;
    mm_prep_features_config features;
    mm_prep_report_config report;
} mm_prep_config;

/* The YAML schema (sections input, output, features, report); configs/prep_example.yaml
 * uses every key. */
extern const mm_cfg_schema mm_prep_schema;

/* Defaults of every key (input.path and output.path empty). */
mm_status mm_prep_config_defaults(mm_prep_config *c);
/* Cross-key rules: input and output given and different, png_count needs images, ... */
mm_status mm_prep_config_validate(const mm_prep_config *c);

/* ---- NMR spectra in SD data items
 *
 * With features.nmr (default on), an SD input whose records carry spectrum items gets
 * the spectra in the dataset (dataset.h /nmr13c, /nmr1h); the kinds present in any of
 * the rows read decide the file's modalities. Items read:
 *   "Spectrum 13C <n>", "Spectrum 1H <n>" (CASCADE NMR8K, nmrshiftdb2 export): peaks
 *     "shift;<coupling><multiplicity>;atomidx" separated by '|' (a final '|' allowed);
 *   "C13 chemical shift" (CASCADE Exp5K_DFT): peaks "atomidx,shift" separated by '|'.
 * atomidx is 0-based into the record's atom block; it becomes our atom (chem.h
 * input_atom): a hydrogen's index its heavy neighbour. The first spectrum of a kind
 * (lowest <n>; the unnumbered item before all) is the molecule's, the others are counted
 * as extra. A spectrum that cannot be read whole (reasons below) is skipped: the
 * molecule is kept without it, and the skip is counted and quoted (row, line, item, peak,
 * value) in the summary. Other "Spectrum ..." items (15N, 17O, 2D) are counted as other. */
enum {
    MM_PREP_NMR_EMPTY = 1,     /* no peak in the item */
    MM_PREP_NMR_MALFORMED,     /* a peak without its fields, or a shift / index not a number */
    MM_PREP_NMR_INDEX,         /* an atom index outside the record's atom block */
    MM_PREP_NMR_LONE_H,        /* an index naming a hydrogen without a heavy neighbour */
    MM_PREP_NMR_ELEMENT,       /* 13C: an atom that is not a carbon; 1H: an atom without hydrogens */
    MM_PREP_NMR_N_SKIPS
};
const char *mm_prep_nmr_skip_name(int reason); /* "empty spectrum", ... */

/* The spectra of one record, one entry per kind (dataset.h MM_NMR_*). */
typedef struct mm_prep_spectrum {
    int found;             /* spectrum items of this kind in the record */
    int skip;              /* 0 when read (or none found), else MM_PREP_NMR_* */
    char item[80];         /* the item read (the first one), "" when none */
    char why[256];         /* the skip: item, peak and value */
    int64_t n_peaks;       /* read peaks (0 when skipped) */
    float *shift;          /* [cap] ppm */
    int32_t *atom;         /* [cap] our atom */
    int64_t cap;
} mm_prep_spectrum;

typedef struct mm_prep_spectra {
    mm_prep_spectrum kind[MM_NMR_KINDS]; /* MM_NMR_13C, MM_NMR_1H */
    int other;                /* other "Spectrum ..." items */
} mm_prep_spectra;

/* Reads the record's spectra (items as csv.h gives them) against the featurised molecule
 * (chem.h: input_atom, input_is_h, atom_feat). MM_OK whatever the items say (their
 * problems are skips); MM_ERR_NOMEM when the peaks do not fit memory. */
mm_status mm_prep_read_spectra(int n_items, const char *const *names, const char *const *values,
                               int32_t n_input_atoms, const int32_t *input_atom, const uint8_t *input_is_h,
                               int32_t n_atoms, const uint8_t *atom_feat, mm_prep_spectra *out);
/* Which kinds a record has items of: MM_MOD_NMR13C / MM_MOD_NMR1H bits. */
unsigned mm_prep_spectra_kinds(int n_items, const char *const *names);
void mm_prep_spectra_free(mm_prep_spectra *s);

/* Reject reasons: index = mm_chem_reject (1 .. 5), plus the featuriser-error class. */
#define MM_PREP_REASON_ERROR 6
#define MM_PREP_N_REASONS 7
const char *mm_prep_reason_name(int reason); /* "parse", ..., "featuriser error" */

typedef struct mm_prep_result {
    int64_t rows;                       /* rows read over all ranks (after input.limit) */
    int64_t written;                    /* molecules in the file */
    int64_t rejected;                   /* rows of /rejects; rows == written + rejected */
    int64_t by_reason[MM_PREP_N_REASONS]; /* rejects per reason (index 0 unused) */
    int64_t label_rows;                 /* rows with a label cell that is not a number, or
                                           more fields than the header (molecule kept) */
    int64_t conf_built;                 /* conformers built (ok = 1, not from the input) */
    int64_t conf_uff;                   /* ... of which with the UFF fallback */
    int64_t conf_input;                 /* 3D coordinates taken from the SD records */
    int64_t conf_failed;                /* molecules with conformer ok = 0 */
    double stage_seconds[5];            /* chem.h stages summed over ranks */
    double seconds;                     /* wall time of the run (slowest rank) */
    int ranks;
    int failed_rank;                    /* on failure: the rank holding the cause, or -1 when
                                           every failing rank's message matters */
    int64_t held_max;                   /* most rows (molecules + rejects) one rank held
                                           featurised at once: <= output.chunk_molecules */
    unsigned nmr_modalities;            /* MM_MOD_NMR13C / MM_MOD_NMR1H of the file */
    int64_t nmr_read[MM_NMR_KINDS];     /* molecules written with a spectrum of the kind */
    int64_t nmr_peaks[MM_NMR_KINDS];    /* their peaks */
    int64_t nmr_skipped[MM_PREP_NMR_N_SKIPS]; /* spectra skipped, per reason (index 0 unused) */
    int64_t nmr_extra[MM_NMR_KINDS];    /* further spectra of a kind in a record, not read */
    int64_t nmr_other;                  /* other spectrum items (15N, 17O, 2D, ...), not read */
} mm_prep_result;

/* Collective over comm (every rank passes the same config). Rank 0 writes the summary to
 * `summary` when it is not NULL. `res` may be NULL; when given it is filled on every rank
 * (identical values), also on failure as far as known. */
mm_status mm_prep_run(const mm_prep_config *cfg, MPI_Comm comm, FILE *summary, mm_prep_result *res);

/* The conformer seed of the molecule in source row `row`: a 64-bit mix of both, so that
 * neighbouring rows and seeds give unrelated streams. */
uint64_t mm_prep_mol_seed(uint64_t seed, int64_t row);

/* Splits a label list ("a,b" with CSV quoting) into names. *names is one mm_malloc block
 * of *n pointers followed by the strings; free with mm_prep_labels_free(*names, *n). */
mm_status mm_prep_split_labels(const char *spec, char ***names, int *n);
void mm_prep_labels_free(char **names, int n);

#endif
