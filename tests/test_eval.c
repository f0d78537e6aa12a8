/* Tests of mmsa_eval's library (eval.h): retrieval ranks against mm_retrieval_ranks, top-k
 * on embeddings whose answers are known (identity, a known order, ties, pools, missing
 * modalities), chance levels, isomer groups and ranks worked out by hand, the formula of
 * the atom features against Open Babel's on real files, the isomers of a small real
 * dataset, the embeddings file and every error path of the program, and the report files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <hdf5.h>

#include "mmsa/acml.h"
#include "mmsa/alloc.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"
#include "mmsa/dataset.h"
#include "mmsa/eval.h"
#include "mmsa/rng.h"
#include "testutil.h"

#define OK(expr)                                           \
    do {                                                   \
        mm_status st_ = (expr);                            \
        if (st_ != MM_OK) mm_error_print(stderr, -1);      \
        assert_int_equal(st_, MM_OK);                      \
    } while (0)

#define assert_near(a, b, eps)                                                               \
    do {                                                                                     \
        double a_ = (a), b_ = (b);                                                           \
        if (!(fabs(a_ - b_) <= (eps))) fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
    } while (0)

static void fill_normal(float *x, int64_t n, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, 3);
    for (int64_t i = 0; i < n; i++) x[i] = mm_rng_normal(&r);
}

/* ---------------------------------------------------------------- ranks */

static void test_ranks_both_equal_mm_retrieval_ranks(void **state)
{
    (void)state;
    enum { M = 37, D = 13 };
    float a[M * D], b[M * D];
    int64_t ab[M], ba[M], ref_ab[M], ref_ba[M];
    for (int tie = 0; tie < 2; tie++) {
        fill_normal(a, M * D, 1);
        fill_normal(b, M * D, 2);
        if (tie) /* small integers: many exactly equal scores, duplicate rows */
            for (int i = 0; i < M * D; i++) {
                a[i] = (float)((int)(a[i] * 1.5f) % 2);
                b[i] = (float)((int)(b[i] * 1.5f) % 2);
                if (i >= 20 * D && i < 24 * D) b[i] = b[i - 4 * D];
            }
        OK(mm_eval_ranks_both(a, b, M, D, ab, ba));
        mm_retrieval_ranks(a, b, M, D, ref_ab);
        mm_retrieval_ranks(b, a, M, D, ref_ba);
        for (int i = 0; i < M; i++) {
            assert_int_equal(ab[i], ref_ab[i]);
            assert_int_equal(ba[i], ref_ba[i]);
        }
    }
}

/* d = 1: u_i = 1, g_i = x_i with x a permutation of 0..m-1. teacher -> graph: the scores
 * of query i are the x_j, so rank(i) = m - 1 - x_i; graph -> teacher: every teacher scores
 * x_j, all tied, so rank(j) = j (the smaller rows win ties). */
static void test_known_order_and_ties(void **state)
{
    (void)state;
    enum { M = 20 };
    float u[M], g[M];
    int64_t x[M], ab[M], ba[M];
    mm_rng r;
    mm_rng_init(&r, 5, 0);
    mm_rng_permutation(&r, M, x);
    for (int i = 0; i < M; i++) {
        u[i] = 1;
        g[i] = (float)x[i];
    }
    OK(mm_eval_ranks_both(u, g, M, 1, ab, ba));
    for (int i = 0; i < M; i++) {
        assert_int_equal(ab[i], M - 1 - x[i]);
        assert_int_equal(ba[i], i);
    }
    mm_eval_topk t;
    OK(mm_eval_pool_retrieval(u, g, NULL, M, 1, 0, 0, &t));
    assert_false(t.skipped);
    assert_int_equal(t.size, M);
    assert_int_equal(t.n_pools, 1);
    for (int k = 1; k <= MM_EVAL_KMAX; k++) {
        assert_near(t.t2g[k - 1], mm_eval_chance(k, M), 1e-15);
        assert_near(t.g2t[k - 1], mm_eval_chance(k, M), 1e-15);
    }
}

static void test_chance(void **state)
{
    (void)state;
    assert_near(mm_eval_chance(1, 100), 0.01, 1e-15);
    assert_near(mm_eval_chance(5, 1000), 0.005, 1e-15);
    assert_near(mm_eval_chance(10, 4), 1.0, 1e-15);
    assert_near(mm_eval_chance(3, 0), 0.0, 1e-15);
}

/* One-hot pairs (u_i = g_i = e_i): the true partner always wins; rows without the
 * modality hold a vector that would beat every partner if it were in a pool. */
