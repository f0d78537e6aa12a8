/* dataset.h: molecule sets in memory (columnar, CSR) and in one HDF5 file.
 *
 * Owns:
 *  - mm_molset: a columnar set of molecules in the CSR layout of DESIGN.md section 4
 *    (per-molecule rows, atom rows and bond rows addressed by offset arrays), plus the
 *    input rows that could not be featurised (rejects). Buffers grow geometrically
 *    through mm_malloc; offsets are local (atom_offset[0] = 0).
 *  - the HDF5 dataset file: a collective writer (every rank a contiguous slice, one
 *    file, offsets rebased to global; from a set in memory or from a spool of chunks on
 *    disk, for bounded memory), a validating reader that reads any sorted set
 *    of molecules with hyperslab selections, an inspect summary, and SHA-256.
 *
 * Promises:
 *  - A file written by mm_dataset_write has the same dataset contents whatever the
 *    number of ranks that wrote it; it appears under its name only when complete
 *    (written as "<path>.tmp.<pid of rank 0>", renamed by rank 0 after the close).
 *  - Every molecule in a set or a file that passed validation has >= 1 atom, bonds
 *    whose two atoms are distinct atoms of the same molecule, and feature indices
 *    inside the OGB vocabularies (mm_ds_atom_vocab, mm_ds_bond_vocab); its spectra
 *    (if any) have finite shifts and atoms in [-1, its atom count), ok = 0 with no peaks
 *    and ok = 1 with at least one.
 *  - A malformed, truncated or foreign file is an mm error (MM_ERR_IO / MM_ERR_FORMAT)
 *    whose message names the file and the dataset, never a crash. The module switches
 *    HDF5's automatic error printing off (process-wide) and turns HDF5's error stack
 *    into the mm error message.
 *  - Strings are variable-length UTF-8 string datasets (h5py reads them as str via
 *    .asstr()). HDF5 1.10 cannot write variable-length data through MPI-IO, so the
 *    writer writes the numeric datasets collectively, then rank 0 reopens the file
 *    alone and writes the strings and attributes, receiving each rank's strings in
 *    turn (never all of them at once).
 *
 * File layout (N molecules, A atoms, B bonds, T tasks, R rejects):
 *   /            attrs format="mmsa-dataset", version=1 (int64), n_molecules (int64),
 *                featurizer, source, source_sha256, created_by (strings)
 *   /smiles      string [N]          /source_row  int64 [N]
 *   /atom_offset int64 [N+1]         /atom_feat   uint8 [A, 9]
 *   /bond_offset int64 [N+1]         /bond_index  int32 [B, 2] (local atom indices)
 *   /bond_feat   uint8 [B, 3]
 *   /conformer/xyz float32 [A, 3]    /conformer/ok uint8 [N]        (optional)
 *   /image       uint8 [N, 3, H, W]                                  (optional)
 *   /fingerprint uint8 [N, 256]  2048 bits MSB-first                 (optional)
 *   /scaffold    string [N]                                          (optional)
 *   /labels      float32 [N, T]  NaN = missing; attr tasks = names   (optional)
 *   /nmr13c/peak_offset int64 [N+1], /nmr13c/shift float32 [S],     (optional, all four)
 *   /nmr13c/atom int32 [S] (local atom; -1 unknown), /nmr13c/ok uint8 [N]
 *   /nmr1h/...   the same for 1H (S its own peak count)              (optional, all four)
 *   /rejects/source_row int64 [R], /rejects/smiles string [R], /rejects/reason string [R]
 * The reader also accepts format="mmsa-golden" (the golden parity file, whose extra
 * groups it ignores, whose `tasks` may be a scalar string, and which has no rejects). */
#ifndef MMSA_DATASET_H
#define MMSA_DATASET_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mmsa/error.h"

#define MM_DATASET_VERSION 1
#define MM_DS_ATOM_FEATS 9        /* columns of atom_feat */
#define MM_DS_BOND_FEATS 3        /* columns of bond_feat */
#define MM_DS_FP_BYTES 256        /* 2048 fingerprint bits, packed */
#define MM_DS_IMAGE_CHANNELS 3    /* RGB */

/* OGB vocabulary sizes; index vocab-1 of each feature is "misc". */
extern const uint8_t mm_ds_atom_vocab[MM_DS_ATOM_FEATS]; /* 119,5,12,12,10,6,6,2,2 */
extern const uint8_t mm_ds_bond_vocab[MM_DS_BOND_FEATS]; /* 5,6,2 */

