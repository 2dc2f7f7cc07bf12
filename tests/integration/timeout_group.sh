# timeout_group: a worker that ignores SIGTERM and has a hanging grandchild is stopped at
# timeout_s by SIGTERM then SIGKILL to its whole process group: the grandchild dies too.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

WORKERS=1 write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]' '"timeout_s": 0.5, "retries": 1' --ignore-term --grandchild-hang "$T/gc.pid")"
start=$(date +%s)
run_orch --plan "$T/plan.json"
elapsed=$(( $(date +%s) - start ))
expect_rc 1
[ "$elapsed" -le 8 ] || fail "took ${elapsed}s"
no_leftovers
gc=$(cat "$T/gc.pid")
[ -n "$gc" ] || fail "the grandchild was not started"
if [ -d "/proc/$gc" ] && ! grep -q '^State:.*Z' "/proc/$gc/status" 2>/dev/null; then
    fail "grandchild $gc survived"
fi
R=$(report_flat)
echo "$R" | grep -q '"attempts":2,"exit_codes":\[-9,-9\],"timed_out":\[true,true\]' || fail "report: $R"
grep -q "SIGTERM to process group" "$T"/work/logs/m1.identity.s0of1.log || fail "no SIGTERM in the log"
grep -q "SIGKILL to process group" "$T"/work/logs/m1.identity.s0of1.log || fail "no SIGKILL in the log"
last_line | grep -q "killed by SIGKILL (timeout)" || { show_log; fail "wrong failure line"; }
[ ! -e "$T/sub.csv" ] || fail "a failed run wrote a submission"
echo ok
