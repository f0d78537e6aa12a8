/* memory_bank.c: partitioned anchors, sharded softmax loss, momentum update. */
#include "mmsa/memory_bank.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/blas.h"
#include "mmsa/rng.h"

static void normalise(float *v, int64_t dim)
{
    double s = 0;
    for (int64_t j = 0; j < dim; j++) s += (double)v[j] * v[j];
    float nrm = (float)sqrt(s);
    float inv = 1.0f / (nrm > 1e-12f ? nrm : 1e-12f);
    for (int64_t j = 0; j < dim; j++) v[j] *= inv;
}

mm_status mm_bank_init(mm_memory_bank *b, mm_dist *d, int64_t m, int64_t dim, uint64_t seed, float tau,
                       float momentum, int64_t reseed_after)
{
    memset(b, 0, sizeof *b);
    if (m < d->size)
        return MM_ERR(MM_ERR_CONFIG, "memory bank: %lld anchors cannot be split over %d ranks", (long long)m, d->size);
    b->d = d;
    b->m = m;
    b->dim = dim;
    b->tau = tau;
    b->momentum = momentum;
    b->reseed_after = reseed_after;
    mm_dist_block(m, d->size, d->rank, &b->m0, &b->m_local);
    b->anchors = mm_malloc((size_t)(b->m_local * dim) * sizeof(float));
    b->unused = mm_calloc((size_t)b->m_local, sizeof(int64_t));
    b->sum = mm_malloc((size_t)((b->m_local ? b->m_local : 1) * dim) * sizeof(double));
    b->count = mm_malloc((size_t)(b->m_local ? b->m_local : 1) * sizeof(int64_t));
    b->window_hit = mm_calloc((size_t)(b->m_local ? b->m_local : 1), 1);
    if (!b->anchors || !b->unused || !b->sum || !b->count || !b->window_hit) {
        mm_bank_destroy(b);
        return MM_ERR(MM_ERR_NOMEM, "memory bank: %lld x %lld anchors", (long long)b->m_local, (long long)dim);
    }
    /* Anchor a draws normal values from its own counter range: rank-independent. */
    for (int64_t a = 0; a < b->m_local; a++) {
        mm_rng r;
        mm_rng_init(&r, seed, MM_STREAM_ANCHOR);
        r.counter = (uint64_t)(b->m0 + a) * (uint64_t)dim; /* >= dim/2 blocks apart */
        float *v = b->anchors + a * dim;
        for (int64_t j = 0; j < dim; j++) v[j] = mm_rng_normal(&r);
        normalise(v, dim);
    }
    return MM_OK;
}

void mm_bank_destroy(mm_memory_bank *b)
{
    mm_free_sized(b->anchors, (size_t)(b->m_local * b->dim) * sizeof(float));
    mm_free_sized(b->unused, (size_t)b->m_local * sizeof(int64_t));
    mm_free_sized(b->sum, (size_t)((b->m_local ? b->m_local : 1) * b->dim) * sizeof(double));
    mm_free_sized(b->count, (size_t)(b->m_local ? b->m_local : 1) * sizeof(int64_t));
    mm_free_sized(b->window_hit, (size_t)(b->m_local ? b->m_local : 1));
    mm_free_sized(b->keys, (size_t)b->cap * sizeof *b->keys);
    mm_free_sized(b->cosv, (size_t)b->cap * sizeof(double));
    b->anchors = NULL;
    b->unused = NULL;
    b->sum = NULL;
    b->count = NULL;
    b->window_hit = NULL;
    b->keys = NULL;
    b->cosv = NULL;
    b->cap = 0;
}

mm_status mm_bank_set_rules(mm_memory_bank *b, int init_rule, int reseed_rule)
{
    if (init_rule != MM_BANK_INIT_RANDOM && init_rule != MM_BANK_INIT_BATCH)
        return MM_ERR(MM_ERR_ARG, "memory bank: unknown initialisation rule %d", init_rule);
    if (reseed_rule != MM_BANK_RESEED_FIRST && reseed_rule != MM_BANK_RESEED_FARTHEST)
        return MM_ERR(MM_ERR_ARG, "memory bank: unknown re-seeding rule %d", reseed_rule);
    b->reseed_rule = reseed_rule;
    /* due at the first update: one more idle step reaches reseed_after */
    if (init_rule == MM_BANK_INIT_BATCH)
        for (int64_t a = 0; a < b->m_local; a++) b->unused[a] = b->reseed_after - 1;
    return MM_OK;
}

