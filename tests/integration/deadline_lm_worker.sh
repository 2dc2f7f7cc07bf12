# deadline_lm_worker: a stopped lm-worker keeps its finished batches. orchestrate runs the tiny
# fixture model on the CPU (batch size 1, one thread: ~7 s for 600 rows) under a deadline that
# stops it part way; lm-worker has appended each finished batch to its --partial-output. The rows
# there are the rows it reported done, they are the rows the submission takes from the model (the
# others get the fallback), and their values are those of lm-worker run outside orchestrate on
# just those rows (each row's result does not depend on its batch at batch size 1).
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e
LM=$B/lm-worker
[ -x "$LM" ] || { echo "skipped: $LM not built"; exit 77; }
MODEL=$FX/models/tiny-llama
OPTS=(--device cpu --threads 1 --max-length 320 --batch-size 1)

# records IDS_FILE < CSV: the header and the records whose id is listed in IDS_FILE, or every
# record repeated COPIES times with the ids suffixed _0, _1, ... (a record ends at a newline
# outside quotes: count the quotes).
records() {
    awk -v ids="${1:-}" -v copies="${COPIES:-1}" '
        BEGIN { if (ids != "") while ((getline l < ids) > 0) keep[l] = 1 }
        NR == 1 { print; next }
        {
            rec = (rec == "" ? $0 : rec "\n" $0)
            q += gsub(/"/, "\"")
            if (q % 2 == 0) { recs[n++] = rec; rec = ""; q = 0 }
        }
        END {
            for (c = 0; c < copies; c++)
                for (i = 0; i < n; i++) {
                    r = recs[i]; comma = index(r, ","); id = substr(r, 1, comma - 1)
                    if (ids != "") { if (id in keep) print r; continue }
                    printf "%s_%d%s\n", id, c, substr(r, comma)
                }
        }'
}
COPIES=3 records <"$SAMPLE" >"$T/big.csv"
export INPUT="$T/big.csv"
"$FAKE" --input "$INPUT" --output "$T/count.csv" >/dev/null
N_ROWS=$(($(wc -l <"$T/count.csv") - 1))
[ "$N_ROWS" = 600 ] || fail "the generated input has $N_ROWS rows, expected 600"

WORKERS=1 GRACE=0 write_plan "$T/plan.json" '"fallback": [0.25, 0.25, 0.5]' \
    "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$MODEL\", \"max_length\": 320, \"batch_size\": 1, \"threads\": 1}"
# Reserve: grace 0 + merge 0.5 + slack 1 = 1.5 s: workers stop 2 s after the start, long before
# lm-worker could finish.
t0=$(date +%s%N)
run_orch --plan "$T/plan.json" --no-preflight --deadline 3.5
elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_rc 0
[ "$elapsed" -le 5500 ] || fail "took ${elapsed} ms for a 3.5 s deadline"
partial=$(find "$T/work/outputs" -name '*.partial')
[ -f "$partial" ] || { show_log; fail "no partial output"; }
rows=$(($(wc -l <"$partial") - 1))
[ "$rows" -gt 0 ] && [ "$rows" -lt "$N_ROWS" ] || { show_log; fail "$rows rows in the partial output: not cut part way"; }
R=$(report_flat)
reported=$(echo "$R" | grep -o '"rows_reported_done":[0-9]*' | cut -d: -f2)
# lm-worker appends a batch, flushes it, then reports it: a SIGTERM between the two leaves one
# batch (one row here) more in the file than was reported.
[ "$rows" = "$reported" ] || [ "$rows" = "$((reported + 1))" ] \
    || fail "the partial output holds $rows rows, lm-worker reported $reported done"
echo "$R" | grep -q "\"rows_covered\":$rows,\"rows_from_partial_outputs\":$rows" || fail "report: coverage: $R"
# Each submission row: lm-worker's values when its id is in the partial output, else the fallback.
tail -n +2 "$partial" | cut -d, -f1 >"$T/partial.ids"
records "$T/partial.ids" <"$T/big.csv" >"$T/subset.csv"
"$LM" run --model "$MODEL" --input "$T/subset.csv" --output "$T/ref.csv" "${OPTS[@]}" 2>"$T/ref.log" \
    || { cat "$T/ref.log"; fail "the reference lm-worker run failed"; }
[ "$(($(wc -l <"$T/ref.csv") - 1))" = "$rows" ] || fail "the reference has $(wc -l <"$T/ref.csv") lines for $rows rows"
tail -n +2 "$T/sub.csv" | awk -F, -v ref="$T/ref.csv" '
    BEGIN {
        while ((getline l < ref) > 0) { split(l, f, ","); want[f[1]] = l }
        fb[2] = 0.25; fb[3] = 0.25; fb[4] = 0.5
    }
    {
        if ($1 in want) { split(want[$1], w, ","); n++ } else { w[2] = fb[2]; w[3] = fb[3]; w[4] = fb[4] }
        for (k = 2; k <= 4; k++) { d = $k - w[k]; if (d < 0) d = -d; if (d > 1e-6) { print "row " $1 ": " $0; exit 1 } }
    }
    END { if (n != '"$rows"') { print n " rows matched the partial ids"; exit 1 } }' \
    || fail "the submission does not combine the partial rows and the fallback"
no_leftovers
echo ok
