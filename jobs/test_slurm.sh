#!/bin/bash
# The Slurm script tested for real (make check-slurm): starts a single-node Slurm on this
# machine, submits jobs/pretrain.slurm with a tiny job on 2 tasks, and checks that the job
# COMPLETED, logged every step and checkpointed; then resubmits it and checks that the
# second job resumed from the first job's last checkpoint and finished the run.
#
#   bash jobs/test_slurm.sh          (from the repository root, as root or with sudo)
#
# What it needs and does (facts from ../shared/SLURM.md):
#  - Debian's slurmctld, slurmd, slurm-client and munge, installed here with apt-get when
#    missing (only this test needs them; make check does not);
#  - everything else in a scratch folder: a munge key and socket of its own (the system's
#    munge is not touched), a minimal slurm.conf (root daemons, proctrack/linuxproc,
#    task/none, cons_tres with CR_Core, no cgroup.conf), state, spool, logs, pid files;
#  - slurmctld and slurmd as root, stopped through their pid files at the end, also when a
#    check fails (trap). Free ports are picked so that a Slurm already running is left alone.
# Prints "check-slurm: PASS" or "check-slurm: FAIL (reason)" last; exits non-zero on failure.
# Environment: BIN (default bin), MMSA_SHARED (default ../shared), KEEP=1 keeps the scratch
# folder, SLURM_TEST_TIMEOUT seconds per job (default 300).

set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
BIN=${BIN:-bin}
shared=${MMSA_SHARED:-$repo/../shared}
timeout_s=${SLURM_TEST_TIMEOUT:-300}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

scratch=""
jobids=""
status=FAIL

say() { echo "check-slurm: $*"; }
reported=0
fail() {
    say "FAIL ($*)"
    reported=1
    status=FAIL
    exit 1
}

stop_pidfile() { # name pidfile: TERM, wait up to 10 s, then KILL
    local name=$1 f=$2 pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    case "$pid" in '' | *[!0-9]*) return 0 ;; esac
    $SUDO kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        $SUDO kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    echo "  $name (pid $pid) did not stop on TERM; killing it"
    $SUDO kill -KILL "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    if [ -n "$scratch" ] && [ -d "$scratch" ]; then
        # jobs still running belong to this test's cluster: cancel them before the daemons go
        for j in $jobids; do SLURM_CONF=$scratch/slurm.conf scancel "$j" 2>/dev/null; done
        [ -n "$jobids" ] && [ "$status" != PASS ] && sleep 2
        stop_pidfile slurmd "$scratch/slurmd.pid"
        stop_pidfile slurmctld "$scratch/slurmctld.pid"
        stop_pidfile munged "$scratch/munged.pid"
        if [ "$status" != PASS ]; then
            for f in slurmctld.log slurmd.log; do
                [ -s "$scratch/$f" ] && { echo "---- last lines of $scratch/$f"; tail -n 15 "$scratch/$f"; }
            done
        fi
        if [ "$status" = PASS ] && [ "${KEEP:-0}" != 1 ]; then
            $SUDO rm -rf "$scratch"
        else
            echo "scratch folder kept: $scratch"
        fi
    fi
    if [ "$status" != PASS ]; then
        [ "$reported" = 1 ] || say "FAIL (the script stopped with status $rc)"
        [ $rc -ne 0 ] || exit 1
    fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# ---------------------------------------------------------------- packages
if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
    fail "needs root or passwordless sudo to install and start slurmctld/slurmd/munged"
fi
missing=""
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends $missing >/dev/null || fail "apt-get install$missing failed"
fi
for c in slurmctld slurmd sbatch scontrol squeue scancel munged mpirun; do
    command -v "$c" >/dev/null || fail "$c not found after installing the packages"
done
[ -x "$BIN/mmsa_pretrain" ] || fail "$BIN/mmsa_pretrain not built (make apps)"
golden="$shared/golden/mmsa_ref_v1.h5"
[ -r "$golden" ] || fail "dataset $golden not found (set MMSA_SHARED)"
golden=$(cd "$(dirname "$golden")" && pwd)/$(basename "$golden")

