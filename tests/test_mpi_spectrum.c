/* The spectrum autoencoder across ranks and its frozen encoder (spectrum.h):
 *  - one autoencoder step on a batch split over the ranks gives the loss and the summed
 *    parameter gradients of the whole batch on one rank (BatchNorm statistics global,
 *    each rank's loss part weighted n_local / B);
 *  - mm_spectrum_model_load reads the encoder half back (its encoding equals the
 *    network's own in eval mode), a molecule encodes the same alone and inside a bigger
 *    set, molecules without the spectrum get zero rows;
 *  - loading names the missing parameter, refuses a checkpoint of another objective and
 *    one without a job.
 * The trainer's own tests (1 vs P ranks, resume) are in test_mpi_spectrum_train.c. */
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

#include "gradcheck.h"
#include "mmsa/checkpoint.h"
#include "mmsa/run.h"
#include "mmsa/spectrum.h"
#include "testutil.h"

static mm_dist WORLD, SELF;
static char base[256];

enum { NMOL = 12, MAXPEAKS = 9 };

/* A small autoencoder job: 13C on a coarse grid (-50 .. 350 ppm at 2 ppm = 200 bins). */
static void small_job(mm_job *job)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    const char *yaml = "model:\n  objective: spectrum_autoencoder\n"
                       "spectrum:\n  kind: nmr13c\n  nmr13c_step: 2\n  nmr13c_sigma: 3\n  channels: [4, 6, 8]\n"
                       "  kernel: 5\n  embed_dim: 6\n  decoder_hidden: 10\n"
                       "train:\n  batch_size: 12\n  progress: false\n";
    assert_int_equal(mm_cfg_load_string(&mm_job_schema, "test job", yaml, job), MM_OK);
    assert_int_equal(mm_job_validate(job), MM_OK);
}

static char *job_text(const mm_job *job)
{
    char *text = NULL;
    assert_int_equal(mm_run_job_text(job, &text), MM_OK);
    return text;
}

/* Synthetic 13C spectra of NMOL molecules: 1 .. MAXPEAKS peaks at random shifts, one
 * outside the grid; molecules 4 and 9 have none (ok = 0). */
typedef struct {
    int64_t off[NMOL + 1];
    float shift[NMOL * MAXPEAKS];
    int32_t atom[NMOL * MAXPEAKS];
    uint8_t ok[NMOL];
    mm_spectra sp;
} spectra_buf;

static void make_spectra(spectra_buf *s)
{
    float u[NMOL * (MAXPEAKS + 1)];
    gc_fill_uniform(u, NMOL * (MAXPEAKS + 1), 0, 1, 2024);
    int64_t p = 0;
    for (int i = 0; i < NMOL; i++) {
        s->off[i] = p;
        s->ok[i] = i != 4 && i != 9;
        int n = s->ok[i] ? 1 + (int)(u[i * (MAXPEAKS + 1)] * MAXPEAKS) % MAXPEAKS : 0;
        for (int k = 0; k < n; k++, p++) {
            s->shift[p] = -20.0f + 250.0f * u[i * (MAXPEAKS + 1) + 1 + k];
            s->atom[p] = k;
        }
    }
    s->shift[2] = 400.0f; /* outside the grid */
    s->off[NMOL] = p;
    s->sp = (mm_spectra){s->off, s->shift, s->atom, s->ok, p, p};
}

/* Loss and gradients of one step over molecules [m0, m0 + m) on d (a global batch of B). */
static double ae_step(mm_spectrum_net *net, mm_dist *d, const spectra_buf *s, int64_t m0, int64_t m, int64_t B)
{
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4u << 20), MM_OK);
    t.grad_enabled = true;
    t.training = true;
    t.allreduce = mm_dist_tape_allreduce;
    t.allreduce_ctx = d;
    int64_t L = net->grid.n_bins, mols[NMOL];
    float *x = calloc((size_t)((m ? m : 1) * L), sizeof(float));
    for (int64_t i = 0; i < m; i++) mols[i] = m0 + i;
    mm_spectrum_bin(&net->grid, &s->sp, mols, m, x, NULL);
    mm_params_zero_grad(&net->params);
    mm_tensor *z, *logits, *loss;
    assert_int_equal(mm_spectrum_net_encode(net, &t, x, m, &z), MM_OK);
    assert_int_equal(mm_spectrum_net_decode(net, &t, z, &logits), MM_OK);
    assert_int_equal(mm_spectrum_loss(&t, logits, x, B, &loss), MM_OK);
    assert_int_equal(mm_tape_backward(&t, loss), MM_OK);
    double l = loss->data[0];
    assert_int_equal(mm_dist_allreduce_double(d, &l, 1), MM_OK);
    assert_int_equal(mm_dist_allreduce_float(d, net->params.grad, net->params.total), MM_OK);
    mm_tape_destroy(&t);
    free(x);
    return l;
}

