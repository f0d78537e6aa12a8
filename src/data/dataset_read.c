/* dataset_read.c: opening, validating and reading a dataset file (see dataset.h).
 *
 * Collective mode (opened on a communicator): every rank issues the same sequence of
 * H5Dread calls for a read, each with its own selection. A rank whose arguments are
 * wrong, or whose allocation or read failed, keeps issuing the remaining calls with
 * an empty selection and reports its error at the end, so no rank is left waiting. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "ds_internal.h"
#include "mmsa/alloc.h"
#include "mmsa/dist.h"

typedef enum {
    D_SMILES, D_SOURCE_ROW, D_ATOM_OFFSET, D_ATOM_FEAT, D_BOND_OFFSET, D_BOND_INDEX, D_BOND_FEAT,
    D_XYZ, D_OK, D_IMAGE, D_FP, D_SCAFFOLD, D_LABELS,
    D_NMR13C_OFF, D_NMR13C_SHIFT, D_NMR13C_ATOM, D_NMR13C_OK, /* then the same four for 1H */
    D_REJ_ROW = D_NMR13C_OFF + 4 * MM_NMR_KINDS, D_REJ_SMILES, D_REJ_REASON, D_COUNT
} dset_id;
/* The four datasets of spectrum kind k. */
#define D_NMR_OFF(k) (D_NMR13C_OFF + 4 * (k))
#define D_NMR_SHIFT(k) (D_NMR13C_SHIFT + 4 * (k))
#define D_NMR_ATOM(k) (D_NMR13C_ATOM + 4 * (k))
#define D_NMR_OK(k) (D_NMR13C_OK + 4 * (k))

typedef struct {
    const char *name;
    H5T_class_t cls;
    int ndim;
} dset_spec;

static const dset_spec specs[D_COUNT] = {
    {"smiles", H5T_STRING, 1},          {"source_row", H5T_INTEGER, 1},
    {"atom_offset", H5T_INTEGER, 1},    {"atom_feat", H5T_INTEGER, 2},
    {"bond_offset", H5T_INTEGER, 1},    {"bond_index", H5T_INTEGER, 2},
    {"bond_feat", H5T_INTEGER, 2},      {"conformer/xyz", H5T_FLOAT, 2},
    {"conformer/ok", H5T_INTEGER, 1},   {"image", H5T_INTEGER, 4},
    {"fingerprint", H5T_INTEGER, 2},    {"scaffold", H5T_STRING, 1},
    {"labels", H5T_FLOAT, 2},
    {"nmr13c/peak_offset", H5T_INTEGER, 1}, {"nmr13c/shift", H5T_FLOAT, 1},
    {"nmr13c/atom", H5T_INTEGER, 1},        {"nmr13c/ok", H5T_INTEGER, 1},
    {"nmr1h/peak_offset", H5T_INTEGER, 1},  {"nmr1h/shift", H5T_FLOAT, 1},
    {"nmr1h/atom", H5T_INTEGER, 1},         {"nmr1h/ok", H5T_INTEGER, 1},
    {"rejects/source_row", H5T_INTEGER, 1},
    {"rejects/smiles", H5T_STRING, 1},  {"rejects/reason", H5T_STRING, 1},
};

struct mm_dataset {
    mm_dataset_info info;
    hid_t file, dxpl;
    hid_t dset[D_COUNT];          /* H5I_INVALID_HID when absent */
    hsize_t dims[D_COUNT][4];
    bool mpi;
    mm_dist d;
    int64_t *atom_offset;         /* [N+1] */
    int64_t *bond_offset;         /* [N+1] */
    int64_t *peak_offset[MM_NMR_KINDS]; /* [N+1] of the spectrum kinds the file has, else NULL */
    int64_t n_peaks[MM_NMR_KINDS];
};

/* A run of consecutive rows [start, start + len) of some dataset. */
typedef struct {
    int64_t start, len;
} run;

#define MOL_BLOCK 4096 /* molecules per read in verify and inspect */

/* ---------------------------------------------------------------- open */

static void info_free(mm_dataset_info *in)
{
    mm_ds_strfree(&in->path);
    mm_ds_strfree(&in->format);
    mm_ds_strfree(&in->featurizer);
    mm_ds_strfree(&in->source);
    mm_ds_strfree(&in->source_sha256);
    mm_ds_strfree(&in->created_by);
    mm_ds_free_names(&in->task_names, in->n_tasks);
}

void mm_dataset_close(mm_dataset **pds)
{
    if (!pds || !*pds) return;
    mm_dataset *ds = *pds;
    for (int i = 0; i < D_COUNT; i++) mm_h5_close_dset(&ds->dset[i]);
    mm_h5_close_plist(&ds->dxpl);
    if (ds->file >= 0) H5Fclose(ds->file);
    if (ds->atom_offset || ds->bond_offset) { /* n_molecules is then the validated row count */
        size_t ob = (size_t)(ds->info.n_molecules + 1) * sizeof(int64_t);
        if (ds->atom_offset) mm_free_sized(ds->atom_offset, ob);
        if (ds->bond_offset) mm_free_sized(ds->bond_offset, ob);
        for (int k = 0; k < MM_NMR_KINDS; k++)
            if (ds->peak_offset[k]) mm_free_sized(ds->peak_offset[k], ob);
    }
    info_free(&ds->info);
    if (ds->mpi) mm_dist_destroy(&ds->d);
    mm_free_sized(ds, sizeof *ds);
    *pds = NULL;
}

const mm_dataset_info *mm_dataset_get_info(const mm_dataset *ds) { return &ds->info; }
const int64_t *mm_dataset_atom_offset(const mm_dataset *ds) { return ds->atom_offset; }
const int64_t *mm_dataset_bond_offset(const mm_dataset *ds) { return ds->bond_offset; }

