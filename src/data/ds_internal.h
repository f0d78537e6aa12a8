/* ds_internal.h: helpers shared by the files of the dataset module (not public). */
#ifndef MMSA_DS_INTERNAL_H
#define MMSA_DS_INTERNAL_H

#include <hdf5.h>

#include "mmsa/dataset.h"

/* ---- strings and names (molset.c) */
mm_status mm_strings_reserve(mm_strings *s, int64_t n, int64_t bytes);
mm_status mm_strings_push(mm_strings *s, const char *str);
void mm_strings_clear(mm_strings *s);
void mm_strings_free(mm_strings *s);
char *mm_ds_strdup(const char *s);           /* mm_malloc'd copy, NULL on failure */
void mm_ds_strfree(char **s);                /* frees a mm_ds_strdup string, NULLs it */
mm_status mm_ds_copy_names(const char *const *src, int n, char ***out);
void mm_ds_free_names(char ***names, int n);
size_t mm_ds_image_bytes(int h, int w);      /* 3 * h * w */
mm_status mm_ds_check_graph(mm_status code, const char *where, int64_t n_atoms,
                            const uint8_t *atom_feat, int64_t n_bonds,
                            const int32_t *bond_index, const uint8_t *bond_feat);

/* ---- HDF5 (ds_h5.c) */

/* Turns HDF5's automatic error-stack printing off for this thread's default stack. */
void mm_h5_quiet(void);
/* Records an mm error: the formatted message, then ": HDF5: <innermost description>"
 * from HDF5's error stack (which it clears). */
mm_status mm_h5_raise(mm_status code, const char *file, int line, const char *func,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Copies HDF5's innermost error description into buf ("" if none) and clears the stack. */
void mm_h5_take_error(char *buf, size_t n);
#define MM_H5ERR(code, ...) mm_h5_raise((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Close helpers that ignore invalid ids and reset them. */
void mm_h5_close_dset(hid_t *id);
void mm_h5_close_space(hid_t *id);
void mm_h5_close_type(hid_t *id);
void mm_h5_close_group(hid_t *id);
void mm_h5_close_plist(hid_t *id);

/* Frees the memory HDF5 allocated for variable-length data read into buf. */
#if H5_VERSION_GE(1, 12, 0)
#define MM_H5_RECLAIM(type, space, dxpl, buf) H5Treclaim((type), (space), (dxpl), (buf))
#else
#define MM_H5_RECLAIM(type, space, dxpl, buf) H5Dvlen_reclaim((type), (space), (dxpl), (buf))
#endif

/* Variable-length UTF-8 string type (close with H5Tclose), or H5I_INVALID_HID. */
hid_t mm_h5_vlstr_type(void);

/* Attributes; `path` names the file in error messages. */
mm_status mm_h5_write_attr_str(hid_t obj, const char *name, const char *value, const char *path);
mm_status mm_h5_write_attr_strs(hid_t obj, const char *name, char *const *values, int n,
                                const char *path);
mm_status mm_h5_write_attr_i64(hid_t obj, const char *name, int64_t value, const char *path);
/* A string attribute (scalar or one-element, variable or fixed length); absent -> ""
 * unless required. *out is a mm_ds_strdup string. */
mm_status mm_h5_read_attr_str(hid_t obj, const char *obj_name, const char *name, bool required,
                              const char *path, char **out);
/* All strings of a string attribute (a scalar counts as one). */
mm_status mm_h5_read_attr_strs(hid_t obj, const char *obj_name, const char *name, const char *path,
                               char ***out, int *n);
/* An integer scalar attribute; *present = false when absent. */
mm_status mm_h5_read_attr_i64(hid_t obj, const char *obj_name, const char *name, const char *path,
                              bool *present, int64_t *out);

/* Reads the n strings selected by (memspace, filespace) of string dataset dset and
 * appends them to out. */
mm_status mm_h5_read_strings(hid_t dset, hid_t memspace, hid_t filespace, hid_t dxpl, int64_t n,
                             mm_strings *out, const char *path, const char *dname);

#endif
