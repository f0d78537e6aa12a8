/* prep.c: mmsa_prep as a library call (see prep.h).
 *
 * One run, each phase ending with every rank knowing the outcome (agree()):
 *  A. rank 0 opens the input (this checks the header, the SMILES column and the label
 *     columns once, with one message), counts the rows up to input.limit and hashes the
 *     file; the count and the hash are broadcast;
 *  B. every rank featurises its block of rows (mm_dist_block) into a molecule set,
 *     rejecting rows with a reason, counting label cells that are not numbers, and
 *     keeping a few examples of each for the summary; rank 0 prints progress. Every
 *     output.chunk_molecules rows the set goes to the rank's spool (dataset.h, a file
 *     next to the output, unlinked at creation) and is cleared, so that a rank holds at
 *     most one chunk of featurised molecules whatever the size of its block;
 *  C. the debug PNGs of the first molecules of the whole input (an exclusive scan of
 *     the per-rank molecule counts gives each molecule its global index; each rank kept
 *     the depictions of its first png_count molecules when they went to the spool);
 *  D. mm_dataset_write_spool (collective, agreed inside): the same bytes as writing the
 *     whole block from memory;
 *  E. counters summed, examples gathered to rank 0 in rank order, summary printed. */
#include "mmsa/prep.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmsa/alloc.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"
#include "mmsa/dataset.h"
#include "mmsa/dist.h"

/* ---------------------------------------------------------------- schema */

