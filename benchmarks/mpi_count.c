/* mpi_count: an MPI profiling (PMPI) shim that counts, per MPI function, the calls, the
 * payload bytes and the wall time spent inside the call, for the performance model
 * (benchmarks/perf_model.py). Built as a shared library and preloaded into an unmodified
 * program:
 *
 *   mpicc -shared -fPIC -O2 benchmarks/mpi_count.c -o build/benchmarks/libmpi_count.so
 *   MMSA_MPI_COUNT_OUT=dir mpirun -n 2 -x LD_PRELOAD=build/benchmarks/libmpi_count.so prog ...
 *
 * At MPI_Finalize every rank writes dir/rank<r>.csv: function,calls,bytes,seconds (totals
 * over the run). Payload bytes follow log.jsonl's convention: the reduced buffer for
 * reductions, the gathered total for gathers, the message for point-to-point. The time
 * of a non-blocking call is the time to post it; the wait for it is counted under
 * MPI_Waitall / MPI_Testall.
 *
 * Per-step numbers: with MMSA_MPI_COUNT_MARK=<function> (e.g. MPI_Waitall, which
 * mmsa_pretrain calls once per step to finish the gradient allreduce) the shim also takes
 * a snapshot of every counter, and of the wall clock, after each call of that function,
 * and writes them to dir/rank<r>_marks.csv: mark,wall_s,function,calls,bytes,seconds
 * (cumulative). The differences between consecutive marks are the steps, each with its
 * own wall time, so a reader can take medians over steps and leave out start-up. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    F_ALLREDUCE, F_IALLREDUCE, F_ALLGATHER, F_ALLGATHERV, F_REDUCE_SCATTER, F_BCAST, F_REDUCE, F_GATHER,
    F_ALLTOALLV, F_EXSCAN, F_BARRIER, F_SEND, F_ISEND, F_RECV, F_WAITALL, F_TESTALL, F_COUNT
};
static const char *names[F_COUNT] = {"MPI_Allreduce", "MPI_Iallreduce", "MPI_Allgather", "MPI_Allgatherv",
                                     "MPI_Reduce_scatter", "MPI_Bcast", "MPI_Reduce", "MPI_Gather",
                                     "MPI_Alltoallv", "MPI_Exscan", "MPI_Barrier", "MPI_Send",
                                     "MPI_Isend", "MPI_Recv", "MPI_Waitall", "MPI_Testall"};
static long long calls[F_COUNT];
static double bytes[F_COUNT], secs[F_COUNT];

/* snapshots after each call of the marked function */
typedef struct {
    double wall;
    long long calls[F_COUNT];
    double bytes[F_COUNT], secs[F_COUNT];
} snapshot;
static int mark_fn = -2; /* -2: not looked up yet, -1: none */
static snapshot *marks;
static int n_marks, cap_marks;

static void maybe_mark(int f)
{
    if (mark_fn == -2) {
        const char *m = getenv("MMSA_MPI_COUNT_MARK");
        mark_fn = -1;
        for (int i = 0; m && i < F_COUNT; i++)
            if (!strcmp(m, names[i])) mark_fn = i;
    }
    if (f != mark_fn) return;
    if (n_marks == cap_marks) {
        int cap = cap_marks ? 2 * cap_marks : 256;
        snapshot *t = realloc(marks, (size_t)cap * sizeof *t);
        if (!t) return;
        marks = t;
        cap_marks = cap;
    }
    snapshot *s = &marks[n_marks++];
    s->wall = PMPI_Wtime();
    memcpy(s->calls, calls, sizeof calls);
    memcpy(s->bytes, bytes, sizeof bytes);
    memcpy(s->secs, secs, sizeof secs);
}

static double type_bytes(MPI_Datatype t, long long n)
{
    int s = 0;
    PMPI_Type_size(t, &s);
    return (double)s * (double)n;
}

static long long sum_counts(const int *c, MPI_Comm comm)
{
    int p = 1;
    PMPI_Comm_size(comm, &p);
    long long s = 0;
    for (int i = 0; i < p; i++) s += c[i];
    return s;
}

#define TIMED(f, b, call)                      \
    do {                                       \
        double t0_ = PMPI_Wtime();             \
        int rc_ = (call);                      \
        secs[f] += PMPI_Wtime() - t0_;         \
        calls[f]++;                            \
        bytes[f] += (b);                       \
        maybe_mark(f);                         \
        return rc_;                            \
    } while (0)

int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    TIMED(F_ALLREDUCE, type_bytes(t, n), PMPI_Allreduce(s, r, n, t, op, c));
}

