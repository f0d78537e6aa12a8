/* The spectrum autoencoder's trainer (spectrum.h) on a small dataset file with spectra
 * (dataset_fixture.h: 13C for two molecules in three, 1H for one in four):
 *  - P ranks follow the single-rank loss trajectory and end with its parameters;
 *  - N steps + checkpoint + resume + N steps gives bitwise the parameters of 2N steps;
 *  - every batch holds only molecules that have the kind's spectrum, none held out;
 *  - a dataset without the kind, or a holdout that leaves no batch, is a clear error. */
#include <math.h>
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
#include "mmsa/spectrum.h"
#include "testutil.h"

static mm_dist WORLD, SELF;
static char base[256], data[400], data_plain[400];

enum { NMOL = 48, STEPS = 4 };

static void small_job(mm_job *job, const char *kind, const char *run, bool resume)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "model:\n  objective: spectrum_autoencoder\n"
             "spectrum:\n  kind: %s\n  nmr13c_step: 2\n  nmr13c_sigma: 3\n  nmr1h_step: 0.1\n  nmr1h_sigma: 0.2\n"
             "  channels: [4, 6, 8]\n  kernel: 5\n  embed_dim: 6\n  decoder_hidden: 10\n"
             "train:\n  batch_size: 6\n  epochs: 3\n  warmup_steps: 2\n  lr: 0.01\n  holdout: 4\n  log_every: 1\n"
             "  progress: false\n"
             "checkpoint:\n  every: 0\n  keep: 2\n",
             kind);
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "test job", yaml, job), MM_OK);
    assert_int_equal(mm_job_validate(job), MM_OK);
    snprintf(job->train.dataset, sizeof job->train.dataset, "%s", data);
    snprintf(job->train.run_dir, sizeof job->train.run_dir, "%s/%s", base, run);
    job->checkpoint.resume = resume;
}

/* `steps` steps (from scratch or resumed); the losses from index first, a copy of the parameters. */
static void train(mm_dist *d, const char *kind, const char *run, int64_t steps, bool resume, double *losses,
                  float **params)
{
    mm_job job;
    small_job(&job, kind, run, resume);
    mm_spectrum_trainer tr;
    mm_status st = mm_spectrum_trainer_init(&tr, &job, d);
    if (st) mm_error_print(stderr, d->rank);
    assert_int_equal(st, MM_OK);
    int64_t first = tr.step;
    for (int64_t s = 0; s < steps; s++) {
        mm_spectrum_report rep;
        st = mm_spectrum_trainer_step(&tr, &rep);
        if (st) mm_error_print(stderr, d->rank);
        assert_int_equal(st, MM_OK);
        if (losses) losses[first + s] = rep.loss;
    }
    assert_int_equal(mm_spectrum_trainer_checkpoint(&tr), MM_OK);
    if (params) {
        *params = malloc(tr.net.params.total * sizeof(float));
        memcpy(*params, tr.net.params.data, tr.net.params.total * sizeof(float));
    }
    mm_spectrum_trainer_destroy(&tr);
}

static void test_ranks_follow_one_rank(void **state)
{
    (void)state;
    const char *kinds[2] = {"nmr13c", "nmr1h"};
    for (int k = 0; k < 2; k++) {
        double l1[STEPS], lp[STEPS];
        float *p1, *pp;
        char run[64];
        snprintf(run, sizeof run, "one_%s_%d", kinds[k], WORLD.rank);
        train(&SELF, kinds[k], run, STEPS, false, l1, &p1);
        snprintf(run, sizeof run, "all_%s", kinds[k]);
        train(&WORLD, kinds[k], run, STEPS, false, lp, &pp);
        for (int s = 0; s < STEPS; s++) {
            if (fabs(lp[s] - l1[s]) > 1e-5 * l1[s]) fprintf(stderr, "%s step %d: %g vs %g\n", kinds[k], s, lp[s], l1[s]);
            assert_true(fabs(lp[s] - l1[s]) <= 1e-5 * l1[s]);
        }
        assert_true(l1[STEPS - 1] < l1[0]); /* it learns */
        mm_job job;
        small_job(&job, kinds[k], "x", false);
        mm_spectrum_net net;
        assert_int_equal(mm_spectrum_net_init(&net, &job.spectrum, 1e-5f, 0.1f, true, 1), MM_OK);
        int64_t n = (int64_t)net.params.total;
        mm_spectrum_net_destroy(&net);
        assert_true(tu_max_abs_diff(pp, p1, n) <= 1e-4 * fmax(1.0, tu_max_abs(p1, n)));
        free(p1);
        free(pp);
    }
}

