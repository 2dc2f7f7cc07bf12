/* info.c: model_info_print (model.h), what a checkpoint is and what it will cost, without loading it.
 *
 * It reads config.json, the safetensors headers (mmapped, no tensor data touched) and, with
 * --adapter, adapter_config.json and the adapter's headers, then prints every config value the
 * forward pass uses, the parameter count, the checkpoint dtypes and memory estimates: weights in
 * fp32/bf16/fp16/int8 and activations for a batch. It is how a user sizes --batch-tokens before
 * a run (`lm-worker info`, cli/cmd_info.c, parses the options). It deliberately does not
 * validate tensor shapes (loading does that). model_files_check is the same reading for
 * `lm-worker check`, with a summary instead of a print.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exit_codes.h"
#include "json_util.h"
#include "model_impl.h"

/* bytes in MiB. */
static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* Weight bytes per storage choice, from the tensors the architecture needs. */
static void weight_bytes(const model_config_t *c, double *f32, double *half, double *i8) {
    model_weights_t w = {0};
    w.layers = xcalloc((size_t)c->n_layers, sizeof *w.layers);
    weight_spec_t *specs;
    int n = weights_specs(c, &w, &specs);
    *f32 = *half = *i8 = 0;
    for (int i = 0; i < n; i++) {
        double elems = (double)specs[i].rows * (specs[i].cols ? specs[i].cols : 1);
        *f32 += elems * 4;
        *half += specs[i].cols ? elems * 2 : elems * 4;                       // vectors stay fp32
        *i8 += specs[i].cols ? elems + 4.0 * specs[i].rows : elems * 4;      // int8 + per-row scale
    }
    free(specs);
    free(w.layers);
}

/* Print the checkpoint's architecture and config, one field per line. */
static void print_config(const model_config_t *c, const char *arch) {
    printf("architecture       %s (model_type %s)\n", arch, c->model_type);
    printf("hidden_size        %d\n", c->dim);
    printf("intermediate_size  %d\n", c->hidden_dim);
    printf("layers             %d\n", c->n_layers);
    printf("attention heads    %d (key/value heads %d, head_dim %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("vocab_size         %d\n", c->vocab_size);
    printf("labels             %d:", c->n_labels);
    for (int i = 0; i < c->n_labels; i++) printf(" %s", c->labels[i]);
    printf("\n");
    if (c->pad_token_id >= 0)
        printf("pooling            rightmost token whose id != pad_token_id %d\n", c->pad_token_id);
    else
        printf("pooling            last token (no pad_token_id)\n");
    printf("rms_norm_eps       %g\n", (double)c->norm_eps);
    printf("norm               %s\n", c->norm_offset != 0.0f ? "x * (1 + w)" : "x * w");
    printf("post norms         %s\n", c->post_norms ? "yes (after attention and MLP)" : "no");
    printf("embed scale        %.9g\n", (double)c->embed_scale);
    printf("query scale        %.9g\n", (double)c->query_scale);
    if (c->attn_softcap > 0) printf("attention softcap  %g\n", (double)c->attn_softcap);
    else printf("attention softcap  none\n");
    int sliding = 0, window = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->window[l]) sliding++, window = c->window[l];
    if (sliding) printf("sliding window     %d tokens on %d of %d layers (layer 0 %s)\n", window, sliding,
                        c->n_layers, c->window[0] ? "slides" : "is global");
    else printf("sliding window     none\n");
    printf("activation         %s\n", c->act == ACT_SILU ? "silu" : "gelu_pytorch_tanh");
    printf("rope               theta %g, %s", (double)c->rope_theta, c->rope_type);
    if (strcmp(c->rope_type, "llama3") == 0)
        printf(" (factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %d)",
               (double)c->rope_factor, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
               c->rope_original_max_pos);
    printf("\n");
    printf("config dtype       %s\n", c->torch_dtype);
}

/* "BF16 x 37, F32 x 2" into buf. */
static void dtype_summary(const st_set_t *st, char *buf, size_t size) {
    int count[ST_N_DTYPES] = {0};
    for (int i = 0; i < st->n_tensors; i++) count[st->tensors[i].dtype]++;
    buf[0] = '\0';
    for (int d = 0; d < ST_N_DTYPES; d++) {
        if (!count[d]) continue;
        size_t at = strlen(buf);
        snprintf(buf + at, size - at, "%s%s x %d", at ? ", " : "", st_dtype_name((st_dtype_t)d), count[d]);
    }
}

