/* dataset_inspect.c: a human summary of a dataset file (mmsa_prep's inspect mode). */
#include <math.h>
#include <string.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"

#define INSPECT_BLOCK 4096

typedef struct task_stats {
    int64_t labelled, positives, others; /* others: values other than 0 and 1 */
    double sum, min, max;
} task_stats;

static void print_modalities(FILE *f, const mm_dataset_info *in)
{
    fprintf(f, "  modalities   graph");
    if (in->modalities & MM_MOD_CONFORMER) fprintf(f, ", conformer");
    if (in->modalities & MM_MOD_IMAGE) fprintf(f, ", image %dx%dx%d", MM_DS_IMAGE_CHANNELS, in->image_h, in->image_w);
    if (in->modalities & MM_MOD_FINGERPRINT) fprintf(f, ", fingerprint %d bits", 8 * MM_DS_FP_BYTES);
    if (in->modalities & MM_MOD_SCAFFOLD) fprintf(f, ", scaffold");
    if (in->modalities & MM_MOD_LABELS) fprintf(f, ", labels (%d task%s)", in->n_tasks, in->n_tasks == 1 ? "" : "s");
    if (in->modalities & MM_MOD_NMR13C) fprintf(f, ", 13C NMR");
    if (in->modalities & MM_MOD_NMR1H) fprintf(f, ", 1H NMR");
    fprintf(f, "\n");
}