static void test_resume_is_bitwise(void **state)
{
    (void)state;
    double straight[2 * STEPS], resumed[2 * STEPS];
    float *p_straight, *p_resumed;
    train(&WORLD, "nmr13c", "straight", 2 * STEPS, false, straight, &p_straight);
    train(&WORLD, "nmr13c", "resumed", STEPS, false, resumed, NULL);
    train(&WORLD, "nmr13c", "resumed", STEPS, true, resumed, &p_resumed);
    for (int s = 0; s < 2 * STEPS; s++) assert_true(resumed[s] == straight[s]);
    mm_job job;
    small_job(&job, "nmr13c", "x", false);
    mm_spectrum_net net;
    assert_int_equal(mm_spectrum_net_init(&net, &job.spectrum, 1e-5f, 0.1f, true, 1), MM_OK);
    assert_memory_equal(p_resumed, p_straight, net.params.total * sizeof(float));
    mm_spectrum_net_destroy(&net);
    free(p_straight);
    free(p_resumed);
}

static void test_batches_hold_spectra_only(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job, "nmr1h", "batches", false);
    mm_spectrum_trainer tr;
    assert_int_equal(mm_spectrum_trainer_init(&tr, &job, &WORLD), MM_OK);
    /* fixture: 1H spectra for i % 4 == 0, 12 of 48; 4 held out */
    assert_int_equal(tr.n_with, NMOL / 4);
    assert_int_equal(tr.n_train, NMOL / 4 - 4);
    int64_t idx[6], seen[NMOL] = {0};
    for (int64_t s = 0; s < tr.steps_per_epoch; s++) {
        assert_int_equal(mm_spectrum_trainer_batch_indices(&tr, s, idx), MM_OK);
        for (int i = 0; i < 6; i++) {
            assert_true(idx[i] % 4 == 0);
            assert_true(idx[i] < tr.with_idx[tr.n_train]); /* not held out */
            assert_true(i == 0 || idx[i] > idx[i - 1]);
            seen[idx[i]]++;
        }
    }
    for (int i = 0; i < NMOL; i++) assert_true(seen[i] <= 1); /* an epoch draws each once */
    mm_spectrum_trainer_destroy(&tr);
}

static void test_bad_data_is_reported(void **state)
{
    (void)state;
    mm_job job;
    mm_spectrum_trainer tr;
    small_job(&job, "nmr13c", "plain", false);
    snprintf(job.train.dataset, sizeof job.train.dataset, "%s", data_plain);
    assert_int_equal(mm_spectrum_trainer_init(&tr, &job, &WORLD), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "has no nmr13c spectra"));
    mm_error_clear();
    mm_spectrum_trainer_destroy(&tr);
    small_job(&job, "nmr1h", "holdout", false);
    job.train.holdout = 10; /* 12 spectra: 2 left, fewer than a batch of 6 */
    assert_int_equal(mm_spectrum_trainer_init(&tr, &job, &WORLD), MM_ERR_CONFIG);
    assert_non_null(strstr(mm_error_message(), "fewer than one batch"));
    mm_error_clear();
    mm_spectrum_trainer_destroy(&tr);
}

static void write_data(const char *path, unsigned mods)
{
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    mm_molset_opts o = {mods, 0, 0, 0, NULL};
    assert_int_equal(mm_molset_init(&ms, &o), MM_OK);
    for (int64_t i = 0; i < NMOL; i++) assert_int_equal(fx_append(&ms, i), MM_OK);
    mm_dataset_meta meta = {"test", "fixture", NULL, NULL};
    assert_int_equal(mm_dataset_write(path, MPI_COMM_NULL, &ms, &meta), MM_OK);
    mm_molset_free(&ms);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) || mm_dist_init(&SELF, MPI_COMM_SELF)) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (WORLD.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir());
    MPI_Bcast(base, sizeof base, MPI_CHAR, 0, WORLD.comm);
    snprintf(data, sizeof data, "%s/spectra.h5", base);
    snprintf(data_plain, sizeof data_plain, "%s/plain.h5", base);
    if (WORLD.rank == 0) {
        write_data(data, MM_MOD_NMR13C | MM_MOD_NMR1H);
        write_data(data_plain, MM_MOD_FINGERPRINT);
    }
    MPI_Barrier(WORLD.comm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_follow_one_rank),
        cmocka_unit_test(test_resume_is_bitwise),
        cmocka_unit_test(test_batches_hold_spectra_only),
        cmocka_unit_test(test_bad_data_is_reported),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return rc;
}
