/* backend_cpu.c: the fp32 CPU backend, the reference every other backend is checked against.
 *
 * Each op is written for clarity first: plain loops in the order transformers evaluates the
 * same expression (so that rounding matches the goldens closely), spread over a thread pool by
 * rows or query rows. Matmuls go to OpenBLAS sgemm when it was found at configure time
 * (LM_HAVE_OPENBLAS), and attention's two per-row products to sgemv (about twice as fast as
 * our loops); each also has a plain-C loop, used without OpenBLAS or after cpu_set_plain(),
 * whose result for a row does not depend on the other rows (sgemm picks kernels by shape). Attention never materialises a
 * T x T score matrix: each task scores one query row against its visible keys in a per-thread
 * scratch row.
 *
 * It deliberately has no reduced precision and no quantisation: ACT_WORK buffers and weights
 * are fp32. Memory comes from malloc with a small header holding the size, so that peak_bytes
 * can be tracked and batch buffers reused; an allocation failure is recorded and reported by
 * sync() as EXIT_OOM rather than aborting.
 */
#include "backend_cpu.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock_util.h"
#include "cpu_pool.h"
#include "exit_codes.h"
#include "weight_raw.h"

#ifdef LM_HAVE_OPENBLAS
#include <cblas.h>
#endif

typedef struct {
    cpu_pool_t *pool;      // worker threads that run the row tasks
    size_t cur_bytes;      // bytes currently allocated through cpu_alloc
    int failed;            // first failure recorded, reported by sync
    err_t err;             // the first failure, valid when failed
    float *scratch;        // (threads, scratch_per) attention score rows
    size_t scratch_per;    // floats per thread in scratch (longest sequence seen)
    int plain;             // plain-C loops instead of OpenBLAS (cpu_set_plain)
    int blas_threads;      // threads OpenBLAS gets: b->threads capped by cpu_blas_max_threads()
    double *marks;         // (n_marks) clock_mono_s() at each mark since marks_reset
    int n_marks, cap_marks; // marks used / allocated
} cpu_impl_t;

/* The CPU backend's private state of b. */
static cpu_impl_t *impl_of(backend_t *b) { return (cpu_impl_t *)b->impl; }

/* ---------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------- */

/* Every block starts with a 64-byte header holding its size, which keeps the payload 64-byte
 * aligned (for sgemm) and lets us reuse and account for blocks. */
#define CPU_HDR 64

/* Record the first allocation failure of `bytes` for `what` with exit code `code`; later ones are
 * dropped. cpu_sync reports it. */
static void cpu_fail(backend_t *b, int code, const char *what, size_t bytes) {
    cpu_impl_t *im = impl_of(b);
    if (im->failed) return;
    im->failed = 1;
    err_code(&im->err, code, "cpu backend: %s: cannot allocate %zu bytes of host memory", what, bytes);
}

/* A 64-byte aligned block of `bytes` behind a size header, counted in cur_bytes / peak_bytes.
 * Returns NULL (failure recorded with cpu_fail) on OOM; free with cpu_mem_free. */
static void *cpu_alloc(backend_t *b, size_t bytes, const char *what) {
    void *raw = NULL;
    if (bytes > SIZE_MAX - CPU_HDR || posix_memalign(&raw, CPU_HDR, bytes + CPU_HDR) != 0) {
        cpu_fail(b, EXIT_OOM, what, bytes);
        return NULL;
    }
    *(size_t *)raw = bytes;
    cpu_impl_t *im = impl_of(b);
    im->cur_bytes += bytes;
    if (im->cur_bytes > b->peak_bytes) b->peak_bytes = im->cur_bytes;
    return (char *)raw + CPU_HDR;
}

/* The size recorded in the header of a cpu_alloc block. */
static size_t cpu_block_size(const void *p) { return *(const size_t *)((const char *)p - CPU_HDR); }

/* Free a cpu_alloc block and uncount it; NULL is a no-op. */
static void cpu_mem_free(backend_t *b, void *p) {
    if (!p) return;
    impl_of(b)->cur_bytes -= cpu_block_size(p);
    free((char *)p - CPU_HDR);
}

