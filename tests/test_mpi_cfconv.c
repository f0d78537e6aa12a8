/* Tests of the fused continuous-filter convolution (cfconv.h): its softplus against
 * double precision, finite-difference gradients of every input, and values and
 * gradients against the unfused composition it replaces (linear, ssp, linear,
 * row_scale, gather, mul, scatter over ordered pairs), both for the op alone and for
 * the whole conformer encoder, on real conformers: molecules featurised with Open Babel
 * (3D), among them a single-atom one and a chain longer than the cutoff, in blocks that
 * split molecules. MPI only for mm_batch_build; every check runs on MPI_COMM_SELF. */
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
#include "mmsa/blas.h"
#include "mmsa/cfconv.h"
#include "mmsa/chem.h"
#include "mmsa/index_ops.h"
#include "mmsa/model.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "testutil.h"

#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#define CSR() _mm_getcsr()
#else
#define CSR() 0u
#endif

static mm_dist SELF;

/* ---- the elementwise math --------------------------------------------------------- */

static void test_ssp_accuracy(void **state)
{
    (void)state;
    enum { N = 200001 };
    float *x = malloc(N * sizeof(float)), *ssp = malloc(N * sizeof(float)), *sig = malloc(N * sizeof(float)),
          *ssp_only = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -100.0f + 200.0f * (float)i / (float)(N - 1); /* steps of 1e-3 */
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 20.0f, 20.001f, -20.0f, 86.9f, -86.9f, -87.0f,
                             -87.5f, -88.0f, -103.0f, 88.0f, 1e4f, -1e4f, 0.34657359f, 1.0f, -1.0f};
    memcpy(x, special, sizeof special);
    mm_cfconv_ssp(x, N, ssp, sig);
    mm_cfconv_ssp(x, N, ssp_only, NULL);
    double worst_ssp = 0, worst_sig = 0, worst_libm = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], sp = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v));
        double ref_ssp = sp - M_LN2, ref_sig = 1.0 / (1.0 + exp(-v));
        /* ssp is softplus (relative error) minus ln 2 (absolute error of an ulp of ln 2) */
        double e_ssp = fabs(ssp[i] - ref_ssp) / (sp * 0x1p-23 + M_LN2 * 0x1p-24);
        double e_sig = fabs(sig[i] - ref_sig) / (ref_sig * 0x1p-23 + 2e-38);
        /* and against the unfused op's float composition log1pf(expf(x)) - ln 2 */
        float lf = (v > 20.0 ? (float)v : log1pf(expf((float)v))) - (float)M_LN2;
        double e_libm = fabs(ssp[i] - lf) / (sp * 0x1p-23 + M_LN2 * 0x1p-24);
        if (e_ssp > worst_ssp) worst_ssp = e_ssp;
        if (e_sig > worst_sig) worst_sig = e_sig;
        if (e_libm > worst_libm) worst_libm = e_libm;
        assert_true(ssp[i] == ssp_only[i]); /* the same value with or without the sigmoid */
    }
    printf("  ssp within %.2f ulp of double (%.2f of libm's float), sigmoid within %.2f ulp\n", worst_ssp, worst_libm,
           worst_sig);
    assert_true(worst_ssp <= 2.0);
    assert_true(worst_libm <= 3.0);
    assert_true(worst_sig <= 2.0);
    free(x);
    free(ssp);
    free(sig);
    free(ssp_only);
}

/* ---- finite differences ------------------------------------------------------------- */

typedef struct {
    mm_cfconv_pairs pr;
} gc_arg;

static mm_status build_cfconv(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    gc_arg *a = ctx;
    return mm_cfconv(t, in[0], &a->pr, in[1], in[2], in[3], in[4], out);
}

