/* test_safetensors.c: the safetensors reader on good files and on every kind of broken one.
 *
 * Broken files are built in a temp dir from the fixtures (truncated, offsets that lie, overlaps,
 * gaps, unknown dtypes, a missing shard, a shard that lacks a tensor the index promises, missing
 * and unexpected tensors, shapes that contradict config.json). Each must fail with a message
 * naming the file and the tensor, and never crash (this test also runs under ASan/UBSan).
 */
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "model.h"
#include "safetensors.h"
#include "tinytest.h"

#define FMT(buf, ...) EXPECT(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static char tmp[256];
static void tmp_cleanup(void) { tt_rm_tree(tmp); }

/* The test's temp dir, created on first use and removed at exit. */
static void tmp_init(void) {
    if (tmp[0]) return;
    snprintf(tmp, sizeof tmp, "/tmp/test_safetensors_XXXXXX");
    ASSERT(mkdtemp(tmp) != NULL);
    atexit(tmp_cleanup);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    EXPECT(f != NULL);
    if (!f) return;
    EXPECT(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    EXPECT(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

/* A safetensors file from a header text and data bytes. */
static void write_st(const char *path, const char *header, const void *data, size_t dlen) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    write_file(path, b, 8 + hl + dlen);
    free(b);
}

/* Parse path and return 0, or -1 with err filled. */
static int try_open(const char *path, err_t *err) {
    st_set_t st;
    memset(err, 0, sizeof *err);
    int rc = st_open_file(&st, path, err);
    if (rc == 0) st_close(&st);
    return rc;
}

/* Expect opening a file made of header + data to fail with both needles in the message. */
static void expect_bad(const char *header, const void *data, size_t dlen, const char *n1, const char *n2) {
    char path[512];
    FMT(path, "%s/bad.safetensors", tmp);
    write_st(path, header, data, dlen);
    err_t err;
    EXPECT_MSG(try_open(path, &err) == -1, "header %s was accepted", header);
    EXPECT_STR_CONTAINS(err.msg, "bad.safetensors");
    if (n1) EXPECT_STR_CONTAINS(err.msg, n1);
    if (n2) EXPECT_STR_CONTAINS(err.msg, n2);
}

TEST(good_file_and_conversions) {
    tmp_init();
    /* a: F32 [2] = {1.5, -2}; b: BF16 [2] = {1, -0.5}; c: F16 [3] = {1, 65504, 2^-24} */
    unsigned char data[4 * 2 + 2 * 2 + 2 * 3];
    float fa[2] = {1.5f, -2.0f};
    uint16_t bb[2] = {0x3f80, 0xbf00}, hc[3] = {0x3c00, 0x7bff, 0x0001};
    memcpy(data, fa, 8);
    memcpy(data + 8, bb, 4);
    memcpy(data + 12, hc, 6);
    char path[512];
    FMT(path, "%s/good.safetensors", tmp);
    write_st(path,
             "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
             "\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[12,18]}}  ",
             data, sizeof data);
    st_set_t st;
    err_t err = {0};
    EXPECT_MSG(st_open_file(&st, path, &err) == 0, "%s", err.msg);
    EXPECT(st.n_tensors == 3);
    const st_tensor_t *a = st_find(&st, "a"), *b = st_find(&st, "b"), *c = st_find(&st, "c");
    EXPECT(a && b && c && !st_find(&st, "d"));
    if (!a || !b || !c) return;
    float out[3];
    EXPECT(st_to_f32(&st, a, out, &err) == 0 && out[0] == 1.5f && out[1] == -2.0f);
    EXPECT(b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == 2);
    EXPECT(st_to_f32(&st, b, out, &err) == 0 && out[0] == 1.0f && out[1] == -0.5f);
    EXPECT(st_to_f32(&st, c, out, &err) == 0 && out[0] == 1.0f && out[1] == 65504.0f && out[2] == ldexpf(1, -24));
    st_close(&st);
    /* fp16 special values */
    EXPECT(st_f16_to_f32(0x8000) == 0.0f && signbit(st_f16_to_f32(0x8000)));
    EXPECT(st_f16_to_f32(0x03ff) == 1023.0f * ldexpf(1, -24));
    EXPECT(st_f16_to_f32(0x0400) == ldexpf(1, -14));
    EXPECT(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0xfc00) < 0);
    EXPECT(isnan(st_f16_to_f32(0x7e00)));
    EXPECT(st_f16_to_f32(0xc000) == -2.0f && st_f16_to_f32(0x3555) == 0.333251953125f);
}

TEST(corrupt_headers) {
    tmp_init();
    unsigned char data[64] = {0};
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", data, 12, "'a'", "needs 8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               data, 12, "'b'", "overlaps tensor 'a'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data, 8, "'a'", "unused bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data, 8, "4 bytes after", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", data, 8, "'a'", "outside");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 8, "'a'", "larger than");
    expect_bad("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4, "'a'", "unknown dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data, 4, "'a'", "shape[0]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", data, 4, "'a'", "shape[0]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", data, 4, "'a'", "outside");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", data, 4, "'a'", "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", data,
               4, "'a'", "larger than");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{}}", data, 4, "invalid JSON",
               NULL);
    expect_bad("[1,2]", data, 0, "not start with '{'", NULL);
    expect_bad("{\"__metadata__\":{\"x\":1}}", data, 0, "__metadata__", NULL);
    /* header size field larger than the file, and over the limit */
    char path[512];
    FMT(path, "%s/bad.safetensors", tmp);
    unsigned char hdr[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_file(path, hdr, 10);
    err_t err;
    EXPECT(try_open(path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "exceeds the file size");
    unsigned char huge[10] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
    write_file(path, huge, 10);
    EXPECT(try_open(path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "limit");
    write_file(path, hdr, 3);
    EXPECT(try_open(path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "shorter than");
}

TEST(truncated_fixture) {
    tmp_init();
    char src[512], path[512];
    FMT(src, "%s/models/tiny-gemma2/model.safetensors", tt_dir("ORCH_FIXTURES"));
    size_t len;
    unsigned char *b = read_file(src, &len);
    EXPECT(b != NULL);
    if (!b) return;
    FMT(path, "%s/trunc.safetensors", tmp);
    write_file(path, b, len / 2);
    err_t err;
    EXPECT(try_open(path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "trunc.safetensors: tensor 'model.");
    EXPECT_STR_CONTAINS(err.msg, "outside the data area");
    write_file(path, b, 100); // cut inside the header
    EXPECT(try_open(path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "exceeds the file size");
    free(b);
}

/* Copy a fixture model dir into tmp/name as symlinks, leaving out `skip`. */
static void link_dir(const char *model, const char *name, const char *skip, char *out, size_t outlen) {
    char src[512], from[1024], to[1024];
    FMT(src, "%s/models/%s", tt_dir("ORCH_FIXTURES"), model);
    EXPECT(snprintf(out, outlen, "%s/%s", tmp, name) < (int)outlen);
    mkdir(out, 0777);
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || (skip && strcmp(e->d_name, skip) == 0)) continue;
        FMT(from, "%s/%s", src, e->d_name);
        FMT(to, "%s/%s", out, e->d_name);
        EXPECT(symlink(from, to) == 0);
    }
    if (d) closedir(d);
}

/* Load a model dir on the CPU; returns 0, or -1 with err. */
static int try_load(const char *dir, const char *adapter, err_t *err) {
    memset(err, 0, sizeof *err);
    backend_t *be = backend_cpu_create(1, err);
    model_load_opts_t o = {.model_dir = dir, .adapter_dir = adapter, .backend = be};
    model_t *m = model_load(&o, err);
    model_free(m);
    be->ops->destroy(be);
    return m ? 0 : -1;
}

TEST(sharded_checkpoints) {
    tmp_init();
    char dir[512], path[1024];
    err_t err;
    link_dir("tiny-llama", "missing_shard", "model-00003-of-00007.safetensors", dir, sizeof dir);
    EXPECT(try_load(dir, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "model-00003-of-00007.safetensors: missing shard");
    EXPECT(err.code == 65);
    /* an index that puts a tensor in the wrong shard */
    link_dir("tiny-llama", "wrong_shard", "model.safetensors.index.json", dir, sizeof dir);
    char src[512];
    FMT(src, "%s/models/tiny-llama/model.safetensors.index.json", tt_dir("ORCH_FIXTURES"));
    json_t *idx = json_load_file(src, 0, NULL);
    json_object_set_new(json_object_get(idx, "weight_map"), "model.norm.weight",
                        json_string("model-00001-of-00007.safetensors"));
    FMT(path, "%s/model.safetensors.index.json", dir);
    json_dump_file(idx, path, 0);
    json_decref(idx);
    EXPECT(try_load(dir, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "model-00001-of-00007.safetensors: tensor 'model.norm.weight' is listed in");
    /* no checkpoint at all */
    FMT(path, "%s/empty", tmp);
    mkdir(path, 0777);
    st_set_t st;
    EXPECT(st_open_dir(&st, path, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "no model.safetensors");
}

/* Rewrite tiny-gemma2's model.safetensors into dir with its header edited by fn. */
typedef void (*edit_fn_t)(json_t *hdr, size_t *data_len);
static void rewrite_gemma(const char *dir, edit_fn_t fn) {
    char src[512], path[1024];
    FMT(src, "%s/models/tiny-gemma2/model.safetensors", tt_dir("ORCH_FIXTURES"));
    size_t len;
    unsigned char *b = read_file(src, &len);
    EXPECT(b != NULL);
    if (!b) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    json_t *hdr = json_loadb((const char *)b + 8, hl, 0, NULL);
    size_t dlen = len - 8 - hl;
    fn(hdr, &dlen);
    char *text = json_dumps(hdr, JSON_COMPACT);
    unsigned char *data = calloc(dlen + 1, 1);
    memcpy(data, b + 8 + hl, dlen < len - 8 - hl ? dlen : len - 8 - hl);
    FMT(path, "%s/model.safetensors", dir);
    unlink(path);
    write_st(path, text, data, dlen);
    free(text);
    free(data);
    json_decref(hdr);
    free(b);
}

static void drop_score(json_t *h, size_t *dlen) { // score.weight is last in the data area
    *dlen -= 3 * 128 * 4;
    json_object_del(h, "score.weight");
}
static void rename_norm(json_t *h, size_t *dlen) {
    (void)dlen;
    json_object_set(h, "model.layers.1.bogus_norm.weight", json_object_get(h, "model.layers.1.input_layernorm.weight"));
    json_object_del(h, "model.layers.1.input_layernorm.weight");
}
static void add_lm_head(json_t *h, size_t *dlen) { // an ignorable extra tensor appended at the end
    json_t *t = json_pack("{s:s, s:[i,i], s:[I,I]}", "dtype", "F32", "shape", 1, 4, "data_offsets", (json_int_t)*dlen,
                          (json_int_t)(*dlen + 16));
    json_object_set_new(h, "lm_head.weight", t);
    *dlen += 16;
}

TEST(missing_unexpected_and_misshaped_tensors) {
    tmp_init();
    char dir[512], path[1024];
    err_t err;
    link_dir("tiny-gemma2", "no_score", "model.safetensors", dir, sizeof dir);
    rewrite_gemma(dir, drop_score);
    EXPECT(try_load(dir, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "no_score/model.safetensors: missing tensor 'score.weight'");
    link_dir("tiny-gemma2", "renamed", "model.safetensors", dir, sizeof dir);
    rewrite_gemma(dir, rename_norm);
    EXPECT(try_load(dir, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "unexpected tensor");
    EXPECT_STR_CONTAINS(err.msg, "'model.layers.1.bogus_norm.weight'");
    link_dir("tiny-gemma2", "lm_head", "model.safetensors", dir, sizeof dir);
    rewrite_gemma(dir, add_lm_head);
    EXPECT_MSG(try_load(dir, NULL, &err) == 0, "lm_head.weight should be ignored: %s", err.msg);
    /* config.json that disagrees with the tensors */
    link_dir("tiny-gemma2", "misshaped", "config.json", dir, sizeof dir);
    char src[512];
    FMT(src, "%s/models/tiny-gemma2/config.json", tt_dir("ORCH_FIXTURES"));
    json_t *cfg = json_load_file(src, 0, NULL);
    json_object_set_new(cfg, "intermediate_size", json_integer(300));
    FMT(path, "%s/config.json", dir);
    json_dump_file(cfg, path, 0);
    json_decref(cfg);
    EXPECT(try_load(dir, NULL, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight': shape [384, 128], "
                                 "expected [300, 128]");
}

TEST_MAIN(good_file_and_conversions, corrupt_headers, truncated_fixture, sharded_checkpoints,
          missing_unexpected_and_misshaped_tensors)
