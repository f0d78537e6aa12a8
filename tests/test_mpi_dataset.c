/* MPI tests of dataset.h: the collective writer gives the same datasets whatever the
 * number of ranks and the split (1 rank on a sub-communicator, all ranks, a skewed
 * split with an empty rank, 3 ranks when there are enough, tiny I/O rounds); every
 * rank reads its own molecules collectively; failures on one rank reach all ranks. */
#include <dirent.h>
#include <hdf5.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dataset_fixture.h"
#include "h5_compare.h"
#include "mmsa/alloc.h"
#include "mmsa/dataset.h"
#include "mmsa/dist.h"
#include "testutil.h"

#define G_N 41 /* molecules of the global set */
#define G_R 7  /* rejects */

static mm_dist D;
static char dir[512]; /* shared by all ranks (rank 0's temporary directory) */

static const mm_dataset_meta META = {"synthetic featuriser 1.0", "global.csv", "", NULL};

static const char *path_of(const char *name)
{
    static char buf[8][600];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 600, "%s/%s", dir, name);
    return p;
}

static int count_tmp_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* Every rank of comm writes its part: molecules split by mcount[rank of comm], rejects
 * by rcount. Returns the status of mm_dataset_write. */
static mm_status write_split(const char *path, MPI_Comm comm, const int64_t *mcount, const int64_t *rcount)
{
    int r, p;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &p);
    int64_t m0 = 0, r0 = 0, msum = 0, rsum = 0;
    for (int q = 0; q < p; q++) {
        if (q < r) m0 += mcount[q], r0 += rcount[q];
        msum += mcount[q];
        rsum += rcount[q];
    }
    assert_int_equal(msum, G_N);
    assert_int_equal(rsum, G_R);
    mm_molset ms;
    assert_int_equal(fx_build(&ms, m0, m0 + mcount[r], r0, r0 + rcount[r]), MM_OK);
    mm_status st = mm_dataset_write(path, comm, &ms, &META);
    mm_molset_free(&ms);
    return st;
}

static void block_counts(int64_t n, int p, int64_t *out)
{
    for (int q = 0; q < p; q++) {
        int64_t s;
        mm_dist_block(n, p, q, &s, &out[q]);
    }
}

/* ---------------------------------------------------------------- file comparison */

/* h5c_files_equal (h5_compare.h), plus: the tasks are the fixture's. */
static int files_equal(const char *pa, const char *pb)
{
    int diff = h5c_files_equal(pa, pb);
    hid_t f = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    char *t = h5c_tasks(f);
    if (strcmp(t, "toxic|logS|")) diff++;
    free(t);
    H5Fclose(f);
    return diff;
}

/* ---------------------------------------------------------------- tests */

