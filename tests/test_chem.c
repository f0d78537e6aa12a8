/* Tests for chem.h: OGB features against RDKit (tests/chem_parity.py) on real
 * MoleculeNet / ZINC molecules, atom order, rejects, conformers, images, fingerprints,
 * scaffolds, SD input and allocation failures. */
#include <errno.h>
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

static void featurize_seed(mm_chem *c, const char *smi, uint64_t seed, mm_mol_feat *f)
{
    mm_status st = mm_chem_featurize_smiles(c, smi, seed, f);
    if (st != MM_OK) {
        mm_error_print(stderr, -1);
        fail_msg("featurising %s failed", smi);
    }
    assert_int_equal(f->reject, MM_CHEM_OK);
}

static void featurize_ok(mm_chem *c, const char *smi, mm_mol_feat *f) { featurize_seed(c, smi, 0, f); }

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
    /* a hydrogen count of many digits: our SMILES scan saturates it instead of
     * overflowing an int (found by fuzz_smiles; UBSan aborted here under make asan) */
    expect_reject(c, "[NH4444444444+]", MM_CHEM_PARSE, "[NH4444444444+]");
    expect_reject(c, "C[NH4444444444444444444444444+]C", MM_CHEM_PARSE, NULL);
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

    char in[512], out[512], cmd[4096];
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


/* ---- conformers ------------------------------------------------------------------------ */

static double dist3(const float *x, int i, int j)
{
    double d = 0;
    for (int k = 0; k < 3; k++) d += (x[3 * i + k] - x[3 * j + k]) * (double)(x[3 * i + k] - x[3 * j + k]);
    return sqrt(d);
}

/* Signed volume at the chiral atom of f (its three lowest-numbered neighbours). */
static double chiral_volume(const mm_mol_feat *f)
{
    int c = -1;
    for (int i = 0; i < f->n_atoms; i++)
        if (f->atom_feat[9 * i + 1] == 1 || f->atom_feat[9 * i + 1] == 2) c = i;
    assert_true(c >= 0);
    int nb[4], m = 0;
    for (int k = 0; k < f->n_bonds && m < 4; k++) {
        if (f->bond_index[2 * k] == c) nb[m++] = f->bond_index[2 * k + 1];
        else if (f->bond_index[2 * k + 1] == c) nb[m++] = f->bond_index[2 * k];
    }
    assert_true(m >= 3);
    double v[3][3];
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < 3; k++) v[a][k] = f->xyz[3 * nb[a] + k] - f->xyz[3 * c + k];
    return v[0][0] * (v[1][1] * v[2][2] - v[1][2] * v[2][1]) - v[0][1] * (v[1][0] * v[2][2] - v[1][2] * v[2][0]) +
           v[0][2] * (v[1][0] * v[2][1] - v[1][1] * v[2][0]);
}

/* ff_steps 0: the builder's geometry, without setting up a force field (its atom typing
 * cost more than the build): a plausible conformer, reproducible, no UFF flag, and not the
 * one the default budget relaxes. */
static void test_conformer_builder_only(void **state)
{
    (void)state;
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.image = 0;
    o.ff_steps = 0;
    mm_chem *c0 = NULL, *c50 = make_chem(1, 0);
    assert_int_equal(mm_chem_create(&o, &c0), MM_OK);
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    const char *smi[2] = {"CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1", "OB(O)c1ccccc1"};
    for (int k = 0; k < 2; k++) {
        featurize_seed(c0, smi[k], 11, &f);
        assert_int_equal(f.conf_ok, 1);
        assert_int_equal(f.conf_uff, 0);
        for (int b = 0; b < f.n_bonds; b++) {
            double d = dist3(f.xyz, f.bond_index[2 * b], f.bond_index[2 * b + 1]);
            if (d < 1.0 || d > 2.6) fail_msg("%s: bond %d is %.2f A long", smi[k], b, d);
        }
        featurize_seed(c0, smi[k], 11, &g);
        assert_memory_equal(g.xyz, f.xyz, (size_t)f.n_atoms * 3 * sizeof(float));
        featurize_seed(c50, smi[k], 11, &g);
        assert_int_equal(g.n_atoms, f.n_atoms);
        assert_memory_not_equal(g.xyz, f.xyz, (size_t)f.n_atoms * 3 * sizeof(float));
    }
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
    mm_chem_destroy(&c0);
    mm_chem_destroy(&c50);
}