#define F(sec, st, key, type, def, lo, hi, doc) \
    {#sec, #key, type, offsetof(mm_prep_config, sec) + offsetof(st, key), def, lo, hi, NULL, doc}
#define FE(sec, st, key, def, choices, doc) \
    {#sec, #key, MM_CFG_ENUM, offsetof(mm_prep_config, sec) + offsetof(st, key), def, 1, 0, choices, doc}

static const mm_cfg_field fields[] = {
    F(input, mm_prep_input_config, path, MM_CFG_STRING, "", 1, 0,
      "molecule file: .csv, .smi or .sdf, each optionally .gz (required; flag --input)"),
    FE(input, mm_prep_input_config, format, "auto", "auto|csv|smi|sdf", "file format; auto: from the file name"),
    F(input, mm_prep_input_config, smiles_col, MM_CFG_STRING, "", 1, 0,
      "CSV column with the SMILES; empty: the first of smiles, SMILES, Smiles, mol, canonical_smiles"),
    F(input, mm_prep_input_config, labels, MM_CFG_STRING, "", 1, 0,
      "label columns (CSV) or data items (SD): empty for none, all (CSV: every column but the SMILES one), "
      "or names separated by commas, a name with a comma in double quotes"),
    F(input, mm_prep_input_config, limit, MM_CFG_INT64, "0", 0, 9.2e18, "featurise only the first N rows (0: all)"),

    F(output, mm_prep_output_config, path, MM_CFG_STRING, "", 1, 0,
      "dataset file (HDF5) to write; it appears only when complete (required; flag --output)"),
    F(output, mm_prep_output_config, chunk_molecules, MM_CFG_INT64, "4096", 1, 9.2e18,
      "rows a rank holds featurised before moving them to its spool file next to the output; "
      "bounds the memory (about 13 KiB per molecule at 64x64), not the output"),

    F(features, mm_prep_features_config, conformer, MM_CFG_BOOL, "true", 1, 0,
      "build one 3D conformer per molecule (Open Babel builder, MMFF94, UFF fallback)"),
    F(features, mm_prep_features_config, ff_steps, MM_CFG_INT, MM_CHEM_STR(MM_CHEM_FF_STEPS_DEFAULT), 0, 1000000,
      "force-field conjugate-gradient steps per conformer (0: the builder's geometry, no force field set up)"),
    F(features, mm_prep_features_config, keep_input_3d, MM_CFG_BOOL, "true", 1, 0,
      "SD records with 3D coordinates keep them (also when conformer is false)"),
    F(features, mm_prep_features_config, seed, MM_CFG_INT64, "1", 0, 9.2e18,
      "conformer seed; each molecule's is mixed from it and its source row"),
    F(features, mm_prep_features_config, image, MM_CFG_BOOL, "true", 1, 0, "render a 2D depiction (RGB)"),
    F(features, mm_prep_features_config, image_size, MM_CFG_INT, "64", 16, 1024, "depiction side in pixels"),
    F(features, mm_prep_features_config, fingerprint, MM_CFG_BOOL, "true", 1, 0, "ECFP4 fingerprint, 2048 bits"),
    F(features, mm_prep_features_config, scaffold, MM_CFG_BOOL, "true", 1, 0, "Bemis-Murcko scaffold SMILES"),
    F(features, mm_prep_features_config, max_atoms, MM_CFG_INT, "128", 1, 100000,
      "reject molecules with more heavy atoms than this"),
    F(features, mm_prep_features_config, nmr, MM_CFG_BOOL, "true", 1, 0,
      "SD input: 13C and 1H NMR spectra from the records' data items (Spectrum 13C <n>, Spectrum 1H <n>, "
      "C13 chemical shift) when the file has them"),

    F(report, mm_prep_report_config, progress, MM_CFG_BOOL, "true", 1, 0,
      "progress line on rank 0 (stderr): rows done, molecules/s, ETA"),
    F(report, mm_prep_report_config, progress_seconds, MM_CFG_FLOAT, "5", 0.1, 86400, "seconds between progress lines"),
    F(report, mm_prep_report_config, examples, MM_CFG_INT, "3", 0, 50, "examples per reject reason in the summary"),
    F(report, mm_prep_report_config, png_dir, MM_CFG_STRING, "", 1, 0,
      "directory for PNGs of the first depictions, for a person to look at (empty: none)"),
    F(report, mm_prep_report_config, png_count, MM_CFG_INT, "8", 0, 1000000, "number of PNGs written to png_dir"),
};

static const char *const section_docs[] = {
    "input", "The molecule file and which of its columns to read.",
    "output", "The dataset file (layout: DESIGN.md section 4).",
    "features", "Featurisation by Open Babel (include/mmsa/chem.h).",
    "report", "What is printed while and after running.",
    NULL, NULL,
};

const mm_cfg_schema mm_prep_schema = {"mmsa_prep", fields, (int)(sizeof fields / sizeof fields[0]), section_docs};

mm_status mm_prep_config_defaults(mm_prep_config *c)
{
    MM_CHECK_ARG(c, "mm_prep_config_defaults: NULL");
    memset(c, 0, sizeof *c);
    MM_CALL(mm_cfg_defaults(&mm_prep_schema, c));
    return MM_OK;
}

mm_status mm_prep_config_validate(const mm_prep_config *c)
{
    MM_CHECK_ARG(c, "mm_prep_config_validate: NULL");
    if (!c->input.path[0]) {
        mm_status e = MM_ERR(MM_ERR_CONFIG, "no input file: input.path is not set");
        mm_error_hint("give --input FILE, or input: path: in the YAML file");
        return e;
    }
    if (!c->output.path[0]) {
        mm_status e = MM_ERR(MM_ERR_CONFIG, "no output file: output.path is not set");
        mm_error_hint("give --output FILE.h5, or output: path: in the YAML file");
        return e;
    }
    if (!strcmp(c->input.path, c->output.path))
        return MM_ERR(MM_ERR_CONFIG, "output.path is the input file %s; it would be overwritten", c->input.path);
    if (c->report.png_dir[0] && c->report.png_count > 0 && !c->features.image)
        return MM_ERR(MM_ERR_CONFIG, "report.png_dir is set but features.image is false: there is nothing to draw");
    if (c->input.format == MM_PREP_FMT_SMI && c->input.labels[0])
        return MM_ERR(MM_ERR_CONFIG, "input.labels '%s': a SMILES (.smi) file has no label columns", c->input.labels);
    return MM_OK;
}

const char *mm_prep_reason_name(int reason)
{
    if (reason == MM_PREP_REASON_ERROR) return "featuriser error";
    if (reason >= 1 && reason < MM_PREP_REASON_ERROR) return mm_chem_reject_name((mm_chem_reject)reason);
    return "unknown";
}

/* splitmix64 finaliser */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t mm_prep_mol_seed(uint64_t seed, int64_t row) { return mix64(mix64(seed) ^ (uint64_t)row); }

/* ---------------------------------------------------------------- label lists */

void mm_prep_labels_free(char **names, int n)
{
    if (!names) return;
    for (int i = 0; i < n; i++)
        if (names[i]) mm_free_sized(names[i], strlen(names[i]) + 1);
    mm_free_sized(names, (size_t)(n > 0 ? n : 1) * sizeof *names);
}

mm_status mm_prep_split_labels(const char *spec, char ***names_out, int *n_out)
{
    MM_CHECK_ARG(spec && names_out && n_out, "mm_prep_split_labels: NULL argument");
    *names_out = NULL;
    *n_out = 0;
    size_t len = strlen(spec);
    int cap = 1;
    for (size_t i = 0; i < len; i++) cap += spec[i] == ',';
    char **names = mm_calloc((size_t)cap, sizeof *names);
    char *buf = mm_malloc(len + 1);
    mm_status st = MM_OK;
    int n = 0;
    if (!names || !buf) {
        st = MM_ERR(MM_ERR_NOMEM, "out of memory splitting the label list");
        goto done;
    }
    for (size_t i = 0; i <= len;) { /* one name per iteration */
        size_t k = 0;
        while (i < len && spec[i] == ' ') i++;
        if (i < len && spec[i] == '"') {
            for (i++;; i++) {
                if (i >= len) {
                    st = MM_ERR(MM_ERR_CONFIG, "label list '%s': a quoted name is never closed", spec);
                    goto done;
                }
                if (spec[i] == '"') {
                    if (spec[i + 1] == '"') {
                        buf[k++] = '"';
                        i++;
                        continue;
                    }
                    i++;
                    break;
                }
                buf[k++] = spec[i];
            }
            while (i < len && spec[i] == ' ') i++;
            if (i < len && spec[i] != ',') {
                st = MM_ERR(MM_ERR_CONFIG, "label list '%s': text after a quoted name (expected a comma)", spec);
                goto done;
            }
        } else {
            while (i < len && spec[i] != ',') buf[k++] = spec[i++];
            while (k > 0 && buf[k - 1] == ' ') k--;
        }
        buf[k] = '\0';
        if (k == 0) {
            st = MM_ERR(MM_ERR_CONFIG, "label list '%s': empty name", spec);
            mm_error_hint("separate names by single commas, e.g. --labels NR-AR,SR-p53");
            goto done;
        }
        for (int j = 0; j < n; j++)
            if (!strcmp(names[j], buf)) {
                st = MM_ERR(MM_ERR_CONFIG, "label list '%s': '%s' is given twice", spec, buf);
                goto done;
            }
        if (n >= cap) { /* a comma inside quotes left fewer slots than names; cannot happen */
            st = MM_ERR(MM_ERR_INTERNAL, "label list '%s': miscounted names", spec);
            goto done;
        }
        names[n] = mm_malloc(k + 1);
        if (!names[n]) {
            st = MM_ERR(MM_ERR_NOMEM, "out of memory splitting the label list");
            goto done;
        }
        memcpy(names[n++], buf, k + 1);
        i++; /* the comma (or past the end) */
    }
done:
    if (buf) mm_free_sized(buf, len + 1);
    if (st != MM_OK) {
        if (names) {
            for (int j = 0; j < n; j++) mm_free_sized(names[j], strlen(names[j]) + 1);
            mm_free_sized(names, (size_t)cap * sizeof *names);
        }
        return st;
    }
    /* shrink the pointer block to n entries so that mm_prep_labels_free knows its size */
    char **exact = mm_malloc((size_t)(n > 0 ? n : 1) * sizeof *exact);
    if (!exact) {
        for (int j = 0; j < n; j++) mm_free_sized(names[j], strlen(names[j]) + 1);
        mm_free_sized(names, (size_t)cap * sizeof *names);
        return MM_ERR(MM_ERR_NOMEM, "out of memory splitting the label list");
    }
    memcpy(exact, names, (size_t)n * sizeof *names);
    mm_free_sized(names, (size_t)cap * sizeof *names);
    *names_out = exact;
    *n_out = n;
    return MM_OK;
}

/* ---------------------------------------------------------------- one run */

/* Summary examples: the reject reasons (1 .. 6), then labels, conformers and the
 * spectrum skips (K_NMR0 + reason). */
enum { K_LABEL = MM_PREP_N_REASONS, K_NOCONF, K_NMR0, N_KINDS = K_NMR0 + MM_PREP_NMR_N_SKIPS };

typedef struct example {
    int64_t row, line;
    char text[72]; /* input text, shortened */
    char why[248]; /* reason / message, shortened */
} example;

/* Local counters, summed over ranks in phase E. */
enum {
    C_ROWS, C_WRITTEN, C_REJECTED, C_REASON0, /* C_REASON0 + reason */
    C_LABEL = C_REASON0 + MM_PREP_N_REASONS, C_CONF_BUILT, C_CONF_UFF, C_CONF_INPUT, C_CONF_FAILED,
    C_NMR_READ, C_NMR_PEAKS = C_NMR_READ + MM_NMR_KINDS, C_NMR_EXTRA = C_NMR_PEAKS + MM_NMR_KINDS, /* + kind */
    C_NMR_SKIP0 = C_NMR_EXTRA + MM_NMR_KINDS, /* + reason */
    C_NMR_OTHER = C_NMR_SKIP0 + MM_PREP_NMR_N_SKIPS, N_COUNTERS
};

typedef struct prep_run {
    const mm_prep_config *cfg;
    mm_dist d;
    mm_table_opts topts;
    char **label_names;   /* [n_label_names] from input.labels */
    int n_label_names;    /* -1: all columns */
    int64_t total;        /* rows to featurise, all ranks */
    int64_t start, count; /* this rank's block */
    char sha[65];
    mm_table *table;
    mm_table_format fmt;
    mm_chem *chem;
    mm_mol_feat feat;
    unsigned nmr_mods;    /* spectrum kinds of the file (rank 0 found them in phase A) */
    mm_prep_spectra spectra; /* the current record's */
    mm_molset ms;         /* the current chunk: at most output.chunk_molecules rows */
    bool ms_init;
    mm_dataset_spool *spool; /* this rank's chunks so far */
    int64_t n_spooled;    /* molecules in the spool */
    int64_t held_max;     /* most rows (molecules + rejects) ms held */
    uint8_t *png_img;     /* [png_cap, 3, H, W] depictions of this rank's first molecules */
    int64_t *png_row;     /* [png_cap] their source rows */
    int64_t png_cap, n_png;
    size_t png_bytes;     /* bytes of png_img */
    int64_t counter[N_COUNTERS];
    int n_ex[N_KINDS];
    example *ex;          /* [N_KINDS][examples] */
    int max_ex;
    example *all;         /* rank 0: [ranks][N_KINDS][examples] gathered, merged into the front */
    size_t n_all;
    int *all_n;           /* rank 0: [ranks][N_KINDS] */
    int n_merged[N_KINDS];
    double t0;
} prep_run;

static void shorten(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n < cap) {
        memcpy(dst, src, n + 1);
    } else {
        memcpy(dst, src, cap - 4);
        memcpy(dst + cap - 4, "...", 4);
    }
    for (size_t i = 0; dst[i]; i++) /* one summary line per example */
        if (dst[i] == '\n' || dst[i] == '\r') dst[i] = ' ';
}

static void add_example(prep_run *p, int kind, int64_t row, int64_t line, const char *text, const char *why)
{
    if (p->n_ex[kind] >= p->max_ex) return;
    example *e = &p->ex[kind * p->max_ex + p->n_ex[kind]++];
    e->row = row;
    e->line = line;
    shorten(e->text, sizeof e->text, text ? text : "");
    shorten(e->why, sizeof e->why, why ? why : "");
}

static mm_status mpi_status(int rc, const char *call)
{
    return rc == MPI_SUCCESS ? MM_OK : mm_error_mpi(rc, call, __FILE__, __LINE__, __func__);
}

/* Every rank learns whether any rank failed; the lowest failing rank is the cause. */
static mm_status agree(prep_run *p, mm_status local, mm_prep_result *res)
{
    struct {
        int rank, code;
    } in = {local != MM_OK ? p->d.rank : INT_MAX, (int)local}, out;
    MM_MPI_CALL(MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MINLOC, p->d.comm));
    if (out.rank == INT_MAX) return MM_OK;
    res->failed_rank = out.rank;
    if (local != MM_OK) return local;
    return MM_ERR((mm_status)out.code, "mmsa_prep stopped: rank %d failed (its message gives the cause)", out.rank);
}

