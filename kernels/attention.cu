/* attention.cu: causal self-attention over a packed varlen batch (cu_seqlens), with GQA/MQA,
 * Gemma-2's logit softcap and sliding windows, in one pass with an online softmax (no T x T
 * score matrix is ever stored).
 *
 * Two kernels:
 *  - attn_mma_kernel: the flash-attention-2 scheme on tensor cores (mma.sync m16n8k16; two
 *    m16n8k8 on sm_75) for bf16/fp16 and head_dim 64, 128 or 256. A block owns BR=64 query rows
 *    of one head and one sequence, each warp 16 of them; key/value tiles of BC rows (64; 32 for
 *    head_dim 256, 16 where shared memory is short: head_dim 256 on a T4) are staged in
 *    shared memory. Scores, the running max/sum and the output accumulators stay in registers in
 *    fp32; only the probabilities are rounded to bf16/fp16 to feed the P.V product (as in
 *    FlashAttention). Key tiles that no query of the block can see (after the diagonal, or older
 *    than the sliding window) are never loaded; within the loaded range each warp skips tiles
 *    none of its 16 rows can see.
 *  - attn_generic_kernel: one warp per (query row, head), 32 keys per step, fp32 throughout. It
 *    serves fp32, head dims the mma kernel is not built for (the tiny test models use 32 and
 *    48), GPUs without enough shared memory, and LM_ATTN_GENERIC=1 as a safety valve.
 *
 * Fragments are loaded with plain 32-bit shared-memory loads following the PTX ISA's documented
 * mma fragment layouts (not ldmatrix): slower than it could be, but each index is checkable by
 * reading. Not done here: cp.async pipelining, ldmatrix, Hopper wgmma. Scores are evaluated in
 * log2 units (exp2f), which is exact up to fp32 rounding.
 * CPU reference: cpu_attention in backend_cpu.c.
 */
#include <math.h>

#include "kernel_util.cuh"

#define LOG2E_F 1.4426950408889634f
#define FULL_MASK 0xffffffffu

/* The score of one (query, key) pair in log2 units: q.k * scale, softcapped when softcap > 0. */
__device__ __forceinline__ float attn_logit(float dot, float scale, float softcap) {
    float s = dot * scale;
    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
    return s * LOG2E_F;
}

/* Key j is visible from query i (both positions within one sequence). */
__device__ __forceinline__ bool attn_visible(int i, int j, int window) {
    return j <= i && (window <= 0 || i - j < window);
}

/* =============================================================================================
 * Generic kernel: one warp per (query row, head); fp32 math; any even head_dim <= 256.
 * ===========================================================================================*/

#define GEN_WARPS 4
#define GEN_MAX_HD 256

/* Generic attention: grid (ceil(T_ / GEN_WARPS), n_heads), one warp per (query row t, head); writes
 * out (T_, n_heads*head_dim) in T. head_dim even and <= GEN_MAX_HD. */
