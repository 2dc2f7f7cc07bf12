/* fuzz_safetensors_header.c: arbitrary bytes as a safetensors file.
 *
 * The header parser must reject anything malformed with an error and never read outside the
 * buffer; a header it accepts must describe tensors that lie inside the data and can be
 * converted without faults. Seeds: tests/fuzz/corpus/safetensors_header/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_set_t set = {0};
    err_t err = {0};
    /* one pseudo-file so that messages naming set->files[...] have something to name */
    set.files = xcalloc(1, sizeof *set.files);
    set.files[0].path = xstrdup("fuzz.safetensors");
    set.files[0].size = size;
    set.n_files = 1;
    if (st_parse_buffer(&set, data, size, "fuzz.safetensors", 0, &err) == 0 && st_finish(&set, &err) == 0) {
        for (int i = 0; i < set.n_tensors; i++) {
            const st_tensor_t *t = &set.tensors[i];
            if (st_find(&set, t->name) != t) abort(); // sorted, unique names
            if (t->data < data + 8 || t->data + (size_t)t->n_elems * st_dtype_size(t->dtype) > data + size) abort();
            if (t->n_elems > (1 << 20)) continue;
            float *out = malloc((size_t)t->n_elems * sizeof(float) + 1);
            st_to_f32(&set, t, out, &err);
            free(out);
        }
    }
    st_close(&set);
    return 0;
}
