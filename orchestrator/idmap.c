/* idmap.c: linear-probing hash map over borrowed id strings (FNV-1a 64 with a final mix). */
#include "idmap.h"

#include <string.h>

#include "check.h"

/* FNV-1a of the NUL-terminated s, with a final mix so that the low bits are usable as a slot index. */
static uint64_t id_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    // FNV's low bits mix poorly for short numeric ids; fold the high bits in before masking.
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

void idmap_init(idmap_t *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->slots = xcalloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    m->n = 0;
}

void idmap_free(idmap_t *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* The slot holding key, or the empty slot where it belongs (linear probing). slots must have an
 * empty slot. */
static idmap_slot_t *find_slot(idmap_slot_t *slots, size_t mask, const char *key, uint64_t h) {
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        idmap_slot_t *s = &slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) return s;
    }
}

/* Double the capacity and re-insert every key. */
static void grow(idmap_t *m) {
    size_t cap = 2 * (m->mask + 1);
    idmap_slot_t *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i].key) continue;
        *find_slot(slots, cap - 1, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
}

int idmap_put(idmap_t *m, const char *key, size_t value, size_t *existing) {
    if (2 * (m->n + 1) > m->mask + 1) grow(m);
    uint64_t h = id_hash(key);
    idmap_slot_t *s = find_slot(m->slots, m->mask, key, h);
    if (s->key) {
        if (existing) *existing = s->value;
        return 0;
    }
    s->key = key, s->value = value, s->hash = h;
    m->n++;
    return 1;
}

int idmap_get(const idmap_t *m, const char *key, size_t *value) {
    const idmap_slot_t *s = find_slot(m->slots, m->mask, key, id_hash(key));
    if (!s->key) return 0;
    *value = s->value;
    return 1;
}
