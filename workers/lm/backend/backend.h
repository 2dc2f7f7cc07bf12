/* backend.h: the op table that the one forward pass (model/forward.c) runs on.
 *
 * forward.c is written once, as a flat list of ops; a backend implements each op for one kind of
 * memory. backend_cpu.c (fp32, threads, OpenBLAS) is the reference; backend_cuda.c launches the
 * kernels in kernels/ and cuBLAS. A test can run the same op on both with the same inputs.
 *
 * Memory and dtypes. Every pointer an op receives is backend memory (host memory on the CPU,
 * device memory on CUDA). Two activation kinds exist:
 *   - ACT_RESIDUAL buffers are always fp32 (the residual stream; `float *` in signatures);
 *   - ACT_WORK buffers hold the backend's compute dtype (fp32 on CPU; bf16/fp16/fp32 on CUDA;
 *     `void *` in signatures).
 * The o_proj / down_proj outputs (matmul_residual, matmul_f32) are fp32 too: they feed a norm or
 * the residual add, and in fp16 they can exceed 65504. Where an ACT_WORK buffer is fp16, kernels
 * saturate to +-65504 instead of storing infinity (docs/architecture.md, "Precision").
 * Norm weights and rope frequencies are fp32 vectors. Matrices are bweight_t, whose dtype the
 * backend chose at upload (it may quantise to int8 with per-row scales).
 *
 * Layout. A batch is B sequences packed back to back without padding (varlen): T tokens in all,
 * sequence b occupies rows [cu_seqlens[b], cu_seqlens[b+1]). Activations are row-major (T, width).
 * Attention heads are contiguous within a row: q is (T, n_heads*head_dim).
 *
 * Errors. Ops return nothing; a backend records the first failure (out of memory, a launch error)
 * and reports it from sync(), which forward.c calls once per batch.
 */
#ifndef LM_BACKEND_H
#define LM_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "check.h"

typedef enum { DT_F32 = 0, DT_BF16, DT_F16, DT_I8 } dtype_t;

/* The CLI name of dt: "fp32", "bf16", "fp16" or "int8" (a static string). The one table of these
 * names: --dtype parsing (device.c), messages and bench output use it. */
static inline const char *dtype_name(dtype_t dt) {
    static const char *const names[] = {"fp32", "bf16", "fp16", "int8"};
    return (unsigned)dt < sizeof names / sizeof names[0] ? names[dt] : "?";
}
/* Bytes of one element of dt (4, 2 or 1). */
static inline size_t dtype_size(dtype_t dt) { return dt == DT_F32 ? 4 : dt == DT_I8 ? 1 : 2; }
typedef enum { ACT_SILU = 0, ACT_GELU_TANH } act_t;
typedef enum { ACT_RESIDUAL = 0, ACT_WORK } act_kind_t;

/* A weight matrix in backend memory: y = x @ W^T, W is (rows, cols) = (out, in), row-major. */
typedef struct {
    void *data;       // (rows, cols) elements of dtype
    float *scales;    // (rows) per-output-channel scales when dtype == DT_I8, else NULL
    int rows, cols;   // out_features, in_features
    dtype_t dtype;    // element type of data (DT_F32, DT_BF16, DT_F16 or DT_I8)
} bweight_t;

/* One packed batch, resident in backend memory (see backend_ops_t.batch_upload). */
typedef struct {
    int B;                      // sequences
    int T;                      // tokens in all
    int max_len;                // longest sequence
    int32_t *tokens;            // (T) token ids
    int32_t *pos;               // (T) position of each token within its own sequence
    int32_t *cu_seqlens;        // (B+1) prefix sums of sequence lengths
    int32_t *last;              // (B) row in [0,T) whose hidden state is pooled for sequence b
    const int32_t *h_cu_seqlens;// (B+1) host copy, for launch planning
} bbatch_t;

/* Parameters of one attention call. */
typedef struct {
    int n_heads, n_kv_heads, head_dim;  // query heads, key/value heads (GQA), size of one head
    float scale;      // multiplies q.k (1/sqrt(head_dim), or query_pre_attn_scalar^-0.5)
    float softcap;    // 0: none; else s = softcap * tanh(s / softcap) before the mask
    int window;       // 0: full causal; else key j is visible from query i iff i - window < j <= i
} attn_params_t;

