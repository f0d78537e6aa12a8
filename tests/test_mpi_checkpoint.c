/* MPI tests of checkpoints (checkpoint.h), run with 1 and 2 ranks: bitwise round trip
 * of parameters, AdamW/SGD state, buffers and the partitioned memory bank; keep-K
 * rotation and `latest`; restart on a different rank count (a 1-rank
 * sub-communicator writes, all ranks read, and back); model mismatches, corrupt and
 * foreign files, broken `latest`, unwritable directories and a failure on one rank
 * only: an error naming the file on every rank, no hang, no partial file; and loading
 * parameters by prefix. */
#include <dirent.h>
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mmsa/alloc.h"
#include "mmsa/checkpoint.h"
#include "testutil.h"

static mm_dist D;
static char base[256]; /* rank 0's temporary directory, broadcast */

#define BANK_M 11 /* uneven blocks on 2 ranks */
#define BANK_DIM 4
#define N_BUF 7

/* ------------------------------------------------------------------ a small model */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
} pspec;

static const pspec SPECS[] = {
    {"enc.graph.mlps.0.0.weight", 2, {6, 5}},
    {"enc.graph.mlps.0.0.bias", 1, {6}},
    {"enc.fp.emb", 3, {3, 2, 4}},
    {"head.proj.weight", 2, {2, 6}},
    {"head.scale", 1, {1}},
};
#define N_SPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

typedef struct {
    mm_params p;
    mm_optimizer o;
    float buf[N_BUF];
    mm_memory_bank b;
    bool has_bank;
    mm_ckpt_state s;
} model;

static void declare(mm_params *p, const pspec *specs, int n)
{
    mm_params_init(p);
    for (int i = 0; i < n; i++) assert_int_equal(mm_params_add(p, specs[i].name, specs[i].ndim, specs[i].shape, NULL), MM_OK);
    assert_int_equal(mm_params_alloc(p), MM_OK);
}

static float bank_value(int64_t row, int64_t j) { return (float)sin(0.37 * (double)row + 1.3 * (double)j) / 3.0f; }

/* Builds the model on dist bd (NULL: no bank). trained: parameters filled and three
 * AdamW (or SGD) steps taken with synthetic gradients, buffers and bank set to known
 * values; otherwise everything else (zeros, a bank from another seed). The same call
 * gives bitwise the same values on every rank. */
static void model_build(model *m, const pspec *specs, int n, bool sgd, mm_dist *bd, bool trained)
{
    memset(m, 0, sizeof *m);
    declare(&m->p, specs, n);
    if (sgd)
        assert_int_equal(mm_optim_sgd(&m->o, &m->p, 0.9f, false, 0.01f), MM_OK);
    else
        assert_int_equal(mm_optim_adamw(&m->o, &m->p, 0.9f, 0.999f, 1e-8f, 0.01f), MM_OK);
    if (trained) {
        for (int i = 0; i < m->p.count; i++) mm_params_init_normal(&m->p, i, 0.5f, 42);
        for (int step = 0; step < 3; step++) {
            for (int i = 0; i < m->p.count; i++) {
                float *g = mm_params_grad(&m->p, i);
                for (size_t k = 0; k < m->p.info[i].n; k++) g[k] = (float)sin(0.1 * (double)(k + 1) * (i + 1) + step);
            }
            assert_int_equal(mm_optim_step(&m->o, &m->p, 1e-2f), MM_OK);
        }
        for (int k = 0; k < N_BUF; k++) m->buf[k] = 0.25f * (float)k - 0.6f;
    }
    if (bd) {
        assert_int_equal(mm_bank_init(&m->b, bd, BANK_M, BANK_DIM, trained ? 7 : 99, 0.1f, 0.99f, 1000), MM_OK);
        m->has_bank = true;
        if (trained)
            for (int64_t a = 0; a < m->b.m_local; a++) {
                for (int64_t j = 0; j < BANK_DIM; j++) m->b.anchors[a * BANK_DIM + j] = bank_value(m->b.m0 + a, j);
                m->b.unused[a] = 3 * (m->b.m0 + a) + 1;
            }
    }
    m->s = (mm_ckpt_state){
        .step = trained ? 1234 : 0, .epoch = trained ? 3 : 0, .cursor = trained ? 17 : 0,
        .seed = trained ? 0xfeedface12345678ULL : 0, .params = &m->p, .opt = &m->o, .buffers = m->buf,
        .n_buffers = N_BUF, .bn_batches = trained ? 555 : 0, .bank = m->has_bank ? &m->b : NULL,
        .job_text = "model: {embed_dim: 16}\n"};
}

