/* knn.c: the exact kNN contract (normalisation, pair score, order, GEMM shortlist with
 * a proven margin), argument agreement, and the allgather and ring backends (knn.h).
 *
 * Why the GEMM cannot rank: BLIS blocking, PSGEMM's split of the inner dimension over
 * process columns and the system BLAS all sum the d products of a dot product in
 * different orders, so the last bits of a similarity depend on where it was computed.
 * Here a GEMM value g only decides whether a column is worth scoring exactly.
 *
 * The margin. For rows a, b of norm at most B (B = 1 + 2^-20 covers the rounding of
 * the normalisation), any float summation of the d products, plus the alpha/beta
 * updates, is within gamma_f(d + 4) |a||b| of the real dot product, gamma_f(n) =
 * n u / (1 - n u), u = 2^-24; the double score s is within gamma_d(d + 4) |a||b|.
 * So |g - s| <= delta = (gamma_f + gamma_d) B^2. Let G be the k-th largest g of a row
 * (self excluded). k columns have g >= G, hence s >= G - delta, so the k-th largest s
 * is >= G - delta, and every column of the true top k has g >= s - delta >= G - 2 delta.
 * The running G (over the columns seen so far; knn_scan sees a whole run of GEMM values
 * before it tests them) only grows, so testing each column against the running
 * G - 2 delta lets every true neighbour through, in any column order: the top k of the
 * columns scored exactly is the true top k. */
#include "mmsa/knn.h"

#include <math.h>
#include <string.h>

#include "knn_internal.h"
#include "mmsa/alloc.h"
#include "mmsa/blas.h"

#define KNN_TAG 7301
#define KNN_DEFAULT_TILE ((size_t)8 << 20)

const char *mm_knn_backend_name(mm_knn_backend b)
{
    switch (b) {
    case MM_KNN_ALLGATHER: return "allgather";
    case MM_KNN_RING: return "ring";
    case MM_KNN_SCALAPACK: return "scalapack";
    }
    return "?";
}

/* ---- the contract ---------------------------------------------------------------- */

void mm_knn_normalise(const float *x, int64_t n, int64_t dim, float *out)
{
    /* The same operations as mm_knn_cosine (hypergraph.c), so both see the same rows. */
    for (int64_t i = 0; i < n; i++) {
        const float *u = x + i * dim;
        double s = 0;
        for (int64_t j = 0; j < dim; j++) s += (double)u[j] * u[j];
        float nrm = (float)sqrt(s);
        float inv = 1.0f / (nrm > 1e-12f ? nrm : 1e-12f);
        for (int64_t j = 0; j < dim; j++) out[i * dim + j] = u[j] * inv;
    }
}

double mm_knn_dot(const float *a, const float *b, int64_t dim)
{
    /* Products of two floats are exact in double, so contraction into FMA cannot
     * change the result; the additions happen in index order. */
    double s = 0;
    for (int64_t p = 0; p < dim; p++) s += (double)a[p] * (double)b[p];
    return s;
}

static double knn_margin(int64_t dim)
{
    double n = (double)dim + 4, uf = ldexp(1.0, -24), ud = ldexp(1.0, -53);
    if (n * uf >= 0.5) return INFINITY;
    double gf = n * uf / (1 - n * uf), gd = n * ud / (1 - n * ud), b = 1 + ldexp(1.0, -20);
    return 2 * (gf + gd) * b * b;
}

/* a before b: larger score, then smaller index */
static inline int before(double sa, int64_t ja, double sb, int64_t jb) { return sa > sb || (sa == sb && ja < jb); }

/* ---- scratch accounting --------------------------------------------------------- */

mm_status knn_alloc(knn_mem *m, size_t bytes, void **out)
{
    *out = mm_malloc(bytes ? bytes : 1);
    if (!*out) return MM_ERR(MM_ERR_NOMEM, "kNN: cannot allocate %zu bytes of scratch", bytes);
    m->live += bytes;
    if (m->live > m->peak) m->peak = m->live;
    return MM_OK;
}

void knn_free(knn_mem *m, void *pp, size_t bytes)
{
    void **p = pp;
    if (!*p) return;
    mm_free_sized(*p, bytes ? bytes : 1);
    *p = NULL;
    m->live -= bytes;
}

