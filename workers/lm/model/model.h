/* model.h: a Hugging Face Llama-3/3.1 or Gemma-2 *ForSequenceClassification checkpoint, loaded
 * onto a backend and run on packed batches.
 *
 * model_config_t holds every difference between the two architectures; forward.c reads only
 * these fields, never model_type. The loader accepts config.json in the 2024 hub form
 * (rope_theta, rope_scaling, torch_dtype) and the transformers-5 form (rope_parameters, dtype).
 */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "backend/backend.h"
#include "check.h"

#define MODEL_MAX_LABELS 64
#define MODEL_MAX_LAYERS 256
#define MODEL_MAX_HEAD_DIM 1024 // config sanity bound; a backend may take less (ops->max_head_dim)

typedef struct {
    char model_type[32];         // "llama" or "gemma2" (for messages only)
    int dim;                     // hidden_size
    int hidden_dim;              // intermediate_size
    int n_layers;                // num_hidden_layers
    int n_heads;                 // num_attention_heads
    int n_kv_heads;              // num_key_value_heads
    int head_dim;                // head_dim (may differ from dim / n_heads)
    int vocab_size;              // rows of the embedding table
    int n_labels;                // from id2label (or num_labels)
    char *labels[MODEL_MAX_LABELS]; // (n_labels) names in id order
    int pad_token_id;            // -1 when the config has none
    float norm_eps;              // rms_norm_eps
    float norm_offset;           // 0 (Llama: x*w) or 1 (Gemma: x*(1+w))
    float embed_scale;           // 1 or sqrt(dim) (Gemma)
    float query_scale;           // 1/sqrt(head_dim) or query_pre_attn_scalar^-0.5
    float attn_softcap;          // 0 or attn_logit_softcapping
    int window[MODEL_MAX_LAYERS];// (n_layers) 0 = full attention, else sliding window size
    int post_norms;              // Gemma-2: norms after attention and MLP outputs
    act_t act;                   // ACT_SILU or ACT_GELU_TANH
    int tie_word_embeddings;     // informational for seq-cls
    float rope_theta;            // rope base frequency
    char rope_type[16];          // "default" or "llama3"
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;  // llama3 rope_scaling parameters
    int rope_original_max_pos;   // llama3 original_max_position_embeddings
    char torch_dtype[16];        // dtype the checkpoint was saved in ("bfloat16", "float32", ...)
} model_config_t;

typedef struct model model_t;

typedef struct {
    const char *model_dir;       // directory with config.json and *.safetensors
    const char *adapter_dir;     // PEFT LoRA adapter directory, or NULL
    backend_t *backend;          // where the weights go (owned by the caller)
} model_load_opts_t;

/* Parse config.json (either form) at path. Returns 0, or -1 with err naming file and field. */
int model_config_load(model_config_t *cfg, const char *path, err_t *err);
/* Free the label names and reset n_labels; the config may be loaded again. */
void model_config_free(model_config_t *cfg);

/* Load config, weights (and merge the adapter) onto opts->backend. Returns NULL with err set;
 * err->code is EXIT_DATAERR for bad files and EXIT_OOM when the backend ran out of memory. */
model_t *model_load(const model_load_opts_t *opts, err_t *err);
/* Free the weights and activations on the backend, the host staging and m itself; NULL is a no-op.
 * The backend is not freed. */
void model_free(model_t *m);

/* The loaded model's configuration (owned by m, valid until model_free). */
const model_config_t *model_get_config(const model_t *m);

/* Run B sequences (ids[b][0..lens[b])) as one packed batch and write logits (B, n_labels).
 * Returns 0, or -1 with err set (err->code EXIT_OOM when out of device memory). */
int model_forward(model_t *m, const int32_t *const *ids, const int *lens, int B, float *logits, err_t *err);

/* model_forward that also copies each sequence's hidden state at its pooled row into trace,
 * (B, n_layers + 2, dim): row 0 the embedding output, row 1 + l the output of layer l, and the
 * last row the final norm's output (what the score reads). transformers' hidden_states has
 * n_layers + 1 rows: ours without row n_layers (layer n-1's raw output). For tests and debugging;
 * returns -1 with err set when the backend cannot copy to the host (ops->to_host is NULL). */
int model_forward_trace(model_t *m, const int32_t *const *ids, const int *lens, int B, float *logits, float *trace,
                        err_t *err);

/* Bytes of activation memory model_forward allocates for a batch of T tokens when an ACT_WORK
 * element takes work_bytes bytes (4 fp32, 2 bf16/fp16); the residual stream and the o_proj /
 * down_proj output are fp32 whatever work_bytes is. Excludes backend scratch (the CPU's
 * attention rows, cuBLAS workspaces). For memory planning and `lm-worker info`. */
size_t model_activation_bytes(const model_config_t *cfg, int T, int work_bytes);

/* Print to stdout what the checkpoint in model_dir is (config values, tensors, dtypes) and what it
 * costs (weight memory per dtype, activations for batch_tokens tokens of sequences up to
 * max_length), plus the LoRA adapter in adapter_dir (NULL: none), without loading tensor data
 * (model/info.c; `lm-worker info`). Returns 0, or -1 with err set (err->code EXIT_DATAERR). */
int model_info_print(const char *model_dir, const char *adapter_dir, int max_length, int batch_tokens, err_t *err);

/* What model_files_check found, without reading tensor data. */
typedef struct {
    int n_tensors;        // tensors in the checkpoint's safetensors files
    int adapter_r;        // the adapter's default rank (0 without an adapter)
    double adapter_alpha; // its lora_alpha
    int adapter_tensors;  // tensors in adapter_model.safetensors
} model_files_t;

/* Open model_dir's safetensors headers and, when adapter_dir is not NULL, its
 * adapter_config.json and adapter_model.safetensors headers (model/info.c; `lm-worker check`).
 * Reads no tensor data. Returns 0 with *out filled, or -1 with err set (code EXIT_DATAERR) and
 * *adapter_at_fault 1 when the adapter, not the checkpoint, is what failed. */
int model_files_check(const char *model_dir, const char *adapter_dir, model_files_t *out, int *adapter_at_fault,
                      err_t *err);

#endif
