/* batch.c: from a rank's molecules to the arrays the encoders consume. */
#include <math.h>
#include <string.h>

#include "mmsa/model.h"

static inline size_t at_least_1(int64_t n) { return n > 0 ? (size_t)n : 1; }
#define ALLOC(t, ptr, count) MM_CALL(mm_tape_alloc((t), at_least_1(count) * sizeof *(ptr), (void **)&(ptr)))

static mm_status build_edges(mm_tape *t, const mm_molset *ms, mm_batch *b)
{
    int64_t nb = ms->n_bonds, na = ms->n_atoms;
    b->n_edges = 2 * nb + na;
    ALLOC(t, b->edge_src, b->n_edges);
    ALLOC(t, b->edge_dst, b->n_edges);
    ALLOC(t, b->edge_feat, 3 * b->n_edges);
    int64_t e = 0;
    for (int64_t i = 0; i < ms->n; i++) {
        int64_t a0 = ms->atom_offset[i];
        for (int64_t k = ms->bond_offset[i]; k < ms->bond_offset[i + 1]; k++) {
            int64_t p = a0 + ms->bond_index[2 * k], q = a0 + ms->bond_index[2 * k + 1];
            for (int dir = 0; dir < 2; dir++) {
                b->edge_src[e] = dir ? q : p;
                b->edge_dst[e] = dir ? p : q;
                for (int f = 0; f < 3; f++) b->edge_feat[3 * e + f] = ms->bond_feat[3 * k + f];
                e++;
            }
        }
    }
    for (int64_t a = 0; a < na; a++, e++) { /* self loops: bond type 5 */
        b->edge_src[e] = b->edge_dst[e] = a;
        b->edge_feat[3 * e] = 5;
        b->edge_feat[3 * e + 1] = 0;
        b->edge_feat[3 * e + 2] = 0;
    }
    MM_CALL(mm_graph_build(t, na, b->n_edges, b->edge_src, b->edge_dst, 3, b->edge_feat, mm_gin_bond_vocab,
                           &b->gin_graph));
    return MM_OK;
}

/* SchNet's pairs: each unordered pair p < q of a molecule within the cutoff, once (the
 * filter is a function of the distance, the same both ways; mm_cfconv uses it for (p, q)
 * and (q, p)), sorted by p then q. */
static mm_status build_pairs(mm_tape *t, const mm_model *m, const mm_molset *ms, mm_batch *b)
{
    const mm_model_config *c = &m->cfg;
    double cutoff = c->schnet_cutoff;
    int nr = c->schnet_n_rbf;
    ALLOC(t, b->pairs_per_mol, ms->n);
    /* count first, so the arrays are exact */
    int64_t total = 0;
    for (int64_t i = 0; i < ms->n; i++) {
        int64_t cnt = 0;
        if (b->mask[i * MM_N_MODS + MM_MOD_CONF_I]) {
            for (int64_t p = ms->atom_offset[i]; p < ms->atom_offset[i + 1]; p++)
                for (int64_t q = p + 1; q < ms->atom_offset[i + 1]; q++) {
                    double dx = (double)ms->xyz[3 * p] - ms->xyz[3 * q], dy = (double)ms->xyz[3 * p + 1] - ms->xyz[3 * q + 1],
                           dz = (double)ms->xyz[3 * p + 2] - ms->xyz[3 * q + 2];
                    if (sqrt(dx * dx + dy * dy + dz * dz) < cutoff) cnt++;
                }
        }
        b->pairs_per_mol[i] = cnt;
        total += cnt;
    }
    b->n_pairs = total;
    ALLOC(t, b->pair_p, total);
    ALLOC(t, b->pair_q, total);
    ALLOC(t, b->rbf, total * nr);
    ALLOC(t, b->fcut, total);
    int64_t k = 0;
    double spacing = cutoff / (nr - 1), gamma = m->rbf_gamma;
    for (int64_t i = 0; i < ms->n; i++) {
        if (!b->mask[i * MM_N_MODS + MM_MOD_CONF_I]) continue;
        for (int64_t p = ms->atom_offset[i]; p < ms->atom_offset[i + 1]; p++)
            for (int64_t q = p + 1; q < ms->atom_offset[i + 1]; q++) {
                double dx = (double)ms->xyz[3 * p] - ms->xyz[3 * q], dy = (double)ms->xyz[3 * p + 1] - ms->xyz[3 * q + 1],
                       dz = (double)ms->xyz[3 * p + 2] - ms->xyz[3 * q + 2];
                double d = sqrt(dx * dx + dy * dy + dz * dz);
                if (d >= cutoff) continue;
                b->pair_p[k] = p;
                b->pair_q[k] = q;
                for (int r = 0; r < nr; r++) {
                    double diff = d - spacing * r;
                    b->rbf[k * nr + r] = (float)exp(-gamma * diff * diff);
                }
                b->fcut[k] = (float)(0.5 * (cos(M_PI * d / cutoff) + 1.0));
                k++;
            }
    }
    return MM_OK;
}

