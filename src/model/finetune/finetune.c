/* finetune.c: one mmsa_finetune run (finetune.h): data, label checks, split, and for
 * every seed a GIN encoder + head trained data-parallel and selected on validation. */
#include "mmsa/blas.h"
#include "mmsa/finetune.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmsa/checkpoint.h"
#include "mmsa/csv.h"
#include "mmsa/dataset.h"
#include "mmsa/fs.h"
#include "mmsa/job.h"
#include "mmsa/loss.h"
#include "mmsa/metrics.h"
#include "mmsa/model.h"
#include "mmsa/nn.h"
#include "mmsa/ops.h"
#include "mmsa/optim.h"
#include "mmsa/prep.h"
#include "mmsa/rng.h"

#define PATH_MAX_FT 1200
#define BAD_QUOTED 10            /* bad label cells quoted in a message; all are counted */
#define HEAD_SEED_SALT 0x68656164u /* the head's initialisation stream differs from the encoder's */

/* ---------------------------------------------------------------- helpers */

static bool file_exists(const char *p)
{
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

static double now(void) { return MPI_Wtime(); }

/* snprintf that says whether the text fit (messages may be cut; paths may not) */
static bool fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static bool fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(buf, n, f, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < n;
}

/* A list of bad label cells: all counted, the first BAD_QUOTED quoted. */
typedef struct bad_cells {
    int64_t count;
    char text[BAD_QUOTED][400];
} bad_cells;

static void bad_add(bad_cells *b, const char *msg)
{
    if (b->count < BAD_QUOTED) snprintf(b->text[b->count], sizeof b->text[0], "%s", msg);
    b->count++;
}

static void bad_print(const bad_cells *b, FILE *f)
{
    int64_t shown = b->count < BAD_QUOTED ? b->count : BAD_QUOTED;
    for (int64_t i = 0; i < shown; i++) fprintf(f, "  %s\n", b->text[i]);
    if (b->count > shown) fprintf(f, "  ... and %lld more\n", (long long)(b->count - shown));
}

static mm_status bad_error(const bad_cells *b, const char *what)
{
    char *msg = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&msg, &len);
    if (!m) return MM_ERR(MM_ERR_NOMEM, "bad label report");
    fprintf(m, "%lld bad label cell%s in %s:\n", (long long)b->count, b->count == 1 ? "" : "s", what);
    bad_print(b, m);
    fclose(m);
    if (len && msg[len - 1] == '\n') msg[len - 1] = '\0';
    mm_status st = MM_ERR(MM_ERR_FORMAT, "%s", msg);
    free(msg);
    mm_error_hint("correct those cells, or set data.bad_labels: missing to treat them as missing labels");
    return st;
}

/* ---------------------------------------------------------------- the run state */

typedef struct ft_run {
    const mm_ft_job *job;
    mm_dist *d;
    mm_dist self;                 /* evaluation forwards run rank-locally */
    char run_dir[PATH_MAX_FT];
    char dataset[PATH_MAX_FT];
    bool classification;
    /* data: every molecule on every rank (graph, labels, scaffold) */
    mm_molset all;
    int64_t n;                    /* molecules used */
    int T;
    int task_col[MM_FT_MAX_TASKS];/* column of the file's /labels for task t */
    float *y;                     /* [n, T] labels as given (NaN missing) */
    float *target;                /* [n, T] training targets (regression: standardised) */
    double mean[MM_FT_MAX_TASKS], stdv[MM_FT_MAX_TASKS];
    bad_cells bad;
    mm_split split;
    /* model */
    mm_model_config mcfg;
    mm_loss_config lcfg;
    bool from_ckpt;
    mm_model model;
    bool model_live;
    mm_params head;
    int hw0, hb0, hw1, hb1;       /* head parameters (hw1 = -1 for a linear head) */
    mm_optimizer opt_m, opt_h;
    size_t graph_span;            /* floats of params.data holding enc.graph.* (declared first) */
    int n_graph_params;
    /* the pre-trained graph encoder, read from model.init once and copied into each
     * seed's model: its parameters, its BatchNorm statistics and their batch count */
    float *enc_cache, *bn_cache;  /* [graph_span], [gin_buffers()] */
    int64_t bn_batches_cache;
    mm_tape tape;
    mm_molset ms;                 /* this rank's molecules of the current forward */
    int64_t *counts;              /* [ranks] */
    int64_t *perm;                /* [n_train] */
    float *pred_local;            /* [max block, T] */
    float *pred[MM_N_SPLITS];     /* [n_split, T] predictions of valid and test, every rank */
    float *best_test;             /* [n_test, T] test predictions of the best epoch */
    FILE *log;                    /* rank 0: run_dir/seed_<s>.jsonl */
} ft_run;

static size_t fbytes(int64_t n) { return (size_t)(n > 0 ? n : 1) * sizeof(float); }

/* ---------------------------------------------------------------- data */

/* Read every row of the CSV for the label cells: non-numbers (reported by the table
 * reader with file, line, row and column) and, for classification, values other
 * than 0 and 1. The same on every rank. */
static mm_status audit_csv(ft_run *r)
{
    const mm_ft_data_config *D = &r->job->data;
    char **names = NULL;
    int n_names = -1;
    if (strcmp(D->tasks, "all") != 0) MM_CALL(mm_prep_split_labels(D->tasks, &names, &n_names));
    mm_table_opts o = {MM_TABLE_CSV, D->smiles_col[0] ? D->smiles_col : NULL, (const char *const *)names, n_names};
    mm_table *t = NULL;
    mm_status st = mm_table_open(D->csv, &o, &t);
    int64_t limit = D->limit > 0 ? D->limit : INT64_MAX;
    for (int64_t k = 0; st == MM_OK && k < limit; k++) {
        mm_table_row row;
        memset(&row, 0, sizeof row);
        row.row = -1;
        bool eof = false;
        mm_status s = mm_table_next(t, &row, &eof);
        if (eof) break;
        if (s == MM_ERR_FORMAT && row.row == k) { /* a bad cell: the row is filled in */
            bad_add(&r->bad, mm_error_message());
            mm_error_clear();
        } else if (s != MM_OK) {
            st = s;
            mm_error_push(__FILE__, __LINE__, __func__);
            break;
        }
        if (!r->classification) continue;
        for (int j = 0; j < mm_table_n_labels(t); j++) {
            float v = row.labels[j];
            if (isnan(v) || v == 0.0f || v == 1.0f) continue;
            char msg[400];
            fmt(msg, sizeof msg, "%s:%lld: row %lld, column '%s': %g is not a class label (0 or 1)", D->csv,
                     (long long)row.line, (long long)row.row, mm_table_label_name(t, j), (double)v);
            bad_add(&r->bad, msg);
        }
    }
    mm_table_close(&t);
    if (names) mm_prep_labels_free(names, n_names);
    MM_CALL(st);
    if (r->bad.count && D->bad_labels == MM_FT_BAD_ERROR) MM_CALL(bad_error(&r->bad, D->csv));
    return MM_OK;
}

/* The key of a prepared CSV: reuse run_dir/dataset.h5 only for the same input and settings. */
static mm_status csv_key(const mm_ft_data_config *D, char *key, size_t n)
{
    char hex[65];
    MM_CALL(mm_sha256_file(D->csv, hex));
    snprintf(key, n, "csv %s\nsha256 %s\nsmiles_col %s\ntasks %s\nlimit %lld\nfeaturizer %s\n", D->csv, hex,
             D->smiles_col, D->tasks, (long long)D->limit, MM_PREP_VERSION);
    return MM_OK;
}

