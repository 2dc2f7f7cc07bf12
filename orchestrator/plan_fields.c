/* plan_fields.c: the JSON-path tracking, error positioning and typed member getters behind
 * plan.c. See plan_fields.h for why positions are found by walking the raw text with jansson.
 * It deliberately knows nothing about which keys a plan has; plan.c says that.
 */
#include "plan_fields.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------- positions */

/* Offset of the first non-JSON-whitespace byte of t at or after p (len when none). */
static size_t skip_ws(const char *t, size_t len, size_t p) {
    while (p < len && (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' || t[p] == '\r')) p++;
    return p;
}

/* Decode the one JSON value starting at p with jansson. Returns the offset just past it, or 0
 * when jansson cannot read a value there. *out (when non-NULL) receives the value. */
static size_t value_end(const char *t, size_t len, size_t p, json_t **out) {
    json_error_t je;
    json_t *v = json_loadb(t + p, len - p,
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &je);
    if (!v || je.position <= 0) {
        json_decref(v);
        return 0;
    }
    if (out) *out = v;
    else json_decref(v);
    return p + (size_t)je.position;
}

size_t plan_locate(const char *t, size_t len, const pseg_t *path, int depth, int at_key) {
    size_t p = skip_ws(t, len, 0);
    size_t best = p < len ? p : 0;
    for (int d = 0; d < depth; d++) {
        if (p >= len) return best;
        best = p;
        if (path[d].key) {
            if (t[p] != '{') return best;
            p++;
            for (;;) {
                p = skip_ws(t, len, p);
                if (p >= len || t[p] != '"') return best;
                size_t key_at = p;
                json_t *k = NULL;
                size_t e = value_end(t, len, p, &k);
                if (!e) return best;
                int match = json_is_string(k) && strcmp(json_string_value(k), path[d].key) == 0;
                json_decref(k);
                p = skip_ws(t, len, e);
                if (p >= len || t[p] != ':') return best;
                p = skip_ws(t, len, p + 1);
                if (match) {
                    if (d == depth - 1 && at_key) return key_at;
                    break;
                }
                e = value_end(t, len, p, NULL);
                if (!e) return best;
                p = skip_ws(t, len, e);
                if (p >= len || t[p] != ',') return best;
                p++;
            }
        } else {
            if (t[p] != '[') return best;
            p++;
            for (int i = 0;; i++) {
                p = skip_ws(t, len, p);
                if (p >= len || t[p] == ']') return best;
                if (i == path[d].index) break;
                size_t e = value_end(t, len, p, NULL);
                if (!e) return best;
                p = skip_ws(t, len, e);
                if (p >= len || t[p] != ',') return best;
                p++;
            }
        }
    }
    return p < len ? p : best;
}

void plan_line_col(const char *text, size_t len, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') l++, c = 1;
        else if ((ch & 0xC0) != 0x80) c++;   // count UTF-8 lead bytes only, like jansson
    }
    *line = l, *col = c;
}

/* ---------------------------------------------------------------- path and errors */

void pctx_key(pctx_t *c, const char *key) {
    ASSERT(c->depth < PLAN_MAX_DEPTH);
    c->path[c->depth].key = key;
    c->path[c->depth].index = 0;
    c->depth++;
}

void pctx_index(pctx_t *c, int index) {
    ASSERT(c->depth < PLAN_MAX_DEPTH);
    c->path[c->depth].key = NULL;
    c->path[c->depth].index = index;
    c->depth++;
}

void pctx_pop(pctx_t *c) {
    ASSERT(c->depth > 0);
    c->depth--;
}

const char *pf_show(const char *s, char buf[80]) {
    size_t i = 0;
    for (; s[i] && i < 60; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (s[i]) memcpy(buf + i, "...", 3), i += 3;
    buf[i] = '\0';
    return buf;
}

/* Write the current JSON path of c ("models[1].tta[0]") into out (n bytes, truncated, NUL-
 * terminated). */
static void path_str(const pctx_t *c, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < c->depth && used + 1 < n; d++) {
        char show[80];
        int w = c->path[d].key
                    ? snprintf(out + used, n - used, "%s%s", d ? "." : "", pf_show(c->path[d].key, show))
                    : snprintf(out + used, n - used, "[%d]", c->path[d].index);
        if (w < 0) break;
        used += (size_t)w;
    }
}

int pctx_fail(pctx_t *c, int at_key, const char *fmt, ...) {
    char msg[640], path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    size_t off = plan_locate(c->text, c->len, c->path, c->depth, at_key);
    plan_line_col(c->text, c->len, off, &line, &col);
    path_str(c, path, sizeof path);
    if (c->depth == 0) return err_fmt(c->err, "%s:%d:%d: %s", c->name, line, col, msg);
    return err_fmt(c->err, "%s:%d:%d: %s: %s", c->name, line, col, path, msg);
}

/* ---------------------------------------------------------------- key checks */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), capped: only
 * short strings are compared, since a hint is only useful for short key names. */
