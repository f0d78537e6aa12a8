/* fuzz_csv: the molecule-table reader (csv.h) on arbitrary bytes, the way mmsa_prep uses
 * it: count the rows, then read them all (a bad label cell or an extra field is a
 * recoverable MM_ERR_FORMAT), then skip into the file and read on. The first byte picks
 * the format and the label columns; the rest is the file (plain or gzip).
 * Properties: mm_table_count_rows equals the rows mm_table_next yields, rows are numbered
 * 0, 1, 2, ... with non-decreasing lines, and after mm_table_skip(k) the next row is k. */
#include <math.h>
#include <stdbool.h>

#include "fuzz_common.h"
#include "mmsa/csv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    return 0;
}

/* Reads every row; *n = rows yielded, -1 when reading stopped with a hard error. */
static void read_all(const char *path, const mm_table_opts *o, int64_t *n)
{
    mm_table *t = NULL;
    *n = -1;
    if (mm_table_open(path, o, &t) != MM_OK) return;
    int nl = mm_table_n_labels(t);
    for (int i = 0; i < nl; i++) FUZZ_ASSERT(mm_table_label_name(t, i) != NULL);
    int64_t rows = 0, last_line = 0;
    for (;;) {
        mm_table_row r;
        memset(&r, 0, sizeof r);
        r.row = -1;
        bool eof = false;
        mm_status st = mm_table_next(t, &r, &eof);
        /* MM_ERR_FORMAT is recoverable only when the row was filled in (a bad label cell,
         * too many fields), as mmsa_prep reads it; an unclosed quote ends the file. */
        if (st != MM_OK && !(st == MM_ERR_FORMAT && r.row == rows && !eof)) break;
        if (eof) {
            *n = rows;
            break;
        }
        FUZZ_ASSERT(r.row == rows);
        FUZZ_ASSERT(r.line >= last_line && r.line >= 1);
        last_line = r.line;
        if (r.smiles) FUZZ_ASSERT(strlen(r.smiles) < (size_t)1 << 30);
        if (r.name) FUZZ_ASSERT(strlen(r.name) < (size_t)1 << 30);
        int labelled = 0; /* every label cell is read (ASan checks the bounds) */
        for (int i = 0; i < nl; i++) labelled += !isnan(r.labels[i]);
        FUZZ_ASSERT(labelled <= nl);
        for (int i = 0; i < r.n_items; i++) FUZZ_ASSERT(r.item_names[i] && r.item_values[i]);
        rows++;
    }
    mm_table_close(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    static const char *const labels[] = {"p_np", "label", "y"};
    mm_table_opts o = {0};
    const char *suffix = ".csv";
    switch (sel % 4) {
    case 0: o.format = MM_TABLE_CSV; break;                          /* SMILES column only */
    case 1: o.format = MM_TABLE_CSV; o.n_labels = -1; break;         /* every other column */
    case 2: o.format = MM_TABLE_CSV; o.label_cols = labels; o.n_labels = 3; break;
    default: o.format = MM_TABLE_SMI; suffix = ".smi"; break;
    }
    if (sel & 0x10) o.format = MM_TABLE_AUTO; /* from the suffix */
    if (sel & 0x20) o.smiles_col = "smiles";
    const char *path = fuzz_write(data, size, suffix);

    /* Raw records. */
    mm_csv *c = NULL;
    if (mm_csv_open(path, &c) == MM_OK) {
        for (int k = 0; k < 100000; k++) {
            char **f;
            int nf;
            int64_t line;
            bool eof = false;
            if (mm_csv_next(c, &f, &nf, &line, &eof) != MM_OK || eof) break;
            for (int i = 0; i < nf; i++) FUZZ_ASSERT(f[i] != NULL);
        }
        mm_csv_close(&c);
    }

    int64_t counted = -1, yielded = -1;
    bool count_ok = mm_table_count_rows(path, &o, &counted) == MM_OK;
    read_all(path, &o, &yielded);
    if (count_ok && yielded >= 0) FUZZ_ASSERT(counted == yielded);

    /* Skip into the file, as a rank does to reach its slice. */
    if (count_ok && counted > 0) {
        int64_t k = (int64_t)(sel >> 6) % (counted + 1), skipped = -1;
        mm_table *t = NULL;
        if (mm_table_open(path, &o, &t) == MM_OK) {
            if (mm_table_skip(t, k, &skipped) == MM_OK) {
                FUZZ_ASSERT(skipped == k);
                mm_table_row r;
                memset(&r, 0, sizeof r);
                r.row = -1;
                bool eof = false;
                mm_status st = mm_table_next(t, &r, &eof);
                if (st == MM_OK && !eof) FUZZ_ASSERT(r.row == k);
                if (st == MM_OK && k == counted) FUZZ_ASSERT(eof);
            }
            mm_table_close(&t);
        }
    }
    mm_error_clear();
    return 0;
}