static void test_conformer(void **state)
{
    (void)state;
    mm_chem *c = make_chem(1, 0);
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    struct {
        const char *smi;
        int uff;
    } cases[] = {{"CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1", 0}, /* ZINC250k row 0: MMFF94 */
                 {"OB(O)c1ccccc1", 1},                          /* boron: no MMFF94 type, UFF */
                 {"Cl[Pt](Cl)([NH3])[NH3]", 1},
                 {"[Na+].[Cl-]", 0}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        featurize_seed(c, cases[k].smi, 11, &f);
        assert_int_equal(f.conf_ok, 1);
        assert_int_equal(f.conf_from_input, 0);
        assert_int_equal(f.conf_uff, cases[k].uff);
        for (int b = 0; b < f.n_bonds; b++) {
            double d = dist3(f.xyz, f.bond_index[2 * b], f.bond_index[2 * b + 1]);
            if (d < 1.0 || d > 2.6) fail_msg("%s: bond %d is %.2f A long", cases[k].smi, b, d);
        }
        /* non-bonded heavy atoms are not on top of each other */
        for (int i = 0; i < f.n_atoms; i++)
            for (int j = i + 1; j < f.n_atoms; j++) assert_true(dist3(f.xyz, i, j) > 0.9);
        /* reproducible: same seed, other molecules in between */
        featurize_seed(c, "CCCCO", 11, &g);
        featurize_seed(c, cases[k].smi, 11, &g);
        assert_int_equal(g.n_atoms, f.n_atoms);
        assert_memory_equal(g.xyz, f.xyz, (size_t)f.n_atoms * 3 * sizeof(float));
    }
    /* the conformer keeps the configuration of the SMILES: enantiomers mirror */
    featurize_seed(c, "C[C@H](N)C(=O)O", 3, &f);
    featurize_seed(c, "C[C@@H](N)C(=O)O", 3, &g);
    double vf = chiral_volume(&f), vg = chiral_volume(&g);
    assert_true(fabs(vf) > 0.5 && fabs(vg) > 0.5);
    assert_true(vf * vg < 0);
    mm_chem_destroy(&c);

    c = make_chem(0, 0);
    featurize_seed(c, "CCO", 1, &f);
    assert_int_equal(f.conf_ok, 0);
    for (int i = 0; i < 3 * f.n_atoms; i++) assert_float_equal(f.xyz[i], 0, 0);
    mm_chem_destroy(&c);
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
}

/* ---- images --------------------------------------------------------------------------- */

static int non_white(const mm_mol_feat *f)
{
    int n = 0, plane = f->image_size * f->image_size;
    for (int p = 0; p < plane; p++)
        n += f->image[p] < 250 || f->image[plane + p] < 250 || f->image[2 * plane + p] < 250;
    return n;
}

