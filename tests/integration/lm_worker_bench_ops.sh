#!/usr/bin/env bash
# lm_worker_bench_ops.sh: `lm-worker bench --ops` (the per-op table), LM_SYNC_EVERY_OP=1, and the
# CUDA backend's cublasLt algorithm cache, on the CPU and (when built) under cuda-emu:
#   - the table's structure against oracles that never look at timings: every op forward.c calls
#     appears with calls = (its calls inside forward.c's layer loop x the layers in config.json +
#     its calls outside) x the timed forwards, counted from forward.c's source; no other op
#     appears; the rows' ms add up to the "forward" row (JSON exactly, the printed table within
#     its rounding), the % column to 100, the GEMM FLOPs to 2 T x the linear layers' parameters;
#   - LM_SYNC_EVERY_OP=1 gives the same logits (bench --ids) and a wall-timed table;
#   - cuda-emu: cublasLt is asked for heuristics once per GEMM key (the distinct weight shapes
#     from config.json) and power-of-two range of T, never again in later forwards, and later
#     shapes of a range only borrow (emulator counters, CUDA_EMU_STATS); LM_CUBLASLT=0 and a
#     cublasLt that refuses every GEMM (CUDA_EMU_LT_REFUSE) give the same logits through
#     cublasGemmEx.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../helpers/itest_checks.sh"
B="$ORCH_BINARY_DIR"
CPU="$B/lm-worker"
EMU="$B/lm-worker-emu"
M="$ORCH_FIXTURES/models/tiny-llama"
FWD="$ORCH_SOURCE_DIR/workers/lm/model/forward.c"
[ -x "$CPU" ] || { echo "FAIL: $CPU not built"; exit 1; }
command -v python3 >/dev/null || { echo "skipped: python3 (to read the JSON lines) is missing"; exit 77; }

ITERS=3
SHAPES=2x16,1x24
IDS="$TMP/ids.jsonl"
printf '{"input_ids":[5,6,7,8,9,10,11]}\n{"input_ids":[15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31]}\n' >"$IDS"

