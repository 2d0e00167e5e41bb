#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, to run the workflow through
# `--profile profiles/slurm` without a cluster (tests/test_slurm.py, or by hand).
#
#   cluster/start_slurm.sh         install what is missing, start munge, slurmctld
#                                  and slurmd, wait until the node is idle
#   cluster/start_slurm.sh stop    stop the daemons this script started (by PID)
#   cluster/start_slurm.sh status  exit 0 if the cluster is up (prints sinfo)
#
# Debian/Ubuntu packages: munge slurmctld slurmd slurm-client. No slurmdbd: job
# states come from `squeue` (profiles/slurm sets `slurm-status-command: squeue`),
# and MinJobAge keeps finished jobs visible to squeue long enough for that.
# Idempotent: when the cluster is already up this returns in well under a second.
#
# Environment:
#   SLURM_BASE           state, spool, PID and log files (default /tmp/brainphase-slurm)
#   SLURM_START_TIMEOUT  seconds to wait for each daemon / for the node (default 60)
#   SLURM_FORCE_CONF=1   overwrite an /etc/slurm/slurm.conf this script did not write
set -euo pipefail

BASE=${SLURM_BASE:-/tmp/brainphase-slurm}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# written by brainphase cluster/start_slurm.sh"
PKGS="munge slurmctld slurmd slurm-client"
NODE=$(hostname -s)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "start_slurm: needs root or sudo" >&2; exit 1; }
  SUDO="sudo"
fi

say() { echo "start_slurm: $*"; }
die() {
  echo "start_slurm: ERROR: $*" >&2
  for f in "$BASE"/log/*.log "$BASE"/log/*.out; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    $SUDO tail -n 15 "$f" >&2 || true
  done
  exit 1
}

pid_of() { [ -s "$1" ] && $SUDO cat "$1" 2>/dev/null; }
alive() {  # alive PIDFILE: the process the file names is running
  local pid
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && $SUDO kill -0 "$pid" 2>/dev/null
}
wait_until() {  # wait_until WHAT CMD...: poll CMD every 0.25 s for $TIMEOUT s
  local what=$1 i
  shift
  for ((i = 0; i < TIMEOUT * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "timed out after ${TIMEOUT}s waiting for $what"
}
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1; }
node_ready() { case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; esac; return 1; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local pid i
  alive "$2" || return 0
  pid=$(pid_of "$2")
  $SUDO kill "$pid"
  for ((i = 0; i < 40; i++)); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if $SUDO kill -0 "$pid" 2>/dev/null; then $SUDO kill -9 "$pid" || true; fi
  say "stopped $1 (pid $pid)"
}

stop_all() {
  stop_pidfile slurmd "$BASE/slurmd.pid"
  stop_pidfile slurmctld "$BASE/slurmctld.pid"
  # munged is shared with anything else on the machine: stop it only if we started it.
  if [ -f "$BASE/munged.ours" ]; then
    stop_pidfile munged /run/munge/munged.pid
    $SUDO rm -f "$BASE/munged.ours"
  fi
}

write_conf() {  # the slurm.conf of this cluster, on stdout
  local mem nodeline
  # RealMemory: 85 % of physical memory leaves room for the OS and the Snakemake
  # main process; topology (CPUs, sockets, cores) as slurmd detects it.
  mem=$(($(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 * 85 / 100))
  nodeline=$(slurmd -C | grep '^NodeName=' | sed "s/RealMemory=[0-9]*/RealMemory=$mem/")
  [ -n "$nodeline" ] || die "slurmd -C did not report this node's hardware"
  cat <<EOF
$MARK (SLURM_BASE=$BASE)
ClusterName=brainphase
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Start a submitted job at once (the default batches starts every 3 s; a
# workflow is a chain of short jobs).
SchedulerParameters=batch_sched_delay=0
DefMemPerCPU=1000
ReturnToService=2
# Finished jobs stay visible to squeue for 10 min: the status check of the
# Snakemake SLURM plugin (squeue --states=all) must see COMPLETED/FAILED.
MinJobAge=600
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job: the record that jobs really ran through SLURM.
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.txt
$nodeline NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

cluster_up() {
  [ -f "$CONF" ] && grep -qF "$MARK (SLURM_BASE=$BASE)" "$CONF" &&
    alive /run/munge/munged.pid && alive "$BASE/slurmctld.pid" && alive "$BASE/slurmd.pid" &&
    node_ready
}

case "${1:-start}" in
  stop)
    stop_all
    exit 0
    ;;
  status)
    if cluster_up; then sinfo; exit 0; fi
    echo "start_slurm: cluster is not up" >&2
    exit 1
    ;;
  start) ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac

