/* mmsa_pretrain: distributed MMSA pre-training.  mpirun -n P mmsa_pretrain job.yaml */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/spectrum.h"
#include "mmsa/acml.h"
#include "mmsa/train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -n P mmsa_pretrain JOB.yaml [options]\n"
            "\n"
            "Pre-trains on a dataset written by mmsa_prep (model.objective): mmsa, the MMSA model\n"
            "(DESIGN.md section 3); spectrum_autoencoder, the NMR spectrum encoder of spectrum.kind\n"
            "(configs/spectrum_ae_nmr13c.yaml) on the molecules that have that spectrum; acml, ACML's\n"
            "student GIN against a frozen teacher (section 3b; configs/acml_*.yaml), which also\n"
            "writes <run_dir>/heldout_embeddings.h5 for mmsa_eval.\n"
            "Every setting is in the job file; configs/reference.yaml documents each key and its\n"
            "default. The run directory (train.run_dir) receives job.yaml (resolved), log.jsonl\n"
            "(one JSON line every train.log_every steps) and checkpoints/ (HDF5; the run resumes\n"
            "from the latest one when checkpoint.resume is true).\n"
            "\n"
            "options:\n"
            "  --set SECTION.KEY=VALUE  override one key of the job file (repeatable)\n"
            "  --steps N                stop after N more steps (then checkpoint)\n"
            "  --eval-retrieval N       before and after training, report graph->fingerprint\n"
            "                           retrieval accuracy on the last N molecules (set\n"
            "                           train.holdout >= N so they are not trained on)\n"
            "  --quiet                  no progress line\n"
            "  --print-reference        print the documented reference job file and exit\n"
            "  -h, --help               this text\n");
}

/* The spectrum autoencoder's run: same run directory, log, checkpoints and --steps. */
static mm_status run_spectrum_ae(const mm_job *job, mm_dist *d, long long steps, bool quiet)
{
    mm_spectrum_trainer tr;
    mm_status st = mm_spectrum_trainer_init(&tr, job, d);
    tr.quiet = quiet;
    if (st == MM_OK && d->rank == 0)
        fprintf(stderr, "mmsa_pretrain: spectrum autoencoder (%s, %lld bins): %lld of %lld molecules have the spectrum "
                        "(%lld for training), batch %d on %d rank(s), steps %lld..%lld\n",
                mm_nmr_kind_names[job->spectrum.kind], (long long)tr.net.grid.n_bins, (long long)tr.n_with,
                (long long)tr.n_molecules, (long long)tr.n_train, job->train.batch_size, d->size, (long long)tr.step,
                (long long)tr.total_steps);
    if (st == MM_OK) st = mm_spectrum_trainer_run(&tr, steps);
    if (st == MM_OK && d->rank == 0)
        printf("done: %lld steps; %lld peaks outside the grid dropped; checkpoints in %s\n", (long long)tr.step,
               (long long)tr.dropped_total, tr.ckpt_dir);
    mm_spectrum_trainer_destroy(&tr);
    return st;
}