static void test_image(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 1);
    mm_mol_feat a, b, a2;
    mm_mol_feat_init(&a);
    mm_mol_feat_init(&b);
    mm_mol_feat_init(&a2);
    featurize_ok(c, "CC(=O)Oc1ccccc1C(=O)O", &a);
    featurize_ok(c, "Cn1cnc2c1c(=O)n(C)c(=O)n2C", &b);
    assert_int_equal(a.image_size, 64);
    assert_true(non_white(&a) > 100);
    assert_true(non_white(&b) > 100);
    assert_int_equal(a.image[0], 255); /* white background in the corner, all channels */
    assert_int_equal(a.image[64 * 64], 255);
    assert_int_equal(a.image[2 * 64 * 64], 255);
    assert_memory_not_equal(a.image, b.image, 3 * 64 * 64);
    /* colour: the red oxygens make R differ from B somewhere */
    int coloured = 0;
    for (int p = 0; p < 64 * 64; p++) coloured += abs((int)a.image[p] - (int)a.image[2 * 64 * 64 + p]) > 40;
    assert_true(coloured > 5);
    featurize_ok(c, "CCN", &a2);
    featurize_ok(c, "OC(=O)c1ccccc1OC(C)=O", &a2); /* aspirin written differently */
    assert_memory_equal(a2.image, a.image, 3 * 64 * 64);

    /* bridged rings go through Open Babel's own layout */
    long fb = mm_chem_layout_fallbacks(c);
    featurize_ok(c, "C1CC2CCC1C2", &a2);
    assert_int_equal(mm_chem_layout_fallbacks(c), fb + 1);
    assert_true(non_white(&a2) > 50);

    /* a large ring fused to others, too large for Open Babel's layout (whose overlap
     * search ran for minutes on this HIV molecule): stress layout, quickly */
    fb = mm_chem_layout_fallbacks(c);
    time_t t0 = time(NULL);
    featurize_ok(c,
                 "O=S(=O)(O)OCC1OC2OC3C(COS(=O)(=O)O)OC(OC4C(COS(=O)(=O)O)OC(OC5C(COS(=O)(=O)O)OC(OC6C(COS(=O)"
                 "(=O)O)OC(OC7C(COS(=O)(=O)O)OC(OC8C(COS(=O)(=O)O)OC(OC1C(OS(=O)(=O)O)C2OS(=O)(=O)O)C(OS(=O)(=O)"
                 "O)C8OS(=O)(=O)O)C(OS(=O)(=O)O)C7OS(=O)(=O)O)C(OS(=O)(=O)O)C6OS(=O)(=O)O)C(OS(=O)(=O)O)C5OS(=O)"
                 "(=O)O)C(OS(=O)(=O)O)C4OS(=O)(=O)O)C(OS(=O)(=O)O)C3OS(=O)(=O)O",
                 &a2);
    assert_true(time(NULL) - t0 < 10);
    assert_int_equal(mm_chem_layout_fallbacks(c), fb + 1);
    assert_true(non_white(&a2) > 50);

    /* the fast layout handles nearly all drug-like molecules */
    char path[1024];
    snprintf(path, sizeof path, "%s/data/pretrain/zinc250k.csv.gz", tu_shared_dir());
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(path, NULL, &t), MM_OK);
    mm_table_row row;
    bool eof;
    fb = mm_chem_layout_fallbacks(c);
    int n = 0;
    const char *png_dir = getenv("MMSA_CHEM_PNG_DIR"); /* debug: pictures to look at */
    while (n < 200) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        assert_false(eof);
        featurize_ok(c, row.smiles, &a2);
        assert_true(non_white(&a2) > 50);
        if (png_dir && n < 16) {
            char p[1024];
            snprintf(p, sizeof p, "%s/zinc_%03d.png", png_dir, n);
            assert_int_equal(mm_chem_write_png(a2.image, 64, 64, p), MM_OK);
        }
        n++;
    }
    mm_table_close(&t);
    long used = mm_chem_layout_fallbacks(c) - fb;
    printf("fallback layout (Open Babel's mcdl or stress) for %ld of %d ZINC molecules\n", used, n);
    assert_true(used < n / 10);

    /* PNG output */
    snprintf(path, sizeof path, "%s/aspirin.png", tu_tmpdir());
    assert_int_equal(mm_chem_write_png(a.image, 64, 64, path), MM_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char sig[8];
    assert_int_equal(fread(sig, 1, 8, fp), 8);
    fclose(fp);
    assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(mm_chem_write_png(a.image, 64, 64, "/nonexistent/dir/x.png"), MM_ERR_IO);
    mm_error_clear();
    mm_chem_destroy(&c);

    /* configurable size */
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = 0;
    o.image_size = 32;
    assert_int_equal(mm_chem_create(&o, &c), MM_OK);
    featurize_ok(c, "c1ccccc1", &b);
    assert_int_equal(b.image_size, 32);
    assert_true(non_white(&b) > 20);
    mm_chem_destroy(&c);
    mm_mol_feat_free(&a);
    mm_mol_feat_free(&b);
    mm_mol_feat_free(&a2);
}

/* ---- fingerprints --------------------------------------------------------------------- */

static void test_fingerprint_packing(void **state)
{
    (void)state;
    uint32_t words[64] = {0};
    const int bits[] = {0, 9, 31, 32, 1000, 2047};
    for (size_t k = 0; k < sizeof bits / sizeof *bits; k++) words[bits[k] / 32] |= 1u << (bits[k] % 32);
    uint8_t out[256];
    mm_chem_fp_pack_words(words, 2048, out);
    assert_int_equal(out[0], 0x80);        /* bit 0: byte 0, mask 0x80 */
    assert_int_equal(out[1], 0x40);        /* bit 9: byte 1, mask 0x40 */
    assert_int_equal(out[3], 0x01 | 0x00); /* bit 31: byte 3, mask 0x01 */
    assert_int_equal(out[4], 0x80);        /* bit 32 */
    assert_int_equal(out[125], 0x80);      /* bit 1000 = 125 * 8 */
    assert_int_equal(out[255], 0x01);      /* bit 2047 */
    int set = 0;
    for (int j = 0; j < 2048; j++) {
        int want = 0;
        for (size_t k = 0; k < sizeof bits / sizeof *bits; k++) want |= bits[k] == j;
        assert_int_equal(mm_chem_fp_bit(out, j), want);
        set += want;
    }
    assert_int_equal(set, 6);
}