typedef struct backend backend_t;

typedef struct {
    const char *name;                                    // "cpu" or "cuda"
    /* Capabilities, checked by model_load against the config before any upload. */
    int max_head_dim;                                    // largest head_dim rope/attention take; 0: any
    /* Memory. alloc returns NULL (and records OOM) when the backend is out of memory. */
    void *(*act_alloc)(backend_t *b, size_t n_elems, act_kind_t kind);
    void *(*vec_upload)(backend_t *b, const float *host, size_t n);       // fp32 vector copy
    /* A host (rows, cols) matrix of src (DT_F32, DT_BF16 or DT_F16; little-endian, possibly
     * unaligned: a safetensors mapping works as is) -> w in b's dtype; `name` (the tensor) is for
     * errors. host is no longer read once the call returns. Returns 0, or -1 on OOM or on a
     * non-finite element, the failure recorded for sync(). A value the stored dtype cannot hold
     * (fp16: |v| >= 65520 would become infinity) may instead be found on the device after the
     * call returns and reported by the next sync(): call sync() after the last upload. Data
     * errors have code EXIT_DATAERR and name the tensor, row and column. */
    int (*weight_upload)(backend_t *b, bweight_t *w, const void *host, dtype_t src, int rows, int cols,
                         const char *name);
    /* Free act_alloc / vec_upload memory; NULL is a no-op. */
    void (*mem_free)(backend_t *b, void *p);
    void (*weight_free)(backend_t *b, bweight_t *w);                      // free w's data and scales
    /* Stack n uploaded matrices by rows into one, so that several projections of the same input
     * run as one GEMM (q|k|v, gate|up): dst (sum of parts[i].rows, cols) = parts[0]; parts[1]; ...
     * All parts share cols and dtype; int8 per-row scales are stacked the same way. On success
     * every part is freed and zeroed; peak memory is the parts plus dst. Returns 0, or -1 on OOM
     * (recorded for sync()) with the parts left as they were and dst zeroed. */
    int (*weight_concat)(backend_t *b, bweight_t *dst, bweight_t *parts, int n);
    /* Copy a host batch (fields with host pointers) into backend memory; reuses dst's buffers. */
    int (*batch_upload)(backend_t *b, bbatch_t *dst, const bbatch_t *host);
    /* Ops, in the order forward.c uses them. */
    void (*embed)(backend_t *b, float *x, const bweight_t *emb, const bbatch_t *bt, int dim, float scale);
    /* out (T, dim) = x / rms(x) * (offset + w). */
    void (*rmsnorm)(backend_t *b, void *out, const float *x, const float *w, int T, int dim, float eps, float offset);
    /* out (T, w->rows) = in (T, w->cols) @ W^T. */
    void (*matmul)(backend_t *b, void *out, const void *in, const bweight_t *w, int T);
    /* The same product with an fp32 out (an ACT_RESIDUAL-sized buffer), whatever the compute
     * dtype: for o_proj and down_proj, whose outputs feed a norm or the residual stream and may
     * exceed fp16's range (65504) where the fp32 result does not. */
    void (*matmul_f32)(backend_t *b, float *out, const void *in, const bweight_t *w, int T);
    /* The o_proj / down_proj product on its way into the residual stream x (T, w->rows), fp32:
     * either x += in @ W^T directly (one GEMM accumulating into x: y is neither written nor read
     * back) and NULL is returned, or y = in @ W^T (as matmul_f32) and y is returned, for
     * residual_norm to add. A backend adds directly only where that is exactly what residual_norm
     * would do with y: no post-norm (post_w NULL) and y added unrounded (CUDA fp32 and fp16; in
     * bf16, y is rounded to bf16 before the add, as transformers holds it). The CPU reference
     * always returns y. Pass the result to residual_norm as its y. */
    float *(*matmul_residual)(backend_t *b, float *x, float *y, const void *in, const bweight_t *w,
                              const float *post_w, int T);
    /* Split the fused q|k|v GEMM output qkv (T, qd + 2*kvd), qd = n_heads*head_dim and
     * kvd = n_kv_heads*head_dim, into q (T, qd) and k (T, kvd), both rotated by bt->pos * inv_freq
     * (transformers' rotate_half rope), and v (T, kvd), copied: contiguous, as attention takes them. */
    void (*qkv_rope)(backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int n_heads,
                     int n_kv_heads, int head_dim, const float *inv_freq);
    /* Causal attention within each sequence of bt; out (T, n_heads*head_dim). */
    void (*attention)(backend_t *b, void *out, const void *q, const void *k, const void *v, const bbatch_t *bt, const attn_params_t *p);
    /* out (T, hidden) = act(gu[:, :hidden]) * gu[:, hidden:], gu (T, 2*hidden) the fused gate|up
     * GEMM output. */
    void (*gated_act)(backend_t *b, void *out, const void *gu, int T, int hidden, act_t act);
    /* The residual add fused with the next norm, all (T, dim): x += post_w ? rmsnorm(y) *
     * (offset + post_w) : y, y fp32 (matmul_residual's); then, when next_w != NULL,
     * xn = rmsnorm(x) * (offset + next_w) (ACT_WORK), the next block's input. next_w == NULL (the
     * last layer: pool_score norms the pooled rows itself) leaves xn untouched. y == NULL (what
     * matmul_residual returns when it added the product itself, never with post_w): x already
     * holds the sum, only the norm runs. */
    void (*residual_norm)(backend_t *b, float *x, void *xn, const float *y, const float *post_w, const float *next_w,
                          int T, int dim, float eps, float offset);
    /* logits (B, n_labels) on the host = rmsnorm(x[last[b]]) @ score^T */
    void (*pool_score)(backend_t *b, float *logits_host, const float *x, const float *norm_w, float eps, float offset,
                       const bweight_t *score, const bbatch_t *bt, int dim);
    /* Wait for queued work. Returns 0, or -1 with err set; err->code is EXIT_OOM on out of memory. */
    int (*sync)(backend_t *b, err_t *err);
    void (*destroy)(backend_t *b);  // free the backend and everything it holds; NULL-safe
    /* Copy n fp32 elements of an ACT_RESIDUAL buffer to the host (debug traces; tests compare
     * per-layer hidden states with it). May be NULL in a backend that cannot; forward.c then
     * refuses to trace. Waits for queued work. Added for model_forward_trace (model.h). */
    void (*to_host)(backend_t *b, float *host, const float *src, size_t n);
    /* Optional timestamps for per-op timing (op_timer.c); NULL in a backend that cannot time.
     * mark queues a timestamp behind the work queued so far and returns its index since the last
     * marks_reset (0, 1, ...), or -1 after a failure (recorded for sync()). mark_ms is the time in
     * milliseconds from mark i to mark j, valid once sync() has returned 0 after both. CUDA:
     * cudaEventRecord of a pooled event on the stream; CPU: the monotonic clock (its ops are
     * synchronous). */
    int (*mark)(backend_t *b);
    double (*mark_ms)(backend_t *b, int i, int j);
    void (*marks_reset)(backend_t *b);  // forget every mark; the next is 0 again
} backend_ops_t;

