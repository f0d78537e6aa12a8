/* emb_file.c: the held-out embeddings file of an ACML run (eval.h), read and written
 * serially. Uses the dataset module's HDF5 helpers (attributes, error conversion). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../data/ds_internal.h"
#include "mmsa/alloc.h"
#include "mmsa/eval.h"

const char *const mm_eval_teacher_names[MM_EVAL_N_TEACHERS] = {"image", "conformer", "fingerprint", "nmr13c",
                                                                "nmr1h"};

static size_t fbytes(int64_t n, int64_t d) { return (size_t)(n > 0 ? n : 1) * (size_t)(d > 0 ? d : 1) * sizeof(float); }

void mm_eval_emb_free(mm_eval_emb *e)
{
    if (!e) return;
    mm_ds_strfree(&e->dataset);
    mm_ds_strfree(&e->checkpoint);
    if (e->index) MM_FREE(e->index, (size_t)(e->n > 0 ? e->n : 1) * sizeof(int64_t));
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        mm_eval_pairing *p = &e->t[k];
        size_t b = fbytes(e->n, p->dim);
        if (p->graph) MM_FREE(p->graph, b);
        if (p->teacher) MM_FREE(p->teacher, b);
        if (p->graph0) MM_FREE(p->graph0, b);
        if (p->teacher0) MM_FREE(p->teacher0, b);
        if (p->ok) MM_FREE(p->ok, (size_t)(e->n > 0 ? e->n : 1));
    }
    memset(e, 0, sizeof *e);
}

mm_status mm_eval_emb_alloc(mm_eval_emb *e, int64_t n, const bool has[MM_EVAL_N_TEACHERS],
                            const int64_t dim[MM_EVAL_N_TEACHERS])
{
    MM_CHECK_ARG(e && n >= 0 && has && dim, "mm_eval_emb_alloc: bad argument");
    memset(e, 0, sizeof *e);
    e->n = n;
    e->index = mm_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    int bad = !e->index;
    for (int k = 0; k < MM_EVAL_N_TEACHERS && !bad; k++) {
        if (!has[k]) continue;
        MM_CHECK_ARG(dim[k] >= 1, "mm_eval_emb_alloc: teacher %s has dimension %lld", mm_eval_teacher_names[k],
                     (long long)dim[k]);
        mm_eval_pairing *p = &e->t[k];
        e->has[k] = true;
        p->dim = dim[k];
        size_t b = fbytes(n, p->dim);
        p->graph = mm_calloc(1, b);
        p->teacher = mm_calloc(1, b);
        p->graph0 = mm_calloc(1, b);
        p->teacher0 = mm_calloc(1, b);
        p->ok = mm_calloc((size_t)(n > 0 ? n : 1), 1);
        bad = !p->graph || !p->teacher || !p->graph0 || !p->teacher0 || !p->ok;
    }
    if (bad) {
        mm_eval_emb_free(e);
        return MM_ERR(MM_ERR_NOMEM, "cannot allocate the embeddings of %lld molecules", (long long)n);
    }
    return MM_OK;
}

/* ---------------------------------------------------------------- reading */

/* Opens /name and checks its class, rank and shape: dims[1] = 0 accepts any width and
 * returns it in *width. */
