/* train.c: the ACML training loop (acml.h; DESIGN.md section 3b). Frozen teachers'
 * outputs (cached once per dataset, or computed every step), the student GIN and the two
 * heads of every teacher, the soft-target CLIP loss split by rows over the global batch. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmsa/blas.h"
#include "mmsa/acml.h"
#include "mmsa/checkpoint.h"
#include "mmsa/finetune.h"
#include "mmsa/fs.h"
#include "mmsa/index_ops.h"
#include "mmsa/ops.h"
#include "mmsa/rng.h"
#include "mmsa/run.h"

#define ACML_CHUNK 256
/* dropout streams of the heads: one per (step, teacher, tower) */
#define HEAD_STREAM(step, k, tower) ((uint64_t)MM_STREAM_USER + 1024u + ((uint64_t)(step) * MM_N_TEACHERS + (uint64_t)(k)) * 2u + (tower))

/* ---------------------------------------------------------------- teachers' outputs */

/* Cache file: run_dir/teachers/<name>.h5, /out float32 [N, dim], /ok uint8 [N], and the
 * attributes that say what it was computed from; a file whose key differs is recomputed. */
static void cache_key(const mm_acml_trainer *tr, int k, char *key, size_t n)
{
    const mm_dataset_info *info = mm_dataset_get_info(tr->ds);
    struct stat sd, sc;
    memset(&sd, 0, sizeof sd);
    memset(&sc, 0, sizeof sc);
    stat(tr->job.train.dataset, &sd);
    stat(tr->teacher[k].init, &sc);
    snprintf(key, n, "teacher=%s init=%s size=%lld mtime=%lld dataset=%s n=%lld sha=%s size=%lld mtime=%lld",
             mm_teacher_names[tr->teacher[k].kind], tr->teacher[k].init, (long long)sc.st_size, (long long)sc.st_mtime,
             tr->job.train.dataset, (long long)info->n_molecules, info->source_sha256, (long long)sd.st_size,
             (long long)sd.st_mtime);
}

static void cache_path(const mm_acml_trainer *tr, int k, char *path, size_t n)
{
    snprintf(path, n, "%s/teachers/%s.h5", tr->job.train.run_dir, mm_teacher_names[tr->teacher[k].kind]);
}

/* true when the file exists with the same key; then out/ok are filled */
static bool cache_read(mm_acml_trainer *tr, int k, float *out, uint8_t *ok)
{
    char path[1200], key[2048], have[2048];
    cache_path(tr, k, path, sizeof path);
    cache_key(tr, k, key, sizeof key);
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    bool good = false;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        hid_t a = H5Aopen(f, "key", H5P_DEFAULT), ty = a >= 0 ? H5Aget_type(a) : -1;
        if (ty >= 0 && H5Tget_size(ty) < sizeof have) {
            memset(have, 0, sizeof have);
            good = H5Aread(a, ty, have) >= 0 && !strcmp(have, key);
        }
        if (ty >= 0) H5Tclose(ty);
        if (a >= 0) H5Aclose(a);
        int64_t N = tr->n_molecules, D = tr->teacher[k].dim;
        hid_t d1 = good ? H5Dopen2(f, "out", H5P_DEFAULT) : -1, d2 = good ? H5Dopen2(f, "ok", H5P_DEFAULT) : -1;
        if (d1 >= 0 && d2 >= 0) {
            hid_t s1 = H5Dget_space(d1);
            hsize_t dims[2] = {0, 0};
            good = H5Sget_simple_extent_ndims(s1) == 2 && H5Sget_simple_extent_dims(s1, dims, NULL) == 2 &&
                   dims[0] == (hsize_t)N && dims[1] == (hsize_t)D &&
                   H5Dread(d1, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0 &&
                   H5Dread(d2, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ok) >= 0;
            H5Sclose(s1);
        } else {
            good = false;
        }
        if (d1 >= 0) H5Dclose(d1);
        if (d2 >= 0) H5Dclose(d2);
        H5Fclose(f);
    }
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    return good;
}

