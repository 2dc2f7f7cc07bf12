/* test_tokenizer.c: the native tokenizer against Hugging Face `tokenizers` goldens, plus edge
 * cases the goldens cannot express.
 *
 * Goldens (ids from HF encode(text, add_special_tokens=False/True)):
 *   - the real Llama-3 and Gemma tokenizers (tests/fixtures/tokenizers/golden-*.jsonl, 82 texts);
 *   - the tiny models' tokenizers (golden-tiny-*.jsonl, made by tools/make_tiny_tokenizers.py);
 *   - small tokenizers covering every other supported normalizer, pre-tokenizer,
 *     post-processor, added-token flag, truncation and padding (golden-variants.jsonl).
 * Every line must match exactly; a failure names the file, the line and the first differing
 * position. Edge cases: invalid UTF-8 (maximal-subpart U+FFFD), appending to a non-empty
 * ids_t, concurrent encoding from several threads, rejection of unsupported configurations
 * with the field named, and errors that leave the output untouched.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "atomic_file.h"
#include "json_util.h"
#include "tinytest.h"
#include "tokenizer.h"

static char g_path[4096];

/* Path of a fixture: $ORCH_FIXTURES/rel (committed) or $ORCH_GEN_FIXTURES/rel (unpacked). */
static const char *fixture(int generated, const char *rel) {
    snprintf(g_path, sizeof g_path, "%s/%s", tt_dir(generated ? "ORCH_GEN_FIXTURES" : "ORCH_FIXTURES"), rel);
    return g_path;
}

static tokenizer_t *load_or_fail(const char *path) {
    err_t err = {0};
    tokenizer_t *tok = tokenizer_load(path, &err);
    EXPECT_MSG(tok != NULL, "%s", err.msg);
    return tok;
}

/* ---------------------------------------------------------------- goldens ----------- */

typedef struct {
    char *text;       // NUL-terminated; len bytes (may hold NULs)
    size_t len;
    ids_t ids, ids_special;
    char tok[128];    // "tokenizer" field of variant goldens, else ""
} golden_t;

static void ids_from_json(ids_t *v, json_t *a) {
    for (size_t i = 0; i < json_array_size(a); i++) ids_push(v, (int32_t)json_integer_value(json_array_get(a, i)));
}

/* Read a golden JSONL. Returns the number of lines (0 after a failed EXPECT). */
static size_t golden_read(const char *path, golden_t **out) {
    size_t len;
    err_t err = {0};
    char *buf = fs_read_all(path, FS_LIMIT_TOKENIZER, &len, &err);
    EXPECT_MSG(buf != NULL, "%s", err.msg);
    if (!buf) return 0;
    size_t n = 0, cap = 0;
    golden_t *g = NULL;
    char *p = buf;
    long lineno = 0;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        char name[4200];
        snprintf(name, sizeof name, "%s:%ld", path, lineno);
        json_t *j = json_util_load_buf(p, ll, name, &err);
        EXPECT_MSG(j != NULL, "%s", err.msg);
        if (j) {
            if (n == cap) g = xrealloc(g, (cap = cap ? cap * 2 : 64) * sizeof *g);
            golden_t *e = &g[n++];
            memset(e, 0, sizeof *e);
            json_t *t = json_object_get(j, "text");
            e->len = json_string_length(t);
            e->text = xmalloc(e->len + 1);
            memcpy(e->text, json_string_value(t), e->len + 1);
            ids_from_json(&e->ids, json_object_get(j, "ids"));
            ids_from_json(&e->ids_special, json_object_get(j, "ids_with_special"));
            const char *tn = json_string_value(json_object_get(j, "tokenizer"));
            snprintf(e->tok, sizeof e->tok, "%s", tn ? tn : "");
            json_decref(j);
        }
        p = nl ? nl + 1 : p + ll;
    }
    free(buf);
    *out = g;
    return n;
}

static void golden_free(golden_t *g, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(g[i].text);
        ids_free(&g[i].ids);
        ids_free(&g[i].ids_special);
    }
    free(g);
}

/* Compare one encoding; on a mismatch print where and return 0. */
static int ids_match(const char *what, size_t line, const ids_t *want, const ids_t *got, const char *text) {
    size_t k = 0;
    while (k < want->n && k < got->n && want->data[k] == got->data[k]) k++;
    if (k == want->n && k == got->n) return 1;
    fprintf(stderr, "  MISMATCH %s line %zu: first difference at position %zu (want %zu ids, got %zu): want %d, got %d;"
            " text starts \"%.60s\"\n", what, line, k, want->n, got->n, k < want->n ? want->data[k] : -1,
            k < got->n ? got->data[k] : -1, text);
    return 0;
}