static void model_free(model *m)
{
    if (m->has_bank) mm_bank_destroy(&m->b);
    mm_optim_destroy(&m->o);
    mm_params_destroy(&m->p);
}

/* This rank's bank block holds the trained values. */
static void assert_bank_trained(const mm_memory_bank *b)
{
    for (int64_t a = 0; a < b->m_local; a++) {
        for (int64_t j = 0; j < BANK_DIM; j++) {
            float want = bank_value(b->m0 + a, j);
            assert_memory_equal(&b->anchors[a * BANK_DIM + j], &want, sizeof want);
        }
        assert_int_equal(b->unused[a], 3 * (b->m0 + a) + 1);
    }
}

/* The whole bank gathered from every rank of b's communicator equals the trained one. */
static void assert_gathered_bank_trained(const mm_memory_bank *b)
{
    int size = b->d->size;
    int counts[8], displs[8];
    assert_true(size <= 8);
    for (int r = 0; r < size; r++) {
        int64_t s, c;
        mm_dist_block(BANK_M, size, r, &s, &c);
        counts[r] = (int)(c * BANK_DIM);
        displs[r] = (int)(s * BANK_DIM);
    }
    float all[BANK_M * BANK_DIM];
    assert_int_equal(MPI_Allgatherv(b->anchors, (int)(b->m_local * BANK_DIM), MPI_FLOAT, all, counts, displs, MPI_FLOAT, b->d->comm),
                     MPI_SUCCESS);
    float want[BANK_M * BANK_DIM];
    for (int64_t i = 0; i < BANK_M; i++)
        for (int64_t j = 0; j < BANK_DIM; j++) want[i * BANK_DIM + j] = bank_value(i, j);
    assert_memory_equal(all, want, sizeof want);
}

/* Everything restored equals the trained model, bitwise. */
static void assert_same_state(const model *got, const model *want)
{
    assert_int_equal(got->p.total, want->p.total);
    assert_memory_equal(got->p.data, want->p.data, want->p.total * sizeof(float));
    assert_memory_equal(got->o.m, want->o.m, want->o.n * sizeof(float));
    if (want->o.v) assert_memory_equal(got->o.v, want->o.v, want->o.n * sizeof(float));
    assert_int_equal(got->o.step, want->o.step);
    assert_memory_equal(got->buf, want->buf, sizeof want->buf);
    assert_int_equal(got->s.step, want->s.step);
    assert_int_equal(got->s.epoch, want->s.epoch);
    assert_int_equal(got->s.cursor, want->s.cursor);
    assert_true(got->s.seed == want->s.seed);
    assert_int_equal(got->s.bn_batches, want->s.bn_batches);
}

/* ------------------------------------------------------------------ file helpers */

static void path_of(char *out, size_t n, const char *sub)
{
    snprintf(out, n, "%s/%s", base, sub);
}

static void barrier(void) { MPI_Barrier(D.comm); }

static bool exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void assert_msg_has(const char *needle)
{
    if (!strstr(mm_error_message(), needle)) {
        fprintf(stderr, "[rank %d] message \"%s\" lacks \"%s\"\n", D.rank, mm_error_message(), needle);
        fail();
    }
}

static long file_size(const char *p)
{
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    return (long)sb.st_size;
}

