# golden_lib.sh: the probability tolerance for a reduced-precision golden check (sourced by
# tests/integration/cuda_emu.sh and tools/gpu-check.sh; not a test itself).
#
# Where a checkpoint's weights are not exact in the run's storage type (fp32 weights in
# bf16/fp16, LoRA-merged weights in bf16, any int8), every implementation, transformers
# included, inherits the error of those rounded weights, and on the chaotic random tiny fixtures
# the arithmetic's own rounding adds an error of the same order. So the bound is the issue's
# tolerance plus 3x the error the rounded weights alone cause, measured on the CPU reference
# (fp32 arithmetic, weights held as the GPU holds them: `lm-worker bench --round-weights`).
# Where the weights are exact (tiny-llama's bf16 weights in bf16 or fp16) that term is ~1e-6
# and the bound is the tolerance itself. Measurements: docs/cuda-emu.md.

# golden_weights_err WORKER MODE ARGS...: print the worst probability error of the CPU reference
# with weights rounded to MODE (bf16, fp16, int8) against the golden, ARGS being the bench
# arguments of the GPU run (--model, --adapter, --golden; --quant Q, --int8 and --dtype X are dropped).
golden_weights_err() {
    local worker=$1 mode=$2; shift 2
    local args=("$@") ref=() i
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[i]}" in --int8) ;; --quant | --dtype | --device) i=$((i + 1)) ;; *) ref+=("${args[i]}") ;; esac
    done
    "$worker" bench --device cpu --round-weights "$mode" --prob-tol 1 --logit-tol 1e9 "${ref[@]}" 2>/dev/null |
        sed -n 's/.*worst |dprob| \([^:]*\):.*/\1/p'
}

# golden_tol WORKER MODE BASE ARGS...: print BASE + 3 * golden_weights_err (empty on failure).
golden_tol() {
    local worker=$1 mode=$2 base=$3; shift 3
    local w; w=$(golden_weights_err "$worker" "$mode" "$@")
    [ -n "$w" ] && awk -v a="$base" -v w="$w" 'BEGIN { printf "%.4g\n", a + 3 * w }'
}
