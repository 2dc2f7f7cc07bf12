/* backend_cuda_lt.h: the CUDA backend's cublasLt GEMMs with a per-shape algorithm cache
 * (backend_cuda_lt.c). Private to backend/: only backend_cuda.c includes it.
 */
#ifndef LM_BACKEND_CUDA_LT_H
#define LM_BACKEND_CUDA_LT_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

typedef struct lt_cache lt_cache_t;

/* One GEMM in cuBLAS's column-major terms: D (m, n), ldc = m, = alpha * op(A) (m, k) * B (k, n)
 * + beta * D. A is (k, m) with lda when ta is CUBLAS_OP_T, else (m, k); B is (k, n) with ldb, op N.
 * Compute and scale type fp32. */
typedef struct {
    int m, n, k;             // shape
    cublasOperation_t ta;    // op of A
    const void *A;           // device pointer, type at, leading dimension lda
    cudaDataType_t at;
    int lda;
    const void *B;           // device pointer, type bt, leading dimension ldb
    cudaDataType_t bt;
    int ldb;
    void *D;                 // device pointer, type dt, leading dimension ldd (read too when beta != 0)
    cudaDataType_t dt;
    int ldd;
    float alpha, beta;       // host scalars
    int int8;                // 1: A was dequantised from an int8 weight (a separate cache entry)
} lt_gemm_t;

/* A cublasLt handle on `stream` whose GEMMs may use the device workspace ws (ws_bytes; the
 * caller owns it and may share it with cuBLAS on the same stream). debug: print one line on
 * stderr per algorithm choice (LM_GEMM_DEBUG). Returns NULL with *st set when cublasLt cannot be
 * initialised. */
lt_cache_t *lt_cache_create(cudaStream_t stream, void *ws, size_t ws_bytes, int debug, cublasStatus_t *st);

/* Free the handle, the descriptors and the cache (with debug, first print one line: the keys
 * timed, borrowed and refused, and the GEMMs served from the cache); NULL is a no-op. Queued
 * GEMMs are unaffected. */
void lt_cache_destroy(lt_cache_t *lt);

/* Queue g with the algorithm cached for its key (shape, dtypes, int8, pointer alignment,
 * beta != 0). On a key's first use the algorithm is chosen: the same shape with n in the same
 * power-of-two range already chosen lends its algorithm when cublasLtMatmulAlgoCheck accepts it;
 * otherwise cublasLtMatmulAlgoGetHeuristic's top LT_CANDIDATES are each run once and timed over
 * LT_REPS runs on g's own operands (waiting for the stream; only when beta == 0, since the runs
 * overwrite D), and the fastest kept. Returns CUBLAS_STATUS_SUCCESS; CUBLAS_STATUS_NOT_SUPPORTED
 * when cublasLt has no algorithm for the key (cached too: the caller then uses cublasGemmEx); or
 * the failing status of a cublasLt call (a CUDA runtime failure while timing is printed and
 * returned as CUBLAS_STATUS_EXECUTION_FAILED). */
cublasStatus_t lt_gemm(lt_cache_t *lt, const lt_gemm_t *g);

#endif
