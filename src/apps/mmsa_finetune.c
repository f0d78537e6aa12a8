/* mmsa_finetune: fine-tune the graph encoder on a labelled set.  mpirun -n P mmsa_finetune job.yaml
 * Exit status: 0 done, 1 failed (job, data, labels, training), 2 bad command line. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/finetune.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -n P mmsa_finetune JOB.yaml [options]\n"
            "\n"
            "Fine-tunes the GIN graph encoder (from scratch or from an mmsa_pretrain checkpoint,\n"
            "model.init) with a linear or MLP head on a labelled set: an mmsa_prep dataset\n"
            "(data.dataset) or a MoleculeNet-style CSV prepared on the fly (data.csv). Splits\n"
            "scaffold or random 80/10/10, trains train.seeds seeds, selects each on the\n"
            "validation metric and reports the test ROC-AUC (classification) or RMSE\n"
            "(regression) as mean +- std. Early stopping: with train.patience P > 0 a seed\n"
            "ends after P epochs without a better validation metric (default 0: every one of\n"
            "train.epochs runs); results.* record the epoch each seed stopped at.\n"
            "configs/finetune_bbbp.yaml is an example; --print-reference lists every key and\n"
            "its default.\n"
            "\n"
            "The run directory (train.run_dir) receives job.yaml (resolved), split.json (the\n"
            "molecule indices of each split), seed_<s>.jsonl (one line per epoch),\n"
            "seed_<s>_test_predictions.csv (best epoch), results.json and results.csv.\n"
            "\n"
            "options:\n"
            "  --set SECTION.KEY=VALUE  override one key of the job file (repeatable)\n"
            "  --prepare-only           prepare the data, check the labels, write the split; no training\n"
            "  --quiet                  no per-epoch lines (train.progress=false)\n"
            "  --print-reference        print the documented reference job file and exit\n"
            "  -h, --help               this text\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *job_path = NULL;
    bool quiet = false;
    unsigned flags = 0;
    int n_set = 0;
    const char *sets[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--print-reference")) {
            if (rank == 0) mm_cfg_write_reference(&mm_ft_schema, stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_set < 64) {
            sets[n_set++] = argv[++i];
        } else if (!strcmp(argv[i], "--prepare-only")) {
            flags |= MM_FT_PREPARE_ONLY;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else if (argv[i][0] != '-' && !job_path) {
            job_path = argv[i];
        } else {
            if (rank == 0) {
                fprintf(stderr, "mmsa_finetune: unknown or incomplete argument '%s'\n\n", argv[i]);
                usage(stderr);
            }
            MPI_Finalize();
            return 2;
        }
    }
    if (!job_path) {
        if (rank == 0) usage(stderr);
        MPI_Finalize();
        return 2;
    }
    mm_ft_job job;
    char *text = NULL;
    size_t len = 0;
    mm_status st = mm_ft_read_text(job_path, &text, &len);
    if (st == MM_OK) st = mm_ft_job_parse(job_path, text, &job);
    for (int i = 0; i < n_set && st == MM_OK; i++) st = mm_cfg_set(&mm_ft_schema, sets[i], &job);
    if (st == MM_OK && quiet) job.train.progress = false;
    if (st == MM_OK) st = mm_ft_job_validate(&job, job_path, text);
    if (text) mm_free_sized(text, len + 1);
    if (st != MM_OK) {
        /* every rank read the same job file and failed the same way: report once */
        if (rank == 0) mm_error_print(stderr, -1);
        MPI_Finalize();
        return 1;
    }
    mm_dist d;
    mm_ft_result res;
    st = mm_dist_init(&d, MPI_COMM_WORLD);
    if (st == MM_OK) st = mm_finetune_run(&job, &d, flags, &res);
    if (st != MM_OK) {
        /* Every rank returns the failure, and the ranks agree on it (mm_dist_agree): rank
         * 0 holds the cause, or the lowest failing rank's message, so it reports once. */
        if (rank == 0) mm_error_print(stderr, -1);
        MPI_Finalize();
        return 1;
    }
    if (rank == 0) {
        if (flags & MM_FT_PREPARE_ONLY) {
            printf("prepared: %s: %lld molecules, %d task%s; split train %lld / valid %lld / test %lld",
                   res.dataset, (long long)res.n_molecules, res.n_tasks, res.n_tasks == 1 ? "" : "s",
                   (long long)res.n_split[0], (long long)res.n_split[1], (long long)res.n_split[2]);
            if (res.n_groups) printf(" (%lld scaffolds)", (long long)res.n_groups);
            printf("; %s/split.json\n", job.train.run_dir);
        } else {
            mm_ft_result_print(&res, stdout);
            printf("results: %s/results.json\n", job.train.run_dir);
        }
    }
    mm_dist_destroy(&d);
    MPI_Finalize();
    return 0;
}