static void test_gradcheck(void **state)
{
    (void)state;
    enum { A = 6, F = 3, R = 4, P = 7 };
    /* unordered pairs over two "molecules" {0..3} and {4, 5}; atom 3 in one pair only */
    const int64_t p[P] = {0, 0, 1, 0, 2, 4, 1}, q[P] = {1, 2, 2, 3, 1, 5, 3};
    float rbf[P * R], fcut[P], x[A * F], w0[F * R], b0[F], w2[F * F], b2[F];
    gc_fill_uniform(rbf, P * R, 0.0f, 1.0f, 1);
    gc_fill_uniform(fcut, P, 0.1f, 1.0f, 2);
    gc_fill_uniform(x, A * F, -1.0f, 1.0f, 3);
    gc_fill_uniform(w0, F * R, -1.0f, 1.0f, 4);
    gc_fill_uniform(b0, F, -0.5f, 0.5f, 5);
    gc_fill_uniform(w2, F * F, -1.0f, 1.0f, 6);
    gc_fill_uniform(b2, F, -0.5f, 0.5f, 7);
    const int64_t blocks[] = {1, 3, 0, 3};
    for (int bi = 0; bi < 4; bi++) {
        gc_arg a = {{P, R, p, q, rbf, fcut, blocks[bi], bi == 3}};
        gc_input in[5] = {{x, 2, {A, F}, true},   {w0, 2, {F, R}, true}, {b0, 1, {F}, true},
                          {w2, 2, {F, F}, true},  {b2, 1, {F}, true}};
        assert_int_equal(gradcheck(build_cfconv, &a, 5, in, NULL), 0);
    }
}

static void assert_arg_error(mm_status s, const char *what)
{
    assert_int_equal(s, MM_ERR_ARG);
    if (!strstr(mm_error_message(), what)) fail_msg("message '%s' lacks '%s'", mm_error_message(), what);
    mm_error_clear();
}

static void test_bad_input(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    float buf[64] = {0};
    mm_tensor *x, *w0, *b0, *w2, *b2, *y, *w0bad;
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 2, (int64_t[]){3, 2}, &x), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 2, (int64_t[]){2, 4}, &w0), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 2, (int64_t[]){2, 5}, &w0bad), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 1, (int64_t[]){2}, &b0), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 2, (int64_t[]){2, 2}, &w2), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, buf, NULL, 1, (int64_t[]){2}, &b2), MM_OK);
    int64_t p[2] = {0, 1}, q[2] = {1, 2}, qbad[2] = {1, 3}, qself[2] = {1, 1};
    mm_cfconv_pairs pr = {2, 4, p, q, buf, buf, 0, false};
    assert_int_equal(mm_cfconv(&t, x, &pr, w0, b0, w2, b2, &y), MM_OK);
    assert_arg_error(mm_cfconv(&t, x, &pr, w0bad, b0, w2, b2, &y), "W0 [2, 5]");
    assert_arg_error(mm_cfconv(&t, x, &pr, w0, b0, w0, b2, &y), "W2 [2, 4]");
    pr.q = qbad;
    assert_arg_error(mm_cfconv(&t, x, &pr, w0, b0, w2, b2, &y), "pair 1 = (p 1, q 3)");
    pr.q = qself;
    assert_arg_error(mm_cfconv(&t, x, &pr, w0, b0, w2, b2, &y), "pair 1 = (p 1, q 1)");
    mm_tape_destroy(&t);
}

/* No pairs at all (a batch of single atoms): zeros out, nothing added to any gradient,
 * and the pair arrays may be NULL. */
