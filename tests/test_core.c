/* Tests of the core: errors, allocator and arena, RNG, parameter registry,
 * optimisers, schedule and clipping. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mmsa/fs.h"
#include "mmsa/ops.h"
#include "mmsa/optim.h"
#include "mmsa/params.h"
#include "mmsa/rng.h"
#include "mmsa/run.h"
#include "testutil.h"

/* ---- errors ---------------------------------------------------------------- */

static mm_status inner(int x)
{
    if (x < 0) return MM_ERR(MM_ERR_ARG, "x is %d, needs >= 0", x);
    return MM_OK;
}
static mm_status middle(int x) { MM_CALL(inner(x)); return MM_OK; }
static mm_status outer(int x) { MM_CALL(middle(x)); return MM_OK; }

static void test_error_traceback(void **state)
{
    (void)state;
    assert_int_equal(outer(1), MM_OK);
    assert_int_equal(outer(-3), MM_ERR_ARG);
    assert_string_equal(mm_error_message(), "x is -3, needs >= 0");
    mm_error_hint("pass a non-negative x");
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf, "w");
    mm_error_print(f, 3);
    fclose(f);
    /* Message with rank, then frames innermost first, then the hint. */
    assert_non_null(strstr(buf, "[rank 3] error (invalid argument): x is -3"));
    char *pi = strstr(buf, "at inner"), *pm = strstr(buf, "at middle"), *po = strstr(buf, "at outer");
    assert_true(pi && pm && po && pi < pm && pm < po);
    assert_non_null(strstr(buf, "test_core.c:"));
    assert_non_null(strstr(buf, "HINT: pass a non-negative x"));
    mm_error_clear();
    assert_int_equal(mm_error_code(), MM_OK);
}

/* ---- allocator and arena ------------------------------------------------------ */

static void test_allocation_failure_is_reported_and_clean(void **state)
{
    (void)state;
    size_t live0 = mm_alloc_live_bytes();
    for (int fail_at = 1; fail_at <= 3; fail_at++) { /* 3 allocations: table, data, grad */
        mm_params p;
        mm_params_init(&p);
        tu_fail_alloc_after(fail_at);
        mm_status s = mm_params_add(&p, "w", 2, (int64_t[]){4, 4}, NULL);
        if (s == MM_OK) s = mm_params_add(&p, "b", 1, (int64_t[]){4}, NULL);
        if (s == MM_OK) s = mm_params_alloc(&p);
        tu_fail_alloc_after(0);
        assert_int_equal(s, MM_ERR_NOMEM);
        mm_error_clear();
        mm_params_destroy(&p);
        assert_int_equal(mm_alloc_live_bytes(), live0); /* nothing leaked */
    }
    mm_arena a;
    mm_arena_init(&a, 1024);
    void *x;
    tu_fail_alloc_after(1);
    assert_int_equal(mm_arena_alloc(&a, 100, &x), MM_ERR_NOMEM);
    tu_fail_alloc_after(0);
    mm_error_clear();
    assert_int_equal(mm_arena_alloc(&a, 100, &x), MM_OK); /* usable after a failure */
    mm_arena_destroy(&a);
    assert_int_equal(mm_alloc_live_bytes(), live0);
}

static void test_arena_alignment_and_growth(void **state)
{
    (void)state;
    mm_arena a;
    mm_arena_init(&a, 256);
    size_t reserved_after_step[6];
    for (int step = 0; step < 6; step++) {
        for (int i = 0; i < 50; i++) {
            void *p;
            assert_int_equal(mm_arena_alloc(&a, (size_t)(i * 37 + 1), &p), MM_OK);
            assert_int_equal((uintptr_t)p % 64, 0);
            memset(p, 0xab, (size_t)(i * 37 + 1));
        }
        assert_int_equal(mm_arena_reset(&a), MM_OK);
        reserved_after_step[step] = a.reserved;
    }
    /* After the first step spilled, one chunk holds a whole step: no more growth. */
    for (int s = 1; s < 6; s++) assert_int_equal(reserved_after_step[s], reserved_after_step[1]);
    assert_true(a.head && !a.head->next);
    mm_arena_destroy(&a);
}

