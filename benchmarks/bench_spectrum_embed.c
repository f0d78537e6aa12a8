/* bench_spectrum_embed: the embeddings of a spectrum autoencoder for the sanity checks of
 * benchmarks/spectrum_probe.py. For every molecule of the dataset that has the
 * checkpoint's kind of spectrum, in dataset order: the trained encoder's embedding (the
 * ACML teacher's path, mm_spectrum_model_load + mm_spectrum_encode), the embedding of the
 * same architecture untrained (the baseline), the heavy-atom element counts and the peaks.
 * Serial. */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/spectrum.h"

/* atomic numbers counted per molecule (OGB index = Z - 1) */
static const int elements[] = {6, 7, 8, 9, 15, 16, 17, 35, 53};
#define N_ELEMENTS ((int)(sizeof elements / sizeof elements[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_spectrum_embed --ckpt STEP.h5 --dataset DATA.h5 --out EMB.h5\n"
               "\n"
               "Writes, for the molecules of DATA.h5 that have the checkpoint's kind of spectrum:\n"
               "/mol int64 [n] dataset index, /emb and /emb_untrained float32 [n, E], /elements int32\n"
               "[n, 9] counts of C N O F P S Cl Br I, /peak_offset int64 [n+1], /shift float32 [S],\n"
               "/graph_hash int64 [n] (a Weisfeiler-Lehman hash of the heavy-atom graph without\n"
               "stereo: the same constitution twice, whatever the SMILES says about stereo).\n"
               "benchmarks/spectrum_probe.py reads it.\n");
}

static int write_ds(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims, const void *buf)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    if (bad) fprintf(stderr, "bench_spectrum_embed: cannot write %s\n", name);
    return bad;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    return h * 0xbf58476d1ce4e5b9ull;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Weisfeiler-Lehman hash of molecule i of ms: atoms labelled by element, 4 rounds over the
 * bonds (with their type), then the sorted labels. Stereo is ignored (the atom and bond
 * stereo features are not used), so NMR8K's 2D record and Exp5K's 3D record of one
 * molecule agree. */
static int64_t graph_hash(const mm_molset *ms, int64_t i)
{
    int64_t a0 = ms->atom_offset[i], na = ms->atom_offset[i + 1] - a0;
    int64_t b0 = ms->bond_offset[i], nb = ms->bond_offset[i + 1] - b0;
    uint64_t *lab = malloc((size_t)na * sizeof *lab), *next = malloc((size_t)na * sizeof *next);
    for (int64_t a = 0; a < na; a++) lab[a] = ms->atom_feat[9 * (a0 + a)] + 1u;
    for (int round = 0; round < 4; round++) {
        /* order-independent over the neighbours: a sum of mixed (neighbour, bond type) */
        for (int64_t a = 0; a < na; a++) next[a] = 0;
        for (int64_t b = 0; b < nb; b++) {
            int32_t u = ms->bond_index[2 * (b0 + b)], v = ms->bond_index[2 * (b0 + b) + 1];
            uint64_t t = ms->bond_feat[3 * (b0 + b)];
            next[u] += mix(lab[v], t);
            next[v] += mix(lab[u], t);
        }
        for (int64_t a = 0; a < na; a++) lab[a] = mix(lab[a], next[a]);
    }
    qsort(lab, (size_t)na, sizeof *lab, cmp_u64);
    uint64_t h = (uint64_t)na;
    for (int64_t a = 0; a < na; a++) h = mix(h, lab[a]);
    free(lab);
    free(next);
    return (int64_t)(h >> 1);
}

