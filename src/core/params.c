/* params.c: contiguous parameter and gradient buffers with a name table. */
#include "mmsa/params.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ALIGN_FLOATS 16

void mm_params_init(mm_params *p) { memset(p, 0, sizeof *p); }

mm_status mm_params_add(mm_params *p, const char *name, int ndim, const int64_t *shape,
                        int *index)
{
    if (p->allocated) return MM_ERR(MM_ERR_INTERNAL, "parameter %s declared after allocation", name);
    if (strlen(name) >= MM_PARAM_NAME_MAX) return MM_ERR(MM_ERR_ARG, "parameter name too long: %s", name);
    if (ndim < 1 || ndim > MM_MAX_DIMS) return MM_ERR(MM_ERR_ARG, "parameter %s: rank %d", name, ndim);
    if (mm_params_find(p, name) >= 0) return MM_ERR(MM_ERR_ARG, "parameter %s declared twice", name);
    if (p->count == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        mm_param_info *ni = mm_calloc((size_t)cap, sizeof *ni);
        if (!ni) return MM_ERR(MM_ERR_NOMEM, "parameter table");
        if (p->info) memcpy(ni, p->info, (size_t)p->count * sizeof *ni);
        mm_free_sized(p->info, (size_t)p->cap * sizeof *ni);
        p->info = ni;
        p->cap = cap;
    }
    mm_param_info *pi = &p->info[p->count];
    memset(pi, 0, sizeof *pi);
    snprintf(pi->name, sizeof pi->name, "%s", name);
    pi->ndim = ndim;
    pi->n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0) return MM_ERR(MM_ERR_ARG, "parameter %s: dimension %d is %lld", name, d, (long long)shape[d]);
        pi->shape[d] = shape[d];
        pi->n *= (size_t)shape[d];
    }
    pi->decay = ndim >= 2;
    pi->offset = p->total;
    p->total += (pi->n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    if (index) *index = p->count;
    p->count++;
    return MM_OK;
}

mm_status mm_params_alloc(mm_params *p)
{
    if (p->allocated) return MM_OK;
    size_t n = p->total ? p->total : ALIGN_FLOATS;
    p->data = mm_calloc(n, sizeof(float));
    p->grad = mm_calloc(n, sizeof(float));
    if (!p->data || !p->grad) {
        mm_free_sized(p->data, n * sizeof(float));
        mm_free_sized(p->grad, n * sizeof(float));
        p->data = p->grad = NULL;
        return MM_ERR(MM_ERR_NOMEM, "parameters: %zu floats", n);
    }
    p->allocated = true;
    return MM_OK;
}

void mm_params_destroy(mm_params *p)
{
    size_t n = p->total ? p->total : ALIGN_FLOATS;
    if (p->allocated) {
        mm_free_sized(p->data, n * sizeof(float));
        mm_free_sized(p->grad, n * sizeof(float));
    }
    mm_free_sized(p->info, (size_t)p->cap * sizeof *p->info);
    memset(p, 0, sizeof *p);
}

int mm_params_find(const mm_params *p, const char *name)
{
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->info[i].name, name) == 0) return i;
    return -1;
}

float *mm_params_data(const mm_params *p, int i) { return p->data + p->info[i].offset; }
float *mm_params_grad(const mm_params *p, int i) { return p->grad + p->info[i].offset; }

mm_tensor mm_params_view(const mm_params *p, int i)
{
    return mm_tensor_view(mm_params_data(p, i), mm_params_grad(p, i), p->info[i].ndim, p->info[i].shape);
}

mm_status mm_params_tensor(const mm_params *p, mm_tape *t, int i, mm_tensor **out)
{
    if (i < 0 || i >= p->count) return MM_ERR(MM_ERR_ARG, "parameter index %d of %d", i, p->count);
    if (!p->allocated) return MM_ERR(MM_ERR_INTERNAL, "parameters used before allocation");
    MM_CALL(mm_tensor_wrap(t, mm_params_data(p, i), mm_params_grad(p, i), p->info[i].ndim,
                           p->info[i].shape, out));
    return MM_OK;
}

size_t mm_params_count_values(const mm_params *p)
{
    size_t n = 0;
    for (int i = 0; i < p->count; i++) n += p->info[i].n;
    return n;
}

void mm_params_zero_grad(mm_params *p)
{
    if (p->allocated) memset(p->grad, 0, p->total * sizeof(float));
}

void mm_params_init_uniform(mm_params *p, int i, float bound, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_INIT + (uint64_t)i);
    float *x = mm_params_data(p, i);
    for (size_t k = 0; k < p->info[i].n; k++) x[k] = bound * (2.0f * mm_rng_uniform(&r) - 1.0f);
}

void mm_params_init_normal(mm_params *p, int i, float std, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_INIT + (uint64_t)i);
    float *x = mm_params_data(p, i);
    for (size_t k = 0; k < p->info[i].n; k++) x[k] = std * mm_rng_normal(&r);
}

void mm_params_init_const(mm_params *p, int i, float value)
{
    float *x = mm_params_data(p, i);
    for (size_t k = 0; k < p->info[i].n; k++) x[k] = value;
}

void mm_params_init_linear(mm_params *p, int weight, int bias, uint64_t seed)
{
    float bound = 1.0f / sqrtf((float)p->info[weight].shape[1]);
    mm_params_init_uniform(p, weight, bound, seed);
    if (bias >= 0) mm_params_init_uniform(p, bias, bound, seed);
}

void mm_params_init_xavier(mm_params *p, int i, uint64_t seed)
{
    const mm_param_info *pi = &p->info[i];
    double fan_out = (double)pi->shape[0], fan_in = (double)(pi->n / (size_t)pi->shape[0]);
    mm_params_init_uniform(p, i, (float)sqrt(6.0 / (fan_in + fan_out)), seed);
}

double mm_params_grad_norm(const mm_params *p)
{
    double s = 0;
    for (size_t k = 0; k < p->total; k++) s += (double)p->grad[k] * p->grad[k];
    return sqrt(s);
}

bool mm_params_grad_finite(const mm_params *p, int *first_bad)
{
    for (int i = 0; i < p->count; i++) {
        const float *g = mm_params_grad(p, i);
        for (size_t k = 0; k < p->info[i].n; k++)
            if (!isfinite(g[k])) {
                if (first_bad) *first_bad = i;
                return false;
            }
    }
    return true;
}
