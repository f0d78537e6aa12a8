/* ACML training tests on the golden file's 16 molecules (a valid dataset file), with
 * teachers from an MMSA checkpoint trained here for two steps: P ranks follow the 1-rank
 * loss; the cached teachers and the on-the-fly teachers give the same steps; a restart is
 * bitwise; the student's registry holds no teacher parameter (frozen: no gradient, no
 * optimiser state, no allreduce); the held-out embeddings file; clear errors for a
 * missing checkpoint, a checkpoint without the teacher's parameters, and a dataset
 * without the teacher's modality. */
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

#include "mmsa/acml.h"
#include "mmsa/checkpoint.h"
#include "mmsa/train.h"
#include "testutil.h"

static mm_dist WORLD, SELF;
static char golden[400], base[256], teacher_ckpt[MM_CFG_STR_MAX];

/* The MMSA job whose checkpoint provides the teachers (test_mpi_train's sizes). */
static void mmsa_job(mm_job *job, const char *run)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    const char *yaml = "model:\n  embed_dim: 16\n  proj_hidden: 16\n  proj_dim: 8\n  gin_hidden: 12\n  gin_layers: 2\n"
                       "  schnet_hidden: 8\n  schnet_filters: 8\n  schnet_interactions: 2\n"
                       "  cnn_channels: [4, 4, 8, 8]\n  fp_hidden: 8\n  gate_att_dim: 8\n  decoder_hidden: 8\n  hg_hidden: 8\n"
                       "loss:\n  knn_k: 3\n  n_anchors: 12\n"
                       "train:\n  batch_size: 8\n  epochs: 1\n  warmup_steps: 0\n  progress: false\n"
                       "checkpoint:\n  every: 0\n";
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "mmsa job", yaml, job), MM_OK);
    snprintf(job->train.dataset, sizeof job->train.dataset, "%s", golden);
    snprintf(job->train.run_dir, sizeof job->train.run_dir, "%s/%s", base, run);
}

static void acml_job(mm_job *job, const char *run, const char *teacher)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "model:\n  objective: acml\n  embed_dim: 12\n  gin_layers: 3\n  gin_hidden: 12\n  gin_dropout: 0.1\n"
             "  gin_pool: sum\n  gin_readout: mlp\n"
             "acml:\n  teacher: %s\n  teacher_norm: standardize\n  head_widths: [16, 10]\n  head_dropout: 0.1\n  tau: 0.7\n  holdout_fraction: 0\n"
             "train:\n  batch_size: 6\n  epochs: 3\n  warmup_steps: 0\n  lr: 1e-3\n  lr_min: 1e-3\n  log_every: 1\n"
             "  progress: false\ncheckpoint:\n  every: 0\n  keep: 2\n",
             teacher);
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "acml job", yaml, job), MM_OK);
    snprintf(job->train.dataset, sizeof job->train.dataset, "%s", golden);
    snprintf(job->train.run_dir, sizeof job->train.run_dir, "%s/%s", base, run);
    snprintf(job->acml.teacher_init, sizeof job->acml.teacher_init, "%s", teacher_ckpt);
}

static float *first_grad; /* the summed gradient of the first step of the last run_acml */

/* Runs `steps` steps (from scratch or resumed); losses[step], a copy of the parameters
 * after them, and the gradient of the first step in first_grad. */
