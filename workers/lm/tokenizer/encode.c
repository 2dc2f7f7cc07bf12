/* encode.c: tokenizer_encode and the small public accessors, plus the per-call scratch that
 * carries pieces of text from stage to stage.
 *
 * Stage order is HF TokenizerImpl::encode_single_sequence followed by post_process:
 *   lossy UTF-8 -> added tokens in the raw text -> normalizer, then added tokens in the
 *   normalised pieces -> pre-tokenizer -> BPE on each remaining piece -> truncation ->
 *   post-processor ids -> padding.
 * All state of a call lives in a tok_scratch_t owned by the calling thread, so a const
 * tokenizer_t can serve any number of threads at once. The scratch is kept per thread between
 * calls (up to SCRATCH_KEEP_BYTES of buffers): allocating and releasing it on every call cost
 * more in page faults than the encoding itself on short texts.
 *
 * Deliberately absent: batching and pairs of sequences; callers loop.
 */
#include <pthread.h>
#include <string.h>

#include "tok_internal.h"

/* Buffers above this stay allocated only for the call that needed them. */
#define SCRATCH_KEEP_BYTES ((size_t)16 << 20)

/* ---------------------------------------------------------------- ids_t ------------- */

void ids_push(ids_t *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->data = xrealloc(v->data, v->cap * sizeof *v->data);
    }
    v->data[v->n++] = id;
}

void ids_free(ids_t *v) {
    free(v->data);
    v->data = NULL;
    v->n = v->cap = 0;
}

/* ---------------------------------------------------------------- scratch ----------- */

char *scratch_reserve(tok_scratch_t *s, size_t n) {
    // Allocate even for n == 0: callers take the pointer, and NULL + 0 is undefined behaviour.
    if (s->len + n > s->cap || !s->buf) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n) cap *= 2;
        s->buf = xrealloc(s->buf, cap);
        s->cap = cap;
    }
    return s->buf + s->len;
}

void scratch_emit(tok_scratch_t *s, size_t off, size_t len, int32_t id, int at_start) {
    if (s->n_next == s->cap_next) {
        s->cap_next = s->cap_next ? s->cap_next * 2 : 64;
        s->next = xrealloc(s->next, s->cap_next * sizeof *s->next);
    }
    piece_t *p = &s->next[s->n_next++];
    p->off = off;
    p->len = len;
    p->id = id;
    p->at_start = (uint8_t)(at_start != 0);
}

void scratch_swap(tok_scratch_t *s) {
    piece_t *tp = s->pieces;
    size_t tc = s->cap_pieces;
    s->pieces = s->next;
    s->cap_pieces = s->cap_next;
    s->n = s->n_next;
    s->next = tp;
    s->cap_next = tc;
    s->n_next = 0;
}

void scratch_free(tok_scratch_t *s) {
    free(s->buf);
    free(s->pieces);
    free(s->next);
    free(s->spans);
    free(s->is_match);
    free(s->syms);
    free(s->heap);
    free(s->pcache);
    free(s->word);
    if (s->md) pcre2_match_data_free(s->md);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    if (s->jit_stack) pcre2_jit_stack_free(s->jit_stack);
    memset(s, 0, sizeof *s);
}

/* One cached scratch per thread. __thread keeps it reachable (LeakSanitizer scans TLS); the
 * key's destructor frees it when a thread exits. */
static __thread tok_scratch_t *t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

/* pthread key destructor: free a thread's cached scratch and its contents. */
static void scratch_destroy(void *p) {
    scratch_free(p);
    free(p);
}

/* Create the thread-local scratch key (pthread_once); aborts when that fails. */
static void scratch_key_init(void) {
    if (pthread_key_create(&g_scratch_key, scratch_destroy) != 0) {
        fprintf(stderr, "fatal: pthread_key_create failed for the tokenizer scratch\n");
        abort();
    }
}

/* The calling thread's scratch, emptied. */
static tok_scratch_t *scratch_acquire(void) {
    tok_scratch_t *s = t_scratch;
    if (!s) {
        pthread_once(&g_scratch_once, scratch_key_init);
        s = xcalloc(1, sizeof *s);
        t_scratch = s;
        pthread_setspecific(g_scratch_key, s);
    }
    s->len = s->n = s->n_next = s->n_spans = 0;
    return s;
}

/* End of a call: drop buffers that grew too large to keep around. */
static void scratch_release(tok_scratch_t *s) {
    size_t bytes = s->cap + (s->cap_pieces + s->cap_next) * sizeof(piece_t) +
                   s->cap_spans * (sizeof(span_t) + sizeof(int)) + s->cap_syms * sizeof(bpe_sym_t) +
                   s->cap_heap * sizeof(bpe_merge_t);
    if (bytes > SCRATCH_KEEP_BYTES) scratch_free(s);
}

/* ---------------------------------------------------------------- encode ------------ */

int tokenizer_encode(const tokenizer_t *tok, const char *text, size_t len, int add_special, ids_t *out,
                     err_t *err) {
    if (!text && len) return err_fmt(err, "%s: encode: NULL text with length %zu", tok->name, len);
    size_t base = out->n;
    tok_scratch_t *sp = scratch_acquire();
    tok_scratch_t s = *sp;  // a local copy for the stages; written back at the end
    int rc = -1;

    // 1. The text as a valid UTF-8 string in the arena (HF receives a Rust &str).
    size_t off = 0, n = len;
    if (utf8_valid_prefix(text, len) == len) {
        char *w = scratch_reserve(&s, len);
        if (len) memcpy(w, text, len);
        s.len += len;
    } else {
        off = utf8_lossy_to_arena(&s, text, len, &n);
    }
    if (n) scratch_emit(&s, off, n, -1, 1);
    scratch_swap(&s);

    // 2..4. Added tokens, normalisation, pre-tokenisation.
    if (added_split(tok, &tok->raw_trie, &s, err) < 0) goto done;
    if (normalize_pieces(tok, &s, err) < 0) goto done;
    if (pretokenize_pieces(tok, &s, err) < 0) goto done;

    // 5. The model, piece by piece.
    for (size_t i = 0; i < s.n; i++) {
        const piece_t *p = &s.pieces[i];
        if (p->id >= 0) ids_push(out, p->id);
        else if (bpe_encode_word(&tok->bpe, &s, s.buf + p->off, p->len, out, err) < 0) goto done;
    }

    // 6. Truncation, special tokens, padding.
    if (post_process(tok, out, base, add_special, err) < 0) goto done;
    rc = 0;
done:
    if (rc < 0) {
        out->n = base;
        err_prefix(err, "%s", tok->name);
    }
    *sp = s;
    scratch_release(sp);
    return rc;
}

/* ---------------------------------------------------------------- accessors --------- */

int32_t tokenizer_token_id(const tokenizer_t *tok, const char *token) {
    size_t n = strlen(token);
    int32_t id = strmap_get(&tok->added, token, n);
    return id >= 0 ? id : strmap_get(&tok->bpe.vocab, token, n);
}

void tokenizer_special_affixes(const tokenizer_t *tok, const int32_t **prefix, size_t *n_prefix,
                               const int32_t **suffix, size_t *n_suffix) {
    *prefix = tok->prefix;
    *n_prefix = tok->n_prefix;
    *suffix = tok->suffix;
    *n_suffix = tok->n_suffix;
}

size_t tokenizer_vocab_size(const tokenizer_t *tok) {
    return tok->n_ids;
}