/* Sanitizer builds: what the arena has not handed out is poisoned, every block is
 * followed by a red zone, and a reset poisons everything again, so an overrun of an
 * arena block is an ASan report (mm_cg_murcko's overflow went unseen without it). */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static void test_arena_red_zones(void **state)
{
    (void)state;
    mm_arena a;
    mm_arena_init(&a, 4096);
    const size_t sizes[] = {1, 7, 8, 63, 64, 65, 100, 128, 1000};
    char *blk[9];
    for (int k = 0; k < 9; k++) {
        assert_int_equal(mm_arena_alloc(&a, sizes[k], (void **)&blk[k]), MM_OK);
        assert_null(__asan_region_is_poisoned(blk[k], sizes[k])); /* all of it usable */
        assert_true(__asan_address_is_poisoned(blk[k] + sizes[k])); /* one past: caught */
        assert_true(__asan_address_is_poisoned(blk[k] + sizes[k] + 63));
    }
    for (int k = 0; k < 9; k++) memset(blk[k], 1, sizes[k]);
    assert_int_equal(mm_arena_reset(&a), MM_OK);
    for (int k = 0; k < 9; k++) assert_true(__asan_address_is_poisoned(blk[k])); /* stale after reset */
    mm_arena_destroy(&a);
}
#else
static void test_arena_red_zones(void **state)
{
    (void)state;
    skip(); /* only a sanitizer build (make asan) has red zones */
}
#endif

/* ---- RNG ------------------------------------------------------------------------ */

static void test_philox_known_answers(void **state)
{
    (void)state;
    /* Random123 kat_vectors, philox4x32_10: counter 0, key 0. */
    uint32_t out[4];
    mm_philox4x32(0, 0, 0, out);
    assert_int_equal(out[0], 0x6627e8d5u);
    assert_int_equal(out[1], 0xe169c58du);
    assert_int_equal(out[2], 0xbc57ac4cu);
    assert_int_equal(out[3], 0x9b00dbd8u);
    /* counter and key all ones */
    mm_philox4x32(UINT64_MAX, UINT64_MAX, UINT64_MAX, out);
    assert_int_equal(out[0], 0x408f276du);
    assert_int_equal(out[1], 0x41c83b0eu);
    assert_int_equal(out[2], 0xa20bc7c6u);
    assert_int_equal(out[3], 0x6d5451fdu);
}

static void test_philox_blocks_match_single(void **state)
{
    (void)state;
    /* runs shorter and longer than the 64 lanes, across a carry into the counter's high
     * word and across the wrap of the counter */
    const uint64_t starts[3] = {0, (1ull << 32) - 70, UINT64_MAX - 10};
    const int64_t lens[5] = {1, 63, 64, 65, 200};
    static uint32_t blocks[4 * 200];
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 5; l++) {
            mm_philox4x32_blocks(0x1234567887654321ull, 77 + (uint64_t)s, starts[s], lens[l], blocks);
            for (int64_t k = 0; k < lens[l]; k++) {
                uint32_t one[4];
                mm_philox4x32(0x1234567887654321ull, 77 + (uint64_t)s, starts[s] + (uint64_t)k, one);
                assert_memory_equal(blocks + 4 * k, one, sizeof one);
            }
        }
}