static void run_acml(mm_dist *d, mm_job *job, int64_t steps, double *losses, float **params, size_t *n)
{
    mm_acml_trainer tr;
    mm_status st = mm_acml_trainer_init(&tr, job, d);
    if (st) mm_error_print(stderr, d->rank);
    assert_int_equal(st, MM_OK);
    int64_t first = tr.step;
    for (int64_t s = 0; s < steps; s++) {
        mm_acml_report rep;
        st = mm_acml_trainer_step(&tr, &rep);
        if (st) mm_error_print(stderr, d->rank);
        assert_int_equal(st, MM_OK);
        assert_true(rep.pairs[0] >= 2);
        if (losses) losses[first + s] = rep.loss;
        if (s == 0) {
            free(first_grad);
            first_grad = malloc(tr.student.params.total * sizeof(float));
            memcpy(first_grad, tr.student.params.grad, tr.student.params.total * sizeof(float));
        }
    }
    if (params) {
        *n = tr.student.params.total;
        *params = malloc(*n * sizeof(float));
        memcpy(*params, tr.student.params.data, *n * sizeof(float));
    }
    /* a checkpoint at the end, as mm_acml_trainer_run writes */
    assert_int_equal(mm_acml_trainer_run(&tr, 0) == MM_OK || tr.step >= tr.total_steps, 1);
    mm_acml_trainer_destroy(&tr);
}

static void clean(const char *run)
{
    if (WORLD.rank == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s/%s", base, run);
        assert_int_equal(system(cmd), 0);
    }
    MPI_Barrier(WORLD.comm);
}

static void test_ranks_follow_single_rank(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        const char *teacher = k ? "image" : "fingerprint";
        double lw[8] = {0}, ls[8] = {0};
        float *pw, *ps, *gw;
        size_t nw, ns;
        mm_job job;
        clean("a_world");
        clean("a_self");
        acml_job(&job, "a_world", teacher);
        run_acml(&WORLD, &job, 4, lw, &pw, &nw);
        gw = malloc(nw * sizeof(float));
        memcpy(gw, first_grad, nw * sizeof(float));
        /* rank 0 alone; the others wait (no assertion may skip the barrier) */
        int good = 1;
        if (WORLD.rank == 0) {
            acml_job(&job, "a_self", teacher);
            run_acml(&SELF, &job, 4, ls, &ps, &ns);
            good = nw == ns;
            /* the first loss to rounding; then AdamW turns the sign of gradients that are
             * pure rounding (a bias before BatchNorm) into full steps, and the losses drift */
            for (int s = 0; s < 4; s++)
                good = good && isfinite(lw[s]) && lw[s] > 0 && fabs(lw[s] - ls[s]) <= (s ? 1e-4 : 1e-6) * fabs(ls[s]);
            /* one step's summed gradients agree */
            double gmax = 0, gdiff = 0;
            for (size_t i = 0; good && i < nw; i++) {
                gmax = fmax(gmax, fabs((double)first_grad[i]));
                gdiff = fmax(gdiff, fabs((double)gw[i] - first_grad[i]));
            }
            if (!(gmax > 0 && gdiff <= 1e-5 * gmax)) good = 0;
            if (!good) fprintf(stderr, "%s: losses or first-step gradients differ (%g of %g; losses %.9g %.9g, %.9g %.9g)\n", teacher, gdiff, gmax, lw[0], ls[0], lw[3], ls[3]);
            free(ps);
        }
        MPI_Bcast(&good, 1, MPI_INT, 0, WORLD.comm);
        free(pw);
        free(gw);
        assert_true(good);
    }
}

static void test_cached_and_on_the_fly_teachers_agree(void **state)
{
    (void)state;
    double lc[8] = {0}, lf[8] = {0};
    float *pc, *pf;
    size_t nc, nf;
    mm_job job;
    clean("a_cache");
    clean("a_fly");
    acml_job(&job, "a_cache", "image");
    run_acml(&WORLD, &job, 3, lc, &pc, &nc);
    float *gc = malloc(nc * sizeof(float));
    memcpy(gc, first_grad, nc * sizeof(float));
    acml_job(&job, "a_fly", "image");
    job.acml.cache_teachers = false;
    run_acml(&WORLD, &job, 3, lf, &pf, &nf);
    assert_int_equal(nc, nf);
    /* the teacher encodes the molecules in other groupings (the cache: each rank's block;
     * on the fly: each step's share), which changes the rounding of its GEMMs; the
     * standardisation (centring) makes those last bits count a little more */
    assert_true(fabs(lc[0] - lf[0]) <= 1e-5 * fabs(lc[0]));
    for (int s = 1; s < 3; s++) assert_true(fabs(lc[s] - lf[s]) <= 1e-3 * fabs(lc[s]));
    double gmax = 0, gdiff = 0;
    for (size_t i = 0; i < nc; i++) {
        gmax = fmax(gmax, fabs((double)gc[i]));
        gdiff = fmax(gdiff, fabs((double)gc[i] - first_grad[i]));
    }
    if (!(gmax > 0 && gdiff <= 1e-4 * gmax)) fprintf(stderr, "gradients: %g of %g\n", gdiff, gmax);
    assert_true(gmax > 0 && gdiff <= 1e-4 * gmax);
    free(gc);
    /* the cache was written once, and a second run reads it instead of encoding again */
    char path[700];
    snprintf(path, sizeof path, "%s/a_cache/teachers/image.h5", base);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/a_fly/teachers/image.h5", base);
    assert_int_not_equal(access(path, R_OK), 0);
    free(pc);
    free(pf);
}

