#!/bin/sh
# GIN speed of several builds and of PyTorch's GIN, in the same run (issue 12).
#
#   benchmarks/gin_speed.sh --build NAME=DIR [--build NAME=DIR ...] --dataset DATA.h5 [--torch]
#                           [--rounds 3] [--steps 3] [--reps 5] [--ft-epochs 2]
#                           [--out benchmarks/results/speed/gin.csv] [--append]
#   benchmarks/gin_speed.sh --summary CSV        (the tables of an earlier run's CSV)
#
# Two measurements, each round in mirrored order (A B C [T T] C B A, T = PyTorch), so that
# every build sees the machine in the same states on average:
#  - the GIN encoder's forward and backward ms per step of 256 molecules: bench_train on
#    1 rank with the DESIGN sizes (configs/zinc250k.yaml; its "graph encoder (GIN)" scope),
#    beside the raw BLIS sgemm GFLOP/s of that run (how much of a core the run got); with
#    --torch also PyTorch's GIN alone on the same molecules (benchmarks/gin_torch.py:
#    ../shared/anchors/torch_ref.py, 1 thread, the tuned malloc of vs_pytorch.sh);
#  - fine-tuning on BBBP (GIN 5 x 300 + linear head, batch 32, 1 rank): seconds per epoch
#    (training only) and molecules/s per core over the 1631 training molecules.
# DIR is a project tree built with `make apps build/benchmarks/bench_train` (it must hold
# build/benchmarks/bench_train and bin/mmsa_finetune). DATA.h5 is an mmsa_prep dataset of
# 768+ molecules; a dataset without conformers or images makes bench_train's steps mostly
# GIN (faster runs, same GIN scope). BBBP is prepared once into benchmarks/out/gin_speed.
# Writes one CSV line per run to --out (replaced; with --append, more rounds after those it
# holds) with the 1-minute load average before the run, and prints medians and ratios
# against the first build and PyTorch, paired by round. Run from the project root; the raw
# outputs stay in benchmarks/out/gin_speed.
# Runs use mpirun --bind-to none, as PyTorch's process runs (see vs_torch.sh).
set -eu
summary() { # CSV: medians over runs, and ratios paired by round (each round's mirrored runs)
/usr/bin/python3 - "$1" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
names = list(dict.fromkeys(r["build"] for r in rows))
base = names[0]
def vals(what, b, col, rd=None):
    return [float(r[col]) for r in rows if r["what"] == what and r["build"] == b and r[col] and rd in (None, r["round"])]
def med(what, b, col):
    v = vals(what, b, col)
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
def paired(what, col, num, den, invert=False):
    """num / den per round (means of each round's runs), median and range over rounds"""
    rs = []
    for rd in dict.fromkeys(r["round"] for r in rows):
        a, b = vals(what, num, col, rd), vals(what, den, col, rd)
        if a and b: rs.append(statistics.mean(a) / statistics.mean(b))
    if invert: rs = [1 / x for x in rs]
    return "%.2f (%.2f-%.2f)" % (statistics.median(rs), min(rs), max(rs)) if rs else ""
print("\nGIN encoder forward + backward, batch 256, 1 core: medians over runs; speed-up over %s and PyTorch / this"
      " are paired by round (median and range over rounds; above 1 = this is faster)" % base)
print("%-8s %-14s %4s %7s %7s %20s %17s %17s %9s" % ("build", "commit", "runs", "fwd ms", "bwd ms", "fwd+bwd ms (range)",
                                                     "speed-up", "torch / this", "BLIS GF/s"))
for b in names:
    g = med("gin", b, "gin_ms")
    if not g: continue
    f, w, bl = med("gin", b, "gin_fwd_ms"), med("gin", b, "gin_bwd_ms"), med("gin", b, "blis_gflops")
    c = next(r["commit"] for r in rows if r["build"] == b)
    print("%-8s %-14s %4d %7.0f %7.0f %6.0f (%5.0f-%5.0f) %17s %17s %9s" % (
        b, c, g[3], f[0], w[0], g[0], g[1], g[2], paired("gin", "gin_ms", base, b),
        paired("gin", "gin_ms", "pytorch", b), "%.1f" % bl[0] if bl else ""))
print("\nFine-tuning BBBP, GIN 5x300 + linear head, batch 32, 1 rank: training epochs only; medians over runs,"
      " speed-up paired by round")
print("%-8s %4s %8s %22s %17s" % ("build", "runs", "s/epoch", "molecules/s (range)", "speed-up"))
for b in names:
    m = med("finetune_bbbp", b, "ft_mol_per_s")
    if not m: continue
    print("%-8s %4d %8.2f %8.1f (%5.1f-%5.1f) %17s" % (b, m[3], med("finetune_bbbp", b, "ft_epoch_s")[0], m[0], m[1], m[2],
                                                     paired("finetune_bbbp", "ft_epoch_s", base, b)))
loads = [float(r["load1"]) for r in rows]
print("\nload average (1 min) before the runs: %.1f - %.1f, median %.1f (%s)" % (
    min(loads), max(loads), statistics.median(loads), sys.argv[1]))
PY
}
BUILDS=""; DATA=""; ROUNDS=3; STEPS=3; REPS=5; FT_EPOCHS=2; TORCH=0; APPEND=0
OUT=benchmarks/results/speed/gin.csv
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILDS="$BUILDS $2"; shift 2 ;;
    --dataset) DATA=$2; shift 2 ;;
    --torch) TORCH=1; shift ;;
    --append) APPEND=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --ft-epochs) FT_EPOCHS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --summary) summary "$2"; exit 0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gin_speed.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$BUILDS" ] && [ -n "$DATA" ] || { echo "gin_speed.sh: --build and --dataset are required (see --help)" >&2; exit 2; }