typedef struct {
    mm_memory_bank *b;
    float *p;          /* [N, m_local] softmax probabilities over the whole bank, local columns */
    const int64_t *assign;
} bank_ctx;

static mm_status bank_backward(mm_node *nd)
{
    bank_ctx *c = nd->ctx;
    mm_memory_bank *b = c->b;
    mm_tensor *s = nd->in[0];
    int64_t n = s->shape[0], dim = b->dim;
    float g = nd->out->grad[0] / ((float)n * b->tau);
    /* d/ds_i = g (sum_j p_ij A_j - A_{a_i}), the sum over this rank's anchors only. */
    float *dp;
    MM_CALL(mm_tape_alloc(nd->tape, (size_t)(n * (b->m_local ? b->m_local : 1)) * sizeof(float), (void **)&dp));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < b->m_local; j++) dp[i * b->m_local + j] = g * c->p[i * b->m_local + j];
        int64_t a = c->assign[i] - b->m0;
        if (a >= 0 && a < b->m_local) dp[i * b->m_local + a] -= g;
    }
    mm_sgemm(false, false, n, dim, b->m_local, 1.0f, dp, b->m_local, b->anchors, dim, 1.0f, s->grad, dim);
    return MM_OK;
}

mm_status mm_bank_loss(mm_memory_bank *b, mm_tape *t, mm_tensor *s_hat, int64_t *assign, mm_tensor **loss)
{
    int64_t n = s_hat->shape[0], ml = b->m_local, dim = b->dim;
    if (mm_cols(s_hat) != dim)
        return MM_ERR(MM_ERR_ARG, "memory bank: embeddings of width %lld, anchors of width %lld", (long long)mm_cols(s_hat),
                      (long long)dim);
    float *sim;
    MM_CALL(mm_tape_alloc(t, (size_t)(n * (ml ? ml : 1)) * sizeof(float), (void **)&sim));
    mm_sgemm(false, true, n, ml, dim, 1.0f, s_hat->data, dim, b->anchors, dim, 0.0f, sim, ml);
    /* Nearest anchor: local best (first index on ties), then MAXLOC across ranks,
     * which also keeps the smallest index on equal values. */
    struct { float v; int i; } *best;
    MM_CALL(mm_tape_alloc(t, (size_t)n * sizeof *best, (void **)&best));
    double *red; /* [2n]: max then sum of exp */
    MM_CALL(mm_tape_alloc(t, (size_t)(2 * n) * sizeof(double), (void **)&red));
    for (int64_t i = 0; i < n; i++) {
        best[i].v = -FLT_MAX;
        best[i].i = (int)b->m;
        for (int64_t j = 0; j < ml; j++)
            if (sim[i * ml + j] > best[i].v) {
                best[i].v = sim[i * ml + j];
                best[i].i = (int)(b->m0 + j);
            }
    }
    int cn;
    MM_CALL(mm_dist_count((size_t)n, "memory bank rows", &cn));
    if (b->d->size > 1) {
        mm_dist_account(b->d, MM_COMM_BANK, (double)n * sizeof *best);
        MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, best, cn, MPI_FLOAT_INT, MPI_MAXLOC, b->d->comm));
    }
    for (int64_t i = 0; i < n; i++) assign[i] = best[i].i;
    /* Sharded softmax of sim / tau: global max is the best cosine / tau. */
    for (int64_t i = 0; i < n; i++) {
        double mx = best[i].v / b->tau, s = 0;
        for (int64_t j = 0; j < ml; j++) s += exp(sim[i * ml + j] / b->tau - mx);
        red[i] = s;
    }
    if (b->d->size > 1) {
        mm_dist_account(b->d, MM_COMM_BANK, (double)n * sizeof(double));
        MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, red, cn, MPI_DOUBLE, MPI_SUM, b->d->comm));
    }
    bank_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->b = b;
    c->p = sim; /* overwritten in place by the probabilities */
    c->assign = assign;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double mx = best[i].v / b->tau, lse = mx + log(red[i]);
        /* the assigned anchor is the max, so sim_{i,a_i}/tau = mx */
        total += lse - mx;
        for (int64_t j = 0; j < ml; j++) sim[i * ml + j] = (float)exp(sim[i * ml + j] / b->tau - lse);
    }
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, 1, (int64_t[]){1}, mm_tape_wants_grad(t, 1, &s_hat), &y));
    y->data[0] = (float)(total / (double)n);
    MM_CALL(mm_tape_record(t, "memory_bank_loss", bank_backward, y, 1, &s_hat, c));
    *loss = y;
    return MM_OK;
}

