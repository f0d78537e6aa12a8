/* spectrum_train.c: pre-training the spectrum autoencoder (spectrum.h), data parallel over
 * the molecules that have the spectrum. The loop has the shape of the MMSA trainer
 * (train.h): the global batch of step s is a pure function of (seed, s), each rank reads
 * only its block of it, one arena reset each step, checkpoints hold every state a step
 * reads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/blas.h"
#include "mmsa/checkpoint.h"
#include "mmsa/run.h"
#include "mmsa/spectrum.h"

/* molecules per read when the ok flags are scanned */
#define SCAN_CHUNK 4096

static mm_ckpt_state ckpt_state(mm_spectrum_trainer *tr)
{
    return mm_run_ckpt_state(&tr->job, tr->job_text, tr->step, tr->steps_per_epoch, &tr->net.params, &tr->opt,
                             tr->net.buffers, tr->net.n_buffers, tr->net.bn_batches);
}

/* The dataset indices of the molecules with the spectrum: each rank scans its block of
 * the file in the same number of collective reads, then the ok flags are gathered. */
static mm_status find_spectra(mm_spectrum_trainer *tr)
{
    mm_dist *d = tr->d;
    int kind = tr->job.spectrum.kind;
    int64_t N = tr->n_molecules, start, count, most = 0;
    mm_dist_block(N, d->size, d->rank, &start, &count);
    for (int r = 0; r < d->size; r++) {
        int64_t s0, c;
        mm_dist_block(N, d->size, r, &s0, &c);
        if (c > most) most = c;
        tr->counts[r] = c;
    }
    uint8_t *mine = mm_calloc((size_t)(count ? count : 1), 1), *all = mm_malloc((size_t)(N ? N : 1));
    mm_status st = mine && all ? MM_OK : MM_ERR(MM_ERR_NOMEM, "ok flags of %lld molecules", (long long)N);
    for (int64_t k = 0; st == MM_OK && k * SCAN_CHUNK < most; k++) {
        int64_t a = k * SCAN_CHUNK < count ? k * SCAN_CHUNK : count;
        int64_t b = a + SCAN_CHUNK < count ? a + SCAN_CHUNK : count;
        st = mm_dataset_read_range(tr->ds, start + a, start + b, tr->modality, &tr->ms);
        if (st == MM_OK) memcpy(mine + a, tr->ms.nmr[kind].ok, (size_t)(b - a));
    }
    st = mm_dist_agree(d, st);
    if (st == MM_OK) st = mm_dist_allgather_bytes(d, mine, 1, tr->counts, all);
    int64_t n = 0;
    for (int64_t i = 0; st == MM_OK && i < N; i++) n += all[i] != 0;
    if (st == MM_OK) {
        tr->n_with = n;
        tr->with_idx = mm_malloc((size_t)(n ? n : 1) * sizeof(int64_t));
        if (!tr->with_idx) st = MM_ERR(MM_ERR_NOMEM, "indices of %lld spectra", (long long)n);
        for (int64_t i = 0, j = 0; st == MM_OK && i < N; i++)
            if (all[i]) tr->with_idx[j++] = i;
    }
    mm_free_sized(mine, (size_t)(count ? count : 1));
    mm_free_sized(all, (size_t)(N ? N : 1));
    return st;
}

/* The job against the dataset; every rank reads the same job and file, so every rank fails
 * the same way. */
static mm_status open_dataset(mm_spectrum_trainer *tr)
{
    const mm_train_config *T = &tr->job.train;
    const char *kname = mm_nmr_kind_names[tr->job.spectrum.kind];
    if (!T->dataset[0]) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "train.dataset is not set");
        mm_error_hint("point train.dataset at a file written by mmsa_prep from spectra (e.g. the CASCADE files)");
        return st;
    }
    if (T->batch_size < tr->d->size)
        return MM_ERR(MM_ERR_CONFIG, "train.batch_size (%d) is smaller than the number of ranks (%d)", T->batch_size,
                      tr->d->size);
    MM_CALL(mm_dataset_open(T->dataset, tr->d->comm, &tr->ds));
    const mm_dataset_info *info = mm_dataset_get_info(tr->ds);
    tr->n_molecules = info->n_molecules;
    if (!(info->modalities & tr->modality)) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "%s has no %s spectra (spectrum.kind is %s)", T->dataset, kname, kname);
        mm_error_hint("mmsa_prep writes /nmr13c and /nmr1h from SD files with spectra (data/spectra_3d)");
        return st;
    }
    return MM_OK;
}

