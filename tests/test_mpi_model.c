/* Model tests on a tiny synthetic batch: whole-model finite-difference gradient check
 * (every modality, and with conformers missing), masking of missing modalities, and the
 * batch split over the ranks giving the single-rank losses and gradients. */
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

#include "mmsa/model.h"
#include "mmsa/rng.h"
#include "testutil.h"

static mm_dist WORLD, SELF;

static void tiny_job(mm_job *job)
{
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, job), MM_OK);
    mm_model_config *c = &job->model;
    c->embed_dim = 8;
    c->proj_hidden = 8;
    c->proj_dim = 6;
    c->gin_layers = 2;
    c->gin_hidden = 6;
    c->gin_dropout = 0;
    c->schnet_hidden = 5;
    c->schnet_filters = 4;
    c->schnet_interactions = 2;
    c->schnet_n_rbf = 10;
    c->n_cnn_channels = 2;
    c->cnn_channels[0] = 3;
    c->cnn_channels[1] = 4;
    c->image_size = 8;
    c->fp_hidden = 5;
    c->gate_att_dim = 7;
    c->decoder_hidden = 9;
    c->hg_hidden = 7;
    job->loss.knn_k = 2;
    job->loss.n_anchors = 6;
}

/* n molecules: molecule 0 has one atom (no bond), molecule 2 has no conformer. */
static void synthetic(mm_molset *ms, int n, int image, bool all_conf)
{
    mm_molset_opts o = {MM_MOD_CONFORMER | MM_MOD_FINGERPRINT | (image ? MM_MOD_IMAGE : 0u), image, image, 0, NULL};
    memset(ms, 0, sizeof *ms);
    assert_int_equal(mm_molset_init(ms, &o), MM_OK);
    mm_rng r;
    mm_rng_init(&r, 99, MM_STREAM_USER);
    static const int vocab[9] = {119, 5, 12, 12, 10, 6, 6, 2, 2};
    for (int i = 0; i < n; i++) {
        int na = i == 0 ? 1 : 2 + (int)mm_rng_below(&r, 4);
        uint8_t af[6 * 9], bf[6 * 3], img[3 * 8 * 8], fp[256];
        int32_t bi[6 * 2];
        float xyz[6 * 3];
        for (int a = 0; a < na; a++) {
            for (int f = 0; f < 9; f++) af[a * 9 + f] = (uint8_t)mm_rng_below(&r, (uint64_t)vocab[f] < 8 ? (uint64_t)vocab[f] : 8);
            for (int k = 0; k < 3; k++) xyz[a * 3 + k] = 3.0f * mm_rng_uniform(&r);
        }
        for (int k = 0; k + 1 < na; k++) { /* a chain */
            bi[2 * k] = k;
            bi[2 * k + 1] = k + 1;
            bf[3 * k] = (uint8_t)mm_rng_below(&r, 5);
            bf[3 * k + 1] = (uint8_t)mm_rng_below(&r, 6);
            bf[3 * k + 2] = (uint8_t)mm_rng_below(&r, 2);
        }
        for (int k = 0; k < 3 * image * image; k++) img[k] = (uint8_t)mm_rng_below(&r, 256);
        for (int k = 0; k < 256; k++) fp[k] = (uint8_t)(mm_rng_u32(&r) & mm_rng_u32(&r) & mm_rng_u32(&r));
        mm_mol_in m = {"C", i, na, af, na - 1, bi, bf, xyz, (uint8_t)(all_conf || i != 2), img, fp, "", NULL, {{0}}};
        assert_int_equal(mm_molset_append(ms, &m), MM_OK);
    }
}

typedef struct {
    mm_model m;
    mm_memory_bank bank;
    mm_molset ms;
    mm_tape t;
    int64_t counts[64];
    mm_dist *d;
} fixture;