static mm_status open_checked(hid_t f, const char *path, const char *name, H5T_class_t cls, size_t bytes, int rank,
                              int64_t n, int64_t *width, hid_t *out)
{
    *out = H5I_INVALID_HID;
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    if (ex <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset %s is missing", path, name);
    }
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot open dataset %s", path, name);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (r == rank) H5Sget_simple_extent_dims(s, dims, NULL);
    mm_status st = MM_OK;
    if (t < 0 || H5Tget_class(t) != cls || H5Tget_size(t) != bytes || (cls == H5T_INTEGER && bytes == 1 &&
                                                                         H5Tget_sign(t) != H5T_SGN_NONE))
        st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s has the wrong type (expected %s)", path, name,
                    cls == H5T_FLOAT ? "float32" : bytes == 1 ? "uint8" : "int64");
    else if (r != rank || (int64_t)dims[0] != n || (rank == 2 && dims[1] == 0))
        st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s has shape %s[%llu%s%llu], expected [%lld%s]", path, name,
                    r == rank ? "" : "of another rank ", (unsigned long long)dims[0], rank == 2 ? ", " : "",
                    rank == 2 ? (unsigned long long)dims[1] : 0ull, (long long)n, rank == 2 ? ", P" : "");
    else if (rank == 2 && *width > 0 && (int64_t)dims[1] != *width)
        st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s has width %llu, the other embeddings of its teacher %lld", path,
                    name, (unsigned long long)dims[1], (long long)*width);
    if (rank == 2 && st == MM_OK) *width = (int64_t)dims[1];
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (st != MM_OK) {
        H5Dclose(d);
        return st;
    }
    *out = d;
    return MM_OK;
}

