/* testutil.h: small helpers shared by the unit tests. */
#ifndef MMSA_TEST_TESTUTIL_H
#define MMSA_TEST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Path of the shared data folder (env MMSA_SHARED, else ../shared from the repo). */
const char *tu_shared_dir(void);
/* A fresh temporary directory for this test process (removed at exit). */
const char *tu_tmpdir(void);
/* max |a - b| over n values, and max |b|. */
double tu_max_abs_diff(const float *a, const float *b, int64_t n);
double tu_max_abs(const float *a, int64_t n);
/* Allocator that fails the n-th allocation from now (n >= 1); 0 disables. */
void tu_fail_alloc_after(int n);

#endif
