# bad_input: exit 65 (bad input) is not retried: the run fails at once with the worker's own
# message, even with retries left, and other workers are stopped.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '"retries": 5' --bad-input)"
start=$(date +%s)
run_orch --plan "$T/plan.json"
expect_rc 1
[ $(( $(date +%s) - start )) -le 5 ] || fail "too slow"
[ "$(trace_count)" -le 2 ] || fail "exit 65 was retried: $(trace_count) starts"
last_line | grep -q "^orchestrate: failed: job m1\..*: worker reported bad input (exit 65): fake_worker: .*: line 2: column 'prompt' is not a JSON list" \
    || { show_log; fail "wrong failure line"; }
[ ! -e "$T/sub.csv" ] || fail "a submission was written"
report_flat | grep -q '"status":"failed"' || fail "report status"
no_leftovers

# Exit 69 (a resource missing: no CUDA driver, device or cuBLAS for --device cuda) is not retried.
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 5' --exit 69)"
rm -f "$T/trace.log"
run_orch --plan "$T/plan.json"
expect_rc 1
[ "$(trace_count)" -le 2 ] || fail "exit 69 was retried: $(trace_count) starts"
last_line | grep -q "^orchestrate: failed: job m1\..*: worker found a resource missing (exit 69): fake_worker: exiting with 69 as asked" \
    || { show_log; fail "wrong failure line for exit 69"; }

# A worker command that does not exist: preflight names it before any stage starts; without
# preflight it is a configuration error (127) at spawn time, not retried either.
write_plan "$T/plan.json" "" '{"name": "m1", "command": ["no-such-worker-xyz", "--x"], "retries": 5}'
run_orch --plan "$T/plan.json"
expect_rc 1
grep -q "preflight: $T/plan.json: models\[0\].command\[0\]: 'no-such-worker-xyz' was not found on PATH" "$T/out.log" \
    || { show_log; fail "preflight did not name the missing command"; }
run_orch --plan "$T/plan.json" --no-preflight
expect_rc 1
last_line | grep -q "could not be started (exit 127): orchestrate: cannot run worker command 'no-such-worker-xyz'" \
    || { show_log; fail "wrong failure line for a missing command"; }
echo ok