static mm_status read_all(hid_t d, hid_t mem_type, void *buf, const char *path, const char *name)
{
    herr_t rc = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    if (rc < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot read dataset %s", path, name);
    return MM_OK;
}

static mm_status read_floats(hid_t f, const char *path, const char *name, int64_t n, int64_t *dim, float **out)
{
    hid_t d;
    MM_CALL(open_checked(f, path, name, H5T_FLOAT, 4, 2, n, dim, &d));
    *out = mm_malloc(fbytes(n, *dim));
    if (!*out) {
        H5Dclose(d);
        return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %s", path, name);
    }
    MM_CALL(read_all(d, H5T_NATIVE_FLOAT, *out, path, name));
    for (int64_t i = 0; i < n * *dim; i++)
        if (!isfinite((*out)[i]))
            return MM_ERR(MM_ERR_NUMERIC, "%s: dataset %s has a non-finite value at row %lld, column %lld", path, name,
                          (long long)(i / *dim), (long long)(i % *dim));
    return MM_OK;
}

static mm_status read_teacher(hid_t f, const char *path, int k, mm_eval_emb *e)
{
    const char *tn = mm_eval_teacher_names[k];
    mm_eval_pairing *p = &e->t[k];
    char name[96];
    int64_t n = e->n;
    /* allocation follows e->has (mm_eval_emb_free frees by dim) */
    e->has[k] = true;
    snprintf(name, sizeof name, "/%s/graph", tn);
    MM_CALL(read_floats(f, path, name, n, &p->dim, &p->graph));
    snprintf(name, sizeof name, "/%s/teacher", tn);
    MM_CALL(read_floats(f, path, name, n, &p->dim, &p->teacher));
    snprintf(name, sizeof name, "/untrained/%s/graph", tn);
    MM_CALL(read_floats(f, path, name, n, &p->dim, &p->graph0));
    snprintf(name, sizeof name, "/untrained/%s/teacher", tn);
    MM_CALL(read_floats(f, path, name, n, &p->dim, &p->teacher0));
    snprintf(name, sizeof name, "/%s/ok", tn);
    hid_t d;
    int64_t none = 0;
    MM_CALL(open_checked(f, path, name, H5T_INTEGER, 1, 1, n, &none, &d));
    p->ok = mm_malloc((size_t)(n > 0 ? n : 1));
    if (!p->ok) {
        H5Dclose(d);
        return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %s", path, name);
    }
    MM_CALL(read_all(d, H5T_NATIVE_UINT8, p->ok, path, name));
    for (int64_t i = 0; i < n; i++)
        if (p->ok[i] > 1)
            return MM_ERR(MM_ERR_FORMAT, "%s: dataset %s holds %d at row %lld (expected 0 or 1)", path, name,
                          p->ok[i], (long long)i);
    return MM_OK;
}

static mm_status read_file(hid_t f, const char *path, mm_eval_emb *e)
{
    char *format = NULL;
    bool present;
    int64_t version = 0;
    MM_CALL(mm_h5_read_attr_str(f, "/", "format", false, path, &format));
    int foreign = strcmp(format, MM_EVAL_FORMAT) != 0;
    if (foreign) {
        mm_status st = MM_ERR(MM_ERR_FORMAT, "%s is not a held-out embeddings file (format \"%s\", expected \"%s\")",
                              path, format, MM_EVAL_FORMAT);
        if (!strcmp(format, "mmsa-embeddings"))
            mm_error_hint("that is mmsa_embed's output (all molecules, MMSA); mmsa_eval takes the held-out "
                          "embeddings an ACML run writes (<run>/heldout_embeddings.h5)");
        mm_ds_strfree(&format);
        return st;
    }
    mm_ds_strfree(&format);
    MM_CALL(mm_h5_read_attr_i64(f, "/", "version", path, &present, &version));
    if (!present || version != MM_EVAL_VERSION)
        return MM_ERR(MM_ERR_FORMAT, "%s: version %s%lld, this mmsa_eval reads version %d", path,
                      present ? "" : "(missing) ", (long long)version, MM_EVAL_VERSION);
    MM_CALL(mm_h5_read_attr_str(f, "/", "dataset", false, path, &e->dataset));
    MM_CALL(mm_h5_read_attr_str(f, "/", "checkpoint", false, path, &e->checkpoint));
    MM_CALL(mm_h5_read_attr_i64(f, "/", "step", path, &present, &e->step));

    /* /index fixes n */
    if (H5Lexists(f, "/index", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset /index is missing", path);
    }
    hid_t d = H5Dopen2(f, "/index", H5P_DEFAULT), s = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hsize_t dim = 0;
    int rank = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    if (rank == 1) H5Sget_simple_extent_dims(s, &dim, NULL);
    if (s >= 0) H5Sclose(s);
    if (d >= 0) H5Dclose(d);
    if (rank != 1) return MM_H5ERR(MM_ERR_FORMAT, "%s: dataset /index is not one-dimensional", path);
    e->n = (int64_t)dim;
    int64_t none = 0;
    MM_CALL(open_checked(f, path, "/index", H5T_INTEGER, 8, 1, e->n, &none, &d));
    e->index = mm_malloc((size_t)(e->n > 0 ? e->n : 1) * sizeof(int64_t));
    if (!e->index) {
        H5Dclose(d);
        return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate /index", path);
    }
    MM_CALL(read_all(d, H5T_NATIVE_INT64, e->index, path, "/index"));
    if (e->n == 0) return MM_ERR(MM_ERR_FORMAT, "%s: no held-out molecule (/index is empty)", path);
    for (int64_t i = 0; i < e->n; i++)
        if (e->index[i] < 0 || (i > 0 && e->index[i] <= e->index[i - 1]))
            return MM_ERR(MM_ERR_FORMAT, "%s: /index[%lld] = %lld is %s", path, (long long)i, (long long)e->index[i],
                          e->index[i] < 0 ? "negative" : "not larger than the row before (must increase)");

    int any = 0;
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        htri_t ex = H5Lexists(f, mm_eval_teacher_names[k], H5P_DEFAULT);
        H5Eclear2(H5E_DEFAULT);
        if (ex <= 0) continue;
        MM_CALL(read_teacher(f, path, k, e));
        any = 1;
    }
    if (!any) {
        mm_status st = MM_ERR(MM_ERR_FORMAT, "%s: no teacher group (none of /image, /conformer, /fingerprint, "
                                             "/nmr13c, /nmr1h)", path);
        return st;
    }
    return MM_OK;
}

mm_status mm_eval_emb_read(const char *path, mm_eval_emb *out)
{
    MM_CHECK_ARG(path && out, "mm_eval_emb_read: NULL argument");
    memset(out, 0, sizeof *out);
    if (access(path, R_OK) != 0) {
        mm_status st = MM_ERR(MM_ERR_IO, "cannot read the held-out embeddings file %s: %s", path, strerror(errno));
        return st;
    }
    mm_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s is not an HDF5 file", path);
    mm_status st = read_file(f, path, out);
    H5Fclose(f);
    if (st != MM_OK) {
        mm_error_push(__FILE__, __LINE__, __func__);
        mm_eval_emb_free(out);
    }
    return st;
}

/* ---------------------------------------------------------------- writing */

static int write_ds(hid_t f, const char *name, hid_t type, const void *data, int64_t n, int64_t cols)
{
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(cols > 0 ? 2 : 1, dims, NULL);
    hid_t d = s >= 0 ? H5Dcreate2(f, name, type, s, lcpl, H5P_DEFAULT, H5P_DEFAULT) : H5I_INVALID_HID;
    int bad = d < 0 || (n > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0);
    if (d >= 0) H5Dclose(d);
    if (s >= 0) H5Sclose(s);
    H5Pclose(lcpl);
    return bad;
}

mm_status mm_eval_emb_write(const char *path, const mm_eval_emb *e)
{
    MM_CHECK_ARG(path && e && e->n >= 0 && (e->n == 0 || e->index), "mm_eval_emb_write: bad argument");
    char tmp[4096];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    MM_CHECK_ARG(len > 0 && (size_t)len < sizeof tmp, "mm_eval_emb_write: path too long");
    mm_h5_quiet();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return MM_H5ERR(MM_ERR_IO, "cannot create %s", tmp);
    mm_status st = MM_OK;
    MM_CALL_GOTO(st, mm_h5_write_attr_str(f, "format", MM_EVAL_FORMAT, tmp), done);
    MM_CALL_GOTO(st, mm_h5_write_attr_i64(f, "version", MM_EVAL_VERSION, tmp), done);
    MM_CALL_GOTO(st, mm_h5_write_attr_str(f, "dataset", e->dataset ? e->dataset : "", tmp), done);
    MM_CALL_GOTO(st, mm_h5_write_attr_str(f, "checkpoint", e->checkpoint ? e->checkpoint : "", tmp), done);
    MM_CALL_GOTO(st, mm_h5_write_attr_i64(f, "step", e->step, tmp), done);
    int bad = write_ds(f, "/index", H5T_NATIVE_INT64, e->index, e->n, 0);
    for (int k = 0; k < MM_EVAL_N_TEACHERS && !bad; k++) {
        if (!e->has[k]) continue;
        const mm_eval_pairing *p = &e->t[k];
        const char *tn = mm_eval_teacher_names[k];
        char name[96];
        snprintf(name, sizeof name, "/%s/graph", tn);
        bad |= write_ds(f, name, H5T_NATIVE_FLOAT, p->graph, e->n, p->dim);
        snprintf(name, sizeof name, "/%s/teacher", tn);
        bad |= write_ds(f, name, H5T_NATIVE_FLOAT, p->teacher, e->n, p->dim);
        snprintf(name, sizeof name, "/%s/ok", tn);
        bad |= write_ds(f, name, H5T_NATIVE_UINT8, p->ok, e->n, 0);
        snprintf(name, sizeof name, "/untrained/%s/graph", tn);
        bad |= write_ds(f, name, H5T_NATIVE_FLOAT, p->graph0, e->n, p->dim);
        snprintf(name, sizeof name, "/untrained/%s/teacher", tn);
        bad |= write_ds(f, name, H5T_NATIVE_FLOAT, p->teacher0, e->n, p->dim);
    }
    if (bad) st = MM_H5ERR(MM_ERR_IO, "cannot write the held-out embeddings to %s", tmp);
done:
    if (H5Fclose(f) < 0 && st == MM_OK) st = MM_H5ERR(MM_ERR_IO, "cannot close %s", tmp);
    if (st == MM_OK && rename(tmp, path) != 0)
        st = MM_ERR(MM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != MM_OK) unlink(tmp);
    return st;
}
