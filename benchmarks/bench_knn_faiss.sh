#!/bin/sh
# bench_knn_faiss.sh: the distributed kNN benchmark beside FAISS exact inner-product
# search (IndexFlatIP) on the same rows, joined into one table.
#
#   benchmarks/bench_knn_faiss.sh [--max-n N] [--reps R] [--ranks "1 2"] [--threads "1 2"]
#
# 1. builds build/benchmarks/bench_knn and runs it under mpirun for each rank count
#    (N = 1k .. --max-n, d = 256, k = 8); the first run writes the rows
#    (<out>/knn_data_N.bin, raw float32 [N, 256]) and MMSA-C's lists (<out>/knn_ref_N.bin);
# 2. if FAISS is installed (Debian libfaiss-dev), compiles benchmarks/bench_knn_faiss.cpp
#    with g++ -lfaiss into build/benchmarks/ and runs it on the same files with each
#    thread count; otherwise says so and skips it. FAISS is never part of the library
#    or of make check;
# 3. prints <out>/bench_knn.csv (both parts, same columns) as one table.
# <out> is benchmarks/out or $MMSA_BENCH_OUT.
#
# Default sizes stop at 50k. The 200k run (the data files take 200 MB + 13 MB):
#   benchmarks/bench_knn_faiss.sh --max-n 200000 --reps 1
set -eu
cd "$(dirname "$0")/.."
MAXN=50000
REPS=3
RANKS="1 2"
THREADS="1 2"
DIM=256
K=8
while [ $# -gt 0 ]; do
    case "$1" in
    --max-n) MAXN=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench_knn_faiss.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
OUT=${MMSA_BENCH_OUT:-benchmarks/out}
mkdir -p "$OUT" build/benchmarks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1

make --no-print-directory build/benchmarks/bench_knn
first=1
for n in $RANKS; do
    if [ $first = 1 ]; then mode=--write-data; else mode=--append; fi
    mpirun --oversubscribe -n "$n" build/benchmarks/bench_knn --max-n "$MAXN" --reps "$REPS" --dim $DIM --k $K $mode
    first=0
done

FAISS_BIN=build/benchmarks/bench_knn_faiss
if [ -f /usr/include/faiss/IndexFlat.h ] &&
    g++ -O2 -std=c++17 -fopenmp benchmarks/bench_knn_faiss.cpp -lfaiss -lblas -llapack -o "$FAISS_BIN"; then
    for f in "$OUT"/knn_data_*.bin; do
        [ -f "$f" ] || continue
        n=$(basename "$f" .bin | sed 's/knn_data_//')
        [ "$n" -le "$MAXN" ] || continue
        for t in $THREADS; do
            # FAISS threads its search with OpenMP and its GEMM through the system BLAS
            OMP_NUM_THREADS=$t BLIS_NUM_THREADS=$t "$FAISS_BIN" "$f" "$n" $DIM $K "$REPS" "$t" "$OUT/knn_ref_$n.bin" \
                >>"$OUT/bench_knn.csv"
            echo "  N = $n  faiss-flatip, $t thread(s): done"
        done
    done
else
    echo "FAISS is not installed (apt-get install libfaiss-dev) or did not compile: table without the FAISS rows"
fi

echo
echo "kNN, d = $DIM, k = $K: median seconds of $REPS run(s); rss = peak RSS MiB (max over ranks);"
echo "identical = fraction of lists equal to MMSA-C's exact lists (allgather), recall = fraction of neighbours found"
sort -t, -k1,1n -k4,4 -k5,5n -k6,6n "$OUT/bench_knn.csv" | grep -v '^n,' | awk -F, '
    BEGIN { printf "%8s %-13s %5s %7s %5s %10s %9s %9s %9s %9s %9s\n", "N", "method", "ranks", "threads", "grid",
            "median_s", "rss_MiB", "sent_MiB", "GFLOP/s", "identical", "recall" }
    { printf "%8d %-13s %5d %7d %5s %10.3f %9.1f %9.1f %9.1f %9.4f %9.4f\n", $1, $4, $5, $6, $7, $8, $11, $13 + $14, $16, $17, $18 }'
echo "wrote $OUT/bench_knn.csv"
