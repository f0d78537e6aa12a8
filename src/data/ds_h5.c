/* ds_h5.c: HDF5 helpers of the dataset module: error conversion, strings, attributes. */
#include <stdarg.h>
#include <string.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"

void mm_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char desc[400];
    int depth;
} h5_walk_state;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *ud)
{
    h5_walk_state *s = ud;
    /* Upward walk: the first entry is the innermost, usually the real cause. */
    if (n == 0 && e->desc) snprintf(s->desc, sizeof s->desc, "%s", e->desc);
    s->depth++;
    return 0;
}

void mm_h5_take_error(char *buf, size_t n)
{
    h5_walk_state s = {{0}, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &s);
    H5Eclear2(H5E_DEFAULT);
    snprintf(buf, n, "%s", s.desc);
}

mm_status mm_h5_raise(mm_status code, const char *file, int line, const char *func, const char *fmt, ...)
{
    char msg[700], h5[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mm_h5_take_error(h5, sizeof h5);
    if (h5[0]) return mm_error_raise(code, file, line, func, "%s (HDF5: %s)", msg, h5);
    return mm_error_raise(code, file, line, func, "%s", msg);
}

void mm_h5_close_dset(hid_t *id)
{
    if (*id >= 0) H5Dclose(*id);
    *id = H5I_INVALID_HID;
}
void mm_h5_close_space(hid_t *id)
{
    if (*id >= 0) H5Sclose(*id);
    *id = H5I_INVALID_HID;
}
void mm_h5_close_type(hid_t *id)
{
    if (*id >= 0) H5Tclose(*id);
    *id = H5I_INVALID_HID;
}
void mm_h5_close_group(hid_t *id)
{
    if (*id >= 0) H5Gclose(*id);
    *id = H5I_INVALID_HID;
}
void mm_h5_close_plist(hid_t *id)
{
    if (*id >= 0) H5Pclose(*id);
    *id = H5I_INVALID_HID;
}

hid_t mm_h5_vlstr_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return H5I_INVALID_HID;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* ---------------------------------------------------------------- attribute writes */

static mm_status write_attr(hid_t obj, const char *name, hid_t type, hid_t space, const void *buf,
                            const char *path)
{
    mm_status st = MM_OK;
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0)
        return MM_H5ERR(MM_ERR_IO, "%s: cannot replace attribute %s", path, name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return MM_H5ERR(MM_ERR_IO, "%s: cannot create attribute %s", path, name);
    if (H5Awrite(a, type, buf) < 0) st = MM_H5ERR(MM_ERR_IO, "%s: cannot write attribute %s", path, name);
    H5Aclose(a);
    return st;
}

mm_status mm_h5_write_attr_str(hid_t obj, const char *name, const char *value, const char *path)
{
    hid_t t = mm_h5_vlstr_type(), s = H5Screate(H5S_SCALAR);
    mm_status st = MM_OK;
    if (t < 0 || s < 0)
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make a string type for attribute %s", path, name);
    else
        st = write_attr(obj, name, t, s, &value, path);
    mm_h5_close_type(&t);
    mm_h5_close_space(&s);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_h5_write_attr_strs(hid_t obj, const char *name, char *const *values, int n, const char *path)
{
    hsize_t d = (hsize_t)n;
    hid_t t = mm_h5_vlstr_type(), s = H5Screate_simple(1, &d, NULL);
    mm_status st = MM_OK;
    if (t < 0 || s < 0)
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make a string type for attribute %s", path, name);
    else
        st = write_attr(obj, name, t, s, values, path);
    mm_h5_close_type(&t);
    mm_h5_close_space(&s);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_h5_write_attr_i64(hid_t obj, const char *name, int64_t value, const char *path)
{
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make a scalar space", path);
    mm_status st = write_attr(obj, name, H5T_STD_I64LE, s, &value, path);
    /* the buffer is native int64, converted by HDF5 to the little-endian file type */
    H5Sclose(s);
    MM_CALL(st);
    return MM_OK;
}

/* ---------------------------------------------------------------- attribute reads */

static mm_status open_attr(hid_t obj, const char *obj_name, const char *name, const char *path,
                           bool *present, hid_t *a)
{
    *a = H5I_INVALID_HID;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot query attribute %s of %s", path, name, obj_name);
    *present = ex > 0;
    if (!ex) return MM_OK;
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot open attribute %s of %s", path, name, obj_name);
    return MM_OK;
}

mm_status mm_h5_read_attr_strs(hid_t obj, const char *obj_name, const char *name, const char *path,
                               char ***out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    bool present;
    hid_t a, ft = H5I_INVALID_HID, sp = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    MM_CALL(open_attr(obj, obj_name, name, path, &present, &a));
    if (!present)
        return MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is missing", path, name, obj_name);
    mm_status st = MM_OK;
    void *buf = NULL;
    size_t buf_bytes = 0;
    char **names = NULL;
    int n = 0;
    ft = H5Aget_type(a);
    sp = H5Aget_space(a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (ft < 0 || np < 0) {
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is unreadable", path, name, obj_name);
        goto done;
    }
    if (H5Tget_class(ft) != H5T_STRING || np > (1 << 20) || H5Sget_simple_extent_ndims(sp) > 1) {
        st = MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is not a string or a 1-D list of strings",
                    path, name, obj_name);
        goto done;
    }
    n = (int)np;
    htri_t vl = H5Tis_variable_str(ft);
    size_t fixed = vl > 0 ? 0 : H5Tget_size(ft);
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, vl > 0 ? H5T_VARIABLE : fixed) < 0 ||
        H5Tset_cset(mt, H5Tget_cset(ft)) < 0 || (vl <= 0 && H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0)) {
        /* the memory type copies the file's size and character set: a file type HDF5 will
         * not copy is a malformed file */
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: attribute %s of %s has a string type that cannot be read", path, name,
                      obj_name);
        goto done;
    }
    buf_bytes = (size_t)(n ? n : 1) * (vl > 0 ? sizeof(char *) : fixed);
    buf = mm_calloc(1, buf_bytes);
    names = n ? mm_calloc((size_t)n, sizeof(char *)) : NULL;
    if (!buf || (n && !names)) {
        st = MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate attribute %s", path, name);
        goto done;
    }
    if (H5Aread(a, mt, buf) < 0) {
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
        goto done;
    }
    for (int i = 0; i < n && st == MM_OK; i++) {
        if (vl > 0) {
            const char *s = ((char **)buf)[i];
            names[i] = mm_ds_strdup(s ? s : "");
        } else {
            char *tmp = mm_malloc(fixed + 1);
            if (tmp) {
                memcpy(tmp, (char *)buf + (size_t)i * fixed, fixed);
                tmp[fixed] = '\0';
                for (size_t k = strlen(tmp); k > 0 && tmp[k - 1] == ' '; k--) tmp[k - 1] = '\0';
                names[i] = mm_ds_strdup(tmp);
                mm_free_sized(tmp, fixed + 1);
            }
        }
        if (!names[i]) st = MM_ERR(MM_ERR_NOMEM, "%s: cannot copy attribute %s", path, name);
    }
    if (vl > 0) MM_H5_RECLAIM(mt, sp, H5P_DEFAULT, buf);
done:
    if (buf) mm_free_sized(buf, buf_bytes);
    mm_h5_close_type(&mt);
    mm_h5_close_type(&ft);
    mm_h5_close_space(&sp);
    H5Aclose(a);
    if (st != MM_OK) {
        mm_ds_free_names(&names, n);
        mm_error_push(__FILE__, __LINE__, __func__);
        return st;
    }
    *out = names;
    *n_out = n;
    return MM_OK;
}

