/* rmsnorm.cu: RMSNorm of the fp32 residual stream into the compute dtype, and the fused residual
 * add (plain, or through Gemma-2's post-norm) of an fp32 projection output.
 *
 * One block per row. Statistics are fp32 (a block reduction of fp32 squares), so an fp16 run can
 * never overflow them; only the normalised output is rounded to the compute dtype. The weight
 * enters as (offset + w): offset 0 is Llama's x*w, offset 1 is Gemma's x*(1+w).
 * CPU references: cpu_rmsnorm and cpu_residual_add in backend_cpu.c.
 */
#include "kernel_util.cuh"

#define NORM_THREADS 256

/* The fp32 projection output y as the residual add reads it in compute dtype T. bf16 (fp32's
 * range): rounded to bf16, as transformers holds it. fp16: kept in fp32, because rounding could
 * overflow 65504 (inf, then NaN in the post-norm); the one place fp16 runs deliberately differ
 * from transformers, which would produce NaN there. fp32: unchanged. */
template <typename T> __device__ __forceinline__ float proj_value(float y) { return round_as<T>(y); }
template <> __device__ __forceinline__ float proj_value<__half>(float y) { return y; }

/* 1/sqrt(mean(v^2) + eps) over one row of `dim` values of T, each read as proj_value<P> (the
 * default, float, reads it unchanged), returned to every thread. */
template <typename T, typename P = float>
__device__ float row_rms_factor(const T *v, int dim, float eps, float *scratch) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float a = proj_value<P>(to_f32<T>(v[i]));
        ss += a * a;
    }
    ss = block_sum(ss, scratch);
    return rsqrtf(ss / (float)dim + eps);
}

/* One block per row: out[row] (dim, in T) = x[row] * rms factor * (offset + w). */
template <typename T>
__global__ void rmsnorm_kernel(T *out, const float *x, const float *w, int dim, float eps, float offset) {
    __shared__ float scratch[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    T *o = out + (size_t)blockIdx.x * dim;
    float r = row_rms_factor<float>(xr, dim, eps, scratch);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = from_f32<T>((xr[i] * r) * (offset + w[i]));
}

/* x += round(rmsnorm(y) * (offset + w)), y the fp32 o_proj / down_proj output read through
 * proj_value<T>: transformers casts the post-norm output back to the activation dtype before
 * the residual add, and so do we (saturating in fp16). */
template <typename T>
__global__ void residual_postnorm_kernel(float *x, const float *y, const float *w, int dim, float eps, float offset) {
    __shared__ float scratch[32];
    const float *yr = y + (size_t)blockIdx.x * dim;
    float *xr = x + (size_t)blockIdx.x * dim;
    float r = row_rms_factor<float, T>(yr, dim, eps, scratch);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        xr[i] += round_as<T>((proj_value<T>(yr[i]) * r) * (offset + w[i]));
}

/* x[i] += proj_value<T>(y[i]) for i < n (no post-norm), both fp32; grid-stride loop. */
template <typename T>
__global__ void residual_add_kernel(float *x, const float *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] += proj_value<T>(y[i]);
}

extern "C" cudaError_t rmsnorm_forward(void *out, const float *x, const float *w, int T, int dim, float eps,
                                       float offset, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    KERNEL_DISPATCH(dt, S, LAUNCH(T, NORM_THREADS, 0, stream, rmsnorm_kernel<S>)((S *)out, x, w, dim, eps, offset));
    return cudaGetLastError();
}

extern "C" cudaError_t residual_add_forward(float *x, const float *y, const float *post_w, int T, int dim,
                                            float eps, float offset, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    if (post_w) {
        KERNEL_DISPATCH(dt, S, LAUNCH(T, NORM_THREADS, 0, stream, residual_postnorm_kernel<S>)(
                                   x, y, post_w, dim, eps, offset));
    } else {
        size_t n = (size_t)T * dim;
        KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n, 256), 256, 0, stream, residual_add_kernel<S>)(x, y, n));
    }
    return cudaGetLastError();
}
