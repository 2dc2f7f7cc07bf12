/* attention.cu: causal self-attention over a packed varlen batch (cu_seqlens), with GQA/MQA,
 * Gemma-2's logit softcap and sliding windows, in one pass with an online softmax (no T x T
 * score matrix is ever stored).
 *
 * Two kernels:
 *  - attn_mma_kernel: the FlashAttention-2 scheme on tensor cores (mma.sync m16n8k16; two
 *    m16n8k8 on sm_75) for bf16/fp16 and head_dim 64, 128 or 256. A block of 4 warps owns one
 *    head and BR query rows of one sequence: 32 rows per warp (two m16 tiles) for head_dim 64
 *    and 128, BR = 128; 16 rows per warp for head_dim 256, BR = 64 (32 rows' fp32 output
 *    accumulators would need 256 registers per thread). Each warp loads its Q fragments once
 *    (ldmatrix.x4) and holds them in registers for the whole key loop. Key/value tiles of BC
 *    rows (64 or 32 for head_dim 64, 32 or 16 for 128 and 256: attn_mma_bc) are copied
 *    into shared memory with cp.async, double-buffered, so the next tile's copy overlaps this
 *    tile's math (sm_75 has no cp.async: plain copies there); K and V fragments come from
 *    ldmatrix.x4 (.trans for V), each feeding two mma per m16 tile (MT mma in all). Scores,
 *    the running max/sum and the output accumulators stay in registers in fp32; only the
 *    probabilities are rounded to bf16/fp16 to feed the P.V product (as in FlashAttention).
 *    Key tiles that no query of the block can see (after the diagonal, or older than the
 *    sliding window) are never loaded; each warp skips tiles none of its rows can see, and
 *    evaluates the mask only on tiles where some key is invisible to some of its rows (the
 *    diagonal, window edges, the sequence end): interior tiles do no mask arithmetic. The
 *    softmax runs in log2 units with exp2f, the scale and log2(e) folded into one multiply;
 *    the softcap's tanh is computed from one exp2f (no tanhf per score).
 *  - attn_generic_kernel: one warp per (query row, head), 32 keys per step, fp32 throughout. It
 *    serves fp32, head dims the mma kernel is not built for (the tiny test models use 32 and
 *    48), GPUs without enough shared memory, and LM_ATTN_GENERIC=1 as a safety valve.
 *
 * Not done here: Hopper wgmma/TMA, a split over keys for long single sequences (FlashDecoding),
 * more than two K/V stages. Shared-memory loads per mma in the key loop, counted from the SASS:
 * docs/architecture.md ("Attention kernel").
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

/* The element offset of logical chunk c (elements 8c .. 8c+7) of row r in a shared tile. Either
 * layout makes the 8 rows one ldmatrix matrix reads (8 consecutive rows from a multiple of 8, the
 * same chunk) fall in 8 distinct 16-byte bank groups, so ldmatrix has no bank conflicts:
 *  - padded (SWZ false): row stride HD + 8 elements; the address is a constant offset from a
 *    per-lane base, which keeps the key loop's address arithmetic to immediates;
 *  - swizzled (SWZ true): row stride HD, chunk c of row r at chunk c ^ (r & 7); no padding, at
 *    the cost of XORs in the loop. Used by the 16-key-tile kernel (head_dim 256 where shared
 *    memory is short), where the padding would cost a T4 its second block (33 KiB, not 32).
 * HD >= 64 (at least 8 chunks per row). */
template <int HD, bool SWZ> __device__ __forceinline__ int toff(int r, int c) {
    return SWZ ? r * HD + ((c ^ (r & 7)) << 3) : r * (HD + 8) + (c << 3);
}

/* Queue the copy of rows [row0, row0 + ROWS) of one head (HD contiguous elements per row, row
 * stride ld) into a shared tile laid out by toff<HD, SWZ>, 16 bytes per cp_async16; rows at or past len
 * are zero-filled (and not read). The caller commits and waits. The launcher checks that every
 * base pointer is 16-byte aligned; HD * 2 bytes and ld * 2 bytes are multiples of 16. */
