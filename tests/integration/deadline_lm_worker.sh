# deadline_lm_worker: a stopped lm-worker keeps its finished batches. orchestrate runs the tiny
# fixture model on the CPU (batch size 1, one thread: a few seconds for the 200 rows) under a
# deadline that stops it part way; lm-worker has appended each finished batch to its
# --partial-output. The rows there are the rows it reported done, they are the rows the
# submission takes from the model (the others get the fallback), and their values are those of a
# full lm-worker run outside orchestrate.
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_lib.sh"
set -e
LM=$B/lm-worker
[ -x "$LM" ] || { echo "skipped: $LM not built"; exit 77; }
MODEL=$FX/models/tiny-llama
OPTS=(--device cpu --threads 1 --max-length 320 --batch-size 1)

"$LM" run --model "$MODEL" --input "$SAMPLE" --output "$T/full.csv" "${OPTS[@]}" 2>"$T/full.log" \
    || { cat "$T/full.log"; fail "the full lm-worker run failed"; }
N_ROWS=$(($(wc -l <"$T/full.csv") - 1))

WORKERS=1 GRACE=0 write_plan "$T/plan.json" '"fallback": [0.25, 0.25, 0.5]' \
    "{\"name\": \"lm\", \"worker\": \"lm-worker\", \"model\": \"$MODEL\", \"max_length\": 320, \"batch_size\": 1, \"threads\": 1}"
# Reserve: grace 0 + merge 0.5 + slack 1 = 1.5 s: workers stop 1.5 s after the start, well
# before lm-worker could finish (it needs its load plus ~2.5 s of forward passes alone).
t0=$(date +%s%N)
run_orch --plan "$T/plan.json" --no-preflight --deadline 3
elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_rc 0
[ "$elapsed" -le 5000 ] || fail "took ${elapsed} ms for a 3 s deadline"
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
# Each submission row: the full run's values when its id is in the partial output, else the fallback.
tail -n +2 "$partial" | cut -d, -f1 >"$T/partial.ids"
paste -d, "$T/sub.csv" "$T/full.csv" | tail -n +2 | awk -F, -v ids="$T/partial.ids" '
    BEGIN { while ((getline l < ids) > 0) seen[l] = 1; fb[2] = 0.25; fb[3] = 0.25; fb[4] = 0.5 }
    $1 != $5 { print "id order differs at " $1; exit 1 }
    {
        for (k = 2; k <= 4; k++) {
            want = ($1 in seen) ? $(k + 4) : fb[k]; d = $k - want; if (d < 0) d = -d
            if (d > 1e-6) { print "row " $1 ": " $0; exit 1 }
        }
        n += ($1 in seen)
    }
    END { if (n != '"$rows"') { print n " rows matched the partial ids"; exit 1 } }' \
    || fail "the submission does not combine the partial rows and the fallback"
no_leftovers
echo ok
