/* chem.h: molecule featurisation with Open Babel behind a C interface.
 *
 * Owns: the Open Babel state of the process (plugin and data directories, the error
 * log) and, per featuriser, the Open Babel objects reused from molecule to molecule and
 * the buffers of the last result.
 *
 * Promises:
 * - One molecule in (SMILES, or an SD record), one mm_mol_feat out: heavy atoms only
 *   (hydrogens, including isotopic ones, become hydrogen counts), canonical SMILES
 *   (Open Babel "can" format, stereo included), the OGB graph, a 3D conformer, a 2D
 *   depiction, the ECFP4 fingerprint and the Bemis-Murcko scaffold.
 * - Atom order: atom i is the i-th atom written in the canonical SMILES. The order is
 *   checked by scanning the string back, so re-parsing `smiles` with any toolkit that
 *   numbers atoms in order of appearance (RDKit, Open Babel) gives the same atoms.
 * - Bond order and orientation: bond k is RDKit's bond k when RDKit parses `smiles`
 *   (chain bonds in order of appearance, then ring closures by ring number), so the graph
 *   is the one OGB's smiles2graph builds from that string.
 * - Feature indices are OGB's (ogb.utils.features): atom
 *   [atomic number - 1 (118 misc), chirality (0 unspecified, 1 CW, 2 CCW, 3 other,
 *   4 misc), total degree (0..10, 11 misc), formal charge + 5 (11 misc), total H (0..8,
 *   9 misc), radical electrons (0..4, 5 misc), hybridisation (SP, SP2, SP3, SP3D, SP3D2 =
 *   0..4, 5 misc), aromatic, in ring]; bond [type (single 0, double 1, triple 2,
 *   aromatic 3, misc 4), stereo (none 0, Z 1, E 2, cis 3, trans 4, any 5), conjugated].
 *   Chirality CW/CCW is RDKit's tag for `smiles` (relative to RDKit's bond order);
 *   radicals, conjugation and hybridisation follow RDKit's rules (see src/chem/ogb.c for
 *   the remaining known differences and the choices made).
 * - Conformer: Open Babel's builder, then MMFF94 (UFF when MMFF94 has no parameters),
 *   conjugate gradients for at most ff_steps steps (ff_steps 0: the builder's geometry,
 *   no force field set up, conf_uff 0); the random numbers the builder draws
 *   are seeded with the per-molecule seed, the build starts from the canonical SMILES
 *   and the stereocentres are repaired in atom order, so the same molecule and seed give
 *   the same coordinates whatever came before, in this process or another (with
 *   ff_threads = 1; OpenMP reductions over several threads may differ in the last bits).
 *   A failure sets conf_ok = 0 and zero coordinates; the molecule is kept.
 *   An SD record with 3D coordinates keeps its own (heavy-atom) coordinates.
 * - Image: Open Babel's depiction (OBDepict) painted with cairo into memory, RGB on
 *   white, channel-first [3, H, W], H = W = image_size. Deterministic: the same molecule
 *   gives identical bytes whatever was drawn before (so whatever the rank count). 2D
 *   coordinates come from a fast built-in layout (regular ring polygons, zigzag chains,
 *   double bonds with their cis/trans configuration), or, for bridged ring systems and
 *   crowded drawings, from Open Babel's own layout (up to 40 heavy atoms) or a stress
 *   layout (larger).
 * - Fingerprint: Open Babel's ECFP4 folded to 2048 bits, packed MSB-first: bit j is
 *   byte j / 8, mask 0x80 >> (j % 8) (numpy.packbits order).
 * - Scaffold: RDKit's MurckoScaffoldSmiles rule (ring systems, linkers, atoms doubly
 *   bonded to them; no stereo, no isotopes) written as Open Babel canonical SMILES;
 *   "" for an acyclic molecule.
 * - Bad input never crashes: the featurise calls return MM_ERR_CHEM, the error message
 *   names the input, and feat->reject / feat->reason say why, for the /rejects table.
 * - Open Babel's own messages go to a buffer, not to stderr (opts.ob_log changes that);
 *   the last one is quoted in the reason of a parse failure.
 * - Not thread-safe (Open Babel's error log and the builder's random numbers are global);
 *   MPI ranks are processes, one featuriser each. */
#ifndef MMSA_CHEM_H
#define MMSA_CHEM_H

#include <stddef.h>
#include <stdint.h>

#include "mmsa/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MM_CHEM_ATOM_FEATS 9
#define MM_CHEM_BOND_FEATS 3
#define MM_CHEM_FP_BITS 2048
#define MM_CHEM_FP_BYTES 256
/* Default force-field step budget of a conformer (mm_chem_opts.ff_steps, mmsa_prep's
 * features.ff_steps). Measured by benchmarks/bench_conformer on 240 ZINC250k molecules
 * (benchmarks/README.md): each step costs about 0.8 ms of one core; after 50 steps the
 * heavy-atom distances are within 0.14 A (median dRMSD; 90th percentile 0.45 A) of the
 * converged geometry, against 0.36 A straight from the builder and 0.08 A after 100 steps.
 * With 50 steps all of ZINC250k with 3D took 2 h 11 min on 2 cores (measured end to end;
 * 60.8 ms per conformer); with 250, about 6 h. */