template <typename T, int HD, bool SWZ, int ROWS, int NT>
__device__ __forceinline__ void attn_copy_tile(T *dst, const T *src, size_t ld, int row0, int len, int tid) {
    constexpr int CH = HD / 8; // 16-byte chunks per row
    static_assert(ROWS * CH % NT == 0, "every thread copies the same number of chunks");
#pragma unroll
    for (int i = 0; i < ROWS * CH / NT; i++) {
        const int c = tid + i * NT, r = c / CH, cc = c % CH;
        const bool in = row0 + r < len;
        cp_async16(dst + toff<HD, SWZ>(r, cc), src + (size_t)(in ? row0 + r : 0) * ld + cc * 8, in);
    }
}

/* The shape of the tensor-core kernel for head_dim HD: NW warps of MT m16 row tiles each, so
 * BR = 16 * MT * NW query rows per block. MT = 2 (32 query rows per warp: every K and V fragment
 * loaded from shared memory feeds two mma) for head_dim 64 and 128; MT = 1 for head_dim 256,
 * where 32 rows' fp32 output accumulators alone (256 registers per thread) exceed the
 * 255-register limit. */
template <int HD> struct attn_shape {
    static constexpr int MT = HD == 256 ? 1 : 2, NW = 4, BR = 16 * MT * NW;
};

/* Tensor-core attention (bf16/fp16, HD 64/128/256, key tile BC a multiple of 16): grid (n_heads,
 * B * tiles_per_seq), one block per (head, BR-row query tile of a sequence), NW warps; dynamic
 * shared memory max(BR, 4 * BC) rows of RS elements (toff): the Q tile first, then (once every warp
 * holds its Q fragments in registers) two stages of K and V tiles. */