static void test_identity_pools_and_missing_modality(void **state)
{
    (void)state;
    enum { N = 260, D = 260 };
    float *u = calloc(N * D, sizeof(float)), *g = calloc(N * D, sizeof(float));
    uint8_t ok[N];
    int64_t m = 0;
    for (int i = 0; i < N; i++) {
        ok[i] = i % 13 != 5;
        m += ok[i];
        for (int q = 0; q < D; q++) {
            u[i * D + q] = ok[i] ? (q == i) : 10.0f;
            g[i * D + q] = ok[i] ? (q == i) : 10.0f;
        }
    }
    assert_int_equal(m, 240);
    const int64_t pools[4] = {100, 0, 1000, 240};
    for (int p = 0; p < 4; p++) {
        mm_eval_topk t;
        OK(mm_eval_pool_retrieval(u, g, ok, N, D, pools[p], 11, &t));
        if (pools[p] == 1000) {
            assert_true(t.skipped);
            assert_int_equal(t.n_pools, 0);
            continue;
        }
        assert_false(t.skipped);
        int64_t size = pools[p] ? pools[p] : m;
        assert_int_equal(t.size, size);
        assert_int_equal(t.n_pools, m / size);
        assert_int_equal(t.n_queries, (m / size) * size);
        for (int k = 0; k < MM_EVAL_KMAX; k++) {
            assert_near(t.t2g[k], 1.0, 0);
            assert_near(t.g2t[k], 1.0, 0);
        }
    }
    /* without the mask the large rows win: top-1 far from 1 */
    mm_eval_topk t;
    OK(mm_eval_pool_retrieval(u, g, NULL, N, D, 0, 11, &t));
    assert_true(t.t2g[0] < 0.2);
    free(u);
    free(g);
}

/* Pools are consecutive blocks of the seeded permutation of the molecules with the
 * modality, each ranked alone with its members in increasing row: checked against
 * mm_retrieval_ranks on the pools built here by hand. */
static void test_pools_follow_the_permutation(void **state)
{
    (void)state;
    enum { N = 23, D = 3, POOL = 5 };
    float u[N * D], g[N * D], pu[POOL * D], pg[POOL * D];
    uint8_t ok[N];
    int64_t rows[N], perm[N], rk_t2g[POOL], rk_g2t[POOL], m = 0;
    fill_normal(u, N * D, 7);
    fill_normal(g, N * D, 8);
    for (int i = 0; i < N * D; i++) g[i] = 0.6f * u[i] + g[i]; /* partners correlated: top-k in between */
    for (int i = 0; i < N; i++) {
        ok[i] = i % 7 != 3;
        if (ok[i]) rows[m++] = i;
    }
    const uint64_t seed = 42;
    mm_rng r;
    mm_rng_init(&r, seed, 0);
    mm_rng_permutation(&r, m, perm);
    int64_t hits1 = 0, hits2g = 0, npools = m / POOL;
    for (int64_t p = 0; p < npools; p++) {
        int64_t mem[POOL];
        for (int t = 0; t < POOL; t++) mem[t] = rows[perm[p * POOL + t]];
        for (int a = 0; a < POOL; a++) /* insertion sort */
            for (int b = a; b > 0 && mem[b - 1] > mem[b]; b--) {
                int64_t x = mem[b];
                mem[b] = mem[b - 1];
                mem[b - 1] = x;
            }
        for (int t = 0; t < POOL; t++) {
            memcpy(pu + t * D, u + mem[t] * D, sizeof(float) * D);
            memcpy(pg + t * D, g + mem[t] * D, sizeof(float) * D);
        }
        mm_retrieval_ranks(pu, pg, POOL, D, rk_t2g);
        mm_retrieval_ranks(pg, pu, POOL, D, rk_g2t);
        for (int t = 0; t < POOL; t++) {
            hits1 += rk_t2g[t] == 0;
            hits2g += rk_g2t[t] < 2;
        }
    }
    mm_eval_topk t, t2;
    OK(mm_eval_pool_retrieval(u, g, ok, N, D, POOL, seed, &t));
    assert_int_equal(t.n_pools, npools);
    assert_int_equal(t.n_queries, npools * POOL);
    assert_near(t.t2g[0], (double)hits1 / (double)(npools * POOL), 1e-15);
    assert_near(t.g2t[1], (double)hits2g / (double)(npools * POOL), 1e-15);
    assert_true(t.t2g[0] > 0 && t.t2g[0] < 1);
    /* same seed, same pools; top-k grows with k to 1 at k = pool size */
    OK(mm_eval_pool_retrieval(u, g, ok, N, D, POOL, seed, &t2));
    assert_memory_equal(&t, &t2, sizeof t);
    for (int k = 1; k < MM_EVAL_KMAX; k++) assert_true(t.t2g[k] >= t.t2g[k - 1]);
    assert_near(t.t2g[POOL - 1], 1.0, 0);
}

