/* train.c: the pre-training loop (train.h). */
#include "mmsa/blas.h"
#include "mmsa/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmsa/checkpoint.h"
#include "mmsa/run.h"

static mm_ckpt_state ckpt_state(mm_trainer *tr)
{
    mm_ckpt_state s = mm_run_ckpt_state(&tr->job, tr->job_text, tr->step, tr->steps_per_epoch, &tr->model.params,
                                        &tr->opt, tr->model.buffers, tr->model.n_buffers, tr->model.bn_batches);
    s.bank = &tr->bank;
    return s;
}

/* The job against the dataset: every rank reads the same job and file, so every rank
 * fails here the same way (a missing file, a batch larger than the data), and
 * mm_trainer_init agrees on the outcome so that it is reported once. */
static mm_status open_dataset(mm_trainer *tr, const mm_job *job, mm_dist *d)
{
    const mm_train_config *T = &job->train;
    if (!T->dataset[0]) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "train.dataset is not set");
        mm_error_hint("point train.dataset at a file written by mmsa_prep");
        return st;
    }
    if (T->batch_size < d->size)
        return MM_ERR(MM_ERR_CONFIG, "train.batch_size (%d) is smaller than the number of ranks (%d)", T->batch_size,
                      d->size);
    /* the resolved job, for the run directory and the checkpoints */
    MM_CALL(mm_run_job_text(job, &tr->job_text));

    MM_CALL(mm_dataset_open(T->dataset, d->comm, &tr->ds));
    const mm_dataset_info *info = mm_dataset_get_info(tr->ds);
    tr->n_molecules = info->n_molecules;
    tr->modalities = info->modalities & (MM_MOD_CONFORMER | MM_MOD_IMAGE | MM_MOD_FINGERPRINT);
    if (!job->model.use_conformer) tr->modalities &= ~(unsigned)MM_MOD_CONFORMER;
    if (!job->model.use_image) tr->modalities &= ~(unsigned)MM_MOD_IMAGE;
    if (!job->model.use_fingerprint) tr->modalities &= ~(unsigned)MM_MOD_FINGERPRINT;
    if ((tr->modalities & MM_MOD_IMAGE) && info->image_h != job->model.image_size)
        return MM_ERR(MM_ERR_CONFIG, "%s has %dx%d images but model.image_size is %d", T->dataset, info->image_h,
                      info->image_w, job->model.image_size);
    if (T->holdout >= tr->n_molecules)
        return MM_ERR(MM_ERR_CONFIG, "train.holdout (%lld) leaves no training molecule in %s (%lld molecules)",
                      (long long)T->holdout, T->dataset, (long long)tr->n_molecules);
    tr->n_train = tr->n_molecules - T->holdout;
    tr->steps_per_epoch = tr->n_train / T->batch_size;
    if (tr->steps_per_epoch == 0)
        return MM_ERR(MM_ERR_CONFIG, "%s has %lld training molecules, fewer than one batch (train.batch_size %d)",
                      T->dataset, (long long)tr->n_train, T->batch_size);
    tr->total_steps = T->max_steps > 0 ? T->max_steps : (int64_t)T->epochs * tr->steps_per_epoch;
    return MM_OK;
}

