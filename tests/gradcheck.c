/* gradcheck.c: see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mmsa/rng.h"

void gc_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * mm_rng_uniform(&r);
}

void gc_fill_away_from_zero(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    mm_rng r;
    mm_rng_init(&r, seed, MM_STREAM_USER + 1);
    for (int64_t i = 0; i < n; i++) {
        float m = lo + (hi - lo) * mm_rng_uniform(&r);
        x[i] = (mm_rng_u32(&r) & 1) ? m : -m;
    }
}

/* Forward on a fresh step; returns L = sum w_j out_j in double, or NAN on error. */
static double forward_loss(mm_tape *t, gc_build_fn f, void *ctx, int n_in, gc_input *in,
                           bool with_grad, float **grads, mm_tensor **out_keep)
{
    mm_tensor *x[GC_MAX_IN];
    mm_tensor *out = NULL;
    if (mm_tape_reset(t) != MM_OK) return NAN;
    t->grad_enabled = with_grad;
    for (int i = 0; i < n_in; i++) {
        if (mm_tensor_wrap(t, in[i].data, with_grad && in[i].grad ? grads[i] : NULL, in[i].ndim,
                           in[i].shape, &x[i]) != MM_OK)
            return NAN;
    }
    if (f(t, x, ctx, &out) != MM_OK) {
        mm_error_print(stderr, -1);
        return NAN;
    }
    mm_rng r;
    mm_rng_init(&r, 777, MM_STREAM_USER + 2);
    double L = 0.0;
    for (int64_t j = 0; j < out->n; j++) {
        double w = 0.5 + mm_rng_uniform_double(&r); /* positive weights, never all cancel */
        if (mm_rng_u32(&r) & 1) w = -w;
        L += w * out->data[j];
        if (with_grad && out->grad) out->grad[j] = (float)w;
    }
    if (out_keep) *out_keep = out;
    return L;
}

int gradcheck(gc_build_fn f, void *ctx, int n_in, gc_input *in, const gc_opts *opts)
{
    gc_opts o = {1e-3, 1e-2, 1e-3, 0, false};
    if (opts) {
        if (opts->h > 0) o.h = opts->h;
        if (opts->rtol > 0) o.rtol = opts->rtol;
        if (opts->atol > 0) o.atol = opts->atol;
        o.max_elems = opts->max_elems;
        o.verbose = opts->verbose;
    }
    mm_tape t;
    if (mm_tape_init(&t, 1 << 20) != MM_OK) return 1;
    float *grads[GC_MAX_IN] = {0};
    int bad = 0;
    for (int i = 0; i < n_in; i++) {
        int64_t n = 1;
        for (int d = 0; d < in[i].ndim; d++) n *= in[i].shape[d];
        grads[i] = mm_calloc((size_t)(n ? n : 1), sizeof(float));
    }
    mm_tensor *out = NULL;
    double L0 = forward_loss(&t, f, ctx, n_in, in, true, grads, &out);
    if (isnan(L0)) {
        fprintf(stderr, "gradcheck: forward failed\n");
        bad = 1;
        goto done;
    }
    if (!out->grad) {
        bool any = false;
        for (int i = 0; i < n_in; i++) any |= in[i].grad;
        if (any) {
            fprintf(stderr, "gradcheck: output has no gradient although an input wants one\n");
            bad = 1;
            goto done;
        }
    }
    if (mm_tape_run_backward(&t) != MM_OK) {
        mm_error_print(stderr, -1);
        bad = 1;
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        if (!in[i].grad) continue;
        int64_t n = 1;
        for (int d = 0; d < in[i].ndim; d++) n *= in[i].shape[d];
        /* Copy the analytic gradient: the FD forwards below reuse the arena. */
        float *ga = mm_malloc((size_t)(n ? n : 1) * sizeof(float));
        memcpy(ga, grads[i], (size_t)n * sizeof(float));
        double scale = 1.0;
        for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs(ga[j]));
        int64_t step = (o.max_elems > 0 && n > o.max_elems) ? n / o.max_elems : 1;
        for (int64_t j = 0; j < n; j += step) {
            float x0 = in[i].data[j];
            double h = o.h * fmax(1.0, fabs(x0));
            in[i].data[j] = (float)(x0 + h);
            double hp = (double)in[i].data[j] - x0;
            double Lp = forward_loss(&t, f, ctx, n_in, in, false, grads, NULL);
            in[i].data[j] = (float)(x0 - h);
            double hm = x0 - (double)in[i].data[j];
            double Lm = forward_loss(&t, f, ctx, n_in, in, false, grads, NULL);
            in[i].data[j] = x0;
            double fd = (Lp - Lm) / (hp + hm);
            double a = ga[j];
            double err = fabs(a - fd);
            bool ok = err <= o.atol * scale + o.rtol * fmax(fabs(a), fabs(fd));
            if (!ok || o.verbose)
                fprintf(stderr, "gradcheck: input %d elem %lld analytic %.6g fd %.6g %s\n", i,
                        (long long)j, a, fd, ok ? "" : "MISMATCH");
            if (!ok) bad++;
        }
        mm_free_sized(ga, (size_t)(n ? n : 1) * sizeof(float));
    }
done:
    for (int i = 0; i < n_in; i++) {
        int64_t n = 1;
        for (int d = 0; d < in[i].ndim; d++) n *= in[i].shape[d];
        mm_free_sized(grads[i], (size_t)(n ? n : 1) * sizeof(float));
    }
    mm_tape_destroy(&t);
    return bad;
}
