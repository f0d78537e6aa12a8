/* checkpoint.c: collective, atomic checkpoints in parallel HDF5 (see checkpoint.h).
 *
 * Writing, in phases that each end with every rank knowing the outcome (mm_dist_agree()):
 *  1. local checks (arguments, names, the bank's partition), rank 0 hashes the
 *     replicated arrays, every rank hashes its bank rows;
 *  2. the layout (names, shapes, kinds, directory) is compared across ranks, rank 0's
 *     scalars, hashes and job text are broadcast (attribute writes must be identical
 *     on every rank), the bank hashes are summed;
 *  3. rank 0 creates the directory; everyone creates the temp file (collective);
 *  4. one dataset at a time: create, collective write (replicated data: rank 0
 *     selects everything, the others nothing; the bank: each rank its rows), the
 *     checksum attribute, then agreement, so a failure stops every rank at the same
 *     point and the collective close that follows cannot hang;
 *  5. close, then rank 0 renames, rewrites `latest`, rotates old files.
 * Reading opens the file collectively but reads metadata and data independently
 * (collective metadata reads would hang the others if one rank stopped early): only
 * the open, the close and the agreements are collective. */
#include "mmsa/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmsa/alloc.h"
#include "mmsa/fs.h"

/* ------------------------------------------------------------------ HDF5 errors */

typedef struct {
    H5E_auto2_t fn;
    void *data;
} h5_auto;

/* HDF5 prints its error stack to stderr by default; we report through mm_error. */
static h5_auto h5_silence(void)
{
    h5_auto a = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &a.fn, &a.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return a;
}
static void h5_restore(h5_auto a) { H5Eset_auto2(H5E_DEFAULT, a.fn, a.data); }

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *ud)
{
    if (n == 0 && e->desc) snprintf((char *)ud, 300, "%s", e->desc);
    return 0;
}

/* Records an error with HDF5's innermost description appended, and clears the stack. */
static mm_status h5_raise(mm_status code, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static mm_status h5_raise(mm_status code, const char *file, int line, const char *func, const char *fmt, ...)
{
    char msg[800], h5[300] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, h5);
    H5Eclear2(H5E_DEFAULT);
    if (h5[0]) return mm_error_raise(code, file, line, func, "%s (HDF5: %s)", msg, h5);
    return mm_error_raise(code, file, line, func, "%s", msg);
}
#define H5ERR(code, ...) h5_raise((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

static void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

/* ------------------------------------------------------------------ hashing */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* 64-bit hash of n bytes, keyed by `key` (a row index for the bank). Not
 * cryptographic: it detects corruption, not tampering. */
static uint64_t hash_bytes(uint64_t key, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = mix64(key + 0x9e3779b97f4a7c15ULL) ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w * 0x9e3779b97f4a7c15ULL;
        h = ((h << 29) | (h >> 35)) * 0xc2b2ae3d27d4eb4fULL;
    }
    uint64_t t = 0;
    for (size_t k = 0; i < n; i++, k++) t |= (uint64_t)b[i] << (8 * k);
    return mix64(h ^ t);
}

/* Sum over rows of hash(global row index, row): independent of the partition. */
static uint64_t hash_rows(int64_t row0, int64_t rows, const void *p, size_t row_bytes)
{
    uint64_t s = 0;
    for (int64_t r = 0; r < rows; r++) s += hash_bytes((uint64_t)(row0 + r), (const char *)p + (size_t)r * row_bytes, row_bytes);
    return s;
}

/* ------------------------------------------------------------------ files and names */

static bool is_step_name(const char *name, int64_t *step)
{
    /* exactly step_<12 digits>.h5 */
    if (strncmp(name, "step_", 5) != 0 || strlen(name) != 5 + 12 + 3 || strcmp(name + 17, ".h5") != 0) return false;
    int64_t v = 0;
    for (int i = 5; i < 17; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return true;
}

/* Makes a directory entry change durable (best effort: some file systems refuse). */
static void sync_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp) return;
    (void)fsync(dirfd(dp));
    closedir(dp);
}

/* <dir>/latest <- name, through <dir>/.latest.tmp and a rename. */
static mm_status write_latest(const char *dir, const char *name)
{
    char tmp[PATH_MAX], fin[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.latest.tmp", dir) >= (int)sizeof tmp ||
        snprintf(fin, sizeof fin, "%s/latest", dir) >= (int)sizeof fin)
        return MM_ERR(MM_ERR_ARG, "checkpoint directory name too long: %s", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = fprintf(f, "%s\n", name) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        unlink(tmp);
        return MM_ERR(MM_ERR_IO, "cannot write %s: %s", tmp, strerror(e ? e : EIO));
    }
    if (rename(tmp, fin) != 0) {
        e = errno;
        unlink(tmp);
        return MM_ERR(MM_ERR_IO, "cannot rename %s to %s: %s", tmp, fin, strerror(e));
    }
    sync_dir(dir);
    return MM_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Deletes step files beyond `keep`, never the one just written (`current`). */
static mm_status rotate(const char *dir, int64_t current, int keep)
{
    if (keep <= 0) return MM_OK;
    DIR *dp = opendir(dir);
    if (!dp) return MM_ERR(MM_ERR_IO, "cannot list checkpoint directory %s: %s", dir, strerror(errno));
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    mm_status st = MM_OK;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        int64_t s;
        if (!is_step_name(e->d_name, &s) || s == current) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            int64_t *ns = mm_malloc(nc * sizeof *ns);
            if (!ns) {
                st = MM_ERR(MM_ERR_NOMEM, "listing checkpoint directory %s", dir);
                break;
            }
            if (n) memcpy(ns, steps, n * sizeof *ns);
            mm_free_sized(steps, cap * sizeof *steps);
            steps = ns;
            cap = nc;
        }
        steps[n++] = s;
    }
    closedir(dp);
    if (st == MM_OK && n > 0) {
        qsort(steps, n, sizeof *steps, cmp_desc);
        for (size_t i = (size_t)keep - 1; i < n; i++) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/step_%012lld.h5", dir, (long long)steps[i]);
            if (unlink(p) != 0 && errno != ENOENT) {
                st = MM_ERR(MM_ERR_IO, "cannot delete old checkpoint %s: %s", p, strerror(errno));
                mm_error_hint("the new checkpoint step_%012lld.h5 is complete and named by %s/latest; delete old ones by hand",
                              (long long)current, dir);
                break;
            }
        }
        sync_dir(dir);
    }
    mm_free_sized(steps, cap * sizeof *steps);
    return st;
}

/* ------------------------------------------------------------------ attributes */

static mm_status attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *buf, const char *path)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    mm_status st = MM_OK;
    if (sp < 0) return H5ERR(MM_ERR_INTERNAL, "%s: cannot make a scalar dataspace", path);
    a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        st = H5ERR(MM_ERR_IO, "%s: cannot create attribute %s", path, name);
    else if (H5Awrite(a, mtype, buf) < 0)
        st = H5ERR(MM_ERR_IO, "%s: cannot write attribute %s", path, name);
    close_id(&a, H5Aclose);
    close_id(&sp, H5Sclose);
    return st;
}
static mm_status attr_write_i64(hid_t obj, const char *name, int64_t v, const char *path)
{
    MM_CALL(attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, path));
    return MM_OK;
}
static mm_status attr_write_u64(hid_t obj, const char *name, uint64_t v, const char *path)
{
    MM_CALL(attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, path));
    return MM_OK;
}
static mm_status attr_write_f64(hid_t obj, const char *name, double v, const char *path)
{
    MM_CALL(attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, path));
    return MM_OK;
}
/* Fixed-length string: variable-length data cannot be written through MPI-IO in HDF5 1.10. */
static mm_status attr_write_str(hid_t obj, const char *name, const char *v, size_t len, const char *path)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    mm_status st = MM_OK;
    if (t < 0 || H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)
        st = H5ERR(MM_ERR_INTERNAL, "%s: cannot make a string type for attribute %s", path, name);
    else
        st = attr_write(obj, name, t, t, v, path);
    close_id(&t, H5Tclose);
    MM_CALL(st);
    return MM_OK;
}

