/* test_kernels.c: every CUDA backend op against the CPU reference op (backend_cpu.c) on fresh
 * random inputs, llm.c style: |gpu - cpu| <= atol + rtol * |cpu| with a tolerance per compute
 * dtype, the first mismatches printed.
 *
 * Inputs are made exactly representable in the GPU's compute dtype first (rounded on the GPU
 * and read back), and weights are read back after upload (rounded, or int8-dequantised), so the
 * CPU computes in fp32 on exactly the values the GPU sees: the comparison measures the kernels'
 * own rounding, not the inputs'. Also fp16 beyond its range (issue 9): saturating stores, the
 * upload's refusal of weights fp16 cannot hold, and a layer whose projections exceed 65504.
 * Attention also at the tensor-core kernel's tile edges (test_attention_tile_edges).
 * Backends covered: fp32, bf16 (sm_80+), fp16, int8 weights, and
 * bf16/fp16 with the generic attention kernel forced (LM_ATTN_GENERIC=1).
 *
 * Skips (exit 77) when built without CUDA or when no CUDA device is present. On a GPU machine
 * tools/gpu-check.sh runs it; without one, ctest runs the same file on the cuda-emu emulator
 * (test_kernels_emu_*, tests/cuda_emu), which needs only the CUDA headers.
 */
#include <stdio.h>

#define CUDA_TEST_NAME "test_kernels"
#include "cuda_test.h"
#ifdef LM_HAVE_CUDA

#include "backend.h"
#include "backend_cpu.h"
#include "exit_codes.h"
#include "kernels.h"
#include "quant.h"
#include "tinytest.h"

typedef struct {
    const char *name;
    backend_t *b;
    int attn_only; // used by the attention test alone (forced generic kernel)
} gpu_t;

enum { N_GPUS = 5 };
static gpu_t g_gpus[N_GPUS];
static backend_t *g_cpu;

/* ---------------------------------------------------------------------------------------------
 * Random inputs and comparisons
 * ------------------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x853c49e6748fea9bull;

static double urand(void) { // uniform in [0, 1), splitmix64
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static float nrand(void) {
    double u = urand(), v = urand();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static float *randn(size_t n, float std) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = std * nrand();
    return p;
}

typedef struct {
    double atol, rtol;
} tol_t;

/* fp32: only summation order differs (reductions get more room); bf16 and fp16: the output is
 * rounded to 8 or 11 significant bits, plus intermediate roundings inside the op. */
static tol_t tol_for(dtype_t dt, int reduction) {
    if (dt == DT_BF16) return (tol_t){2e-2, 2e-2};
    if (dt == DT_F16) return (tol_t){5e-3, 5e-3};
    return reduction ? (tol_t){1e-4, 1e-4} : (tol_t){1e-5, 1e-5};
}

/* Compare got (GPU) with ref (CPU); print the first 10 mismatches. Returns the mismatch count. */
static size_t compare(const char *what, const float *got, const float *ref, size_t n, tol_t tol) {
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]), lim = tol.atol + tol.rtol * fabs((double)ref[i]);
        if (!(d <= lim)) { // NaN fails too
            if (bad < 10)
                fprintf(stderr, "  mismatch %s: [%zu] gpu %.7g cpu %.7g |diff| %.3g > %.3g\n", what, i, (double)got[i],
                        (double)ref[i], d, lim);
            bad++;
        }
        if (d / lim > worst) worst = d / lim;
    }
    EXPECT_MSG(bad == 0, "%s: %zu of %zu values outside |gpu-cpu| <= %g + %g*|cpu|", what, bad, n, tol.atol, tol.rtol);
    printf("  %-58s n=%-7zu worst |diff|/tol = %.3f%s\n", what, n, worst, bad ? "  MISMATCH" : "");
    return bad;
}

/* ---------------------------------------------------------------------------------------------
 * Moving data between the test, the CPU backend and a GPU backend
 * ------------------------------------------------------------------------------------------- */

static void gpu_sync(backend_t *g) {
    err_t err = {0};
    if (g->ops->sync(g, &err)) {
        fprintf(stderr, "test_kernels: backend sync failed: %s\n", err.msg);
        exit(1);
    }
    TCK(cudaDeviceSynchronize());
}

/* A new GPU buffer of `kind` holding host[0..n). For ACT_WORK the values are rounded to the
 * compute dtype and host[] is overwritten with the rounded values, so the CPU sees them too. */
static void *gpu_put(backend_t *g, float *host, size_t n, act_kind_t kind) {
    void *d = g->ops->act_alloc(g, n, kind);
    float *tmp = NULL;
    ASSERT(d != NULL);
    TCK(cudaMalloc((void **)&tmp, n * sizeof(float)));
    TCK(cudaMemcpy(tmp, host, n * sizeof(float), cudaMemcpyHostToDevice));
    if (kind == ACT_RESIDUAL) {
        TCK(cudaMemcpy(d, tmp, n * sizeof(float), cudaMemcpyDeviceToDevice));
    } else {
        TCK(convert_from_f32(d, tmp, n, (kdtype_t)g->compute, 0));
        TCK(convert_to_f32(tmp, d, n, (kdtype_t)g->compute, 0));
        TCK(cudaMemcpy(host, tmp, n * sizeof(float), cudaMemcpyDeviceToHost));
    }
    TCK(cudaDeviceSynchronize());
    TCK(cudaFree(tmp));
    return d;
}

/* host[0..n) = the GPU buffer d of `kind`, in fp32, after the backend's queued work is done. */
static void gpu_get(backend_t *g, float *host, const void *d, size_t n, act_kind_t kind) {
    float *tmp = NULL;
    gpu_sync(g);
    TCK(cudaMalloc((void **)&tmp, n * sizeof(float)));
    if (kind == ACT_RESIDUAL) TCK(cudaMemcpy(tmp, d, n * sizeof(float), cudaMemcpyDeviceToDevice));
    else TCK(convert_to_f32(tmp, d, n, (kdtype_t)g->compute, 0));
    TCK(cudaMemcpy(host, tmp, n * sizeof(float), cudaMemcpyDeviceToHost));
    TCK(cudaFree(tmp));
}

/* A CPU backend buffer holding a copy of host[0..n). */
static float *cpu_put(const float *host, size_t n) {
    float *p = g_cpu->ops->act_alloc(g_cpu, n, ACT_WORK);
    ASSERT(p != NULL);
    memcpy(p, host, n * sizeof(float));
    return p;
}

/* Upload host (rows, cols) as a GPU weight; exact[] receives the values the GPU computes with
 * (rounded to the compute dtype, or int8-dequantised then rounded), and *cw a CPU view of it. */
static void weight_put(backend_t *g, bweight_t *gw, bweight_t *cw, float *exact, const float *host, int rows,
                       int cols) {
    size_t n = (size_t)rows * cols;
    float *tmp = NULL;
    void *tmp_dt = NULL;
    ASSERT(g->ops->weight_upload(g, gw, host, DT_F32, rows, cols, "w") == 0);
    gpu_sync(g);
    TCK(cudaMalloc((void **)&tmp, n * sizeof(float)));
    if (gw->dtype == DT_I8) {
        TCK(cudaMalloc(&tmp_dt, n * 4));
        TCK(dequant_int8_forward(tmp_dt, gw->data, gw->scales, rows, cols, (kdtype_t)g->compute, 0));
        TCK(convert_to_f32(tmp, tmp_dt, n, (kdtype_t)g->compute, 0));
    } else {
        TCK(convert_to_f32(tmp, gw->data, n, (kdtype_t)g->compute, 0));
    }
    TCK(cudaMemcpy(exact, tmp, n * sizeof(float), cudaMemcpyDeviceToHost));
    TCK(cudaFree(tmp));
    if (tmp_dt) TCK(cudaFree(tmp_dt));
    *cw = cpu_weight_wrap(exact, rows, cols);
}

