/* tape.c: tensors in the step arena and the reverse-mode tape. */
#include "mmsa/tensor.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mm_tape_scope(mm_tape *t, int scope)
{
    if (scope < 0 || scope >= MM_PROF_SCOPES) scope = 0;
    if (t->prof) {
        double now = wall();
        t->prof[t->scope] += now - t->prof_t0;
        t->prof_t0 = now;
    }
    t->scope = scope;
}

mm_status mm_tape_init(mm_tape *t, size_t arena_bytes)
{
    memset(t, 0, sizeof *t);
    MM_CALL(mm_arena_init(&t->arena, arena_bytes));
    t->grad_enabled = true;
    t->training = true;
    return MM_OK;
}

mm_status mm_tape_reset(mm_tape *t)
{
    t->last = NULL;
    t->n_nodes = 0;
    MM_CALL(mm_arena_reset(&t->arena));
    t->scope = 0;
    if (t->prof) t->prof_t0 = wall();
    return MM_OK;
}

void mm_tape_destroy(mm_tape *t)
{
    mm_arena_destroy(&t->arena);
    t->last = NULL;
    t->n_nodes = 0;
}

mm_status mm_tape_alloc(mm_tape *t, size_t bytes, void **out)
{
    MM_CALL(mm_arena_alloc(&t->arena, bytes, out));
    return MM_OK;
}

mm_status mm_tape_calloc(mm_tape *t, size_t bytes, void **out)
{
    MM_CALL(mm_arena_calloc(&t->arena, bytes, out));
    return MM_OK;
}

static mm_status shape_count(int ndim, const int64_t *shape, int64_t *n)
{
    if (ndim < 1 || ndim > MM_MAX_DIMS)
        return MM_ERR(MM_ERR_ARG, "tensor rank %d outside 1..%d", ndim, MM_MAX_DIMS);
    int64_t c = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return MM_ERR(MM_ERR_ARG, "negative dimension %lld", (long long)shape[i]);
        if (shape[i] && c > INT64_MAX / shape[i])
            return MM_ERR(MM_ERR_RANGE, "tensor too large");
        c *= shape[i];
    }
    *n = c;
    return MM_OK;
}

static mm_status tensor_header(mm_tape *t, int ndim, const int64_t *shape, mm_tensor **out)
{
    int64_t n = 0;
    MM_CALL(shape_count(ndim, shape, &n));
    mm_tensor *x;
    MM_CALL(mm_tape_calloc(t, sizeof *x, (void **)&x));
    x->ndim = ndim;
    x->n = n;
    for (int i = 0; i < ndim; i++) x->shape[i] = shape[i];
    *out = x;
    return MM_OK;
}

mm_status mm_tensor_new(mm_tape *t, int ndim, const int64_t *shape, bool need_grad,
                        mm_tensor **out)
{
    mm_tensor *x;
    MM_CALL(tensor_header(t, ndim, shape, &x));
    MM_CALL(mm_tape_alloc(t, (size_t)x->n * sizeof(float), (void **)&x->data));
    if (need_grad && t->grad_enabled)
        MM_CALL(mm_tape_calloc(t, (size_t)x->n * sizeof(float), (void **)&x->grad));
    *out = x;
    return MM_OK;
}

mm_status mm_tensor_zeros(mm_tape *t, int ndim, const int64_t *shape, bool need_grad,
                          mm_tensor **out)
{
    MM_CALL(mm_tensor_new(t, ndim, shape, need_grad, out));
    memset((*out)->data, 0, (size_t)(*out)->n * sizeof(float));
    return MM_OK;
}

mm_status mm_tensor_new2(mm_tape *t, int64_t rows, int64_t cols, bool need_grad,
                         mm_tensor **out)
{
    int64_t shape[2] = {rows, cols};
    MM_CALL(mm_tensor_new(t, 2, shape, need_grad, out));
    return MM_OK;
}

mm_status mm_tensor_wrap(mm_tape *t, float *data, float *grad, int ndim,
                         const int64_t *shape, mm_tensor **out)
{
    mm_tensor *x;
    MM_CALL(tensor_header(t, ndim, shape, &x));
    x->data = data;
    x->grad = t->grad_enabled ? grad : NULL;
    *out = x;
    return MM_OK;
}

mm_tensor mm_tensor_view(float *data, float *grad, int ndim, const int64_t *shape)
{
    mm_tensor x;
    memset(&x, 0, sizeof x);
    x.data = data;
    x.grad = grad;
    x.ndim = ndim;
    x.n = 1;
    for (int i = 0; i < ndim; i++) {
        x.shape[i] = shape[i];
        x.n *= shape[i];
    }
    return x;
}

bool mm_tape_wants_grad(const mm_tape *t, int n_in, mm_tensor *const *in)
{
    if (!t->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->grad) return true;
    return false;
}

mm_status mm_tape_record(mm_tape *t, const char *op, mm_backward_fn backward, mm_tensor *out,
                         int n_in, mm_tensor *const *in, void *ctx)
{
    if (!out->grad) return MM_OK;
    if (n_in > MM_NODE_MAX_IN) return MM_ERR(MM_ERR_INTERNAL, "op %s: %d inputs", op, n_in);
    mm_node *nd;
    MM_CALL(mm_tape_calloc(t, sizeof *nd, (void **)&nd));
    nd->backward = backward;
    nd->op = op;
    nd->out = out;
    for (int i = 0; i < n_in; i++) nd->in[i] = in[i];
    nd->ctx = ctx;
    nd->tape = t;
    nd->scope = t->scope;
    nd->seq = (int64_t)t->n_nodes;
    nd->prev = t->last;
    t->last = nd;
    t->n_nodes++;
    return MM_OK;
}

mm_status mm_tape_backward(mm_tape *t, mm_tensor *loss)
{
    if (loss->n != 1)
        return MM_ERR(MM_ERR_ARG, "backward needs a scalar loss, got %lld values",
                      (long long)loss->n);
    if (!loss->grad) return MM_ERR(MM_ERR_ARG, "the loss does not depend on any parameter");
    loss->grad[0] += 1.0f;
    MM_CALL(mm_tape_run_backward(t));
    return MM_OK;
}

mm_status mm_tape_run_backward(mm_tape *t)
{
    /* the backward's time is charged per op below, not to the current forward scope */
    if (t->prof) mm_tape_scope(t, t->scope);
    for (mm_node *nd = t->last; nd; nd = nd->prev) {
        double t0 = t->prof ? wall() : 0;
        mm_status s = nd->backward(nd);
        if (t->prof) t->prof[MM_PROF_SCOPES + nd->scope] += wall() - t0;
        if (s != MM_OK) {
            mm_error_push(__FILE__, __LINE__, nd->op);
            return s;
        }
        if (t->node_done) MM_CALL(t->node_done(t->node_done_ctx, nd));
    }
    if (t->prof) t->prof_t0 = wall();
    return MM_OK;
}

const char *mm_shape_str(const mm_tensor *x, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < x->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)x->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

bool mm_same_shape(const mm_tensor *a, const mm_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}
