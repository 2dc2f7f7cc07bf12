/* rope.cu: rotary position embedding of q and k, in place, over a packed varlen batch.
 *
 * One block per token; threads stride over (head, i) pairs of q and then of k. Each token's
 * angle is pos[t] * inv_freq[i] with pos the position within the token's own sequence, which is
 * what makes packing without padding correct. The angle is one fp32 product and cos/sin are full
 * precision (no fast math), as in transformers; the rotation is fp32 and rounded once on store.
 * Rope scaling (llama3) is already folded into inv_freq by the model loader.
 * CPU reference: cpu_rope in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* Rotate pair (x[i], x[i + half]) of one head: rotate_half convention, x*cos + rotate_half(x)*sin. */
template <typename T>
__device__ __forceinline__ void rope_pair(T *x, int i, int half, float c, float s) {
    float x1 = to_f32<T>(x[i]), x2 = to_f32<T>(x[i + half]);
    x[i] = from_f32<T>(x1 * c - x2 * s);
    x[i + half] = from_f32<T>(x2 * c + x1 * s);
}

/* One block per token t: rotate every q head (n_heads) and k head (n_kv_heads) of t in place by
 * pos[t] * inv_freq. */
template <typename T>
__global__ void rope_kernel(T *q, T *k, const int32_t *pos, int n_heads, int n_kv_heads, int head_dim,
                            const float *inv_freq) {
    int t = blockIdx.x, half = head_dim / 2;
    float p = (float)pos[t];
    T *qr = q + (size_t)t * n_heads * head_dim;
    T *kr = k + (size_t)t * n_kv_heads * head_dim;
    int nq = n_heads * half, nk = n_kv_heads * half;
    for (int j = threadIdx.x; j < nq + nk; j += blockDim.x) {
        int jj = j < nq ? j : j - nq;
        int h = jj / half, i = jj % half;
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        rope_pair<T>((j < nq ? qr : kr) + (size_t)h * head_dim, i, half, c, s);
    }
}

extern "C" cudaError_t rope_forward(void *q, void *k, const int32_t *pos, int T, int n_heads, int n_kv_heads,
                                    int head_dim, const float *inv_freq, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    if (head_dim <= 0 || head_dim % 2) return cudaErrorInvalidValue;
    KERNEL_DISPATCH(dt, S, LAUNCH(T, 128, 0, stream, rope_kernel<S>)((S *)q, (S *)k, pos, n_heads, n_kv_heads, head_dim,
                                                                 inv_freq));
    return cudaGetLastError();
}
