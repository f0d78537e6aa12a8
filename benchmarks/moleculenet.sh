#!/bin/sh
# MoleculeNet benchmark: for every MoleculeNet CSV found, prepare it (graph and scaffold
# only), fine-tune the GIN encoder from scratch and from a pre-training checkpoint with
# bin/mmsa_finetune, and write a Markdown and a CSV table:
#   dataset, tasks, molecules, split, metric, scratch mean +- std, pre-trained mean +- std.
#
#   benchmarks/moleculenet.sh --checkpoint runs/zinc/checkpoints/step_000000010000.h5
#   benchmarks/moleculenet.sh --datasets bbbp,bace --epochs 10 --seeds 1 --ranks 2   (quick run)
#
# mpirun reads stdin, so every launch gets /dev/null (the dataset list is read from it).
# Every run directory stays under --out (job.yaml, split.json, per-epoch logs, test
# predictions, results.json), so any number in the table can be traced.
set -eu

usage() {
    cat <<EOF
usage: benchmarks/moleculenet.sh [options]

  --checkpoint PATH   pre-training checkpoint (a step_*.h5 file, or a run / checkpoint
                      directory holding 'latest'); without it only the scratch column runs
  --data DIR          folder with the MoleculeNet CSVs (default: \$MMSA_SHARED/data/moleculenet,
                      else ../shared/data/moleculenet)
  --out DIR           output folder (default benchmarks/out/moleculenet)
  --datasets LIST     comma-separated subset of: bbbp,bace,clintox,tox21,hiv,sider,toxcast,
                      muv,esol,freesolv,lipo (default: all that are found)
  --epochs N          epochs per run (default: the job default, 100)
  --patience N        early stopping: a seed ends after N epochs without a better
                      validation metric (train.patience; default 0, every epoch runs);
                      the table then gives the epochs each column ran
  --seeds N           seeds per run (default: the job default, 3)
  --batch N           global batch size (default 32)
  --limit N           first N molecules of each set only (quick runs; default all)
  --split TYPE        scaffold (default), scaffold_chemprop or random
  --ranks P           MPI ranks per run (default 1); MPIRUN overrides the launcher
  --set K=V           extra job setting for every run (repeatable), e.g. --set model.head=mlp
  --reuse             keep runs whose results.csv exists (resume an interrupted benchmark)
  -h, --help          this text
EOF
}

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$HERE/bin}
SHARED=${MMSA_SHARED:-$HERE/../shared}
DATA=$SHARED/data/moleculenet
OUT=$HERE/benchmarks/out/moleculenet
CKPT=""
DATASETS=""
RANKS=1
SPLIT=scaffold
REUSE=0
EXTRA=""
add_set() { EXTRA="$EXTRA --set $1"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --checkpoint) CKPT=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --datasets) DATASETS=$(echo "$2" | tr ',' ' '); shift 2 ;;
    --epochs) add_set "train.epochs=$2"; shift 2 ;;
    --patience) add_set "train.patience=$2"; shift 2 ;;
    --seeds) add_set "train.seeds=$2"; shift 2 ;;
    --batch) add_set "train.batch_size=$2"; shift 2 ;;
    --limit) add_set "data.limit=$2"; shift 2 ;;
    --split) SPLIT=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --set) case "$2" in *" "*) echo "moleculenet.sh: --set values cannot contain spaces: $2" >&2; exit 2 ;; esac
           add_set "$2"; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "moleculenet.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "${MPIRUN:-}" ]; then
    MPIRUN="mpirun -n $RANKS"
    if [ "$(id -u)" = 0 ]; then MPIRUN="mpirun --allow-run-as-root --oversubscribe -n $RANKS"; fi
fi
export BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -x "$BIN/mmsa_finetune" ] || { echo "moleculenet.sh: $BIN/mmsa_finetune is missing; run make first" >&2; exit 1; }

# The checkpoint file, and the pre-training job.yaml whose model sizes the scratch runs share.
PRE_JOB=""
if [ -n "$CKPT" ]; then
    if [ -d "$CKPT" ]; then
        d=$CKPT
        [ -f "$d/latest" ] || d=$CKPT/checkpoints
        [ -f "$d/latest" ] || { echo "moleculenet.sh: no 'latest' in $CKPT or $CKPT/checkpoints" >&2; exit 1; }
        CKPT=$d/$(head -n 1 "$d/latest")
    fi
    [ -f "$CKPT" ] || { echo "moleculenet.sh: checkpoint $CKPT does not exist" >&2; exit 1; }
    cdir=$(dirname "$CKPT")
    for j in "$(dirname "$cdir")/job.yaml" "$cdir/job.yaml"; do
        if [ -f "$j" ]; then PRE_JOB=$j; break; fi
    done
    [ -n "$PRE_JOB" ] || echo "moleculenet.sh: warning: no job.yaml next to $CKPT; encoder sizes come from the finetune job" >&2
