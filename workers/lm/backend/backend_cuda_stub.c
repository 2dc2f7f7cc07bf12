/* backend_cuda_stub.c: backend_cuda_create() in builds without the CUDA toolkit, so that
 * `--device cuda` is a clear error rather than a link failure or a crash. Builds with CUDA use
 * backend_cuda_load.c (the plugin loader) instead. */
#include <stdio.h>

#include "backend.h"
#include "exit_codes.h"

int backend_cuda_usable(err_t *err) {
    return err_code(err, EXIT_UNAVAILABLE,
                    "this lm-worker was built without CUDA (no nvcc at configure time); "
                    "rebuild on a machine with the CUDA toolkit, or use --device cpu");
}

backend_t *backend_cuda_create(dtype_t dt, int quant_int8, err_t *err) {
    (void)dt, (void)quant_int8;
    backend_cuda_usable(err);
    return NULL;
}

void backend_cuda_describe(char *buf, size_t n) { snprintf(buf, n, "none: this lm-worker was built without CUDA"); }
