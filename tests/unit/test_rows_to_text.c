/* test_rows_to_text.c: CSV row decoding, templates and truncation (workers/lm/rows/rows.h).
 *
 * Decoding and templates are checked against exact expected strings. Encoding is checked with
 * the real Llama-3 and Gemma tokenizers from the fixtures: the encoder's output is rebuilt here
 * from independently tokenised pieces and the documented budget arithmetic, so a wrong slice,
 * a wrong end kept or a budget off by one shows up as a mismatch.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csv_io.h"
#include "exit_codes.h"
#include "rows.h"
#include "tinytest.h"
#include "tokenizer.h"

/* Decode s; expect success with the given turns (NULL-terminated, each a C string). */
static void expect_turns(const char *s, const char *const *want) {
    turns_t t;
    err_t err = {0};
    int rc = rows_decode_field(s, strlen(s), &t, &err);
    EXPECT_MSG(rc == 0, "%s: %s", s, err.msg);
    if (rc) return;
    size_t n = 0;
    while (want[n]) n++;
    EXPECT_MSG(t.n == n, "%s: %zu turns, want %zu", s, t.n, n);
    for (size_t i = 0; i < n && i < t.n; i++)
        EXPECT_MSG(t.len[i] == strlen(want[i]) && memcmp(t.text[i], want[i], t.len[i]) == 0,
                   "%s: turn %zu is \"%s\", want \"%s\"", s, i, t.text[i], want[i]);
    turns_free(&t);
}

static void expect_decode_error(const char *s, const char *needle) {
    turns_t t;
    err_t err = {0};
    int rc = rows_decode_field(s, strlen(s), &t, &err);
    EXPECT_MSG(rc < 0, "%s decoded but should not", s);
    if (rc == 0) turns_free(&t);
    else EXPECT_STR_CONTAINS(err.msg, needle);
}

TEST(decode_lists) {
    expect_turns("[\"a\",\"b c\"]", (const char *[]){"a", "b c", NULL});
    expect_turns("  [\"only\"]", (const char *[]){"only", NULL});
    expect_turns("[]", (const char *[]){NULL});
    expect_turns("[null]", (const char *[]){"null", NULL});
    expect_turns("[\"x\",null,\"\"]", (const char *[]){"x", "null", "", NULL});
    expect_turns("[\"caf\\u00e9\"]", (const char *[]){"caf\xc3\xa9", NULL});
    expect_turns("[\"\\ud83d\\ude00!\"]", (const char *[]){"\xf0\x9f\x98\x80!", NULL});
    // A lone surrogate becomes U+FFFD; an escaped backslash before "ud800" is just text.
    expect_turns("[\"a\\ud83d b\"]", (const char *[]){"a\xef\xbf\xbd b", NULL});
    expect_turns("[\"\\ude00\"]", (const char *[]){"\xef\xbf\xbd", NULL});
    expect_turns("[\"\\\\ud800\"]", (const char *[]){"\\ud800", NULL});
    expect_turns("[\"line\\nbreak \\\"q\\\"\"]", (const char *[]){"line\nbreak \"q\"", NULL});
}

TEST(decode_nul_escape) {
    const char *s = "[\"a\\u0000b\"]";
    turns_t t;
    err_t err = {0};
    EXPECT(rows_decode_field(s, strlen(s), &t, &err) == 0);
    EXPECT(t.n == 1 && t.len[0] == 3 && memcmp(t.text[0], "a\0b", 3) == 0);
    turns_free(&t);
}

TEST(decode_plain_text_and_errors) {
    expect_turns("just some text, with a comma", (const char *[]){"just some text, with a comma", NULL});
    expect_turns("", (const char *[]){"", NULL});
    expect_decode_error("42", "found a number");
    expect_decode_error("\"a string\"", "found a string");
    expect_decode_error("{\"a\": 1}", "found an object");
    expect_decode_error("null", "found null");
    expect_decode_error("[\"a\", 3]", "element 2 is a number");
    expect_decode_error("[[\"nested\"]]", "element 1 is a list");
    expect_decode_error("[\"unterminated", "invalid JSON list");
    expect_decode_error("[\"a\"] trailing", "invalid JSON list");
    expect_decode_error("[\"raw\nnewline\"]", "invalid JSON list"); // JSON needs \\n, as json.loads does
}