/* The text a reject keeps: the SMILES cell, or for an SD record its SMILES data item or title. */
static const char *input_text(const mm_table_row *row)
{
    if (row->smiles) return row->smiles;
    for (int i = 0; i < row->n_items; i++)
        if (!strcmp(row->item_names[i], "SMILES") || !strcmp(row->item_names[i], "smiles")) return row->item_values[i];
    return row->name ? row->name : "";
}

static mm_status reject_row(prep_run *p, const mm_table_row *row, int reason, const char *detail)
{
    char why[640];
    snprintf(why, sizeof why, "%s: %s", mm_prep_reason_name(reason), detail && *detail ? detail : "(no detail)");
    const char *text = input_text(row);
    MM_CALL(mm_molset_append_reject(&p->ms, row->row, text, why));
    p->counter[C_REJECTED]++;
    p->counter[C_REASON0 + reason]++;
    add_example(p, reason, row->row, row->line, text, why);
    return MM_OK;
}

/* The record's spectra into *m (nothing when the file has none); read before the
 * molecule is appended, counted after (count_spectra). */
static mm_status read_spectra(prep_run *p, const mm_table_row *row, mm_mol_in *m)
{
    if (!p->nmr_mods) return MM_OK;
    const mm_mol_feat *f = &p->feat;
    MM_CALL(mm_prep_read_spectra(row->n_items, row->item_names, row->item_values, f->n_input_atoms, f->input_atom,
                                 f->input_is_h, f->n_atoms, f->atom_feat, &p->spectra));
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        const mm_prep_spectrum *x = &p->spectra.kind[k];
        if (!(p->nmr_mods & MM_MOD_NMR(k)) || !x->found || x->skip) continue;
        m->nmr[k].n_peaks = x->n_peaks;
        m->nmr[k].shift = x->shift;
        m->nmr[k].atom = x->atom;
        m->nmr[k].ok = 1;
    }
    return MM_OK;
}