#define MM_CHEM_FF_STEPS_DEFAULT 50
#define MM_CHEM_STR_(x) #x
#define MM_CHEM_STR(x) MM_CHEM_STR_(x)

/* Version of the featuriser's output conventions; bump when any feature changes.
 * 2: depictions and conformers no longer depend on what the process featurised before
 *    (stereocentres in atom order, the painter's font size reset), and salts with many
 *    acyclic fragments get their scaffold (issue 14); datasets written by version 1 differ
 *    in the depictions of some stereo and charged molecules and in some conformers. */
#define MM_CHEM_FEATURIZER_VERSION 2

/* Vocabulary size of each OGB feature (the last index is "misc" where the list has one). */
extern const int mm_chem_atom_vocab[MM_CHEM_ATOM_FEATS]; /* 119 5 12 12 10 6 6 2 2 */
extern const int mm_chem_bond_vocab[MM_CHEM_BOND_FEATS]; /* 5 6 2 */

typedef enum mm_chem_reject {
    MM_CHEM_OK = 0,
    MM_CHEM_EMPTY,          /* empty or blank SMILES / record */
    MM_CHEM_PARSE,          /* Open Babel could not read it */
    MM_CHEM_NO_HEAVY_ATOM,  /* nothing but hydrogens */
    MM_CHEM_TOO_MANY_ATOMS, /* more heavy atoms than opts.max_atoms */
    MM_CHEM_INCONSISTENT    /* a self-check failed (atom order, bond count); a bug or an exotic molecule */
} mm_chem_reject;

const char *mm_chem_reject_name(mm_chem_reject r); /* "empty", "parse", ... */

typedef struct mm_chem_opts {
    int max_atoms;     /* heavy-atom limit (default 200) */
    int conformer;     /* 1: build a 3D conformer (default 1) */
    int ff_steps;      /* force-field conjugate-gradient steps (default MM_CHEM_FF_STEPS_DEFAULT) */
    int ff_threads;    /* OpenMP threads of Open Babel's force fields (default 1: one rank per
                          core; 0 leaves the OpenMP setting of the process alone). Note: this
                          sets the process's OpenMP thread count (omp_set_num_threads). */
    int keep_input_3d; /* 1: an SD record with 3D coordinates keeps them (default 1); a record
                          with all z = 0 and drawing-sized bonds counts as 2D whatever its header */
    int image;         /* 1: render the depiction (default 1) */
    int image_size;    /* H = W in pixels, 16..1024 (default 64) */
    int fingerprint;   /* 1: ECFP4 (default 1) */
    int scaffold;      /* 1: Murcko scaffold (default 1) */
    int ob_log;        /* Open Babel messages: 0 kept in a buffer (default), 1 errors to stderr,
                          2 errors and warnings to stderr */
} mm_chem_opts;

void mm_chem_opts_default(mm_chem_opts *o);

/* Open Babel setup, once per process (the featuriser calls it too): if BABEL_LIBDIR /
 * BABEL_DATADIR are unset, finds the plugin and data directories of the installed Open
 * Babel (/usr/lib/<arch>/openbabel/<version>, /usr/share/openbabel/<version>) and sets
 * them; then checks that the SMILES, SDF and canonical SMILES formats, the ECFP4
 * fingerprint and the MMFF94 force field load. MM_ERR_CONFIG with a HINT otherwise. */
mm_status mm_chem_init(void);
/* "mmsa-chem <MM_CHEM_FEATURIZER_VERSION> (Open Babel <version>)", for dataset attributes. */
const char *mm_chem_version(void);

/* One featurised molecule. The featuriser reuses the buffers from call to call; the
 * caller copies what it keeps before the next call on the same mm_mol_feat. */