static mm_status prepare_csv(ft_run *r)
{
    const mm_ft_data_config *D = &r->job->data;
    mm_dist *d = r->d;
    if (!fmt(r->dataset, sizeof r->dataset, "%s/dataset.h5", r->run_dir))
        return MM_ERR(MM_ERR_CONFIG, "train.run_dir %s is too long", r->run_dir);
    char keypath[PATH_MAX_FT + 16], key[2 * PATH_MAX_FT + 512], old[sizeof key];
    snprintf(keypath, sizeof keypath, "%s/dataset.key", r->run_dir);
    MM_CALL(csv_key(D, key, sizeof key));
    int reuse = 0;
    if (d->rank == 0 && file_exists(r->dataset)) {
        FILE *f = fopen(keypath, "r");
        if (f) {
            size_t got = fread(old, 1, sizeof old - 1, f);
            old[got] = '\0';
            fclose(f);
            reuse = strcmp(old, key) == 0;
        }
    }
    MM_MPI_CALL(MPI_Bcast(&reuse, 1, MPI_INT, 0, d->comm));
    if (reuse) {
        if (d->rank == 0 && r->job->train.progress)
            fprintf(stderr, "mmsa_finetune: reusing %s (prepared from the same %s)\n", r->dataset, D->csv);
        return MM_OK;
    }
    mm_prep_config pc;
    MM_CALL(mm_prep_config_defaults(&pc));
    snprintf(pc.input.path, sizeof pc.input.path, "%s", D->csv);
    pc.input.format = MM_PREP_FMT_CSV;
    snprintf(pc.input.smiles_col, sizeof pc.input.smiles_col, "%s", D->smiles_col);
    snprintf(pc.input.labels, sizeof pc.input.labels, "%s", D->tasks);
    pc.input.limit = D->limit;
    if (!fmt(pc.output.path, sizeof pc.output.path, "%s", r->dataset))
        return MM_ERR(MM_ERR_CONFIG, "train.run_dir %s is too long", r->run_dir);
    /* the graph encoder needs the graph; the scaffold split needs the scaffold */
    pc.features.conformer = false;
    pc.features.keep_input_3d = false;
    pc.features.image = false;
    pc.features.fingerprint = false;
    pc.features.scaffold = true;
    pc.features.max_atoms = 100000; /* MoleculeNet keeps every molecule that parses */
    pc.report.progress = r->job->train.progress;
    MM_CALL(mm_prep_config_validate(&pc));
    char sumpath[PATH_MAX_FT + 32];
    snprintf(sumpath, sizeof sumpath, "%s/prep_summary.txt", r->run_dir);
    FILE *sum = NULL;
    mm_status st = MM_OK;
    if (d->rank == 0 && !(sum = fopen(sumpath, "w"))) st = MM_ERR(MM_ERR_IO, "cannot write %s: %s", sumpath, strerror(errno));
    MM_CALL(mm_dist_agree(d, st));
    mm_prep_result pr;
    st = mm_prep_run(&pc, d->comm, sum, &pr);
    if (sum) fclose(sum);
    MM_CALL(st);
    if (d->rank == 0) {
        if (r->job->train.progress)
            fprintf(stderr, "mmsa_finetune: prepared %s: %lld molecules, %lld rows rejected (%.1f s); summary in %s\n",
                    D->csv, (long long)pr.written, (long long)pr.rejected, pr.seconds, sumpath);
        FILE *f = fopen(keypath, "w");
        if (!f || fputs(key, f) < 0) st = MM_ERR(MM_ERR_IO, "cannot write %s", keypath);
        if (f) fclose(f);
    }
    MM_CALL(mm_dist_agree(d, st));
    return MM_OK;
}

static mm_status select_tasks(ft_run *r)
{
    const char *spec = r->job->data.tasks;
    const mm_molset *a = &r->all;
    if (!strcmp(spec, "all")) {
        if (a->n_tasks > MM_FT_MAX_TASKS)
            return MM_ERR(MM_ERR_CONFIG, "%s has %d tasks; at most %d are supported", r->dataset, a->n_tasks, MM_FT_MAX_TASKS);
        r->T = a->n_tasks;
        for (int t = 0; t < r->T; t++) r->task_col[t] = t;
        return MM_OK;
    }
    char **names;
    int n;
    MM_CALL(mm_prep_split_labels(spec, &names, &n));
    mm_status st = MM_OK;
    if (n > MM_FT_MAX_TASKS) st = MM_ERR(MM_ERR_CONFIG, "data.tasks names %d tasks; at most %d are supported", n, MM_FT_MAX_TASKS);
    for (int t = 0; st == MM_OK && t < n; t++) {
        int col = -1;
        for (int j = 0; j < a->n_tasks; j++)
            if (!strcmp(a->task_names[j], names[t])) col = j;
        if (col < 0) {
            char list[600] = "";
            for (int j = 0; j < a->n_tasks && strlen(list) < 500; j++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", j ? ", " : "", a->task_names[j]);
            st = MM_ERR(MM_ERR_CONFIG, "data.tasks: '%s' is not a task of %s (its tasks: %s)", names[t], r->dataset, list);
        }
        r->task_col[t] = col;
    }
    r->T = n;
    mm_prep_labels_free(names, n);
    MM_CALL(st);
    return MM_OK;
}

/* Labels of the chosen tasks; for a dataset file, check classification labels are 0/1
 * (a CSV was audited cell by cell before it was prepared). */
static mm_status load_labels(ft_run *r)
{
    int64_t n = r->n;
    int T = r->T, Tf = r->all.n_tasks;
    r->y = mm_malloc(fbytes(n * T));
    r->target = mm_malloc(fbytes(n * T));
    if (!r->y || !r->target) return MM_ERR(MM_ERR_NOMEM, "labels of %lld molecules", (long long)n);
    bool audit = !r->job->data.csv[0];
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            float v = r->all.labels[i * Tf + r->task_col[t]];
            bool bad = !isnan(v) && (!isfinite(v) || (r->classification && v != 0.0f && v != 1.0f));
            if (bad) {
                if (audit) {
                    char msg[400];
                    fmt(msg, sizeof msg, "%s: molecule %lld (source row %lld), column '%s': %g is not %s", r->dataset,
                             (long long)i, (long long)r->all.source_row[i], r->all.task_names[r->task_col[t]], (double)v,
                             r->classification ? "a class label (0 or 1)" : "a finite number");
                    bad_add(&r->bad, msg);
                }
                v = NAN; /* bad_labels = missing (an error below otherwise) */
            }
            r->y[i * T + t] = v;
        }
    if (audit && r->bad.count && r->job->data.bad_labels == MM_FT_BAD_ERROR) MM_CALL(bad_error(&r->bad, r->dataset));
    return MM_OK;
}

