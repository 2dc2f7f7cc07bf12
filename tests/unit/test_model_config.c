/* test_model_config.c: config.json parsing for Llama and Gemma-2, both config forms, defaults,
 * rejections, and the rope frequencies derived from it.
 *
 * The two fixture configs of each model (hub 2024 form and transformers-5 form) must give the
 * same model_config_t; every Gemma-2 / Llama difference must land in the right field; every
 * unsupported or malformed config must fail with a message naming the file and the field.
 */
#include <jansson.h>

#include "model_impl.h"
#include "tinytest.h"

#define FMT(buf, ...) EXPECT(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static int load_fixture(model_config_t *c, const char *model, const char *file) {
    char path[512];
    FMT(path, "%s/models/%s/%s", tt_dir("ORCH_FIXTURES"), model, file);
    err_t err = {0};
    int rc = model_config_load(c, path, &err);
    EXPECT_MSG(rc == 0, "%s", err.msg);
    return rc;
}

static void expect_same(const model_config_t *a, const model_config_t *b) {
    EXPECT(strcmp(a->model_type, b->model_type) == 0);
    EXPECT(a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers);
    EXPECT(a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim);
    EXPECT(a->vocab_size == b->vocab_size && a->n_labels == b->n_labels && a->pad_token_id == b->pad_token_id);
    for (int i = 0; i < a->n_labels && i < b->n_labels; i++) EXPECT(strcmp(a->labels[i], b->labels[i]) == 0);
    EXPECT(a->norm_eps == b->norm_eps && a->norm_offset == b->norm_offset && a->embed_scale == b->embed_scale);
    EXPECT(a->query_scale == b->query_scale && a->attn_softcap == b->attn_softcap && a->post_norms == b->post_norms);
    EXPECT(memcmp(a->window, b->window, sizeof a->window) == 0 && a->act == b->act);
    EXPECT(a->rope_theta == b->rope_theta && strcmp(a->rope_type, b->rope_type) == 0);
    EXPECT(a->rope_factor == b->rope_factor && a->rope_low_freq_factor == b->rope_low_freq_factor);
    EXPECT(a->rope_high_freq_factor == b->rope_high_freq_factor && a->rope_original_max_pos == b->rope_original_max_pos);
    EXPECT(strcmp(a->torch_dtype, b->torch_dtype) == 0);
}

TEST(both_forms_agree) {
    const char *models[] = {"tiny-llama", "tiny-gemma2"};
    for (int i = 0; i < 2; i++) {
        model_config_t a, b;
        if (load_fixture(&a, models[i], "config.json")) continue;
        if (load_fixture(&b, models[i], "config.transformers5.json") == 0) {
            expect_same(&a, &b);
            model_config_free(&b);
        }
        model_config_free(&a);
    }
}

TEST(llama_fields) {
    model_config_t c;
    if (load_fixture(&c, "tiny-llama", "config.json")) return;
    EXPECT(strcmp(c.model_type, "llama") == 0 && c.dim == 128 && c.hidden_dim == 344 && c.n_layers == 3);
    EXPECT(c.n_heads == 4 && c.n_kv_heads == 2 && c.head_dim == 32 && c.vocab_size == 1024);
    EXPECT(c.n_labels == 3 && strcmp(c.labels[0], "winner_model_a") == 0 && strcmp(c.labels[2], "winner_tie") == 0);
    EXPECT(c.pad_token_id == 0 && c.norm_eps == 1e-5f && c.norm_offset == 0 && c.embed_scale == 1);
    EXPECT(c.query_scale == (float)(1 / sqrt(32.0)) && c.attn_softcap == 0 && !c.post_norms && c.act == ACT_SILU);
    for (int l = 0; l < c.n_layers; l++) EXPECT(c.window[l] == 0);
    EXPECT(strcmp(c.rope_type, "llama3") == 0 && c.rope_theta == 500000.0f && c.rope_factor == 8);
    EXPECT(c.rope_low_freq_factor == 1 && c.rope_high_freq_factor == 4 && c.rope_original_max_pos == 8192);
    EXPECT(strcmp(c.torch_dtype, "bfloat16") == 0);
    model_config_free(&c);
}

