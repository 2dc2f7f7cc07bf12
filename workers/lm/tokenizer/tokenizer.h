/* tokenizer.h: a Hugging Face tokenizer.json, loaded and run natively.
 *
 * Covers what Llama-3 and Gemma(-2) files use: byte-level BPE behind a Split pre-tokenizer
 * (PCRE2) with ignore_merges; BPE with byte_fallback behind a Replace normaliser; added and
 * special tokens matched in the raw text; TemplateProcessing and ByteLevel post-processors.
 * Anything else in a tokenizer.json is rejected at load with an error naming the field, rather
 * than silently giving different ids.
 *
 * A loaded tokenizer is immutable: tokenizer_encode may be called from many threads at once.
 */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "check.h"

typedef struct tokenizer tokenizer_t;

/* A growable array of token ids. Zero-initialise; free with ids_free. */
typedef struct {
    int32_t *data; // (cap) ids, the first n valid
    size_t n, cap; // ids stored / allocated
} ids_t;

/* Append id, growing the array (aborts on host OOM). */
void ids_push(ids_t *v, int32_t id);
/* Free the ids and reset v to empty (it may be reused). */
void ids_free(ids_t *v);

/* Load tokenizer.json from path. Returns NULL with err naming the file and field on failure. */
tokenizer_t *tokenizer_load(const char *path, err_t *err);

/* Same, from an in-memory JSON text (`name` is used in errors). For tests and fuzzing. */
tokenizer_t *tokenizer_load_buf(const char *json, size_t len, const char *name, err_t *err);

/* Free the tokenizer and everything it owns; NULL is a no-op. */
void tokenizer_free(tokenizer_t *tok);

/* Append the ids of UTF-8 text[0..len) to out. With add_special, apply the post-processor
 * (e.g. Gemma's <bos>), exactly as HF encode(text, add_special_tokens=True). Invalid UTF-8 is
 * handled as HF does after a lossy decode (U+FFFD). Like HF `tokenizers` (not transformers,
 * which switches them off per call), a "truncation" or "padding" section in the file applies
 * too; the Llama-3 and Gemma files have neither. Returns 0, or -1 with err set and out
 * unchanged. */
int tokenizer_encode(const tokenizer_t *tok, const char *text, size_t len, int add_special, ids_t *out, err_t *err);

/* Switch off the file's "truncation" and "padding" sections, as transformers does on every call
 * (set_truncation_and_padding with DO_NOT_TRUNCATE / DO_NOT_PAD). lm-worker run calls this right
 * after loading, because a fine-tuned checkpoint's tokenizer.json often carries the training
 * max_length, and transformers — which produced the model's training inputs — ignores it; our own
 * truncation policy (rows/encoder.c) decides lengths. Not thread-safe: call before any encode. */
void tokenizer_no_truncation_padding(tokenizer_t *tok);

/* Id of an exact token string (vocab or added token), or -1. */
int32_t tokenizer_token_id(const tokenizer_t *tok, const char *token);

/* Ids the post-processor adds before and after a single sequence (e.g. <bos> for Gemma). */
void tokenizer_special_affixes(const tokenizer_t *tok, const int32_t **prefix, size_t *n_prefix,
                               const int32_t **suffix, size_t *n_suffix);

/* Number of ids (vocab plus added tokens). */
size_t tokenizer_vocab_size(const tokenizer_t *tok);

#endif