/* Copies src to dst, keeping only the first `keep` bytes (-1: all). Rank 0 only. */
static void copy_file(const char *src, const char *dst, long keep)
{
    long n = file_size(src);
    if (keep >= 0 && keep < n) n = keep;
    char *b = malloc((size_t)n + 1);
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(b);
}

/* Byte offset in the file of dataset dname's raw data (contiguous layout). */
static long data_offset(const char *file, const char *dname)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t ds = H5Dopen2(f, dname, H5P_DEFAULT);
    assert_true(ds >= 0);
    haddr_t off = H5Dget_offset(ds);
    assert_true(off != HADDR_UNDEF);
    H5Dclose(ds);
    H5Fclose(f);
    return (long)off;
}

static void flip_byte(const char *file, long off)
{
    FILE *f = fopen(file, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static void write_text(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Names in dir (rank 0), sorted, joined by spaces. */
static void list_dir(const char *dir, char *out, size_t n)
{
    char names[32][64];
    int k = 0;
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        assert_true(k < 32);
        assert_true(strlen(e->d_name) < 64);
        memcpy(names[k++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(dp);
    qsort(names, (size_t)k, 64, (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        strncat(out, i ? " " : "", n - strlen(out) - 1);
        strncat(out, names[i], n - strlen(out) - 1);
    }
}

static void assert_latest_is(const char *dir, const char *name)
{
    char p[512], want[512];
    bool found = false;
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_OK);
    assert_true(found);
    snprintf(want, sizeof want, "%s/%s", dir, name);
    assert_string_equal(p, want);
}

/* ------------------------------------------------------------------ tests */

static void test_roundtrip_bitwise(void **state)
{
    (void)state;
    char dir[300];
    path_of(dir, sizeof dir, "rt");
    model w, r;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    /* a long job text: over the 64 KiB limit of compact attribute storage */
    size_t jl = 100000;
    char *job = malloc(jl + 1);
    for (size_t i = 0; i < jl; i++) job[i] = (char)('a' + i % 26);
    job[jl] = '\0';
    w.s.job_text = job;
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 3), MM_OK);
    assert_latest_is(dir, "step_000000001234.h5");

    model_build(&r, SPECS, N_SPECS, false, &D, false);
    char p[512];
    snprintf(p, sizeof p, "%s/step_000000001234.h5", dir);
    assert_int_equal(mm_ckpt_read(p, &D, &r.s), MM_OK);
    assert_same_state(&r, &w);
    assert_bank_trained(&r.b);
    assert_gathered_bank_trained(&r.b);

    barrier();
    if (D.rank == 0) {
        /* the documented layout, read with plain serial HDF5 */
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        assert_true(f >= 0);
        hid_t a = H5Aopen(f, "n_ranks_written", H5P_DEFAULT);
        int64_t nr = 0;
        assert_true(H5Aread(a, H5T_NATIVE_INT64, &nr) >= 0);
        assert_int_equal(nr, D.size);
        H5Aclose(a);
        a = H5Aopen(f, "job", H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        assert_int_equal(H5Tget_size(t), jl + 1);
        char *back = malloc(jl + 1);
        assert_true(H5Aread(a, t, back) >= 0);
        assert_string_equal(back, job);
        free(back);
        H5Tclose(t);
        H5Aclose(a);
        hid_t ds = H5Dopen2(f, "/params/enc.graph.mlps.0.0.weight", H5P_DEFAULT);
        assert_true(ds >= 0);
        hid_t sp = H5Dget_space(ds);
        hsize_t dims[3];
        assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 2);
        assert_true(dims[0] == 6 && dims[1] == 5);
        H5Sclose(sp);
        H5Dclose(ds);
        ds = H5Dopen2(f, "/memory/unused", H5P_DEFAULT);
        t = H5Dget_type(ds);
        assert_true(H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 8);
        H5Tclose(t);
        sp = H5Dget_space(ds);
        assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 1);
        assert_true(dims[0] == BANK_M);
        H5Sclose(sp);
        H5Dclose(ds);
        assert_true(H5Lexists(f, "/optim/v/head.scale", H5P_DEFAULT) > 0);
        H5Fclose(f);
        char ls[512];
        list_dir(dir, ls, sizeof ls);
        assert_string_equal(ls, "latest step_000000001234.h5"); /* no temp files left */
    }
    barrier();
    free(job);
    model_free(&w);
    model_free(&r);
}

static void test_sgd_roundtrip_and_kind_mismatch(void **state)
{
    (void)state;
    char dir[300], p[512];
    path_of(dir, sizeof dir, "sgd");
    model w, r, a;
    model_build(&w, SPECS, N_SPECS, true, NULL, true); /* no bank this time */
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    snprintf(p, sizeof p, "%s/step_000000001234.h5", dir);
    model_build(&r, SPECS, N_SPECS, true, NULL, false);
    assert_int_equal(mm_ckpt_read(p, &D, &r.s), MM_OK);
    assert_null(r.o.v);
    assert_same_state(&r, &w);

    model_build(&a, SPECS, N_SPECS, false, NULL, false);
    assert_int_equal(mm_ckpt_read(p, &D, &a.s), MM_ERR_FORMAT);
    assert_msg_has(p);
    assert_msg_has("sgd");
    assert_msg_has("adamw");
    mm_error_clear();
    /* a bank requested but none saved */
    model_free(&a);
    model_build(&a, SPECS, N_SPECS, true, &D, false);
    assert_int_equal(mm_ckpt_read(p, &D, &a.s), MM_ERR_FORMAT);
    assert_msg_has(p);
    assert_msg_has("/memory");
    mm_error_clear();
    model_free(&w);
    model_free(&r);
    model_free(&a);
}

static void test_keep_rotation(void **state)
{
    (void)state;
    char dir[300];
    path_of(dir, sizeof dir, "rot/nested"); /* parents are created too */
    model w;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    for (int k = 1; k <= 5; k++) {
        w.s.step = 10 * k;
        assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 2), MM_OK);
    }
    assert_latest_is(dir, "step_000000000050.h5");
    barrier();
    if (D.rank == 0) {
        char ls[512];
        list_dir(dir, ls, sizeof ls);
        assert_string_equal(ls, "latest step_000000000040.h5 step_000000000050.h5");
    }
    /* a resumed run writing an older step never deletes the file it just wrote */
    w.s.step = 45;
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 1), MM_OK);
    assert_latest_is(dir, "step_000000000045.h5");
    barrier();
    if (D.rank == 0) {
        char ls[512];
        list_dir(dir, ls, sizeof ls);
        assert_string_equal(ls, "latest step_000000000045.h5");
    }
    barrier();
    model_free(&w);
}

