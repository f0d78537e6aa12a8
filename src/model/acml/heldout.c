/* heldout.c: the head outputs of the molecules an ACML run held out, trained and
 * untrained, written with eval.h's embeddings-file writer for mmsa_eval (acml.h). */
#include <string.h>

#include "../../data/ds_internal.h"
#include "mmsa/acml.h"
#include "mmsa/eval.h"

#define HELD_CHUNK 256

/* The rows the model writes into: trained (graph, teacher) or untrained (graph0, teacher0). */
static float *graph_rows(mm_eval_pairing *p, bool untrained) { return untrained ? p->graph0 : p->graph; }
static float *teacher_rows(mm_eval_pairing *p, bool untrained) { return untrained ? p->teacher0 : p->teacher; }

/* Eval-mode head outputs of molecules idx[0..n) (this rank's) by the model m into e's
 * rows first.., and the teacher flags. ds reads are collective: every rank runs `chunks`
 * reads. */
static mm_status embed_rows(mm_acml_trainer *tr, mm_model *m, const int64_t *idx, int64_t n, int64_t chunks,
                            mm_eval_emb *e, int64_t first, bool untrained)
{
    mm_dist self;
    MM_CALL(mm_dist_init(&self, MPI_COMM_SELF));
    mm_tape *t = &tr->tape;
    bool grad = t->grad_enabled, training = t->training;
    unsigned mods = 0;
    for (int k = 0; k < tr->n_teachers; k++)
        if (!tr->t_out[k]) mods |= tr->teacher[k].modality;
    mm_status st = MM_OK;
    for (int64_t c = 0; c < chunks && st == MM_OK; c++) {
        int64_t c0 = c * HELD_CHUNK, cn = n - c0 < HELD_CHUNK ? n - c0 : HELD_CHUNK;
        if (cn < 0) cn = 0;
        st = mm_dataset_read_indices(tr->ds, idx + (cn ? c0 : 0), cn, mods, &tr->ms);
        if (st != MM_OK || cn == 0) continue;
        for (int k = 0; k < tr->n_teachers && st == MM_OK; k++) {
            mm_eval_pairing *p = &e->t[tr->teacher[k].kind];
            int64_t D = tr->teacher[k].dim, P = p->dim;
            float *tout = mm_malloc((size_t)(cn * D) * sizeof(float));
            if (!tout) {
                st = MM_ERR(MM_ERR_NOMEM, "held-out teacher rows");
                break;
            }
            st = mm_acml_teacher_rows(tr, k, idx + c0, cn, &tr->ms, t, tout, p->ok + first + c0);
            mm_batch *b = NULL;
            mm_tensor *x, *g, *U, *G;
            int64_t count = cn;
            if (st == MM_OK) st = mm_tape_reset(t);
            t->grad_enabled = false;
            t->training = false;
            if (st == MM_OK) st = mm_batch_build(t, m, &tr->ms, &self, &count, &b);
            if (st == MM_OK) st = mm_encode_graph(m, t, b, 0, &g);
            if (st == MM_OK) st = mm_tensor_new2(t, cn, D, false, &x);
            if (st == MM_OK) {
                memcpy(x->data, tout, (size_t)(cn * D) * sizeof(float));
                st = mm_acml_head_forward(t, &m->params, &tr->head_t[k], x, 0.0f, 0, 0, 0, &U, NULL, NULL);
            }
            if (st == MM_OK) st = mm_acml_head_forward(t, &m->params, &tr->head_g[k], g, 0.0f, 0, 0, 0, &G, NULL, NULL);
            if (st == MM_OK) {
                memcpy(teacher_rows(p, untrained) + (first + c0) * P, U->data, (size_t)(cn * P) * sizeof(float));
                memcpy(graph_rows(p, untrained) + (first + c0) * P, G->data, (size_t)(cn * P) * sizeof(float));
            }
            mm_free_sized(tout, (size_t)(cn * D) * sizeof(float));
        }
    }
    t->grad_enabled = grad;
    t->training = training;
    mm_dist_destroy(&self);
    return st;
}

/* Every rank embeds its block of the held-out molecules; everyone gets all rows. */
static mm_status embed_held(mm_acml_trainer *tr, mm_model *m, mm_eval_emb *e, bool untrained)
{
    mm_dist *d = tr->d;
    int64_t n = tr->n_held, my0, mine;
    mm_dist_block(n, d->size, d->rank, &my0, &mine);
    int64_t most = n / d->size + (n % d->size ? 1 : 0);
    int64_t chunks = (most + HELD_CHUNK - 1) / HELD_CHUNK;
    mm_status st = mm_dist_agree(d, embed_rows(tr, m, tr->held_idx + my0, mine, chunks, e, my0, untrained));
    int64_t *counts = mm_malloc((size_t)d->size * sizeof(int64_t));
    if (!counts) st = MM_ERR(MM_ERR_NOMEM, "counts");
    for (int r = 0; st == MM_OK && r < d->size; r++) {
        int64_t s0;
        mm_dist_block(n, d->size, r, &s0, &counts[r]);
    }
    /* each rank's block moves to a copy, then the full arrays are gathered into place */
    for (int k = 0; k < tr->n_teachers && st == MM_OK; k++) {
        mm_eval_pairing *p = &e->t[tr->teacher[k].kind];
        int64_t P = p->dim;
        float *rows[2] = {graph_rows(p, untrained), teacher_rows(p, untrained)};
        size_t fb = (size_t)((mine ? mine : 1) * P) * sizeof(float);
        float *cu = mm_malloc(fb), *cg = mm_malloc(fb);
        uint8_t *ck = mm_malloc((size_t)(mine ? mine : 1));
        if (!cu || !cg || !ck) st = MM_ERR(MM_ERR_NOMEM, "held-out rows");
        if (st == MM_OK) {
            memcpy(cg, rows[0] + my0 * P, (size_t)(mine * P) * sizeof(float));
            memcpy(cu, rows[1] + my0 * P, (size_t)(mine * P) * sizeof(float));
            memcpy(ck, p->ok + my0, (size_t)mine);
            st = mm_dist_allgather_bytes(d, cg, (size_t)P * sizeof(float), counts, rows[0]);
        }
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, cu, (size_t)P * sizeof(float), counts, rows[1]);
        if (st == MM_OK) st = mm_dist_allgather_bytes(d, ck, 1, counts, p->ok);
        if (cu) mm_free_sized(cu, fb);
        if (cg) mm_free_sized(cg, fb);
        if (ck) mm_free_sized(ck, (size_t)(mine ? mine : 1));
    }
    if (counts) mm_free_sized(counts, (size_t)d->size * sizeof(int64_t));
    return st;
}

