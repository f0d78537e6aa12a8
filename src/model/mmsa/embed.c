/* embed.c: embeddings of a range of a dataset in eval mode, split over the ranks. */
#include <string.h>

#include "mmsa/model.h"

mm_status mm_model_embed_dataset(mm_model *m, mm_tape *t, mm_dataset *ds, mm_molset *scratch, unsigned modalities,
                                 mm_dist *d, int64_t start, int64_t end, int64_t chunk, mm_embed_fn fn, void *ctx)
{
    int64_t n = end - start, my0, mine;
    if (n < 0 || chunk < 1) return MM_ERR(MM_ERR_ARG, "embed: range [%lld, %lld), chunk %lld", (long long)start, (long long)end, (long long)chunk);
    mm_dist_block(n, d->size, d->rank, &my0, &mine);
    int64_t most = n / d->size + (n % d->size ? 1 : 0);
    mm_dist self;
    MM_CALL(mm_dist_init(&self, MPI_COMM_SELF));
    bool grad = t->grad_enabled, training = t->training;
    mm_status st = MM_OK;
    /* Reads of a file opened on a communicator are collective: every rank runs the same
     * number of chunks; a rank past its share reads an empty range. */
    for (int64_t c0 = 0; c0 < most; c0 += chunk) {
        int64_t cn = mine - c0 < chunk ? mine - c0 : chunk;
        if (cn < 0) cn = 0;
        int64_t first = start + my0 + (cn > 0 ? c0 : 0);
        MM_CALL_GOTO(st, mm_dataset_read_range(ds, first, first + cn, modalities, scratch), done);
        if (cn == 0) continue;
        MM_CALL_GOTO(st, mm_tape_reset(t), done);
        t->grad_enabled = false;
        t->training = false;
        mm_batch *b;
        int64_t count = cn;
        MM_CALL_GOTO(st, mm_batch_build(t, m, scratch, &self, &count, &b), done);
        mm_step_out o;
        MM_CALL_GOTO(st, mm_model_embed(m, t, b, 0, &o), done);
        MM_CALL_GOTO(st, fn(ctx, first - start, cn, &o, b), done);
    }
done:
    t->grad_enabled = grad;
    t->training = training;
    mm_dist_destroy(&self);
    return st;
}