void mm_bank_assign_stats(const mm_memory_bank *b, const int64_t *assign, int64_t n, mm_bank_stats *stats)
{
    /* assign is global and replicated: count by sorting a copy in place of a table of M. */
    int64_t hit = 0;
    double h = 0;
    int64_t *sorted = mm_malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (sorted) {
        memcpy(sorted, assign, (size_t)n * sizeof(int64_t));
        for (int64_t i = 1; i < n; i++) { /* insertion sort: n is a batch */
            int64_t v = sorted[i], j = i - 1;
            while (j >= 0 && sorted[j] > v) {
                sorted[j + 1] = sorted[j];
                j--;
            }
            sorted[j + 1] = v;
        }
        for (int64_t i = 0; i < n;) {
            int64_t j = i;
            while (j < n && sorted[j] == sorted[i]) j++;
            double p = (double)(j - i) / (double)n;
            h -= p * log2(p);
            hit++;
            i = j;
        }
        mm_free_sized(sorted, (size_t)(n ? n : 1) * sizeof(int64_t));
    }
    (void)b;
    stats->anchors_hit = hit;
    stats->entropy_bits = h;
}

static int by_cos_then_row(const void *x, const void *y)
{
    const struct mm_bank_key *a = x, *b = y;
    if (a->cos != b->cos) return a->cos < b->cos ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* b->keys[0 .. n).row: the rows in re-seeding order. FARTHEST needs each row's cosine
 * to its assigned anchor (before the momentum update), which only the anchor's owner
 * can compute: owners fill their rows, the others 0, and a sum makes it global (exact:
 * one nonzero term per row). Sorted by (cosine, row), so the order is the same on
 * every rank and for every number of ranks. */
static mm_status reseed_order(mm_memory_bank *b, const float *s_hat, const int64_t *assign, int64_t n)
{
    if (n > b->cap) {
        mm_free_sized(b->keys, (size_t)b->cap * sizeof *b->keys);
        mm_free_sized(b->cosv, (size_t)b->cap * sizeof(double));
        b->cap = 0;
        b->keys = mm_malloc((size_t)n * sizeof *b->keys);
        b->cosv = mm_malloc((size_t)n * sizeof(double));
        if (!b->keys || !b->cosv) {
            mm_free_sized(b->keys, (size_t)n * sizeof *b->keys);
            mm_free_sized(b->cosv, (size_t)n * sizeof(double));
            b->keys = NULL;
            b->cosv = NULL;
            return MM_ERR(MM_ERR_NOMEM, "memory bank: re-seeding order of %lld rows", (long long)n);
        }
        b->cap = n;
    }
    struct mm_bank_key *k = b->keys;
    for (int64_t i = 0; i < n; i++) k[i] = (struct mm_bank_key){0, i};
    if (b->reseed_rule != MM_BANK_RESEED_FARTHEST) return MM_OK;
    int64_t dim = b->dim;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = assign[i] - b->m0;
        double c = 0;
        if (a >= 0 && a < b->m_local)
            for (int64_t j = 0; j < dim; j++) c += (double)s_hat[i * dim + j] * b->anchors[a * dim + j];
        b->cosv[i] = c;
    }
    if (b->d->size > 1) {
        int cn;
        MM_CALL(mm_dist_count((size_t)n, "memory bank rows", &cn));
        mm_dist_account(b->d, MM_COMM_BANK, (double)n * sizeof(double));
        MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, b->cosv, cn, MPI_DOUBLE, MPI_SUM, b->d->comm));
    }
    for (int64_t i = 0; i < n; i++) k[i].cos = b->cosv[i];
    qsort(k, (size_t)n, sizeof *k, by_cos_then_row);
    return MM_OK;
}

