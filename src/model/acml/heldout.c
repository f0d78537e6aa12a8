/* heldout.c: the head outputs of the molecules an ACML run held out, trained and
 * untrained, in the embeddings file mmsa_eval reads (acml.h, eval.h). */
#include <hdf5.h>
#include <string.h>

#include "mmsa/acml.h"

#define HELD_CHUNK 256

typedef struct held_out {
    int64_t n, P;                    /* held-out molecules, head width */
    float *u[MM_N_TEACHERS], *g[MM_N_TEACHERS]; /* [n, P] */
    uint8_t *ok[MM_N_TEACHERS];      /* [n] */
} held_out;

/* Eval-mode head outputs of molecules idx[0..n) (this rank's) by the model m, into
 * u, g (rows first..), and the teacher flags. ds reads are collective: every rank
 * runs `chunks` reads. */
static mm_status embed_rows(mm_acml_trainer *tr, mm_model *m, const int64_t *idx, int64_t n, int64_t chunks,
                            held_out *h, int64_t first)
{
    mm_dist self;
    MM_CALL(mm_dist_init(&self, MPI_COMM_SELF));
    mm_tape *t = &tr->tape;
    int64_t P = h->P;
    unsigned mods = 0;
    for (int k = 0; k < tr->n_teachers; k++)
        if (!tr->t_out[k]) mods |= tr->teacher[k].modality;
    mm_status st = MM_OK;
    for (int64_t c = 0; c < chunks && st == MM_OK; c++) {
        int64_t c0 = c * HELD_CHUNK, cn = n - c0 < HELD_CHUNK ? n - c0 : HELD_CHUNK;
        if (cn < 0) cn = 0;
        st = mm_dataset_read_indices(tr->ds, idx + (cn ? c0 : 0), cn, mods, &tr->ms);
        if (st != MM_OK || cn == 0) continue;
        for (int k = 0; k < tr->n_teachers && st == MM_OK; k++) {
            int64_t D = tr->teacher[k].dim;
            float *tout = mm_malloc((size_t)(cn * D) * sizeof(float));
            uint8_t *tok = h->ok[k] + first + c0;
            if (!tout) {
                st = MM_ERR(MM_ERR_NOMEM, "held-out teacher rows");
                break;
            }
            st = mm_acml_teacher_rows(tr, k, idx + c0, cn, &tr->ms, t, tout, tok);
            mm_batch *b = NULL;
            mm_tensor *x, *g, *U, *G;
            int64_t count = cn;
            if (st == MM_OK) st = mm_tape_reset(t);
            t->grad_enabled = false;
            t->training = false;
            if (st == MM_OK) st = mm_batch_build(t, m, &tr->ms, &self, &count, &b);
            if (st == MM_OK) st = mm_encode_graph(m, t, b, 0, &g);
            if (st == MM_OK) st = mm_tensor_new2(t, cn, D, false, &x);
            if (st == MM_OK) {
                memcpy(x->data, tout, (size_t)(cn * D) * sizeof(float));
                st = mm_acml_head_forward(t, &m->params, &tr->head_t[k], x, 0.0f, 0, 0, 0, &U, NULL, NULL);
            }
            if (st == MM_OK) st = mm_acml_head_forward(t, &m->params, &tr->head_g[k], g, 0.0f, 0, 0, 0, &G, NULL, NULL);
            if (st == MM_OK) {
                memcpy(h->u[k] + (first + c0) * P, U->data, (size_t)(cn * P) * sizeof(float));
                memcpy(h->g[k] + (first + c0) * P, G->data, (size_t)(cn * P) * sizeof(float));
            }
            mm_free_sized(tout, (size_t)(cn * D) * sizeof(float));
        }
    }
    t->grad_enabled = true;
    t->training = true;
    mm_dist_destroy(&self);
    return st;
}