TEST(gemma2_fields) {
    model_config_t c;
    if (load_fixture(&c, "tiny-gemma2", "config.json")) return;
    EXPECT(strcmp(c.model_type, "gemma2") == 0 && c.head_dim == 48 && c.n_layers == 4);
    EXPECT(c.norm_offset == 1 && c.embed_scale == (float)sqrt(128.0) && c.post_norms && c.act == ACT_GELU_TANH);
    EXPECT(c.query_scale == (float)pow(40.0, -0.5) && c.attn_softcap == 50);
    EXPECT(c.window[0] == 16 && c.window[1] == 0 && c.window[2] == 16 && c.window[3] == 0);
    EXPECT(strcmp(c.rope_type, "default") == 0 && c.rope_theta == 10000.0f);
    model_config_free(&c);
}

/* Parse a config text; returns 0 or -1 with err. */
static int parse(model_config_t *c, const char *text, err_t *err) {
    memset(err, 0, sizeof *err);
    int rc = model_config_parse(c, text, strlen(text), "cfg.json", err);
    if (rc == 0) model_config_free(c);
    return rc;
}

#define LLAMA_BASE "\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2," \
                   "\"num_attention_heads\":4,\"vocab_size\":100"
#define GEMMA_BASE "\"model_type\":\"gemma2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":3," \
                   "\"num_attention_heads\":4,\"vocab_size\":100"

static void expect_reject(const char *text, const char *needle) {
    model_config_t c;
    err_t err;
    EXPECT_MSG(parse(&c, text, &err) == -1, "accepted: %s", text);
    EXPECT_STR_CONTAINS(err.msg, "cfg.json");
    EXPECT_STR_CONTAINS(err.msg, needle);
}

TEST(rejections) {
    expect_reject("{\"model_type\":\"mistral\"}", "model_type \"mistral\" is not supported");
    expect_reject("{\"hidden_size\":3}", "'model_type' is missing");
    expect_reject("{\"model_type\":\"llama\",\"hidden_size\":64}", "'intermediate_size' is missing");
    expect_reject("{" LLAMA_BASE ",\"num_key_value_heads\":3}", "not a multiple");
    expect_reject("{" LLAMA_BASE ",\"num_key_value_heads\":\"2\"}", "'num_key_value_heads' must be an integer");
    expect_reject("{" LLAMA_BASE ",\"num_key_value_heads\":0}", "out of range");
    expect_reject("{" LLAMA_BASE ",\"attention_bias\":true}", "attention_bias");
    expect_reject("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", "\"yarn\" is not supported");
    expect_reject("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", "low_freq_factor");
    expect_reject("{" LLAMA_BASE ",\"partial_rotary_factor\":0.5}", "partial_rotary_factor");
    expect_reject("{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}", "hidden_act");
    expect_reject("{" LLAMA_BASE ",\"id2label\":{\"0\":\"a\",\"2\":\"b\"}}", "id2label key \"2\"");
    expect_reject("{" LLAMA_BASE ",\"id2label\":{\"x\":\"a\"}}", "id2label key \"x\"");
    expect_reject("{" LLAMA_BASE ",\"head_dim\":33}", "even");
    /* head_dim defaults to hidden_size / heads, which can be too wide for rope */
    expect_reject("{\"model_type\":\"llama\",\"hidden_size\":6464,\"intermediate_size\":18,\"num_hidden_layers\":2,"
                  "\"num_attention_heads\":4,\"vocab_size\":100}", "head_dim 1616");
    expect_reject("{" GEMMA_BASE ",\"hidden_activation\":\"gelu\"}", "hidden_activation");
    expect_reject("{" GEMMA_BASE ",\"layer_types\":[\"full_attention\"]}", "layer_types");
    expect_reject("{" GEMMA_BASE ",\"layer_types\":[\"full_attention\",\"x\",\"full_attention\"]}", "layer_types[1]");
    expect_reject("{" GEMMA_BASE ",\"rope_parameters\":{\"full_attention\":{\"rope_theta\":1e4}}}", "per-layer-type");
    expect_reject("{" LLAMA_BASE ",", "invalid JSON");
    expect_reject("[1]", "not a JSON object");
}

