/* Tests for csv.h: RFC 4180 records, molecule tables (CSV, SMILES, SD), gzip input,
 * row counting and skipping, label errors, and the real MoleculeNet / CASCADE files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "mmsa/alloc.h"
#include "mmsa/csv.h"
#include "testutil.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    size_t n = strlen(p);
    if (n > 3 && strcmp(p + n - 3, ".gz") == 0) {
        gzFile g = gzopen(p, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, text, (unsigned)strlen(text)), (int)strlen(text));
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        fclose(f);
    }
    return p;
}

static void test_rfc4180_records(void **state)
{
    (void)state;
    const char *p = write_file("r.csv",
                               "a,\"b,c\",\"say \"\"hi\"\"\"\r\n"
                               "\"multi\nline\",,x\r\n"
                               "last,\"\",\"end\"");
    mm_csv *r = NULL;
    assert_int_equal(mm_csv_open(p, &r), MM_OK);
    char **f;
    int n;
    int64_t line;
    bool eof;
    assert_int_equal(mm_csv_next(r, &f, &n, &line, &eof), MM_OK);
    assert_false(eof);
    assert_int_equal(n, 3);
    assert_int_equal(line, 1);
    assert_string_equal(f[0], "a");
    assert_string_equal(f[1], "b,c");
    assert_string_equal(f[2], "say \"hi\"");
    assert_int_equal(mm_csv_next(r, &f, &n, &line, &eof), MM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(line, 2);
    assert_string_equal(f[0], "multi\nline");
    assert_string_equal(f[1], "");
    assert_string_equal(f[2], "x");
    assert_int_equal(mm_csv_next(r, &f, &n, &line, &eof), MM_OK);
    assert_int_equal(line, 4); /* the quoted line break moved it down one line */
    assert_int_equal(n, 3);
    assert_string_equal(f[0], "last");
    assert_string_equal(f[1], "");
    assert_string_equal(f[2], "end");
    assert_int_equal(mm_csv_next(r, &f, &n, &line, &eof), MM_OK);
    assert_true(eof);
    mm_csv_close(&r);
    assert_null(r);
}

static void test_unterminated_quote_names_line(void **state)
{
    (void)state;
    const char *p = write_file("bad.csv", "smiles,y\nCCO,1\n\"CC,2\nCCC,3\n");
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(p, NULL, &t), MM_OK);
    mm_table_row row;
    bool eof;
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_int_equal(mm_table_next(t, &row, &eof), MM_ERR_FORMAT);
    assert_non_null(strstr(mm_error_message(), "opened on line 3"));
    mm_error_clear();
    mm_table_close(&t);
}

static void test_table_labels_and_errors(void **state)
{
    (void)state;
    /* BACE-like SMILES column name, a quoted header with a comma (as in SIDER), an empty
     * cell, a non-numeric cell, an empty line and CRLF endings. */
    const char *p = write_file("t.csv",
                               "id,mol,\"Hepatobiliary disorders, other\",Class\r\n"
                               "m1,CCO,1,0\r\n"
                               "m2, c1ccccc1 ,,1\r\n"
                               "m3,CCN,abc,1\r\n"
                               "\r\n"
                               "m5,CC(=O)O,0.5,-2e-1\r\n");
    const char *labels[] = {"Class", "Hepatobiliary disorders, other"};
    mm_table_opts o = {.smiles_col = "mol", .label_cols = labels, .n_labels = 2};
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(p, &o, &t), MM_OK);
    assert_int_equal(mm_table_n_labels(t), 2);
    assert_string_equal(mm_table_label_name(t, 1), "Hepatobiliary disorders, other");
    mm_table_row row;
    bool eof;
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_int_equal(row.row, 0);
    assert_int_equal(row.line, 2);
    assert_string_equal(row.smiles, "CCO");
    assert_float_equal(row.labels[0], 0, 0);
    assert_float_equal(row.labels[1], 1, 0);

    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_string_equal(row.smiles, "c1ccccc1"); /* blanks trimmed */
    assert_float_equal(row.labels[0], 1, 0);
    assert_true(isnan(row.labels[1]));          /* empty cell = missing */

    assert_int_equal(mm_table_next(t, &row, &eof), MM_ERR_FORMAT);
    const char *msg = mm_error_message();
    assert_non_null(strstr(msg, "t.csv:4"));
    assert_non_null(strstr(msg, "row 2"));
    assert_non_null(strstr(msg, "'Hepatobiliary disorders, other'"));
    assert_non_null(strstr(msg, "'abc'"));
    mm_error_clear();
    assert_string_equal(row.smiles, "CCN");     /* the row is still usable */
    assert_int_equal(row.row, 2);
    assert_true(isnan(row.labels[1]));
    assert_float_equal(row.labels[0], 1, 0);

    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK); /* the empty line is a row */
    assert_int_equal(row.row, 3);
    assert_int_equal(row.line, 5);
    assert_string_equal(row.smiles, "");
    assert_true(isnan(row.labels[0]) && isnan(row.labels[1]));

    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_int_equal(row.row, 4);
    assert_int_equal(row.line, 6);
    assert_float_equal(row.labels[0], -0.2f, 1e-7);
    assert_float_equal(row.labels[1], 0.5f, 1e-7);
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_true(eof);
    mm_table_close(&t);

    int64_t n = -1;
    assert_int_equal(mm_table_count_rows(p, &o, &n), MM_OK);
    assert_int_equal(n, 5);

    /* all columns except the SMILES one */
    mm_table_opts all = {.smiles_col = "mol", .n_labels = -1};
    assert_int_equal(mm_table_open(p, &all, &t), MM_OK);
    assert_int_equal(mm_table_n_labels(t), 3);
    assert_string_equal(mm_table_label_name(t, 0), "id");
    assert_string_equal(mm_table_label_name(t, 2), "Class");
    mm_table_close(&t);

    /* a missing column is a configuration error that lists the header */
    mm_table_opts bad = {.smiles_col = "smiles"};
    assert_int_equal(mm_table_open(p, &bad, &t), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "'mol'"));
    mm_error_clear();
    const char *nolab[] = {"p_np"};
    mm_table_opts bad2 = {.smiles_col = "mol", .label_cols = nolab, .n_labels = 1};
    assert_int_equal(mm_table_open(p, &bad2, &t), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "'p_np'"));
    mm_error_clear();
    assert_null(t);
}