static void test_fingerprint_similarity(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 0);
    const char *smi[] = {"CCc1ccccc1", "CCCc1ccccc1", "OC1CCCCC1", "CC(=O)Oc1ccccc1C(=O)O", "OC(=O)c1ccccc1O",
                         "Cn1cnc2c1c(=O)n(C)c(=O)n2C"};
    uint8_t fp[6][MM_CHEM_FP_BYTES];
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    for (int i = 0; i < 6; i++) {
        featurize_ok(c, smi[i], &f);
        memcpy(fp[i], f.fingerprint, MM_CHEM_FP_BYTES);
        int set = 0;
        for (int j = 0; j < MM_CHEM_FP_BITS; j++) set += mm_chem_fp_bit(fp[i], j);
        assert_true(set >= 3);
    }
    double ethyl_propyl = mm_chem_fp_tanimoto(fp[0], fp[1]), ethyl_cyclohexanol = mm_chem_fp_tanimoto(fp[0], fp[2]);
    double aspirin_salicylic = mm_chem_fp_tanimoto(fp[3], fp[4]), aspirin_caffeine = mm_chem_fp_tanimoto(fp[3], fp[5]);
    printf("Tanimoto: ethyl/propylbenzene %.2f, ethylbenzene/cyclohexanol %.2f, aspirin/salicylic acid %.2f, "
           "aspirin/caffeine %.2f\n", ethyl_propyl, ethyl_cyclohexanol, aspirin_salicylic, aspirin_caffeine);
    assert_true(ethyl_propyl > ethyl_cyclohexanol + 0.2);
    assert_true(aspirin_salicylic > aspirin_caffeine + 0.2);
    assert_float_equal(mm_chem_fp_tanimoto(fp[3], fp[3]), 1.0, 0);
    /* input order does not matter */
    featurize_ok(c, "c1ccccc1CC", &f);
    assert_memory_equal(f.fingerprint, fp[0], MM_CHEM_FP_BYTES);
    mm_chem_destroy(&c);

    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = o.image = o.fingerprint = 0;
    assert_int_equal(mm_chem_create(&o, &c), MM_OK);
    featurize_ok(c, "CCc1ccccc1", &f);
    for (int i = 0; i < MM_CHEM_FP_BYTES; i++) assert_int_equal(f.fingerprint[i], 0);
    mm_chem_destroy(&c);
    mm_mol_feat_free(&f);
}

/* ---- scaffolds -------------------------------------------------------------------------- */

static void test_scaffold_examples(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 0);
    /* input -> RDKit's MurckoScaffoldSmiles, written as any SMILES */
    const char *cases[][2] = {
        {"CC(=O)C1CCCCC1", "C1CCCCC1"},      /* side chain removed */
        {"O=C1CCCCC1", "O=C1CCCCC1"},        /* exocyclic double bond kept */
        {"CC=C1CCCC1", "C=C1CCCC1"},         /* ... but not what hangs from it */
        {"Cn1ccnc1", "c1c[nH]cn1"},          /* aromatic N gets its H back */
        {"OC(c1ccccc1)c1ccccc1", "c1ccc(Cc2ccccc2)cc1"}, /* linker kept, OH removed */
        {"C[C@H]1CCCC[C@@H]1N", "C1CCCCC1"}, /* no stereo in scaffolds */
        {"CCCC", ""},                         /* acyclic */
    };
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        featurize_ok(c, cases[k][0], &f);
        if (!cases[k][1][0]) {
            assert_string_equal(f.scaffold, "");
            continue;
        }
        featurize_ok(c, cases[k][1], &g);
        if (strcmp(f.scaffold, g.smiles) != 0)
            fail_msg("scaffold of %s is %s, expected %s", cases[k][0], f.scaffold, g.smiles);
    }
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
    mm_chem_destroy(&c);
}

/* Every row of Tox21 and HIV whose pruning queue overran mm_cg_murcko's n + 1 slots
 * (several acyclic fragments of two or more atoms: salts, cyanide complexes), and the
 * issue's examples, against RDKit's scaffold. The last one has a ring: before the fix
 * its overflow wrote atom indices into the `gone` flags and lost the benzene; the salts
 * crashed mmsa_prep depending on the arena's layout (`make asan` sees them through the
 * arena's red zones). */
