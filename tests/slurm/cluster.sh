#!/usr/bin/env bash
# Start (or stop) a single-node SLURM cluster on this machine for the SLURM
# tests: munged + slurmctld + slurmd, a `debug` partition with every CPU, and
# one GPU GRES backed by /dev/null (jobs asking --gpus=1 see
# CUDA_VISIBLE_DEVICES=0; no real GPU is used). Needs root and Debian's
# slurm-wlm and munge. State and logs live in DIR; the configuration goes to
# /etc/slurm (srun inside batch jobs reads it from there), and an existing
# configuration that this script did not write is never touched.
#   usage: cluster.sh start DIR | cluster.sh stop DIR
set -euo pipefail
action=$1
dir=$(realpath -m "$2")
host=$(hostname -s)

stop() {
    for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
}

conf_dir=/etc/slurm
marker="# written by mirprobe tests/slurm/cluster.sh"

if [ "$action" = stop ]; then
    stop
    # Leave no configuration naming a stopped controller: every later snakemake
    # CLI start would wait 10 s for the SLURM plugin's `scontrol show config`.
    if [ -f "$conf_dir/slurm.conf" ] && grep -qF "$marker" "$conf_dir/slurm.conf"; then
        rm -f "$conf_dir/slurm.conf" "$conf_dir/gres.conf"
    fi
    exit 0
fi

if [ -f "$conf_dir/slurm.conf" ] && ! grep -qF "$marker" "$conf_dir/slurm.conf"; then
    echo "cluster.sh: $conf_dir/slurm.conf exists and is not ours; not touching it" >&2
    exit 1
fi
mkdir -p "$dir"/{spool,state,log} "$conf_dir"
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$conf_dir/slurm.conf" <<CONF
$marker
ClusterName=mirprobe-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MpiDefault=none
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
printf "%s\nNodeName=%s Name=gpu File=/dev/null\n" "$marker" "$host" > "$conf_dir/gres.conf"
export SLURM_CONF="$conf_dir/slurm.conf"

# munge: key and runtime dir owned by the munge user
mkdir -p /run/munge /etc/munge
chown munge:munge /run/munge
chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
munge_alive() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
# A socket file alone proves nothing: a munged killed with its session leaves
# it behind (seen in CI), so ask for a credential and restart munged if none.
if ! munge_alive; then
    pkill -x munged 2>/dev/null || true
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    su -s /bin/sh munge -c "/usr/sbin/munged --force"
fi
for _ in $(seq 1 20); do
    munge_alive && break
    sleep 0.5
done
if ! munge_alive; then
    echo "cluster.sh: munged does not answer (munge -n | unmunge fails)" >&2
    exit 1
fi

stop_daemons_only() {
    for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
}
stop_daemons_only
# daemons of an earlier test cluster (another state dir) would hold the ports
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
# A deadline, not a count: with broken authentication each SLURM command can
# hang for up to a minute (a CI run with a dead munged spent at least 6 min here).
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
    if timeout 5 sinfo -h -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
        exit 0
    fi
    timeout 5 scontrol update nodename="$host" state=resume 2>/dev/null || true
    sleep 1
done
echo "cluster.sh: the node did not become idle; logs in $dir/log" >&2
timeout 5 sinfo >&2 || true
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
