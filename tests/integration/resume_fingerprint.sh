# resume_fingerprint: resume must not answer from stale work.
#  - a shard file edited on disk (same size) is rewritten before a job reads it;
#  - editing a file that a command names (the worker's own script) reruns its jobs, and so does
#    editing a file listed in the model's `depends_on`; the run output says which jobs were
#    reused and why each reran.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

# --- a shard edited without a size change
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
for s in "$T"/work/shards/*.csv; do sed -i '2s/^./x/' "$s"; done   # first id: 577120229 -> x77120229
write_plan "$T/plan.json" "" "$(model_json m1 2 1 '["identity"]')"   # another seed: the jobs rerun
run_orch --plan "$T/plan.json"
expect_rc 0
expected_ensemble mean "$T/expected.csv" 2:1:identity
compare_probs "$T/sub.csv" "$T/expected.csv"

# --- the worker's own script, and a file it reads that only depends_on names
cat >"$T/wrap.sh" <<W
exec "$FAKE" --input "\$1" --output "\$2" --trace="$T/trace.log" --seed \$(cat "$T/seed.txt")
W
echo 3 >"$T/seed.txt"
model='{"name": "w", "command": ["/bin/sh", "wrap.sh", "{input}", "{output}"], "depends_on": ["seed.txt"]}'
write_plan "$T/plan.json" "" "$model"
run_orch --plan "$T/plan.json"
expect_rc 0
n=$(trace_count)
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = "$n" ] || fail "an unchanged plan reran jobs"
grep -q "^reused: w.identity.s0of2 (resume key matches)" "$T/out.log" || { show_log; fail "no 'reused:' line"; }

echo "# edited" >>"$T/wrap.sh"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = $((n + 2)) ] || fail "editing the worker script did not rerun its jobs"
grep -q "^rerun: w.identity.s0of2: $T/wrap.sh changed" "$T/out.log" || { show_log; fail "no 'rerun:' line naming wrap.sh"; }

echo 4 >"$T/seed.txt"
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(trace_count)" = $((n + 4)) ] || fail "editing a depends_on file did not rerun the jobs"
grep -q "^rerun: w.identity.s1of2: $T/seed.txt changed" "$T/out.log" || { show_log; fail "no 'rerun:' line naming seed.txt"; }
expected_ensemble mean "$T/expected4.csv" 4:1:identity
compare_probs "$T/sub.csv" "$T/expected4.csv"

# depends_on must name existing files
write_plan "$T/plan.json" "" '{"name": "w", "command": ["/bin/sh", "wrap.sh"], "depends_on": ["nope.txt"]}'
run_orch --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "depends_on\[0\]: .*nope.txt' does not exist" || { show_log; fail "missing depends_on file not refused"; }
no_leftovers
echo ok
