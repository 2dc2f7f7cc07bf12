/* device.h: pick and open the backend a command asked for (--device, --dtype, --quant, --threads).
 *
 * Shared by `lm-worker logits` and `lm-worker run` so that both read the same flags the same way.
 * "auto" tries CUDA first and falls back to the CPU with a one-line note on stderr; an explicit
 * "cuda" never falls back. It deliberately holds no policy about batch sizes or memory.
 */
#ifndef LM_DEVICE_H
#define LM_DEVICE_H

#include "backend/backend.h"
#include "check.h"

#define DEVICE_CHOICES "auto|cpu|cuda"
#define DEVICE_DTYPE_CHOICES "auto|fp32|bf16|fp16"
#define DEVICE_QUANT_CHOICES "none|int8"

/* Open a backend. device: "auto", "cpu" or "cuda"; dtype: "auto" (CUDA: bf16 where the GPU has
 * it, else fp16; CPU: fp32), "fp32", "bf16" or "fp16"; quant_int8: 1 for --quant int8 (int8
 * weights, CUDA only); threads: CPU threads (0 = all cores). Returns NULL with err set: err->code EXIT_USAGE for a
 * bad flag or a combination the chosen device cannot do (cuda without a GPU included). */
backend_t *device_open(const char *device, const char *dtype, int quant_int8, int threads, err_t *err);

#endif