struct backend {
    const backend_ops_t *ops;  // the backend's op table (static, not owned)
    dtype_t compute;   // dtype of ACT_WORK buffers and (unless quantised) of weights
    int threads;       // CPU threads (CPU backend) or 0
    size_t peak_bytes; // high-water mark of backend memory, for reports
    void *impl;        // backend private state
    double upload_bytes;   // host bytes weight_upload has consumed, in their own dtype (0 where not measured)
    double upload_seconds; // wall time spent in weight_upload; bytes / seconds is the upload rate
};

/* Create the CPU backend (fp32 only) with `threads` worker threads (0 = all cores). */
backend_t *backend_cpu_create(int threads, err_t *err);

/* Create the CUDA backend on device 0 with compute dtype `dt` (DT_F32, DT_BF16 or DT_F16) and
 * optional int8 weight quantisation. Returns NULL with err set when CUDA is not built in, no
 * device is present, or the dtype is unsupported on the device (bf16 below sm_80). */
backend_t *backend_cuda_create(dtype_t dt, int quant_int8, err_t *err);

/* weight_round.c: a CPU backend whose weights carry the GPU's storage rounding, so that a
 * reduced-precision GPU run can be split into the error its weights cause (unavoidable: any
 * bf16/fp16/int8 implementation, transformers included, stores these same values) and the
 * error its arithmetic adds. `lm-worker bench --round-weights` uses it; see docs/cuda-emu.md.
 *
 * Make the CPU backend b store every weight matrix as the CUDA backend would hold it, in fp32:
 * mode "bf16" or "fp16" rounds each element to nearest even; "int8" quantises matrices of
 * QUANT_MIN_ROWS rows or more per row (quant.h) and dequantises them. Norm weights and other
 * vectors stay fp32, as on the GPU. Activations stay fp32. b's op table is replaced by a copy
 * (one per process: call it once). Returns 0, or -1 with err set for an unknown mode or a
 * backend that is not the CPU's. A matrix that cannot be quantised (a NaN or infinity in a row)
 * fails its upload, and sync() then reports why with err->code EXIT_DATAERR. */
