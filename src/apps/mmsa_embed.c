/* mmsa_embed: export the embeddings of a dataset from a pre-training checkpoint. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/checkpoint.h"
#include "mmsa/config.h"
#include "mmsa/export.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -n P mmsa_embed --run RUN_DIR --dataset DATA.h5 --output EMB.h5 [options]\n"
            "\n"
            "Embeds every molecule of DATA.h5 (written by mmsa_prep) with the model of a pre-training\n"
            "run and writes z_<modality>, p_<modality>, u, mask and source_row to EMB.h5.\n"
            "\n"
            "  --run DIR           run directory of mmsa_pretrain (DIR/job.yaml, DIR/checkpoints/latest)\n"
            "  --checkpoint FILE   a specific checkpoint of that run instead of the latest\n"
            "  --chunk N           molecules per forward pass (default 256)\n"
            "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *run = NULL, *ckpt = NULL, *dataset = NULL, *out = NULL;
    long long chunk = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--run") && i + 1 < argc) run = argv[++i];
        else if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--output") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) {
            if (mm_cfg_parse_count(argv[i], argv[i + 1], 1, &chunk) != MM_OK) {
                if (rank == 0) mm_error_print(stderr, -1);
                MPI_Finalize();
                return 2;
            }
            i++;
        } else {
            if (rank == 0) {
                fprintf(stderr, "mmsa_embed: unknown or incomplete argument '%s'\n\n", argv[i]);
                usage(stderr);
            }
            MPI_Finalize();
            return 2;
        }
    }
    if (!run || !dataset || !out) {
        if (rank == 0) usage(stderr);
        MPI_Finalize();
        return 2;
    }
    char job_path[2048], latest[2048], ckdir[2048];
    snprintf(job_path, sizeof job_path, "%s/job.yaml", run);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
    mm_job job;
    mm_dist d;
    mm_status st = mm_dist_init(&d, MPI_COMM_WORLD);
    if (st == MM_OK) st = mm_job_load(job_path, &job);
    if (st == MM_OK && !ckpt) {
        bool found = false;
        st = mm_ckpt_latest(ckdir, latest, sizeof latest, &found);
        if (st == MM_OK && !found) {
            st = MM_ERR(MM_ERR_IO, "no checkpoint in %s", ckdir);
            mm_error_hint("run mmsa_pretrain first, or pass --checkpoint FILE");
        }
        ckpt = latest;
    }
    if (st == MM_OK) st = mm_export_embeddings(&job, ckpt, dataset, out, &d, chunk);
    if (st != MM_OK) {
        mm_error_print(stderr, rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0) printf("wrote %s (checkpoint %s)\n", out, ckpt);
    mm_dist_destroy(&d);
    MPI_Finalize();
    return 0;
}
