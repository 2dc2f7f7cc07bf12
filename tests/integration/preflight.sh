# preflight: before any stage starts, orchestrate checks every worker program (command on PATH
# or as a path with its exec bit; `lm-worker check` for lm-worker stages), the output's
# directory and the work directory, and names the plan key of each problem. Each case asserts
# that no worker ran (the fake worker's trace is empty, no logs), that every problem is listed,
# and that --dry-run makes the same checks. The real lm-worker runs `check` on the fixtures.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

[ -x "$B/lm-worker" ] || { echo "skipped: lm-worker not built"; exit 77; }
M=$FX/models
P=$T/plan.json
FAKE1=$(model_json m0 1 1 '["identity"]')

# nothing_ran: no worker started and nothing of a stage exists in the work directory.
nothing_ran() {
    [ "$(trace_count)" = 0 ] || fail "a worker ran before preflight failed"
    [ ! -e "$T/work/logs" ] && [ ! -e "$T/work/outputs" ] || fail "a stage started: $(ls -R "$T/work")"
    [ ! -e "$T/sub.csv" ] || fail "a submission was written"
}

# expect_problem KEY TEXT: orchestrate failed in preflight with a line for KEY containing TEXT.
expect_problem() {
    expect_rc 1
    grep -F "orchestrate: preflight: $P: $1: " "$T/out.log" | grep -qF -- "$2" \
        || { show_log; fail "no preflight problem at $1 saying: $2"; }
    last_line | grep -q "^orchestrate: failed: preflight found [0-9]* problem(s), listed above; no stage was started" \
        || { show_log; fail "wrong last line"; }
    nothing_ran
}

# 1. An output that cannot be written (/proc takes no files, even for root): found before the
#    first stage, not after the last. The output itself is never created by the check.
sed_plan() { sed -e "s#\"output\": \"$T/sub.csv\"#\"output\": \"$1\"#" "$P" >"$P.tmp" && mv "$P.tmp" "$P"; }
write_plan "$P" "" "$FAKE1"
sed_plan /proc/sub.csv
run_orch --plan "$P"
expect_problem output "'/proc/sub.csv' could not be written: cannot create a file in /proc"
run_orch --plan "$P" --dry-run
expect_problem output "could not be written"
write_plan "$P" "" "$FAKE1"
sed_plan "$T/no-such-dir/sub.csv"
run_orch --plan "$P"
expect_problem output "the directory $T/no-such-dir of '$T/no-such-dir/sub.csv' does not exist"
[ ! -e "$T/no-such-dir" ] || fail "preflight created the output's directory"

# 2. A worker program that is missing, and one without its exec bit (as on /kaggle/input).
printf '#!/bin/sh\nexit 0\n' >"$T/worker.sh"
chmod 644 "$T/worker.sh"
write_plan "$P" "" "$FAKE1" '{"name": "gone", "command": ["./bin/missing-worker", "{input}"]}' \
    '{"name": "noexec", "command": ["./worker.sh"]}' '{"name": "nopath", "command": ["no-such-worker-xyz"]}'
run_orch --plan "$P"
expect_problem "models[1].command[0]" "'$T/bin/missing-worker' does not exist"
expect_problem "models[2].command[0]" "'$T/worker.sh' is not executable; datasets under /kaggle/input lose exec bits: chmod +x it, or copy it to /kaggle/working first"
expect_problem "models[3].command[0]" "'no-such-worker-xyz' was not found on PATH"
last_line | grep -q "preflight found 3 problem(s)" || { show_log; fail "all problems are listed"; }
run_orch --plan "$P" --dry-run
expect_problem "models[2].command[0]" "is not executable"
# The escape hatch: without preflight the first stage runs and the missing program fails there.
run_orch --plan "$P" --no-preflight
expect_rc 1
[ "$(trace_count)" -ge 1 ] || fail "--no-preflight did not run the first stage"
rm -f "$T/trace.log"
rm -rf "$T/work"

# 3. lm-worker: a model directory without tokenizer.json (models[1]: the fake stage before it
#    must not run), then the same with a tokenizer given that does not exist.
mkdir "$T/notok"
cp "$M/tiny-llama/config.json" "$M/tiny-llama/"*.safetensors* "$T/notok/"
write_plan "$P" "" "$FAKE1" "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$T/notok\"}"
run_orch --plan "$P"
expect_problem "models[1].model" "$T/notok/tokenizer.json: No such file or directory: the model directory has no tokenizer.json"
run_orch --plan "$P" --dry-run
expect_problem "models[1].model" "has no tokenizer.json"
grep -qF 'in the plan, set "tokenizer" for this model' "$T/out.log" || { show_log; fail "no hint to set tokenizer"; }
write_plan "$P" "" "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$T/notok\", \"tokenizer\": \"$M/tiny-gemma2/tokenizer.json\"}"
run_orch --plan "$P" --dry-run
expect_rc 0
rm -rf "$T/work"  # a dry run writes the shards (and their directories)

# 4. A template too long for max_length: the plan key is max_length.
write_plan "$P" "" "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$M/tiny-gemma2\", \"template\": \"gemma-chat\", \"max_length\": 16}"
run_orch --plan "$P"
expect_problem "models[0].max_length" "--max-length 16 is too small for template gemma-chat with truncation balanced: its fixed strings and special tokens take 32 ids"

# 5. The checkpoint's labels differ from the plan's: the header check would fail every job.
write_plan "$P" '"labels": ["a", "b", "tie"]' "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$M/tiny-llama\"}"
run_orch --plan "$P"
expect_problem "models[0].model" "labels (config.json id2label) are winner_model_a,winner_model_b,winner_tie but the plan's labels are a,b,tie"

# 6. A work directory that cannot be created, from the plan and from --work-dir.
write_plan "$P" "" "$FAKE1"
run_orch --plan "$P" --work-dir /proc/orch-work
expect_problem "--work-dir" "cannot create '/proc/orch-work'"

# 7. All well: the lm-worker check's summary in a dry run, and a real run that passes preflight.
write_plan "$P" "" "$FAKE1" "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$M/tiny-llama\", \"max_length\": 64}"
run_orch --plan "$P" --dry-run
expect_rc 0
grep -q "preflight: models\[1\] 'lm': lm-worker check ok: llama, 3 layers, 3 labels; template plain takes [0-9]* of max_length 64 ids; device cpu" "$T/out.log" \
    || { show_log; fail "no check summary"; }
ls -A "$T" | grep -q "orchestrate-preflight" && fail "a preflight temp file was left behind"
write_plan "$P" "" "$FAKE1"
run_orch --plan "$P"
expect_rc 0
ls -A "$T" "$T/work" | grep -q "orchestrate-preflight" && fail "a preflight temp file was left behind"
no_leftovers
echo ok