/* ---------------------------------------------------------------- isomers */

static void test_isomer_groups_by_hand(void **state)
{
    (void)state;
    /* rows: 0 A:x  1 B:p  2 A:y  3 A:x (dup)  4 B:q  5 C:z  6 A:w (ok 0)  7 "":v  8 B:r  9 D:s  10 D:t */
    const char *formula[11] = {"A", "B", "A", "A", "B", "C", "A", "", "B", "D", "D"};
    const char *smiles[11] = {"x", "p", "y", "x", "q", "z", "w", "v", "r", "s", "t"};
    const uint8_t ok[11] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    mm_eval_groups g;
    OK(mm_eval_isomer_groups(formula, smiles, ok, 11, &g));
    assert_int_equal(g.n_groups, 3);
    assert_int_equal(g.n_candidates, 9);
    assert_int_equal(g.n_duplicates, 1);
    assert_int_equal(g.n_no_formula, 1);
    const int64_t off[4] = {0, 2, 5, 7}, mem[7] = {0, 2, 1, 4, 8, 9, 10};
    assert_int_equal(g.n_members, 7);
    for (int i = 0; i < 4; i++) assert_int_equal(g.offset[i], off[i]);
    for (int i = 0; i < 7; i++) assert_int_equal(g.member[i], mem[i]);

    /* d = 2 embeddings: group {1, 4, 8}: teacher 1 prefers graph 8, teacher 4 ties with
     * graph 1 (smaller row wins), teacher 8 is right; group {0, 2}: both right; group
     * {9, 10}: teacher 9 prefers 10, teacher 10 right. */
    float u[11 * 2] = {0}, gr[11 * 2] = {0};
    gr[0 * 2] = 1;          /* graph 0 = (1, 0), graph 2 = (0, 1) */
    gr[2 * 2 + 1] = 1;
    u[0 * 2] = 1;
    u[2 * 2 + 1] = 1;
    gr[1 * 2] = 1;          /* graphs 1 (1,0), 4 (1,0), 8 (0,1) */
    gr[4 * 2] = 1;
    gr[8 * 2 + 1] = 1;
    u[1 * 2 + 1] = 1;       /* teacher 1 (0,1): prefers 8, rank 1 (ties with 4? 4 scores 0 = self) */
    u[4 * 2] = 1;           /* teacher 4 (1,0): 1 and 4 both score 1, 1 is smaller: rank 1 */
    u[8 * 2 + 1] = 1;       /* teacher 8 (0,1): right, rank 0 */
    gr[9 * 2] = 1;          /* graph 9 (1,0), graph 10 (2,0); teachers (1,0) */
    gr[10 * 2] = 2;
    u[9 * 2] = 1;
    u[10 * 2] = 1;
    int64_t rank[7];
    mm_eval_isomers iso;
    OK(mm_eval_isomer_ranks(u, gr, 2, &g, &iso, rank));
    /* members 0 2 | 1 4 8 | 9 10. teacher 1 scores: g1 0, g4 0, g8 1: 8 higher, 4 ties
     * but is a larger row: rank 1 */
    const int64_t want[7] = {0, 0, 1, 1, 0, 1, 0};
    for (int i = 0; i < 7; i++) assert_int_equal(rank[i], want[i]);
    assert_int_equal(iso.all.n_groups, 3);
    assert_int_equal(iso.all.n_molecules, 7);
    assert_near(iso.all.top1, 4.0 / 7.0, 1e-15);
    assert_near(iso.all.chance, (4 * 0.5 + 3.0 / 3.0) / 7.0, 1e-15);
    assert_near(iso.all.mean_rank, 3.0 / 7.0, 1e-15);
    assert_int_equal(iso.bin[0].n_groups, 2); /* size 2 */
    assert_int_equal(iso.bin[0].n_molecules, 4);
    assert_near(iso.bin[0].top1, 3.0 / 4.0, 1e-15);
    assert_int_equal(iso.bin[1].n_groups, 1); /* size 3 */
    assert_near(iso.bin[1].top1, 1.0 / 3.0, 1e-15);
    assert_near(iso.bin[1].chance, 1.0 / 3.0, 1e-15);
    assert_true(isnan(iso.bin[2].top1));
    assert_int_equal(iso.bin[4].n_groups, 0);
    mm_eval_groups_free(&g);
}