/* backend_ops_t.act_alloc: n_elems fp32 elements for either kind. Returns NULL on OOM. */
static void *cpu_act_alloc(backend_t *b, size_t n_elems, act_kind_t kind) {
    (void)kind; // both kinds are fp32 on the CPU
    if (n_elems > SIZE_MAX / sizeof(float)) {
        cpu_fail(b, EXIT_OOM, "activation buffer", SIZE_MAX);
        return NULL;
    }
    return cpu_alloc(b, n_elems * sizeof(float), "activation buffer");
}

/* backend_ops_t.vec_upload: a backend copy of host[0..n). Returns NULL on OOM. */
static void *cpu_vec_upload(backend_t *b, const float *host, size_t n) {
    float *p = cpu_alloc(b, n * sizeof(float), "vector");
    if (p) memcpy(p, host, n * sizeof(float));
    return p;
}

/* Converting one weight to fp32 on the pool: pieces of PIECE elements. */
#define PIECE ((size_t)1 << 20)
typedef struct {
    float *dst;         // (n) fp32
    const void *src;    // (n) of dt
    dtype_t dt;         // DT_F32, DT_BF16 or DT_F16
    size_t n;           // elements
    size_t *first_bad;  // (pieces) index of each piece's first non-finite element, or n
} to_f32_job_t;

/* cpu_pool task: convert piece `task` of the job. */
static void to_f32_task(void *ctx, int task, int thread) {
    (void)thread;
    to_f32_job_t *j = ctx;
    size_t at = (size_t)task * PIECE, n = j->n - at < PIECE ? j->n - at : PIECE;
    size_t i = raw_to_f32(j->dst + at, (const char *)j->src + at * raw_elem_size(j->dt), j->dt, n);
    j->first_bad[task] = i < n ? at + i : j->n;
}

/* backend_ops_t.weight_upload: the host (rows, cols) matrix of src, widened to fp32 on the pool
 * threads. Returns 0, or -1 on OOM or a non-finite element (recorded for sync; w left zeroed). */
static int cpu_weight_upload(backend_t *b, bweight_t *w, const void *host, dtype_t src, int rows, int cols,
                             const char *name) {
    size_t n = (size_t)rows * (size_t)cols;
    memset(w, 0, sizeof *w);
    float *p = cpu_alloc(b, n * sizeof(float), "weight matrix");
    if (!p) return -1;
    int pieces = (int)((n + PIECE - 1) / PIECE);
    to_f32_job_t j = {.dst = p, .src = host, .dt = src, .n = n, .first_bad = xmalloc((size_t)(pieces + 1) * sizeof(size_t))};
    cpu_pool_run(impl_of(b)->pool, pieces, to_f32_task, &j);
    size_t bad = n;
    for (int i = 0; i < pieces; i++)
        if (j.first_bad[i] < bad) bad = j.first_bad[i];
    free(j.first_bad);
    if (bad < n) {
        cpu_mem_free(b, p);
        cpu_impl_t *im = impl_of(b);
        if (!im->failed) {
            im->failed = 1;
            raw_nonfinite_error(&im->err, name, host, src, bad, cols);
        }
        return -1;
    }
    w->data = p;
    w->rows = rows;
    w->cols = cols;
    w->dtype = DT_F32;
    return 0;
}

/* backend_ops_t.weight_free: free w's data and scales and zero w. */
static void cpu_weight_free(backend_t *b, bweight_t *w) {
    cpu_mem_free(b, w->data);
    cpu_mem_free(b, w->scales);
    memset(w, 0, sizeof *w);
}

int cpu_weight_concat(backend_t *b, bweight_t *dst, bweight_t *parts, int n) {
    int rows = 0, cols = n > 0 ? parts[0].cols : 0;
    for (int i = 0; i < n; i++) {
        ASSERT(parts[i].dtype == DT_F32 && parts[i].cols == cols && parts[i].data);
        rows += parts[i].rows;
    }
    memset(dst, 0, sizeof *dst);
    float *p = cpu_alloc(b, (size_t)rows * (size_t)cols * sizeof(float), "weight matrix");
    if (!p) return -1;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)parts[i].rows * (size_t)cols;
        memcpy(p + at, parts[i].data, k * sizeof(float));
        at += k;
        cpu_weight_free(b, &parts[i]);
    }
    *dst = cpu_weight_wrap(p, rows, cols);
    return 0;
}

bweight_t cpu_weight_wrap(float *data, int rows, int cols) {
    bweight_t w = {.data = data, .scales = NULL, .rows = rows, .cols = cols, .dtype = DT_F32};
    return w;
}

