/* gradcheck.h: finite-difference check of an op's backward, for the unit tests.
 *
 * The function under test builds an output from inputs on a tape. The harness
 * forms L = sum_j w_j out_j with fixed pseudo-random weights w (in double), seeds
 * out->grad = w, runs the tape backward, and compares each input's gradient with
 * central differences (x +- h) of L, element by element (all elements, or an evenly
 * spaced sample of at most max_elems per input). */
#ifndef MMSA_TEST_GRADCHECK_H
#define MMSA_TEST_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/tensor.h"

#define GC_MAX_IN 6

typedef mm_status (*gc_build_fn)(mm_tape *t, mm_tensor **in, void *ctx, mm_tensor **out);

typedef struct gc_input {
    float *data;                 /* caller-owned values; restored after the check */
    int ndim;
    int64_t shape[MM_MAX_DIMS];
    bool grad;                   /* check this input's gradient */
} gc_input;

typedef struct gc_opts {
    double h;          /* step (default 1e-3) */
    double rtol;       /* default 1e-2 */
    double atol;       /* default 1e-3, scaled by max |analytic| of the tensor (min 1) */
    int max_elems;     /* default 0 = every element */
    bool verbose;
} gc_opts;

/* Returns the number of mismatching elements (0 = pass); prints each mismatch.
 * A build error counts as a failure and prints the error. */
int gradcheck(gc_build_fn f, void *ctx, int n_in, gc_input *in, const gc_opts *opts);

/* Fill with uniform values in [lo, hi) from a fixed seed. */
void gc_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed);
/* Fill with values of magnitude in [lo, hi) and random sign (keeps away from a kink at 0). */
void gc_fill_away_from_zero(float *x, int64_t n, float lo, float hi, uint64_t seed);

#endif