static mm_status load_data(ft_run *r)
{
    const mm_ft_job *job = r->job;
    mm_dist *d = r->d;
    if (job->data.csv[0]) {
        MM_CALL(audit_csv(r));
        MM_CALL(prepare_csv(r));
    } else {
        snprintf(r->dataset, sizeof r->dataset, "%s", job->data.dataset);
    }
    mm_dataset *ds;
    MM_CALL(mm_dataset_open(r->dataset, d->comm, &ds));
    const mm_dataset_info *info = mm_dataset_get_info(ds);
    unsigned mods = MM_MOD_LABELS;
    mm_status st = MM_OK;
    if (!(info->modalities & MM_MOD_LABELS)) {
        st = MM_ERR(MM_ERR_CONFIG, "%s has no /labels", r->dataset);
        mm_error_hint("prepare it with mmsa_prep --labels all (or the label column names)");
    } else if (job->split.type != MM_FT_SPLIT_RANDOM && !(info->modalities & MM_MOD_SCAFFOLD)) {
        st = MM_ERR(MM_ERR_CONFIG, "%s has no /scaffold, which the scaffold split needs", r->dataset);
        mm_error_hint("prepare it with scaffolds (mmsa_prep's features.scaffold: true), or set split.type: random");
    }
    if (info->modalities & MM_MOD_SCAFFOLD) mods |= MM_MOD_SCAFFOLD;
    r->n = info->n_molecules;
    if (job->data.limit > 0 && job->data.limit < r->n) r->n = job->data.limit;
    /* graph, labels and scaffolds only: the conformer, image and fingerprint stay on disk */
    if (st == MM_OK) st = mm_dataset_read_range(ds, 0, r->n, mods, &r->all);
    mm_dataset_close(&ds);
    MM_CALL(st);
    if (r->n < 3) return MM_ERR(MM_ERR_CONFIG, "%s has %lld molecules; a split needs at least 3", r->dataset, (long long)r->n);
    MM_CALL(select_tasks(r));
    MM_CALL(load_labels(r));
    if (r->bad.count && d->rank == 0) {
        fprintf(stderr, "mmsa_finetune: warning: %lld bad label cell%s kept as missing (data.bad_labels: missing):\n",
                (long long)r->bad.count, r->bad.count == 1 ? "" : "s");
        bad_print(&r->bad, stderr);
    }
    return MM_OK;
}

/* ---------------------------------------------------------------- split */

static mm_status make_split(ft_run *r)
{
    const mm_ft_split_config *S = &r->job->split;
    /* fractions are floats in the job; as doubles they are the decimal the user wrote */
    double ft = round((double)S->train * 1e6) / 1e6, fv = round((double)S->valid * 1e6) / 1e6;
    static const char *const type_name[] = {"scaffold", "scaffold_chemprop", "random"};
    if (S->type != MM_FT_SPLIT_RANDOM) {
        size_t pb = (size_t)r->n * sizeof(char *);
        const char **sc = mm_malloc(pb);
        if (!sc) return MM_ERR(MM_ERR_NOMEM, "scaffold list");
        for (int64_t i = 0; i < r->n; i++) sc[i] = mm_strings_get(&r->all.scaffold, i);
        mm_status st = mm_split_scaffold(sc, r->n, ft, fv,
                                         S->type == MM_FT_SPLIT_SCAFFOLD ? MM_SCAFFOLD_DEEPCHEM : MM_SCAFFOLD_CHEMPROP,
                                         &r->split);
        mm_free_sized(sc, pb);
        MM_CALL(st);
    } else {
        MM_CALL(mm_split_random(r->n, ft, fv, (uint64_t)S->seed, &r->split));
    }
    for (int k = 0; k < MM_N_SPLITS; k++)
        if (r->split.n[k] == 0) {
            mm_status st = MM_ERR(MM_ERR_CONFIG, "the %s split of %s is empty (%lld molecules: %lld / %lld / %lld)",
                                  mm_split_names[k], r->dataset, (long long)r->n, (long long)r->split.n[0],
                                  (long long)r->split.n[1], (long long)r->split.n[2]);
            mm_error_hint("use more molecules (data.limit) or larger split fractions");
            return st;
        }
    mm_status st = MM_OK;
    if (r->d->rank == 0) {
        char path[PATH_MAX_FT + 16];
        snprintf(path, sizeof path, "%s/split.json", r->run_dir);
        st = mm_split_write_json(&r->split, type_name[S->type], r->all.source_row,
                                 r->n, path);
    }
    MM_CALL(mm_dist_agree(r->d, st));
    return MM_OK;
}

/* Training targets: labels, or for regression labels standardised with the train
 * split's mean and (population) standard deviation. */
static void make_targets(ft_run *r)
{
    int T = r->T;
    for (int t = 0; t < T; t++) {
        r->mean[t] = 0;
        r->stdv[t] = 1;
        if (r->classification) continue;
        double s = 0, q = 0;
        int64_t c = 0;
        for (int64_t k = 0; k < r->split.n[MM_SPLIT_TRAIN]; k++) {
            float v = r->y[r->split.idx[MM_SPLIT_TRAIN][k] * T + t];
            if (isnan(v)) continue;
            s += v;
            c++;
        }
        if (!c) continue;
        double m = s / (double)c;
        for (int64_t k = 0; k < r->split.n[MM_SPLIT_TRAIN]; k++) {
            float v = r->y[r->split.idx[MM_SPLIT_TRAIN][k] * T + t];
            if (!isnan(v)) q += ((double)v - m) * ((double)v - m);
        }
        double sd = sqrt(q / (double)c);
        r->mean[t] = m;
        r->stdv[t] = sd > 1e-12 ? sd : 1.0;
    }
    for (int64_t i = 0; i < r->n; i++)
        for (int t = 0; t < T; t++) {
            float v = r->y[i * T + t];
            r->target[i * T + t] = isnan(v) ? NAN : (float)(((double)v - r->mean[t]) / r->stdv[t]);
        }
}

/* ---------------------------------------------------------------- model */

/* Directory part of path ("." when none). */
static void dir_of(const char *path, char *out, size_t n)
{
    snprintf(out, n, "%s", path);
    char *s = strrchr(out, '/');
    if (!s) snprintf(out, n, ".");
    else if (s == out) out[1] = '\0';
    else *s = '\0';
}

/* Encoder sizes: the pre-training job's model section (model.pretrain_job, or the
 * job.yaml of the checkpoint's run directory), else the pre-training defaults; the
 * finetune job's non-zero sizes must agree with a pre-training job. */
static mm_status resolve_model(ft_run *r, mm_ft_result *res)
{
    const mm_ft_model_config *M = &r->job->model;
    mm_job pj;
    MM_CALL(mm_cfg_defaults(&mm_job_schema, &pj));
    r->from_ckpt = strcmp(M->init, "from_scratch") != 0;
    char path[PATH_MAX_FT] = "";
    if (M->pretrain_job[0]) {
        snprintf(path, sizeof path, "%s", M->pretrain_job);
    } else if (r->from_ckpt) {
        char dir[PATH_MAX_FT], up[PATH_MAX_FT], cand[2 * PATH_MAX_FT];
        dir_of(M->init, dir, sizeof dir);
        dir_of(dir, up, sizeof up);
        snprintf(cand, sizeof cand, "%s/job.yaml", up); /* <run_dir>/checkpoints/step_*.h5 */
        if (file_exists(cand)) fmt(path, sizeof path, "%s", cand);
        snprintf(cand, sizeof cand, "%s/job.yaml", dir);
        if (!path[0] && file_exists(cand)) fmt(path, sizeof path, "%s", cand);
    }
    if (r->from_ckpt && !file_exists(M->init)) {
        mm_status st = MM_ERR(MM_ERR_IO, "model.init: checkpoint %s does not exist", M->init);
        mm_error_hint("give a step_*.h5 file from an mmsa_pretrain run directory, or from_scratch");
        return st;
    }
    if (path[0]) MM_CALL(mm_job_load(path, &pj));
    fmt(res->encoder_from, sizeof res->encoder_from, "%s",
        path[0] ? path : "the finetune job / pre-training defaults (no pre-training job found)");
    struct {
        const char *key;
        int want, *have;
    } sz[3] = {{"embed_dim", M->embed_dim, &pj.model.embed_dim},
               {"gin_layers", M->gin_layers, &pj.model.gin_layers},
               {"gin_hidden", M->gin_hidden, &pj.model.gin_hidden}};
    for (int k = 0; k < 3; k++) {
        if (!sz[k].want || sz[k].want == *sz[k].have) continue;
        if (path[0]) {
            mm_status st = MM_ERR(MM_ERR_CONFIG, "model.%s is %d but the pre-training job %s has model.%s %d", sz[k].key,
                                  sz[k].want, path, sz[k].key, *sz[k].have);
            mm_error_hint("the encoder must have the pre-training sizes: remove model.%s (0 takes it from that job)", sz[k].key);
            return st;
        }
        *sz[k].have = sz[k].want;
    }
    r->mcfg = pj.model;
    r->lcfg = pj.loss;
    mm_model_config *c = &r->mcfg;
    c->gin_dropout = r->job->model.gin_dropout;
    /* Only the graph encoder runs. The other encoders, heads, decoder and HGNN are
     * declared at width 1 so the registry, the optimiser and the checkpoint load stay
     * the size of the graph encoder (their parameters never see a gradient). */
    c->use_conformer = c->use_image = c->use_fingerprint = false;
    c->proj_hidden = 1;
    c->proj_dim = 2;
    c->schnet_hidden = c->schnet_filters = c->schnet_interactions = 1;
    c->schnet_n_rbf = 2;
    c->n_cnn_channels = 1;
    c->cnn_channels[0] = 1;
    c->fp_bits = 8;
    c->fp_hidden = 1;
    c->gate_att_dim = c->decoder_hidden = c->hg_hidden = 1;
    return MM_OK;
}

