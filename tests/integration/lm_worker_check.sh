#!/usr/bin/env bash
# lm_worker_check.sh: `lm-worker check` on the fixtures: one JSON line on stdout; "ok":true with
# what it found; the template's fixed ids are exactly the threshold encoder_create enforces
# (max_length = template_ids fails, template_ids + 1 passes, for two templates); every failure
# names its option, exits 65 (a file or setting) or 64 (usage, and an unknown template name, as
# `run` does), and prints the error on stderr.
set -u
BIN="$ORCH_BINARY_DIR/lm-worker"
FIX="$ORCH_FIXTURES"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
M=$FIX/models

# check ARGS...: run it; stdout in $TMP/out, stderr in $TMP/err, status in $rc.
check() { "$BIN" check "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; }
# field NAME: the value of a scalar field of the JSON line (strings unquoted).
field() { sed -E "s/.*\"$1\":(\"([^\"]*)\"|([^,}]*)).*/\2\3/" "$TMP/out"; }

check --model "$M/tiny-llama" --device cpu --input "$FIX/data/lmsys-sample.csv" --max-length 300
[ $rc -eq 0 ] || fail "tiny-llama: exit $rc: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "more than one line on stdout"
[ "$(field ok)" = true ] && [ "$(field model_type)" = llama ] && [ "$(field device)" = cpu ] \
    && [ "$(field input_rows)" = 200 ] && [ "$(field layers)" = 3 ] || fail "tiny-llama fields: $(cat "$TMP/out")"
grep -q '"labels":\["winner_model_a","winner_model_b","winner_tie"\]' "$TMP/out" || fail "labels: $(cat "$TMP/out")"
[ $(( $(field template_ids) + $(field text_ids) )) -eq 300 ] || fail "template_ids + text_ids != max_length"

# The fixed-id count is the threshold: max_length = template_ids leaves no room, + 1 does.
for tpl in plain:tiny-llama gemma-chat:tiny-gemma2 turns:tiny-llama; do
    name=${tpl%%:*} model=${tpl#*:}
    check --model "$M/$model" --template "$name" --device cpu
    n=$(field template_ids)
    [ $rc -eq 0 ] && [ "$n" -gt 0 ] || { fail "$name: exit $rc, template_ids '$n'"; continue; }
    check --model "$M/$model" --template "$name" --device cpu --max-length "$n"
    [ $rc -eq 65 ] && [ "$(field option)" = --max-length ] && [ "$(field ok)" = false ] \
        || fail "$name: max_length $n: exit $rc: $(cat "$TMP/out")"
    grep -q "lm-worker check: error: --max-length $n is too small for template $name" "$TMP/err" || fail "$name: stderr"
    check --model "$M/$model" --template "$name" --device cpu --max-length "$((n + 1))"
    [ $rc -eq 0 ] && [ "$(field text_ids)" = 1 ] || fail "$name: max_length $((n + 1)): exit $rc"
done

# Failures, each naming its option.
mkdir "$TMP/notok"
cp "$M/tiny-llama/config.json" "$M/tiny-llama/"*.safetensors* "$TMP/notok/"
expect() { # expect RC OPTION TEXT ARGS...
    local want=$1 opt=$2 text=$3
    shift 3
    check "$@"
    [ $rc -eq "$want" ] || { fail "$*: exit $rc, want $want: $(cat "$TMP/err")"; return; }
    [ -z "$opt" ] || [ "$(field option)" = "$opt" ] || fail "$*: option '$(field option)', want $opt"
    [ -z "$text" ] || grep -qF -- "$text" "$TMP/err" || fail "$*: stderr lacks '$text': $(cat "$TMP/err")"
}
expect 65 --tokenizer "$TMP/notok/tokenizer.json: No such file or directory: the model directory has no tokenizer.json" --model "$TMP/notok" --device cpu
expect 0 "" "" --model "$TMP/notok" --tokenizer "$M/tiny-llama/tokenizer.json" --device cpu
expect 65 --tokenizer "--tokenizer $TMP/none.json" --model "$M/tiny-llama" --tokenizer "$TMP/none.json" --device cpu
expect 65 --model "--model $TMP/nodir: No such file or directory" --model "$TMP/nodir" --device cpu
expect 65 --adapter "$M/tiny-llama/adapter_config.json" --model "$M/tiny-llama" --adapter "$M/tiny-llama" --device cpu
expect 0 "" "" --model "$M/tiny-llama" --adapter "$M/tiny-llama-lora" --device cpu
grep -q '"adapter":{"dir":"[^"]*","r":[0-9]*,"alpha":' "$TMP/out" || fail "adapter fields: $(cat "$TMP/out")"
printf 'id,prompt,response_a\n1,"[""a""]","[""b""]"\n' >"$TMP/nob.csv"
expect 65 --input "response_b" --model "$M/tiny-llama" --input "$TMP/nob.csv" --device cpu
expect 64 "" "--bogus" --model "$M/tiny-llama" --bogus
expect 64 --template "not a built-in template" --model "$M/tiny-llama" --template "$TMP/no-template.json" --device cpu
expect 0 "" "" --device cpu
[ "$(field device)" = cpu ] || fail "device-only check"
if ! grep -q '"device":"cuda"' <("$BIN" check --device auto 2>/dev/null); then
    check --device cuda
    [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(field option)" = --device ] || fail "--device cuda without CUDA: exit $rc"
fi

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "lm_worker_check: all checks passed"
