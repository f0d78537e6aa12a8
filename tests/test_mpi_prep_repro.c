/* MPI tests of mmsa_prep's reproducibility (issue 14): a dataset is a function of the
 * input and the settings alone.
 * - BBBP's fused polycyclics (steroids, tetracyclines) give the same /image on 1 rank, on
 *   all ranks, on 3 ranks when there are 3, and from three separate runs over the three
 *   contiguous slices a 3-rank run would give its ranks (so 3-rank histories are covered
 *   by the 1- and 2-rank runs of make check too). Their depictions used to depend on what
 *   the process had drawn before: 53 of 2,038 BBBP images differed between 1 and 2 ranks.
 * - configs/data/demo.csv rows whose conformers moved by up to 9.8 A from one run to the
 *   next, prepared twice with 3D by the same command: identical files.
 * The causes (src/chem/obabel.cpp): the order of the stereocentres Open Babel's SMILES
 * reader leaves in a molecule (heap-address order; sort_stereo_data), and the font size
 * the painter kept from one molecule to the next (a charged molecule first on a rank). */
#include <hdf5.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dataset_fixture.h"
#include "h5_compare.h"
#include "mmsa/alloc.h"
#include "mmsa/csv.h"
#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "mmsa/prep.h"
#include "testutil.h"

static mm_dist D;
static char dir[512]; /* shared by all ranks (rank 0's temporary directory) */

static const char *path_of(const char *name)
{
    static char buf[8][600];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    return p;
}

/* Rank 0: the SMILES of the rows [lo[k], hi[k]) of a molecule table, k < n_ranges, in
 * file order, one per line after a "smiles" header, into dir/name. 0 if the file cannot
 * be read (the message printed). */
static int write_rows(const char *src, const int *lo, const int *hi, int n_ranges, const char *name)
{
    mm_table *t = NULL;
    if (mm_table_open(src, NULL, &t) != MM_OK) {
        mm_error_print(stderr, 0);
        fprintf(stderr, "cannot read %s (set MMSA_SHARED to the shared folder; run from the repository root)\n",
                src);
        return 0;
    }
    FILE *out = fopen(path_of(name), "w");
    assert_non_null(out);
    fputs("smiles\n", out);
    mm_table_row row;
    bool eof = false;
    int written = 0;
    for (;;) {
        assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
        if (eof) break;
        for (int k = 0; k < n_ranges; k++)
            if (row.row >= lo[k] && row.row < hi[k]) {
                fprintf(out, "%s\n", row.smiles);
                written++;
            }
    }
    fclose(out);
    mm_table_close(&t);
    int want = 0;
    for (int k = 0; k < n_ranges; k++) want += hi[k] - lo[k];
    assert_int_equal(written, want);
    return 1;
}

static mm_prep_config cfg_for(const char *in, const char *out)
{
    mm_prep_config c;
    assert_int_equal(mm_prep_config_defaults(&c), MM_OK);
    snprintf(c.input.path, sizeof c.input.path, "%s", in);
    snprintf(c.output.path, sizeof c.output.path, "%s", out);
    c.report.progress = false;
    return c;
}

static void run(const mm_prep_config *c, MPI_Comm comm, mm_prep_result *res)
{
    mm_status st = mm_prep_run(c, comm, NULL, res);
    if (st != MM_OK) mm_error_print(stderr, D.rank);
    assert_int_equal(st, MM_OK);
}

/* Reads the whole file serially (rank 0). */
static void read_all(const char *path, mm_molset *ms)
{
    mm_dataset *ds = NULL;
    assert_int_equal(mm_dataset_open(path, MPI_COMM_NULL, &ds), MM_OK);
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    memset(ms, 0, sizeof *ms);
    assert_int_equal(mm_dataset_read_range(ds, 0, info->n_molecules, info->modalities, ms), MM_OK);
    mm_dataset_close(&ds);
}

/* Molecules whose depiction differs between two files (rank 0), b's molecule j being
 * a's molecule j + b_first; each named on stdout with `what`. */
static int images_differing(const mm_molset *a, const mm_molset *b, int64_t b_first, const char *what)
{
    assert_true(a->image_h == b->image_h && a->image_w == b->image_w);
    size_t bytes = 3 * (size_t)a->image_h * (size_t)a->image_w;
    int differ = 0;
    for (int64_t j = 0; j < b->n; j++) {
        const char *smi = mm_strings_get(&a->smiles, j + b_first);
        assert_string_equal(smi, mm_strings_get(&b->smiles, j));
        if (memcmp(a->image + (size_t)(j + b_first) * bytes, b->image + (size_t)j * bytes, bytes)) {
            printf("%s: the depiction of molecule %lld (%s) differs\n", what, (long long)(j + b_first), smi);
            differ++;
        }
    }
    return differ;
}

/* ---------------------------------------------------------------- depictions vs rank count */

