/* csv.c: CSV / SMILES / SD-file readers behind csv.h.
 *
 * One byte source (zlib's gzread, which also reads uncompressed files) feeds three
 * record scanners. Field text is collected in one growing buffer per reader; offsets into
 * it become the field pointers once the record is complete (the buffer may move while
 * it grows). */
#include "mmsa/csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "mmsa/alloc.h"

#define SRC_CHUNK (1 << 16)

/* ---- byte source ---------------------------------------------------------------------- */

typedef struct src {
    gzFile gz;
    unsigned char buf[SRC_CHUNK];
    int pos, len;
    int pushback;   /* -2: none */
    int64_t line;   /* 1-based line of the next byte */
    char *path;
} src;

static mm_status src_open(src *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->pushback = -2;
    s->line = 1;
    struct stat st;
    if (stat(path, &st) != 0) {
        mm_status e = MM_ERR(MM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        mm_error_hint("check the path (relative paths are relative to the working directory)");
        return e;
    }
    if (S_ISDIR(st.st_mode)) return MM_ERR(MM_ERR_IO, "%s is a directory, not a molecule file", path);
    size_t n = strlen(path) + 1;
    s->path = mm_malloc(n);
    if (!s->path) return MM_ERR(MM_ERR_NOMEM, "out of memory opening %s", path);
    memcpy(s->path, path, n);
    s->gz = gzopen(path, "rb");
    if (!s->gz) {
        mm_status e = MM_ERR(MM_ERR_IO, "cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
        MM_FREE(s->path, n);
        return e;
    }
    gzbuffer(s->gz, 1 << 18);
    return MM_OK;
}

static void src_close(src *s)
{
    if (s->gz) gzclose(s->gz);
    s->gz = NULL;
    if (s->path) MM_FREE(s->path, strlen(s->path) + 1);
}

/* Next byte or EOF (-1); a read error sets *st. */
static inline int src_getc(src *s, mm_status *st)
{
    int c;
    if (s->pushback != -2) {
        c = s->pushback;
        s->pushback = -2;
    } else {
        if (s->pos == s->len) {
            int n = gzread(s->gz, s->buf, SRC_CHUNK);
            if (n < 0) {
                int zerr = 0;
                const char *m = gzerror(s->gz, &zerr);
                *st = MM_ERR(MM_ERR_IO, "%s: read error near line %lld: %s", s->path,
                             (long long)s->line, m);
                return -1;
            }
            s->len = n;
            s->pos = 0;
            if (n == 0) return -1;
        }
        c = s->buf[s->pos++];
    }
    if (c == '\n') s->line++;
    return c;
}

static inline void src_ungetc(src *s, int c)
{
    if (c == -1) return;
    if (c == '\n') s->line--;
    s->pushback = c;
}

/* ---- growing text buffer ------------------------------------------------------------ */

typedef struct tbuf {
    char *p;
    size_t len, cap;
} tbuf;

static mm_status tbuf_reserve(tbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return MM_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) ncap *= 2;
    char *np = mm_malloc(ncap);
    if (!np) return MM_ERR(MM_ERR_NOMEM, "out of memory (%zu bytes) reading a record", ncap);
    if (b->p) {
        memcpy(np, b->p, b->len);
        mm_free_sized(b->p, b->cap);
    }
    b->p = np;
    b->cap = ncap;
    return MM_OK;
}

static inline mm_status tbuf_putc(tbuf *b, char c)
{
    if (b->len + 2 > b->cap) MM_CALL(tbuf_reserve(b, 1));
    b->p[b->len++] = c;
    return MM_OK;
}

static void tbuf_free(tbuf *b)
{
    if (b->p) mm_free_sized(b->p, b->cap);
    memset(b, 0, sizeof *b);
}

/* A growing array of size_t offsets. */
typedef struct obuf {
    size_t *p;
    int len, cap;
} obuf;

static mm_status obuf_push(obuf *o, size_t v)
{
    if (o->len == o->cap) {
        int ncap = o->cap ? 2 * o->cap : 16;
        size_t *np = mm_malloc((size_t)ncap * sizeof *np);
        if (!np) return MM_ERR(MM_ERR_NOMEM, "out of memory reading a record");
        if (o->p) {
            memcpy(np, o->p, (size_t)o->len * sizeof *np);
            mm_free_sized(o->p, (size_t)o->cap * sizeof *np);
        }
        o->p = np;
        o->cap = ncap;
    }
    o->p[o->len++] = v;
    return MM_OK;
}

static void obuf_free(obuf *o)
{
    if (o->p) mm_free_sized(o->p, (size_t)o->cap * sizeof *o->p);
    memset(o, 0, sizeof *o);
}

/* A pointer array that mirrors an obuf after a record is complete. */
typedef struct pbuf {
    char **p;
    int cap;
} pbuf;

static mm_status pbuf_fill(pbuf *pb, const tbuf *t, const obuf *o)
{
    if (o->len > pb->cap) {
        int ncap = pb->cap ? pb->cap : 16;
        while (ncap < o->len) ncap *= 2;
        char **np = mm_malloc((size_t)ncap * sizeof *np);
        if (!np) return MM_ERR(MM_ERR_NOMEM, "out of memory reading a record");
        if (pb->p) mm_free_sized(pb->p, (size_t)pb->cap * sizeof *np);
        pb->p = np;
        pb->cap = ncap;
    }
    for (int i = 0; i < o->len; i++) pb->p[i] = t->p + o->p[i];
    return MM_OK;
}

static void pbuf_free(pbuf *pb)
{
    if (pb->p) mm_free_sized(pb->p, (size_t)pb->cap * sizeof *pb->p);
    memset(pb, 0, sizeof *pb);
}

/* ---- RFC 4180 record scanner ---------------------------------------------------------- */

/* Skips a UTF-8 byte order mark at the start of the file. */
static void skip_bom(src *s, mm_status *st)
{
    if (s->pos == 0 && s->len == 0) {
        int n = gzread(s->gz, s->buf, SRC_CHUNK);
        if (n < 0) {
            int zerr = 0;
            *st = MM_ERR(MM_ERR_IO, "%s: read error: %s", s->path, gzerror(s->gz, &zerr));
            return;
        }
        s->len = n;
    }
    if (s->len >= 3 && s->buf[0] == 0xEF && s->buf[1] == 0xBB && s->buf[2] == 0xBF) s->pos = 3;
}

/* Reads one record into t (fields NUL-separated) with their starts in o. */
static mm_status scan_csv_record(src *s, tbuf *t, obuf *o, int64_t *line, bool *eof)
{
    mm_status st = MM_OK;
    t->len = 0;
    o->len = 0;
    int c = src_getc(s, &st);
    if (st) return st;
    if (c == -1) {
        *eof = true;
        return MM_OK;
    }
    *eof = false;
    *line = s->line - (c == '\n');
    for (;;) { /* one field per iteration; c is its first byte */
        MM_CALL(obuf_push(o, t->len));
        if (c == '"') {
            int64_t qline = s->line;
            for (;;) {
                c = src_getc(s, &st);
                if (st) return st;
                if (c == -1) {
                    mm_status e = MM_ERR(MM_ERR_FORMAT,
                                         "%s:%lld: quoted field never closed (opened on line %lld)",
                                         s->path, (long long)s->line, (long long)qline);
                    mm_error_hint("a field that starts with \" must end with \"; write \"\" for a quote inside it");
                    return e;
                }
                if (c == '"') {
                    c = src_getc(s, &st);
                    if (st) return st;
                    if (c == '"') {
                        MM_CALL(tbuf_putc(t, '"'));
                        continue;
                    }
                    break; /* closing quote; c is the byte after it */
                }
                MM_CALL(tbuf_putc(t, (char)c));
            }
        }
        /* unquoted text (or text after a closing quote, kept as is) */
        while (c != ',' && c != '\n' && c != -1) {
            if (c == '\r') {
                int n = src_getc(s, &st);
                if (st) return st;
                if (n == '\n' || n == -1) {
                    c = n;
                    break;
                }
                src_ungetc(s, n);
            }
            MM_CALL(tbuf_putc(t, (char)c));
            c = src_getc(s, &st);
            if (st) return st;
        }
        MM_CALL(tbuf_putc(t, '\0'));
        if (c != ',') return MM_OK; /* '\n' or EOF ends the record */
        c = src_getc(s, &st);
        if (st) return st;
    }
}

/* One text line (without its line break; a trailing CR is dropped). */
static mm_status scan_line(src *s, tbuf *t, int64_t *line, bool *eof)
{
    mm_status st = MM_OK;
    size_t start = t->len;
    int c = src_getc(s, &st);
    if (st) return st;
    if (c == -1) {
        *eof = true;
        return MM_OK;
    }
    *eof = false;
    *line = s->line - (c == '\n');
    while (c != '\n' && c != -1) {
        MM_CALL(tbuf_putc(t, (char)c));
        c = src_getc(s, &st);
        if (st) return st;
    }
    if (t->len > start && t->p[t->len - 1] == '\r') t->len--;
    MM_CALL(tbuf_putc(t, '\0'));
    return MM_OK;
}

/* ---- raw CSV API ---------------------------------------------------------------------- */

struct mm_csv {
    src s;
    tbuf text;
    obuf offs;
    pbuf fields;
};

mm_status mm_csv_open(const char *path, mm_csv **out)
{
    MM_CHECK_ARG(path && out, "mm_csv_open: NULL argument");
    mm_csv *r = mm_calloc(1, sizeof *r);
    if (!r) return MM_ERR(MM_ERR_NOMEM, "out of memory opening %s", path);
    mm_status st = src_open(&r->s, path);
    if (st == MM_OK) skip_bom(&r->s, &st);
    if (st != MM_OK) {
        mm_error_push(__FILE__, __LINE__, __func__);
        mm_csv_close(&r);
        return st;
    }
    *out = r;
    return MM_OK;
}

mm_status mm_csv_next(mm_csv *r, char ***fields, int *n_fields, int64_t *line, bool *eof)
{
    MM_CHECK_ARG(r && fields && n_fields && line && eof, "mm_csv_next: NULL argument");
    int64_t l = 0;
    MM_CALL(scan_csv_record(&r->s, &r->text, &r->offs, &l, eof));
    if (*eof) return MM_OK;
    MM_CALL(pbuf_fill(&r->fields, &r->text, &r->offs));
    *fields = r->fields.p;
    *n_fields = r->offs.len;
    *line = l;
    return MM_OK;
}

void mm_csv_close(mm_csv **rp)
{
    if (!rp || !*rp) return;
    mm_csv *r = *rp;
    src_close(&r->s);
    tbuf_free(&r->text);
    obuf_free(&r->offs);
    pbuf_free(&r->fields);
    mm_free_sized(r, sizeof *r);
    *rp = NULL;
}

/* ---- molecule tables ------------------------------------------------------------------ */

struct mm_table {
    src s;
    mm_table_format fmt;
    int64_t next_row;
    /* CSV header */
    tbuf head_text;
    obuf head_offs;
    int n_cols;
    int smiles_col;
    /* labels */
    int n_labels;
    int *label_col;      /* [n_labels] CSV column index */
    char **label_names;  /* [n_labels] */
    float *labels;       /* [n_labels] */
    /* current record */
    tbuf text;
    obuf offs;
    pbuf ptrs;
    /* SDF data items: name/value offsets into text */
    obuf item_name_offs, item_val_offs;
    pbuf item_names, item_vals;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (m > n) return false;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)s[n - m + i]) != suffix[i]) return false;
    return true;
}