static mm_status plan_epochs(mm_spectrum_trainer *tr)
{
    const mm_train_config *T = &tr->job.train;
    const char *kname = mm_nmr_kind_names[tr->job.spectrum.kind];
    if (T->holdout >= tr->n_with)
        return MM_ERR(MM_ERR_CONFIG, "train.holdout (%lld) leaves no training spectrum: %s has %lld %s spectra",
                      (long long)T->holdout, T->dataset, (long long)tr->n_with, kname);
    tr->n_train = tr->n_with - T->holdout;
    tr->steps_per_epoch = tr->n_train / T->batch_size;
    if (tr->steps_per_epoch == 0)
        return MM_ERR(MM_ERR_CONFIG, "%s has %lld training %s spectra, fewer than one batch (train.batch_size %d)",
                      T->dataset, (long long)tr->n_train, kname, T->batch_size);
    tr->total_steps = T->max_steps > 0 ? T->max_steps : (int64_t)T->epochs * tr->steps_per_epoch;
    return MM_OK;
}

mm_status mm_spectrum_trainer_init(mm_spectrum_trainer *tr, const mm_job *job, mm_dist *d)
{
    memset(tr, 0, sizeof *tr);
    tr->job = *job;
    tr->d = d;
    tr->perm_epoch = -1;
    const mm_train_config *T = &job->train;
    MM_CALL(mm_blas_set_precision(T->precision));
    if (job->model.objective != MM_OBJ_SPECTRUM_AE)
        return MM_ERR(MM_ERR_ARG, "spectrum trainer: model.objective is not spectrum_autoencoder");
    tr->modality = job->spectrum.kind == MM_NMR_13C ? MM_MOD_NMR13C : MM_MOD_NMR1H;
    MM_CALL(mm_run_job_text(job, &tr->job_text));
    tr->counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    tr->batch_idx = mm_malloc((size_t)T->batch_size * sizeof(int64_t));
    if (!tr->counts || !tr->batch_idx) return MM_ERR(MM_ERR_NOMEM, "trainer index arrays");
    MM_CALL(mm_dist_agree(d, open_dataset(tr)));
    MM_CALL(find_spectra(tr));
    MM_CALL(mm_dist_agree(d, plan_epochs(tr)));
    tr->perm = mm_malloc((size_t)tr->n_train * sizeof(int64_t));
    if (!tr->perm) return MM_ERR(MM_ERR_NOMEM, "permutation of %lld spectra", (long long)tr->n_train);
    for (int r = 0; r < d->size; r++) {
        int64_t s0;
        mm_dist_block(T->batch_size, d->size, r, &s0, &tr->counts[r]);
    }
    tr->sched = (mm_schedule){T->lr, T->lr_min, T->warmup_steps, tr->total_steps};
    MM_CALL(mm_spectrum_net_init(&tr->net, &job->spectrum, job->model.bn_eps, job->model.bn_momentum, true,
                                 (uint64_t)T->seed));
    if (T->optimizer == MM_OPTIMIZER_ADAMW)
        MM_CALL(mm_optim_adamw(&tr->opt, &tr->net.params, T->beta1, T->beta2, T->adam_eps, T->weight_decay));
    else
        MM_CALL(mm_optim_sgd(&tr->opt, &tr->net.params, T->momentum, false, T->weight_decay));
    MM_CALL(mm_tape_init(&tr->tape, 64u << 20));
    MM_CALL(mm_grad_sync_init(&tr->gsync, d, &tr->net.params, (double)job->dist.bucket_mb * 1048576.0));
    MM_CALL(mm_run_checkpoint_dir(T->run_dir, d, tr->ckpt_dir, sizeof tr->ckpt_dir));
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_run_start(tr->ckpt_dir, T->run_dir, tr->job_text, (uint64_t)T->seed, job->checkpoint.resume, d, &s,
                         &tr->step, &tr->net.bn_batches, &tr->log, &tr->clock));
    return MM_OK;
}

