/* lora.h: PEFT LoRA adapters, merged into the base weights at load time (W += scale * B @ A).
 *
 * An adapter directory holds adapter_config.json and adapter_model.safetensors, whose keys are
 * "base_model.model.<module>.lora_A.weight" (r, in) and ".lora_B.weight" (out, r), plus full
 * replacement weights for modules_to_save ("base_model.model.score.weight", or the older
 * "...score.modules_to_save[.default].weight"). Which modules are targeted, their rank and alpha
 * follow PEFT's own matching rules (target_modules list or regex, exclude_modules,
 * layers_to_transform, rank_pattern, alpha_pattern), so that a missing or stray weight is caught.
 *
 * It deliberately supports only plain LoRA on Linear layers: DoRA, LoRA biases, embedding LoRA
 * and other PEFT types are rejected with an error, never approximated.
 */
#ifndef LM_LORA_H
#define LM_LORA_H

#include <stddef.h>

#include "check.h"

typedef struct {
    char *key;     // a PEFT pattern key (a module name suffix / regex)
    double value;  // rank or alpha
} lora_pattern_t;

typedef struct {
    int r;                          // default rank
    double alpha;                   // default lora_alpha
    int use_rslora;                 // scale = alpha / sqrt(r) instead of alpha / r
    char **targets;                 // (n_targets) target_modules as a list, or NULL
    int n_targets;                  // entries in targets
    char *target_regex;             // target_modules as one regex (fullmatch), or NULL
    char **excludes;                // (n_excludes) exclude_modules as a list, or NULL
    int n_excludes;                 // entries in excludes
    char *exclude_regex;            // exclude_modules as one regex, or NULL
    char **save;                    // (n_save) modules_to_save
    int n_save;                     // entries in save
    int *layers;                    // (n_layers) layers_to_transform, or NULL for all layers
    int n_layers;                   // entries in layers
    lora_pattern_t *rank_pattern;   // (n_rank_pattern)
    int n_rank_pattern;             // entries in rank_pattern
    lora_pattern_t *alpha_pattern;  // (n_alpha_pattern)
    int n_alpha_pattern;            // entries in alpha_pattern
} lora_config_t;

/* Parse adapter_config.json text (len bytes); `name` is used in errors. Returns 0, or -1 with
 * err naming the file and field. The fuzz target calls this directly. */
int lora_config_parse(lora_config_t *c, const char *buf, size_t len, const char *name, err_t *err);
/* Read and parse the adapter_config.json at path. Returns 0, or -1 with err set (c left zeroed when
 * the file cannot be read). */
int lora_config_load(lora_config_t *c, const char *path, err_t *err);
/* Free every list and pattern of c and zero it. */
void lora_config_free(lora_config_t *c);

/* Whether PEFT would put a LoRA layer on `module` (e.g. "model.layers.3.mlp.up_proj"). */
int lora_config_targets(const lora_config_t *c, const char *module);

/* Rank and scale PEFT uses for `module` (rank_pattern / alpha_pattern applied). */
void lora_config_rank_scale(const lora_config_t *c, const char *module, int *r, double *scale);

typedef struct lora lora_t;

/* Open an adapter directory. Returns NULL with err set. */
lora_t *lora_open(const char *dir, err_t *err);

/* Apply the adapter to the base tensor `name` (fp32, (rows, cols); cols == 0 for a (rows) vector):
 * merge scale * B @ A when the module is targeted, or copy the replacement weight when it is in
 * modules_to_save. Returns 0, or -1 with err naming the adapter file, module and problem (a
 * target without weights, weights for an untargeted module, a rank or shape mismatch). */
int lora_apply(lora_t *l, const char *name, float *w, int rows, int cols, err_t *err);

/* 1 when lora_apply would do anything with tensor `name` (merge, replace, or refuse it), else 0:
 * weights.c hands untouched tensors to the backend in their checkpoint dtype. */
int lora_touches(const lora_t *l, const char *name);

/* After every base tensor went through lora_apply: fail on adapter tensors nothing consumed. */
int lora_finish(lora_t *l, err_t *err);

/* Number of merged modules and replaced modules so far (for reports). */
void lora_counts(const lora_t *l, int *merged, int *replaced);

/* Free the adapter: its config, its mapped safetensors and bookkeeping; NULL is a no-op. */
void lora_free(lora_t *l);

#endif