/* ---------------------------------------------------------------- formula and real files */

static mm_chem *graph_only_chem(void)
{
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = o.image = o.fingerprint = o.scaffold = 0;
    mm_chem *c = NULL;
    OK(mm_chem_create(&o, &c));
    return c;
}

static void check_formula(mm_chem *c, const mm_mol_feat *f, const char *what)
{
    char ours[MM_EVAL_FORMULA_MAX], ob[MM_EVAL_FORMULA_MAX];
    OK(mm_chem_formula_atoms(f->atom_feat, f->n_atoms, ours, sizeof ours));
    OK(mm_chem_formula(c, f->smiles, ob, sizeof ob));
    if (strcmp(ours, ob)) fail_msg("%s (%s): formula %s from the atom features, %s from Open Babel", what, f->smiles, ours, ob);
}

static void test_formula_small_cases(void **state)
{
    (void)state;
    mm_chem *c = graph_only_chem();
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    const char *smi[][2] = {{"CCO", "C2H6O"},       {"C[NH3+]", "CH6N+"},  {"CC(=O)[O-]", "C2H3O2-"},
                            {"OCl", "ClHO"},        {"N", "H3N"},          {"[Ca+2]", "Ca++"},
                            {"c1ccccc1Br", "C6H5Br"}, {"[Na+].[Cl-]", "ClNa"}, {"OS(=O)(=O)O", "H2O4S"},
                            {"[O-][O-]", "O2--"},   {"BrC(Cl)(F)I", "CBrClFI"}, {"[B-](F)(F)(F)F", "BF4-"}};
    for (size_t i = 0; i < sizeof smi / sizeof smi[0]; i++) {
        char ours[MM_EVAL_FORMULA_MAX], ob[MM_EVAL_FORMULA_MAX];
        OK(mm_chem_featurize_smiles(c, smi[i][0], 0, &f));
        OK(mm_chem_formula_atoms(f.atom_feat, f.n_atoms, ours, sizeof ours));
        OK(mm_chem_formula(c, smi[i][0], ob, sizeof ob));
        assert_string_equal(ours, smi[i][1]);
        assert_string_equal(ob, smi[i][1]);
    }
    /* a misc element or H count has no formula; a buffer too small is an error */
    uint8_t af[9] = {118, 0, 0, 5, 0, 0, 0, 0, 0};
    char buf[8];
    assert_int_equal(mm_chem_formula_atoms(af, 1, buf, sizeof buf), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "misc"));
    af[0] = 5;
    af[4] = 9;
    assert_int_equal(mm_chem_formula_atoms(af, 1, buf, sizeof buf), MM_ERR_ARG);
    af[4] = 4;
    assert_int_equal(mm_chem_formula_atoms(af, 1, buf, 3), MM_ERR_ARG);
    OK(mm_chem_formula_atoms(af, 1, buf, sizeof buf));
    assert_string_equal(buf, "CH4");
    assert_int_equal(mm_chem_formula(c, "C1CC(", buf, sizeof buf), MM_ERR_CHEM);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
}

/* Every molecule of BBBP and the first 300 records of the NMR8K SD file: the formula of
 * the atom features equals Open Babel's formula of the canonical SMILES. */
static void test_formula_matches_open_babel_on_real_files(void **state)
{
    (void)state;
    mm_chem *c = graph_only_chem();
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    const char *files[2] = {"data/moleculenet/bbbp.csv", "data/spectra_3d/cascade_NMR8K.sdf.gz"};
    for (int fi = 0; fi < 2; fi++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", tu_shared_dir(), files[fi]);
        mm_table *t = NULL;
        OK(mm_table_open(path, NULL, &t));
        mm_table_row row;
        bool eof = false;
        int64_t checked = 0, rejected = 0;
        for (int64_t i = 0; i < (fi ? 300 : 100000); i++) {
            OK(mm_table_next(t, &row, &eof));
            if (eof) break;
            mm_status st = fi ? mm_chem_featurize_sdf(c, row.record, 0, &f) : mm_chem_featurize_smiles(c, row.smiles, 0, &f);
            if (st == MM_ERR_CHEM) {
                mm_error_clear();
                rejected++;
                continue;
            }
            OK(st);
            char what[64];
            snprintf(what, sizeof what, "%s row %lld", files[fi], (long long)row.row);
            check_formula(c, &f, what);
            checked++;
        }
        printf("# %s: formula checked on %lld molecules (%lld rejected by the featuriser)\n", files[fi],
               (long long)checked, (long long)rejected);
        assert_true(checked >= (fi ? 290 : 2000));
        mm_table_close(&t);
    }
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
}