/* Encode every golden line with and without special tokens; EXPECT all of them to match. */
static void check_golden_lines(tokenizer_t *tok, const char *what, golden_t *g, size_t n, size_t first_line) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (int sp = 0; sp < 2; sp++) {
            ids_t got = {0};
            err_t err = {0};
            int rc = tokenizer_encode(tok, g[i].text, g[i].len, sp, &got, &err);
            EXPECT_MSG(rc == 0, "%s line %zu: %s", what, first_line + i, err.msg);
            char label[300];
            snprintf(label, sizeof label, "%s%s", what, sp ? " (add_special_tokens)" : "");
            if (rc == 0 && !ids_match(label, first_line + i, sp ? &g[i].ids_special : &g[i].ids, &got, g[i].text))
                bad++;
            ids_free(&got);
        }
    }
    EXPECT_MSG(bad == 0, "%s: %zu of %zu encodings differ from HF", what, bad, 2 * n);
    EXPECT(n > 0);
}

static void check_golden(const char *tok_path, int tok_generated, const char *golden_rel) {
    tokenizer_t *tok = load_or_fail(fixture(tok_generated, tok_path));
    golden_t *g = NULL;
    size_t n = golden_read(fixture(0, golden_rel), &g);
    if (tok) check_golden_lines(tok, golden_rel, g, n, 1);
    golden_free(g, n);
    tokenizer_free(tok);
}

TEST(golden_llama3) { check_golden("tokenizers/llama3.tokenizer.json", 1, "tokenizers/golden-llama3.jsonl"); }
TEST(golden_gemma) { check_golden("tokenizers/gemma.tokenizer.json", 1, "tokenizers/golden-gemma.jsonl"); }
TEST(golden_tiny_llama) { check_golden("models/tiny-llama/tokenizer.json", 0, "tokenizers/golden-tiny-llama.jsonl"); }
TEST(golden_tiny_gemma) { check_golden("models/tiny-gemma2/tokenizer.json", 0, "tokenizers/golden-tiny-gemma.jsonl"); }

TEST(golden_variants) {
    golden_t *g = NULL;
    size_t n = golden_read(fixture(0, "tokenizers/golden-variants.jsonl"), &g), n_tok = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !strcmp(g[j].tok, g[i].tok)) j++;
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizers/variants/%s.json", g[i].tok);
        tokenizer_t *tok = load_or_fail(fixture(0, rel));
        if (tok) check_golden_lines(tok, rel, g + i, j - i, i + 1);
        tokenizer_free(tok);
        n_tok++;
        i = j;
    }
    EXPECT(n_tok >= 10);
    golden_free(g, n);
}

/* ---------------------------------------------------------------- edge cases -------- */

static ids_t enc(const tokenizer_t *tok, const char *s, size_t n, int sp) {
    ids_t v = {0};
    err_t err = {0};
    EXPECT_MSG(tokenizer_encode(tok, s, n, sp, &v, &err) == 0, "%s", err.msg);
    return v;
}

static int ids_eq(const ids_t *a, const ids_t *b) {
    return a->n == b->n && (a->n == 0 || !memcmp(a->data, b->data, a->n * sizeof *a->data));
}

/* Invalid UTF-8 must encode like its lossy decoding (one U+FFFD per maximal invalid subpart,
 * Unicode 15 table 3-8), which is what HF sees after String::from_utf8_lossy. */
