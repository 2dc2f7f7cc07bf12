/* normalize.c: the normalizer stage: each piece not yet claimed by an added token is rewritten
 * by the normalizer steps in order, then searched for normalized added tokens.
 *
 * Supported steps (HF normalizers): Replace (string or regex pattern, literal replacement),
 * Prepend (only on a non-empty piece), Strip (Unicode White_Space, either end) and ByteLevel.
 * A step that changes nothing leaves the piece where it is; one that changes it writes a new
 * string at the end of the scratch arena.
 *
 * Deliberately absent: Unicode normalisation forms, Lowercase, BertNormalizer, Precompiled.
 * They need Unicode tables we do not carry; tok_config.c rejects them at load.
 */
#include <string.h>

#include "tok_internal.h"

int added_split_piece(const tokenizer_t *tok, const added_trie_t *t, tok_scratch_t *s, const piece_t *p,
                      err_t *err);

/* Apply one step to the string at arena [*off, *off + *len). */
static int norm_step(const norm_step_t *st, tok_scratch_t *s, size_t *off, size_t *len, err_t *err) {
    switch (st->kind) {
    case NORM_REPLACE: {
        if (regex_find_matches(&st->re, s, s->buf + *off, *len, err) < 0) return -1;
        size_t n_match = 0, keep = 0;
        for (size_t i = 0; i < s->n_spans; i++) {
            if (s->is_match[i]) n_match++;
            else keep += s->spans[i].end - s->spans[i].start;
        }
        if (!n_match) return 0;
        size_t out_len = keep + n_match * st->str_len;
        char *w = scratch_reserve(s, out_len);
        const char *src = s->buf + *off;  // after the reserve: the arena may have moved
        size_t o = 0;
        for (size_t i = 0; i < s->n_spans; i++) {
            if (s->is_match[i]) {
                memcpy(w + o, st->str, st->str_len);
                o += st->str_len;
            } else {
                size_t l = s->spans[i].end - s->spans[i].start;
                memcpy(w + o, src + s->spans[i].start, l);
                o += l;
            }
        }
        *off = s->len;
        *len = out_len;
        s->len += out_len;
        return 0;
    }
    case NORM_PREPEND: {
        if (!*len) return 0;
        char *w = scratch_reserve(s, st->str_len + *len);
        memcpy(w, st->str, st->str_len);
        memcpy(w + st->str_len, s->buf + *off, *len);
        *off = s->len;
        *len += st->str_len;
        s->len += *len;
        return 0;
    }
    case NORM_STRIP: {
        const char *str = s->buf + *off;
        size_t a = 0, b = *len, n;
        if (st->left)
            while (a < b && uni_is_white_space(utf8_decode(str + a, &n))) a += n;
        if (st->right)
            while (b > a) {
                size_t c = b - 1;
                while (c > a && ((unsigned char)str[c] & 0xC0) == 0x80) c--;
                if (!uni_is_white_space(utf8_decode(str + c, &n))) break;
                b = c;
            }
        *off += a;
        *len = b - a;
        return 0;
    }
    case NORM_BYTELEVEL: {
        const bytechar_t *bc = tok_bytechars();
        char *w = scratch_reserve(s, *len * 2);
        const unsigned char *src = (const unsigned char *)s->buf + *off;
        size_t o = 0;
        for (size_t i = 0; i < *len; i++) {
            const bytechar_t *c = &bc[src[i]];
            w[o] = c->s[0];
            if (c->len == 2) w[o + 1] = c->s[1];
            o += c->len;
        }
        *off = s->len;
        *len = o;
        s->len += o;
        return 0;
    }
    }
    return 0;
}

int normalize_pieces(const tokenizer_t *tok, tok_scratch_t *s, err_t *err) {
    if (!tok->n_norm && !tok->norm_trie.n_patterns) return 0;
    for (size_t i = 0; i < s->n; i++) {
        piece_t p = s->pieces[i];
        if (p.id >= 0) {
            scratch_emit(s, p.off, p.len, p.id, p.at_start);
            continue;
        }
        for (size_t k = 0; k < tok->n_norm; k++)
            if (norm_step(&tok->norm[k], s, &p.off, &p.len, err) < 0) return -1;
        if (added_split_piece(tok, &tok->norm_trie, s, &p, err) < 0) return -1;
    }
    scratch_swap(s);
    return 0;
}

char *normalize_string(const tokenizer_t *tok, const char *str, size_t len, size_t *out_len, err_t *err) {
    tok_scratch_t s = {0};
    char *w = scratch_reserve(&s, len);
    if (len) memcpy(w, str, len);
    s.len = len;
    size_t off = 0, n = len;
    char *res = NULL;
    for (size_t k = 0; k < tok->n_norm; k++)
        if (norm_step(&tok->norm[k], &s, &off, &n, err) < 0) goto done;
    res = xmalloc(n + 1);
    if (n) memcpy(res, s.buf + off, n);
    res[n] = '\0';
    *out_len = n;
done:
    scratch_free(&s);
    return res;
}
