/* optim.c: AdamW, SGD with momentum, warm-up + cosine schedule, clipping. */
#include "mmsa/optim.h"

#include <math.h>
#include <string.h>

static mm_status alloc_state(mm_optimizer *o, const mm_params *p, bool second)
{
    if (!p->allocated) return MM_ERR(MM_ERR_INTERNAL, "optimiser created before the parameters");
    o->n = p->total;
    o->m = mm_calloc(o->n ? o->n : 1, sizeof(float));
    o->v = second ? mm_calloc(o->n ? o->n : 1, sizeof(float)) : NULL;
    if (!o->m || (second && !o->v)) {
        mm_optim_destroy(o);
        return MM_ERR(MM_ERR_NOMEM, "optimiser state for %zu values", o->n);
    }
    return MM_OK;
}

mm_status mm_optim_adamw(mm_optimizer *o, const mm_params *p, float beta1, float beta2,
                         float eps, float weight_decay)
{
    memset(o, 0, sizeof *o);
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0 && weight_decay >= 0))
        return MM_ERR(MM_ERR_ARG, "adamw: beta1 %g, beta2 %g must be in [0,1), eps %g > 0, weight decay %g >= 0",
                      beta1, beta2, eps, weight_decay);
    o->kind = MM_OPT_ADAMW;
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    MM_CALL(alloc_state(o, p, true));
    return MM_OK;
}

mm_status mm_optim_sgd(mm_optimizer *o, const mm_params *p, float momentum, bool nesterov,
                       float weight_decay)
{
    memset(o, 0, sizeof *o);
    if (!(momentum >= 0 && momentum < 1 && weight_decay >= 0))
        return MM_ERR(MM_ERR_ARG, "sgd: momentum %g must be in [0,1), weight decay %g >= 0", momentum, weight_decay);
    o->kind = MM_OPT_SGD;
    o->momentum = momentum;
    o->nesterov = nesterov;
    o->weight_decay = weight_decay;
    MM_CALL(alloc_state(o, p, false));
    return MM_OK;
}

void mm_optim_destroy(mm_optimizer *o)
{
    size_t n = o->n ? o->n : 1;
    mm_free_sized(o->m, n * sizeof(float));
    mm_free_sized(o->v, n * sizeof(float));
    o->m = o->v = NULL;
}

/* One parameter's AdamW update. The constants are locals and the arrays restrict, so the
 * loop vectorises (optim.c is built with the vectoriser and -fno-math-errno: v >= 0, so
 * sqrtf never sets errno); element by element it is the same float arithmetic in the same
 * order as the scalar loop, so the values do not change. */
static void adamw_update(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, float beta1, float beta2, float eps,
                         float decay, float step_size, float bc2_sqrt)
{
    const float one_b1 = 1.0f - beta1, one_b2 = 1.0f - beta2;
    for (size_t k = 0; k < n; k++) {
        m[k] = beta1 * m[k] + one_b1 * g[k];
        v[k] = beta2 * v[k] + one_b2 * g[k] * g[k];
        w[k] *= decay;
        w[k] -= step_size * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
    }
}

mm_status mm_optim_step(mm_optimizer *o, mm_params *p, float lr)
{
    if (o->n != p->total) return MM_ERR(MM_ERR_INTERNAL, "optimiser state does not match the parameters");
    o->step++;
    if (o->kind == MM_OPT_ADAMW) {
        double bc1 = 1.0 - pow(o->beta1, (double)o->step);
        double bc2 = 1.0 - pow(o->beta2, (double)o->step);
        float step_size = (float)(lr / bc1);
        float bc2_sqrt = (float)sqrt(bc2);
        for (int i = 0; i < p->count; i++) {
            const mm_param_info *pi = &p->info[i];
            size_t off = pi->offset;
            adamw_update(p->data + off, p->grad + off, o->m + off, o->v + off, pi->n, o->beta1,
                         o->beta2, o->eps, pi->decay ? 1.0f - lr * o->weight_decay : 1.0f,
                         step_size, bc2_sqrt);
        }
    } else {
        for (int i = 0; i < p->count; i++) {
            const mm_param_info *pi = &p->info[i];
            float *w = p->data + pi->offset, *g = p->grad + pi->offset, *b = o->m + pi->offset;
            float wd = pi->decay ? o->weight_decay : 0.0f;
            for (size_t k = 0; k < pi->n; k++) {
                float d = g[k] + wd * w[k];
                if (o->momentum > 0) {
                    b[k] = o->step == 1 ? d : o->momentum * b[k] + d;
                    d = o->nesterov ? d + o->momentum * b[k] : b[k];
                }
                w[k] -= lr * d;
            }
        }
    }
    return MM_OK;
}

float mm_schedule_lr(const mm_schedule *s, int64_t step)
{
    if (s->warmup > 0 && step < s->warmup) return s->lr_max * (float)(step + 1) / (float)s->warmup;
    int64_t span = s->total - s->warmup;
    if (span <= 0 || step >= s->total) return s->total > s->warmup ? s->lr_min : s->lr_max;
    double progress = (double)(step - s->warmup) / (double)span;
    return (float)(s->lr_min + 0.5 * (s->lr_max - s->lr_min) * (1.0 + cos(M_PI * progress)));
}

mm_status mm_clip_grad_norm(mm_params *p, double max_norm, double *norm_out)
{
    double norm = mm_params_grad_norm(p);
    if (norm_out) *norm_out = norm;
    if (!isfinite(norm)) {
        int bad = -1;
        mm_params_grad_finite(p, &bad);
        return MM_ERR(MM_ERR_NUMERIC, "gradient norm is %g (first non-finite gradient: %s)", norm,
                      bad >= 0 ? p->info[bad].name : "?");
    }
    if (max_norm > 0 && norm > max_norm) {
        float scale = (float)(max_norm / (norm + 1e-6));
        for (size_t k = 0; k < p->total; k++) p->grad[k] *= scale;
    }
    return MM_OK;
}
