/* config.c: config.json -> model_config_t, for Llama and Gemma-2 sequence classifiers.
 *
 * Both config forms are accepted: the 2024 hub form (rope_theta + rope_scaling, torch_dtype) that
 * real Kaggle checkpoints carry, and the transformers-5 form (rope_parameters, dtype,
 * layer_types). Absent fields take transformers' defaults for the model type, so a config means
 * what it means to transformers. Every architecture difference is resolved here into plain
 * numbers (norm offset, scales, softcap, per-layer window, activation) so that forward.c never
 * looks at model_type.
 *
 * It deliberately rejects what it cannot run exactly (other model types, biases, rope types
 * other than default and llama3, partial rotary, exact-erf gelu) instead of approximating.
 */
#include <jansson.h>
#include <math.h>

#include "atomic_file.h"
#include "json_util.h"
#include "model_impl.h"

#define CFG_MAX_SIZE (1 << 20) // bound on widths and counts; far above any real model

/* An integer field: absent or null gives def when def_ok, else an error. */
static int cfg_int(const json_t *root, const char *path, const char *key, int def_ok, long long def, long long lo,
                   long long hi, int *out, err_t *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (!def_ok) return err_fmt(err, "%s: field '%s' is missing", path, key);
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v)) return err_fmt(err, "%s: field '%s' must be an integer", path, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return err_fmt(err, "%s: field '%s' = %lld is out of range [%lld, %lld]", path, key, x, lo, hi);
    *out = (int)x;
    return 0;
}