/* Rank 0 alone (a 1-rank sub-communicator) writes, every rank reads; then every rank
 * writes and rank 0 alone reads. The bank is partitioned differently each time. */
static void test_rank_count_change(void **state)
{
    (void)state;
    char dir1[300], dirw[300], p[512];
    path_of(dir1, sizeof dir1, "from1");
    path_of(dirw, sizeof dirw, "fromall");
    MPI_Comm sub;
    assert_int_equal(MPI_Comm_split(MPI_COMM_WORLD, D.rank == 0 ? 0 : MPI_UNDEFINED, 0, &sub), MPI_SUCCESS);
    mm_dist sd = {.comm = MPI_COMM_NULL};
    model w, r;
    if (D.rank == 0) {
        assert_int_equal(mm_dist_init(&sd, sub), MM_OK);
        assert_int_equal(sd.size, 1);
        model_build(&w, SPECS, N_SPECS, false, &sd, true);
        assert_int_equal(w.b.m_local, BANK_M);
        assert_int_equal(mm_ckpt_write(dir1, &sd, &w.s, 0), MM_OK);
        model_free(&w);
    }
    barrier();
    model_build(&w, SPECS, N_SPECS, false, NULL, true); /* the expected values, on every rank */
    model_build(&r, SPECS, N_SPECS, false, &D, false);
    snprintf(p, sizeof p, "%s/step_000000001234.h5", dir1);
    assert_int_equal(mm_ckpt_read(p, &D, &r.s), MM_OK);
    assert_same_state(&r, &w);
    assert_bank_trained(&r.b);
    assert_gathered_bank_trained(&r.b);
    model_free(&r);
    model_free(&w);

    model_build(&w, SPECS, N_SPECS, false, &D, true);
    assert_int_equal(mm_ckpt_write(dirw, &D, &w.s, 0), MM_OK);
    barrier();
    if (D.rank == 0) {
        model_build(&r, SPECS, N_SPECS, false, &sd, false);
        snprintf(p, sizeof p, "%s/step_000000001234.h5", dirw);
        assert_int_equal(mm_ckpt_read(p, &sd, &r.s), MM_OK);
        assert_same_state(&r, &w);
        assert_int_equal(r.b.m_local, BANK_M);
        assert_bank_trained(&r.b);
        model_free(&r);
        mm_dist_destroy(&sd);
        MPI_Comm_free(&sub);
    }
    barrier();
    model_free(&w);
}