fi

# name | file (first found) | SMILES column | tasks | task type
# Chemprop's copies of the sets (README of the data folder); a file that is missing is skipped.
SETS='bbbp|bbbp.csv bbbp.csv.gz|smiles|p_np|classification
bace|bace.csv bace.csv.gz|mol|Class|classification
clintox|clintox.csv clintox.csv.gz|smiles|FDA_APPROVED,CT_TOX|classification
tox21|tox21.csv tox21.csv.gz|smiles|all|classification
hiv|hiv.csv hiv.csv.gz|smiles|HIV_active|classification
sider|sider.csv sider.csv.gz|smiles|all|classification
toxcast|toxcast.csv toxcast.csv.gz|smiles|all|classification
muv|muv.csv muv.csv.gz|smiles|all|classification
esol|delaney.csv delaney.csv.gz esol.csv|smiles|logp|regression
freesolv|freesolv.csv freesolv.csv.gz|smiles|freesolv|regression
lipo|lipo.csv lipo.csv.gz lipophilicity.csv|smiles|lipo|regression'

mkdir -p "$OUT"
MD=$OUT/moleculenet.md
CSV=$OUT/moleculenet.csv
ROWS=$OUT/.rows
: > "$ROWS"
start=$(date +%s)

# results.csv of a run: metric,n_tasks,n_molecules,n_seeds,valid_mean,valid_std,test_mean,test_std,...
# (a column the file does not have, as in results of older builds: 0)
field() { awk -F, -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i } NR == 2 { print (k in col) ? $col[k] : 0 }' "$1"; }

run() { # label run_dir [--set ...]   (sh has no locals: run_* names are this function's)
    run_label=$1; run_dir=$2; shift 2
    if [ "$REUSE" = 1 ] && [ -f "$run_dir/results.csv" ]; then
        echo "   $run_label: reusing $run_dir"
        return 0
    fi
    # shellcheck disable=SC2086
    if ! $MPIRUN "$BIN/mmsa_finetune" "$JOB" --quiet --set "train.run_dir=$run_dir" "$@" $EXTRA < /dev/null > "$run_dir.log" 2>&1; then
        echo "   $run_label: FAILED (see $run_dir.log)"
        tail -n 5 "$run_dir.log" | sed 's/^/     /'
        return 1
    fi
    echo "   $run_label: $(tail -n 2 "$run_dir.log" | head -n 1)"
}

echo "$SETS" | while IFS='|' read -r name files smiles tasks type; do
    if [ -n "$DATASETS" ]; then
        case " $DATASETS " in *" $name "*) ;; *) continue ;; esac
    fi
    csv=""
    for f in $files; do
        if [ -f "$DATA/$f" ]; then csv=$DATA/$f; break; fi
    done
    if [ -z "$csv" ]; then
        echo "== $name: skipped, none of ($files) in $DATA"
        continue
    fi
    echo "== $name: $csv"
    dir=$OUT/$name
    mkdir -p "$dir"
    JOB=$dir/job.yaml
    cat > "$JOB" <<EOF
# written by benchmarks/moleculenet.sh
data:
  csv: $csv
  smiles_col: $smiles
  tasks: "$tasks"
  task_type: $type
split:
  type: $SPLIT
model:
  init: from_scratch
train:
  run_dir: $dir/data