static void test_no_pairs(void **state)
{
    (void)state;
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    enum { A = 3, F = 4, R = 5 };
    float data[A * F + F * R + F + F * F + F], grad[sizeof data / sizeof(float)];
    gc_fill_uniform(data, (int64_t)(sizeof data / sizeof(float)), -1.0f, 1.0f, 11);
    for (size_t i = 0; i < sizeof grad / sizeof(float); i++) grad[i] = 0.25f;
    const int64_t sz[5] = {A * F, F * R, F, F * F, F}, sh[5][2] = {{A, F}, {F, R}, {F, 0}, {F, F}, {F, 0}};
    mm_tensor *in[5], *y;
    for (int i = 0, off = 0; i < 5; off += (int)sz[i], i++)
        assert_int_equal(mm_tensor_wrap(&t, data + off, grad + off, sh[i][1] ? 2 : 1, sh[i], &in[i]), MM_OK);
    mm_cfconv_pairs pr = {0, R, NULL, NULL, NULL, NULL, 0, true};
    assert_int_equal(mm_cfconv(&t, in[0], &pr, in[1], in[2], in[3], in[4], &y), MM_OK);
    assert_true(y->shape[0] == A && y->shape[1] == F && y->grad);
    for (int64_t i = 0; i < A * F; i++) {
        assert_true(y->data[i] == 0.0f);
        y->grad[i] = 1.0f;
    }
    assert_int_equal(mm_tape_run_backward(&t), MM_OK);
    for (size_t i = 0; i < sizeof grad / sizeof(float); i++) assert_true(grad[i] == 0.25f);
    mm_tape_destroy(&t);
}

/* ---- against the unfused composition, on real conformers ------------------------------ */

/* in this order: ibuprofen; methane (one heavy atom, no pair); hexadecane (longer than the
 * 5 A cutoff); benzoic acid */
static const char *const SMILES[] = {"CC(C)Cc1ccc(cc1)C(C)C(=O)O", "C", "CCCCCCCCCCCCCCCC", "OC(=O)c1ccccc1"};
enum { N_MOL = 4 };

typedef struct {
    mm_job job;
    mm_model m;
    mm_molset ms;
    mm_tape t;
} fixture;

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, &f->job), MM_OK);
    mm_model_config *c = &f->job.model;
    c->schnet_hidden = 12;
    c->schnet_filters = 10;
    c->schnet_interactions = 2;
    c->embed_dim = 8; /* n_rbf 50 and cutoff 5 A: the defaults (DESIGN) */
    assert_int_equal(mm_model_init(&f->m, c, &f->job.loss, 17), MM_OK);
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.image = o.fingerprint = o.scaffold = 0;
    mm_chem *ch;
    assert_int_equal(mm_chem_create(&o, &ch), MM_OK);
    mm_mol_feat mf;
    mm_mol_feat_init(&mf);
    mm_molset_opts mo = {MM_MOD_CONFORMER, 0, 0, 0, NULL};
    assert_int_equal(mm_molset_init(&f->ms, &mo), MM_OK);
    for (int i = 0; i < N_MOL; i++) {
        assert_int_equal(mm_chem_featurize_smiles(ch, SMILES[i], (uint64_t)i, &mf), MM_OK);
        assert_true(mf.conf_ok);
        mm_mol_in mi = {SMILES[i], i, mf.n_atoms, mf.atom_feat, mf.n_bonds, mf.bond_index, mf.bond_feat, mf.xyz, 1,
                        NULL, NULL, NULL, NULL, {{0}}};
        assert_int_equal(mm_molset_append(&f->ms, &mi), MM_OK);
    }
    mm_mol_feat_free(&mf);
    mm_chem_destroy(&ch);
    assert_int_equal(mm_tape_init(&f->t, 1 << 20), MM_OK);
}

static void fixture_free(fixture *f)
{
    mm_tape_destroy(&f->t);
    mm_molset_free(&f->ms);
    mm_model_destroy(&f->m);
}

static mm_batch *batch(fixture *f)
{
    assert_int_equal(mm_tape_reset(&f->t), MM_OK);
    mm_batch *b;
    int64_t counts[1] = {f->ms.n};
    assert_int_equal(mm_batch_build(&f->t, &f->m, &f->ms, &SELF, counts, &b), MM_OK);
    return b;
}

/* The batch is what the tests claim: a single-atom molecule, pairs dropped by the cutoff,
 * every pair p < q once, sorted. */
