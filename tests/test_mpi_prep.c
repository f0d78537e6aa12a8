/* MPI tests of prep.h (the library behind mmsa_prep): bad input rows rejected with their
 * row and reason, non-numeric label cells kept as NaN and reported, quoted CSV fields;
 * the same file from 1 rank and from all ranks (with 3D conformers and rejects); the same
 * bytes whatever the chunk size (output.chunk_molecules), with at most a chunk held; errors
 * (missing input, unwritable output, unknown column, one rank running out of memory)
 * reach every rank and leave no file; --inspect; BACE's `mol` column found by itself;
 * an SD input keeping its 3D coordinates; the example YAML; the binary's --help and a
 * bad flag. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "dataset_fixture.h"
#include "h5_compare.h"
#include "mmsa/alloc.h"
#include "mmsa/chem.h"
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

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int count_tmp_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".spool.")) n++;
    closedir(d);
    return n;
}

/* Rank 0 writes `text` to dir/name; everyone waits. */
static void write_file(const char *name, const char *text)
{
    if (D.rank == 0) {
        FILE *f = fopen(path_of(name), "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    MPI_Barrier(D.comm);
}

/* Rank 0 copies the first n_lines lines of a (possibly gzipped) shared file to dir/name. */
static int copy_head(const char *shared_rel, const char *name, int n_lines)
{
    int ok = 1;
    if (D.rank == 0) {
        char src[1024];
        snprintf(src, sizeof src, "%s/data/%s", tu_shared_dir(), shared_rel);
        gzFile in = gzopen(src, "rb");
        if (!in) {
            ok = 0;
        } else {
            FILE *out = fopen(path_of(name), "w");
            assert_non_null(out);
            char line[65536];
            for (int i = 0; i < n_lines && gzgets(in, line, sizeof line); i++) fputs(line, out);
            fclose(out);
            gzclose(in);
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, D.comm);
    return ok;
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

/* Runs mm_prep_run over comm; rank 0 of comm gets the summary text in *summary (free it). */
static mm_status run(const mm_prep_config *c, MPI_Comm comm, mm_prep_result *res, char **summary)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = summary ? open_memstream(&buf, &len) : NULL;
    mm_status st = mm_prep_run(c, comm, f, res);
    if (f) fclose(f);
    if (summary) *summary = buf;
    else free(buf);
    if (st != MM_OK) mm_error_print(stderr, D.rank); /* visible in the test log */
    return st;
}

/* Reads the whole file serially (rank 0). */
static void read_all(const char *path, mm_molset *ms, mm_dataset_info *info_copy)
{
    mm_dataset *ds = NULL;
    assert_int_equal(mm_dataset_open(path, MPI_COMM_NULL, &ds), MM_OK);
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    if (info_copy) *info_copy = *info; /* strings not used after the close */
    memset(ms, 0, sizeof *ms);
    assert_int_equal(mm_dataset_read_range(ds, 0, info->n_molecules, info->modalities, ms), MM_OK);
    assert_int_equal(mm_dataset_read_rejects(ds, ms), MM_OK);
    mm_dataset_close(&ds);
}

/* ---------------------------------------------------------------- bad input */

/* rows: 0 ok, 1 quoted + empty label, 2 invalid SMILES, 3 empty line, 4 no heavy atom,
 * 5 non-numeric label, 6 over the atom limit, 7 quoted labels, 8 both labels missing,
 * 9 a quoted SMILES with surrounding blanks */
static const char *BAD_CSV =
    "smiles,\"tox, acute\",logS\n"
    "CCO,1,-0.5\n"
    "\"c1ccccc1O\",0,\n"
    "C1CC(,1,2\n"
    "\n"
    "[H][H],0,1\n"
    "CC(=O)O,abc,1.5\n"
    "CCCCCCCCCCCCCCCCCCCCCCCCC,1,1\n"
    "\"CC(=O)Nc1ccc(O)cc1\",0,\"3.25\"\n"
    "O=C=O,,\n"
    "\" CC(C)N \",1,0\n";

static void test_bad_input(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    write_file("bad.csv", BAD_CSV);
    mm_prep_config c = cfg_for(path_of("bad.csv"), path_of("bad.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "%s", "all");
    c.features.conformer = false;
    c.features.image_size = 32;
    c.features.max_atoms = 20;
    mm_prep_result r;
    char *summary = NULL;
    assert_int_equal(run(&c, D.comm, &r, &summary), MM_OK);
    assert_int_equal(r.rows, 10);
    assert_int_equal(r.written, 6);
    assert_int_equal(r.rejected, 4);
    assert_int_equal(r.by_reason[MM_CHEM_EMPTY], 1);
    assert_int_equal(r.by_reason[MM_CHEM_PARSE], 1);
    assert_int_equal(r.by_reason[MM_CHEM_NO_HEAVY_ATOM], 1);
    assert_int_equal(r.by_reason[MM_CHEM_TOO_MANY_ATOMS], 1);
    assert_int_equal(r.by_reason[MM_PREP_REASON_ERROR], 0);
    assert_int_equal(r.label_rows, 1);
    assert_int_equal(r.ranks, D.size);
    if (D.rank == 0) {
        printf("%s", summary);
        /* the summary names rows, lines and the bad label cell by column */
        assert_non_null(strstr(summary, "rows read          10"));
        assert_non_null(strstr(summary, "row 2 (line 4): 'C1CC('"));
        assert_non_null(strstr(summary, "row 5, column 'tox, acute': 'abc' is not a number"));
        assert_non_null(strstr(summary, "rows read 10 = written 6 + rejected 4"));

        mm_molset ms;
        mm_dataset_info info;
        read_all(path_of("bad.h5"), &ms, &info);
        assert_int_equal(info.modalities, MM_MOD_IMAGE | MM_MOD_FINGERPRINT | MM_MOD_SCAFFOLD | MM_MOD_LABELS);
        assert_int_equal(ms.n, 6);
        assert_int_equal(ms.image_h, 32);
        const int64_t rows[6] = {0, 1, 5, 7, 8, 9};
        for (int i = 0; i < 6; i++) assert_int_equal(ms.source_row[i], rows[i]);
        assert_int_equal(ms.n_tasks, 2);
        assert_string_equal(ms.task_names[0], "tox, acute");
        assert_string_equal(ms.task_names[1], "logS");
        const float *L = ms.labels;
        assert_true(L[0] == 1.0f && L[1] == -0.5f);     /* row 0 */
        assert_true(L[2] == 0.0f && isnan(L[3]));       /* row 1: empty cell */
        assert_true(isnan(L[4]) && L[5] == 1.5f);       /* row 5: 'abc' */
        assert_true(L[6] == 0.0f && L[7] == 3.25f);     /* row 7: quoted */
        assert_true(isnan(L[8]) && isnan(L[9]));        /* row 8 */
        assert_string_equal(mm_strings_get(&ms.smiles, 0), "CCO");
        /* rejects: row, input text and reason */
        assert_int_equal(ms.n_rejects, 4);
        const int64_t rrow[4] = {2, 3, 4, 6};
        const char *rtext[4] = {"C1CC(", "", "[H][H]", "CCCCCCCCCCCCCCCCCCCCCCCCC"};
        const char *rwhy[4] = {"parse: ", "empty: ", "no heavy atom: ", "too many atoms: "};
        for (int k = 0; k < 4; k++) {
            assert_int_equal(ms.reject_row[k], rrow[k]);
            assert_string_equal(mm_strings_get(&ms.reject_smiles, k), rtext[k]);
            const char *why = mm_strings_get(&ms.reject_reason, k);
            assert_int_equal(strncmp(why, rwhy[k], strlen(rwhy[k])), 0);
        }
        assert_non_null(strstr(mm_strings_get(&ms.reject_reason, 3), "25 heavy atoms"));
        mm_molset_free(&ms);

        /* --inspect's function on the result */
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_int_equal(mm_dataset_inspect(path_of("bad.h5"), f, 10), MM_OK);
        fclose(f);
        assert_non_null(strstr(text, "molecules    6"));
        assert_non_null(strstr(text, "rejects      4"));
        assert_non_null(strstr(text, "tox, acute"));
        assert_non_null(strstr(text, "created by   mmsa_prep " MM_PREP_VERSION));
        assert_non_null(strstr(text, "row 3: empty: empty SMILES"));
        free(text);
    }
    free(summary);

    /* the same labels named explicitly, one of them quoted because of its comma */
    snprintf(c.input.labels, sizeof c.input.labels, "%s", "logS,\"tox, acute\"");
    snprintf(c.output.path, sizeof c.output.path, "%s", path_of("bad2.h5"));
    assert_int_equal(run(&c, D.comm, &r, NULL), MM_OK);
    if (D.rank == 0) {
        mm_molset ms;
        read_all(path_of("bad2.h5"), &ms, NULL);
        assert_string_equal(ms.task_names[0], "logS");
        assert_string_equal(ms.task_names[1], "tox, acute");
        assert_true(ms.labels[0] == -0.5f && ms.labels[1] == 1.0f);
        mm_molset_free(&ms);
    }
    MPI_Barrier(D.comm);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_label_list(void **state)
{
    (void)state;
    char **names = NULL;
    int n = 0;
    assert_int_equal(mm_prep_split_labels("a, \"b, c\" ,\"d\"\"e\",f g", &names, &n), MM_OK);
    assert_int_equal(n, 4);
    assert_string_equal(names[0], "a");
    assert_string_equal(names[1], "b, c");
    assert_string_equal(names[2], "d\"e");
    assert_string_equal(names[3], "f g");
    mm_prep_labels_free(names, n);
    const char *bad[] = {"a,,b", "\"a", "a,a", "\"a\"b", ",", ""};
    for (int k = 0; k < 6; k++) {
        assert_int_equal(mm_prep_split_labels(bad[k], &names, &n), MM_ERR_CONFIG);
        assert_null(names);
    }
    /* the per-molecule seed depends on both inputs */
    assert_true(mm_prep_mol_seed(1, 0) != mm_prep_mol_seed(1, 1));
    assert_true(mm_prep_mol_seed(1, 5) != mm_prep_mol_seed(2, 5));
    assert_true(mm_prep_mol_seed(3, 7) == mm_prep_mol_seed(3, 7));
}

/* ---------------------------------------------------------------- rank-count invariance */

static void test_rank_count_invariance(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    /* 9 ZINC molecules and rejects in between, with 3D conformers, images and labels */
    char text[8192] = "smiles,y\n";
    int have = 1;
    if (D.rank == 0) {
        char src[1024], line[1024];
        snprintf(src, sizeof src, "%s/data/pretrain/zinc250k.csv.gz", tu_shared_dir());
        gzFile in = gzopen(src, "rb");
        have = in && gzgets(in, line, sizeof line); /* header */
        for (int i = 0; have && i < 9; i++) {
            have = gzgets(in, line, sizeof line) != NULL;
            line[strcspn(line, "\r\n")] = '\0';
            char row[1100];
            snprintf(row, sizeof row, "%s,%s\n", line, i % 3 == 0 ? "" : (i % 3 == 1 ? "0.5" : "x"));
            strcat(text, row);
            if (i == 2) strcat(text, "C1CC(,1\n\n");
            if (i == 6) strcat(text, "[H][H],2\n");
        }
        if (in) gzclose(in);
    }
    MPI_Bcast(&have, 1, MPI_INT, 0, D.comm);
    if (!have) {
        if (D.rank == 0) printf("SKIP: %s/data/pretrain/zinc250k.csv.gz not readable\n", tu_shared_dir());
        return;
    }
    write_file("inv.csv", text);
    mm_prep_config c = cfg_for(path_of("inv.csv"), path_of("inv_one.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "y");
    c.features.ff_steps = 60;
    c.features.image_size = 32;
    c.features.seed = 7;

    MPI_Comm solo;
    MPI_Comm_split(D.comm, D.rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
    mm_prep_result r1, r2, rn;
    if (D.rank == 0) {
        assert_int_equal(run(&c, solo, &r1, NULL), MM_OK);
        /* negative control: another seed moves the conformers and nothing else */
        mm_prep_config c2 = c;
        c2.features.seed = 8;
        snprintf(c2.output.path, sizeof c2.output.path, "%s", path_of("inv_seed.h5"));
        assert_int_equal(run(&c2, solo, &r2, NULL), MM_OK);
        MPI_Comm_free(&solo);
        assert_int_equal(r1.rows, 12);
        assert_int_equal(r1.written, 9);
        assert_int_equal(r1.rejected, 3);
        assert_int_equal(r1.label_rows, 3);
        assert_int_equal(r1.conf_built + r1.conf_failed, 9);
        assert_true(r1.conf_built >= 8);
    }
    snprintf(c.output.path, sizeof c.output.path, "%s", path_of("inv_all.h5"));
    /* debug PNGs of the first 5 molecules of the whole input, whichever rank has them */
    snprintf(c.report.png_dir, sizeof c.report.png_dir, "%s", path_of("png"));
    c.report.png_count = 5;
    assert_int_equal(run(&c, D.comm, &rn, NULL), MM_OK);
    c.report.png_dir[0] = '\0';
    if (D.rank == 0) {
        const int png_rows[6] = {0, 1, 2, 5, 6, 7};
        for (int i = 0; i < 6; i++) {
            char name[64];
            snprintf(name, sizeof name, "png/mol_%06d_row_%d.png", i, png_rows[i]);
            assert_int_equal(file_exists(path_of(name)), i < 5);
        }
    }
    /* three ranks on a sub-communicator when there are more */
    int three = D.size > 3;
    if (three) {
        MPI_Comm c3;
        MPI_Comm_split(D.comm, D.rank < 3 ? 0 : MPI_UNDEFINED, D.rank, &c3);
        if (D.rank < 3) {
            snprintf(c.output.path, sizeof c.output.path, "%s", path_of("inv_three.h5"));
            assert_int_equal(run(&c, c3, &rn, NULL), MM_OK);
            MPI_Comm_free(&c3);
        }
    }
    MPI_Barrier(D.comm);
    int diff = 0;
    if (D.rank == 0) {
        assert_int_equal(rn.written, r1.written);
        diff += h5c_files_equal(path_of("inv_one.h5"), path_of("inv_all.h5"));
        if (three) diff += h5c_files_equal(path_of("inv_one.h5"), path_of("inv_three.h5"));
        /* the seed control differs, and only in the conformer coordinates */
        mm_molset a, b;
        read_all(path_of("inv_one.h5"), &a, NULL);
        read_all(path_of("inv_seed.h5"), &b, NULL);
        assert_int_equal(a.n, b.n);
        int xyz_diff = 0;
        for (int64_t i = 0; i < a.n; i++) {
            assert_int_equal(fx_mol_equal(&a, i, &b, i, MM_MOD_ALL & ~MM_MOD_CONFORMER), 0);
            int64_t a0 = a.atom_offset[i], na = a.atom_offset[i + 1] - a0;
            if (a.conf_ok[i] && b.conf_ok[i] && memcmp(a.xyz + 3 * a0, b.xyz + 3 * a0, (size_t)na * 12)) xyz_diff++;
        }
        assert_true(xyz_diff >= 1);
        assert_int_equal(a.n_tasks, 1);
        assert_true(isnan(a.labels[0]) && a.labels[1] == 0.5f && isnan(a.labels[2]));
        mm_molset_free(&a);
        mm_molset_free(&b);
        printf("rank-count invariance: 1 rank vs %d ranks%s, with 3D, images, labels and rejects: %s "
               "(another seed changed %d of 9 conformers)\n",
               D.size, three ? " and 3 ranks" : "", diff ? "DIFFERENT" : "identical datasets", xyz_diff);
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* ---------------------------------------------------------------- chunks */

/* Writing in chunks changes neither the file's bytes nor anything in it: chunks of 1
 * (every reject a chunk of its own), 3 (ranks with different numbers of chunks, chunks
 * of rejects only) and larger than the input, on all ranks and on one; and a rank never
 * holds more than a chunk of featurised rows. The file of one whole chunk is also the
 * one mm_dataset_write makes from the same molecules in memory. */
static void test_chunks(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    /* 10 ZINC molecules with labels (empty, number, text), 4 rejects, two of them adjacent */
    char text[8192] = "smiles,y\n";
    int have = 1;
    if (D.rank == 0) {
        char src[1024], line[1024];
        snprintf(src, sizeof src, "%s/data/pretrain/zinc250k.csv.gz", tu_shared_dir());
        gzFile in = gzopen(src, "rb");
        have = in && gzgets(in, line, sizeof line);
        for (int i = 0; have && i < 10; i++) {
            have = gzgets(in, line, sizeof line) != NULL;
            line[strcspn(line, "\r\n")] = '\0';
            char row[1100];
            snprintf(row, sizeof row, "%s,%s\n", line, i % 3 == 0 ? "" : (i % 3 == 1 ? "1.5" : "x"));
            strcat(text, row);
            if (i == 1) strcat(text, "C1CC(,1\n\n");
            if (i == 7) strcat(text, "[H][H],2\nnot_a_smiles,0\n");
        }
        if (in) gzclose(in);
    }
    MPI_Bcast(&have, 1, MPI_INT, 0, D.comm);
    if (!have) {
        if (D.rank == 0) printf("SKIP: %s/data/pretrain/zinc250k.csv.gz not readable\n", tu_shared_dir());
        return;
    }
    write_file("chunks.csv", text);
    mm_prep_config c = cfg_for(path_of("chunks.csv"), path_of("chunks_whole.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "y");
    c.features.ff_steps = 10;
    c.features.image_size = 24;
    c.output.chunk_molecules = 1000;
    mm_prep_result whole;
    assert_int_equal(run(&c, D.comm, &whole, NULL), MM_OK);
    assert_int_equal(whole.rows, 14);
    assert_int_equal(whole.rejected, 4);
    assert_int_equal(whole.label_rows, 3);
    int64_t share = (14 + D.size - 1) / D.size; /* rank 0's block: the largest */
    assert_int_equal(whole.held_max, share);

    /* one rank's reference (compared with the all-ranks file at the end) */
    MPI_Comm solo;
    MPI_Comm_split(D.comm, D.rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
    char whole_one[MM_CFG_STR_MAX];
    snprintf(whole_one, sizeof whole_one, "%s", path_of(D.size == 1 ? "chunks_whole.h5" : "chunks_whole_one.h5"));
    if (D.size > 1 && D.rank == 0) {
        mm_prep_config c1 = c;
        snprintf(c1.output.path, sizeof c1.output.path, "%s", whole_one);
        mm_prep_result r;
        assert_int_equal(run(&c1, solo, &r, NULL), MM_OK);
        assert_int_equal(r.held_max, 14);
    }
    /* and three ranks (blocks of 5, 5, 4 rows) when there are more than three */
    MPI_Comm c3 = MPI_COMM_NULL;
    if (D.size > 3) MPI_Comm_split(D.comm, D.rank < 3 ? 0 : MPI_UNDEFINED, D.rank, &c3);
    const int64_t chunk[] = {1, 3, 14, 1000}; /* 1000 first: the three ranks' reference */
    int diff = 0;
    for (int k = 0; k < 4; k++) {
        for (int mode = 0; mode < 3; mode++) { /* all ranks, one rank, three ranks */
            if ((mode == 1 && D.rank != 0) || (mode == 2 && c3 == MPI_COMM_NULL)) continue;
            char name[64];
            snprintf(name, sizeof name, "chunks_%lld_%s.h5", (long long)chunk[3 - k], mode == 0 ? "all" : mode == 1 ? "one" : "three");
            mm_prep_config cc = c;
            cc.output.chunk_molecules = chunk[3 - k];
            snprintf(cc.output.path, sizeof cc.output.path, "%s", path_of(name));
            mm_prep_result r;
            /* chunks of 3 also in H5Dwrite rounds of 8 bytes (one row of most datasets), which split chunks */
            if (chunk[3 - k] == 3) mm_dataset_set_io_block_bytes(8);
            assert_int_equal(run(&cc, mode == 0 ? D.comm : mode == 1 ? solo : c3, &r, NULL), MM_OK);
            mm_dataset_set_io_block_bytes(0);
            int64_t held = mode == 0 ? share : mode == 1 ? 14 : 5;
            assert_int_equal(r.held_max, held < chunk[3 - k] ? held : chunk[3 - k]);
            assert_int_equal(r.written, whole.written);
            if (D.rank == 0) {
                const char *ref = mode == 0 ? path_of("chunks_whole.h5") : mode == 1 ? whole_one : path_of("chunks_1000_three.h5");
                int same = h5c_same_bytes(ref, cc.output.path);
                if (!same) printf("%s differs from %s\n", name, ref);
                diff += !same + h5c_files_equal(ref, cc.output.path);
            }
        }
    }
    if (D.rank == 0) MPI_Comm_free(&solo);
    if (c3 != MPI_COMM_NULL) MPI_Comm_free(&c3);
    if (D.rank == 0) {
        /* the same molecules written from memory in one set: the same bytes */
        mm_molset ms;
        mm_dataset *ds = NULL;
        assert_int_equal(mm_dataset_open(path_of("chunks_whole.h5"), MPI_COMM_NULL, &ds), MM_OK);
        const mm_dataset_info *info = mm_dataset_get_info(ds);
        assert_int_equal(info->n_molecules, 10);
        assert_int_equal(info->n_rejects, 4);
        assert_int_equal(info->modalities, MM_MOD_ALL & ~(unsigned)(MM_MOD_NMR13C | MM_MOD_NMR1H)); /* a SMILES input: no spectra */
        memset(&ms, 0, sizeof ms);
        assert_int_equal(mm_dataset_read_range(ds, 0, info->n_molecules, info->modalities, &ms), MM_OK);
        assert_int_equal(mm_dataset_read_rejects(ds, &ms), MM_OK);
        mm_dataset_meta meta = {info->featurizer, info->source, info->source_sha256, info->created_by};
        /* through MPI-IO like mmsa_prep (a serial write lays the file out differently) */
        assert_int_equal(mm_dataset_write(path_of("chunks_mem.h5"), MPI_COMM_SELF, &ms, &meta), MM_OK);
        mm_dataset_close(&ds);
        mm_molset_free(&ms);
        int same = h5c_same_bytes(path_of("chunks_whole.h5"), path_of("chunks_mem.h5"));
        if (!same) printf("chunks_mem.h5 differs from chunks_whole.h5\n");
        diff += !same;
        /* and the rank count changes no byte either */
        same = h5c_same_bytes(path_of("chunks_whole.h5"), whole_one);
        if (D.size > 3) same &= h5c_same_bytes(path_of("chunks_whole.h5"), path_of("chunks_1000_three.h5"));
        if (!same) printf("the files of %d rank(s), of one%s differ\n", D.size, D.size > 3 ? " and of three" : "");
        diff += !same;
        assert_int_equal(count_tmp_files(), 0);
        printf("chunks of 1, 3, 14 and 1000 rows on %d rank(s), on 1%s, and the set written from memory: %s "
               "(also across rank counts)\n",
               D.size, D.size > 3 ? " and on 3" : "", diff ? "DIFFERENT" : "byte-identical files");
    }
    MPI_Bcast(&diff, 1, MPI_INT, 0, D.comm);
    assert_int_equal(diff, 0);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* ---------------------------------------------------------------- errors */

/* Every rank fails with `code`; the failing rank's message contains `names`; no output
 * (unless the output is an existing file that must survive), no temporary file. */
static void expect_failure(const mm_prep_config *c, mm_status code, int failed_rank, const char *names)
{
    int existed = file_exists(c->output.path);
    mm_prep_result r;
    mm_status st = mm_prep_run(c, D.comm, NULL, &r);
    if (st != code) mm_error_print(stderr, D.rank);
    assert_int_equal(st, code);
    assert_int_equal(r.failed_rank, failed_rank);
    if (D.rank == failed_rank) {
        if (!strstr(mm_error_message(), names)) mm_error_print(stderr, D.rank);
        assert_non_null(strstr(mm_error_message(), names));
    }
    mm_error_clear();
    MPI_Barrier(D.comm);
    if (D.rank == 0) {
        assert_int_equal(file_exists(c->output.path), existed);
        assert_int_equal(count_tmp_files(), 0);
    }
}

static void test_errors(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    write_file("ok.csv", "smiles,y\nCCO,1\nCCN,0\nCCC,1\n");
    /* missing input: rank 0 finds it, every rank fails, its message names the file */
    mm_prep_config c = cfg_for(path_of("missing.csv"), path_of("missing.h5"));
    expect_failure(&c, MM_ERR_IO, 0, "missing.csv");
    /* the output directory does not exist: found before any featurisation */
    c = cfg_for(path_of("ok.csv"), path_of("no/such/dir/out.h5"));
    expect_failure(&c, MM_ERR_IO, 0, "no/such/dir");
    /* a label column that is not in the header */
    c = cfg_for(path_of("ok.csv"), path_of("nolabel.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "y,z");
    expect_failure(&c, MM_ERR_CONFIG, 0, "'z'");
    /* a SMILES column that is not in the header */
    c = cfg_for(path_of("ok.csv"), path_of("nosmiles.h5"));
    snprintf(c.input.smiles_col, sizeof c.input.smiles_col, "SMILES");
    expect_failure(&c, MM_ERR_CONFIG, 0, "'SMILES'");
    /* settings that contradict each other; the input survives */
    c = cfg_for(path_of("ok.csv"), path_of("ok.csv"));
    expect_failure(&c, MM_ERR_CONFIG, 0, "overwritten");
    c = cfg_for(path_of("ok.csv"), path_of("png.h5"));
    c.features.image = false;
    snprintf(c.report.png_dir, sizeof c.report.png_dir, "%s", path_of("png"));
    expect_failure(&c, MM_ERR_CONFIG, 0, "png_dir");
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static mm_alloc_fn count_fn;
static void *count_ud;
static int n_allocs;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize != 0) n_allocs++;
    return count_fn(count_ud, ptr, osize, nsize);
}

/* The last rank runs out of memory at its n-th allocation, for several n: every rank
 * returns the same failure, no file, no temporary file, nothing leaked. */
static void test_one_rank_out_of_memory(void **state)
{
    (void)state;
    write_file("oom.csv", "smiles,y\nCCO,1\nc1ccccc1,0\nCC(=O)O,1\nCCN,0\n");
    mm_prep_config c = cfg_for(path_of("oom.csv"), path_of("oom.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "y");
    c.features.conformer = false;
    c.features.image_size = 16;
    const int last = D.size - 1;
    /* count the last rank's allocations in a good run, then fail at points spread over them */
    mm_get_allocator(&count_fn, &count_ud);
    n_allocs = 0;
    if (D.rank == last) mm_set_allocator(counting_alloc, NULL);
    mm_prep_result r0;
    assert_int_equal(mm_prep_run(&c, D.comm, NULL, &r0), MM_OK);
    if (D.rank == last) mm_set_allocator(count_fn, count_ud);
    MPI_Bcast(&n_allocs, 1, MPI_INT, last, D.comm);
    assert_true(n_allocs > 20);
    if (D.rank == 0) remove(c.output.path);
    const int nth[] = {1, n_allocs / 8, n_allocs / 4, n_allocs / 2, 3 * n_allocs / 4, n_allocs};
    for (size_t k = 0; k < sizeof nth / sizeof nth[0]; k++) {
        size_t live0 = mm_alloc_live_bytes();
        if (D.rank == last) tu_fail_alloc_after(nth[k]);
        mm_prep_result r;
        mm_status st = mm_prep_run(&c, D.comm, NULL, &r);
        if (D.rank == last) tu_fail_alloc_after(0);
        mm_error_clear();
        int codes[2] = {(int)st, -(int)st}, agreed[2];
        MPI_Allreduce(codes, agreed, 2, MPI_INT, MPI_MAX, D.comm);
        assert_int_equal(agreed[0], -agreed[1]); /* the same status everywhere */
        assert_int_equal(st, MM_ERR_NOMEM);
        assert_true(r.failed_rank == last || r.failed_rank == -1);
        assert_int_equal(mm_alloc_live_bytes(), live0);
        MPI_Barrier(D.comm);
        if (D.rank == 0) {
            assert_false(file_exists(c.output.path));
            assert_int_equal(count_tmp_files(), 0);
        }
    }
    /* and without the failure the same run succeeds */
    mm_prep_result r;
    assert_int_equal(mm_prep_run(&c, D.comm, NULL, &r), MM_OK);
    assert_int_equal(r.written, 4);
    if (D.rank == 0) assert_true(file_exists(c.output.path));
}

/* ---------------------------------------------------------------- real files */

static void test_bace_autodetect(void **state)
{
    (void)state;
    if (!copy_head("moleculenet/bace.csv", "bace30.csv", 31)) {
        if (D.rank == 0) printf("SKIP: %s/data/moleculenet/bace.csv not found\n", tu_shared_dir());
        return;
    }
    mm_prep_config c = cfg_for(path_of("bace30.csv"), path_of("bace30.h5"));
    snprintf(c.input.labels, sizeof c.input.labels, "Class"); /* SMILES column `mol` found by itself */
    c.features.conformer = false;
    c.features.image = false;
    mm_prep_result r;
    assert_int_equal(run(&c, D.comm, &r, NULL), MM_OK);
    assert_int_equal(r.rows, 30);
    assert_int_equal(r.written + r.rejected, 30);
    assert_true(r.written >= 29);
    if (D.rank == 0) {
        /* the labels are the file's Class column, row by row */
        float expect[30];
        FILE *f = fopen(path_of("bace30.csv"), "r");
        char line[4096];
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(strncmp(line, "mol,Class", 9), 0);
        for (int i = 0; i < 30; i++) {
            assert_non_null(fgets(line, sizeof line, f));
            expect[i] = (float)atof(strrchr(line, ',') + 1);
        }
        fclose(f);
        mm_molset ms;
        read_all(path_of("bace30.h5"), &ms, NULL);
        assert_int_equal(ms.n_tasks, 1);
        assert_string_equal(ms.task_names[0], "Class");
        for (int64_t i = 0; i < ms.n; i++) {
            assert_true(ms.labels[i] == expect[ms.source_row[i]]);
            assert_true(strlen(mm_strings_get(&ms.smiles, i)) > 10);
            assert_true(ms.atom_offset[i + 1] - ms.atom_offset[i] > 10);
        }
        mm_molset_free(&ms);
    }
}

static void test_sdf_input(void **state)
{
    (void)state;
    /* the first 5 records: count lines up to the fifth "$$$$" on rank 0 */
    int n_lines = 0;
    if (D.rank == 0) {
        char src[1024], line[4096];
        snprintf(src, sizeof src, "%s/data/spectra_3d/cascade_Exp5K_DFT.sdf.gz", tu_shared_dir());
        gzFile in = gzopen(src, "rb");
        if (in) {
            int recs = 0;
            while (recs < 5 && gzgets(in, line, sizeof line)) {
                n_lines++;
                if (!strncmp(line, "$$$$", 4)) recs++;
            }
            gzclose(in);
        }
    }
    MPI_Bcast(&n_lines, 1, MPI_INT, 0, D.comm);
    if (n_lines == 0 || !copy_head("spectra_3d/cascade_Exp5K_DFT.sdf.gz", "cascade5.sdf", n_lines)) {
        if (D.rank == 0) printf("SKIP: cascade_Exp5K_DFT.sdf.gz not found\n");
        return;
    }
    mm_prep_config c = cfg_for(path_of("cascade5.sdf"), path_of("cascade5.h5"));
    c.features.conformer = false; /* the records' own 3D coordinates are kept anyway */
    c.features.image_size = 32;
    mm_prep_result r;
    assert_int_equal(run(&c, D.comm, &r, NULL), MM_OK);
    assert_int_equal(r.rows, 5);
    assert_int_equal(r.written, 5);
    assert_int_equal(r.conf_input, 5);
    assert_int_equal(r.conf_built, 0);
    assert_int_equal(r.nmr_modalities, MM_MOD_NMR13C); /* "C13 chemical shift" items */
    assert_int_equal(r.nmr_read[MM_NMR_13C], 5);
    if (D.rank == 0) {
        mm_molset ms;
        mm_dataset_info info;
        read_all(path_of("cascade5.h5"), &ms, &info);
        assert_true(info.modalities & MM_MOD_CONFORMER);
        /* the first record is the pentafluorobenzyl triflyl methane of its SMILES tag */
        assert_int_equal(ms.atom_offset[1], 19); /* 19 heavy atoms */
        for (int64_t i = 0; i < ms.n; i++) {
            assert_int_equal(ms.source_row[i], i);
            assert_int_equal(ms.conf_ok[i], 1);
            /* the coordinates belong to the graph: every bond is 0.9 .. 2.3 Angstrom long */
            for (int64_t b = ms.bond_offset[i]; b < ms.bond_offset[i + 1]; b++) {
                const float *p = ms.xyz + 3 * (ms.atom_offset[i] + ms.bond_index[2 * b]);
                const float *q = ms.xyz + 3 * (ms.atom_offset[i] + ms.bond_index[2 * b + 1]);
                double d = sqrt((p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]) +
                                (p[2] - q[2]) * (p[2] - q[2]));
                assert_true(d > 0.9 && d < 2.3);
            }
        }
        mm_molset_free(&ms);
    }
}

/* NMR spectra of SD records: NMR8K rows 0, 2, 112 (a 13C index past the atoms), 140 (13C
 * items 1 then 0, and 1H), 143 (1H only), 144 (13C items 1, 0, 2 and 1H), then two records
 * made here from row 2's molecule: A with "Spectrum 13C 1" fine, "Spectrum 13C 0"
 * malformed and a 15N item; B with an empty 1H item and a 13C spectrum as CASCADE's Exp5K
 * writes it. The file is the same on 1 rank and on all, and for chunks of 1 molecule. */
static void test_sdf_spectra(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    int have = 1;
    if (D.rank == 0) {
        char src[1024];
        snprintf(src, sizeof src, "%s/data/spectra_3d/cascade_NMR8K.sdf.gz", tu_shared_dir());
        mm_table *t = NULL;
        have = mm_table_open(src, NULL, &t) == MM_OK;
        FILE *out = have ? fopen(path_of("nmr.sdf"), "w") : NULL;
        char mol2[8192] = "";
        static const int64_t pick[] = {0, 2, 112, 140, 143, 144};
        for (int k = 0; have && k < 6;) {
            mm_table_row row;
            bool eof = false;
            assert_int_equal(mm_table_next(t, &row, &eof), MM_OK);
            assert_false(eof);
            if (row.row == 2) { /* the molfile block, for the records made here */
                const char *end = strstr(row.record, "M  END\n");
                assert_non_null(end);
                snprintf(mol2, sizeof mol2, "%.*s", (int)(end + 7 - row.record), row.record);
            }
            if (row.row != pick[k]) continue;
            fprintf(out, "%s$$$$\n", row.record);
            k++;
        }
        if (have) {
            fprintf(out, "%s> <Spectrum 13C 1>\n12.9;0.0Q;0|21.2;0.0T;1\n\n> <Spectrum 13C 0>\n12.9;0.0Q;0|x;0.0T;1\n\n"
                         "> <Spectrum 15N 0>\n33.2;0.0S;9\n\n$$$$\n", mol2);
            fprintf(out, "%s> <Spectrum 1H 0>\n\n> <C13 chemical shift>\n1,21.25|0,12.5\n\n$$$$\n", mol2);
            fclose(out);
        }
        mm_table_close(&t);
    }
    MPI_Bcast(&have, 1, MPI_INT, 0, D.comm);
    if (!have) {
        if (D.rank == 0) printf("SKIP: cascade_NMR8K.sdf.gz not readable\n");
        return;
    }
    mm_prep_config c = cfg_for(path_of("nmr.sdf"), path_of("nmr_all.h5"));
    c.features.conformer = false;
    c.features.image = false;
    mm_prep_result r;
    char *summary = NULL;
    assert_int_equal(run(&c, D.comm, &r, &summary), MM_OK);
    assert_int_equal(r.written, 8);
    assert_int_equal(r.nmr_modalities, MM_MOD_NMR13C | MM_MOD_NMR1H);
    assert_int_equal(r.nmr_read[MM_NMR_13C], 5);       /* 0, 2, 140, 144, B */
    assert_int_equal(r.nmr_read[MM_NMR_1H], 3);        /* 140, 143, 144 */
    assert_int_equal(r.nmr_skipped[MM_PREP_NMR_INDEX], 1);     /* 112 */
    assert_int_equal(r.nmr_skipped[MM_PREP_NMR_MALFORMED], 1); /* A */
    assert_int_equal(r.nmr_skipped[MM_PREP_NMR_EMPTY], 1);     /* B's 1H */
    assert_int_equal(r.nmr_skipped[MM_PREP_NMR_LONE_H] + r.nmr_skipped[MM_PREP_NMR_ELEMENT], 0);
    assert_int_equal(r.nmr_extra[MM_NMR_13C], 4);      /* 140: 1, 144: 2, A: 1 */
    assert_int_equal(r.nmr_extra[MM_NMR_1H], 0);
    assert_int_equal(r.nmr_other, 1);
    if (D.rank == 0) {
        printf("%s", summary);
        assert_non_null(strstr(summary, "row 2 (line "));
        assert_non_null(strstr(summary, "data item 'Spectrum 13C 0', peak 5 '45.6;0.0D;24': atom index 24"));
        assert_non_null(strstr(summary, "row 7 (line "));
        assert_non_null(strstr(summary, "data item 'Spectrum 1H 0', no peak"));
        assert_non_null(strstr(summary, "peak 1 'x;0.0T;1': the shift is not a number"));
        mm_molset ms;
        read_all(path_of("nmr_all.h5"), &ms, NULL);
        const mm_spectra *cs = &ms.nmr[MM_NMR_13C], *hs = &ms.nmr[MM_NMR_1H];
        static const uint8_t ok13[8] = {1, 1, 0, 1, 0, 1, 0, 1}, ok1h[8] = {0, 0, 0, 1, 1, 1, 0, 0};
        for (int i = 0; i < 8; i++) {
            assert_int_equal(cs->ok[i], ok13[i]);
            assert_int_equal(hs->ok[i], ok1h[i]);
            /* 13C peaks on carbons, 1H peaks on atoms that carry hydrogens */
            for (int64_t q = cs->peak_offset[i]; q < cs->peak_offset[i + 1]; q++)
                assert_int_equal(ms.atom_feat[9 * (ms.atom_offset[i] + cs->atom[q])], 5);
            for (int64_t q = hs->peak_offset[i]; q < hs->peak_offset[i + 1]; q++)
                assert_true(ms.atom_feat[9 * (ms.atom_offset[i] + hs->atom[q]) + 4] > 0);
        }
        /* row 2, butyl sulfinyl alanine: its 7 shifts in the file's order */
        static const float s2[7] = {12.9f, 21.2f, 23.9f, 50.9f, 51.1f, 52.0f, 171.5f};
        assert_int_equal(cs->peak_offset[2] - cs->peak_offset[1], 7);
        for (int q = 0; q < 7; q++) assert_true(cs->shift[cs->peak_offset[1] + q] == s2[q]);
        /* row 144 (maleic acid): "Spectrum 13C 0", the second of its three items */
        static const float s144[4] = {130.4f, 130.4f, 166.1f, 166.1f};
        assert_int_equal(cs->peak_offset[6] - cs->peak_offset[5], 4);
        for (int q = 0; q < 4; q++) assert_true(cs->shift[cs->peak_offset[5] + q] == s144[q]);
        /* B: "C13 chemical shift", atoms 1 and 0 of the record = row 2's first two peaks' atoms */
        assert_int_equal(cs->peak_offset[8] - cs->peak_offset[7], 2);
        assert_true(cs->shift[cs->peak_offset[7]] == 21.25f && cs->shift[cs->peak_offset[7] + 1] == 12.5f);
        assert_int_equal(cs->atom[cs->peak_offset[7]], cs->atom[cs->peak_offset[1] + 1]);
        assert_int_equal(cs->atom[cs->peak_offset[7] + 1], cs->atom[cs->peak_offset[1]]);
        mm_molset_free(&ms);
    }
    free(summary);
    /* one rank, and chunks of one molecule: the same bytes */
    MPI_Comm solo;
    MPI_Comm_split(D.comm, D.rank == 0 ? 0 : MPI_UNDEFINED, 0, &solo);
    if (D.rank == 0) {
        mm_prep_config c1 = c;
        snprintf(c1.output.path, sizeof c1.output.path, "%s", path_of("nmr_one.h5"));
        assert_int_equal(run(&c1, solo, NULL, NULL), MM_OK);
        MPI_Comm_free(&solo);
    }
    mm_prep_config cc = c;
    cc.output.chunk_molecules = 1;
    snprintf(cc.output.path, sizeof cc.output.path, "%s", path_of("nmr_chunk1.h5"));
    assert_int_equal(run(&cc, D.comm, NULL, NULL), MM_OK);
    /* switched off: no spectra */
    mm_prep_config off = c;
    off.features.nmr = false;
    snprintf(off.output.path, sizeof off.output.path, "%s", path_of("nmr_off.h5"));
    assert_int_equal(run(&off, D.comm, &r, NULL), MM_OK);
    assert_int_equal(r.nmr_modalities, 0u);
    assert_int_equal(r.nmr_read[MM_NMR_13C], 0);
    if (D.rank == 0) {
        assert_true(h5c_same_bytes(path_of("nmr_all.h5"), path_of("nmr_one.h5")));
        assert_true(h5c_same_bytes(path_of("nmr_all.h5"), path_of("nmr_chunk1.h5")));
        mm_molset ms;
        mm_dataset_info info;
        read_all(path_of("nmr_off.h5"), &ms, &info);
        assert_int_equal(info.modalities & (MM_MOD_NMR13C | MM_MOD_NMR1H), 0u);
        mm_molset_free(&ms);
    }
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

/* ---------------------------------------------------------------- settings and binary */

static void test_example_yaml(void **state)
{
    (void)state;
    mm_prep_config c;
    assert_int_equal(mm_cfg_load_file(&mm_prep_schema, "configs/prep_example.yaml", &c), MM_OK);
    assert_int_equal(mm_prep_config_validate(&c), MM_OK);
    assert_string_equal(c.input.path, "configs/data/demo.csv");
    /* every key of the schema is shown in the example */
    FILE *f = fopen("configs/prep_example.yaml", "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    for (int i = 0; i < mm_prep_schema.n_fields; i++) {
        char key[160];
        snprintf(key, sizeof key, "\n  %s:", mm_prep_schema.fields[i].key);
        if (!strstr(text, key)) fprintf(stderr, "configs/prep_example.yaml lacks %s.%s\n",
                                        mm_prep_schema.fields[i].section, mm_prep_schema.fields[i].key);
        assert_non_null(strstr(text, key));
    }
    /* a wrong key in a settings file is an error with its line */
    assert_int_equal(mm_cfg_load_string(&mm_prep_schema, "t.yaml", "input:\n  path: a.csv\n  lables: y\n", &c),
                     MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "t.yaml:3"));
    assert_non_null(strstr(mm_error_message(), "labels"));
    mm_error_clear();
}

static void test_binary(void **state)
{
    (void)state;
    if (D.rank != 0) return;
    const char *bin = getenv("BIN") ? getenv("BIN") : "bin";
    char exe[512], cmd[2048];
    snprintf(exe, sizeof exe, "%s/mmsa_prep", bin);
    if (access(exe, X_OK) != 0) {
        printf("SKIP binary checks: %s not built (make apps)\n", exe);
        return;
    }
    /* a clean environment: the child is its own singleton MPI job, not part of ours;
     * LeakSanitizer off in a sanitizer build (Open MPI's components leak at exit) */
    const char *envp = "env -i PATH=/usr/bin:/bin HOME=/tmp ASAN_OPTIONS=detect_leaks=0";
    snprintf(cmd, sizeof cmd, "%s %s --help > %s 2>&1", envp, exe, path_of("help.txt"));
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    FILE *f = fopen(path_of("help.txt"), "r");
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "--input FILE"));
    assert_non_null(strstr(text, "--inspect FILE.h5"));
    snprintf(cmd, sizeof cmd, "%s %s --no-such-flag > %s 2>&1", envp, exe, path_of("bad.txt"));
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "%s %s --input x.csv --image-size 5 > %s 2>&1", envp, exe, path_of("bad.txt"));
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    /* a missing input: exit 1, the message names it, no output */
    snprintf(cmd, sizeof cmd, "%s %s --input %s --output %s > %s 2>&1", envp, exe, path_of("none.csv"),
             path_of("none.h5"), path_of("missing.txt"));
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    f = fopen(path_of("missing.txt"), "r");
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "none.csv"));
    assert_false(file_exists(path_of("none.h5")));
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
        cmocka_unit_test(test_label_list),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_rank_count_invariance),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_one_rank_out_of_memory),
        cmocka_unit_test(test_bace_autodetect),
        cmocka_unit_test(test_sdf_input),
        cmocka_unit_test(test_sdf_spectra),
        cmocka_unit_test(test_example_yaml),
        cmocka_unit_test(test_binary),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Barrier(D.comm); /* rank 0 removes the directory at exit */
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
