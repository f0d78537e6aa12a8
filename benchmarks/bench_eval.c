/* bench_eval: mmsa_eval at a real size. A held-out embeddings file is built from a real
 * dataset's fingerprints (teacher = a random projection of the 2048 bits, graph = the same
 * plus Gaussian noise; the untrained model = two unrelated projections), then evaluated
 * with the program's library path (mm_eval_files), timed; and the isomer groups that the
 * set holds (every molecule counted as held out) are listed by size.
 * Without --dataset it featurises BBBP (graph and fingerprint) itself. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mmsa/alloc.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"
#include "mmsa/dataset.h"
#include "mmsa/eval.h"
#include "mmsa/rng.h"

#define CHECK(expr)                          \
    do {                                     \
        if ((expr) != MM_OK) {               \
            mm_error_print(stderr, -1);      \
            MPI_Abort(MPI_COMM_WORLD, 1);    \
        }                                    \
    } while (0)

/* CPU seconds of this process (the machine is shared: wall time includes waiting). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* BBBP featurised here (graph and fingerprint), written to path. */
static void prep_bbbp(const char *path)
{
    char csv[1024];
    const char *shared = getenv("MMSA_SHARED");
    snprintf(csv, sizeof csv, "%s/data/moleculenet/bbbp.csv", shared && *shared ? shared : "../shared");
    mm_chem_opts co;
    mm_chem_opts_default(&co);
    co.conformer = co.image = co.scaffold = 0;
    mm_chem *c = NULL;
    CHECK(mm_chem_create(&co, &c));
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    mm_molset_opts o = {MM_MOD_FINGERPRINT, 0, 0, 0, NULL};
    CHECK(mm_molset_init(&ms, &o));
    mm_table *t = NULL;
    CHECK(mm_table_open(csv, NULL, &t));
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    mm_table_row row;
    bool eof = false;
    for (;;) {
        CHECK(mm_table_next(t, &row, &eof));
        if (eof) break;
        mm_status st = mm_chem_featurize_smiles(c, row.smiles, (uint64_t)row.row, &f);
        if (st == MM_ERR_CHEM) {
            mm_error_clear();
            continue;
        }
        CHECK(st);
        mm_mol_in m = {f.smiles, row.row, f.n_atoms, f.atom_feat, f.n_bonds, f.bond_index, f.bond_feat,
                       NULL, 0, NULL, f.fingerprint, NULL, NULL, {{0}}};
        CHECK(mm_molset_append(&ms, &m));
    }
    mm_dataset_meta meta = {mm_chem_version(), csv, NULL, "bench_eval"};
    CHECK(mm_dataset_write(path, MPI_COMM_NULL, &ms, &meta));
    mm_table_close(&t);
    mm_mol_feat_free(&f);
    mm_molset_free(&ms);
    mm_chem_destroy(&c);
}

