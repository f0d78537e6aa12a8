/* dataset_write.c: the collective writer of a dataset file (see dataset.h).
 *
 * Phases, each ending with every rank knowing the outcome:
 *  1. local checks and allocations, then one MPI_Allreduce of "ok" (so a rank that
 *     failed alone never leaves the others waiting in a collective);
 *  2. MPI_Allgather of the per-rank counts; offsets rebased to global;
 *  3. collective: numeric datasets written with MPI-IO, collective transfers, in rounds
 *     of at most io_block_bytes per rank (a rank with nothing left selects none);
 *     closed, then the status is agreed with MPI_Allreduce;
 *  4. rank 0 alone reopens the file and writes the strings (variable-length strings
 *     cannot go through MPI-IO in HDF5 1.10), receiving rank r's strings only when
 *     it is their turn, and the attributes; renames; broadcasts the outcome. */
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

/* Per-rank facts exchanged in phase 2. */
enum {
    I_N, I_A, I_B, I_R, I_MOD, I_H, I_W, I_T, I_TASKHASH,
    I_SMILES_BYTES, I_SCAF_BYTES, I_RSMILES_BYTES, I_RREASON_BYTES, I_LEN
};

#define MSG_CHUNK ((int64_t)1 << 30) /* bytes per MPI message: always fits an int */
enum { TAG_TOKEN = 101, TAG_DATA = 102 };

