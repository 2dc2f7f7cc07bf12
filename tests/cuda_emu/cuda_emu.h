/* cuda_emu.h: the device side of cuda-emu, a functional CUDA emulator that runs this project's
 * kernels and its CUDA backend on the CPU, so that the GPU code path is executed (not only
 * compiled) on machines without a GPU: this one, CI's, and every contributor's.
 *
 * How: each kernels/<op>.cu is compiled as C++ by the host compiler with this header forced in
 * first (-include cuda_emu.h, -DLM_CUDA_EMU). The real CUDA headers supply the types (dim3,
 * __half, __nv_bfloat16 and their host-side conversions); this header supplies what only a
 * device compiler has: threadIdx and friends, __syncthreads, warp shuffles, the mma.sync,
 * ldmatrix and cp.async instructions the attention kernel uses, and the launch (kernels write
 * LAUNCH(...), which is `<<<...>>>` under nvcc). emu_device.cpp runs every CUDA thread of a
 * block as a fiber, switching only at barriers and warp collectives, so block and warp
 * semantics are exact and runs are deterministic. emu_runtime.cpp provides the CUDA runtime and cuBLAS calls the backend makes.
 *
 * What it checks: indexing, masking, shared-memory use, warp-collective agreement (every lane of
 * a warp must reach the same collective), mma and ldmatrix fragment layouts as the PTX ISA
 * defines them, cp.async completion (a copy lands only at the wait_group that retires it, or
 * with CUDA_EMU_ASYNC=early at once), launch
 * limits (block size, grid size, shared memory and its opt-in), stream ordering (work runs when
 * the host synchronises, so a missing sync reads stale data) and out-of-bounds device accesses
 * past the end of an allocation (guard pages). What it cannot check: speed, real hardware
 * rounding of tensor-core sums, the memory model between threads that do not synchronise, and
 * nvcc's own code generation. It is test infrastructure; nothing in lm-worker depends on it.
 */
#ifndef LM_CUDA_EMU_H
#define LM_CUDA_EMU_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <utility>

/* Device qualifiers mean nothing on the host. __shared__ becomes `static`: the fibers of one
 * block share it, and blocks run one after another, so that is exactly block scope. */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)

namespace emu {

/* The position of the running fiber: its thread and block index and the launch shape. */
const uint3 &thread_idx();
const uint3 &block_idx();
const dim3 &block_dim();
const dim3 &grid_dim();

/* __syncthreads: wait until every live thread of the block arrives. */
void syncthreads();
/* __syncwarp: wait until every lane of the calling warp in `mask` arrives. */
void syncwarp(unsigned mask);
/* The value `bits` of lane `src` of the calling warp (all of `mask` must call it together). */
uint64_t shfl_bits(unsigned mask, uint64_t bits, int src_lane, int width, int xor_mode);
/* The block's dynamic shared memory (the launch's smem bytes, 16-byte aligned). */
void *dyn_smem();
/* The emulated compute capability as 10 * major + minor (CUDA_EMU_SM, default 80). */
int sm();
/* __trap: report the kernel, block and thread, then abort. */
[[noreturn]] void trap(const char *why);

/* Warp-collective mma.sync with the PTX ISA's fragment layouts (see emu_device.cpp):
 * m16n8k16 with .bf16 (is_bf16) or .f16 inputs, and m16n8k8 with .f16 inputs; c += a * b in fp32. */
void mma_m16n8k16(float c[4], const uint32_t a[4], const uint32_t b[2], int is_bf16);
void mma_m16n8k8_f16(float c[4], const uint32_t a[2], uint32_t b);

/* Warp-collective ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16 (num 1, 2 or 4; sm_75+):
 * `row` is this lane's row address (lanes 8*i .. 8*i+7 give the 8 rows of matrix i; lanes past
 * 8*num are ignored); d[i] receives row lane/4, elements 2*(lane%4) and 2*(lane%4)+1 of matrix i,
 * or with trans those of its transpose. Every row address must be 16-byte aligned and lie in
 * the block's dynamic shared memory. */
void ldmatrix(uint32_t *d, int num, int trans, const void *row);

/* cp.async.{ca,cg}.shared.global [dst], [src], bytes, src_bytes (sm_80+; cg needs bytes 16):
 * queued for this thread; the copy (src_bytes from src, the rest of `bytes` zero) happens only
 * when a cp_async_wait retires its group (with CUDA_EMU_ASYNC=early: at once). */
void cp_async(void *dst, const void *src, int bytes, int src_bytes, int cg);
/* cp.async.commit_group: the thread's uncommitted copies become its newest group. */
void cp_async_commit();
/* cp.async.wait_group n: perform the thread's oldest groups until at most n remain pending
 * (cp.async.wait_all is cp_async_commit() then cp_async_wait(0)). */
void cp_async_wait(int n);

/* The type-erased body of one launch; run once per emulated thread. */
struct kernel_body {
    virtual ~kernel_body() {}
    virtual void run() = 0;
};
/* Queue a launch on the emulated device (it runs when the host next synchronises). Checks the
 * launch limits now, as the driver does; a bad configuration is returned (and becomes the last
 * error) and nothing is queued. Takes ownership of body. */
cudaError_t enqueue_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *func,
                           const char *name, kernel_body *body);

