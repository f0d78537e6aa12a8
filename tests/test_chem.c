/* Tests for chem.h: OGB features against RDKit (tests/chem_parity.py) on real
 * MoleculeNet / ZINC molecules, atom order, rejects, conformers, images, fingerprints,
 * scaffolds, SD input and allocation failures. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "mmsa/alloc.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"
#include "testutil.h"

static const char *g_argv0 = "build/tests/test_chem";

static mm_chem *make_chem(int conformer, int image)
{
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = conformer;
    o.image = image;
    mm_chem *c = NULL;
    mm_status st = mm_chem_create(&o, &c);
    if (st != MM_OK) mm_error_print(stderr, -1);
    assert_int_equal(st, MM_OK);
    return c;
}

static void featurize_ok(mm_chem *c, const char *smi, mm_mol_feat *f)
{
    mm_status st = mm_chem_featurize_smiles(c, smi, 0, f);
    if (st != MM_OK) {
        mm_error_print(stderr, -1);
        fail_msg("featurising %s failed", smi);
    }
    assert_int_equal(f->reject, MM_CHEM_OK);
}

static void test_init_and_environment(void **state)
{
    (void)state;
    assert_int_equal(mm_chem_init(), MM_OK);
    assert_int_equal(mm_chem_init(), MM_OK); /* idempotent */
    assert_non_null(strstr(mm_chem_version(), "Open Babel 3"));
    assert_non_null(getenv("BABEL_LIBDIR"));
    assert_non_null(getenv("BABEL_DATADIR"));
    char p[1024];
    snprintf(p, sizeof p, "%s/smilesformat.so", getenv("BABEL_LIBDIR"));
    assert_int_equal(access(p, R_OK), 0);
}

/* Ethanol written three ways: one canonical SMILES, atoms in its order, same bytes. */
static void test_canonical_order_and_basic_features(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 0);
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    featurize_ok(c, "OCC", &f);
    assert_string_equal(f.smiles, "CCO");
    assert_int_equal(f.n_atoms, 3);
    assert_int_equal(f.n_bonds, 2);
    /* atom 0: CH3 -> atomic 5, unspecified, degree 4, charge 0 -> 5, H 3, rad 0, SP3, not aromatic/ring */
    const uint8_t c0[9] = {5, 0, 4, 5, 3, 0, 2, 0, 0};
    const uint8_t o2[9] = {7, 0, 2, 5, 1, 0, 2, 0, 0};
    assert_memory_equal(f.atom_feat, c0, 9);
    assert_memory_equal(f.atom_feat + 18, o2, 9);
    assert_int_equal(f.bond_index[0], 0);
    assert_int_equal(f.bond_index[1], 1);
    assert_int_equal(f.bond_index[2], 1);
    assert_int_equal(f.bond_index[3], 2);
    const char *same[] = {"C(O)C", "[CH3][CH2][OH]", "[H]OC([H])([H])C([H])([H])[H]"};
    for (int k = 0; k < 3; k++) {
        featurize_ok(c, same[k], &g);
        assert_string_equal(g.smiles, f.smiles);
        assert_int_equal(g.n_atoms, 3);
        assert_memory_equal(g.atom_feat, f.atom_feat, 27);
        assert_memory_equal(g.bond_feat, f.bond_feat, 6);
        assert_memory_equal(g.fingerprint, f.fingerprint, MM_CHEM_FP_BYTES);
    }
    /* aromatic ring, charge and conjugation: pyridinium N-oxide-like nitro group */
    featurize_ok(c, "[O-][N+](=O)c1ccccc1", &f);
    int n_arom = 0, n_charged = 0;
    for (int i = 0; i < f.n_atoms; i++) {
        n_arom += f.atom_feat[9 * i + 7];
        n_charged += f.atom_feat[9 * i + 3] != 5;
    }
    assert_int_equal(n_arom, 6);
    assert_int_equal(n_charged, 2);
    for (int k = 0; k < f.n_bonds; k++) assert_int_equal(f.bond_feat[3 * k + 2], 1); /* all conjugated */
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
    mm_chem_destroy(&c);
    assert_null(c);
}

