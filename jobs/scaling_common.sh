# Shared by jobs/scaling_strong.sh and jobs/scaling_weak.sh (sourced, not run).
#
# For each rank count P: a fresh run of `mpirun -n P bin/mmsa_pretrain JOB --steps W+S`
# (no checkpoints, no resume, log_every 1), then from its log.jsonl the median step time
# over the last S steps (the first W are warm-up), the throughput, and the bytes each rank
# communicated per step by collective kind. Writes OUT/scaling_<mode>.csv and draws
# OUT/scaling_<mode>.png (throughput and parallel efficiency against ranks) with gnuplot.
#
# Efficiency E(P) = (throughput(P) / P) / (throughput(P0) / P0), P0 the smallest rank
# count measured (normally 1). For strong scaling (fixed global batch B) that is
# T(P0) P0 / (T(P) P); for weak scaling (fixed batch b per rank) it is T(P0) / T(P).
#
# load_avg is the 1-minute load average when the run ended (other work on the machine
# slows MPI runs far more than serial ones: a collective waits for every rank to be
# scheduled).
#
# Rank counts above the number of cores need --oversubscribe: those runs share cores, so
# they check that the code runs and agrees at that rank count, not how fast it is; their
# rows say oversubscribed=1 and the plots draw them apart.

scaling_usage() {
    cat <<EOF
usage: jobs/scaling_$MODE.sh --dataset DATA.h5 [options]

  --dataset FILE     dataset written by mmsa_prep (required; or env DATASET)
  --job FILE         job file for the model and optimiser (default configs/zinc250k.yaml)
  --ranks "LIST"     rank counts (default "1 2")
  --batch N          $BATCH_HELP (default $BATCH_DEFAULT)
  --steps N          timed steps per rank count (default 6)
  --warmup N         untimed steps before them (default 2)
  --oversubscribe    allow rank counts above the $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) cores (correctness only, flagged)
  --out DIR          output folder (default benchmarks/out/scaling)
  --set K=V          any job key, passed to mmsa_pretrain (repeatable)
  --bin DIR          folder of mmsa_pretrain (default bin)

writes DIR/scaling_$MODE.csv, DIR/scaling_$MODE.png and DIR/$MODE-P<ranks>/ (run logs).
EOF
}

scaling_main() { # MODE (strong|weak) and the command-line arguments
    set -u
    local repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    cd "$repo" || return 1
    local dataset=${DATASET:-} job=configs/zinc250k.yaml ranks="1 2" batch=$BATCH_DEFAULT steps=6 warmup=2
    local over=0 out=benchmarks/out/scaling bin=bin
    local -a sets=()
    while [ $# -gt 0 ]; do
        case $1 in
        --dataset) dataset=$2; shift 2 ;;
        --job) job=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --oversubscribe) over=1; shift ;;
        --out) out=$2; shift 2 ;;
        --set) sets+=(--set "$2"); shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h | --help) scaling_usage; return 0 ;;
        *) echo "scaling_$MODE: unknown argument '$1'" >&2; scaling_usage >&2; return 2 ;;
        esac
    done
    if [ -z "$dataset" ] || [ ! -r "$dataset" ]; then
        echo "scaling_$MODE: --dataset FILE is required and must be readable (got '${dataset}')" >&2
        echo "  prepare one: mpirun -n 2 bin/mmsa_prep --input ../shared/data/pretrain/zinc250k.csv.gz --limit 2000 --output DATA.h5" >&2
        return 2
    fi
    [ -x "$bin/mmsa_pretrain" ] || { echo "scaling_$MODE: $bin/mmsa_pretrain not built (make)" >&2; return 2; }
    [ -r "$job" ] || { echo "scaling_$MODE: cannot read job file $job" >&2; return 2; }
    case "$steps$warmup$batch" in *[!0-9]*) echo "scaling_$MODE: --steps, --warmup, --batch take integers" >&2; return 2 ;; esac
    [ "$steps" -ge 1 ] && [ "$batch" -ge 1 ] || { echo "scaling_$MODE: --steps and --batch must be >= 1" >&2; return 2; }

    export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
    if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    local cores
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    mkdir -p "$out"
    local csv=$out/scaling_$MODE.csv
    echo "ranks,batch_per_rank,global_batch,step_s,step_s_min,step_s_max,mol_per_s,mol_per_s_per_rank,speedup,efficiency,oversubscribed,grad_allreduce_bytes,allgather_bytes,reduce_scatter_bytes,norm_allreduce_bytes,bank_bytes,other_bytes,loss_first,loss_last,load_avg" >"$csv.tmp"
    echo "scaling_$MODE: dataset $dataset, job $job, ranks '$ranks', $BATCH_LABEL $batch, $warmup warm-up + $steps timed steps; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    local P b B flag run rc
    for P in $ranks; do
        case "$P" in '' | *[!0-9]* | 0) echo "scaling_$MODE: bad rank count '$P'" >&2; return 2 ;; esac
        flag=0
        local -a mpiflags=()
        if [ "$P" -gt "$cores" ]; then
            if [ "$over" != 1 ]; then
                echo "scaling_$MODE: skipping P=$P: more ranks than the $cores cores (add --oversubscribe for a correctness-only run)"
                continue
            fi
            flag=1
            mpiflags=(--oversubscribe)
        fi
        if [ "$MODE" = strong ]; then
            B=$batch
            if [ "$B" -lt "$P" ]; then echo "scaling_strong: skipping P=$P: global batch $B < ranks" >&2; continue; fi
            b=$(( (B + P - 1) / P ))
        else
            b=$batch
            B=$((batch * P))
        fi
        run=$out/$MODE-P$P
        rm -rf "$run"
        mkdir -p "$run"
        echo "scaling_$MODE: P=$P, global batch $B$([ $flag = 1 ] && echo ' (oversubscribed: correctness only)')"
        mpirun -n "$P" "${mpiflags[@]}" "$bin/mmsa_pretrain" "$job" --quiet \
            --set "train.dataset=$dataset" --set "train.run_dir=$run" --set "train.batch_size=$B" \
            --set train.holdout=0 --set train.log_every=1 --set checkpoint.every=0 --set checkpoint.resume=false \
            "${sets[@]}" --steps $((warmup + steps)) >"$run/stdout.txt" 2>"$run/stderr.txt"
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "scaling_$MODE: P=$P failed (exit $rc):" >&2
            tail -n 20 "$run/stderr.txt" >&2
            return 1
        fi
        local load
        load=$(cut -d' ' -f1 /proc/loadavg)
        python3 - "$run/log.jsonl" "$P" "$b" "$B" "$warmup" "$flag" "$load" >>"$csv.tmp" <<'EOF' || return 1
