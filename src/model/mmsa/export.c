/* export.c: mmsa_embed's library part (export.h). */
#include "mmsa/export.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mmsa/checkpoint.h"
#include "mmsa/model.h"

#define N_OUT 10 /* z x4, p x4, u, mask */

typedef struct {
    int64_t E, P, rows, r0; /* r0: first row of this rank's block */
    float *z[MM_N_MODS], *p[MM_N_MODS], *u; /* [rows, E or P] this rank's block */
    uint8_t *mask;                          /* [rows, 4] */
    int64_t *source_row;                    /* [rows] */
} export_ctx;

static mm_status keep_rows(void *ctx, int64_t first, int64_t n, const mm_step_out *o, const mm_batch *b)
{
    export_ctx *c = ctx;
    first -= c->r0; /* the buffers hold this rank's block only */
    for (int k = 0; k < MM_N_MODS; k++) {
        memcpy(c->z[k] + first * c->E, o->z[k]->data, (size_t)(n * c->E) * sizeof(float));
        if (o->p[k]) memcpy(c->p[k] + first * c->P, o->p[k]->data, (size_t)(n * c->P) * sizeof(float));
    }
    memcpy(c->u + first * c->E, o->u_local->data, (size_t)(n * c->E) * sizeof(float));
    memcpy(c->mask + first * MM_N_MODS, b->mask, (size_t)(n * MM_N_MODS));
    memcpy(c->source_row + first, b->ms->source_row, (size_t)n * sizeof(int64_t));
    return MM_OK;
}

/* Collective write of one [N, cols] dataset, each rank its block of rows. */
static herr_t write_block(hid_t file, const char *name, hid_t type, const void *data, int64_t N, int64_t cols,
                          int64_t r0, int64_t rows)
{
    hsize_t dims[2] = {(hsize_t)N, (hsize_t)cols}, start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)rows, (hsize_t)cols};
    int rank = cols > 0 ? 2 : 1;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mem = H5Screate_simple(rank, count, NULL);
    if (rows > 0) H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    else {
        H5Sselect_none(space);
        H5Sselect_none(mem);
    }
    hid_t xfer = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(xfer, H5FD_MPIO_COLLECTIVE);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, type, mem, space, xfer, data);
    H5Pclose(xfer);
    H5Sclose(mem);
    H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

static void attr_str(hid_t obj, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static mm_status write_file(const char *out, mm_dist *d, const export_ctx *c, int64_t N, int64_t r0,
                            const char *ckpt, int64_t step, const char *dataset)
{
    char tmp[2048];
    int pid = (int)getpid();
    MPI_Bcast(&pid, 1, MPI_INT, 0, d->comm);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, pid);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, d->comm, MPI_INFO_NULL);
    H5E_auto2_t fn;
    void *fd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &fd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    int bad = f < 0;
    if (!bad) {
        char name[64];
        for (int k = 0; k < MM_N_MODS && !bad; k++) {
            snprintf(name, sizeof name, "z_%s", mm_modality_names[k]);
            bad |= write_block(f, name, H5T_NATIVE_FLOAT, c->z[k], N, c->E, r0, c->rows) < 0;
            snprintf(name, sizeof name, "p_%s", mm_modality_names[k]);
            bad |= write_block(f, name, H5T_NATIVE_FLOAT, c->p[k], N, c->P, r0, c->rows) < 0;
        }
        if (!bad) bad |= write_block(f, "u", H5T_NATIVE_FLOAT, c->u, N, c->E, r0, c->rows) < 0;
        if (!bad) bad |= write_block(f, "mask", H5T_NATIVE_UINT8, c->mask, N, MM_N_MODS, r0, c->rows) < 0;
        if (!bad) bad |= write_block(f, "source_row", H5T_NATIVE_INT64, c->source_row, N, 0, r0, c->rows) < 0;
        /* attributes are collective metadata: every rank writes the same values */
        attr_str(f, "format", "mmsa-embeddings");
        attr_str(f, "checkpoint", ckpt);
        attr_str(f, "dataset", dataset);
        attr_str(f, "modalities", "graph,conformer,image,fingerprint");
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "step", H5T_NATIVE_INT64, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &step);
        H5Aclose(a);
        H5Sclose(s);
        bad |= H5Fclose(f) < 0;
    }
    H5Eset_auto2(H5E_DEFAULT, fn, fd);
    int any = bad;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, d->comm);
    if (d->rank == 0) {
        if (!any && rename(tmp, out) != 0) any = 2;
        if (any) unlink(tmp);
    }
    MPI_Bcast(&any, 1, MPI_INT, 0, d->comm);
    if (any) return MM_ERR(MM_ERR_IO, "could not write the embeddings to %s", out);
    return MM_OK;
}

