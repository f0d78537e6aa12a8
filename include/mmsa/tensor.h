/* tensor.h: float32 tensors and the reverse-mode autograd tape.
 *
 * Owns: a tape holds the per-step arena (activations, gradients of activations,
 * saved indices) and the list of recorded ops. Promises:
 *  - every op output lives in the tape's arena and is valid until mm_tape_reset;
 *  - an output has a gradient buffer (zeroed) exactly when gradients are enabled and
 *    some input has one; parameters get theirs from the parameter registry;
 *  - mm_tape_backward runs the recorded backward functions in reverse order, each
 *    ADDING into the gradients of its inputs, so a tensor used twice gets the sum.
 * Tensors are row-major with up to 4 dimensions; ops state the shapes they take. */
#ifndef MMSA_TENSOR_H
#define MMSA_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmsa/alloc.h"
#include "mmsa/error.h"

#define MM_MAX_DIMS 4

typedef struct mm_tensor {
    float *data;                  /* row-major, n values */
    float *grad;                  /* same layout as data; NULL = no gradient wanted */
    int64_t shape[MM_MAX_DIMS];
    int ndim;
    int64_t n;                    /* product of the shape */
} mm_tensor;

typedef struct mm_tape mm_tape;
typedef struct mm_node mm_node;
typedef mm_status (*mm_backward_fn)(mm_node *node);

#define MM_NODE_MAX_IN 5
struct mm_node {
    mm_backward_fn backward;
    const char *op;               /* name, for error messages */
    mm_tensor *out;
    mm_tensor *in[MM_NODE_MAX_IN];
    void *ctx;                    /* op-specific saved state, in the arena */
    mm_tape *tape;
    mm_node *prev;
    int scope;                    /* profiling scope the op was recorded in */
    int64_t seq;                  /* position on the tape: 0 for the first op of the step */
};

/* Sums `n` doubles across the ranks that share a batch, in place (used by
 * BatchNorm so statistics are those of the global batch). NULL = single process. */
typedef mm_status (*mm_allreduce_fn)(void *ctx, double *buf, int n);

struct mm_tape {
    mm_arena arena;
    mm_node *last;
    size_t n_nodes;
    bool grad_enabled;            /* false: ops record nothing, outputs get no grad */
    bool training;                /* dropout active, BatchNorm uses batch statistics */
    mm_allreduce_fn allreduce;    /* hook for normalisation statistics */
    void *allreduce_ctx;
    /* Profiling (off when prof == NULL): wall seconds per scope, forward time between
     * scope switches in prof[scope], backward time of the ops recorded in a scope in
     * prof[MM_PROF_SCOPES + scope]. */
    int scope;
    double *prof;                 /* [2 * MM_PROF_SCOPES], caller-owned */
    double prof_t0;
    /* Called after each op's backward (NULL = none): lets gradient buckets whose
     * parameters are final start their allreduce while the backward goes on. */
    mm_status (*node_done)(void *ctx, mm_node *nd);
    void *node_done_ctx;
};

#define MM_PROF_SCOPES 16
/* Switch the current profiling scope (charges the elapsed forward time to the old one). */
void mm_tape_scope(mm_tape *t, int scope);

mm_status mm_tape_init(mm_tape *t, size_t arena_bytes);
/* Drop every tensor and node of the step; memory is kept for the next step. */
mm_status mm_tape_reset(mm_tape *t);
void mm_tape_destroy(mm_tape *t);

/* Arena allocation tied to the tape's step. */
mm_status mm_tape_alloc(mm_tape *t, size_t bytes, void **out);
mm_status mm_tape_calloc(mm_tape *t, size_t bytes, void **out);

/* New tensor in the arena: data uninitialised (or zeroed with _zeros), grad zeroed
 * when need_grad && t->grad_enabled. */
mm_status mm_tensor_new(mm_tape *t, int ndim, const int64_t *shape, bool need_grad,
                        mm_tensor **out);
mm_status mm_tensor_zeros(mm_tape *t, int ndim, const int64_t *shape, bool need_grad,
                          mm_tensor **out);
mm_status mm_tensor_new2(mm_tape *t, int64_t rows, int64_t cols, bool need_grad,
                         mm_tensor **out);
/* Tensor header over memory the caller owns (parameters, batch inputs). */
mm_status mm_tensor_wrap(mm_tape *t, float *data, float *grad, int ndim,
                         const int64_t *shape, mm_tensor **out);
/* Header on the stack, no tape (for parameter views). */
mm_tensor mm_tensor_view(float *data, float *grad, int ndim, const int64_t *shape);

static inline int64_t mm_rows(const mm_tensor *x) { return x->shape[0]; }
/* Product of all dimensions after the first (the row length). */
static inline int64_t mm_cols(const mm_tensor *x) { return x->shape[0] ? x->n / x->shape[0] : 0; }
static inline bool mm_needs_grad(const mm_tensor *x) { return x && x->grad != NULL; }

/* True if an op with these inputs should produce a gradient buffer. */
bool mm_tape_wants_grad(const mm_tape *t, int n_in, mm_tensor *const *in);

/* Record an op; ctx must live in the arena (or be static). Does nothing when the
 * output has no gradient. */
mm_status mm_tape_record(mm_tape *t, const char *op, mm_backward_fn backward, mm_tensor *out,
                         int n_in, mm_tensor *const *in, void *ctx);

/* Seed d(loss)/d(loss) = 1 (loss must have one element) and run the tape backward. */
mm_status mm_tape_backward(mm_tape *t, mm_tensor *loss);
/* Run the tape backward with output gradients the caller has already seeded. */
mm_status mm_tape_run_backward(mm_tape *t);

/* Shape helpers for error messages: "[3, 4]" into buf. */
const char *mm_shape_str(const mm_tensor *x, char *buf, size_t n);
bool mm_same_shape(const mm_tensor *a, const mm_tensor *b);

#endif