/* A host batch of B sequences of the given lengths, random tokens below vocab. Free with free(). */
typedef struct {
    bbatch_t bt;
    int32_t *mem;
} host_batch_t;

static host_batch_t batch_make(const int *lens, int B, int vocab) {
    host_batch_t h = {0};
    int T = 0, max_len = 0;
    for (int b = 0; b < B; b++) {
        T += lens[b];
        if (lens[b] > max_len) max_len = lens[b];
    }
    h.mem = xmalloc((size_t)(2 * T + 2 * B + 1) * sizeof(int32_t));
    h.bt = (bbatch_t){.B = B, .T = T, .max_len = max_len, .tokens = h.mem, .pos = h.mem + T,
                      .cu_seqlens = h.mem + 2 * T, .last = h.mem + 2 * T + B + 1};
    h.bt.cu_seqlens[0] = 0;
    for (int b = 0; b < B; b++) {
        h.bt.cu_seqlens[b + 1] = h.bt.cu_seqlens[b] + lens[b];
        for (int i = 0; i < lens[b]; i++) h.bt.pos[h.bt.cu_seqlens[b] + i] = i;
        h.bt.last[b] = h.bt.cu_seqlens[b + 1] - 1;
    }
    for (int t = 0; t < T; t++) h.bt.tokens[t] = (int32_t)(urand() * vocab);
    h.bt.h_cu_seqlens = h.bt.cu_seqlens;
    return h;
}

static void batch_free_dev(backend_t *be, bbatch_t *bt) {
    be->ops->mem_free(be, bt->tokens);
    be->ops->mem_free(be, bt->pos);
    be->ops->mem_free(be, bt->cu_seqlens);
    be->ops->mem_free(be, bt->last);
    memset(bt, 0, sizeof *bt);
}

/* Run the following block once for each GPU backend g (named gname) whose compute dtype is dt. */
#define FOR_GPUS(g, gname, dt)                                                              \
    for (int gi_ = 0; gi_ < N_GPUS; gi_++)                                                  \
        for (backend_t *g = g_gpus[gi_].attn_only ? NULL : g_gpus[gi_].b; g; g = NULL)      \
            for (const char *gname = g_gpus[gi_].name; gname; gname = NULL)                 \
                for (int dt_once_ = 1; dt_once_; dt_once_ = 0)                              \
                    for (dtype_t dt = g->compute; dt_once_; dt_once_ = 0)

/* ---------------------------------------------------------------------------------------------
 * Tests, one per op
 * ------------------------------------------------------------------------------------------- */

/* embed: dim 200 on the 16-byte vector path, 203 on the scalar one; fp, and int8 rows on the
 * int8 backend. */
TEST(test_embed) {
    int lens[] = {1, 17, 40}, vocab = 300, dims[2] = {200, 203};
    host_batch_t h = batch_make(lens, 3, vocab);
    bbatch_t cbt = {0};
    ASSERT(g_cpu->ops->batch_upload(g_cpu, &cbt, &h.bt) == 0);
    for (int di = 0; di < 2; di++) {
        int dim = dims[di];
        float *emb = randn((size_t)vocab * dim, 1.0f), *exact = xmalloc((size_t)vocab * dim * sizeof(float));
        float *got = xmalloc((size_t)h.bt.T * dim * sizeof(float));
        FOR_GPUS(g, name, dt) {
            bweight_t gw, cw;
            bbatch_t gbt = {0};
            weight_put(g, &gw, &cw, exact, emb, vocab, dim);
            ASSERT(g->ops->batch_upload(g, &gbt, &h.bt) == 0);
            float scales[2] = {1.0f, sqrtf((float)dim)}; // Llama, Gemma
            for (int s = 0; s < 2; s++) {
                float *gx = g->ops->act_alloc(g, (size_t)h.bt.T * dim, ACT_RESIDUAL);
                float *cx = g_cpu->ops->act_alloc(g_cpu, (size_t)h.bt.T * dim, ACT_RESIDUAL);
                g->ops->embed(g, gx, &gw, &gbt, dim, scales[s]);
                g_cpu->ops->embed(g_cpu, cx, &cw, &cbt, dim, scales[s]);
                gpu_get(g, got, gx, (size_t)h.bt.T * dim, ACT_RESIDUAL);
                char what[128];
                snprintf(what, sizeof what, "embed %s dim=%d scale %.4g", name, dim, (double)scales[s]);
                compare(what, got, cx, (size_t)h.bt.T * dim, tol_for(dt, 0));
                g->ops->mem_free(g, gx);
                g_cpu->ops->mem_free(g_cpu, cx);
            }
            g->ops->weight_free(g, &gw);
            batch_free_dev(g, &gbt);
        }
        free(emb), free(exact), free(got);
    }
    batch_free_dev(g_cpu, &cbt);
    free(h.mem);
}

/* convert_from_f32 / convert_to_f32 against the host's round_bf16 / round_f16 (weight_round.c,
 * an independent implementation): n = 1003 (a vector body and a scalar tail), and both pointers
 * one element off 16-byte alignment (all scalar). */
TEST(test_convert) {
    size_t n = 1003;
    float *src = randn(n + 1, 2.0f), *got = xmalloc((n + 1) * 4);
    float *dsrc = NULL, *dback = NULL;
    void *dst = NULL;
    TCK(cudaMalloc((void **)&dsrc, (n + 1) * 4));
    TCK(cudaMalloc((void **)&dback, (n + 1) * 4));
    TCK(cudaMalloc(&dst, (n + 1) * 2));
    TCK(cudaMemcpy(dsrc, src, (n + 1) * 4, cudaMemcpyHostToDevice));
    for (int k = 0; k < 2; k++) {
        kdtype_t dt = k ? KDT_F16 : KDT_BF16;
        for (int shift = 0; shift < 2; shift++) {
            TCK(convert_from_f32((char *)dst + 2 * shift, dsrc + shift, n, dt, 0));
            TCK(convert_to_f32(dback + shift, (char *)dst + 2 * shift, n, dt, 0));
            TCK(cudaMemcpy(got, dback + shift, n * 4, cudaMemcpyDeviceToHost));
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) {
                float want = k ? round_f16(src[shift + i]) : round_bf16(src[shift + i]);
                bad += memcmp(&got[i], &want, 4) != 0;
            }
            EXPECT_MSG(bad == 0, "convert %s shift %d: %zu of %zu values differ from the host rounding",
                       k ? "fp16" : "bf16", shift, bad, n);
        }
    }
    TCK(cudaFree(dsrc));
    TCK(cudaFree(dback));
    TCK(cudaFree(dst));
    free(src), free(got);
}

TEST(test_rmsnorm) {
    int shapes[][2] = {{33, 128}, {5, 1001}, {2, 3584}};
    FOR_GPUS(g, name, dt) {
        for (int s = 0; s < 3; s++) {
            int T = shapes[s][0], dim = shapes[s][1];
            float *x = randn((size_t)T * dim, 3.0f), *w = randn(dim, 0.1f), *got = xmalloc((size_t)T * dim * 4);
            float *gx = gpu_put(g, x, (size_t)T * dim, ACT_RESIDUAL), *gw = g->ops->vec_upload(g, w, dim);
            float *cx = cpu_put(x, (size_t)T * dim), *cw = cpu_put(w, dim);
            for (int off = 0; off <= 1; off++) {
                void *go = g->ops->act_alloc(g, (size_t)T * dim, ACT_WORK);
                float *co = g_cpu->ops->act_alloc(g_cpu, (size_t)T * dim, ACT_WORK);
                g->ops->rmsnorm(g, go, gx, gw, T, dim, 1e-6f, (float)off);
                g_cpu->ops->rmsnorm(g_cpu, co, cx, cw, T, dim, 1e-6f, (float)off);
                gpu_get(g, got, go, (size_t)T * dim, ACT_WORK);
                char what[128];
                snprintf(what, sizeof what, "rmsnorm %s T=%d dim=%d offset=%d", name, T, dim, off);
                compare(what, got, co, (size_t)T * dim, tol_for(dt, 0));
                g->ops->mem_free(g, go);
                g_cpu->ops->mem_free(g_cpu, co);
            }
            g->ops->mem_free(g, gx), g->ops->mem_free(g, gw);
            g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, cw);
            free(x), free(w), free(got);
        }
    }
}