static void test_restart_is_bitwise(void **state)
{
    (void)state;
    float *straight, *resumed;
    size_t n1, n2;
    mm_job job;
    clean("a_straight");
    clean("a_resume");
    acml_job(&job, "a_straight", "fingerprint");
    run_acml(&WORLD, &job, 4, NULL, &straight, &n1);
    free(straight);
    /* run_acml ends with mm_acml_trainer_run(0), which runs to the end (3 epochs of 2 steps):
     * compare the end states instead */
    acml_job(&job, "a_straight", "fingerprint");
    mm_acml_trainer tr;
    assert_int_equal(mm_acml_trainer_init(&tr, &job, &WORLD), MM_OK);
    int64_t total = tr.total_steps;
    assert_int_equal(tr.step, total);
    n1 = tr.student.params.total;
    straight = malloc(n1 * sizeof(float));
    memcpy(straight, tr.student.params.data, n1 * sizeof(float));
    mm_acml_trainer_destroy(&tr);
    /* the same run in two sessions: 2 steps, checkpoint, resume, the rest */
    acml_job(&job, "a_resume", "fingerprint");
    assert_int_equal(mm_acml_trainer_init(&tr, &job, &WORLD), MM_OK);
    assert_int_equal(mm_acml_trainer_run(&tr, 2), MM_OK);
    assert_int_equal(tr.step, 2);
    mm_acml_trainer_destroy(&tr);
    assert_int_equal(mm_acml_trainer_init(&tr, &job, &WORLD), MM_OK);
    assert_int_equal(tr.step, 2);
    assert_int_equal(mm_acml_trainer_run(&tr, 0), MM_OK);
    n2 = tr.student.params.total;
    resumed = malloc(n2 * sizeof(float));
    memcpy(resumed, tr.student.params.data, n2 * sizeof(float));
    assert_int_equal(tr.step, total);
    mm_acml_trainer_destroy(&tr);
    assert_int_equal(n1, n2);
    assert_memory_equal(straight, resumed, n1 * sizeof(float));
    free(straight);
    free(resumed);
}

