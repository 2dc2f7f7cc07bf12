/* fuzz_adapter_config.c: arbitrary bytes as a PEFT adapter_config.json.
 *
 * The parser must fail cleanly on anything malformed; an accepted config must answer PEFT's
 * matching questions (targets, rank, scale; its regexes go through PCRE2) without faults.
 * Seeds: tests/fuzz/corpus/adapter_config/.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lora_config_t c;
    err_t err = {0};
    if (lora_config_parse(&c, (const char *)data, size, "adapter_config.json", &err) != 0) return 0;
    static const char *modules[] = {"model.layers.0.self_attn.q_proj", "model.layers.17.mlp.down_proj", "score",
                                    "model.embed_tokens", "model.layers.3.self_attn.o_proj"};
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
        int r;
        double scale;
        (void)lora_config_targets(&c, modules[i]);
        lora_config_rank_scale(&c, modules[i], &r, &scale);
        if (r < 1) abort(); // ranks are validated positive
    }
    lora_config_free(&c);
    return 0;
}
