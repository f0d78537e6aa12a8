/* bench_conformer: what the force-field step budget (features.ff_steps) buys.
 *
 *   mpirun -n P bench_conformer [--input FILE] [--n N] [--steps 0,25,50,100,250] [--ref 1000]
 *
 * N molecules (default 240) spread evenly over the input (every (rows / N)-th row of
 * ZINC250k by default) are built once per step budget with the featuriser of mmsa_prep
 * (Open Babel builder, then MMFF94 conjugate gradients, same per-molecule seed), and
 * once with the reference budget --ref. The builder's output is the same for every
 * budget, so each conformer can be compared with the reference one of the same molecule.
 * For each budget the table gives the 3D time per molecule (the featuriser's own stage
 * clock), the projected time of ZINC250k (249,455 molecules) with 3D on this many ranks,
 * and the distance to the reference geometry: dRMSD, the root mean square difference of
 * all heavy-atom pair distances (rotation-free), median and 90th percentile. Molecules
 * are interleaved over the ranks (molecule i on rank i % P). Writes benchmarks/out/bench_conformer.csv. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mmsa/chem.h"
#include "mmsa/csv.h"

#define CHECK(expr) BENCH_MPI_CHECK(expr, rank)

#define MAX_BUDGETS 16

/* dRMSD between two conformers of n atoms (xyz [n, 3]). */
static double drmsd(const float *a, const float *b, int n)
{
    double s = 0;
    long pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double da = 0, db = 0;
            for (int k = 0; k < 3; k++) {
                double u = a[3 * i + k] - a[3 * j + k], v = b[3 * i + k] - b[3 * j + k];
                da += u * u;
                db += v * v;
            }
            double d = sqrt(da) - sqrt(db);
            s += d * d;
            pairs++;
        }
    return pairs ? sqrt(s / (double)pairs) : 0;
}