static void test_scaffold_many_fragments(void **state)
{
    (void)state;
    FILE *in = fopen("tests/data/murcko_overflow.tsv", "r");
    if (!in) fail_msg("tests/data/murcko_overflow.tsv: %s (run from the repository root)", strerror(errno));
    mm_chem *c = make_chem(0, 0);
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    char line[4096];
    int n = 0, with_ring = 0;
    while (fgets(line, sizeof line, in)) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\r\n")] = 0;
        char *src = strtok(line, "\t"), *row = strtok(NULL, "\t"), *smi = strtok(NULL, "\t");
        char *want = strtok(NULL, "\t");
        assert_non_null(src);
        assert_non_null(row);
        assert_non_null(smi);
        featurize_ok(c, smi, &f);
        n++;
        if (!want) {
            if (f.scaffold[0]) fail_msg("%s row %s: scaffold of acyclic %s is %s", src, row, smi, f.scaffold);
            continue;
        }
        with_ring++;
        featurize_ok(c, want, &g);
        if (strcmp(f.scaffold, g.smiles) != 0)
            fail_msg("%s row %s: scaffold of %s is '%s', RDKit %s", src, row, smi, f.scaffold, g.smiles);
    }
    fclose(in);
    assert_int_equal(n, 38 + 70 + 5);
    assert_true(with_ring > 0);
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
    mm_chem_destroy(&c);
}

/* ---- SD records ------------------------------------------------------------------------- */

static int cmp_rows(const void *a, const void *b) { return memcmp(a, b, 8); }

/* Same atoms and bonds, ignoring chirality and bond stereo and the order. */
static int same_graph(const mm_mol_feat *a, const mm_mol_feat *b)
{
    if (a->n_atoms != b->n_atoms || a->n_bonds != b->n_bonds) return 0;
    int n = a->n_atoms;
    uint8_t *ra = malloc((size_t)n * 8 + 1), *rb = malloc((size_t)n * 8 + 1);
    for (int i = 0; i < n; i++)
        for (int j = 0, k = 0; j < 9; j++) {
            if (j == 1) continue;
            ra[8 * i + k] = a->atom_feat[9 * i + j];
            rb[8 * i + k] = b->atom_feat[9 * i + j];
            k++;
        }
    qsort(ra, (size_t)n, 8, cmp_rows);
    qsort(rb, (size_t)n, 8, cmp_rows);
    int same = memcmp(ra, rb, (size_t)n * 8) == 0;
    free(ra);
    free(rb);
    int ta[5] = {0}, tb[5] = {0};
    for (int k = 0; k < a->n_bonds; k++) {
        ta[a->bond_feat[3 * k]]++;
        tb[b->bond_feat[3 * k]]++;
    }
    return same && memcmp(ta, tb, sizeof ta) == 0;
}

/* Atomic number of an element symbol of the molfiles used here (0: other). */
static int z_of(const char *sym)
{
    static const char *const s[] = {"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I", "B", "Si", "Se"};
    static const int z[] = {1, 6, 7, 8, 9, 15, 16, 17, 35, 53, 5, 14, 34};
    for (size_t k = 0; k < sizeof z / sizeof z[0]; k++)
        if (!strcmp(sym, s[k])) return z[k];
    return 0;
}

/* input_atom of records of both CASCADE files against the records' own V2000 blocks,
 * read here: every heavy atom has its own atom of the same element, every hydrogen its
 * heavy neighbour's, every bond between heavy atoms is a bond of the graph, and a record
 * whose 3D coordinates were kept puts each atom where the record has it. */
