#!/bin/sh
# ACML training throughput beside an MMSA step, in one run on the same data and ranks:
# molecules/s per rank of mmsa_pretrain with model.objective acml (cached teacher, the
# student GIN 5x64 and two heads [512, 512]) and with the MMSA model of the same job
# file family (configs/tiny.yaml), each for --steps steps after --skip warm-up steps.
#
#   benchmarks/acml_throughput.sh [--data demo-out/demo.h5] [--teacher demo-out/run]
#                                 [--ranks 2] [--steps 60] [--skip 10] [--batch 64]
#
# Needs `make demo` first (its dataset and MMSA run are the defaults). Prints a table of
# the median molecules/s per rank (and the ratio ACML / MMSA) and writes
# benchmarks/out/acml_throughput.csv.
set -eu
DATA=demo-out/demo.h5; TEACHER=demo-out/run; RANKS=2; STEPS=60; SKIP=10; BATCH=64
BIN=${BIN:-bin}; OUT=benchmarks/out
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;; --teacher) TEACHER=$2; shift 2 ;; --ranks) RANKS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;; --skip) SKIP=$2; shift 2 ;; --batch) BATCH=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "acml_throughput.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=$((STEPS + SKIP))
common="--quiet --set train.dataset=$DATA --set train.batch_size=$BATCH --set train.max_steps=$n --set train.log_every=1 --set checkpoint.every=0"
mpirun --oversubscribe -n "$RANKS" "$BIN/mmsa_pretrain" configs/tiny.yaml $common --set "train.run_dir=$tmp/mmsa" \
    --set train.holdout=0 >/dev/null
mpirun --oversubscribe -n "$RANKS" "$BIN/mmsa_pretrain" configs/acml_image.yaml $common --set "train.run_dir=$tmp/acml" \
    --set acml.teacher=fingerprint --set "acml.teacher_init=$TEACHER" --set acml.holdout_fraction=0 >/dev/null
median() { # log.jsonl -> median mol_per_s after SKIP lines
    tail -n +"$((SKIP + 1))" "$1" | sed -n 's/.*"mol_per_s": \([0-9.]*\).*/\1/p' | sort -n |
        awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
m=$(median "$tmp/mmsa/log.jsonl"); a=$(median "$tmp/acml/log.jsonl")
echo "objective,ranks,batch,steps,median_mol_per_s,mol_per_s_per_rank" > "$OUT/acml_throughput.csv"
printf '%-34s %6s %6s %14s %14s\n' "objective (demo data)" ranks batch "mol/s" "mol/s/rank"
for row in "mmsa (configs/tiny.yaml):$m" "acml (GIN 5x64, heads 512, cached):$a"; do
    name=${row%%:*}; v=${row##*:}
    pr=$(awk -v v="$v" -v r="$RANKS" 'BEGIN {printf "%.1f", v / r}')
    printf '%-34s %6s %6s %14s %14s\n' "$name" "$RANKS" "$BATCH" "$v" "$pr"
    echo "${name%% *},$RANKS,$BATCH,$STEPS,$v,$pr" >> "$OUT/acml_throughput.csv"
done
awk -v a="$a" -v m="$m" 'BEGIN {printf "ACML / MMSA: %.2fx\n", a / m}'
echo "wrote $OUT/acml_throughput.csv"