/* Grows *buf (of *cap items of `size` bytes) to hold `need`. */
static void *grow(void *buf, int64_t *cap, int64_t need, size_t size)
{
    if (need <= *cap) return buf;
    *cap = need * 2;
    void *p = realloc(buf, (size_t)*cap * size);
    if (!p) {
        fprintf(stderr, "bench_spectrum_embed: out of memory\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *ckpt = NULL, *dataset = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--ckpt") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else {
            usage(stderr);
            MPI_Finalize();
            return 2;
        }
    }
    if (!ckpt || !dataset || !out) {
        usage(stderr);
        MPI_Finalize();
        return 2;
    }
    mm_spectrum_model *m = NULL;
    mm_dataset *ds = NULL;
    mm_spectrum_net raw;
    memset(&raw, 0, sizeof raw);
    mm_tape t;
    memset(&t, 0, sizeof t);
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    mm_status st = mm_spectrum_model_load(ckpt, MPI_COMM_SELF, &m);
    /* the same architecture, untrained, in eval mode (running statistics 0 and 1) */
    if (st == MM_OK) {
        const mm_spectrum_net *net = mm_spectrum_model_net(m);
        st = mm_spectrum_net_init(&raw, &net->cfg, net->bn_eps, net->bn_momentum, false, 12345);
    }
    if (st == MM_OK) st = mm_tape_init(&t, 8u << 20);
    if (st == MM_OK) st = mm_dataset_open(dataset, MPI_COMM_NULL, &ds);
    if (st != MM_OK) {
        mm_error_print(stderr, -1);
        MPI_Finalize();
        return 1;
    }
    int kind = mm_spectrum_model_kind(m);
    unsigned bit = kind == MM_NMR_13C ? MM_MOD_NMR13C : MM_MOD_NMR1H;
    int64_t E = mm_spectrum_model_dim(m), N = mm_dataset_get_info(ds)->n_molecules;
    /* at most N molecules; the peaks grow */
    int64_t n = 0, S = 0, cap_s = 0;
    int64_t *mol = malloc((size_t)(N + 1) * sizeof(int64_t)), *poff = malloc((size_t)(N + 1) * sizeof(int64_t));
    int64_t *hash = malloc((size_t)(N + 1) * sizeof(int64_t));
    float *emb = malloc((size_t)(N * E + 1) * sizeof(float)), *emb0 = malloc((size_t)(N * E + 1) * sizeof(float));
    float *shift = NULL;
    int32_t *el = malloc((size_t)(N * N_ELEMENTS + 1) * sizeof(int32_t));
    if (!mol || !poff || !hash || !emb || !emb0 || !el) {
        fprintf(stderr, "bench_spectrum_embed: out of memory\n");
        return 1;
    }
    poff[0] = 0;
    const int64_t chunk = 2048;
    for (int64_t a = 0; a < N && st == MM_OK; a += chunk) {
        int64_t b = a + chunk < N ? a + chunk : N;
        st = mm_dataset_read_range(ds, a, b, bit, &ms);
        if (st != MM_OK) break;
        float *za = malloc((size_t)(ms.n * E) * sizeof(float)), *zb = malloc((size_t)(ms.n * E) * sizeof(float));
        st = mm_spectrum_encode(m, &ms, za);
        if (st == MM_OK) st = mm_spectrum_net_encode_set(&raw, &t, &ms, zb);
        const mm_spectra *sp = &ms.nmr[kind];
        for (int64_t i = 0; i < ms.n && st == MM_OK; i++) {
            if (!sp->ok[i]) continue;
            mol[n] = a + i;
            hash[n] = graph_hash(&ms, i);
            memcpy(emb + n * E, za + i * E, (size_t)E * sizeof(float));
            memcpy(emb0 + n * E, zb + i * E, (size_t)E * sizeof(float));
            for (int k = 0; k < N_ELEMENTS; k++) el[n * N_ELEMENTS + k] = 0;
            for (int64_t at = ms.atom_offset[i]; at < ms.atom_offset[i + 1]; at++)
                for (int k = 0; k < N_ELEMENTS; k++) el[n * N_ELEMENTS + k] += ms.atom_feat[9 * at] + 1 == elements[k];
            int64_t np = sp->peak_offset[i + 1] - sp->peak_offset[i];
            shift = grow(shift, &cap_s, S + np, sizeof *shift);
            memcpy(shift + S, sp->shift + sp->peak_offset[i], (size_t)np * sizeof(float));
            S += np;
            poff[n + 1] = S;
            n++;
        }
        free(za);
        free(zb);
    }
    int bad = st != MM_OK;
    if (bad) mm_error_print(stderr, -1);
    if (!bad) {
        hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (f < 0) {
            fprintf(stderr, "bench_spectrum_embed: cannot create %s\n", out);
            bad = 1;
        } else {
            hsize_t d1[1] = {(hsize_t)n}, d2[2] = {(hsize_t)n, (hsize_t)E}, de[2] = {(hsize_t)n, N_ELEMENTS};
            hsize_t dp[1] = {(hsize_t)n + 1}, dsft[1] = {(hsize_t)S};
            bad |= write_ds(f, "mol", H5T_NATIVE_INT64, 1, d1, mol);
            bad |= write_ds(f, "graph_hash", H5T_NATIVE_INT64, 1, d1, hash);
            bad |= write_ds(f, "emb", H5T_NATIVE_FLOAT, 2, d2, emb);
            bad |= write_ds(f, "emb_untrained", H5T_NATIVE_FLOAT, 2, d2, emb0);
            bad |= write_ds(f, "elements", H5T_NATIVE_INT32, 2, de, el);
            bad |= write_ds(f, "peak_offset", H5T_NATIVE_INT64, 1, dp, poff);
            bad |= write_ds(f, "shift", H5T_NATIVE_FLOAT, 1, dsft, shift);
            H5Fclose(f);
            printf("%s: %lld %s spectra of %lld molecules, embedding width %lld\n", out, (long long)n,
                   mm_nmr_kind_names[kind], (long long)N, (long long)E);
        }
    }
    free(mol);
    free(hash);
    free(emb);
    free(emb0);
    free(el);
    free(poff);
    free(shift);
    mm_molset_free(&ms);
    mm_dataset_close(&ds);
    mm_tape_destroy(&t);
    mm_spectrum_net_destroy(&raw);
    mm_spectrum_model_free(&m);
    MPI_Finalize();
    return bad;
}
