/* cuda_test.h: what the unit tests of the CUDA backend share (test_kernels.c, test_upload.c):
 * the skip when the build has no CUDA backend, and TCK, the check of the tests' own CUDA calls.
 * Define CUDA_TEST_NAME ("test_x") before including it; then wrap the rest of the file in
 * #ifdef LM_HAVE_CUDA. It holds no test and no helper that touches a backend.
 */
#ifndef LM_CUDA_TEST_H
#define LM_CUDA_TEST_H

#include <stdio.h>
#include <stdlib.h>

#ifndef LM_HAVE_CUDA
int main(void) {
    printf("%s: skipped: this build has no CUDA backend (no nvcc at configure time)\n", CUDA_TEST_NAME);
    return 77;
}
#else

#include <cuda_runtime_api.h>

/* A test-infrastructure CUDA failure: not a kernel mismatch, so stop right here. */
#define TCK(call)                                                                                          \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s: %s failed at %s:%d: %s\n", CUDA_TEST_NAME, #call, __FILE__, __LINE__,     \
                    cudaGetErrorString(e_));                                                               \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

#endif
#endif