static const char *CSV =
    "id,model_a,prompt,response_a,response_b\n"
    "11,m,\"[\"\"hi\"\",null]\",\"[\"\"line1\\nline2\"\"]\",\"plain\ntext\"\n"
    "22,m,\"[\"\"q\"\"]\",\"[\"\"a\"\"]\",\"[\"\"b\"\"]\"\n"
    "33,m,\"[\"\"q\"\"]\",\"[\"\"broken\",\"[\"\"b\"\"]\"\n";

TEST(decode_csv_rows) {
    csv_table_t t;
    err_t err = {0};
    EXPECT_MSG(csv_table_parse(&t, CSV, strlen(CSV), "in.csv", &err) == 0, "%s", err.msg);
    row_cols_t cols;
    EXPECT(rows_find_cols(&t, "in.csv", &cols, &err) == 0);
    EXPECT(cols.id == 0 && cols.part[PART_PROMPT] == 2 && cols.part[PART_B] == 4);
    row_parts_t r;
    EXPECT_MSG(rows_decode_row(&t, &cols, 0, "in.csv", &r, &err) == 0, "%s", err.msg);
    EXPECT(r.part[PART_A].n == 1 && strcmp(r.part[PART_A].text[0], "line1\nline2") == 0);
    EXPECT(r.part[PART_PROMPT].n == 2 && strcmp(r.part[PART_PROMPT].text[1], "null") == 0);
    EXPECT(r.part[PART_B].n == 1 && strcmp(r.part[PART_B].text[0], "plain\ntext") == 0);
    row_parts_free(&r);
    EXPECT(rows_decode_row(&t, &cols, 1, "in.csv", &r, &err) == 0);
    row_parts_free(&r);
    // Row 3 starts on line 5 (row 1 spans lines 2-3) and its response_a is cut short.
    err_t e3 = {0};
    EXPECT(rows_decode_row(&t, &cols, 2, "in.csv", &r, &e3) < 0);
    EXPECT_STR_CONTAINS(e3.msg, "in.csv: line 5: id 33: column 'response_a'");
    EXPECT(e3.code == EXIT_DATAERR);
    csv_table_free(&t);

    const char *bad = "id,prompt,response_a\n1,x,y\n";
    EXPECT(csv_table_parse(&t, bad, strlen(bad), "b.csv", &err) == 0);
    err_t em = {0};
    EXPECT(rows_find_cols(&t, "b.csv", &cols, &em) < 0);
    EXPECT_STR_CONTAINS(em.msg, "b.csv: missing required column 'response_b'");
    EXPECT(em.code == EXIT_DATAERR);
    csv_table_free(&t);
}

/* A two-turn row used by the template tests. */
static void make_row(row_parts_t *r) {
    const char *f[N_PARTS] = {"[\"P1\",\"P2\"]", "[\"A1\",\"A2\"]", "[\"B1\"]"};
    err_t err = {0};
    for (int p = 0; p < N_PARTS; p++) ASSERT(rows_decode_field(f[p], strlen(f[p]), &r->part[p], &err) == 0);
}

static void expect_render(const char *name, const char *want) {
    template_t t;
    err_t err = {0};
    EXPECT_MSG(template_load(&t, name, &err) == 0, "%s: %s", name, err.msg);
    row_parts_t r = {0};
    make_row(&r);
    size_t len;
    char *s = template_render(&t, &r, &len);
    EXPECT_MSG(len == strlen(want) && strcmp(s, want) == 0, "%s rendered\n%s\nwant\n%s", name, s, want);
    free(s);
    row_parts_free(&r);
    template_free(&t);
}

