#!/usr/bin/env bash
# lm_worker_run.sh: `lm-worker run` end to end on the CPU with the tiny fixture models.
#
# Checks, on tests/fixtures/data/lmsys-sample.csv (200 real rows):
#   - tiny-llama, tiny-llama + LoRA, tiny-gemma2: exit 0, 200 rows, ids in input order, the
#     header from id2label, every row a probability vector summing to 1;
#   - batch size 1 and 16 give the same probabilities (varlen packing must not change results);
#   - the adapter changes the results (it is really applied);
#   - progress lines reach ORCHESTRATE_PROGRESS_FD and a reader that went away does not kill us;
#   - failures: a bad JSON list in row 3 and a missing column exit 65 naming the row/column and
#     leave no output; a missing model dir exits 65; bad options exit 64; --device cuda without
#     CUDA exits non-zero with a message that says so.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_checks.sh"
BIN="$ORCH_BINARY_DIR/lm-worker"
FIX="$ORCH_FIXTURES"
DATA="$FIX/data/lmsys-sample.csv"

[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
for m in tiny-llama tiny-gemma2; do
  [ -f "$FIX/models/$m/tokenizer.json" ] || { echo "FAIL: $FIX/models/$m/tokenizer.json is missing"; exit 1; }
done

COMMON=(--device cpu --threads 2 --max-length 320)

# check_probs FILE LABELS: 200 rows, ids as in the input, header, rows sum to 1, values in [0,1].
check_probs() {
  local out=$1 want_header="id,winner_model_a,winner_model_b,winner_tie"
  [ -f "$out" ] || { fail "$out was not written"; return; }
  [ "$(head -1 "$out")" = "$want_header" ] || fail "$out: header is '$(head -1 "$out")'"
  [ "$(($(wc -l < "$out") - 1))" -eq 200 ] || fail "$out: $(($(wc -l < "$out") - 1)) rows, want 200"
  # The sample has no newlines inside quoted fields of its id column, so the first field of each
  # physical line that starts a row is its id; compare with the output's ids in order.
  diff <(awk -F, 'NR > 1 && /^[0-9]+,/ {print $1}' "$DATA") <(awk -F, 'NR > 1 {print $1}' "$out") >/dev/null \
    || fail "$out: ids are not the input ids in input order"
  awk -F, 'NR > 1 {
      s = 0; for (i = 2; i <= NF; i++) { if ($i < 0 || $i > 1) bad = 1; s += $i }
      if (s < 0.999999 || s > 1.000001) bad = 1
    } END { exit bad }' "$out" || fail "$out: a row is not a probability vector"
}

# compare FILE1 FILE2 TOL: same ids, every probability within TOL; prints the largest difference.
compare() {
  paste -d, "$1" "$2" | awk -F, -v tol="$3" 'NR > 1 {
      n = NF / 2; if ($1 != $(n + 1)) bad = 1
      for (i = 2; i <= n; i++) { d = $i - $(n + i); if (d < 0) d = -d; if (d > mx) mx = d }
    } END { printf "max |diff| = %g\n", mx; exit (bad || mx > tol) }'
}

run_ok() { # run_ok NAME ARGS...: run and require exit 0
  local name=$1; shift
  "$BIN" run "$@" 2> "$TMP/$name.err"
  local rc=$?
  [ $rc -eq 0 ] || { fail "$name: exit $rc"; cat "$TMP/$name.err"; }
  tail -1 "$TMP/$name.err"
}

# --- the three models, batch size 16 -------------------------------------------------------
run_ok llama --model "$FIX/models/tiny-llama" --input "$DATA" --output "$TMP/llama.csv" "${COMMON[@]}" --batch-size 16
check_probs "$TMP/llama.csv"
run_ok lora --model "$FIX/models/tiny-llama" --adapter "$FIX/models/tiny-llama-lora" --input "$DATA" \
  --output "$TMP/lora.csv" "${COMMON[@]}" --batch-size 16
check_probs "$TMP/lora.csv"
if compare "$TMP/llama.csv" "$TMP/lora.csv" 1e-6 >/dev/null; then fail "the LoRA adapter changed nothing"; fi
run_ok gemma --model "$FIX/models/tiny-gemma2" --input "$DATA" --output "$TMP/gemma.csv" "${COMMON[@]}" \
  --batch-size 16 --template gemma-chat
check_probs "$TMP/gemma.csv"

# --- batch size 1 vs 16 (and a token budget that splits batches) give the same results -------
run_ok llama_bs1 --model "$FIX/models/tiny-llama" --input "$DATA" --output "$TMP/llama_bs1.csv" "${COMMON[@]}" --batch-size 1
compare "$TMP/llama.csv" "$TMP/llama_bs1.csv" 1e-5 || fail "tiny-llama: batch size 1 and 16 differ"
run_ok gemma_bs1 --model "$FIX/models/tiny-gemma2" --input "$DATA" --output "$TMP/gemma_bs1.csv" "${COMMON[@]}" \
  --batch-size 1 --template gemma-chat
compare "$TMP/gemma.csv" "$TMP/gemma_bs1.csv" 1e-5 || fail "tiny-gemma2: batch size 1 and 16 differ"
run_ok gemma_bt --model "$FIX/models/tiny-gemma2" --input "$DATA" --output "$TMP/gemma_bt.csv" "${COMMON[@]}" \
  --batch-size 64 --batch-tokens 700 --template gemma-chat
