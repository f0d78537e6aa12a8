/* isomers.c: groups of constitutional isomers among held-out molecules and the rank of
 * the true graph among its isomers' (eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/eval.h"

const int64_t mm_eval_bin_lo[MM_EVAL_N_BINS] = {2, 3, 4, 6, 11};

static int bin_of(int64_t size)
{
    int b = 0;
    while (b + 1 < MM_EVAL_N_BINS && size >= mm_eval_bin_lo[b + 1]) b++;
    return b;
}

void mm_eval_groups_free(mm_eval_groups *g)
{
    if (!g) return;
    if (g->offset) MM_FREE(g->offset, (size_t)(g->n_groups + 1) * sizeof(int64_t));
    if (g->member) MM_FREE(g->member, (size_t)(g->n_members > 0 ? g->n_members : 1) * sizeof(int64_t));
    memset(g, 0, sizeof *g);
}

/* qsort has no context argument: the strings being sorted by */
static const char *const *g_formula, *const *g_smiles;

static int cmp_candidate(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    int c = strcmp(g_formula[a], g_formula[b]);
    if (!c) c = strcmp(g_smiles[a], g_smiles[b]);
    return c ? c : (a > b) - (a < b);
}

typedef struct {
    int64_t first, start, size; /* first member, its place in the sorted list, members */
} group_span;

static int cmp_span(const void *x, const void *y)
{
    int64_t a = ((const group_span *)x)->first, b = ((const group_span *)y)->first;
    return (a > b) - (a < b);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

mm_status mm_eval_isomer_groups(const char *const *formula, const char *const *smiles, const uint8_t *ok,
                                int64_t n, mm_eval_groups *out)
{
    MM_CHECK_ARG(formula && smiles && out && n >= 0, "mm_eval_isomer_groups: bad argument");
    memset(out, 0, sizeof *out);
    size_t nb = (size_t)(n > 0 ? n : 1) * sizeof(int64_t), nb_span = (size_t)(n > 0 ? n : 1) * sizeof(group_span);
    int64_t *cand = mm_malloc(nb), *uniq = mm_malloc(nb);
    group_span *span = mm_malloc(nb_span);
    mm_status st = MM_OK;
    if (!cand || !uniq || !span) {
        st = MM_ERR(MM_ERR_NOMEM, "cannot allocate the isomer groups of %lld molecules", (long long)n);
        goto done;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ok && !ok[i]) continue;
        MM_CHECK_ARG(formula[i] && smiles[i], "mm_eval_isomer_groups: molecule %lld has no formula or SMILES string",
                     (long long)i);
        if (!formula[i][0]) {
            out->n_no_formula++;
            continue;
        }
        cand[m++] = i;
    }
    out->n_candidates = m;
    g_formula = formula;
    g_smiles = smiles;
    qsort(cand, (size_t)m, sizeof(int64_t), cmp_candidate);
    /* sorted by (formula, smiles, row): the first row of each SMILES stays */
    int64_t nu = 0, ns = 0;
    for (int64_t a = 0; a < m;) {
        int64_t start = nu, b = a;
        while (b < m && !strcmp(formula[cand[b]], formula[cand[a]])) {
            if (b > a && !strcmp(smiles[cand[b]], smiles[cand[b - 1]]))
                out->n_duplicates++;
            else
                uniq[nu++] = cand[b];
            b++;
        }
        if (nu - start >= 2) {
            qsort(uniq + start, (size_t)(nu - start), sizeof(int64_t), cmp_i64);
            span[ns++] = (group_span){uniq[start], start, nu - start};
        }
        a = b;
    }
    qsort(span, (size_t)ns, sizeof(group_span), cmp_span);
    int64_t total = 0;
    for (int64_t s = 0; s < ns; s++) total += span[s].size;
    out->offset = mm_malloc((size_t)(ns + 1) * sizeof(int64_t));
    out->member = mm_malloc((size_t)(total > 0 ? total : 1) * sizeof(int64_t));
    out->n_groups = ns;
    out->n_members = total;
    if (!out->offset || !out->member) {
        st = MM_ERR(MM_ERR_NOMEM, "cannot allocate %lld isomer groups", (long long)ns);
        goto done;
    }
    out->offset[0] = 0;
    for (int64_t s = 0; s < ns; s++) {
        memcpy(out->member + out->offset[s], uniq + span[s].start, (size_t)span[s].size * sizeof(int64_t));
        out->offset[s + 1] = out->offset[s] + span[s].size;
    }
done:
    if (cand) MM_FREE(cand, nb);
    if (uniq) MM_FREE(uniq, nb);
    if (span) MM_FREE(span, nb_span);
    if (st != MM_OK) mm_eval_groups_free(out);
    return st;
}

static void bin_add(mm_eval_isomer_bin *b, int64_t size, int64_t rank)
{
    b->n_molecules++;
    b->top1 += rank == 0;
    b->chance += 1.0 / (double)size;
    b->mean_rank += (double)rank;
}

static void bin_finish(mm_eval_isomer_bin *b)
{
    if (b->n_molecules == 0) {
        b->top1 = b->chance = b->mean_rank = NAN;
        return;
    }
    b->top1 /= (double)b->n_molecules;
    b->chance /= (double)b->n_molecules;
    b->mean_rank /= (double)b->n_molecules;
}

mm_status mm_eval_isomer_ranks(const float *u, const float *g, int64_t d, const mm_eval_groups *gr,
                               mm_eval_isomers *out, int64_t *rank)
{
    MM_CHECK_ARG(u && g && d >= 1 && gr && out, "mm_eval_isomer_ranks: bad argument");
    memset(out, 0, sizeof *out);
    for (int64_t s = 0; s < gr->n_groups; s++) {
        const int64_t *mem = gr->member + gr->offset[s];
        int64_t size = gr->offset[s + 1] - gr->offset[s];
        mm_eval_isomer_bin *b = &out->bin[bin_of(size)];
        out->all.n_groups++;
        b->n_groups++;
        for (int64_t i = 0; i < size; i++) {
            const float *ui = u + mem[i] * d;
            double self = 0;
            for (int64_t q = 0; q < d; q++) self += (double)ui[q] * g[mem[i] * d + q];
            int64_t r = 0;
            for (int64_t j = 0; j < size; j++) {
                if (j == i) continue;
                double sc = 0;
                for (int64_t q = 0; q < d; q++) sc += (double)ui[q] * g[mem[j] * d + q];
                r += sc > self || (sc == self && j < i);
            }
            if (rank) rank[gr->offset[s] + i] = r;
            bin_add(&out->all, size, r);
            bin_add(b, size, r);
        }
    }
    bin_finish(&out->all);
    for (int b = 0; b < MM_EVAL_N_BINS; b++) bin_finish(&out->bin[b]);
    return MM_OK;
}
