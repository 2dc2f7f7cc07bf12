/* kernel_util.cuh: device helpers shared by the kernels in this directory: conversions between
 * fp32 and the storage dtypes, warp/block reductions, ldmatrix / cp.async wrappers, and the
 * dtype dispatch used by every launcher. Private to kernels/; host code includes kernels.h only.
 *
 * Kernels are launched with LAUNCH(grid, block, smem, stream, kernel)(args...) and declare
 * dynamic shared memory with DYN_SMEM(type, name): under nvcc these are `<<<...>>>` and
 * `extern __shared__`; under tests/cuda_emu (LM_CUDA_EMU, the kernels compiled as C++ for the
 * CPU emulator) cuda_emu.h defines them instead.
 */
#ifndef LM_KERNEL_UTIL_CUH
#define LM_KERNEL_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#ifndef LM_CUDA_EMU
#define LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define DYN_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

/* Storage dtype <-> fp32. from_f32 rounds to nearest even, as torch's .to(dtype) does, except
 * that fp16 saturates: a finite value beyond +-65504 is stored as +-65504, never as infinity (a
 * cast would give inf, and the next norm or softmax NaN). NaN stays NaN. Weights never reach
 * the saturation: their upload refuses values fp16 cannot hold (backend_cuda.c). */
template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) {
    return __float2half_rn(x > 65504.0f ? 65504.0f : x < -65504.0f ? -65504.0f : x);
}

/* x rounded through T and back: marks the places where transformers would hold a value in the
 * activation dtype, so that reduced-precision runs round where it does. */
template <typename T> __device__ __forceinline__ float round_as(float x) { return to_f32<T>(from_f32<T>(x)); }

/* Sum of v over the 32 lanes of a full warp (butterfly); every lane gets the result. */
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Maximum of v over the 32 lanes of a full warp; every lane gets the result. */
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum of v over the block; every thread gets the result. blockDim.x must be a multiple of 32
 * (at most 1024). `scratch` holds 32 floats of shared memory; it may be reused after return. */
__device__ __forceinline__ float block_sum(float v, float *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous block_sum
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

/* ---------------------------------------------------------------------------------------------
 * ldmatrix and cp.async: PTX inline assembly under nvcc, the cuda-emu instructions (which check
 * the PTX ISA's rules and layouts) under LM_CUDA_EMU, as for mma.sync in attention.cu.
 * ------------------------------------------------------------------------------------------- */

/* ldmatrix.sync.aligned.m8n8.x{N}{.trans}.shared.b16 (warp collective, sm_75+): lane 8*i + r
 * passes the 16-byte-aligned shared address of row r of 8x8 matrix i (i < N); d[i] receives
 * row lane/4, columns 2*(lane%4) and 2*(lane%4)+1 of matrix i (of its transpose with TRANS). */
template <int N, bool TRANS> __device__ __forceinline__ void ldsm(uint32_t (&d)[N], const void *row) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(LM_CUDA_EMU)
    emu::ldmatrix(d, N, TRANS, row);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    if constexpr (N == 4 && TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(a));
    else if constexpr (N == 4)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(a));
    else if constexpr (N == 2 && TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(d[0]), "=r"(d[1]) : "r"(a));
    else if constexpr (N == 2)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(d[0]), "=r"(d[1]) : "r"(a));
    else if constexpr (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(d[0]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(d[0]) : "r"(a));
#else
    (void)d, (void)row;
    __trap(); // no kernel selects ldmatrix below sm_75
#endif
}

