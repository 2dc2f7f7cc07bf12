# dry_run: --dry-run lists slots, jobs (variant, shard, rows, cost, reuse) and the schedule and
# starts no worker; after a real run it shows the jobs as reused.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]')" "$(model_json m2 2 2 '["identity"]')"
run_orch --plan "$T/plan.json" --dry-run
expect_rc 0
[ "$(trace_count)" = 0 ] || fail "a worker ran during --dry-run"
[ ! -e "$T/sub.csv" ] || fail "--dry-run wrote a submission"
grep -q 'slot 1: cpu, CUDA_VISIBLE_DEVICES=""' "$T/out.log" || { show_log; fail "slots not listed"; }
grep -q "stage 2/2: model m2 (command, weight 2), 2 job(s)" "$T/out.log" || { show_log; fail "stage not listed"; }
grep -Eq "m1.swap_ab.s1of2 +swap_ab +1/2 +[0-9]+ +[0-9]+ +run" "$T/out.log" || { show_log; fail "job line"; }
grep -q "slot 0 (cpu): m1\." "$T/out.log" || { show_log; fail "schedule not shown"; }
# The rows of both shards add up to the input's.
rows=$(grep -E "^  m2\.identity\.s[01]of2 " "$T/out.log" | awk '{ s += $4 } END { print s }')
[ "$rows" = 200 ] || fail "shard rows add up to $rows"
no_leftovers

run_orch --plan "$T/plan.json"
expect_rc 0
run_orch --plan "$T/plan.json" --dry-run
expect_rc 0
[ "$(grep -c 'reuse (validated output recorded)' "$T/out.log")" = 6 ] || { show_log; fail "reuse not shown"; }
grep -q "nothing to run, every output is reused" "$T/out.log" || fail "schedule with nothing to run"
echo ok
