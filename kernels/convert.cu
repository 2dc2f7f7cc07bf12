/* convert.cu: elementwise conversion between fp32 and the compute dtype, used by the kernel
 * tests to make and read back inputs (weights are converted at upload by upload.cu).
 * Rounding is to nearest even, as torch's .to(torch.bfloat16) does.
 */
#include "kernel_util.cuh"

/* dst[i] = src[i] converted from S to D through fp32, i < n: widening is exact, narrowing rounds
 * to nearest even (from_f32). Grid-stride loop, 8 elements per step (16-byte accesses) over the
 * first n8 (a multiple of VEC; 0 when a pointer is unaligned), then one by one. */
template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t n, size_t n8) {
    size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = first * VEC; i < n8; i += step * VEC) {
        float v[VEC];
        load8<S>(src + i, v);
        store8<D>(dst + i, v);
    }
    for (size_t i = n8 + first; i < n; i += step) dst[i] = from_f32<D>(to_f32<S>(src[i]));
}

/* Elements of an n-element conversion between dst and src that take the vector path. */
static size_t vec_prefix(const void *dst, const void *src, size_t n) {
    return vec_aligned(dst) && vec_aligned(src) ? n / VEC * VEC : 0;
}

extern "C" cudaError_t convert_from_f32(void *dst, const float *src, size_t n, kdtype_t dt, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (dt == KDT_F32) return cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    size_t n8 = vec_prefix(dst, src, n);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n8 ? n8 / VEC : n, 256), 256, 0, stream, convert_kernel<S, float>)(
                               (S *)dst, src, n, n8));
    return cudaGetLastError();
}

extern "C" cudaError_t convert_to_f32(float *dst, const void *src, size_t n, kdtype_t dt, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (dt == KDT_F32) return cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    size_t n8 = vec_prefix(dst, src, n);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n8 ? n8 / VEC : n, 256), 256, 0, stream, convert_kernel<float, S>)(
                               dst, (const S *)src, n, n8));
    return cudaGetLastError();
}
