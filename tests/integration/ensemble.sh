# ensemble: the three ensemble methods (mean, geometric, logit_mean) with weights 1 and 3,
# each checked against awk's computation. Reruns reuse the worker outputs (the ensemble and
# the weights are not part of a job's key), so only the first run starts workers.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

for method in mean geometric logit_mean; do
    write_plan "$T/plan.json" "\"ensemble\": {\"method\": \"$method\"}" \
        "$(model_json m1 1 1 '["identity", "swap_ab"]')" \
        "$(model_json m2 7 3 '["identity"]')"
    run_orch --plan "$T/plan.json"
    expect_rc 0
    expected_ensemble "$method" "$T/expected.$method.csv" 1:1:identity,swap_ab 7:3:identity
    compare_probs "$T/sub.csv" "$T/expected.$method.csv"
done
[ "$(trace_count)" = 6 ] || fail "expected 6 worker starts over three runs, got $(trace_count)"
# The methods must disagree, or this test proves nothing about which one ran.
if (compare_probs "$T/expected.mean.csv" "$T/expected.geometric.csv" 1e-4) 2>/dev/null; then
    fail "mean and geometric agree on this data"
fi
no_leftovers
echo ok