/* A small real dataset: the seven C4H10O isomers (one written twice, in another order),
 * ethanol and dimethyl ether (C2H6O), and singletons. */
static const char *const iso_smiles[] = {
    "CCCCO",    "CCC(C)O", "c1ccccc1", "CC(C)CO", "CC(C)(C)O", "CCO",      "CCOCC", "COC",
    "OCCCC", /* = CCCCO */ "CCCOC",   "COC(C)C", "CC(=O)O",  "CCCC",      "C[NH3+]"};
#define N_ISO ((int)(sizeof iso_smiles / sizeof iso_smiles[0]))

static void write_iso_dataset(const char *path)
{
    mm_chem *c = graph_only_chem();
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    mm_molset_opts o = {0, 0, 0, 0, NULL};
    OK(mm_molset_init(&ms, &o));
    for (int i = 0; i < N_ISO; i++) {
        OK(mm_chem_featurize_smiles(c, iso_smiles[i], (uint64_t)i, &f));
        mm_mol_in m = {f.smiles, i, f.n_atoms, f.atom_feat, f.n_bonds, f.bond_index, f.bond_feat,
                       NULL, 0, NULL, NULL, NULL, NULL, {{0}}};
        OK(mm_molset_append(&ms, &m));
    }
    mm_dataset_meta meta = {"test", "test_eval iso", NULL, NULL};
    OK(mm_dataset_write(path, MPI_COMM_NULL, &ms, &meta));
    mm_molset_free(&ms);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
}

static const char *iso_dataset(void)
{
    static char path[1024];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/iso.h5", tu_tmpdir());
        write_iso_dataset(path);
    }
    return path;
}

static void test_isomers_of_a_real_dataset(void **state)
{
    (void)state;
    const char *ds = iso_dataset();
    /* held out: every molecule but the first ethanol-group member's partner stays */
    int64_t index[N_ISO];
    for (int i = 0; i < N_ISO; i++) index[i] = i;
    char **smiles = NULL, **formula = NULL;
    OK(mm_eval_mols(ds, index, N_ISO, &smiles, &formula));
    mm_chem *c = graph_only_chem();
    for (int i = 0; i < N_ISO; i++) {
        char ob[MM_EVAL_FORMULA_MAX];
        OK(mm_chem_formula(c, iso_smiles[i], ob, sizeof ob));
        assert_string_equal(formula[i], ob);
    }
    assert_string_equal(formula[0], "C4H10O");
    assert_string_equal(smiles[0], smiles[8]); /* canonical: OCCCC = CCCCO */
    mm_chem_destroy(&c);
    mm_eval_groups g;
    OK(mm_eval_isomer_groups((const char *const *)formula, (const char *const *)smiles, NULL, N_ISO, &g));
    assert_int_equal(g.n_groups, 2);
    assert_int_equal(g.n_duplicates, 1);
    const int64_t mem[9] = {0, 1, 3, 4, 6, 9, 10, /* C2H6O */ 5, 7};
    assert_int_equal(g.offset[1], 7);
    assert_int_equal(g.offset[2], 9);
    for (int i = 0; i < 9; i++) assert_int_equal(g.member[i], mem[i]);
    mm_eval_groups_free(&g);
    /* without the teacher's modality, dimethyl ether leaves: C2H6O is no group */
    uint8_t ok[N_ISO];
    memset(ok, 1, sizeof ok);
    ok[7] = 0;
    OK(mm_eval_isomer_groups((const char *const *)formula, (const char *const *)smiles, ok, N_ISO, &g));
    assert_int_equal(g.n_groups, 1);
    mm_eval_groups_free(&g);
    mm_eval_mols_free(&smiles, &formula, N_ISO);
    /* an index past the dataset */
    index[N_ISO - 1] = N_ISO + 5;
    assert_int_equal(mm_eval_mols(ds, index, N_ISO, &smiles, &formula), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "dataset row 19"));
    assert_null(smiles);
}

/* ---------------------------------------------------------------- the file and the program */

/* An embeddings file over molecules 0..n-1 of the iso dataset: nmr13c with one-hot
 * partners (trained) and all-equal untrained embeddings, image with no molecule ok. */