static void expect_read_error(const char *p, model *m, mm_status code, const char *what)
{
    assert_int_equal(mm_ckpt_read(p, &D, &m->s), code);
    assert_msg_has(p);
    assert_msg_has(what);
    mm_error_clear();
}

static void test_model_mismatch(void **state)
{
    (void)state;
    char dir[300], p[512];
    path_of(dir, sizeof dir, "mm");
    model w, r;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    snprintf(p, sizeof p, "%s/step_000000001234.h5", dir);
    model_free(&w);

    pspec more[N_SPECS + 1];
    memcpy(more, SPECS, sizeof SPECS);
    more[N_SPECS] = (pspec){"enc.extra.weight", 2, {2, 2}};
    model_build(&r, more, N_SPECS + 1, false, &D, false);
    expect_read_error(p, &r, MM_ERR_FORMAT, "enc.extra.weight");
    assert_int_equal(mm_ckpt_read(p, &D, &r.s), MM_ERR_FORMAT);
    assert_msg_has("missing");
    mm_error_clear();
    model_free(&r);

    model_build(&r, SPECS, N_SPECS - 1, false, &D, false); /* no head.scale */
    expect_read_error(p, &r, MM_ERR_FORMAT, "head.scale");
    model_free(&r);

    pspec wrong[N_SPECS];
    memcpy(wrong, SPECS, sizeof SPECS);
    wrong[3].shape[0] = 3; /* head.proj.weight [3, 6] instead of [2, 6] */
    model_build(&r, wrong, N_SPECS, false, &D, false);
    expect_read_error(p, &r, MM_ERR_FORMAT, "/params/head.proj.weight");
    assert_int_equal(mm_ckpt_read(p, &D, &r.s), MM_ERR_FORMAT);
    assert_msg_has("[2, 6]");
    assert_msg_has("[3, 6]");
    mm_error_clear();
    model_free(&r);

    model_build(&r, SPECS, N_SPECS, false, &D, false);
    r.s.n_buffers = N_BUF - 1;
    expect_read_error(p, &r, MM_ERR_FORMAT, "/buffers");
    model_free(&r);

    /* a bank of another size */
    model_build(&r, SPECS, N_SPECS, false, NULL, false);
    mm_memory_bank big;
    assert_int_equal(mm_bank_init(&big, &D, BANK_M + 1, BANK_DIM, 1, 0.1f, 0.99f, 1000), MM_OK);
    r.s.bank = &big;
    expect_read_error(p, &r, MM_ERR_FORMAT, "/memory/anchors");
    mm_bank_destroy(&big);
    model_free(&r);
}

