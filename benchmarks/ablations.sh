#!/bin/sh
# Ablations of MMSA pre-training (issue 15): each variant is a pre-training run of the same
# budget (same data, steps, seed and every other key), fine-tuned the same way on
# MoleculeNet by benchmarks/moleculenet.sh; one table of the variants side by side.
#
#   benchmarks/ablations.sh --dataset zinc_3d.h5 --steps 600 --out runs/abl \
#       --datasets bbbp,bace,clintox,tox21,esol,freesolv,lipo --patience 20 \
#       --set train.precision=bf16 --ft-set train.precision=bf16 --scratch runs/std/c
#
# Variants (--variants, default all, in this order):
#   full            every modality and loss term
#   no_hypergraph   loss.w_hg = 0
#   no_bank         loss.w_mem = 0
#   no_image        model.use_image = false
#   no_conformer    model.use_conformer = false
#   no_fingerprint  model.use_fingerprint = false
#   graph_only      no image, conformer or fingerprint
#
# OUT/<variant>/pretrain is the pre-training run (log.jsonl, checkpoints; mmsa_pretrain
# resumes it from its latest checkpoint, so an interrupted study continues), OUT/<variant>.log
# its output (with graph->fingerprint retrieval of the held-out molecules before and after,
# for variants that encode fingerprints); OUT/<variant>/ft the moleculenet.sh output
# (pre-trained column; reruns reuse finished sets). The scratch column is fine-tuned once
# into OUT/scratch, or taken from earlier moleculenet.sh outputs (--scratch DIR, repeatable:
# each DIR/<set>/scratch with results.csv is linked, not re-run; they must have used the
# same fine-tuning settings). Tables: OUT/ablations.md and OUT/ablations.csv; loss curves
# (OUT/curves, loss.png) and memory-bank use (OUT/bank, bank.png) of every variant.
set -eu

usage() {
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

options:
  --dataset FILE      pre-training dataset (mmsa_prep output)               (required)
  --steps N           pre-training steps of every variant (train.max_steps) (required)
  --out DIR           output folder                                        (required)
  --job FILE          pre-training job (default configs/zinc250k.yaml)
  --variants LIST     comma-separated subset of the variants above
  --holdout N         molecules held out of pre-training and used for retrieval (default 1000)
  --set K=V           pre-training setting for every variant (repeatable)
  --ranks P           MPI ranks of the pre-training runs (default 1)
  --datasets LIST     MoleculeNet sets (moleculenet.sh --datasets)
  --patience N        fine-tuning early stopping (moleculenet.sh --patience)
  --ft-set K=V        fine-tuning setting (moleculenet.sh --set, repeatable)
  --ft-ranks P        MPI ranks of the fine-tuning runs (default 1)
  --scratch DIR       earlier moleculenet.sh output whose scratch runs to reuse (repeatable)
  --pretrain-only     stop after the pre-training runs (and their curves)
  -h, --help          this text
EOF
}

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$HERE/bin}
ALL="full no_hypergraph no_bank no_image no_conformer no_fingerprint graph_only"
DATASET="" STEPS="" OUT="" JOB=$HERE/configs/zinc250k.yaml VARIANTS=$ALL HOLDOUT=1000
PRE_SET="" RANKS=1 FT_ARGS="" SCRATCH_DIRS="" PRE_ONLY=0
nospace() { case "$2" in *" "*) echo "ablations.sh: $1 values cannot contain spaces: $2" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
    case "$1" in
    --dataset) DATASET=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --job) JOB=$2; shift 2 ;;
    --variants) VARIANTS=$(echo "$2" | tr ',' ' '); shift 2 ;;
    --holdout) HOLDOUT=$2; shift 2 ;;
    --set) nospace --set "$2"; PRE_SET="$PRE_SET --set $2"; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --datasets) FT_ARGS="$FT_ARGS --datasets $2"; shift 2 ;;
    --patience) FT_ARGS="$FT_ARGS --patience $2"; shift 2 ;;
    --ft-set) nospace --ft-set "$2"; FT_ARGS="$FT_ARGS --set $2"; shift 2 ;;
    --ft-ranks) FT_ARGS="$FT_ARGS --ranks $2"; shift 2 ;;
    --scratch) SCRATCH_DIRS="$SCRATCH_DIRS $2"; shift 2 ;;
    --pretrain-only) PRE_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ablations.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ -n "$DATASET" ] && [ -n "$STEPS" ] && [ -n "$OUT" ] || { echo "ablations.sh: --dataset, --steps and --out are required" >&2; usage >&2; exit 2; }
