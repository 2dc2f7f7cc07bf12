/* post_process.c: what HF TokenizerImpl::post_process does to a single sequence's ids:
 * truncation (tokenizer.json "truncation"), the post-processor's special tokens (only with
 * add_special_tokens), then padding (tokenizer.json "padding").
 *
 * Every supported post-processor (TemplateProcessing, BertProcessing, RobertaProcessing,
 * ByteLevel, and Sequences of them) reduces, for one sequence, to fixed ids before and after
 * it; tok_config.c computes them at load.
 *
 * Deliberately absent: overflowing tokens and stride windows (ids only), pairs.
 */
#include <string.h>

#include "tok_internal.h"

int post_process(const tokenizer_t *tok, ids_t *out, size_t base, int add_special, err_t *err) {
    size_t n = out->n - base;
    size_t n_added = tok->n_prefix + tok->n_suffix;

    if (tok->trunc.enabled) {
        size_t max = tok->trunc.max_length;
        // HF subtracts in usize; an underflow wraps in its release build, i.e. no limit.
        if (add_special && n_added > 0) max = max >= n_added ? max - n_added : SIZE_MAX - (n_added - max) + 1;
        if (max == 0) {
            n = 0;
        } else if (n > max) {
            if (tok->trunc.only_second)
                return err_fmt(err, "truncation.strategy OnlySecond needs a pair of sequences");
            if (tok->trunc.stride >= max)
                return err_fmt(err, "truncation.stride %zu must be below the length %zu it truncates to",
                               tok->trunc.stride, max);
            if (tok->trunc.left) memmove(out->data + base, out->data + base + (n - max), max * sizeof *out->data);
            n = max;
        }
        out->n = base + n;
    }

    if (add_special && n_added) {
        for (size_t i = 0; i < n_added; i++) ids_push(out, 0);
        int32_t *d = out->data + base;
        memmove(d + tok->n_prefix, d, n * sizeof *d);
        if (tok->n_prefix) memcpy(d, tok->prefix, tok->n_prefix * sizeof *d);
        if (tok->n_suffix) memcpy(d + tok->n_prefix + n, tok->suffix, tok->n_suffix * sizeof *d);
        n += n_added;
    }

    if (tok->pad.enabled) {
        size_t target = tok->pad.fixed ? tok->pad.size : n;
        if (tok->pad.multiple > 0 && target % tok->pad.multiple)
            target += tok->pad.multiple - target % tok->pad.multiple;
        if (n < target) {
            size_t extra = target - n;
            for (size_t i = 0; i < extra; i++) ids_push(out, tok->pad.pad_id);
            if (tok->pad.left) {
                int32_t *d = out->data + base;
                memmove(d + extra, d, n * sizeof *d);
                for (size_t i = 0; i < extra; i++) d[i] = tok->pad.pad_id;
            }
        }
    }
    return 0;
}
