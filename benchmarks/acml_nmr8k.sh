#!/bin/sh
# ACML on NMR8K with every teacher: 13C and 1H spectrum autoencoders, and the image,
# conformer and fingerprint encoders of an MMSA run (pre-trained on other molecules),
# one at a time and all together; each run evaluated by mmsa_eval on its held-out
# scaffolds. The student and its schedule are configs/acml_nmr13c.yaml's for every teacher.
#
#   benchmarks/acml_nmr8k.sh --data spectra-out/cascade_nmr.h5 --spec13c RUN --spec1h RUN \
#                            --mmsa RUN [--teachers nmr13c,nmr1h,image,conformer,fingerprint,all]
#                            [--out benchmarks/out/acml] [--ranks 2] [--epochs 60]
#
# Prints one line per teacher and run (teacher -> graph top-1/5/10 among 1,000 held-out
# molecules, or all of them when fewer have the modality, beside the untrained student and
# chance) and writes summary.csv; every run directory (log, eval/eval.json, eval.md,
# topk.png) stays under --out.
set -eu
DATA=; S13=; S1H=; MMSA=; OUT=benchmarks/out/acml; RANKS=2; EPOCHS=60
TEACHERS=nmr13c,nmr1h,image,conformer,fingerprint,all
BIN=${BIN:-bin}
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;; --spec13c) S13=$2; shift 2 ;; --spec1h) S1H=$2; shift 2 ;;
    --mmsa) MMSA=$2; shift 2 ;; --teachers) TEACHERS=$2; shift 2 ;; --out) OUT=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;; --epochs) EPOCHS=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "acml_nmr8k.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$DATA" ] || { echo "acml_nmr8k.sh: --data is required" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
echo "run,teacher,pool,held_out,t2g_top1,t2g_top5,t2g_top10,g2t_top1,untrained_t2g_top1,chance_top1,isomer_acc,isomer_chance,isomer_molecules,seconds" \
    > "$OUT/summary.csv"
for t in $(echo "$TEACHERS" | tr ',' ' '); do
    case "$t" in
    nmr13c) init=$S13 ;; nmr1h) init=$S1H ;; *) init=$MMSA ;;
    esac
    [ -n "$init" ] || { echo "acml_nmr8k.sh: no checkpoint for teacher $t (see --help)" >&2; exit 2; }
    run="$OUT/$t"
    rm -rf "$run"
    start=$(date +%s)
    mpirun --oversubscribe -n "$RANKS" "$BIN/mmsa_pretrain" configs/acml_nmr13c.yaml --quiet \
        --set "train.dataset=$DATA" --set "train.run_dir=$run" --set "acml.teacher=$t" \
        --set "acml.teacher_init=$init" --set "acml.nmr13c_init=$S13" --set "acml.nmr1h_init=$S1H" \
        --set "train.epochs=$EPOCHS" </dev/null >"$run.log" 2>&1 || { cat "$run.log"; exit 1; }
    secs=$(( $(date +%s) - start ))
    "$BIN/mmsa_eval" --run "$run" --pools 100,1000,all >/dev/null
    python3 - "$run/eval/eval.json" "$t" "$secs" <<'PY' | tee -a "$OUT/summary.csv"
import json, sys
e = json.load(open(sys.argv[1]))
for name, te in e["teachers"].items():
    pools = [p for p in te["retrieval"] if not p["skipped"]]
    p = next((p for p in pools if p["pool"] == 1000), pools[-1])
    t2g, g2t = p["teacher_to_graph"], p["graph_to_teacher"]
    iso = (te.get("isomers") or {}).get("all") or {}
    print("%s,%s,%s,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%s,%s,%s,%s" % (
        sys.argv[2], name, p["size"], te["n"], t2g["trained"]["top1"], t2g["trained"]["top5"],
        t2g["trained"]["top10"], g2t["trained"]["top1"], t2g["untrained"]["top1"], p["chance"]["top1"],
        iso.get("trained_top1", ""), iso.get("chance", ""), iso.get("n_molecules", ""), sys.argv[3]))
PY
done
echo "wrote $OUT/summary.csv"