static void test_rng_streams_and_random_access(void **state)
{
    (void)state;
    mm_rng a, b;
    mm_rng_init(&a, 42, 7);
    mm_rng_init(&b, 42, 7);
    float seq[100];
    for (int i = 0; i < 100; i++) {
        seq[i] = mm_rng_uniform(&a);
        assert_true(seq[i] == mm_rng_uniform(&b));
        assert_true(seq[i] >= 0.0f && seq[i] < 1.0f);
    }
    /* the stateless draw at index i equals the i-th sequential draw */
    for (int i = 0; i < 100; i++) assert_true(mm_rng_uniform_at(42, 7, (uint64_t)i) == seq[i]);
    /* another stream differs */
    mm_rng_init(&b, 42, 8);
    int same = 0;
    for (int i = 0; i < 100; i++) same += mm_rng_uniform(&b) == seq[i];
    assert_true(same < 3);
    /* moments of uniform and normal */
    mm_rng_init(&a, 1, 1);
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = mm_rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    assert_true(fabs(s / n) < 0.01);
    assert_true(fabs(s2 / n - 1.0) < 0.02);
    /* permutation is a permutation, and reproducible */
    int64_t p1[50], p2[50];
    int seen[50] = {0};
    mm_rng_init(&a, 9, 9);
    mm_rng_permutation(&a, 50, p1);
    mm_rng_init(&a, 9, 9);
    mm_rng_permutation(&a, 50, p2);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(p1[i], p2[i]);
        seen[p1[i]]++;
    }
    for (int i = 0; i < 50; i++) assert_int_equal(seen[i], 1);
}

/* ---- parameters ------------------------------------------------------------------ */

static void test_params_registry(void **state)
{
    (void)state;
    mm_params p;
    mm_params_init(&p);
    int w, b;
    assert_int_equal(mm_params_add(&p, "layer.weight", 2, (int64_t[]){3, 5}, &w), MM_OK);
    assert_int_equal(mm_params_add(&p, "layer.bias", 1, (int64_t[]){3}, &b), MM_OK);
    assert_int_equal(mm_params_add(&p, "layer.bias", 1, (int64_t[]){3}, NULL), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_params_add(&p, "bad", 1, (int64_t[]){0}, NULL), MM_ERR_ARG);
    mm_error_clear();
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    assert_int_equal(mm_params_find(&p, "layer.bias"), b);
    assert_int_equal(mm_params_find(&p, "nope"), -1);
    assert_int_equal(p.info[w].offset % 16, 0);
    assert_int_equal(p.info[b].offset % 16, 0);
    assert_int_equal(mm_params_count_values(&p), 18);
    assert_true(p.info[w].decay && !p.info[b].decay);
    mm_params_init_linear(&p, w, b, 5);
    float bound = 1.0f / sqrtf(5.0f);
    for (int k = 0; k < 15; k++) assert_true(fabsf(mm_params_data(&p, w)[k]) <= bound);
    /* reproducible per parameter index */
    float keep[15];
    memcpy(keep, mm_params_data(&p, w), sizeof keep);
    mm_params_init_linear(&p, w, b, 5);
    assert_memory_equal(keep, mm_params_data(&p, w), sizeof keep);
    mm_tensor v = mm_params_view(&p, w);
    assert_int_equal(v.n, 15);
    assert_ptr_equal(v.grad, p.grad + p.info[w].offset);
    mm_params_grad(&p, b)[1] = NAN;
    int bad = -1;
    assert_false(mm_params_grad_finite(&p, &bad));
    assert_int_equal(bad, b);
    double norm;
    assert_int_equal(mm_clip_grad_norm(&p, 1.0, &norm), MM_ERR_NUMERIC);
    assert_non_null(strstr(mm_error_message(), "layer.bias"));
    mm_error_clear();
    mm_params_destroy(&p);
}

/* ---- optimisers ---------------------------------------------------------------- */

static void one_param(mm_params *p, float w0, float g)
{
    mm_params_init(p);
    assert_int_equal(mm_params_add(p, "w", 2, (int64_t[]){1, 1}, NULL), MM_OK);
    assert_int_equal(mm_params_alloc(p), MM_OK);
    p->data[0] = w0;
    p->grad[0] = g;
}

