/* ft_split.c: scaffold and random splits of a labelled set (finetune.h). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/finetune.h"
#include "mmsa/rng.h"

const char *const mm_split_names[MM_N_SPLITS] = {"train", "valid", "test"};

/* Stream of the random split's permutation (rng.h: user streams start at MM_STREAM_USER). */
#define SPLIT_STREAM ((uint64_t)MM_STREAM_USER + 17u)

void mm_split_free(mm_split *s)
{
    for (int k = 0; k < MM_N_SPLITS; k++)
        if (s->idx[k]) mm_free_sized(s->idx[k], (size_t)(s->n[k] ? s->n[k] : 1) * sizeof(int64_t));
    memset(s, 0, sizeof *s);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static mm_status check_fracs(int64_t n, double ft, double fv)
{
    if (n < 0 || !(ft > 0) || !(fv >= 0) || ft + fv > 1 + 1e-9)
        return MM_ERR(MM_ERR_ARG, "split: fractions train %g, valid %g of %lld molecules", ft, fv, (long long)n);
    return MM_OK;
}

/* Allocate the three index arrays for the given sizes. */
static mm_status alloc_split(mm_split *s, const int64_t *n)
{
    memset(s, 0, sizeof *s);
    for (int k = 0; k < MM_N_SPLITS; k++) {
        s->n[k] = n[k];
        s->idx[k] = mm_malloc((size_t)(n[k] ? n[k] : 1) * sizeof(int64_t));
        if (!s->idx[k]) {
            mm_split_free(s);
            return MM_ERR(MM_ERR_NOMEM, "split: %lld indices", (long long)n[k]);
        }
    }
    return MM_OK;
}

static const char *const *g_scaf; /* qsort has no context argument in C11 */

static const char *scaf_of(int64_t i) { return g_scaf[i] ? g_scaf[i] : ""; }

/* by scaffold string, then index: each group contiguous, its first occurrence first */
static int cmp_by_scaffold(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int c = strcmp(scaf_of(x), scaf_of(y));
    if (c) return c;
    return (x > y) - (x < y);
}

typedef struct group {
    int64_t start, size, first; /* rows [start, start + size) of the sorted order; first = smallest index */
} group;

/* size descending; ties: chemprop keeps the order of first occurrence (a stable sort
 * of groups listed by first occurrence); deepchem / pretrain-gnns sort the key
 * (size, first index) in reverse, so the group that occurs LATER comes first. */
static int cmp_group_chemprop(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->size != y->size) return (x->size < y->size) - (x->size > y->size);
    return (x->first > y->first) - (x->first < y->first);
}

static int cmp_group_deepchem(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->size != y->size) return (x->size < y->size) - (x->size > y->size);
    return (x->first < y->first) - (x->first > y->first);
}

mm_status mm_split_scaffold(const char *const *scaffold, int64_t n, double frac_train, double frac_valid,
                            mm_scaffold_rule rule, mm_split *out)
{
    MM_CALL(check_fracs(n, frac_train, frac_valid));
    MM_CHECK_ARG(n == 0 || scaffold, "scaffold split: no scaffolds");
    MM_CHECK_ARG(rule == MM_SCAFFOLD_DEEPCHEM || rule == MM_SCAFFOLD_CHEMPROP, "scaffold split: rule %d", (int)rule);
    memset(out, 0, sizeof *out);
    size_t ib = (size_t)(n ? n : 1) * sizeof(int64_t), gb = (size_t)(n ? n : 1) * sizeof(group);
    int64_t *order = mm_malloc(ib);
    uint8_t *where = mm_malloc((size_t)(n ? n : 1));
    group *g = mm_malloc(gb);
    mm_status st = MM_OK;
    if (!order || !where || !g) {
        st = MM_ERR(MM_ERR_NOMEM, "scaffold split of %lld molecules", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) order[i] = i;
    g_scaf = scaffold;
    qsort(order, (size_t)n, sizeof *order, cmp_by_scaffold);
    int64_t ng = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && strcmp(scaf_of(order[i]), scaf_of(order[j])) == 0) j++;
        g[ng++] = (group){i, j - i, order[i]};
        i = j;
    }
    g_scaf = NULL;
    qsort(g, (size_t)ng, sizeof *g, rule == MM_SCAFFOLD_CHEMPROP ? cmp_group_chemprop : cmp_group_deepchem);
    /* Both compare integer counts with the float products of the fractions and n. */
    double train_size = frac_train * (double)n, valid_size = frac_valid * (double)n;
    double valid_cutoff = (frac_train + frac_valid) * (double)n;
    int64_t cnt[MM_N_SPLITS] = {0, 0, 0};
    for (int64_t k = 0; k < ng; k++) {
        int dest;
        double sz = (double)g[k].size;
        if (rule == MM_SCAFFOLD_CHEMPROP) {
            /* chemprop: fits in train? else fits in valid? else test */
            if ((double)cnt[0] + sz <= train_size) dest = MM_SPLIT_TRAIN;
            else if ((double)cnt[1] + sz <= valid_size) dest = MM_SPLIT_VALID;
            else dest = MM_SPLIT_TEST;
        } else {
            /* deepchem: over the train cutoff? then over the train + valid cutoff? */
            if ((double)cnt[0] + sz > train_size)
                dest = (double)(cnt[0] + cnt[1]) + sz > valid_cutoff ? MM_SPLIT_TEST : MM_SPLIT_VALID;
            else
                dest = MM_SPLIT_TRAIN;
        }
        cnt[dest] += g[k].size;
        for (int64_t r = g[k].start; r < g[k].start + g[k].size; r++) where[order[r]] = (uint8_t)dest;
    }
    MM_CALL_GOTO(st, alloc_split(out, cnt), done);
    int64_t fill[MM_N_SPLITS] = {0, 0, 0};
    for (int64_t i = 0; i < n; i++) out->idx[where[i]][fill[where[i]]++] = i;
    out->n_groups = ng;