typedef struct writer {
    const char *path;
    const mm_molset *ms;
    const mm_dataset_meta *meta;
    bool mpi;
    mm_dist d;
    int rank, size;
    char tmp[PATH_MAX + 64];
    int64_t *info;            /* [size, I_LEN] */
    int64_t N, A, B, R;       /* global counts */
    int64_t n0, a0, b0;       /* this rank's first molecule, atom, bond */
    int64_t *atom_off;        /* [n+1] rebased to global */
    int64_t *bond_off;        /* [n+1] */
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

/* ---------------------------------------------------------------- phase 1-2 */

static mm_status local_prepare(writer *w, int64_t mine[I_LEN])
{
    const mm_molset *ms = w->ms;
    MM_CHECK_ARG(ms && w->meta && w->path && w->path[0], "mm_dataset_write: NULL argument");
    MM_CHECK_ARG(w->meta->featurizer && w->meta->source,
                 "mm_dataset_write %s: meta.featurizer and meta.source are required", w->path);
    if (mm_molset_validate(ms) != MM_OK) {
        char why[600];
        snprintf(why, sizeof why, "%s", mm_error_message());
        return MM_ERR(MM_ERR_ARG, "mm_dataset_write %s: %s", w->path, why);
    }
    mine[I_N] = ms->n;
    mine[I_A] = ms->n_atoms;
    mine[I_B] = ms->n_bonds;
    mine[I_R] = ms->n_rejects;
    mine[I_MOD] = ms->modalities;
    mine[I_H] = ms->image_h;
    mine[I_W] = ms->image_w;
    mine[I_T] = ms->n_tasks;
    mine[I_TASKHASH] = (int64_t)(task_hash(ms) >> 1);
    mine[I_SMILES_BYTES] = ms->smiles.nbytes;
    mine[I_SCAF_BYTES] = (ms->modalities & MM_MOD_SCAFFOLD) ? ms->scaffold.nbytes : 0;
    mine[I_RSMILES_BYTES] = ms->reject_smiles.nbytes;
    mine[I_RREASON_BYTES] = ms->reject_reason.nbytes;
    size_t ob = (size_t)(ms->n + 1) * sizeof(int64_t);
    w->atom_off = mm_malloc(ob);
    w->bond_off = mm_malloc(ob);
    w->info = mm_calloc((size_t)w->size, I_LEN * sizeof(int64_t));
    if (!w->atom_off || !w->bond_off || !w->info)
        return MM_ERR(MM_ERR_NOMEM, "mm_dataset_write %s: cannot allocate the offsets", w->path);
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
    int64_t sum[4] = {0, 0, 0, 0};
    for (int r = 0; r < w->size; r++)
        for (int k = 0; k < 4; k++) {
            int64_t v = info_of(w, r, k);
            if (r == w->rank) {
                if (k == I_N) w->n0 = sum[k];
                if (k == I_A) w->a0 = sum[k];
                if (k == I_B) w->b0 = sum[k];
            }
            if (v < 0 || sum[k] > INT64_MAX / 16 - v)
                return MM_ERR(MM_ERR_RANGE, "mm_dataset_write %s: total counts overflow", w->path);
            sum[k] += v;
        }
    w->N = sum[I_N];
    w->A = sum[I_A];
    w->B = sum[I_B];
    w->R = sum[I_R];
    /* largest dataset: N*3*H*W bytes of images; every size must fit hsize_t and size_t */
    const mm_molset *ms = w->ms;
    double img = (ms->modalities & MM_MOD_IMAGE) ? (double)w->N * mm_ds_image_bytes(ms->image_h, ms->image_w) : 0;
    double lab = (double)w->N * ms->n_tasks * 4.0;
    if (img > 9.0e18 || lab > 9.0e18 || (double)w->A * 12.0 > 9.0e18)
        return MM_ERR(MM_ERR_RANGE, "mm_dataset_write %s: dataset sizes overflow", w->path);
    for (int64_t i = 0; i <= ms->n; i++) {
        w->atom_off[i] = ms->atom_offset[i] + w->a0;
        w->bond_off[i] = ms->bond_offset[i] + w->b0;
    }
    return MM_OK;
}

/* ---------------------------------------------------------------- phase 3 */

typedef struct part {
    const char *name;       /* path in the file */
    hid_t ftype, mtype;
    int ndim;
    hsize_t dims[4];        /* global shape; dims[0] rows */
    const void *buf;        /* this rank's rows, row-major */
    int64_t row0, rows;     /* placed at global rows [row0, row0 + rows) */
    int64_t max_rows;       /* largest `rows` of any rank: fixes the number of rounds */
} part;

static mm_status write_part(const writer *w, hid_t file, hid_t dcpl, hid_t dxpl, const part *p)
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
    size_t row_elems = 1;
    for (int k = 1; k < p->ndim; k++) row_elems *= p->dims[k];
    size_t row_bytes = row_elems * H5Tget_size(p->mtype);
    int64_t per_round = (int64_t)(io_block_bytes / (row_bytes ? row_bytes : 1));
    if (per_round < 1) per_round = 1;
    int64_t rounds = (p->max_rows + per_round - 1) / per_round;
    for (int64_t k = 0; k < rounds; k++) {
        int64_t first = k * per_round;
        int64_t cnt = p->rows - first;
        if (cnt > per_round) cnt = per_round;
        if (cnt < 0) cnt = 0;
        fsel = H5Dget_space(dset);
        hsize_t start[4] = {0, 0, 0, 0}, count[4];
        memcpy(count, p->dims, sizeof count);
        start[0] = (hsize_t)(p->row0 + first);
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
        const char *src = (const char *)p->buf + (size_t)first * row_bytes;
        static const char empty[8];
        if (e < 0 || H5Dwrite(dset, p->mtype, msp, fsel, dxpl, cnt > 0 ? (const void *)src : empty) < 0) {
            st = MM_H5ERR(MM_ERR_IO, "%s: cannot write dataset %s (rows %lld..%lld)", w->tmp, p->name,
                          (long long)(p->row0 + first), (long long)(p->row0 + first + cnt));
            goto done;
        }
        mm_h5_close_space(&fsel);
        mm_h5_close_space(&msp);
    }
done:
    mm_h5_close_space(&fsel);
    mm_h5_close_space(&msp);
    mm_h5_close_space(&space);
    mm_h5_close_dset(&dset);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static int64_t max_over_ranks(const writer *w, int k, bool plus_one_on_last)
{
    int64_t m = 0;
    for (int r = 0; r < w->size; r++) {
        int64_t v = info_of(w, r, k) + (plus_one_on_last && r == w->size - 1 ? 1 : 0);
        if (v > m) m = v;
    }
    return m;
}

static mm_status write_numeric(writer *w)
{
    mm_status st = MM_OK;
    const mm_molset *ms = w->ms;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    hid_t dcpl = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (fapl < 0 || dxpl < 0 || dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) {
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
    const int64_t n = ms->n, last = w->rank == w->size - 1;
    const int64_t mxn = max_over_ranks(w, I_N, false), mxa = max_over_ranks(w, I_A, false);
    const int64_t mxb = max_over_ranks(w, I_B, false), mxo = max_over_ranks(w, I_N, true);
    const hsize_t N = (hsize_t)w->N, A = (hsize_t)w->A, B = (hsize_t)w->B;
    part parts[16];
    int np = 0;
    parts[np++] = (part){"source_row", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N}, ms->source_row, w->n0, n, mxn};
    /* the last rank also writes the closing offset (A or B) */
    parts[np++] = (part){"atom_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N + 1}, w->atom_off, w->n0, n + last, mxo};
    parts[np++] = (part){"atom_feat", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {A, MM_DS_ATOM_FEATS}, ms->atom_feat, w->a0, ms->n_atoms, mxa};
    parts[np++] = (part){"bond_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, {N + 1}, w->bond_off, w->n0, n + last, mxo};
    parts[np++] = (part){"bond_index", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, {B, 2}, ms->bond_index, w->b0, ms->n_bonds, mxb};
    parts[np++] = (part){"bond_feat", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {B, MM_DS_BOND_FEATS}, ms->bond_feat, w->b0, ms->n_bonds, mxb};
    if (ms->modalities & MM_MOD_CONFORMER) {
        grp = H5Gcreate2(file, "conformer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (grp < 0) {
            st = MM_H5ERR(MM_ERR_IO, "%s: cannot create group /conformer", w->tmp);
            goto done;
        }
        parts[np++] = (part){"conformer/xyz", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {A, 3}, ms->xyz, w->a0, ms->n_atoms, mxa};
        parts[np++] = (part){"conformer/ok", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, {N}, ms->conf_ok, w->n0, n, mxn};
    }
    if (ms->modalities & MM_MOD_IMAGE)
        parts[np++] = (part){"image", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4,
                             {N, MM_DS_IMAGE_CHANNELS, (hsize_t)ms->image_h, (hsize_t)ms->image_w},
                             ms->image, w->n0, n, mxn};
    if (ms->modalities & MM_MOD_FINGERPRINT)
        parts[np++] = (part){"fingerprint", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, {N, MM_DS_FP_BYTES},
                             ms->fingerprint, w->n0, n, mxn};
    if (ms->modalities & MM_MOD_LABELS)
        parts[np++] = (part){"labels", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, {N, (hsize_t)ms->n_tasks},
                             ms->labels, w->n0, n, mxn};
    for (int i = 0; i < np; i++) MM_CALL_GOTO(st, write_part(w, file, dcpl, dxpl, &parts[i]), done);
done:
    mm_h5_close_group(&grp);
    if (file >= 0 && H5Fclose(file) < 0 && st == MM_OK)
        st = MM_H5ERR(MM_ERR_IO, "cannot close %s (temporary file of %s)", w->tmp, w->path);
    mm_h5_close_plist(&fapl);
    mm_h5_close_plist(&dxpl);
    mm_h5_close_plist(&dcpl);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

/* ---------------------------------------------------------------- phase 4 */

/* One block of data rank 0 writes in the serial phase, one piece per rank. */
typedef struct column {
    const char *name;
    bool is_string;           /* NUL-terminated strings; else int64 rows */
    int count_key;            /* I_N or I_R: rows per rank */
    int bytes_key;            /* bytes per rank (strings); -1 for int64 rows */
    const void *local;        /* this rank's bytes */
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

/* Non-root ranks: wait for rank 0's token, then send (token 0 = rank 0 failed, skip). */
static mm_status serve_column(const writer *w, const column *c)
{
    mm_status st = MM_OK;
    int64_t bytes = column_bytes(w, c, w->rank);
    if (bytes == 0) return MM_OK;
    int go = 0;
    W_MPI(MPI_Recv(&go, 1, MPI_INT, 0, TAG_TOKEN, w->d.comm, MPI_STATUS_IGNORE));
    if (go) MM_CALL_GOTO(st, send_bytes(w, c->local, bytes), done);
done:
    return st;
}

/* Rank 0: write rank r's rows [row0, row0 + cnt) of column c from buf. */
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

/* Rank 0: create column c and fill it rank by rank. Keeps every rank's protocol going
 * after a failure (token 0), so no rank waits forever; returns the first failure. */
static mm_status gather_column(writer *w, hid_t file, const column *c, mm_status st)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    int64_t total = 0;
    for (int r = 0; r < w->size; r++) total += info_of(w, r, c->count_key);
    if (st == MM_OK) {
        type = c->is_string ? mm_h5_vlstr_type() : H5Tcopy(H5T_STD_I64LE);
        hsize_t d = (hsize_t)total;
        space = H5Screate_simple(1, &d, NULL);
        if (type >= 0 && space >= 0) dset = H5Dcreate2(file, c->name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (dset < 0) st = MM_H5ERR(MM_ERR_IO, "%s: cannot create dataset %s", w->tmp, c->name);
    }
    hid_t mtype = c->is_string ? type : H5T_NATIVE_INT64;
    int64_t row0 = 0;
    for (int r = 0; r < w->size; r++) {
        int64_t cnt = info_of(w, r, c->count_key), bytes = column_bytes(w, c, r);
        if (bytes > 0) {
            const char *buf = c->local;
            char *got = NULL;
            if (r != 0) {
                if (st == MM_OK && (uint64_t)bytes <= SIZE_MAX) {
                    got = mm_malloc((size_t)bytes);
                    if (!got) st = MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate %lld bytes of %s from rank %d",
                                          w->path, (long long)bytes, c->name, r);
                }
                int go = got != NULL;
                int rc = MPI_Send(&go, 1, MPI_INT, r, TAG_TOKEN, w->d.comm);
                mm_status mst = MM_OK;
                if (rc != MPI_SUCCESS) mst = mm_error_mpi(rc, "MPI_Send(token)", __FILE__, __LINE__, __func__);
                else if (go) mst = recv_bytes(w, r, got, bytes);
                if (mst != MM_OK && st == MM_OK) st = mst;
                buf = got;
            }
            if (st == MM_OK) st = write_piece(w, dset, mtype, c, buf, bytes, row0, cnt);
            if (got) mm_free_sized(got, (size_t)bytes);
        }
        row0 += cnt;
    }
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
    cols[nc++] = (column){"smiles", true, I_N, I_SMILES_BYTES, ms->smiles.chars};
    if (ms->modalities & MM_MOD_SCAFFOLD) cols[nc++] = (column){"scaffold", true, I_N, I_SCAF_BYTES, ms->scaffold.chars};
    cols[nc++] = (column){"rejects/source_row", false, I_R, -1, ms->reject_row};
    cols[nc++] = (column){"rejects/smiles", true, I_R, I_RSMILES_BYTES, ms->reject_smiles.chars};
    cols[nc++] = (column){"rejects/reason", true, I_R, I_RREASON_BYTES, ms->reject_reason.chars};
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
        grp = H5Gcreate2(file, "rejects", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
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

mm_status mm_dataset_write(const char *path, MPI_Comm comm, const mm_molset *local, const mm_dataset_meta *meta)
{
    mm_h5_quiet();
    writer w;
    memset(&w, 0, sizeof w);
    w.path = path ? path : "(null)";
    w.ms = local;
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
    if (w.atom_off) mm_free_sized(w.atom_off, (size_t)(local->n + 1) * sizeof(int64_t));
    if (w.bond_off) mm_free_sized(w.bond_off, (size_t)(local->n + 1) * sizeof(int64_t));
    if (w.info) mm_free_sized(w.info, (size_t)w.size * I_LEN * sizeof(int64_t));
    if (w.mpi) mm_dist_destroy(&w.d);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}
