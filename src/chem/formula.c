/* formula.c: the molecular formula of a featurised molecule (chem.h), from its OGB atom
 * features alone: element, hydrogen count and formal charge of every heavy atom. */
#include <stdio.h>
#include <string.h>

#include "chem_internal.h"
#include "mmsa/chem.h"

/* Appends "<sym><count>" (count 1 written as nothing) to buf at *len; 0 when full. */
static int put(char *buf, size_t n, size_t *len, const char *sym, long long count)
{
    int w = count == 1 ? snprintf(buf + *len, n - *len, "%s", sym)
                       : snprintf(buf + *len, n - *len, "%s%lld", sym, count);
    if (w < 0 || (size_t)w >= n - *len) return 0;
    *len += (size_t)w;
    return 1;
}

mm_status mm_chem_formula_atoms(const uint8_t *atom_feat, int64_t n_atoms, char *buf, size_t n)
{
    MM_CHECK_ARG(atom_feat && buf && n > 0 && n_atoms >= 1, "mm_chem_formula_atoms: bad argument");
    buf[0] = '\0';
    long long count[MM_N_ELEMENTS] = {0}, charge = 0;
    for (int64_t a = 0; a < n_atoms; a++) {
        const uint8_t *f = atom_feat + a * MM_CHEM_ATOM_FEATS;
        int z = f[0] + 1; /* OGB: atomic number - 1; 118 = misc */
        if (f[0] >= mm_chem_atom_vocab[0] - 1)
            return MM_ERR(MM_ERR_ARG, "atom %lld: element index %d is OGB's 'misc' (no element known)", (long long)a,
                          f[0]);
        if (f[4] >= mm_chem_atom_vocab[4] - 1)
            return MM_ERR(MM_ERR_ARG, "atom %lld: hydrogen count index %d is OGB's 'misc' (more than 8)",
                          (long long)a, f[4]);
        if (f[3] >= mm_chem_atom_vocab[3] - 1)
            return MM_ERR(MM_ERR_ARG, "atom %lld: formal charge index %d is OGB's 'misc' (beyond +-5)",
                          (long long)a, f[3]);
        count[z]++;
        count[1] += f[4];
        charge += (long long)f[3] - 5;
    }
    /* Hill order, as Open Babel's OBMol::GetFormula: with carbon, C then H then the other
     * symbols alphabetically; without carbon, every symbol alphabetically. */
    size_t len = 0;
    int hill = count[6] > 0;
    if (hill && (!put(buf, n, &len, "C", count[6]) || (count[1] && !put(buf, n, &len, "H", count[1]))))
        goto full;
    const char *last = "";
    for (;;) { /* next symbol in alphabetical order (strcmp: ASCII, 'B' < 'Be' < 'Br' < 'C') */
        int best = -1;
        for (int z = 1; z < MM_N_ELEMENTS; z++) {
            if (!count[z] || (hill && (z == 1 || z == 6))) continue;
            if (strcmp(mm_elements[z].symbol, last) > 0 &&
                (best < 0 || strcmp(mm_elements[z].symbol, mm_elements[best].symbol) < 0))
                best = z;
        }
        if (best < 0) break;
        if (!put(buf, n, &len, mm_elements[best].symbol, count[best])) goto full;
        last = mm_elements[best].symbol;
    }
    for (long long q = charge < 0 ? -charge : charge; q > 0; q--) /* Open Babel writes "++", "--" */
        if (!put(buf, n, &len, charge > 0 ? "+" : "-", 1)) goto full;
    return MM_OK;
full:
    buf[0] = '\0';
    return MM_ERR(MM_ERR_ARG, "mm_chem_formula_atoms: the formula does not fit %zu bytes", n);
}
