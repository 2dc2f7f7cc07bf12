# worker_descendants: nothing a worker started outlives it. The shim (orchestrate --shim) is a
# child subreaper that kills every descendant when the worker ends, or when orchestrate dies:
#   1. a worker that exits 0 leaving a child in its group that holds its pipes: the run
#      succeeds, the child is gone, and orchestrate did not wait for the pipes (EOF wait);
#   2. the same with a setsid() daemon (another session and group): also gone;
#   3. orchestrate SIGKILLed while a bash wrapper runs a child, and while a worker has a
#      grandchild: no process of the run survives (PDEATHSIG alone reaches only the shim's
#      direct child);
#   4. the shim itself SIGKILLed (the OOM killer's choice, say): the worker dies of its death
#      signal, and orchestrate's SIGKILL to the group after the exit (attempt.c) ends the
#      grandchild that holds the pipes.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

# gone PIDFILE WHAT: the process whose pid is in PIDFILE no longer exists (or is a zombie).
gone() {
    local pid
    pid=$(cat "$1")
    [ -n "$pid" ] || fail "$2: no pid recorded"
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        ps -o pid,ppid,pgid,sid,args -p "$pid" >&2
        fail "$2 (pid $pid) survived the run"
    fi
}

for flag in --linger-child --daemon; do
    rm -rf "$T/work" "$T/left.pid"
    WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 0' "$flag" "$T/left.pid")"
    run_orch --plan "$T/plan.json"
    expect_rc 0
    gone "$T/left.pid" "$flag child"
    no_leftovers
    ! grep -q "pipes still open" "$T/work/logs/m1.identity.s0of1.log" \
        || fail "$flag: orchestrate waited for pipes held by a leftover child"
done

# A bash wrapper whose child does the work (here: sleeps), as `bash run.sh` -> python would.
cp "$(command -v sleep)" "$T/sleepy"
WORKERS=1 write_plan "$T/plan.json" "" \
    "{\"name\": \"w\", \"command\": [\"bash\", \"-c\", \"$T/sleepy 1000 & wait\", \"{input}\", \"{output}\"], \"tta\": [\"identity\"]}"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
wait_until pgrep -f "$T/sleepy" || fail "the wrapper's child did not start"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
no_leftovers

# A worker with a grandchild, and one with a daemon, when orchestrate is SIGKILLed.
rm -f "$T/trace.log"
write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]' '' --grandchild-hang "$T/gc.pid")" \
    "$(model_json m2 2 1 '["identity"]' '' --daemon "$T/d.pid" --hang)"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
wait_until test -s "$T/gc.pid" || { show_log; fail "the grandchild did not start"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
no_leftovers
gone "$T/gc.pid" "grandchild"

rm -f "$T/gc.pid"
WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 0' --grandchild-hang "$T/gc.pid")"
"$ORCH" --plan "$T/plan.json" --fresh >"$T/out.log" 2>&1 &
pid=$!
wait_until test -s "$T/gc.pid" || { show_log; fail "the grandchild did not start"; }
shim=$(pgrep -f -- "--shim .*$T" | head -n 1)
[ -n "$shim" ] || fail "no shim process"
kill -9 "$shim"
wait_rc "$pid"
expect_rc 1
gone "$T/gc.pid" "grandchild of a killed shim"
no_leftovers
! grep -q "pipes still open" "$T/work/logs/m1.identity.s0of1.log" || fail "orchestrate waited for the grandchild's pipes"
echo ok