# ---------------------------------------------------------------- scratch cluster
scratch=$(mktemp -d /tmp/mmsa-slurm-XXXXXX) || fail "mktemp"
chmod 700 "$scratch"
mkdir -p "$scratch/state" "$scratch/spool" "$scratch/munge"
chmod 700 "$scratch/munge"
host=$(hostname -s)
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)

# munge: a 1024-byte random key of our own, mode 400, and our own socket (--force: as root)
dd if=/dev/urandom of="$scratch/munge/munge.key" bs=1024 count=1 status=none || fail "munge key"
chmod 400 "$scratch/munge/munge.key"
socket=$scratch/munge/munge.socket
$SUDO munged --force --socket="$socket" --key-file="$scratch/munge/munge.key" \
    --pid-file="$scratch/munged.pid" --log-file="$scratch/munged.log" \
    --seed-file="$scratch/munge/munged.seed" || fail "munged did not start (see $scratch/munged.log)"
for i in $(seq 1 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || fail "munged socket $socket did not appear"

# two free TCP ports for slurmctld and slurmd
port_free() { ! (ss -ltnH 2>/dev/null || netstat -ltn 2>/dev/null) | awk '{print $4}' | grep -q ":$1\$"; }
ctld_port=""
for p in 16817 17817 18817 19817 20817 21817; do
    if port_free "$p" && port_free $((p + 1)); then ctld_port=$p; break; fi
done
[ -n "$ctld_port" ] || fail "no free port pair for slurmctld/slurmd"

export SLURM_CONF=$scratch/slurm.conf
cat >"$SLURM_CONF" <<EOF
# single-node test cluster of jobs/test_slurm.sh
ClusterName=mmsatest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$scratch/slurmctld.pid
SlurmdPidFile=$scratch/slurmd.pid
SlurmctldLogFile=$scratch/slurmctld.log
SlurmdLogFile=$scratch/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$scratch/jobcomp.txt
# finished jobs stay visible to scontrol for 10 minutes
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=compute Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

$SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -i -f "$SLURM_CONF" || fail "slurmctld did not start"
$SUDO env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
state=""
for i in $(seq 1 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1)
    case "$state" in idle | mix | alloc) break ;; esac
    sleep 0.5
done
case "$state" in idle | mix | alloc) ;; *) fail "node $host not ready (state '${state:-none}')" ;; esac
say "single-node Slurm up: node $host ($cpus CPUs) in partition compute, ports $ctld_port/$((ctld_port + 1))"

# ---------------------------------------------------------------- the jobs
# A tiny job over the golden file's 16 molecules: 24 steps, a checkpoint every 4.
job=$scratch/tiny.yaml
run_dir=$scratch/run
cat >"$job" <<EOF
model:
  embed_dim: 16
  proj_hidden: 16
  proj_dim: 8
  gin_hidden: 12
  gin_layers: 2
  schnet_hidden: 8
  schnet_filters: 8
  schnet_interactions: 2
  cnn_channels: [4, 4, 8, 8]
  fp_hidden: 8
  gate_att_dim: 8
  decoder_hidden: 8
  hg_hidden: 8
loss:
  knn_k: 3
  n_anchors: 12
  mem_reseed_after: 3
train:
  dataset: $golden
  batch_size: 8
  max_steps: 24
  warmup_steps: 2
  log_every: 1
checkpoint:
  every: 4
  keep: 2
EOF

submit() { # out-file, extra script arguments...: prints the job id
    local out=$1
    shift
    RUN_DIR=$run_dir MMSA_BIN=$repo/$BIN sbatch --parsable --nodes=1 --ntasks-per-node=2 --ntasks=2 --time=10 \
        --job-name=mmsa-test --output="$out" --chdir="$repo" jobs/pretrain.slurm "$job" "$@"
}

