/* grad_sync.c: bucketed, overlapped gradient allreduce (grad_sync.h). */
#include "mmsa/grad_sync.h"

#include <string.h>
#include <time.h>

#include "mmsa/alloc.h"

#define FREE_ARR(p, n) mm_free_sized((p), (size_t)(n) * sizeof *(p))

void mm_grad_sync_destroy(mm_grad_sync *g)
{
    FREE_ARR(g->start, g->n_buckets);
    FREE_ARR(g->count, g->n_buckets);
    FREE_ARR(g->first_param, g->n_buckets);
    FREE_ARR(g->n_param, g->n_buckets);
    FREE_ARR(g->ready_at, g->n_buckets);
    FREE_ARR(g->req, g->n_buckets);
    if (g->p) FREE_ARR(g->first_use, g->p->count);
    memset(g, 0, sizeof *g);
}

mm_status mm_grad_sync_init(mm_grad_sync *g, mm_dist *d, mm_params *p, double bucket_bytes)
{
    memset(g, 0, sizeof *g);
    g->d = d;
    g->p = p;
    size_t per = (size_t)(bucket_bytes / sizeof(float));
    if (per < 1) per = 1;
    /* count buckets: consecutive parameters until the bucket holds >= per floats */
    int n = 0;
    size_t acc = 0;
    for (int i = 0; i < p->count; i++) {
        acc += p->info[i].n;
        if (acc >= per || i == p->count - 1) {
            n++;
            acc = 0;
        }
    }
    g->n_buckets = n;
    g->start = mm_calloc((size_t)n, sizeof *g->start);
    g->count = mm_calloc((size_t)n, sizeof *g->count);
    g->first_param = mm_calloc((size_t)n, sizeof *g->first_param);
    g->n_param = mm_calloc((size_t)n, sizeof *g->n_param);
    g->ready_at = mm_calloc((size_t)n, sizeof *g->ready_at);
    g->req = mm_calloc((size_t)n, sizeof *g->req);
    g->first_use = mm_calloc((size_t)(p->count ? p->count : 1), sizeof *g->first_use);
    if (!g->start || !g->count || !g->first_param || !g->n_param || !g->ready_at || !g->req || !g->first_use) {
        mm_grad_sync_destroy(g);
        return MM_ERR(MM_ERR_NOMEM, "gradient buckets");
    }
    int b = 0, first = 0;
    acc = 0;
    for (int i = 0; i < p->count; i++) {
        acc += p->info[i].n;
        if (acc >= per || i == p->count - 1) {
            const mm_param_info *lo = &p->info[first], *hi = &p->info[i];
            g->first_param[b] = first;
            g->n_param[b] = i - first + 1;
            g->start[b] = lo->offset;
            /* up to the next parameter's offset: the alignment padding (zeros) goes too */
            g->count[b] = (i + 1 < p->count ? p->info[i + 1].offset : p->total) - lo->offset;
            (void)hi;
            b++;
            first = i + 1;
            acc = 0;
        }
    }
    for (int k = 0; k < n; k++) g->req[k] = MPI_REQUEST_NULL;
    return MM_OK;
}

/* parameter whose gradient slice holds pointer q, or -1 */
static int param_of(const mm_params *p, const float *q)
{
    if (q < p->grad || q >= p->grad + p->total) return -1;
    size_t off = (size_t)(q - p->grad);
    int lo = 0, hi = p->count - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p->info[mid].offset <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static mm_status start_bucket(mm_grad_sync *g, int b)
{
    int c;
    MM_CALL(mm_dist_count(g->count[b], "gradient bucket", &c));
    mm_dist_account(g->d, MM_COMM_GRAD, (double)g->count[b] * sizeof(float));
    MM_MPI_CALL(MPI_Iallreduce(MPI_IN_PLACE, g->p->grad + g->start[b], c, MPI_FLOAT, MPI_SUM, g->d->comm, &g->req[b]));
    return MM_OK;
}

static mm_status on_node_done(void *ctx, mm_node *nd)
{
    mm_grad_sync *g = ctx;
    /* start every bucket that became final, in descending order only */
    while (g->next >= 0 && nd->seq <= g->ready_at[g->next]) {
        MM_CALL(start_bucket(g, g->next));
        g->overlap_started++;
        g->next--;
    }
    /* let the started reductions progress while the backward continues */
    if (g->next < g->n_buckets - 1) {
        int flag;
        double t0 = now_s();
        MM_MPI_CALL(MPI_Testall(g->n_buckets - 1 - g->next, g->req + g->next + 1, &flag, MPI_STATUSES_IGNORE));
        g->progress_s += now_s() - t0;
    }
    return MM_OK;
}

mm_status mm_grad_sync_begin(mm_grad_sync *g, mm_tape *t)
{
    g->next = g->n_buckets - 1;
    g->overlap_started = 0;
    g->progress_s = g->wait_s = 0;
    if (g->d->size == 1) return MM_OK; /* nothing to reduce */
    for (int i = 0; i < g->p->count; i++) g->first_use[i] = INT64_MAX;
    for (mm_node *nd = t->last; nd; nd = nd->prev)
        for (int k = 0; k < MM_NODE_MAX_IN; k++) {
            mm_tensor *x = nd->in[k];
            if (!x || !x->grad) continue;
            int i = param_of(g->p, x->grad);
            if (i >= 0 && nd->seq < g->first_use[i]) g->first_use[i] = nd->seq;
        }
    /* Ops that keep their inputs outside nd->in (more than MM_NODE_MAX_IN inputs) cannot hide a
     * parameter here: parameters enter the graph through linear, embedding, conv and
     * normalisation ops, which take them as inputs. A parameter never used has
     * first_use = INT64_MAX: its bucket is ready at once. */
    for (int b = 0; b < g->n_buckets; b++) {
        int64_t r = INT64_MAX;
        for (int i = g->first_param[b]; i < g->first_param[b] + g->n_param[b]; i++)
            if (g->first_use[i] < r) r = g->first_use[i];
        g->ready_at[b] = r;
    }
    t->node_done = on_node_done;
    t->node_done_ctx = g;
    return MM_OK;
}

mm_status mm_grad_sync_finish(mm_grad_sync *g, mm_tape *t)
{
    t->node_done = NULL;
    t->node_done_ctx = NULL;
    if (g->d->size == 1) return MM_OK;
    while (g->next >= 0) {
        MM_CALL(start_bucket(g, g->next));
        g->next--;
    }
    double t0 = now_s();
    MM_MPI_CALL(MPI_Waitall(g->n_buckets, g->req, MPI_STATUSES_IGNORE));
    g->wait_s = now_s() - t0;
    return MM_OK;
}