mm_status mm_trainer_init(mm_trainer *tr, const mm_job *job, mm_dist *d)
{
    memset(tr, 0, sizeof *tr);
    tr->job = *job;
    tr->d = d;
    tr->perm_epoch = -1;
    const mm_train_config *T = &job->train;
    MM_CALL(mm_blas_set_precision(T->precision));
    MM_CALL(mm_dist_agree(d, open_dataset(tr, job, d)));
    tr->sched = (mm_schedule){T->lr, T->lr_min, T->warmup_steps, tr->total_steps};

    MM_CALL(mm_model_init(&tr->model, &job->model, &job->loss, (uint64_t)T->seed));
    tr->model.knn_backend = job->dist.knn_backend;
    if (T->optimizer == MM_OPTIMIZER_ADAMW)
        MM_CALL(mm_optim_adamw(&tr->opt, &tr->model.params, T->beta1, T->beta2, T->adam_eps, T->weight_decay));
    else
        MM_CALL(mm_optim_sgd(&tr->opt, &tr->model.params, T->momentum, false, T->weight_decay));
    MM_CALL(mm_bank_init(&tr->bank, d, job->loss.n_anchors, job->model.embed_dim, (uint64_t)T->seed, job->loss.tau_mem,
                         job->loss.mem_momentum, job->loss.mem_reseed_after));
    MM_CALL(mm_bank_set_rules(&tr->bank, job->loss.mem_init, job->loss.mem_reseed_from));
    MM_CALL(mm_tape_init(&tr->tape, 64u << 20));
    MM_CALL(mm_grad_sync_init(&tr->gsync, d, &tr->model.params, (double)job->dist.bucket_mb * 1048576.0));
    tr->perm = mm_malloc((size_t)tr->n_train * sizeof(int64_t));
    tr->counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    tr->batch_idx = mm_malloc((size_t)T->batch_size * sizeof(int64_t));
    if (!tr->perm || !tr->counts || !tr->batch_idx) return MM_ERR(MM_ERR_NOMEM, "trainer index arrays");
    for (int r = 0; r < d->size; r++) {
        int64_t s0;
        mm_dist_block(T->batch_size, d->size, r, &s0, &tr->counts[r]);
    }

    MM_CALL(mm_run_checkpoint_dir(T->run_dir, d, tr->ckpt_dir, sizeof tr->ckpt_dir));
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_run_start(tr->ckpt_dir, T->run_dir, tr->job_text, (uint64_t)T->seed, job->checkpoint.resume, d, &s,
                         &tr->step, &tr->model.bn_batches, &tr->log, &tr->clock));
    return MM_OK;
}

void mm_trainer_destroy(mm_trainer *tr)
{
    if (tr->log) fclose(tr->log);
    mm_dataset_close(&tr->ds);
    mm_tape_destroy(&tr->tape);
    mm_grad_sync_destroy(&tr->gsync);
    mm_bank_destroy(&tr->bank);
    mm_optim_destroy(&tr->opt);
    mm_model_destroy(&tr->model);
    mm_molset_free(&tr->ms);
    if (tr->perm) mm_free_sized(tr->perm, (size_t)tr->n_train * sizeof(int64_t));
    if (tr->counts) mm_free_sized(tr->counts, (size_t)tr->d->size * sizeof(int64_t));
    if (tr->batch_idx) mm_free_sized(tr->batch_idx, (size_t)tr->job.train.batch_size * sizeof(int64_t));
    free(tr->job_text);
    memset(tr, 0, sizeof *tr);
}

mm_status mm_trainer_batch_indices(mm_trainer *tr, int64_t step, int64_t *idx)
{
    mm_run_batches b = {(uint64_t)tr->job.train.seed, tr->n_train, tr->job.train.batch_size, tr->steps_per_epoch,
                        NULL, tr->perm, tr->perm_epoch};
    mm_run_batch(&b, step, idx);
    tr->perm_epoch = b.perm_epoch;
    return MM_OK;
}

/* normalised rows of s [n, dim] into out */
static void normalise_rows(const float *s, int64_t n, int64_t dim, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        double q = 0;
        for (int64_t j = 0; j < dim; j++) q += (double)s[i * dim + j] * s[i * dim + j];
        double inv = 1.0 / fmax(sqrt(q), 1e-12);
        for (int64_t j = 0; j < dim; j++) out[i * dim + j] = (float)(s[i * dim + j] * inv);
    }
}

