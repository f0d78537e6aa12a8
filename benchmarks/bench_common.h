/* bench_common.h: timing, RSS and CSV helpers shared by the benchmarks (header-only). */
#ifndef MMSA_BENCH_COMMON_H
#define MMSA_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n samples (sorts in place). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size of this process in MiB (from /proc/self/status). */
static inline double bench_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* Open benchmarks/out/<name>.csv (or $MMSA_BENCH_OUT/<name>.csv) for writing. */
static inline FILE *bench_csv(const char *name, char *path, size_t n)
{
    const char *dir = getenv("MMSA_BENCH_OUT");
    if (!dir || !*dir) dir = "benchmarks/out";
    mkdir(dir, 0755);
    snprintf(path, n, "%s/%s.csv", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "cannot write %s\n", path);
    return f;
}

/* The default molecule input: $MMSA_SHARED/data/pretrain/zinc250k.csv.gz (MMSA_SHARED
 * defaults to ../shared, the repository's sibling). */
static inline void bench_zinc_path(char *buf, size_t n)
{
    const char *shared = getenv("MMSA_SHARED");
    snprintf(buf, n, "%s/data/pretrain/zinc250k.csv.gz", shared && *shared ? shared : "../shared");
}

/* In an MPI benchmark (mpi.h and mmsa/error.h included first): print the library's error
 * with the rank and abort every rank when expr is not MM_OK. */
#ifdef MPI_VERSION
#define BENCH_MPI_CHECK(expr, rank)         \
    do {                                    \
        if ((expr) != MM_OK) {              \
            mm_error_print(stderr, (rank)); \
            MPI_Abort(MPI_COMM_WORLD, 1);   \
        }                                   \
    } while (0)
#endif

#endif