/* Make *slot a block of at least `bytes`, reusing the old one when it is big enough. */
static int cpu_ensure(backend_t *b, void **slot, size_t bytes, const char *what) {
    if (*slot && cpu_block_size(*slot) >= bytes) return 0;
    cpu_mem_free(b, *slot);
    *slot = cpu_alloc(b, bytes ? bytes : 1, what);
    return *slot ? 0 : -1;
}

/* backend_ops_t.batch_upload: copy the host batch into dst's buffers (grown as needed). Returns 0,
 * or -1 on OOM. */
static int cpu_batch_upload(backend_t *b, bbatch_t *dst, const bbatch_t *host) {
    size_t T = (size_t)host->T, B = (size_t)host->B;
    if (cpu_ensure(b, (void **)&dst->tokens, T * sizeof(int32_t), "batch tokens") ||
        cpu_ensure(b, (void **)&dst->pos, T * sizeof(int32_t), "batch positions") ||
        cpu_ensure(b, (void **)&dst->cu_seqlens, (B + 1) * sizeof(int32_t), "batch offsets") ||
        cpu_ensure(b, (void **)&dst->last, B * sizeof(int32_t), "batch pooled rows"))
        return -1;
    memcpy(dst->tokens, host->tokens, T * sizeof(int32_t));
    memcpy(dst->pos, host->pos, T * sizeof(int32_t));
    memcpy(dst->cu_seqlens, host->cu_seqlens, (B + 1) * sizeof(int32_t));
    memcpy(dst->last, host->last, B * sizeof(int32_t));
    dst->B = host->B;
    dst->T = host->T;
    dst->max_len = host->max_len;
    dst->h_cu_seqlens = dst->cu_seqlens; // host memory already
    return 0;
}

/* backend_ops_t.to_host: memory is already host memory, so a plain copy of n floats. */
static void cpu_to_host(backend_t *b, float *host, const float *src, size_t n) {
    (void)b;
    memcpy(host, src, n * sizeof(float));
}

/* ---------------------------------------------------------------------------------------------
 * Row-parallel helpers
 * ------------------------------------------------------------------------------------------- */

/* Split T rows into tasks of `per` rows: about four tasks per thread for balance. */
static int rows_per_task(backend_t *b, int T) {
    int threads = cpu_pool_threads(impl_of(b)->pool);
    int per = T / (threads * 4);
    return per < 1 ? 1 : per;
}

typedef void (*row_fn_t)(void *ctx, int row);
typedef struct {
    row_fn_t fn; // called once per row
    void *ctx;   // fn's argument
    int T, per;  // rows in all, rows per task
} rows_job_t;

/* cpu_pool task: run the job's fn on rows [task * per, (task + 1) * per) clipped to T. */
static void rows_task(void *ctx, int task, int thread) {
    (void)thread;
    rows_job_t *j = ctx;
    int end = (task + 1) * j->per;
    if (end > j->T) end = j->T;
    for (int r = task * j->per; r < end; r++) j->fn(j->ctx, r);
}

/* Run fn(ctx, r) for every row r in [0, T) on the pool. */
static void rows_run(backend_t *b, int T, row_fn_t fn, void *ctx) {
    rows_job_t j = {fn, ctx, T, rows_per_task(b, T)};
    cpu_pool_run(impl_of(b)->pool, (T + j.per - 1) / j.per, rows_task, &j);
}

/* 1/sqrt(mean(x^2) + eps), the RMSNorm factor of one row. The mean is accumulated in double,
 * which is at least as accurate as torch's fp32 cascade sum; the rest is fp32 like torch. */
static float rms_factor(const float *x, int dim, float eps) {
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)x[i] * (double)x[i];
    float var = (float)(ss / dim);
    return 1.0f / sqrtf(var + eps);
}

/* ---------------------------------------------------------------------------------------------
 * Ops
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    float *x;              // (T, dim) output rows
    const float *emb;      // (vocab, dim) embedding table
    const int32_t *tokens; // (T) token ids
    int dim, vocab;        // row width, rows of emb
    float scale;           // embedding multiplier
} embed_ctx_t;

/* Row task of cpu_embed: x[t] = emb[tokens[t]] * scale; the id must be in [0, vocab). */
static void embed_row(void *ctx, int t) {
    embed_ctx_t *c = ctx;
    int32_t tok = c->tokens[t];
    ASSERT(tok >= 0 && tok < c->vocab); // forward.c validates ids before upload
    const float *e = c->emb + (size_t)tok * c->dim;
    float *x = c->x + (size_t)t * c->dim;
    for (int i = 0; i < c->dim; i++) x[i] = e[i] * c->scale;
}

