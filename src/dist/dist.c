/* dist.c: owned communicator and basic collectives. */
#include "mmsa/dist.h"

#include <limits.h>
#include <string.h>

const char *const mm_comm_kind_names[MM_COMM_KINDS] = {"grad_allreduce", "allgather", "reduce_scatter",
                                                       "norm_allreduce", "bank",      "loss_cols",
                                                       "other"};

void mm_dist_reset_counters(mm_dist *d)
{
    memset(d->bytes, 0, sizeof d->bytes);
    memset(d->calls, 0, sizeof d->calls);
}

mm_status mm_dist_init(mm_dist *d, MPI_Comm parent)
{
    memset(d, 0, sizeof *d);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) return MM_ERR(MM_ERR_MPI, "MPI is not initialised (call MPI_Init first)");
    MM_MPI_CALL(MPI_Comm_dup(parent, &d->comm));
    MM_MPI_CALL(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
    MM_MPI_CALL(MPI_Comm_rank(d->comm, &d->rank));
    MM_MPI_CALL(MPI_Comm_size(d->comm, &d->size));
    return MM_OK;
}

void mm_dist_destroy(mm_dist *d)
{
    if (d->comm != MPI_COMM_NULL && d->comm != 0) MPI_Comm_free(&d->comm);
    d->comm = MPI_COMM_NULL;
}

mm_status mm_dist_count(size_t n, const char *what, int *out)
{
    if (n > (size_t)INT_MAX)
        return MM_ERR(MM_ERR_RANGE, "%s: %zu does not fit an MPI count (max %d)", what, n, INT_MAX);
    *out = (int)n;
    return MM_OK;
}

mm_status mm_dist_allreduce_double(mm_dist *d, double *buf, size_t n)
{
    int c = 0;
    MM_CALL(mm_dist_count(n, "allreduce (double)", &c));
    if (d->size == 1 || c == 0) return MM_OK;
    mm_dist_account(d, MM_COMM_OTHER, (double)n * sizeof(double));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, c, MPI_DOUBLE, MPI_SUM, d->comm));
    return MM_OK;
}

static mm_status col_max_float(void *ctx, float *buf, int64_t n)
{
    mm_dist *d = ctx;
    int c = 0;
    MM_CALL(mm_dist_count((size_t)n, "loss column maxima", &c));
    if (d->size == 1 || c == 0) return MM_OK;
    mm_dist_account(d, MM_COMM_LOSS_COLS, (double)n * sizeof(float));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, c, MPI_FLOAT, MPI_MAX, d->comm));
    return MM_OK;
}

static mm_status col_sum_double(void *ctx, double *buf, int64_t n)
{
    mm_dist *d = ctx;
    int c = 0;
    MM_CALL(mm_dist_count((size_t)n, "loss column sums", &c));
    if (d->size == 1 || c == 0) return MM_OK;
    mm_dist_account(d, MM_COMM_LOSS_COLS, (double)n * sizeof(double));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, c, MPI_DOUBLE, MPI_SUM, d->comm));
    return MM_OK;
}

mm_col_reducer mm_dist_col_reducer(mm_dist *d) { return (mm_col_reducer){col_max_float, col_sum_double, d}; }

mm_status mm_dist_allreduce_float(mm_dist *d, float *buf, size_t n)
{
    int c = 0;
    MM_CALL(mm_dist_count(n, "allreduce (float)", &c));
    if (d->size == 1 || c == 0) return MM_OK;
    mm_dist_account(d, MM_COMM_OTHER, (double)n * sizeof(float));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, c, MPI_FLOAT, MPI_SUM, d->comm));
    return MM_OK;
}

mm_status mm_dist_tape_allreduce(void *ctx, double *buf, int n)
{
    mm_dist *d = ctx;
    if (d->size == 1 || n == 0) return MM_OK;
    mm_dist_account(d, MM_COMM_NORM, (double)n * sizeof(double));
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, d->comm));
    return MM_OK;
}

void mm_dist_block(int64_t n, int size, int rank, int64_t *start, int64_t *count)
{
    int64_t base = n / size, extra = n % size;
    *start = rank * base + (rank < extra ? rank : extra);
    *count = base + (rank < extra ? 1 : 0);
}

mm_status mm_dist_agree(mm_dist *d, mm_status st)
{
    if (d->size == 1) {
        if (st != MM_OK) mm_error_set_agreed();
        return st;
    }
    int me = st != MM_OK ? d->rank : d->size, first = d->size;
    int rc = MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, d->comm);
    if (rc != MPI_SUCCESS) return mm_error_mpi(rc, "MPI_Allreduce (agreement)", __FILE__, __LINE__, __func__);
    if (first == d->size) return MM_OK;
    struct {
        int code;
        char msg[1024];
        char hint[512];
    } m = {0, "", ""};
    if (d->rank == first) {
        m.code = (int)st;
        snprintf(m.msg, sizeof m.msg, "%s", mm_error_message());
        snprintf(m.hint, sizeof m.hint, "%s", mm_error_hint_text());
    }
    rc = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, d->comm);
    if (rc != MPI_SUCCESS) return mm_error_mpi(rc, "MPI_Bcast (agreement)", __FILE__, __LINE__, __func__);
    if (d->rank != first) {
        mm_error_raise((mm_status)m.code, __FILE__, __LINE__, __func__, "%s (reported by rank %d)", m.msg, first);
        if (m.hint[0]) mm_error_hint("%s", m.hint);
    }
    mm_error_set_agreed();
    return (mm_status)m.code;
}