static void test_step_split_over_ranks_equals_one_rank(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job);
    spectra_buf s;
    make_spectra(&s);
    mm_spectrum_net one, split;
    assert_int_equal(mm_spectrum_net_init(&one, &job.spectrum, 1e-5f, 0.1f, true, 7), MM_OK);
    assert_int_equal(mm_spectrum_net_init(&split, &job.spectrum, 1e-5f, 0.1f, true, 7), MM_OK);
    double l1 = ae_step(&one, &SELF, &s, 0, NMOL, NMOL);
    int64_t m0, m;
    mm_dist_block(NMOL, WORLD.size, WORLD.rank, &m0, &m);
    double lp = ae_step(&split, &WORLD, &s, m0, m, NMOL);
    assert_true(l1 > 0.1 && l1 < 2);
    assert_float_equal(lp, l1, 1e-6 * l1);
    double g = tu_max_abs(one.params.grad, (int64_t)one.params.total);
    double diff = tu_max_abs_diff(split.params.grad, one.params.grad, (int64_t)one.params.total);
    if (diff > 2e-5 * g) fprintf(stderr, "gradient difference %g (largest %g)\n", diff, g);
    assert_true(g > 0 && diff <= 2e-5 * g);
    /* the running statistics follow the global batch too */
    assert_true(tu_max_abs_diff(split.buffers, one.buffers, (int64_t)one.n_buffers) < 1e-5);
    mm_spectrum_net_destroy(&one);
    mm_spectrum_net_destroy(&split);
}

/* A checkpoint of net (params, buffers) with this job text, written on WORLD. */
static void write_ckpt(const char *dir, mm_params *params, mm_spectrum_net *net, const char *text)
{
    mm_ckpt_state s;
    memset(&s, 0, sizeof s);
    s.step = 3;
    s.seed = 1;
    s.params = params;
    s.buffers = net->buffers;
    s.n_buffers = net->n_buffers;
    s.bn_batches = 3;
    s.job_text = text;
    assert_int_equal(mm_ckpt_write(dir, &WORLD, &s, 1), MM_OK);
}

static void trained_net(mm_spectrum_net *net, const mm_job *job)
{
    assert_int_equal(mm_spectrum_net_init(net, &job->spectrum, job->model.bn_eps, job->model.bn_momentum, true, 11),
                     MM_OK);
    /* running statistics away from (0, 1), so that eval and training mode differ */
    for (size_t k = 0; k < net->n_buffers; k += 2) {
        net->buffers[k] += 0.05f * (float)(k % 7);
        net->buffers[k + 1] += 0.3f;
    }
    net->bn_batches = 3;
}

static mm_molset spectra_set(spectra_buf *s)
{
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    ms.modalities = MM_MOD_NMR13C;
    ms.n = NMOL;
    ms.nmr[MM_NMR_13C] = s->sp;
    return ms;
}