/* x[t] = emb[tokens[t]] * scale. */
void cpu_embed(backend_t *b, float *x, const bweight_t *emb, const bbatch_t *bt, int dim, float scale) {
    ASSERT(emb->dtype == DT_F32 && emb->cols == dim);
    embed_ctx_t c = {x, emb->data, bt->tokens, dim, emb->rows, scale};
    rows_run(b, bt->T, embed_row, &c);
}

typedef struct {
    float *out;         // (T, dim) normed rows
    const float *x, *w; // (T, dim) input, (dim) norm weight
    int dim;            // row width
    float eps, offset;  // RMSNorm epsilon; added to w (0 Llama, 1 Gemma)
} norm_ctx_t;

/* Row task of cpu_rmsnorm: out[t] = x[t] * rms_factor * (offset + w). */
static void rmsnorm_row(void *ctx, int t) {
    norm_ctx_t *c = ctx;
    const float *x = c->x + (size_t)t * c->dim;
    float *o = c->out + (size_t)t * c->dim;
    float r = rms_factor(x, c->dim, c->eps);
    for (int i = 0; i < c->dim; i++) o[i] = (x[i] * r) * (c->offset + c->w[i]);
}

/* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * (offset + w). */
void cpu_rmsnorm(backend_t *b, void *out, const float *x, const float *w, int T, int dim, float eps, float offset) {
    norm_ctx_t c = {out, x, w, dim, eps, offset};
    rows_run(b, T, rmsnorm_row, &c);
}

/* The plain-C matmul: each task owns a block of 16 output features (rows of W), which stay in
 * cache while every input row streams past. */
#define MM_BLOCK 16
typedef struct {
    float *out;          // (T, rows)
    const float *in, *w; // (T, cols) input, (rows, cols) weight
    int T, rows, cols;   // input rows, output features, input features
} mm_ctx_t;

/* Task of the plain-C matmul: output features [task * 16, task * 16 + 16) for every input row. */
static void mm_task(void *ctx, int task, int thread) {
    (void)thread;
    mm_ctx_t *c = ctx;
    int r0 = task * MM_BLOCK, r1 = r0 + MM_BLOCK < c->rows ? r0 + MM_BLOCK : c->rows;
    for (int t = 0; t < c->T; t++) {
        const float *x = c->in + (size_t)t * c->cols;
        for (int r = r0; r < r1; r++) {
            const float *w = c->w + (size_t)r * c->cols;
            float acc[8] = {0};
            int i = 0;
            for (; i + 8 <= c->cols; i += 8)
                for (int u = 0; u < 8; u++) acc[u] += x[i + u] * w[i + u];
            float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            for (; i < c->cols; i++) s += x[i] * w[i];
            c->out[(size_t)t * c->rows + r] = s;
        }
    }
}

/* out (T, rows) = in (T, cols) @ W^T. */
void cpu_matmul(backend_t *b, void *out, const void *in, const bweight_t *w, int T) {
    ASSERT(w->dtype == DT_F32);
    if (T <= 0) return;
#ifdef LM_HAVE_OPENBLAS
    if (!impl_of(b)->plain) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, w->rows, w->cols, 1.0f, in, w->cols, w->data,
                    w->cols, 0.0f, out, w->rows);
        return;
    }
#endif
    mm_ctx_t c = {out, in, w->data, T, w->rows, w->cols};
    cpu_pool_run(impl_of(b)->pool, (w->rows + MM_BLOCK - 1) / MM_BLOCK, mm_task, &c);
}

/* backend_ops_t.matmul_f32: cpu_matmul, whose out is fp32 already. */
void cpu_matmul_f32(backend_t *b, float *out, const void *in, const bweight_t *w, int T) {
    cpu_matmul(b, out, in, w, T);
}

/* backend_ops_t.matmul_residual: the reference never accumulates into x; y = in @ W^T. */
float *cpu_matmul_residual(backend_t *b, float *x, float *y, const void *in, const bweight_t *w, const float *post_w,
                           int T) {
    (void)x, (void)post_w;
    cpu_matmul(b, y, in, w, T);
    return y;
}