mm_status mm_export_embeddings(const mm_job *job, const char *ckpt, const char *dataset, const char *out,
                               mm_dist *d, int64_t chunk)
{
    mm_model m;
    mm_dataset *ds = NULL;
    mm_molset ms;
    mm_tape t;
    export_ctx c;
    memset(&ms, 0, sizeof ms);
    memset(&c, 0, sizeof c);
    memset(&t, 0, sizeof t);
    MM_CALL(mm_model_init(&m, &job->model, &job->loss, (uint64_t)job->train.seed));
    mm_status st;
    mm_ckpt_state s;
    memset(&s, 0, sizeof s);
    s.params = &m.params;
    s.buffers = m.buffers;
    s.n_buffers = m.n_buffers;
    MM_CALL_GOTO(st, mm_ckpt_read(ckpt, d, &s), done);
    MM_CALL_GOTO(st, mm_dataset_open(dataset, d->comm, &ds), done);
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    unsigned mods = info->modalities & (MM_MOD_CONFORMER | MM_MOD_IMAGE | MM_MOD_FINGERPRINT);
    int64_t N = info->n_molecules, r0;
    mm_dist_block(N, d->size, d->rank, &r0, &c.rows);
    c.r0 = r0;
    c.E = job->model.embed_dim;
    c.P = job->model.proj_dim;
    size_t re = (size_t)(c.rows ? c.rows : 1);
    for (int k = 0; k < MM_N_MODS; k++) {
        c.z[k] = mm_calloc(re * (size_t)c.E, sizeof(float));
        c.p[k] = mm_calloc(re * (size_t)c.P, sizeof(float));
        if (!c.z[k] || !c.p[k]) {
            st = MM_ERR(MM_ERR_NOMEM, "embedding buffers");
            goto done;
        }
    }
    c.u = mm_calloc(re * (size_t)c.E, sizeof(float));
    c.mask = mm_calloc(re * MM_N_MODS, 1);
    c.source_row = mm_calloc(re, sizeof(int64_t));
    if (!c.u || !c.mask || !c.source_row) {
        st = MM_ERR(MM_ERR_NOMEM, "embedding buffers");
        goto done;
    }
    MM_CALL_GOTO(st, mm_tape_init(&t, 16u << 20), done);
    MM_CALL_GOTO(st, mm_model_embed_dataset(&m, &t, ds, &ms, mods, d, 0, N, chunk, keep_rows, &c), done);
    MM_CALL_GOTO(st, write_file(out, d, &c, N, r0, ckpt, s.step, dataset), done);
done:
    for (int k = 0; k < MM_N_MODS; k++) {
        mm_free_sized(c.z[k], (size_t)(c.rows ? c.rows : 1) * (size_t)c.E * sizeof(float));
        mm_free_sized(c.p[k], (size_t)(c.rows ? c.rows : 1) * (size_t)c.P * sizeof(float));
    }
    mm_free_sized(c.u, (size_t)(c.rows ? c.rows : 1) * (size_t)c.E * sizeof(float));
    mm_free_sized(c.mask, (size_t)(c.rows ? c.rows : 1) * MM_N_MODS);
    mm_free_sized(c.source_row, (size_t)(c.rows ? c.rows : 1) * sizeof(int64_t));
    mm_tape_destroy(&t);
    mm_molset_free(&ms);
    mm_dataset_close(&ds);
    mm_model_destroy(&m);
    return st;
}
