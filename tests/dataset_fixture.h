/* dataset_fixture.h: a deterministic synthetic molecule set and comparisons, shared by
 * test_dataset.c and test_mpi_dataset.c (header-only: static functions). */
#ifndef MMSA_TEST_DATASET_FIXTURE_H
#define MMSA_TEST_DATASET_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mmsa/dataset.h"

#define FX_H 8
#define FX_W 6
#define FX_T 2
static const char *const fx_tasks[FX_T] = {"toxic", "logS"};

static inline mm_molset_opts fx_opts(void)
{
    return (mm_molset_opts){MM_MOD_ALL, FX_H, FX_W, FX_T, fx_tasks};
}

/* Molecule i of the synthetic set: i % 5 == 2 has one atom and no bond; i % 4 == 3 has
 * conformer ok = 0; labels are missing in patterns; smiles and scaffolds vary in
 * length (scaffold "" for i % 3 == 0); a 13C spectrum of 1 + i % 6 peaks unless
 * i % 3 == 1, a 1H spectrum of 1 + i % 3 peaks when i % 4 == 0, some peaks with atom -1.
 * Row of molecule i in the "input": 2 i. */
static inline mm_status fx_append(mm_molset *ms, int64_t i)
{
    enum { MAXA = 16, MAXB = 20 };
    uint8_t af[MAXA * 9], bf[MAXB * 3], img[3 * FX_H * FX_W], fp[256];
    int32_t bi[MAXB * 2];
    float xyz[MAXA * 3], lab[FX_T];
    char smi[64], scaf[64];
    int64_t na = (i % 5 == 2) ? 1 : 2 + (i * 7) % 13, nb = 0;
    for (int64_t a = 0; a < na; a++)
        for (int f = 0; f < 9; f++) af[a * 9 + f] = (uint8_t)((i * 31 + a * 7 + f * 3) % mm_ds_atom_vocab[f]);
    for (int64_t a = 0; a + 1 < na; a++, nb++) {
        bi[2 * nb] = (int32_t)a;
        bi[2 * nb + 1] = (int32_t)(a + 1);
    }
    if (na >= 5) { /* ring closure */
        bi[2 * nb] = (int32_t)(na - 1);
        bi[2 * nb + 1] = 0;
        nb++;
    }
    for (int64_t b = 0; b < nb; b++)
        for (int f = 0; f < 3; f++) bf[b * 3 + f] = (uint8_t)((i * 5 + b * 11 + f) % mm_ds_bond_vocab[f]);
    for (int64_t k = 0; k < 3 * na; k++) xyz[k] = (float)sin(0.37 * (double)(i * 64 + k)) * 3.0f;
    for (int k = 0; k < 3 * FX_H * FX_W; k++) img[k] = (uint8_t)(i * 13 + k * 7);
    for (int k = 0; k < 256; k++) fp[k] = (uint8_t)((i * 29 + k * k) & (k % 3 ? 0x81 : 0x18));
    lab[0] = (i % 3 == 1) ? NAN : (float)(i % 2);
    lab[1] = (i % 5 == 0) ? NAN : (float)i * 0.25f - 1.0f;
    int len = snprintf(smi, sizeof smi, "C%lldC", (long long)i);
    for (int64_t k = 0; k < i % 7 && len < 60; k++) smi[len++] = k % 2 ? 'O' : 'N';
    smi[len] = '\0';
    if (i % 3 == 0)
        scaf[0] = '\0';
    else
        snprintf(scaf, sizeof scaf, "c1ccc%lldcc1", (long long)(i % 4));
    mm_mol_in m = {smi, 2 * i, na, af, nb, bi, bf, xyz, (uint8_t)(i % 4 != 3), img, fp, scaf, lab, {{0}}};
    float shift[MM_NMR_KINDS][8];
    int32_t atom[MM_NMR_KINDS][8];
    const int64_t np[MM_NMR_KINDS] = {i % 3 == 1 ? 0 : 1 + i % 6, i % 4 == 0 ? 1 + i % 3 : 0};
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        for (int64_t p = 0; p < np[k]; p++) {
            shift[k][p] = k == MM_NMR_13C ? 12.5f + (float)(i * 3 + p * 17 % 190) : 0.75f + 0.125f * (float)((i + p) % 80);
            atom[k][p] = (i + p) % 7 == 5 ? -1 : (int32_t)((i + 3 * p) % na);
        }
        m.nmr[k].n_peaks = np[k];
        m.nmr[k].shift = shift[k];
        m.nmr[k].atom = atom[k];
        m.nmr[k].ok = np[k] > 0;
    }
    return mm_molset_append(ms, &m);
}

/* Reject k of the synthetic set: its row, text and reason (one reason non-ASCII). */
static inline mm_status fx_append_reject(mm_molset *ms, int64_t k)
{
    char smi[32], why[64];
    snprintf(smi, sizeof smi, "C1CC(%lld", (long long)k);
    if (k % 3 == 1)
        snprintf(why, sizeof why, "no heavy atoms");
    else if (k % 3 == 2)
        snprintf(why, sizeof why, "parse error: unclosed ring \xc3\xa9t\xc3\xa9 %lld", (long long)k);
    else
        snprintf(why, sizeof why, "parse error: unmatched bracket");
    return mm_molset_append_reject(ms, 6 * k + 1, smi, why);
}