static mm_status open_file(mm_dataset *ds, const char *path)
{
    mm_status st = MM_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    ds->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (fapl < 0 || ds->dxpl < 0) {
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot make HDF5 property lists", path);
        goto done;
    }
    if (ds->mpi && (H5Pset_fapl_mpio(fapl, ds->d.comm, MPI_INFO_NULL) < 0 ||
                    H5Pset_all_coll_metadata_ops(fapl, true) < 0 ||
                    H5Pset_dxpl_mpio(ds->dxpl, H5FD_MPIO_COLLECTIVE) < 0)) {
        st = MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot set up MPI-IO", path);
        goto done;
    }
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (ds->file < 0) {
        char h5[400];
        mm_h5_take_error(h5, sizeof h5);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            st = MM_ERR(MM_ERR_IO, "cannot open dataset file %s: %s", path, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            st = MM_ERR(MM_ERR_IO, "cannot open dataset file %s: it is a directory", path);
        } else {
            htri_t is5 = H5Fis_hdf5(path);
            H5Eclear2(H5E_DEFAULT);
            if (is5 <= 0)
                st = MM_ERR(MM_ERR_FORMAT, "%s is not an HDF5 file (no HDF5 signature)", path);
            else
                st = MM_ERR(MM_ERR_FORMAT, "corrupt HDF5 file %s (truncated or damaged): %s", path,
                            h5[0] ? h5 : "cannot open");
        }
        mm_error_hint("check the path; recreate the file with mmsa_prep if it was cut short");
    }
done:
    mm_h5_close_plist(&fapl);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static mm_status read_attributes(mm_dataset *ds)
{
    mm_dataset_info *in = &ds->info;
    const char *p = in->path;
    bool present;
    MM_CALL(mm_h5_read_attr_str(ds->file, "/", "format", false, p, &in->format));
    if (strcmp(in->format, "mmsa-dataset") != 0 && strcmp(in->format, "mmsa-golden") != 0) {
        mm_status st = MM_ERR(MM_ERR_FORMAT, "%s: format attribute is \"%s\", expected \"mmsa-dataset\" or \"mmsa-golden\"",
                              p, in->format);
        mm_error_hint("this file was not written by mmsa_prep");
        return st;
    }
    MM_CALL(mm_h5_read_attr_i64(ds->file, "/", "version", p, &present, &in->version));
    if (!present) return MM_ERR(MM_ERR_FORMAT, "%s: root attribute version is missing", p);
    if (in->version < 1 || in->version > MM_DATASET_VERSION)
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset version %lld, this build reads version 1..%d", p,
                      (long long)in->version, MM_DATASET_VERSION);
    MM_CALL(mm_h5_read_attr_i64(ds->file, "/", "n_molecules", p, &present, &in->n_molecules));
    if (!present) return MM_ERR(MM_ERR_FORMAT, "%s: root attribute n_molecules is missing", p);
    if (in->n_molecules < 0 || in->n_molecules > INT64_MAX / 16) { /* N + 1 offsets must stay countable */
        mm_status e = MM_ERR(MM_ERR_FORMAT, "%s: root attribute n_molecules is %lld, expected 0..2^59", p,
                             (long long)in->n_molecules);
        in->n_molecules = 0;
        return e;
    }
    MM_CALL(mm_h5_read_attr_str(ds->file, "/", "featurizer", false, p, &in->featurizer));
    MM_CALL(mm_h5_read_attr_str(ds->file, "/", "source", false, p, &in->source));
    MM_CALL(mm_h5_read_attr_str(ds->file, "/", "source_sha256", false, p, &in->source_sha256));
    MM_CALL(mm_h5_read_attr_str(ds->file, "/", "created_by", false, p, &in->created_by));
    return MM_OK;
}

/* Opens dataset `id` if it exists (required: missing is an error), checks its class and rank. */
static mm_status open_dset(mm_dataset *ds, dset_id id, bool required)
{
    const dset_spec *s = &specs[id];
    const char *p = ds->info.path;
    /* H5Lexists needs every parent of the path to exist */
    char parent[64];
    const char *slash = strchr(s->name, '/');
    htri_t ex = 1;
    if (slash) {
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - s->name), s->name);
        ex = H5Lexists(ds->file, parent, H5P_DEFAULT);
    }
    if (ex > 0) ex = H5Lexists(ds->file, s->name, H5P_DEFAULT);
    if (ex < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot look up /%s", p, s->name);
    if (!ex) {
        if (required) {
            mm_status st = MM_ERR(MM_ERR_FORMAT, "%s: missing dataset /%s", p, s->name);
            mm_error_hint("the file is incomplete or not an MMSA dataset; recreate it with mmsa_prep");
            return st;
        }
        return MM_OK;
    }
    hid_t o = H5Oopen(ds->file, s->name, H5P_DEFAULT);
    if (o < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot open /%s", p, s->name);
    H5I_type_t ot = H5Iget_type(o);
    H5Oclose(o);
    if (ot != H5I_DATASET) return MM_ERR(MM_ERR_FORMAT, "%s: /%s is not a dataset", p, s->name);
    hid_t d = H5Dopen2(ds->file, s->name, H5P_DEFAULT);
    if (d < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot open dataset /%s", p, s->name);
    ds->dset[id] = d;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd == s->ndim && nd <= 4) H5Sget_simple_extent_dims(sp, ds->dims[id], NULL);
    mm_h5_close_type(&t);
    mm_h5_close_space(&sp);
    static const char *cls_name[] = {"integer", "float", "time", "string", "bitfield", "opaque",
                                     "compound", "reference", "enum", "vlen", "array"};
    if (cls != s->cls)
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset /%s has element class %s, expected %s", p, s->name,
                      cls >= 0 && cls <= H5T_ARRAY ? cls_name[cls] : "unknown", cls_name[s->cls]);
    if (nd != s->ndim)
        return MM_ERR(MM_ERR_FORMAT, "%s: dataset /%s has %d dimensions, expected %d", p, s->name, nd, s->ndim);
    return MM_OK;
}