template <typename T, int HD, int BC>
__global__ void __launch_bounds__(attn_shape<HD>::NW * 32)
attn_mma_kernel(T *out, const T *q, const T *k, const T *v, const int32_t *cu_seqlens, int B, int tiles_per_seq,
                kattn_params_t p) {
    constexpr int MT = attn_shape<HD>::MT, NW = attn_shape<HD>::NW, BR = attn_shape<HD>::BR, NT = NW * 32;
    constexpr int NS = BC / 8;        // score n-tiles per m-tile
    constexpr int NO = HD / 8;        // output n-tiles per m-tile
    constexpr int KQ = HD / 16;       // k16 steps of Q K^T
    constexpr bool SWZ = BC == 16;    // tile layout (toff): swizzled for the small-shared-memory kernel
    constexpr int RS = SWZ ? HD : HD + 8; // row stride of a shared tile (elements)
    static_assert(BC % 16 == 0 && BC >= 16, "the P.V product takes the keys 16 at a time");
    DYN_SMEM(unsigned char, smem_raw);
    T *const sQ = (T *)smem_raw; // (BR, RS), then stage s: K (BC, RS) at sQ + s*2*BC*RS, V after it

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

    /* Q: staged once, then held in registers as A fragments for the whole key loop. ldmatrix
     * .x4: lanes 0-15 give rows 0-15 at column kq*16, lanes 16-31 the same rows at +8, so that
     * d = {a0, a1, a2, a3} of mma.m16n8k16 (the two k8 halves of m16n8k8 on sm_75). */
    attn_copy_tile<T, HD, SWZ, BR, NT>(sQ, q + (size_t)seq0 * qld + (size_t)h * HD, qld, q0, len, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[MT][KQ][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kq = 0; kq < KQ; kq++)
            ldsm<4, false>(qf[mt][kq], sQ + toff<HD, SWZ>(warp * 16 * MT + mt * 16 + (lane & 15), kq * 2 + (lane >> 4)));
    __syncthreads(); // every warp holds its Q: the K/V stages may overwrite sQ

    const int wfirst = q0 + warp * 16 * MT, wlast = wfirst + 16 * MT - 1; // this warp's query rows
    const int qlast = min(q0 + BR, len) - 1;
    int kbeg = p.window > 0 ? max(0, q0 - p.window + 1) : 0;
    kbeg -= kbeg % BC;
    const int ntiles = (qlast - kbeg) / BC + 1;
    /* Scores in log2 units: without softcap x = s * scale * log2(e) (one multiply); with it
     * x = log2(e) * cap * tanh(s * scale / cap), tanh(y) = 1 - 2 / (2^(2y log2 e) + 1) (one exp2,
     * one division, no tanhf; exact to fp32 rounding, cuda-emu computes the same formula). */
    const float sl2 = p.scale * LOG2E_F;
    const float c1 = p.softcap > 0.0f ? 2.0f * p.scale * LOG2E_F / p.softcap : 0.0f, c2 = p.softcap * LOG2E_F;

    float o[MT][NO][4];
    float m[MT][2], l[MT][2]; // per m-tile rows g and g+8: running max (log2 units), partial sums
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int nd = 0; nd < NO; nd++) o[mt][nd][0] = o[mt][nd][1] = o[mt][nd][2] = o[mt][nd][3] = 0.0f;
    }

    /* K/V tiles, double-buffered: tile it+1 is copied (cp.async) while tile it is computed. */
    attn_copy_tile<T, HD, SWZ, BC, NT>(sQ, kbase, kld, kbeg, len, tid);
    attn_copy_tile<T, HD, SWZ, BC, NT>(sQ + BC * RS, vbase, kld, kbeg, len, tid);
    cp_async_commit();
    for (int it = 0; it < ntiles; it++) {
        const int kt = kbeg + it * BC;
        const T *sK = sQ + (it & 1) * 2 * BC * RS, *sV = sK + BC * RS;
        if (it + 1 < ntiles) {
            T *nK = sQ + ((it + 1) & 1) * 2 * BC * RS;
            attn_copy_tile<T, HD, SWZ, BC, NT>(nK, kbase, kld, kt + BC, len, tid);
            attn_copy_tile<T, HD, SWZ, BC, NT>(nK + BC * RS, vbase, kld, kt + BC, len, tid);
            cp_async_commit();
            cp_async_wait<1>(); // this tile's group has landed; the next one's may be in flight
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); // every thread's copies of this tile have landed

        /* Warp-uniform skips: rows past the sequence, keys after all rows, keys before all
         * windows. Masking is needed only where some key of the tile is invisible to some row of
         * the warp: the diagonal (and any tile past the sequence end, which is past the
         * diagonal) and window-edge tiles; interior tiles skip it. */
        const bool work = wfirst < len && kt <= wlast && !(p.window > 0 && kt + BC - 1 <= wfirst - p.window);
        if (work) {
            const bool need_mask = kt + BC - 1 > wfirst || (p.window > 0 && wlast - kt >= p.window);

            /* S = Q K^T: ldmatrix .x4 of 16 keys x 16 dims gives the B fragments {b0, b1} of two
             * n8 tiles (keys n..n+7 from lanes 0-7 at k and 8-15 at k+8; keys n+8.. from 16-31),
             * each used by MT mma. */
            float s[MT][NS][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < NS; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
            for (int kq = 0; kq < KQ; kq++)
#pragma unroll
                for (int n = 0; n < NS; n += 2) {
                    uint32_t kb[4];
                    ldsm<4, false>(kb, sK + toff<HD, SWZ>(n * 8 + (lane & 7) + (lane >> 4) * 8, kq * 2 + ((lane >> 3) & 1)));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_16816<T>(s[mt][n], qf[mt][kq], kb);
                        mma_16816<T>(s[mt][n + 1], qf[mt][kq], kb + 2);
                    }
                }

            /* Scale (and softcap) into log2 units; mask only where needed. */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < NS; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float x = s[mt][n][e];
                        s[mt][n][e] = p.softcap > 0.0f ? c2 - 2.0f * c2 / (exp2f(x * c1) + 1.0f) : x * sl2;
                    }
            if (need_mask) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int n = 0; n < NS; n++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int row = wfirst + mt * 16 + g + (e >= 2 ? 8 : 0), col = kt + n * 8 + 2 * tq + (e & 1);
                            if (!attn_visible(row, col, p.window)) s[mt][n][e] = -INFINITY;
                        }
            }

            /* Online softmax per row: the tile's max over the 4 lanes that share a row, then
             * rescale what we have by 2^(m_old - m_new). A row that has seen no visible key yet
             * keeps m = -inf; it uses base 0 so that no inf - inf appears. */
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    mx0 = fmaxf(mx0, fmaxf(s[mt][n][0], s[mt][n][1]));
                    mx1 = fmaxf(mx1, fmaxf(s[mt][n][2], s[mt][n][3]));
                }
                mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, 1));
                mx0 = fmaxf(mx0, __shfl_xor_sync(FULL_MASK, mx0, 2));
                mx1 = fmaxf(mx1, __shfl_xor_sync(FULL_MASK, mx1, 1));
                mx1 = fmaxf(mx1, __shfl_xor_sync(FULL_MASK, mx1, 2));
                const float mn0 = fmaxf(m[mt][0], mx0), mn1 = fmaxf(m[mt][1], mx1);
                const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
                const float al0 = exp2f(m[mt][0] - base0), al1 = exp2f(m[mt][1] - base1);
                m[mt][0] = mn0;
                m[mt][1] = mn1;
                float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    s[mt][n][0] = exp2f(s[mt][n][0] - base0);
                    s[mt][n][1] = exp2f(s[mt][n][1] - base0);
                    s[mt][n][2] = exp2f(s[mt][n][2] - base1);
                    s[mt][n][3] = exp2f(s[mt][n][3] - base1);
                    rs0 += s[mt][n][0] + s[mt][n][1];
                    rs1 += s[mt][n][2] + s[mt][n][3];
                }
                l[mt][0] = l[mt][0] * al0 + rs0; // per-lane partial sums; a row's 4 lanes are added at the end
                l[mt][1] = l[mt][1] * al1 + rs1;
