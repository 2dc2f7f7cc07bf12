# large_3000: 3000 rows (the LMSYS sample repeated with new ids, made with awk), 2 models x 2
# variants on 2 CPU slots. The submission must match the independent computation, and the
# report must state the orchestration overhead.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e

# A CSV record ends at a newline outside quotes: count quotes to find where records end.
awk -v copies=15 '
    NR == 1 { header = $0; next }
    {
        rec = (rec == "" ? $0 : rec "\n" $0)
        q += gsub(/"/, "\"")
        if (q % 2 == 0) { recs[n++] = rec; rec = ""; q = 0 }
    }
    END {
        print header
        for (c = 0; c < copies; c++)
            for (i = 0; i < n; i++) {
                r = recs[i]; comma = index(r, ",")
                printf "%s_%d%s\n", substr(r, 1, comma - 1), c, substr(r, comma)
            }
    }' "$SAMPLE" >"$T/big.csv"
export INPUT="$T/big.csv"
"$FAKE" --input "$INPUT" --output "$T/check.csv" >/dev/null
[ "$(wc -l <"$T/check.csv")" = 3001 ] || fail "generated CSV has $(($(wc -l <"$T/check.csv") - 1)) rows, expected 3000"

write_plan "$T/plan.json" "" "$(model_json m1 1 2 '["identity", "swap_ab"]')" "$(model_json m2 3 1 '["identity", "swap_ab"]')"
run_orch --plan "$T/plan.json"
expect_rc 0
no_leftovers
expected_ensemble mean "$T/expected.csv" 1:2:identity,swap_ab 3:1:identity,swap_ab
compare_probs "$T/sub.csv" "$T/expected.csv"
R=$(report_flat)
echo "$R" | grep -q '"rows":12000' || fail "report rows: $R"
echo "$R" | grep -Eq '"overhead_s":[0-9.e-]+,"overhead_fraction":[0-9.e-]+,"overhead_breakdown":\{"read_input_s":' || fail "report overhead: $R"
grep -q "orchestration overhead [0-9.]* s" "$T/out.log" || { show_log; fail "summary lacks the overhead"; }
echo ok
