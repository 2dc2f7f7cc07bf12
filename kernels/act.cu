/* act.cu: the gated MLP activation, out = act(gate) * up, elementwise in the compute dtype.
 *
 * SiLU (Llama) or gelu with the tanh approximation (Gemma-2's gelu_pytorch_tanh), evaluated in
 * fp32 with accurate expf/tanhf (this project never builds with fast math) and rounded once.
 * CPU reference: cpu_gated_act in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* SiLU: g * sigmoid(g), in fp32. */
__device__ __forceinline__ float act_silu(float g) { return g / (1.0f + expf(-g)); }

/* torch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
__device__ __forceinline__ float act_gelu_tanh(float g) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    return 0.5f * g * (1.0f + tanhf(beta * (g + kappa * (g * g * g))));
}

/* out[i] = act(gate[i]) * up[i] for i < n (ACT 0: SiLU, 1: gelu tanh), computed in fp32 and rounded
 * once to T; grid-stride loop. */
template <typename T, int ACT>
__global__ void gated_act_kernel(T *out, const T *gate, const T *up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = to_f32<T>(gate[i]);
        float a = ACT == 0 ? act_silu(g) : act_gelu_tanh(g);
        out[i] = from_f32<T>(a * to_f32<T>(up[i]));
    }
}

extern "C" cudaError_t gated_act_forward(void *out, const void *gate, const void *up, size_t n, int act, kdtype_t dt,
                                         cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    unsigned g = grid_for(n, 256);
    if (act == 0)
        KERNEL_DISPATCH(dt, S, LAUNCH(g, 256, 0, stream, gated_act_kernel<S, 0>)((S *)out, (const S *)gate, (const S *)up, n));
    else if (act == 1)
        KERNEL_DISPATCH(dt, S, LAUNCH(g, 256, 0, stream, gated_act_kernel<S, 1>)((S *)out, (const S *)gate, (const S *)up, n));
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}
