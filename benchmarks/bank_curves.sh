#!/bin/sh
# Memory-bank use of MMSA pre-training runs (issue 15): for each run, its log.jsonl thinned
# to OUT/<name>.csv (step, loss, l_align, l_mem, anchors in use in the step's batch,
# assignment entropy in bits, anchors hit and re-seeded in the window since the previous
# line, window steps), and one PNG of anchors in use, entropy, L_mem and the loss
# against the step for all of them (gnuplot); prints a Markdown table of their spread.
#   benchmarks/bank_curves.sh OUT_DIR NAME=RUN [NAME=RUN ...]
# RUN is a run directory (with log.jsonl) or a log.jsonl file. Logs written before the
# bank statistics were split (assign_entropy in nats, no window fields) are read too:
# the entropy is converted to bits and the window columns are left empty.
set -e
if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: benchmarks/bank_curves.sh OUT_DIR NAME=RUN [NAME=RUN ...]"
    echo "RUN: a run directory or a log.jsonl; writes OUT_DIR/NAME.csv per run and OUT_DIR/bank.png"
    [ $# -lt 2 ] && exit 2 || exit 0
fi
out=$1; shift
mkdir -p "$out"
echo "| run | steps | anchors in use (min / median / max over the lines) | in the window | entropy, bits | re-seeded | last L_mem | last loss |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
anchors="" entropy="" mem="" loss="" n=1
for spec in "$@"; do
    name=${spec%%=*}; run=${spec#*=}
    log=$run
    [ -d "$run" ] && log=$run/log.jsonl
    [ -f "$log" ] || { echo "bank_curves: $log not found" >&2; exit 1; }
    csv="$out/$name.csv"
    /usr/bin/python3 - "$log" "$csv" "$name" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    sys.exit(f"bank_curves: {sys.argv[1]} has no log lines")
with open(sys.argv[2], "w") as f:
    f.write("step,loss,l_align,l_mem,anchors_in_use,assign_entropy_bits,anchors_in_use_window,window_steps,"
            "anchors_reseeded\n")
    for r in rows:
        try:
            bits = r["assign_entropy_bits"] if "assign_entropy_bits" in r else r["assign_entropy"] / math.log(2)
            f.write(f"{r['step']},{r['loss']:.4f},{r['l_align']:.4f},{r['l_mem']:.4f},{r['anchors_in_use']},"
                    f"{bits:.4f},{r.get('anchors_in_use_window', '')},{r.get('window_steps', '')},"
                    f"{r.get('anchors_reseeded', '')}\n")
        except KeyError as e:
            sys.exit(f"bank_curves: {sys.argv[1]}: step {r.get('step', '?')} has no {e} (not an MMSA log?)")
def spread(key, scale=1.0, fmt="{:.0f}"):
    v = sorted(r[key] * scale for r in rows if key in r)
    return " / ".join(fmt.format(x) for x in (v[0], v[len(v) // 2], v[-1])) if v else "-"
nats = "assign_entropy_bits" not in rows[0]
print(f"| {sys.argv[3]} | {rows[-1]['step']} | {spread('anchors_in_use')} | {spread('anchors_in_use_window')} | "
      f"{spread('assign_entropy' if nats else 'assign_entropy_bits', 1 / math.log(2) if nats else 1.0, '{:.2f}')} | "
      f"{sum(r.get('anchors_reseeded', 0) for r in rows) if 'anchors_reseeded' in rows[0] else '-'} | "
      f"{rows[-1]['l_mem']:.3f} | {rows[-1]['loss']:.3f} |")
PY
    t="title \"$name\""
    anchors="$anchors${anchors:+, }\"$csv\" using 1:5 with lines lw 2 lc $n $t"
    if awk -F, 'NR == 2 { exit $7 == "" }' "$csv"; then # logs with window statistics
        anchors="$anchors, \"$csv\" using 1:7 with lines lw 1 dt 2 lc $n title \"$name: in the window\""
    fi
    entropy="$entropy${entropy:+, }\"$csv\" using 1:6 with lines lw 2 lc $n $t"
    mem="$mem${mem:+, }\"$csv\" using 1:4 with lines lw 2 lc $n $t"
    loss="$loss${loss:+, }\"$csv\" using 1:2 with lines lw 2 lc $n $t"
    n=$((n + 1))
done
if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set datafile separator ","
set datafile missing ""
set terminal pngcairo size 1200,860 font ",10" noenhanced
set output "$out/bank.png"
set multiplot layout 2,2 title "memory bank over pre-training (log.jsonl, every train.log_every steps)"
set grid
set xlabel "step"
set key top right
set title "anchors in use: step's batch (solid), window since the previous line (dashed)"
set logscale y
plot $anchors
unset logscale y
set title "assignment entropy (bits)"
plot $entropy
set title "L_mem"
plot $mem
set title "loss (weighted sum of the terms)"
set logscale y
plot $loss
unset multiplot
GP
else
    echo "bank_curves: gnuplot not found (make deps installs gnuplot-nox); no plot" >&2
fi
