# nvml_fake: GPU memory checks with ORCHESTRATE_FAKE_NVML standing in for the driver (each line
# is one reading, MiB per GPU; "pids=" lists the holders). A stage after which memory does not
# come back fails the run (on_leak fail), naming the GPU, the numbers and the holders; "warn"
# goes on; memory that comes back within wait_s passes. Also: "auto" slots from the device
# count, and a GPU index that does not exist.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

sleep 60 &
HOLDER=$!
trap 'kill $HOLDER 2>/dev/null; cleanup' EXIT
export ORCHESTRATE_FAKE_NVML="$T/nvml.txt"
gpu_plan() {
    cat >"$T/plan.json" <<JSON
{
  "input": "$SAMPLE", "output": "$T/sub.csv", "work_dir": "$T/work", "gpus": [0],
  "memory": {"tolerance_mib": 64, "wait_s": 0.5, "on_leak": "$1"},
  "models": [$(model_json m1 1 1 '["identity"]'), $(model_json m2 2 1 '["identity"]')]
}
JSON
}

# 1. A leak: baseline 1000 MiB, then 1500 for ever.
printf '1000\n1500 pids=%s\n' "$HOLDER" >"$T/nvml.txt"
gpu_plan fail
run_orch --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "GPU memory not released after stage m1: GPU 0 holds 1500 MiB, 500 MiB over its baseline of 1000 MiB (tolerance 64) after waiting 0\.[5-9] s; held by: $HOLDER (sleep)" \
    || { show_log; fail "leak message"; }
[ "$(grep -c '^start m2' "$T/trace.log")" = 0 ] || fail "the next stage ran after a leak"
grep -q "cvd=0$" "$T/trace.log" || fail "the worker did not get CUDA_VISIBLE_DEVICES=0"
report_flat | grep -Eq '"memory":\[\{"gpu":0,"before_mib":1000(\.0)?,"after_mib":1500(\.0)?,"waited_s":[0-9.]+,"leaked":true,"holders":\['"$HOLDER"'\],"killed":0\}\]' \
    || fail "report memory: $(report_flat)"
[ ! -e "$T/sub.csv" ] || fail "a submission after a leak"

# 2. on_leak kill: the holder is not ours, so it is left alone and the run still fails.
gpu_plan kill
run_orch --plan "$T/plan.json"
expect_rc 1
kill -0 "$HOLDER" || fail "orchestrate killed a process it did not start"

# 3. on_leak warn: a warning per stage, and the run completes.
gpu_plan warn
run_orch --plan "$T/plan.json" --fresh
expect_rc 0
[ "$(grep -c 'warning: after stage m.: GPU 0 holds 1500 MiB' "$T/out.log")" = 2 ] || { show_log; fail "no warnings"; }

# 4. Memory that comes back within wait_s: no warning, no failure.
printf '1000\n1400\n1030\n' >"$T/nvml.txt"
gpu_plan fail
run_orch --plan "$T/plan.json" --fresh
expect_rc 0
grep -q "GPU 0: 1000 MiB in use before the run" "$T/out.log" || { show_log; fail "no baseline line"; }
report_flat | grep -Eq '"after_mib":1030(\.0)?,' || fail "report: $(report_flat)"

# 5. gpus auto: one slot per GPU the (fake) driver reports; a missing GPU index is an error.
printf '10 20\n' >"$T/nvml.txt"
run_orch --plan "$T/plan.json" --gpus auto --dry-run
expect_rc 0
grep -q 'slot 1: cuda:0, CUDA_VISIBLE_DEVICES="1"' "$T/out.log" || { show_log; fail "auto slots"; }
run_orch --plan "$T/plan.json" --gpus 0,5 --dry-run
expect_rc 1
last_line | grep -q "GPU 5 does not exist (NVML sees 2 GPU(s)" || { show_log; fail "missing GPU message"; }

# 6. Without NVML at all (no fake, no driver here), "auto" falls back to the CPU with a note.
if ! ldconfig -p 2>/dev/null | grep -q libnvidia-ml.so.1; then
    unset ORCHESTRATE_FAKE_NVML
    run_orch --plan "$T/plan.json" --gpus auto --dry-run
    expect_rc 0
    grep -q 'note: gpus is "auto" but NVML is not available: running 1 worker(s) on the CPU' "$T/out.log" \
        || { show_log; fail "no CPU fallback note"; }
fi
no_leftovers
echo ok