TEST(invalid_utf8_is_lossy) {
    tokenizer_t *toks[2] = {load_or_fail(fixture(1, "tokenizers/llama3.tokenizer.json")),
                            load_or_fail(fixture(1, "tokenizers/gemma.tokenizer.json"))};
    static const struct { const char *bad, *good; } cases[] = {
        {"a\xff" "b", "a\xEF\xBF\xBD" "b"},                                     // never-valid byte
        {"x\xe6\x97", "x\xEF\xBF\xBD"},                                          // truncated 3-byte char
        {"\xc0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD"},                                // overlong: two subparts
        {"\xed\xa0\x80z", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz"},              // surrogate: three
        {"\xf4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, // above U+10FFFF
        {"ok \xf0\x9f\x98 then", "ok \xEF\xBF\xBD then"},                        // cut emoji
        {"\x80\x80<bos>", "\xEF\xBF\xBD\xEF\xBF\xBD<bos>"},                      // before a special
    };
    for (int t = 0; t < 2; t++) {
        if (!toks[t]) continue;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            ids_t a = enc(toks[t], cases[i].bad, strlen(cases[i].bad), 1);
            ids_t b = enc(toks[t], cases[i].good, strlen(cases[i].good), 1);
            EXPECT_MSG(ids_eq(&a, &b) && a.n > 0, "tokenizer %d case %zu", t, i);
            ids_free(&a);
            ids_free(&b);
        }
        tokenizer_free(toks[t]);
    }
}

TEST(specials_and_affixes) {
    tokenizer_t *g = load_or_fail(fixture(1, "tokenizers/gemma.tokenizer.json"));
    tokenizer_t *l = load_or_fail(fixture(1, "tokenizers/llama3.tokenizer.json"));
    if (!g || !l) return;
    EXPECT(tokenizer_token_id(g, "<bos>") == 2);
    EXPECT(tokenizer_token_id(g, "<start_of_turn>") == 106);
    EXPECT(tokenizer_token_id(g, "<end_of_turn>") == 107);
    EXPECT(tokenizer_token_id(l, "<|begin_of_text|>") == 128000);
    EXPECT(tokenizer_token_id(l, "\xC4\xA0the") >= 0);  // "Ġthe": vocab strings are byte-level
    EXPECT(tokenizer_token_id(l, "no such token here") == -1);
    EXPECT(tokenizer_vocab_size(g) == 256000);
    EXPECT(tokenizer_vocab_size(l) == 128256);
    const int32_t *pre, *suf;
    size_t np, ns;
    tokenizer_special_affixes(g, &pre, &np, &suf, &ns);
    EXPECT(np == 1 && pre[0] == 2 && ns == 0);
    tokenizer_special_affixes(l, &pre, &np, &suf, &ns);
    EXPECT(np == 0 && ns == 0);

    // Empty text: nothing, or just the post-processor's ids.
    ids_t e0 = enc(g, "", 0, 0), e1 = enc(g, "", 0, 1);
    EXPECT(e0.n == 0 && e1.n == 1 && e1.data[0] == 2);
    ids_free(&e0);
    ids_free(&e1);

    // Special tokens glued to text are found in the raw text, also without add_special.
    const char *s = "<start_of_turn>user\nhi<end_of_turn>";
    ids_t v = enc(g, s, strlen(s), 0);
    EXPECT(v.n >= 3 && v.data[0] == 106 && v.data[v.n - 1] == 107);
    ids_free(&v);
    s = "x<|eot_id|><|eot_id|>y";
    v = enc(l, s, strlen(s), 0);
    int32_t eot = tokenizer_token_id(l, "<|eot_id|>");
    EXPECT(v.n == 4 && v.data[1] == eot && v.data[2] == eot);
    ids_free(&v);

    // encode appends: what is already in the vector stays.
    ids_t a = {0};
    ids_push(&a, -7);
    err_t err = {0};
    EXPECT(tokenizer_encode(g, "hello", 5, 1, &a, &err) == 0);
    EXPECT(a.n >= 3 && a.data[0] == -7 && a.data[1] == 2);
    ids_free(&a);
    tokenizer_free(g);
    tokenizer_free(l);
}

/* Long inputs: a whole paragraph is one BPE word for Gemma. A 4 MB text must encode (the ctest
 * timeout catches an O(n^2) merge loop) and equal what short inputs imply: the unit u ends in a
 * space, so enc(u) = P+S and enc(uu) = P+M+S, and then enc(u^k) must be P + M^(k-1) + S. */
static void check_periodic(const tokenizer_t *tok, const char *unit, size_t reps) {
    size_t ul = strlen(unit);
    char *big = xmalloc(ul * reps + 1);
    for (size_t i = 0; i < reps; i++) memcpy(big + i * ul, unit, ul);
    ids_t d1 = enc(tok, big, ul, 0), d2 = enc(tok, big, 2 * ul, 0), all = enc(tok, big, ul * reps, 0);
    size_t p = 0, s = 0;
    while (p < d1.n && d1.data[p] == d2.data[p]) p++;
    while (s < d1.n - p && d1.data[d1.n - 1 - s] == d2.data[d2.n - 1 - s]) s++;
    EXPECT_MSG(p + s == d1.n && d2.n > d1.n, "unit does not split cleanly: p=%zu s=%zu n1=%zu n2=%zu", p, s, d1.n, d2.n);
    size_t m = d2.n - d1.n, want_n = d1.n + (reps - 1) * m, bad = 0;
    EXPECT_MSG(all.n == want_n, "%zu ids, expected %zu", all.n, want_n);
    for (size_t i = 0; all.n == want_n && i < want_n && bad < 5; i++) {
        int32_t want = i < p ? d1.data[i] : i >= want_n - s ? d1.data[d1.n - (want_n - i)] : d2.data[p + (i - p) % m];
        if (all.data[i] != want) {
            fprintf(stderr, "  position %zu: got %d, want %d\n", i, all.data[i], want);
            bad++;
        }
    }
    EXPECT(bad == 0);
    ids_free(&d1);
    ids_free(&d2);
    ids_free(&all);
    free(big);
}

TEST(long_inputs) {
    tokenizer_t *g = load_or_fail(fixture(1, "tokenizers/gemma.tokenizer.json"));
    tokenizer_t *l = load_or_fail(fixture(1, "tokenizers/llama3.tokenizer.json"));
    if (!g || !l) return;
    const char *unit = "The quick brown fox jumps over the lazy dog. ";
    size_t reps = ((size_t)4 << 20) / strlen(unit);
    check_periodic(g, unit, reps);
    check_periodic(l, unit, reps);
    check_periodic(g, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87 ", reps / 4);  // CJK
    // A megabyte of spaces (one pre-token, one BPE word) and of digits (\p{N}{1,3}: threes).
    size_t n = (size_t)1 << 20;
    char *run = xmalloc(n);
    memset(run, ' ', n);
    ids_t ws = enc(l, run, n, 0);
    EXPECT(ws.n > 0 && ws.n < n / 8);
    ids_free(&ws);
    memset(run, '7', n);
    ids_t dg = enc(l, run, n, 0);
    EXPECT(dg.n == (n + 2) / 3);
    ids_free(&dg);
    free(run);
    tokenizer_free(g);
    tokenizer_free(l);
}

typedef struct {
    const tokenizer_t *tok;
    golden_t *g;
    size_t n;
    int bad;
} thr_arg_t;

static void *thr_main(void *p) {
    thr_arg_t *a = p;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < a->n; i++) {
            ids_t v = {0};
            err_t err = {0};
            if (tokenizer_encode(a->tok, a->g[i].text, a->g[i].len, 1, &v, &err) != 0 ||
                !ids_eq(&v, &a->g[i].ids_special))
                a->bad++;
            ids_free(&v);
        }
    return NULL;
}

/* One const tokenizer, four threads, every golden line: same ids as HF in every thread. */
TEST(threads_share_one_tokenizer) {
    static const char *cases[][2] = {{"tokenizers/gemma.tokenizer.json", "tokenizers/golden-gemma.jsonl"},
                                     {"tokenizers/llama3.tokenizer.json", "tokenizers/golden-llama3.jsonl"}};
    for (int c = 0; c < 2; c++) {
        tokenizer_t *tok = load_or_fail(fixture(1, cases[c][0]));
        golden_t *g = NULL;
        size_t n = golden_read(fixture(0, cases[c][1]), &g);
        if (tok) {
            pthread_t th[4];
            thr_arg_t args[4];
            for (int i = 0; i < 4; i++) {
                args[i] = (thr_arg_t){tok, g, n, 0};
                EXPECT(pthread_create(&th[i], NULL, thr_main, &args[i]) == 0);
            }
            for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                EXPECT_MSG(args[i].bad == 0, "%s: thread %d: %d mismatches", cases[c][0], i, args[i].bad);
            }
        }
        golden_free(g, n);
        tokenizer_free(tok);
    }
}

