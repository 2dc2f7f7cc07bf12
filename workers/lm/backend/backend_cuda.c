/* backend_cuda.c: the CUDA backend: device memory, errors, and the ops of backend.h as launches
 * of the kernels in kernels/ and cublasLt GEMMs (backend_cuda_lt.c: the algorithm timed once per
 * shape; cublasGemmEx where cublasLt has none), all queued on one stream. The weight load path
 * (vec_upload, weight_upload) is backend_cuda_upload.c; the shared state, backend_cuda_impl.h.
 *
 * Precision: ACT_WORK buffers and weights hold the compute dtype (bf16, fp16 or fp32); the
 * residual stream is fp32; every GEMM accumulates in fp32 (CUBLAS_COMPUTE_32F, reduced-precision
 * split-K reductions disallowed) and every kernel computes in fp32. With --quant int8, matrices
 * of 64 rows or more are stored as int8 with per-row scales (quant.h's scheme, quantised on the
 * device at upload) and dequantised into a
 * scratch matrix before each GEMM (kernels/quant_int8.cu documents the cost); the tiny score head
 * stays in the compute dtype because its precision is the output's.
 *
 * Memory: a caching arena. Every cudaMalloc'd block is listed with its size; activation blocks
 * (act_alloc, batch buffers, scratch) go back to a cache on mem_free and are reused for a later
 * request of similar size, while weights and vectors are cudaFree'd. peak_bytes is the
 * high-water mark of bytes held from cudaMalloc, the 32 MiB workspace cuBLAS and cublasLt share
 * included. When cudaMalloc fails, the cache is released and the request retried once before
 * out-of-memory is recorded.
 *
 * Errors: each CUDA/cuBLAS call goes through one check macro that prints the statement,
 * file:line, the error string and the device, and records the first failure; after that every op
 * is a no-op (so no kernel ever runs on a NULL buffer) until sync() reports the failure, with
 * err->code = EXIT_OOM for out of memory; sync() also collects the load path's device checks
 * (cuda_upload_collect). It deliberately has no multi-GPU, no graph capture and no overlap of
 * uploads with compute.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda_impl.h"
#include "backend_cuda_lt.h"
#include "backend_cuda_plugin.h"
#include "exit_codes.h"
#include "kernels.h"

_Static_assert((int)KDT_F32 == (int)DT_F32 && (int)KDT_BF16 == (int)DT_BF16 && (int)KDT_F16 == (int)DT_F16,
               "kernels.h dtypes must match backend.h");

#define CUDA_ALIGN 256                  // bytes; every block is rounded up to this
#define BLAS_WORKSPACE ((size_t)32 << 20)

/* ---------------------------------------------------------------------------------------------
 * Error recording
 * ------------------------------------------------------------------------------------------- */

/* Record the first failure (later ones are printed only). Returns -1. */
int cuda_record(backend_t *b, int code, const char *msg) {
    cuda_impl_t *im = impl_of(b);
    fprintf(stderr, "lm-worker: %s\n", msg);
    if (!im->failed) {
        im->failed = 1;
        err_code(&im->err, code, "%s", msg);
    }
    return -1;
}

/* Check a CUDA runtime result: on failure print and record the call, file:line, error string
 * and device, clear CUDA's last-error slot (so a later launch check does not see a stale,
 * non-sticky error) and return -1. */
int cuda_check_(backend_t *b, cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return 0;
    cuda_impl_t *im = impl_of(b);
    (void)cudaGetLastError();
    char msg[900];
    snprintf(msg, sizeof msg, "cuda: %s failed at %s:%d: %s (%s) on device %d (%s)", call, file, line,
             cudaGetErrorString(e), cudaGetErrorName(e), im->device, im->device_name);
    return cuda_record(b, e == cudaErrorMemoryAllocation ? EXIT_OOM : EXIT_SOFTWARE, msg);
}

/* BLAS_CK's body: on a cuBLAS failure record the call, file:line, status and device (EXIT_OOM for
 * an allocation failure). Returns 0, or -1 on failure. */