static void test_sdf_input_atoms(void **state)
{
    (void)state;
    mm_chem *c = make_chem(0, 0);
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    static const char *const files[] = {"cascade_Exp5K_DFT.sdf.gz", "cascade_NMR8K.sdf.gz"};
    int n_h = 0, n_xyz = 0;
    for (int fi = 0; fi < 2; fi++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/data/spectra_3d/%s", tu_shared_dir(), files[fi]);
        mm_table *t = NULL;
        assert_int_equal(mm_table_open(path, NULL, &t), MM_OK);
        for (int rec = 0; rec < 60; rec++) {
            mm_table_row row;
            bool eof;
            assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
            assert_false(eof);
            assert_int_equal(mm_chem_featurize_sdf(c, row.record, 0, &f), MM_OK);
            /* the V2000 counts line is the fourth line */
            const char *l = row.record;
            for (int k = 0; k < 3; k++) l = strchr(l, '\n') + 1;
            int na = atoi((char[4]){l[0], l[1], l[2], 0}), nb = atoi((char[4]){l[3], l[4], l[5], 0});
            assert_int_equal(f.n_input_atoms, na);
            int *z = calloc((size_t)na, sizeof(int)), *seen = calloc((size_t)f.n_atoms, sizeof(int));
            float *xyz = calloc((size_t)na * 3, sizeof(float));
            int heavy = 0;
            for (int k = 0; k < na; k++) {
                l = strchr(l, '\n') + 1;
                char sym[4] = {0};
                sscanf(l + 31, "%3s", sym);
                z[k] = z_of(sym);
                sscanf(l, "%f %f %f", &xyz[3 * k], &xyz[3 * k + 1], &xyz[3 * k + 2]);
                assert_int_equal(f.input_is_h[k], z[k] == 1);
                if (z[k] == 1) continue;
                int32_t a = f.input_atom[k];
                assert_true(a >= 0 && a < f.n_atoms);
                assert_int_equal(seen[a]++, 0);
                if (z[k]) assert_int_equal(f.atom_feat[9 * a] + 1, z[k]);
                if (f.conf_from_input) {
                    for (int d = 0; d < 3; d++) assert_true(fabsf(f.xyz[3 * a + d] - xyz[3 * k + d]) < 1e-3f);
                    n_xyz++;
                }
                heavy++;
            }
            assert_int_equal(heavy, f.n_atoms);
            for (int b = 0; b < nb; b++) {
                l = strchr(l, '\n') + 1;
                int u = atoi((char[4]){l[0], l[1], l[2], 0}) - 1, v = atoi((char[4]){l[3], l[4], l[5], 0}) - 1;
                assert_true(u >= 0 && u < na && v >= 0 && v < na);
                if (z[u] == 1 || z[v] == 1) { /* a hydrogen goes with its heavy neighbour */
                    int h = z[u] == 1 ? u : v, o = h == u ? v : u;
                    if (z[o] != 1) assert_int_equal(f.input_atom[h], f.input_atom[o]);
                    n_h++;
                    continue;
                }
                int32_t a = f.input_atom[u], e = f.input_atom[v], found = 0;
                for (int k = 0; k < f.n_bonds; k++)
                    found |= (f.bond_index[2 * k] == a && f.bond_index[2 * k + 1] == e) ||
                             (f.bond_index[2 * k] == e && f.bond_index[2 * k + 1] == a);
                assert_true(found);
            }
            free(z);
            free(seen);
            free(xyz);
        }
        mm_table_close(&t);
    }
    printf("input atoms of 120 CASCADE records: %d hydrogens went to their heavy neighbour, %d heavy atoms sit at "
           "their record's coordinates\n", n_h, n_xyz);
    assert_true(n_h > 100 && n_xyz > 100);
    /* SMILES input has none */
    featurize_ok(c, "CCO", &f);
    assert_int_equal(f.n_input_atoms, 0);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
}

static void test_sdf_records(void **state)
{
    (void)state;
    mm_chem *c = make_chem(1, 0);
    mm_mol_feat f, g;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&g);
    char path[1024];
    snprintf(path, sizeof path, "%s/data/spectra_3d/cascade_Exp5K_DFT.sdf.gz", tu_shared_dir());
    mm_table *t = NULL;
    assert_int_equal(mm_table_open(path, NULL, &t), MM_OK);
    mm_table_row row;
    bool eof;
    int n = 0, same = 0, same_string = 0;
    while (n < 40) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        assert_false(eof);
        mm_status st = mm_chem_featurize_sdf(c, row.record, (uint64_t)row.row, &f);
        if (st != MM_OK) mm_error_print(stderr, -1);
        assert_int_equal(st, MM_OK);
        assert_int_equal(f.conf_ok, 1);
        assert_int_equal(f.conf_from_input, 1); /* DFT coordinates kept */
        for (int b = 0; b < f.n_bonds; b++) {
            double d = dist3(f.xyz, f.bond_index[2 * b], f.bond_index[2 * b + 1]);
            assert_true(d > 1.0 && d < 2.2);
        }
        assert_string_equal(row.item_names[0], "SMILES");
        featurize_ok(c, row.item_values[0], &g);
        /* the tags are written without stereo, the 3D structures have it: compare the
         * graphs without chirality and bond stereo, order-free */
        same_string += strcmp(f.smiles, g.smiles) == 0;
        same += same_graph(&f, &g);
        if (!same_graph(&f, &g)) printf("  3D %s vs tag %s\n", f.smiles, g.smiles);
        if (n == 0) {
            /* first record: 21 atoms, 2 of them H; the first heavy atom's coordinates */
            assert_int_equal(f.n_atoms, 19);
            int found = 0;
            for (int i = 0; i < f.n_atoms; i++)
                found |= fabsf(f.xyz[3 * i] + 3.3387f) < 1e-4f && fabsf(f.xyz[3 * i + 1]) < 1e-4f &&
                         fabsf(f.xyz[3 * i + 2] - 0.15f) < 1e-4f;
            assert_true(found);
        }
        n++;
    }
    mm_table_close(&t);
    printf("CASCADE: %d of %d records give the molecule of their SMILES tag (%d the same string; the others "
           "gain stereo from their 3D coordinates)\n", same, n, same_string);
    assert_true(same >= n * 95 / 100);

    /* a 2D record gets a built conformer */
    snprintf(path, sizeof path, "%s/data/spectra_3d/cascade_NMR8K.sdf.gz", tu_shared_dir());
    assert_int_equal(mm_table_open(path, NULL, &t), MM_OK);
    assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
    assert_int_equal(mm_chem_featurize_sdf(c, row.record, 0, &f), MM_OK);
    assert_int_equal(f.conf_from_input, 0);
    assert_int_equal(f.conf_ok, 1);
    mm_table_close(&t);

    assert_int_equal(mm_chem_featurize_sdf(c, "  \n", 0, &f), MM_ERR_CHEM);
    assert_int_equal(f.reject, MM_CHEM_EMPTY);
    mm_error_clear();
    assert_int_equal(mm_chem_featurize_sdf(c, "not a molfile\nat all\n", 0, &f), MM_ERR_CHEM);
    assert_true(f.reject == MM_CHEM_PARSE || f.reject == MM_CHEM_NO_HEAVY_ATOM);
    mm_error_clear();
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&g);
    mm_chem_destroy(&c);
}

