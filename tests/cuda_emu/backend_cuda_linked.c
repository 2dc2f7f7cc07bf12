/* backend_cuda_linked.c: backend_cuda_create() for the emulator builds (lm-worker-emu,
 * test_kernels_emu): backend_cuda.c is linked in, so its plugin entry point is called directly;
 * there is no driver to probe, no cuBLAS to find and no plugin to dlopen (backend_cuda_load.c
 * does that for the real lm-worker). */
#include <stdio.h>

#include "backend.h"
#include "backend_cuda_plugin.h"

backend_t *backend_cuda_create(dtype_t dt, int quant_int8, err_t *err) {
    return lm_cuda_plugin_v1()->create(dt, quant_int8, err);
}

int backend_cuda_usable(err_t *err) {
    (void)err;
    return 0; // linked in; whether the emulated device exists is backend_cuda_create's to say
}

void backend_cuda_describe(char *buf, size_t n) {
    snprintf(buf, n, "built for CUDA %d.%d; linked in, running on cuda-emu (the CPU emulator)",
             lm_cuda_plugin_v1()->cuda_version / 1000, lm_cuda_plugin_v1()->cuda_version % 1000 / 10);
}