/* ---- running top k -------------------------------------------------------------- */

mm_status knn_rows_init(knn_rows *s, knn_mem *m, int64_t n, int k, int64_t dim, const float *q)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->k = k;
    s->dim = dim;
    s->q = q;
    s->margin = knn_margin(dim);
    size_t nk = (size_t)n * (size_t)k;
    MM_CALL(knn_alloc(m, (size_t)n * sizeof(int64_t), (void **)&s->gid));
    MM_CALL(knn_alloc(m, nk * sizeof(float), (void **)&s->gk));
    MM_CALL(knn_alloc(m, nk * sizeof(double), (void **)&s->es));
    MM_CALL(knn_alloc(m, nk * sizeof(int64_t), (void **)&s->ej));
    MM_CALL(knn_alloc(m, (size_t)n * sizeof(int), (void **)&s->have));
    MM_CALL(knn_alloc(m, (size_t)n * sizeof(int), (void **)&s->seen));
    MM_CALL(knn_alloc(m, (size_t)n * sizeof(float), (void **)&s->thr));
    MM_CALL(knn_alloc(m, (size_t)n * sizeof(float), (void **)&s->kth));
    for (int64_t i = 0; i < n; i++) {
        s->have[i] = s->seen[i] = 0;
        s->thr[i] = s->kth[i] = -INFINITY;
    }
    return MM_OK;
}

void knn_rows_free(knn_rows *s, knn_mem *m)
{
    size_t nk = (size_t)s->n * (size_t)s->k;
    knn_free(m, &s->gid, (size_t)s->n * sizeof(int64_t));
    knn_free(m, &s->gk, nk * sizeof(float));
    knn_free(m, &s->es, nk * sizeof(double));
    knn_free(m, &s->ej, nk * sizeof(int64_t));
    knn_free(m, &s->have, (size_t)s->n * sizeof(int));
    knn_free(m, &s->seen, (size_t)s->n * sizeof(int));
    knn_free(m, &s->thr, (size_t)s->n * sizeof(float));
    knn_free(m, &s->kth, (size_t)s->n * sizeof(float));
}

/* Row i has seen GEMM value v: keep the k largest and the threshold they imply. */
static inline void knn_see(knn_rows *s, int64_t i, float v)
{
    int k = s->k, h = s->seen[i];
    float *gk = s->gk + i * k;
    if (h == k && !(v > gk[k - 1])) return;
    int pos = h < k ? h : k - 1;
    while (pos > 0 && v > gk[pos - 1]) {
        gk[pos] = gk[pos - 1];
        pos--;
    }
    gk[pos] = v;
    if (h < k) s->seen[i] = ++h;
    if (h == k) {
        s->kth[i] = gk[k - 1];
        double t = (double)gk[k - 1] - s->margin;
        float ft = (float)t;
        if ((double)ft > t) ft = nextafterf(ft, -INFINITY);
        s->thr[i] = ft;
    }
}

/* Column j (normalised row xj) passed the threshold of row i: score it exactly. */
static void knn_rescore(knn_rows *s, int64_t i, int64_t j, const float *xj)
{
    int k = s->k, h = s->have[i];
    double *es = s->es + i * k;
    int64_t *ej = s->ej + i * k;
    double e = mm_knn_dot(s->q + i * s->dim, xj, s->dim);
    s->rescored++;
    if (h == k && !before(e, j, es[k - 1], ej[k - 1])) return;
    int pos = h < k ? h : k - 1;
    while (pos > 0 && before(e, j, es[pos - 1], ej[pos - 1])) {
        es[pos] = es[pos - 1];
        ej[pos] = ej[pos - 1];
        pos--;
    }
    es[pos] = e;
    ej[pos] = j;
    if (h < k) s->have[i] = h + 1;
}

/* Largest of g[0 .. n-1], n <= KNN_CHUNK, in 8 lanes the compiler turns into SIMD max. */
#define KNN_CHUNK 64
static inline float chunk_max(const float *g, int64_t n)
{
    float m[8];
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int l = 0; l < 8; l++) m[l] = g[c + l] > m[l] ? g[c + l] : m[l];
    for (; c < n; c++) m[0] = g[c] > m[0] ? g[c] : m[0];
    float r = m[0];
    for (int l = 1; l < 8; l++) r = m[l] > r ? m[l] : r;
    return r;
}