/* ---------------------------------------------------------------- rejection --------- */

/* A minimal valid tokenizer.json with one top-level field set to `value` (JSON text). */
static tokenizer_t *load_patched(const char *key, const char *value, err_t *err) {
    char buf[4096];
    const char *model = "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<unk>\":3},\"merges\":[\"a b\"]}";
    if (!strcmp(key, "model")) snprintf(buf, sizeof buf, "{\"version\":\"1.0\",\"model\":%s}", value);
    else snprintf(buf, sizeof buf, "{\"version\":\"1.0\",\"model\":%s,\"%s\":%s}", model, key, value);
    return tokenizer_load_buf(buf, strlen(buf), "patched.json", err);
}

static void expect_rejected(const char *key, const char *value, const char *needle) {
    err_t err = {0};
    tokenizer_t *tok = load_patched(key, value, &err);
    EXPECT_MSG(tok == NULL, "%s %s was accepted", key, value);
    tokenizer_free(tok);
    EXPECT_STR_CONTAINS(err.msg, "patched.json");
    EXPECT_STR_CONTAINS(err.msg, needle);
}

TEST(unsupported_configs_are_rejected) {
    expect_rejected("model", "{\"type\":\"WordPiece\",\"vocab\":{}}", "model.type");
    expect_rejected("model", "{\"type\":\"Unigram\",\"vocab\":[]}", "model.type");
    expect_rejected("model", "{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}", "model.dropout");
    expect_rejected("model", "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}", "model.merges[0]");
    expect_rejected("model", "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a a\"]}", "model.merges[0]");
    expect_rejected("normalizer", "{\"type\":\"NFC\"}", "normalizer.type");
    expect_rejected("normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}]}",
                    "normalizer.normalizers[0].type");
    expect_rejected("pre_tokenizer", "{\"type\":\"UnicodeScripts\"}", "pre_tokenizer.type");
    expect_rejected("pre_tokenizer",
                    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[a-z&&[^b]]\"},\"behavior\":\"Isolated\",\"invert\":false}",
                    "pre_tokenizer.pattern");
    expect_rejected("pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}",
                    "pre_tokenizer.pattern");
    expect_rejected("pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}",
                    "pre_tokenizer.behavior");
    expect_rejected("post_processor", "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"Fancy\"}]}",
                    "post_processor.processors[0].type");
    expect_rejected("post_processor",
                    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}],"
                    "\"special_tokens\":{}}",
                    "post_processor.special_tokens");
    expect_rejected("decoder", "{\"type\":\"Mystery\"}", "decoder.type");
    expect_rejected("truncation", "{\"max_length\":-1}", "truncation.max_length");
    expect_rejected("added_tokens", "[{\"content\":7}]", "added_tokens[0].content");

    err_t err = {0};
    tokenizer_t *t = tokenizer_load_buf("{\"model\":", 9, "cut.json", &err);
    EXPECT(t == NULL);
    EXPECT_STR_CONTAINS(err.msg, "cut.json:1:");
    t = tokenizer_load("/nonexistent/tokenizer.json", &err);
    EXPECT(t == NULL);
    EXPECT_STR_CONTAINS(err.msg, "/nonexistent/tokenizer.json");
    // /dev/zero used to be read until memory ran out (8.5 GB, then abort).
    t = tokenizer_load("/dev/zero", &err);
    EXPECT(t == NULL);
    EXPECT_STR_CONTAINS(err.msg, "/dev/zero: not a regular file");
}

