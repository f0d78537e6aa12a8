/* golden_h5.h: reading the golden parity files (shared/golden, *.h5) in the tests. */
#ifndef MMSA_TEST_GOLDEN_H5_H
#define MMSA_TEST_GOLDEN_H5_H

#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A whole dataset converted to `type` (H5T_NATIVE_DOUBLE or H5T_NATIVE_INT64) in a new
 * array of `size`-byte items (caller frees); n receives the element count. NULL when the
 * dataset is missing. */
static inline void *gh_read(hid_t f, const char *name, hid_t type, size_t size, int64_t *n)
{
    if (n) *n = 0;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        fprintf(stderr, "golden: no dataset %s\n", name);
        return NULL;
    }
    hid_t sp = H5Dget_space(ds);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    void *v = malloc((size_t)(cnt ? cnt : 1) * size);
    H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Sclose(sp);
    H5Dclose(ds);
    if (n) *n = (int64_t)cnt;
    return v;
}

static inline double *gh_read_doubles(hid_t f, const char *name, int64_t *n)
{
    return gh_read(f, name, H5T_NATIVE_DOUBLE, sizeof(double), n);
}

static inline int64_t *gh_read_ints(hid_t f, const char *name, int64_t *n)
{
    return gh_read(f, name, H5T_NATIVE_INT64, sizeof(int64_t), n);
}

/* Attribute `name` of group `group` as a double (NAN when missing). */
static inline double gh_attr_double(hid_t f, const char *group, const char *name)
{
    double v = NAN;
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g < 0) return v;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        H5Aclose(a);
    }
    H5Gclose(g);
    return v;
}

/* Scale-relative error max|c - g| / max|g| over rows [r0, r0 + rows) of a [*, cols]
 * golden array g, c holding those rows only; row_mask (indexed by golden row) may skip
 * rows. */
static inline double gh_scale_err(const float *c, const double *g, int64_t r0, int64_t rows, int64_t cols,
                                  const uint8_t *row_mask)
{
    double md = 0, mg = 0;
    for (int64_t i = 0; i < rows; i++) {
        if (row_mask && !row_mask[r0 + i]) continue;
        for (int64_t j = 0; j < cols; j++) {
            double gv = g[(r0 + i) * cols + j];
            md = fmax(md, fabs(c[i * cols + j] - gv));
            mg = fmax(mg, fabs(gv));
        }
    }
    return mg > 0 ? md / mg : md;
}

/* Compare rows [r0, r0 + rows) of the golden dataset with c (those rows only), print the
 * error (rank 0, or any rank that fails) and return 1 when it exceeds tol. */
static inline int gh_check(hid_t f, int rank, const char *what, const float *c, const char *dataset, int64_t r0,
                           int64_t rows, int64_t cols, const uint8_t *row_mask, double tol)
{
    int64_t n = 0;
    double *g = gh_read_doubles(f, dataset, &n);
    if (!g || n < (r0 + rows) * cols) {
        printf("  [rank %d] %-44s golden dataset %s missing or too short  FAIL\n", rank, what, dataset);
        free(g);
        return 1;
    }
    double e = gh_scale_err(c, g, r0, rows, cols, row_mask);
    if (rank == 0 || e > tol) printf("  [rank %d] %-44s %.2e (tol %.0e)%s\n", rank, what, e, tol, e > tol ? "  FAIL" : "");
    free(g);
    return e > tol;
}

#endif