[ -f "$DATASET" ] || { echo "ablations.sh: dataset $DATASET does not exist" >&2; exit 1; }
[ -f "$JOB" ] || { echo "ablations.sh: job $JOB does not exist" >&2; exit 1; }
[ -x "$BIN/mmsa_pretrain" ] || { echo "ablations.sh: $BIN/mmsa_pretrain is missing; run make first" >&2; exit 1; }
for v in $VARIANTS; do
    case " $ALL " in *" $v "*) ;; *) echo "ablations.sh: unknown variant '$v' (one of: $ALL)" >&2; exit 2 ;; esac
done
if [ -z "${MPIRUN:-}" ]; then
    MPIRUN="mpirun -n $RANKS"
    if [ "$(id -u)" = 0 ]; then MPIRUN="mpirun --allow-run-as-root --oversubscribe -n $RANKS"; fi
fi
export BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

variant_sets() {
    case "$1" in
    full) echo "" ;;
    no_hypergraph) echo "--set loss.w_hg=0" ;;
    no_bank) echo "--set loss.w_mem=0" ;;
    no_image) echo "--set model.use_image=false" ;;
    no_conformer) echo "--set model.use_conformer=false" ;;
    no_fingerprint) echo "--set model.use_fingerprint=false" ;;
    graph_only) echo "--set model.use_image=false --set model.use_conformer=false --set model.use_fingerprint=false" ;;
    esac
}

# ---- 1. pre-training, one variant after the other
curves="" bank=""
for v in $VARIANTS; do
    run=$OUT/$v/pretrain
    mkdir -p "$run"
    eval_args="--eval-retrieval $HOLDOUT"
    case "$v" in no_fingerprint|graph_only) eval_args="" ;; esac
    t0=$(date +%s)
    echo "== $v: pre-training $STEPS steps -> $run"
    # shellcheck disable=SC2046,SC2086
    if ! $MPIRUN "$BIN/mmsa_pretrain" "$JOB" --quiet --set "train.dataset=$DATASET" --set "train.run_dir=$run" \
        --set "train.max_steps=$STEPS" --set "train.holdout=$HOLDOUT" $PRE_SET $(variant_sets "$v") $eval_args \
        < /dev/null >> "$OUT/$v.log" 2>&1; then
        echo "   FAILED (see $OUT/$v.log)"; tail -n 5 "$OUT/$v.log" | sed 's/^/     /'
        continue
    fi
    grep "retrieval after" "$OUT/$v.log" | tail -n 1 | sed 's/^/   /' || true
    echo "   $(( $(date +%s) - t0 )) s"
    curves="$curves $v=$run"
    bank="$bank $v=$run"
done
if [ -n "$curves" ]; then
    # shellcheck disable=SC2086
    "$HERE/benchmarks/loss_curves.sh" --png loss "$OUT/curves" $curves > "$OUT/curves.txt" 2>&1 || echo "   loss curves failed (see $OUT/curves.txt)"
    # shellcheck disable=SC2086
    "$HERE/benchmarks/bank_curves.sh" "$OUT/bank" $bank > "$OUT/bank.md" 2>&1 || echo "   bank curves failed (see $OUT/bank.md)"
fi
[ "$PRE_ONLY" = 1 ] && { echo "pre-training done (--pretrain-only); curves in $OUT/curves, bank use in $OUT/bank.md"; exit 0; }