void cpu_set_plain(backend_t *b, int on) { impl_of(b)->plain = on; }

typedef struct {
    float *q, *k, *v;                  // (T, n_heads*head_dim), (T, n_kv_heads*head_dim) twice: outputs
    const float *qkv;                  // (T, (n_heads + 2*n_kv_heads)*head_dim) fused q|k|v GEMM output
    const int32_t *pos;                // (T) position of each token in its sequence
    int n_heads, n_kv_heads, head_dim; // head counts and the size of one head
    const float *inv_freq;             // (head_dim/2) rope inverse frequencies
} rope_ctx_t;

/* Rotate one head from src into dst: the rotate_half (non-interleaved) convention of
 * transformers, x * cos + rotate_half(x) * sin with rotate_half(x) = (-x2, x1). */
static void rope_head(float *dst, const float *src, const float *cs, const float *sn, int half) {
    for (int i = 0; i < half; i++) {
        float x1 = src[i], x2 = src[i + half];
        dst[i] = x1 * cs[i] + (-x2) * sn[i];
        dst[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

/* Row task of cpu_qkv_rope: token t's q and k heads rotated by pos[t] * inv_freq, v copied. */
static void rope_row(void *ctx, int t) {
    rope_ctx_t *c = ctx;
    int half = c->head_dim / 2;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    const float *row = c->qkv + (size_t)t * (qd + 2 * kvd);
    float cs[CPU_ROPE_MAX_HEAD_DIM / 2], sn[CPU_ROPE_MAX_HEAD_DIM / 2];
    /* The angle is one fp32 product, as in transformers' inv_freq @ position_ids. */
    float p = (float)c->pos[t];
    for (int i = 0; i < half; i++) {
        float a = p * c->inv_freq[i];
        cs[i] = cosf(a);
        sn[i] = sinf(a);
    }
    for (int h = 0; h < c->n_heads; h++)
        rope_head(c->q + (size_t)t * qd + (size_t)h * c->head_dim, row + (size_t)h * c->head_dim, cs, sn, half);
    for (int h = 0; h < c->n_kv_heads; h++)
        rope_head(c->k + (size_t)t * kvd + (size_t)h * c->head_dim, row + qd + (size_t)h * c->head_dim, cs, sn, half);
    memcpy(c->v + (size_t)t * kvd, row + qd + kvd, kvd * sizeof(float));
}

/* q, k (rotated by pos[t] * inv_freq) and v from the fused q|k|v rows of qkv. */
void cpu_qkv_rope(backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int n_heads,
                  int n_kv_heads, int head_dim, const float *inv_freq) {
    ASSERT(head_dim % 2 == 0 && head_dim <= CPU_ROPE_MAX_HEAD_DIM);
    rope_ctx_t c = {q, k, v, qkv, bt->pos, n_heads, n_kv_heads, head_dim, inv_freq};
    rows_run(b, bt->T, rope_row, &c);
}

typedef struct {
    float *out;             // (T, n_heads*head_dim)
    const float *q, *k, *v; // (T, n_heads*head_dim), (T, n_kv_heads*head_dim) twice
    const int32_t *pos;     // (T) position of each token in its sequence
    const attn_params_t *p; // heads, scale, softcap, window
    float *scratch;        // (threads, scratch_per) softmax rows, one per pool thread
    size_t scratch_per;    // floats per thread in scratch (>= the longest sequence)
    int blas;              // score and value products through sgemv
} attn_ctx_t;

/* a . b over n floats, in eight partial sums (a fixed order, so the same on every call). */
static float dot(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[i + u] * b[i + u];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* s[j] = q . k_j for the n key rows at k0 (row stride `stride`). */
static void attn_scores(const attn_ctx_t *c, float *s, const float *q, const float *k0, int n, size_t stride, int hd) {
#ifdef LM_HAVE_OPENBLAS
    if (c->blas) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, hd, 1.0f, k0, (int)stride, q, 1, 0.0f, s, 1);
        return;
    }
#else
    (void)c;
#endif
    for (int j = 0; j < n; j++) s[j] = dot(q, k0 + (size_t)j * stride, hd);
}

/* o = sum_j p[j] * v_j over the n value rows at v0 (row stride `stride`). */
static void attn_mix(const attn_ctx_t *c, float *o, const float *p, const float *v0, int n, size_t stride, int hd) {
#ifdef LM_HAVE_OPENBLAS
    if (c->blas) {
        cblas_sgemv(CblasRowMajor, CblasTrans, n, hd, 1.0f, v0, (int)stride, p, 1, 0.0f, o, 1);
        return;
    }
#else
    (void)c;
#endif
    for (int d = 0; d < hd; d++) o[d] = 0.0f;
    for (int j = 0; j < n; j++)
        for (int d = 0; d < hd; d++) o[d] += p[j] * v0[(size_t)j * stride + d];
}

/* One task = one query row t, all heads, as transformers' eager attention computes it:
 * softmax(softcap(q.k * scale) + causal/window mask) @ v. The row's sequence starts at
 * t - pos[t], so the visible keys are rows [start + lo, t] with lo = max(0, pos - window + 1)
 * under a sliding window; masked keys are simply not visited. */
static void attn_task(void *ctx, int t, int thread) {
    attn_ctx_t *c = ctx;
    const attn_params_t *p = c->p;
    int hd = p->head_dim, n_rep = p->n_heads / p->n_kv_heads;
    int i = c->pos[t], start = t - i;
    int lo = p->window > 0 && i - p->window + 1 > 0 ? i - p->window + 1 : 0;
    int n = i - lo + 1;
    float *s = c->scratch + (size_t)thread * c->scratch_per;
    size_t q_stride = (size_t)p->n_heads * hd, kv_stride = (size_t)p->n_kv_heads * hd;
    for (int h = 0; h < p->n_heads; h++) {
        int g = h / n_rep; // transformers' repeat_kv: query head h reads kv head h / n_rep
        const float *k0 = c->k + (size_t)(start + lo) * kv_stride + (size_t)g * hd;
        const float *v0 = c->v + (size_t)(start + lo) * kv_stride + (size_t)g * hd;
        attn_scores(c, s, c->q + (size_t)t * q_stride + (size_t)h * hd, k0, n, kv_stride, hd);
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            float sc = s[j] * p->scale;
            if (p->softcap > 0.0f) sc = tanhf(sc / p->softcap) * p->softcap;
            s[j] = sc;
            if (sc > mx) mx = sc;
        }
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) s[j] *= inv;
        attn_mix(c, c->out + (size_t)t * q_stride + (size_t)h * hd, s, v0, n, kv_stride, hd);
    }
}