static void count_spectra(prep_run *p, const mm_table_row *row)
{
    if (!p->nmr_mods) return;
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        const mm_prep_spectrum *x = &p->spectra.kind[k];
        if (!x->found) continue;
        p->counter[C_NMR_EXTRA + k] += x->found - 1;
        if (x->skip) {
            p->counter[C_NMR_SKIP0 + x->skip]++;
            add_example(p, K_NMR0 + x->skip, row->row, row->line, input_text(row), x->why);
        } else {
            p->counter[C_NMR_READ + k]++;
            p->counter[C_NMR_PEAKS + k] += x->n_peaks;
        }
    }
    p->counter[C_NMR_OTHER] += p->spectra.other;
}

static mm_status keep_molecule(prep_run *p, const mm_table_row *row)
{
    const mm_mol_feat *f = &p->feat;
    mm_mol_in m = {
        .smiles = f->smiles,
        .source_row = row->row,
        .n_atoms = f->n_atoms,
        .atom_feat = f->atom_feat,
        .n_bonds = f->n_bonds,
        .bond_index = f->bond_index,
        .bond_feat = f->bond_feat,
        .xyz = f->conf_ok ? f->xyz : NULL,
        .conf_ok = f->conf_ok,
        .image = f->image,
        .fingerprint = f->fingerprint,
        .scaffold = f->scaffold,
        .labels = p->ms.n_tasks > 0 ? row->labels : NULL,
    };
    MM_CALL(read_spectra(p, row, &m));
    if ((p->ms.modalities & MM_MOD_IMAGE) && f->image_size != p->cfg->features.image_size)
        return MM_ERR(MM_ERR_INTERNAL, "row %lld: the featuriser drew a %d-pixel image, %d were asked for",
                      (long long)row->row, f->image_size, p->cfg->features.image_size);
    mm_status st = mm_molset_append(&p->ms, &m);
    if (st == MM_ERR_NOMEM) MM_CALL(st);
    if (st != MM_OK) { /* the featuriser produced something the dataset refuses: report, keep going */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mm_error_message());
        mm_error_clear();
        MM_CALL(reject_row(p, row, MM_PREP_REASON_ERROR, msg));
        return MM_OK;
    }
    p->counter[C_WRITTEN]++;
    count_spectra(p, row);
    if (p->ms.modalities & MM_MOD_CONFORMER) {
        if (!f->conf_ok) {
            p->counter[C_CONF_FAILED]++;
            add_example(p, K_NOCONF, row->row, row->line, f->smiles, "no conformer");
        } else if (f->conf_from_input) {
            p->counter[C_CONF_INPUT]++;
        } else {
            p->counter[C_CONF_BUILT]++;
            if (f->conf_uff) p->counter[C_CONF_UFF]++;
        }
    }
    return MM_OK;
}

static void fmt_duration(char *buf, size_t cap, double s)
{
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "?");
    else if (s < 120) snprintf(buf, cap, "%.0f s", s);
    else if (s < 7200) snprintf(buf, cap, "%.0f min", s / 60);
    else snprintf(buf, cap, "%.1f h", s / 3600);
}

static void progress(prep_run *p, int64_t done, double *last)
{
    double now = MPI_Wtime();
    if (now - *last < p->cfg->report.progress_seconds) return;
    *last = now;
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    char eta[32];
    fmt_duration(eta, sizeof eta, rate > 0 ? (double)(p->count - done) / rate : -1);
    fprintf(stderr,
            "mmsa_prep: rank 0 %lld / %lld rows (%.1f%%), ~%lld / %lld overall, %.1f rows/s per rank, ETA %s\n",
            (long long)done, (long long)p->count, 100.0 * (double)done / (double)p->count,
            (long long)((double)done * (double)p->total / (double)p->count), (long long)p->total, rate, eta);
    fflush(stderr);
}

/* The output's directory must be writable: better to hear it before hours of work. */
static mm_status check_output_dir(const char *path)
{
    char dir[MM_CFG_STR_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0) {
        mm_status e = MM_ERR(MM_ERR_IO, "cannot write the output %s: directory %s: %s", path, dir, strerror(errno));
        mm_error_hint("create the directory first, or choose another --output");
        return e;
    }
    return MM_OK;
}