void knn_scan(knn_rows *s, int64_t i, const float *g, int64_t gstride, int64_t ncols, int64_t j0,
              const float *x, int64_t ldx)
{
    /* Two passes: the GEMM values of the whole run first, so the threshold is already
     * that of every column seen so far when the exact scores are computed (a few per
     * row instead of k log(N / k) for a threshold that rises column by column). With
     * unit stride, runs of KNN_SEGMENT columns in chunks whose maximum decides whether
     * a pass needs to look at them one by one. */
    enum { KNN_SEGMENT = 4096 };
    int64_t self = s->gid[i];
    if (gstride != 1) {
        float last = s->kth[i]; /* in a register: the loop is one compare */
        for (int64_t c = 0; c < ncols; c++) {
            float v = g[c * gstride];
            if (v > last && j0 + c != self) {
                knn_see(s, i, v);
                last = s->kth[i];
            }
        }
        float thr = s->thr[i];
        for (int64_t c = 0; c < ncols; c++) {
            float v = g[c * gstride];
            if (!(v >= thr) || j0 + c == self) continue;
            knn_rescore(s, i, j0 + c, x + c * ldx);
        }
        return;
    }
    float cmax[KNN_SEGMENT / KNN_CHUNK];
    for (int64_t s0 = 0; s0 < ncols; s0 += KNN_SEGMENT) {
        int64_t sn = ncols - s0 < KNN_SEGMENT ? ncols - s0 : KNN_SEGMENT;
        int nch = (int)((sn + KNN_CHUNK - 1) / KNN_CHUNK);
        float last = s->kth[i];
        for (int ch = 0; ch < nch; ch++) {
            int64_t c0 = s0 + (int64_t)ch * KNN_CHUNK, cn = ncols - c0 < KNN_CHUNK ? ncols - c0 : KNN_CHUNK;
            cmax[ch] = chunk_max(g + c0, cn);
            if (!(cmax[ch] > last)) continue;
            for (int64_t c = c0; c < c0 + cn; c++)
                if (g[c] > last && j0 + c != self) {
                    knn_see(s, i, g[c]);
                    last = s->kth[i];
                }
        }
        float thr = s->thr[i];
        for (int ch = 0; ch < nch; ch++) {
            if (!(cmax[ch] >= thr)) continue;
            int64_t c0 = s0 + (int64_t)ch * KNN_CHUNK, cn = ncols - c0 < KNN_CHUNK ? ncols - c0 : KNN_CHUNK;
            for (int64_t c = c0; c < c0 + cn; c++)
                if (g[c] >= thr && j0 + c != self) knn_rescore(s, i, j0 + c, x + c * ldx);
        }
    }
}

void knn_scan_block(knn_rows *s, const float *g, int64_t ldg, int64_t ncols, int64_t j0, const float *x,
                    int64_t ldx)
{
    /* knn_scan for every row at once, walking the column-major block column by column
     * so the reads are contiguous. */
    for (int64_t c = 0; c < ncols; c++) {
        const float *col = g + c * ldg;
        for (int64_t i = 0; i < s->n; i++)
            if (col[i] > s->kth[i] && s->gid[i] != j0 + c) knn_see(s, i, col[i]);
    }
    for (int64_t c = 0; c < ncols; c++) {
        const float *col = g + c * ldg;
        for (int64_t i = 0; i < s->n; i++)
            if (col[i] >= s->thr[i] && s->gid[i] != j0 + c) knn_rescore(s, i, j0 + c, x + c * ldx);
    }
}

/* ---- agreement ------------------------------------------------------------------ */

mm_status knn_agree(mm_dist *d, mm_status local, const char *what)
{
    if (d->size == 1) return local;
    int v[2] = {(int)local, local != MM_OK ? d->rank : -1};
    mm_dist_account(d, MM_COMM_OTHER, sizeof v);
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, d->comm));
    if (local != MM_OK) return local;
    if (v[0] != MM_OK)
        return MM_ERR((mm_status)v[0], "kNN %s: rank %d failed (its own message says why)", what, v[1]);
    return MM_OK;
}

