/* The spectrum encoder's serial parts (spectrum.h): binning (peak shape, unit height,
 * peaks outside the grid dropped and counted), the grid keys and their validation, and
 * the reconstruction loss with its finite-difference gradient. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "mmsa/spectrum.h"
#include "testutil.h"

static mm_spectrum_config default_config(void)
{
    mm_job job;
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, &job), MM_OK);
    return job.spectrum;
}

static void test_default_grids(void **state)
{
    (void)state;
    mm_spectrum_config c = default_config();
    mm_spectrum_grid g;
    assert_int_equal(mm_spectrum_grid_of(&c, MM_NMR_13C, &g), MM_OK);
    assert_int_equal(g.n_bins, 4000); /* -50 to 350 ppm at 0.1 (DESIGN 3b) */
    assert_float_equal(g.min, -50.0, 1e-6);
    assert_int_equal(mm_spectrum_grid_of(&c, MM_NMR_1H, &g), MM_OK);
    assert_int_equal(g.n_bins, 1200); /* 0 to 12 ppm at 0.01 */
    assert_int_equal(mm_spectrum_config_validate(&c), MM_OK);
    /* each bad key is named */
    const char *bad[][2] = {{"spectrum.nmr13c_max=-60", "spectrum.nmr13c_min"},
                            {"spectrum.kernel=4", "spectrum.kernel"},
                            {"spectrum.nmr1h_step=2", "spectrum.nmr1h grid"}};
    for (int k = 0; k < 3; k++) {
        mm_job job;
        assert_int_equal(mm_cfg_defaults(&mm_job_schema, &job), MM_OK);
        assert_int_equal(mm_cfg_set(&mm_job_schema, bad[k][0], &job), MM_OK);
        assert_int_equal(mm_cfg_set(&mm_job_schema, "model.objective=spectrum_autoencoder", &job), MM_OK);
        assert_int_equal(mm_job_validate(&job), MM_ERR_CONFIG);
        if (!strstr(mm_error_message(), bad[k][1])) fprintf(stderr, "message: %s\n", mm_error_message());
        assert_non_null(strstr(mm_error_message(), bad[k][1]));
        mm_error_clear();
    }
}

static void test_binning(void **state)
{
    (void)state;
    /* grid 0 .. 10 ppm at 1 ppm (centres 0.5, 1.5, ...), sigma 1 ppm */
    mm_spectrum_grid g = {0.0, 1.0, 10, 1.0};
    /* molecule 0: one peak on the centre of bin 3; molecule 1: two coinciding peaks at 7.5
     * and peaks outside the grid (-0.1, 10.0, NaN) which are dropped; molecule 2: none */
    int64_t off[4] = {0, 1, 6, 6};
    float shift[6] = {3.5f, 7.5f, -0.1f, 7.5f, 10.0f, NAN};
    int32_t atom[6] = {0, 1, -1, 2, 3, 4};
    uint8_t ok[3] = {1, 1, 0};
    mm_spectra sp = {off, shift, atom, ok, 6, 6};
    float x[3 * 10];
    int64_t mols[3] = {0, 1, 2}, dropped = 5; /* adds to what is there */
    mm_spectrum_bin(&g, &sp, mols, 3, x, &dropped);
    assert_int_equal(dropped, 5 + 3);
    for (int b = 0; b < 10; b++) {
        double d0 = (b + 0.5) - 3.5, d1 = (b + 0.5) - 7.5;
        /* within 4 sigma only */
        double want0 = fabs(d0) <= 4 ? exp(-d0 * d0 / 2) : 0, want1 = fabs(d1) <= 4 ? 2 * exp(-d1 * d1 / 2) : 0;
        assert_float_equal(x[b], want0, 1e-6);
        assert_float_equal(x[10 + b], want1, 1e-6);
        assert_float_equal(x[20 + b], 0, 0);
    }
    /* unit height: a peak's height does not depend on the other peaks of its spectrum */
    assert_float_equal(x[3], 1.0, 1e-6);
    assert_float_equal(x[10 + 7], 2.0, 1e-6);
    /* a subset in another order gives the same rows */
    float y[10];
    int64_t one[1] = {1};
    mm_spectrum_bin(&g, &sp, one, 1, y, NULL);
    assert_memory_equal(y, x + 10, sizeof y);
    /* a peak between two bin centres spreads symmetrically */
    float z[10], mid = 5.0f;
    int64_t off1[2] = {0, 1};
    mm_spectra sp1 = {off1, &mid, atom, ok, 1, 1};
    int64_t m0[1] = {0};
    mm_spectrum_bin(&g, &sp1, m0, 1, z, NULL);
    assert_float_equal(z[4], z[5], 1e-7);
    assert_float_equal(z[4], exp(-0.125), 1e-6);
}

/* ---- the loss ----------------------------------------------------------------------- */

typedef struct { const float *x; int64_t n_global; } loss_args;

static mm_status build_loss(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out)
{
    loss_args *a = ctx;
    return mm_spectrum_loss(t, in[0], a->x, a->n_global, out);
}

static void test_loss_value_and_gradient(void **state)
{
    (void)state;
    enum { N = 3, L = 7 };
    float z[N * L], x[N * L];
    gc_fill_uniform(z, N * L, -3, 3, 91);
    gc_fill_uniform(x, N * L, 0, 2, 92); /* targets above 1 are clipped to 1 */
    loss_args a = {x, 5};
    gc_input in[1] = {{z, 2, {N, L}, true}};
    assert_int_equal(gradcheck(build_loss, &a, 1, in, NULL), 0);
    /* the value: (N / n_global) * mean BCE(z, min(1, x)) */
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 16), MM_OK);
    mm_tensor *Z, *loss;
    assert_int_equal(mm_tensor_wrap(&t, z, NULL, 2, (int64_t[]){N, L}, &Z), MM_OK);
    assert_int_equal(mm_spectrum_loss(&t, Z, x, 5, &loss), MM_OK);
    double want = 0;
    for (int k = 0; k < N * L; k++) {
        double y = x[k] < 1 ? x[k] : 1, v = z[k];
        want += fmax(v, 0) - v * y + log1p(exp(-fabs(v)));
    }
    want = want / (N * L) * N / 5.0;
    assert_float_equal(loss->data[0], want, 1e-5);
    /* a global batch smaller than the local rows is an error */
    assert_int_equal(mm_spectrum_loss(&t, Z, x, 2, &loss), MM_ERR_ARG);
    mm_error_clear();
    mm_tape_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_grids),
        cmocka_unit_test(test_binning),
        cmocka_unit_test(test_loss_value_and_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
