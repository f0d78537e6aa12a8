#!/bin/sh
# Every row of every molecule file in the shared data folder through mmsa_prep (graph,
# scaffold, fingerprint, depiction), then the first --sample-3d rows of each again with
# 3D conformers: a regression benchmark for the featuriser on real input, not a test
# (all of it takes about ten minutes on 2 cores). It checks that every run ends with
# status 0 and that rows read = written + rejected, and counts the /rejects reasons:
#
#   benchmarks/prep_all.sh                      (every file, 2 ranks)
#   benchmarks/prep_all.sh --files bbbp.csv,tox21.csv --ranks 1 --sample-3d 0
#
# Output: a table on stdout, and under --out: runs.csv (one line per run: file, mode,
# rows, written, rejected, seconds, status), rejects.csv (file, mode, reason, count) and
# each run's summary (<file>.<mode>.txt). The datasets themselves are deleted.
# mpirun reads stdin, so every launch gets /dev/null.
set -eu

usage() {
    cat <<EOF
usage: benchmarks/prep_all.sh [options]

  --data DIR        folder searched for *.csv, *.csv.gz, *.smi(.gz), *.sdf(.gz) (default:
                    \$MMSA_SHARED/data, else ../shared/data)
  --files LIST      comma-separated file names (base names) to run, default all found
  --ranks P         MPI ranks per run (default 2); MPIRUN overrides the launcher
  --sample-3d N     rows per file prepared again with 3D conformers (default 100; 0: none)
  --out DIR         output folder (default benchmarks/out/prep_all)
  -h, --help        this text
exit status: 0 when every run ended with status 0 and its counts add up, 1 otherwise
EOF
}

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$HERE/bin}
SHARED=${MMSA_SHARED:-$HERE/../shared}
DATA=$SHARED/data
OUT=$HERE/benchmarks/out/prep_all
FILES=""
RANKS=2
SAMPLE=100
while [ $# -gt 0 ]; do
    case "$1" in
    --data) DATA=$2; shift 2 ;;
    --files) FILES=$(echo "$2" | tr ',' ' '); shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --sample-3d) SAMPLE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "prep_all.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ -x "$BIN/mmsa_prep" ] || { echo "prep_all.sh: $BIN/mmsa_prep not found: run make apps first" >&2; exit 1; }
[ -d "$DATA" ] || { echo "prep_all.sh: data folder $DATA not found (set MMSA_SHARED or --data)" >&2; exit 1; }
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe -n $RANKS"}
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

paths=$(find "$DATA" -type f \( -name '*.csv' -o -name '*.csv.gz' -o -name '*.smi' -o -name '*.smi.gz' \
        -o -name '*.sdf' -o -name '*.sdf.gz' \) | sort)
if [ -n "$FILES" ]; then
    sel=""
    for f in $FILES; do
        p=$(echo "$paths" | grep "/$f\$" || true)
        [ -n "$p" ] || { echo "prep_all.sh: no file named $f under $DATA" >&2; exit 1; }
        sel="$sel $p"
    done
    paths=$sel
fi

echo "file,mode,rows,written,rejected,seconds,status" > "$OUT/runs.csv"
echo "file,mode,reason,count" > "$OUT/rejects.csv"
bad=0
printf '%-36s %-5s %8s %8s %8s %8s %6s  %s\n' file mode rows written rejected seconds status "reject reasons"
run() { # path, mode (2d|3d), extra flags...
    path=$1; mode=$2; shift 2
    name=$(basename "$path")
    sum="$OUT/$name.$mode.txt"
    t0=$(date +%s.%N)
    set +e
    $MPIRUN "$BIN/mmsa_prep" --input "$path" --output "$TMP/out.h5" --quiet "$@" </dev/null >"$sum" 2>&1
    status=$?
    set -e
    secs=$(echo "$(date +%s.%N) - $t0" | bc)
    rm -f "$TMP/out.h5"
    rows=$(sed -n 's/^  rows read *\([0-9]*\).*/\1/p' "$sum" | head -n 1)
    written=$(sed -n 's/^  molecules written *\([0-9]*\).*/\1/p' "$sum" | head -n 1)
    rejected=$(sed -n 's/^  rows rejected *\([0-9]*\).*/\1/p' "$sum" | head -n 1)
    # reason lines: four spaces, the reason, its count (examples are indented further)
    reasons=$(sed -n '/^  rows rejected/,/^  [^ ]/s/^    \([^ ].*[^ ]\)  *\([0-9][0-9]*\)$/\1:\2/p' "$sum")
    echo "$reasons" | while IFS=: read -r why n; do
        if [ -n "$why" ]; then echo "$name,$mode,\"$why\",$n" >> "$OUT/rejects.csv"; fi
    done
    ok=1
    [ "$status" -eq 0 ] || ok=0
    [ -n "$rows" ] && [ -n "$written" ] && [ -n "$rejected" ] && [ "$rows" -eq $((written + rejected)) ] || ok=0
    # a table without a SMILES column (CASCADE's per-atom shift table) is not molecule
    # input: mmsa_prep refusing it with a message naming the file is the right outcome
    if [ $ok -eq 0 ] && [ "$status" -eq 1 ] && grep -q "no SMILES column" "$sum"; then
        ok=1
        reasons="not a molecule table: $(sed -n 's/.*\(no SMILES column.*\)/\1/p' "$sum" | head -n 1)"
        status=refused
    fi
    [ $ok -eq 1 ] || { bad=1; echo "  FAILED: $name ($mode), status $status; summary in $sum" >&2; tail -n 5 "$sum" >&2; }
    echo "$name,$mode,${rows:-},${written:-},${rejected:-},$secs,$status" >> "$OUT/runs.csv"
    printf '%-36s %-5s %8s %8s %8s %8.1f %6s  %s\n' "$name" "$mode" "${rows:--}" "${written:--}" "${rejected:--}" \
        "$secs" "$status" "$(echo "$reasons" | paste -sd ';' -)"
}
for p in $paths; do
    run "$p" 2d --no-3d
    if [ "$SAMPLE" -gt 0 ]; then run "$p" 3d --limit "$SAMPLE" --no-image; fi
done
echo "runs.csv and rejects.csv in $OUT"
exit $bad