/* Values of the GIN's BatchNorm running statistics: they come first in the model's
 * buffers; eval mode uses them until fine-tuning batches have replaced them. */
static size_t gin_buffers(const ft_run *r) { return 2 * (size_t)r->mcfg.gin_layers * (size_t)r->mcfg.gin_hidden; }

/* The pre-trained graph encoder into r->model: from model.init for the first seed,
 * from the copy kept then for the others. */
static mm_status load_encoder(ft_run *r)
{
    const char *path = r->job->model.init;
    mm_params *p = &r->model.params;
    size_t n_gin = gin_buffers(r);
    if (!r->enc_cache) {
        int loaded = 0;
        MM_CALL(mm_ckpt_load_params(path, r->d->comm, p, "enc.graph.", &loaded));
        if (loaded != r->n_graph_params) {
            mm_status st = MM_ERR(MM_ERR_FORMAT, "%s holds %d of the %d graph-encoder parameters (enc.graph.*)", path,
                                  loaded, r->n_graph_params);
            mm_error_hint("is it an mmsa_pretrain checkpoint of the MMSA model?");
            return st;
        }
        MM_CALL(mm_ckpt_load_buffers(path, r->d->comm, r->model.buffers, n_gin, &r->model.bn_batches));
        r->enc_cache = mm_malloc(fbytes((int64_t)r->graph_span));
        r->bn_cache = mm_malloc(fbytes((int64_t)n_gin));
        if (!r->enc_cache || !r->bn_cache) return MM_ERR(MM_ERR_NOMEM, "a copy of the pre-trained graph encoder");
        memcpy(r->enc_cache, p->data, r->graph_span * sizeof(float));
        memcpy(r->bn_cache, r->model.buffers, n_gin * sizeof(float));
        r->bn_batches_cache = r->model.bn_batches;
        return MM_OK;
    }
    memcpy(p->data, r->enc_cache, r->graph_span * sizeof(float));
    memcpy(r->model.buffers, r->bn_cache, n_gin * sizeof(float));
    r->model.bn_batches = r->bn_batches_cache;
    return MM_OK;
}

static mm_status init_model(ft_run *r, uint64_t seed)
{
    const mm_ft_job *job = r->job;
    MM_CALL(mm_model_init(&r->model, &r->mcfg, &r->lcfg, seed));
    r->model_live = true;
    mm_params *p = &r->model.params;
    int last = -1, n_graph = 0;
    for (int i = 0; i < p->count; i++)
        if (!strncmp(p->info[i].name, "enc.graph.", 10)) {
            last = i;
            n_graph++;
        }
    if (last + 1 != n_graph) return MM_ERR(MM_ERR_INTERNAL, "the graph encoder's parameters are not declared first");
    r->graph_span = p->info[last].offset + p->info[last].n;
    r->n_graph_params = n_graph;
    if (r->from_ckpt) MM_CALL(load_encoder(r));
    /* head: E -> T, or E -> head_hidden -> T */
    int64_t E = r->mcfg.embed_dim, Hh = job->model.head_hidden, T = r->T;
    mm_params_init(&r->head);
    r->hw1 = r->hb1 = -1;
    if (job->model.head == MM_FT_HEAD_LINEAR) {
        MM_CALL(mm_params_add(&r->head, "head.0.weight", 2, (int64_t[]){T, E}, &r->hw0));
        MM_CALL(mm_params_add(&r->head, "head.0.bias", 1, (int64_t[]){T}, &r->hb0));
    } else {
        MM_CALL(mm_params_add(&r->head, "head.0.weight", 2, (int64_t[]){Hh, E}, &r->hw0));
        MM_CALL(mm_params_add(&r->head, "head.0.bias", 1, (int64_t[]){Hh}, &r->hb0));
        MM_CALL(mm_params_add(&r->head, "head.2.weight", 2, (int64_t[]){T, Hh}, &r->hw1));
        MM_CALL(mm_params_add(&r->head, "head.2.bias", 1, (int64_t[]){T}, &r->hb1));
    }
    MM_CALL(mm_params_alloc(&r->head));
    mm_params_init_linear(&r->head, r->hw0, r->hb0, seed ^ HEAD_SEED_SALT);
    if (r->hw1 >= 0) mm_params_init_linear(&r->head, r->hw1, r->hb1, seed ^ HEAD_SEED_SALT);
    const mm_ft_train_config *Tr = &job->train;
    MM_CALL(mm_optim_adamw(&r->opt_m, p, Tr->beta1, Tr->beta2, Tr->adam_eps, Tr->weight_decay));
    MM_CALL(mm_optim_adamw(&r->opt_h, &r->head, Tr->beta1, Tr->beta2, Tr->adam_eps, Tr->weight_decay));
    return MM_OK;
}

static void free_model(ft_run *r)
{
    mm_optim_destroy(&r->opt_m);
    mm_optim_destroy(&r->opt_h);
    mm_params_destroy(&r->head);
    if (r->model_live) mm_model_destroy(&r->model);
    r->model_live = false;
}

/* ---------------------------------------------------------------- forward */

/* ms = molecules idx[0..n) of the data, graph only. */
static mm_status gather_molecules(ft_run *r, const int64_t *idx, int64_t n)
{
    const mm_molset *a = &r->all;
    mm_molset_clear(&r->ms);
    for (int64_t k = 0; k < n; k++) {
        int64_t i = idx[k], a0 = a->atom_offset[i], b0 = a->bond_offset[i];
        mm_mol_in in;
        memset(&in, 0, sizeof in);
        in.smiles = mm_strings_get(&a->smiles, i);
        in.source_row = a->source_row[i];
        in.n_atoms = a->atom_offset[i + 1] - a0;
        in.atom_feat = a->atom_feat + 9 * a0;
        in.n_bonds = a->bond_offset[i + 1] - b0;
        in.bond_index = a->bond_index + 2 * b0;
        in.bond_feat = a->bond_feat + 3 * b0;
        MM_CALL(mm_molset_append(&r->ms, &in));
    }
    return MM_OK;
}

static mm_status head_param(ft_run *r, int i, mm_tensor **out)
{
    MM_CALL(mm_params_tensor(&r->head, &r->tape, i, out));
    return MM_OK;
}