static mm_status expect_dims(const mm_dataset *ds, dset_id id, const int64_t *want, const char *shape)
{
    const hsize_t *d = ds->dims[id];
    for (int k = 0; k < specs[id].ndim; k++)
        if (want[k] >= 0 && d[k] != (hsize_t)want[k]) {
            char got[96];
            int n = snprintf(got, sizeof got, "[%llu", (unsigned long long)d[0]);
            for (int j = 1; j < specs[id].ndim; j++)
                n += snprintf(got + n, sizeof got - (size_t)n, ", %llu", (unsigned long long)d[j]);
            snprintf(got + n, sizeof got - (size_t)n, "]");
            return MM_ERR(MM_ERR_FORMAT, "%s: dataset /%s has shape %s, expected %s", ds->info.path,
                          specs[id].name, got, shape);
        }
    return MM_OK;
}

/* Select rows of dataset id (all columns): the union of runs, or nothing. Sets *msp to
 * a memory space of exactly the selected elements. */
static mm_status select_rows(const mm_dataset *ds, dset_id id, const run *runs, int64_t nruns, hid_t *fsel,
                             hid_t *msp)
{
    const int nd = specs[id].ndim;
    int64_t total = 0;
    *fsel = H5Dget_space(ds->dset[id]);
    if (*fsel < 0) return MM_H5ERR(MM_ERR_FORMAT, "%s: cannot get the space of /%s", ds->info.path, specs[id].name);
    herr_t e = H5Sselect_none(*fsel);
    for (int64_t r = 0; r < nruns && e >= 0; r++) {
        if (runs[r].len == 0) continue;
        hsize_t start[4] = {0, 0, 0, 0}, count[4];
        memcpy(count, ds->dims[id], sizeof count);
        start[0] = (hsize_t)runs[r].start;
        count[0] = (hsize_t)runs[r].len;
        e = H5Sselect_hyperslab(*fsel, H5S_SELECT_OR, start, NULL, count, NULL);
        total += runs[r].len;
    }
    hsize_t m = (hsize_t)(total > 0 ? total : 1);
    for (int k = 1; k < nd; k++) m *= ds->dims[id][k];
    *msp = H5Screate_simple(1, &m, NULL);
    if (e >= 0 && *msp >= 0 && total == 0) e = H5Sselect_none(*msp);
    if (e < 0 || *msp < 0)
        return MM_H5ERR(MM_ERR_INTERNAL, "%s: cannot select rows of /%s", ds->info.path, specs[id].name);
    return MM_OK;
}

/* One collective-safe read of the rows `runs` of dataset id into buf (numeric) or
 * strings (string datasets). skip = read nothing but join the call. */
static mm_status read_rows(mm_dataset *ds, dset_id id, const run *runs, int64_t nruns, bool skip,
                           hid_t mtype, void *buf, mm_strings *strings, int64_t n_strings)
{
    hid_t fsel = H5I_INVALID_HID, msp = H5I_INVALID_HID;
    mm_status st = select_rows(ds, id, runs, skip ? 0 : nruns, &fsel, &msp);
    if (st == MM_OK) {
        if (strings) {
            st = mm_h5_read_strings(ds->dset[id], msp, fsel, ds->dxpl, skip ? 0 : n_strings, strings,
                                    ds->info.path, specs[id].name);
        } else {
            static char dummy[64];
            if (H5Dread(ds->dset[id], mtype, msp, fsel, ds->dxpl, skip || !buf ? (void *)dummy : buf) < 0)
                st = MM_H5ERR(MM_ERR_FORMAT, "%s: cannot read dataset /%s", ds->info.path, specs[id].name);
        }
    }
    mm_h5_close_space(&fsel);
    mm_h5_close_space(&msp);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static mm_status check_offsets(const mm_dataset *ds, dset_id id, const int64_t *off, int64_t n, int64_t total,
                               bool nonempty)
{
    const char *p = ds->info.path, *name = specs[id].name;
    if (off[0] != 0) return MM_ERR(MM_ERR_FORMAT, "%s: /%s[0] is %lld, expected 0", p, name, (long long)off[0]);
    for (int64_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i])
            return MM_ERR(MM_ERR_FORMAT, "%s: /%s decreases at molecule %lld (%lld -> %lld)", p, name, (long long)i,
                          (long long)off[i], (long long)off[i + 1]);
        if (nonempty && off[i + 1] == off[i])
            return MM_ERR(MM_ERR_FORMAT, "%s: molecule %lld has no atoms (/%s)", p, (long long)i, name);
    }
    if (off[n] != total)
        return MM_ERR(MM_ERR_FORMAT, "%s: /%s ends at %lld, but the data have %lld rows", p, name, (long long)off[n],
                      (long long)total);
    return MM_OK;
}