/* q-quantile of v[0..n) (sorts in place; nearest rank). */
static double quantile(double *v, int n, double q)
{
    if (n == 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char input[1024];
    bench_zinc_path(input, sizeof input);
    int n = 240, ref = 1000, nb = 0, budgets[MAX_BUDGETS];
    const char *steps = "0,25,50,100,250";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            if (rank == 0)
                printf("usage: mpirun -n P bench_conformer [--input FILE] [--n N] [--steps LIST] [--ref R]\n"
                       "  N molecules (default 240) spread evenly over FILE (default\n"
                       "  $MMSA_SHARED/data/pretrain/zinc250k.csv.gz), each built with every force-field\n"
                       "  step budget of LIST (default 0,25,50,100,250) and with R steps (default 1000)\n"
                       "  as the reference geometry; reports 3D time per molecule and dRMSD to the reference.\n");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) snprintf(input, sizeof input, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = argv[++i];
        else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref = atoi(argv[++i]);
        else {
            if (rank == 0) fprintf(stderr, "bench_conformer: unknown argument %s (see --help)\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    for (const char *p = steps; *p && nb < MAX_BUDGETS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0) {
            if (rank == 0) fprintf(stderr, "bench_conformer: --steps wants comma-separated counts >= 0, got '%s'\n", steps);
            MPI_Finalize();
            return 2;
        }
        budgets[nb++] = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    if (n < 1 || ref < 1 || nb == 0) {
        if (rank == 0) fprintf(stderr, "bench_conformer: --n, --ref and --steps must be positive\n");
        MPI_Finalize();
        return 2;
    }

    /* count the rows, then keep every stride-th: molecules from the whole file */
    mm_table_opts to = {MM_TABLE_CSV, NULL, NULL, 0};
    if (strstr(input, ".smi")) to.format = MM_TABLE_SMI;
    mm_table *tab;
    int64_t rows = 0;
    CHECK(mm_table_count_rows(input, &to, &rows));
    if (rows < n) n = (int)rows;
    int64_t stride = n ? rows / n : 1;
    CHECK(mm_table_open(input, &to, &tab));
    char **smiles = calloc((size_t)n, sizeof *smiles);
    int64_t *row_of = calloc((size_t)n, sizeof *row_of);
    int have = 0;
    for (int64_t r = 0; have < n; r++) {
        mm_table_row row;
        bool eof = false;
        mm_status s = mm_table_next(tab, &row, &eof);
        if (s == MM_ERR_FORMAT) mm_error_clear(); /* a bad label cell; the SMILES is still there */
        else CHECK(s);
        if (eof) break;
        if (r % stride) continue;
        row_of[have] = r;
        smiles[have++] = strdup(row.smiles ? row.smiles : "");
    }
    mm_table_close(&tab);

    /* one featuriser per budget (3D only), the reference last */
    mm_chem *c[MAX_BUDGETS + 1];
    for (int b = 0; b <= nb; b++) {
        mm_chem_opts o;
        mm_chem_opts_default(&o);
        o.image = o.fingerprint = o.scaffold = 0;
        o.ff_steps = b < nb ? budgets[b] : ref;
        CHECK(mm_chem_create(&o, &c[b]));
    }
    mm_mol_feat f, fr;
    mm_mol_feat_init(&f);
    mm_mol_feat_init(&fr);
    /* per molecule and budget: seconds of 3D and dRMSD (-1: no conformer to compare) */
    double *sec = calloc((size_t)n * (nb + 1), sizeof *sec), *dev = calloc((size_t)n * nb, sizeof *dev);
    for (int i = 0; i < n * nb; i++) dev[i] = -1;
    int mine = 0;
    double t_start = bench_now();
    for (int i = rank; i < have; i += size, mine++) {
        double st[5], before;
        mm_chem_stage_seconds(c[nb], st);
        before = st[1];
        mm_status s = mm_chem_featurize_smiles(c[nb], smiles[i], (uint64_t)row_of[i], &fr);
        if (s != MM_OK) {
            if (s != MM_ERR_CHEM) CHECK(s);
            mm_error_clear();
            continue;
        }
        mm_chem_stage_seconds(c[nb], st);
        sec[(size_t)i * (nb + 1) + nb] = st[1] - before;
        for (int b = 0; b < nb; b++) {
            mm_chem_stage_seconds(c[b], st);
            before = st[1];
            CHECK(mm_chem_featurize_smiles(c[b], smiles[i], (uint64_t)row_of[i], &f));
            mm_chem_stage_seconds(c[b], st);
            sec[(size_t)i * (nb + 1) + b] = st[1] - before;
            if (f.conf_ok && fr.conf_ok && f.n_atoms == fr.n_atoms)
                dev[(size_t)i * nb + b] = drmsd(f.xyz, fr.xyz, f.n_atoms);
        }
        if (rank == 0 && mine % 20 == 19)
            fprintf(stderr, "\rbench_conformer: %d / %d molecules on rank 0, %.0f s", mine + 1, (have + size - 1) / size,
                    bench_now() - t_start);
    }
    if (rank == 0) fprintf(stderr, "\n");
    /* every rank filled its own rows; the others are 0 / -1, so reduce by sum / max */
    MPI_Allreduce(MPI_IN_PLACE, sec, n * (nb + 1), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, dev, n * nb, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

    if (rank == 0) {
        printf("bench_conformer: %d molecules (every %lld-th row of %s), %d rank(s), reference %d steps\n", have,
               (long long)stride, input, size, ref);
        printf("  %8s %14s %16s %14s %14s %10s\n", "ff_steps", "ms/mol (3D)", "ZINC250k 3D (h)", "dRMSD median",
               "dRMSD p90", "compared");
        char path[512];
        FILE *csv = bench_csv("bench_conformer", path, sizeof path);
        if (csv) fprintf(csv, "ff_steps,ms_per_mol,zinc250k_hours,drmsd_median,drmsd_p90,n_compared\n");
        double *v = malloc(sizeof(double) * (size_t)(have ? have : 1));
        for (int b = 0; b <= nb; b++) {
            double t = 0;
            for (int i = 0; i < have; i++) t += sec[(size_t)i * (nb + 1) + b];
            double ms = 1e3 * t / have, hours = 249455.0 * ms / 1e3 / size / 3600;
            int m = 0;
            if (b < nb)
                for (int i = 0; i < have; i++)
                    if (dev[(size_t)i * nb + b] >= 0) v[m++] = dev[(size_t)i * nb + b];
            double med = b < nb ? quantile(v, m, 0.5) : 0, p90 = b < nb ? quantile(v, m, 0.9) : 0;
            int steps_b = b < nb ? budgets[b] : ref;
            printf("  %8d %14.1f %16.2f %14.3f %14.3f %10d%s\n", steps_b, ms, hours, med, p90, b < nb ? m : have,
                   b < nb ? "" : "  (reference)");
            if (csv) fprintf(csv, "%d,%.3f,%.4f,%.5f,%.5f,%d\n", steps_b, ms, hours, med, p90, b < nb ? m : have);
        }
        printf("  dRMSD in Angstrom over heavy-atom pair distances; ZINC250k hours = 3D stage only, %d rank(s)\n", size);
        free(v);
        if (csv) {
            fclose(csv);
            printf("wrote %s\n", path);
        }
    }
    for (int b = 0; b <= nb; b++) mm_chem_destroy(&c[b]);
    for (int i = 0; i < have; i++) free(smiles[i]);
    free(smiles);
    free(row_of);
    free(sec);
    free(dev);
    mm_mol_feat_free(&f);
    mm_mol_feat_free(&fr);
    MPI_Finalize();
    return 0;
}