static mm_status attr_open(hid_t obj, const char *obj_name, const char *name, const char *path, hid_t *a)
{
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot read the attributes of %s", path, obj_name);
    if (ex == 0)
        return MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is missing (not a complete MMSA-C checkpoint)", path, name, obj_name);
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot open attribute %s of %s", path, name, obj_name);
    return MM_OK;
}

/* A scalar numeric attribute read as mtype (integer or float class required). */
static mm_status attr_read_num(hid_t obj, const char *obj_name, const char *name, hid_t mtype, void *out, const char *path)
{
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    MM_CALL(attr_open(obj, obj_name, name, path, &a));
    mm_status st = MM_OK;
    t = H5Aget_type(a);
    sp = H5Aget_space(a);
    H5T_class_t want = H5Tget_class(mtype), have = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t < 0 || sp < 0)
        st = H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
    else if (have != want || H5Sget_simple_extent_npoints(sp) != 1)
        st = MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is not a single %s", path, name, obj_name,
                    want == H5T_INTEGER ? "integer" : "number");
    else if (H5Aread(a, mtype, out) < 0)
        st = H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
    close_id(&a, H5Aclose);
    MM_CALL(st);
    return MM_OK;
}

/* A scalar string attribute (fixed or variable length) into buf (truncated to n). */
static mm_status attr_read_str(hid_t obj, const char *obj_name, const char *name, char *buf, size_t n, const char *path)
{
    hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, mt = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    MM_CALL(attr_open(obj, obj_name, name, path, &a));
    mm_status st = MM_OK;
    t = H5Aget_type(a);
    sp = H5Aget_space(a);
    buf[0] = '\0';
    if (t < 0 || sp < 0) {
        st = H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
    } else if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
        st = MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is not a single string", path, name, obj_name);
    } else if (H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        mt = H5Tcopy(H5T_C_S1);
        /* HDF5 converts no string between character sets: read in the file's */
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 || H5Aread(a, mt, &v) < 0)
            st = H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
        else
            snprintf(buf, n, "%s", v ? v : "");
        if (v) H5free_memory(v);
    } else {
        size_t sz = H5Tget_size(t);
        char *tmp = mm_malloc(sz + 1);
        mt = H5Tcopy(H5T_C_S1);
        if (!tmp) {
            st = MM_ERR(MM_ERR_NOMEM, "%s: attribute %s of %s (%zu bytes)", path, name, obj_name, sz);
        } else if (mt < 0 || H5Tset_size(mt, sz) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
                   H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 || H5Aread(a, mt, tmp) < 0) {
            st = H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
        } else {
            tmp[sz] = '\0';
            snprintf(buf, n, "%s", tmp);
        }
        mm_free_sized(tmp, sz + 1);
    }
    close_id(&mt, H5Tclose);
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
    close_id(&a, H5Aclose);
    MM_CALL(st);
    return MM_OK;
}

static const char *kind_name(mm_opt_kind k) { return k == MM_OPT_ADAMW ? "adamw" : "sgd"; }

/* ------------------------------------------------------------------ dataset checks (read side) */

static void fmt_shape(char *buf, size_t n, int ndim, const hsize_t *dims)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Opens group gpath (e.g. "/params"); missing -> FORMAT error naming what it holds. */
static mm_status open_group(hid_t file, const char *gpath, const char *what, const char *path, hid_t *g)
{
    htri_t ex = H5Lexists(file, gpath + 1, H5P_DEFAULT);
    if (ex < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot look up group %s", path, gpath);
    if (ex == 0) return MM_ERR(MM_ERR_FORMAT, "%s: group %s (%s) is missing", path, gpath, what);
    *g = H5Gopen2(file, gpath, H5P_DEFAULT);
    if (*g < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot open group %s", path, gpath);
    return MM_OK;
}

/* Opens dataset <gpath>/<name> of group g; checks its class and rank ndim, and its
 * shape against dims (NULL: any extent, returned in got[ndim] if got is not NULL).
 * *absent (if not NULL) reports a missing link instead of failing. */
static mm_status open_dset_extent(hid_t g, const char *gpath, const char *name, H5T_class_t cls, int ndim,
                                  const hsize_t *dims, hsize_t *got, const char *path, bool *absent, hid_t *out)
{
    *out = H5I_INVALID_HID;
    if (absent) *absent = false;
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot look up dataset %s/%s", path, gpath, name);
    if (ex == 0) {
        if (absent) {
            *absent = true;
            return MM_OK;
        }
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset %s/%s is missing", path, gpath, name);
    }
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT), t = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    mm_status st = MM_OK;
    if (ds < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot open dataset %s/%s", path, gpath, name);
    t = H5Dget_type(ds);
    sp = H5Dget_space(ds);
    hsize_t fd[H5S_MAX_RANK];
    int fnd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t < 0 || sp < 0 || fnd < 0 || fnd > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, fd, NULL) < 0) {
        st = H5ERR(MM_ERR_FORMAT, "%s: cannot read the type and shape of dataset %s/%s", path, gpath, name);
    } else if (H5Tget_class(t) != cls) {
        st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s/%s is not %s", path, gpath, name, cls == H5T_FLOAT ? "floating point" : "integer");
    } else if (!dims && fnd != ndim) {
        st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s/%s has %d dimension(s), not %d", path, gpath, name, fnd, ndim);
    } else if (dims) {
        bool same = fnd == ndim;
        for (int i = 0; same && i < ndim; i++) same = fd[i] == dims[i];
        if (!same) {
            char a[160], b[160];
            fmt_shape(a, sizeof a, fnd, fd);
            fmt_shape(b, sizeof b, ndim, dims);
            st = MM_ERR(MM_ERR_FORMAT, "%s: dataset %s/%s has shape %s in the file, %s in the model", path, gpath, name, a, b);
            mm_error_hint("the checkpoint was written by a different model configuration; its root attribute \"job\" holds the job it was written with");
        }
    }
    close_id(&sp, H5Sclose);
    close_id(&t, H5Tclose);
    if (st != MM_OK) {
        H5Dclose(ds);
        return st;
    }
    if (got) memcpy(got, fd, (size_t)ndim * sizeof *got);
    *out = ds;
    return MM_OK;
}

static mm_status open_dset(hid_t g, const char *gpath, const char *name, H5T_class_t cls, int ndim, const hsize_t *dims,
                           const char *path, bool *absent, hid_t *out)
{
    return open_dset_extent(g, gpath, name, cls, ndim, dims, NULL, path, absent, out);
}

static mm_status read_checksum(hid_t ds, const char *dname, const char *path, uint64_t *sum)
{
    MM_CALL(attr_read_num(ds, dname, "checksum", H5T_NATIVE_UINT64, sum, path));
    return MM_OK;
}

static mm_status checksum_mismatch(const char *path, const char *dname)
{
    mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__,
                   "%s: dataset %s does not match its checksum: the file is corrupt", path, dname);
    mm_error_hint("restart from an older checkpoint (write its file name into latest) or from scratch");
    return MM_ERR_FORMAT;
}