/* A number field; *is_null tells a JSON null from a value (when is_null is non-NULL). */
static int cfg_num(const json_t *root, const char *path, const char *key, double def, double *out, int *is_null,
                   err_t *err) {
    const json_t *v = json_object_get(root, key);
    *out = def;
    if (is_null) *is_null = v && json_is_null(v);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return err_fmt(err, "%s: field '%s' must be a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return err_fmt(err, "%s: field '%s' is not finite", path, key);
    return 0;
}

/* Boolean member key of root, or def when absent or not a boolean. */
static int cfg_bool(const json_t *root, const char *key, int def) {
    const json_t *v = json_object_get(root, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* String member key of root (borrowed), or NULL when absent or not a string. */
static const char *cfg_str(const json_t *root, const char *key) {
    const json_t *v = json_object_get(root, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Labels from id2label sorted by id (ids must be exactly 0..n-1), else num_labels generic
 * names, else transformers' default of two labels. */
static int cfg_labels(model_config_t *cfg, const json_t *root, const char *path, err_t *err) {
    const json_t *m = json_object_get(root, "id2label");
    if (m && !json_is_null(m)) {
        if (!json_is_object(m)) return err_fmt(err, "%s: field 'id2label' must be an object", path);
        size_t n = json_object_size(m);
        if (n == 0 || n > MODEL_MAX_LABELS)
            return err_fmt(err, "%s: field 'id2label' has %zu labels (1 to %d supported)", path, n, MODEL_MAX_LABELS);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)m, k, v) {
            char *end;
            long id = strtol(k, &end, 10);
            if (!*k || *end || id < 0 || id >= (long)n)
                return err_fmt(err, "%s: id2label key \"%s\" is not an id in 0..%zu", path, k, n - 1);
            if (!json_is_string(v)) return err_fmt(err, "%s: id2label[\"%s\"] must be a string", path, k);
            if (cfg->labels[id]) return err_fmt(err, "%s: id2label has id %ld twice", path, id);
            cfg->labels[id] = xstrdup(json_string_value(v));
        }
        cfg->n_labels = (int)n;
        return 0;
    }
    if (cfg_int(root, path, "num_labels", 1, 2, 1, MODEL_MAX_LABELS, &cfg->n_labels, err)) return -1;
    for (int i = 0; i < cfg->n_labels; i++) {
        char name[32];
        snprintf(name, sizeof name, "LABEL_%d", i);
        cfg->labels[i] = xstrdup(name);
    }
    return 0;
}

/* Rope: rope_parameters (transformers 5) or rope_theta + rope_scaling (2024 form). */
static int cfg_rope(model_config_t *cfg, const json_t *root, const char *path, err_t *err) {
    const json_t *rp = json_object_get(root, "rope_parameters");
    const char *field = "rope_parameters";
    if (!rp || json_is_null(rp)) {
        rp = json_object_get(root, "rope_scaling");
        field = "rope_scaling";
    }
    if (rp && !json_is_null(rp) && !json_is_object(rp)) return err_fmt(err, "%s: field '%s' must be an object", path, field);
    if (rp && json_is_null(rp)) rp = NULL;
    if (rp && json_object_get(rp, "full_attention"))
        return err_fmt(err, "%s: field '%s': per-layer-type rope parameters are not supported", path, field);
    double theta;
    if (cfg_num(root, path, "rope_theta", 10000.0, &theta, NULL, err)) return -1;
    if (rp && cfg_num(rp, path, "rope_theta", theta, &theta, NULL, err)) return -1;
    if (!(theta > 1.0)) return err_fmt(err, "%s: rope_theta = %g must be > 1", path, theta);
    cfg->rope_theta = (float)theta;
    double prf;
    if (cfg_num(root, path, "partial_rotary_factor", 1.0, &prf, NULL, err)) return -1;
    if (rp && cfg_num(rp, path, "partial_rotary_factor", prf, &prf, NULL, err)) return -1;
    if (prf != 1.0) return err_fmt(err, "%s: partial_rotary_factor %g is not supported (1 only)", path, prf);
    const char *type = rp ? cfg_str(rp, "rope_type") : NULL;
    if (rp && !type) type = cfg_str(rp, "type"); // older hub configs
    if (!type) type = "default";
    if (strcmp(type, "default") == 0) {
        snprintf(cfg->rope_type, sizeof cfg->rope_type, "default");
        return 0;
    }
    if (strcmp(type, "llama3") != 0)
        return err_fmt(err, "%s: %s.rope_type \"%s\" is not supported (default, llama3)", path, field, type);
    snprintf(cfg->rope_type, sizeof cfg->rope_type, "llama3");
    double f, lo, hi;
    int omax;
    if (!json_object_get(rp, "factor") || !json_object_get(rp, "low_freq_factor") ||
        !json_object_get(rp, "high_freq_factor"))
        return err_fmt(err, "%s: %s: llama3 rope needs factor, low_freq_factor and high_freq_factor", path, field);
    if (cfg_num(rp, path, "factor", 0, &f, NULL, err) || cfg_num(rp, path, "low_freq_factor", 0, &lo, NULL, err) ||
        cfg_num(rp, path, "high_freq_factor", 0, &hi, NULL, err) ||
        cfg_int(rp, path, "original_max_position_embeddings", 0, 0, 1, 1 << 30, &omax, err))
        return -1;
    if (!(f > 0) || !(lo > 0) || !(hi > lo))
        return err_fmt(err, "%s: %s: llama3 rope needs factor > 0 and high_freq_factor > low_freq_factor > 0", path,
                       field);
    cfg->rope_factor = (float)f;
    cfg->rope_low_freq_factor = (float)lo;
    cfg->rope_high_freq_factor = (float)hi;
    cfg->rope_original_max_pos = omax;
    return 0;
}

/* Gemma-2: per-layer windows from layer_types (transformers 5) or the alternating pattern that
 * transformers uses when layer_types is absent (layer 0 slides). */
static int cfg_gemma2_windows(model_config_t *cfg, const json_t *root, const char *path, err_t *err) {
    double sw;
    int sw_null;
    if (cfg_num(root, path, "sliding_window", 4096, &sw, &sw_null, err)) return -1;
    if (!sw_null && (sw < 1 || sw > 1e9 || sw != floor(sw)))
        return err_fmt(err, "%s: field 'sliding_window' must be a positive integer", path);
    int window = sw_null ? 0 : (int)sw;
    const json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int)json_array_size(lt) != cfg->n_layers)
            return err_fmt(err, "%s: field 'layer_types' must list %d layer types", path, cfg->n_layers);
        for (int l = 0; l < cfg->n_layers; l++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)l));
            if (s && strcmp(s, "sliding_attention") == 0) cfg->window[l] = window;
            else if (s && strcmp(s, "full_attention") == 0) cfg->window[l] = 0;
            else return err_fmt(err, "%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", path, l);
        }
        return 0;
    }
    for (int l = 0; l < cfg->n_layers; l++) cfg->window[l] = l % 2 == 0 ? window : 0;
    return 0;
}

