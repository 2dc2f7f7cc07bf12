/* pretokenize.c: the pre-tokenizer stage. Each step rewrites the list of pieces that no added
 * token has claimed; claimed pieces pass through untouched, as in HF PreTokenizedString::split.
 *
 * Steps (see tok_config.c for how each HF type maps onto them):
 *   PRE_SPLIT      split by a pattern with a SplitDelimiterBehavior (Split, Digits, ...);
 *   PRE_BYTELEVEL  optional leading space per piece, optional GPT-2 regex split, then every
 *                  byte replaced by its GPT-2 char (the vocab is written in those chars);
 *   PRE_METASPACE  ' ' -> replacement, optional leading replacement, optional split before
 *                  each replacement.
 * Empty pieces are dropped after every step, as HF does.
 *
 * Deliberately absent: offsets tracking. Metaspace's prepend_scheme "first" needs to know
 * whether a piece starts at offset 0 of the original text; piece_t.at_start carries that bit
 * (exact unless a split lands inside characters a normalizer inserted at the very start).
 */
#include <string.h>

#include "tok_internal.h"

/* Map the bytes of every unclaimed piece of the current list to GPT-2 chars. */
static void bytelevel_map(tok_scratch_t *s) {
    const bytechar_t *bc = tok_bytechars();
    for (size_t i = 0; i < s->n; i++) {
        piece_t *p = &s->pieces[i];
        if (p->id >= 0) continue;
        char *w = scratch_reserve(s, p->len * 2);
        const unsigned char *src = (const unsigned char *)s->buf + p->off;
        size_t o = 0;
        for (size_t k = 0; k < p->len; k++) {
            const bytechar_t *c = &bc[src[k]];
            w[o] = c->s[0];
            if (c->len == 2) w[o + 1] = c->s[1];
            o += c->len;
        }
        p->off = s->len;
        p->len = o;
        s->len += o;
    }
}

/* Put `pre` in front of piece p (a new arena string). */
static void prepend(tok_scratch_t *s, piece_t *p, const char *pre, size_t n) {
    char *w = scratch_reserve(s, n + p->len);
    memcpy(w, pre, n);
    memcpy(w + n, s->buf + p->off, p->len);
    p->off = s->len;
    p->len += n;
    s->len += p->len;
}

/* ByteLevel pre-tokenizer on every piece without an id: optional prefix space, optional split by
 * its regex, then every byte mapped to its GPT-2 char. Returns 0, or -1 with err set. */
static int step_bytelevel(const pre_step_t *st, tok_scratch_t *s, err_t *err) {
    for (size_t i = 0; i < s->n; i++) {
        piece_t p = s->pieces[i];
        if (p.id >= 0 || !p.len) {
            if (p.len) scratch_emit(s, p.off, p.len, p.id, p.at_start);
            continue;
        }
        if (st->add_prefix_space && s->buf[p.off] != ' ') prepend(s, &p, " ", 1);
        if (st->use_regex) {
            if (split_piece(&st->re, SPLIT_ISOLATED, 0, s, &p, err) < 0) return -1;
        } else {
            scratch_emit(s, p.off, p.len, -1, p.at_start);
        }
    }
    scratch_swap(s);
    bytelevel_map(s);
    return 0;
}

/* Metaspace pre-tokenizer on every piece without an id: spaces become the replacement, which is
 * prepended per prepend_scheme, then optional split before each replacement. Returns 0, or -1 with
 * err set. */
static int step_metaspace(const pre_step_t *st, tok_scratch_t *s, err_t *err) {
    for (size_t i = 0; i < s->n; i++) {
        piece_t p = s->pieces[i];
        if (p.id >= 0 || !p.len) {
            if (p.len) scratch_emit(s, p.off, p.len, p.id, p.at_start);
            continue;
        }
        // ' ' -> replacement.
        size_t spaces = 0;
        for (size_t k = 0; k < p.len; k++) spaces += s->buf[p.off + k] == ' ';
        if (spaces) {
            char *w = scratch_reserve(s, p.len + spaces * (st->rep_len - 1));
            const char *src = s->buf + p.off;
            size_t o = 0;
            for (size_t k = 0; k < p.len; k++) {
                if (src[k] == ' ') {
                    memcpy(w + o, st->rep, st->rep_len);
                    o += st->rep_len;
                } else {
                    w[o++] = src[k];
                }
            }
            p.off = s->len;
            p.len = o;
            s->len += o;
        }
        int starts = p.len >= st->rep_len && memcmp(s->buf + p.off, st->rep, st->rep_len) == 0;
        if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p.at_start)))
            prepend(s, &p, st->rep, st->rep_len);
        if (st->use_regex) {
            if (split_piece(&st->re, SPLIT_MERGED_NEXT, 0, s, &p, err) < 0) return -1;
        } else {
            scratch_emit(s, p.off, p.len, -1, p.at_start);
        }
    }
    scratch_swap(s);
    return 0;
}

/* Split-like pre-tokenizer on every piece without an id, with the step's behavior and invert.
 * Returns 0, or -1 with err set. */
static int step_split(const pre_step_t *st, tok_scratch_t *s, err_t *err) {
    for (size_t i = 0; i < s->n; i++) {
        piece_t p = s->pieces[i];
        if (p.id >= 0 || !p.len) {
            if (p.len) scratch_emit(s, p.off, p.len, p.id, p.at_start);
            continue;
        }
        if (split_piece(&st->re, st->behavior, st->invert, s, &p, err) < 0) return -1;
    }
    scratch_swap(s);
    return 0;
}

int pretokenize_pieces(const tokenizer_t *tok, tok_scratch_t *s, err_t *err) {
    for (size_t k = 0; k < tok->n_pre; k++) {
        const pre_step_t *st = &tok->pre[k];
        int rc = st->kind == PRE_SPLIT       ? step_split(st, s, err)
                 : st->kind == PRE_BYTELEVEL ? step_bytelevel(st, s, err)
                                             : step_metaspace(st, s, err);
        if (rc < 0) return -1;
    }
    return 0;
}