/* Reads a whole float dataset (already shape-checked) and verifies its checksum. */
static mm_status read_whole_f32(hid_t ds, const char *dname, float *buf, size_t n, const char *path)
{
    uint64_t want;
    MM_CALL(read_checksum(ds, dname, path, &want));
    if (n > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return H5ERR(MM_ERR_FORMAT, "%s: cannot read dataset %s", path, dname);
    if (hash_bytes(0, buf, n * sizeof(float)) != want) return checksum_mismatch(path, dname);
    return MM_OK;
}

static void param_dims(const mm_param_info *pi, hsize_t *dims)
{
    for (int i = 0; i < pi->ndim; i++) dims[i] = (hsize_t)pi->shape[i];
}

/* Checks the root attributes format and version. */
static mm_status check_format(hid_t file, const char *path)
{
    char fmt[64];
    htri_t ex = H5Aexists(file, "format");
    if (ex < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot read the root attributes", path);
    if (ex == 0) {
        mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__,
                       "%s is not an MMSA-C checkpoint (no root attribute format)", path);
        mm_error_hint("pass a step_*.h5 file written by mmsa_pretrain");
        return MM_ERR_FORMAT;
    }
    MM_CALL(attr_read_str(file, "/", "format", fmt, sizeof fmt, path));
    if (strcmp(fmt, MM_CKPT_FORMAT) != 0) {
        mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__, "%s is not an MMSA-C checkpoint (format = \"%s\")", path, fmt);
        mm_error_hint("pass a step_*.h5 file written by mmsa_pretrain");
        return MM_ERR_FORMAT;
    }
    int64_t version;
    MM_CALL(attr_read_num(file, "/", "version", H5T_NATIVE_INT64, &version, path));
    if (version < 1 || version > MM_CKPT_VERSION) {
        mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__, "%s: checkpoint version %lld, this build reads version %d",
                       path, (long long)version, MM_CKPT_VERSION);
        mm_error_hint("use the MMSA-C release that wrote the checkpoint");
        return MM_ERR_FORMAT;
    }
    return MM_OK;
}

/* Opens path for reading with the MPI-IO driver on comm (collective), independent
 * metadata reads; a missing or non-HDF5 file gets its own message. */
static mm_status open_for_read(const char *path, MPI_Comm comm, hid_t *file)
{
    *file = H5I_INVALID_HID;
    if (access(path, R_OK) != 0) {
        int e = errno;
        mm_error_raise(MM_ERR_IO, __FILE__, __LINE__, __func__, "cannot open checkpoint %s: %s", path, strerror(e));
        if (e == ENOENT) mm_error_hint("check the path; <dir>/latest names the newest complete checkpoint");
        return MM_ERR_IO;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is == 0) {
        mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__, "%s is not an HDF5 file, so not an MMSA-C checkpoint", path);
        mm_error_hint("pass a step_*.h5 file written by mmsa_pretrain");
        return MM_ERR_FORMAT;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
        close_id(&fapl, H5Pclose);
        return H5ERR(MM_ERR_INTERNAL, "%s: cannot set up MPI-IO file access", path);
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    mm_status st = MM_OK;
    if (*file < 0) { /* raised before H5Pclose, which would clear HDF5's error stack */
        st = H5ERR(MM_ERR_FORMAT, "cannot open checkpoint %s (truncated or corrupt HDF5 file)", path);
        mm_error_hint("restart from an older checkpoint (write its file name into latest) or from scratch");
    }
    H5Pclose(fapl);
    return st;
}

/* ================================================================== writing */

/* Rank 0's scalars, broadcast so that every rank writes identical attributes. */
typedef struct {
    int64_t step, epoch, cursor, bn_batches, opt_step, reseed_after;
    uint64_t seed, job_len, bank_sum[2];
    double beta1, beta2, eps, weight_decay, momentum, tau, bank_momentum;
    int32_t opt_kind, nesterov;
} ckpt_header;

typedef struct {
    const char *dir;
    mm_dist *d;
    const mm_ckpt_state *s;
    char name[64];             /* step_<012d>.h5 */
    char tmp[PATH_MAX], final[PATH_MAX];
    ckpt_header h;
    int n_hash;                /* params x (1 + has m + has v) + 1 (buffers) */
    uint64_t *hash;            /* [n_hash] rank 0's replicated-array hashes */
    char *job;                 /* (job_len + 1) rank 0's job text */
    hid_t file, dxpl;
} ckpt_writer;

static bool valid_link_name(const char *n) { return n[0] && strchr(n, '/') == NULL && strcmp(n, ".") != 0; }

/* Phase 1: local checks, and (rank 0) the hashes and header. */
static mm_status prepare(ckpt_writer *w)
{
    const mm_ckpt_state *s = w->s;
    mm_dist *d = w->d;
    MM_CHECK_ARG(w->dir && w->dir[0], "checkpoint: no directory given");
    MM_CHECK_ARG(s && s->params && s->params->allocated, "checkpoint %s: no allocated parameter registry", w->dir);
    MM_CHECK_ARG(s->step >= 0, "checkpoint %s: negative step %lld", w->dir, (long long)s->step);
    MM_CHECK_ARG(s->n_buffers == 0 || s->buffers, "checkpoint %s: %zu buffers but no data", w->dir, s->n_buffers);
    int nb = snprintf(w->name, sizeof w->name, "step_%012lld.h5", (long long)s->step);
    if (nb >= (int)sizeof w->name || snprintf(w->final, sizeof w->final, "%s/%s", w->dir, w->name) >= (int)sizeof w->final ||
        snprintf(w->tmp, sizeof w->tmp, "%s/.%s.tmp", w->dir, w->name) >= (int)sizeof w->tmp)
        return MM_ERR(MM_ERR_ARG, "checkpoint directory name too long: %s", w->dir);
    const mm_params *p = s->params;
    for (int i = 0; i < p->count; i++)
        if (!valid_link_name(p->info[i].name))
            return MM_ERR(MM_ERR_ARG, "checkpoint %s: parameter name \"%s\" cannot be an HDF5 link name (no '/', not \".\")",
                          w->final, p->info[i].name);
    const mm_optimizer *o = s->opt;
    if (o) {
        if (o->n != p->total || !o->m || (o->kind == MM_OPT_ADAMW) != (o->v != NULL))
            return MM_ERR(MM_ERR_ARG, "checkpoint %s: optimiser state (%zu values, kind %s) does not match the parameters (%zu)",
                          w->final, o->n, kind_name(o->kind), p->total);
    }
    const mm_memory_bank *b = s->bank;
    if (b) {
        int64_t m0, ml;
        mm_dist_block(b->m, d->size, d->rank, &m0, &ml);
        if (b->m <= 0 || b->dim <= 0 || m0 != b->m0 || ml != b->m_local || (ml > 0 && (!b->anchors || !b->unused)))
            return MM_ERR(MM_ERR_ARG,
                          "checkpoint %s: the memory bank (M = %lld, rows %lld..%lld on rank %d) is not partitioned over the "
                          "checkpoint's %d ranks",
                          w->final, (long long)b->m, (long long)b->m0, (long long)(b->m0 + b->m_local), d->rank, d->size);
        w->h.bank_sum[0] = hash_rows(b->m0, b->m_local, b->anchors, (size_t)b->dim * sizeof(float));
        w->h.bank_sum[1] = hash_rows(b->m0, b->m_local, b->unused, sizeof(int64_t));
        w->h.tau = b->tau;
        w->h.bank_momentum = b->momentum;
        w->h.reseed_after = b->reseed_after;
    }
    int per = 1 + (o ? 1 : 0) + (o && o->v ? 1 : 0);
    w->n_hash = p->count * per + 1;
    MM_CALL(mm_alloc_zero((size_t)w->n_hash, sizeof(uint64_t), (void **)&w->hash));
    if (d->rank == 0) {
        for (int i = 0; i < p->count; i++) {
            size_t off = p->info[i].offset, n = p->info[i].n * sizeof(float);
            w->hash[i * per] = hash_bytes(0, p->data + off, n);
            if (o) w->hash[i * per + 1] = hash_bytes(0, o->m + off, n);
            if (o && o->v) w->hash[i * per + 2] = hash_bytes(0, o->v + off, n);
        }
        w->hash[w->n_hash - 1] = hash_bytes(0, s->buffers, s->n_buffers * sizeof(float));
        ckpt_header *h = &w->h;
        h->step = s->step;
        h->epoch = s->epoch;
        h->cursor = s->cursor;
        h->seed = s->seed;
        h->bn_batches = s->bn_batches;
        if (o) {
            h->opt_step = o->step;
            h->opt_kind = (int32_t)o->kind;
            h->nesterov = o->nesterov;
            h->beta1 = o->beta1;
            h->beta2 = o->beta2;
            h->eps = o->eps;
            h->weight_decay = o->weight_decay;
            h->momentum = o->momentum;
        }
        h->job_len = s->job_text ? strlen(s->job_text) : 0;
        w->job = mm_malloc(h->job_len + 1);
        if (!w->job) return MM_ERR(MM_ERR_NOMEM, "checkpoint %s: job text (%llu bytes)", w->final, (unsigned long long)h->job_len);
        memcpy(w->job, s->job_text ? s->job_text : "", h->job_len + 1);
    }
    return MM_OK;
}