static mm_status inspect(mm_dataset *ds, FILE *f, int max_reasons)
{
    const mm_dataset_info *in = mm_dataset_get_info(ds);
    const int64_t N = in->n_molecules, T = in->n_tasks;
    const int64_t *ao = mm_dataset_atom_offset(ds), *bo = mm_dataset_bond_offset(ds);
    int64_t max_atoms = 0, max_bonds = 0;
    for (int64_t i = 0; i < N; i++) {
        if (ao[i + 1] - ao[i] > max_atoms) max_atoms = ao[i + 1] - ao[i];
        if (bo[i + 1] - bo[i] > max_bonds) max_bonds = bo[i + 1] - bo[i];
    }
    fprintf(f, "dataset %s\n", in->path);
    fprintf(f, "  format       %s, version %lld\n", in->format, (long long)in->version);
    fprintf(f, "  featurizer   %s\n", in->featurizer[0] ? in->featurizer : "(not recorded)");
    fprintf(f, "  source       %s\n", in->source[0] ? in->source : "(not recorded)");
    fprintf(f, "  source sha256 %s\n", in->source_sha256[0] ? in->source_sha256 : "(not recorded)");
    fprintf(f, "  created by   %s\n", in->created_by[0] ? in->created_by : "(not recorded)");
    fprintf(f, "  molecules    %lld\n", (long long)N);
    fprintf(f, "  atoms        %lld (%.1f per molecule, at most %lld)\n", (long long)in->n_atoms,
            N ? (double)in->n_atoms / (double)N : 0.0, (long long)max_atoms);
    fprintf(f, "  bonds        %lld (%.1f per molecule, at most %lld)\n", (long long)in->n_bonds,
            N ? (double)in->n_bonds / (double)N : 0.0, (long long)max_bonds);
    print_modalities(f, in);

    /* one pass over every molecule: validates it and gathers the statistics */
    task_stats *ts = NULL;
    if (T > 0) {
        ts = mm_calloc((size_t)T, sizeof *ts);
        if (!ts) return MM_ERR(MM_ERR_NOMEM, "cannot allocate statistics of %lld tasks", (long long)T);
        for (int64_t t = 0; t < T; t++) ts[t].min = INFINITY, ts[t].max = -INFINITY;
    }
    int64_t conf_ok = 0, empty_scaffold = 0, fp_bits = 0;
    int64_t spectra[MM_NMR_KINDS] = {0}, peaks[MM_NMR_KINDS] = {0}, max_peaks[MM_NMR_KINDS] = {0};
    int64_t unassigned[MM_NMR_KINDS] = {0};
    mm_molset b = {0};
    mm_status st = MM_OK;
    const unsigned mods = in->modalities & ~(unsigned)MM_MOD_IMAGE;
    for (int64_t s = 0; s < N && st == MM_OK; s += INSPECT_BLOCK) {
        int64_t e = s + INSPECT_BLOCK < N ? s + INSPECT_BLOCK : N;
        st = mm_dataset_read_range(ds, s, e, mods, &b);
        if (st != MM_OK) break;
        for (int64_t i = 0; i < b.n; i++) {
            if (mods & MM_MOD_CONFORMER) conf_ok += b.conf_ok[i];
            for (int k = 0; k < MM_NMR_KINDS; k++) {
                if (!(mods & MM_MOD_NMR(k))) continue;
                const mm_spectra *sp = &b.nmr[k];
                int64_t p0 = sp->peak_offset[i], p1 = sp->peak_offset[i + 1];
                spectra[k] += sp->ok[i];
                peaks[k] += p1 - p0;
                if (p1 - p0 > max_peaks[k]) max_peaks[k] = p1 - p0;
                for (int64_t q = p0; q < p1; q++) unassigned[k] += sp->atom[q] < 0;
            }
            if ((mods & MM_MOD_SCAFFOLD) && mm_strings_get(&b.scaffold, i)[0] == '\0') empty_scaffold++;
            if (mods & MM_MOD_FINGERPRINT)
                for (int k = 0; k < MM_DS_FP_BYTES; k++) fp_bits += __builtin_popcount(b.fingerprint[i * MM_DS_FP_BYTES + k]);
            for (int64_t t = 0; t < T && (mods & MM_MOD_LABELS); t++) {
                float v = b.labels[i * T + t];
                if (isnan(v)) continue;
                task_stats *x = &ts[t];
                x->labelled++;
                if (v == 1.0f) x->positives++;
                else if (v != 0.0f) x->others++;
                x->sum += v;
                if (v < x->min) x->min = v;
                if (v > x->max) x->max = v;
            }
        }
    }
    mm_molset_free(&b);
    if (st != MM_OK) {
        if (ts) mm_free_sized(ts, (size_t)T * sizeof *ts);
        MM_CALL(st);
    }
    if (in->modalities & MM_MOD_CONFORMER)
        fprintf(f, "  conformers   ok for %lld of %lld (%.1f%%)\n", (long long)conf_ok, (long long)N,
                N ? 100.0 * (double)conf_ok / (double)N : 0.0);
    if (in->modalities & MM_MOD_FINGERPRINT)
        fprintf(f, "  fingerprint  %.1f bits set per molecule\n", N ? (double)fp_bits / (double)N : 0.0);
    static const char *const kind_name[MM_NMR_KINDS] = {"13C NMR", "1H NMR"};
    for (int k = 0; k < MM_NMR_KINDS; k++)
        if (in->modalities & MM_MOD_NMR(k))
            fprintf(f, "  %-12s %lld spectra (%.1f%% of the molecules), %lld peaks (%.1f per spectrum, at most %lld), "
                    "%lld not assigned to an atom\n", kind_name[k], (long long)spectra[k],
                    N ? 100.0 * (double)spectra[k] / (double)N : 0.0, (long long)peaks[k],
                    spectra[k] ? (double)peaks[k] / (double)spectra[k] : 0.0, (long long)max_peaks[k],
                    (long long)unassigned[k]);
    if (in->modalities & MM_MOD_SCAFFOLD)
        fprintf(f, "  scaffolds    %lld molecules without a ring system (empty scaffold)\n", (long long)empty_scaffold);
    if (T > 0) {
        fprintf(f, "  tasks        %-24s %10s %10s  %s\n", "name", "labelled", "positives", "kind");
        for (int64_t t = 0; t < T; t++) {
            const task_stats *x = &ts[t];
            if (x->others == 0)
                fprintf(f, "               %-24s %10lld %10lld  binary (%.1f%% positive)\n", in->task_names[t],
                        (long long)x->labelled, (long long)x->positives,
                        x->labelled ? 100.0 * (double)x->positives / (double)x->labelled : 0.0);
            else
                fprintf(f, "               %-24s %10lld %10s  real (mean %.4g, range %.4g .. %.4g)\n",
                        in->task_names[t], (long long)x->labelled, "-", x->sum / (double)x->labelled, x->min, x->max);
        }
        mm_free_sized(ts, (size_t)T * sizeof *ts);
    }
    mm_molset r = {0};
    MM_CALL(mm_dataset_read_rejects(ds, &r));
    fprintf(f, "  rejects      %lld\n", (long long)r.n_rejects);
    for (int64_t k = 0; k < r.n_rejects && k < max_reasons; k++)
        fprintf(f, "               row %lld: %s  [%s]\n", (long long)r.reject_row[k],
                mm_strings_get(&r.reject_reason, k), mm_strings_get(&r.reject_smiles, k));
    if (r.n_rejects > max_reasons && max_reasons > 0)
        fprintf(f, "               ... %lld more\n", (long long)(r.n_rejects - max_reasons));
    mm_molset_free(&r);
    fprintf(f, "  validated    all %lld molecules (offsets, bonds within their molecule, feature vocabularies, spectra)\n",
            (long long)N);
    return MM_OK;
}

mm_status mm_dataset_inspect(const char *path, FILE *out, int max_reasons)
{
    MM_CHECK_ARG(path && out, "mm_dataset_inspect: NULL argument");
    mm_dataset *ds = NULL;
    MM_CALL(mm_dataset_open(path, MPI_COMM_NULL, &ds));
    mm_status st = inspect(ds, out, max_reasons);
    mm_dataset_close(&ds);
    MM_CALL(st);
    return MM_OK;
}
