/* digest.c: XXH3-128 digests (libxxhash) of bytes, framed fields and path stamps (digest.h).
 * It holds no hash code of its own. */
#include "digest.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"

void digest_init(digest_t *d) {
    XXH_errorcode rc = XXH3_128bits_reset(&d->st);
    ASSERT(rc == XXH_OK);  // fails only on a NULL state
}

void digest_update(digest_t *d, const void *data, size_t len) {
    XXH_errorcode rc = XXH3_128bits_update(&d->st, data, len);
    ASSERT(rc == XXH_OK);
}

void digest_field(digest_t *d, const char *tag, const char *s) {
    char head[96];
    int n = s ? snprintf(head, sizeof head, "%s:%zu:", tag, strlen(s))
              : snprintf(head, sizeof head, "%s:-:", tag);
    digest_update(d, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
    if (s) digest_update(d, s, strlen(s));
}

void digest_hex(const digest_t *d, char out[DIGEST_HEX_LEN + 1]) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&d->st));
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
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