/* Phase A, rank 0: output directory, header check, row count (up to the limit), checksum. */
static mm_status count_rows(prep_run *p)
{
    MM_CALL(check_output_dir(p->cfg->output.path));
    mm_table *t = NULL;
    MM_CALL(mm_table_open(p->cfg->input.path, &p->topts, &t));
    int64_t want = p->cfg->input.limit > 0 ? p->cfg->input.limit : INT64_MAX, got = 0;
    mm_status st = MM_OK;
    if (mm_table_get_format(t) == MM_TABLE_SDF && p->cfg->features.nmr) {
        /* the rows one by one, for the spectrum items they carry */
        for (; got < want; got++) {
            mm_table_row row;
            memset(&row, 0, sizeof row);
            row.row = -1;
            bool eof = false;
            st = mm_table_next(t, &row, &eof);
            if (st == MM_ERR_FORMAT && row.row == got && !eof) { /* a label that is not a number: phase B reports it */
                mm_error_clear();
                st = MM_OK;
            }
            if (st != MM_OK || eof) break;
            p->nmr_mods |= mm_prep_spectra_kinds(row.n_items, row.item_names);
        }
    } else {
        st = mm_table_skip(t, want, &got);
    }
    mm_table_close(&t);
    MM_CALL(st);
    p->total = got;
    MM_CALL(mm_sha256_file(p->cfg->input.path, p->sha));
    return MM_OK;
}

static size_t image_bytes(const mm_molset *ms)
{
    return (size_t)MM_DS_IMAGE_CHANNELS * (size_t)ms->image_h * (size_t)ms->image_w;
}

/* Phase B: the current chunk goes to the spool; the depictions the PNGs need are kept. */
static mm_status flush_chunk(prep_run *p)
{
    mm_molset *ms = &p->ms;
    if (ms->n + ms->n_rejects > p->held_max) p->held_max = ms->n + ms->n_rejects;
    size_t ib = image_bytes(ms);
    for (int64_t i = 0; i < ms->n && p->n_png < p->png_cap; i++, p->n_png++) {
        memcpy(p->png_img + (size_t)p->n_png * ib, ms->image + (size_t)i * ib, ib);
        p->png_row[p->n_png] = ms->source_row[i];
    }
    MM_CALL(mm_dataset_spool_append(p->spool, ms));
    p->n_spooled += ms->n;
    mm_molset_clear(ms);
    return MM_OK;
}

/* Phase B: this rank's rows. */
static mm_status featurise_block(prep_run *p)
{
    const mm_prep_config *c = p->cfg;
    MM_CALL(mm_table_open(c->input.path, &p->topts, &p->table));
    p->fmt = mm_table_get_format(p->table);

    mm_chem_opts co;
    mm_chem_opts_default(&co);
    co.max_atoms = c->features.max_atoms;
    co.conformer = c->features.conformer;
    co.ff_steps = c->features.ff_steps;
    co.keep_input_3d = c->features.keep_input_3d;
    co.image = c->features.image;
    co.image_size = c->features.image_size;
    co.fingerprint = c->features.fingerprint;
    co.scaffold = c->features.scaffold;
    MM_CALL(mm_chem_create(&co, &p->chem));

    int nt = mm_table_n_labels(p->table);
    const char *tasks[nt > 0 ? nt : 1];
    for (int j = 0; j < nt; j++) tasks[j] = mm_table_label_name(p->table, j);
    unsigned mods = 0;
    if (c->features.conformer || (p->fmt == MM_TABLE_SDF && c->features.keep_input_3d)) mods |= MM_MOD_CONFORMER;
    if (c->features.image) mods |= MM_MOD_IMAGE;
    if (c->features.fingerprint) mods |= MM_MOD_FINGERPRINT;
    if (c->features.scaffold) mods |= MM_MOD_SCAFFOLD;
    if (nt > 0) mods |= MM_MOD_LABELS;
    mods |= p->nmr_mods;
    mm_molset_opts mo = {mods, c->features.image_size, c->features.image_size, nt, tasks};
    MM_CALL(mm_molset_init(&p->ms, &mo));
    p->ms_init = true;
    const int64_t chunk = c->output.chunk_molecules;
    const int64_t reserve = p->count < chunk ? p->count : chunk;
    MM_CALL(mm_molset_reserve(&p->ms, reserve, reserve * 24, reserve * 26));
    char spool_path[MM_CFG_STR_MAX + 64];
    snprintf(spool_path, sizeof spool_path, "%s.spool.%d.%ld", c->output.path, p->d.rank, (long)getpid());
    MM_CALL(mm_dataset_spool_create(spool_path, &p->ms, &p->spool));
    if (c->report.png_dir[0] && c->report.png_count > 0 && (mods & MM_MOD_IMAGE)) {
        p->png_cap = p->count < c->report.png_count ? p->count : c->report.png_count;
        p->png_bytes = (size_t)(p->png_cap > 0 ? p->png_cap : 1) * image_bytes(&p->ms);
        p->png_img = mm_malloc(p->png_bytes);
        p->png_row = mm_malloc((size_t)(p->png_cap > 0 ? p->png_cap : 1) * sizeof *p->png_row);
        if (!p->png_img || !p->png_row) return MM_ERR(MM_ERR_NOMEM, "out of memory for %lld PNGs", (long long)p->png_cap);
    }

    int64_t skipped = 0;
    MM_CALL(mm_table_skip(p->table, p->start, &skipped));
    if (skipped != p->start)
        return MM_ERR(MM_ERR_FORMAT, "%s has %lld rows, rank 0 counted at least %lld; did it change during the run?",
                      c->input.path, (long long)skipped, (long long)(p->start + p->count));

    const bool show = p->d.rank == 0 && c->report.progress;
    double last = p->t0;
    for (int64_t k = 0; k < p->count; k++) {
        mm_table_row row;
        memset(&row, 0, sizeof row);
        row.row = -1;
        bool eof = false;
        mm_status st = mm_table_next(p->table, &row, &eof);
        if (st == MM_ERR_FORMAT && row.row == p->start + k) {
            /* a label cell that is not a number (or too many fields): the row is filled in */
            p->counter[C_LABEL]++;
            add_example(p, K_LABEL, row.row, row.line, input_text(&row), mm_error_message());
            mm_error_clear();
        } else if (st != MM_OK) {
            MM_CALL(st);
        }
        if (eof)
            return MM_ERR(MM_ERR_FORMAT, "%s ended after %lld rows, rank 0 counted %lld; did it change during the run?",
                          c->input.path, (long long)(p->start + k), (long long)p->total);
        p->counter[C_ROWS]++;
        uint64_t seed = mm_prep_mol_seed((uint64_t)c->features.seed, row.row);
        st = p->fmt == MM_TABLE_SDF ? mm_chem_featurize_sdf(p->chem, row.record, seed, &p->feat)
                                    : mm_chem_featurize_smiles(p->chem, row.smiles, seed, &p->feat);
        if (st == MM_OK) {
            MM_CALL(keep_molecule(p, &row));
        } else if (st == MM_ERR_CHEM && p->feat.reject != MM_CHEM_OK) {
            mm_error_clear();
            MM_CALL(reject_row(p, &row, (int)p->feat.reject, p->feat.reason));
        } else if (st == MM_ERR_INTERNAL || st == MM_ERR_CHEM) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", mm_error_message());
            mm_error_clear();
            MM_CALL(reject_row(p, &row, MM_PREP_REASON_ERROR, msg));
        } else {
            mm_error_push(__FILE__, __LINE__, __func__);
            return st;
        }
        if (p->ms.n + p->ms.n_rejects >= chunk) MM_CALL(flush_chunk(p));
        if (show) progress(p, k + 1, &last);
    }
    MM_CALL(flush_chunk(p));
    return MM_OK;
}

