/* ft_job.c: the schema of the mmsa_finetune job file and its cross-key rules. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "mmsa/alloc.h"
#include "mmsa/finetune.h"

#define F(sec, st, key, type, def, lo, hi, doc) \
    {#sec, #key, type, offsetof(mm_ft_job, sec) + offsetof(st, key), def, lo, hi, NULL, doc}
#define FE(sec, st, key, def, choices, doc) \
    {#sec, #key, MM_CFG_ENUM, offsetof(mm_ft_job, sec) + offsetof(st, key), def, 1, 0, choices, doc}

static const mm_cfg_field fields[] = {
    F(data, mm_ft_data_config, dataset, MM_CFG_STRING, "", 1, 0, "labelled dataset written by mmsa_prep (give this or data.csv)"),
    F(data, mm_ft_data_config, csv, MM_CFG_STRING, "", 1, 0,
      "or a MoleculeNet-style CSV (.csv/.csv.gz), featurised into run_dir/dataset.h5 (graph and scaffold only)"),
    F(data, mm_ft_data_config, smiles_col, MM_CFG_STRING, "", 1, 0,
      "CSV: the SMILES column (\"\": smiles, SMILES, Smiles, mol or canonical_smiles)"),
    F(data, mm_ft_data_config, tasks, MM_CFG_STRING, "all", 1, 0,
      "label columns: all, or names separated by commas (CSV-quote a name with a comma)"),
    FE(data, mm_ft_data_config, task_type, "classification", "classification|regression",
       "classification: binary labels 0/1, BCE with missing labels masked; regression: MSE on standardised targets"),
    FE(data, mm_ft_data_config, bad_labels, "error", "error|missing",
       "a label cell that is not a number (or not 0/1 for classification): stop, or keep it as missing"),
    F(data, mm_ft_data_config, limit, MM_CFG_INT64, "0", 0, 9.2e18, "use the first N rows / molecules only (0: all)"),

    FE(split, mm_ft_split_config, type, "scaffold", "scaffold|scaffold_chemprop|random",
       "scaffold: Bemis-Murcko groups, largest first, into train, valid, test (deepchem / pretrain-gnns rule); "
       "scaffold_chemprop: chemprop's tie and fill rule; random: seeded permutation"),
    F(split, mm_ft_split_config, train, MM_CFG_FLOAT, "0.8", 0.001, 1, "fraction of molecules for training"),
    F(split, mm_ft_split_config, valid, MM_CFG_FLOAT, "0.1", 0.001, 1, "fraction for validation (model selection)"),
    F(split, mm_ft_split_config, test, MM_CFG_FLOAT, "0.1", 0.001, 1, "fraction for the reported test metric"),
    F(split, mm_ft_split_config, seed, MM_CFG_INT64, "0", 0, 9.2e18, "seed of the random split"),

    F(model, mm_ft_model_config, init, MM_CFG_STRING, "from_scratch", 1, 0,
      "from_scratch, or a checkpoint of mmsa_pretrain whose enc.graph.* parameters start the encoder"),
    F(model, mm_ft_model_config, pretrain_job, MM_CFG_STRING, "", 1, 0,
      "pre-training job.yaml giving the encoder sizes (\"\": <checkpoint dir>/../job.yaml when init is a checkpoint)"),
    F(model, mm_ft_model_config, embed_dim, MM_CFG_INT, "0", 0, 65536, "encoder output width (0: from the pre-training job)"),
    F(model, mm_ft_model_config, gin_layers, MM_CFG_INT, "0", 0, 64, "GIN layers (0: from the pre-training job)"),
    F(model, mm_ft_model_config, gin_hidden, MM_CFG_INT, "0", 0, 65536, "GIN width (0: from the pre-training job)"),
    F(model, mm_ft_model_config, gin_dropout, MM_CFG_FLOAT, "0.5", 0, 0.95,
      "dropout after every GIN layer while fine-tuning (pretrain-gnns uses 0.5)"),
    FE(model, mm_ft_model_config, head, "linear", "linear|mlp", "prediction head on the encoder output: linear, or Linear-ReLU-Linear"),
    F(model, mm_ft_model_config, head_hidden, MM_CFG_INT, "256", 1, 65536, "hidden width of the mlp head"),
    F(model, mm_ft_model_config, head_dropout, MM_CFG_FLOAT, "0", 0, 0.95, "dropout before the mlp head's last layer"),

    F(train, mm_ft_train_config, run_dir, MM_CFG_STRING, "runs/finetune", 1, 0,
      "directory for job.yaml, split.json, per-seed logs and results"),
    F(train, mm_ft_train_config, epochs, MM_CFG_INT, "100", 1, 1 << 20, "passes over the training split per seed"),
    F(train, mm_ft_train_config, patience, MM_CFG_INT, "0", 0, 1 << 20,
      "early stopping: end a seed after this many epochs without a better validation metric (0: run every epoch)"),
    F(train, mm_ft_train_config, batch_size, MM_CFG_INT, "32", 1, 1 << 24, "GLOBAL batch: molecules per step over all ranks"),
    F(train, mm_ft_train_config, lr, MM_CFG_FLOAT, "1e-3", 0, 10, "AdamW learning rate (constant)"),
    F(train, mm_ft_train_config, weight_decay, MM_CFG_FLOAT, "0", 0, 10, "AdamW decoupled weight decay (matrices only)"),
    F(train, mm_ft_train_config, beta1, MM_CFG_FLOAT, "0.9", 0, 0.999999, "AdamW beta1"),
    F(train, mm_ft_train_config, beta2, MM_CFG_FLOAT, "0.999", 0, 0.999999, "AdamW beta2"),
    F(train, mm_ft_train_config, adam_eps, MM_CFG_FLOAT, "1e-8", 1e-12, 1, "AdamW epsilon"),
    F(train, mm_ft_train_config, grad_clip, MM_CFG_FLOAT, "0", 0, 1e9, "clip the global gradient norm (0: off)"),
    F(train, mm_ft_train_config, seeds, MM_CFG_INT, "3", 1, MM_FT_MAX_SEEDS, "independent runs, reported as mean and std"),
    F(train, mm_ft_train_config, seed, MM_CFG_INT64, "0", 0, 9.2e18, "seed of the first run (then seed + 1, ...)"),
    F(train, mm_ft_train_config, eval_chunk, MM_CFG_INT, "256", 1, 1 << 20, "molecules per forward pass in evaluation"),
    F(train, mm_ft_train_config, progress, MM_CFG_BOOL, "true", 1, 0, "one line per epoch on rank 0"),
    FE(train, mm_ft_train_config, precision, "fp32", "fp32|bf16",
       "the layers' products (Linear, convolution): fp32, or bf16 = bfloat16 inputs with float32 accumulation on Intel AMX tiles (an error without AMX-BF16); losses, kNN, memory bank and optimiser stay float32"),
};

static const char *const section_docs[] = {
    "data", "The labelled molecules: an mmsa_prep dataset or a CSV, the tasks and their type.",
    "split", "Train / valid / test split (written to run_dir/split.json).",
    "model", "GIN graph encoder (sizes of the pre-training job) and the prediction head.",
    "train", "AdamW fine-tuning, seeds, run directory.",
    NULL, NULL,
};

const mm_cfg_schema mm_ft_schema = {"mmsa_finetune job", fields, (int)(sizeof fields / sizeof fields[0]), section_docs};

mm_status mm_ft_read_text(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        mm_status st = MM_ERR(MM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        mm_error_hint("check the path; `mmsa_finetune --print-reference` lists every key");
        return st;
    }
    size_t cap = 4096, n = 0;
    char *buf = mm_malloc(cap);
    mm_status st = MM_OK;
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap) break;
        char *nb = mm_malloc(2 * cap);
        if (nb) memcpy(nb, buf, n);
        mm_free_sized(buf, cap);
        buf = nb;
        cap *= 2;
    }
    if (!buf) st = MM_ERR(MM_ERR_NOMEM, "reading %s", path);
    else if (ferror(f)) st = MM_ERR(MM_ERR_IO, "cannot read %s", path);
    fclose(f);
    if (st != MM_OK) {
        if (buf) mm_free_sized(buf, cap);
        return st;
    }
    buf[n] = '\0';
    /* shrink to the exact size so the caller frees n + 1 bytes */
    char *exact = mm_malloc(n + 1);
    if (!exact) {
        mm_free_sized(buf, cap);
        return MM_ERR(MM_ERR_NOMEM, "reading %s", path);
    }
    memcpy(exact, buf, n + 1);
    mm_free_sized(buf, cap);
    *text = exact;
    *len = n;
    return MM_OK;
}