/* z [n, E] -> out [n, T] */
static mm_status head_forward(ft_run *r, mm_tensor *z, const mm_batch *b, uint64_t seed, uint64_t step_id,
                              mm_tensor **out)
{
    mm_tape *t = &r->tape;
    mm_tensor *w, *bb;
    MM_CALL(head_param(r, r->hw0, &w));
    MM_CALL(head_param(r, r->hb0, &bb));
    if (r->hw1 < 0) {
        MM_CALL(mm_linear(t, z, w, bb, out));
        return MM_OK;
    }
    mm_tensor *h, *a, *w1, *b1;
    MM_CALL(mm_linear(t, z, w, bb, &h));
    MM_CALL(mm_relu(t, h, &a));
    MM_CALL(mm_dropout(t, a, r->job->model.head_dropout, seed, (uint64_t)MM_STREAM_USER + 64u + step_id, b->row0, &a));
    MM_CALL(head_param(r, r->hw1, &w1));
    MM_CALL(head_param(r, r->hb1, &b1));
    MM_CALL(mm_linear(t, a, w1, b1, out));
    return MM_OK;
}

/* Scores of molecules idx[0..n) (eval mode: running BatchNorm statistics, no dropout),
 * each rank a block, gathered so every rank holds out [n, T]. Classification scores
 * are logits (the metrics only rank them); regression predictions are on the
 * original scale. */
static mm_status predict(ft_run *r, const int64_t *idx, int64_t n, float *out)
{
    mm_dist *d = r->d;
    mm_tape *t = &r->tape;
    int T = r->T;
    int64_t s0, cnt, chunk = r->job->train.eval_chunk;
    mm_dist_block(n, d->size, d->rank, &s0, &cnt);
    t->grad_enabled = false;
    t->training = false;
    mm_status st = MM_OK;
    for (int64_t c0 = 0; c0 < cnt && st == MM_OK; c0 += chunk) {
        int64_t cn = cnt - c0 < chunk ? cnt - c0 : chunk;
        mm_batch *b;
        mm_tensor *z, *y;
        MM_CALL_GOTO(st, gather_molecules(r, idx + s0 + c0, cn), done);
        MM_CALL_GOTO(st, mm_tape_reset(t), done);
        MM_CALL_GOTO(st, mm_batch_build(t, &r->model, &r->ms, &r->self, &cn, &b), done);
        MM_CALL_GOTO(st, mm_encode_graph(&r->model, t, b, 0, &z), done);
        MM_CALL_GOTO(st, head_forward(r, z, b, 0, 0, &y), done);
        for (int64_t i = 0; i < cn; i++)
            for (int k = 0; k < T; k++) {
                float v = y->data[i * T + k];
                if (!r->classification) v = (float)((double)v * r->stdv[k] + r->mean[k]);
                r->pred_local[(c0 + i) * T + k] = v;
            }
    }
done:
    st = mm_dist_agree(d, st);
    MM_CALL(st);
    for (int q = 0; q < d->size; q++) {
        int64_t a0;
        mm_dist_block(n, d->size, q, &a0, &r->counts[q]);
        r->counts[q] *= T;
    }
    MM_CALL(mm_dist_allgather_bytes(d, r->pred_local, sizeof(float), r->counts, out));
    return MM_OK;
}

/* One optimiser step on the global batch gidx[0..bn); *loss = its mean loss. */
static mm_status train_step(ft_run *r, const int64_t *gidx, int64_t bn, uint64_t seed, uint64_t step_id, double *loss)
{
    mm_dist *d = r->d;
    mm_tape *t = &r->tape;
    int T = r->T;
    int64_t s0 = 0, cnt = 0;
    for (int q = 0; q < d->size; q++) {
        int64_t a0, c;
        mm_dist_block(bn, d->size, q, &a0, &c);
        r->counts[q] = c;
        if (q == d->rank) s0 = a0, cnt = c;
    }
    MM_CALL(gather_molecules(r, gidx + s0, cnt));
    MM_CALL(mm_tape_reset(t));
    t->grad_enabled = true;
    t->training = true;
    t->allreduce = mm_dist_tape_allreduce;
    t->allreduce_ctx = d;
    mm_batch *b;
    MM_CALL(mm_batch_build(t, &r->model, &r->ms, d, r->counts, &b));
    mm_params_zero_grad(&r->model.params);
    mm_params_zero_grad(&r->head);
    mm_tensor *z, *y, *lab, *l, *ls;
    MM_CALL(mm_encode_graph(&r->model, t, b, step_id, &z));
    MM_CALL(head_forward(r, z, b, seed, step_id, &y));
    float *tg;
    MM_CALL(mm_tape_alloc(t, fbytes(cnt * T), (void **)&tg));
    double counts[2] = {0, 0}; /* present labels: local, then global */
    for (int64_t i = 0; i < cnt; i++)
        for (int k = 0; k < T; k++) {
            tg[i * T + k] = r->target[gidx[s0 + i] * T + k];
            counts[0] += !isnan(tg[i * T + k]);
        }
    counts[1] = counts[0];
    MM_CALL(mm_dist_allreduce_double(d, &counts[1], 1));
    int64_t shape[2] = {cnt, T};
    if (r->classification) {
        /* local mean, weighted by this rank's share of the global label count */
        MM_CALL(mm_tensor_wrap(t, tg, NULL, 2, shape, &lab));
        MM_CALL(mm_bce_logits_masked(t, y, lab, &l));
        MM_CALL(mm_affine(t, l, counts[1] > 0 ? (float)(counts[0] / counts[1]) : 0.0f, 0.0f, &ls));
    } else {
        /* sum over present entries of (pred - target)^2, divided by the global count */
        float *mask;
        MM_CALL(mm_tape_alloc(t, fbytes(cnt * T), (void **)&mask));
        for (int64_t e = 0; e < cnt * T; e++) {
            mask[e] = isnan(tg[e]) ? 0.0f : 1.0f;
            if (isnan(tg[e])) tg[e] = 0.0f;
        }
        mm_tensor *mk, *diff, *dm, *sq, *s;
        MM_CALL(mm_tensor_wrap(t, tg, NULL, 2, shape, &lab));
        MM_CALL(mm_tensor_wrap(t, mask, NULL, 2, shape, &mk));
        MM_CALL(mm_sub(t, y, lab, &diff));
        MM_CALL(mm_mul(t, diff, mk, &dm));
        MM_CALL(mm_mul(t, dm, dm, &sq));
        MM_CALL(mm_sum(t, sq, MM_AXIS_ALL, &s));
        MM_CALL(mm_affine(t, s, counts[1] > 0 ? (float)(1.0 / counts[1]) : 0.0f, 0.0f, &ls));
    }
    double lv = ls->data[0];
    if (!isfinite(lv))
        return MM_ERR(MM_ERR_NUMERIC, "fine-tuning step %llu: the loss is %g", (unsigned long long)step_id, lv);
    MM_CALL(mm_tape_backward(t, ls));
    MM_CALL(mm_dist_allreduce_float(d, r->model.params.grad, r->graph_span));
    MM_CALL(mm_dist_allreduce_float(d, r->head.grad, r->head.total));
    MM_CALL(mm_dist_allreduce_double(d, &lv, 1));
    *loss = lv;
    float clip = r->job->train.grad_clip;
    if (clip > 0) {
        double g1 = mm_params_grad_norm(&r->model.params), g2 = mm_params_grad_norm(&r->head);
        double norm = sqrt(g1 * g1 + g2 * g2);
        if (!isfinite(norm)) return MM_ERR(MM_ERR_NUMERIC, "fine-tuning: gradient norm %g", norm);
        if (norm > clip) {
            float s = (float)(clip / norm);
            for (size_t i = 0; i < r->graph_span; i++) r->model.params.grad[i] *= s;
            for (size_t i = 0; i < r->head.total; i++) r->head.grad[i] *= s;
        }
    }
    MM_CALL(mm_optim_step(&r->opt_m, &r->model.params, r->job->train.lr));
    MM_CALL(mm_optim_step(&r->opt_h, &r->head, r->job->train.lr));
    r->model.bn_batches++;
    return MM_OK;
}

