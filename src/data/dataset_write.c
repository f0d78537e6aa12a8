/* dataset_write.c: the collective writer of a dataset file (see dataset.h).
 *
 * Both entry points write from a spool (spool.c): a rank's molecules as a sequence of
 * chunks, each chunk's columns (source rows, offsets, atom rows, ..., strings) back to
 * back in one unlinked file. mm_dataset_write wraps the caller's molecule set as a spool
 * of one chunk that stays in memory, so there is one writer, and the bytes of the file
 * do not depend on how the molecules were chunked: every dataset is created with its final
 * shape (contiguous, allocated at creation) in the same order, and a chunk only decides
 * which rows one H5Dwrite call carries. Nor on the rank count or the run: objects carry
 * no creation times (untimed()), and rank 0 writes the strings in blocks of the same
 * file rows (STR_BLOCK_ROWS) whoever sent them.
 *
 * Phases, each ending with every rank knowing the outcome:
 *  1. local checks and allocations, then one MPI_Allreduce of "ok" (so a rank that
 *     failed alone never leaves the others waiting in a collective);
 *  2. MPI_Allgather of the per-rank counts; offsets rebased to global as they are written;
 *  3. collective: numeric datasets written with MPI-IO, collective transfers, in rounds:
 *     a round carries one block of at most io_block_bytes per rank, never across a chunk
 *     boundary; the number of rounds of a dataset is the largest number of blocks of any
 *     rank (one MPI_Allreduce for all datasets), and a rank with no block left selects
 *     none. A rank whose spool cannot be read goes on selecting none, so that no rank
 *     waits forever, and the failure is agreed after the close;
 *  4. rank 0 alone reopens the file and writes the strings (variable-length strings
 *     cannot go through MPI-IO in HDF5 1.10), receiving rank r's strings only when it
 *     is their turn, one chunk at a time, and the attributes; renames; broadcasts the
 *     outcome. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"
#include "mmsa/dist.h"

static size_t io_block_bytes = (size_t)256 << 20;

void mm_dataset_set_io_block_bytes(size_t bytes) { io_block_bytes = bytes ? bytes : (size_t)256 << 20; }

/* ---------------------------------------------------------------- writer state */

/* Per-rank facts exchanged in phase 2. */
enum {
    I_N, I_A, I_B, I_R, I_MOD, I_H, I_W, I_T, I_TASKHASH,
    I_SMILES_BYTES, I_SCAF_BYTES, I_RSMILES_BYTES, I_RREASON_BYTES,
    I_MAX_SMILES, I_MAX_SCAF, I_MAX_RROW, I_MAX_RSMILES, I_MAX_RREASON, /* largest chunk of each */
    I_PEAKS, /* peaks of spectrum kind k: I_PEAKS + k */
    I_LEN = I_PEAKS + MM_NMR_KINDS
};

#define MSG_CHUNK ((int64_t)1 << 30) /* bytes per MPI message: always fits an int */
enum { TAG_TOKEN = 101, TAG_DATA = 102 };

typedef struct writer {
    const char *path;
    const mm_dataset_spool *sp;
    const mm_molset *ms;      /* sp->layout: modalities, image size, tasks */
    const mm_spool_chunk *ix;       /* [n_ix] the spool's chunks, or one empty chunk */
    int64_t n_ix;
    mm_spool_chunk empty;
    const mm_dataset_meta *meta;
    bool mpi;
    mm_dist d;
    int rank, size;
    char tmp[PATH_MAX + 64];
    int64_t *info;            /* [size, I_LEN] */
    int64_t N, A, B, R;       /* global counts */
    int64_t P[MM_NMR_KINDS];  /* global peaks of each spectrum kind */
    int64_t n0, a0, b0;       /* this rank's first molecule, atom, bond */
    int64_t p0[MM_NMR_KINDS]; /* this rank's first peak of each kind */
    char *scratch;            /* [cap_scratch] a block read back from the spool */
    size_t cap_scratch;
} writer;

#define W_MPI(expr)                                                                     \
    do {                                                                                \
        int w_rc_ = (expr);                                                             \
        if (w_rc_ != MPI_SUCCESS) {                                                     \
            st = mm_error_mpi(w_rc_, #expr, __FILE__, __LINE__, __func__);              \
            goto done;                                                                  \
        }                                                                               \
    } while (0)

static uint64_t task_hash(const mm_molset *ms)
{
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < ms->n_tasks; t++) {
        for (const char *c = ms->task_names[t]; ; c++) {
            h = (h ^ (uint8_t)*c) * 1099511628211ull;
            if (!*c) break;
        }
    }
    return h;
}

static int64_t info_of(const writer *w, int r, int k) { return w->info[(size_t)r * I_LEN + k]; }

static mm_status reserve_scratch(writer *w, size_t bytes)
{
    if (bytes <= w->cap_scratch) return MM_OK;
    if (w->scratch) mm_free_sized(w->scratch, w->cap_scratch);
    w->cap_scratch = 0;
    w->scratch = mm_malloc(bytes);
    if (!w->scratch) return MM_ERR(MM_ERR_NOMEM, "mm_dataset_write %s: cannot allocate %zu bytes", w->path, bytes);
    w->cap_scratch = bytes;
    return MM_OK;
}

/* Rows [first, first + cnt) of column k of chunk c: a pointer into the caller's set,
 * or into the scratch block read back from the spool. */
static mm_status fetch(writer *w, int k, int64_t c, int64_t first, int64_t cnt, const char **out)
{
    size_t rb = mm_spool_row_bytes(w->ms, k);
    if (w->sp->mem) {
        *out = (const char *)mm_spool_col_ptr(w->sp->mem, k) + (size_t)first * rb;
        return MM_OK;
    }
    MM_CALL(reserve_scratch(w, (size_t)cnt * rb));
    MM_CALL(mm_spool_read(w->sp, w->scratch, cnt * (int64_t)rb, mm_spool_col_pos(w->sp, &w->ix[c], k) + first * (int64_t)rb));
    *out = w->scratch;
    return MM_OK;
}