static void make_emb(mm_eval_emb *e, int64_t n, bool image)
{
    bool has[MM_EVAL_N_TEACHERS] = {false, false, false, true, image};
    int64_t dim[MM_EVAL_N_TEACHERS] = {0, 0, 0, 16, 4};
    OK(mm_eval_emb_alloc(e, n, has, dim));
    e->dataset = NULL;
    e->step = 77;
    for (int64_t i = 0; i < n; i++) {
        e->index[i] = i;
        mm_eval_pairing *p = &e->t[3];
        p->ok[i] = 1;
        for (int q = 0; q < 16; q++) {
            p->teacher[i * 16 + q] = p->graph[i * 16 + q] = (q == i);
            p->teacher0[i * 16 + q] = p->graph0[i * 16 + q] = 1;
        }
    }
}

static void test_file_round_trip(void **state)
{
    (void)state;
    size_t live = mm_alloc_live_bytes();
    char path[1024];
    snprintf(path, sizeof path, "%s/emb_rt.h5", tu_tmpdir());
    mm_eval_emb e, r;
    make_emb(&e, N_ISO, true);
    for (int i = 0; i < N_ISO * 4; i++) e.t[4].teacher[i] = (float)i * 0.5f;
    e.t[4].ok[3] = 1;
    OK(mm_eval_emb_write(path, &e));
    OK(mm_eval_emb_read(path, &r));
    assert_int_equal(r.n, N_ISO);
    assert_int_equal(r.step, 77);
    assert_string_equal(r.dataset, "");
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        assert_int_equal(r.has[k], e.has[k]);
        if (!r.has[k]) continue;
        assert_int_equal(r.t[k].dim, e.t[k].dim);
        size_t b = (size_t)(N_ISO * e.t[k].dim) * sizeof(float);
        assert_memory_equal(r.t[k].graph, e.t[k].graph, b);
        assert_memory_equal(r.t[k].teacher, e.t[k].teacher, b);
        assert_memory_equal(r.t[k].graph0, e.t[k].graph0, b);
        assert_memory_equal(r.t[k].teacher0, e.t[k].teacher0, b);
        assert_memory_equal(r.t[k].ok, e.t[k].ok, N_ISO);
    }
    assert_memory_equal(r.index, e.index, sizeof(int64_t) * N_ISO);
    mm_eval_emb_free(&r);
    mm_eval_emb_free(&e);
    assert_int_equal(mm_alloc_live_bytes(), live);
}

/* Writes a valid file, then damages it with fn. */
static void damaged(const char *path, void (*fn)(hid_t f))
{
    mm_eval_emb e;
    make_emb(&e, N_ISO, false);
    OK(mm_eval_emb_write(path, &e));
    mm_eval_emb_free(&e);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    fn(f);
    H5Fclose(f);
}