/* ---------------------------------------------------------------- evaluation */

typedef struct split_eval {
    double main, aux;
    int skipped;
} split_eval;

static mm_status evaluate(ft_run *r, int k, split_eval *e)
{
    int64_t n = r->split.n[k];
    float *lab = mm_malloc(fbytes(n * r->T));
    if (!lab) return MM_ERR(MM_ERR_NOMEM, "labels of the %s split", mm_split_names[k]);
    for (int64_t i = 0; i < n; i++)
        memcpy(lab + i * r->T, r->y + r->split.idx[k][i] * r->T, (size_t)r->T * sizeof(float));
    mm_status st = predict(r, r->split.idx[k], n, r->pred[k]);
    if (st == MM_OK && r->classification) {
        mm_class_metrics m;
        st = mm_metrics_classification(r->pred[k], lab, n, r->T, &m, NULL, NULL);
        *e = (split_eval){m.roc_auc, m.pr_auc, m.n_skipped};
    } else if (st == MM_OK) {
        mm_reg_metrics m;
        st = mm_metrics_regression(r->pred[k], lab, n, r->T, &m, NULL);
        *e = (split_eval){m.rmse, m.mae, m.n_skipped};
    }
    mm_free_sized(lab, fbytes(n * r->T));
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}

static bool better(const ft_run *r, double v, double best)
{
    if (isnan(v)) return false;
    if (isnan(best)) return true;
    return r->classification ? v > best : v < best;
}