/* Total elements over every tensor of st. */
static int64_t param_count(const st_set_t *st) {
    int64_t n = 0;
    for (int i = 0; i < st->n_tensors; i++) n += st->tensors[i].n_elems;
    return n;
}

/* Print the LoRA adapter in dir: rank, scale, targets, patterns and its tensors. Returns 0, or -1
 * with err set. */
static int print_adapter(const char *dir, err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    lora_config_t lc;
    if (lora_config_load(&lc, path, err)) return -1;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_set_t st;
    if (st_open_file(&st, path, err)) {
        lora_config_free(&lc);
        return -1;
    }
    char dts[256];
    dtype_summary(&st, dts, sizeof dts);
    printf("adapter            %s\n", dir);
    printf("  LoRA             r %d, lora_alpha %g, scale %g (%s)\n", lc.r, lc.alpha,
           lc.use_rslora ? lc.alpha / sqrt((double)lc.r) : lc.alpha / lc.r, lc.use_rslora ? "rslora: alpha/sqrt(r)" : "alpha/r");
    printf("  target_modules  ");
    if (lc.target_regex) printf(" regex %s", lc.target_regex);
    for (int i = 0; i < lc.n_targets; i++) printf(" %s", lc.targets[i]);
    printf("\n  modules_to_save ");
    for (int i = 0; i < lc.n_save; i++) printf(" %s", lc.save[i]);
    printf("%s\n", lc.n_save ? "" : " none");
    if (lc.n_rank_pattern || lc.n_alpha_pattern)
        printf("  patterns         %d rank_pattern, %d alpha_pattern entries\n", lc.n_rank_pattern, lc.n_alpha_pattern);
    printf("  tensors          %d (%lld parameters; %s), merged into the base weights at load\n", st.n_tensors,
           (long long)param_count(&st), dts);
    st_close(&st);
    lora_config_free(&lc);
    return 0;
}

int model_info_print(const char *model_dir, const char *adapter_dir, int max_length, int batch_tokens, err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    model_config_t c;
    st_set_t st = {0};
    json_t *raw = NULL;
    int rc = -1;
    if (model_config_load(&c, path, err)) goto fail;
    if (st_open_dir(&st, model_dir, err)) {
        model_config_free(&c);
        goto fail;
    }
    raw = json_util_load_file(path, err);
    const json_t *archs = json_object_get(raw, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    printf("model              %s\n", model_dir);
    print_config(&c, arch ? arch : "unknown");
    char dts[256];
    dtype_summary(&st, dts, sizeof dts);
    printf("checkpoint         %d file%s, %d tensors, %lld parameters; dtypes %s\n", st.n_files,
           st.n_files == 1 ? "" : "s", st.n_tensors, (long long)param_count(&st), dts);
    double f32, half, i8;
    weight_bytes(&c, &f32, &half, &i8);
    printf("weights memory     fp32 %.1f MiB, bf16/fp16 %.1f MiB, int8 %.1f MiB (norms stay fp32; int8 adds a "
           "fp32 scale per row)\n", mib(f32), mib(half), mib(i8));
    int T = batch_tokens > max_length ? batch_tokens : max_length;
    printf("activations        %d tokens per batch (sequences up to %d): fp32 %.1f MiB, bf16/fp16 %.1f MiB\n", T,
           max_length, mib((double)model_activation_bytes(&c, T, 4)), mib((double)model_activation_bytes(&c, T, 2)));
    rc = 0;
    if (adapter_dir && print_adapter(adapter_dir, err)) rc = -1;
    json_decref(raw);
    st_close(&st);
    model_config_free(&c);
    if (rc == 0) return 0;
fail:
    err->code = EXIT_DATAERR;
    return -1;
}

int model_files_check(const char *model_dir, const char *adapter_dir, model_files_t *out, int *adapter_at_fault,
                      err_t *err) {
    *out = (model_files_t){0};
    *adapter_at_fault = 0;
    st_set_t st = {0};
    if (st_open_dir(&st, model_dir, err) < 0) return -1;
    out->n_tensors = st.n_tensors;
    st_close(&st);
    if (!adapter_dir) return 0;
    *adapter_at_fault = 1;
    char path[4096];
    lora_config_t lora = {0};
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter_dir);
    if (lora_config_load(&lora, path, err) < 0) {
        lora_config_free(&lora);
        return -1;
    }
    out->adapter_r = lora.r;
    out->adapter_alpha = lora.alpha;
    lora_config_free(&lora);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter_dir);
    if (st_open_file(&st, path, err) < 0) return -1;
    out->adapter_tensors = st.n_tensors;
    st_close(&st);
    *adapter_at_fault = 0;
    return 0;
}