[ -f "$DATA" ] || { echo "gin_speed.sh: no dataset $DATA" >&2; exit 2; }
REVERSED=""
for b in $BUILDS; do
    case "$b" in *=*) ;; *) echo "gin_speed.sh: --build $b: expected NAME=DIR" >&2; exit 2 ;; esac
    d=${b#*=}
    for f in build/benchmarks/bench_train bin/mmsa_finetune; do
        [ -x "$d/$f" ] || { echo "gin_speed.sh: --build $b: no $d/$f (make apps build/benchmarks/bench_train there)" >&2; exit 2; }
    done
    REVERSED="$b $REVERSED"
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
export MMSA_SHARED=${MMSA_SHARED:-$(pwd)/../shared}
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
RAW=benchmarks/out/gin_speed
mkdir -p "$RAW" "$(dirname "$OUT")"
R0=0
if [ "$APPEND" = 1 ] && [ -s "$OUT" ]; then
    R0=$(awk -F, 'NR > 1 && $4 > r {r = $4} END {print r + 0}' "$OUT")
else
    echo "what,build,commit,round,load1,step_s,gin_fwd_ms,gin_bwd_ms,gin_ms,blis_gflops,ft_epoch_s,ft_mol_per_s" > "$OUT"
fi
load1() { cut -d' ' -f1 /proc/loadavg; }
commit() { git -C "$1" rev-parse --short HEAD 2>/dev/null || echo "?"; }

bench() { # NAME=DIR round
    n=${1%%=*}; d=${1#*=}; l=$(load1); log="$RAW/bench_${n}_$2.txt"
    mpirun --bind-to none -n 1 "$d/build/benchmarks/bench_train" --dataset "$DATA" --steps "$STEPS" --warmup 1 < /dev/null > "$log" 2>&1 ||
        { echo "gin_speed.sh: bench_train of $n failed, see $log" >&2; exit 1; }
    awk -v b="$n" -v c="$(commit "$d")" -v rd="$2" -v l="$l" '
        /step time/ {st = $3} /raw BLIS/ {bl = $8}
        /graph encoder/ {f = $4; bw = $5}
        END {printf "gin,%s,%s,%s,%s,%s,%s,%s,%.1f,%s,,\n", b, c, rd, l, st, f, bw, f + bw, bl}' "$log" >> "$OUT"
}

torch() { # round
    l=$(load1); log="$RAW/torch_$1.txt"
    GLIBC_TUNABLES=$TUNED /usr/bin/python3 benchmarks/gin_torch.py --dataset "$DATA" --reps "$REPS" > "$log" 2>&1 ||
        { echo "gin_speed.sh: gin_torch.py failed, see $log" >&2; exit 1; }
    v=$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')
    awk -F, -v rd="$1" -v l="$l" -v v="$v" '/^median/ {
        printf "gin,pytorch,torch %s,%s,%s,,%s,%.1f,%s,,,\n", v, rd, l, $4, $5 - $4, $5}' "$log" >> "$OUT"
}

finetune() { # NAME=DIR round
    n=${1%%=*}; d=${1#*=}; l=$(load1); run="$RAW/ft_${n}_$2"
    rm -rf "$run"
    mpirun --bind-to none -n 1 "$d/bin/mmsa_finetune" configs/finetune_bbbp.yaml --quiet --set data.csv= \
        --set data.dataset="$RAW/bbbp.h5" --set train.epochs="$FT_EPOCHS" --set train.seeds=1 \
        --set train.run_dir="$run" < /dev/null > "$run.txt" 2>&1 ||
        { echo "gin_speed.sh: mmsa_finetune of $n failed, see $run.txt" >&2; exit 1; }
    /usr/bin/python3 - "$run/results.json" "$n" "$(commit "$d")" "$2" "$l" >> "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("finetune_bbbp,%s,%s,%s,%s,,,,,,%.3f,%.2f" % (sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
                                                  r["epoch_seconds"], r["n_train"] / r["epoch_seconds"]))
PY
}


if [ ! -f "$RAW/bbbp.h5" ]; then
    first=$(echo $BUILDS | cut -d' ' -f1)
    mpirun --bind-to none -n 1 "${first#*=}/bin/mmsa_finetune" configs/finetune_bbbp.yaml --quiet --set train.epochs=1 \
        --set train.seeds=1 --set train.run_dir="$RAW/prep" < /dev/null > "$RAW/prep.txt" 2>&1 ||
        { echo "gin_speed.sh: preparing BBBP failed, see $RAW/prep.txt" >&2; exit 1; }
    cp "$RAW/prep/dataset.h5" "$RAW/bbbp.h5"
fi
echo "gin_speed.sh: start $(uptime)"
r=$((R0 + 1))
while [ "$r" -le "$((R0 + ROUNDS))" ]; do
    for b in $BUILDS; do bench "$b" "$r"; done
    if [ "$TORCH" = 1 ]; then torch "$r"; torch "$r"; fi
    for b in $REVERSED; do bench "$b" "$r"; done
    for b in $BUILDS; do finetune "$b" "$r"; done
    for b in $REVERSED; do finetune "$b" "$r"; done
    echo "gin_speed.sh: round $r of $((R0 + ROUNDS)) done, $(uptime)"
    r=$((r + 1))
done
echo "gin_speed.sh: end $(uptime)"
summary "$OUT"