static int osa_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *pf_suggest(const char *s, const char *const *names) {
    const char *best = NULL;
    int best_d = 99;
    size_t ls = strlen(s);
    for (int i = 0; names[i]; i++) {
        int dist = osa_distance(s, names[i]);
        if (dist < best_d) best_d = dist, best = names[i];
    }
    // Two edits is a typo in a key of 5+ characters; in a 3-character key it is another word.
    int limit = ls <= 3 ? 1 : ls <= 5 ? 2 : 3;
    if (best_d <= limit && best_d < (int)ls) return best;
    // A truncated name ("tolerance" for "tolerance_mib") is a typo too, however many edits.
    for (int i = 0; ls >= 4 && names[i]; i++)
        if (strncmp(s, names[i], ls) == 0) return names[i];
    return NULL;
}

/* 1 when s is one of names (NULL-terminated; NULL names is an empty list), else 0. */
static int in_list(const char *s, const char *const *names) {
    for (int i = 0; names && names[i]; i++)
        if (strcmp(s, names[i]) == 0) return 1;
    return 0;
}

int pf_check_keys(pctx_t *c, json_t *obj, const char *const *allowed, const char *const *elsewhere,
                  const char *elsewhere_hint) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (in_list(key, allowed)) continue;
        char show[80];
        pctx_key(c, key);
        if (in_list(key, elsewhere)) {
            pctx_fail(c, 1, "unknown key '%s' here (%s)", pf_show(key, show), elsewhere_hint);
        } else {
            const char *hint = pf_suggest(key, allowed);
            if (hint) pctx_fail(c, 1, "unknown key '%s' (did you mean '%s'?)", pf_show(key, show), hint);
            else pctx_fail(c, 1, "unknown key '%s'", pf_show(key, show));
        }
        pctx_pop(c);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- getters */

const char *pf_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