/* Phase C: PNGs of the molecules with global index < png_count. */
static mm_status write_pngs(prep_run *p, int64_t first_index)
{
    const mm_prep_report_config *r = &p->cfg->report;
    if (!r->png_dir[0] || r->png_count <= 0 || !(p->ms.modalities & MM_MOD_IMAGE)) return MM_OK;
    if (first_index >= r->png_count || p->n_png == 0) return MM_OK;
    if (mkdir(r->png_dir, 0777) != 0 && errno != EEXIST)
        return MM_ERR(MM_ERR_IO, "cannot create the PNG directory %s: %s", r->png_dir, strerror(errno));
    size_t ib = image_bytes(&p->ms);
    for (int64_t i = 0; i < p->n_png && first_index + i < r->png_count; i++) {
        char path[MM_CFG_STR_MAX + 64];
        snprintf(path, sizeof path, "%s/mol_%06lld_row_%lld.png", r->png_dir, (long long)(first_index + i),
                 (long long)p->png_row[i]);
        MM_CALL(mm_chem_write_png(p->png_img + (size_t)i * ib, p->ms.image_h, p->ms.image_w, path));
    }
    return MM_OK;
}

static void print_examples(FILE *f, const example *ex, int n)
{
    for (int i = 0; i < n; i++)
        fprintf(f, "        row %lld (line %lld): '%s'  %s\n", (long long)ex[i].row, (long long)ex[i].line, ex[i].text,
                ex[i].why);
}

static void print_summary(FILE *f, const prep_run *p, const mm_prep_result *r, const example *ex, const int *n_ex)
{
    const mm_prep_config *c = p->cfg;
    fprintf(f, "mmsa_prep summary: %s -> %s (%d rank%s)\n", c->input.path, c->output.path, r->ranks,
            r->ranks == 1 ? "" : "s");
    fprintf(f, "  rows read          %lld\n", (long long)r->rows);
    fprintf(f, "  molecules written  %lld\n", (long long)r->written);
    fprintf(f, "  rows rejected      %lld%s\n", (long long)r->rejected, r->rejected ? " (in /rejects with row and reason)" : "");
    for (int k = 1; k < MM_PREP_N_REASONS; k++) {
        if (!r->by_reason[k]) continue;
        fprintf(f, "    %-16s %lld\n", mm_prep_reason_name(k), (long long)r->by_reason[k]);
        print_examples(f, ex + k * p->max_ex, n_ex[k]);
    }
    if (r->label_rows) {
        fprintf(f, "  rows with a label cell that is not a number: %lld (molecule kept, that label NaN)\n",
                (long long)r->label_rows);
        print_examples(f, ex + K_LABEL * p->max_ex, n_ex[K_LABEL]);
    }
    if (p->ms.modalities & MM_MOD_CONFORMER) {
        fprintf(f, "  3D conformers      %lld built (%lld with the UFF fallback), %lld from the input, "
                   "%lld without a conformer (ok = 0)\n",
                (long long)r->conf_built, (long long)r->conf_uff, (long long)r->conf_input, (long long)r->conf_failed);
        print_examples(f, ex + K_NOCONF * p->max_ex, n_ex[K_NOCONF]);
    } else {
        fprintf(f, "  3D conformers      off\n");
    }
    if (r->nmr_modalities) {
        static const char *const kname[MM_NMR_KINDS] = {"13C", "1H"};
        int64_t skipped = 0;
        for (int k = 1; k < MM_PREP_NMR_N_SKIPS; k++) skipped += r->nmr_skipped[k];
        fprintf(f, "  NMR spectra       ");
        for (int k = 0; k < MM_NMR_KINDS; k++)
            if (r->nmr_modalities & MM_MOD_NMR(k))
                fprintf(f, " %s: %lld molecules, %lld peaks (%.1f each);", kname[k], (long long)r->nmr_read[k],
                        (long long)r->nmr_peaks[k],
                        r->nmr_read[k] ? (double)r->nmr_peaks[k] / (double)r->nmr_read[k] : 0.0);
        fprintf(f, " %lld skipped\n", (long long)skipped);
        for (int k = 1; k < MM_PREP_NMR_N_SKIPS; k++) {
            if (!r->nmr_skipped[k]) continue;
            fprintf(f, "    skipped, %-26s %lld (molecule kept without that spectrum)\n", mm_prep_nmr_skip_name(k),
                    (long long)r->nmr_skipped[k]);
            print_examples(f, ex + (K_NMR0 + k) * p->max_ex, n_ex[K_NMR0 + k]);
        }
        fprintf(f, "    further spectra of a kind in a record, not read (the lowest <n> is kept): 13C %lld, 1H %lld\n",
                (long long)r->nmr_extra[MM_NMR_13C], (long long)r->nmr_extra[MM_NMR_1H]);
        fprintf(f, "    other spectrum items (15N, 17O, 19F, 31P, 2D), not read: %lld\n", (long long)r->nmr_other);
    } else if (c->features.nmr && p->fmt == MM_TABLE_SDF) {
        fprintf(f, "  NMR spectra        none in the input (no Spectrum 13C / 1H or C13 chemical shift items)\n");
    }
    fprintf(f, "  time               %.2f s, %.1f molecules/s (%.1f per rank)\n", r->seconds,
            r->seconds > 0 ? (double)r->written / r->seconds : 0.0,
            r->seconds > 0 ? (double)r->written / r->seconds / r->ranks : 0.0);
    fprintf(f, "  featuriser seconds (sum over ranks): graph %.2f, 3D %.2f, image %.2f, fingerprint %.2f, "
               "scaffold %.2f\n",
            r->stage_seconds[0], r->stage_seconds[1], r->stage_seconds[2], r->stage_seconds[3], r->stage_seconds[4]);
    fprintf(f, "  check              rows read %lld = written %lld + rejected %lld\n", (long long)r->rows,
            (long long)r->written, (long long)r->rejected);
    fflush(f);
}