/* Modalities beyond the graph (smiles, source_row, atoms and bonds are always there). */
enum {
    MM_MOD_CONFORMER = 1u << 0,   /* xyz [A,3] + ok [N] */
    MM_MOD_IMAGE = 1u << 1,       /* [N,3,H,W] */
    MM_MOD_FINGERPRINT = 1u << 2, /* [N,256] */
    MM_MOD_SCAFFOLD = 1u << 3,    /* string [N] */
    MM_MOD_LABELS = 1u << 4,      /* [N,T] */
    MM_MOD_NMR13C = 1u << 5,      /* 13C NMR peaks: offsets [N+1], shift/atom [S], ok [N] */
    MM_MOD_NMR1H = 1u << 6        /* 1H NMR peaks, the same */
};
#define MM_MOD_ALL 0x7fu

/* NMR spectrum kinds: index into mm_molset.nmr and mm_mol_in.nmr. */
enum { MM_NMR_13C = 0, MM_NMR_1H = 1, MM_NMR_KINDS = 2 };
/* The modality bit of spectrum kind k. */
#define MM_MOD_NMR(k) (MM_MOD_NMR13C << (k))

/* ---------------------------------------------------------------- strings */

/* Strings back to back, each NUL-terminated: string i is chars + off[i]. */
typedef struct mm_strings {
    char *chars;       /* [cap_bytes], nbytes used */
    int64_t *off;      /* [cap_n + 1], n + 1 used; off[0] = 0, off[n] = nbytes */
    int64_t n, nbytes;
    int64_t cap_n, cap_bytes;
} mm_strings;

static inline const char *mm_strings_get(const mm_strings *s, int64_t i)
{
    return s->chars + s->off[i];
}

/* ---------------------------------------------------------------- molecule set */

/* The spectra of one kind (13C or 1H) of a set's molecules, CSR like the atoms: a list
 * of peaks per molecule. A molecule without a spectrum of this kind has ok = 0 and no
 * peaks; one with a spectrum has ok = 1 and at least one peak. */
typedef struct mm_spectra {
    int64_t *peak_offset; /* [n+1] peaks of molecule i: peak_offset[i] .. [i+1]-1 (local, from 0) */
    float *shift;         /* [n_peaks] ppm */
    int32_t *atom;        /* [n_peaks] assigned atom, local heavy-atom index of the molecule; -1 unknown */
    uint8_t *ok;          /* [n] molecule has a spectrum of this kind */
    int64_t n_peaks, cap_peaks;
} mm_spectra;

typedef struct mm_molset_opts {
    unsigned modalities;           /* MM_MOD_* bits */
    int image_h, image_w;          /* MM_MOD_IMAGE: raster size, e.g. 64 x 64 */
    int n_tasks;                   /* MM_MOD_LABELS: T >= 1 label columns */
    const char *const *task_names; /* [n_tasks], copied */
} mm_molset_opts;

typedef struct mm_molset {
    unsigned modalities;
    int image_h, image_w;
    int n_tasks;
    char **task_names;        /* [n_tasks] */

    int64_t n;                /* molecules */
    int64_t n_atoms;          /* A = atom_offset[n] */
    int64_t n_bonds;          /* B = bond_offset[n] */
    mm_strings smiles;        /* [n] */
    int64_t *source_row;      /* [n] row in the input file */
    int64_t *atom_offset;     /* [n+1] atoms of molecule i: rows atom_offset[i] .. [i+1]-1 */
    uint8_t *atom_feat;       /* [A, 9] */
    int64_t *bond_offset;     /* [n+1] */
    int32_t *bond_index;      /* [B, 2] (begin, end), local to the molecule */
    uint8_t *bond_feat;       /* [B, 3] */
    float *xyz;               /* [A, 3] Angstrom; rows of molecules with ok = 0 are 0 */
    uint8_t *conf_ok;         /* [n] 1 = conformer present */
    uint8_t *image;           /* [n, 3, H, W] RGB */
    uint8_t *fingerprint;     /* [n, 256] MSB-first packed bits */
    mm_strings scaffold;      /* [n] "" = no ring system */
    float *labels;            /* [n, T] NaN = missing */
    mm_spectra nmr[MM_NMR_KINDS]; /* MM_MOD_NMR13C / MM_MOD_NMR1H: buffers of kind k only with its bit */

    int64_t n_rejects;
    int64_t *reject_row;      /* [n_rejects] source row */
    mm_strings reject_smiles; /* [n_rejects] the input text */
    mm_strings reject_reason; /* [n_rejects] why it was rejected */

    int64_t cap_mol, cap_atoms, cap_bonds, cap_rejects; /* allocated rows */
} mm_molset;