wait_job() { # id: waits until the job left the queue; prints its final state
    local id=$1 t0 st
    t0=$(date +%s)
    while :; do
        st=$(scontrol show job "$id" -o 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p')
        case "$st" in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED | BOOT_FAIL | DEADLINE)
            echo "$st"
            return 0 ;;
        esac
        if [ $(($(date +%s) - t0)) -gt "$timeout_s" ]; then
            echo "${st:-unknown}-after-${timeout_s}s"
            return 1
        fi
        sleep 1
    done
}

logged_steps() { grep -o '"step": [0-9]*' "$run_dir/log.jsonl" 2>/dev/null | awk '{print $2}' | sort -n | uniq | tr '\n' ' '; }

# job 1: the first 12 steps (--steps is passed through to mmsa_pretrain)
out1=$scratch/job1.out
id1=$(submit "$out1" --steps 12) || fail "sbatch failed"
jobids="$id1"
say "submitted job $id1 (2 tasks, 12 steps)"
st1=$(wait_job "$id1")
say "job $id1: $st1"
[ "$st1" = COMPLETED ] || { cat "$out1" 2>/dev/null; fail "job $id1 ended $st1, not COMPLETED"; }
grep -q "JobId=$id1 .*JobState=COMPLETED" "$scratch/jobcomp.txt" 2>/dev/null ||
    fail "the job completion record of $id1 does not say COMPLETED"
grep -q "on 2 rank(s)" "$out1" || { cat "$out1"; fail "job $id1 did not run on 2 ranks"; }
want=$(seq 1 12 | tr '\n' ' ')
[ "$(logged_steps)" = "$want" ] || fail "log.jsonl of job $id1 has steps '$(logged_steps)', expected '$want'"
grep -q '"ranks": 2' "$run_dir/log.jsonl" || fail "log.jsonl does not record 2 ranks"
[ -r "$run_dir/checkpoints/latest" ] || fail "no checkpoints/latest after job $id1"
latest=$(cat "$run_dir/checkpoints/latest")
[ "$latest" = step_000000000012.h5 ] && [ -s "$run_dir/checkpoints/$latest" ] ||
    fail "latest checkpoint after job $id1 is '$latest', expected step_000000000012.h5"
if command -v h5ls >/dev/null; then
    h5ls "$run_dir/checkpoints/$latest" >/dev/null 2>&1 || fail "$latest is not a readable HDF5 file"
fi
say "job $id1 logged steps 1..12 and checkpointed $latest"

# job 2: the same submission resumes from that checkpoint and runs to max_steps (24)
out2=$scratch/job2.out
id2=$(submit "$out2") || fail "sbatch failed"
jobids="$jobids $id2"
say "resubmitted: job $id2"
st2=$(wait_job "$id2")
say "job $id2: $st2"
[ "$st2" = COMPLETED ] || { cat "$out2" 2>/dev/null; fail "job $id2 ended $st2, not COMPLETED"; }
grep -q "resuming from $run_dir/checkpoints/step_000000000012.h5 (step 12)" "$out2" ||
    { cat "$out2"; fail "job $id2 did not resume from step 12"; }
want=$(seq 1 24 | tr '\n' ' ')
[ "$(logged_steps)" = "$want" ] || fail "log.jsonl after job $id2 has steps '$(logged_steps)', expected '$want'"
[ "$(cat "$run_dir/checkpoints/latest")" = step_000000000024.h5 ] ||
    fail "latest checkpoint after job $id2 is '$(cat "$run_dir/checkpoints/latest")', expected step 24"
[ "$(grep -c "exit 0" "$run_dir/jobs.log")" = 2 ] || fail "jobs.log does not record two successful jobs"
say "job $id2 resumed at step 12 and finished at step 24"

status=PASS
say "PASS (jobs $id1 and $id2 COMPLETED on a single-node Slurm; run dir checkpointed and resumed)"
