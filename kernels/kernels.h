/* kernels.h: the extern "C" launchers of lm-worker's CUDA kernels, one op per kernels/<op>.cu.
 *
 * Each launcher enqueues its kernel(s) on `stream` and returns cudaGetLastError(), so the caller
 * (workers/lm/backend/backend_cuda.c) checks every launch with its one check macro. Launchers never
 * synchronise and never allocate, except where a contract says so.
 *
 * Dtypes. `dt` is the compute dtype of ACT_WORK buffers and of unquantised weights; its values
 * equal dtype_t's DT_F32/DT_BF16/DT_F16 in workers/lm/backend/backend.h (backend_cuda.c asserts this).
 * Residual-stream buffers, norm weights, rope frequencies and int8 scales are always fp32. All
 * arithmetic inside a kernel is fp32; values are rounded to `dt` only where they are stored, and
 * fp16 stores saturate at +-65504 (never infinity; NaN stays NaN).
 *
 * Layout. Activations are row-major (T, width) over a packed batch of varlen sequences (see
 * backend.h). The CPU reference of each op is the op of the same name in backend_cpu.c.
 *
 * This header is plain C so that C host code can include it; it deliberately exposes no CUDA
 * C++ types (bf16/fp16 buffers are `void *`).
 */
#ifndef LM_KERNELS_H
#define LM_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KDT_F32 = 0, KDT_BF16 = 1, KDT_F16 = 2 } kdtype_t;

/* embed.cu: x[t] (fp32) = round_dt(emb[tokens[t]] * round_dt(scale)), the rounding mirroring
 * transformers, which multiplies in the activation dtype (Gemma's sqrt(3584) becomes 60.0 in
 * bf16). emb is (vocab, dim) of `dt`, or int8 with per-row `emb_scales` when emb_scales != NULL.
 * A token outside [0, vocab) yields a row of NaN, so that the fault is visible downstream. */
cudaError_t embed_forward(float *x, const void *emb, const float *emb_scales, const int32_t *tokens, int T,
                          int dim, int vocab, float scale, kdtype_t dt, cudaStream_t stream);

/* rmsnorm.cu: out[t] (dt) = x[t] * rsqrt(mean(x[t]^2) + eps) * (offset + w), x fp32 (T, dim). */
cudaError_t rmsnorm_forward(void *out, const float *x, const float *w, int T, int dim, float eps, float offset,
                            kdtype_t dt, cudaStream_t stream);

/* rmsnorm.cu: the residual add fused with the next norm, all (T, dim): x (fp32) += post_w ?
 * round_dt(rmsnorm(y') * (offset + post_w)) : y', y fp32 (the o_proj / down_proj output, kept
 * in fp32 because in fp16 it could exceed 65504) and y' = y in fp16/fp32, y rounded to bf16 in
 * bf16 (as transformers holds it; bf16 cannot overflow); then, when next_w != NULL, xn (dt) =
 * rmsnorm(x) * (offset + next_w), exactly as rmsnorm_forward would compute it from the new x.
 * y == NULL (the GEMM added the product into x itself; not with post_w): only the norm. */
cudaError_t residual_norm_forward(float *x, void *xn, const float *y, const float *post_w, const float *next_w,
                                  int T, int dim, float eps, float offset, kdtype_t dt, cudaStream_t stream);

/* rope.cu: split qkv (T, (n_heads + 2*n_kv_heads)*head_dim), the fused q|k|v GEMM output, into
 * q (T, n_heads*head_dim) and k (T, n_kv_heads*head_dim), rotated by the angle pos[t] *
 * inv_freq[i] (i < head_dim/2) in transformers' rotate_half convention, and v (T,
 * n_kv_heads*head_dim), copied. pos is the position of each token within its own packed
 * sequence. Returns cudaErrorInvalidValue for an odd head_dim or one above 512. */
cudaError_t qkv_rope_forward(void *q, void *k, void *v, const void *qkv, const int32_t *pos, int T, int n_heads,
                             int n_kv_heads, int head_dim, const float *inv_freq, kdtype_t dt, cudaStream_t stream);