static void test_hydrogens_become_counts(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 0);
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    featurize_ok(c, "[2H]C([2H])([2H])O", &f); /* isotopic H too */
    assert_int_equal(f.n_atoms, 2);
    for (int i = 0; i < 2; i++)
        if (f.atom_feat[9 * i] == 5) assert_int_equal(f.atom_feat[9 * i + 4], 3);
    featurize_ok(c, "[Na+].[Cl-]", &f);
    assert_int_equal(f.n_atoms, 2);
    assert_int_equal(f.n_bonds, 0);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
}

static void expect_reject(mm_chem *c, const char *smi, mm_chem_reject why, const char *in_msg)
{
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    assert_int_equal(mm_chem_featurize_smiles(c, smi, 0, &f), MM_ERR_CHEM);
    assert_int_equal(f.reject, why);
    assert_true(strlen(f.reason) > 0);
    assert_int_equal(f.n_atoms, 0);
    if (in_msg && !strstr(mm_error_message(), in_msg))
        fail_msg("message '%s' does not mention '%s'", mm_error_message(), in_msg);
    assert_non_null(strstr(mm_error_message(), mm_chem_reject_name(why)));
    mm_error_clear();
    mm_mol_feat_free(&f);
}

static void test_bad_input_rejects(void **state)
{
    (void)state;
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.max_atoms = 6;
    o.conformer = 0;
    mm_chem *c = NULL;
    assert_int_equal(mm_chem_create(&o, &c), MM_OK);
    expect_reject(c, "", MM_CHEM_EMPTY, NULL);
    expect_reject(c, "   \t", MM_CHEM_EMPTY, NULL);
    expect_reject(c, "C1CC", MM_CHEM_PARSE, "C1CC");
    expect_reject(c, "CC(C", MM_CHEM_PARSE, "CC(C");
    expect_reject(c, "Xx", MM_CHEM_PARSE, "Xx");
    expect_reject(c, "CC O", MM_CHEM_PARSE, "CC O");
    expect_reject(c, "[H][H]", MM_CHEM_NO_HEAVY_ATOM, "[H][H]");
    expect_reject(c, "[H+]", MM_CHEM_NO_HEAVY_ATOM, NULL);
    expect_reject(c, "CCCCCCC", MM_CHEM_TOO_MANY_ATOMS, "7 heavy atoms");
    /* after rejects the featuriser still works and reports nothing stale */
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    featurize_ok(c, "CCCCCC", &f);
    assert_string_equal(f.reason, "");
    assert_int_equal(f.n_atoms, 6);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
    o.image_size = 8;
    assert_int_equal(mm_chem_create(&o, &c), MM_ERR_ARG);
    mm_error_clear();
    assert_null(c);
}

/* ---- parity with RDKit ---------------------------------------------------------------- */

typedef struct {
    char *smiles, *orig, *scaffold;
    int n_atoms, n_bonds;
    uint8_t *af, *bf;
    int32_t *bi;
} parity_mol;

static char *xstrdup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    assert_non_null(d);
    strcpy(d, s);
    return d;
}