mm_status mm_trainer_step(mm_trainer *tr, mm_step_report *rep)
{
    double t0 = mm_run_now();
    mm_dist *d = tr->d;
    double bytes0[MM_COMM_KINDS];
    memcpy(bytes0, d->bytes, sizeof bytes0);
    int64_t B = tr->job.train.batch_size, start, count;
    MM_CALL(mm_trainer_batch_indices(tr, tr->step, tr->batch_idx));
    mm_dist_block(B, d->size, d->rank, &start, &count);
    mm_tape *t = &tr->tape;
    MM_CALL(mm_tape_reset(t));
    mm_tape_scope(t, MM_SCOPE_DATA);
    MM_CALL(mm_dataset_read_indices(tr->ds, tr->batch_idx + start, count, tr->modalities, &tr->ms));

    t->grad_enabled = true;
    t->training = true;
    mm_batch *b;
    MM_CALL(mm_batch_build(t, &tr->model, &tr->ms, d, tr->counts, &b));
    mm_params_zero_grad(&tr->model.params);
    mm_step_out o;
    mm_status fst = mm_model_forward(&tr->model, t, d, &tr->bank, b, (uint64_t)tr->job.train.seed, (uint64_t)tr->step, &o);
    if (fst == MM_ERR_NUMERIC) {
        /* e.g. the kNN search refuses non-finite embeddings (on every rank, agreed): name the step */
        bool agreed = mm_error_agreed();
        char inner[700];
        snprintf(inner, sizeof inner, "%s", mm_error_message());
        fst = MM_ERR(MM_ERR_NUMERIC, "step %lld: %s; parameters and checkpoints are untouched", (long long)tr->step, inner);
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        if (agreed) mm_error_set_agreed();
        return fst;
    }
    MM_CALL(fst);
    memset(rep, 0, sizeof *rep);
    rep->step = tr->step;
    rep->epoch = tr->step / tr->steps_per_epoch;
    rep->loss = o.total;
    rep->l_align = o.l_align;
    memcpy(rep->l_align_mod, o.l_align_mod, sizeof rep->l_align_mod);
    rep->l_rec = o.l_rec;
    rep->l_hg = o.l_hg;
    rep->l_mem = o.l_mem;
    if (!isfinite(o.total)) {
        /* the loss is summed over the ranks: every rank sees the same value and comes here */
        mm_status st = MM_ERR(MM_ERR_NUMERIC,
                              "step %lld: the loss is %g (L_align %g, L_rec %g, L_hg %g, L_mem %g); parameters and "
                              "checkpoints are untouched",
                              (long long)tr->step, o.total, o.l_align, o.l_rec, o.l_hg, o.l_mem);
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        return mm_dist_agree(d, st);
    }
    /* the gradient buckets start inside the backward as their parameters become final */
    MM_CALL(mm_grad_sync_begin(&tr->gsync, t));
    MM_CALL(mm_tape_backward(t, o.loss_local));
    mm_tape_scope(t, MM_SCOPE_COMM);
    MM_CALL(mm_grad_sync_finish(&tr->gsync, t));
    mm_tape_scope(t, MM_SCOPE_OPTIM);
    double norm = 0;
    mm_status st = mm_clip_grad_norm(&tr->model.params, tr->job.train.grad_clip, &norm);
    if (st == MM_ERR_NUMERIC) {
        /* the norm is of the summed gradient: the same on every rank */
        mm_error_hint("lower train.lr or set train.grad_clip; the last checkpoint in %s is intact", tr->ckpt_dir);
        mm_error_push(__FILE__, __LINE__, __func__);
        return mm_dist_agree(d, st);
    }
    MM_CALL(st);
    rep->grad_norm = norm;
    rep->lr = mm_schedule_lr(&tr->sched, tr->step);
    MM_CALL(mm_optim_step(&tr->opt, &tr->model.params, rep->lr));
    tr->model.bn_batches++;
    /* the anchors move after the optimiser step, toward this step's (detached) s */
    int64_t N = b->n_global, E = tr->model.cfg.embed_dim;
    float *sh;
    MM_CALL(mm_tape_alloc(t, (size_t)(N * E) * sizeof(float), (void **)&sh));
    normalise_rows(o.s->data, N, E, sh);
    mm_tape_scope(t, MM_SCOPE_BANK);
    MM_CALL(mm_bank_update(&tr->bank, sh, o.assign, N, &rep->bank));
    mm_tape_scope(t, MM_SCOPE_OTHER);
    tr->step++;
    rep->seconds = mm_run_now() - t0;
    rep->grad_exposed_s = tr->gsync.progress_s + tr->gsync.wait_s;
    for (int k = 0; k < MM_COMM_KINDS; k++) rep->comm_bytes[k] = d->bytes[k] - bytes0[k];
    return MM_OK;
}