json_t *pf_member(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* Check that v is a usable string at the current path. Returns 0 or -1. */
static int string_value(pctx_t *c, json_t *v, int allow_empty) {
    if (!json_is_string(v)) return pctx_fail(c, 0, "must be a string, not %s", pf_type_name(v));
    if (strlen(json_string_value(v)) != json_string_length(v))
        return pctx_fail(c, 0, "must not contain NUL characters");
    if (!allow_empty && json_string_length(v) == 0) return pctx_fail(c, 0, "must not be empty");
    return 0;
}

/* Fail with "missing required key" for key at the current path. Returns -1. */
static int missing(pctx_t *c, const char *key) {
    return pctx_fail(c, 0, "missing required key '%s'", key);
}

int pf_string(pctx_t *c, json_t *obj, const char *key, int required, char **out) {
    json_t *v = pf_member(obj, key);
    if (!v) return required ? missing(c, key) : 0;
    pctx_key(c, key);
    int rc = string_value(c, v, 0);
    pctx_pop(c);
    if (rc == 0) {
        free(*out);
        *out = xstrdup(json_string_value(v));
    }
    return rc;
}

char *pf_join(const char *base, const char *p) {
    if (p[0] == '/' || !base || !base[0]) return xstrdup(p);
    size_t n = strlen(base) + strlen(p) + 2;
    char *s = xmalloc(n);
    snprintf(s, n, "%s/%s", base, p);
    return s;
}

int pf_path(pctx_t *c, json_t *obj, const char *key, int required, char **out) {
    char *s = NULL;
    if (pf_string(c, obj, key, required, &s) != 0) return -1;
    if (!s) return 0;
    free(*out);
    *out = pf_join(c->base_dir, s);
    free(s);
    return 0;
}

int pf_int(pctx_t *c, json_t *obj, const char *key, long long lo, long long hi, int *out) {
    json_t *v = pf_member(obj, key);
    if (!v) return 0;
    pctx_key(c, key);
    int rc = 0;
    if (!json_is_integer(v)) {
        rc = pctx_fail(c, 0, "must be an integer, not %s", pf_type_name(v));
    } else {
        long long x = json_integer_value(v);
        if (x < lo || x > hi) rc = pctx_fail(c, 0, "%lld is out of range [%lld, %lld]", x, lo, hi);
        else *out = (int)x;
    }
    pctx_pop(c);
    return rc;
}

int pf_number(pctx_t *c, json_t *obj, const char *key, double lo, int lo_open, double hi, double *out) {
    json_t *v = pf_member(obj, key);
    if (!v) return 0;
    pctx_key(c, key);
    int rc = 0;
    if (!json_is_number(v)) {
        rc = pctx_fail(c, 0, "must be a number, not %s", pf_type_name(v));
    } else {
        double x = json_number_value(v);
        if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
            rc = pctx_fail(c, 0, "%g is out of range %c%g, %g]", x, lo_open ? '(' : '[', lo, hi);
        else *out = x;
    }
    pctx_pop(c);
    return rc;
}

int pf_enum_value(pctx_t *c, json_t *v, const char *noun, const char *const *names, int *out) {
    if (string_value(c, v, 1) != 0) return -1;
    const char *s = json_string_value(v);
    for (int i = 0; names[i]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char expected[256] = "", show[80];
    size_t used = 0;
    for (int i = 0; names[i] && used < sizeof expected; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
        int w = snprintf(expected + used, sizeof expected - used, "%s%s", sep, names[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    const char *hint = pf_suggest(s, names);
    if (hint)
        return pctx_fail(c, 0, "unknown %s '%s' (did you mean '%s'? expected %s)", noun, pf_show(s, show),
                         hint, expected);
    return pctx_fail(c, 0, "unknown %s '%s' (expected %s)", noun, pf_show(s, show), expected);
}

int pf_enum(pctx_t *c, json_t *obj, const char *key, const char *noun, const char *const *names,
            int *out) {
    json_t *v = pf_member(obj, key);
    if (!v) return 0;
    pctx_key(c, key);
    int rc = pf_enum_value(c, v, noun, names, out);
    pctx_pop(c);
    return rc;
}

void pf_strv_free(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

int pf_string_list(pctx_t *c, json_t *obj, const char *key, int min_n, int allow_empty, char ***out,
                   int *n) {
    json_t *v = pf_member(obj, key);
    if (!v) return 0;
    pctx_key(c, key);
    if (!json_is_array(v)) {
        int rc = pctx_fail(c, 0, "must be an array of strings, not %s", pf_type_name(v));
        pctx_pop(c);
        return rc;
    }
    size_t len = json_array_size(v);
    if (len < (size_t)min_n) {
        int rc = pctx_fail(c, 0, "needs at least %d element%s", min_n, min_n == 1 ? "" : "s");
        pctx_pop(c);
        return rc;
    }
    char **list = xcalloc(len ? len : 1, sizeof *list);
    for (size_t i = 0; i < len; i++) {
        pctx_index(c, (int)i);
        json_t *e = json_array_get(v, i);
        if (string_value(c, e, allow_empty) != 0) {
            pf_strv_free(list, (int)i);
            c->depth -= 2;
            return -1;
        }
        list[i] = xstrdup(json_string_value(e));
        pctx_pop(c);
    }
    pctx_pop(c);
    pf_strv_free(*out, *n);
    *out = list;
    *n = (int)len;
    return 0;
}
