/* report.c: the whole evaluation of a run's held-out molecules and its report files
 * (eval.h): JSON, Markdown, the top-k curves as CSV + gnuplot script + PNG. */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../data/ds_internal.h"
#include "mmsa/alloc.h"
#include "mmsa/chem.h"
#include "mmsa/dataset.h"
#include "mmsa/eval.h"
#include "mmsa/fs.h"
#include "mmsa/job.h"

extern char **environ;

static const char *const bin_names[MM_EVAL_N_BINS] = {"2", "3", "4-5", "6-10", "11+"};

void mm_eval_opts_default(mm_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_pools = 3;
    o->pools[0] = 100;
    o->pools[1] = 1000;
    o->pools[2] = 0;
}

mm_status mm_eval_parse_pools(const char *flag, const char *list, mm_eval_opts *o)
{
    MM_CHECK_ARG(flag && list && o, "mm_eval_parse_pools: NULL argument");
    int n = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        char item[32];
        if (len == 0 || len >= sizeof item) {
            mm_status st = MM_ERR(MM_ERR_CONFIG, "%s: '%.*s' in '%s' is not a pool size", flag, (int)len, p, list);
            mm_error_hint("give pool sizes >= 2 or 'all', comma-separated, e.g. %s 100,1000,all", flag);
            return st;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        int64_t v = 0;
        if (strcmp(item, "all") != 0) {
            char *end;
            errno = 0;
            long long x = strtoll(item, &end, 10);
            if (*end || errno || x < 2) {
                mm_status st = MM_ERR(MM_ERR_CONFIG, "%s: '%s' in '%s' is not a pool size (an integer >= 2 or 'all')",
                                      flag, item, list);
                mm_error_hint("give pool sizes >= 2 or 'all', comma-separated, e.g. %s 100,1000,all", flag);
                return st;
            }
            v = x;
        }
        for (int i = 0; i < n; i++)
            if (o->pools[i] == v) return MM_ERR(MM_ERR_CONFIG, "%s: pool size '%s' given twice in '%s'", flag, item, list);
        if (n == MM_EVAL_MAX_POOLS)
            return MM_ERR(MM_ERR_CONFIG, "%s: more than %d pool sizes in '%s'", flag, MM_EVAL_MAX_POOLS, list);
        o->pools[n++] = v;
        if (!p[len]) break;
        p += len + 1;
    }
    o->n_pools = n;
    return MM_OK;
}

void mm_eval_result_free(mm_eval_result *r)
{
    if (!r) return;
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) mm_eval_groups_free(&r->t[k].groups);
    memset(r, 0, sizeof *r);
}

mm_status mm_eval_compute(const mm_eval_emb *e, const char *const *formula, const char *const *smiles,
                          const mm_eval_opts *o, mm_eval_result *out)
{
    MM_CHECK_ARG(e && formula && smiles && o && out && o->n_pools >= 1 && o->n_pools <= MM_EVAL_MAX_POOLS,
                 "mm_eval_compute: bad argument");
    memset(out, 0, sizeof *out);
    out->opts = *o;
    out->n = e->n;
    for (int64_t i = 0; i < e->n; i++) out->n_formula_unknown += !formula[i][0];
    mm_status st = MM_OK;
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        if (!e->has[k]) continue;
        const mm_eval_pairing *p = &e->t[k];
        mm_eval_teacher_result *t = &out->t[k];
        out->has[k] = true;
        t->dim = p->dim;
        for (int64_t i = 0; i < e->n; i++) t->n_ok += p->ok[i];
        if (t->n_ok == 0) {
            st = MM_ERR(MM_ERR_ARG, "teacher %s: none of the %lld held-out molecules has this modality (/%s/ok is 0 "
                                    "everywhere): nothing to evaluate",
                        mm_eval_teacher_names[k], (long long)e->n, mm_eval_teacher_names[k]);
            goto fail;
        }
        for (int q = 0; q < o->n_pools; q++) {
            MM_CALL_GOTO(st, mm_eval_pool_retrieval(p->teacher, p->graph, p->ok, e->n, p->dim, o->pools[q], o->seed,
                                               &t->trained[q]), fail);
            MM_CALL_GOTO(st, mm_eval_pool_retrieval(p->teacher0, p->graph0, p->ok, e->n, p->dim, o->pools[q], o->seed,
                                               &t->untrained[q]), fail);
        }
        MM_CALL_GOTO(st, mm_eval_isomer_groups(formula, smiles, p->ok, e->n, &t->groups), fail);
        MM_CALL_GOTO(st, mm_eval_isomer_ranks(p->teacher, p->graph, p->dim, &t->groups, &t->iso_trained, NULL), fail);
        MM_CALL_GOTO(st, mm_eval_isomer_ranks(p->teacher0, p->graph0, p->dim, &t->groups, &t->iso_untrained, NULL),
                     fail);
    }
    return MM_OK;
