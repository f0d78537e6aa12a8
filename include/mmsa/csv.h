/* csv.h: streaming readers for molecule tables: CSV (RFC 4180), SMILES lists and SD files.
 *
 * Owns: one open input file (plain or gzip, detected from the content, read through
 * zlib in fixed-size chunks so a large .csv.gz is never loaded whole) and the memory of
 * the current record.
 *
 * Promises:
 * - CSV follows RFC 4180: fields separated by commas; a field in double quotes may hold
 *   commas, line breaks and doubled quotes (""); CRLF and LF line ends; a UTF-8 BOM is
 *   skipped. The first record is the header; column names are matched exactly.
 * - Rows are numbered from 0 in file order (the header is not a row), and every row
 *   carries the 1-based line on which it starts, so an error names the place a user can
 *   open in an editor. mm_table_count_rows returns exactly the number of rows
 *   mm_table_next yields, so ranks can split a file into contiguous slices and skip to
 *   their first row with mm_table_skip.
 * - An empty line is a row (its SMILES is "", its labels missing): the featuriser rejects
 *   it with a reason instead of the row silently vanishing, so row numbers stay those of
 *   the file. A final line break does not start an extra row.
 * - Labels: an empty cell is a missing label (NaN). A cell that is not a number, or a
 *   row with more fields than the header, makes mm_table_next return MM_ERR_FORMAT with
 *   a message naming file, line, row and column; the row is still filled in (that label
 *   NaN) and consumed, so the caller may record it and go on reading.
 * - SMILES files (.smi): one molecule per line, the SMILES, then optional whitespace and
 *   a name. No header, no labels.
 * - SD files (.sdf, .sd, .mol): records end with a "$$$$" line. A row carries the whole
 *   record text (molfile block and data items), the title line and every data item
 *   ("> <name>" followed by value lines; a multi-line value keeps its line breaks).
 *   Labels are taken from data items by name.
 *
 * Strings in a row point into the reader and stay valid until the next call on it. */
#ifndef MMSA_CSV_H
#define MMSA_CSV_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/error.h"

/* ---- raw RFC 4180 records ---------------------------------------------------------- */

typedef struct mm_csv mm_csv;

mm_status mm_csv_open(const char *path, mm_csv **out);
/* Next record: *fields[0..*n_fields-1] are NUL-terminated, owned by the reader, valid until
 * the next call. *line is the 1-based line where the record starts. At the end of the file
 * *eof is true and nothing else is set. An unterminated quoted field is MM_ERR_FORMAT. */
mm_status mm_csv_next(mm_csv *r, char ***fields, int *n_fields, int64_t *line, bool *eof);
void mm_csv_close(mm_csv **r);

/* ---- molecule tables --------------------------------------------------------------- */

typedef enum mm_table_format {
    MM_TABLE_AUTO = 0, /* from the file name: .csv/.txt, .smi/.smiles, .sdf/.sd/.mol (+ .gz) */
    MM_TABLE_CSV,
    MM_TABLE_SMI,
    MM_TABLE_SDF
} mm_table_format;

typedef struct mm_table_opts {
    mm_table_format format;
    /* CSV: the column holding SMILES. NULL: the first header name among "smiles",
     * "SMILES", "Smiles", "mol" (BACE), "canonical_smiles". */
    const char *smiles_col;
    /* CSV: label column names; SDF: data item names. NULL with n_labels == 0: no labels.
     * n_labels == -1 (CSV only): every column except the SMILES column, in file order. */
    const char *const *label_cols;
    int n_labels;
} mm_table_opts;

typedef struct mm_table_row {
    int64_t row;          /* 0-based data row (the header is not a row) */
    int64_t line;         /* 1-based line where the row starts */
    const char *smiles;   /* CSV, SMI: the SMILES, surrounding blanks removed; SDF: NULL */
    const char *name;     /* SMI: text after the SMILES; SDF: the title line; CSV: "" */
    const char *record;   /* SDF: the whole record text without the "$$$$" line; else NULL */
    const float *labels;  /* [n_labels]; NaN = missing */
    int n_items;          /* SDF: data items of the record */
    const char *const *item_names;  /* [n_items] */
    const char *const *item_values; /* [n_items] */
} mm_table_row;

typedef struct mm_table mm_table;

mm_status mm_table_open(const char *path, const mm_table_opts *o, mm_table **out);
int mm_table_n_labels(const mm_table *t);
const char *mm_table_label_name(const mm_table *t, int i);
mm_table_format mm_table_get_format(const mm_table *t);
const char *mm_table_format_name(mm_table_format f); /* "CSV", "SMILES", "SD" */
const char *mm_table_path(const mm_table *t);
/* The next row, or *eof = true. MM_ERR_FORMAT for a bad label cell or too many fields
 * is recoverable (see the top of this file); any other error ends the reading. A quoted
 * field never closed is MM_ERR_FORMAT as well but fills in no row: a caller that goes on
 * after MM_ERR_FORMAT sets row->row = -1 first and goes on only if it changed. */
mm_status mm_table_next(mm_table *t, mm_table_row *row, bool *eof);
/* Skip n rows without converting their labels; *skipped < n only at the end of the file. */
mm_status mm_table_skip(mm_table *t, int64_t n, int64_t *skipped);
void mm_table_close(mm_table **t);

/* Number of data rows of a file, as mm_table_next would yield them (o may be NULL). */
mm_status mm_table_count_rows(const char *path, const mm_table_opts *o, int64_t *n_rows);

#endif