static void test_adamw_matches_reference_formula(void **state)
{
    (void)state;
    mm_params p;
    one_param(&p, 1.0f, 0.5f);
    mm_optimizer o;
    assert_int_equal(mm_optim_adamw(&o, &p, 0.9f, 0.999f, 1e-8f, 0.1f), MM_OK);
    /* Reference in double, PyTorch AdamW algorithm. */
    double w = 1.0, m = 0, v = 0, lr = 0.01;
    double grads[3] = {0.5, -0.25, 1.0};
    for (int t = 1; t <= 3; t++) {
        p.grad[0] = (float)grads[t - 1];
        assert_int_equal(mm_optim_step(&o, &p, (float)lr), MM_OK);
        double g = grads[t - 1];
        w *= 1 - lr * 0.1;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        double mh = m / (1 - pow(0.9, t)), vh = v / (1 - pow(0.999, t));
        w -= lr * mh / (sqrt(vh) + 1e-8);
        assert_float_equal(p.data[0], w, 1e-6);
    }
    mm_optim_destroy(&o);
    mm_params_destroy(&p);
}

/* Many parameters of odd lengths (the vectorised body and its tail, decay on and off):
 * every value bit-equal to the scalar float formula of the update, step after step. */
static void test_adamw_vector_loop_equals_scalar_formula(void **state)
{
    (void)state;
    const int64_t len[4] = {1003, 37, 4, 300};
    mm_params p;
    mm_params_init(&p);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, i % 2 ? "w%d.bias" : "w%d", i);
        assert_int_equal(mm_params_add(&p, name, 1, &len[i], NULL), MM_OK);
    }
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    size_t n = p.total;
    float *w = malloc(n * sizeof *w), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    assert_non_null(w);
    assert_non_null(m);
    assert_non_null(v);
    uint32_t s = 12345;
    for (size_t k = 0; k < n; k++) {
        s = s * 1664525u + 1013904223u;
        p.data[k] = w[k] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 2.0f;
    }
    mm_optimizer o;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.05f, lr = 3e-3f;
    assert_int_equal(mm_optim_adamw(&o, &p, b1, b2, eps, wd), MM_OK);
    for (int t = 1; t <= 4; t++) {
        for (size_t k = 0; k < n; k++) {
            s = s * 1664525u + 1013904223u;
            p.grad[k] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (float)t;
        }
        assert_int_equal(mm_optim_step(&o, &p, lr), MM_OK);
        float step_size = (float)(lr / (1.0 - pow(b1, t)));
        float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
        for (int i = 0; i < p.count; i++) {
            float decay = p.info[i].decay ? 1.0f - lr * wd : 1.0f;
            for (size_t k = p.info[i].offset; k < p.info[i].offset + p.info[i].n; k++) {
                float g = p.grad[k];
                m[k] = b1 * m[k] + (1.0f - b1) * g;
                v[k] = b2 * v[k] + (1.0f - b2) * g * g;
                w[k] *= decay;
                w[k] -= step_size * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
            }
        }
        assert_memory_equal(p.data, w, n * sizeof *w);
        assert_memory_equal(o.m, m, n * sizeof *m);
        assert_memory_equal(o.v, v, n * sizeof *v);
    }
    free(w);
    free(m);
    free(v);
    mm_optim_destroy(&o);
    mm_params_destroy(&p);
}

static void test_sgd_momentum_matches_reference_formula(void **state)
{
    (void)state;
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        mm_params p;
        one_param(&p, 2.0f, 0.0f);
        mm_optimizer o;
        assert_int_equal(mm_optim_sgd(&o, &p, 0.9f, nesterov, 0.01f), MM_OK);
        double w = 2.0, buf = 0, lr = 0.1;
        double grads[4] = {1.0, 0.5, -2.0, 0.25};
        for (int t = 0; t < 4; t++) {
            p.grad[0] = (float)grads[t];
            assert_int_equal(mm_optim_step(&o, &p, (float)lr), MM_OK);
            double d = grads[t] + 0.01 * w;
            buf = t == 0 ? d : 0.9 * buf + d;
            w -= lr * (nesterov ? d + 0.9 * buf : buf);
            assert_float_equal(p.data[0], w, 1e-5);
        }
        mm_optim_destroy(&o);
        mm_params_destroy(&p);
    }
}