compare "$TMP/gemma.csv" "$TMP/gemma_bt.csv" 1e-5 || fail "tiny-gemma2: --batch-tokens 700 differs"

# --- progress lines, and a progress reader that already exited ------------------------------
ORCHESTRATE_PROGRESS_FD=3 "$BIN" run --model "$FIX/models/tiny-llama" --input "$DATA" --output "$TMP/p.csv" \
  "${COMMON[@]}" --batch-size 32 3> "$TMP/progress.txt" 2>/dev/null || fail "progress run failed"
[ "$(tail -1 "$TMP/progress.txt")" = "progress 200 200" ] || fail "last progress line: '$(tail -1 "$TMP/progress.txt")'"
awk '$1 != "progress" || $3 != 200 || $2 <= prev { bad = 1 } { prev = $2 } END { exit bad || NR < 7 }' \
  "$TMP/progress.txt" || fail "progress lines are not increasing 'progress N 200' lines, one per batch"
ORCHESTRATE_PROGRESS_FD=3 "$BIN" run --model "$FIX/models/tiny-llama" --input "$DATA" --output "$TMP/p2.csv" \
  "${COMMON[@]}" --batch-size 8 3> >(true) 2>/dev/null || fail "a closed progress pipe made the worker fail"
check_probs "$TMP/p2.csv"

# --- failures: exit code, message, and no output left behind ---------------------------------
expect_fail() { # expect_fail NAME CODE NEEDLE ARGS...
  local name=$1 code=$2 needle=$3; shift 3
  rm -f "$TMP/$name.csv"
  "$BIN" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
  local rc=$?
  [ $rc -eq "$code" ] || { fail "$name: exit $rc, want $code"; cat "$TMP/$name.err"; }
  grep -qF -- "$needle" "$TMP/$name.err" || { fail "$name: stderr lacks '$needle'"; cat "$TMP/$name.err"; }
  [ ! -e "$TMP/$name.csv" ] || fail "$name: left an output file"
  ! ls "$TMP/$name.csv".tmp.* >/dev/null 2>&1 || fail "$name: left a temp file"
}
# Row 3 (line 4: the sample has one line per row) gets a broken response_a list.
awk -F, 'NR == 4 { id = $1; print id ",\"[\"\"q\"\"]\",\"[\"\"unterminated\",\"[\"\"b\"\"]\""; next } { print }' \
  "$DATA" > "$TMP/bad.csv"
BAD_ID=$(awk -F, 'NR == 4 {print $1}' "$DATA")
expect_fail badjson 65 "bad.csv: line 4: id $BAD_ID: column 'response_a'" run --model "$FIX/models/tiny-llama" \
  --input "$TMP/bad.csv" --output "$TMP/badjson.csv" "${COMMON[@]}"
printf 'id,prompt,response_a\n1,"[""q""]","[""a""]"\n' > "$TMP/nocol_in.csv"
expect_fail nocol 65 "nocol_in.csv: missing required column 'response_b'" run --model "$FIX/models/tiny-llama" \
  --input "$TMP/nocol_in.csv" --output "$TMP/nocol.csv" "${COMMON[@]}"
expect_fail nomodel 65 "$TMP/no-such-model" run --model "$TMP/no-such-model" --input "$DATA" \
  --output "$TMP/nomodel.csv" "${COMMON[@]}"
expect_fail badopt 64 "--batch-size" run --model "$FIX/models/tiny-llama" --input "$DATA" \
  --output "$TMP/badopt.csv" --batch-size zero
expect_fail badtrunc 64 "--truncation middle" run --model "$FIX/models/tiny-llama" --input "$DATA" \
  --output "$TMP/badtrunc.csv" --truncation middle
expect_fail unknown 64 "unknown subcommand 'frobnicate'" frobnicate
expect_fail tooshort 64 "too small" run --model "$FIX/models/tiny-llama" --input "$DATA" \
  --output "$TMP/tooshort.csv" --device cpu --max-length 3
"$BIN" run --help | grep -q -- "--batch-tokens N" || fail "run --help does not list --batch-tokens"
"$BIN" --version | grep -q "lm-worker" || fail "--version"

# --- --device cuda: without CUDA (or a GPU) a clear error, never a crash ---------------------
"$BIN" run --model "$FIX/models/tiny-llama" --input "$DATA" --output "$TMP/cuda.csv" --device cuda \
  --max-length 320 2> "$TMP/cuda.err"
rc=$?
if [ $rc -eq 0 ]; then
  check_probs "$TMP/cuda.csv" # a CUDA build on a GPU machine: it must then be right
  compare "$TMP/llama.csv" "$TMP/cuda.csv" 2e-2 || fail "--device cuda differs from the CPU"
else
  [ $rc -lt 128 ] || fail "--device cuda crashed (exit $rc)"
  grep -qi "cuda" "$TMP/cuda.err" || { fail "--device cuda: the message does not mention CUDA"; cat "$TMP/cuda.err"; }
  [ ! -e "$TMP/cuda.csv" ] || fail "--device cuda failed but left an output"
fi

itest_finish
