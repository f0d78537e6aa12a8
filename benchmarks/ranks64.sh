#!/bin/sh
# 64 ranks for real: mmsa_pretrain on 64 MPI ranks (oversubscribed on a small machine),
# checkpointed, resumed on 32 ranks, and compared with the same job on 1 rank step by
# step. A benchmark, not a test: on 2 cores it takes several minutes.
#
#   benchmarks/ranks64.sh [--ranks 64] [--resume-ranks 32] [--steps 4] [--more 2] [--batch 128]
#
# The data: configs/data/demo.csv (600 ZINC250k molecules) prepared without conformers;
# the model: configs/tiny.yaml without the conformer encoder, global batch --batch (at
# least 2 molecules per rank), a log line and a checkpoint every step or two. Prints a
# table of the three runs (ranks, steps, seconds per step, peak RSS of the largest rank,
# the log's largest relative loss difference from the 1-rank run) and the loss of every
# step; writes runs.csv and steps.csv under --out (default benchmarks/out/ranks64).
# Exit status 1 when a run fails or a loss differs from the 1-rank one by more than
# --tol (default 1e-5) relative.
set -eu

usage() {
    cat <<EOF
usage: benchmarks/ranks64.sh [options]
  --ranks P          ranks of the first run (default 64)
  --resume-ranks Q   ranks that resume it (default 32)
  --steps S          steps of the first run (default 4)
  --more M           steps after the resume (default 2)
  --batch B          global batch (default 128)
  --tol T            largest relative loss difference allowed (default 1e-5)
  --out DIR          output folder (default benchmarks/out/ranks64)
  -h, --help         this text
EOF
}

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$HERE/bin}
OUT=$HERE/benchmarks/out/ranks64
P=64; Q=32; STEPS=4; MORE=2; BATCH=128; TOL=1e-5
while [ $# -gt 0 ]; do
    case "$1" in
    --ranks) P=$2; shift 2 ;;
    --resume-ranks) Q=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --more) MORE=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --tol) TOL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ranks64.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ -x "$BIN/mmsa_pretrain" ] || { echo "ranks64.sh: $BIN/mmsa_pretrain not found: run make apps first" >&2; exit 1; }
# Oversubscribed ranks must give up the core while they wait in MPI (Open MPI polls by
# default): without this, 64 ranks on 2 cores spend their time spinning.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$OUT"
cd "$HERE"

echo "== data: configs/data/demo.csv without conformers"
mpirun --oversubscribe -n 2 "$BIN/mmsa_prep" --input configs/data/demo.csv --output "$OUT/demo.h5" --no-3d --quiet \
    </dev/null >"$OUT/prep.txt" 2>&1 || { cat "$OUT/prep.txt"; exit 1; }

common="--set train.dataset=$OUT/demo.h5 --set model.use_conformer=false --set train.batch_size=$BATCH \
 --set train.log_every=1 --set checkpoint.every=2 --set checkpoint.keep=2 --set train.progress=false"
run() { # label, ranks, run dir, steps
    t0=$(date +%s.%N)
    set +e
    mpirun --oversubscribe -n "$2" "$BIN/mmsa_pretrain" configs/tiny.yaml $common --set "train.run_dir=$3" --steps "$4" \
        </dev/null >"$OUT/$1.txt" 2>&1
    rc=$?
    set -e
    secs=$(echo "$(date +%s.%N) - $t0" | bc)
    if [ $rc -ne 0 ]; then echo "ranks64.sh: the $1 run failed (status $rc):" >&2; tail -n 20 "$OUT/$1.txt" >&2; exit 1; fi
    echo "$secs"
}
rm -rf "$OUT/one" "$OUT/many"
echo "== 1 rank, $((STEPS + MORE)) steps"
s1=$(run one 1 "$OUT/one" $((STEPS + MORE)))
echo "== $P ranks, $STEPS steps"
sp=$(run many "$P" "$OUT/many" "$STEPS")
echo "== resumed on $Q ranks, $MORE steps"
sq=$(run resume "$Q" "$OUT/many" "$MORE")
grep -q "resuming from .*step_0*$STEPS.h5" "$OUT/resume.txt" || { echo "ranks64.sh: the $Q-rank run did not resume from step $STEPS" >&2; cat "$OUT/resume.txt" >&2; exit 1; }

field() { sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1"; }
field "$OUT/one/log.jsonl" loss >"$OUT/one.loss"
field "$OUT/many/log.jsonl" loss >"$OUT/many.loss"
field "$OUT/many/log.jsonl" ranks >"$OUT/many.ranks"
field "$OUT/many/log.jsonl" peak_rss_mib >"$OUT/many.rss"
echo "step,ranks,loss_1_rank,loss,rel_diff,peak_rss_mib" >"$OUT/steps.csv"
paste -d, "$OUT/one.loss" "$OUT/many.loss" "$OUT/many.ranks" "$OUT/many.rss" | awk -F, -v OFS=, \
    '{ d = ($1 - $2) / $1; if (d < 0) d = -d; print NR, $3, $1, $2, d, $4 }' >>"$OUT/steps.csv"
n=$(($(wc -l <"$OUT/steps.csv") - 1))
[ "$n" -eq $((STEPS + MORE)) ] || { echo "ranks64.sh: expected $((STEPS + MORE)) logged steps, found $n" >&2; exit 1; }
worst=$(tail -n +2 "$OUT/steps.csv" | awk -F, 'BEGIN { w = 0 } { if ($5 > w) w = $5 } END { printf "%.3g", w }')
rss_p=$(awk -F, -v p="$P" 'NR > 1 && $2 == p { if ($6 > m) m = $6 } END { print m + 0 }' "$OUT/steps.csv")
rss_q=$(awk -F, -v q="$Q" 'NR > 1 && $2 == q { if ($6 > m) m = $6 } END { print m + 0 }' "$OUT/steps.csv")
rss_1=$(field "$OUT/one/log.jsonl" peak_rss_mib | sort -n | tail -n 1)
echo "run,ranks,steps,seconds,seconds_per_step,peak_rss_mib_largest_rank" >"$OUT/runs.csv"
echo "one,1,$((STEPS + MORE)),$s1,$(echo "$s1 / ($STEPS + $MORE)" | bc -l),$rss_1" >>"$OUT/runs.csv"
echo "many,$P,$STEPS,$sp,$(echo "$sp / $STEPS" | bc -l),$rss_p" >>"$OUT/runs.csv"
echo "resume,$Q,$MORE,$sq,$(echo "$sq / $MORE" | bc -l),$rss_q" >>"$OUT/runs.csv"

echo
printf '%-8s %6s %6s %10s %10s %16s\n' run ranks steps seconds s/step "peak RSS MiB"
tail -n +2 "$OUT/runs.csv" | awk -F, '{ printf "%-8s %6s %6s %10.1f %10.1f %16.1f\n", $1, $2, $3, $4, $5, $6 }'
echo
printf '%5s %6s %14s %14s %10s\n' step ranks "loss 1 rank" loss "rel diff"
tail -n +2 "$OUT/steps.csv" | awk -F, '{ printf "%5s %6s %14s %14s %10.2e\n", $1, $2, $3, $4, $5 }'
echo "largest relative difference from the 1-rank run: $worst (allowed $TOL); runs.csv and steps.csv in $OUT"
awk -v w="$worst" -v t="$TOL" 'BEGIN { exit !(w <= t) }'