static void test_too_many_fields_is_recoverable(void **state)
{
    (void)state;
    const char *p = write_file("wide.csv", "smiles,y\nCC,1,7\nCCC,2\n");
    const char *lab[] = {"y"};
    mm_table_opts o = {.label_cols = lab, .n_labels = 1};
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(p, &o, &t), MM_OK);
    mm_table_row row;
    bool eof;
    assert_int_equal(mm_table_next(t, &row, &eof), MM_ERR_FORMAT);
    assert_non_null(strstr(mm_error_message(), "3 fields"));
    mm_error_clear();
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_string_equal(row.smiles, "CCC");
    assert_float_equal(row.labels[0], 2, 0);
    mm_table_close(&t);
}

static void test_gzip_equals_plain_and_skip(void **state)
{
    (void)state;
    char text[64 * 1024];
    size_t used = (size_t)snprintf(text, sizeof text, "smiles,value\n");
    for (int i = 0; i < 2000; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s,%d\n", i % 3 ? "CCO" : "\"C(C)O\"", i);
    const char *plain = write_file("big.csv", text);
    const char *gz = write_file("big.csv.gz", text);
    const char *lab[] = {"value"};
    mm_table_opts o = {.label_cols = lab, .n_labels = 1};
    int64_t n1 = 0, n2 = 0;
    assert_int_equal(mm_table_count_rows(plain, &o, &n1), MM_OK);
    assert_int_equal(mm_table_count_rows(gz, &o, &n2), MM_OK);
    assert_int_equal(n1, 2000);
    assert_int_equal(n2, 2000);

    mm_table *a = NULL, *b = NULL;
    assert_int_equal(mm_table_open(plain, &o, &a), MM_OK);
    assert_int_equal(mm_table_open(gz, &o, &b), MM_OK);
    int64_t skipped = 0;
    assert_int_equal(mm_table_skip(b, 1234, &skipped), MM_OK);
    assert_int_equal(skipped, 1234);
    mm_table_row ra, rb;
    bool ea, eb;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(mm_table_next(a, &ra, &ea), MM_OK);
        assert_false(ea);
        assert_int_equal(ra.row, i);
        assert_int_equal(ra.line, i + 2);
        assert_float_equal(ra.labels[0], (float)i, 0);
        assert_string_equal(ra.smiles, i % 3 ? "CCO" : "C(C)O");
        if (i >= 1234) {
            assert_int_equal(mm_table_next(b, &rb, &eb), MM_OK);
            assert_int_equal(rb.row, ra.row);
            assert_int_equal(rb.line, ra.line);
            assert_string_equal(rb.smiles, ra.smiles);
            assert_float_equal(rb.labels[0], ra.labels[0], 0);
        }
    }
    assert_int_equal(mm_table_next(a, &ra, &ea), MM_OK);
    assert_true(ea);
    assert_int_equal(mm_table_skip(b, 10, &skipped), MM_OK);
    assert_int_equal(skipped, 0);
    mm_table_close(&a);
    mm_table_close(&b);
}