mm_status mm_h5_read_attr_str(hid_t obj, const char *obj_name, const char *name, bool required,
                              const char *path, char **out)
{
    *out = NULL;
    if (!required && H5Aexists(obj, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        *out = mm_ds_strdup("");
        if (!*out) return MM_ERR(MM_ERR_NOMEM, "out of memory");
        return MM_OK;
    }
    char **v;
    int n;
    MM_CALL(mm_h5_read_attr_strs(obj, obj_name, name, path, &v, &n));
    if (n != 1) {
        mm_ds_free_names(&v, n);
        return MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s has %d strings, expected one", path, name,
                      obj_name, n);
    }
    *out = v[0];
    v[0] = NULL;
    mm_ds_free_names(&v, n);
    return MM_OK;
}

mm_status mm_h5_read_attr_i64(hid_t obj, const char *obj_name, const char *name, const char *path,
                              bool *present, int64_t *out)
{
    hid_t a;
    *out = 0;
    MM_CALL(open_attr(obj, obj_name, name, path, present, &a));
    if (!*present) return MM_OK;
    mm_status st = MM_OK;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    if (ft < 0 || sp < 0 || H5Tget_class(ft) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp) != 1)
        st = MM_ERR(MM_ERR_FORMAT, "%s: attribute %s of %s is not one integer", path, name, obj_name);
    else if (H5Aread(a, H5T_NATIVE_INT64, out) < 0)
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: cannot read attribute %s of %s", path, name, obj_name);
    mm_h5_close_type(&ft);
    mm_h5_close_space(&sp);
    H5Aclose(a);
    MM_CALL(st);
    return MM_OK;
}