/* An encode error (unk_token needed but missing from the vocab) leaves `out` as it was. */
TEST(encode_error_leaves_output) {
    err_t err = {0};
    tokenizer_t *t = load_patched("model",
                                  "{\"type\":\"BPE\",\"unk_token\":\"<missing>\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                                  "\"merges\":[\"a b\"]}",
                                  &err);
    EXPECT_MSG(t != NULL, "%s", err.msg);
    if (!t) return;
    ids_t v = {0};
    EXPECT(tokenizer_encode(t, "abab", 4, 0, &v, &err) == 0);
    EXPECT(v.n == 2 && v.data[0] == 2 && v.data[1] == 2);
    EXPECT(tokenizer_encode(t, "abz", 3, 0, &v, &err) == -1);
    EXPECT(v.n == 2);
    EXPECT_STR_CONTAINS(err.msg, "unk_token");
    ids_free(&v);
    tokenizer_free(t);
}

/* tokenizer_no_truncation_padding switches off the file's truncation (max_length 12) and
 * padding (to a multiple of 4), as transformers does per call. */
TEST(no_truncation_padding) {
    tokenizer_t *t = load_or_fail(fixture(0, "tokenizers/variants/bert_pre_trunc_pad.json"));
    if (!t) return;
    const char *text = "one two three four five six seven eight nine ten eleven twelve thirteen";
    ids_t with = {0}, without = {0};
    err_t err = {0};
    EXPECT(tokenizer_encode(t, text, strlen(text), 0, &with, &err) == 0);
    EXPECT(with.n == 12);
    tokenizer_no_truncation_padding(t);
    EXPECT(tokenizer_encode(t, "one", 3, 0, &without, &err) == 0);
    EXPECT(without.n >= 1 && without.n < 4);  // no padding to a multiple of 4
    ids_free(&without);
    EXPECT(tokenizer_encode(t, text, strlen(text), 0, &without, &err) == 0);
    EXPECT(without.n > 12);
    for (size_t i = 0; i < 12 && i < without.n; i++) EXPECT(without.data[i] == with.data[i]);
    ids_free(&with), ids_free(&without);
    tokenizer_free(t);
}

TEST_MAIN(golden_llama3, golden_gemma, golden_tiny_llama, golden_tiny_gemma, golden_variants, invalid_utf8_is_lossy,
          specials_and_affixes, long_inputs, threads_share_one_tokenizer, unsupported_configs_are_rejected,
          encode_error_leaves_output, no_truncation_padding)