static int collect(mm_chem *c, const char *file, const char *col, int stride, int max, parity_mol *out, int n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", tu_shared_dir(), file);
    mm_table *t = NULL;
    mm_table_opts o = {.smiles_col = col};
    assert_int_equal(mm_table_open(path, &o, &t), MM_OK);
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    mm_table_row row;
    bool eof = false;
    int taken = 0;
    while (taken < max) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        if (eof) break;
        if (row.row % stride) continue;
        mm_status st = mm_chem_featurize_smiles(c, row.smiles, (uint64_t)row.row, &f);
        if (st != MM_OK) {
            printf("  featuriser rejected %s row %lld: %s\n", file, (long long)row.row, f.reason);
            mm_error_clear();
            continue;
        }
        parity_mol *m = &out[n + taken++];
        m->smiles = xstrdup(f.smiles);
        m->orig = xstrdup(row.smiles);
        m->scaffold = xstrdup(f.scaffold);
        m->n_atoms = f.n_atoms;
        m->n_bonds = f.n_bonds;
        m->af = malloc((size_t)f.n_atoms * 9 + 1);
        m->bf = malloc((size_t)f.n_bonds * 3 + 1);
        m->bi = malloc((size_t)f.n_bonds * 2 * sizeof(int32_t) + 1);
        memcpy(m->af, f.atom_feat, (size_t)f.n_atoms * 9);
        memcpy(m->bf, f.bond_feat, (size_t)f.n_bonds * 3);
        memcpy(m->bi, f.bond_index, (size_t)f.n_bonds * 2 * sizeof(int32_t));
    }
    mm_mol_feat_free(&f);
    mm_table_close(&t);
    return taken;
}

static const char *parity_script(void)
{
    static char p[1024];
    const char *d = getenv("MMSA_TESTS_DIR");
    if (d) {
        snprintf(p, sizeof p, "%s/chem_parity.py", d);
        return p;
    }
    if (access("tests/chem_parity.py", R_OK) == 0) return "tests/chem_parity.py";
    /* build/tests/test_chem -> tests/chem_parity.py two levels up */
    snprintf(p, sizeof p, "%s", g_argv0);
    char *s = strrchr(p, '/');
    if (s) *s = '\0';
    strncat(p, "/../../tests/chem_parity.py", sizeof p - strlen(p) - 1);
    return p;
}

enum { F_ATOMS = 9, F_BONDS = 3 };
static const char *atom_names[F_ATOMS] = {"atomic number", "chirality", "total degree", "formal charge",
                                          "total H", "radical electrons", "hybridisation", "aromatic",
                                          "in ring"};
static const char *bond_names[F_BONDS] = {"bond type", "bond stereo", "conjugated"};

