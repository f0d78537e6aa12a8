/* fuzz_smiles: a SMILES string through Open Babel and the whole featuriser without the
 * 3D conformer (too slow to fuzz): canonical SMILES and the atom-order scan, the OGB
 * graph, the Murcko scaffold, ECFP4 and the 2D depiction (fast layout or fallbacks).
 * The input is the SMILES (up to the first NUL). Properties (chem.h): bad input is
 * MM_ERR_CHEM with a reject reason, never another failure; a featurised molecule has
 * >= 1 atom, bonds between distinct atoms of the molecule, features inside the OGB
 * vocabularies, and the depiction the size asked for. */
#include "fuzz_common.h"
#include "fuzz_chem.h"

static mm_chem *chem;
static mm_mol_feat feat;

static void done(void)
{
    mm_mol_feat_free(&feat);
    mm_chem_destroy(&chem);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.conformer = 0;
    o.image_size = 32;
    if (mm_chem_init() != MM_OK || mm_chem_create(&o, &chem) != MM_OK) {
        mm_error_print(stderr, -1);
        abort();
    }
    mm_mol_feat_init(&feat);
    atexit(done);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *smiles = fuzz_string(data, size);
    mm_status st = mm_chem_featurize_smiles(chem, smiles, (uint64_t)size, &feat);
    fuzz_check_outcome(st, &feat, 32, smiles);
    mm_error_clear();
    free(smiles);
    return 0;
}
