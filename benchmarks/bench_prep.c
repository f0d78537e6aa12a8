/* bench_prep: featurisation speed per stage, beside the obabel command line.
 *
 *   mpirun -n P bench_prep [--input FILE] [--n N] [--ff-steps S] [--no-obabel]
 *
 * Every rank featurises its contiguous slice of the first N molecules (default 2000
 * of ZINC250k) with every stage on, and reports molecules/s per rank for each stage
 * (parse + graph, 3D, image, fingerprint, scaffold) from the featuriser's own stage
 * clocks, at mmsa_prep's default force-field budget unless --ff-steps says otherwise
 * (bench_conformer shows what each budget buys). Then rank 0 converts its own slice
 * with `obabel -ismi -osdf --gen3d` (SMILES to 3D SDF) in the same run, and the table
 * gives the ratio of the two 3D rates, and projections for ZINC250k (249,455 molecules)
 * at this rank count. Writes benchmarks/out/bench_prep.csv. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"

#define CHECK(expr) BENCH_MPI_CHECK(expr, rank)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char input[1024];
    bench_zinc_path(input, sizeof input);
    int64_t n = 2000;
    int obabel = 1, ff_steps = MM_CHEM_FF_STEPS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0)
                printf("usage: mpirun -n P bench_prep [--input FILE] [--n N] [--ff-steps S] [--no-obabel]\n"
                       "  default input: $MMSA_SHARED/data/pretrain/zinc250k.csv.gz (MMSA_SHARED defaults to ../shared),\n"
                       "  N = 2000 molecules, S = %d force-field steps (mmsa_prep's default);\n"
                       "  rank 0 also times `obabel --gen3d` on its slice.\n", MM_CHEM_FF_STEPS_DEFAULT);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) snprintf(input, sizeof input, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--ff-steps") && i + 1 < argc) ff_steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-obabel")) obabel = 0;
        else {
            if (rank == 0) fprintf(stderr, "bench_prep: unknown argument %s (see --help)\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    /* my slice of the first n rows */
    int64_t base = n / size, extra = n % size;
    int64_t first = rank * base + (rank < extra ? rank : extra), count = base + (rank < extra ? 1 : 0);
    mm_table_opts to = {MM_TABLE_CSV, NULL, NULL, 0};
    if (strstr(input, ".smi")) to.format = MM_TABLE_SMI;
    mm_table *tab;
    CHECK(mm_table_open(input, &to, &tab));
    int64_t skipped;
    CHECK(mm_table_skip(tab, first, &skipped));
    char **smiles = calloc((size_t)(count ? count : 1), sizeof *smiles);
    int64_t have = 0;
    bool eof = false;
    while (have < count) {
        mm_table_row row;
        CHECK(mm_table_next(tab, &row, &eof));
        if (eof) break;
        smiles[have++] = strdup(row.smiles ? row.smiles : "");
    }
    mm_table_close(&tab);

    mm_chem_opts o;
    mm_chem_opts_default(&o);
    o.ff_steps = ff_steps;
    mm_chem *c;
    CHECK(mm_chem_create(&o, &c));
    mm_mol_feat f;
    mm_mol_feat_init(&f);
    int64_t ok = 0, conf_ok = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = bench_now();
    for (int64_t i = 0; i < have; i++) {
        mm_status s = mm_chem_featurize_smiles(c, smiles[i], (uint64_t)(first + i), &f);
        if (s == MM_OK) {
            ok++;
            conf_ok += f.conf_ok;
        } else if (s != MM_ERR_CHEM) CHECK(s);
        else mm_error_clear();
    }
    double wall = bench_now() - t0;
    double st[5];
    mm_chem_stage_seconds(c, st);
    /* per-rank rates, then the medians over ranks are not needed: report rank means */
    double sums[8] = {st[0], st[1], st[2], st[3], st[4], wall, (double)have, (double)conf_ok};
    MPI_Allreduce(MPI_IN_PLACE, sums, 8, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double wall_max = wall;
    MPI_Allreduce(MPI_IN_PLACE, &wall_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

    /* obabel on rank 0's slice, after everyone finished (no competition for cores) */
    double ob_s = -1;
    int64_t ob_n = 0;
    if (rank == 0 && obabel && system("command -v obabel >/dev/null 2>&1") == 0) {
        char dir[] = "/tmp/mmsa-bench-prep-XXXXXX";
        if (mkdtemp(dir)) {
            char smi[600], sdf[600], cmd[2048];
            snprintf(smi, sizeof smi, "%s/in.smi", dir);
            snprintf(sdf, sizeof sdf, "%s/out.sdf", dir);
            FILE *fs = fopen(smi, "w");
            for (int64_t i = 0; i < have && fs; i++) fprintf(fs, "%s\n", smiles[i]);
            if (fs) fclose(fs);
            ob_n = have;
            snprintf(cmd, sizeof cmd, "obabel -ismi %s -osdf -O %s --gen3d -e >/dev/null 2>&1", smi, sdf);
            double o0 = bench_now();
            int rc = system(cmd);
            ob_s = bench_now() - o0;
            if (rc != 0) fprintf(stderr, "bench_prep: obabel exited with %d\n", rc);
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
        }
    }
    if (rank == 0) {
        const char *names[5] = {"parse + canonical SMILES + graph", "3D conformer (builder + MMFF94)", "image (depiction)",
                                "fingerprint (ECFP4)", "scaffold (Murcko)"};
        double per_rank = sums[6] / size;
        printf("bench_prep: %lld molecules of %s on %d rank(s) (%lld per rank), %d force-field steps, %.0f%% with a "
               "conformer\n",
               (long long)n, input, size, (long long)(n / size), ff_steps, 100.0 * sums[7] / sums[6]);
        printf("  %-36s %14s %12s\n", "stage", "mol/s per rank", "s per rank");
        char path[512];
        FILE *csv = bench_csv("bench_prep", path, sizeof path);
        if (csv) fprintf(csv, "stage,mol_per_s_per_rank,seconds_per_rank\n");
        double no3d = 0;
        for (int k = 0; k < 5; k++) {
            double s = sums[k] / size;
            if (k != 1) no3d += s;
            printf("  %-36s %14.1f %12.2f\n", names[k], per_rank / s, s);
            if (csv) fprintf(csv, "\"%s\",%.3f,%.4f\n", names[k], per_rank / s, s);
        }
        double all = sums[5] / size;
        printf("  %-36s %14.1f %12.2f\n", "all stages (wall)", per_rank / all, all);
        printf("  %-36s %14.1f %12.2f\n", "all but 3D", per_rank / no3d, no3d);
        if (csv) {
            fprintf(csv, "\"all stages\",%.3f,%.4f\n", per_rank / all, all);
            fprintf(csv, "\"all but 3D\",%.3f,%.4f\n", per_rank / no3d, no3d);
        }
        double ours3d = per_rank / (sums[1] / size);
        if (ob_s > 0) {
            printf("  %-36s %14.1f %12.2f   (rank 0's %lld molecules, same run)\n", "obabel --gen3d (command line)",
                   (double)ob_n / ob_s, ob_s, (long long)ob_n);
            printf("  ratio of 3D rates, mmsa-chem / obabel: %.2f\n", ours3d / ((double)ob_n / ob_s));
            if (csv) fprintf(csv, "\"obabel --gen3d\",%.3f,%.4f\n", (double)ob_n / ob_s, ob_s);
        }
        double zinc = 249455;
        printf("  projected ZINC250k on %d ranks: without 3D %.1f min, with 3D %.2f h\n", size,
               zinc / (per_rank / no3d * size) / 60, zinc / (per_rank / all * size) / 3600);
        if (csv) {
            fclose(csv);
            printf("wrote %s\n", path);
        }
    }
    for (int64_t i = 0; i < have; i++) free(smiles[i]);
    free(smiles);
    mm_mol_feat_free(&f);
    mm_chem_destroy(&c);
    MPI_Finalize();
    return 0;
}