done:
    if (order) mm_free_sized(order, ib);
    if (where) mm_free_sized(where, (size_t)(n ? n : 1));
    if (g) mm_free_sized(g, gb);
    return st;
}

mm_status mm_split_random(int64_t n, double frac_train, double frac_valid, uint64_t seed, mm_split *out)
{
    MM_CALL(check_fracs(n, frac_train, frac_valid));
    memset(out, 0, sizeof *out);
    size_t ib = (size_t)(n ? n : 1) * sizeof(int64_t);
    int64_t *perm = mm_malloc(ib);
    if (!perm) return MM_ERR(MM_ERR_NOMEM, "random split of %lld molecules", (long long)n);
    mm_rng r;
    mm_rng_init(&r, seed, SPLIT_STREAM);
    mm_rng_permutation(&r, n, perm);
    /* chemprop: train_size = int(sizes[0] * len), train_val_size = int((sizes[0] + sizes[1]) * len) */
    int64_t a = (int64_t)floor(frac_train * (double)n + 1e-9), b = (int64_t)floor((frac_train + frac_valid) * (double)n + 1e-9);
    if (a > n) a = n;
    if (b > n) b = n;
    int64_t cnt[MM_N_SPLITS] = {a, b - a, n - b};
    mm_status st = alloc_split(out, cnt);
    if (st == MM_OK) {
        memcpy(out->idx[0], perm, (size_t)a * sizeof(int64_t));
        memcpy(out->idx[1], perm + a, (size_t)(b - a) * sizeof(int64_t));
        memcpy(out->idx[2], perm + b, (size_t)(n - b) * sizeof(int64_t));
        for (int k = 0; k < MM_N_SPLITS; k++) qsort(out->idx[k], (size_t)out->n[k], sizeof(int64_t), cmp_i64);
    }
    mm_free_sized(perm, ib);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static void write_list(FILE *f, const char *key, const int64_t *idx, int64_t n, const int64_t *map)
{
    fprintf(f, ",\n  \"%s\": [", key);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%lld", i ? (i % 20 ? ", " : ",\n    ") : "", (long long)(map ? map[idx[i]] : idx[i]));
    fputc(']', f);
}

mm_status mm_split_write_json(const mm_split *s, const char *type, const int64_t *source_row, int64_t n,
                              const char *path)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"type\": \"%s\",\n  \"n\": %lld,\n  \"n_groups\": %lld", type, (long long)n, (long long)s->n_groups);
    for (int k = 0; k < MM_N_SPLITS; k++) fprintf(f, ",\n  \"n_%s\": %lld", mm_split_names[k], (long long)s->n[k]);
    for (int k = 0; k < MM_N_SPLITS; k++) write_list(f, mm_split_names[k], s->idx[k], s->n[k], NULL);
    if (source_row) {
        char key[64];
        for (int k = 0; k < MM_N_SPLITS; k++) {
            snprintf(key, sizeof key, "%s_source_row", mm_split_names[k]);
            write_list(f, key, s->idx[k], s->n[k], source_row);
        }
    }
    fputs("\n}\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return MM_ERR(MM_ERR_IO, "cannot write %s", tmp);
    }
    if (rename(tmp, path) != 0) return MM_ERR(MM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    return MM_OK;
}
