/* fuzz_dataset: the dataset reader (dataset.h) and `mmsa_prep --inspect` on mutated
 * HDF5 files: open and validate the layout, read a range and a scattered set of
 * molecules with every modality the file claims, the rejects, verify every molecule,
 * then the inspect summary. Serial (MPI_COMM_NULL), as --inspect runs. The input is the
 * file. Property (dataset.h): a malformed file is MM_ERR_IO or MM_ERR_FORMAT with a
 * message, never a crash, and whatever a read returns passed validation. Crashes inside
 * libhdf5 itself on corrupt metadata are noted in tests/README.md. After every input no
 * HDF5 object (file, group, dataset, attribute, type) is left open. */
#include <hdf5.h>

#include "fuzz_common.h"
#include "mmsa/dataset.h"

static FILE *sink;

/* Full malloc stacks: libhdf5 has no frame pointers, so the fast unwinder stops at its
 * first frame and the suppressions of HDF5's own leaks on corrupt metadata (lsan.supp)
 * could not match; every such leak would end a job. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    sink = fopen("/dev/null", "w");
    if (!sink) abort();
    return 0;
}

static void expect_file_error(mm_status st)
{
    if (st != MM_OK && st != MM_ERR_IO && st != MM_ERR_FORMAT && st != MM_ERR_RANGE) mm_error_print(stderr, -1);
    FUZZ_ASSERT(st == MM_OK || st == MM_ERR_IO || st == MM_ERR_FORMAT || st == MM_ERR_RANGE);
    if (st != MM_OK) FUZZ_ASSERT(mm_error_message()[0] != '\0');
    mm_error_clear();
}

static void read_some(mm_dataset *ds)
{
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    FUZZ_ASSERT(info && info->n_molecules >= 0);
    const int64_t *ao = mm_dataset_atom_offset(ds), *bo = mm_dataset_bond_offset(ds);
    int64_t n = info->n_molecules;
    FUZZ_ASSERT(ao[0] == 0 && bo[0] == 0 && ao[n] == info->n_atoms && bo[n] == info->n_bonds);
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    int64_t end = n < 16 ? n : 16;
    mm_status st = mm_dataset_read_range(ds, 0, end, info->modalities, &ms);
    expect_file_error(st);
    if (st == MM_OK) {
        FUZZ_ASSERT(ms.n == end);
        FUZZ_ASSERT(mm_molset_validate(&ms) == MM_OK);
    }
    if (n > 1) { /* the last molecule and the first, in a second read into the same set */
        int64_t idx[2] = {0, n - 1};
        st = mm_dataset_read_indices(ds, idx, 2, info->modalities, &ms);
        expect_file_error(st);
        if (st == MM_OK) FUZZ_ASSERT(ms.n == 2 && mm_molset_validate(&ms) == MM_OK);
    }
    expect_file_error(mm_dataset_read_rejects(ds, &ms));
    mm_molset_free(&ms);
    expect_file_error(mm_dataset_verify(ds));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(data, size, ".h5");
    mm_dataset *ds = NULL;
    mm_status st = mm_dataset_open(path, MPI_COMM_NULL, &ds);
    expect_file_error(st);
    if (st == MM_OK) {
        read_some(ds);
        mm_dataset_close(&ds);
    }
    expect_file_error(mm_dataset_inspect(path, sink, 5));
    /* Every HDF5 object the reader opened is closed again, also on the error paths. */
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) fprintf(stderr, "%zd HDF5 objects left open\n", open_ids);
    FUZZ_ASSERT(open_ids == 0);
    return 0;
}
