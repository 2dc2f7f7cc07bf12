# doctor: `orchestrate doctor` prints the driver and GPUs (here from ORCHESTRATE_FAKE_NVML, and
# the no-driver case when this machine has no libnvidia-ml), the lm-worker it would run and the
# device `lm-worker check --device auto` opens, and whether each stage of a plan can run: exit 0
# when every stage can, 1 when one cannot (naming the plan key), 64 for a bad option. It starts
# no worker.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

[ -x "$B/lm-worker" ] || { echo "skipped: lm-worker not built"; exit 77; }
M=$FX/models
P=$T/plan.json
cd "$T"  # no ./plan.json here yet

# 1. No driver (only where this machine really has none): said plainly; no plan: exit 0.
if ! ldconfig -p 2>/dev/null | grep -q libnvidia-ml.so.1; then
    run_orch doctor
    expect_rc 0
    grep -q "^NVIDIA driver: none usable: .*no NVIDIA driver (libnvidia-ml.so.1 not found)" "$T/out.log" \
        || { show_log; fail "no-driver line"; }
    grep -q "^GPUs: none$" "$T/out.log" || { show_log; fail "GPUs line without a driver"; }
    grep -q "^plan: none (no ./plan.json" "$T/out.log" || { show_log; fail "no-plan line"; }
fi

# 2. Two fake GPUs: driver, the CUDA version it supports, memory total and free (total - used).
printf '# doctor test\n1000 2500 total=81559 driver=550.54.15 cuda=12040\n' >"$T/nvml.txt"
export ORCHESTRATE_FAKE_NVML="$T/nvml.txt"
run_orch doctor
expect_rc 0
grep -q "^NVIDIA driver: 550.54.15, supports CUDA up to 12.4 " "$T/out.log" || { show_log; fail "driver line"; }
grep -q "^GPUs: 2$" "$T/out.log" || { show_log; fail "GPU count"; }
grep -q "^  GPU 0: .*, 81559 MiB total, $((81559 - 1000)) MiB free$" "$T/out.log" || { show_log; fail "GPU 0 line"; }
grep -q "^  GPU 1: .*, 81559 MiB total, $((81559 - 2500)) MiB free$" "$T/out.log" || { show_log; fail "GPU 1 line"; }
grep -q "^lm-worker: $B/lm-worker (lm-worker [0-9.]*)" "$T/out.log" || { show_log; fail "lm-worker line"; }
grep -Eq "^  lm-worker check --device auto: exit 0, device (cpu|cuda)$" "$T/out.log" || { show_log; fail "device line"; }
# What the CUDA backend is built for, and where it was found or why it cannot be used.
grep -Eq "^  CUDA backend: (none: this lm-worker was built without CUDA|built for CUDA [0-9]+\.[0-9]+; (not usable: .+|driver supports CUDA [0-9.]+; plugin .+; cuBLAS .+))$" \
    "$T/out.log" || { show_log; fail "CUDA backend line"; }

# 3. A plan (./plan.json by default) whose stages can all run on the CPU: exit 0, no worker ran.
write_plan "$P" "" "$(model_json m0 1 1 '["identity"]')" \
    "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$M/tiny-llama\", \"max_length\": 64}"
run_orch doctor
expect_rc 0
grep -q "^  stage 1/2 'm0' (command): can run: yes$" "$T/out.log" || { show_log; fail "stage 1 line"; }
grep -q "^  stage 2/2 'lm' (lm-worker): can run: yes$" "$T/out.log" || { show_log; fail "stage 2 line"; }
grep -q "^doctor: every stage can run$" "$T/out.log" || { show_log; fail "verdict"; }
[ "$(trace_count)" = 0 ] || fail "doctor ran a worker"
[ ! -e "$T/work" ] || fail "doctor created the work directory"

# 4. A stage that cannot run: its line says no, the problem names the plan key, exit 1.
mkdir "$T/notok"
cp "$M/tiny-llama/config.json" "$M/tiny-llama/"*.safetensors* "$T/notok/"
write_plan "$P" "" "$(model_json m0 1 1 '["identity"]')" "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$T/notok\"}"
run_orch doctor --plan "$P"
expect_rc 1
grep -q "^  stage 1/2 'm0' (command): can run: yes$" "$T/out.log" || { show_log; fail "stage 1 line"; }
grep -q "^  stage 2/2 'lm' (lm-worker): can run: no" "$T/out.log" || { show_log; fail "stage 2 line"; }
grep -q "preflight: $P: models\[1\].model: .*has no tokenizer.json" "$T/out.log" || { show_log; fail "problem line"; }

# 5. GPU slots (gpus auto, two fake GPUs) with an lm-worker that cannot open CUDA: the run would
#    pass --device cuda, so the stage cannot run and the key is gpus.
if ! "$B/lm-worker" check --device cuda >/dev/null 2>&1; then
    sed -e 's/"gpus": "cpu"/"gpus": "auto"/' -e "s#$T/notok#$M/tiny-llama#" "$P" >"$P.tmp" && mv "$P.tmp" "$P"
    run_orch doctor --plan "$P"
    expect_rc 1
    grep -q "^  slots: 2 on GPUs" "$T/out.log" || { show_log; fail "GPU slots"; }
    grep -q "preflight: $P: gpus: models\[1\] 'lm': --device cuda" "$T/out.log" || { show_log; fail "device problem"; }
fi

run_orch doctor --bogus
expect_rc 64
echo ok