/* ---------------------------------------------------------------- phase 1-2 */

static mm_status local_prepare(writer *w, int64_t mine[I_LEN])
{
    const mm_molset *ms = w->ms;
    MM_CHECK_ARG(w->meta && w->path && w->path[0], "mm_dataset_write: NULL argument");
    MM_CHECK_ARG(w->meta->featurizer && w->meta->source,
                 "mm_dataset_write %s: meta.featurizer and meta.source are required", w->path);
    if (w->sp->mem && mm_molset_validate(w->sp->mem) != MM_OK) { /* a spool's chunks were validated when appended */
        char why[600];
        snprintf(why, sizeof why, "%s", mm_error_message());
        return MM_ERR(MM_ERR_ARG, "mm_dataset_write %s: %s", w->path, why);
    }
    memset(mine, 0, I_LEN * sizeof *mine);
    for (int64_t c = 0; c < w->n_ix; c++) {
        const mm_spool_chunk *x = &w->ix[c];
        mine[I_N] += x->n;
        mine[I_A] += x->atoms;
        mine[I_B] += x->bonds;
        mine[I_R] += x->rejects;
        mine[I_SMILES_BYTES] += x->bytes[S_SMILES];
        mine[I_SCAF_BYTES] += mm_spool_col_rows(ms, x, K_SCAFFOLD);
        mine[I_RSMILES_BYTES] += x->bytes[S_REJ_SMILES];
        mine[I_RREASON_BYTES] += x->bytes[S_REJ_REASON];
        for (int k = 0; k < MM_NMR_KINDS; k++) mine[I_PEAKS + k] += x->peaks[k];
        const int64_t piece[5] = {x->bytes[S_SMILES], mm_spool_col_rows(ms, x, K_SCAFFOLD), x->rejects * (int64_t)sizeof(int64_t),
                                  x->bytes[S_REJ_SMILES], x->bytes[S_REJ_REASON]};
        for (int j = 0; j < 5; j++)
            if (piece[j] > mine[I_MAX_SMILES + j]) mine[I_MAX_SMILES + j] = piece[j];
    }
    mine[I_MOD] = ms->modalities;
    mine[I_H] = ms->image_h;
    mine[I_W] = ms->image_w;
    mine[I_T] = ms->n_tasks;
    mine[I_TASKHASH] = (int64_t)(task_hash(ms) >> 1);
    w->info = mm_calloc((size_t)w->size, I_LEN * sizeof(int64_t));
    if (!w->info) return MM_ERR(MM_ERR_NOMEM, "mm_dataset_write %s: cannot allocate the counts", w->path);
    return MM_OK;
}

static mm_status check_global(writer *w)
{
    for (int r = 1; r < w->size; r++)
        for (int k = I_MOD; k <= I_TASKHASH; k++)
            if (info_of(w, r, k) != info_of(w, 0, k))
                return MM_ERR(MM_ERR_ARG,
                              "mm_dataset_write %s: rank %d's molecule set has a different layout than "
                              "rank 0's (modalities, image size or tasks)", w->path, r);
    /* the counts that are summed over ranks: molecules, atoms, bonds, rejects, peaks */
    static const int summed[] = {I_N, I_A, I_B, I_R, I_PEAKS, I_PEAKS + 1};
    _Static_assert(MM_NMR_KINDS == 2, "summed[] lists the peaks of two spectrum kinds");
    enum { NS = sizeof summed / sizeof summed[0] };
    int64_t sum[NS] = {0}, first[NS] = {0};
    for (int r = 0; r < w->size; r++)
        for (int j = 0; j < NS; j++) {
            int64_t v = info_of(w, r, summed[j]);
            if (r == w->rank) first[j] = sum[j];
            if (v < 0 || sum[j] > INT64_MAX / 16 - v)
                return MM_ERR(MM_ERR_RANGE, "mm_dataset_write %s: total counts overflow", w->path);
            sum[j] += v;
        }
    w->N = sum[0];
    w->A = sum[1];
    w->B = sum[2];
    w->R = sum[3];
    w->n0 = first[0];
    w->a0 = first[1];
    w->b0 = first[2];
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        w->P[k] = sum[4 + k];
        w->p0[k] = first[4 + k];
    }
    /* largest dataset: N*3*H*W bytes of images; every size must fit hsize_t and size_t */
    const mm_molset *ms = w->ms;
    double img = (ms->modalities & MM_MOD_IMAGE) ? (double)w->N * mm_ds_image_bytes(ms->image_h, ms->image_w) : 0;
    double lab = (double)w->N * ms->n_tasks * 4.0;
    if (img > 9.0e18 || lab > 9.0e18 || (double)w->A * 12.0 > 9.0e18)
        return MM_ERR(MM_ERR_RANGE, "mm_dataset_write %s: dataset sizes overflow", w->path);
    return MM_OK;
}

/* ---------------------------------------------------------------- phase 3 */

/* A creation property list of class `cls` without object times: HDF5 stamps every
 * object with the second it was made by default, so two runs over the same molecules
 * would differ in those bytes alone. Without them the file is a function of its content. */
static hid_t untimed(hid_t cls)
{
    hid_t pl = H5Pcreate(cls);
    if (pl >= 0 && H5Pset_obj_track_times(pl, false) < 0) mm_h5_close_plist(&pl);
    return pl;
}

