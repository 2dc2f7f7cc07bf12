/* tok_unicode.c: the little Unicode the tokenizer needs outside PCRE2: UTF-8 coding and
 * validation (with the "maximal subpart" rule that Rust's String::from_utf8_lossy and Python's
 * errors="replace" share), Rust's char::is_whitespace, and GPT-2's byte-to-char table.
 *
 * Character classes for splitting (\p{L}, \p{N}, \s, ...) are PCRE2's business, not this
 * file's; this file deliberately holds no property tables beyond White_Space, which is 25 code
 * points and has been stable since Unicode 6.3.
 */
#include <pthread.h>
#include <string.h>

#include "tok_internal.h"

uint32_t utf8_decode(const char *s, size_t *n) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *n = 1; return u[0]; }
    if (u[0] < 0xE0) { *n = 2; return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F); }
    if (u[0] < 0xF0) {
        *n = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
           (u[3] & 0x3F);
}

size_t utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Examine the sequence at s[0..avail). Returns its length when it is one valid UTF-8 char;
 * otherwise returns 0 and sets *bad to the length of the maximal invalid subpart (>= 1),
 * which a lossy decoder replaces by one U+FFFD (Unicode 15, section 3.9, table 3-8). */
static size_t utf8_check(const unsigned char *s, size_t avail, size_t *bad) {
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= avail) break;
        unsigned char c = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (c < l || c > h) break;
    }
    if (i == need) return need;
    *bad = i;
    return 0;
}

size_t utf8_valid_prefix(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        // ASCII fast path, 8 bytes at a time.
        while (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, u + i, 8);
            if (v & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        size_t bad, n = utf8_check(u + i, len - i, &bad);
        if (!n) return i;
        i += n;
    }
    return len;
}

size_t utf8_lossy_to_arena(tok_scratch_t *sc, const char *s, size_t len, size_t *out_len) {
    // Worst case: every byte becomes a 3-byte U+FFFD.
    char *w = scratch_reserve(sc, len * 3);
    size_t off = sc->len, o = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < len) {
        size_t bad, n = utf8_check(u + i, len - i, &bad);
        if (n) {
            memcpy(w + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(w + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += bad;
        }
    }
    sc->len += o;
    *out_len = o;
    return off;
}

int uni_is_white_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves; the other 68 bytes
 * map, in byte order, to U+0100 onwards. Built once (pthread_once); read-only afterwards. */
static bytechar_t g_bytechars[256];

/* Fill g_bytechars as GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * others map to U+0100 onwards in byte order. */
static void bytechars_build(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)n++;
        char tmp[4];
        size_t l = utf8_encode(cp, tmp);
        memcpy(g_bytechars[b].s, tmp, l);
        g_bytechars[b].len = (uint8_t)l;
    }
}

const bytechar_t *tok_bytechars(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bytechars_build);
    return g_bytechars;
}