/* Every rank embeds its block of the held-out molecules; everyone gets all rows. */
static mm_status embed_held(mm_acml_trainer *tr, mm_model *m, held_out *h)
{
    mm_dist *d = tr->d;
    int64_t n = tr->n_held, my0, mine, P = h->P;
    mm_dist_block(n, d->size, d->rank, &my0, &mine);
    int64_t most = n / d->size + (n % d->size ? 1 : 0);
    int64_t chunks = (most + HELD_CHUNK - 1) / HELD_CHUNK;
    mm_status st = mm_dist_agree(d, embed_rows(tr, m, tr->held_idx + my0, mine, chunks, h, my0));
    int64_t *counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    if (!counts) st = MM_ERR(MM_ERR_NOMEM, "counts");
    for (int r = 0; st == MM_OK && r < d->size; r++) {
        int64_t s0;
        mm_dist_block(n, d->size, r, &s0, &counts[r]);
    }
    /* in place: each rank's block moves to a copy, then the full arrays are gathered */
    for (int k = 0; k < tr->n_teachers && st == MM_OK; k++) {
        size_t fb = (size_t)((mine ? mine : 1) * P) * sizeof(float);
        float *cu = mm_malloc(fb), *cg = mm_malloc(fb);
        uint8_t *ck = mm_malloc((size_t)(mine ? mine : 1));
        if (!cu || !cg || !ck) st = MM_ERR(MM_ERR_NOMEM, "held-out rows");
        if (st == MM_OK) {
            memcpy(cu, h->u[k] + my0 * P, (size_t)(mine * P) * sizeof(float));
            memcpy(cg, h->g[k] + my0 * P, (size_t)(mine * P) * sizeof(float));
            memcpy(ck, h->ok[k] + my0, (size_t)mine);
            st = mm_dist_allgather_bytes(d, cu, (size_t)P * sizeof(float), counts, h->u[k]);
        }
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, cg, (size_t)P * sizeof(float), counts, h->g[k]);
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, ck, 1, counts, h->ok[k]);
        if (cu) mm_free_sized(cu, fb);
        if (cg) mm_free_sized(cg, fb);
        if (ck) mm_free_sized(ck, (size_t)(mine ? mine : 1));
    }
    if (counts) mm_free_sized(counts, (size_t)d->size * sizeof(int64_t));
    return st;
}

static mm_status held_alloc(held_out *h, int n_teachers, int64_t n, int64_t P)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    h->P = P;
    for (int k = 0; k < n_teachers; k++) {
        h->u[k] = mm_calloc((size_t)((n ? n : 1) * P), sizeof(float));
        h->g[k] = mm_calloc((size_t)((n ? n : 1) * P), sizeof(float));
        h->ok[k] = mm_calloc((size_t)(n ? n : 1), 1);
        if (!h->u[k] || !h->g[k] || !h->ok[k]) return MM_ERR(MM_ERR_NOMEM, "held-out embeddings");
    }
    return MM_OK;
}

static void held_free(held_out *h)
{
    for (int k = 0; k < MM_N_TEACHERS; k++) {
        if (h->u[k]) mm_free_sized(h->u[k], (size_t)((h->n ? h->n : 1) * h->P) * sizeof(float));
        if (h->g[k]) mm_free_sized(h->g[k], (size_t)((h->n ? h->n : 1) * h->P) * sizeof(float));
        if (h->ok[k]) mm_free_sized(h->ok[k], (size_t)(h->n ? h->n : 1));
    }
    memset(h, 0, sizeof *h);
}