static mm_table_format format_from_name(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp) n = sizeof tmp - 1;
    memcpy(tmp, path, n);
    tmp[n] = '\0';
    if (ends_with(tmp, ".gz")) tmp[n - 3] = '\0';
    if (ends_with(tmp, ".csv") || ends_with(tmp, ".txt")) return MM_TABLE_CSV;
    if (ends_with(tmp, ".smi") || ends_with(tmp, ".smiles")) return MM_TABLE_SMI;
    if (ends_with(tmp, ".sdf") || ends_with(tmp, ".sd") || ends_with(tmp, ".mol")) return MM_TABLE_SDF;
    return MM_TABLE_AUTO;
}

static const char *fmt_name(mm_table_format f)
{
    switch (f) {
    case MM_TABLE_CSV: return "CSV";
    case MM_TABLE_SMI: return "SMILES";
    case MM_TABLE_SDF: return "SD";
    default: return "unknown";
    }
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mm_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void free_str(char *s)
{
    if (s) mm_free_sized(s, strlen(s) + 1);
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Header: find the SMILES column and the label columns. */
static mm_status table_read_header(mm_table *t, const mm_table_opts *o)
{
    int64_t line = 0;
    bool eof = false;
    MM_CALL(scan_csv_record(&t->s, &t->head_text, &t->head_offs, &line, &eof));
    if (eof) return MM_ERR(MM_ERR_FORMAT, "%s: empty file, expected a CSV header line", t->s.path);
    t->n_cols = t->head_offs.len;
    const char *names[t->n_cols];
    for (int i = 0; i < t->n_cols; i++) names[i] = t->head_text.p + t->head_offs.p[i];

    t->smiles_col = -1;
    if (o && o->smiles_col) {
        for (int i = 0; i < t->n_cols && t->smiles_col < 0; i++)
            if (strcmp(names[i], o->smiles_col) == 0) t->smiles_col = i;
    } else {
        static const char *cands[] = {"smiles", "SMILES", "Smiles", "mol", "canonical_smiles"};
        for (size_t k = 0; k < sizeof cands / sizeof *cands && t->smiles_col < 0; k++)
            for (int i = 0; i < t->n_cols && t->smiles_col < 0; i++)
                if (strcmp(names[i], cands[k]) == 0) t->smiles_col = i;
    }
    if (t->smiles_col < 0) {
        char list[512] = "";
        size_t used = 0;
        for (int i = 0; i < t->n_cols && used + 8 < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "", names[i]);
        mm_status e = MM_ERR(MM_ERR_CONFIG, "%s:%lld: no SMILES column '%s' in the header (columns: %s)",
                             t->s.path, (long long)line,
                             o && o->smiles_col ? o->smiles_col : "smiles", list);
        mm_error_hint("name the SMILES column explicitly (BACE calls it 'mol', ChEMBL 'SMILES')");
        return e;
    }

    int nl = o ? o->n_labels : 0;
    if (nl == -1) nl = t->n_cols - 1;
    MM_CHECK_ARG(nl >= 0, "n_labels must be >= -1, got %d", nl);
    if (nl > 0 && o->n_labels > 0) MM_CHECK_ARG(o->label_cols, "n_labels = %d but label_cols is NULL", nl);
    t->n_labels = nl;
    if (nl == 0) return MM_OK;
    t->label_col = mm_calloc((size_t)nl, sizeof *t->label_col);
    t->label_names = mm_calloc((size_t)nl, sizeof *t->label_names);
    t->labels = mm_calloc((size_t)nl, sizeof *t->labels);
    if (!t->label_col || !t->label_names || !t->labels)
        return MM_ERR(MM_ERR_NOMEM, "out of memory for %d label columns", nl);
    for (int j = 0, k = 0; j < nl; j++) {
        int col = -1;
        if (o->n_labels == -1) {
            if (k == t->smiles_col) k++;
            col = k++;
        } else {
            for (int i = 0; i < t->n_cols && col < 0; i++)
                if (strcmp(names[i], o->label_cols[j]) == 0) col = i;
            if (col < 0) {
                mm_status e = MM_ERR(MM_ERR_CONFIG, "%s:%lld: label column '%s' is not in the header",
                                     t->s.path, (long long)line, o->label_cols[j]);
                mm_error_hint("column names are matched exactly, including case and quotes");
                return e;
            }
        }
        t->label_col[j] = col;
        t->label_names[j] = dup_str(names[col]);
        if (!t->label_names[j]) return MM_ERR(MM_ERR_NOMEM, "out of memory for label names");
    }
    return MM_OK;
}

static mm_status table_init_sdf_labels(mm_table *t, const mm_table_opts *o)
{
    int nl = o ? o->n_labels : 0;
    if (nl == -1)
        return MM_ERR(MM_ERR_CONFIG, "%s: SD files need the label names (data items) listed; "
                                     "'all columns' exists only for CSV", t->s.path);
    t->n_labels = nl;
    if (nl == 0) return MM_OK;
    MM_CHECK_ARG(o->label_cols, "n_labels = %d but label_cols is NULL", nl);
    t->label_names = mm_calloc((size_t)nl, sizeof *t->label_names);
    t->labels = mm_calloc((size_t)nl, sizeof *t->labels);
    if (!t->label_names || !t->labels) return MM_ERR(MM_ERR_NOMEM, "out of memory for labels");
    for (int j = 0; j < nl; j++) {
        t->label_names[j] = dup_str(o->label_cols[j]);
        if (!t->label_names[j]) return MM_ERR(MM_ERR_NOMEM, "out of memory for label names");
    }
    return MM_OK;
}

mm_status mm_table_open(const char *path, const mm_table_opts *o, mm_table **out)
{
    MM_CHECK_ARG(path && out, "mm_table_open: NULL argument");
    *out = NULL;
    mm_table_format fmt = o ? o->format : MM_TABLE_AUTO;
    if (fmt == MM_TABLE_AUTO) fmt = format_from_name(path);
    if (fmt == MM_TABLE_AUTO) {
        mm_status e = MM_ERR(MM_ERR_CONFIG, "%s: cannot tell the file format from its name", path);
        mm_error_hint("use a .csv, .smi or .sdf name (optionally + .gz), or set the format explicitly");
        return e;
    }
    if (fmt == MM_TABLE_SMI && o && o->n_labels != 0)
        return MM_ERR(MM_ERR_CONFIG, "%s: a SMILES (.smi) file has no label columns", path);
    mm_table *t = mm_calloc(1, sizeof *t);
    if (!t) return MM_ERR(MM_ERR_NOMEM, "out of memory opening %s", path);
    t->fmt = fmt;
    mm_status st = src_open(&t->s, path);
    if (st == MM_OK) skip_bom(&t->s, &st);
    if (st == MM_OK && fmt == MM_TABLE_CSV) st = table_read_header(t, o);
    if (st == MM_OK && fmt == MM_TABLE_SDF) st = table_init_sdf_labels(t, o);
    if (st != MM_OK) {
        mm_error_push(__FILE__, __LINE__, __func__);
        mm_table_close(&t);
        return st;
    }
    *out = t;
    return MM_OK;
}

int mm_table_n_labels(const mm_table *t) { return t->n_labels; }
const char *mm_table_label_name(const mm_table *t, int i)
{
    return i >= 0 && i < t->n_labels ? t->label_names[i] : NULL;
}
mm_table_format mm_table_get_format(const mm_table *t) { return t->fmt; }
const char *mm_table_path(const mm_table *t) { return t->s.path; }

/* Parses a label cell; *bad is set when the cell is neither empty nor a number. */
static float parse_label(char *cell, bool *bad)
{
    char *s = trim(cell);
    *bad = false;
    if (!*s) return NAN;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0') {
        *bad = true;
        return NAN;
    }
    return (float)v;
}

static mm_status next_csv(mm_table *t, mm_table_row *row, bool *eof, bool convert)
{
    int64_t line = 0;
    MM_CALL(scan_csv_record(&t->s, &t->text, &t->offs, &line, eof));
    if (*eof) return MM_OK;
    MM_CALL(pbuf_fill(&t->ptrs, &t->text, &t->offs));
    int nf = t->offs.len;
    row->row = t->next_row++;
    row->line = line;
    row->smiles = t->smiles_col < nf ? trim(t->ptrs.p[t->smiles_col]) : "";
    row->name = "";
    row->record = NULL;
    row->n_items = 0;
    row->item_names = row->item_values = NULL;
    row->labels = t->labels;
    if (!convert) return MM_OK;
    mm_status st = MM_OK;
    for (int j = 0; j < t->n_labels; j++) {
        int c = t->label_col[j];
        bool bad = false;
        t->labels[j] = c < nf ? parse_label(t->ptrs.p[c], &bad) : NAN;
        if (bad && st == MM_OK)
            st = MM_ERR(MM_ERR_FORMAT, "%s:%lld: row %lld, column '%s': '%s' is not a number",
                        t->s.path, (long long)line, (long long)row->row, t->label_names[j],
                        trim(t->ptrs.p[c]));
    }
    if (st == MM_OK && nf > t->n_cols) {
        st = MM_ERR(MM_ERR_FORMAT, "%s:%lld: row %lld has %d fields, the header has %d",
                    t->s.path, (long long)line, (long long)row->row, nf, t->n_cols);
        mm_error_hint("a field containing a comma must be quoted");
    }
    return st;
}

static mm_status next_smi(mm_table *t, mm_table_row *row, bool *eof)
{
    int64_t line = 0;
    t->text.len = 0;
    MM_CALL(scan_line(&t->s, &t->text, &line, eof));
    if (*eof) return MM_OK;
    char *s = t->text.p;
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s;
    while (*e && !isspace((unsigned char)*e)) e++;
    char *name = e;
    if (*e) {
        *e = '\0';
        name = trim(e + 1);
    }
    row->row = t->next_row++;
    row->line = line;
    row->smiles = s;
    row->name = name;
    row->record = NULL;
    row->labels = t->labels;
    row->n_items = 0;
    row->item_names = row->item_values = NULL;
    return MM_OK;
}

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

/* Appends n bytes found at offset off of the same buffer (off + n <= t->len). */
static mm_status tbuf_append_self(tbuf *t, size_t off, size_t n)
{
    MM_CALL(tbuf_reserve(t, n + 1));
    memcpy(t->p + t->len, t->p + off, n);
    t->len += n;
    return MM_OK;
}

/* Data items of an SD record held in t->text[0..rec_len) (lines separated by '\n').
 * Names and values are copied behind the record text, each NUL-terminated; offsets are
 * used throughout because the buffer moves when it grows. */
static mm_status sdf_items(mm_table *t, size_t rec_len)
{
    t->item_name_offs.len = 0;
    t->item_val_offs.len = 0;
    size_t pos = 0;
    bool after_end = false;
    while (pos < rec_len) {
        const char *l = t->text.p + pos;
        const char *nl = memchr(l, '\n', rec_len - pos);
        size_t ll = nl ? (size_t)(nl - l) : rec_len - pos;
        size_t next = pos + ll + (nl ? 1 : 0);
        if (!after_end) {
            if (ll >= 6 && strncmp(l, "M  END", 6) == 0) after_end = true;
            pos = next;
            continue;
        }
        if (ll == 0 || l[0] != '>') {
            pos = next;
            continue;
        }
        /* "> <name> (n)": the name is between the first '<' and the next '>' */
        const char *a = memchr(l, '<', ll);
        const char *b = a ? memchr(a + 1, '>', ll - (size_t)(a + 1 - l)) : NULL;
        size_t name_src = a ? (size_t)(a + 1 - t->text.p) : pos;
        size_t name_len = (a && b) ? (size_t)(b - a - 1) : 0;
        MM_CALL(obuf_push(&t->item_name_offs, t->text.len));
        MM_CALL(tbuf_append_self(&t->text, name_src, name_len));
        MM_CALL(tbuf_putc(&t->text, '\0'));
        /* value: the following lines up to a blank line */
        MM_CALL(obuf_push(&t->item_val_offs, t->text.len));
        pos = next;
        bool first = true;
        while (pos < rec_len) {
            const char *L = t->text.p + pos;
            const char *N = memchr(L, '\n', rec_len - pos);
            size_t LL = N ? (size_t)(N - L) : rec_len - pos;
            size_t nx = pos + LL + (N ? 1 : 0);
            if (LL > 0 && L[LL - 1] == '\r') LL--;
            if (LL == 0) {
                pos = nx;
                break;
            }
            if (!first) MM_CALL(tbuf_putc(&t->text, '\n'));
            MM_CALL(tbuf_append_self(&t->text, pos, LL));
            first = false;
            pos = nx;
        }
        MM_CALL(tbuf_putc(&t->text, '\0'));
    }
    return MM_OK;
}

/* Reads lines up to "$$$$" into t->text; *eof when only blank text remained. */
static mm_status scan_sdf_record(mm_table *t, int64_t *line, bool *eof)
{
    t->text.len = 0;
    *eof = false;
    bool have_line = false;
    for (;;) {
        size_t start = t->text.len;
        int64_t l = 0;
        bool e = false;
        MM_CALL(scan_line(&t->s, &t->text, &l, &e));
        if (e) break;
        if (!have_line) {
            *line = l;
            have_line = true;
        }
        char *s = t->text.p + start;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
        if (n == 4 && strncmp(s, "$$$$", 4) == 0) {
            t->text.len = start;
            MM_CALL(tbuf_putc(&t->text, '\0'));
            return MM_OK;
        }
        t->text.p[t->text.len - 1] = '\n'; /* replace the NUL of scan_line */
    }
    /* end of file without "$$$$" */
    MM_CALL(tbuf_putc(&t->text, '\0'));
    if (!have_line || is_blank(t->text.p)) *eof = true;
    return MM_OK;
}

static mm_status next_sdf(mm_table *t, mm_table_row *row, bool *eof, bool convert)
{
    int64_t line = 0;
    MM_CALL(scan_sdf_record(t, &line, eof));
    if (*eof) return MM_OK;
    size_t rec_len = strlen(t->text.p);
    row->row = t->next_row++;
    row->line = line;
    row->smiles = NULL;
    row->labels = t->labels;
    row->n_items = 0;
    row->item_names = row->item_values = NULL;
    if (!convert) {
        row->record = t->text.p;
        row->name = "";
        return MM_OK;
    }
    MM_CALL(sdf_items(t, rec_len));
    /* title: first line of the record, copied behind everything else */
    const char *nl = memchr(t->text.p, '\n', rec_len);
    size_t tl = nl ? (size_t)(nl - t->text.p) : rec_len;
    size_t title_off = t->text.len;
    MM_CALL(tbuf_reserve(&t->text, tl + 1));
    memmove(t->text.p + t->text.len, t->text.p, tl);
    t->text.len += tl;
    MM_CALL(tbuf_putc(&t->text, '\0'));
    MM_CALL(pbuf_fill(&t->item_names, &t->text, &t->item_name_offs));
    MM_CALL(pbuf_fill(&t->item_vals, &t->text, &t->item_val_offs));
    row->record = t->text.p;
    row->name = trim(t->text.p + title_off);
    row->n_items = t->item_name_offs.len;
    row->item_names = (const char *const *)t->item_names.p;
    row->item_values = (const char *const *)t->item_vals.p;
    mm_status st = MM_OK;
    for (int j = 0; j < t->n_labels; j++) {
        t->labels[j] = NAN;
        for (int i = 0; i < row->n_items; i++) {
            if (strcmp(row->item_names[i], t->label_names[j]) != 0) continue;
            bool bad = false;
            t->labels[j] = parse_label(t->item_vals.p[i], &bad);
            if (bad && st == MM_OK)
                st = MM_ERR(MM_ERR_FORMAT, "%s:%lld: record %lld, data item '%s': '%s' is not a number",
                            t->s.path, (long long)line, (long long)row->row, t->label_names[j],
                            t->item_vals.p[i]);
            break;
        }
    }
    return st;
}

mm_status mm_table_next(mm_table *t, mm_table_row *row, bool *eof)
{
    MM_CHECK_ARG(t && row && eof, "mm_table_next: NULL argument");
    mm_status st;
    switch (t->fmt) {
    case MM_TABLE_CSV: st = next_csv(t, row, eof, true); break;
    case MM_TABLE_SMI: st = next_smi(t, row, eof); break;
    case MM_TABLE_SDF: st = next_sdf(t, row, eof, true); break;
    default: return MM_ERR(MM_ERR_INTERNAL, "table with format %d", (int)t->fmt);
    }
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_table_skip(mm_table *t, int64_t n, int64_t *skipped)
{
    MM_CHECK_ARG(t && n >= 0, "mm_table_skip: bad argument");
    int64_t k = 0;
    mm_table_row row;
    bool eof = false;
    while (k < n) {
        switch (t->fmt) {
        case MM_TABLE_CSV: MM_CALL(next_csv(t, &row, &eof, false)); break;
        case MM_TABLE_SMI: MM_CALL(next_smi(t, &row, &eof)); break;
        case MM_TABLE_SDF: MM_CALL(next_sdf(t, &row, &eof, false)); break;
        default: return MM_ERR(MM_ERR_INTERNAL, "table with format %d", (int)t->fmt);
        }
        if (eof) break;
        k++;
    }
    if (skipped) *skipped = k;
    return MM_OK;
}

void mm_table_close(mm_table **tp)
{
    if (!tp || !*tp) return;
    mm_table *t = *tp;
    src_close(&t->s);
    tbuf_free(&t->head_text);
    obuf_free(&t->head_offs);
    if (t->label_col) mm_free_sized(t->label_col, (size_t)t->n_labels * sizeof *t->label_col);
    if (t->label_names) {
        for (int j = 0; j < t->n_labels; j++) free_str(t->label_names[j]);
        mm_free_sized(t->label_names, (size_t)t->n_labels * sizeof *t->label_names);
    }
    if (t->labels) mm_free_sized(t->labels, (size_t)t->n_labels * sizeof *t->labels);
    tbuf_free(&t->text);
    obuf_free(&t->offs);
    pbuf_free(&t->ptrs);
    obuf_free(&t->item_name_offs);
    obuf_free(&t->item_val_offs);
    pbuf_free(&t->item_names);
    pbuf_free(&t->item_vals);
    mm_free_sized(t, sizeof *t);
    *tp = NULL;
}

mm_status mm_table_count_rows(const char *path, const mm_table_opts *o, int64_t *n_rows)
{
    MM_CHECK_ARG(path && n_rows, "mm_table_count_rows: NULL argument");
    /* Labels play no part in counting; only the format and header matter. */
    mm_table_opts co = {0};
    if (o) {
        co.format = o->format;
        co.smiles_col = o->smiles_col;
    }
    mm_table *t = NULL;
    MM_CALL(mm_table_open(path, &co, &t));
    int64_t k = 0;
    mm_status st = mm_table_skip(t, INT64_MAX, &k);
    mm_table_close(&t);
    MM_CALL(st);
    *n_rows = k;
    return MM_OK;
}

const char *mm_table_format_name(mm_table_format f) { return fmt_name(f); }