fail:
    mm_eval_result_free(out);
    return st;
}

/* ---------------------------------------------------------------- the held-out molecules */

void mm_eval_mols_free(char ***smiles, char ***formula, int64_t n)
{
    char ***lists[2] = {smiles, formula};
    for (int l = 0; l < 2; l++) {
        if (!lists[l] || !*lists[l]) continue;
        for (int64_t i = 0; i < n; i++) mm_ds_strfree(&(*lists[l])[i]);
        MM_FREE(*lists[l], (size_t)(n > 0 ? n : 1) * sizeof(char *));
    }
}

mm_status mm_eval_mols(const char *dataset, const int64_t *index, int64_t n, char ***smiles, char ***formula)
{
    MM_CHECK_ARG(dataset && index && n >= 1 && smiles && formula, "mm_eval_mols: bad argument");
    *smiles = *formula = NULL;
    mm_dataset *ds = NULL;
    mm_molset ms;
    memset(&ms, 0, sizeof ms);
    MM_CALL(mm_dataset_open(dataset, MPI_COMM_NULL, &ds));
    mm_status st = MM_OK;
    int64_t N = mm_dataset_get_info(ds)->n_molecules;
    for (int64_t i = 0; i < n; i++)
        if (index[i] >= N) {
            st = MM_ERR(MM_ERR_ARG, "held-out molecule %lld is dataset row %lld, but %s has %lld molecules",
                        (long long)i, (long long)index[i], dataset, (long long)N);
            mm_error_hint("the embeddings belong to another dataset: pass the dataset the run trained on (its "
                          "attribute 'dataset' names it)");
            goto done;
        }
    MM_CALL_GOTO(st, mm_dataset_read_indices(ds, index, n, 0, &ms), done);
    *smiles = mm_calloc((size_t)n, sizeof(char *));
    *formula = mm_calloc((size_t)n, sizeof(char *));
    if (!*smiles || !*formula) {
        st = MM_ERR(MM_ERR_NOMEM, "cannot allocate the SMILES of %lld molecules", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n && st == MM_OK; i++) {
        char buf[MM_EVAL_FORMULA_MAX];
        const uint8_t *af = ms.atom_feat + ms.atom_offset[i] * MM_DS_ATOM_FEATS;
        if (mm_chem_formula_atoms(af, ms.atom_offset[i + 1] - ms.atom_offset[i], buf, sizeof buf) != MM_OK) {
            mm_error_clear(); /* a misc element, H count or charge: no formula, counted */
            buf[0] = '\0';
        }
        (*smiles)[i] = mm_ds_strdup(mm_strings_get(&ms.smiles, i));
        (*formula)[i] = mm_ds_strdup(buf);
        if (!(*smiles)[i] || !(*formula)[i]) st = MM_ERR(MM_ERR_NOMEM, "cannot copy the SMILES of molecule %lld", (long long)i);
    }
done:
    mm_molset_free(&ms);
    mm_dataset_close(&ds);
    if (st != MM_OK) mm_eval_mols_free(smiles, formula, n);
    return st;
}

/* ---------------------------------------------------------------- JSON */

static void jnum(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void jcurve(FILE *f, const char *name, const double *v, int n)
{
    fprintf(f, "\"%s\": [", name);
    for (int k = 0; k < n; k++) {
        if (k) fputs(", ", f);
        jnum(f, v[k]);
    }
    fputc(']', f);
}

static const int report_k[3] = {1, 5, 10};

static void jtopk(FILE *f, const char *name, const double *v)
{
    fprintf(f, "\"%s\": {", name);
    for (int i = 0; i < 3; i++) {
        fprintf(f, "%s\"top%d\": ", i ? ", " : "", report_k[i]);
        jnum(f, v[report_k[i] - 1]);
    }
    fputc('}', f);
}

static void jbin(FILE *f, const char *sizes, const mm_eval_isomer_bin *tr, const mm_eval_isomer_bin *un)
{
    static const char *const names[5] = {"trained_top1", "untrained_top1", "chance", "trained_mean_rank",
                                         "untrained_mean_rank"};
    const double v[5] = {tr->top1, un->top1, tr->chance, tr->mean_rank, un->mean_rank};
    fprintf(f, "{\"sizes\": \"%s\", \"n_groups\": %lld, \"n_molecules\": %lld", sizes, (long long)tr->n_groups,
            (long long)tr->n_molecules);
    for (int i = 0; i < 5; i++) {
        fprintf(f, ", \"%s\": ", names[i]);
        jnum(f, v[i]);
    }
    fputc('}', f);
}

mm_status mm_eval_write_json(const mm_eval_result *r, const mm_eval_emb *e, const char *emb_path,
                             const char *dataset_path, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fputs("{\n  \"format\": \"mmsa-acml-eval\", \"version\": 1,\n  \"embeddings\": ", f);
    jstr(f, emb_path);
    fputs(", \"dataset\": ", f);
    jstr(f, dataset_path);
    fputs(", \"checkpoint\": ", f);
    jstr(f, e->checkpoint ? e->checkpoint : "");
    fprintf(f, ", \"step\": %lld,\n  \"n_heldout\": %lld, \"n_formula_unknown\": %lld, \"seed\": %llu,\n"
               "  \"score\": \"dot product\", \"ties\": \"smaller held-out row first\",\n  \"teachers\": {",
            (long long)e->step, (long long)r->n, (long long)r->n_formula_unknown, (unsigned long long)r->opts.seed);
    int first = 1;
    double chance[MM_EVAL_KMAX];
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        if (!r->has[k]) continue;
        const mm_eval_teacher_result *t = &r->t[k];
        fprintf(f, "%s\n    \"%s\": {\n      \"n\": %lld, \"dim\": %lld,\n      \"retrieval\": [", first ? "" : ",",
                mm_eval_teacher_names[k], (long long)t->n_ok, (long long)t->dim);
        first = 0;
        for (int q = 0; q < r->opts.n_pools; q++) {
            const mm_eval_topk *a = &t->trained[q], *b = &t->untrained[q];
            fprintf(f, "%s\n        {\"pool\": ", q ? "," : "");
            if (a->pool)
                fprintf(f, "%lld", (long long)a->pool);
            else
                fputs("\"all\"", f);
            if (a->skipped) {
                fprintf(f, ", \"skipped\": true, \"reason\": \"pool larger than the %lld molecules with the modality\"}",
                        (long long)t->n_ok);
                continue;
            }
            fprintf(f, ", \"skipped\": false, \"size\": %lld, \"n_pools\": %lld, \"n_queries\": %lld,\n         ",
                    (long long)a->size, (long long)a->n_pools, (long long)a->n_queries);
            for (int kk = 0; kk < MM_EVAL_KMAX; kk++) chance[kk] = mm_eval_chance(kk + 1, a->size);
            jtopk(f, "chance", chance);
            const char *dir[2] = {"teacher_to_graph", "graph_to_teacher"};
            for (int d = 0; d < 2; d++) {
                fprintf(f, ",\n         \"%s\": {", dir[d]);
                jtopk(f, "trained", d ? a->g2t : a->t2g);
                fputs(", ", f);
                jtopk(f, "untrained", d ? b->g2t : b->t2g);
                fputs(",\n           ", f);
                jcurve(f, "trained_curve", d ? a->g2t : a->t2g, MM_EVAL_KMAX);
                fputs(",\n           ", f);
                jcurve(f, "untrained_curve", d ? b->g2t : b->t2g, MM_EVAL_KMAX);
                fputc('}', f);
            }
            fputc('}', f);
        }
        const mm_eval_groups *g = &t->groups;
        fprintf(f, "],\n      \"isomers\": {\"n_candidates\": %lld, \"n_duplicates\": %lld, \"n_no_formula\": %lld, "
                   "\"n_groups\": %lld, \"n_molecules\": %lld,\n        \"all\": ",
                (long long)g->n_candidates, (long long)g->n_duplicates, (long long)g->n_no_formula,
                (long long)g->n_groups, (long long)g->n_members);
        jbin(f, "2+", &t->iso_trained.all, &t->iso_untrained.all);
        fputs(",\n        \"by_size\": [", f);
        for (int b = 0; b < MM_EVAL_N_BINS; b++) {
            fputs(b ? ",\n          " : "\n          ", f);
            jbin(f, bin_names[b], &t->iso_trained.bin[b], &t->iso_untrained.bin[b]);
        }
        fputs("]}\n    }", f);
    }
    fputs("\n  }\n}\n", f);
    if (ferror(f) | (fclose(f) != 0)) return MM_ERR(MM_ERR_IO, "cannot write %s", path);
    return MM_OK;
}

/* ---------------------------------------------------------------- Markdown */

/* Percent: one decimal from 1 %, two significant digits below (chance in a pool of 8000
 * is 0.0125 %), "-" for NaN. */
static void pct(FILE *f, double v)
{
    double x = 100 * v;
    if (!isfinite(x))
        fputs("-", f);
    else if (x >= 1 || x == 0)
        fprintf(f, "%.1f", x);
    else
        fprintf(f, "%.2g", x);
}

static void pct3(FILE *f, const double *v)
{
    for (int i = 0; i < 3; i++) {
        if (i) fputs(" / ", f);
        pct(f, v[report_k[i] - 1]);
    }
}

void mm_eval_write_markdown(const mm_eval_result *r, const mm_eval_emb *e, const char *emb_path, FILE *f)
{
    fprintf(f, "# ACML evaluation\n\n%s: %lld held-out molecules, checkpoint %s (step %lld), dataset %s; "
               "pools drawn with seed %llu. Scores: dot products; ties to the smaller held-out row.\n\n",
            emb_path, (long long)r->n, e->checkpoint && e->checkpoint[0] ? e->checkpoint : "(not named)",
            (long long)e->step, e->dataset && e->dataset[0] ? e->dataset : "(not named)",
            (unsigned long long)r->opts.seed);
    fputs("## Retrieval (top-k, %)\n\n"
          "| teacher | direction | pool | pools | top-1 | top-5 | top-10 | untrained top-1 / 5 / 10 | chance top-1 / 5 / 10 |\n"
          "|---|---|---|---|---|---|---|---|---|\n",
          f);
    double chance[MM_EVAL_KMAX];
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        if (!r->has[k]) continue;
        const mm_eval_teacher_result *t = &r->t[k];
        for (int q = 0; q < r->opts.n_pools; q++) {
            const mm_eval_topk *a = &t->trained[q], *b = &t->untrained[q];
            if (a->skipped) continue;
            for (int kk = 0; kk < MM_EVAL_KMAX; kk++) chance[kk] = mm_eval_chance(kk + 1, a->size);
            for (int d = 0; d < 2; d++) {
                const double *v = d ? a->g2t : a->t2g;
                fprintf(f, "| %s | %s | ", mm_eval_teacher_names[k], d ? "graph -> teacher" : "teacher -> graph");
                if (a->pool)
                    fprintf(f, "%lld", (long long)a->size);
                else
                    fprintf(f, "all (%lld)", (long long)a->size);
                fprintf(f, " | %lld | ", (long long)a->n_pools);
                for (int i = 0; i < 3; i++) {
                    pct(f, v[report_k[i] - 1]);
                    fputs(" | ", f);
                }
                pct3(f, d ? b->g2t : b->t2g);
                fputs(" | ", f);
                pct3(f, chance);
                fputs(" |\n", f);
            }
        }
    }
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++)
        for (int q = 0; r->has[k] && q < r->opts.n_pools; q++)
            if (r->t[k].trained[q].skipped)
                fprintf(f, "\nSkipped: pool %lld for %s (only %lld held-out molecules have the modality).",
                        (long long)r->t[k].trained[q].pool, mm_eval_teacher_names[k], (long long)r->t[k].n_ok);
    fputs("\n\n## Isomer discrimination (top-1 among the molecule's constitutional isomers, %)\n\n"
          "| teacher | group size | groups | molecules | trained | untrained | chance |\n"
          "|---|---|---|---|---|---|---|\n",
          f);
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        if (!r->has[k]) continue;
        const mm_eval_teacher_result *t = &r->t[k];
        for (int b = -1; b < MM_EVAL_N_BINS; b++) {
            const mm_eval_isomer_bin *tr = b < 0 ? &t->iso_trained.all : &t->iso_trained.bin[b];
            const mm_eval_isomer_bin *un = b < 0 ? &t->iso_untrained.all : &t->iso_untrained.bin[b];
            if (b >= 0 && tr->n_groups == 0) continue;
            fprintf(f, "| %s | %s | %lld | %lld | ", mm_eval_teacher_names[k], b < 0 ? "all" : bin_names[b],
                    (long long)tr->n_groups, (long long)tr->n_molecules);
            const double v[3] = {tr->top1, un->top1, tr->chance};
            for (int i = 0; i < 3; i++) {
                pct(f, v[i]);
                fputs(i < 2 ? " | " : " |\n", f);
            }
        }
    }
    fprintf(f, "\nIsomers: same molecular formula (Open Babel's convention, from the atom features), different "
               "canonical SMILES; molecules without the modality are left out.");
    if (r->n_formula_unknown)
        fprintf(f, " %lld held-out molecules have no formula (an OGB 'misc' feature) and are in no group.",
                (long long)r->n_formula_unknown);
    fputs("\n", f);
}

