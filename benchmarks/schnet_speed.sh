#!/bin/sh
# SchNet speed and memory of several builds, and PyTorch's SchNet alone, in the same run (issue 12).
#
#   benchmarks/schnet_speed.sh --build NAME=DIR[@SECTION.KEY=VALUE] [--build ...] --dataset DATA.h5
#                              [--torch CACHE.h5 [--torch-ftz]] [--rounds 2] [--steps 3]
#                              [--encoder conformer|image] [--set SECTION.KEY=VALUE ...]
#                              [--out benchmarks/results/speed/schnet.csv]
#
# --encoder image times the image encoder (CNN) instead, on both sides (CSV columns cnn_*);
# --set passes a setting to every build's bench_train (e.g. model.use_conformer=false).
# Each round runs the builds in mirrored order (A B C [T [F F] T] C B A, T = PyTorch, F = PyTorch
# with subnormals flushed), so that every build sees the machine in the same states on average.
# A build run is bench_train on 1 rank at
# the DESIGN sizes (configs/zinc250k.yaml, batch 256): its "conformer encoder (SchNet)" forward
# and backward ms per step, the step time, the peak RSS and the raw BLIS sgemm GFLOP/s of that
# run (how much of a core it got). @SECTION.KEY=VALUE passes one --set to bench_train (the same
# DIR can then run twice, e.g. @model.schnet_keep_filters=false). DIR is a project tree with
# build/benchmarks/bench_train; DATA.h5 an mmsa_prep dataset of 512+ molecules with conformers.
# --torch times ../shared/anchors/torch_ref.py's SchNet alone (forward + backward, batch 256,
# 1 thread, the tuned malloc of vs_pytorch.sh) with bench_torch.py --worker on its featurised
# cache CACHE.h5 (bench_torch.py --n N --cache-dir DIR writes DIR/zincN.h5); --torch-ftz times it
# also with torch.set_flush_denormal(True) (subnormal floats flushed to zero, as mm_cfconv does).
# Writes one CSV line per run to --out (replaced) with the 1-minute load average before the
# run, and prints medians and ratios against the first build. Run from the project root; the
# raw outputs stay in benchmarks/out/schnet_speed.
# Our ranks run with mpirun --bind-to none, as PyTorch's process runs: Open MPI binds up to two
# ranks to a core each by default, and on a shared machine a rank pinned to the busy core got
# 30% less of the machine than the same run unpinned (bench_train 13.4 vs 9.8 s, same CPU time).
set -eu
BUILDS=""; DATA=""; TORCH=""; TORCH_FTZ=0; ROUNDS=2; STEPS=3; ENC=conformer; SETS=""
OUT=benchmarks/results/speed/schnet.csv
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILDS="$BUILDS $2"; shift 2 ;;
    --dataset) DATA=$2; shift 2 ;;
    --torch) TORCH=$2; shift 2 ;;
    --torch-ftz) TORCH_FTZ=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --encoder) ENC=$2; shift 2 ;;
    --set) SETS="$SETS --set $2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "schnet_speed.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$BUILDS" ] && [ -n "$DATA" ] || { echo "schnet_speed.sh: --build and --dataset are required (see --help)" >&2; exit 2; }
