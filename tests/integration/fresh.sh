# fresh: --fresh discards outputs, logs and resume records, so every job runs again; files in
# work_dir that orchestrate did not make are kept.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = 2 ] || fail "first run: $(trace_count) starts"
echo keep >"$T/work/notes.txt"
run_orch --plan "$T/plan.json" --fresh
expect_rc 0
[ "$(trace_count)" = 4 ] || fail "--fresh did not rerun the jobs ($(trace_count) starts)"
grep -q "discarded earlier outputs" "$T/out.log" || { show_log; fail "no --fresh note"; }
[ -f "$T/work/notes.txt" ] || fail "--fresh removed a file it does not own"
report_flat | grep -q '"jobs_reused":0' || fail "report shows reuse after --fresh"
expected_ensemble mean "$T/expected.csv" 1:1:identity
compare_probs "$T/sub.csv" "$T/expected.csv"
# --work-dir moves everything; the old work_dir is not used.
run_orch --plan "$T/plan.json" --work-dir "$T/other"
expect_rc 0
[ -f "$T/other/report.json" ] || fail "--work-dir ignored"
[ "$(trace_count)" = 6 ] || fail "a new work_dir must not reuse the old one's outputs"
no_leftovers
echo ok