static void test_smi_file(void **state)
{
    (void)state;
    const char *p = write_file("m.smi", "CCO ethanol\n\n  c1ccccc1\tbenzene ring \nCN\n");
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(p, NULL, &t), MM_OK);
    assert_int_equal(mm_table_get_format(t), MM_TABLE_SMI);
    mm_table_row row;
    bool eof;
    const char *want_s[] = {"CCO", "", "c1ccccc1", "CN"};
    const char *want_n[] = {"ethanol", "", "benzene ring", ""};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        assert_false(eof);
        assert_int_equal(row.row, i);
        assert_int_equal(row.line, i + 1);
        assert_string_equal(row.smiles, want_s[i]);
        assert_string_equal(row.name, want_n[i]);
    }
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_true(eof);
    mm_table_close(&t);
    int64_t n = 0;
    assert_int_equal(mm_table_count_rows(p, NULL, &n), MM_OK);
    assert_int_equal(n, 4);
    mm_table_opts o = {.n_labels = 1, .label_cols = (const char *[]){"y"}};
    assert_int_equal(mm_table_open(p, &o, &t), MM_ERR_CONFIG);
    mm_error_clear();
}

static const char *SDF_TEXT =
    "mol one\n"
    "     RDKit          2D\n"
    "\n"
    "  2  1  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n"
    "    1.5000    0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0\n"
    "  1  2  1  0\n"
    "M  END\n"
    ">  <SMILES>  (1) \n"
    "CO\n"
    "\n"
    ">  <shift>\n"
    "49.9\n"
    "\n"
    ">  <notes>\n"
    "first line\n"
    "second line\n"
    "\n"
    "$$$$\n"
    "mol two\n"
    "     RDKit          2D\n"
    "\n"
    "  1  0  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 N   0  0  0  0  0  0  0  0  0  0  0  0\n"
    "M  END\n"
    ">  <shift>\n"
    "n/a\n"
    "\n"
    "$$$$\n"
    "\n";

static void test_sdf_records(void **state)
{
    (void)state;
    const char *p = write_file("x.sdf.gz", SDF_TEXT);
    const char *lab[] = {"shift", "absent"};
    mm_table_opts o = {.label_cols = lab, .n_labels = 2};
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(p, &o, &t), MM_OK);
    assert_int_equal(mm_table_get_format(t), MM_TABLE_SDF);
    mm_table_row row;
    bool eof;
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_int_equal(row.row, 0);
    assert_int_equal(row.line, 1);
    assert_string_equal(row.name, "mol one");
    assert_null(row.smiles);
    assert_non_null(strstr(row.record, "M  END"));
    assert_null(strstr(row.record, "$$$$"));
    assert_int_equal(row.n_items, 3);
    assert_string_equal(row.item_names[0], "SMILES");
    assert_string_equal(row.item_values[0], "CO");
    assert_string_equal(row.item_names[2], "notes");
    assert_string_equal(row.item_values[2], "first line\nsecond line");
    assert_float_equal(row.labels[0], 49.9f, 1e-5);
    assert_true(isnan(row.labels[1]));
    assert_int_equal(mm_table_next(t, &row, &eof), MM_ERR_FORMAT);
    assert_non_null(strstr(mm_error_message(), "record 1"));
    assert_non_null(strstr(mm_error_message(), "'shift'"));
    mm_error_clear();
    assert_int_equal(row.line, 20);
    assert_string_equal(row.name, "mol two");
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_true(eof); /* the blank line after the last $$$$ is not a record */
    mm_table_close(&t);
    int64_t n = 0;
    assert_int_equal(mm_table_count_rows(p, NULL, &n), MM_OK);
    assert_int_equal(n, 2);
}

static void test_missing_file(void **state)
{
    (void)state;
    mm_table *t = NULL;
    assert_int_equal(mm_table_open("/nonexistent/dir/x.csv", NULL, &t), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "/nonexistent/dir/x.csv"));
    mm_error_clear();
    assert_int_equal(mm_table_open(tu_tmpdir(), &(mm_table_opts){.format = MM_TABLE_CSV}, &t), MM_ERR_IO);
    mm_error_clear();
    assert_int_equal(mm_table_open("file.xyz", NULL, &t), MM_ERR_CONFIG);
    mm_error_clear();
}