static int blas_check_(backend_t *b, cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    cuda_impl_t *im = impl_of(b);
    char msg[900];
    snprintf(msg, sizeof msg, "cublas: %s failed at %s:%d: %s on device %d (%s)", call, file, line,
             cublasGetStatusString(s), im->device, im->device_name);
    return cuda_record(b, s == CUBLAS_STATUS_ALLOC_FAILED ? EXIT_OOM : EXIT_SOFTWARE, msg);
}

#define BLAS_CK(b, call) blas_check_((b), (call), #call, __FILE__, __LINE__)

/* Ops return early once a failure is recorded: their inputs may be NULL allocations. */
#define OP_GUARD(b)                         \
    do {                                    \
        if (impl_of(b)->failed) return;     \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Caching arena
 * ------------------------------------------------------------------------------------------- */

/* The block whose pointer is p, or NULL. O(n_blocks). */
static cblock_t *arena_find(backend_t *b, const void *p) {
    cuda_impl_t *im = impl_of(b);
    for (int i = 0; i < im->n_blocks; i++)
        if (im->blocks[i].ptr == p) return &im->blocks[i];
    return NULL;
}

/* Return block i to CUDA (with its shadow) and remove it from the list; the last block takes its
 * place. */
static void arena_drop(backend_t *b, int i) {
    cuda_impl_t *im = impl_of(b);
    cudaFree(im->blocks[i].ptr);
    im->reserved -= im->blocks[i].bytes;
    free(im->blocks[i].shadow);
    im->blocks[i] = im->blocks[--im->n_blocks];
}

/* Return every cached (unused) block to CUDA. */
static void arena_release_cache(backend_t *b) {
    cuda_impl_t *im = impl_of(b);
    for (int i = im->n_blocks - 1; i >= 0; i--)
        if (!im->blocks[i].used) arena_drop(b, i);
}

/* A device block of at least `bytes`. Cached blocks are reused when they fit without wasting
 * more than half of themselves. Returns NULL with out-of-memory recorded. */
void *arena_alloc(backend_t *b, size_t bytes, int cached, const char *what) {
    cuda_impl_t *im = impl_of(b);
    if (im->failed) return NULL;
    if (bytes > SIZE_MAX - CUDA_ALIGN) bytes = SIZE_MAX - CUDA_ALIGN; // cudaMalloc will refuse it
    bytes = (bytes + CUDA_ALIGN - 1) / CUDA_ALIGN * CUDA_ALIGN;
    if (bytes == 0) bytes = CUDA_ALIGN;
    if (cached) {
        int best = -1;
        for (int i = 0; i < im->n_blocks; i++) {
            cblock_t *c = &im->blocks[i];
            if (!c->used && c->cached && c->bytes >= bytes && c->bytes / 2 <= bytes &&
                (best < 0 || c->bytes < im->blocks[best].bytes))
                best = i;
        }
        if (best >= 0) {
            im->blocks[best].used = 1;
            return im->blocks[best].ptr;
        }
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        arena_release_cache(b);
        e = cudaMalloc(&p, bytes);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        char msg[900];
        snprintf(msg, sizeof msg,
                 "cuda: out of device memory: cudaMalloc of %zu MiB for %s failed (%s) with %zu MiB already held "
                 "on device %d (%s); use a smaller batch, --quant int8, or a bigger GPU",
                 bytes >> 20, what, cudaGetErrorString(e), im->reserved >> 20, im->device, im->device_name);
        cuda_record(b, e == cudaErrorMemoryAllocation ? EXIT_OOM : EXIT_SOFTWARE, msg);
        return NULL;
    }
    if (im->n_blocks == im->cap_blocks) {
        im->cap_blocks = im->cap_blocks ? 2 * im->cap_blocks : 256;
        im->blocks = xrealloc(im->blocks, (size_t)im->cap_blocks * sizeof *im->blocks);
    }
    im->blocks[im->n_blocks++] = (cblock_t){.ptr = p, .bytes = bytes, .used = 1, .cached = cached};
    im->reserved += bytes;
    if (im->reserved > b->peak_bytes) b->peak_bytes = im->reserved;
    return p;
}

/* backend_ops_t.mem_free: keep a cached block for reuse, else give it back to CUDA. p must be a
 * live block of b; NULL is a no-op. */
void cuda_mem_free(backend_t *b, void *p) {
    if (!p) return;
    cuda_impl_t *im = impl_of(b);
    cblock_t *c = arena_find(b, p);
    ASSERT(c != NULL && c->used); // a pointer this backend never handed out, or a double free
    if (c->cached) {
        c->used = 0;
        return;
    }
    /* cudaFree waits for the device; queued work using the block is finished first. */
    arena_drop(b, (int)(c - im->blocks));
}

/* Make *slot a cached block of at least `bytes`, reusing it when it is big enough. */
static int arena_ensure(backend_t *b, void **slot, size_t bytes, const char *what) {
    cblock_t *c = *slot ? arena_find(b, *slot) : NULL;
    if (c && c->bytes >= bytes) return 0;
    cuda_mem_free(b, *slot);
    *slot = arena_alloc(b, bytes, 1, what);
    return *slot ? 0 : -1;
}

/* backend_ops_t.weight_free: free w's data and scales and zero w. */
static void cuda_weight_free(backend_t *b, bweight_t *w) {
    cuda_mem_free(b, w->data);
    cuda_mem_free(b, w->scales);
    memset(w, 0, sizeof *w);
}

/* backend_ops_t.weight_concat: dst = the parts stacked by rows, by device-to-device copies of
 * their data (and int8 scales), queued on the stream; then the parts are freed (cudaFree waits
 * for the copies). With --quant int8 a part below QUANT_MIN_ROWS rows stays in the compute dtype
 * (weight_upload); stacked with int8 parts, the int8 ones are then dequantised into dst (exactly
 * the values the GEMM's dequantisation would give), so dst is in the compute dtype. Returns 0,
 * or -1 (failure recorded) with the parts intact and dst zeroed. */
static int cuda_weight_concat(backend_t *b, bweight_t *dst, bweight_t *parts, int n) {
    cuda_impl_t *im = impl_of(b);
    int rows = 0, cols = n > 0 ? parts[0].cols : 0;
    dtype_t dt = n > 0 ? parts[0].dtype : b->compute;
    for (int i = 0; i < n; i++) {
        ASSERT(parts[i].cols == cols && parts[i].data && (parts[i].dtype == DT_I8 || parts[i].dtype == b->compute));
        if (parts[i].dtype != dt) dt = b->compute; // mixed int8 and compute dtype
        rows += parts[i].rows;
    }
    memset(dst, 0, sizeof *dst);
    if (im->failed) return -1;
    size_t row_bytes = (size_t)cols * dtype_size(dt);
    bweight_t w = {.rows = rows, .cols = cols, .dtype = dt};
    if (!(w.data = arena_alloc(b, (size_t)rows * row_bytes, 0, "weight")) ||
        (dt == DT_I8 && !(w.scales = arena_alloc(b, (size_t)rows * sizeof(float), 0, "int8 scales")))) {
        cuda_weight_free(b, &w);
        return -1;
    }
    for (int i = 0, at = 0; i < n; at += parts[i].rows, i++) {
        char *to = (char *)w.data + (size_t)at * row_bytes;
        int rc = parts[i].dtype != dt
                     ? CK(b, dequant_int8_forward(to, parts[i].data, parts[i].scales, parts[i].rows, cols,
                                                  (kdtype_t)b->compute, im->stream))
                     : CK(b, cudaMemcpyAsync(to, parts[i].data, (size_t)parts[i].rows * row_bytes,
                                             cudaMemcpyDeviceToDevice, im->stream));
        if (!rc && dt == DT_I8)
            rc = CK(b, cudaMemcpyAsync(w.scales + at, parts[i].scales, (size_t)parts[i].rows * sizeof(float),
                                       cudaMemcpyDeviceToDevice, im->stream));
        if (rc) {
            cuda_weight_free(b, &w);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) cuda_weight_free(b, &parts[i]);
    *dst = w;
    return 0;
}

/* A cached activation block: fp32 for ACT_RESIDUAL, the compute dtype for ACT_WORK. */
static void *cuda_act_alloc(backend_t *b, size_t n_elems, act_kind_t kind) {
    size_t es = kind == ACT_RESIDUAL ? sizeof(float) : dtype_size(b->compute);
    if (n_elems > SIZE_MAX / es) n_elems = SIZE_MAX / es; // cudaMalloc refuses it: recorded as OOM
    return arena_alloc(b, n_elems * es, 1, kind == ACT_RESIDUAL ? "residual activations" : "activations");
}

/* Copy the batch's four int32 arrays through one pinned buffer. The host cu_seqlens copy that
 * launch planning reads lives with dst->cu_seqlens's block, so it stays valid as long as it. */
static int cuda_batch_upload(backend_t *b, bbatch_t *dst, const bbatch_t *host) {
    cuda_impl_t *im = impl_of(b);
    if (im->failed) return -1;
    size_t T = (size_t)host->T, B = (size_t)host->B, n = 2 * T + 2 * B + 1;
    if (arena_ensure(b, (void **)&dst->tokens, T * 4, "batch tokens") ||
        arena_ensure(b, (void **)&dst->pos, T * 4, "batch positions") ||
        arena_ensure(b, (void **)&dst->cu_seqlens, (B + 1) * 4, "batch offsets") ||
        arena_ensure(b, (void **)&dst->last, B * 4, "batch pooled rows"))
        return -1;
    if (CK(b, cudaEventSynchronize(im->batch_done))) return -1; // the previous batch's copies are done
    if (n > im->batch_cap) {
        if (im->batch_pinned) cudaFreeHost(im->batch_pinned);
        im->batch_pinned = NULL;
        im->batch_cap = 0;
        if (CK(b, cudaMallocHost((void **)&im->batch_pinned, n * 4))) return -1;
        im->batch_cap = n;
    }
    int32_t *p = im->batch_pinned;
    memcpy(p, host->tokens, T * 4);
    memcpy(p + T, host->pos, T * 4);
    memcpy(p + 2 * T, host->cu_seqlens, (B + 1) * 4);
    memcpy(p + 2 * T + B + 1, host->last, B * 4);
    if (CK(b, cudaMemcpyAsync(dst->tokens, p, T * 4, cudaMemcpyHostToDevice, im->stream)) ||
        CK(b, cudaMemcpyAsync(dst->pos, p + T, T * 4, cudaMemcpyHostToDevice, im->stream)) ||
        CK(b, cudaMemcpyAsync(dst->cu_seqlens, p + 2 * T, (B + 1) * 4, cudaMemcpyHostToDevice, im->stream)) ||
        CK(b, cudaMemcpyAsync(dst->last, p + 2 * T + B + 1, B * 4, cudaMemcpyHostToDevice, im->stream)) ||
        CK(b, cudaEventRecord(im->batch_done, im->stream)))
        return -1;
    cblock_t *c = arena_find(b, dst->cu_seqlens);
    c->shadow = xrealloc(c->shadow, c->bytes);
    memcpy(c->shadow, host->cu_seqlens, (B + 1) * 4);
    dst->h_cu_seqlens = c->shadow;
    dst->B = host->B;
    dst->T = host->T;
    dst->max_len = host->max_len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Ops
 * ------------------------------------------------------------------------------------------- */

/* The ops below are thin: check the guard, launch (kernels/<op>.cu), check the launch. Their
 * semantics are backend.h's; their CPU references are the ops of the same name in backend_cpu.c. */

static void cuda_embed(backend_t *b, float *x, const bweight_t *emb, const bbatch_t *bt, int dim, float scale) {
    OP_GUARD(b);
    ASSERT(emb->cols == dim);
    CK(b, embed_forward(x, emb->data, emb->dtype == DT_I8 ? emb->scales : NULL, bt->tokens, bt->T, dim, emb->rows,
                        scale, (kdtype_t)b->compute, impl_of(b)->stream));
}

/* backend_ops_t.rmsnorm: queue rmsnorm_forward (kernels/rmsnorm.cu). */
static void cuda_rmsnorm(backend_t *b, void *out, const float *x, const float *w, int T, int dim, float eps,
                         float offset) {
    OP_GUARD(b);
    CK(b, rmsnorm_forward(out, x, w, T, dim, eps, offset, (kdtype_t)b->compute, impl_of(b)->stream));
}

/* cuBLAS data type of dt (fp32 for anything but bf16 and fp16). */
static cudaDataType_t cuda_type(dtype_t dt) {
    return dt == DT_BF16 ? CUDA_R_16BF : dt == DT_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* out (T, rows) = in (T, cols) @ W^T + beta * out, out of type out_ty (the compute dtype's, or
 * CUDA_R_32F); beta is 0 (out is not read) except for matmul_residual, whose beta = 1 adds the
 * fp32 product straight into the fp32 residual stream. Row-major out is column-major out^T (rows x T), which cuBLAS computes as W^T (op T on the
 * column-major (cols x rows) view of W) times in^T. */
static void cuda_gemm(backend_t *b, void *out, cudaDataType_t out_ty, const void *in, const bweight_t *w, int T,
                      float beta) {
    OP_GUARD(b);
    if (T <= 0) return;
    cuda_impl_t *im = impl_of(b);
    const void *W = w->data;
    if (w->dtype == DT_I8) {
        if (arena_ensure(b, &im->deq, (size_t)w->rows * w->cols * dtype_size(b->compute), "int8 dequantisation scratch") ||
            CK(b, dequant_int8_forward(im->deq, w->data, w->scales, w->rows, w->cols, (kdtype_t)b->compute, im->stream)))
            return;
        W = im->deq;
    } else {
        ASSERT(w->dtype == b->compute);
    }
    const float alpha = 1.0f;
    cudaDataType_t ty = cuda_type(b->compute);
    /* cublasLt with the algorithm timed for this shape (backend_cuda_lt.c); cublasGemmEx where
     * cublasLt has none, or with LM_CUBLASLT=0. */
    lt_gemm_t g = {.m = w->rows, .n = T, .k = w->cols, .ta = CUBLAS_OP_T, .A = W, .at = ty, .lda = w->cols, .B = in,
                   .bt = ty, .ldb = w->cols, .D = out, .dt = out_ty, .ldd = w->rows, .alpha = alpha, .beta = beta,
                   .int8 = w->dtype == DT_I8};
    cublasStatus_t s = im->lt ? lt_gemm(im->lt, &g) : CUBLAS_STATUS_NOT_SUPPORTED;
    if (s != CUBLAS_STATUS_NOT_SUPPORTED) {
        blas_check_(b, s, "cublasLtMatmul (lt_gemm)", __FILE__, __LINE__);
        return;
    }
    BLAS_CK(b, cublasGemmEx(im->blas, CUBLAS_OP_T, CUBLAS_OP_N, w->rows, T, w->cols, &alpha, W, ty, w->cols, in, ty,
                            w->cols, &beta, out, out_ty, w->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* backend_ops_t.matmul: out in the compute dtype. */
static void cuda_matmul(backend_t *b, void *out, const void *in, const bweight_t *w, int T) {
    cuda_gemm(b, out, cuda_type(b->compute), in, w, T, 0.0f);
}

/* backend_ops_t.matmul_f32: fp32 out from compute-dtype operands (cuBLAS rounds the fp32 sum to
 * C's type; here it keeps it), so an o_proj / down_proj output beyond 65504 stays finite. */
static void cuda_matmul_f32(backend_t *b, float *out, const void *in, const bweight_t *w, int T) {
    cuda_gemm(b, out, CUDA_R_32F, in, w, T, 0.0f);
}

/* backend_ops_t.matmul_residual: without a post-norm, fp32 and fp16 add y to x unrounded
 * (residual_norm's proj_value), so one GEMM with beta = 1 adds it into x directly: 4 bytes per
 * element less written (no y) and no separate read of y. bf16 rounds y before the add, as
 * transformers does, so it (and any post-norm) goes through y. */
static float *cuda_matmul_residual(backend_t *b, float *x, float *y, const void *in, const bweight_t *w,
                                   const float *post_w, int T) {
    if (!post_w && b->compute != DT_BF16) {
        cuda_gemm(b, x, CUDA_R_32F, in, w, T, 1.0f);
        return NULL;
    }
    cuda_gemm(b, y, CUDA_R_32F, in, w, T, 0.0f);
    return y;
}

/* backend_ops_t.qkv_rope: queue qkv_rope_forward (kernels/rope.cu). */
static void cuda_qkv_rope(backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int n_heads,
                          int n_kv_heads, int head_dim, const float *inv_freq) {
    OP_GUARD(b);
    CK(b, qkv_rope_forward(q, k, v, qkv, bt->pos, bt->T, n_heads, n_kv_heads, head_dim, inv_freq,
                           (kdtype_t)b->compute, impl_of(b)->stream));
}

/* backend_ops_t.attention: queue attention_forward (kernels/attention.cu), generic kernel only when
 * LM_ATTN_GENERIC=1. */
static void cuda_attention(backend_t *b, void *out, const void *q, const void *k, const void *v, const bbatch_t *bt,
                           const attn_params_t *p) {
    OP_GUARD(b);
    kattn_params_t kp = {p->n_heads, p->n_kv_heads, p->head_dim, p->scale, p->softcap, p->window};
    CK(b, attention_forward(out, q, k, v, bt->pos, bt->cu_seqlens, bt->B, bt->T, bt->max_len, &kp,
                            impl_of(b)->attn_generic, (kdtype_t)b->compute, impl_of(b)->stream));
}

/* backend_ops_t.gated_act: queue gated_act_forward (kernels/act.cu) over the (T, 2*hidden) gate|up rows. */
static void cuda_gated_act(backend_t *b, void *out, const void *gu, int T, int hidden, act_t act) {
    OP_GUARD(b);
    CK(b, gated_act_forward(out, gu, T, hidden, act == ACT_SILU ? 0 : 1, (kdtype_t)b->compute, impl_of(b)->stream));
}

/* backend_ops_t.residual_norm: queue residual_norm_forward (kernels/rmsnorm.cu). */
static void cuda_residual_norm(backend_t *b, float *x, void *xn, const float *y, const float *post_w,
                               const float *next_w, int T, int dim, float eps, float offset) {
    OP_GUARD(b);
    CK(b, residual_norm_forward(x, xn, y, post_w, next_w, T, dim, eps, offset, (kdtype_t)b->compute,
                                impl_of(b)->stream));
}

/* The logits are computed on the device, copied to pinned memory, and waited for: this is the
 * end of a batch, so the wait costs nothing that sync() would not. */
static void cuda_pool_score(backend_t *b, float *logits_host, const float *x, const float *norm_w, float eps,
                            float offset, const bweight_t *score, const bbatch_t *bt, int dim) {
    OP_GUARD(b);
    cuda_impl_t *im = impl_of(b);
    size_t n = (size_t)bt->B * (size_t)score->rows;
    ASSERT(score->cols == dim);
    if (n == 0) return;
    if (arena_ensure(b, &im->logits_dev, n * sizeof(float), "logits")) return;
    if (n > im->logits_cap) {
        if (im->logits_pinned) cudaFreeHost(im->logits_pinned);
        im->logits_pinned = NULL;
        im->logits_cap = 0;
        if (CK(b, cudaMallocHost((void **)&im->logits_pinned, n * sizeof(float)))) return;
        im->logits_cap = n;
    }
    if (CK(b, pool_score_forward(im->logits_dev, x, norm_w, eps, offset, score->data,
                                 score->dtype == DT_I8 ? score->scales : NULL, score->rows, bt->last, bt->B, dim,
                                 (kdtype_t)b->compute, im->stream)) ||
        CK(b, cudaMemcpyAsync(im->logits_pinned, im->logits_dev, n * sizeof(float), cudaMemcpyDeviceToHost, im->stream)) ||
        CK(b, cudaStreamSynchronize(im->stream)))
        return;
    memcpy(logits_host, im->logits_pinned, n * sizeof(float));
}

/* Copy n fp32 values of device memory to the host, after the queued work. */
static void cuda_to_host(backend_t *b, float *host, const float *src, size_t n) {
    OP_GUARD(b);
    cuda_impl_t *im = impl_of(b);
    if (CK(b, cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, im->stream))) return;
    CK(b, cudaStreamSynchronize(im->stream));
}

/* ---------------------------------------------------------------------------------------------
 * Timing marks (backend.h's mark hooks, for op_timer.c)
 * ------------------------------------------------------------------------------------------- */

/* backend_ops_t.mark: record the next pooled event on the stream (the pool grows as needed). */
static int cuda_mark(backend_t *b) {
    cuda_impl_t *im = impl_of(b);
    if (im->failed) return -1;
    if (im->n_marks == im->cap_marks) {
        int cap = im->cap_marks ? 2 * im->cap_marks : 256;
        im->marks = xrealloc(im->marks, (size_t)cap * sizeof *im->marks);
        for (; im->cap_marks < cap; im->cap_marks++)
            if (CK(b, cudaEventCreate(&im->marks[im->cap_marks]))) return -1;
    }
    if (CK(b, cudaEventRecord(im->marks[im->n_marks], im->stream))) return -1;
    return im->n_marks++;
}

/* backend_ops_t.mark_ms: cudaEventElapsedTime from mark i to mark j (after a sync). */
static double cuda_mark_ms(backend_t *b, int i, int j) {
    cuda_impl_t *im = impl_of(b);
    ASSERT(i >= 0 && j >= 0 && i < im->n_marks && j < im->n_marks);
    float ms = 0.0f;
    if (CK(b, cudaEventElapsedTime(&ms, im->marks[i], im->marks[j]))) return 0.0;
    return ms;
}

/* backend_ops_t.marks_reset: the events stay in the pool for the next forward. */
static void cuda_marks_reset(backend_t *b) { impl_of(b)->n_marks = 0; }

/* ---------------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------------- */

/* Wait for the stream; report (once) the first failure recorded since the last sync. */
static int cuda_sync(backend_t *b, err_t *err) {
    cuda_impl_t *im = impl_of(b);
    if (!CK(b, cudaStreamSynchronize(im->stream))) cuda_upload_collect(b);
    if (!im->failed) return 0;
    im->failed = 0; // reported once; a sticky device error will be recorded again by the next call
    err_code(err, im->err.code, "%s", im->err.msg);
    return -1;
}

/* backend_ops_t.destroy: wait for the stream, then free every pinned buffer, event, device block
 * and handle, and b itself; NULL is a no-op. */
static void cuda_destroy(backend_t *b) {
    if (!b) return;
    cuda_impl_t *im = impl_of(b);
    if (im->stream) cudaStreamSynchronize(im->stream);
    lt_cache_destroy(im->lt);
    if (im->blas) cublasDestroy(im->blas);
    cuda_upload_free(b);
    if (im->batch_pinned) cudaFreeHost(im->batch_pinned);
    if (im->logits_pinned) cudaFreeHost(im->logits_pinned);
    if (im->batch_done) cudaEventDestroy(im->batch_done);
    for (int i = 0; i < im->cap_marks; i++) cudaEventDestroy(im->marks[i]);
    free(im->marks);
    while (im->n_blocks > 0) arena_drop(b, im->n_blocks - 1);
    free(im->blocks);
    if (im->stream) cudaStreamDestroy(im->stream);
    free(im);
    free(b);
}

static const backend_ops_t cuda_ops = {
    .name = "cuda",
    .act_alloc = cuda_act_alloc,
    .vec_upload = cuda_vec_upload,
    .weight_upload = cuda_weight_upload,
    .mem_free = cuda_mem_free,
    .weight_free = cuda_weight_free,
    .weight_concat = cuda_weight_concat,
    .batch_upload = cuda_batch_upload,
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .matmul_f32 = cuda_matmul_f32,
    .matmul_residual = cuda_matmul_residual,
    .qkv_rope = cuda_qkv_rope,
    .attention = cuda_attention,
    .gated_act = cuda_gated_act,
    .residual_norm = cuda_residual_norm,
    .pool_score = cuda_pool_score,
    .sync = cuda_sync,
    .destroy = cuda_destroy,
    .to_host = cuda_to_host,
    .mark = cuda_mark,
    .mark_ms = cuda_mark_ms,
    .marks_reset = cuda_marks_reset,
};

/* backend_cuda_create's contract (backend.h), reached through the plugin descriptor below. */
static backend_t *cuda_create(dtype_t dt, int quant_int8, err_t *err) {
    if (dt != DT_F32 && dt != DT_BF16 && dt != DT_F16) {
        err_code(err, EXIT_USAGE, "cuda backend: compute dtype must be fp32, bf16 or fp16, not %s", dtype_name(dt));
        return NULL;
    }
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        err_code(err, EXIT_UNAVAILABLE,
                 "no CUDA device: cudaGetDeviceCount %s%s (CUDA_VISIBLE_DEVICES=%s); check the NVIDIA driver "
                 "(nvidia-smi) or run with --device cpu",
                 e != cudaSuccess ? "failed: " : "found 0 devices", e != cudaSuccess ? cudaGetErrorString(e) : "",
                 vis ? vis : "(unset)");
        (void)cudaGetLastError();
        return NULL;
    }
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
        err_code(err, EXIT_SOFTWARE, "cuda backend: cannot open device 0: %s", cudaGetErrorString(e));
        (void)cudaGetLastError();
        return NULL;
    }
    int sm = prop.major * 10 + prop.minor;
    if (dt == DT_BF16 && sm < 80) {
        err_code(err, EXIT_USAGE,
                 "cuda backend: bf16 needs compute capability 8.0 or newer, and device 0 (%s) is sm_%d; "
                 "use --dtype fp16 (or fp32)",
                 prop.name, sm);
        return NULL;
    }
    backend_t *b = xcalloc(1, sizeof *b);
    cuda_impl_t *im = xcalloc(1, sizeof *im);
    b->ops = &cuda_ops;
    b->compute = dt;
    b->impl = im;
    im->device = 0;
    im->sm = sm;
    snprintf(im->device_name, sizeof im->device_name, "%.200s, sm_%d", prop.name, sm);
    im->quant_int8 = quant_int8;
    const char *gen = getenv("LM_ATTN_GENERIC");
    im->attn_generic = gen && *gen && strcmp(gen, "0") != 0;
    if (CK(b, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking)) ||
        CK(b, cudaEventCreateWithFlags(&im->batch_done, cudaEventDisableTiming)) ||
        BLAS_CK(b, cublasCreate(&im->blas)) || BLAS_CK(b, cublasSetStream(im->blas, im->stream)) ||
        BLAS_CK(b, cublasSetMathMode(im->blas, CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) ||
        !(im->blas_ws = arena_alloc(b, BLAS_WORKSPACE, 0, "cuBLAS workspace")) ||
        BLAS_CK(b, cublasSetWorkspace(im->blas, im->blas_ws, BLAS_WORKSPACE))) {
        err_code(err, im->err.code ? im->err.code : EXIT_SOFTWARE, "cuda backend: %s", im->err.msg);
        cuda_destroy(b);
        return NULL;
    }
    const char *lt_env = getenv("LM_CUBLASLT"), *dbg = getenv("LM_GEMM_DEBUG");
    if (!lt_env || strcmp(lt_env, "0") != 0) {
        cublasStatus_t s;
        im->lt = lt_cache_create(im->stream, im->blas_ws, BLAS_WORKSPACE, dbg && *dbg && strcmp(dbg, "0") != 0, &s);
        if (!im->lt) fprintf(stderr, "lm-worker: note: cublasLt unusable (%s); GEMMs use cublasGemmEx\n",
                             cublasGetStatusString(s));
    }
    return b;
}

/* The plugin's one exported symbol (backend_cuda_plugin.h); liblm_cuda.so's version script
 * hides everything else. */
__attribute__((visibility("default"))) const lm_cuda_plugin_t *lm_cuda_plugin_v1(void) {
    static const lm_cuda_plugin_t plugin = {
        .abi = LM_CUDA_PLUGIN_ABI,
        .cuda_version = CUDART_VERSION,
        .backend_size = sizeof(backend_t),
        .ops_size = sizeof(backend_ops_t),
        .err_size = sizeof(err_t),
        .create = cuda_create,
    };
    return &plugin;
}
