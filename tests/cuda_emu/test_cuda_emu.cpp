/* test_cuda_emu.cpp: self-tests of cuda-emu's ldmatrix and cp.async (emu_device.cpp) through
 * the wrappers the kernels use (kernels/kernel_util.cuh), compiled like a kernel source (C++,
 * cuda_emu.h forced first, LM_CUDA_EMU).
 *
 * Oracles: ldmatrix against a plain-C model of the PTX ISA's rule (lane 8*i + r gives row r of
 * matrix i; lane T receives row T/4, columns 2*(T%4) and +1; .trans the transpose), and, as an
 * oracle that does not share that rule, fragments loaded by ldmatrix fed to mma.sync (whose layout
 * was checked against the PTX ISA's own figures) against a plain matrix product, for both the
 * K-style (B = K^T, no .trans) and the V-style (B = V, .trans) loads attention.cu uses. cp.async:
 * a copy lands only when a wait_group retires its group, src-size below cp-size zero-fills the
 * rest (.cg 16 bytes, .ca 4 and 8). Misuse (an
 * unaligned or non-shared ldmatrix row, a cp.async into global memory or unaligned or .cg of
 * 8 bytes, an ldmatrix by half a warp) must abort, checked in a forked child. Not covered: the kernels themselves
 * (tests/unit/test_kernels.c).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel_util.cuh"
#include "tinytest.h"

/* A failed emulated runtime call: test infrastructure, not a finding; stop here. */
#define CK(call)                                                                                 \
    do {                                                                                         \
        if ((call) != cudaSuccess) {                                                             \
            fprintf(stderr, "test_cuda_emu: %s failed at %s:%d\n", #call, __FILE__, __LINE__);   \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * ldmatrix against the plain-C model
 * ------------------------------------------------------------------------------------------- */

/* Row r of matrix i sits at row slot (8*i + r) * 5 % 32 of a 32-row shared buffer (a permutation:
 * rows need not be adjacent), element c holding (8*i + r) * 8 + c. out[lane * 4 + i] = d[i]. */
template <int N, bool TR> __global__ void k_ldmatrix(uint32_t *out) {
    DYN_SMEM(uint16_t, sm);
    const int lane = threadIdx.x, slot = lane * 5 % 32;
    for (int c = 0; c < 16; c++) sm[slot * 16 + c] = (uint16_t)(c < 8 ? lane * 8 + c : 0xdead);
    __syncwarp();
    uint32_t d[N];
    ldsm<N, TR>(d, sm + slot * 16);
    for (int i = 0; i < 4; i++) out[lane * 4 + i] = i < N ? d[i] : 0u;
}

/* Run k_ldmatrix<N, TR> and compare every lane's registers with the PTX ISA's rule. */
template <int N, bool TR> static void check_ldmatrix(void) {
    uint32_t *dout = NULL, got[128];
    CK(cudaMalloc((void **)&dout, sizeof got));
    LAUNCH(dim3(1), dim3(32), 32 * 16 * 2, 0, k_ldmatrix<N, TR>)(dout);
    CK(cudaGetLastError());
    CK(cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int t = 0; t < 32; t++)
        for (int i = 0; i < N; i++) {
            const int g = t / 4, c = 2 * (t % 4);
            /* element (r, col) of matrix i is (8 i + r) * 8 + col */
            const uint32_t lo = TR ? (8 * i + c) * 8 + g : (8 * i + g) * 8 + c;
            const uint32_t hi = TR ? (8 * i + c + 1) * 8 + g : (8 * i + g) * 8 + c + 1;
            const uint32_t want = lo | hi << 16;
            if (got[t * 4 + i] != want && bad++ < 5)
                fprintf(stderr, "  ldmatrix.x%d%s lane %d d[%d] = %#x, want %#x\n", N, TR ? ".trans" : "", t, i,
                        got[t * 4 + i], want);
        }
    EXPECT_MSG(bad == 0, "ldmatrix.x%d%s: %d wrong registers", N, TR ? ".trans" : "", bad);
    CK(cudaFree(dout));
}

TEST(test_ldmatrix_layout) {
    check_ldmatrix<1, false>();
    check_ldmatrix<2, false>();
    check_ldmatrix<4, false>();
    check_ldmatrix<1, true>();
    check_ldmatrix<2, true>();
    check_ldmatrix<4, true>();
}

/* ---------------------------------------------------------------------------------------------
 * ldmatrix fragments through mma.sync against a plain matrix product
 * ------------------------------------------------------------------------------------------- */

#define LDP 24 // padded shared row (elements): 48 bytes, 16-byte aligned

/* c (16x8, fp32, out[row * 8 + col]) = A (16x16) . B, with B = K^T (K 8x16, ldmatrix.x2) when
 * !TR and B = V (V 16x8, ldmatrix.x2.trans) when TR; A, K, V fp16 bits, row-major, in global. */
template <bool TR> __global__ void k_mma_ldsm(float *out, const uint16_t *A, const uint16_t *Bm) {
    DYN_SMEM(uint16_t, sm);
    uint16_t *sA = sm, *sB = sm + 16 * LDP;
    const int lane = threadIdx.x, g = lane >> 2, tq = lane & 3;
    for (int e = lane; e < 256; e += 32) sA[e / 16 * LDP + e % 16] = A[e];
    for (int e = lane; e < 128; e += 32) {
        if (TR) sB[e / 8 * LDP + e % 8] = Bm[e];    // V: 16 rows (keys) x 8
        else sB[e / 16 * LDP + e % 16] = Bm[e];     // K: 8 rows x 16
    }
    __syncwarp();
    uint32_t a[4], b[2];
    ldsm<4, false>(a, sA + (lane & 15) * LDP + (lane >> 4) * 8);
    if (TR) ldsm<2, true>(b, sB + ((lane & 7) + ((lane >> 3) & 1) * 8) * LDP);
    else ldsm<2, false>(b, sB + (lane & 7) * LDP + ((lane >> 3) & 1) * 8);
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    emu::mma_m16n8k16(c, a, b, 0);
    out[g * 8 + 2 * tq] = c[0];
    out[g * 8 + 2 * tq + 1] = c[1];
    out[(g + 8) * 8 + 2 * tq] = c[2];
    out[(g + 8) * 8 + 2 * tq + 1] = c[3];
}

/* Small integers, exact in fp16 and in every fp32 partial sum. */
static uint16_t f16_bits(int v) { return ((__half_raw)__float2half((float)v)).x; }

template <bool TR> static void check_mma_ldsm(void) {
    int A[16][16], Bm[128];
    uint16_t hA[256], hB[128];
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 16; k++) hA[r * 16 + k] = f16_bits(A[r][k] = (r * 7 + k * 3) % 9 - 4);
    for (int e = 0; e < 128; e++) hB[e] = f16_bits(Bm[e] = (e * 5 + 3) % 11 - 5);
    uint16_t *dA = NULL, *dB = NULL;
    float *dC = NULL, got[128];
    CK(cudaMalloc((void **)&dA, sizeof hA));
    CK(cudaMalloc((void **)&dB, sizeof hB));
    CK(cudaMalloc((void **)&dC, sizeof got));
    CK(cudaMemcpy(dA, hA, sizeof hA, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, hB, sizeof hB, cudaMemcpyHostToDevice));
    LAUNCH(dim3(1), dim3(32), 32 * LDP * 2, 0, k_mma_ldsm<TR>)(dC, dA, dB);
    CK(cudaGetLastError());
    CK(cudaMemcpy(got, dC, sizeof got, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            int want = 0;
            for (int k = 0; k < 16; k++) want += A[r][k] * (TR ? Bm[k * 8 + n] : Bm[n * 16 + k]);
            if (got[r * 8 + n] != (float)want && bad++ < 5)
                fprintf(stderr, "  %s C[%d][%d] = %g, want %d\n", TR ? "A.V" : "A.K^T", r, n, (double)got[r * 8 + n], want);
        }
    EXPECT_MSG(bad == 0, "%s through ldmatrix + mma: %d wrong", TR ? "A.V (.trans)" : "A.K^T", bad);
    CK(cudaFree(dA));
    CK(cudaFree(dB));
    CK(cudaFree(dC));
}

TEST(test_ldmatrix_feeds_mma) {
    check_mma_ldsm<false>();
    check_mma_ldsm<true>();
}

/* ---------------------------------------------------------------------------------------------
 * cp.async: lands at wait_group, zero-fill
 * ------------------------------------------------------------------------------------------- */

#define STALE 0xdeadbeefu

/* Each lane: group 0 = 16 bytes of src row `lane`; group 1 = 16 bytes of src row 32 + lane and a
 * zero-filled chunk. out[lane * 6 + k] records shared memory before any wait (k 0), after
 * wait_group 1 (k 1, 2), after wait_group 0 (k 3, 4, 5). */
__global__ void k_cp_async(uint32_t *out, const uint32_t *src) {
    DYN_SMEM(uint32_t, sm);
    const int lane = threadIdx.x;
    uint32_t *mine = sm + lane * 12;
    for (int j = 0; j < 12; j++) mine[j] = STALE;
    cp_async16(mine, src + lane * 4, true);
    cp_async_commit();
    cp_async16(mine + 4, src + (32 + lane) * 4, true);
    cp_async16(mine + 8, src, false);
    cp_async_commit();
    uint32_t *o = out + lane * 6;
    o[0] = mine[0];
    cp_async_wait<1>();
    o[1] = mine[0];
    o[2] = mine[4];
    cp_async_wait<0>();
    o[3] = mine[4];
    o[4] = mine[8];
    o[5] = mine[7];
}

/* cp.async.ca of 4 and 8 bytes (the kernels use only .cg 16): lane l copies word l (4 bytes)
 * and words 32 + 2l, 33 + 2l (8 bytes, src-size 4: the second word zero-filled) in one group. */
__global__ void k_cp_async_ca(uint32_t *out, const uint32_t *src) {
    DYN_SMEM(uint32_t, sm);
    const int lane = threadIdx.x;
    sm[lane] = sm[32 + 2 * lane] = sm[33 + 2 * lane] = STALE;
    emu::cp_async(sm + lane, src + lane, 4, 4, 0);
    emu::cp_async(sm + 32 + 2 * lane, src + 32 + 2 * lane, 8, 4, 0);
    emu::cp_async_commit();
    out[lane * 4] = sm[lane];
    emu::cp_async_wait(0);
    out[lane * 4 + 1] = sm[lane];
    out[lane * 4 + 2] = sm[32 + 2 * lane];
    out[lane * 4 + 3] = sm[33 + 2 * lane];
}

/* Run one warp of kernel k(out, src) with smem bytes of shared memory, src = nsrc words
 * base + i; got receives its nout output words. */
static void run_copy_kernel(void (*k)(uint32_t *, const uint32_t *), size_t smem, uint32_t base, int nsrc,
                            uint32_t *got, int nout) {
    uint32_t *hsrc = (uint32_t *)malloc((size_t)nsrc * 4), *dsrc = NULL, *dout = NULL;
    if (!hsrc) exit(1);
    for (int i = 0; i < nsrc; i++) hsrc[i] = base + (uint32_t)i;
    CK(cudaMalloc((void **)&dsrc, (size_t)nsrc * 4));
    CK(cudaMalloc((void **)&dout, (size_t)nout * 4));
    CK(cudaMemcpy(dsrc, hsrc, (size_t)nsrc * 4, cudaMemcpyHostToDevice));
    LAUNCH(dim3(1), dim3(32), smem, 0, k)(dout, dsrc);
    CK(cudaGetLastError());
    CK(cudaMemcpy(got, dout, (size_t)nout * 4, cudaMemcpyDeviceToHost));
    CK(cudaFree(dsrc));
    CK(cudaFree(dout));
    free(hsrc);
}

TEST(test_cp_async_ca_sizes) {
    uint32_t got[128];
    run_copy_kernel(k_cp_async_ca, 96 * 4, 0x2000u, 96, got, 128);
    const int f0 = tt_failures_;
    for (int l = 0; l < 32 && tt_failures_ == f0; l++) { // stop at the first lane that fails
        const uint32_t *o = got + l * 4;
        EXPECT_MSG(o[0] == STALE, "lane %d: a .ca copy landed before its wait", l);
        EXPECT_MSG(o[1] == 0x2000u + (uint32_t)l, "lane %d: 4-byte .ca copy", l);
        EXPECT_MSG(o[2] == 0x2000u + 32u + 2u * (uint32_t)l, "lane %d: 8-byte .ca copy, first word", l);
        EXPECT_MSG(o[3] == 0u, "lane %d: 8-byte .ca copy with src-size 4: second word not zero", l);
    }
}

TEST(test_cp_async_lands_at_wait) {
    uint32_t got[192];
    run_copy_kernel(k_cp_async, 32 * 12 * 4, 0x1000u, 256, got, 192);
    const int f0 = tt_failures_;
    for (int l = 0; l < 32 && tt_failures_ == f0; l++) { // stop at the first lane that fails
        const uint32_t *o = got + l * 6;
        EXPECT_MSG(o[0] == STALE, "lane %d: a copy landed before any wait_group", l);
        EXPECT_MSG(o[1] == 0x1000u + (uint32_t)l * 4, "lane %d: group 0 not landed after wait_group 1", l);
        EXPECT_MSG(o[2] == STALE, "lane %d: group 1 landed before its wait_group", l);
        EXPECT_MSG(o[3] == 0x1000u + (uint32_t)(32 + l) * 4, "lane %d: group 1 not landed after wait_group 0", l);
        EXPECT_MSG(o[4] == 0u, "lane %d: src-size 0 did not zero-fill", l);
        EXPECT_MSG(o[5] == 0x1000u + (uint32_t)(32 + l) * 4 + 3, "lane %d: last word of a 16-byte copy", l);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Misuse aborts
 * ------------------------------------------------------------------------------------------- */

__global__ void k_misuse(int what, uint32_t *glob) {
    DYN_SMEM(uint16_t, sm);
    const int lane = threadIdx.x;
    uint32_t d[4] = {0u, 0u, 0u, 0u}, d1[1], d2[2];
    if (what == 0) ldsm<4, false>(d, sm + lane * 8 + (lane == 5 ? 2 : 0)); // lane 5: 4 bytes off
    if (what == 1) ldsm<1, false>(d1, glob + lane * 4);                    // global memory
    if (what == 2) cp_async16(glob, sm, true);                              // wrong direction
    if (what == 3 && lane < 16) ldsm<4, false>(d, sm + lane * 8);           // half a warp
    if (what == 4) ldsm<2, true>(d2, sm + lane * 8 + 4096);                 // past the block's smem
    if (what == 5) emu::cp_async(sm + 2, glob, 8, 8, 0);                     // 8-byte copy, 4-byte aligned
    if (what == 6) emu::cp_async(sm, glob, 8, 8, 1);                         // .cg with 8 bytes
    glob[lane] = d[0];
}

/* 1 when running k_misuse(what) aborts (in a forked child, so the abort is contained). */
static int misuse_aborts(int what) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        uint32_t *g = NULL;
        if (cudaMalloc((void **)&g, 32 * 16) != cudaSuccess) _exit(3);
        LAUNCH(dim3(1), dim3(32), 32 * 8 * 2, 0, k_misuse)(what, g);
        cudaDeviceSynchronize();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

TEST(test_misuse_aborts) {
    fprintf(stderr, "  (the cuda-emu errors below are expected)\n");
    EXPECT_MSG(misuse_aborts(0), "ldmatrix with a row address not 16-byte aligned");
    EXPECT_MSG(misuse_aborts(1), "ldmatrix from global memory");
    EXPECT_MSG(misuse_aborts(2), "cp.async into global memory");
    EXPECT_MSG(misuse_aborts(3), "ldmatrix by half a warp");
    EXPECT_MSG(misuse_aborts(4), "ldmatrix past the block's shared memory");
    EXPECT_MSG(misuse_aborts(5), "cp.async of 8 bytes to an address aligned to 4");
    EXPECT_MSG(misuse_aborts(6), "cp.async.cg of 8 bytes");
}

/* cp.async needs sm_80; ldmatrix sm_75: the self-tests run on an emulated sm_80, with copies
 * landing at their wait (CUDA_EMU_ASYNC=late, the default), whatever the environment says. */
static int setup(void) {
    setenv("CUDA_EMU_SM", "80", 1);
    setenv("CUDA_EMU_ASYNC", "late", 1);
    return 0;
}

TEST_MAIN_WITH(setup, NULL, test_ldmatrix_layout, test_ldmatrix_feeds_mma, test_cp_async_lands_at_wait,
               test_cp_async_ca_sizes, test_misuse_aborts)