static void check_batch(const fixture *f, const mm_batch *b)
{
    const int64_t *off = f->ms.atom_offset;
    assert_int_equal(off[2] - off[1], 1);
    assert_int_equal(b->pairs_per_mol[1], 0);
    int64_t na = off[3] - off[2];
    assert_true(b->pairs_per_mol[2] > 0 && b->pairs_per_mol[2] < na * (na - 1) / 2);
    for (int64_t k = 0; k < b->n_pairs; k++) {
        assert_true(b->pair_p[k] < b->pair_q[k]);
        if (k) assert_true(b->pair_p[k] > b->pair_p[k - 1] || (b->pair_p[k] == b->pair_p[k - 1] && b->pair_q[k] > b->pair_q[k - 1]));
    }
}

/* Ordered pairs (p, q) and (q, p) of every unordered one, sorted by p then q (what the
 * batch held before mm_cfconv), with their rbf and fcut rows. */
typedef struct {
    int64_t n, *p, *q;
    float *rbf, *fcut;
} ordered;

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0;
}

static ordered expand(const mm_batch *b, int64_t R)
{
    ordered o = {2 * b->n_pairs, NULL, NULL, NULL, NULL};
    int64_t *tmp = malloc((size_t)(o.n ? o.n : 1) * 3 * sizeof(int64_t)); /* (p, q, source pair) */
    for (int64_t k = 0; k < b->n_pairs; k++) {
        int64_t *u = tmp + 6 * k;
        u[0] = b->pair_p[k], u[1] = b->pair_q[k], u[2] = k;
        u[3] = b->pair_q[k], u[4] = b->pair_p[k], u[5] = k;
    }
    qsort(tmp, (size_t)o.n, 3 * sizeof(int64_t), cmp_pair);
    o.p = malloc((size_t)(o.n ? o.n : 1) * sizeof(int64_t));
    o.q = malloc((size_t)(o.n ? o.n : 1) * sizeof(int64_t));
    o.rbf = malloc((size_t)(o.n ? o.n : 1) * (size_t)R * sizeof(float));
    o.fcut = malloc((size_t)(o.n ? o.n : 1) * sizeof(float));
    for (int64_t i = 0; i < o.n; i++) {
        int64_t k = tmp[3 * i + 2];
        o.p[i] = tmp[3 * i];
        o.q[i] = tmp[3 * i + 1];
        memcpy(o.rbf + i * R, b->rbf + k * R, (size_t)R * sizeof(float));
        o.fcut[i] = b->fcut[k];
    }
    free(tmp);
    return o;
}

static void ordered_free(ordered *o)
{
    free(o->p);
    free(o->q);
    free(o->rbf);
    free(o->fcut);
}

/* The composition mm_cfconv replaces, on ordered pairs. */
static mm_status unfused(mm_tape *t, const ordered *o, int64_t R, int64_t A, mm_tensor *x, mm_tensor *w0,
                         mm_tensor *b0, mm_tensor *w2, mm_tensor *b2, mm_tensor **agg)
{
    mm_tensor *rbf, *fcut, *f1, *f1a, *w, *xq, *msg;
    MM_CALL(mm_tensor_wrap(t, o->rbf, NULL, 2, (int64_t[]){o->n, R}, &rbf));
    MM_CALL(mm_tensor_wrap(t, o->fcut, NULL, 1, (int64_t[]){o->n}, &fcut));
    MM_CALL(mm_linear(t, rbf, w0, b0, &f1));
    MM_CALL(mm_ssp(t, f1, &f1a));
    MM_CALL(mm_linear(t, f1a, w2, b2, &w));
    MM_CALL(mm_row_scale(t, w, fcut, &w));
    MM_CALL(mm_gather_rows(t, x, o->q, o->n, &xq));
    MM_CALL(mm_mul(t, xq, w, &msg));
    MM_CALL(mm_scatter_add_rows(t, msg, o->p, o->n, A, agg));
    return MM_OK;
}

