/* fuzz_tokenizer_json.c: tokenizer_load_buf on arbitrary bytes, and encoding with whatever loads.
 *
 * A tokenizer that loads encodes a fixed text (specials, whitespace runs, scripts, invalid
 * UTF-8) with and without special tokens, then the input bytes themselves as text. Checked:
 * no crash, no sanitizer report, and the contract that a failed encode leaves the output as it
 * was. The seed corpus (tests/fuzz/corpus/tokenizer_json/) holds small valid tokenizer.json
 * files covering every supported section type.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static const char FIXED[] = "Hello, world! <bos><start_of_turn>user\n  \t\r\n12345 don't \xE6\x97\xA5\xE6\x9C\xAC "
                            "\xF0\x9F\x98\x80 <|begin_of_text|>x<mask>y [MASK] \xC3\xA9\xCC\x81 \xFF\xFE\xED\xA0\x80 end";

static void encode_checked(const tokenizer_t *tok, const char *s, size_t n, int sp) {
    ids_t v = {0};
    ids_push(&v, 12345);
    err_t err = {0};
    int rc = tokenizer_encode(tok, s, n, sp, &v, &err);
    if (rc == 0 && (v.n < 1 || v.data[0] != 12345)) abort();  // encode must append
    if (rc != 0 && v.n != 1) abort();                         // and leave out alone on error
    ids_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    err_t err = {0};
    tokenizer_t *tok = tokenizer_load_buf((const char *)data, size, "fuzz.json", &err);
    if (!tok) {
        if (!err.msg[0]) abort();  // a failed load must say why
        return 0;
    }
    encode_checked(tok, FIXED, sizeof FIXED - 1, 0);
    encode_checked(tok, FIXED, sizeof FIXED - 1, 1);
    encode_checked(tok, (const char *)data, size > 4096 ? 4096 : size, 1);
    (void)tokenizer_token_id(tok, "<bos>");
    (void)tokenizer_vocab_size(tok);
    tokenizer_free(tok);
    return 0;
}
