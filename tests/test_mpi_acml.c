/* Golden parity of ACML's projection heads and loss against ../shared/golden/acml_ref_v1.h5
 * (an independent float64 step; README-acml.md states the formulas and the tolerances
 * used here: loss 1e-5 relative, forward values 1e-4 and gradients 1e-3 relative to the
 * largest entry, retrieval ranks exact). Runs on 1 rank and on several: the 16 pairs are
 * split across the ranks, the loss by rows (acml.h), and the allreduced parameter
 * gradients and each rank's rows of the input gradient must still match. */
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
#include <cmocka.h>

#include "mmsa/acml.h"
#include "golden_h5.h"
#include "testutil.h"

static mm_dist D;
static hid_t gf = -1;
static int bad;

static void check(const char *what, const float *c, const char *dataset, int64_t r0, int64_t rows, int64_t cols,
                  double tol)
{
    bad += gh_check(gf, D.rank, what, c, dataset, r0, rows, cols, NULL, tol);
}

static void test_acml_golden_step(void **state)
{
    (void)state;
    int64_t B = (int64_t)gh_attr_double(gf, "/", "B"), tdim = (int64_t)gh_attr_double(gf, "/", "teacher_dim");
    int64_t gdim = (int64_t)gh_attr_double(gf, "/", "graph_dim");
    float tau = (float)gh_attr_double(gf, "/", "tau");
    assert_int_equal(B, 16);
    assert_true(gh_attr_double(gf, "/", "dropout") == 0.0);
    int64_t widths[2];
    {
        int64_t n = 0;
        double *w = gh_read_doubles(gf, "/params/proj.teacher.0.lin_a.bias", &n);
        free(w);
        widths[0] = n; /* the widths from the shapes of the biases */
        w = gh_read_doubles(gf, "/params/proj.teacher.1.lin_a.bias", &n);
        free(w);
        widths[1] = n;
    }
    /* the heads, parameters from the file */
    mm_params p;
    mm_params_init(&p);
    mm_acml_head th, gh;
    assert_int_equal(mm_acml_head_declare(&p, "proj.teacher", tdim, widths, 2, &th), MM_OK);
    assert_int_equal(mm_acml_head_declare(&p, "proj.graph", gdim, widths, 2, &gh), MM_OK);
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    for (int i = 0; i < p.count; i++) {
        char name[160];
        snprintf(name, sizeof name, "/params/%s", p.info[i].name);
        int64_t n = 0;
        double *v = gh_read_doubles(gf, name, &n);
        assert_non_null(v);
        assert_int_equal((size_t)n, p.info[i].n);
        float *dst = mm_params_data(&p, i);
        for (int64_t k = 0; k < n; k++) dst[k] = (float)v[k];
        free(v);
    }
    /* this rank's pairs */
    int64_t counts[64], row0 = 0;
    for (int r = 0; r < D.size; r++) {
        int64_t s0;
        mm_dist_block(B, D.size, r, &s0, &counts[r]);
        if (r == D.rank) row0 = s0;
    }
    int64_t m = counts[D.rank];
    double *X = gh_read_doubles(gf, "/inputs/teacher_features", NULL), *G0 = gh_read_doubles(gf, "/inputs/graph_readout", NULL);
    float *x = malloc((size_t)(m * tdim) * sizeof(float)), *g0 = malloc((size_t)(m * gdim) * sizeof(float));
    float *g0_grad = calloc((size_t)(m * gdim), sizeof(float));
    for (int64_t i = 0; i < m * tdim; i++) x[i] = (float)X[row0 * tdim + i];
    for (int64_t i = 0; i < m * gdim; i++) g0[i] = (float)G0[row0 * gdim + i];
    free(X);
    free(G0);

    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 20), MM_OK);
    t.grad_enabled = true;
    t.training = true;
    mm_tensor *xt, *gt, *U, *G, *loss, *T, *tz[2], *to[2], *gz[2], *go[2];
    assert_int_equal(mm_tensor_wrap(&t, x, NULL, 2, (int64_t[]){m, tdim}, &xt), MM_OK);
    assert_int_equal(mm_tensor_wrap(&t, g0, g0_grad, 2, (int64_t[]){m, gdim}, &gt), MM_OK);
    mm_params_zero_grad(&p);
    assert_int_equal(mm_acml_head_forward(&t, &p, &th, xt, 0.0f, 1, 0, row0, &U, tz, to), MM_OK);
    assert_int_equal(mm_acml_head_forward(&t, &p, &gh, gt, 0.0f, 1, 1, row0, &G, gz, go), MM_OK);
    mm_status st = mm_acml_loss_rows(&t, &D, U, G, counts, row0, tau, &loss, &T);
    if (st) mm_error_print(stderr, D.rank);
    assert_int_equal(st, MM_OK);
    double total = loss->data[0];
    assert_int_equal(mm_dist_allreduce_double(&D, &total, 1), MM_OK);
    assert_int_equal(mm_tape_backward(&t, loss), MM_OK);
    assert_int_equal(mm_dist_allreduce_float(&D, p.grad, p.total), MM_OK);

    if (D.rank == 0) printf("ACML golden step on %d rank(s), rows %lld.. on rank 0:\n", D.size, (long long)row0);
    double *gl = gh_read_doubles(gf, "/loss", NULL);
    double el = fabs(total - gl[0]) / fabs(gl[0]);
    if (D.rank == 0) printf("  [rank 0] loss %.9f vs %.9f rel %.1e%s\n", total, gl[0], el, el > 1e-5 ? "  FAIL" : "");
    if (el > 1e-5) bad++;
    free(gl);
    /* forward values of this rank's rows */
    const char *tower[2] = {"teacher", "graph"};
    mm_tensor **zs[2] = {tz, gz}, **outs[2] = {to, go};
    char what[160], ds[160];
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++) {
            snprintf(what, sizeof what, "forward %s cell %d z", tower[k], c);
            snprintf(ds, sizeof ds, "/forward/proj.%s.%d.z", tower[k], c);
            check(what, zs[k][c]->data, ds, row0, m, widths[c], 1e-4);
            snprintf(what, sizeof what, "forward %s cell %d out", tower[k], c);
            snprintf(ds, sizeof ds, "/forward/proj.%s.%d.out", tower[k], c);
            check(what, outs[k][c]->data, ds, row0, m, widths[c], 1e-4);
        }
    check("forward U", U->data, "/forward/U", row0, m, widths[1], 1e-4);
    check("forward G", G->data, "/forward/G", row0, m, widths[1], 1e-4);
    check("forward targets (own rows)", T->data, "/forward/targets", row0, m, B, 1e-4);
    /* gradients: every parameter (allreduced), and the student readout's own rows */
    for (int i = 0; i < p.count; i++) {
        snprintf(ds, sizeof ds, "/grads/%s", p.info[i].name);
        snprintf(what, sizeof what, "grad %s", p.info[i].name);
        check(what, mm_params_grad(&p, i), ds, 0, 1, (int64_t)p.info[i].n, 1e-3);
    }
    check("grad graph_readout (own rows)", g0_grad, "/grads/graph_readout", row0, m, gdim, 1e-3);
    /* retrieval ranks of the whole example, from the gathered head outputs */
    float *Ua = malloc((size_t)(B * widths[1]) * sizeof(float)), *Ga = malloc((size_t)(B * widths[1]) * sizeof(float));
    assert_int_equal(mm_dist_allgather_bytes(&D, U->data, (size_t)widths[1] * sizeof(float), counts, Ua), MM_OK);
    assert_int_equal(mm_dist_allgather_bytes(&D, G->data, (size_t)widths[1] * sizeof(float), counts, Ga), MM_OK);
    int64_t rk[16], *want;
    mm_retrieval_ranks(Ua, Ga, B, widths[1], rk);
    want = gh_read_ints(gf, "/retrieval/rank_teacher_to_graph", NULL);
    for (int i = 0; i < 16; i++) bad += rk[i] != want[i];
    free(want);
    mm_retrieval_ranks(Ga, Ua, B, widths[1], rk);
    want = gh_read_ints(gf, "/retrieval/rank_graph_to_teacher", NULL);
    for (int i = 0; i < 16; i++) bad += rk[i] != want[i];
    free(want);
    if (D.rank == 0) printf("  retrieval ranks, both directions: %s\n", bad ? "see above" : "identical");

    free(Ua);
    free(Ga);
    mm_tape_destroy(&t);
    mm_params_destroy(&p);
    free(x);
    free(g0);
    free(g0_grad);
    int all = bad;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_SUM, D.comm);
    assert_int_equal(all, 0);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (mm_dist_init(&D, MPI_COMM_WORLD)) {
        mm_error_print(stderr, -1);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/acml_ref_v1.h5", tu_shared_dir());
    gf = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int failed;
    if (gf < 0) {
        if (D.rank == 0) fprintf(stderr, "test_mpi_acml: %s not found (set MMSA_SHARED)\n", path);
        failed = 1;
    } else {
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_acml_golden_step)};
        failed = cmocka_run_group_tests(tests, NULL, NULL);
        H5Fclose(gf);
    }
    mm_dist_destroy(&D);
    MPI_Finalize();
    return failed;
}