#pragma unroll
                for (int nd = 0; nd < NO; nd++) {
                    o[mt][nd][0] *= al0;
                    o[mt][nd][1] *= al0;
                    o[mt][nd][2] *= al1;
                    o[mt][nd][3] *= al1;
                }
            }

            /* O += P V. The score accumulators of two adjacent n-tiles are exactly the A fragment
             * of one k16 step. ldmatrix .x4.trans of 16 keys x 16 dims gives the B fragments
             * {b0, b1} of two n8 output tiles (keys kk..+7 from lanes 0-7, kk+8.. from 8-15, both
             * at dims d; lanes 16-31 the same at d+8), each used by MT mma. */
#pragma unroll
            for (int kk = 0; kk < BC / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    a[mt][1] = pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    a[mt][2] = pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    a[mt][3] = pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int nd = 0; nd < NO; nd += 2) {
                    uint32_t vb[4];
                    ldsm<4, true>(vb, sV + toff<HD, SWZ>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, nd + (lane >> 4)));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_16816<T>(o[mt][nd], a[mt], vb);
                        mma_16816<T>(o[mt][nd + 1], a[mt], vb + 2);
                    }
                }
            }
        }
        /* Every warp is done with this stage before the next iteration refills it (only needed
         * when there is a tile it + 2 to copy into it). */
        if (it + 2 < ntiles) __syncthreads();
    }

    T *ob = out + (size_t)seq0 * qld + (size_t)h * HD + 2 * tq;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(FULL_MASK, l0, 1);
        l0 += __shfl_xor_sync(FULL_MASK, l0, 2);
        l1 += __shfl_xor_sync(FULL_MASK, l1, 1);
        l1 += __shfl_xor_sync(FULL_MASK, l1, 2);
        const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
        const int row0 = wfirst + mt * 16 + g, row1 = row0 + 8;
        if (row0 < len) {
            uint32_t *dst = (uint32_t *)(ob + (size_t)row0 * qld);
#pragma unroll
            for (int nd = 0; nd < NO; nd++) dst[nd * 4] = pack2<T>(o[mt][nd][0] * inv0, o[mt][nd][1] * inv0);
        }
        if (row1 < len) {
            uint32_t *dst = (uint32_t *)(ob + (size_t)row1 * qld);
#pragma unroll
            for (int nd = 0; nd < NO; nd++) dst[nd * 4] = pack2<T>(o[mt][nd][2] * inv1, o[mt][nd][3] * inv1);
        }
    }
}

/* =============================================================================================
 * Launchers
 * ===========================================================================================*/