/* teacher -> graph top-1 of pairing p (trained or untrained) among its molecules with ok */
static double top1_of(const mm_eval_emb *e, const mm_eval_pairing *p, bool untrained)
{
    int64_t m = 0, P = p->dim;
    for (int64_t i = 0; i < e->n; i++) m += p->ok[i];
    if (m < 2) return 0;
    const float *u = untrained ? p->teacher0 : p->teacher, *g = untrained ? p->graph0 : p->graph;
    float *a = mm_malloc((size_t)(m * P) * sizeof(float)), *b = mm_malloc((size_t)(m * P) * sizeof(float));
    int64_t *rk = mm_malloc((size_t)m * sizeof(int64_t));
    double hit = 0;
    if (a && b && rk) {
        for (int64_t i = 0, j = 0; i < e->n; i++) {
            if (!p->ok[i]) continue;
            memcpy(a + j * P, u + i * P, (size_t)P * sizeof(float));
            memcpy(b + j * P, g + i * P, (size_t)P * sizeof(float));
            j++;
        }
        mm_retrieval_ranks(a, b, m, P, rk);
        for (int64_t i = 0; i < m; i++) hit += rk[i] == 0;
    }
    if (a) mm_free_sized(a, (size_t)(m * P) * sizeof(float));
    if (b) mm_free_sized(b, (size_t)(m * P) * sizeof(float));
    if (rk) mm_free_sized(rk, (size_t)m * sizeof(int64_t));
    return hit / (double)m;
}

mm_status mm_acml_write_heldout(mm_acml_trainer *tr, const char *path, double top1[2])
{
    mm_dist *d = tr->d;
    if (tr->n_held < 2) {
        mm_status st = MM_ERR(MM_ERR_CONFIG, "the run holds out %lld molecules: nothing to evaluate", (long long)tr->n_held);
        mm_error_hint("set acml.holdout_fraction so that the scaffold split keeps molecules aside");
        return mm_dist_agree(d, st);
    }
    const mm_acml_config *A = &tr->job.acml;
    bool has[MM_EVAL_N_TEACHERS] = {false};
    int64_t dim[MM_EVAL_N_TEACHERS] = {0};
    for (int k = 0; k < tr->n_teachers; k++) {
        has[tr->teacher[k].kind] = true;
        dim[tr->teacher[k].kind] = A->head_widths[A->n_head_widths - 1];
    }
    char ckpt[1200];
    snprintf(ckpt, sizeof ckpt, "%s/step_%012lld.h5", tr->ckpt_dir, (long long)tr->step);
    mm_eval_emb e;
    memset(&e, 0, sizeof e);
    mm_model untrained;
    memset(&untrained, 0, sizeof untrained);
    mm_status st = mm_eval_emb_alloc(&e, tr->n_held, has, dim);
    if (st == MM_OK) {
        e.step = tr->step;
        memcpy(e.index, tr->held_idx, (size_t)tr->n_held * sizeof(int64_t));
        e.dataset = mm_ds_strdup(tr->job.train.dataset);
        e.checkpoint = mm_ds_strdup(ckpt);
        if (!e.dataset || !e.checkpoint) st = MM_ERR(MM_ERR_NOMEM, "held-out embeddings");
    }
    st = mm_dist_agree(d, st);
    if (st == MM_OK) st = embed_held(tr, &tr->student, &e, false);
    /* the untrained model: the same construction from the same seed (step 0) */
    if (st == MM_OK) {
        mm_acml_head ht[MM_N_TEACHERS], hg[MM_N_TEACHERS];
        memcpy(ht, tr->head_t, sizeof ht);
        memcpy(hg, tr->head_g, sizeof hg);
        st = mm_dist_agree(d, mm_acml_build_student(tr, &untrained));
        if (st == MM_OK) st = embed_held(tr, &untrained, &e, true);
        memcpy(tr->head_t, ht, sizeof ht);
        memcpy(tr->head_g, hg, sizeof hg);
    }
    if (st == MM_OK) st = mm_dist_agree(d, d->rank == 0 ? mm_eval_emb_write(path, &e) : MM_OK);
    if (st == MM_OK && top1) {
        const mm_eval_pairing *p = &e.t[tr->teacher[0].kind];
        top1[0] = top1_of(&e, p, false);
        top1[1] = top1_of(&e, p, true);
    }
    mm_model_destroy(&untrained);
    mm_eval_emb_free(&e);
    return st;
}