mm_status mm_trainer_checkpoint(mm_trainer *tr)
{
    mm_ckpt_state s = ckpt_state(tr);
    MM_CALL(mm_ckpt_write(tr->ckpt_dir, tr->d, &s, tr->job.checkpoint.keep));
    return MM_OK;
}

/* Collective (the largest peak RSS over the ranks); rank 0 writes the line. */
static mm_status log_step(mm_trainer *tr, const mm_step_report *r)
{
    double t, mps, rss;
    MM_CALL(mm_run_log_stats(tr->d, tr->step, tr->job.train.batch_size, &tr->clock, &t, &mps,
                             &rss));
    mm_bank_window_stats w;
    MM_CALL(mm_bank_window(&tr->bank, &w));
    if (tr->d->rank != 0) return MM_OK;
    fprintf(tr->log,
            "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.6g, \"loss\": %.6f, \"l_align\": %.6f, "
            "\"l_align_conformer\": %.6f, \"l_align_image\": %.6f, \"l_align_fingerprint\": %.6f, \"l_rec\": %.6f, "
            "\"l_hg\": %.6f, \"l_mem\": %.6f, \"grad_norm\": %.6g, \"mol_per_s\": %.2f, \"anchors_in_use\": %lld, "
            "\"assign_entropy_bits\": %.4f, \"anchors_in_use_window\": %lld, \"window_steps\": %lld, "
            "\"anchors_reseeded\": %lld, \"ranks\": %d, \"elapsed_s\": %.2f, \"peak_rss_mib\": %.1f, "
            "\"grad_exposed_ms\": %.2f, \"comm_bytes\": {",
            (long long)r->step + 1, (long long)r->epoch, (double)r->lr, r->loss, r->l_align, r->l_align_mod[1],
            r->l_align_mod[2], r->l_align_mod[3], r->l_rec, r->l_hg, r->l_mem, r->grad_norm, mps,
            (long long)r->bank.anchors_hit, r->bank.entropy_bits, (long long)w.anchors_hit, (long long)w.steps,
            (long long)w.reseeded, tr->d->size, t - tr->clock.t_start, rss, 1e3 * r->grad_exposed_s);
    for (int k = 0; k < MM_COMM_KINDS; k++)
        fprintf(tr->log, "%s\"%s\": %.0f", k ? ", " : "", mm_comm_kind_names[k], r->comm_bytes[k]);
    fprintf(tr->log, "}}\n");
    fflush(tr->log);
    if (!tr->quiet && tr->job.train.progress) {
        char eta[32];
        mm_run_fmt_eta(t - tr->clock.t_start, tr->clock.step0, tr->step, tr->total_steps, eta, sizeof eta);
        fprintf(stderr,
                "step %lld/%lld (%3.0f%%) loss %.4f [align %.3f rec %.3f hg %.3f mem %.3f] anchors %lld (%lld in %lld "
                "steps, %lld re-seeded) H %.2f bits lr %.2e %.0f mol/s ETA %s\n",
                (long long)tr->step, (long long)tr->total_steps, 100.0 * (double)tr->step / (double)tr->total_steps,
                r->loss, r->l_align, r->l_rec, r->l_hg, r->l_mem, (long long)r->bank.anchors_hit, (long long)w.anchors_hit,
                (long long)w.steps, (long long)w.reseeded, r->bank.entropy_bits, (double)r->lr, mps, eta);
    }
    return MM_OK;
}

mm_status mm_trainer_run(mm_trainer *tr, int64_t max_steps)
{
    int64_t stop = tr->total_steps;
    if (max_steps > 0 && tr->step + max_steps < stop) stop = tr->step + max_steps;
    int64_t every = tr->job.checkpoint.every;
    mm_step_report rep;
    while (tr->step < stop) {
        MM_CALL(mm_trainer_step(tr, &rep));
        if (tr->step % tr->job.train.log_every == 0 || tr->step == stop) MM_CALL(log_step(tr, &rep));
        if (every > 0 && tr->step % every == 0 && tr->step < stop) MM_CALL(mm_trainer_checkpoint(tr));
    }
    MM_CALL(mm_trainer_checkpoint(tr));
    return MM_OK;
}