/* Query rows per block of the mma kernel for head_dim hd (attn_shape<hd>::BR). */
static int attn_mma_br(int hd) { return hd == 256 ? attn_shape<256>::BR : attn_shape<64>::BR; }

/* Shared memory (bytes) of the mma kernel for head_dim hd and key tile bc: the Q tile, later
 * reused by the two K/V stages. */
static size_t attn_mma_smem(int hd, int bc) {
    const int rows = attn_mma_br(hd) > 4 * bc ? attn_mma_br(hd) : 4 * bc;
    return (size_t)rows * (size_t)(bc == 16 ? hd : hd + 8) * 2u; // row stride RS
}

/* The key tile size for head_dim hd among the instantiated ones (64 or 32 for head_dim 64, 32
 * or 16 for 128 and 256): the largest that lets two blocks share the device's opt-in shared
 * memory (a proxy for two blocks per SM: with 255 registers per thread, two blocks of 4 warps is
 * what the register file holds anyway), else the largest that fits at all, else 0 (none fits).
 * Per block: head_dim 64 36/18 KiB, 128 34/32 KiB, 256 66/32 KiB (the 16-key tiles swizzled,
 * unpadded); so a T4 (64 KiB) runs two blocks of every head dim: 64 with 32-key tiles, 128 and
 * 256 with 16-key tiles. */
static int attn_mma_bc(int hd, int smem_optin) {
    static const int cands[3][3] = {{64, 32, 0}, {32, 16, 0}, {32, 16, 0}};
    const int *c = cands[hd == 64 ? 0 : hd == 128 ? 1 : 2];
    for (int i = 0; c[i]; i++)
        if (2 * attn_mma_smem(hd, c[i]) <= (size_t)smem_optin) return c[i];
    for (int i = 0; c[i]; i++)
        if (attn_mma_smem(hd, c[i]) <= (size_t)smem_optin) return c[i];
    return 0;
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
    return attn_mma_bc(head_dim, smem) != 0;
}

/* Launch attn_mma_kernel<T, HD, BC> over the batch, in chunks of whole sequences that keep
 * gridDim.y <= 65535, opting into more than 48 KiB of shared memory once. Returns the first launch
 * error, or cudaErrorInvalidValue when one sequence needs more than 65535 tiles. */
template <typename T, int HD, int BC>
static cudaError_t attn_launch_mma(void *out, const void *q, const void *k, const void *v, const int32_t *cu_seqlens,
                                   int B, int max_len, const kattn_params_t *p, cudaStream_t stream) {
    constexpr int BR = attn_shape<HD>::BR;
    const size_t smem = attn_mma_smem(HD, BC);
    static bool smem_set = false; // one opt-in per instantiation and process (device 0 only)
    if (!smem_set && smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_mma_kernel<T, HD, BC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess) return e;
        smem_set = true;
    }
    const int tiles = (max_len + BR - 1) / BR;
    /* gridDim.y is at most 65535: launch the batch in chunks of whole sequences. A sequence of
     * more than 65535 tiles (8M tokens) cannot be chunked that way; refuse it rather than loop. */
    if (tiles <= 0 || tiles > 65535) return cudaErrorInvalidValue;
    const int chunk = 65535 / tiles < B ? 65535 / tiles : B;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        const int nb = B - b0 < chunk ? B - b0 : chunk;
        dim3 grid((unsigned)p->n_heads, (unsigned)(nb * tiles));
        LAUNCH(grid, attn_shape<HD>::NW * 32, smem, stream, attn_mma_kernel<T, HD, BC>)(
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
    const int bc = attn_mma_bc(p->head_dim, smem);
    switch (p->head_dim * 1000 + bc) {
    case 64064: return attn_launch_mma<T, 64, 64>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 64032: return attn_launch_mma<T, 64, 32>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 128032: return attn_launch_mma<T, 128, 32>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 128016: return attn_launch_mma<T, 128, 16>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 256032: return attn_launch_mma<T, 256, 32>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
    case 256016: return attn_launch_mma<T, 256, 16>(out, q, k, v, cu_seqlens, B, max_len, p, stream);
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
