# big_files: a plan or input that is not a regular file (/dev/zero, a FIFO) or is larger than its
# documented limit (plan 16 MiB, input 4 GiB) is refused at once with an error naming it, instead
# of being read until memory runs out.
. "$ORCH_SOURCE_DIR/tests/helpers/itest_lib.sh"
set -e

# Cap the address space (unless this is an ASan build, which reserves terabytes of shadow), so a
# regression fails here instead of swapping the machine.
cap() {
    if grep -q __asan_init "$ORCH"; then "$@"; else (ulimit -v 1000000; "$@"); fi
}
run_capped() {
    set +e
    cap "$ORCH" "$@" >"$T/out.log" 2>&1
    RC=$?
    set -e
}

run_capped --plan /dev/zero
expect_rc 1
last_line | grep -q "/dev/zero: not a regular file" || { show_log; fail "plan /dev/zero"; }

truncate -s 17M "$T/big.json"
run_capped --plan "$T/big.json"
expect_rc 1
last_line | grep -q "big.json: .*larger than the limit" || { show_log; fail "a 17 MiB plan"; }

INPUT=/dev/zero write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
run_capped --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "/dev/zero: not a regular file" || { show_log; fail "input /dev/zero"; }

truncate -s 5G "$T/huge.csv"   # sparse: no disk used
INPUT=$T/huge.csv write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]')"
run_capped --plan "$T/plan.json"
expect_rc 1
last_line | grep -q "huge.csv: .*larger than the limit" || { show_log; fail "a 5 GiB input"; }
[ "$(trace_count)" = 0 ] || fail "a worker ran"
echo ok
