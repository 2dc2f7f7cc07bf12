/* forward.c: the one forward pass of a Llama-3 / Gemma-2 sequence classifier.
 *
 * forward_run() reads top to bottom as the model: embed, then per layer the attention block and
 * the MLP block, then pool the last real token, final norm, score. A layer is 4 GEMMs (q|k|v and
 * gate|up are stacked at load, weights.c) and 4 other passes: the q|k|v split fused with rope,
 * attention, the gated activation, and twice the residual add fused with the next norm (whose
 * output is the next block's input). Every line is one backend op,
 * so the CPU reference and the CUDA backend run literally the same sequence. Architecture
 * differences are values in model_config_t (norm offset, embed scale, query scale, softcap,
 * per-layer window, post-norms, activation); this file never tests model_type.
 *
 * It deliberately holds no loading or buffer management (model.c) and no arithmetic (backends).
 */
#include <math.h>

#include "exit_codes.h"
#include "model_impl.h"

/* Copy each sequence's pooled row of the residual stream into trace row `slot`. */
static void trace_rows(model_t *m, float *trace, int slot) {
    const model_config_t *c = &m->cfg;
    int rows = c->n_layers + 2;
    float *host = xmalloc((size_t)m->batch.T * c->dim * sizeof(float));
    m->be->ops->to_host(m->be, host, m->x, (size_t)m->batch.T * c->dim);
    for (int b = 0; b < m->batch.B; b++)
        memcpy(trace + ((size_t)b * rows + slot) * c->dim, host + (size_t)m->h_last[b] * c->dim,
               (size_t)c->dim * sizeof(float));
    free(host);
}

/* The final norm of each traced last layer output, in the backend's own formula (fp32). */
static void trace_final_norm(model_t *m, float *trace) {
    const model_config_t *c = &m->cfg;
    int rows = c->n_layers + 2;
    for (int b = 0; b < m->batch.B; b++) {
        const float *x = trace + ((size_t)b * rows + c->n_layers) * c->dim;
        float *o = trace + ((size_t)b * rows + c->n_layers + 1) * c->dim;
        double ss = 0.0;
        for (int i = 0; i < c->dim; i++) ss += (double)x[i] * x[i];
        float r = 1.0f / sqrtf((float)(ss / c->dim) + c->norm_eps);
        for (int i = 0; i < c->dim; i++) o[i] = (x[i] * r) * (c->norm_offset + m->final_norm_host[i]);
    }
}

/* model_forward's body; with trace non-NULL also copies hidden states to trace (see
 * model_forward_trace). Returns 0, or -1 with err set. */
static int forward_run(model_t *m, const int32_t *const *ids, const int *lens, int B, float *logits, float *trace,
                       err_t *err) {
    const model_config_t *c = &m->cfg;
    backend_t *be = m->be;
    const backend_ops_t *op = be->ops;
    if (trace && !op->to_host)
        return err_code(err, EXIT_USAGE, "the %s backend cannot copy hidden states to the host", op->name);
    if (model_prepare_batch(m, ids, lens, B, err)) return -1;
    const bbatch_t *bt = &m->batch;
    int T = bt->T, dim = c->dim, hidden = c->hidden_dim;
    float eps = c->norm_eps, off = c->norm_offset;

    op->embed(be, m->x, &m->w.emb, bt, dim, c->embed_scale);
    if (trace) trace_rows(m, trace, 0);
    op->rmsnorm(be, m->xn, m->x, m->w.layers[0].attn_norm, T, dim, eps, off); // later layers': residual_norm
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights_t *L = &m->w.layers[l];
        const float *next_norm = l + 1 < c->n_layers ? m->w.layers[l + 1].attn_norm : NULL; // last: pool_score norms
        attn_params_t ap = {.n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                            .scale = c->query_scale, .softcap = c->attn_softcap, .window = c->window[l]};
        /* attention block (its input norm xn was made by the previous line that wrote x) */
        op->matmul(be, m->mm, m->xn, &L->wqkv, T); // q | k | v in one GEMM
        op->qkv_rope(be, m->q, m->k, m->v, m->mm, bt, c->n_heads, c->n_kv_heads, c->head_dim, m->w.inv_freq);
        op->attention(be, m->att, m->q, m->k, m->v, bt, &ap);
        /* o_proj in fp32 (it may exceed fp16's range): into y, or (NULL returned) straight into x */
        float *y = op->matmul_residual(be, m->x, m->y, m->att, &L->wo, L->attn_post_norm, T);
        op->residual_norm(be, m->x, m->xn, y, L->attn_post_norm, L->mlp_norm, T, dim, eps, off); // post-norm when non-NULL
        /* MLP block */
        op->matmul(be, m->mm, m->xn, &L->w_gu, T); // gate | up in one GEMM
        op->gated_act(be, m->hb, m->mm, T, hidden, c->act);
        y = op->matmul_residual(be, m->x, m->y, m->hb, &L->w_down, L->mlp_post_norm, T);
        op->residual_norm(be, m->x, m->xn, y, L->mlp_post_norm, next_norm, T, dim, eps, off);
        if (trace) trace_rows(m, trace, l + 1);
    }
    /* pool each sequence's last real token, final norm, score (no final softcap: transformers'
     * *ForSequenceClassification does not apply it) */
    op->pool_score(be, logits, m->x, m->w.final_norm, eps, off, &m->w.score, bt, dim);
    if (op->sync(be, err)) return -1;
    if (trace) trace_final_norm(m, trace);
    return 0;
}

int model_forward(model_t *m, const int32_t *const *ids, const int *lens, int B, float *logits, err_t *err) {
    return forward_run(m, ids, lens, B, logits, NULL, err);
}

int model_forward_trace(model_t *m, const int32_t *const *ids, const int *lens, int B, float *logits, float *trace,
                        err_t *err) {
    return forward_run(m, ids, lens, B, logits, trace, err);
}
