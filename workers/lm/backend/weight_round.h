/* weight_round.h: a CPU backend whose weights carry the GPU's storage rounding, so that a
 * reduced-precision GPU run can be split into the error its weights cause (unavoidable: any
 * bf16/fp16/int8 implementation, transformers included, stores these same values) and the
 * error its arithmetic adds. `lm-worker bench --round-weights` uses it; see docs/cuda-emu.md.
 */
#ifndef LM_WEIGHT_ROUND_H
#define LM_WEIGHT_ROUND_H

#include "backend.h"
#include "check.h"

/* Make the CPU backend b store every weight matrix as the CUDA backend would hold it, in fp32:
 * mode "bf16" or "fp16" rounds each element to nearest even; "int8" quantises matrices of
 * QUANT_MIN_ROWS rows or more per row (quant.h) and dequantises them. Norm weights and other
 * vectors stay fp32, as on the GPU. Activations stay fp32. b's op table is replaced by a copy
 * (one per process: call it once). Returns 0, or -1 with err set for an unknown mode or a
 * backend that is not the CPU's. */
int weight_round_wrap(backend_t *b, const char *mode, err_t *err);

/* x rounded to the nearest bf16 / fp16 value (ties to even), as fp32. Infinities and NaN pass
 * through; fp16 overflows to infinity like a cast does. */
float round_bf16(float x);
float round_f16(float x);

#endif