/* max |a - b| / max(max |b|, 1e-30), and the worst over calls in *worst */
static double rel_diff(const float *a, const float *b, int64_t n, double *worst)
{
    double d = tu_max_abs_diff(a, b, n) / fmax(tu_max_abs(b, n), 1e-30);
    if (d > *worst) *worst = d;
    return d;
}

/* Values within 1e-6 and gradients within 1e-5 of the largest: float rounding (the
 * fused softplus is an ulp or two off libm's, the weight gradients are summed in
 * blocks); a wrong term anywhere is orders of magnitude more. */
#define VAL_TOL 1e-6
#define GRAD_TOL 1e-5

static void test_op_matches_unfused(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    mm_tape *t = &f.t;
    const int64_t F = 10, R = f.job.model.schnet_n_rbf;
    mm_batch *b0_ = batch(&f);
    check_batch(&f, b0_);
    unsigned csr0 = CSR();
    /* the real RBF rows hold subnormals (centres far from the distance): the case the op
     * flushes, compared below with the unfused ops that keep them */
    int64_t n_sub = 0;
    for (int64_t i = 0; i < b0_->n_pairs * R; i++) n_sub += b0_->rbf[i] != 0.0f && fabsf(b0_->rbf[i]) < 1.17549435e-38f;
    assert_true(n_sub > 0);
    int64_t A = b0_->n_atoms, P = b0_->n_pairs;
    /* the batch lives on the tape, which the runs below reset: keep a copy */
    int64_t *pp = malloc((size_t)P * sizeof(int64_t)), *qq = malloc((size_t)P * sizeof(int64_t));
    float *rbf = malloc((size_t)(P * R) * sizeof(float)), *fc = malloc((size_t)P * sizeof(float));
    memcpy(pp, b0_->pair_p, (size_t)P * sizeof(int64_t));
    memcpy(qq, b0_->pair_q, (size_t)P * sizeof(int64_t));
    memcpy(rbf, b0_->rbf, (size_t)(P * R) * sizeof(float));
    memcpy(fc, b0_->fcut, (size_t)P * sizeof(float));
    ordered o = expand(b0_, R);
    /* a block of 7 pairs splits molecules: the first one has more than 7 pairs and a
     * pair count that is no multiple of 7 */
    assert_true(b0_->pairs_per_mol[0] > 7 && b0_->pairs_per_mol[0] % 7 != 0);

    int64_t sz[5] = {A * F, F * R, F, F * F, F};
    float *data[5], *grad_ref[5], *grad[5], *g_out = malloc((size_t)(A * F) * sizeof(float));
    for (int i = 0; i < 5; i++) {
        data[i] = malloc((size_t)sz[i] * sizeof(float));
        grad_ref[i] = calloc((size_t)sz[i], sizeof(float));
        grad[i] = calloc((size_t)sz[i], sizeof(float));
        gc_fill_uniform(data[i], sz[i], i == 1 || i == 3 ? -0.4f : -1.0f, i == 1 || i == 3 ? 0.4f : 1.0f, 100 + (uint64_t)i);
    }
    gc_fill_uniform(g_out, A * F, -1.0f, 1.0f, 99);
    const int64_t dims[5][2] = {{A, F}, {F, R}, {F, 0}, {F, F}, {F, 0}};
    float *y_ref = malloc((size_t)(A * F) * sizeof(float));
    double worst_val = 0, worst_grad = 0;
    /* runs 5 and 6 keep the filters: the same values as runs 2 and 3, bit for bit */
    const int64_t blocks[] = {0 /* reference */, 1, 7, 0, 100000, 7, 0};
    float *kept_y[2], *kept_g[2][5];
    for (int run = 0; run < 7; run++) {
        assert_int_equal(mm_tape_reset(t), MM_OK);
        float **gr = run == 0 ? grad_ref : grad;
        mm_tensor *in[5], *y;
        for (int i = 0; i < 5; i++) {
            memset(gr[i], 0, (size_t)sz[i] * sizeof(float));
            assert_int_equal(mm_tensor_wrap(t, data[i], gr[i], dims[i][1] ? 2 : 1,
                                            dims[i][1] ? dims[i] : (const int64_t[]){dims[i][0]}, &in[i]),
                             MM_OK);
        }
        if (run == 0) {
            assert_int_equal(unfused(t, &o, R, A, in[0], in[1], in[2], in[3], in[4], &y), MM_OK);
        } else {
            mm_cfconv_pairs pr = {P, R, pp, qq, rbf, fc, blocks[run], run >= 5};
            assert_int_equal(mm_cfconv(t, in[0], &pr, in[1], in[2], in[3], in[4], &y), MM_OK);
        }
        unsigned csr = CSR();
        memcpy(y->grad, g_out, (size_t)(A * F) * sizeof(float));
        assert_int_equal(mm_tape_run_backward(t), MM_OK);
        assert_int_equal(CSR(), csr); /* the op flushes subnormals inside and restores the mode */
        assert_int_equal(csr, csr0);
        if (run == 0) {
            memcpy(y_ref, y->data, (size_t)(A * F) * sizeof(float));
            continue;
        }
        if (run == 2 || run == 3) { /* for the runs that keep the filters */
            kept_y[run - 2] = malloc((size_t)(A * F) * sizeof(float));
            memcpy(kept_y[run - 2], y->data, (size_t)(A * F) * sizeof(float));
            for (int i = 0; i < 5; i++) {
                kept_g[run - 2][i] = malloc((size_t)sz[i] * sizeof(float));
                memcpy(kept_g[run - 2][i], grad[i], (size_t)sz[i] * sizeof(float));
            }
        }
        if (run >= 5) {
            assert_memory_equal(y->data, kept_y[run - 5], (size_t)(A * F) * sizeof(float));
            for (int i = 0; i < 5; i++) assert_memory_equal(grad[i], kept_g[run - 5][i], (size_t)sz[i] * sizeof(float));
        }
        double dv = rel_diff(y->data, y_ref, A * F, &worst_val);
        printf("  block %6lld%s: out %.1e, grads x %.1e W0 %.1e b0 %.1e W2 %.1e b2 %.1e\n", (long long)blocks[run],
               run >= 5 ? " kept" : "     ", dv,
               rel_diff(grad[0], grad_ref[0], sz[0], &worst_grad), rel_diff(grad[1], grad_ref[1], sz[1], &worst_grad),
               rel_diff(grad[2], grad_ref[2], sz[2], &worst_grad), rel_diff(grad[3], grad_ref[3], sz[3], &worst_grad),
               rel_diff(grad[4], grad_ref[4], sz[4], &worst_grad));
    }
    /* the single atom gets nothing, and its own features get no gradient */
    int64_t lone = f.ms.atom_offset[1];
    for (int64_t j = 0; j < F; j++) assert_true(y_ref[lone * F + j] == 0.0f && grad[0][lone * F + j] == 0.0f);
    assert_true(tu_max_abs(y_ref, A * F) > 0.1);
    assert_true(worst_val <= VAL_TOL);
    assert_true(worst_grad <= GRAD_TOL);
    for (int i = 0; i < 5; i++) {
        free(data[i]);
        free(grad_ref[i]);
        free(grad[i]);
        free(kept_g[0][i]);
        free(kept_g[1][i]);
    }
    free(kept_y[0]);
    free(kept_y[1]);
    free(g_out);
    free(y_ref);
    free(pp);
    free(qq);
    free(rbf);
    free(fc);
    ordered_free(&o);
    fixture_free(&f);
}

