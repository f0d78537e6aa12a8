/* prep_nmr.c: NMR spectra from the data items of an SD record (see prep.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/prep.h"

const char *mm_prep_nmr_skip_name(int reason)
{
    static const char *const names[MM_PREP_NMR_N_SKIPS] = {
        "none", "empty spectrum", "malformed peak", "atom index out of range", "hydrogen without heavy atom",
        "atom of the wrong element"};
    return reason > 0 && reason < MM_PREP_NMR_N_SKIPS ? names[reason] : "unknown";
}

/* How an item's peaks are written. */
typedef enum { STYLE_NONE, STYLE_NMRSHIFTDB, STYLE_CASCADE } item_style;

/* The kind (MM_NMR_*), style and number <n> of a spectrum item; -1 when the item is not
 * a 13C or 1H spectrum (*other set for other "Spectrum ..." items). */
static int classify(const char *name, item_style *style, long *n, int *other)
{
    *style = STYLE_NONE;
    *n = -1;
    if (!strcmp(name, "C13 chemical shift")) {
        *style = STYLE_CASCADE;
        return MM_NMR_13C;
    }
    if (strncmp(name, "Spectrum ", 9) != 0) return -1;
    static const char *const prefix[MM_NMR_KINDS] = {"13C", "1H"};
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        size_t len = strlen(prefix[k]);
        const char *r = name + 9;
        if (strncmp(r, prefix[k], len) != 0) continue;
        r += len;
        if (*r == '\0') {
            *style = STYLE_NMRSHIFTDB;
            return k;
        }
        if (*r != ' ' || !isdigit((unsigned char)r[1])) continue;
        char *end = NULL;
        errno = 0;
        long v = strtol(r + 1, &end, 10);
        if (*end != '\0' || errno) continue;
        *style = STYLE_NMRSHIFTDB;
        *n = v;
        return k;
    }
    (*other)++;
    return -1;
}

unsigned mm_prep_spectra_kinds(int n_items, const char *const *names)
{
    unsigned bits = 0;
    int other = 0;
    for (int i = 0; i < n_items; i++) {
        item_style style;
        long n;
        int k = classify(names[i], &style, &n, &other);
        if (k >= 0) bits |= MM_MOD_NMR(k);
    }
    return bits;
}

void mm_prep_spectra_free(mm_prep_spectra *s)
{
    if (!s) return;
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        mm_prep_spectrum *x = &s->kind[k];
        if (x->shift) mm_free_sized(x->shift, (size_t)x->cap * sizeof(float));
        if (x->atom) mm_free_sized(x->atom, (size_t)x->cap * sizeof(int32_t));
    }
    memset(s, 0, sizeof *s);
}

static mm_status reserve_peaks(mm_prep_spectrum *x, int64_t n)
{
    if (n <= x->cap) return MM_OK;
    int64_t cap = x->cap > 0 ? x->cap : 64;
    while (cap < n) cap *= 2;
    float *sh = mm_malloc((size_t)cap * sizeof(float));
    int32_t *at = mm_malloc((size_t)cap * sizeof(int32_t));
    if (!sh || !at) {
        if (sh) mm_free_sized(sh, (size_t)cap * sizeof(float));
        if (at) mm_free_sized(at, (size_t)cap * sizeof(int32_t));
        return MM_ERR(MM_ERR_NOMEM, "out of memory for %lld NMR peaks", (long long)n);
    }
    if (x->n_peaks) {
        memcpy(sh, x->shift, (size_t)x->n_peaks * sizeof(float));
        memcpy(at, x->atom, (size_t)x->n_peaks * sizeof(int32_t));
    }
    if (x->shift) mm_free_sized(x->shift, (size_t)x->cap * sizeof(float));
    if (x->atom) mm_free_sized(x->atom, (size_t)x->cap * sizeof(int32_t));
    x->shift = sh;
    x->atom = at;
    x->cap = cap;
    return MM_OK;
}

/* [s, e) without the blanks (spaces, tabs, line breaks) around it. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s)) (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1])) (*e)--;
}

/* A finite number filling [s, e). */
static bool parse_shift(const char *s, const char *e, float *out)
{
    trim(&s, &e);
    char buf[64];
    size_t len = (size_t)(e - s);
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (*end != '\0' || !isfinite(v) || fabs(v) > 1e6) return false;
    *out = (float)v;
    return true;
}

/* A non-negative decimal integer filling [s, e) (at most 9 digits). */
static bool parse_index(const char *s, const char *e, long *out)
{
    trim(&s, &e);
    if (s == e || e - s > 9) return false;
    long v = 0;
    for (const char *c = s; c < e; c++) {
        if (!isdigit((unsigned char)*c)) return false;
        v = v * 10 + (*c - '0');
    }
    *out = v;
    return true;
}

typedef struct record_atoms {
    int32_t n_input;
    const int32_t *input_atom;
    const uint8_t *input_is_h;
    int32_t n_atoms;
    const uint8_t *atom_feat;
} record_atoms;

