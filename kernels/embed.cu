/* embed.cu: token embedding lookup into the fp32 residual stream.
 *
 * One block per token row; threads stride over the row. The product is rounded to the compute
 * dtype exactly where transformers rounds it: the embedding row and the scale are both held in
 * the activation dtype and multiplied there, so in bf16 Gemma's sqrt(3584) = 59.87 becomes 60.0.
 * In fp32 this is a plain product. CPU reference: cpu_embed in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* x[t] = round(emb[tok] * round(scale)), or with int8 rows: round(round(q * s_row) * round(scale)). */
template <typename T>
__global__ void embed_kernel(float *x, const T *emb, const int8_t *emb_q, const float *emb_scales,
                             const int32_t *tokens, int dim, int vocab, float scale) {
    int t = blockIdx.x;
    int32_t tok = tokens[t];
    float *xr = x + (size_t)t * dim;
    if (tok < 0 || tok >= vocab) { // forward.c validates ids; make a bypass loud, not plausible
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = __int_as_float(0x7fc00000);
        return;
    }
    float s = round_as<T>(scale);
    if (emb_q) {
        const int8_t *er = emb_q + (size_t)tok * dim;
        float rs = emb_scales[tok];
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = round_as<T>(round_as<T>((float)er[i] * rs) * s);
    } else {
        const T *er = emb + (size_t)tok * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = round_as<T>(to_f32<T>(er[i]) * s);
    }
}

extern "C" cudaError_t embed_forward(float *x, const void *emb, const float *emb_scales, const int32_t *tokens,
                                     int T, int dim, int vocab, float scale, kdtype_t dt, cudaStream_t stream) {
    if (T <= 0) return cudaSuccess;
    const int8_t *q = emb_scales ? (const int8_t *)emb : NULL;
    KERNEL_DISPATCH(dt, S, LAUNCH(T, 256, 0, stream, embed_kernel<S>)(x, q ? NULL : (const S *)emb, q, emb_scales,
                                                                   tokens, dim, vocab, scale));
    return cudaGetLastError();
}
