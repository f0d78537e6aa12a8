#!/bin/sh
# Training throughput of bench_train against the PyTorch reference of the same model
# (../shared/anchors: torch_ref.py through bench_torch.py, BLIS, the tuned malloc of
# vs_pytorch.sh), in the same run, A-B-B-A per rank count, with extra job settings for our
# side (e.g. --set train.precision=bf16). PyTorch runs float32 with 1 thread per rank.
#
#   benchmarks/vs_torch.sh --data C.h5 --torch-cache T.h5 [--ranks "1 2"] [--steps 6]
#                          [--set SECTION.KEY=VALUE ...] [--label NAME] [--out CSV]
#
# C.h5: an mmsa_prep dataset of N ZINC250k molecules with conformers; T.h5: the same
# molecules featurised by bench_torch.py (--n N --cache-dir DIR writes DIR/zincN.h5;
# ../shared/anchors/vs_pytorch.sh makes both in /tmp/mmsa_vs_pytorch). Prints molecules/s
# per rank count and the ratio; appends one CSV line per run (label, ranks, side, load,
# molecules/s, peak RSS MiB) to --out (default benchmarks/results/speed/vs_torch.csv).
set -eu
DATA=""; CACHE=""; RANKS="1 2"; STEPS=6; LABEL=""; SETS=""
OUT=benchmarks/results/speed/vs_torch.csv
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;;
    --torch-cache) CACHE=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --set) SETS="$SETS --set $2"; LABEL=${LABEL:-$2}; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
    l=$(load1); log=$RAW/ours_$1_$2.txt
    # shellcheck disable=SC2086
    mpirun -n "$1" build/benchmarks/bench_train --dataset "$DATA" --job configs/zinc250k.yaml --steps "$STEPS" \
        --warmup 2 --set train.holdout=0 --set train.batch_size=256 $SETS > "$log" 2>&1 ||
        { echo "vs_torch.sh: bench_train failed, see $log" >&2; exit 1; }
    v=$(awk '/molecules\/s per rank/{print $4}' "$log"); m=$(awk '/peak RSS per rank/{print $5}' "$log")
    echo "$LABEL,$1,ours,$2,$l,$v,$m" >> "$OUT"; echo "$v"
}
torch() { # ranks round
    l=$(load1); js=$RAW/torch_$1_$2.json
    OMP_NUM_THREADS=$1 BLIS_NUM_THREADS=$1 GLIBC_TUNABLES=$TUNED /usr/bin/python3 "$ANCHORS/bench_torch.py" --worker \
        --threads "$1" --steps "$STEPS" --warmup 2 --batch 256 --enc-warmup 0 --enc-reps 1 --h5 "$CACHE" --json "$js" \
        > "$RAW/torch_$1_$2.txt" 2>&1 || { echo "vs_torch.sh: bench_torch.py failed, see $RAW/torch_$1_$2.txt" >&2; exit 1; }
    v=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["train"]; print("%.1f" % j["mol_per_s_median"])' "$js")
    m=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j.get("peak_rss_mib", j["train"].get("peak_rss_mib", "")))' "$js" 2>/dev/null || echo "")
    echo "$LABEL,$1,torch,$2,$l,$v,$m" >> "$OUT"; echo "$v"
}

printf "%-8s %-6s %14s %14s %8s\n" label ranks "ours mol/s" "torch mol/s" ratio
for r in $RANKS; do
    c1=$(ours "$r" 1); t1=$(torch "$r" 1); t2=$(torch "$r" 2); c2=$(ours "$r" 2)
    awk -v L="$LABEL" -v r="$r" -v c1="$c1" -v c2="$c2" -v t1="$t1" -v t2="$t2" \
        'BEGIN { c = (c1 + c2) / 2; t = (t1 + t2) / 2; printf "%-8s %-6s %14.1f %14.1f %8.2f\n", L, r, c, t, c / t }'
done
echo "runs: $OUT (raw outputs in $RAW)"
