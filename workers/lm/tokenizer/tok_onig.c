/* tok_onig.c: rewrite an Oniguruma pattern (what HF `tokenizers` compiles, in Ruby syntax) into
 * a PCRE2 pattern that matches the same text.
 *
 * PCRE2 already reads almost all of it the same way. The differences that change tokens are
 * in a few escapes, which this file rewrites lexically (it tracks only escapes, character
 * classes and flag groups; it does not parse the regex):
 *   \s \S      Oniguruma: Unicode White_Space. PCRE2 also counts U+180E.
 *   \p{GC}     general categories: Oniguruma's tables are newer (Unicode 16 vs PCRE2 10.42's
 *   \d \w      Unicode 14); the missing code points (tok_unicode_data.c) are added to the
 *              class. \w is Oniguruma's Alphabetic+M+Nd+Pc, not PCRE2's L+N+_.
 *   \h \H      Ruby: hex digit. PCRE2: horizontal space.
 *   \uHHHH     Ruby escape; PCRE2 spells it \x{HHHH}.
 *   (?m)       Ruby: dot matches newline, i.e. PCRE2's (?s). (^ $ are always line anchors in
 *              Ruby; the caller compiles with PCRE2_MULTILINE.)
 * Negated forms inside a bracket class (\P{..}, \D, \W, \H inside [...]) cannot take additions
 * and keep PCRE2's tables; \S inside a class is exact.
 *
 * Deliberately absent, and rejected with an error rather than read differently: Oniguruma's
 * nested classes and class intersection ([a-z&&[^aeiou]]).
 */
#include <string.h>

#include "tok_internal.h"

#define WHITE_SPACE "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

typedef struct {
    char *s;       // (cap) bytes, the first n used
    size_t n, cap; // bytes used / allocated
} sbuf_t;

