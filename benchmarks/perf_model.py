#!/usr/bin/env python3
"""Performance model of MMSA pre-training: step time on P ranks from compute per rank,
bytes and calls per collective, and measured MPI latency and bandwidth.

    benchmarks/perf_model.py --measure --dataset DATA.h5   # measure (about 10 minutes), then fit
    benchmarks/perf_model.py                               # fit again from the saved measurements
    benchmarks/perf_model.py --measure --only comm --dataset DATA.h5   # redo one part (pingpong,bench,comm)

Measurements (saved in --out, default benchmarks/out/perf_model/; loadavg.txt records the
machine's load average at each one):
  mpi_pingpong.csv        mpirun -n 2 mpi_pingpong: ping-pong latency alpha and bandwidth BW
                          (fit over 1 B .. 16 MiB), allreduce and allgather time against size;
  bench_b<b>_r<i>.csv     mpirun -n 1 bench_train, b = 32, 64, 128 molecules: step time by
                          component (the tape's profile scopes) and GEMM GFLOP/s;
  cal_N<N>_r<i>.csv       mpirun -n 1 bench_train with the encoders shrunk (embedding, head,
                          HGNN and bank sizes unchanged), N = 256, 512, 1024: the terms that
                          grow with the global batch, measured where they are large;
  bench2_b<b>_r<i>.csv    mpirun -n 2 bench_train, b per rank: the same components with every
                          core busy, and the time outside compute (collectives and waits);
  comm_s<S>/rank0.csv     mpirun -n 2 mmsa_pretrain --steps S under the PMPI counting shim
                          (mpi_count.c), for S and 2S: calls and bytes per MPI function per
                          step are the differences over the extra steps;
  comm_s<S>/log.jsonl     the same runs' own bytes per collective kind and step.

The model (seconds per step; b molecules per rank, N = P b the global batch, M anchors):

  T(P, b) = kappa_P [ T_local(b) + T_glob(N, P) + T_bank(N) / P + T_opt ] + T_comm(P, N)

  T_local  sum over data, the four encoders and heads/fusion/decoder of (a_c b + c_c);
  T_glob   kNN and losses: (q_c N^2 + a_c N) / P + c_c, HGNN a N / P + c: split by rows,
           each rank its N/P rows of every N x N product against the gathered columns
           (before issue 13 the losses and the HGNN were computed whole on every rank:
           the "replicated" projection keeps that for comparison);
  T_bank   memory bank, anchors partitioned over the ranks: (a N + c) / P;
  T_opt    optimiser and unprofiled loop time, constant per rank (parameters replicated);
  kappa_P  compute slowdown when every core runs a rank (memory bandwidth, and here the
           other work on the machine): 1 at P = 1; at P = 2, (step - time inside MPI) of
           the counting run over the model's 1-rank compute; projections use 1;
  T_comm   per step; the gradient term is scaled by (1 - h), h the share of the gradient
           allreduce hidden behind the backward as bench_train measures it at 2 ranks
           (1 - time waited / time alone, a lower bound; 0 when the waits are longer):
           gradients  ring allreduce of G bytes in n_g buckets:
                      (1 - h) [2 (P-1)/P G / BW + 2 (P-1) lambda n_g]
           gathers    ring allgather of the embeddings (A N bytes, n_a calls) and the
                      reduce-scatter of their gradients (R N bytes, n_r calls):
                      (P-1)/P (A + R) N / BW + (P-1) lambda (n_a + n_r)
           small      BatchNorm statistics, memory-bank reductions, the column statistics of
                      the split losses, scalars (n_s allreduces, S N + S0 bytes), recursive doubling: ceil(log2 P) (lambda n_s + (S N + S0) / BW)
           lambda is the cost of one message step: the ping-pong alpha on an idle
           interconnect; on this shared machine at P = 2 it is calibrated from the time
           inside MPI in the counting run less the bandwidth terms, per message step
           (there every collective also waits for the other rank to be scheduled).
  Bytes and call counts per step come from the counting runs (A, R, S per molecule of N;
  G, S0 and the counts constant). Projections to 64 and 1024 ranks use --proj-alpha-us and
  --proj-bw-gbs (default 2 us and 10 GB/s, a 100 Gb/s-class fabric) and kappa = 1.
"""
import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = ["data", "graph encoder (GIN)", "conformer encoder (SchNet)", "image encoder (CNN)", "fingerprint encoder",
         "heads, fusion, decoder"]