static void test_corrupt_and_foreign_files(void **state)
{
    (void)state;
    char dir[300], good[512], trunc[512], garbage[512], flipped[512], bankflip[512], foreign[512], empty[512];
    path_of(dir, sizeof dir, "bad");
    model w, r;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    model_free(&w);
    snprintf(good, sizeof good, "%s/step_000000001234.h5", dir);
    snprintf(trunc, sizeof trunc, "%s/truncated.h5", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.h5", dir);
    snprintf(flipped, sizeof flipped, "%s/flipped.h5", dir);
    snprintf(bankflip, sizeof bankflip, "%s/bankflip.h5", dir);
    snprintf(foreign, sizeof foreign, "%s/dataset.h5", dir);
    snprintf(empty, sizeof empty, "%s/empty.h5", dir);
    if (D.rank == 0) {
        copy_file(good, trunc, file_size(good) / 2);
        copy_file(good, empty, 0);
        FILE *f = fopen(garbage, "wb");
        assert_non_null(f);
        for (int i = 0; i < 5000; i++) fputc((i * 7919 + 13) & 0xff, f);
        fclose(f);
        copy_file(good, flipped, -1);
        flip_byte(flipped, data_offset(flipped, "/params/enc.graph.mlps.0.0.weight") + 37);
        /* the last anchor row belongs to the last rank */
        copy_file(good, bankflip, -1);
        flip_byte(bankflip, data_offset(bankflip, "/memory/anchors") + (BANK_M - 1) * BANK_DIM * 4 + 2);
        /* a valid HDF5 file of another kind */
        hid_t fh = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
        H5Tset_size(t, 13);
        hid_t a = H5Acreate2(fh, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "mmsa-dataset");
        H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(t);
        H5Fclose(fh);
    }
    barrier();
    model_build(&r, SPECS, N_SPECS, false, &D, false);
    expect_read_error(trunc, &r, MM_ERR_FORMAT, "truncated");
    assert_int_equal(mm_ckpt_read(trunc, &D, &r.s), MM_ERR_FORMAT);
    assert_msg_has("(HDF5: "); /* HDF5's own reason comes along */
    mm_error_clear();
    expect_read_error(empty, &r, MM_ERR_FORMAT, "empty.h5");
    expect_read_error(garbage, &r, MM_ERR_FORMAT, "not an HDF5 file");
    expect_read_error(flipped, &r, MM_ERR_FORMAT, "/params/enc.graph.mlps.0.0.weight");
    expect_read_error(bankflip, &r, MM_ERR_FORMAT, "/memory/anchors");
    expect_read_error(foreign, &r, MM_ERR_FORMAT, "mmsa-dataset");
    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope.h5", dir);
    expect_read_error(missing, &r, MM_ERR_IO, "No such file");
    int n = -1;
    assert_int_equal(mm_ckpt_load_params(flipped, MPI_COMM_SELF, &r.p, NULL, &n), MM_ERR_FORMAT);
    assert_msg_has("checksum");
    mm_error_clear();
    assert_int_equal(mm_ckpt_load_params(garbage, D.comm, &r.p, NULL, &n), MM_ERR_FORMAT);
    assert_msg_has(garbage);
    mm_error_clear();
    /* the intact file still reads after all that */
    assert_int_equal(mm_ckpt_read(good, &D, &r.s), MM_OK);
    assert_bank_trained(&r.b);
    model_free(&r);
}

static void test_latest_errors(void **state)
{
    (void)state;
    char dir[300], p[512], lp[512];
    bool found = true;
    path_of(dir, sizeof dir, "nowhere");
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_OK);
    assert_false(found);
    path_of(dir, sizeof dir, "lat");
    snprintf(lp, sizeof lp, "%s/latest", dir);
    if (D.rank == 0) assert_int_equal(mkdir(dir, 0777), 0);
    barrier();
    found = true;
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_OK); /* a directory without latest */
    assert_false(found);
    barrier();
    if (D.rank == 0) write_text(lp, "step_000000000099.h5\n");
    barrier();
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_ERR_IO);
    assert_false(found);
    assert_msg_has("step_000000000099.h5");
    assert_msg_has(lp);
    mm_error_clear();
    barrier();
    if (D.rank == 0) write_text(lp, "\n");
    barrier();
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_ERR_FORMAT);
    assert_msg_has(lp);
    mm_error_clear();
    barrier();
    if (D.rank == 0) write_text(lp, "../../etc/passwd");
    barrier();
    assert_int_equal(mm_ckpt_latest(dir, p, sizeof p, &found), MM_ERR_FORMAT);
    mm_error_clear();
    /* a real checkpoint fixes it; a too small buffer is an error, not a truncated path */
    model w;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    assert_latest_is(dir, "step_000000001234.h5");
    char small[16];
    assert_int_equal(mm_ckpt_latest(dir, small, sizeof small, &found), MM_ERR_RANGE);
    mm_error_clear();
    model_free(&w);
}

