/* Tests of the NMR spectrum items of SD records (prep.h, src/data/prep_nmr.c): both
 * formats, the choice among several spectra of a kind, and every skip reason, on a
 * molecule written here; the real records are in test_mpi_prep.c (test_sdf_spectra). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/alloc.h"
#include "mmsa/prep.h"

/* The record: atom 0 C, atom 1 O, atom 2 an H on the C, atom 3 a lone H. Our molecule:
 * atom 0 the O (no hydrogen), atom 1 the C (one hydrogen). */
static const int32_t INPUT_ATOM[4] = {1, 0, 1, -1};
static const uint8_t INPUT_IS_H[4] = {0, 0, 1, 1};
static uint8_t FEAT[2 * 9];

static void setup_feat(void)
{
    memset(FEAT, 0, sizeof FEAT);
    FEAT[0] = 7;     /* O: atomic number 8 */
    FEAT[9] = 5;     /* C: atomic number 6 */
    FEAT[9 + 4] = 1; /* one hydrogen on the C */
}

/* Reads one item (name, value) into s. */
static void read1(const char *name, const char *value, mm_prep_spectra *s)
{
    const char *names[1] = {name}, *values[1] = {value};
    assert_int_equal(mm_prep_read_spectra(1, names, values, 4, INPUT_ATOM, INPUT_IS_H, 2, FEAT, s), MM_OK);
}

/* The 13C (kind 0) or 1H (kind 1) spectrum of one item is skipped for `reason`, its
 * message naming the item and `needle`. */
static void expect_skip(int kind, const char *name, const char *value, int reason, const char *needle)
{
    mm_prep_spectra s;
    memset(&s, 0, sizeof s);
    read1(name, value, &s);
    const mm_prep_spectrum *x = &s.kind[kind];
    if (x->skip != reason) printf("'%s' = '%s': skip %d (%s), expected %d\n", name, value, x->skip, x->why, reason);
    assert_int_equal(x->skip, reason);
    assert_int_equal(x->found, 1);
    assert_int_equal(x->n_peaks, 0);
    assert_non_null(strstr(x->why, name));
    if (needle && !strstr(x->why, needle)) printf("'%s' lacks '%s'\n", x->why, needle);
    if (needle) assert_non_null(strstr(x->why, needle));
    assert_string_equal(x->item, name);
    mm_prep_spectra_free(&s);
}