/* Hash of everything that decides which datasets and attributes the ranks create:
 * collective HDF5 calls need the same sequence with the same arguments everywhere. */
static uint64_t layout_hash(const ckpt_writer *w)
{
    const mm_ckpt_state *s = w->s;
    uint64_t h = hash_bytes(1, w->final, strlen(w->final));
    for (int i = 0; i < s->params->count; i++) {
        const mm_param_info *pi = &s->params->info[i];
        h = mix64(h ^ hash_bytes(2, pi->name, strlen(pi->name)));
        h = mix64(h ^ hash_bytes(3, pi->shape, (size_t)pi->ndim * sizeof pi->shape[0]));
    }
    int64_t tail[6] = {s->params->count, (int64_t)s->n_buffers, s->opt ? 1 + (int64_t)s->opt->kind : 0,
                       s->bank ? 1 : 0, s->bank ? s->bank->m : 0, s->bank ? s->bank->dim : 0};
    return mix64(h ^ hash_bytes(4, tail, sizeof tail));
}

/* Phase 2 (collective): same layout everywhere, then rank 0's header, hashes and job. */
static mm_status share(ckpt_writer *w)
{
    mm_dist *d = w->d;
    mm_status st = MM_OK;
    if (d->size == 1) return MM_OK;
    uint64_t lh = layout_hash(w), mm[2] = {lh, ~lh};
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, d->comm));
    if (mm[0] != lh || mm[1] != ~lh)
        st = MM_ERR(MM_ERR_ARG,
                    "checkpoint %s: the ranks disagree on the directory, the parameter registry, the buffers, the optimiser "
                    "or the memory bank (every rank must pass the same model)",
                    w->final);
    MM_CALL(mm_dist_agree(d, st)); /* all ranks saw the same comparison: same outcome */
    uint64_t bank_sum[2] = {w->h.bank_sum[0], w->h.bank_sum[1]};
    MM_MPI_CALL(MPI_Bcast(&w->h, (int)sizeof w->h, MPI_BYTE, 0, d->comm));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, bank_sum, 2, MPI_UINT64_T, MPI_SUM, d->comm));
    w->h.bank_sum[0] = bank_sum[0];
    w->h.bank_sum[1] = bank_sum[1];
    int nh, nj;
    MM_CALL(mm_dist_count((size_t)w->n_hash, "checkpoint hashes", &nh));
    MM_CALL(mm_dist_count(w->h.job_len + 1, "checkpoint job text", &nj));
    MM_MPI_CALL(MPI_Bcast(w->hash, nh, MPI_UINT64_T, 0, d->comm));
    if (d->rank != 0) {
        w->job = mm_malloc(w->h.job_len + 1);
        if (!w->job) st = MM_ERR(MM_ERR_NOMEM, "checkpoint %s: job text (%llu bytes)", w->final, (unsigned long long)w->h.job_len);
    }
    MM_CALL(mm_dist_agree(d, st));
    MM_MPI_CALL(MPI_Bcast(w->job, nj, MPI_CHAR, 0, d->comm));
    return MM_OK;
}

static mm_status create_group(ckpt_writer *w, hid_t parent, const char *name, hid_t *g)
{
    *g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (*g < 0) return H5ERR(MM_ERR_IO, "%s: cannot create group %s", w->tmp, name);
    return MM_OK;
}

/* One dataset of the replicated state: rank 0 writes everything, the others take part
 * with an empty selection (the write is collective). */
static mm_status write_replicated(ckpt_writer *w, hid_t g, const char *gpath, const char *name, int ndim,
                                  const hsize_t *dims, const float *data, uint64_t hash)
{
    hid_t sp = H5Screate_simple(ndim, dims, NULL), mem = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    mm_status st = MM_OK;
    hsize_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    if (sp < 0) {
        st = H5ERR(MM_ERR_INTERNAL, "%s: dataspace of %s/%s", w->tmp, gpath, name);
        goto done;
    }
    ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        st = H5ERR(MM_ERR_IO, "%s: cannot create dataset %s/%s", w->tmp, gpath, name);
        goto done;
    }
    if (n > 0) {
        mem = H5Screate_simple(1, &n, NULL);
        if (mem < 0 || (w->d->rank != 0 && (H5Sselect_none(sp) < 0 || H5Sselect_none(mem) < 0))) {
            st = H5ERR(MM_ERR_INTERNAL, "%s: selection of %s/%s", w->tmp, gpath, name);
            goto done;
        }
        if (H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, sp, w->dxpl, data) < 0) {
            st = H5ERR(MM_ERR_IO, "%s: cannot write dataset %s/%s", w->tmp, gpath, name);
            goto done;
        }
    }
    st = attr_write_u64(ds, "checksum", hash, w->tmp);
done:
    close_id(&ds, H5Dclose);
    close_id(&mem, H5Sclose);
    close_id(&sp, H5Sclose);
    return st;
}

/* One bank dataset [M, cols]: each rank writes its rows m0 .. m0 + m_local - 1. */
static mm_status write_rows(ckpt_writer *w, hid_t g, const char *name, int ndim, hid_t ftype, hid_t mtype, int64_t cols,
                            const void *data, uint64_t sum)
{
    const mm_memory_bank *b = w->s->bank;
    hsize_t dims[2] = {(hsize_t)b->m, (hsize_t)cols}, start[2] = {(hsize_t)b->m0, 0},
            count[2] = {(hsize_t)b->m_local, (hsize_t)cols};
    hsize_t nmem = count[0] * (hsize_t)cols;
    hid_t sp = H5Screate_simple(ndim, dims, NULL), mem = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    mm_status st = MM_OK;
    if (sp < 0) {
        st = H5ERR(MM_ERR_INTERNAL, "%s: dataspace of /memory/%s", w->tmp, name);
        goto done;
    }
    ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        st = H5ERR(MM_ERR_IO, "%s: cannot create dataset /memory/%s", w->tmp, name);
        goto done;
    }
    /* a rank without rows still takes part in the collective write, selecting nothing */
    hsize_t one = 1;
    mem = H5Screate_simple(1, nmem ? &nmem : &one, NULL);
    herr_t sel = mem < 0 ? -1
                 : nmem ? H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL)
                        : (H5Sselect_none(sp) < 0 || H5Sselect_none(mem) < 0) ? -1 : 0;
    if (sel < 0) {
        st = H5ERR(MM_ERR_INTERNAL, "%s: selection of /memory/%s", w->tmp, name);
        goto done;
    }
    if (H5Dwrite(ds, mtype, mem, sp, w->dxpl, data) < 0) {
        st = H5ERR(MM_ERR_IO, "%s: cannot write dataset /memory/%s", w->tmp, name);
        goto done;
    }
    st = attr_write_u64(ds, "checksum", sum, w->tmp);
done:
    close_id(&ds, H5Dclose);
    close_id(&mem, H5Sclose);
    close_id(&sp, H5Sclose);
    return st;
}

#define STEP(expr)                                   \
    do {                                             \
        st = mm_dist_agree(w->d, (expr));            \
        if (st != MM_OK) {                           \
            mm_error_push(__FILE__, __LINE__, __func__); \
            goto done;                               \
        }                                            \
    } while (0)