/* ---- allocation failures ---------------------------------------------------------------- */

static void test_allocation_failures(void **state)
{
    (void)state;
    assert_int_equal(mm_chem_init(), MM_OK);
    size_t base = mm_alloc_live_bytes();
    int failures = 0;
    for (int k = 1; k < 60; k++) {
        mm_chem_opts o;
        mm_chem_opts_default(&o);
        o.conformer = 0;
        mm_chem *c = NULL;
        mm_mol_feat f;
        mm_mol_feat_init(&f);
        tu_fail_alloc_after(k);
        mm_status st = mm_chem_create(&o, &c);
        if (st == MM_OK) st = mm_chem_featurize_smiles(c, "CC(=O)Oc1ccccc1C(=O)O", 0, &f);
        if (st == MM_OK) st = mm_chem_featurize_smiles(c, "C1CCC2(CC1)OCCO2", 0, &f);
        tu_fail_alloc_after(0);
        if (st == MM_ERR_NOMEM) failures++;
        else assert_int_equal(st, MM_OK);
        mm_error_clear();
        mm_mol_feat_free(&f);
        mm_chem_destroy(&c);
        assert_int_equal(mm_alloc_live_bytes(), base);
    }
    assert_true(failures > 5);
}

/* ---- reproducibility: a molecule's features do not depend on what came before -------- */

/* The SMILES of the given 0-based data rows of a shared CSV (file relative to data/), in
 * the order asked: out[k] is row rows[k] (free each). */
static void read_rows(const char *file, const int *rows, int n, char **out)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data/%s", tu_shared_dir(), file);
    mm_table *t = NULL;
    if (mm_table_open(path, NULL, &t) != MM_OK) {
        mm_error_print(stderr, -1);
        fail_msg("cannot read %s (set MMSA_SHARED to the shared folder)", path);
    }
    for (int k = 0; k < n; k++) out[k] = NULL;
    mm_table_row row;
    bool eof = false;
    for (;;) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        if (eof) break;
        for (int k = 0; k < n; k++)
            if (row.row == rows[k]) out[k] = xstrdup(row.smiles);
    }
    mm_table_close(&t);
    for (int k = 0; k < n; k++)
        if (!out[k]) fail_msg("%s has no row %d", path, rows[k]);
}

/* BBBP's fused polycyclics (steroids, tetracyclines) whose depiction depended on what the
 * process had drawn before: Open Babel's SMILES reader adds the stereocentres to the
 * molecule in heap-address order, and the depiction's choice of wedges followed that
 * order (53 of 2,038 BBBP images differed between 1 and 2 ranks). And a charged one (row
 * 295, pyridostigmine bromide), whose charges were drawn at the font size the previous
 * molecule left in the painter. Each is drawn by a fresh featuriser, then again by one
 * that drew 120 other BBBP molecules first, and twice more in reverse order: the same
 * bytes every time. */
