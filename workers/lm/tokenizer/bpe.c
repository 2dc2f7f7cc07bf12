/* bpe.c: the BPE model on one pre-token ("word"), as HF models::bpe::BPE::tokenize does it.
 *
 * A word becomes one symbol per char (with continuing_subword_prefix / end_of_word_suffix
 * attached where configured); chars missing from the vocab become <0xNN> byte tokens under
 * byte_fallback, else the unk token (fused when fuse_unk), else nothing. Then merges apply
 * lowest rank first, leftmost first among equal ranks: a binary min-heap of candidate pairs
 * over a doubly linked list of symbols, with stale candidates discarded when popped. That is
 * O(n log n) per word, which matters because Gemma has no pre-tokenizer and a whole
 * paragraph is one word (long words are first cut where no merge can cross; see
 * bpe_encode_word). With ignore_merges, a word that is itself in the vocab is one token.
 *
 * The merge table is large (580k pairs for Gemma, 16 MiB), so a lookup is usually a cache
 * miss; long words therefore go through a small direct-mapped cache of recent lookups that
 * lives in the per-call scratch (natural text repeats its pairs a lot).
 *
 * Deliberately absent: dropout (random; rejected at load) and a word cache. A word cache would
 * need locking or per-thread state to stay thread-safe, and the words that repeat are mostly
 * whole vocab entries, which ignore_merges or a one-symbol word already make cheap.
 */
#include <string.h>

#include "tok_internal.h"