typedef struct part {
    const char *name;       /* path in the file */
    hid_t ftype, mtype;
    int ndim;
    hsize_t dims[4];        /* global shape; dims[0] rows */
    int col;                /* K_*: where this rank's rows come from */
    int64_t row0;           /* this rank's first global row */
    int offsets;            /* 0; or OFF_ATOMS/OFF_BONDS/OFF_PEAKS + k: offsets into the atoms, bonds or
                               peaks of spectrum kind k, rebased to global (the last rank also
                               writes the closing value A, B or P[k]) */
    int64_t blocks;         /* this rank's blocks, then (after the agreement) the number of rounds */
} part;

enum { OFF_NONE, OFF_ATOMS, OFF_BONDS, OFF_PEAKS };

/* The rows a chunk holds of what offsets `which` (OFF_*) point into. */
static int64_t chunk_count(const mm_spool_chunk *x, int which)
{
    return which == OFF_ATOMS ? x->atoms : which == OFF_BONDS ? x->bonds : x->peaks[which - OFF_PEAKS];
}

/* This rank's first global row of what offsets `which` point into. */
static int64_t rank_first(const writer *w, int which)
{
    return which == OFF_ATOMS ? w->a0 : which == OFF_BONDS ? w->b0 : w->p0[which - OFF_PEAKS];
}

/* Rows of part p in chunk c; the closing offset belongs to the last chunk of the last rank. */
static int64_t part_rows(const writer *w, const part *p, int64_t c)
{
    int64_t rows = mm_spool_col_rows(w->ms, &w->ix[c], p->col);
    if (p->offsets && w->rank == w->size - 1 && c == w->n_ix - 1) rows++;
    return rows;
}

static int64_t part_per_round(const part *p)
{
    size_t row_elems = 1;
    for (int k = 1; k < p->ndim; k++) row_elems *= p->dims[k];
    size_t row_bytes = row_elems * H5Tget_size(p->mtype);
    int64_t per_round = (int64_t)(io_block_bytes / (row_bytes ? row_bytes : 1));
    return per_round < 1 ? 1 : per_round;
}

static int64_t part_blocks(const writer *w, const part *p)
{
    int64_t per_round = part_per_round(p), blocks = 0;
    for (int64_t c = 0; c < w->n_ix; c++) blocks += (part_rows(w, p, c) + per_round - 1) / per_round;
    return blocks;
}

/* The block of rows [first, first + cnt) of chunk c of part p, ready to write: offsets
 * rebased to global (base = the rank's first atom/bond plus those of earlier chunks). */
static mm_status part_block(writer *w, const part *p, int64_t c, int64_t first, int64_t cnt, int64_t base,
                            const void **out)
{
    if (!p->offsets) {
        const char *src = NULL;
        MM_CALL(fetch(w, p->col, c, first, cnt, &src));
        *out = src;
        return MM_OK;
    }
    const mm_spool_chunk *x = &w->ix[c];
    int64_t stored = cnt, closing = chunk_count(x, p->offsets);
    if (first + stored > x->n) stored = x->n - first; /* the closing value is not stored */
    /* rebased in the scratch (the caller's set is const); reserved first, so that the
     * spool's rows read into it stay */
    MM_CALL(reserve_scratch(w, (size_t)cnt * sizeof(int64_t)));
    const char *src = NULL;
    if (stored > 0) MM_CALL(fetch(w, p->col, c, first, stored, &src));
    int64_t *dst = (int64_t *)w->scratch;
    if (stored > 0 && src != w->scratch) memcpy(dst, src, (size_t)stored * sizeof(int64_t));
    for (int64_t i = stored; i < cnt; i++) dst[i] = closing;
    for (int64_t i = 0; i < cnt; i++) dst[i] += base;
    *out = dst;
    return MM_OK;
}

/* Creates dataset p and writes this rank's rows in p->blocks collective rounds. A failure
 * to read the spool is kept in *read_st while the rounds go on (selecting none). */