/* Every allocation of open + read failing in turn: clean errors, no leaks. */
static void test_allocation_failures(void **state)
{
    (void)state;
    const char *p = write_file("af.sdf", SDF_TEXT);
    const char *lab[] = {"shift"};
    mm_table_opts o = {.label_cols = lab, .n_labels = 1};
    size_t base = mm_alloc_live_bytes();
    int failures = 0;
    for (int k = 1; k < 200; k++) {
        tu_fail_alloc_after(k);
        mm_table *t = NULL;
        mm_status st = mm_table_open(p, &o, &t);
        mm_table_row row;
        bool eof = false;
        while (st == MM_OK && !eof) {
            st = mm_table_next(t, &row, &eof);
            if (st == MM_ERR_FORMAT) st = MM_OK;
        }
        tu_fail_alloc_after(0);
        mm_table_close(&t);
        if (st == MM_ERR_NOMEM) failures++;
        else assert_int_equal(st, MM_OK);
        mm_error_clear();
        assert_int_equal(mm_alloc_live_bytes(), base);
    }
    assert_true(failures > 5);
}

/* The real files: row counts and missing-label counts stated in data/README.md. */
static void test_real_moleculenet_files(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/data/moleculenet/tox21.csv", tu_shared_dir());
    mm_table_opts all = {.n_labels = -1};
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(path, &all, &t), MM_OK);
    assert_int_equal(mm_table_n_labels(t), 12);
    assert_string_equal(mm_table_label_name(t, 0), "NR-AR");
    assert_string_equal(mm_table_label_name(t, 11), "SR-p53");
    int64_t rows = 0, missing = 0, total = 0;
    mm_table_row row;
    bool eof = false;
    for (;;) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        if (eof) break;
        rows++;
        for (int j = 0; j < 12; j++) {
            total++;
            missing += isnan(row.labels[j]);
        }
    }
    mm_table_close(&t);
    assert_int_equal(rows, 7831);
    assert_int_equal(total, 93972);
    assert_int_equal(missing, 16026);

    snprintf(path, sizeof path, "%s/data/moleculenet/bace.csv", tu_shared_dir());
    int64_t n = 0;
    assert_int_equal(mm_table_count_rows(path, &(mm_table_opts){.smiles_col = "mol"}, &n), MM_OK);
    assert_int_equal(n, 1513);
    snprintf(path, sizeof path, "%s/data/moleculenet/hiv.csv.gz", tu_shared_dir());
    assert_int_equal(mm_table_count_rows(path, NULL, &n), MM_OK);
    assert_int_equal(n, 41127);
    snprintf(path, sizeof path, "%s/data/pretrain/chembl30_chemreps_proc_valid.csv.gz", tu_shared_dir());
    assert_int_equal(mm_table_open(path, NULL, &t), MM_OK); /* column "SMILES" found by default */
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_true(strlen(row.smiles) > 0);
    mm_table_close(&t);
    assert_int_equal(mm_table_count_rows(path, NULL, &n), MM_OK);
    assert_int_equal(n, 45299);
}

static void test_real_sdf(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/data/spectra_3d/cascade_Exp5K_DFT.sdf.gz", tu_shared_dir());
    int64_t n = 0;
    assert_int_equal(mm_table_count_rows(path, NULL, &n), MM_OK);
    assert_int_equal(n, 5137);
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(path, NULL, &t), MM_OK);
    mm_table_row row;
    bool eof;
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_string_equal(row.name, "20212894");
    assert_int_equal(row.n_items, 2);
    assert_string_equal(row.item_names[0], "SMILES");
    assert_string_equal(row.item_values[0], "O=S(=O)(Cc1c(F)c(F)c(F)c(F)c1F)C(F)(F)F");
    assert_string_equal(row.item_names[1], "C13 chemical shift");
    assert_int_equal(strncmp(row.item_values[1], "0,142.80|1,137.90|", 18), 0);
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_string_equal(row.name, "10019354");
    assert_int_equal(row.line, 55); /* the line after the first "$$$$" (line 54) */
    mm_table_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4180_records),
        cmocka_unit_test(test_unterminated_quote_names_line),
        cmocka_unit_test(test_table_labels_and_errors),
        cmocka_unit_test(test_too_many_fields_is_recoverable),
        cmocka_unit_test(test_gzip_equals_plain_and_skip),
        cmocka_unit_test(test_smi_file),
        cmocka_unit_test(test_sdf_records),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_real_moleculenet_files),
        cmocka_unit_test(test_real_sdf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