/* rank 0: written to a temporary name, renamed when complete */
static mm_status cache_write(mm_acml_trainer *tr, int k, const float *out, const uint8_t *ok)
{
    char path[1200], tmp[1300], dir[1200], key[2048];
    snprintf(dir, sizeof dir, "%s/teachers", tr->job.train.run_dir);
    MM_CALL(mm_mkdir_p(dir, "teacher cache directory"));
    cache_path(tr, k, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cache_key(tr, k, key, sizeof key);
    int64_t N = tr->n_molecules, D = tr->teacher[k].dim;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return MM_ERR(MM_ERR_IO, "cannot create the teacher cache %s", tmp);
    bool good = true;
    hsize_t d2[2] = {(hsize_t)N, (hsize_t)D}, d1[1] = {(hsize_t)N};
    hid_t s2 = H5Screate_simple(2, d2, NULL), s1 = H5Screate_simple(1, d1, NULL), sa = H5Screate(H5S_SCALAR);
    hid_t x = H5Dcreate2(f, "out", H5T_IEEE_F32LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    good = good && x >= 0 && H5Dwrite(x, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    if (x >= 0) H5Dclose(x);
    x = H5Dcreate2(f, "ok", H5T_STD_U8LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    good = good && x >= 0 && H5Dwrite(x, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ok) >= 0;
    if (x >= 0) H5Dclose(x);
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(key) + 1);
    hid_t a = H5Acreate2(f, "key", ty, sa, H5P_DEFAULT, H5P_DEFAULT);
    good = good && a >= 0 && H5Awrite(a, ty, key) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Tclose(ty);
    H5Sclose(s2);
    H5Sclose(s1);
    H5Sclose(sa);
    good = H5Fclose(f) >= 0 && good;
    if (!good || rename(tmp, path) != 0) {
        remove(tmp);
        return MM_ERR(MM_ERR_IO, "cannot write the teacher cache %s", path);
    }
    return MM_OK;
}

/* Every rank computes a contiguous block of the dataset (outputs, or only the ok flags
 * when encode is false), then every rank receives all of it. Reads are collective: every
 * rank runs the same number of chunks. */
static mm_status teacher_pass(mm_acml_trainer *tr, int k, bool encode, float *out, uint8_t *ok)
{
    mm_acml_teacher *te = &tr->teacher[k];
    mm_dist *d = tr->d;
    int64_t N = tr->n_molecules, D = te->dim, my0, mine;
    mm_dist_block(N, d->size, d->rank, &my0, &mine);
    int64_t most = N / d->size + (N % d->size ? 1 : 0);
    size_t ob = (size_t)((mine ? mine : 1) * D) * sizeof(float);
    float *lo = mm_calloc(1, ob);
    uint8_t *lk = mm_calloc((size_t)(mine ? mine : 1), 1);
    int64_t *counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    mm_status st = lo && lk && counts ? MM_OK : MM_ERR(MM_ERR_NOMEM, "teacher %s outputs", mm_teacher_names[te->kind]);
    double t0 = mm_run_now();
    for (int64_t c0 = 0; st == MM_OK && c0 < most; c0 += ACML_CHUNK) {
        int64_t cn = mine - c0 < ACML_CHUNK ? mine - c0 : ACML_CHUNK;
        if (cn < 0) cn = 0;
        int64_t first = my0 + (cn > 0 ? c0 : 0);
        st = mm_dataset_read_range(tr->ds, first, first + cn, te->modality, &tr->ms);
        if (st != MM_OK || cn == 0) continue;
        if (encode) {
            st = mm_acml_teacher_encode(te, &tr->tape, &tr->ms, lo + c0 * D, lk + c0);
        } else {
            for (int64_t i = 0; i < cn; i++)
                lk[c0 + i] = te->kind == MM_TEACHER_CONFORMER ? tr->ms.conf_ok[i]
                             : te->kind == MM_TEACHER_NMR13C  ? tr->ms.nmr[MM_NMR_13C].ok[i]
                             : te->kind == MM_TEACHER_NMR1H   ? tr->ms.nmr[MM_NMR_1H].ok[i]
                                                              : 1;
        }
        if (encode && d->rank == 0 && !tr->quiet && tr->job.train.progress && (c0 / ACML_CHUNK) % 20 == 19)
            fprintf(stderr, "teacher %s: %lld/%lld molecules on rank 0 (%.0f s)\n", mm_teacher_names[te->kind],
                    (long long)(c0 + cn), (long long)mine, mm_run_now() - t0);
    }
    st = mm_dist_agree(d, st);
    for (int r = 0; st == MM_OK && r < d->size; r++) {
        int64_t s0;
        mm_dist_block(N, d->size, r, &s0, &counts[r]);
    }
    if (st == MM_OK) st = mm_dist_allgather_bytes(d, lk, 1, counts, ok);
    if (st == MM_OK && encode) st = mm_dist_allgather_bytes(d, lo, (size_t)D * sizeof(float), counts, out);
    mm_free_sized(lo, ob);
    mm_free_sized(lk, (size_t)(mine ? mine : 1));
    mm_free_sized(counts, (size_t)d->size * sizeof(int64_t));
    return st;
}

static mm_status teacher_outputs(mm_acml_trainer *tr, int k)
{
    mm_dist *d = tr->d;
    int64_t N = tr->n_molecules, D = tr->teacher[k].dim;
    tr->t_ok[k] = mm_calloc((size_t)N, 1);
    if (!tr->t_ok[k]) return MM_ERR(MM_ERR_NOMEM, "teacher flags");
    if (!tr->job.acml.cache_teachers) return teacher_pass(tr, k, false, NULL, tr->t_ok[k]);
    tr->t_out[k] = mm_malloc((size_t)(N * D) * sizeof(float));
    if (!tr->t_out[k]) return MM_ERR(MM_ERR_NOMEM, "teacher cache of %lld x %lld floats", (long long)N, (long long)D);
    int hit = cache_read(tr, k, tr->t_out[k], tr->t_ok[k]);
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, &hit, 1, MPI_INT, MPI_MIN, d->comm));
    if (hit) {
        if (d->rank == 0 && !tr->quiet && tr->job.train.progress)
            fprintf(stderr, "teacher %s: outputs from the cache in %s/teachers\n", mm_teacher_names[tr->teacher[k].kind],
                    tr->job.train.run_dir);
        return MM_OK;
    }
    double t0 = mm_run_now();
    MM_CALL(teacher_pass(tr, k, true, tr->t_out[k], tr->t_ok[k]));
    mm_status st = d->rank == 0 ? cache_write(tr, k, tr->t_out[k], tr->t_ok[k]) : MM_OK;
    MM_CALL(mm_dist_agree(d, st));
    if (d->rank == 0 && !tr->quiet && tr->job.train.progress)
        fprintf(stderr, "teacher %s: %lld molecules encoded in %.1f s, cached in %s/teachers\n",
                mm_teacher_names[tr->teacher[k].kind], (long long)N, mm_run_now() - t0, tr->job.train.run_dir);
    return MM_OK;
}

static mm_status teacher_stats(mm_acml_trainer *tr, int k);

/* ---------------------------------------------------------------- set-up */

static mm_status declare_heads(mm_params *p, void *ctx)
{
    mm_acml_trainer *tr = ctx;
    const mm_acml_config *A = &tr->job.acml;
    int64_t w[MM_ACML_MAX_CELLS];
    if (A->n_head_widths > MM_ACML_MAX_CELLS)
        return MM_ERR(MM_ERR_CONFIG, "acml.head_widths: at most %d cells", MM_ACML_MAX_CELLS);
    for (int c = 0; c < A->n_head_widths; c++) w[c] = A->head_widths[c];
    for (int k = 0; k < tr->n_teachers; k++) {
        char pre[64];
        snprintf(pre, sizeof pre, "acml.%s.teacher", mm_teacher_names[tr->teacher[k].kind]);
        MM_CALL(mm_acml_head_declare(p, pre, tr->teacher[k].dim, w, A->n_head_widths, &tr->head_t[k]));
        snprintf(pre, sizeof pre, "acml.%s.graph", mm_teacher_names[tr->teacher[k].kind]);
        MM_CALL(mm_acml_head_declare(p, pre, tr->job.model.embed_dim, w, A->n_head_widths, &tr->head_g[k]));
    }
    return MM_OK;
}

/* The student (graph encoder at the job's sizes) and the heads, initialised from seed. */
mm_status mm_acml_build_student(mm_acml_trainer *tr, mm_model *m)
{
    mm_model_config c = tr->job.model;
    c.use_conformer = c.use_image = c.use_fingerprint = false;
    uint64_t seed = (uint64_t)tr->job.train.seed;
    MM_CALL(mm_model_init_graph(m, &c, seed, declare_heads, tr));
    for (int k = 0; k < tr->n_teachers; k++) {
        mm_acml_head_init(&m->params, &tr->head_t[k], seed + 101u * (uint64_t)(2 * k + 1));
        mm_acml_head_init(&m->params, &tr->head_g[k], seed + 101u * (uint64_t)(2 * k + 2));
    }
    return MM_OK;
}

/* Which teachers, from which checkpoints; each must have its modality in the dataset. */
static mm_status load_teachers(mm_acml_trainer *tr)
{
    const mm_acml_config *A = &tr->job.acml;
    unsigned have = mm_dataset_get_info(tr->ds)->modalities;
    static const unsigned bit[MM_N_TEACHERS] = {MM_MOD_IMAGE, MM_MOD_CONFORMER, MM_MOD_FINGERPRINT, MM_MOD_NMR13C,
                                                MM_MOD_NMR1H};
    for (int kind = 0; kind < MM_N_TEACHERS; kind++) {
        const char *init = kind == MM_TEACHER_NMR13C && A->teacher == MM_TEACHER_ALL ? A->nmr13c_init
                           : kind == MM_TEACHER_NMR1H && A->teacher == MM_TEACHER_ALL ? A->nmr1h_init
                                                                                       : A->teacher_init;
        if (A->teacher != MM_TEACHER_ALL && A->teacher != kind) continue;
        if (A->teacher == MM_TEACHER_ALL && (!(have & bit[kind]) || !init[0])) continue;
        if (!(have & bit[kind])) {
            mm_status st = MM_ERR(MM_ERR_CONFIG, "acml.teacher is %s but %s has no %s data", mm_teacher_names[kind],
                                  tr->job.train.dataset, mm_teacher_names[kind]);
            mm_error_hint("prepare the dataset with that modality (mmsa_prep), or choose another teacher");
            return st;
        }
        MM_CALL(mm_acml_teacher_load(&tr->teacher[tr->n_teachers], kind, init));
        tr->n_teachers++;
    }
    if (tr->n_teachers == 0) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "acml.teacher all: no teacher is available (the dataset %s and the "
                              "checkpoints in acml.teacher_init / nmr13c_init / nmr1h_init have none in common)",
                              tr->job.train.dataset);
        mm_error_hint("set acml.teacher_init to an mmsa_pretrain checkpoint, or the NMR keys to spectrum autoencoders");
        return st;
    }
    return MM_OK;
}

