# summary_truth: the end-of-run summary says what really happened. After Ctrl-C or a failed job,
# the stage's line says "interrupted" / "failed" (not "finished"), the table shows the rows of
# finished jobs out of the stage's rows and no rows/s for that stage, and the summary ends with
# what a rerun will reuse (counted from the resume records).
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

# Stage 1 (m1) completes: 2 jobs. Stage 2 (m2) hangs until SIGINT: 2 jobs, none finished.
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')" "$(model_json m2 2 1 '["identity"]' '' --hang)"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
wait_until started 4 || { show_log; fail "stage 2 did not start"; }
kill -s INT "$pid"
wait_rc "$pid"
expect_rc 130
grep -q '^\[m1\] stage finished: 200/200 rows' "$T/out.log" || { show_log; fail "stage 1 line"; }
grep -q '^\[m2\] stage interrupted' "$T/out.log" || { show_log; fail "no 'stage interrupted' line"; }
! grep -q '^\[m2\] stage finished' "$T/out.log" || { show_log; fail "an interrupted stage 'finished'"; }
# Table rows: name jobs reused attempts rows wall rows/s [flag]
awk '$1 == "m1" { ok = ($5 == "200" && $7 ~ /^[0-9.]+$/) } END { exit !ok }' "$T/out.log" || { show_log; fail "m1 table row"; }
awk '$1 == "m2" { ok = ($5 == "0/200" && $7 == "-") } END { exit !ok }' "$T/out.log" || { show_log; fail "m2 table row"; }
grep -q '^a rerun will reuse 2 of 4 job(s)' "$T/out.log" || { show_log; fail "no rerun line"; }
[ "$(ls "$T/work/done"/*.csv | wc -l)" = 2 ] || fail "the rerun line does not match the records in work_dir/done"
no_leftovers

# A failed stage: no rows/s, "failed", and the rerun line.
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')" "$(model_json m3 3 1 '["identity"]' '"retries": 0' --exit 3)"
run_orch --plan "$T/plan.json"
expect_rc 1
grep -q '^\[m3\] stage failed' "$T/out.log" || { show_log; fail "no 'stage failed' line"; }
awk '$1 == "m3" { ok = ($5 == "0/200" && $7 == "-" && /FAILED/) } END { exit !ok }' "$T/out.log" || { show_log; fail "m3 table row"; }
grep -q '^a rerun will reuse 2 of 4 job(s)' "$T/out.log" || { show_log; fail "no rerun line after a failure"; }
no_leftovers
echo ok
