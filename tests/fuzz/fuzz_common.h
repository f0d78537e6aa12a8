/* fuzz_common.h: what every libFuzzer target of tests/fuzz shares.
 *
 * MPI is initialised once, in LLVMFuzzerInitialize, as a singleton (run the target
 * directly, not under mpirun), and finalised at exit. Readers that take a path get the
 * input through a file in a private directory (on /dev/shm when there is one), rewritten
 * for every input; fuzz_path(suffix) names it, so a reader that picks the format from
 * the file name sees the suffix it expects. */
#ifndef MMSA_FUZZ_COMMON_H
#define MMSA_FUZZ_COMMON_H

#include <errno.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmsa/error.h"

static char fuzz_dir[256];

static void fuzz_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    if (fuzz_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
        if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
    }
}

/* MPI singleton and the private directory; aborts on failure (nothing to fuzz then). */
static inline void fuzz_init(void)
{
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    /* Open MPI would take SIGSEGV, SIGABRT, ... from libFuzzer, which then writes no crash input. */
    setenv("OMPI_MCA_opal_signal", "", 1);
    setenv("BLIS_NUM_THREADS", "1", 0);
    setenv("OMP_NUM_THREADS", "1", 0);
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "fuzz: MPI_Init failed\n");
        abort();
    }
    const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/mmsa-fuzz-%ld", root, (long)getpid());
    if (mkdir(fuzz_dir, 0700) != 0 && errno == EEXIST) {
        /* left by a dead process with our pid (a forked run's child that crashed skips
         * fuzz_finalize; hundreds pile up over long runs): no live process owns it */
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
        if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove the stale %s\n", fuzz_dir);
    }
    if (access(fuzz_dir, F_OK) != 0 && mkdir(fuzz_dir, 0700) != 0) {
        perror(fuzz_dir);
        abort();
    }
    atexit(fuzz_finalize);
}

/* Path of the input file with the given suffix (".csv"), in the private directory. */
static inline const char *fuzz_path(const char *suffix)
{
    static char path[320];
    snprintf(path, sizeof path, "%s/input%s", fuzz_dir, suffix);
    return path;
}

/* Writes data to fuzz_path(suffix) and returns the path. */
static inline const char *fuzz_write(const uint8_t *data, size_t size, const char *suffix)
{
    const char *path = fuzz_path(suffix);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* The input as a NUL-terminated string (malloc'ed; embedded NULs end it early). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A property every input must keep: a broken one is a bug, reported like a crash. */
#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