mm_status mm_batch_build(mm_tape *t, const mm_model *m, const mm_molset *ms, mm_dist *d, const int64_t *counts,
                         mm_batch **out)
{
    const mm_model_config *c = &m->cfg;
    if (counts[d->rank] != ms->n)
        return MM_ERR(MM_ERR_ARG, "batch: rank %d has %lld molecules, the layout says %lld", d->rank, (long long)ms->n,
                      (long long)counts[d->rank]);
    mm_batch *b;
    MM_CALL(mm_tape_calloc(t, sizeof *b, (void **)&b));
    b->ms = ms;
    b->n = ms->n;
    b->n_atoms = ms->n_atoms;
    ALLOC(t, b->counts, d->size);
    memcpy(b->counts, counts, (size_t)d->size * sizeof(int64_t));
    for (int r = 0; r < d->size; r++) {
        if (r < d->rank) b->row0 += counts[r];
        b->n_global += counts[r];
    }
    /* global index of my first atom: an exclusive scan of the atom counts */
    int64_t atoms = ms->n_atoms, before = 0;
    if (d->size > 1) {
        MM_MPI_CALL(MPI_Exscan(&atoms, &before, 1, MPI_INT64_T, MPI_SUM, d->comm));
        if (d->rank == 0) before = 0;
    }
    b->atom_row0 = before;

    bool has_conf = (ms->modalities & MM_MOD_CONFORMER) && c->use_conformer;
    bool has_img = (ms->modalities & MM_MOD_IMAGE) && c->use_image;
    bool has_fp = (ms->modalities & MM_MOD_FINGERPRINT) && c->use_fingerprint;
    if (has_img && (ms->image_h != c->image_size || ms->image_w != c->image_size))
        return MM_ERR(MM_ERR_CONFIG, "the dataset's images are %dx%d but model.image_size is %d", ms->image_h, ms->image_w,
                      c->image_size);
    ALLOC(t, b->mask, ms->n * MM_N_MODS);
    for (int64_t i = 0; i < ms->n; i++) {
        uint8_t *mk = b->mask + i * MM_N_MODS;
        mk[MM_MOD_GRAPH_I] = 1;
        mk[MM_MOD_CONF_I] = has_conf && ms->conf_ok[i];
        mk[MM_MOD_IMAGE_I] = has_img;
        mk[MM_MOD_FP_I] = has_fp;
    }
    ALLOC(t, b->mask_global, b->n_global * MM_N_MODS);
    MM_CALL(mm_dist_allgather_bytes(d, b->mask, MM_N_MODS, counts, b->mask_global));
    for (int64_t i = 0; i < b->n_global; i++)
        for (int k = 0; k < MM_N_MODS; k++) b->present_global[k] += b->mask_global[i * MM_N_MODS + k];

    MM_CALL(build_edges(t, ms, b));
    if (has_conf) MM_CALL(build_pairs(t, m, ms, b));
    if (has_img) {
        /* the dataset's [n, 3, H, W] bytes as the encoder's channels-last floats */
        int64_t hw = (int64_t)ms->image_h * ms->image_w;
        ALLOC(t, b->image, ms->n * 3 * hw);
        for (int64_t i = 0; i < ms->n; i++)
            for (int64_t k = 0; k < hw; k++)
                for (int64_t ch = 0; ch < 3; ch++)
                    b->image[(i * hw + k) * 3 + ch] = (float)ms->image[(i * 3 + ch) * hw + k] / 255.0f;
    }
    if (has_fp) {
        int64_t nbytes = c->fp_bits / 8, nnz = 0;
        if (c->fp_bits != 8 * MM_DS_FP_BYTES)
            return MM_ERR(MM_ERR_CONFIG, "model.fp_bits is %d but the dataset stores %d-bit fingerprints", c->fp_bits,
                          8 * MM_DS_FP_BYTES);
        for (int64_t i = 0; i < ms->n * nbytes; i++) nnz += __builtin_popcount(ms->fingerprint[i]);
        ALLOC(t, b->fp_ptr, ms->n + 1);
        ALLOC(t, b->fp_col, nnz);
        int64_t k = 0;
        for (int64_t i = 0; i < ms->n; i++) {
            b->fp_ptr[i] = k;
            for (int64_t j = 0; j < c->fp_bits; j++)
                if (ms->fingerprint[i * nbytes + j / 8] & (0x80 >> (j % 8))) b->fp_col[k++] = j;
        }
        b->fp_ptr[ms->n] = k;
    }
    *out = b;
    return MM_OK;
}
