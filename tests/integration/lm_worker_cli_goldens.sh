#!/usr/bin/env bash
# lm_worker_cli_goldens.sh: the inspection subcommands, through the real binary, against the HF
# goldens (the unit tests check the library calls; this checks the command lines users run):
#   - `lm-worker tokenize` on every line of golden-llama3.jsonl and golden-gemma.jsonl, with and
#     without --add-special-tokens: the ids must equal HF tokenizers' exactly;
#   - `lm-worker logits` on tiny-llama's golden sequences: every logit within 1e-4*(1+|ref|).
# No python or jq: a golden line's `"ids": [...]` cannot occur inside its text (quotes in JSON
# strings are escaped), so sed extracts the arrays reliably.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_checks.sh"
BIN="$ORCH_BINARY_DIR/lm-worker"
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }

# ids_of KEY FILE: the KEY array of each line, spaces removed, one line per input line.
ids_of() { sed -E "s/.*\"$1\": ?\[([^]]*)\].*/\1/; s/ //g" "$2"; }

for name in llama3 gemma; do
  tok="$ORCH_GEN_FIXTURES/tokenizers/$name.tokenizer.json"
  golden="$ORCH_FIXTURES/tokenizers/golden-$name.jsonl"
  [ -f "$tok" ] || { fail "$tok missing (the build unpacks it)"; continue; }
  for special in "" --add-special-tokens; do
    key=ids
    [ -n "$special" ] && key=ids_with_special
    if ! "$BIN" tokenize --tokenizer "$tok" $special < "$golden" > "$TMP/out.jsonl" 2> "$TMP/err"; then
      fail "lm-worker tokenize $name $special exited non-zero: $(tail -1 "$TMP/err")"
      continue
    fi
    ids_of "$key" "$golden" > "$TMP/want"
    ids_of ids "$TMP/out.jsonl" > "$TMP/got"
    n=$(wc -l < "$TMP/want")
    [ "$n" -gt 50 ] || fail "$golden: only $n lines read"
    if ! diff "$TMP/want" "$TMP/got" > "$TMP/diff"; then
      fail "lm-worker tokenize $name $special differs from HF on $(grep -c '^<' "$TMP/diff") of $n lines; first: $(head -2 "$TMP/diff" | tr '\n' ' ')"
    else
      echo "ok: lm-worker tokenize $name ${special:-(no special tokens)}: $n/$n lines equal HF"
    fi
  done
done

# logits: golden.json holds one JSON object; split its sequences with awk on the input_ids and
# logits arrays (numbers and commas only).
model="$ORCH_FIXTURES/models/tiny-llama"
tr -d '\n ' < "$model/golden.json" | grep -o '"input_ids":\[[^]]*\],"logits":\[[^]]*\]' > "$TMP/seqs"
sed -E 's/,"logits":.*//; s/^/{/; s/$/}/' "$TMP/seqs" > "$TMP/in.jsonl"
sed -E 's/.*"logits":\[([^]]*)\].*/\1/' "$TMP/seqs" > "$TMP/want"
n=$(wc -l < "$TMP/in.jsonl")
[ "$n" -eq 9 ] || fail "expected 9 golden sequences in $model/golden.json, found $n"
if "$BIN" logits --model "$model" --device cpu < "$TMP/in.jsonl" > "$TMP/out.jsonl" 2> "$TMP/err"; then
  sed -E 's/.*"logits":\[([^]]*)\].*/\1/' "$TMP/out.jsonl" > "$TMP/got"
  paste -d';' "$TMP/want" "$TMP/got" | awk -F';' '{
      nw = split($1, w, ","); ng = split($2, g, ",");
      if (nw != ng) { printf "line %d: %d logits, want %d\n", NR, ng, nw; bad++; next }
      for (i = 1; i <= nw; i++) {
        d = g[i] - w[i]; if (d < 0) d = -d; a = w[i] < 0 ? -w[i] : w[i];
        if (d > 1e-4 * (1 + a)) { printf "line %d logit %d: %s vs golden %s\n", NR, i, g[i], w[i]; bad++ }
      }
    } END { exit bad > 0 }' || fail "lm-worker logits differs from the transformers golden"
  [ "$(wc -l < "$TMP/got")" -eq "$n" ] || fail "lm-worker logits wrote $(wc -l < "$TMP/got") lines for $n inputs"
  echo "ok: lm-worker logits tiny-llama: $n sequences within 1e-4*(1+|ref|)"
else
  fail "lm-worker logits exited non-zero: $(tail -1 "$TMP/err")"
fi

itest_finish
echo "all lm-worker CLI golden checks passed"