/* The conformer encoder as it was before mm_cfconv (encoders.c), on ordered pairs. */
static mm_status encode_unfused(mm_model *m, mm_tape *t, const mm_batch *b, const ordered *o, mm_tensor **z)
{
    const mm_model_config *c = &m->cfg;
    mm_tensor *table, *h;
    int64_t off0 = 0;
    MM_CALL(mm_params_tensor(&m->params, t, m->schnet.emb, &table));
    int32_t *z_idx;
    MM_CALL(mm_tape_alloc(t, (size_t)(b->n_atoms ? b->n_atoms : 1) * sizeof(int32_t), (void **)&z_idx));
    for (int64_t a = 0; a < b->n_atoms; a++) z_idx[a] = b->ms->atom_feat[9 * a];
    MM_CALL(mm_embedding_multi(t, table, z_idx, b->n_atoms, 1, &off0, &h));
#define LIN(x, l, y)                                                                                                   \
    do {                                                                                                               \
        mm_tensor *w_, *b_ = NULL;                                                                                     \
        MM_CALL(mm_params_tensor(&m->params, t, (l).w, &w_));                                                          \
        if ((l).b >= 0) MM_CALL(mm_params_tensor(&m->params, t, (l).b, &b_));                                          \
        MM_CALL(mm_linear(t, x, w_, b_, y));                                                                           \
    } while (0)
    for (int k = 0; k < c->schnet_interactions; k++) {
        mm_tensor *w0, *b0, *w2, *b2, *x, *agg, *v1, *v1a, *v;
        MM_CALL(mm_params_tensor(&m->params, t, m->schnet.filter0[k].w, &w0));
        MM_CALL(mm_params_tensor(&m->params, t, m->schnet.filter0[k].b, &b0));
        MM_CALL(mm_params_tensor(&m->params, t, m->schnet.filter2[k].w, &w2));
        MM_CALL(mm_params_tensor(&m->params, t, m->schnet.filter2[k].b, &b2));
        LIN(h, m->schnet.lin1[k], &x);
        MM_CALL(unfused(t, o, c->schnet_n_rbf, b->n_atoms, x, w0, b0, w2, b2, &agg));
        LIN(agg, m->schnet.lin2[k], &v1);
        MM_CALL(mm_ssp(t, v1, &v1a));
        LIN(v1a, m->schnet.lin[k], &v);
        MM_CALL(mm_add(t, h, v, &h));
    }
    mm_tensor *pooled;
    MM_CALL(mm_segment_sum(t, h, b->ms->atom_offset, b->n, &pooled));
    LIN(pooled, m->schnet.out, z);
#undef LIN
    return MM_OK;
}