static void test_write_failures(void **state)
{
    (void)state;
    char file[300], dir[300], p[512];
    model w;
    model_build(&w, SPECS, N_SPECS, false, &D, true);

    /* a directory under a regular file */
    path_of(file, sizeof file, "plainfile");
    if (D.rank == 0) write_text(file, "not a directory\n");
    barrier();
    path_of(dir, sizeof dir, "plainfile/ckpt");
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 2), MM_ERR_IO);
    assert_msg_has(dir);
    mm_error_clear();

    /* the final name is taken by a directory: the rename fails after a complete write */
    path_of(dir, sizeof dir, "blocked");
    w.s.step = 1;
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    snprintf(p, sizeof p, "%s/step_000000000002.h5", dir);
    if (D.rank == 0) {
        assert_int_equal(mkdir(p, 0777), 0);
        char inside[600];
        snprintf(inside, sizeof inside, "%s/keep", p); /* non-empty: rename cannot replace it */
        write_text(inside, "x");
    }
    barrier();
    w.s.step = 2;
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_ERR_IO);
    assert_msg_has("step_000000000002.h5");
    mm_error_clear();
    assert_latest_is(dir, "step_000000000001.h5");
    barrier();
    if (D.rank == 0) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s/.step_000000000002.h5.tmp", dir);
        assert_false(exists(tmp));
    }
    barrier();

    /* an allocation failure on the last rank only: every rank fails, nothing is written */
    w.s.step = 3;
    if (D.rank == D.size - 1) tu_fail_alloc_after(1);
    mm_status st = mm_ckpt_write(dir, &D, &w.s, 0);
    tu_fail_alloc_after(0);
    assert_int_equal(st, MM_ERR_NOMEM);
    mm_error_clear();
    assert_latest_is(dir, "step_000000000001.h5");
    if (D.rank == 0) {
        snprintf(p, sizeof p, "%s/step_000000000003.h5", dir);
        assert_false(exists(p));
    }

    /* ranks passing different models: refused on every rank before any file exists */
    if (D.size > 1) {
        model odd;
        model_build(&odd, SPECS, D.rank == 1 ? N_SPECS - 1 : N_SPECS, false, &D, true);
        odd.s.step = 4;
        assert_int_equal(mm_ckpt_write(dir, &D, &odd.s, 0), MM_ERR_ARG);
        assert_msg_has("ranks disagree");
        mm_error_clear();
        model_free(&odd);
        assert_latest_is(dir, "step_000000000001.h5");
    }
    barrier();
    model_free(&w);
}

