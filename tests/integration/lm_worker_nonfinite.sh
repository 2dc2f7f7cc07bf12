# lm_worker_nonfinite: a model whose fp32 forward pass overflows (here: a LoRA adapter with
# lora_alpha 3e38, finite but absurd) is a model-file problem every run repeats: exit 65 (bad
# input, not retried by orchestrate), naming the row, and no "try --dtype fp32" on a run that
# is already fp32. (NaN weights and an alpha beyond fp32 are caught at load: test_lora.)
set -u
BIN="$ORCH_BINARY_DIR/lm-worker"
FIX="$ORCH_FIXTURES"
[ -x "$BIN" ] || { echo "skipped: $BIN not built"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$TMP/adapter"
cp "$FIX/models/tiny-llama-lora/adapter_model.safetensors" "$TMP/adapter/"
sed 's/"lora_alpha": *[0-9.e+]*/"lora_alpha": 3e38/' "$FIX/models/tiny-llama-lora/adapter_config.json" \
    >"$TMP/adapter/adapter_config.json"
grep -q '"lora_alpha": 3e38' "$TMP/adapter/adapter_config.json" || fail "could not edit lora_alpha"
head -n 4 "$FIX/data/lmsys-sample.csv" >"$TMP/in.csv"
"$BIN" run --model "$FIX/models/tiny-llama" --adapter "$TMP/adapter" --input "$TMP/in.csv" \
    --output "$TMP/out.csv" --device cpu --dtype fp32 --threads 1 --max-length 64 2>"$TMP/err.log"
rc=$?
[ "$rc" = 65 ] || { cat "$TMP/err.log"; fail "exit $rc, expected 65"; }
grep -q "line 2: id .*non-finite logits in fp32" "$TMP/err.log" || { cat "$TMP/err.log"; fail "no message naming the row"; }
! grep -q "try --dtype fp32" "$TMP/err.log" || { cat "$TMP/err.log"; fail "suggests fp32 on an fp32 run"; }
[ ! -e "$TMP/out.csv" ] || fail "an output was written"
echo ok