template <typename T>
__global__ void __launch_bounds__(GEN_WARPS * 32)
attn_generic_kernel(T *out, const T *q, const T *k, const T *v, const int32_t *pos, int T_, kattn_params_t p) {
    __shared__ float sq[GEN_WARPS][GEN_MAX_HD]; // each warp's query row in fp32
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t = blockIdx.x * GEN_WARPS + warp, h = blockIdx.y;
    if (t >= T_) return; // the whole warp leaves; nothing below synchronises the block
    const int hd = p.head_dim, kvh = h / (p.n_heads / p.n_kv_heads);
    const size_t qld = (size_t)p.n_heads * hd, kld = (size_t)p.n_kv_heads * hd;
    const T *qr = q + (size_t)t * qld + (size_t)h * hd;
    for (int d = lane; d < hd; d += 32) sq[warp][d] = to_f32<T>(qr[d]);
    __syncwarp();

    /* The sequence starts at row t - pos[t]; under a window the oldest visible key is newer. */
    const int i = pos[t];
    int j0 = t - i;
    if (p.window > 0 && i - p.window + 1 > 0) j0 = t - p.window + 1;
    const T *kb = k + (size_t)kvh * hd, *vb = v + (size_t)kvh * hd;

    float o[GEN_MAX_HD / 32];
#pragma unroll
    for (int e = 0; e < GEN_MAX_HD / 32; e++) o[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int jc = j0; jc <= t; jc += 32) {
        /* Each lane scores one key of this chunk of 32. */
        const int j = jc + lane;
        float s = -INFINITY;
        if (j <= t) {
            const T *kr = kb + (size_t)j * kld;
            float dot = 0.0f;
            for (int d = 0; d < hd; d++) dot += sq[warp][d] * to_f32<T>(kr[d]);
            s = attn_logit(dot, p.scale, p.softcap);
        }
        const float m_new = fmaxf(m, warp_max(s)); // finite: key jc is always visible
        const float alpha = exp2f(m - m_new);      // 0 on the first chunk (m = -inf)
        const float pj = exp2f(s - m_new);         // 0 for lanes past t
        l = l * alpha + warp_sum(pj);
#pragma unroll
        for (int e = 0; e < GEN_MAX_HD / 32; e++) o[e] *= alpha;
        /* Then every lane accumulates its output dims over the chunk's keys. */
        const int n = min(32, t - jc + 1);
        for (int jj = 0; jj < n; jj++) {
            const float pb = __shfl_sync(FULL_MASK, pj, jj);
            const T *vr = vb + (size_t)(jc + jj) * kld;
#pragma unroll
            for (int e = 0; e < GEN_MAX_HD / 32; e++) {
                const int d = lane + 32 * e;
                if (d < hd) o[e] += pb * to_f32<T>(vr[d]);
            }
        }
        m = m_new;
    }
    const float inv = 1.0f / l;
    T *orow = out + (size_t)t * qld + (size_t)h * hd;
#pragma unroll
    for (int e = 0; e < GEN_MAX_HD / 32; e++) {
        const int d = lane + 32 * e;
        if (d < hd) orow[d] = from_f32<T>(o[e] * inv);
    }
}

/* =============================================================================================
 * Tensor-core kernel (bf16/fp16).
 *
 * Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
 * g = lane / 4 and tq = lane % 4; each .b32 register holds two consecutive 16-bit elements,
 * the lower-indexed one in the low half:
 *   A (16x16, row-major): a[0] = (g, 2tq..+1)  a[1] = (g+8, 2tq..+1)
 *                         a[2] = (g, 2tq+8..+9) a[3] = (g+8, 2tq+8..+9)
 *   B (16x8, "col"):      b[0] = (k=2tq..+1, n=g)  b[1] = (k=2tq+8..+9, n=g)
 *   C (16x8, fp32):       c[0..1] = (g, 2tq..+1)   c[2..3] = (g+8, 2tq..+1)
 * m16n8k8 (sm_75) is the k-half of this: A regs {a0,a1} with b0, then {a2,a3} with b1.
 * ===========================================================================================*/

template <typename T> __device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], const uint32_t b[2]);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(LM_CUDA_EMU)
    emu::mma_m16n8k16(c, a, b, 1); // the CPU emulator; it traps below sm_80 as the hardware would
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)c, (void)a, (void)b;
    __trap(); // bf16 tensor cores need sm_80; attention_uses_mma never picks this kernel below it
#endif
}

template <>
__device__ __forceinline__ void mma_16816<__half>(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(LM_CUDA_EMU)
    if (emu::sm() >= 80) {
        emu::mma_m16n8k16(c, a, b, 0);
    } else { // the sm_75 split below, fragment for fragment
        emu::mma_m16n8k8_f16(c, a, b[0]);
        emu::mma_m16n8k8_f16(c, a + 2, b[1]);
    }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]));
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[2]), "r"(a[3]), "r"(b[1]));
#else
    (void)c, (void)a, (void)b;
    __trap();