static void test_teacher_is_frozen(void **state)
{
    (void)state;
    mm_job job;
    clean("a_frozen");
    acml_job(&job, "a_frozen", "image");
    mm_acml_trainer tr;
    assert_int_equal(mm_acml_trainer_init(&tr, &job, &WORLD), MM_OK);
    /* only the student and the heads are trained (optimiser, allreduce: this registry) */
    for (int i = 0; i < tr.student.params.count; i++) {
        const char *nm = tr.student.params.info[i].name;
        assert_true(!strncmp(nm, "enc.graph.", 10) || !strncmp(nm, "acml.image.", 11));
    }
    assert_int_equal(tr.n_teachers, 1);
    /* acml.teacher_norm standardize: over the training molecules every output dimension
     * has mean 0, and standard deviation 1 unless it sat below the floor */
    int64_t D = tr.teacher[0].dim, n = tr.n_train;
    float *rows = malloc((size_t)(n * D) * sizeof(float));
    uint8_t *ok = malloc((size_t)n);
    assert_int_equal(mm_acml_teacher_rows(&tr, 0, tr.train_idx, n, &tr.ms, &tr.tape, rows, ok), MM_OK);
    int unit = 0;
    for (int64_t j = 0; j < D; j++) {
        double m = 0, q = 0;
        for (int64_t i = 0; i < n; i++) m += rows[i * D + j] / (double)n;
        for (int64_t i = 0; i < n; i++) q += (rows[i * D + j] - m) * (rows[i * D + j] - m) / (double)n;
        assert_true(fabs(m) < 1e-4);
        assert_true(sqrt(q) < 1 + 1e-3);
        unit += fabs(sqrt(q) - 1) < 1e-3;
    }
    assert_true(unit > D / 2);
    free(rows);
    free(ok);
    size_t nt = tr.teacher[0].mmsa.params.total;
    float *before = malloc(nt * sizeof(float));
    memcpy(before, tr.teacher[0].mmsa.params.data, nt * sizeof(float));
    float bn_before = tr.teacher[0].mmsa.buffers[tr.teacher[0].mmsa.n_buffers - 1];
    mm_acml_report rep;
    assert_int_equal(mm_acml_trainer_step(&tr, &rep), MM_OK);
    assert_memory_equal(before, tr.teacher[0].mmsa.params.data, nt * sizeof(float));
    assert_true(bn_before == tr.teacher[0].mmsa.buffers[tr.teacher[0].mmsa.n_buffers - 1]);
    free(before);
    mm_acml_trainer_destroy(&tr);
}

static void test_heldout_embeddings_file(void **state)
{
    (void)state;
    mm_job job;
    clean("a_held");
    acml_job(&job, "a_held", "fingerprint");
    job.acml.holdout_fraction = 0.25f;
    job.train.batch_size = 4;
    /* a run directory names its latest checkpoint */
    snprintf(job.acml.teacher_init, sizeof job.acml.teacher_init, "%s/teacher", base);
    mm_acml_trainer tr;
    assert_int_equal(mm_acml_trainer_init(&tr, &job, &WORLD), MM_OK);
    assert_string_equal(tr.teacher[0].init, teacher_ckpt);
    assert_true(tr.n_held >= 2);
    assert_int_equal(tr.n_held + tr.n_train, 16);
    assert_int_equal(mm_acml_trainer_run(&tr, 2), MM_OK);
    char path[700];
    snprintf(path, sizeof path, "%s/a_held/heldout_embeddings.h5", base);
    double top1[2] = {-1, -1};
    assert_int_equal(mm_acml_write_heldout(&tr, path, top1), MM_OK);
    assert_true(top1[0] >= 0 && top1[0] <= 1 && top1[1] >= 0 && top1[1] <= 1);
    if (WORLD.rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        assert_true(f >= 0);
        int64_t idx[16];
        hid_t x = H5Dopen2(f, "index", H5P_DEFAULT);
        assert_true(H5Dread(x, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx) >= 0);
        H5Dclose(x);
        for (int64_t i = 0; i < tr.n_held; i++) assert_int_equal(idx[i], tr.held_idx[i]);
        const char *names[] = {"fingerprint/graph", "fingerprint/teacher", "fingerprint/ok", "untrained/fingerprint/graph",
                               "untrained/fingerprint/teacher"};
        for (int k = 0; k < 5; k++) assert_true(H5Lexists(f, names[k], H5P_DEFAULT) > 0);
        float g[16 * 10], g0[16 * 10];
        x = H5Dopen2(f, "fingerprint/graph", H5P_DEFAULT);
        assert_true(H5Dread(x, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, g) >= 0);
        H5Dclose(x);
        x = H5Dopen2(f, "untrained/fingerprint/graph", H5P_DEFAULT);
        assert_true(H5Dread(x, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, g0) >= 0);
        H5Dclose(x);
        H5Fclose(f);
        /* trained and untrained differ; the held-out molecules are the split's test part */
        assert_true(memcmp(g, g0, (size_t)(tr.n_held * 10) * sizeof(float)) != 0);
        char sp[700];
        snprintf(sp, sizeof sp, "%s/a_held/split.json", base);
        assert_int_equal(access(sp, R_OK), 0);
    }
    mm_acml_trainer_destroy(&tr);
}

