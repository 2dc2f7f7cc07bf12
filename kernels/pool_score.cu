/* pool_score.cu: the sequence-classification head: final RMSNorm of each sequence's pooled row
 * and its product with the (n_labels, dim) score matrix, giving fp32 logits on the device.
 *
 * One block per sequence. The normalised row is rounded to the compute dtype (the score Linear
 * sees it in that dtype in transformers) and kept in shared memory; each label's dot product is
 * an fp32 block reduction. The logits themselves are not rounded: the goldens are fp32 and the
 * rounding would only add error. CPU reference: cpu_pool_score in backend_cpu.c.
 */
#include "kernel_util.cuh"

/* One block per sequence: logits (B, n_labels) fp32 = rmsnorm(x[last[b]]) @ score^T, with score in
 * T or, when score_q is non-NULL, int8 with per-label scales. Dynamic shared memory: (dim + 32)
 * floats. */
template <typename T>
__global__ void pool_score_kernel(float *logits, const float *x, const float *norm_w, float eps, float offset,
                                  const T *score, const int8_t *score_q, const float *score_scales, int n_labels,
                                  const int32_t *last, int dim) {
    DYN_SMEM(float, xn); // (dim) normalised pooled row, then 32 floats of scratch
    float *scratch = xn + dim;
    const float *row = x + (size_t)last[blockIdx.x] * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += row[i] * row[i];
    float r = rsqrtf(block_sum(ss, scratch) / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) xn[i] = round_as<T>((row[i] * r) * (offset + norm_w[i]));
    __syncthreads();
    for (int l = 0; l < n_labels; l++) {
        float acc = 0.0f;
        if (score_q) {
            const int8_t *wr = score_q + (size_t)l * dim;
            for (int i = threadIdx.x; i < dim; i += blockDim.x) acc += xn[i] * round_as<T>((float)wr[i] * score_scales[l]);
        } else {
            const T *wr = score + (size_t)l * dim;
            for (int i = threadIdx.x; i < dim; i += blockDim.x) acc += xn[i] * to_f32<T>(wr[i]);
        }
        acc = block_sum(acc, scratch);
        if (threadIdx.x == 0) logits[(size_t)blockIdx.x * n_labels + l] = acc;
    }
}

extern "C" cudaError_t pool_score_forward(float *logits, const float *x, const float *norm_w, float eps, float offset,
                                          const void *score, const float *score_scales, int n_labels,
                                          const int32_t *last, int B, int dim, kdtype_t dt, cudaStream_t stream) {
    if (B <= 0) return cudaSuccess;
    size_t smem = ((size_t)dim + 32) * sizeof(float);
    if (smem > 48 * 1024) return cudaErrorInvalidValue; // dim > 12256: far beyond any supported model
    const int8_t *q = score_scales ? (const int8_t *)score : NULL;
    KERNEL_DISPATCH(dt, S, LAUNCH(B, 256, smem, stream, pool_score_kernel<S>)(logits, x, norm_w, eps, offset,
                                                                         q ? NULL : (const S *)score, q, score_scales,
                                                                         n_labels, last, dim));
    return cudaGetLastError();
}
