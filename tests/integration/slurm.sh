# slurm: `orchestrate --executor slurm` against a real single-node Slurm (tests/helpers/
# slurm_lib.sh: munged, slurmctld, slurmd started here on loopback, stopped by PID on exit), with
# two fake GPUs. Inside `salloc`: a 2-model ensemble with swap_ab equals the local run byte for
# byte, each worker sees its own step id and GPU, the step shims' GPU memory checks (fake NVML)
# reach the report; resume reuses every shard; lm-worker equals its local run; progress lines
# come through; a crash is retried; OOM halves the batch; exit 65 fails at once; a hang is
# cancelled at its timeout (also when scancel does nothing) and no step remains; Ctrl-C leaves
# no step; SIGKILL of orchestrate leaves no step within a minute, the allocation still alive.
# Needs root (mknod, the daemons) and apt when slurm-wlm is missing: without them it fails
# loudly rather than skipping. Takes ~1-2 minutes (the SIGKILL case waits for Slurm).
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/slurm_lib.sh"
set -e

[ "$(id -u)" = 0 ] || fail "the Slurm test needs root (it starts slurmctld/slurmd/munged)"
SDIR=$(mktemp -d /tmp/slurm.XXXXXX)  # not under $T: no_leftovers must not see the daemons
trap 'slurm_stop; rm -rf "$SDIR"; cleanup' EXIT
slurm_start "$SDIR" || fail "could not start a local Slurm (see the logs above)"

# No job step of ours (squeue -s lists every step, "<job>.<step> <name>"; extern/batch steps of
# salloc jobs are not ours).
steps_left() {
    squeue -h -s -o '%i %j' 2>/dev/null | grep ' orch-' || true
}
# wait_no_steps SECONDS: until no step of ours is left; fails with the list.
wait_no_steps() {
    local i
    for i in $(seq 1 $(($1 * 5))); do
        [ -z "$(steps_left)" ] && return 0
        sleep 0.2
    done
    fail "job steps left: $(steps_left)"
}
# salloc_orch ARGS...: orchestrate ARGS inside a fresh allocation with 2 CPUs and 2 GPUs;
# output to $T/out.log, status in $RC.
salloc_orch() {
    set +e
    timeout 120 salloc -Q -N1 -n2 --gres=gpu:2 --job-name=orchtest "$ORCH" --executor slurm "$@" >"$T/out.log" 2>&1
    RC=$?
    set -e
}

# --- outside an allocation: a clear error naming salloc
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
(unset SLURM_JOB_ID; run_orch --executor slurm --plan "$T/plan.json"; expect_rc 1;
 last_line | grep -q "salloc" || { show_log; fail "no salloc hint outside an allocation"; })
# --dry-run needs no allocation
(unset SLURM_JOB_ID; run_orch --executor slurm --dry-run --plan "$T/plan.json"; expect_rc 0)

# --- ensemble with swap_ab: the local run is the oracle, byte for byte
ENS_PLAN() {
    write_plan "$T/plan.json" '"memory": {"wait_s": 0.5}' \
        "$(model_json m1 1 1 '["identity", "swap_ab"]')" "$(model_json m2 2 2 '["identity"]')"
}
ENS_PLAN
run_orch --gpus cpu --plan "$T/plan.json" --work-dir "$T/work-local"
expect_rc 0
cp "$T/sub.csv" "$T/sub-local.csv"
rm -f "$T/trace.log"
# The step shims check their GPU's memory through a fake NVML (the first reading is "before",
# the next ones "after"): GPU 1 does not give 300 MiB back.
printf '1000 1000\n1000 1300\n' >"$T/nvml.txt"
ORCHESTRATE_FAKE_NVML=$T/nvml.txt salloc_orch --gpus auto --plan "$T/plan.json"
expect_rc 0
cmp "$T/sub.csv" "$T/sub-local.csv" || fail "the Slurm run's submission differs from the local run's"
wait_no_steps 10
no_leftovers
# 2 slots (the allocation's 2 GPUs), 6 jobs: each worker ran in its own step with one GPU.
[ "$(trace_count)" = 6 ] || fail "expected 6 workers: $(cat "$T/trace.log")"
grep -v ' step=[0-9]*\.[0-9]*$' "$T/trace.log" && fail "a worker did not see its Slurm step"
[ "$(grep -o 'step=[0-9.]*' "$T/trace.log" | sort -u | wc -l)" = 6 ] || fail "steps not distinct: $(cat "$T/trace.log")"
grep -v ' cvd=[01] ' "$T/trace.log" && fail "a worker did not see one GPU: $(cat "$T/trace.log")"
R=$(report_flat)
echo "$R" | grep -q '"slurm_steps":\["[0-9]*\.[0-9]*"\],"slurm_nodes":\["'"$(hostname)"'"\],"gpu_memory":\[{' \
    || fail "report lacks the step/node per attempt: $R"
