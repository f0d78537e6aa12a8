#!/usr/bin/env python3
"""Performance model of MMSA pre-training: step time on P ranks from compute per rank,
bytes and calls per collective, and measured MPI latency and bandwidth.

    benchmarks/perf_model.py --measure --dataset DATA.h5   # measure (a few minutes), then fit
    benchmarks/perf_model.py                               # fit again from the saved measurements

Measurements (saved in --out, default benchmarks/out/perf_model/):
  mpi_pingpong.csv      mpirun -n 2 mpi_pingpong: latency alpha and bandwidth BW (ping-pong
                        fit), allreduce and allgather time against size;
  bench_b<B>_r<i>.csv   mpirun -n 1 bench_train at per-rank batches B (default 32 64 128),
                        repeated: step time split by component (the tape's profile scopes);
  comm_s<S>/rank0.csv   mpirun -n 2 mmsa_pretrain --steps S under the PMPI counting shim
                        (mpi_count.c), for two step counts: calls and bytes per MPI function
                        per step = the difference over the extra steps;
  comm_s<S>/log.jsonl   the same runs' own count of bytes per collective kind and step.

The model (every time in seconds, per step, b molecules per rank, N = P b global batch):

  T(P, b) = T_local(b) + T_repl(N) + T_bank(N, P) + T_opt + T_comm(P, N)

  T_local  = sum over the per-molecule components (data, the four encoders, heads/fusion/
             decoder) of (a_c b + c_c), fitted over the measured batches;
  T_repl   = kNN, HGNN and losses: computed on every rank over the gathered global batch
             (the N x N similarities of the kNN and of the InfoNCE terms), so they do not
             shrink with P: sum of (a_c N + q_c N^2 + c_c);
  T_bank   = memory bank, anchors partitioned over the ranks: (a N + c) / P;
  T_opt    = optimiser (and the rest), constant per rank (the parameters are replicated);
  T_comm   = sum over kinds, no overlap with compute assumed (an upper bound: the
             gradient buckets do overlap the backward pass):
             gradients  ring allreduce, n_g buckets of G/n_g bytes:
                        2 (P-1)/P G / BW + 2 (P-1) alpha n_g
             gathers    ring allgather of the N-row embeddings (A(N) bytes, n_a calls) and
                        the reduce-scatter of their gradients (same volume, n_r calls):
                        (P-1)/P A / BW + (P-1) alpha n  each
             small      the BatchNorm statistics, memory-bank reductions and scalars
                        (n_s allreduces of S(N) bytes in all), recursive doubling:
                        ceil(log2 P) (alpha n_s + S / BW).
  Bytes and calls per step come from the counting runs (A, S proportional to N; G and the
  call counts constant). alpha and BW are the ping-pong fit on this machine; projections
  to 64 and 1024 ranks use an interconnect (--proj-alpha-us, --proj-bw-gbs; default 2 us
  and 10 GB/s, a 100 Gb/s-class fabric) and the per-core compute speed measured here.
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
REPL = ["kNN", "HGNN", "losses"]
BANK = ["memory bank"]
CONST = ["optimiser", "other", "communication"]
KINDS = ["grad_allreduce", "allgather", "reduce_scatter", "norm_allreduce", "bank", "other"]


def env():
    e = dict(os.environ)
    e.update(BLIS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if os.geteuid() == 0:
        e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return e


def run(cmd, **kw):
    print("  $ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, env=kw.pop("env", env()), **kw)
    if r.returncode != 0:
        sys.exit(f"perf_model: command failed with exit {r.returncode}: {' '.join(cmd)}")
    return r


def build(args):
    os.makedirs(os.path.join(REPO, "build/benchmarks"), exist_ok=True)
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-Iinclude"]
    run(["mpicc", *flags, "benchmarks/mpi_pingpong.c", "-o", "build/benchmarks/mpi_pingpong"])
    run(["mpicc", *flags, "-shared", "-fPIC", "benchmarks/mpi_count.c", "-o", "build/benchmarks/libmpi_count.so"])
    run(["make", "--no-print-directory", "-s", "build/benchmarks/bench_train", "bin/mmsa_pretrain"])


def measure(args, out):
    build(args)
    print(f"perf_model: measuring into {out} (load average {open('/proc/loadavg').read().split()[0]})", flush=True)
    e = env()
    e["MMSA_BENCH_OUT"] = out
    run(["mpirun", "-n", "2", "build/benchmarks/mpi_pingpong", "--reps", "9"], env=e)
    for b in args.batches:
        for i in range(args.repeats):
            d = os.path.join(out, f"bench_b{b}_r{i}")
            os.makedirs(d, exist_ok=True)
            e["MMSA_BENCH_OUT"] = d
            run(["mpirun", "-n", "1", "build/benchmarks/bench_train", "--dataset", args.dataset, "--job", args.job,
                 "--steps", str(args.steps), "--warmup", "2", "--set", f"train.batch_size={b}", *args.set], env=e)
            os.replace(os.path.join(d, "bench_train.csv"), os.path.join(out, f"bench_b{b}_r{i}.csv"))
            subprocess.run(["rm", "-rf", d])
    # communication per step at 2 ranks, b = comm_batch per rank
    shim = os.path.join(REPO, "build/benchmarks/libmpi_count.so")
    for s in (args.comm_steps, 2 * args.comm_steps):
        d = os.path.join(out, f"comm_s{s}")
        subprocess.run(["rm", "-rf", d])
        os.makedirs(d)
        e = env()
        e["MMSA_MPI_COUNT_OUT"] = d
        run(["mpirun", "-n", "2", "-x", "MMSA_MPI_COUNT_OUT", "-x", f"LD_PRELOAD={shim}", "bin/mmsa_pretrain", args.job,
             "--quiet", "--steps", str(s), "--set", f"train.dataset={args.dataset}", "--set", f"train.run_dir={d}/run",
             "--set", f"train.batch_size={2 * args.comm_batch}", "--set", "train.holdout=0", "--set",
             "train.log_every=1", "--set", "checkpoint.every=0", "--set", "checkpoint.resume=false", *args.set],
            env=e, stdout=subprocess.DEVNULL)
        os.replace(os.path.join(d, "run", "log.jsonl"), os.path.join(d, "log.jsonl"))
        subprocess.run(["rm", "-rf", os.path.join(d, "run")])


# ---------------------------------------------------------------- reading
def read_pingpong(out):
    rows = list(csv.DictReader(open(os.path.join(out, "mpi_pingpong.csv"))))
    fit = [r for r in rows if r["kind"] == "fit"][0]
    return float(fit["time_us"]) * 1e-6, float(fit["mb_per_s"]) * 1e6, rows


def read_bench(out, batches, repeats):
    """{batch: {component: median seconds per step}} and the median step time."""
    comp, step = {}, {}
    for b in batches:
        per = {}
        steps = []
        for i in range(repeats):
            path = os.path.join(out, f"bench_b{b}_r{i}.csv")
            if not os.path.exists(path):
                continue
            lines = open(path).read().splitlines()
            head = next(csv.DictReader(lines[:2]))
            steps.append(float(head["step_s"]))
            for r in csv.DictReader(lines[2:]):
                per.setdefault(r["component"], []).append((float(r["fwd_ms"]) + float(r["bwd_ms"])) * 1e-3)
        if not steps:
            sys.exit(f"perf_model: no bench_train result for batch {b} in {out} (run with --measure)")
        step[b] = statistics.median(steps)
        comp[b] = {k: statistics.median(v) for k, v in per.items()}
        # time outside every profiled scope (loop, batching, gradient sync wait, logging)
        comp[b]["other"] = max(0.0, step[b] - sum(v for k, v in comp[b].items() if k != "other"))
    return comp, step


def read_comm(out, s1, s2, batch):
    """Per step at 2 ranks: {function: (calls, bytes)} from the shim, {kind: bytes} from the log."""
    def shim(s):
        return {r["function"]: (int(r["calls"]), float(r["bytes"]))
                for r in csv.DictReader(open(os.path.join(out, f"comm_s{s}", "rank0.csv")))}
    a, b = shim(s1), shim(s2)
    per = {}
    for f in set(a) | set(b):
        c1, b1 = a.get(f, (0, 0.0))
        c2, b2 = b.get(f, (0, 0.0))
        per[f] = ((c2 - c1) / (s2 - s1), (b2 - b1) / (s2 - s1))
    rows = [json.loads(l) for l in open(os.path.join(out, f"comm_s{s2}", "log.jsonl")) if l.strip()]
    kinds = {k: statistics.median(r["comm_bytes"][k] for r in rows[1:]) for k in KINDS}
    return per, kinds


# ---------------------------------------------------------------- fitting
def lstsq(cols, y):
    """Least squares y ~ sum_j x_j c_j with c_j >= 0 (tiny active-set loop; few columns)."""
    active = list(range(len(cols)))
    while True:
        n = len(active)
        if n == 0:
            return [0.0] * len(cols)
        A = [[sum(cols[i][k] * cols[j][k] for k in range(len(y))) for j in active] for i in active]
        rhs = [sum(cols[i][k] * y[k] for k in range(len(y))) for i in active]
        # Gaussian elimination with a small ridge for rank deficiency
        for i in range(n):
            A[i][i] += 1e-12 * (abs(A[i][i]) + 1e-30)
        M = [row[:] + [r] for row, r in zip(A, rhs)]
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
        neg = [active[i] for i in range(n) if sol[i] < 0]
        if not neg:
            out = [0.0] * len(cols)
            for i, j in enumerate(active):
                out[j] = sol[i]
            return out
        active = [j for j in active if j not in neg]


class Model:
    def __init__(self, comp, comm_calls, comm_kinds, comm_batch, alpha, bw, M_anchors):
        self.alpha, self.bw = alpha, bw
        bs = sorted(comp)
        self.fit = {}
        names = set().union(*[set(comp[b]) for b in bs])
        for c in names:
            y = [comp[b].get(c, 0.0) for b in bs]
            x = [float(b) for b in bs]
            if c in LOCAL or c in BANK:
                cols = [x, [1.0] * len(x)]                       # a b + c
            elif c in REPL:
                cols = [x, [v * v for v in x], [1.0] * len(x)]   # a N + q N^2 + c
            else:
                cols = [[1.0] * len(x)]                          # constant
            self.fit[c] = (lstsq(cols, y), cols)
        N2 = 2 * comm_batch
        calls = {f: c for f, (c, _) in comm_calls.items()}
        self.n_grad = max(1.0, calls.get("MPI_Iallreduce", 0) + 0.0)
        self.n_gather = calls.get("MPI_Allgatherv", 0) + calls.get("MPI_Allgather", 0)
        self.n_rs = calls.get("MPI_Reduce_scatter", 0)
        self.n_small = calls.get("MPI_Allreduce", 0) + calls.get("MPI_Exscan", 0) + calls.get("MPI_Bcast", 0)
        self.G = comm_kinds["grad_allreduce"]
        self.A_per_mol = comm_kinds["allgather"] / N2            # gathered bytes per molecule of N
        self.R_per_mol = comm_kinds["reduce_scatter"] / N2
        self.S_per_mol = (comm_kinds["norm_allreduce"] + comm_kinds["bank"]) / N2
        self.S_fixed = comm_kinds["other"]
        self.M = M_anchors

    def comp(self, c, b, N, P):
        coef, _ = self.fit[c]
        if c in LOCAL:
            return coef[0] * b + coef[1]
        if c in BANK:
            return (coef[0] * N + coef[1]) / P
        if c in REPL:
            return coef[0] * N + coef[1] * N * N + coef[2]
        if c == "communication" and P > 1:
            return 0.0                                           # modelled by comm()
        return coef[0]

    def comm(self, P, N, alpha=None, bw=None):
        a = self.alpha if alpha is None else alpha
        B = self.bw if bw is None else bw
        if P == 1:
            return {"grad": 0.0, "gather": 0.0, "small": 0.0}
        f = (P - 1) / P
        grad = 2 * f * self.G / B + 2 * (P - 1) * a * self.n_grad
        gather = f * (self.A_per_mol + self.R_per_mol) * N / B + (P - 1) * a * (self.n_gather + self.n_rs)
        lg = math.ceil(math.log2(P))
        small = lg * (a * self.n_small + (self.S_per_mol * N + self.S_fixed) / B)
        return {"grad": grad, "gather": gather, "small": small}

    def step(self, P, b, alpha=None, bw=None):
        N = P * b
        parts = {c: self.comp(c, b, N, P) for c in self.fit}
        t_comp = sum(parts.values())
        cm = self.comm(P, N, alpha, bw)
        return t_comp + sum(cm.values()), t_comp, cm, parts


def fmt_s(t):
    return f"{t * 1e3:9.1f} ms" if t < 10 else f"{t:9.1f} s "


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="run the measurements first")
    ap.add_argument("--dataset", help="dataset for bench_train and the counting runs (with --measure)")
    ap.add_argument("--job", default="configs/zinc250k.yaml")
    ap.add_argument("--set", action="append", default=[], help="job key for every run, K=V (repeatable)")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128], help="per-rank batches for bench_train")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed bench_train steps per run")
    ap.add_argument("--comm-batch", type=int, default=64, help="per-rank batch of the 2-rank counting runs")
    ap.add_argument("--comm-steps", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/out/perf_model")
    ap.add_argument("--strong", default="benchmarks/out/scaling/scaling_strong.csv")
    ap.add_argument("--weak", default="benchmarks/out/scaling/scaling_weak.csv")
    ap.add_argument("--proj-alpha-us", type=float, default=2.0)
    ap.add_argument("--proj-bw-gbs", type=float, default=10.0)
    ap.add_argument("--proj-batch", type=int, default=64, help="per-rank batch of the weak-scaling projection")
    ap.add_argument("--proj-global", type=int, default=4096, help="global batch of the strong-scaling projection")
    a = ap.parse_args()
    a.set = [x for kv in a.set for x in ("--set", kv)]
    out = os.path.join(REPO, a.out) if not os.path.isabs(a.out) else a.out
    os.makedirs(out, exist_ok=True)
    if a.measure:
        if not a.dataset:
            sys.exit("perf_model: --measure needs --dataset")
        measure(a, out)

    alpha, bw, pp = read_pingpong(out)
    comp, step = read_bench(out, a.batches, a.repeats)
    calls, kinds = read_comm(out, a.comm_steps, 2 * a.comm_steps, a.comm_batch)
    n_anchors = 4096
    m = Model(comp, calls, kinds, a.comm_batch, alpha, bw, n_anchors)

    print("\n== measured inputs")
    print(f"  MPI on this machine (2 ranks, ping-pong fit): alpha = {alpha * 1e6:.2f} us, BW = {bw / 1e9:.2f} GB/s")
    for r in pp:
        if r["kind"] == "allreduce" and int(r["bytes"]) in (4096, 1048576, 4194304):
            n = int(r["bytes"])
            pred = 2 * 0.5 * n / bw + 2 * 1 * alpha
            print(f"    allreduce {n:>8d} B: measured {float(r['time_us']):9.1f} us, ring formula {pred * 1e6:9.1f} us")
    print(f"  per step at 2 ranks, {a.comm_batch} molecules per rank (PMPI counts; log.jsonl bytes by kind):")
    for f, (c, b) in sorted(calls.items()):
        if c > 0:
            print(f"    {f:<20s} {c:7.1f} calls {b:14.0f} bytes")
    for k in KINDS:
        print(f"    log.jsonl {k:<16s} {kinds[k]:14.0f} bytes")
    print(f"  compute per rank on 1 rank (bench_train medians over {a.repeats} runs), ms per step:")
    print("    " + f"{'component':<28s}" + "".join(f"{'b=' + str(b):>10s}" for b in sorted(comp)) + "   fitted law")
    for c in LOCAL + REPL + BANK + CONST:
        if c not in m.fit:
            continue
        coef, _ = m.fit[c]
        law = (f"{coef[0] * 1e3:.3f} b + {coef[1] * 1e3:.2f}" if c in LOCAL else
               f"{coef[0] * 1e3:.4f} N + {coef[1] * 1e6:.5f}e-3 N^2 + {coef[2] * 1e3:.2f}" if c in REPL else
               f"({coef[0] * 1e3:.4f} N + {coef[1] * 1e3:.2f}) / P" if c in BANK else f"{coef[0] * 1e3:.2f}")
        print(f"    {c:<28s}" + "".join(f"{comp[b].get(c, 0) * 1e3:10.1f}" for b in sorted(comp)) + f"   {law} (ms)")
    print("    " + f"{'step (measured)':<28s}" + "".join(f"{step[b] * 1e3:10.1f}" for b in sorted(comp)))

    print("\n== model against the measured scaling points (jobs/scaling_*.csv)")
    print(f"  {'study':<7s} {'P':>4s} {'b':>5s} {'N':>6s} {'measured':>12s} {'model':>12s} {'error':>7s}"
          f" {'eff meas':>9s} {'eff model':>9s}")
    for study, path in (("strong", a.strong), ("weak", a.weak)):
        p = os.path.join(REPO, path) if not os.path.isabs(path) else path
        if not os.path.exists(p):
            print(f"  ({study}: {path} not found; run jobs/scaling_{study}.sh)")
            continue
        rows = [r for r in csv.DictReader(open(p)) if r["oversubscribed"] == "0"]
        base = min(rows, key=lambda r: int(r["ranks"]))
        P0, b0 = int(base["ranks"]), int(base["batch_per_rank"])
        t0m = m.step(P0, b0)[0]
        for r in rows:
            P, b = int(r["ranks"]), int(r["batch_per_rank"])
            tm, tp = float(r["step_s"]), m.step(P, b)[0]
            N = P * b
            em = float(r["efficiency"])
            ep = (N / tp / P) / (b0 / t0m)  # model throughput per rank against the smallest P
            print(f"  {study:<7s} {P:4d} {b:5d} {N:6d} {fmt_s(tm)} {fmt_s(tp)} {100 * (tp - tm) / tm:+6.1f}%"
                  f" {em:9.3f} {ep:9.3f}")

    pa, pb = a.proj_alpha_us * 1e-6, a.proj_bw_gbs * 1e9
    print(f"\n== projection (per-core compute as measured here; interconnect alpha {a.proj_alpha_us} us,"
          f" BW {a.proj_bw_gbs} GB/s; no overlap)")
    hdr = (f"  {'study':<16s} {'P':>5s} {'b':>5s} {'N':>6s} {'step ms':>10s} {'local':>9s} {'replic.':>9s}"
           f" {'bank+opt':>9s} {'comm':>9s} {'eff':>6s}  note")
    print(hdr)
    b = a.proj_batch
    t1 = m.step(1, b, pa, pb)[0]
    for P in (1, 2, 64, 1024):
        t, tc, cm, parts = m.step(P, b, pa, pb)
        _row("weak, b=%d" % b, P, b, t, parts, cm, t1 / t, m)
    B = a.proj_global
    t1 = m.step(1, B, pa, pb)[0]
    for P in (1, 2, 64, 1024):
        if B % P:
            continue
        t, tc, cm, parts = m.step(P, B // P, pa, pb)
        _row("strong, N=%d" % B, P, B // P, t, parts, cm, t1 / (P * t), m)


def _row(study, P, b, t, parts, cm, eff, m):
    N = P * b
    loc = sum(v for c, v in parts.items() if c in LOCAL)
    rep = sum(v for c, v in parts.items() if c in REPL)
    rest = t - loc - rep - sum(cm.values())
    note = ""
    mem = 3 * N * N * 4 / 2**30  # kNN cosine matrix + the InfoNCE logits/probabilities, float32
    if mem > 8:
        note = f"N x N matrices need ~{mem:.0f} GiB per rank"
    print(f"  {study:<16s} {P:5d} {b:5d} {N:6d} {t * 1e3:10.1f} {loc * 1e3:9.1f} {rep * 1e3:9.1f}"
          f" {rest * 1e3:9.1f} {sum(cm.values()) * 1e3:9.1f} {eff:6.3f}  {note}")


if __name__ == "__main__":
    main()
