/* retrieval.c: cross-modal retrieval over pools of held-out molecules (eval.h). */
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/eval.h"
#include "mmsa/rng.h"

/* a . b summed in double in order, as mm_retrieval_ranks does (same bits). */
static double dot(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t q = 0; q < d; q++) s += (double)a[q] * b[q];
    return s;
}

mm_status mm_eval_ranks_both(const float *a, const float *b, int64_t m, int64_t d, int64_t *rank_ab,
                             int64_t *rank_ba)
{
    MM_CHECK_ARG(a && b && m >= 0 && d >= 1, "mm_eval_ranks_both: bad argument");
    double *self = mm_malloc((size_t)(m > 0 ? m : 1) * sizeof(double));
    int64_t *rab = rank_ab, *rba = rank_ba;
    if (!self) return MM_ERR(MM_ERR_NOMEM, "cannot allocate the scores of %lld pairs", (long long)m);
    for (int64_t i = 0; i < m; i++) {
        self[i] = dot(a + i * d, b + i * d, d);
        if (rab) rab[i] = 0;
        if (rba) rba[i] = 0;
    }
    for (int64_t i = 0; i < m; i++) {
        const float *ai = a + i * d;
        int64_t j = 0;
        /* four candidates at a time: four independent sums, each in the order of dot() */
        for (; j + 4 <= m; j += 4) {
            const float *b0 = b + j * d, *b1 = b0 + d, *b2 = b1 + d, *b3 = b2 + d;
            double s[4] = {0, 0, 0, 0};
            for (int64_t q = 0; q < d; q++) {
                double x = ai[q];
                s[0] += x * b0[q];
                s[1] += x * b1[q];
                s[2] += x * b2[q];
                s[3] += x * b3[q];
            }
            for (int t = 0; t < 4; t++) {
                int64_t jj = j + t;
                if (jj == i) continue;
                if (rab) rab[i] += s[t] > self[i] || (s[t] == self[i] && jj < i);
                if (rba) rba[jj] += s[t] > self[jj] || (s[t] == self[jj] && i < jj);
            }
        }
        for (; j < m; j++) {
            if (j == i) continue;
            double s = dot(ai, b + j * d, d);
            if (rab) rab[i] += s > self[i] || (s == self[i] && j < i);
            if (rba) rba[j] += s > self[j] || (s == self[j] && i < j);
        }
    }
    MM_FREE(self, (size_t)(m > 0 ? m : 1) * sizeof(double));
    return MM_OK;
}

double mm_eval_chance(int64_t k, int64_t size)
{
    if (size <= 0) return 0;
    return (double)(k < size ? k : size) / (double)size;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

mm_status mm_eval_pool_retrieval(const float *u, const float *g, const uint8_t *ok, int64_t n, int64_t d, int64_t pool,
                            uint64_t seed, mm_eval_topk *out)
{
    MM_CHECK_ARG(u && g && out && n >= 0 && d >= 1 && (pool == 0 || pool >= 2), "mm_eval_pool_retrieval: bad argument");
    memset(out, 0, sizeof *out);
    out->pool = pool;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += !ok || ok[i];
    if (m == 0) return MM_ERR(MM_ERR_ARG, "mm_eval_pool_retrieval: no molecule has the modality");
    int64_t size = pool == 0 ? m : pool;
    if (size > m) {
        out->skipped = true;
        return MM_OK;
    }
    out->size = size;
    out->n_pools = m / size;
    out->n_queries = out->n_pools * size;

    size_t nb_rows = (size_t)m * sizeof(int64_t), nb_emb = (size_t)size * (size_t)d * sizeof(float),
           nb_rank = (size_t)size * sizeof(int64_t);
    int64_t *rows = mm_malloc(nb_rows), *perm = mm_malloc(nb_rows), *member = mm_malloc(nb_rank);
    int64_t *rab = mm_malloc(nb_rank), *rba = mm_malloc(nb_rank);
    float *pu = mm_malloc(nb_emb), *pg = mm_malloc(nb_emb);
    int64_t hits_t2g[MM_EVAL_KMAX] = {0}, hits_g2t[MM_EVAL_KMAX] = {0};
    mm_status st = MM_OK;
    if (!rows || !perm || !member || !rab || !rba || !pu || !pg) {
        st = MM_ERR(MM_ERR_NOMEM, "cannot allocate retrieval pools of %lld molecules", (long long)size);
        goto done;
    }
    m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!ok || ok[i]) rows[m++] = i;
    if (pool == 0) {
        for (int64_t i = 0; i < m; i++) perm[i] = i;
    } else {
        mm_rng r;
        mm_rng_init(&r, seed, 0);
        mm_rng_permutation(&r, m, perm);
    }
    for (int64_t p = 0; p < out->n_pools; p++) {
        for (int64_t t = 0; t < size; t++) member[t] = rows[perm[p * size + t]];
        qsort(member, (size_t)size, sizeof(int64_t), cmp_i64);
        for (int64_t t = 0; t < size; t++) {
            memcpy(pu + t * d, u + member[t] * d, (size_t)d * sizeof(float));
            memcpy(pg + t * d, g + member[t] * d, (size_t)d * sizeof(float));
        }
        MM_CALL_GOTO(st, mm_eval_ranks_both(pu, pg, size, d, rab, rba), done);
        for (int64_t t = 0; t < size; t++)
            for (int k = 0; k < MM_EVAL_KMAX; k++) {
                hits_t2g[k] += rab[t] < k + 1;
                hits_g2t[k] += rba[t] < k + 1;
            }
    }
    for (int k = 0; k < MM_EVAL_KMAX; k++) {
        out->t2g[k] = (double)hits_t2g[k] / (double)out->n_queries;
        out->g2t[k] = (double)hits_g2t[k] / (double)out->n_queries;
    }
done:
    if (rows) MM_FREE(rows, nb_rows);
    if (perm) MM_FREE(perm, nb_rows);
    if (member) MM_FREE(member, nb_rank);
    if (rab) MM_FREE(rab, nb_rank);
    if (rba) MM_FREE(rba, nb_rank);
    if (pu) MM_FREE(pu, nb_emb);
    if (pg) MM_FREE(pg, nb_emb);
    return st;
}