/* One molecule in plain arrays, for mm_molset_append. Pointers of modalities the set
 * does not have are ignored. */
typedef struct mm_mol_in {
    const char *smiles;          /* required */
    int64_t source_row;
    int64_t n_atoms;             /* >= 1 */
    const uint8_t *atom_feat;    /* [n_atoms, 9] */
    int64_t n_bonds;             /* >= 0 */
    const int32_t *bond_index;   /* [n_bonds, 2] in [0, n_atoms), begin != end */
    const uint8_t *bond_feat;    /* [n_bonds, 3] */
    const float *xyz;            /* [n_atoms, 3] finite; may be NULL when conf_ok = 0 */
    uint8_t conf_ok;             /* 0 or 1; 0 stores zeros for xyz */
    const uint8_t *image;        /* [3, H, W], required with MM_MOD_IMAGE */
    const uint8_t *fingerprint;  /* [256], required with MM_MOD_FINGERPRINT */
    const char *scaffold;        /* NULL = "" */
    const float *labels;         /* [T] NaN = missing; NULL = all missing */
    struct {                     /* per MM_NMR_* kind, with MM_MOD_NMR(kind) */
        int64_t n_peaks;         /* 0 when ok = 0; >= 1 when ok = 1 */
        const float *shift;      /* [n_peaks] ppm, finite */
        const int32_t *atom;     /* [n_peaks] in [-1, n_atoms); -1 = not assigned */
        uint8_t ok;              /* 0 or 1 */
    } nmr[MM_NMR_KINDS];
} mm_mol_in;

/* ms must not be initialised already (or must have been freed). */
mm_status mm_molset_init(mm_molset *ms, const mm_molset_opts *opts);
/* Make room for at least n_mol molecules, n_atoms atoms, n_bonds bonds in total. */
mm_status mm_molset_reserve(mm_molset *ms, int64_t n_mol, int64_t n_atoms, int64_t n_bonds);
/* Validates, then appends; on failure the set is unchanged. */
mm_status mm_molset_append(mm_molset *ms, const mm_mol_in *m);
/* smiles NULL = ""; reason must be a non-empty string. */
mm_status mm_molset_append_reject(mm_molset *ms, int64_t source_row, const char *smiles,
                                  const char *reason);
/* Forget the molecules and rejects, keep the buffers and the layout. */
void mm_molset_clear(mm_molset *ms);
/* Free everything; safe on a zeroed or freed set. */
void mm_molset_free(mm_molset *ms);
/* Checks the invariants of the header comment (offsets, bonds, vocabularies, spectra). */
mm_status mm_molset_validate(const mm_molset *ms);

/* ---------------------------------------------------------------- writer */

typedef struct mm_dataset_meta {
    const char *featurizer;    /* required, e.g. "Open Babel 3.1.1, mmsa-chem 1" */
    const char *source;        /* required, input file name */
    const char *source_sha256; /* hex digest of the input, NULL = "" */
    const char *created_by;    /* NULL = "MMSA-C dataset writer (HDF5 x.y.z)" */
} mm_dataset_meta;

/* Collective over comm: rank r passes molecules [sum_{q<r} n_q, ... + n_r) of the file,
 * in rank order, and its rejects (which follow the same order). Every rank passes the
 * same path, meta and layout (modalities, image size, tasks); a rank may have 0
 * molecules. comm == MPI_COMM_NULL writes serially without MPI. All ranks return the
 * same success or failure; on failure no file appears at path and the temporary file
 * is removed. */
mm_status mm_dataset_write(const char *path, MPI_Comm comm, const mm_molset *local,
                           const mm_dataset_meta *meta);

/* Largest number of bytes one rank moves in one H5Dwrite call (default 256 MiB): a
 * rank's part of a big dataset is written in collective rounds of this size. */
void mm_dataset_set_io_block_bytes(size_t bytes);

/* Bounded memory: a producer that cannot hold its whole share (mmsa_prep) appends it
 * chunk by chunk to a spool, a file of its own rank, and writes the dataset from the
 * spool at the end. The file is byte-identical to mm_dataset_write of the same molecules
 * in one set, whatever the chunks: chunking only changes which rows one H5Dwrite call
 * carries. The writer holds one chunk's column at a time (at most the io block size);
 * rank 0 also holds one chunk's strings of one rank.
 *
 * The spool file is created at `path` (a name nobody else uses, in a directory with room
 * for about the dataset's size) and unlinked at once: it never outlives the process. */