/* Scaffold split of the molecules that have at least one teacher's modality: the held-out
 * share (acml.holdout_fraction) is written to run_dir/split.json (indices are dataset rows). */
static mm_status split_molecules(mm_acml_trainer *tr)
{
    mm_dist *d = tr->d;
    int64_t N = tr->n_molecules, M = 0;
    int64_t *elig = mm_malloc((size_t)(N ? N : 1) * sizeof(int64_t));
    char **scaf = mm_calloc((size_t)(N ? N : 1), sizeof(char *));
    int64_t *rows = mm_malloc((size_t)(N ? N : 1) * sizeof(int64_t));
    mm_status st = elig && scaf && rows ? MM_OK : MM_ERR(MM_ERR_NOMEM, "split of %lld molecules", (long long)N);
    for (int64_t i = 0; st == MM_OK && i < N; i++) {
        bool any = false;
        for (int k = 0; k < tr->n_teachers; k++) any = any || tr->t_ok[k][i];
        if (any) elig[M++] = i;
    }
    bool has_scaf = (mm_dataset_get_info(tr->ds)->modalities & MM_MOD_SCAFFOLD) != 0;
    float f = tr->job.acml.holdout_fraction;
    if (st == MM_OK && f > 0 && !has_scaf) {
        st = MM_ERR(MM_ERR_CONFIG, "%s has no /scaffold strings, which the held-out scaffold split needs",
                    tr->job.train.dataset);
        mm_error_hint("prepare the dataset with scaffolds (mmsa_prep features.scaffold), or set acml.holdout_fraction 0");
    }
    /* every rank reads every scaffold (collective reads of the same ranges) */
    int64_t j = 0;
    for (int64_t c0 = 0; st == MM_OK && f > 0 && c0 < N; c0 += 4096) {
        int64_t c1 = c0 + 4096 < N ? c0 + 4096 : N;
        st = mm_dataset_read_range(tr->ds, c0, c1, MM_MOD_SCAFFOLD, &tr->ms);
        for (int64_t i = c0; st == MM_OK && i < c1; i++) {
            rows[i] = tr->ms.source_row[i - c0];
            if (j < M && elig[j] == i) {
                scaf[j] = strdup(mm_strings_get(&tr->ms.scaffold, i - c0));
                if (!scaf[j]) st = MM_ERR(MM_ERR_NOMEM, "scaffold strings");
                j++;
            }
        }
    }
    mm_split sp;
    memset(&sp, 0, sizeof sp);
    if (st == MM_OK && f > 0) st = mm_split_scaffold((const char *const *)scaf, M, 1.0 - f, 0.0, MM_SCAFFOLD_DEEPCHEM, &sp);
    if (st == MM_OK) {
        tr->n_train = f > 0 ? sp.n[MM_SPLIT_TRAIN] : M;
        tr->n_held = f > 0 ? sp.n[MM_SPLIT_TEST] : 0;
        tr->train_idx = mm_malloc((size_t)(tr->n_train ? tr->n_train : 1) * sizeof(int64_t));
        tr->held_idx = mm_malloc((size_t)(tr->n_held ? tr->n_held : 1) * sizeof(int64_t));
        if (!tr->train_idx || !tr->held_idx) st = MM_ERR(MM_ERR_NOMEM, "split indices");
    }
    if (st == MM_OK) {
        for (int64_t i = 0; i < tr->n_train; i++) tr->train_idx[i] = f > 0 ? elig[sp.idx[MM_SPLIT_TRAIN][i]] : elig[i];
        for (int64_t i = 0; i < tr->n_held; i++) tr->held_idx[i] = elig[sp.idx[MM_SPLIT_TEST][i]];
        /* the split in dataset rows, for mmsa_eval and the reader */
        for (int64_t i = 0; f > 0 && i < sp.n[MM_SPLIT_TRAIN]; i++) sp.idx[MM_SPLIT_TRAIN][i] = tr->train_idx[i];
        for (int64_t i = 0; f > 0 && i < sp.n[MM_SPLIT_TEST]; i++) sp.idx[MM_SPLIT_TEST][i] = tr->held_idx[i];
        char path[1200];
        snprintf(path, sizeof path, "%s/split.json", tr->job.train.run_dir);
        if (f > 0 && d->rank == 0) st = mm_split_write_json(&sp, "scaffold (acml)", rows, N, path);
    }
    for (int64_t i = 0; scaf && i < M; i++) free(scaf[i]);
    mm_free_sized(scaf, (size_t)(N ? N : 1) * sizeof(char *));
    mm_free_sized(elig, (size_t)(N ? N : 1) * sizeof(int64_t));
    mm_free_sized(rows, (size_t)(N ? N : 1) * sizeof(int64_t));
    mm_split_free(&sp);
    return mm_dist_agree(d, st);
}