TEST(test_matmul) {
    /* T, in, out; the last has odd sizes (no vectorised path may assume multiples of 8, and the
     * int8 dequantisation's row index must hold for any column count). */
    int shapes[][3] = {{1, 128, 64}, {37, 344, 200}, {130, 1024, 384}, {8, 4096, 72}, {5, 333, 101}};
    FOR_GPUS(g, name, dt) {
        for (int s = 0; s < 5; s++) {
            int T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
            float *x = randn((size_t)T * K, 1.0f), *w = randn((size_t)N * K, 1.0f / sqrtf((float)K));
            float *exact = xmalloc((size_t)N * K * 4), *got = xmalloc((size_t)T * N * 4);
            bweight_t gw, cw;
            weight_put(g, &gw, &cw, exact, w, N, K);
            void *gx = gpu_put(g, x, (size_t)T * K, ACT_WORK), *go = g->ops->act_alloc(g, (size_t)T * N, ACT_WORK);
            float *cx = cpu_put(x, (size_t)T * K), *co = g_cpu->ops->act_alloc(g_cpu, (size_t)T * N, ACT_WORK);
            g->ops->matmul(g, go, gx, &gw, T);
            g_cpu->ops->matmul(g_cpu, co, cx, &cw, T);
            gpu_get(g, got, go, (size_t)T * N, ACT_WORK);
            char what[128];
            snprintf(what, sizeof what, "matmul %s T=%d in=%d out=%d%s", name, T, K, N,
                     gw.dtype == DT_I8 ? " (int8)" : "");
            compare(what, got, co, (size_t)T * N, tol_for(dt, 1));
            /* matmul_f32: the same product kept in fp32 (o_proj, down_proj) */
            float *gf = g->ops->act_alloc(g, (size_t)T * N, ACT_RESIDUAL);
            g->ops->matmul_f32(g, gf, gx, &gw, T);
            gpu_get(g, got, gf, (size_t)T * N, ACT_RESIDUAL);
            snprintf(what, sizeof what, "matmul_f32 %s T=%d in=%d out=%d%s", name, T, K, N,
                     gw.dtype == DT_I8 ? " (int8)" : "");
            compare(what, got, co, (size_t)T * N, tol_for(DT_F32, 1));
            g->ops->mem_free(g, gf);
            g->ops->weight_free(g, &gw);
            g->ops->mem_free(g, gx), g->ops->mem_free(g, go);
            g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, co);
            free(x), free(w), free(exact), free(got);
        }
    }
}

/* inv_freq[i] = theta^(-2i/hd), the default rope (llama3 scaling only changes these values). */
static float *rope_freqs(int hd, double theta) {
    float *f = xmalloc((size_t)hd / 2 * sizeof(float));
    for (int i = 0; i < hd / 2; i++) f[i] = (float)(1.0 / pow(theta, 2.0 * i / hd));
    return f;
}

/* qkv_rope: the fused q|k|v rows split into q, k (rotated) and v. head_dim 36 (half 18, not a
 * multiple of 8) and the shifted (not 16-byte aligned) input take the scalar path; the others the
 * 16-byte vector path. */
TEST(test_qkv_rope) {
    int lens[] = {1, 17, 130, 300}, hds[] = {32, 36, 48, 64, 128, 256, 64}, nh = 4, nkv = 2;
    host_batch_t h = batch_make(lens, 4, 10);
    bbatch_t cbt = {0};
    ASSERT(g_cpu->ops->batch_upload(g_cpu, &cbt, &h.bt) == 0);
    FOR_GPUS(g, name, dt) {
        bbatch_t gbt = {0};
        ASSERT(g->ops->batch_upload(g, &gbt, &h.bt) == 0);
        for (int c = 0; c < 7; c++) {
            int hd = hds[c], T = h.bt.T, shift = c == 6; // the last case: qkv one element off alignment
            double theta = c % 2 ? 500000.0 : 10000.0;
            size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd, nqkv = nq + 2 * nk;
            float *qkv = randn(nqkv + shift, 1.0f), *f = rope_freqs(hd, theta);
            float *got = xmalloc(nq * 4);
            void *gqkv = gpu_put(g, qkv, nqkv + shift, ACT_WORK);
            void *gq = g->ops->act_alloc(g, nq, ACT_WORK), *gk = g->ops->act_alloc(g, nk, ACT_WORK);
            void *gv = g->ops->act_alloc(g, nk, ACT_WORK);
            float *gf = g->ops->vec_upload(g, f, (size_t)hd / 2);
            float *cqkv = cpu_put(qkv, nqkv + shift), *cf = cpu_put(f, (size_t)hd / 2);
            float *cq = g_cpu->ops->act_alloc(g_cpu, nq, ACT_WORK), *ck = g_cpu->ops->act_alloc(g_cpu, nk, ACT_WORK);
            float *cv = g_cpu->ops->act_alloc(g_cpu, nk, ACT_WORK);
            g->ops->qkv_rope(g, gq, gk, gv, (char *)gqkv + shift * (dt == DT_F32 ? 4 : 2), &gbt, nh, nkv, hd, gf);
            g_cpu->ops->qkv_rope(g_cpu, cq, ck, cv, cqkv + shift, &cbt, nh, nkv, hd, cf);
            const void *outs[3] = {gq, gk, gv};
            const float *refs[3] = {cq, ck, cv};
            for (int o = 0; o < 3; o++) {
                size_t n = o ? nk : nq;
                gpu_get(g, got, outs[o], n, ACT_WORK);
                char what[128];
                snprintf(what, sizeof what, "qkv_rope %s hd=%d theta=%.0f%s %c", name, hd, theta,
                         shift ? " unaligned" : "", "qkv"[o]);
                compare(what, got, refs[o], n, tol_for(dt, 0));
            }
            g->ops->mem_free(g, gqkv), g->ops->mem_free(g, gq), g->ops->mem_free(g, gk), g->ops->mem_free(g, gv);
            g->ops->mem_free(g, gf);
            g_cpu->ops->mem_free(g_cpu, cqkv), g_cpu->ops->mem_free(g_cpu, cf), g_cpu->ops->mem_free(g_cpu, cq);
            g_cpu->ops->mem_free(g_cpu, ck), g_cpu->ops->mem_free(g_cpu, cv);
            free(qkv), free(f), free(got);
        }
        batch_free_dev(g, &gbt);
    }
    batch_free_dev(g_cpu, &cbt);
    free(h.mem);
}

/* Varlen batches: the golden lengths, one long sequence, tile-aligned lengths, ragged ones. */
static const int attn_lens[4][9] = {{1, 2, 5, 16, 17, 33, 64, 100, 130}, {200}, {64, 64}, {3, 129, 65}};
static const int attn_nb[4] = {9, 1, 2, 3};

/* One attention run on gp over the sequences lens[0..nb) against the CPU reference; `label`
 * names the batch in the report. */
