/* fuzz_rows_to_text.c: rows_to_text on arbitrary field bytes.
 *
 * The input is split at 0xFF bytes into up to three fields (prompt, response_a, response_b).
 * Each field is decoded; when all three decode, the row is rendered with every built-in
 * template and, when the Gemma fixture tokenizer is available (ORCH_GEN_FIXTURES), encoded with
 * every truncation policy at a short and a long --max-length, checking the length bound. The
 * first input byte also drives trunc_budgets, whose invariants are checked directly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "tokenizer.h"

static tokenizer_t *tok_;
static template_t tmpl_[8];
static int n_tmpl_;
static encoder_t *enc_[8][3][2];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    err_t err = {0};
    for (n_tmpl_ = 0; template_builtin_names[n_tmpl_]; n_tmpl_++)
        if (template_load(&tmpl_[n_tmpl_], template_builtin_names[n_tmpl_], &err) < 0) abort();
    const char *dir = getenv("ORCH_GEN_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/gemma.tokenizer.json", dir ? dir : "fixtures");
    tok_ = tokenizer_load(path, &err);
    if (!tok_) {
        fprintf(stderr, "fuzz_rows_to_text: %s; fuzzing without encoding\n", err.msg);
        return 0;
    }
    for (int t = 0; t < n_tmpl_; t++)
        for (int p = 0; p < 3; p++) {
            enc_[t][p][0] = encoder_create(&tmpl_[t], tok_, (trunc_policy_t)p, 64, &err);
            enc_[t][p][1] = encoder_create(&tmpl_[t], tok_, (trunc_policy_t)p, 4096, &err);
            if (!enc_[t][p][0] || !enc_[t][p][1]) abort();
        }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 4) {
        size_t R = data[0], n[N_PARTS] = {data[1], data[2], data[3]}, k[N_PARTS];
        trunc_budgets(R, n, k);
        size_t sum = k[0] + k[1] + k[2];
        if (sum > R || k[0] > n[0] || k[1] > n[1] || k[2] > n[2]) abort();
        if (n[0] + n[1] + n[2] > R ? sum != R : sum != n[0] + n[1] + n[2]) abort();
    }
    const char *f[N_PARTS] = {"", "", ""};
    size_t len[N_PARTS] = {0, 0, 0};
    size_t start = 0;
    int part = 0;
    for (size_t i = 0; i <= size && part < N_PARTS; i++) {
        if (i == size || data[i] == 0xFF) {
            f[part] = (const char *)data + start;
            len[part] = i - start;
            part++;
            start = i + 1;
        }
    }
    row_parts_t r;
    memset(&r, 0, sizeof r);
    err_t err = {0};
    int ok = 1;
    for (int p = 0; p < N_PARTS && ok; p++) ok = rows_decode_field(f[p], len[p], &r.part[p], &err) == 0;
    if (ok) {
        for (int t = 0; t < n_tmpl_; t++) {
            size_t n;
            free(template_render(&tmpl_[t], &r, &n));
            if (!tok_) continue;
            for (int p = 0; p < 3; p++)
                for (int l = 0; l < 2; l++) {
                    ids_t out = {0};
                    encode_info_t inf;
                    if (encoder_encode(enc_[t][p][l], &r, &out, &inf, &err) == 0 &&
                        out.n > (l ? 4096u : 64u))
                        abort();
                    ids_free(&out);
                }
        }
    }
    row_parts_free(&r);
    return 0;
}