TEST(defaults) {
    model_config_t c;
    err_t err = {0};
    const char *t = "{" LLAMA_BASE ",\"num_labels\":3}";
    EXPECT_MSG(model_config_parse(&c, t, strlen(t), "cfg.json", &err) == 0, "%s", err.msg);
    EXPECT(c.pad_token_id == -1 && c.n_kv_heads == 4 && c.head_dim == 16 && c.n_labels == 3);
    EXPECT(strcmp(c.labels[2], "LABEL_2") == 0 && c.rope_theta == 10000.0f && strcmp(c.rope_type, "default") == 0);
    model_config_free(&c);
    /* labels sorted by id, whatever the key order */
    t = "{" LLAMA_BASE ",\"id2label\":{\"2\":\"c\",\"0\":\"a\",\"1\":\"b\"},\"pad_token_id\":null}";
    EXPECT_MSG(model_config_parse(&c, t, strlen(t), "cfg.json", &err) == 0, "%s", err.msg);
    EXPECT(c.n_labels == 3 && strcmp(c.labels[0], "a") == 0 && strcmp(c.labels[1], "b") == 0 && c.pad_token_id == -1);
    model_config_free(&c);
    /* Gemma-2 without layer_types alternates from layer 0; transformers' defaults apply */
    t = "{" GEMMA_BASE "}";
    EXPECT_MSG(model_config_parse(&c, t, strlen(t), "cfg.json", &err) == 0, "%s", err.msg);
    EXPECT(c.window[0] == 4096 && c.window[1] == 0 && c.window[2] == 4096 && c.head_dim == 256);
    EXPECT(c.attn_softcap == 50 && c.query_scale == (float)pow(256.0, -0.5));
    model_config_free(&c);
    /* null sliding window and softcap switch them off; layer_types wins over the pattern */
    t = "{" GEMMA_BASE ",\"sliding_window\":8,\"attn_logit_softcapping\":null,"
        "\"layer_types\":[\"full_attention\",\"sliding_attention\",\"sliding_attention\"]}";
    EXPECT_MSG(model_config_parse(&c, t, strlen(t), "cfg.json", &err) == 0, "%s", err.msg);
    EXPECT(c.window[0] == 0 && c.window[1] == 8 && c.window[2] == 8 && c.attn_softcap == 0);
    model_config_free(&c);
    t = "{" GEMMA_BASE ",\"sliding_window\":null}";
    EXPECT_MSG(model_config_parse(&c, t, strlen(t), "cfg.json", &err) == 0, "%s", err.msg);
    EXPECT(c.window[0] == 0 && c.window[2] == 0);
    model_config_free(&c);
}

/* inv_freq against the formulas evaluated in double: equal to within a few fp32 ulps. */
TEST(rope_frequencies) {
    model_config_t c;
    if (load_fixture(&c, "tiny-llama", "config.json")) return;
    float f[MODEL_MAX_HEAD_DIM / 2];
    rope_inv_freq(&c, f);
    int half = c.head_dim / 2;
    for (int i = 0; i < half; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / c.head_dim), wl = 2 * M_PI / base, want;
        if (wl < 8192.0 / 4) want = base;
        else if (wl > 8192.0 / 1) want = base / 8;
        else {
            double s = (8192.0 / wl - 1) / (4 - 1);
            want = (1 - s) * base / 8 + s * base;
        }
        EXPECT_NEAR(f[i], want, 0, 1e-6);
    }
    EXPECT(f[0] == 1.0f);
    model_config_free(&c);
    if (load_fixture(&c, "tiny-gemma2", "config.transformers5.json")) return;
    rope_inv_freq(&c, f);
    for (int i = 0; i < c.head_dim / 2; i++) EXPECT_NEAR(f[i], 1.0 / pow(10000.0, 2.0 * i / c.head_dim), 0, 1e-6);
    model_config_free(&c);
}

/* A backend's head_dim limit is a capability checked at load, not a parse rule: the same config
 * (tiny-llama, head_dim 32) loads on a backend that takes 32 and is refused by one that takes 16. */
TEST(backend_head_dim_checked_at_load) {
    char dir[512];
    FMT(dir, "%s/models/tiny-llama", tt_dir("ORCH_FIXTURES"));
    for (int limit = 16; limit <= 32; limit += 16) {
        err_t err = {0};
        backend_t *be = backend_cpu_create(1, &err);
        EXPECT_MSG(be != NULL, "%s", err.msg);
        if (!be) return;
        backend_ops_t ops = *be->ops; // the CPU's table with a smaller capability
        const backend_ops_t *own = be->ops;
        ops.max_head_dim = limit;
        be->ops = &ops;
        model_load_opts_t o = {.model_dir = dir, .backend = be};
        model_t *m = model_load(&o, &err);
        if (limit < 32) {
            EXPECT(m == NULL && err.code == 65);
            EXPECT_STR_CONTAINS(err.msg, "head_dim 32: the cpu backend takes at most 16");
        } else {
            EXPECT_MSG(m != NULL, "%s", err.msg);
        }
        model_free(m);
        be->ops = own;
        be->ops->destroy(be);
    }
}

TEST_MAIN(backend_head_dim_checked_at_load, both_forms_agree, llama_fields, gemma2_fields, rejections, defaults, rope_frequencies)