static mm_status write_root_attrs(ckpt_writer *w)
{
    const ckpt_header *h = &w->h;
    hid_t f = w->file;
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    char by[128];
    snprintf(by, sizeof by, "MMSA-C checkpoint writer (HDF5 %u.%u.%u, %d MPI ranks)", maj, min, rel, w->d->size);
    MM_CALL(attr_write_str(f, "format", MM_CKPT_FORMAT, strlen(MM_CKPT_FORMAT), w->tmp));
    MM_CALL(attr_write_i64(f, "version", MM_CKPT_VERSION, w->tmp));
    MM_CALL(attr_write_i64(f, "step", h->step, w->tmp));
    MM_CALL(attr_write_i64(f, "epoch", h->epoch, w->tmp));
    MM_CALL(attr_write_i64(f, "cursor", h->cursor, w->tmp));
    MM_CALL(attr_write_u64(f, "seed", h->seed, w->tmp));
    MM_CALL(attr_write_i64(f, "n_ranks_written", w->d->size, w->tmp));
    MM_CALL(attr_write_str(f, "created_by", by, strlen(by), w->tmp));
    MM_CALL(attr_write_str(f, "job", w->job, (size_t)h->job_len, w->tmp));
    return MM_OK;
}

static mm_status write_optim_attrs(ckpt_writer *w, hid_t g)
{
    const ckpt_header *h = &w->h;
    const char *kind = kind_name((mm_opt_kind)h->opt_kind);
    MM_CALL(attr_write_str(g, "kind", kind, strlen(kind), w->tmp));
    MM_CALL(attr_write_i64(g, "step", h->opt_step, w->tmp));
    MM_CALL(attr_write_f64(g, "beta1", h->beta1, w->tmp));
    MM_CALL(attr_write_f64(g, "beta2", h->beta2, w->tmp));
    MM_CALL(attr_write_f64(g, "eps", h->eps, w->tmp));
    MM_CALL(attr_write_f64(g, "weight_decay", h->weight_decay, w->tmp));
    MM_CALL(attr_write_f64(g, "momentum", h->momentum, w->tmp));
    MM_CALL(attr_write_i64(g, "nesterov", h->nesterov, w->tmp));
    return MM_OK;
}

static mm_status write_bank_attrs(ckpt_writer *w, hid_t g)
{
    MM_CALL(attr_write_f64(g, "tau", w->h.tau, w->tmp));
    MM_CALL(attr_write_f64(g, "momentum", w->h.bank_momentum, w->tmp));
    MM_CALL(attr_write_i64(g, "reseed_after", w->h.reseed_after, w->tmp));
    return MM_OK;
}

static mm_status create_file(ckpt_writer *w)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    mm_status st = MM_OK;
    /* v18 format: checksummed metadata, and attributes over 64 KiB (a long job text)
     * go to dense storage; readable by HDF5 1.8 and later. */
    if (fapl < 0 || H5Pset_fapl_mpio(fapl, w->d->comm, MPI_INFO_NULL) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0 || H5Pset_all_coll_metadata_ops(fapl, true) < 0 ||
        H5Pset_coll_metadata_write(fapl, true) < 0) {
        st = H5ERR(MM_ERR_INTERNAL, "%s: cannot set up MPI-IO file access", w->tmp);
    } else {
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (w->file < 0) {
            st = H5ERR(MM_ERR_IO, "cannot create checkpoint file %s", w->tmp);
            mm_error_hint("check that %s is writable and its file system has space", w->dir);
        }
    }
    close_id(&fapl, H5Pclose);
    if (st == MM_OK) {
        w->dxpl = H5Pcreate(H5P_DATASET_XFER);
        if (w->dxpl < 0 || H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
            st = H5ERR(MM_ERR_INTERNAL, "%s: cannot set up collective transfers", w->tmp);
    }
    return st;
}

/* Phase 4: every dataset, each followed by agreement. */
static mm_status write_contents(ckpt_writer *w)
{
    const mm_ckpt_state *s = w->s;
    const mm_params *p = s->params;
    const mm_optimizer *o = s->opt;
    int per = 1 + (o ? 1 : 0) + (o && o->v ? 1 : 0);
    hid_t gp = H5I_INVALID_HID, go = H5I_INVALID_HID, gm = H5I_INVALID_HID, gv = H5I_INVALID_HID, gb = H5I_INVALID_HID;
    mm_status st = MM_OK;
    STEP(write_root_attrs(w));
    STEP(create_group(w, w->file, "params", &gp));
    for (int i = 0; i < p->count; i++) {
        hsize_t dims[MM_MAX_DIMS];
        param_dims(&p->info[i], dims);
        STEP(write_replicated(w, gp, "/params", p->info[i].name, p->info[i].ndim, dims, p->data + p->info[i].offset,
                              w->hash[i * per]));
    }
    if (o) {
        STEP(create_group(w, w->file, "optim", &go));
        STEP(write_optim_attrs(w, go));
        STEP(create_group(w, go, "m", &gm));
        if (o->v) STEP(create_group(w, go, "v", &gv));
        for (int i = 0; i < p->count; i++) {
            hsize_t dims[MM_MAX_DIMS];
            param_dims(&p->info[i], dims);
            size_t off = p->info[i].offset;
            STEP(write_replicated(w, gm, "/optim/m", p->info[i].name, p->info[i].ndim, dims, o->m + off, w->hash[i * per + 1]));
            if (o->v)
                STEP(write_replicated(w, gv, "/optim/v", p->info[i].name, p->info[i].ndim, dims, o->v + off,
                                      w->hash[i * per + 2]));
        }
    }
    {
        hsize_t nb = (hsize_t)s->n_buffers;
        hid_t root = w->file;
        STEP(write_replicated(w, root, "", "buffers", 1, &nb, s->buffers, w->hash[w->n_hash - 1]));
        hid_t ds = H5Dopen2(w->file, "buffers", H5P_DEFAULT);
        mm_status a = ds < 0 ? H5ERR(MM_ERR_IO, "%s: cannot reopen dataset /buffers", w->tmp)
                             : attr_write_i64(ds, "bn_batches", w->h.bn_batches, w->tmp);
        close_id(&ds, H5Dclose);
        STEP(a);
    }
    if (s->bank) {
        const mm_memory_bank *b = s->bank;
        STEP(create_group(w, w->file, "memory", &gb));
        STEP(write_bank_attrs(w, gb));
        STEP(write_rows(w, gb, "anchors", 2, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, b->dim, b->anchors, w->h.bank_sum[0]));
        STEP(write_rows(w, gb, "unused", 1, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, b->unused, w->h.bank_sum[1]));
    }
done:
    close_id(&gb, H5Gclose);
    close_id(&gv, H5Gclose);
    close_id(&gm, H5Gclose);
    close_id(&go, H5Gclose);
    close_id(&gp, H5Gclose);
    return st;
}

/* Phase 5, rank 0: publish the closed file, point latest at it, rotate. */
static mm_status publish(ckpt_writer *w, int keep)
{
    if (rename(w->tmp, w->final) != 0) {
        int e = errno;
        mm_error_raise(MM_ERR_IO, __FILE__, __LINE__, __func__, "cannot rename %s to %s: %s", w->tmp, w->final, strerror(e));
        mm_error_hint("%s/latest still names the previous checkpoint", w->dir);
        return MM_ERR_IO;
    }
    sync_dir(w->dir);
    MM_CALL(write_latest(w->dir, w->name));
    MM_CALL(rotate(w->dir, w->h.step, keep));
    return MM_OK;
}

