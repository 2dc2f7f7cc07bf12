/* test_lora.c: PEFT LoRA adapters: the merge formula, modules_to_save, PEFT's matching rules
 * (target list / regex, exclude_modules, layers_to_transform, rank_pattern, alpha_pattern,
 * rslora), and every adapter/base mismatch as a clear error.
 *
 * Broken adapters are built in a temp dir from tests/fixtures/models/tiny-llama-lora with an
 * edited adapter_config.json or a rewritten adapter_model.safetensors. The end-to-end check of a
 * merged adapter against transformers+peft is in test_model_golden.
 */
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "backend_cpu.h"
#include "model_impl.h"
#include "tinytest.h"

#define FMT(buf, ...) EXPECT(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static char tmp[256];
static int n_dirs;

static void tmp_cleanup(void) { tt_rm_tree(tmp); }

/* Read the safetensors file path whole: returns its bytes (free them; *len of them) with the
 * header's length in *hl and the parsed header in *hdr (json_decref it), or NULL. */
static unsigned char *read_st(const char *path, size_t *len, uint64_t *hl, json_t **hdr) {
    err_t err = {0};
    unsigned char *b = (unsigned char *)fs_read_all(path, (size_t)1 << 30, len, &err);
    EXPECT_MSG(b != NULL, "%s", err.msg);
    if (!b) return NULL;
    *hl = 0;
    for (int i = 7; i >= 0; i--) *hl = (*hl << 8) | b[i];
    *hdr = json_loadb((const char *)b + 8, *hl, 0, NULL);
    return b;
}

/* A fresh adapter dir: adapter_config.json edited by `edit` (a JSON object merged over the
 * fixture's), adapter_model.safetensors linked, or rewritten by `st_edit` when non-NULL. */
typedef void (*st_edit_fn_t)(json_t *hdr, size_t *dlen);
static void make_adapter(char *out, size_t outlen, const char *edit, st_edit_fn_t st_edit) {
    if (!tmp[0]) {
        snprintf(tmp, sizeof tmp, "/tmp/test_lora_XXXXXX");
        ASSERT(mkdtemp(tmp) != NULL);
        atexit(tmp_cleanup);
    }
    EXPECT(snprintf(out, outlen, "%s/a%d", tmp, n_dirs++) < (int)outlen);
    mkdir(out, 0777);
    char src[512], path[1024];
    FMT(src, "%s/models/tiny-llama-lora/adapter_config.json", tt_dir("ORCH_FIXTURES"));
    json_t *cfg = json_load_file(src, 0, NULL);
    json_t *e = edit ? json_loads(edit, 0, NULL) : NULL;
    EXPECT(cfg && (!edit || e));
    if (e) json_object_update(cfg, e);
    json_decref(e);
    FMT(path, "%s/adapter_config.json", out);
    json_dump_file(cfg, path, 0);
    json_decref(cfg);
    FMT(src, "%s/models/tiny-llama-lora/adapter_model.safetensors", tt_dir("ORCH_FIXTURES"));
    FMT(path, "%s/adapter_model.safetensors", out);
    if (!st_edit) {
        EXPECT(symlink(src, path) == 0);
        return;
    }
    size_t len;
    uint64_t hl;
    json_t *hdr;
    unsigned char *b = read_st(src, &len, &hl, &hdr);
    if (!b) return;
    FILE *f;
    size_t dlen = len - 8 - hl, old = dlen;
    st_edit(hdr, &dlen);
    char *text = json_dumps(hdr, JSON_COMPACT);
    size_t tl = strlen(text);
    unsigned char *o = calloc(8 + tl + dlen, 1);
    for (int i = 0; i < 8; i++) o[i] = (unsigned char)((uint64_t)tl >> (8 * i));
    memcpy(o + 8, text, tl);
    memcpy(o + 8 + tl, b + 8 + hl, dlen < old ? dlen : old);
    f = fopen(path, "wb");
    EXPECT(f && fwrite(o, 1, 8 + tl + dlen, f) == 8 + tl + dlen);
    if (f) fclose(f);
    free(o);
    free(text);
    json_decref(hdr);
    free(b);
}

/* Load tiny-llama (or `base`: a fixture model's name, or an absolute path) with adapter dir;
 * returns the model or NULL with err. */
static model_t *load(const char *base, const char *adapter, backend_t *be, err_t *err) {
    char dir[512];
    if (base[0] == '/') FMT(dir, "%s", base);
    else FMT(dir, "%s/models/%s", tt_dir("ORCH_FIXTURES"), base);
    memset(err, 0, sizeof *err);
    model_load_opts_t o = {.model_dir = dir, .adapter_dir = adapter, .backend = be};
    return model_load(&o, err);
}

