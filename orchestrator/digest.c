/* digest.c: XXH64 (Yann Collet's algorithm, re-implemented from its specification) run with two
 * seeds at once, for the 128-bit digests of digest.h. Reads are little-endian byte by byte, so
 * the digest is the same on every host. */
#include "digest.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

/* x rotated left by r bits (0 < r < 64). */
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* The little-endian 64-bit value at p (any alignment). */
static inline uint64_t read64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The little-endian 32-bit value at p (any alignment). */
static inline uint32_t read32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* XXH64's round: mix one 8-byte input into an accumulator. */
static inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

/* XXH64's merge of one lane accumulator v into the hash h. */
static inline uint64_t xxh_merge(uint64_t h, uint64_t v) {
    h ^= xxh_round(0, v);
    return h * P1 + P4;
}

/* Set the four XXH64 lane accumulators for seed. */
static void lanes_init(uint64_t v[4], uint64_t seed) {
    v[0] = seed + P1 + P2;
    v[1] = seed + P2;
    v[2] = seed;
    v[3] = seed - P1;
}

/* Consume one 32-byte stripe at p into the four lanes. */
static inline void stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = xxh_round(v[0], read64(p));
    v[1] = xxh_round(v[1], read64(p + 8));
    v[2] = xxh_round(v[2], read64(p + 16));
    v[3] = xxh_round(v[3], read64(p + 24));
}

/* The XXH64 finalisation: fold lanes (or the seed for short inputs), the length, the tail. */
static uint64_t xxh_finish(const uint64_t v[4], uint64_t seed, uint64_t total, const uint8_t *tail,
                           size_t n) {
    uint64_t h;
    if (total >= 32) {
        h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
        for (int i = 0; i < 4; i++) h = xxh_merge(h, v[i]);
    } else {
        h = seed + P5;
    }
    h += total;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h ^= xxh_round(0, read64(tail + i));
        h = rotl64(h, 27) * P1 + P4;
    }
    if (i + 4 <= n) {
        h ^= (uint64_t)read32(tail + i) * P1;
        h = rotl64(h, 23) * P2 + P3;
        i += 4;
    }
    for (; i < n; i++) {
        h ^= tail[i] * P5;
        h = rotl64(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

void digest_init(digest_t *d) {
    memset(d, 0, sizeof *d);
    lanes_init(d->v[0], 0);
    lanes_init(d->v[1], 1);
}

void digest_update(digest_t *d, const void *data, size_t len) {
    const uint8_t *p = data;
    d->total += len;
    if (d->n_buf) {
        size_t take = 32 - d->n_buf < len ? 32 - d->n_buf : len;
        memcpy(d->buf + d->n_buf, p, take);
        d->n_buf += take, p += take, len -= take;
        if (d->n_buf < 32) return;
        stripe(d->v[0], d->buf);
        stripe(d->v[1], d->buf);
        d->n_buf = 0;
    }
    for (; len >= 32; p += 32, len -= 32) {
        stripe(d->v[0], p);
        stripe(d->v[1], p);
    }
    if (len) memcpy(d->buf, p, len);
    d->n_buf = len;
}

void digest_field(digest_t *d, const char *tag, const char *s) {
    char head[96];
    int n = s ? snprintf(head, sizeof head, "%s:%zu:", tag, strlen(s))
              : snprintf(head, sizeof head, "%s:-:", tag);
    digest_update(d, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
    if (s) digest_update(d, s, strlen(s));
}

void digest_hex(const digest_t *d, char out[DIGEST_HEX_LEN + 1]) {
    uint64_t h0 = xxh_finish(d->v[0], 0, d->total, d->buf, d->n_buf);
    uint64_t h1 = xxh_finish(d->v[1], 1, d->total, d->buf, d->n_buf);
    snprintf(out, DIGEST_HEX_LEN + 1, "%016llx%016llx", (unsigned long long)h0,
             (unsigned long long)h1);
}

uint64_t digest_xxh64(const void *data, size_t len, uint64_t seed) {
    uint64_t v[4];
    lanes_init(v, seed);
    const uint8_t *p = data;
    size_t n = len;
    for (; n >= 32; p += 32, n -= 32) stripe(v, p);
    return xxh_finish(v, seed, len, p, n);
}

/* Feed one stat result: size and nanosecond mtime. */
static void stamp_stat(digest_t *d, const struct stat *st) {
    uint64_t v[3] = {(uint64_t)st->st_size, (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec};
    digest_update(d, v, sizeof v);
}

void digest_path_stamp(digest_t *d, const char *tag, const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        digest_field(d, tag, NULL);
        return;
    }
    digest_field(d, tag, path);
    if (!S_ISDIR(st.st_mode)) {
        stamp_stat(d, &st);
        return;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
        char *full = xmalloc(len);
        snprintf(full, len, "%s/%s", path, names[i]->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            digest_field(d, "file", names[i]->d_name);
            stamp_stat(d, &st);
        }
        free(full);
        free(names[i]);
    }
    free(names);
}