typedef struct mm_dataset_spool mm_dataset_spool;
/* `layout` gives modalities, image size and tasks (its molecules are not taken). */
mm_status mm_dataset_spool_create(const char *path, const mm_molset *layout, mm_dataset_spool **out);
/* Copies the chunk's molecules and rejects to the end of the spool (same layout; they
 * follow the molecules appended before them); the caller may then clear the chunk. */
mm_status mm_dataset_spool_append(mm_dataset_spool *s, const mm_molset *chunk);
/* Frees and NULLs; safe on NULL. */
void mm_dataset_spool_free(mm_dataset_spool **s);
/* mm_dataset_write of everything appended to this rank's spool, in order. Collective,
 * with the same promises. */
mm_status mm_dataset_write_spool(const char *path, MPI_Comm comm, const mm_dataset_spool *spool,
                                 const mm_dataset_meta *meta);

/* ---------------------------------------------------------------- reader */

typedef struct mm_dataset_info {
    char *path;
    char *format;            /* "mmsa-dataset" or "mmsa-golden" */
    int64_t version;
    int64_t n_molecules, n_atoms, n_bonds, n_rejects;
    unsigned modalities;     /* MM_MOD_* present in the file */
    int image_h, image_w;
    int n_tasks;
    char **task_names;       /* [n_tasks] */
    char *featurizer, *source, *source_sha256, *created_by; /* "" when absent */
} mm_dataset_info;

typedef struct mm_dataset mm_dataset;

/* Opens and validates the layout: attributes, presence, dtype class and shape of every
 * dataset, atom_offset/bond_offset monotone from 0 to A/B (both are kept in memory,
 * 16 bytes per molecule). comm == MPI_COMM_NULL opens serially; otherwise the open is
 * collective over comm (MPI-IO) and so are the reads below: every rank calls them with
 * the same modalities and its own molecules (possibly none). */
mm_status mm_dataset_open(const char *path, MPI_Comm comm, mm_dataset **out);
void mm_dataset_close(mm_dataset **ds);
const mm_dataset_info *mm_dataset_get_info(const mm_dataset *ds);
/* [N+1] global offsets, e.g. for batching by size. */
const int64_t *mm_dataset_atom_offset(const mm_dataset *ds);
const int64_t *mm_dataset_bond_offset(const mm_dataset *ds);

/* Reads molecules idx[0] < idx[1] < ... < idx[n-1] (strictly increasing, in [0, N)) with
 * the graph and the requested modalities (a subset of the file's) into out, in that
 * order; contiguous runs become one hyperslab block. out must be zeroed or a set from
 * an earlier read or mm_molset_init: its content is replaced and, when the layout is
 * the same, its buffers are reused. Validates what it read (bonds within their
 * molecule, feature vocabularies, ok flags). */
mm_status mm_dataset_read_indices(mm_dataset *ds, const int64_t *idx, int64_t n,
                                  unsigned modalities, mm_molset *out);
/* Molecules [start, end). */
mm_status mm_dataset_read_range(mm_dataset *ds, int64_t start, int64_t end,
                                unsigned modalities, mm_molset *out);
/* Replaces out's rejects with the file's /rejects (none for a file without them). */
mm_status mm_dataset_read_rejects(mm_dataset *ds, mm_molset *out);
/* Reads every molecule (in blocks; ranks share the blocks) and validates it. */
mm_status mm_dataset_verify(mm_dataset *ds);

/* Human summary of a dataset file (serial): attributes, counts, modalities, image size,
 * per task the labelled count and positives, conformer ok fraction, rejects and the
 * first max_reasons of them. Validates every molecule on the way. */
mm_status mm_dataset_inspect(const char *path, FILE *out, int max_reasons);

/* ---------------------------------------------------------------- SHA-256 */

typedef struct mm_sha256_ctx {
    uint32_t h[8];
    uint64_t nbytes;
    uint8_t buf[64];
    size_t nbuf;
} mm_sha256_ctx;

void mm_sha256_init(mm_sha256_ctx *c);
void mm_sha256_update(mm_sha256_ctx *c, const void *data, size_t n);
void mm_sha256_final(mm_sha256_ctx *c, uint8_t digest[32]);
void mm_sha256(const void *data, size_t n, uint8_t digest[32]);
/* Lower-case hex, NUL-terminated. */
void mm_sha256_hex(const uint8_t digest[32], char hex[65]);
mm_status mm_sha256_file(const char *path, char hex[65]);

#endif
