/* convert.cu: elementwise conversion between fp32 and the compute dtype, used by the kernel
 * tests to make and read back inputs (weights are converted at upload by upload.cu).
 * Rounding is to nearest even, as torch's .to(torch.bfloat16) does.
 */
#include "kernel_util.cuh"

/* dst[i] = src[i] rounded to T (nearest even), i < n; grid-stride loop. */
template <typename T>
__global__ void convert_from_f32_kernel(T *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<T>(src[i]);
}

/* dst[i] = src[i] widened to fp32 (exact), i < n; grid-stride loop. */
template <typename T>
__global__ void convert_to_f32_kernel(float *dst, const T *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = to_f32<T>(src[i]);
}

extern "C" cudaError_t convert_from_f32(void *dst, const float *src, size_t n, kdtype_t dt, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (dt == KDT_F32) return cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n, 256), 256, 0, stream, convert_from_f32_kernel<S>)((S *)dst, src, n));
    return cudaGetLastError();
}

extern "C" cudaError_t convert_to_f32(float *dst, const void *src, size_t n, kdtype_t dt, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (dt == KDT_F32) return cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n, 256), 256, 0, stream, convert_to_f32_kernel<S>)(dst, (const S *)src, n));
    return cudaGetLastError();
}