TEST(builtin_templates) {
    expect_render("plain", "<prompt>: P1\nP2\n\n<response_a>: A1\nA2\n\n<response_b>: B1");
    expect_render("gemma-chat",
                  "<start_of_turn>user\nP1\nP2<end_of_turn>\n<start_of_turn>model\n"
                  "<response_a>: A1\nA2\n\n<response_b>: B1<end_of_turn>");
    expect_render("turns",
                  "<prompt>: P1\n\n<response_a>: A1\n\n<response_b>: B1\n\n"
                  "<prompt>: P2\n\n<response_a>: A2\n\n<response_b>: \n\n");
    template_t t;
    err_t err = {0};
    EXPECT(template_load(&t, "no-such-template", &err) < 0);
    EXPECT(err.code == EXIT_USAGE);
    EXPECT_STR_CONTAINS(err.msg, "no-such-template");
}

/* Write text to a fresh temp file; returns its path (static buffer). */
static const char *temp_file(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_rows_tpl_XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

TEST(file_templates) {
    const char *path = temp_file("{\"prefix\": \"Q&A\\n\", \"prompt\": \"Q: {text}\\n\", "
                                 "\"response_a\": \"A: {text}\\n\", \"response_b\": \"B: {text}\", "
                                 "\"suffix\": \"\\nWho wins?\", \"turn_join\": \" | \"}");
    expect_render(path, "Q&A\nQ: P1 | P2\nA: A1 | A2\nB: B1\nWho wins?");
    unlink(path);
    path = temp_file("{\"mode\": \"turns\", \"prompt\": \"[{text}]\", \"response_a\": \"({text})\", "
                     "\"response_b\": \"<{text}>\"}");
    expect_render(path, "[P1](A1)<B1>[P2](A2)<>");
    unlink(path);

    static const struct { const char *json, *needle; } bad[] = {
        {"{\"prompt\": \"{text}\", \"response_a\": \"x\", \"response_b\": \"{text}\"}", "\"response_a\" must contain"},
        {"{\"prompt\": \"{text}{text}\", \"response_a\": \"{text}\", \"response_b\": \"{text}\"}", "\"prompt\" must contain"},
        {"{\"prompt\": \"{text}\", \"response_a\": \"{text}\"}", "missing \"response_b\""},
        {"{\"prompt\": \"{text}\", \"response_a\": \"{text}\", \"response_b\": \"{text}\", \"sufix\": \"\"}", "unknown key \"sufix\""},
        {"{\"mode\": \"chat\", \"prompt\": \"{text}\", \"response_a\": \"{text}\", \"response_b\": \"{text}\"}", "\"mode\" must be"},
        {"{\"prompt\": 3, \"response_a\": \"{text}\", \"response_b\": \"{text}\"}", "\"prompt\" must be a string"},
        {"[1,2]", "must hold a JSON object"},
        {"{\"prompt\": ", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = temp_file(bad[i].json);
        template_t t;
        err_t err = {0};
        EXPECT_MSG(template_load(&t, path, &err) < 0, "%s loaded", bad[i].json);
        EXPECT_STR_CONTAINS(err.msg, bad[i].needle);
        EXPECT(err.code == EXIT_DATAERR);
        unlink(path);
    }
}

TEST(budgets) {
    // Exhaustive over small sizes: the invariants docs/templates.md promises.
    for (size_t R = 0; R <= 40; R++)
        for (size_t p = 0; p <= 30; p++)
            for (size_t a = 0; a <= 30; a++)
                for (size_t b = 0; b <= 30; b += 3) {
                    size_t n[N_PARTS] = {p, a, b}, k[N_PARTS];
                    trunc_budgets(R, n, k);
                    size_t sum = k[0] + k[1] + k[2];
                    int ok = k[0] <= p && k[1] <= a && k[2] <= b && sum <= R;
                    if (p + a + b <= R) ok &= sum == p + a + b;   // nothing cut when it all fits
                    else ok &= sum == R;                          // otherwise the budget is used up
                    ok &= k[0] <= R / 5 || (k[1] == a && k[2] == b);
                    if (k[1] < a && k[2] < b) ok &= k[1] == k[2] || k[1] == k[2] + 1; // even split
                    if (k[0] < p) ok &= k[0] >= R / 5; // a cut prompt still gets its fifth
                    if (!ok) {
                        EXPECT_MSG(0, "R=%zu n=(%zu,%zu,%zu) keep=(%zu,%zu,%zu)", R, p, a, b, k[0], k[1], k[2]);
                        return;
                    }
                }
    size_t n[N_PARTS] = {1000, 50, 3000}, k[N_PARTS];
    trunc_budgets(500, n, k); // prompt 100; a takes 50; b gets the rest (350)
    EXPECT(k[0] == 100 && k[1] == 50 && k[2] == 350);
    size_t n2[N_PARTS] = {10, 50, 30};
    trunc_budgets(60, n2, k); // prompt 10 (<= 12); rest 50 split 25/25 but b has 30: a 25, b 25
    EXPECT(k[0] == 10 && k[1] == 25 && k[2] == 25);
    size_t n3[N_PARTS] = {100, 5, 5};
    trunc_budgets(60, n3, k); // responses use 10; the prompt takes the 50 left
    EXPECT(k[0] == 50 && k[1] == 5 && k[2] == 5);
}

/* ------------------------------------------------------------ encoding with real tokenizers */

/* memcmp for id arrays, safe on empty (possibly NULL) arrays. */
static int same(const int32_t *a, const int32_t *b, size_t n) { return n == 0 || memcmp(a, b, n * 4) == 0; }

static void push_slice(ids_t *v, const int32_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) ids_push(v, d[i]);
}

static void enc(const tokenizer_t *tok, const char *s, size_t n, ids_t *out) {
    err_t err = {0};
    ASSERT(tokenizer_encode(tok, s, n, 0, out, &err) == 0);
}

/* The sequence blocks-mode encoding must produce, rebuilt from first principles. */
static void reference_blocks(const tokenizer_t *tok, const template_t *t, const row_parts_t *r,
                             trunc_policy_t pol, size_t max_len, ids_t *out) {
    const int32_t *pre, *suf;
    size_t npre, nsuf;
    tokenizer_special_affixes(tok, &pre, &npre, &suf, &nsuf);
    ids_t fx[2 + 2 * N_PARTS] = {{0}}, part[N_PARTS] = {{0}};
    enc(tok, t->prefix, strlen(t->prefix), &fx[0]);
    enc(tok, t->suffix, strlen(t->suffix), &fx[1]);
    size_t fixed = npre + nsuf + fx[0].n + fx[1].n, total = 0;
    for (int p = 0; p < N_PARTS; p++) {
        enc(tok, t->before[p], strlen(t->before[p]), &fx[2 + 2 * p]);
        enc(tok, t->after[p], strlen(t->after[p]), &fx[3 + 2 * p]);
        fixed += fx[2 + 2 * p].n + fx[3 + 2 * p].n;
        size_t len = 0; // the part's turns joined, as the encoder tokenises them
        char *s;
        for (size_t i = 0; i < r->part[p].n; i++) len += r->part[p].len[i] + strlen(t->turn_join);
        s = malloc(len + 1);
        len = 0;
        for (size_t i = 0; i < r->part[p].n; i++) {
            if (i) memcpy(s + len, t->turn_join, strlen(t->turn_join)), len += strlen(t->turn_join);
            memcpy(s + len, r->part[p].text[i], r->part[p].len[i]), len += r->part[p].len[i];
        }
        enc(tok, s, len, &part[p]);
        free(s);
        total += part[p].n;
    }
    ids_t content = {0};
    size_t keep[N_PARTS] = {part[0].n, part[1].n, part[2].n};
    if (pol != TRUNC_TAIL && fixed + total > max_len) {
        size_t n[N_PARTS] = {part[0].n, part[1].n, part[2].n};
        trunc_budgets(max_len - fixed, n, keep);
    }
    push_slice(&content, fx[0].data, fx[0].n);
    for (int p = 0; p < N_PARTS; p++) {
        push_slice(&content, fx[2 + 2 * p].data, fx[2 + 2 * p].n);
        size_t from = pol == TRUNC_KEEP_END ? part[p].n - keep[p] : 0;
        if (keep[p]) push_slice(&content, part[p].data + from, keep[p]);  // data is NULL when empty
        push_slice(&content, fx[3 + 2 * p].data, fx[3 + 2 * p].n);
    }
    push_slice(&content, fx[1].data, fx[1].n);
    push_slice(out, pre, npre);
    size_t room = max_len - npre - nsuf;
    push_slice(out, content.data, content.n < room ? content.n : room);
    push_slice(out, suf, nsuf);
    ids_free(&content);
    for (size_t i = 0; i < 2 + 2 * N_PARTS; i++) ids_free(&fx[i]);
    for (int p = 0; p < N_PARTS; p++) ids_free(&part[p]);
}

static tokenizer_t *load_fixture_tokenizer(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s.tokenizer.json", tt_dir("ORCH_GEN_FIXTURES"), name);
    err_t err = {0};
    tokenizer_t *tok = tokenizer_load(path, &err);
    EXPECT_MSG(tok != NULL, "%s", err.msg);
    return tok;
}

/* Ids of a template's fixed strings plus the tokenizer's special affixes (one block/turn). */
static size_t fixed_ids(const tokenizer_t *tok, const template_t *t) {
    const int32_t *pre, *suf;
    size_t npre, nsuf;
    tokenizer_special_affixes(tok, &pre, &npre, &suf, &nsuf);
    const char *s[2 + 2 * N_PARTS] = {t->prefix, t->suffix, t->before[0], t->after[0],
                                      t->before[1], t->after[1], t->before[2], t->after[2]};
    size_t n = npre + nsuf;
    for (int i = 0; i < 2 + 2 * N_PARTS; i++) {
        ids_t v = {0};
        enc(tok, s[i], strlen(s[i]), &v);
        n += v.n;
        ids_free(&v);
    }
    return n;
}

static csv_table_t sample_;
static row_cols_t sample_cols_;

static void load_sample(void) {
    if (sample_.n_rows) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/data/lmsys-sample.csv", tt_dir("ORCH_FIXTURES"));
    err_t err = {0};
    ASSERT(csv_table_read(&sample_, path, &err) == 0);
    ASSERT(rows_find_cols(&sample_, path, &sample_cols_, &err) == 0);
}

/* Encode sample rows with every template and policy at several lengths; check each result. */
static void check_encoder(const char *tok_name) {
    tokenizer_t *tok = load_fixture_tokenizer(tok_name);
    if (!tok) return;
    load_sample();
    const int32_t *pre, *suf;
    size_t npre, nsuf;
    tokenizer_special_affixes(tok, &pre, &npre, &suf, &nsuf);
    int n_truncated = 0, n_checked = 0;
    for (int ti = 0; template_builtin_names[ti]; ti++) {
        template_t t;
        err_t err = {0};
        ASSERT(template_load(&t, template_builtin_names[ti], &err) == 0);
        // Lengths relative to the fixed ids: the tightest legal one (one id of text), short
        // ones that cut most rows, and one that cuts few.
        int fixed = (int)fixed_ids(tok, &t);
        const int lens[] = {fixed + 1, fixed + 7, fixed + 60, fixed + 300, 4096};
        encoder_t *too_small = encoder_create(&t, tok, TRUNC_BALANCED, fixed, &err);
        EXPECT(too_small == NULL && err.code == EXIT_USAGE);
        for (int pol = TRUNC_BALANCED; pol <= TRUNC_TAIL; pol++) {
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                encoder_t *e = encoder_create(&t, tok, (trunc_policy_t)pol, lens[li], &err);
                EXPECT_MSG(e != NULL, "%s", err.msg);
                if (!e) continue;
                for (size_t row = 0; row < sample_.n_rows; row += 7) {
                    row_parts_t r;
                    ASSERT(rows_decode_row(&sample_, &sample_cols_, row, "sample", &r, &err) == 0);
                    ids_t out = {0}, ref = {0};
                    encode_info_t inf;
                    EXPECT(encoder_encode(e, &r, &out, &inf, &err) == 0);
                    EXPECT(out.n <= (size_t)lens[li]);
                    EXPECT(out.n >= npre + nsuf && same(out.data, pre, npre) &&
                           same(out.data + out.n - nsuf, suf, nsuf));
                    EXPECT(inf.truncated == (inf.full_len > (size_t)lens[li]));
                    n_truncated += inf.truncated;
                    if (inf.truncated) EXPECT(out.n == (size_t)lens[li] || t.mode == TPL_TURNS);
                    else EXPECT(out.n == inf.full_len);
                    if (!(pol == TRUNC_TAIL && inf.truncated))
                        EXPECT(inf.fixed_len + inf.part_kept[0] + inf.part_kept[1] + inf.part_kept[2] == out.n);
                    if (t.mode == TPL_BLOCKS) { // turns mode: see encode_turns_truncation
                        reference_blocks(tok, &t, &r, (trunc_policy_t)pol, (size_t)lens[li], &ref);
                        EXPECT_MSG(ref.n == out.n && same(ref.data, out.data, out.n),
                                   "%s/%s/%s len %d row %zu: encoder and reference differ (%zu vs %zu ids)",
                                   tok_name, t.name, trunc_policy_name(pol), lens[li], row, out.n, ref.n);
                        n_checked++;
                    }
                    ids_free(&out);
                    ids_free(&ref);
                    row_parts_free(&r);
                }
                encoder_free(e);
            }
        }
        template_free(&t);
    }
    EXPECT(n_truncated > 50 && n_checked > 50); // the sample really exercises both paths
    tokenizer_free(tok);
}