static void test_schedule_warmup_cosine(void **state)
{
    (void)state;
    mm_schedule s = {1e-3f, 1e-5f, 10, 110};
    assert_float_equal(mm_schedule_lr(&s, 0), 1e-4f, 1e-9);
    assert_float_equal(mm_schedule_lr(&s, 9), 1e-3f, 1e-9);
    assert_float_equal(mm_schedule_lr(&s, 10), 1e-3f, 1e-9);
    assert_float_equal(mm_schedule_lr(&s, 60), (1e-3f + 1e-5f) / 2, 1e-8);
    assert_float_equal(mm_schedule_lr(&s, 110), 1e-5f, 1e-9);
    assert_float_equal(mm_schedule_lr(&s, 500), 1e-5f, 1e-9);
    for (int64_t t = 10; t < 110; t++) assert_true(mm_schedule_lr(&s, t + 1) <= mm_schedule_lr(&s, t));
    mm_schedule flat = {3e-4f, 0, 0, 0};
    assert_float_equal(mm_schedule_lr(&flat, 1000), 3e-4f, 1e-9);
}

static void test_clip_grad_norm(void **state)
{
    (void)state;
    mm_params p;
    mm_params_init(&p);
    assert_int_equal(mm_params_add(&p, "a", 1, (int64_t[]){2}, NULL), MM_OK);
    assert_int_equal(mm_params_add(&p, "b", 2, (int64_t[]){1, 1}, NULL), MM_OK);
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    mm_params_grad(&p, 0)[0] = 3;
    mm_params_grad(&p, 0)[1] = 0;
    mm_params_grad(&p, 1)[0] = 4;
    double norm;
    assert_int_equal(mm_clip_grad_norm(&p, 10.0, &norm), MM_OK);
    assert_float_equal(norm, 5.0, 1e-12);
    assert_float_equal(mm_params_grad(&p, 1)[0], 4.0f, 0); /* below the limit: untouched */
    assert_int_equal(mm_clip_grad_norm(&p, 1.0, &norm), MM_OK);
    assert_float_equal(mm_params_grad_norm(&p), 1.0, 1e-5);
    assert_float_equal(mm_params_grad(&p, 0)[0] / mm_params_grad(&p, 1)[0], 0.75, 1e-6);
    mm_params_destroy(&p);
}

/* ---- a training-shaped loop: it learns, and memory does not grow -------------- */