static void test_encoder_matches_unfused(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    mm_params *pa = &f.m.params;
    int64_t E = f.job.model.embed_dim, n = f.ms.n;
    float *z_ref = malloc((size_t)(n * E) * sizeof(float)), *g_ref = malloc(pa->total * sizeof(float));
    float *g_out = malloc((size_t)(n * E) * sizeof(float));
    gc_fill_uniform(g_out, n * E, -1.0f, 1.0f, 5);
    double worst_val = 0, worst_grad = 0;
    /* unfused, then fused keeping the filters for the backward, then recomputing them */
    for (int fused = 0; fused < 3; fused++) {
        f.m.cfg.schnet_keep_filters = fused == 1;
        mm_batch *b = batch(&f);
        ordered o = expand(b, f.job.model.schnet_n_rbf);
        mm_params_zero_grad(pa);
        mm_tensor *z;
        if (fused)
            assert_int_equal(mm_encode_conformer(&f.m, &f.t, b, &z), MM_OK);
        else
            assert_int_equal(encode_unfused(&f.m, &f.t, b, &o, &z), MM_OK);
        memcpy(z->grad, g_out, (size_t)(n * E) * sizeof(float));
        assert_int_equal(mm_tape_run_backward(&f.t), MM_OK);
        ordered_free(&o);
        if (!fused) {
            memcpy(z_ref, z->data, (size_t)(n * E) * sizeof(float));
            memcpy(g_ref, pa->grad, pa->total * sizeof(float));
            continue;
        }
        printf("  encoder (%s) z %.1e\n", fused == 1 ? "filters kept" : "filters recomputed",
               rel_diff(z->data, z_ref, n * E, &worst_val));
        int checked = 0;
        for (int i = 0; i < pa->count; i++) {
            const mm_param_info *in = &pa->info[i];
            if (strncmp(in->name, "enc.conformer.", 14)) continue;
            double d = rel_diff(pa->grad + in->offset, g_ref + in->offset, (int64_t)in->n, &worst_grad);
            assert_true(tu_max_abs(g_ref + in->offset, (int64_t)in->n) > 0); /* every parameter gets a gradient */
            if (d > GRAD_TOL) printf("  grad %s %.1e FAIL\n", in->name, d);
            checked++;
        }
        printf("  %d conformer parameters, worst gradient %.1e\n", checked, worst_grad);
        assert_int_equal(checked, 3 + 2 * 9); /* emb, out w/b; per block filter0 and 2, lin1 (no bias), lin2, lin */
    }
    assert_true(worst_val <= VAL_TOL);
    assert_true(worst_grad <= GRAD_TOL);
    free(z_ref);
    free(g_ref);
    free(g_out);
    fixture_free(&f);
}

