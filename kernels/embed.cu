/* embed.cu: token embedding lookup into the fp32 residual stream.
 *
 * One block per token row; threads stride over the row. The product is rounded to the compute
 * dtype exactly where transformers rounds it: the embedding row and the scale are both held in
 * the activation dtype and multiplied there, so in bf16 Gemma's sqrt(3584) = 59.87 becomes 60.0.
 * In fp32 this is a plain product. CPU reference: cpu_embed in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* x[t] = round(emb[tok] * round(scale)), or with int8 rows: round(round(q * s_row) * round(scale)).
 * vec: 8 elements per step (16-byte loads of the row, 8-byte ones of int8, 16-byte stores). */
template <typename T>
__global__ void embed_kernel(float *x, const T *emb, const int8_t *emb_q, const float *emb_scales,
                             const int32_t *tokens, int dim, int vocab, float scale, bool vec) {
    int t = blockIdx.x;
    int32_t tok = tokens[t];
    float *xr = x + (size_t)t * dim;
    if (tok < 0 || tok >= vocab) { // forward.c validates ids; make a bypass loud, not plausible
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = __int_as_float(0x7fc00000);
        return;
    }
    float s = round_as<T>(scale), rs = emb_q ? emb_scales[tok] : 0.0f;
    const int8_t *eq = emb_q ? emb_q + (size_t)tok * dim : NULL;
    const T *er = emb_q ? NULL : emb + (size_t)tok * dim;
    if (vec) {
        for (int i = threadIdx.x * VEC; i < dim; i += blockDim.x * VEC) {
            float v[VEC];
            if (eq) {
                load8_i8(eq + i, v);
                for (int j = 0; j < VEC; j++) v[j] = round_as<T>(round_as<T>(v[j] * rs) * s);
            } else {
                load8<T>(er + i, v);
                for (int j = 0; j < VEC; j++) v[j] = round_as<T>(v[j] * s);
            }
            store8<float>(xr + i, v);
        }
    } else if (eq) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = round_as<T>(round_as<T>((float)eq[i] * rs) * s);
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = round_as<T>(to_f32<T>(er[i]) * s);
    }
}

extern "C" cudaError_t embed_forward(float *x, const void *emb, const float *emb_scales, const int32_t *tokens,
                                     int T, int dim, int vocab, float scale, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    const int8_t *q = emb_scales ? (const int8_t *)emb : NULL;
    bool vec = dim % VEC == 0 && vec_aligned(x) && vec_aligned(emb);
    KERNEL_DISPATCH(dt, S, LAUNCH(T, 256, 0, stream, embed_kernel<S>)(x, q ? NULL : (const S *)emb, q, emb_scales,
                                                                   tokens, dim, vocab, scale, vec));
    return cudaGetLastError();
}