static void test_training_loop_learns_without_memory_growth(void **state)
{
    (void)state;
    /* Fit y = relu(x W1^T + b1) W2^T + b2 to a fixed random teacher. */
    enum { N = 64, D = 8, H = 16 };
    mm_params p;
    mm_params_init(&p);
    int w1, b1, w2, b2;
    assert_int_equal(mm_params_add(&p, "w1", 2, (int64_t[]){H, D}, &w1), MM_OK);
    assert_int_equal(mm_params_add(&p, "b1", 1, (int64_t[]){H}, &b1), MM_OK);
    assert_int_equal(mm_params_add(&p, "w2", 2, (int64_t[]){1, H}, &w2), MM_OK);
    assert_int_equal(mm_params_add(&p, "b2", 1, (int64_t[]){1}, &b2), MM_OK);
    assert_int_equal(mm_params_alloc(&p), MM_OK);
    mm_params_init_linear(&p, w1, b1, 1);
    mm_params_init_linear(&p, w2, b2, 1);
    float x[N * D], y[N];
    mm_rng r;
    mm_rng_init(&r, 3, MM_STREAM_USER);
    for (int i = 0; i < N * D; i++) x[i] = mm_rng_normal(&r);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += x[i * D + j] * (j % 3 - 1.0);
        y[i] = (float)tanh(s);
    }
    mm_optimizer o;
    assert_int_equal(mm_optim_adamw(&o, &p, 0.9f, 0.999f, 1e-8f, 0.0f), MM_OK);
    mm_schedule sched = {1e-2f, 1e-3f, 20, 600};
    mm_tape t;
    assert_int_equal(mm_tape_init(&t, 1 << 12), MM_OK);
    double first = 0, last = 0;
    size_t reserved_10 = 0, live_10 = 0;
    for (int step = 0; step < 600; step++) {
        assert_int_equal(mm_tape_reset(&t), MM_OK);
        mm_params_zero_grad(&p);
        mm_tensor *X, *Y, *W1, *B1, *W2, *B2, *h, *a, *out, *d, *sq, *loss;
        assert_int_equal(mm_tensor_wrap(&t, x, NULL, 2, (int64_t[]){N, D}, &X), MM_OK);
        assert_int_equal(mm_tensor_wrap(&t, y, NULL, 2, (int64_t[]){N, 1}, &Y), MM_OK);
        assert_int_equal(mm_params_tensor(&p, &t, w1, &W1), MM_OK);
        assert_int_equal(mm_params_tensor(&p, &t, b1, &B1), MM_OK);
        assert_int_equal(mm_params_tensor(&p, &t, w2, &W2), MM_OK);
        assert_int_equal(mm_params_tensor(&p, &t, b2, &B2), MM_OK);
        assert_int_equal(mm_linear(&t, X, W1, B1, &h), MM_OK);
        assert_int_equal(mm_relu(&t, h, &a), MM_OK);
        assert_int_equal(mm_linear(&t, a, W2, B2, &out), MM_OK);
        assert_int_equal(mm_sub(&t, out, Y, &d), MM_OK);
        assert_int_equal(mm_mul(&t, d, d, &sq), MM_OK);
        assert_int_equal(mm_mean(&t, sq, MM_AXIS_ALL, &loss), MM_OK);
        assert_int_equal(mm_tape_backward(&t, loss), MM_OK);
        double norm;
        assert_int_equal(mm_clip_grad_norm(&p, 5.0, &norm), MM_OK);
        assert_int_equal(mm_optim_step(&o, &p, mm_schedule_lr(&sched, step)), MM_OK);
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        if (step == 10) {
            reserved_10 = t.arena.reserved;
            live_10 = mm_alloc_live_bytes();
        }
    }
    assert_true(last < 0.1 * first);
    assert_int_equal(t.arena.reserved, reserved_10);
    assert_int_equal(mm_alloc_live_bytes(), live_10);
    mm_tape_destroy(&t);
    mm_optim_destroy(&o);
    mm_params_destroy(&p);
}

/* ---- mkdir -p ----------------------------------------------------------------- */

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_mkdir_p(void **state)
{
    (void)state;
    char base[512], deep[700], file[600], under[700];
    snprintf(base, sizeof base, "%s/mkdir_p", tu_tmpdir());
    snprintf(deep, sizeof deep, "%s/a/b/c/", base);
    assert_int_equal(mm_mkdir_p(deep, "run directory"), MM_OK);
    snprintf(deep, sizeof deep, "%s/a/b/c", base);
    assert_true(is_dir(deep));
    assert_int_equal(mm_mkdir_p(deep, "run directory"), MM_OK); /* existing: fine */

    /* the name is taken by a file: the message says which directory and why */
    snprintf(file, sizeof file, "%s/plain", base);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(mm_mkdir_p(file, "run directory"), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "run directory"));
    assert_non_null(strstr(mm_error_message(), "not a directory"));
    mm_error_clear();

    /* a parent is a file: the component that failed is named */
    snprintf(under, sizeof under, "%s/sub/x", file);
    assert_int_equal(mm_mkdir_p(under, "checkpoint directory"), MM_ERR_IO);
    assert_non_null(strstr(mm_error_message(), "cannot create checkpoint directory"));
    assert_non_null(strstr(mm_error_message(), under));
    assert_false(is_dir(under));
    mm_error_clear();

    assert_int_equal(mm_mkdir_p("", "run directory"), MM_ERR_ARG);
    mm_error_clear();
    char *longname = malloc(5000);
    assert_non_null(longname);
    memset(longname, 'x', 4999);
    longname[4999] = '\0';
    assert_int_equal(mm_mkdir_p(longname, "run directory"), MM_ERR_ARG);
    assert_non_null(strstr(mm_error_message(), "too long"));
    mm_error_clear();
    free(longname);

    /* not writable (root writes anywhere, so only checked for other users) */
    if (geteuid() != 0) {
        char ro[700];
        snprintf(ro, sizeof ro, "%s/readonly", base);
        assert_int_equal(mkdir(ro, 0555), 0);
        assert_int_equal(mm_mkdir_p(ro, "run directory"), MM_ERR_IO);
        assert_non_null(strstr(mm_error_message(), "not writable"));
        mm_error_clear();
    }
}

