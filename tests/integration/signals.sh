# signals: SIGTERM and SIGINT to orchestrate while workers hang: every worker group gets
# SIGTERM (SIGKILL after kill_grace_s for the one that ignores it), orchestrate exits 143 /
# 130 within seconds, writes no submission, and leaves no process behind.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

# Wait until n workers have started (their trace lines), at most 10 s.
wait_starts() {
    local i
    for i in $(seq 1 100); do
        [ "$(trace_count)" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "workers did not start"
}

for sig in TERM INT; do
    rm -f "$T/trace.log"
    write_plan "$T/plan.json" "" \
        "$(model_json m1 1 1 '["identity", "swap_ab"]' '' --hang --ignore-term --grandchild-hang "$T/gc.$sig")"
    echo previous >"$T/sub.csv"   # a submission from an earlier run must not survive either
    set +e
    "$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
    pid=$!
    set -e
    wait_starts 2
    start=$(date +%s)
    kill -s "$sig" "$pid"
    wait_rc "$pid"
    elapsed=$(( $(date +%s) - start ))
    if [ "$sig" = TERM ]; then expect_rc 143; else expect_rc 130; fi
    [ "$elapsed" -le 5 ] || fail "SIG$sig: took ${elapsed}s to exit"
    no_leftovers
    [ ! -e "$T/sub.csv" ] || fail "SIG$sig: a submission exists after an interrupted run"
    last_line | grep -q "^orchestrate: failed: interrupted by SIG$sig" || { show_log; fail "SIG$sig: wrong last line"; }
    grep -q "SIG$sig received: stopping workers" "$T/out.log" || { show_log; fail "no stopping note"; }
    report_flat | grep -q '"status":"interrupted"' || fail "report status: $(report_flat)"
done
# A second signal does not wait for the grace period (60 s here): SIGKILL at once.
rm -f "$T/trace.log"
GRACE=60 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '' --hang --ignore-term)"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
wait_starts 2
start=$(date +%s)
kill -s INT "$pid"
sleep 0.3
kill -s INT "$pid"
wait_rc "$pid"
expect_rc 130
[ $(( $(date +%s) - start )) -le 5 ] || fail "a second SIGINT did not kill the workers at once"
no_leftovers
echo ok