/* Local argument checks; the verdict is agreed across the ranks by the caller. */
static mm_status check_args(mm_knn_backend backend, mm_dist *d, const float *local, int64_t n_local,
                            const int64_t *counts, int64_t dim, int k, const mm_knn_opts *opts,
                            int64_t *knn_local, int64_t *n_total)
{
    if (backend != MM_KNN_ALLGATHER && backend != MM_KNN_RING && backend != MM_KNN_SCALAPACK)
        return MM_ERR(MM_ERR_ARG, "kNN: unknown backend %d (allgather, ring or scalapack)", (int)backend);
    if (dim < 1) return MM_ERR(MM_ERR_ARG, "kNN: embedding width %lld must be >= 1", (long long)dim);
    if (opts && opts->block < 0) return MM_ERR(MM_ERR_ARG, "kNN: ScaLAPACK block size %d must be >= 0", opts->block);
    if (opts && (opts->grid_rows < 0 || (opts->grid_rows > 0 && d->size % opts->grid_rows != 0)))
        return MM_ERR(MM_ERR_ARG, "kNN: ScaLAPACK grid rows %d must divide the %d ranks (0 = automatic)",
                      opts->grid_rows, d->size);
    int64_t n = 0, first = 0;
    for (int r = 0; r < d->size; r++) {
        if (counts[r] < 0) return MM_ERR(MM_ERR_ARG, "kNN: rank %d is said to hold %lld rows", r, (long long)counts[r]);
        if (r == d->rank) first = n;
        n += counts[r];
    }
    *n_total = n;
    if (counts[d->rank] != n_local)
        return MM_ERR(MM_ERR_ARG, "kNN: rank %d holds %lld rows but counts[%d] = %lld", d->rank, (long long)n_local,
                      d->rank, (long long)counts[d->rank]);
    if (k < 1 || k >= n)
        return MM_ERR(MM_ERR_ARG, "kNN: k = %d needs 1 <= k < N = %lld (the rows of all ranks)", k, (long long)n);
    if (n_local > 0 && (!local || !knn_local)) return MM_ERR(MM_ERR_ARG, "kNN: rank %d: NULL rows or output", d->rank);
    int c;
    MM_CALL(mm_dist_count((size_t)n, "kNN rows (N)", &c));
    for (int64_t i = 0; i < n_local * dim; i++)
        if (!isfinite(local[i]))
            return MM_ERR(MM_ERR_NUMERIC, "kNN: rank %d, local row %lld (global %lld) has a non-finite value",
                          d->rank, (long long)(i / dim), (long long)(first + i / dim));
    return MM_OK;
}

/* FNV-1a over the arguments that must be identical on every rank. */
static uint64_t call_hash(mm_knn_backend b, const int64_t *counts, int size, int64_t dim, int k,
                          const mm_knn_opts *o)
{
    uint64_t h = 1469598103934665603ull;
    int64_t v[6] = {(int64_t)b, dim, k, o ? o->block : 0, (int64_t)(o ? o->tile_bytes : 0), o ? o->grid_rows : 0};
    for (int i = 0; i < 6 + size; i++) {
        uint64_t x = (uint64_t)(i < 6 ? v[i] : counts[i - 6]);
        for (int byte = 0; byte < 8; byte++) {
            h ^= (x >> (8 * byte)) & 0xff;
            h *= 1099511628211ull;
        }
    }
    return h;
}

/* Like knn_agree, and also that every rank passed the same arguments: one allreduce of
 * {first failing rank, hash, -hash} (MAX) when every rank succeeded; a failing rank's
 * message is then shared by mm_dist_agree (a second collective only on that path). */
static mm_status agree_args(mm_dist *d, mm_status local, uint64_t hash)
{
    if (d->size == 1) return mm_dist_agree(d, local);
    int64_t v[3] = {local != MM_OK ? (int64_t)(d->size - d->rank) : 0, (int64_t)(hash >> 1), -(int64_t)(hash >> 1)};
    mm_dist_account(d, MM_COMM_OTHER, sizeof v);
    MM_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_INT64_T, MPI_MAX, d->comm));
    /* a rejected call (a non-finite embedding on one rank) fails on every rank with that
     * rank's message, so the program can report it once */
    if (v[0] != 0) {
        mm_dist_account(d, MM_COMM_OTHER, sizeof(int));
        MM_CALL(mm_dist_agree(d, local));
    }
    if (v[1] != -v[2])
        return MM_ERR(MM_ERR_ARG, "kNN: the ranks disagree on backend, counts, dim, k or options (a collective "
                                  "call needs the same values everywhere)");
    return MM_OK;
}

