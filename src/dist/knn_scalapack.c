/* knn_scalapack.c: the scalapack kNN backend (knn.h). S = X X^T by PSGEMM on the most
 * square Pr x Pc BLACS grid (Pr >= Pc), in column panels so a process holds at most tile_bytes of
 * S; each process shortlists and rescores (knn.c's contract) the columns of its panel
 * blocks; the partial top-k lists of a process row are merged by an MPI reduction; the
 * process-row leaders send each list to the rank that owns the row.
 *
 * Layout (b = block size, rows and features of X both in b-blocks):
 *  - X [N, dim] block-cyclic: global row i on process row (i / b) % Pr, feature p on
 *    process column (p / b) % Pc; the local piece is column-major (ScaLAPACK's).
 *  - R set of process row pr: the rows i with (i / b) % Pr == pr, as full normalised
 *    rows [nR, dim] (the query rows of this process's S rows, for exact rescoring);
 *    C set of process column pc: the rows with (i / b) % Pc == pc [nC, dim] (the
 *    columns). Panels start at multiples of b * Pc, so the local columns of a panel are
 *    rows of the C set. Memory per process: dim (N / Pr + N / Pc + N / P) floats.
 * Every rank may hold 0 rows; a process may own no block of S (small N): its local
 * sizes are 0 and it still takes part in every collective. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "knn_internal.h"
#include "mmsa/alloc.h"

/* BLACS and PBLAS have no Debian C header; these are their C and Fortran entry points. */
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ictxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ictxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ictxt);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
                      const int *icsrc, const int *ictxt, const int *lld, int *info);
extern void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                    const float *alpha, const float *a, const int *ia, const int *ja, const int *desca,
                    const float *b, const int *ib, const int *jb, const int *descb, const float *beta, float *c,
                    const int *ic, const int *jc, const int *descc);

/* Items i in [0, n) with (i / b) % P == p (numroc for 64-bit counts). */
static int64_t cyc_upto(int64_t n, int64_t b, int P, int p)
{
    int64_t per = b * P, rem = n % per - (int64_t)p * b;
    return (n / per) * b + (rem < 0 ? 0 : rem > b ? b : rem);
}
static int64_t cyc_range(int64_t lo, int64_t hi, int64_t b, int P, int p)
{
    return cyc_upto(hi, b, P, p) - cyc_upto(lo, b, P, p);
}
/* Global index of local item l of process p. */
static int64_t cyc_global(int64_t l, int64_t b, int P, int p) { return ((l / b) * P + p) * b + l % b; }

/* One entry of a partial list in the merge; padding is (-inf, INT64_MAX). */
typedef struct {
    double s;
    int64_t j;
} knn_entry;

static inline int entry_before(const knn_entry *a, const knn_entry *b)
{
    return a->s > b->s || (a->s == b->s && a->j < b->j);
}

/* MPI reduction: inout = the best k of the union of two sorted lists, per list. The
 * order is total, so the merge is associative and commutative: every reduction tree
 * gives the same lists. Merged in place from the back (no scratch to fail). */
static void merge_lists(void *in, void *inout, int *len, MPI_Datatype *dt)
{
    int sz = 0;
    MPI_Type_size(*dt, &sz);
    int k = sz / (int)sizeof(knn_entry);
    for (int l = 0; l < *len; l++) {
        const knn_entry *a = (const knn_entry *)in + (size_t)l * k;
        knn_entry *bb = (knn_entry *)inout + (size_t)l * k;
        int ia = 0, ib = 0;
        for (int t = 0; t < k; t++) {
            if (entry_before(&a[ia], &bb[ib])) ia++;
            else ib++;
        }
        int i = ia - 1, j = ib - 1;
        for (int t = k - 1; t >= 0; t--) {
            if (j < 0 || (i >= 0 && entry_before(&bb[j], &a[i]))) bb[t] = a[i--];
            else bb[t] = bb[j--];
        }
    }
}

typedef struct {
    int pr_n, pc_n, mr, mc; /* grid and my coordinates ("Row" order: rank = row * pc_n + col) */
    int64_t b;
    int64_t nR, nC, nF;     /* my R-set rows, C-set rows, local features of X */
    int64_t W, ncw;         /* panel width (global, a multiple of b * pc_n) and my local columns */
    bool alias;             /* C set == R set on this process */
} grid_plan;

