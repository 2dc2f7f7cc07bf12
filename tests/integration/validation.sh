# validation: outputs with a wrong id, a NaN, or only half the rows (written straight to the
# output path, exit 0) are rejected; the failure names the file and line; nothing is left at
# the output path and no submission is written.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

check() {
    local flag=$1 want=$2
    rm -rf "$T/work" "$T/sub.csv"
    WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 0' "$flag")"
    run_orch --plan "$T/plan.json"
    expect_rc 1
    last_line | grep -q "^orchestrate: failed: .*output rejected: $T/work/outputs/m1/m1.identity.s0of1.csv: $want" \
        || { show_log; fail "$flag: wrong failure line"; }
    [ ! -e "$T/sub.csv" ] || fail "$flag: a submission was written"
    [ -z "$(ls -A "$T/work/outputs/m1")" ] || fail "$flag: left in outputs: $(ls -A "$T/work/outputs/m1")"
    [ -z "$(ls -A "$T/work/done")" ] || fail "$flag: a rejected output was recorded for resume"
    grep -q "output rejected: .*$want" "$T/work/logs/m1.identity.s0of1.log" || fail "$flag: the log does not name the row"
    no_leftovers
}
check --wrong-id "line 2: id 'wrong-"
check --nan "line 2: column 2 'winner_model_a'"
check --partial-ok "id '.*' is missing"

# A wrong header is a contract error that every attempt repeats: no retry (retries is 2 here),
# and an empty first field (pandas' index column) gets a hint.
rm -rf "$T/work" "$T/trace.log"
WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 2' --index-column)"
run_orch --plan "$T/plan.json"
expect_rc 1
[ "$(trace_count)" = 1 ] || { show_log; fail "--index-column: $(trace_count) attempts; a wrong header must not be retried"; }
last_line | grep -q "header is ',id,winner_model_a,winner_model_b,winner_tie' but must be 'id,winner_model_a,winner_model_b,winner_tie'.*index=False" \
    || { show_log; fail "--index-column: wrong failure line"; }
report_flat | grep -q '"attempts":1,' || fail "--index-column: report: $(report_flat)"
no_leftovers

# A worker that dies half way leaves its temp file; it must not survive the failed run.
WORKERS=1 write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity"]' '"retries": 1' --partial)"
run_orch --plan "$T/plan.json"
expect_rc 1
[ -z "$(ls -A "$T/work/outputs/m1")" ] || fail "--partial: left in outputs: $(ls -A "$T/work/outputs/m1")"
no_leftovers
echo ok