static void test_polycyclic_images_rank_count(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    /* BBBP rows around its fused polycyclics: 155, 205, 260, 321, 348, 361, 372, 394, 412,
     * 957 and 1163 differed between 1 and 2 ranks, with molecules of every kind between */
    enum { N_RANGES = 3 };
    const int lo[N_RANGES] = {140, 950, 1155}, hi[N_RANGES] = {420, 965, 1170};
    int have = 1;
    if (D.rank == 0) {
        char src[1024];
        snprintf(src, sizeof src, "%s/data/moleculenet/bbbp.csv", tu_shared_dir());
        have = write_rows(src, lo, hi, N_RANGES, "poly.csv");
    }
    MPI_Bcast(&have, 1, MPI_INT, 0, D.comm);
    assert_true(have);
    mm_prep_config c = cfg_for(path_of("poly.csv"), path_of("poly_one.h5"));
    c.features.conformer = false;

    MPI_Comm solo;
    MPI_Comm_split(D.comm, D.rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
    mm_prep_result r1, rn;
    if (D.rank == 0) run(&c, solo, &r1);
    snprintf(c.output.path, sizeof c.output.path, "%s", path_of("poly_all.h5"));
    run(&c, D.comm, &rn);
    int three = D.size >= 3;
    if (three) {
        MPI_Comm c3;
        MPI_Comm_split(D.comm, D.rank < 3 ? 0 : MPI_UNDEFINED, D.rank, &c3);
        if (D.rank < 3) {
            snprintf(c.output.path, sizeof c.output.path, "%s", path_of("poly_three.h5"));
            run(&c, c3, &rn);
            MPI_Comm_free(&c3);
        }
    }
    int diff = 0;
    if (D.rank == 0) {
        assert_int_equal(r1.written, r1.rows); /* no rejects: molecule i is row i */
        mm_molset one;
        read_all(path_of("poly_one.h5"), &one);
        /* the slices a 3-rank run gives its ranks, each prepared by a run of its own
         * (after the runs above, in this process: yet another history) */
        int64_t n = one.n;
        for (int k = 0; k < 3; k++) {
            int64_t first = n * k / 3, end = n * (k + 1) / 3;
            char name[64], out[64];
            snprintf(name, sizeof name, "poly_slice%d.csv", k);
            snprintf(out, sizeof out, "poly_slice%d.h5", k);
            FILE *in = fopen(path_of("poly.csv"), "r"), *sl = fopen(path_of(name), "w");
            assert_true(in && sl);
            static char line[65536];
            for (int64_t r = -1; fgets(line, sizeof line, in); r++)
                if (r < 0 || (r >= first && r < end)) fputs(line, sl);
            fclose(in);
            fclose(sl);
            mm_prep_config cs = cfg_for(path_of(name), path_of(out));
            cs.features.conformer = false;
            mm_prep_result rs;
            run(&cs, solo, &rs);
            assert_int_equal(rs.written, end - first);
            mm_molset s;
            read_all(path_of(out), &s);
            char what[64];
            snprintf(what, sizeof what, "slice %d of 3, run alone", k);
            diff += images_differing(&one, &s, first, what);
            mm_molset_free(&s);
        }
        MPI_Comm_free(&solo);
        mm_molset all;
        read_all(path_of("poly_all.h5"), &all);
        diff += images_differing(&one, &all, 0, "all ranks");
        mm_molset_free(&all);
        diff += h5c_files_equal(path_of("poly_one.h5"), path_of("poly_all.h5"));
        if (three) diff += h5c_files_equal(path_of("poly_one.h5"), path_of("poly_three.h5"));
        printf("BBBP fused polycyclics (%lld molecules): 1 rank vs all %d, %sthe three slices of a 3-rank "
               "run: %s\n",
               (long long)n, D.size, three ? "3 ranks, " : "", diff ? "DIFFERENT" : "identical images");
        mm_molset_free(&one);
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* ---------------------------------------------------------------- conformers run to run */

static void test_prepared_twice_with_3d(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    /* demo.csv rows 171, 176, 196 and 340 moved between two runs, with the rows around
     * them */
    enum { N_RANGES = 3 };
    const int lo[N_RANGES] = {168, 194, 336}, hi[N_RANGES] = {180, 200, 344};
    int have = 1;
    if (D.rank == 0) have = write_rows("configs/data/demo.csv", lo, hi, N_RANGES, "demo3d.csv");
    MPI_Bcast(&have, 1, MPI_INT, 0, D.comm);
    assert_true(have);
    mm_prep_config c = cfg_for(path_of("demo3d.csv"), path_of("demo3d_a.h5"));
    mm_prep_result ra, rb;
    run(&c, D.comm, &ra);
    snprintf(c.output.path, sizeof c.output.path, "%s", path_of("demo3d_b.h5"));
    run(&c, D.comm, &rb);
    int diff = 0;
    if (D.rank == 0) {
        assert_int_equal(ra.written, 26);
        assert_true(ra.conf_built >= 25);
        mm_molset a, b;
        read_all(path_of("demo3d_a.h5"), &a);
        read_all(path_of("demo3d_b.h5"), &b);
        for (int64_t i = 0; i < a.n; i++) diff += fx_mol_equal(&a, i, &b, i, MM_MOD_ALL) != 0;
        mm_molset_free(&a);
        mm_molset_free(&b);
        diff += h5c_files_equal(path_of("demo3d_a.h5"), path_of("demo3d_b.h5"));
        printf("demo.csv rows with 3D prepared twice on %d rank(s): %s\n", D.size,
               diff ? "DIFFERENT" : "identical datasets");
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* Open MPI's dynamically loaded components leave allocations behind at
 * MPI_Finalize, which LeakSanitizer would report against this program; the tests
 * check the library's own heap through mm_alloc_live_bytes instead. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return 1; }

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD) != MM_OK) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (D.rank == 0) snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, D.comm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_polycyclic_images_rank_count),
        cmocka_unit_test(test_prepared_twice_with_3d),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Barrier(D.comm); /* rank 0 removes the directory at exit */
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