static void test_parity_with_rdkit(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import rdkit' 2>/dev/null") != 0)
        fail_msg("RDKit is not importable from /usr/bin/python3; HINT: apt-get install -y python3-rdkit (make deps)");
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = 0;
    o.image = 0;
    mm_chem *c = NULL;
    assert_int_equal(mm_chem_create(&o, &c), MM_OK);
    /* MMSA_CHEM_PARITY_FULL=1: every BBBP and Tox21 row and 10000 ZINC rows (minutes) */
    int full = getenv("MMSA_CHEM_PARITY_FULL") && atoi(getenv("MMSA_CHEM_PARITY_FULL"));
    int maxm = full ? 21000 : 1000;
    parity_mol *mols = calloc((size_t)maxm, sizeof *mols);
    int n = 0;
    n += collect(c, "moleculenet/bbbp.csv", NULL, full ? 1 : 8, full ? 3000 : 260, mols, n);
    n += collect(c, "moleculenet/tox21.csv", NULL, full ? 1 : 31, full ? 8000 : 260, mols, n);
    n += collect(c, "pretrain/zinc250k.csv.gz", NULL, full ? 25 : 991, full ? 10000 : 260, mols, n);
    mm_chem_destroy(&c);
    printf("parity set: %d molecules (BBBP, Tox21, ZINC250k)\n", n);
    assert_true(n >= 500);

    char in[512], out[512], cmd[2048];
    snprintf(in, sizeof in, "%s/parity_in.tsv", tu_tmpdir());
    snprintf(out, sizeof out, "%s/parity_out.txt", tu_tmpdir());
    FILE *fi = fopen(in, "w");
    assert_non_null(fi);
    for (int i = 0; i < n; i++) fprintf(fi, "%d\t%s\t%s\t%s\n", i, mols[i].smiles, mols[i].orig, mols[i].scaffold);
    fclose(fi);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s'", parity_script(), in, out);
    assert_int_equal(system(cmd), 0);

    long atom_n[F_ATOMS] = {0}, atom_ok[F_ATOMS] = {0}, bond_n[F_BONDS] = {0}, bond_ok[F_BONDS] = {0};
    long parsed = 0, same_mol = 0, shape_ok = 0, ends_ok = 0, ends_n = 0;
    long chir_n = 0, chir_ok = 0; /* atoms with CW/CCW on either side */
    int shown_atom[F_ATOMS] = {0}, shown_bond[F_BONDS] = {0};
    char **rd_scaf = calloc((size_t)n, sizeof *rd_scaf), **our_scaf = calloc((size_t)n, sizeof *our_scaf);
    int *usable = calloc((size_t)n, sizeof *usable);
    FILE *fo = fopen(out, "r");
    assert_non_null(fo);
    char line[8192];
    while (fgets(line, sizeof line, fo)) {
        int idx, k;
        if (line[0] == 'M') {
            int ok, na, nb, same;
            assert_int_equal(sscanf(line + 2, "%d %d %d %d %d", &idx, &ok, &na, &nb, &same), 5);
            parsed += ok;
            same_mol += same;
            usable[idx] = ok && na == mols[idx].n_atoms && nb == mols[idx].n_bonds;
            shape_ok += usable[idx];
            if (ok && !usable[idx])
                printf("  shape differs: %s (ours %d/%d, RDKit %d/%d)\n", mols[idx].smiles, mols[idx].n_atoms,
                       mols[idx].n_bonds, na, nb);
        } else if (line[0] == 'A') {
            int v[F_ATOMS];
            assert_int_equal(sscanf(line + 2, "%d %d %d %d %d %d %d %d %d %d %d", &idx, &k, &v[0], &v[1], &v[2],
                                    &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]), 11);
            if (!usable[idx]) continue;
            const uint8_t *ours = mols[idx].af + 9 * k;
            for (int j = 0; j < F_ATOMS; j++) {
                atom_n[j]++;
                if (ours[j] == v[j]) atom_ok[j]++;
                else if (shown_atom[j]++ < 3)
                    printf("  %-17s ours %d RDKit %d: atom %d of %s\n", atom_names[j], ours[j], v[j], k,
                           mols[idx].smiles);
            }
            if (ours[1] == 1 || ours[1] == 2 || v[1] == 1 || v[1] == 2) {
                chir_n++;
                chir_ok += ours[1] == v[1];
            }
        } else if (line[0] == 'B') {
            int b, e, v[F_BONDS];
            assert_int_equal(sscanf(line + 2, "%d %d %d %d %d %d %d", &idx, &k, &b, &e, &v[0], &v[1], &v[2]), 7);
            if (!usable[idx]) continue;
            ends_n++;
            if (mols[idx].bi[2 * k] == b && mols[idx].bi[2 * k + 1] == e) ends_ok++;
            else if (ends_n - ends_ok <= 3)
                printf("  bond %d ends ours %d-%d RDKit %d-%d: %s\n", k, mols[idx].bi[2 * k],
                       mols[idx].bi[2 * k + 1], b, e, mols[idx].smiles);
            const uint8_t *ours = mols[idx].bf + 3 * k;
            for (int j = 0; j < F_BONDS; j++) {
                bond_n[j]++;
                if (ours[j] == v[j]) bond_ok[j]++;
                else if (shown_bond[j]++ < 3)
                    printf("  %-17s ours %d RDKit %d: bond %d of %s\n", bond_names[j], ours[j], v[j], k,
                           mols[idx].smiles);
            }
        } else if (line[0] == 'S') {
            char a[4096], b[4096];
            assert_int_equal(sscanf(line + 2, "%d %4095s %4095s", &idx, a, b), 3);
            rd_scaf[idx] = xstrdup(a);
            our_scaf[idx] = xstrdup(b);
        }
    }
    fclose(fo);

    /* scaffolds: same string after RDKit canonicalisation, and same grouping */
    long scaf_n = 0, scaf_same = 0, group_same = 0;
    for (int i = 0; i < n; i++) {
        if (!rd_scaf[i]) continue;
        scaf_n++;
        scaf_same += strcmp(rd_scaf[i], our_scaf[i]) == 0;
        int agree = 1;
        for (int j = 0; j < n && agree; j++) {
            if (!rd_scaf[j]) continue;
            agree = (strcmp(rd_scaf[i], rd_scaf[j]) == 0) == (strcmp(our_scaf[i], our_scaf[j]) == 0);
        }
        group_same += agree;
        if (strcmp(rd_scaf[i], our_scaf[i]) != 0 && scaf_n - scaf_same <= 3)
            printf("  scaffold differs: %s -> ours %s RDKit %s\n", mols[i].orig, our_scaf[i], rd_scaf[i]);
    }

    printf("\n%-28s %9s %9s %8s\n", "feature (vs RDKit)", "compared", "agree", "rate");
    printf("%-28s %9d %9ld %7.2f%%\n", "molecules parsed by RDKit", n, parsed, 100.0 * parsed / n);
    printf("%-28s %9d %9ld %7.2f%%\n", "same molecule as input", n, same_mol, 100.0 * same_mol / n);
    printf("%-28s %9d %9ld %7.2f%%\n", "same atom/bond counts", n, shape_ok, 100.0 * shape_ok / n);
    printf("%-28s %9ld %9ld %7.2f%%\n", "bond order and ends", ends_n, ends_ok, 100.0 * ends_ok / ends_n);
    for (int j = 0; j < F_ATOMS; j++)
        printf("%-28s %9ld %9ld %7.2f%%\n", atom_names[j], atom_n[j], atom_ok[j], 100.0 * atom_ok[j] / atom_n[j]);
    printf("%-28s %9ld %9ld %7.2f%%\n", "  of which CW/CCW atoms", chir_n, chir_ok,
           chir_n ? 100.0 * chir_ok / chir_n : 100.0);
    for (int j = 0; j < F_BONDS; j++)
        printf("%-28s %9ld %9ld %7.2f%%\n", bond_names[j], bond_n[j], bond_ok[j], 100.0 * bond_ok[j] / bond_n[j]);
    printf("%-28s %9ld %9ld %7.2f%%\n", "scaffold string", scaf_n, scaf_same, 100.0 * scaf_same / scaf_n);
    printf("%-28s %9ld %9ld %7.2f%%\n\n", "scaffold grouping", scaf_n, group_same, 100.0 * group_same / scaf_n);

    assert_true(parsed >= n * 99 / 100);
    assert_true(shape_ok >= n * 99 / 100);
    assert_true(ends_ok == ends_n);
    const int strict[] = {0, 2, 3, 4, 7, 8};
    for (size_t s = 0; s < sizeof strict / sizeof *strict; s++)
        assert_true(atom_ok[strict[s]] >= atom_n[strict[s]] * 0.99);
    assert_true(bond_ok[0] >= bond_n[0] * 0.99);
    assert_true(bond_ok[2] >= bond_n[2] * 0.99);
    assert_true(chir_ok >= chir_n * 0.95);
    assert_true(scaf_n >= 200);
    assert_true(group_same >= scaf_n * 0.98);

    for (int i = 0; i < n; i++) {
        free(mols[i].smiles);
        free(mols[i].orig);
        free(mols[i].scaffold);
        free(mols[i].af);
        free(mols[i].bf);
        free(mols[i].bi);
        free(rd_scaf[i]);
        free(our_scaf[i]);
    }
    free(mols);
    free(rd_scaf);
    free(our_scaf);
    free(usable);
}

int main(int argc, char **argv)
{
    (void)argc;
    g_argv0 = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_environment),
        cmocka_unit_test(test_canonical_order_and_basic_features),
        cmocka_unit_test(test_hydrogens_become_counts),
        cmocka_unit_test(test_bad_input_rejects),
        cmocka_unit_test(test_parity_with_rdkit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
