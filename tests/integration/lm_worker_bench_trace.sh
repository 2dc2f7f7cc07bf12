#!/usr/bin/env bash
# lm_worker_bench_trace.sh: `lm-worker bench --ids FILE --trace OUT` (tools/gpu-check.sh's
# per-layer fp32-vs-bf16 fidelity step) on the CPU, against oracles independent of the code:
#   - OUT has one entry per line of FILE, with that line's length, and n_layers + 2 rows of
#     hidden_size values each, n_layers and hidden_size read from the fixture's config.json;
#   - every value is finite, and no two rows of a sequence are equal (each layer changed it);
#   - a sequence traced alone gives the same rows as in the packed batch (within 1e-4 relative):
#     the rows belong to the right sequence;
#   - --trace without --ids is refused with a message naming --trace (exit 64, no file written);
#   - an --ids line without a non-empty "input_ids" array, after a blank line, is refused naming
#     the file and its line number (exit 65, no file written).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_checks.sh"
W="$ORCH_BINARY_DIR/lm-worker"
[ -x "$W" ] || { echo "FAIL: $W not built"; exit 1; }
command -v python3 >/dev/null || { echo "skipped: python3 (to read the JSON) is missing"; exit 77; }

printf '{"input_ids":[5,6,7,8,9,10,11]}\n{"input_ids":[15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31]}\n{"input_ids":[40,41,42]}\n' >"$TMP/ids.jsonl"
sed -n 2p "$TMP/ids.jsonl" >"$TMP/one.jsonl"

for m in tiny-llama tiny-gemma2; do
    M="$ORCH_FIXTURES/models/$m"
    "$W" bench --model "$M" --device cpu --threads 2 --ids "$TMP/ids.jsonl" --trace "$TMP/$m.json" >"$TMP/$m.log" 2>&1 ||
        { fail "$m: bench --trace exit $?"; cat "$TMP/$m.log"; continue; }
    "$W" bench --model "$M" --device cpu --threads 2 --ids "$TMP/one.jsonl" --trace "$TMP/$m-one.json" >>"$TMP/$m.log" 2>&1 ||
        { fail "$m: bench --trace (one sequence) exit $?"; cat "$TMP/$m.log"; continue; }
    if python3 - "$M/config.json" "$TMP/ids.jsonl" "$TMP/$m.json" "$TMP/$m-one.json" <<'PY'; then echo "ok   $m: trace shape, values and rows per sequence"; else fail "$m: trace"; fi
import json, math, sys
cfg = json.load(open(sys.argv[1]))
lens = [len(json.loads(l)["input_ids"]) for l in open(sys.argv[2]) if l.strip()]
t, one = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
L, d = cfg["num_hidden_layers"], cfg["hidden_size"]
bad = []
if t["n_layers"] != L or t["dim"] != d: bad.append("n_layers/dim %s/%s, config %d/%d" % (t["n_layers"], t["dim"], L, d))
if t["lens"] != lens: bad.append("lens %s, file %s" % (t["lens"], lens))
if len(t["hidden"]) != len(lens): bad.append("%d sequences, file has %d" % (len(t["hidden"]), len(lens)))
for b, seq in enumerate(t["hidden"]):
    if len(seq) != L + 2: bad.append("sequence %d: %d rows, expected %d + 2" % (b, len(seq), L))
    if any(len(r) != d or not all(math.isfinite(v) for v in r) for r in seq): bad.append("sequence %d: row width or non-finite" % b)
    if any(seq[i] == seq[i + 1] for i in range(len(seq) - 1)): bad.append("sequence %d: two consecutive rows equal" % b)
for r, (x, y) in enumerate(zip(t["hidden"][1], one["hidden"][0])):
    err = max(abs(a - c) for a, c in zip(x, y)) / max(1e-30, max(abs(c) for c in y))
    if not err <= 1e-4: bad.append("row %d: packed vs alone differ by %.3g (relative to max |h|)" % (r, err))
for m in bad: print("MISMATCH:", m)
sys.exit(1 if bad else 0)
PY
done

M="$ORCH_FIXTURES/models/tiny-llama"
"$W" bench --model "$M" --device cpu --trace "$TMP/no-ids.json" >"$TMP/no-ids.log" 2>&1
rc=$?
if [ "$rc" -eq 64 ] && grep -q -- "--trace needs --ids" "$TMP/no-ids.log" && [ ! -e "$TMP/no-ids.json" ]; then
    echo "ok   --trace without --ids refused (exit 64)"
else
    fail "--trace without --ids: exit $rc"; cat "$TMP/no-ids.log"
fi
printf '{"input_ids":[5,6]}\n\n{"input_ids":[]}\n' >"$TMP/bad.jsonl"
"$W" bench --model "$M" --device cpu --ids "$TMP/bad.jsonl" --trace "$TMP/bad.json" >"$TMP/bad.log" 2>&1
rc=$?
if [ "$rc" -eq 65 ] && grep -qF "$TMP/bad.jsonl:3: expected {\"input_ids\"" "$TMP/bad.log" && [ ! -e "$TMP/bad.json" ]; then
    echo "ok   a bad --ids line is refused naming file and line (exit 65)"
else
    fail "bad --ids line: exit $rc"; cat "$TMP/bad.log"
fi
itest_finish
