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

/* out[i] = q[i] * scales[row of i] rounded to T, over n = rows * cols elements; grid-stride loop. */
template <typename T>
__global__ void dequant_int8_kernel(T *out, const int8_t *q, const float *scales, int cols, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_f32<T>((float)q[i] * scales[i / (size_t)cols]);
}

extern "C" cudaError_t dequant_int8_forward(void *out, const int8_t *q, const float *scales, int rows, int cols,
                                            kdtype_t dt, cudaStream_t stream) {
    size_t n = (size_t)rows * (size_t)cols;
    if (n == 0) return cudaSuccess;
    KERNEL_DISPATCH(dt, S, LAUNCH(grid_for(n, 256), 256, 0, stream, dequant_int8_kernel<S>)((S *)out, q, scales, cols, n));
    return cudaGetLastError();
}
