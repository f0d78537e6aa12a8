/* fuzz_sdf: SD files through the record splitter of csv.h (mm_table with MM_TABLE_SDF:
 * records, title, data items such as the NMR spectra of the CASCADE sets, labels from
 * data items) and every record through mm_chem_featurize_sdf (molfile parsing in Open
 * Babel, input 3D coordinates kept, graph, scaffold, fingerprint, depiction; no conformer
 * is built). The input is the file. Properties: the splitter counts the records it
 * yields, and each record featurises to a valid molecule or a reject (fuzz_chem.h). */
#include <math.h>
#include <stdbool.h>

#include "fuzz_chem.h"
#include "mmsa/csv.h"

#define IMAGE 32
#define MAX_RECORDS 4 /* featurised per input; the splitter reads them all */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_chem_setup(IMAGE);
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
            }
            rows++;
        }
        mm_table_close(&t);
    }
    if (count_ok && rows >= 0) FUZZ_ASSERT(counted == rows);
    mm_error_clear();
    return 0;
}