mm_status mm_ckpt_write(const char *dir, mm_dist *d, const mm_ckpt_state *s, int keep)
{
    h5_auto quiet = h5_silence();
    ckpt_writer w;
    memset(&w, 0, sizeof w);
    w.dir = dir;
    w.d = d;
    w.s = s;
    w.file = w.dxpl = H5I_INVALID_HID;
    mm_status st = mm_dist_agree(d, prepare(&w));
    if (st == MM_OK) st = share(&w);
    if (st == MM_OK) st = mm_dist_agree(d, d->rank == 0 ? mm_mkdir_p(dir, "checkpoint directory") : MM_OK);
    bool created = false;
    if (st == MM_OK) {
        st = mm_dist_agree(d, create_file(&w));
        created = true; /* a temp file may exist even when creation failed midway */
    }
    if (st == MM_OK) st = write_contents(&w);
    close_id(&w.dxpl, H5Pclose);
    if (w.file >= 0) {
        mm_status cs = H5Fclose(w.file) < 0 ? H5ERR(MM_ERR_IO, "cannot close checkpoint file %s (flush failed)", w.tmp) : MM_OK;
        w.file = H5I_INVALID_HID;
        if (st == MM_OK) st = mm_dist_agree(d, cs);
        else H5Eclear2(H5E_DEFAULT);
    }
    if (st == MM_OK) st = mm_dist_agree(d, d->rank == 0 ? publish(&w, keep) : MM_OK);
    /* never leave a partial file behind (after a successful rename the name is gone) */
    if (st != MM_OK && created && d->rank == 0) unlink(w.tmp);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    mm_free_sized(w.hash, (size_t)w.n_hash * sizeof(uint64_t));
    if (w.job) mm_free_sized(w.job, (size_t)w.h.job_len + 1);
    h5_restore(quiet);
    return st;
}

/* ================================================================== latest */

mm_status mm_ckpt_latest(const char *dir, char *path, size_t n, bool *found)
{
    *found = false;
    char lp[PATH_MAX], name[NAME_MAX + 2];
    if (snprintf(lp, sizeof lp, "%s/latest", dir) >= (int)sizeof lp)
        return MM_ERR(MM_ERR_ARG, "checkpoint directory name too long: %s", dir);
    FILE *f = fopen(lp, "r");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) return MM_OK;
        return MM_ERR(MM_ERR_IO, "cannot read %s: %s", lp, strerror(errno));
    }
    size_t len = fread(name, 1, sizeof name - 1, f);
    bool err = ferror(f);
    fclose(f);
    if (err) return MM_ERR(MM_ERR_IO, "cannot read %s", lp);
    name[len] = '\0';
    while (len > 0 && (name[len - 1] == '\n' || name[len - 1] == '\r' || name[len - 1] == ' ' || name[len - 1] == '\t'))
        name[--len] = '\0';
    if (len == 0 || len > NAME_MAX || strchr(name, '/') || strchr(name, '\n') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0) {
        mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__, "%s does not hold a checkpoint file name", lp);
        mm_error_hint("write the name of a step_*.h5 file of %s into it, or delete it to start from scratch", dir);
        return MM_ERR_FORMAT;
    }
    int w = snprintf(path, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n) return MM_ERR(MM_ERR_RANGE, "checkpoint path %s/%s does not fit %zu bytes", dir, name, n);
    struct stat sb;
    int sr = stat(path, &sb), e = errno;
    if (sr != 0 || !S_ISREG(sb.st_mode)) {
        mm_error_raise(MM_ERR_IO, __FILE__, __LINE__, __func__, "%s names %s, which %s", lp, path,
                       sr == 0 ? "is not a regular file" : strerror(e));
        mm_error_hint("the checkpoint was moved or deleted: write the name of an existing step_*.h5 of %s into %s, or "
                      "delete %s to start from scratch",
                      dir, lp, lp);
        return MM_ERR_IO;
    }
    *found = true;
    return MM_OK;
}

/* ================================================================== reading */

typedef struct {
    const char *path;
    mm_dist *d;
    mm_ckpt_state *s;
    hid_t file;
    int64_t step, epoch, cursor, bn_batches, opt_step;
    uint64_t seed;
} ckpt_reader;