static mm_status validate_layout(mm_dataset *ds)
{
    mm_dataset_info *in = &ds->info;
    const char *p = in->path;
    for (int id = D_SMILES; id <= D_BOND_FEAT; id++) MM_CALL(open_dset(ds, id, true));
    for (int id = D_XYZ; id < D_COUNT; id++) MM_CALL(open_dset(ds, id, false));
    const int64_t N = (int64_t)ds->dims[D_SMILES][0];
    if (N != in->n_molecules)
        return MM_ERR(MM_ERR_FORMAT, "%s: n_molecules attribute is %lld but /smiles has %lld rows", p,
                      (long long)in->n_molecules, (long long)N);
    if (ds->dims[D_ATOM_FEAT][0] > (hsize_t)INT64_MAX / 16 || ds->dims[D_BOND_INDEX][0] > (hsize_t)INT64_MAX / 16)
        return MM_ERR(MM_ERR_RANGE, "%s: atom or bond count too large", p);
    const int64_t A = (int64_t)ds->dims[D_ATOM_FEAT][0], B = (int64_t)ds->dims[D_BOND_INDEX][0];
    in->n_atoms = A;
    in->n_bonds = B;
    MM_CALL(expect_dims(ds, D_SOURCE_ROW, (int64_t[]){N}, "[N] (N from /smiles)"));
    MM_CALL(expect_dims(ds, D_ATOM_OFFSET, (int64_t[]){N + 1}, "[N+1]"));
    MM_CALL(expect_dims(ds, D_ATOM_FEAT, (int64_t[]){A, MM_DS_ATOM_FEATS}, "[A, 9]"));
    MM_CALL(expect_dims(ds, D_BOND_OFFSET, (int64_t[]){N + 1}, "[N+1]"));
    MM_CALL(expect_dims(ds, D_BOND_INDEX, (int64_t[]){B, 2}, "[B, 2]"));
    MM_CALL(expect_dims(ds, D_BOND_FEAT, (int64_t[]){B, MM_DS_BOND_FEATS}, "[B, 3] (B from /bond_index)"));
    if ((ds->dset[D_XYZ] >= 0) != (ds->dset[D_OK] >= 0))
        return MM_ERR(MM_ERR_FORMAT, "%s: missing dataset /conformer/%s (xyz and ok go together)", p,
                      ds->dset[D_XYZ] >= 0 ? "ok" : "xyz");
    if (ds->dset[D_XYZ] >= 0) {
        MM_CALL(expect_dims(ds, D_XYZ, (int64_t[]){A, 3}, "[A, 3] (A from /atom_feat)"));
        MM_CALL(expect_dims(ds, D_OK, (int64_t[]){N}, "[N]"));
        in->modalities |= MM_MOD_CONFORMER;
    }
    if (ds->dset[D_IMAGE] >= 0) {
        MM_CALL(expect_dims(ds, D_IMAGE, (int64_t[]){N, MM_DS_IMAGE_CHANNELS, -1, -1}, "[N, 3, H, W]"));
        hsize_t h = ds->dims[D_IMAGE][2], w = ds->dims[D_IMAGE][3];
        if (h < 1 || w < 1 || h > 4096 || w > 4096)
            return MM_ERR(MM_ERR_FORMAT, "%s: /image is %llu x %llu, expected 1..4096 pixels a side", p,
                          (unsigned long long)h, (unsigned long long)w);
        in->image_h = (int)h;
        in->image_w = (int)w;
        in->modalities |= MM_MOD_IMAGE;
    }
    if (ds->dset[D_FP] >= 0) {
        MM_CALL(expect_dims(ds, D_FP, (int64_t[]){N, MM_DS_FP_BYTES}, "[N, 256]"));
        in->modalities |= MM_MOD_FINGERPRINT;
    }
    if (ds->dset[D_SCAFFOLD] >= 0) {
        MM_CALL(expect_dims(ds, D_SCAFFOLD, (int64_t[]){N}, "[N]"));
        in->modalities |= MM_MOD_SCAFFOLD;
    }
    if (ds->dset[D_LABELS] >= 0) {
        MM_CALL(expect_dims(ds, D_LABELS, (int64_t[]){N, -1}, "[N, T]"));
        hsize_t T = ds->dims[D_LABELS][1];
        if (T < 1 || T > (1 << 20))
            return MM_ERR(MM_ERR_FORMAT, "%s: /labels has %llu tasks, expected 1..2^20", p, (unsigned long long)T);
        int nt = 0;
        MM_CALL(mm_h5_read_attr_strs(ds->dset[D_LABELS], "/labels", "tasks", p, &in->task_names, &nt));
        in->n_tasks = nt;
        if ((hsize_t)nt != T)
            return MM_ERR(MM_ERR_FORMAT, "%s: /labels has %llu columns but its tasks attribute names %d", p,
                          (unsigned long long)T, nt);
        for (int t = 0; t < nt; t++)
            if (!in->task_names[t][0])
                return MM_ERR(MM_ERR_FORMAT, "%s: attribute tasks of /labels: task %d has an empty name", p, t);
        in->modalities |= MM_MOD_LABELS;
    }
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        int have = 0;
        for (int j = 0; j < 4; j++) have += ds->dset[D_NMR_OFF(k) + j] >= 0;
        if (have == 0) continue;
        if (have != 4) {
            mm_status e = MM_ERR(MM_ERR_FORMAT, "%s: /%s needs peak_offset, shift, atom and ok; some are missing", p,
                                 mm_ds_nmr_name[k]);
            mm_error_hint("the file is incomplete; recreate it with mmsa_prep");
            return e;
        }
        if (ds->dims[D_NMR_SHIFT(k)][0] > (hsize_t)INT64_MAX / 16)
            return MM_ERR(MM_ERR_RANGE, "%s: /%s has too many peaks", p, mm_ds_nmr_name[k]);
        const int64_t S = (int64_t)ds->dims[D_NMR_SHIFT(k)][0];
        ds->n_peaks[k] = S;
        MM_CALL(expect_dims(ds, D_NMR_OFF(k), (int64_t[]){N + 1}, "[N+1]"));
        MM_CALL(expect_dims(ds, D_NMR_ATOM(k), (int64_t[]){S}, "[S] (S from its shift)"));
        MM_CALL(expect_dims(ds, D_NMR_OK(k), (int64_t[]){N}, "[N]"));
        in->modalities |= MM_MOD_NMR(k);
    }
    int nrej = (ds->dset[D_REJ_ROW] >= 0) + (ds->dset[D_REJ_SMILES] >= 0) + (ds->dset[D_REJ_REASON] >= 0);
    if (nrej != 0 && nrej != 3)
        return MM_ERR(MM_ERR_FORMAT, "%s: /rejects needs source_row, smiles and reason; some are missing", p);
    if (nrej == 3) {
        int64_t R = (int64_t)ds->dims[D_REJ_ROW][0];
        MM_CALL(expect_dims(ds, D_REJ_SMILES, (int64_t[]){R}, "[R] (R from /rejects/source_row)"));
        MM_CALL(expect_dims(ds, D_REJ_REASON, (int64_t[]){R}, "[R] (R from /rejects/source_row)"));
        in->n_rejects = R;
    }

    /* the offsets: every rank reads all of them (collective, one call each) */
    size_t ob = (size_t)(N + 1) * sizeof(int64_t);
    ds->atom_offset = mm_malloc(ob);
    ds->bond_offset = mm_malloc(ob);
    bool skip = !ds->atom_offset || !ds->bond_offset;
    run all = {0, N + 1};
    mm_status st = read_rows(ds, D_ATOM_OFFSET, &all, 1, skip, H5T_NATIVE_INT64, ds->atom_offset, NULL, 0);
    mm_status st2 = read_rows(ds, D_BOND_OFFSET, &all, 1, skip || st != MM_OK, H5T_NATIVE_INT64,
                              ds->bond_offset, NULL, 0);
    /* the spectra's offsets likewise, in the order of the kinds (the same on every rank) */
    mm_status stp[MM_NMR_KINDS] = {MM_OK};
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(in->modalities & MM_MOD_NMR(k))) continue;
        ds->peak_offset[k] = mm_malloc(ob);
        bool sk = skip || st != MM_OK || st2 != MM_OK || !ds->peak_offset[k];
        stp[k] = read_rows(ds, D_NMR_OFF(k), &all, 1, sk, H5T_NATIVE_INT64, ds->peak_offset[k], NULL, 0);
        if (!ds->peak_offset[k]) skip = true;
    }
    if (skip) return MM_ERR(MM_ERR_NOMEM, "%s: cannot allocate the offsets of %lld molecules", p, (long long)N);
    MM_CALL(st);
    MM_CALL(st2);
    MM_CALL(check_offsets(ds, D_ATOM_OFFSET, ds->atom_offset, N, A, true));
    MM_CALL(check_offsets(ds, D_BOND_OFFSET, ds->bond_offset, N, B, false));
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(in->modalities & MM_MOD_NMR(k))) continue;
        MM_CALL(stp[k]);
        MM_CALL(check_offsets(ds, D_NMR_OFF(k), ds->peak_offset[k], N, ds->n_peaks[k], false));
    }
    return MM_OK;
}