/* ---------------------------------------------------------------- the plot */

/* The pool a teacher's curves show: 1000 if evaluated, else the largest evaluated. */
static int plot_pool(const mm_eval_result *r, int k)
{
    int best = -1;
    for (int q = 0; q < r->opts.n_pools; q++) {
        const mm_eval_topk *a = &r->t[k].trained[q];
        if (a->skipped) continue;
        if (a->pool == 1000) return q;
        if (best < 0 || a->size > r->t[k].trained[best].size) best = q;
    }
    return best;
}

static mm_status write_plot_files(const mm_eval_result *r, const char *csv, const char *gp, const char *png)
{
    FILE *f = fopen(csv, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", csv, strerror(errno));
    int pool[MM_EVAL_N_TEACHERS], n_panels = 0;
    fputs("k", f);
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        pool[k] = r->has[k] ? plot_pool(r, k) : -1;
        if (pool[k] < 0) continue;
        n_panels++;
        const char *tn = mm_eval_teacher_names[k];
        fprintf(f, ",%s_trained_t2g,%s_trained_g2t,%s_untrained_t2g,%s_untrained_g2t,%s_chance", tn, tn, tn, tn, tn);
    }
    fputc('\n', f);
    for (int kk = 0; kk < MM_EVAL_KMAX; kk++) {
        fprintf(f, "%d", kk + 1);
        for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
            if (pool[k] < 0) continue;
            const mm_eval_topk *a = &r->t[k].trained[pool[k]], *b = &r->t[k].untrained[pool[k]];
            fprintf(f, ",%.6g,%.6g,%.6g,%.6g,%.6g", 100 * a->t2g[kk], 100 * a->g2t[kk], 100 * b->t2g[kk],
                    100 * b->g2t[kk], 100 * mm_eval_chance(kk + 1, a->size));
        }
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0)) return MM_ERR(MM_ERR_IO, "cannot write %s", csv);

    f = fopen(gp, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", gp, strerror(errno));
    int cols = n_panels < 3 ? n_panels : 3, rows = (n_panels + cols - 1) / cols;
    fprintf(f, "# top-k curves of mmsa_eval; run: gnuplot %s\n"
               "set datafile separator \",\"\n"
               "set terminal pngcairo size %d,%d font \",10\" noenhanced\n"
               "set output \"%s\"\n"
               "set multiplot layout %d,%d title \"ACML retrieval: top-k of the true partner\"\n"
               "set key right center\nset grid\nset xlabel \"k\"\nset ylabel \"top-k (%%)\"\n"
               "set xrange [1:%d]\nset yrange [0:100]\n",
            gp, cols > 1 ? 480 * cols + 40 : 640, 400 * rows + 40, png, rows, cols, MM_EVAL_KMAX);
    int col = 2;
    for (int k = 0; k < MM_EVAL_N_TEACHERS; k++) {
        if (pool[k] < 0) continue;
        const mm_eval_topk *a = &r->t[k].trained[pool[k]];
        fprintf(f, "set title \"%s: pool of %lld (%lld pool%s)\"\n", mm_eval_teacher_names[k], (long long)a->size,
                (long long)a->n_pools, a->n_pools == 1 ? "" : "s");
        fprintf(f, "plot \"%s\" using 1:%d every ::1 with lines lw 2 lc rgb \"#1f77b4\" title \"trained, teacher->graph\", \\\n"
                   "     \"%s\" using 1:%d every ::1 with lines lw 2 dt 2 lc rgb \"#1f77b4\" title \"trained, graph->teacher\", \\\n"
                   "     \"%s\" using 1:%d every ::1 with lines lw 2 lc rgb \"#ff7f0e\" title \"untrained, teacher->graph\", \\\n"
                   "     \"%s\" using 1:%d every ::1 with lines lw 2 dt 2 lc rgb \"#ff7f0e\" title \"untrained, graph->teacher\", \\\n"
                   "     \"%s\" using 1:%d every ::1 with lines lw 1 lc rgb \"gray40\" title \"chance\"\n",
                csv, col, csv, col + 1, csv, col + 2, csv, col + 3, csv, col + 4);
        col += 5;
    }
    fputs("unset multiplot\n", f);
    if (ferror(f) | (fclose(f) != 0)) return MM_ERR(MM_ERR_IO, "cannot write %s", gp);
    return MM_OK;
}

