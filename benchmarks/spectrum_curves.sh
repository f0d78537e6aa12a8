#!/bin/sh
# Loss curves of spectrum-autoencoder runs: for each RUN_DIR, its log.jsonl as
# OUT/<name>_loss.csv (step, epoch, lr, loss, grad_norm, elapsed_s), and one PNG of the
# reconstruction loss against the step for all of them (gnuplot).
#   benchmarks/spectrum_curves.sh OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]
set -e
if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: benchmarks/spectrum_curves.sh OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]"
    echo "writes OUT_DIR/NAME_loss.csv per run and OUT_DIR/spectrum_loss.png"
    [ $# -lt 2 ] && exit 2 || exit 0
fi
out=$1; shift
mkdir -p "$out"
plot=""
for spec in "$@"; do
    name=${spec%%=*}; run=${spec#*=}
    [ -f "$run/log.jsonl" ] || { echo "spectrum_curves: $run/log.jsonl not found" >&2; exit 1; }
    csv="$out/${name}_loss.csv"
    /usr/bin/python3 - "$run/log.jsonl" "$csv" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    f.write("step,epoch,lr,loss,grad_norm,elapsed_s\n")
    for r in rows:
        f.write(f"{r['step']},{r['epoch']},{r['lr']},{r['loss']},{r['grad_norm']},{r['elapsed_s']}\n")
PY
    plot="$plot${plot:+, }\"$csv\" using 1:4 with lines lw 2 title \"$name\""
done
if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 900,480 font ",10" noenhanced
set output "$out/spectrum_loss.png"
set title "spectrum autoencoders: reconstruction loss (BCE per bin, global batch)"
set xlabel "step"
set ylabel "loss"
set logscale y
set key top right
set grid
plot $plot
GP
else
    echo "spectrum_curves: gnuplot not found (make deps installs gnuplot-nox); no plot" >&2
fi
