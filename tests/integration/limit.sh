# limit: --limit N runs the plan on the input's first N rows, in its own part of the work_dir
# (work_dir/limit-N) and writes the submission beside the real one (<output>.limit-N.csv), so a
# smoke run neither deletes a real submission nor lends its outputs to a full run.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 4 ] || fail "full run: $(trace_count) starts"
cp "$T/sub.csv" "$T/full.csv"

run_orch --plan "$T/plan.json" --limit 5
expect_rc 0
[ "$(trace_count)" = 8 ] || fail "--limit reused the full run's outputs or ran too few jobs ($(trace_count))"
cmp -s "$T/sub.csv" "$T/full.csv" || fail "--limit touched the real submission"
[ -f "$T/sub.limit-5.csv" ] || { show_log; fail "no $T/sub.limit-5.csv"; }
expected_ensemble mean "$T/expected.csv" 1:1:identity,swap_ab
head -n 6 "$T/expected.csv" >"$T/expected5.csv"
compare_probs "$T/sub.limit-5.csv" "$T/expected5.csv"
[ -f "$T/work/limit-5/report.json" ] || fail "no report in work_dir/limit-5"
grep -q "limit-5.csv (5 rows)" "$T/out.log" || { show_log; fail "no note of the limited submission"; }

# Again: reused; and a full run after it reuses the full outputs, not the limited ones.
run_orch --plan "$T/plan.json" --limit 5
expect_rc 0
[ "$(trace_count)" = 8 ] || fail "a second --limit run did not reuse"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 8 ] || fail "the full run reran"
compare_probs "$T/sub.csv" "$T/expected.csv"

# --fresh --limit clears only the limited run's folder: the full run's records stay.
run_orch --plan "$T/plan.json" --limit 5 --fresh
expect_rc 0
[ "$(trace_count)" = 12 ] || fail "--fresh --limit did not rerun the limited jobs ($(trace_count))"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 12 ] || fail "--fresh --limit discarded the full run's records"

# --limit larger than the input: every row; 0 or junk is a usage error.
run_orch --plan "$T/plan.json" --limit 100000
expect_rc 0
[ "$(wc -l <"$T/sub.limit-100000.csv")" = "$(wc -l <"$T/expected.csv")" ] || fail "--limit above the row count"
run_orch --plan "$T/plan.json" --limit 0
expect_rc 64
run_orch --plan "$T/plan.json" --limit 5x
expect_rc 64
no_leftovers
echo ok
