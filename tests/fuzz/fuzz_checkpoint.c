/* fuzz_checkpoint: the checkpoint loader (checkpoint.h) on mutated checkpoint files:
 * mm_ckpt_read into a model built from the tiny job below (parameters, AdamW state,
 * BatchNorm buffers, memory bank, scalars), mm_ckpt_load_params and mm_ckpt_load_buffers
 * as fine-tuning calls them, and mm_ckpt_latest on a `latest` pointer holding the
 * input's first bytes. The seeds are checkpoints of a 3-step mmsa_pretrain run of this
 * job (tests/README.md says how to make them again). Property (checkpoint.h): a corrupt,
 * truncated or foreign file is MM_ERR_IO or MM_ERR_FORMAT with a message naming the
 * file, never a crash; the model's allocations stay valid after a failed read; no HDF5
 * object is left open. */
#include <stdbool.h>

#include <hdf5.h>

#include "fuzz_common.h"
#include "mmsa/checkpoint.h"
#include "mmsa/dist.h"
#include "mmsa/job.h"
#include "mmsa/model.h"

static const char job_yaml[] =
    "model:\n"
    "  embed_dim: 8\n"
    "  proj_hidden: 8\n"
    "  proj_dim: 4\n"
    "  gin_layers: 1\n"
    "  gin_hidden: 8\n"
    "  schnet_hidden: 8\n"
    "  schnet_filters: 8\n"
    "  schnet_interactions: 1\n"
    "  schnet_n_rbf: 8\n"
    "  cnn_channels: [4]\n"
    "  fp_hidden: 4\n"
    "  fp_bits: 16\n"
    "  gate_att_dim: 8\n"
    "  decoder_hidden: 8\n"
    "  hg_hidden: 8\n"
    "  use_image: false\n"
    "  use_fingerprint: false\n"
    "loss:\n"
    "  knn_k: 2\n"
    "  n_anchors: 4\n"
    "train:\n"
    "  dataset: unused.h5\n"
    "  run_dir: unused\n"
    "  seed: 3\n"
    "  batch_size: 4\n"
    "  epochs: 1\n"
    "  log_every: 1\n"
    "checkpoint:\n"
    "  every: 2\n"
    "  keep: 2\n"
;

static mm_job job;
static mm_dist dist;
static mm_model model;
static mm_optimizer opt;
static mm_memory_bank bank;

static void done(void)
{
    mm_bank_destroy(&bank);
    mm_optim_destroy(&opt);
    mm_model_destroy(&model);
    mm_dist_destroy(&dist);
}

static void must(mm_status st)
{
    if (st != MM_OK) {
        mm_error_print(stderr, -1);
        abort();
    }
}

/* Full malloc stacks: libhdf5 has no frame pointers, so the fast unwinder stops at its
 * first frame and the suppressions of HDF5's own leaks on corrupt metadata (lsan.supp)
 * could not match; every such leak would end a job. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_init();
    must(mm_cfg_load_string(&mm_job_schema, "fuzz_checkpoint job", job_yaml, &job));
    must(mm_dist_init(&dist, MPI_COMM_WORLD));
    must(mm_model_init(&model, &job.model, &job.loss, (uint64_t)job.train.seed));
    const mm_train_config *T = &job.train;
    must(mm_optim_adamw(&opt, &model.params, T->beta1, T->beta2, T->adam_eps, T->weight_decay));
    must(mm_bank_init(&bank, &dist, job.loss.n_anchors, job.model.embed_dim, (uint64_t)T->seed, job.loss.tau_mem,
                      job.loss.mem_momentum, job.loss.mem_reseed_after));
    atexit(done);
    return 0;
}

static void expect_file_error(mm_status st)
{
    if (st != MM_OK && st != MM_ERR_IO && st != MM_ERR_FORMAT) mm_error_print(stderr, -1);
    FUZZ_ASSERT(st == MM_OK || st == MM_ERR_IO || st == MM_ERR_FORMAT);
    if (st != MM_OK) FUZZ_ASSERT(mm_error_message()[0] != '\0');
    mm_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(data, size, ".h5");
    mm_ckpt_state s;
    memset(&s, 0, sizeof s);
    s.params = &model.params;
    s.opt = &opt;
    s.buffers = model.buffers;
    s.n_buffers = model.n_buffers;
    s.bank = &bank;
    mm_status st = mm_ckpt_read(path, &dist, &s);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "mm_ckpt_read: %s\n", st ? mm_error_message() : "ok");
    expect_file_error(st);
    int loaded = -1;
    st = mm_ckpt_load_params(path, MPI_COMM_SELF, &model.params, "enc.graph.", &loaded);
    expect_file_error(st);
    if (st == MM_OK) FUZZ_ASSERT(loaded >= 0 && loaded <= model.params.count);
    int64_t bn = -1;
    expect_file_error(mm_ckpt_load_buffers(path, MPI_COMM_SELF, model.buffers, model.n_buffers, &bn));

    /* `latest`: the first bytes of the input as its text. */
    char dir[320], latest[340], found_path[512];
    snprintf(dir, sizeof dir, "%s", fuzz_path("-ckpt"));
    mkdir(dir, 0700);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *f = fopen(latest, "wb");
    if (!f) abort();
    fwrite(data, 1, size < 64 ? size : 64, f);
    fclose(f);
    bool found = false;
    st = mm_ckpt_latest(dir, found_path, sizeof found_path, &found);
    if (st != MM_OK && st != MM_ERR_FORMAT && st != MM_ERR_IO && st != MM_ERR_ARG) mm_error_print(stderr, -1);
    FUZZ_ASSERT(st == MM_OK || st == MM_ERR_FORMAT || st == MM_ERR_IO || st == MM_ERR_ARG);
    if (st == MM_OK && found) FUZZ_ASSERT(strncmp(found_path, dir, strlen(dir)) == 0);
    mm_error_clear();
    /* Every HDF5 object the reader opened is closed again, also on the error paths. */
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) fprintf(stderr, "%zd HDF5 objects left open\n", open_ids);
    FUZZ_ASSERT(open_ids == 0);
    return 0;
}