static void expect_load_error(const char *base, const char *adapter, const char *n1, const char *n2) {
    err_t err;
    backend_t *be = backend_cpu_create(1, &err);
    model_t *m = load(base, adapter, be, &err);
    EXPECT_MSG(m == NULL, "adapter %s was accepted", adapter);
    model_free(m);
    EXPECT(err.code == 65);
    EXPECT_STR_CONTAINS(err.msg, n1);
    if (n2) EXPECT_STR_CONTAINS(err.msg, n2);
    be->ops->destroy(be);
}

TEST(merge_formula_and_modules_to_save) {
    char dir[512], path[1024];
    FMT(dir, "%s/models/tiny-llama-lora", tt_dir("ORCH_FIXTURES"));
    err_t err = {0};
    lora_t *l = lora_open(dir, &err);
    EXPECT_MSG(l != NULL, "%s", err.msg);
    if (!l) return;
    /* W = 0 + (alpha / r) * B @ A, checked against a naive product of the stored factors. */
    float *w = calloc(64 * 128, sizeof(float));
    EXPECT(lora_apply(l, "model.layers.1.self_attn.v_proj.weight", w, 64, 128, &err) == 0);
    st_set_t st;
    FMT(path, "%s/adapter_model.safetensors", dir);
    EXPECT(st_open_file(&st, path, &err) == 0);
    float a[4 * 128], b[64 * 4], score[3 * 128];
    EXPECT(st_to_f32(&st, st_find(&st, "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"), a, &err) == 0);
    EXPECT(st_to_f32(&st, st_find(&st, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"), b, &err) == 0);
    EXPECT(st_to_f32(&st, st_find(&st, "base_model.model.score.weight"), score, &err) == 0);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 128; j++) {
            double want = 0;
            for (int k = 0; k < 4; k++) want += (double)b[i * 4 + k] * a[k * 128 + j];
            EXPECT_NEAR(w[i * 128 + j], 2.0 * want, 1e-7, 1e-5);
        }
    /* score is in modules_to_save: replaced wholesale */
    float s[3 * 128] = {0};
    EXPECT(lora_apply(l, "score.weight", s, 3, 128, &err) == 0);
    EXPECT(memcmp(s, score, sizeof s) == 0);
    /* a norm is neither targeted nor saved: untouched */
    float n[128] = {1};
    EXPECT(lora_apply(l, "model.norm.weight", n, 128, 0, &err) == 0 && n[0] == 1 && n[1] == 0);
    int merged, replaced;
    lora_counts(l, &merged, &replaced);
    EXPECT(merged == 1 && replaced == 1);
    /* not every adapter tensor was used yet */
    EXPECT(lora_finish(l, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "unexpected tensor");
    st_close(&st);
    free(w);
    lora_free(l);
}

static void rename_score(json_t *h, size_t *dlen) {
    (void)dlen;
    json_object_set(h, "base_model.model.score.modules_to_save.weight", json_object_get(h, "base_model.model.score.weight"));
    json_object_del(h, "base_model.model.score.weight");
}

static void add_stray(json_t *h, size_t *dlen) {
    json_t *t = json_pack("{s:s, s:[i], s:[I,I]}", "dtype", "F32", "shape", 2, "data_offsets", (json_int_t)*dlen,
                          (json_int_t)(*dlen + 8));
    json_object_set_new(h, "base_model.model.model.layers.0.self_attn.q_norm.weight", t);
    *dlen += 8;
}

TEST(older_modules_to_save_key_gives_same_logits) {
    char dir[512], orig[512];
    make_adapter(dir, sizeof dir, NULL, rename_score);
    FMT(orig, "%s/models/tiny-llama-lora", tt_dir("ORCH_FIXTURES"));
    err_t err;
    backend_t *be = backend_cpu_create(1, &err);
    model_t *a = load("tiny-llama", orig, be, &err), *b = load("tiny-llama", dir, be, &err);
    EXPECT_MSG(a && b, "%s", err.msg);
    if (a && b) {
        int32_t ids[5] = {187, 193, 403, 262, 387};
        const int32_t *p = ids;
        int n = 5;
        float la[3], lb[3];
        EXPECT(model_forward(a, &p, &n, 1, la, &err) == 0 && model_forward(b, &p, &n, 1, lb, &err) == 0);
        EXPECT(memcmp(la, lb, sizeof la) == 0);
    }
    model_free(a);
    model_free(b);
    be->ops->destroy(be);
}

TEST(mismatches_are_clear_errors) {
    char dir[512], orig[512];
    make_adapter(dir, sizeof dir, "{\"r\": 8}", NULL);
    expect_load_error("tiny-llama", dir, "adapter_model.safetensors: tensor 'base_model.model.model.layers.0.",
                      "rank 4 does not match r = 8");
    make_adapter(dir, sizeof dir, "{\"use_dora\": true}", NULL);
    expect_load_error("tiny-llama", dir, "adapter_config.json: use_dora", NULL);
    make_adapter(dir, sizeof dir, "{\"peft_type\": \"IA3\"}", NULL);
    expect_load_error("tiny-llama", dir, "peft_type", NULL);
    make_adapter(dir, sizeof dir, "{\"target_modules\": [\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\","
                                  "\"up_proj\",\"down_proj\",\"score\"]}", NULL);
    expect_load_error("tiny-llama", dir, "module 'score' is a LoRA target", "no lora_A weight");
    make_adapter(dir, sizeof dir, "{\"target_modules\": [\"q_proj\",\"k_proj\",\"v_proj\",\"gate_proj\",\"up_proj\","
                                  "\"down_proj\"]}", NULL);
    expect_load_error("tiny-llama", dir, "module 'model.layers.0.self_attn.o_proj' has LoRA weights", "does not target");
    make_adapter(dir, sizeof dir, "{\"modules_to_save\": null}", NULL);
    expect_load_error("tiny-llama", dir, "'base_model.model.score.weight' replaces 'score.weight'", "modules_to_save");
    make_adapter(dir, sizeof dir, NULL, add_stray);
    expect_load_error("tiny-llama", dir, "unexpected tensor 'base_model.model.model.layers.0.self_attn.q_norm.weight'",
                      NULL);
    /* the llama adapter on the gemma base: shapes disagree */
    FMT(orig, "%s/models/tiny-llama-lora", tt_dir("ORCH_FIXTURES"));
    expect_load_error("tiny-gemma2", orig, "q_proj.lora_B.weight': shape [128, 4], expected [192, 4]", NULL);
    /* no adapter files at all */
    FMT(orig, "%s/no-such-adapter", tt_dir("ORCH_FIXTURES"));
    expect_load_error("tiny-llama", orig, "adapter_config.json", NULL);
}

static lora_config_t parse(const char *text) {
    lora_config_t c;
    err_t err = {0};
    EXPECT_MSG(lora_config_parse(&c, text, strlen(text), "adapter_config.json", &err) == 0, "%s", err.msg);
    return c;
}

TEST(peft_matching_rules) {
    lora_config_t c = parse("{\"r\":4,\"lora_alpha\":16,\"target_modules\":[\"q_proj\",\"mlp.up_proj\"],"
                            "\"rank_pattern\":{\"q_proj\":8,\"layers.1.mlp.up_proj\":2},\"alpha_pattern\":{\"up_proj\":4}}");
    EXPECT(lora_config_targets(&c, "model.layers.0.self_attn.q_proj"));
    EXPECT(lora_config_targets(&c, "model.layers.3.mlp.up_proj"));
    EXPECT(!lora_config_targets(&c, "model.layers.0.self_attn.k_proj"));
    EXPECT(!lora_config_targets(&c, "model.layers.0.self_attn.xq_proj"));
    int r;
    double s;
    lora_config_rank_scale(&c, "model.layers.0.self_attn.q_proj", &r, &s);
    EXPECT(r == 8 && s == 2.0);
    lora_config_rank_scale(&c, "model.layers.1.mlp.up_proj", &r, &s);
    EXPECT(r == 2 && s == 2.0);
    lora_config_rank_scale(&c, "model.layers.11.mlp.up_proj", &r, &s);
    EXPECT(r == 4 && s == 1.0);
    lora_config_free(&c);

    c = parse("{\"r\":16,\"lora_alpha\":8,\"use_rslora\":true,\"target_modules\":\".*\\\\.(q|v)_proj\","
              "\"exclude_modules\":[\"layers.2.self_attn.v_proj\"],\"layers_to_transform\":[0,2]}");
    lora_config_rank_scale(&c, "model.layers.0.self_attn.q_proj", &r, &s);
    EXPECT(r == 16 && s == 2.0);
    EXPECT(lora_config_targets(&c, "model.layers.0.self_attn.v_proj"));
    EXPECT(lora_config_targets(&c, "model.layers.2.self_attn.q_proj"));
    EXPECT(!lora_config_targets(&c, "model.layers.2.self_attn.v_proj"));  // excluded
    EXPECT(!lora_config_targets(&c, "model.layers.1.self_attn.q_proj"));  // layer not transformed
    EXPECT(!lora_config_targets(&c, "model.layers.0.self_attn.o_proj"));
    EXPECT(!lora_config_targets(&c, "model.layers.0.self_attn.q_proj.x")); // fullmatch
    lora_config_free(&c);

    c = parse("{\"r\":2,\"lora_alpha\":2,\"target_modules\":\"all-linear\"}");
    EXPECT(lora_config_targets(&c, "model.layers.5.mlp.down_proj") && !lora_config_targets(&c, "score"));
    lora_config_free(&c);

    const char *bad[] = {"{\"lora_alpha\":8,\"target_modules\":[\"q_proj\"]}", "{\"r\":0,\"lora_alpha\":8}",
                         "{\"r\":4,\"lora_alpha\":8}", "{\"r\":4,\"lora_alpha\":8,\"target_modules\":\"(\"}",
                         "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[1]}",
                         "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q\"],\"rank_pattern\":{\"q\":0}}",
                         "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q\"],\"bias\":\"all\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t err = {0};
        EXPECT_MSG(lora_config_parse(&c, bad[i], strlen(bad[i]), "adapter_config.json", &err) == -1, "accepted %s",
                   bad[i]);
        EXPECT_STR_CONTAINS(err.msg, "adapter_config.json");
    }
}

/* A copy of tiny-llama (files symlinked) in which the bf16 tensor `name` has a NaN at (row, col)
 * of its (rows, cols) data; the directory goes to out. */
static void make_base_with_nan(char *out, size_t outlen, const char *name, int row, int cols, int col) {
    char src[512], dst[1024];
    make_adapter(out, outlen, NULL, NULL);  // a fresh temp dir (its adapter files are not used)
    FMT(src, "%s/models/tiny-llama/model.safetensors.index.json", tt_dir("ORCH_FIXTURES"));
    json_t *index = json_load_file(src, 0, NULL);
    const char *file = json_string_value(json_object_get(json_object_get(index, "weight_map"), name));
    EXPECT(file != NULL);
    const char *copies[] = {"config.json", "tokenizer.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < 3; i++) {
        FMT(src, "%s/models/tiny-llama/%s", tt_dir("ORCH_FIXTURES"), copies[i]);
        FMT(dst, "%s/%s", out, copies[i]);
        EXPECT(symlink(src, dst) == 0);
    }
    for (int k = 1; k <= 7; k++) {
        char shard[64];
        FMT(shard, "model-%05d-of-00007.safetensors", k);
        FMT(src, "%s/models/tiny-llama/%s", tt_dir("ORCH_FIXTURES"), shard);
        FMT(dst, "%s/%s", out, shard);
        if (strcmp(shard, file) != 0) {
            EXPECT(symlink(src, dst) == 0);
            continue;
        }
        size_t len;
        uint64_t hl;
        json_t *hdr;
        unsigned char *b = read_st(src, &len, &hl, &hdr);
        if (!b) continue;
        json_t *t = json_object_get(hdr, name);
        EXPECT(strcmp(json_string_value(json_object_get(t, "dtype")), "BF16") == 0);
        size_t at = 8 + hl + (size_t)json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0)) +
                    2 * ((size_t)row * (size_t)cols + (size_t)col);
        b[at] = 0xc0, b[at + 1] = 0x7f;  // bf16 quiet NaN, little-endian
        FILE *f = fopen(dst, "wb");
        EXPECT(f && fwrite(b, 1, len, f) == len);
        if (f) fclose(f);
        json_decref(hdr);
        free(b);
    }
    json_decref(index);
}

/* A model file problem is found at load, named, and is bad input (65), never a forward-pass
 * surprise: a NaN in a checkpoint tensor, or a LoRA scaling that overflows fp32. */
TEST(nonfinite_weights_are_data_errors) {
    char dir[512];
    make_base_with_nan(dir, sizeof dir, "model.layers.2.mlp.down_proj.weight", 1, 344, 2);
    expect_load_error(dir, NULL, "model.layers.2.mlp.down_proj.weight", "row 1, column 2");
    make_adapter(dir, sizeof dir, "{\"lora_alpha\": 1e300}", NULL);
    expect_load_error("tiny-llama", dir, "lora_alpha", "not finite");
    make_adapter(dir, sizeof dir, "{\"alpha_pattern\": {\"q_proj\": 1e300}}", NULL);
    expect_load_error("tiny-llama", dir, "alpha_pattern", "not finite");
}

TEST_MAIN(merge_formula_and_modules_to_save, older_modules_to_save_key_gives_same_logits, mismatches_are_clear_errors,
          peft_matching_rules, nonfinite_weights_are_data_errors)
