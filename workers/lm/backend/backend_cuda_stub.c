/* backend_cuda_stub.c: stands in for backend_cuda.c in builds without the CUDA toolkit, so that
 * `--device cuda` is a clear error rather than a link failure or a crash. */
#include "backend.h"
#include "exit_codes.h"

backend_t *backend_cuda_create(dtype_t dt, int quant_int8, err_t *err) {
    (void)dt, (void)quant_int8;
    err_code(err, EXIT_USAGE,
             "this lm-worker was built without CUDA (no nvcc at configure time); "
             "rebuild on a machine with the CUDA toolkit, or use --device cpu");
    return NULL;
}