static void test_both_formats(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    setup_feat();
    mm_prep_spectra s;
    memset(&s, 0, sizeof s);
    /* nmrshiftdb2: shift;multiplicity;index, a final '|' and blanks allowed */
    read1("Spectrum 13C 0", " 12.5;0.0Q;0|130.25;;0 |\n", &s);
    const mm_prep_spectrum *c = &s.kind[0];
    assert_int_equal(c->found, 1);
    assert_int_equal(c->skip, 0);
    assert_int_equal(c->n_peaks, 2);
    assert_true(c->shift[0] == 12.5f && c->shift[1] == 130.25f);
    assert_true(c->atom[0] == 1 && c->atom[1] == 1); /* record atom 0 is our atom 1 */
    assert_int_equal(s.kind[1].found, 0);
    /* 1H: an index naming the hydrogen goes to its carbon; one naming the carbon as well */
    read1("Spectrum 1H 3", "7.26;0.0S;2|7.30;0.0D;0", &s);
    assert_int_equal(s.kind[0].found, 0);
    assert_int_equal(s.kind[1].skip, 0);
    assert_int_equal(s.kind[1].n_peaks, 2);
    assert_true(s.kind[1].atom[0] == 1 && s.kind[1].atom[1] == 1);
    assert_true(s.kind[1].shift[0] == 7.26f);
    /* CASCADE Exp5K: index,shift */
    read1("C13 chemical shift", "0,142.80|0,-3.5|", &s);
    assert_int_equal(s.kind[0].n_peaks, 2);
    assert_true(s.kind[0].shift[0] == 142.80f && s.kind[0].shift[1] == -3.5f && s.kind[0].atom[1] == 1);
    /* many peaks grow the buffers */
    char big[8192];
    size_t len = 0;
    for (int p = 0; p < 300; p++) len += (size_t)snprintf(big + len, sizeof big - len, "%d.5;0.0S;0|", p);
    read1("Spectrum 13C 0", big, &s);
    assert_int_equal(s.kind[0].n_peaks, 300);
    assert_true(s.kind[0].shift[299] == 299.5f);
    mm_prep_spectra_free(&s);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_skips(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    setup_feat();
    const char *c13 = "Spectrum 13C 0", *h1 = "Spectrum 1H 0", *exp = "C13 chemical shift";
    expect_skip(0, c13, "", MM_PREP_NMR_EMPTY, "no peak");
    expect_skip(0, c13, " | ", MM_PREP_NMR_EMPTY, NULL);
    expect_skip(0, c13, "abc;0.0S;0", MM_PREP_NMR_MALFORMED, "peak 0 'abc;0.0S;0': the shift is not a number");
    expect_skip(0, c13, "nan;0.0S;0", MM_PREP_NMR_MALFORMED, "shift");
    expect_skip(0, c13, "1e9;0.0S;0", MM_PREP_NMR_MALFORMED, "shift");
    expect_skip(0, c13, "12.5;0.0S", MM_PREP_NMR_MALFORMED, "expected shift;multiplicity;atomidx");
    expect_skip(0, c13, "12.5;0.0S;0;1", MM_PREP_NMR_MALFORMED, "expected");
    expect_skip(0, c13, "12.5;0.0S;-1", MM_PREP_NMR_MALFORMED, "the atom index is not a non-negative integer");
    expect_skip(0, c13, "12.5;0.0S;0x1", MM_PREP_NMR_MALFORMED, "atom index");
    expect_skip(0, c13, "12.5;0.0S;0||13.5;0.0S;0", MM_PREP_NMR_MALFORMED, "peak 1: empty");
    expect_skip(0, c13, "12.5;0.0S;0|13.5;0.0S;4", MM_PREP_NMR_INDEX, "peak 1 '13.5;0.0S;4': atom index 4, the record's atoms are 0..3");
    expect_skip(0, c13, "12.5;0.0S;99999999999", MM_PREP_NMR_MALFORMED, "atom index");
    expect_skip(0, c13, "12.5;0.0S;1", MM_PREP_NMR_ELEMENT, "atom 1 is element 8, not carbon");
    expect_skip(1, h1, "3.5;0.0S;1", MM_PREP_NMR_ELEMENT, "atom 1 (element 8) carries no hydrogen");
    expect_skip(1, h1, "0.5;0.0S;3", MM_PREP_NMR_LONE_H, "atom 3 is a hydrogen without a heavy neighbour");
    expect_skip(0, exp, "142.8,0", MM_PREP_NMR_MALFORMED, "atom index");
    expect_skip(0, exp, "0,142.8,1", MM_PREP_NMR_MALFORMED, "expected atomidx,shift");
    expect_skip(0, exp, "7,142.8", MM_PREP_NMR_INDEX, "atom index 7");
    for (int r = 1; r < MM_PREP_NMR_N_SKIPS; r++) assert_string_not_equal(mm_prep_nmr_skip_name(r), "unknown");
    assert_string_equal(mm_prep_nmr_skip_name(MM_PREP_NMR_N_SKIPS), "unknown");
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_choice_among_items(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    setup_feat();
    /* the lowest <n> is read whatever the order; the others only counted */
    const char *names[] = {"SMILES", "Spectrum 13C 2", "Spectrum 13C 1", "Spectrum 15N 0", "Spectrum 13C 10",
                           "Spectrum H,H-COSY 0", "Spectrum 1H 0", "Spectrum 13C x", "Spectrum 1H 1"};
    const char *values[] = {"CO", "bad", "20.5;0.0T;0", "33.2;0.0S;1", "bad", "", "1.0;0.0S;2", "bad", "bad"};
    enum { N = sizeof names / sizeof names[0] };
    mm_prep_spectra s;
    memset(&s, 0, sizeof s);
    assert_int_equal(mm_prep_read_spectra(N, names, values, 4, INPUT_ATOM, INPUT_IS_H, 2, FEAT, &s), MM_OK);
    assert_int_equal(s.kind[0].found, 3);
    assert_string_equal(s.kind[0].item, "Spectrum 13C 1");
    assert_int_equal(s.kind[0].skip, 0);
    assert_int_equal(s.kind[0].n_peaks, 1);
    assert_true(s.kind[0].shift[0] == 20.5f);
    assert_int_equal(s.kind[1].found, 2);
    assert_string_equal(s.kind[1].item, "Spectrum 1H 0");
    assert_int_equal(s.kind[1].n_peaks, 1);
    assert_int_equal(s.other, 3); /* 15N, COSY, "13C x" */
    assert_int_equal(mm_prep_spectra_kinds(N, names), MM_MOD_NMR13C | MM_MOD_NMR1H);
    assert_int_equal(mm_prep_spectra_kinds(1, names), 0u);
    /* the unnumbered item comes before every numbered one; a bad first one is a skip, not
     * a fall-back to the next */
    const char *n2[] = {"Spectrum 13C 0", "Spectrum 13C"}, *v2[] = {"20.5;0.0T;0", "oops"};
    assert_int_equal(mm_prep_read_spectra(2, n2, v2, 4, INPUT_ATOM, INPUT_IS_H, 2, FEAT, &s), MM_OK);
    assert_string_equal(s.kind[0].item, "Spectrum 13C");
    assert_int_equal(s.kind[0].skip, MM_PREP_NMR_MALFORMED);
    assert_int_equal(s.kind[0].found, 2);
    /* nothing to read */
    assert_int_equal(mm_prep_read_spectra(0, NULL, NULL, 0, NULL, NULL, 0, NULL, &s), MM_OK);
    assert_int_equal(s.kind[0].found + s.kind[1].found + s.other, 0);
    mm_prep_spectra_free(&s);
    mm_prep_spectra_free(&s); /* twice is fine */
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_formats),
        cmocka_unit_test(test_skips),
        cmocka_unit_test(test_choice_among_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