static void attention_run(gpu_t *gp, int hd, int nh, int nkv, float softcap, int window, const int *lens, int nb,
                          const char *label) {
    backend_t *g = gp->b;
    host_batch_t h = batch_make(lens, nb, 10);
    int T = h.bt.T;
    size_t nq = (size_t)T * nh * hd, nk = (size_t)T * nkv * hd;
    /* With a softcap, larger logits (std ~8) so that tanh is far from linear. */
    float *q = randn(nq, softcap > 0 ? 8.0f : 1.0f), *k = randn(nk, 1.0f), *v = randn(nk, 1.0f);
    float *got = xmalloc(nq * 4);
    bbatch_t gbt = {0}, cbt = {0};
    ASSERT(g->ops->batch_upload(g, &gbt, &h.bt) == 0);
    ASSERT(g_cpu->ops->batch_upload(g_cpu, &cbt, &h.bt) == 0);
    void *gq = gpu_put(g, q, nq, ACT_WORK), *gk = gpu_put(g, k, nk, ACT_WORK), *gv = gpu_put(g, v, nk, ACT_WORK);
    void *go = g->ops->act_alloc(g, nq, ACT_WORK);
    float *cq = cpu_put(q, nq), *ck = cpu_put(k, nk), *cv = cpu_put(v, nk);
    float *co = g_cpu->ops->act_alloc(g_cpu, nq, ACT_WORK);
    attn_params_t p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                       .softcap = softcap, .window = window};
    g->ops->attention(g, go, gq, gk, gv, &gbt, &p);
    g_cpu->ops->attention(g_cpu, co, cq, ck, cv, &cbt, &p);
    gpu_get(g, got, go, nq, ACT_WORK);
    char what[160];
    snprintf(what, sizeof what, "attention %s%s hd=%d h=%d/%d cap=%g win=%d %s", gp->name,
             attention_uses_mma(hd, (kdtype_t)g->compute, gp->attn_only) ? " mma" : " gen", hd, nh, nkv,
             (double)softcap, window, label);
    compare(what, got, co, nq, tol_for(g->compute, 1));
    g->ops->mem_free(g, gq), g->ops->mem_free(g, gk), g->ops->mem_free(g, gv), g->ops->mem_free(g, go);
    g_cpu->ops->mem_free(g_cpu, cq), g_cpu->ops->mem_free(g_cpu, ck), g_cpu->ops->mem_free(g_cpu, cv);
    g_cpu->ops->mem_free(g_cpu, co);
    batch_free_dev(g, &gbt);
    batch_free_dev(g_cpu, &cbt);
    free(h.mem), free(q), free(k), free(v), free(got);
}

static void attention_case(gpu_t *gp, int hd, int nh, int nkv, float softcap, int window, int bi) {
    char label[32];
    snprintf(label, sizeof label, "batch=%d", bi);
    attention_run(gp, hd, nh, nkv, softcap, window, attn_lens[bi], attn_nb[bi], label);
}

TEST(test_attention) {
    int hds[] = {64, 128, 256, 32, 48}, heads[][2] = {{4, 4}, {8, 2}, {4, 1}}, windows[] = {0, 24, 80};
    float caps[] = {0.0f, 50.0f};
    int n = 0;
    for (int gi = 0; gi < N_GPUS; gi++) {
        if (!g_gpus[gi].b || strstr(g_gpus[gi].name, "int8")) continue; // int8 only changes weights
        for (int a = 0; a < 5; a++)
            for (int hh = 0; hh < 3; hh++)
                for (int c = 0; c < 2; c++)
                    for (int w = 0; w < 3; w++)
                        attention_case(&g_gpus[gi], hds[a], heads[hh][0], heads[hh][1], caps[c], windows[w], n++ % 4);
    }
}

/* The tensor-core kernel's tile edges: lengths around its 16-row m-tiles, 32-row warps (two
 * m-tiles), 64/128-row blocks and 16/32/64-key tiles, so that each warp, m-tile and key tile
 * meets a sequence end mid-way; windows whose edge falls mid-tile (17, 40) and one of a single
 * key; and many short sequences in one pack. Run on the kernel every head dim uses, on every
 * emulated card (sm_75: head_dim 256 with 16-key tiles, head_dim 64 with 32-key tiles). */
TEST(test_attention_tile_edges) {
    static const int edges[] = {15, 16, 17, 31, 32, 33, 48, 63, 95, 127, 128, 129, 161};
    int many[40];
    for (int i = 0; i < 40; i++) many[i] = (i * 7) % 23 + 1;
    const int hds[] = {64, 128, 256}, windows[] = {0, 17, 40, 1};
    int n = 0;
    for (int gi = 0; gi < N_GPUS; gi++) {
        gpu_t *gp = &g_gpus[gi];
        if (!gp->b || gp->attn_only || strstr(gp->name, "int8") || gp->b->compute == DT_F32) continue;
        for (int a = 0; a < 3; a++) {
            if (!attention_uses_mma(hds[a], (kdtype_t)gp->b->compute, 0)) continue;
            for (int w = 0; w < 4; w++, n++)
                attention_run(gp, hds[a], 4, 2, n % 2 ? 50.0f : 0.0f, windows[w], edges, 13, "edges");
            attention_run(gp, hds[a], 4, 1, 0.0f, 0, many, 40, "many=40");
            attention_run(gp, hds[a], 4, 1, 50.0f, 5, many, 40, "many=40");
        }
    }
}

/* The tensor-core kernel serves every head dim it is built for on every card that has tensor
 * cores for the dtype: head_dim 256 (Gemma-2) included on a T4, whose 64 KiB of shared memory
 * needs the smaller key tile. Without this the T4 silently ran Gemma-2 on the generic kernel. */
TEST(test_attention_uses_tensor_cores) {
    struct cudaDeviceProp prop;
    TCK(cudaGetDeviceProperties(&prop, 0));
    int sm = prop.major * 10 + prop.minor;
    for (int hd = 64; hd <= 256; hd *= 2) {
        EXPECT_MSG(attention_uses_mma(hd, KDT_F16, 0) == (sm >= 75), "fp16 head_dim %d on sm_%d", hd, sm);
        EXPECT_MSG(attention_uses_mma(hd, KDT_BF16, 0) == (sm >= 80), "bf16 head_dim %d on sm_%d", hd, sm);
        EXPECT(!attention_uses_mma(hd, KDT_F16, 1) && !attention_uses_mma(hd, KDT_F32, 0));
    }
    EXPECT(!attention_uses_mma(48, KDT_F16, 0) && !attention_uses_mma(32, KDT_BF16, 0));
}

/* gated_act over the fused gate|up rows: hidden 344 on the vector path, 343 on the scalar one. */
TEST(test_gated_act) {
    int T = 19, hiddens[2] = {344, 343};
    FOR_GPUS(g, name, dt) {
        for (int c = 0; c < 2; c++) {
            int hidden = hiddens[c];
            size_t n = (size_t)T * hidden;
            float *gu = randn(2 * n, 3.0f), *got = xmalloc(n * 4);
            void *ggu = gpu_put(g, gu, 2 * n, ACT_WORK);
            float *cgu = cpu_put(gu, 2 * n);
            for (int a = 0; a < 2; a++) {
                act_t act = a ? ACT_GELU_TANH : ACT_SILU;
                void *go = g->ops->act_alloc(g, n, ACT_WORK);
                float *co = g_cpu->ops->act_alloc(g_cpu, n, ACT_WORK);
                g->ops->gated_act(g, go, ggu, T, hidden, act);
                g_cpu->ops->gated_act(g_cpu, co, cgu, T, hidden, act);
                gpu_get(g, got, go, n, ACT_WORK);
                char what[128];
                snprintf(what, sizeof what, "gated_act %s %s hidden=%d", name, a ? "gelu_tanh" : "silu", hidden);
                compare(what, got, co, n, tol_for(dt, 0));
                g->ops->mem_free(g, go);
                g_cpu->ops->mem_free(g_cpu, co);
            }
            g->ops->mem_free(g, ggu);
            g_cpu->ops->mem_free(g_cpu, cgu);
            free(gu), free(got);
        }
    }
}

/* residual_norm: plain add / post-norm offset 0 / offset 1, each with and without the fused next
 * norm (without: xn must stay untouched); dim 200 on the vector path, 203 on the scalar one. */