/* Parameters of attention_forward; the same meaning as attn_params_t in backend.h. */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    float scale;    // multiplies q.k
    float softcap;  // 0: none; else s = softcap * tanh(s / softcap)
    int window;     // 0: full causal; else key j visible from query i iff i - window < j <= i
} kattn_params_t;

/* attention.cu: causal GQA attention over B packed sequences. q (T, n_heads*hd), k and v
 * (T, n_kv_heads*hd), out (T, n_heads*hd), all of dt. pos (T) and cu_seqlens (B+1) are device
 * arrays; max_len is the longest sequence (host value). bf16/fp16 with head_dim 64, 128 or 256
 * use the tensor-core flash kernel; everything else (fp32, other head dims, force_generic) the
 * generic online-softmax kernel. Returns cudaErrorInvalidValue for head_dim > 256 or odd. */
cudaError_t attention_forward(void *out, const void *q, const void *k, const void *v, const int32_t *pos,
                              const int32_t *cu_seqlens, int B, int T, int max_len, const kattn_params_t *p,
                              int force_generic, kdtype_t dt, cudaStream_t stream);

/* attention.cu: 1 when attention_forward would use the tensor-core kernel for these inputs. */
int attention_uses_mma(int head_dim, kdtype_t dt, int force_generic);

/* act.cu: out (T, hidden) = act(gu[:, :hidden]) * gu[:, hidden:] of dt, gu (T, 2*hidden) the
 * fused gate|up GEMM output; act 0 = SiLU, 1 = gelu (tanh approx). */
cudaError_t gated_act_forward(void *out, const void *gu, int T, int hidden, int act, kdtype_t dt,
                              cudaStream_t stream);

/* pool_score.cu: logits (B, n_labels) fp32 on the device = round_dt(rmsnorm(x[last[b]])) @
 * score^T, score (n_labels, dim) of dt, or int8 with per-row score_scales when non-NULL. */
cudaError_t pool_score_forward(float *logits, const float *x, const float *norm_w, float eps, float offset,
                               const void *score, const float *score_scales, int n_labels, const int32_t *last,
                               int B, int dim, kdtype_t dt, cudaStream_t stream);

/* quant_int8.cu: out (rows, cols) of dt = round_dt(q[r][c] * scales[r]). */
cudaError_t dequant_int8_forward(void *out, const int8_t *q, const float *scales, int rows, int cols, kdtype_t dt,
                                 cudaStream_t stream);

/* convert.cu: dst (n, of dt) = round-to-nearest-even(src); with dt == KDT_F32 a plain copy. */
cudaError_t convert_from_f32(void *dst, const float *src, size_t n, kdtype_t dt, cudaStream_t stream);

/* convert.cu: dst (n fp32) = src (n, of dt), exactly. */
cudaError_t convert_to_f32(float *dst, const void *src, size_t n, kdtype_t dt, cudaStream_t stream);

/* upload.cu: dst (n, of dst_dt) = src (n, of src_dt) rounded to nearest even (fp16 saturating).
 * When bad is non-NULL, every element i whose value fp16 cannot hold (|v| >= 65520) lowers *bad
 * to at most ((base + i) << 32) | (fp32 bits of v): set *bad to ~0 first; it stays ~0 when none.
 * CPU reference: round_bf16 / round_f16 (weight_round.c). */
cudaError_t upload_convert(void *dst, kdtype_t dst_dt, const void *src, kdtype_t src_dt, size_t n, size_t base,
                           unsigned long long *bad, cudaStream_t stream);

/* upload.cu: int8 per-row quantisation of src (rows, cols of src_dt) into q (rows, cols) and
 * scales (rows), exactly as quant_int8_rows (quant.c); src must be finite. With bad, as
 * upload_convert, element r * cols + c counted from base. */
cudaError_t upload_quant_int8(int8_t *q, float *scales, const void *src, kdtype_t src_dt, int rows, int cols,
                              size_t base, unsigned long long *bad, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
