/* model_impl.h: the inside of model_t, shared by weights.c (loading), rope.c and forward.c.
 *
 * Not part of the public API (model.h is); nothing outside workers/lm/model/ includes it except
 * tests that need a loader's internals.
 */
#ifndef LM_MODEL_IMPL_H
#define LM_MODEL_IMPL_H

#include "lora.h"
#include "model.h"
#include "safetensors.h"

/* One decoder layer's weights in backend memory. The norm names differ between architectures:
 * Llama's post_attention_layernorm is the norm before the MLP (mlp_norm), while Gemma-2's is the
 * norm applied to the attention output (attn_post_norm). */
typedef struct {
    float *attn_norm;        // (dim) input_layernorm
    float *attn_post_norm;   // (dim) Gemma-2 post_attention_layernorm; NULL for Llama
    float *mlp_norm;         // (dim) Llama post_attention_layernorm / Gemma-2 pre_feedforward_layernorm
    float *mlp_post_norm;    // (dim) Gemma-2 post_feedforward_layernorm; NULL for Llama
    bweight_t wq;            // (n_heads*head_dim, dim) load slot only: moved into wqkv, then empty
    bweight_t wk, wv;        // (n_kv_heads*head_dim, dim) load slots only, like wq
    bweight_t wqkv;          // (qd + 2*kvd, dim) q | k | v rows, stacked at load: one GEMM
    bweight_t wo;            // (dim, n_heads*head_dim)
    bweight_t w_gate, w_up;  // (hidden_dim, dim) load slots only: moved into w_gu, then empty
    bweight_t w_gu;          // (2*hidden_dim, dim) gate | up rows, stacked at load: one GEMM
    bweight_t w_down;        // (dim, hidden_dim)
} layer_weights_t;

typedef struct {
    bweight_t emb;           // (vocab_size, dim) model.embed_tokens
    layer_weights_t *layers; // (n_layers)
    float *final_norm;       // (dim) model.norm
    bweight_t score;         // (n_labels, dim) score
    float *inv_freq;         // (head_dim/2) rope inverse frequencies
} model_weights_t;

struct model {
    model_config_t cfg;        // the parsed config.json
    backend_t *be;             // not owned
    model_weights_t w;         // weights in backend memory
    float *final_norm_host;    // (dim) host copy of model.norm, for traces
    int lora_merged;           // modules merged from an adapter
    int lora_replaced;         // modules replaced by an adapter (modules_to_save)
    /* Activations in backend memory, sized for cap_T tokens and regrown on demand. */
    int cap_T;                 // tokens the activation buffers hold
    float *x;                  // (T, dim) residual stream, fp32
    void *xn;                  // (T, dim) normed input of attention / MLP
    void *mm;                  // (T, max(qd + 2*kvd, 2*hidden_dim)) the fused GEMM outputs: q|k|v,
                               // then (dead by then) gate|up; qd = n_heads*head_dim, kvd = n_kv_heads*head_dim
    void *q;                   // (T, qd) rotated queries (qkv_rope)
    void *k, *v;               // (T, kvd) rotated keys, values (qkv_rope)
    void *att;                 // (T, qd) attention output
    float *y;                  // (T, dim) o_proj / down_proj output, fp32 (matmul_f32)
    void *hb;                  // (T, hidden_dim) act(gate) * up
    bbatch_t batch;            // the current batch in backend memory
    /* Host staging of the batch, capacity h_cap_T tokens and h_cap_B sequences. */
    int32_t *h_tokens, *h_pos; // (h_cap_T)
    int32_t *h_cu, *h_last;    // (h_cap_B + 1), (h_cap_B)
    int h_cap_T, h_cap_B;      // capacity of the host staging, tokens / sequences
};

/* model_config_load on len bytes of config.json text; `path` names it in errors. Returns 0, or -1
 * with err set. The fuzz target calls this directly. */
int model_config_parse(model_config_t *cfg, const char *buf, size_t len, const char *path, err_t *err);

/* One tensor the checkpoint must provide. cols == 0 marks a (rows) vector. */
typedef struct {
    char name[128];          // checkpoint name, e.g. "model.layers.0.mlp.up_proj.weight"
    int rows, cols;          // shape; cols == 0 for a vector
    bweight_t *mat;          // destination of a matrix, or NULL
    float **vec;             // destination of a vector, or NULL
} weight_spec_t;

/* List the tensors cfg's architecture needs, with destinations in w (w->layers must be
 * allocated). Returns the count; *out is malloc'd. */
int weights_specs(const model_config_t *cfg, model_weights_t *w, weight_spec_t **out);

/* Whether a checkpoint tensor we do not need is known to be harmless (rotary buffers, an
 * lm_head left in a classifier checkpoint). */
int weights_ignorable(const char *name);

/* Load every tensor of specs from st (merging lora when non-NULL) onto m->be; `where` names the
 * checkpoint in messages about missing tensors. Returns 0, or -1 with err set (err->code
 * EXIT_DATAERR or EXIT_OOM). */
int weights_load(model_t *m, const st_set_t *st, lora_t *lora, const char *where, err_t *err);
/* Free every loaded weight on m->be, the inv_freq and host norm copies, and zero m->w; no-op when
 * nothing is loaded. */
void weights_free(model_t *m);

/* Validate ids, pick each sequence's pooled row (transformers' rule: the rightmost token whose id
 * is not pad_token_id, 0 when all are pads, the last one when there is no pad_token_id), upload
 * the batch and grow the activation buffers to fit. Returns 0, or -1 with err set. */
int model_prepare_batch(model_t *m, const int32_t *const *ids, const int *lens, int B, err_t *err);

/* Rope inverse frequencies (head_dim/2 floats) exactly as transformers computes them in fp32:
 * default, or llama3 scaling. */
void rope_inv_freq(const model_config_t *cfg, float *out);

#endif