/* Causal (optionally windowed, softcapped) GQA attention over each packed sequence. */
void cpu_attention(backend_t *b, void *out, const void *q, const void *k, const void *v, const bbatch_t *bt,
                   const attn_params_t *p) {
    cpu_impl_t *im = impl_of(b);
    ASSERT(p->n_kv_heads > 0 && p->n_heads % p->n_kv_heads == 0);
    size_t per = bt->max_len > 0 ? (size_t)bt->max_len : 1;
    if (per > im->scratch_per) {
        size_t threads = (size_t)cpu_pool_threads(im->pool);
        cpu_mem_free(b, im->scratch);
        im->scratch = cpu_alloc(b, threads * per * sizeof(float), "attention scratch");
        im->scratch_per = im->scratch ? per : 0;
        if (!im->scratch) return;
    }
    attn_ctx_t c = {out, q, k, v, bt->pos, p, im->scratch, im->scratch_per, !im->plain};
#ifdef LM_HAVE_OPENBLAS
    /* Each task's sgemv must run on its own pool thread, not fan out to OpenBLAS's threads. */
    if (c.blas) openblas_set_num_threads(1);
    cpu_pool_run(im->pool, bt->T, attn_task, &c);
    if (c.blas) openblas_set_num_threads(im->blas_threads);
#else
    cpu_pool_run(im->pool, bt->T, attn_task, &c);
#endif
}

typedef struct {
    float *out;             // (T, hidden)
    const float *gu;        // (T, 2*hidden) gate | up
    int hidden;             // row width of out
    act_t act;              // ACT_SILU or ACT_GELU_TANH
} act_ctx_t;

/* gelu with the tanh approximation, as torch's gelu(approximate="tanh") evaluates it. */
static float gelu_tanh(float x) {
    const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
    float inner = beta * (x + kappa * (x * x * x));
    return 0.5f * x * (1.0f + tanhf(inner));
}