/* Append s[0..n) to b, keeping it NUL-terminated (aborts on host OOM). */
static void sb_put(sbuf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 256;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* Append the NUL-terminated s to b. */
static void sb_str(sbuf_t *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* Extra ranges for a class name (tok_unicode_data.c), or NULL when the class is unknown. */
static const char *extra_for(const char *name, size_t n) {
    for (size_t i = 0; i < TOK_UNI_EXTRA_N; i++)
        if (strlen(TOK_UNI_EXTRA[i].name) == n && !memcmp(TOK_UNI_EXTRA[i].name, name, n)) return TOK_UNI_EXTRA[i].extra;
    return NULL;
}

/* Emit a class whose PCRE2 body is `body`: as a bracket class outside one, as its body inside
 * one; `neg` complements it (only possible outside a class, else `fallback` is copied). */
static void emit_class(sbuf_t *b, int in_class, int neg, const char *body, const char *extra, const char *fallback,
                       size_t fallback_len) {
    if (in_class) {
        if (neg) {
            sb_put(b, fallback, fallback_len);
            return;
        }
        sb_str(b, body);
        sb_str(b, extra ? extra : "");
        return;
    }
    sb_str(b, neg ? "[^" : "[");
    sb_str(b, body);
    sb_str(b, extra ? extra : "");
    sb_str(b, "]");
}

/* 1 when c is an ASCII hex digit, else 0. */
static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

char *onig_to_pcre2(const char *p, size_t n, size_t *out_len, const char *where, err_t *err) {
    sbuf_t b = {0};
    sb_put(&b, "", 0);
    int in_class = 0;
    size_t class_open = 0;  // index just after "[" or "[^": a ']' there is a literal
    for (size_t i = 0; i < n;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || d == 'S') {
                if (in_class && d == 'S') sb_str(&b, "\\S\\x{180E}");  // PCRE2's \S lacks only U+180E
                else emit_class(&b, in_class, d == 'S', WHITE_SPACE, "", NULL, 0);
                i += 2;
            } else if (d == 'd' || d == 'D' || d == 'w' || d == 'W') {
                int w = d == 'w' || d == 'W';
                emit_class(&b, in_class, d == 'D' || d == 'W', w ? "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}" : "\\p{Nd}",
                           extra_for(w ? "w" : "d", 1), p + i, 2);
                i += 2;
            } else if (d == 'h' || d == 'H') {
                emit_class(&b, in_class, d == 'H', "0-9A-Fa-f", "", p + i, 2);
                i += 2;
            } else if ((d == 'p' || d == 'P') && i + 2 < n) {
                size_t ns, ne, end;  // name [ns, ne), escape ends at end
                if (p[i + 2] == '{') {
                    const char *close = memchr(p + i + 3, '}', n - i - 3);
                    if (!close) goto copy_escape;
                    ns = i + 3;
                    ne = (size_t)(close - p);
                    end = ne + 1;
                } else {
                    ns = i + 2;
                    ne = i + 3;
                    end = ne;
                }
                int neg = d == 'P';
                if (ne > ns && p[ns] == '^') {
                    neg = !neg;
                    ns++;
                }
                const char *extra = extra_for(p + ns, ne - ns);
                if (!extra) {
                    sb_put(&b, p + i, end - i);  // scripts, binary properties: PCRE2's own tables
                } else {
                    char body[16];
                    int bl = snprintf(body, sizeof body, "\\p{%.*s}", (int)(ne - ns), p + ns);
                    if (bl < 0 || (size_t)bl >= sizeof body) goto copy_escape;
                    emit_class(&b, in_class, neg, body, extra, p + i, end - i);
                }
                i = end;
            } else if (d == 'u' && i + 6 <= n && is_hex(p[i + 2]) && is_hex(p[i + 3]) && is_hex(p[i + 4]) &&
                       is_hex(p[i + 5])) {
                sb_str(&b, "\\x{");
                sb_put(&b, p + i + 2, 4);
                sb_str(&b, "}");
                i += 6;
            } else if (d == 'Q') {
                const char *e = NULL;
                for (size_t k = i + 2; k + 1 < n; k++)
                    if (p[k] == '\\' && p[k + 1] == 'E') { e = p + k + 2; break; }
                size_t stop = e ? (size_t)(e - p) : n;
                sb_put(&b, p + i, stop - i);
                i = stop;
            } else {
            copy_escape:
                // The backslash and the whole next character, untouched.
                sb_put(&b, p + i, 1 + utf8_len((unsigned char)d));
                i += 1 + utf8_len((unsigned char)d);
            }
            continue;
        }
        if (in_class) {
            if (c == ']' && i != class_open) in_class = 0;
            else if (c == '[' && i + 1 < n && p[i + 1] == ':') {
                const char *e = strstr(p + i, ":]");  // POSIX class [:alpha:]
                if (e && (size_t)(e - p) < n) {
                    sb_put(&b, p + i, (size_t)(e - p) + 2 - i);
                    i = (size_t)(e - p) + 2;
                    continue;
                }
            } else if (c == '[' || (c == '&' && i + 1 < n && p[i + 1] == '&')) {
                free(b.s);
                err_fmt(err, "%s: Oniguruma nested classes and && intersections are not supported (offset %zu)", where,
                        i);
                return NULL;
            }
        } else if (c == '[') {
            in_class = 1;
            sb_put(&b, "[", 1);
            i++;
            if (i < n && p[i] == '^') {
                sb_put(&b, "^", 1);
                i++;
            }
            class_open = i;
            continue;
        } else if (c == '(' && i + 2 < n && p[i + 1] == '?' && strchr("imx-", p[i + 2])) {
            // A flag group (?imx-imx) or (?imx-imx:...): Ruby's m is PCRE2's s.
            size_t k = i + 2;
            while (k < n && strchr("imx-", p[k]) && p[k]) k++;
            if (k < n && (p[k] == ')' || p[k] == ':')) {
                sb_put(&b, "(?", 2);
                for (size_t t = i + 2; t < k; t++) sb_put(&b, p[t] == 'm' ? "s" : p + t, 1);
                i = k;
                continue;
            }
        }
        size_t l = utf8_len((unsigned char)c);
        if (i + l > n) l = n - i;
        sb_put(&b, p + i, l);
        i += l;
    }
    *out_len = b.n;
    return b.s;
}