mm_status mm_dataset_open(const char *path, MPI_Comm comm, mm_dataset **out)
{
    MM_CHECK_ARG(path && out, "mm_dataset_open: NULL argument");
    *out = NULL;
    mm_h5_quiet();
    mm_dataset *ds = mm_calloc(1, sizeof *ds);
    if (!ds) return MM_ERR(MM_ERR_NOMEM, "cannot allocate a dataset handle");
    ds->file = ds->dxpl = H5I_INVALID_HID;
    for (int i = 0; i < D_COUNT; i++) ds->dset[i] = H5I_INVALID_HID;
    ds->d.comm = MPI_COMM_NULL;
    mm_status st = MM_OK;
    ds->info.path = mm_ds_strdup(path);
    if (!ds->info.path) {
        st = MM_ERR(MM_ERR_NOMEM, "cannot copy the path");
        goto done;
    }
    if (comm != MPI_COMM_NULL) {
        ds->mpi = true;
        MM_CALL_GOTO(st, mm_dist_init(&ds->d, comm), done);
    }
    MM_CALL_GOTO(st, open_file(ds, path), done);
    MM_CALL_GOTO(st, read_attributes(ds), done);
    MM_CALL_GOTO(st, validate_layout(ds), done);
done:
    if (st != MM_OK) {
        /* n_molecules sizes the offset arrays for the free; keep it consistent */
        if (ds->atom_offset || ds->bond_offset) ds->info.n_molecules = (int64_t)ds->dims[D_SMILES][0];
        mm_dataset_close(&ds);
        mm_error_push(__FILE__, __LINE__, __func__);
        return st;
    }
    *out = ds;
    return MM_OK;
}

/* ---------------------------------------------------------------- reads */

static bool same_layout(const mm_molset *ms, const mm_molset_opts *o)
{
    if (!ms->atom_offset || ms->modalities != o->modalities) return false;
    if ((o->modalities & MM_MOD_IMAGE) && (ms->image_h != o->image_h || ms->image_w != o->image_w)) return false;
    if (o->modalities & MM_MOD_LABELS) {
        if (ms->n_tasks != o->n_tasks) return false;
        for (int t = 0; t < o->n_tasks; t++)
            if (strcmp(ms->task_names[t], o->task_names[t]) != 0) return false;
    }
    return true;
}

static mm_status prepare_out(const mm_dataset *ds, unsigned mods, mm_molset *out)
{
    mm_molset_opts o = {mods, ds->info.image_h, ds->info.image_w, ds->info.n_tasks,
                        (const char *const *)ds->info.task_names};
    if (same_layout(out, &o)) {
        mm_molset_clear(out);
        return MM_OK;
    }
    mm_molset_free(out);
    MM_CALL(mm_molset_init(out, &o));
    return MM_OK;
}

