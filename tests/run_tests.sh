#!/bin/sh
# Runs every test program and ends with one summary line: "check: N passed, M failed".
# tests/test_mpi_*: run under mpirun with 1 and 2 ranks (MMSA_TEST_RANKS overrides);
# tests/test_mpi4_*: with 2 and 4 ranks (oversubscribed on small machines); test_mpi_model
# with 1, 2, 3 and 4, test_mpi_bank with 1, 2 and 3.
# Each program is a cmocka runner; its "[  PASSED  ] n test(s)." and
# "[  FAILED  ] n test(s)" lines are added up (rank 0's line for MPI runs).
BUILD=${BUILD:-build}
RANKS=${MMSA_TEST_RANKS:-"1 2"}
RANKS4=${MMSA_TEST_RANKS4:-"2 4"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
export MMSA_SHARED=${MMSA_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
[ -d "$MMSA_SHARED" ] || MMSA_SHARED=$(cd "$(dirname "$0")/.." && pwd)/../shared
passed=0; failed=0; broken=""
log=$(mktemp)
run() { # name, command...
    name=$1; shift
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    p=$(grep -a '^\[  PASSED  \]' "$log" | head -n 1 | sed 's/[^0-9]*\([0-9]*\).*/\1/')
    f=$(grep -a '^\[  FAILED  \] [0-9]* test' "$log" | head -n 1 | sed 's/[^0-9]*\([0-9]*\).*/\1/')
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    secs=$(( $(date +%s) - start ))
    if [ "$f" -ne 0 ]; then
        broken="$broken $name"
        echo "FAIL $name ($p passed, $f failed, ${secs}s)"; cat "$log"
    else
        echo "ok   $name ($p passed, ${secs}s)"
    fi
}
for t in "$BUILD"/tests/test_*; do
    case "$t" in *.o|*.d) continue ;; esac
    [ -x "$t" ] || continue
    base=$(basename "$t")
    case "$base" in
    test_mpi*)
        ranks=$RANKS
        case "$base" in
        test_mpi4_*) ranks=$RANKS4 ;;
        # the whole model split over uneven shares of its 9 molecules (3 and 4 ranks too)
        test_mpi_model) ranks=${MMSA_TEST_RANKS_MODEL:-"1 2 3 4"} ;;
        # the bank over uneven blocks of its anchors: re-seeding must not depend on P
        test_mpi_bank) ranks=${MMSA_TEST_RANKS_BANK:-"1 2 3"} ;;
        esac
        # Under AddressSanitizer, leak checking is off for MPI programs: Open MPI and its
        # dlopen'ed plugins keep allocations until exit that cannot be attributed or
        # suppressed. These tests check the library's own memory with
        # mm_alloc_live_bytes; the serial tests run with leak checking on.
        for n in $ranks; do
            run "$base -n $n" timeout 600 mpirun --allow-run-as-root --oversubscribe \
                -x ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" -n "$n" "$t"
        done ;;
    *) run "$base" timeout 600 "$t" ;;
    esac
done
rm -f "$log"
[ -n "$broken" ] && echo "failing:$broken"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
