/* job.c: the schema of the mmsa_pretrain job file. Defaults follow DESIGN.md section 3. */
#include "mmsa/job.h"
#include "mmsa/spectrum.h"

#include <stddef.h>

/* F: a number, bool, string or list field with an inclusive range (lo > hi: none);
 * FE: an enumeration. */
#define F(sec, st, key, type, def, lo, hi, doc) \
    {#sec, #key, type, offsetof(mm_job, sec) + offsetof(st, key), def, lo, hi, NULL, doc}
#define FE(sec, st, key, def, choices, doc) \
    {#sec, #key, MM_CFG_ENUM, offsetof(mm_job, sec) + offsetof(st, key), def, 1, 0, choices, doc}

static const mm_cfg_field fields[] = {
    FE(model, mm_model_config, objective, "mmsa", "mmsa|spectrum_autoencoder|acml",
      "pre-training objective: mmsa (structure awareness), spectrum_autoencoder (NMR encoder, section spectrum), "
      "acml (a frozen teacher distilled into the graph encoder, section acml)"),
    F(model, mm_model_config, embed_dim, MM_CFG_INT, "256", 2, 65536, "width of every encoder output and of the unified embedding"),
    F(model, mm_model_config, proj_hidden, MM_CFG_INT, "256", 1, 65536, "hidden width of the projection heads"),
    F(model, mm_model_config, proj_dim, MM_CFG_INT, "128", 2, 65536, "output width of the L2-normalised projection heads"),
    F(model, mm_model_config, gin_layers, MM_CFG_INT, "5", 1, 64, "GIN message-passing layers"),
    F(model, mm_model_config, gin_hidden, MM_CFG_INT, "300", 1, 65536, "GIN hidden width"),
    F(model, mm_model_config, gin_dropout, MM_CFG_FLOAT, "0.1", 0, 0.95, "dropout after every GIN layer"),
    FE(model, mm_model_config, gin_pool, "mean", "mean|sum", "GIN readout pooling over the atoms (ACML's student: sum)"),
    FE(model, mm_model_config, gin_readout, "linear", "linear|mlp",
      "after pooling: one Linear to embed_dim, or Linear(gin_hidden)-ReLU-Linear (ACML's student)"),
    F(model, mm_model_config, schnet_hidden, MM_CFG_INT, "128", 1, 65536, "SchNet atom state width"),
    F(model, mm_model_config, schnet_filters, MM_CFG_INT, "128", 1, 65536, "SchNet continuous-filter width"),
    F(model, mm_model_config, schnet_interactions, MM_CFG_INT, "3", 1, 32, "SchNet interaction blocks"),
    F(model, mm_model_config, schnet_n_rbf, MM_CFG_INT, "50", 2, 1024, "Gaussian radial basis functions on [0, cutoff]"),
    F(model, mm_model_config, schnet_cutoff, MM_CFG_FLOAT, "5.0", 0.5, 50, "interaction cutoff in Angstrom"),
    F(model, mm_model_config, schnet_keep_filters, MM_CFG_BOOL, "false", 1, 0,
      "training keeps each pair's continuous filters for the backward (2 x pairs x filters floats per interaction) instead of recomputing them"),
    F(model, mm_model_config, cnn_channels, MM_CFG_INT_LIST, "[32, 64, 128, 256]", 1, 4096,
      "channels of the stride-2 3x3 conv stages of the image encoder"),
    F(model, mm_model_config, image_size, MM_CFG_INT, "64", 8, 1024, "image side in pixels (must match the dataset)"),
    F(model, mm_model_config, fp_bits, MM_CFG_INT, "2048", 8, 65536, "fingerprint length in bits (must match the dataset)"),
    F(model, mm_model_config, fp_hidden, MM_CFG_INT, "512", 1, 65536, "width of the sparse first fingerprint layer"),
    F(model, mm_model_config, gate_att_dim, MM_CFG_INT, "256", 1, 65536, "width of the gated-fusion scoring projection"),
    F(model, mm_model_config, decoder_hidden, MM_CFG_INT, "256", 1, 65536, "hidden width of the shared decoder"),
    F(model, mm_model_config, hg_hidden, MM_CFG_INT, "256", 1, 65536, "hidden width of the 2-layer HGNN"),
    F(model, mm_model_config, use_conformer, MM_CFG_BOOL, "true", 1, 0, "encode the 3D conformer (molecules without one are masked)"),
    F(model, mm_model_config, use_image, MM_CFG_BOOL, "true", 1, 0, "encode the 2D depiction"),
    F(model, mm_model_config, use_fingerprint, MM_CFG_BOOL, "true", 1, 0, "encode the ECFP4 fingerprint"),
    F(model, mm_model_config, bn_eps, MM_CFG_FLOAT, "1e-5", 1e-12, 1, "BatchNorm epsilon"),
    F(model, mm_model_config, bn_momentum, MM_CFG_FLOAT, "0.1", 0, 1, "BatchNorm running-statistics momentum (PyTorch convention)"),

    F(loss, mm_loss_config, knn_k, MM_CFG_INT, "8", 1, 1024, "neighbours per hyperedge (k nearest by cosine, self excluded)"),
    F(loss, mm_loss_config, n_anchors, MM_CFG_INT, "4096", 1, 1 << 24, "memory-bank anchors (partitioned across ranks)"),
    F(loss, mm_loss_config, tau_align, MM_CFG_FLOAT, "0.1", 1e-4, 100, "temperature of the modality-alignment InfoNCE"),
    F(loss, mm_loss_config, tau_hg, MM_CFG_FLOAT, "0.1", 1e-4, 100, "temperature of the hypergraph InfoNCE"),
    F(loss, mm_loss_config, tau_mem, MM_CFG_FLOAT, "0.1", 1e-4, 100, "temperature of the memory-bank softmax"),
    F(loss, mm_loss_config, mem_momentum, MM_CFG_FLOAT, "0.99", 0, 1, "anchor momentum toward the mean of its members"),
    F(loss, mm_loss_config, mem_reseed_after, MM_CFG_INT, "100", 1, 1 << 30,
      "re-seed an anchor hit by no molecule for this many steps (DESIGN and the golden step: 1000, which never "
      "fired in a 970-step ZINC250k epoch: benchmarks/README.md, memory bank in use)"),
    FE(loss, mm_loss_config, mem_init, "batch", "random|batch",
      "initial anchors: random unit vectors (DESIGN, golden step), or random and all due for re-seeding, so the "
      "first steps replace them by batch embeddings"),
    FE(loss, mm_loss_config, mem_reseed_from, "farthest", "first|farthest",
      "rows that re-seed dead anchors: the batch's first rows (golden README 5.12), or the rows farthest (lowest "
      "cosine) from their assigned anchor"),
    F(loss, mm_loss_config, w_align, MM_CFG_FLOAT, "1.0", 0, 1e6, "weight of L_align"),
    F(loss, mm_loss_config, w_rec, MM_CFG_FLOAT, "0.5", 0, 1e6, "weight of L_rec"),
    F(loss, mm_loss_config, w_hg, MM_CFG_FLOAT, "0.5", 0, 1e6, "weight of L_hg"),
    F(loss, mm_loss_config, w_mem, MM_CFG_FLOAT, "0.5", 0, 1e6, "weight of L_mem"),

    F(train, mm_train_config, dataset, MM_CFG_STRING, "", 1, 0, "dataset file written by mmsa_prep (required)"),
    F(train, mm_train_config, run_dir, MM_CFG_STRING, "runs/pretrain", 1, 0, "directory for the log, the resolved job and checkpoints"),
    F(train, mm_train_config, seed, MM_CFG_INT64, "1", 0, 9.2e18, "seed of every random draw (init, shuffling, dropout)"),
    F(train, mm_train_config, batch_size, MM_CFG_INT, "256", 2, 1 << 24, "GLOBAL batch: molecules per step over all ranks"),
    F(train, mm_train_config, epochs, MM_CFG_INT, "1", 1, 1 << 20, "passes over the training molecules"),
    F(train, mm_train_config, max_steps, MM_CFG_INT64, "0", 0, 9.2e18, "stop after this many steps (0: run all epochs)"),
    FE(train, mm_train_config, optimizer, "adamw", "adamw|sgd", "optimiser"),
    F(train, mm_train_config, lr, MM_CFG_FLOAT, "1e-3", 0, 10, "peak learning rate"),
    F(train, mm_train_config, lr_min, MM_CFG_FLOAT, "1e-5", 0, 10, "learning rate at the end of the cosine decay"),
    F(train, mm_train_config, warmup_steps, MM_CFG_INT64, "100", 0, 9.2e18, "linear warm-up steps"),
    F(train, mm_train_config, weight_decay, MM_CFG_FLOAT, "0.01", 0, 10, "decoupled weight decay (matrices only)"),
    F(train, mm_train_config, beta1, MM_CFG_FLOAT, "0.9", 0, 0.999999, "AdamW beta1"),
    F(train, mm_train_config, beta2, MM_CFG_FLOAT, "0.999", 0, 0.999999, "AdamW beta2"),
    F(train, mm_train_config, adam_eps, MM_CFG_FLOAT, "1e-8", 1e-12, 1, "AdamW epsilon"),
    F(train, mm_train_config, momentum, MM_CFG_FLOAT, "0.9", 0, 0.999999, "SGD momentum"),
    F(train, mm_train_config, grad_clip, MM_CFG_FLOAT, "1.0", 0, 1e9, "clip the global gradient norm to this (0: off)"),
    F(train, mm_train_config, log_every, MM_CFG_INT, "10", 1, 1 << 30, "write a JSON line to run_dir/log.jsonl every N steps"),
    F(train, mm_train_config, progress, MM_CFG_BOOL, "true", 1, 0, "progress line with ETA on rank 0"),
    FE(train, mm_train_config, precision, "fp32", "fp32|bf16",
       "the layers' products (Linear, convolution): fp32, or bf16 = bfloat16 inputs with float32 accumulation on Intel AMX tiles (an error without AMX-BF16); losses, kNN, memory bank and optimiser stay float32"),
    F(train, mm_train_config, holdout, MM_CFG_INT64, "0", 0, 9.2e18, "last N molecules of the dataset are held out of training"),

    F(checkpoint, mm_checkpoint_config, every, MM_CFG_INT64, "500", 0, 9.2e18, "write a checkpoint every N steps (0: only at the end)"),
    F(checkpoint, mm_checkpoint_config, keep, MM_CFG_INT, "3", 1, 1000, "keep the last K checkpoints"),
    F(checkpoint, mm_checkpoint_config, resume, MM_CFG_BOOL, "true", 1, 0, "resume from the latest checkpoint in run_dir if there is one"),

    FE(dist, mm_dist_config, knn_backend, "allgather", "allgather|ring|scalapack", "distributed kNN algorithm"),
    F(dist, mm_dist_config, bucket_mb, MM_CFG_FLOAT, "4", 0.01, 4096, "gradient allreduce bucket size in MiB"),
    F(dist, mm_dist_config, blis_threads, MM_CFG_INT, "1", 1, 256, "BLIS threads per rank"),

    FE(spectrum, mm_spectrum_config, kind, "nmr13c", "nmr13c|nmr1h", "which spectrum the autoencoder learns"),
    F(spectrum, mm_spectrum_config, nmr13c_min, MM_CFG_FLOAT, "-50", -1e4, 1e4, "13C grid: first bin edge, ppm"),
    F(spectrum, mm_spectrum_config, nmr13c_max, MM_CFG_FLOAT, "350", -1e4, 1e4, "13C grid: last bin edge, ppm"),
    F(spectrum, mm_spectrum_config, nmr13c_step, MM_CFG_FLOAT, "0.1", 1e-4, 1e3, "13C grid: bin width, ppm"),
    F(spectrum, mm_spectrum_config, nmr13c_sigma, MM_CFG_FLOAT, "0.5", 1e-4, 1e3, "13C peak: Gaussian standard deviation, ppm"),
    F(spectrum, mm_spectrum_config, nmr1h_min, MM_CFG_FLOAT, "0", -1e4, 1e4, "1H grid: first bin edge, ppm"),
    F(spectrum, mm_spectrum_config, nmr1h_max, MM_CFG_FLOAT, "12", -1e4, 1e4, "1H grid: last bin edge, ppm"),
    F(spectrum, mm_spectrum_config, nmr1h_step, MM_CFG_FLOAT, "0.01", 1e-5, 1e3, "1H grid: bin width, ppm"),
    F(spectrum, mm_spectrum_config, nmr1h_sigma, MM_CFG_FLOAT, "0.05", 1e-5, 1e3, "1H peak: Gaussian standard deviation, ppm"),
    F(spectrum, mm_spectrum_config, channels, MM_CFG_INT_LIST, "[16, 32, 64, 128, 128, 256]", 1, 4096,
      "channels of the stride-2 conv + BatchNorm + ReLU stages of the 1-D CNN"),
    F(spectrum, mm_spectrum_config, kernel, MM_CFG_INT, "5", 1, 63, "1-D kernel width in bins (odd: centred, padding kernel / 2)"),
    F(spectrum, mm_spectrum_config, embed_dim, MM_CFG_INT, "256", 2, 65536, "width of the spectrum embedding (the teacher's output)"),
    F(spectrum, mm_spectrum_config, decoder_hidden, MM_CFG_INT, "512", 1, 65536, "hidden width of the reconstruction decoder"),

    FE(acml, mm_acml_config, teacher, "image", "image|conformer|fingerprint|nmr13c|nmr1h|all",
      "frozen teacher modality; all: every teacher available, one loss each, summed"),
    F(acml, mm_acml_config, teacher_init, MM_CFG_STRING, "", 1, 0,
      "checkpoint of the teacher: an mmsa_pretrain step_*.h5 (image, conformer, fingerprint, all) or a "
      "spectrum-autoencoder checkpoint (nmr13c, nmr1h)"),
    F(acml, mm_acml_config, nmr13c_init, MM_CFG_STRING, "", 1, 0, "teacher all: 13C spectrum-autoencoder checkpoint (empty: none)"),
    F(acml, mm_acml_config, nmr1h_init, MM_CFG_STRING, "", 1, 0, "teacher all: 1H spectrum-autoencoder checkpoint (empty: none)"),
    F(acml, mm_acml_config, head_widths, MM_CFG_INT_LIST, "[512, 512]", 1, 65536, "widths of the projection-head cells (both towers)"),
    F(acml, mm_acml_config, head_dropout, MM_CFG_FLOAT, "0.1", 0, 0.95, "dropout inside each head cell"),
    F(acml, mm_acml_config, tau, MM_CFG_FLOAT, "1.0", 1e-4, 100, "temperature of the soft-target CLIP loss"),
    F(acml, mm_acml_config, cache_teachers, MM_CFG_BOOL, "true", 1, 0,
      "compute the frozen teachers' outputs once per dataset into run_dir/teachers/ (false: every step)"),
    FE(acml, mm_acml_config, teacher_norm, "none", "none|standardize",
      "the frozen teacher's outputs enter its head as they are (DESIGN 3b), or standardised per dimension with the "
      "mean and standard deviation over the training molecules (needed by the spectrum teachers: configs/acml_nmr13c.yaml)"),
    F(acml, mm_acml_config, holdout_fraction, MM_CFG_FLOAT, "0.1", 0, 0.9,
      "share of the molecules held out by a scaffold split (run_dir/split.json) for mmsa_eval"),
};

static const char *const section_docs[] = {
    "model", "Model sizes (DESIGN.md section 3). Widths of a checkpoint must match to resume.",
    "loss", "Objective: L = w_align L_align + w_rec L_rec + w_hg L_hg + w_mem L_mem.",
    "train", "Data, optimiser and schedule.",
    "checkpoint", "Checkpoints in run_dir/checkpoints (HDF5, written atomically).",
    "dist", "Distribution across MPI ranks.",
    "spectrum", "NMR spectrum autoencoder (model.objective: spectrum_autoencoder; include/mmsa/spectrum.h).",
    "acml", "ACML (model.objective acml, DESIGN.md section 3b): the teacher, the heads and the loss.",
    NULL, NULL,
};

const mm_cfg_schema mm_job_schema = {"mmsa_pretrain job", fields, (int)(sizeof fields / sizeof fields[0]), section_docs};

mm_status mm_job_load(const char *path, mm_job *job)
{
    MM_CALL(mm_cfg_load_file(&mm_job_schema, path, job));
    MM_CALL(mm_job_validate(job));
    return MM_OK;
}

mm_status mm_job_validate(const mm_job *job)
{
    /* the hypergraph's neighbours are MMSA's; the spectrum autoencoder has none */
    if (job->model.objective == MM_OBJ_MMSA && job->loss.knn_k >= job->train.batch_size)
        return MM_ERR(MM_ERR_CONFIG, "loss.knn_k (%d) must be smaller than train.batch_size (%d)", job->loss.knn_k,
                      job->train.batch_size);
    if (job->train.lr_min > job->train.lr)
        return MM_ERR(MM_ERR_CONFIG, "train.lr_min (%g) is larger than train.lr (%g)", (double)job->train.lr_min,
                      (double)job->train.lr);
    if (job->model.n_cnn_channels < 1)
        return MM_ERR(MM_ERR_CONFIG, "model.cnn_channels needs at least one stage");
    if ((job->model.image_size >> job->model.n_cnn_channels) < 1)
        return MM_ERR(MM_ERR_CONFIG, "model.image_size %d is too small for %d stride-2 stages", job->model.image_size,
                      job->model.n_cnn_channels);
    if (job->model.objective == MM_OBJ_SPECTRUM_AE) MM_CALL(mm_spectrum_config_validate(&job->spectrum));
    return MM_OK;
}
