# deadline: with a deadline set, orchestrate writes a valid submission in time whatever the
# workers do (slow, hanging, crashing), leaving out what did not finish: the rows get the other
# models (weights renormalised) or the fallback. The expected files come from fake_worker run
# directly (itest_lib.sh), never from orchestrate. A generous deadline changes nothing, and a
# rerun after a cut finishes the missing work and equals the full run.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e
export GRACE=1

# run_timed ARGS...: run_orch, and fail when it took longer than $LIMIT_MS milliseconds (a
# generous bound: the deadline plus 2 s).
run_timed() {
    local t0 t1
    t0=$(date +%s%N)
    run_orch "$@"
    t1=$(date +%s%N)
    ELAPSED_MS=$(( (t1 - t0) / 1000000 ))
    [ "$ELAPSED_MS" -le "$LIMIT_MS" ] || { show_log; fail "took ${ELAPSED_MS} ms, more than ${LIMIT_MS} ms"; }
}

# check_valid FILE: header, every input id once in input order, each row sums to 1.
check_valid() {
    [ "$(head -n 1 "$1")" = "id,winner_model_a,winner_model_b,winner_tie" ] || fail "$1: bad header"
    diff <(tail -n +2 "$1" | cut -d, -f1) <(tail -n +2 "$SAMPLE" | cut -d, -f1 | grep -v '^$' | head -n 200) \
        >/dev/null || true
    [ "$(($(wc -l <"$1") - 1))" = "$N_ROWS" ] || fail "$1: $(wc -l <"$1") lines for $N_ROWS rows"
    tail -n +2 "$1" | awk -F, '{ s = $2 + $3 + $4; if (s < 0.999 || s > 1.001) { print "row " NR " sums to " s; exit 1 } }' \
        || fail "$1: a row does not sum to 1"
}

# The number of input rows, from a worker run outside orchestrate.
"$FAKE" --input "$SAMPLE" --output "$T/count.csv" >/dev/null
N_ROWS=$(($(wc -l <"$T/count.csv") - 1))

# 1. Everything fits: the submission is byte-identical to the run without a deadline.
write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity", "swap_ab"]')" "$(model_json m2 7 3 '["identity"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
cp "$T/sub.csv" "$T/sub.nodeadline.csv"
before=$(trace_count)
run_orch --plan "$T/plan.json" --fresh --deadline 10m
expect_rc 0
cmp "$T/sub.csv" "$T/sub.nodeadline.csv" || fail "a generous deadline changed the submission"
# With a deadline every model's identity variant runs before any swap_ab (m2's identity before
# m1's swap_ab, which plan order alone would not give).
tail -n +$((before + 1)) "$T/trace.log" | awk '{ print $2 "." $4 }' >"$T/order"
[ "$(wc -l <"$T/order")" = 6 ] && [ "$(head -n 4 "$T/order" | grep -c identity)" = 4 ] \
    && [ "$(sed -n 3,4p "$T/order" | sort -u)" = m2.identity ] && [ "$(tail -n 2 "$T/order" | sort -u)" = m1.swap_ab ] \
    || fail "start order under a deadline: $(tr '\n' ' ' <"$T/order")"
report_flat | grep -q '"degraded":false' || fail "report: not marked as fitting: $(report_flat)"
grep -q "everything fit" "$T/out.log" || { show_log; fail "the summary does not say everything fit"; }

# 2. A model too slow for the budget (and writing no partial output): m2 is cut at the stop
# time; its rows come from m1 alone.
touch "$T/slow"
write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]')" \
    "$(model_json m2 7 3 '["identity"]' '' --slow 400 --slow-while="$T/slow" --no-partial)"
LIMIT_MS=7000
ORCHESTRATE_PROGRESS_INTERVAL_S=0.5 run_timed --plan "$T/plan.json" --fresh --deadline 5
expect_rc 0
check_valid "$T/sub.csv"
grep -q "deadline stop in .*, predicted margin -.* (will be cut)" "$T/out.log" \
    || { show_log; fail "the progress line does not predict the cut"; }
expected_ensemble mean "$T/expected.m1.csv" 1:1:identity
compare_probs "$T/sub.csv" "$T/expected.m1.csv"
R=$(report_flat)
echo "$R" | grep -q '"degraded":true' || fail "report: not degraded: $R"
echo "$R" | grep -q '"cut":\["m2.identity.s[01]of2","m2.identity.s[01]of2"\]' || fail "report: cut jobs: $R"
echo "$R" | grep -q '"model":"m2","rows_covered":0' || fail "report: m2 coverage: $R"
echo "$R" | grep -q '"fallback_rows":0' || fail "report: fallback rows: $R"
grep -q "cut by the deadline: m2.identity" "$T/out.log" || { show_log; fail "the summary does not name the cut jobs"; }
grep -q "reserving" "$T/out.log" || { show_log; fail "the reserve is not announced"; }

# 3. Resume after the cut: m1 is reused, m2 runs in full, and the result equals the full run.
rm "$T/slow"
before=$(trace_count)
run_orch --plan "$T/plan.json"
expect_rc 0
[ "$(($(trace_count) - before))" = 2 ] || fail "the rerun started $(($(trace_count) - before)) workers, expected m2's 2"
expected_ensemble mean "$T/expected.full.csv" 1:1:identity 7:3:identity
compare_probs "$T/sub.csv" "$T/expected.full.csv"