# ---- 2. fine-tuning: the scratch column once, then each variant's pre-trained column
link_scratch() { # into DIR: every <set>/scratch (and its log and prepared data) of the --scratch outputs
    for s in $SCRATCH_DIRS; do
        for r in "$s"/*/scratch/results.csv; do
            [ -f "$r" ] || continue
            set_dir=$(dirname "$(dirname "$r")"); name=$(basename "$set_dir")
            mkdir -p "$1/$name"
            for f in scratch scratch.log data data.log; do
                [ -e "$set_dir/$f" ] && [ ! -e "$1/$name/$f" ] && ln -s "$(cd "$set_dir" && pwd)/$f" "$1/$name/$f"
            done
        done
    done
    return 0
}
link_scratch "$OUT/scratch"
# the scratch encoder has the pre-trained one's sizes (the first variant's job)
pj=""
for v in $VARIANTS; do
    [ -f "$OUT/$v/pretrain/job.yaml" ] && { pj="--set model.pretrain_job=$OUT/$v/pretrain/job.yaml"; break; }
done
# shellcheck disable=SC2086
"$HERE/benchmarks/moleculenet.sh" --out "$OUT/scratch" --reuse $FT_ARGS $pj > "$OUT/scratch.log" 2>&1 \
    || { echo "scratch column failed (see $OUT/scratch.log)"; exit 1; }
for v in $VARIANTS; do
    ck=$OUT/$v/pretrain/checkpoints
    [ -f "$ck/latest" ] || { echo "== $v: no checkpoint, not fine-tuned"; continue; }
    mkdir -p "$OUT/$v/ft"
    SCRATCH_DIRS="$OUT/scratch" link_scratch "$OUT/$v/ft"
    echo "== $v: fine-tuning from $ck/$(head -n 1 "$ck/latest")"
    # shellcheck disable=SC2086
    "$HERE/benchmarks/moleculenet.sh" --checkpoint "$ck" --out "$OUT/$v/ft" --reuse $FT_ARGS > "$OUT/$v/ft.log" 2>&1 \
        || echo "   FAILED (see $OUT/$v/ft.log)"
done

# ---- 3. one table: a column per set, a row per variant (and scratch)
/usr/bin/python3 - "$OUT" "$STEPS" $VARIANTS <<'PY'
import csv, os, re, sys
out, steps, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
def rows(path):
    return list(csv.DictReader(open(path))) if os.path.isfile(path) else []
scratch = {r["dataset"]: r for r in rows(f"{out}/scratch/moleculenet.csv")}
sets = list(scratch)
table = [("scratch", {s: (float(r["scratch_mean"]), float(r["scratch_std"]), r["metric"]) for s, r in scratch.items()}, "")]
for v in variants:
    got = {}
    for r in rows(f"{out}/{v}/ft/moleculenet.csv"):
        if r["pretrained_mean"]:
            got[r["dataset"]] = (float(r["pretrained_mean"]), float(r["pretrained_std"]), r["metric"])
            if r["dataset"] not in sets: sets.append(r["dataset"])
    ret = ""
    log = f"{out}/{v}.log"
    if os.path.isfile(log):
        m = re.findall(r"retrieval after:\s+graph->fingerprint top-1 ([0-9.]+)%", open(log).read())
        if m: ret = m[-1]
    table.append((v, got, ret))
metric = {s: next((t[1][s][2] for t in table if s in t[1]), "") for s in sets}
cls = [s for s in sets if metric[s] == "roc_auc"]
with open(f"{out}/ablations.csv", "w") as f:
    w = csv.writer(f)
    w.writerow(["variant", "steps", "retrieval_top1"] + [f"{s}_{metric[s]}_{k}" for s in sets for k in ("mean", "std")] + ["roc_auc_average"])
    for name, got, ret in table:
        avg = sum(got[s][0] for s in cls) / len(cls) if cls and all(s in got for s in cls) else ""
        w.writerow([name, "" if name == "scratch" else steps, ret] + [x for s in sets for x in ((got[s][0], got[s][1]) if s in got else ("", ""))] + [avg])
with open(f"{out}/ablations.md", "w") as f:
    f.write(f"Pre-training variants of the same budget ({steps} steps), fine-tuned the same way; test metric at the best\n")
    f.write("validation epoch, mean +- std over seeds; ROC-AUC higher is better, RMSE lower. Retrieval: graph->fingerprint\n")
    f.write("top-1 among the held-out molecules after pre-training (variants that encode fingerprints).\n\n")
    f.write("| variant | retrieval top-1 | " + " | ".join(f"{s} ({metric[s]})" for s in sets) + " | ROC-AUC average |\n")
    f.write("|---|---:|" + "---:|" * len(sets) + "---:|\n")
    for name, got, ret in table:
        cells = [f"{got[s][0]:.3f} +- {got[s][1]:.3f}" if s in got else "-" for s in sets]
        avg = f"{sum(got[s][0] for s in cls) / len(cls):.3f}" if cls and all(s in got for s in cls) else "-"
        f.write(f"| {name} | {ret + '%' if ret else '-'} | " + " | ".join(cells) + f" | {avg} |\n")
print(open(f"{out}/ablations.md").read())
PY
echo "tables: $OUT/ablations.md, $OUT/ablations.csv; curves: $OUT/curves/loss.png, $OUT/bank/bank.png"