static mm_status write_part(writer *w, hid_t file, hid_t dcpl, hid_t dxpl, const part *p, mm_status *read_st)
{
    mm_status st = MM_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID, fsel = H5I_INVALID_HID, msp = H5I_INVALID_HID;
    space = H5Screate_simple(p->ndim, p->dims, NULL);
    if (space < 0) {
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make the dataspace of %s", w->path, p->name);
        goto done;
    }
    dset = H5Dcreate2(file, p->name, p->ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dset < 0) {
        st = MM_H5ERR(MM_ERR_IO, "%s: cannot create dataset %s", w->tmp, p->name);
        goto done;
    }
    const int64_t per_round = part_per_round(p);
    int64_t c = 0, first = 0, row = p->row0; /* next block: chunk c from its row `first`, global row `row` */
    int64_t base = p->offsets ? rank_first(w, p->offsets) : 0;
    for (int64_t k = 0; k < p->blocks; k++) {
        while (c < w->n_ix && first >= part_rows(w, p, c)) {
            if (p->offsets) base += chunk_count(&w->ix[c], p->offsets);
            c++;
            first = 0;
        }
        int64_t cnt = 0;
        const void *src = NULL;
        if (c < w->n_ix && *read_st == MM_OK) {
            cnt = part_rows(w, p, c) - first;
            if (cnt > per_round) cnt = per_round;
            mm_status rs = part_block(w, p, c, first, cnt, base, &src);
            if (rs != MM_OK) {
                mm_error_push(__FILE__, __LINE__, __func__);
                *read_st = rs;
                cnt = 0;
            }
        }
        fsel = H5Dget_space(dset);
        hsize_t start[4] = {0, 0, 0, 0}, count[4];
        memcpy(count, p->dims, sizeof count);
        start[0] = (hsize_t)row;
        count[0] = (hsize_t)cnt;
        herr_t e;
        if (cnt > 0) {
            msp = H5Screate_simple(p->ndim, count, NULL);
            e = fsel < 0 || msp < 0 ? -1 : H5Sselect_hyperslab(fsel, H5S_SELECT_SET, start, NULL, count, NULL);
        } else {
            /* this rank has nothing in this round but must join the collective call */
            hsize_t one[4] = {1, 1, 1, 1};
            msp = H5Screate_simple(p->ndim, one, NULL);
            e = fsel < 0 || msp < 0 ? -1 : (H5Sselect_none(fsel) < 0 ? -1 : H5Sselect_none(msp));
        }
        static const char empty[8];
        if (e < 0 || H5Dwrite(dset, p->mtype, msp, fsel, dxpl, cnt > 0 ? src : (const void *)empty) < 0) {
            st = MM_H5ERR(MM_ERR_IO, "%s: cannot write dataset %s (rows %lld..%lld)", w->tmp, p->name,
                          (long long)row, (long long)(row + cnt));
            goto done;
        }
        mm_h5_close_space(&fsel);
        mm_h5_close_space(&msp);
        first += cnt;
        row += cnt;
    }
done:
    mm_h5_close_space(&fsel);
    mm_h5_close_space(&msp);
    mm_h5_close_space(&space);
    mm_h5_close_dset(&dset);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static mm_status write_numeric(writer *w)
{
    mm_status st = MM_OK, read_st = MM_OK;
    const mm_molset *ms = w->ms;
    const hsize_t N = (hsize_t)w->N, A = (hsize_t)w->A, B = (hsize_t)w->B;
    part parts[24];
    int np = 0;
    parts[np++] = (part){"source_row", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N}, K_SOURCE_ROW, w->n0, 0, 0};
    parts[np++] = (part){"atom_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N + 1}, K_ATOM_OFF, w->n0, OFF_ATOMS, 0};
    parts[np++] = (part){"atom_feat", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {A, MM_DS_ATOM_FEATS}, K_ATOM_FEAT, w->a0, 0, 0};
    parts[np++] = (part){"bond_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N + 1}, K_BOND_OFF, w->n0, OFF_BONDS, 0};
    parts[np++] = (part){"bond_index", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, {B, 2}, K_BOND_INDEX, w->b0, 0, 0};
    parts[np++] = (part){"bond_feat", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {B, MM_DS_BOND_FEATS}, K_BOND_FEAT, w->b0, 0, 0};
    if (ms->modalities & MM_MOD_CONFORMER) {
        parts[np++] = (part){"conformer/xyz", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {A, 3}, K_XYZ, w->a0, 0, 0};
        parts[np++] = (part){"conformer/ok", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {N}, K_CONF_OK, w->n0, 0, 0};
    }
    if (ms->modalities & MM_MOD_IMAGE)
        parts[np++] = (part){"image", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4,
                             {N, MM_DS_IMAGE_CHANNELS, (hsize_t)ms->image_h, (hsize_t)ms->image_w}, K_IMAGE, w->n0, 0, 0};
    if (ms->modalities & MM_MOD_FINGERPRINT)
        parts[np++] = (part){"fingerprint", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {N, MM_DS_FP_BYTES}, K_FP, w->n0, 0, 0};
    if (ms->modalities & MM_MOD_LABELS)
        parts[np++] = (part){"labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {N, (hsize_t)ms->n_tasks}, K_LABELS, w->n0, 0, 0};
    static const char *const nmr_dset[MM_NMR_KINDS][4] = {
        {"nmr13c/peak_offset", "nmr13c/shift", "nmr13c/atom", "nmr13c/ok"},
        {"nmr1h/peak_offset", "nmr1h/shift", "nmr1h/atom", "nmr1h/ok"}};
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(ms->modalities & MM_MOD_NMR(k))) continue;
        const hsize_t P = (hsize_t)w->P[k];
        parts[np++] = (part){nmr_dset[k][0], H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N + 1}, K_NMR_OFF(k), w->n0,
                             OFF_PEAKS + k, 0};
        parts[np++] = (part){nmr_dset[k][1], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, {P}, K_NMR_SHIFT(k), w->p0[k], 0, 0};
        parts[np++] = (part){nmr_dset[k][2], H5T_STD_I32LE, H5T_NATIVE_INT32, 1, {P}, K_NMR_ATOM(k), w->p0[k], 0, 0};
        parts[np++] = (part){nmr_dset[k][3], H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {N}, K_NMR_OK(k), w->n0, 0, 0};
    }
    /* rounds per dataset: the most blocks of any rank (the same parts on every rank) */
    int64_t blocks[24];
    for (int i = 0; i < np; i++) blocks[i] = part_blocks(w, &parts[i]);
    if (w->mpi) MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, blocks, np, MPI_INT64_T, MPI_MAX, w->d.comm));
    for (int i = 0; i < np; i++) parts[i].blocks = blocks[i];

    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    hid_t dcpl = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (fapl < 0 || dxpl < 0 || dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_obj_track_times(dcpl, false) < 0) {
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make HDF5 property lists", w->path);
        goto done;
    }
    if (w->mpi && (H5Pset_fapl_mpio(fapl, w->d.comm, MPI_INFO_NULL) < 0 ||
                   H5Pset_all_coll_metadata_ops(fapl, true) < 0 || H5Pset_coll_metadata_write(fapl, true) < 0 ||
                   H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)) {
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot set up MPI-IO", w->path);
        goto done;
    }
    file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        st = MM_H5ERR(MM_ERR_IO, "cannot create %s (temporary file of %s)", w->tmp, w->path);
        goto done;
    }
    /* groups are created before the datasets: the file's layout depends on it */
    const char *groups[1 + MM_NMR_KINDS];
    int ng = 0;
    if (ms->modalities & MM_MOD_CONFORMER) groups[ng++] = "conformer";
    for (int k = 0; k < MM_NMR_KINDS; k++)
        if (ms->modalities & MM_MOD_NMR(k)) groups[ng++] = mm_ds_nmr_name[k];
    for (int g = 0; g < ng; g++) {
        hid_t gcpl = untimed(H5P_GROUP_CREATE);
        grp = gcpl < 0 ? H5I_INVALID_HID : H5Gcreate2(file, groups[g], H5P_DEFAULT, gcpl, H5P_DEFAULT);
        mm_h5_close_plist(&gcpl);
        if (grp < 0) {
            st = MM_H5ERR(MM_ERR_IO, "%s: cannot create group /%s", w->tmp, groups[g]);
            goto done;
        }
        mm_h5_close_group(&grp);
    }
    for (int i = 0; i < np; i++) MM_CALL_GOTO(st, write_part(w, file, dcpl, dxpl, &parts[i], &read_st), done);
