# swap_ab: a model run only with the swap_ab variant must come back flipped: the worker sees
# response_a and response_b exchanged, and orchestrate exchanges the first two label columns
# back. The fake model is not symmetric, so the identity result differs (checked, so that the
# comparison could fail).
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 4 1 '["swap_ab"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
no_leftovers
expected_ensemble mean "$T/expected.csv" 4:1:swap_ab
compare_probs "$T/sub.csv" "$T/expected.csv"
expected_ensemble mean "$T/identity.csv" 4:1:identity
if (compare_probs "$T/sub.csv" "$T/identity.csv") 2>/dev/null; then
    fail "swap_ab gave the identity result: the test cannot tell a missing swap"
fi
# The shards the worker saw have the columns exchanged: the first row's response_a there is
# the input's response_b.
grep -q '^start m1 0/2 swap_ab' "$T/trace.log" || fail "ORCHESTRATE_VARIANT not swap_ab"
echo ok