mm_status mm_bank_update(mm_memory_bank *b, const float *s_hat, const int64_t *assign, int64_t n,
                         mm_bank_stats *stats)
{
    int64_t dim = b->dim, ml = b->m_local;
    double *sum = b->sum;
    int64_t *count = b->count;
    MM_CALL(reseed_order(b, s_hat, assign, n));
    memset(count, 0, (size_t)ml * sizeof(int64_t));
    /* sums only of the anchors hit (usually few of M): zeroed on first touch */
    for (int64_t i = 0; i < n; i++) {
        int64_t a = assign[i] - b->m0;
        if (a >= 0 && a < ml && count[a]++ == 0) memset(sum + a * dim, 0, (size_t)dim * sizeof(double));
    }
    memset(count, 0, (size_t)ml * sizeof(int64_t));
    /* s_hat and assign are the global batch on every rank: owners need no messages. */
    for (int64_t i = 0; i < n; i++) {
        int64_t a = assign[i] - b->m0;
        if (a < 0 || a >= ml) continue;
        count[a]++;
        for (int64_t j = 0; j < dim; j++) sum[a * dim + j] += s_hat[i * dim + j];
    }
    int64_t to_reseed = 0;
    for (int64_t a = 0; a < ml; a++) {
        if (count[a] > 0) {
            float *v = b->anchors + a * dim;
            for (int64_t j = 0; j < dim; j++)
                v[j] = b->momentum * v[j] + (1.0f - b->momentum) * (float)(sum[a * dim + j] / (double)count[a]);
            normalise(v, dim);
            b->unused[a] = 0;
            b->window_hit[a] = 1;
        } else if (++b->unused[a] >= b->reseed_after) {
            to_reseed++;
        }
    }
    /* Re-seed in increasing global index: my first one takes the candidate row whose
     * position in the order is the number of anchors re-seeded on lower ranks. */
    int64_t before = 0, total = to_reseed;
    if (b->d->size > 1) {
        mm_dist_account(b->d, MM_COMM_BANK, 2 * sizeof(int64_t));
        MM_MPI_CALL(MPI_Exscan(&to_reseed, &before, 1, MPI_INT64_T, MPI_SUM, b->d->comm));
        if (b->d->rank == 0) before = 0;
        MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT64_T, MPI_SUM, b->d->comm));
    }
    int64_t pos = before;
    for (int64_t a = 0; a < ml && to_reseed > 0; a++) {
        if (count[a] > 0 || b->unused[a] < b->reseed_after) continue;
        if (pos < n) {
            memcpy(b->anchors + a * dim, s_hat + b->keys[pos].row * dim, (size_t)dim * sizeof(float));
            normalise(b->anchors + a * dim, dim);
            b->unused[a] = 0;
        }
        pos++;
    }
    int64_t reseeded = total < n ? total : n;
    b->window_reseeded += reseeded;
    b->window_steps++;
    if (stats) {
        mm_bank_assign_stats(b, assign, n, stats);
        stats->reseeded = reseeded;
    }
    return MM_OK;
}

mm_status mm_bank_window(mm_memory_bank *b, mm_bank_window_stats *w)
{
    int64_t hit = 0;
    for (int64_t a = 0; a < b->m_local; a++) hit += b->window_hit[a];
    if (b->d->size > 1) {
        mm_dist_account(b->d, MM_COMM_BANK, sizeof(int64_t));
        MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, &hit, 1, MPI_INT64_T, MPI_SUM, b->d->comm));
    }
    w->steps = b->window_steps;
    w->anchors_hit = hit;
    w->reseeded = b->window_reseeded;
    memset(b->window_hit, 0, (size_t)(b->m_local ? b->m_local : 1));
    b->window_steps = 0;
    b->window_reseeded = 0;
    return MM_OK;
}