done:
    mm_h5_close_group(&grp);
    if (file >= 0 && H5Fclose(file) < 0 && st == MM_OK)
        st = MM_H5ERR(MM_ERR_IO, "cannot close %s (temporary file of %s)", w->tmp, w->path);
    mm_h5_close_plist(&fapl);
    mm_h5_close_plist(&dxpl);
    mm_h5_close_plist(&dcpl);
    if (st == MM_OK) st = read_st;
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

/* ---------------------------------------------------------------- phase 4 */

/* One block of data rank 0 writes in the serial phase, one piece per chunk of each rank. */
typedef struct column {
    const char *name;
    bool is_string;           /* NUL-terminated strings; else int64 rows */
    int count_key;            /* I_N or I_R: rows per rank */
    int bytes_key;            /* bytes per rank (strings); -1 for int64 rows */
    int max_key;              /* largest piece of a rank */
    int col;                  /* K_* */
} column;

static mm_status send_bytes(const writer *w, const void *buf, int64_t bytes)
{
    mm_status st = MM_OK;
    for (int64_t off = 0; off < bytes; off += MSG_CHUNK) {
        int64_t c = bytes - off < MSG_CHUNK ? bytes - off : MSG_CHUNK;
        W_MPI(MPI_Send((const char *)buf + off, (int)c, MPI_BYTE, 0, TAG_DATA, w->d.comm));
    }
done:
    return st;
}

static mm_status recv_bytes(const writer *w, int from, void *buf, int64_t bytes)
{
    mm_status st = MM_OK;
    for (int64_t off = 0; off < bytes; off += MSG_CHUNK) {
        int64_t c = bytes - off < MSG_CHUNK ? bytes - off : MSG_CHUNK;
        W_MPI(MPI_Recv((char *)buf + off, (int)c, MPI_BYTE, from, TAG_DATA, w->d.comm, MPI_STATUS_IGNORE));
    }
done:
    return st;
}

static int64_t column_bytes(const writer *w, const column *c, int r)
{
    return c->is_string ? info_of(w, r, c->bytes_key) : info_of(w, r, c->count_key) * (int64_t)sizeof(int64_t);
}

/* Rows of column c in chunk k (molecules or rejects). */
static int64_t piece_rows(const column *c, const mm_spool_chunk *x) { return c->count_key == I_N ? x->n : x->rejects; }

/* Non-root ranks: wait for rank 0's token, then send each chunk's piece as (rows, bytes)
 * and the bytes (token 0 = rank 0 failed, skip). A spool that cannot be read sends
 * empty pieces, so that rank 0 is never left waiting; the failure is returned. */
static mm_status serve_column(writer *w, const column *c)
{
    mm_status st = MM_OK, read_st = MM_OK;
    if (column_bytes(w, c, w->rank) == 0) return MM_OK;
    int go = 0;
    W_MPI(MPI_Recv(&go, 1, MPI_INT, 0, TAG_TOKEN, w->d.comm, MPI_STATUS_IGNORE));
    if (!go) goto done;
    for (int64_t k = 0; k < w->n_ix && read_st == MM_OK; k++) {
        int64_t rows = piece_rows(c, &w->ix[k]), n_col = mm_spool_col_rows(w->ms, &w->ix[k], c->col);
        int64_t bytes = n_col * (int64_t)mm_spool_row_bytes(w->ms, c->col);
        if (rows == 0) continue;
        const char *src = NULL;
        read_st = fetch(w, c->col, k, 0, n_col, &src);
        int64_t head[2] = {rows, read_st == MM_OK ? bytes : -1}; /* -1: rank 0 stops listening */
        W_MPI(MPI_Send(head, 2, MPI_INT64_T, 0, TAG_DATA, w->d.comm));
        if (read_st == MM_OK) MM_CALL_GOTO(st, send_bytes(w, src, bytes), done);
    }
done:
    return st != MM_OK ? st : read_st;
}