static void fixture_init(fixture *f, mm_dist *d, const mm_job *job, int n, bool all_conf)
{
    memset(f, 0, sizeof *f);
    f->d = d;
    assert_int_equal(mm_model_init(&f->m, &job->model, &job->loss, 5), MM_OK);
    assert_int_equal(mm_bank_init(&f->bank, d, job->loss.n_anchors, job->model.embed_dim, 3, 0.5f, 0.9f, 1000), MM_OK);
    /* my share of the n molecules */
    mm_molset all;
    synthetic(&all, n, job->model.use_image ? job->model.image_size : 0, all_conf);
    int64_t r0, cnt;
    for (int r = 0; r < d->size; r++) mm_dist_block(n, d->size, r, &r0, &f->counts[r]);
    mm_dist_block(n, d->size, d->rank, &r0, &cnt);
    mm_molset_opts o = {all.modalities, all.image_h, all.image_w, 0, NULL};
    assert_int_equal(mm_molset_init(&f->ms, &o), MM_OK);
    for (int64_t i = r0; i < r0 + cnt; i++) {
        int64_t a0 = all.atom_offset[i], b0 = all.bond_offset[i];
        mm_mol_in m = {"C", i, all.atom_offset[i + 1] - a0, all.atom_feat + 9 * a0, all.bond_offset[i + 1] - b0,
                       all.bond_index + 2 * b0, all.bond_feat + 3 * b0, all.xyz + 3 * a0, all.conf_ok[i],
                       all.image ? all.image + i * 3 * all.image_h * all.image_w : NULL, all.fingerprint + 256 * i, "", NULL, {{0}}};
        assert_int_equal(mm_molset_append(&f->ms, &m), MM_OK);
    }
    mm_molset_free(&all);
    assert_int_equal(mm_tape_init(&f->t, 1 << 20), MM_OK);
}

static void fixture_free(fixture *f)
{
    mm_tape_destroy(&f->t);
    mm_bank_destroy(&f->bank);
    mm_model_destroy(&f->m);
    mm_molset_free(&f->ms);
}

/* Forward (+ backward and gradient allreduce when grad); returns the global loss. */
static double run(fixture *f, bool grad, mm_step_out *o)
{
    mm_tape *t = &f->t;
    assert_int_equal(mm_tape_reset(t), MM_OK);
    t->grad_enabled = grad;
    mm_batch *b;
    assert_int_equal(mm_batch_build(t, &f->m, &f->ms, f->d, f->counts, &b), MM_OK);
    mm_params_zero_grad(&f->m.params);
    /* BatchNorm running statistics must not drift between finite-difference runs */
    float *keep = malloc(f->m.n_buffers * sizeof(float));
    memcpy(keep, f->m.buffers, f->m.n_buffers * sizeof(float));
    mm_status st = mm_model_forward(&f->m, t, f->d, &f->bank, b, 0, 0, o);
    if (st) mm_error_print(stderr, f->d->rank);
    assert_int_equal(st, MM_OK);
    memcpy(f->m.buffers, keep, f->m.n_buffers * sizeof(float));
    free(keep);
    if (grad) {
        assert_int_equal(mm_tape_backward(t, o->loss_local), MM_OK);
        assert_int_equal(mm_dist_allreduce_float(f->d, f->m.params.grad, f->m.params.total), MM_OK);
    }
    return o->total;
}

