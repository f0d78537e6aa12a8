#!/bin/sh
# Loss curves of pre-training runs (MMSA, ACML or spectrum autoencoder: any run_dir with a
# log.jsonl): OUT_DIR/NAME_loss.csv per run (step, loss and every l_* term of the log) and
# OUT_DIR/PNG_NAME.png with the total loss of every run against the step (gnuplot). With
# --vs-first, each later run is also compared with the first step by step (relative
# difference of the total loss at the steps both logged), printed and written to
# OUT_DIR/NAME_vs_FIRST.csv.
#   benchmarks/loss_curves.sh [--png NAME] [--vs-first] OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]
set -e
png=loss; vs=0
while [ $# -gt 0 ]; do
    case "$1" in
    --png) png=$2; shift 2 ;;
    --vs-first) vs=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "usage: benchmarks/loss_curves.sh [--png NAME] [--vs-first] OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]" >&2; exit 2; }
out=$1; shift
mkdir -p "$out"
for spec in "$@"; do
    case "$spec" in *=*) ;; *) echo "loss_curves: $spec: expected NAME=RUN_DIR" >&2; exit 2 ;; esac
    [ -f "${spec#*=}/log.jsonl" ] || { echo "loss_curves: ${spec#*=}/log.jsonl not found" >&2; exit 1; }
done
/usr/bin/python3 - "$out" "$png" "$vs" "$@" <<'PY'
import json, sys
out, png, vs, specs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
runs = []
for spec in specs:
    name, run = spec.split("=", 1)
    rows = [json.loads(l) for l in open(run + "/log.jsonl") if l.strip()]
    terms = sorted({k for r in rows for k in r if k.startswith("l_") and isinstance(r[k], (int, float))})
    with open(f"{out}/{name}_loss.csv", "w") as f:
        f.write(",".join(["step", "loss"] + terms) + "\n")
        for r in rows:
            f.write(",".join([str(r["step"]), repr(r["loss"])] + [repr(r.get(t, "")) for t in terms]) + "\n")
    runs.append((name, {r["step"]: r["loss"] for r in rows}))
if vs and len(runs) > 1:
    first, ref = runs[0]
    for name, cur in runs[1:]:
        steps = sorted(set(ref) & set(cur))
        with open(f"{out}/{name}_vs_{first}.csv", "w") as f:
            f.write(f"step,loss_{first},loss_{name},rel_diff\n")
            for s in steps:
                f.write(f"{s},{ref[s]!r},{cur[s]!r},{(cur[s] - ref[s]) / abs(ref[s]):.6g}\n")
        if steps:
            d = [abs(cur[s] - ref[s]) / abs(ref[s]) for s in steps]
            marks = [s for s in (steps[0], steps[len(steps) // 4], steps[len(steps) // 2], steps[-1])]
            print(f"{name} vs {first}: {len(steps)} common steps, max |rel diff| {max(d):.3g}, "
                  f"mean {sum(d) / len(d):.3g}; " +
                  ", ".join(f"step {s}: {ref[s]:.4f} vs {cur[s]:.4f}" for s in marks))
PY
plot=""
for spec in "$@"; do
    name=${spec%%=*}
    plot="$plot${plot:+, }\"$out/${name}_loss.csv\" using 1:2 with lines lw 2 title \"$name\""
done
if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set terminal pngcairo size 900,540
set output "$out/$png.png"
set datafile separator ","
set key autotitle columnhead
set xlabel "step"
set ylabel "total loss"
set grid
plot $plot
GP
    echo "wrote $out/$png.png"
else
    echo "loss_curves: gnuplot not installed, no PNG (make deps installs it)" >&2
fi
