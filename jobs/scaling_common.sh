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
  --repeats R        runs per rank count, interleaved (default 1); medians over all of them
  --oversubscribe    allow rank counts above the $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) cores (correctness only, flagged)
  --out DIR          output folder (default benchmarks/out/scaling)
  --set K=V          any job key, passed to mmsa_pretrain (repeatable)
  --bin DIR          folder of mmsa_pretrain (default bin)
  --mpirun-args "A"  more mpirun options, e.g. "--mca mpi_yield_when_idle 1" on a shared machine

writes DIR/scaling_$MODE.csv, DIR/scaling_$MODE.png, DIR/$MODE-P<ranks>-r<repeat>/ (run
logs) and DIR/$MODE-runs.txt (which run is which).
EOF
}

scaling_main() { # MODE (strong|weak) and the command-line arguments
    set -u
    local repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    cd "$repo" || return 1
    local dataset=${DATASET:-} job=configs/zinc250k.yaml ranks="1 2" batch=$BATCH_DEFAULT steps=6 warmup=2
    local over=0 out=benchmarks/out/scaling bin=bin repeats=1
    local -a sets=() extra=()
    while [ $# -gt 0 ]; do
        case $1 in
        --dataset) dataset=$2; shift 2 ;;
        --job) job=$2; shift 2 ;;
        --ranks) ranks=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --oversubscribe) over=1; shift ;;
        --out) out=$2; shift 2 ;;
        --set) sets+=(--set "$2"); shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --mpirun-args) read -r -a extra <<<"$2"; shift 2 ;;
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
    case "$steps$warmup$batch$repeats" in *[!0-9]*) echo "scaling_$MODE: --steps, --warmup, --batch, --repeats take integers" >&2; return 2 ;; esac
    [ "$steps" -ge 1 ] && [ "$batch" -ge 1 ] && [ "$repeats" -ge 1 ] ||
        { echo "scaling_$MODE: --steps, --batch and --repeats must be >= 1" >&2; return 2; }

    export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
    if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    local cores
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    mkdir -p "$out"
    local csv=$out/scaling_$MODE.csv
    echo "scaling_$MODE: dataset $dataset, job $job, ranks '$ranks', $BATCH_LABEL $batch, $warmup warm-up + $steps timed steps, $repeats repeat(s)${extra[*]:+, mpirun ${extra[*]}}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    local P b B flag run rc r
    : >"$out/$MODE-runs.txt"
    # repeats outermost: every rank count sees the machine in the same state, on average
    for r in $(seq 1 "$repeats"); do
        for P in $ranks; do
            case "$P" in '' | *[!0-9]* | 0) echo "scaling_$MODE: bad rank count '$P'" >&2; return 2 ;; esac
            flag=0
            local -a mpiflags=()
            if [ "$P" -gt "$cores" ]; then
                if [ "$over" != 1 ]; then
                    [ "$r" = 1 ] && echo "scaling_$MODE: skipping P=$P: more ranks than the $cores cores (add --oversubscribe for a correctness-only run)"
                    continue
                fi
                flag=1
                mpiflags=(--oversubscribe)
            fi
            if [ "$MODE" = strong ]; then
                B=$batch
                if [ "$B" -lt "$P" ]; then
                    [ "$r" = 1 ] && echo "scaling_strong: skipping P=$P: global batch $B < ranks" >&2
                    continue
                fi
                b=$(( (B + P - 1) / P ))
            else
                b=$batch
                B=$((batch * P))
            fi
            run=$out/$MODE-P$P-r$r
            rm -rf "$run"
            mkdir -p "$run"
            echo "scaling_$MODE: repeat $r, P=$P, global batch $B$([ $flag = 1 ] && echo ' (oversubscribed: correctness only)')"
            mpirun -n "$P" "${mpiflags[@]}" "${extra[@]}" "$bin/mmsa_pretrain" "$job" --quiet \
                --set "train.dataset=$dataset" --set "train.run_dir=$run" --set "train.batch_size=$B" \
                --set train.holdout=0 --set train.log_every=1 --set checkpoint.every=0 --set checkpoint.resume=false \
                "${sets[@]}" --steps $((warmup + steps)) >"$run/stdout.txt" 2>"$run/stderr.txt"
            rc=$?
            if [ $rc -ne 0 ]; then
                echo "scaling_$MODE: P=$P failed (exit $rc):" >&2
                tail -n 20 "$run/stderr.txt" >&2
                return 1
            fi
            echo "$P $b $B $flag $(cut -d' ' -f1 /proc/loadavg) $run/log.jsonl" >>"$out/$MODE-runs.txt"
        done
    done
    # Per rank count: medians over the timed steps of every repeat; speedup and
    # efficiency against the smallest rank count; for strong scaling (the same global
    # batch, so the same loss trajectory by the determinism contract) the largest
    # relative loss difference to the smallest rank count over all steps.
    python3 - "$out/$MODE-runs.txt" "$csv" "$warmup" "$MODE" <<'EOF' || return 1
