/* fuzz_model_config.c: arbitrary bytes as a model config.json.
 *
 * The parser must fail cleanly on anything malformed; an accepted config must hold values the
 * forward pass can use (positive sizes, a head count divisible by the kv heads, an even head_dim
 * within the rope limit, labels present), and its rope frequencies must be computable.
 * Seeds: tests/fuzz/corpus/model_config/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "model_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    model_config_t c;
    err_t err = {0};
    if (model_config_parse(&c, (const char *)data, size, "config.json", &err) != 0) return 0;
    if (c.dim < 1 || c.hidden_dim < 1 || c.n_layers < 1 || c.n_layers > MODEL_MAX_LAYERS || c.n_kv_heads < 1 ||
        c.n_heads % c.n_kv_heads || c.head_dim < 2 || c.head_dim % 2 || c.head_dim > MODEL_MAX_HEAD_DIM ||
        c.n_labels < 1 || c.n_labels > MODEL_MAX_LABELS)
        abort();
    for (int i = 0; i < c.n_labels; i++)
        if (!c.labels[i]) abort();
    float inv[MODEL_MAX_HEAD_DIM / 2];
    rope_inv_freq(&c, inv);
    model_config_free(&c);
    return 0;
}