#endif
}

/* The 16 bits of a bf16/fp16 value (through the raw struct, which host code can use too: the
 * *_as_ushort intrinsics are device-only before CUDA 12.2, and cuda-emu compiles this file for
 * the host). */
__device__ __forceinline__ uint32_t bits16(__nv_bfloat16 x) { return ((__nv_bfloat16_raw)x).x; }
__device__ __forceinline__ uint32_t bits16(__half x) { return ((__half_raw)x).x; }

/* Two fp32 values rounded to T and packed into one .b32 register, `lo` in the low half. */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    return bits16(from_f32<T>(lo)) | (bits16(from_f32<T>(hi)) << 16);
}

/* The two adjacent 16-bit elements at p as one .b32 register (p must be 4-byte aligned). */
template <typename T> __device__ __forceinline__ uint32_t ld_b32(const T *p) { return *(const uint32_t *)p; }

/* Stage rows [row0, row0 + ROWS) of one head (HD contiguous elements per row, row stride ld)
 * into shared memory with row stride HD + 8; rows at or past len are zero-filled. 16-byte
 * loads: the launcher checks that every base pointer is 16-byte aligned. */
template <typename T, int HD, int ROWS, int NT>
__device__ __forceinline__ void attn_load_tile(T *dst, const T *src, size_t ld, int row0, int len, int tid) {
    constexpr int CH = HD / 8; // 16-byte chunks per row
    for (int c = tid; c < ROWS * CH; c += NT) {
        const int r = c / CH, cc = c % CH;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (row0 + r < len) val = *(const uint4 *)(src + (size_t)(row0 + r) * ld + cc * 8);
        *(uint4 *)(dst + r * (HD + 8) + cc * 8) = val;
    }
}

/* Tensor-core attention (bf16/fp16, HD 64/128/256): grid (n_heads, B * tiles_per_seq), one block
 * per (head, BR-row query tile of a sequence), BR/16 warps, dynamic shared memory (BR + 2 * BC) *
 * (HD + 8) elements. */
