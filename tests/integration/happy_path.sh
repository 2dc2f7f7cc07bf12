# happy_path: 2 command models x 2 TTA variants on 2 CPU slots over the LMSYS sample. The
# submission must equal the weighted mean computed independently (fake_worker on the whole
# input + awk), every job must run once, and report.json must say so.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity", "swap_ab"]' '"batch_size": 4' --batch-size '{batch_size}')" \
    "$(model_json m2 5 3 '["identity", "swap_ab"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
no_leftovers
last_line | grep -q "orchestrate: wrote $T/sub.csv (200 rows)" || { show_log; fail "no success line last"; }

expected_ensemble mean "$T/expected.csv" 1:1:identity,swap_ab 5:3:identity,swap_ab
compare_probs "$T/sub.csv" "$T/expected.csv"

# 2 models x 2 variants x 2 shards, each started once, with the batch size placeholder filled.
[ "$(trace_count)" = 8 ] || fail "expected 8 worker starts, got $(trace_count)"
[ "$(grep -c '^start m1 .* batch=4 ' "$T/trace.log")" = 4 ] || fail "m1 did not get batch size 4"
grep -q '^start m2 1/2 swap_ab ' "$T/trace.log" || fail "ORCHESTRATE_SHARD/VARIANT not seen by the worker"

R=$(report_flat)
echo "$R" | grep -q '"status":"ok"' || fail "report status is not ok"
echo "$R" | grep -q '"jobs":8,"jobs_reused":0,"attempts":8,"workers_spawned":8' || fail "report totals wrong: $R"
echo "$R" | grep -q '"overhead_s":' || fail "report has no overhead"
for f in "$T"/work/logs/*.log; do grep -q "output accepted" "$f" || fail "$f: no acceptance line"; done
grep -q '^\[m1.identity.s0of2\] fake_worker: wrote' "$T/out.log" || fail "worker output not echoed with its job prefix"
echo "ok"