/* Everything after model_type. Returns 0, or -1 with err set. */
static int cfg_parse(model_config_t *cfg, const json_t *root, const char *path, int gemma, err_t *err) {
    if (cfg_int(root, path, "hidden_size", 0, 0, 2, CFG_MAX_SIZE, &cfg->dim, err) ||
        cfg_int(root, path, "intermediate_size", 0, 0, 1, CFG_MAX_SIZE, &cfg->hidden_dim, err) ||
        cfg_int(root, path, "num_hidden_layers", 0, 0, 1, MODEL_MAX_LAYERS, &cfg->n_layers, err) ||
        cfg_int(root, path, "num_attention_heads", 0, 0, 1, 4096, &cfg->n_heads, err) ||
        cfg_int(root, path, "num_key_value_heads", 1, cfg->n_heads, 1, 4096, &cfg->n_kv_heads, err) ||
        cfg_int(root, path, "vocab_size", 0, 0, 1, 1 << 24, &cfg->vocab_size, err) ||
        cfg_int(root, path, "head_dim", 1, gemma ? 256 : cfg->dim / cfg->n_heads, 2, MODEL_MAX_HEAD_DIM,
                &cfg->head_dim, err) ||
        cfg_int(root, path, "pad_token_id", 1, -1, 0, 1 << 30, &cfg->pad_token_id, err))
        return -1;
    /* head_dim may come from the hidden_size / heads default, so its range is checked here. */
    if (cfg->head_dim < 2 || cfg->head_dim % 2 || cfg->head_dim > MODEL_MAX_HEAD_DIM)
        return err_fmt(err, "%s: head_dim %d must be even and in [2, %d]", path, cfg->head_dim, MODEL_MAX_HEAD_DIM);
    if (cfg->n_heads % cfg->n_kv_heads)
        return err_fmt(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                       cfg->n_heads, cfg->n_kv_heads);
    if ((long long)cfg->n_heads * cfg->head_dim > CFG_MAX_SIZE)
        return err_fmt(err, "%s: num_attention_heads x head_dim is too large", path);
    if (cfg_bool(root, "attention_bias", 0) || cfg_bool(root, "mlp_bias", 0))
        return err_fmt(err, "%s: attention_bias / mlp_bias are not supported", path);
    double eps;
    if (cfg_num(root, path, "rms_norm_eps", 1e-6, &eps, NULL, err)) return -1;
    if (!(eps >= 0)) return err_fmt(err, "%s: field 'rms_norm_eps' must be >= 0", path);
    cfg->norm_eps = (float)eps;
    if (cfg_labels(cfg, root, path, err) || cfg_rope(cfg, root, path, err)) return -1;
    const char *dt = cfg_str(root, "dtype");
    if (!dt) dt = cfg_str(root, "torch_dtype");
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt ? dt : "unknown");
    cfg->tie_word_embeddings = cfg_bool(root, "tie_word_embeddings", gemma);
    if (!gemma) {
        const char *act = cfg_str(root, "hidden_act");
        if (act && strcmp(act, "silu") != 0)
            return err_fmt(err, "%s: hidden_act \"%s\" is not supported for llama (silu)", path, act);
        cfg->act = ACT_SILU;
        cfg->norm_offset = 0.0f;
        cfg->embed_scale = 1.0f;
        cfg->query_scale = (float)pow((double)cfg->head_dim, -0.5);
        return 0;
    }
    /* Gemma-2's MLP reads hidden_activation; hidden_act is a leftover transformers ignores. */
    const char *act = cfg_str(root, "hidden_activation");
    if (!act) act = "gelu_pytorch_tanh";
    if (strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu_new") != 0)
        return err_fmt(err, "%s: hidden_activation \"%s\" is not supported (gelu_pytorch_tanh)", path, act);
    cfg->act = ACT_GELU_TANH;
    cfg->norm_offset = 1.0f;
    cfg->post_norms = 1;
    /* transformers multiplies by a tensor holding hidden_size**0.5 in the activation dtype. */
    cfg->embed_scale = (float)sqrt((double)cfg->dim);
    double qpas, softcap;
    int softcap_null;
    if (cfg_num(root, path, "query_pre_attn_scalar", 256, &qpas, NULL, err) ||
        cfg_num(root, path, "attn_logit_softcapping", 50.0, &softcap, &softcap_null, err))
        return -1;
    if (!(qpas > 0)) return err_fmt(err, "%s: field 'query_pre_attn_scalar' must be > 0", path);
    if (!softcap_null && !(softcap > 0)) return err_fmt(err, "%s: field 'attn_logit_softcapping' must be > 0", path);
    cfg->query_scale = (float)pow(qpas, -0.5);
    cfg->attn_softcap = softcap_null ? 0.0f : (float)softcap;
    return cfg_gemma2_windows(cfg, root, path, err);
}

int model_config_parse(model_config_t *cfg, const char *buf, size_t len, const char *path, err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    json_t *root = json_util_load_buf(buf, len, path, err);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        err_fmt(err, "%s: not a JSON object", path);
        goto done;
    }
    const char *mt = cfg_str(root, "model_type");
    if (!mt) {
        err_fmt(err, "%s: field 'model_type' is missing", path);
        goto done;
    }
    int gemma = strcmp(mt, "gemma2") == 0;
    if (!gemma && strcmp(mt, "llama") != 0) {
        err_fmt(err, "%s: model_type \"%s\" is not supported (llama, gemma2)", path, mt);
        goto done;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    rc = cfg_parse(cfg, root, path, gemma, err);
done:
    json_decref(root);
    if (rc) model_config_free(cfg);
    return rc;
}

int model_config_load(model_config_t *cfg, const char *path, err_t *err) {
    size_t len;
    char *buf = fs_read_all(path, FS_LIMIT_TEXT, &len, err);
    if (!buf) {
        memset(cfg, 0, sizeof *cfg);
        return -1;
    }
    int rc = model_config_parse(cfg, buf, len, path, err);
    free(buf);
    return rc;
}

void model_config_free(model_config_t *cfg) {
    for (int i = 0; i < MODEL_MAX_LABELS; i++) {
        free(cfg->labels[i]);
        cfg->labels[i] = NULL;
    }
    cfg->n_labels = 0;
}