typedef struct {
    float *pg, *pf; /* [n, P] graph and fingerprint projections of the range */
    int64_t off, dim;
} retrieval_ctx;

static mm_status keep_projections(void *ctx, int64_t first, int64_t n, const mm_step_out *o, const mm_batch *b)
{
    (void)b;
    retrieval_ctx *c = ctx;
    memcpy(c->pg + (first - c->off) * c->dim, o->p[MM_MOD_GRAPH_I]->data, (size_t)(n * c->dim) * sizeof(float));
    memcpy(c->pf + (first - c->off) * c->dim, o->p[MM_MOD_FP_I]->data, (size_t)(n * c->dim) * sizeof(float));
    return MM_OK;
}

/* rank of the true partner: fingerprints closer to graph i than its own (ties to the smaller index) */
static void retrieval_scores(const float *g, const float *f, int64_t n, int64_t dim, double *top1, double *top5)
{
    int64_t hit1 = 0, hit5 = 0;
    for (int64_t i = 0; i < n; i++) {
        double own = 0;
        for (int64_t k = 0; k < dim; k++) own += (double)g[i * dim + k] * f[i * dim + k];
        int64_t better = 0;
        for (int64_t j = 0; j < n && better < 5; j++) {
            if (j == i) continue;
            double s = 0;
            for (int64_t k = 0; k < dim; k++) s += (double)g[i * dim + k] * f[j * dim + k];
            if (s > own || (s == own && j < i)) better++;
        }
        hit1 += better == 0;
        hit5 += better < 5;
    }
    *top1 = (double)hit1 / (double)n;
    *top5 = (double)hit5 / (double)n;
}

mm_status mm_eval_retrieval(mm_trainer *tr, int64_t start, int64_t end, double *top1, double *top5)
{
    mm_dist *d = tr->d;
    int64_t n = end - start, P = tr->model.cfg.proj_dim;
    if (n < 2 || start < 0 || end > tr->n_molecules)
        return MM_ERR(MM_ERR_ARG, "retrieval over molecules [%lld, %lld) of %lld", (long long)start, (long long)end,
                      (long long)tr->n_molecules);
    if (!(tr->modalities & MM_MOD_FINGERPRINT))
        return MM_ERR(MM_ERR_CONFIG, "retrieval needs fingerprints in the dataset and model.use_fingerprint");
    size_t bytes = (size_t)(n * P) * sizeof(float);
    int64_t *counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    float *pg = mm_calloc(1, bytes), *pf = mm_calloc(1, bytes), *g = mm_malloc(bytes), *f = mm_malloc(bytes);
    mm_status st = MM_OK;
    if (!counts || !pg || !pf || !g || !f) {
        st = MM_ERR(MM_ERR_NOMEM, "retrieval buffers for %lld molecules", (long long)n);
    } else {
        int64_t my0 = 0, c;
        for (int r = 0; r < d->size; r++) {
            mm_dist_block(n, d->size, r, &c, &counts[r]);
            counts[r] *= P;
            if (r == d->rank) my0 = c;
        }
        retrieval_ctx ctx = {pg, pf, 0, P};
        st = mm_model_embed_dataset(&tr->model, &tr->tape, tr->ds, &tr->ms, tr->modalities, d, start, end, 256,
                                    keep_projections, &ctx);
        st = mm_dist_agree(d, st);
        /* everyone's rows to everyone, then the same scores on every rank */
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, pg + my0 * P, sizeof(float), counts, g);
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, pf + my0 * P, sizeof(float), counts, f);
        if (st == MM_OK) retrieval_scores(g, f, n, P, top1, top5);
    }
    mm_free_sized(counts, (size_t)d->size * sizeof(int64_t));
    mm_free_sized(pg, bytes);
    mm_free_sized(pf, bytes);
    mm_free_sized(g, bytes);
    mm_free_sized(f, bytes);
    return st;
}