/* ---- allgather and ring ---------------------------------------------------------- */

/* Score every query row of s against cols [ncols, dim] (global indices j0..), GEMM
 * tile by tile in tile [tile_floats]; between tiles, MPI progress on reqs. */
static mm_status scan_columns(knn_call *c, knn_rows *s, float *tile, size_t tile_floats, const float *cols,
                              int64_t ncols, int64_t j0, MPI_Request *reqs, int nreq)
{
    int64_t nq = s->n, dim = c->dim;
    if (nq == 0 || ncols == 0) return MM_OK;
    int64_t mt = nq < 512 ? nq : 512;
    if ((size_t)mt > tile_floats) mt = (int64_t)tile_floats;
    int64_t nt = (int64_t)(tile_floats / (size_t)mt);
    if (nt > ncols) nt = ncols;
    for (int64_t i0 = 0; i0 < nq; i0 += mt) {
        int64_t mi = nq - i0 < mt ? nq - i0 : mt;
        for (int64_t c0 = 0; c0 < ncols; c0 += nt) {
            int64_t nc = ncols - c0 < nt ? ncols - c0 : nt;
            mm_sgemm(false, true, mi, nc, dim, 1.0f, s->q + i0 * dim, dim, cols + c0 * dim, dim, 0.0f, tile, nc);
            for (int64_t i = 0; i < mi; i++) knn_scan(s, i0 + i, tile + i * nc, 1, nc, j0 + c0, cols + c0 * dim, dim);
            if (nreq) {
                int flag;
                MM_MPI_CALL(MPI_Testall(nreq, reqs, &flag, MPI_STATUSES_IGNORE));
            }
        }
    }
    return MM_OK;
}

static void rows_to_out(const knn_rows *s, int64_t *out)
{
    memcpy(out, s->ej, (size_t)s->n * (size_t)s->k * sizeof(int64_t));
}

/* Floats of the similarity tile: tile_bytes, or less when nq queries against at most
 * ncols columns need less (scan_columns uses at most min(nq, 512) rows of ncols). */
static size_t tile_floats_of(const knn_call *c, int64_t nq, int64_t ncols)
{
    size_t f = c->tile_bytes / sizeof(float);
    size_t need = (size_t)(nq < 512 ? nq : 512) * (size_t)ncols;
    if (need < f) f = need;
    return f ? f : 1;
}

static mm_status knn_allgather(knn_call *c)
{
    mm_dist *d = c->d;
    size_t tf = tile_floats_of(c, c->n_local, c->n_total), all_bytes = (size_t)c->n_total * (size_t)c->dim * sizeof(float);
    knn_rows s;
    float *tile = NULL, *all = NULL;
    int *cnt = NULL, *dsp = NULL;
    size_t ib = (size_t)d->size * sizeof(int);
    mm_status st = knn_rows_init(&s, &c->mem, c->n_local, c->k, c->dim, c->xn);
    if (st == MM_OK) st = knn_alloc(&c->mem, tf * sizeof(float), (void **)&tile);
    if (st == MM_OK && d->size > 1) st = knn_alloc(&c->mem, all_bytes, (void **)&all);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&cnt);
    if (st == MM_OK) st = knn_alloc(&c->mem, ib, (void **)&dsp);
    for (int r = 0; st == MM_OK && r < d->size; r++) {
        cnt[r] = (int)c->counts[r]; /* N fits an int: checked */
        dsp[r] = (int)c->row0[r];
    }
    MM_CALL_GOTO(st, knn_agree(d, st, "allgather: scratch"), done);
    for (int64_t i = 0; i < c->n_local; i++) s.gid[i] = c->row0[d->rank] + i;
    const float *cols = c->xn;
    if (d->size > 1) {
        double out_b = (double)c->n_local * (double)c->dim * sizeof(float);
        double in_b = (double)(c->n_total - c->n_local) * (double)c->dim * sizeof(float);
        c->st->bytes_sent += out_b * (d->size - 1);
        c->st->bytes_recv += in_b;
        mm_dist_account(d, MM_COMM_GATHER, (double)all_bytes);
        int rc = MPI_Allgatherv(c->xn, cnt[d->rank], c->row_type, all, cnt, dsp, c->row_type, d->comm);
        if (rc != MPI_SUCCESS) {
            st = mm_error_mpi(rc, "MPI_Allgatherv", __FILE__, __LINE__, __func__);
            goto done;
        }
        cols = all;
    }
    MM_CALL_GOTO(st, scan_columns(c, &s, tile, tf, cols, c->n_total, 0, NULL, 0), done);
    rows_to_out(&s, c->out);
    c->st->rescored = s.rescored;