# Fast path: everything already running with this configuration.
if command -v slurmd >/dev/null && cluster_up && [ "$(write_conf)" = "$($SUDO cat "$CONF")" ]; then
  say "already up (SLURM_BASE=$BASE)"
  sinfo
  exit 0
fi

# 1. Packages: install only what is missing.
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || die "missing packages:$missing (and no apt-get to install them)"
  say "installing$missing"
  if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    $SUDO apt-get update -qq || die "apt-get update failed"
  fi
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
    >"/tmp/start_slurm.apt.log" 2>&1 || {
    tail -n 20 /tmp/start_slurm.apt.log >&2
    die "apt-get install$missing failed (full log: /tmp/start_slurm.apt.log)"
  }
fi

$SUDO mkdir -p "$BASE/log" "$BASE/ctld" "$BASE/spool" /etc/slurm

# 2. slurm.conf. A changed configuration (another SLURM_BASE, more memory)
# restarts the daemons; a slurm.conf from someone else is left alone.
new_conf=$(write_conf)
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ "${SLURM_FORCE_CONF:-0}" != 1 ]; then
  die "$CONF exists and was not written by this script; set SLURM_FORCE_CONF=1 to replace it"
fi
if [ ! -f "$CONF" ] || [ "$new_conf" != "$($SUDO cat "$CONF")" ]; then
  if alive "$BASE/slurmctld.pid" || alive "$BASE/slurmd.pid"; then
    say "configuration changed: restarting slurmctld and slurmd"
    stop_pidfile slurmd "$BASE/slurmd.pid"
    stop_pidfile slurmctld "$BASE/slurmctld.pid"
  fi
  printf '%s\n' "$new_conf" | $SUDO tee "$CONF" >/dev/null
  say "wrote $CONF"
fi

# 3. munge: a key, then the daemon (as the munge user).
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  $SUDO chown munge:munge /etc/munge/munge.key
  $SUDO chmod 400 /etc/munge/munge.key
fi
if ! alive /run/munge/munged.pid; then
  $SUDO mkdir -p /run/munge
  $SUDO chown munge:munge /run/munge
  $SUDO runuser -u munge -- /usr/sbin/munged </dev/null >>"$BASE/log/munged.out" 2>&1 ||
    die "munged did not start"
  $SUDO touch "$BASE/munged.ours"
  say "started munged"
fi
wait_until "munge to answer" sh -c 'munge -n | unmunge'

# 4. slurmctld, then slurmd. Both daemonize; their stdio goes to files so that a
# caller capturing this script's output is not held open by them.
if ! alive "$BASE/slurmctld.pid"; then
  $SUDO slurmctld </dev/null >>"$BASE/log/slurmctld.out" 2>&1 || die "slurmctld did not start"
  say "started slurmctld"
fi
wait_until "slurmctld to answer (scontrol ping)" sh -c 'scontrol ping | grep -q UP'
if ! alive "$BASE/slurmd.pid"; then
  $SUDO slurmd </dev/null >>"$BASE/log/slurmd.out" 2>&1 || die "slurmd did not start"
  say "started slurmd"
fi

# 5. The node: idle (or already running jobs). A node left DOWN by an earlier
# run is resumed.
for ((i = 0; i < TIMEOUT * 2; i++)); do
  node_ready && break
  case "$(node_state)" in
    down* | drain* | fail*) $SUDO scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
node_ready || die "node $NODE is '$(node_state)', not idle, after ${TIMEOUT}s"
say "up (SLURM_BASE=$BASE)"
sinfo