/* The progress ETA paces on the steps this process ran: a run resumed at step 900 that
 * took 100 s for 100 steps has 1000 s left to step 2000 (not 100 s, the pace of all 1000). */
static void test_eta_counts_this_session_only(void **state)
{
    (void)state;
    char buf[32];
    mm_run_fmt_eta(100.0, 900, 1000, 2000, buf, sizeof buf);
    assert_string_equal(buf, "0:16:40");
    mm_run_fmt_eta(100.0, 0, 1000, 2000, buf, sizeof buf);
    assert_string_equal(buf, "0:01:40");
    mm_run_fmt_eta(5.0, 42, 42, 100, buf, sizeof buf); /* no step yet: no division by zero */
    assert_string_equal(buf, "0:04:50");
    mm_run_fmt_eta(5.0, 0, 120, 100, buf, sizeof buf); /* past the end */
    assert_string_equal(buf, "0:00:00");
}

/* Resuming warns of what changed against the run's job.yaml: a value that differs, and a key
 * the older job.yaml does not have (added since, so that run had its old default); a key of
 * the same name in another section, and equal texts, give nothing. The texts come from the
 * job writer itself. */
static void test_resume_job_diff(void **state)
{
    (void)state;
    mm_job job;
    assert_int_equal(mm_cfg_defaults(&mm_job_schema, &job), MM_OK);
    char *now = NULL;
    assert_int_equal(mm_run_job_text(&job, &now), MM_OK);
    assert_int_equal(mm_run_job_diff(now, now, NULL), 0);
    /* the earlier run: another lr, and no loss.mem_reseed_from line */
    char *old = strdup(now);
    assert_non_null(old);
    char *line = strstr(old, "  mem_reseed_from: ");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    memmove(line, eol + 1, strlen(eol + 1) + 1);
    char *lr = strstr(old, "\n  lr: ");
    assert_non_null(lr);
    lr[7] = lr[7] == '9' ? '8' : '9';
    char *report = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&report, &len);
    assert_non_null(f);
    assert_int_equal(mm_run_job_diff(old, now, f), 2);
    fclose(f);
    assert_non_null(strstr(report, "  loss.mem_reseed_from: farthest (not in the run's job.yaml"));
    assert_non_null(strstr(report, "  train.lr: 0.001 (the run had: 9.001)"));
    assert_null(strstr(report, "lr_min"));
    free(report);
    free(old);
    free(now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_traceback),
        cmocka_unit_test(test_allocation_failure_is_reported_and_clean),
        cmocka_unit_test(test_arena_alignment_and_growth),
        cmocka_unit_test(test_arena_red_zones),
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_philox_blocks_match_single),
        cmocka_unit_test(test_rng_streams_and_random_access),
        cmocka_unit_test(test_params_registry),
        cmocka_unit_test(test_adamw_matches_reference_formula),
        cmocka_unit_test(test_adamw_vector_loop_equals_scalar_formula),
        cmocka_unit_test(test_sgd_momentum_matches_reference_formula),
        cmocka_unit_test(test_schedule_warmup_cosine),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_training_loop_learns_without_memory_growth),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_eta_counts_this_session_only),
        cmocka_unit_test(test_resume_job_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