/* out [n, P] = bits [n, 2048] x R, R [2048, P] N(0, 1/2048) drawn from (seed, stream). */
static void project(const uint8_t *fp, int64_t n, int64_t P, uint64_t seed, uint64_t stream, float *out)
{
    float *R = malloc(sizeof(float) * 2048 * (size_t)P);
    mm_rng r;
    mm_rng_init(&r, seed, stream);
    for (int64_t i = 0; i < 2048 * P; i++) R[i] = mm_rng_normal(&r) / sqrtf(2048.0f);
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * P;
        memset(o, 0, sizeof(float) * (size_t)P);
        for (int j = 0; j < 2048; j++)
            if (mm_chem_fp_bit(fp + i * 256, j))
                for (int64_t q = 0; q < P; q++) o[q] += R[j * P + q];
    }
    free(R);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *dataset = NULL, *out = NULL;
    int64_t limit = 0, P = 512;
    double noise = 1.0;
    mm_eval_opts o;
    mm_eval_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_eval [--dataset DATA.h5] [--limit N] [--dim P] [--noise S] [--pools LIST]\n"
                   "                  [--seed N] [--out DIR]\n"
                   "The dataset needs /fingerprint (mmsa_prep writes it); without --dataset, BBBP is featurised.\n"
                   "noise S: graph = teacher + S * rms(teacher) * N(0, 1) per coordinate (default 1).\n");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) P = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--noise") && i + 1 < argc) noise = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) o.seed = (uint64_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--pools") && i + 1 < argc) CHECK(mm_eval_parse_pools("--pools", argv[++i], &o));
        else {
            fprintf(stderr, "bench_eval: unknown argument %s\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    char dir[1024], ds_path[1200], emb_path[1200];
    const char *bo = getenv("MMSA_BENCH_OUT");
    snprintf(dir, sizeof dir, "%s", out ? out : bo && *bo ? bo : "benchmarks/out");
    mkdir(dir, 0755);
    double t0 = bench_now();
    if (!dataset) {
        snprintf(ds_path, sizeof ds_path, "%s/bench_eval_bbbp.h5", dir);
        prep_bbbp(ds_path);
        dataset = ds_path;
        printf("featurised BBBP into %s in %.1f s\n", ds_path, bench_now() - t0);
    }
    mm_dataset *ds = NULL;
    CHECK(mm_dataset_open(dataset, MPI_COMM_NULL, &ds));
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    if (!(info->modalities & MM_MOD_FINGERPRINT)) {
        fprintf(stderr, "bench_eval: %s has no /fingerprint\n", dataset);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int64_t n = info->n_molecules;
    if (limit > 0 && limit < n) n = limit;
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    CHECK(mm_dataset_read_range(ds, 0, n, MM_MOD_FINGERPRINT, &ms));
    mm_dataset_close(&ds);

    /* teacher "fingerprint": u = bits R1, g = u + noise; untrained: u0 = bits R2, g0 = bits R3 */
    bool has[MM_EVAL_N_TEACHERS] = {false, false, true, false, false};
    int64_t dim[MM_EVAL_N_TEACHERS] = {0, 0, P, 0, 0};
    mm_eval_emb e;
    CHECK(mm_eval_emb_alloc(&e, n, has, dim));
    mm_eval_pairing *p = &e.t[2];
    project(ms.fingerprint, n, P, 1, 1, p->teacher);
    project(ms.fingerprint, n, P, 1, 2, p->teacher0);
    project(ms.fingerprint, n, P, 1, 3, p->graph0);
    double ss = 0;
    for (int64_t i = 0; i < n * P; i++) ss += (double)p->teacher[i] * p->teacher[i];
    float rms = (float)sqrt(ss / (double)(n * P));
    mm_rng r;
    mm_rng_init(&r, 2, 0);
    for (int64_t i = 0; i < n * P; i++) p->graph[i] = p->teacher[i] + (float)noise * rms * mm_rng_normal(&r);
    for (int64_t i = 0; i < n; i++) {
        e.index[i] = i;
        p->ok[i] = 1;
    }
    e.dataset = (char *)dataset; /* written as an attribute only */
    snprintf(emb_path, sizeof emb_path, "%s/bench_eval_heldout.h5", dir);
    CHECK(mm_eval_emb_write(emb_path, &e));
    e.dataset = NULL;
    mm_eval_emb_free(&e);
    mm_molset_free(&ms);

    char out_dir[1300];
    snprintf(out_dir, sizeof out_dir, "%s/bench_eval", dir);
    t0 = bench_now();
    double c0 = cpu_now();
    CHECK(mm_eval_files(emb_path, dataset, out_dir, &o, stdout));
    double secs = bench_now() - t0, cpu = cpu_now() - c0;

    /* the isomer groups by exact size, and the largest ones */
    mm_eval_emb e2;
    char **smiles = NULL, **formula = NULL;
    CHECK(mm_eval_emb_read(emb_path, &e2));
    CHECK(mm_eval_mols(dataset, e2.index, e2.n, &smiles, &formula));
    mm_eval_groups g;
    CHECK(mm_eval_isomer_groups((const char *const *)formula, (const char *const *)smiles, NULL, e2.n, &g));
    int64_t by_size[12] = {0}, largest = 0, largest_at = 0;
    for (int64_t s = 0; s < g.n_groups; s++) {
        int64_t size = g.offset[s + 1] - g.offset[s];
        by_size[size < 11 ? size : 11]++;
        if (size > largest) {
            largest = size;
            largest_at = s;
        }
    }
    printf("\n%s: %lld molecules (%lld without a formula), %lld duplicate SMILES; %lld isomer groups holding %lld "
           "molecules (%.1f%%); largest group: %lld x %s\ngroups by size:",
           dataset, (long long)e2.n, (long long)g.n_no_formula, (long long)g.n_duplicates, (long long)g.n_groups,
           (long long)g.n_members, 100.0 * (double)g.n_members / (double)e2.n, (long long)largest,
           largest ? formula[g.member[g.offset[largest_at]]] : "-");
    for (int s = 2; s < 12; s++) printf(" %s%d: %lld", s == 11 ? ">=" : "", s, (long long)by_size[s]);
    printf("\nmm_eval_files (read, formulas, retrieval and isomers for trained and untrained, report): %.2f s "
           "wall, %.2f s CPU, for n = %lld, P = %lld\n", secs, cpu, (long long)e2.n, (long long)P);
    char csv_path[1024];
    FILE *csv = bench_csv("bench_eval", csv_path, sizeof csv_path);
    if (csv) {
        fprintf(csv, "dataset,n,dim,seconds,cpu_seconds,n_groups,n_in_groups,largest,n_duplicates\n"
                     "%s,%lld,%lld,%.3f,%.3f,%lld,%lld,%lld,%lld\n",
                dataset, (long long)e2.n, (long long)P, secs, cpu, (long long)g.n_groups, (long long)g.n_members,
                (long long)largest, (long long)g.n_duplicates);
        fclose(csv);
    }
    mm_eval_groups_free(&g);
    mm_eval_mols_free(&smiles, &formula, e2.n);
    mm_eval_emb_free(&e2);
    MPI_Finalize();
    return 0;
}