static void gradient_check(const mm_job *job, bool all_conf, const char *label)
{
    fixture f;
    fixture_init(&f, &WORLD, job, 7, all_conf);
    mm_step_out o;
    run(&f, true, &o);
    float *g = malloc(f.m.params.total * sizeof(float));
    memcpy(g, f.m.params.grad, f.m.params.total * sizeof(float));
    int bad = 0, checked = 0;
    for (int i = 0; i < f.m.params.count; i++) {
        const mm_param_info *pi = &f.m.params.info[i];
        float *w = mm_params_data(&f.m.params, i), *gi = g + pi->offset;
        double gmax = tu_max_abs(gi, (int64_t)pi->n);
        /* the two largest-gradient entries of every tensor */
        size_t best[2] = {0, 0};
        for (size_t k = 0; k < pi->n; k++)
            if (fabsf(gi[k]) > fabsf(gi[best[0]])) best[0] = k;
        for (size_t k = 0; k < pi->n; k++)
            if (k != best[0] && (best[1] == best[0] || fabsf(gi[k]) > fabsf(gi[best[1]]))) best[1] = k;
        for (int q = 0; q < (pi->n > 1 ? 2 : 1); q++) {
            size_t k = best[q];
            /* The loss is piecewise smooth (ReLU kinks, kNN and anchor selection), and on
             * a tiny random model a kink can sit within one step of the point: an entry
             * passes when central differences agree at one of four step sizes. A wrong
             * derivative disagrees at all of them. */
            static const float hs[4] = {2e-4f, 5e-4f, 1e-3f, 2e-3f};
            float w0 = w[k];
            double a = gi[k], fd = 0;
            bool ok = false;
            for (int hi = 0; hi < 4 && !ok; hi++) {
                float h = hs[hi] * fmaxf(1.0f, fabsf(w0));
                w[k] = w0 + h;
                double lp = run(&f, false, &o);
                w[k] = w0 - h;
                double lm = run(&f, false, &o);
                w[k] = w0;
                fd = (lp - lm) / (2.0 * h);
                /* gmax ~ 0: a bias right before BatchNorm, zero by construction; the
                 * finite difference must then be at the float noise level */
                ok = gmax < 1e-5 ? fabs(fd) < 5e-3 : fabs(fd - a) <= 0.03 * fabs(a) + 2e-3 * gmax + 2e-4;
            }
            checked++;
            if (!ok) {
                bad++;
                if (WORLD.rank == 0) printf("  %s[%zu]: analytic %.6g, finite difference %.6g\n", pi->name, k, a, fd);
            }
        }
    }
    if (WORLD.rank == 0) printf("  model gradient check (%s): %d entries, %d off\n", label, checked, bad);
    assert_true(checked > 60);
    assert_int_equal(bad, 0);
    free(g);
    fixture_free(&f);
}

static void test_model_gradient_all_modalities(void **state)
{
    (void)state;
    mm_job job;
    tiny_job(&job);
    gradient_check(&job, true, "all modalities");
}

static void test_model_gradient_missing_modalities(void **state)
{
    (void)state;
    mm_job job;
    tiny_job(&job);
    gradient_check(&job, false, "one conformer missing"); /* molecule 2 */
    job.model.use_image = false;  /* and no image at all */
    gradient_check(&job, false, "one conformer missing, images off");
}

static void test_missing_modality_is_masked(void **state)
{
    (void)state;
    mm_job job;
    tiny_job(&job);
    fixture f;
    fixture_init(&f, &SELF, &job, 7, false);
    mm_step_out o;
    double loss = run(&f, true, &o);
    assert_true(isfinite(loss));
    int64_t E = job.model.embed_dim, P = job.model.proj_dim;
    /* molecule 2 has no conformer: zero fusion weight, no gradient into its rows */
    assert_float_equal(o.alpha->data[2 * 4 + 1], 0.0f, 0);
    for (int64_t j = 0; j < E; j++) assert_float_equal(o.z[1]->grad[2 * E + j], 0.0f, 0);
    for (int64_t j = 0; j < P; j++) assert_float_equal(o.p[1]->grad[2 * P + j], 0.0f, 0);
    /* present molecules get gradient, and alphas sum to 1 */
    assert_true(tu_max_abs(o.z[1]->grad, E) > 0);
    for (int i = 0; i < 7; i++) {
        double s = 0;
        for (int k = 0; k < 4; k++) s += o.alpha->data[i * 4 + k];
        assert_float_equal(s, 1.0, 1e-6);
    }
    /* shapes */
    assert_int_equal(o.u_local->shape[0], 7);
    assert_int_equal(o.u_local->shape[1], E);
    assert_int_equal(o.s->shape[0], 7);
    assert_int_equal(o.s->shape[1], E);
    assert_int_equal(o.hg1->shape[0], 7);
    assert_int_equal(o.rec->shape[1], 4 * E);
    assert_int_equal(o.hg->k, 2);
    /* the one-atom molecule (no bond, no atom pair) is encoded, finite */
    for (int64_t j = 0; j < E; j++) assert_true(isfinite(o.z[0]->data[j]) && isfinite(o.z[1]->data[j]));
    fixture_free(&f);
}

