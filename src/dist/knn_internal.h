/* knn_internal.h: what the kNN backends (knn.c, knn_scalapack.c) share: scratch
 * accounting, the running search state of a set of query rows, and the call context. */
#ifndef MMSA_KNN_INTERNAL_H
#define MMSA_KNN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmsa/knn.h"

/* Scratch held by one call, for stats.peak_scratch_bytes. */
typedef struct knn_mem {
    size_t live, peak;
} knn_mem;

mm_status knn_alloc(knn_mem *m, size_t bytes, void **out);
/* Frees and NULLs *p (of `bytes` bytes, as allocated); NULL is fine. */
void knn_free(knn_mem *m, void *pp, size_t bytes);

/* Running search of n query rows. Two lists per row: the largest GEMM values seen
 * (seen[i] <= k of them; they set the rescoring threshold) and the best exact scores
 * with their global indices (have[i] <= k; the answer). */
typedef struct knn_rows {
    int64_t n;
    int k;
    int64_t dim;
    const float *q;  /* [n, dim] normalised query rows */
    int64_t *gid;    /* [n] global index of each query row (for self exclusion) */
    float *gk;       /* [n, k] largest GEMM values, descending */
    double *es;      /* [n, k] exact scores of the best, in rank order */
    int64_t *ej;     /* [n, k] their global indices */
    int *seen;       /* [n] entries of gk filled */
    int *have;       /* [n] entries of es, ej filled */
    float *kth;      /* [n] gk[k-1] once seen[i] == k, else -inf (a column can only enter gk above it) */
    float *thr;      /* [n] rescore a column when its GEMM value >= thr: -inf until k are
                        seen, then gk[k-1] - margin rounded down */
    double margin;   /* 2 delta, delta bounding |GEMM value - exact score| */
    int64_t rescored;
} knn_rows;

mm_status knn_rows_init(knn_rows *s, knn_mem *m, int64_t n, int k, int64_t dim, const float *q);
void knn_rows_free(knn_rows *s, knn_mem *m);
/* Offer the columns j0 .. j0+ncols-1 to query row i: g [ncols] GEMM values with stride
 * gstride, x [ncols, ldx] the normalised column rows. */
void knn_scan(knn_rows *s, int64_t i, const float *g, int64_t gstride, int64_t ncols, int64_t j0,
              const float *x, int64_t ldx);
/* Offer the columns j0 .. j0+ncols-1 to every row: g column-major [n rows, ncols] with
 * leading dimension ldg (ScaLAPACK's local layout), x as above. */
void knn_scan_block(knn_rows *s, const float *g, int64_t ldg, int64_t ncols, int64_t j0, const float *x,
                    int64_t ldx);

/* One mm_knn_ex call, after its arguments were checked on every rank. */
typedef struct knn_call {
    mm_dist *d;
    const float *xn;       /* [n_local, dim] this rank's rows, normalised */
    int64_t n_local, n_total, dim;
    const int64_t *counts; /* [size] rows per rank */
    const int64_t *row0;   /* [size + 1] first global row of each rank, then N */
    int k;
    size_t tile_bytes;
    int block;
    int grid_rows;         /* 0 = automatic */
    MPI_Datatype row_type; /* dim contiguous floats */
    int64_t *out;          /* [n_local, k] */
    mm_knn_stats *st;
    knn_mem mem;
} knn_call;

/* Agree on a status across the ranks: every rank gets MM_OK only if every rank passed
 * MM_OK; a rank that passed MM_OK while another failed gets an error naming that rank. */
mm_status knn_agree(mm_dist *d, mm_status local, const char *what);

mm_status knn_scalapack(knn_call *c);

#endif