done:
    knn_free(&c->mem, &dsp, ib);
    knn_free(&c->mem, &cnt, ib);
    knn_free(&c->mem, &all, all_bytes);
    knn_free(&c->mem, &tile, tf * sizeof(float));
    knn_rows_free(&s, &c->mem);
    return st;
}

static mm_status knn_ring(knn_call *c)
{
    mm_dist *d = c->d;
    int P = d->size, me = d->rank, left = (me - 1 + P) % P, right = (me + 1) % P;
    int64_t maxc = 0;
    for (int r = 0; r < P; r++)
        if (c->counts[r] > maxc) maxc = c->counts[r];
    size_t tf = tile_floats_of(c, c->n_local, maxc), blk_bytes = (size_t)maxc * (size_t)c->dim * sizeof(float);
    knn_rows s;
    float *tile = NULL, *buf[2] = {NULL, NULL};
    mm_status st = knn_rows_init(&s, &c->mem, c->n_local, c->k, c->dim, c->xn);
    if (st == MM_OK) st = knn_alloc(&c->mem, tf * sizeof(float), (void **)&tile);
    for (int b = 0; b < 2 && st == MM_OK && P > 1; b++) st = knn_alloc(&c->mem, blk_bytes, (void **)&buf[b]);
    MM_CALL_GOTO(st, knn_agree(d, st, "ring: scratch"), done);
    for (int64_t i = 0; i < c->n_local; i++) s.gid[i] = c->row0[me] + i;
    /* Step t: this rank holds the block of rank (me - t) mod P, sends it right and
     * receives the next one from the left while it scores the one in hand. */
    const float *cur = c->xn;
    for (int t = 0; t < P; t++) {
        int owner = (me - t + P) % P, next = (me - t - 1 + 2 * P) % P;
        MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        float *nxt = buf[t % 2];
        int nreq = 0;
        if (t < P - 1) {
            double sb = (double)c->counts[owner] * (double)c->dim * sizeof(float);
            double rb = (double)c->counts[next] * (double)c->dim * sizeof(float);
            c->st->bytes_sent += sb;
            c->st->bytes_recv += rb;
            mm_dist_account(d, MM_COMM_GATHER, rb);
            int rc = MPI_Irecv(nxt, (int)c->counts[next], c->row_type, left, KNN_TAG, d->comm, &req[0]);
            if (rc == MPI_SUCCESS)
                rc = MPI_Isend(cur, (int)c->counts[owner], c->row_type, right, KNN_TAG, d->comm, &req[1]);
            if (rc != MPI_SUCCESS) {
                st = mm_error_mpi(rc, "MPI_Irecv/MPI_Isend (ring)", __FILE__, __LINE__, __func__);
                goto done;
            }
            nreq = 2;
        }
        mm_status sc = scan_columns(c, &s, tile, tf, cur, c->counts[owner], c->row0[owner], req, nreq);
        if (nreq) {
            int rc = MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS && sc == MM_OK) sc = mm_error_mpi(rc, "MPI_Waitall (ring)", __FILE__, __LINE__, __func__);
        }
        MM_CALL_GOTO(st, sc, done);
        cur = nxt;
    }
    rows_to_out(&s, c->out);
    c->st->rescored = s.rescored;
done:
    knn_free(&c->mem, &buf[1], blk_bytes);
    knn_free(&c->mem, &buf[0], blk_bytes);
    knn_free(&c->mem, &tile, tf * sizeof(float));
    knn_rows_free(&s, &c->mem);
    return st;
}

/* ---- entry points --------------------------------------------------------------- */