static mm_ckpt_state ckpt_state(mm_acml_trainer *tr)
{
    return mm_run_ckpt_state(&tr->job, tr->job_text, tr->step, tr->steps_per_epoch, &tr->student.params, &tr->opt,
                             tr->student.buffers, tr->student.n_buffers, tr->student.bn_batches);
}

static mm_status open_run(mm_acml_trainer *tr)
{
    const mm_train_config *T = &tr->job.train;
    mm_dist *d = tr->d;
    if (!T->dataset[0]) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "train.dataset is not set");
        mm_error_hint("point train.dataset at a file written by mmsa_prep");
        return st;
    }
    if (T->batch_size < d->size)
        return MM_ERR(MM_ERR_CONFIG, "train.batch_size (%d) is smaller than the number of ranks (%d)", T->batch_size,
                      d->size);
    MM_CALL(mm_run_job_text(&tr->job, &tr->job_text));
    MM_CALL(mm_dataset_open(T->dataset, d->comm, &tr->ds));
    tr->n_molecules = mm_dataset_get_info(tr->ds)->n_molecules;
    return MM_OK;
}

mm_status mm_acml_trainer_init(mm_acml_trainer *tr, const mm_job *job, mm_dist *d)
{
    memset(tr, 0, sizeof *tr);
    tr->job = *job;
    tr->d = d;
    tr->perm_epoch = -1;
    const mm_train_config *T = &job->train;
    MM_CALL(mm_blas_set_precision(T->precision));
    MM_CALL(mm_dist_agree(d, open_run(tr)));
    MM_CALL(mm_run_checkpoint_dir(T->run_dir, d, tr->ckpt_dir, sizeof tr->ckpt_dir));
    MM_CALL(mm_tape_init(&tr->tape, 64u << 20));
    MM_CALL(mm_dist_agree(d, load_teachers(tr)));
    for (int k = 0; k < tr->n_teachers; k++) MM_CALL(teacher_outputs(tr, k));
    MM_CALL(split_molecules(tr));
    for (int k = 0; k < tr->n_teachers && job->acml.teacher_norm == 1; k++) MM_CALL(teacher_stats(tr, k));
    tr->steps_per_epoch = tr->n_train / T->batch_size;
    if (tr->steps_per_epoch == 0)
        return mm_dist_agree(d, MM_ERR(MM_ERR_CONFIG,
                                       "%s has %lld training molecules with a teacher's modality, fewer than one batch "
                                       "(train.batch_size %d)",
                                       T->dataset, (long long)tr->n_train, T->batch_size));
    tr->total_steps = T->max_steps > 0 ? T->max_steps : (int64_t)T->epochs * tr->steps_per_epoch;
    tr->sched = (mm_schedule){T->lr, T->lr_min, T->warmup_steps, tr->total_steps};
    MM_CALL(mm_acml_build_student(tr, &tr->student));
    if (T->optimizer == MM_OPTIMIZER_ADAMW)
        MM_CALL(mm_optim_adamw(&tr->opt, &tr->student.params, T->beta1, T->beta2, T->adam_eps, T->weight_decay));
    else
        MM_CALL(mm_optim_sgd(&tr->opt, &tr->student.params, T->momentum, false, T->weight_decay));
    MM_CALL(mm_grad_sync_init(&tr->gsync, d, &tr->student.params, (double)job->dist.bucket_mb * 1048576.0));
    tr->perm = mm_malloc((size_t)tr->n_train * sizeof(int64_t));
    tr->counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    tr->batch_idx = mm_malloc((size_t)T->batch_size * sizeof(int64_t));
    if (!tr->perm || !tr->counts || !tr->batch_idx) return MM_ERR(MM_ERR_NOMEM, "trainer index arrays");
    tr->row_cap = 1;
    for (int r = 0; r < d->size; r++) {
        int64_t s0;
        mm_dist_block(T->batch_size, d->size, r, &s0, &tr->counts[r]);
        if (tr->counts[r] > tr->row_cap) tr->row_cap = tr->counts[r];
    }
    for (int k = 0; k < tr->n_teachers; k++) {
        tr->row_out[k] = mm_malloc((size_t)(tr->row_cap * tr->teacher[k].dim) * sizeof(float));
        tr->row_ok[k] = mm_malloc((size_t)tr->row_cap);
        if (!tr->row_out[k] || !tr->row_ok[k])
            return MM_ERR(MM_ERR_NOMEM, "teacher rows of a step (%lld x %lld)", (long long)tr->row_cap,
                          (long long)tr->teacher[k].dim);
    }
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_run_start(tr->ckpt_dir, T->run_dir, tr->job_text, (uint64_t)T->seed, job->checkpoint.resume, d, &s,
                         &tr->step, &tr->student.bn_batches, &tr->log, &tr->clock));
    return MM_OK;
}

