/* Tests of the dataset splits (finetune.h): the scaffold split's grouping, order of
 * groups (size, then the deepchem or chemprop tie rule), fill rules and the "" group,
 * worked out by hand; the random split's sizes, coverage and determinism; the JSON
 * file. The comparison with RDKit on BBBP is in test_mpi_finetune.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mmsa/finetune.h"
#include "testutil.h"

/* membership of molecule i: 0 train, 1 valid, 2 test */
static void where(const mm_split *s, int64_t n, int *w)
{
    for (int64_t i = 0; i < n; i++) w[i] = -1;
    for (int k = 0; k < MM_N_SPLITS; k++)
        for (int64_t j = 0; j < s->n[k]; j++) {
            assert_int_equal(w[s->idx[k][j]], -1); /* each molecule once */
            w[s->idx[k][j]] = k;
            if (j) assert_true(s->idx[k][j - 1] < s->idx[k][j]); /* ascending */
        }
    for (int64_t i = 0; i < n; i++) assert_true(w[i] >= 0);
}

/* 10 molecules: scaffold A x4 (0,3,5,9), "" x2 (1 and NULL at 7), B x1 (2), C x1 (4),
 * D x1 (6), E x1 (8). Fractions 0.6 / 0.2: train size 6, valid size 2. */
static const char *const scaf10[10] = {"A", "", "B", "A", "C", "A", "D", NULL, "E", "A"};

static void test_scaffold_deepchem(void **state)
{
    (void)state;
    mm_split s;
    int w[10];
    assert_int_equal(mm_split_scaffold(scaf10, 10, 0.6, 0.2, MM_SCAFFOLD_DEEPCHEM, &s), MM_OK);
    assert_int_equal(s.n_groups, 6);
    where(&s, 10, w);
    /* order: A(4), ""(2, first 1), then singletons by first occurrence DESCENDING: E(8),
     * D(6), C(4), B(2). A -> train (4 <= 6); "" -> train (6 <= 6); E: 7 > 6 -> valid
     * (6+0+1 <= 8); D -> valid (6+1+1 <= 8); C, B -> test. */
    int want[10] = {0, 0, 2, 0, 2, 0, 1, 0, 1, 0};
    assert_memory_equal(w, want, sizeof want);
    mm_split_free(&s);
}

static void test_scaffold_chemprop(void **state)
{
    (void)state;
    mm_split s;
    int w[10];
    assert_int_equal(mm_split_scaffold(scaf10, 10, 0.6, 0.2, MM_SCAFFOLD_CHEMPROP, &s), MM_OK);
    where(&s, 10, w);
    /* order: A(4), ""(2), then singletons by first occurrence ASCENDING: B(2), C(4), D(6),
     * E(8). A, "" -> train (6); B, C -> valid (2 <= 2); D, E -> test. */
    int want[10] = {0, 0, 1, 0, 1, 0, 2, 0, 2, 0};
    assert_memory_equal(w, want, sizeof want);
    mm_split_free(&s);
}

/* A large group that does not fit train goes on to valid or test whole, and smaller
 * groups after it can still fill train (both rules). */
static void test_scaffold_groups_stay_whole(void **state)
{
    (void)state;
    /* X x5 (0..4), Y x4 (5..8), Z x1 (9); 0.5 / 0.4 of 10: train 5, valid 4 */
    const char *sc[10] = {"X", "X", "X", "X", "X", "Y", "Y", "Y", "Y", "Z"};
    for (int rule = 0; rule < 2; rule++) {
        mm_split s;
        int w[10];
        assert_int_equal(mm_split_scaffold(sc, 10, 0.5, 0.4, (mm_scaffold_rule)rule, &s), MM_OK);
        where(&s, 10, w);
        int want[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 2};
        assert_memory_equal(w, want, sizeof want);
        mm_split_free(&s);
    }
    /* X x3, Y x4, train cutoff 4.2: Y first (largest), then X does not fit -> valid */
    const char *sc2[7] = {"X", "X", "X", "Y", "Y", "Y", "Y"};
    mm_split s;
    int w[7];
    assert_int_equal(mm_split_scaffold(sc2, 7, 0.6, 0.4, MM_SCAFFOLD_DEEPCHEM, &s), MM_OK);
    where(&s, 7, w);
    int want2[7] = {1, 1, 1, 0, 0, 0, 0};
    assert_memory_equal(w, want2, sizeof want2);
    mm_split_free(&s);
}

static void test_random_split(void **state)
{
    (void)state;
    enum { N = 1001 };
    mm_split a, b, c;
    int wa[N], wb[N], wc[N];
    assert_int_equal(mm_split_random(N, 0.8, 0.1, 7, &a), MM_OK);
    assert_int_equal(mm_split_random(N, 0.8, 0.1, 7, &b), MM_OK);
    assert_int_equal(mm_split_random(N, 0.8, 0.1, 8, &c), MM_OK);
    assert_int_equal(a.n[0], 800); /* floor(0.8 * 1001) */
    assert_int_equal(a.n[1], 100); /* floor(0.9 * 1001) - 800 */
    assert_int_equal(a.n[2], 101);
    where(&a, N, wa);
    where(&b, N, wb);
    where(&c, N, wc);
    assert_memory_equal(wa, wb, sizeof wa);
    int same = 0;
    for (int i = 0; i < N; i++) same += wa[i] == wc[i];
    assert_true(same < N - 50); /* another seed, another split */
    /* not the first 800 rows: the permutation mixes them */
    int early_test = 0;
    for (int i = 0; i < 800; i++) early_test += wa[i] == 2;
    assert_true(early_test > 50);
    mm_split_free(&a);
    mm_split_free(&b);
    mm_split_free(&c);
}

static void test_bad_fractions_and_json(void **state)
{
    (void)state;
    mm_split s;
    assert_int_equal(mm_split_random(10, 0.8, 0.3, 1, &s), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_split_scaffold(scaf10, 10, 0.0, 0.5, MM_SCAFFOLD_DEEPCHEM, &s), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_split_scaffold(scaf10, 10, 0.6, 0.2, MM_SCAFFOLD_DEEPCHEM, &s), MM_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/split.json", tu_tmpdir());
    int64_t rows[10] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    assert_int_equal(mm_split_write_json(&s, "scaffold", rows, 10, path), MM_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[2000];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = '\0';
    fclose(f);
    assert_non_null(strstr(buf, "\"train\": [0, 1, 3, 5, 7, 9]"));
    assert_non_null(strstr(buf, "\"valid\": [6, 8]"));
    assert_non_null(strstr(buf, "\"test\": [2, 4]"));
    assert_non_null(strstr(buf, "\"test_source_row\": [12, 14]"));
    assert_non_null(strstr(buf, "\"n_groups\": 6"));
    mm_split_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scaffold_deepchem),
        cmocka_unit_test(test_scaffold_chemprop),
        cmocka_unit_test(test_scaffold_groups_stay_whole),
        cmocka_unit_test(test_random_split),
        cmocka_unit_test(test_bad_fractions_and_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