N0=$(grep -c ' cvd=0 ' "$T/trace.log"); N1=$(grep -c ' cvd=1 ' "$T/trace.log")
[ "$(echo "$R" | grep -Eo '\{"gpu":0,"before_mib":1000(\.0)?,"after_mib":1000(\.0)?,"leaked":false\}' | wc -l)" = "$N0" ] \
    || fail "GPU 0 steps: expected $N0 clean memory checks: $R"
[ "$(echo "$R" | grep -Eo '\{"gpu":1,"before_mib":1000(\.0)?,"after_mib":1300(\.0)?,"leaked":true\}' | wc -l)" = "$N1" ] \
    || fail "GPU 1 steps: expected $N1 leaks: $R"
grep -q 'warning: \[m[12]\..*\] step [0-9.]*: GPU 1 on '"$(hostname)"' holds 1300 MiB after the step, 300 MiB over' "$T/out.log" \
    || { show_log; fail "no warning for the step that kept GPU memory"; }
for s in $(grep -o 'step=[0-9.]*' "$T/trace.log" | cut -d= -f2); do
    echo "$R" | grep -q "\"$s\"" || fail "step $s (seen by a worker) is not in the report"
done

# --- resume: every shard reused, no step started
salloc_orch --gpus auto --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 6 ] || fail "resume started workers: $(cat "$T/trace.log")"
cmp "$T/sub.csv" "$T/sub-local.csv" || fail "the resumed submission differs"

# --- lm-worker through Slurm (tiny-llama on the CPU, 2 steps): the local run's bytes; and
# preflight's `lm-worker check` runs on the CPU here even when the slots are GPUs (the node's
# GPU is the steps' business), so a GPU-slot --dry-run passes on this GPU-less machine
if [ -x "$B/lm-worker" ]; then
    LM="{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$FX/models/tiny-llama\", \"max_length\": 64, \"tta\": [\"identity\", \"swap_ab\"]}"
    write_plan "$T/plan.json" '' "$LM"
    run_orch --plan "$T/plan.json" --work-dir "$T/work-lm-local"
    expect_rc 0
    cp "$T/sub.csv" "$T/sub-lm-local.csv"
    salloc_orch --plan "$T/plan.json" --fresh
    expect_rc 0
    cmp "$T/sub.csv" "$T/sub-lm-local.csv" || fail "lm-worker through Slurm differs from the local run"
    salloc_orch --gpus auto --dry-run --plan "$T/plan.json"
    expect_rc 0
fi

# --- progress lines cross srun (the remote shim forwards fd 3 onto stderr behind a marker): a
# partly done job shows up (finished jobs alone give multiples of 100 rows)
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '"batch_size": 8' --batch-size '{batch_size}' --slow 100)"
ORCHESTRATE_PROGRESS_INTERVAL_S=1 salloc_orch --plan "$T/plan.json" --fresh
expect_rc 0
grep -E '^\[m1\] [0-9]+/400 rows' "$T/out.log" | awk '{ split($2, a, "/"); if (a[1] % 100 != 0) found = 1 } END { exit !found }' \
    || { show_log; fail "progress lines did not come through srun"; }
grep -q 'orchestrate-slurm-progress' "$T/out.log" && { show_log; fail "a forwarded progress line reached the console"; }

# --- a crash is retried (exit 3 comes back through srun), and OOM halves the batch (exit 75)
rm -f "$T/trace.log"
WORKERS=1 write_plan "$T/plan.json" '' \
    "$(model_json m1 1 1 '["identity"]' '"retries": 1' --crash-once="$T/crash.marker")" \
    "$(model_json m2 2 1 '["identity"]' '"batch_size": 8, "retries": 0' --batch-size '{batch_size}' --oom-above 2)"
salloc_orch --plan "$T/plan.json" --fresh
expect_rc 0
R=$(report_flat)
echo "$R" | grep -q '"exit_codes":\[[1-9][0-9]*,0\]' || fail "the crash was not retried: $R"
echo "$R" | grep -q '"exit_codes":\[75,75,0\],"timed_out":\[false,false,false\],"batch_sizes":\[8,4,2\]' \
    || fail "OOM did not halve the batch: $R"
echo "$R" | grep -q '"gpu_memory":\[{"not_done":"noGPUinthisstep"}' || fail "a CPU step's memory check: $R"
grep -q 'cvd= ' "$T/trace.log" || fail "a CPU step saw a GPU: $(cat "$T/trace.log")"
wait_no_steps 10

