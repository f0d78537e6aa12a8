/* Training-loop tests on the golden file's 16 molecules (a valid dataset file):
 * N steps + restart + N steps is bitwise 2N steps; P ranks follow the 1-rank loss
 * trajectory; a checkpoint written on one rank count resumes on another; a NaN stops
 * the run with a clear error and leaves the last checkpoint intact; memory does not
 * grow with steps. */
#include <math.h>
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

#include <hdf5.h>

#include "mmsa/checkpoint.h"
#include "mmsa/export.h"
#include "mmsa/train.h"
#include "testutil.h"

static mm_dist WORLD, SELF;
static char golden[400], base[256];

static void small_job(mm_job *job, const char *run)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    const char *yaml = "model:\n  embed_dim: 16\n  proj_hidden: 16\n  proj_dim: 8\n  gin_hidden: 12\n  gin_layers: 2\n"
                       "  gin_dropout: 0.2\n  schnet_hidden: 8\n  schnet_filters: 8\n  schnet_interactions: 2\n"
                       "  cnn_channels: [4, 4, 8, 8]\n  fp_hidden: 8\n  gate_att_dim: 8\n  decoder_hidden: 8\n  hg_hidden: 8\n"
                       "loss:\n  knn_k: 3\n  n_anchors: 12\n  mem_reseed_after: 3\n"
                       "train:\n  batch_size: 8\n  epochs: 4\n  warmup_steps: 2\n  log_every: 1\n  progress: false\n"
                       "checkpoint:\n  every: 0\n  keep: 2\n";
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "test job", yaml, job), MM_OK);
    snprintf(job->train.dataset, sizeof job->train.dataset, "%s", golden);
    snprintf(job->train.run_dir, sizeof job->train.run_dir, "%s/%s", base, run);
}

/* This rank's block of the memory bank, anchors then their idle-step counters. */
typedef struct {
    unsigned char *bytes;
    size_t n;
} bank_copy;

/* Train `steps` steps from scratch (or resume) and return the losses and a copy of the
 * parameters (and of this rank's bank block). */
static void train_bank(mm_dist *d, const char *run, int64_t steps, bool resume, double *losses, float **params, size_t *n,
                       bank_copy *bank)
{
    mm_job job;
    small_job(&job, run);
    job.checkpoint.resume = resume;
    mm_trainer tr;
    mm_status st = mm_trainer_init(&tr, &job, d);
    if (st) mm_error_print(stderr, d->rank);
    assert_int_equal(st, MM_OK);
    int64_t first = tr.step;
    for (int64_t s = 0; s < steps; s++) {
        mm_step_report rep;
        st = mm_trainer_step(&tr, &rep);
        if (st) mm_error_print(stderr, d->rank);
        assert_int_equal(st, MM_OK);
        if (losses) losses[first + s] = rep.loss;
    }
    assert_int_equal(mm_trainer_checkpoint(&tr), MM_OK);
    if (params) {
        *n = tr.model.params.total;
        *params = malloc(*n * sizeof(float));
        memcpy(*params, tr.model.params.data, *n * sizeof(float));
    }
    if (bank) {
        const mm_memory_bank *b = &tr.bank;
        size_t na = (size_t)(b->m_local * b->dim) * sizeof(float), nu = (size_t)b->m_local * sizeof(int64_t);
        bank->n = na + nu;
        bank->bytes = malloc(bank->n + 1);
        memcpy(bank->bytes, b->anchors, na);
        memcpy(bank->bytes + na, b->unused, nu);
    }
    mm_trainer_destroy(&tr);
}

static void train(mm_dist *d, const char *run, int64_t steps, bool resume, double *losses, float **params, size_t *n)
{
    train_bank(d, run, steps, resume, losses, params, n, NULL);
}

static void test_restart_is_bitwise(void **state)
{
    (void)state;
    float *a, *b;
    size_t na, nb;
    bank_copy ba, bb;
    train_bank(&WORLD, "straight", 6, false, NULL, &a, &na, &ba);
    train(&WORLD, "restart", 3, false, NULL, NULL, NULL);
    train_bank(&WORLD, "restart", 3, true, NULL, &b, &nb, &bb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof(float));
    /* the bank too, anchors and their ages: the job re-seeds after 3 idle steps, so both
     * runs re-seed, and the resumed one must go on from the saved counters */
    assert_int_equal(ba.n, bb.n);
    assert_memory_equal(ba.bytes, bb.bytes, ba.n);
    free(a);
    free(b);
    free(ba.bytes);
    free(bb.bytes);
}

