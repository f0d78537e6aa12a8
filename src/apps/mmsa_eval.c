/* mmsa_eval: cross-modal retrieval and isomer discrimination of an ACML run, on the
 * molecules the run held out (eval.h). Serial: rank 0 does the work. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/config.h"
#include "mmsa/eval.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mmsa_eval --run RUN_DIR [options]\n"
            "       mmsa_eval --embeddings HELDOUT.h5 --dataset DATA.h5 [options]\n"
            "\n"
            "Evaluates an ACML run on the molecules it held out, for every teacher it trained:\n"
            "  retrieval    teacher -> graph and graph -> teacher, top-1/5/10 over pools of molecules\n"
            "               (disjoint blocks of a seeded permutation; 'all' = the whole held-out set),\n"
            "               beside the untrained model and chance (k / pool size);\n"
            "  isomers      each molecule's true graph ranked among its constitutional isomers (same\n"
            "               molecular formula, different canonical SMILES) by its teacher embedding:\n"
            "               top-1 accuracy beside chance (1 / group size), by group size.\n"
            "Scores are dot products of the projected embeddings; ties go to the smaller row.\n"
            "Writes eval.json, eval.md (also printed), topk.csv, topk.gp and topk.png (gnuplot).\n"
            "\n"
            "  --run DIR           the run directory: embeddings DIR/heldout_embeddings.h5, dataset =\n"
            "                      train.dataset of DIR/job.yaml\n"
            "  --embeddings FILE   held-out embeddings file (format mmsa-acml-embeddings)\n"
            "  --dataset FILE      the dataset the run trained on (mmsa_prep output)\n"
            "  --out DIR           output directory (default: <run>/eval, i.e. next to the embeddings)\n"
            "  --pools LIST        pool sizes, comma-separated, 'all' = the whole set (default 100,1000,all)\n"
            "  --seed N            seed of the pool permutation (default 0)\n"
            "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *run = NULL, *emb = NULL, *dataset = NULL, *out = NULL;
    mm_eval_opts o;
    mm_eval_opts_default(&o);
    mm_status st = MM_OK;
    int rc = 0;
    for (int i = 1; i < argc && st == MM_OK && !rc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--run") && i + 1 < argc) run = argv[++i];
        else if (!strcmp(argv[i], "--embeddings") && i + 1 < argc) emb = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--pools") && i + 1 < argc) {
            st = mm_eval_parse_pools(argv[i], argv[i + 1], &o);
            i++;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            long long seed = 0;
            st = mm_cfg_parse_count(argv[i], argv[i + 1], 0, &seed);
            o.seed = (uint64_t)seed;
            i++;
        } else {
            if (rank == 0) fprintf(stderr, "mmsa_eval: unknown or incomplete argument '%s'\n\n", argv[i]);
            rc = 2;
        }
    }
    if (st == MM_OK && !rc && (run ? emb || dataset : !emb || !dataset)) {
        if (rank == 0)
            fprintf(stderr, "mmsa_eval: give --run DIR, or both --embeddings FILE and --dataset FILE\n\n");
        rc = 2;
    }
    if (st != MM_OK || rc) {
        if (rank == 0) {
            if (st != MM_OK) mm_error_print(stderr, -1);
            else usage(stderr);
        }
        MPI_Finalize();
        return 2;
    }
    if (rank == 0) {
        char emb_buf[4096], ds_buf[MM_CFG_STR_MAX];
        if (run) {
            st = mm_eval_resolve_run(run, emb_buf, sizeof emb_buf, ds_buf, sizeof ds_buf);
            emb = emb_buf;
            dataset = ds_buf;
        }
        if (st == MM_OK) st = mm_eval_files(emb, dataset, out, &o, stdout);
        if (st != MM_OK) {
            mm_error_print(stderr, -1);
            rc = 1;
        }
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