/* Validates the molecules just read into out (rows k of out are molecules ids[k]). */
static mm_status validate_read(const mm_dataset *ds, const mm_molset *out, const run *mruns, int64_t nruns)
{
    const char *p = ds->info.path;
    int64_t k = 0;
    for (int64_t r = 0; r < nruns; r++)
        for (int64_t i = mruns[r].start; i < mruns[r].start + mruns[r].len; i++, k++) {
            int64_t a0 = out->atom_offset[k], a1 = out->atom_offset[k + 1];
            int64_t b0 = out->bond_offset[k], b1 = out->bond_offset[k + 1];
            char where[PATH_MAX + 96];
            snprintf(where, sizeof where, "%s: molecule %lld (/atom_feat, /bond_index, /bond_feat)", p, (long long)i);
            MM_CALL(mm_ds_check_graph(MM_ERR_FORMAT, where, a1 - a0, out->atom_feat + a0 * MM_DS_ATOM_FEATS, b1 - b0,
                                      out->bond_index + 2 * b0, out->bond_feat + b0 * MM_DS_BOND_FEATS));
            if (out->modalities & MM_MOD_CONFORMER) {
                if (out->conf_ok[k] > 1)
                    return MM_ERR(MM_ERR_FORMAT, "%s: /conformer/ok of molecule %lld is %d, expected 0 or 1", p,
                                  (long long)i, out->conf_ok[k]);
                for (int64_t j = 3 * a0; out->conf_ok[k] && j < 3 * a1; j++)
                    if (!isfinite(out->xyz[j]))
                        return MM_ERR(MM_ERR_FORMAT, "%s: /conformer/xyz of molecule %lld is not finite", p,
                                      (long long)i);
            }
            if (out->modalities & MM_MOD_LABELS)
                for (int t = 0; t < out->n_tasks; t++)
                    if (isinf(out->labels[k * out->n_tasks + t]))
                        return MM_ERR(MM_ERR_FORMAT, "%s: /labels of molecule %lld task %d is infinite", p,
                                      (long long)i, t);
            for (int s = 0; s < MM_NMR_KINDS; s++) {
                if (!(out->modalities & MM_MOD_NMR(s))) continue;
                const mm_spectra *sp = &out->nmr[s];
                int64_t p0 = sp->peak_offset[k], p1 = sp->peak_offset[k + 1];
                snprintf(where, sizeof where, "%s: molecule %lld (/%s)", p, (long long)i, mm_ds_nmr_name[s]);
                MM_CALL(mm_ds_check_spectrum(MM_ERR_FORMAT, where, s, a1 - a0, sp->ok[k], p1 - p0, sp->shift + p0,
                                             sp->atom + p0));
            }
        }
    return MM_OK;
}

/* Build the atom (or bond) row runs of molecule runs from offsets; adjacent runs merge. */
static int64_t row_runs(const run *mruns, int64_t nruns, const int64_t *off, run *out, int64_t *total)
{
    int64_t n = 0;
    *total = 0;
    for (int64_t r = 0; r < nruns; r++) {
        int64_t s = off[mruns[r].start], e = off[mruns[r].start + mruns[r].len];
        if (e == s) continue;
        if (n > 0 && out[n - 1].start + out[n - 1].len == s)
            out[n - 1].len += e - s;
        else
            out[n++] = (run){s, e - s};
        *total += e - s;
    }
    return n;
}

/* The read itself: molecule runs (sorted, disjoint), local_st = this rank's argument
 * status (a failed rank still joins every collective call, with empty selections). */
