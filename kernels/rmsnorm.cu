/* rmsnorm.cu: RMSNorm of the fp32 residual stream into the compute dtype, and the residual add
 * (plain, or through Gemma-2's post-norm) of an fp32 projection output fused with the next
 * block's RMSNorm.
 *
 * One block per row. Statistics are fp32 (a block reduction of fp32 squares), so an fp16 run can
 * never overflow them; only the normalised output is rounded to the compute dtype. The weight
 * enters as (offset + w): offset 0 is Llama's x*w, offset 1 is Gemma's x*(1+w). Rows move in
 * 16-byte vectors (VEC elements per thread and step) when the width is a multiple of VEC and
 * every pointer is 16-byte aligned, element by element otherwise; each thread touches the same
 * elements in every pass over a row, so a pass reads back what the same thread wrote.
 * CPU references: cpu_rmsnorm and cpu_residual_norm in backend_cpu.c.
 */
#include "kernel_util.cuh"

#define NORM_THREADS 256

/* The fp32 projection output y as the residual add reads it in compute dtype T. bf16 (fp32's
 * range): rounded to bf16, as transformers holds it. fp16: kept in fp32, because rounding could
 * overflow 65504 (inf, then NaN in the post-norm); the one place fp16 runs deliberately differ
 * from transformers, which would produce NaN there. fp32: unchanged. */
template <typename T> __device__ __forceinline__ float proj_value(float y) { return round_as<T>(y); }
template <> __device__ __forceinline__ float proj_value<__half>(float y) { return y; }

/* 1/sqrt(mean(v^2) + eps) over one fp32 row of `dim` values, each read as proj_value<P> (the
 * default, float, reads it unchanged), returned to every thread. */
template <typename P = float>
__device__ float row_rms_factor(const float *v, int dim, float eps, bool vec, float *scratch) {
    float ss = 0.0f;
    if (vec) {
        for (int i = threadIdx.x * VEC; i < dim; i += blockDim.x * VEC) {
            float a[VEC];
            load8<float>(v + i, a);
            for (int j = 0; j < VEC; j++) {
                float p = proj_value<P>(a[j]);
                ss += p * p;
            }
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float p = proj_value<P>(v[i]);
            ss += p * p;
        }
    }
    ss = block_sum(ss, scratch);
    return rsqrtf(ss / (float)dim + eps);
}

/* o (dim, in T) = x * r * (offset + w), one row; vec as row_rms_factor. */
template <typename T>
__device__ void norm_store(T *o, const float *x, const float *w, int dim, float r, float offset, bool vec) {
    if (vec) {
        for (int i = threadIdx.x * VEC; i < dim; i += blockDim.x * VEC) {
            float a[VEC], b[VEC];
            load8<float>(x + i, a);
            load8<float>(w + i, b);
            for (int j = 0; j < VEC; j++) a[j] = (a[j] * r) * (offset + b[j]);
            store8<T>(o + i, a);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = from_f32<T>((x[i] * r) * (offset + w[i]));
    }
}

/* One block per row: out[row] (dim, in T) = x[row] * rms factor * (offset + w). */
template <typename T>
__global__ void rmsnorm_kernel(T *out, const float *x, const float *w, int dim, float eps, float offset, bool vec) {
    __shared__ float scratch[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float r = row_rms_factor(xr, dim, eps, vec, scratch);
    norm_store<T>(out + (size_t)blockIdx.x * dim, xr, w, dim, r, offset, vec);
}

/* x[i] + the residual term of y[i]: proj_value<T>(y), or through the post-norm (factor ry,
 * weight pw) round_as<T>(rmsnorm(y) * (offset + pw)), transformers casting the post-norm output
 * back to the activation dtype before the add (saturating in fp16). */
template <typename T>
__device__ __forceinline__ float residual_term(float y, bool post, float ry, float pw, float offset) {
    return post ? round_as<T>((proj_value<T>(y) * ry) * (offset + pw)) : proj_value<T>(y);
}

/* One block per row: x += residual_term(y) (post-norm when post_w; nothing when y is NULL: the
 * GEMM added it already); then, when next_w, the new row's RMSNorm into xn. x is read once and
 * (with y) written once; the norm pass reads back the thread's own writes (L1/L2), y is read
 * twice under a post-norm (its statistics, then the add). */
template <typename T>
__global__ void residual_norm_kernel(float *x, T *xn, const float *y, const float *post_w, const float *next_w,
                                     int dim, float eps, float offset, bool vec) {
    __shared__ float scratch[32];
    const float *yr = y ? y + (size_t)blockIdx.x * dim : NULL;
    float *xr = x + (size_t)blockIdx.x * dim;
    bool post = post_w != NULL;
    float ry = post ? row_rms_factor<T>(yr, dim, eps, vec, scratch) : 0.0f, ss = 0.0f;
    if (vec) {
        for (int i = threadIdx.x * VEC; i < dim; i += blockDim.x * VEC) {
            float a[VEC], b[VEC], w[VEC] = {0};
            load8<float>(xr + i, a);
            if (yr) {
                load8<float>(yr + i, b);
                if (post) load8<float>(post_w + i, w);
                for (int j = 0; j < VEC; j++) a[j] += residual_term<T>(b[j], post, ry, w[j], offset);
                store8<float>(xr + i, a);
            }
            for (int j = 0; j < VEC; j++) ss += a[j] * a[j];
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float a = xr[i];
            if (yr) xr[i] = a = a + residual_term<T>(yr[i], post, ry, post ? post_w[i] : 0.0f, offset);
            ss += a * a;
        }
    }
    if (!next_w) return; // the same for the whole block
    ss = block_sum(ss, scratch);
    norm_store<T>(xn + (size_t)blockIdx.x * dim, xr, next_w, dim, rsqrtf(ss / (float)dim + eps), offset, vec);
}

extern "C" cudaError_t rmsnorm_forward(void *out, const float *x, const float *w, int T, int dim, float eps,
                                       float offset, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    bool vec = dim % VEC == 0 && vec_aligned(out) && vec_aligned(x) && vec_aligned(w);
    KERNEL_DISPATCH(dt, S, LAUNCH(T, NORM_THREADS, 0, stream, rmsnorm_kernel<S>)((S *)out, x, w, dim, eps, offset,
                                                                              vec));
    return cudaGetLastError();
}

extern "C" cudaError_t residual_norm_forward(float *x, void *xn, const float *y, const float *post_w,
                                             const float *next_w, int T, int dim, float eps, float offset, kdtype_t dt,
                                             cudaStream_t stream) {
    if (T <= 0 || (!y && !next_w)) return cudaSuccess;
    if (!y && post_w) return cudaErrorInvalidValue; // a post-norm needs y
    bool vec = dim % VEC == 0 && vec_aligned(x) && vec_aligned(xn) && vec_aligned(y) && vec_aligned(post_w) &&
               vec_aligned(next_w);
    KERNEL_DISPATCH(dt, S, LAUNCH(T, NORM_THREADS, 0, stream, residual_norm_kernel<S>)(
                               x, (S *)xn, y, post_w, next_w, dim, eps, offset, vec));
    return cudaGetLastError();
}