static void plan_grid(const knn_call *c, grid_plan *g)
{
    int P = c->d->size, me = c->d->rank;
    /* The most square grid, taller than wide when P is not a square: splitting the
     * feature dimension over process columns makes PSGEMM exchange partial rows of X
     * for every panel, while process rows only need the panel's rows broadcast. */
    g->pc_n = 1;
    for (int q = 1; q * q <= P; q++)
        if (P % q == 0) g->pc_n = q;
    g->pr_n = P / g->pc_n;
    if (c->grid_rows > 0) {
        g->pr_n = c->grid_rows;
        g->pc_n = P / g->pr_n;
    }
    g->mr = me / g->pc_n;
    g->mc = me % g->pc_n;
    int64_t N = c->n_total, maxp = g->pr_n > g->pc_n ? g->pr_n : g->pc_n;
    g->b = c->block;
    if (g->b == 0) { /* several blocks per process, so the data really is cyclic */
        g->b = (N + 4 * maxp - 1) / (4 * maxp);
        if (g->b > 64) g->b = 64;
        if (g->b < 1) g->b = 1;
    }
    g->nR = cyc_upto(N, g->b, g->pr_n, g->mr);
    g->nC = cyc_upto(N, g->b, g->pc_n, g->mc);
    g->nF = cyc_upto(c->dim, g->b, g->pc_n, g->mc);
    g->alias = g->pr_n == g->pc_n && g->mr == g->mc;
    int64_t unit = g->b * g->pc_n, most_rows = cyc_upto(N, g->b, g->pr_n, 0);
    size_t tile_floats = c->tile_bytes / sizeof(float);
    int64_t m = most_rows ? (int64_t)(tile_floats / (size_t)(most_rows * g->b)) : 1;
    if (m < 1) m = 1;
    g->W = unit * m;
    int64_t cap = (N + unit - 1) / unit * unit;
    if (g->W > cap) g->W = cap;
    g->ncw = cyc_upto(g->W, g->b, g->pc_n, g->mc);
}

/* Send my rows that belong to each destination's R set (by_row) or C set into `recv`
 * (the destination's set in global order), through one Alltoallv of rows. */
static mm_status exchange_set(knn_call *c, const grid_plan *g, bool by_row, float *pack, float *recv, int *sc,
                              int *sd, int *rc, int *rd)
{
    mm_dist *d = c->d;
    int P = d->size, me = d->rank;
    int64_t lo = c->row0[me], hi = c->row0[me + 1], dim = c->dim, b = g->b, off = 0;
    int nP = by_row ? g->pr_n : g->pc_n;
    for (int q = 0; q < P; q++) {
        int qr = q / g->pc_n, qc = q % g->pc_n, p = by_row ? qr : qc;
        bool skip = !by_row && g->pr_n == g->pc_n && qr == qc; /* it reuses its R set */
        int64_t n = skip ? 0 : cyc_range(lo, hi, b, nP, p);
        sc[q] = (int)n;
        sd[q] = (int)off;
        if (n)
            for (int64_t i = lo; i < hi; i++)
                if ((i / b) % nP == p) memcpy(pack + (off++) * dim, c->xn + (i - lo) * dim, (size_t)dim * sizeof(float));
        if (q != me) c->st->bytes_sent += (double)n * (double)dim * sizeof(float);
    }
    int mine = by_row ? g->mr : g->mc;
    off = 0;
    for (int q = 0; q < P; q++) {
        int64_t n = (!by_row && g->alias) ? 0 : cyc_range(c->row0[q], c->row0[q + 1], b, nP, mine);
        rc[q] = (int)n;
        rd[q] = (int)off;
        off += n;
        if (q != me) c->st->bytes_recv += (double)n * (double)dim * sizeof(float);
    }
    mm_dist_account(d, MM_COMM_GATHER, (double)off * (double)dim * sizeof(float));
    MM_MPI_CALL(MPI_Alltoallv(pack, sc, sd, c->row_type, recv, rc, rd, c->row_type, d->comm));
    return MM_OK;
}

