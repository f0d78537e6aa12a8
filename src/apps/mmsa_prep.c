/* mmsa_prep: molecule file -> one featurised HDF5 dataset, in parallel.
 *   mpirun -n P mmsa_prep --input FILE --output OUT.h5 [options]
 *   mpirun -n P mmsa_prep --config prep.yaml [options]
 * Flags override the YAML file; the work is mm_prep_run (include/mmsa/prep.h).
 * Exit status: 0 done, 1 failed (input, output, featuriser), 2 bad command line. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/chem.h"
#include "mmsa/dataset.h"
#include "mmsa/prep.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -n P mmsa_prep --input FILE --output OUT.h5 [options]\n"
            "       mpirun -n P mmsa_prep --config prep.yaml [options]\n"
            "       mmsa_prep --inspect FILE.h5\n"
            "\n"
            "Featurises every molecule of FILE with Open Babel (OGB graph, 3D conformer, 2D\n"
            "depiction, ECFP4, Murcko scaffold, labels) into one HDF5 dataset (DESIGN.md\n"
            "section 4). Each rank featurises a contiguous slice of the rows; the file is the\n"
            "same whatever the number of ranks, and it appears only when complete. Rows that\n"
            "cannot be featurised go to /rejects with their row and the reason; a summary is\n"
            "printed at the end.\n"
            "\n"
            "input (.csv, .csv.gz, .smi, .smi.gz, .sdf, .sdf.gz):\n"
            "  --input FILE          molecule file                          (input.path)\n"
            "  --format F            auto|csv|smi|sdf (default: from the name) (input.format)\n"
            "  --smiles-col NAME     CSV column with the SMILES (default: smiles, SMILES,\n"
            "                        Smiles, mol or canonical_smiles)       (input.smiles_col)\n"
            "  --labels LIST         label columns (SD: data items) by name, a,b,c; a name\n"
            "                        with a comma in double quotes; 'all' = every CSV column\n"
            "                        but the SMILES one. Empty cell = missing (NaN) (input.labels)\n"
            "  --limit N             only the first N rows                  (input.limit)\n"
            "output:\n"
            "  --output OUT.h5       dataset file to write                  (output.path)\n"
            "  --chunk N             rows a rank holds featurised at once (4096); the rest\n"
            "                        wait in a spool file next to OUT.h5. Bounds the memory\n"
            "                        (~13 KiB a molecule at 64x64), not the file (output.chunk_molecules)\n"
            "features:\n"
            "  --no-3d               no conformers (SD input keeps its own 3D) (features.conformer)\n"
            "  --ff-steps N          force-field steps per conformer (" MM_CHEM_STR(MM_CHEM_FF_STEPS_DEFAULT) ")   (features.ff_steps)\n"
            "  --seed S              conformer seed (1)                     (features.seed)\n"
            "  --no-image            no 2D depiction                        (features.image)\n"
            "  --image-size N        depiction side in pixels (64)          (features.image_size)\n"
            "  --max-atoms N         reject molecules with more heavy atoms (128) (features.max_atoms)\n"
            "  --no-nmr              SD input: do not read the 13C / 1H NMR spectra of the\n"
            "                        data items (read when present)          (features.nmr)\n"
            "report:\n"
            "  --png-dir DIR         write PNGs of the first depictions     (report.png_dir)\n"
            "  --png-count N         how many (8)                           (report.png_count)\n"
            "  --quiet               no progress line                       (report.progress)\n"
            "other:\n"
            "  --config FILE.yaml    settings file (configs/prep_example.yaml shows every key)\n"
            "  --set SECTION.KEY=V   set any key of the settings (repeatable)\n"
            "  --inspect FILE.h5     print the summary of a dataset file and exit\n"
            "  --print-reference     print every settings key with its default and exit\n"
            "  -h, --help            this text\n"
            "\n"
            "exit status: 0 done, 1 failed (no output file is left behind), 2 bad command line\n");
}

/* Flags that take a value and the key they set; flags without a value set a fixed value. */
static const struct {
    const char *flag, *key, *fixed;
} FLAGS[] = {
    {"--input", "input.path", NULL},          {"--format", "input.format", NULL},
    {"--smiles-col", "input.smiles_col", NULL}, {"--labels", "input.labels", NULL},
    {"--limit", "input.limit", NULL},         {"--output", "output.path", NULL},
    {"--chunk", "output.chunk_molecules", NULL},
    {"--no-3d", "features.conformer", "false"}, {"--ff-steps", "features.ff_steps", NULL},
    {"--seed", "features.seed", NULL},        {"--no-image", "features.image", "false"},
    {"--image-size", "features.image_size", NULL}, {"--max-atoms", "features.max_atoms", NULL},
    {"--no-nmr", "features.nmr", "false"},
    {"--png-dir", "report.png_dir", NULL},    {"--png-count", "report.png_count", NULL},
    {"--quiet", "report.progress", "false"},
};
#define N_FLAGS ((int)(sizeof FLAGS / sizeof FLAGS[0]))