int weight_round_wrap(backend_t *b, const char *mode, err_t *err);

/* op_timer.c: an op table that wraps b's own, for `lm-worker bench --ops` and LM_SYNC_EVERY_OP.
 *   OP_TIMER_TIME: time every op of forward.c by class (embed, rmsnorm, matmul, ...) with the
 *                  backend's mark hooks; op_timer_stats reads the totals;
 *   OP_TIMER_SYNC: after every op, wait for the backend and check for errors, so that an
 *                  asynchronous failure is reported naming the op that caused it; ops are then
 *                  timed by the host clock (the op's wall time, launch and wait included).
 * Wrapping a wrapped backend adds the flags. The wrapper lives until b->ops->destroy(b).
 * Returns 0, or -1 with err set when OP_TIMER_TIME is asked of a backend without mark hooks. */
enum { OP_TIMER_TIME = 1, OP_TIMER_SYNC = 2 };
int op_timer_wrap(backend_t *b, int flags, err_t *err);

/* One op class's totals since op_timer_reset, over the forwards (sync() intervals) that ran. */
typedef struct {
    const char *name; // the backend_ops_t member: "matmul", ... (static)
    long calls;       // calls of the op
    double ms;        // their summed time
    double flops;     // floating-point operations they did (0: not counted for this op)
    double bytes;     // bytes they read and wrote at least once (0: not counted)
} op_stat_t;

/* The forwards behind op_timer_stats' totals. */
typedef struct {
    int forwards;      // sync() intervals that ran timed ops
    double ms;         // their summed span, first op's start to last op's end: ms - the classes' ms
                       // is the time between ops
    int wall;          // 1: host wall times (OP_TIMER_SYNC); 0: the backend's marks
} op_span_t;

/* Totals of b's timed ops: up to cap classes with calls > 0, in backend_ops_t's order, into out,
 * and their forwards into *span. Returns the number of classes written; b must have been wrapped
 * with OP_TIMER_TIME. */
int op_timer_stats(backend_t *b, op_stat_t *out, int cap, op_span_t *span);

/* Forget every total (the next forward starts a fresh table). */
void op_timer_reset(backend_t *b);

/* x rounded to the nearest bf16 / fp16 value (ties to even), as fp32. Infinities and NaN pass
 * through; fp16 overflows to infinity like a cast does. */
float round_bf16(float x);
float round_f16(float x);

/* 0 when the CUDA backend can be loaded (driver new enough with a device, cuBLAS found, the
 * plugin matching; backend_cuda_load.c), else -1 with err (code EXIT_UNAVAILABLE) saying why,
 * the same reason backend_cuda_create gives. Creates no backend. For diagnostics. */
int backend_cuda_usable(err_t *err);

/* One line for diagnostics (`lm-worker check`, `orchestrate doctor`) into buf (n bytes): the
 * CUDA version the backend is built for and, once backend_cuda_usable or backend_cuda_create has
 * run, the plugin file, the driver's CUDA version and the cuBLAS file it loaded, or why not. */
void backend_cuda_describe(char *buf, size_t n);

#endif