void mm_acml_trainer_destroy(mm_acml_trainer *tr)
{
    if (tr->log) fclose(tr->log);
    mm_dataset_close(&tr->ds);
    mm_tape_destroy(&tr->tape);
    mm_grad_sync_destroy(&tr->gsync);
    mm_optim_destroy(&tr->opt);
    mm_model_destroy(&tr->student);
    for (int k = 0; k < tr->n_teachers; k++) {
        int64_t N = tr->n_molecules;
        if (tr->t_out[k]) mm_free_sized(tr->t_out[k], (size_t)(N * tr->teacher[k].dim) * sizeof(float));
        if (tr->t_ok[k]) mm_free_sized(tr->t_ok[k], (size_t)N);
        if (tr->t_mean[k]) mm_free_sized(tr->t_mean[k], (size_t)tr->teacher[k].dim * sizeof(float));
        if (tr->t_inv_sd[k]) mm_free_sized(tr->t_inv_sd[k], (size_t)tr->teacher[k].dim * sizeof(float));
        if (tr->row_out[k]) mm_free_sized(tr->row_out[k], (size_t)(tr->row_cap * tr->teacher[k].dim) * sizeof(float));
        if (tr->row_ok[k]) mm_free_sized(tr->row_ok[k], (size_t)tr->row_cap);
        mm_acml_teacher_free(&tr->teacher[k]);
    }
    mm_molset_free(&tr->ms);
    if (tr->perm) mm_free_sized(tr->perm, (size_t)tr->n_train * sizeof(int64_t));
    if (tr->train_idx) mm_free_sized(tr->train_idx, (size_t)(tr->n_train ? tr->n_train : 1) * sizeof(int64_t));
    if (tr->held_idx) mm_free_sized(tr->held_idx, (size_t)(tr->n_held ? tr->n_held : 1) * sizeof(int64_t));
    if (tr->counts) mm_free_sized(tr->counts, (size_t)tr->d->size * sizeof(int64_t));
    if (tr->batch_idx) mm_free_sized(tr->batch_idx, (size_t)tr->job.train.batch_size * sizeof(int64_t));
    free(tr->job_text);
    memset(tr, 0, sizeof *tr);
}