static mm_status write_predictions(ft_run *r, int64_t seed)
{
    char path[PATH_MAX_FT + 64];
    snprintf(path, sizeof path, "%s/seed_%lld_test_predictions.csv", r->run_dir, (long long)seed);
    FILE *f = fopen(path, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    int T = r->T;
    fprintf(f, "index,source_row,smiles");
    for (int t = 0; t < T; t++) {
        const char *nm = r->all.task_names[r->task_col[t]];
        bool q = strpbrk(nm, ",\"") != NULL;
        fprintf(f, ",%slabel:%s%s,%s%s:%s%s", q ? "\"" : "", nm, q ? "\"" : "", q ? "\"" : "",
                r->classification ? "logit" : "pred", nm, q ? "\"" : "");
    }
    fputc('\n', f);
    for (int64_t k = 0; k < r->split.n[MM_SPLIT_TEST]; k++) {
        int64_t i = r->split.idx[MM_SPLIT_TEST][k];
        fprintf(f, "%lld,%lld,%s", (long long)i, (long long)r->all.source_row[i], mm_strings_get(&r->all.smiles, i));
        for (int t = 0; t < T; t++) {
            float v = r->y[i * T + t];
            if (isnan(v)) fprintf(f, ",");
            else fprintf(f, ",%.9g", (double)v);
            fprintf(f, ",%.9g", (double)r->best_test[k * T + t]);
        }
        fputc('\n', f);
    }
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return MM_ERR(MM_ERR_IO, "cannot write %s", path);
    return MM_OK;
}

/* ---------------------------------------------------------------- one seed */

static mm_status run_seed(ft_run *r, int si, mm_ft_result *res, double *train_s, double *eval_s, int64_t *n_epochs)
{
    const mm_ft_train_config *Tr = &r->job->train;
    mm_dist *d = r->d;
    uint64_t seed = (uint64_t)Tr->seed + (uint64_t)si;
    double t0 = now();
    MM_CALL(init_model(r, seed));
    res->n_params = (int64_t)(r->graph_span + mm_params_count_values(&r->head));
    mm_status st = MM_OK;
    if (d->rank == 0) {
        char path[PATH_MAX_FT + 64];
        snprintf(path, sizeof path, "%s/seed_%llu.jsonl", r->run_dir, (unsigned long long)seed);
        r->log = fopen(path, "w");
        if (!r->log) st = MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    MM_CALL(mm_dist_agree(d, st));
    int64_t ntr = r->split.n[MM_SPLIT_TRAIN], B = Tr->batch_size;
    /* ceil(ntr / B) batches of near-equal size, so no batch is a remainder of a few molecules */
    int64_t S = (ntr + B - 1) / B;
    const char *mname = res->metric, *aname = res->aux_metric;
    double best = NAN;
    mm_ft_seed_result *sr = &res->seed[si];
    memset(sr, 0, sizeof *sr);
    sr->seed = (int64_t)seed;
    sr->valid = sr->test = NAN;
    uint64_t step_base = seed * 0x9E3779B97F4A7C15ull; /* GIN dropout streams differ between seeds */
    int64_t step = 0;
    for (int ep = 1; ep <= Tr->epochs; ep++) {
        double te = now(), loss_sum = 0;
        mm_rng rng;
        mm_rng_init(&rng, seed, (uint64_t)MM_STREAM_SHUFFLE + (uint64_t)ep);
        mm_rng_permutation(&rng, ntr, r->perm);
        for (int64_t i = 0; i < ntr; i++) r->perm[i] = r->split.idx[MM_SPLIT_TRAIN][r->perm[i]];
        for (int64_t k = 0; k < S; k++) {
            int64_t a = k * ntr / S, b = (k + 1) * ntr / S;
            double l = 0;
            MM_CALL(train_step(r, r->perm + a, b - a, seed, step_base + (uint64_t)step, &l));
            loss_sum += l;
            step++;
        }
        double tt = now() - te, tv = now();
        split_eval ev, et;
        MM_CALL(evaluate(r, MM_SPLIT_VALID, &ev));
        MM_CALL(evaluate(r, MM_SPLIT_TEST, &et));
        tv = now() - tv;
        *train_s += tt;
        *eval_s += tv;
        (*n_epochs)++;
        if (ep == 1 || better(r, ev.main, best)) { /* ties keep the earlier epoch */
            best = ev.main;
            sr->best_epoch = ep;
            sr->valid = ev.main;
            sr->valid_aux = ev.aux;
            sr->test = et.main;
            sr->test_aux = et.aux;
            sr->test_skipped = et.skipped;
            memcpy(r->best_test, r->pred[MM_SPLIT_TEST], fbytes(r->split.n[MM_SPLIT_TEST] * r->T));
        }
        sr->stopped_epoch = ep;
        /* every rank has the same validation metric, so every rank stops here */
        bool stop = Tr->patience > 0 && ep - sr->best_epoch >= Tr->patience && ep < Tr->epochs;
        if (d->rank == 0) {
            fprintf(r->log,
                    "{\"seed\": %llu, \"epoch\": %d, \"loss\": %.6f, \"valid_%s\": %.6f, \"valid_%s\": %.6f, "
                    "\"test_%s\": %.6f, \"test_%s\": %.6f, \"train_s\": %.3f, \"eval_s\": %.3f, \"ranks\": %d}\n",
                    (unsigned long long)seed, ep, loss_sum / (double)S, mname, ev.main, aname, ev.aux, mname, et.main,
                    aname, et.aux, tt, tv, d->size);
            fflush(r->log);
            if (Tr->progress)
                fprintf(stderr, "seed %llu epoch %d/%d: loss %.4f, valid %s %.4f, test %s %.4f (%.2f s + eval %.2f s)\n",
                        (unsigned long long)seed, ep, Tr->epochs, loss_sum / (double)S, mname, ev.main, mname, et.main,
                        tt, tv);
            if (stop && Tr->progress)
                fprintf(stderr, "seed %llu: stopped at epoch %d, %d epochs without a better valid %s (best epoch %d)\n",
                        (unsigned long long)seed, ep, Tr->patience, mname, sr->best_epoch);
        }
        if (stop) break;
    }
    if (d->rank == 0) {
        fclose(r->log);
        r->log = NULL;
        st = write_predictions(r, (int64_t)seed);
    }
    MM_CALL(mm_dist_agree(d, st));
    sr->seconds = now() - t0;
    free_model(r);
    return MM_OK;
}

/* ---------------------------------------------------------------- results */

static void mean_std(const double *v, int n, double *m, double *s)
{
    double a = 0, q = 0;
    for (int i = 0; i < n; i++) a += v[i];
    a /= n;
    for (int i = 0; i < n; i++) q += (v[i] - a) * (v[i] - a);
    *m = a;
    *s = sqrt(q / n);
}

static void summarise(mm_ft_result *res)
{
    double v[MM_FT_MAX_SEEDS], t[MM_FT_MAX_SEEDS], x[MM_FT_MAX_SEEDS];
    for (int i = 0; i < res->n_seeds; i++) {
        v[i] = res->seed[i].valid;
        t[i] = res->seed[i].test;
        x[i] = res->seed[i].test_aux;
    }
    mean_std(v, res->n_seeds, &res->valid_mean, &res->valid_std);
    mean_std(t, res->n_seeds, &res->test_mean, &res->test_std);
    mean_std(x, res->n_seeds, &res->aux_mean, &res->aux_std);
}

static mm_status write_results(const ft_run *r, const mm_ft_result *res)
{
    char path[PATH_MAX_FT + 32];
    snprintf(path, sizeof path, "%s/results.json", r->run_dir);
    FILE *f = fopen(path, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"dataset\": \"%s\",\n  \"task_type\": \"%s\",\n  \"n_tasks\": %d,\n  \"n_molecules\": %lld,\n",
            res->dataset, r->classification ? "classification" : "regression", res->n_tasks, (long long)res->n_molecules);
    fprintf(f, "  \"split\": \"%s\",\n  \"n_train\": %lld,\n  \"n_valid\": %lld,\n  \"n_test\": %lld,\n  \"n_groups\": %lld,\n",
            r->job->split.type == MM_FT_SPLIT_RANDOM ? "random"
            : r->job->split.type == MM_FT_SPLIT_SCAFFOLD ? "scaffold" : "scaffold_chemprop",
            (long long)res->n_split[0],
            (long long)res->n_split[1], (long long)res->n_split[2], (long long)res->n_groups);
    fprintf(f, "  \"tasks_one_class\": {\"train\": %d, \"valid\": %d, \"test\": %d},\n  \"bad_labels\": %lld,\n",
            res->skipped[0], res->skipped[1], res->skipped[2], (long long)res->bad_labels);
    fprintf(f, "  \"init\": \"%s\",\n  \"encoder_sizes_from\": \"%s\",\n  \"n_params\": %lld,\n  \"epochs\": %d,\n",
            r->job->model.init, res->encoder_from, (long long)res->n_params, res->epochs);
    fprintf(f, "  \"patience\": %d,\n", r->job->train.patience);
    fprintf(f, "  \"metric\": \"%s\",\n  \"aux_metric\": \"%s\",\n  \"seeds\": [\n", res->metric, res->aux_metric);
    for (int i = 0; i < res->n_seeds; i++) {
        const mm_ft_seed_result *s = &res->seed[i];
        fprintf(f,
                "    {\"seed\": %lld, \"best_epoch\": %d, \"stopped_epoch\": %d, \"valid\": %.6f, \"test\": %.6f, "
                "\"valid_aux\": %.6f, \"test_aux\": %.6f, \"test_tasks_skipped\": %d, \"seconds\": %.2f}%s\n",
                (long long)s->seed, s->best_epoch, s->stopped_epoch, s->valid, s->test, s->valid_aux, s->test_aux,
                s->test_skipped, s->seconds, i + 1 < res->n_seeds ? "," : "");
    }
    fprintf(f, "  ],\n  \"valid_mean\": %.6f,\n  \"valid_std\": %.6f,\n  \"test_mean\": %.6f,\n  \"test_std\": %.6f,\n",
            res->valid_mean, res->valid_std, res->test_mean, res->test_std);
    fprintf(f, "  \"test_aux_mean\": %.6f,\n  \"test_aux_std\": %.6f,\n  \"epoch_seconds\": %.4f,\n  \"eval_seconds\": %.4f,\n",
            res->aux_mean, res->aux_std, res->epoch_seconds, res->eval_seconds);
    fprintf(f, "  \"ranks\": %d\n}\n", r->d->size);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return MM_ERR(MM_ERR_IO, "cannot write %s", path);
    /* one line for scripts (benchmarks/moleculenet.sh) */
    snprintf(path, sizeof path, "%s/results.csv", r->run_dir);
    f = fopen(path, "w");
    if (!f) return MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    double stopped = 0;
    for (int i = 0; i < res->n_seeds; i++) stopped += res->seed[i].stopped_epoch;
    fprintf(f, "metric,n_tasks,n_molecules,n_seeds,valid_mean,valid_std,test_mean,test_std,aux_metric,aux_mean,aux_std,"
               "epoch_seconds,epochs,patience,stopped_epoch_mean\n%s,%d,%lld,%d,%.6f,%.6f,%.6f,%.6f,%s,%.6f,%.6f,%.4f,%d,%d,"
               "%.2f\n",
            res->metric, res->n_tasks, (long long)res->n_molecules, res->n_seeds, res->valid_mean, res->valid_std,
            res->test_mean, res->test_std, res->aux_metric, res->aux_mean, res->aux_std, res->epoch_seconds, res->epochs,
            r->job->train.patience, stopped / res->n_seeds);
    bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return MM_ERR(MM_ERR_IO, "cannot write %s", path);
    return MM_OK;
}

void mm_ft_result_print(const mm_ft_result *r, FILE *f)
{
    fprintf(f, "data: %s: %lld molecules, %d task%s; split train %lld / valid %lld / test %lld", r->dataset,
            (long long)r->n_molecules, r->n_tasks, r->n_tasks == 1 ? "" : "s", (long long)r->n_split[0],
            (long long)r->n_split[1], (long long)r->n_split[2]);
    if (r->n_groups) fprintf(f, " (%lld scaffolds)", (long long)r->n_groups);
    fputc('\n', f);
    if (r->skipped[1] || r->skipped[2])
        fprintf(f, "tasks with one class only (skipped in ROC-AUC): valid %d, test %d\n", r->skipped[1], r->skipped[2]);
    for (int i = 0; i < r->n_seeds; i++) {
        const mm_ft_seed_result *s = &r->seed[i];
        fprintf(f, "seed %lld: best epoch %d (stopped at %d of %d): valid %s %.4f, test %s %.4f, test %s %.4f (%.1f s)\n",
                (long long)s->seed, s->best_epoch, s->stopped_epoch, r->epochs, r->metric, s->valid, r->metric, s->test,
                r->aux_metric, s->test_aux, s->seconds);
    }
    fprintf(f, "test %s %.4f +- %.4f, test %s %.4f +- %.4f, valid %s %.4f +- %.4f over %d seed%s (std ddof=0); "
               "%.2f s per epoch\n",
            r->metric, r->test_mean, r->test_std, r->aux_metric, r->aux_mean, r->aux_std, r->metric, r->valid_mean,
            r->valid_std, r->n_seeds, r->n_seeds == 1 ? "" : "s", r->epoch_seconds);
}

/* ---------------------------------------------------------------- the run */

static void free_run(ft_run *r)
{
    free_model(r);
    if (r->log) fclose(r->log);
    mm_molset_free(&r->all);
    mm_molset_free(&r->ms);
    mm_tape_destroy(&r->tape);
    size_t ny = fbytes(r->n * r->T);
    if (r->y) mm_free_sized(r->y, ny);
    if (r->target) mm_free_sized(r->target, ny);
    if (r->counts) mm_free_sized(r->counts, (size_t)r->d->size * sizeof(int64_t));
    /* the split holds the sizes of perm (and of the prediction buffers): free it last */
    if (r->perm) mm_free_sized(r->perm, (size_t)r->split.n[0] * sizeof(int64_t));
    mm_split_free(&r->split);
    mm_dist_destroy(&r->self);
    if (r->enc_cache) mm_free_sized(r->enc_cache, fbytes((int64_t)r->graph_span));
    if (r->bn_cache) mm_free_sized(r->bn_cache, fbytes((int64_t)gin_buffers(r)));
}

static mm_status alloc_buffers(ft_run *r)
{
    int64_t most = 0;
    for (int k = 1; k < MM_N_SPLITS; k++) {
        int64_t a0, c;
        mm_dist_block(r->split.n[k], r->d->size, r->d->rank, &a0, &c);
        if (c > most) most = c;
    }
    r->counts = mm_malloc((size_t)r->d->size * sizeof(int64_t));
    r->perm = mm_malloc((size_t)r->split.n[0] * sizeof(int64_t));
    r->pred_local = mm_malloc(fbytes(most * r->T));
    r->pred[1] = mm_malloc(fbytes(r->split.n[1] * r->T));
    r->pred[2] = mm_malloc(fbytes(r->split.n[2] * r->T));
    r->best_test = mm_malloc(fbytes(r->split.n[2] * r->T));
    if (!r->counts || !r->perm || !r->pred_local || !r->pred[1] || !r->pred[2] || !r->best_test)
        return MM_ERR(MM_ERR_NOMEM, "fine-tuning buffers");
    return MM_OK;
}

static void free_buffers(ft_run *r)
{
    int64_t most = 0;
    for (int k = 1; k < MM_N_SPLITS; k++) {
        int64_t a0, c;
        mm_dist_block(r->split.n[k], r->d->size, r->d->rank, &a0, &c);
        if (c > most) most = c;
    }
    if (r->pred_local) mm_free_sized(r->pred_local, fbytes(most * r->T));
    for (int k = 1; k < MM_N_SPLITS; k++)
        if (r->pred[k]) mm_free_sized(r->pred[k], fbytes(r->split.n[k] * r->T));
    if (r->best_test) mm_free_sized(r->best_test, fbytes(r->split.n[2] * r->T));
}

static mm_status count_one_class(ft_run *r, mm_ft_result *res)
{
    if (!r->classification) return MM_OK;
    for (int k = 0; k < MM_N_SPLITS; k++) {
        int skipped = 0;
        for (int t = 0; t < r->T; t++) {
            bool has[2] = {false, false};
            for (int64_t i = 0; i < r->split.n[k]; i++) {
                float v = r->y[r->split.idx[k][i] * r->T + t];
                if (!isnan(v)) has[v == 1.0f] = true;
            }
            skipped += !(has[0] && has[1]);
        }
        res->skipped[k] = skipped;
    }
    return MM_OK;
}

static mm_status run(ft_run *r, unsigned flags, mm_ft_result *res)
{
    const mm_ft_job *job = r->job;
    mm_dist *d = r->d;
    mm_status st = d->rank == 0 ? mm_mkdir_p(r->run_dir, "run directory") : MM_OK;
    if (st == MM_OK && d->rank == 0) {
        char path[PATH_MAX_FT + 16];
        snprintf(path, sizeof path, "%s/job.yaml", r->run_dir);
        FILE *f = fopen(path, "w");
        if (!f) st = MM_ERR(MM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        else {
            mm_cfg_write_values(&mm_ft_schema, job, f);
            fclose(f);
        }
    }
    MM_CALL(mm_dist_agree(d, st));
    MM_CALL(load_data(r));
    MM_CALL(make_split(r));
    make_targets(r);
    fmt(res->dataset, sizeof res->dataset, "%s", r->dataset);
    snprintf(res->metric, sizeof res->metric, "%s", r->classification ? "roc_auc" : "rmse");
    snprintf(res->aux_metric, sizeof res->aux_metric, "%s", r->classification ? "pr_auc" : "mae");
    res->higher_better = r->classification;
    res->n_tasks = r->T;
    res->n_molecules = r->n;
    for (int k = 0; k < MM_N_SPLITS; k++) res->n_split[k] = r->split.n[k];
    res->n_groups = r->split.n_groups;
    res->bad_labels = r->bad.count;
    res->epochs = job->train.epochs;
    MM_CALL(count_one_class(r, res));
    if (flags & MM_FT_PREPARE_ONLY) return MM_OK;

    int64_t ntr = r->split.n[MM_SPLIT_TRAIN], B = job->train.batch_size, S = (ntr + B - 1) / B;
    if (ntr / S < d->size) {
        mm_status e = MM_ERR(MM_ERR_CONFIG, "batches of %lld molecules cannot give each of %d ranks a molecule",
                             (long long)(ntr / S), d->size);
        mm_error_hint("raise train.batch_size to at least %d, or run on fewer ranks", 2 * d->size);
        return e;
    }
    MM_CALL(resolve_model(r, res));
    MM_CALL(mm_tape_init(&r->tape, 16u << 20));
    MM_CALL(mm_molset_init(&r->ms, &(mm_molset_opts){0, 0, 0, 0, NULL}));
    double train_s = 0, eval_s = 0;
    int64_t n_epochs = 0;
    res->n_seeds = job->train.seeds;
    if (d->rank == 0 && job->train.progress)
        fprintf(stderr, "mmsa_finetune: %lld molecules (%lld / %lld / %lld), %d task%s, %s, %d seed%s x %d epochs on %d rank%s; "
                        "encoder sizes from %s\n",
                (long long)r->n, (long long)r->split.n[0], (long long)r->split.n[1], (long long)r->split.n[2], r->T,
                r->T == 1 ? "" : "s", job->model.init, job->train.seeds, job->train.seeds == 1 ? "" : "s", job->train.epochs,
                d->size, d->size == 1 ? "" : "s", res->encoder_from);
    st = alloc_buffers(r);
    for (int si = 0; st == MM_OK && si < job->train.seeds; si++) st = run_seed(r, si, res, &train_s, &eval_s, &n_epochs);
    free_buffers(r);
    MM_CALL(st);
    res->epoch_seconds = n_epochs ? train_s / (double)n_epochs : 0;
    res->eval_seconds = n_epochs ? eval_s / (double)n_epochs : 0;
    summarise(res);
    st = d->rank == 0 ? write_results(r, res) : MM_OK;
    MM_CALL(mm_dist_agree(d, st));
    return MM_OK;
}

mm_status mm_finetune_run(const mm_ft_job *job, mm_dist *d, unsigned flags, mm_ft_result *res)
{
    mm_ft_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    MM_CALL(mm_ft_job_validate(job, NULL, NULL));
    MM_CALL(mm_blas_set_precision(job->train.precision));
    ft_run *r = mm_calloc(1, sizeof *r);
    if (!r) return MM_ERR(MM_ERR_NOMEM, "fine-tuning run");
    r->job = job;
    r->d = d;
    r->classification = job->data.task_type == MM_FT_CLASSIFICATION;
    snprintf(r->run_dir, sizeof r->run_dir, "%s", job->train.run_dir);
    mm_status st = mm_dist_init(&r->self, MPI_COMM_SELF);
    if (st == MM_OK) st = run(r, flags, res);
    free_run(r);
    mm_free_sized(r, sizeof *r);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}