EOF
    # 1. featurise once (graph + scaffold), check the labels, write the split
    if ! [ -f "$dir/data/dataset.h5" ] || [ "$REUSE" = 0 ]; then
        mkdir -p "$dir/data"
        # shellcheck disable=SC2086
        if ! $MPIRUN "$BIN/mmsa_finetune" "$JOB" --quiet --prepare-only $EXTRA < /dev/null > "$dir/data.log" 2>&1; then
            echo "   FAILED to prepare $name (see $dir/data.log)"; tail -n 5 "$dir/data.log" | sed 's/^/     /'; continue
        fi
    fi
    tail -n 1 "$dir/data.log" | sed 's/^/   /'
    ds="--set data.csv= --set data.smiles_col= --set data.dataset=$dir/data/dataset.h5"
    pj=""
    [ -n "$PRE_JOB" ] && pj="--set model.pretrain_job=$PRE_JOB"
    # 2. from scratch (the encoder sizes of the pre-training job, if any)
    # shellcheck disable=SC2086
    run scratch "$dir/scratch" $ds $pj || continue
    # 3. from the checkpoint
    if [ -n "$CKPT" ]; then
        # shellcheck disable=SC2086
        run pre-trained "$dir/pretrained" $ds --set "model.init=$CKPT" || continue
    fi
    r=$dir/scratch/results.csv
    line="$name,$(field "$r" n_tasks),$(field "$r" n_molecules),$SPLIT,$(field "$r" metric),$(field "$r" test_mean),$(field "$r" test_std)"
    if [ -n "$CKPT" ]; then
        p=$dir/pretrained/results.csv
        line="$line,$(field "$p" test_mean),$(field "$p" test_std)"
        pstop=$(field "$p" stopped_epoch_mean)
    else
        line="$line,,"
        pstop=""
    fi
    line="$line,$(field "$r" n_seeds),$(field "$r" epoch_seconds),$(field "$r" epochs),$(field "$r" patience)"
    echo "$line,$(field "$r" stopped_epoch_mean),$pstop" >> "$ROWS"
done

# ---- tables
{
    echo "dataset,tasks,molecules,split,metric,scratch_mean,scratch_std,pretrained_mean,pretrained_std,seeds,scratch_epoch_seconds,epochs,patience,scratch_epochs_run,pretrained_epochs_run"
    cat "$ROWS"
} > "$CSV"
{
    echo "# MoleculeNet fine-tuning: scratch vs pre-trained"
    echo
    echo "Test metric at the epoch with the best validation metric, mean +- std over seeds (ddof=0)."
    echo "ROC-AUC: higher is better (classification); RMSE: lower is better (regression)."
    echo "Checkpoint: ${CKPT:-none}. Encoder sizes: ${PRE_JOB:-pre-training defaults}."
    echo "Settings:${EXTRA:- job defaults}; split $SPLIT; $RANKS rank(s)."
    # early stopping (train.patience, from each run's results.csv): say so, and give the epochs run
    early=$(awk -F, '$13 > 0 { print $13; exit }' "$ROWS")
    if [ -n "$early" ]; then
        echo "Early stopping: a seed ends after train.patience = $early epochs without a better validation"
        echo "metric (the test metric is still the best validation epoch's); \"epochs run\" is the mean over"
        echo "seeds, scratch / pre-trained, of the epochs each ran out of train.epochs."
    else
        echo "No early stopping: every seed ran train.epochs epochs."
    fi
    echo
    if [ -n "$early" ]; then
        echo "| dataset | tasks | molecules | split | metric | scratch | pre-trained | difference | epochs run |"
        echo "|---|---:|---:|---|---|---:|---:|---:|---:|"
    else
        echo "| dataset | tasks | molecules | split | metric | scratch | pre-trained | difference |"
        echo "|---|---:|---:|---|---|---:|---:|---:|"
    fi
    awk -F, -v early="$early" '{
        pre = ($8 == "") ? "-" : sprintf("%.3f +- %.3f", $8, $9)
        diff = ($8 == "") ? "-" : sprintf("%+.3f", $8 - $6)
        printf "| %s | %s | %s | %s | %s | %.3f +- %.3f | %s | %s |", $1, $2, $3, $4, $5, $6, $7, pre, diff
        if (early != "") printf " %.1f / %s of %d (patience %d) |", $14, ($15 == "") ? "-" : sprintf("%.1f", $15), $12, $13
        printf "\n"
    }' "$ROWS"
    awk -F, '$5 == "roc_auc" { n++; s += $6; if ($8 != "") { p += $8; np++; if ($8 > $6) w++ } }
        END {
            if (n == 0) exit
            printf "\nClassification average ROC-AUC over %d set(s): scratch %.3f", n, s / n
            if (np == n) printf ", pre-trained %.3f; pre-training better on %d of %d", p / n, w, n
            printf ".\n"
        }' "$ROWS"
    awk -F, '$5 == "rmse" && $8 != "" { n++; if ($8 < $6) w++ }
        END { if (n) printf "Regression: pre-training lowers the RMSE on %d of %d set(s).\n", w, n }' "$ROWS"
} > "$MD"
rm -f "$ROWS"
echo
cat "$MD"
echo
echo "tables: $MD, $CSV ($(( $(date +%s) - start )) s)"