static void test_ranks_follow_single_rank_trajectory(void **state)
{
    (void)state;
    double l1[8] = {0}, lp[8] = {0};
    /* the single-rank reference runs on rank 0 alone */
    if (WORLD.rank == 0) train(&SELF, "one", 8, false, l1, NULL, NULL);
    MPI_Bcast(l1, 8, MPI_DOUBLE, 0, WORLD.comm);
    train(&WORLD, "many", 8, false, lp, NULL, NULL);
    for (int s = 0; s < 8; s++) {
        if (WORLD.rank == 0) printf("  step %d: 1 rank %.7f, %d ranks %.7f\n", s, l1[s], WORLD.size, lp[s]);
        assert_true(fabs(l1[s] - lp[s]) <= 1e-4 * fabs(l1[s]));
    }
}

static void test_resume_on_another_rank_count(void **state)
{
    (void)state;
    double straight[6] = {0}, resumed[6] = {0};
    train(&WORLD, "straight_rc", 6, false, straight, NULL, NULL);
    /* first half on rank 0 alone, second half on every rank (and the reverse order of
     * rank counts when this runs with one rank is the same path) */
    if (WORLD.rank == 0) train(&SELF, "switch", 3, false, resumed, NULL, NULL);
    MPI_Barrier(WORLD.comm);
    train(&WORLD, "switch", 3, true, resumed, NULL, NULL);
    for (int s = 3; s < 6; s++) assert_true(fabs(straight[s] - resumed[s]) <= 1e-4 * fabs(straight[s]));
}

static void test_knn_backends_give_the_same_run(void **state)
{
    (void)state;
    double ref[4] = {0};
    for (int backend = 0; backend < 3; backend++) {
        mm_job job;
        char run[32];
        snprintf(run, sizeof run, "knn%d", backend);
        small_job(&job, run);
        job.dist.knn_backend = backend;
        mm_trainer tr;
        assert_int_equal(mm_trainer_init(&tr, &job, &WORLD), MM_OK);
        for (int s = 0; s < 4; s++) {
            mm_step_report rep;
            mm_status st = mm_trainer_step(&tr, &rep);
            if (st) mm_error_print(stderr, WORLD.rank);
            assert_int_equal(st, MM_OK);
            if (backend == 0) ref[s] = rep.loss;
            else assert_true(rep.loss == ref[s]); /* identical neighbour lists: identical run */
        }
        mm_trainer_destroy(&tr);
    }
}

static void test_nan_stops_with_clear_error(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job, "nan");
    mm_trainer tr;
    assert_int_equal(mm_trainer_init(&tr, &job, &WORLD), MM_OK);
    mm_step_report rep;
    assert_int_equal(mm_trainer_step(&tr, &rep), MM_OK);
    assert_int_equal(mm_trainer_checkpoint(&tr), MM_OK);
    char before[1200];
    bool found = false;
    assert_int_equal(mm_ckpt_latest(tr.ckpt_dir, before, sizeof before, &found), MM_OK);
    assert_true(found);
    /* poison one weight: the loss becomes NaN */
    float *w = mm_params_data(&tr.model.params, tr.model.gin.out.w);
    w[0] = NAN;
    float keep = tr.model.params.data[0];
    assert_int_equal(mm_trainer_step(&tr, &rep), MM_ERR_NUMERIC);
    assert_non_null(strstr(mm_error_message(), "step 1"));
    assert_true(mm_error_agreed()); /* every rank has it: mmsa_pretrain reports it once */
    assert_true(strstr(mm_error_message(), "nan") || strstr(mm_error_message(), "non-finite"));
    mm_error_clear();
    assert_int_equal(tr.step, 1);                          /* no step counted */
    assert_true(tr.model.params.data[0] == keep);          /* parameters untouched */
    char after[1200];
    assert_int_equal(mm_ckpt_latest(tr.ckpt_dir, after, sizeof after, &found), MM_OK);
    assert_string_equal(before, after);
    mm_trainer_destroy(&tr);
}

static void test_memory_does_not_grow(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job, "memory");
    job.train.epochs = 10;
    mm_trainer tr;
    assert_int_equal(mm_trainer_init(&tr, &job, &WORLD), MM_OK);
    mm_step_report rep;
    size_t reserved = 0, live = 0;
    for (int s = 0; s < 16; s++) {
        assert_int_equal(mm_trainer_step(&tr, &rep), MM_OK);
        if (s == 4) {
            reserved = tr.tape.arena.reserved;
            live = mm_alloc_live_bytes();
        }
    }
    assert_int_equal(tr.tape.arena.reserved, reserved);
    assert_int_equal(mm_alloc_live_bytes(), live);
    mm_trainer_destroy(&tr);
}

