/* fuzz_smiles: a SMILES string through Open Babel and the whole featuriser without the
 * 3D conformer (too slow to fuzz): canonical SMILES and the atom-order scan, the OGB
 * graph, the Murcko scaffold, ECFP4 and the 2D depiction (fast layout or fallbacks).
 * The input is the SMILES (up to the first NUL). Properties (chem.h): bad input is
 * MM_ERR_CHEM with a reject reason, never another failure; a featurised molecule has
 * >= 1 atom, bonds between distinct atoms of the molecule, features inside the OGB
 * vocabularies, and the depiction the size asked for. */
#include "fuzz_common.h"
#include "fuzz_chem.h"

#define IMAGE 32

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_chem_setup(IMAGE);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *smiles = fuzz_string(data, size);
    mm_status st = mm_chem_featurize_smiles(chem, smiles, (uint64_t)size, &feat);
    fuzz_check_outcome(st, &feat, IMAGE, smiles);
    mm_error_clear();
    free(smiles);
    return 0;
}
