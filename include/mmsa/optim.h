/* optim.h: optimisers, learning-rate schedule and gradient clipping.
 *
 * Owns: optimiser state buffers laid out like the parameter registry (one float per
 * parameter value, same offsets), so state is checkpointed and restored by name.
 * Promises PyTorch semantics: AdamW (decoupled weight decay, bias correction) and
 * SGD with momentum (buf = mu buf + g; nesterov optional); weight decay only on
 * parameters whose registry entry has decay = true. Every update is deterministic:
 * the same gradients give bitwise the same parameters on every rank. */
#ifndef MMSA_OPTIM_H
#define MMSA_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/params.h"

typedef enum { MM_OPT_ADAMW, MM_OPT_SGD } mm_opt_kind;

typedef struct mm_optimizer {
    mm_opt_kind kind;
    float beta1, beta2, eps;   /* AdamW */
    float momentum;            /* SGD */
    bool nesterov;             /* SGD */
    float weight_decay;
    int64_t step;              /* updates done */
    size_t n;                  /* floats in each state buffer (= params total) */
    float *m;                  /* AdamW first moment / SGD momentum buffer (n) */
    float *v;                  /* AdamW second moment (n); NULL for SGD */
} mm_optimizer;

mm_status mm_optim_adamw(mm_optimizer *o, const mm_params *p, float beta1, float beta2,
                         float eps, float weight_decay);
mm_status mm_optim_sgd(mm_optimizer *o, const mm_params *p, float momentum, bool nesterov,
                       float weight_decay);
/* One update of every parameter from p->grad with learning rate lr. */
mm_status mm_optim_step(mm_optimizer *o, mm_params *p, float lr);
void mm_optim_destroy(mm_optimizer *o);

/* Linear warm-up from 0 to lr_max over warmup steps, then cosine decay to lr_min at
 * total_steps (and lr_min after). step counts from 0. */
typedef struct mm_schedule {
    float lr_max, lr_min;
    int64_t warmup, total;
} mm_schedule;
float mm_schedule_lr(const mm_schedule *s, int64_t step);

/* Scale all gradients so their global L2 norm is at most max_norm (max_norm <= 0:
 * no clipping). *norm_out gets the norm before clipping. A non-finite norm is
 * MM_ERR_NUMERIC and leaves the gradients untouched. */
mm_status mm_clip_grad_norm(mm_params *p, double max_norm, double *norm_out);

#endif