/* Before the write (so that nothing can fail once the file exists): sums over the
 * ranks, the row check, and the examples gathered to rank 0 in rank order (= input
 * order) and merged into p->all: the first max_ex of each kind. */
static mm_status gather_summary(prep_run *p, mm_prep_result *res)
{
    int64_t sum[N_COUNTERS];
    MM_MPI_CALL(MPI_Allreduce(p->counter, sum, N_COUNTERS, MPI_INT64_T, MPI_SUM, p->d.comm));
    double stages[5];
    mm_chem_stage_seconds(p->chem, stages);
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, stages, 5, MPI_DOUBLE, MPI_SUM, p->d.comm));
    res->rows = sum[C_ROWS];
    res->written = sum[C_WRITTEN];
    res->rejected = sum[C_REJECTED];
    for (int k = 0; k < MM_PREP_N_REASONS; k++) res->by_reason[k] = sum[C_REASON0 + k];
    res->label_rows = sum[C_LABEL];
    res->conf_built = sum[C_CONF_BUILT];
    res->conf_uff = sum[C_CONF_UFF];
    res->conf_input = sum[C_CONF_INPUT];
    res->conf_failed = sum[C_CONF_FAILED];
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        res->nmr_read[k] = sum[C_NMR_READ + k];
        res->nmr_peaks[k] = sum[C_NMR_PEAKS + k];
        res->nmr_extra[k] = sum[C_NMR_EXTRA + k];
    }
    for (int r = 0; r < MM_PREP_NMR_N_SKIPS; r++) res->nmr_skipped[r] = sum[C_NMR_SKIP0 + r];
    res->nmr_other = sum[C_NMR_OTHER];
    memcpy(res->stage_seconds, stages, sizeof stages);
    MM_MPI_CALL(MPI_Allreduce(&p->held_max, &res->held_max, 1, MPI_INT64_T, MPI_MAX, p->d.comm));
    if (res->rows != res->written + res->rejected || res->rows != p->total)
        return MM_ERR(MM_ERR_INTERNAL, "rows read %lld, expected %lld, written %lld + rejected %lld",
                      (long long)res->rows, (long long)p->total, (long long)res->written, (long long)res->rejected);

    int P = p->d.size, per = N_KINDS * p->max_ex, bytes = 0;
    MM_CALL(mm_dist_count((size_t)per * sizeof(example), "summary example bytes", &bytes));
    if (p->d.rank == 0) {
        p->n_all = (size_t)P * (size_t)(per > 0 ? per : 1);
        p->all = mm_calloc(p->n_all, sizeof *p->all);
        p->all_n = mm_calloc((size_t)P * N_KINDS, sizeof *p->all_n);
    }
    int ok = p->d.rank != 0 || (p->all && p->all_n), all_ok = 0;
    MM_MPI_CALL(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, p->d.comm));
    if (!all_ok) return MM_ERR(MM_ERR_NOMEM, "out of memory gathering the summary on rank 0");
    MM_MPI_CALL(MPI_Gather(p->n_ex, N_KINDS, MPI_INT, p->all_n, N_KINDS, MPI_INT, 0, p->d.comm));
    if (bytes > 0) MM_MPI_CALL(MPI_Gather(p->ex, bytes, MPI_BYTE, p->all, bytes, MPI_BYTE, 0, p->d.comm));
    if (p->d.rank == 0) /* merged in place into rank 0's block: its unused slots are free */
        for (int k = 0; k < N_KINDS; k++) {
            p->n_merged[k] = 0;
            for (int q = 0; q < P; q++)
                for (int i = 0; i < p->all_n[q * N_KINDS + k] && p->n_merged[k] < p->max_ex; i++)
                    p->all[k * p->max_ex + p->n_merged[k]++] = p->all[(size_t)q * per + k * p->max_ex + i];
        }
    return MM_OK;
}

