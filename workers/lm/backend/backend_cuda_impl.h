/* backend_cuda_impl.h: the CUDA backend's private state and the few helpers its files share:
 * backend_cuda.c (arena, errors, ops, lifetime) and backend_cuda_upload.c (the weight load
 * path). Private to backend/; nothing outside the CUDA backend includes it, and it declares no
 * op of backend.h (those are reached through the op table).
 */
#ifndef LM_BACKEND_CUDA_IMPL_H
#define LM_BACKEND_CUDA_IMPL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "backend_cuda_lt.h"

typedef struct {
    void *ptr;    // device memory from cudaMalloc
    size_t bytes;  // size, a multiple of CUDA_ALIGN
    int used;     // 1 while handed out
    int cached;   // 1: mem_free keeps it for reuse; 0: mem_free returns it to CUDA
    void *shadow; // optional host copy (batch cu_seqlens for launch planning), freed with the block
} cblock_t;

typedef struct cuda_upload cuda_upload_t; // backend_cuda_upload.c's state

typedef struct {
    int device, sm;              // CUDA device index; compute capability as 10 * major + minor
    char device_name[256];       // "NVIDIA H100 80GB HBM3, sm_90", for error messages
    cudaStream_t stream;         // the one stream every copy and launch is queued on
    cublasHandle_t blas;         // cuBLAS handle bound to stream
    int quant_int8;              // store large weight matrices as int8 with per-row scales
    int attn_generic;            // LM_ATTN_GENERIC=1: never use the tensor-core attention kernel
    cblock_t *blocks;            // (n_blocks) every block held from cudaMalloc
    int n_blocks, cap_blocks;    // entries used / allocated in blocks
    size_t reserved;             // bytes held from cudaMalloc
    int failed;                  // a failure was recorded since the last sync
    err_t err;                   // the first failure, valid when failed
    cuda_upload_t *up;           // upload ring and pending device checks; NULL until the first upload
    int32_t *batch_pinned;       // (batch_cap) pinned staging of batch arrays
    size_t batch_cap;            // int32 elements batch_pinned holds
    cudaEvent_t batch_done;      // recorded after the copies out of batch_pinned
    float *logits_pinned;        // (logits_cap) pinned landing buffer for pool_score
    size_t logits_cap;           // floats logits_pinned holds
    void *blas_ws;               // (BLAS_WORKSPACE) cuBLAS and cublasLt workspace, from the arena
    lt_cache_t *lt;              // cublasLt GEMMs and their algorithm cache; NULL: cublasGemmEx only
    void *deq;                   // (rows, cols) of the largest int8 weight so far, in the compute dtype
    void *logits_dev;            // (B, n_labels) fp32 logits of the last pool_score
    cudaEvent_t *marks;          // (cap_marks) timing events of the mark hooks, created as needed
    int n_marks, cap_marks;      // marks recorded since marks_reset / events created
} cuda_impl_t;

/* The CUDA backend's private state of b. */
static inline cuda_impl_t *impl_of(backend_t *b) { return (cuda_impl_t *)b->impl; }

/* backend_cuda.c: record the first failure (later ones are printed only) with exit code `code`.
 * Returns -1. */
int cuda_record(backend_t *b, int code, const char *msg);

/* backend_cuda.c: check a CUDA runtime result; on failure print and record the call, file:line,
 * error string and device. Returns 0, or -1. Used through CK. */
int cuda_check_(backend_t *b, cudaError_t e, const char *call, const char *file, int line);
#define CK(b, call) cuda_check_((b), (call), #call, __FILE__, __LINE__)

/* backend_cuda.c: a device block of at least `bytes` from the caching arena (cached: returned to
 * the cache by cuda_mem_free, else to CUDA), `what` naming it in an out-of-memory error. Returns
 * NULL with the failure recorded. */
void *arena_alloc(backend_t *b, size_t bytes, int cached, const char *what);

/* backend_cuda.c: backend_ops_t.mem_free. */
void cuda_mem_free(backend_t *b, void *p);

/* backend_cuda_upload.c: backend_ops_t.vec_upload and .weight_upload. */
void *cuda_vec_upload(backend_t *b, const float *host, size_t n);
int cuda_weight_upload(backend_t *b, bweight_t *w, const void *host, dtype_t src, int rows, int cols,
                       const char *name);

/* backend_cuda_upload.c: after the stream is synchronised, record (cuda_record, EXIT_DATAERR) the
 * first value a pending upload found on the device that its dtype cannot hold, naming the
 * tensor, row and column; then forget the pending checks. Returns 0, or -1 when one was found. */
int cuda_upload_collect(backend_t *b);

/* backend_cuda_upload.c: free the upload ring (pinned buffers, events, threads); the stream
 * must be idle. NULL-safe in b->impl->up. */
void cuda_upload_free(backend_t *b);

#endif