import csv, json, statistics, sys
runs_path, out_path, warmup, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kinds = ["grad_allreduce", "allgather", "reduce_scatter", "norm_allreduce", "bank", "loss_cols", "other"]
by_p = {}
for line in open(runs_path):
    P, b, B, flag, load, log = line.split()
    rows = [json.loads(l) for l in open(log) if l.strip()]
    e = by_p.setdefault(int(P), {"b": int(b), "B": int(B), "flag": flag, "loads": [], "runs": []})
    e["loads"].append(float(load))
    e["runs"].append(rows)
if not by_p:
    sys.exit("no rank count was measured")
P0 = min(by_p)
ref = {r["step"]: r["loss"] for r in by_p[P0]["runs"][0]}
out = []
for P in sorted(by_p):
    e = by_p[P]
    B = e["B"]
    timed = [r for rows in e["runs"] for r in rows if r["step"] > warmup]
    if not timed:
        sys.exit(f"no timed steps at P={P}")
    # log_every is 1: mol_per_s is the global batch over the wall time of that one step
    t = [B / r["mol_per_s"] for r in timed]
    med = statistics.median(t)
    cb = [statistics.median(r["comm_bytes"].get(k, 0) for r in timed) for k in kinds]
    diff = ""
    if mode == "strong":
        d = [abs(r["loss"] - ref[r["step"]]) / abs(ref[r["step"]]) for rows in e["runs"] for r in rows if r["step"] in ref]
        diff = f"{max(d):.2e}" if d else ""
    row = {"ranks": P, "batch_per_rank": e["b"], "global_batch": B, "step_s": f"{med:.5f}", "step_s_min": f"{min(t):.5f}",
           "step_s_max": f"{max(t):.5f}", "timed_steps": len(t), "mol_per_s": f"{B / med:.3f}",
           "mol_per_s_per_rank": f"{B / med / P:.3f}", "speedup": "", "efficiency": "", "oversubscribed": e["flag"]}
    row.update({f"{k}_bytes": f"{x:.0f}" for k, x in zip(kinds, cb)})
    row.update({"loss_rel_diff_vs_P0": diff, "load_avg": f"{statistics.mean(e['loads']):.2f}"})
    out.append(row)
x0 = float(out[0]["mol_per_s"])
for row in out:
    P, x = row["ranks"], float(row["mol_per_s"])
    row["speedup"] = f"{x / x0:.4f}"
    row["efficiency"] = f"{(x / P) / (x0 / P0):.4f}"
with open(out_path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=out[0].keys())
    w.writeheader()
    w.writerows(out)
EOF
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
# columns: 1 ranks, 8 mol_per_s, 11 efficiency, 12 oversubscribed; ideal = throughput / efficiency
# (the smallest rank count's throughput scaled by P / P0)
plot "$csv" using 1:(\$12 == 0 ? \$8 : 1/0) with linespoints pt 7 lw 2 title "measured", \
     "$csv" using 1:(\$12 == 1 ? \$8 : 1/0) with points pt 6 ps 1.5 title "oversubscribed (correctness only)", \
     "$csv" using 1:(\$8 / \$11) with lines dt 2 lc rgb "gray40" title "ideal"
set ylabel "parallel efficiency"
set yrange [0:1.2]
plot "$csv" using 1:(\$12 == 0 ? \$11 : 1/0) with linespoints pt 7 lw 2 title "measured", \
     "$csv" using 1:(\$12 == 1 ? \$11 : 1/0) with points pt 6 ps 1.5 title "oversubscribed (correctness only)", \
     1 with lines dt 2 lc rgb "gray40" title "ideal"
unset multiplot
EOF
    echo "wrote $csv and $png"
}
