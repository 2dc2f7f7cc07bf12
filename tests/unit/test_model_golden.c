/* test_model_golden.c: the CPU forward pass against transformers' goldens.
 *
 * For tiny-llama (bf16, 7 shards), tiny-gemma2 (fp32, sliding window, softcap, post-norms) and
 * tiny-llama + tiny-llama-lora, every logit of the 9 golden sequences (lengths 1..130) must be
 * within 1e-4 * (1 + |ref|), and for the length-17 sequence every hidden state at the last
 * position too. Each model is run with both config forms (the hub's 2024 config.json and the
 * transformers-5 config, swapped in through a temp dir of symlinks). Finally all 9 sequences
 * run as one packed varlen batch must give the same logits as run alone.
 */
#include <dirent.h>
#include <jansson.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "model.h"
#include "tinytest.h"

#define TOL 1e-4

/* snprintf that treats truncation as a test failure. */
#define FMT(buf, ...) EXPECT(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

/* A temp dir holding symlinks to src's files, with config.transformers5.json as config.json. */
static char *t5_dir(const char *src) {
    char *dir = strdup("/tmp/test_model_golden_XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    DIR *d = opendir(src);
    struct dirent *e;
    char from[1024], to[1024];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "config.json") == 0) continue;
        FMT(from, "%s/%s", src, e->d_name);
        FMT(to, "%s/%s", dir, strcmp(e->d_name, "config.transformers5.json") == 0 ? "config.json" : e->d_name);
        if (symlink(from, to) != 0) perror("symlink");
    }
    if (d) closedir(d);
    return dir;
}

static void rm_dir(char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        FMT(p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
    free(dir);
}

typedef struct {
    int n;
    int32_t *ids[16];
    int lens[16];
    float *logits[16];
    json_t *hidden[16];   // borrowed from root, or NULL
    json_t *root;
} golden_t;

static int golden_load(golden_t *g, const char *path) {
    memset(g, 0, sizeof *g);
    json_error_t je;
    g->root = json_load_file(path, 0, &je);
    if (!g->root) return -1;
    json_t *seqs = json_object_get(g->root, "sequences");
    for (size_t s = 0; s < json_array_size(seqs) && s < 16; s++) {
        json_t *q = json_array_get(seqs, s), *ids = json_object_get(q, "input_ids"), *lg = json_object_get(q, "logits");
        g->lens[g->n] = (int)json_array_size(ids);
        g->ids[g->n] = calloc(json_array_size(ids) + 1, sizeof(int32_t));
        g->logits[g->n] = calloc(json_array_size(lg) + 1, sizeof(float));
        for (size_t i = 0; i < json_array_size(ids); i++) g->ids[g->n][i] = (int32_t)json_integer_value(json_array_get(ids, i));
        for (size_t i = 0; i < json_array_size(lg); i++) g->logits[g->n][i] = (float)json_number_value(json_array_get(lg, i));
        g->hidden[g->n] = json_object_get(q, "hidden_states_last_token");
        g->n++;
    }
    return 0;
}

static void golden_free(golden_t *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->ids[i]);
        free(g->logits[i]);
    }
    json_decref(g->root);
}