/* ---------------------------------------------------------------- the step */

static void batch_indices(mm_acml_trainer *tr, int64_t step, int64_t *idx)
{
    mm_run_batches b = {(uint64_t)tr->job.train.seed, tr->n_train, tr->job.train.batch_size, tr->steps_per_epoch,
                        tr->train_idx, tr->perm, tr->perm_epoch};
    mm_run_batch(&b, step, idx);
    tr->perm_epoch = b.perm_epoch;
}

mm_status mm_acml_teacher_rows(mm_acml_trainer *tr, int k, const int64_t *idx, int64_t n, const mm_molset *ms,
                               mm_tape *t, float *out, uint8_t *ok)
{
    int64_t D = tr->teacher[k].dim;
    if (tr->t_out[k]) {
        for (int64_t i = 0; i < n; i++) {
            memcpy(out + i * D, tr->t_out[k] + idx[i] * D, (size_t)D * sizeof(float));
            ok[i] = tr->t_ok[k][idx[i]];
        }
    } else {
        MM_CALL(mm_acml_teacher_encode(&tr->teacher[k], t, ms, out, ok));
    }
    if (tr->t_mean[k])
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; ok[i] && j < D; j++)
                out[i * D + j] = (out[i * D + j] - tr->t_mean[k][j]) * tr->t_inv_sd[k][j];
    return MM_OK;
}

/* acml.teacher_norm standardize: the mean and standard deviation of every output
 * dimension over the training molecules that have the teacher's modality (a
 * deviation below 1e-3 of the largest one counts as that floor). */
static mm_status teacher_stats(mm_acml_trainer *tr, int k)
{
    int64_t N = tr->n_molecules, D = tr->teacher[k].dim;
    const float *all = tr->t_out[k];
    float *tmp = NULL;
    uint8_t *tok = NULL;
    if (!all) {
        /* on the fly: one pass over the dataset for the statistics alone */
        tmp = mm_malloc((size_t)(N * D) * sizeof(float));
        tok = mm_malloc((size_t)(N ? N : 1));
        if (!tmp || !tok) return MM_ERR(MM_ERR_NOMEM, "teacher statistics");
        MM_CALL(teacher_pass(tr, k, true, tmp, tok));
        all = tmp;
    }
    tr->t_mean[k] = mm_calloc((size_t)D, sizeof(float));
    tr->t_inv_sd[k] = mm_calloc((size_t)D, sizeof(float));
    double *sum = mm_calloc((size_t)D, sizeof(double)), *sq = mm_calloc((size_t)D, sizeof(double));
    mm_status st = tr->t_mean[k] && tr->t_inv_sd[k] && sum && sq ? MM_OK : MM_ERR(MM_ERR_NOMEM, "teacher statistics");
    int64_t m = 0;
    for (int64_t i = 0; st == MM_OK && i < tr->n_train; i++) {
        int64_t r = tr->train_idx[i];
        if (!tr->t_ok[k][r]) continue;
        m++;
        for (int64_t j = 0; j < D; j++) {
            double v = all[r * D + j];
            sum[j] += v;
            sq[j] += v * v;
        }
    }
    double mean_sd = 0;
    for (int64_t j = 0; st == MM_OK && j < D; j++) {
        double mu = m ? sum[j] / (double)m : 0, var = m ? sq[j] / (double)m - mu * mu : 0;
        tr->t_mean[k][j] = (float)mu;
        sq[j] = sqrt(fmax(var, 0));
        mean_sd += sq[j] / (double)D;
    }
    for (int64_t j = 0; st == MM_OK && j < D; j++)
        tr->t_inv_sd[k][j] = mean_sd > 0 ? (float)(1.0 / fmax(sq[j], 0.1 * mean_sd)) : 1.0f;
    if (sum) mm_free_sized(sum, (size_t)D * sizeof(double));
    if (sq) mm_free_sized(sq, (size_t)D * sizeof(double));
    if (tmp) mm_free_sized(tmp, (size_t)(N * D) * sizeof(float));
    if (tok) mm_free_sized(tok, (size_t)(N ? N : 1));
    return st;
}

