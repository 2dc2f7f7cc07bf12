/* added_tokens.c: added and special tokens ("added_tokens" in tokenizer.json), found in the
 * text before the model sees it, as HF's AddedVocabulary does.
 *
 * Loading reproduces AddedVocabulary::add_tokens: the "id" written in the file is NOT used;
 * a token's id is its id in the model vocab when its content is there, else the next free id
 * after the vocab. Tokens with normalized=false are searched in the raw text, the others in
 * each normalised piece, with their content normalised the same way.
 *
 * Matching reproduces find_matches: aho-corasick leftmost-longest (the earliest start wins,
 * then the longest content), continuing after each match's end; then single_word, lstrip and
 * rstrip, whose tests use Rust regex's Unicode \w and \s.
 *
 * Deliberately absent: encode_special_tokens (a runtime switch HF does not serialise).
 */
#include <string.h>

#include "tok_internal.h"

/* ---------------------------------------------------------------- trie -------------- */

/* Append a childless trie node reached by byte and return its index. */
static int32_t trie_new_node(added_trie_t *t, uint8_t byte) {
    if (t->n_nodes == t->cap_nodes) {
        t->cap_nodes = t->cap_nodes ? t->cap_nodes * 2 : 64;
        t->nodes = xrealloc(t->nodes, t->cap_nodes * sizeof *t->nodes);
    }
    trie_node_t *nd = &t->nodes[t->n_nodes];
    nd->first_child = nd->next_sibling = nd->pattern = -1;
    nd->byte = byte;
    return (int32_t)t->n_nodes++;
}

/* Index of node's child reached by byte, or -1. */
static int32_t trie_child(const added_trie_t *t, int32_t node, uint8_t byte) {
    for (int32_t c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].byte == byte) return c;
    return -1;
}

/* Add content -> (id, flags). A content already present keeps its first pattern, which is
 * the one aho-corasick reports for duplicate patterns. Empty contents are never added. */
static void trie_add(added_trie_t *t, const char *content, size_t len, int32_t id, added_flags_t flags) {
    if (!len) return;
    if (!t->n_nodes) trie_new_node(t, 0);
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)content[i];
        int32_t c = trie_child(t, node, b);
        if (c < 0) {
            c = trie_new_node(t, b);
            t->nodes[c].next_sibling = t->nodes[node].first_child;
            t->nodes[node].first_child = c;
        }
        node = c;
    }
    if (t->nodes[node].pattern >= 0) return;
    if (t->n_patterns == t->cap_patterns) {
        t->cap_patterns = t->cap_patterns ? t->cap_patterns * 2 : 16;
        t->ids = xrealloc(t->ids, t->cap_patterns * sizeof *t->ids);
        t->flags = xrealloc(t->flags, t->cap_patterns * sizeof *t->flags);
    }
    t->ids[t->n_patterns] = id;
    t->flags[t->n_patterns] = flags;
    t->nodes[node].pattern = (int32_t)t->n_patterns++;
    t->first[(uint8_t)content[0]] = 1;
}

void added_trie_free(added_trie_t *t) {
    free(t->nodes);
    free(t->ids);
    free(t->flags);
    memset(t, 0, sizeof *t);
}

