/* fuzz_sdf: SD files through the record splitter of csv.h (mm_table with MM_TABLE_SDF:
 * records, title, data items such as the NMR spectra of the CASCADE sets, labels from
 * data items) and every record through mm_chem_featurize_sdf (molfile parsing in Open
 * Babel, input 3D coordinates kept, graph, scaffold, fingerprint, depiction; no conformer
 * is built), and the NMR spectrum items of each featurised record through
 * mm_prep_read_spectra against its atoms (prep.h). The input is the file. Properties: the
 * splitter counts the records it yields, each record featurises to a valid molecule or a
 * reject (fuzz_chem.h), every input atom maps into the molecule, and a spectrum is read
 * whole (finite shifts, atoms of the molecule: carbons for 13C, atoms with hydrogens for
 * 1H) or skipped with a reason naming its item. */
#include <math.h>
#include <stdbool.h>

#include "fuzz_chem.h"
#include "mmsa/csv.h"
#include "mmsa/prep.h"

static mm_prep_spectra spectra;

static void free_spectra(void) { mm_prep_spectra_free(&spectra); }

/* The record's spectra against the molecule just featurised. */
static void check_spectra(const mm_table_row *r)
{
    FUZZ_ASSERT(feat.n_input_atoms >= feat.n_atoms);
    for (int32_t k = 0; k < feat.n_input_atoms; k++)
        FUZZ_ASSERT(feat.input_atom[k] >= -1 && feat.input_atom[k] < feat.n_atoms &&
                    (feat.input_is_h[k] || feat.input_atom[k] >= 0));
    mm_status st = mm_prep_read_spectra(r->n_items, r->item_names, r->item_values, feat.n_input_atoms,
                                        feat.input_atom, feat.input_is_h, feat.n_atoms, feat.atom_feat, &spectra);
    FUZZ_ASSERT(st == MM_OK);
    FUZZ_ASSERT((mm_prep_spectra_kinds(r->n_items, r->item_names) & MM_MOD_NMR13C) == (spectra.kind[0].found ? MM_MOD_NMR13C : 0u));
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        const mm_prep_spectrum *x = &spectra.kind[k];
        FUZZ_ASSERT(x->skip >= 0 && x->skip < MM_PREP_NMR_N_SKIPS && x->found >= 0);
        if (!x->found) continue;
        if (x->skip) {
            FUZZ_ASSERT(x->n_peaks == 0 && strstr(x->why, x->item));
            continue;
        }
        FUZZ_ASSERT(x->n_peaks >= 1);
        for (int64_t q = 0; q < x->n_peaks; q++) {
            FUZZ_ASSERT(isfinite(x->shift[q]) && x->atom[q] >= 0 && x->atom[q] < feat.n_atoms);
            const uint8_t *af = feat.atom_feat + (size_t)x->atom[q] * MM_CHEM_ATOM_FEATS;
            FUZZ_ASSERT(k == MM_NMR_13C ? af[0] == 5 : 1);
        }
    }
}

#define IMAGE 32
#define MAX_RECORDS 4 /* featurised per input; the splitter reads them all */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_chem_setup(IMAGE);
    atexit(free_spectra);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(data, size, ".sdf");
    static const char *const items[] = {"C13 chemical shift", "H1 chemical shift", "SMILES", "value"};
    mm_table_opts o = {MM_TABLE_SDF, NULL, items, 4};
    int64_t counted = -1, rows = 0;
    bool count_ok = mm_table_count_rows(path, &o, &counted) == MM_OK;
    mm_table *t = NULL;
    if (mm_table_open(path, &o, &t) == MM_OK) {
        for (;;) {
            mm_table_row r;
            memset(&r, 0, sizeof r);
            r.row = -1;
            bool eof = false;
            mm_status st = mm_table_next(t, &r, &eof);
            if (st != MM_OK && !(st == MM_ERR_FORMAT && r.row == rows && !eof)) {
                rows = -1;
                break;
            }
            if (eof) break;
            FUZZ_ASSERT(r.row == rows && r.record && r.name);
            for (int i = 0; i < r.n_items; i++) FUZZ_ASSERT(r.item_names[i] && r.item_values[i]);
            int labelled = 0;
            for (int i = 0; i < 4; i++) labelled += !isnan(r.labels[i]);
            FUZZ_ASSERT(labelled <= 4);
            if (rows < MAX_RECORDS) {
                mm_error_clear();
                st = mm_chem_featurize_sdf(chem, r.record, (uint64_t)rows, &feat);
                fuzz_check_outcome(st, &feat, IMAGE, r.record);
                if (st == MM_OK) check_spectra(&r);
            }
            rows++;
        }
        mm_table_close(&t);
    }
    if (count_ok && rows >= 0) FUZZ_ASSERT(counted == rows);
    mm_error_clear();
    return 0;
}