void mm_spectrum_trainer_destroy(mm_spectrum_trainer *tr)
{
    if (tr->log) fclose(tr->log);
    mm_dataset_close(&tr->ds);
    mm_tape_destroy(&tr->tape);
    mm_grad_sync_destroy(&tr->gsync);
    mm_optim_destroy(&tr->opt);
    mm_spectrum_net_destroy(&tr->net);
    mm_molset_free(&tr->ms);
    if (tr->with_idx) mm_free_sized(tr->with_idx, (size_t)(tr->n_with ? tr->n_with : 1) * sizeof(int64_t));
    if (tr->perm) mm_free_sized(tr->perm, (size_t)tr->n_train * sizeof(int64_t));
    if (tr->counts) mm_free_sized(tr->counts, (size_t)tr->d->size * sizeof(int64_t));
    if (tr->batch_idx) mm_free_sized(tr->batch_idx, (size_t)tr->job.train.batch_size * sizeof(int64_t));
    free(tr->job_text);
    memset(tr, 0, sizeof *tr);
}

mm_status mm_spectrum_trainer_batch_indices(mm_spectrum_trainer *tr, int64_t step, int64_t *idx)
{
    mm_run_batches b = {(uint64_t)tr->job.train.seed, tr->n_train, tr->job.train.batch_size, tr->steps_per_epoch,
                        tr->with_idx, tr->perm, tr->perm_epoch};
    mm_run_batch(&b, step, idx);
    tr->perm_epoch = b.perm_epoch;
    return MM_OK;
}

mm_status mm_spectrum_trainer_step(mm_spectrum_trainer *tr, mm_spectrum_report *rep)
{
    double t0 = mm_run_now();
    mm_dist *d = tr->d;
    int64_t B = tr->job.train.batch_size, start, count, L = tr->net.grid.n_bins;
    MM_CALL(mm_spectrum_trainer_batch_indices(tr, tr->step, tr->batch_idx));
    mm_dist_block(B, d->size, d->rank, &start, &count);
    mm_tape *t = &tr->tape;
    MM_CALL(mm_tape_reset(t));
    MM_CALL(mm_dataset_read_indices(tr->ds, tr->batch_idx + start, count, tr->modality, &tr->ms));
    const mm_spectra *sp = &tr->ms.nmr[tr->job.spectrum.kind];
    int64_t *mols;
    float *x;
    MM_CALL(mm_tape_alloc(t, (size_t)(count ? count : 1) * sizeof(int64_t), (void **)&mols));
    MM_CALL(mm_tape_alloc(t, (size_t)(count * L > 0 ? count * L : 1) * sizeof(float), (void **)&x));
    for (int64_t i = 0; i < count; i++) mols[i] = i;
    int64_t dropped = 0;
    mm_spectrum_bin(&tr->net.grid, sp, mols, count, x, &dropped);

    t->grad_enabled = true;
    t->training = true;
    t->allreduce = mm_dist_tape_allreduce;
    t->allreduce_ctx = d;
    mm_params_zero_grad(&tr->net.params);
    mm_tensor *z, *logits, *loss;
    MM_CALL(mm_spectrum_net_encode(&tr->net, t, x, count, &z));
    MM_CALL(mm_spectrum_net_decode(&tr->net, t, z, &logits));
    MM_CALL(mm_spectrum_loss(t, logits, x, B, &loss));
    /* the global loss and the dropped peaks, in one reduction */
    double g[2] = {loss->data[0], (double)dropped};
    MM_CALL(mm_dist_allreduce_double(d, g, 2));
    memset(rep, 0, sizeof *rep);
    rep->step = tr->step;
    rep->epoch = tr->step / tr->steps_per_epoch;
    rep->loss = g[0];
    rep->dropped = (int64_t)g[1];
    if (!isfinite(rep->loss)) {
        mm_status st = MM_ERR(MM_ERR_NUMERIC, "step %lld: the reconstruction loss is %g; parameters and checkpoints are untouched",
                              (long long)tr->step, rep->loss);
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        return mm_dist_agree(d, st);
    }
    MM_CALL(mm_grad_sync_begin(&tr->gsync, t));
    MM_CALL(mm_tape_backward(t, loss));
    MM_CALL(mm_grad_sync_finish(&tr->gsync, t));
    double norm = 0;
    mm_status st = mm_clip_grad_norm(&tr->net.params, tr->job.train.grad_clip, &norm);
    if (st == MM_ERR_NUMERIC) {
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        mm_error_push(__FILE__, __LINE__, __func__);
        return mm_dist_agree(d, st);
    }
    MM_CALL(st);
    rep->grad_norm = norm;
    rep->lr = mm_schedule_lr(&tr->sched, tr->step);
    MM_CALL(mm_optim_step(&tr->opt, &tr->net.params, rep->lr));
    tr->net.bn_batches++;
    tr->dropped_total += rep->dropped;
    tr->step++;
    rep->seconds = mm_run_now() - t0;
    return MM_OK;
}

