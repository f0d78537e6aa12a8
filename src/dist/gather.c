/* gather.c: allgather of rows with a reduce-scatter backward (dist.h). */
#include <string.h>

#include "mmsa/alloc.h"
#include "mmsa/dist.h"

typedef struct {
    mm_dist *d;
    int *counts, *displs; /* in floats, per rank */
} gather_ctx;

static mm_status counts_displs(mm_tape *t, mm_dist *d, const int64_t *counts, int64_t width,
                               int **c_out, int **d_out, int64_t *total)
{
    int *c, *o;
    MM_CALL(mm_tape_alloc(t, (size_t)d->size * sizeof(int), (void **)&c));
    MM_CALL(mm_tape_alloc(t, (size_t)d->size * sizeof(int), (void **)&o));
    int64_t off = 0;
    for (int r = 0; r < d->size; r++) {
        if (counts[r] < 0) return MM_ERR(MM_ERR_ARG, "allgather: rank %d has %lld rows", r, (long long)counts[r]);
        MM_CALL(mm_dist_count((size_t)(counts[r] * width), "allgather rows", &c[r]));
        MM_CALL(mm_dist_count((size_t)off, "allgather offset", &o[r]));
        off += counts[r] * width;
    }
    *c_out = c;
    *d_out = o;
    *total = off;
    return MM_OK;
}

static mm_status gather_backward(mm_node *nd)
{
    gather_ctx *c = nd->ctx;
    mm_tensor *x = nd->in[0], *y = nd->out;
    mm_dist *d = c->d;
    if (d->size == 1) {
        for (int64_t i = 0; i < x->n; i++) x->grad[i] += y->grad[i];
        return MM_OK;
    }
    /* Every rank's gradient of the gathered tensor, summed, restricted to my rows. */
    int mine_n = c->counts[d->rank];
    float *mine;
    MM_CALL(mm_tape_alloc(nd->tape, (size_t)(mine_n ? mine_n : 1) * sizeof(float), (void **)&mine));
    mm_dist_account(d, MM_COMM_REDUCE_SCATTER, (double)y->n * sizeof(float));
    MM_MPI_CALL(MPI_Reduce_scatter(y->grad, mine, c->counts, MPI_FLOAT, MPI_SUM, d->comm));
    for (int i = 0; i < mine_n; i++) x->grad[i] += mine[i];
    return MM_OK;
}

mm_status mm_dist_allgather_rows(mm_tape *t, mm_dist *d, mm_tensor *x, const int64_t *counts,
                                 mm_tensor **out)
{
    if (counts[d->rank] != x->shape[0])
        return MM_ERR(MM_ERR_ARG, "allgather: rank %d holds %lld rows but the batch layout says %lld", d->rank,
                      (long long)x->shape[0], (long long)counts[d->rank]);
    int64_t width = 1, total_vals = 0; /* not mm_cols: a rank may hold 0 rows */
    for (int k = 1; k < x->ndim; k++) width *= x->shape[k];
    gather_ctx *c;
    MM_CALL(mm_tape_alloc(t, sizeof *c, (void **)&c));
    c->d = d;
    MM_CALL(counts_displs(t, d, counts, width, &c->counts, &c->displs, &total_vals));
    int64_t shape[MM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = 0;
    for (int r = 0; r < d->size; r++) shape[0] += counts[r];
    /* Whether a gradient is wanted must agree on every rank (the backward is a
     * collective); it does when every rank runs the same model code. */
    mm_tensor *y;
    MM_CALL(mm_tensor_new(t, x->ndim, shape, mm_tape_wants_grad(t, 1, &x), &y));
    if (d->size == 1) {
        memcpy(y->data, x->data, (size_t)x->n * sizeof(float));
    } else {
        mm_dist_account(d, MM_COMM_GATHER, (double)y->n * sizeof(float));
        MM_MPI_CALL(MPI_Allgatherv(x->data, c->counts[d->rank], MPI_FLOAT, y->data, c->counts, c->displs,
                                   MPI_FLOAT, d->comm));
    }
    MM_CALL(mm_tape_record(t, "allgather_rows", gather_backward, y, 1, &x, c));
    *out = y;
    return MM_OK;
}

mm_status mm_dist_allgather_bytes(mm_dist *d, const void *in, size_t item_bytes, const int64_t *counts,
                                  void *out)
{
    int *c = mm_malloc((size_t)d->size * sizeof(int)), *o = mm_malloc((size_t)d->size * sizeof(int));
    mm_status st = MM_OK;
    if (!c || !o) {
        st = MM_ERR(MM_ERR_NOMEM, "allgather counts");
        goto done;
    }
    int64_t off = 0;
    for (int r = 0; r < d->size; r++) {
        MM_CALL_GOTO(st, mm_dist_count((size_t)counts[r] * item_bytes, "allgather bytes", &c[r]), done);
        MM_CALL_GOTO(st, mm_dist_count((size_t)off, "allgather offset", &o[r]), done);
        off += counts[r] * (int64_t)item_bytes;
    }
    if (d->size == 1) {
        memcpy(out, in, (size_t)c[0]);
    } else {
        mm_dist_account(d, MM_COMM_OTHER, (double)off);
        int rc = MPI_Allgatherv(in, c[d->rank], MPI_BYTE, out, c, o, MPI_BYTE, d->comm);
        if (rc != MPI_SUCCESS) st = mm_error_mpi(rc, "MPI_Allgatherv", __FILE__, __LINE__, __func__);
    }
done:
    mm_free_sized(c, (size_t)d->size * sizeof(int));
    mm_free_sized(o, (size_t)d->size * sizeof(int));
    return st;
}