[ -f "$DATA" ] || { echo "schnet_speed.sh: no dataset $DATA" >&2; exit 2; }
case "$ENC" in
conformer) COL=schnet; SCOPE="conformer encoder" ;;
image) COL=cnn; SCOPE="image encoder" ;;
*) echo "schnet_speed.sh: --encoder $ENC: expected conformer or image" >&2; exit 2 ;;
esac
[ -z "$TORCH" ] || [ -f "$TORCH" ] || { echo "schnet_speed.sh: --torch $TORCH: no such cache" >&2; exit 2; }
REVERSED=""
for b in $BUILDS; do
    case "$b" in *=*) ;; *) echo "schnet_speed.sh: --build $b: expected NAME=DIR" >&2; exit 2 ;; esac
    d=${b#*=}; d=${d%%@*}
    [ -x "$d/build/benchmarks/bench_train" ] ||
        { echo "schnet_speed.sh: --build $b: no $d/build/benchmarks/bench_train (make build/benchmarks/bench_train there)" >&2; exit 2; }
    REVERSED="$b $REVERSED"
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
export MMSA_SHARED=${MMSA_SHARED:-$(pwd)/../shared}
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
RAW=benchmarks/out/schnet_speed
mkdir -p "$RAW" "$(dirname "$OUT")"
echo "build,commit,settings,round,load1,step_s,${COL}_fwd_ms,${COL}_bwd_ms,${COL}_ms,peak_rss_mib,blis_gflops,gemm_gflops" > "$OUT"
load1() { cut -d' ' -f1 /proc/loadavg; }

bench() { # NAME=DIR[@SET] round
    n=${1%%=*}; d=${1#*=}; set=""
    case "$d" in *@*) set=${d#*@}; d=${d%%@*} ;; esac
    c=$(git -C "$d" rev-parse --short HEAD 2>/dev/null || echo "?")
    l=$(load1); log="$RAW/bench_${n}_$2.txt"
    # shellcheck disable=SC2086
    mpirun --bind-to none -n 1 "$d/build/benchmarks/bench_train" --dataset "$DATA" --job configs/zinc250k.yaml --steps "$STEPS" \
        --warmup 1 --set train.holdout=0 --set train.batch_size=256 $SETS ${set:+--set "$set"} < /dev/null > "$log" 2>&1 ||
        { echo "schnet_speed.sh: bench_train of $n failed, see $log" >&2; exit 1; }
    awk -v b="$n" -v c="$c" -v s="$set" -v rd="$2" -v l="$l" -v scope="$SCOPE" '
        /step time/ {st = $3} /raw BLIS/ {bl = $8; gf = $3} /peak RSS/ {rss = $5}
        index($0, scope) {f = $4; bw = $5}
        END {printf "%s,%s,%s,%s,%s,%s,%s,%s,%.1f,%s,%s,%s\n", b, c, s, rd, l, st, f, bw, f + bw, rss, bl, gf}' "$log" >> "$OUT"
}

torch() { # round, ftz (0 or 1)
    n=pytorch; [ "$2" = 1 ] && n=pytorch_ftz
    l=$(load1); log="$RAW/${n}_$1.txt"
    GLIBC_TUNABLES=$TUNED /usr/bin/python3 -c 'import os, runpy, sys, torch
if sys.argv[1] == "1": assert torch.set_flush_denormal(True)
sys.path.insert(0, os.path.dirname(sys.argv[2])); sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$2" ../shared/anchors/bench_torch.py --worker --threads 1 --steps 1 \
        --warmup 0 --batch 256 --enc-warmup 1 --enc-reps 5 --h5 "$TORCH" --json "$RAW/${n}_$1.json" > "$log" 2>&1 ||
        { echo "schnet_speed.sh: bench_torch.py failed, see $log" >&2; exit 1; }
    /usr/bin/python3 - "$RAW/${n}_$1.json" "$1" "$l" "$n" "$2" "$ENC" >> "$OUT" <<'PY'
import json, sys, torch
e = json.load(open(sys.argv[1]))["encoders"][sys.argv[6]]
print("%s,torch %s,%s,%s,%s,,%.1f,%.1f,%.1f,,,"
      % (sys.argv[4], torch.__version__, "flush_denormal" if sys.argv[5] == "1" else "", sys.argv[2], sys.argv[3],
         e["forward_ms_median"], e["fwd_bwd_ms_median"] - e["forward_ms_median"], e["fwd_bwd_ms_median"]))
PY
}

echo "schnet_speed.sh: start $(uptime)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for b in $BUILDS; do bench "$b" "$r"; done
    if [ -n "$TORCH" ]; then
        torch "$r" 0
        if [ "$TORCH_FTZ" = 1 ]; then torch "$r" 1; torch "$r" 1; fi
        torch "$r" 0
    fi
    for b in $REVERSED; do bench "$b" "$r"; done
    echo "schnet_speed.sh: round $r of $ROUNDS done, $(uptime)"
    r=$((r + 1))
done
echo "schnet_speed.sh: end $(uptime)"
/usr/bin/python3 - "$OUT" "$COL" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
col = sys.argv[2]
names = list(dict.fromkeys(r["build"] for r in rows))
def med(b, col):
    v = [float(r[col]) for r in rows if r["build"] == b and r[col]]
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
base = med(names[0], col + "_ms")[0]
print("\n%s encoder forward + backward, batch 256, 1 core (median over runs; speed-up = %s / this)"
      % ("SchNet" if col == "schnet" else "Image", names[0]))
print("%-10s %-13s %4s %8s %8s %20s %8s %14s %9s %11s" % ("build", "commit", "runs", "fwd ms", "bwd ms",
      "fwd+bwd ms (range)", "speed-up", "peak RSS MiB", "BLIS GF/s", "GEMM/BLIS"))
for b in names:
    g = med(b, col + "_ms")
    rss, bl = med(b, "peak_rss_mib"), med(b, "blis_gflops")
    ratio = [float(r["gemm_gflops"]) / float(r["blis_gflops"]) for r in rows
             if r["build"] == b and r.get("gemm_gflops") and r["blis_gflops"]]
    c = next(r["commit"] for r in rows if r["build"] == b)
    print("%-10s %-13s %4d %8.0f %8.0f %6.0f (%5.0f-%5.0f) %8.2f %14s %9s %11s" % (
        b, c, g[3], med(b, col + "_fwd_ms")[0], med(b, col + "_bwd_ms")[0], g[0], g[1], g[2], base / g[0],
        "%.0f" % rss[0] if rss else "", "%.1f" % bl[0] if bl else "",
        "%.2f" % statistics.median(ratio) if ratio else ""))
PY