static void test_rank_count_invariance(void **state)
{
    (void)state;
    const int P = D.size, me = D.rank;
    int64_t mc[64], rc[64];
    assert_true(P <= 64);
    size_t live0 = mm_alloc_live_bytes();

    /* the reference: rank 0 alone on a sub-communicator */
    MPI_Comm solo;
    MPI_Comm_split(D.comm, me == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
    if (me == 0) {
        int64_t one_m[1] = {G_N}, one_r[1] = {G_R};
        assert_int_equal(write_split(path_of("one.h5"), solo, one_m, one_r), MM_OK);
        /* negative control: one label changed must show up as a difference */
        mm_molset ms;
        assert_int_equal(fx_build(&ms, 0, G_N, 0, G_R), MM_OK);
        ms.labels[2 * FX_T + 1] += 0.5f;
        assert_int_equal(mm_dataset_write(path_of("other.h5"), solo, &ms, &META), MM_OK);
        ms.labels[2 * FX_T + 1] -= 0.5f;
        /* and one peak's atom of a spectrum */
        int32_t *last = &ms.nmr[MM_NMR_1H].atom[ms.nmr[MM_NMR_1H].n_peaks - 1];
        *last = *last == -1 ? 0 : -1;
        assert_int_equal(mm_dataset_write(path_of("other_nmr.h5"), solo, &ms, &META), MM_OK);
        mm_molset_free(&ms);
        MPI_Comm_free(&solo);
    }
    /* all ranks, block split */
    block_counts(G_N, P, mc);
    block_counts(G_R, P, rc);
    assert_int_equal(write_split(path_of("all.h5"), D.comm, mc, rc), MM_OK);
    /* skewed: rank 0 has nothing, the last rank the most */
    for (int q = 0; q < P; q++) mc[q] = rc[q] = 0;
    mc[P - 1] = G_N;
    rc[P - 1] = G_R;
    if (P > 2) mc[1] = 3, mc[P - 1] -= 3, rc[1] = 2, rc[P - 1] -= 2;
    assert_int_equal(write_split(path_of("skew.h5"), D.comm, mc, rc), MM_OK);
    /* the other way round: the LAST rank is empty, so it writes only the closing offsets */
    for (int q = 0; q < P; q++) mc[q] = rc[q] = 0;
    mc[0] = G_N;
    rc[0] = G_R;
    assert_int_equal(write_split(path_of("lastempty.h5"), D.comm, mc, rc), MM_OK);
    /* tiny I/O rounds: ranks need different numbers of rounds for the same dataset */
    mm_dataset_set_io_block_bytes(100);
    block_counts(G_N, P, mc);
    block_counts(G_R, P, rc);
    assert_int_equal(write_split(path_of("rounds.h5"), D.comm, mc, rc), MM_OK);
    mm_dataset_set_io_block_bytes(0);
    /* three ranks when there are enough */
    int three = P >= 3;
    if (three) {
        MPI_Comm c3;
        MPI_Comm_split(D.comm, me < 3 ? 0 : MPI_UNDEFINED, me, &c3);
        if (me < 3) {
            int64_t m3[3] = {5, 0, G_N - 5}, r3[3] = {0, 3, G_R - 3};
            assert_int_equal(write_split(path_of("three.h5"), c3, m3, r3), MM_OK);
            MPI_Comm_free(&c3);
        }
    }
    MPI_Barrier(D.comm);
    int diff = 0;
    if (me == 0) {
        assert_int_equal(files_equal(path_of("one.h5"), path_of("other.h5")), 1);
        assert_int_equal(files_equal(path_of("one.h5"), path_of("other_nmr.h5")), 1);
        diff += files_equal(path_of("one.h5"), path_of("all.h5"));
        diff += files_equal(path_of("one.h5"), path_of("skew.h5"));
        diff += files_equal(path_of("one.h5"), path_of("lastempty.h5"));
        diff += files_equal(path_of("one.h5"), path_of("rounds.h5"));
        if (three) diff += files_equal(path_of("one.h5"), path_of("three.h5"));
        printf("rank-count invariance: 1 rank vs %d ranks (block, skewed, last rank empty, 100-byte rounds)%s: %s\n",
               P, three ? " and 3 ranks" : "", diff ? "DIFFERENT" : "identical datasets");
        assert_int_equal(count_tmp_files(), 0);
        /* h5py reads the collectively written file */
        if (system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") == 0) {
            char cmd[1200];
            snprintf(cmd, sizeof cmd,
                     "/usr/bin/python3 -c \"import sys, h5py; f = h5py.File(sys.argv[1], 'r'); "
                     "s = f['smiles'].asstr()[...]; assert len(s) == %d and s[0] == 'C0C' and s[40] == 'C40CNONON', s; "
                     "assert f['atom_offset'][-1] == f['atom_feat'].shape[0]; "
                     "assert list(f['rejects/source_row'][...]) == [1, 7, 13, 19, 25, 31, 37]\" '%s'",
                     G_N, path_of("all.h5"));
            assert_int_equal(system(cmd), 0);
        } else {
            printf("SKIP h5py sub-check: /usr/bin/python3 cannot import h5py (install python3-h5py)\n");
        }
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_each_rank_reads_its_part(void **state)
{
    (void)state;
    const int P = D.size, me = D.rank;
    size_t live0 = mm_alloc_live_bytes();
    mm_molset ref;
    assert_int_equal(fx_build(&ref, 0, G_N, 0, G_R), MM_OK);
    mm_dataset *ds;
    assert_int_equal(mm_dataset_open(path_of("all.h5"), D.comm, &ds), MM_OK);
    assert_int_equal(mm_dataset_get_info(ds)->n_molecules, G_N);
    assert_int_equal(mm_dataset_get_info(ds)->n_rejects, G_R);

    /* strided: molecule i belongs to rank i % P (no two indices adjacent when P > 1) */
    int64_t idx[G_N], n = 0;
    for (int64_t i = me; i < G_N; i += P) idx[n++] = i;
    mm_molset mine = {0};
    assert_int_equal(mm_dataset_read_indices(ds, idx, n, MM_MOD_ALL, &mine), MM_OK);
    assert_int_equal(mine.n, n);
    for (int64_t k = 0; k < n; k++) assert_int_equal(fx_mol_equal(&ref, idx[k], &mine, k, MM_MOD_ALL), 0);
    /* rank 0 reads nothing while the others read their block */
    int64_t s, c;
    mm_dist_block(G_N, P, me, &s, &c);
    if (me == 0 && P > 1) c = 0;
    assert_int_equal(mm_dataset_read_range(ds, s, s + c, MM_MOD_CONFORMER | MM_MOD_LABELS, &mine), MM_OK);
    assert_int_equal(mine.n, c);
    for (int64_t k = 0; k < c; k++)
        assert_int_equal(fx_mol_equal(&ref, s + k, &mine, k, MM_MOD_CONFORMER | MM_MOD_LABELS), 0);
    assert_int_equal(mm_dataset_read_rejects(ds, &mine), MM_OK);
    assert_int_equal(fx_rejects_equal(&ref, &mine), 0);
    assert_int_equal(mm_dataset_verify(ds), MM_OK);
    mm_molset_free(&mine);
    mm_dataset_close(&ds);

    /* the golden file opens collectively too */
    char gpath[600];
    snprintf(gpath, sizeof gpath, "%s/golden/mmsa_ref_v1.h5", tu_shared_dir());
    assert_int_equal(mm_dataset_open(gpath, D.comm, &ds), MM_OK);
    assert_int_equal(mm_dataset_get_info(ds)->n_atoms, 416);
    mm_dist_block(16, P, me, &s, &c);
    mm_molset g = {0};
    assert_int_equal(mm_dataset_read_range(ds, s, s + c, mm_dataset_get_info(ds)->modalities, &g), MM_OK);
    int64_t atoms = g.n_atoms, total = 0;
    MPI_Allreduce(&atoms, &total, 1, MPI_INT64_T, MPI_SUM, D.comm);
    assert_int_equal(total, 416);
    mm_molset_free(&g);
    mm_dataset_close(&ds);
    mm_molset_free(&ref);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* The spool path (bounded memory): every rank appends its part chunk by chunk; the file
 * has the bytes of mm_dataset_write of all molecules by one rank (one.h5), for chunks of
 * 1, 4 and 100 molecules, a block split and a split with an empty first rank. */
static void test_spool_chunks_give_the_same_bytes(void **state)
{
    (void)state;
    const int P = D.size, me = D.rank;
    size_t live0 = mm_alloc_live_bytes();
    int64_t mc[64], rc[64];
    static const int64_t chunks[] = {1, 4, 100};
    int diff = 0;
    for (int split = 0; split < 2; split++) {
        block_counts(G_N, P, mc);
        block_counts(G_R, P, rc);
        if (split == 1 && P > 1) { /* rank 0 empty */
            for (int q = 0; q < P; q++) mc[q] = rc[q] = 0;
            mc[P - 1] = G_N;
            rc[P - 1] = G_R;
        }
        int64_t m0 = 0, r0 = 0;
        for (int q = 0; q < me; q++) m0 += mc[q], r0 += rc[q];
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            mm_molset layout;
            assert_int_equal(fx_build(&layout, 0, 0, 0, 0), MM_OK);
            char sp_name[64];
            snprintf(sp_name, sizeof sp_name, "spool.%d", me);
            mm_dataset_spool *sp = NULL;
            assert_int_equal(mm_dataset_spool_create(path_of(sp_name), &layout, &sp), MM_OK);
            mm_molset_free(&layout);
            /* the rejects go with the first chunk, the molecules in chunks of chunks[c] */
            for (int64_t i = 0; i < mc[me] || i == 0; i += chunks[c]) {
                int64_t e = i + chunks[c] < mc[me] ? i + chunks[c] : mc[me];
                mm_molset part;
                assert_int_equal(fx_build(&part, m0 + i, m0 + e, i == 0 ? r0 : 0, i == 0 ? r0 + rc[me] : 0), MM_OK);
                assert_int_equal(mm_dataset_spool_append(sp, &part), MM_OK);
                mm_molset_free(&part);
            }
            char out[64];
            snprintf(out, sizeof out, "spooled_%d_%lld.h5", split, (long long)chunks[c]);
            assert_int_equal(mm_dataset_write_spool(path_of(out), D.comm, sp, &META), MM_OK);
            mm_dataset_spool_free(&sp);
            MPI_Barrier(D.comm);
            if (me == 0) diff += !h5c_same_bytes(path_of("one.h5"), path_of(out));
        }
    }
    if (me == 0) {
        assert_int_equal(h5c_same_bytes(path_of("one.h5"), path_of("other_nmr.h5")), 0); /* the comparison can fail */
        printf("spool: chunks of 1, 4, 100 molecules on %d ranks (block split, first rank empty) vs 1 rank from "
               "memory: %s\n", P, diff ? "DIFFERENT" : "byte-identical files");
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_one_rank_failing_reaches_all(void **state)
{
    (void)state;
    const int P = D.size, me = D.rank;
    size_t live0 = mm_alloc_live_bytes();
    int64_t mc[64], rc[64];
    block_counts(G_N, P, mc);
    block_counts(G_R, P, rc);
    int64_t m0 = 0, r0 = 0;
    for (int q = 0; q < me; q++) m0 += mc[q], r0 += rc[q];

    /* the last rank's set is broken: nobody writes, everyone gets an error */
    mm_molset ms;
    assert_int_equal(fx_build(&ms, m0, m0 + mc[me], r0, r0 + rc[me]), MM_OK);
    int64_t saved = 0;
    if (me == P - 1 && ms.n >= 2) {
        saved = ms.atom_offset[1];
        ms.atom_offset[1] = ms.atom_offset[2] + 1;
    }
    const char *bad = path_of("bad.h5");
    mm_status st = mm_dataset_write(bad, D.comm, &ms, &META);
    assert_int_equal(st, MM_ERR_ARG);
    if (me == P - 1)
        assert_non_null(strstr(mm_error_message(), "molecule set"));
    else
        assert_non_null(strstr(mm_error_message(), "another rank"));
    mm_error_clear();
    if (me == P - 1 && ms.n >= 2) ms.atom_offset[1] = saved;
    mm_molset_free(&ms);

    /* ranks disagree on the layout (the last rank has no images) */
    if (P > 1) {
        mm_molset_opts o = fx_opts();
        if (me == P - 1) o.modalities &= ~(unsigned)MM_MOD_IMAGE;
        assert_int_equal(mm_molset_init(&ms, &o), MM_OK);
        for (int64_t i = m0; i < m0 + mc[me]; i++) assert_int_equal(fx_append(&ms, i), MM_OK);
        st = mm_dataset_write(bad, D.comm, &ms, &META);
        assert_int_equal(st, MM_ERR_ARG);
        if (me == 0) assert_non_null(strstr(mm_error_message(), "different layout"));
        mm_error_clear();
        mm_molset_free(&ms);
    }
    MPI_Barrier(D.comm);
    assert_int_not_equal(access(bad, F_OK), 0);
    if (me == 0) assert_int_equal(count_tmp_files(), 0);

    /* reads: one rank's bad indices fail only there, and the next read still works */
    mm_dataset *ds;
    assert_int_equal(mm_dataset_open(path_of("all.h5"), D.comm, &ds), MM_OK);
    int64_t good[2] = {me, me + 2}, wrong[2] = {me + 2, me};
    mm_molset out = {0};
    st = mm_dataset_read_indices(ds, me == P - 1 ? wrong : good, 2, MM_MOD_ALL, &out);
    if (me == P - 1) {
        assert_int_equal(st, MM_ERR_ARG);
        mm_error_clear();
    } else {
        assert_int_equal(st, MM_OK);
        assert_int_equal(out.n, 2);
    }
    assert_int_equal(mm_dataset_read_indices(ds, good, 2, MM_MOD_FINGERPRINT, &out), MM_OK);
    assert_int_equal(out.n, 2);
    if (P > 1) {
        /* different modalities on different ranks: refused everywhere, no deadlock */
        st = mm_dataset_read_indices(ds, good, 2, me == 0 ? MM_MOD_ALL : 0, &out);
        assert_int_equal(st, MM_ERR_ARG);
        assert_non_null(strstr(mm_error_message(), "different modalities"));
        mm_error_clear();
    }
    mm_molset_free(&out);
    mm_dataset_close(&ds);
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
        cmocka_unit_test(test_rank_count_invariance),
        cmocka_unit_test(test_each_rank_reads_its_part),
        cmocka_unit_test(test_spool_chunks_give_the_same_bytes),
        cmocka_unit_test(test_one_rank_failing_reaches_all),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Barrier(D.comm); /* rank 0 removes the directory at exit */
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
