/* idmap.h: an open-addressing hash map from row id strings to row indices.
 *
 * Validation and merging look every id of a 25k-row output up in the set of expected ids; a
 * linear scan would be quadratic. The map borrows its keys (it never copies them): the strings
 * must outlive it. It deliberately does not support removal.
 */
#ifndef ORCH_IDMAP_H
#define ORCH_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key;   // borrowed; NULL marks an empty slot
    size_t value;      // the row index stored with key
    uint64_t hash;     // hash of key, to skip most string compares
} idmap_slot_t;

typedef struct {
    idmap_slot_t *slots;   // (mask + 1) slots, at most half full
    size_t mask;           // capacity - 1 (capacity is a power of two)
    size_t n;              // keys stored
} idmap_t;

/* Make an empty map sized for about n keys (it grows if needed). */
void idmap_init(idmap_t *m, size_t n);
/* Free the slots and zero *m. The keys are not owned and are not freed. */
void idmap_free(idmap_t *m);

/* Insert key -> value. Returns 1 when inserted, or 0 (and sets *existing, when non-NULL, to the
 * value already stored) when an equal key is present; the map is then unchanged. */
int idmap_put(idmap_t *m, const char *key, size_t value, size_t *existing);

/* Look key up. Returns 1 and sets *value, or 0 when absent. */
int idmap_get(const idmap_t *m, const char *key, size_t *value);

#endif