TEST(test_residual_norm) {
    int T = 21, dims[2] = {200, 203};
    FOR_GPUS(g, name, dt) {
        for (int c = 0; c < 4; c++)
            for (int mode = 0; mode < 3; mode++) {
                int dim = dims[c & 1], next = c >> 1;
                size_t n = (size_t)T * dim;
                float off = mode == 2 ? 1.0f : 0.0f;
                float *x = randn(n, 1.0f), *y = randn(n, 4.0f), *w = randn(dim, 0.1f), *nw = randn(dim, 0.5f);
                float *xn0 = randn(n, 1.0f), *got = xmalloc(n * 4);
                float *gx = gpu_put(g, x, n, ACT_RESIDUAL), *gy = gpu_put(g, y, n, ACT_RESIDUAL); // y: matmul_f32's
                void *gxn = gpu_put(g, xn0, n, ACT_WORK);
                float *gw = g->ops->vec_upload(g, w, dim), *gnw = g->ops->vec_upload(g, nw, dim);
                float *cx = cpu_put(x, n), *cy = cpu_put(y, n), *cw = cpu_put(w, dim), *cnw = cpu_put(nw, dim);
                float *cxn = cpu_put(xn0, n);
                g->ops->residual_norm(g, gx, gxn, gy, mode ? gw : NULL, next ? gnw : NULL, T, dim, 1e-6f, off);
                g_cpu->ops->residual_norm(g_cpu, cx, cxn, cy, mode ? cw : NULL, next ? cnw : NULL, T, dim, 1e-6f, off);
                char what[128], base[100];
                snprintf(base, sizeof base, "residual_norm %s dim=%d %s%s", name, dim,
                         mode == 0 ? "plain" : mode == 1 ? "post-norm offset 0" : "post-norm offset 1",
                         next ? " + next norm" : "");
                snprintf(what, sizeof what, "%s x", base);
                gpu_get(g, got, gx, n, ACT_RESIDUAL);
                compare(what, got, cx, n, tol_for(dt, 1));
                snprintf(what, sizeof what, "%s xn%s", base, next ? "" : " (untouched)");
                gpu_get(g, got, gxn, n, ACT_WORK);
                compare(what, got, next ? cxn : xn0, n, next ? tol_for(dt, 1) : (tol_t){0, 0});
                g->ops->mem_free(g, gx), g->ops->mem_free(g, gy), g->ops->mem_free(g, gxn);
                g->ops->mem_free(g, gw), g->ops->mem_free(g, gnw);
                g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, cy), g_cpu->ops->mem_free(g_cpu, cw);
                g_cpu->ops->mem_free(g_cpu, cnw), g_cpu->ops->mem_free(g_cpu, cxn);
                free(x), free(y), free(w), free(nw), free(xn0), free(got);
            }
    }
}

/* matmul_residual + residual_norm, forward.c's pair: the GPU adds straight into x (returns NULL)
 * exactly when there is no post-norm and the dtype adds y unrounded (fp32, fp16), else returns y;
 * either way x and xn match the CPU, which always goes through y. */
TEST(test_matmul_residual) {
    int T = 9, K = 64, dim = 200;
    size_t n = (size_t)T * dim;
    FOR_GPUS(g, name, dt) {
        for (int c = 0; c < 4; c++) {
            int post = c & 1, next = c >> 1;
            float *x = randn(n, 1.0f), *in = randn((size_t)T * K, 1.0f), *w = randn((size_t)dim * K, 0.5f);
            float *nw = randn(dim, 0.2f), *exact = xmalloc((size_t)dim * K * 4), *got = xmalloc(n * 4);
            bweight_t gw, cw;
            weight_put(g, &gw, &cw, exact, w, dim, K);
            float *gx = gpu_put(g, x, n, ACT_RESIDUAL), *gy = g->ops->act_alloc(g, n, ACT_RESIDUAL);
            void *gin = gpu_put(g, in, (size_t)T * K, ACT_WORK), *gxn = g->ops->act_alloc(g, n, ACT_WORK);
            float *gnw = g->ops->vec_upload(g, nw, dim);
            float *cx = cpu_put(x, n), *cy = g_cpu->ops->act_alloc(g_cpu, n, ACT_RESIDUAL);
            float *cin = cpu_put(in, (size_t)T * K), *cxn = g_cpu->ops->act_alloc(g_cpu, n, ACT_WORK);
            float *cnw = cpu_put(nw, dim);
            float *gyr = g->ops->matmul_residual(g, gx, gy, gin, &gw, post ? gnw : NULL, T);
            float *cyr = g_cpu->ops->matmul_residual(g_cpu, cx, cy, cin, &cw, post ? cnw : NULL, T);
            EXPECT(cyr == cy);
            EXPECT_MSG(gyr == (!post && dt != DT_BF16 ? NULL : gy), "%s post %d: matmul_residual returned %p", name,
                       post, (void *)gyr);
            g->ops->residual_norm(g, gx, gxn, gyr, post ? gnw : NULL, next ? gnw : NULL, T, dim, 1e-6f, 1.0f);
            g_cpu->ops->residual_norm(g_cpu, cx, cxn, cyr, post ? cnw : NULL, next ? cnw : NULL, T, dim, 1e-6f, 1.0f);
            char what[128];
            snprintf(what, sizeof what, "matmul_residual %s%s%s x", name, post ? " post-norm" : "",
                     gyr ? "" : " (added by the GEMM)");
            gpu_get(g, got, gx, n, ACT_RESIDUAL);
            compare(what, got, cx, n, tol_for(dt, 1));
            if (next) {
                snprintf(what, sizeof what, "matmul_residual %s%s + next norm xn", name, post ? " post-norm" : "");
                gpu_get(g, got, gxn, n, ACT_WORK);
                compare(what, got, cxn, n, tol_for(dt, 1));
            }
            g->ops->weight_free(g, &gw);
            g->ops->mem_free(g, gx), g->ops->mem_free(g, gy), g->ops->mem_free(g, gin), g->ops->mem_free(g, gxn);
            g->ops->mem_free(g, gnw);
            g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, cy), g_cpu->ops->mem_free(g_cpu, cin);
            g_cpu->ops->mem_free(g_cpu, cxn), g_cpu->ops->mem_free(g_cpu, cnw);
            free(x), free(in), free(w), free(nw), free(exact), free(got);
        }
    }
}

/* weight_concat: parts uploaded one by one, stacked, then one GEMM against the CPU's GEMM over
 * the stacked exact values. On the int8 backend the second set mixes an int8 part (80 rows) with
 * one too small to quantise (16 rows): dequantised into the compute dtype. */
TEST(test_weight_concat) {
    int cols = 72, T = 13, sets[2][3] = {{80, 64, 64}, {80, 16, 0}};
    FOR_GPUS(g, name, dt) {
        for (int si = 0; si < 2; si++) {
            int n = sets[si][2] ? 3 : 2, rows = 0;
            bweight_t gw[3], cw[3], gcat;
            for (int i = 0; i < n; i++) rows += sets[si][i];
            float *exact = xmalloc((size_t)rows * cols * sizeof(float));
            for (int i = 0, at = 0; i < n; at += sets[si][i], i++) {
                float *w = randn((size_t)sets[si][i] * cols, 0.5f);
                weight_put(g, &gw[i], &cw[i], exact + (size_t)at * cols, w, sets[si][i], cols);
                free(w);
            }
            dtype_t part0 = gw[0].dtype;
            ASSERT(g->ops->weight_concat(g, &gcat, gw, n) == 0);
            for (int i = 0; i < n; i++) EXPECT(gw[i].data == NULL && gw[i].scales == NULL);
            EXPECT(gcat.rows == rows && gcat.cols == cols);
            EXPECT(gcat.dtype == (si == 1 ? dt : part0));
            bweight_t ccat = cpu_weight_wrap(exact, rows, cols);
            float *x = randn((size_t)T * cols, 1.0f), *got = xmalloc((size_t)T * rows * 4);
            void *gx = gpu_put(g, x, (size_t)T * cols, ACT_WORK), *go = g->ops->act_alloc(g, (size_t)T * rows, ACT_WORK);
            float *cx = cpu_put(x, (size_t)T * cols), *co = g_cpu->ops->act_alloc(g_cpu, (size_t)T * rows, ACT_WORK);
            g->ops->matmul(g, go, gx, &gcat, T);
            g_cpu->ops->matmul(g_cpu, co, cx, &ccat, T);
            gpu_get(g, got, go, (size_t)T * rows, ACT_WORK);
            char what[128];
            snprintf(what, sizeof what, "weight_concat %s %d parts%s, matmul", name, n, si ? " (mixed)" : "");
            compare(what, got, co, (size_t)T * rows, tol_for(dt, 1));
            g->ops->weight_free(g, &gcat);
            g->ops->mem_free(g, gx), g->ops->mem_free(g, go);
            g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, co);
            free(exact), free(x), free(got);
        }
    }
}