template <typename... P> struct bound_kernel : kernel_body {
    void (*fn)(P...);
    std::tuple<P...> args; // copied at launch, as CUDA copies kernel parameters
    bound_kernel(void (*f)(P...), std::tuple<P...> a) : fn(f), args(std::move(a)) {}
    void run() override { std::apply(fn, args); }
};

template <typename... P> struct launcher {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    void (*fn)(P...);
    const char *name;
    template <typename... A> void operator()(A &&...a) {
        std::tuple<P...> args(static_cast<P>(std::forward<A>(a))...);
        (void)enqueue_launch(grid, block, smem, stream, reinterpret_cast<const void *>(fn), name,
                             new bound_kernel<P...>(fn, std::move(args)));
    }
};

template <typename... P>
launcher<P...> make_launcher(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, void (*fn)(P...),
                             const char *name) {
    return launcher<P...>{grid, block, smem, stream, fn, name};
}

} // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())

/* LAUNCH(grid, block, smem, stream, kernel)(args...): kernel<<<grid, block, smem, stream>>>(args...) */
#define LAUNCH(grid, block, smem, stream, ...) emu::make_launcher(grid, block, smem, stream, __VA_ARGS__, #__VA_ARGS__)
/* DYN_SMEM(type, name): extern __shared__ type name[] (16-byte aligned). */
#define DYN_SMEM(type, name) type *const name = (type *)emu::dyn_smem()

static inline void __syncthreads() { emu::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::syncwarp(mask); }
[[noreturn]] static inline void __trap() { emu::trap("__trap()"); }

template <typename T> static inline T emu_shfl(unsigned mask, T v, int lane, int width, int xor_mode) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 64 bits");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = emu::shfl_bits(mask, bits, lane, width, xor_mode);
    T out;
    memcpy(&out, &bits, sizeof out);
    return out;
}
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return emu_shfl(mask, v, src, width, 0);
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu_shfl(mask, v, lane_mask, width, 1);
}

/* The typed overload nvcc's cuda_runtime.h declares only for device compilers. */
template <typename... P>
static inline cudaError_t cudaFuncSetAttribute(void (*fn)(P...), enum cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void *>(fn), attr, value);
}

/* Device math the host library lacks. */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
/* Fibers run one at a time and switch only at barriers and collectives: every atomic is atomic. */
static inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    unsigned long long old = *p;
    if (v < old) *p = v;
    return old;
}
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
static inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, sizeof i);
    return i;
}

#endif