static int finish(int code)
{
    MPI_Finalize();
    return code;
}

static int bad_usage(int rank, const char *fmt, const char *arg)
{
    if (rank == 0) {
        fprintf(stderr, "mmsa_prep: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n(mmsa_prep --help lists the options)\n");
    }
    return finish(2);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    /* first pass: modes that stop at once, and the settings file (flags then override it) */
    const char *config = NULL, *inspect = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            return finish(0);
        } else if (!strcmp(argv[i], "--print-reference")) {
            if (rank == 0) mm_cfg_write_reference(&mm_prep_schema, stdout);
            return finish(0);
        } else if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--inspect")) {
            if (i + 1 >= argc) return bad_usage(rank, "%s needs a file name", argv[i]);
            *(argv[i][2] == 'c' ? &config : &inspect) = argv[i + 1];
            i++;
        }
    }
    if (inspect) {
        /* serial: rank 0 reads, the others wait for its verdict */
        int code = 0;
        if (rank == 0 && mm_dataset_inspect(inspect, stdout, 10) != MM_OK) {
            mm_error_print(stderr, -1);
            code = 1;
        }
        MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
        return finish(code);
    }

    mm_prep_config cfg;
    mm_status st = config ? mm_cfg_load_file(&mm_prep_schema, config, &cfg) : mm_prep_config_defaults(&cfg);
    if (st != MM_OK) {
        if (rank == 0) {
            mm_error_hint("configs/prep_example.yaml shows every key; mmsa_prep --print-reference lists them");
            mm_error_print(stderr, -1);
        }
        return finish(1);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *key = NULL, *value = NULL;
        if (!strcmp(a, "--config") || !strcmp(a, "--inspect")) {
            i++;
            continue;
        }
        if (!strcmp(a, "--set")) {
            if (i + 1 >= argc) return bad_usage(rank, "%s needs SECTION.KEY=VALUE", a);
            value = argv[++i];
        } else {
            for (int k = 0; k < N_FLAGS && !key; k++)
                if (!strcmp(a, FLAGS[k].flag)) {
                    key = FLAGS[k].key;
                    if (FLAGS[k].fixed) value = FLAGS[k].fixed;
                    else if (i + 1 < argc) value = argv[++i];
                    else return bad_usage(rank, "%s needs a value", a);
                }
            if (!key) return bad_usage(rank, "unknown argument '%s'", a);
        }
        char assignment[MM_CFG_STR_MAX + 64];
        if (key) snprintf(assignment, sizeof assignment, "%s=%s", key, value);
        else snprintf(assignment, sizeof assignment, "%s", value);
        if (mm_cfg_set(&mm_prep_schema, assignment, &cfg) != MM_OK) {
            if (rank == 0) {
                mm_error_hint("from the command-line argument %s", a);
                mm_error_print(stderr, -1);
            }
            return finish(2);
        }
    }
    if (argc == 1) {
        if (rank == 0) usage(stderr);
        return finish(2);
    }

    mm_prep_result res;
    st = mm_prep_run(&cfg, MPI_COMM_WORLD, stdout, &res);
    if (st != MM_OK) {
        /* every rank returned the failure; the rank that holds the cause reports it */
        if (res.failed_rank < 0 || res.failed_rank == rank) mm_error_print(stderr, rank);
        return finish(1);
    }
    return finish(0);
}
