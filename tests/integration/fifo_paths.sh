# fifo_paths: a FIFO where orchestrate expects a file never blocks it (open() on a FIFO waits for
# the other end, and a blocked loop cannot even handle SIGTERM):
#   1. a worker that leaves a FIFO at its output path and exits 0: the run fails at once (a
#      contract error, not retried), naming the path and what it is;
#   2. a FIFO at a job's log path: the job runs without its log, with a warning naming the path;
#   3. a FIFO as the plan's input, or as the plan itself: refused at once, naming the path.
# Every orchestrate run here is bounded by `timeout`, so a hang fails the test instead of
# stalling the suite.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

run_bounded() {
    set +e
    timeout -s KILL 30 "$ORCH" "$@" >"$T/out.log" 2>&1
    RC=$?
    set -e
    [ "$RC" != 137 ] || { show_log; fail "orchestrate blocked (killed after 30 s)"; }
}

WORKERS=1 write_plan "$T/plan.json" "" \
    "{\"name\": \"m1\", \"command\": [\"sh\", \"-c\", \"mkfifo \\\"\$1\\\"\", \"sh\", \"{output}\"], \"tta\": [\"identity\"], \"retries\": 2}"
run_bounded --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "$T/work/outputs/m1/m1.identity.s0of1.csv: not a regular file (a FIFO)" \
    || { show_log; fail "wrong failure line for a FIFO output"; }
[ "$(grep -c '=== m1.identity.s0of1 attempt' "$T/work/logs/m1.identity.s0of1.log")" = 1 ] \
    || fail "a FIFO output was retried"
no_leftovers

# A FIFO at the log path of a job that must run (its model changed since the first run).
WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
run_bounded --plan "$T/plan.json"
expect_rc 0
rm -f "$T/work/logs/m1.identity.s0of1.log"
mkfifo "$T/work/logs/m1.identity.s0of1.log"
WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 2 1 '["identity"]')"
run_bounded --plan "$T/plan.json"
expect_rc 0
grep -q "warning: cannot open log $T/work/logs/m1.identity.s0of1.log: not a regular file (a FIFO)" "$T/out.log" \
    || { show_log; fail "no warning for a FIFO log"; }
[ -p "$T/work/logs/m1.identity.s0of1.log" ] || fail "the FIFO the user made was replaced"

# 3. A FIFO as the input (nobody writes to it): refused before anything runs, no open() wait.
mkfifo "$T/input.fifo"
INPUT="$T/input.fifo" WORKERS=1 write_plan "$T/plan2.json" "" "$(model_json m1 2 1 '["identity"]')"
run_bounded --plan "$T/plan2.json"
expect_rc 1
last_line | grep -q "$T/input.fifo: not a regular file (a FIFO)" || { show_log; fail "wrong failure line for a FIFO input"; }
mkfifo "$T/plan.fifo"
run_bounded --plan "$T/plan.fifo"
expect_rc 1
last_line | grep -q "$T/plan.fifo: not a regular file (a FIFO)" || { show_log; fail "wrong failure line for a FIFO plan"; }
no_leftovers
echo ok