/* Leftmost-longest match in s[from..len). Returns 1 and fills *ms, *me, *pat, or 0. */
static int trie_find(const added_trie_t *t, const char *s, size_t len, size_t from, size_t *ms, size_t *me,
                     int32_t *pat) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = from; i < len; i++) {
        if (!t->first[u[i]]) continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < len; j++) {
            node = trie_child(t, node, u[j]);
            if (node < 0) break;
            if (t->nodes[node].pattern >= 0) {
                best = t->nodes[node].pattern;
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            *pat = best;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- matching ---------- */

/* Rust regex \w on the char starting at s[at] (valid UTF-8). */
static int is_word_char(const tokenizer_t *tok, tok_scratch_t *sc, const char *s, size_t len, size_t at) {
    if (!sc->md) {
        sc->md = pcre2_match_data_create(1, NULL);
        if (!sc->md) {
            fprintf(stderr, "fatal: out of host memory creating PCRE2 match data\n");
            abort();
        }
    }
    // \G anchors at `at` without PCRE2_ANCHORED, which JIT code would refuse at match time.
    int rc = tok->word_re.jit ? pcre2_jit_match(tok->word_re.code, (PCRE2_SPTR)s, len, at, 0, sc->md, NULL)
                              : pcre2_match(tok->word_re.code, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK,
                                            sc->md, NULL);
    return rc >= 0;
}

/* Start of the char that ends at s[end] (exclusive); end > 0. */
static size_t prev_char(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Split piece p (no id yet) by the trie into s->next, exactly like find_matches followed by
 * split_with_indices and the empty-piece filter. Returns 0, or -1 with err set. */
static int split_one(const tokenizer_t *tok, const added_trie_t *t, tok_scratch_t *s, const piece_t *p,
                     err_t *err) {
    const char *str = s->buf + p->off;
    size_t len = p->len, start_offset = 0, pos = 0, ms, me;
    int32_t pat;
    while (pos < len && trie_find(t, str, len, pos, &ms, &me, &pat)) {
        pos = me;  // aho-corasick's iterator resumes after the raw match
        added_flags_t f = t->flags[pat];
        size_t start = ms, stop = me;
        if (f.single_word) {
            int start_space = start == 0 || !is_word_char(tok, s, str, len, prev_char(str, start));
            int stop_space = stop == len || !is_word_char(tok, s, str, len, stop);
            if (!start_space || !stop_space) continue;
        }
        if (f.lstrip) {
            // Start of the run of whitespace that ends at `start` (regex \s*$ on the prefix).
            size_t ns = start;
            while (ns > 0) {
                size_t c = prev_char(str, ns), n;
                if (!uni_is_white_space(utf8_decode(str + c, &n))) break;
                ns = c;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (f.rstrip) {
            while (stop < len) {
                size_t n;
                if (!uni_is_white_space(utf8_decode(str + stop, &n))) break;
                stop += n;
            }
        }
        if (start > stop)
            return err_fmt(err, "added tokens overlap after rstrip at byte %zu; HF cannot encode this either",
                           p->off + ms);
        if (start_offset < start) scratch_emit(s, p->off + start_offset, start - start_offset, -1,
                                               start_offset == 0 && p->at_start);
        scratch_emit(s, p->off + start, stop - start, t->ids[pat], start == 0 && p->at_start);
        start_offset = stop;
    }
    if (start_offset < len)
        scratch_emit(s, p->off + start_offset, len - start_offset, -1, start_offset == 0 && p->at_start);
    return 0;
}

int added_split(const tokenizer_t *tok, const added_trie_t *t, tok_scratch_t *s, err_t *err) {
    if (!t->n_patterns) return 0;
    for (size_t i = 0; i < s->n; i++) {
        const piece_t *p = &s->pieces[i];
        if (p->id >= 0 || !p->len) {
            if (p->len) scratch_emit(s, p->off, p->len, p->id, p->at_start);
            continue;
        }
        if (split_one(tok, t, s, p, err) < 0) return -1;
    }
    scratch_swap(s);
    return 0;
}

/* Split one freshly normalised piece by the normalized-token trie; used by normalize.c. */
int added_split_piece(const tokenizer_t *tok, const added_trie_t *t, tok_scratch_t *s, const piece_t *p,
                      err_t *err);
int added_split_piece(const tokenizer_t *tok, const added_trie_t *t, tok_scratch_t *s, const piece_t *p,
                      err_t *err) {
    if (!p->len) return 0;
    if (!t->n_patterns) {
        scratch_emit(s, p->off, p->len, p->id, p->at_start);
        return 0;
    }
    return split_one(tok, t, s, p, err);
}

/* ---------------------------------------------------------------- loading ----------- */

typedef struct {
    const char *content;   // borrowed from the JSON
    size_t len;            // bytes in content
    added_flags_t f;       // the token's flags
} atok_t;

/* 1 when a and b have the same five flags, else 0. */
static int flags_equal(added_flags_t a, added_flags_t b) {
    return a.single_word == b.single_word && a.lstrip == b.lstrip && a.rstrip == b.rstrip &&
           a.normalized == b.normalized && a.special == b.special;
}

/* Read boolean member key of added_tokens[i] into *out, dflt when absent or null. Returns 0, or -1
 * with err set. */
static int read_flag(json_t *o, const char *key, int dflt, uint8_t *out, size_t i, err_t *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = (uint8_t)dflt; return 0; }
    if (!json_is_boolean(v)) return err_fmt(err, "added_tokens[%zu].%s: expected true or false", i, key);
    *out = (uint8_t)json_is_true(v);
    return 0;
}

int added_tokens_load(tokenizer_t *tok, json_t *arr, err_t *err) {
    strmap_init(&tok->added, 64);
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return err_fmt(err, "added_tokens: expected an array");
    size_t n = json_array_size(arr);
    atok_t *toks = xcalloc(n ? n : 1, sizeof *toks);
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        if (!json_is_object(o)) { err_fmt(err, "added_tokens[%zu]: expected an object", i); goto done; }
        json_t *c = json_object_get(o, "content");
        if (!json_is_string(c)) { err_fmt(err, "added_tokens[%zu].content: expected a string", i); goto done; }
        toks[i].content = json_string_value(c);
        toks[i].len = json_string_length(c);
        if (read_flag(o, "single_word", 0, &toks[i].f.single_word, i, err) < 0 ||
            read_flag(o, "lstrip", 0, &toks[i].f.lstrip, i, err) < 0 ||
            read_flag(o, "rstrip", 0, &toks[i].f.rstrip, i, err) < 0 ||
            read_flag(o, "normalized", 1, &toks[i].f.normalized, i, err) < 0 ||
            read_flag(o, "special", 0, &toks[i].f.special, i, err) < 0)
            goto done;
    }
    // Pass 1: the special tokens, first occurrence of each content.
    strmap_t special_set = {0};
    size_t *order = xmalloc((n ? n : 1) * 2 * sizeof *order), n_order = 0;
    for (size_t i = 0; i < n; i++) {
        if (!toks[i].f.special || !toks[i].len) continue;
        if (strmap_get(&special_set, toks[i].content, toks[i].len) >= 0) continue;
        strmap_put(&special_set, toks[i].content, toks[i].len, 1);
        order[n_order++] = i;
    }
    // Pass 2: ids. by_id maps an id to the last token given that id (added_tokens_map_r).
    pairmap_t by_id;
    pairmap_init(&by_id, n);
    int64_t max_added = -1;
    for (size_t i = 0; i < n; i++) {
        atok_t *t = &toks[i];
        if (!t->len) continue;
        int32_t id = strmap_get(&tok->added, t->content, t->len);
        if (id >= 0) {
            const pairmap_slot_t *prev = pairmap_get(&by_id, id, 0);
            if (prev && toks[prev->rank].len == t->len && !memcmp(toks[prev->rank].content, t->content, t->len) &&
                flags_equal(toks[prev->rank].f, t->f))
                continue;  // the very same token again
        } else {
            id = strmap_get(&tok->bpe.vocab, t->content, t->len);
        }
        if (id < 0) {
            size_t vs = tok->bpe.vocab_len;
            if (max_added < 0) id = (int32_t)vs;
            else if ((size_t)max_added >= vs || vs == 0) id = (int32_t)(max_added + 1);
            else id = (int32_t)vs;
            if (id < 0) { err_fmt(err, "added_tokens[%zu]: id overflows", i); goto done2; }
        }
        strmap_put(&tok->added, t->content, t->len, id);
        if (id > max_added) max_added = id;
        pairmap_put(&by_id, id, 0, (uint32_t)i, id);
        if (strmap_get(&special_set, t->content, t->len) < 0) order[n_order++] = i;
        if ((size_t)id + 1 > tok->n_ids) tok->n_ids = (size_t)id + 1;
    }
    // Pass 3: the two tries, in HF's order (special tokens, then the others).
    if (!tok->word_re.code) {
        for (size_t k = 0; k < n_order; k++) {
            int32_t id = strmap_get(&tok->added, toks[order[k]].content, toks[order[k]].len);
            const pairmap_slot_t *owner = pairmap_get(&by_id, id, 0);
            if (toks[owner->rank].f.single_word) {
                static const char word[] = "\\G[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";
                if (tok_regex_compile(&tok->word_re, word, sizeof word - 1, 0, "added_tokens", err) < 0)
                    goto done2;
                break;
            }
        }
    }
    for (size_t k = 0; k < n_order; k++) {
        atok_t *t = &toks[order[k]];
        int32_t id = strmap_get(&tok->added, t->content, t->len);
        added_flags_t f = toks[pairmap_get(&by_id, id, 0)->rank].f;
        if (!t->f.normalized) {
            trie_add(&tok->raw_trie, t->content, t->len, id, f);
        } else if (!tok->n_norm) {
            trie_add(&tok->norm_trie, t->content, t->len, id, f);
        } else {
            size_t nl;
            char *norm = normalize_string(tok, t->content, t->len, &nl, err);
            if (!norm) { err_prefix(err, "added_tokens[%zu]", order[k]); goto done2; }
            trie_add(&tok->norm_trie, norm, nl, id, f);
            free(norm);
        }
    }
    rc = 0;
done2:
    pairmap_free(&by_id);
    strmap_free(&special_set);
    free(order);
done:
    free(toks);
    return rc;
}