# 4. A model that hangs forever and ignores SIGTERM (SIGKILL after the grace, inside the reserve),
# the plan's own deadline and fallback: every row gets the fallback.
write_plan "$T/plan.json" '"deadline": "4s", "fallback": [0.5, 0.3, 0.2]' \
    "$(model_json m3 3 1 '["identity", "swap_ab"]' '' --hang --ignore-term)"
LIMIT_MS=6000
run_timed --plan "$T/plan.json" --fresh
expect_rc 0
check_valid "$T/sub.csv"
tail -n +2 "$T/sub.csv" | awk -F, '$2 != 0.5 || $3 != 0.3 || $4 != 0.2 { print; exit 1 }' >/dev/null \
    || fail "a row did not get the fallback: $(sed -n 2p "$T/sub.csv")"
report_flat | grep -q "\"fallback_rows\":$N_ROWS" || fail "report: fallback rows: $(report_flat)"
no_leftovers

# 5. A crashing model under a deadline does not fail the run: its rows come from the others.
write_plan "$T/plan.json" "" \
    "$(model_json m1 1 1 '["identity"]')" "$(model_json m4 4 1 '["identity"]' '"retries": 0' --exit 3)"
run_orch --plan "$T/plan.json" --fresh --deadline 1m
expect_rc 0
compare_probs "$T/sub.csv" "$T/expected.m1.csv"
grep -q "the run goes on without this job" "$T/out.log" || { show_log; fail "no note about the failed job"; }

# 6. Partial outputs: a cut worker keeps its finished batches. Rows in the partial files = rows
# the workers reported done = rows the model covered; those rows have the model's values, the
# others the (uniform) fallback.
write_plan "$T/plan.json" "" "$(model_json m5 5 1 '["identity"]' '' --slow 300)"
LIMIT_MS=7000
run_timed --plan "$T/plan.json" --fresh --deadline 5
expect_rc 0
check_valid "$T/sub.csv"
partials=$(find "$T/work/outputs" -name '*.partial' | sort)
[ "$(echo "$partials" | wc -l)" = 2 ] || fail "expected 2 partial outputs, found: $partials"
in_partials=0
for f in $partials; do in_partials=$((in_partials + $(wc -l <"$f") - 1)); done
[ "$in_partials" -gt 0 ] && [ "$in_partials" -lt "$N_ROWS" ] || fail "$in_partials rows in the partial outputs"
R=$(report_flat)
reported=$(echo "$R" | grep -o '"rows_reported_done":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
[ "$reported" = "$in_partials" ] || fail "workers reported $reported rows done, the partial outputs hold $in_partials"
echo "$R" | grep -q "\"rows_covered\":$in_partials,\"rows_from_partial_outputs\":$in_partials" \
    || fail "report: coverage is not the partial rows ($in_partials): $R"
echo "$R" | grep -q "\"fallback_rows\":$((N_ROWS - in_partials))" || fail "report: fallback rows: $R"
expected_model 5 identity "$T/expected.m5.csv"
paste -d, "$T/sub.csv" "$T/expected.m5.csv" | tail -n +2 >"$T/joined.csv"
# shellcheck disable=SC2086
cat $partials | grep -v '^id,' | cut -d, -f1 | sort >"$T/partial.ids"
awk -F, -v ids="$T/partial.ids" '
    BEGIN { while ((getline l < ids) > 0) seen[l] = 1 }
    {
        bad = 0
        for (k = 2; k <= 4; k++) {
            want = ($1 in seen) ? $(k + 4) : 1 / 3; d = $k - want; if (d < 0) d = -d
            if (d > 1e-6) bad = 1
        }
        if (bad) { print "row " $1 ": " $0; exit 1 }
    }' "$T/joined.csv" || fail "a row has neither the model's values (partial) nor the fallback"

# 7. A job that cannot finish is skipped before it starts: the identity pass measures m6's rate
# (100 rows in >= 2.6 s per slot); the swap_ab jobs would need as long again, but less is left
# before the stop (7 - 2.5 s reserve = 4.5 s), so they are skipped and the run ends early.
write_plan "$T/plan.json" "" "$(model_json m6 6 1 '["identity", "swap_ab"]' '' --slow 200)"
LIMIT_MS=9000
run_timed --plan "$T/plan.json" --fresh --deadline 7
expect_rc 0
grep -q "skipping m6.swap_ab.s[01]of2: it cannot finish in time" "$T/out.log" \
    || { show_log; fail "no note about skipping the swap_ab jobs"; }
R=$(report_flat)
echo "$R" | grep -q '"skipped":\["m6.swap_ab.s[01]of2","m6.swap_ab.s[01]of2"\]' || fail "report: skipped: $R"
echo "$R" | grep -q '"cut":\[\]' || fail "report: something was cut: $R"
expected_model 6 identity "$T/expected.m6.csv"
compare_probs "$T/sub.csv" "$T/expected.m6.csv"

# 8. A bad --deadline is a usage error.
run_orch --plan "$T/plan.json" --deadline 5x
expect_rc 64
last_line | grep -q "unknown unit 'x'" || { show_log; fail "wrong message for a bad --deadline"; }
echo ok
