/* backend_cuda_plugin.h: the seam between lm-worker and its CUDA backend plugin (liblm_cuda.so).
 *
 * lm-worker never links the CUDA runtime or cuBLAS: backend_cuda.c is built into a shared object
 * that exports one symbol, lm_cuda_plugin_v1, and backend_cuda_load.c dlopen()s it when a CUDA
 * device is asked for. The plugin hands back this descriptor; the loader refuses a plugin whose
 * ABI number or struct sizes differ from its own (a plugin from another build). The emulator
 * build (tests/cuda_emu) links backend_cuda.c in and calls the same entry point directly.
 * It holds no loading logic (backend_cuda_load.c) and no backend code (backend_cuda.c).
 */
#ifndef LM_BACKEND_CUDA_PLUGIN_H
#define LM_BACKEND_CUDA_PLUGIN_H

#include <stddef.h>
#include "backend.h"

/* Bump when backend.h's structs, backend_ops_t or this descriptor change incompatibly. */
#define LM_CUDA_PLUGIN_ABI 4 // 2: matmul_f32; residual_add takes an fp32 y. 3: weight_concat, qkv_rope, residual_norm,
                             // gated_act on gate|up; timing marks. 4: weight_upload takes raw bytes
#define LM_CUDA_PLUGIN_FILE "liblm_cuda.so"     // the plugin's file name, in lib/ next to lm-worker
#define LM_CUDA_PLUGIN_SYMBOL "lm_cuda_plugin_v1" // its one exported symbol

typedef struct {
    int abi;               // LM_CUDA_PLUGIN_ABI the plugin was compiled with
    int cuda_version;      // CUDART_VERSION it was built against, e.g. 12040 for 12.4
    size_t backend_size;   // sizeof(backend_t) in the plugin (layout check)
    size_t ops_size;       // sizeof(backend_ops_t) in the plugin
    size_t err_size;       // sizeof(err_t) in the plugin
    /* backend_cuda_create's contract (backend.h), minus the driver/cuBLAS probing the loader did. */
    backend_t *(*create)(dtype_t dt, int quant_int8, err_t *err);
} lm_cuda_plugin_t;

/* The plugin's entry point: its static descriptor. */
const lm_cuda_plugin_t *lm_cuda_plugin_v1(void);

#endif
