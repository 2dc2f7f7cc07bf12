/* quant_int8.cu: dequantisation of int8 weight-only matrices (per-output-channel symmetric
 * scales, made at upload by quant.c) into the compute dtype.
 *
 * The int8 matmul path is deliberately simple: backend_cuda.c dequantises the whole weight into
 * a scratch matrix of the compute dtype before each cuBLAS GEMM. That costs one extra pass over
 * the weight (1 byte read, 2 written, 2 read again by the GEMM) per matmul, which is small next
 * to the GEMM at the batch sizes we run (thousands of tokens per batch), and keeps the GEMM on
 * cuBLAS. The saving is memory at rest: weights take 1 byte per element plus one fp32 per row.
 * CPU reference: quant_dequant_rows in workers/lm/backend/quant.c.
 */
#include "kernel_util.cuh"

/* out[i] = q[i] * scales[row of i] rounded to T, over n = rows * cols elements; grid-stride loop,
 * 8 elements per step (one 8-byte int8 load, one 16-byte store) when vec (cols a multiple of 8,
 * pointers aligned: a group never straddles rows), else one by one. */
template <typename T>
__global__ void dequant_int8_kernel(T *out, const int8_t *q, const float *scales, int cols, size_t n, bool vec) {
    size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, step = (size_t)gridDim.x * blockDim.x;
    if (vec) {
        for (size_t i = first * VEC; i < n; i += step * VEC) {
            float v[VEC], s = scales[i / (size_t)cols];
            load8_i8(q + i, v);
            for (int j = 0; j < VEC; j++) v[j] *= s;
            store8<T>(out + i, v);
        }
    } else {
        for (size_t i = first; i < n; i += step) out[i] = from_f32<T>((float)q[i] * scales[i / (size_t)cols]);
    }
}

extern "C" cudaError_t dequant_int8_forward(void *out, const int8_t *q, const float *scales, int rows, int cols,
                                            kdtype_t dt, cudaStream_t stream) {
    size_t n = (size_t)rows * (size_t)cols;
    if (n == 0) return cudaSuccess;
    bool vec = cols % VEC == 0 && vec_aligned(out) && vec_aligned(q);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(vec ? n / VEC : n, 256), 256, 0, stream, dequant_int8_kernel<S>)(
                               (S *)out, q, scales, cols, n, vec));
    return cudaGetLastError();
}