/* With train.precision bf16 the op's filter GEMMs run on AMX tiles: the encoder's output
 * and the conformer parameters' gradients stay within bf16 rounding of float32 (and differ
 * from it, so the bf16 path did run). Skipped without AMX-BF16. */
static void test_encoder_bf16_tracks_fp32(void **state)
{
    (void)state;
    if (!mm_blas_bf16_available(NULL)) skip();
    fixture f;
    fixture_init(&f);
    mm_params *pa = &f.m.params;
    int64_t E = f.job.model.embed_dim, n = f.ms.n;
    float *z32 = malloc((size_t)(n * E) * sizeof(float)), *g32 = malloc(pa->total * sizeof(float));
    float *g_out = malloc((size_t)(n * E) * sizeof(float));
    gc_fill_uniform(g_out, n * E, -1.0f, 1.0f, 6);
    for (int bf = 0; bf < 2; bf++) {
        assert_int_equal(mm_blas_set_precision(bf ? MM_PREC_BF16 : MM_PREC_FP32), MM_OK);
        mm_batch *b = batch(&f);
        mm_params_zero_grad(pa);
        mm_tensor *z;
        assert_int_equal(mm_encode_conformer(&f.m, &f.t, b, &z), MM_OK);
        memcpy(z->grad, g_out, (size_t)(n * E) * sizeof(float));
        assert_int_equal(mm_tape_run_backward(&f.t), MM_OK);
        if (!bf) {
            memcpy(z32, z->data, (size_t)(n * E) * sizeof(float));
            memcpy(g32, pa->grad, pa->total * sizeof(float));
            continue;
        }
        double worst = 0, dz = rel_diff(z->data, z32, n * E, &worst);
        printf("  bf16 encoder z %.1e\n", dz);
        assert_true(dz > 1e-7 && dz < 3e-2);
        for (int i = 0; i < pa->count; i++) {
            const mm_param_info *in = &pa->info[i];
            if (strncmp(in->name, "enc.conformer.", 14)) continue;
            double d = rel_diff(pa->grad + in->offset, g32 + in->offset, (int64_t)in->n, &worst);
            if (d >= 5e-2) printf("  bf16 grad %s %.1e\n", in->name, d);
        }
        printf("  bf16 worst conformer gradient %.1e\n", worst);
        assert_true(worst < 5e-2);
    }
    assert_int_equal(mm_blas_set_precision(MM_PREC_FP32), MM_OK);
    free(z32);
    free(g32);
    free(g_out);
    fixture_free(&f);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&SELF, MPI_COMM_SELF)) {
        mm_error_print(stderr, 0);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssp_accuracy),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_no_pairs),
        cmocka_unit_test(test_op_matches_unfused),
        cmocka_unit_test(test_encoder_matches_unfused),
        cmocka_unit_test(test_encoder_bf16_tracks_fp32),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mm_dist_destroy(&SELF);
    MPI_Finalize();
    return rc;
}
