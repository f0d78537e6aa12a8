/* Tests for the fused ops of a GIN layer: graph_ops.h (the edge index of a batch and
 * mm_gin_aggregate), mm_linear_relu (ops.h) and mm_batchnorm_relu (nn.h), each against
 * the unfused composition it replaces on real molecules (BBBP rows through the
 * featuriser, plus molecules without bonds and single atoms), and by finite
 * differences. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"
#include "mmsa/graph_ops.h"
#include "mmsa/index_ops.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "testutil.h"

#define OK(x) assert_int_equal((x), MM_OK)

static const int32_t bond_vocab[3] = {6, 6, 2}; /* GIN's: bond type with 5 = self loop */

/* Edges of a batch of molecules as the batch builder lays them out: each bond both
 * ways, then one self loop per atom (bond type 5). */
typedef struct {
    int64_t n_atoms, n_edges, n_mols;
    int64_t *src, *dst;
    int32_t *feat; /* [n_edges, 3] */
} edges;

static void edges_free(edges *e)
{
    free(e->src);
    free(e->dst);
    free(e->feat);
    memset(e, 0, sizeof *e);
}

static void add_molecule(edges *e, const mm_mol_feat *f)
{
    int64_t a0 = e->n_atoms, ne = e->n_edges + 2 * (int64_t)f->n_bonds + f->n_atoms;
    e->src = realloc(e->src, (size_t)ne * sizeof(int64_t));
    e->dst = realloc(e->dst, (size_t)ne * sizeof(int64_t));
    e->feat = realloc(e->feat, (size_t)ne * 3 * sizeof(int32_t));
    assert_non_null(e->src);
    assert_non_null(e->dst);
    assert_non_null(e->feat);
    int64_t k = e->n_edges;
    for (int32_t b = 0; b < f->n_bonds; b++)
        for (int dir = 0; dir < 2; dir++, k++) {
            int64_t p = a0 + f->bond_index[2 * b], q = a0 + f->bond_index[2 * b + 1];
            e->src[k] = dir ? q : p;
            e->dst[k] = dir ? p : q;
            for (int j = 0; j < 3; j++) e->feat[3 * k + j] = f->bond_feat[3 * b + j];
        }
    for (int32_t a = 0; a < f->n_atoms; a++, k++) {
        e->src[k] = e->dst[k] = a0 + a;
        e->feat[3 * k] = 5;
        e->feat[3 * k + 1] = e->feat[3 * k + 2] = 0;
    }
    e->n_atoms += f->n_atoms;
    e->n_edges = ne;
    e->n_mols++;
}

/* The first `n_bbbp` molecules of BBBP the featuriser accepts, then the extra SMILES. */
static edges real_edges(int n_bbbp, int n_extra, const char *const *extra)
{
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = o.image = o.fingerprint = o.scaffold = 0;
    mm_chem *c = NULL;
    OK(mm_chem_create(&o, &c));
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    edges e = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/data/moleculenet/bbbp.csv", tu_shared_dir());
    mm_table *tab = NULL;
    OK(mm_table_open(path, NULL, &tab));
    while (e.n_mols < n_bbbp) {
        mm_table_row row;
        bool eof = false;
        OK(mm_table_next(tab, &row, &eof));
        assert_false(eof);
        mm_status st = mm_chem_featurize_smiles(c, row.smiles, 0, &f);
        if (st == MM_ERR_CHEM) {
            mm_error_clear();
            continue;
        }
        OK(st);
        add_molecule(&e, &f);
    }
    mm_table_close(&tab);
    for (int i = 0; i < n_extra; i++) {
        OK(mm_chem_featurize_smiles(c, extra[i], 0, &f));
        add_molecule(&e, &f);
    }
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
    return e;
}

/* Single atoms and molecules without bonds, which have only self loops. */
static const char *const no_bonds[] = {"C", "[Na+].[Cl-]", "O", "[Ca+2]"};