/* The model's parameter list against the file's /params: missing, wrong shape, extra. */
static mm_status check_params(hid_t gp, const mm_params *p, const char *path)
{
    for (int i = 0; i < p->count; i++) {
        hsize_t dims[MM_MAX_DIMS];
        param_dims(&p->info[i], dims);
        bool absent;
        hid_t ds;
        MM_CALL(open_dset(gp, "/params", p->info[i].name, H5T_FLOAT, p->info[i].ndim, dims, path, &absent, &ds));
        if (absent) {
            mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__,
                           "%s: parameter %s of the model is missing from the file (dataset /params/%s)", path, p->info[i].name,
                           p->info[i].name);
            mm_error_hint("the checkpoint was written by a different model configuration; its root attribute \"job\" holds the job it was written with");
            return MM_ERR_FORMAT;
        }
        H5Dclose(ds);
    }
    H5G_info_t gi;
    if (H5Gget_info(gp, &gi) < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot list group /params", path);
    for (hsize_t k = 0; k < gi.nlinks; k++) {
        char name[MM_PARAM_NAME_MAX + 64];
        ssize_t len = H5Lget_name_by_idx(gp, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT);
        if (len < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot list group /params", path);
        if ((size_t)len >= sizeof name || mm_params_find(p, name) < 0) {
            mm_error_raise(MM_ERR_FORMAT, __FILE__, __LINE__, __func__,
                           "%s: the file has parameter %s%s, which the model does not have (dataset /params/%s)", path, name,
                           (size_t)len >= sizeof name ? "..." : "", name);
            mm_error_hint("the checkpoint was written by a different model configuration; its root attribute \"job\" holds the job it was written with");
            return MM_ERR_FORMAT;
        }
    }
    return MM_OK;
}

/* Phase B: everything but the data, independently on each rank. */
static mm_status validate(ckpt_reader *r)
{
    const char *path = r->path;
    mm_ckpt_state *s = r->s;
    hid_t f = r->file, g = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    mm_status st = MM_OK;
    MM_CALL(check_format(f, path));
    MM_CALL(attr_read_num(f, "/", "step", H5T_NATIVE_INT64, &r->step, path));
    MM_CALL(attr_read_num(f, "/", "epoch", H5T_NATIVE_INT64, &r->epoch, path));
    MM_CALL(attr_read_num(f, "/", "cursor", H5T_NATIVE_INT64, &r->cursor, path));
    MM_CALL(attr_read_num(f, "/", "seed", H5T_NATIVE_UINT64, &r->seed, path));
    if (r->step < 0 || r->epoch < 0 || r->cursor < 0)
        return MM_ERR(MM_ERR_FORMAT, "%s: negative step %lld, epoch %lld or cursor %lld", path, (long long)r->step,
                      (long long)r->epoch, (long long)r->cursor);
    MM_CALL(open_group(f, "/params", "parameters", path, &g));
    st = check_params(g, s->params, path);
    close_id(&g, H5Gclose);
    MM_CALL(st);
    if (s->opt) {
        char kind[32];
        MM_CALL(open_group(f, "/optim", "optimiser state", path, &g));
        st = attr_read_str(g, "/optim", "kind", kind, sizeof kind, path);
        if (st == MM_OK) st = attr_read_num(g, "/optim", "step", H5T_NATIVE_INT64, &r->opt_step, path);
        if (st == MM_OK && strcmp(kind, kind_name(s->opt->kind)) != 0) {
            st = MM_ERR(MM_ERR_FORMAT, "%s: the optimiser in the file is %s (attribute /optim kind), the run uses %s", path, kind,
                        kind_name(s->opt->kind));
            mm_error_hint("resume with the optimiser the checkpoint was written with, or load only the parameters");
        }
        if (st == MM_OK && (s->opt->n != s->params->total || !s->opt->m || (s->opt->kind == MM_OPT_ADAMW) != (s->opt->v != NULL)))
            st = MM_ERR(MM_ERR_ARG, "%s: the optimiser passed to the reader does not match its parameters", path);
        /* every state dataset exists with the parameter's shape */
        const char *sub[2] = {"m", "v"};
        for (int k = 0; st == MM_OK && k < (s->opt->v ? 2 : 1); k++) {
            char gpath[16];
            snprintf(gpath, sizeof gpath, "/optim/%s", sub[k]);
            hid_t gs = H5I_INVALID_HID;
            st = open_group(f, gpath, "optimiser state", path, &gs);
            for (int i = 0; st == MM_OK && i < s->params->count; i++) {
                hsize_t dims[MM_MAX_DIMS];
                param_dims(&s->params->info[i], dims);
                st = open_dset(gs, gpath, s->params->info[i].name, H5T_FLOAT, s->params->info[i].ndim, dims, path, NULL, &ds);
                close_id(&ds, H5Dclose);
            }
            close_id(&gs, H5Gclose);
        }
        close_id(&g, H5Gclose);
        MM_CALL(st);
    }
    {
        hsize_t nb = (hsize_t)s->n_buffers;
        MM_CALL(open_dset(f, "", "buffers", H5T_FLOAT, 1, &nb, path, NULL, &ds));
        st = attr_read_num(ds, "/buffers", "bn_batches", H5T_NATIVE_INT64, &r->bn_batches, path);
        close_id(&ds, H5Dclose);
        MM_CALL(st);
    }
    if (s->bank) {
        mm_memory_bank *b = s->bank;
        int64_t m0, ml;
        mm_dist_block(b->m, r->d->size, r->d->rank, &m0, &ml);
        if (m0 != b->m0 || ml != b->m_local)
            return MM_ERR(MM_ERR_ARG, "%s: the memory bank passed to the reader is not partitioned over its %d ranks", path,
                          r->d->size);
        hsize_t ad[2] = {(hsize_t)b->m, (hsize_t)b->dim}, ud = (hsize_t)b->m;
        MM_CALL(open_group(f, "/memory", "memory bank", path, &g));
        st = open_dset(g, "/memory", "anchors", H5T_FLOAT, 2, ad, path, NULL, &ds);
        close_id(&ds, H5Dclose);
        if (st == MM_OK) st = open_dset(g, "/memory", "unused", H5T_INTEGER, 1, &ud, path, NULL, &ds);
        close_id(&ds, H5Dclose);
        close_id(&g, H5Gclose);
        MM_CALL(st);
    }
    return MM_OK;
}

/* Reads parameter i's dataset of group g (shape already checked) into dst. */
static mm_status read_param_like(hid_t g, const char *gpath, const mm_param_info *pi, float *dst, const char *path)
{
    hsize_t dims[MM_MAX_DIMS];
    param_dims(pi, dims);
    hid_t ds;
    MM_CALL(open_dset(g, gpath, pi->name, H5T_FLOAT, pi->ndim, dims, path, NULL, &ds));
    char dname[MM_PARAM_NAME_MAX + 16];
    snprintf(dname, sizeof dname, "%s/%s", gpath, pi->name);
    mm_status st = read_whole_f32(ds, dname, dst, pi->n, path);
    H5Dclose(ds);
    MM_CALL(st);
    return MM_OK;
}

static mm_status read_group_params(hid_t f, const char *gpath, const mm_params *p, float *base, const char *path)
{
    hid_t g;
    MM_CALL(open_group(f, gpath, "parameters", path, &g));
    mm_status st = MM_OK;
    for (int i = 0; st == MM_OK && i < p->count; i++) st = read_param_like(g, gpath, &p->info[i], base + p->info[i].offset, path);
    H5Gclose(g);
    MM_CALL(st);
    return MM_OK;
}

/* This rank's rows of a bank dataset; *sum gets their row-hash sum, *want the file's. */
static mm_status read_rows(hid_t g, const char *name, hid_t mtype, int64_t cols, int64_t m0, int64_t ml, void *dst,
                           size_t row_bytes, const char *path, uint64_t *sum, uint64_t *want)
{
    char dname[32];
    snprintf(dname, sizeof dname, "/memory/%s", name);
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT), sp = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    if (ds < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot open dataset %s", path, dname);
    mm_status st = read_checksum(ds, dname, path, want);
    hsize_t start[2] = {(hsize_t)m0, 0}, count[2] = {(hsize_t)ml, (hsize_t)cols}, n = count[0] * count[1];
    if (st == MM_OK && ml > 0) {
        sp = H5Dget_space(ds);
        mem = H5Screate_simple(1, &n, NULL);
        if (sp < 0 || mem < 0 || H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(ds, mtype, mem, sp, H5P_DEFAULT, dst) < 0)
            st = H5ERR(MM_ERR_FORMAT, "%s: cannot read rows %lld..%lld of dataset %s", path, (long long)m0, (long long)(m0 + ml),
                       dname);
    }
    *sum = st == MM_OK ? hash_rows(m0, ml, dst, row_bytes) : 0;
    close_id(&mem, H5Sclose);
    close_id(&sp, H5Sclose);
    H5Dclose(ds);
    MM_CALL(st);
    return MM_OK;
}

/* Phase C: the data (replicated arrays verified locally; bank sums returned). */
static mm_status read_data(ckpt_reader *r, uint64_t sums[4])
{
    mm_ckpt_state *s = r->s;
    const char *path = r->path;
    hid_t f = r->file;
    MM_CALL(read_group_params(f, "/params", s->params, s->params->data, path));
    if (s->opt) {
        MM_CALL(read_group_params(f, "/optim/m", s->params, s->opt->m, path));
        if (s->opt->v) MM_CALL(read_group_params(f, "/optim/v", s->params, s->opt->v, path));
    }
    if (s->n_buffers > 0) {
        hsize_t nb = (hsize_t)s->n_buffers;
        hid_t ds;
        MM_CALL(open_dset(f, "", "buffers", H5T_FLOAT, 1, &nb, path, NULL, &ds));
        mm_status st = read_whole_f32(ds, "/buffers", s->buffers, s->n_buffers, path);
        H5Dclose(ds);
        MM_CALL(st);
    }
    if (s->bank) {
        mm_memory_bank *b = s->bank;
        hid_t g;
        MM_CALL(open_group(f, "/memory", "memory bank", path, &g));
        mm_status st = read_rows(g, "anchors", H5T_NATIVE_FLOAT, b->dim, b->m0, b->m_local, b->anchors,
                                 (size_t)b->dim * sizeof(float), path, &sums[0], &sums[2]);
        if (st == MM_OK)
            st = read_rows(g, "unused", H5T_NATIVE_INT64, 1, b->m0, b->m_local, b->unused, sizeof(int64_t), path, &sums[1],
                           &sums[3]);
        H5Gclose(g);
        MM_CALL(st);
    }
    return MM_OK;
}

mm_status mm_ckpt_read(const char *path, mm_dist *d, mm_ckpt_state *s)
{
    h5_auto quiet = h5_silence();
    ckpt_reader r;
    memset(&r, 0, sizeof r);
    r.path = path;
    r.d = d;
    r.s = s;
    r.file = H5I_INVALID_HID;
    mm_status st = MM_OK;
    if (!path || !s || !s->params || !s->params->allocated || (s->n_buffers > 0 && !s->buffers))
        st = MM_ERR(MM_ERR_ARG, "checkpoint read: needs a path and an allocated parameter registry (and buffer storage)");
    st = mm_dist_agree(d, st);
    if (st == MM_OK) st = mm_dist_agree(d, open_for_read(path, d->comm, &r.file));
    if (st == MM_OK) st = mm_dist_agree(d, validate(&r));
    uint64_t sums[4] = {0, 0, 0, 0}; /* this rank's anchors, unused row-hash sums; the file's two */
    if (st == MM_OK) st = mm_dist_agree(d, read_data(&r, sums));
    if (st == MM_OK && s->bank) {
        /* the row sums add up to the file's checksum only if every block is intact */
        int rc = d->size > 1 ? MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_UINT64_T, MPI_SUM, d->comm) : MPI_SUCCESS;
        if (rc != MPI_SUCCESS)
            st = mm_error_mpi(rc, "MPI_Allreduce (memory bank checksum)", __FILE__, __LINE__, __func__);
        else if (sums[0] != sums[2])
            st = checksum_mismatch(path, "/memory/anchors");
        else if (sums[1] != sums[3])
            st = checksum_mismatch(path, "/memory/unused");
    }
    if (r.file >= 0) {
        mm_status cs = H5Fclose(r.file) < 0 ? H5ERR(MM_ERR_IO, "cannot close checkpoint %s", path) : MM_OK;
        if (st == MM_OK) st = mm_dist_agree(d, cs);
        else H5Eclear2(H5E_DEFAULT);
    }
    if (st == MM_OK) {
        s->step = r.step;
        s->epoch = r.epoch;
        s->cursor = r.cursor;
        s->seed = r.seed;
        s->bn_batches = r.bn_batches;
        if (s->opt) s->opt->step = r.opt_step;
    } else {
        mm_error_push(__FILE__, __LINE__, __func__);
    }
    h5_restore(quiet);
    return st;
}