static bool write_dset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                       const void *data)
{
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t x = s >= 0 ? H5Dcreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    bool ok = x >= 0 && H5Dwrite(x, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (x >= 0) H5Dclose(x);
    if (s >= 0) H5Sclose(s);
    return ok;
}

static bool write_str_attr(hid_t loc, const char *name, const char *v)
{
    hid_t ty = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(ty, strlen(v) + 1);
    hid_t a = H5Acreate2(loc, name, ty, s, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = a >= 0 && H5Awrite(a, ty, v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(ty);
    return ok;
}

static bool write_int_attr(hid_t loc, const char *name, int64_t v)
{
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return ok;
}

static bool write_group(mm_acml_trainer *tr, hid_t root, const held_out *h)
{
    bool ok = true;
    hsize_t d2[2] = {(hsize_t)h->n, (hsize_t)h->P}, d1[1] = {(hsize_t)h->n};
    for (int k = 0; k < tr->n_teachers && ok; k++) {
        hid_t g = H5Gcreate2(root, mm_teacher_names[tr->teacher[k].kind], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = g >= 0 && write_dset(g, "graph", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, h->g[k]) &&
             write_dset(g, "teacher", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, h->u[k]) &&
             write_dset(g, "ok", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d1, h->ok[k]);
        if (g >= 0) H5Gclose(g);
    }
    return ok;
}

static mm_status write_file(mm_acml_trainer *tr, const char *path, const held_out *h, const held_out *h0)
{
    char tmp[1300], ckpt[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(ckpt, sizeof ckpt, "%s/step_%012lld.h5", tr->ckpt_dir, (long long)tr->step);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return MM_ERR(MM_ERR_IO, "cannot create %s", tmp);
    hsize_t d1[1] = {(hsize_t)h->n};
    bool ok = write_str_attr(f, "format", "mmsa-acml-embeddings") && write_int_attr(f, "version", 1) &&
              write_str_attr(f, "dataset", tr->job.train.dataset) && write_str_attr(f, "checkpoint", ckpt) &&
              write_int_attr(f, "step", tr->step) &&
              write_dset(f, "index", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, tr->held_idx) && write_group(tr, f, h);
    hid_t u = ok ? H5Gcreate2(f, "untrained", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && u >= 0 && write_group(tr, u, h0);
    if (u >= 0) H5Gclose(u);
    ok = H5Fclose(f) >= 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return MM_ERR(MM_ERR_IO, "cannot write the held-out embeddings %s", path);
    }
    return MM_OK;
}

/* teacher -> graph top-1 of the first teacher among the held-out molecules that have it */
static double top1_of(const held_out *h)
{
    int64_t m = 0, P = h->P;
    for (int64_t i = 0; i < h->n; i++) m += h->ok[0][i];
    if (m < 2) return 0;
    float *a = mm_malloc((size_t)(m * P) * sizeof(float)), *b = mm_malloc((size_t)(m * P) * sizeof(float));
    int64_t *rk = mm_malloc((size_t)m * sizeof(int64_t));
    double hit = 0;
    if (a && b && rk) {
        for (int64_t i = 0, j = 0; i < h->n; i++) {
            if (!h->ok[0][i]) continue;
            memcpy(a + j * P, h->u[0] + i * P, (size_t)P * sizeof(float));
            memcpy(b + j * P, h->g[0] + i * P, (size_t)P * sizeof(float));
            j++;
        }
        mm_retrieval_ranks(a, b, m, P, rk);
        for (int64_t i = 0; i < m; i++) hit += rk[i] == 0;
    }
    if (a) mm_free_sized(a, (size_t)(m * P) * sizeof(float));
    if (b) mm_free_sized(b, (size_t)(m * P) * sizeof(float));
    if (rk) mm_free_sized(rk, (size_t)m * sizeof(int64_t));
    return hit / (double)m;
}

mm_status mm_acml_write_heldout(mm_acml_trainer *tr, const char *path, double top1[2])
{
    mm_dist *d = tr->d;
    if (tr->n_held < 2) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "the run holds out %lld molecules: nothing to evaluate", (long long)tr->n_held);
        mm_error_hint("set acml.holdout_fraction so that the scaffold split keeps molecules aside");
        return mm_dist_agree(d, st);
    }
    const mm_acml_config *A = &tr->job.acml;
    int64_t P = A->head_widths[A->n_head_widths - 1];
    held_out h, h0;
    mm_model untrained;
    memset(&untrained, 0, sizeof untrained);
    mm_status st = held_alloc(&h, tr->n_teachers, tr->n_held, P);
    if (st == MM_OK) st = held_alloc(&h0, tr->n_teachers, tr->n_held, P);
    st = mm_dist_agree(d, st);
    if (st == MM_OK) st = embed_held(tr, &tr->student, &h);
    /* the untrained model: the same construction from the same seed (step 0) */
    if (st == MM_OK) {
        mm_model_config c = tr->job.model;
        c.use_conformer = c.use_image = c.use_fingerprint = false;
        mm_acml_head ht[MM_N_TEACHERS], hg[MM_N_TEACHERS];
        memcpy(ht, tr->head_t, sizeof ht);
        memcpy(hg, tr->head_g, sizeof hg);
        st = mm_dist_agree(d, mm_acml_build_student(tr, &untrained));
        if (st == MM_OK) st = embed_held(tr, &untrained, &h0);
        memcpy(tr->head_t, ht, sizeof ht);
        memcpy(tr->head_g, hg, sizeof hg);
    }
    if (st == MM_OK) st = mm_dist_agree(d, d->rank == 0 ? write_file(tr, path, &h, &h0) : MM_OK);
    if (st == MM_OK && top1) {
        top1[0] = top1_of(&h);
        top1[1] = top1_of(&h0);
    }
    mm_model_destroy(&untrained);
    held_free(&h);
    held_free(&h0);
    return st;
}