/* Row task of cpu_gated_act: out[t] = act(gate[t]) * up[t], gate and up the halves of gu[t]. */
static void act_row(void *ctx, int t) {
    act_ctx_t *c = ctx;
    const float *gate = c->gu + (size_t)t * 2 * c->hidden, *up = gate + c->hidden;
    float *out = c->out + (size_t)t * c->hidden;
    for (int i = 0; i < c->hidden; i++) {
        float g = gate[i];
        float a = c->act == ACT_SILU ? g / (1.0f + expf(-g)) : gelu_tanh(g);
        out[i] = a * up[i];
    }
}

/* out (T, hidden) = act(gu[:, :hidden]) * gu[:, hidden:]. */
void cpu_gated_act(backend_t *b, void *out, const void *gu, int T, int hidden, act_t act) {
    act_ctx_t c = {out, gu, hidden, act};
    rows_run(b, T, act_row, &c);
}

typedef struct {
    float *x;                // (T, dim) residual stream, updated in place
    float *xn;               // (T, dim) rmsnorm(x) * (offset + next_w), written when next_w
    const float *y, *post_w; // (T, dim) sublayer output; (dim) post-norm weight or NULL
    const float *next_w;     // (dim) the next block's norm weight, or NULL
    int dim;                 // row width
    float eps, offset;       // RMSNorm epsilon; added to post_w and next_w
} resid_ctx_t;

/* Row task of cpu_residual_norm: x[t] += y[t], or += rmsnorm(y[t]) * (offset + post_w); then
 * xn[t] = rmsnorm(x[t]) * (offset + next_w), the same arithmetic as cpu_rmsnorm. */
static void resid_row(void *ctx, int t) {
    resid_ctx_t *c = ctx;
    float *x = c->x + (size_t)t * c->dim;
    const float *y = c->y ? c->y + (size_t)t * c->dim : NULL;
    if (!y) {
        // x already holds the sum (matmul_residual added it)
    } else if (!c->post_w) {
        for (int i = 0; i < c->dim; i++) x[i] += y[i];
    } else {
        float r = rms_factor(y, c->dim, c->eps);
        for (int i = 0; i < c->dim; i++) x[i] += (y[i] * r) * (c->offset + c->post_w[i]);
    }
    if (!c->next_w) return;
    float *o = c->xn + (size_t)t * c->dim;
    float r = rms_factor(x, c->dim, c->eps);
    for (int i = 0; i < c->dim; i++) o[i] = (x[i] * r) * (c->offset + c->next_w[i]);
}

/* x += post_w ? rmsnorm(y) * (offset + post_w) : y (nothing when y is NULL); then xn = rmsnorm(x) *
 * (offset + next_w) when next_w != NULL. */
void cpu_residual_norm(backend_t *b, float *x, void *xn, const float *y, const float *post_w, const float *next_w,
                       int T, int dim, float eps, float offset) {
    resid_ctx_t c = {x, xn, y, post_w, next_w, dim, eps, offset};
    rows_run(b, T, resid_row, &c);
}

/* logits[b] = rmsnorm(x[last[b]]) @ score^T. B rows only, so it runs on the calling thread. */
void cpu_pool_score(backend_t *b, float *logits_host, const float *x, const float *norm_w, float eps, float offset,
                    const bweight_t *score, const bbatch_t *bt, int dim) {
    ASSERT(score->dtype == DT_F32 && score->cols == dim);
    float *xn = cpu_alloc(b, (size_t)dim * sizeof(float), "pooled row");
    if (!xn) return;
    for (int s = 0; s < bt->B; s++) {
        const float *row = x + (size_t)bt->last[s] * dim;
        float r = rms_factor(row, dim, eps);
        for (int i = 0; i < dim; i++) xn[i] = (row[i] * r) * (offset + norm_w[i]);
        for (int l = 0; l < score->rows; l++)
            logits_host[(size_t)s * score->rows + l] = dot(xn, (const float *)score->data + (size_t)l * dim, dim);
    }
    cpu_mem_free(b, xn);
}

/* ---------------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------------- */

/* backend_ops_t.sync: the work is already done; report (and clear) a recorded failure. Returns 0,
 * or -1 with err set. */
static int cpu_sync(backend_t *b, err_t *err) {
    cpu_impl_t *im = impl_of(b);
    if (!im->failed) return 0;
    im->failed = 0;
    err_code(err, im->err.code, "%s", im->err.msg);
    return -1;
}

