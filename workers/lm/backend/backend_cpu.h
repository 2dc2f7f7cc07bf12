/* backend_cpu.h: the CPU backend's ops, exported one by one so that tests (and the CUDA kernel
 * tests) can run the fp32 reference of a single op on host arrays.
 *
 * Each function has exactly the signature of its slot in backend_ops_t (backend.h) and the
 * semantics documented there; `b` must come from backend_cpu_create(). All pointers are host
 * memory; ACT_WORK buffers are fp32 here. Weights passed in must have dtype DT_F32; build one with
 * cpu_weight_wrap() around a host array, without a copy.
 */
#ifndef LM_BACKEND_CPU_H
#define LM_BACKEND_CPU_H

#include "backend.h"

/* x (T, dim) fp32 = emb[tokens[t]] * scale. */
void cpu_embed(backend_t *b, float *x, const bweight_t *emb, const bbatch_t *bt, int dim, float scale);
/* out (T, dim) = x / sqrt(mean(x^2) + eps) * (offset + w). */
void cpu_rmsnorm(backend_t *b, void *out, const float *x, const float *w, int T, int dim, float eps, float offset);
/* out (T, w->rows) = in (T, w->cols) @ W^T. */
void cpu_matmul(backend_t *b, void *out, const void *in, const bweight_t *w, int T);
/* cpu_matmul with a float out: backend_ops_t.matmul_f32 (every CPU buffer is fp32). */
void cpu_matmul_f32(backend_t *b, float *out, const void *in, const bweight_t *w, int T);
/* y = in @ W^T; returns y (backend_ops_t.matmul_residual: the reference never adds into x). */
float *cpu_matmul_residual(backend_t *b, float *x, float *y, const void *in, const bweight_t *w, const float *post_w,
                           int T);
/* q (T, n_heads*head_dim), k and v (T, n_kv_heads*head_dim) from the fused q|k|v rows of qkv,
 * q and k rotated by each token's position (backend_ops_t.qkv_rope). */
void cpu_qkv_rope(backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int n_heads,
                  int n_kv_heads, int head_dim, const float *inv_freq);
/* Causal (optionally windowed, soft-capped) attention within each sequence of bt; out (T,
 * n_heads*head_dim). */
void cpu_attention(backend_t *b, void *out, const void *q, const void *k, const void *v, const bbatch_t *bt,
                   const attn_params_t *p);
/* out (T, hidden) = act(gu[:, :hidden]) * gu[:, hidden:], gu (T, 2*hidden). */
void cpu_gated_act(backend_t *b, void *out, const void *gu, int T, int hidden, act_t act);
/* x += post_w ? rmsnorm(y) * (offset + post_w) : y (nothing when y is NULL); then xn = rmsnorm(x) *
 * (offset + next_w) when next_w != NULL; all (T, dim) (backend_ops_t.residual_norm). */
void cpu_residual_norm(backend_t *b, float *x, void *xn, const float *y, const float *post_w, const float *next_w,
                       int T, int dim, float eps, float offset);
/* dst = parts stacked by rows; the parts are freed (backend_ops_t.weight_concat). */
int cpu_weight_concat(backend_t *b, bweight_t *dst, bweight_t *parts, int n);
/* logits_host (B, score->rows) = rmsnorm(x[last[b]]) @ score^T. */
void cpu_pool_score(backend_t *b, float *logits_host, const float *x, const float *norm_w, float eps, float offset,
                    const bweight_t *score, const bbatch_t *bt, int dim);

/* A bweight_t view of a host fp32 matrix (rows, cols), for tests. Nothing is copied or owned. */
bweight_t cpu_weight_wrap(float *data, int rows, int cols);

/* Use the plain-C loops instead of OpenBLAS (sgemm in matmul, sgemv in attention) when on != 0.
 * Their result for one row does not depend on the batch's shape, so tests can demand that a
 * packed batch gives bit-identical logits to its sequences run alone; sgemm picks kernels by
 * shape and rounds differently. Without OpenBLAS the plain loops are always used. */
void cpu_set_plain(backend_t *b, int on);

/* The threads OpenBLAS was built for: MAX_THREADS from openblas_get_config(), else its processor
 * count; 0 without OpenBLAS. Some builds segfault when handed more. */
int cpu_blas_max_threads(void);

/* The threads b hands OpenBLAS: min(b->threads, cpu_blas_max_threads()); 0 without OpenBLAS. */
int cpu_blas_threads(const backend_t *b);

/* Largest head_dim the qkv_rope op supports (its per-row cos/sin table lives on the stack); the op
 * table's max_head_dim, which model_load checks. */
#define CPU_ROPE_MAX_HEAD_DIM 1024

#endif
