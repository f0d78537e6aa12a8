#!/bin/sh
# Runs the libFuzzer targets built by `make fuzz-build` (called by make fuzz / fuzz-smoke).
#   run_fuzz.sh run TARGET...    fuzz each for FUZZ_S seconds (default 60), one after the
#                                other, niced, one process: -jobs/-workers are not used
#   run_fuzz.sh smoke TARGET...  replay the committed corpus and regression inputs once
# Inputs: tests/fuzz/corpus/<target> (committed seeds), tests/fuzz/regress/<target>
# (inputs that once crashed; replayed, never written to). New inputs go to the scratch
# corpus $FUZZ_BUILD/corpus/<target>, crashes to $FUZZ_BUILD/crashes/<target>/, logs to
# $FUZZ_BUILD/logs/, and one line per run (target, seconds, executions, corpus size)
# to $FUZZ_BUILD/fuzz-stats.tsv: the numbers of tests/README.md.
# The targets initialise MPI as a singleton: run them directly, never under mpirun.
mode=$1; shift
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_S=${FUZZ_S:-60}
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
# Leaks: libFuzzer checks every input (memory allocated while it ran and not freed after
# it is a leak); the check at exit is off, because Open MPI and Open Babel's plugins keep
# allocations until exit (the suppressions cover what remains of them in the per-input check).
export ASAN_OPTIONS="detect_leaks=1:leak_check_at_exit=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Optional per-target options, e.g. a dictionary: tests/fuzz/<target>.options holds flags.
opts() { [ -f "$here/$1.options" ] && cat "$here/$1.options"; }
# the smoke run replays inputs once: no -fork and no -ignore_* (they would start a fuzzing run)
replay_opts() { opts "$1" | tr ' ' '\n' | grep -v '^-fork=\|^-ignore_' | tr '\n' ' '; }
failed=""
for t in "$@"; do
    bin=$FUZZ_BUILD/fuzz/$t
    seeds=$here/corpus/$t
    regress=$here/regress/$t
    [ -d "$regress" ] || regress=""
    case "$mode" in
    run)
        scratch=$FUZZ_BUILD/corpus/$t
        crashes=$FUZZ_BUILD/crashes/$t
        mkdir -p "$scratch" "$crashes" "$FUZZ_BUILD/logs"
        log=$FUZZ_BUILD/logs/$t-$(date +%Y%m%d-%H%M%S).log
        echo "== $t: $FUZZ_S s, log $log"
        start=$(date +%s)
        # shellcheck disable=SC2046
        nice -n 19 "$bin" -max_total_time="$FUZZ_S" -timeout=10 -rss_limit_mb=2560 \
            -print_final_stats=1 -artifact_prefix="$crashes/" $(opts "$t") \
            "$scratch" "$seeds" >"$log" 2>&1
        rc=$?
        execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -n 1 | sed 's/.*: *//')
        # -fork=1 (the HDF5 targets, see their .options): the parent's last "#N: cov: ..." line
        [ -n "$execs" ] || execs=$(grep -a '^#[0-9]*: cov' "$log" | tail -n 1 | sed 's/^#\([0-9]*\):.*/\1/')
        # libFuzzer's own time ("Done N runs in S second(s)", or a forked run's "exiting: .. time: Ss");
        # a run a crash ended has neither: then the wall time, MPI start-up included
        secs=$(grep -a '^Done [0-9]* runs in\|^INFO: exiting: .* time: ' "$log" | tail -n 1 | sed -n 's/.*in \([0-9]*\) second.*/\1/p; s/.*time: \([0-9]*\)s.*/\1/p')
        [ -n "$secs" ] || secs=$(( $(date +%s) - start ))
        corpus=$(grep -a '^#[0-9]' "$log" | tail -n 1 | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
        crashes_n=$(find "$crashes" -type f | wc -l)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(date -u +%FT%TZ)" "$secs" "${execs:-?}" \
            "${corpus:-?}" "rc=$rc" "artifacts=$crashes_n" >>"$FUZZ_BUILD/fuzz-stats.tsv"
        tail -n 12 "$log"
        [ "$rc" -eq 0 ] || failed="$failed $t"
        ;;
    smoke)
        log=$(mktemp)
        # -runs=0: every input of the directories once, then stop.
        # shellcheck disable=SC2046
        if "$bin" -runs=0 -timeout=10 -rss_limit_mb=2560 -artifact_prefix="${TMPDIR:-/tmp}/" $(replay_opts "$t") \
            "$seeds" $regress >"$log" 2>&1; then
            echo "ok   $t ($(find "$seeds" $regress -type f | wc -l) inputs)"
        else
            echo "FAIL $t"; tail -n 40 "$log"; failed="$failed $t"
        fi
        rm -f "$log"
        ;;
    *) echo "usage: $0 run|smoke TARGET..." >&2; exit 2 ;;
    esac
done
[ -z "$failed" ] || { echo "fuzz: failing:$failed"; exit 1; }