template <typename T, int HD, int BR, int BC>
__global__ void __launch_bounds__(BR / 16 * 32)
attn_mma_kernel(T *out, const T *q, const T *k, const T *v, const int32_t *cu_seqlens, int B, int tiles_per_seq,
                kattn_params_t p) {
    constexpr int NW = BR / 16, NT = NW * 32;
    constexpr int LD = HD + 8;        // padded row: fragment loads hit 32 distinct banks
    constexpr int NS = BC / 8;        // score n-tiles per warp
    constexpr int NO = HD / 8;        // output n-tiles per warp
    DYN_SMEM(unsigned char, smem_raw);
    T *sQ = (T *)smem_raw;            // (BR, LD)
    T *sK = sQ + BR * LD;             // (BC, LD)
    T *sV = sK + BC * LD;             // (BC, LD)

    /* blockIdx.x = head (fastest, so all heads of a tile run together); blockIdx.y walks the
     * query tiles from the last (the most keys) to the first, sequence by sequence. */
    const int h = blockIdx.x;
    const int b = blockIdx.y % B, tile = tiles_per_seq - 1 - blockIdx.y / B;
    const int seq0 = cu_seqlens[b], len = cu_seqlens[b + 1] - seq0;
    const int q0 = tile * BR;
    if (q0 >= len) return;
    const int kvh = h / (p.n_heads / p.n_kv_heads);
    const size_t qld = (size_t)p.n_heads * HD, kld = (size_t)p.n_kv_heads * HD;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const T *kbase = k + (size_t)seq0 * kld + (size_t)kvh * HD;
    const T *vbase = v + (size_t)seq0 * kld + (size_t)kvh * HD;

    attn_load_tile<T, HD, BR, NT>(sQ, q + (size_t)seq0 * qld + (size_t)h * HD, qld, q0, len, tid);

    const int row0 = q0 + warp * 16 + g, row1 = row0 + 8; // this thread's two query rows
    const int wfirst = q0 + warp * 16, wlast = wfirst + 15;
    const int qlast = min(q0 + BR, len) - 1;
    int kbeg = p.window > 0 ? max(0, q0 - p.window + 1) : 0;
    kbeg -= kbeg % BC;

    float o[NO][4];
#pragma unroll
    for (int nd = 0; nd < NO; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f; // running max (log2 units), partial sums

    for (int kt = kbeg; kt <= qlast; kt += BC) {
        __syncthreads(); // every warp is done with the previous K/V tile (and sQ is written)
        attn_load_tile<T, HD, BC, NT>(sK, kbase, kld, kt, len, tid);
        attn_load_tile<T, HD, BC, NT>(sV, vbase, kld, kt, len, tid);
        __syncthreads();
        /* Warp-uniform skips: rows past the sequence, keys after all rows, keys before all windows. */
        if (wfirst >= len || kt > wlast) continue;
        if (p.window > 0 && kt + BC - 1 <= wfirst - p.window) continue;

        /* S = Q K^T for this warp's 16 rows and the tile's BC keys (fp32 accumulators). */
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        const T *qa = sQ + (warp * 16 + g) * LD + 2 * tq;
#pragma unroll
        for (int kk = 0; kk < HD; kk += 16) {
            uint32_t a[4];
            a[0] = ld_b32(qa + kk);
            a[1] = ld_b32(qa + 8 * LD + kk);
            a[2] = ld_b32(qa + kk + 8);
            a[3] = ld_b32(qa + 8 * LD + kk + 8);
#pragma unroll
            for (int n = 0; n < NS; n++) {
                const T *kb = sK + (n * 8 + g) * LD + kk + 2 * tq; // B(k, n) = K(n, k)
                uint32_t bb[2] = {ld_b32(kb), ld_b32(kb + 8)};
                mma_16816<T>(s[n], a, bb);
            }
        }

        /* Scale, softcap, mask; the tile's row maxima over the 4 lanes that share a row. */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < NS; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = kt + n * 8 + 2 * tq + (e & 1), row = e < 2 ? row0 : row1;
                const float x = attn_visible(row, col, p.window) ? attn_logit(s[n][e], p.scale, p.softcap) : -INFINITY;
                s[n][e] = x;
                if (e < 2) mx0 = fmaxf(mx0, x);
                else mx1 = fmaxf(mx1, x);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(FULL_MASK, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(FULL_MASK, mx1, 2));

        /* Online softmax: rescale what we have by 2^(m_old - m_new). A row that has seen no
         * visible key yet keeps m = -inf; it uses base 0 so that no inf - inf appears. */
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float al0 = exp2f(m0 - base0), al1 = exp2f(m1 - base1);
        m0 = mn0;
        m1 = mn1;
        float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
        for (int n = 0; n < NS; n++) {
            s[n][0] = exp2f(s[n][0] - base0);
            s[n][1] = exp2f(s[n][1] - base0);
            s[n][2] = exp2f(s[n][2] - base1);
            s[n][3] = exp2f(s[n][3] - base1);
            rs0 += s[n][0] + s[n][1];
            rs1 += s[n][2] + s[n][3];
        }
        l0 = l0 * al0 + rs0; // per-lane partial sums; the 4 lanes of a row are added at the end
        l1 = l1 * al1 + rs1;
#pragma unroll
        for (int nd = 0; nd < NO; nd++) {
            o[nd][0] *= al0;
            o[nd][1] *= al0;
            o[nd][2] *= al1;
            o[nd][3] *= al1;
        }

        /* O += P V. The score accumulators of two adjacent n-tiles are exactly the A fragment
         * of one k16 step; V's B fragment pairs two rows, so it is assembled from 16-bit loads. */
        const unsigned short *vb = (const unsigned short *)sV + (2 * tq) * LD + g;
#pragma unroll
        for (int kk = 0; kk < BC; kk += 16) {
            const int n = kk / 8;
            const uint32_t a[4] = {pack2<T>(s[n][0], s[n][1]), pack2<T>(s[n][2], s[n][3]),
                                   pack2<T>(s[n + 1][0], s[n + 1][1]), pack2<T>(s[n + 1][2], s[n + 1][3])};
            const unsigned short *vk = vb + kk * LD;
#pragma unroll
            for (int nd = 0; nd < NO; nd++) {
                uint32_t bb[2];
                bb[0] = (uint32_t)vk[nd * 8] | ((uint32_t)vk[nd * 8 + LD] << 16);
                bb[1] = (uint32_t)vk[nd * 8 + 8 * LD] | ((uint32_t)vk[nd * 8 + 9 * LD] << 16);
                mma_16816<T>(o[nd], a, bb);
            }
        }
    }

    l0 += __shfl_xor_sync(FULL_MASK, l0, 1);
    l0 += __shfl_xor_sync(FULL_MASK, l0, 2);
    l1 += __shfl_xor_sync(FULL_MASK, l1, 1);
    l1 += __shfl_xor_sync(FULL_MASK, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    T *ob = out + (size_t)seq0 * qld + (size_t)h * HD + 2 * tq;
    if (row0 < len) {
        uint32_t *dst = (uint32_t *)(ob + (size_t)row0 * qld);
#pragma unroll
        for (int nd = 0; nd < NO; nd++) dst[nd * 4] = pack2<T>(o[nd][0] * inv0, o[nd][1] * inv0);
    }
    if (row1 < len) {
        uint32_t *dst = (uint32_t *)(ob + (size_t)row1 * qld);
#pragma unroll
        for (int nd = 0; nd < NO; nd++) dst[nd * 4] = pack2<T>(o[nd][2] * inv1, o[nd][3] * inv1);
    }
}

/* =============================================================================================
 * Launchers
 * ===========================================================================================*/

#define MMA_BR 64

/* Shared memory (bytes) of the mma kernel for head_dim hd and key tile bc. */
static size_t attn_mma_smem(int hd, int bc) { return (size_t)(MMA_BR + 2 * bc) * (size_t)(hd + 8) * 2u; }

/* The key tile size for head_dim hd: 64, or 32 for head_dim 256; where that does not fit the
 * device's shared memory (head_dim 256 on a T4: 66 KiB > 64 KiB), 16, which needs 49.5 KiB. */
static int attn_mma_bc(int hd, int smem_optin) {
    int bc = hd == 256 ? 32 : 64;
    while (bc > 16 && attn_mma_smem(hd, bc) > (size_t)smem_optin) bc /= 2;
    return bc;
}

/* Properties of the current device, read once: SM version and opt-in shared memory per block. */
static void attn_device_caps(int *sm, int *smem_optin) {
    static int cached_sm = -1, cached_smem = 0;
    if (cached_sm < 0) {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&cached_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
            cudaGetLastError(); // clear: the caller falls back to the generic kernel
            major = minor = 0;
            cached_smem = 0;
        }
        cached_sm = major * 10 + minor;
    }
    *sm = cached_sm;
    *smem_optin = cached_smem;
}

extern "C" int attention_uses_mma(int head_dim, kdtype_t dt, int force_generic) {
    if (force_generic || dt == KDT_F32) return 0;
    if (head_dim != 64 && head_dim != 128 && head_dim != 256) return 0;
    int sm = 0, smem = 0;
    attn_device_caps(&sm, &smem);
    if (sm < (dt == KDT_BF16 ? 80 : 75)) return 0;
    return attn_mma_smem(head_dim, attn_mma_bc(head_dim, smem)) <= (size_t)smem;
}

/* Launch attn_mma_kernel<T, HD, MMA_BR, BC> over the batch, in chunks of whole sequences that keep
 * gridDim.y <= 65535, opting into more than 48 KiB of shared memory once. Returns the first launch
 * error, or cudaErrorInvalidValue when one sequence needs more than 65535 tiles. */
template <typename T, int HD, int BC>
static cudaError_t attn_launch_mma(void *out, const void *q, const void *k, const void *v, const int32_t *cu_seqlens,
                                   int B, int max_len, const kattn_params_t *p, cudaStream_t stream) {
    const size_t smem = (size_t)(MMA_BR + 2 * BC) * (HD + 8) * sizeof(T);
    static bool smem_set = false; // one opt-in per instantiation and process (device 0 only)
    if (!smem_set && smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_mma_kernel<T, HD, MMA_BR, BC>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        smem_set = true;
    }
    const int tiles = (max_len + MMA_BR - 1) / MMA_BR;
    /* gridDim.y is at most 65535: launch the batch in chunks of whole sequences. A sequence of
     * more than 65535 tiles (4M tokens) cannot be chunked that way; refuse it rather than loop. */
    if (tiles <= 0 || tiles > 65535) return cudaErrorInvalidValue;
    const int chunk = 65535 / tiles < B ? 65535 / tiles : B;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        const int nb = B - b0 < chunk ? B - b0 : chunk;
        dim3 grid((unsigned)p->n_heads, (unsigned)(nb * tiles));
        LAUNCH(grid, MMA_BR / 16 * 32, smem, stream, attn_mma_kernel<T, HD, MMA_BR, BC>)(
            (T *)out, (const T *)q, (const T *)k, (const T *)v, cu_seqlens + b0, nb, tiles, *p);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* attn_launch_mma for p->head_dim (64, 128 or 256; else cudaErrorInvalidValue), with its key tile
 * size (attn_mma_bc). */
template <typename T>
static cudaError_t attn_launch_mma_hd(void *out, const void *q, const void *k, const void *v,
                                      const int32_t *cu_seqlens, int B, int max_len, const kattn_params_t *p,
                                      cudaStream_t stream) {
    int sm = 0, smem = 0;
    attn_device_caps(&sm, &smem);
    switch (p->head_dim) {
    case 64: return attn_launch_mma<T, 64, 64>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 128: return attn_launch_mma<T, 128, 64>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 256:
        if (attn_mma_bc(256, smem) == 32) return attn_launch_mma<T, 256, 32>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
        return attn_launch_mma<T, 256, 16>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    default: return cudaErrorInvalidValue;
    }
}

/* 1 when p is 16-byte aligned (the mma kernel's vector loads need it), else 0. */
static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" cudaError_t attention_forward(void *out, const void *q, const void *k, const void *v, const int32_t *pos,
                                         const int32_t *cu_seqlens, int B, int T, int max_len,
                                         const kattn_params_t *p, int force_generic, kdtype_t dt,
                                         cudaStream_t stream) {
    if (T <= 0 || B <= 0) return cudaSuccess;
    if (p->head_dim <= 0 || p->head_dim > GEN_MAX_HD || p->head_dim % 2 || p->n_kv_heads <= 0 ||
        p->n_heads % p->n_kv_heads)
        return cudaErrorInvalidValue;
    int mma = attention_uses_mma(p->head_dim, dt, force_generic) && aligned16(out) && aligned16(q) &&
              aligned16(k) && aligned16(v);
    if (mma) {
        if (dt == KDT_BF16) return attn_launch_mma_hd<__nv_bfloat16>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
        return attn_launch_mma_hd<__half>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    }
    dim3 grid((unsigned)((T + GEN_WARPS - 1) / GEN_WARPS), (unsigned)p->n_heads);
    KERNEL_DISPATCH(dt, S, LAUNCH(grid, GEN_WARPS * 32, 0, stream, attn_generic_kernel<S>)(
                               (S *)out, (const S *)q, (const S *)k, (const S *)v, pos, T, *p));
    return cudaGetLastError();
}
