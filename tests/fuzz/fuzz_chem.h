/* fuzz_chem.h: the featuriser the featuriser targets share (fuzz_chem_setup), and the
 * invariants of a featurised molecule (chem.h, dataset.h) they check on every molecule
 * they get through. */
#ifndef MMSA_FUZZ_CHEM_H
#define MMSA_FUZZ_CHEM_H

#include "fuzz_common.h"
#include "mmsa/chem.h"

/* One featuriser and one result per target process: no conformer (too slow to fuzz),
 * depictions of image_size pixels. */
static mm_chem *chem;
static mm_mol_feat feat;

static void fuzz_chem_done(void)
{
    mm_mol_feat_free(&feat);
    mm_chem_destroy(&chem);
}

static inline void fuzz_chem_setup(int image_size)
{
    fuzz_init();
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = 0;
    o.image_size = image_size;
    if (mm_chem_init() != MM_OK || mm_chem_create(&o, &chem) != MM_OK) {
        mm_error_print(stderr, -1);
        abort();
    }
    mm_mol_feat_init(&feat);
    atexit(fuzz_chem_done);
}

static inline void fuzz_check_feat(const mm_mol_feat *f, int image_size)
{
    FUZZ_ASSERT(f->reject == MM_CHEM_OK && f->reason[0] == '\0');
    FUZZ_ASSERT(f->smiles && f->smiles[0] != '\0' && f->scaffold);
    FUZZ_ASSERT(f->n_atoms >= 1 && f->n_atoms <= 200 && f->n_bonds >= 0);
    for (int32_t i = 0; i < f->n_atoms; i++)
        for (int k = 0; k < MM_CHEM_ATOM_FEATS; k++) FUZZ_ASSERT(f->atom_feat[i * MM_CHEM_ATOM_FEATS + k] < mm_chem_atom_vocab[k]);
    for (int32_t b = 0; b < f->n_bonds; b++) {
        int32_t u = f->bond_index[2 * b], v = f->bond_index[2 * b + 1];
        FUZZ_ASSERT(u >= 0 && u < f->n_atoms && v >= 0 && v < f->n_atoms && u != v);
        for (int k = 0; k < MM_CHEM_BOND_FEATS; k++) FUZZ_ASSERT(f->bond_feat[b * MM_CHEM_BOND_FEATS + k] < mm_chem_bond_vocab[k]);
    }
    FUZZ_ASSERT(f->image_size == image_size && f->image);
    unsigned sum = 0; /* every pixel is read: ASan checks the buffer's size */
    for (int i = 0; i < 3 * image_size * image_size; i++) sum += f->image[i];
    FUZZ_ASSERT(sum > 0);
}

/* A featuriser call's outcome: MM_OK with a valid molecule, or MM_ERR_CHEM with a reject
 * reason; anything else (MM_ERR_INTERNAL, ...) is a bug. */
static inline void fuzz_check_outcome(mm_status st, const mm_mol_feat *f, int image_size, const char *input)
{
    if (st == MM_OK) {
        fuzz_check_feat(f, image_size);
        return;
    }
    if (st != MM_ERR_CHEM || f->reject == MM_CHEM_OK) {
        fprintf(stderr, "featuriser failure that is not a reject on '%.200s':\n", input);
        mm_error_print(stderr, -1);
    }
    FUZZ_ASSERT(st == MM_ERR_CHEM && f->reject != MM_CHEM_OK && f->reason[0] != '\0');
}

#endif