mm_status mm_spectrum_trainer_checkpoint(mm_spectrum_trainer *tr)
{
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_ckpt_write(tr->ckpt_dir, tr->d, &s, tr->job.checkpoint.keep));
    return MM_OK;
}

/* Collective (the largest peak RSS over the ranks); rank 0 writes the line. */
static mm_status log_step(mm_spectrum_trainer *tr, const mm_spectrum_report *r)
{
    double t, mps, rss;
    MM_CALL(mm_run_log_stats(tr->d, tr->step, tr->job.train.batch_size, &tr->clock, &t, &mps,
                             &rss));
    if (tr->d->rank != 0) return MM_OK;
    fprintf(tr->log,
            "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.6g, \"loss\": %.6f, \"l_rec\": %.6f, \"grad_norm\": %.6g, "
            "\"kind\": \"%s\", \"peaks_dropped\": %lld, \"mol_per_s\": %.2f, \"ranks\": %d, \"elapsed_s\": %.2f, "
            "\"peak_rss_mib\": %.1f}\n",
            (long long)r->step + 1, (long long)r->epoch, (double)r->lr, r->loss, r->loss, r->grad_norm,
            mm_nmr_kind_names[tr->job.spectrum.kind], (long long)tr->dropped_total, mps, tr->d->size, t - tr->clock.t_start,
            rss);
    fflush(tr->log);
    if (!tr->quiet && tr->job.train.progress) {
        char eta[32];
        mm_run_fmt_eta(t - tr->clock.t_start, tr->clock.step0, tr->step, tr->total_steps, eta, sizeof eta);
        fprintf(stderr, "step %lld/%lld (%3.0f%%) reconstruction %.5f lr %.2e %.0f spectra/s ETA %s\n",
                (long long)tr->step, (long long)tr->total_steps, 100.0 * (double)tr->step / (double)tr->total_steps,
                r->loss, (double)r->lr, mps, eta);
    }
    return MM_OK;
}

mm_status mm_spectrum_trainer_run(mm_spectrum_trainer *tr, int64_t max_steps)
{
    int64_t stop = tr->total_steps;
    if (max_steps > 0 && tr->step + max_steps < stop) stop = tr->step + max_steps;
    int64_t every = tr->job.checkpoint.every;
    mm_spectrum_report rep;
    while (tr->step < stop) {
        MM_CALL(mm_spectrum_trainer_step(tr, &rep));
        if (tr->step % tr->job.train.log_every == 0 || tr->step == stop) MM_CALL(log_step(tr, &rep));
        if (every > 0 && tr->step % every == 0 && tr->step < stop) MM_CALL(mm_spectrum_trainer_checkpoint(tr));
    }
    MM_CALL(mm_spectrum_trainer_checkpoint(tr));
    return MM_OK;
}
