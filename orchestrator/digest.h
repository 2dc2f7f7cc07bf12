/* digest.h: a 128-bit content digest for resume keys and content-derived shard names.
 *
 * The digest is two XXH64 hashes (seeds 0 and 1) of the same bytes, computed in one pass and
 * printed as 32 hex digits. XXH64 is a published, well-tested non-cryptographic hash with
 * reference test vectors; two seeds give 128 bits, so accidental collisions between shards or
 * settings are out of the question. It deliberately does not resist an adversary: resume keys
 * only need to tell our own files apart, and a fast hash keeps hashing a 100 MB input cheap.
 */
#ifndef ORCH_DIGEST_H
#define ORCH_DIGEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t v[2][4];   // (seed, lane) XXH64 accumulators
    uint64_t total;     // bytes fed so far
    uint8_t buf[32];    // partial stripe not yet folded into v
    size_t n_buf;       // bytes held in buf (< 32)
} digest_t;

#define DIGEST_HEX_LEN 32

/* Start a digest. */
void digest_init(digest_t *d);

/* Feed len bytes. */
void digest_update(digest_t *d, const void *data, size_t len);

/* Feed a tagged field as "tag", its length and its bytes, so that consecutive fields cannot run
 * into each other ("ab"+"c" and "a"+"bc" digest differently). s may be NULL (absent), which
 * digests differently from "". */
void digest_field(digest_t *d, const char *tag, const char *s);

/* Feed a cheap stamp of what is at path: for a regular file its size and modification time; for
 * a directory the name, size and modification time of each regular file directly inside it, in
 * name order (not recursive: checkpoints and adapters are flat). A missing path digests as
 * absent. It reads no file contents, so stamping a 17 GB checkpoint costs a few stat calls;
 * a file rewritten in place with the same size and mtime goes unnoticed. */
void digest_path_stamp(digest_t *d, const char *tag, const char *path);

/* Finish: write 32 lowercase hex digits and a NUL to out. d may not be fed afterwards. */
void digest_hex(const digest_t *d, char out[DIGEST_HEX_LEN + 1]);

/* XXH64 of one buffer (exposed for the test vectors). */
uint64_t digest_xxh64(const void *data, size_t len, uint64_t seed);

#endif