/* Reads item `value` of kind k into x; on a problem sets x->skip and x->why. */
static mm_status read_item(int k, item_style style, const char *value, const record_atoms *ra, mm_prep_spectrum *x)
{
    x->n_peaks = 0;
    const char *p = value, *end = value + strlen(value);
    int64_t peak = 0;
#define SKIP(reason, ...)                                                               \
    do {                                                                                \
        char detail_[160];                                                              \
        snprintf(detail_, sizeof detail_, __VA_ARGS__);                                 \
        snprintf(x->why, sizeof x->why, "data item '%s', %s", x->item, detail_);        \
        x->skip = (reason);                                                             \
        x->n_peaks = 0;                                                                 \
        return MM_OK;                                                                   \
    } while (0)
    while (p < end) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        const char *ts = p, *te = bar ? bar : end;
        p = bar ? bar + 1 : end;
        trim(&ts, &te);
        if (ts == te) {
            if (!bar || p >= end) break; /* a final '|' (or blanks after it) */
            const char *rest = p, *re = end;
            trim(&rest, &re);
            if (rest == re) break;
            SKIP(MM_PREP_NMR_MALFORMED, "peak %lld: empty", (long long)peak);
        }
        int tl = (int)(te - ts) < 40 ? (int)(te - ts) : 40;
        /* fields */
        const char sep = style == STYLE_CASCADE ? ',' : ';';
        const char *f[3], *fe[3];
        int nf = 0;
        for (const char *q = ts;;) { /* counts every field, keeps the first three */
            const char *s2 = memchr(q, sep, (size_t)(te - q));
            if (nf < 3) {
                f[nf] = q;
                fe[nf] = s2 ? s2 : te;
            }
            nf++;
            if (!s2) break;
            q = s2 + 1;
        }
        const int want = style == STYLE_CASCADE ? 2 : 3;
        if (nf != want)
            SKIP(MM_PREP_NMR_MALFORMED, "peak %lld '%.*s': expected %s", (long long)peak, tl, ts,
                 style == STYLE_CASCADE ? "atomidx,shift" : "shift;multiplicity;atomidx");
        const int fi_shift = style == STYLE_CASCADE ? 1 : 0, fi_index = style == STYLE_CASCADE ? 0 : 2;
        float shift;
        long idx;
        if (!parse_shift(f[fi_shift], fe[fi_shift], &shift))
            SKIP(MM_PREP_NMR_MALFORMED, "peak %lld '%.*s': the shift is not a number", (long long)peak, tl, ts);
        if (!parse_index(f[fi_index], fe[fi_index], &idx))
            SKIP(MM_PREP_NMR_MALFORMED, "peak %lld '%.*s': the atom index is not a non-negative integer",
                 (long long)peak, tl, ts);
        if (idx >= ra->n_input)
            SKIP(MM_PREP_NMR_INDEX, "peak %lld '%.*s': atom index %ld, the record's atoms are 0..%d",
                 (long long)peak, tl, ts, idx, ra->n_input - 1);
        int32_t a = ra->input_atom[idx];
        if (a < 0 || a >= ra->n_atoms) {
            if (ra->input_is_h[idx])
                SKIP(MM_PREP_NMR_LONE_H, "peak %lld '%.*s': atom %ld is a hydrogen without a heavy neighbour",
                     (long long)peak, tl, ts, idx);
            SKIP(MM_PREP_NMR_INDEX, "peak %lld '%.*s': atom %ld did not become an atom of the molecule",
                 (long long)peak, tl, ts, idx);
        }
        const uint8_t *af = ra->atom_feat + (size_t)a * 9;
        if (k == MM_NMR_13C && af[0] != 5)
            SKIP(MM_PREP_NMR_ELEMENT, "peak %lld '%.*s': atom %ld is element %d, not carbon", (long long)peak, tl, ts,
                 idx, af[0] + 1);
        if (k == MM_NMR_1H && !ra->input_is_h[idx] && af[4] == 0)
            SKIP(MM_PREP_NMR_ELEMENT, "peak %lld '%.*s': atom %ld (element %d) carries no hydrogen", (long long)peak,
                 tl, ts, idx, af[0] + 1);
        MM_CALL(reserve_peaks(x, x->n_peaks + 1));
        x->shift[x->n_peaks] = shift;
        x->atom[x->n_peaks] = a;
        x->n_peaks++;
        peak++;
    }
    if (x->n_peaks == 0) SKIP(MM_PREP_NMR_EMPTY, "no peak");
#undef SKIP
    return MM_OK;
}

mm_status mm_prep_read_spectra(int n_items, const char *const *names, const char *const *values,
                               int32_t n_input_atoms, const int32_t *input_atom, const uint8_t *input_is_h,
                               int32_t n_atoms, const uint8_t *atom_feat, mm_prep_spectra *out)
{
    MM_CHECK_ARG(out && (n_items == 0 || (names && values)), "mm_prep_read_spectra: NULL argument");
    const record_atoms ra = {n_input_atoms, input_atom, input_is_h, n_atoms, atom_feat};
    out->other = 0;
    int first[MM_NMR_KINDS];
    long first_n[MM_NMR_KINDS];
    item_style first_style[MM_NMR_KINDS];
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        mm_prep_spectrum *x = &out->kind[k];
        x->found = x->skip = 0;
        x->item[0] = x->why[0] = '\0';
        x->n_peaks = 0;
        first[k] = -1;
        first_n[k] = 0;
        first_style[k] = STYLE_NONE;
    }
    for (int i = 0; i < n_items; i++) {
        item_style style;
        long n;
        int k = classify(names[i], &style, &n, &out->other);
        if (k < 0) continue;
        out->kind[k].found++;
        if (first[k] < 0 || n < first_n[k]) { /* the lowest <n>; the unnumbered item counts as -1 */
            first[k] = i;
            first_n[k] = n;
            first_style[k] = style;
        }
    }
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (first[k] < 0) continue;
        mm_prep_spectrum *x = &out->kind[k];
        snprintf(x->item, sizeof x->item, "%s", names[first[k]]);
        MM_CALL(read_item(k, first_style[k], values[first[k]], &ra, x));
    }
    return MM_OK;
}