# check_ops NAME LOG: the per-op tables of LOG (one per shape of $SHAPES, $ITERS forwards each).
check_ops() {
    if python3 - "$2" "$FWD" "$M/config.json" "$SHAPES" "$ITERS" <<'PY'; then echo "ok   $1: per-op tables"; else fail "$1: per-op tables"; cat "$2"; fi
import json, re, sys
log, fwd, cfg_path, shapes, iters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cfg = json.load(open(cfg_path))
L = cfg["num_hidden_layers"]
d, h = cfg["hidden_size"], cfg["intermediate_size"]
hd = cfg.get("head_dim", d // cfg["num_attention_heads"])
qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
# forward.c's op calls, inside and outside the layer loop
src = open(fwd).read()
body = src[src.index("static int forward_run("):]
loop = body.index("for (int l = 0; l < c->n_layers; l++) {")
depth, i = 0, body.index("{", loop)
while True:
    depth += {"{": 1, "}": -1}.get(body[i], 0)
    if depth == 0: break
    i += 1
inside, outside = body[loop:i], body[:loop] + body[i:]
ops = set(re.findall(r"\bop->(\w+)\(", body)) - {"sync", "to_host"}
per_fwd = {o: len(re.findall(r"\bop->%s\(" % o, inside)) * L + len(re.findall(r"\bop->%s\(" % o, outside)) for o in ops}
bad = 0
def check(ok, what):
    global bad
    if not ok:
        print("MISMATCH:", what); bad += 1
lines = open(log).read().splitlines()
tables = [j for j in (json.loads(l) for l in lines if l.startswith('{"mode":"ops"'))]
check(len(tables) == len(shapes.split(",")), "%d ops lines for shapes %s" % (len(tables), shapes))
for t, shape in zip(tables, shapes.split(",")):
    B_, len_ = map(int, shape.split("x"))
    T = B_ * len_
    check(t["forwards"] == iters, "%s: forwards %s" % (shape, t["forwards"]))
    got = {r["op"]: r for r in t["ops"]}
    check(set(got) == {o for o in ops if per_fwd[o]}, "%s: ops %s, forward.c calls %s" % (shape, sorted(got), sorted(ops)))
    for o in ops:
        c = got.get(o, {}).get("calls", 0)
        check(c == per_fwd[o] * iters, "%s: %s calls %d, expected %d x %d" % (shape, o, c, per_fwd[o], iters))
    s = sum(r["ms"] for r in t["ops"]) + t["between_ms"]
    check(abs(s - t["forward_ms"]) <= 1e-9 * max(1.0, t["forward_ms"]), "%s: ms sum %r vs forward %r" % (shape, s, t["forward_ms"]))
    pct = sum(r["pct"] for r in t["ops"]) + (100.0 * t["between_ms"] / t["forward_ms"] if t["forward_ms"] else 0)
    check(abs(pct - 100.0) < 1e-6, "%s: %% column sums to %r" % (shape, pct))
    for r in t["ops"]:
        check(abs(r["ms_per_forward"] * iters - r["ms"]) <= 1e-9 * max(1.0, r["ms"]), "%s: %s ms per forward" % (shape, r["op"]))
    gemm = sum(got[o]["flops"] for o in ("matmul", "matmul_f32", "matmul_residual") if o in got)
    want = 2.0 * T * L * (d * qd + 2 * d * kvd + qd * d + 3 * d * h) * iters
    check(gemm == want, "%s: GEMM flops %r, expected %r" % (shape, gemm, want))
    # the printed table just above this JSON line: rows add up within their rounding
    start = next(k for k, l in enumerate(lines) if l.startswith("ops %s," % shape))
    rows = []
    for l in lines[start + 2:]:
        f = l.split()
        if l.startswith("forward "):
            total = (int(f[1]), float(f[2]), float(f[4].rstrip("%")))
            break
        rows.append((0 if f[-6] == "-" else int(f[-6]), float(f[-5]), float(f[-3].rstrip("%"))))
    check(len(rows) == len(t["ops"]) + 1, "%s: %d table rows" % (shape, len(rows)))
    check(sum(r[0] for r in rows) == total[0], "%s: calls column sums to %d, forward row %d" % (shape, sum(r[0] for r in rows), total[0]))
    check(abs(sum(r[1] for r in rows) - total[1]) <= 0.0005 * (len(rows) + 1), "%s: total ms column" % shape)
    check(abs(sum(r[2] for r in rows) - 100.0) <= 0.05 * (len(rows) + 1) and total[2] == 100.0, "%s: %% column" % shape)
sys.exit(1 if bad else 0)
PY
}

# logits_of LOG: the {"mode":"logits"} line of a bench --ids run.
logits_of() { grep '^{"mode":"logits"' "$1"; }

# same_logits WHAT LOG1 LOG2: both runs printed the same (non-empty) logits.
same_logits() {
    if [ -n "$(logits_of "$2")" ] && [ "$(logits_of "$2")" = "$(logits_of "$3")" ]; then
        echo "ok   $1 gives the same logits"
    else
        fail "$1 changed the logits"
    fi
}

# run_ops NAME PROGRAM ARGS...: bench --ops with --ids; output in $TMP/NAME.log.
run_ops() {
    local name=$1 prog=$2; shift 2
    "$prog" bench --model "$M" --shapes "$SHAPES" --warmup 1 --iters "$ITERS" --ops --ids "$IDS" "$@" >"$TMP/$name.log" 2>&1 ||
        { fail "$name: exit $?"; cat "$TMP/$name.log"; }
}

run_ops cpu "$CPU" --device cpu --threads 2
check_ops cpu "$TMP/cpu.log"
LM_SYNC_EVERY_OP=1 run_ops cpu-sync "$CPU" --device cpu --threads 2
check_ops cpu-sync "$TMP/cpu-sync.log"
grep -q '"timing":"wall"' "$TMP/cpu-sync.log" || fail "LM_SYNC_EVERY_OP=1: the table is not wall-timed"
grep -q 'note: LM_SYNC_EVERY_OP=1' "$TMP/cpu-sync.log" || fail "LM_SYNC_EVERY_OP=1: no note on stderr"
same_logits "cpu: LM_SYNC_EVERY_OP=1" "$TMP/cpu.log" "$TMP/cpu-sync.log"
if "$CPU" bench --model "$M" --device cpu --ops --golden "$M/golden.json" >"$TMP/golden-ops.log" 2>&1; then
    fail "--ops with --golden was accepted"
else
    grep -q -- "--ops" "$TMP/golden-ops.log" || fail "--ops with --golden: no clear message"
fi

if [ ! -x "$EMU" ]; then
    echo "cuda-emu part skipped: $EMU not built (no CUDA toolkit at configure time)"
    itest_finish
fi
run_ops emu "$EMU" --device cuda --dtype bf16
check_ops emu "$TMP/emu.log"
grep -q 'timed by CUDA events' "$TMP/emu.log" || fail "emu: the table is not timed by CUDA events"
LM_SYNC_EVERY_OP=1 run_ops emu-sync "$EMU" --device cuda --dtype bf16
check_ops emu-sync "$TMP/emu-sync.log"
same_logits "emu: LM_SYNC_EVERY_OP=1" "$TMP/emu.log" "$TMP/emu-sync.log"

# The Lt cache: 3 shapes, T = 32 and 40 share the range [32, 64), T = 8 has its own. Keys: the
# distinct (rows, cols, output type) of the layer's weights (q, k = v, o -> fp32, gate = up,
# down -> fp32); the --ids batch (T = 24) is a third range.
lt_run() { # lt_run NAME ENV...: bench with emulator counters; output in $TMP/NAME.log
    local name=$1; shift
    env CUDA_EMU_STATS=1 "$@" "$EMU" bench --model "$M" --device cuda --dtype fp16 --shapes 2x16,2x20,1x8 --warmup 1 \
        --iters 2 --ids "$IDS" >"$TMP/$name.log" 2>&1 || { fail "$name: exit $?"; cat "$TMP/$name.log"; }
}
lt_run lt LM_GEMM_DEBUG=1
keys=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
d, h = c["hidden_size"], c["intermediate_size"]
hd = c.get("head_dim", d // c["num_attention_heads"])
qd, kvd = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
print(len({(qd + 2 * kvd, d, "w"), (d, qd, "f32"), (2 * h, d, "w"), (d, h, "f32")}))' "$M/config.json")
# o_proj and down_proj add into the fp32 residual stream (beta = 1: this fp16 Llama has no
# post-norms), and a beta != 0 GEMM takes the heuristic's first choice untimed (timing runs would
# overwrite its output): 2 of the keys are untimed in each range.
untimed_keys=2
q=$(sed -n 's/^cuda-emu: cublasLt: \([0-9]*\) heuristic queries, \([0-9]*\) algorithm checks.*/\1 \2/p' "$TMP/lt.log")
if [ "$q" = "$((3 * keys)) $keys" ]; then
    echo "ok   emu: cublasLt heuristics asked $((3 * keys)) times ($keys keys x 3 ranges), $keys borrowed"
else
    fail "emu: cublasLt heuristic queries / checks '$q', expected '$((3 * keys)) $keys'"
    grep 'gemm' "$TMP/lt.log" | head -20
fi
[ "$(grep -c ': tuned ' "$TMP/lt.log")" = "$((3 * (keys - untimed_keys)))" ] || fail "emu: LM_GEMM_DEBUG tuned lines"
[ "$(grep -c ': untimed, ' "$TMP/lt.log")" = "$((3 * untimed_keys))" ] || fail "emu: LM_GEMM_DEBUG untimed lines"
[ "$(grep -c ': borrowed ' "$TMP/lt.log")" = "$keys" ] || fail "emu: LM_GEMM_DEBUG borrowed lines"
# Every later GEMM is a cache hit: 10 forwards (3 shapes x 3, and --ids) of G GEMMs each (forward.c's
# matmul calls in the layer loop x layers), less the first use of each of the keys x 4 values of T.
G=$(python3 -c '
import json, re, sys
src = open(sys.argv[1]).read()
loop = src[src.index("for (int l = 0; l < c->n_layers; l++) {"):src.index("op->pool_score(")]
print(len(re.findall(r"\bop->matmul(_f32|_residual)?\(", loop)) * json.load(open(sys.argv[2]))["num_hidden_layers"])' "$FWD" "$M/config.json")
hits=$((10 * G - 4 * keys))
if grep -q "^lm-worker: gemm algorithms: $((3 * (keys - untimed_keys))) keys timed, $keys borrowed, 0 refused; $hits GEMMs from the cache" \
    "$TMP/lt.log"; then
    echo "ok   emu: $hits of $((10 * G)) GEMMs served from the algorithm cache"
else
    fail "emu: cache hits, expected $hits"; grep 'gemm algorithms' "$TMP/lt.log"
fi
lt_run lt-off LM_CUBLASLT=0
lt_run lt-refused CUDA_EMU_LT_REFUSE=1
grep -q '^cuda-emu: cublasLt: 0 heuristic queries, 0 algorithm checks, 0 matmuls' "$TMP/lt-off.log" ||
    fail "LM_CUBLASLT=0 still used cublasLt"
grep -q ', 0 matmuls$' "$TMP/lt-refused.log" || fail "a refused cublasLt still ran matmuls"
same_logits "emu: cublasGemmEx (LM_CUBLASLT=0) instead of cublasLt" "$TMP/lt.log" "$TMP/lt-off.log"
same_logits "emu: the fallback when cublasLt refuses" "$TMP/lt.log" "$TMP/lt-refused.log"
itest_finish
