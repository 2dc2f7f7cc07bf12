/* emu_internal.h: what the two halves of cuda-emu share: the device's work queue and settings
 * (emu_runtime.cpp) and the block runner (emu_device.cpp). Private to tests/cuda_emu/.
 */
#ifndef LM_EMU_INTERNAL_H
#define LM_EMU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <functional>

#include <cublas_v2.h>

#include "cuda_emu.h"

namespace emu {

enum { ORDER_WARPS = 0, ORDER_WARPS_REVERSE, ORDER_LOCKSTEP }; // block schedules, see run_block

/* The emulated device: settings read once from the environment (see emu_runtime.cpp). */
struct device_cfg_t {
    int sm;               // CUDA_EMU_SM: compute capability, 10 * major + minor (default 80)
    size_t mem_bytes;     // CUDA_EMU_MEM_MB: device memory (default 16384 MiB, a T4's)
    size_t smem_optin;    // opt-in shared memory per block for sm (T4 64 KiB, A100 163 KiB, H100 227 KiB)
    int poison;           // CUDA_EMU_POISON=0 disables filling fresh device/shared memory with 0xff (NaN)
    int async_early;      // CUDA_EMU_ASYNC=early: cp.async copies land at issue (default late: at their wait)
    int order;            // CUDA_EMU_ORDER: ORDER_WARPS (default), ORDER_WARPS_REVERSE or ORDER_LOCKSTEP
    int dry;              // CUDA_EMU_DRY=1: allocate and account, but run no kernel, GEMM, copy or memset
};
const device_cfg_t &device_cfg();

/* The single in-order work queue of the device (all streams serialise on it, a valid CUDA
 * schedule). push returns the operation's sequence number; flush runs queued operations up to
 * and including `upto` (all by default), in order. */
uint64_t queue_push(std::function<void()> op);
uint64_t queue_tail();
void queue_flush(uint64_t upto = UINT64_MAX);

/* cudaGetLastError's slot: set by a failed launch, read-and-cleared by cudaGetLastError. */
void set_last_error(cudaError_t e);

/* Dynamic shared memory a kernel may use: 48 KiB, or what cudaFuncSetAttribute opted into. */
size_t func_dyn_smem_limit(const void *func);

/* Queue D (m, n; ldd) = al * op(A) op(B) + be * C (C read only when be != 0; C may be D),
 * column-major, fp32/bf16/fp16 operands (A and B of one type), every element converted exactly
 * to fp32, products summed in fp32 in order, rounded to D's type to nearest even: the one GEMM of
 * cublasGemmEx (emu_runtime.cpp) and cublasLtMatmul (emu_cublaslt.cpp). Returns
 * CUBLAS_STATUS_INVALID_VALUE for bad sizes or leading dimensions, CUBLAS_STATUS_NOT_SUPPORTED
 * for other types. */
cublasStatus_t gemm_enqueue(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                            cudaDataType At, int lda, const void *B, cudaDataType Bt, int ldb, float be, const void *C,
                            cudaDataType Ct, int ldc, void *D, cudaDataType Dt, int ldd);

/* Run every block of one launch (called from the queue). */
void run_kernel(dim3 grid, dim3 block, size_t smem, const char *name, kernel_body *body);

} // namespace emu

#endif