static void test_bad_jobs_are_reported(void **state)
{
    (void)state;
    mm_job job;
    mm_trainer tr;
    small_job(&job, "bad");
    job.train.batch_size = 64; /* more than the 16 molecules */
    assert_int_equal(mm_trainer_init(&tr, &job, &WORLD), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "fewer than one batch"));
    mm_error_clear();
    mm_trainer_destroy(&tr);
    small_job(&job, "bad");
    snprintf(job.train.dataset, sizeof job.train.dataset, "%s/nope.h5", base);
    assert_int_not_equal(mm_trainer_init(&tr, &job, &WORLD), MM_OK);
    assert_non_null(strstr(mm_error_message(), "nope.h5"));
    mm_error_clear();
    mm_trainer_destroy(&tr);
}

static float *read_floats(const char *path, const char *name, int64_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(ds >= 0);
    hid_t sp = H5Dget_space(ds);
    *n = (int64_t)H5Sget_simple_extent_npoints(sp);
    float *v = malloc((size_t)*n * sizeof(float));
    assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    return v;
}

static void test_embeddings_export_any_rank_count(void **state)
{
    (void)state;
    train(&WORLD, "embed", 3, false, NULL, NULL, NULL);
    mm_job job;
    small_job(&job, "embed");
    char ckpt[600], ckdir[600], out_world[600], out_self[600];
    snprintf(ckdir, sizeof ckdir, "%s/embed/checkpoints", base);
    bool found = false;
    assert_int_equal(mm_ckpt_latest(ckdir, ckpt, sizeof ckpt, &found), MM_OK);
    assert_true(found);
    snprintf(out_world, sizeof out_world, "%s/emb_world.h5", base);
    snprintf(out_self, sizeof out_self, "%s/emb_self.h5", base);
    mm_status st = mm_export_embeddings(&job, ckpt, golden, out_world, &WORLD, 5);
    if (st) mm_error_print(stderr, WORLD.rank);
    assert_int_equal(st, MM_OK);
    if (WORLD.rank == 0) {
        assert_int_equal(mm_export_embeddings(&job, ckpt, golden, out_self, &SELF, 16), MM_OK);
        const char *names[3] = {"u", "p_graph", "z_image"};
        for (int k = 0; k < 3; k++) {
            int64_t na, nb;
            float *a = read_floats(out_world, names[k], &na), *b = read_floats(out_self, names[k], &nb);
            assert_int_equal(na, nb);
            assert_int_equal(na, 16 * (k == 1 ? job.model.proj_dim : job.model.embed_dim));
            /* eval mode has no cross-molecule statistics: any split gives the same rows */
            assert_true(tu_max_abs_diff(a, b, na) <= 1e-6 * (1 + tu_max_abs(b, nb)));
            free(a);
            free(b);
        }
    }
    MPI_Barrier(WORLD.comm);
    /* a missing checkpoint is an error naming it, on every rank */
    assert_int_equal(mm_export_embeddings(&job, "/nonexistent/ckpt.h5", golden, out_world, &WORLD, 5) != MM_OK, 1);
    assert_non_null(strstr(mm_error_message(), "/nonexistent/ckpt.h5"));
    mm_error_clear();
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) || mm_dist_init(&SELF, MPI_COMM_SELF)) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    snprintf(golden, sizeof golden, "%s/golden/mmsa_ref_v1.h5", tu_shared_dir());
    if (access(golden, R_OK) != 0) {
        /* without the data every rank would fail at a different point: stop all now */
        if (WORLD.rank == 0) fprintf(stderr, "%s not found (set MMSA_SHARED to the shared folder)\n", golden);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (WORLD.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir());
    MPI_Bcast(base, sizeof base, MPI_CHAR, 0, WORLD.comm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_is_bitwise),
        cmocka_unit_test(test_ranks_follow_single_rank_trajectory),
        cmocka_unit_test(test_resume_on_another_rank_count),
        cmocka_unit_test(test_knn_backends_give_the_same_run),
        cmocka_unit_test(test_nan_stops_with_clear_error),
        cmocka_unit_test(test_memory_does_not_grow),
        cmocka_unit_test(test_bad_jobs_are_reported),
        cmocka_unit_test(test_embeddings_export_any_rank_count),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return failed;
}