TEST(encode_llama3) { check_encoder("llama3"); }
TEST(encode_gemma) { check_encoder("gemma"); }

/* Turns mode: many turns, where labels alone would overflow; which end survives. */
TEST(encode_turns_truncation) {
    tokenizer_t *tok = load_fixture_tokenizer("llama3");
    if (!tok) return;
    template_t t;
    err_t err = {0};
    ASSERT(template_load(&t, "turns", &err) == 0);
    row_parts_t r = {0};
    char buf[64];
    for (int i = 0; i < 40; i++) {
        for (int p = 0; p < N_PARTS; p++) {
            snprintf(buf, sizeof buf, "%d turn, part %d, some words %d", i, p, i); // starts and ends with the turn number
            turns_t *tu = &r.part[p];
            tu->text = realloc(tu->text, (tu->n + 1) * sizeof *tu->text);
            tu->len = realloc(tu->len, (tu->n + 1) * sizeof *tu->len);
            tu->text[tu->n] = strdup(buf);
            tu->len[tu->n] = strlen(buf);
            tu->n++;
        }
    }
    ids_t t0 = {0}, t39 = {0}, label = {0}, after_b = {0};
    enc(tok, r.part[PART_PROMPT].text[0], r.part[PART_PROMPT].len[0], &t0);
    enc(tok, r.part[PART_B].text[39], r.part[PART_B].len[39], &t39);
    enc(tok, t.before[PART_PROMPT], strlen(t.before[PART_PROMPT]), &label);
    enc(tok, t.after[PART_B], strlen(t.after[PART_B]), &after_b);
    size_t fixed = fixed_ids(tok, &t);
    const size_t max_lens[] = {fixed + 1, fixed + 5, 3 * fixed, 10 * fixed};
    for (int pol = TRUNC_BALANCED; pol <= TRUNC_TAIL; pol++) {
        for (size_t li = 0; li < sizeof max_lens / sizeof max_lens[0]; li++) {
            size_t max_len = max_lens[li];
            encoder_t *e = encoder_create(&t, tok, (trunc_policy_t)pol, (int)max_len, &err);
            ASSERT(e);
            ids_t out = {0};
            encode_info_t inf;
            EXPECT(encoder_encode(e, &r, &out, &inf, &err) == 0);
            EXPECT(inf.truncated && out.n <= max_len);
            if (pol != TRUNC_TAIL) EXPECT(inf.part_kept[0] + inf.part_kept[1] + inf.part_kept[2] >= 1);
            // Turns emitted: occurrences of the prompt label; fewer than 40, at least one.
            size_t turns = 0;
            for (size_t i = 0; i + label.n <= out.n; i++) turns += same(out.data + i, label.data, label.n);
            EXPECT_MSG(turns >= 1 && turns < 40, "%s len %zu: %zu turns", trunc_policy_name(pol), max_len, turns);
            int starts_t0 = out.n > label.n && out.data[label.n] == t0.data[0];
            int ends_t39 = out.n >= after_b.n + 1 && out.data[out.n - after_b.n - 1] == t39.data[t39.n - 1] &&
                           same(out.data + out.n - after_b.n, after_b.data, after_b.n);
            if (max_len < 3 * fixed) { // too little room to say which end a part keeps
            } else if (pol == TRUNC_KEEP_END) EXPECT_MSG(!starts_t0 && ends_t39, "keep_end len %zu", max_len);
            else if (pol == TRUNC_BALANCED) EXPECT_MSG(starts_t0 && !ends_t39, "balanced len %zu", max_len);
            else EXPECT(out.n == max_len && !ends_t39);
            ids_free(&out);
            encoder_free(e);
        }
    }
    ids_free(&t0);
    ids_free(&t39);
    ids_free(&label);
    ids_free(&after_b);
    // Too small for even one turn's labels: a usage error that says so.
    EXPECT(encoder_create(&t, tok, TRUNC_BALANCED, (int)fixed, &err) == NULL);
    EXPECT(err.code == EXIT_USAGE);
    EXPECT_STR_CONTAINS(err.msg, "too small");
    row_parts_free(&r);
    template_free(&t);
    tokenizer_free(tok);
}