/* ================================================================== parameters only */

static mm_status load_params(hid_t f, const char *path, mm_params *params, const char *prefix, int *n_loaded,
                             bool required)
{
    MM_CALL(check_format(f, path));
    hid_t g;
    MM_CALL(open_group(f, "/params", "parameters", path, &g));
    mm_status st = MM_OK;
    size_t plen = prefix ? strlen(prefix) : 0;
    for (int i = 0; st == MM_OK && i < params->count; i++) {
        const mm_param_info *pi = &params->info[i];
        if (plen && strncmp(pi->name, prefix, plen) != 0) continue;
        hsize_t dims[MM_MAX_DIMS];
        param_dims(pi, dims);
        bool absent;
        hid_t ds;
        st = open_dset(g, "/params", pi->name, H5T_FLOAT, pi->ndim, dims, path, &absent, &ds);
        if (st == MM_OK && absent && required) {
            st = MM_ERR(MM_ERR_FORMAT, "%s lacks parameter %s (/params/%s)", path, pi->name, pi->name);
            mm_error_hint("the checkpoint must come from a model with this encoder and these sizes");
        }
        if (st != MM_OK || absent) continue;
        char dname[MM_PARAM_NAME_MAX + 16];
        snprintf(dname, sizeof dname, "/params/%s", pi->name);
        st = read_whole_f32(ds, dname, params->data + pi->offset, pi->n, path);
        H5Dclose(ds);
        if (st == MM_OK) (*n_loaded)++;
    }
    H5Gclose(g);
    MM_CALL(st);
    return MM_OK;
}

/* The first n floats of /buffers (with its checksum checked over the whole dataset). */
static mm_status load_buffers(hid_t f, const char *path, float *dst, size_t n, int64_t *bn_batches)
{
    MM_CALL(check_format(f, path));
    hid_t ds;
    hsize_t nf = 0;
    MM_CALL(open_dset_extent(f, "", "buffers", H5T_FLOAT, 1, NULL, &nf, path, NULL, &ds));
    mm_status st = MM_OK;
    if (nf < n)
        st = MM_ERR(MM_ERR_FORMAT, "%s: /buffers (BatchNorm running statistics) holds %llu values, fewer than the %zu wanted",
                    path, (unsigned long long)nf, n);
    float *all = st == MM_OK ? mm_malloc((nf ? nf : 1) * sizeof(float)) : NULL;
    if (st == MM_OK && !all) st = MM_ERR(MM_ERR_NOMEM, "%s: /buffers (%llu values)", path, (unsigned long long)nf);
    if (st == MM_OK) st = read_whole_f32(ds, "/buffers", all, (size_t)nf, path);
    if (st == MM_OK) st = attr_read_num(ds, "/buffers", "bn_batches", H5T_NATIVE_INT64, bn_batches, path);
    if (st == MM_OK && n) memcpy(dst, all, n * sizeof(float));
    if (all) mm_free_sized(all, (nf ? nf : 1) * sizeof(float));
    H5Dclose(ds);
    return st;
}

/* Opens path read-only (collective over comm), runs one loader on it, closes it. */
typedef struct load_ctx {
    mm_params *params;
    const char *prefix;
    int *n_loaded;
    bool required;
    float *dst;
    size_t n;
    int64_t *bn_batches;
    char **job;
} load_ctx;

static mm_status with_checkpoint(const char *path, MPI_Comm comm, mm_status (*load)(hid_t, const char *, load_ctx *),
                                 load_ctx *ctx)
{
    h5_auto quiet = h5_silence();
    hid_t f;
    mm_status st = open_for_read(path, comm, &f);
    if (st == MM_OK) {
        st = load(f, path, ctx);
        if (H5Fclose(f) < 0 && st == MM_OK) st = H5ERR(MM_ERR_IO, "cannot close checkpoint %s", path);
        H5Eclear2(H5E_DEFAULT);
    }
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    h5_restore(quiet);
    return st;
}

static mm_status load_params_cb(hid_t f, const char *path, load_ctx *c)
{
    return load_params(f, path, c->params, c->prefix, c->n_loaded, c->required);
}

mm_status mm_ckpt_load_params_all(const char *path, MPI_Comm comm, mm_params *params, const char *prefix)
{
    int n_loaded = 0;
    MM_CHECK_ARG(path && params && params->allocated, "checkpoint load: needs a path and an allocated parameter registry");
    load_ctx c = {.params = params, .prefix = prefix, .n_loaded = &n_loaded, .required = true};
    return with_checkpoint(path, comm, load_params_cb, &c);
}

static mm_status load_buffers_cb(hid_t f, const char *path, load_ctx *c)
{
    return load_buffers(f, path, c->dst, c->n, c->bn_batches);
}

/* The root attribute "job" (fixed-length as written, or variable-length) into a new string. */
static mm_status load_job_cb(hid_t f, const char *path, load_ctx *c)
{
    MM_CALL(check_format(f, path));
    htri_t ex = H5Aexists(f, "job");
    if (ex < 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot read the root attributes", path);
    size_t n = 1;
    if (ex > 0) {
        hid_t a, t;
        MM_CALL(attr_open(f, "/", "job", path, &a));
        t = H5Aget_type(a);
        n = t < 0 ? 0 : H5Tis_variable_str(t) > 0 ? (size_t)1 << 20 : H5Tget_size(t) + 1;
        close_id(&t, H5Tclose);
        close_id(&a, H5Aclose);
        if (n == 0) return H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute job of /", path);
    }
    char *buf = malloc(n);
    if (!buf) return MM_ERR(MM_ERR_NOMEM, "%s: the job text (%zu bytes)", path, n);
    buf[0] = '\0';
    mm_status st = ex > 0 ? attr_read_str(f, "/", "job", buf, n, path) : MM_OK;
    if (st != MM_OK) {
        free(buf);
        return st;
    }
    *c->job = buf;
    return MM_OK;
}

mm_status mm_ckpt_load_job(const char *path, MPI_Comm comm, char **text)
{
    MM_CHECK_ARG(path && text, "checkpoint job load: needs a path and a destination");
    *text = NULL;
    load_ctx c = {.job = text};
    return with_checkpoint(path, comm, load_job_cb, &c);
}

mm_status mm_ckpt_load_params(const char *path, MPI_Comm comm, mm_params *params, const char *prefix, int *n_loaded)
{
    *n_loaded = 0;
    MM_CHECK_ARG(path && params && params->allocated, "checkpoint load: needs a path and an allocated parameter registry");
    load_ctx c = {.params = params, .prefix = prefix, .n_loaded = n_loaded};
    return with_checkpoint(path, comm, load_params_cb, &c);
}

mm_status mm_ckpt_load_buffers(const char *path, MPI_Comm comm, float *dst, size_t n, int64_t *bn_batches)
{
    MM_CHECK_ARG(path && (dst || n == 0) && bn_batches, "checkpoint buffer load: needs a path, a destination and bn_batches");
    load_ctx c = {.dst = dst, .n = n, .bn_batches = bn_batches};
    return with_checkpoint(path, comm, load_buffers_cb, &c);
}
