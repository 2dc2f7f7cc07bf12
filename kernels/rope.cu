/* rope.cu: the split of the fused q|k|v GEMM output into q, k and v, with the rotary position
 * embedding of q and k applied on the way (one pass instead of a copy and an in-place rope).
 *
 * One block per token. The token's cos/sin table (head_dim/2 angles pos[t] * inv_freq[i], one
 * fp32 product each, accurate sincosf: no fast math, as in transformers) is computed once into
 * shared memory; then threads stride over (head, 8-element group) of q and k, reading x[i] and
 * x[i + half] and writing the rotated pair, and over v's 16-byte vectors. With head_dim/2 not a
 * multiple of VEC (or unaligned pointers) the same runs element by element. The rotation is fp32
 * and rounded once on store. Rope scaling (llama3) is already folded into inv_freq by the loader.
 * pos is the position within the token's own packed sequence, which makes packing correct.
 * CPU reference: cpu_qkv_rope in backend_cpu.c.
 */
#include "kernel_util.cuh"

#define ROPE_THREADS 128
#define ROPE_MAX_HALF 256 // head_dim <= 512: the shared cos/sin table

/* One block per token t: q[t], k[t] = the rotated q and k heads of qkv[t]; v[t] = its v part. */
template <typename T>
__global__ void qkv_rope_kernel(T *q, T *k, T *v, const T *qkv, const int32_t *pos, int n_heads, int n_kv_heads,
                                int head_dim, const float *inv_freq, bool vec) {
    __shared__ float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    int t = blockIdx.x, half = head_dim / 2, nh = n_heads + n_kv_heads;
    size_t qd = (size_t)n_heads * head_dim, kvd = (size_t)n_kv_heads * head_dim;
    float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) sincosf(p * inv_freq[i], &sn[i], &cs[i]);
    __syncthreads();
    const T *row = qkv + (size_t)t * (qd + 2 * kvd); // q heads, then k heads: head h at row + h*head_dim
    T *qr = q + (size_t)t * qd, *kr = k + (size_t)t * kvd;
    if (vec) {
        int groups = half / VEC;
        for (int j = threadIdx.x; j < nh * groups; j += blockDim.x) {
            int h = j / groups, i = (j % groups) * VEC;
            const T *src = row + (size_t)h * head_dim;
            T *dst = h < n_heads ? qr + (size_t)h * head_dim : kr + (size_t)(h - n_heads) * head_dim;
            float x1[VEC], x2[VEC], o1[VEC], o2[VEC];
            load8<T>(src + i, x1);
            load8<T>(src + i + half, x2);
            for (int u = 0; u < VEC; u++) {
                float c = cs[i + u], s = sn[i + u]; // rotate_half: x*cos + (-x2, x1)*sin
                o1[u] = x1[u] * c - x2[u] * s;
                o2[u] = x2[u] * c + x1[u] * s;
            }
            store8<T>(dst + i, o1);
            store8<T>(dst + i + half, o2);
        }
        for (size_t j = threadIdx.x * (size_t)VEC; j < kvd; j += (size_t)blockDim.x * VEC)
            copy8<T>(v + (size_t)t * kvd + j, row + qd + kvd + j);
    } else {
        for (int j = threadIdx.x; j < nh * half; j += blockDim.x) {
            int h = j / half, i = j % half;
            const T *src = row + (size_t)h * head_dim;
            T *dst = h < n_heads ? qr + (size_t)h * head_dim : kr + (size_t)(h - n_heads) * head_dim;
            float x1 = to_f32<T>(src[i]), x2 = to_f32<T>(src[i + half]), c = cs[i], s = sn[i];
            dst[i] = from_f32<T>(x1 * c - x2 * s);
            dst[i + half] = from_f32<T>(x2 * c + x1 * s);
        }
        for (size_t j = threadIdx.x; j < kvd; j += blockDim.x) v[(size_t)t * kvd + j] = row[qd + kvd + j];
    }
}

extern "C" cudaError_t qkv_rope_forward(void *q, void *k, void *v, const void *qkv, const int32_t *pos, int T,
                                        int n_heads, int n_kv_heads, int head_dim, const float *inv_freq, kdtype_t dt,
                                        cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    if (head_dim <= 0 || head_dim % 2 || head_dim / 2 > ROPE_MAX_HALF) return cudaErrorInvalidValue;
    bool vec = (head_dim / 2) % VEC == 0 && vec_aligned(q) && vec_aligned(k) && vec_aligned(v) && vec_aligned(qkv);
    KERNEL_DISPATCH(dt, S, LAUNCH(T, ROPE_THREADS, 0, stream, qkv_rope_kernel<S>)(
                               (S *)q, (S *)k, (S *)v, (const S *)qkv, pos, n_heads, n_kv_heads, head_dim, inv_freq,
                               vec));
    return cudaGetLastError();
}