static void set_attr_str(hid_t f, const char *name, const char *v)
{
    H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void dmg_format(hid_t f) { set_attr_str(f, "format", "mmsa-embeddings"); }
static void dmg_version(hid_t f)
{
    int64_t v = 2;
    hid_t a = H5Aopen(f, "version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}
static void dmg_untrained(hid_t f) { H5Ldelete(f, "/untrained/nmr13c/teacher", H5P_DEFAULT); }
static void overwrite(hid_t f, const char *name, hid_t type, hsize_t row, const void *v)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), s = H5Dget_space(d);
    hsize_t start[2] = {row, 0}, count[2] = {1, 1};
    H5Sselect_hyperslab(s, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t m = H5Screate_simple(1, count, NULL);
    H5Dwrite(d, type, m, s, H5P_DEFAULT, v);
    H5Sclose(m);
    H5Sclose(s);
    H5Dclose(d);
}
static void dmg_index(hid_t f)
{
    int64_t v = 2;
    overwrite(f, "/index", H5T_NATIVE_INT64, 5, &v);
}
static void dmg_nan(hid_t f)
{
    float v = NAN;
    overwrite(f, "/nmr13c/graph", H5T_NATIVE_FLOAT, 9, &v);
}
static void dmg_ok(hid_t f)
{
    uint8_t v = 7;
    overwrite(f, "/nmr13c/ok", H5T_NATIVE_UINT8, 4, &v);
}
static void dmg_width(hid_t f)
{
    H5Ldelete(f, "/nmr13c/teacher", H5P_DEFAULT);
    hsize_t dims[2] = {N_ISO, 15};
    hid_t s = H5Screate_simple(2, dims, NULL);
    H5Dclose(H5Dcreate2(f, "/nmr13c/teacher", H5T_NATIVE_FLOAT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(s);
}
static void dmg_teachers(hid_t f)
{
    H5Ldelete(f, "/nmr13c", H5P_DEFAULT);
    H5Ldelete(f, "/untrained", H5P_DEFAULT);
}

static void expect_read_error(const char *path, mm_status code, const char *needle)
{
    mm_eval_emb e;
    assert_int_equal(mm_eval_emb_read(path, &e), code);
    if (!strstr(mm_error_message(), needle)) fail_msg("error '%s' does not say '%s'", mm_error_message(), needle);
    assert_null(e.index);
}

static void test_file_errors(void **state)
{
    (void)state;
    size_t live = mm_alloc_live_bytes();
    char path[1024];
    snprintf(path, sizeof path, "%s/emb_bad.h5", tu_tmpdir());
    expect_read_error("/nonexistent/heldout.h5", MM_ERR_IO, "/nonexistent/heldout.h5");
    expect_read_error(iso_dataset(), MM_ERR_FORMAT, "is not a held-out embeddings file (format \"mmsa-dataset\"");
    FILE *t = fopen(path, "w");
    fputs("not hdf5\n", t);
    fclose(t);
    expect_read_error(path, MM_ERR_FORMAT, "is not an HDF5 file");
    struct {
        void (*fn)(hid_t);
        mm_status code;
        const char *needle;
    } cases[] = {
        {dmg_format, MM_ERR_FORMAT, "format \"mmsa-embeddings\""},
        {dmg_version, MM_ERR_FORMAT, "version 2"},
        {dmg_untrained, MM_ERR_FORMAT, "/untrained/nmr13c/teacher is missing"},
        {dmg_index, MM_ERR_FORMAT, "/index[5] = 2"},
        {dmg_nan, MM_ERR_NUMERIC, "/nmr13c/graph has a non-finite value at row 9"},
        {dmg_ok, MM_ERR_FORMAT, "/nmr13c/ok holds 7 at row 4"},
        {dmg_width, MM_ERR_FORMAT, "/nmr13c/teacher has width 15"},
        {dmg_teachers, MM_ERR_FORMAT, "no teacher group"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        damaged(path, cases[i].fn);
        expect_read_error(path, cases[i].code, cases[i].needle);
    }
    assert_int_equal(mm_alloc_live_bytes(), live);
}

static bool exists(const char *dir, const char *name)
{
    char p[2048];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

static void test_program_end_to_end_and_errors(void **state)
{
    (void)state;
    size_t live = mm_alloc_live_bytes();
    char path[1024], out[1024], rep[1024];
    snprintf(path, sizeof path, "%s/run/heldout_embeddings.h5", tu_tmpdir());
    snprintf(out, sizeof out, "%s/run", tu_tmpdir());
    mkdir(out, 0755);
    snprintf(rep, sizeof rep, "%s/report.txt", tu_tmpdir());
    mm_eval_emb e;
    make_emb(&e, N_ISO, false);
    OK(mm_eval_emb_write(path, &e));
    mm_eval_opts o;
    mm_eval_opts_default(&o);
    OK(mm_eval_parse_pools("--pools", "4,all,100", &o));
    assert_int_equal(o.n_pools, 3);
    assert_int_equal(o.pools[1], 0);
    FILE *f = fopen(rep, "w+");
    OK(mm_eval_files(path, iso_dataset(), NULL, &o, f)); /* default: <run>/eval */
    rewind(f);
    char text[16384];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    snprintf(out, sizeof out, "%s/run/eval", tu_tmpdir());
    assert_true(exists(out, "eval.json"));
    assert_true(exists(out, "eval.md"));
    assert_true(exists(out, "topk.csv"));
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) assert_true(exists(out, "topk.png"));
    /* one-hot partners: 100 % at every k; untrained (all equal): ties to the smaller row */
    assert_non_null(strstr(text, "| nmr13c | teacher -> graph | 4 | 3 | 100.0 | 100.0 | 100.0 | 25.0 / 100.0 / 100.0 | 25.0 / 100.0 / 100.0 |"));
    assert_non_null(strstr(text, "| nmr13c | graph -> teacher | all (14) | 1 | 100.0 | 100.0 | 100.0 | 7.1 / 35.7 / 71.4 | 7.1 / 35.7 / 71.4 |"));
    assert_non_null(strstr(text, "Skipped: pool 100 for nmr13c (only 14 held-out molecules"));
    /* isomers: C4H10O (7) and C2H6O (2); untrained: only the first member of each wins */
    assert_non_null(strstr(text, "| nmr13c | all | 2 | 9 | 100.0 | 22.2 | 22.2 |"));
    assert_non_null(strstr(text, "| nmr13c | 6-10 | 1 | 7 | 100.0 | 14.3 | 14.3 |"));
    char json[2048];
    snprintf(json, sizeof json, "%s/eval.json", out);
    f = fopen(json, "r");
    len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "\"pool\": 100, \"skipped\": true"));
    assert_non_null(strstr(text, "\"size\": 4, \"n_pools\": 3, \"n_queries\": 12"));
    assert_non_null(strstr(text, "\"n_groups\": 2, \"n_molecules\": 9"));

    /* gnuplot missing: the files but no PNG, and a note */
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", "/nonexistent", 1);
    snprintf(out, sizeof out, "%s/run/eval_noplot", tu_tmpdir());
    f = fopen(rep, "w+");
    OK(mm_eval_files(path, iso_dataset(), out, &o, f));
    rewind(f);
    len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    if (old) {
        setenv("PATH", old, 1);
        free(old);
    }
    assert_non_null(strstr(text, "no plot: gnuplot is not installed"));
    assert_true(exists(out, "topk.csv"));
    assert_false(exists(out, "topk.png"));

    /* errors: no molecule with the modality, index past the dataset, missing files, --run */
    for (int64_t i = 0; i < e.n; i++) e.t[3].ok[i] = 0;
    OK(mm_eval_emb_write(path, &e));
    f = fopen(rep, "w");
    assert_int_equal(mm_eval_files(path, iso_dataset(), out, &o, f), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "teacher nmr13c: none of the 14 held-out molecules has this modality"));
    for (int64_t i = 0; i < e.n; i++) e.t[3].ok[i] = 1;
    e.index[e.n - 1] = 1000;
    OK(mm_eval_emb_write(path, &e));
    assert_int_equal(mm_eval_files(path, iso_dataset(), out, &o, f), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "is dataset row 1000, but"));
    assert_int_equal(mm_eval_files(path, "/nonexistent/data.h5", out, &o, f), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "/nonexistent/data.h5"));
    fclose(f);
    char emb[1024], ds[1024], run[1024];
    snprintf(run, sizeof run, "%s/run_unevaluated", tu_tmpdir());
    mkdir(run, 0755);
    assert_int_equal(mm_eval_resolve_run(run, emb, sizeof emb, ds, sizeof ds), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "the run must be evaluated first"));
    assert_int_equal(mm_eval_resolve_run("/nonexistent/run", emb, sizeof emb, ds, sizeof ds), MM_ERR_IO);
    snprintf(run, sizeof run, "%s/run", tu_tmpdir());
    assert_int_equal(mm_eval_resolve_run(run, emb, sizeof emb, ds, sizeof ds), MM_ERR_IO); /* no job.yaml */
    assert_non_null(strstr(mm_error_message(), "/run/job.yaml"));
    snprintf(path, sizeof path, "%s/run/job.yaml", tu_tmpdir());
    f = fopen(path, "w");
    fprintf(f, "train:\n  dataset: /data/x.h5\n  run_dir: %s\n", run);
    fclose(f);
    OK(mm_eval_resolve_run(run, emb, sizeof emb, ds, sizeof ds));
    assert_string_equal(ds, "/data/x.h5");
    assert_non_null(strstr(emb, "/run/heldout_embeddings.h5"));
    /* pool lists */
    assert_int_equal(mm_eval_parse_pools("--pools", "100,,all", &o), MM_ERR_CONFIG);
    assert_int_equal(mm_eval_parse_pools("--pools", "1", &o), MM_ERR_CONFIG);
    assert_int_equal(mm_eval_parse_pools("--pools", "10x", &o), MM_ERR_CONFIG);
    assert_int_equal(mm_eval_parse_pools("--pools", "all,all", &o), MM_ERR_CONFIG);
    mm_eval_emb_free(&e);
    assert_int_equal(mm_alloc_live_bytes(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_both_equal_mm_retrieval_ranks),
        cmocka_unit_test(test_known_order_and_ties),
        cmocka_unit_test(test_chance),
        cmocka_unit_test(test_identity_pools_and_missing_modality),
        cmocka_unit_test(test_pools_follow_the_permutation),
        cmocka_unit_test(test_isomer_groups_by_hand),
        cmocka_unit_test(test_formula_small_cases),
        cmocka_unit_test(test_formula_matches_open_babel_on_real_files),
        cmocka_unit_test(test_isomers_of_a_real_dataset),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_program_end_to_end_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
