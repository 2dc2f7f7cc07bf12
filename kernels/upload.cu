/* upload.cu: the device half of the weight load path (workers/lm/backend/backend_cuda_upload.c):
 * checkpoint bytes arrive on the device in their own dtype (bf16, fp16 or fp32) and are turned
 * into the stored weight here, not on the host: a conversion to the compute dtype, or int8
 * per-row quantisation. PCIe then carries the checkpoint's bytes, not fp32's.
 *
 * fp16 cannot hold |v| >= 65520 (it would round to infinity). Such a value is not clamped (a
 * clamped weight is a different model); the kernels record the first one in a device word that
 * the backend reads at sync and reports with the tensor's name. The record is
 * (element index << 32) | fp32 bits of the value, taken with atomicMin, so the smallest index
 * wins whatever the thread order, and its value travels with it.
 *
 * CPU references: round_bf16 / round_f16 (weight_round.c) for the conversion, quant_int8_rows
 * (quant.c) for the quantiser, which this kernel reproduces bit for bit (the same max, the same
 * fp32 division and roundf). Finiteness is checked on the host while the bytes are copied, so
 * these kernels never see a NaN from a checkpoint; they do not check it again.
 */
#include "kernel_util.cuh"

#define F16_LIMIT 65520.0f // |v| at or above this rounds to infinity in fp16

/* Record element idx (value v) in *bad when fp16 cannot hold v (or v is NaN). */
__device__ __forceinline__ void note_beyond_f16(unsigned long long *bad, size_t idx, float v) {
    if (fabsf(v) < F16_LIMIT) return;
    atomicMin(bad, ((unsigned long long)idx << 32) | (unsigned)__float_as_int(v));
}

/* dst[i] = src[i] rounded to D (nearest even; fp16 saturating), i < n; with bad, element base + i
 * that fp16 cannot hold is recorded. Grid-stride loop. */
template <typename S, typename D>
__global__ void upload_convert_kernel(D *dst, const S *src, size_t n, size_t base, unsigned long long *bad) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = to_f32<S>(src[i]);
        if (bad) note_beyond_f16(bad, base + i, v);
        dst[i] = from_f32<D>(v);
    }
}

#define QUANT_ROWS_PER_BLOCK 8 // one warp per row

/* One warp per row r (QUANT_ROWS_PER_BLOCK rows a block): scales[r] = max |src[r][:]| / 127,
 * q[r][c] = roundf(src[r][c] / scale) clamped to [-127, 127] (0 for a zero scale), as
 * quant_int8_rows. With bad, elements fp16 cannot hold are recorded (element index
 * base + r * cols + c). */
template <typename S>
__global__ void upload_quant_int8_kernel(int8_t *q, float *scales, const S *src, int rows, int cols, size_t base,
                                         unsigned long long *bad) {
    size_t r = (size_t)blockIdx.x * QUANT_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= (size_t)rows) return; // the whole warp leaves together
    const S *row = src + r * (size_t)cols;
    int8_t *qr = q + r * (size_t)cols;
    float amax = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float v = to_f32<S>(row[c]);
        if (bad) note_beyond_f16(bad, base + r * (size_t)cols + c, v);
        amax = fmaxf(amax, fabsf(v));
    }
    amax = warp_max(amax);
    float s = amax / 127.0f;
    if (lane == 0) scales[r] = s;
    for (int c = lane; c < cols; c += 32) {
        float v = s == 0.0f ? 0.0f : roundf(to_f32<S>(row[c]) / s);
        qr[c] = (int8_t)fminf(fmaxf(v, -127.0f), 127.0f);
    }
}

extern "C" cudaError_t upload_convert(void *dst, kdtype_t dst_dt, const void *src, kdtype_t src_dt, size_t n,
                                      size_t base, unsigned long long *bad, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    KERNEL_DISPATCH(src_dt, S,
                    KERNEL_DISPATCH(dst_dt, D,
                                    LAUNCH(grid_for(n, 256), 256, 0, stream, upload_convert_kernel<S, D>)(
                                        (D *)dst, (const S *)src, n, base, bad)));
    return cudaGetLastError();
}

extern "C" cudaError_t upload_quant_int8(int8_t *q, float *scales, const void *src, kdtype_t src_dt, int rows,
                                         int cols, size_t base, unsigned long long *bad, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    unsigned blocks = (unsigned)((rows + QUANT_ROWS_PER_BLOCK - 1) / QUANT_ROWS_PER_BLOCK);
    KERNEL_DISPATCH(src_dt, S,
                    LAUNCH(blocks, 32 * QUANT_ROWS_PER_BLOCK, 0, stream, upload_quant_int8_kernel<S>)(
                        q, scales, (const S *)src, rows, cols, base, bad));
    return cudaGetLastError();
}