/* backend_ops_t.mark: the monotonic clock now (every op has finished when it returns). */
static int cpu_mark(backend_t *b) {
    cpu_impl_t *im = impl_of(b);
    if (im->n_marks == im->cap_marks) {
        im->cap_marks = im->cap_marks ? 2 * im->cap_marks : 1024;
        im->marks = xrealloc(im->marks, (size_t)im->cap_marks * sizeof *im->marks);
    }
    im->marks[im->n_marks] = clock_mono_s();
    return im->n_marks++;
}

/* backend_ops_t.mark_ms: milliseconds from mark i to mark j. */
static double cpu_mark_ms(backend_t *b, int i, int j) {
    cpu_impl_t *im = impl_of(b);
    ASSERT(i >= 0 && j >= 0 && i < im->n_marks && j < im->n_marks);
    return (im->marks[j] - im->marks[i]) * 1e3;
}

/* backend_ops_t.marks_reset: forget every mark (the array stays for the next forward). */
static void cpu_marks_reset(backend_t *b) { impl_of(b)->n_marks = 0; }

/* backend_ops_t.destroy: free the scratch, stop the pool and free b; NULL is a no-op. */
static void cpu_destroy(backend_t *b) {
    if (!b) return;
    cpu_impl_t *im = impl_of(b);
    free(im->marks);
    cpu_mem_free(b, im->scratch);
    cpu_pool_destroy(im->pool);
    free(im);
    free(b);
}

static const backend_ops_t cpu_ops = {
    .name = "cpu",
    .max_head_dim = CPU_ROPE_MAX_HEAD_DIM,
    .act_alloc = cpu_act_alloc,
    .vec_upload = cpu_vec_upload,
    .weight_upload = cpu_weight_upload,
    .mem_free = cpu_mem_free,
    .weight_free = cpu_weight_free,
    .weight_concat = cpu_weight_concat,
    .batch_upload = cpu_batch_upload,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .matmul_f32 = cpu_matmul_f32,
    .matmul_residual = cpu_matmul_residual,
    .qkv_rope = cpu_qkv_rope,
    .attention = cpu_attention,
    .gated_act = cpu_gated_act,
    .residual_norm = cpu_residual_norm,
    .pool_score = cpu_pool_score,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
    .to_host = cpu_to_host,
    .mark = cpu_mark,
    .mark_ms = cpu_mark_ms,
    .marks_reset = cpu_marks_reset,
};

int cpu_blas_max_threads(void) {
#ifdef LM_HAVE_OPENBLAS
    const char *cfg = openblas_get_config();
    const char *p = cfg ? strstr(cfg, "MAX_THREADS=") : NULL;
    int n = p ? atoi(p + strlen("MAX_THREADS=")) : 0;
    if (n <= 0) n = openblas_get_num_procs();
    return n > 0 ? n : 1;
#else
    return 0;
#endif
}

int cpu_blas_threads(const backend_t *b) { return ((const cpu_impl_t *)b->impl)->blas_threads; }

backend_t *backend_cpu_create(int threads, err_t *err) {
    if (threads < 0) {
        err_code(err, EXIT_USAGE, "cpu backend: --threads must be >= 0 (0 = all cores), got %d", threads);
        return NULL;
    }
    if (threads == 0) threads = cpu_pool_ncpus();
    cpu_impl_t *im = xcalloc(1, sizeof *im);
    im->pool = cpu_pool_create(threads);
    if (!im->pool) {
        free(im);
        err_code(err, EXIT_OOM, "cpu backend: cannot start %d threads", threads);
        return NULL;
    }
#ifdef LM_HAVE_OPENBLAS
    /* OpenBLAS keeps its own threads; never run more of them than we were given, nor more than
     * it was built for. */
    int blas_max = cpu_blas_max_threads();
    im->blas_threads = threads < blas_max ? threads : blas_max;
    if (threads > blas_max)
        fprintf(stderr, "lm-worker: note: --threads %d: this OpenBLAS was built for at most %d threads; "
                        "matrix products use %d, the rest of the CPU backend %d\n",
                threads, blas_max, blas_max, threads);
    openblas_set_num_threads(im->blas_threads);
#endif
    backend_t *b = xcalloc(1, sizeof *b);
    b->ops = &cpu_ops;
    b->compute = DT_F32;
    b->threads = threads;
    b->impl = im;
    return b;
}
