/* h5_compare.h: compares two dataset files (DESIGN.md section 4) dataset by dataset,
 * shared by test_mpi_dataset.c and test_mpi_prep.c (header-only: static functions;
 * include after <cmocka.h>).
 *
 * Two files are equal when the groups /, /conformer, /nmr13c, /nmr1h and /rejects have the same number
 * of members, every dataset of the layout is present in both or in neither, present
 * datasets have the same type, shape and bytes (variable-length strings compared by
 * value), and the root attributes and the label task names are the same. */
#ifndef MMSA_TEST_H5_COMPARE_H
#define MMSA_TEST_H5_COMPARE_H

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const H5C_DATASETS[] = {
    "smiles", "source_row", "atom_offset", "atom_feat", "bond_offset", "bond_index", "bond_feat",
    "conformer/xyz", "conformer/ok", "image", "fingerprint", "scaffold", "labels",
    "nmr13c/peak_offset", "nmr13c/shift", "nmr13c/atom", "nmr13c/ok",
    "nmr1h/peak_offset", "nmr1h/shift", "nmr1h/atom", "nmr1h/ok",
    "rejects/source_row", "rejects/smiles", "rejects/reason"};

static const char *const H5C_ATTRS[] = {"format", "version", "n_molecules", "featurizer", "source",
                                        "source_sha256", "created_by"};

/* 1 if the two files have the same bytes. */
static inline int h5c_same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_true(fa && fb);
    int same = 1, ca, cb;
    do {
        ca = getc(fa);
        cb = getc(fb);
        if (ca != cb) same = 0;
    } while (same && ca != EOF);
    fclose(fa);
    fclose(fb);
    return same;
}

/* 1 when the object at `name` (one level of group allowed: "g/d") exists. */
static int h5c_exists(hid_t f, const char *name)
{
    const char *slash = strchr(name, '/');
    if (slash) {
        char group[64];
        snprintf(group, sizeof group, "%.*s", (int)(slash - name), name);
        if (H5Lexists(f, group, H5P_DEFAULT) <= 0) return 0;
    }
    return H5Lexists(f, name, H5P_DEFAULT) > 0;
}

/* Reads all of dataset d as raw file-type bytes, or as VL strings joined by '\n'. */
static char *h5c_dataset_bytes(hid_t f, const char *name, size_t *len, hid_t *type_out, hsize_t *dims, int *nd)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    *nd = H5Sget_simple_extent_ndims(s);
    H5Sget_simple_extent_dims(s, dims, NULL);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    char *out;
    if (H5Tget_class(t) == H5T_STRING) {
        assert_true(H5Tis_variable_str(t) > 0);
        char **v = calloc((size_t)n + 1, sizeof(char *));
        if (n > 0) assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        size_t total = 1;
        for (hssize_t i = 0; i < n; i++) total += strlen(v[i]) + 1;
        out = calloc(total, 1);
        size_t used = 0;
        for (hssize_t i = 0; i < n; i++) {
            size_t k = strlen(v[i]);
            memcpy(out + used, v[i], k);
            out[used + k] = '\n';
            used += k + 1;
        }
        *len = used;
        if (n > 0) H5Dvlen_reclaim(t, s, H5P_DEFAULT, v);
        free(v);
    } else {
        *len = (size_t)n * H5Tget_size(t);
        out = malloc(*len + 1);
        if (n > 0) assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    }
    *type_out = t;
    H5Sclose(s);
    H5Dclose(d);
    return out;
}