static void test_split_batch_equals_single_rank(void **state)
{
    (void)state;
    mm_job job;
    tiny_job(&job);
    fixture one, many;
    fixture_init(&one, &SELF, &job, 9, false);
    fixture_init(&many, &WORLD, &job, 9, false);
    mm_step_out o1, o2;
    double l1 = run(&one, true, &o1), l2 = run(&many, true, &o2);
    if (WORLD.rank == 0) printf("  loss 1 rank %.9f, %d ranks %.9f\n", l1, WORLD.size, l2);
    assert_true(fabs(l1 - l2) <= 1e-5 * fabs(l1));
    double e = tu_max_abs_diff(one.m.params.grad, many.m.params.grad, (int64_t)one.m.params.total);
    assert_true(e <= 1e-4 * tu_max_abs(one.m.params.grad, (int64_t)one.m.params.total));
    fixture_free(&one);
    fixture_free(&many);
}

static void test_knn_ties_and_hypergraph(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    /* rows 1, 2, 3 identical: row 0's neighbours tie, smaller index first */
    float u[5 * 2] = {1, 0, 1, 1, 1, 1, 1, 1, -1, 0};
    mm_hypergraph *hg;
    assert_int_equal(mm_hypergraph_build(&t, u, 5, 2, 2, &hg), MM_OK);
    assert_int_equal(hg->knn[0], 1);
    assert_int_equal(hg->knn[1], 2);
    assert_int_equal(hg->knn[2 * 1 + 0], 2); /* row 1: rows 2 and 3 at cosine 1, 2 first */
    assert_int_equal(hg->knn[2 * 1 + 1], 3);
    /* degrees: every vertex in its own hyperedge, plus once per time it is a neighbour */
    int64_t total = 0;
    for (int v = 0; v < 5; v++) total += hg->dv[v];
    assert_int_equal(total, 5 * 3);
    /* G is symmetric and maps a constant vector c*sqrt(Dv) to itself: G (Dv^1/2 1) = Dv^1/2 1 */
    mm_tensor *x, *y;
    assert_int_equal(mm_tensor_new2(&t, 5, 1, false, &x), MM_OK);
    for (int v = 0; v < 5; v++) x->data[v] = sqrtf((float)hg->dv[v]);
    assert_int_equal(mm_hypergraph_propagate(&t, hg, x, &y), MM_OK);
    for (int v = 0; v < 5; v++) assert_float_equal(y->data[v], x->data[v], 1e-5);
    /* k clipped to n - 1 */
    assert_int_equal(mm_hypergraph_build(&t, u, 3, 2, 8, &hg), MM_OK);
    assert_int_equal(hg->k, 2);
    mm_tape_destroy(&t);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&WORLD, MPI_COMM_WORLD) || mm_dist_init(&SELF, MPI_COMM_SELF)) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knn_ties_and_hypergraph),
        cmocka_unit_test(test_missing_modality_is_masked),
        cmocka_unit_test(test_split_batch_equals_single_rank),
        cmocka_unit_test(test_model_gradient_all_modalities),
        cmocka_unit_test(test_model_gradient_missing_modalities),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    mm_dist_destroy(&WORLD);
    MPI_Finalize();
    return failed;
}