/* One teacher's part of the loss for the molecules of the batch b (local rows, dataset
 * rows idx): the pairs are the molecules with the teacher's modality, counted over the
 * ranks; returns its loss part (NULL when fewer than 2 pairs in the global batch). */
static mm_status teacher_loss(mm_acml_trainer *tr, mm_tape *t, int k, mm_tensor *g, const float *tout,
                              const uint8_t *tok, int64_t n, uint64_t step, bool training, mm_tensor **loss,
                              int64_t *pairs)
{
    mm_dist *d = tr->d;
    int64_t D = tr->teacher[k].dim, m = 0, row0 = 0, total = 0;
    int64_t *sel, *cnt;
    MM_CALL(mm_tape_alloc(t, (size_t)(n ? n : 1) * sizeof(int64_t), (void **)&sel));
    MM_CALL(mm_tape_alloc(t, (size_t)d->size * sizeof(int64_t), (void **)&cnt));
    for (int64_t i = 0; i < n; i++)
        if (tok[i]) sel[m++] = i;
    MM_MPI_CALL(MPI_Allgather(&m, 1, MPI_INT64_T, cnt, 1, MPI_INT64_T, d->comm));
    for (int r = 0; r < d->size; r++) {
        if (r < d->rank) row0 += cnt[r];
        total += cnt[r];
    }
    *pairs = total;
    *loss = NULL;
    if (total < 2) return MM_OK;
    mm_tensor *u, *gs, *U, *G;
    MM_CALL(mm_tensor_new2(t, m, D, false, &u));
    for (int64_t i = 0; i < m; i++) memcpy(u->data + i * D, tout + sel[i] * D, (size_t)D * sizeof(float));
    MM_CALL(mm_gather_rows(t, g, sel, m, &gs));
    float p = training ? tr->job.acml.head_dropout : 0.0f;
    uint64_t seed = (uint64_t)tr->job.train.seed;
    MM_CALL(mm_acml_head_forward(t, &tr->student.params, &tr->head_t[k], u, p, seed, HEAD_STREAM(step, k, 0), row0, &U,
                                 NULL, NULL));
    MM_CALL(mm_acml_head_forward(t, &tr->student.params, &tr->head_g[k], gs, p, seed, HEAD_STREAM(step, k, 1), row0, &G,
                                 NULL, NULL));
    MM_CALL(mm_acml_loss_rows(t, d, U, G, cnt, row0, tr->job.acml.tau, loss, NULL));
    return MM_OK;
}