/* An attribute as text: integers in decimal, strings joined with '|' after each. */
static char *h5c_attr_text(hid_t obj, const char *name)
{
    char *out = calloc(4096, 1);
    if (H5Aexists(obj, name) <= 0) {
        snprintf(out, 4096, "(absent)");
        return out;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    if (H5Tget_class(t) == H5T_INTEGER) {
        long long v = 0;
        H5Aread(a, H5T_NATIVE_LLONG, &v);
        snprintf(out, 4096, "%lld", v);
    } else {
        hssize_t n = H5Sget_simple_extent_npoints(s);
        char **v = calloc((size_t)n, sizeof(char *));
        assert_true(H5Aread(a, t, v) >= 0);
        for (hssize_t i = 0; i < n; i++) {
            strncat(out, v[i], 4096 - strlen(out) - 2);
            strcat(out, "|");
        }
        H5Dvlen_reclaim(t, s, H5P_DEFAULT, v);
        free(v);
    }
    H5Tclose(t);
    H5Sclose(s);
    H5Aclose(a);
    return out;
}

/* Members of group g, or -1 when it does not exist. */
static int h5c_group_size(hid_t f, const char *g)
{
    if (strcmp(g, "/") && H5Lexists(f, g, H5P_DEFAULT) <= 0) return -1;
    H5G_info_t gi;
    hid_t h = H5Gopen2(f, g, H5P_DEFAULT);
    assert_true(h >= 0);
    H5Gget_info(h, &gi);
    H5Gclose(h);
    return (int)gi.nlinks;
}

/* The task names of /labels as "a|b|", "(absent)" without labels. */
static char *h5c_tasks(hid_t f)
{
    if (H5Lexists(f, "labels", H5P_DEFAULT) <= 0) {
        char *t = calloc(16, 1);
        snprintf(t, 16, "(absent)");
        return t;
    }
    hid_t l = H5Dopen2(f, "labels", H5P_DEFAULT);
    char *t = h5c_attr_text(l, "tasks");
    H5Dclose(l);
    return t;
}

/* 0 when the two files hold the same datasets and attributes; else the number of
 * differences, each printed to stderr. */
static int h5c_files_equal(const char *pa, const char *pb)
{
    hid_t fa = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(fa >= 0 && fb >= 0);
    int diff = 0;
    const char *groups[] = {"/", "conformer", "nmr13c", "nmr1h", "rejects"};
    for (int g = 0; g < 3; g++)
        if (h5c_group_size(fa, groups[g]) != h5c_group_size(fb, groups[g])) {
            fprintf(stderr, "%s vs %s: group %s has a different number of members\n", pa, pb, groups[g]);
            diff++;
        }
    for (size_t k = 0; k < sizeof H5C_DATASETS / sizeof H5C_DATASETS[0]; k++) {
        int ea = h5c_exists(fa, H5C_DATASETS[k]), eb = h5c_exists(fb, H5C_DATASETS[k]);
        if (ea != eb) {
            fprintf(stderr, "%s vs %s: dataset %s is in only one of them\n", pa, pb, H5C_DATASETS[k]);
            diff++;
        }
        if (!ea || !eb) continue;
        size_t la, lb;
        hid_t ta, tb;
        hsize_t da[4] = {0}, db[4] = {0};
        int na, nb;
        char *a = h5c_dataset_bytes(fa, H5C_DATASETS[k], &la, &ta, da, &na);
        char *b = h5c_dataset_bytes(fb, H5C_DATASETS[k], &lb, &tb, db, &nb);
        if (H5Tequal(ta, tb) <= 0 || na != nb || memcmp(da, db, sizeof da) || la != lb || memcmp(a, b, la)) {
            fprintf(stderr, "%s vs %s: dataset %s differs\n", pa, pb, H5C_DATASETS[k]);
            diff++;
        }
        H5Tclose(ta);
        H5Tclose(tb);
        free(a);
        free(b);
    }
    for (size_t k = 0; k < sizeof H5C_ATTRS / sizeof H5C_ATTRS[0]; k++) {
        char *a = h5c_attr_text(fa, H5C_ATTRS[k]), *b = h5c_attr_text(fb, H5C_ATTRS[k]);
        if (strcmp(a, b)) {
            fprintf(stderr, "%s vs %s: attribute %s differs: %s / %s\n", pa, pb, H5C_ATTRS[k], a, b);
            diff++;
        }
        free(a);
        free(b);
    }
    char *a = h5c_tasks(fa), *b = h5c_tasks(fb);
    if (strcmp(a, b)) {
        fprintf(stderr, "%s vs %s: task names differ: %s / %s\n", pa, pb, a, b);
        diff++;
    }
    free(a);
    free(b);
    H5Fclose(fa);
    H5Fclose(fb);
    return diff;
}

#endif