static void test_load_params_prefix(void **state)
{
    (void)state;
    char dir[300], p[512];
    path_of(dir, sizeof dir, "lp");
    model w;
    model_build(&w, SPECS, N_SPECS, false, &D, true);
    assert_int_equal(mm_ckpt_write(dir, &D, &w.s, 0), MM_OK);
    snprintf(p, sizeof p, "%s/step_000000001234.h5", dir);

    /* a fine-tuning model: the encoder of the checkpoint plus a new head */
    const pspec ft[] = {
        {"enc.graph.mlps.0.0.weight", 2, {6, 5}},
        {"enc.graph.mlps.0.0.bias", 1, {6}},
        {"enc.fp.emb", 3, {3, 2, 4}},
        {"task.head.weight", 2, {1, 6}},
    };
    mm_params q;
    declare(&q, ft, 4);
    int n = -1;
    /* each rank alone: any communicator works */
    assert_int_equal(mm_ckpt_load_params(p, MPI_COMM_SELF, &q, "enc.graph.", &n), MM_OK);
    assert_int_equal(n, 2);
    for (int i = 0; i < 2; i++)
        assert_memory_equal(mm_params_data(&q, i), mm_params_data(&w.p, mm_params_find(&w.p, ft[i].name)),
                            q.info[i].n * sizeof(float));
    for (size_t k = 0; k < q.info[2].n; k++) assert_true(mm_params_data(&q, 2)[k] == 0.0f);
    assert_int_equal(mm_ckpt_load_params(p, D.comm, &q, NULL, &n), MM_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(mm_params_data(&q, 2), mm_params_data(&w.p, mm_params_find(&w.p, "enc.fp.emb")),
                        q.info[2].n * sizeof(float));
    for (size_t k = 0; k < q.info[3].n; k++) assert_true(mm_params_data(&q, 3)[k] == 0.0f);
    assert_int_equal(mm_ckpt_load_params(p, MPI_COMM_SELF, &q, "nothing.", &n), MM_OK);
    assert_int_equal(n, 0);
    mm_params_destroy(&q);

    const pspec bad[] = {{"enc.fp.emb", 2, {6, 4}}};
    declare(&q, bad, 1);
    assert_int_equal(mm_ckpt_load_params(p, MPI_COMM_SELF, &q, "enc.", &n), MM_ERR_FORMAT);
    assert_msg_has(p);
    assert_msg_has("/params/enc.fp.emb");
    mm_error_clear();
    mm_params_destroy(&q);

    /* BatchNorm statistics for fine-tuning: a prefix of /buffers, and bn_batches */
    float buf[N_BUF];
    int64_t nb = -1;
    for (int k = 0; k < N_BUF; k++) buf[k] = -7.0f;
    assert_int_equal(mm_ckpt_load_buffers(p, MPI_COMM_SELF, buf, N_BUF - 1, &nb), MM_OK);
    assert_memory_equal(buf, w.buf, (N_BUF - 1) * sizeof(float));
    assert_true(buf[N_BUF - 1] == -7.0f);
    assert_int_equal(nb, w.s.bn_batches);
    assert_int_equal(mm_ckpt_load_buffers(p, D.comm, buf, N_BUF + 1, &nb), MM_ERR_FORMAT);
    assert_msg_has("fewer than the");
    assert_msg_has(p);
    mm_error_clear();
    model_free(&w);
}

/* Open MPI's dynamically loaded components leave allocations behind at
 * MPI_Finalize, which LeakSanitizer would report against this program; the library's
 * own heap is checked through mm_alloc_live_bytes instead (see main). */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return 1; }

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD) != MM_OK) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (D.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir());
    MPI_Bcast(base, (int)sizeof base, MPI_CHAR, 0, D.comm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_bitwise),
        cmocka_unit_test(test_sgd_roundtrip_and_kind_mismatch),
        cmocka_unit_test(test_keep_rotation),
        cmocka_unit_test(test_rank_count_change),
        cmocka_unit_test(test_model_mismatch),
        cmocka_unit_test(test_corrupt_and_foreign_files),
        cmocka_unit_test(test_latest_errors),
        cmocka_unit_test(test_write_failures),
        cmocka_unit_test(test_load_params_prefix),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (mm_alloc_live_bytes() != 0) {
        fprintf(stderr, "[  FAILED  ] 1 test(s): %zu bytes still allocated through mm_malloc\n", mm_alloc_live_bytes());
        failed = failed ? failed : 1;
    }
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
