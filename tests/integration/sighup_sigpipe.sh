# sighup_sigpipe: SIGHUP (a closed terminal, a killed notebook kernel) stops the run like
# SIGTERM: workers stopped, report.json written, exit 129, the reason last. A closed stdout
# (`orchestrate | head -n 1`) does not kill orchestrate: the run completes and exits 0.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '' --hang)"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
wait_until started 2 || fail "workers did not start"
kill -s HUP "$pid"
wait_rc "$pid"
expect_rc 129
no_leftovers
last_line | grep -q "^orchestrate: failed: interrupted by SIGHUP" || { show_log; fail "SIGHUP: wrong last line"; }
grep -q "SIGHUP received: stopping workers" "$T/out.log" || { show_log; fail "no stopping note"; }
report_flat | grep -q '"status":"interrupted"' || fail "report status: $(report_flat)"

# stdout closed early: SIGPIPE must not kill orchestrate, and the run must still succeed.
write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '' --slow 20)"
set +e
"$ORCH" --plan "$T/plan.json" --fresh 2>"$T/err.log" | head -n 1 >/dev/null
RC=${PIPESTATUS[0]}
set -e
[ "$RC" = 0 ] || { cat "$T/err.log" >&2; fail "orchestrate | head -n 1: exit status $RC, expected 0"; }
[ -s "$T/sub.csv" ] || fail "no submission after a run whose stdout was closed"
no_leftovers
echo ok
