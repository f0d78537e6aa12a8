/* spool.c: a rank's molecules set aside on disk chunk by chunk (dataset.h), so that a
 * producer holds one chunk in memory; the writer (dataset_write.c) reads them back one
 * column of one chunk at a time.
 *
 * The spool is one file per rank, unlinked as soon as it is created, so it never
 * outlives the process. Each appended chunk is its columns back to back, in the order
 * of the K_* enum (ds_internal.h), uncompressed; an index in memory (88 bytes per chunk)
 * keeps each chunk's counts and where it starts. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"

_Static_assert(MM_NMR_KINDS == 2, "mm_spool_row_bytes names the columns of two spectrum kinds");

int64_t mm_spool_col_rows(const mm_molset *lay, const mm_spool_chunk *c, int k)
{
    unsigned m = lay->modalities;
    switch (k) {
    case K_SOURCE_ROW: case K_ATOM_OFF: case K_BOND_OFF: return c->n;
    case K_ATOM_FEAT: return c->atoms;
    case K_BOND_INDEX: case K_BOND_FEAT: return c->bonds;
    case K_XYZ: return (m & MM_MOD_CONFORMER) ? c->atoms : 0;
    case K_CONF_OK: return (m & MM_MOD_CONFORMER) ? c->n : 0;
    case K_IMAGE: return (m & MM_MOD_IMAGE) ? c->n : 0;
    case K_FP: return (m & MM_MOD_FINGERPRINT) ? c->n : 0;
    case K_LABELS: return (m & MM_MOD_LABELS) ? c->n : 0;
    case K_SMILES: return c->bytes[S_SMILES];
    case K_SCAFFOLD: return (m & MM_MOD_SCAFFOLD) ? c->bytes[S_SCAFFOLD] : 0;
    case K_REJ_ROW: return c->rejects;
    case K_REJ_SMILES: return c->bytes[S_REJ_SMILES];
    case K_REJ_REASON: return c->bytes[S_REJ_REASON];
    default: break;
    }
    if (k >= K_NMR13C_OFF && k < K_SMILES) { /* spectra: offsets and ok per molecule, shift and atom per peak */
        int kind = (k - K_NMR13C_OFF) / 4, col = (k - K_NMR13C_OFF) % 4;
        if (!(m & MM_MOD_NMR(kind))) return 0;
        return col == 0 || col == 3 ? c->n : c->peaks[kind];
    }
    return 0;
}

size_t mm_spool_row_bytes(const mm_molset *lay, int k)
{
    switch (k) {
    case K_SOURCE_ROW: case K_ATOM_OFF: case K_BOND_OFF: case K_REJ_ROW: return sizeof(int64_t);
    case K_ATOM_FEAT: return MM_DS_ATOM_FEATS;
    case K_BOND_INDEX: return 2 * sizeof(int32_t);
    case K_BOND_FEAT: return MM_DS_BOND_FEATS;
    case K_XYZ: return 3 * sizeof(float);
    case K_IMAGE: return mm_ds_image_bytes(lay->image_h, lay->image_w);
    case K_FP: return MM_DS_FP_BYTES;
    case K_LABELS: return (size_t)lay->n_tasks * sizeof(float);
    case K_NMR_OFF(0): case K_NMR_OFF(1): return sizeof(int64_t);
    case K_NMR_SHIFT(0): case K_NMR_SHIFT(1): return sizeof(float);
    case K_NMR_ATOM(0): case K_NMR_ATOM(1): return sizeof(int32_t);
    default: return 1; /* conf_ok, nmr ok, strings */
    }
}