/* 16 bytes global -> shared (both 16-byte aligned), asynchronously where the GPU can (sm_80+:
 * cp.async.cg, which bypasses L1): with valid == false the 16 bytes are zero-filled and src is
 * not read. Complete only after cp_async_commit() and a cp_async_wait<n>() that retires its group;
 * below sm_80 it is an ordinary load and store, and commit/wait do nothing. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
#if defined(LM_CUDA_EMU)
    if (emu::sm() >= 80) {
        emu::cp_async(dst, src, 16, valid ? 16 : 0, 1);
        return;
    }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned a = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(src), "r"(valid ? 16 : 0) : "memory");
    return;
#endif
    *(uint4 *)dst = valid ? *(const uint4 *)src : make_uint4(0u, 0u, 0u, 0u);
}

/* cp.async.commit_group: this thread's cp_async16 calls since the last commit form one group. */
__device__ __forceinline__ void cp_async_commit() {
#if defined(LM_CUDA_EMU)
    if (emu::sm() >= 80) emu::cp_async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

/* cp.async.wait_group N: wait until at most N of this thread's committed groups are still in
 * flight. Other threads' copies are visible only after a __syncthreads that follows their wait. */
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if defined(LM_CUDA_EMU)
    if (emu::sm() >= 80) emu::cp_async_wait(N);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* Run the statement(s) after T with `T` bound to the storage type of `dt`; unknown dtypes return InvalidValue. */
#define KERNEL_DISPATCH(dt, T, ...)                                                             \
    do {                                                                                        \
        switch (dt) {                                                                           \
        case KDT_F32: { typedef float T; __VA_ARGS__; break; }                                  \
        case KDT_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; break; }                         \
        case KDT_F16: { typedef __half T; __VA_ARGS__; break; }                                 \
        default: return cudaErrorInvalidValue;                                                  \
        }                                                                                       \
    } while (0)

/* 16-byte vector access. Elementwise kernels move VEC = 8 elements per step: one 16-byte load or
 * store of a 16-bit type, two of fp32. They take this path when every pointer is 16-byte aligned
 * (vec_aligned) and every row width a multiple of 8, and a scalar path otherwise. */
#define VEC 8

/* Whether p (a device pointer, or NULL) allows 16-byte accesses. */
static inline __host__ __device__ bool vec_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* v[0..8) = p[0..8) as fp32; p 16-byte aligned. */
template <typename T> __device__ __forceinline__ void load8(const T *p, float *v) {
    static_assert(sizeof(T) == 2, "16-bit storage types");
    uint4 raw = *reinterpret_cast<const uint4 *>(p);
    T h[VEC];
    memcpy(static_cast<void *>(h), &raw, sizeof raw);
    for (int j = 0; j < VEC; j++) v[j] = to_f32<T>(h[j]);
}
template <> __device__ __forceinline__ void load8<float>(const float *p, float *v) {
    float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/* p[0..8) = from_f32<T>(v[0..8)) (rounded, fp16 saturating); p 16-byte aligned. */
template <typename T> __device__ __forceinline__ void store8(T *p, const float *v) {
    static_assert(sizeof(T) == 2, "16-bit storage types");
    T h[VEC];
    for (int j = 0; j < VEC; j++) h[j] = from_f32<T>(v[j]);
    uint4 raw;
    memcpy(&raw, static_cast<const void *>(h), sizeof raw);
    *reinterpret_cast<uint4 *>(p) = raw;
}
template <> __device__ __forceinline__ void store8<float>(float *p, const float *v) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

/* v[0..8) = p[0..8) of int8 as fp32, one 8-byte load; p 8-byte aligned. */
__device__ __forceinline__ void load8_i8(const int8_t *p, float *v) {
    uint2 raw = *reinterpret_cast<const uint2 *>(p);
    int8_t b[VEC];
    memcpy(b, &raw, sizeof raw);
    for (int j = 0; j < VEC; j++) v[j] = (float)b[j];
}

/* Copy 8 elements of T (16 or 32 bytes) unchanged; both pointers 16-byte aligned. */
template <typename T> __device__ __forceinline__ void copy8(T *dst, const T *src) {
    for (int j = 0; j < (int)(VEC * sizeof(T) / 16); j++)
        reinterpret_cast<uint4 *>(dst)[j] = reinterpret_cast<const uint4 *>(src)[j];
}

/* Blocks for a grid-stride loop over n elements with `threads` per block. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b > 65535u * 8u) b = 65535u * 8u; // grid-stride loops cover the rest
    return b ? (unsigned)b : 1u;
}

#endif