TEST(test_pool_score) {
    int lens[] = {3, 1, 50, 17, 8}, dim = 200, labels[] = {3, 70};
    host_batch_t h = batch_make(lens, 5, 10);
    /* Pooled rows that are not the sequences' last rows (right padding), so that a kernel which
     * ignored `last` and pooled cu_seqlens[b+1]-1 would fail. */
    h.bt.last[0] = h.bt.cu_seqlens[0] + 1;
    h.bt.last[2] = h.bt.cu_seqlens[2] + 20;
    size_t n = (size_t)h.bt.T * dim;
    bbatch_t cbt = {0};
    ASSERT(g_cpu->ops->batch_upload(g_cpu, &cbt, &h.bt) == 0);
    FOR_GPUS(g, name, dt) {
        bbatch_t gbt = {0};
        ASSERT(g->ops->batch_upload(g, &gbt, &h.bt) == 0);
        for (int c = 0; c < 4; c++) {
            int nl = labels[c / 2];
            float off = (float)(c % 2);
            float *x = randn(n, 2.0f), *nw = randn(dim, 0.1f), *sw = randn((size_t)nl * dim, 1.0f / sqrtf((float)dim));
            float *exact = xmalloc((size_t)nl * dim * 4), got[5 * 70], ref[5 * 70];
            bweight_t gs, cs;
            weight_put(g, &gs, &cs, exact, sw, nl, dim);
            float *gx = gpu_put(g, x, n, ACT_RESIDUAL), *gn = g->ops->vec_upload(g, nw, dim);
            float *cx = cpu_put(x, n), *cn = cpu_put(nw, dim);
            g->ops->pool_score(g, got, gx, gn, 1e-6f, off, &gs, &gbt, dim);
            g_cpu->ops->pool_score(g_cpu, ref, cx, cn, 1e-6f, off, &cs, &cbt, dim);
            gpu_sync(g);
            char what[128];
            snprintf(what, sizeof what, "pool_score %s labels=%d offset=%g%s", name, nl, (double)off,
                     gs.dtype == DT_I8 ? " (int8)" : "");
            compare(what, got, ref, (size_t)5 * nl, tol_for(dt, 1));
            g->ops->weight_free(g, &gs);
            g->ops->mem_free(g, gx), g->ops->mem_free(g, gn);
            g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, cn);
            free(x), free(nw), free(sw), free(exact);
        }
        batch_free_dev(g, &gbt);
    }
    batch_free_dev(g_cpu, &cbt);
    free(h.mem);
}

/* batch_upload copies all four arrays, keeps a host cu_seqlens, and regrows its buffers. */
TEST(test_batch_upload) {
    backend_t *g = g_gpus[0].b;
    int small[] = {3, 4}, big[] = {100, 1, 250, 7};
    host_batch_t hs = batch_make(small, 2, 1000), hb = batch_make(big, 4, 1000);
    bbatch_t gbt = {0};
    for (int r = 0; r < 2; r++) {
        host_batch_t *h = r ? &hb : &hs;
        ASSERT(g->ops->batch_upload(g, &gbt, &h->bt) == 0);
        gpu_sync(g);
        int T = h->bt.T, B = h->bt.B;
        int32_t *back = xmalloc((size_t)T * 4);
        TCK(cudaMemcpy(back, gbt.tokens, (size_t)T * 4, cudaMemcpyDeviceToHost));
        EXPECT(memcmp(back, h->bt.tokens, (size_t)T * 4) == 0);
        TCK(cudaMemcpy(back, gbt.pos, (size_t)T * 4, cudaMemcpyDeviceToHost));
        EXPECT(memcmp(back, h->bt.pos, (size_t)T * 4) == 0);
        TCK(cudaMemcpy(back, gbt.cu_seqlens, (size_t)(B + 1) * 4, cudaMemcpyDeviceToHost));
        EXPECT(memcmp(back, h->bt.cu_seqlens, (size_t)(B + 1) * 4) == 0);
        TCK(cudaMemcpy(back, gbt.last, (size_t)B * 4, cudaMemcpyDeviceToHost));
        EXPECT(memcmp(back, h->bt.last, (size_t)B * 4) == 0);
        EXPECT(gbt.B == B && gbt.T == T && gbt.max_len == h->bt.max_len);
        EXPECT(gbt.h_cu_seqlens && memcmp(gbt.h_cu_seqlens, h->bt.cu_seqlens, (size_t)(B + 1) * 4) == 0);
        free(back);
    }
    batch_free_dev(g, &gbt);
    free(hs.mem), free(hb.mem);
}

/* The int8 upload stores exactly what quant.c computes. */
TEST(test_int8_upload_matches_quant) {
    backend_t *g = g_gpus[3].b;
    if (!g) return;
    int rows = 96, cols = 333;
    size_t n = (size_t)rows * cols;
    float *w = randn(n, 0.05f), *s_ref = xmalloc(rows * 4), *s_got = xmalloc(rows * 4);
    int8_t *q_ref = xmalloc(n), *q_got = xmalloc(n);
    w[5] = 0.0f;
    for (int c = 0; c < cols; c++) w[(size_t)7 * cols + c] = 0.0f; // an all-zero row
    bweight_t gw;
    ASSERT(quant_int8_rows(q_ref, s_ref, w, rows, cols, NULL) == 0);
    ASSERT(g->ops->weight_upload(g, &gw, w, DT_F32, rows, cols, "w") == 0);
    gpu_sync(g);
    EXPECT(gw.dtype == DT_I8 && gw.scales != NULL && gw.rows == rows && gw.cols == cols);
    TCK(cudaMemcpy(q_got, gw.data, n, cudaMemcpyDeviceToHost));
    TCK(cudaMemcpy(s_got, gw.scales, rows * 4, cudaMemcpyDeviceToHost));
    EXPECT(memcmp(q_got, q_ref, n) == 0);
    EXPECT(memcmp(s_got, s_ref, rows * 4) == 0);
    g->ops->weight_free(g, &gw);
    /* A small matrix (the score head) is not quantised. */
    ASSERT(g->ops->weight_upload(g, &gw, w, DT_F32, 3, cols, "w") == 0);
    EXPECT(gw.dtype == g->compute && gw.scales == NULL);
    g->ops->weight_free(g, &gw);
    EXPECT(g->upload_bytes > 0 && g->upload_seconds > 0);
    free(w), free(s_ref), free(s_got), free(q_ref), free(q_got);
}

/* An impossible allocation is recorded, reported once by sync() as EXIT_OOM, and the backend
 * works again afterwards. */
