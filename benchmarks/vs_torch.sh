#!/bin/sh
# Training throughput of bench_train against the PyTorch reference of the same model
# (../shared/anchors: torch_ref.py through bench_torch.py, BLIS, the tuned malloc of
# vs_pytorch.sh), in the same run, A-B-B-A per rank count, with extra job settings for our
# side (e.g. --set train.precision=bf16). PyTorch runs float32 with 1 thread per rank.
#
#   benchmarks/vs_torch.sh --data C.h5 --torch-cache T.h5 [--ranks "1 2"] [--steps 6] [--torch-ftz]
#                          [--set SECTION.KEY=VALUE ...] [--label NAME] [--out CSV]
#
# --torch-ftz also runs PyTorch with torch.set_flush_denormal(True) (subnormal floats flushed
# to zero, as our SchNet convolution does; the RBF rows of real conformers hold subnormals and
# x86 takes a slow microcode path for each), order ours, torch, torch_ftz, torch_ftz, torch, ours.
#
# C.h5: an mmsa_prep dataset of N ZINC250k molecules with conformers; T.h5: the same
# molecules featurised by bench_torch.py (--n N --cache-dir DIR writes DIR/zincN.h5;
# ../shared/anchors/vs_pytorch.sh makes both in /tmp/mmsa_vs_pytorch). Prints molecules/s
# of all ranks (ours) and of all threads (PyTorch) and their ratio; appends one CSV line per
# run (label, ranks, side, load, molecules/s, peak RSS MiB of the largest rank / the
# process) to --out (default benchmarks/results/speed/vs_torch.csv).
# Our ranks run with mpirun --bind-to none, as PyTorch's process runs: Open MPI binds up to two
# ranks to a core each by default, and on a shared machine a rank pinned to the busy core got
# 30% less of the machine than the same run unpinned (bench_train 13.4 vs 9.8 s, same CPU time).
set -eu
DATA=""; CACHE=""; RANKS="1 2"; STEPS=6; LABEL=""; SETS=""; FTZ=0
OUT=benchmarks/results/speed/vs_torch.csv
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;;
    --torch-cache) CACHE=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --torch-ftz) FTZ=1; shift ;;
    --set) SETS="$SETS --set $2"; LABEL=${LABEL:-$2}; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "vs_torch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$DATA" ] && [ -f "$CACHE" ] || { echo "vs_torch.sh: --data and --torch-cache must name existing files (see --help)" >&2; exit 2; }
[ -x build/benchmarks/bench_train ] || { echo "vs_torch.sh: build/benchmarks/bench_train is missing: make build/benchmarks/bench_train" >&2; exit 2; }
SHARED=${MMSA_SHARED:-$(pwd)/../shared}
ANCHORS=$SHARED/anchors
[ -f "$ANCHORS/bench_torch.py" ] || { echo "vs_torch.sh: no $ANCHORS/bench_torch.py" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "vs_torch.sh: /usr/bin/python3 has no torch: apt-get install python3-torch" >&2; exit 2; }
LABEL=${LABEL:-fp32}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
RAW=benchmarks/out/vs_torch
mkdir -p "$RAW" "$(dirname "$OUT")"
[ -f "$OUT" ] || echo "label,ranks,side,round,load1,mol_per_s,peak_rss_mib" > "$OUT"
load1() { cut -d' ' -f1 /proc/loadavg; }

ours() { # ranks round
    l=$(load1); log=$RAW/${LABEL}_ours_$1_$2.txt
    # shellcheck disable=SC2086
    mpirun --bind-to none -n "$1" build/benchmarks/bench_train --dataset "$DATA" --job configs/zinc250k.yaml --steps "$STEPS" \
        --warmup 2 --set train.holdout=0 --set train.batch_size=256 $SETS > "$log" 2>&1 ||
        { echo "vs_torch.sh: bench_train failed, see $log" >&2; exit 1; }
    # all ranks together (bench_train: "molecules/s per rank  X   (all ranks Y)"), as PyTorch's P threads
    v=$(awk '/molecules\/s per rank/{print $NF}' "$log" | tr -d ')'); m=$(awk '/peak RSS per rank/{print $5}' "$log")
    echo "$LABEL,$1,ours,$2,$l,$v,$m" >> "$OUT"; echo "$v"
}
torch() { # ranks round ftz (0 or 1)
    l=$(load1); side=torch; [ "$3" = 1 ] && side=torch_ftz
    js=$RAW/${LABEL}_${side}_$1_$2.json
    OMP_NUM_THREADS=$1 BLIS_NUM_THREADS=$1 GLIBC_TUNABLES=$TUNED /usr/bin/python3 -c 'import os, runpy, sys, torch
if sys.argv[1] == "1": assert torch.set_flush_denormal(True)
sys.path.insert(0, os.path.dirname(sys.argv[2])); sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$3" "$ANCHORS/bench_torch.py" --worker \
        --threads "$1" --steps "$STEPS" --warmup 2 --batch 256 --enc-warmup 0 --enc-reps 1 --h5 "$CACHE" --json "$js" \
        > "$RAW/${LABEL}_${side}_$1_$2.txt" 2>&1 || { echo "vs_torch.sh: bench_torch.py failed, see $RAW/${LABEL}_${side}_$1_$2.txt" >&2; exit 1; }
    v=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["train"]; print("%.1f" % j["mol_per_s_median"])' "$js")
    m=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j.get("peak_rss_mib", j["train"].get("peak_rss_mib", "")))' "$js" 2>/dev/null || echo "")
    echo "$LABEL,$1,$side,$2,$l,$v,$m" >> "$OUT"; echo "$v"
}

if [ "$FTZ" = 1 ]; then
    printf "%-8s %-6s %12s %12s %8s %16s %8s\n" label ranks "ours mol/s" "torch mol/s" ratio "torch ftz mol/s" ratio
else
    printf "%-8s %-6s %12s %12s %8s\n" label ranks "ours mol/s" "torch mol/s" ratio
fi
for r in $RANKS; do
    c1=$(ours "$r" 1); t1=$(torch "$r" 1 0)
    f1=0; f2=0
    if [ "$FTZ" = 1 ]; then f1=$(torch "$r" 1 1); f2=$(torch "$r" 2 1); fi
    t2=$(torch "$r" 2 0); c2=$(ours "$r" 2)
    awk -v L="$LABEL" -v r="$r" -v c1="$c1" -v c2="$c2" -v t1="$t1" -v t2="$t2" -v f1="$f1" -v f2="$f2" -v z="$FTZ" \
        'BEGIN { c = (c1 + c2) / 2; t = (t1 + t2) / 2; f = (f1 + f2) / 2
                 if (z == 1) printf "%-8s %-6s %12.1f %12.1f %8.2f %16.1f %8.2f\n", L, r, c, t, c / t, f, c / f
                 else printf "%-8s %-6s %12.1f %12.1f %8.2f\n", L, r, c, t, c / t }'
done
echo "runs: $OUT (raw outputs in $RAW)"
