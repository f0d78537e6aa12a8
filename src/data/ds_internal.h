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
/* Room for n_peaks peaks of spectrum kind `kind` (the set must have its modality). */
mm_status mm_ds_reserve_peaks(mm_molset *ms, int kind, int64_t n_peaks);
/* Group names of the spectrum kinds in a file: "nmr13c", "nmr1h". */
extern const char *const mm_ds_nmr_name[MM_NMR_KINDS];
/* The checks of one molecule's spectrum of one kind (ok flag, peak count, finite
 * shifts, atoms in [-1, n_atoms)); failures are `code`, `where` names the molecule. */
mm_status mm_ds_check_spectrum(mm_status code, const char *where, int kind, int64_t n_atoms, uint8_t ok,
                               int64_t n_peaks, const float *shift, const int32_t *atom);

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


/* ---- spool (spool.c; the writer reads it in dataset_write.c) */

/* Columns of a chunk, in the order they follow each other in the spool file. */
enum {
    K_SOURCE_ROW, K_ATOM_OFF, K_ATOM_FEAT, K_BOND_OFF, K_BOND_INDEX, K_BOND_FEAT, K_XYZ, K_CONF_OK,
    K_IMAGE, K_FP, K_LABELS,
    K_NMR13C_OFF, K_NMR13C_SHIFT, K_NMR13C_ATOM, K_NMR13C_OK, /* then the same four for 1H */
    K_SMILES = K_NMR13C_OFF + 4 * MM_NMR_KINDS, K_SCAFFOLD, K_REJ_ROW, K_REJ_SMILES, K_REJ_REASON, K_COLS
};
/* The four columns of spectrum kind k. */
#define K_NMR_OFF(k) (K_NMR13C_OFF + 4 * (k))
#define K_NMR_SHIFT(k) (K_NMR13C_SHIFT + 4 * (k))
#define K_NMR_ATOM(k) (K_NMR13C_ATOM + 4 * (k))
#define K_NMR_OK(k) (K_NMR13C_OK + 4 * (k))
/* String columns' bytes in mm_spool_chunk.bytes */
enum { S_SMILES, S_SCAFFOLD, S_REJ_SMILES, S_REJ_REASON, S_N };

typedef struct mm_spool_chunk {
    int64_t n, atoms, bonds, rejects;
    int64_t bytes[S_N];
    int64_t peaks[MM_NMR_KINDS]; /* 0 for a kind the layout does not have */
    int64_t pos;              /* file offset of the chunk's first column */
} mm_spool_chunk;

struct mm_dataset_spool {
    mm_molset layout;         /* modalities, image size and tasks; no molecules */
    const mm_molset *mem;     /* a one-chunk view of a caller's set (mm_dataset_write), or NULL */
    int fd;                   /* the unlinked spool file; -1 for a view */
    char *path;               /* for messages */
    mm_spool_chunk *ix;       /* [cap_ix], n_ix used */
    int64_t n_ix, cap_ix;
    int64_t end;              /* bytes in the file */
};

/* Rows of column k in chunk c (bytes for strings; offsets: one per molecule, the
 * closing value, the chunk's atom or bond count, is not stored). */
int64_t mm_spool_col_rows(const mm_molset *layout, const mm_spool_chunk *c, int k);
size_t mm_spool_row_bytes(const mm_molset *layout, int k);
/* Column k of a set in memory. */
const void *mm_spool_col_ptr(const mm_molset *ms, int k);
/* The counts of a set in memory as a chunk (pos 0). */
mm_spool_chunk mm_spool_chunk_of(const mm_molset *ms);
/* Where column k of chunk c starts in the spool file. */
int64_t mm_spool_col_pos(const mm_dataset_spool *s, const mm_spool_chunk *c, int k);
/* Reads `bytes` bytes at `pos` of the spool file. */
mm_status mm_spool_read(const mm_dataset_spool *s, void *buf, int64_t bytes, int64_t pos);

#endif