mm_status mm_eval_plot(const mm_eval_result *r, const char *dir, FILE *note, bool *plotted)
{
    MM_CHECK_ARG(r && dir && plotted, "mm_eval_plot: NULL argument");
    *plotted = false;
    char csv[4096], gp[4096], png[4096];
    snprintf(csv, sizeof csv, "%s/topk.csv", dir);
    snprintf(gp, sizeof gp, "%s/topk.gp", dir);
    int len = snprintf(png, sizeof png, "%s/topk.png", dir);
    MM_CHECK_ARG(len > 0 && (size_t)len < sizeof png, "mm_eval_plot: directory name too long");
    for (const char *p = dir; *p; p++)
        if (*p == '"' || *p == '\\')
            return MM_ERR(MM_ERR_ARG, "output directory %s: a name with '\"' or '\\' cannot go into a gnuplot script",
                          dir);
    MM_CALL(write_plot_files(r, csv, gp, png));
    pid_t pid;
    char *argv[] = {"gnuplot", gp, NULL};
    int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (rc == ENOENT) {
        if (note)
            fprintf(note, "no plot: gnuplot is not installed (make deps installs gnuplot-nox); the curves are in %s, "
                          "the script in %s\n", csv, gp);
        return MM_OK;
    }
    if (rc != 0) return MM_ERR(MM_ERR_IO, "cannot run gnuplot for %s: %s", gp, strerror(rc));
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return MM_ERR(MM_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return MM_ERR(MM_ERR_IO, "gnuplot failed on %s", gp);
    struct stat sb;
    if (stat(png, &sb) != 0 || sb.st_size == 0) return MM_ERR(MM_ERR_IO, "gnuplot wrote no %s", png);
    *plotted = true;
    return MM_OK;
}

/* ---------------------------------------------------------------- the program */

mm_status mm_eval_resolve_run(const char *run_dir, char *emb, size_t emb_n, char *dataset, size_t dataset_n)
{
    MM_CHECK_ARG(run_dir && emb && dataset, "mm_eval_resolve_run: NULL argument");
    struct stat sb;
    if (stat(run_dir, &sb) != 0) return MM_ERR(MM_ERR_IO, "run directory %s: %s", run_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return MM_ERR(MM_ERR_IO, "run directory %s is not a directory", run_dir);
    int len = snprintf(emb, emb_n, "%s/heldout_embeddings.h5", run_dir);
    MM_CHECK_ARG(len > 0 && (size_t)len < emb_n, "mm_eval_resolve_run: run directory name too long");
    if (access(emb, F_OK) != 0) {
        mm_status st = MM_ERR(MM_ERR_IO, "run %s has no held-out embeddings (%s): the run must be evaluated first",
                              run_dir, emb);
        mm_error_hint("mmsa_pretrain writes <run>/heldout_embeddings.h5 when an ACML run ends; on a finished run, "
                      "`mpirun -n P mmsa_pretrain %s/job.yaml` writes it from the latest checkpoint without "
                      "training further. Or pass --embeddings FILE --dataset FILE",
                      run_dir);
        return st;
    }
    char job_path[4096];
    len = snprintf(job_path, sizeof job_path, "%s/job.yaml", run_dir);
    MM_CHECK_ARG(len > 0 && (size_t)len < sizeof job_path, "mm_eval_resolve_run: run directory name too long");
    mm_job *job = mm_calloc(1, sizeof *job);
    if (!job) return MM_ERR(MM_ERR_NOMEM, "cannot allocate a job");
    mm_status st = mm_job_load(job_path, job);
    if (st == MM_OK) {
        len = snprintf(dataset, dataset_n, "%s", job->train.dataset);
        if (len <= 0 || (size_t)len >= dataset_n)
            st = MM_ERR(MM_ERR_CONFIG, "%s: train.dataset is empty or too long", job_path);
    }
    MM_FREE(job, sizeof *job);
    MM_CALL(st);
    return MM_OK;
}

mm_status mm_eval_files(const char *emb_path, const char *dataset_path, const char *out_dir, const mm_eval_opts *o,
                        FILE *report)
{
    MM_CHECK_ARG(emb_path && dataset_path && o && report, "mm_eval_files: NULL argument");
    mm_eval_emb e;
    mm_eval_result r;
    memset(&r, 0, sizeof r);
    char **smiles = NULL, **formula = NULL, dir[4096], path[4200];
    if (out_dir) {
        snprintf(dir, sizeof dir, "%s", out_dir);
    } else { /* <directory of the embeddings file>/eval */
        const char *slash = strrchr(emb_path, '/');
        if (slash)
            snprintf(dir, sizeof dir, "%.*s/eval", (int)(slash - emb_path), emb_path);
        else
            snprintf(dir, sizeof dir, "eval");
    }
    MM_CALL(mm_eval_emb_read(emb_path, &e));
    mm_status st = MM_OK;
    MM_CALL_GOTO(st, mm_eval_mols(dataset_path, e.index, e.n, &smiles, &formula), done);
    MM_CALL_GOTO(st, mm_eval_compute(&e, (const char *const *)formula, (const char *const *)smiles, o, &r), done);
    MM_CALL_GOTO(st, mm_mkdir_p(dir, "evaluation output directory"), done);
    snprintf(path, sizeof path, "%s/eval.json", dir);
    MM_CALL_GOTO(st, mm_eval_write_json(&r, &e, emb_path, dataset_path, path), done);
    snprintf(path, sizeof path, "%s/eval.md", dir);
    FILE *md = fopen(path, "w");
    if (!md) {
        st = MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    mm_eval_write_markdown(&r, &e, emb_path, md);
    if (ferror(md) | (fclose(md) != 0)) {
        st = MM_ERR(MM_ERR_IO, "cannot write %s", path);
        goto done;
    }
    mm_eval_write_markdown(&r, &e, emb_path, report);
    bool plotted;
    MM_CALL_GOTO(st, mm_eval_plot(&r, dir, report, &plotted), done);
    fprintf(report, "\nwrote %s/eval.json, %s/eval.md, %s/topk.csv%s\n", dir, dir, dir,
            plotted ? ", topk.png" : " (no PNG)");
done:
    mm_eval_result_free(&r);
    mm_eval_mols_free(&smiles, &formula, e.n);
    mm_eval_emb_free(&e);
    return st;
}
