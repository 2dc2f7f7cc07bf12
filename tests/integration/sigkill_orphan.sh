# sigkill_orphan: SIGKILL cannot be caught, so orchestrate cannot stop its workers; the PDEATHSIG
# shim makes the kernel kill each worker when orchestrate dies. No worker may survive it.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '' --hang --ignore-term)"
"$ORCH" --plan "$T/plan.json" >"$T/out.log" 2>&1 &
pid=$!
for i in $(seq 1 100); do
    [ "$(trace_count)" -ge 2 ] && break
    sleep 0.1
done
[ "$(trace_count)" -ge 2 ] || fail "workers did not start"
pgrep -f "$T" >/dev/null || fail "no worker is running before the kill"
# The workers run in their own sessions: only the death signal can reach them.
[ "$(ps -o sid= -p "$(pgrep -f "$T/work/shards" | head -n 1)" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ] \
    || fail "the worker shares our session"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
no_leftovers
[ ! -e "$T/sub.csv" ] || fail "a submission exists"
echo ok
