/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsa/alloc.h"

const char *tu_shared_dir(void)
{
    const char *s = getenv("MMSA_SHARED");
    return s && *s ? s : "../shared";
}

static char tmpdir[256];

static void rm_tmpdir(void)
{
    if (!tmpdir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *tu_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/mmsa-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(rm_tmpdir);
    }
    return tmpdir;
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

double tu_max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static int fail_countdown;
static mm_alloc_fn saved_fn;
static void *saved_ud;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize != 0 && fail_countdown > 0 && --fail_countdown == 0) return NULL;
    return saved_fn(saved_ud, ptr, osize, nsize);
}

void tu_fail_alloc_after(int n)
{
    if (n <= 0) {
        if (saved_fn) mm_set_allocator(saved_fn, saved_ud);
        saved_fn = NULL;
        fail_countdown = 0;
        return;
    }
    if (!saved_fn) mm_get_allocator(&saved_fn, &saved_ud);
    fail_countdown = n;
    mm_set_allocator(failing_alloc, NULL);
}