/* Rank 0: write rows [row0, row0 + cnt) of column c from buf. */
static mm_status write_piece(const writer *w, hid_t dset, hid_t mtype, const column *c, const char *buf,
                             int64_t bytes, int64_t row0, int64_t cnt)
{
    mm_status st = MM_OK;
    const char **ptrs = NULL;
    hid_t fsel = H5I_INVALID_HID, msp = H5I_INVALID_HID;
    const void *src = buf;
    if (c->is_string) {
        ptrs = mm_malloc((size_t)cnt * sizeof(char *));
        if (!ptrs) return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %lld string pointers", w->path, (long long)cnt);
        int64_t k = 0, pos = 0;
        while (pos < bytes && k < cnt) {
            ptrs[k++] = buf + pos;
            const char *z = memchr(buf + pos, '\0', (size_t)(bytes - pos));
            if (!z) break;
            pos = z - buf + 1;
        }
        if (k != cnt || pos != bytes) {
            st = MM_ERR(MM_ERR_INTERNAL, "%s: %s strings of rows %lld.. do not match their count %lld",
                        w->path, c->name, (long long)row0, (long long)cnt);
            goto done;
        }
        src = ptrs;
    }
    hsize_t start = (hsize_t)row0, count = (hsize_t)cnt;
    fsel = H5Dget_space(dset);
    msp = H5Screate_simple(1, &count, NULL);
    if (fsel < 0 || msp < 0 || H5Sselect_hyperslab(fsel, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
        H5Dwrite(dset, mtype, msp, fsel, H5P_DEFAULT, src) < 0)
        st = MM_H5ERR(MM_ERR_IO, "%s: cannot write %s (rows %lld..%lld)", w->tmp, c->name, (long long)row0,
                      (long long)(row0 + cnt));
done:
    if (ptrs) mm_free_sized(ptrs, (size_t)cnt * sizeof(char *));
    mm_h5_close_space(&fsel);
    mm_h5_close_space(&msp);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

/* Rank 0 writes a column in blocks of STR_BLOCK_ROWS rows of the file, whatever the
 * ranks and chunks the rows came from: HDF5 numbers the variable-length strings in its
 * global heap in an order that depends on how they were grouped into H5Dwrite calls, so
 * the same grouping is what keeps the file's bytes independent of rank count and chunk
 * size. */
#define STR_BLOCK_ROWS ((int64_t)16384)

typedef struct block {
    char *buf;                /* [cap] rows of the block: strings back to back, or int64 */
    size_t cap, used;
    int64_t rows, row0;       /* rows held; the block's first row in the file */
} block;

static mm_status block_flush(const writer *w, hid_t dset, hid_t mtype, const column *c, block *b)
{
    if (b->rows == 0) return MM_OK;
    MM_CALL(write_piece(w, dset, mtype, c, b->buf, (int64_t)b->used, b->row0, b->rows));
    b->row0 += b->rows;
    b->rows = 0;
    b->used = 0;
    return MM_OK;
}

/* Appends a piece of `rows` rows (`bytes` bytes) to the block, writing every full block. */
static mm_status block_add(const writer *w, hid_t dset, hid_t mtype, const column *c, block *b, const char *piece,
                           int64_t bytes, int64_t rows)
{
    int64_t pos = 0;
    while (rows > 0) {
        int64_t take = STR_BLOCK_ROWS - b->rows < rows ? STR_BLOCK_ROWS - b->rows : rows, span = 0;
        if (!c->is_string) {
            span = take * (int64_t)sizeof(int64_t);
        } else {
            for (int64_t i = 0; i < take; i++) {
                const char *z = pos + span < bytes ? memchr(piece + pos + span, '\0', (size_t)(bytes - pos - span)) : NULL;
                if (!z) return MM_ERR(MM_ERR_INTERNAL, "%s: %s: fewer strings than rows", w->path, c->name);
                span = z - (piece + pos) + 1;
            }
        }
        if (pos + span > bytes) return MM_ERR(MM_ERR_INTERNAL, "%s: %s: fewer bytes than rows", w->path, c->name);
        if (b->used + (size_t)span > b->cap) {
            size_t cap = 2 * (b->used + (size_t)span);
            char *nb = mm_malloc(cap);
            if (!nb) return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %zu bytes for %s", w->path, cap, c->name);
            if (b->used) memcpy(nb, b->buf, b->used);
            if (b->buf) mm_free_sized(b->buf, b->cap);
            b->buf = nb;
            b->cap = cap;
        }
        memcpy(b->buf + b->used, piece + pos, (size_t)span);
        b->used += (size_t)span;
        b->rows += take;
        pos += span;
        rows -= take;
        if (b->rows == STR_BLOCK_ROWS) MM_CALL(block_flush(w, dset, mtype, c, b));
    }
    return MM_OK;
}

/* Rank 0: create column c and fill it rank by rank, chunk by chunk. Keeps every rank's
 * protocol going after a failure (token 0, or receiving what was announced), so no rank
 * waits forever; returns the first failure. */
static mm_status gather_column(writer *w, hid_t file, const column *c, mm_status st)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    int64_t total = 0;
    for (int r = 0; r < w->size; r++) total += info_of(w, r, c->count_key);
    if (st == MM_OK) {
        type = c->is_string ? mm_h5_vlstr_type() : H5Tcopy(H5T_STD_I64LE);
        hsize_t d = (hsize_t)total;
        space = H5Screate_simple(1, &d, NULL);
        hid_t dcpl = untimed(H5P_DATASET_CREATE);
        if (type >= 0 && space >= 0 && dcpl >= 0) dset = H5Dcreate2(file, c->name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        mm_h5_close_plist(&dcpl);
        if (dset < 0) st = MM_H5ERR(MM_ERR_IO, "%s: cannot create dataset %s", w->tmp, c->name);
    }
    hid_t mtype = c->is_string ? type : H5T_NATIVE_INT64;
    const size_t rb = mm_spool_row_bytes(w->ms, c->col);
    block blk = {NULL, 0, 0, 0, 0};
    for (int r = 0; r < w->size; r++) {
        int64_t want = info_of(w, r, c->count_key), bytes = column_bytes(w, c, r);
        if (bytes == 0) continue;
        if (r == 0) {
            for (int64_t k = 0; k < w->n_ix && st == MM_OK; k++) {
                int64_t rows = piece_rows(c, &w->ix[k]), n_col = mm_spool_col_rows(w->ms, &w->ix[k], c->col);
                if (rows == 0) continue;
                const char *src = NULL;
                st = fetch(w, c->col, k, 0, n_col, &src);
                if (st == MM_OK) st = block_add(w, dset, mtype, c, &blk, src, n_col * (int64_t)rb, rows);
            }
            continue;
        }
        int64_t cap = info_of(w, r, c->max_key);
        char *got = NULL;
        if (st == MM_OK && (uint64_t)cap <= SIZE_MAX) {
            got = mm_malloc((size_t)cap);
            if (!got) st = MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %lld bytes of %s from rank %d",
                                  w->path, (long long)cap, c->name, r);
        }
        int go = got != NULL;
        int rc = MPI_Send(&go, 1, MPI_INT, r, TAG_TOKEN, w->d.comm);
        mm_status mst = MM_OK;
        if (rc != MPI_SUCCESS) mst = mm_error_mpi(rc, "MPI_Send(token)", __FILE__, __LINE__, __func__);
        for (int64_t done_rows = 0; go && mst == MM_OK && done_rows < want;) {
            int64_t head[2];
            rc = MPI_Recv(head, 2, MPI_INT64_T, r, TAG_DATA, w->d.comm, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) {
                mst = mm_error_mpi(rc, "MPI_Recv(piece)", __FILE__, __LINE__, __func__);
            } else if (head[1] < 0) { /* rank r could not read its spool; it returns why */
                mst = MM_ERR(MM_ERR_IO, "%s: rank %d could not read back its %s (see its message)", w->path, r, c->name);
            } else if (head[0] <= 0 || head[1] > cap || done_rows + head[0] > want) {
                mst = MM_ERR(MM_ERR_INTERNAL, "%s: rank %d sent a piece of %s that does not fit (%lld rows, %lld bytes)",
                             w->path, r, c->name, (long long)head[0], (long long)head[1]);
            } else {
                mst = recv_bytes(w, r, got, head[1]);
                if (mst == MM_OK && st == MM_OK) st = block_add(w, dset, mtype, c, &blk, got, head[1], head[0]);
                done_rows += head[0];
            }
        }
        if (mst != MM_OK && st == MM_OK) st = mst;
        if (got) mm_free_sized(got, (size_t)cap);
    }
    if (st == MM_OK) st = block_flush(w, dset, mtype, c, &blk);
    if (blk.buf) mm_free_sized(blk.buf, blk.cap);
    mm_h5_close_dset(&dset);
    mm_h5_close_space(&space);
    mm_h5_close_type(&type);
    return st;
}

static mm_status write_attributes(writer *w, hid_t file)
{
    const mm_molset *ms = w->ms;
    const mm_dataset_meta *m = w->meta;
    char made_by[160];
    /* no rank count here: the file's content must not depend on it */
    snprintf(made_by, sizeof made_by, "MMSA-C dataset writer (HDF5 %d.%d.%d)", H5_VERS_MAJOR, H5_VERS_MINOR,
             H5_VERS_RELEASE);
    MM_CALL(mm_h5_write_attr_str(file, "format", "mmsa-dataset", w->tmp));
    MM_CALL(mm_h5_write_attr_i64(file, "version", MM_DATASET_VERSION, w->tmp));
    MM_CALL(mm_h5_write_attr_i64(file, "n_molecules", w->N, w->tmp));
    MM_CALL(mm_h5_write_attr_str(file, "featurizer", m->featurizer, w->tmp));
    MM_CALL(mm_h5_write_attr_str(file, "source", m->source, w->tmp));
    MM_CALL(mm_h5_write_attr_str(file, "source_sha256", m->source_sha256 ? m->source_sha256 : "", w->tmp));
    MM_CALL(mm_h5_write_attr_str(file, "created_by", m->created_by ? m->created_by : made_by, w->tmp));
    if (ms->modalities & MM_MOD_LABELS) {
        hid_t d = H5Dopen2(file, "labels", H5P_DEFAULT);
        if (d < 0) return MM_H5ERR(MM_ERR_IO, "%s: cannot reopen /labels", w->tmp);
        mm_status st = mm_h5_write_attr_strs(d, "tasks", ms->task_names, ms->n_tasks, w->tmp);
        H5Dclose(d);
        MM_CALL(st);
    }
    return MM_OK;
}

static mm_status write_strings(writer *w, mm_status st)
{
    const mm_molset *ms = w->ms;
    column cols[5];
    int nc = 0;
    cols[nc++] = (column){"smiles", true, I_N, I_SMILES_BYTES, I_MAX_SMILES, K_SMILES};
    if (ms->modalities & MM_MOD_SCAFFOLD)
        cols[nc++] = (column){"scaffold", true, I_N, I_SCAF_BYTES, I_MAX_SCAF, K_SCAFFOLD};
    cols[nc++] = (column){"rejects/source_row", false, I_R, -1, I_MAX_RROW, K_REJ_ROW};
    cols[nc++] = (column){"rejects/smiles", true, I_R, I_RSMILES_BYTES, I_MAX_RSMILES, K_REJ_SMILES};
    cols[nc++] = (column){"rejects/reason", true, I_R, I_RREASON_BYTES, I_MAX_RREASON, K_REJ_REASON};
    if (w->rank != 0) {
        for (int i = 0; i < nc; i++) MM_CALL(serve_column(w, &cols[i]));
        return MM_OK;
    }
    hid_t file = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    if (st == MM_OK) {
        file = H5Fopen(w->tmp, H5F_ACC_RDWR, H5P_DEFAULT);
        if (file < 0) st = MM_H5ERR(MM_ERR_IO, "cannot reopen %s to write its strings", w->tmp);
    }
    if (st == MM_OK) {
        hid_t gcpl = untimed(H5P_GROUP_CREATE);
        grp = gcpl < 0 ? H5I_INVALID_HID : H5Gcreate2(file, "rejects", H5P_DEFAULT, gcpl, H5P_DEFAULT);
        mm_h5_close_plist(&gcpl);
        if (grp < 0) st = MM_H5ERR(MM_ERR_IO, "%s: cannot create group /rejects", w->tmp);
    }
    for (int i = 0; i < nc; i++) st = gather_column(w, file, &cols[i], st);
    if (st == MM_OK) st = write_attributes(w, file);
    mm_h5_close_group(&grp);
    if (file >= 0 && H5Fclose(file) < 0 && st == MM_OK)
        st = MM_H5ERR(MM_ERR_IO, "cannot close %s", w->tmp);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

/* ---------------------------------------------------------------- driver */

static mm_status write_from(const char *path, MPI_Comm comm, const mm_dataset_spool *sp, const mm_dataset_meta *meta)
{
    mm_h5_quiet();
    writer w;
    memset(&w, 0, sizeof w);
    w.path = path ? path : "(null)";
    w.sp = sp;
    w.ms = &sp->layout;
    w.ix = sp->n_ix > 0 ? sp->ix : &w.empty; /* at least one chunk: the last rank's closing offsets */
    w.n_ix = sp->n_ix > 0 ? sp->n_ix : 1;
    w.meta = meta;
    w.mpi = comm != MPI_COMM_NULL;
    w.size = 1;
    w.d.comm = MPI_COMM_NULL;
    mm_status st = MM_OK, local_st;
    bool tmp_made = false;
    if (w.mpi) {
        MM_CALL(mm_dist_init(&w.d, comm));
        w.rank = w.d.rank;
        w.size = w.d.size;
    }
    int64_t mine[I_LEN] = {0};

    /* phase 1: local checks, agreed */
    local_st = local_prepare(&w, mine);
    int code = (int)local_st, worst = code; /* the failing rank's code reaches every rank */
    if (w.mpi) W_MPI(MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, w.d.comm));
    if (worst != MM_OK) {
        st = local_st != MM_OK ? local_st
                               : MM_ERR((mm_status)worst, "mm_dataset_write %s: another rank could not prepare its part",
                                        w.path);
        goto done;
    }
    /* phase 2: counts */
    if (w.mpi)
        W_MPI(MPI_Allgather(mine, I_LEN, MPI_INT64_T, w.info, I_LEN, MPI_INT64_T, w.d.comm));
    else
        memcpy(w.info, mine, sizeof mine);
    MM_CALL_GOTO(st, check_global(&w), done); /* same outcome on every rank: same inputs */

    /* the temporary name is rank 0's */
    int len = 0;
    if (w.rank == 0) {
        len = snprintf(w.tmp, sizeof w.tmp, "%s.tmp.%ld", path, (long)getpid());
        if (len >= (int)sizeof w.tmp) len = -1;
    }
    if (w.mpi) W_MPI(MPI_Bcast(&len, 1, MPI_INT, 0, w.d.comm));
    if (len < 0) {
        st = MM_ERR(MM_ERR_ARG, "mm_dataset_write: path too long: %s", w.path);
        goto done;
    }
    if (w.mpi) W_MPI(MPI_Bcast(w.tmp, len + 1, MPI_CHAR, 0, w.d.comm));

    /* phase 3: collective numeric datasets */
    tmp_made = true;
    local_st = write_numeric(&w);
    code = (int)local_st;
    worst = code;
    if (w.mpi) W_MPI(MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, w.d.comm));
    if (worst != MM_OK) {
        st = local_st != MM_OK ? local_st
                               : MM_ERR((mm_status)worst, "mm_dataset_write %s: another rank failed writing", w.path);
        goto done;
    }

    /* phase 4: strings and attributes on rank 0, then the rename */
    st = write_strings(&w, MM_OK);
    if (w.rank == 0 && st == MM_OK && rename(w.tmp, path) != 0)
        st = MM_ERR(MM_ERR_IO, "cannot rename %s to %s: %s", w.tmp, path, strerror(errno));
    if (w.rank == 0 && st == MM_OK) tmp_made = false;
    code = (int)st;
    if (w.mpi) {
        int rc = MPI_Bcast(&code, 1, MPI_INT, 0, w.d.comm);
        if (rc != MPI_SUCCESS && st == MM_OK) st = mm_error_mpi(rc, "MPI_Bcast", __FILE__, __LINE__, __func__);
    }
    if (st == MM_OK && code != MM_OK)
        st = MM_ERR((mm_status)code, "mm_dataset_write %s: rank 0 could not finish the file (see rank 0's error)", w.path);
done:
    if (st != MM_OK && tmp_made && w.rank == 0) remove(w.tmp);
    if (w.info) mm_free_sized(w.info, (size_t)w.size * I_LEN * sizeof(int64_t));
    if (w.scratch) mm_free_sized(w.scratch, w.cap_scratch);
    if (w.mpi) mm_dist_destroy(&w.d);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

mm_status mm_dataset_write(const char *path, MPI_Comm comm, const mm_molset *local, const mm_dataset_meta *meta)
{
    if (!local) {
        mm_status st = MM_ERR(MM_ERR_ARG, "mm_dataset_write: NULL argument");
        if (comm != MPI_COMM_NULL) { /* the other ranks are in the writer's first agreement */
            int code = (int)st, worst = code;
            MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, comm);
        }
        return st;
    }
    /* the caller's set as a spool of one chunk that stays in memory (no copy) */
    mm_dataset_spool view;
    memset(&view, 0, sizeof view);
    view.layout = *local;
    view.mem = local;
    view.fd = -1;
    mm_spool_chunk one = mm_spool_chunk_of(local);
    view.ix = &one;
    view.n_ix = 1;
    return write_from(path, comm, &view, meta);
}

mm_status mm_dataset_write_spool(const char *path, MPI_Comm comm, const mm_dataset_spool *spool,
                                 const mm_dataset_meta *meta)
{
    if (!spool || spool->fd < 0) {
        mm_status st = MM_ERR(MM_ERR_ARG, "mm_dataset_write_spool: NULL spool");
        if (comm != MPI_COMM_NULL) {
            int code = (int)st, worst = code;
            MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, comm);
        }
        return st;
    }
    return write_from(path, comm, spool, meta);
}