/* Compare one model directory (and optional adapter) with a golden file. */
static void check_model(const char *model_dir, const char *adapter_dir, const char *golden_path) {
    golden_t g;
    EXPECT_MSG(golden_load(&g, golden_path) == 0, "cannot load %s", golden_path);
    if (!g.root) return;
    err_t err = {0};
    backend_t *be = backend_cpu_create(2, &err);
    EXPECT_MSG(be != NULL, "%s", err.msg);
    model_load_opts_t o = {.model_dir = model_dir, .adapter_dir = adapter_dir, .backend = be};
    model_t *m = model_load(&o, &err);
    EXPECT_MSG(m != NULL, "%s", err.msg);
    if (!m) {
        be->ops->destroy(be);
        golden_free(&g);
        return;
    }
    const model_config_t *c = model_get_config(m);
    int nl = c->n_labels, rows = c->n_layers + 2, hidden_checked = 0;
    float *single = calloc((size_t)g.n * nl, sizeof(float));
    float *trace = calloc((size_t)rows * c->dim, sizeof(float));
    double worst = 0;
    for (int s = 0; s < g.n; s++) {
        const int32_t *ids = g.ids[s];
        int rc = model_forward_trace(m, &ids, &g.lens[s], 1, single + (size_t)s * nl, trace, &err);
        EXPECT_MSG(rc == 0, "%s", err.msg);
        for (int l = 0; l < nl; l++) {
            double ref = g.logits[s][l], got = single[(size_t)s * nl + l];
            if (fabs(got - ref) / (1 + fabs(ref)) > worst) worst = fabs(got - ref) / (1 + fabs(ref));
            EXPECT_MSG(fabs(got - ref) <= TOL * (1 + fabs(ref)), "%s: seq len %d label %d: %.7g vs golden %.7g",
                       model_dir, g.lens[s], l, got, ref);
        }
        json_t *hs = g.hidden[s];
        if (!hs) continue;
        /* golden rows: embedding, layers 0..n-2, final norm; ours add layer n-1's raw output. */
        EXPECT((int)json_array_size(hs) == c->n_layers + 1);
        for (size_t r = 0; r < json_array_size(hs); r++) {
            int ours = (int)r < c->n_layers ? (int)r : c->n_layers + 1;
            json_t *row = json_array_get(hs, r);
            EXPECT((int)json_array_size(row) == c->dim);
            int bad = 0;
            for (int i = 0; i < c->dim && bad < 3; i++) {
                double ref = json_number_value(json_array_get(row, (size_t)i)), got = trace[(size_t)ours * c->dim + i];
                if (fabs(got - ref) > TOL * (1 + fabs(ref))) {
                    bad++;
                    EXPECT_MSG(0, "%s: hidden state %zu dim %d: %.7g vs golden %.7g", model_dir, r, i, got, ref);
                }
            }
            hidden_checked++;
        }
    }
    EXPECT(hidden_checked == (adapter_dir ? 0 : c->n_layers + 1));
    /* All sequences as one packed batch: varlen must not mix sequences. With sgemm, rounding
     * depends on the matrix shape, so compare within the golden tolerance; with the plain-C
     * matmul, whose rows are independent, the batch must be bit-identical to single runs. */
    float *batched = calloc((size_t)g.n * nl, sizeof(float));
    const int32_t *ids[16];
    for (int s = 0; s < g.n; s++) ids[s] = g.ids[s];
    EXPECT_MSG(model_forward(m, ids, g.lens, g.n, batched, &err) == 0, "%s", err.msg);
    for (int i = 0; i < g.n * nl; i++)
        EXPECT_MSG(fabs(batched[i] - single[i]) <= TOL * (1 + fabs(single[i])), "batched seq %d label %d: %.9g vs %.9g",
                   i / nl, i % nl, batched[i], single[i]);
    cpu_set_plain(be, 1);
    for (int s = 0; s < g.n; s++)
        EXPECT_MSG(model_forward(m, &ids[s], &g.lens[s], 1, single + (size_t)s * nl, &err) == 0, "%s", err.msg);
    EXPECT_MSG(model_forward(m, ids, g.lens, g.n, batched, &err) == 0, "%s", err.msg);
    for (int i = 0; i < g.n * nl; i++)
        EXPECT_MSG(batched[i] == single[i], "plain matmul: batched seq %d label %d: %.9g vs %.9g alone", i / nl, i % nl,
                   batched[i], single[i]);
    /* The plain-C path must match the goldens as well. */
    for (int i = 0; i < g.n * nl; i++)
        EXPECT_MSG(fabs(single[i] - g.logits[i / nl][i % nl]) <= TOL * (1 + fabs(g.logits[i / nl][i % nl])),
                   "plain matmul: seq %d label %d: %.7g vs golden %.7g", i / nl, i % nl, single[i],
                   g.logits[i / nl][i % nl]);
    fprintf(stderr, "  %s%s%s: %d sequences, worst relative logit error %.3g\n", model_dir, adapter_dir ? " + " : "",
            adapter_dir ? adapter_dir : "", g.n, worst);
    free(batched);
    free(single);
    free(trace);
    model_free(m);
    be->ops->destroy(be);
    golden_free(&g);
}

/* Run a fixture model with its hub config and with its transformers-5 config. */
static void check_both_forms(const char *name, const char *adapter) {
    char dir[1024], golden[1024], ad[1024];
    FMT(dir, "%s/models/%s", tt_dir("ORCH_FIXTURES"), name);
    FMT(ad, "%s/models/%s", tt_dir("ORCH_FIXTURES"), adapter ? adapter : "");
    FMT(golden, "%s/golden.json", adapter ? ad : dir);
    check_model(dir, adapter ? ad : NULL, golden);
    char *t5 = t5_dir(dir);
    EXPECT(t5 != NULL);
    if (!t5) return;
    check_model(t5, adapter ? ad : NULL, golden);
    rm_dir(t5);
}

TEST(llama_bf16_sharded) { check_both_forms("tiny-llama", NULL); }
TEST(gemma2_fp32) { check_both_forms("tiny-gemma2", NULL); }
TEST(llama_lora) { check_both_forms("tiny-llama", "tiny-llama-lora"); }

/* transformers pools the rightmost token whose id is not pad_token_id (0 here): trailing pads
 * change nothing (attention is causal), and an all-pad sequence pools position 0. */
TEST(pooling_rule) {
    char dir[1024];
    FMT(dir, "%s/models/tiny-llama", tt_dir("ORCH_FIXTURES"));
    err_t err = {0};
    backend_t *be = backend_cpu_create(2, &err);
    cpu_set_plain(be, 1);
    model_load_opts_t o = {.model_dir = dir, .backend = be};
    model_t *m = model_load(&o, &err);
    EXPECT_MSG(m != NULL, "%s", err.msg);
    if (m) {
        int32_t a[3] = {707, 320, 11}, a_pad[6] = {707, 320, 11, 0, 0, 0}, one[1] = {0}, pads[4] = {0, 0, 0, 0};
        const int32_t *ids[4] = {a, a_pad, one, pads};
        int lens[4] = {3, 6, 1, 4};
        float lg[4 * 3];
        EXPECT_MSG(model_forward(m, ids, lens, 4, lg, &err) == 0, "%s", err.msg);
        EXPECT(memcmp(lg, lg + 3, 3 * sizeof(float)) == 0);
        EXPECT(memcmp(lg + 6, lg + 9, 3 * sizeof(float)) == 0);
        /* out-of-vocabulary ids and empty sequences are input errors, not crashes */
        int32_t bad[2] = {5, 1024};
        const int32_t *pb = bad;
        int n = 2, zero = 0;
        EXPECT(model_forward(m, &pb, &n, 1, lg, &err) == -1 && err.code == 65);
        EXPECT_STR_CONTAINS(err.msg, "id 1024 is outside the vocabulary");
        EXPECT(model_forward(m, &pb, &zero, 1, lg, &err) == -1 && err.code == 65);
    }
    model_free(m);
    be->ops->destroy(be);
}

TEST_MAIN(llama_bf16_sharded, gemma2_fp32, llama_lora, pooling_rule)