static void test_image_independent_of_history(void **state)
{
    (void)state;
    enum { N_POLY = 11, N_OTHER = 120 };
    const int poly_rows[N_POLY] = {155, 205, 260, 321, 348, 361, 372, 394, 412, 957, 295};
    int other_rows[N_OTHER];
    for (int k = 0; k < N_OTHER; k++) other_rows[k] = 1000 + k;
    char *poly[N_POLY], *other[N_OTHER];
    read_rows("moleculenet/bbbp.csv", poly_rows, N_POLY, poly);
    read_rows("moleculenet/bbbp.csv", other_rows, N_OTHER, other);
    const size_t bytes = 3 * 64 * 64;
    uint8_t *alone = malloc(N_POLY * bytes);
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    for (int k = 0; k < N_POLY; k++) {
        mm_chem *c = make_chem(0, 1);
        featurize_ok(c, poly[k], &f);
        memcpy(alone + k * bytes, f.image, bytes);
        mm_chem_destroy(&c);
    }
    mm_chem *c = make_chem(0, 1);
    for (int k = 0; k < N_OTHER; k++) {
        mm_status st = mm_chem_featurize_smiles(c, other[k], (uint64_t)other_rows[k], &f);
        if (st != MM_OK) mm_error_clear(); /* a reject is history too */
    }
    int differ = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int j = 0; j < N_POLY; j++) {
            int k = pass == 0 ? j : N_POLY - 1 - j;
            featurize_ok(c, poly[k], &f);
            if (memcmp(f.image, alone + k * bytes, bytes)) {
                printf("BBBP row %d (%s): image differs from the one drawn alone (pass %d)\n", poly_rows[k],
                       poly[k], pass);
                differ++;
            }
        }
    mm_chem_destroy(&c);
    mm_mol_feat_free(&f);
    free(alone);
    for (int k = 0; k < N_POLY; k++) free(poly[k]);
    for (int k = 0; k < N_OTHER; k++) free(other[k]);
    assert_int_equal(differ, 0);
}

/* The same for conformers: molecules of configs/data/demo.csv whose 3D coordinates moved
 * by up to 9.8 A from one mmsa_prep run to the next (Open Babel's builder corrects the
 * stereocentres of a conformer in the molecule's stereo order, which was heap-address
 * order), built by a fresh featuriser and after others: the same coordinates. */
static void test_conformer_independent_of_history(void **state)
{
    (void)state;
    enum { N = 4 };
    const char *smi[N] = {/* demo.csv rows 171, 176, 196, 340 */
                          "C#CCN(C[C@H]1CCCO1)C(=O)N[C@@H](C)c1cccc([N+](=O)[O-])c1",
                          "CC[C@@H](C)[C@@H](NC(=O)c1cccc(F)c1)C(=O)N=c1[nH]c2ccccc2[nH]1",
                          "Cc1ccc(S(=O)(=O)N2CCN(C(=O)[C@H]3CCCC[C@@H]3C(=O)[O-])CC2)cc1C",
                          "COc1cc(OC)cc([C@@H](N[C@@H](C)c2ccc(F)cn2)c2[nH+]ccn2C)c1"};
    const int seed[N] = {171, 176, 196, 340};
    float alone[N][3 * 64];
    int n_atoms[N];
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    for (int k = 0; k < N; k++) {
        mm_chem *c = make_chem(1, 0);
        featurize_seed(c, smi[k], (uint64_t)seed[k], &f);
        assert_true(f.conf_ok);
        assert_true(f.n_atoms <= 64);
        n_atoms[k] = f.n_atoms;
        memcpy(alone[k], f.xyz, (size_t)f.n_atoms * 3 * sizeof(float));
        mm_chem_destroy(&c);
    }
    mm_chem *c = make_chem(1, 0);
    int differ = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < N; j++) {
            int k = pass == 0 ? j : N - 1 - j;
            featurize_seed(c, smi[(k + 1) % N], 12345, &f); /* another molecule in between */
            featurize_seed(c, smi[k], (uint64_t)seed[k], &f);
            assert_int_equal(f.n_atoms, n_atoms[k]);
            if (memcmp(f.xyz, alone[k], (size_t)n_atoms[k] * 3 * sizeof(float))) {
                printf("demo.csv row %d: conformer differs from the one built alone (pass %d)\n", seed[k], pass);
                differ++;
            }
        }
    mm_chem_destroy(&c);
    mm_mol_feat_free(&f);
    assert_int_equal(differ, 0);
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
        cmocka_unit_test(test_conformer),
        cmocka_unit_test(test_conformer_builder_only),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_fingerprint_packing),
        cmocka_unit_test(test_fingerprint_similarity),
        cmocka_unit_test(test_scaffold_examples),
        cmocka_unit_test(test_scaffold_many_fragments),
        cmocka_unit_test(test_sdf_records),
        cmocka_unit_test(test_sdf_input_atoms),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_image_independent_of_history),
        cmocka_unit_test(test_conformer_independent_of_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