KNN = ["kNN"]                     # N x N work split by rows: each rank queries its own b rows
QUAD = ["losses"]                 # N x N work, split by rows since issue 13 (replicated before)
LIN_REPL = ["HGNN"]               # linear in N, split by rows since issue 13 (replicated before)
BANK = ["memory bank"]            # linear in N, divided by P
CONST = ["optimiser", "other"]
COMPUTE = LOCAL + KNN + QUAD + LIN_REPL + BANK + CONST
KINDS = ["grad_allreduce", "allgather", "reduce_scatter", "norm_allreduce", "bank", "loss_cols", "other"]
# encoders shrunk for the calibration of the global-batch terms; every width those terms
# depend on (embed_dim, proj_*, hg_hidden, decoder, gate, n_anchors) stays as in the job
SHRINK = ["model.gin_hidden=16", "model.gin_layers=1", "model.schnet_hidden=8", "model.schnet_filters=8",
          "model.schnet_interactions=1", "model.cnn_channels=[4,4,4,4]", "model.fp_hidden=16"]


def env():
    e = dict(os.environ)
    e.update(BLIS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return e


def run(cmd, env_=None, quiet=False):
    print("  $ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, env=env_ or env(), stdout=subprocess.DEVNULL if quiet else None)
    if r.returncode != 0:
        sys.exit(f"perf_model: command failed with exit {r.returncode}: {' '.join(cmd)}")


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def build(a):
    os.makedirs(os.path.join(REPO, "build/benchmarks"), exist_ok=True)
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-Iinclude"]
    run(["mpicc", *flags, "benchmarks/mpi_pingpong.c", "-o", "build/benchmarks/mpi_pingpong"])
    run(["mpicc", *flags, "-shared", "-fPIC", "benchmarks/mpi_count.c", "-o", "build/benchmarks/libmpi_count.so"])
    if a.bench_train == "build/benchmarks/bench_train" and a.bin == "bin":
        run(["make", "--no-print-directory", "-s", "build/benchmarks/bench_train", "bin/mmsa_pretrain"])


def bench(a, out, name, ranks, batch, extra, steps):
    d = os.path.join(out, name + ".d")
    os.makedirs(d, exist_ok=True)
    e = env()
    e["MMSA_BENCH_OUT"] = d
    sets = [x for kv in extra + a.set for x in ("--set", kv)]
    run(["mpirun", "-n", str(ranks), a.bench_train, "--dataset", a.dataset, "--job", a.job,
         "--steps", str(steps), "--warmup", "2", "--set", f"train.batch_size={batch}", *sets], e, quiet=True)
    os.replace(os.path.join(d, "bench_train.csv"), os.path.join(out, name + ".csv"))
    subprocess.run(["rm", "-rf", d])
    with open(os.path.join(out, "loadavg.txt"), "a") as f:
        f.write(f"{name} {loadavg():.2f}\n")


def measure(a, out):
    build(a)
    parts = a.only.split(",")
    if "all" in parts:
        open(os.path.join(out, "loadavg.txt"), "w").close()
    print(f"perf_model: measuring {a.only} into {out} (load average {loadavg():.2f})", flush=True)
    if "all" in parts or "pingpong" in parts:
        e = env()
        e["MMSA_BENCH_OUT"] = out
        run(["mpirun", "-n", "2", "build/benchmarks/mpi_pingpong", "--reps", "9"], e)
        with open(os.path.join(out, "loadavg.txt"), "a") as f:
            f.write(f"mpi_pingpong {loadavg():.2f}\n")
    # repeats outermost, so that every configuration sees the machine in the same states
    for i in range(a.repeats if "all" in parts or "bench" in parts else 0):
        for b in a.batches:
            bench(a, out, f"bench_b{b}_r{i}", 1, b, [], a.steps)
        for n in a.cal_sizes:
            bench(a, out, f"cal_N{n}_r{i}", 1, n, SHRINK, 2)
        bench(a, out, f"bench2_b{a.comm_batch}_r{i}", 2, 2 * a.comm_batch, [], a.steps)
    if not ("all" in parts or "comm" in parts):
        return
    # 2 ranks under the counting shim: a snapshot of the counters at every MPI_Waitall,
    # which mmsa_pretrain calls once per step (the end of the gradient allreduce)
    shim = os.path.join(REPO, "build/benchmarks/libmpi_count.so")
    d = os.path.join(out, "comm")
    subprocess.run(["rm", "-rf", d])
    os.makedirs(d)
    e = env()
    e.update(MMSA_MPI_COUNT_OUT=d, MMSA_MPI_COUNT_MARK="MPI_Waitall")
    sets = [x for kv in a.set for x in ("--set", kv)]
    run(["mpirun", "-n", "2", "-x", "MMSA_MPI_COUNT_OUT", "-x", "MMSA_MPI_COUNT_MARK", "-x", f"LD_PRELOAD={shim}",
         os.path.join(a.bin, "mmsa_pretrain"), a.job, "--quiet", "--steps", str(2 + a.comm_steps), "--set", f"train.dataset={a.dataset}",
         "--set", f"train.run_dir={d}/run", "--set", f"train.batch_size={2 * a.comm_batch}", "--set", "train.holdout=0",
         "--set", "train.log_every=1", "--set", "checkpoint.every=0", "--set", "checkpoint.resume=false", *sets], e,
        quiet=True)
    for f in ("log.jsonl", "job.yaml"):
        os.replace(os.path.join(d, "run", f), os.path.join(d, f))
    subprocess.run(["rm", "-rf", os.path.join(d, "run")])
    with open(os.path.join(out, "loadavg.txt"), "a") as f:
        f.write(f"comm {loadavg():.2f}\n")


# ---------------------------------------------------------------- reading
def read_pingpong(out):
    rows = list(csv.DictReader(open(os.path.join(out, "mpi_pingpong.csv"))))
    fit = [r for r in rows if r["kind"] == "fit"][0]
    return float(fit["time_us"]) * 1e-6, float(fit["mb_per_s"]) * 1e6, rows


def read_bench_files(out, prefix, keys, repeats):
    """{key: {component: median s/step, 'step': .., 'gflop': GEMM GFLOP per step, 'gflops': rate}}"""
    res = {}
    for k in keys:
        per, steps, gf, rate, exposed, alone = {}, [], [], [], [], []
        for i in range(repeats):
            path = os.path.join(out, f"{prefix}{k}_r{i}.csv")
            if not os.path.exists(path):
                continue
            lines = open(path).read().splitlines()
            head = next(csv.DictReader(lines[:2]))
            st = float(head["step_s"])
            steps.append(st)
            gf.append(float(head["gemm_gflops"]) * st)
            rate.append(float(head["gemm_gflops"]))
            if head.get("grad_alone_ms"):  # bench_train since the overlap measurement
                exposed.append(float(head["grad_exposed_ms"]) * 1e-3)
                alone.append(float(head["grad_alone_ms"]) * 1e-3)
            for r in csv.DictReader(lines[2:]):
                per.setdefault(r["component"], []).append((float(r["fwd_ms"]) + float(r["bwd_ms"])) * 1e-3)
        if not steps:
            sys.exit(f"perf_model: no {prefix}{k}_r*.csv in {out} (run with --measure)")
        m = {c: statistics.median(v) for c, v in per.items()}
        m["step"] = statistics.median(steps)
        # time in no profiled scope (the loop, batching, waits for the gradient buckets)
        m["other"] = max(0.0, m["step"] - sum(v for c, v in m.items() if c not in ("other", "step")))
        m["gflop"], m["gflops"] = statistics.median(gf), statistics.median(rate)
        if alone:
            m["grad_exposed"], m["grad_alone"] = statistics.median(exposed), statistics.median(alone)
        res[k] = m
    return res


def read_comm(out, batch, skip=2):
    """Per step at 2 ranks from the counting run: {function: (calls, bytes, seconds inside)}
    (medians over the steps between consecutive marks, the first `skip` left out, then the
    mean of the two ranks), the wall time per step (same medians), and {kind: bytes} from
    the run's own log.jsonl."""
    per_rank, walls = [], []
    for r in (0, 1):
        snaps = {}
        for row in csv.DictReader(open(os.path.join(out, "comm", f"rank{r}_marks.csv"))):
            k = int(row["mark"])
            snaps.setdefault(k, {"wall": float(row["wall_s"])})[row["function"]] = (
                int(row["calls"]), float(row["bytes"]), float(row["seconds"]))
        ks = sorted(snaps)[skip:]
        if len(ks) < 2:
            sys.exit("perf_model: too few steps in the counting run (raise --comm-steps)")
        steps = [(snaps[k1], snaps[k0]) for k0, k1 in zip(ks, ks[1:])]
        fns = [f for f in snaps[ks[0]] if f != "wall"]
        per_rank.append({f: tuple(statistics.median(b[f][i] - a[f][i] for b, a in steps) for i in range(3))
                         for f in fns})
        walls.append(statistics.median(b["wall"] - a["wall"] for b, a in steps))
    per = {f: tuple(sum(p[f][i] for p in per_rank) / len(per_rank) for i in range(3)) for f in per_rank[0]}
    rows = [json.loads(l) for l in open(os.path.join(out, "comm", "log.jsonl")) if l.strip()]
    kinds = {k: statistics.median(r["comm_bytes"].get(k, 0) for r in rows[skip:]) for k in KINDS}
    return per, kinds, statistics.mean(walls)


# ---------------------------------------------------------------- fitting
def nnls(cols, y):
    """Least squares y ~ sum_j c_j cols[j] with every c_j >= 0 (active set; a few columns).
    Rows are weighted by 1/y so that small and large sizes count alike."""
    w = [1.0 / max(v, 1e-9) for v in y]
    cols = [[c[k] * w[k] for k in range(len(y))] for c in cols]
    y = [y[k] * w[k] for k in range(len(y))]
    active = list(range(len(cols)))
    while active:
        n = len(active)
        A = [[sum(cols[i][k] * cols[j][k] for k in range(len(y))) for j in active] for i in active]
        rhs = [sum(cols[i][k] * y[k] for k in range(len(y))) for i in active]
        M = [A[i][:] + [rhs[i]] for i in range(n)]
        for i in range(n):
            p = max(range(i, n), key=lambda r: abs(M[r][i]))
            M[i], M[p] = M[p], M[i]
            if abs(M[i][i]) < 1e-300:
                continue
            for r in range(n):
                if r != i:
                    f = M[r][i] / M[i][i]
                    M[r] = [x - f * z for x, z in zip(M[r], M[i])]
        sol = [M[i][n] / M[i][i] if abs(M[i][i]) > 1e-300 else 0.0 for i in range(n)]
        if all(v >= 0 for v in sol):
            out = [0.0] * len(cols)
            for i, j in enumerate(active):
                out[j] = sol[i]
            return out
        active = [j for i, j in enumerate(active) if sol[i] >= 0]
    return [0.0] * len(cols)


class Model:
    def __init__(self, full, cal, comm_batch, calls, kinds, step2, alpha, bw, hidden=0.0):
        self.alpha, self.bw, self.hidden = alpha, bw, hidden
        self.coef = {}
        for c in LOCAL:  # a b + c, from the full model only
            bs = sorted(full)
            self.coef[c] = nnls([[float(b) for b in bs], [1.0] * len(bs)], [full[b].get(c, 0.0) for b in bs])
        pts = [(float(b), full[b]) for b in full] + [(float(n), cal[n]) for n in cal]
        Ns = [p[0] for p in pts]
        for c in KNN + QUAD:
            self.coef[c] = nnls([[n * n for n in Ns], Ns, [1.0] * len(Ns)], [p[1].get(c, 0.0) for p in pts])
        for c in LIN_REPL + BANK:
            self.coef[c] = nnls([Ns, [1.0] * len(Ns)], [p[1].get(c, 0.0) for p in pts])
        for c in CONST:
            self.coef[c] = [statistics.median(full[b].get(c, 0.0) for b in full)]
        # communication volumes and counts at 2 ranks, N2 molecules in the global batch
        N2 = 2 * comm_batch
        cnt = {f: c for f, (c, _, _) in calls.items()}
        self.n_grad = max(1.0, cnt.get("MPI_Iallreduce", 0.0))
        self.n_gather = cnt.get("MPI_Allgatherv", 0.0) + cnt.get("MPI_Allgather", 0.0)
        self.n_rs = cnt.get("MPI_Reduce_scatter", 0.0)
        self.n_small = cnt.get("MPI_Allreduce", 0.0) + cnt.get("MPI_Exscan", 0.0) + cnt.get("MPI_Bcast", 0.0)
        self.G = kinds["grad_allreduce"]
        self.A = kinds["allgather"] / N2
        self.R = kinds["reduce_scatter"] / N2
        self.S = (kinds["norm_allreduce"] + kinds["bank"] + kinds.get("loss_cols", 0.0)) / N2
        self.S0 = kinds["other"]
        # calibration at 2 ranks on this machine, from the counting runs (mmsa_pretrain):
        # time inside MPI per step (the shim's clocks: transfers and the waits for the
        # other rank) and the rest of the step, which is compute
        b2 = comm_batch
        self.step2 = step2
        self.mpi2 = sum(t for (_, _, t) in calls.values())
        c2_model = sum(self.comp(c, b2, 2 * b2, 2) for c in COMPUTE)
        self.kappa2 = max(1e-9, self.step2 - self.mpi2) / c2_model
        bwterms = sum(self.comm(2, 2 * b2, 0.0, bw).values())
        steps = 2 * self.n_grad + (self.n_gather + self.n_rs) + self.n_small
        self.lambda2 = max(alpha, (self.mpi2 - bwterms) / steps)

    def comp(self, c, b, N, P, replicated=False):
        k = self.coef[c]
        q = 1 if replicated else P  # the losses and the HGNN: split by rows unless replicated
        if c in LOCAL:
            return k[0] * b + k[1]
        if c in KNN:
            return (k[0] * N * N + k[1] * N) / P + k[2]
        if c in QUAD:
            return (k[0] * N * N + k[1] * N) / q + k[2]
        if c in LIN_REPL:
            return k[0] * N / q + k[1]
        if c in BANK:
            return (k[0] * N + k[1]) / P
        return k[0]

    def comm(self, P, N, lam, bw):
        if P == 1:
            return {"grad": 0.0, "gather": 0.0, "small": 0.0}
        f = (P - 1) / P
        return {"grad": (1 - self.hidden) * (2 * f * self.G / bw + 2 * (P - 1) * lam * self.n_grad),
                "gather": f * (self.A + self.R) * N / bw + (P - 1) * lam * (self.n_gather + self.n_rs),
                "small": math.ceil(math.log2(P)) * (lam * self.n_small + (self.S * N + self.S0) / bw)}

    def step(self, P, b, lam, bw, kappa, speedup=1.0, replicated=False):
        """replicated: the losses and the HGNN whole on every rank, as before issue 13."""
        N = P * b
        parts = {c: kappa * self.comp(c, b, N, P, replicated) / speedup for c in COMPUTE}
        cm = self.comm(P, N, lam, bw)
        return sum(parts.values()) + sum(cm.values()), parts, cm

    def here(self, P, b):
        """This machine: kappa and lambda as calibrated at 2 ranks."""
        if P == 1:
            return self.step(1, b, 0.0, self.bw, 1.0)
        return self.step(P, b, self.lambda2, self.bw, self.kappa2)


def group(parts):
    g = {"local": 0.0, "global": 0.0, "bank+opt": 0.0}
    for c, v in parts.items():
        g["local" if c in LOCAL else "global" if c in KNN + QUAD + LIN_REPL else "bank+opt"] += v
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="run the measurements first")
    ap.add_argument("--dataset", help="dataset for bench_train and the counting runs (with --measure)")
    ap.add_argument("--only", default="all", help="with --measure: all, or some of pingpong,bench,comm")
    ap.add_argument("--job", default="configs/zinc250k.yaml")
    ap.add_argument("--bin", default="bin", help="folder of mmsa_pretrain (other than bin: not rebuilt)")
    ap.add_argument("--bench-train", default="build/benchmarks/bench_train",
                    help="bench_train program (other than the default: not rebuilt)")
    ap.add_argument("--set", action="append", default=[], help="job key for every run, K=V (repeatable)")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128], help="1-rank bench_train batches")
    ap.add_argument("--cal-sizes", type=int, nargs="+", default=[256, 512, 1024],
                    help="global batches of the shrunk-encoder calibration runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed bench_train steps per run")
    ap.add_argument("--comm-batch", type=int, default=64, help="per-rank batch of the 2-rank runs")
    ap.add_argument("--comm-steps", type=int, default=6, help="steps of the counting run after 2 warm-up")
    ap.add_argument("--out", default="benchmarks/out/perf_model")
    ap.add_argument("--strong", default="benchmarks/out/scaling/scaling_strong.csv")
    ap.add_argument("--weak", default="benchmarks/out/scaling/scaling_weak.csv")
    ap.add_argument("--proj-alpha-us", type=float, default=2.0)
    ap.add_argument("--proj-bw-gbs", type=float, default=10.0)
    ap.add_argument("--proj-batch", type=int, default=64, help="per-rank batch of the weak-scaling projection")
    ap.add_argument("--proj-global", type=int, nargs="+", default=[4096, 65536],
                    help="global batches of the strong-scaling projections")
    ap.add_argument("--proj-ranks", type=int, nargs="+", default=[1, 2, 64, 256, 1024])
    ap.add_argument("--proj-speedup", type=float, default=2.0,
                    help="second projection with compute this much faster per core (sensitivity)")
    a = ap.parse_args()
    out = a.out if os.path.isabs(a.out) else os.path.join(REPO, a.out)
    os.makedirs(out, exist_ok=True)
    if a.measure:
        if not a.dataset:
            sys.exit("perf_model: --measure needs --dataset")
        measure(a, out)

    alpha, bw, pp = read_pingpong(out)
    full = read_bench_files(out, "bench_b", a.batches, a.repeats)
    cal = read_bench_files(out, "cal_N", a.cal_sizes, a.repeats)
    two = read_bench_files(out, "bench2_b", [a.comm_batch], a.repeats) \
        if os.path.exists(os.path.join(out, f"bench2_b{a.comm_batch}_r0.csv")) else {}
    calls, kinds, step2 = read_comm(out, a.comm_batch)
    # the share of the gradient allreduce the backward hides (a lower bound, 0 if unmeasured)
    g2 = two.get(a.comm_batch, {})
    hidden = max(0.0, 1.0 - g2["grad_exposed"] / g2["grad_alone"]) if g2.get("grad_alone") else 0.0
    m = Model(full, cal, a.comm_batch, calls, kinds, step2, alpha, bw, hidden)
    loads = [float(l.split()[1]) for l in open(os.path.join(out, "loadavg.txt")) if l.strip()] \
        if os.path.exists(os.path.join(out, "loadavg.txt")) else []

    print("== measured inputs" + (f" (load average during the measurements {min(loads):.1f} .. {max(loads):.1f}"
                                  f" on {os.cpu_count()} cores)" if loads else ""))
    print(f"  MPI, 2 ranks, shared memory: ping-pong fit alpha = {alpha * 1e6:.2f} us, BW = {bw / 1e9:.2f} GB/s")
    for r in pp:
        if r["kind"] == "allreduce" and int(r["bytes"]) in (4096, 262144, 4194304):
            n = int(r["bytes"])
            pred = n / bw + 2 * alpha  # ring at P = 2: 2 (P-1)/P n / BW + 2 (P-1) alpha
            print(f"    allreduce {n:>8d} B: median {float(r['time_us']):9.1f} us (min {float(r['min_us']):8.1f}),"
                  f" ring formula {pred * 1e6:8.1f} us")
    print(f"  per step at 2 ranks, {a.comm_batch} molecules per rank (PMPI shim on mmsa_pretrain; log.jsonl):")
    for f, (c, b, t) in sorted(calls.items()):
        if c > 0:
            print(f"    {f:<20s} {c:7.1f} calls {b:14.0f} bytes {t * 1e3:9.1f} ms inside the call")
    print("    log.jsonl: " + ", ".join(f"{k} {kinds[k]:.0f}" for k in KINDS) + " bytes")
    print(f"  compute, 1 rank (bench_train, median of {a.repeats}), ms per step; fitted law (ms):")
    keys = sorted(full) + sorted(cal)
    print(f"    {'component':<28s}" + "".join(f"{'b=' + str(b):>9s}" for b in sorted(full))
          + "".join(f"{'N=' + str(n) + '*':>9s}" for n in sorted(cal)))
    for c in COMPUTE:
        k = m.coef[c]
        law = (f"{k[0] * 1e3:.3f} b + {k[1] * 1e3:.2f}" if c in LOCAL else
               f"({k[0] * 1e3:.3e} N^2 + {k[1] * 1e3:.4f} N) / P + {k[2] * 1e3:.2f}" if c in KNN + QUAD else
               f"{k[0] * 1e3:.4f} N / P + {k[1] * 1e3:.2f}" if c in LIN_REPL else
               f"({k[0] * 1e3:.4f} N + {k[1] * 1e3:.2f}) / P" if c in BANK else f"{k[0] * 1e3:.1f}")
        vals = "".join(f"{full[b].get(c, 0) * 1e3:9.1f}" for b in sorted(full))
        vals += "".join(f"{cal[n].get(c, 0) * 1e3:9.1f}" if c not in LOCAL else f"{'-':>9s}" for n in sorted(cal))
        print(f"    {c:<28s}{vals}   {law}")
    print(f"    {'step':<28s}" + "".join(f"{full[b]['step'] * 1e3:9.1f}" for b in sorted(full))
          + "".join(f"{cal[n]['step'] * 1e3:9.1f}" for n in sorted(cal)))
    print(f"    {'GEMM GFLOP per step':<28s}" + "".join(f"{full[b]['gflop']:9.2f}" for b in sorted(full))
          + "".join(f"{cal[n]['gflop']:9.2f}" for n in sorted(cal)))
    print(f"    {'GEMM GFLOP/s achieved':<28s}" + "".join(f"{full[b]['gflops']:9.2f}" for b in sorted(full))
          + "".join(f"{cal[n]['gflops']:9.2f}" for n in sorted(cal)))
    print("    (* encoders shrunk: only the global-batch terms are used from these columns)")
    b2 = a.comm_batch
    if two:
        m2 = two[b2]
        print(f"  2 ranks, b = {b2} per rank (bench_train, median of {a.repeats}) beside 1 rank, b = {b2}, ms per step:")
        for c in COMPUTE + ["communication"]:
            if c in m2 and b2 in full:
                print(f"    {c:<28s} {full[b2].get(c, 0) * 1e3:9.1f} {m2.get(c, 0) * 1e3:9.1f}")
        print(f"    {'step':<28s} {full[b2]['step'] * 1e3:9.1f} {m2['step'] * 1e3:9.1f}")
        if "grad_alone" in m2:
            print(f"  gradient allreduce at 2 ranks: {m2['grad_exposed'] * 1e3:.1f} ms per step waited for (with"
                  f" waits for the slower rank), {m2['grad_alone'] * 1e3:.1f} ms alone: hidden share h = {m.hidden:.2f}"
                  " (a lower bound)")
    print(f"  calibration at 2 ranks (counting runs): step {m.step2 * 1e3:.1f} ms, inside MPI {m.mpi2 * 1e3:.1f} ms;"
          f" kappa_2 = {m.kappa2:.2f} (rest of the step / 1-rank compute model),"
          f" lambda_2 = {m.lambda2 * 1e6:.0f} us per collective message step (ping-pong alpha {alpha * 1e6:.2f} us)")

    print("\n== model against the measured scaling points (jobs/scaling_*.sh, mmsa_pretrain)")
    print(f"  {'study':<7s} {'P':>3s} {'b':>4s} {'N':>5s} {'measured ms':>12s} {'model ms':>10s} {'error':>7s}"
          f" {'eff meas':>9s} {'eff model':>9s}")
    for study, path in (("strong", a.strong), ("weak", a.weak)):
        p = path if os.path.isabs(path) else os.path.join(REPO, path)
        if not os.path.exists(p):
            print(f"  ({study}: {path} not found; run jobs/scaling_{study}.sh)")
            continue
        rows = [r for r in csv.DictReader(open(p)) if r["oversubscribed"] == "0"]
        base = min(rows, key=lambda r: int(r["ranks"]))
        P0, b0 = int(base["ranks"]), int(base["batch_per_rank"])
        t0 = m.here(P0, b0)[0]
        for r in rows:
            P, b = int(r["ranks"]), int(r["batch_per_rank"])
            tm, tp = float(r["step_s"]), m.here(P, b)[0]
            ep = (b / tp) / (b0 / t0)
            print(f"  {study:<7s} {P:3d} {b:4d} {P * b:5d} {tm * 1e3:12.1f} {tp * 1e3:10.1f} {100 * (tp - tm) / tm:+6.1f}%"
                  f" {float(r['efficiency']):9.3f} {ep:9.3f}")

    pa, pb = a.proj_alpha_us * 1e-6, a.proj_bw_gbs * 1e9
    variants = [(1.0, False, "compute per core as measured alone here"),
                (a.proj_speedup, False, f"compute {a.proj_speedup:g}x faster per core than measured here"),
                (1.0, True, "the losses and the HGNN replicated on every rank, as before issue 13")]
    studies = [("weak b=%d" % a.proj_batch, lambda P: a.proj_batch)]
    studies += [("strong N=%d" % n, (lambda n: lambda P: n // P)(n)) for n in a.proj_global]
    for speed, replicated, label in variants:
        print(f"\n== projection: interconnect alpha {a.proj_alpha_us:g} us, BW {a.proj_bw_gbs:g} GB/s, kappa 1, "
              f"h {m.hidden:.2f}, {label}; ms per step")
        print(f"  {'study':<14s} {'P':>5s} {'b':>5s} {'N':>6s} {'step':>10s} {'local':>9s} {'global':>9s}"
              f" {'bank+opt':>9s} {'grad':>8s} {'gather':>8s} {'small':>7s} {'eff':>6s}  note")
        for study, bfun in studies:
            t1 = None
            for P in a.proj_ranks:
                b = bfun(P)
                if b < 1:
                    continue
                t, parts, cm = m.step(P, b, pa, pb, 1.0, speed, replicated)
                if t1 is None:
                    t1, b1 = t, b
                eff = (b / t) / (b1 / t1)
                g = group(parts)
                N = P * b
                # one InfoNCE term's logits and probabilities, float32, [N, N] replicated or
                # [N / P, N] split by rows
                gib = 2 * N * N * 4 / 2**30 / (1 if replicated else P)
                note = f">= {gib:.0f} GiB of logits per rank" if gib >= 4 else ""
                print(f"  {study:<14s} {P:5d} {b:5d} {N:6d} {t * 1e3:10.1f} {g['local'] * 1e3:9.1f}"
                      f" {g['global'] * 1e3:9.1f} {g['bank+opt'] * 1e3:9.1f} {cm['grad'] * 1e3:8.1f}"
                      f" {cm['gather'] * 1e3:8.1f} {cm['small'] * 1e3:7.2f} {eff:6.3f}  {note}")


if __name__ == "__main__":
    main()