/* Gemma: <bos> counts toward max_length and <start_of_turn>/<end_of_turn> stay single ids. */
TEST(encode_gemma_specials) {
    tokenizer_t *tok = load_fixture_tokenizer("gemma");
    if (!tok) return;
    template_t t;
    err_t err = {0};
    ASSERT(template_load(&t, "gemma-chat", &err) == 0);
    row_parts_t r = {0};
    make_row(&r);
    encoder_t *e = encoder_create(&t, tok, TRUNC_BALANCED, 64, &err);
    ASSERT(e);
    ids_t out = {0};
    EXPECT(encoder_encode(e, &r, &out, NULL, &err) == 0);
    EXPECT(out.n > 0 && out.data[0] == 2);
    int sot = 0, eot = 0;
    for (size_t i = 0; i < out.n; i++) sot += out.data[i] == 106, eot += out.data[i] == 107;
    EXPECT(sot == 2 && eot == 2);
    ids_free(&out);
    encoder_free(e);
    row_parts_free(&r);
    template_free(&t);
    tokenizer_free(tok);
}

static void cleanup(void) { csv_table_free(&sample_); }

TEST(done) { cleanup(); }

TEST_MAIN(decode_lists, decode_nul_escape, decode_plain_text_and_errors, decode_csv_rows,
          builtin_templates, file_templates, budgets, encode_llama3, encode_gemma,
          encode_turns_truncation, encode_gemma_specials, done)