const void *mm_spool_col_ptr(const mm_molset *ms, int k)
{
    switch (k) {
    case K_SOURCE_ROW: return ms->source_row;
    case K_ATOM_OFF: return ms->atom_offset;
    case K_ATOM_FEAT: return ms->atom_feat;
    case K_BOND_OFF: return ms->bond_offset;
    case K_BOND_INDEX: return ms->bond_index;
    case K_BOND_FEAT: return ms->bond_feat;
    case K_XYZ: return ms->xyz;
    case K_CONF_OK: return ms->conf_ok;
    case K_IMAGE: return ms->image;
    case K_FP: return ms->fingerprint;
    case K_LABELS: return ms->labels;
    case K_SMILES: return ms->smiles.chars;
    case K_SCAFFOLD: return ms->scaffold.chars;
    case K_REJ_ROW: return ms->reject_row;
    case K_REJ_SMILES: return ms->reject_smiles.chars;
    case K_REJ_REASON: return ms->reject_reason.chars;
    default: break;
    }
    if (k >= K_NMR13C_OFF && k < K_SMILES) {
        const mm_spectra *sp = &ms->nmr[(k - K_NMR13C_OFF) / 4];
        switch ((k - K_NMR13C_OFF) % 4) {
        case 0: return sp->peak_offset;
        case 1: return sp->shift;
        case 2: return sp->atom;
        default: return sp->ok;
        }
    }
    return NULL;
}

mm_spool_chunk mm_spool_chunk_of(const mm_molset *ms)
{
    mm_spool_chunk c = {ms->n, ms->n_atoms, ms->n_bonds, ms->n_rejects,
                  {ms->smiles.nbytes, ms->scaffold.nbytes, ms->reject_smiles.nbytes, ms->reject_reason.nbytes}, {0}, 0};
    if (!(ms->modalities & MM_MOD_SCAFFOLD)) c.bytes[S_SCAFFOLD] = 0;
    for (int k = 0; k < MM_NMR_KINDS; k++)
        if (ms->modalities & MM_MOD_NMR(k)) c.peaks[k] = ms->nmr[k].n_peaks;
    return c;
}

int64_t mm_spool_col_pos(const mm_dataset_spool *s, const mm_spool_chunk *c, int k)
{
    int64_t pos = c->pos;
    for (int j = 0; j < k; j++) pos += mm_spool_col_rows(&s->layout, c, j) * (int64_t)mm_spool_row_bytes(&s->layout, j);
    return pos;
}

static bool same_layout(const mm_molset *a, const mm_molset *b)
{
    if (a->modalities != b->modalities || a->n_tasks != b->n_tasks) return false;
    if ((a->modalities & MM_MOD_IMAGE) && (a->image_h != b->image_h || a->image_w != b->image_w)) return false;
    for (int t = 0; t < a->n_tasks; t++)
        if (strcmp(a->task_names[t], b->task_names[t])) return false;
    return true;
}

static mm_status layout_copy(const mm_molset *src, mm_molset *dst)
{
    mm_molset_opts o = {src->modalities, src->image_h, src->image_w, src->n_tasks,
                        (const char *const *)src->task_names};
    return mm_molset_init(dst, &o);
}

mm_status mm_dataset_spool_create(const char *path, const mm_molset *layout, mm_dataset_spool **out)
{
    MM_CHECK_ARG(path && layout && out, "mm_dataset_spool_create: NULL argument");
    *out = NULL;
    mm_dataset_spool *s = mm_calloc(1, sizeof *s);
    if (!s) return MM_ERR(MM_ERR_NOMEM, "out of memory for the spool of %s", path);
    s->fd = -1;
    mm_status st = MM_OK;
    s->path = mm_ds_strdup(path);
    if (!s->path) {
        st = MM_ERR(MM_ERR_NOMEM, "out of memory for the spool of %s", path);
        goto done;
    }
    MM_CALL_GOTO(st, layout_copy(layout, &s->layout), done);
    s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        st = MM_ERR(MM_ERR_IO, "cannot create the spool file %s: %s", path, strerror(errno));
        mm_error_hint("the molecules wait there until the dataset is written: the directory must be writable");
        goto done;
    }
    unlink(path); /* the data stays reachable through fd; nothing is left behind, even after a crash */
