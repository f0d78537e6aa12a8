/* params.h: the parameter registry.
 *
 * Owns: all trainable parameters of a model in ONE contiguous float buffer and
 * their gradients in another of the same layout, with a table of names, shapes and
 * offsets. Promises: parameters are declared first (mm_params_add), then the buffers
 * are allocated once (mm_params_alloc); a parameter's position never changes, so one
 * allreduce over `grad` (or buckets of it, in registry order) covers the model, a
 * checkpoint writes `data` by name, and the optimiser walks the buffers linearly.
 * Each tensor starts at a multiple of 16 floats (64 bytes); padding stays zero. */
#ifndef MMSA_PARAMS_H
#define MMSA_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmsa/error.h"
#include "mmsa/rng.h"
#include "mmsa/tensor.h"

#define MM_PARAM_NAME_MAX 96

typedef struct mm_param_info {
    char name[MM_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[MM_MAX_DIMS];
    size_t offset;   /* in floats, into data and grad */
    size_t n;        /* element count */
    bool decay;      /* weight decay applies (matrices and tables; not biases or norms) */
} mm_param_info;

typedef struct mm_params {
    mm_param_info *info;  /* [count] */
    int count, cap;
    size_t total;         /* floats in data/grad, padding included */
    float *data;          /* (total) */
    float *grad;          /* (total) */
    bool allocated;
} mm_params;

void mm_params_init(mm_params *p);
/* Declare a parameter; *index receives its position (may be NULL). Names are unique. */
mm_status mm_params_add(mm_params *p, const char *name, int ndim, const int64_t *shape,
                        int *index);
mm_status mm_params_alloc(mm_params *p);
void mm_params_destroy(mm_params *p);

int mm_params_find(const mm_params *p, const char *name); /* -1 when absent */
/* View of parameter i (data and grad point into the registry's buffers). */
mm_tensor mm_params_view(const mm_params *p, int i);
float *mm_params_data(const mm_params *p, int i);
float *mm_params_grad(const mm_params *p, int i);
/* Tensor for parameter i on tape t (grad is NULL when t has gradients off). */
mm_status mm_params_tensor(const mm_params *p, mm_tape *t, int i, mm_tensor **out);
/* Number of trainable values (padding excluded). */
size_t mm_params_count_values(const mm_params *p);

void mm_params_zero_grad(mm_params *p);

/* Initialisers, reproducible per parameter (stream MM_STREAM_INIT + index). */
void mm_params_init_uniform(mm_params *p, int i, float bound, uint64_t seed);
void mm_params_init_normal(mm_params *p, int i, float std, uint64_t seed);
void mm_params_init_const(mm_params *p, int i, float value);
/* PyTorch Linear default: U(+-1/sqrt(fan_in)) for weight [out, in] (and its bias). */
void mm_params_init_linear(mm_params *p, int weight, int bias, uint64_t seed);
/* Xavier-uniform over a [rows, cols] tensor. */
void mm_params_init_xavier(mm_params *p, int i, uint64_t seed);

/* Global L2 norm of the gradient, in double. */
double mm_params_grad_norm(const mm_params *p);
/* True when every gradient value is finite; *first_bad gets the offending parameter. */
bool mm_params_grad_finite(const mm_params *p, int *first_bad);

#endif