/* Heap order: lower rank first, then the leftmost position (HF's merge order). */
static inline int merge_less(const bpe_merge_t *a, const bpe_merge_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

/* Restore the min-heap property of h[0..n) below position i. */
static void heap_sift_down(bpe_merge_t *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && merge_less(&h[l], &h[m])) m = l;
        if (l + 1 < n && merge_less(&h[l + 1], &h[m])) m = l + 1;
        if (m == i) return;
        bpe_merge_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Insert v into the min-heap h of *n entries (room for one more required). */
static void heap_push(bpe_merge_t *h, size_t *n, bpe_merge_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

/* Words with more symbols than this use the pair cache; shorter ones are not worth its reset. */
#define PCACHE_MIN_SYMBOLS 48

/* Merged id of (a, b) and its rank, or -1 when no merge applies. c may be NULL. */
static inline int32_t pair_find(const bpe_model_t *m, bpe_pcache_t *c, int32_t a, int32_t b, uint32_t *rank) {
    if (c) {
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        bpe_pcache_t *e = &c[(key * 0x9E3779B97F4A7C15ull) >> (64 - BPE_PCACHE_BITS)];
        if (e->key != key) {
            const pairmap_slot_t *mg = pairmap_get(&m->merges, a, b);
            e->key = key;
            e->rank = mg ? mg->rank : 0;
            e->id = mg ? mg->id : -1;
        }
        *rank = e->rank;
        return e->id;
    }
    const pairmap_slot_t *mg = pairmap_get(&m->merges, a, b);
    if (!mg) return -1;
    *rank = mg->rank;
    return mg->id;
}

/* Id of the char c (bytes [0..cl)) at its position in the word, or -1. */
static int32_t char_id(const bpe_model_t *m, tok_scratch_t *s, const char *c, size_t cl, int first, int last,
                       const char **full, size_t *full_len) {
    if (m->cp_id) {
        *full = c;
        *full_len = cl;
        if (cl <= 3) {
            size_t n;
            return m->cp_id[utf8_decode(c, &n)];
        }
        return strmap_get(&m->vocab, c, cl);
    }
    size_t need = m->prefix_len + cl + m->suffix_len, o = 0;
    if (s->cap_word < need) {
        s->cap_word = need * 2;
        s->word = xrealloc(s->word, s->cap_word);
    }
    if (!first && m->prefix) { memcpy(s->word, m->prefix, m->prefix_len); o = m->prefix_len; }
    memcpy(s->word + o, c, cl);
    o += cl;
    if (last && m->suffix) { memcpy(s->word + o, m->suffix, m->suffix_len); o += m->suffix_len; }
    *full = s->word;
    *full_len = o;
    return strmap_get(&m->vocab, s->word, o);
}

/* BPE on word[0..len) without the ignore_merges shortcut: symbols, then merges. */
static int merge_word(const bpe_model_t *m, tok_scratch_t *s, const char *word, size_t len, ids_t *out, err_t *err) {
    if (len > INT32_MAX / 2)  // symbol links are int32
        return err_fmt(err, "a %zu-byte piece is too long for one BPE word", len);
    // Symbols: at most one per byte (a byte-fallback char yields one per byte).
    if (s->cap_syms < len) {
        s->cap_syms = len * 2;
        s->syms = xrealloc(s->syms, s->cap_syms * sizeof *s->syms);
    }
    bpe_sym_t *sym = s->syms;
    size_t n = 0;
    int32_t pending_unk = -1;  // an unk not yet added (fuse_unk keeps extending it)
    for (size_t i = 0; i < len;) {
        size_t cl = utf8_len((unsigned char)word[i]);
        const char *full;
        size_t full_len;
        int32_t id = char_id(m, s, word + i, cl, i == 0, i + cl == len, &full, &full_len);
        i += cl;
        if (id >= 0) {
            if (pending_unk >= 0) { sym[n++].id = pending_unk; pending_unk = -1; }
            sym[n++].id = id;
            continue;
        }
        if (m->byte_fallback) {
            size_t k = 0;
            while (k < full_len && m->byte_ids[(unsigned char)full[k]] >= 0) k++;
            if (k == full_len) {
                if (s->cap_syms < n + full_len + (len - i) + 1) {
                    s->cap_syms = (n + full_len + (len - i) + 1) * 2;
                    s->syms = xrealloc(s->syms, s->cap_syms * sizeof *s->syms);
                    sym = s->syms;
                }
                // HF leaves a pending unk pending here; it lands after these bytes.
                for (k = 0; k < full_len; k++) sym[n++].id = m->byte_ids[(unsigned char)full[k]];
                continue;
            }
        }
        if (m->unk_token) {
            if (m->unk_id < 0)
                return err_fmt(err, "model.unk_token \"%s\" is not in model.vocab, and the text needs it",
                               m->unk_token);
            if (pending_unk >= 0 && !m->fuse_unk) sym[n++].id = pending_unk;
            pending_unk = m->unk_id;
        }
    }
    if (pending_unk >= 0) sym[n++].id = pending_unk;
    if (!n) return 0;
    for (size_t k = 0; k < n; k++) {
        sym[k].prev = (int32_t)k - 1;
        sym[k].next = k + 1 < n ? (int32_t)k + 1 : -1;
    }

    // Merge candidates: every adjacent pair with a merge, then up to two new ones per merge.
    if (s->cap_heap < 3 * n) {
        s->cap_heap = 3 * n;
        s->heap = xrealloc(s->heap, s->cap_heap * sizeof *s->heap);
    }
    bpe_pcache_t *pc = NULL;
    if (n > PCACHE_MIN_SYMBOLS) {
        if (!s->pcache) s->pcache = xmalloc(BPE_PCACHE * sizeof *s->pcache);
        if (s->pcache_owner != m->uid) {
            // The cache holds this model's merges, not this word's: it stays valid across the
            // words and calls of one thread until another tokenizer uses the scratch.
            memset(s->pcache, 0xFF, BPE_PCACHE * sizeof *s->pcache);
            s->pcache_owner = m->uid;
        }
        pc = s->pcache;
    }
    bpe_merge_t *h = s->heap;
    size_t hn = 0;
    uint32_t rank;
    int32_t mid;
    for (size_t k = 0; k + 1 < n; k++)
        if ((mid = pair_find(m, pc, sym[k].id, sym[k + 1].id, &rank)) >= 0)
            h[hn++] = (bpe_merge_t){rank, (uint32_t)k, mid};
    for (size_t k = hn / 2; k-- > 0;) heap_sift_down(h, hn, k);
    while (hn) {
        bpe_merge_t top = h[0];
        h[0] = h[--hn];
        heap_sift_down(h, hn, 0);
        bpe_sym_t *cur = &sym[top.pos];
        if (cur->id < 0 || cur->next < 0) continue;  // merged away, or now last
        bpe_sym_t *right = &sym[cur->next];
        if (pair_find(m, pc, cur->id, right->id, &rank) != top.id) continue;  // a stale candidate
        cur->id = top.id;
        int32_t rn = right->next;
        right->id = -1;
        cur->next = rn;
        if (rn >= 0) sym[rn].prev = (int32_t)top.pos;
        if (cur->prev >= 0 && (mid = pair_find(m, pc, sym[cur->prev].id, cur->id, &rank)) >= 0)
            heap_push(h, &hn, (bpe_merge_t){rank, (uint32_t)cur->prev, mid});
        if (rn >= 0 && (mid = pair_find(m, pc, cur->id, sym[rn].id, &rank)) >= 0)
            heap_push(h, &hn, (bpe_merge_t){rank, top.pos, mid});
    }
    for (int32_t k = 0; k >= 0; k = sym[k].next) ids_push(out, sym[k].id);
    return 0;
}

/* Words at least this long are cut at safe boundaries before merging. */
#define SEGMENT_MIN_BYTES 24

int bpe_encode_word(const bpe_model_t *m, tok_scratch_t *s, const char *word, size_t len, ids_t *out, err_t *err) {
    if (!len) return 0;
    if (m->ignore_merges) {
        int32_t id = strmap_get(&m->vocab, word, len);
        if (id >= 0) {
            ids_push(out, id);
            return 0;
        }
    }
    if (!m->cp_id || len < SEGMENT_MIN_BYTES) return merge_word(m, s, word, len, out, err);
    // Cut between two chars that both are vocab tokens and never stand side by side inside any
    // vocab token: every symbol is then a substring of the vocab, so no merge can produce a
    // token spanning the cut, and BPE on each segment alone gives the same ids as on the
    // whole word (merges inside one segment never change another's candidates). Both chars
    // being known also means no pending unk crosses the cut. This turns Gemma's paragraphs
    // into words.
    size_t seg = 0, n;
    uint32_t prev_cp = 0;
    int prev_known = 0;
    for (size_t i = 0; i < len; i += n) {
        const char *full;
        size_t full_len;
        n = utf8_len((unsigned char)word[i]);
        uint32_t cp = utf8_decode(word + i, &n);
        int known = char_id(m, s, word + i, n, 0, 0, &full, &full_len) >= 0;
        if (known && prev_known && !pairmap_get(&m->bigrams, (int32_t)prev_cp, (int32_t)cp)) {
            if (merge_word(m, s, word + seg, i - seg, out, err) < 0) return -1;
            seg = i;
        }
        prev_cp = cp;
        prev_known = known;
    }
    return merge_word(m, s, word + seg, len - seg, out, err);
}
