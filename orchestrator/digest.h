/* digest.h: a 128-bit content digest for resume keys and content-derived shard names.
 *
 * The digest is XXH3-128 (libxxhash, the xxHash project's reference implementation) of the bytes
 * fed, streamed, printed as 32 hex digits in xxHash's canonical order (what `xxhsum -H2` prints).
 * 128 bits make accidental collisions between shards or settings out of the question. It
 * deliberately does not resist an adversary: resume keys only need to tell our own files apart,
 * and a fast hash keeps hashing a 100 MB input cheap.
 *
 * Keys made before XXH3-128 (two XXH64 seeds) are never reproduced, so their resume records are
 * simply not found: those jobs run again.
 */
#ifndef ORCH_DIGEST_H
#define ORCH_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t's layout, so that a digest_t needs no allocation
#include <xxhash.h>

typedef struct {
    XXH3_state_t st;    // the XXH3-128 streaming state (64-byte aligned; fine on the stack)
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

#endif
