#!/bin/sh
# make demo: prepare the built-in slice of ZINC250k and pre-train configs/tiny.yaml on
# 2 MPI ranks, then show what the model learned; then ACML: the MMSA run's fingerprint
# encoder, frozen, teaches ACML's shallow GIN (configs/acml_image.yaml with the fingerprint
# teacher: the image encoder of a 2-minute MMSA run teaches too slowly for a demo),
# evaluated by mmsa_eval on the molecules it held out. Output in demo-out/ (MMSA_DEMO_DIR).
set -eu
BIN=${BIN:-bin}
OUT=${MMSA_DEMO_DIR:-demo-out}
RANKS=${MMSA_DEMO_RANKS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe -n $RANKS"
mkdir -p "$OUT"
start=$(date +%s)
echo "== 1. mmsa_prep: featurise configs/data/demo.csv (600 ZINC250k molecules) with Open Babel"
# 50 force-field steps after the 3D builder keep the demo short (the builder already
# gives a sane geometry; mmsa_prep --help shows the default)
$MPIRUN "$BIN/mmsa_prep" --input configs/data/demo.csv --output "$OUT/demo.h5" --ff-steps 50 --png-dir "$OUT/png" --png-count 4
echo
echo "== 2. mmsa_pretrain configs/tiny.yaml on $RANKS ranks"
rm -rf "$OUT/run"
$MPIRUN "$BIN/mmsa_pretrain" configs/tiny.yaml --set "train.dataset=$OUT/demo.h5" --set "train.run_dir=$OUT/run" \
    --eval-retrieval 100
echo
echo "== 3. what it learned"
first=$(head -n 1 "$OUT/run/log.jsonl")
last=$(tail -n 1 "$OUT/run/log.jsonl")
field() { echo "$1" | sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p"; }
for k in loss l_align l_rec l_hg l_mem anchors_in_use; do
    printf '  %-16s step %-4s %10s  ->  step %-4s %10s\n' "$k" "$(field "$first" step)" "$(field "$first" "$k")" \
        "$(field "$last" step)" "$(field "$last" "$k")"
done
echo "  log: $OUT/run/log.jsonl   checkpoints: $OUT/run/checkpoints   depictions: $OUT/png"
echo
echo "== 4. ACML: the fingerprint encoder of that run, frozen, teaches a 5-layer GIN (configs/acml_image.yaml)"
rm -rf "$OUT/acml"
teacher="$OUT/run/checkpoints/$(cat "$OUT/run/checkpoints/latest")"
$MPIRUN "$BIN/mmsa_pretrain" configs/acml_image.yaml --quiet --set "train.dataset=$OUT/demo.h5" \
    --set "train.run_dir=$OUT/acml" --set "acml.teacher_init=$teacher" --set acml.teacher=fingerprint \
    --set train.epochs=10
"$BIN/mmsa_eval" --run "$OUT/acml" --pools 100,all | sed -n '/^## Retrieval/,/^Skipped\|^## Isomer/p' | grep -v '^Skipped\|^## Isomer'
echo "  full report: $OUT/acml/eval/eval.md   log: $OUT/acml/log.jsonl"
echo "demo finished in $(( $(date +%s) - start )) s"