/* ---------------------------------------------------------------- string datasets */

mm_status mm_h5_read_strings(hid_t dset, hid_t memspace, hid_t filespace, hid_t dxpl, int64_t n,
                             mm_strings *out, const char *path, const char *dname)
{
    mm_status st = MM_OK;
    hid_t ft = H5Dget_type(dset), mt = H5I_INVALID_HID;
    void *buf = NULL;
    size_t buf_bytes = 0, fixed = 0;
    htri_t vl = 0;
    char dummy[8];
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: dataset /%s is not a string dataset", path, dname);
        goto done;
    }
    vl = H5Tis_variable_str(ft);
    fixed = vl > 0 ? 0 : H5Tget_size(ft);
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, vl > 0 ? H5T_VARIABLE : fixed) < 0 ||
        H5Tset_cset(mt, H5Tget_cset(ft)) < 0 || (vl <= 0 && H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0)) {
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: dataset /%s has a string type that cannot be read", path, dname);
        goto done;
    }
    if (n > 0) {
        size_t per = vl > 0 ? sizeof(char *) : fixed;
        if ((uint64_t)n > SIZE_MAX / (per + 1)) {
            st = MM_ERR(MM_ERR_RANGE, "%s: %lld strings of /%s do not fit memory", path, (long long)n, dname);
            goto done;
        }
        buf_bytes = (size_t)n * per;
        buf = mm_calloc(1, buf_bytes);
        if (!buf) {
            st = MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %lld strings of /%s", path, (long long)n, dname);
            goto done;
        }
    }
    if (H5Dread(dset, mt, memspace, filespace, dxpl, buf ? buf : dummy) < 0) {
        st = MM_H5ERR(MM_ERR_FORMAT, "%s: cannot read dataset /%s", path, dname);
        /* a read that failed half-way may have allocated some strings already (the
         * buffer started zeroed, so the rest are NULL) */
        if (vl > 0 && n > 0) MM_H5_RECLAIM(mt, memspace, dxpl, buf);
        H5Eclear2(H5E_DEFAULT);
        goto done;
    }
    if (vl > 0) {
        int64_t bytes = 0;
        for (int64_t i = 0; i < n; i++) {
            const char *s = ((char **)buf)[i];
            bytes += (int64_t)strlen(s ? s : "") + 1;
        }
        st = mm_strings_reserve(out, out->n + n, out->nbytes + bytes);
        for (int64_t i = 0; i < n && st == MM_OK; i++) {
            const char *s = ((char **)buf)[i];
            st = mm_strings_push(out, s ? s : "");
        }
        if (n > 0) MM_H5_RECLAIM(mt, memspace, dxpl, buf);
    } else if (n > 0) {
        /* fixed-length strings: at most `fixed` bytes each, NUL- or space-padded */
        st = mm_strings_reserve(out, out->n + n, out->nbytes + n * (int64_t)(fixed + 1));
        char *tmp = st == MM_OK ? mm_malloc(fixed + 1) : NULL;
        if (st == MM_OK && !tmp) st = MM_ERR(MM_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < n && st == MM_OK; i++) {
            memcpy(tmp, (char *)buf + (size_t)i * fixed, fixed);
            tmp[fixed] = '\0';
            for (size_t k = strlen(tmp); k > 0 && tmp[k - 1] == ' '; k--) tmp[k - 1] = '\0';
            st = mm_strings_push(out, tmp);
        }
        if (tmp) mm_free_sized(tmp, fixed + 1);
    }
done:
    if (buf) mm_free_sized(buf, buf_bytes);
    mm_h5_close_type(&mt);
    mm_h5_close_type(&ft);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}
