# oom_halving: exit 75 halves the batch size (16 -> 8 -> 4 -> 2) without using up retries
# (retries is 0 here); the report and the log show the sequence.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

WORKERS=1 write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]' '"batch_size": 16, "retries": 0' --batch-size '{batch_size}' --oom-above 2)"
run_orch --plan "$T/plan.json"
expect_rc 0
no_leftovers
R=$(report_flat)
echo "$R" | grep -q '"exit_codes":\[75,75,75,0\],"timed_out":\[false,false,false,false\],"batch_sizes":\[16,8,4,2\]' \
    || fail "report does not show the halving: $R"
[ "$(grep -c 'batch=' "$T/trace.log")" = 4 ] || fail "expected 4 starts"
[ "$(cut -d' ' -f5 "$T/trace.log" | tr '\n' ' ')" = "batch=16 batch=8 batch=4 batch=2 " ] || fail "trace: $(cat "$T/trace.log")"
grep -q "out of memory at batch size 4 (exit 75); retrying with batch size 2" "$T/out.log" || { show_log; fail "no OOM note"; }
LOG="$T/work/logs/m1.identity.s0of1.log"
grep -q "attempt 4, batch_size 2" "$LOG" || fail "log lacks the attempt header"

# "CUDA out of memory" in a command worker's output counts as OOM too; at batch size 1 it is
# an ordinary failure that uses up the retries.
WORKERS=1 write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]' '"batch_size": 2, "retries": 1' --batch-size '{batch_size}' --oom-above 0 --oom-text)"
run_orch --plan "$T/plan.json"
expect_rc 1
R=$(report_flat)
echo "$R" | grep -q '"exit_codes":\[1,1,1\],"timed_out":\[false,false,false\],"batch_sizes":\[2,1,1\]' || fail "report: $R"
last_line | grep -q "CUDA out of memory" || { show_log; fail "the failure line does not quote the worker"; }
no_leftovers
echo ok