mm_status knn_scalapack(knn_call *c)
{
    mm_dist *d = c->d;
    int P = d->size, me = d->rank, k = c->k;
    int64_t N = c->n_total, dim = c->dim, n_local = c->n_local;
    grid_plan g;
    plan_grid(c, &g);
    c->st->grid_rows = g.pr_n;
    c->st->grid_cols = g.pc_n;
    int64_t b = g.b;
    int64_t lldA = g.nR > 1 ? g.nR : 1;
    /* every size below becomes a ScaLAPACK or MPI int */
    int ichk;
    mm_status st = mm_dist_count((size_t)(lldA * (g.nF > 1 ? g.nF : 1)), "kNN scalapack: local X", &ichk);
    if (st == MM_OK) st = mm_dist_count((size_t)(lldA * (g.ncw > 1 ? g.ncw : 1)), "kNN scalapack: local S panel", &ichk);
    if (st == MM_OK) st = mm_dist_count((size_t)(n_local * (g.pc_n > g.pr_n ? g.pc_n : g.pr_n)), "kNN scalapack: rows sent", &ichk);
    if (st == MM_OK) st = mm_dist_count((size_t)b, "kNN scalapack: block", &ichk);

    size_t rowb = (size_t)dim * sizeof(float), ib = (size_t)P * sizeof(int);
    size_t sz_R = (size_t)g.nR * rowb, sz_C = g.alias ? 0 : (size_t)g.nC * rowb;
    size_t sz_A = (size_t)lldA * (size_t)(g.nF > 1 ? g.nF : 1) * sizeof(float);
    size_t sz_S = (size_t)lldA * (size_t)(g.ncw > 1 ? g.ncw : 1) * sizeof(float);
    size_t sz_pack = (size_t)n_local * (size_t)(g.pc_n > g.pr_n ? g.pc_n : g.pr_n) * rowb;
    size_t sz_ent = (size_t)g.nR * (size_t)k * sizeof(knn_entry);
    size_t sz_lst = (size_t)g.nR * (size_t)k * sizeof(int64_t), sz_got = (size_t)n_local * (size_t)k * sizeof(int64_t);
    float *R = NULL, *C = NULL, *A = NULL, *S = NULL, *pack = NULL;
    knn_entry *ent = NULL;
    int64_t *lst = NULL, *got = NULL;
    int *sc = NULL, *sd = NULL, *rc = NULL, *rd = NULL;
    knn_rows s;
    memset(&s, 0, sizeof s);
    int ctxt = -1, handle = -1;
    MPI_Comm rowc = MPI_COMM_NULL;
    MPI_Datatype list_t = MPI_DATATYPE_NULL, res_t = MPI_DATATYPE_NULL;
    MPI_Op merge_op = MPI_OP_NULL;

    if (st == MM_OK) st = knn_alloc(&c->mem, sz_R, (void **)&R);
    if (st == MM_OK && !g.alias) st = knn_alloc(&c->mem, sz_C, (void **)&C);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_A, (void **)&A);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_S, (void **)&S);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_pack, (void **)&pack);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_ent, (void **)&ent);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_lst, (void **)&lst);
    if (st == MM_OK) st = knn_alloc(&c->mem, sz_got, (void **)&got);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&sc);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&sd);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&rc);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&rd);
    if (st == MM_OK) st = knn_rows_init(&s, &c->mem, g.nR, k, dim, R);
    if (g.alias) C = R;
    if (st == MM_OK) memset(S, 0, sz_S);
    MM_CALL_GOTO(st, knn_agree(d, st, "scalapack: scratch"), done);

    /* The grid on our communicator (not MPI_COMM_WORLD), and the row communicator of
     * the merge; "Row" order puts rank r at (r / Pc, r % Pc), checked below. */
    handle = Csys2blacs_handle(d->comm);
    ctxt = handle;
    Cblacs_gridinit(&ctxt, "Row", g.pr_n, g.pc_n);
    int gr = -1, gc = -1, gpr = 0, gpc = 0;
    Cblacs_gridinfo(ctxt, &gpr, &gpc, &gr, &gc);
    int iN0 = (int)N, iB0 = (int)b, i0 = 0;
    if (gpr != g.pr_n || gpc != g.pc_n || gr != g.mr || gc != g.mc ||
        numroc_(&iN0, &iB0, &gr, &i0, &gpr) != (int)g.nR || numroc_(&iN0, &iB0, &gc, &i0, &gpc) != (int)g.nC)
        st = MM_ERR(MM_ERR_INTERNAL, "kNN scalapack: BLACS put rank %d at (%d, %d) of %dx%d, expected (%d, %d) of %dx%d "
                    "(or numroc disagrees with the plan)",
                    me, gr, gc, gpr, gpc, g.mr, g.mc, g.pr_n, g.pc_n);
    int rcode = MPI_Comm_split(d->comm, g.mr, g.mc, &rowc);
    if (st == MM_OK && rcode != MPI_SUCCESS) st = mm_error_mpi(rcode, "MPI_Comm_split", __FILE__, __LINE__, __func__);
    if (st == MM_OK && (MPI_Type_contiguous(k * (int)sizeof(knn_entry), MPI_BYTE, &list_t) != MPI_SUCCESS ||
                        MPI_Type_commit(&list_t) != MPI_SUCCESS || MPI_Type_contiguous(k, MPI_INT64_T, &res_t) != MPI_SUCCESS ||
                        MPI_Type_commit(&res_t) != MPI_SUCCESS || MPI_Op_create(merge_lists, 1, &merge_op) != MPI_SUCCESS))
        st = MM_ERR(MM_ERR_MPI, "kNN scalapack: cannot build the merge datatype and operation (k = %d)", k);
    MM_CALL_GOTO(st, knn_agree(d, st, "scalapack: grid"), done);

    /* full normalised rows of my R and C sets */
    MM_CALL_GOTO(st, exchange_set(c, &g, true, pack, R, sc, sd, rc, rd), done);
    MM_CALL_GOTO(st, exchange_set(c, &g, false, pack, C, sc, sd, rc, rd), done);
    knn_free(&c->mem, &pack, sz_pack);
    for (int64_t il = 0; il < g.nR; il++) s.gid[il] = cyc_global(il, b, g.pr_n, g.mr);
    /* my block-cyclic piece of X, column-major [lldA, nF] */
    for (int64_t fl = 0; fl < g.nF; fl++) {
        int64_t p = cyc_global(fl, b, g.pc_n, g.mc);
        for (int64_t il = 0; il < g.nR; il++) A[il + fl * lldA] = R[il * dim + p];
    }

    int iN = (int)N, iD = (int)dim, iB = (int)b, iW = (int)g.W, izero = 0, ione = 1, info = 0;
    int lA = (int)lldA, descA[9], descS[9];
    descinit_(descA, &iN, &iD, &iB, &iB, &izero, &izero, &ctxt, &lA, &info);
    if (info == 0) descinit_(descS, &iN, &iW, &iB, &iB, &izero, &izero, &ctxt, &lA, &info);
    if (info != 0) st = MM_ERR(MM_ERR_INTERNAL, "kNN scalapack: descinit rejected argument %d", -info);
    MM_CALL_GOTO(st, knn_agree(d, st, "scalapack: descriptors"), done);
    const float one = 1.0f, zero = 0.0f;
    for (int64_t J0 = 0; J0 < N; J0 += g.W) {
        int w = (int)(N - J0 < g.W ? N - J0 : g.W), jb = (int)J0 + 1;
        /* S[:, J0 : J0 + w] = X X[J0 : J0 + w, :]^T */
        psgemm_("N", "T", &iN, &w, &iD, &one, A, &ione, &ione, descA, A, &jb, &ione, descA, &zero, S, &ione, &ione,
                descS);
        int64_t nc = cyc_upto(w, b, g.pc_n, g.mc), in_rows = 0;
        /* runs of globally consecutive columns: one block, or the whole panel on a Pr x 1 grid */
        int64_t step = g.pc_n == 1 ? (nc > 0 ? nc : 1) : b;
        for (int64_t c0 = 0; c0 < nc; c0 += step) {
            int64_t run = nc - c0 < step ? nc - c0 : step;
            int64_t j0 = J0 + cyc_global(c0, b, g.pc_n, g.mc); /* a C-set row: J0 is a multiple of b * Pc */
            int64_t cl = (j0 / (b * g.pc_n)) * b;             /* its index in the C set */
            for (int64_t q = c0; q < c0 + run; q += b) /* panel columns that are also my rows */
                if (((J0 + cyc_global(q, b, g.pc_n, g.mc)) / b) % g.pr_n == g.mr) in_rows += nc - q < b ? nc - q : b;
            knn_scan_block(&s, S + c0 * lldA, lldA, run, j0, C + cl * dim, dim);
        }
        /* PSGEMM's traffic: at least the X rows this process lacks for its block of S */
        c->st->bytes_psgemm_model +=
            (double)sizeof(float) * ((double)g.nR * (double)(dim - g.nF) + (double)nc * (double)dim - (double)in_rows * (double)g.nF);
    }
    c->st->rescored = s.rescored;

    /* partial lists, padded, merged across the process row onto column 0 */
    for (int64_t il = 0; il < g.nR; il++)
        for (int t = 0; t < k; t++) {
            knn_entry *e = ent + il * k + t;
            e->s = t < s.have[il] ? s.es[il * k + t] : -INFINITY;
            e->j = t < s.have[il] ? s.ej[il * k + t] : INT64_MAX;
        }
    if (g.pc_n > 1) {
        double lb = (double)sz_ent;
        if (g.mc == 0) c->st->bytes_recv += lb * (g.pc_n - 1);
        else c->st->bytes_sent += lb;
        mm_dist_account(d, MM_COMM_GATHER, lb);
        int rr = MPI_Reduce(g.mc == 0 ? MPI_IN_PLACE : (void *)ent, g.mc == 0 ? (void *)ent : NULL, (int)g.nR, list_t,
                            merge_op, 0, rowc);
        if (rr != MPI_SUCCESS) {
            st = mm_error_mpi(rr, "MPI_Reduce (merge of the partial lists)", __FILE__, __LINE__, __func__);
            goto done;
        }
    }
    for (int64_t i = 0; i < g.nR * k; i++) lst[i] = ent[i].j == INT64_MAX ? -1 : ent[i].j;

    /* lists to the owners: the leader of process row pr sends, to rank q, its R-set rows
     * in q's range (a contiguous run of the R set); q interleaves what it gets by row */
    int64_t lo = c->row0[me], hi = c->row0[me + 1];
    for (int q = 0; q < P; q++) {
        int64_t a = g.mc == 0 ? cyc_upto(c->row0[q], b, g.pr_n, g.mr) : 0;
        int64_t n = g.mc == 0 ? cyc_upto(c->row0[q + 1], b, g.pr_n, g.mr) - a : 0;
        sc[q] = (int)n;
        sd[q] = (int)a;
        if (q != me) c->st->bytes_sent += (double)n * k * sizeof(int64_t);
    }
    int64_t off = 0;
    for (int q = 0; q < P; q++) {
        int64_t n = q % g.pc_n == 0 ? cyc_range(lo, hi, b, g.pr_n, q / g.pc_n) : 0;
        rc[q] = (int)n;
        rd[q] = (int)off;
        off += n;
        if (q != me) c->st->bytes_recv += (double)n * k * sizeof(int64_t);
    }
    mm_dist_account(d, MM_COMM_GATHER, (double)off * k * sizeof(int64_t));
    int ra = MPI_Alltoallv(lst, sc, sd, res_t, got, rc, rd, res_t, d->comm);
    if (ra != MPI_SUCCESS) {
        st = mm_error_mpi(ra, "MPI_Alltoallv (lists to their owners)", __FILE__, __LINE__, __func__);
        goto done;
    }
    for (int q = 0; q < P; q++) sc[q] = 0; /* rows taken so far from each leader */
    for (int64_t i = lo; i < hi; i++) {
        int leader = (int)((i / b) % g.pr_n) * g.pc_n;
        const int64_t *src = got + (int64_t)(rd[leader] + sc[leader]++) * k;
        for (int t = 0; t < k; t++) {
            if (src[t] < 0 || src[t] >= N)
                st = MM_ERR(MM_ERR_INTERNAL, "kNN scalapack: row %lld got an incomplete list", (long long)i);
            c->out[(i - lo) * k + t] = src[t];
        }
    }

done:
    if (merge_op != MPI_OP_NULL) MPI_Op_free(&merge_op);
    if (list_t != MPI_DATATYPE_NULL) MPI_Type_free(&list_t);
    if (res_t != MPI_DATATYPE_NULL) MPI_Type_free(&res_t);
    if (rowc != MPI_COMM_NULL) MPI_Comm_free(&rowc);
    if (ctxt >= 0) Cblacs_gridexit(ctxt);
    if (handle >= 0) Cfree_blacs_system_handle(handle);
    knn_rows_free(&s, &c->mem);
    if (g.alias) C = NULL;
    knn_free(&c->mem, &rd, ib);
    knn_free(&c->mem, &rc, ib);
    knn_free(&c->mem, &sd, ib);
    knn_free(&c->mem, &sc, ib);
    knn_free(&c->mem, &got, sz_got);
    knn_free(&c->mem, &lst, sz_lst);
    knn_free(&c->mem, &ent, sz_ent);
    knn_free(&c->mem, &pack, sz_pack);
    knn_free(&c->mem, &S, sz_S);
    knn_free(&c->mem, &A, sz_A);
    knn_free(&c->mem, &C, sz_C);
    knn_free(&c->mem, &R, sz_R);
    return st;
}
