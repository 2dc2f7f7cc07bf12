# progress: rows done come from the workers' progress lines (ORCHESTRATE_PROGRESS_FD). Without
# a terminal, plain status lines are printed periodically (interval shortened for the test);
# on a terminal (a pty from `script`), one line is redrawn in place with "\r" + erase-line.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

write_plan "$T/plan.json" "" "$(model_json m1 1 1 '["identity", "swap_ab"]' '"batch_size": 8' --batch-size '{batch_size}' --slow 100)"
ORCHESTRATE_PROGRESS_INTERVAL_S=1 run_orch --plan "$T/plan.json"
expect_rc 0
grep -Eq '^\[m1\] [0-9]+/400 rows \([0-9]+%\), [0-9.]+ rows/s, ETA [0-9?:]+, elapsed [0-9:]+, jobs [0-4]/4 done, [0-2] running$' "$T/out.log" \
    || { show_log; fail "no plain progress line"; }
# At least one line shows a partly done job: the numbers come from progress lines, not only
# from finished jobs (which would give multiples of 100 rows).
grep -E '^\[m1\] [0-9]+/400 rows' "$T/out.log" | awk '{ split($2, a, "/"); if (a[1] % 100 != 0) found = 1 } END { exit !found }' \
    || { show_log; fail "progress lines never reflected a worker's progress"; }
grep -q '^\[m1\] stage finished: 400/400 rows' "$T/out.log" || { show_log; fail "no final stage line"; }
no_leftovers

if command -v script >/dev/null 2>&1; then
    rm -rf "$T/work"
    script -qec "'$ORCH' --plan '$T/plan.json' --quiet" /dev/null >"$T/tty.log" 2>&1 </dev/null || { cat "$T/tty.log"; fail "run on a pty failed"; }
    grep -q "$(printf '\r\033\\[K')\\[m1\\] [0-9]*/400 rows" "$T/tty.log" || { cat -v "$T/tty.log"; fail "no redrawn progress line on the pty"; }
    ! grep -q 'fake_worker: wrote' "$T/tty.log" || fail "--quiet still echoed worker output"
fi
echo ok