/* Molecules [m0, m1) and rejects [r0, r1) of the synthetic set into a fresh set. */
static inline mm_status fx_build(mm_molset *ms, int64_t m0, int64_t m1, int64_t r0, int64_t r1)
{
    mm_molset_opts o = fx_opts();
    MM_CALL(mm_molset_init(ms, &o));
    for (int64_t i = m0; i < m1; i++) MM_CALL(fx_append(ms, i));
    for (int64_t k = r0; k < r1; k++) MM_CALL(fx_append_reject(ms, k));
    return MM_OK;
}

static inline int fx_feq(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

/* 0 when molecule i of a equals molecule j of b in every modality both have
 * (`mods`); otherwise prints the difference and returns 1. */
static inline int fx_mol_equal(const mm_molset *a, int64_t i, const mm_molset *b, int64_t j, unsigned mods)
{
#define FX_FAIL(...) do { fprintf(stderr, "molecule %lld vs %lld: ", (long long)i, (long long)j); \
                          fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); return 1; } while (0)
    if (strcmp(mm_strings_get(&a->smiles, i), mm_strings_get(&b->smiles, j)))
        FX_FAIL("smiles %s vs %s", mm_strings_get(&a->smiles, i), mm_strings_get(&b->smiles, j));
    if (a->source_row[i] != b->source_row[j]) FX_FAIL("source_row");
    int64_t na = a->atom_offset[i + 1] - a->atom_offset[i], nb = a->bond_offset[i + 1] - a->bond_offset[i];
    if (na != b->atom_offset[j + 1] - b->atom_offset[j]) FX_FAIL("atom count");
    if (nb != b->bond_offset[j + 1] - b->bond_offset[j]) FX_FAIL("bond count");
    int64_t aa = a->atom_offset[i], ab = b->atom_offset[j], ba = a->bond_offset[i], bb = b->bond_offset[j];
    if (memcmp(a->atom_feat + aa * 9, b->atom_feat + ab * 9, (size_t)na * 9)) FX_FAIL("atom_feat");
    if (nb && memcmp(a->bond_index + 2 * ba, b->bond_index + 2 * bb, (size_t)nb * 8)) FX_FAIL("bond_index");
    if (nb && memcmp(a->bond_feat + ba * 3, b->bond_feat + bb * 3, (size_t)nb * 3)) FX_FAIL("bond_feat");
    if (mods & MM_MOD_CONFORMER) {
        if (a->conf_ok[i] != b->conf_ok[j]) FX_FAIL("conf_ok");
        if (memcmp(a->xyz + aa * 3, b->xyz + ab * 3, (size_t)na * 12)) FX_FAIL("xyz");
    }
    if (mods & MM_MOD_IMAGE) {
        size_t ib = 3 * (size_t)a->image_h * (size_t)a->image_w;
        if (a->image_h != b->image_h || a->image_w != b->image_w) FX_FAIL("image size");
        if (memcmp(a->image + (size_t)i * ib, b->image + (size_t)j * ib, ib)) FX_FAIL("image");
    }
    if ((mods & MM_MOD_FINGERPRINT) && memcmp(a->fingerprint + i * 256, b->fingerprint + j * 256, 256))
        FX_FAIL("fingerprint");
    if ((mods & MM_MOD_SCAFFOLD) && strcmp(mm_strings_get(&a->scaffold, i), mm_strings_get(&b->scaffold, j)))
        FX_FAIL("scaffold");
    if (mods & MM_MOD_LABELS) {
        if (a->n_tasks != b->n_tasks) FX_FAIL("task count");
        for (int t = 0; t < a->n_tasks; t++)
            if (!fx_feq(a->labels[i * a->n_tasks + t], b->labels[j * b->n_tasks + t])) FX_FAIL("label %d", t);
    }
    for (int k = 0; k < MM_NMR_KINDS; k++) {
        if (!(mods & MM_MOD_NMR(k))) continue;
        if ((a->modalities ^ b->modalities) & MM_MOD_NMR(k)) FX_FAIL("nmr kind %d in one set only", k);
        if (!(a->modalities & MM_MOD_NMR(k))) continue; /* in neither */
        const mm_spectra *sa = &a->nmr[k], *sb = &b->nmr[k];
        int64_t pa = sa->peak_offset[i], pb = sb->peak_offset[j], np = sa->peak_offset[i + 1] - pa;
        if (sa->ok[i] != sb->ok[j]) FX_FAIL("nmr kind %d ok", k);
        if (np != sb->peak_offset[j + 1] - pb) FX_FAIL("nmr kind %d peak count", k);
        if (np && memcmp(sa->shift + pa, sb->shift + pb, (size_t)np * sizeof(float))) FX_FAIL("nmr kind %d shift", k);
        if (np && memcmp(sa->atom + pa, sb->atom + pb, (size_t)np * sizeof(int32_t))) FX_FAIL("nmr kind %d atom", k);
    }
    return 0;
#undef FX_FAIL
}

/* 0 when the rejects of a and b are the same. */
static inline int fx_rejects_equal(const mm_molset *a, const mm_molset *b)
{
    if (a->n_rejects != b->n_rejects) {
        fprintf(stderr, "rejects: %lld vs %lld\n", (long long)a->n_rejects, (long long)b->n_rejects);
        return 1;
    }
    for (int64_t k = 0; k < a->n_rejects; k++)
        if (a->reject_row[k] != b->reject_row[k] ||
            strcmp(mm_strings_get(&a->reject_smiles, k), mm_strings_get(&b->reject_smiles, k)) ||
            strcmp(mm_strings_get(&a->reject_reason, k), mm_strings_get(&b->reject_reason, k))) {
            fprintf(stderr, "reject %lld differs\n", (long long)k);
            return 1;
        }
    return 0;
}

#endif
