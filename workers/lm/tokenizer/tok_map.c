/* tok_map.c: the two hash maps behind the tokenizer: token string -> id, and BPE merge pair ->
 * (rank, merged id).
 *
 * Both are open-addressing tables with linear probing kept at most half full, because encode
 * does several lookups per input character (Gemma's whole paragraph is one BPE word) and a
 * probe that usually touches one cache line matters more than memory. Keys of the string map
 * live in one pool so that a 256k-entry vocabulary is a handful of allocations.
 *
 * Deliberately absent: deletion (a loaded tokenizer never changes).
 */
#include <string.h>

#include "tok_internal.h"

/* A fast 64-bit hash of n bytes: 8 bytes per step, multiply-xorshift mixing. Not
 * cryptographic; tokenizer files are trusted inputs and texts only drive lookups. */
uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v ^ ((uint64_t)n << 59)) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

/* Smallest power of two >= expected * num / den (and >= 16). */
static size_t pow2_for(size_t expected, size_t num, size_t den) {
    size_t cap = 16;
    while (cap * den < expected * num) cap <<= 1;
    return cap;
}

/* The key's first 8 bytes, zero-padded (strmap_slot_t.head). */
static inline uint64_t key_head(const char *key, size_t len) {
    uint64_t h = 0;
    memcpy(&h, key, len < 8 ? len : 8);
    return h;
}

/* 1 when slot s holds exactly key[0..len) (h32: the key's low hash bits, head: key_head), else 0. */
static inline int slot_is(const strmap_t *m, const strmap_slot_t *s, uint32_t h32, uint64_t head, const char *key,
                          size_t len) {
    return s->hash == h32 && s->len == len && s->head == head &&
           (len <= 8 || memcmp(m->pool + s->off + 8, key + 8, len - 8) == 0);
}

/* ---------------------------------------------------------------- string -> id ------ */

void strmap_init(strmap_t *m, size_t expected) {
    size_t cap = pow2_for(expected, 2, 1);
    m->slots = xmalloc(cap * sizeof *m->slots);
    for (size_t i = 0; i < cap; i++) m->slots[i].val = -1;
    m->mask = cap - 1;
    m->n = 0;
    m->pool_cap = expected * 8 + 64;
    m->pool = xmalloc(m->pool_cap);
    m->pool_len = 0;
}

void strmap_free(strmap_t *m) {
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

void strmap_prefetch(const strmap_t *m, uint64_t h) {
    __builtin_prefetch(&m->slots[(size_t)(h >> 32) & m->mask]);
}

int32_t strmap_get(const strmap_t *m, const char *key, size_t len) {
    return strmap_get_h(m, key, len, tok_hash(key, len));
}

int32_t strmap_get_h(const strmap_t *m, const char *key, size_t len, uint64_t h) {
    if (!m->slots) return -1;
    uint64_t head = key_head(key, len);
    uint32_t h32 = (uint32_t)h;
    size_t i = (size_t)(h >> 32) & m->mask;
    for (;;) {
        const strmap_slot_t *s = &m->slots[i];
        if (s->val < 0) return -1;
        if (slot_is(m, s, h32, head, key, len)) return s->val;
        i = (i + 1) & m->mask;
    }
}

/* Double the slot array and re-insert every key (the pool is kept as is). */
static void strmap_grow(strmap_t *m) {
    size_t cap = (m->mask + 1) * 2;
    strmap_slot_t *old = m->slots;
    size_t old_cap = m->mask + 1;
    m->slots = xmalloc(cap * sizeof *m->slots);
    for (size_t i = 0; i < cap; i++) m->slots[i].val = -1;
    m->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].val < 0) continue;
        uint64_t h = tok_hash(m->pool + old[i].off, old[i].len);
        size_t j = (size_t)(h >> 32) & m->mask;
        while (m->slots[j].val >= 0) j = (j + 1) & m->mask;
        m->slots[j] = old[i];
    }
    free(old);
}

int strmap_put(strmap_t *m, const char *key, size_t len, int32_t val) {
    ASSERT(val >= 0);
    if (!m->slots) strmap_init(m, 16);
    uint64_t h = tok_hash(key, len), head = key_head(key, len);
    uint32_t h32 = (uint32_t)h;
    size_t i = (size_t)(h >> 32) & m->mask;
    for (;;) {
        strmap_slot_t *s = &m->slots[i];
        if (s->val < 0) break;
        if (slot_is(m, s, h32, head, key, len)) {
            s->val = val;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    if (m->pool_len + len > UINT32_MAX) return -1;
    if (m->pool_len + len > m->pool_cap) {
        while (m->pool_len + len > m->pool_cap) m->pool_cap *= 2;
        m->pool = xrealloc(m->pool, m->pool_cap);
    }
    memcpy(m->pool + m->pool_len, key, len);
    strmap_slot_t *s = &m->slots[i];
    s->off = (uint32_t)m->pool_len;
    s->len = (uint32_t)len;
    s->hash = h32;
    s->head = head;
    s->val = val;
    m->pool_len += len;
    if (++m->n * 2 > m->mask + 1) strmap_grow(m);
    return 0;
}

/* ---------------------------------------------------------------- pair -> merge ----- */

void pairmap_init(pairmap_t *m, size_t expected) {
    size_t cap = pow2_for(expected, 4, 3);
    m->slots = xmalloc(cap * sizeof *m->slots);
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
}

void pairmap_prefetch(const pairmap_t *m, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    __builtin_prefetch(&m->slots[(size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask], 1);
}

void pairmap_free(pairmap_t *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Double the slot array and re-insert every pair. */
static void pairmap_grow(pairmap_t *m) {
    pairmap_slot_t *old = m->slots;
    size_t old_cap = m->mask + 1;
    pairmap_init(m, old_cap + old_cap / 2);  // doubles the capacity
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key != UINT64_MAX)
            pairmap_put(m, (int32_t)(old[i].key >> 32), (int32_t)(uint32_t)old[i].key, old[i].rank, old[i].id);
    free(old);
}

void pairmap_put(pairmap_t *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if (!m->slots) pairmap_init(m, 16);
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (m->slots[i].key == UINT64_MAX) m->n++;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
    if (m->n * 4 > (m->mask + 1) * 3) pairmap_grow(m);
}