int MPI_Iallreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c, MPI_Request *q)
{
    TIMED(F_IALLREDUCE, type_bytes(t, n), PMPI_Iallreduce(s, r, n, t, op, c, q));
}

int MPI_Allgather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, MPI_Comm c)
{
    int p = 1;
    PMPI_Comm_size(c, &p);
    TIMED(F_ALLGATHER, type_bytes(rt, (long long)rn * p), PMPI_Allgather(s, sn, st, r, rn, rt, c));
}

int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int *rc, const int *disp, MPI_Datatype rt,
                   MPI_Comm c)
{
    TIMED(F_ALLGATHERV, type_bytes(rt, sum_counts(rc, c)), PMPI_Allgatherv(s, sn, st, r, rc, disp, rt, c));
}

int MPI_Reduce_scatter(const void *s, void *r, const int *rc, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    TIMED(F_REDUCE_SCATTER, type_bytes(t, sum_counts(rc, c)), PMPI_Reduce_scatter(s, r, rc, t, op, c));
}

int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c)
{
    TIMED(F_BCAST, type_bytes(t, n), PMPI_Bcast(b, n, t, root, c));
}

int MPI_Reduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c)
{
    TIMED(F_REDUCE, type_bytes(t, n), PMPI_Reduce(s, r, n, t, op, root, c));
}

int MPI_Gather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt, int root, MPI_Comm c)
{
    int p = 1;
    PMPI_Comm_size(c, &p);
    TIMED(F_GATHER, type_bytes(st, (long long)sn * p), PMPI_Gather(s, sn, st, r, rn, rt, root, c));
}

int MPI_Alltoallv(const void *s, const int *sc, const int *sd, MPI_Datatype st, void *r, const int *rc, const int *rd,
                  MPI_Datatype rt, MPI_Comm c)
{
    TIMED(F_ALLTOALLV, type_bytes(st, sum_counts(sc, c)), PMPI_Alltoallv(s, sc, sd, st, r, rc, rd, rt, c));
}

int MPI_Exscan(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    TIMED(F_EXSCAN, type_bytes(t, n), PMPI_Exscan(s, r, n, t, op, c));
}

int MPI_Barrier(MPI_Comm c)
{
    TIMED(F_BARRIER, 0.0, PMPI_Barrier(c));
}

int MPI_Send(const void *b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c)
{
    TIMED(F_SEND, type_bytes(t, n), PMPI_Send(b, n, t, dst, tag, c));
}

int MPI_Isend(const void *b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c, MPI_Request *q)
{
    TIMED(F_ISEND, type_bytes(t, n), PMPI_Isend(b, n, t, dst, tag, c, q));
}

int MPI_Recv(void *b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Status *st)
{
    TIMED(F_RECV, 0.0, PMPI_Recv(b, n, t, src, tag, c, st));
}

int MPI_Waitall(int n, MPI_Request *q, MPI_Status *st)
{
    TIMED(F_WAITALL, 0.0, PMPI_Waitall(n, q, st));
}

int MPI_Testall(int n, MPI_Request *q, int *flag, MPI_Status *st)
{
    TIMED(F_TESTALL, 0.0, PMPI_Testall(n, q, flag, st));
}

int MPI_Finalize(void)
{
    const char *dir = getenv("MMSA_MPI_COUNT_OUT");
    if (dir && *dir) {
        int rank = 0;
        PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
        char path[1024];
        snprintf(path, sizeof path, "%s/rank%d.csv", dir, rank);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "function,calls,bytes,seconds\n");
            for (int i = 0; i < F_COUNT; i++)
                if (calls[i]) fprintf(f, "%s,%lld,%.0f,%.6f\n", names[i], calls[i], bytes[i], secs[i]);
            fclose(f);
        } else {
            fprintf(stderr, "[rank %d] mpi_count: cannot write %s\n", rank, path);
        }
        if (n_marks > 0) {
            snprintf(path, sizeof path, "%s/rank%d_marks.csv", dir, rank);
            f = fopen(path, "w");
            if (f) {
                fprintf(f, "mark,wall_s,function,calls,bytes,seconds\n");
                for (int k = 0; k < n_marks; k++)
                    for (int i = 0; i < F_COUNT; i++)
                        fprintf(f, "%d,%.6f,%s,%lld,%.0f,%.6f\n", k, marks[k].wall - marks[0].wall, names[i],
                                marks[k].calls[i], marks[k].bytes[i], marks[k].secs[i]);
                fclose(f);
            } else {
                fprintf(stderr, "[rank %d] mpi_count: cannot write %s\n", rank, path);
            }
        }
    }
    free(marks);
    return PMPI_Finalize();
}