typedef struct mm_mol_feat {
    mm_chem_reject reject; /* MM_CHEM_OK when featurised */
    char reason[512];      /* why it was rejected ("" when featurised) */
    char *smiles;          /* canonical SMILES */
    char *scaffold;        /* Murcko scaffold SMILES; "" if acyclic or opts.scaffold == 0 */
    int32_t n_atoms, n_bonds;
    uint8_t *atom_feat;    /* [n_atoms, 9] OGB atom feature indices */
    int32_t *bond_index;   /* [n_bonds, 2] (begin, end) local atom indices */
    uint8_t *bond_feat;    /* [n_bonds, 3] OGB bond feature indices */
    float *xyz;            /* [n_atoms, 3] Angstrom, atom order as above; zeros if !conf_ok */
    uint8_t conf_ok;       /* 1: xyz is a conformer */
    uint8_t conf_from_input; /* 1: the coordinates came from the SD record */
    uint8_t conf_uff;      /* 1: MMFF94 had no parameters, UFF was used */
    int32_t image_size;    /* H = W of image (0 if no image) */
    uint8_t *image;        /* [3, H, W] RGB, white background */
    uint8_t fingerprint[MM_CHEM_FP_BYTES]; /* ECFP4, MSB-first; zeros if opts.fingerprint == 0 */
    /* SD input: where the atoms of the record's atom block went (for data items that
     * name atoms, such as NMR shift assignments). input_atom[k] is the atom above of the
     * record's atom k (0-based, atom-block order); a hydrogen gives its heavy neighbour,
     * -1 one without. n_input_atoms = 0 for SMILES input and rejected records. */
    int32_t n_input_atoms;
    int32_t *input_atom;   /* [n_input_atoms] */
    uint8_t *input_is_h;   /* [n_input_atoms] 1: the record's atom k is a hydrogen */
    /* capacities of the buffers above (internal) */
    size_t cap_smiles, cap_scaffold, cap_atoms, cap_bonds, cap_image, cap_input;
} mm_mol_feat;

void mm_mol_feat_init(mm_mol_feat *f);
void mm_mol_feat_free(mm_mol_feat *f);

typedef struct mm_chem mm_chem;

mm_status mm_chem_create(const mm_chem_opts *o, mm_chem **out);
void mm_chem_destroy(mm_chem **c);
const mm_chem_opts *mm_chem_get_opts(const mm_chem *c);

/* Featurise a SMILES string. seed: the conformer's random seed (use the source row, so
 * the result does not depend on how rows are split over ranks). MM_OK, or MM_ERR_CHEM
 * with f->reject set; other codes (MM_ERR_NOMEM, MM_ERR_INTERNAL) are real failures. */
mm_status mm_chem_featurize_smiles(mm_chem *c, const char *smiles, uint64_t seed, mm_mol_feat *f);
/* Featurise an SD record (a molfile block, optionally followed by data items). */
mm_status mm_chem_featurize_sdf(mm_chem *c, const char *record, uint64_t seed, mm_mol_feat *f);

/* Writes a [3, h, w] RGB image (e.g. mm_mol_feat.image) as a PNG, for a person to look at. */
mm_status mm_chem_write_png(const uint8_t *image, int h, int w, const char *path);

/* Fingerprint helpers: bit j of a packed MSB-first fingerprint, and the number of
 * common / total set bits of two (Tanimoto = common / (a + b - common)). */
static inline int mm_chem_fp_bit(const uint8_t *fp, int j) { return (fp[j >> 3] >> (7 - (j & 7))) & 1; }
double mm_chem_fp_tanimoto(const uint8_t *a, const uint8_t *b);
/* Repacks nbits bits held LSB-first in 32-bit words (Open Babel's fingerprint layout:
 * bit j is bit j % 32 of word j / 32) into MSB-first bytes: out [nbits / 8]. */
void mm_chem_fp_pack_words(const uint32_t *words, int nbits, uint8_t *out);

/* Molecular formula in Hill order with the net charge as '+' / '-' repeated, as Open
 * Babel's OBMol::GetFormula writes it ("C2H6O", "CH6N+", "Ca++"). mm_chem_formula parses
 * a SMILES with Open Babel; mm_chem_formula_atoms derives the formula from OGB atom
 * features [n_atoms, 9] (element, total H, formal charge), so a dataset's molecules need
 * no re-parsing. They agree except on isotopic hydrogens, which the features count as H
 * and Open Babel writes as D or T. An atom whose element, H count or charge is OGB's
 * "misc" has no formula: MM_ERR_ARG naming the atom. buf [n]; MM_ERR_ARG when it does
 * not fit. */
mm_status mm_chem_formula(mm_chem *c, const char *smiles, char *buf, size_t n);
mm_status mm_chem_formula_atoms(const uint8_t *atom_feat, int64_t n_atoms, char *buf, size_t n);

/* Seconds spent per stage by this featuriser since creation (for benchmarks):
 * [0] parse, canonical SMILES, graph and OGB features (with re-reading the canonical
 * SMILES the conformer and image start from), [1] conformer, [2] image (2D layout and
 * drawing), [3] fingerprint, [4] scaffold. */
void mm_chem_stage_seconds(const mm_chem *c, double out[5]);
/* Molecules whose depiction the fast layout (src/chem/layout2d.c) declined (bridged rings,
 * crowded drawings): drawn with Open Babel's mcdl layout up to 40 heavy atoms, with a
 * stress-majorisation layout above (mcdl's overlap search can run for minutes there). */
long mm_chem_layout_fallbacks(const mm_chem *c);

#ifdef __cplusplus
}
#endif

#endif
