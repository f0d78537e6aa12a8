/* chem_internal.h: what the C parts of src/chem share with the Open Babel wrapper.
 *
 * obabel.cpp turns an Open Babel molecule into the plain graph below (heavy atoms in the
 * order of the canonical SMILES, bonds in the order RDKit creates them when it parses
 * that SMILES). The C files compute everything that is a pure graph rule: the SMILES
 * scan (atom order check, RDKit's bond order and chirality tags), the OGB features with
 * RDKit's radical / conjugation / hybridisation rules, CIP-like ranks for E/Z, the
 * Murcko scaffold selection, the fingerprint bit packing and the 2D layout. Keeping them
 * in C keeps the single C++ file a thin wrapper. */
#ifndef MMSA_CHEM_INTERNAL_H
#define MMSA_CHEM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mmsa/alloc.h"
#include "mmsa/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elements (elements.c) ------------------------------------------------------------ */

#define MM_N_ELEMENTS 119

typedef struct mm_element {
    const char *symbol;
    int n_outer;     /* outer-shell electrons */
    int n_valence;   /* entries of valence[] */
    int valence[4];  /* allowed valences, default first; {-1} = any */
} mm_element;

extern const mm_element mm_elements[MM_N_ELEMENTS];
/* Atomic number of a case-sensitive element symbol of len characters, or -1. */
int mm_element_from_symbol(const char *sym, int len);

/* ---- SMILES scan (smiles_scan.c) ---------------------------------------------------- */

typedef struct mm_smi_atom {
    int z;          /* atomic number; 0 for '*' */
    int aromatic;   /* written in lower case */
    int bracket;    /* written in brackets (RDKit then adds no implicit hydrogens) */
    int hcount;     /* hydrogens written in the brackets; 0 outside brackets */
    int ogb_chiral; /* OGB chirality index RDKit assigns when parsing the string:
                       0 unspecified, 1 CW, 2 CCW, 4 other classes (@SP, @TB, @OH, @AL) */
} mm_smi_atom;

typedef struct mm_smi_bond {
    int begin, end; /* atom indices (order of appearance), as RDKit orients the bond */
    char symbol;    /* written bond symbol, '\0' if none */
} mm_smi_bond;

typedef struct mm_smi_graph {
    int n_atoms, n_bonds;
    mm_smi_atom *atoms; /* [n_atoms], in order of appearance in the string */
    mm_smi_bond *bonds; /* [n_bonds], in RDKit's bond index order: chain and branch bonds in
                           order of appearance, then ring closures by ring number, then by
                           order of opening */
} mm_smi_graph;

/* Scans a SMILES string (memory from the arena). MM_ERR_CHEM for a string that is not
 * SMILES syntax (unbalanced brackets, unclosed rings, unknown elements). */
mm_status mm_smiles_scan(const char *smiles, mm_arena *arena, mm_smi_graph *out);

/* ---- plain molecular graph and OGB features (ogb.c) ---------------------------------- */

typedef struct mm_cg_atom {
    int z;         /* atomic number */
    int charge;    /* formal charge */
    int isotope;   /* mass number, 0 = natural abundance */
    int h;         /* total hydrogens */
    int aromatic;  /* Open Babel's aromaticity */
    int in_ring;
    int bracket;   /* bracket atom in the canonical SMILES */
    int ogb_chiral;/* from the SMILES scan */
} mm_cg_atom;

typedef struct mm_cg_bond {
    int a, b;      /* atom indices (a = RDKit begin atom) */
    int order;     /* Kekule order 1, 2, 3; anything else is "misc" */
    int aromatic;
    int in_ring;
    int ogb_stereo;/* 0 none, 1 Z, 2 E: set by the caller from the cis/trans configuration */
} mm_cg_bond;

typedef struct mm_cgraph {
    int n_atoms, n_bonds;
    mm_cg_atom *atoms;
    mm_cg_bond *bonds;
    /* adjacency built by mm_cg_prepare: atom i's bonds are adj_bond[adj_start[i] ..
     * adj_start[i+1]-1], in bond order */
    int *adj_start;  /* [n_atoms + 1] */
    int *adj_bond;   /* [2 * n_bonds] */
} mm_cgraph;

mm_status mm_cg_prepare(mm_cgraph *g, mm_arena *arena);
static inline int mm_cg_other(const mm_cgraph *g, int bond, int atom)
{
    return g->bonds[bond].a == atom ? g->bonds[bond].b : g->bonds[bond].a;
}

/* The 9 atom and 3 bond OGB feature indices ([n_atoms, 9] and [n_bonds, 3]). Radicals,
 * conjugation and hybridisation follow RDKit's rules on this graph. */
mm_status mm_cg_ogb_features(const mm_cgraph *g, mm_arena *arena, uint8_t *atom_feat,
                             uint8_t *bond_feat);

/* CIP-like ranks as RDKit's legacy stereo perception computes them (higher = higher
 * priority): iterated refinement of (atomic number, mass) by the sorted ranks of the
 * neighbours, each counted twice its bond order (aromatic 3), hydrogens lowest. Ties
 * mean "not distinguishable". rank: [n_atoms]. */
mm_status mm_cg_cip_ranks(const mm_cgraph *g, mm_arena *arena, int *rank);

/* Bemis-Murcko selection as RDKit's MurckoDecompose: keep ring atoms, atoms on paths
 * between rings, and atoms doubly bonded to those; new_h[i] is the hydrogen count of a
 * kept atom once its removed neighbours are gone. Returns the number of kept atoms in
 * *n_keep (0: acyclic, no scaffold). keep, new_h: [n_atoms]. */
mm_status mm_cg_murcko(const mm_cgraph *g, mm_arena *arena, uint8_t *keep, int *new_h, int *n_keep);

/* ---- 2D layout (layout2d.c) ------------------------------------------------------------ */

/* Depiction coordinates (bond length 1) for the graph, or MM_ERR_CHEM with a reason
 * when the molecule is beyond this simple layout (bridged ring systems, collisions it
 * cannot remove), so the caller can use Open Babel's own layout instead.
 * Rings: the atoms of ring r are ring_atoms[ring_start[r] .. ring_start[r+1]-1] (a smallest
 * set of smallest rings, any order within a ring). cis_trans: n_cis_trans rows
 * (u, a, b, v, want_cis) for double bonds a=b with neighbours u of a and v of b.
 * xy: [n_atoms, 2]. */
mm_status mm_layout2d(const mm_cgraph *g, const int *ring_start, const int *ring_atoms, int n_rings,
                      const int *cis_trans, int n_cis_trans, mm_arena *arena, double *xy);

/* Coordinates for anything (cages, macrocycles, crowded molecules): stress majorisation
 * towards graph distances, 200 sweeps, O(n^2) per sweep; fragments side by side. */
mm_status mm_layout2d_stress(const mm_cgraph *g, mm_arena *arena, double *xy);

#ifdef __cplusplus
}
#endif

#endif
