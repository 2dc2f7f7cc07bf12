/* act.cu: the gated MLP activation over the fused gate|up GEMM output: out[t] = act(gu[t][:h]) *
 * gu[t][h:], elementwise in the compute dtype.
 *
 * SiLU (Llama) or gelu with the tanh approximation (Gemma-2's gelu_pytorch_tanh), evaluated in
 * fp32 with accurate expf/tanhf (this project never builds with fast math) and rounded once.
 * Elements move in 16-byte vectors (VEC per step) when hidden is a multiple of VEC and the
 * pointers are 16-byte aligned, one by one otherwise. CPU reference: cpu_gated_act in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* SiLU: g * sigmoid(g), in fp32. */
__device__ __forceinline__ float act_silu(float g) { return g / (1.0f + expf(-g)); }

/* torch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
__device__ __forceinline__ float act_gelu_tanh(float g) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    return 0.5f * g * (1.0f + tanhf(beta * (g + kappa * (g * g * g))));
}

/* act(g) * u in fp32 (ACT 0: SiLU, 1: gelu tanh). */
template <int ACT> __device__ __forceinline__ float gated(float g, float u) {
    return (ACT == 0 ? act_silu(g) : act_gelu_tanh(g)) * u;
}

/* out (T, hidden) = act(gate) * up, gate and up the two halves of each gu (T, 2*hidden) row;
 * grid-stride loop over groups of VEC elements (vec) or single elements. */
template <typename T, int ACT>
__global__ void gated_act_kernel(T *out, const T *gu, int T_, int hidden, bool vec) {
    size_t step = (size_t)gridDim.x * blockDim.x, first = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (vec) {
        size_t groups = (size_t)(hidden / VEC), n = (size_t)T_ * groups;
        for (size_t g = first; g < n; g += step) {
            size_t t = g / groups, i = (g % groups) * VEC;
            float a[VEC], b[VEC];
            load8<T>(gu + t * 2 * hidden + i, a);
            load8<T>(gu + t * 2 * hidden + hidden + i, b);
            for (int j = 0; j < VEC; j++) a[j] = gated<ACT>(a[j], b[j]);
            store8<T>(out + t * hidden + i, a);
        }
    } else {
        size_t n = (size_t)T_ * hidden;
        for (size_t e = first; e < n; e += step) {
            size_t t = e / hidden, i = e % hidden;
            const T *r = gu + t * 2 * hidden;
            out[e] = from_f32<T>(gated<ACT>(to_f32<T>(r[i]), to_f32<T>(r[hidden + i])));
        }
    }
}

extern "C" cudaError_t gated_act_forward(void *out, const void *gu, int T, int hidden, int act, kdtype_t dt,
                                         cudaStream_t stream) {
    if (T <= 0 || hidden <= 0) return cudaSuccess;
    bool vec = hidden % VEC == 0 && vec_aligned(out) && vec_aligned(gu);
    unsigned g = grid_for((size_t)T * hidden / (vec ? VEC : 1), 256);
    if (act == 0)
        KERNEL_DISPATCH(dt, S, LAUNCH(g, 256, 0, stream, gated_act_kernel<S, 0>)((S *)out, (const S *)gu, T, hidden, vec));
    else if (act == 1)
        KERNEL_DISPATCH(dt, S, LAUNCH(g, 256, 0, stream, gated_act_kernel<S, 1>)((S *)out, (const S *)gu, T, hidden, vec));
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}