mm_status mm_ft_job_parse(const char *name, const char *yaml, mm_ft_job *job)
{
    MM_CALL(mm_cfg_load_string(&mm_ft_schema, name, yaml, job));
    return MM_OK;
}

/* "name:line:col: " of section.key's value in the YAML text, or "" when the text does
 * not set it (a default, or a --set override). */
static const char *where_is(const char *name, const char *yaml, const char *section, const char *key, char *buf,
                            size_t n)
{
    buf[0] = '\0';
    if (!yaml) return buf;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) return buf;
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, strlen(yaml));
    if (yaml_parser_load(&p, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE)
            for (yaml_node_pair_t *sp = root->data.mapping.pairs.start; sp < root->data.mapping.pairs.top; sp++) {
                yaml_node_t *sk = yaml_document_get_node(&doc, sp->key), *sv = yaml_document_get_node(&doc, sp->value);
                if (sk->type != YAML_SCALAR_NODE || strcmp((const char *)sk->data.scalar.value, section) != 0 ||
                    sv->type != YAML_MAPPING_NODE)
                    continue;
                for (yaml_node_pair_t *kp = sv->data.mapping.pairs.start; kp < sv->data.mapping.pairs.top; kp++) {
                    yaml_node_t *k = yaml_document_get_node(&doc, kp->key), *v = yaml_document_get_node(&doc, kp->value);
                    if (k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
                        snprintf(buf, n, "%s:%d:%d: ", name, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1);
                }
            }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&p);
    return buf;
}