TEST(test_oom_reported) {
    backend_t *g = g_gpus[0].b;
    err_t err = {0};
    EXPECT(g->ops->act_alloc(g, (size_t)1 << 50, ACT_RESIDUAL) == NULL);
    EXPECT(g->ops->sync(g, &err) == -1);
    EXPECT(err.code == EXIT_OOM);
    EXPECT_STR_CONTAINS(err.msg, "out of device memory");
    memset(&err, 0, sizeof err);
    EXPECT(g->ops->sync(g, &err) == 0);
    float x[64], back[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i - 7.5f;
    float *gx = gpu_put(g, x, 64, ACT_RESIDUAL);
    g->ops->to_host(g, back, gx, 64);
    EXPECT(g->ops->sync(g, &err) == 0);
    EXPECT(memcmp(back, x, sizeof x) == 0);
    g->ops->mem_free(g, gx);
    EXPECT(g->peak_bytes > 0);
}

/* A non-finite weight cannot be quantised: the int8 upload fails with a data error naming the
 * row, and the backend stays usable. The matrix spans several staging chunks (128 MiB of fp32
 * at 4096 columns: 32 MiB of int8 per chunk, so the NaN in row 9000 is in the second one). */
TEST(test_int8_nonfinite_rejected) {
    backend_t *g = g_gpus[3].b; // the int8 backend
    int rows = 9500, cols = 4096;
    float *w = xcalloc((size_t)rows * cols, sizeof *w);
    for (size_t i = 0; i < (size_t)rows * cols; i += 97) w[i] = (float)(i % 13) - 6.0f;
    w[(size_t)9000 * cols + 5] = NAN;
    bweight_t bw;
    err_t err = {0};
    EXPECT(g->ops->weight_upload(g, &bw, w, DT_F32, rows, cols, "w") == -1);
    EXPECT(g->ops->sync(g, &err) == -1);
    EXPECT(err.code == EXIT_DATAERR);
    EXPECT_STR_CONTAINS(err.msg, "not finite");
    EXPECT_STR_CONTAINS(err.msg, "row 9000, column 5"); // in the second chunk, named within the matrix
    g->ops->weight_free(g, &bw);
    w[(size_t)9000 * cols + 5] = 1.0f; // and a finite matrix of the same shape then uploads
    memset(&err, 0, sizeof err);
    EXPECT(g->ops->weight_upload(g, &bw, w, DT_F32, rows, cols, "w") == 0);
    EXPECT(g->ops->sync(g, &err) == 0);
    EXPECT(bw.dtype == DT_I8);
    g->ops->weight_free(g, &bw);
    free(w);
}

/* Clamp v[0..n) to fp16's finite range, as a saturating fp16 store does; returns how many were
 * outside it. */
static size_t clamp_f16_range(float *v, size_t n) {
    size_t over = 0;
    for (size_t i = 0; i < n; i++) {
        over += fabsf(v[i]) > 65504.0f;
        v[i] = fmaxf(-65504.0f, fminf(65504.0f, v[i]));
    }
    return over;
}

/* fp16 stores saturate: a normed row or a gated activation beyond 65504 is held as +-65504, not
 * infinity (the next GEMM would turn inf into NaN). Oracle: the fp32 CPU op, clamped. */
TEST(test_fp16_saturates) {
    backend_t *g = g_gpus[2].b; // fp16
    int T = 4, dim = 256;
    size_t n = (size_t)T * dim;
    float *x = randn(n, 1.0f), *w = randn(dim, 1.0f), *got = xmalloc(n * 4), *ref = xmalloc(n * 4);
    for (int i = 0; i < dim; i++) w[i] *= 4e4f; // |x/rms * w| reaches ~1e5
    float *gx = gpu_put(g, x, n, ACT_RESIDUAL), *gw = g->ops->vec_upload(g, w, dim);
    float *cx = cpu_put(x, n), *cw = cpu_put(w, dim);
    void *go = g->ops->act_alloc(g, n, ACT_WORK);
    g->ops->rmsnorm(g, go, gx, gw, T, dim, 1e-6f, 0.0f);
    g_cpu->ops->rmsnorm(g_cpu, ref, cx, cw, T, dim, 1e-6f, 0.0f);
    gpu_get(g, got, go, n, ACT_WORK);
    EXPECT_MSG(clamp_f16_range(ref, n) > 0, "no normed value beyond 65504: the test is void");
    compare("rmsnorm fp16 saturating", got, ref, n, tol_for(DT_F16, 0));
    /* gated_act: gate and up of a few hundred give products far beyond 65504 */
    float *gu_h = randn(2 * n, 300.0f);
    void *gu = gpu_put(g, gu_h, 2 * n, ACT_WORK);
    float *cu = cpu_put(gu_h, 2 * n);
    for (int a = 0; a < 2; a++) {
        act_t act = a ? ACT_GELU_TANH : ACT_SILU;
        g->ops->gated_act(g, go, gu, T, dim, act);
        g_cpu->ops->gated_act(g_cpu, ref, cu, T, dim, act);
        gpu_get(g, got, go, n, ACT_WORK);
        EXPECT_MSG(clamp_f16_range(ref, n) > 0, "no activation beyond 65504: the test is void");
        compare(a ? "gated_act fp16 saturating gelu_tanh" : "gated_act fp16 saturating silu", got, ref, n,
                tol_for(DT_F16, 0));
    }
    g->ops->mem_free(g, gx), g->ops->mem_free(g, gw), g->ops->mem_free(g, go);
    g->ops->mem_free(g, gu);
    g_cpu->ops->mem_free(g_cpu, cx), g_cpu->ops->mem_free(g_cpu, cw);
    g_cpu->ops->mem_free(g_cpu, cu);
    free(x), free(w), free(got), free(ref), free(gu_h);
}

/* A weight fp16 cannot hold (it would round to infinity) fails the fp16 upload, plain and int8
 * (dequantised into fp16), with a data error naming row and column; 65504 and values that round
 * down to it upload. */
TEST(test_fp16_weight_beyond_range_rejected) {
    err_t err = {0};
    backend_t *q = backend_cuda_create(DT_F16, 1, &err); // fp16 + int8 (the T4 setting)
    ASSERT(q != NULL);
    backend_t *gs[2] = {g_gpus[2].b, q};
    int rows = 80, cols = 70; // 80 >= QUANT_MIN_ROWS: quantised on the int8 backend
    float *w = randn((size_t)rows * cols, 1.0f);
    for (int k = 0; k < 2; k++) {
        backend_t *g = gs[k];
        w[0] = 65504.0f, w[1] = -65519.0f; // the largest finite fp16, and a value that rounds to it
        w[(size_t)23 * cols + 9] = 1.0f;
        bweight_t bw;
        EXPECT(g->ops->weight_upload(g, &bw, w, DT_F32, rows, cols, "w") == 0);
        EXPECT(g->ops->sync(g, &err) == 0);
        EXPECT(bw.dtype == (k ? DT_I8 : DT_F16));
        g->ops->weight_free(g, &bw);
        w[(size_t)23 * cols + 9] = -70000.0f;
        (void)g->ops->weight_upload(g, &bw, w, DT_F32, rows, cols, "w"); // found on the device: sync reports it
        EXPECT(g->ops->sync(g, &err) == -1);
        EXPECT(err.code == EXIT_DATAERR);
        EXPECT_STR_CONTAINS(err.msg, "row 23, column 9");
        EXPECT_STR_CONTAINS(err.msg, "65504");
        g->ops->weight_free(g, &bw);
        memset(&err, 0, sizeof err);
        EXPECT(g->ops->sync(g, &err) == 0); // reported once; the backend works on
    }
    q->ops->destroy(q);
    free(w);
}

/* The ops of one decoder layer without attention, in forward.c's order and buffer kinds, then
 * pool_score: rmsnorm, o_proj, residual add (through a post-norm when `post`, Gemma-2's layout;
 * plain, Llama's, otherwise: in fp16 the GEMM adds into x itself) fused with the pre-MLP rmsnorm, gate|up (one stacked weight), gelu,
 * down_proj, residual add. x (T, dim) is updated in place; logits (B, n_labels) land on the host.
 * W[0..3] are o, gate|up, down, score. */
static void layer_chain(backend_t *be, float *logits, float *x, const float *nw, const bweight_t *W,
                        const bbatch_t *bt, int dim, int hidden, int post) {
    const backend_ops_t *op = be->ops;
    int T = bt->T;
    void *xn = op->act_alloc(be, (size_t)T * dim, ACT_WORK);
    float *y = op->act_alloc(be, (size_t)T * dim, ACT_RESIDUAL);
    void *gu = op->act_alloc(be, (size_t)T * 2 * hidden, ACT_WORK), *hb = op->act_alloc(be, (size_t)T * hidden, ACT_WORK);
    ASSERT(xn && y && gu && hb);
    op->rmsnorm(be, xn, x, nw, T, dim, 1e-6f, 1.0f);
    float *yr = op->matmul_residual(be, x, y, xn, &W[0], post ? nw : NULL, T);
    op->residual_norm(be, x, xn, yr, post ? nw : NULL, nw, T, dim, 1e-6f, 1.0f);
    op->matmul(be, gu, xn, &W[1], T);
    op->gated_act(be, hb, gu, T, hidden, ACT_GELU_TANH);
    yr = op->matmul_residual(be, x, y, hb, &W[2], post ? nw : NULL, T);
    op->residual_norm(be, x, NULL, yr, post ? nw : NULL, NULL, T, dim, 1e-6f, 1.0f);
    op->pool_score(be, logits, x, nw, 1e-6f, 1.0f, &W[3], bt, dim);
    op->mem_free(be, xn), op->mem_free(be, y), op->mem_free(be, gu), op->mem_free(be, hb);
}

/* Issue 9: o_proj and down_proj outputs far beyond fp16's 65504 (weights of std 6000, all within
 * fp16's range). In fp16 the layer must still give finite logits close to the fp32 CPU run, both
 * with Gemma-2's post-norms and with Llama's plain residual add. */
TEST(test_fp16_projections_beyond_range) {
    backend_t *g = g_gpus[2].b; // fp16
    int lens[] = {5, 12}, dim = 128, hidden = 256, nl = 3;
    int rows[4] = {dim, 2 * hidden, dim, nl}, cols[4] = {dim, dim, hidden, dim};
    float stds[4] = {6000.0f, 1.0f / sqrtf((float)dim), 6000.0f, 1.0f / sqrtf((float)dim)};
    host_batch_t h = batch_make(lens, 2, 10);
    int T = h.bt.T;
    size_t n = (size_t)T * dim;
    bbatch_t cbt = {0}, gbt = {0};
    ASSERT(g_cpu->ops->batch_upload(g_cpu, &cbt, &h.bt) == 0);
    ASSERT(g->ops->batch_upload(g, &gbt, &h.bt) == 0);
    bweight_t gw[4], cw[4];
    float *exact[4];
    for (int i = 0; i < 4; i++) {
        float *w = randn((size_t)rows[i] * cols[i], stds[i]);
        exact[i] = xmalloc((size_t)rows[i] * cols[i] * sizeof(float));
        weight_put(g, &gw[i], &cw[i], exact[i], w, rows[i], cols[i]);
        free(w);
    }
    float *nw = randn(dim, 0.1f), *gn = g->ops->vec_upload(g, nw, dim), *cn = cpu_put(nw, dim);
    float *y_max = xmalloc(n * 4);
    for (int post = 0; post < 2; post++) {
        float *x = randn(n, 1.0f), got[2 * 3], ref[2 * 3];
        float *gx = gpu_put(g, x, n, ACT_RESIDUAL), *cx = cpu_put(x, n);
        /* The oracle that the case is real: the fp32 o_proj output exceeds fp16's range. */
        float *cxn = g_cpu->ops->act_alloc(g_cpu, n, ACT_WORK);
        g_cpu->ops->rmsnorm(g_cpu, cxn, cx, cn, T, dim, 1e-6f, 1.0f);
        g_cpu->ops->matmul(g_cpu, y_max, cxn, &cw[0], T);
        double big = 0.0;
        for (size_t i = 0; i < n; i++) big = fmax(big, fabs((double)y_max[i]));
        EXPECT_MSG(big > 65504.0, "o_proj output peaks at %g, within fp16's range: the test is void", big);
        g_cpu->ops->mem_free(g_cpu, cxn);
        layer_chain(g, got, gx, gn, gw, &gbt, dim, hidden, post);
        layer_chain(g_cpu, ref, cx, cn, cw, &cbt, dim, hidden, post);
        gpu_sync(g);
        double scale = 0.0;
        for (int i = 0; i < 2 * nl; i++) scale = fmax(scale, fabs((double)ref[i]));
        char what[128];
        snprintf(what, sizeof what, "fp16 layer, projections up to %.3g, %s", big, post ? "post-norms" : "plain add");
        compare(what, got, ref, (size_t)2 * nl, (tol_t){1e-2 * scale, 1e-2});
        g->ops->mem_free(g, gx);
        g_cpu->ops->mem_free(g_cpu, cx);
        free(x);
    }
    for (int i = 0; i < 4; i++) g->ops->weight_free(g, &gw[i]), free(exact[i]);
    g->ops->mem_free(g, gn), g_cpu->ops->mem_free(g_cpu, cn);
    batch_free_dev(g, &gbt), batch_free_dev(g_cpu, &cbt);
    free(nw), free(y_max), free(h.mem);
}

/* Before the first test: the CPU reference and every GPU backend; skip (77) without a device. */
static int setup(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("test_kernels: skipped: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    err_t err = {0};
    g_cpu = backend_cpu_create(0, &err);
    if (!g_cpu) {
        fprintf(stderr, "test_kernels: %s\n", err.msg);
        return 1;
    }
    struct cudaDeviceProp prop;
    TCK(cudaGetDeviceProperties(&prop, 0));
    int bf16 = prop.major >= 8;
    dtype_t half = bf16 ? DT_BF16 : DT_F16;
    printf("test_kernels: device %s (sm_%d%d)%s\n", prop.name, prop.major, prop.minor,
           bf16 ? "" : "; bf16 not supported, skipped");
    g_gpus[0] = (gpu_t){"fp32", backend_cuda_create(DT_F32, 0, &err), 0};
    g_gpus[1] = (gpu_t){"bf16", bf16 ? backend_cuda_create(DT_BF16, 0, &err) : NULL, 0};
    g_gpus[2] = (gpu_t){"fp16", backend_cuda_create(DT_F16, 0, &err), 0};
    g_gpus[3] = (gpu_t){bf16 ? "bf16+int8" : "fp16+int8", backend_cuda_create(half, 1, &err), 0};
    setenv("LM_ATTN_GENERIC", "1", 1);
    g_gpus[4] = (gpu_t){bf16 ? "bf16 forced-generic" : "fp16 forced-generic", backend_cuda_create(half, 0, &err), 1};
    unsetenv("LM_ATTN_GENERIC");
    for (int i = 0; i < N_GPUS; i++)
        if (!g_gpus[i].b && (i != 1 || bf16)) {
            fprintf(stderr, "test_kernels: cannot create the %s backend: %s\n", g_gpus[i].name, err.msg);
            return 1;
        }
    return 0;
}

/* After the last test: report each backend's peak memory and free them. */
static int teardown(void) {
    for (int i = 0; i < N_GPUS; i++)
        if (g_gpus[i].b) {
            printf("test_kernels: %s backend peak %.1f MiB\n", g_gpus[i].name, g_gpus[i].b->peak_bytes / 1048576.0);
            g_gpus[i].b->ops->destroy(g_gpus[i].b);
        }
    g_cpu->ops->destroy(g_cpu);
    return 0;
}

/* tools/gpu-check.sh runs test_attention alone under compute-sanitizer: test_kernels test_attention. */
TEST_MAIN_WITH(setup, teardown,
               test_embed, test_convert, test_rmsnorm, test_matmul, test_qkv_rope, test_attention,
               test_attention_tile_edges, test_attention_uses_tensor_cores, test_gated_act, test_residual_norm,
               test_matmul_residual, test_weight_concat, test_pool_score, test_batch_upload,
               test_int8_upload_matches_quant,
               test_oom_reported, test_int8_nonfinite_rejected, test_fp16_saturates,
               test_fp16_weight_beyond_range_rejected, test_fp16_projections_beyond_range)

#endif