/* model.objective acml: train, then the held-out embeddings and the retrieval before and after. */
static mm_status run_acml(const mm_job *job, mm_dist *d, long long steps, bool quiet)
{
    mm_acml_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return MM_ERR(MM_ERR_NOMEM, "trainer");
    tr->quiet = quiet;
    mm_status st = mm_acml_trainer_init(tr, job, d);
    tr->quiet = quiet;
    if (st == MM_OK && d->rank == 0) {
        fprintf(stderr, "mmsa_pretrain (acml): %lld molecules, %lld for training, %lld held out; teachers:",
                (long long)tr->n_molecules, (long long)tr->n_train, (long long)tr->n_held);
        for (int k = 0; k < tr->n_teachers; k++) fprintf(stderr, " %s", mm_teacher_names[tr->teacher[k].kind]);
        fprintf(stderr, "; batch %d on %d rank(s), steps %lld..%lld\n", job->train.batch_size, d->size,
                (long long)tr->step, (long long)tr->total_steps);
    }
    if (st == MM_OK) st = mm_acml_trainer_run(tr, steps);
    char path[1200];
    snprintf(path, sizeof path, "%s/heldout_embeddings.h5", job->train.run_dir);
    double top1[2] = {0, 0};
    if (st == MM_OK && tr->n_held >= 2) {
        st = mm_acml_write_heldout(tr, path, top1);
        if (st == MM_OK && d->rank == 0)
            printf("retrieval %s -> graph, top-1 among the held-out molecules: untrained %.1f%%, trained %.1f%%; "
                   "embeddings in %s (mmsa_eval --run %s)\n",
                   mm_teacher_names[tr->teacher[0].kind], 100 * top1[1], 100 * top1[0], path, job->train.run_dir);
    }
    if (st == MM_OK && d->rank == 0) printf("done: %lld steps; checkpoints in %s\n", (long long)tr->step, tr->ckpt_dir);
    /* after an error of one rank the dataset's collective close could wait forever: the
     * caller aborts instead */
    if (st == MM_OK || mm_error_agreed()) mm_acml_trainer_destroy(tr);
    free(tr);
    return st;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *job_path = NULL;
    long long steps = 0, eval_n = 0;
    mm_status arg_st = MM_OK;
    bool quiet = false;
    int n_set = 0;
    const char *sets[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--print-reference")) {
            if (rank == 0) mm_cfg_write_reference(&mm_job_schema, stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_set < 64) {
            sets[n_set++] = argv[++i];
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            if ((arg_st = mm_cfg_parse_count(argv[i], argv[i + 1], 1, &steps)) != MM_OK) break;
            i++;
        } else if (!strcmp(argv[i], "--eval-retrieval") && i + 1 < argc) {
            if ((arg_st = mm_cfg_parse_count(argv[i], argv[i + 1], 2, &eval_n)) != MM_OK) break;
            i++;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else if (argv[i][0] != '-' && !job_path) {
            job_path = argv[i];
        } else {
            if (rank == 0) {
                fprintf(stderr, "mmsa_pretrain: unknown or incomplete argument '%s'\n\n", argv[i]);
                usage(stderr);
            }
            MPI_Finalize();
            return 2;
        }
    }
    if (arg_st != MM_OK) {
        if (rank == 0) mm_error_print(stderr, -1);
        MPI_Finalize();
        return 2;
    }
    if (!job_path) {
        if (rank == 0) usage(stderr);
        MPI_Finalize();
        return 2;
    }
    mm_job job;
    mm_dist d;
    mm_trainer tr;
    memset(&tr, 0, sizeof tr);
    memset(&d, 0, sizeof d);
    mm_status st = mm_dist_init(&d, MPI_COMM_WORLD);
    if (st == MM_OK) st = mm_cfg_load_file(&mm_job_schema, job_path, &job);
    for (int i = 0; i < n_set && st == MM_OK; i++) st = mm_cfg_set(&mm_job_schema, sets[i], &job);
    if (st == MM_OK) st = mm_job_validate(&job);
    if (st != MM_OK) {
        /* every rank read the same job file and failed the same way: report once */
        if (rank == 0) mm_error_print(stderr, -1);
        MPI_Finalize();
        return 1;
    }
    if (job.model.objective == MM_OBJ_SPECTRUM_AE || job.model.objective == MM_OBJ_ACML) {
        if (eval_n > 0)
            st = mm_dist_agree(&d, MM_ERR(MM_ERR_CONFIG, "--eval-retrieval needs model.objective: mmsa (ACML runs "
                                                         "write heldout_embeddings.h5 for mmsa_eval)"));
        else if (job.model.objective == MM_OBJ_ACML)
            st = run_acml(&job, &d, steps, quiet);
        else
            st = run_spectrum_ae(&job, &d, steps, quiet);
    } else {
        st = mm_trainer_init(&tr, &job, &d);
        tr.quiet = quiet;
    }
    double r1_before = 0, r5_before = 0, r1 = 0, r5 = 0;
    int64_t n_mol = tr.n_molecules;
    if (job.model.objective != MM_OBJ_MMSA) {
        /* done above; the error reporting below is shared */
    } else if (st == MM_OK && eval_n > n_mol) {
        /* every rank has the same count: the same error on every rank */
        st = mm_dist_agree(&d, MM_ERR(MM_ERR_CONFIG, "--eval-retrieval %lld: the dataset %s has %lld molecules", eval_n,
                                      job.train.dataset, (long long)n_mol));
    } else if (st == MM_OK && eval_n > job.train.holdout && rank == 0) {
        fprintf(stderr, "mmsa_pretrain: warning: --eval-retrieval %lld includes %lld molecules that are trained on "
                        "(train.holdout is %lld; set it to %lld to keep them out)\n",
                eval_n, eval_n - (long long)job.train.holdout, (long long)job.train.holdout, eval_n);
    }
    if (st == MM_OK && eval_n > 0) {
        st = mm_eval_retrieval(&tr, n_mol - eval_n, n_mol, &r1_before, &r5_before);
        if (st == MM_OK && rank == 0)
            printf("retrieval before: graph->fingerprint top-1 %.1f%%, top-5 %.1f%% among %lld held-out molecules "
                   "(chance %.2f%%)\n",
                   100 * r1_before, 100 * r5_before, (long long)eval_n, 100.0 / (double)eval_n);
    }
    if (st == MM_OK && job.model.objective == MM_OBJ_MMSA) {
        if (rank == 0)
            fprintf(stderr, "mmsa_pretrain: %lld molecules (%lld for training), batch %d on %d rank(s), steps %lld..%lld\n",
                    (long long)tr.n_molecules, (long long)tr.n_train, job.train.batch_size, d.size, (long long)tr.step,
                    (long long)tr.total_steps);
        st = mm_trainer_run(&tr, steps);
    }
    if (st == MM_OK && eval_n > 0) {
        st = mm_eval_retrieval(&tr, n_mol - eval_n, n_mol, &r1, &r5);
        if (st == MM_OK && rank == 0)
            printf("retrieval after:  graph->fingerprint top-1 %.1f%%, top-5 %.1f%% among %lld held-out molecules\n",
                   100 * r1, 100 * r5, (long long)eval_n);
    }
    if (st != MM_OK && mm_error_agreed()) {
        /* Every rank holds the same error (mm_dist_agree): rank 0 reports it once and
         * the ranks close the dataset and end together. */
        if (rank == 0) mm_error_print(stderr, -1);
        mm_trainer_destroy(&tr);
        mm_dist_destroy(&d);
        MPI_Finalize();
        return 1;
    }
    if (st != MM_OK) {
        mm_error_print(stderr, rank);
        /* An error of this rank alone: abort so no other rank waits in a collective. */
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    if (rank == 0 && job.model.objective == MM_OBJ_MMSA)
        printf("done: %lld steps; checkpoints in %s\n", (long long)tr.step, tr.ckpt_dir);
    mm_trainer_destroy(&tr);
    mm_dist_destroy(&d);
    MPI_Finalize();
    return 0;
}