static void test_graph_build_index(void **state)
{
    (void)state;
    mm_tape t;
    OK(mm_tape_init(&t, 1 << 16));
    /* 3 nodes; edges 0:0->1 1:1->0 2:2->1 3:1->1 4:0->1 */
    const int64_t src[5] = {0, 1, 2, 1, 0}, dst[5] = {1, 0, 1, 1, 1};
    const int32_t feat[15] = {0, 1, 1, 0, 1, 1, 2, 0, 0, 5, 0, 0, 0, 1, 1};
    mm_graph g;
    OK(mm_graph_build(&t, 3, 5, src, dst, 3, feat, bond_vocab, &g));
    const int64_t in_ptr[4] = {0, 1, 5, 5}, in_edge[5] = {1, 0, 2, 3, 4};
    const int64_t out_ptr[4] = {0, 2, 4, 5}, out_edge[5] = {0, 4, 1, 3, 2};
    assert_memory_equal(g.in_ptr, in_ptr, sizeof in_ptr);
    assert_memory_equal(g.in_edge, in_edge, sizeof in_edge);
    assert_memory_equal(g.out_ptr, out_ptr, sizeof out_ptr);
    assert_memory_equal(g.out_edge, out_edge, sizeof out_edge);
    /* kinds numbered by first use: (0,1,1) (2,0,0) (5,0,0) */
    assert_int_equal(g.n_kinds, 3);
    const int32_t kind[5] = {0, 0, 1, 2, 0}, kind_feat[9] = {0, 1, 1, 2, 0, 0, 5, 0, 0};
    assert_memory_equal(g.kind, kind, sizeof kind);
    assert_memory_equal(g.kind_feat, kind_feat, sizeof kind_feat);

    /* an empty graph, and bad input naming the edge */
    OK(mm_graph_build(&t, 0, 0, NULL, NULL, 3, NULL, bond_vocab, &g));
    assert_int_equal(g.n_kinds, 0);
    const int64_t bad_dst[5] = {1, 0, 3, 1, 1};
    assert_int_equal(mm_graph_build(&t, 3, 5, src, bad_dst, 3, feat, bond_vocab, &g), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "edge 2"));
    mm_error_clear();
    int32_t bad_feat[15];
    memcpy(bad_feat, feat, sizeof bad_feat);
    bad_feat[3 * 4 + 1] = 6;
    assert_int_equal(mm_graph_build(&t, 3, 5, src, dst, 3, bad_feat, bond_vocab, &g), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "edge 4 feature 1 has index 6"));
    mm_error_clear();
    const int32_t huge[3] = {1 << 10, 1 << 10, 2};
    assert_int_equal(mm_graph_build(&t, 3, 5, src, dst, 3, feat, huge, &g), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

/* The composition mm_gin_aggregate replaces. */
static mm_status gin_unfused(mm_tape *t, mm_tensor *h, mm_tensor *table, const int64_t *off, const edges *e,
                             mm_tensor **out)
{
    mm_tensor *emb, *hs, *msg;
    MM_CALL(mm_embedding_multi(t, table, e->feat, e->n_edges, 3, off, &emb));
    MM_CALL(mm_gather_rows(t, h, e->src, e->n_edges, &hs));
    MM_CALL(mm_add(t, hs, emb, &msg));
    MM_CALL(mm_scatter_add_rows(t, msg, e->dst, e->n_edges, e->n_atoms, out));
    return MM_OK;
}

static void test_gin_aggregate_matches_unfused(void **state)
{
    (void)state;
    edges e = real_edges(60, 4, no_bonds);
    const int64_t H = 37, V = 14, off[3] = {0, 6, 12}; /* H odd: vector loops end in a remainder */
    int64_t nh = e.n_atoms * H;
    float *hv = malloc((size_t)nh * sizeof(float)), *tv = malloc((size_t)(V * H) * sizeof(float));
    float *dy = malloc((size_t)nh * sizeof(float));
    float *gh[2], *gt[2], *y[2];
    for (int w = 0; w < 2; w++) {
        gh[w] = calloc((size_t)nh, sizeof(float));
        gt[w] = calloc((size_t)(V * H), sizeof(float));
        y[w] = malloc((size_t)nh * sizeof(float));
    }
    gc_fill_uniform(hv, nh, -2, 2, 11);
    gc_fill_uniform(tv, V * H, -1, 1, 12);
    gc_fill_uniform(dy, nh, -1, 1, 13);
    for (int w = 0; w < 2; w++) {
        mm_tape t;
        OK(mm_tape_init(&t, 1 << 20));
        mm_tensor *h, *table, *out;
        OK(mm_tensor_wrap(&t, hv, gh[w], 2, (int64_t[]){e.n_atoms, H}, &h));
        OK(mm_tensor_wrap(&t, tv, gt[w], 2, (int64_t[]){V, H}, &table));
        if (w == 0) {
            OK(gin_unfused(&t, h, table, off, &e, &out));
        } else {
            mm_graph g;
            OK(mm_graph_build(&t, e.n_atoms, e.n_edges, e.src, e.dst, 3, e.feat, bond_vocab, &g));
            OK(mm_gin_aggregate(&t, h, table, off, &g, &out));
        }
        assert_int_equal(out->shape[0], e.n_atoms);
        assert_int_equal(out->shape[1], H);
        memcpy(y[w], out->data, (size_t)nh * sizeof(float));
        memcpy(out->grad, dy, (size_t)nh * sizeof(float));
        OK(mm_tape_run_backward(&t));
        mm_tape_destroy(&t);
    }
    printf("# %lld molecules, %lld atoms, %lld edges\n", (long long)e.n_mols, (long long)e.n_atoms, (long long)e.n_edges);
    /* same terms in the same order: the values and the gradient to h are bit-for-bit */
    assert_memory_equal(y[0], y[1], (size_t)nh * sizeof(float));
    assert_memory_equal(gh[0], gh[1], (size_t)nh * sizeof(float));
    /* The table gradient is summed per bond kind first, so it differs from the unfused
     * one by float rounding: both are compared with the sum in double, and the fused one
     * must be no less accurate (a wrong row or a missing edge would be off by O(1)). */
    double *ref = calloc((size_t)(V * H), sizeof(double)), err[2] = {0, 0}, m = 0;
    for (int64_t k = 0; k < e.n_edges; k++)
        for (int f = 0; f < 3; f++)
            for (int64_t j = 0; j < H; j++) ref[(off[f] + e.feat[3 * k + f]) * H + j] += dy[e.dst[k] * H + j];
    for (int64_t i = 0; i < V * H; i++) {
        for (int w = 0; w < 2; w++) err[w] = fmax(err[w], fabs(gt[w][i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    printf("# table gradient (max %.3g): max error unfused %.3g, fused %.3g\n", m, err[0], err[1]);
    assert_true(m > 1.0);
    assert_true(err[1] <= 1e-5 * m);
    assert_true(err[1] <= 2 * err[0] + 1e-6 * m);
    free(ref);
    /* the self-loop rows of the last molecules (no bonds) reached the output */
    assert_true(fabsf(y[1][nh - 1]) > 0.0f);
    for (int w = 0; w < 2; w++) {
        free(gh[w]);
        free(gt[w]);
        free(y[w]);
    }
    free(hv);
    free(tv);
    free(dy);
    edges_free(&e);
}

typedef struct { const edges *e; const int64_t *off; } agg_arg;

static mm_status build_agg(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    agg_arg *a = ctx;
    mm_graph g;
    MM_CALL(mm_graph_build(t, a->e->n_atoms, a->e->n_edges, a->e->src, a->e->dst, 3, a->e->feat, bond_vocab, &g));
    MM_CALL(mm_gin_aggregate(t, in[0], in[1], a->off, &g, out));
    return MM_OK;
}

static void test_gin_aggregate_gradients(void **state)
{
    (void)state;
    /* two BBBP molecules, then a single atom and a salt without bonds */
    edges e = real_edges(2, 2, no_bonds);
    const int64_t H = 5, off[3] = {0, 6, 12};
    float *hv = malloc((size_t)(e.n_atoms * H) * sizeof(float)), tv[14 * 5];
    gc_fill_uniform(hv, e.n_atoms * H, -1, 1, 21);
    gc_fill_uniform(tv, 14 * H, -1, 1, 22);
    agg_arg a = {&e, off};
    gc_input in[2] = {{hv, 2, {e.n_atoms, H}, true}, {tv, 2, {14, H}, true}};
    assert_int_equal(gradcheck(build_agg, &a, 2, in, NULL), 0);
    free(hv);
    edges_free(&e);
}

static void test_gin_aggregate_errors(void **state)
{
    (void)state;
    mm_tape t;
    OK(mm_tape_init(&t, 1 << 16));
    const int64_t src[2] = {0, 1}, dst[2] = {1, 0};
    const int32_t feat[6] = {0, 0, 0, 5, 5, 1};
    mm_graph g;
    OK(mm_graph_build(&t, 2, 2, src, dst, 3, feat, bond_vocab, &g));
    float hv[8] = {0}, tv[14 * 4] = {0};
    mm_tensor *h, *table, *wide, *out;
    OK(mm_tensor_wrap(&t, hv, NULL, 2, (int64_t[]){2, 4}, &h));
    OK(mm_tensor_wrap(&t, tv, NULL, 2, (int64_t[]){14, 4}, &table));
    OK(mm_tensor_wrap(&t, tv, NULL, 2, (int64_t[]){7, 8}, &wide));
    const int64_t off[3] = {0, 6, 12}, short_off[3] = {0, 5, 12};
    assert_int_equal(mm_gin_aggregate(&t, h, wide, off, &g, &out), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_gin_aggregate(&t, h, table, short_off, &g, &out), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "feature 0"));
    mm_error_clear();
    mm_tensor *small;
    OK(mm_tensor_wrap(&t, tv, NULL, 2, (int64_t[]){13, 4}, &small));
    assert_int_equal(mm_gin_aggregate(&t, h, small, off, &g, &out), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "feature 2"));
    mm_error_clear();
    OK(mm_gin_aggregate(&t, h, table, off, &g, &out));
    mm_tape_destroy(&t);
}

/* ---- a whole GIN layer, fused against unfused ------------------------------------ */

enum { L_H, L_TABLE, L_W0, L_B0, L_W2, L_B2, L_GAMMA, L_BETA, L_N };

/* agg -> Linear(H, 2H) -> ReLU -> Linear(2H, H) -> BatchNorm -> ReLU, as the encoder
 * wrote it before the fused ops (fused = 0) and as it does now (fused = 1). */
static mm_status gin_layer(mm_tape *t, mm_tensor **p, const edges *e, const int64_t *off, float *rm, float *rv,
                           int fused, mm_tensor **out)
{
    mm_tensor *agg, *a1, *y2;
    if (fused) {
        mm_graph g;
        MM_CALL(mm_graph_build(t, e->n_atoms, e->n_edges, e->src, e->dst, 3, e->feat, bond_vocab, &g));
        MM_CALL(mm_gin_aggregate(t, p[L_H], p[L_TABLE], off, &g, &agg));
        MM_CALL(mm_linear_relu(t, agg, p[L_W0], p[L_B0], &a1));
        MM_CALL(mm_linear(t, a1, p[L_W2], p[L_B2], &y2));
        MM_CALL(mm_batchnorm_relu(t, y2, p[L_GAMMA], p[L_BETA], rm, rv, 0.1f, 1e-5f, out));
    } else {
        mm_tensor *y1, *yn;
        MM_CALL(gin_unfused(t, p[L_H], p[L_TABLE], off, e, &agg));
        MM_CALL(mm_linear(t, agg, p[L_W0], p[L_B0], &y1));
        MM_CALL(mm_relu(t, y1, &a1));
        MM_CALL(mm_linear(t, a1, p[L_W2], p[L_B2], &y2));
        MM_CALL(mm_batchnorm(t, y2, p[L_GAMMA], p[L_BETA], rm, rv, 0.1f, 1e-5f, &yn));
        MM_CALL(mm_relu(t, yn, out));
    }
    return MM_OK;
}

static void test_gin_layer_matches_unfused(void **state)
{
    (void)state;
    edges e = real_edges(40, 4, no_bonds);
    const int64_t H = 19, off[3] = {0, 6, 12};
    const int64_t shapes[L_N][2] = {{e.n_atoms, H}, {14, H}, {2 * H, H}, {2 * H, 1}, {H, 2 * H}, {H, 1}, {H, 1}, {H, 1}};
    float *val[L_N], *grad[2][L_N];
    for (int k = 0; k < L_N; k++) {
        int64_t n = shapes[k][0] * shapes[k][1];
        val[k] = malloc((size_t)n * sizeof(float));
        gc_fill_uniform(val[k], n, -1, 1, 31 + (uint64_t)k);
        for (int w = 0; w < 2; w++) grad[w][k] = calloc((size_t)n, sizeof(float));
    }
    int64_t ny = e.n_atoms * H;
    float *dy = malloc((size_t)ny * sizeof(float)), *y[2][2];
    gc_fill_uniform(dy, ny, -1, 1, 41);
    float rm[2][19], rv[2][19];
    for (int w = 0; w < 2; w++) {
        for (int64_t j = 0; j < H; j++) rm[w][j] = 0.0f, rv[w][j] = 1.0f;
        /* training (batch statistics, backward), then evaluation (running statistics) */
        for (int train = 1; train >= 0; train--) {
            mm_tape t;
            OK(mm_tape_init(&t, 1 << 20));
            t.training = train;
            mm_tensor *p[L_N], *out;
            for (int k = 0; k < L_N; k++)
                OK(mm_tensor_wrap(&t, val[k], grad[w][k], shapes[k][1] == 1 ? 1 : 2, shapes[k], &p[k]));
            OK(gin_layer(&t, p, &e, off, rm[w], rv[w], w, &out));
            y[w][train] = malloc((size_t)ny * sizeof(float));
            memcpy(y[w][train], out->data, (size_t)ny * sizeof(float));
            if (train) {
                memcpy(out->grad, dy, (size_t)ny * sizeof(float));
                OK(mm_tape_run_backward(&t));
            }
            mm_tape_destroy(&t);
        }
    }
    for (int train = 0; train < 2; train++) assert_memory_equal(y[0][train], y[1][train], (size_t)ny * sizeof(float));
    assert_memory_equal(rm[0], rm[1], sizeof rm[0]);
    assert_memory_equal(rv[0], rv[1], sizeof rv[0]);
    /* every gradient bit-for-bit but the bond table's (summed per kind, tested above) */
    for (int k = 0; k < L_N; k++) {
        int64_t n = shapes[k][0] * shapes[k][1];
        if (k != L_TABLE) assert_memory_equal(grad[0][k], grad[1][k], (size_t)n * sizeof(float));
        assert_true(tu_max_abs(grad[1][k], n) > 0.0);
        assert_true(tu_max_abs_diff(grad[0][k], grad[1][k], n) <= 1e-5 * tu_max_abs(grad[0][k], n));
        free(val[k]);
        for (int w = 0; w < 2; w++) free(grad[w][k]);
    }
    for (int w = 0; w < 2; w++)
        for (int train = 0; train < 2; train++) free(y[w][train]);
    free(dy);
    edges_free(&e);
}

static mm_status build_linear_relu(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    (void)ctx;
    return mm_linear_relu(t, in[0], in[1], in[2], out);
}

typedef struct { float rm[4], rv[4]; } bn_arg;

static mm_status build_bn_relu(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    bn_arg *a = ctx;
    return mm_batchnorm_relu(t, in[0], in[1], in[2], t->training ? NULL : a->rm, t->training ? NULL : a->rv, 0.1f,
                             1e-5f, out);
}

static void test_fused_relu_gradients(void **state)
{
    (void)state;
    float x[5 * 4], w[3 * 4], b[3];
    gc_fill_uniform(x, 20, -1, 1, 51);
    gc_fill_uniform(w, 12, -1, 1, 52);
    gc_fill_uniform(b, 3, -0.5f, 0.5f, 53);
    gc_input lin[3] = {{x, 2, {5, 4}, true}, {w, 2, {3, 4}, true}, {b, 1, {3}, true}};
    assert_int_equal(gradcheck(build_linear_relu, NULL, 3, lin, NULL), 0);
    /* BatchNorm + ReLU on [N, C] (the GIN's) and [N, C, L] (the strided layout) */
    float xb[6 * 4 * 3], g[4], be[4];
    gc_fill_uniform(xb, 72, -2, 2, 54);
    gc_fill_uniform(g, 4, 0.5f, 1.5f, 55);
    gc_fill_uniform(be, 4, -0.3f, 0.3f, 56);
    bn_arg a = {{0}, {1, 1, 1, 1}};
    gc_opts o = {.h = 1e-4, .rtol = 1e-2, .atol = 1e-3};
    gc_input bn2[3] = {{xb, 2, {6, 4}, true}, {g, 1, {4}, true}, {be, 1, {4}, true}};
    assert_int_equal(gradcheck(build_bn_relu, &a, 3, bn2, &o), 0);
    gc_input bn3[3] = {{xb, 3, {6, 4, 3}, true}, {g, 1, {4}, true}, {be, 1, {4}, true}};
    assert_int_equal(gradcheck(build_bn_relu, &a, 3, bn3, &o), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_build_index),
        cmocka_unit_test(test_gin_aggregate_matches_unfused),
        cmocka_unit_test(test_gin_aggregate_gradients),
        cmocka_unit_test(test_gin_aggregate_errors),
        cmocka_unit_test(test_gin_layer_matches_unfused),
        cmocka_unit_test(test_fused_relu_gradients),
    };
    OK(mm_chem_init());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