mm_status mm_knn_ex(mm_knn_backend backend, mm_dist *d, const float *local, int64_t n_local,
                    const int64_t *counts, int64_t dim, int k, const mm_knn_opts *opts,
                    int64_t *knn_local, mm_knn_stats *stats)
{
    if (!d || !counts) return MM_ERR(MM_ERR_ARG, "kNN: NULL communicator or counts");
    double t0 = MPI_Wtime();
    mm_knn_stats dummy;
    knn_call c;
    memset(&c, 0, sizeof c);
    c.st = stats ? stats : &dummy;
    memset(c.st, 0, sizeof *c.st);
    c.st->grid_rows = 1;
    c.st->grid_cols = d->size;
    c.row_type = MPI_DATATYPE_NULL;
    int64_t n_total = 0;
    mm_status st = check_args(backend, d, local, n_local, counts, dim, k, opts, knn_local, &n_total);

    c.d = d;
    c.n_local = n_local;
    c.n_total = n_total;
    c.dim = dim;
    c.counts = counts;
    c.k = k;
    c.tile_bytes = opts && opts->tile_bytes ? opts->tile_bytes : KNN_DEFAULT_TILE;
    c.block = opts ? opts->block : 0;
    c.grid_rows = opts ? opts->grid_rows : 0;
    c.out = knn_local;
    int64_t *row0 = NULL;
    float *xn = NULL;
    size_t row0_bytes = (size_t)(d->size + 1) * sizeof(int64_t), xn_bytes = (size_t)(n_local * dim) * sizeof(float);
    int idim = 0;
    /* the arguments and this scratch are agreed on in one collective */
    if (st == MM_OK) st = mm_dist_count((size_t)dim, "kNN embedding width", &idim);
    if (st == MM_OK) st = knn_alloc(&c.mem, row0_bytes, (void **)&row0);
    if (st == MM_OK) st = knn_alloc(&c.mem, xn_bytes, (void **)&xn);
    MM_CALL_GOTO(st, agree_args(d, st, call_hash(backend, counts, d->size, dim, k, opts)), done);
    row0[0] = 0;
    for (int r = 0; r < d->size; r++) row0[r + 1] = row0[r] + counts[r];
    c.row0 = row0;
    mm_knn_normalise(local, n_local, dim, xn);
    c.xn = xn;
    /* a row as one MPI item keeps the counts small (N instead of N * dim) */
    if (MPI_Type_contiguous(idim, MPI_FLOAT, &c.row_type) != MPI_SUCCESS || MPI_Type_commit(&c.row_type) != MPI_SUCCESS) {
        st = MM_ERR(MM_ERR_MPI, "kNN: cannot build the row datatype (%d floats)", idim);
        goto done;
    }
    switch (backend) {
    case MM_KNN_ALLGATHER: MM_CALL_GOTO(st, knn_allgather(&c), done); break;
    case MM_KNN_RING: MM_CALL_GOTO(st, knn_ring(&c), done); break;
    case MM_KNN_SCALAPACK: MM_CALL_GOTO(st, knn_scalapack(&c), done); break;
    }
done:
    if (c.row_type != MPI_DATATYPE_NULL) MPI_Type_free(&c.row_type);
    knn_free(&c.mem, &xn, xn_bytes);
    knn_free(&c.mem, &row0, row0_bytes);
    c.st->peak_scratch_bytes = c.mem.peak;
    c.st->seconds = MPI_Wtime() - t0;
    return st;
}

mm_status mm_knn(mm_knn_backend backend, mm_dist *d, const float *local, int64_t n_local,
                 const int64_t *counts, int64_t dim, int k, int64_t *knn_local, mm_knn_stats *stats)
{
    MM_CALL(mm_knn_ex(backend, d, local, n_local, counts, dim, k, NULL, knn_local, stats));
    return MM_OK;
}

mm_status mm_knn_allgather_lists(mm_dist *d, const int64_t *knn_local, const int64_t *counts, int k,
                                 int64_t *knn_global)
{
    if (k < 1) return MM_ERR(MM_ERR_ARG, "kNN lists: k = %d must be >= 1", k);
    MM_CALL(mm_dist_allgather_bytes(d, knn_local, (size_t)k * sizeof(int64_t), counts, knn_global));
    return MM_OK;
}