done:
    if (st != MM_OK) {
        mm_dataset_spool_free(&s);
        return st;
    }
    *out = s;
    return MM_OK;
}

void mm_dataset_spool_free(mm_dataset_spool **sp)
{
    if (!sp || !*sp) return;
    mm_dataset_spool *s = *sp;
    if (s->fd >= 0) close(s->fd);
    mm_molset_free(&s->layout);
    if (s->ix) mm_free_sized(s->ix, (size_t)s->cap_ix * sizeof *s->ix);
    mm_ds_strfree(&s->path);
    mm_free_sized(s, sizeof *s);
    *sp = NULL;
}

static mm_status write_all(const mm_dataset_spool *s, const void *buf, int64_t bytes, int64_t pos)
{
    const char *p = buf;
    while (bytes > 0) {
        size_t want = bytes > ((int64_t)1 << 30) ? (size_t)1 << 30 : (size_t)bytes;
        ssize_t got = pwrite(s->fd, p, want, (off_t)pos);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            mm_status e = MM_ERR(MM_ERR_IO, "cannot write the spool file %s (deleted while open): %s", s->path,
                                 got < 0 ? strerror(errno) : "no progress");
            mm_error_hint("is the disk of the output full? the spool needs about the size of the dataset");
            return e;
        }
        p += got;
        pos += got;
        bytes -= got;
    }
    return MM_OK;
}

mm_status mm_spool_read(const mm_dataset_spool *s, void *buf, int64_t bytes, int64_t pos)
{
    char *p = buf;
    while (bytes > 0) {
        size_t want = bytes > ((int64_t)1 << 30) ? (size_t)1 << 30 : (size_t)bytes;
        ssize_t got = pread(s->fd, p, want, (off_t)pos);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return MM_ERR(MM_ERR_IO, "cannot read back the spool file %s (deleted while open): %s", s->path,
                          got < 0 ? strerror(errno) : "it is shorter than what was written");
        p += got;
        pos += got;
        bytes -= got;
    }
    return MM_OK;
}

mm_status mm_dataset_spool_append(mm_dataset_spool *s, const mm_molset *chunk)
{
    MM_CHECK_ARG(s && chunk && s->fd >= 0, "mm_dataset_spool_append: NULL argument");
    if (!same_layout(&s->layout, chunk))
        return MM_ERR(MM_ERR_ARG, "spool %s: a chunk with another layout (modalities, image size or tasks)", s->path);
    if (mm_molset_validate(chunk) != MM_OK) {
        char why[600];
        snprintf(why, sizeof why, "%s", mm_error_message());
        return MM_ERR(MM_ERR_ARG, "spool %s: %s", s->path, why);
    }
    if (chunk->n == 0 && chunk->n_rejects == 0) return MM_OK;
    if (s->n_ix == s->cap_ix) {
        int64_t cap = s->cap_ix ? 2 * s->cap_ix : 64;
        mm_spool_chunk *ix = mm_malloc((size_t)cap * sizeof *ix);
        if (!ix) return MM_ERR(MM_ERR_NOMEM, "out of memory for the index of the spool %s", s->path);
        if (s->ix) {
            memcpy(ix, s->ix, (size_t)s->n_ix * sizeof *ix);
            mm_free_sized(s->ix, (size_t)s->cap_ix * sizeof *s->ix);
        }
        s->ix = ix;
        s->cap_ix = cap;
    }
    mm_spool_chunk c = mm_spool_chunk_of(chunk);
    c.pos = s->end;
    for (int k = 0; k < K_COLS; k++) {
        int64_t bytes = mm_spool_col_rows(&s->layout, &c, k) * (int64_t)mm_spool_row_bytes(&s->layout, k);
        if (bytes == 0) continue;
        MM_CALL(write_all(s, mm_spool_col_ptr(chunk, k), bytes, mm_spool_col_pos(s, &c, k)));
    }
    s->end = mm_spool_col_pos(s, &c, K_COLS);
    s->ix[s->n_ix++] = c;
    return MM_OK;
}