mm_status mm_acml_trainer_step(mm_acml_trainer *tr, mm_acml_report *rep)
{
    double t0 = mm_run_now();
    mm_dist *d = tr->d;
    int64_t B = tr->job.train.batch_size, start, count;
    batch_indices(tr, tr->step, tr->batch_idx);
    mm_dist_block(B, d->size, d->rank, &start, &count);
    const int64_t *idx = tr->batch_idx + start;
    unsigned mods = 0;
    for (int k = 0; k < tr->n_teachers; k++)
        if (!tr->t_out[k]) mods |= tr->teacher[k].modality;
    mm_tape *t = &tr->tape;
    MM_CALL(mm_dataset_read_indices(tr->ds, idx, count, mods, &tr->ms));
    /* the teachers' rows first (on the fly they use the arena), kept outside it */
    mm_status st = MM_OK;
    for (int k = 0; k < tr->n_teachers && st == MM_OK; k++)
        st = mm_acml_teacher_rows(tr, k, idx, count, &tr->ms, t, tr->row_out[k], tr->row_ok[k]);
    memset(rep, 0, sizeof *rep);
    if (st == MM_OK) st = mm_tape_reset(t);
    t->grad_enabled = true;
    t->training = true;
    t->allreduce = mm_dist_tape_allreduce;
    t->allreduce_ctx = d;
    mm_batch *b = NULL;
    mm_tensor *g = NULL, *total = NULL;
    if (st == MM_OK) st = mm_batch_build(t, &tr->student, &tr->ms, d, tr->counts, &b);
    if (st == MM_OK) mm_params_zero_grad(&tr->student.params);
    if (st == MM_OK) st = mm_encode_graph(&tr->student, t, b, (uint64_t)tr->step, &g);
    mm_tape_scope(t, MM_SCOPE_LOSS);
    /* every teacher's loss (this rank's share), summed over the ranks in one allreduce
     * whose last entry counts the ranks that failed (their message follows, agreed) */
    double lv[MM_N_TEACHERS + 1] = {0};
    for (int k = 0; k < tr->n_teachers && st == MM_OK; k++) {
        mm_tensor *lk = NULL;
        st = teacher_loss(tr, t, k, g, tr->row_out[k], tr->row_ok[k], count, (uint64_t)tr->step, true, &lk,
                          &rep->pairs[k]);
        if (st != MM_OK || !lk) continue;
        lv[k] = lk->data[0];
        if (!total) total = lk;
        else st = mm_add(t, total, lk, &total);
    }
    lv[tr->n_teachers] = st != MM_OK;
    if (d->size > 1) MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, lv, tr->n_teachers + 1, MPI_DOUBLE, MPI_SUM, d->comm));
    if (lv[tr->n_teachers] > 0) return mm_dist_agree(d, st);
    for (int k = 0; k < tr->n_teachers; k++) {
        rep->loss_t[k] = lv[k];
        rep->loss += lv[k];
    }
    rep->step = tr->step;
    rep->epoch = tr->step / tr->steps_per_epoch;
    if (!isfinite(rep->loss)) {
        mm_status e = MM_ERR(MM_ERR_NUMERIC, "step %lld: the ACML loss is %g; parameters and checkpoints are untouched",
                             (long long)tr->step, rep->loss);
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        return mm_dist_agree(d, e);
    }
    if (!total) {
        /* no teacher had two pairs in this batch: every rank's gradient stays zero */
        MM_CALL(mm_tensor_zeros(t, 1, (int64_t[]){1}, false, &total));
    }
    MM_CALL(mm_grad_sync_begin(&tr->gsync, t));
    if (total->grad) MM_CALL(mm_tape_backward(t, total));
    mm_tape_scope(t, MM_SCOPE_COMM);
    MM_CALL(mm_grad_sync_finish(&tr->gsync, t));
    mm_tape_scope(t, MM_SCOPE_OPTIM);
    double norm = 0;
    st = mm_clip_grad_norm(&tr->student.params, tr->job.train.grad_clip, &norm);
    if (st == MM_ERR_NUMERIC) {
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        mm_error_push(__FILE__, __LINE__, __func__);
        return mm_dist_agree(d, st);
    }
    MM_CALL(st);
    rep->grad_norm = norm;
    rep->lr = mm_schedule_lr(&tr->sched, tr->step);
    MM_CALL(mm_optim_step(&tr->opt, &tr->student.params, rep->lr));
    tr->student.bn_batches++;
    mm_tape_scope(t, MM_SCOPE_OTHER);
    tr->step++;
    rep->seconds = mm_run_now() - t0;
    return MM_OK;
}

static mm_status log_step(mm_acml_trainer *tr, const mm_acml_report *r)
{
    double t, mps, rss;
    MM_CALL(mm_run_log_stats(tr->d, tr->step, tr->job.train.batch_size, &tr->clock, &t, &mps,
                             &rss));
    if (tr->d->rank != 0) return MM_OK;
    fprintf(tr->log, "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.6g, \"loss\": %.6f", (long long)r->step + 1,
            (long long)r->epoch, (double)r->lr, r->loss);
    for (int k = 0; k < tr->n_teachers; k++)
        fprintf(tr->log, ", \"loss_%s\": %.6f, \"pairs_%s\": %lld", mm_teacher_names[tr->teacher[k].kind], r->loss_t[k],
                mm_teacher_names[tr->teacher[k].kind], (long long)r->pairs[k]);
    fprintf(tr->log,
            ", \"grad_norm\": %.6g, \"mol_per_s\": %.2f, \"ranks\": %d, \"elapsed_s\": %.2f, \"peak_rss_mib\": %.1f}\n",
            r->grad_norm, mps, tr->d->size, t - tr->clock.t_start, rss);
    fflush(tr->log);
    if (!tr->quiet && tr->job.train.progress) {
        char eta[32];
        mm_run_fmt_eta(t - tr->clock.t_start, tr->clock.step0, tr->step, tr->total_steps, eta, sizeof eta);
        fprintf(stderr, "step %lld/%lld (%3.0f%%) loss %.4f lr %.2e %.0f mol/s ETA %s\n", (long long)tr->step,
                (long long)tr->total_steps, 100.0 * (double)tr->step / (double)tr->total_steps, r->loss, (double)r->lr,
                mps, eta);
    }
    return MM_OK;
}

mm_status mm_acml_trainer_run(mm_acml_trainer *tr, int64_t max_steps)
{
    int64_t stop = tr->total_steps;
    if (max_steps > 0 && tr->step + max_steps < stop) stop = tr->step + max_steps;
    int64_t every = tr->job.checkpoint.every;
    mm_acml_report rep;
    while (tr->step < stop) {
        MM_CALL(mm_acml_trainer_step(tr, &rep));
        if (tr->step % tr->job.train.log_every == 0 || tr->step == stop) MM_CALL(log_step(tr, &rep));
        if (every > 0 && tr->step % every == 0 && tr->step < stop) {
            mm_ckpt_state s = ckpt_state(tr);
            MM_CALL(mm_ckpt_write(tr->ckpt_dir, tr->d, &s, tr->job.checkpoint.keep));
        }
    }
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_ckpt_write(tr->ckpt_dir, tr->d, &s, tr->job.checkpoint.keep));
    return MM_OK;
}