static void expect_init_error(mm_job *job, const char *needle)
{
    mm_acml_trainer tr;
    mm_status st = mm_acml_trainer_init(&tr, job, &WORLD);
    assert_int_not_equal(st, MM_OK);
    if (!strstr(mm_error_message(), needle)) fprintf(stderr, "message: %s (wanted %s)\n", mm_error_message(), needle);
    assert_non_null(strstr(mm_error_message(), needle));
    mm_error_clear();
    mm_acml_trainer_destroy(&tr);
}

static void test_bad_teachers_are_reported(void **state)
{
    (void)state;
    mm_job job;
    clean("a_bad");
    acml_job(&job, "a_bad", "image");
    snprintf(job.acml.teacher_init, sizeof job.acml.teacher_init, "%s/none.h5", base);
    expect_init_error(&job, "none.h5");
    /* an ACML checkpoint has no image encoder */
    acml_job(&job, "a_bad", "image");
    char acml_ckpt[400];
    snprintf(acml_ckpt, sizeof acml_ckpt, "%s/a_straight/checkpoints", base);
    char latest[MM_CFG_STR_MAX];
    bool found = false;
    assert_int_equal(mm_ckpt_latest(acml_ckpt, latest, sizeof latest, &found), MM_OK);
    assert_true(found);
    snprintf(job.acml.teacher_init, sizeof job.acml.teacher_init, "%s", latest);
    expect_init_error(&job, "not an MMSA checkpoint");
    /* the golden file has no spectra */
    acml_job(&job, "a_bad", "nmr13c");
    expect_init_error(&job, "has no nmr13c data");
    /* a checkpoint that lacks one of the encoder's parameters: the message names it */
    mm_params p;
    mm_params_init(&p);
    int ix;
    assert_int_equal(mm_params_add(&p, "enc.image.out.weight", 2, (int64_t[]){16, 8}, &ix), MM_OK);
    assert_int_equal(mm_params_add(&p, "enc.image.extra.weight", 1, (int64_t[]){3}, &ix), MM_OK);
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    assert_int_not_equal(mm_ckpt_load_params_all(teacher_ckpt, MPI_COMM_SELF, &p, "enc.image."), MM_OK);
    assert_non_null(strstr(mm_error_message(), "lacks parameter enc.image.extra.weight"));
    mm_error_clear();
    mm_params_destroy(&p);
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
        if (WORLD.rank == 0) fprintf(stderr, "%s not found (set MMSA_SHARED to the shared folder)\n", golden);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (WORLD.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir());
    MPI_Bcast(base, sizeof base, MPI_CHAR, 0, WORLD.comm);
    /* the teachers: an MMSA run of two steps */
    mm_job job;
    mmsa_job(&job, "teacher");
    job.train.max_steps = 2;
    mm_trainer tr;
    mm_status st = mm_trainer_init(&tr, &job, &WORLD);
    if (st == MM_OK) st = mm_trainer_run(&tr, 0);
    if (st != MM_OK) {
        mm_error_print(stderr, WORLD.rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    snprintf(teacher_ckpt, sizeof teacher_ckpt, "%.400s/step_%012lld.h5", tr.ckpt_dir, (long long)tr.step);
    mm_trainer_destroy(&tr);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_follow_single_rank),
        cmocka_unit_test(test_cached_and_on_the_fly_teachers_agree),
        cmocka_unit_test(test_restart_is_bitwise),
        cmocka_unit_test(test_teacher_is_frozen),
        cmocka_unit_test(test_heldout_embeddings_file),
        cmocka_unit_test(test_bad_teachers_are_reported),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return failed;
}