mm_status mm_ft_job_validate(const mm_ft_job *job, const char *name, const char *yaml)
{
    char w1[600], w2[600];
    const mm_ft_data_config *D = &job->data;
    if (!name) name = "job";
    if (!D->dataset[0] == !D->csv[0]) {
        mm_status st;
        if (!D->dataset[0])
            st = MM_ERR(MM_ERR_CONFIG, "%s: no data: set data.dataset (an mmsa_prep file) or data.csv (a CSV)", name);
        else
            st = MM_ERR(MM_ERR_CONFIG, "%sdata.dataset and %sdata.csv are both set; give one of them",
                        where_is(name, yaml, "data", "dataset", w1, sizeof w1), where_is(name, yaml, "data", "csv", w2, sizeof w2));
        mm_error_hint("data.dataset takes a file written by mmsa_prep with --labels; data.csv a MoleculeNet CSV");
        return st;
    }
    if (D->dataset[0] && D->smiles_col[0])
        return MM_ERR(MM_ERR_CONFIG, "%sdata.smiles_col applies to data.csv only (data.dataset is already featurised)",
                      where_is(name, yaml, "data", "smiles_col", w1, sizeof w1));
    if (!D->tasks[0])
        return MM_ERR(MM_ERR_CONFIG, "%sdata.tasks is empty; write all or the label column names",
                      where_is(name, yaml, "data", "tasks", w1, sizeof w1));
    const mm_ft_split_config *S = &job->split;
    double sum = (double)S->train + (double)S->valid + (double)S->test;
    if (fabs(sum - 1.0) > 1e-5) {
        const char *at = where_is(name, yaml, "split", "train", w1, sizeof w1);
        if (!at[0]) at = where_is(name, yaml, "split", "valid", w1, sizeof w1);
        if (!at[0]) at = where_is(name, yaml, "split", "test", w1, sizeof w1);
        return MM_ERR(MM_ERR_CONFIG, "%ssplit.train + split.valid + split.test = %g + %g + %g = %g, must be 1", at,
                      (double)S->train, (double)S->valid, (double)S->test, sum);
    }
    if (S->type != MM_FT_SPLIT_RANDOM && S->seed != 0)
        return MM_ERR(MM_ERR_CONFIG, "%ssplit.seed applies to split.type random; the scaffold split has no randomness",
                      where_is(name, yaml, "split", "seed", w1, sizeof w1));
    const mm_ft_model_config *M = &job->model;
    if (!M->init[0])
        return MM_ERR(MM_ERR_CONFIG, "%smodel.init is empty; write from_scratch or a checkpoint path",
                      where_is(name, yaml, "model", "init", w1, sizeof w1));
    if (M->head == MM_FT_HEAD_LINEAR && M->head_dropout > 0)
        return MM_ERR(MM_ERR_CONFIG, "%smodel.head_dropout needs model.head: mlp (a linear head has no hidden layer)",
                      where_is(name, yaml, "model", "head_dropout", w1, sizeof w1));
    return MM_OK;
}

mm_status mm_ft_job_load(const char *path, mm_ft_job *job)
{
    char *text;
    size_t len;
    MM_CALL(mm_ft_read_text(path, &text, &len));
    mm_status st = mm_ft_job_parse(path, text, job);
    if (st == MM_OK) st = mm_ft_job_validate(job, path, text);
    mm_free_sized(text, len + 1);
    if (st != MM_OK) mm_error_push(__FILE__, __LINE__, __func__);
    return st;
}
