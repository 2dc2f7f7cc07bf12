# retries: a worker that crashes once (exit 1) is retried and the run succeeds; the report
# records both attempts' exit codes, and the retry is announced on the console.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

# One marker for the whole model: exactly one of its jobs crashes, on its first attempt.
write_plan "$T/plan.json" "" "$(model_json m1 2 1 '["identity"]' '"retries": 1' --crash-once "$T/crashed")"
run_orch --plan "$T/plan.json"
expect_rc 0
no_leftovers
[ -f "$T/crashed" ] || fail "the crash did not happen"
expected_ensemble mean "$T/expected.csv" 2:1:identity
compare_probs "$T/sub.csv" "$T/expected.csv"
R=$(report_flat)
echo "$R" | grep -q '"attempts":2,"exit_codes":\[1,0\]' || fail "report does not show exit codes [1,0]: $R"
[ "$(echo "$R" | grep -o '"exit_codes":\[0\]' | wc -l)" = 1 ] || fail "the other job should have run once"
grep -q "attempt 1 failed (exit 1): fake_worker: crashing once, as asked; retrying" "$T/out.log" || { show_log; fail "no retry note"; }

# With retries 0 the same crash fails the run, with the worker's last stderr line last.
rm -f "$T/crashed"
write_plan "$T/plan.json" "" "$(model_json m1 2 1 '["identity"]' '"retries": 0' --crash-once "$T/crashed")"
run_orch --plan "$T/plan.json" --fresh
expect_rc 1
last_line | grep -q "^orchestrate: failed: job m1.identity.s.of2 failed after 1 attempt(s); last: exit 1: fake_worker: crashing once" \
    || { show_log; fail "wrong failure line"; }
[ ! -e "$T/sub.csv" ] || fail "a failed run wrote a submission"
no_leftovers
echo ok
