# slurm_lib.sh: a private, single-node Slurm cluster for tests (sourced, not run; not a test).
#
# slurm_start DIR brings up munged, slurmctld and slurmd (Debian 12's slurm-wlm 22.05), all as
# root, all in the foreground of background jobs whose PIDs we keep, with every file (config,
# munge key and socket, state, spool, logs, two fake GPU device nodes) under DIR and private
# loopback ports. Nothing outside DIR is read or written except the apt install when the
# packages are missing. slurm_stop kills exactly those PIDs; call it from an EXIT trap.
#
# After slurm_start: SLURM_CONF points at DIR/slurm.conf (every srun/salloc/squeue/scancel of
# the test uses it), the node is "localhost" with CPUs=2 and Gres=gpu:2. It does NOT set up
# cgroups, accounting or more than one node.

SLURM_PIDS=""

# Install slurmctld, slurmd, slurm-client and munge with apt-get when a program is missing.
slurm_install() {
    local p missing=0
    for p in srun salloc squeue scancel slurmctld slurmd munged mungekey; do
        command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || missing=1
    done
    [ "$missing" = 0 ] && return 0
    echo "slurm_lib: installing slurm-wlm and munge with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=300 -y --no-install-recommends \
        slurmctld slurmd slurm-client munge >&2 || {
        DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=300 -y --no-install-recommends \
                slurmctld slurmd slurm-client munge >&2
    }
}

# A TCP port on 127.0.0.1 that nothing listens on now, from [base, base+2000).
slurm_free_port() {
    local base=$1 p i
    for i in $(seq 1 50); do
        p=$((base + RANDOM % 2000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# slurm_stop: kill the daemons slurm_start started (by PID: TERM, then KILL; slurmd ends the job
# steps it runs). Safe to call more than once and before slurm_start.
slurm_stop() {
    local p i
    [ -z "$SLURM_PIDS" ] && return 0
    for p in $SLURM_PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 1 30); do
        local alive=0
        for p in $SLURM_PIDS; do kill -0 "$p" 2>/dev/null && alive=1 || true; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in $SLURM_PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    for p in $SLURM_PIDS; do wait "$p" 2>/dev/null || true; done
    SLURM_PIDS=""
    return 0
}

# Show the daemons' logs (on failure).
slurm_logs() {
    local f
    for f in "$SLURM_DIR"/log/*.log; do
        echo "---- $f ----" >&2
        tail -n 40 "$f" >&2
    done
}

# slurm_start DIR: start the cluster (see the file comment). Returns 0 when the node is idle
# and accepts jobs, else 1 with the logs shown.
slurm_start() {
    SLURM_DIR=$1
    local S=$SLURM_DIR
    slurm_install || { echo "slurm_lib: cannot install slurm-wlm/munge" >&2; return 1; }
    mkdir -p "$S/state" "$S/spool" "$S/log" "$S/dev" "$S/munge"
    chmod 700 "$S/munge"
    rm -f "$S/dev/gpu0" "$S/dev/gpu1"
    # Two character devices standing for GPUs (the numbers of /dev/null): gres/gpu only needs
    # files to stat, and sets CUDA_VISIBLE_DEVICES from their index.
    mknod "$S/dev/gpu0" c 1 3 && mknod "$S/dev/gpu1" c 1 3 || return 1
    mungekey --create --keyfile="$S/munge/munge.key" 2>/dev/null || return 1
    chmod 600 "$S/munge/munge.key"
    local ctl_port node_port
    ctl_port=$(slurm_free_port 36000) && node_port=$(slurm_free_port 38000) || return 1
    cat >"$S/slurm.conf" <<EOF
ClusterName=orchtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$node_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
KillWait=5
MessageTimeout=10
InactiveLimit=0
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat >"$S/gres.conf" <<EOF
NodeName=localhost Name=gpu File=$S/dev/gpu[0-1]
EOF
    export SLURM_CONF=$S/slurm.conf
    export MUNGE_SOCKET=$S/munge/munge.sock
    munged -F --force --socket="$S/munge/munge.sock" --key-file="$S/munge/munge.key" \
        --pid-file="$S/munge/munged.pid" --log-file="$S/log/munged.log" \
        --seed-file="$S/munge/munged.seed" >"$S/log/munged.out" 2>&1 &
    SLURM_PIDS="$SLURM_PIDS $!"
    local i
    for i in $(seq 1 50); do [ -S "$S/munge/munge.sock" ] && break; sleep 0.1; done
    [ -S "$S/munge/munge.sock" ] || { slurm_logs; return 1; }
    slurmctld -D -i -f "$S/slurm.conf" >"$S/log/slurmctld.out" 2>&1 &
    SLURM_PIDS="$SLURM_PIDS $!"
    slurmd -D -N localhost -f "$S/slurm.conf" >"$S/log/slurmd.out" 2>&1 &
    SLURM_PIDS="$SLURM_PIDS $!"
    for i in $(seq 1 150); do
        if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; then return 0; fi
        sleep 0.2
    done
    echo "slurm_lib: the node did not become idle in 30 s" >&2
    sinfo -N -l >&2
    slurm_logs
    return 1
}