# --- exit 65 (bad input) comes back through srun and fails the run at once, without retries
rm -f "$T/trace.log"
WORKERS=1 write_plan "$T/plan.json" '' "$(model_json m1 1 1 '["identity"]' '"retries": 2' --bad-input)"
salloc_orch --plan "$T/plan.json" --fresh
expect_rc 1
[ "$(trace_count)" = 1 ] || fail "exit 65 was retried: $(cat "$T/trace.log")"
report_flat | grep -q '"exit_codes":\[65\]' || fail "report: $(report_flat)"
last_line | grep -q "fake_worker" || { show_log; fail "the failure line does not quote the worker"; }

# --- a hang is cancelled at its timeout (scancel TERM, then KILL after the grace); no step left
GRACE=1 WORKERS=1 write_plan "$T/plan.json" '' \
    "$(model_json m1 1 1 '["identity"]' '"timeout_s": 2, "retries": 1' --hang --ignore-term)"
salloc_orch --plan "$T/plan.json" --fresh
expect_rc 1
R=$(report_flat)
echo "$R" | grep -q '"timed_out":\[true,true\]' || { show_log; fail "the hang did not time out twice: $R"; }
# The retry ran in a step of its own, started after the first was gone (srun returns only then).
echo "$R" | grep -Eq '"slurm_steps":\["([0-9]+)\.[0-9]+","\1\.[0-9]+"\]' || fail "two steps expected: $R"
[ "$(echo "$R" | grep -Eo '"slurm_steps":\["[0-9.]+","[0-9.]+"\]' | grep -Eo '[0-9]+\.[0-9]+' | sort -u | wc -l)" = 2 ] \
    || fail "the retry reused the step id: $R"
grep -q "scancel --signal=TERM [0-9]*\.[0-9]*" "$T/work/logs/m1.identity.s0of1.log" || fail "no scancel TERM in the log"
grep -q "scancel --signal=KILL [0-9]*\.[0-9]*" "$T/work/logs/m1.identity.s0of1.log" || fail "no scancel KILL in the log"
wait_no_steps 10
no_leftovers

# --- scancel that does nothing (a controller that does not answer): after the grace orchestrate
# kills srun itself, and Slurm ends the step whose srun is gone
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 0\n' >"$T/bin/scancel"
chmod +x "$T/bin/scancel"
GRACE=1 WORKERS=1 write_plan "$T/plan.json" '' \
    "$(model_json m1 1 1 '["identity"]' '"timeout_s": 2, "retries": 0' --hang --ignore-term)"
PATH="$T/bin:$PATH" salloc_orch --plan "$T/plan.json" --fresh
expect_rc 1
grep -q "after scancel --signal=KILL: SIGKILL to srun's process group" "$T/work/logs/m1.identity.s0of1.log" \
    || { cat "$T/work/logs/m1.identity.s0of1.log"; fail "no last-resort SIGKILL of srun"; }
wait_no_steps 30
no_leftovers

# --- Ctrl-C and SIGKILL of orchestrate: start a hanging run, wait for its step, signal it. The
# allocation outlives orchestrate (the shell inside salloc sleeps on), so it is orchestrate's
# stopping, not the end of the job, that must take the step away.
GRACE=1 WORKERS=1 write_plan "$T/plan.json" '' "$(model_json m1 1 1 '["identity"]' '"retries": 0' --hang)"
stop_test() {
    local sig=$1 wait_s=$2 i
    rm -f "$T/orch.pid" "$T/shell.pid"
    timeout 150 salloc -Q -N1 -n2 --job-name=orchtest bash -c \
        'echo $$ >"$1/shell.pid"; "$2" --executor slurm --plan "$1/plan.json" --fresh & echo $! >"$1/orch.pid"; wait $!; exec sleep 100' \
        _ "$T" "$ORCH" >"$T/out.log" 2>&1 &
    local salloc_pid=$!
    for i in $(seq 1 100); do [ -n "$(steps_left)" ] && [ -s "$T/orch.pid" ] && break; sleep 0.2; done
    [ -n "$(steps_left)" ] || { show_log; fail "$sig: no step started"; }
    kill "-$sig" "$(cat "$T/orch.pid")"
    wait_no_steps "$wait_s"
    squeue -h -o '%i %j' | grep -q orchtest || fail "$sig: the allocation ended, so the test proves nothing"
    # orchestrate itself ends once its step is gone (at once after SIGKILL; after writing its
    # summary after SIGINT, which on a loaded machine takes a few seconds, not a fixed 2)
    for i in $(seq 1 150); do kill -0 "$(cat "$T/orch.pid")" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$(cat "$T/orch.pid")" 2>/dev/null && { show_log; fail "$sig: orchestrate still runs 30 s after its step ended"; }
    kill "$(cat "$T/shell.pid")"  # the sleep: salloc then gives the allocation back
    wait "$salloc_pid" || true
    echo "$sig: no step left; $SECONDS s into the test" >&2
    no_leftovers
}
stop_test INT 15
grep -q "interrupted by SIGINT" "$T/out.log" || { show_log; fail "Ctrl-C: no interruption reported"; }
stop_test KILL 70
echo ok
