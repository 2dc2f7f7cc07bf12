/* tok_regex.c: PCRE2 standing in for Oniguruma, the regex engine HF `tokenizers` uses for
 * Split, Replace and ByteLevel patterns, plus the split behaviours built on top of it.
 *
 * Exactness rests on three things reproduced here: the pattern rewritten into PCRE2 syntax
 * with Oniguruma's classes (tok_onig.c) and compiled with options that read it as Ruby syntax
 * does (UTF, Unicode properties, ^ $ as line anchors); the onig crate's find_iter rule for
 * empty matches; and HF's NormalizedString::split fold for each SplitDelimiterBehavior.
 *
 * Every match call passes the piece itself as the subject with PCRE2_NO_UTF_CHECK: pieces are
 * valid UTF-8 by construction (encode decodes lossily first), and letting PCRE2 re-validate
 * the subject on every call would make a long piece O(n^2).
 *
 * Deliberately absent: Oniguruma syntax PCRE2 lacks (see tok_onig.c), which is rejected.
 */
#include <string.h>

#include "tok_internal.h"

int tok_regex_compile(tok_regex_t *re, const char *pattern, size_t len, int literal, const char *where,
                      err_t *err) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    const char *src = pattern;
    size_t src_len = len;
    char *rewritten = NULL;
    if (literal) {
        opts = PCRE2_UTF | PCRE2_LITERAL;
    } else {
        rewritten = onig_to_pcre2(pattern, len, &src_len, where, err);
        if (!rewritten) return -1;
        src = rewritten;
    }
    re->code = pcre2_compile((PCRE2_SPTR)src, src_len, opts, &ec, &eo, NULL);
    free(rewritten);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return err_fmt(err, "%s: cannot compile pattern \"%.*s\": %s", where, (int)(len > 200 ? 200 : len), pattern,
                       (const char *)msg);
    }
    // JIT is an optimisation: when it is unavailable the interpreter gives the same matches.
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void tok_regex_free(tok_regex_t *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

/* Make sure the scratch has PCRE2 match state. The JIT stack grows up to 64 MiB so that long
 * whitespace runs under patterns like \s+(?!\S) cannot fail for lack of stack. */
static void ensure_match_state(tok_scratch_t *s) {
    if (s->md) return;
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->jit_stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
    if (!s->md || !s->mctx || !s->jit_stack) {
        fprintf(stderr, "fatal: out of host memory creating PCRE2 match state\n");
        abort();
    }
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
}

/* Append the span [a, b) to s->spans with its match flag m (1: a match, 0: a gap). */
static void push_span(tok_scratch_t *s, size_t a, size_t b, int m) {
    if (s->n_spans == s->cap_spans) {
        s->cap_spans = s->cap_spans ? s->cap_spans * 2 : 64;
        s->spans = xrealloc(s->spans, s->cap_spans * sizeof *s->spans);
        s->is_match = xrealloc(s->is_match, s->cap_spans * sizeof *s->is_match);
    }
    s->spans[s->n_spans].start = a;
    s->spans[s->n_spans].end = b;
    s->is_match[s->n_spans] = m;
    s->n_spans++;
}

int regex_find_matches(const tok_regex_t *re, tok_scratch_t *s, const char *subj, size_t len, err_t *err) {
    s->n_spans = 0;
    if (len == 0) {
        push_span(s, 0, 0, 0);
        return 0;
    }
    ensure_match_state(s);
    size_t prev = 0, last_end = 0, last_match_end = 0;
    int have_last = 0;
    while (last_end <= len) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)subj, len, last_end, 0, s->md, s->mctx)
                         : pcre2_match(re->code, (PCRE2_SPTR)subj, len, last_end, PCRE2_NO_UTF_CHECK, s->md,
                                       s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_fmt(err, "regex match failed on a %zu-byte piece: %s", len, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms || ms < prev)
            return err_fmt(err, "regex produced a match that ends before it starts (\\K is not supported)");
        // onig's FindMatches: an empty match right where the previous match ended is refused,
        // and the search moves on by one character.
        if (ms == me && have_last && last_match_end == me) {
            last_end += last_end < len ? utf8_len((unsigned char)subj[last_end]) : 1;
            continue;
        }
        last_end = me;
        last_match_end = me;
        have_last = 1;
        if (prev != ms) push_span(s, prev, ms, 0);
        push_span(s, ms, me, 1);
        prev = me;
    }
    if (prev != len) push_span(s, prev, len, 0);
    return 0;
}

int split_piece(const tok_regex_t *re, split_behavior_t behavior, int invert, tok_scratch_t *s,
                const piece_t *p, err_t *err) {
    if (regex_find_matches(re, s, s->buf + p->off, p->len, err) < 0) return -1;
    size_t n = s->n_spans;
    span_t *sp = s->spans;
    int *m = s->is_match;
    if (invert)
        for (size_t i = 0; i < n; i++) m[i] = !m[i];
    // Fold in place into (span, remove) pairs exactly like NormalizedString::split; `keep`
    // reuses is_match as the remove flag of the folded list.
    size_t k = 0;
    int prev_match = 0;
    switch (behavior) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) m[i] = 0;
        k = n;
        break;
    case SPLIT_REMOVED:
        k = n;
        break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int im = m[i];
            if (im == prev_match && k > 0) sp[k - 1].end = sp[i].end;
            else { sp[k] = sp[i]; m[k] = 0; k++; }
            prev_match = im;
        }
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            int im = m[i];
            if (im && !prev_match && k > 0) sp[k - 1].end = sp[i].end;
            else { sp[k] = sp[i]; m[k] = 0; k++; }
            prev_match = im;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        // Folded from the back; the result is built at the back of the array and read forward.
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            int im = m[i];
            if (im && !prev_match && w < n) sp[w].start = sp[i].start;
            else { w--; sp[w] = sp[i]; m[w] = 0; }
            prev_match = im;
        }
        for (size_t i = w; i < n; i++) { sp[k] = sp[i]; m[k] = 0; k++; }
        break;
    }
    }
    for (size_t i = 0; i < k; i++) {
        if (m[i] || sp[i].end == sp[i].start) continue;
        scratch_emit(s, p->off + sp[i].start, sp[i].end - sp[i].start, -1, sp[i].start == 0 && p->at_start);
    }
    return 0;
}
