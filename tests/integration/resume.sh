# resume: a second run reuses every validated output (no worker starts); changing one model's
# command reruns only that model; the submission is the same computation each time.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]')" "$(model_json m2 2 1 '["identity"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 6 ] || fail "first run: $(trace_count) starts"

run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 6 ] || fail "second run started workers: $(cat "$T/trace.log")"
report_flat | grep -q '"jobs":6,"jobs_reused":6,"attempts":0,"workers_spawned":0' || fail "report: $(report_flat)"
expected_ensemble mean "$T/expected.csv" 1:1:identity,swap_ab 2:1:identity
compare_probs "$T/sub.csv" "$T/expected.csv"

# m2 gets another seed: only its two jobs run again.
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]')" "$(model_json m2 9 1 '["identity"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 8 ] || fail "expected 2 more starts, got $(trace_count) in all"
[ "$(tail -n 2 "$T/trace.log" | grep -c '^start m2 ')" = 2 ] || fail "the new starts are not m2's: $(cat "$T/trace.log")"
expected_ensemble mean "$T/expected2.csv" 1:1:identity,swap_ab 9:1:identity
compare_probs "$T/sub.csv" "$T/expected2.csv"
no_leftovers
echo ok