import json, statistics, sys
log, P, b, B, warmup, flag, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
rows = [json.loads(l) for l in open(log) if l.strip()]
timed = [r for r in rows if r["step"] > warmup]
if not timed:
    sys.exit("no timed steps in " + log)
# log_every is 1: mol_per_s is the global batch over the wall time of that one step
t = [B / r["mol_per_s"] for r in timed]
med = statistics.median(t)
kinds = ["grad_allreduce", "allgather", "reduce_scatter", "norm_allreduce", "bank", "other"]
cb = [statistics.median(r["comm_bytes"][k] for r in timed) for k in kinds]
print(f"{P},{b},{B},{med:.5f},{min(t):.5f},{max(t):.5f},{B / med:.3f},{B / med / P:.3f},,,{flag},"
      + ",".join(f"{x:.0f}" for x in cb) + f",{rows[0]['loss']:.6f},{rows[-1]['loss']:.6f},{load}")
EOF
    done
    # speedup and efficiency against the smallest rank count measured
    python3 - "$csv.tmp" "$csv" <<'EOF' || return 1
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if not rows:
    sys.exit("no rank count was measured")
base = min(rows, key=lambda r: int(r["ranks"]))
P0, x0 = int(base["ranks"]), float(base["mol_per_s"])
for r in rows:
    P, x = int(r["ranks"]), float(r["mol_per_s"])
    r["speedup"] = f"{x / x0:.4f}"
    r["efficiency"] = f"{(x / P) / (x0 / P0):.4f}"
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=rows[0].keys())
    w.writeheader()
    w.writerows(rows)
EOF
    rm -f "$csv.tmp"
    echo
    column -s, -t <"$csv" | cut -c1-150
    scaling_plot "$csv" "$out/scaling_$MODE.png" "$(basename "$dataset"), $BATCH_LABEL $batch"
}

scaling_plot() { # csv png subtitle
    local csv=$1 png=$2 sub=$3
    if ! command -v gnuplot >/dev/null; then
        echo "scaling_$MODE: gnuplot not found (make deps installs gnuplot-nox); no plot" >&2
        return 0
    fi
    local title
    if [ "$MODE" = strong ]; then title="strong scaling (fixed global batch)"; else title="weak scaling (fixed batch per rank)"; fi
    gnuplot <<EOF || { echo "scaling_$MODE: gnuplot failed" >&2; return 1; }
set datafile separator ","
set terminal pngcairo size 1100,480 font ",10" noenhanced
set output "$png"
set multiplot layout 1,2 title "MMSA pre-training, $title\n$sub"
set key outside below
set grid
set xlabel "MPI ranks"
set logscale x 2
set ylabel "molecules / s (all ranks)"
# ideal: the smallest rank count's throughput scaled by P / P0, which is throughput / efficiency
plot "$csv" using 1:(\$11 == 0 ? \$7 : 1/0) with linespoints pt 7 lw 2 title "measured", \
     "$csv" using 1:(\$11 == 1 ? \$7 : 1/0) with points pt 6 ps 1.5 title "oversubscribed (correctness only)", \
     "$csv" using 1:(\$7 / \$10) with lines dt 2 lc rgb "gray40" title "ideal"
set ylabel "parallel efficiency"
set yrange [0:1.2]
plot "$csv" using 1:(\$11 == 0 ? \$10 : 1/0) with linespoints pt 7 lw 2 title "measured", \
     "$csv" using 1:(\$11 == 1 ? \$10 : 1/0) with points pt 6 ps 1.5 title "oversubscribed (correctness only)", \
     1 with lines dt 2 lc rgb "gray40" title "ideal"
unset multiplot
EOF
    echo "wrote $csv and $png"
}