static mm_status read_runs(mm_dataset *ds, const run *mruns, int64_t nruns, unsigned mods, mm_molset *out,
                           mm_status local_st)
{
    mm_status st = local_st;
    mods &= ds->info.modalities; /* a refused request still joins only existing datasets */
    run *aruns = NULL, *bruns = NULL, *pruns[MM_NMR_KINDS] = {NULL};
    int64_t n = 0, A = 0, B = 0, na = 0, nb = 0, P[MM_NMR_KINDS] = {0}, np[MM_NMR_KINDS] = {0};
    if (st == MM_OK) {
        for (int64_t r = 0; r < nruns; r++) n += mruns[r].len;
        if (nruns > 0) {
            aruns = mm_malloc((size_t)nruns * sizeof(run));
            bruns = mm_malloc((size_t)nruns * sizeof(run));
            bool all = aruns && bruns;
            for (int s = 0; s < MM_NMR_KINDS; s++)
                if (mods & MM_MOD_NMR(s)) {
                    pruns[s] = mm_malloc((size_t)nruns * sizeof(run));
                    all = all && pruns[s];
                }
            if (!all) st = MM_ERR(MM_ERR_NOMEM, "cannot allocate %lld read runs", (long long)nruns);
        }
    }
    if (st == MM_OK) {
        na = row_runs(mruns, nruns, ds->atom_offset, aruns, &A);
        nb = row_runs(mruns, nruns, ds->bond_offset, bruns, &B);
        for (int s = 0; s < MM_NMR_KINDS; s++)
            if (mods & MM_MOD_NMR(s)) np[s] = row_runs(mruns, nruns, ds->peak_offset[s], pruns[s], &P[s]);
        st = prepare_out(ds, mods, out);
        if (st == MM_OK) st = mm_molset_reserve(out, n, A, B);
        for (int s = 0; s < MM_NMR_KINDS && st == MM_OK; s++)
            if (mods & MM_MOD_NMR(s)) st = mm_ds_reserve_peaks(out, s, P[s]);
        if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    }
    if (st == MM_OK) {
        int64_t k = 0;
        for (int64_t r = 0; r < nruns; r++)
            for (int64_t i = mruns[r].start; i < mruns[r].start + mruns[r].len; i++, k++) {
                out->atom_offset[k + 1] = out->atom_offset[k] + ds->atom_offset[i + 1] - ds->atom_offset[i];
                out->bond_offset[k + 1] = out->bond_offset[k] + ds->bond_offset[i + 1] - ds->bond_offset[i];
                for (int s = 0; s < MM_NMR_KINDS; s++)
                    if (mods & MM_MOD_NMR(s)) {
                        const int64_t *po = ds->peak_offset[s];
                        out->nmr[s].peak_offset[k + 1] = out->nmr[s].peak_offset[k] + po[i + 1] - po[i];
                    }
            }
    }
    /* Every call below happens on every rank, in this order; after a failure the rank
     * reads nothing (skip) but still joins. */
#define READ(id, cond, runs, nr, mtype, buf, strs, nstr)                                              \
    do {                                                                                             \
        if (cond) {                                                                                  \
            mm_status s_ = read_rows(ds, (id), (runs), (nr), st != MM_OK, (mtype),                     \
                                     st == MM_OK ? (void *)(buf) : NULL, (strs), (nstr));              \
            if (st == MM_OK) st = s_;                                                                \
        }                                                                                            \
    } while (0)
    mm_strings dummy_strings = {0};
    READ(D_SMILES, true, mruns, nruns, 0, NULL, st == MM_OK ? &out->smiles : &dummy_strings, n);
    READ(D_SOURCE_ROW, true, mruns, nruns, H5T_NATIVE_INT64, out->source_row, NULL, 0);
    READ(D_ATOM_FEAT, true, aruns, na, H5T_NATIVE_UINT8, out->atom_feat, NULL, 0);
    READ(D_BOND_INDEX, true, bruns, nb, H5T_NATIVE_INT32, out->bond_index, NULL, 0);
    READ(D_BOND_FEAT, true, bruns, nb, H5T_NATIVE_UINT8, out->bond_feat, NULL, 0);
    READ(D_XYZ, mods & MM_MOD_CONFORMER, aruns, na, H5T_NATIVE_FLOAT, out->xyz, NULL, 0);
    READ(D_OK, mods & MM_MOD_CONFORMER, mruns, nruns, H5T_NATIVE_UINT8, out->conf_ok, NULL, 0);
    READ(D_IMAGE, mods & MM_MOD_IMAGE, mruns, nruns, H5T_NATIVE_UINT8, out->image, NULL, 0);
    READ(D_FP, mods & MM_MOD_FINGERPRINT, mruns, nruns, H5T_NATIVE_UINT8, out->fingerprint, NULL, 0);
    READ(D_SCAFFOLD, mods & MM_MOD_SCAFFOLD, mruns, nruns, 0, NULL,
         st == MM_OK ? &out->scaffold : &dummy_strings, n);
    READ(D_LABELS, mods & MM_MOD_LABELS, mruns, nruns, H5T_NATIVE_FLOAT, out->labels, NULL, 0);
    for (int s = 0; s < MM_NMR_KINDS; s++) {
        const bool want = mods & MM_MOD_NMR(s);
        READ(D_NMR_SHIFT(s), want, pruns[s], np[s], H5T_NATIVE_FLOAT, out->nmr[s].shift, NULL, 0);
        READ(D_NMR_ATOM(s), want, pruns[s], np[s], H5T_NATIVE_INT32, out->nmr[s].atom, NULL, 0);
        READ(D_NMR_OK(s), want, mruns, nruns, H5T_NATIVE_UINT8, out->nmr[s].ok, NULL, 0);
    }
#undef READ
    mm_strings_free(&dummy_strings);
    if (st == MM_OK) {
        out->n = n;
        out->n_atoms = A;
        out->n_bonds = B;
        for (int s = 0; s < MM_NMR_KINDS; s++)
            if (mods & MM_MOD_NMR(s)) out->nmr[s].n_peaks = P[s];
        if (out->smiles.n != n || ((mods & MM_MOD_SCAFFOLD) && out->scaffold.n != n))
            st = MM_ERR(MM_ERR_INTERNAL, "%s: read %lld strings for %lld molecules", ds->info.path,
                        (long long)out->smiles.n, (long long)n);
    }
    if (st == MM_OK) st = validate_read(ds, out, mruns, nruns);
    if (st != MM_OK && out->atom_offset) mm_molset_clear(out);
    if (aruns) mm_free_sized(aruns, (size_t)nruns * sizeof(run));
    if (bruns) mm_free_sized(bruns, (size_t)nruns * sizeof(run));
    for (int s = 0; s < MM_NMR_KINDS; s++)
        if (pruns[s]) mm_free_sized(pruns[s], (size_t)nruns * sizeof(run));
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

/* Collective agreement on the modalities (they fix the sequence of H5Dread calls). */
static mm_status agree_modalities(mm_dataset *ds, unsigned mods)
{
    if (!ds->mpi) return MM_OK;
    int v[2] = {(int)mods, (int)(~mods & MM_MOD_ALL)}, m[2];
    MM_MPI_CALL(MPI_Allreduce(v, m, 2, MPI_INT, MPI_MAX, ds->d.comm));
    if ((unsigned)m[0] != mods || (unsigned)m[1] != (~mods & MM_MOD_ALL))
        return MM_ERR(MM_ERR_ARG, "%s: ranks asked for different modalities in a collective read", ds->info.path);
    return MM_OK;
}

static mm_status check_mods(const mm_dataset *ds, unsigned mods)
{
    if (mods & ~ds->info.modalities)
        return MM_ERR(MM_ERR_ARG, "%s: modalities 0x%x requested, the file has 0x%x", ds->info.path, mods,
                      ds->info.modalities);
    return MM_OK;
}

mm_status mm_dataset_read_indices(mm_dataset *ds, const int64_t *idx, int64_t n, unsigned modalities,
                                  mm_molset *out)
{
    MM_CHECK_ARG(ds && out && (n == 0 || idx) && n >= 0, "mm_dataset_read_indices: NULL argument");
    mm_status st = check_mods(ds, modalities);
    run *runs = NULL;
    int64_t nruns = 0;
    for (int64_t k = 0; k < n && st == MM_OK; k++) {
        if (idx[k] < 0 || idx[k] >= ds->info.n_molecules)
            st = MM_ERR(MM_ERR_ARG, "%s: molecule index %lld outside 0..%lld", ds->info.path, (long long)idx[k],
                        (long long)ds->info.n_molecules - 1);
        else if (k > 0 && idx[k] <= idx[k - 1])
            st = MM_ERR(MM_ERR_ARG, "%s: molecule indices must increase strictly (%lld after %lld)", ds->info.path,
                        (long long)idx[k], (long long)idx[k - 1]);
    }
    if (st == MM_OK && n > 0) {
        runs = mm_malloc((size_t)n * sizeof(run));
        if (!runs) st = MM_ERR(MM_ERR_NOMEM, "cannot allocate %lld runs", (long long)n);
        for (int64_t k = 0; k < n && runs; k++) {
            if (nruns > 0 && runs[nruns - 1].start + runs[nruns - 1].len == idx[k])
                runs[nruns - 1].len++;
            else
                runs[nruns++] = (run){idx[k], 1};
        }
    }
    mm_status ag = agree_modalities(ds, modalities);
    if (ag != MM_OK) {
        if (runs) mm_free_sized(runs, (size_t)n * sizeof(run));
        MM_CALL(ag);
    }
    st = read_runs(ds, runs, nruns, modalities, out, st);
    if (runs) mm_free_sized(runs, (size_t)n * sizeof(run));
    MM_CALL(st);
    return MM_OK;
}

mm_status mm_dataset_read_range(mm_dataset *ds, int64_t start, int64_t end, unsigned modalities, mm_molset *out)
{
    MM_CHECK_ARG(ds && out, "mm_dataset_read_range: NULL argument");
    mm_status st = check_mods(ds, modalities);
    if (st == MM_OK && (start < 0 || end < start || end > ds->info.n_molecules))
        st = MM_ERR(MM_ERR_ARG, "%s: molecule range [%lld, %lld) outside [0, %lld)", ds->info.path, (long long)start,
                    (long long)end, (long long)ds->info.n_molecules);
    run r = {start, end - start};
    MM_CALL(agree_modalities(ds, modalities));
    MM_CALL(read_runs(ds, &r, st == MM_OK && end > start ? 1 : 0, modalities, out, st));
    return MM_OK;
}

mm_status mm_dataset_read_rejects(mm_dataset *ds, mm_molset *out)
{
    MM_CHECK_ARG(ds && out, "mm_dataset_read_rejects: NULL argument");
    mm_status st = MM_OK;
    if (!out->atom_offset) st = prepare_out(ds, ds->info.modalities, out);
    const int64_t R = ds->info.n_rejects;
    if (st == MM_OK) {
        out->n_rejects = 0;
        mm_strings_clear(&out->reject_smiles);
        mm_strings_clear(&out->reject_reason);
        if (R > out->cap_rejects) {
            int64_t *p = mm_malloc((size_t)R * sizeof(int64_t));
            if (!p) {
                st = MM_ERR(MM_ERR_NOMEM, "cannot allocate %lld rejects", (long long)R);
            } else {
                mm_free_sized(out->reject_row, (size_t)out->cap_rejects * sizeof(int64_t));
                out->reject_row = p;
                out->cap_rejects = R;
            }
        }
    }
    if (ds->dset[D_REJ_ROW] < 0) MM_CALL(st); /* no /rejects: nothing collective to do */
    if (ds->dset[D_REJ_ROW] < 0) return MM_OK;
    run all = {0, R};
    mm_strings dummy = {0};
    mm_status s1 = read_rows(ds, D_REJ_ROW, &all, 1, st != MM_OK, H5T_NATIVE_INT64, st == MM_OK ? out->reject_row : NULL,
                             NULL, 0);
    if (st == MM_OK) st = s1;
    s1 = read_rows(ds, D_REJ_SMILES, &all, 1, st != MM_OK, 0, NULL, st == MM_OK ? &out->reject_smiles : &dummy, R);
    if (st == MM_OK) st = s1;
    s1 = read_rows(ds, D_REJ_REASON, &all, 1, st != MM_OK, 0, NULL, st == MM_OK ? &out->reject_reason : &dummy, R);
    if (st == MM_OK) st = s1;
    mm_strings_free(&dummy);
    if (st == MM_OK) out->n_rejects = R;
    MM_CALL(st);
    return MM_OK;
}

mm_status mm_dataset_verify(mm_dataset *ds)
{
    MM_CHECK_ARG(ds, "mm_dataset_verify: NULL argument");
    const int size = ds->mpi ? ds->d.size : 1, rank = ds->mpi ? ds->d.rank : 0;
    const int64_t N = ds->info.n_molecules;
    /* every rank checks its contiguous share, in blocks; the round count is the
     * largest share's, so the collective reads match */
    int64_t start, count, rounds = 0;
    for (int r = 0; r < size; r++) {
        mm_dist_block(N, size, r, &start, &count);
        int64_t k = (count + MOL_BLOCK - 1) / MOL_BLOCK;
        if (k > rounds) rounds = k;
    }
    mm_dist_block(N, size, rank, &start, &count);
    const unsigned mods = ds->info.modalities & ~(unsigned)MM_MOD_IMAGE; /* images: any byte is valid */
    mm_molset buf = {0};
    mm_status st = MM_OK;
    for (int64_t k = 0; k < rounds; k++) {
        int64_t s = start + k * MOL_BLOCK, e = s + MOL_BLOCK;
        if (s > start + count) s = start + count;
        if (e > start + count) e = start + count;
        if (st != MM_OK) s = e; /* keep joining, read nothing */
        mm_status s1 = mm_dataset_read_range(ds, s, e, mods, &buf);
        if (st == MM_OK) st = s1;
    }
    mm_molset_free(&buf);
    if (ds->mpi) {
        int code = (int)st, worst = code;
        MM_MPI_CALL(MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, ds->d.comm));
        if (st == MM_OK && worst != MM_OK)
            return MM_ERR((mm_status)worst, "%s: another rank found an invalid molecule", ds->info.path);
    }
    MM_CALL(st);
    return MM_OK;
}