static void run_free(prep_run *p)
{
    mm_table_close(&p->table);
    mm_chem_destroy(&p->chem);
    mm_mol_feat_free(&p->feat);
    mm_prep_spectra_free(&p->spectra);
    if (p->ms_init) mm_molset_free(&p->ms);
    mm_dataset_spool_free(&p->spool);
    if (p->png_img) mm_free_sized(p->png_img, p->png_bytes);
    if (p->png_row) mm_free_sized(p->png_row, (size_t)(p->png_cap > 0 ? p->png_cap : 1) * sizeof *p->png_row);
    mm_prep_labels_free(p->label_names, p->n_label_names > 0 ? p->n_label_names : 0);
    if (p->ex) mm_free_sized(p->ex, (size_t)N_KINDS * (size_t)(p->max_ex > 0 ? p->max_ex : 1) * sizeof *p->ex);
    if (p->all) mm_free_sized(p->all, p->n_all * sizeof *p->all);
    if (p->all_n) mm_free_sized(p->all_n, (size_t)p->d.size * N_KINDS * sizeof *p->all_n);
}

mm_status mm_prep_run(const mm_prep_config *cfg, MPI_Comm comm, FILE *summary, mm_prep_result *res_out)
{
    MM_CHECK_ARG(cfg, "mm_prep_run: NULL config");
    mm_prep_result res_local, *res = res_out ? res_out : &res_local;
    memset(res, 0, sizeof *res);
    res->failed_rank = -1;
    if (mm_prep_config_validate(cfg) != MM_OK) { /* same config everywhere: same outcome */
        res->failed_rank = 0;                     /* every rank has the message; one prints it */
        mm_error_push(__FILE__, __LINE__, __func__);
        return mm_error_code();
    }

    prep_run p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    MM_CALL(mm_dist_init(&p.d, comm));
    MPI_Barrier(p.d.comm); /* the clock starts together */
    p.t0 = MPI_Wtime();
    res->ranks = p.d.size;
    mm_mol_feat_init(&p.feat);
    mm_status st = MM_OK;

    /* local preparation that every rank does the same way */
    p.max_ex = cfg->report.examples;
    p.ex = mm_calloc((size_t)N_KINDS * (size_t)(p.max_ex > 0 ? p.max_ex : 1), sizeof *p.ex);
    if (!p.ex) st = MM_ERR(MM_ERR_NOMEM, "out of memory for the summary");
    if (st == MM_OK && !strcmp(cfg->input.labels, "all")) {
        p.n_label_names = -1;
    } else if (st == MM_OK && cfg->input.labels[0]) {
        st = mm_prep_split_labels(cfg->input.labels, &p.label_names, &p.n_label_names);
    }
    static const mm_table_format fmt_of[] = {MM_TABLE_AUTO, MM_TABLE_CSV, MM_TABLE_SMI, MM_TABLE_SDF};
    p.topts.format = fmt_of[cfg->input.format >= 0 && cfg->input.format <= 3 ? cfg->input.format : 0];
    p.topts.smiles_col = cfg->input.smiles_col[0] ? cfg->input.smiles_col : NULL;
    p.topts.label_cols = (const char *const *)p.label_names;
    p.topts.n_labels = p.n_label_names;

    /* A: rank 0 reads the header and counts */
    if (st == MM_OK && p.d.rank == 0) st = count_rows(&p);
    MM_CALL_GOTO(st, agree(&p, st, res), done);
    int64_t total = p.total;
    MM_CALL_GOTO(st, mpi_status(MPI_Bcast(&total, 1, MPI_INT64_T, 0, p.d.comm), "MPI_Bcast (row count)"), done);
    MM_CALL_GOTO(st, mpi_status(MPI_Bcast(p.sha, sizeof p.sha, MPI_CHAR, 0, p.d.comm), "MPI_Bcast (checksum)"), done);
    MM_CALL_GOTO(st, mpi_status(MPI_Bcast(&p.nmr_mods, 1, MPI_UNSIGNED, 0, p.d.comm), "MPI_Bcast (spectra)"), done);
    res->nmr_modalities = p.nmr_mods;
    p.total = total;
    mm_dist_block(p.total, p.d.size, p.d.rank, &p.start, &p.count);
    if (p.d.rank == 0 && cfg->report.progress)
        fprintf(stderr, "mmsa_prep: %lld rows of %s on %d rank(s), about %lld each\n", (long long)p.total,
                cfg->input.path, p.d.size, (long long)p.count);

    /* B: featurise */
    st = featurise_block(&p);
    MM_CALL_GOTO(st, agree(&p, st, res), done);

    /* C: debug PNGs */
    if (cfg->report.png_dir[0] && cfg->report.png_count > 0) {
        int64_t n = p.n_spooled, before = 0;
        MM_CALL_GOTO(st, mpi_status(MPI_Exscan(&n, &before, 1, MPI_INT64_T, MPI_SUM, p.d.comm), "MPI_Exscan"), done);
        if (p.d.rank == 0) before = 0; /* MPI_Exscan leaves rank 0's result undefined */
        st = write_pngs(&p, before);
        MM_CALL_GOTO(st, agree(&p, st, res), done);
    }

    /* the summary's numbers, while every rank can still fail without leaving a file */
    st = gather_summary(&p, res);
    MM_CALL_GOTO(st, agree(&p, st, res), done);

    /* D: the file */
    char created_by[64];
    snprintf(created_by, sizeof created_by, "mmsa_prep %s", MM_PREP_VERSION);
    mm_dataset_meta meta = {mm_chem_version(), cfg->input.path, p.sha, created_by};
    st = mm_dataset_write_spool(cfg->output.path, p.d.comm, p.spool, &meta);
    if (st != MM_OK) {
        res->failed_rank = -1; /* the writer agreed already; each rank's message says its part */
        mm_error_push(__FILE__, __LINE__, __func__);
        goto done;
    }

    /* E: the summary (nothing left that can fail but MPI itself) */
    double el = MPI_Wtime() - p.t0;
    MM_CALL_GOTO(st, mpi_status(MPI_Allreduce(&el, &res->seconds, 1, MPI_DOUBLE, MPI_MAX, p.d.comm),
                                "MPI_Allreduce (time)"), done);
    if (p.d.rank == 0 && summary) print_summary(summary, &p, res, p.all, p.n_merged);
done:
    run_free(&p);
    mm_dist_destroy(&p.d);
    return st;
}