static void test_load_and_encode(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job);
    mm_spectrum_net net;
    trained_net(&net, &job);
    char dir[400], path[1200];
    snprintf(dir, sizeof dir, "%s/ae", base);
    /* keys a later build may add to other sections (or the model section) do not matter */
    char *text = NULL;
    assert_int_equal(mm_run_job_text(&job, &text), MM_OK);
    const char *model = strstr(text, "model:\n");
    assert_non_null(model);
    size_t len = strlen(text);
    char *extended = malloc(len + 128);
    size_t head = len - strlen(model) + strlen("model:\n");
    memcpy(extended, text, head);
    snprintf(extended + head, len + 128 - head, "  future_model_key: 1\n%sfuture_section:\n  key: 2\n", text + head);
    write_ckpt(dir, &net.params, &net, extended);
    free(extended);
    free(text);
    bool found;
    assert_int_equal(mm_ckpt_latest(dir, path, sizeof path, &found), MM_OK);
    mm_spectrum_model *m;
    mm_status st = mm_spectrum_model_load(path, WORLD.comm, &m);
    if (st) mm_error_print(stderr, WORLD.rank);
    assert_int_equal(st, MM_OK);
    assert_int_equal(mm_spectrum_model_kind(m), MM_NMR_13C);
    assert_int_equal(mm_spectrum_model_dim(m), 6);

    spectra_buf s;
    make_spectra(&s);
    mm_molset ms = spectra_set(&s);
    float all[NMOL * 6];
    assert_int_equal(mm_spectrum_encode(m, &ms, all), MM_OK);
    /* the network's own eval-mode encoding */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 4u << 20), MM_OK);
    t.grad_enabled = false;
    t.training = false;
    int64_t L = net.grid.n_bins, mols[NMOL], n = 0;
    for (int i = 0; i < NMOL; i++)
        if (s.ok[i]) mols[n++] = i;
    float *x = calloc((size_t)(n * L), sizeof(float));
    mm_spectrum_bin(&net.grid, &s.sp, mols, n, x, NULL);
    mm_tensor *z;
    assert_int_equal(mm_spectrum_net_encode(&net, &t, x, n, &z), MM_OK);
    for (int64_t k = 0; k < n; k++)
        for (int j = 0; j < 6; j++) assert_float_equal(all[mols[k] * 6 + j], z->data[k * 6 + j], 1e-6);
    for (int j = 0; j < 6; j++) {
        assert_true(all[4 * 6 + j] == 0.0f); /* no spectrum: zeros */
        assert_true(all[9 * 6 + j] == 0.0f);
    }
    /* each molecule alone: the same row as inside the set (eval mode: no batch statistics) */
    for (int i = 0; i < NMOL; i++) {
        spectra_buf one = s;
        int64_t off1[2] = {0, s.off[i + 1] - s.off[i]};
        one.sp = (mm_spectra){off1, s.shift + s.off[i], s.atom + s.off[i], s.ok + i, off1[1], off1[1]};
        mm_molset m1 = spectra_set(&one);
        m1.n = 1;
        float row[6];
        assert_int_equal(mm_spectrum_encode(m, &m1, row), MM_OK);
        double d = tu_max_abs_diff(row, all + i * 6, 6);
        assert_true(d <= 1e-6 * fmax(1.0, tu_max_abs(all + i * 6, 6)));
    }
    /* a set read without the spectra is refused */
    ms.modalities = 0;
    assert_int_equal(mm_spectrum_encode(m, &ms, all), MM_ERR_ARG);
    mm_error_clear();
    free(x);
    mm_tape_destroy(&t);
    mm_spectrum_model_free(&m);
    assert_null(m);
    mm_spectrum_net_destroy(&net);
}

static void expect_load_error(const char *dir, const char *needle)
{
    char path[1200];
    bool found;
    assert_int_equal(mm_ckpt_latest(dir, path, sizeof path, &found), MM_OK);
    mm_spectrum_model *m = NULL;
    mm_status st = mm_spectrum_model_load(path, WORLD.comm, &m);
    assert_int_not_equal(st, MM_OK);
    assert_null(m);
    if (!strstr(mm_error_message(), needle)) fprintf(stderr, "message: %s\n", mm_error_message());
    assert_non_null(strstr(mm_error_message(), needle));
    mm_error_clear();
}

static void test_load_errors(void **state)
{
    (void)state;
    mm_job job;
    small_job(&job);
    mm_spectrum_net net;
    trained_net(&net, &job);
    char dir[400];
    /* a checkpoint lacking one encoder parameter: the error names it */
    mm_params part;
    mm_params_init(&part);
    for (int i = 0; i < net.params.count; i++) {
        const mm_param_info *pi = &net.params.info[i];
        if (strcmp(pi->name, "enc.spectrum.body.4.bias") != 0)
            assert_int_equal(mm_params_add(&part, pi->name, pi->ndim, pi->shape, NULL), MM_OK);
    }
    assert_int_equal(mm_params_alloc(&part), MM_OK);
    char *text = job_text(&job);
    snprintf(dir, sizeof dir, "%s/missing", base);
    write_ckpt(dir, &part, &net, text);
    expect_load_error(dir, "lacks the spectrum encoder parameter enc.spectrum.body.4.bias");
    free(text);
    mm_params_destroy(&part);
    /* an MMSA checkpoint */
    job.model.objective = MM_OBJ_MMSA;
    text = job_text(&job);
    snprintf(dir, sizeof dir, "%s/mmsa", base);
    write_ckpt(dir, &net.params, &net, text);
    expect_load_error(dir, "is not a spectrum-autoencoder checkpoint (its job has model.objective mmsa)");
    free(text);
    /* no job text */
    snprintf(dir, sizeof dir, "%s/nojob", base);
    write_ckpt(dir, &net.params, &net, NULL);
    expect_load_error(dir, "holds no job text");
    mm_spectrum_net_destroy(&net);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) != MM_OK || mm_dist_init(&SELF, MPI_COMM_SELF) != MM_OK) return 1;
    /* one directory for every rank: rank 0's */
    char dir[256] = "";
    if (WORLD.rank == 0) snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    snprintf(base, sizeof base, "%s", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_split_over_ranks_equals_one_rank),
        cmocka_unit_test(test_load_and_encode),
        cmocka_unit_test(test_load_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return rc;
}
